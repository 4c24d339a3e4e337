"""SynaDocumentStore against Haystack's own document store suites, plus the retriever."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.dataclasses import ByteStream, SparseEmbedding
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy, FilterPolicy
from haystack.errors import FilterError
from haystack.testing.document_store import (
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    DocumentStoreBaseExtendedTests,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldUniqueValuesTest,
)
from haystack.testing.document_store_async import (
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    CountUniqueMetadataByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    GetMetadataFieldMinMaxAsyncTest,
    GetMetadataFieldsInfoAsyncTest,
    GetMetadataFieldUniqueValuesAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
)

from synadb import DimensionMismatch
from synadb.integrations.haystack import SynaDocumentStore, SynaEmbeddingRetriever


def _open(tmp_path):
    store = SynaDocumentStore(path=str(tmp_path / "docs.db"), progress=False)
    yield store
    store.close()


# The suites define their own ``document_store`` fixture that raises, so each
# class overrides it; module-level tests use this one.
document_store = pytest.fixture(_open, name="document_store")


class TestSuite(DocumentStoreBaseExtendedTests, CountDocumentsByFilterTest,
                CountUniqueMetadataByFilterTest, GetMetadataFieldsInfoTest,
                GetMetadataFieldMinMaxTest, GetMetadataFieldUniqueValuesTest):
    """Haystack's extended sync suite, plus every optional sync mixin."""

    @pytest.fixture
    def document_store(self, tmp_path):
        yield from _open(tmp_path)

    def test_write_documents(self, document_store):
        # Our default (DuplicatePolicy.NONE) is FAIL, as in Haystack's in-memory store.
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([doc])
        self.assert_documents_are_equal(document_store.filter_documents(), [doc])


