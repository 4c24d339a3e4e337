"""A Keras 3 callback that logs ``model.fit`` runs into a synadb file.

::

    from synadb.integrations.keras import SynaKerasCallback

    model.fit(x, y, epochs=5, validation_split=0.2,
              callbacks=[SynaKerasCallback("runs.db", experiment="mnist",
                                           registered_model_name="mnist-mlp")])

What goes where:

* params: ``fit``'s ``epochs`` and ``steps`` (per epoch), the optimizer's
  ``get_config()`` under ``optimizer.`` (its class as ``optimizer.class``),
  the model's name and parameter count;
* each epoch's logs (``loss``, ``accuracy``, ``val_loss``...) are metrics
  of those names at step = epoch (Keras' ``History``, MLflow's autolog);
* with ``log_every_n_batches=N``, every Nth batch's logs are metrics named
  ``batch/<name>`` at step = the batch's number counted over the whole fit;
* at the end of training the model (its whole ``.keras`` file) is a version
  of ``registered_model_name`` in the :class:`~synadb.registry.ModelRegistry`
  of the same file (``registry.load_keras(name)`` brings it back), and the
  run ends Completed.  Keras has no hook for a crash: use the callback as a
  context manager to end the run Failed when ``fit`` raises.

``run=`` logs into a run the caller has (a synadb ``Run`` or a run of
``synadb.integrations.mlflow``); the caller ends it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from .runs import RunCallback, RunTarget
from ..registry import ModelRegistry, ModelVersion
from ..tracking import RunStatus, flatten_params

try:
    import keras
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    # Keras 3 comes with TensorFlow (the extra); it also runs on torch or jax.
    raise errors.MissingDependency("keras", "tensorflow", "synadb.integrations.keras") from e

__all__ = ["SynaKerasCallback"]


def _numbers(logs: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """The scalar values of Keras logs (floats, numpy or backend scalars)."""
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        try:
            out[prefix + key] = float(value)
        except (TypeError, ValueError):
            continue  # not a scalar (Keras never logs one, a user callback might)
    return out


class SynaKerasCallback(RunCallback, keras.callbacks.Callback):
    """Log a Keras ``fit`` (params, epoch and batch metrics, the model).

    Args:
        path: the synadb file (created if missing).  May be omitted with ``run=``.
        experiment: the experiment the run belongs to.
        run_name: the run's name.
        tags: run labels (a list) or key-value tags (a dict).
        log_every_n_batches: also log every Nth batch's metrics (``batch/...``);
            None logs epochs only.
        log_model: store the trained model in the registry at the end.
        registered_model_name: the registry model it is a version of; the
            experiment's name by default.
        run: log into this run instead of starting one.

    >>> model.fit(x, y, callbacks=[SynaKerasCallback("runs.db")])   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, experiment: str = "default",
                 run_name: str | None = None,
                 tags: Sequence[str] | Mapping[str, Any] | None = None,
                 log_every_n_batches: int | None = None, log_model: bool = True,
                 registered_model_name: str | None = None, run: Any = None) -> None:
        super().__init__()
        if log_every_n_batches is not None and (
                isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int)
                or log_every_n_batches < 1):
            raise errors.InvalidArgument(
                f"log_every_n_batches is a positive int or None, got {log_every_n_batches!r}")
        self._target = RunTarget(path, experiment, run_name, tags, run)
        if log_model and self._target.path is None:
            raise errors.InvalidArgument(
                "log_model stores the model in the run's file: pass its path too, "
                "SynaKerasCallback(path, run=run, ...), or log_model=False")
        self._every = log_every_n_batches
        self._log_model = bool(log_model)
        self._model_name = registered_model_name or self._target.experiment
        self._batches = 0  # batches seen over the whole fit
        self._epoch = 0
        self.model_version: ModelVersion | None = None  # what the end of training stored

    # -- Keras' events ----------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        run = self._target.writing()
        self._batches = 0
        params: dict[str, Any] = {k: v for k, v in (self.params or {}).items()
                                  if k in ("epochs", "steps")}
        model = self.model
        if model is not None:
            params["model.name"] = model.name
            params["model.num_parameters"] = model.count_params()
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None:
                params["optimizer.class"] = type(optimizer).__name__
                params.update(flatten_params(_jsonable(optimizer.get_config()),
                                             prefix="optimizer"))
        run.log_params(params)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches += 1
        if self._every is not None and self._batches % self._every == 0:
            metrics = _numbers(logs, "batch/")
            if metrics:
                self._target.writing().log_metrics(metrics, step=self._batches - 1)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch
        metrics = _numbers(logs)
        if metrics:
            self._target.writing().log_metrics(metrics, step=epoch)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        run = self._target.writing()
        if self._log_model and self.model is not None:
            meta: dict[str, Any] = {"run_id": run.id, "experiment": run.experiment,
                                    "epoch": self._epoch, "source": "keras",
                                    "backend": keras.backend.backend()}
            meta.update(_numbers(logs))
            with ModelRegistry(self._target.path) as registry:
                self.model_version = registry.save_model(self._model_name, self.model, meta,
                                                         tags={"run_id": run.id})
        self._target.finish(RunStatus.COMPLETED)


def _jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    """An optimizer config with its numpy scalars as plain numbers (a
    learning-rate schedule stays a nested dict, flattened by flatten_params)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out[key] = _jsonable(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            out[key] = value.item()
        else:
            out[key] = value
    return out
