"""The run of :mod:`synadb.integrations.wandb`: ``Run``, ``Config`` and
``Summary``, and W&B's step rules.

How a W&B run lands in the tracker (an ordinary synadb run: the tracker,
the MLflow shim and Studio read it as any other):

* project -> experiment; run id (8 letters and digits) -> run id; display
  name -> run name; W&B tags -> labels;
* config -> params (nested dicts flattened with ".") and, typed, the JSON
  tag ``wandb.config``;
* each numeric value of ``log`` -> a metric row (value, step, time) at the
  W&B step; nested dicts are flattened with "." (``{"a": {"b": 1}}`` is
  ``a.b``, the name W&B's UI and public API give it);
* summary -> the JSON tag ``wandb.summary``; ``define_metric`` -> the JSON
  tag ``wandb.metrics``; group, job type, notes, entity -> ``wandb.group``,
  ``wandb.job_type``, ``wandb.notes`` (also ``mlflow.note.content``),
  ``wandb.entity``;
* media -> typed artifacts (:mod:`.wandb_media`).

Logging is cheap on purpose: a row is appended to a buffer and the buffer
goes to the file as one record per metric every ``flush_s`` seconds (1 s by
default; ``SYNADB_WANDB_FLUSH_S`` or ``settings={"synadb_flush_s": 0}`` to
write every row at once), at 10,000 rows, and at ``finish``.  W&B itself
hands rows to a background process; like it, a killed process loses at most
the rows of the last interval.  The tracker's own durability then applies
(``sync_on_write`` fsyncs every write and every row is written at once).
"""

from __future__ import annotations

import fnmatch
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .. import errors
from ..tracking import ExperimentTracker, RunStatus
from ..tracking_media import TypedArtifact, json_default
from .wandb_media import Media, as_media, reference_json

__all__ = ["Run", "Config", "Summary", "ConfigError", "UsageError", "termwarn", "flatten",
           "SUMMARY_TAG", "CONFIG_TAG", "METRICS_TAG"]

CONFIG_TAG = "wandb.config"
SUMMARY_TAG = "wandb.summary"
METRICS_TAG = "wandb.metrics"
GROUP_TAG = "wandb.group"
JOB_TYPE_TAG = "wandb.job_type"
NOTES_TAG = "wandb.notes"
ENTITY_TAG = "wandb.entity"
TAGS_TAG = "wandb.tags"
STEP_TAG = "wandb.step"
USED_TAG = "wandb.used_artifacts"
LOGGED_TAG = "wandb.logged_artifacts"
SWEEP_TAG = "sweep"  # synadb.sweep's tag: Studio groups a sweep's runs by it
MAX_BUFFERED_ROWS = 10_000
_now = time.time
_F64 = np.float64  # a float subclass (np.mean returns one): the fast path takes it


class UsageError(errors.InvalidArgument):
    "A call W&B refuses (log before init, log after finish, resume='must' of no run...)."


class ConfigError(errors.InvalidArgument):
    "A config value changed without ``allow_val_change=True`` (W&B's ConfigError)."


def termwarn(message: str) -> None:
    """A warning on stderr, as W&B prints them (never the warnings module:
    W&B's are not Python warnings, and a script's ``-W error`` must not turn
    a dropped step into a crash)."""
    print(f"wandb: WARNING {message}", file=sys.stderr)


# {"a": {"b": 1}} is logged as "a.b": the name W&B's UI, summary and public
# API give a nested value (its history keeps the nesting; its exports and
# charts join the levels with a dot).
NESTED_SEP = "."


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys, as W&B names nested history values."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if not isinstance(k, str):
            raise errors.InvalidType(
                f"Key values passed to `wandb.log` must be strings, got {k!r}")
        name = prefix + k
        if isinstance(v, Mapping) and not isinstance(v, Media):
            if not v:
                continue
            out.update(flatten(v, name + NESTED_SEP))
        else:
            out[name] = v
    return out


_ID_FORBIDDEN = set("/\\#?%:")


