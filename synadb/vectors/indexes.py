"""Shared machinery of synadb's specialised vector indexes, and rank fusion.

The indexes themselves live next door:

=========================  ===============================================
:class:`MmapVectorStore`   ``mmap_store.py`` bulk ingest into a mapped file,
                           then HNSW (hnswlib); millions of vectors.
:class:`GravityWellIndex`  ``gravity.py`` IVF (k-means lists); builds in
                           seconds, good for live ingest.
:class:`CascadeIndex`      ``cascade.py`` LSH bucket tree + exact re-rank;
                           no training step, presets for the trade-off.
:class:`SparseVectorStore` ``sparse.py`` exact inverted index for
                           BM25/SPLADE-style sparse vectors.
:class:`HybridVectorStore` ``hybrid.py`` hot GWI layer + cold Cascade layer.
:func:`hybrid_search`      here: reciprocal rank fusion of two result lists.
=========================  ===============================================

Every dense index reports ``score`` as a *distance* (lower is closer), the
same convention as :class:`synadb.VectorStore`: cosine ``1 - cos``,
euclidean the L2 distance, dot_product ``-dot``.  Sparse search and rank
fusion report similarities (higher is better) and say so.

The SynaDB-backed indexes (GWI, Cascade, Sparse) keep one SynaDB file each.
A ``meta`` text value (JSON) names the kind of index, its format version and
its settings; the data is a history of ``seg`` bytes values, one *segment*
per insert call.  A segment is all-or-nothing (one checksummed record, or
several inside ``db.batch()``), so a crash can lose the last call but never
half of it.  Reopening replays the segments; later keys override earlier
ones.  ``save()`` folds many small segments into one.

Segment layout (little-endian)::

    offset  size  field
    0       4     magic b"SVSG"
    4       2     segment version (1)
    6       2     number of arrays that follow the keys
    8       4     number of keys n
    12      4     byte length of the keys block
    16      ...   keys: UTF-8, joined by NUL (keys never contain NUL), padded to 8
    then per array: name (8 bytes, NUL padded), dtype (4 bytes, e.g. "<f4"),
                    ndim (u32), shape (2 x u64), data padded to 8
"""

from __future__ import annotations

import abc
import functools
import json
import math
import os
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import numpy as np

from .. import errors

if TYPE_CHECKING:
    from ..db import SynaDB

__all__ = ["METRICS", "ScoredKey", "hybrid_search"]

METRICS = ("cosine", "euclidean", "dot_product")
# The same spellings VectorStore accepts.
METRIC_ALIASES = {"cosine": "cosine", "cos": "cosine", "euclidean": "euclidean",
                  "l2": "euclidean", "dot_product": "dot_product", "dot": "dot_product",
                  "ip": "dot_product", "inner_product": "dot_product"}
MAX_DIMENSIONS = 8192
META_KEY = "meta"
SEGMENT_KEY = "seg"
# One segment value stays far below the engine's 4 GiB value limit, and a
# huge insert_batch becomes several segments inside one db.batch().
SEGMENT_MAX_BYTES = 256 << 20
# save() folds the history into one snapshot once it holds this many
# segments: reopening replays one record per segment.
FOLD_SEGMENTS = 32

_SEG_MAGIC = b"SVSG"
_SEG_VERSION = 1
_SEG_HEAD = struct.Struct("<4sHHII")
_FIELD_HEAD = struct.Struct("<8s4sIQQ")


class ScoredKey(NamedTuple):
    """One search hit: ``key`` and ``score``.

    For dense indexes ``score`` is a distance (lower is closer); for
    :class:`SparseVectorStore` and :func:`hybrid_search` it is a similarity
    (higher is better).  Being a tuple, a hit unpacks as ``key, score = hit``.
    """

    key: str
    score: float


# ----------------------------------------------------------------- validation
def check_dimensions(dimensions: object) -> int:
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise errors.InvalidArgument(f"dimensions must be an int, not {dimensions!r}")
    d = int(dimensions)
    if not 1 <= d <= MAX_DIMENSIONS:
        raise errors.InvalidArgument(f"dimensions must be 1..{MAX_DIMENSIONS}, got {d}")
    return d


