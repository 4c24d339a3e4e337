"""SynaVectorStore (LlamaIndex) keyword and hybrid query modes.

``hybrid`` fuses the dense ranking with BM25 over the nodes' text;
``text_search`` and ``sparse`` rank by BM25 alone.  Embeddings are
deterministic and hand-made (see test_langchain_hybrid.py for the idea):
``ConceptEmbedding`` knows a few synonym groups and no rare codes.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import synadb
from synadb.integrations.llamaindex import SynaVectorStore
from synadb.vectors import VectorStore

ROOT = str(Path(__file__).resolve().parents[1])
HYBRID = VectorStoreQueryMode.HYBRID

CONCEPTS = [
    {"car", "cars", "automobile", "automobiles", "vehicle", "vehicles"},
    {"cheap", "inexpensive", "affordable", "bargain", "deals"},
    {"doctor", "physician", "clinic", "medical"},
    {"error", "errors", "failure", "fault", "crash", "crashes", "failed"},
    {"database", "storage", "disk", "file"},
    {"fast", "quick", "rapid", "speed", "slow", "latency"},
    {"dog", "puppy", "canine", "dogs"},
    {"recipe", "cook", "cooking", "bake", "baking"},
]


def concept_vector(text):
    v = [0.0] * len(CONCEPTS) + [0.05]
    for word in re.findall(r"\w+", text.lower()):
        for i, group in enumerate(CONCEPTS):
            if word in group:
                v[i] += 1.0
    return v


class ConceptEmbedding(BaseEmbedding):
    """A bag of synonym groups: paraphrases meet, rare codes add nothing."""

    def _get_query_embedding(self, query):
        return concept_vector(query)

    async def _aget_query_embedding(self, query):
        return concept_vector(query)

    def _get_text_embedding(self, text):
        return concept_vector(text)


CORPUS = {
    "cars": "Cheap car deals on used automobiles this week",
    "vet": "A physician for your puppy: the canine clinic opens Monday",
    "bake": "How to bake sourdough: a slow recipe",
    "e4012": "The storage layer reports E4012 when the disk is full",
    "e7731": "Code E7731 means the license server is unreachable",
    "zorblax": "The zorblax protocol retries every request three times",
    "err1": "Errors and failures: what to do when the app crashes",
    "err2": "A fault in the driver made the error come back",
    "err3": "Crash reports list every failure and error",
    "err4": "Why builds failed: error after error",
    "err5": "The failure of one node is not a fault of the cluster",
    "err6": "Error handling: crash early, fail loudly",
    "db1": "Database tuning: storage engines and disk layout",
    "fast": "Quick tips for rapid page loads and low latency",
}
QUERIES = [
    ("inexpensive vehicles", "cars"),
    ("medical help for my dog", "vet"),
    ("cooking bread", "bake"),
    ("what does error E4012 mean", "e4012"),
    ("error E7731", "e7731"),
    ("zorblax failure", "zorblax"),
]


def _nodes():
    return [TextNode(id_=key, text=text, embedding=concept_vector(text),
                     metadata={"kind": "error" if key.startswith("err") else "other", "n": i},
                     relationships={NodeRelationship.SOURCE:
                                    RelatedNodeInfo(node_id=f"doc-{key}")})
            for i, (key, text) in enumerate(CORPUS.items())]


@pytest.fixture
def store(tmp_path):
    s = SynaVectorStore(path=str(tmp_path / "li.db"))
    s.add(_nodes())
    yield s
    s.close()


def _q(text, mode=HYBRID, k=5, **kw):
    return VectorStoreQuery(query_embedding=concept_vector(text), query_str=text,
                            similarity_top_k=k, mode=mode, **kw)


def _ids(store, text, mode=VectorStoreQueryMode.DEFAULT, k=5, **kw):
    return store.query(_q(text, mode, k, **kw)).ids


# ------------------------------------------------------------------ fusion
@pytest.mark.parametrize("alpha", [None, 0.7, 0.2])
def test_rrf_hybrid_equals_fusion_by_hand(store, alpha):
    q = "error E4012 on the disk"
    n = len(CORPUS)
    dense = store.query(_q(q, VectorStoreQueryMode.DEFAULT, k=n)).ids
    sparse = store.query(_q(q, VectorStoreQueryMode.TEXT_SEARCH, k=n)).ids
    assert dense and sparse and dense != sparse
    a = 0.5 if alpha is None else alpha
    expected: dict[str, float] = {}
    for weight, ranking in ((2 * a, dense), (2 * (1 - a), sparse)):
        for rank, key in enumerate(ranking, start=1):
            expected[key] = expected.get(key, 0.0) + weight / (60 + rank)
    # LlamaIndex's fields: similarity_top_k dense, sparse_top_k BM25, hybrid_top_k out.
    res = store.query(_q(q, k=n, alpha=alpha, sparse_top_k=n, hybrid_top_k=5))
    assert len(res.ids) == 5 and [node.node_id for node in res.nodes] == res.ids
    assert res.similarities == pytest.approx(sorted(expected.values(), reverse=True)[:5])
    for key, sim in zip(res.ids, res.similarities):
        assert sim == pytest.approx(expected[key])
    assert res.nodes[0].get_content() == CORPUS[res.ids[0]]


def test_weighted_hybrid_equals_fusion_by_hand(store):
    q = "zorblax failure"
    n, alpha = len(CORPUS), 0.6
    dense = store.query(_q(q, VectorStoreQueryMode.DEFAULT, k=n))
    sparse = store.query(_q(q, VectorStoreQueryMode.TEXT_SEARCH, k=n))

    def norm(ids, sims):  # both are higher-is-better similarities
        lo, hi = min(sims), max(sims)
        return {k: 1.0 if hi == lo else (s - lo) / (hi - lo) for k, s in zip(ids, sims)}

    nd, ns = norm(dense.ids, dense.similarities), norm(sparse.ids, sparse.similarities)
    expected = {k: alpha * nd.get(k, 0.0) + (1 - alpha) * ns.get(k, 0.0)
                for k in nd.keys() | ns.keys()}
    res = store.query(_q(q, k=n, alpha=alpha, hybrid_top_k=4), fusion="weighted")
    assert res.similarities == pytest.approx(sorted(expected.values(), reverse=True)[:4])
    for key, sim in zip(res.ids, res.similarities):
        assert sim == pytest.approx(expected[key])


def test_top_k_fields_and_candidate_k(store):
    q = "what does error E4012 mean"
    # Without hybrid_top_k, similarity_top_k nodes come back.
    assert len(store.query(_q(q, k=3)).ids) == 3
    # Shallow sides: E4012 is BM25's first, so fusion always sees it.
    assert "e4012" in store.query(_q(q, k=2)).ids
    deep = store.query(_q(q, k=2), candidate_k=len(CORPUS))
    assert len(deep.ids) == 2
    # sparse mode honours sparse_top_k; text_search uses similarity_top_k.
    sq = VectorStoreQuery(query_str="error failure", similarity_top_k=5, sparse_top_k=2,
                          mode=VectorStoreQueryMode.SPARSE)
    assert len(store.query(sq).ids) == 2
    tq = VectorStoreQuery(query_str="error failure", similarity_top_k=3,
                          mode=VectorStoreQueryMode.TEXT_SEARCH)
    assert len(store.query(tq).ids) == 3
    assert store.query(_q(q, k=0)).ids == []


def test_bad_arguments(store):
    with pytest.raises(synadb.InvalidArgument, match="alpha"):
        store.query(_q("x", alpha=2.0))
    with pytest.raises(synadb.InvalidArgument, match="fusion"):
        store.query(_q("x"), fusion="max")
    with pytest.raises(synadb.InvalidArgument, match="query_embedding"):
        store.query(VectorStoreQuery(query_str="x", similarity_top_k=2, mode=HYBRID))
    with pytest.raises(synadb.InvalidArgument, match="query_str"):
        store.query(VectorStoreQuery(similarity_top_k=2, mode=VectorStoreQueryMode.TEXT_SEARCH))
    with pytest.raises(synadb.InvalidArgument, match="semantic_hybrid"):
        store.query(_q("x", VectorStoreQueryMode.SEMANTIC_HYBRID))
    # No query_str: hybrid ranks by the embedding alone.
    no_words = VectorStoreQuery(query_embedding=concept_vector("cheap car"), similarity_top_k=3,
                                mode=HYBRID, alpha=0.5)
    assert store.query(no_words).ids == _ids(store, "cheap car", k=3)


# -------------------------------------------------------------- rare words
def test_rare_keyword_found_by_bm25_and_hybrid_not_dense(tmp_path):
    with SynaVectorStore(path=str(tmp_path / "z.db")) as s:
        s.add([TextNode(id_="z", text="the zorblax protocol retries requests",
                        embedding=[0.0, 1.0, 0.0]),
               TextNode(id_="a", text="networking basics: sockets and ports",
                        embedding=[1.0, 0.0, 0.0]),
               TextNode(id_="b", text="sockets and timeouts explained",
                        embedding=[0.95, 0.05, 0.0]),
               TextNode(id_="c", text="ports, firewalls and sockets",
                        embedding=[0.9, 0.0, 0.1])])
        q = dict(query_embedding=[1.0, 0.0, 0.0], query_str="what is zorblax?",
                 similarity_top_k=2)
        assert "z" not in s.query(VectorStoreQuery(**q)).ids
        assert s.query(VectorStoreQuery(**q, mode=VectorStoreQueryMode.TEXT_SEARCH)).ids == ["z"]
        assert s.query(VectorStoreQuery(**q, mode=VectorStoreQueryMode.SPARSE)).ids == ["z"]
        assert "z" in s.query(VectorStoreQuery(**q, mode=HYBRID)).ids
        assert "z" in s.query(VectorStoreQuery(**q, mode=HYBRID), fusion="weighted").ids


# ------------------------------------------------------------- end to end
def test_vector_store_index_hybrid_retriever(tmp_path):
    store = SynaVectorStore(path=str(tmp_path / "e2e.db"))
    docs = [Document(text=text, doc_id=key, metadata={"kind": "k" + key[:3]})
            for key, text in CORPUS.items()]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=ConceptEmbedding())
    hybrid = index.as_retriever(vector_store_query_mode="hybrid", alpha=0.5,
                                similarity_top_k=3)
    got = hybrid.retrieve("what does error E4012 mean")
    assert "E4012" in " ".join(n.node.get_content() for n in got)
    dense = index.as_retriever(similarity_top_k=3).retrieve("what does error E4012 mean")
    assert "E4012" not in " ".join(n.node.get_content() for n in dense)
    # text_search needs no embedding: the retriever skips the embed model.
    text = index.as_retriever(vector_store_query_mode="text_search", similarity_top_k=1)
    assert text.retrieve("zorblax")[0].node.get_content() == CORPUS["zorblax"]
    weighted = index.as_retriever(vector_store_query_mode="hybrid", alpha=0.3,
                                  similarity_top_k=3,
                                  vector_store_kwargs={"fusion": "weighted"})
    assert "E7731" in weighted.retrieve("error E7731")[0].node.get_content()
    got_async = asyncio.run(hybrid.aretrieve("what does error E4012 mean"))
    assert [n.node.node_id for n in got_async] == [n.node.node_id for n in got]
    store.close()


# ------------------------------------------------------------------ filters
def test_filters_apply_to_bm25_and_hybrid(store):
    q = "error crash failure E4012"
    only_other = MetadataFilters(filters=[MetadataFilter(key="kind", value="other")])
    res = store.query(_q(q, VectorStoreQueryMode.TEXT_SEARCH, k=20, filters=only_other))
    assert res.ids == ["e4012"]
    all_ = store.query(_q(q, VectorStoreQueryMode.TEXT_SEARCH, k=20))
    assert len(all_.ids) > 1
    # Filters restrict what is returned, not the corpus statistics.
    assert res.similarities[0] == pytest.approx(all_.similarities[all_.ids.index("e4012")])
    even = MetadataFilters(filters=[MetadataFilter(key="n", value=[0, 2, 4, 6, 8, 10, 12],
                                                   operator=FilterOperator.IN)])
    hyb = store.query(_q(q, k=6, filters=even))
    assert hyb.ids and all(n.metadata["n"] % 2 == 0 for n in hyb.nodes)
    assert store.query(_q(q, k=5, node_ids=["err1", "e4012"])).ids[0] == "e4012"
    assert set(store.query(_q(q, k=5, doc_ids=["doc-err2"])).ids) == {"err2"}
    nothing = MetadataFilters(filters=[MetadataFilter(key="kind", value="none")])
    assert store.query(_q(q, filters=nothing)).ids == []
    assert store.query(_q(q, VectorStoreQueryMode.SPARSE, filters=nothing)).ids == []


# ---------------------------------------------------------- writes, deletes
def test_deletes_leave_bm25(store):
    text = lambda q: _ids(store, q, VectorStoreQueryMode.TEXT_SEARCH)  # noqa: E731
    assert text("E4012") == ["e4012"]
    store.delete("doc-e4012")  # by ref_doc_id
    assert text("E4012") == []
    assert "e4012" not in _ids(store, "E4012 disk", HYBRID, k=14)
    store.delete_nodes(["e7731"])
    assert text("E7731") == []
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="kind",
                                                                      value="error")]))
    assert text("error failure crash") == []
    assert sorted(store.fulltext_index.keys()) == sorted(store.client.keys())
    store.add([TextNode(id_="zorblax", text="now E9999", embedding=concept_vector("x"))])
    assert text("zorblax") == [] and text("E9999") == ["zorblax"]
    store.clear()
    assert text("E9999") == [] and len(store.fulltext_index) == 0


def test_text_and_vector_are_one_batch(tmp_path):
    with SynaVectorStore(path=str(tmp_path / "b.db")) as s:
        s.add([TextNode(id_="k", text="kept E1", embedding=[1.0, 0.0])])
        with pytest.raises(synadb.DimensionMismatch):
            s.add([TextNode(id_="a", text="lost E2", embedding=[1.0, 0.0, 0.0])])
        assert s.fulltext_index.keys() == ["k"]
        q = VectorStoreQuery(query_str="E2", similarity_top_k=2,
                             mode=VectorStoreQueryMode.TEXT_SEARCH)
        assert s.query(q).ids == []


def test_file_without_text_index_is_indexed_once_on_open(tmp_path):
    path = str(tmp_path / "old.db")
    with VectorStore(path) as raw:  # what an older synadb (or plain synadb.vectors) wrote
        raw.insert_batch(["a", "b"], [[1.0, 0.0], [0.0, 1.0]],
                         [{"text": "old E5150 text"}, {"text": "other"}])
    with SynaVectorStore(path=path) as s:
        q = VectorStoreQuery(query_str="E5150", similarity_top_k=2,
                             mode=VectorStoreQueryMode.TEXT_SEARCH)
        assert s.query(q).ids == ["a"]
        assert s.fulltext_index.stats()["documents"] == 2


# ------------------------------------------------------------------- reopen
def test_reopen_in_another_process_keeps_the_index(tmp_path):
    path = str(tmp_path / "li.db")
    n = 300
    with SynaVectorStore(path=path) as s:
        s.add([TextNode(id_=f"d{i}", text=f"document {i} about topic{i % 7} and E{1000 + i}",
                        embedding=[1.0, float(i)]) for i in range(n)])
        s.delete_nodes(["d5"])
        q = VectorStoreQuery(query_str="topic3 E1010", similarity_top_k=5,
                             mode=VectorStoreQueryMode.TEXT_SEARCH)
        expected = s.query(q)
    # The child counts every call of the analyser: opening must analyse no
    # stored text (the terms are read back, not re-tokenized).
    code = textwrap.dedent(f"""
        import json
        import synadb.fulltext as ft
        calls = []
        real = ft.tokenize
        def counting(text, **kw):
            calls.append(text)
            return real(text, **kw)
        ft.tokenize = counting
        from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
        from synadb.integrations.llamaindex import SynaVectorStore
        s = SynaVectorStore(path={path!r})
        opened = len(calls)
        docs = s.fulltext_index.stats()["documents"]
        mode = VectorStoreQueryMode.TEXT_SEARCH
        res = s.query(VectorStoreQuery(query_str="topic3 E1010", similarity_top_k=5, mode=mode))
        gone = s.query(VectorStoreQuery(query_str="E1005", similarity_top_k=5, mode=mode))
        s.close()
        print(json.dumps({{"opened": opened, "after": len(calls), "docs": docs,
                          "ids": res.ids, "sims": res.similarities, "gone": gone.ids}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["opened"] == 0 and got["after"] == 2
    assert got["docs"] == n - 1 and got["gone"] == []
    assert got["ids"] == expected.ids
    assert got["sims"] == pytest.approx(expected.similarities)


# ------------------------------------------------------------------ quality
def test_hybrid_hit_rate_at_least_dense(store):
    def rate(mode, **kw):
        found = [want in store.query(_q(q, mode, k=5), **kw).ids for q, want in QUERIES]
        return sum(found) / len(found)

    dense = rate(VectorStoreQueryMode.DEFAULT)
    bm25 = rate(VectorStoreQueryMode.TEXT_SEARCH)
    hybrid = rate(HYBRID)
    assert dense < 1.0 and bm25 < 1.0  # each side misses what the other finds
    assert hybrid >= dense and hybrid >= bm25
    assert hybrid == 1.0
    assert rate(HYBRID, candidate_k=50) >= dense


def test_read_only_handle_sees_the_writers_text(tmp_path):
    path = str(tmp_path / "ro.db")
    q = VectorStoreQuery(query_str="E4012", similarity_top_k=3,
                         mode=VectorStoreQueryMode.TEXT_SEARCH)
    with SynaVectorStore(path=path) as writer:
        writer.add(_nodes()[:5])
        with SynaVectorStore(path=path, read_only=True) as reader:
            assert reader.query(q).ids == ["e4012"]
            writer.add([TextNode(id_="late", text="late E4012 note",
                                 embedding=concept_vector("x"))])
            assert set(reader.query(q).ids) == {"e4012", "late"}
