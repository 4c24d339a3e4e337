"""SynaDocumentStore's keyword search: SynaBM25Retriever and SynaHybridRetriever."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.document_stores.types import DuplicatePolicy, FilterPolicy
from haystack.errors import FilterError

from synadb import DimensionMismatch, SynaDB
from synadb.fulltext import rrf, weighted_sum
from synadb.integrations.haystack import (
    SynaBM25Retriever,
    SynaDocumentStore,
    SynaHybridRetriever,
)

TEXTS = [
    "Python is a programming language with dynamic typing",
    "The database stores every record in one single file",
    "Embedded databases need no server and no configuration",
    "Vector search finds the nearest embeddings of a query",
    "Keyword search ranks documents by term frequency and rarity",
    "BM25 is the classic ranking function of keyword search engines",
    "A single file database is easy to copy and to share",
    "Hybrid retrieval fuses keyword search with vector search",
    "Language models answer questions from retrieved documents",
    "Rust and Python bindings expose the same database engine",
    "Notebooks read metrics while training scripts write them",
    "Reciprocal rank fusion merges rankings from several retrievers",
]
QUERIES = ["database file", "keyword search", "python language", "vector embeddings query",
           "fusion of rankings", "training metrics notebooks", "server"]


def _vec(i: int, dims: int = 8) -> list[float]:
    rng = random.Random(i)
    return np.array([rng.uniform(-1, 1) for _ in range(dims)], dtype=np.float32).tolist()


def _docs() -> list[Document]:
    return [Document(id=f"d{i}", content=t, embedding=_vec(i),
                     meta={"parity": "even" if i % 2 == 0 else "odd", "i": i})
            for i, t in enumerate(TEXTS)]


@pytest.fixture
def store(tmp_path):
    s = SynaDocumentStore(tmp_path / "docs.db", progress=False)
    s.write_documents(_docs())
    yield s
    s.close()


@pytest.fixture
def reference():
    ref = InMemoryDocumentStore(bm25_algorithm="BM25Okapi",
                                bm25_parameters={"k1": 1.2, "b": 0.75})
    ref.write_documents(_docs())
    return ref


def _lucene_idf(n, df):
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _okapi_idf(n, df):
    # rank_bm25's (Haystack's) idf; the corpus below keeps df < n / 2, where
    # its epsilon floor for negative idfs never applies.
    return math.log((n - df + 0.5) / (df + 0.5))


def test_same_top_documents_as_in_memory_bm25(store, reference):
    ours_r = SynaBM25Retriever(store, top_k=5)
    theirs_r = InMemoryBM25Retriever(reference, top_k=5)
    for q in QUERIES:
        ours = ours_r.run(query=q)["documents"]
        theirs = [d for d in theirs_r.run(query=q)["documents"] if d.score > 0]
        # Haystack's BM25Okapi also returns documents without any query term
        # (score 0); ours returns only documents holding one.
        assert [d.id for d in ours] == [d.id for d in theirs[:len(ours)]], q
        assert all(d.embedding is None for d in ours)
        assert ours[0].content == TEXTS[int(ours[0].id[1:])]


def test_score_scale_difference_is_the_idf(store, reference):
    """Both stores compute the same tf part (k1=1.2, b=0.75, same lengths); the
    score differs by the idf: Lucene's log(1 + (N-df+.5)/(df+.5)) here,
    log((N-df+.5)/(df+.5)) in Haystack.  For one query term the ratio of the
    two scores is therefore the same for every document."""
    n = len(TEXTS)
    for term in ("database", "search", "python", "fusion", "server"):
        df = sum(term in t.lower().split() for t in TEXTS)
        assert 0 < df < n / 2
        ratio = _lucene_idf(n, df) / _okapi_idf(n, df)
        ours = store.bm25_retrieval(term, top_k=n)
        theirs = {d.id: d.score for d in reference.bm25_retrieval(term, top_k=n)}
        assert ours
        for d in ours:
            assert d.score == pytest.approx(theirs[d.id] * ratio, rel=1e-9), term


def test_scale_score(store, reference):
    ours = store.bm25_retrieval("keyword search", top_k=3)
    scaled = store.bm25_retrieval("keyword search", top_k=3, scale_score=True)
    assert [d.id for d in scaled] == [d.id for d in ours]
    for raw, s in zip(ours, scaled):
        assert s.score == pytest.approx(1 / (1 + math.exp(-raw.score / 8)))
        assert 0 < s.score < 1


def test_filters_apply_to_bm25_results(store, reference):
    flt = {"field": "meta.parity", "operator": "==", "value": "odd"}
    for q in QUERIES:
        ours = store.bm25_retrieval(q, filters=flt, top_k=4)
        theirs = [d for d in reference.bm25_retrieval(q, filters=flt, top_k=4) if d.score > 0]
        assert all(d.meta["parity"] == "odd" for d in ours)
        assert [d.id for d in ours] == [d.id for d in theirs[:len(ours)]]
    # Runtime filters follow the retriever's filter policy.
    merged = SynaBM25Retriever(store, filters=flt, filter_policy=FilterPolicy.MERGE, top_k=10)
    got = merged.run(query="search", filters={"field": "meta.i", "operator": ">", "value": 4})
    assert got["documents"] and all(d.meta["parity"] == "odd" and d.meta["i"] > 4
                                    for d in got["documents"])
    with pytest.raises(FilterError):
        store.bm25_retrieval("search", filters={"operator": "AND"})
    with pytest.raises(ValueError):
        store.bm25_retrieval("")
    with pytest.raises(ValueError):
        SynaBM25Retriever(store, top_k=0)
    assert store.bm25_retrieval("search", top_k=0) == []


def test_writes_keep_the_index_in_step(store):
    def ids(q):
        return [d.id for d in store.bm25_retrieval(q, top_k=20)]

    # SKIP keeps what is stored; OVERWRITE replaces the content.
    store.write_documents([Document(id="d0", content="zebra crossing")],
                          policy=DuplicatePolicy.SKIP)
    assert ids("zebra") == [] and ids("python") == ["d0", "d9"]
    store.write_documents([Document(id="d0", content="zebra crossing")],
                          policy=DuplicatePolicy.OVERWRITE)
    assert ids("zebra") == ["d0"] and ids("python") == ["d9"]
    # FAIL writes nothing, in the records or in the index.
    with pytest.raises(DuplicateDocumentError):
        store.write_documents([Document(id="new", content="quokka"), Document(id="d1")])
    assert ids("quokka") == []
    # A failed write (an embedding of the wrong size) leaves no trace either.
    with pytest.raises(DimensionMismatch):
        store.write_documents([Document(id="bad", content="quokka", embedding=[1.0, 2.0])])
    assert ids("quokka") == [] and store.count_documents() == len(TEXTS)
    # Content None: not searchable, and overwriting with it unindexes.
    store.write_documents([Document(id="d3", content=None, embedding=_vec(3))],
                          policy=DuplicatePolicy.OVERWRITE)
    assert "d3" not in ids("vector search embeddings")
    store.delete_documents(["d7", "missing"])
    assert "d7" not in ids("hybrid retrieval")
    assert store.delete_by_filter({"field": "meta.parity", "operator": "==", "value": "odd"}) > 0
    assert all(int(i[1:]) % 2 == 0 for i in ids("search database file"))
    store.delete_all_documents()
    assert ids("search database file zebra") == []
    store.write_documents(_docs()[:3])
    assert sorted(ids("database databases")) == ["d1", "d2"]
    store.delete_all_documents(recreate_index=True)  # compacts the file
    assert ids("database databases") == []
    store.write_documents(_docs()[:3])
    assert sorted(ids("database databases")) == ["d1", "d2"]


def test_reopen_and_live_second_handle(tmp_path):
    path = tmp_path / "live.db"
    with SynaDocumentStore(path, progress=False) as one:
        one.write_documents(_docs()[:6])
        two = SynaDocumentStore(path, progress=False)
        two.write_documents([Document(id="x", content="a database of quokkas", embedding=_vec(99))])
        # The first handle sees the second's write at its next search.
        assert [d.id for d in one.bm25_retrieval("quokkas")] == ["x"]
        two.delete_documents(["d1"])
        assert "d1" not in [d.id for d in one.bm25_retrieval("database", top_k=20)]
        two.close()
    with SynaDocumentStore(path, progress=False) as again:
        assert {d.id for d in again.bm25_retrieval("database search", top_k=20)} == \
            {"d3", "d4", "d5", "x"}


def test_files_without_an_index_are_backfilled(tmp_path):
    path = tmp_path / "old.db"
    with SynaDocumentStore(path, progress=False) as s:
        s.write_documents(_docs())
    with SynaDB(path) as db:  # a file from before the index: no __fts__ keys
        for key in db.keys():
            if key.startswith("__fts__/"):
                db.delete(key)
    with SynaDocumentStore(path, progress=False) as s:
        assert [d.id for d in s.bm25_retrieval("python", top_k=5)] == ["d0", "d9"]


# ------------------------------------------------------------------- hybrid
def test_hybrid_rrf_in_a_pipeline(store):
    q, qe = "keyword search", _vec(3)
    pipe = Pipeline()
    pipe.add_component("retriever", SynaHybridRetriever(store, top_k=4))
    got = pipe.run({"retriever": {"query": q, "query_embedding": qe}})["retriever"]["documents"]
    dense = store.query_by_embedding(qe, top_k=50)
    sparse = store.bm25_retrieval(q, top_k=50)
    want = rrf([d.id for d in dense], [d.id for d in sparse], k=60)[:4]
    assert [(d.id, d.score) for d in got] == [(k, pytest.approx(s)) for k, s in want]
    # The winner is high in both rankings.
    assert got[0].id in [d.id for d in dense[:4]] and got[0].id in [d.id for d in sparse[:4]]
    assert all(d.embedding is None for d in got)


def test_hybrid_weighted_and_alpha(store):
    q, qe = "keyword search", _vec(3)
    dense = store.query_by_embedding(qe, top_k=50)
    sparse = store.bm25_retrieval(q, top_k=50)
    r = SynaHybridRetriever(store, top_k=5, fusion="weighted", alpha=0.3)
    got = r.run(query=q, query_embedding=qe)["documents"]
    want = weighted_sum([(d.id, d.score) for d in dense], [(d.id, d.score) for d in sparse],
                        weights=[0.3, 0.7])[:5]
    assert [(d.id, d.score) for d in got] == [(k, pytest.approx(s)) for k, s in want]
    # alpha=1: the embedding ranking alone; alpha=0: the keyword ranking alone.
    only_dense = SynaHybridRetriever(store, top_k=3, alpha=1.0).run(query=q, query_embedding=qe)
    assert [d.id for d in only_dense["documents"]] == [d.id for d in dense[:3]]
    only_kw = SynaHybridRetriever(store, top_k=3, fusion="weighted", alpha=0.0)
    assert [d.id for d in only_kw.run(query=q, query_embedding=qe)["documents"]] == \
        [d.id for d in sparse[:3]]
    # Filters reach both sides; embeddings come back when asked.
    flt = {"field": "meta.parity", "operator": "==", "value": "even"}
    got = r.run(query=q, query_embedding=qe, filters=flt, return_embedding=True)["documents"]
    assert got and all(d.meta["parity"] == "even" and d.embedding is not None for d in got)
    with pytest.raises(ValueError):
        SynaHybridRetriever(store, fusion="max")
    with pytest.raises(ValueError):
        SynaHybridRetriever(store, alpha=1.5)


async def test_async_runs(store):
    bm25 = await SynaBM25Retriever(store, top_k=2).run_async(query="keyword search")
    assert [d.id for d in bm25["documents"]] == \
        [d.id for d in store.bm25_retrieval("keyword search", top_k=2)]
    hyb = await SynaHybridRetriever(store, top_k=2).run_async(query="python",
                                                             query_embedding=_vec(0))
    assert hyb["documents"][0].id == "d0"


# ------------------------------------------------------------ serialization
def test_to_dict_from_dict(tmp_path):
    path = str(tmp_path / "ser.db")
    store = SynaDocumentStore(path, progress=False)
    store.write_documents(_docs())
    flt = {"field": "meta.parity", "operator": "==", "value": "odd"}
    bm25 = SynaBM25Retriever(store, filters=flt, top_k=3, scale_score=True,
                             filter_policy=FilterPolicy.MERGE)
    hyb = SynaHybridRetriever(store, top_k=4, fusion="weighted", alpha=0.25, rrf_k=10,
                              candidate_k=20)
    bdata, hdata = bm25.to_dict(), hyb.to_dict()
    sdata = store.to_dict()
    assert bdata == {"type": "synadb.integrations.haystack.SynaBM25Retriever",
                     "init_parameters": {"document_store": sdata, "filters": flt, "top_k": 3,
                                         "scale_score": True, "filter_policy": "merge"}}
    assert hdata == {"type": "synadb.integrations.haystack.SynaHybridRetriever",
                     "init_parameters": {"document_store": sdata, "filters": None, "top_k": 4,
                                         "fusion": "weighted", "alpha": 0.25, "rrf_k": 10,
                                         "candidate_k": 20, "return_embedding": False,
                                         "filter_policy": "replace"}}
    want_b = [d.id for d in bm25.run(query="search")["documents"]]
    want_h = [d.id for d in hyb.run(query="search", query_embedding=_vec(5))["documents"]]
    store.close()

    b2 = SynaBM25Retriever.from_dict(bdata)
    h2 = SynaHybridRetriever.from_dict(hdata)
    try:
        assert b2.to_dict() == bdata and h2.to_dict() == hdata
        assert b2.filter_policy is FilterPolicy.MERGE
        assert [d.id for d in b2.run(query="search")["documents"]] == want_b
        assert [d.id for d in h2.run(query="search", query_embedding=_vec(5))["documents"]] \
            == want_h
        pipe = Pipeline()
        pipe.add_component("bm25", b2)
        pipe.add_component("hybrid", h2)
        loaded = Pipeline.loads(pipe.dumps(), allowed_modules=["synadb.integrations.haystack"])
        for name, data in (("bm25", bdata), ("hybrid", hdata)):
            clone = loaded.get_component(name)
            assert clone.to_dict() == data
            clone.document_store.close()
    finally:
        b2.document_store.close()
        h2.document_store.close()