def check_metric(metric: object) -> str:
    """The canonical name of ``metric`` (aliases such as "l2" or "ip" allowed)."""
    name = METRIC_ALIASES.get(metric) if isinstance(metric, str) else None
    if name is None:
        raise errors.InvalidArgument(
            f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    return name


_F = TypeVar("_F", bound=Callable[..., Any])


def locked(method: _F) -> _F:
    """Run the method under ``self._lock``: one thread at a time per handle
    (searches read arrays that inserts may reallocate)."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return cast(_F, wrapper)


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise errors.InvalidArgument(f"{name} must be an int, not {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise errors.InvalidArgument(f"{name} must be {span}, got {v}")
    return v


def as_matrix(vectors: Any, dimensions: int, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 (n, dimensions) array, checked."""
    try:
        arr = np.asarray(vectors)
    except (TypeError, ValueError) as e:  # ragged nested lists
        raise errors.DimensionMismatch(f"{what} are not a rectangular array: {e}") from e
    if arr.ndim != 2 or arr.shape[1] != dimensions:
        raise errors.DimensionMismatch(
            f"{what} must have shape (n, {dimensions}), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise errors.DimensionMismatch(f"{what} must be numeric, not dtype {arr.dtype}")
    if arr.dtype == np.float32:
        out = np.ascontiguousarray(arr)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, refused
            out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        # float64 values beyond float32's range become inf here, also rejected.
        raise errors.NonFiniteValue(f"{what} contain NaN or infinity (as float32)")
    return out


def as_query(query: Any, dimensions: int) -> np.ndarray:
    """One query as a float32 (dimensions,) array, checked."""
    if type(query) is np.ndarray and query.dtype == np.float32 \
            and query.shape == (dimensions,) and query.flags.c_contiguous:
        # The common case, kept cheap: q @ q is finite unless q holds NaN or
        # inf (or squares overflow, which the full check below clears).
        if math.isfinite(float(query @ query)) or np.isfinite(query).all():
            return query
        raise errors.NonFiniteValue("the query contains NaN or infinity")
    try:
        arr = np.asarray(query)
    except (TypeError, ValueError) as e:
        raise errors.DimensionMismatch(f"the query is not a flat vector: {e}") from e
    if arr.ndim != 1 or arr.shape[0] != dimensions:
        raise errors.DimensionMismatch(
            f"the query must have shape ({dimensions},), got {arr.shape}")
    out: np.ndarray = as_matrix(arr[None, :], dimensions, "the query")[0]
    return out


def check_keys(keys: Any, n: int) -> list[str]:
    """``keys`` as a list of n valid vector keys (non-empty str without NUL)."""
    if isinstance(keys, (str, bytes)):
        raise errors.InvalidArgument("keys must be a sequence of str, not one str")
    try:
        out = list(keys)
    except TypeError as e:
        raise errors.InvalidArgument(f"keys must be a sequence of str: {e}") from e
    if len(out) != n:
        raise errors.InvalidArgument(f"{len(out)} keys for {n} vectors")
    for k in out:
        if not isinstance(k, str) or not k or "\0" in k:
            raise errors.InvalidKey(f"a vector key must be a non-empty str without NUL, "
                                    f"not {k!r}")
    try:
        "\0".join(out).encode("utf-8")
    except UnicodeEncodeError as e:
        raise errors.InvalidKey(f"a key is not valid Unicode: {e}") from e
    return out


def check_k(k: object) -> int:
    return check_int("k", k, 1)


def last_wins(keys: list[str]) -> np.ndarray | None:
    """Rows to keep so that a repeated key keeps its last value (None: all)."""
    first = dict(zip(keys, range(len(keys))))
    if len(first) == len(keys):
        return None
    return np.fromiter(first.values(), dtype=np.int64, count=len(first))


# ------------------------------------------------------------------- metrics
def working_form(x: np.ndarray, metric: str) -> np.ndarray:
    """What a dense index stores: unit vectors for cosine, else as given.

    A zero vector stays zero under cosine (distance 1 to everything) rather
    than becoming NaN.
    """
    if metric != "cosine":
        return x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-30), out=norms)
    out: np.ndarray = (x / norms).astype(np.float32, copy=False)
    return out


