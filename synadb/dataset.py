"""Dataset: a table of named columns in a synadb file, written in pieces.

A column holds one of five kinds of value per row:

=========  ==============================================  ======================
kind       a row is                                        append it as
=========  ==============================================  ======================
fixed      a numeric array of one shape (or a scalar)      an ndarray ``(n, ...)``
ragged     a numeric array whose first dim varies          a list of ndarrays
bytes      ``bytes`` (an encoded image, a record)          a list of bytes
text       ``str``                                         a list of str
json       any JSON value (dicts of metadata)              a list of objects
=========  ==============================================  ======================

>>> import tempfile, os, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "data.db")
>>> with Dataset(path, "train") as ds:
...     ds.append({"x": np.ones((2, 3), np.float32), "tokens": [np.arange(3), np.arange(5)],
...                "caption": ["a cat", "a dog"]})
...     ds.append({"x": np.zeros((1, 3), np.float32), "tokens": [np.arange(1)],
...                "caption": ["a bird"]})
2
1
>>> ds = Dataset(path, "train", read_only=True)
>>> len(ds), ds[2]["caption"], ds[1]["tokens"].tolist()
(3, 'a bird', [0, 1, 2, 3, 4])
>>> ds.take([0, 2], columns=["x"])["x"].shape
(2, 3)
>>> ds.close()

Each append is all or nothing and is seen by readers that have the file
open (``len(ds)`` and reads look for new rows, cheaply).  Appends never
rewrite earlier rows, so a writer streams data of any size in bounded
memory (:meth:`Dataset.extend` takes a generator of batches).

Layout: the manifest ``__dataset__/<name>`` (JSON: columns, chunk count,
row count) and one bytes record per chunk of rows,
``__dataset__/<name>#<n>``.  A chunk holds every column of its rows, each
column as 64-byte aligned sections (values, and offsets for the variable
kinds), with a CRC-32 for every 64 KiB of each section.  Those CRCs are
checked when a segment is first read by a handle (and all at once by
:meth:`Dataset.verify`), so opening a dataset reads its metadata only,
never its data; FORMAT.md describes the chunk in full.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import errors
from .db import DbConfig, SynaDB
from .engine.files import atomic_path

__all__ = ["Dataset", "Column", "datasets", "names_a_dataset", "pad"]

KINDS = ("fixed", "ragged", "bytes", "text", "json")
_NUMERIC = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
            "uint16", "uint32", "uint64", "bool")
_MANIFEST = "__dataset__/"
_MAGIC = b"SDC1"
_PREFIX = struct.Struct("<4sIII")  # magic, meta length, CRC-table length, CRC of both
_ALIGN = 64
_SEG_SHIFT = 16  # by default a CRC per 64 KiB of a section
# The smallest segment a chunk may name (the format allows 4 KiB to 1 GiB).
# Writers use 64 KiB: a segment costs a Python call to check, so in a first
# epoch over random rows 64 KiB segments check each byte once for 1/16 of
# the calls that row-sized ones take (measured: 2 GB shuffled epochs ran
# 0.62x np.memmap with 64 KiB, 0.31x with 4 KiB); only a cold random read
# pays for the larger read.
_MIN_SEG_SHIFT = 12
# Bytes per chunk record: few chunks keep a batch's gather to a few numpy
# calls (the 64 KiB CRCs make a chunk's size free for reads), and an append
# builds one chunk at a time, so this bounds a writer's memory too.
_CHUNK_BYTES = 256 << 20
# The writer checkpoints the file's index after this many new bytes, so that
# a reader opening it replays (and CRC-checks) only a bounded tail.
_CHECKPOINT_BYTES = 256 << 20


@dataclass(frozen=True)
class Column:
    """One column: its name, kind, and for numeric kinds the dtype and the
    shape of a row (``fixed``) or of one element of a row (``ragged``)."""

    name: str
    kind: str
    dtype: np.dtype | None = None
    shape: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind,
                "dtype": None if self.dtype is None else self.dtype.name,
                "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: Any, where: str) -> "Column":
        try:
            kind = d["kind"]
            dtype = d.get("dtype")
            shape = tuple(d.get("shape") or ())
            ok = (isinstance(d["name"], str) and kind in KINDS
                  and (dtype in _NUMERIC if kind in ("fixed", "ragged") else dtype is None)
                  and all(type(s) is int and s >= 0 for s in shape))
        except (TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise errors.CorruptDatabase(f"{where}: a column entry is damaged: {d!r:.200}")
        return cls(d["name"], kind, None if dtype is None else np.dtype(dtype), shape)


def datasets(path: str | os.PathLike[str]) -> list[str]:
    """Names of the datasets stored in the file at ``path``, sorted."""
    with SynaDB(path, config=DbConfig(read_only=True)) as db:
        return _names(db)


def names_a_dataset(path: Any, name: Any) -> bool:
    """Whether ``(path, name)`` means a :class:`Dataset`: ``path`` is one, or
    ``name`` has no glob characters and names a dataset in the file at
    ``path`` (how the torch and tf.data adapters tell a Dataset from a
    TensorEngine row pattern)."""
    if isinstance(path, Dataset):
        return True
    if not isinstance(name, str) or not name or any(c in name for c in "*?["):
        return False
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return False
    try:
        return name in datasets(path)
    except errors.SynaError:
        return False


def _names(db: SynaDB) -> list[str]:
    return sorted(k[len(_MANIFEST):] for k in db.keys(_MANIFEST + "*") if "#" not in k)


def pad(rows: Sequence[Any], value: Any = 0, *, max_len: int | None = None,
        dtype: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad ragged rows to one length: ``(padded (n, L, ...), lengths (n,))``.

    The padding collate of a ragged column (token ids): rows longer than
    ``max_len`` are cut.  ``attention_mask = arange(L) < lengths[:, None]``.
    """
    arrs = [np.asarray(r) for r in rows]
    lengths = np.array([len(a) for a in arrs], dtype=np.int64)
    if max_len is not None:
        lengths = np.minimum(lengths, int(max_len))
    width = int(lengths.max()) if len(arrs) else 0
    if max_len is not None and len(arrs):
        width = int(max_len)
    inner = arrs[0].shape[1:] if arrs else ()
    dt = np.dtype(dtype) if dtype is not None else (
        np.result_type(*[a.dtype for a in arrs]) if arrs else np.dtype(np.int64))
    out = np.full((len(arrs), width, *inner), value, dtype=dt)
    for i, (a, n) in enumerate(zip(arrs, lengths.tolist())):
        out[i, :n] = a[:n]
    return out, lengths


