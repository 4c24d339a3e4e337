"""MLflow's fluent API and ``MlflowClient`` over a synadb file, without mlflow.

Swap one import and a typical MLflow training script logs into one synadb
file (no server, no ``mlruns/`` tree)::

    import synadb.integrations.mlflow as mlflow

    mlflow.set_tracking_uri("synadb:///abs/path/experiments.db")  # or a plain path
    mlflow.set_experiment("mnist")
    with mlflow.start_run(run_name="baseline"):
        mlflow.log_params({"lr": 0.01, "epochs": 3})
        for epoch in range(3):
            mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_dict({"layers": [64, 10]}, "config.json")

    df = mlflow.search_runs(filter_string="metrics.loss < 0.5 and params.lr = '0.01'",
                            order_by=["metrics.loss ASC"])

This module never imports mlflow: its objects (``Run`` with ``.info`` and
``.data``, ``Metric``, ``Experiment``, ``FileInfo``, ``ModelVersion``...) are
small classes with MLflow's attribute names.  The runs are plain synadb runs:
``ExperimentTracker(path)`` sees them, and with the real mlflow installed the
``synadb://`` plugin (:mod:`synadb.integrations.mlflow_store`) serves them to
MLflow's own UI.

How MLflow's model maps onto synadb's (the plugin and ``synadb mlflow-push``
use the same mapping):

* experiment ids are derived from the name (``"0"`` is ``Default``), so any
  process that opens the file agrees on them without storing a table;
* statuses FINISHED, FAILED, KILLED and RUNNING are our Completed, Failed,
  Killed and Running;
* MLflow's key-value tags are a run's ``tag_values``; the system tags
  ``mlflow.runName`` and ``mlflow.parentRunId`` are the run's name and parent,
  and synadb's label list shows as the tag ``synadb.labels``;
* metric timestamps are milliseconds here (MLflow's unit) and seconds in the
  file; the "latest" value of a metric is the one at the highest step, then
  the latest timestamp, as MLflow defines it;
* deleting a run through this API is MLflow's soft delete (restorable), kept
  in the hidden tag ``synadb.lifecycle_stage``;
* registered models are :class:`~synadb.registry.ModelRegistry` models in the
  same file; stage ``None`` is our Development.
"""

from __future__ import annotations

import atexit
import base64
import functools
import getpass
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from ..errors import InvalidArgument, KeyNotFound, SynaError
from ..registry import STAGES, ModelRegistry, canonical_stage
from ..tracking import ExperimentTracker, RunStatus, flatten_params
from .mlflow_experiments import ExperimentCatalog, catalog

__all__ = [
    "set_tracking_uri", "get_tracking_uri", "set_experiment", "create_experiment",
    "get_experiment", "get_experiment_by_name", "search_experiments", "start_run", "end_run",
    "active_run", "last_active_run", "get_run", "log_param", "log_params", "log_metric",
    "log_metrics", "set_tag", "set_tags", "delete_tag", "log_dict", "log_text", "log_artifact",
    "log_artifacts", "log_figure", "log_image", "get_artifact_uri", "search_runs",
    "MlflowClient", "MlflowException", "ActiveRun", "Run", "RunInfo", "RunData", "Metric",
    "Param", "RunTag", "Experiment", "FileInfo", "RegisteredModel", "ModelVersion",
    "ViewType", "RunStatus", "parse_tracking_uri", "experiment_id_for",
]

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
HIDDEN_TAGS = frozenset((LIFECYCLE_TAG, "synadb.user_id", "synadb.status",
                         "synadb.artifact_uri", "synadb.deleted_time",
                         "synadb.no_run_name_tag"))
# Shim-owned keys for what the tracker and registry do not model (experiment
# tags added later, deleted experiments, registered models with no version).
_MODEL_META = "mlflow/model/"


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


def _not_found(message: str) -> MlflowException:
    return _NotFound(message, "RESOURCE_DOES_NOT_EXIST")


def _bad(message: str) -> MlflowException:
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


def experiment_id_for(name: str, tracking_uri: str | os.PathLike[str] | None = None) -> str:
    """The MLflow experiment id of experiment ``name`` in the file at
    ``tracking_uri`` (the current tracking URI by default): "0" for Default,
    else the number MLflow gave it (see :mod:`.mlflow_experiments`)."""
    if name == DEFAULT_EXPERIMENT:
        return DEFAULT_EXPERIMENT_ID
    path = parse_tracking_uri(tracking_uri) if tracking_uri is not None else _STATE.path()
    eid = catalog(_STATE.tracker(path)).id_of(name)
    if eid is None:
        raise _not_found(f"no experiment named {name!r} in {path!r}")
    return eid


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


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


