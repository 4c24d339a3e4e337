"""MLflow's search grammar for the shim: filter strings (``metrics.loss <
0.5 and params.lr = '0.01'``), ``order_by`` clauses and page tokens, on
runs, experiments and registered models.  Needs no mlflow import (the
``synadb://`` plugin uses mlflow's own ``SearchUtils`` instead)."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .mlflow_entities import RunData
from .mlflow_mapping import ViewType, bad_parameter

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
            raise bad_parameter(f"cannot parse the search filter at {text[pos:pos + 20]!r} "
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
            raise bad_parameter("the search filter ends too early")
        self.i += 1
        return t

    def parse(self) -> Callable[[Any], bool]:
        fn = self.expr()
        if self.peek() is not None:
            raise bad_parameter(f"unexpected {self.peek()[1]!r} in the search filter")  # type: ignore[index]
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
                raise bad_parameter("a '(' in the search filter is not closed")
            return fn
        return self.comparison()

    def ident(self) -> tuple[str, str]:
        kind, text = self.take()
        if kind in ("bt", "str"):  # a quoted bare attribute
            return self.default_kind, _unquote(text) if kind == "str" else text[1:-1]
        if kind != "word":
            raise bad_parameter(f"expected a name like metrics.acc, got {text!r}")
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
                raise bad_parameter(f"expected a key after {text!r}")
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
        raise bad_parameter(f"expected a value in the search filter, got {text!r}")

    def comparison(self) -> Callable[[Any], bool]:
        entity, key = self.ident()
        if entity == "attr":
            key = _ATTR_ALIASES.get(key, key)
        if self.word("IS"):
            negate = self.word("NOT")
            if not self.word("NULL"):
                raise bad_parameter("expected NULL after IS")
            return lambda r: (_lookup(r, entity, key) is None) != negate
        negate = self.word("NOT")
        if self.word("IN"):
            if not (entity == "dataset" or (entity == "attr" and key == "run_id")
                    or (entity == "exp" and key in ("run_id", "name", "version_number"))):
                raise bad_parameter(f"Invalid comparator '{'NOT IN' if negate else 'IN'}' for "
                           f"{entity} {key!r}: MLflow accepts IN only on run_id and "
                           "dataset fields")
            if self.take()[0] != "lp":
                raise bad_parameter("IN needs a parenthesised list of values")
            values = []
            while True:
                values.append(self.value())
                sep = self.take()[0]
                if sep == "rp":
                    break
                if sep != "comma":
                    raise bad_parameter("the values after IN are separated by commas")
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
            raise bad_parameter("NOT must be followed by IN, LIKE or ILIKE")
        kind, op = self.take()
        if kind != "op":
            raise bad_parameter(f"expected a comparison after {key!r}, got {op!r}")
        op = {"==": "=", "<>": "!="}.get(op, op)
        want = self.value()
        numeric = entity == "metric" or (entity in ("attr", "exp") and key in _NUMERIC_ATTRS)
        if numeric:
            try:
                num = float(want)
            except ValueError:
                raise bad_parameter(f"{key!r} is compared with a number, got {want!r}") from None
            return lambda r: _cmp(_lookup(r, entity, key), op, num, True)
        if op not in ("=", "!="):
            raise bad_parameter(f"{entity} {key!r} is a string: compare it with =, !=, LIKE, ILIKE "
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
    raise bad_parameter(f"unknown comparator {op!r}")


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
        raise bad_parameter(f"unknown run attribute {key!r}; use run_id, run_name, status, "
                   "start_time, end_time, artifact_uri, user_id or lifecycle_stage")
    if entity == "exp":  # experiments: name, creation_time, tags.x
        if key == "name" or hasattr(row, key):
            return getattr(row, key)
        raise bad_parameter(f"unknown experiment attribute {key!r}")
    raise bad_parameter(f"cannot search on {entity}s here")


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
            raise bad_parameter(f"cannot parse order_by clause {clause!r}")
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


def page_of(rows: list[Any], max_results: int | None, page_token: str | None) -> PagedList:
    """One page of ``rows``; tokens are MLflow's (base64 JSON of an offset)."""
    offset = 0
    if page_token:
        try:
            offset = int(json.loads(base64.b64decode(page_token))["offset"])
        except (ValueError, KeyError, TypeError):
            raise bad_parameter(f"Invalid page token, could not base64-decode: {page_token!r}") from None
    if max_results is None:
        return PagedList(rows[offset:], None)
    stop = offset + max_results
    token = None
    if stop < len(rows):
        token = base64.b64encode(json.dumps({"offset": stop}).encode()).decode()
    return PagedList(rows[offset:stop], token)

class EntityRow:
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


def view_ok(stage: str, view_type: int | str) -> bool:
    if isinstance(view_type, str):
        view_type = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}.get(view_type.upper(), 1)
    if view_type == ViewType.ALL:
        return True
    return (stage == "deleted") == (view_type == ViewType.DELETED_ONLY)
