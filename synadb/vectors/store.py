"""VectorStore: embeddings with metadata in one synadb file.

Use it when you want a drop-in vector store (LangChain, LlamaIndex and
Haystack adapters sit on top of it) that keeps vectors, metadata and the
ANN index in one file, opens fast, and survives crashes like the rest of
synadb.  Below ``index_threshold`` live vectors it searches exactly; above
it, an HNSW index (hnswlib) answers, and is persisted in the same file so
that reopening does not rebuild it.

Scores are distances: lower is closer, for every metric.

- ``cosine``: ``1 - cos(q, v)``, in [0, 2]
- ``euclidean``: the L2 distance ``|q - v|``
- ``dot_product``: ``-(q · v)``

>>> import tempfile, os
>>> with VectorStore(os.path.join(tempfile.mkdtemp(), "v.db"), dimensions=2) as vs:
...     vs.insert("east", [1.0, 0.0], {"kind": "axis"}); vs.insert("north", [0.0, 1.0])
...     [r.key for r in vs.search([0.9, 0.1], k=2)]
['east', 'north']

Storage: a vector inserted on its own is a bytes value under ``v/<key>``
(a small header, the float32 vector, then the metadata as JSON); a batch
from ``insert_batch`` is written as a few large records under
``__vs__/bulk/<seq>-<id>`` (a key table, the metadata, then one contiguous
float32 block), so that a million vectors cost a few records, not a million.
A ``v/<key>`` record outranks every block row of that key (a delete of a
key that a block holds writes a tombstone there), and of two blocks holding
a key the later one counts.  FORMAT.md spells out the layout.  The index
snapshot (hnswlib's graph, labels and metadata; not the vectors, which
stay in their records only) lives under ``__vs__/snap/*`` with the log
offset it covers; on open, only records after that offset are replayed.
The snapshot is a cache: one that is damaged, implausible or out of step
with the records is rebuilt from them.  It is written latest-only
(compaction keeps just the newest), at the end of a write once enough
changed, and at close or interpreter exit (see ``_SNAP_BATCH_DIVISOR``), so
that a writer that never calls close() still leaves one and no open
rebuilds an index that was built before.

Damage: a key whose record is damaged is never returned as data.  It is
left out of keys(), len() and search, and get() raises ChecksumError when
the engine can still tell whose record it is (a damaged value); a record
whose head is unreadable cannot be pinned on a key, so the key is simply
absent.  ``SynaDB.verify()`` lists both.
"""

from __future__ import annotations

import atexit
import copy
import functools
import json
import os
import struct
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np

from .. import errors
from ..db import DbConfig, Storage, SynaDB
from ..report import ComponentReport
from ..engine import format as fmt
from .filters import Column, Unsupported, compile_filter, filter_mask
from .quantized import MEMORY_MODES, QUANTIZATIONS, QuantizedIndex

__all__ = ["VectorStore", "SearchResult", "METRICS"]

METRICS = ("cosine", "euclidean", "dot_product")
_ALIASES = {"cosine": "cosine", "cos": "cosine", "euclidean": "euclidean", "l2": "euclidean",
            "dot_product": "dot_product", "dot": "dot_product", "ip": "dot_product",
            "inner_product": "dot_product"}
_SPACE = {"cosine": "cosine", "euclidean": "l2", "dot_product": "ip"}
_MAX_DIMS = 8192
_REC = struct.Struct("<BI")  # record version, dimensions (0: no vector)
_REC_VERSION = 1
_TOMB_VERSION = 2  # a deleted key that a block still holds (the record outranks the block)
_TOMB = _REC.pack(_TOMB_VERSION, 0)
_CONFIG = "__vs__/config"
_CONFIG_VERSION = 2  # 2: bulk blocks and tombstones may be present
_SNAP = "__vs__/snap/"
_SNAP_VERSION = 3  # 3: the graph's nodes may be stored without their vectors
# When a snapshot is written (see _snapshot_due).  A snapshot costs a write
# of the whole index (the graph and the labels; the vectors too while no
# graph holds them all); what it saves is the replay, at every later open, of
# the changes made since the last one (re-adding them to the graph costs
# ~0.6 ms a vector at 384 dimensions, M=16, ef_construction=200, on 2 cores;
# a rebuild of 15K vectors ~2.5 s, their graph's snapshot ~3 MB).
# - At the end of a write (insert, insert_batch, delete...): once the changes
#   reach a tenth of the labels (and at least _SNAP_MIN_CHANGES).  Snapshot
#   bytes then stay within ~10x the bytes of the vectors changed, a process
#   killed at any moment leaves a replay of at most ~10% of a rebuild, and a
#   long ingest of single inserts writes a snapshot every 10% of growth, not
#   at every insert.
# - At close(), flush() and interpreter exit: once they reach a hundredth of
#   the labels, so that the next opens (read-only ones included: they never
#   write one) replay at most ~1% of a rebuild; a session that adds a few
#   documents to a large store writes no snapshot at all (a full snapshot per
#   session made files grow by a whole index each time).
# - Always when the index was (re)built and no snapshot holds it yet: no open
#   should ever rebuild an index that was built before.
_SNAP_PARTS = [_SNAP + name for name in (
    "keys", "alive", "src_blk", "src_row", "shadow", "meta", "mat", "hnsw/data_level0",
    "hnsw/link_lists", "hnsw/element_levels", "hnsw/label_lookup_external",
    "hnsw/label_lookup_internal", "dead", "usearch")]
_SNAP_BATCH_DIVISOR = 10
_SNAP_MIN_CHANGES = 1000
_SNAP_CLOSE_DIVISOR = 100
_PREFIX = "v/"
_BULK = "__vs__/bulk/"
# Block value header: version, dimensions, rows, sequence, key table bytes,
# metadata bytes, zero padding to 64 bytes.
_BLOCK_HEAD = struct.Struct("<B3xIQQQQ24x")
_BLOCK_VERSION = 1
_BLOCK_FLOAT_BYTES = 1 << 28  # rows per block record: at most 256 MiB of floats
# Filtered search (see _search_index).  A filter that leaves at most
# _EXACT_FILTER_FLOATS / dimensions vectors is answered exactly, by matrix
# products over the matching rows: 4000 x 384 cost ~0.5 ms on 2 cores, about
# twice an unfiltered HNSW search, and far less than a walk of the graph that
# must step over ~99 vectors it may not return for each it may.  So is one
# that leaves at most _EXACT_FILTER_SHARE of them (up to _EXACT_FILTER_ROWS):
# slower (~1-2 ms at 5-8% of 100K), but the graph's answers at those shares
# measured recall@10 0.92.  Above both, the graph is searched unfiltered for
# enough neighbours that k of them are allowed (_search_overfetch), and
# failing that with the mask as hnswlib's filter, ef raised as the share falls.
_EXACT_FILTER_FLOATS = 1_500_000
_EXACT_FILTER_SHARE = 0.08
_EXACT_FILTER_ROWS = 20_000
# The rows of the last few filters searched exactly are kept (up to
# _FILTER_CACHE_BYTES in all): RAG apps filter by the same tenant, source or
# category again and again, and a product over rows already gathered costs a
# fraction of gathering them (8000 x 384: ~0.3 ms against ~1.5 ms).
_FILTER_CACHE_MIN_ROWS = 512
_FILTER_CACHE_BYTES = 64 << 20
_OVERFETCH = 1.5  # neighbours fetched: this many times k / share (see _search_overfetch)
_OVERFETCH_MAX = 4096
_EMPTY: dict[str, Any] = {}  # the metadata of every record without any; never mutated
# What a snapshot's records can raise when they are damaged or implausible
# (hnswlib reports a state it rejects as RuntimeError).
_BAD_SNAPSHOT = (errors.SynaError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                 RuntimeError, MemoryError, OverflowError, struct.error)


