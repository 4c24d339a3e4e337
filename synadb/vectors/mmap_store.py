"""MmapVectorStore: bulk vector ingestion into a memory-mapped file, HNSW search.

File format
-----------

One file, little-endian throughout.  Offsets are from the start of the file.

====== ======= ==========================================================
Offset Size    Description
====== ======= ==========================================================
0      8       magic ``b"SYNAMMAP"``
8      2       write version (the format that wrote the file; now 1)
10     2       read version: the oldest format a reader must understand
               to read the file (now 1).  A reader whose version is lower
               refuses the file with FormatVersionError.
12     4       dimensions (1..8192)
16     1       metric: 0 cosine, 1 euclidean, 2 dot_product
17     7       zero
24     8       created, ms since the epoch
32     28      zero
60     4       CRC-32 (zlib) of bytes 0..59
512    64      commit slot A
1024   64      commit slot B
4096   C*D*4   vector region: C (capacity) rows of D float32 values
T      K       tail: the keys, UTF-8 joined by NUL (row i is key i)
T+K'   X       tail: an hnswlib ``save_index`` image (X = 0: no index);
               K' is K rounded up to a multiple of 8
====== ======= ==========================================================

A commit slot: ``seq`` (u64), ``count`` (u64, rows in use), ``capacity``
(u64), ``T`` (u64, tail offset), ``K`` (u64), ``X`` (u64), CRC-32 of the
keys (u32), CRC-32 of the index image (u32), zero to offset 60, CRC-32 of
the slot's first 60 bytes (u32).  The valid slot with the larger ``seq``
is the committed state.  The tail always lies beyond the vector region.

Commit (:meth:`MmapVectorStore.checkpoint`, ``close``, and every growth):
msync the vector region; write the new tail where it overlaps neither the
vector region nor the committed tail; fsync; write the other slot with
``seq + 1``; fsync; truncate what lies beyond both.  A crash at any point
leaves the previous slot and everything it points at intact, because
nothing it points at is written before the new slot is durable:
``insert_batch`` writes only rows at or beyond the committed ``count``,
or replaces committed rows in place (an upsert: after a crash such a row
may hold the new vector).  Growing the file first commits the new
capacity with the tail moved beyond the new region.

Hardware assumptions: fsync means durable; a 64-byte slot write may tear
but then fails its CRC, and the other slot still holds the last commit.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
import threading
import time
import zlib
from typing import Any

import numpy as np

from .. import errors
from .indexes import (
    ScoredKey,
    as_matrix,
    as_query,
    check_dimensions,
    check_int,
    check_k,
    check_keys,
    check_metric,
    exact_scores,
    last_wins,
    locked,
    progress_bar,
    top_k,
)

__all__ = ["MmapVectorStore"]

MAGIC = b"SYNAMMAP"
FORMAT_VERSION = 1
READ_VERSION = 1
DATA_OFFSET = 4096
SLOT_OFFSETS = (512, 1024)
_PREAMBLE = struct.Struct("<8sHHIB7xQ")
_SLOT = struct.Struct("<QQQQQQII")
_CRC_AT = 60
_METRIC_CODES = {"cosine": 0, "euclidean": 1, "dot_product": 2}
_HNSW_SPACES = {"cosine": "cosine", "euclidean": "l2", "dot_product": "ip"}
_COPY_CHUNK = 16 << 20
_ROWS_CHUNK = 1 << 14  # rows per progress step (and per hnswlib add_items call)
_EXACT_CHUNK = 1 << 16  # rows per matrix product in exact search


def _crc(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return zlib.crc32(data, value) & 0xFFFFFFFF


def _sealed(body: bytes) -> bytes:
    """64 bytes: body, zero padding, CRC of the first 60."""
    head = body.ljust(_CRC_AT, b"\0")
    return head + struct.pack("<I", _crc(head))


def _unseal(raw: bytes) -> bytes | None:
    if len(raw) < 64 or struct.unpack_from("<I", raw, _CRC_AT)[0] != _crc(raw[:_CRC_AT]):
        return None
    return raw[:_CRC_AT]


def _pwrite(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _pread(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size > 0:
        got = os.pread(fd, size, offset)
        if not got:
            raise errors.CorruptDatabase(f"unexpected end of file at offset {offset}")
        parts.append(got)
        size -= len(got)
        offset += len(got)
    return b"".join(parts)


def _copy(src: int, src_off: int, dst: int, dst_off: int, size: int) -> int:
    """Copy bytes between descriptors; returns their CRC-32."""
    crc = 0
    done = 0
    while done < size:
        chunk = _pread(src, min(_COPY_CHUNK, size - done), src_off + done)
        crc = _crc(chunk, crc)
        _pwrite(dst, chunk, dst_off + done)
        done += len(chunk)
    return crc


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _hnswlib() -> Any:
    try:
        import hnswlib
    except ImportError as e:
        raise errors.MissingDependency("hnswlib", "vectors", "HNSW indexes") from e
    return hnswlib


class MmapVectorStore:
    """Bulk-ingestion vector store: float32 rows in one memory-mapped file,
    searched exactly until :meth:`build_index`, then with HNSW (hnswlib).

    Use it to load millions of embeddings fast (``insert_batch`` is a
    memory copy into the mapped file, no per-vector record) and then serve
    HNSW queries; the built index is saved inside the same file by
    :meth:`checkpoint`, so reopening does not rebuild it.  For a store that
    also needs metadata, filters and deletes use :class:`VectorStore`; for
    continuous small inserts use :class:`GravityWellIndex`.

    Durability: inserts are visible at once and become durable at
    :meth:`checkpoint` or :meth:`close` (a crash before that loses the
    inserts since the last checkpoint, never earlier ones).  One handle per
    file: a second open, in any process, raises LockTimeout.

    Args:
        path: the file; created if missing.
        dimensions: 1..8192; must match an existing file.
        initial_capacity: rows to preallocate in a new file (the file is
            sparse, so unused rows cost no disk); it doubles when full.
        metric: "cosine" (default for a new file), "euclidean" or
            "dot_product"; an existing file keeps its own.
        m, ef_construction: HNSW graph degree and build beam (16, 200).
        ef_search: HNSW search beam (100); raised to k when smaller.

    Raises:
        InvalidArgument: bad dimensions, capacity, metric or HNSW knobs.
        DimensionMismatch: the file holds vectors of another dimension.
        NotASynaFile: the file is something else (it is left untouched).
        FormatVersionError: the file is from a newer synadb.
        LockTimeout: the file is open in another handle.

    >>> import os, tempfile, numpy as np
    >>> x = np.random.default_rng(0).standard_normal((100, 8))
    >>> path = os.path.join(tempfile.mkdtemp(), "v.mmap")
    >>> with MmapVectorStore(path, dimensions=8, initial_capacity=64) as store:
    ...     _ = store.insert_batch([f"v{i}" for i in range(100)], x, progress=False)
    ...     store.search(x[3], k=2)[0].key
    'v3'
    """

    def __init__(self, path: str | os.PathLike[str], dimensions: int,
                 initial_capacity: int = 100_000, metric: str | None = None, *,
                 m: int = 16, ef_construction: int = 200, ef_search: int = 100) -> None:
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._lock = threading.RLock()
        if not isinstance(path, (str, os.PathLike)):
            raise errors.InvalidPath(f"path must be a str or os.PathLike, not {path!r}")
        self.path = os.fspath(path)
        d = check_dimensions(dimensions)
        cap = check_int("initial_capacity", initial_capacity, 1)
        if metric is not None:
            metric = check_metric(metric)
        self.m = check_int("m", m, 2, 512)
        self.ef_construction = check_int("ef_construction", ef_construction, 1)
        self.ef_search = check_int("ef_search", ef_search, 1)
        if os.path.isdir(self.path):
            raise errors.InvalidPath(f"{self.path!r} is a directory")
        self.dimensions = d
        self._keys: list[str] = []
        self._rows: dict[str, int] = {}
        self._index: Any = None
        self._ef_now = 0  # the ef last given to hnswlib
        self._index_dirty = False
        self._dirty = False
        self._sqn: np.ndarray | None = None  # squared norms of rows < _sqn_valid
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise errors.LockTimeout(f"{self.path!r} is open in another handle") from e
            self._fd = fd
            if new:
                self.metric = metric or "cosine"
                self._create(cap)
            else:
                self._read_existing(metric)
            self._map()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------ file
    def _create(self, capacity: int) -> None:
        pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, READ_VERSION, self.dimensions,
                             _METRIC_CODES[self.metric], int(time.time() * 1000))
        self._capacity = capacity
        self._count = 0
        data_end = DATA_OFFSET + capacity * self.dimensions * 4
        os.ftruncate(self._fd, data_end)
        _pwrite(self._fd, _sealed(pre), 0)
        self._seq = 0
        self._tail = (data_end, 0, 0)  # offset, keys bytes, index bytes
        self._write_slot(0, capacity, data_end, 0, 0, _crc(b""), 0)
        parent = os.path.dirname(os.path.abspath(self.path))
        dfd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the new file's name survives a crash too
        finally:
            os.close(dfd)

    def _read_existing(self, metric: str | None) -> None:
        head = _pread(self._fd, min(DATA_OFFSET, os.fstat(self._fd).st_size), 0)
        if len(head) < 64 or head[:8] != MAGIC:
            raise errors.NotASynaFile(f"{self.path!r} is not a synadb mmap vector file")
        body = _unseal(head[:64])
        if body is None:
            raise errors.CorruptDatabase(f"{self.path!r}: the header fails its checksum")
        _, _wver, rver, dims, mcode, _created = _PREAMBLE.unpack_from(body)
        if rver > FORMAT_VERSION:
            raise errors.FormatVersionError(
                f"{self.path!r} needs mmap format {rver}; this synadb reads {FORMAT_VERSION}")
        if dims != self.dimensions:
            raise errors.DimensionMismatch(
                f"{self.path!r} holds {dims}-dimensional vectors, not {self.dimensions}")
        names = {v: k for k, v in _METRIC_CODES.items()}
        if mcode not in names:
            raise errors.CorruptDatabase(f"{self.path!r}: unknown metric code {mcode}")
        self.metric = names[mcode]
        if metric is not None and metric != self.metric:
            raise errors.InvalidArgument(
                f"{self.path!r} uses metric {self.metric!r}, not {metric!r}")
        best = None
        for off in SLOT_OFFSETS:
            slot = _unseal(head[off:off + 64]) if len(head) >= off + 64 else None
            if slot is not None:
                vals = _SLOT.unpack_from(slot)
                if best is None or vals[0] > best[0]:
                    best = vals
        if best is None:
            raise errors.CorruptDatabase(f"{self.path!r}: both commit slots are damaged")
        seq, count, cap, tail, klen, xlen, kcrc, xcrc = best
        size = os.fstat(self._fd).st_size
        data_end = DATA_OFFSET + cap * self.dimensions * 4
        if count > cap or tail < data_end or tail + _align8(klen) + xlen > size \
                or size < data_end:
            raise errors.CorruptDatabase(f"{self.path!r}: the committed state points past "
                                         "the end of the file")
        raw = _pread(self._fd, klen, tail)
        if _crc(raw) != kcrc:
            raise errors.ChecksumError(f"{self.path!r}: the key table fails its checksum",
                                       path=self.path, offset=tail, expected=kcrc,
                                       actual=_crc(raw))
        keys = raw.decode("utf-8").split("\0") if count else []
        if len(keys) != count:
            raise errors.CorruptDatabase(f"{self.path!r}: {len(keys)} keys for {count} rows")
        self._seq, self._count, self._capacity = seq, count, cap
        self._tail = (tail, klen, xlen)
        self._xcrc = xcrc
        self._keys = keys
        self._rows = dict(zip(keys, range(count)))
        self._index_on_disk = xlen > 0

    def _write_slot(self, count: int, capacity: int, tail: int, klen: int, xlen: int,
                    kcrc: int, xcrc: int) -> None:
        self._seq += 1
        body = _SLOT.pack(self._seq, count, capacity, tail, klen, xlen, kcrc, xcrc)
        _pwrite(self._fd, _sealed(body), SLOT_OFFSETS[self._seq % 2])
        os.fsync(self._fd)
        self._index_on_disk = xlen > 0
        self._xcrc = xcrc

    def _map(self) -> None:
        data_end = DATA_OFFSET + self._capacity * self.dimensions * 4
        self._mm = mmap.mmap(self._fd, data_end)
        self._vecs = np.frombuffer(self._mm, dtype="<f4", count=self._capacity * self.dimensions,
                                   offset=DATA_OFFSET).reshape(self._capacity, self.dimensions)

    def _unmap(self) -> None:
        if self._mm is not None:
            self._vecs = np.empty((0, self.dimensions), dtype=np.float32)
            mm, self._mm = self._mm, None
            mm.close()

    def _release(self) -> None:
        self._unmap()
        self._index = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # also drops the flock

    def _commit(self, capacity: int | None = None) -> None:
        """Make the in-memory state the committed one (see the module doc)."""
        cap = self._capacity if capacity is None else capacity
        if not self._dirty and cap == self._capacity:
            return
        assert self._mm is not None
        fd = self._fd
        self._mm.flush()
        keys = "\0".join(self._keys[:self._count]).encode("utf-8")
        old_off, old_k, old_x = self._tail
        old_end = old_off + _align8(old_k) + old_x
        tmp = None
        try:
            if self._index is not None and self._index_dirty:
                tfd, tmp = tempfile.mkstemp(prefix=os.path.basename(self.path) + ".",
                                            suffix=".hnsw.tmp",
                                            dir=os.path.dirname(os.path.abspath(self.path)))
                os.close(tfd)
                self._index.save_index(tmp)
                xlen = os.path.getsize(tmp)
            elif self._index is not None or self._index_on_disk:
                xlen = old_x  # unchanged: copy the committed image
            else:
                xlen = 0
            tail_len = _align8(len(keys)) + xlen
            data_end = DATA_OFFSET + cap * self.dimensions * 4
            at = _align8(data_end)
            if not (at + tail_len <= old_off or at >= old_end):
                at = _align8(max(at, old_end))
            _pwrite(fd, keys, at)
            xcrc = 0
            if tmp is not None:
                src = os.open(tmp, os.O_RDONLY)
                try:
                    xcrc = _copy(src, 0, fd, at + _align8(len(keys)), xlen)
                finally:
                    os.close(src)
            elif xlen:
                xcrc = _copy(fd, old_off + _align8(old_k), fd, at + _align8(len(keys)), xlen)
            os.fsync(fd)
            self._write_slot(self._count, cap, at, len(keys), xlen, _crc(keys), xcrc)
        finally:
            if tmp is not None:
                os.unlink(tmp)
        self._tail = (at, len(keys), xlen)
        self._dirty = False
        self._index_dirty = False
        os.ftruncate(fd, max(data_end, at + tail_len))
        if cap != self._capacity:
            self._unmap()
            self._capacity = cap
            self._map()

    # ------------------------------------------------------------ index
    def _live(self) -> None:
        if self._fd < 0:
            raise errors.ClosedError(f"{self.path!r} is closed")

    def _space(self) -> str:
        return _HNSW_SPACES[self.metric]

    def _load_index(self) -> Any:
        """The HNSW index, loading the committed image on first use."""
        if self._index is None and self._index_on_disk:
            hnswlib = _hnswlib()
            off, klen, xlen = self._tail
            tfd, tmp = tempfile.mkstemp(prefix=os.path.basename(self.path) + ".",
                                        suffix=".hnsw.tmp",
                                        dir=os.path.dirname(os.path.abspath(self.path)))
            try:
                crc = _copy(self._fd, off + _align8(klen), tfd, 0, xlen)
                os.close(tfd)
                tfd = -1
                if crc != self._xcrc:
                    raise errors.ChecksumError(
                        f"{self.path!r}: the saved HNSW index fails its checksum; "
                        "build_index(force=True) rebuilds it", path=self.path,
                        offset=off + _align8(klen), expected=self._xcrc, actual=crc)
                index = hnswlib.Index(space=self._space(), dim=self.dimensions)
                index.load_index(tmp, max_elements=max(self._capacity, 1))
            finally:
                if tfd >= 0:
                    os.close(tfd)
                os.unlink(tmp)
            index.set_ef(self.ef_search)
            self._ef_now = self.ef_search
            self._index = index
        return self._index

    @property
    def has_index(self) -> bool:
        """Whether searches use HNSW (built now or saved in the file)."""
        return self._index is not None or bool(getattr(self, "_index_on_disk", False))

    @locked
    def build_index(self, *, progress: bool = True, force: bool = False) -> None:
        """Build the HNSW index over every stored vector.

        Later inserts join the index as they arrive.  A no-op if an index
        exists (built, or saved in the file) unless ``force``.  The index is
        saved into the file by the next :meth:`checkpoint` or :meth:`close`.

        Args:
            progress: show a progress bar.
            force: rebuild even if an index exists (e.g. after a
                ChecksumError on the saved one).

        Raises:
            MissingDependency: hnswlib is not installed
                (``pip install 'synadb[vectors]'``).
        """
        self._live()
        hnswlib = _hnswlib()
        if self.has_index and not force:
            return
        index = hnswlib.Index(space=self._space(), dim=self.dimensions)
        index.init_index(max_elements=max(self._capacity, 1), M=self.m,
                         ef_construction=self.ef_construction, random_seed=100)
        n = self._count
        with progress_bar(n, "MmapVectorStore build_index", progress) as bar:
            for s in range(0, n, _ROWS_CHUNK):
                e = min(n, s + _ROWS_CHUNK)
                index.add_items(np.array(self._vecs[s:e]), np.arange(s, e), num_threads=-1)
                bar.update(e - s)
        index.set_ef(self.ef_search)
        self._ef_now = self.ef_search
        self._index = index
        self._index_dirty = True
        self._dirty = True

    # ------------------------------------------------------------ writes
    @locked
    def insert_batch(self, keys: Any, vectors: Any, *, progress: bool = True) -> int:
        """Insert or replace vectors by key.

        Args:
            keys: one non-empty str per vector; a known key is replaced, and
                within one call a repeated key keeps its last vector.
            vectors: an (n, dimensions) array-like of finite numbers.
            progress: show a progress bar.

        Returns:
            The number of distinct keys written.

        Raises:
            DimensionMismatch: wrong shape or a non-numeric dtype.
            NonFiniteValue: NaN or infinity.
            InvalidKey: a bad key.
        """
        self._live()
        x = as_matrix(vectors, self.dimensions)
        ks = check_keys(keys, x.shape[0])
        keep = last_wins(ks)
        if keep is not None:
            ks = [ks[i] for i in keep.tolist()]
            x = x[keep]
        n = len(ks)
        if n == 0:
            return 0
        index = self._load_index() if self.has_index else None
        known = self._rows
        rows = np.fromiter((known.get(k, -1) for k in ks), dtype=np.int64, count=n)
        new = np.flatnonzero(rows < 0)
        need = self._count + len(new)
        if need > self._capacity:
            self._commit(max(need, 2 * self._capacity))
        if index is not None and index.get_max_elements() < self._capacity:
            index.resize_index(self._capacity)
        rows[new] = np.arange(self._count, need)
        for i in new.tolist():
            known[ks[i]] = len(self._keys)
            self._keys.append(ks[i])
        self._count = need
        self._dirty = True
        with progress_bar(n, "MmapVectorStore insert", progress) as bar:
            for s in range(0, n, _ROWS_CHUNK):
                r, v = rows[s:s + _ROWS_CHUNK], x[s:s + _ROWS_CHUNK]
                if len(new) == n:  # the common bulk case: one contiguous copy
                    self._vecs[int(r[0]):int(r[-1]) + 1] = v
                else:
                    self._vecs[r] = v
                if index is not None:
                    index.add_items(v, r, num_threads=-1)
                    self._index_dirty = True
                bar.update(len(r))
        if self._sqn is not None:
            self._sqn = None  # recomputed at the next exact search
        return n

    @locked
    def checkpoint(self) -> None:
        """Make everything durable: msync the vectors, save the keys and the
        HNSW index into the file, fsync, commit.  Cheap when nothing changed."""
        self._live()
        self._commit()

    @locked
    def close(self) -> None:
        """Checkpoint and close; idempotent."""
        if self._fd < 0:
            return
        try:
            self._commit()
        finally:
            self._release()

    def __enter__(self) -> MmapVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ reads
    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    @locked
    def get(self, key: str) -> np.ndarray | None:
        """A copy of the vector stored for ``key``, or None."""
        self._live()
        row = self._rows.get(key)
        return None if row is None else np.array(self._vecs[row], dtype=np.float32)

    def search(self, query: Any, k: int = 10, *, ef: int | None = None) -> list[ScoredKey]:
        """The k nearest stored vectors: HNSW once built, else exact.

        Args:
            query: a (dimensions,) vector.
            k: hits to return (fewer if the store is smaller).
            ef: HNSW search beam for this call (default ``ef_search``).

        Returns:
            :class:`ScoredKey` hits, closest first; ``score`` is a distance:
            cosine ``1 - cos``, euclidean the L2 distance, dot_product ``-dot``.

        Raises:
            DimensionMismatch, NonFiniteValue: bad query.
            InvalidArgument: ``k < 1``.
        """
        return self._query(as_query(query, self.dimensions)[None, :], k, ef)[0]

    def search_batch(self, queries: Any, k: int = 10, *,
                     ef: int | None = None) -> list[list[ScoredKey]]:
        """:meth:`search` for each row of an (m, dimensions) array (HNSW
        queries run on all cores)."""
        return self._query(as_matrix(queries, self.dimensions, "queries"), k, ef)

    @locked
    def _query(self, qs: np.ndarray, k: int, ef: int | None) -> list[list[ScoredKey]]:
        self._live()
        k = check_k(k)
        if ef is not None:
            check_int("ef", ef, 1)
        n = self._count
        if n == 0 or len(qs) == 0:
            return [[] for _ in range(len(qs))]
        kk = min(k, n)
        if not self.has_index:
            return [self._exact(q, kk) for q in qs]
        index = self._load_index()
        want = max(ef or self.ef_search, kk)
        if want != self._ef_now:
            index.set_ef(want)
            self._ef_now = want
        labels, dist = index.knn_query(qs, k=kk, num_threads=1 if len(qs) == 1 else -1)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(dist, 0.0))  # hnswlib's l2 is squared
        elif self.metric == "dot_product":
            dist = dist - 1.0  # hnswlib's ip distance is 1 - dot
        keys = self._keys
        return [[ScoredKey(keys[r], s) for r, s in zip(lab, ds)]
                for lab, ds in zip(labels.tolist(), dist.tolist())]

    def _exact(self, q: np.ndarray, k: int) -> list[ScoredKey]:
        n = self._count
        if self.metric != "dot_product" and (self._sqn is None or len(self._sqn) < n):
            self._sqn = np.empty(n, dtype=np.float32)
            for s in range(0, n, _EXACT_CHUNK):
                v = self._vecs[s:min(n, s + _EXACT_CHUNK)]
                self._sqn[s:s + len(v)] = np.einsum("ij,ij->i", v, v)
        qn = float(q @ q)
        best_rows: list[np.ndarray] = []
        best_d: list[np.ndarray] = []
        for s in range(0, n, _EXACT_CHUNK):
            v = self._vecs[s:min(n, s + _EXACT_CHUNK)]
            dots = v @ q
            if self.metric == "cosine":
                assert self._sqn is not None
                denom = np.sqrt(self._sqn[s:s + len(v)] * qn)
                d = 1.0 - np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
            elif self.metric == "euclidean":
                assert self._sqn is not None
                d = self._sqn[s:s + len(v)] - 2.0 * dots + qn
            else:
                d = -dots
            top = top_k(d, min(k, len(d)))
            best_rows.append(top + s)
            best_d.append(d[top])
        rows = np.concatenate(best_rows)
        rows = rows[top_k(np.concatenate(best_d), k)]
        final = exact_scores(self._vecs[rows], q, self.metric)
        order = np.lexsort((rows, final))
        return [ScoredKey(self._keys[int(rows[i])], float(final[i])) for i in order]

    @property
    def capacity(self) -> int:
        """Rows the file holds before it grows."""
        return self._capacity

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"{self._count} vectors"
        return f"MmapVectorStore({self.path!r}, dimensions={self.dimensions}, {state})"