class TestAsyncSuite(CountDocumentsAsyncTest, CountDocumentsByFilterAsyncTest,
                     CountUniqueMetadataByFilterAsyncTest, DeleteAllAsyncTest,
                     DeleteByFilterAsyncTest, DeleteDocumentsAsyncTest, FilterDocumentsAsyncTest,
                     GetMetadataFieldMinMaxAsyncTest, GetMetadataFieldsInfoAsyncTest,
                     GetMetadataFieldUniqueValuesAsyncTest, UpdateByFilterAsyncTest,
                     WriteDocumentsAsyncTest):
    """Every async test class Haystack ships."""

    @pytest.fixture
    def document_store(self, tmp_path):
        yield from _open(tmp_path)

    async def test_write_documents_async(self, document_store):
        doc = Document(content="test doc")
        assert await document_store.write_documents_async([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([doc])
        self.assert_documents_are_equal(await document_store.filter_documents_async(), [doc])


# ------------------------------------------------------------------ our own
def _vec(rng: random.Random, dims: int = 8) -> list[float]:
    # float32-exact values, as real embedders produce.
    return np.array([rng.uniform(-1, 1) for _ in range(dims)], dtype=np.float32).tolist()


def _corpus(n: int = 40, dims: int = 8) -> list[Document]:
    rng = random.Random(7)
    return [Document(id=f"d{i}", content=f"doc {i}", embedding=_vec(rng, dims),
                     meta={"parity": "even" if i % 2 == 0 else "odd", "i": i})
            for i in range(n)]


def test_retriever_in_pipeline(document_store):
    docs = _corpus()
    document_store.write_documents(docs)
    pipe = Pipeline()
    pipe.add_component("retriever", SynaEmbeddingRetriever(document_store, top_k=3))
    out = pipe.run({"retriever": {"query_embedding": docs[5].embedding}})
    got = out["retriever"]["documents"]
    assert len(got) == 3
    assert got[0].id == "d5"
    assert got[0].score == pytest.approx(1.0, abs=1e-5)
    assert [d.score for d in got] == sorted((d.score for d in got), reverse=True)
    assert all(d.embedding is None for d in got)

    filtered = pipe.run({"retriever": {
        "query_embedding": docs[5].embedding,
        "filters": {"field": "meta.parity", "operator": "==", "value": "even"}}})
    assert [d.meta["parity"] for d in filtered["retriever"]["documents"]] == ["even"] * 3


async def test_retriever_run_async(document_store):
    docs = _corpus()
    await document_store.write_documents_async(docs)
    retriever = SynaEmbeddingRetriever(document_store, top_k=2, return_embedding=True)
    out = await retriever.run_async(query_embedding=docs[3].embedding)
    assert out["documents"][0].id == "d3"
    assert out["documents"][0].embedding == docs[3].embedding


def test_query_by_embedding_with_filter_returns_top_k(tmp_path):
    # index_threshold=50 puts the filtered search on the HNSW path too.
    for threshold in (10_000, 50):
        path = tmp_path / f"q{threshold}.db"
        with SynaDocumentStore(path, index_threshold=threshold, progress=False) as store:
            docs = _corpus(n=400)
            store.write_documents(docs)
            flt = {"operator": "AND", "conditions": [
                {"field": "meta.parity", "operator": "==", "value": "odd"},
                {"field": "meta.i", "operator": "<", "value": 100}]}
            got = store.query_by_embedding(docs[0].embedding, top_k=20, filters=flt)
            assert len(got) == 20
            assert all(d.meta["parity"] == "odd" and d.meta["i"] < 100 for d in got)
            # Exactly 50 match: asking for more returns all 50, no more.
            assert len(store.query_by_embedding(docs[0].embedding, top_k=80, filters=flt)) == 50


def test_query_by_embedding_scores_match_in_memory(tmp_path):
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    docs = _corpus()
    q = docs[1].embedding
    for metric in ("cosine", "dot_product"):
        ref = InMemoryDocumentStore(embedding_similarity_function=metric)
        ref.write_documents(docs)
        with SynaDocumentStore(tmp_path / f"{metric}.db", metric=metric, progress=False) as store:
            store.write_documents(docs)
            for scale in (False, True):
                ours = store.query_by_embedding(q, top_k=5, scale_score=scale)
                theirs = ref.embedding_retrieval(q, top_k=5, scale_score=scale)
                assert [d.id for d in ours] == [d.id for d in theirs]
                assert [d.score for d in ours] == pytest.approx([d.score for d in theirs], abs=1e-5)


def test_euclidean_scores(tmp_path):
    with SynaDocumentStore(tmp_path / "l2.db", metric="euclidean", progress=False) as store:
        store.write_documents([Document(id="near", embedding=[1.0, 0.0]),
                               Document(id="far", embedding=[4.0, 4.0])])
        near, far = store.query_by_embedding([1.0, 0.0], top_k=2)
        assert (near.id, near.score) == ("near", pytest.approx(0.0, abs=1e-6))
        assert far.score == pytest.approx(-5.0)
        near_s, far_s = store.query_by_embedding([1.0, 0.0], top_k=2, scale_score=True)
        assert near_s.score == pytest.approx(1.0) and far_s.score == pytest.approx(1 / 6)


@pytest.mark.parametrize("index_threshold", [10_000, 20], ids=["exact", "hnsw"])
def test_query_by_embedding_raises_filter_errors(tmp_path, index_threshold):
    document_store = SynaDocumentStore(tmp_path / "f.db", index_threshold=index_threshold,
                                       progress=False)
    document_store.write_documents(_corpus())
    q = [0.1] * 8
    with pytest.raises(FilterError):
        document_store.query_by_embedding(q, filters={"operator": "AND"})
    # Only found while comparing (a number with a str that is not a date),
    # possibly inside hnswlib's filter callback.
    with pytest.raises(FilterError):
        document_store.query_by_embedding(q, filters={"field": "meta.i", "operator": ">",
                                                      "value": "1"})
    with pytest.raises(ValueError):
        document_store.query_by_embedding([], top_k=3)
    with pytest.raises(DimensionMismatch):
        document_store.query_by_embedding([0.1] * 3)
    document_store.close()


def test_malformed_filter_raises_even_when_empty(document_store):
    with pytest.raises(FilterError):
        document_store.filter_documents({"conditions": []})
    with pytest.raises(FilterError):
        document_store.filter_documents({"field": "meta.x", "operator": "~=", "value": 1})
    with pytest.raises(FilterError):
        document_store.delete_by_filter({})


def test_reopen_from_disk(tmp_path):
    path = tmp_path / "reopen.db"
    rng = random.Random(3)
    docs = _corpus() + [
        Document(id="nov", content="no vector", meta={"nested": {"a": [1, 2]}}),
        Document(id="blob", blob=ByteStream(b"\x00\xffbytes", mime_type="application/x"),
                 sparse_embedding=SparseEmbedding(indices=[1, 7], values=[0.5, 0.25])),
        # float64 values the float32 vector cannot hold exactly still round-trip.
        Document(id="f64", content="precise", embedding=[rng.random() for _ in range(8)]),
    ]
    with SynaDocumentStore(path, embedding_dim=8, progress=False) as store:
        store.write_documents(docs)
        store.delete_documents(["d0"])
        store.update_by_filter({"field": "id", "operator": "==", "value": "d1"}, {"seen": True})
    with SynaDocumentStore(path, progress=False) as store:
        assert store.embedding_dim == 8
        assert store.count_documents() == len(docs) - 1
        by_id = {d.id: d for d in store.filter_documents()}
        for doc in docs[2:]:
            assert by_id[doc.id] == doc
        assert by_id["d1"].meta == {**docs[1].meta, "seen": True}
        assert by_id["d1"].embedding == docs[1].embedding
        assert store.query_by_embedding(docs[7].embedding, top_k=1)[0].id == "d7"


def test_returned_documents_do_not_alias_the_store(document_store):
    document_store.write_documents([Document(id="a", content="x", meta={"tags": ["t"]})])
    doc = document_store.filter_documents()[0]
    doc.meta["tags"].append("mutated")
    assert document_store.filter_documents()[0].meta == {"tags": ["t"]}


def test_to_dict_from_dict_round_trip(tmp_path):
    path = str(tmp_path / "ser.db")
    store = SynaDocumentStore(path, embedding_dim=8, metric="dot_product", ef_search=64,
                              progress=False)
    store.write_documents(_corpus(n=5))
    data = store.to_dict()
    assert data == {"type": "synadb.integrations.haystack.SynaDocumentStore",
                    "init_parameters": {"path": path, "embedding_dim": 8,
                                        "metric": "dot_product", "m": 16,
                                        "ef_construction": 200, "ef_search": 64,
                                        "index_threshold": 10_000, "sync_on_write": False,
                                        "progress": False}}
    retriever = SynaEmbeddingRetriever(store, top_k=4, filter_policy=FilterPolicy.MERGE,
                                       filters={"field": "meta.parity", "operator": "==",
                                                "value": "odd"})
    rdata = retriever.to_dict()
    store.close()

    again = SynaEmbeddingRetriever.from_dict(rdata)
    try:
        assert again.to_dict() == rdata
        assert again.filter_policy is FilterPolicy.MERGE
        assert again.document_store.metric == "dot_product"
        assert again.document_store.count_documents() == 5
        got = again.run(query_embedding=[0.1] * 8)["documents"]
        assert {d.meta["parity"] for d in got} == {"odd"}

        pipe = Pipeline()
        pipe.add_component("retriever", again)
        # Haystack only trusts its own modules by default; we do not add
        # ourselves behind the user's back (a pipeline file names the path).
        loaded = Pipeline.loads(pipe.dumps(), allowed_modules=["synadb.integrations.haystack"])
        clone = loaded.get_component("retriever")
        assert clone.to_dict() == rdata
        clone.document_store.close()
    finally:
        again.document_store.close()


def test_write_policies_and_validation(document_store):
    a1, a2 = Document(id="a", content="one"), Document(id="a", content="two")
    b = Document(id="b", content="b")
    # FAIL checks the whole list first: nothing is written.
    with pytest.raises(DuplicateDocumentError):
        document_store.write_documents([b, a1, a2], policy=DuplicatePolicy.FAIL)
    assert document_store.count_documents() == 0
    assert document_store.write_documents([a1, b, a2], policy=DuplicatePolicy.SKIP) == 2
    assert document_store.filter_documents() == [a1, b]
    assert document_store.write_documents([a2, a1, a2], policy=DuplicatePolicy.OVERWRITE) == 3
    assert document_store.filter_documents() == [b, a2]
    with pytest.raises(DimensionMismatch):
        document_store.write_documents([Document(id="v1", embedding=[1.0, 2.0]),
                                        Document(id="v2", embedding=[1.0, 2.0, 3.0])])
    assert document_store.count_documents() == 2


def test_delete_all_with_recreate_compacts(document_store):
    document_store.write_documents(_corpus())
    before = document_store.vector_store.path
    document_store.delete_all_documents(recreate_index=True)
    assert document_store.count_documents() == 0
    assert document_store.query_by_embedding([0.1] * 8, top_k=3) == []
    document_store.write_documents(_corpus(n=3))
    assert document_store.query_by_embedding([0.1] * 8, top_k=5)[0].id.startswith("d")
    assert document_store.vector_store.path == before


def test_concurrent_async_writes(document_store):
    async def main():
        docs = _corpus(n=60)
        await asyncio.gather(*(document_store.write_documents_async(docs[i:i + 10])
                               for i in range(0, 60, 10)))
        return await document_store.count_documents_async()

    assert asyncio.run(main()) == 60


