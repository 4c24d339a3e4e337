"""synadb.integrations.llamaindex: conformance with LlamaIndex's own store tests.

The first block mirrors llama-index-core's tests/vector_stores/test_simple.py
(three nodes, 2-d embeddings, one test per filter operator), run against a
real file; then what SimpleVectorStore cannot do (stored text, get_nodes,
nested filters, reopen) and an end-to-end VectorStoreIndex round trip.
"""

import asyncio
import math
import re
import threading
import zlib
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.schema import (
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.storage.chat_store.base import BaseChatStore
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import synadb
import synadb.integrations.llamaindex as li
from synadb.integrations.llamaindex import SynaChatStore, SynaVectorStore
from synadb.vectors import VectorStore

ROOT = str(Path(__file__).resolve().parents[1])

A = "AF3BE6C4-5F43-4D74-B075-6B0E07900DE8"  # weight 1, rank a
B = "7D9CD555-846C-445C-A9DD-F8924A01411D"  # weight 2, rank c
C = "452D24AB-F185-414C-A352-590B4B9EE51B"  # weight 3, rank c


def _nodes():
    def node(id_, emb, src, meta):
        return TextNode(text=f"lorem ipsum {id_[:4]}", id_=id_, embedding=emb,
                        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=src)},
                        metadata=meta)
    return [
        node(A, [1.0, 0.0], "test-0", {"weight": 1.0, "rank": "a", "quality": ["medium", "high"],
                                       "identifier": "6FTR78Yun", "note": ""}),
        node(B, [0.0, 1.0], "test-1", {"weight": 2.0, "rank": "c", "quality": ["medium"],
                                       "identifier": "6FTR78Ygl", "tags": []}),
        node(C, [1.0, 1.0], "test-2", {"weight": 3.0, "rank": "c",
                                       "quality": ["low", "medium", "high"],
                                       "identifier": "6FTR78Ztl", "note": "Keep"}),
    ]


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "li.db")


@pytest.fixture
def store(path):
    s = SynaVectorStore(path=path)
    yield s
    s.close()


@pytest.fixture
def loaded(store):
    store.add(_nodes())
    return store


def _ids(store, filters=None, k=3, **kw):
    res = store.query(VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=k,
                                       filters=filters, **kw))
    return res.ids


def _one(key, op, value):
    return MetadataFilters(filters=[MetadataFilter(key=key, operator=op, value=value)])


# ------------------------------------------------------- the upstream suite
def test_is_a_llamaindex_vector_store(store, path):
    assert isinstance(store, BasePydanticVectorStore)
    assert store.stores_text is True
    assert isinstance(store.client, VectorStore)
    assert store.path == str(Path(path).resolve()) or store.path == path
    assert store.class_name() == "SynaVectorStore"


def test_add_returns_ids(store):
    assert store.add(_nodes()) == [A, B, C]
    assert store.add([]) == []
    assert store.dimensions == 2


def test_query_without_filters_returns_all_rows_sorted_by_similarity(loaded):
    ids = _ids(loaded)
    assert sorted(ids) == sorted([A, B, C])
    assert ids[0] == C


def test_query_with_filters_returns_multiple_matches(loaded):
    f = MetadataFilters(filters=[ExactMatchFilter(key="rank", value="c")])
    assert _ids(loaded, f) == [C, B]


def test_query_with_filter_applies_top_k(loaded):
    f = MetadataFilters(filters=[ExactMatchFilter(key="rank", value="c")])
    assert _ids(loaded, f, k=1) == [C]


def test_query_with_filter_applies_node_id_filter(loaded):
    f = MetadataFilters(filters=[ExactMatchFilter(key="rank", value="c")])
    assert _ids(loaded, f, node_ids=[C]) == [C]
    assert _ids(loaded, f, node_ids=[A]) == []
    assert sorted(_ids(loaded, node_ids=[A, B])) == sorted([A, B])


