"""The LangChain storage surfaces beside the vector store: record manager,
byte store, exact and semantic LLM caches; and relevance scores that agree
with LangChain's InMemoryVectorStore.

langchain-tests ships standard suites for byte stores and caches (run here
unmodified); it has none for record managers (its ``indexer`` suite is for
``DocumentIndex``), so the record manager is held to the RecordManager
docstrings' contract below and, end to end, to ``index()`` itself.
"""

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.globals import set_llm_cache
from langchain_core.indexing import aindex, index
from langchain_core.language_models import FakeListChatModel, FakeListLLM
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.messages import AIMessage
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import (
    AsyncCacheTestSuite,
    BaseStoreAsyncTests,
    BaseStoreSyncTests,
    SyncCacheTestSuite,
)

from synadb import SynaDB, errors
from synadb.integrations import langchain as lc
from synadb.integrations.langchain import (
    SynaByteStore,
    SynaCache,
    SynaRecordManager,
    SynaSemanticCache,
    SynaVectorStore,
)

ROOT = str(Path(__file__).resolve().parents[1])


class AxisEmbeddings(Embeddings):
    """Texts name their vectors ("1 0 0 ..."), so the geometry is chosen by
    the test; anything after the numbers is ignored."""

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text):
        return [float(x) for x in text.split()[:3]]


