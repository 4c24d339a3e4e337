"""LangChain adapters: a vector store, a chat history and a document loader.

Install with ``pip install 'synadb[langchain]'``.  Only this module imports
``langchain_core``; ``import synadb`` does not.

Setup::

    from langchain_core.embeddings import DeterministicFakeEmbedding
    from synadb.integrations.langchain import SynaVectorStore

    store = SynaVectorStore(path="rag.db", embedding=DeterministicFakeEmbedding(size=8))

Add (ids are kept; missing ones become uuid4 strings)::

    store.add_texts(["synadb keeps everything in one file"], metadatas=[{"topic": "db"}],
                    ids=["intro"])
    store.add_documents([Document(page_content="HNSW above 10k vectors", id="ann")])

Search (``filter`` is a Mongo-style dict or a predicate over the metadata)::

    store.similarity_search("one file", k=1, filter={"topic": "db"})
    # [Document(id='intro', metadata={'topic': 'db'}, page_content='synadb keeps ...')]
    store.similarity_search_with_score("one file", k=1)      # score: distance, lower is closer
    store.similarity_search_with_relevance_scores("one file")  # cos clamped to [0, 1]
    store.max_marginal_relevance_search("one file", k=2, fetch_k=10)

Keyword (BM25) and hybrid search, with no sparse encoder: the text of every
document is also in a :class:`~synadb.fulltext.FullTextIndex` in the same
file, written in the same batch as its vector::

    store.bm25_search("E4012 timeout", k=4, filter={"topic": "db"})
    store.hybrid_search("E4012 timeout", k=4, alpha=0.5, fusion="rrf")   # or "weighted"
    store.as_retriever(search_type="hybrid", search_kwargs={"k": 4, "alpha": 0.5})
    store.as_retriever(search_type="bm25", search_kwargs={"k": 4})

Async: every ``a*`` method runs its sync twin in an executor (the store is
thread-safe).  Retriever: ``store.as_retriever(search_kwargs={"k": 3})``.

Chat history and loading keys as documents::

    history = SynaChatMessageHistory("chat.db", session_id="user-42")
    history.add_user_message("hi"); history.messages; history.clear()
    docs = SynaDocumentLoader("notes.db", "notes/*").load()
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import struct
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from typing_extensions import Self  # typing.Self is 3.11+; we support 3.10

import numpy as np

from .. import errors
from ..db import Storage, SynaDB
from ..fulltext import FullTextIndex, rrf, weighted_sum
from ..vectors.store import VectorStore as _VectorStore

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.document_loaders import BaseLoader
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
    from langchain_core._api import LangChainBetaWarning
    from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
    from langchain_core.indexing import RecordManager
    from langchain_core.load import dumps as _lc_dumps
    from langchain_core.load import loads as _lc_loads
    from langchain_core.outputs import Generation
    from langchain_core.stores import ByteStore
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.vectorstores import VectorStore, VectorStoreRetriever
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency(
        "langchain-core", "langchain", "synadb.integrations.langchain") from e

__all__ = ["PAGE_CONTENT_KEY", "SynaByteStore", "SynaCache", "SynaChatMessageHistory",
           "SynaDocumentLoader", "SynaRecordManager", "SynaSemanticCache", "SynaVectorStore"]

#: The metadata key that holds a document's text inside the record; it is
#: stripped from the metadata of every Document we return.
PAGE_CONTENT_KEY = "_page_content"
CHAT_KEY_PREFIX = "chat/"
#: Key prefixes of the storage surfaces below.  Each lives beside the
#: vector store's own keys (``v/``, ``__vs__/``) in the same file.
RECORD_MANAGER_PREFIX = "__lc_rm__/"
RECORD_MANAGER_CLOCK_PREFIX = "__lc_rm_clock__/"
BYTE_STORE_PREFIX = "__lc_bs__/"
CACHE_PREFIX = "__lc_cache__/"
SEMANTIC_CACHE_PREFIX = "__lc_scache__/"
#: Name of the :class:`~synadb.fulltext.FullTextIndex` of the documents' text.
FULLTEXT_INDEX = "langchain"
#: How :meth:`SynaVectorStore.hybrid_search` can fuse its two rankings.
FUSIONS = ("rrf", "weighted")
#: The ``search_type`` values of :meth:`SynaVectorStore.search` and its retriever.
SEARCH_TYPES = ("similarity", "similarity_score_threshold", "mmr", "hybrid", "bm25")

Filter = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]


def _clamp01(x: float) -> float:
    # Rounding can put an exact match at 1.0000001; LangChain warns on any
    # relevance outside [0, 1], and pytest (filterwarnings=error) fails on it.
    return min(1.0, max(0.0, x))


def _cosine_relevance(distance: float) -> float:
    # Our cosine distance is 1 - cos; the relevance is cos itself, as
    # LangChain's _cosine_relevance_score_fn (1 - d), InMemoryVectorStore
    # (which reports cos) and Chroma give it.  An earlier release reported
    # (1 + cos)/2, so an orthogonal document scored 0.5 and passed a 0.5
    # threshold that the same document fails everywhere else.  Negative cos
    # is clamped to 0: "not relevant" (LangChain warns outside [0, 1]).
    return _clamp01(1.0 - distance)


def _euclidean_relevance(distance: float) -> float:
    # LangChain's convention (1 - d/sqrt 2, exact for unit vectors up to 90°),
    # clamped: larger distances all mean "not relevant".
    return _clamp01(1.0 - distance / math.sqrt(2))


def _dot_relevance(score: float) -> float:
    # Our score is -(q·v).  The relevance is q·v clamped to [0, 1]: what
    # LangChain's _max_inner_product_relevance_score_fn gives for q·v >= 0,
    # and cos (the cosine mapping) on unit vectors.  For q·v < 0 LangChain's
    # function returns 1 + q·v, which is not monotonic and would reorder
    # results; we say "not relevant" (0) instead.
    return _clamp01(-score)


_RELEVANCE = {"cosine": _cosine_relevance, "euclidean": _euclidean_relevance,
              "dot_product": _dot_relevance}


def _check_k(name: str, k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise errors.InvalidArgument(f"{name} must be an int >= 0, got {k!r}")
    return int(k)


def _reject_extra(method: str, kwargs: Mapping[str, Any]) -> None:
    # Silently ignoring ``filters=`` (a typo for ``filter=``) would return
    # unfiltered results; better to say so.
    if kwargs:
        raise TypeError(f"{method}() got unexpected keyword arguments: {', '.join(kwargs)}")


class SynaVectorStore(VectorStore):
    """A LangChain ``VectorStore`` kept in one synadb file.

    Each document is one record of :class:`synadb.vectors.VectorStore`: the key
    is the document id, the vector its embedding, and the metadata its
    metadata plus its text under ``PAGE_CONTENT_KEY``.  Reopening the file
    gives back the same documents and ids.

    Scores: ``similarity_search_with_score`` returns synadb's distances
    (lower is closer: ``1 - cos``, the L2 distance, or ``-(q·v)``).
    ``similarity_search_with_relevance_scores`` (and a retriever's
    ``score_threshold``) uses LangChain's own relevance functions, clamped
    to [0, 1] because LangChain warns outside it:

    - cosine: ``cos(q, v)`` itself, the number ``InMemoryVectorStore`` and
      Chroma report (0 for anything at or beyond 90°);
    - euclidean: ``1 - d / sqrt(2)`` (LangChain's, exact for unit vectors);
    - dot_product: ``q·v`` (LangChain's for ``q·v >= 0``; equal to cos on
      unit vectors).

    So a ``score_threshold=0.5`` retriever keeps the documents within 60° of
    the query, as it does over ``InMemoryVectorStore``.

    Keyword search needs no sparse encoder: every document's text is also in
    a :class:`~synadb.fulltext.FullTextIndex` named :data:`FULLTEXT_INDEX`
    in the same file, written in the same all-or-nothing batch as its vector
    (a file written before this index existed is indexed once, on open).
    :meth:`bm25_search` ranks by it, :meth:`hybrid_search` fuses it with the
    dense ranking, and ``as_retriever(search_type="hybrid" | "bm25")`` makes
    retrievers of both.  Their scores are higher-is-better (BM25, or fused).

    Args:
        path: the database file (created if missing).
        embedding: the ``Embeddings`` that embed documents and queries.
        metric: ``"cosine"``, ``"euclidean"`` or ``"dot_product"``; a file
            that already holds vectors keeps its own metric.
        relevance_score_fn: maps a distance to a relevance in [0, 1];
            by default chosen by the metric.
        **store_kwargs: passed to :class:`synadb.vectors.VectorStore`
            (``dimensions``, ``m``, ``ef_search``, ``index_threshold``, ...).

    Example:
        >>> import os, tempfile
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> path = os.path.join(tempfile.mkdtemp(), "lc.db")
        >>> with SynaVectorStore(path, DeterministicFakeEmbedding(size=4)) as vs:
        ...     vs.add_texts(["foo", "bar"], metadatas=[{"n": 1}, {"n": 2}], ids=["a", "b"])
        ...     vs.similarity_search("bar", k=1)
        ['a', 'b']
        [Document(id='b', metadata={'n': 2}, page_content='bar')]
    """

    def __init__(self, path: str | os.PathLike[str], embedding: Embeddings,
                 metric: str = "cosine", *,
                 relevance_score_fn: Callable[[float], float] | None = None,
                 **store_kwargs: Any) -> None:
        if embedding is None:
            raise errors.InvalidArgument("SynaVectorStore needs an embedding (an Embeddings)")
        self._embedding = embedding
        self._relevance_score_fn = relevance_score_fn
        self.store = _VectorStore(path, metric=metric, **store_kwargs)
        self.path = self.store.path
        # The text index shares the VectorStore's handle (VectorStore.db), so
        # that one batch writes a document's vector and its terms, all or
        # nothing (as the Haystack adapter does).
        self._db = self.store.db
        try:
            self._fts = FullTextIndex(self._db, FULLTEXT_INDEX)
            self._backfill()
        except BaseException:
            self.store.close()
            raise

    def _backfill(self) -> None:
        """Index the text of documents written before this store kept a
        full-text index (a file from an older synadb): once, on open."""
        if self._fts.read_only or len(self._fts) or not len(self.store):
            return
        keys, texts = [], []
        for key in self.store.find():
            meta = self.store.get_metadata(key)
            text = None if meta is None else meta.get(PAGE_CONTENT_KEY)
            if isinstance(text, str):
                keys.append(key)
                texts.append(text)
        if keys:
            with self._writing():
                self._fts.add(keys, texts)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One all-or-nothing batch for the vectors and the text index.

        Inside it the text index is written first and the VectorStore last:
        the VectorStore updates its memory as soon as its own (nested) write
        returns, so nothing that could fail may follow it, while the text
        index only reads what the file commits.  The VectorStore's lock is
        taken before the handle's (the batch), the order its readers use.
        """
        with self.store.transaction():
            yield
        self._fts.checkpoint()  # the batch is over: snapshot if much changed

    @property
    def fulltext_index(self) -> FullTextIndex:
        """The :class:`~synadb.fulltext.FullTextIndex` of the documents' text."""
        return self._fts

    # ----------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Persist the index snapshots and close the file (idempotent)."""
        try:
            if not self.store.closed:
                self._fts.close()  # may save its snapshot through the shared handle
        finally:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SynaVectorStore({self.path!r}, metric={self.store.metric!r})"

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    # -------------------------------------------------------------- writes
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None,
                  *, ids: Sequence[str | None] | None = None, batch_size: int | None = None,
                  **kwargs: Any) -> list[str]:
        """Embed ``texts`` and upsert them; an existing id is replaced.

        Each batch (all texts unless ``batch_size`` is given) is written all
        or nothing.

        Args:
            texts: the documents' text.
            metadatas: one JSON-serializable dict per text (or None).
            ids: one id per text; a None id, or no ``ids``, gets a uuid4.
            batch_size: embed and write this many texts at a time.

        Returns:
            The ids, in the order of ``texts``.

        Raises:
            ValueError: ``metadatas`` or ``ids`` has the wrong length, or a
                metadata uses the reserved key ``PAGE_CONTENT_KEY``.
        """
        _reject_extra("add_texts", kwargs)
        texts = list(texts)
        if not ids:
            ids = None  # [] means "no ids", as in LangChain's own add_texts
        n = len(texts)
        if metadatas is not None and len(metadatas) != n:
            raise errors.InvalidArgument(f"{len(metadatas)} metadatas for {n} texts")
        if ids is not None and len(ids) != n:
            raise errors.InvalidArgument(f"{len(ids)} ids for {n} texts")
        keys: list[str] = []
        for i in range(n):
            given = None if ids is None else ids[i]
            keys.append(str(uuid.uuid4()) if given is None else given)
        records = []
        for i, text in enumerate(texts):
            meta = dict(metadatas[i] or {}) if metadatas is not None else {}
            if PAGE_CONTENT_KEY in meta:
                raise errors.InvalidArgument(
                    f"{keys[i]!r}: metadata key {PAGE_CONTENT_KEY!r} is reserved for the text")
            meta[PAGE_CONTENT_KEY] = text
            records.append(meta)
        step = batch_size if batch_size and batch_size > 0 else max(n, 1)
        for s in range(0, n, step):
            chunk = texts[s:s + step]
            vectors = np.asarray(self._embedding.embed_documents(chunk), dtype=np.float32)
            if vectors.ndim != 2 or len(vectors) != len(chunk):
                raise errors.DimensionMismatch(
                    f"the embedding returned shape {vectors.shape} for {len(chunk)} texts")
            with self._writing():
                self._fts.add(keys[s:s + step], chunk)
                self.store.insert_batch(keys[s:s + step], vectors, records[s:s + step])
        return keys

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Add ``documents`` (not modified).  Ids come from ``ids=``, else
        from each ``Document.id``, else a new uuid4."""
        if kwargs.get("ids") is None:
            kwargs["ids"] = [doc.id for doc in documents]
        return self.add_texts([doc.page_content for doc in documents],
                              [doc.metadata for doc in documents], **kwargs)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete these ids (missing ones are ignored), or every document if
        ``ids`` is None.  Returns True."""
        _reject_extra("delete", kwargs)
        with self._writing():
            if ids is None:
                self._fts.clear()
                self.store.clear()
            else:
                ids = list(ids)
                self._fts.delete([i for i in ids if isinstance(i, str)])
                self.store.delete_many(ids)
        return True

    # --------------------------------------------------------------- reads
    @staticmethod
    def _document(key: str, metadata: Mapping[str, Any]) -> Document:
        meta = dict(metadata)
        text = meta.pop(PAGE_CONTENT_KEY, "")
        return Document(page_content=text if isinstance(text, str) else str(text),
                        metadata=meta, id=key)

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in that order; missing ids are
        skipped (never an error), repeated ids returned once."""
        out = []
        seen = set()
        for key in ids:
            if key in seen or not isinstance(key, str):
                continue
            seen.add(key)
            meta = self.store.get_metadata(key)
            if meta is not None:
                out.append(self._document(key, meta))
        return out

    def similarity_search_by_vector_with_score(
            self, embedding: Sequence[float], k: int = 4, filter: Filter | None = None,
            *, ef: int | None = None) -> list[tuple[Document, float]]:
        """The ``k`` nearest documents to ``embedding`` with their distances
        (lower is closer), among those whose metadata matches ``filter``."""
        hits = self.store.search(embedding, k=k, filter=filter, ef=ef)
        return [(self._document(h.key, h.metadata), h.score) for h in hits]

    def similarity_search_with_score(self, query: str, k: int = 4,
                                     filter: Filter | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` nearest documents to ``query`` with their distances.

        Args:
            query: the text to embed and search for.
            k: how many documents.
            filter: a Mongo-style dict over the metadata (``{"year": {"$gte":
                2020}}``) or a predicate taking the metadata dict.
            ef: HNSW search breadth (only once the store has an index).

        Returns:
            ``(Document, distance)`` pairs, closest first.
        """
        ef = kwargs.pop("ef", None)
        _reject_extra("similarity_search_with_score", kwargs)
        return self.similarity_search_by_vector_with_score(
            self._embedding.embed_query(query), k, filter, ef=ef)

    def similarity_search(self, query: str, k: int = 4, filter: Filter | None = None,
                          **kwargs: Any) -> list[Document]:
        """The ``k`` documents nearest to ``query`` (see
        :meth:`similarity_search_with_score`)."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    filter: Filter | None = None,
                                    **kwargs: Any) -> list[Document]:
        """The ``k`` documents nearest to ``embedding``."""
        ef = kwargs.pop("ef", None)
        _reject_extra("similarity_search_by_vector", kwargs)
        return [doc for doc, _ in
                self.similarity_search_by_vector_with_score(embedding, k, filter, ef=ef)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self._relevance_score_fn is not None:
            return self._relevance_score_fn
        return _RELEVANCE[self.store.metric]

    def max_marginal_relevance_search_by_vector(
            self, embedding: list[float], k: int = 4, fetch_k: int = 20,
            lambda_mult: float = 0.5, filter: Filter | None = None,
            **kwargs: Any) -> list[Document]:
        """Fetch the ``fetch_k`` nearest documents, then pick ``k`` of them
        that are both relevant and unlike each other.

        Args:
            embedding: the query vector.
            k: how many documents to return.
            fetch_k: how many nearest documents to choose from.
            lambda_mult: 1 favours relevance only, 0 diversity only.
            filter: as in :meth:`similarity_search_with_score`.
        """
        ef = kwargs.pop("ef", None)
        _reject_extra("max_marginal_relevance_search_by_vector", kwargs)
        hits = self.store.search(embedding, k=max(fetch_k, k), filter=filter,
                                 include_vectors=True, ef=ef)
        if not hits:
            return []
        picked = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), [h.vector.tolist() for h in hits if h.vector is not None],
            lambda_mult=lambda_mult, k=k)
        return [self._document(hits[i].key, hits[i].metadata) for i in picked]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5, filter: Filter | None = None,
                                      **kwargs: Any) -> list[Document]:
        """:meth:`max_marginal_relevance_search_by_vector` for a text query."""
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs)

    # ------------------------------------------------- keyword and hybrid
    def _allowed(self, filter: Filter | None) -> set[str] | None:
        # BM25 ranks among every document (the corpus statistics stay the
        # whole store's, as in the Haystack adapter); the filter only says
        # which may be returned.
        return None if filter is None else set(self.store.find(filter))

    def bm25_search_with_score(self, query: str, k: int = 4, filter: Filter | None = None,
                               **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` documents whose text best matches ``query`` by BM25.

        Scoring is Okapi BM25 over lowercase ``\\w+`` words (see
        :mod:`synadb.fulltext`); only documents holding a query term are
        returned, so there may be fewer than ``k``.

        Args:
            query: the text to match (not embedded).
            k: how many documents at most.
            filter: as in :meth:`similarity_search_with_score`; it restricts
                which documents come back, not the corpus statistics.

        Returns:
            ``(Document, BM25 score)`` pairs, best (highest) first.

        Raises:
            InvalidArgument: ``query`` is not a str, or a bad ``k``.
        """
        _reject_extra("bm25_search_with_score", kwargs)
        k = _check_k("k", k)
        if not isinstance(query, str):
            raise errors.InvalidArgument(f"query must be a str, not {type(query).__name__}")
        allowed = self._allowed(filter)
        if not k or (allowed is not None and not allowed):
            return []
        out = []
        for key, score in self._fts.search(query, k=k, keys=allowed):
            meta = self.store.get_metadata(key)
            if meta is not None:  # else deleted by another handle in between
                out.append((self._document(key, meta), score))
        return out

    def bm25_search(self, query: str, k: int = 4, filter: Filter | None = None,
                    **kwargs: Any) -> list[Document]:
        """The ``k`` documents whose text best matches ``query`` (see
        :meth:`bm25_search_with_score`)."""
        return [doc for doc, _ in self.bm25_search_with_score(query, k, filter, **kwargs)]

    def hybrid_search_with_score(self, query: str, k: int = 4, alpha: float = 0.5,
                                 fusion: str = "rrf", filter: Filter | None = None, *,
                                 rrf_k: float = 60, fetch_k: int | None = None,
                                 **kwargs: Any) -> list[tuple[Document, float]]:
        """Fuse the dense ranking of ``query`` with its BM25 ranking.

        Each side contributes its ``fetch_k`` best documents (default
        ``max(50, 4 * k)``) among those matching ``filter``; they are fused
        by ``fusion``:

        - ``"rrf"``: reciprocal rank fusion (:func:`synadb.fulltext.rrf`,
          constant ``rrf_k``), the dense side weighted ``2 * alpha`` and the
          BM25 side ``2 * (1 - alpha)`` (``alpha=0.5``: plain RRF).
        - ``"weighted"``: ``alpha * dense + (1 - alpha) * bm25`` of min-max
          normalised scores (:func:`synadb.fulltext.weighted_sum`; distances
          count lower-is-better).

        These are the Haystack adapter's ``hybrid_retrieval`` rules, so the
        same file ranks alike from either framework.  A blank ``query``
        (no words) ranks by the embedding only.

        Args:
            query: embedded for the dense side, matched word by word for BM25.
            k: how many documents.
            alpha: the dense side's share, in [0, 1].
            fusion: ``"rrf"`` or ``"weighted"``.
            filter: as in :meth:`similarity_search_with_score`.
            rrf_k: the RRF rank constant.
            fetch_k: how many documents each side contributes.

        Returns:
            ``(Document, fused score)`` pairs, best (highest) first.

        Raises:
            InvalidArgument: an unknown ``fusion``, ``alpha`` outside [0, 1],
                or a bad ``k``/``fetch_k``.
        """
        _reject_extra("hybrid_search_with_score", kwargs)
        if fusion not in FUSIONS:
            raise errors.InvalidArgument(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        if (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                or not 0 <= alpha <= 1):
            raise errors.InvalidArgument(f"alpha must be a number in [0, 1], got {alpha!r}")
        k = _check_k("k", k)
        fetch_k = max(50, 4 * k) if fetch_k is None else _check_k("fetch_k", fetch_k)
        fetch_k = max(fetch_k, k, 1)
        if not isinstance(query, str):
            raise errors.InvalidArgument(f"query must be a str, not {type(query).__name__}")
        if not k:
            return []
        dense = self.store.search(self._embedding.embed_query(query), k=fetch_k,
                                  filter=filter)
        sparse = self.bm25_search_with_score(query, fetch_k, filter) if query.strip() else []
        if fusion == "rrf":
            fused = rrf([h.key for h in dense], [d.id for d, _ in sparse], k=rrf_k,
                        weights=[2 * alpha, 2 * (1 - alpha)])
        else:
            fused = weighted_sum([(h.key, h.score) for h in dense],
                                 [(d.id, s) for d, s in sparse],
                                 weights=[alpha, 1 - alpha], higher_is_better=[False, True])
        docs = {d.id: d for d, _ in sparse}
        docs.update((h.key, self._document(h.key, h.metadata)) for h in dense)
        return [(docs[key], score) for key, score in fused[:k]]

    def hybrid_search(self, query: str, k: int = 4, alpha: float = 0.5, fusion: str = "rrf",
                      filter: Filter | None = None, **kwargs: Any) -> list[Document]:
        """The ``k`` best documents by dense and BM25 ranking fused (see
        :meth:`hybrid_search_with_score`)."""
        return [doc for doc, _ in self.hybrid_search_with_score(query, k, alpha, fusion,
                                                                filter, **kwargs)]

    async def abm25_search_with_score(self, query: str, k: int = 4,
                                      filter: Filter | None = None,
                                      **kwargs: Any) -> list[tuple[Document, float]]:
        """Async :meth:`bm25_search_with_score`."""
        return await asyncio.to_thread(self.bm25_search_with_score, query, k, filter, **kwargs)

    async def abm25_search(self, query: str, k: int = 4, filter: Filter | None = None,
                           **kwargs: Any) -> list[Document]:
        """Async :meth:`bm25_search`."""
        return await asyncio.to_thread(self.bm25_search, query, k, filter, **kwargs)

    async def ahybrid_search_with_score(self, query: str, k: int = 4, alpha: float = 0.5,
                                        fusion: str = "rrf", filter: Filter | None = None,
                                        **kwargs: Any) -> list[tuple[Document, float]]:
        """Async :meth:`hybrid_search_with_score`."""
        return await asyncio.to_thread(self.hybrid_search_with_score, query, k, alpha, fusion,
                                       filter, **kwargs)

    async def ahybrid_search(self, query: str, k: int = 4, alpha: float = 0.5,
                             fusion: str = "rrf", filter: Filter | None = None,
                             **kwargs: Any) -> list[Document]:
        """Async :meth:`hybrid_search`."""
        return await asyncio.to_thread(self.hybrid_search, query, k, alpha, fusion, filter,
                                       **kwargs)

    def search(self, query: str, search_type: str, **kwargs: Any) -> list[Document]:
        """Search by ``search_type``: LangChain's three, plus ``"hybrid"``
        (:meth:`hybrid_search`) and ``"bm25"`` (:meth:`bm25_search`)."""
        if search_type == "hybrid":
            return self.hybrid_search(query, **kwargs)
        if search_type == "bm25":
            return self.bm25_search(query, **kwargs)
        if search_type not in SEARCH_TYPES:
            raise errors.InvalidArgument(
                f"search_type of {search_type} not allowed; use one of {SEARCH_TYPES}")
        return super().search(query, search_type, **kwargs)

    async def asearch(self, query: str, search_type: str, **kwargs: Any) -> list[Document]:
        """Async :meth:`search`."""
        if search_type == "hybrid":
            return await self.ahybrid_search(query, **kwargs)
        if search_type == "bm25":
            return await self.abm25_search(query, **kwargs)
        if search_type not in SEARCH_TYPES:
            raise errors.InvalidArgument(
                f"search_type of {search_type} not allowed; use one of {SEARCH_TYPES}")
        return await super().asearch(query, search_type, **kwargs)

    def as_retriever(self, **kwargs: Any) -> SynaVectorStoreRetriever:
        """A retriever over this store; ``search_type`` may also be
        ``"hybrid"`` or ``"bm25"``, with ``search_kwargs`` passed to
        :meth:`hybrid_search` / :meth:`bm25_search` (``k``, ``alpha``,
        ``fusion``, ``filter``, ...).

        >>> import os, tempfile
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> path = os.path.join(tempfile.mkdtemp(), "lc.db")
        >>> with SynaVectorStore(path, DeterministicFakeEmbedding(size=4)) as vs:
        ...     vs.add_texts(["error E4012 on open", "all fine"], ids=["a", "b"])
        ...     r = vs.as_retriever(search_type="hybrid", search_kwargs={"k": 1})
        ...     [d.id for d in r.invoke("what is E4012?")]
        ['a', 'b']
        ['a']
        """
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return SynaVectorStoreRetriever(vectorstore=self, tags=tags, **kwargs)

    # ------------------------------------------------------- constructors
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings,
                   metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, path: str | os.PathLike[str] | None = None,
                   **kwargs: Any) -> SynaVectorStore:
        """Open (or create) the store at ``path`` and add ``texts`` to it.

        Raises:
            InvalidArgument: no ``path``.
        """
        if path is None:
            raise errors.InvalidArgument("SynaVectorStore.from_texts needs path=...")
        batch_size = kwargs.pop("batch_size", None)
        store = cls(path, embedding, **kwargs)
        try:
            store.add_texts(texts, metadatas, ids=ids, batch_size=batch_size)
        except BaseException:
            store.close()
            raise
        return store


