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

Storage: every record is a bytes value under ``v/<key>`` (a small header,
the float32 vector, then the metadata as JSON); upserts append and deletes
tombstone, as in any synadb key.  The index snapshot (hnswlib's graph,
the vectors by label and the metadata) lives under ``__vs__/snap/*`` with
the log offset it covers; on open, only records after that offset are
replayed.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import struct
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np

from .. import errors
from ..db import DbConfig, SynaDB
from ..engine import format as fmt
from .filters import compile_filter

__all__ = ["VectorStore", "SearchResult", "METRICS"]

METRICS = ("cosine", "euclidean", "dot_product")
_ALIASES = {"cosine": "cosine", "cos": "cosine", "euclidean": "euclidean", "l2": "euclidean",
            "dot_product": "dot_product", "dot": "dot_product", "ip": "dot_product",
            "inner_product": "dot_product"}
_SPACE = {"cosine": "cosine", "euclidean": "l2", "dot_product": "ip"}
_MAX_DIMS = 8192
_REC = struct.Struct("<BI")  # record version, dimensions (0: no vector)
_REC_VERSION = 1
_CONFIG = "__vs__/config"
_SNAP = "__vs__/snap/"
_PREFIX = "v/"


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

    Raises:
        DimensionMismatch: ``dimensions`` disagrees with the file.
        InvalidArgument: an unknown metric, or a metric that disagrees with the file.
    """

    def __init__(self, path: str | os.PathLike[str], dimensions: int | None = None,
                 metric: str = "cosine", *, m: int = 16, ef_construction: int = 200,
                 ef_search: int = 100, index_threshold: int = 10_000, progress: bool = True,
                 read_only: bool = False, sync_on_write: bool = False,
                 lock_timeout_s: float | None = None) -> None:
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
                if dimensions is not None and conf["dimensions"] not in (None, dimensions):
                    raise errors.DimensionMismatch(
                        f"{self.path!r} holds {conf['dimensions']}-dimensional vectors, "
                        f"not {dimensions}")
                if conf["metric"] != want_metric and metric != "cosine":
                    raise errors.InvalidArgument(
                        f"{self.path!r} uses metric {conf['metric']!r}, not {want_metric!r}")
                self.dimensions = conf["dimensions"] or dimensions
                self.metric = conf["metric"]
            else:
                self.dimensions = dimensions
                self.metric = want_metric
            self.m = m
            self.ef_construction = ef_construction
            self.ef_search = ef_search
            self.index_threshold = index_threshold
            if stored is None and not read_only:
                self._save_config()
            self._reset()
            self._load()
        except BaseException:
            self._db.close()
            raise

    # ----------------------------------------------------------- lifecycle
    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_locked
    def close(self) -> None:
        """Persist the index snapshot if it is stale, then close the file."""
        if self._db.closed:
            return
        try:
            if not self._db.config.read_only and self._snapshot_stale():
                self._write_snapshot()
        finally:
            self._db.close()

    @_locked
    def flush(self) -> None:
        """Snapshot the index (if any changed) and fsync."""
        self._check_writable()
        if self._snapshot_stale():
            self._write_snapshot()
        self._db.sync()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __repr__(self) -> str:
        return (f"VectorStore({self.path!r}, dimensions={self.dimensions}, "
                f"metric={self.metric!r}, {'closed' if self.closed else f'{len(self)} vectors'})")

    # -------------------------------------------------------------- state
    def _reset(self) -> None:
        d = self.dimensions or 1
        self._label: dict[str, int] = {}  # key -> label of its live vector
        self._keys: list[str | None] = []  # label -> key (None: dead)
        self._meta: dict[str, dict[str, Any]] = {}  # key -> metadata, every live record
        self._mat = np.zeros((0, d), dtype=np.float32)  # label -> vector (unit for cosine)
        self._alive = np.zeros(0, dtype=bool)
        self._index: Any = None
        self._indexed = 0  # labels [0, _indexed) are in the index
        self._seen_end = 0  # log offset our state reflects
        self._snap_end = 0  # log offset of the last snapshot (0: none)
        self._dirty_since_snap = 0

    def _save_config(self) -> None:
        self._db.put_text(_CONFIG, json.dumps({
            "version": 1, "dimensions": self.dimensions, "metric": self.metric}))

    def _load(self) -> None:
        db = self._db
        self._salt = db._salt()
        if not self._load_snapshot():
            keys = [k[len(_PREFIX):] for k in db.keys(_PREFIX + "*")]
            self._apply_keys(keys, progress_desc="load vectors")
        self._seen_end = db._log_end()

    def _refresh(self) -> None:
        """Take in what other handles wrote since we last looked."""
        changed, end = self._db._keys_written_since(self._seen_end)  # also follows a swap
        log = self._db._log
        if log is not None and log.salt != self._salt:
            # Another handle compacted the file: offsets mean nothing now.
            self._reset()
            self._load()
            return
        if changed:
            self._apply_keys([k[len(_PREFIX):] for k in changed if k.startswith(_PREFIX)])
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
        self._seen_end = self._db._log_end()

    def _apply_keys(self, keys: Iterable[str], progress_desc: str | None = None) -> None:
        """Make memory agree with the file for these keys."""
        db = self._db
        keys = list(keys)
        it: Iterable[str] = keys
        if progress_desc and len(keys) > 50_000:
            it = _bar(keys, progress_desc, self.progress)
        add_keys: list[str] = []
        add_vecs: list[np.ndarray] = []
        for key in it:
            raw = db.get_bytes(_PREFIX + key)
            self._forget(key)
            if raw is None:
                continue
            vec, meta = self._decode(key, raw)
            self._meta[key] = meta
            if vec is not None:
                add_keys.append(key)
                add_vecs.append(vec)
        if add_keys:
            self._add_rows(add_keys, np.vstack(add_vecs))

    def _decode(self, key: str, raw: bytes) -> tuple[np.ndarray | None, dict[str, Any]]:
        ver, dims = _REC.unpack_from(raw, 0)
        if ver != _REC_VERSION:
            raise errors.CorruptDatabase(f"{key!r}: unknown vector record version {ver}")
        end = _REC.size + 4 * dims
        vec = np.frombuffer(raw, dtype="<f4", count=dims, offset=_REC.size) if dims else None
        return vec, _load_meta(raw[end:])

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

    def _add_rows(self, keys: Sequence[str], mat: np.ndarray) -> None:
        """Give each key a new label holding its vector (already validated)."""
        n = len(keys)
        start = len(self._keys)
        if self.dimensions is None:
            self.dimensions = mat.shape[1]
        if self._mat.shape[1] != self.dimensions:
            self._mat = np.zeros((0, self.dimensions), dtype=np.float32)
        need = start + n
        if need > len(self._mat):
            cap = max(need, int(len(self._mat) * 1.5) + 16)
            grown = np.zeros((cap, self.dimensions), dtype=np.float32)
            grown[:start] = self._mat[:start]
            self._mat = grown
            alive = np.zeros(cap, dtype=bool)
            alive[:start] = self._alive[:start]
            self._alive = alive
        block = self._mat[start:need]
        block[...] = mat
        if self.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", block, block))
            norms[norms == 0] = 1.0
            block /= norms[:, None]
        self._alive[start:need] = True
        self._keys.extend(keys)
        for i, key in enumerate(keys):
            self._label[key] = start + i
        self._dirty_since_snap += n
        if self._index is not None:
            self._index_rows(start, need)
        elif len(self._label) >= self.index_threshold:
            self._build_index(progress=self.progress, warn_missing=True)

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
        self._check_writable()
        _check_key(key)
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
                self._db.put_bytes(_PREFIX + key, self._encode(vec, meta_raw))
        except BaseException:
            if first_dims:
                self.dimensions = None
            raise
        self._remember(key, vec, _load_meta(meta_raw))

    @_locked
    def insert_batch(self, keys: Sequence[str], vectors: Any,
                     metadatas: Sequence[Mapping[str, Any] | None] | None = None) -> int:
        """Insert or replace many keys at once (all or nothing).  Returns the count.

        ``vectors`` is an (n, dimensions) matrix, or a list of n rows in which
        a ``None`` row stores a metadata-only record.
        """
        self._check_writable()
        keys = list(keys)
        if not keys and np.asarray(vectors, dtype=object).size == 0:
            return 0
        for key in keys:
            _check_key(key)
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
        if not np.isfinite(f32).all():
            bad = int(np.flatnonzero(~np.isfinite(f32).all(axis=1))[0])
            who = keys[bad] if has is None else [k for k, h in zip(keys, has) if h][bad]
            raise errors.InvalidArgument(f"{who!r}: the vector has NaN, infinity, or a value "
                                         "too large for float32")
        mat = f32
        if metadatas is None:
            metas: list[bytes] = [b""] * len(keys)
        else:
            metadatas = list(metadatas)
            if len(metadatas) != len(keys):
                raise errors.InvalidArgument(
                    f"{len(metadatas)} metadatas for {len(keys)} keys")
            metas = [_dump_meta(k, md) for k, md in zip(keys, metadatas)]
        first_dims = self.dimensions is None and n_vec > 0
        items = []
        row_of: list[int] = []  # key index -> row in mat, or -1
        r = 0
        head_vec = _REC.pack(_REC_VERSION, dims or 0)
        head_none = _REC.pack(_REC_VERSION, 0)
        for i, key in enumerate(keys):
            if has is None or has[i]:
                items.append((_PREFIX + key, (head_vec, mat[r], metas[i])))
                row_of.append(r)
                r += 1
            else:
                items.append((_PREFIX + key, (head_none, metas[i])))
                row_of.append(-1)
        try:
            with self._writing():
                if n_vec and self.dimensions is not None and self.dimensions != dims:
                    raise errors.DimensionMismatch(
                        f"expected {self.dimensions} dimensions, got {dims}")
                first_dims = self.dimensions is None and n_vec > 0
                if first_dims:
                    self.dimensions = dims
                    self._save_config()
                step = 20_000
                for s in _bar(range(0, len(items), step), "insert", self.progress,
                              total=math.ceil(len(items) / step), enabled=len(items) > 50_000):
                    self._db._put_blobs(items[s:s + step], keys_checked=True)
        except BaseException:
            if first_dims:
                self.dimensions = None
            raise
        # Later duplicates win, as if inserted one by one.
        last = {key: i for i, key in enumerate(keys)}
        order = range(len(keys)) if len(last) == len(keys) else sorted(last.values())
        meta = self._meta
        for i in order:
            key = keys[i]
            if key in meta:
                self._forget(key)
            meta[key] = _load_meta(metas[i]) if metas[i] else {}
        with_vec = [i for i in order if row_of[i] >= 0]
        if with_vec:
            self._add_rows([keys[i] for i in with_vec], mat[[row_of[i] for i in with_vec]])
        return len(keys)

    @_locked
    def delete(self, key: str) -> bool:
        """Delete ``key``.  Returns whether it existed."""
        self._check_writable()
        _check_key(key)
        with self._writing():
            existed = self._db.delete(_PREFIX + key)
        self._forget(key)
        if existed:
            self._dirty_since_snap += 1
        return existed

    @_locked
    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete several keys at once (all or nothing).  Returns how many existed."""
        self._check_writable()
        n = 0
        keys = list(keys)
        for key in keys:
            _check_key(key)
        with self._writing():
            for key in keys:
                n += self._db.delete(_PREFIX + key)
        for key in keys:
            self._forget(key)
        self._dirty_since_snap += n
        return n

    @_locked
    def clear(self, reset_dimensions: bool = False) -> None:
        """Delete every record; ``reset_dimensions`` lets the next vector set a new size."""
        self.delete_many(list(self._meta))
        if reset_dimensions:
            self.dimensions = None
            self._reset()
            self._index = None
            self._save_config()
            self._seen_end = self._db._log_end()

    @_locked
    def update_metadata(self, key: str, metadata: Mapping[str, Any] | None) -> None:
        """Replace ``key``'s metadata, keeping its vector."""
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
        return key in self._meta

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
        pred = compile_filter(filter)
        self._readable()
        if pred is None:
            return list(self._meta)
        return [k for k, m in self._meta.items() if pred(m)]

    @_locked
    def get(self, key: str) -> np.ndarray | None:
        """The vector stored for ``key`` (float32, as inserted), or None."""
        self._readable()
        raw = self._db.get_bytes(_PREFIX + key)
        if raw is None:
            return None
        vec, _ = self._decode(key, raw)
        return None if vec is None else vec.copy()

    @_locked
    def get_metadata(self, key: str) -> dict[str, Any] | None:
        """The metadata stored for ``key``, or None if there is no such key."""
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
        pred = compile_filter(filter)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise errors.InvalidArgument(f"k must be a positive int, got {k!r}")
        self._readable()
        if self.dimensions is None or not self._label:
            return []
        q = self._vector("query", query)
        if self._index is not None:
            hits = self._search_index(q, int(k), pred, ef)  # hnswlib normalises for cosine
        else:
            if self.metric == "cosine":
                q = _unit(q.reshape(1, -1))[0]
            hits = self._search_exact(q, int(k), pred)
        out = []
        meta = self._meta
        keys = self._keys
        for label, score in hits:
            key = keys[label]
            vec = self.get(key) if include_vectors else None
            out.append(SearchResult(key, score, _copy_meta(meta.get(key)), vec))
        return out

    def _candidates(self, pred: Callable[..., bool] | None) -> np.ndarray:
        n = len(self._keys)
        if pred is None:
            return np.flatnonzero(self._alive[:n])
        meta = self._meta
        return np.fromiter((lab for key, lab in self._label.items() if pred(meta[key])),
                           dtype=np.int64)

    def _distances(self, q: np.ndarray, labels: np.ndarray) -> np.ndarray:
        rows = self._mat[labels]
        if self.metric == "cosine":
            return 1.0 - rows @ q
        if self.metric == "dot_product":
            return -(rows @ q)
        diff = rows - q
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))

    def _search_exact(self, q: np.ndarray, k: int, pred) -> list[tuple[int, float]]:
        labels = self._candidates(pred)
        if not len(labels):
            return []
        dist = self._distances(q, labels)
        if len(labels) > k:
            top = np.argpartition(dist, k - 1)[:k]
        else:
            top = np.arange(len(labels))
        top = top[np.lexsort((labels[top], dist[top]))]
        return [(int(labels[i]), float(dist[i])) for i in top]

    def _search_index(self, q: np.ndarray, k: int, pred, ef: int | None):
        index = self._index
        live = len(self._label)
        k = min(k, live)
        index.set_ef(max(ef or self.ef_search, k))
        keys, meta = self._keys, self._meta
        flt = None
        if pred is not None:
            def flt(label: int) -> bool:
                key = keys[label]
                return key is not None and pred(meta[key])
        try:
            labels, dist = index.knn_query(q.reshape(1, -1), k=k, filter=flt)
        except RuntimeError:
            # Fewer than k matches reachable (a selective filter): the exact
            # answer over the matching records is both right and small.
            if self.metric == "cosine":
                q = _unit(q.reshape(1, -1))[0]
            return self._search_exact(q, k, pred)
        labels, dist = labels[0].astype(np.int64), dist[0].astype(np.float64)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(dist, 0.0))
        elif self.metric == "dot_product":
            dist = dist - 1.0
        return list(zip(labels.tolist(), dist.tolist()))

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
        n = len(self._keys)
        index = hnswlib.Index(space=_SPACE[self.metric], dim=self.dimensions)
        index.init_index(max_elements=max(n, 16) + 1024, ef_construction=self.ef_construction,
                         M=self.m, allow_replace_deleted=False)
        index.set_ef(self.ef_search)
        self._index = index
        self._indexed = 0
        self._index_rows(0, n, progress=progress)

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
            index.add_items(self._mat[s:e], labels)
            dead = labels[~self._alive[s:e]]
            for lab in dead.tolist():
                index.mark_deleted(lab)
        self._indexed = end

    # ----------------------------------------------------------- snapshot
    def _snapshot_stale(self) -> bool:
        return self._dirty_since_snap > 0 and (
            self._index is not None or len(self._meta) > 2_000)

    def _write_snapshot(self) -> None:
        """Persist labels, vectors, metadata and the HNSW graph (all or nothing)."""
        db = self._db
        with db.batch():
            self._write_snapshot_locked()
        self._seen_end = db._log_end()
        self._snap_end = self._seen_end
        self._dirty_since_snap = 0

    def _write_snapshot_locked(self) -> None:
        db = self._db
        self._refresh()
        n = len(self._keys)
        info: dict[str, Any] = {"version": 1, "n": n, "dimensions": self.dimensions,
                                "metric": self.metric, "salt": db._salt(),
                                "arrays": {}, "hnsw": None}
        # Large arrays go in as buffers: one copy into the file, no joins.
        blobs: list[tuple[str, Any]] = [
            (_SNAP + "keys", "\0".join(k if k is not None else "" for k in self._keys)
             .encode("utf-8")),
            (_SNAP + "alive", np.ascontiguousarray(self._alive[:n])),
            (_SNAP + "meta", json.dumps(self._meta, separators=(",", ":"), ensure_ascii=False,
                                        default=_json_default).encode("utf-8")),
        ]
        if self._index is None or self._indexed != n:
            blobs.append((_SNAP + "mat", np.ascontiguousarray(self._mat[:n])))
        else:
            # hnswlib's graph holds every vector already (unit length for
            # cosine, as ours): the matrix is rebuilt from it on open.
            info["mat_from_index"] = True
        if self._index is not None:
            (state,) = self._index.__getstate__()
            scalars = {}
            for name, value in state.items():
                if isinstance(value, np.ndarray):
                    info["arrays"][name] = [value.dtype.str, list(value.shape)]
                    blobs.append((_SNAP + "hnsw/" + name, np.ascontiguousarray(value)))
                else:
                    scalars[name] = value
            info["hnsw"] = scalars
            info["indexed"] = self._indexed
        for key, blob in blobs:
            db._put_blob_parts(key, [blob])
        # After the blobs: reopening then replays nothing of the snapshot itself.
        info["covered_end"] = db._log_end()
        db.put_text(_SNAP + "info", json.dumps(info))

    def _load_snapshot(self) -> bool:
        db = self._db
        raw = db.get_text(_SNAP + "info")
        if raw is None:
            return False
        info = json.loads(raw)
        if info.get("version") != 1 or info.get("salt") != db._salt() \
                or info.get("dimensions") != self.dimensions:
            return False  # compacted by hand, or from another layout: replay instead
        n = info["n"]
        try:
            names = db.get_bytes(_SNAP + "keys").decode("utf-8")
            keys = names.split("\0") if n else []
            alive = np.frombuffer(db._value_view(_SNAP + "alive"), dtype=bool).copy()
            meta = json.loads(db.get_bytes(_SNAP + "meta"))
        except (AttributeError, TypeError, ValueError, UnicodeDecodeError):
            return False
        dims = self.dimensions or 0
        if len(keys) != n or len(alive) != n:
            return False
        index = None
        state: dict[str, Any] = {}
        if info["hnsw"] is not None:
            try:
                import hnswlib
            except ImportError:
                if info.get("mat_from_index"):
                    return False  # the vectors live in the graph: replay instead
                hnswlib = None
            if hnswlib is not None:
                state = dict(info["hnsw"])
                for name, (dtype, shape) in info["arrays"].items():
                    buf = db._value_view(_SNAP + "hnsw/" + name)  # hnswlib copies it
                    if buf is None:
                        return False
                    state[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
                index = hnswlib.Index.__new__(hnswlib.Index)
                index.__setstate__((state,))
                index.set_ef(self.ef_search)
        if info.get("mat_from_index"):
            mat = _vectors_from_hnsw_state(state, n, dims)
            if mat is None:
                return False
        else:
            view = db._value_view(_SNAP + "mat")
            if view is None:
                return False
            flat = np.frombuffer(view, dtype=np.float32)
            if flat.size != n * dims:
                return False
            mat = flat.reshape(n, dims).copy()
        self._keys = [k if k else None for k in keys]
        self._alive = alive
        self._mat = mat
        self._meta = meta
        self._label = {k: i for i, k in enumerate(keys) if k and alive[i]}
        if index is not None:
            self._index = index
            self._indexed = info.get("indexed", n)
        # Replay what came after the snapshot.
        self._snap_end = info["covered_end"]
        changed, _ = db._keys_written_since(self._snap_end)
        replay = [k[len(_PREFIX):] for k in changed if k.startswith(_PREFIX)]
        self._apply_keys(replay)
        # What we replayed is not in the snapshot yet: the next close writes
        # one, so a crash's tail is replayed once, not at every open.
        self._dirty_since_snap = len(replay)
        return True

    @_locked
    def compact(self, progress: bool | None = None) -> int:
        """Drop superseded records and old snapshots; returns bytes saved.

        Deleted and replaced vectors leave the HNSW graph too (it is rebuilt).
        """
        self._check_writable()
        self._refresh()
        show = self.progress if progress is None else progress
        had_index = self._index is not None
        saved = self._db.compact(keep_history=False, progress=show)
        keys = list(self._meta)
        self._reset()
        threshold, self.index_threshold = self.index_threshold, 2**62
        try:
            self._apply_keys(keys, progress_desc="reload")
        finally:
            self.index_threshold = threshold
        if had_index or len(self._label) >= threshold:
            self._build_index(progress=show, warn_missing=True)
        self._seen_end = self._db._log_end()
        self._dirty_since_snap += 1
        self._write_snapshot()
        return saved


def _copy_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    # Callers may change what they get without changing the store; a
    # shallow copy does that unless a value is itself a container.
    if not meta:
        return {}
    for v in meta.values():
        if isinstance(v, (dict, list)):
            return copy.deepcopy(meta)
    return dict(meta)


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise errors.InvalidKey(f"keys are str, not {type(key).__name__}: {key!r}")
    SynaDB._key(key)
    limit = fmt.MAX_KEY_BYTES - len(_PREFIX)
    if len(key.encode("utf-8")) > limit:
        raise errors.InvalidKey(f"key {key[:40]!r}... is longer than {limit} bytes")


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