# ----------------------------------------------------------------- entities
class _Entity:
    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"<{type(self).__name__}: {body}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __iter__(self):  # MLflow entities iterate as (name, value) pairs
        return ((k, getattr(self, k)) for k in self.__slots__)

    def to_dictionary(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Metric(_Entity):
    """One metric value: ``key value timestamp (ms) step``."""

    __slots__ = ("key", "value", "timestamp", "step")

    def __init__(self, key: str, value: float, timestamp: int, step: int) -> None:
        self.key, self.value, self.timestamp, self.step = key, value, timestamp, step


class Param(_Entity):
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


class RunTag(_Entity):
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


class RunInfo(_Entity):
    __slots__ = ("run_id", "experiment_id", "run_name", "user_id", "status", "start_time",
                 "end_time", "artifact_uri", "lifecycle_stage")

    def __init__(self, run_id: str, experiment_id: str, run_name: str, user_id: str,
                 status: str, start_time: int | None, end_time: int | None,
                 artifact_uri: str, lifecycle_stage: str = "active") -> None:
        self.run_id, self.experiment_id, self.run_name = run_id, experiment_id, run_name
        self.user_id, self.status, self.start_time = user_id, status, start_time
        self.end_time, self.artifact_uri = end_time, artifact_uri
        self.lifecycle_stage = lifecycle_stage

    @property
    def run_uuid(self) -> str:
        return self.run_id


class RunData(_Entity):
    __slots__ = ("metrics", "params", "tags")

    def __init__(self, metrics: dict[str, float], params: dict[str, str],
                 tags: dict[str, str]) -> None:
        self.metrics, self.params, self.tags = metrics, params, tags


class Run(_Entity):
    """``run.info`` (RunInfo) and ``run.data`` (RunData), as in MLflow."""

    __slots__ = ("info", "data")

    def __init__(self, info: RunInfo, data: RunData) -> None:
        self.info, self.data = info, data

    def to_dictionary(self) -> dict[str, Any]:
        return {"info": self.info.to_dictionary(), "data": self.data.to_dictionary()}


class ActiveRun(Run):
    """What ``start_run`` returns: a Run that ends itself on ``with`` exit
    (FINISHED, or FAILED on an exception, KILLED on Ctrl-C)."""

    __slots__ = ()

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        stack = _stack()
        if self.info.run_id in stack:
            # Ending this run ends the nested runs still open under it too.
            while stack and stack[-1] != self.info.run_id:
                end_run(status)
            end_run(status)
        return False


class Experiment(_Entity):
    __slots__ = ("experiment_id", "name", "artifact_location", "lifecycle_stage", "tags",
                 "creation_time", "last_update_time")

    def __init__(self, experiment_id: str, name: str, artifact_location: str,
                 lifecycle_stage: str, tags: dict[str, str], creation_time: int | None,
                 last_update_time: int | None) -> None:
        self.experiment_id, self.name = experiment_id, name
        self.artifact_location, self.lifecycle_stage = artifact_location, lifecycle_stage
        self.tags, self.creation_time = tags, creation_time
        self.last_update_time = last_update_time


class FileInfo(_Entity):
    __slots__ = ("path", "is_dir", "file_size")

    def __init__(self, path: str, is_dir: bool, file_size: int | None) -> None:
        self.path, self.is_dir, self.file_size = path, is_dir, file_size


class ModelVersion(_Entity):
    """A registered model version as MLflow shows it: ``version`` is a str
    and ``current_stage`` is None/Staging/Production/Archived."""

    __slots__ = ("name", "version", "creation_timestamp", "last_updated_timestamp",
                 "description", "user_id", "current_stage", "source", "run_id", "status",
                 "status_message", "tags", "run_link", "aliases")

    def __init__(self, name: str, version: str, creation_timestamp: int,
                 last_updated_timestamp: int, description: str, current_stage: str,
                 source: str, run_id: str | None, tags: dict[str, str]) -> None:
        self.name, self.version = name, version
        self.creation_timestamp = creation_timestamp
        self.last_updated_timestamp = last_updated_timestamp
        self.description, self.user_id = description, None
        self.current_stage, self.source, self.run_id = current_stage, source, run_id
        self.status, self.status_message = "READY", None
        self.tags, self.run_link, self.aliases = tags, None, []


class RegisteredModel(_Entity):
    __slots__ = ("name", "creation_timestamp", "last_updated_timestamp", "description",
                 "latest_versions", "tags", "aliases")

    def __init__(self, name: str, creation_timestamp: int | None,
                 last_updated_timestamp: int | None, description: str,
                 latest_versions: list[ModelVersion], tags: dict[str, str]) -> None:
        self.name, self.creation_timestamp = name, creation_timestamp
        self.last_updated_timestamp, self.description = last_updated_timestamp, description
        self.latest_versions, self.tags, self.aliases = latest_versions, tags, {}


def mlflow_stage(stage: str) -> str:
    return "None" if stage == "Development" else stage


# ------------------------------------------------------------ search filter
_TOKEN = re.compile(r"""\s*(?:
    (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<lp>\() | (?P<rp>\)) | (?P<comma>,)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<bt>`[^`]*`)
  | (?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])
  | (?P<word>[A-Za-z_][\w.\-/:]*)
)""", re.X)
_PREFIXES = {"metrics": "metric", "metric": "metric", "params": "param", "param": "param",
             "tags": "tag", "tag": "tag", "attributes": "attr", "attribute": "attr",
             "attr": "attr", "run": "attr", "datasets": "dataset", "dataset": "dataset"}
_NUMERIC_ATTRS = {"start_time", "end_time", "creation_time", "last_update_time"}
_ATTR_ALIASES = {"run_uuid": "run_id", "id": "run_id", "name": "run_name",
                 "created": "start_time", "Created": "start_time"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _bad(f"cannot parse the search filter at {text[pos:pos + 20]!r} "
                       f"(in {text!r})")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(tok: str) -> str:
    q = tok[0]
    body = tok[1:-1]
    if q == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    """MLflow's search grammar: ``<entity>.<key> <op> <value>`` clauses joined
    by AND (OR and parentheses also work).  Entities: metrics, params, tags,
    attributes (or a bare attribute name: status, run_name, start_time, ...).
    Keys with dots or spaces go in backticks or double quotes."""

    def __init__(self, text: str, default_kind: str = "attr") -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.default_kind = default_kind

    def peek(self, n: int = 0) -> tuple[str, str] | None:
        j = self.i + n
        return self.toks[j] if j < len(self.toks) else None

    def word(self, *words: str) -> bool:
        t = self.peek()
        if t is not None and t[0] == "word" and t[1].upper() in words:
            self.i += 1
            return True
        return False

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise _bad("the search filter ends too early")
        self.i += 1
        return t

    def parse(self) -> Callable[[Any], bool]:
        fn = self.expr()
        if self.peek() is not None:
            raise _bad(f"unexpected {self.peek()[1]!r} in the search filter")  # type: ignore[index]
        return fn

    def expr(self) -> Callable[[Any], bool]:
        parts = [self.conj()]
        while self.word("OR"):
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def conj(self) -> Callable[[Any], bool]:
        parts = [self.atom()]
        while self.word("AND"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def atom(self) -> Callable[[Any], bool]:
        t = self.peek()
        if t is not None and t[0] == "lp":
            self.i += 1
            fn = self.expr()
            if self.take()[0] != "rp":
                raise _bad("a '(' in the search filter is not closed")
            return fn
        return self.comparison()

    def ident(self) -> tuple[str, str]:
        kind, text = self.take()
        if kind in ("bt", "str"):  # a quoted bare attribute
            return self.default_kind, _unquote(text) if kind == "str" else text[1:-1]
        if kind != "word":
            raise _bad(f"expected a name like metrics.acc, got {text!r}")
        head, dot, rest = text.partition(".")
        entity = _PREFIXES.get(head.lower()) if dot else None
        if entity is None:
            return self.default_kind, text
        if not rest:
            kind2, key = self.take()
            if kind2 == "bt":
                rest = key[1:-1]
            elif kind2 == "str":
                rest = _unquote(key)
            else:
                raise _bad(f"expected a key after {text!r}")
        elif rest.startswith("`") or rest.startswith('"'):
            rest = rest.strip('`"')
        return entity, rest

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return _unquote(text)
        if kind == "num":
            return float(text)
        if kind == "bt":
            return text[1:-1]
        if kind == "word" and text.upper() in ("TRUE", "FALSE"):
            return text.lower()
        raise _bad(f"expected a value in the search filter, got {text!r}")

    def comparison(self) -> Callable[[Any], bool]:
        entity, key = self.ident()
        if entity == "attr":
            key = _ATTR_ALIASES.get(key, key)
        if self.word("IS"):
            negate = self.word("NOT")
            if not self.word("NULL"):
                raise _bad("expected NULL after IS")
            return lambda r: (_lookup(r, entity, key) is None) != negate
        negate = self.word("NOT")
        if self.word("IN"):
            if not (entity == "dataset" or (entity == "attr" and key == "run_id")
                    or (entity == "exp" and key in ("run_id", "name", "version_number"))):
                raise _bad(f"Invalid comparator '{'NOT IN' if negate else 'IN'}' for "
                           f"{entity} {key!r}: MLflow accepts IN only on run_id and "
                           "dataset fields")
            if self.take()[0] != "lp":
                raise _bad("IN needs a parenthesised list of values")
            values = []
            while True:
                values.append(self.value())
                sep = self.take()[0]
                if sep == "rp":
                    break
                if sep != "comma":
                    raise _bad("the values after IN are separated by commas")
            want = {_as_text(v) for v in values}

            def member(r: Any) -> bool:
                have = _lookup(r, entity, key)
                return have is not None and ((_as_text(have) in want) != negate)
            return member
        if self.word("LIKE", "ILIKE"):
            fold = self.toks[self.i - 1][1].upper() == "ILIKE"
            pattern = _like(_as_text(self.value()), fold)

            def like(r: Any) -> bool:
                have = _lookup(r, entity, key)
                return have is not None and (bool(pattern.fullmatch(_as_text(have))) != negate)
            return like
        if negate:
            raise _bad("NOT must be followed by IN, LIKE or ILIKE")
        kind, op = self.take()
        if kind != "op":
            raise _bad(f"expected a comparison after {key!r}, got {op!r}")
        op = {"==": "=", "<>": "!="}.get(op, op)
        want = self.value()
        numeric = entity == "metric" or (entity in ("attr", "exp") and key in _NUMERIC_ATTRS)
        if numeric:
            try:
                num = float(want)
            except ValueError:
                raise _bad(f"{key!r} is compared with a number, got {want!r}") from None
            return lambda r: _cmp(_lookup(r, entity, key), op, num, True)
        if op not in ("=", "!="):
            raise _bad(f"{entity} {key!r} is a string: compare it with =, !=, LIKE, ILIKE "
                       f"or IN, not {op}")
        text = _as_text(want)
        return lambda r: _cmp(_lookup(r, entity, key), op, text, False)


def _as_text(v: Any) -> str:
    # An unquoted 1 means the string "1", not "1.0".
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v)


def _like(pattern: str, fold: bool) -> re.Pattern[str]:
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(rx, re.S | (re.I if fold else 0))


def _cmp(have: Any, op: str, want: Any, numeric: bool) -> bool:
    if have is None:
        return False
    if numeric:
        try:
            a = float(have)
        except (TypeError, ValueError):
            return False
        if math.isnan(a):
            return False
    else:
        a = str(have)
    if op == "=":
        return bool(a == want)
    if op == "!=":
        return bool(a != want)
    if op == "<":
        return bool(a < want)
    if op == "<=":
        return bool(a <= want)
    if op == ">":
        return bool(a > want)
    if op == ">=":
        return bool(a >= want)
    raise _bad(f"unknown comparator {op!r}")


def _lookup(row: Any, entity: str, key: str) -> Any:
    if entity == "metric":
        return row.data.metrics.get(key)
    if entity == "param":
        return row.data.params.get(key)
    if entity == "tag":
        return row.data.tags.get(key)
    if entity == "attr":
        if key == "status":
            return row.info.status
        if key == "run_name":
            return row.info.run_name
        if hasattr(row.info, key):
            return getattr(row.info, key)
        raise _bad(f"unknown run attribute {key!r}; use run_id, run_name, status, "
                   "start_time, end_time, artifact_uri, user_id or lifecycle_stage")
    if entity == "exp":  # experiments: name, creation_time, tags.x
        if key == "name" or hasattr(row, key):
            return getattr(row, key)
        raise _bad(f"unknown experiment attribute {key!r}")
    raise _bad(f"cannot search on {entity}s here")


def compile_filter(filter_string: str | None, default_kind: str = "attr"
                   ) -> Callable[[Any], bool]:
    """A predicate over MLflow-shaped runs for an MLflow filter string."""
    if not filter_string or not filter_string.strip():
        return lambda r: True
    return _Parser(filter_string, default_kind).parse()


def _order_keys(order_by: Sequence[str] | None, default_kind: str = "attr"
                ) -> list[tuple[str, str, bool]]:
    out = []
    for clause in order_by or ():
        p = _Parser(clause, default_kind)
        entity, key = p.ident()
        if entity == "attr":
            key = _ATTR_ALIASES.get(key, key)
        asc = True
        if p.word("DESC"):
            asc = False
        else:
            p.word("ASC")
        if p.peek() is not None:
            raise _bad(f"cannot parse order_by clause {clause!r}")
        out.append((entity, key, asc))
    return out


def sort_rows(rows: list[Any], order_by: Sequence[str] | None,
              default: Sequence[tuple[str, str, bool]] = (("attr", "start_time", False),
                                                          ("attr", "run_id", True)),
              kind: str = "attr", created: Mapping[str, int] | None = None) -> list[Any]:
    """Stable multi-key sort; a missing or NaN value goes last either way.

    ``created`` maps run ids to their creation order (the tracker's catalog
    order).  Start times are milliseconds, so runs started in one
    millisecond tie; with ``created`` a start time sorts as (start time,
    creation order), as if the clock were finer: runs in one millisecond
    come in the order they were created under ``start_time ASC`` and newest
    first under the default ``start_time DESC``, never by their random ids.
    """
    keys = _order_keys(order_by, kind) + list(default)
    for entity, key, asc in reversed(keys):
        def value(r: Any, entity: str = entity, key: str = key) -> Any:
            v = _lookup(r, entity, key)
            if isinstance(v, float) and math.isnan(v):
                return None
            if created is not None and v is not None and entity == "attr" \
                    and key == "start_time":
                return (v, created.get(r.info.run_id, -1))
            return v
        present = [r for r in rows if value(r) is not None]
        missing = [r for r in rows if value(r) is None]
        present.sort(key=value, reverse=not asc)
        rows = present + missing
    return rows


# ------------------------------------------------------------------ paging
class PagedList(list):
    """A page of results with MLflow's ``token`` for the next (None on the last)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


def _page(rows: list[Any], max_results: int | None, page_token: str | None) -> PagedList:
    """One page of ``rows``; tokens are MLflow's (base64 JSON of an offset)."""
    offset = 0
    if page_token:
        try:
            offset = int(json.loads(base64.b64decode(page_token))["offset"])
        except (ValueError, KeyError, TypeError):
            raise _bad(f"Invalid page token, could not base64-decode: {page_token!r}") from None
    if max_results is None:
        return PagedList(rows[offset:], None)
    stop = offset + max_results
    token = None
    if stop < len(rows):
        token = base64.b64encode(json.dumps({"offset": stop}).encode()).decode()
    return PagedList(rows[offset:stop], token)


# ------------------------------------------------------------------ client
def _trackers() -> dict[str, ExperimentTracker]:
    return _STATE.trackers


def _as_mlflow_errors(cls: type) -> type:
    """Make each public method raise MlflowException, as MLflow's client
    does, where synadb raised KeyNotFound or InvalidArgument (both stay in
    the chain, and MlflowException is a SynaError too)."""

    def translated(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def method(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except MlflowException:
                raise
            except KeyNotFound as e:
                raise _not_found(str(e).strip("'\"")) from e
            except InvalidArgument as e:
                raise _bad(str(e)) from e
        return method

    for name, fn in list(vars(cls).items()):
        if not name.startswith("_") and callable(fn) and not isinstance(fn, type):
            setattr(cls, name, translated(fn))
    return cls


@_as_mlflow_errors
class MlflowClient:
    """MLflow's ``MlflowClient`` over a synadb file.

    >>> client = MlflowClient("synadb:///tmp/doctest-client.db")   # doctest: +SKIP
    >>> run = client.create_run(client.create_experiment("x"))       # doctest: +SKIP
    >>> client.log_metric(run.info.run_id, "loss", 0.5, step=1)      # doctest: +SKIP
    >>> [m.value for m in client.get_metric_history(run.info.run_id, "loss")]  # doctest: +SKIP
    [0.5]
    """

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        self.path = parse_tracking_uri(tracking_uri) if tracking_uri else _STATE.path()
        self._tracking_uri = tracking_uri or get_tracking_uri()

    # -- handles -------------------------------------------------------
    @property
    def tracker(self) -> ExperimentTracker:
        return _STATE.tracker(self.path)

    @property
    def registry(self) -> ModelRegistry:
        return _STATE.registry(self.path)

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    # -- experiments ---------------------------------------------------
    @property
    def catalog(self) -> ExperimentCatalog:
        return catalog(self.tracker)

    def _names_by_id(self) -> dict[str, str]:
        return {i: d["name"] for i, d in self.catalog.table().items()}

    def _exp_doc(self, experiment_id: str | int) -> tuple[str, dict[str, Any]]:
        eid = str(experiment_id)
        doc = self.catalog.get(eid)
        if doc is None:
            raise _not_found(f"No Experiment with id={eid} exists")
        return eid, doc

    def _exp_name(self, experiment_id: str | int) -> str:
        return self._exp_doc(experiment_id)[1]["name"]

    def _experiment(self, eid: str, doc: Mapping[str, Any]) -> Experiment:
        return Experiment(eid, doc["name"], doc.get("artifact_location")
                          or experiment_location(self.path), doc["lifecycle_stage"],
                          dict(doc["tags"]), ms(doc["created"]), ms(doc["updated"]))

    def create_experiment(self, name: str, artifact_location: str | None = None,
                          tags: Mapping[str, Any] | None = None) -> str:
        if not isinstance(name, str) or not name:
            raise _bad(f"an experiment name must be a non-empty str, got {name!r}")
        try:
            return self.catalog.create(name, artifact_location,
                                       {str(k): str(v) for k, v in (tags or {}).items()})
        except ValueError:
            raise MlflowException(f"Experiment(name={name}) already exists.",
                                  "RESOURCE_ALREADY_EXISTS") from None

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._experiment(*self._exp_doc(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        eid = self.catalog.id_of(name)
        return None if eid is None else self.get_experiment(eid)

    def search_experiments(self, view_type: int = ViewType.ACTIVE_ONLY,
                           max_results: int | None = None, filter_string: str | None = None,
                           order_by: Sequence[str] | None = None,
                           page_token: str | None = None) -> list[Experiment]:
        exps = [self._experiment(i, d) for i, d in self.catalog.table().items()]
        exps = [e for e in exps if _view_ok(e.lifecycle_stage, view_type)]
        pred = compile_filter(filter_string, "exp")
        exps = [e for e in exps if pred(_ExpRow(e))]
        rows = sort_rows([_ExpRow(e) for e in exps], order_by,
                         default=(("exp", "creation_time", False),
                                  ("exp", "experiment_id", False)), kind="exp")
        out = [r.exp for r in rows]
        return out[:max_results] if max_results is not None else out

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self.catalog.set_tag(self._exp_doc(experiment_id)[0], str(key), str(value))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        eid, doc = self._exp_doc(experiment_id)
        if key not in doc["tags"]:
            raise _not_found(f"No tag with name: {key} in experiment with id {eid}")
        self.catalog.set_tag(eid, key, None)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        eid, doc = self._exp_doc(experiment_id)
        if doc["lifecycle_stage"] != "active":
            raise MlflowException("Cannot rename a non-active experiment.", "INVALID_STATE")
        if new_name != doc["name"]:
            if self.catalog.id_of(new_name) is not None:
                raise MlflowException(f"Experiment(name={new_name}) already exists.",
                                      "RESOURCE_ALREADY_EXISTS")
            self.catalog.rename(eid, new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, "deleted")

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, "active")

    def _set_experiment_stage(self, experiment_id: str, stage: str) -> None:
        eid, doc = self._exp_doc(experiment_id)
        if doc["lifecycle_stage"] == stage:
            raise _not_found(f"No Experiment with id={eid} exists")
        self.catalog.update(eid, lifecycle_stage=stage)
        for run in self.tracker.list_runs(doc["name"]):  # its runs go (and return) with it
            self.tracker.set_tag(run.id, LIFECYCLE_TAG, stage)

    # -- runs ------------------------------------------------------------
    def _mlflow_run(self, rid: str) -> Run:
        try:
            run = self.tracker.get_run(rid)
        except KeyNotFound:
            raise _not_found(f"Run {rid!r} not found in {self.path!r}") from None
        return to_mlflow_run(self.tracker, run, self.path)

    def create_run(self, experiment_id: str | None = None, start_time: int | None = None,
                   tags: Mapping[str, Any] | None = None, run_name: str | None = None) -> Run:
        name = self._exp_name(experiment_id) if experiment_id is not None \
            else DEFAULT_EXPERIMENT
        tags = {str(k): str(v) for k, v in (tags or {}).items()}
        run_name = run_name or tags.get(RUN_NAME_TAG)
        parent = tags.get(PARENT_TAG)
        for k in VIRTUAL_TAGS:
            tags.pop(k, None)
        rid = self.tracker.start_run(name, name=run_name, tag_values=tags, parent_id=parent,
                                     start_time=None if start_time is None else start_time / 1000)
        return self._mlflow_run(rid)

    def get_run(self, run_id: str) -> Run:
        return self._mlflow_run(run_id)

    def set_terminated(self, run_id: str, status: str | None = "FINISHED",
                       end_time: int | None = None) -> None:
        self.tracker.end_run(run_id, synadb_status(status or "FINISHED"),
                             end_time=None if end_time is None else end_time / 1000)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        if name:
            self.tracker.rename_run(run_id, name)
        if status:
            self.tracker.end_run(run_id, synadb_status(status))

    def delete_run(self, run_id: str) -> None:
        self.tracker.set_tag(run_id, LIFECYCLE_TAG, "deleted")

    def restore_run(self, run_id: str) -> None:
        self.tracker.set_tag(run_id, LIFECYCLE_TAG, "active")

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None
                  ) -> Any:
        self.log_batch(run_id, params=[Param(key, value)])
        return value

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int | None = None,
                   step: int | None = None, synchronous: bool | None = None,
                   **kwargs: Any) -> None:
        self.tracker.log_metric(run_id, key, value, 0 if step is None else step,
                                None if timestamp is None else timestamp / 1000)

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                  tags: Iterable[Any] = (), synchronous: bool | None = None) -> None:
        """Params, tags and metrics in one call; a param logged again with a
        different value is refused, as MLflow refuses it."""
        tracker = self.tracker
        run = tracker.get_run(run_id)
        # MLflow stores str(value): str(np.float32(0.1)) is "0.1", where
        # flatten_params would give "0.10000000149011612".
        new = flatten_params({p.key: p.value if isinstance(p.value, Mapping) else str(p.value)
                              for p in params})
        for k, v in new.items():
            old = run.params.get(k)
            if old is not None and old != v:
                raise _bad(f"Changing param values is not allowed. Param with key={k!r} was "
                           f"already logged with value={old!r} for run ID={run_id!r}. "
                           f"Attempted logging new value {v!r}.")
        if new:
            tracker.log_params(run_id, new)
        for t in tags:
            _set_tag(tracker, run_id, t.key, t.value)
        for m in metrics:
            tracker.log_metric(run_id, m.key, m.value, 0 if m.step is None else m.step,
                               None if m.timestamp is None else m.timestamp / 1000)

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None
                ) -> None:
        _set_tag(self.tracker, run_id, key, value)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.tracker.delete_tag(run_id, key)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        try:
            h = self.tracker.get_metric_history(run_id, key)
        except KeyNotFound:
            self._mlflow_run(run_id)  # an unknown run is an error; an unknown metric is []
            return []
        return [Metric(key, v, int(round(t * 1000)), s) for v, s, t in
                zip(h["value"].tolist(), h["step"].tolist(), h["timestamp"].tolist())]

    def search_runs(self, experiment_ids: Sequence[str] | str | None = None,
                    filter_string: str = "", run_view_type: int = ViewType.ACTIVE_ONLY,
                    max_results: int = 1000, order_by: Sequence[str] | None = None,
                    page_token: str | None = None) -> list[Run]:
        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        names = (self.tracker.list_experiments() if experiment_ids is None
                 else [self._exp_name(e) for e in experiment_ids])
        pred = compile_filter(filter_string)
        runs = []
        for name in names:
            for run in self.tracker.list_runs(name):
                if not _view_ok(lifecycle_stage(run), run_view_type):
                    continue
                r = to_mlflow_run(self.tracker, run, self.path)
                if pred(r):
                    runs.append(r)
        created = {rid: i for i, rid in enumerate(self.tracker.run_ids())}
        return _page(sort_rows(runs, order_by, created=created), max_results, page_token)

    # -- artifacts -------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str | os.PathLike[str],
                     artifact_path: str | None = None) -> None:
        local = Path(local_path)
        if local.is_dir():
            return self.log_artifacts(run_id, local, _join(artifact_path, local.name))
        self.tracker.log_artifact(run_id, _join(artifact_path, local.name), local)

    def log_artifacts(self, run_id: str, local_dir: str | os.PathLike[str],
                      artifact_path: str | None = None) -> None:
        root = Path(local_dir)
        if not root.is_dir():
            raise _bad(f"{str(local_dir)!r} is not a directory")
        for dirpath, _dirs, files in os.walk(root):
            rel = Path(dirpath).relative_to(root).as_posix()
            for f in sorted(files):
                name = _join(artifact_path, _join(None if rel == "." else rel, f))
                self.tracker.log_artifact(run_id, name, Path(dirpath) / f)

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        self.tracker.log_dict(run_id, artifact_file, dictionary)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.tracker.log_text(run_id, artifact_file, text)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, *,
                   save_kwargs: Mapping[str, Any] | None = None) -> None:
        self.tracker.log_figure(run_id, artifact_file, figure)

    def log_image(self, run_id: str, image: Any, artifact_file: str | None = None,
                  key: str | None = None, step: int | None = None,
                  timestamp: int | None = None, synchronous: bool | None = None) -> None:
        if artifact_file is None:
            if key is None:
                raise _bad("log_image needs artifact_file, or key (and step)")
            artifact_file = f"images/{key}/step_{step or 0}.png"
        self.tracker.log_image(run_id, artifact_file, image)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        self._mlflow_run(run_id)
        return list_artifact_infos(self.tracker, run_id, path)

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """Write artifact ``path`` (a file or a directory) under ``dst_path``
        (a new temporary directory by default) and return the local path."""
        dst = Path(dst_path or tempfile.mkdtemp(prefix="synadb-artifacts-"))
        path = path.strip("/")
        names = self.tracker.list_artifacts(run_id)
        chosen = [n for n in names if not path or n == path or n.startswith(path + "/")]
        if not chosen:
            raise _not_found(f"run {run_id!r} has no artifact {path!r}")
        for name in chosen:
            target = dst / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.tracker.get_artifact(run_id, name))
        return str(dst / path) if path else str(dst)

    # -- model registry --------------------------------------------------
    def _model_meta(self, name: str) -> dict[str, Any] | None:
        text = self.tracker.db.get_text(_MODEL_META + name)
        return json.loads(text) if text else None

    def _model_version(self, v: Any) -> ModelVersion:
        meta = v.metadata or {}
        return ModelVersion(v.name, str(v.version), ms(v.created_at) or 0,
                            ms(max(v.created_at, v.stage_changed_at)) or 0,
                            v.description, mlflow_stage(v.stage), str(meta.get("source", "")),
                            meta.get("run_id"), dict(v.tags))

    def _registered(self, name: str) -> RegisteredModel:
        meta = self._model_meta(name)
        versions = self.registry.list_versions(name)
        if meta is None and not versions:
            raise _not_found(f"Registered Model with name={name!r} not found")
        meta = meta or {}
        created = ms(meta.get("created")) or (ms(versions[0].created_at) if versions else None)
        latest = self.get_latest_versions(name) if versions else []
        updated = max([created or 0] + [int(m.last_updated_timestamp) for m in latest])
        return RegisteredModel(name, created, updated, meta.get("description", ""), latest,
                               dict(meta.get("tags", {})))

    def create_registered_model(self, name: str, tags: Mapping[str, Any] | None = None,
                                description: str | None = None) -> RegisteredModel:
        if self._model_meta(name) is not None or self.registry.list_versions(name):
            raise MlflowException(f"Registered Model (name={name}) already exists.",
                                  "RESOURCE_ALREADY_EXISTS")
        self.tracker.db.put_text(_MODEL_META + name, json.dumps({
            "name": name, "created": time.time(), "description": description or "",
            "tags": {str(k): str(v) for k, v in (tags or {}).items()}}))
        return self._registered(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._registered(name)

    def search_registered_models(self, filter_string: str | None = None,
                                 max_results: int | None = None,
                                 order_by: Sequence[str] | None = None,
                                 page_token: str | None = None) -> list[RegisteredModel]:
        names = list(self.registry.list_models())
        for key in self.tracker.db.keys(_MODEL_META + "*"):
            if key[len(_MODEL_META):] not in names:
                names.append(key[len(_MODEL_META):])
        pred = compile_filter(filter_string, "exp")
        models = [m for m in (self._registered(n) for n in sorted(names)) if pred(_ExpRow(m))]
        return models[:max_results] if max_results is not None else models

    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             tags: Mapping[str, Any] | None = None, run_link: str | None = None,
                             description: str | None = None, **kwargs: Any) -> ModelVersion:
        """A new version whose bytes are the run artifact that ``source``
        (``runs:/<id>/<path>``) names, or the local file it names; a source
        synadb cannot read (a directory, a remote URI) is kept as metadata
        with empty bytes."""
        if self._model_meta(name) is None and not self.registry.list_versions(name):
            self.create_registered_model(name)
        data: Any = b""
        m = re.match(r"runs:/([^/]+)/(.+)", source or "")
        if m:
            run_id = run_id or m.group(1)
            if m.group(2) in self.tracker.list_artifacts(m.group(1)):
                data = self.tracker.get_artifact(m.group(1), m.group(2))
        elif source and os.path.isfile(source):
            data = source
        v = self.registry.save_model(name, data, {"source": source, "run_id": run_id},
                                     description=description or "", tags=tags)
        return self._model_version(v)

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        try:
            return self._model_version(self.registry.get_version(name, int(version)))
        except KeyNotFound:
            raise _not_found(f"Model Version (name={name}, version={version}) not found"
                             ) from None

    def transition_model_version_stage(self, name: str, version: str | int, stage: str,
                                       archive_existing_versions: bool = False
                                       ) -> ModelVersion:
        """Move a version to a stage; ``archive_existing_versions`` archives
        the other versions in that stage (Staging or Production)."""
        target = canonical_stage(stage)
        v = int(version)
        self.get_model_version(name, v)
        self.registry.set_stage(name, v, target, archive_existing=archive_existing_versions)
        if archive_existing_versions and target == "Staging":
            for other in self.registry.list_versions(name):
                if other.version != v and other.stage == "Staging":
                    self.registry.set_stage(name, other.version, "Archived")
        return self.get_model_version(name, v)

    def get_latest_versions(self, name: str, stages: Sequence[str] | None = None
                            ) -> list[ModelVersion]:
        """The highest version in each stage (every stage when ``stages`` is None)."""
        versions = self.registry.list_versions(name)
        if not versions and self._model_meta(name) is None:
            raise _not_found(f"Registered Model with name={name!r} not found")
        want = [canonical_stage(s) for s in stages] if stages else list(STAGES)
        out = []
        for stage in STAGES:
            if stage not in want:
                continue
            inside = [v for v in versions if v.stage == stage]
            if inside:
                out.append(self._model_version(max(inside, key=lambda v: v.version)))
        return sorted(out, key=lambda m: int(m.version))

    def search_model_versions(self, filter_string: str | None = None,
                              max_results: int | None = None,
                              order_by: Sequence[str] | None = None,
                              page_token: str | None = None) -> list[ModelVersion]:
        out = []
        pred = compile_filter(filter_string, "exp")
        for name in self.registry.list_models():
            for v in self.registry.list_versions(name):
                mv = self._model_version(v)
                row = _ExpRow(mv)
                if pred(row):
                    out.append(row)
        rows = sort_rows(out, order_by, kind="exp", default=(
            ("exp", "name", True), ("exp", "version_number", False)))
        return _page([r.exp for r in rows], max_results, page_token)

    def update_model_version(self, name: str, version: str | int,
                             description: str | None = None) -> ModelVersion:
        if description is not None:
            self.registry.set_description(name, int(version), description)
        return self.get_model_version(name, version)

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: Any
                              ) -> None:
        self.registry.set_tag(name, int(version), key, value)

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        self.registry.delete_tag(name, int(version), key)

    def delete_model_version(self, name: str, version: str | int) -> None:
        self.registry.delete(name, int(version))

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        meta = self._model_meta(name) or {"name": name, "created": time.time(),
                                          "description": "", "tags": {}}
        meta["tags"][str(key)] = str(value)
        self.tracker.db.put_text(_MODEL_META + name, json.dumps(meta))

    def delete_registered_model(self, name: str) -> None:
        self._registered(name)
        if self.registry.list_versions(name):
            self.registry.delete(name)
        if self.tracker.db.exists(_MODEL_META + name):
            self.tracker.db.delete(_MODEL_META + name)