def test_empty_node_ids_restrict_nothing(loaded):
    # VectorStoreIndex.as_retriever() passes node_ids=[] to stores that keep text.
    assert len(_ids(loaded, node_ids=[], doc_ids=[])) == 3


def test_query_with_doc_ids(loaded):
    assert _ids(loaded, doc_ids=["test-1", "test-2"]) == [C, B]


def test_query_with_exact_filters_returns_single_match(loaded):
    f = MetadataFilters(filters=[ExactMatchFilter(key="rank", value="c"),
                                 ExactMatchFilter(key="weight", value=2.0)])
    assert _ids(loaded, f) == [B]


def test_query_with_contradictive_filter_returns_no_matches(loaded):
    f = MetadataFilters(filters=[ExactMatchFilter(key="weight", value=2),
                                 ExactMatchFilter(key="weight", value=3)])
    assert _ids(loaded, f) == []


def test_query_with_filter_on_unknown_field_returns_no_matches(loaded):
    f = MetadataFilters(filters=[ExactMatchFilter(key="unknown_field", value="c")])
    assert _ids(loaded, f) == []


def test_delete_removes_document_from_query_results(loaded):
    loaded.delete("test-1")
    assert _ids(loaded, k=2) == [C, A]
    loaded.delete("no-such-doc")
    assert len(_ids(loaded)) == 2


def test_query_with_filters_with_filter_condition(loaded):
    both = [ExactMatchFilter(key="rank", value="c"), ExactMatchFilter(key="weight", value=1.0)]
    assert len(_ids(loaded, MetadataFilters(filters=both, condition=FilterCondition.OR))) == 3
    assert _ids(loaded, MetadataFilters(filters=both, condition=FilterCondition.AND)) == []
    assert _ids(loaded, MetadataFilters(filters=both, condition="or")) != []


def test_query_with_not_filter_returns_matches(loaded):
    f = MetadataFilters(filters=[MetadataFilter(key="rank", operator=FilterOperator.EQ,
                                                value="a")], condition=FilterCondition.NOT)
    assert sorted(_ids(loaded, f)) == sorted([B, C])


# One case per operator: (operator, key, value, expected ids).
OPERATOR_CASES = [
    (FilterOperator.EQ, "weight", 1.0, {A}),
    (FilterOperator.EQ, "weight", 2, {B}),  # int matches a stored float
    (FilterOperator.NE, "weight", 1.0, {B, C}),
    (FilterOperator.NE, "missing", "x", {A, B, C}),  # absent fields are "not equal"
    (FilterOperator.GT, "weight", 1.5, {B, C}),
    (FilterOperator.GTE, "weight", 1.0, {A, B, C}),
    (FilterOperator.LT, "weight", 1.1, {A}),
    (FilterOperator.LTE, "weight", 1.0, {A}),
    (FilterOperator.GT, "rank", 1, set()),  # str vs int: no match, no error
    (FilterOperator.LT, "missing", 5, set()),
    (FilterOperator.IN, "rank", ["a", "c"], {A, B, C}),
    (FilterOperator.IN, "rank", ["a"], {A}),
    (FilterOperator.IN, "rank", "a", {A}),  # a bare value is a one-element list
    # A list field is never IN a list of scalars: as upstream's reference
    # (test_llamaindex_stores.py compares with SimpleVectorStore).
    (FilterOperator.IN, "quality", ["low"], set()),
    (FilterOperator.NIN, "rank", ["c"], {A}),
    (FilterOperator.NIN, "missing", ["c"], {A, B, C}),
    (FilterOperator.ANY, "quality", ["high", "low"], {A, C}),
    (FilterOperator.ALL, "quality", ["medium", "high"], {A, C}),
    (FilterOperator.ALL, "quality", ["low", "medium", "high"], {C}),
    (FilterOperator.CONTAINS, "quality", "high", {A, C}),
    (FilterOperator.CONTAINS, "weight", 1, set()),  # not a list: no match, no error
    (FilterOperator.TEXT_MATCH, "identifier", "6FTR78Y", {A, B}),
    (FilterOperator.TEXT_MATCH, "identifier", "6ftr78y", set()),
    (FilterOperator.TEXT_MATCH, "weight", "1", set()),
    (FilterOperator.TEXT_MATCH_INSENSITIVE, "identifier", "6ftr78y", {A, B}),
    (FilterOperator.TEXT_MATCH_INSENSITIVE, "note", "KEEP", {C}),
    (FilterOperator.IS_EMPTY, "not_existed_key", None, {A, B, C}),
    (FilterOperator.IS_EMPTY, "note", None, {A, B}),  # "" and missing
    (FilterOperator.IS_EMPTY, "tags", None, {A, B, C}),  # [] and missing
    (FilterOperator.IS_EMPTY, "rank", None, set()),
]


