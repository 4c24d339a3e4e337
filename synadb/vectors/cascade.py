"""CascadeIndex: LSH bucket trees in front of exact re-ranking.

Stage 1 hashes: each of ``num_tables`` tables draws ``num_hyperplanes``
random hyperplanes through the data's centre; a vector's code is the side
of each plane it falls on, one bit per plane.  Stage 2 buckets: per table,
the vectors sorted by code form a binary tree on code prefixes, and a
node holding more than ``bucket_capacity`` vectors splits on its next bit,
so dense regions get deep, small buckets and sparse regions stay shallow.
Stage 3 re-ranks: a query visits, in each table, the buckets whose prefix
disagrees with its own code on the planes it lies closest to (multi-probe:
the cost of a bucket is the summed distance from the query to each plane
it would have to cross), until about ``nprobe * bucket_capacity``
vectors are gathered; the union over tables is ranked exactly.

There is no training step and nothing to rebuild in the file: inserting is
one matrix product, and the trees are rebuilt in memory (one sort per
table) at the first search after inserts.

File: one SynaDB file (see :mod:`synadb.vectors.indexes`): ``meta`` (JSON
settings), ``planes`` (float32 ``num_tables * num_hyperplanes`` unit normals
of ``dimensions`` values, then the ``dimensions`` centre values;
little-endian), and ``seg`` segments with fields ``vec`` (float32 rows,
unit-normalised for cosine) and ``codes`` (uint64 ``n x num_tables``, bit
``num_hyperplanes - 1 - j`` = side of plane ``j``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import errors
from .indexes import (
    ScoredKey,
    SegmentedDenseIndex,
    check_int,
    ranges_to_rows,
)

__all__ = ["PRESETS", "CascadeIndex"]

PLANES_KEY = "planes"

#: Settings behind each preset name.  Measured on 20K clustered 128-d unit
#: vectors (50 centres), recall@10 against exact search; see the tests and
#: benchmarks/.
PRESETS: dict[str, dict[str, int]] = {
    # Up to ~100K vectors; the explicit-argument defaults, plus 4 tables.
    # recall@10 0.99, ~3.4K candidates.
    "small": {"num_tables": 4, "num_hyperplanes": 16, "bucket_capacity": 128, "nprobe": 8},
    # Millions: 32-bit codes so that dense regions can keep splitting,
    # 256-vector buckets so trees stay shallow, a budget of ~1 % of 1M.
    # recall@10 1.00 (at 20K it re-ranks ~9K candidates).
    "large": {"num_tables": 4, "num_hyperplanes": 32, "bucket_capacity": 256, "nprobe": 12},
    # Recall first: twice the tables, twice the budget per table.
    # recall@10 1.00, ~10K candidates.
    "high_recall": {"num_tables": 8, "num_hyperplanes": 16, "bucket_capacity": 128,
                    "nprobe": 16},
    # Latency first: 3 tables of 64-vector buckets, ~2.5x fewer candidates
    # than "small".  recall@10 0.95, ~1.3K candidates.
    "fast_search": {"num_tables": 3, "num_hyperplanes": 16, "bucket_capacity": 64,
                    "nprobe": 8},
}
_SETTINGS = ("num_tables", "num_hyperplanes", "bucket_capacity", "nprobe")


class _Tree:
    """One table's bucket tree: rows sorted by code, buckets as ranges."""

    __slots__ = ("a", "ends", "m", "order", "sizes", "starts")

    def __init__(self, codes: np.ndarray, bits: int, capacity: int) -> None:
        order = np.argsort(codes, kind="stable")
        sc = codes[order]
        n = len(sc)
        starts = np.zeros(1, dtype=np.int64)
        ends = np.full(1, n, dtype=np.int64)
        prefix = np.zeros(1, dtype=np.uint64)
        out_s, out_e, out_p, out_d = [], [], [], []
        for depth in range(bits + 1):
            leaf = (ends - starts <= capacity) | (depth == bits)
            out_s.append(starts[leaf])
            out_e.append(ends[leaf])
            out_p.append(prefix[leaf])
            out_d.append(np.full(int(leaf.sum()), depth, dtype=np.int64))
            s, e, p = starts[~leaf], ends[~leaf], prefix[~leaf]
            if not len(s):
                break
            # Codes below "prefix, then bit 1, then zeros" go left.
            shift = np.uint64(bits - 1 - depth)
            left = p << np.uint64(1)
            right = left | np.uint64(1)
            mid = np.searchsorted(sc, right << shift).astype(np.int64)
            starts = np.concatenate((s, mid))
            ends = np.concatenate((mid, e))
            prefix = np.concatenate((left, right))
            keep = ends > starts
            starts, ends, prefix = starts[keep], ends[keep], prefix[keep]
        self.order = order
        self.starts = np.concatenate(out_s)
        self.ends = np.concatenate(out_e)
        self.sizes = self.ends - self.starts
        pre = np.concatenate(out_p)
        dep = np.concatenate(out_d)
        # a[i, j] = bit j of bucket i's prefix, m[i, j] = plane j is decided
        # for bucket i (j < depth).  Bucket cost for a query whose side of
        # plane j is s_j at distance w_j: sum_j m*w*(a xor s)
        #   = a @ (w - 2*s*w) + m @ (s*w).
        j = np.arange(bits)
        m = j[None, :] < dep[:, None]
        shifts = np.where(m, dep[:, None] - 1 - j[None, :], 0).astype(np.uint64)
        a = ((pre[:, None] >> shifts) & np.uint64(1)).astype(bool) & m
        self.a = a.astype(np.float32)
        self.m = m.astype(np.float32)


