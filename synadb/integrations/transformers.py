"""A Hugging Face ``Trainer`` callback that logs runs into a synadb file.

``pip install 'synadb[transformers]'``::

    from transformers import Trainer, TrainingArguments
    from synadb.integrations.transformers import SynaCallback

    args = TrainingArguments("out", report_to="none")
    trainer = Trainer(model, args, train_dataset=ds, callbacks=[SynaCallback("runs.db")])
    trainer.train()

What goes where:

* the ``TrainingArguments`` (``to_sanitized_dict()``) are the run's params,
  and the model's config too, under ``config.`` (also kept whole as the
  artifact ``model_config.json``), with ``model.num_parameters``;
* each ``on_log`` is metrics at ``state.global_step``, named as HF's W&B
  integration names them: ``eval_loss`` -> ``eval/loss``, ``test_x`` ->
  ``test/x``, anything else ``train/<name>``; the end-of-training summary
  (``train_runtime``, ``train_loss``, ``total_flos``, ...) keeps its name;
* at the end of training the model (``save_pretrained``, with the tokenizer
  or processor when the Trainer has one) is a version of
  ``registered_model_name`` in the :class:`~synadb.registry.ModelRegistry` of
  the same file, a tar of the saved directory; :func:`load_model` brings it
  back (``from_pretrained``), :func:`extract_model` unpacks it;
* the run ends Completed at ``on_train_end``.  The Trainer has no hook for a
  crash, so use the callback as a context manager to end the run Failed when
  ``train()`` raises (``with SynaCallback("runs.db") as cb: ...``).

Only the main process (``state.is_world_process_zero``) opens the file.
``run=`` logs into a run the caller has (a synadb ``Run`` or a run of
``synadb.integrations.mlflow``); the caller ends it.
"""

from __future__ import annotations

import io
import numbers
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from .runs import RunCallback, RunTarget
from ..registry import ModelRegistry, ModelVersion
from ..tracking import RunStatus, flatten_params

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency("transformers", "transformers",
                                   "synadb.integrations.transformers") from e

__all__ = ["SynaCallback", "load_model", "extract_model"]

# What HF's W&B integration keeps as summary values rather than series.
_SUMMARY = frozenset({"train_runtime", "train_samples_per_second", "train_steps_per_second",
                      "train_loss", "total_flos"})
MODEL_FORMAT = "hf-save_pretrained-tar"


