"""LlamaIndex adapters: vector, chat, key/value, document and index stores.

Each can have a file to itself, or all of them can share one synadb file
(they use disjoint key prefixes), so a whole ``StorageContext`` is one file.

Install with ``pip install 'synadb[llamaindex]'``.  Only this module imports
``llama_index.core``; ``import synadb`` does not.

Setup (the store keeps node text, so no docstore is needed)::

    from llama_index.core import StorageContext, VectorStoreIndex
    from synadb.integrations.llamaindex import SynaVectorStore

    store = SynaVectorStore(path="rag.db")          # dimensions come from the first node
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model)
    index.as_retriever(similarity_top_k=3).retrieve("one file")

Reopen later (every write is already in the file; ``persist`` only fsyncs)::

    index = VectorStoreIndex.from_vector_store(SynaVectorStore(path="rag.db"),
                                               embed_model=embed_model)

Filters are LlamaIndex ``MetadataFilters`` with every ``FilterOperator`` and
the ``and``/``or``/``not`` conditions, nested to any depth::

    MetadataFilters(filters=[
        MetadataFilter(key="year", operator=FilterOperator.GTE, value=2020),
        MetadataFilters(filters=[...], condition=FilterCondition.OR),
    ])

Similarities are higher-is-closer: ``1 - distance`` for cosine (the cosine
similarity), the dot product for ``dot_product``, and ``1 / (1 + distance)``
for ``euclidean``.

Keyword and hybrid queries need no sparse encoder: each node's text is also
in a BM25 :class:`~synadb.fulltext.FullTextIndex` in the same file, written
in the same batch as its vector.  ``vector_store_query_mode="text_search"``
(or ``"sparse"``) ranks by BM25 alone; ``"hybrid"`` fuses BM25 with the dense
ranking (``alpha`` is the dense share, as in LlamaIndex's other stores)::

    index.as_retriever(vector_store_query_mode="hybrid", alpha=0.5,
                       similarity_top_k=5).retrieve("error E4012")
    index.as_retriever(vector_store_query_mode="hybrid",
                       vector_store_kwargs={"fusion": "weighted"})

A whole ``StorageContext`` in one file, reloaded later (or by another process)
with no ``persist_dir``::

    def storage(path):
        return StorageContext.from_defaults(
            vector_store=SynaVectorStore(path=path), docstore=SynaDocumentStore(path),
            index_store=SynaIndexStore(path))

    index = VectorStoreIndex.from_documents(docs, storage_context=storage("rag.db"),
                                            embed_model=embed_model)
    index = load_index_from_storage(storage("rag.db"), embed_model=embed_model)

An ``IngestionPipeline(docstore=SynaDocumentStore("rag.db"), vector_store=...)``
keeps its de-duplication state (document hashes) in the file across runs.

``IN``/``NIN`` follow LlamaIndex's reference filters (``SimpleVectorStore``)
exactly: a list-valued field is never ``IN`` a list of scalars (use ``ANY``
for "shares an element").  MMR picks from every candidate, as the reference
does, unless ``mmr_prefetch_k`` or ``mmr_prefetch_factor`` is given.

Chat history per key, kept across reopen::

    chats = SynaChatStore("chat.db")
    chats.add_message("user-42", ChatMessage(role="user", content="hi"))
    chats.get_messages("user-42")
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from typing_extensions import Self  # typing.Self is 3.11+; we support 3.10
from urllib.parse import quote, unquote

from .. import errors
from ..db import SynaDB
from ..fulltext import FullTextIndex, rrf, weighted_sum
from ..vectors.store import VectorStore

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
    from llama_index.core.llms import ChatMessage
    from llama_index.core.schema import BaseNode, MetadataMode, TextNode
    from llama_index.core.storage.chat_store.base import BaseChatStore
    from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
    from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore
    from llama_index.core.storage.kvstore.types import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_COLLECTION,
        BaseKVStore,
    )
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import (
        metadata_dict_to_node,
        node_to_metadata_dict,
    )
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency(
        "llama-index-core", "llamaindex", "synadb.integrations.llamaindex") from e

__all__ = ["NODE_ID_KEY", "SynaChatStore", "SynaDocumentStore", "SynaIndexStore", "SynaKVStore",
           "SynaVectorStore", "metadata_filters_to_predicate"]

#: Metadata key holding the node id inside each record.  The store's filter
#: predicates see only metadata, and ``query(node_ids=...)`` must be one of them.
NODE_ID_KEY = "_node_id"
#: Keys every record carries besides the node's own metadata (LlamaIndex's
#: layout plus ours); a node's metadata round-trips without them.
_TEXT_KEYS = ("text", "_page_content", "content")
_RESERVED = ("_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id", NODE_ID_KEY)
CHAT_KEY_PREFIX = "llamaindex/chat/"
KV_KEY_PREFIX = "__li_kv__/"  # then <collection>/<key>, both percent-encoded
_SEQ_DIGITS = 12  # zero-padded, so key order is message order
#: Name of the :class:`~synadb.fulltext.FullTextIndex` of the nodes' text.
FULLTEXT_INDEX = "llamaindex"
#: How a hybrid query can fuse its two rankings (kwarg ``fusion``).
FUSIONS = ("rrf", "weighted")
_STORE_OPTIONS = ("m", "ef_construction", "ef_search", "index_threshold", "progress",
                  "read_only", "sync_on_write", "lock_timeout_s")

Predicate = Callable[[Mapping[str, Any]], bool]


# ------------------------------------------------------------------ filters
def _as_list(f: MetadataFilter) -> list[Any]:
    if f.value is None:
        raise errors.InvalidArgument(f"filter {f.operator.value!r} on {f.key!r} needs a value")
    # A bare value is a one-element list: IN "a" means IN ["a"], not substring of "a".
    return list(f.value) if isinstance(f.value, (list, tuple)) else [f.value]


def _in(value: Any, wanted: list[Any]) -> bool:
    # Exactly LlamaIndex's reference (build_metadata_filter_fn, which
    # SimpleVectorStore uses): plain ``value in wanted``.  So a list-valued
    # field is never IN a list of scalars (and always NIN it); it matches
    # only a wanted list that holds that whole list.  Qdrant or Mongo would
    # match on any element instead; we chose to agree with the reference so
    # that a query gives the same nodes here as in SimpleVectorStore.  To ask
    # "does the list field share an element with these", use ANY.
    return value in wanted


def _safe(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    # One record with a str where others hold numbers must not abort a search
    # over the whole store: a comparison that cannot be made is a non-match.
    def run(value: Any) -> bool:
        try:
            return bool(test(value))
        except TypeError:
            return False
    return run


def _compile_one(f: MetadataFilter) -> Predicate:
    op, want, key = FilterOperator(f.operator), f.value, f.key
    test: Callable[[Any], bool]
    if op == FilterOperator.IS_EMPTY:
        return lambda m: m.get(key) in (None, "", [])
    if op in (FilterOperator.GT, FilterOperator.GTE, FilterOperator.LT, FilterOperator.LTE) \
            and want is None:
        raise errors.InvalidArgument(f"filter {op.value!r} on {key!r} needs a value")
    if op == FilterOperator.EQ:
        test = lambda v: v == want
    elif op == FilterOperator.NE:
        test = lambda v: v != want
    elif op == FilterOperator.GT:
        test = lambda v: v > want
    elif op == FilterOperator.GTE:
        test = lambda v: v >= want
    elif op == FilterOperator.LT:
        test = lambda v: v < want
    elif op == FilterOperator.LTE:
        test = lambda v: v <= want
    elif op in (FilterOperator.IN, FilterOperator.NIN):
        items = _as_list(f)
        test = (lambda v: _in(v, items)) if op == FilterOperator.IN \
            else (lambda v: not _in(v, items))
    elif op in (FilterOperator.ANY, FilterOperator.ALL):
        items = _as_list(f)
        agg = any if op == FilterOperator.ANY else all
        test = lambda v: isinstance(v, (list, str)) and agg(x in v for x in items)
    elif op == FilterOperator.CONTAINS:
        test = lambda v: isinstance(v, (list, str)) and want in v
    elif op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        if not isinstance(want, str):
            raise errors.InvalidArgument(
                f"filter {op.value!r} on {key!r} needs a str, got {want!r}")
        if op == FilterOperator.TEXT_MATCH:
            test = lambda v: isinstance(v, str) and want in v
        else:
            low = want.lower()
            test = lambda v: isinstance(v, str) and low in v.lower()
    else:  # a newer llama-index operator we do not know yet
        raise errors.InvalidArgument(f"unsupported filter operator {op.value!r} on {key!r}")
    run = _safe(test)
    # As upstream: a missing or null field satisfies only the negative operators.
    absent = op in (FilterOperator.NE, FilterOperator.NIN)
    return lambda m: absent if m.get(key) is None else run(m.get(key))


def metadata_filters_to_predicate(filters: MetadataFilters | None) -> Predicate | None:
    """Compile LlamaIndex ``MetadataFilters`` into a predicate over a metadata dict.

    ``and`` needs every filter, ``or`` any, ``not`` none of them; nested
    ``MetadataFilters`` combine the same way.  An empty filter list matches
    everything.  A field that is missing or null matches only ``!=``,
    ``nin`` and ``is_empty``.  ``in``/``nin`` test the field's value itself
    against the list, as LlamaIndex's reference does: a list-valued field is
    never in a list of scalars (``any`` tests its elements).

    >>> p = metadata_filters_to_predicate(MetadataFilters(filters=[
    ...     MetadataFilter(key="year", operator=FilterOperator.GTE, value=2020)]))
    >>> p({"year": 2021}), p({"year": 2019}), p({})
    (True, False, False)

    Raises:
        InvalidArgument: an operator without a usable value, or an unknown one.
    """
    if filters is None:
        return None
    parts = [metadata_filters_to_predicate(f) if isinstance(f, MetadataFilters)
             else _compile_one(f) for f in filters.filters]
    if not parts:
        return lambda m: True
    cond = FilterCondition(filters.condition or FilterCondition.AND)
    if cond == FilterCondition.AND:
        return lambda m: all(p(m) for p in parts)  # type: ignore[misc]
    if cond == FilterCondition.OR:
        return lambda m: any(p(m) for p in parts)  # type: ignore[misc]
    if cond == FilterCondition.NOT:
        return lambda m: not any(p(m) for p in parts)  # type: ignore[misc]
    raise errors.InvalidArgument(f"unsupported filter condition {cond.value!r}")


def _restrict(pred: Predicate | None, node_ids: Iterable[str] | None,
              doc_ids: Iterable[str] | None = None) -> Predicate | None:
    # An empty list means "no restriction": VectorStoreIndex.as_retriever()
    # passes node_ids=[] for every store that keeps its own text.
    tests = [pred] if pred is not None else []
    if node_ids:
        ids = set(node_ids)
        tests.append(lambda m: m.get(NODE_ID_KEY) in ids)
    if doc_ids:
        docs = set(doc_ids)
        tests.append(lambda m: m.get("ref_doc_id") in docs)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda m: all(t(m) for t in tests)


def _top_k(name: str, k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise errors.InvalidArgument(f"{name} must be an int >= 0, got {k!r}")
    return k


# ------------------------------------------------------------ vector store
class SynaVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store on a :class:`synadb.vectors.VectorStore` file.

    Each node is one record keyed by its node id: the embedding is the
    vector, and the node itself (text, metadata, relationships) is kept with
    LlamaIndex's ``node_to_metadata_dict`` layout, so query results and
    ``get_nodes`` return the nodes as added.

    Args:
        path: the database file (created if missing).
        dimensions: embedding size; ``None`` takes it from the file or the first node.
        metric: ``"cosine"``, ``"euclidean"`` or ``"dot_product"``.
        flat_metadata: reject nested metadata values (as other LlamaIndex stores can).
        **options: passed to :class:`~synadb.vectors.VectorStore` (``index_threshold``,
            ``m``, ``ef_search``, ``read_only``, ...).

    Raises:
        DimensionMismatch: ``dimensions`` disagrees with the file.
        InvalidArgument: an unknown metric.

    >>> import tempfile, os
    >>> store = SynaVectorStore(path=os.path.join(tempfile.mkdtemp(), "li.db"))
    >>> store.add([TextNode(id_="a", text="alpha", embedding=[1.0, 0.0])])
    ['a']
    >>> res = store.query(VectorStoreQuery(query_embedding=[1.0, 0.1], similarity_top_k=1))
    >>> res.ids, res.nodes[0].text
    (['a'], 'alpha')
    >>> store.close()
    """

    stores_text: bool = True
    flat_metadata: bool = False
    path: str
    dimensions: int | None = None
    metric: str = "cosine"

    _store: VectorStore = PrivateAttr()
    _fts: FullTextIndex = PrivateAttr()

    def __init__(self, path: str | os.PathLike[str], dimensions: int | None = None,
                 metric: str = "cosine", **options: Any) -> None:
        store_kw = {k: options.pop(k) for k in _STORE_OPTIONS if k in options}
        # to_dict()/from_dict() hand back the pydantic fields; these are fixed.
        options.pop("stores_text", None)
        options.pop("is_embedding_query", None)
        store = VectorStore(path, dimensions=dimensions, metric=metric, **store_kw)
        try:
            super().__init__(path=store.path, dimensions=store.dimensions,  # type: ignore[call-arg]
                             metric=store.metric, **options)
            self._store = store
            # The text index shares the VectorStore's handle (VectorStore.db),
            # so that one batch writes a node's vector and its terms, all or
            # nothing (as the Haystack adapter does).
            self._fts = FullTextIndex(store.db, FULLTEXT_INDEX)
            self._backfill()
        except BaseException:
            store.close()
            raise

    @staticmethod
    def _text(node: BaseNode) -> str:
        # The node's own text, without metadata: what a keyword should match.
        return node.get_content(metadata_mode=MetadataMode.NONE)

    def _backfill(self) -> None:
        """Index the text of nodes written before this store kept a full-text
        index (a file from an older synadb, or another adapter): once, on open."""
        if self._fts.read_only or len(self._fts) or not len(self._store):
            return
        keys, texts = [], []
        for key in self._store.find():
            meta = self._store.get_metadata(key)
            if meta is not None:
                keys.append(key)
                texts.append(self._text(self._to_node(key, meta)))
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
        with self._store.transaction():
            yield
        self._fts.checkpoint()  # the batch is over: snapshot if much changed

    @property
    def fulltext_index(self) -> FullTextIndex:
        """The :class:`~synadb.fulltext.FullTextIndex` of the nodes' text."""
        return self._fts

    @classmethod
    def class_name(cls) -> str:
        return "SynaVectorStore"

    @classmethod
    def from_persist_path(cls, persist_path: str | os.PathLike[str], fs: Any = None,
                          **kwargs: Any) -> SynaVectorStore:
        """Reopen the store in ``persist_path`` (the database file itself)."""
        if fs is not None:
            raise errors.InvalidArgument("SynaVectorStore files are local; fs is not supported")
        return cls(path=persist_path, **kwargs)

    @property
    def client(self) -> VectorStore:
        """The underlying :class:`synadb.vectors.VectorStore`."""
        return self._store

    def close(self) -> None:
        """Close the file (snapshotting the ANN and text indexes if they changed)."""
        try:
            if not self._store.closed:
                self._fts.close()  # may save its snapshot through the shared handle
        finally:
            self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def persist(self, persist_path: str | None = None, fs: Any = None) -> None:
        """Make everything durable now.  ``persist_path`` is ignored: every
        write is already in this store's own file, which is the persisted form."""
        if self._store.closed:
            return
        try:
            self._store.flush()
        except errors.ReadOnlyError:
            pass

    # -------------------------------------------------------------- writes
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Add (or replace, by node id) nodes that carry embeddings, all or nothing.

        Raises:
            InvalidArgument: a node has no embedding.
            DimensionMismatch: an embedding has the wrong size.
        """
        if not nodes:
            return []
        ids, vectors, metas, texts = [], [], [], []
        for node in nodes:
            if node.embedding is None:
                raise errors.InvalidArgument(
                    f"node {node.node_id!r} has no embedding; embed it before add()")
            meta = node_to_metadata_dict(node, remove_text=False,
                                         flat_metadata=self.flat_metadata)
            meta[NODE_ID_KEY] = node.node_id
            ids.append(node.node_id)
            vectors.append(node.embedding)
            metas.append(meta)
            texts.append(self._text(node))
        sizes = {len(v) for v in vectors}
        if len(sizes) > 1:  # numpy would raise a bare ValueError on the ragged matrix
            raise errors.DimensionMismatch(
                f"embeddings of different sizes {sorted(sizes)} in one add()")
        with self._writing():
            self._fts.add(ids, texts)
            self._store.insert_batch(ids, vectors, metas)
        self.dimensions = self._store.dimensions
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node whose source document is ``ref_doc_id``."""
        with self._writing():
            keys = self._store.find(lambda m: m.get("ref_doc_id") == ref_doc_id)
            if keys:
                self._fts.delete(keys)
                self._store.delete_many(keys)

    def delete_nodes(self, node_ids: list[str] | None = None,
                     filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        """Delete the nodes in ``node_ids`` that match ``filters``.

        With neither, every node is deleted (as ``SimpleVectorStore`` does).
        """
        with self._writing():
            keys = self._select(node_ids, filters)
            if keys:
                self._fts.delete(keys)
                self._store.delete_many(keys)

    def clear(self) -> None:
        """Delete every node."""
        with self._writing():
            self._fts.clear()
            self._store.clear()

    # --------------------------------------------------------------- reads
    def _select(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[str]:
        pred = metadata_filters_to_predicate(filters)
        if node_ids is None:
            return self._store.find(pred)
        out, seen = [], set()
        for key in node_ids:
            if key in seen:
                continue
            seen.add(key)
            meta = self._store.get_metadata(key)
            if meta is not None and (pred is None or pred(meta)):
                out.append(key)
        return out

    @staticmethod
    def _to_node(key: str, meta: dict[str, Any]) -> BaseNode:
        if "_node_content" in meta:
            return metadata_dict_to_node(meta)
        # A record written some other way: through synadb.vectors directly
        # ("text"), by the LangChain adapter ("_page_content") or by the
        # Haystack one ("content"), so one file serves every framework.
        text = next((meta[k] for k in _TEXT_KEYS if isinstance(meta.get(k), str)), "")
        return TextNode(id_=key, text=text,
                        metadata={k: v for k, v in meta.items()
                                  if k not in _RESERVED and k not in _TEXT_KEYS})

    def get_nodes(self, node_ids: list[str] | None = None,
                  filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes in ``node_ids`` (in that order; unknown ids are skipped)
        that match ``filters``, with their embeddings; all nodes if neither."""
        out = []
        for key in self._select(node_ids, filters):
            meta = self._store.get_metadata(key)
            if meta is None:  # deleted by another handle meanwhile
                continue
            node = self._to_node(key, meta)
            vec = self._store.get(key)
            node.embedding = None if vec is None else vec.tolist()
            out.append(node)
        return out

    def _similarity(self, distance: float) -> float:
        if self._store.metric == "cosine":
            return 1.0 - distance
        if self._store.metric == "dot_product":
            return -distance
        return 1.0 / (1.0 + distance)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nodes nearest ``query.query_embedding``
        among those allowed by ``filters``, ``node_ids`` and ``doc_ids``
        (an empty id list restricts nothing, as in other LlamaIndex stores).

        Modes:

        - ``default``; ``mmr`` (``mmr_threshold`` from the query or kwargs).
          MMR picks from every node that passes the filters, as
          ``SimpleVectorStore`` does, unless a kwarg limits the candidates to
          the nearest ``mmr_prefetch_k``, or ``mmr_prefetch_factor`` times top k.
        - ``text_search`` and ``sparse``: BM25 over the nodes' text for
          ``query_str`` (no embedding needed), the ``similarity_top_k`` best
          (``sparse_top_k`` first, for ``sparse``); similarities are BM25
          scores.  Only nodes holding a query word are returned.
        - ``hybrid``: the dense ranking of ``query_embedding`` (its
          ``similarity_top_k`` best) fused with the BM25 ranking of
          ``query_str`` (its ``sparse_top_k`` best, else ``similarity_top_k``)
          into ``hybrid_top_k`` nodes (else ``similarity_top_k``): LlamaIndex's
          meaning of the three.  ``alpha`` (default 0.5) is the dense side's
          share.  Kwargs: ``fusion`` (``"rrf"``, the default: reciprocal rank
          fusion weighted ``2 * alpha`` / ``2 * (1 - alpha)``; or
          ``"weighted"``: ``alpha * dense + (1 - alpha) * bm25`` of min-max
          normalised scores), ``rrf_k`` (60) and ``candidate_k`` (each side's
          depth, if deeper than the above).  Similarities are the fused
          scores.  No ``query_str`` (or no word in it) ranks by embedding only.

        Raises:
            InvalidArgument: no query embedding (or no ``query_str`` for a
                keyword mode), another query mode, or bad hybrid arguments.
        """
        mode = VectorStoreQueryMode(query.mode)
        if mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE):
            return self._query_bm25(query, mode)
        if mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR,
                        VectorStoreQueryMode.HYBRID):
            raise errors.InvalidArgument(
                f"SynaVectorStore does not support {mode.value!r} queries; use 'default', "
                "'mmr', 'hybrid', 'text_search' or 'sparse'")
        if mode == VectorStoreQueryMode.HYBRID:
            return self._query_hybrid(query, **kwargs)
        if query.query_embedding is None:
            raise errors.InvalidArgument("SynaVectorStore.query needs a query_embedding")
        k = int(query.similarity_top_k or 0)
        if k < 1:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        pred = _restrict(metadata_filters_to_predicate(query.filters),
                         query.node_ids, query.doc_ids)
        if mode == VectorStoreQueryMode.MMR:
            return self._query_mmr(query, k, pred, **kwargs)
        hits = self._store.search(query.query_embedding, k, filter=pred)
        return VectorStoreQueryResult(
            nodes=[self._to_node(h.key, h.metadata) for h in hits],
            similarities=[self._similarity(h.score) for h in hits],
            ids=[h.key for h in hits])

    def _allowed(self, query: VectorStoreQuery) -> tuple[Predicate | None, set[str] | None]:
        pred = _restrict(metadata_filters_to_predicate(query.filters),
                         query.node_ids, query.doc_ids)
        # BM25 ranks among every node (the corpus statistics stay the whole
        # store's); the filters only say which may be returned.
        return pred, None if pred is None else set(self._store.find(pred))

    def _bm25(self, query_str: str, k: int, allowed: set[str] | None
              ) -> list[tuple[str, float, dict[str, Any]]]:
        if not k or (allowed is not None and not allowed):
            return []
        out = []
        for key, score in self._fts.search(query_str, k=k, keys=allowed):
            meta = self._store.get_metadata(key)
            if meta is not None:  # else deleted by another handle in between
                out.append((key, score, meta))
        return out

    def _query_bm25(self, query: VectorStoreQuery,
                    mode: VectorStoreQueryMode) -> VectorStoreQueryResult:
        if not isinstance(query.query_str, str):
            raise errors.InvalidArgument(f"a {mode.value!r} query needs a query_str")
        if mode == VectorStoreQueryMode.SPARSE and query.sparse_top_k is not None:
            k = _top_k("sparse_top_k", query.sparse_top_k)
        else:
            k = _top_k("similarity_top_k", query.similarity_top_k)
        _, allowed = self._allowed(query)
        hits = self._bm25(query.query_str, k, allowed)
        return VectorStoreQueryResult(nodes=[self._to_node(key, m) for key, _, m in hits],
                                      similarities=[s for _, s, _ in hits],
                                      ids=[key for key, _, _ in hits])

    def _query_hybrid(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.query_embedding is None:
            raise errors.InvalidArgument("a 'hybrid' query needs a query_embedding "
                                         "(and a query_str)")
        alpha = 0.5 if query.alpha is None else query.alpha
        if (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                or not 0 <= alpha <= 1):
            raise errors.InvalidArgument(f"alpha must be a number in [0, 1], got {alpha!r}")
        fusion = kwargs.get("fusion", "rrf")
        if fusion not in FUSIONS:
            raise errors.InvalidArgument(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        rrf_k = kwargs.get("rrf_k", 60)
        dense_k = _top_k("similarity_top_k", query.similarity_top_k)
        sparse_k = (dense_k if query.sparse_top_k is None
                    else _top_k("sparse_top_k", query.sparse_top_k))
        k = dense_k if query.hybrid_top_k is None else _top_k("hybrid_top_k",
                                                               query.hybrid_top_k)
        if kwargs.get("candidate_k") is not None:
            deeper = _top_k("candidate_k", kwargs["candidate_k"])
            dense_k, sparse_k = max(dense_k, deeper), max(sparse_k, deeper)
        if not k:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        pred, allowed = self._allowed(query)
        dense = self._store.search(query.query_embedding, dense_k, filter=pred) if dense_k else []
        words = query.query_str if isinstance(query.query_str, str) else ""
        sparse = self._bm25(words, sparse_k, allowed) if words.strip() else []
        if fusion == "rrf":
            fused = rrf([h.key for h in dense], [key for key, _, _ in sparse], k=rrf_k,
                        weights=[2 * alpha, 2 * (1 - alpha)])
        else:
            fused = weighted_sum([(h.key, h.score) for h in dense],
                                 [(key, s) for key, s, _ in sparse],
                                 weights=[alpha, 1 - alpha], higher_is_better=[False, True])
        metas = {key: m for key, _, m in sparse}
        metas.update((h.key, h.metadata) for h in dense)
        top = fused[:k]
        return VectorStoreQueryResult(nodes=[self._to_node(key, metas[key]) for key, _ in top],
                                      similarities=[s for _, s in top],
                                      ids=[key for key, _ in top])

    def _query_mmr(self, query: VectorStoreQuery, k: int, pred: Predicate | None,
                   **kwargs: Any) -> VectorStoreQueryResult:
        # SimpleVectorStore, the reference, runs MMR over every candidate
        # that passes the filters; an earlier version took only the 4 * k
        # nearest, which can return other nodes than the reference (a
        # diverse node ranked past 4 * k is never seen).  We now default to
        # all candidates and prefetch fewer only when asked, with the kwargs
        # other LlamaIndex stores accept (PGVector, Cassandra, ...).
        prefetch_k = kwargs.get("mmr_prefetch_k")
        factor = kwargs.get("mmr_prefetch_factor")
        if prefetch_k is not None and factor is not None:
            raise errors.InvalidArgument(
                "give mmr_prefetch_k or mmr_prefetch_factor, not both")
        embedding = list(query.query_embedding or ())
        if prefetch_k is None and factor is None:
            # In the store's key order, as SimpleVectorStore walks its dict:
            # MMR breaks ties by that order.
            keys, vectors = [], []
            for key in self._store.find(pred):
                vec = self._store.get(key)
                if vec is not None:  # a metadata-only record has no vector
                    keys.append(key)
                    vectors.append(vec.tolist())
            metas = {key: self._store.get_metadata(key) or {} for key in keys}
        else:
            n = int(prefetch_k) if prefetch_k is not None else int(k * float(factor))
            if n < 1:
                raise errors.InvalidArgument(
                    f"MMR prefetch must be at least 1, got {prefetch_k or factor!r}")
            hits = [h for h in self._store.search(embedding, max(k, n), filter=pred,
                                                  include_vectors=True)
                    if h.vector is not None]
            keys = [h.key for h in hits]
            vectors = [h.vector.tolist() for h in hits]  # type: ignore[union-attr]
            metas = {h.key: h.metadata for h in hits}
        if not keys:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        threshold = kwargs.get("mmr_threshold", query.mmr_threshold)
        scores, ids = get_top_k_mmr_embeddings(
            embedding, vectors, similarity_top_k=k, embedding_ids=keys,
            mmr_threshold=threshold)
        return VectorStoreQueryResult(
            nodes=[self._to_node(i, metas[i]) for i in ids],
            similarities=list(scores), ids=list(ids))

    # --------------------------------------------------------------- async
    # The store is thread-safe; running in a worker keeps file I/O off the loop.
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: list[str] | None = None,
                            filters: MetadataFilters | None = None,
                            **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(self, node_ids: list[str] | None = None,
                         filters: MetadataFilters | None = None) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)


# -------------------------------------------------------------- chat store
class SynaChatStore(BaseChatStore):
    """LlamaIndex chat history per key, in a synadb file.

    Layout: ``llamaindex/chat/<key>`` holds the next message number (an int;
    its presence is what makes the key exist, even with no messages), and
    ``llamaindex/chat/<key>/<number>`` holds one message as JSON.  ``<key>``
    is percent-encoded, so it never contains ``/`` or glob characters.
    Appending writes one message, not the whole conversation again.

    Args:
        path: the database file (created if missing).
        sync_on_write: fsync every write.

    >>> import tempfile, os
    >>> with SynaChatStore(os.path.join(tempfile.mkdtemp(), "chat.db")) as chats:
    ...     chats.add_message("u1", ChatMessage(role="user", content="hi"))
    ...     [m.content for m in chats.get_messages("u1")], chats.get_keys()
    (['hi'], ['u1'])
    """

    path: str

    _db: SynaDB = PrivateAttr()
    _lock: Any = PrivateAttr()

    def __init__(self, path: str | os.PathLike[str], *, sync_on_write: bool = False,
                 **kwargs: Any) -> None:
        db = SynaDB(path, sync_on_write=sync_on_write)
        try:
            super().__init__(path=db.path, **kwargs)  # type: ignore[call-arg]
        except BaseException:
            db.close()
            raise
        self._db = db
        # add_message reads the counter then writes; two threads must not interleave.
        self._lock = threading.RLock()

    @classmethod
    def class_name(cls) -> str:
        return "SynaChatStore"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def persist(self, persist_path: str | None = None, fs: Any = None) -> None:
        """fsync now; the file is always the persisted form."""
        self._db.sync()

    @staticmethod
    def _marker(key: str) -> str:
        if not isinstance(key, str) or not key:
            raise errors.InvalidKey(f"a chat key is a non-empty str, not {key!r}")
        return CHAT_KEY_PREFIX + quote(key, safe="")

    def _message_keys(self, key: str) -> list[str]:
        return sorted(self._db.keys(self._marker(key) + "/*"))

    def _load(self, db_key: str) -> ChatMessage:
        return ChatMessage.model_validate_json(self._db.get_text(db_key) or "{}")

    def _write_all(self, key: str, messages: Sequence[ChatMessage]) -> None:
        marker = self._marker(key)
        with self._db.batch():
            for old in self._message_keys(key):
                self._db.delete(old)
            for i, message in enumerate(messages):
                self._db.put_text(f"{marker}/{i:0{_SEQ_DIGITS}d}", message.model_dump_json())
            self._db.put_int(marker, len(messages))

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace the conversation under ``key`` (all or nothing)."""
        with self._lock:
            self._write_all(key, messages)

    def get_messages(self, key: str) -> list[ChatMessage]:
        """The messages under ``key``, oldest first ([] for an unknown key)."""
        with self._lock:
            return [self._load(k) for k in self._message_keys(key)]

    def add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        """Append ``message`` (or insert it at ``idx``, as ``SimpleChatStore`` allows)."""
        with self._lock:
            if idx is not None:
                messages = self.get_messages(key)
                messages.insert(idx, message)
                self._write_all(key, messages)
                return
            marker = self._marker(key)
            seq = self._db.get_int(marker) or 0
            with self._db.batch():
                self._db.put_text(f"{marker}/{seq:0{_SEQ_DIGITS}d}", message.model_dump_json())
                self._db.put_int(marker, seq + 1)

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete ``key`` and return its messages; None if there was no such key."""
        with self._lock:
            marker = self._marker(key)
            if not self._db.exists(marker):
                return None
            keys = self._message_keys(key)
            messages = [self._load(k) for k in keys]
            with self._db.batch():
                for k in keys:
                    self._db.delete(k)
                self._db.delete(marker)
            return messages

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete and return message ``idx`` (negative counts from the end);
        None if there is no such key or index."""
        with self._lock:
            keys = self._message_keys(key)
            if not -len(keys) <= idx < len(keys):
                return None
            message = self._load(keys[idx])
            self._db.delete(keys[idx])
            return message

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Delete and return the newest message; None if there is none."""
        return self.delete_message(key, -1)

    def get_keys(self) -> list[str]:
        """Every conversation key, in the order they were first written."""
        with self._lock:
            return [unquote(k[len(CHAT_KEY_PREFIX):])
                    for k in self._db.keys(CHAT_KEY_PREFIX + "*") if "/" not in
                    k[len(CHAT_KEY_PREFIX):]]


# ---------------------------------------------------------------- kv store
class SynaKVStore(BaseKVStore):
    """LlamaIndex's key/value store (under its docstore and index store) in a synadb file.

    Each value is a JSON object under ``__li_kv__/<collection>/<key>``, with
    the collection and the key percent-encoded (so neither holds ``/`` or a
    glob character).  Any number of collections, and a
    :class:`SynaVectorStore` or :class:`SynaChatStore`, can share the file;
    other handles and processes see each write as soon as it returns.

    ``put_all`` writes its pairs in chunks of ``batch_size``, each chunk all
    or nothing (one ``SynaDB.batch()``, fsynced at its end).

    Args:
        path: the database file (created if missing).
        sync_on_write: fsync every single ``put``/``delete`` too.
        read_only: open for reading only.

    >>> import tempfile, os
    >>> with SynaKVStore(os.path.join(tempfile.mkdtemp(), "kv.db")) as kv:
    ...     kv.put_all([("a", {"n": 1}), ("b", {"n": 2})], collection="c", batch_size=2)
    ...     kv.get("a", collection="c"), sorted(kv.get_all(collection="c"))
    ({'n': 1}, ['a', 'b'])
    """

    def __init__(self, path: str | os.PathLike[str], *, sync_on_write: bool = False,
                 read_only: bool = False) -> None:
        self._db = SynaDB(path, sync_on_write=sync_on_write, read_only=read_only)
        self.path = self._db.path

    @property
    def client(self) -> SynaDB:
        """The underlying :class:`synadb.SynaDB`."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def persist(self, persist_path: str | None = None, fs: Any = None) -> None:
        """fsync now; the file is always the persisted form (``persist_path`` is ignored)."""
        if not self._db.closed and not self._db.config.read_only:
            self._db.sync()

    @staticmethod
    def _prefix(collection: str) -> str:
        if not isinstance(collection, str) or not collection:
            raise errors.InvalidKey(f"a collection is a non-empty str, not {collection!r}")
        return f"{KV_KEY_PREFIX}{quote(collection, safe='')}/"

    @classmethod
    def _db_key(cls, key: str, collection: str) -> str:
        if not isinstance(key, str) or not key:
            raise errors.InvalidKey(f"a key is a non-empty str, not {key!r}")
        return cls._prefix(collection) + quote(key, safe="")

    @staticmethod
    def _encode(key: str, val: dict[str, Any]) -> str:
        if not isinstance(val, dict):
            raise errors.InvalidArgument(f"value for {key!r} must be a dict, not "
                                         f"{type(val).__name__}")
        try:
            return json.dumps(val, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgument(f"value for {key!r} is not JSON: {e}") from e

    @staticmethod
    def _decode(raw: str | None) -> dict[str, Any] | None:
        return None if raw is None else json.loads(raw)

    # -------------------------------------------------------------- writes
    def put(self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION) -> None:
        """Store ``val`` (a JSON-able dict) under ``key`` in ``collection``."""
        self._db.put_text(self._db_key(key, collection), self._encode(key, val))

    def put_all(self, kv_pairs: list[tuple[str, dict[str, Any]]],
                collection: str = DEFAULT_COLLECTION, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Store every pair, ``batch_size`` pairs per all-or-nothing batch.

        Every value is encoded before anything is written, so a value that is
        not JSON writes nothing at all.

        Raises:
            InvalidArgument: ``batch_size`` below 1, or a value that is not a JSON dict.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise errors.InvalidArgument(f"batch_size must be an int >= 1, not {batch_size!r}")
        rows = [(self._db_key(k, collection), self._encode(k, v)) for k, v in kv_pairs]
        for start in range(0, len(rows), batch_size):
            with self._db.batch():
                for db_key, text in rows[start:start + batch_size]:
                    self._db.put_text(db_key, text)

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        """Delete ``key``; whether it was there."""
        return self._db.delete(self._db_key(key, collection))

    # --------------------------------------------------------------- reads
    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        """The value under ``key`` (a fresh dict), or None."""
        return self._decode(self._db.get_text(self._db_key(key, collection)))

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        """Every key of ``collection`` and its value, in first-written order."""
        prefix = self._prefix(collection)
        names = self._db.keys(prefix + "*")
        out: dict[str, dict[str, Any]] = {}
        for name, raw in zip(names, self._db.get_many(names)):
            if raw is not None:  # deleted between keys() and get_many()
                out[unquote(name[len(prefix):])] = json.loads(raw)
        return out

    def collections(self) -> list[str]:
        """The collections that hold at least one key."""
        seen: dict[str, None] = {}
        for name in self._db.keys(KV_KEY_PREFIX + "*"):
            seen[unquote(name[len(KV_KEY_PREFIX):].split("/", 1)[0])] = None
        return list(seen)

    # --------------------------------------------------------------- async
    # The database is thread-safe; a worker keeps file I/O off the loop.
    async def aput(self, key: str, val: dict[str, Any],
                   collection: str = DEFAULT_COLLECTION) -> None:
        await asyncio.to_thread(self.put, key, val, collection)

    async def aput_all(self, kv_pairs: list[tuple[str, dict[str, Any]]],
                       collection: str = DEFAULT_COLLECTION,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        await asyncio.to_thread(self.put_all, kv_pairs, collection, batch_size)

    async def aget(self, key: str,
                   collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.get, key, collection)

    async def aget_all(self,
                       collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self.get_all, collection)

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return await asyncio.to_thread(self.delete, key, collection)


# ------------------------------------------------------ doc and index store
class _OnSynaKV:
    """What the document and index stores share: their SynaKVStore, its
    file, and closing and persisting it (the file is always the persisted
    form)."""

    _syna: SynaKVStore

    @property
    def kvstore(self) -> SynaKVStore:
        return self._syna

    @property
    def path(self) -> str:
        return self._syna.path

    def close(self) -> None:
        self._syna.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def persist(self, persist_path: str | None = None, fs: Any = None) -> None:
        """fsync now; the file is always the persisted form (``persist_path`` is ignored)."""
        self._syna.persist()


class SynaDocumentStore(_OnSynaKV, KVDocumentStore):
    """LlamaIndex's document store (nodes, hashes, ref-doc info) in a synadb file.

    A ``KVDocumentStore`` over :class:`SynaKVStore`, as ``SimpleDocumentStore``
    is over ``SimpleKVStore``; collections are ``<namespace>/data``,
    ``<namespace>/metadata`` and ``<namespace>/ref_doc_info``.  Several
    namespaces, an index store and a vector store can share one file.

    Each change is all or nothing: ``add_documents``, ``delete_document``,
    ``delete_ref_doc`` and ``set_document_hashes`` each run in one
    ``SynaDB.batch()``, so another process never sees a node without its
    hash or ref-doc entry.

    Args:
        path: the database file (created if missing).
        namespace: prefix of the collections (``"docstore"``).
        batch_size: pairs per batch within one change (they all commit together).
        **kv_options: passed to :class:`SynaKVStore` (``sync_on_write``, ``read_only``).

    >>> import tempfile, os
    >>> with SynaDocumentStore(os.path.join(tempfile.mkdtemp(), "d.db")) as docs:
    ...     docs.add_documents([TextNode(id_="n1", text="hello")])
    ...     docs.get_node("n1").text, docs.document_exists("n2")
    ('hello', False)
    """

    def __init__(self, path: str | os.PathLike[str], namespace: str | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, **kv_options: Any) -> None:
        self._syna = SynaKVStore(path, **kv_options)
        super().__init__(self._syna, namespace=namespace, batch_size=batch_size)


    # The base class writes a change as several put_all/delete calls; one
    # batch around them makes the change atomic, and holds the file's write
    # lock across its read-modify-write of the ref-doc info, so two
    # processes adding nodes of one document do not lose each other's ids.
    def add_documents(self, docs: Sequence[BaseNode], allow_update: bool = True,
                      batch_size: int | None = None, store_text: bool = True) -> None:
        with self._syna.client.batch():
            super().add_documents(docs, allow_update=allow_update, batch_size=batch_size,
                                  store_text=store_text)

    def delete_document(self, doc_id: str, raise_error: bool = True) -> None:
        with self._syna.client.batch():
            super().delete_document(doc_id, raise_error=raise_error)

    def delete_ref_doc(self, ref_doc_id: str, raise_error: bool = True) -> None:
        with self._syna.client.batch():
            super().delete_ref_doc(ref_doc_id, raise_error=raise_error)

    def set_document_hashes(self, doc_hashes: dict[str, str]) -> None:
        with self._syna.client.batch():
            super().set_document_hashes(doc_hashes)

    # The async changes run the sync ones in one worker thread: a batch
    # holds the handle's lock in its thread, so its parts must not hop to
    # other threads (the base class's awaits would deadlock on it).
    async def async_add_documents(self, docs: Sequence[BaseNode], allow_update: bool = True,
                                  batch_size: int | None = None,
                                  store_text: bool = True) -> None:
        await asyncio.to_thread(self.add_documents, docs, allow_update, batch_size, store_text)

    async def adelete_document(self, doc_id: str, raise_error: bool = True) -> None:
        await asyncio.to_thread(self.delete_document, doc_id, raise_error)

    async def adelete_ref_doc(self, ref_doc_id: str, raise_error: bool = True) -> None:
        await asyncio.to_thread(self.delete_ref_doc, ref_doc_id, raise_error)

    async def aset_document_hashes(self, doc_hashes: dict[str, str]) -> None:
        await asyncio.to_thread(self.set_document_hashes, doc_hashes)


class SynaIndexStore(_OnSynaKV, KVIndexStore):
    """LlamaIndex's index store (index structs) in a synadb file.

    A ``KVIndexStore`` over :class:`SynaKVStore`, as ``SimpleIndexStore`` is
    over ``SimpleKVStore``; the collection is ``<namespace>/data``.

    Args:
        path: the database file (created if missing).
        namespace: prefix of the collection (``"index_store"``).
        **kv_options: passed to :class:`SynaKVStore` (``sync_on_write``, ``read_only``).

    One file for a whole ``StorageContext``::

        ctx = StorageContext.from_defaults(
            vector_store=SynaVectorStore("rag.db"), docstore=SynaDocumentStore("rag.db"),
            index_store=SynaIndexStore("rag.db"))
        index = VectorStoreIndex.from_documents(docs, storage_context=ctx,
                                                embed_model=embed_model)
        # later, in any process:
        index = load_index_from_storage(StorageContext.from_defaults(...same...),
                                        embed_model=embed_model)
    """

    def __init__(self, path: str | os.PathLike[str], namespace: str | None = None,
                 **kv_options: Any) -> None:
        self._syna = SynaKVStore(path, **kv_options)
        super().__init__(self._syna, namespace=namespace)