class SynaVectorStoreRetriever(VectorStoreRetriever):
    """LangChain's ``VectorStoreRetriever`` with two more search types,
    ``"hybrid"`` and ``"bm25"``; what :meth:`SynaVectorStore.as_retriever`
    returns.  The others behave exactly as LangChain's."""

    allowed_search_types: ClassVar[Collection[str]] = SEARCH_TYPES

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        if self.search_type in ("hybrid", "bm25"):
            return self.vectorstore.search(query, self.search_type,
                                           **(self.search_kwargs | kwargs))
        return super()._get_relevant_documents(query, run_manager=run_manager, **kwargs)

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[Document]:
        if self.search_type in ("hybrid", "bm25"):
            return await self.vectorstore.asearch(query, self.search_type,
                                                  **(self.search_kwargs | kwargs))
        return await super()._aget_relevant_documents(query, run_manager=run_manager,
                                                       **kwargs)


class SynaChatMessageHistory(BaseChatMessageHistory):
    """A chat session's messages, kept as the history of one synadb key.

    Each message is appended as one text record (``message_to_dict`` JSON)
    under ``chat/<session_id>``, so adding is an append and reading is one
    history scan; ``clear()`` deletes the key.  Several sessions, and other
    data, can share one file.  Compacting that file with
    ``keep_history=False`` would keep only each session's last message.

    Args:
        path: the database file (created if missing).
        session_id: names the conversation.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "chat.db")
        >>> with SynaChatMessageHistory(path, "s1") as h:
        ...     h.add_user_message("hi"); h.add_ai_message("hello")
        >>> with SynaChatMessageHistory(path, "s1") as h:
        ...     [m.content for m in h.messages]
        ['hi', 'hello']
    """

    def __init__(self, path: str | os.PathLike[str], session_id: str) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise errors.InvalidArgument(f"session_id must be a non-empty str, not {session_id!r}")
        self.session_id = session_id
        self.key = CHAT_KEY_PREFIX + session_id
        Storage.check_key(self.key)
        self._db = SynaDB(path)
        self.path = self._db.path

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the session, oldest first."""
        return messages_from_dict([json.loads(raw) for raw in self._db.get_history(self.key)])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` (all or nothing)."""
        records = [json.dumps(message_to_dict(m), ensure_ascii=False) for m in messages]
        with self._db.batch():
            for raw in records:
                self._db.put_text(self.key, raw)

    def clear(self) -> None:
        """Forget the session's messages."""
        self._db.delete(self.key)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SynaDocumentLoader(BaseLoader):
    """Loads the keys of a synadb file that match a glob as Documents.

    Each matching key whose latest value is text (or UTF-8 bytes) becomes
    ``Document(page_content=value, metadata={"source": path, "key": key})``;
    keys holding numbers, vectors or binary bytes are skipped.  The file is
    opened read-only, so a writer may keep using it.

    Args:
        path: an existing database file.
        pattern: a glob over keys (``"notes/*"``); ``"*"`` for all.

    Example:
        >>> import os, tempfile, synadb
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.db")
        >>> with synadb.SynaDB(path) as db:
        ...     db.put_text("notes/a", "first"); db.put_float("count", 1.0)
        >>> [d.page_content for d in SynaDocumentLoader(path, "notes/*").load()]
        ['first']
    """

    def __init__(self, path: str | os.PathLike[str], pattern: str = "*") -> None:
        self.path = os.fspath(path)
        self.pattern = pattern

    def lazy_load(self) -> Iterator[Document]:
        """Yield the documents in the keys' first-written order.

        Raises:
            DatabaseNotFound: ``path`` does not exist.
        """
        with SynaDB(self.path, read_only=True) as db:
            for key in db.keys(self.pattern):
                value = db.get(key)
                if isinstance(value, bytes):
                    try:
                        value = value.decode("utf-8")
                    except UnicodeDecodeError:
                        continue
                if isinstance(value, str):
                    yield Document(page_content=value,
                                   metadata={"source": self.path, "key": key})


