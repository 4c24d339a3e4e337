"""Mongo-style metadata filters, compiled once into a predicate.

>>> match = compile_filter({"genre": "news", "year": {"$gte": 2020}})
>>> match({"genre": "news", "year": 2021}), match({"genre": "news", "year": 2019})
(True, False)

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $contains`` on a
field, ``$and $or $nor $not`` to combine.  A field may be a dotted path into
nested dicts.  A field that holds a list matches ``$eq``/``$in`` when any
element does (as in MongoDB).  Comparing values of different kinds (a str
with a number) is simply false, never an error.  ``$ne`` and ``$nin`` match
records that lack the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidArgument

Predicate = Callable[[Mapping[str, Any]], bool]
_MISSING = object()


def _get(meta: Mapping[str, Any], path: str) -> Any:
    if path in meta:
        return meta[path]
    cur: Any = meta
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _eq(value: Any, want: Any) -> bool:
    if value is _MISSING:
        return False
    if isinstance(value, bool) != isinstance(want, bool) and not isinstance(value, list):
        return False  # True == 1 in Python, but not in a filter
    if value == want:
        return True
    return isinstance(value, (list, tuple)) and not isinstance(want, (list, tuple)) \
        and any(_eq(v, want) for v in value)


def _cmp(op: str) -> Callable[[Any, Any], bool]:
    def test(value: Any, want: Any) -> bool:
        if value is _MISSING or value is None or isinstance(value, bool) != isinstance(want, bool):
            return False
        try:
            if op == "$gt":
                return bool(value > want)
            if op == "$gte":
                return bool(value >= want)
            if op == "$lt":
                return bool(value < want)
            return bool(value <= want)
        except TypeError:
            return False
    return test


def _field_ops(path: str, spec: Any) -> Predicate:
    if not isinstance(spec, Mapping) or not any(str(k).startswith("$") for k in spec):
        return lambda m: _eq(_get(m, path), spec)
    tests: list[Predicate] = []
    for op, arg in spec.items():
        if op == "$eq":
            tests.append(lambda m, a=arg: _eq(_get(m, path), a))
        elif op == "$ne":
            tests.append(lambda m, a=arg: not _eq(_get(m, path), a))
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            t = _cmp(op)
            tests.append(lambda m, a=arg, t=t: t(_get(m, path), a))
        elif op in ("$in", "$nin"):
            if not isinstance(arg, (list, tuple, set, frozenset)):
                raise InvalidArgument(f"filter {op} on {path!r} needs a list, got {arg!r}")
            items = list(arg)
            if op == "$in":
                tests.append(lambda m, a=items: any(_eq(_get(m, path), x) for x in a))
            else:
                tests.append(lambda m, a=items: not any(_eq(_get(m, path), x) for x in a))
        elif op == "$exists":
            tests.append(lambda m, a=bool(arg): (_get(m, path) is not _MISSING) == a)
        elif op == "$contains":
            def contains(m: Mapping[str, Any], a: Any = arg) -> bool:
                v = _get(m, path)
                try:
                    return v is not _MISSING and v is not None and a in v
                except TypeError:
                    return False
            tests.append(contains)
        elif op == "$not":
            inner = _field_ops(path, arg)
            tests.append(lambda m, f=inner: not f(m))
        else:
            raise InvalidArgument(f"unknown filter operator {op!r} on field {path!r}")
    if len(tests) == 1:
        return tests[0]
    return lambda m: all(t(m) for t in tests)


def compile_filter(spec: Mapping[str, Any] | Callable[..., bool] | None) -> Predicate | None:
    """Turn a filter dict (or a callable, passed through) into a predicate.

    Raises:
        InvalidArgument: an unknown operator or a malformed filter.
    """
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, Mapping):
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidArgument(f"a filter is a dict, not {type(spec).__name__}: {spec!r}")
    parts: list[Predicate] = []
    for key, arg in spec.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(arg, (list, tuple)) or not arg:
                raise InvalidArgument(f"filter {key} needs a non-empty list of filters")
            subs = [compile_filter(s) for s in arg]
            if key == "$and":
                parts.append(lambda m, s=subs: all(f(m) for f in s))
            elif key == "$or":
                parts.append(lambda m, s=subs: any(f(m) for f in s))
            else:
                parts.append(lambda m, s=subs: not any(f(m) for f in s))
        elif key == "$not":
            if not isinstance(arg, Mapping):
                raise InvalidArgument(f"filter $not needs a filter dict, got {arg!r}")
            sub = compile_filter(arg)
            parts.append(lambda m, f=sub: not f(m))
        elif isinstance(key, str) and key.startswith("$"):
            raise InvalidArgument(f"unknown filter operator {key!r}")
        elif not isinstance(key, str) or not key:
            raise InvalidArgument(f"a filter field is a non-empty str, not {key!r}")
        else:
            parts.append(_field_ops(key, arg))
    if not parts:
        return lambda m: True
    if len(parts) == 1:
        return parts[0]
    return lambda m: all(p(m) for p in parts)
