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
    store.similarity_search_with_relevance_scores("one file")  # in [0, 1], higher is closer
    store.max_marginal_relevance_search("one file", k=2, fetch_k=10)

Async: every ``a*`` method runs its sync twin in an executor (the store is
thread-safe).  Retriever: ``store.as_retriever(search_kwargs={"k": 3})``.

Chat history and loading keys as documents::

    history = SynaChatMessageHistory("chat.db", session_id="user-42")
    history.add_user_message("hi"); history.messages; history.clear()
    docs = SynaDocumentLoader("notes.db", "notes/*").load()
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from typing_extensions import Self  # typing.Self is 3.11+; we support 3.10

import numpy as np

from .. import errors
from ..db import Storage, SynaDB
from ..vectors.store import VectorStore as _VectorStore

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.document_loaders import BaseLoader
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency(
        "langchain-core", "langchain", "synadb.integrations.langchain") from e

__all__ = ["PAGE_CONTENT_KEY", "SynaChatMessageHistory", "SynaDocumentLoader", "SynaVectorStore"]

#: The metadata key that holds a document's text inside the record; it is
#: stripped from the metadata of every Document we return.
PAGE_CONTENT_KEY = "_page_content"
CHAT_KEY_PREFIX = "chat/"

Filter = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]


def _clamp01(x: float) -> float:
    # Rounding can put an exact match at 1.0000001; LangChain warns on any
    # relevance outside [0, 1], and pytest (filterwarnings=error) fails on it.
    return min(1.0, max(0.0, x))


def _cosine_relevance(distance: float) -> float:
    # Our cosine distance is 1 - cos, in [0, 2]; LangChain's own
    # _cosine_relevance_score_fn (1 - d) assumes [0, 1] and goes negative.
    return _clamp01(1.0 - distance / 2.0)


def _euclidean_relevance(distance: float) -> float:
    # LangChain's convention (1 - d/sqrt 2, exact for unit vectors up to 90°),
    # clamped: larger distances all mean "not relevant".
    return _clamp01(1.0 - distance / math.sqrt(2))


def _dot_relevance(score: float) -> float:
    # Our score is -(q·v).  (1 + q·v)/2 equals the cosine mapping on unit
    # vectors.  LangChain's _max_inner_product_relevance_score_fn is not
    # monotonic in q·v around 0, so it would reorder results.
    return _clamp01((1.0 - score) / 2.0)


_RELEVANCE = {"cosine": _cosine_relevance, "euclidean": _euclidean_relevance,
              "dot_product": _dot_relevance}


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

    # ----------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Persist the index snapshot and close the file."""
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
        if ids is None:
            self.store.clear()
        else:
            self.store.delete_many(list(ids))
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