@pytest.mark.parametrize("op,key,value,expected", OPERATOR_CASES,
                         ids=[f"{c[0].name}-{c[1]}-{c[2]!r}" for c in OPERATOR_CASES])
def test_filter_operator(loaded, op, key, value, expected):
    assert set(_ids(loaded, _one(key, op, value))) == expected


def test_every_installed_operator_is_covered():
    assert {c[0] for c in OPERATOR_CASES} == set(FilterOperator)


def test_every_installed_condition_is_supported(loaded):
    for cond in FilterCondition:
        f = MetadataFilters(filters=[ExactMatchFilter(key="rank", value="a")], condition=cond)
        assert _ids(loaded, f) is not None


@pytest.mark.parametrize("op,value", [
    (FilterOperator.TEXT_MATCH, 5),
    (FilterOperator.TEXT_MATCH_INSENSITIVE, None),
    (FilterOperator.IN, None),
    (FilterOperator.ANY, None),
    (FilterOperator.GT, None),
])
def test_unusable_filter_value_is_rejected(loaded, op, value):
    with pytest.raises(synadb.InvalidArgument):
        _ids(loaded, _one("rank", op, value))


# -------------------------------------------------------- nested conditions
def test_nested_filters_and_of_or(loaded):
    # rank == c AND (weight < 2.5 OR quality contains low) -> B, C
    f = MetadataFilters(filters=[
        ExactMatchFilter(key="rank", value="c"),
        MetadataFilters(filters=[
            MetadataFilter(key="weight", operator=FilterOperator.LT, value=2.5),
            MetadataFilter(key="quality", operator=FilterOperator.CONTAINS, value="low"),
        ], condition=FilterCondition.OR),
    ], condition=FilterCondition.AND)
    assert _ids(loaded, f) == [C, B]


def test_nested_filters_or_of_and(loaded):
    # (rank == a AND weight == 1) OR (rank == c AND weight > 2.5) -> A, C
    f = MetadataFilters(filters=[
        MetadataFilters(filters=[ExactMatchFilter(key="rank", value="a"),
                                 ExactMatchFilter(key="weight", value=1.0)]),
        MetadataFilters(filters=[
            ExactMatchFilter(key="rank", value="c"),
            MetadataFilter(key="weight", operator=FilterOperator.GT, value=2.5)]),
    ], condition=FilterCondition.OR)
    assert sorted(_ids(loaded, f)) == sorted([A, C])


def test_not_of_nested_or(loaded):
    f = MetadataFilters(filters=[
        MetadataFilters(filters=[ExactMatchFilter(key="weight", value=1.0),
                                 ExactMatchFilter(key="weight", value=3.0)],
                        condition=FilterCondition.OR),
    ], condition=FilterCondition.NOT)
    assert _ids(loaded, f) == [B]


def test_three_levels_deep(loaded):
    inner = MetadataFilters(filters=[ExactMatchFilter(key="rank", value="a")],
                            condition=FilterCondition.NOT)  # B, C
    middle = MetadataFilters(filters=[inner, MetadataFilter(
        key="weight", operator=FilterOperator.GTE, value=3.0)])  # C
    outer = MetadataFilters(filters=[middle, ExactMatchFilter(key="weight", value=1.0)],
                            condition=FilterCondition.OR)  # A, C
    assert sorted(_ids(loaded, outer)) == sorted([A, C])


