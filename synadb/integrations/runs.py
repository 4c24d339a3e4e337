"""The run behind the framework loggers (Lightning, HF Trainer, Keras).

Each adapter logs to a synadb file it opens itself, or to a run the user
passes (a synadb :class:`~synadb.tracking.Run`, or a run of the MLflow-style
shim), and must open nothing until its framework says which process is the
main one.  :class:`RunTarget` is that shared piece.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from ..tracking import ExperimentTracker, Run, RunStatus

__all__ = ["RunCallback", "RunTarget", "split_tags"]


class RunTarget:
    """The run a framework logger or callback writes to.

    Nothing is opened until :meth:`open`: in a distributed run every process
    builds the logger, and only the main one (rank 0) may touch the file.  A run the caller passed is
    resolved at once (the caller already opened its file).
    """

    def __init__(self, path: str | os.PathLike[str] | None, experiment: str,
                 run_name: str | None, tags: Sequence[str] | Mapping[str, Any] | None,
                 run: Any) -> None:
        if path is None and run is None:
            raise errors.InvalidArgument("give the synadb file to log to (a path), or run= "
                                         "an existing run")
        self.path = os.path.abspath(os.fspath(path)) if path is not None else None
        self.experiment = experiment
        self.run_name = run_name
        self.tags = tags
        self.tracker: ExperimentTracker | None = None  # ours to close
        self.run: Run | None = None
        self.run_id: str | None = None
        self.owns_run = run is None
        self.ended = False  # finalize ended our run (a later log resumes it)
        if run is not None:
            self._adopt(run)

    def _adopt(self, run: Any) -> None:
        if isinstance(run, Run):
            self.run, self.run_id = run, run.id
            self.experiment = run.experiment
            return
        info = getattr(run, "info", None)
        run_id = getattr(info, "run_id", None)
        if not isinstance(run_id, str):
            raise errors.InvalidType(
                "run= takes a synadb Run (Experiment.start_run()) or a run of "
                f"synadb.integrations.mlflow (mlflow.start_run()), got {type(run).__name__}")
        # A run of the MLflow-style shim: log through the shim's own tracker on
        # the file the run lives in (its artifact URI names it), so both APIs
        # share one handle.
        from . import mlflow as shim

        uri = getattr(info, "artifact_uri", "") or ""
        tail = f"/runs/{run_id}/artifacts"
        uri = uri[: -len(tail)] if uri.startswith("synadb:") and uri.endswith(tail) \
            else shim.get_tracking_uri()
        client = shim.MlflowClient(uri)
        self.path = client.path
        self.run, self.run_id = client.tracker.get_run(run_id), run_id
        self.experiment = self.run.experiment

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (ddp_spawn sends the Trainer to its workers): open handles
        # stay behind; the copy reopens the file and finds the run by its id.
        state = dict(self.__dict__)
        state["tracker"] = state["run"] = None
        return state

    def open(self) -> Run:
        """The run, opening the file and starting it if needed."""
        if self.run is not None:
            return self.run
        if self.path is None:
            raise errors.InvalidArgument("a copy of the logger cannot reopen a Run passed "
                                         "without its file: pass the path with run=")
        tracker = self.tracker = ExperimentTracker(self.path)
        if self.run_id is None:
            labels, values = split_tags(self.tags)
            self.run_id = tracker.start_run(self.experiment, labels, name=self.run_name,
                                            tag_values=values)
        self.run = tracker.get_run(self.run_id)
        return self.run

    def writing(self) -> Run:
        """The run, to log to: a run finalize ended is running again
        (``trainer.fit`` then ``trainer.test`` log into one run)."""
        run = self.open()
        if self.ended:
            run.end(RunStatus.RUNNING)
            self.ended = False
        return run

    def finish(self, status: RunStatus, error: str | None = None) -> None:
        """End a run we started, and close the file if we opened it."""
        if self.run is None:
            return
        if self.owns_run:
            self.run.end(status, error=error)
            self.ended = True
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
            self.run = None


def split_tags(tags: Sequence[str] | Mapping[str, Any] | None
                ) -> tuple[list[str], dict[str, Any]]:
    """Tags as run labels (a list) or key-value tags (a dict)."""
    if tags is None:
        return [], {}
    if isinstance(tags, Mapping):
        return [], dict(tags)
    if isinstance(tags, str):
        return [tags], {}
    return list(tags), {}


class RunCallback:
    """What the Keras and HF callbacks share: ``finish`` and, since their
    frameworks have no crash hook, a ``with callback:`` block that ends the
    run Failed (Killed on Ctrl-C) with the error when training raises.
    The class using it keeps its :class:`RunTarget` in ``self._target``."""

    _target: RunTarget

    @property
    def run(self) -> Run | None:
        """The synadb run being logged to (None before training starts and
        after a run this callback started has ended: read it back by ``run_id``)."""
        return self._target.run

    @property
    def run_id(self) -> str | None:
        return self._target.run_id

    def finish(self, status: RunStatus | str = RunStatus.COMPLETED) -> None:
        """End the run (if this callback started it) with ``status``."""
        self._target.finish(RunStatus.parse(status))

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or self._target.run is None:
            return  # no error, or the run never started or already ended
        status = RunStatus.KILLED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
        self._target.finish(status, error=f"{exc_type.__name__}: {exc}")