def distances(vecs: np.ndarray, sqnorms: np.ndarray | None, q: np.ndarray,
              metric: str) -> np.ndarray:
    """float32 distances from query ``q`` (working form) to rows of ``vecs``."""
    dots: np.ndarray = vecs @ q
    if metric == "cosine":
        out: np.ndarray = 1.0 - dots
        return out
    if metric == "dot_product":
        dots *= -1.0
        return dots
    assert sqnorms is not None
    d2: np.ndarray = sqnorms - 2.0 * dots + float(q @ q)
    np.maximum(d2, 0.0, out=d2)
    np.sqrt(d2, out=d2)
    return d2


def exact_scores(vecs: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances for the few final hits, without cancellation error."""
    v = vecs.astype(np.float64)
    q64 = q.astype(np.float64)
    if metric == "cosine":
        nv = np.linalg.norm(v, axis=1)
        nq = float(np.linalg.norm(q64))
        denom = np.maximum(nv * nq, 1e-300)
        cos = np.where(nv * nq > 0, (v @ q64) / denom, 0.0)
        return 1.0 - cos
    if metric == "dot_product":
        return -(v @ q64)
    dist: np.ndarray = np.linalg.norm(v - q64, axis=1)
    return dist


def top_k(dist: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k smallest values, closest first (ties: lower position)."""
    n = dist.shape[0]
    if k < n:
        part = np.argpartition(dist, k - 1)[:k]
    else:
        part = np.arange(n)
    return part[np.lexsort((part, dist[part]))]


def rerank(vecs: np.ndarray, sqnorms: np.ndarray | None, rows: np.ndarray,
           q: np.ndarray, k: int, metric: str, keys: Sequence[str]) -> list[ScoredKey]:
    """Exact top-k among candidate ``rows`` (sorted unique row numbers)."""
    if rows.size == 0:
        return []
    cand = vecs[rows]
    d = distances(cand, None if sqnorms is None else sqnorms[rows], q, metric)
    best = top_k(d, k)
    final = exact_scores(cand[best], q, metric)
    hit_rows = rows[best]
    order = np.lexsort((hit_rows, final))
    return [ScoredKey(keys[int(hit_rows[i])], float(final[i])) for i in order]


def ranges_to_rows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, e)`` for each pair without a Python loop."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return shift + np.arange(total, dtype=np.int64)


def progress_bar(total: int, desc: str, progress: bool, unit: str = "vec") -> Any:
    """A tqdm bar that shows only in a terminal, after half a second."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, delay=0.5, leave=False,
                disable=None if progress else True)


# ------------------------------------------------------------------ segments
def pack_segment(keys: list[str], fields: dict[str, np.ndarray]) -> bytes:
    """Encode keys plus named arrays (see the module docstring)."""
    kb = "\0".join(keys).encode("utf-8")
    parts = [_SEG_HEAD.pack(_SEG_MAGIC, _SEG_VERSION, len(fields), len(keys), len(kb)),
             kb, b"\0" * (-len(kb) % 8)]
    for name, arr in fields.items():
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        shape = tuple(a.shape) + (0,) * (2 - a.ndim)
        parts.append(_FIELD_HEAD.pack(name.encode("ascii"), a.dtype.str.encode("ascii"),
                                      a.ndim, shape[0], shape[1]))
        raw = a.tobytes()
        parts += [raw, b"\0" * (-len(raw) % 8)]
    return b"".join(parts)


def unpack_segment(blob: bytes, where: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Decode a segment; anything malformed raises CorruptDatabase."""
    def bad(why: str) -> errors.CorruptDatabase:
        return errors.CorruptDatabase(f"{where}: malformed segment ({why})")

    if len(blob) < _SEG_HEAD.size:
        raise bad("too short")
    magic, version, nfields, n, klen = _SEG_HEAD.unpack_from(blob, 0)
    if magic != _SEG_MAGIC:
        raise bad("bad magic")
    if version > _SEG_VERSION:
        raise errors.FormatVersionError(
            f"{where}: segment version {version} is newer than this synadb reads")
    pos = _SEG_HEAD.size
    if pos + klen > len(blob):
        raise bad("keys run past the end")
    try:
        keys = blob[pos:pos + klen].decode("utf-8").split("\0") if n else []
    except UnicodeDecodeError as e:
        raise bad("keys are not UTF-8") from e
    if len(keys) != n:
        raise bad(f"{len(keys)} keys, header says {n}")
    pos += klen + (-klen % 8)
    fields: dict[str, np.ndarray] = {}
    for _ in range(nfields):
        if pos + _FIELD_HEAD.size > len(blob):
            raise bad("field header runs past the end")
        name, dt, ndim, s0, s1 = _FIELD_HEAD.unpack_from(blob, pos)
        pos += _FIELD_HEAD.size
        try:
            dtype = np.dtype(dt.rstrip(b"\0").decode("ascii"))
        except (TypeError, UnicodeDecodeError) as e:
            raise bad(f"unknown dtype {dt!r}") from e
        if dtype.kind not in "fiub" or ndim not in (1, 2):
            raise bad(f"unexpected array {dtype}/{ndim}")
        shape = (s0,) if ndim == 1 else (s0, s1)
        nbytes = math.prod(shape) * dtype.itemsize
        if pos + nbytes > len(blob):
            raise bad("array runs past the end")
        arr = np.frombuffer(blob, dtype=dtype, count=math.prod(shape), offset=pos)
        fields[name.rstrip(b"\0").decode("ascii")] = arr.reshape(shape).astype(
            dtype.newbyteorder("="))
        pos += nbytes + (-nbytes % 8)
    return keys, fields


