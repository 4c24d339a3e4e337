"""LlamaIndex adapters: a vector store and a chat store, each one synadb file.

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

Chat history per key, kept across reopen::

    chats = SynaChatStore("chat.db")
    chats.add_message("user-42", ChatMessage(role="user", content="hi"))
    chats.get_messages("user-42")
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from typing_extensions import Self  # typing.Self is 3.11+; we support 3.10
from urllib.parse import quote, unquote

from .. import errors
from ..db import SynaDB
from ..vectors.store import VectorStore

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
    from llama_index.core.llms import ChatMessage
    from llama_index.core.schema import BaseNode, TextNode
    from llama_index.core.storage.chat_store.base import BaseChatStore
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

__all__ = ["NODE_ID_KEY", "SynaChatStore", "SynaVectorStore", "metadata_filters_to_predicate"]

#: Metadata key holding the node id inside each record.  The store's filter
#: predicates see only metadata, and ``query(node_ids=...)`` must be one of them.
NODE_ID_KEY = "_node_id"
#: Keys every record carries besides the node's own metadata (LlamaIndex's
#: layout plus ours); a node's metadata round-trips without them.
_TEXT_KEYS = ("text", "_page_content", "content")
_RESERVED = ("_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id", NODE_ID_KEY)
CHAT_KEY_PREFIX = "llamaindex/chat/"
_SEQ_DIGITS = 12  # zero-padded, so key order is message order
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
    # A list field is in the set when any element is (as in Qdrant or Mongo);
    # upstream's plain ``value in wanted`` never matches a list field.
    if isinstance(value, list):
        return any(v in wanted for v in value)
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
    ``nin`` and ``is_empty``.

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
        except BaseException:
            store.close()
            raise
        self._store = store

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
        """Close the file (snapshotting the ANN index if it changed)."""
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
        ids, vectors, metas = [], [], []
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
        sizes = {len(v) for v in vectors}
        if len(sizes) > 1:  # numpy would raise a bare ValueError on the ragged matrix
            raise errors.DimensionMismatch(
                f"embeddings of different sizes {sorted(sizes)} in one add()")
        self._store.insert_batch(ids, vectors, metas)
        self.dimensions = self._store.dimensions
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node whose source document is ``ref_doc_id``."""
        keys = self._store.find(lambda m: m.get("ref_doc_id") == ref_doc_id)
        if keys:
            self._store.delete_many(keys)

    def delete_nodes(self, node_ids: list[str] | None = None,
                     filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        """Delete the nodes in ``node_ids`` that match ``filters``.

        With neither, every node is deleted (as ``SimpleVectorStore`` does).
        """
        keys = self._select(node_ids, filters)
        if keys:
            self._store.delete_many(keys)

    def clear(self) -> None:
        """Delete every node."""
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

        Modes: ``default`` and ``mmr`` (``mmr_threshold`` from the query or
        kwargs; candidates: ``mmr_prefetch_factor`` (4) times top k).

        Raises:
            InvalidArgument: no query embedding, or another query mode.
        """
        mode = VectorStoreQueryMode(query.mode)
        if mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise errors.InvalidArgument(f"SynaVectorStore does not support {mode.value!r} "
                                         "queries; use 'default' or 'mmr'")
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

    def _query_mmr(self, query: VectorStoreQuery, k: int, pred: Predicate | None,
                   **kwargs: Any) -> VectorStoreQueryResult:
        factor = float(kwargs.get("mmr_prefetch_factor", 4.0))
        embedding = list(query.query_embedding or ())
        hits = self._store.search(embedding, max(k, int(k * factor)),
                                  filter=pred, include_vectors=True)
        if not hits:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        threshold = kwargs.get("mmr_threshold", query.mmr_threshold)
        scores, ids = get_top_k_mmr_embeddings(
            embedding, [h.vector.tolist() for h in hits if h.vector is not None],
            similarity_top_k=k, embedding_ids=[h.key for h in hits], mmr_threshold=threshold)
        by_key = {h.key: h for h in hits}
        return VectorStoreQueryResult(
            nodes=[self._to_node(i, by_key[i].metadata) for i in ids],
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
