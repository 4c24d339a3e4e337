"""The LangChain adapters: LangChain's standard VectorStore suite, then ours."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.integration_tests import VectorStoreIntegrationTests

import synadb
from synadb import errors
from synadb.integrations import langchain as lc
from synadb.integrations.langchain import (
    PAGE_CONTENT_KEY,
    SynaChatMessageHistory,
    SynaDocumentLoader,
    SynaVectorStore,
)

ROOT = str(Path(__file__).resolve().parents[1])


class TestSynaStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Iterator[SynaVectorStore]:
        store = SynaVectorStore(path=tmp_path / "lc.db", embedding=self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


class AxisEmbeddings(Embeddings):
    """Texts name their vectors ("1 0 0"), so the geometry is chosen by the test."""

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text):
        return [float(x) for x in text.split()[:3]]


def test_all_is_pinned():
    assert sorted(lc.__all__) == ["PAGE_CONTENT_KEY", "SynaByteStore", "SynaCache",
                                  "SynaChatMessageHistory", "SynaDocumentLoader",
                                  "SynaRecordManager", "SynaSemanticCache", "SynaVectorStore"]


@pytest.fixture
def emb():
    return DeterministicFakeEmbedding(size=8)


def test_reopen_keeps_documents_and_ids(tmp_path, emb):
    path = tmp_path / "lc.db"
    with SynaVectorStore(path, emb) as vs:
        ids = vs.add_texts(["alpha", "beta", "gamma"], [{"n": 1}, {"n": 2}, {"n": 3}],
                           ids=["a", None, "c"])
        assert ids[0] == "a" and ids[2] == "c" and len(ids[1]) == 36  # a uuid4
    with SynaVectorStore(path, emb) as vs:
        got = vs.get_by_ids(["c", "a", "nope", ids[1], "a"])
        assert got == [Document(id="c", page_content="gamma", metadata={"n": 3}),
                       Document(id="a", page_content="alpha", metadata={"n": 1}),
                       Document(id=ids[1], page_content="beta", metadata={"n": 2})]
        assert vs.similarity_search("beta", k=1)[0].id == ids[1]
        # The text lives in the record but never leaks into the metadata.
        assert vs.store.get_metadata("a") == {"n": 1, PAGE_CONTENT_KEY: "alpha"}


def test_from_texts_and_from_documents(tmp_path, emb):
    vs = SynaVectorStore.from_texts(["x", "y"], emb, metadatas=[{"k": 1}, {"k": 2}],
                                    ids=["1", "2"], path=tmp_path / "a.db", metric="euclidean")
    with vs:
        assert vs.store.metric == "euclidean"
        assert {d.id for d in vs.get_by_ids(["1", "2"])} == {"1", "2"}
    docs = [Document(page_content="p", id="doc-p"), Document(page_content="q")]
    with SynaVectorStore.from_documents(docs, emb, path=tmp_path / "b.db") as vs:
        assert vs.get_by_ids(["doc-p"])[0].page_content == "p"
        assert len(vs.store) == 2
    with pytest.raises(errors.InvalidArgument, match="path"):
        SynaVectorStore.from_texts(["x"], emb)


def test_add_documents_id_precedence_and_no_mutation(tmp_path, emb):
    with SynaVectorStore(tmp_path / "lc.db", emb) as vs:
        docs = [Document(page_content="one", id="d1"), Document(page_content="two")]
        assert vs.add_documents(docs, ids=["k1", "k2"]) == ["k1", "k2"]
        assert docs[1].id is None and docs[0].id == "d1"
        assert vs.get_by_ids(["d1"]) == []
        assert vs.add_documents([]) == []
        with pytest.raises(ValueError, match="2 ids for 1 texts"):
            vs.add_texts(["a"], ids=["x", "y"])
        with pytest.raises(ValueError, match="reserved"):
            vs.add_texts(["a"], [{PAGE_CONTENT_KEY: "sneaky"}])


def test_delete_none_deletes_everything(tmp_path, emb):
    with SynaVectorStore(tmp_path / "lc.db", emb) as vs:
        vs.add_texts(["a", "b", "c"])
        assert vs.delete(["missing"]) is True
        assert vs.delete() is True
        assert len(vs.store) == 0 and vs.similarity_search("a") == []


def test_filters_pass_through(tmp_path, emb):
    with SynaVectorStore(tmp_path / "lc.db", emb) as vs:
        vs.add_texts([f"doc {i}" for i in range(20)],
                     [{"year": 2000 + i, "genre": "news" if i % 2 else "blog"}
                      for i in range(20)], ids=[str(i) for i in range(20)])
        hits = vs.similarity_search("doc 3", k=20, filter={"genre": "news",
                                                            "year": {"$gte": 2010}})
        assert sorted(int(d.id) for d in hits) == [11, 13, 15, 17, 19]
        hits = vs.similarity_search("doc 3", k=3, filter=lambda m: m["year"] < 2002)
        assert sorted(d.id for d in hits) == ["0", "1"]
        hits = vs.similarity_search_with_score("doc 4", k=2, filter={"$or": [
            {"year": 2004}, {"year": {"$in": [2007]}}]})
        assert [d.id for d, _ in hits] == ["4", "7"] and hits[0][1] == pytest.approx(0, abs=1e-6)
        mmr = vs.max_marginal_relevance_search("doc 3", k=2, filter={"genre": "blog"})
        assert all(d.metadata["genre"] == "blog" for d in mmr) and len(mmr) == 2
        # A misspelt keyword is an error, not a silently unfiltered search.
        with pytest.raises(TypeError, match="filters"):
            vs.similarity_search("doc 3", filters={"genre": "news"})


def test_mmr_prefers_diverse_results(tmp_path):
    with SynaVectorStore(tmp_path / "lc.db", AxisEmbeddings()) as vs:
        vs.add_texts(["1 0 0", "0.99 0.01 0", "0.98 0.02 0", "0.7 0.7 0", "0 0 1"],
                     ids=["x", "x-dup1", "x-dup2", "diag", "z"])
        plain = vs.similarity_search("1 0 0", k=2)
        assert [d.id for d in plain] == ["x", "x-dup1"]
        mmr = vs.max_marginal_relevance_search("1 0 0", k=2, fetch_k=5, lambda_mult=0.3)
        assert mmr[0].id == "x" and mmr[1].id in ("diag", "z")
        by_vec = vs.max_marginal_relevance_search_by_vector([1, 0, 0], k=2, fetch_k=5,
                                                            lambda_mult=0.3)
        assert [d.id for d in by_vec] == [d.id for d in mmr]
        # lambda_mult=1 is plain relevance.
        same = vs.max_marginal_relevance_search("1 0 0", k=2, lambda_mult=1.0)
        assert [d.id for d in same] == ["x", "x-dup1"]
        assert vs.max_marginal_relevance_search("1 0 0", k=2, filter={"none": 1}) == []


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_relevance_scores_in_unit_interval_and_ordered(tmp_path, metric):
    texts = ["1 0 0", "0.8 0.6 0", "0 1 0", "-0.6 0.8 0", "-1 0 0", "3 4 0", "0 0 -5"]
    with SynaVectorStore(tmp_path / "lc.db", AxisEmbeddings(), metric=metric) as vs:
        vs.add_texts(texts)
        got = vs.similarity_search_with_relevance_scores("1 0 0", k=len(texts))
        scores = [s for _, s in got]
        assert len(got) == len(texts)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
        distances = [d for _, d in vs.similarity_search_with_score("1 0 0", k=len(texts))]
        assert distances == sorted(distances)
        if metric != "dot_product":  # the exact match is nearest, with relevance 1
            assert got[0][0].page_content == "1 0 0" and scores[0] == pytest.approx(1.0)
        thresholded = vs.similarity_search_with_relevance_scores(
            "1 0 0", k=len(texts), score_threshold=0.5)
        assert all(s >= 0.5 for _, s in thresholded) and len(thresholded) < len(texts)


def test_cosine_relevance_spans_zero_to_one(tmp_path):
    with SynaVectorStore(tmp_path / "lc.db", AxisEmbeddings()) as vs:
        # Relevance is cos (as InMemoryVectorStore and Chroma report it),
        # clamped at 0; (1 + cos)/2 gave "ortho" 0.5.
        vs.add_texts(["1 0 0", "0.5 0.8660254 0", "0 1 0", "-1 0 0"],
                     ids=["same", "sixty", "ortho", "opposite"])
        got = {d.id: s for d, s in vs.similarity_search_with_relevance_scores("2 0 0", k=4)}
        assert got == pytest.approx({"same": 1.0, "sixty": 0.5, "ortho": 0.0, "opposite": 0.0},
                                    abs=1e-6)


def test_custom_relevance_fn_and_embeddings_property(tmp_path, emb):
    with SynaVectorStore(tmp_path / "lc.db", emb, relevance_score_fn=lambda d: 0.25) as vs:
        assert vs.embeddings is emb
        vs.add_texts(["a"])
        assert vs.similarity_search_with_relevance_scores("a", k=1)[0][1] == 0.25


def test_similarity_search_by_vector_and_retriever(tmp_path, emb):
    with SynaVectorStore(tmp_path / "lc.db", emb) as vs:
        vs.add_texts(["apples", "pears", "plums"], [{"t": "a"}, {"t": "p"}, {"t": "p"}])
        hits = vs.similarity_search_by_vector(emb.embed_query("pears"), k=1)
        assert hits[0].page_content == "pears" and hits[0].metadata == {"t": "p"}
        retriever = vs.as_retriever(search_kwargs={"k": 2, "filter": {"t": "p"}})
        assert {d.page_content for d in retriever.invoke("apples")} == {"pears", "plums"}


async def test_async_paths_share_the_store(tmp_path, emb):
    with SynaVectorStore(tmp_path / "lc.db", emb) as vs:
        ids = await vs.aadd_texts(["a", "b"], ids=["1", "2"])
        assert ids == ["1", "2"]
        assert [d.id for d in await vs.asimilarity_search("b", k=1)] == ["2"]
        assert len(await vs.amax_marginal_relevance_search("a", k=2)) == 2
        rel = await vs.asimilarity_search_with_relevance_scores("a", k=2)
        assert all(0 <= s <= 1 for _, s in rel)


def test_hnsw_index_answers_through_the_adapter(tmp_path, emb):
    with SynaVectorStore(tmp_path / "lc.db", emb, index_threshold=50) as vs:
        vs.add_texts([f"text {i}" for i in range(200)], [{"i": i} for i in range(200)],
                     batch_size=64)
        assert vs.store._index is not None
        assert vs.similarity_search("text 42", k=1)[0].metadata == {"i": 42}
        assert vs.similarity_search("text 42", k=3, filter={"i": {"$lt": 3}})[0].metadata["i"] < 3


# ------------------------------------------------------------------ chat


def test_chat_history_persists_and_clears(tmp_path):
    path = tmp_path / "chat.db"
    with SynaChatMessageHistory(path, "s1") as h:
        assert h.messages == []
        h.add_user_message("hi")
        h.add_messages([AIMessage("hello", id="m2"), SystemMessage("be brief")])
    with SynaChatMessageHistory(path, "s2") as other:
        other.add_user_message("different session")
    with SynaChatMessageHistory(path, "s1") as h:
        msgs = h.messages
        assert [type(m) for m in msgs] == [HumanMessage, AIMessage, SystemMessage]
        assert [m.content for m in msgs] == ["hi", "hello", "be brief"]
        assert msgs[1].id == "m2"
        h.clear()
        assert h.messages == []
        h.add_ai_message("fresh start")
    with SynaChatMessageHistory(path, "s1") as h, SynaChatMessageHistory(path, "s2") as o:
        assert [m.content for m in h.messages] == ["fresh start"]
        assert [m.content for m in o.messages] == ["different session"]


async def test_chat_history_async_and_bad_session(tmp_path):
    with SynaChatMessageHistory(tmp_path / "chat.db", "s") as h:
        await h.aadd_messages([HumanMessage("a")])
        assert [m.content for m in await h.aget_messages()] == ["a"]
        await h.aclear()
        assert h.messages == []
    with pytest.raises(errors.InvalidArgument):
        SynaChatMessageHistory(tmp_path / "chat.db", "")


# ---------------------------------------------------------------- loader


def test_document_loader(tmp_path):
    path = str(tmp_path / "notes.db")
    with synadb.SynaDB(path) as db:
        db.put_text("notes/a", "old")
        db.put_text("notes/a", "first")
        db.put_bytes("notes/b", "second ü".encode())
        db.put_bytes("notes/bin", b"\xff\xfe\x00")
        db.put_float("notes/count", 3.0)
        db.put_text("other", "not matched")
        docs = list(SynaDocumentLoader(path, "notes/*").lazy_load())  # a writer is open
    assert docs == [Document(page_content="first", metadata={"source": path, "key": "notes/a"}),
                    Document(page_content="second ü",
                             metadata={"source": path, "key": "notes/b"})]
    assert len(SynaDocumentLoader(path).load()) == 3
    with pytest.raises(errors.DatabaseNotFound):
        SynaDocumentLoader(str(tmp_path / "missing.db"), "*").load()


# --------------------------------------------------------------- imports


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": ROOT, "PATH": os.environ.get("PATH", "")})


def test_langchain_loads_only_with_the_adapter():
    out = _run("import sys, json, synadb, synadb.integrations\n"
               "before = 'langchain_core' in sys.modules\n"
               "import synadb.integrations.langchain\n"
               "print(json.dumps([before, 'langchain_core' in sys.modules]))")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [False, True]


def test_vectors_written_by_the_adapter_are_plain_records(tmp_path, emb):
    # The adapter only translates: the core VectorStore reads the same file.
    path = tmp_path / "lc.db"
    with SynaVectorStore(path, emb) as vs:
        vs.add_texts(["a"], [{"n": 1}], ids=["k"])
    with synadb.vectors.VectorStore(path) as store:
        assert np.allclose(store.get("k"), emb.embed_query("a"))
        assert store.get_metadata("k") == {"n": 1, PAGE_CONTENT_KEY: "a"}