# ------------------------------------------------------------------ reading
class CheckedBuffer:
    """Bytes of the file (a read-only uint8 view) and the CRC-32 of each 64
    KiB of them (:func:`segment_crcs`), each checked when first read through
    this object: how a Dataset chunk's sections and a tensor block are read
    without checking all of a large record at open."""

    __slots__ = ("buf", "crcs", "ok", "left", "where", "shift")

    def __init__(self, buf: np.ndarray, crcs: np.ndarray, where: str,
                 shift: int = _SEG_SHIFT) -> None:
        self.buf = buf
        self.crcs = crcs
        self.ok = np.zeros(len(crcs), dtype=bool)
        self.left = len(crcs)
        self.where = where
        self.shift = shift

    def _check(self, segs: Any) -> None:
        buf, crcs, ok, shift = self.buf, self.crcs, self.ok, self.shift
        size = 1 << shift
        for s in segs:
            if ok[s]:
                continue
            lo = s << shift
            if zlib.crc32(buf[lo:lo + size]) != int(crcs[s]):
                raise errors.ChecksumError(
                    f"{self.where}: bytes {lo}..{min(len(buf), lo + size)} fail their CRC")
            ok[s] = True
            self.left -= 1

    def check_all(self) -> None:
        if self.left:
            self._check(range(len(self.crcs)))

    def check_range(self, lo: int, hi: int) -> None:
        """Check the segments holding bytes [lo, hi)."""
        if self.left and hi > lo:
            self._check(range(lo >> self.shift, ((hi - 1) >> self.shift) + 1))

    def check_rows(self, rows: np.ndarray, width: int) -> None:
        """Check the segments holding rows ``rows`` of ``width`` bytes each."""
        if not self.left or not len(rows) or not width:
            return
        shift = self.shift
        if width > (1 << shift):
            for r in rows.tolist():
                self.check_range(r * width, (r + 1) * width)
            return
        lo = (rows * width) >> shift
        hi = ((rows + 1) * width - 1) >> shift
        segs = np.concatenate([lo, hi])
        need = segs[~self.ok[segs]]
        if len(need):
            self._check(np.unique(need).tolist())


