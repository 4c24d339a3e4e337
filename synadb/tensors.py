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

import bisect
import fnmatch
import functools
import heapq
import itertools
import json
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import _convert, errors
from .dataset import CheckedBuffer, segment_crcs
from .db import DbConfig, SynaDB
from .engine.files import atomic_path

__all__ = ["TensorEngine", "RowView", "RowIndexError", "DTYPES"]

DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "uint32", "uint64", "bool")
_CODES = {name: i + 1 for i, name in enumerate(DTYPES)}
_MANIFEST = "__tensor__/"
_BLOCK_HEAD = struct.Struct("<4sBB2x")  # magic, dtype code, ndim; then ndim × u64 shape
_BLOCK_MAGIC = b"STB2"  # STB1 blocks (no CRC table) are still read
_OLD_MAGIC = b"STB1"
_HEAD_BYTES = 64
_TABLE_HEAD = struct.Struct("<II")  # CRC count, CRC of the 64-byte head and the table
# Rows per block: about this many bytes.  Few, large blocks make a shuffled
# batch one fancy index per block; the CRC of a block is checked once per
# handle, and a record's value is limited to 4 GiB.
_BLOCK_BYTES = 256 << 20
# Superseded blocks at least this large leave the page cache when replaced.
_RELEASE_MIN_BYTES = 1 << 20


def _dtype(value: Any, what: str) -> np.dtype:
    """``value`` as a supported numpy dtype; ``value`` may also be a torch or
    TensorFlow dtype object, recognised without importing either (this layer
    never imports a framework, so ``import synadb`` stays light)."""
    as_numpy = getattr(value, "as_numpy_dtype", None)  # tf.DType
    if as_numpy is not None and not isinstance(value, (str, np.dtype, type)):
        value = as_numpy
    elif type(value).__module__.split(".")[0] == "torch" and str(value).startswith("torch."):
        name = str(value)[len("torch."):]  # torch.float16 -> "float16", as numpy spells it
        if name not in _CODES:
            raise errors.InvalidArgument(
                f"{what}: dtype {value} is not supported; use one of {', '.join(DTYPES)}")
        value = name
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError) as e:
        raise errors.InvalidType(f"{what}: {value!r} is not a numpy dtype") from e
    if dt.name not in _CODES:
        raise errors.InvalidArgument(
            f"{what}: dtype {dt.name} is not supported; use one of {', '.join(DTYPES)}")
    return dt


