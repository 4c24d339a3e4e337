"""HybridVectorStore: a hot GravityWellIndex for live ingest in front of a
cold CascadeIndex, searched together."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from .. import errors
from .cascade import CascadeIndex
from .gravity import GravityWellIndex
from .indexes import ScoredKey, as_query, check_k, check_keys, locked

__all__ = ["HybridVectorStore"]


class HybridVectorStore:
    """Two layers, one view: new vectors land in a hot IVF layer
    (:class:`GravityWellIndex`, one file) and move in bulk to a cold LSH
    layer (:class:`CascadeIndex`, another file); :meth:`search` queries both
    and merges.

    Use it for a stream of embeddings that must be searchable the moment
    they arrive while the collection keeps growing: ingest costs one small
    record, and :meth:`promote_to_cold` (say nightly, or when the hot layer
    passes a size) moves the hot vectors into the cold layer, which needs
    no training and never rebuilds.

    A key lives in one layer at a time: ingesting a key again puts it in
    the hot layer, whose copy wins until the next promotion replaces the
    cold one.  Scores are distances (lower is closer) as in both layers.

    Args:
        hot_path: the GravityWellIndex file.
        cold_path: the CascadeIndex file.
        dimensions: 1..8192.
        metric: "cosine" (default for new files), "euclidean" or
            "dot_product".
        cold_preset: the CascadeIndex preset for a new cold file
            ("small", "large", "high_recall", "fast_search").
        hot_nprobe: lists the hot layer scans per search (50).

    Raises:
        InvalidArgument, DimensionMismatch: as the two layers raise them.

    >>> import os, tempfile, numpy as np
    >>> d = tempfile.mkdtemp(); x = np.random.default_rng(0).standard_normal((200, 8))
    >>> with HybridVectorStore(os.path.join(d, "hot"), os.path.join(d, "cold"), 8) as hv:
    ...     _ = hv.initialize_hot(x, progress=False)
    ...     for i in range(100): hv.ingest(f"v{i}", x[i])
    ...     _ = hv.promote_to_cold(progress=False)
    ...     hv.ingest("v100", x[100])
    ...     [h.key for h in hv.search(x[100], k=1)], len(hv)
    (['v100'], 101)
    """

    def __init__(self, hot_path: str | os.PathLike[str], cold_path: str | os.PathLike[str],
                 dimensions: int, *, metric: str | None = None,
                 cold_preset: str | None = None, hot_nprobe: int = 50) -> None:
        self._lock = threading.RLock()
        if os.path.abspath(os.fspath(hot_path)) == os.path.abspath(os.fspath(cold_path)):
            raise errors.InvalidArgument("hot_path and cold_path must be different files")
        if isinstance(hot_nprobe, bool) or not isinstance(hot_nprobe, int) or hot_nprobe < 1:
            raise errors.InvalidArgument(f"hot_nprobe must be an int >= 1, not {hot_nprobe!r}")
        self.hot_nprobe = hot_nprobe
        self.hot = GravityWellIndex(hot_path, dimensions, metric=metric)
        try:
            self.cold = CascadeIndex(cold_path, dimensions, cold_preset,
                                     metric=metric or self.hot.metric)
            if self.cold.metric != self.hot.metric:
                self.cold.close()
                raise errors.InvalidArgument(
                    f"the hot layer uses {self.hot.metric!r}, the cold {self.cold.metric!r}")
        except BaseException:
            self.hot.close()
            raise
        self.dimensions = self.hot.dimensions
        self.metric = self.hot.metric
        # How many hot keys also have a (stale) cold copy; kept current so
        # that search needs no per-key pass.
        small, big = sorted((self.hot, self.cold), key=len)
        self._overlap = sum(1 for key in small._rows if key in big)

    def initialize_hot(self, sample: Any, num_clusters: int | None = None, *,
                       progress: bool = True) -> int:
        """Train the hot layer's centroids on a sample (see
        :meth:`GravityWellIndex.initialize`); returns the number of lists."""
        return self.hot.initialize(sample, num_clusters, progress=progress)

    @locked
    def ingest(self, key: str, vector: Any) -> None:
        """Add (or replace) one vector in the hot layer; durable on return.

        Raises:
            DimensionMismatch, NonFiniteValue, InvalidKey: bad input.
        """
        check_keys([key], 1)
        fresh = key not in self.hot and key in self.cold
        self.hot.insert_batch([key], as_query(vector, self.dimensions)[None, :],
                              progress=False)
        self._overlap += fresh

    @locked
    def ingest_batch(self, keys: Any, vectors: Any, *, progress: bool = True) -> int:
        """Add many vectors to the hot layer; returns how many keys."""
        ks = keys if isinstance(keys, (str, bytes)) else list(keys)
        ks = check_keys(ks, len(ks))
        fresh = {key for key in ks if key not in self.hot and key in self.cold}
        n = self.hot.insert_batch(ks, vectors, progress=progress)
        self._overlap += len(fresh)
        return n

    @locked
    def search(self, query: Any, k: int = 10) -> list[ScoredKey]:
        """The k nearest vectors across both layers, closest first.

        Raises:
            DimensionMismatch, NonFiniteValue: bad query.
            InvalidArgument: ``k < 1``.
        """
        q = as_query(query, self.dimensions)
        k = check_k(k)
        hot = self.hot.search(q, k, nprobe=self.hot_nprobe)
        # Cold copies of keys that are hot again are stale: ask for enough
        # extra hits to drop them and still fill k.
        cold = [h for h in self.cold.search(q, k + self._overlap) if h.key not in self.hot]
        merged = sorted(hot + cold, key=lambda h: h.score)
        return merged[:k]

    @locked
    def promote_to_cold(self, *, progress: bool = True) -> int:
        """Move every hot vector into the cold layer; returns how many.

        The cold layer is written (and fsynced) before the hot layer is
        emptied, so a crash in between leaves a key in both layers, which
        search resolves in favour of the hot copy (the same vector).
        """
        n = len(self.hot)
        if n == 0:
            return 0
        hot = self.hot
        vecs = np.array(hot._vecs[:hot._n])
        self.cold.insert_batch(list(hot._keys), vecs, progress=progress)
        self.cold.save()
        hot.clear()
        self._overlap = 0
        return n

    def save(self) -> None:
        """fsync both layers (and fold small writes; see the layers' save)."""
        self.hot.save()
        self.cold.save()

    def close(self) -> None:
        """Save (folding one-at-a-time ingests so that reopening stays fast)
        and close both layers; idempotent."""
        try:
            if self.hot._file is not None and self.hot._file.db is not None:
                self.hot.save()
        finally:
            self._close_layers()

    def _close_layers(self) -> None:
        try:
            self.hot.close()
        finally:
            self.cold.close()

    def __enter__(self) -> HybridVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Distinct keys across both layers."""
        return len(self.hot) + len(self.cold) - self._overlap

    def __contains__(self, key: object) -> bool:
        return key in self.hot or key in self.cold

    def __repr__(self) -> str:
        return (f"HybridVectorStore(hot={len(self.hot)} vectors, cold={len(self.cold)} "
                f"vectors, dimensions={self.dimensions})")