def tracker_id(wandb_id: str) -> str:
    """The tracker's run id for a W&B run id.  W&B allows ids such as
    ``exp-1_seed.3``; the tracker's are letters and digits, so any other id
    is kept as ``x`` + its UTF-8 in hex (the W&B id stays in the tag
    ``wandb.id``, and every W&B-facing name shows it).

    >>> tracker_id("abc123"), tracker_id("exp-1")
    ('abc123', 'x6578702d31')
    """
    if not isinstance(wandb_id, str) or not wandb_id:
        raise UsageError(f"a run id is a non-empty str, got {wandb_id!r}")
    if wandb_id.isalnum() and len(wandb_id) <= 64:
        return wandb_id
    if _ID_FORBIDDEN & set(wandb_id):
        raise UsageError(f"Run ID cannot contain the following special characters: "
                         f"/\\#?%:, got {wandb_id!r}")
    rid = "x" + wandb_id.encode("utf-8").hex()
    if len(rid) > 64:
        raise UsageError(f"run id {wandb_id!r} is too long: at most 31 bytes when it holds "
                         "anything but letters and digits (64 otherwise)")
    return rid


def _check_key(key: str) -> str:
    if not key or len(key) > 250 or "\0" in key:
        raise errors.InvalidArgument(
            f"bad key {key[:60]!r}: a logged key has 1 to 250 characters and no NUL")
    return key


def _number(v: Any) -> float | None:
    """A loggable scalar as a float, or None if it is not one."""
    t = type(v)
    if t is float or t is int:
        return float(v)
    if t is bool or isinstance(v, (bool, np.bool_)):
        return float(bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        try:
            return float(v)
        except OverflowError:
            return math.inf if v > 0 else -math.inf
    if hasattr(v, "item") and getattr(v, "ndim", None) == 0 or (
            hasattr(v, "numel") and callable(v.numel) and v.numel() == 1):
        return _number(v.item())
    return None


def config_dict(value: Any) -> dict[str, Any]:
    """A config as a dict: a dict, an argparse Namespace (anything with
    ``__dict__``), absl-style flags (``flag_values_dict``), or a path to a
    YAML/JSON file."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        with open(value, "rb") as f:
            raw = f.read()
        if value.endswith((".yaml", ".yml")):
            import yaml

            loaded = yaml.safe_load(raw) or {}
        else:
            loaded = json.loads(raw)
        # W&B's config-defaults.yaml style: {"lr": {"value": 0.1}}
        return {k: (v["value"] if isinstance(v, Mapping) and set(v) <= {"value", "desc"}
                    and "value" in v else v)
                for k, v in loaded.items() if k != "wandb_version"}
    if hasattr(value, "flag_values_dict"):
        return dict(value.flag_values_dict())
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    raise errors.InvalidType(f"config must be a dict, got {type(value).__name__}")


def _json_value(v: Any) -> Any:
    """A config value as JSON (numpy to Python, tuples to lists...)."""
    return json.loads(json.dumps(v, default=json_default))


class Config:
    """``wandb.config``: attribute and item access over the run's config.

    Changing a key that already has another value raises
    :class:`ConfigError` unless ``update(..., allow_val_change=True)``;
    keys a sweep set are locked (a change is ignored with a warning), as in
    W&B.

    >>> c = Config(); c.update({"lr": 0.1}); c.lr, c["lr"]
    (0.1, 0.1)
    """

    def __init__(self, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_locked", {})
        object.__setattr__(self, "_on_change", on_change)

    # -- access ---------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Config({self._items!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self._items == other._items
        return isinstance(other, Mapping) and self._items == dict(other)

    def keys(self) -> Any:
        return self._items.keys()

    def values(self) -> Any:
        return self._items.values()

    def items(self) -> Any:
        return self._items.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def persist(self) -> None:
        """Written on every change already."""

    # -- change ---------------------------------------------------------
    def update(self, d: Any, allow_val_change: bool | None = None) -> None:
        changed = self._merge(config_dict(d), bool(allow_val_change), warn_locked=True)
        if changed and self._on_change is not None:
            self._on_change(changed)

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        missing = {k: v for k, v in config_dict(d).items() if k not in self._items}
        if missing:
            self.update(missing)

    def _merge(self, d: Mapping[str, Any], allow: bool, warn_locked: bool) -> dict[str, Any]:
        changed: dict[str, Any] = {}
        for k, v in d.items():
            if not isinstance(k, str):
                raise errors.InvalidType(f"config keys are str, got {k!r}")
            if k in self._locked:
                if warn_locked and self._items.get(k) != v:
                    termwarn(f"Config item '{k}' was locked by '{self._locked[k]}' "
                             "(ignored update).")
                continue
            v = _json_value(v)
            if k in self._items and self._items[k] != v and not allow:
                raise ConfigError(
                    f'Attempted to change value of key "{k}" from {self._items[k]} to {v}\n'
                    "If you really want to do this, pass allow_val_change=True to "
                    "config.update()")
            if self._items.get(k, _MISSING) != v:
                self._items[k] = v
                changed[k] = v
        return changed

    def _lock(self, values: Mapping[str, Any], who: str) -> None:
        """Set ``values`` and lock them (a sweep's parameters)."""
        for k, v in values.items():
            self._items[k] = _json_value(v)
            self._locked[k] = who


_MISSING = object()


class Summary:
    """``run.summary``: the last value of each logged key (or what
    ``define_metric(summary=...)`` asks for), and anything set by hand.

    Item and attribute access, ``update``, ``get``, ``keys``, ``items``.
    """

    def __init__(self, run: "Run | None" = None) -> None:
        object.__setattr__(self, "_d", {})
        object.__setattr__(self, "_run", run)

    @property
    def _data(self) -> dict[str, Any]:
        # log's fast path leaves the summary to be brought up to date here,
        # when it is read, instead of on every call.
        if self._run is not None:
            self._run._merge_summary()
        return self._d

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._touched()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Summary({self._data!r})"

    def keys(self) -> Any:
        return self._data.keys()

    def items(self) -> Any:
        return self._data.items()

    def values(self) -> Any:
        return self._data.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def update(self, d: Mapping[str, Any]) -> None:
        data = self._data
        for k, v in dict(d).items():
            data[str(k)] = reference_json(v) if isinstance(v, (Media, Mapping)) else v
        self._touched()

    def _touched(self) -> None:
        if self._run is not None:
            self._run._summary_dirty = True

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)


_SUMMARY_OPS = ("min", "max", "mean", "last", "best", "first", "none", "copy")


class MetricDef:
    """What ``define_metric`` returns (W&B's ``wandb.Metric``)."""

    def __init__(self, name: str, step_metric: str | None, step_sync: bool | None,
                 hidden: bool | None, summary: list[str], goal: str | None) -> None:
        self.name, self.step_metric, self.step_sync = name, step_metric, step_sync
        self.hidden, self.summary, self.goal = hidden, summary, goal

    def matches(self, key: str) -> bool:
        if "*" in self.name or "?" in self.name or "[" in self.name:
            return fnmatch.fnmatchcase(key, self.name)
        return key == self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "step_metric": self.step_metric, "step_sync": self.step_sync,
                "hidden": self.hidden, "summary": self.summary, "goal": self.goal}

    def __repr__(self) -> str:
        return f"<wandb.Metric {self.name!r}>"