class _ExpRow:
    """An experiment, model or version seen by the filter: attributes and
    ``tags.x`` (the parser's "exp" entity) resolve on the object itself."""

    def __init__(self, exp: Any) -> None:
        self.exp = exp
        self.data = RunData({}, {}, dict(getattr(exp, "tags", {}) or {}))
        self.info = exp

    def __getattr__(self, name: str) -> Any:
        if name == "version_number":  # MLflow's order_by name for a version's number
            return int(self.exp.version)
        return getattr(self.exp, name)


def _view_ok(stage: str, view_type: int | str) -> bool:
    if isinstance(view_type, str):
        view_type = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}.get(view_type.upper(), 1)
    if view_type == ViewType.ALL:
        return True
    return (stage == "deleted") == (view_type == ViewType.DELETED_ONLY)


def _join(base: str | None, name: str) -> str:
    base = (base or "").strip("/")
    return f"{base}/{name}" if base else name


def _set_tag(tracker: ExperimentTracker, run_id: str, key: str, value: Any) -> None:
    if key == RUN_NAME_TAG:
        tracker.rename_run(run_id, str(value))
    elif key == LABELS_TAG:
        tracker.add_tags(run_id, [t for t in str(value).split(",") if t])
    elif key == PARENT_TAG:
        tracker.set_tag(run_id, key, value)  # kept as a plain tag: parents are set at start
    else:
        tracker.set_tag(run_id, key, value)