def run_child(code: str, **fmt: object) -> str:
    """Run ``code`` in a fresh interpreter (synadb from this checkout)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code).format(**fmt)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(autouse=True)
def no_global_cache():
    yield
    set_llm_cache(None)


# ====================================================================
# Standard suites from langchain-tests, unmodified
# ====================================================================

class TestSynaByteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, tmp_path) -> Iterator[SynaByteStore]:
        with SynaByteStore(tmp_path / "bs.db") as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar", b"buzz"


class TestSynaByteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, tmp_path) -> Iterator[SynaByteStore]:
        with SynaByteStore(tmp_path / "bs.db") as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar", b"buzz"


class TestSynaCacheSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path) -> Iterator[SynaCache]:
        with SynaCache(tmp_path / "cache.db") as cache:
            yield cache


class TestSynaCacheAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, tmp_path) -> Iterator[SynaCache]:
        with SynaCache(tmp_path / "cache.db") as cache:
            yield cache


class TestSynaSemanticCacheSync(SyncCacheTestSuite):
    # An exact repeat has similarity 1, so the exact-cache suite holds too.
    @pytest.fixture
    def cache(self, tmp_path) -> Iterator[SynaSemanticCache]:
        with SynaSemanticCache(tmp_path / "cache.db", DeterministicFakeEmbedding(size=16)) as c:
            yield c


class TestSynaSemanticCacheAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, tmp_path) -> Iterator[SynaSemanticCache]:
        with SynaSemanticCache(tmp_path / "cache.db", DeterministicFakeEmbedding(size=16)) as c:
            yield c


# ====================================================================
# Record manager: the RecordManager contract, sync and async
# ====================================================================

@pytest.fixture
def rm(tmp_path) -> Iterator[SynaRecordManager]:
    with SynaRecordManager("kittens", tmp_path / "rm.db") as manager:
        manager.create_schema()
        yield manager


class Api:
    """Calls the sync or the async method of the same name."""

    def __init__(self, manager, use_async):
        self.m, self.use_async = manager, use_async

    def __getattr__(self, name):
        if not self.use_async:
            return getattr(self.m, name)
        method = getattr(self.m, "a" + name)

        def call(*args, **kwargs):
            import asyncio
            return asyncio.run(method(*args, **kwargs))
        return call


@pytest.fixture(params=["sync", "async"])
def api(rm, request):
    return Api(rm, request.param == "async")


def test_update_and_exists(api):
    api.update(["key1", "key2", "key3"])
    assert api.exists(["key1", "key2", "key3", "key4"]) == [True, True, True, False]
    assert sorted(api.list_keys()) == ["key1", "key2", "key3"]
    api.update(["key1"])  # an upsert: no duplicate
    assert sorted(api.list_keys()) == ["key1", "key2", "key3"]
    api.update([])
    assert api.exists([]) == []


def test_update_timestamps_and_before_after(api):
    t0 = api.get_time()
    api.update(["a", "b"])
    t1 = api.get_time()
    api.update(["c"])
    api.update(["a"])  # refreshing a moves it past t1
    t2 = api.get_time()
    assert t0 < t1 < t2
    assert sorted(api.list_keys(before=t1)) == ["b"]
    assert sorted(api.list_keys(after=t1)) == ["a", "c"]
    assert sorted(api.list_keys(after=t0, before=t2)) == ["a", "b", "c"]
    assert api.list_keys(after=t2) == []
    assert api.list_keys(before=t0) == []


def test_group_ids_and_limit(api):
    api.update(["a", "b", "c", "d"], group_ids=["g1", "g2", None, "g1"])
    assert sorted(api.list_keys(group_ids=["g1"])) == ["a", "d"]
    assert sorted(api.list_keys(group_ids=["g1", "g2"])) == ["a", "b", "d"]
    assert sorted(api.list_keys(group_ids=[])) == ["a", "b", "c", "d"]  # no filter
    assert len(api.list_keys(limit=2)) == 2
    assert len(api.list_keys(group_ids=["g1"], limit=1)) == 1
    api.update(["a"], group_ids=["g2"])  # the group moves with the update
    assert sorted(api.list_keys(group_ids=["g2"])) == ["a", "b"]


def test_delete_keys(api):
    api.update(["a", "b", "c"])
    api.delete_keys(["a", "c", "missing"])
    assert api.exists(["a", "b", "c"]) == [False, True, False]
    assert api.list_keys() == ["b"]
    api.delete_keys([])


def test_bad_input(api):
    with pytest.raises(ValueError, match="group_ids"):
        api.update(["a", "b"], group_ids=["g"])
    with pytest.raises(ValueError, match="time_at_least"):
        api.update(["a"], time_at_least=api.get_time() + 3600)
    with pytest.raises(errors.InvalidKey):
        api.update(["x" * 2000])
    assert api.list_keys() == []  # nothing half-written
    api.update(["a"], time_at_least=api.get_time())


def test_get_time_is_strictly_increasing_when_the_clock_steps_back(rm, tmp_path, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(lc, "_now", lambda: clock[0])
    t1 = rm.get_time()
    rm.update(["a"])
    clock[0] -= 60.0  # NTP steps the clock back a minute
    t2 = rm.get_time()
    assert t2 > t1
    rm.update(["b"], time_at_least=t2)
    assert rm.list_keys(before=t2) == ["a"] and rm.list_keys(after=t2) == ["b"]
    # A fresh handle (another process, later) starts above the stored clock.
    with SynaRecordManager("kittens", rm.path) as again:
        assert again.get_time() > t2


def test_namespaces_are_apart(tmp_path):
    path = tmp_path / "rm.db"
    with SynaRecordManager("a", path) as a, SynaRecordManager("a/b", path) as ab, \
            SynaRecordManager("*", path) as star:
        a.update(["k1"]); ab.update(["k2"]); star.update(["k3"])
        assert a.list_keys() == ["k1"] and ab.list_keys() == ["k2"]
        assert star.list_keys() == ["k3"]
        assert a.exists(["k2", "k3"]) == [False, False]
    with pytest.raises(errors.InvalidArgument):
        SynaRecordManager("", path)


# ====================================================================
# index() end to end, with the vectors in the same file
# ====================================================================

def _docs(*pairs):
    return [Document(page_content=text, metadata={"source": src}) for text, src in pairs]


def test_index_incremental_and_full_in_one_file(tmp_path):
    path = tmp_path / "rag.db"
    emb = DeterministicFakeEmbedding(size=8)
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("synadb/docs", path) as rm:
        docs = _docs(("kitty", "1"), ("doggy", "1"), ("birdy", "2"))
        assert index(docs, rm, vs, key_encoder="sha256", cleanup="incremental", source_id_key="source") == {
            "num_added": 3, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
        # Unchanged documents are skipped, not re-embedded.
        assert index(docs, rm, vs, key_encoder="sha256", cleanup="incremental", source_id_key="source") == {
            "num_added": 0, "num_updated": 0, "num_skipped": 3, "num_deleted": 0}
        # Source 1 changes one document: incremental cleanup deletes the old
        # version of that source only.
        changed = _docs(("kitty v2", "1"), ("doggy", "1"))
        assert index(changed, rm, vs, key_encoder="sha256", cleanup="incremental", source_id_key="source") == {
            "num_added": 1, "num_updated": 0, "num_skipped": 1, "num_deleted": 1}
        assert sorted(d.page_content for d in vs.similarity_search("x", k=10)) == [
            "birdy", "doggy", "kitty v2"]
    # Reopen: the records are still there; full cleanup removes what is not
    # in this run (source 2's birdy).
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("synadb/docs", path) as rm:
        assert len(rm.list_keys()) == 3
        assert index(changed, rm, vs, key_encoder="sha256", cleanup="full") == {
            "num_added": 0, "num_updated": 0, "num_skipped": 2, "num_deleted": 1}
        assert sorted(d.page_content for d in vs.similarity_search("x", k=10)) == [
            "doggy", "kitty v2"]
        assert len(rm.list_keys()) == 2
        assert vs.get_by_ids(rm.list_keys())  # record keys are the vector ids


def test_index_scoped_full_and_none(tmp_path):
    path = tmp_path / "rag.db"
    emb = DeterministicFakeEmbedding(size=8)
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("ns", path) as rm:
        index(_docs(("a", "s1"), ("b", "s1"), ("c", "s2")), rm, vs, key_encoder="sha256",
              cleanup=None, source_id_key="source")
        # scoped_full: only the sources seen in this run are cleaned.
        got = index(_docs(("a2", "s1")), rm, vs, key_encoder="sha256", cleanup="scoped_full", source_id_key="source")
        assert got == {"num_added": 1, "num_updated": 0, "num_skipped": 0, "num_deleted": 2}
        assert sorted(d.page_content for d in vs.similarity_search("x", k=10)) == ["a2", "c"]
        # key_encoder="sha256", cleanup=None never deletes.
        got = index(_docs(("z", "s3")), rm, vs, key_encoder="sha256", cleanup=None)
        assert got["num_added"] == 1 and got["num_deleted"] == 0
        assert len(vs.similarity_search("x", k=10)) == 3


async def test_aindex_incremental(tmp_path):
    path = tmp_path / "rag.db"
    emb = DeterministicFakeEmbedding(size=8)
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("ns", path) as rm:
        docs = _docs(("kitty", "1"), ("doggy", "2"))
        first = await aindex(docs, rm, vs, key_encoder="sha256", cleanup="incremental", source_id_key="source")
        again = await aindex(docs, rm, vs, key_encoder="sha256", cleanup="incremental", source_id_key="source")
        full = await aindex(docs[:1], rm, vs, key_encoder="sha256", cleanup="full")
        assert (first["num_added"], again["num_skipped"], full["num_deleted"]) == (2, 2, 1)


# ====================================================================
# Byte store
# ====================================================================

def test_byte_store_namespaces_prefixes_and_reopen(tmp_path):
    path = tmp_path / "bs.db"
    with SynaByteStore(path) as a, SynaByteStore(path, namespace="other") as b:
        a.mset([("doc/1", b"one"), ("doc/2", b"two"), ("x[1]*", b"glob")])
        b.mset([("doc/1", b"OTHER")])
        assert sorted(a.yield_keys(prefix="doc/")) == ["doc/1", "doc/2"]
        assert list(a.yield_keys(prefix="x[")) == ["x[1]*"]
        assert list(b.yield_keys()) == ["doc/1"]
        with pytest.raises(errors.InvalidType):
            a.mset([("k", "not bytes")])
        with pytest.raises(errors.InvalidKey):
            a.mset([("k" * 2000, b"v")])
        assert a.mget(["k" * 2000]) == [None]
    with SynaByteStore(path) as a:
        assert a.mget(["doc/1", "doc/2", "nope"]) == [b"one", b"two", None]


def test_parent_document_retriever_end_to_end(tmp_path):
    retrievers = pytest.importorskip(
        "langchain_classic.retrievers",
        reason="ParentDocumentRetriever lives in langchain-classic")
    from langchain_classic.storage import create_kv_docstore
    from langchain_text_splitters import CharacterTextSplitter

    path = tmp_path / "rag.db"
    emb = DeterministicFakeEmbedding(size=8)
    parents = [Document(page_content="alpha one. alpha two. alpha three.", metadata={"n": 1}),
               Document(page_content="beta one. beta two.", metadata={"n": 2})]

    def retriever(vs, bs):
        return retrievers.ParentDocumentRetriever(
            vectorstore=vs, docstore=create_kv_docstore(bs),
            child_splitter=CharacterTextSplitter(separator=". ", chunk_size=10, chunk_overlap=0))

    with SynaVectorStore(path, emb) as vs, SynaByteStore(path, "parents") as bs:
        retriever(vs, bs).add_documents(parents)
        assert len(list(bs.yield_keys())) == 2
        assert len(vs.similarity_search("x", k=50)) > 2  # the children
    with SynaVectorStore(path, emb) as vs, SynaByteStore(path, "parents") as bs:
        got = retriever(vs, bs).invoke("beta two.")  # a child's exact text
        # The child "beta two" is found; its whole parent comes back.
        assert got[0].page_content == "beta one. beta two." and got[0].metadata == {"n": 2}


# ====================================================================
# Exact LLM cache
# ====================================================================

def test_llm_cache_serves_the_second_call_and_other_processes(tmp_path):
    path = tmp_path / "cache.db"
    with SynaCache(path) as cache:
        set_llm_cache(cache)
        llm = FakeListLLM(responses=["first", "second"])
        assert llm.invoke("what?") == "first"
        assert llm.invoke("what?") == "first"  # served from the cache
        assert llm.i == 1  # the model was called once
        chat = FakeListChatModel(responses=["hello", "bye"])
        assert chat.invoke("hi").content == "hello"
        assert chat.invoke("hi").content == "hello"
        set_llm_cache(None)
    # A second process, with the same models, is served from the file.
    out = run_child("""
        from langchain_core.globals import set_llm_cache
        from langchain_core.language_models import FakeListChatModel, FakeListLLM
        from synadb.integrations.langchain import SynaCache
        set_llm_cache(SynaCache({path!r}))
        llm = FakeListLLM(responses=["first", "second"])
        chat = FakeListChatModel(responses=["hello", "bye"])
        print(llm.invoke("what?"), llm.i, chat.invoke("hi").content, chat.i)
        print(llm.invoke("new prompt"))
    """, path=str(path))
    assert out.split() == ["first", "0", "hello", "0", "first"]


def test_cache_keys_on_prompt_and_llm_string_and_clears(tmp_path):
    gens = [ChatGeneration(message=AIMessage(content="x")), Generation(text="y")]
    with SynaCache(tmp_path / "c.db") as cache:
        long_prompt = "p" * 5000  # longer than a key may be: the key is a hash
        cache.update(long_prompt, "llm-a", gens)
        assert cache.lookup(long_prompt, "llm-a") == gens
        assert cache.lookup(long_prompt, "llm-b") is None
        assert cache.lookup(long_prompt + "!", "llm-a") is None
        with pytest.raises(errors.InvalidType):
            cache.update("p", "llm", ["not a generation"])
        cache.clear()
        assert cache.lookup(long_prompt, "llm-a") is None


# ====================================================================
# Semantic cache
# ====================================================================

def test_semantic_cache_threshold_and_llm_string(tmp_path):
    with SynaSemanticCache(tmp_path / "s.db", AxisEmbeddings(), score_threshold=0.9) as cache:
        cache.update("1 0 0 what is up", "llm-a", [Generation(text="up")])
        cache.update("0 1 0 what is down", "llm-a", [Generation(text="down")])
        # cos(25°) = 0.906: a hit; cos(30°) = 0.866: a miss.
        near = f"{math.cos(math.radians(25))} {math.sin(math.radians(25))} 0 paraphrase"
        far = f"{math.cos(math.radians(30))} {math.sin(math.radians(30))} 0 paraphrase"
        assert cache.lookup(near, "llm-a") == [Generation(text="up")]
        assert cache.lookup(far, "llm-a") is None
        assert cache.lookup("0 0.9 0.1 down-ish", "llm-a") == [Generation(text="down")]
        assert cache.lookup("1 0 0", "llm-b") is None  # per model
        assert cache.lookup("0 0 0", "llm-a") is None  # no direction, no match
        cache.update("1 0 0 again", "llm-a", [Generation(text="up2")])  # nearest wins
        assert cache.lookup("1 0 0", "llm-a")[0].text in {"up", "up2"}
        cache.update("1 0 0", "llm-b", [Generation(text="b")])
        cache.clear(llm_string="llm-a")
        assert cache.lookup("1 0 0", "llm-a") is None
        assert cache.lookup("1 0 0", "llm-b") == [Generation(text="b")]
        cache.clear()
        assert cache.lookup("1 0 0", "llm-b") is None
    with pytest.raises(errors.InvalidArgument):
        SynaSemanticCache(tmp_path / "s.db", AxisEmbeddings(), score_threshold=2)


def test_semantic_cache_with_set_llm_cache_and_reopen(tmp_path):
    path = tmp_path / "s.db"
    with SynaSemanticCache(path, DeterministicFakeEmbedding(size=16)) as cache:
        set_llm_cache(cache)
        llm = FakeListLLM(responses=["first", "second"])
        assert [llm.invoke("q"), llm.invoke("q"), llm.i] == ["first", "first", 1]
        set_llm_cache(None)
    with SynaSemanticCache(path, DeterministicFakeEmbedding(size=16)) as cache:
        set_llm_cache(cache)
        llm = FakeListLLM(responses=["first", "second"])
        assert [llm.invoke("q"), llm.i] == ["first", 0]


# ====================================================================
# Relevance scores agree with InMemoryVectorStore
# ====================================================================

def test_cosine_relevance_equals_in_memory_vector_store(tmp_path):
    emb = DeterministicFakeEmbedding(size=16)
    texts = [f"text {i}" for i in range(30)]
    ids = [str(i) for i in range(30)]
    mem = InMemoryVectorStore(emb)
    mem.add_texts(texts, ids=ids)
    with SynaVectorStore(tmp_path / "lc.db", emb) as vs:
        vs.add_texts(texts, ids=ids)
        for query in ["text 3", "text 17", "something else"]:
            # InMemoryVectorStore reports cos as its score and implements no
            # relevance function; ours is cos, clamped to [0, 1].
            want = {d.id: s for d, s in mem.similarity_search_with_score(query, k=30)}
            got = {d.id: s for d, s in vs.similarity_search_with_relevance_scores(query, k=30)}
            assert got.keys() == want.keys()
            for key in want:
                assert got[key] == pytest.approx(min(1.0, max(0.0, want[key])), abs=1e-5)
            assert any(s < 0 for s in want.values())  # the clamp was exercised


def test_score_threshold_retriever_matches_in_memory(tmp_path):
    emb = AxisEmbeddings()
    degrees = [0, 20, 45, 59, 61, 89, 120, 180]
    texts = [f"{math.cos(math.radians(a))} {math.sin(math.radians(a))} 0" for a in degrees]
    ids = [f"deg{a}" for a in degrees]
    mem = InMemoryVectorStore(emb)
    mem.add_texts(texts, ids=ids)
    want = {d.id for d, s in mem.similarity_search_with_score("1 0 0", k=len(texts))
            if s >= 0.5}
    assert want == {"deg0", "deg20", "deg45", "deg59"}
    with SynaVectorStore(tmp_path / "lc.db", emb) as vs:
        vs.add_texts(texts, ids=ids)
        retriever = vs.as_retriever(search_type="similarity_score_threshold",
                                    search_kwargs={"score_threshold": 0.5, "k": len(texts)})
        assert {d.id for d in retriever.invoke("1 0 0")} == want


@pytest.mark.parametrize("metric", ["euclidean", "dot_product"])
def test_other_metrics_follow_langchain_functions(tmp_path, metric):
    emb = AxisEmbeddings()
    texts = ["1 0 0", "0.6 0.8 0", "0 1 0", "-1 0 0"]
    with SynaVectorStore(tmp_path / "lc.db", emb, metric=metric) as vs:
        vs.add_texts(texts, ids=texts)
        got = {d.id: s for d, s in vs.similarity_search_with_relevance_scores("1 0 0", k=4)}
        q = np.array([1.0, 0, 0])
        for t in texts:
            v = np.array(emb.embed_query(t))
            if metric == "euclidean":  # LangChain's 1 - d/sqrt(2), clamped
                want = 1.0 - float(np.linalg.norm(q - v)) / math.sqrt(2)
            else:  # LangChain's inner-product function for q·v >= 0; 0 below
                want = float(q @ v)
            assert got[t] == pytest.approx(min(1.0, max(0.0, want)), abs=1e-6)


# ====================================================================
# One file for everything; reopen; live across processes
# ====================================================================

def test_every_surface_in_one_file_survives_reopen(tmp_path):
    path = tmp_path / "rag.db"
    emb = DeterministicFakeEmbedding(size=8)
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("ns", path) as rm, \
            SynaByteStore(path) as bs, SynaByteStore(path, "two") as bs2, \
            SynaCache(path) as cache, SynaSemanticCache(path, emb) as scache, \
            lc.SynaChatMessageHistory(path, "s") as chat:
        index(_docs(("kitty", "1")), rm, vs, key_encoder="sha256", cleanup="full")
        bs.mset([("k", b"v")]); bs2.mset([("k", b"v2")])
        cache.update("p", "llm", [Generation(text="exact")])
        scache.update("p", "llm", [Generation(text="semantic")])
        chat.add_user_message("hi")
        # None of the surfaces sees the others' keys.
        assert len(vs.similarity_search("x", k=10)) == 1
        assert list(bs.yield_keys()) == ["k"]
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("ns", path) as rm, \
            SynaByteStore(path) as bs, SynaByteStore(path, "two") as bs2, \
            SynaCache(path) as cache, SynaSemanticCache(path, emb) as scache:
        assert [d.page_content for d in vs.similarity_search("kitty", k=10)] == ["kitty"]
        assert rm.exists(rm.list_keys()) == [True]
        assert bs.mget(["k"]) == [b"v"] and bs2.mget(["k"]) == [b"v2"]
        assert cache.lookup("p", "llm") == [Generation(text="exact")]
        assert scache.lookup("p", "llm") == [Generation(text="semantic")]
    with SynaDB(path) as db:
        assert db.verify().ok


def test_another_process_writes_the_parent_sees_it_live(tmp_path):
    path = tmp_path / "rag.db"
    emb = DeterministicFakeEmbedding(size=8)
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("ns", path) as rm, \
            SynaByteStore(path) as bs, SynaCache(path) as cache, \
            SynaSemanticCache(path, emb) as scache:
        # Open (and read) before the child writes: nothing is there yet.
        assert (rm.list_keys(), bs.mget(["k"]), cache.lookup("p", "llm")) == ([], [None], None)
        assert scache.lookup("p", "llm") is None
        t_before = rm.get_time()
        run_child("""
            from langchain_core.documents import Document
            from langchain_core.embeddings import DeterministicFakeEmbedding
            from langchain_core.indexing import index
            from langchain_core.outputs import Generation
            from synadb.integrations.langchain import (
                SynaByteStore, SynaCache, SynaRecordManager, SynaSemanticCache, SynaVectorStore)
            emb = DeterministicFakeEmbedding(size=8)
            with SynaVectorStore({path!r}, emb) as vs, SynaRecordManager("ns", {path!r}) as rm:
                index([Document(page_content="from the child", metadata={{"source": "c"}})],
                      rm, vs, key_encoder="sha256", cleanup="incremental", source_id_key="source")
            with SynaByteStore({path!r}) as bs:
                bs.mset([("k", b"child bytes")])
            with SynaCache({path!r}) as c:
                c.update("p", "llm", [Generation(text="child answer")])
            with SynaSemanticCache({path!r}, emb) as s:
                s.update("p", "llm", [Generation(text="child semantic")])
        """, path=str(path))
        keys = rm.list_keys()
        assert len(keys) == 1 and rm.list_keys(after=t_before) == keys
        assert rm.get_time() > t_before
        assert [d.page_content for d in vs.get_by_ids(keys)] == ["from the child"]
        assert bs.mget(["k"]) == [b"child bytes"]
        assert cache.lookup("p", "llm") == [Generation(text="child answer")]
        assert scache.lookup("p", "llm") == [Generation(text="child semantic")]
        # And the parent's next index() run skips what the child indexed.
        got = index([Document(page_content="from the child", metadata={"source": "c"})],
                    rm, vs, key_encoder="sha256", cleanup="incremental", source_id_key="source")
        assert got["num_skipped"] == 1 and got["num_added"] == 0


def test_all_names_exported():
    for name in ["SynaRecordManager", "SynaByteStore", "SynaCache", "SynaSemanticCache"]:
        assert name in lc.__all__ and hasattr(lc, name)


def test_surfaces_survive_compaction_by_another_handle(tmp_path):
    path = tmp_path / "rag.db"
    emb = DeterministicFakeEmbedding(size=8)
    with SynaSemanticCache(path, emb) as scache, SynaRecordManager("ns", path) as rm, \
            SynaByteStore(path) as bs:
        scache.update("p", "llm", [Generation(text="one")])
        assert scache.lookup("p", "llm") == [Generation(text="one")]
        rm.update(["a", "b"]); rm.update(["a"]); bs.mset([("k", b"1")]); bs.mset([("k", b"2")])
        rm.delete_keys(["b"])
        with SynaDB(path) as db:
            db.compact(keep_history=False)  # replaces the file under the open handles
        scache.update("q", "llm", [Generation(text="two")])
        assert scache.lookup("p", "llm") == [Generation(text="one")]
        assert scache.lookup("q", "llm") == [Generation(text="two")]
        assert rm.list_keys() == ["a"] and bs.mget(["k"]) == [b"2"]
