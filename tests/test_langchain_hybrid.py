"""SynaVectorStore's keyword (BM25) and hybrid search, and their retrievers.

The embeddings are deterministic and hand-made: ``TableEmbeddings`` gives
each text the vector the test chose, and ``ConceptEmbeddings`` maps words to
a few synonym groups (a toy "semantic" model that knows no rare codes), so
which documents dense search can and cannot find is fixed by construction.
"""

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from synadb import errors
from synadb.integrations import langchain as lc
from synadb.integrations.langchain import PAGE_CONTENT_KEY, SynaVectorStore
from synadb.vectors import VectorStore

ROOT = str(Path(__file__).resolve().parents[1])


class TableEmbeddings(Embeddings):
    """Each known text gets the vector the test chose; others a fixed one."""

    def __init__(self, table, default=(0.0, 0.0, 1.0)):
        self.table = table
        self.default = list(default)

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text):
        return list(self.table.get(text, self.default))


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


class ConceptEmbeddings(Embeddings):
    """A bag of synonym groups plus a small constant: paraphrases meet,
    codes and names it does not know (E4012, zorblax) add nothing."""

    def _vec(self, text):
        v = [0.0] * len(CONCEPTS) + [0.05]
        for word in re.findall(r"\w+", text.lower()):
            for i, group in enumerate(CONCEPTS):
                if word in group:
                    v[i] += 1.0
        return v

    def embed_documents(self, texts):
        return [self._vec(t) for t in texts]

    def embed_query(self, text):
        return self._vec(text)


# Expected answer per query: paraphrases (no shared word, same concepts) and
# keyword lookups (a rare code shared, concepts not), over distractors that
# share the keyword queries' concepts.
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
    ("inexpensive vehicles", "cars"),           # paraphrase
    ("medical help for my dog", "vet"),          # paraphrase
    ("cooking bread", "bake"),                   # paraphrase
    ("what does error E4012 mean", "e4012"),     # keyword
    ("error E7731", "e7731"),                    # keyword
    ("zorblax failure", "zorblax"),              # keyword
]


def _open(tmp_path, emb=None, name="lc.db", **kw):
    return SynaVectorStore(tmp_path / name, emb or ConceptEmbeddings(), **kw)


@pytest.fixture
def corpus_store(tmp_path):
    store = _open(tmp_path)
    store.add_texts(list(CORPUS.values()), ids=list(CORPUS),
                    metadatas=[{"kind": "error" if k.startswith("err") else "other", "n": i}
                               for i, k in enumerate(CORPUS)])
    yield store
    store.close()


# ------------------------------------------------------------------ fusion
@pytest.mark.parametrize("alpha", [0.5, 0.7, 0.2])
def test_rrf_hybrid_equals_fusion_by_hand(corpus_store, alpha):
    q = "error E4012 on the disk"
    dense = [d.id for d, _ in corpus_store.similarity_search_with_score(q, k=len(CORPUS))]
    sparse = [d.id for d, _ in corpus_store.bm25_search_with_score(q, k=len(CORPUS))]
    assert dense and sparse and dense != sparse
    expected: dict[str, float] = {}
    for weight, ranking in ((2 * alpha, dense), (2 * (1 - alpha), sparse)):
        for rank, key in enumerate(ranking, start=1):
            expected[key] = expected.get(key, 0.0) + weight / (60 + rank)
    got = corpus_store.hybrid_search_with_score(q, k=5, alpha=alpha, fetch_k=len(CORPUS))
    assert len(got) == 5
    best = sorted(expected.values(), reverse=True)[:5]
    assert [s for _, s in got] == pytest.approx(best)
    for doc, score in got:
        assert score == pytest.approx(expected[doc.id])
        assert doc.page_content == CORPUS[doc.id] and PAGE_CONTENT_KEY not in doc.metadata