# ---------------------------------------------------------------------------
# Storage surfaces beside the vector store: record manager, byte store, caches.
#
# Each opens its own SynaDB handle on the file (several handles on one file
# work independently, in one process or many) and keeps its records under its
# own key prefix, so a RAG app can hold its vectors, its indexing records,
# its parent documents and its LLM cache in one file.

_GLOB_SPECIAL = re.compile(r"([*?\[])")
_DIMS = struct.Struct("<I")
_CLOCK = struct.Struct("<d")

#: The clock the record manager reads; tests stand in for it.
_now = time.time


def _glob_literal(text: str) -> str:
    # keys(pattern) takes a glob; a namespace or prefix holding * ? [ must
    # match only itself.
    return _GLOB_SPECIAL.sub(r"[\1]", text)


def _namespace_part(what: str, namespace: object) -> str:
    """``namespace`` as one key segment: "/" and "%" are %-escaped, so that
    namespace "a" never sees the keys of namespace "a/b"."""
    if not isinstance(namespace, str) or not namespace or "\0" in namespace:
        raise errors.InvalidArgument(
            f"{what} must be a non-empty str without NUL, not {namespace!r:.80}")
    return namespace.replace("%", "%25").replace("/", "%2F")


def _digest(text: str) -> str:
    # Prompts and llm_strings can be longer than a key may be (1 KiB); the
    # record keeps the text itself, and lookups compare it, so a collision
    # is a miss, never a wrong answer.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _storable(name: str) -> bool:
    try:
        Storage.check_key(name)
    except errors.SynaError:
        return False
    return True


