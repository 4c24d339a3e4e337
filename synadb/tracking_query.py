"""The tracker's own query language: ``tracker.query(filter={...},
sort_by=...)`` (Mongo-style operators ``$gt``, ``$in``... on metrics,
params, tags and run fields) and its sort."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import errors
from .tracking_values import RunStatus, param_text

if TYPE_CHECKING:
    from .tracking import Run

_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b, "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b, "$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b}


def _compare(have: Any, want: Any, numeric: bool) -> bool:
    if isinstance(want, Mapping):
        return all(_compare_op(have, op, v, numeric) for op, v in want.items())
    if isinstance(want, tuple) and len(want) == 2 and isinstance(want[0], str) and (
            want[0] in _OPS or want[0] in ("$in", "$nin", "in", "not in")
            or (want[0] and not want[0].strip("<>=!~$"))):
        return _compare_op(have, want[0], want[1], numeric)  # raises on unknown ops
    if isinstance(want, (list, set, frozenset)):
        return any(_compare(have, w, numeric) for w in want)
    if have is None:
        return want is None
    if numeric:
        try:
            return float(have) == float(want)
        except (TypeError, ValueError):
            return False
    return str(have) == param_text(want)


def _compare_op(have: Any, op: str, want: Any, numeric: bool) -> bool:
    if not isinstance(op, str):
        raise errors.InvalidType(f"a filter operator is a str such as '>=', got {op!r}")
    if op in ("$in", "in", "$nin", "not in") and (
            isinstance(want, (str, bytes, Mapping)) or not isinstance(want, Iterable)):
        raise errors.InvalidType(f"filter operator {op!r} takes a list of values, got {want!r}")
    if op in ("$in", "in"):
        return any(_compare(have, w, numeric) for w in want)
    if op in ("$nin", "not in"):
        return not any(_compare(have, w, numeric) for w in want)
    fn = _OPS.get(op)
    if fn is None:
        raise errors.InvalidArgument(f"unknown filter operator {op!r}")
    if have is None:
        return op in ("!=", "$ne") and want is not None
    if op in ("==", "=", "$eq", "!=", "$ne") and not numeric:
        return fn(str(have), param_text(want))
    try:
        return fn(float(have), float(want))
    except (TypeError, ValueError):
        return fn(str(have), param_text(want))


def matches(run: Run, flt: Mapping[str, Any]) -> bool:
    for key, want in flt.items():
        if key == "status":
            wants = want if isinstance(want, (list, tuple, set)) else [want]
            if run.status not in {RunStatus.parse(w) for w in wants}:
                return False
        elif key == "tags":
            if not isinstance(want, (str, list, tuple, set, frozenset)):
                raise errors.InvalidArgument(f"filter 'tags' takes a label or a list of "
                                             f"labels, got {want!r}")
            labels = [want] if isinstance(want, str) else list(want)
            if not all(t in run.tags for t in labels):
                return False
        elif key in ("name", "experiment", "id"):
            if not _compare(getattr(run, key), want, False):
                return False
        elif key in ("params", "metrics", "tag_values"):
            if not isinstance(want, Mapping):
                raise errors.InvalidType(f"filter {key!r} takes a dict of name -> value, "
                                         f"got {want!r}")
            have = getattr(run, key)
            numeric = key == "metrics"
            if not all(isinstance(k, str) and _compare(have.get(k), v, numeric)
                       for k, v in want.items()):
                return False
        elif key in run.params:
            if not _compare(run.params[key], want, False):
                return False
        elif key in run.metrics:
            if not _compare(run.metrics[key], want, True):
                return False
        elif key in run.tag_values:
            if not _compare(run.tag_values[key], want, False):
                return False
        else:
            return False
    return True


def sorted_runs(runs: list[Run], sort_by: str, ascending: bool) -> list[Run]:
    """Sort by a metric's last value or a param (numerically when it parses);
    runs without the value go last either way."""
    field = sort_by
    for prefix in ("metrics.", "params.", "attributes."):
        if sort_by.startswith(prefix):
            field = sort_by[len(prefix):]
    attrs = {"start_time", "end_time", "name", "status", "id"}

    def value(run: Run) -> Any:
        if sort_by.startswith("params."):
            v = run.params.get(field)
        elif sort_by.startswith("metrics."):
            v = run.metrics.get(field)
        elif field in attrs and not sort_by.startswith(("metrics.", "params.")) \
                and field not in run.metrics and field not in run.params:
            v = getattr(run, field)
            v = v.value if isinstance(v, RunStatus) else v
        else:
            v = run.metrics.get(field, run.params.get(field))
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return v

    keyed = [(value(r), i, r) for i, r in enumerate(runs)]
    present = [k for k in keyed if k[0] is not None]
    missing = [k[2] for k in keyed if k[0] is None]
    nums = [k for k in present if not isinstance(k[0], str)]
    texts = [k for k in present if isinstance(k[0], str)]
    nums.sort(key=lambda k: k[0], reverse=not ascending)
    texts.sort(key=lambda k: k[0], reverse=not ascending)
    return [k[2] for k in nums] + [k[2] for k in texts] + missing
