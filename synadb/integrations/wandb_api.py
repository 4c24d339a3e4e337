"""``wandb.Api()`` over a synadb file: runs with W&B's Mongo filters, their
history as a DataFrame, artifacts and sweeps; no server.

W&B's public API filters runs with MongoDB queries on its run documents;
here a run's document is built from the tracker's catalog::

    {"config": {...typed config...}, "summary_metrics": {...summary...},
     "state": "running|finished|failed|killed", "tags": [...],
     "display_name": name, "name": id, "id": id, "group": ..., "jobType": ...,
     "sweep": sweep id, "createdAt": "2026-01-31T12:00:00", "notes": ...}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $regex $all $not``
and ``$and $or $nor``; a dotted path reaches into config and summary
(``config.optimizer.lr``; ``config.lr.value`` is ``config.lr``, as in W&B).

Documents are cached per run and rebuilt only for runs that changed since
the last query (``ExperimentTracker.changes_since``), so filtering 10K runs
touches no metric history.
"""

from __future__ import annotations

import json
import math
import operator
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import errors
from ..tracking import ExperimentTracker, RunStatus
from .wandb_run import (CONFIG_TAG, ENTITY_TAG, GROUP_TAG, JOB_TYPE_TAG, LOGGED_TAG,
                        NOTES_TAG, SUMMARY_TAG, SWEEP_TAG, TAGS_TAG, USED_TAG)

__all__ = ["Api", "PublicRun", "Runs", "Sweep", "compile_filter"]

STATES = {RunStatus.RUNNING: "running", RunStatus.COMPLETED: "finished",
          RunStatus.FAILED: "failed", RunStatus.KILLED: "killed"}
_SYSTEM = "system/"