def _dump_generations(return_val: Sequence[Generation]) -> list[str]:
    for gen in return_val:
        if not isinstance(gen, Generation):
            raise errors.InvalidType(
                f"a cache holds Generations, not {type(gen).__name__}: {gen!r:.80}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangChainBetaWarning)
        return [_lc_dumps(gen) for gen in return_val]


def _load_generations(raw: Sequence[str]) -> list[Generation]:
    # Only langchain_core's own classes may come back (never arbitrary
    # objects): the file may have been written by someone else.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangChainBetaWarning)
        return [_lc_loads(s, allowed_objects="core") for s in raw]


class _Handle:
    """Lifecycle shared by the surfaces: one SynaDB handle on ``path``."""

    _db: SynaDB
    path: str

    def _open(self, path: str | os.PathLike[str]) -> None:
        self._db = SynaDB(path)
        self.path = self._db.path

    def close(self) -> None:
        """Close this handle on the file (others stay open)."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _delete_all(self, names: Sequence[str]) -> None:
        if not names:
            return
        with self._db.batch(sync=False):
            for name in names:
                self._db.delete(name)


class SynaRecordManager(_Handle, RecordManager):
    """LangChain's indexing record manager, kept in a synadb file.

    ``langchain_core.indexing.index()`` uses it to remember which documents
    it wrote to a vector store (by content hash), so that re-indexing skips
    unchanged documents and cleanup (``"incremental"``, ``"full"``,
    ``"scoped_full"``) deletes the ones that went away.  Each record is one
    latest-only value ``{"t": updated_at, "g": group_id}`` under
    ``__lc_rm__/<namespace>/<key>``, so the records can live in the same file
    as the :class:`SynaVectorStore` they describe; another process sees them
    as soon as they are written.

    ``get_time()`` is the wall clock, made strictly increasing: never below a
    time this handle returned, nor below the last ``update`` of any process
    (kept under ``__lc_rm_clock__/<namespace>``).  ``index()`` relies on it:
    with a clock that stepped back, a document written in this run could look
    older than the run's start and be cleaned up.

    Args:
        namespace: names this set of records (LangChain's convention is
            ``"<vectorstore kind>/<collection>"``).
        path: the database file (created if missing).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "rag.db")
        >>> with SynaRecordManager("docs", path) as rm:
        ...     rm.update(["a", "b"], group_ids=["s1", "s2"])
        ...     rm.exists(["a", "z"]), rm.list_keys(group_ids=["s2"])
        ([True, False], ['b'])
    """

    def __init__(self, namespace: str, path: str | os.PathLike[str]) -> None:
        part = _namespace_part("namespace", namespace)
        super().__init__(namespace)
        self._prefix = RECORD_MANAGER_PREFIX + part + "/"
        self._pattern = _glob_literal(self._prefix) + "*"
        self._clock_key = RECORD_MANAGER_CLOCK_PREFIX + part
        self._last = 0.0
        self._clock_lock = threading.Lock()
        self._open(path)

    def __repr__(self) -> str:
        return f"SynaRecordManager({self.namespace!r}, {self.path!r})"

    def _name(self, key: object) -> str:
        if not isinstance(key, str):
            raise errors.InvalidKeyType(f"record keys are str, not {type(key).__name__}: "
                                        f"{key!r:.80}")
        return self._prefix + key

    # -------------------------------------------------------------- schema
    def create_schema(self) -> None:
        """Nothing to create: the records are keys of the file."""

    async def acreate_schema(self) -> None:
        """Nothing to create: the records are keys of the file."""

    # --------------------------------------------------------------- clock
    def _stored_clock(self) -> float:
        raw = self._db.get(self._clock_key)
        if isinstance(raw, bytes) and len(raw) == _CLOCK.size:
            return float(_CLOCK.unpack(raw)[0])
        return 0.0

    def get_time(self) -> float:
        """Seconds since the epoch, strictly above every time this handle
        returned and every ``update`` recorded in the file."""
        floor = max(self._stored_clock(), self._last)
        with self._clock_lock:
            t = max(_now(), math.nextafter(max(floor, self._last), math.inf))
            self._last = t
            return t

    async def aget_time(self) -> float:
        return await asyncio.to_thread(self.get_time)

    # --------------------------------------------------------------- write
    def update(self, keys: Sequence[str], *, group_ids: Sequence[str | None] | None = None,
               time_at_least: float | None = None) -> None:
        """Upsert ``keys`` (all or nothing), stamped with ``get_time()``.

        Args:
            keys: record keys.
            group_ids: one group id (or None) per key; ``index()`` passes the
                source id of each document.
            time_at_least: the stamp must not be below this (``index()``
                passes the start of its run).

        Raises:
            InvalidArgument: ``group_ids`` has the wrong length, or
                ``time_at_least`` is later than the clock (a ValueError, as
                LangChain's record managers raise).
        """
        keys = list(keys)
        groups = [None] * len(keys) if group_ids is None else list(group_ids)
        if len(groups) != len(keys):
            raise errors.InvalidArgument(
                f"Length of keys must match length of group_ids: {len(keys)} keys, "
                f"{len(groups)} group_ids")
        for g in groups:
            if g is not None and not isinstance(g, str):
                raise errors.InvalidType(f"group ids are str or None, not {g!r:.80}")
        names = [self._name(k) for k in keys]
        for name in names:
            Storage.check_key(name)
        if not names:
            return
        # The batch holds the file's writer lock from its start, so reading
        # the stored clock and writing the new one is one step for every
        # process: two processes' updates never share or invert stamps.
        with self._db.batch():
            now = self.get_time()
            if time_at_least is not None and time_at_least > now:
                raise errors.InvalidArgument(
                    f"time_at_least ({time_at_least}) is later than the clock ({now}): "
                    "the clocks of the indexing hosts disagree")
            items: list[tuple[str, Any]] = [
                (name, json.dumps({"t": now, "g": g}).encode("utf-8"))
                for name, g in zip(names, groups)]
            items.append((self._clock_key, _CLOCK.pack(now)))
            self._db.storage.put_blobs(items, keep_history=False)

    async def aupdate(self, keys: Sequence[str], *,
                      group_ids: Sequence[str | None] | None = None,
                      time_at_least: float | None = None) -> None:
        await asyncio.to_thread(self.update, keys, group_ids=group_ids,
                                time_at_least=time_at_least)

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete these records (all or nothing); missing ones are ignored."""
        names = [self._name(k) for k in keys]
        self._delete_all([n for n in names if _storable(n)])

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_keys, keys)

    # ---------------------------------------------------------------- read
    def exists(self, keys: Sequence[str]) -> list[bool]:
        """Whether each key has a record."""
        names = [self._name(k) for k in keys]
        return [_storable(n) and self._db.exists(n) for n in names]

    async def aexists(self, keys: Sequence[str]) -> list[bool]:
        return await asyncio.to_thread(self.exists, keys)

    def list_keys(self, *, before: float | None = None, after: float | None = None,
                  group_ids: Sequence[str] | None = None,
                  limit: int | None = None) -> list[str]:
        """Keys whose record matches every filter given, oldest key first.

        Args:
            before: updated strictly before this time.
            after: updated strictly after this time.
            group_ids: in one of these groups (empty or None: any group).
            limit: at most this many keys (None or 0: all).
        """
        names = self._db.keys(self._pattern)
        wanted = set(group_ids) if group_ids else None
        out: list[str] = []
        # Values are read in chunks: index()'s cleanup asks for ``limit``
        # keys at a time and should not read every record to get them.
        chunks = (zip(names[i:i + 1024], self._db.get_many(names[i:i + 1024]))
                  for i in range(0, len(names), 1024))
        for name, raw in (pair for chunk in chunks for pair in chunk):
            if not isinstance(raw, bytes):
                continue  # deleted since keys() (or not ours)
            rec = json.loads(raw)
            t = rec["t"]
            if before is not None and t >= before:
                continue
            if after is not None and t <= after:
                continue
            if wanted is not None and rec["g"] not in wanted:
                continue
            out.append(name[len(self._prefix):])
            if limit and len(out) >= limit:
                break
        return out

    async def alist_keys(self, *, before: float | None = None, after: float | None = None,
                         group_ids: Sequence[str] | None = None,
                         limit: int | None = None) -> list[str]:
        return await asyncio.to_thread(self.list_keys, before=before, after=after,
                                       group_ids=group_ids, limit=limit)