def _as_array(tensor: Any, what: str) -> np.ndarray:
    """``tensor`` as a numpy array.  A torch tensor is detached and brought to
    the CPU first (its ``__array__`` refuses one that needs grad and one on
    a GPU); anything else with ``.numpy()`` (a TensorFlow tensor) uses it.
    Duck-typed: this layer never imports a framework."""
    if isinstance(tensor, np.ndarray):
        return tensor
    to_numpy = getattr(tensor, "numpy", None)
    if not callable(to_numpy):
        return np.asarray(tensor)
    if callable(getattr(tensor, "detach", None)) and callable(getattr(tensor, "cpu", None)):
        tensor = tensor.detach().cpu()
        for resolve in ("resolve_conj", "resolve_neg"):  # lazy views numpy() refuses
            if callable(getattr(tensor, resolve, None)):
                tensor = getattr(tensor, resolve)()
        to_numpy = tensor.numpy
    try:
        return np.asarray(to_numpy())
    except TypeError as e:  # e.g. torch's bfloat16, which numpy has no dtype for
        raise errors.InvalidArgument(
            f"{what}: {type(tensor).__name__} of dtype {getattr(tensor, 'dtype', '?')} has no "
            f"numpy equivalent ({e}); use one of {', '.join(DTYPES)}") from None


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
        # The manifests as of log offset _mcache_end of the file with salt
        # _mcache_salt (see _catalog); None until first needed.
        self._mcache: dict[str, dict[str, Any]] | None = None
        self._mprefixes: list[str] = []
        self._mcache_salt = 0
        self._mcache_end = 0

    def __enter__(self) -> "TensorEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ manifests
    def _manifests(self) -> dict[str, dict[str, Any]]:
        """prefix -> manifest of every tensor, as of now (do not change it)."""
        return self._catalog()[0]

    def _catalog(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The manifests by prefix, and their prefixes sorted.

        Cached per handle and brought up to date from the keys written since
        (by any handle, any process): a call with nothing new written costs a
        look at the log's end.  It used to list every key of the file (the
        other components' too) and parse every manifest, on every open.  The
        dict is replaced, never changed: a caller may keep the one it got.
        """
        with self.db.storage.locked():
            store = not self._in_batch()
            cache = self._catch_up(store)
            prefixes = self._mprefixes if cache is self._mcache else sorted(cache)
        return cache, prefixes

    def _in_batch(self) -> bool:
        """Inside this handle's ``batch()``.  The caller holds the handle's
        lock, and a batch holds it throughout, so the batch is this thread's."""
        # SynaDB has no public word for this.  The flag is read because the
        # alternative is worse: a cache advanced past the records of a batch
        # that then aborts would keep manifests that never happened (the abort
        # record names no key, so nothing would say to look again).
        return self.db.storage.in_batch()

    def _catch_up(self, store: bool) -> dict[str, dict[str, Any]]:
        """The manifests now; ``store``: keep them as the handle's cache."""
        storage = self.db.storage
        cache = self._mcache
        if cache is not None:
            # keys_written_since first: it also follows a compaction's swap,
            # which the salt then tells (as VectorStore._refresh does).
            changed, end = storage.keys_written_since(self._mcache_end)
            if storage.salt() == self._mcache_salt:
                names = [k for k in changed if k.startswith(_MANIFEST) and "#" not in k]
                if names:
                    cache = dict(cache)
                    for key in names:
                        m = self._read_manifest(key)
                        if m is None:
                            cache.pop(key[len(_MANIFEST):], None)
                        else:
                            cache[key[len(_MANIFEST):]] = m
                if store:
                    self._remember(cache, self._mcache_salt, end)
                return cache
        salt = storage.salt()
        # The offset before the listing: records written in between are read
        # again next time, which is harmless; taken after, they could be missed.
        end = storage.log_end()
        cache = {}
        # One pass of str.startswith: db.keys(pattern) would run a regex over
        # every key of the file.
        for key in self.db.keys():
            if key.startswith(_MANIFEST) and "#" not in key:
                m = self._read_manifest(key)
                if m is not None:
                    cache[key[len(_MANIFEST):]] = m
        if store:
            self._remember(cache, salt, end)
        return cache

    def _remember(self, cache: dict[str, dict[str, Any]], salt: int, end: int) -> None:
        if cache is not self._mcache:
            self._mprefixes = sorted(cache)
        self._mcache, self._mcache_salt, self._mcache_end = cache, salt, end

    @contextmanager
    def _writing(self, load: bool = False) -> Iterator[set[str]]:
        """A batch for this engine's writes; the caller adds the prefixes it
        writes to the yielded set.

        When the batch is the engine's own (not inside a caller's batch), the
        manifest cache is brought up to date as it starts and told what was
        written as it commits: the next read need not scan our own records,
        a CRC pass over every block just written, to learn what we know.
        Inside a caller's batch the cache is left alone, as that batch may
        still abort.  ``load``: fill the cache if this handle has none yet
        (``delete`` reads every manifest anyway; a put reads none).
        """
        db = self.db
        touched: set[str] = set()
        with db.storage.locked():
            learn = not self._in_batch()
            with db.batch():
                learn = learn and (load or self._mcache is not None)
                if learn:
                    # Nothing of this batch is written yet and it holds the
                    # write lease: what we catch up to is committed, and no
                    # other writer can append before our records.
                    try:
                        self._catch_up(store=True)
                    except errors.SynaError:
                        learn = False  # a damaged manifest must not block a put
                yield touched
                if learn:
                    end = db.storage.log_end()  # after our records, before the commit
                    fresh = {p: self._manifest(p) for p in touched}
            if learn:
                cache = dict(self._mcache or {})
                for p, m in fresh.items():
                    if m is None:
                        cache.pop(p, None)
                    else:
                        cache[p] = m
                self._remember(cache, self._mcache_salt, end)

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
    def _names(prefix: str, m: dict[str, Any], which: Iterable[int] | None = None) -> list[str]:
        """Names of the rows or chunks ``which`` (default: all) of a tensor.

        Row ``i`` is ``prefix`` + ``i`` zero-padded to the manifest's width,
        so a tensor's row names sort in index order; chunk names do not
        beyond ``chunk_9999``.
        """
        if which is None:
            which = range(m["shape"][0] if m["kind"] == "rows" else len(m["blocks"]))
        if m["kind"] == "rows":
            w = m["width"]
            return [f"{prefix}{i:0{w}d}" for i in which]
        return [f"{prefix}chunk_{i:04d}" for i in which]

    @staticmethod
    def _reachable(prefixes: list[str], by_prefix: Mapping[str, Any], literal: str) -> list[str]:
        """The (sorted) prefixes whose names can start with ``literal``: those
        that start with it, and those it starts with.  No other tensor can
        hold a name the pattern matches, so none other is looked at."""
        out = [literal[:j] for j in range(1, len(literal)) if literal[:j] in by_prefix]
        i = bisect.bisect_left(prefixes, literal)
        while i < len(prefixes) and prefixes[i].startswith(literal):
            out.append(prefixes[i])
            i += 1
        return out  # each literal[:j] sorts before literal, so before the rest

    def _match(self, prefix: str, m: dict[str, Any], pat: "_Pattern") -> np.ndarray:
        """Ascending indices of ``prefix``'s rows (or chunks) whose names match.

        Rows are ``prefix`` + digits, so the pattern's literal start fixes a
        range of indices, and a pattern without ``*`` (``x/00[0-4]?``) is a
        set of digits per position, tested on the indices with numpy: names
        are built only for other patterns, and only within the range.
        """
        lit = pat.literal
        if m["kind"] != "rows":
            if pat.prefix_star and prefix.startswith(lit):
                return np.arange(len(m["blocks"]), dtype=np.int64)
            names = self._names(prefix, m)
            return np.array([i for i, s in enumerate(names) if pat.match(s)], dtype=np.int64)
        n, w = m["shape"][0], m["width"]
        lo, hi = 0, n
        if len(lit) > len(prefix):
            head = lit[len(prefix):]
            if len(head) > w or not _DIGITS.fullmatch(head):
                return _NONE
            scale = 10 ** (w - len(head))
            lo, hi = min(n, int(head) * scale), min(n, (int(head) + 1) * scale)
        if lo >= hi:
            return _NONE
        if pat.prefix_star:
            return np.arange(lo, hi, dtype=np.int64)
        tokens = pat.tokens
        if tokens is None:  # a '*' inside: name the rows in range, match each
            names = self._names(prefix, m, range(lo, hi))
            return np.array([lo + i for i, s in enumerate(names) if pat.match(s)],
                            dtype=np.int64)
        if len(tokens) != len(prefix) + w or not all(
                _accepts(t, c) for t, c in zip(tokens, prefix)):
            return _NONE
        idx = np.arange(lo, hi, dtype=np.int64)
        keep = None
        for j, tok in enumerate(tokens[len(prefix):]):
            digits = [d for d in range(10) if _accepts(tok, str(d))]
            if len(digits) == 10:
                continue
            ok = np.isin((idx // 10 ** (w - 1 - j)) % 10, digits)
            keep = ok if keep is None else keep & ok
        return idx if keep is None else idx[keep]

    def _select(self, pattern: str, kind: str) -> list[tuple[str, dict[str, Any], np.ndarray]]:
        """(prefix, manifest, indices) runs of the rows/chunks matching, in key order.

        A tensor appears once, unless another's names interleave with its
        own: then once per run of its names between the other's.
        """
        pat = _Pattern(pattern)
        by_prefix, prefixes = self._catalog()
        found: list[tuple[str, dict[str, Any], np.ndarray]] = []
        for prefix in self._reachable(prefixes, by_prefix, pat.literal):
            m = by_prefix[prefix]
            if m["kind"] != kind:
                continue
            idx = self._match(prefix, m, pat)
            # An empty tensor named by exactly its own "prefix*" still counts
            # (its dtype and row shape), as it always did.
            if len(idx) or (kind == "rows" and pattern == prefix + "*"):
                found.append((prefix, m, idx))
        if len(found) > 1 and any(a[0].startswith(b[0]) or b[0].startswith(a[0])
                                  for a, b in zip(found, found[1:])):
            # One prefix extends another ("a/" and "a/b/"): their names may
            # interleave.
            found = _merge_rows(found) if kind == "rows" else self._merge_chunks(found)
        return found

    def _merge_chunks(self, found: list[tuple[str, dict[str, Any], np.ndarray]]
                      ) -> list[tuple[str, dict[str, Any], np.ndarray]]:
        # Chunks are few (one per block) and their names do not sort in index
        # order past chunk_9999: sort the names themselves.
        order = sorted((name, t, i) for t, (p, m, idx) in enumerate(found)
                       for name, i in zip(self._names(p, m, idx.tolist()), idx.tolist()))
        picks: list[tuple[str, dict[str, Any], np.ndarray]] = []
        for t, run in itertools.groupby(order, key=lambda r: r[1]):
            p, m, _ = found[t]
            picks.append((p, m, np.array([i for _, _, i in run], dtype=np.int64)))
        return picks

    def _gather(self, picks: list[tuple[str, dict[str, Any], np.ndarray]], kind: str,
                pattern: str) -> np.ndarray:
        if not picks:
            raise errors.KeyNotFound(f"no {'rows' if kind == 'rows' else 'chunks'} match "
                                     f"{pattern!r} in {self.path!r}")
        first = picks[0][1]
        dt = np.dtype(first["dtype"])
        row_shape = tuple(first["shape"][1:])
        for m in {p: m for p, m, _ in picks}.values():  # per tensor, not per run
            if np.dtype(m["dtype"]) != dt or tuple(m["shape"][1:]) != row_shape:
                raise errors.DimensionMismatch(
                    f"{pattern!r} matches tensors of different dtype or row shape "
                    f"({first['dtype']}{list(row_shape)} and {m['dtype']}{m['shape'][1:]})")
        if kind == "chunks":
            total = sum(m["blocks"][i][2] for _, m, idx in picks for i in idx.tolist())
            out = np.empty((total, *row_shape), dtype=dt)
            pos = 0
            for _, m, idx in picks:
                for i in idx.tolist():
                    key, _, rows = m["blocks"][i]
                    out[pos:pos + rows] = self._block(key, dt)
                    pos += rows
            return out
        tensors, owner, rows = _plan(picks)
        for prefix, m in tensors:
            covered = sum(b[2] for b in m["blocks"])
            if covered != m["shape"][0]:
                raise errors.CorruptDatabase(
                    f"tensor {prefix!r} in {self.path!r}: its blocks hold {covered} rows, "
                    f"its manifest says {m['shape'][0]}")
        out = np.empty((len(rows), *row_shape), dtype=dt)
        # Per tensor, not per pick: a tensor split into many runs still costs
        # one pass over its blocks, and each block is mapped once.
        for (_, m), pos in zip(tensors, _positions(owner, len(tensors))):
            r = rows[pos]
            ordered = _sorted(r)
            for key, start, count in m["blocks"]:
                if not ordered:
                    sel = np.flatnonzero((r >= start) & (r < start + count))
                    if len(sel):
                        out[pos[sel]] = self._block(key, dt)[r[sel] - start]
                    continue
                lo, hi = np.searchsorted(r, [start, start + count])
                if hi <= lo:
                    continue
                at = pos[lo:hi]  # ascending: positions come in view order
                blk = self._block(key, dt)
                if hi - lo == count and at[-1] - at[0] == count - 1:
                    out[at[0]:at[0] + count] = blk  # a whole block, in one place: one copy
                else:
                    out[at] = blk[r[lo:hi] - start]
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
            arr = _as_array(tensor, prefix)
        except errors.SynaError:
            raise
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
            parts.append((key, _block_head(dt, part), part))
            blocks.append([key, start, len(part)])
        manifest = {"version": 1, "kind": kind, "dtype": dt.name, "shape": list(arr.shape),
                    "width": max(4, len(str(max(n - 1, 0)))), "blocks": blocks}
        if kind == "chunks":
            manifest["chunk_size"] = per
        db = self.db
        with self._writing() as touched:
            touched.add(prefix)
            old = self._manifest(prefix)
            keep = {k for k, _, _ in blocks}
            if old:
                self._release_pages([k for k, _, _ in old["blocks"]])
                for k, _, _ in old["blocks"]:
                    if k not in keep:
                        db.delete(k)
            for key, head, part in _bar(parts, f"put {prefix}",
                                        self.progress and arr.nbytes > (64 << 20)):
                # Latest-only: compaction reclaims a replaced tensor's blocks.
                db.storage.put_blob_parts(key, [head, part], keep_history=False)
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
        """Block ``key`` as a read-only array, every byte checked (a whole read)."""
        arr, checked = self._lazy_block(key, dt)
        if checked is not None:
            checked.check_all()
        return arr

    def _lazy_block(self, key: str, dt: np.dtype) -> tuple[np.ndarray, CheckedBuffer | None]:
        """Block ``key`` as a read-only array, and the CRCs to check before
        reading rows of it (None for an STB1 block: checked whole here)."""
        # No refresh between the manifest and its blocks: one version, whole.
        view = self.db.storage.value_view(key, refresh=False, check=False)
        if view is None:
            raise errors.CorruptDatabase(f"tensor block {key!r} is missing from {self.path!r}")
        magic = bytes(view[:4])
        if magic == _OLD_MAGIC:
            view = self.db.storage.value_view(key, refresh=False)  # its record CRC, once
        magic, code, ndim = _BLOCK_HEAD.unpack_from(view, 0)
        if magic not in (_BLOCK_MAGIC, _OLD_MAGIC) or not 1 <= code <= len(DTYPES) or \
                DTYPES[code - 1] != dt.name:
            raise errors.CorruptDatabase(f"tensor block {key!r} has a bad header")
        shape = struct.unpack_from(f"<{ndim}Q", view, _BLOCK_HEAD.size)
        count = int(np.prod(shape))
        checked = None
        start = _HEAD_BYTES
        if magic == _BLOCK_MAGIC:
            ncrc, crc = _TABLE_HEAD.unpack_from(view, _HEAD_BYTES)
            t0 = _HEAD_BYTES + _TABLE_HEAD.size
            start = _align64(t0 + 4 * ncrc)
            if start + count * dt.itemsize > len(view) or \
                    zlib.crc32(view[t0:t0 + 4 * ncrc], zlib.crc32(view[:_HEAD_BYTES])) != crc:
                raise errors.ChecksumError(f"the head of tensor block {key!r} in "
                                           f"{self.path!r} fails its CRC")
            raw = np.frombuffer(view, dtype=np.uint8, count=count * dt.itemsize, offset=start)
            crcs = np.frombuffer(view, dtype="<u4", count=ncrc, offset=t0)
            if len(crcs) != -(-len(raw) // (1 << 16)):
                raise errors.CorruptDatabase(f"tensor block {key!r} has a bad CRC table")
            checked = CheckedBuffer(raw, crcs, f"tensor block {key!r} in {self.path!r}")
        arr = np.frombuffer(view, dtype=dt.newbyteorder("<"), count=count,
                            offset=start).reshape(shape)
        arr.flags.writeable = False  # it is the file: writing to it would bypass the CRC
        return arr, checked

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

        ``dtype`` casts the result: a numpy dtype, or a torch or TensorFlow one
        (``torch.float16``, ``tf.float16``); neither framework is imported.

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
        by_prefix, prefixes = self._catalog()
        names: list[str] = []
        if pattern is None:
            for prefix in prefixes:
                names.extend(self._names(prefix, by_prefix[prefix]))
            return sorted(names)
        pat = _Pattern(pattern)
        for prefix in self._reachable(prefixes, by_prefix, pat.literal):
            m = by_prefix[prefix]
            names.extend(self._names(prefix, m, self._match(prefix, m, pat).tolist()))
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
        return list(self._catalog()[1])

    def delete(self, pattern: str) -> int:
        """Delete the rows/chunks matching ``pattern``; returns how many.

        A tensor that loses only some rows is rewritten without them.
        """
        pat = _Pattern(pattern)
        removed = 0
        db = self.db
        with self._writing(load=True) as touched:
            by_prefix, prefixes = self._catalog()
            for prefix in self._reachable(prefixes, by_prefix, pat.literal):
                m = by_prefix[prefix]
                hit = self._match(prefix, m, pat)
                if not len(hit):
                    continue
                removed += len(hit)
                touched.add(prefix)
                kind = "rows" if m["kind"] == "rows" else "chunks"
                count = m["shape"][0] if kind == "rows" else len(m["blocks"])
                if len(hit) == count:
                    for key, _, _ in m["blocks"]:
                        db.delete(key)
                    db.delete(_MANIFEST + prefix)
                    continue
                full = self._gather([(prefix, m, np.arange(count))], kind, prefix)
                if kind == "rows":
                    keep = np.delete(full, hit, axis=0)
                    self._put(prefix, keep, "rows", None)
                else:
                    size = m["chunk_size"]
                    gone = set(hit.tolist())
                    parts = [full[i * size:(i + 1) * size] for i in range(count)
                             if i not in gone]
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
        # One list of blocks per tensor, however many runs it was picked in
        # (names that interleave with another tensor's make a run each): the
        # view holds each block once, and costs O(rows), not O(runs × blocks).
        tensors, owner, rows = _plan(picks)
        keys: list[str] = []
        self._block_of = np.empty(len(rows), dtype=np.int64)
        self._row_in = np.empty(len(rows), dtype=np.int64)
        for _, m in tensors:
            if np.dtype(m["dtype"]) != self.dtype or tuple(m["shape"][1:]) != self.row_shape:
                raise errors.DimensionMismatch("the pattern matches tensors of different "
                                               "dtype or row shape")
        for (_, m), pos in zip(tensors, _positions(owner, len(tensors))):
            starts = np.array([b[1] for b in m["blocks"]], dtype=np.int64)
            r = rows[pos]
            which = np.searchsorted(starts, r, side="right") - 1
            self._block_of[pos] = which + len(keys)
            self._row_in[pos] = r - starts[which]
            keys.extend(b[0] for b in m["blocks"])
        self._keys = keys
        self._picks = picks
        # Every block now, while the caller holds the handle's lock: the view
        # then stays one version of the tensor, whatever is written later.
        # Mapping a block reads nothing: its CRCs are checked per 64 KiB as
        # rows are read, so a view over gigabytes opens at once.
        got = [engine._lazy_block(k, self.dtype) for k in keys]
        self._blocks: list[np.ndarray | None] = [a for a, _ in got]
        self._checks = [c for _, c in got]
        self._row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))

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

    def _blk(self, b: int, rows: np.ndarray) -> np.ndarray:
        """Block ``b``, with the segments holding ``rows`` of it checked."""
        blk = self._blocks[b]
        if blk is None:
            blk, self._checks[b] = self._engine._lazy_block(self._keys[b], self.dtype)
            self._blocks[b] = blk
        checked = self._checks[b]
        if checked is not None:
            checked.check_rows(rows, self._row_bytes)
        return blk

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise errors.InvalidType(f"a row index is an int, got {i!r}; use batch() for "
                                     "several rows")
        if not -n <= i < n:
            raise RowIndexError(f"row {i} is out of range: the view has {n} rows")
        r = int(self._row_in[i])
        return self._blk(int(self._block_of[i]), np.array([r]))[r]  # a read-only view

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
            return self._blk(0, rows)[rows]
        for b in np.unique(blocks).tolist():
            sel = np.flatnonzero(blocks == b)
            out[sel] = self._blk(b, rows[sel])[rows[sel]]
        return out


def _align64(n: int) -> int:
    return -(-n // 64) * 64


def _block_head(dt: np.dtype, part: np.ndarray) -> bytes:
    """The head of an STB2 block: 64 bytes (magic, dtype code, ndim, shape),
    then the CRC count, a CRC of the head and the table, and the CRC-32 of
    each 64 KiB of the rows, zero padded to a multiple of 64."""
    head = (_BLOCK_HEAD.pack(_BLOCK_MAGIC, _CODES[dt.name], part.ndim) + b"".join(
        struct.pack("<Q", s) for s in part.shape)).ljust(_HEAD_BYTES, b"\0")
    flat = part.reshape(-1).view(np.uint8) if part.size else np.empty(0, np.uint8)
    table = segment_crcs(flat).tobytes()
    out = head + _TABLE_HEAD.pack(len(table) // 4, zlib.crc32(table, zlib.crc32(head))) + table
    return out.ljust(_align64(len(out)), b"\0")


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


_DIGITS = re.compile(r"[0-9]+")
_NONE = np.empty(0, dtype=np.int64)
_NONE.flags.writeable = False


class _Pattern:
    """A glob over row names, taken apart for selection.

    ``literal``: its characters before the first ``*``, ``?`` or ``[``, which
    every matching name starts with.  ``prefix_star``: the pattern is
    ``literal`` + ``*``, which every name starting with ``literal`` matches.
    ``tokens``: without a ``*``, one glob per character of a matching name
    (cut as fnmatch cuts it: an unclosed ``[`` is a literal), else None.
    """

    __slots__ = ("text", "match", "literal", "prefix_star", "tokens")

    def __init__(self, pattern: object) -> None:
        self.match = _glob(pattern)
        assert isinstance(pattern, str)
        self.text = pattern
        cut = min((i for i in (pattern.find(c) for c in "*?[") if i >= 0), default=len(pattern))
        self.literal = pattern[:cut]
        self.prefix_star = pattern == self.literal + "*"
        self.tokens = _tokens(pattern)


def _tokens(pattern: str) -> list[str] | None:
    """``pattern`` cut into one-character globs, or None if it has a ``*``.

    The cuts are fnmatch.translate's, so matching each token against one
    character of a name is the same as matching the pattern.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            return None
        if c != "[":
            out.append(c)
            continue
        j = i
        if j < n and pattern[j] == "!":
            j += 1
        if j < n and pattern[j] == "]":
            j += 1
        while j < n and pattern[j] != "]":
            j += 1
        if j >= n:
            out.append("[")  # unclosed: fnmatch takes it literally
        else:
            out.append(pattern[i - 1:j + 1])
            i = j + 1
    return out


@functools.lru_cache(maxsize=1024)
def _token_match(token: str) -> Any:
    return re.compile(fnmatch.translate(token), re.S).match


def _accepts(token: str, char: str) -> bool:
    """Whether the one-character glob ``token`` matches ``char`` (fnmatch's rules)."""
    return token == char or (token[0] in "?[" and _token_match(token)(char) is not None)


def _merge_rows(found: list[tuple[str, dict[str, Any], np.ndarray]]
                ) -> list[tuple[str, dict[str, Any], np.ndarray]]:
    """The rows of ``found`` (by prefix, each ascending) in name order, as
    runs: one pick per stretch of one tensor's names between another's.

    A k-way merge that gallops: a run costs O(log of its length) names, not
    a name per row, so tensors whose names do not interleave ("x/0000" all
    sort before "x/day2/0000") make one pick each, and the worst case (names
    alternating) is O(rows log rows).  Equal names order by prefix, as the
    sort of (name, prefix) they replace did.
    """
    live = [f for f in found if len(f[2])]

    def name(t: int, j: int) -> str:
        p, m, idx = live[t]
        return f"{p}{int(idx[j]):0{m['width']}d}"

    heap = [(name(t, 0), t) for t in range(len(live))]
    heapq.heapify(heap)
    at = [0] * len(live)
    picks = []
    while heap:
        _, t = heapq.heappop(heap)
        p, m, idx = live[t]
        start, n = at[t], len(idx)
        stop = n
        if heap:
            stop = _first_not_below(lambda j: (name(t, j), t), start + 1, n, heap[0])
        picks.append((p, m, idx[start:stop]))
        at[t] = stop
        if stop < n:
            heapq.heappush(heap, (name(t, stop), t))
    return picks


def _first_not_below(key: Any, lo: int, hi: int, bound: Any) -> int:
    """The first ``j`` in ``[lo, hi)`` with ``key(j) >= bound`` (else ``hi``),
    ``key`` ascending: gallop from ``lo`` (probe lo, lo+1, lo+3, lo+7, ...),
    then bisect the last step, so a run of length r costs O(log r) keys."""
    a, b, step = lo, lo, 1
    while b < hi and key(b) < bound:
        a = b + 1
        step *= 2
        b = lo + step - 1
    b = min(b, hi)
    return a + bisect.bisect_left(range(a, b), bound, key=key)


def _plan(picks: list[tuple[str, dict[str, Any], np.ndarray]]
          ) -> tuple[list[tuple[str, dict[str, Any]]], np.ndarray, np.ndarray]:
    """The tensors of ``picks`` (in first-seen order) and, per selected row in
    view order, the number of its tensor and its index in that tensor."""
    number: dict[str, int] = {}
    tensors: list[tuple[str, dict[str, Any]]] = []
    tid = np.empty(len(picks), dtype=np.int64)
    lens = np.empty(len(picks), dtype=np.int64)
    for n, (prefix, m, idx) in enumerate(picks):
        t = number.get(prefix)
        if t is None:
            t = number[prefix] = len(tensors)
            tensors.append((prefix, m))
        tid[n] = t
        lens[n] = len(idx)
    rows = (np.concatenate([np.asarray(idx, dtype=np.int64) for _, _, idx in picks])
            if picks else _NONE)
    return tensors, np.repeat(tid, lens), rows


def _positions(owner: np.ndarray, count: int) -> list[np.ndarray]:
    """Per tensor number below ``count``, the positions it owns, ascending."""
    if count == 1:
        return [np.arange(len(owner), dtype=np.int64)]
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(count + 1))
    return [order[bounds[t]:bounds[t + 1]] for t in range(count)]


def _bar(it: Any, desc: str, enabled: bool, total: int | None = None) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, delay=0.5, disable=None, leave=False)
