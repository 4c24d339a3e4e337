"""How MLflow's model maps onto synadb's, for the shim (:mod:`.mlflow`)
and the ``synadb://`` plugin: tracking URIs, statuses, system tags, metric
times, and MLflow's error type.  Needs no mlflow import."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from ..errors import InvalidArgument, KeyNotFound, SynaError
from ..tracking import ExperimentTracker, RunStatus

DEFAULT_EXPERIMENT = "Default"
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_PATH = "mlruns.db"
# MLflow's status strings <-> ours.
TO_MLFLOW_STATUS = {RunStatus.RUNNING: "RUNNING", RunStatus.COMPLETED: "FINISHED",
                    RunStatus.FAILED: "FAILED", RunStatus.KILLED: "KILLED"}
FROM_MLFLOW_STATUS = {"RUNNING": RunStatus.RUNNING, "SCHEDULED": RunStatus.RUNNING,
                      "FINISHED": RunStatus.COMPLETED, "FAILED": RunStatus.FAILED,
                      "KILLED": RunStatus.KILLED}
# Tags that are really fields of the run, or synadb's bookkeeping.
RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"
LABELS_TAG = "synadb.labels"
LIFECYCLE_TAG = "synadb.lifecycle_stage"
VIRTUAL_TAGS = (RUN_NAME_TAG, PARENT_TAG, LABELS_TAG, LIFECYCLE_TAG)
# Run fields MLflow has and synadb's run does not, kept as tags MLflow never shows.
USER_TAG = "synadb.user_id"
STATUS_TAG = "synadb.status"  # only where synadb's status cannot say it (SCHEDULED)
ARTIFACT_TAG = "synadb.artifact_uri"  # only where artifacts live outside the file
DELETED_TAG = "synadb.deleted_time"
NO_NAME_TAG = "synadb.no_run_name_tag"  # the mlflow.runName tag was deleted (the name stays)
HIDDEN_TAGS = frozenset((LIFECYCLE_TAG, USER_TAG, STATUS_TAG, ARTIFACT_TAG, DELETED_TAG,
                         NO_NAME_TAG))
# Shim-owned keys for what the tracker and registry do not model (experiment
# tags added later, deleted experiments, registered models with no version).
MODEL_META = "mlflow/model/"


class MlflowException(SynaError):
    """MLflow's one error type, with its ``error_code`` strings."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


class _NotFound(MlflowException, KeyNotFound):
    "MLflow's RESOURCE_DOES_NOT_EXIST; still a synadb KeyNotFound."


class _InvalidParameter(MlflowException, InvalidArgument):
    "MLflow's INVALID_PARAMETER_VALUE; still a synadb InvalidArgument."


def not_found(message: str) -> MlflowException:
    return _NotFound(message, "RESOURCE_DOES_NOT_EXIST")


def bad_parameter(message: str) -> MlflowException:
    return _InvalidParameter(message, "INVALID_PARAMETER_VALUE")


class ViewType:
    """Which runs or experiments a search sees (MLflow's constants)."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

# ----------------------------------------------------------------- mapping
def parse_tracking_uri(uri: str | os.PathLike[str]) -> str:
    """The file path named by a tracking URI.

    Accepts a plain path, ``synadb:///abs/path.db``, ``synadb:rel.db``,
    ``file:///abs/path.db`` and ``file:rel.db``.

    >>> parse_tracking_uri("synadb:///tmp/x.db")
    '/tmp/x.db'
    >>> parse_tracking_uri("file:runs.db") == os.path.abspath("runs.db")
    True
    """
    text = os.fspath(uri)
    if not isinstance(text, str) or not text:
        raise InvalidArgument(f"a tracking URI must be a non-empty str, got {uri!r}")
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme in ("synadb", "file"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(f"tracking URI {text!r} names a host; synadb files are "
                                  "local: use synadb:///abs/path.db")
        path = unquote(parsed.path)
        if not path:
            raise InvalidArgument(f"tracking URI {text!r} names no file")
        if path.startswith("//"):  # synadb:////abs/x.db, the sqlite idiom f"...///{abs}"
            path = "/" + path.lstrip("/")
        return os.path.abspath(path)
    if len(scheme) > 1 and "/" not in scheme and not os.path.exists(text):
        raise InvalidArgument(f"unsupported tracking URI {text!r}: use a path, synadb:/// "
                              "or file:; for an MLflow server use the real mlflow package")
    return os.path.abspath(text)
def experiment_location(path: str) -> str:
    """``synadb:///abs/file.db``: where an experiment's artifacts live when
    no artifact root was given (in the file itself)."""
    return f"synadb://{Path(path).as_posix()}"


def artifact_uri_for(path: str, run_id: str) -> str:
    """``synadb:///abs/file.db/runs/<id>/artifacts``: the plugin's artifact
    repository finds the file as the longest existing prefix."""
    return f"synadb://{Path(path).as_posix()}/runs/{run_id}/artifacts"


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def mlflow_status(status: RunStatus | str) -> str:
    return TO_MLFLOW_STATUS[RunStatus.parse(status)]


def synadb_status(status: str | int) -> RunStatus:
    if isinstance(status, int):  # the protobuf enum: RUNNING=1 ... KILLED=5
        status = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}.get(
            status, str(status))
    st = FROM_MLFLOW_STATUS.get(str(status).upper())
    return st if st is not None else RunStatus.parse(status)


def mlflow_tags(run: Any) -> dict[str, str]:
    """A synadb run's tags as MLflow shows them (system tags included)."""
    tags = {k: v for k, v in run.tag_values.items() if k not in HIDDEN_TAGS}
    tags[RUN_NAME_TAG] = run.name
    if run.parent_id:
        tags[PARENT_TAG] = run.parent_id
    if run.tags:
        tags[LABELS_TAG] = ",".join(run.tags)
    return tags


def lifecycle_stage(run: Any) -> str:
    return run.tag_values.get(LIFECYCLE_TAG, "active")


def latest_metrics(tracker: ExperimentTracker, run: Any) -> dict[str, tuple[float, int, int]]:
    """name -> (value, timestamp ms, step) of the latest value in MLflow's
    sense: highest step, then latest timestamp, then largest value."""
    out = {}
    for key in tracker.list_metrics(run.id):
        h = tracker.get_metric_history(run.id, key)
        if len(h["value"]) == 0:
            continue
        i = int(np.lexsort((h["value"], h["timestamp"], h["step"]))[-1])
        out[key] = (float(h["value"][i]), int(round(h["timestamp"][i] * 1000)),
                    int(h["step"][i]))
    return out


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def artifact_children(sizes: dict[str, int], prefix: str | None
                      ) -> tuple[set[str], dict[str, int]]:
    """The direct children of folder ``prefix`` among artifact names (with
    their sizes), as MLflow lists them: (sub-folders, files with sizes)."""
    prefix = (prefix or "").strip("/")
    files: dict[str, int] = {}
    dirs: set[str] = set()
    for name, size in sizes.items():
        if prefix:
            if not name.startswith(prefix + "/"):
                continue
            rest = name[len(prefix) + 1:]
        else:
            rest = name
        head, sep, _ = rest.partition("/")
        full = f"{prefix}/{head}" if prefix else head
        if sep:
            dirs.add(full)
        else:
            files[full] = size
    return dirs, files