# -- filters -------------------------------------------------------------------
def _lookup(doc: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path; a trailing ``.value`` (W&B's stored
    config shape) and keys that themselves hold dots are both understood."""
    parts = path.split(".")
    cur: Any = doc
    i = 0
    while i < len(parts):
        if not isinstance(cur, Mapping):
            if parts[i:] == ["value"]:
                return True, cur
            return False, None
        # The longest key that matches (a metric named "val.acc" or "a/b.c").
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in cur:
                cur = cur[key]
                i = j
                break
        else:
            return False, None
    return True, cur


_MISSING = object()


def _get(doc: Any, path: str) -> Any:
    """The value at ``path`` or ``_MISSING``; a run's document remembers it."""
    if type(doc) is _Doc:
        memo = doc.memo
        try:
            return memo[path]
        except KeyError:
            pass
        head, dot, rest = path.partition(".")
        try:
            top = doc.doc[head]  # config, summary_metrics, state...: no search
        except KeyError:
            found, v = _lookup(doc.doc, path)
        else:
            if not dot:
                found, v = True, top
            elif isinstance(top, dict) and rest in top:
                found, v = True, top[rest]
            else:
                found, v = _lookup(top, rest) if isinstance(top, Mapping) else (
                    rest == "value", top)
        v = memo[path] = v if found else _MISSING
        return v
    found, v = _lookup(doc, path)
    return v if found else _MISSING


def _num(v: Any) -> float | None:
    t = type(v)
    if t is float or t is int:
        return float(v)
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


_CMP = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _cmp(fn: Callable[[Any, Any], bool], have: Any, want: Any) -> bool:
    a, b = _num(have), _num(want)
    if a is not None and b is not None:
        return a == a and fn(a, b)  # NaN matches nothing
    if isinstance(have, str) and isinstance(want, str):
        return fn(have, want)
    return False  # Mongo compares within a type only


def _eq(have: Any, want: Any) -> bool:
    if have is _MISSING:
        return False
    if isinstance(have, list) and not isinstance(want, list):
        return any(_eq(h, want) for h in have)  # an array field holds the value
    a, b = _num(have), _num(want)
    if a is not None and b is not None:
        return a == b
    return have == want


Test = Callable[[Any], bool]


def _all(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]

    def test(doc: Any) -> bool:
        for t in tests:
            if not t(doc):
                return False
        return True
    return test


def compile_filter(flt: Mapping[str, Any] | None) -> Test:
    """A predicate over run documents for a W&B (MongoDB) filter.

    >>> f = compile_filter({"config.lr": {"$gt": 0.01}, "state": "finished"})
    >>> f({"config": {"lr": 0.1}, "state": "finished"}), f({"config": {"lr": 0.001}})
    (True, False)
    """
    if not flt:
        return lambda doc: True
    if not isinstance(flt, Mapping):
        raise errors.InvalidType(f"filters are a dict (a MongoDB query), got {flt!r}")
    return _all([_compile_field(k, v) for k, v in flt.items()])


def _compile_field(key: str, want: Any) -> Test:
    if key in ("$and", "$or", "$nor"):
        if not isinstance(want, (list, tuple)) or not want:
            raise errors.InvalidArgument(f"{key} takes a non-empty list of filters")
        subs = [compile_filter(w) for w in want]
        if key == "$and":
            return _all(subs)
        if key == "$or":
            return lambda doc: any(s(doc) for s in subs)
        return lambda doc: not any(s(doc) for s in subs)
    if not isinstance(key, str) or key.startswith("$"):
        raise errors.InvalidArgument(f"unknown top-level operator {key!r}")
    path = _alias(key)
    if isinstance(want, Mapping) and want and all(isinstance(k, str) and k.startswith("$")
                                                  for k in want):
        return _all([_compile_op(path, op, v) for op, v in want.items()])
    return lambda doc: _eq(_get(doc, path), want)


_ALIASES = {"summary": "summary_metrics", "displayName": "display_name",
            "job_type": "jobType", "created_at": "createdAt"}


def _alias(key: str) -> str:
    """W&B's other names for a document field (``summary.acc``, ``created_at``)."""
    head, dot, rest = key.partition(".")
    return _ALIASES.get(head, head) + dot + rest


def _compile_op(path: str, op: str, want: Any) -> Test:
    fn = _CMP.get(op)
    if fn is not None:
        wnum = _num(want)

        def test(doc: Any) -> bool:
            have = _get(doc, path)
            t = type(have)
            if (t is float or t is int) and wnum is not None:
                return have == have and fn(have, wnum)
            if have is _MISSING:
                return False
            if isinstance(have, list):
                return any(_cmp(fn, h, want) for h in have)
            return _cmp(fn, have, want)
        return test
    if op == "$eq":
        return lambda doc: _eq(_get(doc, path), want)
    if op == "$ne":
        return lambda doc: not _eq(_get(doc, path), want)
    if op in ("$in", "$nin", "$all"):
        if isinstance(want, (str, bytes, Mapping)) or not isinstance(want, Sequence):
            raise errors.InvalidType(f"{op} takes a list of values, got {want!r}")
        wants = list(want)
        if op == "$all":
            return lambda doc: (lambda v: v is not _MISSING and all(_eq(v, w) for w in wants))(
                _get(doc, path))
        hashable = all(isinstance(w, (str, int, float)) and not isinstance(w, bool)
                       for w in wants)
        wset = set(wants) if hashable else None

        def hit(doc: Any) -> bool:
            v = _get(doc, path)
            if v is _MISSING:
                return False
            if wset is not None:
                if isinstance(v, list):
                    return any(x in wset for x in v if isinstance(x, (str, int, float)))
                if isinstance(v, (str, int, float)):
                    return v in wset
            return any(_eq(v, w) for w in wants)
        return hit if op == "$in" else (lambda doc: not hit(doc))
    if op == "$exists":
        return lambda doc: (_get(doc, path) not in (_MISSING, None)) == bool(want)
    if op == "$regex":
        rx = re.compile(want)
        return lambda doc: (lambda v: isinstance(v, str) and rx.search(v) is not None)(
            _get(doc, path))
    if op == "$not":
        inner = _compile_field(path, want)
        return lambda doc: not inner(doc)
    raise errors.InvalidArgument(f"unknown filter operator {op!r}")


# -- runs ----------------------------------------------------------------------
def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


class _Doc:
    """A run's filter document, built once per change of the run."""

    __slots__ = ("run", "_config", "_summary", "state", "tags", "tv", "doc", "memo")

    def __init__(self, run: Any) -> None:
        self.run = run
        self.tv = tv = run.tag_values
        self.state = STATES.get(run.status, "running")
        self.tags = json.loads(tv[TAGS_TAG]) if TAGS_TAG in tv else list(run.tags)
        self._config: dict[str, Any] | None = None
        self._summary: dict[str, Any] | None = None
        self.doc = _LazyDoc(self)
        self.memo: dict[str, Any] = {}  # path -> value (or _MISSING), for filters and sorts

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            text = self.tv.get(CONFIG_TAG)
            if text is not None:
                self._config = json.loads(text)
            else:  # a run the tracker or the MLflow shim made: its params, typed back
                self._config = {k: _typed(v) for k, v in self.run.params.items()}
        return self._config

    @property
    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            text = self.tv.get(SUMMARY_TAG)
            summary = json.loads(text) if text is not None else {}
            if text is None or self.state == "running":
                # Not finished (or written by something else): the last values
                # fill in what the stored summary lacks.
                for k, v in self.run.metrics.items():
                    if not k.startswith((_SYSTEM, "events/")):  # not history, as in W&B
                        summary.setdefault(k, v)
            self._summary = summary
        return self._summary


class _LazyDoc(Mapping[str, Any]):
    """The Mongo document of a run, computing its parts on first use."""

    __slots__ = ("_d",)

    def __init__(self, d: _Doc) -> None:
        self._d = d

    def __getitem__(self, key: str) -> Any:
        d = self._d
        run = d.run
        if key == "config":
            return d.config
        if key == "summary_metrics":
            return d.summary
        if key == "state":
            return d.state
        if key == "tags":
            return d.tags
        if key in ("name", "id"):
            return d.tv.get("wandb.id", run.id)
        if key == "display_name":
            return run.name
        if key == "group":
            return d.tv.get(GROUP_TAG)
        if key == "jobType":
            return d.tv.get(JOB_TYPE_TAG)
        if key == "sweep":
            return d.tv.get(SWEEP_TAG)
        if key == "notes":
            return d.tv.get(NOTES_TAG)
        if key == "createdAt":
            return _iso(run.start_time)
        if key == "project":
            return run.experiment
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in _DOC_KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(_DOC_KEYS)

    def __len__(self) -> int:
        return len(_DOC_KEYS)


_DOC_KEYS = ("config", "summary_metrics", "state", "tags", "name", "id", "display_name",
             "group", "jobType", "sweep", "notes", "createdAt", "project")


def _typed(text: str) -> Any:
    """A param's text as the number (or bool, None) it was, else the text."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class PublicRun:
    """A run read back: W&B's ``wandb.apis.public.Run`` attributes and reads."""

    def __init__(self, tracker: ExperimentTracker, doc: _Doc) -> None:
        self._tracker = tracker
        self._doc = doc
        run = doc.run
        self._rid = run.id  # the tracker's id
        self.id = doc.tv.get("wandb.id", run.id)
        self.name = self.display_name = run.name
        self.project = run.experiment
        self.entity = doc.tv.get(ENTITY_TAG, "local")
        self.state = doc.state
        self.tags = list(doc.tags)
        self.group = doc.tv.get(GROUP_TAG)
        self.job_type = doc.tv.get(JOB_TYPE_TAG)
        self.notes = doc.tv.get(NOTES_TAG)
        self.sweep_name = doc.tv.get(SWEEP_TAG)

    @property
    def created_at(self) -> str | None:
        return _iso(self._doc.run.start_time)

    @property
    def heartbeat_at(self) -> str | None:
        return _iso(self._doc.run.end_time or time.time())

    @property
    def error(self) -> str | None:
        return self._doc.run.error

    @classmethod
    def by_id(cls, tracker: ExperimentTracker, run_id: str) -> "PublicRun":
        return cls(tracker, _Doc(tracker.get_run(run_id)))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._doc.config)

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self._doc.summary)

    @property
    def summary_metrics(self) -> dict[str, Any]:
        return self.summary

    @property
    def system_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self._doc.run.metrics.items() if k.startswith(_SYSTEM)}

    @property
    def path(self) -> list[str]:
        return [self.entity, self.project, self.id]

    @property
    def url(self) -> str:
        return f"synadb://{self._tracker.path}#{self.project}/{self.id}"

    @property
    def sweep(self) -> "Sweep | None":
        if not self.sweep_name:
            return None
        from .wandb_sweep import load_sweep

        return Sweep(self._tracker, self.sweep_name, load_sweep(self._tracker, self.sweep_name))

    @property
    def metadata(self) -> dict[str, Any]:
        return {"run_id": self.id, "start": self.created_at}

    def __repr__(self) -> str:
        return f"<Run {self.entity}/{self.project}/{self.id} ({self.state})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicRun) and other._rid == self._rid

    def __hash__(self) -> int:
        return hash(self._rid)

    # -- history ----------------------------------------------------------
    def _metric_names(self, keys: Sequence[str] | None, stream: str) -> list[str]:
        names = self._tracker.list_metrics(self._rid)
        if stream == "system" or stream == "events":
            return [n for n in names if n.startswith(_SYSTEM)]
        if keys is not None:
            if isinstance(keys, str):
                keys = [keys]
            return [k for k in keys if k in names]
        return [n for n in names if not n.startswith(_SYSTEM) and not n.startswith("events/")]

    def _rows(self, keys: Sequence[str] | None, stream: str = "default",
              min_step: int | None = None, max_step: int | None = None) -> list[dict[str, Any]]:
        """Every history row (one per step) with the asked-for keys."""
        names = self._metric_names(keys, stream)
        by_step: dict[int, dict[str, Any]] = {}
        start = self._doc.run.start_time
        for n in names:
            h = self._tracker.get_metric_history(self._rid, n)
            for v, s, ts in zip(h["value"].tolist(), h["step"].tolist(),
                                h["timestamp"].tolist()):
                if (min_step is not None and s < min_step) or (max_step is not None
                                                                and s >= max_step):
                    continue
                row = by_step.get(s)
                if row is None:
                    row = by_step[s] = {"_step": s, "_timestamp": ts, "_runtime": ts - start}
                elif ts > row["_timestamp"]:
                    row["_timestamp"], row["_runtime"] = ts, ts - start
                row[n] = v
        rows = [by_step[s] for s in sorted(by_step)]
        if keys is not None:
            want = [keys] if isinstance(keys, str) else list(keys)
            rows = [r for r in rows if all(k in r for k in want)]
        return rows

    def history(self, samples: int = 500, keys: Sequence[str] | None = None,
                x_axis: str = "_step", pandas: bool = True, stream: str = "default") -> Any:
        """Up to ``samples`` rows of the run's history (evenly spaced, first
        and last kept), one per step with ``_step``, ``_runtime``,
        ``_timestamp`` and each metric; a pandas DataFrame unless
        ``pandas=False``.  With ``keys``, only rows that have all of them."""
        if keys is not None and not x_axis.startswith("_"):
            keys = [keys] if isinstance(keys, str) else list(keys)
            if x_axis not in keys:
                keys.append(x_axis)  # W&B returns the x axis beside the keys
        rows = self._rows(keys, stream)
        if samples is not None and len(rows) > samples > 0:
            idx = np.unique(np.linspace(0, len(rows) - 1, samples).round().astype(int))
            rows = [rows[i] for i in idx]
        if not pandas:
            return rows
        try:
            import pandas as pd
        except ImportError as e:
            raise errors.MissingDependency("pandas", "arrow", "run.history(pandas=True)") from e
        return pd.DataFrame(rows)

    def scan_history(self, keys: Sequence[str] | None = None, page_size: int = 1000,
                     min_step: int | None = None, max_step: int | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Every history row (unsampled), as dicts, in step order."""
        return iter(self._rows(keys, "default", min_step, max_step))

    # -- artifacts, files ---------------------------------------------------
    def logged_artifacts(self) -> list[Any]:
        return self._artifacts(LOGGED_TAG)

    def used_artifacts(self) -> list[Any]:
        return self._artifacts(USED_TAG)

    def _artifacts(self, tag: str) -> list[Any]:
        from .wandb_artifacts import ArtifactStore, parse_artifact_path

        refs = json.loads(self._doc.tv.get(tag, "[]"))
        store = ArtifactStore(self._tracker)
        out = []
        for ref in refs:
            project, name, alias = parse_artifact_path(ref, self.project)
            out.append(store.get(project, name, alias))
        return out

    def files(self) -> list[str]:
        return self._tracker.list_artifacts(self._rid)

    def file(self, name: str) -> bytes:
        return self._tracker.get_artifact(self._rid, name)


class Runs(list):  # type: ignore[type-arg]
    """What ``api.runs`` returns: a list of :class:`PublicRun` (W&B's is a
    lazy paginated list; here every match is already in memory)."""

    def histories(self, samples: int = 500, keys: Sequence[str] | None = None,
                  x_axis: str = "_step", format: str = "default") -> Any:
        rows = []
        for r in self:
            for row in r.history(samples=samples, keys=keys, x_axis=x_axis, pandas=False):
                rows.append({"run_id": r.id, **row})
        if format == "pandas":
            import pandas as pd

            return pd.DataFrame(rows)
        return rows


class Sweep:
    """A sweep read back: ``id``, ``config``, ``runs``, ``best_run()``."""

    def __init__(self, tracker: ExperimentTracker, sweep_id: str, state: dict[str, Any]) -> None:
        self._tracker = tracker
        self.id = sweep_id
        self.config = state["config"]
        self.project = state["project"]
        self.name = self.config.get("name", sweep_id)
        self.state = state.get("state", "FINISHED")
        self.entity = "local"

    @property
    def runs(self) -> Runs:
        return Api._for(self._tracker).runs(self.project, filters={"sweep": self.id},
                                            order="+created_at")

    def best_run(self, order: str | None = None) -> PublicRun | None:
        """The run with the best value of the sweep's metric (or ``order``,
        e.g. ``"-summary_metrics.acc"``)."""
        if order is None:
            metric = self.config.get("metric") or {}
            if not metric.get("name"):
                raise errors.InvalidArgument("the sweep has no metric: pass order=")
            sign = "-" if metric.get("goal", "minimize") == "maximize" else "+"
            order = f"{sign}summary_metrics.{metric['name']}"
        runs = Api._for(self._tracker).runs(self.project, filters={"sweep": self.id},
                                            order=order)
        runs = [r for r in runs if _get(r._doc, _order_path(order)) is not _MISSING]
        return runs[0] if runs else None

    @property
    def url(self) -> str:
        return f"synadb://{self._tracker.path}#sweeps/{self.id}"

    def __repr__(self) -> str:
        return f"<Sweep {self.project}/{self.id} ({self.state})>"


def _order_path(order: str) -> str:
    return _alias(order.lstrip("+-"))


class Api:
    """``wandb.Api()`` over the file runs go to (``SYNADB_WANDB_FILE``,
    ``WANDB_DIR`` or ./synadb-runs.db; ``Api(file=...)`` names another).

    >>> api = Api(file=path)                                     # doctest: +SKIP
    >>> runs = api.runs("mnist", {"summary_metrics.acc": {"$gte": 0.9}},
    ...                 order="-summary_metrics.acc")            # doctest: +SKIP
    """

    _instances: dict[str, "Api"] = {}

    def __init__(self, overrides: Mapping[str, Any] | None = None, timeout: int | None = None,
                 api_key: str | None = None, *, file: str | None = None) -> None:
        from .wandb import _reader, file_path

        overrides = dict(overrides or {})
        self.path = file_path(file or overrides.get("file"))
        self.default_project = overrides.get("project")
        self.default_entity = overrides.get("entity", "local")
        # The process's writer on the file if it has one (so what was just
        # logged is seen), else a read-only handle shared by every Api.
        self._tracker = _reader(self.path)
        self._docs: dict[str, _Doc] = {}
        self._mark: Any = None

    @classmethod
    def _for(cls, tracker: ExperimentTracker) -> "Api":
        api = cls.__new__(cls)
        api.path, api.default_project, api.default_entity = tracker.path, None, "local"
        api._tracker, api._docs, api._mark = tracker, {}, None
        return api

    def close(self) -> None:
        """Forget this Api's cache (the file handle is shared; ``wandb.teardown()``
        closes it)."""
        self._docs.clear()

    def __enter__(self) -> "Api":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Forget cached run documents (they refresh on their own anyway)."""
        self._docs.clear()
        self._mark = None

    @property
    def tracker(self) -> ExperimentTracker:
        return self._tracker

    def _project(self, path: str | None) -> str | None:
        if path is None:
            return self.default_project
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self.default_project
        return parts[-1] if len(parts) <= 2 else parts[1]

    def _doc(self, run: Any) -> _Doc:
        d = self._docs.get(run.id)
        if d is None:
            d = self._docs[run.id] = _Doc(run)
        return d

    def _refresh(self) -> None:
        changed, self._mark = self._tracker.changes_since(self._mark)
        if changed is None:
            self._docs.clear()
        else:
            for rid in changed:
                self._docs.pop(rid, None)

    def runs(self, path: str | None = None, filters: Mapping[str, Any] | None = None,
             order: str = "+created_at", per_page: int = 50, include_sweeps: bool = True,
             lazy: bool = True) -> Runs:
        """Runs of a project (``"entity/project"`` or ``"project"``; every
        project if None) that match ``filters``, sorted by ``order``
        (``"+created_at"``, ``"-summary_metrics.acc"``, ``"config.lr"``...)."""
        project = self._project(path)
        test = compile_filter(filters)
        self._refresh()
        tracker = self._tracker
        if project is not None and project not in tracker.list_experiments():
            return Runs()
        ids = tracker.run_ids(project)
        cache = self._docs
        missing = [rid for rid in ids if rid not in cache]
        if len(missing) > 64:  # many (a first query): one listing beats a get_run each
            for r in tracker.list_runs(project):
                if r.id not in cache:
                    cache[r.id] = _Doc(r)
        else:
            for rid in missing:
                cache[rid] = _Doc(tracker.get_run(rid))
        docs = [cache[rid] for rid in ids]
        if filters:
            docs = [d for d in docs if test(d)]
        if order:
            docs = _sorted(docs, order)
        return Runs(PublicRun(tracker, d) for d in docs)

    def run(self, path: str) -> PublicRun:
        """``"project/run_id"``, ``"entity/project/run_id"`` or
        ``"entity/project/runs/run_id"``."""
        parts = [p for p in path.split("/") if p and p != "runs"]
        if not parts:
            raise errors.InvalidArgument(f"bad run path {path!r}")
        from .wandb_run import tracker_id

        rid = tracker_id(parts[-1])
        self._refresh()
        run = self._tracker.get_run(rid)
        if len(parts) >= 2 and parts[-2] != run.experiment:
            raise errors.KeyNotFound(f"run {rid!r} is in project {run.experiment!r}, "
                                     f"not {parts[-2]!r}")
        return PublicRun(self._tracker, self._doc(run))

    def artifact(self, name: str, type: str | None = None) -> Any:
        """``"project/name:alias"`` (or ``"entity/project/name:v3"``)."""
        from .wandb_artifacts import ArtifactStore, parse_artifact_path

        project, base, alias = parse_artifact_path(name, self.default_project)
        return ArtifactStore(self._tracker).get(project, base, alias, type)

    def artifact_versions(self, type_name: str, name: str) -> list[Any]:
        from .wandb_artifacts import ArtifactStore, parse_artifact_path

        project, base, _ = parse_artifact_path(name, self.default_project)
        return [a for a in ArtifactStore(self._tracker).versions(project, base)
                if a.type == type_name]

    artifacts = artifact_versions

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        try:
            self.artifact(name, type)
            return True
        except errors.KeyNotFound:
            return False

    def sweep(self, path: str) -> Sweep:
        """``"project/sweep_id"`` or ``"entity/project/sweep_id"``."""
        from .wandb_sweep import load_sweep

        sid = [p for p in path.split("/") if p and p != "sweeps"][-1]
        return Sweep(self._tracker, sid, load_sweep(self._tracker, sid))

    def projects(self, entity: str | None = None) -> list[Any]:
        return [type("Project", (), {"name": n, "entity": "local"})()
                for n in self._tracker.list_experiments()]


def _sorted(docs: list[_Doc], order: str) -> list[_Doc]:
    desc = order.startswith("-")
    path = _order_path(order)
    keyed = []
    missing = []
    for i, d in enumerate(docs):
        if path == "createdAt":  # the exact start time, not its ISO second
            v = d.run.start_time
        else:
            v = _get(d, path)
        found = v is not _MISSING
        if isinstance(v, Mapping):  # a summary of min/max: W&B sorts by... the first
            v = next(iter(v.values()), None)
        if not found or v is None or (isinstance(v, float) and math.isnan(v)):
            missing.append(d)
        else:
            keyed.append((0 if _num(v) is not None else 1,
                          _num(v) if _num(v) is not None else str(v), i, d))
    nums = sorted((k for k in keyed if k[0] == 0), key=lambda k: k[1], reverse=desc)
    texts = sorted((k for k in keyed if k[0] == 1), key=lambda k: k[1], reverse=desc)
    return [k[3] for k in nums] + [k[3] for k in texts] + missing