def test_empty_filters_match_everything(loaded):
    for cond in FilterCondition:
        assert len(_ids(loaded, MetadataFilters(filters=[], condition=cond))) == 3


def test_filter_on_ref_doc_id(loaded):
    # node_to_metadata_dict's doc id fields can be filtered on, as upstream.
    assert _ids(loaded, _one("ref_doc_id", FilterOperator.IN, ["test-0", "test-2"])) == [C, A]


def test_predicate_helper_is_usable_on_its_own():
    pred = li.metadata_filters_to_predicate(
        _one("year", FilterOperator.GTE, 2020))
    assert pred({"year": 2021}) and not pred({"year": 2019}) and not pred({})
    assert li.metadata_filters_to_predicate(None) is None


# ----------------------------------------------------------- nodes and data
def test_nodes_round_trip_through_query(loaded):
    originals = {n.node_id: n for n in _nodes()}
    res = loaded.query(VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=3))
    assert res.ids == [n.node_id for n in res.nodes]
    for node in res.nodes:
        want = originals[node.node_id]
        assert isinstance(node, TextNode)
        assert node.text == want.text
        assert node.metadata == want.metadata
        assert node.ref_doc_id == want.ref_doc_id
        assert node.relationships == want.relationships


def test_get_nodes_round_trips_with_embeddings(loaded):
    got = loaded.get_nodes(node_ids=[C, "nope", A, C])
    assert [n.node_id for n in got] == [C, A]
    for node, want in zip(got, [_nodes()[2], _nodes()[0]]):
        assert node.text == want.text and node.metadata == want.metadata
        assert node.embedding == pytest.approx(want.embedding)
        assert node.hash == want.hash
    assert {n.node_id for n in loaded.get_nodes()} == {A, B, C}
    rank_c = _one("rank", FilterOperator.EQ, "c")
    assert {n.node_id for n in loaded.get_nodes(filters=rank_c)} == {B, C}
    assert [n.node_id for n in loaded.get_nodes(node_ids=[A, B], filters=rank_c)] == [B]
    assert loaded.get_nodes(node_ids=[]) == []


def test_similarities_are_higher_is_closer_cosine(loaded):
    res = loaded.query(VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=3))
    assert res.similarities[0] == pytest.approx(1.0, abs=1e-6)
    assert res.similarities[1:] == pytest.approx([math.sqrt(0.5)] * 2, abs=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "dot_product"])
def test_similarities_other_metrics(tmp_path, metric):
    with SynaVectorStore(path=str(tmp_path / "m.db"), metric=metric) as s:
        s.add([TextNode(id_="near", text="n", embedding=[1.0, 0.0]),
               TextNode(id_="far", text="f", embedding=[-3.0, 0.0])])
        res = s.query(VectorStoreQuery(query_embedding=[2.0, 0.0], similarity_top_k=2))
        assert res.ids == ["near", "far"]
        assert res.similarities[0] > res.similarities[1]
        if metric == "euclidean":
            assert res.similarities == pytest.approx([1 / 2, 1 / 6])
        else:
            assert res.similarities == pytest.approx([2.0, -6.0])


def test_add_replaces_by_node_id(loaded):
    loaded.add([TextNode(id_=A, text="changed", embedding=[0.0, 1.0], metadata={"rank": "z"})])
    (node,) = loaded.get_nodes(node_ids=[A])
    assert node.text == "changed" and node.metadata == {"rank": "z"}
    assert len(loaded.client) == 3


def test_node_without_embedding_is_rejected_and_nothing_is_written(store):
    good = TextNode(id_="ok", text="x", embedding=[1.0, 0.0])
    with pytest.raises(synadb.InvalidArgument, match="bad"):
        store.add([good, TextNode(id_="bad", text="y")])
    assert store.get_nodes() == []