class SearchResult(NamedTuple):
    """One hit: ``score`` is a distance (lower is closer)."""

    key: str
    score: float
    metadata: dict[str, Any]
    vector: np.ndarray | None = None


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    # One handle may be used from several threads (async frameworks run sync
    # calls in executors); the in-memory state changes together with the file.
    @functools.wraps(method)
    def wrapper(self: "VectorStore", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return cast(_F, wrapper)


# Writable stores still open, for the snapshot at interpreter exit: many
# callers never close (Haystack's store protocol has no close(), scripts just
# end), and without it every later open would replay their whole session.
_OPEN: "weakref.WeakSet[VectorStore]" = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for vs in list(_OPEN):
        vs._close_at_exit()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serializable")


def _dump_meta(key: str, metadata: Mapping[str, Any] | None) -> bytes:
    if metadata is None:
        return b""
    if not isinstance(metadata, Mapping):
        raise errors.InvalidArgument(f"{key!r}: metadata must be a dict, not "
                                     f"{type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False,
                          default=_json_default, allow_nan=True).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise errors.InvalidArgument(f"{key!r}: metadata is not JSON-serializable: "
                                     f"{type(e).__name__}: {e}") from None


def _load_meta(raw: bytes | memoryview) -> dict[str, Any]:
    return json.loads(bytes(raw)) if len(raw) else {}


class VectorReport(ComponentReport):
    """What :meth:`VectorStore.verify` found."""

    label = "vectors"


class VectorStore:
    """Vectors with metadata, searched exactly or through HNSW.

    Args:
        path: the database file (one file; created if missing).
        dimensions: vector size, 1..8192.  ``None`` takes it from the file,
            or from the first vector inserted.
        metric: ``"cosine"``, ``"euclidean"`` or ``"dot_product"``.
        m, ef_construction, ef_search: HNSW knobs (hnswlib's M, efConstruction, ef).
        index_threshold: build the HNSW index once this many vectors are live.
        progress: tqdm bars on long operations (in a terminal).
        read_only: open for reading; sees another process's inserts.
        quantization: ``None`` (float32 hnswlib graph), or ``"f16"``,
            ``"i8"`` or ``"binary"``: the graph walks compact codes (half,
            a quarter, a thirty-second of the bytes) and the best candidates
            are re-ranked exactly on the float32 vectors in the file, so
            scores stay exact (see :mod:`synadb.vectors.quantized`).  Kept
            in the file: later opens may leave it out.  Needs usearch.
        memory: ``"ram"`` loads the index snapshot; ``"mapped"`` serves the
            graph from the file's pages (no copy at open, pages the kernel
            may drop), and keeps no float32 matrix in RAM either.  A store
            created with ``memory="mapped"`` or a quantization keeps its
            vectors only in the file once its index is built.

    Raises:
        DimensionMismatch: ``dimensions`` disagrees with the file.
        InvalidArgument: an unknown metric, or a metric that disagrees with the file.
    """

    def __init__(self, path: str | os.PathLike[str], dimensions: int | None = None,
                 metric: str = "cosine", *, m: int = 16, ef_construction: int = 200,
                 ef_search: int = 100, index_threshold: int = 10_000, progress: bool = True,
                 read_only: bool = False, sync_on_write: bool = False,
                 lock_timeout_s: float | None = None, quantization: str | None = None,
                 memory: str = "ram") -> None:
        if quantization in ("f32", "float32", "none"):
            quantization = None
        if quantization not in QUANTIZATIONS:
            raise errors.InvalidArgument(
                f"unknown quantization {quantization!r}; use None, 'f16', 'i8' or 'binary'")
        if memory not in MEMORY_MODES:
            raise errors.InvalidArgument(f"memory must be 'ram' or 'mapped', got {memory!r}")
        want_metric = _ALIASES.get(str(metric).lower()) if isinstance(metric, str) else None
        if want_metric is None:
            raise errors.InvalidArgument(
                f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if dimensions is not None:
            _check_dims(dimensions)
        for name, v in (("m", m), ("ef_construction", ef_construction),
                        ("ef_search", ef_search)):
            if not isinstance(v, int) or v < 2:
                raise errors.InvalidArgument(f"{name} must be an int >= 2, got {v!r}")
        cfg = DbConfig(read_only=read_only, sync_on_write=sync_on_write,
                       enable_compression=False, progress=progress)
        if lock_timeout_s is not None:
            cfg.lock_timeout_s = lock_timeout_s
        self._lock = threading.RLock()
        self._db = SynaDB(path, config=cfg)
        self.path = self._db.path
        self.progress = progress
        try:
            stored = self._db.get_text(_CONFIG)
            if stored is not None:
                conf = json.loads(stored)
                if conf.get("version", 1) > _CONFIG_VERSION:
                    raise errors.FormatVersionError(
                        f"{self.path!r} holds a vector store of layout {conf['version']}; "
                        f"this synadb reads up to {_CONFIG_VERSION}: upgrade synadb")
                self._conf_version = conf.get("version", 1)
                if dimensions is not None and conf["dimensions"] not in (None, dimensions):
                    raise errors.DimensionMismatch(
                        f"{self.path!r} holds {conf['dimensions']}-dimensional vectors, "
                        f"not {dimensions}")
                if conf["metric"] != want_metric and metric != "cosine":
                    raise errors.InvalidArgument(
                        f"{self.path!r} uses metric {conf['metric']!r}, not {want_metric!r}")
                self.dimensions = conf["dimensions"] or dimensions
                self.metric = conf["metric"]
                stored_q = conf.get("quantization")
                stored_kind = conf.get("index", "hnswlib")
                if quantization is not None and quantization != stored_q:
                    raise errors.InvalidArgument(
                        f"{self.path!r} was created with quantization={stored_q!r}, not "
                        f"{quantization!r}: create a new store to change it")
                if memory == "mapped" and stored_kind != "usearch":
                    raise errors.InvalidArgument(
                        f"{self.path!r} was created without memory='mapped' or a "
                        "quantization: its float32 hnswlib index cannot be served from the "
                        "file's pages; create the store with memory='mapped' to serve it so")
                self.quantization = stored_q
                self._index_kind = stored_kind
            else:
                self.dimensions = dimensions
                self.metric = want_metric
                self._conf_version = _CONFIG_VERSION
                self.quantization = quantization
                self._index_kind = "usearch" if (quantization is not None
                                                 or memory == "mapped") else "hnswlib"
            self.memory = memory
            if quantization is not None or memory == "mapped":
                try:  # asked for by name: say now what is missing, not at the build
                    import usearch.index  # noqa: F401
                except ImportError:
                    raise errors.MissingDependency(
                        "usearch", "vectors", "quantized or memory-mapped vector indexes"
                    ) from None
            self.m = m
            self.ef_construction = ef_construction
            self.ef_search = ef_search
            self.index_threshold = index_threshold
            if stored is None and not read_only:
                self._save_config()
            self._rebuilt: list[str] = []  # what opening worked around (see verify)
            self._builds = 0  # HNSW builds from the records by this handle
            self._reset()
            self._load()
        except BaseException:
            self._db.close()
            raise
        if not read_only:
            self._pid = os.getpid()  # a forked child must not close its parent's store
            _OPEN.add(self)

    # ----------------------------------------------------------- lifecycle
    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> SynaDB:
        """The store's :class:`SynaDB` handle, for components that keep their
        own keys in the same file (a full-text index beside the vectors)."""
        return self._db

    @contextmanager
    def transaction(self) -> Iterator["VectorStore"]:
        """One all-or-nothing batch for this store's writes and any other
        writes made through :attr:`db` inside it (under the store's lock)."""
        with self._lock, self._db.batch():
            yield self

    @_locked
    def close(self) -> None:
        """Persist the index snapshot if it is stale, then close the file.

        Not closing loses nothing: a snapshot is also written when a write
        changed enough, and at interpreter exit (see ``_snapshot_due``).
        """
        _OPEN.discard(self)
        if self._db.closed:
            return
        try:
            if not self._db.config.read_only and self._snapshot_due(closing=True):
                self._write_snapshot()
        finally:
            self._db.close()

    def _close_at_exit(self) -> None:
        """close() from the atexit hook: never from a forked child (the
        store is its parent's), never waiting long for a thread that still
        holds the lock, never raising at exit."""
        if getattr(self, "_pid", None) != os.getpid() or not self._lock.acquire(timeout=5.0):
            return
        try:
            self.close()
        except Exception as e:  # noqa: BLE001 - at exit: say it, do not raise
            from ..report import describe, warn

            warn(self.path, f"the index snapshot was not written at exit: {describe(e)}")
        finally:
            self._lock.release()

    @_locked
    def flush(self) -> None:
        """Make every write durable (fsync), and snapshot the index if it
        changed enough since the last snapshot (as close() does)."""
        self._check_writable()
        if self._snapshot_due(closing=True):
            self._write_snapshot()
        self._db.sync()

    @property
    def closed(self) -> bool:
        return self._db.closed

    @_locked
    def verify(self) -> "VectorReport":
        """Scan the file (``SynaDB.verify``) and say what concerns the store:
        damaged vector records (``problems``, by key) and derived records it
        had to rebuild (``rebuilt``: the index snapshot is a cache)."""
        report = VectorReport(self._db.verify(), rebuilt=list(self._rebuilt))
        for d in report.engine.damaged:
            if d.key is not None and d.key.startswith(_PREFIX):
                report.problems.append(f"the record of vector {d.key[len(_PREFIX):]!r} at "
                                       f"offset {d.offset} is damaged")
            elif d.key is not None and d.key.startswith("__vs__/bulk/"):
                report.problems.append(f"the block {d.key!r} at offset {d.offset} is damaged")
        return report

    @_locked
    def index_info(self) -> dict[str, Any]:
        """What answers searches: ``kind`` (``"exact"``, ``"hnswlib"`` or
        ``"usearch"``), ``quantization``, ``memory``, whether the graph is
        served from the file's pages (``mapped``), and the RAM its graph
        and any float32 matrix hold (``ram_bytes``)."""
        self._readable()
        index = self._index
        if index is None:
            kind, graph, mapped = "exact", 0, False
        elif isinstance(index, QuantizedIndex):
            kind, graph, mapped = "usearch", index.memory_bytes(), index.mapped
        else:
            kind, mapped = "hnswlib", False
            graph = index.get_max_elements() * (self.dimensions * 4 + self.m * 8 + 16)
        return {"kind": kind, "quantization": self.quantization, "memory": self.memory,
                "mapped": mapped, "vectors": len(self._label),
                "ram_bytes": int(graph + self._matrix.nbytes)}

    def __repr__(self) -> str:
        return (f"VectorStore({self.path!r}, dimensions={self.dimensions}, "
                f"metric={self.metric!r}, {'closed' if self.closed else f'{len(self)} vectors'})")

    # -------------------------------------------------------------- state
    def _reset(self) -> None:
        d = self.dimensions or 1
        self._label: dict[str, int] = {}  # key -> label of its live vector
        self._keys: list[str | None] = []  # label -> key (None: dead)
        self._meta: dict[str, dict[str, Any]] = {}  # key -> metadata, every live record
        self._matrix = np.zeros((0, d), dtype=np.float32)  # label -> vector (unit for cosine)
        self._mat_src: Callable[[], np.ndarray | None] | None = None  # see _mat
        self._alive = np.zeros(0, dtype=bool)
        # Where each label's vector is stored: a block (index into _blocks)
        # and its row there, or -1: in the key's own v/<key> record.
        self._src_blk = np.zeros(0, dtype=np.int32)
        self._src_row = np.zeros(0, dtype=np.int64)
        self._blocks: list[str | None] = []  # block keys (None: deleted)
        self._block_of: dict[str, int] = {}  # block key -> index in _blocks
        self._block_at: dict[int, tuple[int, int]] = {}  # index -> (vectors offset, dims)
        self._seq = 0  # highest block sequence number seen
        # Keys whose v/<key> record (a vector, metadata or a tombstone)
        # overrides a row that some block holds for them.
        self._shadow: set[str] = set()
        self._index: Any = None
        self._indexed = 0  # labels [0, _indexed) are in the index
        self._seen_end = 0  # log offset our state reflects
        # label -> 1: its vector came from the snapshot, its v/<key> record
        # was not read since (see search).  None: no such label.
        self._unverified: bytearray | None = None
        self._snap_end = 0  # log offset of the last snapshot (0: none)
        self._dirty_since_snap = 0  # labels added or dropped since that snapshot
        self._snap_due = False  # the index was built and no snapshot holds it yet
        self._replayed = 0  # records replayed after the snapshot at open
        self._damaged_at_load: list[str] | None = None  # see _gather_vectors
        # Metadata by field for filtered search (see _column): built on
        # first use, extended as labels are added, dropped with _keys.
        self._cols: dict[str, Column] = {}
        self._cols_of: list[str | None] | None = None
        self._gather_buf: np.ndarray | None = None  # see _distances
        self._filter_cache: tuple[Any, dict[bytes, np.ndarray], list[int]] | None = None
        # Lean: the index is a QuantizedIndex and no float32 matrix is kept
        # in RAM; rows are read from the records (see _rows).  Until the
        # rows being added are indexed they wait in _pending (start label,
        # rows); block vectors are mapped once per block (_block_vecs).
        self._lean = False
        self._pending: tuple[int, np.ndarray] | None = None
        self._block_vecs: dict[int, np.ndarray] = {}

    @property
    def _mat(self) -> np.ndarray:
        """label -> vector (unit length for cosine), built on first use.

        After a reopen the vectors live in the HNSW graph; gathering them
        costs ~0.1 s per 100K x 384 and is needed only by exact search and
        by inserts, so it waits until one of them asks.
        """
        src = self._mat_src
        if src is not None:
            self._mat_src = None
            mat = src()
            if mat is None:
                raise errors.CorruptDatabase(
                    f"{self.path!r}: the index snapshot does not hold every vector; "
                    "compact() rebuilds it")
            self._matrix = mat
        return self._matrix

    @_mat.setter
    def _mat(self, value: np.ndarray) -> None:
        self._mat_src = None
        self._matrix = value

    def _save_config(self) -> None:
        conf = {"version": self._conf_version, "dimensions": self.dimensions,
                "metric": self.metric}
        if self._index_kind != "hnswlib":
            # Older synadb ignores these fields: it builds its own index.
            conf["index"] = self._index_kind
            conf["quantization"] = self.quantization
        self._db.put_text(_CONFIG, json.dumps(conf))

    def _load(self) -> None:
        db = self._db
        self._salt = db.storage.salt()
        builds = self._builds
        end = self._load_snapshot()
        if end is None:
            damaged = db.exists(_SNAP + "info")
            if damaged:
                self._rebuilt.append("the index snapshot (__vs__/snap/*) could not be used "
                                     "(damaged, or taken before a compaction); the store was "
                                     "rebuilt from its vector records")
            self._reset()
            # The offset first: keys() may also see records written after
            # it, and the next refresh applies those again, which is
            # harmless.  Taken after, it could pass over records that keys()
            # did not see, and they would never be applied.
            end = db.storage.log_end()
            self._apply_changes(db.keys(), progress_desc="load vectors")
            if damaged:
                self._snap_due = True  # a writable handle saves a good snapshot again
        if self._builds != builds and not self._rebuilt:
            # Built from the records at open: no snapshot held the index
            # (its writer ended before one was due, or the replay after the
            # snapshot crossed index_threshold).
            self._rebuilt.append("the HNSW index was built from the vector records at open: "
                                 "no index snapshot (__vs__/snap/*) held it")
        self._seen_end = end

    def _refresh(self) -> None:
        """Take in what other handles wrote since we last looked."""
        changed, end = self._db.storage.keys_written_since(self._seen_end)  # also follows a swap
        if self._db.storage.salt() != self._salt:
            # Another handle compacted the file: offsets mean nothing now.
            self._reset()
            self._load()
            return
        if changed:
            self._apply_changes(changed)
        self._seen_end = end

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Write under the file's lock, caught up first, all or nothing.

        Holding the lock from the catch-up to the end of our write means no
        other handle's record can fall between them, so afterwards our state
        is exactly the file's.
        """
        with self._db.batch():
            self._refresh()
            yield
            # Still under the lock: after the batch another writer may
            # append before we could look, and its records must not count
            # as seen.
            end = self._db.storage.log_end()
        self._seen_end = end

    def _apply_changes(self, names: Iterable[str], progress_desc: str | None = None) -> None:
        """Make memory agree with the file for these engine keys (``v/<key>``
        and block keys; others are ignored).

        Which record holds a key is decided without log offsets (compaction
        reorders records): a ``v/<key>`` record outranks every block, and of
        two blocks the one with the higher sequence number counts.  A bulk
        write deletes the ``v/<key>`` of each key it moves into its block, so
        a ``v/<key>`` gone since we last looked means "moved into a block"
        when a block we just read holds the key, and "deleted" otherwise.
        """
        db = self._db
        vkeys: list[str] = []
        blocks = []
        for name in names:
            if name.startswith(_PREFIX):
                vkeys.append(name[len(_PREFIX):])
            elif name.startswith(_BULK):
                try:
                    got = self._read_block(name, refresh=False)
                except errors.ChecksumError:
                    got = None  # damaged: none of its rows can be trusted
                if got is None:
                    self._drop_block(name)
                else:
                    blocks.append(got)
        placed: set[str] = set()
        for blk in sorted(blocks, key=lambda b: b[1]):
            self._place_block(*blk)
            placed.update(blk[2])
        it: Iterable[str] = vkeys
        if progress_desc and len(vkeys) > 50_000:
            it = _bar(vkeys, progress_desc, self.progress)
        add_keys: list[str] = []
        add_vecs: list[np.ndarray] = []
        shadow = self._shadow
        for key in it:
            # Without a refresh: the file as of the keys we were given, so a
            # key moved into a block since then is not taken for deleted.
            try:
                raw = db.storage.value_view(_PREFIX + key, refresh=False)
            except errors.ChecksumError:
                # What it held is unknown: the key is left out (get reports
                # the damage), and it still outranks any block row.
                in_block = key in shadow or key in placed or self._in_block(key)
                self._forget(key)
                if in_block:
                    shadow.add(key)
                continue
            if raw is None:
                if key not in placed:
                    self._forget(key)
                    shadow.discard(key)
                continue
            in_block = key in shadow or key in placed or self._in_block(key)
            vec, meta = self._decode(key, raw)
            self._forget(key)
            if in_block:
                shadow.add(key)
            if meta is None:  # a tombstone
                continue
            self._meta[key] = meta
            if vec is not None:
                add_keys.append(key)
                add_vecs.append(vec)
        if add_keys:
            self._add_rows(add_keys, np.vstack(add_vecs))

    def _in_block(self, key: str) -> bool:
        """Whether a block holds a row for ``key`` that counts (or would, but
        for a v/<key> record)."""
        if key in self._shadow:
            return True
        label = self._label.get(key)
        return label is not None and self._src_blk[label] >= 0

    # -------------------------------------------------------------- blocks
    def _read_block(self, name: str, refresh: bool = True):
        """(name, seq, keys, metadata texts or None, vectors) of a block, or None.

        The vectors are a zero-copy view of the (CRC-checked) record.
        """
        view = self._db.storage.value_view(name, refresh=refresh)
        if view is None:
            return None
        try:
            ver, dims, n, seq, kb, mb = _BLOCK_HEAD.unpack_from(view, 0)
        except struct.error:
            ver = -1
        at = _BLOCK_HEAD.size + kb + mb if ver == _BLOCK_VERSION else 0
        if ver != _BLOCK_VERSION or at + 4 * n * dims != len(view) \
                or (self.dimensions is not None and n and dims != self.dimensions):
            raise errors.CorruptDatabase(f"{self.path!r}: {name!r} is not a vector block "
                                         "this synadb understands")
        keys = bytes(view[_BLOCK_HEAD.size:_BLOCK_HEAD.size + kb]).decode("utf-8").split("\0")
        metas = bytes(view[_BLOCK_HEAD.size + kb:at]).split(b"\0") if mb else None
        if len(keys) != n or (metas is not None and len(metas) != n):
            raise errors.CorruptDatabase(f"{self.path!r}: {name!r} has a bad key table")
        vecs = np.frombuffer(view, dtype="<f4", count=n * dims, offset=at).reshape(n, dims)
        return name, seq, keys, metas, vecs, at

    def _place_block(self, name: str, seq: int, keys: list[str], metas: list[bytes] | None,
                     vecs: np.ndarray, at: int) -> None:
        """Every key of a block now lives in it (a newer block than any we had)."""
        if name in self._block_of:
            self._drop_block(name)
        idx = self._new_block(name, seq, at, vecs.shape[1])
        meta = self._meta
        shadow = self._shadow
        for key in keys:
            if key in meta:
                self._forget(key)
            # Its bulk write deleted any v/<key>: nothing shadows the row now.
            shadow.discard(key)
        if metas is None:
            meta.update(dict.fromkeys(keys, _EMPTY))
        else:
            for key, raw in zip(keys, metas):
                meta[key] = _load_meta(raw) if raw else _EMPTY
        if keys:
            self._add_rows(keys, vecs, blk=idx)

    def _drop_block(self, name: str) -> None:
        """A block was deleted: keys that still lived in it are gone too."""
        idx = self._block_of.pop(name, None)
        if idx is None:
            return
        self._blocks[idx] = None
        self._block_at.pop(idx, None)
        self._block_vecs.pop(idx, None)
        n = len(self._keys)
        for label in np.flatnonzero(self._alive[:n] & (self._src_blk[:n] == idx)).tolist():
            key = self._keys[label]
            if key is not None:
                self._forget(key)

    def _block_row(self, label: int) -> np.ndarray | None:
        """The stored vector of a label whose row is in a block (a copy)."""
        idx = int(self._src_blk[label])
        name = self._blocks[idx]
        view = self._db.storage.value_view(name, refresh=False) if name is not None else None
        if view is None:
            return None
        at, dims = self._block_at[idx]
        row = int(self._src_row[label])
        return np.frombuffer(view, dtype="<f4", count=dims, offset=at + 4 * dims * row).copy()

    def _decode(self, key: str, raw: bytes | memoryview
                ) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        """(vector or None, metadata); metadata None means a tombstone."""
        try:
            ver, dims = _REC.unpack_from(raw, 0)
            if ver == _TOMB_VERSION:
                return None, None
            if ver == _REC_VERSION:
                end = _REC.size + 4 * dims
                vec = np.frombuffer(raw, dtype="<f4", count=dims, offset=_REC.size) \
                    if dims else None
                meta = _load_meta(raw[end:])
                if type(meta) is dict:
                    return vec, meta
        except (struct.error, ValueError):  # too short, or metadata that is not JSON
            pass
        raise errors.CorruptDatabase(f"{key!r}: its record in {self.path!r} is not a vector "
                                     "record this synadb understands")

    def _drop_damaged(self, key: str) -> None:
        """Leave out a key whose record turned out damaged (get reports it)."""
        if key not in self._meta:
            return
        in_block = self._in_block(key)
        self._forget(key)
        if in_block:
            self._shadow.add(key)  # the damaged record still outranks the row
        self._dirty_since_snap += 1

    def _forget(self, key: str) -> None:
        self._meta.pop(key, None)
        label = self._label.pop(key, None)
        if label is not None:
            self._keys[label] = None
            self._alive[label] = False
            if self._index is not None and label < self._indexed:
                self._index.mark_deleted(label)

    def _remember(self, key: str, vec: np.ndarray | None, meta: dict[str, Any]) -> None:
        self._forget(key)
        self._meta[key] = meta
        if vec is None:
            return
        self._add_rows([key], vec.reshape(1, -1))

    def _row_buffer(self, start: int, need: int) -> np.ndarray:
        """Where the rows of new labels [start, need) are to be written
        (unit length for cosine): the matrix, or, lean, a buffer they wait
        in until _add_rows has indexed them."""
        if not self._lean:
            return self._reserve(need)[start:need]
        pend = self._pending
        if pend is not None and pend[0] == start and len(pend[1]) == need - start:
            return pend[1]  # insert_batch filled it already (see _add_rows)
        self._reserve_labels(need)
        buf = np.empty((need - start, self.dimensions), dtype=np.float32)
        self._pending = (start, buf)
        return buf

    def _reserve_labels(self, need: int) -> int:
        cap = len(self._alive)
        if need > cap:
            cap = max(need, int(cap * 1.5) + 16)
            for name in ("_alive", "_src_blk", "_src_row"):
                old = getattr(self, name)
                grown = np.zeros(cap, dtype=old.dtype)
                grown[:len(old)] = old
                setattr(self, name, grown)
        return cap

    def _reserve(self, need: int) -> np.ndarray:
        """Room for labels [0, need); returns the (materialized) matrix."""
        cap = self._reserve_labels(need)
        mat = self._mat
        if mat.shape[1] != self.dimensions:
            mat = self._mat = np.zeros((0, self.dimensions), dtype=np.float32)
        if need > len(mat):
            start = len(self._keys)
            grown = np.zeros((cap, self.dimensions), dtype=np.float32)
            grown[:start] = mat[:start]
            mat = self._mat = grown
        return mat

    def _add_rows(self, keys: Sequence[str], mat: np.ndarray | None, blk: int = -1,
                  norms: np.ndarray | None = None,
                  label_map: dict[str, int] | None = None) -> None:
        """Give each key a new label holding its vector (already validated).

        ``blk`` >= 0: the rows are rows 0.. of that block.  ``mat`` None: the
        caller has already written the rows into ``_mat`` (see insert_batch).
        """
        n = len(keys)
        start = len(self._keys)
        need = start + n
        if self.dimensions is None:
            self.dimensions = mat.shape[1]
        block = self._row_buffer(start, need)
        if mat is not None:
            _fill_rows(block, mat, self.metric, norms)
        self._alive[start:need] = True
        self._src_blk[start:need] = blk
        self._src_row[start:need] = np.arange(n) if blk >= 0 else -1
        self._keys.extend(keys)
        if label_map is None:
            self._label.update(zip(keys, range(start, need)))
        elif self._label:
            self._label.update(label_map)
        else:
            self._label = label_map  # built for exactly these labels
        self._dirty_since_snap += n
        try:
            if self._index is not None:
                self._index_rows(start, need)
            elif len(self._label) >= self.index_threshold:
                self._build_index(progress=self.progress, warn_missing=True)
        finally:
            self._pending = None  # lean: indexed, and in the file

    # ------------------------------------------------------------ writes
    def _check_writable(self) -> None:
        if self._db.closed:
            raise errors.ClosedError(f"{self.path!r} is closed")
        if self._db.config.read_only:
            raise errors.ReadOnlyError(f"{self.path!r} is open read-only")

    def _vector(self, key: str, vector: Any) -> np.ndarray:
        if type(vector) is np.ndarray and vector.dtype == np.float32 and vector.ndim == 1 \
                and vector.shape[0] == self.dimensions:
            if not np.isfinite(vector).all():
                raise errors.InvalidArgument(f"{key!r}: the vector has NaN or infinity")
            return vector
        arr = np.asarray(vector)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                       or np.issubdtype(arr.dtype, np.integer)):
            raise errors.DimensionMismatch(f"{key!r}: a vector must be numeric, got dtype "
                                           f"{arr.dtype}")
        if arr.ndim != 1:
            raise errors.DimensionMismatch(f"{key!r}: a vector must be 1-D, got shape {arr.shape}")
        if self.dimensions is None:
            _check_dims(arr.shape[0])
        elif arr.shape[0] != self.dimensions:
            raise errors.DimensionMismatch(
                f"{key!r}: expected {self.dimensions} dimensions, got {arr.shape[0]}")
        with np.errstate(over="ignore", invalid="ignore"):
            arr = arr.astype("<f4")
        if not np.isfinite(arr).all():
            raise errors.InvalidArgument(
                f"{key!r}: the vector has NaN, infinity, or a value too large for float32")
        return arr

    def _encode(self, vec: np.ndarray | None, meta_raw: bytes) -> bytes:
        if vec is None:
            return _REC.pack(_REC_VERSION, 0) + meta_raw
        return _REC.pack(_REC_VERSION, len(vec)) + vec.tobytes() + meta_raw

    @_locked
    def insert(self, key: str, vector: Any, metadata: Mapping[str, Any] | None = None) -> None:
        """Insert or replace ``key``.  ``vector=None`` stores metadata only
        (such a record is never returned by search).

        Raises:
            DimensionMismatch: wrong shape or a non-numeric dtype.
            InvalidArgument: NaN/inf in the vector, or metadata that is not JSON.
        """
        _check_key(key)
        self._check_writable()
        vec = None if vector is None else self._vector(key, vector)
        meta_raw = _dump_meta(key, metadata)
        first_dims = False
        try:
            with self._writing():
                if vec is not None and self.dimensions is not None \
                        and len(vec) != self.dimensions:  # another handle set them
                    raise errors.DimensionMismatch(
                        f"{key!r}: expected {self.dimensions} dimensions, got {len(vec)}")
                first_dims = self.dimensions is None and vec is not None
                if first_dims:
                    self.dimensions = len(vec)
                    self._save_config()
                in_block = self._in_block(key)
                self._db.put_bytes(_PREFIX + key, self._encode(vec, meta_raw))
        except BaseException:
            if first_dims:
                self.dimensions = None
            raise
        self._remember(key, vec, _load_meta(meta_raw) if meta_raw else _EMPTY)
        if in_block:
            self._shadow.add(key)
        self._maybe_snapshot()

    @_locked
    def insert_batch(self, keys: Sequence[str], vectors: Any,
                     metadatas: Sequence[Mapping[str, Any] | None] | None = None) -> int:
        """Insert or replace many keys at once (all or nothing).  Returns the count.

        ``vectors`` is an (n, dimensions) matrix, or a list of n rows in which
        a ``None`` row stores a metadata-only record.  The vectors are written
        as a few large block records (not one record per key).
        """
        n = self._insert_batch(keys, vectors, metadatas)
        self._maybe_snapshot()
        return n

    def _insert_batch(self, keys: Sequence[str], vectors: Any,
                      metadatas: Sequence[Mapping[str, Any] | None] | None) -> int:
        self._check_writable()
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise errors.InvalidType(f"insert_batch takes a sequence of keys, not "
                                     f"{type(keys).__name__}")
        keys = list(keys)
        if not keys and np.asarray(vectors, dtype=object).size == 0:
            return 0
        joined = _check_keys(keys)
        # key -> its last position: finds duplicates and, for a first load,
        # is the label map as it stands (labels 0..n-1).
        pos = dict(zip(keys, range(len(keys))))
        if isinstance(vectors, (list, tuple)) and any(v is None for v in vectors):
            if len(vectors) != len(keys):
                raise errors.DimensionMismatch(f"{len(vectors)} vectors for {len(keys)} keys")
            has = [v is not None for v in vectors]
            rows = [v for v in vectors if v is not None]
        else:
            has = None
            rows = vectors
        try:
            mat = np.asarray(rows)
        except ValueError as e:  # a ragged list of rows
            raise errors.DimensionMismatch(f"vectors are not a matrix: {e}") from None
        n_vec = len(keys) if has is None else sum(has)
        if n_vec == 0:
            mat = np.zeros((0, self.dimensions or 1), dtype=np.float32)
        elif mat.ndim != 2 or mat.shape[0] != n_vec:
            raise errors.DimensionMismatch(
                f"insert_batch needs a ({n_vec}, dimensions) matrix, got shape {mat.shape}")
        if mat.dtype == object or not (np.issubdtype(mat.dtype, np.floating)
                                       or np.issubdtype(mat.dtype, np.integer)):
            raise errors.DimensionMismatch(f"vectors must be numeric, got dtype {mat.dtype}")
        dims = self.dimensions if self.dimensions is not None else (
            mat.shape[1] if n_vec else None)
        if n_vec:
            _check_dims(dims)
            if mat.shape[1] != dims:
                raise errors.DimensionMismatch(f"expected {dims} dimensions, got {mat.shape[1]}")
        with np.errstate(over="ignore", invalid="ignore"):
            f32 = np.ascontiguousarray(mat, dtype="<f4")
            # Row norms: cosine needs them anyway, and a NaN or infinity
            # anywhere in a row makes its norm non-finite, so this one pass
            # also does the check (a cheaper pass than np.isfinite).
            norms = np.sqrt(np.einsum("ij,ij->i", f32, f32))
        if not np.isfinite(norms).all():
            bad_rows = ~np.isfinite(f32).all(axis=1)
            if bad_rows.any():
                bad = int(np.flatnonzero(bad_rows)[0])
                who = keys[bad] if has is None else [k for k, h in zip(keys, has) if h][bad]
                raise errors.InvalidArgument(f"{who!r}: the vector has NaN, infinity, or a "
                                             "value too large for float32")
        mat = f32
        if metadatas is None:
            metas: list[bytes] = [b""] * len(keys)
        else:
            metadatas = list(metadatas)
            if len(metadatas) != len(keys):
                raise errors.InvalidArgument(
                    f"{len(metadatas)} metadatas for {len(keys)} keys")
            metas = [_dump_meta(k, md) for k, md in zip(keys, metadatas)]
        # Later duplicates win, as if inserted one by one.
        unique = len(pos) == len(keys)
        order: Sequence[int] = range(len(keys)) if unique else sorted(pos.values())
        if has is None:
            vec_idx: Sequence[int] = order
            bare_idx: list[int] = []
            row_sel = None if len(order) == len(keys) else list(order)
        else:
            row_of = np.cumsum(has) - 1
            vec_idx = [i for i in order if has[i]]
            bare_idx = [i for i in order if not has[i]]
            row_sel = [int(row_of[i]) for i in vec_idx]
        if row_sel is not None:
            mat, norms = mat[row_sel], norms[row_sel]
        vec_keys = keys if vec_idx is order and len(order) == len(keys) \
            else [keys[i] for i in vec_idx]
        vec_metas = metas if vec_keys is keys else [metas[i] for i in vec_idx]
        bare = [(keys[i], metas[i]) for i in bare_idx]
        nv = len(vec_keys)
        step = max(1, _BLOCK_FLOAT_BYTES // (4 * (dims or 1)))
        # The common bulk load: one block, every key new to the batch, no
        # metadata.  Its label and metadata maps are built while the disk works.
        simple = vec_keys is keys and nv <= step and not any(vec_metas)
        maps: list[dict[str, Any]] = []
        first_dims = False
        worker: threading.Thread | None = None
        failed: list[BaseException] = []
        new_blocks: list[tuple[str, int, int]] = []  # name, seq, offset of the vectors
        try:
            with self._writing():
                if nv and self.dimensions is not None and self.dimensions != dims:
                    raise errors.DimensionMismatch(
                        f"expected {self.dimensions} dimensions, got {dims}")
                first_dims = self.dimensions is None and nv > 0
                if first_dims:
                    self.dimensions = dims
                if (first_dims or self._conf_version < _CONFIG_VERSION) and nv:
                    self._conf_version = _CONFIG_VERSION
                    self._save_config()
                start = len(self._keys)  # stable from here: we hold the lock, caught up
                if nv * (dims or 0) >= (1 << 20):
                    # Copy (and normalise) the rows into memory on the other
                    # core while this one checksums and writes them and the
                    # disk syncs: the two passes cost about the same.
                    out = self._row_buffer(start, start + nv)

                    def fill() -> None:
                        try:
                            _fill_rows(out, mat, self.metric, norms)
                            if simple:
                                maps.append(pos if start == 0 else
                                            dict(zip(keys, range(start, start + nv))))
                                maps.append(dict.fromkeys(keys, _EMPTY))
                        except Exception as e:  # noqa: BLE001 - MemoryError; redone inline
                            failed.append(e)

                    worker = threading.Thread(target=fill, name="synadb-vectors-fill")
                    worker.start()
                db = self._db
                meta, shadow = self._meta, self._shadow
                if meta or shadow:
                    # A v/<key> record would outrank the new block row: the
                    # key moves into the block, so its own record goes.
                    for key in vec_keys:
                        if self._has_vrec(key):
                            db.delete(_PREFIX + key)
                new_blocks = self._write_blocks(
                    vec_keys, mat, vec_metas, dims,
                    key_table=joined.encode("utf-8") if joined and simple else None)
                if bare:
                    bare_in_block = [self._in_block(k) for k, _ in bare]
                    head_none = _REC.pack(_REC_VERSION, 0)
                    db.storage.put_blobs([(_PREFIX + k, (head_none, m)) for k, m in bare],
                                  keys_checked=True)
        except BaseException:
            if first_dims:
                self.dimensions = None
            raise
        finally:
            if worker is not None:
                worker.join()
        # Committed: now memory follows.
        meta, shadow = self._meta, self._shadow
        if meta or shadow:
            for key in vec_keys:
                if key in meta:
                    self._forget(key)
                shadow.discard(key)
            for key, _ in bare:
                if key in meta:
                    self._forget(key)
        for (key, _), inb in zip(bare, bare_in_block if bare else ()):
            if inb:
                shadow.add(key)
        prefilled = worker is not None and not failed
        if prefilled and maps:
            if meta:
                meta.update(maps[1])
            else:
                self._meta = maps[1]
            name, seq, at = new_blocks[0]
            idx = self._new_block(name, seq, at, dims)
            self._add_rows(keys, None, blk=idx, label_map=maps[0])
            return len(keys)
        # In the caller's order, as if inserted one by one (find() and
        # keys() list records in this order).
        if bare or any(vec_metas):
            for i in order:
                m = metas[i]
                meta[keys[i]] = _load_meta(m) if m else _EMPTY
        else:
            meta.update(dict.fromkeys(vec_keys, _EMPTY))
        for (name, seq, at), s in zip(new_blocks, range(0, nv, step)):
            idx = self._new_block(name, seq, at, dims)
            self._add_rows(vec_keys[s:s + step], None if prefilled else mat[s:s + step],
                           blk=idx, norms=None if prefilled else norms[s:s + step])
        return len(keys)

    def _new_block(self, name: str, seq: int, at: int, dims: int) -> int:
        idx = len(self._blocks)
        self._blocks.append(name)
        self._block_of[name] = idx
        self._block_at[idx] = (at, dims)
        self._seq = max(self._seq, seq)
        return idx

    def _write_blocks(self, keys: Sequence[str], mat: np.ndarray, metas: Sequence[bytes],
                      dims: int | None, key_table: bytes | None = None
                      ) -> list[tuple[str, int, int]]:
        """Append block records for these rows (inside _writing); returns
        (name, sequence, offset of the vectors in the value) of each."""
        step = max(1, _BLOCK_FLOAT_BYTES // (4 * (dims or 1)))
        out = []
        seq = self._seq
        for s in range(0, len(keys), step):
            seq += 1
            # The sequence orders blocks (compaction reorders records); the
            # random part keeps a name from ever being reused.
            name = f"{_BULK}{seq:012x}-{os.urandom(4).hex()}"
            ks = key_table if key_table is not None and len(keys) <= step else \
                "\0".join(keys[s:s + step]).encode("utf-8")
            ms = metas[s:s + step]
            mt = b"\0".join(ms) if any(ms) else b""
            chunk = mat[s:s + step]
            head = _BLOCK_HEAD.pack(_BLOCK_VERSION, dims, len(chunk), seq, len(ks), len(mt))
            self._db.storage.put_blob_parts(name, [head, ks, mt, chunk])
            out.append((name, seq, _BLOCK_HEAD.size + len(ks) + len(mt)))
        return out

    def _has_vrec(self, key: str) -> bool:
        """Whether ``v/<key>`` exists (a vector, metadata only, or a tombstone)."""
        if key in self._shadow:
            return True
        if key not in self._meta:
            return False
        label = self._label.get(key)
        return label is None or self._src_blk[label] < 0

    def _delete_locked(self, keys: Iterable[str]) -> list[str]:
        """Write the deletes (inside _writing); returns the keys that existed."""
        db = self._db
        gone: list[str] = []
        seen: set[str] = set()
        for key in keys:
            if key in seen or key not in self._meta:
                continue
            seen.add(key)
            if self._in_block(key):
                # The block's row stays in the file: a tombstone outranks it.
                db.put_bytes(_PREFIX + key, _TOMB)
            else:
                db.delete(_PREFIX + key)
            gone.append(key)
        return gone

    def _forget_deleted(self, gone: list[str]) -> None:
        for key in gone:
            if self._in_block(key):
                self._shadow.add(key)
            self._forget(key)
        self._dirty_since_snap += len(gone)

    @_locked
    def delete(self, key: str) -> bool:
        """Delete ``key``.  Returns whether it existed."""
        _check_key(key)
        self._check_writable()
        with self._writing():
            gone = self._delete_locked([key])
        self._forget_deleted(gone)
        self._maybe_snapshot()
        return bool(gone)

    @_locked
    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete several keys at once (all or nothing).  Returns how many existed."""
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise errors.InvalidType(f"delete_many takes an iterable of keys, not "
                                     f"{type(keys).__name__}")
        keys = list(keys)
        for key in keys:
            _check_key(key)
        self._check_writable()
        with self._writing():
            gone = self._delete_locked(keys)
        self._forget_deleted(gone)
        self._maybe_snapshot()
        return len(gone)

    @_locked
    def clear(self, reset_dimensions: bool = False) -> None:
        """Delete every record; ``reset_dimensions`` lets the next vector set a new size."""
        self._check_writable()
        with self._writing():
            # Whole blocks go, and every v/<key> (tombstones too): nothing
            # is left for a tombstone to outrank.
            db = self._db
            for name in self._blocks:
                if name is not None:
                    db.delete(name)
            for key in [k for k in self._meta if self._has_vrec(k)] + list(self._shadow):
                db.delete(_PREFIX + key)
            # The snapshot describes nothing that is left.
            self._drop_snapshot()
            if reset_dimensions:
                # In the same batch: the offset _writing records then covers it.
                db.put_text(_CONFIG, json.dumps({
                    "version": self._conf_version, "dimensions": None, "metric": self.metric}))
        n = len(self._meta)
        for name in [b for b in self._blocks if b is not None]:
            self._drop_block(name)
        for key in list(self._meta):
            self._forget(key)
        self._shadow.clear()
        self._dirty_since_snap += n
        if reset_dimensions:
            seen = self._seen_end
            self.dimensions = None
            self._reset()
            self._seen_end = seen
        self._maybe_snapshot()

    @_locked
    def update_metadata(self, key: str, metadata: Mapping[str, Any] | None) -> None:
        """Replace ``key``'s metadata, keeping its vector."""
        _check_key(key)
        self._check_writable()
        self._refresh()
        if key not in self._meta:
            raise errors.KeyNotFound(f"no record {key!r} in {self.path!r}")
        self.insert(key, self.get(key), metadata)

    # -------------------------------------------------------------- reads
    def _readable(self) -> None:
        if self._db.closed:
            raise errors.ClosedError(f"{self.path!r} is closed")
        self._refresh()

    @_locked
    def __len__(self) -> int:
        self._readable()
        return len(self._label)

    @_locked
    def __contains__(self, key: object) -> bool:
        self._readable()
        return isinstance(key, str) and key in self._meta

    @_locked
    def keys(self) -> list[str]:
        """Every key, vectors and metadata-only records alike."""
        self._readable()
        return list(self._meta)

    @_locked
    def count(self, filter: Mapping[str, Any] | Callable[..., bool] | None = None) -> int:
        """How many records (with or without a vector) match ``filter``."""
        if filter is None:
            self._readable()
            return len(self._meta)
        return len(self.find(filter))

    @_locked
    def find(self, filter: Mapping[str, Any] | Callable[..., bool] | None = None) -> list[str]:
        """Keys of the records whose metadata matches ``filter`` (no vector needed)."""
        pred = _predicate(filter)
        self._readable()
        if pred is None:
            return list(self._meta)
        return [k for k, m in self._meta.items() if pred(m)]

    @_locked
    def get(self, key: str) -> np.ndarray | None:
        """The vector stored for ``key`` (float32, as inserted), or None.

        Raises:
            ChecksumError: the record of ``key`` is damaged (the key is left
                out of keys() and search from then on).
        """
        _check_key_type(key)
        self._readable()
        label = self._label.get(key)
        if label is not None and self._src_blk[label] >= 0:
            try:
                return self._block_row(label)
            except errors.ChecksumError:
                name = self._blocks[int(self._src_blk[label])]
                if name is not None:
                    self._drop_block(name)  # no row of it can be trusted
                    self._dirty_since_snap += 1
                raise
        # As of our last refresh, as the label is.
        try:
            raw = self._db.storage.value_view(_PREFIX + key, refresh=False)
        except errors.ChecksumError:
            self._drop_damaged(key)
            raise
        if raw is None:
            if key in self._meta:
                # Listed, yet its record is gone with no delete seen: its
                # head was damaged (so the engine cannot tell whose it was).
                self._drop_damaged(key)
                raise errors.ChecksumError(
                    f"{key!r}: its record in {self.path!r} is damaged; db.verify() lists it",
                    path=self.path)
            return None
        vec, _ = self._decode(key, raw)
        if label is not None:
            self._verified(label)
        return None if vec is None else vec.copy()

    @_locked
    def get_metadata(self, key: str) -> dict[str, Any] | None:
        """The metadata stored for ``key``, or None if there is no such key."""
        _check_key_type(key)
        self._readable()
        meta = self._meta.get(key)
        return None if meta is None else _copy_meta(meta)

    @_locked
    def search(self, query: Any, k: int = 5,
               filter: Mapping[str, Any] | Callable[..., bool] | None = None, *,
               include_vectors: bool = False, ef: int | None = None) -> list[SearchResult]:
        """The ``k`` nearest vectors to ``query`` among those matching ``filter``.

        Returns fewer than ``k`` results only when fewer records match.

        Raises:
            DimensionMismatch: the query has the wrong shape.
            InvalidArgument: NaN in the query, a bad ``k`` or a bad filter.
        """
        pred = _predicate(filter)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise errors.InvalidArgument(f"k must be a positive int, got {k!r}")
        self._readable()
        if self.dimensions is None or not self._label:
            return []
        q = self._vector("query", query)
        qn = None
        # The filter once for every label (None: unfiltered, or a filter
        # only the predicate can judge, as before).
        fmask = None if pred is None else self._filter_mask(filter)
        while True:  # again only if a hit's record turned out damaged
            if not self._label:
                hits = []
                break
            allowed = None
            if fmask is not None:
                allowed = fmask & self._alive[:len(fmask)]  # a damaged hit may have died
            if self._index is not None:
                # hnswlib normalises for cosine
                hits = self._search_index(q, int(k), pred, ef, allowed)
            else:
                if qn is None:
                    qn = _unit(q.reshape(1, -1))[0] if self.metric == "cosine" else q
                hits = self._search_exact(qn, int(k), pred,
                                          None if allowed is None else np.flatnonzero(allowed))
            if self._unverified is None or self._hits_sound(hits):
                break
        out = []
        meta = self._meta
        keys = self._keys
        for label, score in hits:
            key = keys[label]
            vec = self.get(key) if include_vectors else None
            out.append(SearchResult(key, score, _copy_meta(meta.get(key)), vec))
        return out

    def _hits_sound(self, hits: list[tuple[int, float]]) -> bool:
        """Read, once, the record of each hit whose vector came from the
        snapshot.  False if one is damaged: it is left out now, search again."""
        unverified = self._unverified
        sound = True
        for label, _ in hits:
            if label < len(unverified) and unverified[label]:
                key = self._keys[label]
                try:
                    ok = self._db.storage.value_view(_PREFIX + key, refresh=False) is not None
                except errors.ChecksumError:
                    ok = False
                if ok:
                    self._verified(label)
                else:
                    self._drop_damaged(key)
                    sound = False
        return sound

    def _verified(self, label: int) -> None:
        unverified = self._unverified
        if unverified is not None and label < len(unverified):
            unverified[label] = 0

    def _candidates(self, pred: Callable[..., bool] | None) -> np.ndarray:
        n = len(self._keys)
        if pred is None:
            return np.flatnonzero(self._alive[:n])
        meta = self._meta
        return np.fromiter((lab for key, lab in self._label.items() if pred(meta[key])),
                           dtype=np.int64)

    def _distances(self, q: np.ndarray, labels: np.ndarray, reuse: bool = False) -> np.ndarray:
        small = len(labels) <= _EXACT_FILTER_ROWS
        rows = None
        if reuse and small and len(labels) >= _FILTER_CACHE_MIN_ROWS:
            rows = self._filter_rows(labels)
        if rows is not None:
            pass
        elif self._lean:
            rows = self._rows(labels)
        elif reuse and small:
            # Into a buffer kept between searches: filtered searches gather
            # a few MB each, and need not map and fault in fresh pages for it.
            buf = self._gather_buf
            d = self._mat.shape[1]
            if buf is None or len(buf) < len(labels) or buf.shape[1] != d:
                buf = self._gather_buf = np.empty((max(len(labels), 1024), d), np.float32)
            rows = np.take(self._mat, labels, axis=0, out=buf[:len(labels)])
        else:
            rows = self._mat[labels]
        if self.metric != "euclidean" and small and rows.dtype == q.dtype:
            # A few hundred rows a product: OpenBLAS hands some larger
            # ones to its threads, whose wake-up measured 8 ms (against
            # 0.2 ms) for 2000 x 384 on a 2-core box.  Each row's dot
            # product is the same; only its rounding may differ in the
            # last bit from one product over all rows.
            dots = np.empty(len(rows), np.float32)
            for s in range(0, len(rows), 512):
                np.dot(rows[s:s + 512], q, out=dots[s:s + 512])
            return 1.0 - dots if self.metric == "cosine" else -dots
        if self.metric == "cosine":
            return 1.0 - rows @ q
        if self.metric == "dot_product":
            return -(rows @ q)
        diff = rows - q
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))

    def _filter_rows(self, labels: np.ndarray) -> np.ndarray:
        """The rows of a filter's labels, gathered once and kept (a few,
        least recently used first out): a label's vector never changes, so
        the same labels mean the same rows until the labels are renumbered
        (a reload, a compaction: ``_keys`` is then a new list)."""
        cache = self._filter_cache
        if cache is None or cache[0] is not self._keys:
            cache = self._filter_cache = (self._keys, {}, [0])
        entries, used = cache[1], cache[2]
        tag = labels.tobytes()
        rows = entries.pop(tag, None)
        if rows is None:
            rows = self._rows(labels) if self._lean else self._mat[labels]
            rows = np.ascontiguousarray(rows)
            used[0] += rows.nbytes
            while entries and used[0] > _FILTER_CACHE_BYTES:
                old = entries.pop(next(iter(entries)))
                used[0] -= old.nbytes
        entries[tag] = rows  # last: the most recently used
        return rows

    def _column(self, path: str) -> Column:
        """The values of metadata field ``path`` for every label, up to date.

        A label's metadata never changes: every write (insert, update,
        replay of another handle's records) gives the key a new label and
        kills the old one.  So a column only needs the labels added since it
        was last used, and only a new ``_keys`` (reset, reload, snapshot)
        makes it stale.
        """
        keys = self._keys
        if self._cols_of is not keys:
            self._cols = {}
            self._cols_of = keys
        col = self._cols.get(path)
        if col is None:
            col = self._cols[path] = Column(path)
        n = len(keys)
        if col.n < n:
            meta = self._meta
            col.extend([None if key is None else meta.get(key) for key in keys[col.n:n]])
        return col

    def _filter_mask(self, spec: Any) -> np.ndarray | None:
        """Whether each label's metadata matches ``spec`` (dead labels: any
        value), or None when only the predicate can tell (a callable)."""
        try:
            return filter_mask(spec, self._column, len(self._keys))
        except Unsupported:
            return None

    def _search_exact(self, q: np.ndarray, k: int, pred,
                      labels: np.ndarray | None = None) -> list[tuple[int, float]]:
        reuse = labels is not None
        if labels is None:
            labels = self._candidates(pred)
        if not len(labels):
            return []
        dist = self._distances(q, labels, reuse)
        if len(labels) > k:
            top = np.argpartition(dist, k - 1)[:k]
        else:
            top = np.arange(len(labels))
        top = top[np.lexsort((labels[top], dist[top]))]
        return [(int(labels[i]), float(dist[i])) for i in top]

    def _search_index(self, q: np.ndarray, k: int, pred, ef: int | None,
                      allowed: np.ndarray | None = None):
        index = self._index
        live = len(self._label)
        k = min(k, live)
        ef = max(ef or self.ef_search, k)
        keys, meta = self._keys, self._meta
        flt = None
        found = None
        if allowed is not None:
            count = int(np.count_nonzero(allowed))
            if count <= max(k, _EXACT_FILTER_FLOATS // max(self.dimensions or 1, 1),
                            min(_EXACT_FILTER_ROWS, live * _EXACT_FILTER_SHARE)):
                if self.metric == "cosine":
                    q = _unit(q.reshape(1, -1))[0]
                return self._search_exact(q, k, pred, np.flatnonzero(allowed))
            share = count / max(live, 1)
            found = self._search_overfetch(q, k, ef, allowed, share, live)
            if found is None:
                # hnswlib keeps the ef best allowed candidates but walks
                # through the others to reach them: the rarer they are, the
                # larger ef must be to keep recall.
                if share < 0.2:
                    ef = max(ef, int(ef * min(8.0, 0.2 / share)))
                # bytes.__getitem__ runs in C: 0 or 1 per label, no Python
                # frame, no metadata.
                flt = allowed.tobytes().__getitem__
        if found is None:
            index.set_ef(ef)
            if flt is None and pred is not None:
                def flt(label: int) -> bool:
                    key = keys[label]
                    return key is not None and pred(meta[key])
            try:
                found = index.knn_query(q.reshape(1, -1), k=k, filter=flt)
            except RuntimeError:
                # Fewer than k matches reachable (a selective filter): the
                # exact answer over the matching records is right and small.
                if self.metric == "cosine":
                    q = _unit(q.reshape(1, -1))[0]
                return self._search_exact(q, k, pred,
                                          None if allowed is None else np.flatnonzero(allowed))
        labels, dist = found
        labels, dist = labels[0].astype(np.int64), dist[0].astype(np.float64)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(dist, 0.0))
        elif self.metric == "dot_product":
            dist = dist - 1.0
        return list(zip(labels.tolist(), dist.tolist()))

    def _search_overfetch(self, q: np.ndarray, k: int, ef: int, allowed: np.ndarray,
                          share: float, live: int):
        """The graph's nearest ~1.5 k / share vectors, unfiltered, of which
        the first ``k`` allowed ones; None if fewer than ``k`` are allowed.

        For a filter that leaves a tenth of 100K x 384 this measured 1.8x
        an unfiltered search (ef 150), at recall@10 0.975 against the exact
        filtered answer; hnswlib's own filter (a call into Python for each
        vector it passes, stepping over nine for each it may keep) measured
        25x at ef 200.  A filter that is rare near the query (it picks a
        far cluster) finds too few here, and goes to hnswlib's filter.
        Its recall is that of the graph at rank ~k / share: on data where
        the graph is weak that deep, pass a larger ``ef`` to search.
        """
        index = self._index
        first = int(np.ceil(_OVERFETCH * k / share))
        for fetch in (first, 4 * first):
            fetch = min(fetch, live)
            if fetch > _OVERFETCH_MAX:
                return None
            index.set_ef(max(ef, fetch))
            try:
                labels, dist = index.knn_query(q.reshape(1, -1), k=fetch)
            except RuntimeError:
                return None
            keep = np.flatnonzero(allowed[labels[0]])
            if len(keep) >= k:
                keep = keep[:k]
                return labels[:, keep], dist[:, keep]
            if fetch == live:
                return None
        return None

    # -------------------------------------------------------------- index
    @_locked
    def build_index(self, progress: bool | None = None) -> None:
        """Build (or rebuild) the HNSW index now, whatever the store's size.

        Raises:
            MissingDependency: hnswlib is not installed (``synadb[vectors]``).
        """
        self._readable()
        self._build_index(progress=self.progress if progress is None else progress,
                          warn_missing=False)

    def _build_index(self, *, progress: bool, warn_missing: bool) -> None:
        if self._index_kind == "usearch":
            self._build_quantized(progress=progress, warn_missing=warn_missing)
            return
        try:
            import hnswlib
        except ImportError:
            if warn_missing:
                warnings.warn("hnswlib is not installed, so search stays exact: "
                              "pip install 'synadb[vectors]'", RuntimeWarning, stacklevel=4)
                self.index_threshold = 2**62
                return
            raise errors.MissingDependency("hnswlib", "vectors", "the HNSW index") from None
        if self.dimensions is None:
            return
        self._builds += 1
        self._snap_due = True
        n = len(self._keys)
        index = hnswlib.Index(space=_SPACE[self.metric], dim=self.dimensions)
        index.init_index(max_elements=max(n, 16) + 1024, ef_construction=self.ef_construction,
                         M=self.m, allow_replace_deleted=False)
        index.set_ef(self.ef_search)
        self._index = index
        self._indexed = 0
        self._index_rows(0, n, progress=progress)

    def _new_quantized(self) -> QuantizedIndex:
        return QuantizedIndex(self.dimensions, self.metric, self.quantization, m=self.m,
                              ef_construction=self.ef_construction,
                              ef_search=self.ef_search, rows=self._rows)

    def _build_quantized(self, *, progress: bool, warn_missing: bool) -> None:
        """Build the QuantizedIndex from every label's row, then go lean."""
        if self.dimensions is None:
            return
        try:
            index = self._new_quantized()
        except errors.MissingDependency:
            if warn_missing and not self._lean:
                warnings.warn("usearch is not installed, so search stays exact: "
                              "pip install 'synadb[vectors]'", RuntimeWarning, stacklevel=5)
                self.index_threshold = 2**62
                return
            raise
        self._builds += 1
        self._snap_due = True
        self._index = index
        self._indexed = 0
        self._index_rows(0, len(self._keys), progress=progress)
        if not self._lean:
            self._lean = True
            self._matrix = np.zeros((0, self.dimensions), dtype=np.float32)
            self._mat_src = None
            self._gather_buf = None

    def _rows(self, labels: Any) -> np.ndarray:
        """float32 rows of these labels (unit length for cosine), from the
        matrix, or, lean, from the rows waiting to be indexed and the
        records.  Block vectors are read through the file map without their
        CRC (as the snapshot check reads blocks): a damaged byte there can
        shift a score, never a key or metadata; ``verify()`` finds it.
        """
        labels = np.asarray(labels, dtype=np.int64)
        if not self._lean:
            return self._mat[labels]
        dims = self.dimensions
        out = np.empty((len(labels), dims), dtype=np.float32)
        todo = np.ones(len(labels), dtype=bool)
        pend = self._pending
        if pend is not None:
            start, buf = pend
            sel = (labels >= start) & (labels < start + len(buf))
            if sel.any():
                out[sel] = buf[labels[sel] - start]
                todo &= ~sel
        if not todo.any():
            return out
        blk = self._src_blk[labels]
        raw_rows = todo.copy()
        for b in np.unique(blk[todo & (blk >= 0)]).tolist():
            sel = todo & (blk == b)
            out[sel] = self._block_vectors(b)[self._src_row[labels[sel]]]
            todo &= ~sel
        if todo.any():
            value_view = self._db.storage.value_view
            keys = self._keys
            for i in np.flatnonzero(todo).tolist():
                key = keys[int(labels[i])]
                raw = value_view(_PREFIX + key, refresh=False) if key is not None else None
                vec = self._decode(key, raw)[0] if raw is not None else None
                if vec is None or len(vec) != dims:
                    out[i] = 0.0  # dead since: the store leaves it out
                else:
                    out[i] = vec
        if self.metric == "cosine":
            sub = out[raw_rows]
            _fill_rows(sub, sub, "cosine")
            out[raw_rows] = sub
        return out

    def _block_vectors(self, idx: int) -> np.ndarray:
        vecs = self._block_vecs.get(idx)
        if vecs is None:
            name = self._blocks[idx]
            view = self._db.storage.value_view(name, refresh=False, check=False) \
                if name is not None else None
            if view is None:
                raise errors.CorruptDatabase(f"{self.path!r}: the vector block {name!r} is gone")
            at, dims = self._block_at[idx]
            rows = (len(view) - at) // (4 * dims)
            vecs = np.frombuffer(view, dtype="<f4", count=rows * dims,
                                 offset=at).reshape(rows, dims)
            self._block_vecs[idx] = vecs
            # Re-ranks read a few scattered rows: without this each one
            # faults in ~64 KB around it, and the file's pages fill RSS.
            self._db.storage.advise_random([name])
        return vecs

    def _index_rows(self, start: int, end: int, *, progress: bool = False) -> None:
        index = self._index
        if end > index.get_max_elements():
            index.resize_index(max(end, int(index.get_max_elements() * 1.5)))
        step = 10_000
        chunks = range(start, end, step)
        for s in _bar(chunks, "build index", progress, total=len(chunks),
                      enabled=end - start > 20_000):
            e = min(end, s + step)
            labels = np.arange(s, e)
            index.add_items(self._rows(labels) if self._lean else self._mat[s:e], labels)
            dead = labels[~self._alive[s:e]]
            for lab in dead.tolist():
                index.mark_deleted(lab)
        self._indexed = end

    # ----------------------------------------------------------- snapshot
    def _snapshot_due(self, closing: bool = False) -> bool:
        """Whether to write a snapshot now (see _SNAP_BATCH_DIVISOR): at the
        end of a write, or (``closing``) at close, flush or exit."""
        if self._index is None and (not closing or len(self._meta) <= 2_000):
            # Without a graph, a replay only reads records: worth saving at
            # close for a store of many, never in the middle of writes.
            return False
        if self._snap_due:
            return True
        dirty = self._dirty_since_snap
        size = max(len(self._keys), len(self._meta))
        if closing:
            return dirty > 0 and dirty * _SNAP_CLOSE_DIVISOR >= size
        return dirty >= max(_SNAP_MIN_CHANGES, size // _SNAP_BATCH_DIVISOR)

    def _maybe_snapshot(self) -> None:
        """At the end of a write: snapshot if enough changed (cheap if not)."""
        if (self._snap_due or self._dirty_since_snap >= _SNAP_MIN_CHANGES) \
                and self._snapshot_due():
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        """Persist labels, vectors, metadata and the HNSW graph (all or nothing)."""
        db = self._db
        with db.batch():
            self._write_snapshot_locked()
            end = db.storage.log_end()  # under the lock, as in _writing
        self._seen_end = end
        self._snap_end = end
        self._dirty_since_snap = 0
        self._snap_due = False
        index = self._index
        if self.memory == "mapped" and isinstance(index, QuantizedIndex):
            # Serve the graph just written from the file: the merged copy
            # and the delta leave RAM.
            buf = db.storage.value_view(_SNAP + "usearch", refresh=False)
            if buf is not None:
                index.load(buf, index.state(), mapped=True)

    def _write_snapshot_locked(self) -> None:
        db = self._db
        self._refresh()
        n = len(self._keys)
        label = self._label
        info: dict[str, Any] = {"version": _SNAP_VERSION, "n": n, "dimensions": self.dimensions,
                                "metric": self.metric, "salt": db.storage.salt(),
                                "arrays": {}, "hnsw": None, "seq": self._seq,
                                "blocks": self._blocks,
                                "block_at": {str(i): list(v) for i, v in self._block_at.items()}}
        # Metadata only where a label does not already say "{}": most
        # records of a bulk load have none, and 100K "{}" cost 35 ms to parse.
        sparse = {k: m for k, m in self._meta.items() if m or k not in label}
        # Large arrays go in as buffers: one copy into the file, no joins.
        blobs: list[tuple[str, Any]] = [
            (_SNAP + "keys", "\0".join(k if k is not None else "" for k in self._keys)
             .encode("utf-8")),
            (_SNAP + "alive", np.ascontiguousarray(self._alive[:n])),
            (_SNAP + "src_blk", np.ascontiguousarray(self._src_blk[:n], dtype="<i4")),
            (_SNAP + "src_row", np.ascontiguousarray(self._src_row[:n], dtype="<i8")),
            (_SNAP + "shadow", "\0".join(self._shadow).encode("utf-8")),
            (_SNAP + "meta", json.dumps(sparse, separators=(",", ":"), ensure_ascii=False,
                                        default=_json_default).encode("utf-8")),
        ]
        quant = isinstance(self._index, QuantizedIndex)
        if quant and self._indexed == n:
            # The vectors stay in their records only; the graph holds codes.
            info["engine"] = "usearch"
            info["usearch"] = self._index.state()
            info["indexed"] = n
            blobs.append((_SNAP + "usearch", self._index.to_bytes()))
        elif self._index is None or self._indexed != n:
            rows = self._rows(np.arange(n)) if self._lean else self._mat[:n]
            blobs.append((_SNAP + "mat", np.ascontiguousarray(rows)))
        else:
            # The graph's nodes are the only other place a vector could be
            # stored twice: they are written without their vectors (which
            # stay in their own records only; see _strip_vectors), except
            # the vectors of dead labels, which no record holds any more.
            info["mat_from_index"] = True
            info["vectors_from_records"] = True
        if self._index is not None and not quant:
            (state,) = self._index.__getstate__()
            scalars = {}
            for name, value in state.items():
                if isinstance(value, np.ndarray):
                    if name == "data_level0" and info.get("vectors_from_records"):
                        value, dead = _strip_vectors(state, self._alive[:n], self.dimensions)
                        blobs.append((_SNAP + "dead", dead))
                    info["arrays"][name] = [value.dtype.str, list(value.shape)]
                    blobs.append((_SNAP + "hnsw/" + name, np.ascontiguousarray(value)))
                else:
                    scalars[name] = value
            info["hnsw"] = scalars
            info["indexed"] = self._indexed
        # Latest-only: a snapshot replaces the one before it, so compaction
        # (even keep_history=True) keeps just the newest.  A part that this
        # snapshot does not write (``mat`` once the graph holds the vectors)
        # is deleted, or it would stay live, and counted, forever.
        written = {key for key, _ in blobs}
        for key in _SNAP_PARTS:
            if key not in written and db.exists(key):
                db.delete(key)
        for key, blob in blobs:
            db.storage.put_blob_parts(key, [blob], keep_history=False)
        # After the blobs: reopening then replays nothing of the snapshot itself.
        info["covered_end"] = db.storage.log_end()
        db.put_text(_SNAP + "info", json.dumps(info))

    def _load_snapshot(self) -> int | None:
        """Load the snapshot, then replay the records written after it.

        Returns the log offset the state reflects, or None when there is no
        snapshot that this file vouches for: the state is then undefined and
        the caller replays every record.  The snapshot is only a cache of the
        ``v/<key>`` and block records, so one that is damaged, implausible or
        out of step with them costs that replay, never the open.
        """
        db = self._db
        seen = None
        for _ in range(4):
            try:
                raw = db.get_text(_SNAP + "info")
                if raw is None or raw == seen:
                    return None
                seen = raw
                info = json.loads(raw)
                covered = int(info["covered_end"])
                if covered < fmt.HEADER_SIZE:
                    return None
                # The last refresh of the engine in this load: what is read
                # below is the file as of ``end``, so the snapshot's records
                # and the replay describe one moment.
                changed, end = db.storage.keys_written_since(covered)
            except _BAD_SNAPSHOT:
                return None
            if end <= covered:
                return None  # its own info record comes after covered_end
            if not any(k.startswith(_SNAP) and k != _SNAP + "info" for k in changed):
                break
            # Snapshot records newer than this info: a newer snapshot was
            # committed since we read it (take that one), or records were
            # written over this one (the same info again: not to be trusted).
        else:
            return None
        try:
            snap = self._read_snapshot(info)
        except _BAD_SNAPSHOT:
            return None
        if snap is None:
            return None
        (keys, alive, src_blk, src_row, sparse, shadow, blocks, block_at, seq, mat, mat_src,
         index, indexed) = snap
        # The keys whose snapshot state says a v/<key> record exists (a
        # vector, metadata only, or a tombstone); checked against the file
        # below.  Not those written since: the replay reads those anyway.
        own = np.flatnonzero(alive & (src_blk < 0)).tolist()
        vrec = [keys[i] for i in own]
        vrec.extend(k for k in sparse if k not in self._label)
        vrec.extend(k for k in shadow if k not in sparse)
        self._keys = keys
        self._alive = alive
        self._src_blk = src_blk
        self._src_row = src_row
        self._mat = mat
        self._mat_src = mat_src
        self._meta = dict.fromkeys(self._label, _EMPTY)
        self._meta.update(sparse)
        self._blocks = blocks
        self._block_of = {b: i for i, b in enumerate(blocks) if b is not None}
        self._block_at = block_at
        self._seq = seq
        self._shadow = shadow
        if index is not None:
            self._index = index
            self._indexed = indexed
            self._lean = isinstance(index, QuantizedIndex)
        # Vectors held from a version-2 snapshot, not from reading their
        # record: search reads a record the first time it would return it
        # (a record can be damaged after the snapshot was taken).
        damaged = self._damaged_at_load
        if damaged is not None:
            # Every vector was just read, CRC-checked, from its record
            # (_gather_vectors): none is left to check at search.
            self._damaged_at_load = None
            for key in damaged:
                self._drop_damaged(key)
        elif own:
            self._unverified = bytearray((alive & (src_blk < 0)).tobytes())
        self._snap_end = covered
        replay = [k for k in changed if k.startswith((_PREFIX, _BULK))]
        if replay:
            self._apply_changes(replay)
        if not self._snapshot_agrees(vrec, changed, end):
            return None
        # What we replayed is not in the snapshot yet: a writable handle
        # counts it towards its next snapshot (see _snapshot_due).
        self._dirty_since_snap = len(replay)
        self._replayed = len(replay)
        return end

    def _read_snapshot(self, info: Any) -> tuple[Any, ...] | None:
        """The snapshot's state, every part checked for what it must be (None:
        not usable).  Sets ``_label``; the caller sets the rest."""
        db = self._db

        def view(name: str) -> memoryview:
            # As of the caller's refresh: every part from the same snapshot.
            got = db.storage.value_view(_SNAP + name, refresh=False)
            if got is None:
                raise KeyError(name)
            return got

        version = info.get("version")
        if version not in (1, 2, _SNAP_VERSION) or info.get("salt") != self._salt \
                or info.get("dimensions") != self.dimensions:
            return None  # compacted by hand, or from another layout: replay instead
        n = info["n"]
        dims = self.dimensions or 0
        if type(n) is not int or n < 0:
            return None
        keys: list[Any] = bytes(view("keys")).decode("utf-8").split("\0") if n else []
        flags = np.frombuffer(view("alive"), dtype=np.uint8)
        if len(keys) != n or len(flags) != n or (n and int(flags.max()) > 1):
            return None
        alive = flags.astype(bool)
        sparse = json.loads(bytes(view("meta")))
        if type(sparse) is not dict or not all(type(m) is dict for m in sparse.values()):
            return None
        if version != 1:
            src_blk = np.frombuffer(view("src_blk"), "<i4").astype(np.int32)
            src_row = np.frombuffer(view("src_row"), "<i8").astype(np.int64)
            shadow_raw = bytes(view("shadow")).decode("utf-8")
            blocks = list(info["blocks"])
            block_at = {int(i): (int(v[0]), int(v[1])) for i, v in info["block_at"].items()}
            seq = int(info["seq"])
        else:  # before bulk blocks: every vector is in its own v/<key>
            src_blk = np.full(n, -1, dtype=np.int32)
            src_row = np.full(n, -1, dtype=np.int64)
            shadow_raw, blocks, block_at, seq = "", [], {}, 0
        if len(src_blk) != n or len(src_row) != n \
                or not all(b is None or (type(b) is str and b.startswith(_BULK)) for b in blocks):
            return None
        held = alive & (src_blk >= 0)
        if n and (int(src_blk.min()) < -1 or int(src_blk.max()) >= len(blocks)):
            return None
        if held.any():
            if int(src_row[held].min()) < 0:
                return None
            for i in np.unique(src_blk[held]).tolist():
                if blocks[i] is None or block_at.get(i, (0, -1))[1] != dims:
                    return None
        live = np.flatnonzero(alive)
        if len(live) == n:
            live_keys = keys
            label = dict(zip(keys, range(n)))
        else:
            ll = live.tolist()
            live_keys = [keys[i] for i in ll]
            label = dict(zip(live_keys, ll))
            for i in np.flatnonzero(~alive).tolist():
                keys[i] = None
        if len(label) != len(live_keys) or "" in label:
            return None  # a key twice, or an empty one: not a table we wrote
        shadow = set(shadow_raw.split("\0")) if shadow_raw else set()
        if info.get("engine") == "usearch" or self._index_kind == "usearch":
            if info.get("engine") != "usearch":
                if info["hnsw"] is not None:
                    return None  # another kind of graph: rebuild ours
                flat = np.frombuffer(view("mat"), dtype=np.float32)
                if flat.size != n * dims:
                    return None
                self._label = label
                return (keys, alive, src_blk, src_row, sparse, shadow, blocks, block_at, seq,
                        flat.reshape(n, dims).copy(), None, None, 0)
            if self._index_kind != "usearch" or info.get("indexed") != n:
                return None
            try:
                qindex = self._new_quantized()
                qindex.load(view("usearch"), info["usearch"], mapped=self.memory == "mapped")
            except errors.MissingDependency:
                return None
            if qindex.get_current_count() != n:
                return None
            self._label = label
            return (keys, alive, src_blk, src_row, sparse, shadow, blocks, block_at, seq,
                    np.zeros((0, dims), dtype=np.float32), None, qindex, n)
        index = None
        indexed = 0
        state: dict[str, Any] = {}
        from_records = bool(info.get("vectors_from_records")) and version >= 3
        if info.get("vectors_from_records") and not from_records:
            return None
        if info["hnsw"] is not None:
            try:
                import hnswlib
            except ImportError:
                if info.get("mat_from_index"):
                    return None  # the vectors live in the graph: replay instead
                hnswlib = None
            if hnswlib is not None:
                state = dict(info["hnsw"])
                for name, (dtype, shape) in info["arrays"].items():
                    state[name] = np.frombuffer(view("hnsw/" + name),
                                                dtype=np.dtype(dtype)).reshape(shape)
                indexed = info.get("indexed", n)
                if from_records:
                    if indexed != n:
                        return None
                    mat = self._gather_vectors(keys, alive, src_blk, src_row, blocks,
                                               block_at, n, dims)
                    dead = np.frombuffer(view("dead"), dtype="<f4")
                    if mat is None or not _restore_vectors(state, alive, mat, dead):
                        return None
                # hnswlib copies what its scalars say from these arrays
                # without checking their sizes: check them first.
                if not _hnsw_state_fits(state, n, indexed, dims, _SPACE[self.metric]):
                    return None
                index = hnswlib.Index.__new__(hnswlib.Index)
                index.__setstate__((state,))
                index.set_ef(self.ef_search)
        mat_src = None
        if from_records:
            if index is None:
                return None  # the matrix was gathered with the graph above
        elif info.get("mat_from_index"):
            if index is None or indexed != n:
                return None
            # Checked now, gathered when first needed (see _mat).
            mat_src = functools.partial(_vectors_from_hnsw_state, state, n, dims)
            mat = np.zeros((0, dims), dtype=np.float32)
        else:
            flat = np.frombuffer(view("mat"), dtype=np.float32)
            if flat.size != n * dims:
                return None
            mat = flat.reshape(n, dims).copy()
        self._label = label
        return (keys, alive, src_blk, src_row, sparse, shadow, blocks, block_at, seq, mat,
                mat_src, index, indexed)

    def _gather_vectors(self, keys: list[Any], alive: np.ndarray, src_blk: np.ndarray,
                        src_row: np.ndarray, blocks: list[str | None],
                        block_at: dict[int, tuple[int, int]], n: int,
                        dims: int) -> np.ndarray | None:
        """label -> vector (unit length for cosine) of every live label of a
        snapshot whose graph was stored without its vectors, read from the
        records that hold them (None: a block is gone or damaged).

        Every record is read CRC-checked (zlib's CRC costs ~20 ms per 150 MB;
        a single record's read costs more in Python than its check).  The
        keys whose record turned out damaged go in ``_damaged_at_load`` (the
        caller leaves them out); a record gone or replaced since the
        snapshot is replayed after.
        """
        db = self._db
        self._damaged_at_load = damaged = []
        mat = np.zeros((n, dims), dtype=np.float32)
        live = alive & (src_blk >= 0)
        if live.any():
            for i in np.unique(src_blk[live]).tolist():
                name = blocks[i]
                view = db.storage.value_view(name, refresh=False) if name is not None else None
                if view is None:
                    return None
                at = block_at[i][0]
                rows = (len(view) - at) // (4 * dims)
                labels = np.flatnonzero(live & (src_blk == i))
                src = src_row[labels]
                if at < 0 or (len(src) and int(src.max()) >= rows):
                    return None
                vecs = np.frombuffer(view, dtype="<f4", count=rows * dims,
                                     offset=at).reshape(rows, dims)
                mat[labels] = vecs[src]
        value_view = db.storage.value_view
        need = 4 * dims
        for label in np.flatnonzero(alive & (src_blk < 0)).tolist():
            try:
                raw = value_view(_PREFIX + keys[label], refresh=False)
            except errors.ChecksumError:
                damaged.append(keys[label])
                continue
            if raw is not None and len(raw) >= _REC.size + need:
                ver, d = _REC.unpack_from(raw, 0)
                if ver == _REC_VERSION and d == dims:
                    mat[label] = np.frombuffer(raw, dtype="<f4", count=dims, offset=_REC.size)
        if self.metric == "cosine":
            _fill_rows(mat, mat, "cosine")
        return mat

    def _snapshot_agrees(self, vrec: list[str], changed: set[str], end: int) -> bool:
        """Whether every record the snapshot relies on is still in the file.

        A record whose head was damaged after the snapshot was taken is
        gone from the engine's index (nothing can pin it on its key), and a
        replay would not see that key; neither may we.  A block the engine
        found damaged is not read by a replay either.
        """
        db = self._db
        need = [name for name in self._blocks if name is not None and name not in changed]
        if not vrec and not need:
            return True
        live = set(db.keys())  # refreshes: a record may go after `end`...
        missing = [name for name in (_PREFIX + k for k in vrec)
                   if name not in live and name not in changed]
        missing.extend(name for name in need if name not in live)
        if missing:
            late, _ = db.storage.keys_written_since(end)  # ... and that is no damage
            if any(name not in late for name in missing):
                return False
        try:
            for name in need:
                if name in live:
                    db.storage.value_view(name, refresh=False, check=False)
        except errors.ChecksumError:
            return False
        return True

    @_locked
    def compact(self, progress: bool | None = None) -> int:
        """Drop superseded records and old snapshots; returns bytes saved.

        Deleted and replaced vectors leave the HNSW graph too (it is rebuilt),
        and blocks whose rows were mostly replaced or deleted are rewritten.
        The file then holds exactly one snapshot, the one written last.
        """
        self._check_writable()
        self._refresh()
        show = self.progress if progress is None else progress
        had_index = self._index is not None
        try:
            self._repack()
            # The snapshot is deleted before compaction so that compaction
            # drops it: the one written after compaction replaces it, and a
            # snapshot taken before cannot serve after anyway (offsets and
            # the salt change).  A crash in between costs one rebuild at the
            # next open, as compacting does itself.
            with self._db.batch():
                self._drop_snapshot()
            saved = self._db.compact(keep_history=False, progress=show)
        finally:
            # Memory no longer matches the file (offsets moved, blocks went).
            self._reset()
            self._salt = self._db.storage.salt()
            end = self._db.storage.log_end()  # before keys(), as in _load
            threshold, self.index_threshold = self.index_threshold, 2**62
            try:
                self._apply_changes(self._db.keys(), progress_desc="reload")
            finally:
                self.index_threshold = threshold
        if had_index or len(self._label) >= threshold:
            self._build_index(progress=show, warn_missing=True)
        self._seen_end = end
        self._dirty_since_snap += 1
        self._write_snapshot()
        return saved

    def _drop_snapshot(self) -> None:
        """Delete every snapshot record (inside a batch)."""
        db = self._db
        for key in _SNAP_PARTS + [_SNAP + "info"]:
            if db.exists(key):
                db.delete(key)

    def _repack(self) -> None:
        """Rewrite the live rows of blocks that are at least half dead into a
        new block, in one batch with the deletes of the old blocks and of
        the tombstones that only shadowed them, so that compaction can drop
        them.  Memory is rebuilt by the caller."""
        n = len(self._keys)
        if not self._blocks or not n:
            return
        src = self._src_blk[:n]
        in_blk = src >= 0
        nb = len(self._blocks)
        live = np.bincount(src[in_blk & self._alive[:n]], minlength=nb)
        rows = np.bincount(src[in_blk], minlength=nb)
        stale = [i for i, name in enumerate(self._blocks)
                 if name is not None and live[i] * 2 <= rows[i]]
        if not stale:
            return
        with self._writing():
            keys: list[str] = []
            parts = []
            for i in stale:
                labels = np.flatnonzero(self._alive[:n] & (src == i))
                if not len(labels):
                    continue
                got = self._read_block(self._blocks[i], refresh=False)
                if got is None:
                    continue
                keys.extend(self._keys[lab] for lab in labels.tolist())
                parts.append(got[4][self._src_row[labels]])
            db = self._db
            if keys:
                metas = [_dump_meta(k, self._meta[k]) if self._meta[k] else b"" for k in keys]
                self._write_blocks(keys, np.concatenate(parts), metas, self.dimensions)
            for i in stale:
                db.delete(self._blocks[i])
            # A tombstone whose key no remaining block holds outranks
            # nothing: it can go.
            held: set[str] = set(keys)
            for i, name in enumerate(self._blocks):
                if name is not None and i not in stale:
                    got = self._read_block(name, refresh=False)
                    if got is not None:
                        held.update(got[2])
            for key in self._shadow:
                if key not in held and key not in self._meta:
                    db.delete(_PREFIX + key)


def _copy_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    # Callers may change what they get without changing the store; a
    # shallow copy does that unless a value is itself a container.
    if not meta:
        return {}
    for v in meta.values():
        if isinstance(v, (dict, list)):
            return copy.deepcopy(meta)
    return dict(meta)


def _check_key_type(key: Any) -> None:
    if not isinstance(key, str):
        raise errors.InvalidKeyType(f"keys are str, not {type(key).__name__}: {key!r}")


def _check_key(key: Any) -> None:
    _check_key_type(key)
    Storage.check_key(key)
    limit = fmt.MAX_KEY_BYTES - len(_PREFIX)
    if len(key.encode("utf-8")) > limit:
        raise errors.InvalidKey(f"key {key[:40]!r}... is longer than {limit} bytes")


def _strip_vectors(state: dict[str, Any], alive: np.ndarray, dims: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """hnswlib's level-0 data without the vectors (each element: its links,
    then its label), and the vectors of the elements whose label is dead,
    in element order (see _restore_vectors)."""
    count = int(state["cur_element_count"])
    size = int(state["size_data_per_element"])
    at = int(state["offset_data"])
    raw = state["data_level0"].reshape(-1)[:count * size].reshape(count, size)
    out = np.empty((count, size - 4 * dims), dtype=np.uint8)
    out[:, :at] = raw[:, :at]
    out[:, at:] = raw[:, at + 4 * dims:]
    lab = int(state["label_offset"]) - 4 * dims
    labels = np.ascontiguousarray(out[:, lab:lab + 8]).view("<u8").reshape(-1)
    dead = ~alive[labels.astype(np.int64)] if count else np.zeros(0, dtype=bool)
    vecs = np.ascontiguousarray(raw[dead, at:at + 4 * dims]).view("<f4").reshape(-1, dims)
    return out.reshape(-1), vecs


def _restore_vectors(state: dict[str, Any], alive: np.ndarray, mat: np.ndarray,
                     dead: np.ndarray) -> bool:
    """Put the vectors back into stripped level-0 data (live ones from our
    matrix, dead ones from the snapshot's ``dead`` part).  False: it does not fit."""
    try:
        count = int(state["cur_element_count"])
        size = int(state["size_data_per_element"])
        at = int(state["offset_data"])
        lab = int(state["label_offset"])
        dims = mat.shape[1]
        stripped = state["data_level0"]
        if stripped.itemsize != 1 or stripped.size != count * (size - 4 * dims) \
                or not 0 <= at <= lab - 4 * dims or lab + 8 > size:
            return False
        part = stripped.reshape(count, size - 4 * dims)
        labels = np.ascontiguousarray(part[:, lab - 4 * dims:lab - 4 * dims + 8]) \
            .view("<u8").reshape(-1).astype(np.int64)
        if count and (int(labels.max()) >= len(alive) or int(labels.min()) < 0):
            return False
        is_dead = ~alive[labels]
        if dead.size != int(is_dead.sum()) * dims:
            return False
        full = np.empty((count, size), dtype=np.uint8)
        full[:, :at] = part[:, :at]
        full[:, at + 4 * dims:] = part[:, at:]
        vecs = full[:, at:at + 4 * dims].view("<f4")
        vecs[...] = mat[labels]
        vecs[is_dead] = dead.reshape(-1, dims)
        mat[labels[is_dead]] = dead.reshape(-1, dims)
    except (KeyError, ValueError, TypeError, IndexError, OverflowError):
        return False
    state["data_level0"] = full.reshape(-1)
    return True


def _vectors_from_hnsw_state(state: dict[str, Any], n: int, dims: int) -> np.ndarray | None:
    """Our label -> vector matrix, gathered from hnswlib's level-0 data.

    Each element there is ``size_data_per_element`` bytes: links, then the
    vector at ``offset_data``, then the label (u64) at ``label_offset``.
    """
    try:
        count = int(state["cur_element_count"])
        size = int(state["size_data_per_element"])
        at = int(state["offset_data"])
        lab = int(state["label_offset"])
        raw = state["data_level0"].reshape(-1)[:count * size].reshape(count, size)
    except (KeyError, ValueError):
        return None
    labels = np.ascontiguousarray(raw[:, lab:lab + 8]).view("<u8").reshape(-1)
    vecs = raw[:, at:at + 4 * dims].view("<f4")  # rows strided, each row contiguous: no copy
    if count != n or (count and int(labels.max()) >= n):
        return None
    mat = np.zeros((n, dims), dtype=np.float32)
    mat[labels.astype(np.int64)] = vecs
    return mat


def _fill_rows(out: np.ndarray, mat: np.ndarray, metric: str,
               norms: np.ndarray | None = None) -> None:
    """Copy validated rows into ``out``, unit length for cosine (one pass)."""
    if metric != "cosine":
        out[...] = mat
        return
    if norms is None:
        norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))
    norms = np.where(norms == 0, np.float32(1.0), norms).astype(np.float32, copy=False)
    np.divide(mat, norms[:, None], out=out)