class _Chunk:
    """The parsed head of one chunk record and views of its sections."""

    __slots__ = ("key", "start", "rows", "secs", "arrays", "mapobj", "where_in_map")

    def __init__(self, key: str, start: int, view: memoryview, cols: list[Column],
                 where: str, gen: Any, rows: int) -> None:
        self.key = key
        self.start = start
        self.mapobj = view.obj  # the file's map this chunk was read from
        self.where_in_map: dict[str, int] = {}
        buf = np.frombuffer(view, dtype=np.uint8)
        if len(buf) < _PREFIX.size:
            raise errors.CorruptDatabase(f"{where}: chunk {key!r} is too short")
        magic, mlen, tlen, crc = _PREFIX.unpack_from(view, 0)
        end = _PREFIX.size + mlen + tlen
        if magic != _MAGIC or end > len(buf):
            raise errors.CorruptDatabase(f"{where}: chunk {key!r} has a bad head")
        if zlib.crc32(buf[_PREFIX.size:end]) != crc:
            raise errors.ChecksumError(f"{where}: the head of chunk {key!r} fails its CRC")
        try:
            meta = json.loads(bytes(buf[_PREFIX.size:_PREFIX.size + mlen]))
            self.rows = int(meta["rows"])
            tables = np.frombuffer(view, dtype="<u4", count=tlen // 4,
                                   offset=_PREFIX.size + mlen)
            # The sections start 64-byte aligned in the file: ``pad`` bytes
            # after the head (chunks without it aligned from their own start).
            base = end + int(meta["pad"]) if "pad" in meta else _align(end)
            if meta.get("gen") != gen:
                raise _Stale(key)
            self.secs: dict[tuple[str, str], CheckedBuffer] = {}
            for c in cols:
                for sec, entry in meta["cols"][c.name].items():
                    off, n, t0, nt = entry[:4]
                    shift = int(entry[4]) if len(entry) > 4 else _SEG_SHIFT
                    if base + off + n > len(buf) or t0 + nt > len(tables) or \
                            not _MIN_SEG_SHIFT <= shift <= 30 or nt != -(-n // (1 << shift)):
                        raise ValueError(f"section {c.name}/{sec} is out of bounds")
                    self.secs[(c.name, sec)] = CheckedBuffer(
                        buf[base + off:base + off + n], tables[t0:t0 + nt],
                        f"{where}: chunk {key!r} column {c.name!r} ({sec})", shift)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise errors.CorruptDatabase(f"{where}: chunk {key!r} is damaged ({e})") from None
        if self.rows != rows:
            raise errors.CorruptDatabase(f"{where}: chunk {key!r} holds {self.rows} rows, the "
                                         f"manifest says {rows}")
        self.arrays: dict[str, np.ndarray] = {}

    def typed(self, col: Column, sec: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The section as a read-only array of ``dtype`` shaped (-1, *shape)."""
        key = col.name + "/" + sec
        arr = self.arrays.get(key)
        if arr is None:
            raw = self.secs[(col.name, sec)].buf
            arr = raw.view(dtype.newbyteorder("<")).reshape(-1, *shape)
            self.arrays[key] = arr
        return arr


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class _Stale(Exception):
    """A chunk of another generation of the dataset (cleared and written
    again since the manifest was read)."""


# ------------------------------------------------------------------ writing
def segment_crcs(buf: np.ndarray, shift: int = _SEG_SHIFT) -> np.ndarray:
    """The CRC-32 (zlib, seed 0) of each ``1 << shift`` bytes (64 KiB by
    default) of ``buf``, as u32 little-endian."""
    mv = memoryview(buf)
    size = 1 << shift
    return np.array([zlib.crc32(mv[s:s + size]) for s in range(0, len(buf), size)],
                    dtype="<u4")


def _seg_shift(row_bytes: int) -> int:
    """The segment size a writer gives a fixed column (see _MIN_SEG_SHIFT)."""
    return _SEG_SHIFT


def _flat(arr: np.ndarray) -> np.ndarray:
    """A C-contiguous little-endian array as a flat uint8 array (no copy if it can be)."""
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.reshape(-1).view(np.uint8)


def _encode(rows: int, sections: list[tuple[str, str, np.ndarray, int]], gen: str,
            at: int = 0) -> list[Any]:
    """The parts of one chunk record whose value starts at file offset
    ``at``: head, then the sections, each 64-byte aligned in the file."""
    meta: dict[str, Any] = {"rows": rows, "gen": gen, "pad": "00", "cols": {}}
    tables = []
    off = t0 = 0
    for name, sec, buf, shift in sections:
        crcs = segment_crcs(buf, shift)
        meta["cols"].setdefault(name, {})[sec] = [off, len(buf), t0, len(crcs), shift]
        tables.append(crcs)
        t0 += len(crcs)
        off = _align(off + len(buf))
    tb = np.concatenate(tables).tobytes() if tables else b""
    # "pad" has a fixed width, so the head's length is known before it is set.
    size = _PREFIX.size + len(json.dumps(meta, separators=(",", ":")).encode()) + len(tb)
    meta["pad"] = f"{-(at + size) % _ALIGN:02d}"
    mb = json.dumps(meta, separators=(",", ":")).encode()
    head = _PREFIX.pack(_MAGIC, len(mb), len(tb), zlib.crc32(mb + tb)) + mb + tb
    head += bytes(int(meta["pad"]))
    parts: list[Any] = [head]
    for _, _, buf, _ in sections:
        parts.append(buf)
        tail = _align(len(buf)) - len(buf)
        if tail:
            parts.append(bytes(tail))
    return parts


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype="<i8")
    np.cumsum(lengths, out=out[1:])
    return out


def _numeric(value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise errors.InvalidType(f"{what}: not a numeric array ({e})") from None
    if arr.dtype.name not in _NUMERIC:
        raise errors.InvalidType(f"{what}: dtype {arr.dtype} is not one of {', '.join(_NUMERIC)}")
    return arr


def _is_arrayish(v: Any) -> bool:
    return isinstance(v, np.ndarray) or (hasattr(v, "__array__") and not isinstance(
        v, (list, tuple, str, bytes)))


def _infer(name: str, value: Any, kind: str | None) -> Column:
    """The column a first append's value makes (``kind`` forces the kind)."""
    if kind is not None and kind not in KINDS:
        raise errors.InvalidArgument(f"column {name!r}: kind {kind!r} is not one of {KINDS}")
    if _is_arrayish(value) and kind in (None, "fixed"):
        arr = np.asarray(value)
        if arr.dtype.kind in "US":
            return _infer(name, arr.tolist(), kind)
        arr = _numeric(arr, f"column {name!r}")
        if arr.ndim == 0:
            raise errors.DimensionMismatch(f"column {name!r}: one value per row, so an array "
                                           "with at least one dimension")
        return Column(name, "fixed", arr.dtype, tuple(arr.shape[1:]))
    if not isinstance(value, (list, tuple)) and not _is_arrayish(value):
        raise errors.InvalidType(f"column {name!r}: give a list or an array of values, one "
                                 f"per row, not {type(value).__name__}")
    items = list(value)
    first = next((v for v in items if v is not None), None)
    if kind is None:
        if first is None:
            raise errors.InvalidArgument(
                f"column {name!r}: cannot tell its kind from {len(items)} empty values; "
                "pass schema={" f"{name!r}: 'json'" "} (or another kind) to Dataset()")
        if isinstance(first, (bytes, bytearray, memoryview)):
            kind = "bytes"
        elif isinstance(first, str):
            kind = "text"
        elif isinstance(first, (bool, int, float, np.generic)):
            kind = "fixed"
        elif _is_arrayish(first) or (isinstance(first, (list, tuple)) and all(
                isinstance(v, (bool, int, float, np.generic)) for v in first)):
            kind = "ragged"
        else:
            kind = "json"
    if kind == "fixed":
        arr = _numeric(items, f"column {name!r}")
        return Column(name, "fixed", arr.dtype, tuple(arr.shape[1:]))
    if kind == "ragged":
        arrs = [_numeric(v, f"column {name!r}") for v in items]
        if not arrs:
            raise errors.InvalidArgument(f"column {name!r}: no rows to tell the dtype from")
        if any(a.ndim == 0 for a in arrs):
            raise errors.DimensionMismatch(f"column {name!r}: a ragged row is an array with "
                                           "at least one dimension")
        dt = np.result_type(*{a.dtype for a in arrs})
        return Column(name, "ragged", _numeric(np.empty(0, dt), name).dtype,
                      tuple(arrs[0].shape[1:]))
    return Column(name, kind)


class _Encoded:
    """One append's columns, validated, with the byte size of each row."""

    def __init__(self, cols: list[Column], batch: Mapping[str, Any], where: str) -> None:
        self.n = -1
        self.data: dict[str, Any] = {}
        self.row_bytes = None
        for c in cols:
            v = batch[c.name]
            if c.kind == "fixed":
                arr = _numeric(v, f"{where}: column {c.name!r}")
                if arr.shape[1:] != c.shape or arr.ndim != len(c.shape) + 1:
                    raise errors.DimensionMismatch(
                        f"{where}: column {c.name!r} holds rows of shape {c.shape}, "
                        f"got an array of shape {arr.shape}")
                arr = self._cast(arr, c, where)
                n = len(arr)
                sizes = np.full(n, arr[:1].nbytes if n else 0, dtype=np.int64)
                self.data[c.name] = np.ascontiguousarray(arr)
            elif c.kind == "ragged":
                arrs = [self._cast(_numeric(r, f"{where}: column {c.name!r}"), c, where)
                        for r in _rows(v, c.name, where)]
                for a in arrs:
                    if a.ndim != len(c.shape) + 1 or a.shape[1:] != c.shape:
                        raise errors.DimensionMismatch(
                            f"{where}: column {c.name!r} holds arrays of shape (k, *{c.shape}), "
                            f"got {a.shape}")
                n = len(arrs)
                lengths = np.array([len(a) for a in arrs], dtype=np.int64)
                sizes = lengths * (c.dtype.itemsize * math.prod(c.shape)) + 8
                self.data[c.name] = (arrs, lengths)
            else:
                vals = _rows(v, c.name, where)
                enc = [self._bytes(c, x, where) for x in vals]
                n = len(enc)
                sizes = np.array([len(b) + 8 for b in enc], dtype=np.int64)
                self.data[c.name] = enc
            if self.n < 0:
                self.n = n
                self.row_bytes = sizes
            elif n != self.n:
                raise errors.DimensionMismatch(
                    f"{where}: columns have different lengths ({c.name!r} has {n} rows, "
                    f"{cols[0].name!r} has {self.n})")
            else:
                self.row_bytes = self.row_bytes + sizes
        if self.n < 0:
            self.n = 0
            self.row_bytes = np.zeros(0, dtype=np.int64)

    @staticmethod
    def _cast(arr: np.ndarray, c: Column, where: str) -> np.ndarray:
        assert c.dtype is not None
        if arr.dtype == c.dtype:
            return arr
        if not np.can_cast(arr.dtype, c.dtype, casting="same_kind") and not (
                arr.dtype.kind in "biu" and c.dtype.kind in "iuf"):
            raise errors.InvalidType(f"{where}: column {c.name!r} holds {c.dtype}; "
                                     f"{arr.dtype} does not cast to it")
        if arr.size and c.dtype.kind in "iu" and arr.dtype.kind in "iub":
            info = np.iinfo(c.dtype)
            if arr.min() < info.min or arr.max() > info.max:
                raise errors.InvalidArgument(f"{where}: column {c.name!r}: values of "
                                             f"{arr.dtype} do not fit in {c.dtype}")
        return arr.astype(c.dtype)

    @staticmethod
    def _bytes(c: Column, x: Any, where: str) -> bytes:
        if c.kind == "bytes":
            if not isinstance(x, (bytes, bytearray, memoryview)):
                raise errors.InvalidType(f"{where}: column {c.name!r} holds bytes, got "
                                         f"{type(x).__name__}")
            return bytes(x)
        if c.kind == "text":
            if not isinstance(x, str):
                raise errors.InvalidType(f"{where}: column {c.name!r} holds str, got "
                                         f"{type(x).__name__}")
            return x.encode("utf-8", "surrogatepass")
        try:
            return json.dumps(x, ensure_ascii=False, allow_nan=False,
                              default=_json_default).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise errors.InvalidType(f"{where}: column {c.name!r} holds JSON values: {e}") \
                from None

    def sections(self, cols: list[Column], lo: int,
                 hi: int) -> list[tuple[str, str, np.ndarray, int]]:
        """Rows [lo, hi) of every column as (column, section, flat bytes,
        CRC segment shift)."""
        out = []
        for c in cols:
            d = self.data[c.name]
            if c.kind == "fixed":
                out.append((c.name, "values", _flat(d[lo:hi]),
                            _seg_shift(d[:1].nbytes if len(d) else 0)))
            elif c.kind == "ragged":
                arrs, lengths = d
                vals = (np.concatenate(arrs[lo:hi]) if hi > lo else
                        np.empty((0, *c.shape), c.dtype))
                out.append((c.name, "offsets", _flat(_offsets(lengths[lo:hi])), _SEG_SHIFT))
                out.append((c.name, "values", _flat(vals), _SEG_SHIFT))
            else:
                part = d[lo:hi]
                out.append((c.name, "offsets", _flat(_offsets(
                    np.array([len(b) for b in part], dtype=np.int64))), _SEG_SHIFT))
                out.append((c.name, "values", np.frombuffer(b"".join(part), dtype=np.uint8),
                            _SEG_SHIFT))
        return out


def _as_columns(batch: Any) -> Any:
    """A pandas DataFrame or a pyarrow Table/RecordBatch as ``{column: values}``."""
    if isinstance(batch, Mapping):
        return batch
    if hasattr(batch, "to_batches") or (hasattr(batch, "schema") and hasattr(batch, "columns")
                                        and hasattr(batch, "num_rows")):
        import pyarrow as pa

        table = batch if hasattr(batch, "to_batches") else pa.Table.from_batches([batch])
        out: dict[str, Any] = {}
        for name in table.schema.names:
            out[name] = _from_arrow_array(pa, table.column(name).combine_chunks())
        return out
    if hasattr(batch, "columns") and hasattr(batch, "to_numpy") and hasattr(batch, "iloc"):
        out = {}
        for name in batch.columns:
            col = batch[name]
            out[str(name)] = col.to_numpy() if col.dtype.kind in "biuf" else col.tolist()
        return out
    return batch


def _nbytes(batch: Any) -> int:
    """About how many bytes a batch of columns holds."""
    if not isinstance(batch, Mapping):
        return 0
    total = 0
    for v in batch.values():
        if isinstance(v, np.ndarray):
            total += v.nbytes
        elif isinstance(v, (list, tuple)):
            for x in v:
                total += (x.nbytes if isinstance(x, np.ndarray) else
                          len(x) if isinstance(x, (bytes, str)) else 16) + 8
    return total


def _concat(batches: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Batches of the same columns as one (arrays concatenated, lists joined)."""
    out: dict[str, Any] = {}
    for k in batches[0]:
        vals = [b.get(k) for b in batches]
        if any(v is None for v in vals):
            return batches  # type: ignore[return-value]  # append names the problem
        if all(isinstance(v, np.ndarray) for v in vals):
            try:
                out[k] = np.concatenate(vals)
                continue
            except ValueError:
                pass
        out[k] = [x for v in vals for x in (list(v) if not isinstance(v, np.ndarray) or
                                            v.ndim else [v])]
    if any(set(b) != set(batches[0]) for b in batches):
        # Mismatched columns: append them one by one, so the error names the batch.
        raise errors.InvalidArgument("extend: every batch must have the same columns "
                                     f"({sorted(batches[0])}); got {[sorted(b) for b in batches if set(b) != set(batches[0])][0]}")
    return out


def _rows(v: Any, name: str, where: str) -> list[Any]:
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable) or isinstance(v, Mapping):
        raise errors.InvalidType(f"{where}: column {name!r}: give a list of values, one per "
                                 f"row, not {type(v).__name__}")
    return list(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


# ------------------------------------------------------------------ Dataset
class Dataset:
    """A named table of columns in a synadb file.

    Args:
        path: the database file (created if missing), or an open
            :class:`~synadb.SynaDB` to share (it is not closed by ``close()``).
        name: the dataset's name in the file (several may live in one file).
        read_only: open for reading (data loader workers do this).
        schema: optional ``{column: kind}`` for columns whose kind a first
            append cannot tell (a list of equal-length arrays is ``ragged``;
            an ndarray is ``fixed``; a list of all-None is ambiguous).
        sync_on_write: fsync every append before it returns (power-loss
            safe at once).  By default an append survives a killed process as
            soon as it returns and a power cut once synced: by ``sync()``,
            ``close()``, or the checkpoint written every 256 MB.  Either way
            a crash never keeps part of an append.
        progress: tqdm bars on long appends and exports (only in a terminal).

    Raises:
        InvalidArgument: a bad name.
        KeyNotFound: ``read_only`` and no dataset of that name.
    """

    def __init__(self, path: str | os.PathLike[str] | SynaDB, name: str = "train", *,
                 read_only: bool = False, schema: Mapping[str, str] | None = None,
                 sync_on_write: bool = False, progress: bool = True) -> None:
        if not isinstance(name, str) or not name or "#" in name or any(c in name for c in "*?["):
            raise errors.InvalidArgument(
                f"a dataset name is a non-empty str without '#' or glob characters: {name!r}")
        if schema is not None:
            for col, kind in schema.items():
                if kind not in KINDS:
                    raise errors.InvalidArgument(f"schema: column {col!r} has kind {kind!r}; "
                                                 f"kinds are {', '.join(KINDS)}")
        if isinstance(path, SynaDB):
            self.db = path
            self._owns = False
        else:
            self.db = SynaDB(path, config=DbConfig(read_only=read_only, enable_compression=False,
                                                   progress=progress))
            self._owns = True
        self.path = self.db.path
        self.name = name
        self.read_only = read_only
        self.progress = progress
        self.sync_on_write = sync_on_write
        self._schema = dict(schema or {})
        self._key = _MANIFEST + name
        self._where = f"dataset {name!r} in {self.path!r}"
        self._cols: list[Column] = []
        self._chunks: list[_Chunk | None] = []
        self._counts: list[int] = []
        self._gen: str | None = None
        self._mapped: dict[str, Any] = {}
        self._starts = np.zeros(0, dtype=np.int64)
        self._rows = 0
        self._seen = b""
        self._ckpt_at = self.db.storage.log_end()
        try:
            self.refresh()
            if read_only and self._seen is None:
                raise errors.KeyNotFound(f"no dataset {name!r} in {self.path!r} (it has "
                                         f"{_names(self.db) or 'none'})")
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------- lifecycle
    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (unless it was handed in as an open SynaDB)."""
        self._chunks = []
        if self._owns and not self.db.closed:
            self.db.close()

    def __getstate__(self) -> dict[str, Any]:
        # A dataset crosses into worker processes as its recipe: each reopens.
        if not self._owns:
            raise errors.InvalidArgument("a Dataset over a shared SynaDB handle cannot be "
                                         "pickled; open it by path")
        return {"path": self.path, "name": self.name, "read_only": True,
                "progress": False, "schema": self._schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["name"], read_only=state["read_only"],  # type: ignore[misc]
                      schema=state["schema"], progress=state["progress"])

    def __repr__(self) -> str:
        cols = ", ".join(f"{c.name}: {_describe(c)}" for c in self._cols)
        return f"Dataset({self.path!r}, {self.name!r}; {self._rows} rows; {cols})"

    # ------------------------------------------------------------ metadata
    def refresh(self) -> int:
        """Catch up with rows other handles appended; returns the row count.

        Reads the manifest only: a chunk's head is read when a row of it is
        first read, so opening costs the same at any size."""
        raw = self.db.get_bytes(self._key)
        if raw == self._seen:
            return self._rows
        if raw is None:
            self._seen = None
            self._cols, self._chunks, self._rows, self._gen = [], [], 0, None
            self._counts = []
            self._starts = np.zeros(0, dtype=np.int64)
            return 0
        try:
            m = json.loads(raw)
            cols = [Column.from_json(c, self._where) for c in m["columns"]]
            counts = [int(c) for c in m["counts"]]
            rows, gen = int(m["rows"]), m["gen"]
            if any(c < 0 for c in counts):
                raise ValueError("a negative row count")
        except (ValueError, KeyError, TypeError) as e:
            raise errors.CorruptDatabase(f"{self._where}: the manifest is damaged ({e})") from None
        if sum(counts) != rows:
            raise errors.CorruptDatabase(f"{self._where}: the manifest's chunks hold "
                                         f"{sum(counts)} rows, it says {rows}")
        if cols != self._cols or gen != self._gen or len(counts) < len(self._chunks):
            self._chunks = []  # replaced (cleared and written again): start over
        self._chunks.extend([None] * (len(counts) - len(self._chunks)))
        self._counts = counts
        self._starts = np.zeros(len(counts), dtype=np.int64)
        if counts:
            np.cumsum(counts[:-1], out=self._starts[1:])
        self._cols, self._gen, self._rows, self._seen = cols, gen, rows, raw
        return rows

    def _chunk(self, i: int) -> _Chunk:
        """Chunk ``i``, its head read (and checked) on first use."""
        ch = self._chunks[i]
        if ch is not None:
            return ch
        key = f"{self._key}#{i}"
        storage = self.db.storage
        with storage.locked():
            view = storage.value_view(key, refresh=False, check=False)
        if view is None:
            raise errors.CorruptDatabase(f"{self._where}: chunk {key!r} is missing")
        try:
            ch = _Chunk(key, int(self._starts[i]), view, self._cols, self._where, self._gen,
                        self._counts[i])
        except _Stale:
            raise errors.InvalidArgument(
                f"{self._where} was cleared and written again since this handle read it; "
                "call refresh() (or reopen) and index it again") from None
        self._chunks[i] = ch
        return ch

    def __len__(self) -> int:
        return self.refresh()

    @property
    def num_rows(self) -> int:
        return len(self)

    @property
    def columns(self) -> dict[str, Column]:
        """The columns, by name, in the order of the first append."""
        self.refresh()
        return {c.name: c for c in self._cols}

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self._cols]

    def info(self) -> dict[str, Any]:
        """Rows, chunks, bytes and columns."""
        self.refresh()
        return {"name": self.name, "rows": self._rows, "chunks": len(self._chunks),
                "nbytes": sum(len(s.buf) for i in range(len(self._chunks))
                              for s in self._chunk(i).secs.values()),
                "columns": {c.name: _describe(c) for c in self._cols}}

    # -------------------------------------------------------------- write
    def append(self, batch: Mapping[str, Any]) -> int:
        """Append rows given as ``{column: values}``; returns how many.

        All or nothing: other handles see every row of it or none, and a
        crash leaves none.  The first append fixes the columns; later ones
        give the same columns (values are cast within their kind: int rows
        into a float column, never float into int).

        Raises:
            DimensionMismatch: columns of different lengths, or a row shape
                that differs from the column's.
            InvalidType: a value of the wrong kind or dtype.
            InvalidArgument: columns missing or new.
            ReadOnlyError: a read-only dataset.
        """
        with self.db.batch(sync=self.sync_on_write):
            n = self._append(batch)
        self._after_commit()
        return n

    def extend(self, batches: Iterable[Mapping[str, Any]]) -> int:
        """Append every batch of ``batches`` (e.g. a generator); returns the rows.

        Memory stays bounded: batches are gathered up to about 128 MB, then
        written and committed as one append (so a crash keeps the appends
        before it), and the next ones are drawn.
        """
        total = 0
        bar = _bar(None, f"append {self.name}", self.progress, unit="rows")
        pending: list[Mapping[str, Any]] = []
        size = 0

        def flush() -> None:
            nonlocal total, size
            n = self.append(pending[0] if len(pending) == 1 else _concat(pending))
            pending.clear()
            size = 0
            total += n
            if bar is not None:
                bar.update(n)

        try:
            for b in batches:
                # Small batches are gathered into one append of about a
                # chunk: few chunks keep reads fast and the manifest small.
                b = _as_columns(b)
                pending.append(b)
                size += _nbytes(b)
                if size >= _CHUNK_BYTES // 2:
                    flush()
            if pending:
                flush()
        finally:
            if bar is not None:
                bar.close()
        return total

    def _append(self, batch: Mapping[str, Any]) -> int:
        if self.read_only:
            raise errors.ReadOnlyError(f"{self._where} is open read-only")
        batch = _as_columns(batch)
        if not isinstance(batch, Mapping) or not batch:
            raise errors.InvalidType(f"append takes a non-empty dict of columns, got "
                                     f"{type(batch).__name__}")
        for k in batch:
            if not isinstance(k, str) or not k or "/" in k:
                raise errors.InvalidArgument(f"a column name is a non-empty str without '/', "
                                             f"got {k!r}")
        self.refresh()
        cols = self._cols
        if not cols:
            cols = [_infer(k, v, self._schema.get(k)) for k, v in batch.items()]
        else:
            have, got = {c.name for c in cols}, set(batch)
            if have != got:
                missing, extra = sorted(have - got), sorted(got - have)
                raise errors.InvalidArgument(
                    f"{self._where} has columns {sorted(have)}; this batch "
                    + (f"lacks {missing}" if missing else "") + (" and " if missing and extra
                                                                 else "")
                    + (f"adds {extra}" if extra else ""))
        enc = _Encoded(cols, batch, self._where)
        n = enc.n
        if n == 0 and self._cols:
            return 0
        # Chunks of about _CHUNK_BYTES, whole rows, at least one row each.
        bounds = [0]
        if n:
            cum = np.cumsum(enc.row_bytes)
            while bounds[-1] < n:
                lo = bounds[-1]
                base = cum[lo - 1] if lo else 0
                hi = int(np.searchsorted(cum, base + _CHUNK_BYTES, side="right"))
                bounds.append(min(n, max(hi, lo + 1)))
        storage = self.db.storage
        nchunks = len(self._chunks)
        gen = self._gen or os.urandom(8).hex()
        pieces = list(zip(bounds, bounds[1:]))
        big = int(enc.row_bytes.sum()) > (_CHUNK_BYTES * 2)
        for i, (lo, hi) in enumerate(_bar(pieces, f"append {self.name}",
                                         self.progress and big)):
            key = f"{self._key}#{nchunks + i}"
            parts = _encode(hi - lo, enc.sections(cols, lo, hi), gen, storage.value_offset(key))
            # Latest-only: if the name is cleared and written again, compaction
            # reclaims the old chunks whatever history it keeps for other keys.
            storage.put_blob_parts(key, parts, keep_history=False)
        manifest = {"version": 1, "gen": gen, "columns": [c.to_json() for c in cols],
                    "rows": self._rows + n, "counts": self._counts + [hi - lo for lo, hi in pieces]}
        storage.put_blobs([(self._key, json.dumps(manifest, separators=(",", ":")).encode())],
                          keep_history=False)
        return n

    def _after_commit(self) -> None:
        end = self.db.storage.log_end()
        if end - self._ckpt_at >= _CHECKPOINT_BYTES:
            self.db.checkpoint()
            self._ckpt_at = self.db.storage.log_end()

    def sync(self) -> None:
        """fsync now: every append so far survives power loss."""
        self.db.sync()

    def clear(self) -> None:
        """Delete every row and the columns (all or nothing)."""
        if self.read_only:
            raise errors.ReadOnlyError(f"{self._where} is open read-only")
        self.refresh()
        with self.db.batch():
            for i in range(len(self._chunks)):
                self.db.delete(f"{self._key}#{i}")
            self.db.delete(self._key)
        self.refresh()

    # --------------------------------------------------------------- read
    def _locate(self, idx: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._starts, idx, side="right") - 1

    def _indices(self, indices: Any) -> np.ndarray:
        n = self._rows
        if isinstance(indices, slice):
            return np.arange(*indices.indices(n), dtype=np.int64)
        if isinstance(indices, range):
            raw = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
        else:
            if isinstance(indices, (str, bytes, Mapping)) or not (
                    isinstance(indices, (np.ndarray, Iterable)) or hasattr(indices, "__array__")):
                raise errors.InvalidType(f"row indices are a sequence of ints, got {indices!r:.80}")
            try:
                raw = np.asarray(indices if not isinstance(indices, Iterator) else list(indices))
            except (TypeError, ValueError) as e:
                raise errors.InvalidType(f"row indices are a sequence of ints: {e}") from None
        if raw.size == 0:
            return np.empty(0, dtype=np.int64)
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise errors.InvalidType(f"row indices are a 1-d sequence of ints, got "
                                     f"{raw.dtype}{list(raw.shape)}")
        raw = raw.astype(np.int64, copy=False)
        raw = np.where(raw < 0, raw + n, raw)
        if raw.min() < 0 or raw.max() >= n:
            bad = int(raw.min() if raw.min() < 0 else raw.max())
            raise IndexError(f"row {bad} is out of range: {self._where} has {n} rows")
        return raw

    def take(self, indices: Any, columns: Sequence[str] | None = None, *,
             ragged: str = "list", decode: bool = True) -> dict[str, Any]:
        """Rows at ``indices`` (ints, a range or a slice) as ``{column: values}``.

        ``fixed`` columns come as one array ``(k, *shape)``; ``ragged`` as a
        list of arrays (``ragged="flat"``: one ``(values, offsets)`` pair,
        row ``i`` being ``values[offsets[i]:offsets[i+1]]``, as Arrow lists
        and ``tf.RaggedTensor.from_row_splits`` take them);
        ``bytes``/``text``/``json`` as lists (``decode=False``: the stored
        UTF-8 bytes of text and JSON).  Only the columns asked for are read.
        """
        if ragged not in ("list", "flat"):
            raise errors.InvalidArgument(f"ragged is 'list' or 'flat', got {ragged!r}")
        if isinstance(indices, slice):
            self.refresh()  # "to the end" means the rows there are now
        try:
            idx = self._indices(indices)
        except IndexError:
            # Past the rows this handle knows: rows appended since, maybe.
            before = self._rows
            if self.refresh() == before:
                raise
            idx = self._indices(indices)
        cols = self._pick(columns)
        out: dict[str, Any] = {}
        order, groups = self._groups(idx)
        for c in cols:
            v = self._gather(c, idx, order, groups, decode)
            if c.kind == "ragged" and ragged == "flat":
                assert c.dtype is not None
                v = (np.concatenate(v) if v else np.empty((0, *c.shape), c.dtype),
                     _offsets(np.array([len(a) for a in v], dtype=np.int64)))
            out[c.name] = v
        return out

    def _pick(self, columns: Sequence[str] | None) -> list[Column]:
        if columns is None:
            return self._cols
        if isinstance(columns, str):
            columns = [columns]
        byname = {c.name: c for c in self._cols}
        missing = [c for c in columns if c not in byname]
        if missing:
            raise errors.KeyNotFound(f"{self._where} has no column {missing[0]!r} (it has "
                                     f"{list(byname)})")
        return [byname[c] for c in columns]

    def _groups(self, idx: np.ndarray) -> tuple[np.ndarray | None, list[tuple[int, np.ndarray]]]:
        """Group row numbers by chunk: (order or None, [(chunk, positions in idx)])."""
        if not len(idx):
            return None, []
        which = self._locate(idx)
        if len(self._chunks) == 1 or which[0] == which[-1] and (which == which[0]).all():
            return None, [(int(which[0]), np.arange(len(idx)))]
        order = np.argsort(which, kind="stable")
        w = which[order]
        cuts = np.flatnonzero(np.diff(w)) + 1
        groups = []
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(idx)]):
            groups.append((int(w[a]), order[a:b]))
        return order, groups

    def _gather(self, c: Column, idx: np.ndarray, order: Any,
                groups: list[tuple[int, np.ndarray]], decode: bool = True) -> Any:
        if c.kind == "fixed":
            assert c.dtype is not None
            out = np.empty((len(idx), *c.shape), dtype=c.dtype)
            width = c.dtype.itemsize * math.prod(c.shape)
            if len(groups) == 1:
                ci, _ = groups[0]
                ch = self._chunk(ci)
                local = idx - ch.start
                ch.secs[(c.name, "values")].check_rows(local, width)
                return ch.typed(c, "values", c.dtype, c.shape)[local]  # one gather
            for ci, pos in groups:
                ch = self._chunk(ci)
                sec = ch.secs[(c.name, "values")]
                if sec.left:
                    sec.check_rows(idx[pos] - ch.start, width)
            got = self._gather_mapped(c, idx, groups)
            if got is not None:
                return got
            for ci, pos in groups:
                ch = self._chunk(ci)
                out[pos] = ch.typed(c, "values", c.dtype, c.shape)[idx[pos] - ch.start]
            return out
        res: list[Any] = [None] * len(idx)
        for ci, pos in groups:
            ch = self._chunk(ci)
            local = idx[pos] - ch.start
            osec = ch.secs[(c.name, "offsets")]
            osec.check_rows(local, 8)
            osec.check_rows(local + 1, 8)
            offs = osec.buf.view("<i8")
            lo, hi = offs[local], offs[local + 1]
            vsec = ch.secs[(c.name, "values")]
            if c.kind == "ragged":
                assert c.dtype is not None
                width = c.dtype.itemsize * math.prod(c.shape)
                vals = ch.typed(c, "values", c.dtype, c.shape)
                if vsec.left:
                    for a, b in zip(lo.tolist(), hi.tolist()):
                        vsec.check_range(a * width, b * width)
                lens = hi - lo
                # One gather for the group, then views of it per row.
                starts = np.zeros(len(lens), dtype=np.int64)
                np.cumsum(lens[:-1], out=starts[1:])
                flat = np.repeat(lo - starts, lens) + np.arange(int(lens.sum()))
                pieces = np.split(vals[flat], starts[1:])
                for p, piece in zip(pos.tolist(), pieces):
                    res[p] = piece
            else:
                buf = vsec.buf
                for p, a, b in zip(pos.tolist(), lo.tolist(), hi.tolist()):
                    vsec.check_range(a, b)
                    raw = buf[a:b].tobytes()
                    if c.kind == "bytes" or not decode:
                        res[p] = raw
                    elif c.kind == "text":
                        res[p] = raw.decode("utf-8", "surrogatepass")
                    else:
                        res[p] = json.loads(raw)
        return res

    def _gather_mapped(self, c: Column, idx: np.ndarray,
                       groups: list[tuple[int, np.ndarray]]) -> np.ndarray | None:
        """Rows of a fixed column from several chunks in one numpy gather.

        Every section starts 64-byte aligned in the file, so each row sits
        a whole number of elements from the start of the file's map: the
        map seen as overlapping rows (one per element offset) is indexed
        once, one copy per row, instead of a gather and a scatter per chunk.
        None when the chunks were read from different maps (the file grew
        in between) or a section is not aligned (written before alignment).
        """
        assert c.dtype is not None
        dt = c.dtype.newbyteorder("<")
        isz = dt.itemsize
        elems = max(1, math.prod(c.shape))
        chunks = [self._chunk(ci) for ci, _ in groups]
        mapobj = chunks[0].mapobj
        bases = np.empty(len(self._chunks), dtype=np.int64)
        key = (id(mapobj), dt.str, elems)
        cached = self._mapped.get(c.name)
        if cached is None or cached[0] != key:
            whole = np.frombuffer(mapobj, dtype=np.uint8)
            n = len(whole) // isz
            flat = whole[:n * isz].view(dt)
            rows = np.lib.stride_tricks.as_strided(
                flat, shape=(max(0, n - elems + 1), elems), strides=(isz, isz),
                writeable=False)
            cached = self._mapped[c.name] = (key, rows, mapobj, whole.ctypes.data)
        _, rows, _, origin = cached
        for (ci, _), ch in zip(groups, chunks):
            if ch.mapobj is not mapobj:
                return None
            at = ch.where_in_map.get(c.name)
            if at is None:
                off = ch.secs[(c.name, "values")].buf.ctypes.data - origin
                if off % isz:
                    return None
                at = ch.where_in_map[c.name] = off // isz
            bases[ci] = at
        which = self._locate(idx)
        got = rows[bases[which] + (idx - self._starts[which]) * elems]
        return got.reshape(len(idx), *c.shape)

    def __getitem__(self, key: Any) -> Any:
        """``ds[i]`` a row as a dict; ``ds[a:b]`` rows as a dict of columns;
        ``ds["x"]`` the column (all rows, as :meth:`take` gives them)."""
        if isinstance(key, str):
            self.refresh()
            return self.take(slice(None), columns=[key])[key]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            got = self.take([int(key)])
            return {k: v[0] for k, v in got.items()}
        return self.take(key)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        return self.take(indices)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for b in self.iter_batches(1024):
            k = len(next(iter(b.values()))) if b else 0
            for i in range(k):
                yield {name: v[i] for name, v in b.items()}

    def iter_batches(self, batch_size: int = 1024, columns: Sequence[str] | None = None, *,
                     shuffle: bool = False, seed: int | None = None,
                     drop_last: bool = False) -> Iterator[dict[str, Any]]:
        """Batches of ``batch_size`` rows as ``{column: values}``, in order or
        shuffled (a permutation seeded by ``seed``) over the rows there are now."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise errors.InvalidArgument(f"batch_size must be a positive int, got {batch_size!r}")
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else None
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            if drop_last and e - s < batch_size:
                return
            yield self.take(order[s:e] if order is not None else range(s, e), columns)

    def verify(self) -> int:
        """Check every segment's CRC now; returns the bytes checked.

        Raises:
            ChecksumError: a segment is damaged (naming chunk and column).
        """
        self.refresh()
        total = 0
        for i in range(len(self._chunks)):
            for s in self._chunk(i).secs.values():
                s.check_all()
                total += len(s.buf)
        return total

    # -------------------------------------------------------------- export
    def to_parquet(self, directory: str | os.PathLike[str], rows_per_file: int = 1_000_000,
                   *, batch_rows: int = 65_536) -> list[str]:
        """Write the rows as sharded Parquet files ``part-00000.parquet``, ...

        ``fixed`` columns become fixed-size lists (flattened row-major; the
        shape is in the schema metadata), ``ragged`` ones lists, ``bytes``
        binary, ``text`` string and ``json`` JSON text, so pyarrow, DuckDB,
        Spark, Ray Data and HF ``datasets`` read them.  Each file is written
        beside its name and renamed into place when complete.
        """
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise errors.MissingDependency("pyarrow", "arrow", "Dataset.to_parquet") from None
        if isinstance(rows_per_file, bool) or not isinstance(rows_per_file, int) or \
                rows_per_file < 1:
            raise errors.InvalidArgument(f"rows_per_file must be a positive int, got "
                                         f"{rows_per_file!r}")
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        n = len(self)
        cols = self._cols
        meta = {b"synadb.dataset": json.dumps(
            {"name": self.name, "columns": [c.to_json() for c in cols]}).encode()}
        files = []
        starts = list(range(0, n, rows_per_file)) or [0]
        bar = _bar(None, f"to_parquet {self.name}", self.progress and n > 100_000,
                   total=n, unit="rows")
        try:
            for f, s in enumerate(starts):
                e = min(n, s + rows_per_file)
                path = os.path.join(directory, f"part-{f:05d}.parquet")
                with atomic_path(path) as tmp:
                    writer = None
                    try:
                        for b in range(s, max(e, s + 1), batch_rows):
                            got = self.take(range(b, min(e, b + batch_rows)))
                            table = pa.table({c.name: _arrow(pa, c, got[c.name]) for c in cols})
                            table = table.replace_schema_metadata(meta)
                            if writer is None:
                                writer = pq.ParquetWriter(tmp, table.schema)
                            writer.write_table(table)
                            if bar is not None:
                                bar.update(len(table))
                    finally:
                        if writer is not None:
                            writer.close()
                files.append(path)
        finally:
            if bar is not None:
                bar.close()
        return files

    # ------------------------------------------------------------- import
    @classmethod
    def from_arrow(cls, table: Any, path: str | os.PathLike[str] | SynaDB,
                   name: str = "train", *, batch_rows: int = 8192,
                   progress: bool = True) -> "Dataset":
        """A dataset holding the rows of a pyarrow ``Table`` (or anything with
        ``to_batches``): numeric columns become ``fixed``, (nested)
        fixed-size lists ``fixed`` arrays, lists of numbers ``ragged``,
        binary ``bytes``, strings ``text``, and the rest ``json``.  An image
        struct with a ``bytes`` field (HF's ``Image``) becomes ``bytes``."""
        ds = cls(path, name, progress=progress)
        try:
            if ds._rows:
                raise errors.InvalidArgument(f"{ds._where} already has rows; import into a "
                                             "new name, or clear() it first")
            batches = table.to_batches(max_chunksize=batch_rows)
            ds.extend(_from_record_batch(b) for b in batches)
        except BaseException:
            ds.close()
            raise
        return ds

    @classmethod
    def from_hf(cls, hf_dataset: Any, path: str | os.PathLike[str] | SynaDB = "datasets.db",
                name: str | None = None, *, batch_rows: int = 8192,
                progress: bool = True) -> "Dataset":
        """A dataset holding a Hugging Face ``datasets.Dataset`` (its Arrow
        table, batch by batch; see :meth:`from_arrow`).  ``name`` defaults to
        the HF split (or ``"train"``)."""
        data = getattr(hf_dataset, "data", None)
        if data is None or not hasattr(hf_dataset, "features"):
            raise errors.InvalidType(f"from_hf takes a datasets.Dataset, got "
                                     f"{type(hf_dataset).__name__} (for a DatasetDict, "
                                     "pick a split: dd['train'])")
        if name is None:
            split = getattr(hf_dataset, "split", None)
            name = str(split) if split else "train"
        # Flatten HF's index mapping (select/shuffle) into a plain table first.
        if getattr(hf_dataset, "_indices", None) is not None:
            hf_dataset = hf_dataset.flatten_indices()
            data = hf_dataset.data
        table = getattr(data, "table", data)
        return cls.from_arrow(table, path, name, batch_rows=batch_rows, progress=progress)


# --------------------------------------------------------------- arrow glue
def _arrow(pa: Any, c: Column, values: Any) -> Any:
    if c.kind == "fixed":
        arr = np.asarray(values)
        if not c.shape:
            return pa.array(arr)
        width = math.prod(c.shape)
        return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), width)
    if c.kind == "ragged":
        assert c.dtype is not None
        lengths = np.array([len(v) for v in values], dtype=np.int64)
        width = math.prod(c.shape)
        flat = (np.concatenate([np.asarray(v).reshape(-1) for v in values]) if values
                else np.empty(0, c.dtype))
        inner = pa.array(flat)
        if c.shape:
            inner = pa.FixedSizeListArray.from_arrays(inner, width)
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths).astype(np.int32)
                                                 if lengths.sum() < 2**31 else _offsets(lengths)),
                                        inner)
    if c.kind == "bytes":
        return pa.array(values, type=pa.binary())
    if c.kind == "text":
        return pa.array(values, type=pa.string())
    return pa.array([json.dumps(v, ensure_ascii=False) for v in values], type=pa.string())


