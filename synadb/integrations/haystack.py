"""Haystack 2.x adapters: a document store and an embedding retriever.

Install with ``pip install 'synadb[haystack]'``.  Only this module imports
``haystack``; ``import synadb`` does not.

Setup (the file is created if missing; ``embedding_dim`` may stay ``None``
until the first embedding arrives)::

    from haystack import Document
    from synadb.integrations.haystack import SynaDocumentStore, SynaEmbeddingRetriever

    store = SynaDocumentStore(path="rag.db", embedding_dim=384, metric="cosine")

Write (``policy`` is a :class:`DuplicatePolicy`; ``NONE`` means ``FAIL``)::

    store.write_documents([Document(content="one file", meta={"topic": "db"},
                                    embedding=[...])])

Filter (Haystack 2.x filter dicts, evaluated with Haystack's own
``document_matches_filter`` so the semantics are exactly Haystack's)::

    store.filter_documents({"field": "meta.topic", "operator": "==", "value": "db"})
    store.count_documents_by_filter(...); store.delete_by_filter(...)
    store.update_by_filter(filters, meta={"reviewed": True})

Search (``Document.score`` is a similarity, higher is closer; see
:meth:`SynaDocumentStore.query_by_embedding`)::

    store.query_by_embedding(query_embedding, top_k=5, filters=...)
    SynaEmbeddingRetriever(store, top_k=5).run(query_embedding=...)["documents"]

Keyword (BM25) and hybrid search, over the documents' ``content``::

    store.bm25_retrieval("query text", top_k=5, filters=...)
    SynaBM25Retriever(store, top_k=5).run(query="...")["documents"]
    SynaHybridRetriever(store, top_k=5, fusion="rrf").run(query="...", query_embedding=[...])

Chat history (haystack-experimental's ``ChatMessageStore`` protocol, for its
``ChatMessageWriter`` / ``ChatMessageRetriever`` and Agent memory), in the
same file::

    chats = SynaChatMessageStore(path="rag.db")
    chats.write_messages("session-1", [ChatMessage.from_user("hi")])
    chats.retrieve_messages("session-1", last_k=5)   # the last 5 rounds

Pipelines saved with these components load with
``Pipeline.loads(text, allowed_modules=["synadb.integrations.haystack"])``:
Haystack trusts only its own modules by default, and this module does not
add itself, since a pipeline file chooses which path gets opened.

Async: every ``*_async`` method runs its sync twin in a worker thread (the
underlying :class:`~synadb.vectors.store.VectorStore` is thread-safe).

Storage: one :class:`~synadb.vectors.store.VectorStore` record per document,
keyed by ``Document.id``.  The embedding is the record's vector (float32;
``None`` gives a metadata-only record that search never returns), and the
rest of the Document is the record's JSON metadata, laid out as
:data:`RECORD_FIELDS` describe.  ``score`` is never stored.  The content of
every document that has one is also in a
:class:`~synadb.fulltext.FullTextIndex` named :data:`FULLTEXT_INDEX` in the
same file, written in the same all-or-nothing batch as the records.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import errors
from ..fulltext import FullTextIndex, rrf, weighted_sum
from ..db import SynaDB
from ..vectors.store import VectorStore

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.dataclasses import ByteStream, ChatMessage, ChatRole, SparseEmbedding
    from haystack.document_stores.errors import DuplicateDocumentError
    from haystack.document_stores.types import (
        DuplicatePolicy,
        FilterPolicy,
        apply_filter_policy,
    )
    from haystack.errors import FilterError
    from haystack.utils.filters import document_matches_filter
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency(
        "haystack-ai", "haystack", "synadb.integrations.haystack") from e

__all__ = ["RECORD_FIELDS", "RECORD_VERSION", "SynaBM25Retriever", "SynaChatMessageStore",
           "SynaDocumentStore", "SynaEmbeddingRetriever", "SynaHybridRetriever"]

#: Layout version of a document record, stored under ``"_haystack"`` so that
#: a later layout can recognise (and upgrade) records written by this one.
RECORD_VERSION = 1
#: What a record's metadata holds:
#:
#: - ``_haystack``: :data:`RECORD_VERSION`
#: - ``id``, ``content``, ``meta``: as in the Document
#: - ``blob``: ``{"data_b64", "meta", "mime_type"}`` or None (base64, not
#:   Haystack's list of ints, which is four times larger as JSON)
#: - ``sparse_embedding``: ``SparseEmbedding.to_dict()`` or None
#: - ``embedding`` (only when the vector cannot hold it exactly): the
#:   embedding as given.  Vectors are float32; most embedders produce
#:   float32 values, which round-trip through the vector bit for bit, so
#:   this copy is only written for genuinely float64 (or empty) embeddings.
#:   Without it, a Document read back would differ from the one written.
RECORD_FIELDS = ("_haystack", "id", "content", "meta", "blob", "sparse_embedding", "embedding")
_VERSION_KEY = "_haystack"
# Where the other adapters keep a record's text (LangChain's page content,
# LlamaIndex's node text).
_FOREIGN_TEXT_KEYS = ("_page_content", "text", "content")

# Scaling of raw dot products before the logistic, as Haystack's in-memory
# store does, so that scale_score=True means the same thing on both.
DOT_PRODUCT_SCALING_FACTOR = 100.0
# Scaling of BM25 scores before the logistic, as Haystack's in-memory store does.
BM25_SCALING_FACTOR = 8.0
#: Name of the :class:`~synadb.fulltext.FullTextIndex` of documents' content.
FULLTEXT_INDEX = "haystack"
FUSIONS = ("rrf", "weighted")

_COMPARISON = frozenset({"==", "!=", ">", ">=", "<", "<=", "in", "not in"})
_LOGICAL = frozenset({"AND", "OR", "NOT"})
_ORDERING = frozenset({">", ">=", "<", "<="})


# ------------------------------------------------------------------ filters
def _check_filters(filters: Any) -> set[str]:
    """Reject a malformed filter before touching any record; return root fields.

    Haystack's matcher only notices a missing key or an unknown operator
    when it meets a document, so a bad filter on an empty store would
    "work".  Checking up front makes every store answer alike.
    """
    if not isinstance(filters, Mapping):
        raise FilterError(f"a filter is a dict, not {type(filters).__name__}: {filters!r}")
    if "field" in filters:
        for key in ("operator", "value"):
            if key not in filters:
                raise FilterError(f"'{key}' key missing in {dict(filters)}")
        field, op, value = filters["field"], filters["operator"], filters["value"]
        if not isinstance(field, str) or not field:
            raise FilterError(f"'field' must be a non-empty str in {dict(filters)}")
        if op not in _COMPARISON:
            raise FilterError(f"Unknown comparison operator '{op}'. "
                              f"Valid operators are: {sorted(_COMPARISON)}")
        if op in ("in", "not in") and not isinstance(value, list):
            raise FilterError(f"Filter value must be a `list` when using operator '{op}', "
                              f"received type '{type(value)}'")
        if op in _ORDERING and isinstance(value, list):
            raise FilterError(f"Filter value can't be of type {type(value)} using operator '{op}'")
        return {field.split(".", 1)[0]}
    for key in ("operator", "conditions"):
        if key not in filters:
            raise FilterError(f"'{key}' key missing in {dict(filters)}")
    op, conditions = filters["operator"], filters["conditions"]
    if op not in _LOGICAL:
        raise FilterError(f"Unknown logical operator '{op}'. Valid operators are: {sorted(_LOGICAL)}")
    if not isinstance(conditions, list):
        raise FilterError(f"'conditions' must be a list in {dict(filters)}")
    roots: set[str] = set()
    for cond in conditions:
        roots |= _check_filters(cond)
    return roots


class _Matcher:
    """A predicate over our record metadata that applies a Haystack filter.

    Each record is turned back into a Document (about 5 µs) and handed to
    ``document_matches_filter``: the filter semantics (dates, None, legacy
    field names) are Haystack's own, not a translation that could drift.
    A FilterError raised mid-search (say ``meta.number > "1"``) is kept and
    re-raised by :meth:`raise_error`, because the predicate may run inside
    hnswlib's C++ filter callback, where an exception must not escape.
    """

    def __init__(self, filters: Mapping[str, Any]) -> None:
        roots = _check_filters(filters)
        self.filters = dict(filters)
        self.error: FilterError | None = None
        # Decoding a blob or a sparse embedding per record is wasted unless
        # the filter looks at it.
        self.full = bool(roots & {"blob", "sparse_embedding", "embedding", "score"})

    def __call__(self, rec: Mapping[str, Any]) -> bool:
        if self.error is not None:
            return False
        try:
            doc = _document(rec, None, full=self.full)
            return bool(document_matches_filter(self.filters, doc))
        except FilterError as e:
            self.error = e
            return False

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _matcher(filters: Mapping[str, Any] | None) -> _Matcher | None:
    if filters is None:
        return None
    if not isinstance(filters, Mapping):
        raise FilterError(f"a filter is a dict, not {type(filters).__name__}: {filters!r}")
    return _Matcher(filters) if filters else None


def _required_matcher(filters: Mapping[str, Any] | None, what: str) -> _Matcher:
    m = _matcher(filters)
    if m is None:
        # An empty filter matching everything would turn a typo into a wipe;
        # delete_all_documents() says so on purpose.
        raise FilterError(f"{what} needs a non-empty filter")
    return m


# ------------------------------------------------------------------ records
def _record(doc: Document) -> tuple[dict[str, Any], np.ndarray | None]:
    """Split a Document into our record metadata and its vector."""
    rec: dict[str, Any] = {_VERSION_KEY: RECORD_VERSION, "id": doc.id, "content": doc.content,
                           "meta": doc.meta, "blob": None, "sparse_embedding": None}
    if doc.blob is not None:
        rec["blob"] = {"data_b64": base64.b64encode(doc.blob.data).decode("ascii"),
                       "meta": doc.blob.meta, "mime_type": doc.blob.mime_type}
    if doc.sparse_embedding is not None:
        rec["sparse_embedding"] = doc.sparse_embedding.to_dict()
    vec = None
    if doc.embedding is not None:
        try:
            exact = np.asarray(doc.embedding, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgument(
                f"document {doc.id!r}: the embedding is not a list of numbers") from e
        if exact.ndim != 1:
            raise errors.DimensionMismatch(
                f"document {doc.id!r}: the embedding must be flat, got shape {exact.shape}")
        if exact.size:
            with np.errstate(over="ignore"):
                vec = exact.astype(np.float32)
        if vec is None or not np.array_equal(vec.astype(np.float64), exact):
            rec["embedding"] = [float(x) for x in exact]
    return rec, vec


def _document(rec: Mapping[str, Any], vector: np.ndarray | None, *, full: bool = True,
              score: float | None = None, key: str | None = None) -> Document:
    """Rebuild a Document from its record (``full=False`` skips blob and sparse).

    A record another adapter wrote in the same file (LangChain's, LlamaIndex's,
    or a bare VectorStore insert) has no Haystack layout: it reads as a
    Document whose id is its key, whose content is its text and whose meta
    is the rest of its metadata, so one file's vectors serve every framework.
    """
    if _VERSION_KEY not in rec:
        text = next((rec[k] for k in _FOREIGN_TEXT_KEYS if isinstance(rec.get(k), str)), None)
        meta = {k: v for k, v in rec.items() if k not in _FOREIGN_TEXT_KEYS
                and not k.startswith("_")}
        emb = vector.tolist() if full and vector is not None else None
        return Document(id=key or str(rec.get("id") or ""), content=text, meta=meta,
                        score=score, embedding=emb)
    blob = sparse = None
    embedding = None
    if full:
        if rec.get("blob") is not None:
            b = rec["blob"]
            blob = ByteStream(data=base64.b64decode(b["data_b64"]), meta=b.get("meta") or {},
                              mime_type=b.get("mime_type"))
        if rec.get("sparse_embedding") is not None:
            sparse = SparseEmbedding.from_dict(rec["sparse_embedding"])
        if "embedding" in rec:
            embedding = rec["embedding"]
        elif vector is not None:
            embedding = vector.tolist()
    return Document(id=rec["id"], content=rec.get("content"), blob=blob, meta=rec.get("meta") or {},
                    score=score, embedding=embedding, sparse_embedding=sparse)


def _expit(x: float) -> float:
    """The logistic, without overflowing exp()."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _meta_key(field: str) -> str:
    return field.removeprefix("meta.")