def list_artifact_infos(tracker: ExperimentTracker, run_id: str,
                        path: str | None = None) -> list[FileInfo]:
    """The direct children of ``path`` among a run's artifacts, MLflow style."""
    prefix = (path or "").strip("/")
    entries = tracker.artifact_infos(run_id)
    files: dict[str, int] = {}
    dirs: set[str] = set()
    for name, info in entries.items():
        if prefix:
            if not name.startswith(prefix + "/"):
                continue
            rest = name[len(prefix) + 1:]
        else:
            rest = name
        head, sep, _ = rest.partition("/")
        full = _join(prefix, head)
        if sep:
            dirs.add(full)
        else:
            files[full] = int(info.get("size", 0))
    out = [FileInfo(d, True, None) for d in dirs] + [FileInfo(f, False, s)
                                                      for f, s in files.items()]
    return sorted(out, key=lambda f: f.path)


def to_mlflow_run(tracker: ExperimentTracker, run: Any, path: str) -> Run:
    latest = latest_metrics(tracker, run)
    tags = mlflow_tags(run)
    info = RunInfo(run.id, catalog(tracker).id_of(run.experiment) or "", run.name,
                   tags.get("mlflow.user", ""), mlflow_status(run.status),
                   ms(run.start_time), ms(run.end_time), artifact_uri_for(path, run.id),
                   lifecycle_stage(run))
    return Run(info, RunData({k: v[0] for k, v in latest.items()}, dict(run.params), tags))