def _from_record_batch(batch: Any) -> dict[str, Any]:
    import pyarrow as pa

    out: dict[str, Any] = {}
    for name, col in zip(batch.schema.names, batch.columns):
        out[name] = _from_arrow_array(pa, col)
    return out


def _from_arrow_array(pa: Any, col: Any) -> Any:
    t = col.type
    if pa.types.is_fixed_size_list(t):
        shape = []
        inner = col
        while pa.types.is_fixed_size_list(inner.type):
            shape.append(inner.type.list_size)
            inner = inner.flatten()
        if _arrow_numeric(pa, inner.type) and inner.null_count == 0:
            return inner.to_numpy(zero_copy_only=False).reshape(len(col), *shape)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and col.null_count == 0:
        vt = t.value_type
        if _arrow_numeric(pa, vt) or (pa.types.is_fixed_size_list(vt)
                                      and _arrow_numeric(pa, vt.value_type)):
            offs = col.offsets.to_numpy()
            vals = _from_arrow_array(pa, col.flatten()) if pa.types.is_fixed_size_list(vt) \
                else col.flatten().to_numpy(zero_copy_only=False)
            base = offs[0]
            return [vals[a - base:b - base] for a, b in zip(offs[:-1], offs[1:])]
    if _arrow_numeric(pa, t) and col.null_count == 0:
        return col.to_numpy(zero_copy_only=False)
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t)) and col.null_count == 0:
        return col.to_pylist()
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and col.null_count == 0:
        return col.to_pylist()
    if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 and col.null_count == 0:
        field = col.field("bytes")
        if pa.types.is_binary(field.type) and field.null_count == 0:
            return field.to_pylist()  # HF's Image/Audio: the encoded file
    return _json_safe(col.to_pylist())


def _arrow_numeric(pa: Any, t: Any) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _json_safe(values: list[Any]) -> list[Any]:
    def fix(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray)):
            return v.decode("latin-1")
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if hasattr(v, "isoformat"):
            return v.isoformat()
        return v
    return [fix(v) for v in values]


def _describe(c: Column) -> str:
    if c.kind == "fixed":
        return f"{c.dtype}{list(c.shape)}"
    if c.kind == "ragged":
        return f"ragged {c.dtype}[*{''.join(f', {s}' for s in c.shape)}]"
    return c.kind


def _bar(it: Any, desc: str, enabled: bool, total: int | None = None, unit: str = "it") -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    if it is None:
        return tqdm(desc=desc, total=total, delay=0.5, disable=None, leave=False, unit=unit)
    return tqdm(it, desc=desc, total=total, delay=0.5, disable=None, leave=False, unit=unit)
