"""Experiment tracking: runs, params, metrics and artifacts in one file.

Two styles over one store, both in API.md:

* run-id style, ``ExperimentTracker(path)``: ``start_run`` returns a run id
  and every call names it;
* object style, ``Experiment(name, path)``: ``with exp.start_run() as run``.

Layout (all keys under ``run/`` and ``exp/``; see docs/FORMAT.md)::

    exp/<experiment>          JSON: name, created
    run/<run id>              JSON: the run's catalog entry (experiment, name,
                              status, tags, params, metric and artifact names,
                              times, error); rewritten when any of it changes
    run/<run id>/m/<metric>   T_FLOATS rows (value, step, unix time)
    run/<run id>/a/<name>     the artifact's bytes
    trk/changes               one text record per catalog change: the run id

A metric's history is therefore one key whose float history reshapes to
``(n, 3)``: values, steps and timestamps come out as numpy arrays in one
copy.  Queries never scan keys: the catalog (every run's entry) is held in
memory and followed through ``trk/changes``, so a notebook sees runs that a
training process logs while it reads.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import errors
from .db import DbConfig, Storage, SynaDB
from .report import ComponentReport, describe, warn
from .tracking_media import decode_artifact, encode_artifact, json_default, to_png
from .tracking_query import matches, sorted_runs
from .tracking_values import RunStatus, param_text

__all__ = ["ExperimentTracker", "Experiment", "Run", "RunStatus", "TrackerReport",
           "flatten_params"]

_CHANGES = "trk/changes"
_CATALOG = "trk/catalog"
_CATALOG_MAGIC = b"SYNTRK1\n"
_now = time.time
_ROW = 3  # (value, step, unix time) per metric record
_UNREAD = object()  # a value get_many could not read (read it alone to learn why)


_STATUS = {s.value: s for s in RunStatus}


class TrackerReport(ComponentReport):
    """What :meth:`ExperimentTracker.verify` found."""

    label = "tracker"


def _valid_entry(e: Any) -> str:
    """Why ``e`` is not a run's catalog entry, or "" if it is one."""
    if not isinstance(e, dict):
        return f"a run entry is a JSON object, found {type(e).__name__}"
    exp = e.get("experiment")
    if not isinstance(exp, str) or not exp:
        return "no experiment name"
    if e.get("status") not in _STATUS:
        return f"unknown status {e.get('status')!r}"
    for name, kind in (("params", dict), ("metrics", list), ("artifacts", dict),
                       ("tags", list), ("tag_values", dict)):
        if not isinstance(e.get(name, kind()), kind):
            return f"{name!r} is not a JSON {'object' if kind is dict else 'array'}"
    for name in ("params", "metrics", "artifacts"):
        if name not in e:
            return f"no {name!r}"
    if not all(isinstance(a, dict) and isinstance(a.get("type"), str)
               for a in e["artifacts"].values()):
        return "an artifact has no type"
    if not all(isinstance(m, str) for m in e["metrics"]):
        return "a metric name is not a string"
    start = e.get("start", 0.0)
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        return "the start time is not a number"
    return ""


def _valid_experiment(e: Any) -> str:
    if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
        return "an experiment entry is a JSON object with a name"
    return ""


class _BadSnapshot(Exception):
    "trk/catalog does not hold a snapshot (an internal signal: the catalog is rebuilt)."


def _parse_snapshot(raw: bytes, deep: bool = False
                    ) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The header and (run id, experiment, entry JSON) triples of a
    ``trk/catalog`` value; :class:`_BadSnapshot` if it is not one.

    Everything a reader would trust is checked here, so that a value that
    passed its CRC but holds garbage (another writer's bytes, a bug) makes
    the catalog rebuild instead of failing the open or losing runs.  The
    entries' JSON is parsed later, on first use (``deep`` parses it now).
    """
    if not raw.startswith(_CATALOG_MAGIC):
        raise _BadSnapshot("it does not start with the snapshot magic")
    nl = raw.find(b"\n", len(_CATALOG_MAGIC))
    if nl < 0:
        raise _BadSnapshot("its header line is cut off")
    try:
        head = json.loads(raw[len(_CATALOG_MAGIC):nl].decode("utf-8"))
        body = raw[nl + 1:].decode("utf-8")
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _BadSnapshot(f"its header or body is not UTF-8 JSON ({describe(e)})") from None
    if not isinstance(head, dict) or any(type(head.get(k)) is not int
                                         for k in ("salt", "covered")):
        raise _BadSnapshot("its header lacks the salt or the covered count")
    exps = head.get("experiments")
    if not isinstance(exps, dict) or any(_valid_experiment(v) for v in exps.values()):
        raise _BadSnapshot("its experiments are not experiment entries")
    parts = body.split("\0") if body else []
    if len(parts) % 3:
        raise _BadSnapshot(f"its body has {len(parts)} fields, not run id/experiment/entry "
                           "triples (truncated?)")
    runs = head.get("runs")  # written since the field was added; older snapshots lack it
    if runs is not None and runs != len(parts) // 3:
        raise _BadSnapshot(f"it lists {len(parts) // 3} runs, its header says {runs}")
    triples = [(parts[i], parts[i + 1], parts[i + 2]) for i in range(0, len(parts), 3)]
    for rid, exp, text in triples:
        if not rid or "/" in rid or len(rid) > 64 or not exp or not text.startswith("{"):
            raise _BadSnapshot(f"run {rid[:64]!r} has a bad id, experiment or entry")
        if deep:
            try:
                bad = _valid_entry(json.loads(text))
            except (ValueError, RecursionError) as e:
                bad = describe(e)
            if bad:
                raise _BadSnapshot(f"the entry of run {rid!r} is damaged: {bad}")
    return head, triples


def flatten_params(params: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, str]:
    """Nested dicts become dotted names, as MLflow's autologgers flatten a
    model's hyperparameters, and values become strings, as MLflow stores
    params: ``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": "0.1"}``.  (MLflow's own
    ``log_params`` would store ``opt`` as ``"{'lr': 0.1}"``.)"""
    if not isinstance(params, Mapping):
        raise errors.InvalidType(f"params must be a dict, got {type(params).__name__}")
    out: dict[str, str] = {}
    # Depth first with an explicit stack, not recursion: a dict nested a
    # few thousand deep (or one that contains itself) is an InvalidArgument,
    # never a RecursionError.
    stack = [(prefix, iter(params.items()))]
    path = [id(params)]
    while stack:
        base, items = stack[-1]
        for key, value in items:
            name = f"{base}{sep}{key}" if base else str(key)
            if isinstance(value, Mapping) and value:
                if id(value) in path:
                    raise errors.InvalidArgument(f"params contain themselves at {name[:80]!r}")
                if len(stack) >= _MAX_DEPTH:
                    raise errors.InvalidArgument(
                        f"params are nested more than {_MAX_DEPTH} levels deep "
                        f"(at {name[:80]!r}...)")
                stack.append((name, iter(value.items())))
                path.append(id(value))
                break
            out[name] = param_text(value)
        else:
            stack.pop()
            path.pop()
    return out


_MAX_DEPTH = 100  # nesting of params; a dotted name is at most 250 characters anyway


def _labels(tags: object) -> list[str]:
    """Run labels: a str or a sequence of str."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    if isinstance(tags, (Mapping, bytes)) or not isinstance(tags, Iterable):
        raise errors.InvalidType(f"tags are a label or a list of labels, got {tags!r}")
    return [_check_name("tag", t) for t in tags]


def _str_map(what: str, values: object) -> dict[str, str]:
    """A dict of names to values, as the strings they are stored as."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise errors.InvalidType(f"{what} must be a dict, got {type(values).__name__}")
    return {_check_name(what, str(k) if isinstance(k, (int, float)) else k): param_text(v)
            for k, v in values.items()}


def _seconds(what: str, value: object) -> float:
    """A finite unix time in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise errors.InvalidType(f"{what} is unix seconds (a number), got {value!r}")
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise errors.InvalidArgument(f"{what} must be finite, got {value!r}")
    return out


def _check_name(kind: str, name: object, limit: int = 250) -> str:
    if not isinstance(name, str):
        raise errors.InvalidType(f"a {kind} name is a str, got {name!r}")
    if not name:
        raise errors.InvalidArgument(f"a {kind} name must be a non-empty str, got {name!r}")
    if len(name) > limit or "\0" in name:
        raise errors.InvalidArgument(f"bad {kind} name {name[:60]!r}: at most {limit} "
                                     "characters, no NUL")
    return name


