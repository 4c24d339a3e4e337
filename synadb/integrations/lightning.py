"""A PyTorch Lightning logger that writes runs into a synadb file.

``pip install 'synadb[lightning]'``::

    from lightning.pytorch import Trainer
    from synadb.integrations.lightning import SynaLogger

    trainer = Trainer(logger=SynaLogger("runs.db", experiment="mnist"))
    trainer.fit(model, data)

    ExperimentTracker("runs.db").list_runs("mnist")   # params, metrics, status

What goes where:

* hyperparameters (``save_hyperparameters()``, a dict or an
  ``argparse.Namespace``, nested ones flattened to dotted names) are the
  run's params;
* every ``self.log(...)`` value Lightning hands the logger is a metric at
  Lightning's step;
* with ``log_checkpoints=True`` each checkpoint the ``ModelCheckpoint``
  writes (its best and its last path) becomes a version of
  ``registered_model_name`` in the :class:`~synadb.registry.ModelRegistry` of
  the same file, with the run id, the monitored metric and its score in the
  version's metadata;
* ``finalize("success")`` ends the run Completed, ``"failed"`` Failed (a
  later ``trainer.test`` with the same logger logs into the same run and
  ends it again).

With ``strategy="ddp"`` every process builds the logger but only global rank
0 opens the file: Lightning's ``rank_zero_only`` and ``rank_zero_experiment``
keep the other ranks off it, so one process writes and the file stays one
consistent log.  ``ddp_spawn`` pickles the logger for its workers: the run is
started first, and the worker of rank 0 logs into it.

``run=`` logs into a run the caller already has instead of starting one: a
synadb :class:`~synadb.tracking.Run` (``Experiment.start_run()``; pass the
file's path too to log checkpoints), or a run of the MLflow-style shim
(``synadb.integrations.mlflow.start_run()``), so a user picks either API.  A
run the caller passed is the caller's to end: finalize leaves it running (its
``with`` block ends it).

This is a logger of the ``lightning`` package (``lightning.pytorch``); the
older standalone ``pytorch_lightning`` package checks for its own Logger class.
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from .runs import RunTarget
from ..registry import ModelRegistry
from ..tracking import Run, RunStatus, flatten_params

try:
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency("lightning", "lightning",
                                   "synadb.integrations.lightning") from e

__all__ = ["SynaLogger"]

# Lightning's finalize statuses (Trainer: "success", "failed"; SLURM's signal
# connector: "finished") as run statuses, as Lightning's MLFlowLogger maps them.
_STATUS = {"success": RunStatus.COMPLETED, "finished": RunStatus.COMPLETED,
           "failed": RunStatus.FAILED}


def _plain(params: Any) -> Any:
    """Namespaces (at any depth) as dicts, for flatten_params."""
    if isinstance(params, Namespace):
        params = vars(params)
    if isinstance(params, Mapping):
        return {str(k): _plain(v) for k, v in params.items()}
    return params


class SynaLogger(Logger):
    """Lightning's ``Logger`` over a synadb file.

    Args:
        path: the synadb file (created if missing).  May be omitted with ``run=``.
        experiment: the experiment the run belongs to (Lightning's ``name``).
        run_name: the run's display name.
        tags: run labels (a list) or key-value tags (a dict).
        log_checkpoints: store each checkpoint ``ModelCheckpoint`` saves (its
            best and last path) as a model registry version.
        registered_model_name: the registry model the checkpoints are versions
            of; the experiment's name by default.
        run: log into this run instead of starting one: a synadb ``Run`` or a
            run of ``synadb.integrations.mlflow``.

    ``logger.experiment`` is the synadb :class:`~synadb.tracking.Run`, so a
    LightningModule can ``self.logger.experiment.log_image(...)``.

    >>> trainer = Trainer(logger=SynaLogger("runs.db"))   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, experiment: str = "default",
                 run_name: str | None = None,
                 tags: Sequence[str] | Mapping[str, Any] | None = None,
                 log_checkpoints: bool = False, registered_model_name: str | None = None,
                 run: Any = None) -> None:
        super().__init__()
        self._target = RunTarget(path, experiment, run_name, tags, run)
        if log_checkpoints and self._target.path is None:
            raise errors.InvalidArgument("log_checkpoints stores checkpoints in the run's file: "
                                         "pass its path too, SynaLogger(path, run=run, ...)")
        self._log_checkpoints = bool(log_checkpoints)
        self._model_name = registered_model_name or self._target.experiment
        self._saved: dict[str, tuple[int, int]] = {}  # checkpoint path -> (mtime_ns, size)
        self._step: int | None = None  # the last step metrics were logged at

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the Trainer for its workers: start the run first
        # (on rank 0), so that the worker's copy logs into it and the main
        # process's logger names that same run afterwards.
        if rank_zero_only.rank == 0 and self._target.path is not None:
            self._target.open()
        return dict(self.__dict__)

    # -- Lightning's Logger contract ------------------------------------
    @property
    def name(self) -> str:
        return self._target.experiment

    @property
    def version(self) -> str | None:
        """The run id (None on ranks other than 0, which never open the file)."""
        run = self.experiment
        return run.id if isinstance(run, Run) else None

    @property
    def save_dir(self) -> str | None:
        """The synadb file's directory: checkpoints go under
        ``<dir>/<experiment>/<run id>/checkpoints``, as MLFlowLogger's do."""
        path = self._target.path
        return os.path.dirname(path) if path is not None else None

    @property
    def root_dir(self) -> str | None:
        save_dir = self.save_dir
        return os.path.join(save_dir, self.name) if save_dir is not None else None

    @property
    def log_dir(self) -> str | None:
        root, version = self.root_dir, self.version
        return os.path.join(root, version) if root is not None and version else root

    @property
    def path(self) -> str | None:
        """The synadb file the run is in."""
        return self._target.path

    @property
    def run_id(self) -> str | None:
        return self.version

    @property
    @rank_zero_experiment
    def experiment(self) -> Run:
        """The synadb run (started on first use, on rank 0 only)."""
        return self._target.open()

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any,
                        **kwargs: Any) -> None:
        plain = _plain(params)
        if not isinstance(plain, Mapping):
            raise errors.InvalidType(f"hyperparameters are a dict or a Namespace, "
                                     f"got {type(params).__name__}")
        flat = flatten_params(plain)
        if flat:
            self._target.writing().log_params(flat)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if metrics:
            self._target.writing().log_metrics(metrics, step)
        if step is not None:
            self._step = step

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._target.finish(_STATUS.get(status, RunStatus.FAILED))

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if not self._log_checkpoints:
            return
        cb = checkpoint_callback
        kinds: dict[str, list[str]] = {}
        scores: dict[str, Any] = {}
        best_k = getattr(cb, "best_k_models", None) or {}
        for kind, path in (("best", getattr(cb, "best_model_path", "")),
                           ("last", getattr(cb, "last_model_path", ""))):
            if path and os.path.isfile(path):
                # save_last="link" makes last a link to a checkpoint: one version.
                real = os.path.realpath(path)
                kinds.setdefault(real, []).append(kind)
                if path in best_k:
                    scores[real] = best_k[path]
        if not kinds:
            return
        run = self._target.writing()
        assert self._target.path is not None  # checked in __init__
        with ModelRegistry(self._target.path) as registry:
            for real, names in kinds.items():
                st = os.stat(real)
                stamp = (st.st_mtime_ns, st.st_size)
                if self._saved.get(real) == stamp:
                    continue  # already a version (best again, or an unchanged last)
                meta: dict[str, Any] = {"run_id": run.id, "experiment": self.name,
                                        "checkpoint": os.path.basename(real),
                                        "kind": ",".join(names), "source": "lightning"}
                monitor = getattr(cb, "monitor", None)
                if monitor:
                    meta["monitor"] = monitor
                    score = scores.get(real)
                    if score is None and "best" in names:
                        score = getattr(cb, "best_model_score", None)
                    if score is not None:
                        meta["score"] = float(score)
                        meta[monitor] = float(score)
                if self._step is not None:
                    meta["step"] = self._step
                registry.save_model(self._model_name, real, meta,
                                    tags={"run_id": run.id})
                self._saved[real] = stamp