# ---------------------------------------------------------- fluent state
class _State:
    def __init__(self) -> None:
        self.uri: str | None = None
        self.experiment: str | None = None
        self.trackers: dict[str, ExperimentTracker] = {}
        self.registries: dict[str, ModelRegistry] = {}
        self.local = threading.local()
        self.last_run_id: str | None = None
        self.bridged: set[str] = set()  # runs lent to real mlflow's fluent API
        self.lock = threading.Lock()

    def path(self) -> str:
        return parse_tracking_uri(get_tracking_uri())

    def tracker(self, path: str | None = None) -> ExperimentTracker:
        path = path or self.path()
        with self.lock:
            t = self.trackers.get(path)
            if t is None or t.closed:
                t = self.trackers[path] = ExperimentTracker(path)
            return t

    def registry(self, path: str | None = None) -> ModelRegistry:
        path = path or self.path()
        with self.lock:
            r = self.registries.get(path)
            if r is None or r.db.closed:
                r = self.registries[path] = ModelRegistry(path, progress=False)
            return r

    def close(self) -> None:
        with self.lock:
            for t in self.trackers.values():
                t.close()
            for r in self.registries.values():
                r.close()
            self.trackers.clear()
            self.registries.clear()


_STATE = _State()


def _stack() -> list[str]:
    stack = getattr(_STATE.local, "stack", None)
    if stack is None:
        stack = _STATE.local.stack = []
    return stack