def check_artifact_name(name: object) -> str:
    """An artifact name is a relative POSIX path that stays inside the run."""
    if not isinstance(name, str):
        raise errors.InvalidType(f"an artifact name is a str, got {name!r}")
    if not name:
        raise errors.InvalidArgument(f"an artifact name must be a non-empty str, got {name!r}")
    if "\0" in name or "\\" in name:
        raise errors.InvalidArgument(f"artifact name {name!r} contains NUL or a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise errors.InvalidArgument(f"artifact name {name!r} is absolute; use a relative path")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise errors.InvalidArgument(
            f"artifact name {name!r} must not contain '..', '.' or empty path segments")
    if len(name.encode("utf-8")) > 900:
        raise errors.InvalidArgument(f"artifact name {name[:40]!r}... is too long")
    return name


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if hasattr(value, "item") and getattr(value, "size", 2) == 1:  # 0-d tensors
            return _number(name, value.item())
        raise errors.InvalidArgument(f"metric {name!r}: {value!r} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise errors.InvalidArgument(f"metric {name!r}: {value!r} is too large") from None


class Run:
    """One run: its catalog entry, and logging methods bound to its store.

    Attributes: ``id``, ``experiment``, ``name``, ``status`` (a
    :class:`RunStatus`, which compares equal to its string), ``tags`` (list of
    labels), ``tag_values`` (key-value tags), ``params`` (name -> str),
    ``metrics`` (name -> last value), ``start_time`` and ``end_time`` (unix
    seconds; ``end_time`` is None while running), ``error`` (the exception
    text of a failed run) and ``artifacts`` (name -> type).

    A Run is a snapshot of the catalog when it was fetched; logging through it
    goes to the file at once.  Used as a context manager it ends the run:
    Completed on a normal exit, Failed (with the exception text) otherwise.
    """

    __slots__ = ("_tracker", "id", "_e", "_params", "_tags", "_tag_values", "_artifacts",
                 "_metrics")

    def __init__(self, tracker: "ExperimentTracker", run_id: str, entry: Mapping[str, Any]):
        # Cheap on purpose: list_runs builds one per run.  The catalog entry
        # is never changed in place (changes replace it), so it is shared,
        # and the mutable views are copied only when first asked for.
        self._tracker = tracker
        self.id = run_id
        self._e: Mapping[str, Any] | str = entry
        self._params: dict[str, str] | None = None
        self._tags: list[str] | None = None
        self._tag_values: dict[str, str] | None = None
        self._artifacts: dict[str, str] | None = None
        self._metrics: dict[str, float] | None = None

    def _refresh(self) -> None:
        """Take the tracker's current entry (after logging through this Run)."""
        entry = self._tracker._entries.get(self.id)
        if entry is not None and entry is not self._e:
            self._e = entry
            self._params = self._tags = self._tag_values = self._artifacts = None
        self._metrics = None

    @property
    def _d(self) -> Mapping[str, Any]:
        e = self._e
        if type(e) is str:
            e = self._e = self._tracker._decoded(self.id, e)
        return e  # type: ignore[return-value]

    # -- data ------------------------------------------------------------
    @property
    def experiment(self) -> str:
        return self._tracker._exp_of.get(self.id) or self._d["experiment"]

    @property
    def name(self) -> str:
        return self._d.get("name") or self.id[:8]

    @property
    def status(self) -> RunStatus:
        """A :class:`RunStatus` (a str enum: ``run.status == "Completed"`` works)."""
        st = _STATUS.get(self._d["status"])
        return st if st is not None else RunStatus.parse(self._d["status"])

    @property
    def tags(self) -> list[str]:
        if self._tags is None:
            self._tags = list(self._d.get("tags", ()))
        return self._tags

    @property
    def tag_values(self) -> dict[str, str]:
        if self._tag_values is None:
            self._tag_values = dict(self._d.get("tag_values", {}))
        return self._tag_values

    @property
    def params(self) -> dict[str, str]:
        if self._params is None:
            self._params = dict(self._d.get("params", {}))
        return self._params

    @property
    def artifacts(self) -> dict[str, str]:
        """Artifact name -> type (image, table, text, json, numpy, torch, ...)."""
        if self._artifacts is None:
            self._artifacts = {k: v["type"] for k, v in self._d.get("artifacts", {}).items()}
        return self._artifacts

    @property
    def start_time(self) -> float:
        return self._d.get("start", 0.0)

    @property
    def end_time(self) -> float | None:
        return self._d.get("end")

    @property
    def error(self) -> str | None:
        return self._d.get("error")

    @property
    def parent_id(self) -> str | None:
        return self._d.get("parent")

    @property
    def run_id(self) -> str:  # MLflow's name for it
        return self.id

    @property
    def metrics(self) -> dict[str, float]:
        """Each metric's last logged value (read from the index when first asked for)."""
        if self._metrics is None:
            self._metrics = self._tracker._last_metrics(self.id, self._d.get("metrics", ()))
        return self._metrics

    @property
    def metric_names(self) -> list[str]:
        return list(self._d.get("metrics", ()))

    @property
    def duration(self) -> float | None:
        end = self.end_time
        return None if end is None else end - self.start_time

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "experiment": self.experiment, "name": self.name,
                "status": self.status.value, "tags": list(self.tags),
                "tag_values": dict(self.tag_values), "params": dict(self.params),
                "metrics": dict(self.metrics), "start_time": self.start_time,
                "end_time": self.end_time, "error": self.error,
                "artifacts": dict(self.artifacts), "parent_id": self.parent_id}

    def __repr__(self) -> str:
        return (f"Run(id={self.id!r}, experiment={self.experiment!r}, name={self.name!r}, "
                f"status={self.status.value!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- logging ---------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self._tracker.log_param(self.id, key, value)
        self._refresh()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._tracker.log_params(self.id, params)
        self._refresh()

    def log_metric(self, key: str, value: float, step: int | None = None,
                   timestamp: float | None = None) -> None:
        self._tracker.log_metric(self.id, key, value, step, timestamp)
        self._metrics = None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        self._tracker.log_metrics(self.id, metrics, step, timestamp)
        self._metrics = None

    def set_tag(self, key: str, value: Any) -> None:
        self._tracker.set_tag(self.id, key, value)
        self._refresh()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not isinstance(tags, Mapping):
            raise errors.InvalidType(f"tags must be a dict, got {type(tags).__name__}")
        for key, value in tags.items():
            self.set_tag(key, value)

    def add_tags(self, *labels: str) -> None:
        self._tracker.add_tags(self.id, labels)
        self._refresh()

    def log_artifact(self, name: str, data: Any, *, allow_pickle: bool = False) -> None:
        self._tracker.log_artifact(self.id, name, data, allow_pickle=allow_pickle)
        self._refresh()

    def log_text(self, name: str, text: str) -> None:
        self._tracker.log_text(self.id, name, text)
        self._refresh()

    def log_dict(self, name: str, data: Mapping[str, Any]) -> None:
        self._tracker.log_dict(self.id, name, data)
        self._refresh()

    def log_image(self, name: str, image: Any) -> None:
        self._tracker.log_image(self.id, name, image)
        self._refresh()

    def log_figure(self, name: str, figure: Any) -> None:
        self._tracker.log_figure(self.id, name, figure)
        self._refresh()

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._tracker.log_table(self.id, name, columns, rows)
        self._refresh()

    # -- reading ---------------------------------------------------------
    def get_metric(self, key: str) -> list[tuple[int, float]]:
        return self._tracker.get_metric(self.id, key)

    def get_metric_tensor(self, key: str) -> np.ndarray:
        return self._tracker.get_metric_tensor(self.id, key)

    def get_artifact(self, name: str) -> bytes:
        return self._tracker.get_artifact(self.id, name)

    def load_artifact(self, name: str, *, allow_pickle: bool = False) -> Any:
        return self._tracker.load_artifact(self.id, name, allow_pickle=allow_pickle)

    def list_artifacts(self) -> list[str]:
        return self._tracker.list_artifacts(self.id)

    # -- life ------------------------------------------------------------
    def end(self, status: RunStatus | str = RunStatus.COMPLETED, error: str | None = None) -> None:
        self._tracker.end_run(self.id, status, error=error)
        self._refresh()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end(RunStatus.COMPLETED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED, error="KeyboardInterrupt")
        else:
            self.end(RunStatus.FAILED, error=f"{exc_type.__name__}: {exc}")


class ExperimentTracker:
    """Runs, params, metrics and artifacts of many experiments in one file.

    >>> tracker = ExperimentTracker(path)                        # doctest: +SKIP
    >>> run_id = tracker.start_run("mnist", tags=["baseline"])   # doctest: +SKIP
    >>> tracker.log_metric(run_id, "loss", 0.25, step=3)         # doctest: +SKIP
    >>> tracker.end_run(run_id, "Completed")                     # doctest: +SKIP

    Durability: every log call reaches the operating system before it returns
    (a killed training process loses nothing it logged); ``end_run`` and
    ``close`` also fsync.  ``sync_on_write=True`` fsyncs every call.

    Several processes may log to and read one file at the same time.
    """

    def __init__(self, path: str | os.PathLike[str], *, sync_on_write: bool = False,
                 read_only: bool = False, config: DbConfig | None = None) -> None:
        self._db = SynaDB(path, sync_on_write=sync_on_write, read_only=read_only,
                          config=config)
        self._sync_every = bool(sync_on_write)
        self.path = self._db.path
        self._entries: dict[str, dict[str, Any]] = {}
        self._by_exp: dict[str, dict[str, None]] = {}
        self._exp_of: dict[str, str] = {}
        self._snap_covered = -1
        self._experiments: dict[str, dict[str, Any]] = {}
        self._mkeys: dict[tuple[str, str], list[Any]] = {}  # (run, metric) -> [key, next step]
        self._seen = 0  # entries of trk/changes already applied
        self._salt = -1
        self._damaged: dict[str, str] = {}  # run id -> why its run/<id> entry is unreadable
        self._rebuilt: list[str] = []  # what this handle worked around, for verify()
        self._snap_bad = False  # trk/catalog is damaged: close() rewrites it
        self._system: dict[str, Any] = {}  # run id -> its SystemMetrics sampler
        self._sync()

    # -- life ------------------------------------------------------------
    def close(self) -> None:
        """fsync and close (snapshotting the catalog first if it is stale)."""
        for rid in list(self._system):
            self._stop_system_metrics(rid)
        if not self._db.closed:
            if not self._db.config.read_only:
                if self._snapshot_is_stale() or self._snap_bad:
                    self.checkpoint()
                self._db.sync()
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    @property
    def db(self) -> SynaDB:
        """The underlying :class:`SynaDB` handle."""
        return self._db

    def __enter__(self) -> "ExperimentTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentTracker({self.path!r})"

    # -- catalog ---------------------------------------------------------
    # _entries maps run id -> catalog entry, either a dict or, until first
    # used, its JSON text (a snapshot loads 10K runs without parsing them).
    #
    # trk/catalog is a cache of the run/<id> and exp/<name> keys: if it is
    # damaged (a CRC failure) or holds anything but a snapshot, the catalog
    # is rebuilt from those keys, and the next checkpoint (close does one)
    # writes a good snapshot.  A run/<id> or exp/<name> entry that is damaged
    # is the one thing that cannot be rebuilt: that run is left out of
    # listings, get_run raises CorruptDatabase naming its key, and verify()
    # reports it; every other run loads.
    def _sync(self) -> None:
        """Take in catalog changes that any handle made since we last looked."""
        db = self._db
        salt = db.storage.salt()
        if salt != self._salt:  # first look, or the file was compacted
            self._salt = salt
            self._clear()
        changes = db.storage.history_len(_CHANGES)
        if changes == self._seen:
            return
        if self._seen == 0:
            covered = self._load_snapshot(salt, changes)
            if covered < 0:
                self._load_all()
                self._seen = changes
                return
            self._seen = covered
        try:
            changed = db.storage.history_slice(_CHANGES, self._seen, changes)
            if not all(type(c) is str for c in changed):
                raise TypeError("a trk/changes record is not text")
        except (errors.SynaError, UnicodeDecodeError, TypeError) as e:
            # Which runs changed is unknown: read them all again.
            self._note(f"{_CHANGES}: a record at or after #{self._seen} is unreadable "
                       f"({describe(e)}); the catalog was rebuilt from the run/ keys")
            self._clear()
            self._load_all()
            self._seen = changes
            return
        for rid in dict.fromkeys(changed):
            self._reload(rid)
        self._seen = changes

    def _clear(self) -> None:
        self._entries.clear()
        self._by_exp.clear()
        self._exp_of.clear()
        self._experiments.clear()
        self._mkeys.clear()
        self._damaged.clear()
        self._seen = 0
        self._snap_covered = -1

    def _note(self, message: str) -> None:
        """Remember (for verify()) and log something this handle had to work around."""
        if message not in self._rebuilt:
            self._rebuilt.append(message)
            warn(self.path, message)

    def _load_all(self) -> None:
        """The catalog from the run/<id> and exp/<name> keys (no snapshot)."""
        db = self._db
        runs = []
        for key in db.keys():
            if key.startswith("run/"):
                if key.find("/", 4) < 0:
                    runs.append(key)
            elif key.startswith("exp/"):
                self._reload(key)
        try:
            texts = db.get_many(runs)
        except (errors.SynaError, UnicodeDecodeError):
            texts = [_UNREAD] * len(runs)  # one is damaged: read them one by one below
        for key, text in zip(runs, texts):
            rid = key[4:]
            entry = self._read_entry(key) if text is _UNREAD else self._parse_entry(key, text)
            if isinstance(entry, dict):
                self._put_entry(rid, entry, entry["experiment"])

    def _load_snapshot(self, salt: int, changes: int) -> int:
        """Load the catalog snapshot; returns the changes it covers, or -1
        (no snapshot, one from before a compaction, or one that is damaged)."""
        db = self._db
        try:
            raw = db.get_bytes(_CATALOG) if db.exists(_CATALOG) else None
        except errors.SynaError as e:  # ChecksumError, or not a bytes value
            self._snapshot_damaged(f"unreadable ({describe(e)})")
            return -1
        if raw is None:
            return -1
        try:
            head, triples = _parse_snapshot(raw)
        except _BadSnapshot as e:
            self._snapshot_damaged(str(e))
            return -1
        if head["salt"] != salt or not 0 < head["covered"] <= changes:
            return -1  # taken before a compaction, or ahead of this file: stale, not damaged
        self._experiments.update(head["experiments"])
        put = self._put_entry
        for rid, experiment, text in triples:
            put(rid, text, experiment)
        self._snap_covered = head["covered"]
        return head["covered"]

    def _snapshot_damaged(self, why: str) -> None:
        self._snap_bad = True
        self._note(f"{_CATALOG} (a cache of the run/ and exp/ keys) is damaged: {why}; "
                   "rebuilt the catalog from the run/ and exp/ keys")

    def _put_entry(self, rid: str, entry: dict[str, Any] | str, experiment: str) -> None:
        old = self._exp_of.get(rid)
        if old is not None and old != experiment:
            self._by_exp.get(old, {}).pop(rid, None)
        self._entries[rid] = entry  # in place: a run keeps its position
        self._exp_of[rid] = experiment
        self._by_exp.setdefault(experiment, {})[rid] = None
        self._damaged.pop(rid, None)

    def _drop(self, rid: str) -> None:
        self._entries.pop(rid, None)
        old = self._exp_of.pop(rid, None)
        if old is not None:
            self._by_exp.get(old, {}).pop(rid, None)
        for key in [k for k in self._mkeys if k[0] == rid]:
            del self._mkeys[key]

    def _reload(self, rid: str) -> None:
        if not isinstance(rid, str) or not rid:
            return
        if rid.startswith("exp/"):
            entry = self._read_entry(rid, _valid_experiment)
            if isinstance(entry, dict):
                self._experiments[entry["name"]] = entry
            elif entry is None:  # renamed away
                self._experiments.pop(rid[4:], None)
            return
        if "/" in rid or "\0" in rid or len(rid) > 64:
            return  # not a run id (a change record we did not write): nothing to reload
        entry = self._read_entry("run/" + rid)
        if isinstance(entry, dict):
            self._put_entry(rid, entry, entry["experiment"])
            return
        if entry is None:
            self._damaged.pop(rid, None)  # deleted
        self._drop(rid)  # deleted, or damaged (then remembered in _damaged)

    def _read_entry(self, key: str, check: Any = None) -> dict[str, Any] | str | None:
        """The JSON entry at ``key``: a dict, None if absent, or the reason it
        cannot be read (a str; the run is then listed in ``_damaged``)."""
        try:
            text = self._db.get_text(key)
        except (errors.SynaError, UnicodeDecodeError) as e:
            return self._damage(key, describe(e))
        return None if text is None else self._parse_entry(key, text, check)

    def _parse_entry(self, key: str, text: Any, check: Any = None) -> dict[str, Any] | str | None:
        if text is None:
            return None
        if type(text) is not str:
            return self._damage(key, f"holds {type(text).__name__}, not JSON text")
        try:
            entry = json.loads(text)
        except (ValueError, RecursionError) as e:
            return self._damage(key, f"not valid JSON ({describe(e)})")
        problem = (check or _valid_entry)(entry)
        if problem:
            return self._damage(key, problem)
        return entry

    def _damage(self, key: str, why: str) -> str:
        if key.startswith("run/"):
            self._damaged[key[4:]] = why
        self._note(f"{key!r} is damaged: {why}")
        return why

    def _missing(self, run_id: str) -> errors.SynaError:
        why = self._damaged.get(run_id)
        if why is not None:
            return errors.CorruptDatabase(
                f"run {run_id!r} in {self.path!r} cannot be read: its entry "
                f"{'run/' + run_id!r} is damaged ({why}); its metrics and artifacts are "
                "still in the file (delete_run removes them)")
        return errors.KeyNotFound(f"no run {run_id!r} in {self.path!r}")

    def _decoded(self, rid: str, entry: dict[str, Any] | str) -> dict[str, Any]:
        """The entry as a dict, parsing (and keeping) it on first use."""
        if type(entry) is not str:
            return entry  # type: ignore[return-value]
        try:
            parsed = json.loads(entry)
            bad = _valid_entry(parsed)
        except (ValueError, RecursionError) as e:
            bad = describe(e)
        if bad:
            # Only a snapshot leaves text here: the snapshot is a cache, the
            # run's own key is the record.
            self._note(f"{_CATALOG}: the entry of run {rid!r} is damaged ({bad}); read "
                       f"{'run/' + rid!r} instead")
            self._snap_bad = True
            got = self._read_entry("run/" + rid)
            if not isinstance(got, dict):
                self._drop(rid)
                if got is None:
                    raise errors.KeyNotFound(f"no run {rid!r} in {self.path!r}")
                raise self._missing(rid)
            parsed = got
            self._put_entry(rid, parsed, parsed["experiment"])
        elif self._entries.get(rid) is entry:
            self._entries[rid] = parsed
        return parsed

    def _entry(self, run_id: str) -> dict[str, Any]:
        # Always follow other handles first (about a microsecond): a run's
        # status, params and artifacts change while a notebook reads them.
        if not isinstance(run_id, str):
            raise errors.InvalidType(f"a run id is a str, got {run_id!r}")
        self._sync()
        entry = self._entries.get(run_id)
        if entry is None:
            raise self._missing(run_id)
        return self._decoded(run_id, entry)

    def verify(self) -> "TrackerReport":
        """Check the file and the tracker's own records; changes nothing.

        Returns a :class:`TrackerReport`: the engine's ``db.verify()`` report,
        the ``problems`` found now (damaged run, experiment or snapshot
        records, an unreadable change log), and what this handle has had to
        rebuild since it opened (``rebuilt``).  ``report.ok`` is true when the
        engine found no damage and there are no problems.
        """
        db = self._db
        engine = db.verify()
        problems: list[str] = []
        try:
            raw = db.get_bytes(_CATALOG) if db.exists(_CATALOG) else None
            if raw is not None:
                _parse_snapshot(raw, deep=True)
        except (errors.SynaError, _BadSnapshot) as e:
            why = str(e) if isinstance(e, _BadSnapshot) else describe(e)
            problems.append(f"{_CATALOG} is damaged ({why}); it is a cache: the catalog is "
                            "rebuilt without it, and checkpoint() rewrites it")
        try:
            n = db.storage.history_len(_CHANGES)
            for c in db.storage.history_slice(_CHANGES, 0, n):
                if type(c) is not str:
                    raise TypeError("a record is not text")
        except (errors.SynaError, UnicodeDecodeError, TypeError) as e:
            problems.append(f"{_CHANGES} has an unreadable record ({describe(e)})")
        for key in db.keys():
            if key.startswith("exp/"):
                check = _valid_experiment
            elif key.startswith("run/") and key.find("/", 4) < 0:
                check = _valid_entry
            else:
                continue
            try:
                text = db.get_text(key)
                entry = json.loads(text)
                bad = check(entry)
            except (errors.SynaError, UnicodeDecodeError, ValueError, RecursionError,
                    TypeError) as e:
                bad = describe(e)
            if bad:
                problems.append(f"{key!r} is damaged: {bad}")
        return TrackerReport(engine=engine, problems=problems, rebuilt=list(self._rebuilt))

    @contextmanager
    def _change(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Read-modify-write one run's entry under the file lock, atomically."""
        if not isinstance(run_id, str):
            raise errors.InvalidType(f"a run id is a str, got {run_id!r}")
        db = self._db
        # Not fsynced: like every log call, a change reaches the OS before it
        # returns; end_run and close fsync (see the class docstring).
        with db.batch(sync=self._sync_every):
            self._sync()
            entry = self._entries.get(run_id)
            if entry is None:
                raise self._missing(run_id)
            # A private copy to change (entries are shared with Run objects).
            entry = json.loads(json.dumps(self._decoded(run_id, entry)))
            yield entry
            db.put_text("run/" + run_id, json.dumps(entry, separators=(",", ":")))
            db.put_text(_CHANGES, run_id)
        self._entries[run_id] = entry
        self._seen += 1

    def checkpoint(self) -> None:
        """Snapshot the run catalog (and the engine's index) into the file, so
        that the next open reads one record instead of every run's entry.
        ``close`` does this when enough has changed since the last one."""
        db = self._db
        with db.batch(sync=False):
            self._sync()
            head = {"salt": self._salt, "covered": self._seen,
                    "experiments": self._experiments, "runs": len(self._entries)}
            parts = []
            dumps = json.dumps
            for rid, entry in self._entries.items():
                parts += (rid, self._exp_of[rid],
                          entry if type(entry) is str else dumps(entry, separators=(",", ":")))
            blob = (_CATALOG_MAGIC + dumps(head).encode("utf-8") + b"\n"
                    + "\0".join(parts).encode("utf-8"))
            db.put_bytes(_CATALOG, blob)
        self._snap_covered = self._seen
        self._snap_bad = False
        db.checkpoint()

    def _snapshot_is_stale(self) -> bool:
        behind = self._seen - max(self._snap_covered, 0)
        return len(self._entries) >= 64 and behind > max(16, len(self._entries) // 20)

    # -- experiments -----------------------------------------------------
    def create_experiment(self, name: str, *, exist_ok: bool = True,
                          tags: Mapping[str, Any] | None = None) -> str:
        """Register an experiment name (runs create theirs on first use)."""
        _check_name("experiment", name)
        exp_tags = _str_map("tag", tags)
        db = self._db
        with db.batch(sync=self._sync_every):
            self._sync()
            if name in self._experiments:
                if not exist_ok:
                    raise errors.InvalidArgument(f"experiment {name!r} already exists")
                return name
            entry = {"name": name, "created": time.time(), "tags": exp_tags}
            db.put_text("exp/" + name, json.dumps(entry))
            db.put_text(_CHANGES, "exp/" + name)
        self._experiments[name] = entry
        self._seen += 1
        return name

    def rename_experiment(self, name: str, new_name: str) -> None:
        """Give an experiment (and every run in it) a new name, atomically."""
        _check_name("experiment", name)
        _check_name("experiment", new_name)
        db = self._db
        with db.batch(sync=self._sync_every):
            self._sync()
            if name not in self._experiments and not self._by_exp.get(name):
                raise errors.KeyNotFound(f"no experiment {name!r} in {self.path!r}")
            if new_name in self._experiments or self._by_exp.get(new_name):
                raise errors.InvalidArgument(f"experiment {new_name!r} already exists")
            entry = dict(self._experiments.get(name) or {"created": time.time(), "tags": {}})
            entry["name"] = new_name
            db.put_text("exp/" + new_name, json.dumps(entry))
            db.delete("exp/" + name)
            db.put_text(_CHANGES, "exp/" + name)
            db.put_text(_CHANGES, "exp/" + new_name)
            moved = list(self._by_exp.get(name, ()))
            for rid in moved:
                run = dict(self._decoded(rid, self._entries[rid]))
                run["experiment"] = new_name
                db.put_text("run/" + rid, json.dumps(run, separators=(",", ":")))
                db.put_text(_CHANGES, rid)
        self._experiments.pop(name, None)
        self._experiments[new_name] = entry
        for rid in moved:
            self._reload(rid)
        self._seen += 2 + len(moved)

    def list_experiments(self) -> list[str]:
        """Experiment names, in the order they were created."""
        self._sync()
        names = list(self._experiments)
        names += [e for e in self._by_exp if e not in self._experiments and self._by_exp[e]]
        return names

    def experiment_info(self, name: str) -> dict[str, Any]:
        _check_name("experiment", name)
        self._sync()
        entry = dict(self._experiments.get(name) or {"name": name, "created": None, "tags": {}})
        entry["runs"] = len(self._by_exp.get(name, ()))
        return entry

    # -- runs ------------------------------------------------------------
    def start_run(self, experiment: str, tags: Sequence[str] | None = None, *,
                  name: str | None = None, run_name: str | None = None,
                  params: Mapping[str, Any] | None = None,
                  tag_values: Mapping[str, Any] | None = None,
                  parent_id: str | None = None, run_id: str | None = None,
                  start_time: float | None = None,
                  system_metrics: bool | float = False) -> str:
        """Start a run in ``experiment`` and return its id (32 hex digits).

        ``start_time`` (unix seconds) defaults to now; importers pass the
        original run's.  ``system_metrics=True`` (or a sampling interval in
        seconds) samples CPU, RAM, disk and GPU into ``system/*`` metrics
        until the run ends (see :meth:`track_system_metrics`).
        """
        if system_metrics is not False and system_metrics is not None and (
                not isinstance(system_metrics, (bool, int, float)) or system_metrics <= 0):
            raise errors.InvalidArgument(f"system_metrics is True, False or an interval in "
                                         f"seconds, got {system_metrics!r}")
        _check_name("experiment", experiment)
        labels = _labels(tags)
        rid = run_id or uuid.uuid4().hex
        if not isinstance(rid, str):
            raise errors.InvalidType(f"a run id is a str, got {rid!r}")
        if not rid.isalnum() or len(rid) > 64:
            raise errors.InvalidArgument(f"bad run id {rid!r}: use up to 64 letters and digits")
        now = time.time() if start_time is None else _seconds("start_time", start_time)
        run_title = name or run_name or ""
        if not isinstance(run_title, str):
            raise errors.InvalidType(f"a run name is a str, got {run_title!r}")
        if parent_id is not None and not isinstance(parent_id, str):
            raise errors.InvalidType(f"parent_id is a run id (str), got {parent_id!r}")
        values = _str_map("tag", tag_values)
        if params is not None and not isinstance(params, Mapping):
            raise errors.InvalidType(f"params must be a dict, got {type(params).__name__}")
        flat = flatten_params(params) if params else {}
        for key in flat:
            _check_name("param", key)
        entry: dict[str, Any] = {
            "experiment": experiment, "name": run_title, "status": "Running",
            "tags": labels, "tag_values": values, "params": flat, "metrics": [],
            "artifacts": {}, "start": now, "end": None, "error": None}
        if parent_id:
            entry["parent"] = parent_id
        db = self._db
        with db.batch(sync=self._sync_every):
            self._sync()
            if rid in self._entries or rid in self._damaged:
                raise errors.InvalidArgument(f"run id {rid!r} already exists")
            if experiment not in self._experiments:
                exp = {"name": experiment, "created": now, "tags": {}}
                db.put_text("exp/" + experiment, json.dumps(exp))
                db.put_text(_CHANGES, "exp/" + experiment)
                self._experiments[experiment] = exp
                self._seen += 1
            db.put_text("run/" + rid, json.dumps(entry, separators=(",", ":")))
            db.put_text(_CHANGES, rid)
        self._put_entry(rid, entry, experiment)
        self._seen += 1
        if system_metrics:
            self.track_system_metrics(
                rid, None if system_metrics is True else float(system_metrics))
        return rid

    def track_system_metrics(self, run_id: str, interval_s: float | None = None) -> None:
        """Sample system metrics (``system/cpu_percent``, ``system/memory_percent``,
        ...; see :mod:`synadb.system_metrics`) into the run every ``interval_s``
        seconds, in a background thread, until ``end_run`` (or ``close``).
        A resumed run calls this itself; ``start_run(system_metrics=True)``
        does it for a new one."""
        from .system_metrics import DEFAULT_INTERVAL_S, SystemMetrics

        self._entry(run_id)
        if run_id in self._system:
            return

        def log(values: dict[str, float], step: int) -> None:
            # Under the writer's mutex: the sampler's first sample registers
            # its metric names (a catalog change), which must not interleave
            # with the training thread's own changes to the catalog.
            with self._db.batch(sync=False):
                self.log_metrics(run_id, values, step=step)

        self._system[run_id] = SystemMetrics(
            log, interval_s or DEFAULT_INTERVAL_S,
            disk_path=os.path.dirname(os.path.abspath(self.path))).start()

    def _stop_system_metrics(self, run_id: str) -> None:
        sampler = self._system.pop(run_id, None)
        if sampler is not None and not self._db.closed:
            sampler.stop()

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.COMPLETED, *,
                error: str | None = None, end_time: float | None = None,
                stamp: bool = True) -> None:
        """Mark a run finished (Completed, Failed or Killed) and fsync the file.

        ``end_time`` defaults to now; with ``stamp=False`` the run keeps the
        end time it had (importers and MLflow's ``update_run_info`` set the
        status and the end time separately)."""
        st = RunStatus.parse(status)
        end = None if end_time is None else _seconds("end_time", end_time)
        if st is not RunStatus.RUNNING and isinstance(run_id, str):
            self._stop_system_metrics(run_id)  # its last sample lands before the end
        with self._change(run_id) as entry:
            entry["status"] = st.value
            if end is not None:
                entry["end"] = end
            elif stamp:
                entry["end"] = None if st is RunStatus.RUNNING else time.time()
            if error is not None:
                entry["error"] = str(error)[:10000]
        self._db.sync()

    def set_status(self, run_id: str, status: RunStatus | str) -> None:
        self.end_run(run_id, status)

    def delete_run(self, run_id: str) -> None:
        """Delete a run with its metrics and artifacts."""
        db = self._db
        if not isinstance(run_id, str):
            raise errors.InvalidType(f"a run id is a str, got {run_id!r}")
        self._stop_system_metrics(run_id)
        self._sync()
        if run_id not in self._damaged:
            self._entry(run_id)
        with db.batch():
            self._sync()
            entry = self._entries.get(run_id)
            if entry is not None:
                entry = self._decoded(run_id, entry)
                keys = ([f"run/{run_id}/m/{m}" for m in entry["metrics"]]
                        + [f"run/{run_id}/a/{a}" for a in entry["artifacts"]])
            elif run_id in self._damaged:
                # Its entry cannot say what it holds: every key under the run goes.
                keys = db.keys(f"run/{run_id}/*")  # ids are letters and digits
            else:
                raise self._missing(run_id)
            for key in keys:
                db.delete(key)
            db.delete("run/" + run_id)
            db.put_text(_CHANGES, run_id)
        self._reload(run_id)
        self._seen += 1

    def get_run(self, run_id: str) -> Run:
        return Run(self, run_id, self._entry(run_id))

    def changes_since(self, mark: tuple[int, int] | None
                      ) -> tuple[set[str] | None, tuple[int, int]]:
        """Ids of the runs whose entry, metrics or artifacts changed (in any
        process) since ``mark``, and the mark to pass next time.  ``None``
        instead of a set means "assume all": no mark yet, or the file was
        compacted since.  Lets a cache of derived run data stay valid."""
        storage = self._db.storage
        salt = storage.salt()
        if mark is None or mark[0] != salt:
            return None, (salt, storage.log_end())
        keys, end = storage.keys_written_since(mark[1])
        return {k[4:].split("/", 1)[0] for k in keys if k.startswith("run/")}, (salt, end)

    def list_runs(self, experiment: str | None = None) -> list[Run]:
        """Runs of ``experiment`` (or of all), oldest first."""
        if experiment is not None:
            _check_name("experiment", experiment)
        self._sync()
        if experiment is None:
            return [Run(self, rid, e) for rid, e in self._entries.items()]
        return [Run(self, rid, self._entries[rid]) for rid in self._by_exp.get(experiment, ())]

    def run_ids(self, experiment: str | None = None) -> list[str]:
        """Run ids of ``experiment`` (or of all), oldest first."""
        if experiment is not None:
            _check_name("experiment", experiment)
        self._sync()
        if experiment is None:
            return list(self._entries)
        return list(self._by_exp.get(experiment, ()))

    # -- params and tags -------------------------------------------------
    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_params(run_id, {_check_name("param", key): value})

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> dict[str, str]:
        """Log params (nested dicts are flattened to dotted names); values are
        stored as strings.  Returns what was stored."""
        if not isinstance(params, Mapping):
            raise errors.InvalidType(f"params must be a dict, got {type(params).__name__}")
        flat = flatten_params(params)
        for key in flat:
            _check_name("param", key)
        if not flat:
            return flat
        entry = self._entry(run_id)
        if all(entry["params"].get(k) == v for k, v in flat.items()):
            return flat
        with self._change(run_id) as entry:
            entry["params"].update(flat)
        return flat

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        """A key-value tag (MLflow's tags); see ``add_tags`` for labels."""
        _check_name("tag", key)
        with self._change(run_id) as entry:
            entry["tag_values"][key] = param_text(value)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Several key-value tags in one change."""
        values = _str_map("tag", tags)
        for key in values:
            _check_name("tag", key)
        if values:
            with self._change(run_id) as entry:
                entry["tag_values"].update(values)

    def delete_tag(self, run_id: str, key: str) -> None:
        _check_name("tag", key)
        with self._change(run_id) as entry:
            if entry["tag_values"].pop(key, None) is None:
                raise errors.KeyNotFound(f"run {run_id!r} has no tag {key!r}")

    def add_tags(self, run_id: str, labels: Sequence[str]) -> None:
        """Add labels to the run's ``tags`` list."""
        labels = _labels(labels)
        with self._change(run_id) as entry:
            entry["tags"] += [t for t in labels if t not in entry["tags"]]

    def rename_run(self, run_id: str, name: str) -> None:
        _check_name("run", name)
        with self._change(run_id) as entry:
            entry["name"] = name

    # -- metrics ---------------------------------------------------------
    def _metric_key(self, run_id: str, key: str) -> list[Any]:
        if not isinstance(run_id, str):
            raise errors.InvalidType(f"a run id is a str, got {run_id!r}")
        _check_name("metric", key)
        mk = self._mkeys.get((run_id, key))
        if mk is not None:
            return mk
        self._register_metrics(run_id, [key])
        return self._mkeys[(run_id, key)]

    def _register_metrics(self, run_id: str, names: Sequence[str]) -> None:
        """Add metric names to the run's entry (one change for all of them)."""
        for key in names:
            _check_name("metric", key)
            Storage.check_key(f"run/{run_id}/m/{key}")  # too many UTF-8 bytes: refuse it now
        entry = self._entry(run_id)
        if any(key not in entry["metrics"] for key in names):
            with self._change(run_id) as entry:
                entry["metrics"] += [k for k in dict.fromkeys(names)
                                     if k not in entry["metrics"]]
        for key in names:
            dbkey = f"run/{run_id}/m/{key}"
            self._mkeys[(run_id, key)] = [dbkey, self._db.storage.history_len(dbkey) // _ROW]

    def log_metric(self, run_id: str, key: str, value: float, step: int | None = None,
                   timestamp: float | None = None) -> None:
        """Append ``value`` to a metric's history.

        ``step`` defaults to one more than the metric's previous step count
        (0, 1, 2, ...).  NaN and infinity are kept (a diverging loss is data).
        """
        # Check the value and step before a new metric's name is registered:
        # bad input changes nothing in the file.
        if type(value) is not float:
            value = _number(key, value)
        if step is not None and (type(step) is not int or not -_MAX_STEP <= step <= _MAX_STEP):
            step = _step(key, step)
        if timestamp is None:
            ts = _now()
        else:
            ts = timestamp if type(timestamp) is float else _seconds("timestamp", timestamp)
        try:
            mk = self._mkeys.get((run_id, key))
        except TypeError:  # an unhashable run id or name: _metric_key says which
            mk = None
        if mk is None:
            mk = self._metric_key(run_id, key)
        if step is None:
            step = mk[1]
        mk[1] = step + 1
        self._db.put_float_triple(mk[0], value, step, ts)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        """Log several metrics at one step (one record each)."""
        if not isinstance(metrics, Mapping):
            raise errors.InvalidType(f"metrics must be a dict, got {type(metrics).__name__}")
        ts = time.time() if timestamp is None else _seconds("timestamp", timestamp)
        if not isinstance(run_id, str):
            raise errors.InvalidType(f"a run id is a str, got {run_id!r}")
        # All or nothing: check every value (and the step) before logging any.
        metrics = {k: v if type(v) is float else _number(k, v) for k, v in metrics.items()}
        if step is not None:
            step = _step(next(iter(metrics), "step"), step)
        mkeys = self._mkeys
        new = [k for k in metrics if (run_id, k) not in mkeys]
        if new:
            self._register_metrics(run_id, new)
        for key, value in metrics.items():
            self.log_metric(run_id, key, value, step, ts)

    def log_metric_batch(self, run_id: str, key: str, values: Any,
                         steps: Any = None, timestamps: Any = None) -> int:
        """Append many values of one metric in one record."""
        try:
            vals = np.asarray(values, dtype=np.float64).reshape(-1)
            given = None if steps is None else np.asarray(steps, dtype=np.float64).reshape(-1)
            ts = (np.full(len(vals), time.time()) if timestamps is None
                  else np.asarray(timestamps, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgument(f"metric {key!r}: values, steps and timestamps "
                                         f"must be numbers ({e})") from None
        n = len(vals)
        if n == 0:
            return 0
        if (given is not None and len(given) != n) or len(ts) != n:
            raise errors.DimensionMismatch(
                f"metric {key!r}: {n} values, {n if given is None else len(given)} steps, "
                f"{len(ts)} timestamps")
        if given is not None and not (np.isfinite(given).all() and (given == np.round(given)).all()
                                      and (np.abs(given) <= _MAX_STEP).all()):
            raise errors.InvalidArgument(f"metric {key!r}: steps must be whole numbers of at "
                                         "most 2**53 in magnitude")
        mk = self._metric_key(run_id, key)
        st = np.arange(mk[1], mk[1] + n, dtype=np.float64) if given is None else given
        rows = np.empty((n, _ROW))
        rows[:, 0], rows[:, 1], rows[:, 2] = vals, st, ts
        self._db.put_floats_batch(mk[0], rows.reshape(-1), allow_nonfinite=True)
        mk[1] = int(st[-1]) + 1
        return n

    def _rows(self, run_id: str, key: str) -> np.ndarray:
        entry = self._entry(run_id)
        if key not in entry["metrics"]:
            self._sync()
            entry = self._entry(run_id)
            if key not in entry["metrics"]:
                raise errors.KeyNotFound(f"run {run_id!r} has no metric {key!r}")
        flat = self._db.get_history_tensor(f"run/{run_id}/m/{key}")
        return flat[: len(flat) - len(flat) % _ROW].reshape(-1, _ROW)

    def get_metric(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs, in logging order."""
        rows = self._rows(run_id, key)
        return list(zip(rows[:, 1].astype(np.int64).tolist(), rows[:, 0].tolist()))

    get_metrics = get_metric

    def get_metric_tensor(self, run_id: str, key: str) -> np.ndarray:
        """The metric's values as a float64 array, in logging order."""
        return self._rows(run_id, key)[:, 0]

    def get_metric_history(self, run_id: str, key: str) -> dict[str, np.ndarray]:
        """``{"value", "step", "timestamp"}`` arrays (one copy of the history)."""
        rows = self._rows(run_id, key)
        return {"value": rows[:, 0], "step": rows[:, 1].astype(np.int64),
                "timestamp": rows[:, 2]}

    def metric_count(self, run_id: str, key: str) -> int:
        """How many values ``key`` holds (0 for a metric never logged)."""
        self._metric_name_ok(run_id, key)
        return self._db.storage.history_len(f"run/{run_id}/m/{key}") // _ROW

    def metric_rows(self, run_id: str, key: str, start: int = 0,
                    stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of a metric as an (n, 3) array of (value,
        step, unix time), reading only those rows."""
        self._metric_name_ok(run_id, key)
        dbkey = f"run/{run_id}/m/{key}"
        n = self._db.storage.history_len(dbkey) // _ROW
        stop = n if stop is None else min(stop, n)
        if start >= stop:
            return np.empty((0, _ROW))
        flat = self._db.storage.history_slice(dbkey, start * _ROW, stop * _ROW)
        return np.asarray(flat, dtype=np.float64).reshape(-1, _ROW)

    def _metric_name_ok(self, run_id: str, key: str) -> None:
        if not isinstance(run_id, str):
            raise errors.InvalidType(f"a run id is a str, got {run_id!r}")
        _check_name("metric", key)

    def list_metrics(self, run_id: str) -> list[str]:
        return list(self._entry(run_id)["metrics"])

    def _last_metrics(self, run_id: str, names: Sequence[str]) -> dict[str, float]:
        tails = self._db.storage.float_tails([f"run/{run_id}/m/{n}" for n in names], _ROW)
        return {n: t[0] for n, t in zip(names, tails) if t is not None}

    # -- artifacts -------------------------------------------------------
    def _put_artifact(self, run_id: str, name: str, data: bytes | memoryview, kind: str,
                      mime: str) -> str:
        check_artifact_name(name)
        db = self._db
        with self._change(run_id) as entry:
            db.storage.put_blob_parts(f"run/{run_id}/a/{name}", [data])
            entry["artifacts"][name] = {"type": kind, "size": len(data), "mime": mime,
                                        "time": time.time()}
        return kind

    def log_artifact(self, run_id: str, name: str, data: Any, *,
                     allow_pickle: bool = False) -> str:
        """Store ``data`` as artifact ``name`` (a relative path).  Returns its type.

        bytes are kept as they are; str as UTF-8 text; a numpy array in .npy
        format; a torch tensor or state_dict with ``torch.save``; a dict of
        plain values as JSON; a path (``os.PathLike``) by its file's bytes.
        Anything else needs ``allow_pickle=True``.
        """
        check_artifact_name(name)
        kind, mime, raw = encode_artifact(name, data, allow_pickle)
        return self._put_artifact(run_id, name, raw, kind, mime)

    def log_text(self, run_id: str, name: str, text: str) -> str:
        if not isinstance(text, str):
            raise errors.InvalidArgument(f"log_text needs a str, got {type(text).__name__}")
        return self._put_artifact(run_id, name, text.encode("utf-8"), "text", "text/plain")

    def log_dict(self, run_id: str, name: str, data: Mapping[str, Any]) -> str:
        """A dict as a JSON artifact (YAML for names ending in .yaml or .yml,
        as MLflow does, when PyYAML is installed)."""
        if not isinstance(data, Mapping):
            raise errors.InvalidType(f"log_dict needs a dict, got {type(data).__name__}")
        check_artifact_name(name)
        if name.endswith((".yaml", ".yml")):
            try:
                import yaml  # (MLflow writes YAML for these names)
            except ImportError:
                yaml = None
            if yaml is not None:
                try:
                    text = yaml.safe_dump(dict(data), sort_keys=False)
                except RecursionError:
                    raise errors.InvalidArgument(
                        f"artifact {name!r}: the dict is nested too deeply") from None
                except yaml.YAMLError as e:
                    raise errors.InvalidArgument(
                        f"artifact {name!r}: YAML cannot hold this dict ({e})") from None
                return self._put_artifact(run_id, name, text.encode(), "yaml",
                                          "application/x-yaml")
        try:
            raw = json.dumps(data, indent=2, default=json_default).encode("utf-8")
        except RecursionError:
            raise errors.InvalidArgument(
                f"artifact {name!r}: the dict is nested too deeply for JSON") from None
        except (TypeError, ValueError) as e:  # keys JSON cannot hold, or a cycle
            raise errors.InvalidArgument(f"artifact {name!r}: not JSON ({e})") from None
        return self._put_artifact(run_id, name, raw, "json", "application/json")

    def log_image(self, run_id: str, name: str, image: Any) -> str:
        """A PNG from a numpy array (HxW, HxWx3 or HxWx4; uint8, or floats in
        [0, 1]), a PIL image or a matplotlib figure."""
        return self._put_artifact(run_id, name, to_png(image), "image", "image/png")

    def log_figure(self, run_id: str, name: str, figure: Any) -> str:
        """A matplotlib (or anything with ``savefig``) figure as PNG; a name
        ending in .svg or .html keeps that format."""
        check_artifact_name(name)
        if name.endswith(".svg") and hasattr(figure, "savefig"):
            buf = io.BytesIO()
            figure.savefig(buf, format="svg")
            return self._put_artifact(run_id, name, buf.getvalue(), "figure", "image/svg+xml")
        if name.endswith(".html") and hasattr(figure, "to_html"):  # plotly
            raw = figure.to_html(include_plotlyjs=True).encode("utf-8")
            return self._put_artifact(run_id, name, raw, "figure", "text/html")
        if not hasattr(figure, "savefig"):
            raise errors.InvalidArgument(
                f"log_figure needs a matplotlib figure, got {type(figure).__name__}")
        return self._put_artifact(run_id, name, to_png(figure), "figure", "image/png")

    def log_table(self, run_id: str, name: str, columns: Sequence[str],
                  rows: Sequence[Sequence[Any]]) -> str:
        """A table (column names and rows of values), stored as JSON."""
        check_artifact_name(name)
        if isinstance(columns, (str, bytes, Mapping)) or not isinstance(columns, Iterable):
            raise errors.InvalidType(f"table {name!r}: columns are a list of names, "
                                     f"got {columns!r}")
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
            raise errors.InvalidType(f"table {name!r}: rows are a list of rows, got {rows!r}")
        cols = [str(c) for c in columns]
        data = []
        for i, r in enumerate(rows):
            if isinstance(r, (str, bytes, Mapping)) or not isinstance(r, Iterable):
                raise errors.InvalidType(f"table {name!r}: row {i} is not a list of values")
            data.append(list(r))
        for i, r in enumerate(data):
            if len(r) != len(cols):
                raise errors.DimensionMismatch(
                    f"table {name!r}: row {i} has {len(r)} values for {len(cols)} columns")
        try:
            raw = json.dumps({"columns": cols, "data": data}, default=json_default).encode()
        except RecursionError:
            raise errors.InvalidArgument(f"table {name!r}: a value is nested too deeply") from None
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgument(f"table {name!r}: not JSON ({e})") from None
        return self._put_artifact(run_id, name, raw, "table", "application/json")

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """The artifact's stored bytes."""
        if not isinstance(name, str):
            raise errors.InvalidType(f"an artifact name is a str, got {name!r}")
        entry = self._entry(run_id)
        if name not in entry["artifacts"]:
            self._sync()
            entry = self._entry(run_id)
            if name not in entry["artifacts"]:
                raise errors.KeyNotFound(f"run {run_id!r} has no artifact {name!r}")
        data = self._db.get_bytes(f"run/{run_id}/a/{name}")
        if data is None:
            raise errors.KeyNotFound(f"run {run_id!r} has no artifact {name!r}")
        return data

    def artifact_info(self, run_id: str, name: str) -> dict[str, Any]:
        """``{"type", "size", "mime", "time"}`` of an artifact."""
        if not isinstance(name, str):
            raise errors.InvalidType(f"an artifact name is a str, got {name!r}")
        info = self._entry(run_id)["artifacts"].get(name)
        if info is None:
            raise errors.KeyNotFound(f"run {run_id!r} has no artifact {name!r}")
        return dict(info)

    def load_artifact(self, run_id: str, name: str, *, allow_pickle: bool = False) -> Any:
        """The artifact decoded by its type: str for text, dict for JSON, a
        numpy array for .npy and images, a dict of columns for tables,
        torch objects (``weights_only=True``), bytes otherwise.  Pickles
        are refused unless ``allow_pickle=True``."""
        kind = self.artifact_info(run_id, name)["type"]
        raw = self.get_artifact(run_id, name)
        if kind in ("torch", "pickle"):
            return decode_artifact(kind, raw, allow_pickle)
        try:
            return decode_artifact(kind, raw, allow_pickle)
        except (ValueError, RecursionError, EOFError, OSError, KeyError, IndexError) as e:
            # UnicodeDecodeError and JSONDecodeError are ValueErrors.  The
            # record passed its CRC, so these are bytes someone wrote that
            # are not the artifact's type.
            raise errors.CorruptDatabase(
                f"artifact {name!r} of run {run_id!r} ({'run/' + run_id + '/a/' + name!r}) "
                f"does not decode as {kind} ({type(e).__name__}: {e})") from e

    def artifact_infos(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Each artifact of a run: name -> ``type``, ``size``, ``mime``, ``time``."""
        return {name: dict(info) for name, info in self._entry(run_id)["artifacts"].items()}

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[str]:
        if prefix is not None and not isinstance(prefix, str):
            raise errors.InvalidType(f"prefix is a str, got {prefix!r}")
        names = list(self._entry(run_id)["artifacts"])
        if prefix:
            p = prefix.rstrip("/") + "/"
            names = [n for n in names if n.startswith(p) or n == prefix]
        return names

    def delete_artifact(self, run_id: str, name: str) -> None:
        if not isinstance(name, str):
            raise errors.InvalidType(f"an artifact name is a str, got {name!r}")
        with self._change(run_id) as entry:
            if entry["artifacts"].pop(name, None) is None:
                raise errors.KeyNotFound(f"run {run_id!r} has no artifact {name!r}")
            self._db.delete(f"run/{run_id}/a/{name}")

    # -- queries ---------------------------------------------------------
    def query(self, experiment: str | None = None, filter: Mapping[str, Any] | None = None,
              sort_by: str | None = None, ascending: bool = True,
              limit: int | None = None) -> list[Run]:
        """Runs matching ``filter``, sorted by a metric's last value or a param.

        Filter keys: ``status`` (case-insensitive), ``tags`` (a label or list
        of labels, all required), ``name``, ``experiment``, ``params`` (a
        dict), ``metrics`` (a dict of name -> value or (op, value) with op in
        < <= > >= == !=), and any other key is a param name (its value
        compared as a string) or, failing that, a metric.
        """
        if filter is not None and not isinstance(filter, Mapping):
            raise errors.InvalidType(
                f"filter must be a dict such as {{'status': 'completed', 'lr': '0.001'}}, "
                f"got {filter!r}")
        if sort_by is not None and not isinstance(sort_by, str):
            raise errors.InvalidType(f"sort_by must be a metric or param name, got {sort_by!r}")
        if limit is not None and (isinstance(limit, bool)
                                  or not isinstance(limit, (int, np.integer))):
            raise errors.InvalidType(f"limit must be an int, got {limit!r}")
        if limit is not None and limit < 0:
            raise errors.InvalidArgument(f"limit must not be negative, got {limit!r}")
        runs = self.list_runs(experiment)
        if filter:
            runs = [r for r in runs if matches(r, filter)]
        if sort_by:
            runs = sorted_runs(runs, sort_by, ascending)
        return runs[:limit] if limit is not None else runs

    def get_best_run(self, experiment: str | None, metric: str,
                     minimize: bool = True) -> Run | None:
        """The run with the lowest (or highest) last value of ``metric``."""
        _check_name("metric", metric)
        best, best_v = None, math.inf
        for run in self.list_runs(experiment):
            v = run.metrics.get(metric)
            if v is None or math.isnan(v):
                continue
            v = v if minimize else -v
            if best is None or v < best_v:
                best, best_v = run, v
        return best

    def compare_runs(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Params and final metrics side by side: ``{"runs": ids, "params":
        {name: {run id: value}}, "metrics": {name: {run id: last value}}}``."""
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        if isinstance(run_ids, (bytes, Mapping)) or not isinstance(run_ids, Iterable):
            raise errors.InvalidType(f"run_ids is a list of run ids, got {run_ids!r}")
        runs = [self.get_run(r) for r in run_ids]
        params: dict[str, dict[str, str | None]] = {}
        metrics: dict[str, dict[str, float | None]] = {}
        for run in runs:
            for k in run.params:
                params.setdefault(k, {})
            for k in run.metrics:
                metrics.setdefault(k, {})
        for run in runs:
            for k in params:
                params[k][run.id] = run.params.get(k)
            for k in metrics:
                metrics[k][run.id] = run.metrics.get(k)
        differ = sorted(k for k, v in params.items() if len(set(v.values())) > 1)
        return {"runs": [r.id for r in runs], "names": {r.id: r.name for r in runs},
                "status": {r.id: r.status.value for r in runs}, "params": params,
                "metrics": metrics, "params_that_differ": differ}

    # -- maintenance -----------------------------------------------------
    def sync(self) -> None:
        """fsync: everything logged so far survives power loss."""
        self._db.sync()

    def export_run(self, run_id: str) -> dict[str, Any]:
        """A run as plain data: the catalog entry plus every metric history."""
        run = self.get_run(run_id)
        out = run.to_dict()
        out["metric_history"] = {
            m: {k: v.tolist() for k, v in self.get_metric_history(run_id, m).items()}
            for m in run.metric_names}
        return out


_MAX_STEP = 2**53  # steps are stored as float64: larger ones would not read back


def _step(name: str, step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        if isinstance(step, (float, np.floating)) and float(step).is_integer():
            return _step(name, int(step))
        raise errors.InvalidArgument(f"metric {name!r}: step {step!r} is not an int")
    if not -_MAX_STEP <= step <= _MAX_STEP:
        raise errors.InvalidArgument(f"metric {name!r}: step {step!r} is out of range "
                                     "(at most 2**53 in magnitude)")
    return int(step)


class Experiment:
    """One experiment in a tracking file: ``Experiment("mnist", "experiments.db")``.

    >>> exp = Experiment("mnist", path)                       # doctest: +SKIP
    >>> with exp.start_run(tags=["baseline"]) as run:         # doctest: +SKIP
    ...     run.log_params({"lr": 0.001})
    ...     run.log_metric("loss", 0.25, step=1)
    >>> exp.get_best_run("loss").params["lr"]                 # doctest: +SKIP
    '0.001'
    """

    def __init__(self, name: str, path: str | os.PathLike[str] = "experiments.db", *,
                 tracker: ExperimentTracker | None = None, **kwargs: Any) -> None:
        self.name = _check_name("experiment", name)
        self._own = tracker is None
        self.tracker = tracker or ExperimentTracker(path, **kwargs)
        self.path = self.tracker.path
        if not self.tracker.db.config.read_only and name not in self.tracker.list_experiments():
            self.tracker.create_experiment(name)

    def close(self) -> None:
        if self._own:
            self.tracker.close()

    def __enter__(self) -> "Experiment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, {self.path!r})"

    def start_run(self, tags: Sequence[str] | None = None, *, name: str | None = None,
                  run_name: str | None = None, params: Mapping[str, Any] | None = None,
                  system_metrics: bool | float = False, **kwargs: Any) -> Run:
        """Start a run; use it as ``with exp.start_run() as run:``.

        ``system_metrics=True`` samples CPU, RAM, disk and GPU into
        ``system/*`` metrics until the run ends."""
        rid = self.tracker.start_run(self.name, tags, name=name, run_name=run_name,
                                     params=params, system_metrics=system_metrics, **kwargs)
        return self.tracker.get_run(rid)

    def list_runs(self) -> list[Run]:
        return self.tracker.list_runs(self.name)

    def get_run(self, run_id: str) -> Run:
        run = self.tracker.get_run(run_id)
        if run.experiment != self.name:
            raise errors.KeyNotFound(f"run {run_id!r} belongs to experiment "
                                     f"{run.experiment!r}, not {self.name!r}")
        return run

    def delete_run(self, run_id: str) -> None:
        self.get_run(run_id)
        self.tracker.delete_run(run_id)

    def query(self, filter: Mapping[str, Any] | None = None, sort_by: str | None = None,
              ascending: bool = True, limit: int | None = None) -> list[Run]:
        return self.tracker.query(self.name, filter, sort_by, ascending, limit)

    def get_best_run(self, metric: str, minimize: bool = True) -> Run | None:
        return self.tracker.get_best_run(self.name, metric, minimize)

    def compare_runs(self, run_ids: Sequence[str]) -> dict[str, Any]:
        return self.tracker.compare_runs(run_ids)

    def get_metric_tensor(self, run_id: str, key: str) -> np.ndarray:
        return self.tracker.get_metric_tensor(run_id, key)

    def get_metrics(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return self.tracker.get_metric(run_id, key)

    get_metric = get_metrics

    def get_metric_history(self, run_id: str, key: str) -> dict[str, np.ndarray]:
        return self.tracker.get_metric_history(run_id, key)

    def get_artifact(self, run_id: str, name: str) -> bytes:
        return self.tracker.get_artifact(run_id, name)

    def load_artifact(self, run_id: str, name: str, *, allow_pickle: bool = False) -> Any:
        return self.tracker.load_artifact(run_id, name, allow_pickle=allow_pickle)

    def list_artifacts(self, run_id: str) -> list[str]:
        return self.tracker.list_artifacts(run_id)

    def verify(self) -> TrackerReport:
        """The file's check (see :meth:`ExperimentTracker.verify`); changes nothing."""
        return self.tracker.verify()

    def __len__(self) -> int:
        return len(self.tracker.run_ids(self.name))

    def __iter__(self) -> Iterator[Run]:
        return iter(self.list_runs())