def test_ragged_embeddings_in_one_add(store):
    with pytest.raises(synadb.DimensionMismatch):
        store.add([TextNode(id_="a", text="a", embedding=[1.0, 0.0]),
                   TextNode(id_="b", text="b", embedding=[1.0])])
    assert store.get_nodes() == []


def test_wrong_dimensions(loaded):
    with pytest.raises(synadb.DimensionMismatch):
        loaded.add([TextNode(id_="x", text="x", embedding=[1.0, 2.0, 3.0])])
    with pytest.raises(synadb.DimensionMismatch):
        loaded.query(VectorStoreQuery(query_embedding=[1.0], similarity_top_k=1))


def test_empty_store_and_zero_top_k(store):
    res = store.query(VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=3))
    assert (res.nodes, res.similarities, res.ids) == ([], [], [])
    store.add(_nodes())
    res = store.query(VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=0))
    assert res.ids == []


def test_query_needs_an_embedding_and_a_supported_mode(loaded):
    with pytest.raises(synadb.InvalidArgument, match="query_embedding"):
        loaded.query(VectorStoreQuery(query_str="x", similarity_top_k=1))
    # sparse, text_search and hybrid are BM25 modes now (test_llamaindex_hybrid.py).
    with pytest.raises(synadb.InvalidArgument, match="svm"):
        loaded.query(VectorStoreQuery(query_embedding=[1.0, 0.0],
                                      mode=VectorStoreQueryMode.SVM))


def test_mmr_mode(tmp_path):
    with SynaVectorStore(path=str(tmp_path / "mmr.db")) as s:
        s.add([TextNode(id_="a1", text="a", embedding=[1.0, 0.0]),
               TextNode(id_="a2", text="a", embedding=[1.0, 0.01]),
               TextNode(id_="b", text="b", embedding=[0.6, 0.8])])
        q = VectorStoreQuery(query_embedding=[1.0, 0.1], similarity_top_k=2,
                             mode=VectorStoreQueryMode.MMR)
        plain = s.query(VectorStoreQuery(query_embedding=[1.0, 0.1], similarity_top_k=2))
        assert set(plain.ids) == {"a1", "a2"}
        res = s.query(q, mmr_threshold=0.1)  # strong diversity: the near duplicate loses
        assert len(res.ids) == 2 and "b" in res.ids
        assert [n.node_id for n in res.nodes] == res.ids


def test_delete_nodes_by_ids_filters_and_both(loaded):
    loaded.delete_nodes([A, B])
    assert _ids(loaded) == [C]
    loaded.add(_nodes())
    loaded.delete_nodes(filters=_one("rank", FilterOperator.EQ, "c"))
    assert _ids(loaded) == [A]
    loaded.add(_nodes())
    loaded.delete_nodes(node_ids=[A, B], filters=_one("rank", FilterOperator.EQ, "c"))
    assert sorted(_ids(loaded)) == sorted([A, C])
    loaded.delete_nodes(node_ids=[])  # an empty selection deletes nothing
    assert len(_ids(loaded)) == 2


def test_delete_removes_every_node_of_the_document(store):
    nodes = [TextNode(id_=f"n{i}", text=str(i), embedding=[1.0, float(i)],
                      relationships={NodeRelationship.SOURCE:
                                     RelatedNodeInfo(node_id="doc" if i < 3 else "other")})
             for i in range(5)]
    store.add(nodes)
    store.delete("doc")
    assert sorted(n.node_id for n in store.get_nodes()) == ["n3", "n4"]


def test_clear(loaded):
    loaded.clear()
    assert _ids(loaded) == []
    assert loaded.get_nodes() == []


