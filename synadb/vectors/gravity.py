"""GravityWellIndex: an IVF index (k-means lists) that builds in seconds.

k-means centroids are the "gravity wells": every vector falls into the list
of its nearest centroid, and a search scans only the ``nprobe`` lists whose
centroids are nearest the query, exactly.  Training is a few Lloyd
iterations on a sample; inserting costs one small matrix product per batch,
so the index suits live ingestion where HNSW's build time would hurt.

File: one SynaDB file (see :mod:`synadb.vectors.indexes`): ``meta`` (JSON
settings, ``num_clusters``), ``centroids`` (float32 ``num_clusters x
dimensions``, little-endian bytes) and ``seg`` segments with the fields
``vec`` (float32 rows, unit-normalised for cosine) and ``list`` (int32
centroid of each row; -1 before :meth:`GravityWellIndex.initialize`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .. import errors
from .indexes import (
    ScoredKey,
    SegmentedDenseIndex,
    as_matrix,
    check_int,
    locked,
    progress_bar,
    ranges_to_rows,
    working_form,
)

__all__ = ["GravityWellIndex"]

CENTROIDS_KEY = "centroids"
MAX_CLUSTERS = 4096
# Lloyd's iterations train on at most this many points per centroid (as
# faiss does): more sample barely moves the centroids and costs linear time.
TRAIN_POINTS_PER_CLUSTER = 256
_CHUNK_CELLS = 1 << 24  # distance-matrix cells per chunk while assigning


def default_num_clusters(n: int) -> int:
    """``2 * sqrt(n)`` lists, within 1..4096 and at most n.

    With the default ``nprobe=50`` a search then scans about
    ``25 / sqrt(n)`` of the data (18 % at 20K vectors, 2.5 % at 1M).
    """
    return max(1, min(n, MAX_CLUSTERS, round(2 * math.sqrt(n))))


def _centroid_scores(x: np.ndarray, c: np.ndarray, metric: str) -> np.ndarray:
    """Lower is nearer: (n, k) scores of rows of x against centroids c."""
    dots: np.ndarray = x @ c.T
    if metric == "cosine":
        dots *= -1.0  # centroids are unit vectors
        return dots
    # Euclidean cells for dot_product too: inner-product "nearest centroid"
    # sends everything to the longest centroid.
    sq = np.einsum("ij,ij->i", c, c)
    dots *= -2.0
    dots += sq[None, :]
    return dots


def nearest_centroid(x: np.ndarray, c: np.ndarray, metric: str) -> tuple[np.ndarray,
                                                                        np.ndarray]:
    """Label (int32) and score of each row's nearest centroid, in chunks."""
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int32)
    best = np.empty(n, dtype=np.float32)
    step = max(1, _CHUNK_CELLS // max(1, c.shape[0]))
    for s in range(0, n, step):
        sc = _centroid_scores(x[s:s + step], c, metric)
        lab = sc.argmin(axis=1)
        labels[s:s + step] = lab
        best[s:s + step] = sc[np.arange(len(lab)), lab]
    return labels, best


def kmeans(x: np.ndarray, k: int, metric: str, iterations: int, seed: int,
           progress: bool) -> np.ndarray:
    """Lloyd's k-means (spherical for cosine); returns float32 centroids."""
    rng = np.random.default_rng(seed)
    if x.shape[0] > TRAIN_POINTS_PER_CLUSTER * k:
        x = x[np.sort(rng.choice(x.shape[0], TRAIN_POINTS_PER_CLUSTER * k, replace=False))]
    n = x.shape[0]
    c = x[rng.choice(n, k, replace=False)].copy()
    labels = np.full(n, -1, dtype=np.int32)
    with progress_bar(iterations, "GravityWellIndex k-means", progress, "iter") as bar:
        for _ in range(iterations):
            new, score = nearest_centroid(x, c, metric)
            moved = int(np.count_nonzero(new != labels))
            labels = new
            order = np.argsort(labels, kind="stable")
            counts = np.bincount(labels, minlength=k)
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            full = counts > 0
            sums = np.zeros_like(c)
            sums[full] = np.add.reduceat(x[order], starts[full], axis=0)
            c[full] = sums[full] / counts[full, None]
            empty = np.flatnonzero(~full)
            if len(empty):
                # An empty well moves to the points worst served now.
                far = np.argsort(score)[::-1][:len(empty)]
                c[empty[:len(far)]] = x[far]
            if metric == "cosine":
                c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-30)
            bar.update(1)
            if moved <= n // 1000 and not len(empty):
                break
    return c.astype(np.float32)