def test_weighted_hybrid_equals_fusion_by_hand(corpus_store):
    q = "zorblax failure"
    alpha = 0.6
    dense = corpus_store.similarity_search_with_score(q, k=len(CORPUS))
    sparse = corpus_store.bm25_search_with_score(q, k=len(CORPUS))

    def norm(pairs, lower_is_better):
        vals = {d.id: (-s if lower_is_better else s) for d, s in pairs}
        lo, hi = min(vals.values()), max(vals.values())
        return {k: 1.0 if hi == lo else (v - lo) / (hi - lo) for k, v in vals.items()}

    nd, ns = norm(dense, True), norm(sparse, False)
    expected = {k: alpha * nd.get(k, 0.0) + (1 - alpha) * ns.get(k, 0.0)
                for k in nd.keys() | ns.keys()}
    got = corpus_store.hybrid_search_with_score(q, k=4, alpha=alpha, fusion="weighted",
                                                fetch_k=len(CORPUS))
    assert [s for _, s in got] == pytest.approx(sorted(expected.values(), reverse=True)[:4])
    for doc, score in got:
        assert score == pytest.approx(expected[doc.id])


def test_alpha_one_is_dense_order_and_blank_query_is_dense_only(corpus_store):
    q = "cheap automobile"
    dense = [d.id for d in corpus_store.similarity_search(q, k=3)]
    assert [d.id for d in corpus_store.hybrid_search(q, k=3, alpha=1.0)] == dense
    blank = TableEmbeddings({}, default=[1.0, 0.5])
    with _open(Path(corpus_store.path).parent, blank, name="b.db") as s:
        s.add_texts(["x y", "y z"], ids=["1", "2"])
        assert s.bm25_search("  ") == []
        assert len(s.hybrid_search("  ", k=2)) == 2  # by embedding only


def test_bad_arguments(corpus_store):
    with pytest.raises(errors.InvalidArgument, match="fusion"):
        corpus_store.hybrid_search("x", fusion="max")
    with pytest.raises(errors.InvalidArgument, match="alpha"):
        corpus_store.hybrid_search("x", alpha=1.5)
    with pytest.raises(errors.InvalidArgument, match="k must"):
        corpus_store.bm25_search("x", k=-1)
    with pytest.raises(ValueError, match="query must be a str"):
        corpus_store.bm25_search(b"x")
    with pytest.raises(TypeError, match="filters"):
        corpus_store.hybrid_search("x", filters={"kind": "error"})  # a typo is not ignored
    assert corpus_store.hybrid_search("error", k=0) == []
    with pytest.raises(ValueError, match="not allowed"):
        corpus_store.search("x", "sparse")


# -------------------------------------------------------------- rare words
def test_rare_keyword_found_by_bm25_and_hybrid_not_dense(tmp_path):
    # The answer shares the rare word but points elsewhere in embedding space.
    table = {
        "the zorblax protocol retries requests": [0.0, 1.0, 0.0],
        "networking basics: sockets and ports": [1.0, 0.0, 0.0],
        "sockets and timeouts explained": [0.95, 0.05, 0.0],
        "ports, firewalls and sockets": [0.9, 0.0, 0.1],
        "what is zorblax?": [1.0, 0.0, 0.0],
    }
    with _open(tmp_path, TableEmbeddings(table)) as vs:
        vs.add_texts(list(table)[:4], ids=["z", "a", "b", "c"])
        q = "what is zorblax?"
        assert "z" not in [d.id for d in vs.similarity_search(q, k=2)]
        assert [d.id for d in vs.bm25_search(q, k=2)] == ["z"]  # only z holds a query word
        assert "z" in [d.id for d in vs.hybrid_search(q, k=2)]
        r = vs.as_retriever(search_type="hybrid", search_kwargs={"k": 2, "alpha": 0.5})
        assert "z" in [d.id for d in r.invoke(q)]
        assert [d.id for d in vs.as_retriever(search_type="bm25").invoke(q)] == ["z"]
        assert "z" not in [d.id for d in vs.as_retriever(search_kwargs={"k": 2}).invoke(q)]