async def test_async_variants(store):
    assert await store.async_add(_nodes()) == [A, B, C]
    q = VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=3)
    assert (await store.aquery(q)).ids[0] == C
    assert [n.node_id for n in await store.aget_nodes(node_ids=[B])] == [B]
    await store.adelete("test-2")
    assert C not in (await store.aquery(q)).ids
    await store.adelete_nodes(node_ids=[A])
    assert (await store.aquery(q)).ids == [B]
    results = await asyncio.gather(*(store.aquery(q) for _ in range(8)))
    assert all(r.ids == [B] for r in results)
    await store.aclear()
    assert (await store.aquery(q)).ids == []


# ------------------------------------------------------------- persistence
def test_reopen_by_path_keeps_everything(path, tmp_path):
    s = SynaVectorStore(path=path)
    s.add(_nodes())
    before = _ids(s)
    s.persist(str(tmp_path / "ignored" / "default__vector_store.json"))
    assert not (tmp_path / "ignored").exists()
    s.close()
    s.persist()  # after close: a no-op, never an error
    for again in (SynaVectorStore(path=path), SynaVectorStore.from_persist_path(path)):
        with again:
            assert _ids(again) == before
            assert again.dimensions == 2
            assert {n.node_id for n in again.get_nodes()} == {A, B, C}


def test_to_dict_from_dict(path):
    with SynaVectorStore(path=path, metric="euclidean") as s:
        s.add(_nodes())
        data = s.to_dict()
    assert data["class_name"] == "SynaVectorStore" and data["metric"] == "euclidean"
    with SynaVectorStore.from_dict(data) as again:
        assert again.metric == "euclidean" and len(_ids(again)) == 3


def test_read_only_handle_queries(path):
    with SynaVectorStore(path=path) as s:
        s.add(_nodes())
    with SynaVectorStore(path=path, read_only=True) as ro:
        assert _ids(ro)[0] == C
        ro.persist()
        with pytest.raises(synadb.ReadOnlyError):
            ro.add(_nodes())


def test_filters_through_the_hnsw_index(tmp_path):
    # Above index_threshold the store answers from HNSW; predicates must still apply.
    with SynaVectorStore(path=str(tmp_path / "h.db"), index_threshold=20) as s:
        nodes = [TextNode(id_=f"n{i:03d}", text=str(i), metadata={"i": i, "even": i % 2 == 0},
                          embedding=[math.cos(i / 10), math.sin(i / 10), 1.0])
                 for i in range(200)]
        s.add(nodes)
        assert s.client._index is not None
        q = [math.cos(5.0), math.sin(5.0), 1.0]
        f = MetadataFilters(filters=[
            MetadataFilter(key="i", operator=FilterOperator.GTE, value=100),
            MetadataFilter(key="i", operator=FilterOperator.LT, value=150)])
        res = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, filters=f))
        def cos_dist(i):
            v = nodes[i].embedding
            dot = sum(a * b for a, b in zip(q, v))
            return 1 - dot / math.sqrt(sum(a * a for a in q) * sum(b * b for b in v))
        exact = sorted(range(100, 150), key=cos_dist)[:5]
        assert res.ids == [f"n{i:03d}" for i in exact]
        res = s.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3,
                                       node_ids=["n000", "n199", "n077"]))
        assert sorted(res.ids) == ["n000", "n077", "n199"]


