"""SparseVectorStore: an exact inverted index for sparse (lexical) vectors.

File: one SynaDB file (see :mod:`synadb.vectors.indexes`): ``meta`` (JSON,
``vocab_size``) and ``seg`` segments with the fields ``op`` (uint8 per key:
1 put, 0 delete), ``indptr`` (int64, n + 1 offsets into the next two),
``terms`` (int32 term ids) and ``values`` (float32 weights), i.e. the
documents of the segment as CSR rows.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import errors
from .indexes import (
    FOLD_SEGMENTS,
    IndexFile,
    ScoredKey,
    check_int,
    check_k,
    check_keys,
    last_wins,
    locked,
    pack_segment,
    progress_bar,
    ranges_to_rows,
    rows_per_segment,
)

__all__ = ["SparseStats", "SparseVectorStore"]

DEFAULT_VOCAB = 30522  # BERT's WordPiece vocabulary, which SPLADE uses
_KIND = "SparseVectorStore"
_VERSION = 1


def _segments(keys: list[str], ops: np.ndarray, indptr: np.ndarray, terms: np.ndarray,
              values: np.ndarray) -> list[bytes]:
    """CSR rows as segments of at most SEGMENT_MAX_BYTES."""
    avg = max(1, int(indptr[-1]) // max(1, len(keys)))
    step = rows_per_segment(avg * 8 + 64)
    out = []
    for s in range(0, len(keys), step):
        e = min(len(keys), s + step)
        a, b = int(indptr[s]), int(indptr[e])
        out.append(pack_segment(keys[s:e], {"op": ops[s:e], "indptr": indptr[s:e + 1] - a,
                                            "terms": terms[a:b], "values": values[a:b]}))
    return out


@dataclass(frozen=True)
class SparseStats:
    """What :meth:`SparseVectorStore.stats` reports."""

    num_vectors: int
    vocab_size: int
    num_postings: int
    avg_nonzeros: float


class SparseVectorStore:
    """Exact inverted index for sparse vectors (SPLADE, BM25/TF-IDF weights).

    Use it for lexical retrieval next to a dense index: each vector is a few
    (term id, weight) pairs out of a vocabulary, and a search returns the
    stored vectors with the highest **dot product** with the query; it is
    exact (no approximation).  Fuse its results with a dense search using
    :func:`hybrid_search`.

    ``score`` here is a similarity: **higher is better** (unlike the dense
    indexes, whose scores are distances).  Only vectors sharing at least one
    term with the query are returned.

    Every :meth:`index` call reaches the file before it returns; ``save``
    fsyncs and keeps the file compact.

    Args:
        path: the file (a SynaDB file), created if missing.
        vocab_size: term ids run 0..vocab_size-1; default 30522 for a new
            file; an existing file keeps its own (a different explicit
            value raises InvalidArgument).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "lex.svs")
    >>> with SparseVectorStore(path, vocab_size=100) as svs:
    ...     svs.index("a", indices=[1, 5], values=[0.5, 2.0])
    ...     svs.index("b", indices=[5, 7], values=[1.0, 1.0])
    ...     [(h.key, h.score) for h in svs.search([5], [1.0], k=2)]
    [('a', 2.0), ('b', 1.0)]
    """

    def __init__(self, path: str | os.PathLike[str], vocab_size: int | None = None, *,
                 _must_exist: bool = False) -> None:
        self._lock = threading.RLock()
        if vocab_size is not None:
            check_int("vocab_size", vocab_size, 1, 2**31 - 1)
        self._file: IndexFile | None = None
        self._file = IndexFile(path, _KIND, _VERSION,
                               {"vocab_size": int(vocab_size or DEFAULT_VOCAB)},
                               must_exist=_must_exist)
        self.path = self._file.path
        try:
            stored = int(self._file.meta["vocab_size"])
            if vocab_size is not None and int(vocab_size) != stored:
                raise errors.InvalidArgument(
                    f"{self.path!r} has vocab_size {stored}, not {vocab_size}")
            self.vocab_size = stored
            self._reset()
            segs = self._file.segments()
            self._nseg = len(segs)
            self._replay(segs)
        except BaseException:
            self._file.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SparseVectorStore:
        """Open an existing store (its vocab_size comes from the file).

        Raises:
            DatabaseNotFound: there is no such file.
        """
        return cls(path, _must_exist=True)

    # --------------------------------------------------------------- memory
    def _reset(self) -> None:
        self._keys: list[str] = []          # doc id -> key (dead ids stay)
        self._docid: dict[str, int] = {}    # live key -> doc id
        self._alive_buf = np.zeros(1024, dtype=bool)  # grows by doubling
        # Postings: a term-sorted main part plus an unsorted recent part,
        # merged when the recent part grows (so index() stays O(nnz)).
        self._ptr = np.zeros(self.vocab_size + 1, dtype=np.int64)
        self._pdoc = np.empty(0, dtype=np.int32)
        self._pval = np.empty(0, dtype=np.float32)
        self._rdoc: list[np.ndarray] = []
        self._rterm: list[np.ndarray] = []
        self._rval: list[np.ndarray] = []
        self._rnnz = 0
        self._recent: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _add_docs(self, keys: list[str], ops: np.ndarray, indptr: np.ndarray,
                  terms: np.ndarray, values: np.ndarray) -> None:
        n0 = len(self._keys)
        for k in keys:
            old = self._docid.pop(k, None)
            if old is not None:
                self._alive[old] = False
        live = ops.astype(bool)
        if live.any():
            if n0 + len(keys) > len(self._alive_buf):
                buf = np.zeros(max(2 * len(self._alive_buf), n0 + len(keys)), dtype=bool)
                buf[:n0] = self._alive_buf[:n0]
                self._alive_buf = buf
            self._alive_buf[n0:n0 + len(keys)] = live
            ids = np.arange(n0, n0 + len(keys))
            for k, i, ok in zip(keys, ids.tolist(), live.tolist()):
                self._keys.append(k)
                if ok:
                    self._docid[k] = i
            doc = np.repeat(ids, np.diff(indptr)).astype(np.int32)
            self._rdoc.append(doc)
            self._rterm.append(terms.astype(np.int32, copy=False))
            self._rval.append(values.astype(np.float32, copy=False))
            self._rnnz += len(doc)
            self._recent = None
            if self._rnnz > max(1 << 16, len(self._pdoc) // 4):
                self._merge()

    @property
    def _alive(self) -> np.ndarray:
        """Per doc id: is it the live vector of its key."""
        return self._alive_buf[:len(self._keys)]

    def _merge(self) -> None:
        if not self._rnnz:
            return
        doc = np.concatenate([self._pdoc] + self._rdoc)
        val = np.concatenate([self._pval] + self._rval)
        # Main postings are term-sorted; rebuild their term column from ptr.
        term = np.concatenate([np.repeat(np.arange(self.vocab_size, dtype=np.int32),
                                         np.diff(self._ptr))] + self._rterm)
        keep = self._alive[doc]  # drop postings of replaced/deleted vectors
        doc, val, term = doc[keep], val[keep], term[keep]
        # Doc ids only grow, so the concatenation is in doc order within
        # each term; a stable sort by term (radix for 16-bit ids) keeps it.
        order = np.argsort(term.astype(np.uint16) if self.vocab_size <= 1 << 16 else term,
                           kind="stable")
        self._pdoc, self._pval = doc[order], val[order]
        self._ptr = np.concatenate(([0], np.cumsum(np.bincount(term, minlength=self.vocab_size))))
        self._rdoc, self._rterm, self._rval, self._rnnz = [], [], [], 0
        self._recent = None

    def _replay(self, segs: list[tuple[list[str], dict[str, np.ndarray]]]) -> None:
        for keys, f in segs:
            try:
                ops, indptr, terms, values = f["op"], f["indptr"], f["terms"], f["values"]
            except KeyError as e:
                raise errors.CorruptDatabase(f"{self.path!r}: a segment lacks {e}") from e
            if len(ops) != len(keys) or len(indptr) != len(keys) + 1 or \
                    indptr[-1] != len(terms) or len(terms) != len(values) or \
                    (len(terms) and (terms.min() < 0 or terms.max() >= self.vocab_size)):
                raise errors.CorruptDatabase(f"{self.path!r}: a segment is inconsistent")
            self._add_docs(keys, ops, indptr, terms, values)
        self._merge()

    # ------------------------------------------------------------ checking
    def _vectors(self, indices: list[Any], values: list[Any],
                 names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Check sparse vectors; return them as CSR (indptr, terms, values)
        without zeros.  One pass per vector for shapes, then whole-batch
        array checks."""
        idx_parts, val_parts = [], []
        for name, i, v in zip(names, indices, values):
            try:
                ia, va = np.asarray(i), np.asarray(v)
            except (TypeError, ValueError) as e:
                raise errors.InvalidArgument(f"{name}: indices/values are not flat "
                                             "arrays") from e
            if ia.ndim != 1 or va.ndim != 1 or len(ia) != len(va):
                raise errors.DimensionMismatch(
                    f"{name}: indices and values must be 1-D of equal length, got "
                    f"{ia.shape} and {va.shape}")
            if len(ia) and ia.dtype.kind not in "iu":
                raise errors.InvalidArgument(f"{name}: indices must be integers, "
                                             f"not {ia.dtype}")
            if len(va) and va.dtype.kind not in "fiu":
                raise errors.InvalidArgument(f"{name}: values must be numbers, "
                                             f"not {va.dtype}")
            idx_parts.append(ia)
            val_parts.append(va)
        lengths = np.fromiter((len(a) for a in idx_parts), dtype=np.int64,
                              count=len(idx_parts))
        if not lengths.sum():
            return (np.zeros(len(names) + 1, dtype=np.int64), np.empty(0, np.int32),
                    np.empty(0, np.float32))
        terms = np.concatenate([a.astype(np.int64, copy=False) for a in idx_parts])
        with np.errstate(over="ignore", invalid="ignore"):
            vals = np.concatenate([a.astype(np.float32, copy=False) for a in val_parts])
        doc = np.repeat(np.arange(len(names)), lengths)

        def blame(mask: np.ndarray) -> str:
            return names[int(doc[int(np.argmax(mask))])]

        bad = (terms < 0) | (terms >= self.vocab_size)
        if bad.any():
            raise errors.InvalidArgument(
                f"{blame(bad)}: term ids must be in 0..{self.vocab_size - 1}")
        bad = ~np.isfinite(vals)
        if bad.any():
            raise errors.NonFiniteValue(f"{blame(bad)}: values contain NaN or infinity "
                                        "(as float32)")
        pair = np.sort(doc * self.vocab_size + terms)
        same = np.flatnonzero(pair[1:] == pair[:-1])
        if len(same):
            raise errors.InvalidArgument(
                f"{names[int(pair[same[0]] // self.vocab_size)]}: a term id appears twice")
        nz = vals != 0  # zeros carry no weight: not stored
        indptr = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc[nz], minlength=len(names)), out=indptr[1:])
        return indptr, terms[nz].astype(np.int32), vals[nz]

    def _live(self) -> IndexFile:
        f = self._file
        if f is None or f.db is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        return f

    # --------------------------------------------------------------- writes
    def index(self, key: str, indices: Any, values: Any) -> None:
        """Store (or replace) the sparse vector of ``key``.

        Args:
            key: a non-empty str without NUL.
            indices: distinct term ids in 0..vocab_size-1.
            values: one finite weight per term id (zeros are dropped).

        Raises:
            InvalidArgument: bad ids, a repeated id, lengths that differ.
            NonFiniteValue: NaN or infinity.
            InvalidKey: a bad key.
        """
        self.index_batch([key], [indices], [values], progress=False)

    @locked
    def index_batch(self, keys: Any, indices: Any, values: Any, *,
                    progress: bool = True) -> int:
        """Store many sparse vectors at once, all or nothing.

        Args:
            keys: one key per vector (a repeated key keeps its last vector).
            indices: a sequence of term-id sequences.
            values: a sequence of weight sequences, parallel to ``indices``.
            progress: show a progress bar.

        Returns:
            The number of distinct keys written.

        Raises:
            As :meth:`index`; nothing is written if any vector is bad.
        """
        self._live()
        idx_list, val_list = list(indices), list(values)
        ks = check_keys(keys, len(idx_list))
        if len(val_list) != len(idx_list):
            raise errors.InvalidArgument(f"{len(idx_list)} index lists but "
                                         f"{len(val_list)} value lists")
        keep = last_wins(ks)
        if keep is not None:
            ks = [ks[i] for i in keep.tolist()]
            idx_list = [idx_list[i] for i in keep.tolist()]
            val_list = [val_list[i] for i in keep.tolist()]
        if not ks:
            return 0
        with progress_bar(len(ks), "SparseVectorStore index", progress) as bar:
            step = 1 << 16
            parts = []
            for s in range(0, len(ks), step):
                parts.append(self._vectors(idx_list[s:s + step], val_list[s:s + step],
                                           [repr(k) for k in ks[s:s + step]]))
                bar.update(min(step, len(ks) - s))
        if len(parts) == 1:
            indptr, terms, vals = parts[0]
        else:
            offs = np.cumsum([0] + [int(p[0][-1]) for p in parts])
            indptr = np.concatenate([[0]] + [p[0][1:] + o for p, o in zip(parts, offs)])
            terms = np.concatenate([p[1] for p in parts])
            vals = np.concatenate([p[2] for p in parts])
        self._write(ks, np.ones(len(ks), dtype=np.uint8), indptr, terms, vals)
        return len(ks)

    def _write(self, ks: list[str], ops: np.ndarray, indptr: np.ndarray, terms: np.ndarray,
               values: np.ndarray) -> None:
        f = self._live()
        blobs = _segments(ks, ops, indptr, terms, values)
        f.append(blobs)
        self._nseg += len(blobs)
        self._add_docs(ks, ops, indptr, terms, values)

    @locked
    def delete(self, key: str) -> bool:
        """Remove ``key``'s vector; returns whether it existed."""
        self._live()
        if key not in self._docid:
            return False
        self._write([key], np.zeros(1, dtype=np.uint8), np.zeros(2, dtype=np.int64),
                    np.empty(0, np.int32), np.empty(0, np.float32))
        return True

    # --------------------------------------------------------------- search
    @locked
    def search(self, q_indices: Any, q_values: Any, k: int = 10) -> list[ScoredKey]:
        """The k stored vectors with the highest dot product with the query.

        Exact: every posting of every query term is scored (float64 sums).

        Args:
            q_indices: the query's distinct term ids.
            q_values: its weights.
            k: hits to return.

        Returns:
            Up to k :class:`ScoredKey` hits, **highest score first**
            (score = dot product); ties go to the earlier-indexed vector.
            Vectors sharing no term with the query are not returned.

        Raises:
            InvalidArgument, NonFiniteValue: a bad query or ``k < 1``.
        """
        self._live()
        k = check_k(k)
        _, qi, qv = self._vectors([q_indices], [q_values], ["the query"])
        ndoc = len(self._keys)
        if not len(qi) or not self._docid:
            return []
        # Main postings: the ranges of the query terms.
        starts, ends = self._ptr[qi], self._ptr[qi + 1]
        pos = ranges_to_rows(starts, ends)
        docs = [self._pdoc[pos]]
        weights = [self._pval[pos].astype(np.float64) * np.repeat(qv.astype(np.float64),
                                                                  ends - starts)]
        if self._rnnz:  # recent, unsorted postings: one masked pass
            if self._recent is None:
                self._recent = (np.concatenate(self._rdoc), np.concatenate(self._rterm),
                                np.concatenate(self._rval))
            rdoc, rterm, rval = self._recent
            qdense = np.zeros(self.vocab_size, dtype=np.float64)
            qdense[qi] = qv
            w = qdense[rterm]
            hit = w != 0
            docs.append(rdoc[hit])
            weights.append(rval[hit].astype(np.float64) * w[hit])
        doc = np.concatenate(docs)
        if not len(doc):
            return []
        scores = np.bincount(doc, weights=np.concatenate(weights), minlength=ndoc)
        matched = np.zeros(ndoc, dtype=bool)
        matched[doc] = True
        cand = np.flatnonzero(matched & self._alive)
        if not len(cand):
            return []
        s = scores[cand]
        if k < len(cand):
            part = np.argpartition(-s, k - 1)[:k]
            cut = s[part].min()
            part = np.flatnonzero(s >= cut)  # keep every tie at the cut
        else:
            part = np.arange(len(cand))
        order = part[np.lexsort((cand[part], -s[part]))][:k]
        return [ScoredKey(self._keys[int(cand[i])], float(s[i])) for i in order]

    # ----------------------------------------------------------- lifecycle
    @locked
    def stats(self) -> SparseStats:
        """Counts: live vectors, vocabulary size, postings, mean nonzeros."""
        self._live()
        live_postings = int(np.count_nonzero(self._alive[self._pdoc]))
        if self._rnnz:
            rdoc = np.concatenate(self._rdoc)
            live_postings += int(np.count_nonzero(self._alive[rdoc]))
        n = len(self._docid)
        return SparseStats(num_vectors=n, vocab_size=self.vocab_size,
                           num_postings=live_postings,
                           avg_nonzeros=live_postings / n if n else 0.0)

    @locked
    def save(self) -> None:
        """fsync; if many small writes piled up, fold them into one snapshot
        (and compact the file) so that reopening stays fast."""
        f = self._live()
        if self._nseg >= FOLD_SEGMENTS:
            self._merge()
            blobs = self._snapshot()
            f.replace(blobs)
            self._nseg = len(blobs)
        f.sync()

    def _snapshot(self) -> list[bytes]:
        ids = np.fromiter(self._docid.values(), dtype=np.int64, count=len(self._docid))
        keys = list(self._docid)
        # Main postings are term-major; regroup them by document.
        term = np.repeat(np.arange(self.vocab_size, dtype=np.int32), np.diff(self._ptr))
        order = np.argsort(self._pdoc, kind="stable")  # terms stay sorted per doc
        pdoc, pterm, pval = self._pdoc[order], term[order], self._pval[order]
        lo = np.searchsorted(pdoc, ids, side="left")
        hi = np.searchsorted(pdoc, ids, side="right")
        pos = ranges_to_rows(lo, hi)
        indptr = np.concatenate(([0], np.cumsum(hi - lo)))
        terms, values = pterm[pos], pval[pos]
        return _segments(keys, np.ones(len(keys), dtype=np.uint8), indptr, terms, values)

    @locked
    def close(self) -> None:
        """fsync and close; idempotent."""
        if self._file is not None and self._file.db is not None:
            self._file.close()

    def __enter__(self) -> SparseVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._docid)

    def __contains__(self, key: object) -> bool:
        return key in self._docid

    def __repr__(self) -> str:
        state = "closed" if self._file is None or self._file.db is None else \
            f"{len(self._docid)} vectors"
        return f"SparseVectorStore({self.path!r}, vocab_size={self.vocab_size}, {state})"
