"""Export a database to JSON, JSONL, CSV, Parquet or Arrow, and import it back.

Every export covers each selected key's whole history, oldest first, and is
lossless for every stored type; the JSON, JSONL and Parquet forms import back
into an identical history.  pyarrow and pandas are optional: they load only
when a Parquet, Arrow or DataFrame function is called.

The formats (``seq`` is a value's position in its key's history, from 0):

* JSON: ``{"format": "synadb-export", "version": 1, "keys": {key: [{"type":
  t, "value": v}, ...]}}``.
* JSONL: one ``{"key", "seq", "type", "value"}`` object per line.
* CSV (export only): header ``key,seq,type,value``.
* Parquet and Arrow IPC: a long table ``key, seq, type, value_float,
  value_int, value_text, value_bytes, value_vector`` with one value column
  filled per row and the others null.

Value encoding in JSON, JSONL and CSV: bytes are base64, vectors are lists of
floats (a float32 survives the trip through a Python float's repr exactly),
and since JSON has no NaN, non-finite floats are the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``; the ``type`` says they are floats.  A
NaN's sign and payload bits are not kept.

Imports append inside one :meth:`SynaDB.batch`, so a malformed file imports
nothing and raises :class:`~synadb.errors.InvalidArgument` naming the file
and the line, key or row.

>>> import os, tempfile
>>> from synadb import SynaDB
>>> folder = tempfile.mkdtemp()
>>> with SynaDB(os.path.join(folder, "a.db")) as db:
...     db.put_float("loss", 0.5); db.put_float("loss", float("nan"))
...     db.export_json(os.path.join(folder, "a.json"))
2
>>> with SynaDB(os.path.join(folder, "b.db")) as db:
...     db.import_json(os.path.join(folder, "a.json"), key_prefix="old/")
...     db.keys(), db.get_history("old/loss")
2
(['old/loss'], [0.5, nan])
"""

from __future__ import annotations

import base64
import binascii
import csv
import fnmatch
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from . import errors
from .engine.files import atomic_path


class SynaDB(Protocol):
    """What these functions need of a database (``synadb.SynaDB`` has it).

    A protocol rather than an import: db.py imports this module for its
    export methods, so this module must not import db.py back.
    """

    config: Any

    def keys(self, pattern: str | None = None) -> list[str]: ...
    def get_history(self, key: str) -> list[Any]: ...
    def history_entries(self, key: str) -> list[tuple[str, Any]]: ...
    def batch(self, sync: bool = True) -> AbstractContextManager[Any]: ...
    def put(self, key: str, value: Any) -> None: ...
    def put_float(self, key: str, value: float) -> None: ...
    def put_int(self, key: str, value: int) -> None: ...
    def put_text(self, key: str, value: str) -> None: ...
    def put_bytes(self, key: str, value: bytes) -> None: ...
    def put_null(self, key: str) -> None: ...
    def put_vector(self, key: str, vector: Any) -> None: ...

__all__ = [
    "export_json",
    "export_jsonl",
    "export_csv",
    "export_parquet",
    "export_arrow",
    "import_json",
    "import_jsonl",
    "import_parquet",
    "to_dataframe",
    "from_dataframe",
]

FORMAT_NAME = "synadb-export"
FORMAT_VERSION = 1
TYPE_NAMES = ("null", "float", "int", "text", "bytes", "vector")
CSV_HEADER = ("key", "seq", "type", "value")
VALUE_COLUMNS = {"float": "value_float", "int": "value_int", "text": "value_text",
                 "bytes": "value_bytes", "vector": "value_vector"}
# Arrow batches (and Parquet row groups) are cut at whichever comes first, so
# that memory stays bounded and 32-bit string/binary offsets never overflow.
BATCH_ROWS = 64 * 1024
BATCH_BYTES = 64 << 20

_NONFINITE_TO_JSON = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_NONFINITE_FROM_JSON = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_Where = Callable[[], str]  # builds "file, line 3" only when an error needs it


