"""TensorEngine: arrays stored as typed binary blocks, read back bit-exact.

Use it for training data and weights: ``put_tensor("train/", X)`` stores the
rows of ``X`` so that they read back as ``train/0000``, ``train/0001``, ...
(``get_tensor("train/*")``), but on disk they are a few large blocks, not a
key per row and never a key per element.  Rows are read through the file's
memory map, so a dataset can index rows without loading the whole array.

>>> import tempfile, os, numpy as np
>>> engine = TensorEngine(os.path.join(tempfile.mkdtemp(), "t.db"))
>>> engine.put_tensor("train/", np.arange(6, dtype=np.int64).reshape(3, 2))
3
>>> engine.keys("train/*")
['train/0000', 'train/0001', 'train/0002']
>>> engine.get_tensor("train/000[12]").tolist()
[[2, 3], [4, 5]]
>>> engine.close()

Layout: a manifest (JSON text) per tensor under ``__tensor__/<prefix>``
naming its dtype, shape and blocks; each block is a bytes value under
``__tensor__/<prefix>#<n>`` holding a 64-byte typed header (dtype, shape)
and the rows in C order, little-endian.  Re-putting a prefix replaces the
whole tensor in one all-or-nothing batch.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from . import _convert, errors
from .db import DbConfig, SynaDB
from .engine.files import atomic_path

__all__ = ["TensorEngine", "RowView", "RowIndexError", "DTYPES"]

DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "uint32", "uint64", "bool")
_CODES = {name: i + 1 for i, name in enumerate(DTYPES)}
_MANIFEST = "__tensor__/"
_BLOCK_HEAD = struct.Struct("<4sBB2x")  # magic, dtype code, ndim; then ndim × u64 shape
_BLOCK_MAGIC = b"STB1"
_HEAD_BYTES = 64
# Rows per block: about this many bytes.  Few, large blocks make a shuffled
# batch one fancy index per block; the CRC of a block is checked once per
# handle, and a record's value is limited to 4 GiB.
_BLOCK_BYTES = 256 << 20
# Superseded blocks at least this large leave the page cache when replaced.
_RELEASE_MIN_BYTES = 1 << 20


def _dtype(value: Any, what: str) -> np.dtype:
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError) as e:
        raise errors.InvalidType(f"{what}: {value!r} is not a numpy dtype") from e
    if dt.name not in _CODES:
        raise errors.InvalidArgument(
            f"{what}: dtype {dt.name} is not supported; use one of {', '.join(DTYPES)}")
    return dt


class TensorEngine:
    """Tensors in one synadb file.

    Args:
        path: the database file.
        read_only: open for reading (dataset workers do this).
        progress: tqdm bars on large puts and gets.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False,
                 sync_on_write: bool = False, progress: bool = True,
                 lock_timeout_s: float | None = None) -> None:
        cfg = DbConfig(read_only=read_only, sync_on_write=sync_on_write,
                       enable_compression=False, progress=progress)
        if lock_timeout_s is not None:
            cfg.lock_timeout_s = lock_timeout_s
        self.db = SynaDB(path, config=cfg)
        self.path = self.db.path
        self.progress = progress

    def __enter__(self) -> "TensorEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ manifests
    def _manifests(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key in self.db.keys(_MANIFEST + "*"):
            if "#" in key:
                continue
            m = self._read_manifest(key)
            if m is not None:
                out[key[len(_MANIFEST):]] = m
        return out

    def _manifest(self, prefix: str) -> dict[str, Any] | None:
        return self._read_manifest(_MANIFEST + prefix)

    def _read_manifest(self, key: str) -> dict[str, Any] | None:
        """A manifest, checked: a record that passed its CRC but does not hold
        one (invalid UTF-8 or JSON, missing fields) is CorruptDatabase naming
        the key, never a raw decoding error."""
        try:
            raw = self.db.get_text(key)
        except errors.TypeMismatch as e:
            raise errors.CorruptDatabase(f"tensor manifest {key!r} in {self.path!r} is not "
                                         f"text: {e}") from e
        except UnicodeDecodeError as e:
            raise errors.CorruptDatabase(f"tensor manifest {key!r} in {self.path!r} is not "
                                         "valid UTF-8") from e
        if raw is None:
            return None
        try:
            m = json.loads(raw)
            ok = (isinstance(m, dict) and m.get("kind") in ("rows", "chunks")
                  and m.get("dtype") in _CODES and isinstance(m.get("shape"), list)
                  and len(m["shape"]) >= 1
                  and all(type(d) is int and d >= 0 for d in m["shape"])
                  and type(m.get("width")) is int and isinstance(m.get("blocks"), list)
                  and all(isinstance(b, list) and len(b) == 3 and isinstance(b[0], str)
                          and type(b[1]) is int and type(b[2]) is int for b in m["blocks"])
                  and (m["kind"] == "rows" or type(m.get("chunk_size")) is int))
        except (ValueError, RecursionError):
            ok = False
        if not ok:
            raise errors.CorruptDatabase(f"tensor manifest {key!r} in {self.path!r} is "
                                         "damaged (not a manifest's JSON)")
        return m

    @staticmethod
    def _names(prefix: str, m: dict[str, Any]) -> list[str]:
        if m["kind"] == "rows":
            w = m["width"]
            return [f"{prefix}{i:0{w}d}" for i in range(m["shape"][0])]
        return [f"{prefix}chunk_{i:04d}" for i in range(len(m["blocks"]))]

    def _select(self, pattern: str, kind: str) -> list[tuple[str, dict[str, Any], np.ndarray]]:
        """(prefix, manifest, indices) of the rows/chunks matching, in key order."""
        match = _glob(pattern)
        found: list[tuple[str, dict[str, Any], np.ndarray]] = []
        for prefix, m in sorted(self._manifests().items()):
            if m["kind"] != kind:
                continue
            count = m["shape"][0] if kind == "rows" else len(m["blocks"])
            if pattern == prefix + "*" and kind == "rows":
                found.append((prefix, m, np.arange(count)))  # common: no name is built
                continue
            else:
                names = self._names(prefix, m)
                idx = np.array([i for i, n in enumerate(names) if match(n)], dtype=np.int64)
            if len(idx):
                found.append((prefix, m, idx))
        if len(found) > 1 and any(a[0].startswith(b[0]) or b[0].startswith(a[0])
                                  for a, b in zip(found, found[1:])):
            # One prefix extends another ("a/" and "a/b/"): their names may
            # interleave, so order row by row.
            rows = sorted((self._names(p, m)[i], p, m, i) for p, m, idx in found
                          for i in idx.tolist())
            found = [(p, m, np.array([i])) for _, p, m, i in rows]
        return found

    def _gather(self, picks: list[tuple[str, dict[str, Any], np.ndarray]], kind: str,
                pattern: str) -> np.ndarray:
        if not picks:
            raise errors.KeyNotFound(f"no {'rows' if kind == 'rows' else 'chunks'} match "
                                     f"{pattern!r} in {self.path!r}")
        first = picks[0][1]
        dt = np.dtype(first["dtype"])
        row_shape = tuple(first["shape"][1:])
        for _, m, _ in picks:
            if np.dtype(m["dtype"]) != dt or tuple(m["shape"][1:]) != row_shape:
                raise errors.DimensionMismatch(
                    f"{pattern!r} matches tensors of different dtype or row shape "
                    f"({first['dtype']}{list(row_shape)} and {m['dtype']}{m['shape'][1:]})")
        if kind == "rows":
            total = sum(len(idx) for _, _, idx in picks)
        else:
            total = sum(m["blocks"][i][2] for _, m, idx in picks for i in idx.tolist())
        for prefix, m, _ in picks:
            covered = sum(b[2] for b in m["blocks"])
            if kind == "rows" and covered != m["shape"][0]:
                raise errors.CorruptDatabase(
                    f"tensor {prefix!r} in {self.path!r}: its blocks hold {covered} rows, "
                    f"its manifest says {m['shape'][0]}")
        out = np.empty((total, *row_shape), dtype=dt)
        pos = 0
        for _, m, idx in picks:
            if kind == "chunks":
                for i in idx.tolist():
                    key, _, rows = m["blocks"][i]
                    out[pos:pos + rows] = self._block(key, dt)
                    pos += rows
                continue
            for key, start, rows in m["blocks"]:
                lo, hi = np.searchsorted(idx, [start, start + rows]) if _sorted(idx) else (0, 0)
                if not _sorted(idx):
                    sel = np.flatnonzero((idx >= start) & (idx < start + rows))
                    if len(sel):
                        out[pos + sel] = self._block(key, dt)[idx[sel] - start]
                    continue
                if hi > lo:
                    part = idx[lo:hi] - start
                    blk = self._block(key, dt)
                    if len(part) == rows:
                        out[pos + lo:pos + hi] = blk  # a whole block: one copy
                    else:
                        out[pos + lo:pos + hi] = blk[part]
            pos += len(idx)
        return out

    # ------------------------------------------------------------------ put
    def put_tensor(self, prefix: str, tensor: Any, *, rows_per_block: int | None = None) -> int:
        """Store ``tensor``'s rows as ``prefix0000``, ``prefix0001``, ...; replaces the prefix.

        Returns the number of rows.

        Raises:
            DimensionMismatch: a 0-d array.
            InvalidArgument: an unsupported dtype or a bad prefix.
        """
        return self._put(prefix, tensor, "rows", rows_per_block)

    def put_tensor_chunked(self, prefix: str, tensor: Any, chunk_size: int = 10_000) -> int:
        """Store ``tensor`` as chunks of ``chunk_size`` rows: ``prefixchunk_0000``, ...

        Returns the number of chunks.
        """
        self._put(prefix, tensor, "chunks", _positive_int("chunk_size", chunk_size))
        m = self._manifest(prefix)
        return len(m["blocks"]) if m else 0

    def _put(self, prefix: str, tensor: Any, kind: str, rows_per_block: int | None) -> int:
        if not isinstance(prefix, str):
            raise errors.InvalidType(f"a tensor prefix is a str such as 'train/', got {prefix!r}")
        if not prefix or "#" in prefix or any(
                c in prefix for c in "*?["):
            raise errors.InvalidArgument(
                f"a tensor prefix is a non-empty str without '#' or glob characters: {prefix!r}")
        if rows_per_block is not None:
            rows_per_block = _positive_int("rows_per_block", rows_per_block)
        try:
            arr = np.asarray(tensor)
        except ValueError as e:  # ragged rows
            raise errors.DimensionMismatch(f"{prefix!r}: rows of different lengths: {e}") from None
        if arr.ndim == 0:
            raise errors.DimensionMismatch(f"{prefix!r}: a tensor needs at least one dimension")
        dt = _dtype(arr.dtype, prefix)
        arr = np.ascontiguousarray(arr, dtype=dt.newbyteorder("<"))
        n = arr.shape[0]
        row_bytes = max(1, arr[:1].nbytes if n else arr.itemsize)
        per = rows_per_block or max(1, _BLOCK_BYTES // row_bytes)
        blocks = []
        parts = []
        for b, start in enumerate(range(0, n, per)):
            part = arr[start:start + per]
            key = f"{_MANIFEST}{prefix}#{b}"
            head = _BLOCK_HEAD.pack(_BLOCK_MAGIC, _CODES[dt.name], part.ndim) + b"".join(
                struct.pack("<Q", s) for s in part.shape)
            parts.append((key, head.ljust(_HEAD_BYTES, b"\0"), part))
            blocks.append([key, start, len(part)])
        manifest = {"version": 1, "kind": kind, "dtype": dt.name, "shape": list(arr.shape),
                    "width": max(4, len(str(max(n - 1, 0)))), "blocks": blocks}
        if kind == "chunks":
            manifest["chunk_size"] = per
        db = self.db
        with db.batch():
            old = self._manifest(prefix)
            keep = {k for k, _, _ in blocks}
            if old:
                self._release_pages([k for k, _, _ in old["blocks"]])
                for k, _, _ in old["blocks"]:
                    if k not in keep:
                        db.delete(k)
            for key, head, part in _bar(parts, f"put {prefix}",
                                        self.progress and arr.nbytes > (64 << 20)):
                db.storage.put_blob_parts(key, [head, part])
            db.put_text(_MANIFEST + prefix, json.dumps(manifest))
        return n

    def _release_pages(self, keys: list[str]) -> None:
        """Drop the cached pages of the large records ``keys`` hold now (about
        to be superseded); the caller holds the handle's lock.

        Why: the old version stays in the file until compaction, and its pages
        in the cache until memory runs short, so every re-put needed fresh
        pages for the new bytes.  On this project's VMs a fresh page costs
        ~100 ms per 31 MB to touch (the host backs guest memory lazily), a
        recycled one ~3 ms: that was put_tensor's gap to np.save, which
        truncates its file and so recycles the old pages.  Only a cache hint:
        the bytes stay on disk and any reader still holding the old version
        (a view, another process's map) reads the same values, re-faulted
        from the file if need be; pages another process has mapped stay.
        """
        self.db.storage.drop_cached(keys, _RELEASE_MIN_BYTES)

    # ------------------------------------------------------------------ get
    def _block(self, key: str, dt: np.dtype) -> np.ndarray:
        # No refresh between the manifest and its blocks: one version, whole.
        view = self.db.storage.value_view(key, refresh=False)
        if view is None:
            raise errors.CorruptDatabase(f"tensor block {key!r} is missing from {self.path!r}")
        magic, code, ndim = _BLOCK_HEAD.unpack_from(view, 0)
        if magic != _BLOCK_MAGIC or DTYPES[code - 1] != dt.name:
            raise errors.CorruptDatabase(f"tensor block {key!r} has a bad header")
        shape = struct.unpack_from(f"<{ndim}Q", view, _BLOCK_HEAD.size)
        arr = np.frombuffer(view, dtype=dt.newbyteorder("<"), count=int(np.prod(shape)),
                            offset=_HEAD_BYTES).reshape(shape)
        arr.flags.writeable = False  # it is the file: writing to it would bypass the CRC
        return arr

    @staticmethod
    def _finish(arr: np.ndarray, shape: Any, dtype: Any) -> np.ndarray:
        if dtype is not None:
            dt = _dtype(dtype, "get_tensor")
            if not np.can_cast(arr.dtype, dt, casting="same_kind"):
                raise errors.InvalidArgument(f"cannot cast {arr.dtype} to {dt} without changing "
                                             "what the values mean")
            if dt.kind in "iu" and arr.size and not np.can_cast(arr.dtype, dt, "safe"):
                info = np.iinfo(dt)
                if arr.min() < info.min or arr.max() > info.max:
                    raise errors.InvalidArgument(f"values of {arr.dtype} do not fit in {dt}")
            with np.errstate(over="ignore", invalid="ignore"):
                cast = arr.astype(dt, copy=False)
            if dt.kind == "f" and arr.dtype.kind == "f" and cast is not arr and \
                    np.count_nonzero(np.isinf(cast)) != np.count_nonzero(np.isinf(arr)):
                raise errors.InvalidArgument(f"values of {arr.dtype} overflow {dt}")
            arr = cast
        if shape is not None:
            try:
                arr = arr.reshape(shape)
            except (ValueError, TypeError) as e:
                raise errors.DimensionMismatch(
                    f"cannot reshape {arr.shape} into {shape!r}") from e
        return arr

    def _consistent(self):
        """Hold the handle's lock: manifests and blocks come from one version."""
        return self.db.storage.locked()

    def get_tensor(self, pattern: str, shape: Any = None, dtype: Any = None) -> np.ndarray:
        """The rows whose names match ``pattern`` (a glob), stacked in key order.

        Raises:
            KeyNotFound: nothing matches.
            DimensionMismatch: ``shape`` does not fit, or the rows differ in shape.
            InvalidArgument: an empty pattern, or a ``dtype`` the data cannot be cast to.
        """
        with self._consistent():
            arr = self._gather(self._select(pattern, "rows"), "rows", pattern)
        return self._finish(arr, shape, dtype)

    def get_tensor_chunked(self, pattern: str, shape: Any = None,
                           dtype: Any = None) -> np.ndarray:
        """The chunks whose names match ``pattern``, concatenated in key order."""
        with self._consistent():
            arr = self._gather(self._select(pattern, "chunks"), "chunks", pattern)
        return self._finish(arr, shape, dtype)

    def rows(self, pattern: str) -> "RowView":
        """A lazy, zero-copy view of the matching rows (what datasets index)."""
        with self._consistent():
            picks = self._select(pattern, "rows")
            if not picks:
                raise errors.KeyNotFound(f"no rows match {pattern!r} in {self.path!r}")
            return RowView(self, picks)

    def stream(self, pattern: str, batch_size: int = 32) -> Iterator[np.ndarray]:
        """Batches of ``batch_size`` rows (the last may be shorter), without loading all."""
        batch_size = _positive_int("batch_size", batch_size)
        view = self.rows(pattern)
        for s in range(0, len(view), batch_size):
            yield view.batch(range(s, min(len(view), s + batch_size)))

    # ----------------------------------------------------------- inspect
    def keys(self, pattern: str | None = None) -> list[str]:
        """Names of rows and chunks, sorted; ``pattern`` is a glob."""
        match = _glob(pattern) if pattern is not None else None
        names = []
        for prefix, m in self._manifests().items():
            names.extend(self._names(prefix, m))
        if match is not None:
            names = [n for n in names if match(n)]
        return sorted(names)

    def info(self, prefix: str) -> dict[str, Any]:
        """Shape, dtype and layout of the tensor stored under ``prefix``."""
        if not isinstance(prefix, str):
            raise errors.InvalidType(f"a tensor prefix is a str, got {prefix!r}")
        m = self._manifest(prefix) if prefix else None
        if m is None:
            raise errors.KeyNotFound(f"no tensor {prefix!r} in {self.path!r}")
        dt = np.dtype(m["dtype"])
        out = {"prefix": prefix, "kind": m["kind"], "shape": tuple(m["shape"]), "dtype": dt,
               "blocks": len(m["blocks"]), "nbytes": int(np.prod(m["shape"])) * dt.itemsize}
        if m["kind"] == "chunks":
            out["chunk_size"] = m["chunk_size"]
        return out

    def tensors(self) -> list[str]:
        """Every stored prefix."""
        return sorted(self._manifests())

    def delete(self, pattern: str) -> int:
        """Delete the rows/chunks matching ``pattern``; returns how many.

        A tensor that loses only some rows is rewritten without them.
        """
        match = _glob(pattern)
        removed = 0
        db = self.db
        with db.batch():
            for prefix, m in self._manifests().items():
                names = self._names(prefix, m)
                hit = [i for i, n in enumerate(names) if match(n)]
                if not hit:
                    continue
                removed += len(hit)
                if len(hit) == len(names):
                    for key, _, _ in m["blocks"]:
                        db.delete(key)
                    db.delete(_MANIFEST + prefix)
                    continue
                kind = "rows" if m["kind"] == "rows" else "chunks"
                count = m["shape"][0] if kind == "rows" else len(m["blocks"])
                full = self._gather([(prefix, m, np.arange(count))], kind, prefix)
                if kind == "rows":
                    keep = np.delete(full, hit, axis=0)
                    self._put(prefix, keep, "rows", None)
                else:
                    size = m["chunk_size"]
                    parts = [full[i * size:(i + 1) * size] for i in range(len(names))
                             if i not in set(hit)]
                    self._put(prefix, np.concatenate(parts), "chunks", size)
        return removed

    def export_parquet(self, path: str | os.PathLike[str], pattern: str,
                       label_pattern: str | None = None, batch_rows: int = 65_536) -> int:
        """Write the matching rows as Parquet, one row per sample; returns the count.

        Columns: ``key`` (the row's name), ``x`` (the sample, flattened to a
        fixed-size list) and, with ``label_pattern``, ``y``.  DuckDB, Spark
        and Ray read it directly: the way out when data outgrows one machine.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise errors.InvalidType(f"path must be a str or os.PathLike, not {path!r}")
        batch_rows = _positive_int("batch_rows", batch_rows)
        if label_pattern is not None and not isinstance(label_pattern, str):
            raise errors.InvalidType(f"label_pattern must be a str glob, got {label_pattern!r}")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise errors.MissingDependency("pyarrow", "arrow", "Parquet export") from None
        view = self.rows(pattern)
        labels = self.rows(label_pattern) if label_pattern is not None else None
        if labels is not None and len(labels) != len(view):
            raise errors.DimensionMismatch(
                f"{len(view)} rows match {pattern!r} but {len(labels)} match {label_pattern!r}")
        width = int(np.prod(view.row_shape)) if view.row_shape else 1
        label_width = int(np.prod(labels.row_shape)) if labels is not None else 0
        names = view.names
        n = len(view)
        # Written beside ``path`` and renamed over it only when complete and
        # fsynced (atomic_path): a crash leaves the old file or the new one.
        with atomic_path(path) as tmp:
            writer = None
            try:
                # At least one (maybe empty) batch, so zero rows still make a file.
                for s in range(0, max(n, 1), batch_rows):
                    idx = range(s, min(n, s + batch_rows))
                    k = len(idx)
                    x = view.batch(idx).reshape(k, width)
                    cols = {"key": pa.array([names[i] for i in idx], type=pa.string()),
                            "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)),
                                                                   width)}
                    if labels is not None:
                        y = labels.batch(idx)
                        cols["y"] = (pa.array(y.reshape(k)) if label_width == 1 else
                                     pa.FixedSizeListArray.from_arrays(
                                         pa.array(y.reshape(-1)), label_width))
                    table = pa.table(cols)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
            finally:
                if writer is not None:
                    writer.close()
        return n

    def get_tensor_torch(self, pattern: str, device: str = "cpu", dtype: Any = None) -> Any:
        """``get_tensor`` as a ``torch.Tensor`` on ``device`` (needs ``synadb[torch]``);
        ``dtype`` may be a torch dtype (``torch.float16``) or a numpy one."""
        # The torch adapter lends the conversion (synadb/_convert.py): this
        # layer never imports an integration.
        return _convert.get("torch_tensor", "get_tensor_torch")(self, pattern, device, dtype)

    def get_tensor_tf(self, pattern: str, dtype: Any = None) -> Any:
        """``get_tensor`` as a ``tf.Tensor`` (needs ``synadb[tensorflow]``);
        ``dtype`` may be a TensorFlow dtype or a numpy one."""
        return _convert.get("tf_tensor", "get_tensor_tf")(self, pattern, dtype)


class RowView:
    """Rows of one or more tensors, indexed lazily through the file's map."""

    def __init__(self, engine: TensorEngine,
                 picks: list[tuple[str, dict[str, Any], np.ndarray]]) -> None:
        first = picks[0][1]
        self.dtype = np.dtype(first["dtype"])
        self.row_shape = tuple(first["shape"][1:])
        self._engine = engine
        keys: list[str] = []
        block_of: list[np.ndarray] = []
        row_in: list[np.ndarray] = []
        for _, m, idx in picks:
            if np.dtype(m["dtype"]) != self.dtype or tuple(m["shape"][1:]) != self.row_shape:
                raise errors.DimensionMismatch("the pattern matches tensors of different "
                                               "dtype or row shape")
            starts = np.array([b[1] for b in m["blocks"]], dtype=np.int64)
            which = np.searchsorted(starts, idx, side="right") - 1
            block_of.append(which + len(keys))
            row_in.append(idx - starts[which])
            keys.extend(b[0] for b in m["blocks"])
        self._keys = keys
        self._picks = picks
        self._block_of = np.concatenate(block_of)
        self._row_in = np.concatenate(row_in)
        # Every block now, while the caller holds the handle's lock: the view
        # then stays one version of the tensor, whatever is written later.
        self._blocks: list[np.ndarray | None] = [engine._block(k, self.dtype) for k in keys]

    def __len__(self) -> int:
        return len(self._row_in)

    @property
    def names(self) -> list[str]:
        """The row names, in order (built on first use)."""
        out: list[str] = []
        for prefix, m, idx in self._picks:
            w = m["width"]
            out.extend(f"{prefix}{i:0{w}d}" for i in idx.tolist())
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.row_shape)

    def _blk(self, b: int) -> np.ndarray:
        blk = self._blocks[b]
        if blk is None:
            blk = self._blocks[b] = self._engine._block(self._keys[b], self.dtype)
        return blk

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise errors.InvalidType(f"a row index is an int, got {i!r}; use batch() for "
                                     "several rows")
        if not -n <= i < n:
            raise RowIndexError(f"row {i} is out of range: the view has {n} rows")
        return self._blk(int(self._block_of[i]))[int(self._row_in[i])]  # a read-only view

    def _indices(self, indices: Any) -> np.ndarray:
        """``indices`` as int64 row numbers, each in ``0 <= i < len(self)``."""
        if isinstance(indices, np.ndarray):
            raw = indices
        elif isinstance(indices, range):
            raw = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
        else:
            if isinstance(indices, (str, bytes, Mapping)) or not isinstance(indices, Iterable):
                raise errors.InvalidType(f"row indices are a sequence of ints, got {indices!r}")
            try:
                raw = np.asarray(list(indices))
            except (TypeError, ValueError) as e:  # ragged, or an iterator that raised so
                raise errors.InvalidType(f"row indices are a sequence of ints: {e}") from None
        if raw.size == 0:
            return np.empty(0, dtype=np.int64)
        if raw.ndim != 1:
            raise errors.InvalidArgument(f"row indices must be one-dimensional, got shape "
                                         f"{raw.shape}")
        if raw.dtype.kind not in "iu":
            # Floats would be truncated and bools taken as 0/1: refuse both.
            raise errors.InvalidType(f"row indices must be ints, got {raw.dtype} "
                                     f"({raw[:3].tolist()}...)")
        n = len(self)
        lo, hi = raw.min(), raw.max()
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise RowIndexError(f"row index {int(bad)} is out of range: the view has {n} "
                                "rows (0 to n-1; negative indices are not taken here)")
        return raw.astype(np.int64, copy=False)

    def batch(self, indices: Any) -> np.ndarray:
        """Rows at ``indices``, copied into one new array.

        Raises:
            InvalidType: the indices are not ints (floats are never truncated).
            RowIndexError: an index is negative or not below ``len(self)``
                (an InvalidArgument that is also an IndexError).
        """
        idx = self._indices(indices)
        out = np.empty((len(idx), *self.row_shape), dtype=self.dtype)
        blocks = self._block_of[idx]
        rows = self._row_in[idx]
        if len(self._keys) == 1:
            return self._blk(0)[rows]
        for b in np.unique(blocks).tolist():
            sel = np.flatnonzero(blocks == b)
            out[sel] = self._blk(b)[rows[sel]]
        return out


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise errors.InvalidType(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise errors.InvalidArgument(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _glob(pattern: object) -> Any:
    """The match function of a glob pattern (InvalidType/InvalidArgument if bad)."""
    if not isinstance(pattern, str):
        raise errors.InvalidType(f"a pattern is a str glob such as 'train/*', got {pattern!r}")
    if not pattern:
        raise errors.InvalidArgument("the pattern is empty; use e.g. 'train/*'")
    return re.compile(fnmatch.translate(pattern), re.S).match


class RowIndexError(errors.InvalidArgument, IndexError):
    "A row index outside a RowView (an InvalidArgument, and an IndexError as Python's)."


def _sorted(idx: np.ndarray) -> bool:
    return bool(len(idx) < 2 or (np.diff(idx) > 0).all())


def _bar(it: Any, desc: str, enabled: bool, total: int | None = None) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, delay=0.5, disable=None, leave=False)