def _client() -> MlflowClient:
    return MlflowClient()


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Log to this file from now on: a path, ``synadb:///abs/path.db`` or
    ``file:``.  Runs still active keep logging where they started."""
    text = os.fspath(uri)
    parse_tracking_uri(text)  # refuse a bad URI now, not at the first log call
    _STATE.uri = text


def get_tracking_uri() -> str:
    """The current tracking URI; without one, ``MLFLOW_TRACKING_URI`` if it
    names a file, else ``mlruns.db`` in the working directory."""
    if _STATE.uri:
        return _STATE.uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env and not env.startswith(("http:", "https:", "databricks")):
        return env
    return DEFAULT_PATH


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None
                   ) -> Experiment:
    """Make an experiment active (creating it by name if needed) and return it."""
    client = _client()
    if experiment_name is None and experiment_id is None:
        raise _bad("set_experiment needs experiment_name or experiment_id")
    if experiment_name is None:
        experiment_name = client._exp_name(experiment_id)  # type: ignore[arg-type]
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        client.create_experiment(experiment_name)
        exp = client.get_experiment_by_name(experiment_name)
    elif exp.lifecycle_stage == "deleted":
        raise _bad(f"Cannot set a deleted experiment {experiment_name!r} as the active "
                   "experiment. You can restore the experiment, or permanently delete the "
                   "experiment to create a new one.")
    _STATE.experiment = experiment_name
    return exp  # type: ignore[return-value]


def create_experiment(name: str, artifact_location: str | None = None,
                      tags: Mapping[str, Any] | None = None) -> str:
    return _client().create_experiment(name, artifact_location, tags)


def get_experiment(experiment_id: str) -> Experiment:
    return _client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return _client().get_experiment_by_name(name)


def search_experiments(view_type: int = ViewType.ACTIVE_ONLY, max_results: int | None = None,
                       filter_string: str | None = None,
                       order_by: Sequence[str] | None = None) -> list[Experiment]:
    return _client().search_experiments(view_type, max_results, filter_string, order_by)


def _active_experiment() -> str:
    env = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    return _STATE.experiment or env or DEFAULT_EXPERIMENT


def start_run(run_id: str | None = None, experiment_id: str | None = None,
              run_name: str | None = None, nested: bool = False,
              parent_run_id: str | None = None, tags: Mapping[str, Any] | None = None,
              description: str | None = None, log_system_metrics: bool | None = None
              ) -> ActiveRun:
    """Start (or with ``run_id``, resume) a run and make it active.

    Use it as ``with mlflow.start_run(): ...``.  Starting a run while another
    is active needs ``nested=True``; the new run's parent is the active one.
    """
    client = _client()
    stack = _stack()
    if stack and not nested:
        raise MlflowException(
            f"Run with UUID {stack[-1]} is already active. To start a new run, first end the "
            "current run with mlflow.end_run(). To start a nested run, call start_run with "
            "nested=True")
    parent = parent_run_id or (stack[-1] if stack and nested else None)
    if run_id is not None:
        run = client.get_run(run_id)
        if run.info.status != "RUNNING":
            client.tracker.end_run(run_id, RunStatus.RUNNING)
    else:
        if experiment_id is not None:
            exp_name = client._exp_name(experiment_id)
        else:
            exp_name = _active_experiment()
            if client.catalog.id_of(exp_name) is None:
                client.create_experiment(exp_name)
        all_tags = {"mlflow.user": _user(), "mlflow.source.name": os.path.basename(
            sys.argv[0]) if sys.argv and sys.argv[0] else "", "mlflow.source.type": "LOCAL"}
        all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
        if description:
            all_tags["mlflow.note.content"] = description
        if parent:
            all_tags[PARENT_TAG] = parent
        run = client.create_run(client.catalog.id_of(exp_name), tags=all_tags,
                                run_name=run_name)
        run_id = run.info.run_id
    stack.append(run_id)
    return ActiveRun(run.info, run.data)


def end_run(status: str = "FINISHED") -> None:
    """End the active run (the innermost one when runs are nested)."""
    stack = _stack()
    if not stack:
        return
    # Terminate first: a bad status raises and leaves the run active, as in
    # MLflow, instead of dropping it from the stack still RUNNING.
    _client().set_terminated(stack[-1], status)
    ended = stack.pop()
    _STATE.last_run_id = ended  # MLflow's last_active_run: the run that ended last
    real = sys.modules.get("mlflow")
    if real is not None and ended in _STATE.bridged:
        # Real mlflow was lent this run (see __getattr__): end it there too.
        _STATE.bridged.discard(ended)
        active = real.active_run()
        if active is not None and active.info.run_id == ended:
            real.end_run(status)


@atexit.register
def _end_runs_at_exit() -> None:
    # MLflow ends what is still running when the script exits; so do we,
    # then fsync and close the files.
    try:
        while _stack():
            end_run()
    finally:
        _STATE.close()


def active_run() -> ActiveRun | None:
    stack = _stack()
    if not stack:
        return None
    run = _client().get_run(stack[-1])
    return ActiveRun(run.info, run.data)


def last_active_run() -> Run | None:
    rid = _stack()[-1] if _stack() else _STATE.last_run_id
    return None if rid is None else _client().get_run(rid)


def get_run(run_id: str) -> Run:
    return _client().get_run(run_id)


def _run_id(run_id: str | None = None) -> str:
    if run_id:
        return run_id
    stack = _stack()
    if stack:
        return stack[-1]
    return start_run().info.run_id  # MLflow starts a run on the first log call


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    return _client().log_param(_run_id(), key, value)


def log_params(params: Mapping[str, Any], synchronous: bool | None = None,
               run_id: str | None = None) -> None:
    _client().log_batch(_run_id(run_id), params=[Param(k, v) for k, v in params.items()])


def log_metric(key: str, value: float, step: int | None = None,
               synchronous: bool | None = None, timestamp: int | None = None,
               run_id: str | None = None, **kwargs: Any) -> None:
    """Log one value; ``step`` defaults to 0 and ``timestamp`` (ms) to now, as in MLflow."""
    _client().log_metric(_run_id(run_id), key, value, timestamp, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None,
                synchronous: bool | None = None, run_id: str | None = None,
                timestamp: int | None = None, **kwargs: Any) -> None:
    rid = _run_id(run_id)
    ts = timestamp if timestamp is not None else int(time.time() * 1000)
    _client().log_batch(rid, metrics=[Metric(k, v, ts, step or 0) for k, v in metrics.items()])


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    _client().set_tag(_run_id(), key, value)


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    _client().log_batch(_run_id(), tags=[RunTag(k, v) for k, v in tags.items()])


def delete_tag(key: str) -> None:
    _client().delete_tag(_run_id(), key)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str, run_id: str | None = None
             ) -> None:
    _client().log_dict(_run_id(run_id), dictionary, artifact_file)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    _client().log_text(_run_id(run_id), text, artifact_file)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None,
                 run_id: str | None = None) -> None:
    _client().log_artifact(_run_id(run_id), local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None,
                  run_id: str | None = None) -> None:
    _client().log_artifacts(_run_id(run_id), local_dir, artifact_path)


def log_figure(figure: Any, artifact_file: str, *, save_kwargs: Mapping[str, Any] | None = None
               ) -> None:
    _client().log_figure(_run_id(), figure, artifact_file)


def log_image(image: Any, artifact_file: str | None = None, key: str | None = None,
              step: int | None = None, timestamp: int | None = None,
              synchronous: bool | None = None) -> None:
    _client().log_image(_run_id(), image, artifact_file, key, step)


def delete_run(run_id: str) -> None:
    """Mark a run deleted (``restore_run`` brings it back), as MLflow does."""
    _client().delete_run(run_id)


def register_model(model_uri: str, name: str, tags: Mapping[str, Any] | None = None,
                   await_registration_for: int | None = None) -> ModelVersion:
    """Register ``model_uri`` (``runs:/<run id>/<path>`` or a local file) as
    a new version of ``name``, creating the registered model if needed."""
    return _client().create_model_version(name, model_uri, tags=tags)


# What real mlflow offers and this shim does not (flavors, models, data,
# artifacts, tracing): served by real mlflow on the same file when it is
# installed, else a MissingDependency naming the extra.
_DELEGATED = frozenset({
    "sklearn", "pyfunc", "pytorch", "tensorflow", "keras", "transformers", "langchain",
    "llama_index", "openai", "xgboost", "lightgbm", "catboost", "onnx", "statsmodels",
    "spark", "sentence_transformers", "models", "data", "artifacts", "tracing", "genai",
    "evaluate", "trace", "start_span", "get_trace", "search_traces", "log_input",
    "log_inputs", "log_table", "log_model", "load_table", "autolog", "set_registry_uri",
    "get_registry_uri", "set_active_model", "get_active_model_id", "last_logged_model",
    "get_logged_model", "search_logged_models", "create_external_model", "environment_variables",
    "entities", "exceptions", "tracking", "store", "utils", "MlflowClient"})


def __getattr__(name: str) -> Any:
    if name not in _DELEGATED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import mlflow as real
    except ImportError:
        from ..errors import MissingDependency

        raise MissingDependency("mlflow", "mlflow",
                                f"mlflow.{name} on a synadb file (the shim delegates it to "
                                "real mlflow)") from None
    _bridge(real)
    return getattr(real, name)


def _bridge(real: Any) -> None:
    """Point real mlflow at this shim's file, experiment and active run, so a
    flavor's ``log_model`` lands in the run the script started here."""
    uri = f"synadb://{Path(_STATE.path()).as_posix()}"
    if real.get_tracking_uri() != uri:
        real.set_tracking_uri(uri)
    stack = _stack()
    if not stack:
        return
    active = real.active_run()
    if active is not None and active.info.run_id == stack[-1]:
        return
    if active is not None:
        real.end_run()
    real.start_run(run_id=stack[-1])
    _STATE.bridged.add(stack[-1])