# ---------------------------------------------------------------- retriever
def test_retriever_search_types_and_kwargs(corpus_store):
    r = corpus_store.as_retriever(search_type="hybrid",
                                  search_kwargs={"k": 3, "alpha": 0.3, "fusion": "weighted",
                                                 "filter": {"kind": "other"}})
    assert isinstance(r, lc.SynaVectorStoreRetriever)
    docs = r.invoke("error E7731")
    assert len(docs) == 3 and docs[0].id == "e7731"
    assert all(d.metadata["kind"] == "other" for d in docs)
    assert docs == corpus_store.hybrid_search("error E7731", k=3, alpha=0.3, fusion="weighted",
                                              filter={"kind": "other"})
    bm = corpus_store.as_retriever(search_type="bm25", search_kwargs={"k": 2})
    assert [d.id for d in bm.invoke("E4012")] == ["e4012"]
    assert asyncio.run(bm.ainvoke("E4012")) == bm.invoke("E4012")
    assert asyncio.run(r.ainvoke("error E7731")) == docs
    # LangChain's own search types still behave as LangChain's.
    sim = corpus_store.as_retriever(search_kwargs={"k": 2})
    assert sim.invoke("cheap car") == corpus_store.similarity_search("cheap car", k=2)
    assert corpus_store.as_retriever(search_type="mmr").invoke("cheap car")
    with pytest.raises(ValueError, match="not allowed"):
        corpus_store.as_retriever(search_type="sparse")
    assert corpus_store.search("E4012", "bm25", k=1)[0].id == "e4012"
    assert asyncio.run(corpus_store.asearch("E4012", "hybrid", k=1))[0].id == "e4012"


# ------------------------------------------------------------------ filters
def test_filters_apply_to_bm25_like_dense(corpus_store):
    q = "error crash failure E4012"
    both = corpus_store.bm25_search(q, k=20)
    assert {d.metadata["kind"] for d in both} == {"error", "other"}
    only = corpus_store.bm25_search(q, k=20, filter={"kind": "error"})
    assert only and all(d.metadata["kind"] == "error" for d in only)
    # The filter restricts what is returned, not the corpus statistics.
    scores = {d.id: s for d, s in corpus_store.bm25_search_with_score(q, k=20)}
    for d, s in corpus_store.bm25_search_with_score(q, k=20, filter={"kind": "error"}):
        assert s == pytest.approx(scores[d.id])
    pred = lambda m: m["n"] % 2 == 0  # noqa: E731
    for d in corpus_store.hybrid_search(q, k=6, filter=pred):
        assert d.metadata["n"] % 2 == 0
    hyb = corpus_store.hybrid_search(q, k=6, filter={"kind": "other"})
    assert hyb[0].id == "e4012" and all(d.metadata["kind"] == "other" for d in hyb)
    assert corpus_store.bm25_search(q, filter={"kind": "nothing"}) == []
    assert corpus_store.hybrid_search(q, filter={"kind": "nothing"}) == []


# ---------------------------------------------------------- writes, deletes
def test_deletes_leave_bm25(corpus_store):
    assert [d.id for d in corpus_store.bm25_search("E4012")] == ["e4012"]
    corpus_store.delete(["e4012", "no-such-id"])
    assert corpus_store.bm25_search("E4012") == []
    assert "e4012" not in [d.id for d in corpus_store.hybrid_search("E4012", k=14)]
    assert "e4012" not in corpus_store.fulltext_index
    # Upsert replaces the text too.
    corpus_store.add_texts(["now about E9999 only"], ids=["e7731"])
    assert corpus_store.bm25_search("E7731") == []
    assert [d.id for d in corpus_store.bm25_search("E9999")] == ["e7731"]
    corpus_store.delete()
    assert corpus_store.bm25_search("E9999") == []
    assert len(corpus_store.fulltext_index) == 0 and len(corpus_store.store) == 0


def test_text_and_vector_are_one_batch(tmp_path):
    with _open(tmp_path) as vs:
        vs.add_texts(["kept E1"], ids=["k"])
        # The record cannot be written (metadata is not JSON): nothing is,
        # the terms included.
        with pytest.raises((TypeError, ValueError)):
            vs.add_texts(["lost E2", "lost E3"], ids=["a", "b"],
                         metadatas=[{"ok": 1}, {"bad": object()}])
        assert sorted(vs.fulltext_index.keys()) == ["k"]
        assert vs.bm25_search("E2") == [] and vs.get_by_ids(["a"]) == []
        assert len(vs.fulltext_index) == len(vs.store) == 1