# ------------------------------------------------------------------ helpers
def _selected_keys(db: SynaDB, key_pattern: str | None, key_prefix: str | None) -> list[str]:
    keys = db.keys(key_pattern)
    if key_prefix:
        keys = [k for k in keys if k.startswith(key_prefix)]
    return keys


def _matcher(key_pattern: str | None) -> Callable[[str], bool]:
    if key_pattern is None:
        return lambda key: True
    # The same glob semantics as SynaDB.keys(pattern).
    match = re.compile(fnmatch.translate(key_pattern), re.S).match
    return lambda key: match(key) is not None


def _progress(db: SynaDB, keys: list[str], what: str) -> Iterable[str]:
    if not db.config.progress:
        return keys
    from tqdm.auto import tqdm

    # disable=None: a bar only when stderr is a terminal; delay: none at all
    # for exports that finish in under half a second.
    bar: Iterable[str] = tqdm(keys, desc=what, unit="key", disable=None, delay=0.5,
                              leave=False)
    return bar


def _need(package: str, feature: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as e:
        top = package.partition(".")[0]
        raise errors.MissingDependency(top, "arrow", feature) from e


def _atomic_target(path: str | os.PathLike[str]) -> AbstractContextManager[str]:
    """A temp path next to ``path`` that replaces it when the block succeeds
    (fsynced, renamed, folder fsynced; see engine.files.atomic_path): a
    failed or interrupted export leaves whatever was at ``path`` before."""
    return atomic_path(path)


def _json_float(x: float) -> float | str:
    if math.isfinite(x):
        return x
    return _NONFINITE_TO_JSON[repr(x)]


def _json_vector(v: np.ndarray) -> list[Any]:
    values: list[Any] = v.tolist()  # float32 -> exact Python floats
    if not np.isfinite(v).all():
        values = [_json_float(x) for x in values]
    return values


def _json_value(typ: str, value: Any) -> Any:
    if typ == "float":
        return _json_float(value)
    if typ == "bytes":
        return base64.b64encode(value).decode("ascii")
    if typ == "vector":
        return _json_vector(value)
    return value  # null, int, text are JSON already


def _invalid(where: _Where, problem: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{where()}: {problem}")


def _float_from_json(v: Any, where: _Where) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            raise _invalid(where, f"{v} is out of float range") from None
    if isinstance(v, str) and v in _NONFINITE_FROM_JSON:
        return _NONFINITE_FROM_JSON[v]
    raise _invalid(where, f"a float value must be a number, \"NaN\", \"Infinity\" or "
                          f"\"-Infinity\", not {v!r}")


def _vector_from_floats(values: Any, where: _Where) -> np.ndarray:
    wide = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        arr = wide.astype(np.float32)
    if (np.isinf(arr) & np.isfinite(wide)).any():
        raise _invalid(where, "a vector element is out of float32 range")
    return arr


def _decode_json_value(typ: Any, value: Any, where: _Where) -> Any:
    """The Python value that the put of type ``typ`` takes, from JSON."""
    if typ == "null":
        if value is not None:
            raise _invalid(where, f"a null value must be null, not {value!r}")
        return None
    if typ == "float":
        return _float_from_json(value, where)
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(where, f"an int value must be an integer, not {value!r}")
        return value
    if typ == "text":
        if not isinstance(value, str):
            raise _invalid(where, f"a text value must be a string, not {value!r}")
        return value
    if typ == "bytes":
        if not isinstance(value, str):
            raise _invalid(where, f"a bytes value must be a base64 string, not {value!r}")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as e:
            raise _invalid(where, f"bad base64 ({e})") from e
    if typ == "vector":
        if not isinstance(value, list):
            raise _invalid(where, f"a vector value must be a list, not {type(value).__name__}")
        return _vector_from_floats([_float_from_json(x, where) for x in value], where)
    raise _invalid(where, f"unknown type {typ!r}; expected one of {', '.join(TYPE_NAMES)}")


def _put_typed(db: SynaDB, key: str, typ: str, value: Any, where: _Where) -> None:
    try:
        if typ == "null":
            db.put_null(key)
        elif typ == "float":
            db.put_float(key, value)
        elif typ == "int":
            db.put_int(key, value)
        elif typ == "text":
            db.put_text(key, value)
        elif typ == "bytes":
            db.put_bytes(key, value)
        else:
            db.put_vector(key, value)
    except errors.InvalidArgument as e:
        raise _located(e, where) from e


def _located(e: errors.InvalidArgument, where: _Where) -> errors.InvalidArgument:
    # Keep the subclass (InvalidKey, NonFiniteValue, ...) so callers can still
    # tell them apart; only the message gains the file and position.
    try:
        return type(e)(f"{where()}: {e}")
    except TypeError:
        return errors.InvalidArgument(f"{where()}: {e}")


def _open_text(path: str | os.PathLike[str]) -> Any:
    try:
        return open(path, encoding="utf-8", newline="")
    except IsADirectoryError as e:
        raise errors.InvalidPath(f"{os.fspath(path)!r} is a directory") from e


# ------------------------------------------------------------------ exports
def export_json(db: SynaDB, path: str | os.PathLike[str], *, key_pattern: str | None = None,
                key_prefix: str | None = None) -> int:
    """Write the selected keys' histories to one JSON document.

    Args:
        db: the database to read.
        path: the file to write; replaced atomically when complete.
        key_pattern: a glob on keys, as in :meth:`SynaDB.keys`.
        key_prefix: only keys starting with this.

    Returns:
        How many values were written.

    Raises:
        InvalidPath: ``path`` is a directory.
        ChecksumError: a selected record is damaged (nothing is written).
    """
    keys = _selected_keys(db, key_pattern, key_prefix)
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    n = 0
    with _atomic_target(path) as tmp, open(tmp, "x", encoding="utf-8", newline="\n") as f:
        # Streamed key by key rather than json.dump of one dict: memory stays
        # at one key's history however large the database is.
        f.write('{"format": %s, "version": %d, "keys": {'
                % (dumps(FORMAT_NAME), FORMAT_VERSION))
        first = True
        for key in _progress(db, keys, "export json"):
            entries = db.history_entries(key)
            if not entries:  # deleted while we were exporting
                continue
            f.write(("\n" if first else ",\n") + dumps(key) + ": ")
            f.write(dumps([{"type": t, "value": _json_value(t, v)} for t, v in entries]))
            first = False
            n += len(entries)
        f.write("\n}}\n")
    return n


def export_jsonl(db: SynaDB, path: str | os.PathLike[str], *, key_pattern: str | None = None,
                 key_prefix: str | None = None) -> int:
    """Write one JSON object per value: ``{"key", "seq", "type", "value"}``.

    Args and Returns as :func:`export_json`.
    """
    keys = _selected_keys(db, key_pattern, key_prefix)
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    n = 0
    with _atomic_target(path) as tmp, open(tmp, "x", encoding="utf-8", newline="\n") as f:
        for key in _progress(db, keys, "export jsonl"):
            for seq, (t, v) in enumerate(db.history_entries(key)):
                f.write(dumps({"key": key, "seq": seq, "type": t,
                               "value": _json_value(t, v)}) + "\n")
                n += 1
    return n


def _csv_value(typ: str, value: Any) -> str:
    if typ == "null":
        return ""
    if typ == "float":
        return repr(value) if math.isfinite(value) else _NONFINITE_TO_JSON[repr(value)]
    if typ == "vector":
        return json.dumps(_json_vector(value), allow_nan=False)
    if typ == "bytes":
        return base64.b64encode(value).decode("ascii")
    return str(value)


def export_csv(db: SynaDB, path: str | os.PathLike[str], *, key_pattern: str | None = None,
               key_prefix: str | None = None) -> int:
    """Write a CSV with header ``key,seq,type,value``, one row per value.

    Floats are written with repr (exact), non-finite ones as ``NaN``,
    ``Infinity``, ``-Infinity``; null is an empty field (the type column
    tells it from empty text); bytes are base64; vectors are JSON lists.
    There is no CSV import: use JSON, JSONL or Parquet to move data between
    databases.

    Args and Returns as :func:`export_json`.
    """
    keys = _selected_keys(db, key_pattern, key_prefix)
    n = 0
    with _atomic_target(path) as tmp, open(tmp, "x", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_HEADER)
        for key in _progress(db, keys, "export csv"):
            for seq, (t, v) in enumerate(db.history_entries(key)):
                out.writerow((key, seq, t, _csv_value(t, v)))
                n += 1
    return n


def _arrow_schema(pa: Any) -> Any:
    return pa.schema(
        [pa.field("key", pa.string(), nullable=False),
         pa.field("seq", pa.int64(), nullable=False),
         pa.field("type", pa.string(), nullable=False),
         pa.field("value_float", pa.float64()),
         pa.field("value_int", pa.int64()),
         pa.field("value_text", pa.string()),
         pa.field("value_bytes", pa.binary()),
         pa.field("value_vector", pa.list_(pa.float32()))],
        metadata={"synadb.format": FORMAT_NAME, "synadb.version": str(FORMAT_VERSION)})


def _arrow_batches(db: SynaDB, keys: list[str], pa: Any, schema: Any,
                   what: str) -> Iterator[tuple[Any, int]]:
    """Yield (RecordBatch, rows) covering every value of ``keys``."""
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    vectors: list[np.ndarray] = []
    size = 0

    def flush() -> Any:
        nonlocal vectors, size
        rows = len(cols["key"])
        lengths = np.zeros(rows + 1, dtype=np.int32)
        is_vec = np.array([v is not None for v in cols["value_vector"]], dtype=bool)
        lengths[1:][is_vec] = [len(v) for v in vectors]
        values = np.concatenate(vectors) if vectors else np.empty(0, dtype=np.float32)
        vec = pa.ListArray.from_arrays(pa.array(np.cumsum(lengths, dtype=np.int32)),
                                       pa.array(values, type=pa.float32()),
                                       mask=pa.array(~is_vec))
        arrays = [pa.array(cols[name], type=schema.field(name).type)
                  for name in schema.names[:-1]] + [vec]
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
        for c in cols.values():
            c.clear()
        vectors, size = [], 0
        return batch, rows

    slots = {"float": 3, "int": 4, "text": 5, "bytes": 6, "vector": 7}
    names = schema.names
    for key in _progress(db, keys, what):
        for seq, (t, v) in enumerate(db.history_entries(key)):
            row: list[Any] = [key, seq, t, None, None, None, None, None]
            if t != "null":
                row[slots[t]] = v
            if t == "vector":
                vectors.append(v)
                size += v.nbytes
            elif t in ("text", "bytes"):
                size += len(v)
            for name, cell in zip(names, row):
                cols[name].append(cell)
            size += len(key)
            if len(cols["key"]) >= BATCH_ROWS or size >= BATCH_BYTES:
                yield flush()
    if cols["key"]:
        yield flush()


def export_parquet(db: SynaDB, path: str | os.PathLike[str], *,
                   key_pattern: str | None = None, key_prefix: str | None = None) -> int:
    """Write a Parquet file: the long table described in the module docstring.

    DuckDB and pandas read it directly; note that pandas' default reader
    turns ``value_int`` (which has nulls) into float64, so pass
    ``dtype_backend="pyarrow"`` to keep ints beyond 2**53 exact.

    Args and Returns as :func:`export_json`.

    Raises:
        MissingDependency: pyarrow is not installed.
    """
    pa = _need("pyarrow", "Parquet export")
    pq = _need("pyarrow.parquet", "Parquet export")
    keys = _selected_keys(db, key_pattern, key_prefix)
    schema = _arrow_schema(pa)
    n = 0
    with _atomic_target(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch, rows in _arrow_batches(db, keys, pa, schema, "export parquet"):
                writer.write_batch(batch)
                n += rows
    return n


def export_arrow(db: SynaDB, path: str | os.PathLike[str], *,
                 key_pattern: str | None = None, key_prefix: str | None = None) -> int:
    """Write an Arrow IPC file (``.arrow``, read with ``pyarrow.ipc.open_file``).

    The same long table as :func:`export_parquet`.

    Raises:
        MissingDependency: pyarrow is not installed.
    """
    pa = _need("pyarrow", "Arrow export")
    keys = _selected_keys(db, key_pattern, key_prefix)
    schema = _arrow_schema(pa)
    n = 0
    with _atomic_target(path) as tmp:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch, rows in _arrow_batches(db, keys, pa, schema, "export arrow"):
                writer.write_batch(batch)
                n += rows
    return n


# ------------------------------------------------------------------ imports
def _check_header(doc: Any, name: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise errors.InvalidArgument(
            f"{name}: not a synadb export (no \"format\": \"{FORMAT_NAME}\")")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise errors.InvalidArgument(f"{name}: bad \"version\" {version!r}")
    if version > FORMAT_VERSION:
        raise errors.FormatVersionError(
            f"{name}: export format version {version}; this synadb reads up to "
            f"{FORMAT_VERSION}")
    keys = doc.get("keys")
    if not isinstance(keys, dict):
        raise errors.InvalidArgument(f"{name}: \"keys\" must be an object")
    return keys


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key would silently drop one history; say so instead.
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate name {k!r} in one object")
        out[k] = v
    return out


def import_json(db: SynaDB, path: str | os.PathLike[str], *, key_prefix: str = "",
                key_pattern: str | None = None) -> int:
    """Append the histories of a file written by :func:`export_json`.

    Args:
        db: the database to append to.
        path: a JSON export.
        key_prefix: prepended to every imported key.
        key_pattern: a glob on the file's keys (before ``key_prefix``).

    Returns:
        How many values were appended.

    Raises:
        InvalidArgument: the file is malformed; nothing was imported.
        FormatVersionError: the file comes from a newer synadb.
    """
    name = os.fspath(path)
    with _open_text(path) as f:
        try:
            doc = json.load(f, object_pairs_hook=_no_duplicates)
        except UnicodeDecodeError as e:
            raise errors.InvalidArgument(f"{name}: not UTF-8 ({e})") from e
        except ValueError as e:  # JSONDecodeError gives the line and column
            raise errors.InvalidArgument(f"{name}: not valid JSON: {e}") from e
    src = _check_header(doc, name)
    wanted = _matcher(key_pattern)
    n = 0
    with db.batch():
        for key, entries in src.items():
            if not wanted(key):
                continue
            if not isinstance(entries, list):
                raise errors.InvalidArgument(f"{name}: key {key!r}: the history must be a list")
            for i, entry in enumerate(entries):
                def where(key: str = key, i: int = i) -> str:
                    return f"{name}: key {key!r}, value {i}"

                if not isinstance(entry, dict) or "type" not in entry:
                    raise _invalid(where, "each value must be an object with \"type\"")
                if "value" not in entry and entry["type"] != "null":
                    raise _invalid(where, "no \"value\"")
                typ = entry["type"]
                value = _decode_json_value(typ, entry.get("value"), where)
                _put_typed(db, key_prefix + key, typ, value, where)
                n += 1
    return n


def import_jsonl(db: SynaDB, path: str | os.PathLike[str], *, key_prefix: str = "",
                 key_pattern: str | None = None) -> int:
    """Append the values of a file written by :func:`export_jsonl`.

    Lines of different keys may interleave; within a key, ``seq`` (if
    present) must increase, and values are appended in file order.  Blank
    lines are skipped.  Args, Returns and Raises as :func:`import_json`.
    """
    name = os.fspath(path)
    wanted = _matcher(key_pattern)
    last_seq: dict[str, int] = {}
    n = 0
    # Binary lines, decoded one by one: a bad byte is then reported on its
    # own line rather than wherever the text decoder's chunk began.
    try:
        f = open(path, "rb")
    except IsADirectoryError as e:
        raise errors.InvalidPath(f"{name!r} is a directory") from e
    decode = json.JSONDecoder(object_pairs_hook=_no_duplicates).decode  # one, not one per line
    with f, db.batch():
        for lineno, raw in enumerate(f, 1):
            def where(lineno: int = lineno) -> str:
                return f"{name}: line {lineno}"

            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _invalid(where, f"not UTF-8 ({e})") from e
            if not line.strip():
                continue
            try:
                obj = decode(line)
            except ValueError as e:
                raise _invalid(where, f"not valid JSON: {e}") from e
            if not isinstance(obj, dict):
                raise _invalid(where, "each line must be a JSON object")
            key = obj.get("key")
            if not isinstance(key, str):
                raise _invalid(where, f"\"key\" must be a string, not {key!r}")
            if "type" not in obj:
                raise _invalid(where, "no \"type\"")
            if "value" not in obj and obj["type"] != "null":
                raise _invalid(where, "no \"value\"")
            if "seq" in obj:
                seq = obj["seq"]
                if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                    raise _invalid(where, f"\"seq\" must be an integer >= 0, not {seq!r}")
                prev = last_seq.get(key)
                if prev is not None and seq <= prev:
                    raise _invalid(where, f"key {key!r}: seq {seq} comes after seq {prev}")
                last_seq[key] = seq
            if not wanted(key):
                continue
            typ = obj["type"]
            value = _decode_json_value(typ, obj.get("value"), where)
            _put_typed(db, key_prefix + key, typ, value, where)
            n += 1
    return n


def _column(table: Any, name: str, typ: Any, where: str) -> Any:
    try:
        return table.column(name).cast(typ)
    except Exception as e:  # ArrowInvalid, ArrowNotImplementedError, ...
        raise errors.InvalidArgument(f"{where}: column {name!r} of type "
                                     f"{table.schema.field(name).type} is not {typ}") from e


def import_parquet(db: SynaDB, path: str | os.PathLike[str], *, key_prefix: str = "",
                   key_pattern: str | None = None) -> int:
    """Append the values of a table written by :func:`export_parquet`.

    Rows are grouped by key (keys in order of first appearance) and sorted
    by ``seq`` within a key, so a table reordered or filtered by another
    tool (DuckDB, pandas) still imports; two rows of one key with the same
    ``seq`` are an error.  Value columns a table's types do not use may be
    absent.  Args, Returns and Raises as :func:`import_json`.

    Raises:
        MissingDependency: pyarrow is not installed.
    """
    pa = _need("pyarrow", "Parquet import")
    pq = _need("pyarrow.parquet", "Parquet import")
    name = os.fspath(path)
    if os.path.isdir(name):
        raise errors.InvalidPath(f"{name!r} is a directory")
    try:
        table = pq.read_table(name)
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise errors.InvalidArgument(f"{name}: not a readable Parquet file: {e}") from e
    meta = table.schema.metadata or {}
    version = meta.get(b"synadb.version")
    if version is not None and version.isdigit() and int(version) > FORMAT_VERSION:
        raise errors.FormatVersionError(
            f"{name}: export format version {int(version)}; this synadb reads up to "
            f"{FORMAT_VERSION}")
    have = set(table.schema.names)
    for required in ("key", "type"):
        if required not in have:
            raise errors.InvalidArgument(f"{name}: no {required!r} column")
    keys = _column(table, "key", pa.string(), name).to_pylist()
    types = _column(table, "type", pa.string(), name).to_pylist()
    seqs = _column(table, "seq", pa.int64(), name).to_pylist() if "seq" in have else None
    wanted = _matcher(key_pattern)

    rows_of: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is None:
            raise errors.InvalidArgument(f"{name}: row {i}: the key is null")
        if wanted(key):
            rows_of.setdefault(key, []).append(i)
    if seqs is not None:
        for key, rows in rows_of.items():
            for i in rows:
                if seqs[i] is None:
                    raise errors.InvalidArgument(f"{name}: row {i} (key {key!r}): seq is null")
            rows.sort(key=seqs.__getitem__)
            for a, b in zip(rows, rows[1:]):
                if seqs[a] == seqs[b]:
                    raise errors.InvalidArgument(
                        f"{name}: rows {min(a, b)} and {max(a, b)} (key {key!r}) "
                        f"both have seq {seqs[a]}")

    values: dict[str, Any] = {}

    def column_for(typ: str, where: _Where) -> Any:
        got = values.get(typ)
        if got is not None:
            return got
        col = VALUE_COLUMNS[typ]
        if col not in have:
            raise _invalid(where, f"type {typ!r} but the table has no {col!r} column")
        arrow_type = {"float": pa.float64(), "int": pa.int64(), "text": pa.string(),
                      "bytes": pa.binary(), "vector": pa.list_(pa.float32())}[typ]
        arr = _column(table, col, arrow_type, name)
        if typ == "vector":
            arr = arr.combine_chunks()
            if arr.values.null_count:
                raise _invalid(where, "a vector in 'value_vector' has a null element")
            # Offsets index the child array directly: one copy for all vectors
            # instead of a Python list of floats per row.
            got = (arr.offsets.to_numpy(), arr.values.to_numpy(zero_copy_only=False),
                   arr.is_valid().to_numpy(zero_copy_only=False))
        else:
            got = arr.to_pylist()
        values[typ] = got
        return got

    n = 0
    with db.batch():
        for key, rows in rows_of.items():
            for i in rows:
                def where(i: int = i, key: str = key) -> str:
                    return f"{name}: row {i} (key {key!r})"

                typ = types[i]
                if typ not in TYPE_NAMES:
                    raise _invalid(where, f"unknown type {typ!r}; expected one of "
                                          f"{', '.join(TYPE_NAMES)}")
                value: Any = None
                if typ == "vector":
                    offsets, flat, valid = column_for(typ, where)
                    if not valid[i]:
                        raise _invalid(where, "type 'vector' but value_vector is null")
                    value = flat[offsets[i]:offsets[i + 1]]
                elif typ != "null":
                    value = column_for(typ, where)[i]
                    if value is None:
                        raise _invalid(where, f"type {typ!r} but {VALUE_COLUMNS[typ]} is null")
                _put_typed(db, key_prefix + key, typ, value, where)
                n += 1
    return n


# --------------------------------------------------------------- DataFrames
def to_dataframe(db: SynaDB, *, key_pattern: str | None = None,
                 key_prefix: str | None = None) -> Any:
    """The selected histories as a long pandas DataFrame.

    Columns: ``key``, ``seq`` (int64), ``type`` and ``value`` (object: the
    same Python values :meth:`SynaDB.get_history` returns; vectors are
    float32 arrays).  :func:`from_dataframe` takes it back.

    Raises:
        MissingDependency: pandas is not installed.
    """
    pd = _need("pandas", "to_dataframe")
    keys_col: list[str] = []
    seqs: list[int] = []
    types: list[str] = []
    vals: list[Any] = []
    for key in _progress(db, _selected_keys(db, key_pattern, key_prefix), "to_dataframe"):
        for seq, (t, v) in enumerate(db.history_entries(key)):
            keys_col.append(key)
            seqs.append(seq)
            types.append(t)
            vals.append(v)
    # Filled one by one: handing a list of equal-length arrays to pandas or
    # numpy would build a 2-D block instead of an object column.
    value = np.empty(len(vals), dtype=object)
    for i, v in enumerate(vals):
        value[i] = v
    return pd.DataFrame({"key": pd.Series(keys_col, dtype=object),
                         "seq": np.asarray(seqs, dtype=np.int64),
                         "type": pd.Series(types, dtype=object),
                         "value": value})


def from_dataframe(db: SynaDB, df: Any, *, key_prefix: str = "") -> int:
    """Append the rows of a DataFrame with columns ``key`` and ``value``.

    An optional ``type`` column (``null``, ``float``, ``int``, ``text``,
    ``bytes``, ``vector``) chooses the put; where it is absent or missing,
    the type follows the value as in :meth:`SynaDB.put` (``pd.NA`` and None
    become null).  With a ``seq`` column, each key's rows are appended in
    ``seq`` order; otherwise in row order.  All or nothing.

    Returns:
        How many values were appended.

    Raises:
        InvalidArgument: a missing column, a duplicate seq, or a value that
            cannot be stored (the row is named); nothing was imported.
    """
    pd = _need("pandas", "from_dataframe")
    columns = getattr(df, "columns", None)
    if columns is None:
        raise errors.InvalidArgument(f"from_dataframe needs a DataFrame, not "
                                     f"{type(df).__name__}")
    for required in ("key", "value"):
        if required not in columns:
            raise errors.InvalidArgument(f"the DataFrame has no {required!r} column")
    keys = df["key"].tolist()
    vals = df["value"].tolist()
    types = df["type"].tolist() if "type" in columns else None
    order: Iterable[int] = range(len(keys))
    if "seq" in columns:
        seqs = df["seq"].tolist()
        rows_of: dict[Any, list[int]] = {}
        for i, key in enumerate(keys):
            s = seqs[i]
            if s is None or s is pd.NA or (isinstance(s, float) and math.isnan(s)):
                raise errors.InvalidArgument(f"row {i}: seq is missing")
            rows_of.setdefault(key, []).append(i)
        order = []
        for key, rows in rows_of.items():
            rows.sort(key=seqs.__getitem__)
            for a, b in zip(rows, rows[1:]):
                if seqs[a] == seqs[b]:
                    raise errors.InvalidArgument(
                        f"rows {min(a, b)} and {max(a, b)} (key {key!r}) both have "
                        f"seq {seqs[a]}")
            order.extend(rows)

    n = 0
    with db.batch():
        for i in order:
            key = keys[i]

            def where(i: int = i, key: Any = key) -> str:
                return f"row {i} (key {key!r})"

            if not isinstance(key, str):
                raise _invalid(where, f"keys are str, not {type(key).__name__}")
            value = vals[i]
            if value is pd.NA:
                value = None
            elif isinstance(value, np.bool_):
                value = bool(value)
            typ = types[i] if types is not None else None
            if typ is None or typ is pd.NA or (isinstance(typ, float) and math.isnan(typ)):
                try:
                    db.put(key_prefix + key, value)
                except errors.InvalidArgument as e:
                    raise _located(e, where) from e
            else:
                if typ not in TYPE_NAMES:
                    raise _invalid(where, f"unknown type {typ!r}; expected one of "
                                          f"{', '.join(TYPE_NAMES)}")
                if typ == "null" and value is not None:
                    raise _invalid(where, f"type 'null' but the value is {value!r}")
                if typ == "vector" and isinstance(value, (list, tuple)):
                    value = np.asarray(value, dtype=np.float32)
                elif typ == "int" and isinstance(value, float) and value.is_integer():
                    # pandas turns an int column into float64 as soon as one
                    # row is a float or missing; the type column says int.
                    value = int(value)
                _put_typed(db, key_prefix + key, typ, value, where)
            n += 1
    return n