def get_artifact_uri(artifact_path: str | None = None) -> str:
    uri = artifact_uri_for(_STATE.path(), _run_id())
    return f"{uri}/{artifact_path.strip('/')}" if artifact_path else uri


def search_runs(experiment_ids: Sequence[str] | None = None, filter_string: str = "",
                run_view_type: int = ViewType.ACTIVE_ONLY, max_results: int = 100000,
                order_by: Sequence[str] | None = None, output_format: str = "pandas",
                search_all_experiments: bool = False,
                experiment_names: Sequence[str] | None = None) -> Any:
    """Runs matching an MLflow filter string, as a pandas DataFrame with
    MLflow's columns (a list of Runs without pandas, or with
    ``output_format="list"``).

    Without ``experiment_ids`` or ``experiment_names`` the active experiment
    is searched (every experiment with ``search_all_experiments=True``).
    """
    client = _client()
    if experiment_names:
        by_name = client.catalog.by_name()
        ids = [by_name[n] for n in experiment_names if n in by_name]
        if not ids:
            return _output([], output_format)
    elif experiment_ids:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    elif search_all_experiments:
        ids = None
    else:
        name = _active_experiment()
        if name not in client.tracker.list_experiments():
            return _output([], output_format)
        ids = [client.catalog.id_of(name)]
    runs = client.search_runs(ids, filter_string, run_view_type, max_results, order_by)
    return _output(runs, output_format)


