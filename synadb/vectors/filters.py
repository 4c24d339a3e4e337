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

import numpy as np

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


# ---------------------------------------------------------------- masks
# A filter evaluated for every label at once, over per-field columns.
#
# The predicate above is the definition; the mask must agree with it on
# every record.  Only the scalar kinds (missing, number, bool, str, None)
# are vectorized; a record whose value is anything else (a list, a dict, an
# int too big for a float64) keeps its value in ``Column.other`` and is
# decided by the predicate itself, so lists ($contains, $in on tags) are
# exact too, only slower.

_K_MISSING, _K_NUM, _K_BOOL, _K_STR, _K_NONE, _K_OTHER = range(6)
_EXACT_INT = 2**53  # ints beyond this do not survive a float64


class Unsupported(Exception):
    "This filter has no mask form (a callable); use the predicate."


class Column:
    """One metadata field (a dotted path) for labels ``[0, n)``, append-only.

    A label's metadata never changes (a write gives the key a new label), so
    a column only ever grows; the store drops it when labels restart.
    """

    __slots__ = ("path", "n", "kind", "num", "code", "strings", "ulist", "other")

    def __init__(self, path: str) -> None:
        self.path = path
        self.n = 0
        self.kind = np.zeros(0, dtype=np.uint8)
        self.num = np.zeros(0, dtype=np.float64)
        self.code = np.zeros(0, dtype=np.int32)
        self.strings: dict[str, int] = {}  # str -> code (first seen first)
        self.ulist: list[str] = []  # code -> str
        self.other: dict[int, Any] = {}  # label -> value of kind _K_OTHER

    def extend(self, metas: list[Mapping[str, Any] | None]) -> None:
        """Append the values of labels ``n, n + 1, ...`` (None: a dead label)."""
        m = len(metas)
        kinds = [0] * m
        nums = [0.0] * m
        codes = [-1] * m
        strings, ulist, other = self.strings, self.ulist, self.other
        path = self.path
        for i, meta in enumerate(metas):
            if meta is None:
                continue
            v = _get(meta, path) if meta else _MISSING
            t = type(v)
            if t is float or (t is int and -_EXACT_INT <= v <= _EXACT_INT):
                kinds[i] = _K_NUM
                nums[i] = v
            elif t is str:
                kinds[i] = _K_STR
                c = strings.get(v)
                if c is None:
                    c = strings[v] = len(ulist)
                    ulist.append(v)
                codes[i] = c
            elif v is _MISSING:
                pass
            elif t is bool:
                kinds[i] = _K_BOOL
                nums[i] = float(v)
            elif v is None:
                kinds[i] = _K_NONE
            else:
                kinds[i] = _K_OTHER
                other[self.n + i] = v
        self.kind = np.concatenate([self.kind, np.array(kinds, dtype=np.uint8)])
        self.num = np.concatenate([self.num, np.array(nums, dtype=np.float64)])
        self.code = np.concatenate([self.code, np.array(codes, dtype=np.int32)])
        self.n += m

    def _strs(self, test: Callable[[str], bool]) -> np.ndarray:
        """Rows holding a str for which ``test`` holds (once per distinct str)."""
        if not self.ulist:
            return np.zeros(self.n, dtype=bool)
        ok = np.fromiter((test(s) for s in self.ulist), dtype=bool, count=len(self.ulist))
        return (self.kind == _K_STR) & ok[np.maximum(self.code, 0)]

    def eq(self, want: Any) -> np.ndarray:
        """``_eq`` on the scalar rows (other rows: see ``Column.other``)."""
        t = type(want)
        if t is bool:
            return (self.kind == _K_BOOL) & (self.num == float(want))
        if t is float or t is int:
            if t is int and not -_EXACT_INT <= want <= _EXACT_INT:
                raise Unsupported(want)
            return (self.kind == _K_NUM) & (self.num == want)
        if t is str:
            c = self.strings.get(want)
            return np.zeros(self.n, dtype=bool) if c is None else self.code == c
        if want is None:
            return self.kind == _K_NONE
        if isinstance(want, (list, tuple, dict)):
            return np.zeros(self.n, dtype=bool)  # a scalar never equals one
        raise Unsupported(want)

    def cmp(self, op: str, want: Any) -> np.ndarray:
        t = type(want)
        if t is bool or t is float or t is int:
            if t is int and not -_EXACT_INT <= want <= _EXACT_INT:
                raise Unsupported(want)
            rows = self.kind == (_K_BOOL if t is bool else _K_NUM)
            num = self.num
            with np.errstate(invalid="ignore"):
                got = (num > want if op == "$gt" else num >= want if op == "$gte"
                       else num < want if op == "$lt" else num <= want)
            return rows & got
        if t is str:
            test = _cmp(op)
            return self._strs(lambda s: test(s, want))
        if want is None or isinstance(want, (list, tuple, dict)):
            return np.zeros(self.n, dtype=bool)  # TypeError for every scalar: false
        raise Unsupported(want)

    def contains(self, want: Any) -> np.ndarray:
        if type(want) is not str:
            return np.zeros(self.n, dtype=bool)  # `x in "str"` needs a str; numbers: TypeError
        return self._strs(lambda s: want in s)


ColumnSource = Callable[[str], Column]


def _field_mask(col: Column, spec: Any) -> np.ndarray:
    """The scalar rows of ``_field_ops(path, spec)``."""
    if not isinstance(spec, Mapping) or not any(str(k).startswith("$") for k in spec):
        return col.eq(spec)
    out: np.ndarray | None = None
    for op, arg in spec.items():
        if op == "$eq":
            m = col.eq(arg)
        elif op == "$ne":
            m = ~col.eq(arg)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            m = col.cmp(op, arg)
        elif op in ("$in", "$nin"):
            m = np.zeros(col.n, dtype=bool)
            for x in arg:
                m |= col.eq(x)
            if op == "$nin":
                m = ~m
        elif op == "$exists":
            m = (col.kind != _K_MISSING) == bool(arg)
        elif op == "$contains":
            m = col.contains(arg)
        elif op == "$not":
            m = ~_field_mask(col, arg)
        else:
            raise Unsupported(op)
        out = m if out is None else out & m
    return np.ones(col.n, dtype=bool) if out is None else out


def filter_mask(spec: Any, columns: ColumnSource, n: int) -> np.ndarray:
    """A bool per label in ``[0, n)``: whether its metadata matches ``spec``
    (a filter that ``compile_filter`` accepted).  Dead labels are don't-care.

    Raises:
        Unsupported: ``spec`` is a callable, or holds a value with no mask form.
    """
    if not isinstance(spec, Mapping):
        raise Unsupported(spec)
    out = np.ones(n, dtype=bool)
    for key, arg in spec.items():
        if key in ("$and", "$or", "$nor"):
            subs = [filter_mask(s, columns, n) for s in arg]
            if key == "$and":
                m = np.logical_and.reduce(subs)
            else:
                m = np.logical_or.reduce(subs)
                if key == "$nor":
                    m = ~m
        elif key == "$not":
            m = ~filter_mask(arg, columns, n)
        else:
            col = columns(key)
            m = _field_mask(col, arg)
            if col.other:
                # Lists, dicts, huge ints: the predicate decides those rows.
                test = _field_ops(key, arg)
                for label, v in col.other.items():
                    m[label] = test({key: v})
        out &= m
    return out