class _Agg:
    __slots__ = ("n", "total", "lo", "hi", "first", "last")

    def __init__(self) -> None:
        self.n, self.total, self.lo, self.hi = 0, 0.0, math.inf, -math.inf
        self.first = self.last = math.nan

    def add(self, v: float) -> None:
        if self.n == 0:
            self.first = v
        self.n += 1
        self.total += v
        self.last = v
        if v < self.lo:
            self.lo = v
        if v > self.hi:
            self.hi = v

    def value(self, ops: list[str], goal: str | None) -> Any:
        out = {}
        for op in ops:
            if op == "min":
                out["min"] = self.lo
            elif op == "max":
                out["max"] = self.hi
            elif op == "mean":
                out["mean"] = self.total / self.n
            elif op == "first":
                out["first"] = self.first
            elif op == "last":
                out["last"] = self.last
            elif op == "best":
                out["best"] = self.hi if goal in ("maximize", "max") else self.lo
        return out


class _Buffer:
    """Rows waiting for the file, kept so that logging one costs a few list
    appends and writing them costs C-level passes: steps, times and every
    value (flat, row after row) in parallel lists, and segments (first row,
    first value, keys) of consecutive rows logged with the same keys."""

    __slots__ = ("steps", "times", "flat", "segs", "seg_keys")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.times: list[float] = []
        self.flat: list[float] = []
        self.segs: list[tuple[int, int, tuple[str, ...]]] = []
        self.seg_keys: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, ts: float, keys: tuple[str, ...], vals: Any) -> None:
        if keys is not self.seg_keys:
            self.segs.append((len(self.steps), len(self.flat), keys))
            self.seg_keys = keys
        self.steps.append(step)
        self.times.append(ts)
        self.flat.extend(vals)

    def _spans(self) -> Iterator[tuple[int, int, int, tuple[str, ...]]]:
        """(first row, end row, first value, keys) of each segment."""
        segs, n = self.segs, len(self.steps)
        for i, (r0, v0, keys) in enumerate(segs):
            yield r0, segs[i + 1][0] if i + 1 < len(segs) else n, v0, keys

    def last_values(self, start: int) -> Iterator[Any]:
        """(key, value) pairs of the last row of each segment ending after ``start``."""
        flat = self.flat
        for r0, r1, v0, keys in self._spans():
            if r1 > start:
                off = v0 + (r1 - 1 - r0) * len(keys)
                yield zip(keys, flat[off:off + len(keys)])

    def columns(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One (values, steps, times) triple of arrays per key."""
        steps = np.array(self.steps, dtype=np.float64)
        times = np.array(self.times, dtype=np.float64)
        flat = np.array(self.flat, dtype=np.float64)
        parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        for r0, r1, v0, keys in self._spans():
            k = len(keys)
            matrix = flat[v0:v0 + (r1 - r0) * k].reshape(r1 - r0, k)
            for c, key in enumerate(keys):
                parts.setdefault(key, []).append((matrix[:, c], steps[r0:r1], times[r0:r1]))
        out = {}
        for key, ps in parts.items():
            if len(ps) == 1:
                out[key] = ps[0]
            else:
                out[key] = (np.concatenate([p[0] for p in ps]),
                            np.concatenate([p[1] for p in ps]),
                            np.concatenate([p[2] for p in ps]))
        return out


class Run:
    """A W&B-style run over an :class:`~synadb.ExperimentTracker` run.

    Made by ``wandb.init``; attributes as W&B's: ``id``, ``name``,
    ``project``, ``entity``, ``config``, ``summary``, ``step``, ``tags``,
    ``group``, ``job_type``, ``notes``, ``dir``, ``path``, ``url``,
    ``resumed``, ``sweep_id``, ``start_time``; and ``log``, ``define_metric``,
    ``log_artifact``, ``use_artifact``, ``alert``, ``finish``, the context
    manager.
    """

    disabled = False

    def __init__(self, tracker: ExperimentTracker, run_id: str, *, project: str, entity: str,
                 name: str, group: str | None, job_type: str | None, notes: str | None,
                 tags: list[str], directory: str, flush_s: float, resumed: bool,
                 mode: str, on_finish: Callable[["Run"], None] | None = None,
                 wandb_id: str | None = None) -> None:
        self._tracker = tracker
        self._rid = run_id  # the tracker's id (see tracker_id)
        self.id = wandb_id or run_id
        self.project, self.entity, self._name = project, entity, name
        self.group, self.job_type, self._notes = group, job_type, notes
        self._tags = tuple(tags)
        self.dir = directory
        self.resumed = resumed
        self.mode = mode
        self.offline = mode == "offline"
        self.sweep_id: str | None = None
        self.start_time = _now()
        self.config = Config(self._config_changed)
        self.summary = Summary(self)
        self._summary_dirty = False
        self._step = 0
        self._pending: dict[str, Any] | None = None
        self._buf = _Buffer()
        self._fast_keys: tuple[str, ...] = ()  # the keys of the last fast-path row
        self._merged = 0  # rows before this one are in the summary already
        self._known: set[str] = set()  # keys already checked as metric names
        self._flush_s = flush_s
        self._flushed_at = _now()
        self._defs: list[MetricDef] = []
        self._def_of: dict[str, MetricDef | None] = {}
        self._aggs: dict[str, _Agg] = {}
        self._simple = True  # no define_metric, no sweep hook: log takes the fast path
        self._hook: Callable[[dict[str, float]], None] | None = None
        self._finished = False
        self._on_finish = on_finish
        self._media_names: set[str] = set()

    # -- attributes -----------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._tracker.rename_run(self._rid, value)
        self._name = value

    display_name = name

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str) -> None:
        self._tracker.set_tags(self._rid, {NOTES_TAG: value, "mlflow.note.content": value})
        self._notes = value

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, value: Any) -> None:
        labels = tuple([value] if isinstance(value, str) else value)
        self._tracker.add_tags(self._rid, list(labels))
        self._tracker.set_tag(self._rid, TAGS_TAG, json.dumps(list(labels)))
        self._tags = labels

    @property
    def step(self) -> int:
        return self._step

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def url(self) -> str:
        return f"synadb://{self._tracker.path}#{self.project}/{self.id}"

    def get_url(self) -> str:
        return self.url

    @property
    def project_name(self) -> str:
        return self.project

    @property
    def tracker(self) -> ExperimentTracker:
        """The :class:`~synadb.ExperimentTracker` this run writes to."""
        return self._tracker

    def __repr__(self) -> str:
        return f"<synadb wandb Run {self.path} ({self._name})>"

    # -- config ---------------------------------------------------------
    def _config_changed(self, changed: dict[str, Any]) -> None:
        if self._finished:
            raise UsageError("the run has finished: its config cannot change")
        self._tracker.log_params(self._rid, changed)
        self._tracker.set_tag(self._rid, CONFIG_TAG, json.dumps(self.config.as_dict(),
                                                              default=json_default))

    # -- logging ------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None, sync: bool | None = None) -> None:
        """Log a dict of values at the current step (W&B's rules).

        * no ``step``, no ``commit``: the values (with any accumulated by
          ``commit=False``) form the row of the current step; the step then
          advances by one;
        * ``commit=False``: the values join the current step's row, which is
          written when the step is committed;
        * ``step=n``: n above the current step commits the pending row and
          moves to n (the row is written when a later step arrives, with
          ``commit=True``, or at ``finish``); n equal adds to it; n below is
          dropped with a warning.
        """
        if self._finished:
            raise UsageError("You must call wandb.init() before wandb.log() "
                             "(this run has finished)")
        if type(data) is not dict:
            if not isinstance(data, Mapping):
                raise errors.InvalidType("wandb.log must be passed a dictionary")
            data = dict(data)
        if step is None and commit is None and self._pending is None and self._simple:
            keys = tuple(data)
            if keys == self._fast_keys or self._fast_layout(keys):
                vals = data.values()
                for v in vals:
                    t = type(v)
                    if t is not float and t is not int and t is not _F64:
                        break
                else:
                    # The fast path: a flat dict of numbers under known names
                    # (the summary catches up when it is read).
                    buf = self._buf
                    keys = self._fast_keys
                    if keys is not buf.seg_keys:
                        buf.segs.append((len(buf.steps), len(buf.flat), keys))
                        buf.seg_keys = keys
                    s = self._step
                    ts = _now()
                    buf.steps.append(s)
                    buf.times.append(ts)
                    buf.flat.extend(vals)
                    self._step = s + 1
                    if ts - self._flushed_at >= self._flush_s \
                            or len(buf.steps) >= MAX_BUFFERED_ROWS:
                        self._flush()
                    return
        elif type(step) is int and commit is None and self._simple and step >= self._step \
                and self._known.issuperset(data):
            # log(row, step=n), W&B's other common call: the row waits for a
            # later step (or commit) and is committed by _commit's fast path.
            for v in data.values():
                t = type(v)
                if t is not float and t is not int and t is not _F64:
                    break
            else:
                if step > self._step:
                    if self._pending is not None:
                        self._commit()
                    self._step = step
                if self._pending is None:
                    self._pending = data.copy()
                else:
                    self._pending.update(data)
                return
        self._log_slow(data, step, commit)

    def _fast_layout(self, keys: tuple[str, ...]) -> bool:
        """Whether rows with these keys may take the fast path (each a
        checked metric name); if so they become the shared keys tuple."""
        if keys and self._known.issuperset(keys):
            self._fast_keys = keys
            return True
        return False

    def _log_slow(self, data: dict[str, Any], step: Any, commit: bool | None) -> None:
        flat = flatten(data)
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
                if isinstance(step, (float, np.floating)) and float(step).is_integer():
                    step = int(step)
                else:
                    raise errors.InvalidType(f"step must be an int, got {step!r}")
            step = int(step)
            if step < self._step:
                termwarn(f"Tried to log to step {step} that is less than the current step "
                         f"{self._step}. Steps must be monotonically increasing, so this data "
                         "will be ignored.")
                return
            if step > self._step:
                if self._pending is not None:
                    self._commit()
                self._step = step
        if self._pending is None:
            self._pending = flat
        else:
            self._pending.update(flat)
        if (step is None and commit is None) or commit:
            self._commit()

    def _merge_summary(self) -> None:
        """Bring the summary up to date with rows the fast path appended:
        the last value of each key (of consecutive rows with the same keys,
        only the last row is needed)."""
        n = len(self._buf)
        if self._merged >= n:
            return
        d = self.summary._d
        for pairs in self._buf.last_values(self._merged):
            d.update(pairs)
        self._merged = n

    def _commit(self) -> None:
        row = self._pending
        if row and self._simple and self._known.issuperset(row):
            for v in row.values():
                t = type(v)
                if t is not float and t is not int and t is not _F64:
                    break
            else:  # numbers under known names: straight to the buffer
                self._pending = None
                s = self._step
                self._step = s + 1
                keys = tuple(row)
                if keys != self._fast_keys:
                    self._fast_keys = keys
                ts = _now()
                self._buf.add(s, ts, self._fast_keys, row.values())
                if ts - self._flushed_at >= self._flush_s or len(self._buf) >= MAX_BUFFERED_ROWS:
                    self._flush()
                return
        self._merge_summary()
        row, self._pending = self._pending, None
        s = self._step
        self._step = s + 1
        if not row:
            return
        ts = _now()
        nums: dict[str, float] = {}
        summary = self.summary._data
        ints: dict[str, int] = {}
        for k, v in row.items():
            if k not in self._known:
                self._known.add(_check_key(k))
            f = _number(v)
            if f is not None:
                nums[k] = f
                if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                    ints[k] = int(v)  # the summary keeps an int an int, as W&B's does
                continue
            if v is None:
                continue
            media = as_media(v)
            if media is None:
                if isinstance(v, (str, list, tuple)):
                    # Text and plain lists (W&B keeps them as they are, with
                    # no chart) go to the summary: metrics are numbers.
                    summary[k] = v if isinstance(v, str) else _json_value(v)
                    self._summary_dirty = True
                    continue
                raise errors.InvalidArgument(
                    f"wandb.log: key {k!r}: cannot log a {type(v).__name__} "
                    "(numbers, str, dicts and wandb media types can be logged)")
            if isinstance(media, list):
                summary[k] = [m._log(self._store, k, s, i) for i, m in enumerate(media)][-1]
            else:
                summary[k] = media._log(self._store, k, s)
            self._summary_dirty = True
        if self._defs:
            self._apply_defs(nums, summary)
        else:
            summary.update(nums)
        for k, i in ints.items():
            if summary.get(k) == i:
                summary[k] = i
        if nums:
            self._buf.add(s, ts, tuple(nums), nums.values())
            self._merged = len(self._buf)  # its summary is done above
        if self._hook is not None and nums:
            self._hook(nums)
        if ts - self._flushed_at >= self._flush_s or len(self._buf) >= MAX_BUFFERED_ROWS:
            self._flush()

    def _def_for(self, key: str) -> MetricDef | None:
        try:
            return self._def_of[key]
        except KeyError:
            found = None
            for d in reversed(self._defs):  # a later definition wins
                if d.matches(key):
                    found = d
                    break
            self._def_of[key] = found
            return found

    def _apply_defs(self, nums: dict[str, float], summary: dict[str, Any]) -> None:
        # step_sync: a value of a metric with a step metric carries the step
        # metric's last value (W&B's define_metric(step_sync=True), the default).
        for k in list(nums):
            d = self._def_for(k)
            if d is not None and d.step_metric and d.step_sync is not False \
                    and d.step_metric not in nums:
                last = summary.get(d.step_metric)
                if isinstance(last, (int, float)):
                    nums[d.step_metric] = float(last)
        for k, v in nums.items():
            d = self._def_for(k)
            if d is None or not d.summary or d.summary == ["last"] or d.summary == ["copy"]:
                summary[k] = v
                continue
            if d.summary == ["none"]:
                continue
            agg = self._aggs.get(k)
            if agg is None:
                agg = self._aggs[k] = _Agg()
            if not math.isnan(v):
                agg.add(v)
            if agg.n:
                summary[k] = agg.value(d.summary, d.goal)

    def _store(self, name: str, payload: Any) -> None:
        """Store one media artifact (see :mod:`.wandb_media`)."""
        self._media_names.add(name)
        if isinstance(payload, tuple) and payload and payload[0] == "table":
            self._tracker.log_table(self._rid, name, payload[1], payload[2])
        elif isinstance(payload, (bytes, bytearray)):
            self._tracker.log_image(self._rid, name, bytes(payload))
        elif isinstance(payload, TypedArtifact):
            self._tracker.log_artifact(self._rid, name, payload)
        else:
            raise errors.InvalidType(f"cannot store {type(payload).__name__} as media")

    def _flush(self) -> None:
        """Write the buffered rows (one record per metric) and a changed summary."""
        self._merge_summary()
        buf, self._buf = self._buf, _Buffer()
        self._merged = 0
        self._flushed_at = _now()
        if not len(buf) and not self._summary_dirty:
            return
        # One batch: the rows of every metric land together (a reader never
        # sees loss at step n without acc at step n), and the system metrics
        # thread waits instead of changing the catalog at the same time.
        with self._tracker.db.batch(sync=False):
            if len(buf):
                tracker, rid = self._tracker, self._rid
                for k, (vals, steps, stamps) in buf.columns().items():
                    tracker.log_metric_batch(rid, k, vals, steps, stamps)
                self._summary_dirty = True
            if self._summary_dirty:
                self._write_summary()

    def _write_summary(self) -> None:
        self._summary_dirty = False
        data = dict(self.summary._data)
        data["_step"] = max(self._step - 1, 0)
        data["_runtime"] = _now() - self.start_time
        data["_timestamp"] = _now()
        self._tracker.set_tags(self._rid, {
            SUMMARY_TAG: json.dumps(data, default=json_default), STEP_TAG: str(self._step)})

    def flush(self) -> None:
        """Write everything logged so far to the file now."""
        self._flush()

    def define_metric(self, name: str, step_metric: str | None = None,
                      step_sync: bool | None = None, hidden: bool | None = None,
                      summary: str | None = None, goal: str | None = None,
                      overwrite: bool | None = None, **kwargs: Any) -> MetricDef:
        """W&B's ``define_metric``: an x-axis (``step_metric``) and a summary
        (``"min"``, ``"max"``, ``"mean"``, ``"last"``, ``"best"``, ``"first"``,
        ``"none"``, comma-separated) for a metric or a glob (``"val/*"``)."""
        if not isinstance(name, str) or not name:
            raise errors.InvalidArgument(f"define_metric needs a metric name, got {name!r}")
        if name.startswith("*") and len(name) > 1 and name != "*":
            raise errors.InvalidArgument(
                f"define_metric: globs are allowed as a suffix only ('val/*'), got {name!r}")
        ops: list[str] = []
        if summary:
            ops = [o.strip().lower() for o in summary.split(",") if o.strip()]
            bad = [o for o in ops if o not in _SUMMARY_OPS]
            if bad:
                raise errors.InvalidArgument(
                    f"define_metric: unknown summary {bad[0]!r}; use min, max, mean, last, "
                    "best, first or none")
        if goal is not None:
            goal = {"min": "minimize", "max": "maximize"}.get(goal, goal)
            if goal not in ("minimize", "maximize"):
                raise errors.InvalidArgument(f"define_metric: goal is 'minimize' or "
                                             f"'maximize', got {goal!r}")
        if "best" in ops and goal is None:
            raise errors.InvalidArgument("define_metric: summary='best' needs goal=")
        d = MetricDef(name, step_metric, step_sync, hidden, ops, goal)
        self._defs.append(d)
        self._def_of.clear()
        self._simple = False
        if step_metric and not any(x.matches(step_metric) for x in self._defs):
            # W&B defines the step metric too, so that it gets a summary.
            self._defs.insert(0, MetricDef(step_metric, None, None, hidden, [], None))
        self._tracker.set_tag(self._rid, METRICS_TAG,
                              json.dumps([x.to_json() for x in self._defs]))
        return d

    def _set_hook(self, hook: Callable[[dict[str, float]], None] | None) -> None:
        self._hook = hook
        self._simple = hook is None and not self._defs

    # -- artifacts, alerts --------------------------------------------
    def log_artifact(self, artifact_or_path: Any, name: str | None = None,
                     type: str | None = None, aliases: list[str] | None = None,
                     tags: list[str] | None = None) -> Any:
        from .wandb_artifacts import Artifact, log_artifact

        if not isinstance(artifact_or_path, Artifact):
            import os

            path = os.fspath(artifact_or_path)
            art = Artifact(name or os.path.basename(path.rstrip("/")) or "artifact",
                           type or "unspecified")
            (art.add_dir if os.path.isdir(path) else art.add_file)(path)
            artifact_or_path = art
        return log_artifact(self, artifact_or_path, aliases)

    def use_artifact(self, artifact_or_name: Any, type: str | None = None,
                     aliases: list[str] | None = None, use_as: str | None = None) -> Any:
        from .wandb_artifacts import use_artifact

        return use_artifact(self, artifact_or_name, type)

    def log_model(self, path: Any, name: str | None = None,
                  aliases: list[str] | None = None) -> Any:
        return self.log_artifact(path, name=name or f"run-{self.id}-model", type="model",
                                 aliases=aliases)

    def use_model(self, name: str) -> str:
        return self.use_artifact(name).download()

    def alert(self, title: str, text: str, level: Any = None,
              wait_duration: Any = None) -> None:
        """An alert, kept as a logged event: ``events/alerts.jsonl`` (a text
        artifact, one JSON line per alert) and the ``alerts`` metric counting
        them (so a chart shows when they fired)."""
        lvl = getattr(level, "value", level) or "INFO"
        if str(lvl).upper() not in ("INFO", "WARN", "ERROR"):
            raise errors.InvalidArgument(f"alert level is INFO, WARN or ERROR, got {level!r}")
        event = {"title": str(title), "text": str(text), "level": str(lvl).upper(),
                 "time": _now(), "step": self._step}
        name = "events/alerts.jsonl"
        try:
            old = self._tracker.get_artifact(self._rid, name).decode("utf-8")
        except errors.KeyNotFound:
            old = ""
        self._tracker.log_text(self._rid, name, old + json.dumps(event) + "\n")
        alerts = self.summary._data.get("_alerts", 0) + 1
        self._tracker.log_metric(self._rid, "events/alerts", float(alerts), step=self._step)
        self.summary._data["_alerts"] = alerts
        self._summary_dirty = True

    def save(self, glob_str: str, base_path: str | None = None, policy: str = "live") -> list[str]:
        """Store files matching ``glob_str`` as run artifacts under ``files/``."""
        import glob
        import os
        from pathlib import Path

        saved = []
        base = base_path or os.path.dirname(glob_str.split("*")[0]) or "."
        for path in glob.glob(glob_str, recursive=True):
            if os.path.isfile(path):
                rel = os.path.relpath(path, base).replace(os.sep, "/")
                if rel.startswith(".."):
                    rel = os.path.basename(path)
                self._tracker.log_artifact(self._rid, "files/" + rel, Path(path))
                saved.append(path)
        return saved

    def watch(self, *args: Any, **kwargs: Any) -> None:
        """Gradient logging is not recorded (a no-op, so scripts run)."""

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        return None

    def mark_preempting(self) -> None:
        pass

    # -- end ------------------------------------------------------------
    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Write what is buffered and end the run: Completed for exit code
        0 (or None), Failed otherwise."""
        if self._finished:
            return
        try:
            if self._pending is not None:
                self._commit()
            self._summary_dirty = True  # its final _runtime, whatever else changed
            self._flush()
        finally:
            self._finished = True
            failed = exit_code not in (None, 0)
            self._tracker.end_run(self._rid, RunStatus.FAILED if failed else RunStatus.COMPLETED,
                                  error=f"exit code {exit_code}" if failed else None)
            if self._on_finish is not None:
                self._on_finish(self)

    def _kill(self, why: str) -> None:
        """End the run as Killed (a sweep stopped it)."""
        if self._finished:
            return
        try:
            self._summary_dirty = True
            self._flush()
        finally:
            self._finished = True
            self._tracker.end_run(self._rid, RunStatus.KILLED, error=why)
            if self._on_finish is not None:
                self._on_finish(self)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self.finish(exit_code=0 if exc_type is None else 1)
        return False


class DisabledRun(Run):
    """``mode="disabled"``: every call is accepted and nothing is written."""

    disabled = True

    def __init__(self, config: Mapping[str, Any] | None = None, name: str = "dummy",
                 project: str = "disabled") -> None:
        self.id, self._name, self.project, self.entity = "dummy", name, project, "local"
        self._rid = self.id
        self.group = self.job_type = self._notes = None
        self._tags = ()
        self.dir, self.resumed, self.mode, self.offline = "", False, "disabled", False
        self.sweep_id, self.start_time = None, _now()
        self.config = Config()
        self.config.update(config_dict(config))
        self.summary = Summary()
        self._step, self._finished = 0, False

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None, sync: bool | None = None) -> None:
        if step is not None and step > self._step:
            self._step = step
        if (step is None and commit is None) or commit:
            self._step += 1

    def define_metric(self, name: str, *args: Any, **kwargs: Any) -> MetricDef:
        return MetricDef(name, kwargs.get("step_metric"), None, None, [], None)

    def log_artifact(self, *args: Any, **kwargs: Any) -> None:
        return None

    def use_artifact(self, *args: Any, **kwargs: Any) -> None:
        return None

    def alert(self, *args: Any, **kwargs: Any) -> None:
        return None

    def save(self, *args: Any, **kwargs: Any) -> list[str]:
        return []

    def flush(self) -> None:
        pass

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        self._finished = True

    @property
    def url(self) -> str:
        return ""