# -------------------------------------------------------------- end to end
class HashEmbedding(BaseEmbedding):
    """Bag of hashed words: texts sharing words get similar vectors; no network."""

    dim: int = 64

    def _vec(self, text):
        v = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            v[zlib.crc32(word.encode()) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def _get_query_embedding(self, query):
        return self._vec(query)

    async def _aget_query_embedding(self, query):
        return self._vec(query)

    def _get_text_embedding(self, text):
        return self._vec(text)


DOCS = [
    ("hnsw", "HNSW graphs make approximate vector search fast on large collections.", "ann"),
    ("crc", "Every record carries a CRC32C checksum so torn writes are detected.", "durability"),
    ("cats", "Cats sleep for most of the day and hunt at dusk.", "pets"),
    ("tensors", "Tensors are stored as typed binary blocks with a dtype and a shape.", "ml"),
]


def _retrieve(index, text, k=2, **kw):
    return [(n.node.ref_doc_id, round(n.score, 6), n.node.text)
            for n in index.as_retriever(similarity_top_k=k, **kw).retrieve(text)]


def test_vector_store_index_end_to_end_and_reopen(path):
    embed = HashEmbedding()
    docs = [Document(text=t, id_=i, metadata={"topic": topic}) for i, t, topic in DOCS]
    store = SynaVectorStore(path=path)
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed)
    first = _retrieve(index, "fast vector search")
    assert first[0][0] == "hnsw"
    assert _retrieve(index, "checksum for torn writes", k=1)[0][0] == "crc"
    filtered = _retrieve(index, "fast vector search", k=4, filters=MetadataFilters(
        filters=[MetadataFilter(key="topic", operator=FilterOperator.IN,
                                value=["pets", "ml"])]))
    assert {d for d, _, _ in filtered} == {"cats", "tensors"}
    store.close()

    reopened = SynaVectorStore(path=path)
    index2 = VectorStoreIndex.from_vector_store(reopened, embed_model=embed)
    assert _retrieve(index2, "fast vector search") == first

    index2.delete_ref_doc("hnsw")
    assert "hnsw" not in {d for d, _, _ in _retrieve(index2, "fast vector search", k=4)}
    index2.insert(Document(text="Vector search with graphs, again.", id_="hnsw2"))
    assert _retrieve(index2, "vector search graphs", k=1)[0][0] == "hnsw2"
    reopened.close()


async def test_vector_store_index_async_retrieve(path):
    embed = HashEmbedding()
    docs = [Document(text=t, id_=i) for i, t, _ in DOCS]
    store = SynaVectorStore(path=path)
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed, use_async=True)
    got = await index.as_retriever(similarity_top_k=1).aretrieve("typed binary tensors")
    assert got[0].node.ref_doc_id == "tensors"
    store.close()


# -------------------------------------------------------------- chat store
def _msg(role, text, **extra):
    return ChatMessage(role=role, content=text, additional_kwargs=extra)


def test_chat_store_is_a_base_chat_store(tmp_path):
    with SynaChatStore(str(tmp_path / "c.db")) as chats:
        assert isinstance(chats, BaseChatStore)
        assert chats.class_name() == "SynaChatStore"


def test_chat_store_messages(tmp_path):
    with SynaChatStore(str(tmp_path / "c.db")) as chats:
        assert chats.get_messages("u1") == [] and chats.get_keys() == []
        chats.set_messages("u1", [_msg(MessageRole.USER, "hi"),
                                  _msg(MessageRole.ASSISTANT, "hello", tool="x")])
        chats.add_message("u1", _msg(MessageRole.USER, "how are you"))
        chats.add_message("u2", _msg(MessageRole.USER, "other"))
        msgs = chats.get_messages("u1")
        assert [m.content for m in msgs] == ["hi", "hello", "how are you"]
        assert msgs[1].role == MessageRole.ASSISTANT and msgs[1].additional_kwargs == {"tool": "x"}
        assert chats.get_keys() == ["u1", "u2"]

        assert chats.delete_message("u1", 1).content == "hello"
        assert chats.delete_message("u1", 5) is None
        assert chats.delete_message("nope", 0) is None
        assert [m.content for m in chats.get_messages("u1")] == ["hi", "how are you"]
        chats.add_message("u1", _msg(MessageRole.USER, "first"), idx=0)
        assert [m.content for m in chats.get_messages("u1")] == ["first", "hi", "how are you"]
        assert chats.delete_last_message("u1").content == "how are you"
        chats.add_message("u1", _msg(MessageRole.USER, "after"))
        assert [m.content for m in chats.get_messages("u1")] == ["first", "hi", "after"]

        assert [m.content for m in chats.delete_messages("u2")] == ["other"]
        assert chats.delete_messages("u2") is None
        assert chats.delete_last_message("u2") is None
        assert chats.get_keys() == ["u1"]

        chats.set_messages("empty", [])  # a key with no messages still exists
        assert "empty" in chats.get_keys() and chats.get_messages("empty") == []
        assert chats.delete_last_message("empty") is None
        assert chats.delete_messages("empty") == []