class SynaByteStore(_Handle, ByteStore):
    """A LangChain ``ByteStore`` (str keys, bytes values) in a synadb file.

    Each value is one latest-only bytes record under
    ``__lc_bs__/<namespace>/<key>``, so ``mset`` of a key that exists
    replaces it and compaction drops the old copy.  Use it for
    ``ParentDocumentRetriever``'s parent documents (through
    ``create_kv_docstore``) or ``CacheBackedEmbeddings``, in the same file
    as the vectors.  The ``a*`` methods run these in an executor.

    Args:
        path: the database file (created if missing).
        namespace: several stores can share a file under different names.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "rag.db")
        >>> with SynaByteStore(path) as bs:
        ...     bs.mset([("k1", b"v1"), ("k2", b"v2")])
        ...     bs.mget(["k1", "nope"]), sorted(bs.yield_keys(prefix="k"))
        ([b'v1', None], ['k1', 'k2'])
    """

    def __init__(self, path: str | os.PathLike[str], namespace: str = "default") -> None:
        self.namespace = namespace
        self._prefix = BYTE_STORE_PREFIX + _namespace_part("namespace", namespace) + "/"
        self._open(path)

    def __repr__(self) -> str:
        return f"SynaByteStore({self.path!r}, namespace={self.namespace!r})"

    def _name(self, key: object) -> str:
        if not isinstance(key, str):
            raise errors.InvalidKeyType(f"keys are str, not {type(key).__name__}: {key!r:.80}")
        return self._prefix + key

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, None where absent."""
        names = [self._name(k) for k in keys]
        ok = [n for n in names if _storable(n)]
        got = dict(zip(ok, self._db.get_many(ok)))
        return [v if isinstance(v := got.get(n), bytes) else None for n in names]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Set these keys (all or nothing).

        Raises:
            InvalidType: a value is not bytes.
            InvalidKey: a key is too long (1 KiB with the prefix) or holds NUL.
        """
        items: list[tuple[str, Any]] = []
        for key, value in key_value_pairs:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise errors.InvalidType(
                    f"{key!r}: a ByteStore holds bytes, not {type(value).__name__}")
            items.append((self._name(key), bytes(value)))
        self._db.storage.put_blobs(items, keep_history=False)

    def mdelete(self, keys: Sequence[str]) -> None:
        """Delete these keys (all or nothing); missing ones are ignored."""
        names = [self._name(k) for k in keys]
        self._delete_all([n for n in names if _storable(n)])

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """The keys (starting with ``prefix``, if given), oldest first."""
        pattern = _glob_literal(self._prefix + (prefix or "")) + "*"
        cut = len(self._prefix)
        for name in self._db.keys(pattern):
            yield name[cut:]