def test_file_without_text_index_is_indexed_once_on_open(tmp_path):
    path = tmp_path / "old.db"
    with VectorStore(path) as raw:  # what an older synadb wrote: no text index
        raw.insert_batch(["a", "b"], [[1.0, 0.0], [0.0, 1.0]],
                         [{PAGE_CONTENT_KEY: "old E5150 text"}, {PAGE_CONTENT_KEY: "other"}])
    emb = TableEmbeddings({}, default=[1.0, 0.0])
    with SynaVectorStore(path, emb) as vs:
        assert [d.id for d in vs.bm25_search("E5150")] == ["a"]
        assert vs.fulltext_index.stats()["documents"] == 2


# ------------------------------------------------------------------- reopen
def test_reopen_in_another_process_keeps_the_index(tmp_path):
    path = tmp_path / "lc.db"
    emb = DeterministicFakeEmbedding(size=8)
    texts = [f"document {i} about topic{i % 7} and E{1000 + i}" for i in range(300)]
    with SynaVectorStore(path, emb) as vs:
        vs.add_texts(texts, ids=[f"d{i}" for i in range(300)])
        vs.delete(["d5"])
        expected = [(d.id, s) for d, s in vs.bm25_search_with_score("topic3 E1010", k=5)]
    # The child counts every call of the analyser: opening must analyse no
    # stored text (the terms are read back, not re-tokenized); the search
    # analyses its query once.
    code = textwrap.dedent(f"""
        import json, sys
        import synadb.fulltext as ft
        calls = []
        real = ft.tokenize
        def counting(text, **kw):
            calls.append(text)
            return real(text, **kw)
        ft.tokenize = counting
        from langchain_core.embeddings import DeterministicFakeEmbedding
        from synadb.integrations.langchain import SynaVectorStore
        vs = SynaVectorStore({str(path)!r}, DeterministicFakeEmbedding(size=8))
        opened = len(calls)
        stats = vs.fulltext_index.stats()
        hits = [(d.id, s) for d, s in vs.bm25_search_with_score("topic3 E1010", k=5)]
        gone = vs.bm25_search("E1005")
        vs.close()
        print(json.dumps({{"opened": opened, "after": len(calls), "docs": stats["documents"],
                          "hits": hits, "gone": len(gone)}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["opened"] == 0
    assert got["after"] == 2  # the two queries, nothing else
    assert got["docs"] == 299 and got["gone"] == 0
    assert [(k, pytest.approx(s)) for k, s in got["hits"]] == expected


# ------------------------------------------------------------------ quality
def _hit_rate(found):
    return sum(found) / len(found)


def test_hybrid_hit_rate_at_least_dense(corpus_store):
    dense = [want in [d.id for d in corpus_store.similarity_search(q, k=5)]
             for q, want in QUERIES]
    hybrid = [want in [d.id for d in corpus_store.hybrid_search(q, k=5)] for q, want in QUERIES]
    bm25 = [want in [d.id for d in corpus_store.bm25_search(q, k=5)] for q, want in QUERIES]
    # The corpus is built so each side misses what the other finds...
    assert _hit_rate(dense) < 1.0 and _hit_rate(bm25) < 1.0
    # ...and fusion keeps the best of both.
    assert _hit_rate(hybrid) >= _hit_rate(dense)
    assert _hit_rate(hybrid) >= _hit_rate(bm25)
    assert _hit_rate(hybrid) == 1.0
    weighted = [want in [d.id for d in corpus_store.hybrid_search(q, k=5, fusion="weighted")]
                for q, want in QUERIES]
    assert _hit_rate(weighted) >= _hit_rate(dense)
    assert not math.isnan(_hit_rate(weighted))


def test_read_only_handle_sees_the_writers_text(tmp_path):
    with _open(tmp_path, name="ro.db") as writer:
        writer.add_texts(["E4012 on disk", "nothing"], ids=["a", "b"])
        with _open(tmp_path, name="ro.db", read_only=True) as reader:
            assert [d.id for d in reader.bm25_search("E4012")] == ["a"]
            writer.add_texts(["late E4012"], ids=["c"])
            assert {d.id for d in reader.hybrid_search("E4012", k=2)} == {"a", "c"}