def test_chat_store_survives_reopen(tmp_path):
    path = str(tmp_path / "c.db")
    odd = "team/a*b?[c] é"
    with SynaChatStore(path) as chats:
        chats.add_message(odd, _msg(MessageRole.USER, "glob chars in the key"))
        chats.add_message("plain", _msg(MessageRole.USER, "x"))
        chats.add_message(odd, _msg(MessageRole.ASSISTANT, "ok"))
        chats.persist()
    with SynaChatStore(path) as chats:
        assert chats.get_keys() == [odd, "plain"]
        assert [m.content for m in chats.get_messages(odd)] == ["glob chars in the key", "ok"]
        assert chats.get_messages("team") == [] and chats.get_messages("team/a") == []
    with synadb.SynaDB(path) as db:
        assert not [k for k in db if not k.startswith(li.CHAT_KEY_PREFIX)]


def test_chat_store_rejects_bad_keys(tmp_path):
    with SynaChatStore(str(tmp_path / "c.db")) as chats, pytest.raises(synadb.InvalidKey):
        chats.add_message("", _msg(MessageRole.USER, "x"))


def test_chat_store_concurrent_appends_keep_every_message(tmp_path):
    with SynaChatStore(str(tmp_path / "c.db")) as chats:
        def work(t):
            for i in range(25):
                chats.add_message("shared", _msg(MessageRole.USER, f"{t}-{i}"))
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        got = [m.content for m in chats.get_messages("shared")]
        assert sorted(got) == sorted(f"{t}-{i}" for t in range(4) for i in range(25))
        for t in range(4):  # each thread's messages stay in its order
            mine = [c for c in got if c.startswith(f"{t}-")]
            assert mine == [f"{t}-{i}" for i in range(25)]


async def test_chat_store_async(tmp_path):
    with SynaChatStore(str(tmp_path / "c.db")) as chats:
        await chats.async_add_message("k", _msg(MessageRole.USER, "a"))
        await chats.aset_messages("j", [_msg(MessageRole.USER, "b")])
        assert [m.content for m in await chats.aget_messages("k")] == ["a"]
        assert await chats.aget_keys() == ["k", "j"]
        assert (await chats.adelete_last_message("k")).content == "a"
        assert (await chats.adelete_message("j", 0)).content == "b"
        assert await chats.adelete_messages("j") == []


# ------------------------------------------------------------------ module
def test_public_names_are_pinned():
    assert sorted(li.__all__) == sorted(
        ["SynaVectorStore", "SynaChatStore", "metadata_filters_to_predicate", "NODE_ID_KEY",
         "SynaKVStore", "SynaDocumentStore", "SynaIndexStore"])


def test_doctests():
    import doctest

    assert doctest.testmod(li).failed == 0




def test_reads_a_file_written_by_the_langchain_adapter(path):
    # One file, several frameworks: LangChain's page content comes back as
    # the node's text, not as a metadata field.
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import Embeddings

    from synadb.integrations.langchain import SynaVectorStore as LCStore

    class Fixed(Embeddings):
        def embed_documents(self, texts):
            return [[float(len(t)), 1.0] for t in texts]

        def embed_query(self, text):
            return [float(len(text)), 1.0]

    lc = LCStore.from_texts(["short", "a longer passage"], Fixed(),
                            metadatas=[{"src": "a"}, {"src": "b"}], ids=["x", "y"], path=path)
    if hasattr(lc, "close"):
        lc.close()
    store = SynaVectorStore(path=path)
    nodes = {n.node_id: n for n in store.get_nodes(["x", "y"])}
    assert nodes["x"].get_content() == "short"
    assert nodes["y"].get_content() == "a longer passage"
    assert nodes["y"].metadata == {"src": "b"}
    store.close()