class SynaCache(_Handle, BaseCache):
    """An exact-match LLM cache in a synadb file, for ``set_llm_cache``.

    A hit needs the same prompt and the same ``llm_string`` (the model and
    its parameters).  Each entry is one latest-only record under
    ``__lc_cache__/<hash of llm_string>/<hash of prompt>`` that keeps both
    texts and the generations (``langchain_core.load`` JSON, read back with
    only langchain_core's classes allowed).  Every process using the file
    shares the cache, and it survives restarts.

    Args:
        path: the database file (created if missing).

    Example:
        >>> import os, tempfile
        >>> from langchain_core.outputs import Generation
        >>> path = os.path.join(tempfile.mkdtemp(), "rag.db")
        >>> with SynaCache(path) as cache:
        ...     cache.update("2+2?", "fake-llm", [Generation(text="4")])
        ...     cache.lookup("2+2?", "fake-llm"), cache.lookup("2+2?", "other-llm")
        ([Generation(text='4')], None)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._open(path)

    def __repr__(self) -> str:
        return f"SynaCache({self.path!r})"

    @staticmethod
    def _key(prompt: str, llm_string: str) -> str:
        return f"{CACHE_PREFIX}{_digest(llm_string)}/{_digest(prompt)}"

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations cached for exactly this prompt and llm_string."""
        raw = self._db.get(self._key(prompt, llm_string))
        if not isinstance(raw, bytes):
            return None
        rec = json.loads(raw)
        if rec["p"] != prompt or rec["l"] != llm_string:
            return None  # a hash collision: a miss, not someone else's answer
        return _load_generations(rec["g"])

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Cache ``return_val`` (a list of Generations), replacing any entry."""
        rec = {"p": prompt, "l": llm_string, "g": _dump_generations(return_val)}
        self._db.storage.put_blobs(
            [(self._key(prompt, llm_string), json.dumps(rec).encode("utf-8"))],
            keep_history=False)

    def clear(self, **kwargs: Any) -> None:
        """Forget every entry (of every process using the file)."""
        self._delete_all(self._db.keys(_glob_literal(CACHE_PREFIX) + "*"))


class SynaSemanticCache(_Handle, BaseCache):
    """An LLM cache that answers prompts *similar* to a cached one.

    Each prompt is embedded; ``lookup`` returns the generations of the most
    similar cached prompt of the same ``llm_string`` if their cosine
    similarity is at least ``score_threshold``.  Entries are latest-only
    records under ``__lc_scache__/<hash of llm_string>/<hash of prompt>``
    (dimensions, the unit float32 vector, then the texts and generations as
    JSON).  Each handle keeps the vectors in memory and catches up with other
    processes' writes on every lookup by reading only what was written since.

    Why not :class:`synadb.vectors.VectorStore`: a file holds one vector
    store (its ``v/`` keys, one dimension and metric), which is the
    :class:`SynaVectorStore`'s; cache entries there would show up in document
    searches and need the same embedding size.  Caches are small, so an exact
    scan of one model's entries costs less than the embedding call.

    Args:
        path: the database file (created if missing).
        embedding: embeds prompts (``embed_query``).
        score_threshold: the least cosine similarity that counts as a hit.

    Example:
        >>> import os, tempfile
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> from langchain_core.outputs import Generation
        >>> path = os.path.join(tempfile.mkdtemp(), "rag.db")
        >>> with SynaSemanticCache(path, DeterministicFakeEmbedding(size=8)) as cache:
        ...     cache.update("2+2?", "llm", [Generation(text="4")])
        ...     cache.lookup("2+2?", "llm"), cache.lookup("2+2?", "other")
        ([Generation(text='4')], None)
    """

    def __init__(self, path: str | os.PathLike[str], embedding: Embeddings,
                 score_threshold: float = 0.95) -> None:
        if embedding is None:
            raise errors.InvalidArgument("SynaSemanticCache needs an embedding (an Embeddings)")
        if (isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float))
                or not -1.0 <= score_threshold <= 1.0):
            raise errors.InvalidArgument(
                f"score_threshold is a cosine similarity in [-1, 1], not {score_threshold!r}")
        self.embedding = embedding
        self.score_threshold = float(score_threshold)
        self._lock = threading.RLock()
        # llm digest -> {record key: (unit vector, record)}, and the stacked
        # matrix of each llm's vectors, rebuilt when its entries change.
        self._entries: dict[str, dict[str, tuple[np.ndarray, dict[str, Any]]]] = {}
        self._mats: dict[str, tuple[list[str], np.ndarray]] = {}
        self._salt: int | None = None
        self._end = 0
        self._open(path)

    def __repr__(self) -> str:
        return f"SynaSemanticCache({self.path!r}, score_threshold={self.score_threshold})"

    @staticmethod
    def _key(prompt: str, llm_string: str) -> str:
        return f"{SEMANTIC_CACHE_PREFIX}{_digest(llm_string)}/{_digest(prompt)}"

    def _embed(self, prompt: str) -> np.ndarray | None:
        vec = np.asarray(self.embedding.embed_query(prompt), dtype=np.float32).ravel()
        norm = float(np.linalg.norm(vec))
        if not vec.size or not math.isfinite(norm) or norm == 0.0:
            return None  # no direction: nothing is similar to it
        return vec / norm

    @staticmethod
    def _encode(vec: np.ndarray, rec: dict[str, Any]) -> tuple[bytes, np.ndarray, bytes]:
        return (_DIMS.pack(len(vec)), np.ascontiguousarray(vec, dtype="<f4"),
                json.dumps(rec).encode("utf-8"))

    def _load(self, names: Iterable[str]) -> None:
        names = [n for n in names if n.startswith(SEMANTIC_CACHE_PREFIX)]
        if not names:
            return
        for name, raw in zip(names, self._db.get_many(names)):
            llm = name[len(SEMANTIC_CACHE_PREFIX):].split("/", 1)[0]
            group = self._entries.setdefault(llm, {})
            self._mats.pop(llm, None)
            if not isinstance(raw, bytes) or len(raw) < _DIMS.size:
                group.pop(name, None)
                continue
            (dims,) = _DIMS.unpack_from(raw)
            start = _DIMS.size + 4 * dims
            vec = np.frombuffer(raw, dtype="<f4", count=dims, offset=_DIMS.size).astype(np.float32)
            group[name] = (vec, json.loads(raw[start:]))

    def _refresh(self) -> None:
        storage = self._db.storage
        salt = storage.salt()
        if salt != self._salt:
            # First use, or compaction replaced the file: log offsets are
            # void, read everything.  The end is taken first, so a write
            # racing with keys() is read again next time, never missed.
            end = storage.log_end()
            self._entries.clear()
            self._mats.clear()
            self._load(self._db.keys(_glob_literal(SEMANTIC_CACHE_PREFIX) + "*"))
            self._salt, self._end = salt, end
            return
        changed, end = storage.keys_written_since(self._end)
        self._load(changed)
        self._end = end

    def _matrix(self, llm: str) -> tuple[list[str], np.ndarray] | None:
        got = self._mats.get(llm)
        if got is None:
            group = self._entries.get(llm)
            if not group:
                return None
            names = list(group)
            dims = {len(group[n][0]) for n in names}
            if len(dims) != 1:  # the embedding changed size: keep the newest size
                size = len(group[names[-1]][0])
                names = [n for n in names if len(group[n][0]) == size]
            got = (names, np.stack([group[n][0] for n in names]))
            self._mats[llm] = got
        return got

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations of the most similar cached prompt of this
        ``llm_string``, if its cosine similarity reaches the threshold."""
        q = self._embed(prompt)
        if q is None:
            return None
        llm = _digest(llm_string)
        with self._lock:
            self._refresh()
            got = self._matrix(llm)
            if got is None:
                return None
            names, mat = got
            if mat.shape[1] != len(q):
                return None
            sims = mat @ q
            order = np.argsort(-sims, kind="stable")
            for i in order:
                if sims[i] < self.score_threshold:
                    break
                rec = self._entries[llm][names[i]][1]
                if rec["l"] == llm_string:  # else a digest collision: skip it
                    return _load_generations(rec["g"])
        return None

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Cache ``return_val`` under ``prompt``'s embedding."""
        rec = {"p": prompt, "l": llm_string, "g": _dump_generations(return_val)}
        vec = self._embed(prompt)
        if vec is None:
            return  # a prompt without direction could never be looked up
        self._db.storage.put_blobs([(self._key(prompt, llm_string), self._encode(vec, rec))],
                                   keep_history=False)

    def clear(self, **kwargs: Any) -> None:
        """Forget every entry, or only those of ``llm_string=...``."""
        llm_string = kwargs.get("llm_string")
        prefix = SEMANTIC_CACHE_PREFIX
        if llm_string is not None:
            prefix += _digest(llm_string) + "/"
        self._delete_all(self._db.keys(_glob_literal(prefix) + "*"))