def _metric_name(key: str) -> str:
    """HF's ``rewrite_logs``: eval_x -> eval/x, test_x -> test/x, else train/x."""
    if key in _SUMMARY:
        return key
    for prefix in ("eval", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return "train/" + key


class SynaCallback(RunCallback, TrainerCallback):
    """Log a ``transformers.Trainer`` run (args, config, metrics, final model).

    Args:
        path: the synadb file (created if missing).  May be omitted with ``run=``.
        experiment: the experiment the run belongs to.
        run_name: the run's name; ``TrainingArguments.run_name`` by default.
        tags: run labels (a list) or key-value tags (a dict).
        log_model: store the trained model in the registry at the end.
        registered_model_name: the registry model it is a version of; the
            experiment's name by default.
        run: log into this run instead of starting one.

    >>> Trainer(model, args, callbacks=[SynaCallback("runs.db")])   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, experiment: str = "default",
                 run_name: str | None = None,
                 tags: Sequence[str] | Mapping[str, Any] | None = None,
                 log_model: bool = True, registered_model_name: str | None = None,
                 run: Any = None) -> None:
        self._target = RunTarget(path, experiment, run_name, tags, run)
        if log_model and self._target.path is None:
            raise errors.InvalidArgument(
                "log_model stores the model in the run's file: pass its path too, "
                "SynaCallback(path, run=run, ...), or log_model=False")
        self._log_model = bool(log_model)
        self._model_name = registered_model_name or self._target.experiment
        self.model_version: ModelVersion | None = None  # what the end of training stored

    # -- the Trainer's events -------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self._target.run is None and self._target.owns_run and not self._target.run_name:
            name = getattr(args, "run_name", None)
            if name and name != getattr(args, "output_dir", None):
                self._target.run_name = name
        run = self._target.writing()
        params = flatten_params(args.to_sanitized_dict())
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            config_dict = config.to_dict()
            params.update(flatten_params(config_dict, prefix="config"))
            run.log_dict("model_config.json", config_dict)
        if model is not None and hasattr(model, "num_parameters"):
            params["model.num_parameters"] = str(model.num_parameters())
        run.log_params(params)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        metrics = {_metric_name(k): float(v) for k, v in logs.items()
                   if isinstance(v, numbers.Real) and not isinstance(v, bool)}
        if metrics:
            self._target.writing().log_metrics(metrics, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     processing_class: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        run = self._target.writing()
        if self._log_model and model is not None:
            meta: dict[str, Any] = {"run_id": run.id, "experiment": run.experiment,
                                    "format": MODEL_FORMAT, "global_step": state.global_step,
                                    "source": "transformers"}
            config = getattr(model, "config", None)
            if config is not None:
                meta["architectures"] = list(getattr(config, "architectures", None) or
                                             [type(model).__name__])
                meta["model_type"] = getattr(config, "model_type", "")
            for entry in reversed(getattr(state, "log_history", []) or []):
                if "train_loss" in entry:
                    meta["train_loss"] = entry["train_loss"]
                    break
            if state.best_metric is not None:
                meta["best_metric"] = state.best_metric
            data = _pack(model, processing_class)
            with ModelRegistry(self._target.path) as registry:
                self.model_version = registry.save_model(self._model_name, data, meta,
                                                         tags={"run_id": run.id})
        self._target.finish(RunStatus.COMPLETED)


def _pack(model: Any, processing_class: Any) -> bytes:
    """``save_pretrained`` into a temporary directory, as an uncompressed
    tar (safetensors weights do not compress)."""
    with tempfile.TemporaryDirectory(prefix="synadb-hf-") as tmp:
        model.save_pretrained(tmp)
        saver = getattr(processing_class, "save_pretrained", None)
        if saver is not None:
            saver(tmp)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in sorted(os.listdir(tmp)):
                tar.add(os.path.join(tmp, name), arcname=name)
        return buf.getvalue()


def extract_model(path: str | os.PathLike[str], name: str, directory: str | os.PathLike[str],
                  version: int | None = None, *, stage: str | None = None) -> ModelVersion:
    """Unpack a model :class:`SynaCallback` stored into ``directory`` (then
    ``AutoModel...from_pretrained(directory)``).  Returns the version."""
    with ModelRegistry(path, read_only=True) as registry:
        data, info = registry.load_model(name, version, stage=stage)
    if info.metadata.get("format") != MODEL_FORMAT:
        raise errors.InvalidArgument(
            f"{name!r} version {info.version} is not a model SynaCallback stored "
            f"(format {info.metadata.get('format')!r})")
    os.makedirs(directory, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        # The data filter refuses absolute paths, links out and devices: a
        # tar from the file never writes outside ``directory``.
        tar.extractall(directory, filter="data")
    return info


def load_model(path: str | os.PathLike[str], name: str, version: int | None = None, *,
               stage: str | None = None, model_class: Any = None, **kwargs: Any) -> Any:
    """The model :class:`SynaCallback` stored, loaded with ``from_pretrained``.

    ``model_class`` defaults to the class named by the config's
    ``architectures`` (e.g. ``BertForSequenceClassification``); ``kwargs``
    go to ``from_pretrained``.  The weights are read as safetensors, never
    unpickled.
    """
    import transformers

    with tempfile.TemporaryDirectory(prefix="synadb-hf-") as tmp:
        info = extract_model(path, name, tmp, version, stage=stage)
        if model_class is None:
            archs = info.metadata.get("architectures") or []
            model_class = getattr(transformers, archs[0], None) if archs else None
            if model_class is None:
                model_class = transformers.AutoModel
        return model_class.from_pretrained(tmp, **kwargs)