def rows_per_segment(row_bytes: int) -> int:
    return max(1, SEGMENT_MAX_BYTES // max(1, row_bytes))


class IndexFile:
    """One SynaDB file holding an index: ``meta`` JSON plus ``seg`` history.

    Args:
        path: the file.
        kind: the class name stored in ``meta`` (another kind is refused).
        version: this code's format version for ``kind``.
        new_meta: settings to store when the file is new.

    Raises:
        InvalidArgument: the file holds something else.
        FormatVersionError: written by a newer synadb.
    """

    def __init__(self, path: str | os.PathLike[str], kind: str, version: int,
                 new_meta: dict[str, Any] | None, *, must_exist: bool = False) -> None:
        from ..db import DbConfig, SynaDB

        if not isinstance(path, (str, os.PathLike)):
            raise errors.InvalidPath(f"path must be a str or os.PathLike, not {path!r}")
        fspath = os.fspath(path)
        if must_exist and not os.path.exists(fspath):
            raise errors.DatabaseNotFound(f"{fspath!r} does not exist")
        # Vectors are incompressible floats: LZ4 would only cost time.
        self.db: SynaDB | None = SynaDB(
            fspath, config=DbConfig(enable_compression=False, progress=False))
        self.path = self.db.path
        self.kind = kind
        try:
            raw = self.db.get(META_KEY)
            if raw is None:
                if len(self.db) or new_meta is None:
                    raise errors.InvalidArgument(
                        f"{self.path!r} is a synadb file but not a {kind}")
                self.meta = {"kind": kind, "format": version, **new_meta}
                self.db.put_text(META_KEY, json.dumps(self.meta, sort_keys=True))
                self.db.sync()
            else:
                try:
                    meta = json.loads(raw) if isinstance(raw, str) else None
                except json.JSONDecodeError:
                    meta = None
                if not isinstance(meta, dict) or meta.get("kind") != kind:
                    what = meta.get("kind") if isinstance(meta, dict) else "something else"
                    raise errors.InvalidArgument(
                        f"{self.path!r} holds {what}, not a {kind}")
                if int(meta.get("format", 0)) > version:
                    raise errors.FormatVersionError(
                        f"{self.path!r}: {kind} format {meta['format']} is newer than "
                        f"this synadb reads ({version})")
                self.meta = meta
        except BaseException:
            self.close()
            raise

    def live(self) -> SynaDB:
        if self.db is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        return self.db

    def segments(self) -> list[tuple[list[str], dict[str, np.ndarray]]]:
        hist = self.live().get_history(SEGMENT_KEY)
        return [unpack_segment(b, self.path) for b in hist]

    def append(self, blobs: Iterable[bytes]) -> None:
        """Append segments, all or nothing."""
        db = self.live()
        items = list(blobs)
        if len(items) == 1:
            db.put_bytes(SEGMENT_KEY, items[0])  # one record is atomic by itself
            return
        with db.batch():
            for b in items:
                db.put_bytes(SEGMENT_KEY, b)

    def replace(self, blobs: Iterable[bytes], extra: dict[str, bytes] | None = None,
                meta: dict[str, Any] | None = None) -> None:
        """Swap the whole segment history (and other values) atomically, then
        compact so that the superseded bytes leave the file."""
        db = self.live()
        with db.batch():
            if meta:
                self.meta.update(meta)
                db.put_text(META_KEY, json.dumps(self.meta, sort_keys=True))
            for k, v in (extra or {}).items():
                db.put_bytes(k, v)
            if SEGMENT_KEY in db:
                db.delete(SEGMENT_KEY)
            for b in blobs:
                db.put_bytes(SEGMENT_KEY, b)
        db.compact(keep_history=False, progress=False)

    def sync(self) -> None:
        self.live().sync()

    def close(self) -> None:
        if self.db is not None:
            db, self.db = self.db, None
            db.close()


def load_rows(segs: list[tuple[list[str], dict[str, np.ndarray]]],
              names: Sequence[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Replay segments: one row per key, in first-seen order, last value wins."""
    keys: list[str] = []
    for k, _ in segs:
        keys.extend(k)
    cols = {}
    for name in names:
        parts = [f[name] for _, f in segs if name in f]
        cols[name] = np.concatenate(parts) if parts else None
    keep = last_wins(keys)
    if keep is not None:
        keys = list(dict.fromkeys(keys))
        cols = {n: (c[keep] if c is not None else None) for n, c in cols.items()}
    return keys, {n: c for n, c in cols.items() if c is not None}


# ------------------------------------------------------------- rank fusion
def _result_key(r: Any) -> str:
    if isinstance(r, str):
        return r
    key = getattr(r, "key", None)
    if key is None and isinstance(r, tuple) and r:
        key = r[0]
    if not isinstance(key, str):
        raise errors.InvalidArgument(f"a result needs a str .key, got {r!r}")
    return key


def hybrid_search(dense_results: Iterable[Any], sparse_results: Iterable[Any],
                  k: int = 10, rrf_k: int = 60) -> list[ScoredKey]:
    """Fuse two ranked result lists with reciprocal rank fusion (RRF).

    Use it to combine a dense (semantic) search with a sparse (lexical)
    one: only ranks matter, so a distance list (lower is closer) and a
    similarity list (higher is better) fuse without any score calibration.
    A key at 1-based rank ``r`` in a list earns ``1 / (rrf_k + r)``; a key's
    fused score is the sum over both lists, **higher is better**.  A key
    repeated within one list counts once, at its best rank.  Ties keep the
    order of first appearance (dense list first).

    Args:
        dense_results: hits, best first: objects with ``.key`` (any synadb
            result), ``(key, score)`` tuples, or plain keys.
        sparse_results: the same, from the other retriever.
        k: how many fused hits to return.
        rrf_k: the RRF damping constant (60 in the original paper); larger
            values flatten the difference between top and lower ranks.

    Returns:
        Up to ``k`` :class:`ScoredKey` hits, highest fused score first.

    Raises:
        InvalidArgument: ``k < 1``, ``rrf_k < 0`` or a hit without a key.

    >>> [h.key for h in hybrid_search(["a", "b", "c"], ["c", "d"], k=3)]
    ['c', 'a', 'b']
    """
    k = check_k(k)
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float, np.integer,
                                                          np.floating)) or not rrf_k >= 0:
        raise errors.InvalidArgument(f"rrf_k must be a number >= 0, got {rrf_k!r}")
    fused: dict[str, float] = {}
    for results in (dense_results, sparse_results):
        seen: set[str] = set()
        for rank, r in enumerate(results, start=1):
            key = _result_key(r)
            if key in seen:
                continue
            seen.add(key)
            fused[key] = fused.get(key, 0.0) + 1.0 / (float(rrf_k) + rank)
    order = sorted(fused.items(), key=lambda kv: -kv[1])  # stable: first seen wins ties
    return [ScoredKey(key, score) for key, score in order[:k]]


# ------------------------------------------------------ dense index skeleton
class SegmentedDenseIndex(abc.ABC):
    """What GravityWellIndex and CascadeIndex share: a SynaDB file of
    segments, rows in memory (working form), upserts, exact re-ranking.

    Subclasses set ``KIND``/``VERSION``/``EXTRA_FIELDS`` and implement
    ``_derive`` (per-row data computed at insert), ``_changed`` (rows
    changed: drop search structures) and ``_candidates`` (rows to re-rank).
    """

    KIND = ""
    VERSION = 1
    EXTRA_FIELDS: tuple[str, ...] = ()
    _DERIVE_ROWS = 1 << 16  # rows per progress step while deriving

    dimensions: int
    metric: str

    def _open(self, path: str | os.PathLike[str], dimensions: object,
              metric: object | None, new_meta: dict[str, Any]) -> None:
        self._lock = threading.RLock()
        d = check_dimensions(dimensions)
        if metric is not None:
            metric = check_metric(metric)
        self._file: IndexFile | None = None
        self._file = IndexFile(path, self.KIND, self.VERSION,
                               {"dimensions": d, "metric": metric or "cosine", **new_meta})
        meta = self._file.meta
        try:
            if meta.get("dimensions") != d:
                raise errors.DimensionMismatch(
                    f"{self._file.path!r} holds {meta.get('dimensions')}-dimensional "
                    f"vectors, not {d}")
            if metric is not None and meta.get("metric") != metric:
                raise errors.InvalidArgument(
                    f"{self._file.path!r} uses metric {meta.get('metric')!r}, not {metric!r}")
            self.path = self._file.path
            self.dimensions = d
            self.metric = check_metric(meta.get("metric"))
            self._keys: list[str] = []
            self._rows: dict[str, int] = {}
            self._n = 0
            self._vecs = np.empty((0, d), dtype=np.float32)
            self._sqn: np.ndarray | None = (np.empty(0, dtype=np.float32)
                                            if self.metric == "euclidean" else None)
            self._cols: dict[str, np.ndarray] = {}
            self._opened()
            segs = self._file.segments()
            self._nseg = len(segs)
            keys, cols = load_rows(segs, ("vec",) + self.EXTRA_FIELDS)
            if keys:
                vec = cols.pop("vec", None)
                if vec is None or vec.shape != (len(keys), d) or any(
                        c.shape[0] != len(keys) for c in cols.values()):
                    raise errors.CorruptDatabase(f"{self.path!r}: segments disagree on rows")
                self._append(keys, vec.astype(np.float32, copy=False), cols)
        except BaseException:
            self._file.close()
            raise

    def _opened(self) -> None:
        """Hook: read subclass state from the file after meta is checked."""

    def _derive(self, w: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _changed(self) -> None:
        """Hook: rows were added or replaced."""

    @abc.abstractmethod
    def _candidates(self, q: np.ndarray, k: int, nprobe: int | None) -> np.ndarray:
        """Labels worth scoring exactly for query ``q`` (each index says how)."""

    # --------------------------------------------------------------- rows
    def _live(self) -> IndexFile:
        f = self._file
        if f is None or f.db is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        return f

    def _grow(self, need: int) -> None:
        cap = self._vecs.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap, 1024)
        vecs = np.empty((cap, self.dimensions), dtype=np.float32)
        vecs[:self._n] = self._vecs[:self._n]
        self._vecs = vecs
        if self._sqn is not None:
            sqn = np.empty(cap, dtype=np.float32)
            sqn[:self._n] = self._sqn[:self._n]
            self._sqn = sqn
        for name, col in list(self._cols.items()):
            new = np.empty((cap,) + col.shape[1:], dtype=col.dtype)
            new[:self._n] = col[:self._n]
            self._cols[name] = new

    def _append(self, keys: list[str], w: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        """Put rows into memory: replace known keys in place, append new ones."""
        rows = self._rows
        idx = np.fromiter((rows.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        new = np.flatnonzero(idx < 0)
        self._grow(self._n + len(new))
        for name, col in cols.items():
            if name not in self._cols:
                self._cols[name] = np.empty((self._vecs.shape[0],) + col.shape[1:],
                                            dtype=col.dtype)
        idx[new] = np.arange(self._n, self._n + len(new))
        for i in new.tolist():
            k = keys[i]
            rows[k] = len(self._keys)
            self._keys.append(k)
        self._n += len(new)
        self._vecs[idx] = w
        if self._sqn is not None:
            self._sqn[idx] = np.einsum("ij,ij->i", w, w)
        for name, col in cols.items():
            self._cols[name][idx] = col
        self._changed()

    def _snapshot(self, cols: dict[str, np.ndarray] | None = None) -> list[bytes]:
        """The live rows as segments (``cols`` overrides stored columns)."""
        n, d = self._n, self.dimensions
        every = {name: c[:n] for name, c in self._cols.items()}
        every.update(cols or {})
        step = rows_per_segment(d * 4 + 64)
        return [pack_segment(self._keys[s:s + step],
                             {"vec": self._vecs[s:min(s + step, n)],
                              **{name: c[s:s + step] for name, c in every.items()}})
                for s in range(0, n, step)]

    # ------------------------------------------------------------- public
    @locked
    def insert_batch(self, keys: Sequence[str], vectors: Any, *, progress: bool = True) -> int:
        """Insert or replace vectors; written to the file before it returns.

        Args:
            keys: one non-empty str per vector; a known key is replaced, and
                within one call a repeated key keeps its last vector.
            vectors: an (n, dimensions) array-like of finite numbers.
            progress: show a progress bar (in a terminal, after 0.5 s).

        Returns:
            The number of distinct keys written.

        Raises:
            DimensionMismatch: wrong shape or a non-numeric dtype.
            NonFiniteValue: NaN or infinity.
            InvalidKey: a key that is not a non-empty str without NUL.
        """
        f = self._live()
        x = as_matrix(vectors, self.dimensions)
        ks = check_keys(keys, x.shape[0])
        keep = last_wins(ks)
        if keep is not None:
            ks = [ks[i] for i in keep.tolist()]
            x = x[keep]
        n = len(ks)
        if n == 0:
            return 0
        w = working_form(x, self.metric)
        cols: dict[str, list[np.ndarray]] = {}
        with progress_bar(n, f"{type(self).__name__} insert", progress) as bar:
            for s in range(0, n, self._DERIVE_ROWS):
                for name, c in self._derive(w[s:s + self._DERIVE_ROWS]).items():
                    cols.setdefault(name, []).append(c)
                bar.update(min(self._DERIVE_ROWS, n - s))
            full = {name: np.concatenate(parts) for name, parts in cols.items()}
            step = rows_per_segment(self.dimensions * 4 + 64)
            f.append(pack_segment(ks[s:s + step], {"vec": w[s:s + step],
                                                   **{m: c[s:s + step]
                                                      for m, c in full.items()}})
                     for s in range(0, n, step))
        self._nseg += -(-n // step)
        self._append(ks, w, full)
        return n

    @locked
    def _search(self, query: Any, k: int, nprobe: int | None) -> list[ScoredKey]:
        self._live()
        q = working_form(as_query(query, self.dimensions)[None, :], self.metric)[0]
        k = check_k(k)
        if nprobe is not None:
            nprobe = check_int("nprobe", nprobe, 1)
        if self._n == 0:
            return []
        rows = self._candidates(q, k, nprobe)
        return rerank(self._vecs, self._sqn, rows, q, k, self.metric, self._keys)

    def _search_batch(self, queries: Any, k: int,
                      nprobe: int | None) -> list[list[ScoredKey]]:
        self._live()
        qs = as_matrix(queries, self.dimensions, "queries")
        return [self._search(q, k, nprobe) for q in qs]

    @locked
    def save(self) -> None:
        """Make every insert durable (fsync); fold many small segments into
        one snapshot so that reopening stays fast."""
        f = self._live()
        if self._nseg >= FOLD_SEGMENTS:
            blobs = self._snapshot()
            f.replace(blobs)
            self._nseg = len(blobs)
        f.sync()

    @locked
    def close(self) -> None:
        """fsync and close the file; idempotent."""
        f = getattr(self, "_file", None)
        if f is not None and f.db is not None:
            f.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._n

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __repr__(self) -> str:
        state = "closed" if self._file is None or self._file.db is None else f"{self._n} vectors"
        return f"{type(self).__name__}({self.path!r}, dimensions={self.dimensions}, {state})"