class CascadeIndex(SegmentedDenseIndex):
    """LSH bucket trees + exact re-ranking, tuned by presets.

    Use it when you want approximate search with no training step and no
    graph build: inserting costs one matrix product and the file never
    needs rebuilding.  Pick a preset for the trade-off (or set the knobs):

    ===============  ==================================================
    ``small``        the default: 4 tables, 16-bit codes, 128-vector
                     buckets, nprobe 8; up to ~100K vectors
    ``large``        millions of vectors: 32-bit codes, 256-vector
                     buckets, nprobe 12
    ``high_recall``  8 tables, nprobe 16: ~3x the candidates of small
    ``fast_search``  3 tables of 64-vector buckets: ~0.4x the candidates
    ===============  ==================================================

    Each preset reaches recall@10 >= 0.9 on clustered embeddings (see
    :data:`PRESETS` and the tests for measured values).  For the lowest
    latency over a static collection, :class:`MmapVectorStore` (HNSW) is
    faster; this index wins on build time.

    Inserts reach the file before the call returns; :meth:`save` fsyncs
    and keeps the file compact.

    Args:
        path: the index file (a SynaDB file), created if missing.
        dimensions: 1..8192.
        preset: "small" (default), "large", "high_recall" or "fast_search".
        num_hyperplanes: bits per code, 1..64 (overrides the preset).
        bucket_capacity: a bucket holding more vectors splits (>= 1).
        nprobe: buckets' worth of candidates per table at search (>= 1).
        num_tables: independent hash tables, 1..32.
        metric: "cosine" (default for a new file), "euclidean" or
            "dot_product" (hashing is angular: best with cosine).
        seed: seed for the random hyperplanes of a new file.

    An existing file keeps the settings it was made with; passing a
    different preset or structure raises InvalidArgument, except
    ``nprobe`` and ``bucket_capacity``, which only shape the in-memory
    trees and searches and may change on every open.

    Raises:
        InvalidArgument: unknown preset or metric, bad numbers, or the
            file holds something else or other settings.
        DimensionMismatch: the file holds vectors of another dimension.

    >>> import os, tempfile, numpy as np
    >>> x = np.random.default_rng(0).standard_normal((300, 16))
    >>> with CascadeIndex(os.path.join(tempfile.mkdtemp(), "v.cascade"), 16) as idx:
    ...     _ = idx.insert_batch([f"v{i}" for i in range(300)], x, progress=False)
    ...     idx.search(x[42], k=1)[0].key
    'v42'
    """

    KIND = "CascadeIndex"
    EXTRA_FIELDS = ("codes",)

    def __init__(self, path: str | os.PathLike[str], dimensions: int,
                 preset: str | None = None, *, num_hyperplanes: int | None = None,
                 bucket_capacity: int | None = None, nprobe: int | None = None,
                 num_tables: int | None = None, metric: str | None = None,
                 seed: int = 0) -> None:
        if preset is not None and preset not in PRESETS:
            raise errors.InvalidArgument(
                f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
        given = {"num_tables": num_tables, "num_hyperplanes": num_hyperplanes,
                 "bucket_capacity": bucket_capacity, "nprobe": nprobe}
        limits = {"num_tables": (1, 32), "num_hyperplanes": (1, 64),
                  "bucket_capacity": (1, None), "nprobe": (1, None)}
        for name, v in given.items():
            if v is not None:
                given[name] = check_int(name, v, *limits[name])
        check_int("seed", seed, 0)
        settings = dict(PRESETS[preset or "small"])
        settings.update({n: v for n, v in given.items() if v is not None})
        self._given, self._preset, self._seed = given, preset, seed
        self._open(path, dimensions, metric,
                   {"preset": preset or "small", "seed": seed, **settings})

    def _opened(self) -> None:
        f = self._live()
        meta = f.meta
        for name in ("num_tables", "num_hyperplanes"):
            want = self._given[name]
            if want is None and self._preset is not None:
                want = PRESETS[self._preset][name]
            if want is not None and want != meta[name]:
                raise errors.InvalidArgument(
                    f"{self.path!r} was made with {name}={meta[name]}, not {want}")
        self.preset = str(meta.get("preset", "small"))
        self.num_tables = int(meta["num_tables"])
        self.num_hyperplanes = int(meta["num_hyperplanes"])
        self.bucket_capacity = int(self._given["bucket_capacity"] or (
            PRESETS[self._preset]["bucket_capacity"] if self._preset else
            meta["bucket_capacity"]))
        self.nprobe = int(self._given["nprobe"] or (
            PRESETS[self._preset]["nprobe"] if self._preset else meta["nprobe"]))
        self._trees: list[_Tree] | None = None
        self._planes: np.ndarray | None = None
        self._centre: np.ndarray | None = None
        raw = f.live().get_bytes(PLANES_KEY)
        if raw is not None:
            lb, d = self.num_tables * self.num_hyperplanes, self.dimensions
            if len(raw) != (lb + 1) * d * 4:
                raise errors.CorruptDatabase(f"{self.path!r}: planes are the wrong size")
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            self._planes = arr[:lb * d].reshape(lb, d)
            self._centre = arr[lb * d:]

    def _project(self, w: np.ndarray) -> np.ndarray:
        assert self._planes is not None and self._centre is not None
        proj: np.ndarray = (w - self._centre) @ self._planes.T
        return proj

    def _derive(self, w: np.ndarray) -> dict[str, np.ndarray]:
        if self._planes is None:
            # Planes go through the centre of the first batch: hashing
            # about the origin would put most real embeddings (which share
            # a large common component) into a handful of buckets.
            rng = np.random.default_rng(self._live().meta.get("seed", 0))
            lb = self.num_tables * self.num_hyperplanes
            planes = rng.standard_normal((lb, self.dimensions)).astype(np.float32)
            planes /= np.linalg.norm(planes, axis=1, keepdims=True)
            centre = w.mean(axis=0, dtype=np.float64).astype(np.float32)
            self._live().live().put_bytes(
                PLANES_KEY, np.concatenate((planes.ravel(), centre)).astype("<f4").tobytes())
            self._planes, self._centre = planes, centre
        bits = self._project(w).reshape(len(w), self.num_tables, self.num_hyperplanes) > 0
        weights = np.left_shift(np.uint64(1), np.arange(self.num_hyperplanes - 1, -1, -1,
                                                        dtype=np.uint64))
        codes = np.zeros((len(w), self.num_tables), dtype=np.uint64)
        for j in range(self.num_hyperplanes):  # one pass per bit, not per vector
            codes |= bits[:, :, j].astype(np.uint64) * weights[j]
        return {"codes": codes}

    def _changed(self) -> None:
        self._trees = None

    def _forest(self) -> list[_Tree]:
        if self._trees is None:
            codes = self._cols["codes"][:self._n]
            self._trees = [_Tree(codes[:, t], self.num_hyperplanes, self.bucket_capacity)
                           for t in range(self.num_tables)]
        return self._trees

    def _candidates(self, q: np.ndarray, k: int, nprobe: int | None) -> np.ndarray:
        nprobe = self.nprobe if nprobe is None else nprobe
        trees = self._forest()
        proj = self._project(q[None, :])[0].reshape(self.num_tables, self.num_hyperplanes)
        w = np.abs(proj)
        sw = np.where(proj > 0, w, 0.0).astype(np.float32)
        budget = max(nprobe * self.bucket_capacity, k)
        found = []
        for t, tree in enumerate(trees):
            cost = tree.a @ (w[t] - 2.0 * sw[t]) + tree.m @ sw[t]
            if len(cost) > 1:
                by = np.argsort(cost, kind="stable")
                take = int(np.searchsorted(np.cumsum(tree.sizes[by]), budget)) + 1
                by = by[:take]
            else:
                by = np.arange(len(cost))
            found.append(tree.order[ranges_to_rows(tree.starts[by], tree.ends[by])])
        rows = np.sort(np.concatenate(found))
        # Sort-based dedupe: cheaper than np.unique's hashing at these sizes.
        return rows[np.concatenate(([True], rows[1:] != rows[:-1]))] if len(rows) else rows

    def search(self, query: Any, k: int = 10, nprobe: int | None = None) -> list[ScoredKey]:
        """The k nearest vectors among those the bucket trees propose.

        Args:
            query: a (dimensions,) vector.
            k: hits to return.
            nprobe: override the candidate budget (``nprobe *
                bucket_capacity`` vectors per table).

        Returns:
            Up to k :class:`ScoredKey` hits, closest first; ``score`` is a
            distance (cosine ``1 - cos``, euclidean L2, dot_product ``-dot``).

        Raises:
            DimensionMismatch, NonFiniteValue: bad query.
            InvalidArgument: ``k`` or ``nprobe`` below 1.
        """
        return self._search(query, k, nprobe)

    def search_batch(self, queries: Any, k: int = 10,
                     nprobe: int | None = None) -> list[list[ScoredKey]]:
        """:meth:`search` for each row of an (m, dimensions) array."""
        return self._search_batch(queries, k, nprobe)