def _predicate(spec: Any) -> Callable[..., bool] | None:
    pred = compile_filter(spec)
    if pred is not None and pred is spec:
        # A caller's own function: it may change what it is given, so it
        # never gets the one empty dict that records without metadata share.
        return lambda m: spec({} if m is _EMPTY else m)
    return pred


def _check_keys(keys: list[Any]) -> str | None:
    """_check_key for many keys, in a few passes over all of them when they
    are fine; returns them NUL-joined (the block key table) when it could."""
    if keys and all(type(k) is str for k in keys):
        joined = "\0".join(keys)
        limit = fmt.MAX_KEY_BYTES - len(_PREFIX)
        try:
            if (joined.count("\0") == len(keys) - 1 and min(map(len, keys)) > 0
                    and 4 * max(map(len, keys)) <= limit):  # 4 bytes per char at most
                joined.encode("utf-8")
                return joined
        except UnicodeEncodeError:
            pass
    for key in keys:  # the slow way, for the error naming the bad key
        _check_key(key)
    return None


def _hnsw_state_fits(state: dict[str, Any], n: int, indexed: Any, dims: int,
                     space: str) -> bool:
    """Whether hnswlib can load this state without reading past its arrays
    (it copies what its scalars say from them, unchecked), and it holds
    labels [0, indexed) of our n.  The links themselves are not checked:
    a snapshot record written over is caught before (see _load_snapshot)."""
    try:
        count = int(state["cur_element_count"])
        cap = int(state["max_elements"])
        size = int(state["size_data_per_element"])
        links = int(state["size_links_per_element"])
        data, lists = state["data_level0"], state["link_lists"]
        levels = state["element_levels"]
        ext, internal = state["label_lookup_external"], state["label_lookup_internal"]
        if state["space"] != space or int(state["dim"]) != dims \
                or not 1 <= int(state["num_threads"]) <= 4096:
            return False
        if type(indexed) is not int or not count == indexed <= n or count > cap:
            return False
        if data.itemsize != 1 or lists.itemsize != 1 or levels.dtype.kind != "i" \
                or levels.itemsize != 4 or ext.dtype.kind != "u" or internal.dtype.kind != "u":
            return False
        if data.size != count * size or levels.size != cap or ext.size != count \
                or internal.size != count:
            return False
        if not count:
            return not lists.size and not levels.any()
        lv = levels[:count]
        top = int(state["max_level"])
        entry = int(state["enterpoint_node"])
        return (int(lv.min()) >= 0 and int(lv.max()) <= top and not levels[count:].any()
                and lists.size == int(lv.sum(dtype=np.int64)) * links
                and 0 <= entry < count and int(lv[entry]) == top
                and int(internal.max()) < count and int(ext.max()) < n)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError):
        return False


def _check_dims(dimensions: Any) -> None:
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)) \
            or not 1 <= dimensions <= _MAX_DIMS:
        raise errors.DimensionMismatch(
            f"dimensions must be an int from 1 to {_MAX_DIMS}, got {dimensions!r}")


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (rows / norms).astype(np.float32)


def _bar(it: Iterable[Any], desc: str, progress: bool, *, total: int | None = None,
         enabled: bool = True) -> Iterable[Any]:
    if not (progress and enabled):
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, delay=0.5, disable=None, leave=False)