class GravityWellIndex(SegmentedDenseIndex):
    """IVF index: k-means lists, exact scan of the nearest ``nprobe`` lists.

    Use it when vectors arrive continuously and must be searchable at once:
    training takes a few k-means passes over a sample, and inserting is one
    matrix product, with no graph to build.  It reaches HNSW-like recall on
    clustered embeddings at the cost of scanning more vectors per query
    (about ``25 / sqrt(n)`` of them at the defaults).  For the fastest
    queries over a static collection prefer :class:`MmapVectorStore`.

    Every insert is written to the file before the call returns; a killed
    process loses nothing acknowledged.  Until :meth:`initialize` runs, the
    index searches exactly.

    Args:
        path: the index file (a SynaDB file), created if missing.
        dimensions: 1..8192.
        metric: "cosine" (default for a new file), "euclidean" or
            "dot_product"; an existing file keeps its own.

    Raises:
        InvalidArgument: bad dimensions or metric, or the file holds
            something else.
        DimensionMismatch: the file holds vectors of another dimension.

    >>> import os, tempfile, numpy as np
    >>> rng = np.random.default_rng(0); x = rng.standard_normal((500, 8))
    >>> with GravityWellIndex(os.path.join(tempfile.mkdtemp(), "v.gwi"), 8) as gwi:
    ...     _ = gwi.initialize(x, progress=False)
    ...     _ = gwi.insert_batch([f"v{i}" for i in range(500)], x, progress=False)
    ...     gwi.search(x[7], k=1)[0].key
    'v7'
    """

    KIND = "GravityWellIndex"
    EXTRA_FIELDS = ("list",)

    def __init__(self, path: str | os.PathLike[str], dimensions: int, *,
                 metric: str | None = None) -> None:
        self._open(path, dimensions, metric, {"num_clusters": 0})

    def _opened(self) -> None:
        f = self._live()
        self._centroids: np.ndarray | None = None
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        k = int(f.meta.get("num_clusters", 0))
        if k:
            raw = f.live().get_bytes(CENTROIDS_KEY)
            if raw is None or len(raw) != k * self.dimensions * 4:
                raise errors.CorruptDatabase(f"{self.path!r}: centroids are missing or "
                                             "the wrong size")
            self._centroids = np.frombuffer(raw, dtype="<f4").reshape(
                k, self.dimensions).astype(np.float32)

    @property
    def num_clusters(self) -> int:
        """How many lists (0 before :meth:`initialize`)."""
        return 0 if self._centroids is None else self._centroids.shape[0]

    def _derive(self, w: np.ndarray) -> dict[str, np.ndarray]:
        if self._centroids is None:
            return {"list": np.full(w.shape[0], -1, dtype=np.int32)}
        return {"list": nearest_centroid(w, self._centroids, self.metric)[0]}

    def _changed(self) -> None:
        self._csr = None

    @locked
    def initialize(self, sample_vectors: Any, num_clusters: int | None = None, *,
                   iterations: int = 10, seed: int = 0, progress: bool = True) -> int:
        """Train the centroids with k-means on a sample; reassigns every
        vector already stored (so it may also be used to retrain).

        Args:
            sample_vectors: (n, dimensions) vectors like those to come;
                a few thousand to a few hundred thousand.
            num_clusters: lists to make; default ``2 * sqrt(n)`` (1..4096).
            iterations: Lloyd iterations at most (stops early once <0.1 %
                of points change list).
            seed: for the reproducible choice of starting centroids.
            progress: show a progress bar.

        Returns:
            The number of clusters.

        Raises:
            DimensionMismatch, NonFiniteValue: bad sample.
            InvalidArgument: ``num_clusters`` outside 1..min(n, 4096).
        """
        f = self._live()
        x = as_matrix(sample_vectors, self.dimensions, "sample_vectors")
        n = x.shape[0]
        if n == 0:
            raise errors.InvalidArgument("initialize needs at least one sample vector")
        k = default_num_clusters(n) if num_clusters is None else check_int(
            "num_clusters", num_clusters, 1, min(n, MAX_CLUSTERS))
        iterations = check_int("iterations", iterations, 1)
        seed = check_int("seed", seed, 0)
        c = kmeans(working_form(x, self.metric), k, self.metric, iterations, seed, progress)
        lists = nearest_centroid(self._vecs[:self._n], c, self.metric)[0]
        blobs = self._snapshot({"list": lists})
        f.replace(blobs, extra={CENTROIDS_KEY: c.astype("<f4").tobytes()},
                  meta={"num_clusters": k})
        self._nseg = len(blobs)
        self._centroids = c
        if self._n:
            self._cols["list"][:self._n] = lists
        self._changed()
        return k

    @locked
    def clear(self) -> None:
        """Remove every vector, keep the centroids (and compact the file)."""
        f = self._live()
        f.replace([])
        self._nseg = 0
        self._keys, self._rows, self._n = [], {}, 0
        self._changed()

    def _lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows grouped by list: (order, starts, ends), rebuilt after inserts."""
        if self._csr is None:
            lab = self._cols["list"][:self._n]
            order = np.argsort(lab, kind="stable")
            k = self.num_clusters
            bounds = np.searchsorted(lab[order], np.arange(k + 1))
            self._csr = (order, bounds[:-1], bounds[1:])
        return self._csr

    def _candidates(self, q: np.ndarray, k: int, nprobe: int | None) -> np.ndarray:
        nprobe = 50 if nprobe is None else nprobe
        c = self._centroids
        if c is None:
            return np.arange(self._n)
        order, starts, ends = self._lists()
        if self.metric == "dot_product":
            sc = -(c @ q)  # probe the cells pointing the query's way
        else:
            sc = _centroid_scores(q[None, :], c, self.metric)[0]
        probe = np.argpartition(sc, nprobe - 1)[:nprobe] if nprobe < len(sc) else \
            np.arange(len(sc))
        # Rows from before initialize() have list -1 and sort first.
        rows = order[ranges_to_rows(starts[probe], ends[probe])]
        return np.sort(rows)

    def search(self, query: Any, k: int = 10, nprobe: int = 50) -> list[ScoredKey]:
        """The k nearest stored vectors among the ``nprobe`` nearest lists.

        Args:
            query: a (dimensions,) vector.
            k: hits to return.
            nprobe: lists to scan; more is slower and more exact (all lists:
                exact search).

        Returns:
            Up to k :class:`ScoredKey` hits, closest first; ``score`` is a
            distance (cosine ``1 - cos``, euclidean L2, dot_product ``-dot``).

        Raises:
            DimensionMismatch, NonFiniteValue: bad query.
            InvalidArgument: ``k`` or ``nprobe`` below 1.
        """
        return self._search(query, k, nprobe)

    def search_batch(self, queries: Any, k: int = 10,
                     nprobe: int = 50) -> list[list[ScoredKey]]:
        """:meth:`search` for each row of an (m, dimensions) array."""
        return self._search_batch(queries, k, nprobe)