def _value_id(value: Any) -> tuple[str, str]:
    # 1, 1.0, True and "1" are four values (they are equal or print alike
    # in Python), and lists/dicts are values too: identify by type + JSON.
    return type(value).__name__, json.dumps(value, sort_keys=True, default=str)


# -------------------------------------------------------------------- store
class SynaDocumentStore:
    """A Haystack 2.x DocumentStore in one synadb file.

    Implements the ``DocumentStore`` protocol (``count_documents``,
    ``filter_documents``, ``write_documents``, ``delete_documents``,
    ``to_dict``/``from_dict``) plus ``delete_all_documents``,
    ``delete_by_filter``, ``update_by_filter``, ``count_documents_by_filter``,
    the metadata helpers, ``query_by_embedding`` and an ``*_async`` twin of
    each.  Documents are returned in the order they were last written.

    Args:
        path: the database file (created if missing).
        embedding_dim: embedding size; ``None`` takes it from the file or the
            first embedding written.
        metric: ``"cosine"``, ``"dot_product"`` or ``"euclidean"``.
        m, ef_construction, ef_search, index_threshold: HNSW knobs, passed to
            :class:`~synadb.vectors.store.VectorStore`.
        sync_on_write: fsync after every write.
        progress: tqdm bars on long operations.

    Raises:
        DimensionMismatch: ``embedding_dim`` disagrees with the file.
        InvalidArgument: an unknown metric.

    >>> import os, tempfile
    >>> store = SynaDocumentStore(os.path.join(tempfile.mkdtemp(), "docs.db"))
    >>> store.write_documents([Document(id="a", content="east", embedding=[1.0, 0.0]),
    ...                        Document(id="b", content="north", embedding=[0.0, 1.0])])
    2
    >>> [(d.id, round(d.score, 3)) for d in store.query_by_embedding([0.9, 0.1], top_k=2)]
    [('a', 0.994), ('b', 0.11)]
    >>> store.close()
    """

    def __init__(self, path: str | os.PathLike[str], embedding_dim: int | None = None,
                 metric: str = "cosine", *, m: int = 16, ef_construction: int = 200,
                 ef_search: int = 100, index_threshold: int = 10_000,
                 sync_on_write: bool = False, progress: bool = True) -> None:
        self.path = os.fspath(path)
        self._store = VectorStore(self.path, dimensions=embedding_dim, metric=metric, m=m,
                                  ef_construction=ef_construction, ef_search=ef_search,
                                  index_threshold=index_threshold, sync_on_write=sync_on_write,
                                  progress=progress)
        self.metric = self._store.metric
        self._init = {"path": self.path, "embedding_dim": embedding_dim, "metric": self.metric,
                      "m": m, "ef_construction": ef_construction, "ef_search": ef_search,
                      "index_threshold": index_threshold, "sync_on_write": sync_on_write,
                      "progress": progress}
        # The VectorStore locks each call; this lock makes our read-then-write
        # steps (duplicate checks, update_by_filter) atomic between threads.
        self._lock = threading.RLock()
        # The content index shares the VectorStore's file handle
        # (VectorStore.db), so that one batch writes a document's record and
        # its terms, all or nothing (see _writing for the locks' order).
        self._db = self._store.db
        try:
            self._fts = FullTextIndex(self._db, FULLTEXT_INDEX)
            self._backfill()
        except BaseException:
            self._store.close()
            raise

    def _backfill(self) -> None:
        """Index the content of documents written before this store kept a
        full-text index (a file from an older synadb): once, on open."""
        if len(self._fts) or not len(self._store):
            return
        ids, texts = [], []
        for key in self._store.find():
            rec = self._store.get_metadata(key)
            if rec is not None and isinstance(rec.get("content"), str):
                ids.append(key)
                texts.append(rec["content"])
        if ids:
            with self._writing():
                self._fts.add(ids, texts)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One all-or-nothing batch for the records and the content index.

        Inside it, the content index is written first and the VectorStore
        last: the VectorStore updates its memory as soon as its own (nested)
        write returns, so nothing that could fail may follow it, while the
        content index only reads what the file commits.  Locks in one
        order: ours, the VectorStore's, then the handle's (the batch);
        VectorStore readers take theirs before the handle's, so taking the
        handle's first here could deadlock against them.
        """
        with self._lock, self._store.transaction():
            yield
        self._fts.checkpoint()  # the batch is over: snapshot if much changed

    @property
    def fulltext_index(self) -> FullTextIndex:
        """The :class:`~synadb.fulltext.FullTextIndex` of the documents' content."""
        return self._fts

    def _index_content(self, docs: Iterable[Document]) -> None:
        """Put these documents' content in the full-text index (inside _writing)."""
        texts: dict[str, str] = {}
        gone: list[str] = []
        for doc in docs:
            if doc.content is None:
                gone.append(doc.id)
            else:
                texts[doc.id] = doc.content
        if texts:
            self._fts.add(list(texts), list(texts.values()))
        if gone:
            self._fts.delete(gone)

    @property
    def embedding_dim(self) -> int | None:
        """The embedding size, once known."""
        return self._store.dimensions

    @property
    def vector_store(self) -> VectorStore:
        """The underlying :class:`~synadb.vectors.store.VectorStore`."""
        return self._store

    def close(self) -> None:
        """Close the file (idempotent)."""
        try:
            if not self._store.closed:
                self._fts.close()  # may save its snapshot through the shared handle
        finally:
            self._store.close()

    def __enter__(self) -> SynaDocumentStore:  # noqa: PYI034 (typing.Self is 3.11+)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SynaDocumentStore({self.path!r}, metric={self.metric!r})"

    # ------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """Serialize the store's settings (not its documents: they live in the file)."""
        return default_to_dict(self, **self._init)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynaDocumentStore:
        """Open the store that :meth:`to_dict` describes."""
        return default_from_dict(cls, data)

    # ---------------------------------------------------------------- reads
    def _load(self, keys: Iterable[str]) -> list[Document]:
        out = []
        for key in keys:
            rec = self._store.get_metadata(key)
            if rec is None:
                continue  # deleted by another handle since find()
            # get_metadata copies one level only; the Document must not alias
            # the store's in-memory metadata.
            rec = copy.deepcopy(rec)
            vec = None if "embedding" in rec else self._store.get(key)
            out.append(_document(rec, vec, key=key))
        return out

    def _find(self, matcher: _Matcher | None) -> list[str]:
        keys: list[str] = self._store.find(matcher)
        if matcher is not None:
            matcher.raise_error()
        return keys

    def count_documents(self) -> int:
        """How many documents are stored."""
        return len(self._store.keys())

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """The documents matching ``filters`` (all of them for None or ``{}``), with embeddings.

        Raises:
            FilterError: a malformed filter, or values Haystack cannot compare.
        """
        m = _matcher(filters)
        with self._lock:
            return self._load(self._find(m))

    def count_documents_by_filter(self, filters: dict[str, Any] | None) -> int:
        """How many documents match ``filters`` (all of them for None or ``{}``)."""
        return len(self._find(_matcher(filters)))

    def count_unique_metadata_by_filter(self, filters: dict[str, Any] | None,
                                        metadata_fields: list[str]) -> dict[str, int]:
        """For each field (``meta.`` prefix optional), how many distinct non-None values
        the matching documents hold.  Values of different types are distinct (1, 1.0, "1")."""
        m = _matcher(filters)
        with self._lock:
            recs = [self._store.get_metadata(k) for k in self._find(m)]
        result: dict[str, int] = {}
        for field in metadata_fields:
            key = _meta_key(field)
            seen = {_value_id(r["meta"][key]) for r in recs
                    if r is not None and r.get("meta", {}).get(key) is not None}
            result[key] = len(seen)
        return result

    def get_metadata_fields_info(self) -> dict[str, dict[str, str]]:
        """Each metadata field with its type: ``boolean``, ``int``, ``float`` or
        ``keyword`` (str and anything else).  A field holding both ints and
        floats is ``float``; any other mix is ``keyword``."""
        types: dict[str, str] = {}
        with self._lock:
            recs = [self._store.get_metadata(k) for k in self._store.find()]
        for rec in recs:
            for key, value in ((rec or {}).get("meta") or {}).items():
                if value is None:
                    continue
                if isinstance(value, bool):
                    t = "boolean"
                elif isinstance(value, int):
                    t = "int"
                elif isinstance(value, float):
                    t = "float"
                else:
                    t = "keyword"
                old = types.get(key)
                if old is None or old == t:
                    types[key] = t
                elif {old, t} == {"int", "float"}:
                    types[key] = "float"
                else:
                    types[key] = "keyword"
        return {k: {"type": v} for k, v in types.items()}

    def get_metadata_field_min_max(self, metadata_field: str) -> dict[str, Any]:
        """``{"min": ..., "max": ...}`` of a field (``meta.`` prefix optional).

        Numbers (not bools) when the field holds any, else strings; ``None``
        for both when it holds neither.
        """
        key = _meta_key(metadata_field)
        with self._lock:
            recs = [self._store.get_metadata(k) for k in self._store.find()]
        values = [((r or {}).get("meta") or {}).get(key) for r in recs]
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                and not (isinstance(v, float) and math.isnan(v))]
        pool: list[Any] = nums or [v for v in values if isinstance(v, str)]
        if not pool:
            return {"min": None, "max": None}
        return {"min": min(pool), "max": max(pool)}

    def get_metadata_field_unique_values(
            self, metadata_field: str, search_term: str | None = None, from_: int = 0,
            size: int = 10, filters: dict[str, Any] | None = None) -> tuple[list[Any], int]:
        """One page of a field's distinct values, and how many there are in all.

        Args:
            metadata_field: the field (``meta.`` prefix optional).
            search_term: keep values whose text contains it, ignoring case.
            from_, size: the page, in the order of the values' text.
            filters: only look at the documents matching these.
        """
        key = _meta_key(metadata_field)
        m = _matcher(filters)
        with self._lock:
            recs = [self._store.get_metadata(k) for k in self._find(m)]
        unique: dict[tuple[str, str], Any] = {}
        for rec in recs:
            value = ((rec or {}).get("meta") or {}).get(key)
            if value is not None:
                unique.setdefault(_value_id(value), value)
        if search_term:
            needle = search_term.lower()
            unique = {k: v for k, v in unique.items() if needle in str(v).lower()}
        order = sorted(unique, key=lambda k: (str(unique[k]), k))
        return [copy.deepcopy(unique[k]) for k in order[from_:from_ + size]], len(order)

    # --------------------------------------------------------------- writes
    def write_documents(self, documents: list[Document],
                        policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Write documents; returns how many were written.

        ``DuplicatePolicy.NONE`` means ``FAIL``.  Under ``FAIL`` the check covers
        the whole list (ids already stored, and ids repeated in the list)
        before anything is written.  ``SKIP`` keeps the first of repeated ids,
        ``OVERWRITE`` the last (and returns ``len(documents)``).

        Raises:
            ValueError: ``documents`` is not a list of Documents.
            DuplicateDocumentError: a duplicate id under ``FAIL``.
            DimensionMismatch: an embedding of the wrong size.
        """
        if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
            raise ValueError("Please provide a list of Documents.")  # noqa: TRY004
        documents = list(documents)
        if any(not isinstance(d, Document) for d in documents):
            # ValueError, not TypeError: the DocumentStore protocol's tests say so.
            raise ValueError("Please provide a list of Documents.")
        if policy == DuplicatePolicy.NONE:
            policy = DuplicatePolicy.FAIL
        with self._lock:
            existing = set(self._store.keys())
            chosen: dict[str, Document] = {}
            if policy == DuplicatePolicy.OVERWRITE:
                for doc in documents:
                    chosen.pop(doc.id, None)  # the last one's position wins
                    chosen[doc.id] = doc
                written = len(documents)
            else:
                for doc in documents:
                    dup = doc.id in existing or doc.id in chosen
                    if dup and policy == DuplicatePolicy.FAIL:
                        raise DuplicateDocumentError(f"ID '{doc.id}' already exists.")
                    if not dup:
                        chosen[doc.id] = doc
                written = len(chosen)
            items = [(doc.id, *_record(doc)) for doc in chosen.values()]
            if items:
                with self._writing():
                    self._index_content(chosen.values())
                    self._put(items)
        return written

    def _put(self, items: list[tuple[str, dict[str, Any], np.ndarray | None]]) -> None:
        """Write records in order, all or nothing."""
        dims = {len(v) for _, _, v in items if v is not None}
        want = self._store.dimensions
        if len(dims) > 1 or (want is not None and dims and dims != {want}):
            # Checked before writing so that one bad embedding writes nothing.
            raise errors.DimensionMismatch(
                f"embeddings of sizes {sorted(dims)} for a store of "
                f"{want if want is not None else 'one'} dimension(s)")
        if items:
            # One all-or-nothing batch; a None row stores a metadata-only record.
            self._store.insert_batch([k for k, _, _ in items], [v for _, _, v in items],
                                     [r for _, r, _ in items])

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete these ids; ids that are not stored are ignored."""
        if isinstance(document_ids, str):
            raise TypeError("document_ids is a list of ids, not a str")
        ids = list(document_ids)
        with self._writing():
            self._fts.delete([i for i in ids if isinstance(i, str)])
            self._store.delete_many(ids)

    def delete_all_documents(self, recreate_index: bool = False) -> None:
        """Delete every document.

        Args:
            recreate_index: also compact the file, which drops the deleted
                records' bytes and rebuilds the ANN index from nothing.
        """
        with self._lock:
            with self._writing():
                self._fts.clear()
                self._store.clear()
            if recreate_index:
                self._store.compact(progress=False)

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete the documents matching ``filters``; returns how many.

        Raises:
            FilterError: a malformed or empty filter.
        """
        m = _required_matcher(filters, "delete_by_filter")
        with self._writing():
            keys = self._find(m)
            self._fts.delete(keys)
            deleted: int = self._store.delete_many(keys)
        return deleted

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge ``meta`` into the metadata of the documents matching ``filters``.

        Ids and embeddings are kept.  Returns how many documents were updated.

        Raises:
            FilterError: a malformed or empty filter.
            TypeError: ``meta`` is not a dict.
        """
        if not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
        m = _required_matcher(filters, "update_by_filter")
        with self._lock:
            items = []
            for key in self._find(m):
                rec = self._store.get_metadata(key)
                if rec is None:
                    continue
                rec = copy.deepcopy(rec)
                rec["meta"] = {**(rec.get("meta") or {}), **copy.deepcopy(dict(meta))}
                items.append((key, rec, self._store.get(key)))
            self._put(items)
        return len(items)

    # --------------------------------------------------------------- search
    def query_by_embedding(self, query_embedding: list[float], top_k: int = 10,
                           filters: dict[str, Any] | None = None, scale_score: bool = False,
                           return_embedding: bool = False) -> list[Document]:
        """The ``top_k`` documents closest to ``query_embedding`` among those matching ``filters``.

        Documents without an embedding are never returned.  Fewer than
        ``top_k`` come back only when fewer documents match.

        ``Document.score`` is a similarity (higher is closer), computed from
        the store's distance ``d``:

        ========== ===================== =================================
        metric     score                 with ``scale_score=True`` (0..1)
        ========== ===================== =================================
        cosine     ``1 - d`` (cos sim)   ``(score + 1) / 2``
        dot_product ``-d`` (q · v)       ``expit(score / 100)``
        euclidean  ``-d`` (minus L2)     ``1 / (1 + d)``
        ========== ===================== =================================

        The cosine and dot_product scalings are those of Haystack's
        InMemoryDocumentStore.

        Raises:
            ValueError: an empty or non-numeric query, or a negative ``top_k``.
            DimensionMismatch: the query has the wrong size.
            FilterError: a malformed filter.
        """
        try:
            q = np.asarray(query_embedding, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError("query_embedding should be a non-empty list of floats.") from e
        if q.ndim != 1 or q.size == 0:
            raise ValueError("query_embedding should be a non-empty list of floats.")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
        m = _matcher(filters)
        if top_k == 0 or self._store.dimensions is None:
            return []
        hits = self._store.search(q, k=int(top_k), filter=m)
        if m is not None:
            m.raise_error()
        out = []
        for hit in hits:
            rec = copy.deepcopy(hit.metadata)
            vec = self._store.get(hit.key) if return_embedding and "embedding" not in rec else None
            if not return_embedding:
                rec.pop("embedding", None)
            out.append(_document(rec, vec, score=self._score(hit.score, scale_score),
                                 key=hit.key))
        return out

    def _score(self, distance: float, scale: bool) -> float:
        if self.metric == "cosine":
            sim = 1.0 - distance
            return (sim + 1.0) / 2.0 if scale else sim
        if self.metric == "dot_product":
            sim = -distance
            if not scale:
                return sim
            return _expit(sim / DOT_PRODUCT_SCALING_FACTOR)
        return 1.0 / (1.0 + distance) if scale else -distance

    def bm25_retrieval(self, query: str, filters: dict[str, Any] | None = None,
                       top_k: int = 10, scale_score: bool = False) -> list[Document]:
        """The ``top_k`` documents whose content best matches ``query`` (BM25).

        Like Haystack's ``InMemoryDocumentStore.bm25_retrieval``: corpus
        statistics are those of every document with content, and ``filters``
        only restrict which are returned.  Differences: the scoring is Okapi
        BM25 with ``k1 = 1.2``, ``b = 0.75`` and Lucene's idf (see
        :mod:`synadb.fulltext`), terms are ``\\w+`` words (single letters
        too), and only documents holding a query term are returned.
        ``scale_score=True`` maps a score ``s`` to ``expit(s / 8)``, as
        Haystack does.  Embeddings are not returned.

        Raises:
            ValueError: an empty query, or a negative ``top_k``.
            FilterError: a malformed filter.
        """
        if not isinstance(query, str) or not query:
            raise ValueError("Query should be a non-empty string")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
        m = _matcher(filters)
        allowed = None if m is None else set(self._find(m))
        if not top_k or allowed is not None and not allowed:
            return []
        out = []
        for key, score in self._fts.search(query, k=int(top_k), keys=allowed):
            rec = self._store.get_metadata(key)
            if rec is None:
                continue  # deleted by another handle in between
            rec = copy.deepcopy(rec)
            rec.pop("embedding", None)
            if scale_score:
                score = _expit(score / BM25_SCALING_FACTOR)
            out.append(_document(rec, None, score=score, key=key))
        return out

    def hybrid_retrieval(self, query: str, query_embedding: list[float], top_k: int = 10,
                         filters: dict[str, Any] | None = None, fusion: str = "rrf",
                         alpha: float = 0.5, rrf_k: int = 60, candidate_k: int | None = None,
                         return_embedding: bool = False) -> list[Document]:
        """Fuse :meth:`query_by_embedding` and :meth:`bm25_retrieval` rankings.

        Each side returns ``candidate_k`` documents (default
        ``max(50, 4 * top_k)``) matching ``filters``; they are fused by
        ``fusion``:

        - ``"rrf"``: reciprocal rank fusion (:func:`synadb.fulltext.rrf`,
          constant ``rrf_k``), the embedding side weighted ``2 * alpha``
          and the keyword side ``2 * (1 - alpha)`` (``alpha=0.5``: plain RRF).
        - ``"weighted"``: ``alpha * embedding + (1 - alpha) * bm25`` of
          min-max normalised scores (:func:`synadb.fulltext.weighted_sum`).

        ``Document.score`` is the fused score.  An empty ``query`` searches
        by embedding only.

        Raises:
            ValueError: an unknown fusion, ``alpha`` outside [0, 1], bad
                ``top_k``/``candidate_k``, or a bad query embedding.
            FilterError: a malformed filter.
        """
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
        if candidate_k is None:
            candidate_k = max(50, 4 * int(top_k))
        if isinstance(candidate_k, bool) or not isinstance(candidate_k, int) or candidate_k < 1:
            raise ValueError(f"candidate_k must be an int > 0, got {candidate_k!r}")
        if not isinstance(query, str):
            raise ValueError(f"query must be a str, not {type(query).__name__}")
        dense = self.query_by_embedding(query_embedding, top_k=candidate_k, filters=filters,
                                        return_embedding=return_embedding)
        sparse = (self.bm25_retrieval(query, filters=filters, top_k=candidate_k)
                  if query.strip() else [])
        if not top_k:
            return []
        if fusion == "rrf":
            fused = rrf([d.id for d in dense], [d.id for d in sparse], k=rrf_k,
                        weights=[2 * alpha, 2 * (1 - alpha)])
        else:
            fused = weighted_sum([(d.id, d.score) for d in dense],
                                 [(d.id, d.score) for d in sparse],
                                 weights=[alpha, 1 - alpha])
        by_id = {d.id: d for d in sparse}
        by_id.update((d.id, d) for d in dense)
        out = []
        for key, score in fused[:top_k]:
            doc = by_id[key]
            changes: dict[str, Any] = {"score": score}
            if return_embedding and doc.embedding is None:
                # A BM25-only hit carries no embedding: take it from the record.
                changes["embedding"] = self._embedding_of(key)
            out.append(dataclasses.replace(doc, **changes))
        return out

    def _embedding_of(self, key: str) -> list[float] | None:
        rec = self._store.get_metadata(key)
        if rec is not None and "embedding" in rec:
            return list(rec["embedding"])
        vec = self._store.get(key)
        return None if vec is None else vec.tolist()

    # ---------------------------------------------------------------- async
    # Local file I/O is quick, but a large filter or write still should not
    # stall the event loop, so each twin runs in a worker thread.
    async def count_documents_async(self) -> int:
        """Async :meth:`count_documents`."""
        return await asyncio.to_thread(self.count_documents)

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Async :meth:`filter_documents`."""
        return await asyncio.to_thread(self.filter_documents, filters)

    async def write_documents_async(self, documents: list[Document],
                                    policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Async :meth:`write_documents`."""
        return await asyncio.to_thread(self.write_documents, documents, policy)

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        """Async :meth:`delete_documents`."""
        await asyncio.to_thread(self.delete_documents, document_ids)

    async def delete_all_documents_async(self, recreate_index: bool = False) -> None:
        """Async :meth:`delete_all_documents`."""
        await asyncio.to_thread(self.delete_all_documents, recreate_index)

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        """Async :meth:`delete_by_filter`."""
        return await asyncio.to_thread(self.delete_by_filter, filters)

    async def update_by_filter_async(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Async :meth:`update_by_filter`."""
        return await asyncio.to_thread(self.update_by_filter, filters, meta)

    async def count_documents_by_filter_async(self, filters: dict[str, Any] | None) -> int:
        """Async :meth:`count_documents_by_filter`."""
        return await asyncio.to_thread(self.count_documents_by_filter, filters)

    async def count_unique_metadata_by_filter_async(
            self, filters: dict[str, Any] | None, metadata_fields: list[str]) -> dict[str, int]:
        """Async :meth:`count_unique_metadata_by_filter`."""
        return await asyncio.to_thread(self.count_unique_metadata_by_filter, filters,
                                       metadata_fields)

    async def get_metadata_fields_info_async(self) -> dict[str, dict[str, str]]:
        """Async :meth:`get_metadata_fields_info`."""
        return await asyncio.to_thread(self.get_metadata_fields_info)

    async def get_metadata_field_min_max_async(self, metadata_field: str) -> dict[str, Any]:
        """Async :meth:`get_metadata_field_min_max`."""
        return await asyncio.to_thread(self.get_metadata_field_min_max, metadata_field)

    async def get_metadata_field_unique_values_async(
            self, metadata_field: str, search_term: str | None = None, from_: int = 0,
            size: int = 10, filters: dict[str, Any] | None = None) -> tuple[list[Any], int]:
        """Async :meth:`get_metadata_field_unique_values`."""
        return await asyncio.to_thread(self.get_metadata_field_unique_values, metadata_field,
                                       search_term, from_, size, filters)

    async def bm25_retrieval_async(self, query: str, filters: dict[str, Any] | None = None,
                                   top_k: int = 10, scale_score: bool = False) -> list[Document]:
        """Async :meth:`bm25_retrieval`."""
        return await asyncio.to_thread(self.bm25_retrieval, query, filters, top_k, scale_score)

    async def hybrid_retrieval_async(self, query: str, query_embedding: list[float],
                                     **kwargs: Any) -> list[Document]:
        """Async :meth:`hybrid_retrieval`."""
        return await asyncio.to_thread(self.hybrid_retrieval, query, query_embedding, **kwargs)

    async def query_by_embedding_async(self, query_embedding: list[float], top_k: int = 10,
                                       filters: dict[str, Any] | None = None,
                                       scale_score: bool = False,
                                       return_embedding: bool = False) -> list[Document]:
        """Async :meth:`query_by_embedding`."""
        return await asyncio.to_thread(self.query_by_embedding, query_embedding, top_k, filters,
                                       scale_score, return_embedding)


# ---------------------------------------------------------------- retriever
@component
class SynaEmbeddingRetriever:
    """Retrieves the documents closest to a query embedding from a :class:`SynaDocumentStore`.

    Put it after a text embedder in a query pipeline::

        pipe = Pipeline()
        pipe.add_component("embedder", SentenceTransformersTextEmbedder())
        pipe.add_component("retriever", SynaEmbeddingRetriever(store, top_k=5))
        pipe.connect("embedder.embedding", "retriever.query_embedding")

    Args:
        document_store: the store to search.
        filters: filters applied to every query (see ``filter_policy``).
        top_k: how many documents to return, > 0.
        scale_score: scores in [0, 1] (see :meth:`SynaDocumentStore.query_by_embedding`).
        return_embedding: include each document's embedding.
        filter_policy: ``REPLACE`` (runtime filters replace ``filters``) or
            ``MERGE`` (both apply).

    Raises:
        TypeError: ``document_store`` is not a :class:`SynaDocumentStore`.
        ValueError: ``top_k`` is not positive.
    """

    def __init__(self, document_store: SynaDocumentStore, filters: dict[str, Any] | None = None,
                 top_k: int = 10, scale_score: bool = False, return_embedding: bool = False,
                 filter_policy: FilterPolicy = FilterPolicy.REPLACE) -> None:
        if not isinstance(document_store, SynaDocumentStore):
            raise TypeError("document_store must be a SynaDocumentStore, not "
                            f"{type(document_store).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be greater than 0, but got {top_k!r}")
        self.document_store = document_store
        self.filters = filters
        self.top_k = top_k
        self.scale_score = scale_score
        self.return_embedding = return_embedding
        self.filter_policy = (FilterPolicy.from_str(filter_policy)
                              if isinstance(filter_policy, str) else filter_policy)

    def to_dict(self) -> dict[str, Any]:
        """Serialize the component, its store's settings included."""
        return default_to_dict(self, document_store=self.document_store.to_dict(),
                               filters=self.filters, top_k=self.top_k,
                               scale_score=self.scale_score,
                               return_embedding=self.return_embedding,
                               filter_policy=self.filter_policy.value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynaEmbeddingRetriever:
        """Rebuild the component (and open its store) from :meth:`to_dict`'s output."""
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        params = data["init_parameters"]
        if isinstance(params.get("document_store"), Mapping):
            params["document_store"] = SynaDocumentStore.from_dict(params["document_store"])
        if isinstance(params.get("filter_policy"), str):
            params["filter_policy"] = FilterPolicy.from_str(params["filter_policy"])
        return default_from_dict(cls, data)

    def _args(self, filters: dict[str, Any] | None, top_k: int | None,
              scale_score: bool | None, return_embedding: bool | None) -> dict[str, Any]:
        top_k = self.top_k if top_k is None else top_k
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, but got {top_k}")
        return {"filters": apply_filter_policy(self.filter_policy, self.filters, filters),
                "top_k": top_k,
                "scale_score": self.scale_score if scale_score is None else scale_score,
                "return_embedding": (self.return_embedding if return_embedding is None
                                     else return_embedding)}

    @component.output_types(documents=list[Document])
    def run(self, query_embedding: list[float], filters: dict[str, Any] | None = None,
            top_k: int | None = None, scale_score: bool | None = None,
            return_embedding: bool | None = None) -> dict[str, list[Document]]:
        """Retrieve documents; runtime arguments override the init ones.

        Returns:
            ``{"documents": [...]}``, closest first, each with a ``score``.
        """
        args = self._args(filters, top_k, scale_score, return_embedding)
        return {"documents": self.document_store.query_by_embedding(query_embedding, **args)}

    @component.output_types(documents=list[Document])
    async def run_async(self, query_embedding: list[float], filters: dict[str, Any] | None = None,
                        top_k: int | None = None, scale_score: bool | None = None,
                        return_embedding: bool | None = None) -> dict[str, list[Document]]:
        """Async :meth:`run`."""
        args = self._args(filters, top_k, scale_score, return_embedding)
        docs = await self.document_store.query_by_embedding_async(query_embedding, **args)
        return {"documents": docs}


def _check_store(document_store: Any) -> None:
    if not isinstance(document_store, SynaDocumentStore):
        raise TypeError("document_store must be a SynaDocumentStore, not "
                        f"{type(document_store).__name__}")


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
        raise ValueError(f"top_k must be greater than 0, but got {top_k!r}")


def _retriever_from_dict(cls: Any, data: dict[str, Any]) -> Any:
    """Open the store and restore the filter policy, then Haystack's default."""
    data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
    params = data["init_parameters"]
    if isinstance(params.get("document_store"), Mapping):
        params["document_store"] = SynaDocumentStore.from_dict(params["document_store"])
    if isinstance(params.get("filter_policy"), str):
        params["filter_policy"] = FilterPolicy.from_str(params["filter_policy"])
    return default_from_dict(cls, data)


def _runtime_top_k(default: int, top_k: int | None) -> int:
    top_k = default if top_k is None else top_k
    if top_k < 0:
        raise ValueError(f"top_k must be greater than or equal to 0, but got {top_k}")
    return top_k


@component
class SynaBM25Retriever:
    """Retrieves the documents whose content best matches a query, by BM25.

    The counterpart of Haystack's ``InMemoryBM25Retriever`` (same arguments
    and outputs) over a :class:`SynaDocumentStore`; the scoring is described
    in :meth:`SynaDocumentStore.bm25_retrieval`::

        pipe = Pipeline()
        pipe.add_component("retriever", SynaBM25Retriever(store, top_k=5))
        pipe.run({"retriever": {"query": "how do I open a file?"}})

    Args:
        document_store: the store to search.
        filters: filters applied to every query (see ``filter_policy``).
        top_k: how many documents to return, > 0.
        scale_score: scores in (0, 1), ``expit(score / 8)`` as Haystack's.
        filter_policy: ``REPLACE`` (runtime filters replace ``filters``) or
            ``MERGE`` (both apply).

    Raises:
        TypeError: ``document_store`` is not a :class:`SynaDocumentStore`.
        ValueError: ``top_k`` is not positive.
    """

    def __init__(self, document_store: SynaDocumentStore, filters: dict[str, Any] | None = None,
                 top_k: int = 10, scale_score: bool = False,
                 filter_policy: FilterPolicy = FilterPolicy.REPLACE) -> None:
        _check_store(document_store)
        _check_top_k(top_k)
        self.document_store = document_store
        self.filters = filters
        self.top_k = top_k
        self.scale_score = scale_score
        self.filter_policy = (FilterPolicy.from_str(filter_policy)
                              if isinstance(filter_policy, str) else filter_policy)

    def to_dict(self) -> dict[str, Any]:
        """Serialize the component, its store's settings included."""
        return default_to_dict(self, document_store=self.document_store.to_dict(),
                               filters=self.filters, top_k=self.top_k,
                               scale_score=self.scale_score,
                               filter_policy=self.filter_policy.value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynaBM25Retriever:
        """Rebuild the component (and open its store) from :meth:`to_dict`'s output."""
        retriever: SynaBM25Retriever = _retriever_from_dict(cls, data)
        return retriever

    def _args(self, filters: dict[str, Any] | None, top_k: int | None,
              scale_score: bool | None) -> dict[str, Any]:
        return {"filters": apply_filter_policy(self.filter_policy, self.filters, filters),
                "top_k": _runtime_top_k(self.top_k, top_k),
                "scale_score": self.scale_score if scale_score is None else scale_score}

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None,
            scale_score: bool | None = None) -> dict[str, list[Document]]:
        """Retrieve documents; runtime arguments override the init ones.

        Returns:
            ``{"documents": [...]}``, best first, each with a ``score``.
        """
        args = self._args(filters, top_k, scale_score)
        return {"documents": self.document_store.bm25_retrieval(query, **args)}

    @component.output_types(documents=list[Document])
    async def run_async(self, query: str, filters: dict[str, Any] | None = None,
                        top_k: int | None = None,
                        scale_score: bool | None = None) -> dict[str, list[Document]]:
        """Async :meth:`run`."""
        args = self._args(filters, top_k, scale_score)
        return {"documents": await self.document_store.bm25_retrieval_async(query, **args)}


@component
class SynaHybridRetriever:
    """Retrieves documents by embedding and by keywords at once, fused.

    One component instead of two retrievers and a ``DocumentJoiner``; see
    :meth:`SynaDocumentStore.hybrid_retrieval` for the fusion::

        pipe = Pipeline()
        pipe.add_component("embedder", SentenceTransformersTextEmbedder())
        pipe.add_component("retriever", SynaHybridRetriever(store, top_k=5))
        pipe.connect("embedder.embedding", "retriever.query_embedding")
        pipe.run({"embedder": {"text": q}, "retriever": {"query": q}})

    Args:
        document_store: the store to search.
        filters: filters applied to every query (see ``filter_policy``).
        top_k: how many documents to return, > 0.
        fusion: ``"rrf"`` (reciprocal rank fusion) or ``"weighted"`` (a
            blend of min-max normalised scores).
        alpha: the embedding side's share, in [0, 1] (the keyword side has
            ``1 - alpha``).
        rrf_k: the RRF rank constant.
        candidate_k: how many documents each side contributes (default
            ``max(50, 4 * top_k)``).
        return_embedding: include each document's embedding.
        filter_policy: ``REPLACE`` or ``MERGE``, as the other retrievers.

    Raises:
        TypeError: ``document_store`` is not a :class:`SynaDocumentStore`.
        ValueError: a bad ``top_k``, ``fusion`` or ``alpha``.
    """

    def __init__(self, document_store: SynaDocumentStore, filters: dict[str, Any] | None = None,
                 top_k: int = 10, fusion: str = "rrf", alpha: float = 0.5, rrf_k: int = 60,
                 candidate_k: int | None = None, return_embedding: bool = False,
                 filter_policy: FilterPolicy = FilterPolicy.REPLACE) -> None:
        _check_store(document_store)
        _check_top_k(top_k)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        self.document_store = document_store
        self.filters = filters
        self.top_k = top_k
        self.fusion = fusion
        self.alpha = alpha
        self.rrf_k = rrf_k
        self.candidate_k = candidate_k
        self.return_embedding = return_embedding
        self.filter_policy = (FilterPolicy.from_str(filter_policy)
                              if isinstance(filter_policy, str) else filter_policy)

    def to_dict(self) -> dict[str, Any]:
        """Serialize the component, its store's settings included."""
        return default_to_dict(self, document_store=self.document_store.to_dict(),
                               filters=self.filters, top_k=self.top_k, fusion=self.fusion,
                               alpha=self.alpha, rrf_k=self.rrf_k,
                               candidate_k=self.candidate_k,
                               return_embedding=self.return_embedding,
                               filter_policy=self.filter_policy.value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynaHybridRetriever:
        """Rebuild the component (and open its store) from :meth:`to_dict`'s output."""
        retriever: SynaHybridRetriever = _retriever_from_dict(cls, data)
        return retriever

    def _args(self, filters: dict[str, Any] | None, top_k: int | None,
              return_embedding: bool | None) -> dict[str, Any]:
        return {"filters": apply_filter_policy(self.filter_policy, self.filters, filters),
                "top_k": _runtime_top_k(self.top_k, top_k), "fusion": self.fusion,
                "alpha": self.alpha, "rrf_k": self.rrf_k, "candidate_k": self.candidate_k,
                "return_embedding": (self.return_embedding if return_embedding is None
                                     else return_embedding)}

    @component.output_types(documents=list[Document])
    def run(self, query: str, query_embedding: list[float], filters: dict[str, Any] | None = None,
            top_k: int | None = None,
            return_embedding: bool | None = None) -> dict[str, list[Document]]:
        """Retrieve documents; runtime arguments override the init ones.

        Returns:
            ``{"documents": [...]}``, best first, ``score`` the fused score.
        """
        args = self._args(filters, top_k, return_embedding)
        return {"documents": self.document_store.hybrid_retrieval(query, query_embedding, **args)}

    @component.output_types(documents=list[Document])
    async def run_async(self, query: str, query_embedding: list[float],
                        filters: dict[str, Any] | None = None, top_k: int | None = None,
                        return_embedding: bool | None = None) -> dict[str, list[Document]]:
        """Async :meth:`run`."""
        args = self._args(filters, top_k, return_embedding)
        docs = await self.document_store.hybrid_retrieval_async(query, query_embedding, **args)
        return {"documents": docs}


# ------------------------------------------------------------ chat history
#: Key prefix of the chat histories: one key per ``chat_history_id`` whose
#: history (every value appended, oldest first) is its messages, each
#: ``ChatMessage.to_dict()`` as JSON.  Deleting the key empties the history.
CHAT_PREFIX = "__haystack_chat__/"


class SynaChatMessageStore:
    """Chat messages by ``chat_history_id``, in a synadb file.

    Implements haystack-experimental's ``ChatMessageStore`` protocol, with
    the semantics of its ``InMemoryChatMessageStore``: system messages are
    skipped unless ``skip_system_messages=False``; each message gets a
    ``chat_message_id`` (its position) unless it has one, and a message
    whose id is already stored is not written again; ``last_k`` counts
    *rounds* (a user message through the assistant's answer, tool calls and
    results included), so a slice never splits a tool call from its result.
    Unlike the in-memory store, histories persist and are shared by every
    handle (and process) on the file; a write is all or nothing.

    Args:
        path: the synadb file (the RAG app's, typically).
        skip_system_messages: leave system messages out when writing.
        last_k: rounds returned by :meth:`retrieve_messages` by default
            (``None``: all).
    """

    def __init__(self, path: str | os.PathLike[str], skip_system_messages: bool = True,
                 last_k: int | None = 10) -> None:
        if last_k is not None and (not isinstance(last_k, int) or last_k < 0):
            raise ValueError("last_k must be None or an int >= 0")
        self.path = os.fspath(path)
        self.skip_system_messages = skip_system_messages
        self.last_k = last_k
        self._db = SynaDB(self.path)

    def to_dict(self) -> dict[str, Any]:
        """Serialize the store (its path and settings) for a pipeline file."""
        return default_to_dict(self, path=self.path,
                               skip_system_messages=self.skip_system_messages,
                               last_k=self.last_k)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynaChatMessageStore:
        """Rebuild the store from :meth:`to_dict`'s output."""
        store: SynaChatMessageStore = default_from_dict(cls, data)
        return store

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _key(chat_history_id: str) -> str:
        if not isinstance(chat_history_id, str) or not chat_history_id:
            raise ValueError(f"chat_history_id must be a non-empty str, got {chat_history_id!r}")
        return CHAT_PREFIX + chat_history_id

    def _stored(self, key: str) -> list[ChatMessage]:
        return [ChatMessage.from_dict(json.loads(raw)) for raw in self._db.get_history(key)
                if raw is not None]

    def count_messages(self, chat_history_id: str) -> int:
        """How many messages the history holds."""
        return self._db.storage.history_len(self._key(chat_history_id))

    def write_messages(self, chat_history_id: str, messages: list[ChatMessage]) -> int:
        """Append messages to a history; returns how many were written.

        Raises:
            ValueError: ``messages`` is not a list of ChatMessage.
        """
        if not isinstance(messages, Iterable) or isinstance(messages, (str, bytes)):
            raise ValueError("Please provide a list of ChatMessages.")
        messages = list(messages)
        if any(not isinstance(m, ChatMessage) for m in messages):
            raise ValueError("Please provide a list of ChatMessages.")
        key = self._key(chat_history_id)
        db = self._db
        written = 0
        with db.batch():  # the lock: the ids seen are the ids stored
            stored = self._stored(key)
            seen = {m.meta.get("chat_message_id") for m in stored}
            seen.discard(None)
            next_id = len(stored)
            for msg in messages:
                if self.skip_system_messages and msg.is_from(ChatRole.SYSTEM):
                    continue
                if msg.meta.get("chat_message_id") is None:
                    msg = dataclasses.replace(
                        msg, _meta={"chat_message_id": str(next_id), **msg.meta})
                    next_id += 1
                mid = msg.meta["chat_message_id"]
                if mid in seen:
                    continue
                seen.add(mid)
                db.put_text(key, json.dumps(msg.to_dict(), ensure_ascii=False))
                written += 1
        return written

    def retrieve_messages(self, chat_history_id: str,
                          last_k: int | None = None) -> list[ChatMessage]:
        """The history's messages, oldest first: the last ``last_k`` rounds
        (the store's ``last_k`` when None; ``0`` gives none).

        Raises:
            ValueError: ``last_k`` is negative.
        """
        if last_k is not None and last_k < 0:
            raise ValueError("last_k must be 0 or greater")
        want = self.last_k if last_k is None else last_k
        if want == 0:
            return []
        messages = self._stored(self._key(chat_history_id))
        if want is None:
            return messages
        return [m for r in _rounds(messages)[-want:] for m in r]

    def delete_messages(self, chat_history_id: str) -> None:
        """Empty one history."""
        key = self._key(chat_history_id)
        if self._db.exists(key):
            self._db.delete(key)

    def delete_all_messages(self) -> None:
        """Empty every history in the file (documents are left alone)."""
        db = self._db
        with db.batch():
            for key in db.keys():
                if key.startswith(CHAT_PREFIX):
                    db.delete(key)


def _rounds(messages: list[ChatMessage]) -> list[list[ChatMessage]]:
    """Messages grouped into rounds: a system message alone; otherwise from
    a user message up to and including the assistant message that answers
    in text without calling a tool (tool calls and results stay inside)."""
    rounds: list[list[ChatMessage]] = []
    open_round: list[ChatMessage] = []
    for msg in messages:
        if msg.is_from(ChatRole.SYSTEM):
            rounds.append([msg])
            continue
        open_round.append(msg)
        if msg.is_from(ChatRole.ASSISTANT) and msg.text and not msg.tool_calls:
            rounds.append(open_round)
            open_round = []
    if open_round:
        rounds.append(open_round)
    return rounds