def _output(runs: list[Run], output_format: str) -> Any:
    runs = list(runs)
    if output_format == "list":
        return runs
    if output_format != "pandas":
        raise _bad(f"Unsupported output format: {output_format}. Supported string values "
                   "are 'pandas' or 'list'")
    try:
        import pandas as pd
    except ImportError:
        return runs
    info: dict[str, list[Any]] = {"run_id": [], "experiment_id": [], "status": [],
                                  "artifact_uri": [], "start_time": [], "end_time": []}
    cols: dict[str, list[Any]] = {}
    n = len(runs)
    for i, run in enumerate(runs):
        info["run_id"].append(run.info.run_id)
        info["experiment_id"].append(run.info.experiment_id)
        info["status"].append(run.info.status)
        info["artifact_uri"].append(run.info.artifact_uri)
        info["start_time"].append(pd.to_datetime(run.info.start_time, unit="ms", utc=True))
        info["end_time"].append(pd.to_datetime(run.info.end_time, unit="ms", utc=True))
        for prefix, values, null in (("metrics.", run.data.metrics, np.nan),
                                     ("params.", run.data.params, None),
                                     ("tags.", run.data.tags, None)):
            for k, v in values.items():
                col = cols.get(prefix + k)
                if col is None:
                    col = cols[prefix + k] = [null] * n
                col[i] = v
    data: dict[str, Any] = dict(info)
    for prefix in ("metrics.", "params.", "tags."):
        data.update({k: v for k, v in cols.items() if k.startswith(prefix)})
    return pd.DataFrame(data)
