"""The compact HNSW index behind ``VectorStore(quantization=..., memory=...)``.

hnswlib keeps a float32 copy of every vector in its graph, so at a million
384-dimensional vectors the graph alone needs ~1.7 GB of RAM.  This index
(usearch's HNSW) stores the vectors it walks in a smaller code instead:

- ``"f16"``: half floats (half the bytes, no measurable recall loss);
- ``"i8"``: one signed byte per dimension, scaled so that the largest
  magnitude seen maps to 127 (a quarter of the bytes);
- ``"binary"``: one sign bit per dimension, compared by Hamming distance
  (a thirty-second of the bytes; a coarse first pass, so it fetches many
  more candidates);
- ``None``: float32, for a store that only wants ``memory="mapped"``.

Whatever the code, the graph only proposes candidates: the top
``rerank`` x k of them are scored again exactly, on the float32 vectors the
store keeps in its records (handed in as ``rows``), so scores are exact and
recall is that of the graph at a few times k.

``memory="mapped"``: the graph is not loaded but served from the snapshot
record's pages in the file map (usearch's ``view``), so opening costs no
copy and the kernel may drop its pages under pressure.  A viewed graph is
read-only: vectors added since sit in a small in-RAM graph beside it (the
*delta*), vectors deleted since in a set, and both are merged into one
graph when the store writes its next snapshot (then viewed again).

Distances come back as hnswlib reports them (``1 - cos`` for cosine, the
squared L2 distance, ``1 - dot`` for the inner product), so the store
treats both indexes alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import errors

__all__ = ["QuantizedIndex", "QUANTIZATIONS", "MEMORY_MODES"]

QUANTIZATIONS = (None, "f16", "i8", "binary")
MEMORY_MODES = ("ram", "mapped")
_USEARCH_METRIC = {"cosine": "cos", "euclidean": "l2sq", "dot_product": "ip"}
_DTYPE = {None: "f32", "f16": "f16", "i8": "i8", "binary": "b1"}
# Candidates re-ranked exactly, as a multiple of k: measured on 100K x 384
# clustered vectors, i8 at 4x k gave recall@10 0.99 (float32 hnswlib: 0.989);
# sign bits need many more (they only sort the neighbourhood coarsely).
_RERANK = {None: 2, "f16": 2, "i8": 4, "binary": 40}
_MIN_CANDIDATES = 32


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:
        raise errors.MissingDependency(
            "usearch", "vectors", "quantized or memory-mapped vector indexes") from None
    return Index


class QuantizedIndex:
    """An HNSW graph over quantized codes, with exact re-ranking.

    Args:
        dims: vector dimensions.
        metric: ``"cosine"`` (rows handed in are unit length),
            ``"euclidean"`` or ``"dot_product"``.
        quantization: one of :data:`QUANTIZATIONS`.
        m, ef_construction, ef_search: the HNSW knobs, as hnswlib's.
        rows: label array -> float32 rows (unit length for cosine), read
            from the store's records, for the exact re-rank.
        scale: the i8 scale (set from the first rows added when None).
    """

    def __init__(self, dims: int, metric: str, quantization: str | None, *, m: int,
                 ef_construction: int, ef_search: int,
                 rows: Callable[[np.ndarray], np.ndarray], scale: float | None = None) -> None:
        if quantization not in QUANTIZATIONS:
            raise errors.InvalidArgument(
                f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        self.dims = dims
        self.metric = metric
        self.quantization = quantization
        self.m = m
        self.ef_construction = ef_construction
        self.ef = ef_search
        self.rows = rows
        self.scale = scale
        self.center: np.ndarray | None = None  # binary: the offset signs are taken from
        self._base: Any = self._new()  # mutable, or a view of a snapshot
        self._viewed = False
        self._buffer: memoryview | None = None  # what a viewed base lives in
        self._delta: Any = None  # labels added while the base is a view
        self._dead: set[int] = set()  # labels deleted from a viewed base
        self._size = 0  # labels ever added (the store's label count)

    # ------------------------------------------------------------ codes
    def _new(self) -> Any:
        index_cls = _usearch()
        if self.quantization == "binary":
            return index_cls(ndim=self.dims, metric="hamming", dtype="b1",
                             connectivity=self.m, expansion_add=self.ef_construction,
                             expansion_search=self.ef)
        return index_cls(ndim=self.dims, metric=_USEARCH_METRIC[self.metric],
                         dtype=_DTYPE[self.quantization], connectivity=self.m,
                         expansion_add=self.ef_construction, expansion_search=self.ef)

    def _codes(self, rows: np.ndarray) -> np.ndarray:
        """What the graph stores for these float32 rows."""
        q = self.quantization
        if q == "binary":
            if self.center is None:
                # Sign bits of centred rows: embeddings often share an
                # offset, and uncentred signs would then be nearly equal.
                self.center = rows.mean(axis=0).astype(np.float32) if len(rows) > 1 \
                    else np.zeros(self.dims, dtype=np.float32)
            return np.packbits(rows > self.center, axis=-1)
        if q == "i8":
            if self.scale is None:
                peak = float(np.abs(rows).max()) if rows.size else 0.0
                # Cosine rows are unit length: 127 keeps every component.
                self.scale = 127.0 if self.metric == "cosine" else 127.0 / max(peak, 1e-12)
            codes = np.rint(rows * self.scale)
            np.clip(codes, -127, 127, out=codes)
            return codes.astype(np.int8)
        if q == "f16":
            return rows.astype(np.float16)
        return np.ascontiguousarray(rows, dtype=np.float32)

    # ------------------------------------------------- hnswlib's surface
    def set_ef(self, ef: int) -> None:
        self.ef = int(ef)

    def get_max_elements(self) -> int:
        return 2**62  # usearch grows as it goes

    def resize_index(self, size: int) -> None:  # noqa: ARG002 - hnswlib's surface
        return None

    def get_current_count(self) -> int:
        return self._size

    def add_items(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Add float32 rows (unit length for cosine) under these labels."""
        if not len(labels):
            return
        labels = np.asarray(labels, dtype=np.uint64)
        codes = self._codes(np.asarray(rows, dtype=np.float32))
        target = self._base
        if self._viewed:
            if self._delta is None:
                self._delta = self._new()
            target = self._delta
        target.add(labels, codes, threads=0)
        self._size = max(self._size, int(labels.max()) + 1)

    def mark_deleted(self, label: int) -> None:
        label = int(label)
        if self._delta is not None and self._delta.contains(label):
            self._delta.remove(label)
        elif self._viewed:
            self._dead.add(label)
        elif self._base.contains(label):
            self._base.remove(label)

    def knn_query(self, q: np.ndarray, k: int = 1,
                  filter: Callable[[int], bool] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest labels to one query (a (1, dims) array), by
        exact distance over the graph's best candidates; hnswlib's shapes
        and distance conventions.  Raises RuntimeError (as hnswlib does)
        when fewer than ``k`` labels pass ``filter``."""
        q = np.asarray(q, dtype=np.float32).reshape(-1)
        if self.metric == "cosine":
            norm = float(np.linalg.norm(q))
            q = q / norm if norm > 0 else q
        # A few times k; a deep fetch (the store's over-fetch for a filter,
        # which keeps the first allowed k of it) needs only a margin past
        # its depth: the codes order neighbours that deep well enough.
        rerank = _RERANK[self.quantization]
        want = max(k * rerank if k <= 64 else k + k // 8 * min(rerank, 4), _MIN_CANDIDATES)
        live = self._size - len(self._dead)
        while True:
            fetch = min(max(want, k), max(live, 1))
            labels = self._candidates(q, fetch)
            if filter is not None and len(labels):
                labels = labels[np.fromiter((filter(int(x)) for x in labels.tolist()),
                                            dtype=bool, count=len(labels))]
            if len(labels) >= k or fetch >= live:
                break
            want = fetch * 4
        if len(labels) < k:
            raise RuntimeError("fewer than k labels pass the filter")
        dist = self._exact(q, labels)
        top = np.argsort(dist, kind="stable")[:k]
        return labels[top].reshape(1, -1), dist[top].reshape(1, -1).astype(np.float32)

    # ------------------------------------------------------------ search
    def _candidates(self, q: np.ndarray, count: int) -> np.ndarray:
        code = self._codes(q.reshape(1, -1))[0]
        ef = max(self.ef, count)
        found = []
        for part in (self._base, self._delta):
            if part is None or len(part) == 0:
                continue
            part.expansion_search = ef
            got = part.search(code, min(count + len(self._dead), len(part)), threads=1)
            found.append(np.asarray(got.keys, dtype=np.int64))
        if not found:
            return np.zeros(0, dtype=np.int64)
        labels = np.concatenate(found) if len(found) > 1 else found[0]
        if self._dead:
            labels = labels[~np.isin(labels, np.fromiter(self._dead, dtype=np.int64))]
        return labels

    def _exact(self, q: np.ndarray, labels: np.ndarray) -> np.ndarray:
        rows = self.rows(labels)
        if self.metric == "euclidean":
            diff = rows - q
            return np.einsum("ij,ij->i", diff, diff)
        # In pieces: OpenBLAS wakes its threads for larger products, which
        # costs more than the product at these sizes (see VectorStore).
        dots = np.empty(len(rows), np.float32)
        for s in range(0, len(rows), 512):
            np.dot(rows[s:s + 512], q, out=dots[s:s + 512])
        return 1.0 - dots

    # --------------------------------------------------------- snapshot
    def to_bytes(self) -> bytes:
        """One graph of every live label (a viewed base merged with its delta)."""
        if not self._viewed:
            return bytes(self._base.save())
        merged = self._new()
        merged.load(self._buffer)  # (a viewed index cannot save itself)
        if self._dead:
            for label in self._dead:
                if merged.contains(label):
                    merged.remove(label)
        if self._delta is not None and len(self._delta):
            keys = np.asarray(self._delta.keys, dtype=np.int64)
            keys.sort()
            merged.add(keys.astype(np.uint64), self._codes(self.rows(keys)), threads=0)
        return bytes(merged.save())

    def state(self) -> dict[str, Any]:
        return {"quantization": self.quantization, "scale": self.scale, "size": self._size,
                "center": None if self.center is None else self.center.tolist()}

    def load(self, buffer: memoryview, state: dict[str, Any], *, mapped: bool) -> None:
        """Take the graph saved in ``buffer``: viewed in place (``mapped``;
        the buffer must outlive the index) or copied into RAM."""
        if state.get("quantization") != self.quantization:
            raise ValueError("the snapshot's quantization differs")
        self.scale = state.get("scale")
        center = state.get("center")
        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        index = self._new()
        if mapped:
            index.view(buffer)
        else:
            index.load(buffer)
        if index.ndim != self.dims:
            raise ValueError("the snapshot's graph has other dimensions")
        self._base = index
        self._buffer = buffer if mapped else None
        self._viewed = mapped
        self._delta = None
        self._dead = set()
        self._size = int(state.get("size", len(index)))

    @property
    def mapped(self) -> bool:
        """Whether the graph is served from a buffer (the file's pages)."""
        return self._viewed

    def __len__(self) -> int:
        return len(self._base) - len(self._dead) + (len(self._delta) if self._delta else 0)

    def memory_bytes(self) -> int:
        """Bytes of RAM the graph holds (a viewed base counts nothing)."""
        total = 0 if self._viewed else int(self._base.memory_usage)
        if self._delta is not None:
            total += int(self._delta.memory_usage)
        return total
