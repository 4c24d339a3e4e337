"""FullTextIndex (BM25) and the fusion functions."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import synadb
from synadb import FullTextIndex, SynaDB
from synadb import fulltext
from synadb.fulltext import rrf, stem, tokenize, weighted_sum

ROOT = str(Path(__file__).resolve().parents[1])

CORPUS = {
    "a": "The quick brown fox jumps over the lazy dog",
    "b": "A quick brown dog outpaces a quick red fox",
    "c": "Lazy dogs sleep all day; the dog sleeps in the sun",
    "d": "Foxes are wild animals. A fox hunts at night",
    "e": "Databases store data in files; synadb stores everything in one file",
    "f": "The brown bear and the brown fox met by the river",
    "g": "",
}


def reference_bm25(corpus: dict[str, str], query: str, k1=1.2, b=0.75, analyze=None):
    """BM25 written out from the formula, one document at a time."""
    analyze = analyze or (lambda s: tokenize(s))
    docs = {k: analyze(t) for k, t in corpus.items()}
    n = len(docs)
    avgdl = sum(len(d) for d in docs.values()) / n
    out = {}
    for key, toks in docs.items():
        tf = Counter(toks)
        score = 0.0
        matched = False
        for term in set(analyze(query)):
            df = sum(1 for d in docs.values() if term in d)
            if not df or not tf[term]:
                continue
            matched = True
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(toks) / avgdl))
        if matched:
            out[key] = score
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


def assert_same(got, want):
    assert [k for k, _ in got] == [k for k, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-12)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "fts.db")


QUERIES = ["quick fox", "lazy dog", "brown", "file", "fox fox night", "nothing here",
           "THE", "sun river data"]


@pytest.mark.parametrize("merged", [False, True], ids=["delta", "merged"])
def test_scores_equal_reference(path, merged, monkeypatch):
    if merged:  # every add is folded into the base arrays at once
        monkeypatch.setattr(fulltext, "MERGE_MIN_DOCS", 0)
    with FullTextIndex(path) as fts:
        assert fts.add(list(CORPUS), list(CORPUS.values())) == len(CORPUS)
        assert len(fts) == len(CORPUS)
        for q in QUERIES:
            assert_same(fts.search(q, k=100), reference_bm25(CORPUS, q))
        assert_same(fts.search("quick fox", k=2), reference_bm25(CORPUS, "quick fox")[:2])
        assert fts.search("quick fox", k=0) == []


def test_allowed_keys_keep_global_statistics(path):
    with FullTextIndex(path) as fts:
        fts.add(list(CORPUS), list(CORPUS.values()))
        want = [kv for kv in reference_bm25(CORPUS, "brown fox") if kv[0] in {"b", "f", "e"}]
        assert_same(fts.search("brown fox", keys={"b", "f", "e"}), want)
        assert_same(fts.search("brown fox", keys=["f"]), [kv for kv in want if kv[0] == "f"])
        assert fts.search("brown fox", keys=[]) == []


def test_upsert_delete_and_reopen(path, monkeypatch):
    corpus = dict(CORPUS)
    with FullTextIndex(path) as fts:
        fts.add(list(corpus), list(corpus.values()))
        fts.add(["a", "h"], ["nothing about animals", "a fox in a box"])
        corpus["a"], corpus["h"] = "nothing about animals", "a fox in a box"
        assert fts.delete(["c", "zzz", "c"]) == 1
        del corpus["c"]
        assert "c" not in fts and "h" in fts and len(fts) == len(corpus)
        for q in QUERIES:
            assert_same(fts.search(q, k=100), reference_bm25(corpus, q))
        # A key given twice keeps its last text.
        fts.add(["i", "i"], ["first text", "second text"])
        corpus["i"] = "second text"
        assert fts.search("first") == []
    # Small index: close() left it as records only; reopening replays them.
    with FullTextIndex(path, read_only=True) as fts:
        for q in QUERIES:
            assert_same(fts.search(q, k=100), reference_bm25(corpus, q))
    # Persisted snapshot, then more changes on top of it, then reopen.
    monkeypatch.setattr(fulltext, "SNAPSHOT_ON_CLOSE_DOCS", 1)
    with FullTextIndex(path) as fts:
        fts.add(["j"], ["the river fox"])
        corpus["j"] = "the river fox"
    with SynaDB(path) as db:
        assert db.exists("__fts__/default/snap")
    monkeypatch.setattr(fulltext, "SNAPSHOT_ON_CLOSE_DOCS", 10**9)
    with FullTextIndex(path) as fts:
        fts.delete(["d"])
        del corpus["d"]
        fts.add(["k"], ["night river"])
        corpus["k"] = "night river"
        assert sorted(fts.keys()) == sorted(corpus)
    with FullTextIndex(path) as fts:
        # j is in the snapshot; the delete of d and the add of k are replayed.
        assert fts.stats()["delta_documents"] == 1
        for q in QUERIES:
            assert_same(fts.search(q, k=100), reference_bm25(corpus, q))


def test_large_index_merges_and_matches_reference(path, monkeypatch):
    monkeypatch.setattr(fulltext, "MERGE_MIN_DOCS", 50)
    rng = random.Random(5)
    words = [f"w{i}" for i in range(60)]
    corpus = {f"k{i}": " ".join(rng.choices(words, k=rng.randint(1, 30))) for i in range(400)}
    with FullTextIndex(path) as fts:
        items = list(corpus.items())
        for i in range(0, 400, 37):
            fts.add([k for k, _ in items[i:i + 37]], [t for _, t in items[i:i + 37]])
        for i in range(0, 400, 9):  # rewrite some, delete others
            if i % 2:
                corpus[f"k{i}"] = "w1 w2 w3 fresh"
                fts.add([f"k{i}"], ["w1 w2 w3 fresh"])
            else:
                del corpus[f"k{i}"]
                fts.delete([f"k{i}"])
        for q in ["w1", "w5 w7", "fresh w3", "w59 w0 w13"]:
            assert_same(fts.search(q, k=500), reference_bm25(corpus, q))
    with FullTextIndex(path, read_only=True) as fts:
        assert fts.stats()["delta_documents"] < 50
        for q in ["w1", "w5 w7", "fresh w3"]:
            assert_same(fts.search(q, k=500), reference_bm25(corpus, q))


def test_damaged_snapshot_is_rebuilt_from_records(path, monkeypatch):
    monkeypatch.setattr(fulltext, "SNAPSHOT_ON_CLOSE_DOCS", 1)
    with FullTextIndex(path) as fts:
        fts.add(list(CORPUS), list(CORPUS.values()))
    with SynaDB(path) as db:
        raw = bytearray(db.get_bytes("__fts__/default/snap"))
        raw[:4] = b"XXXX"  # a snapshot this synadb does not know
        db.put_bytes("__fts__/default/snap", bytes(raw))
    with FullTextIndex(path, read_only=True) as fts:
        assert_same(fts.search("quick fox", k=100), reference_bm25(CORPUS, "quick fox"))


def test_compaction_is_followed(path):
    with FullTextIndex(path) as fts, SynaDB(path) as other:
        fts.add(list(CORPUS), list(CORPUS.values()))
        fts.delete(["a"])
        other.compact(keep_history=False)
        corpus = {k: v for k, v in CORPUS.items() if k != "a"}
        assert_same(fts.search("quick fox", k=100), reference_bm25(corpus, "quick fox"))
        fts.add(["z"], ["quick"])
        corpus["z"] = "quick"
        assert_same(fts.search("quick fox", k=100), reference_bm25(corpus, "quick fox"))


def test_add_is_all_or_nothing(path):
    with FullTextIndex(path) as fts:
        fts.add(["a"], ["kept text"])
        bad_inputs = [
            (["b", "c"], ["fine", 42]),          # a text that is not a str
            (["b", ""], ["fine", "empty key"]),  # an empty key
            (["b", 7], ["fine", "int key"]),     # a key that is not a str
            (["b", "x" * 2000], ["fine", "too long"]),
            (["b", "c"], ["only one"]),          # lengths differ
        ]
        for keys, texts in bad_inputs:
            with pytest.raises(synadb.InvalidArgument):
                fts.add(keys, texts)
        with pytest.raises(synadb.InvalidType):
            fts.add("b", "a str is not a list of keys")
        assert fts.keys() == ["a"] and fts.search("fine") == []
    with SynaDB(path) as db:
        assert [k for k in db.keys() if k.startswith("__fts__/default/d/")] == \
            ["__fts__/default/d/a"]


def test_add_inside_an_aborted_outer_batch_leaves_nothing(path):
    db = SynaDB(path)
    fts = FullTextIndex(db, "shared")
    fts.add(["a"], ["alpha"])
    with pytest.raises(RuntimeError), db.batch():
        fts.add(["b"], ["beta"])
        raise RuntimeError("abort the batch")
    assert fts.keys() == ["a"] and fts.search("beta") == []
    with db.batch():
        fts.add(["b"], ["beta"])
        db.put_text("other", "x")
    assert [k for k, _ in fts.search("beta")] == ["b"]
    fts.close()
    assert not db.closed  # handed in open: left open
    db.close()


def test_read_only_and_bad_arguments(path):
    with FullTextIndex(path) as fts:
        fts.add(["a"], ["text"])
        with pytest.raises(synadb.InvalidArgument):
            fts.search("x", k=-1)
        with pytest.raises(synadb.InvalidArgument):
            fts.search(b"x")
    with FullTextIndex(path, read_only=True) as ro:
        with pytest.raises(synadb.ReadOnlyError):
            ro.add(["b"], ["x"])
        with pytest.raises(synadb.ReadOnlyError):
            ro.delete(["a"])
    for bad in ("", "a/b", 3):
        with pytest.raises(synadb.InvalidArgument):
            FullTextIndex(path, bad)
    fts.close()
    with pytest.raises(synadb.ClosedError):
        fts.search("text")


def test_two_indexes_share_a_file(path):
    with FullTextIndex(path, "one") as one, FullTextIndex(path, "two") as two:
        one.add(["a"], ["apple"])
        two.add(["a"], ["banana"])
        assert [k for k, _ in one.search("apple")] == ["a"] and one.search("banana") == []
        assert [k for k, _ in two.search("banana")] == ["a"]


# ----------------------------------------------------------------- analysis
def test_tokenizer_is_unicode_aware():
    assert tokenize("Hello, WORLD! Ünïcode straße 東京 x_y 42") == \
        ["hello", "world", "ünïcode", "straße", "東京", "x_y", "42"]


def test_stemmer():
    pairs = {"caresses": "caress", "ponies": "poni", "cats": "cat", "running": "run",
             "hopping": "hop", "agreed": "agree", "plastered": "plaster", "motoring": "motor",
             "sing": "sing", "happy": "happi", "relational": "relate", "conditional": "condition",
             "hopefulness": "hopeful", "generalization": "generalize", "fox": "fox",
             "straße": "straße"}
    assert {w: stem(w) for w in pairs} == pairs


def test_stemming_on_and_off(tmp_path):
    texts = {"a": "the runner was running fast", "b": "she runs daily", "c": "a quiet walk"}
    with FullTextIndex(tmp_path / "plain.db") as plain:
        plain.add(list(texts), list(texts.values()))
        assert [k for k, _ in plain.search("run")] == []
        assert [k for k, _ in plain.search("running")] == ["a"]
    path = tmp_path / "stem.db"
    with FullTextIndex(path, stemming=True, stopwords="english") as st:
        st.add(list(texts), list(texts.values()))
        assert sorted(k for k, _ in st.search("run")) == ["a", "b"]
        assert sorted(k for k, _ in st.search("RUNS")) == ["a", "b"]
        assert st.search("the") == []  # a stopword
        analyze = st.analyze
        want = reference_bm25(texts, "running walks", analyze=analyze)
        assert_same(st.search("running walks"), want)
    # The analyser is fixed when the index is created.
    with FullTextIndex(path, read_only=True) as again:
        assert again.stemming and "the" in again.stopwords
        assert sorted(k for k, _ in again.search("run")) == ["a", "b"]
    with pytest.raises(synadb.InvalidArgument):
        FullTextIndex(path, stemming=False)
    with pytest.raises(synadb.InvalidArgument):
        FullTextIndex(path, stopwords=["only"])


# ---------------------------------------------------------------- processes
def test_another_process_adds_are_seen_live(path):
    with FullTextIndex(path) as fts:
        fts.add(["mine"], ["local lantern"])
        reader = FullTextIndex(path, read_only=True)
        assert [k for k, _ in reader.search("lantern")] == ["mine"]
        code = textwrap.dedent("""
            import sys
            from synadb import FullTextIndex
            with FullTextIndex(sys.argv[1]) as fts:
                fts.add(["theirs", "more"], ["remote lantern", "remote only"])
                fts.delete(["mine"])
        """)
        env = dict(os.environ, PYTHONPATH=ROOT)
        subprocess.run([sys.executable, "-c", code, path], check=True, env=env, timeout=60)
        # No reopen: the next read catches up with the other process.
        for idx in (fts, reader):
            assert sorted(k for k, _ in idx.search("lantern remote")) == ["more", "theirs"]
            assert len(idx) == 2 and "mine" not in idx
        want = reference_bm25({"theirs": "remote lantern", "more": "remote only"}, "lantern")
        assert_same(reader.search("lantern"), want)
        reader.close()


# ------------------------------------------------------------------- fusion
def test_rrf():
    a = ["x", "y", "z"]
    b = [("y", 10.0), ("w", 5.0), ("x", 1.0)]
    got = dict(rrf(a, b, k=60))
    assert got["x"] == pytest.approx(1 / 61 + 1 / 63)
    assert got["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert got["z"] == pytest.approx(1 / 63)
    assert got["w"] == pytest.approx(1 / 62)
    assert [k for k, _ in rrf(a, b)] == ["y", "x", "w", "z"]
    weighted = dict(rrf(a, b, k=10, weights=[2.0, 0.5]))
    assert weighted["x"] == pytest.approx(2 / 11 + 0.5 / 13)
    assert rrf() == [] and rrf([], []) == []
    with pytest.raises(synadb.InvalidArgument):
        rrf(a, b, weights=[1.0])
    with pytest.raises(synadb.InvalidArgument):
        rrf(a, k=-1)


def test_rrf_takes_search_results(tmp_path):
    vs = synadb.VectorStore(tmp_path / "v.db", dimensions=2)
    vs.insert("east", [1.0, 0.0])
    vs.insert("north", [0.0, 1.0])
    hits = vs.search([0.9, 0.1], k=2)
    assert [k for k, _ in rrf(hits, ["north"])] == ["north", "east"]
    vs.close()


def test_weighted_sum():
    bm25 = [("a", 12.0), ("b", 6.0), ("c", 0.0)]
    dist = [("b", 0.1), ("c", 0.3), ("d", 0.5)]  # distances: lower is better
    got = dict(weighted_sum(bm25, dist, weights=[0.3, 0.7], higher_is_better=[True, False]))
    assert got == pytest.approx({"a": 0.3, "b": 0.3 * 0.5 + 0.7, "c": 0.7 * 0.5, "d": 0.0})
    assert weighted_sum([("a", 3.0), ("b", 3.0)]) == [("a", 1.0), ("b", 1.0)]
    with pytest.raises(synadb.InvalidArgument):
        weighted_sum([("a", float("nan"))])
    with pytest.raises(synadb.InvalidArgument):
        weighted_sum(bm25, higher_is_better=[True, False])


def test_exported():
    assert "FullTextIndex" in synadb.__all__ and synadb.FullTextIndex is FullTextIndex


def test_checkpoint_after_outer_batches_and_a_snapshot_at_exit(tmp_path, monkeypatch):
    from synadb import fulltext as ftmod

    path = tmp_path / "t.db"
    monkeypatch.setattr(ftmod, "MERGE_MIN_DOCS", 10)
    with SynaDB(path) as db:
        idx = FullTextIndex(db, "docs")
        with db.batch():  # a caller's batch: the index cannot snapshot inside it
            idx.add([f"k{i}" for i in range(50)], [f"word{i} common" for i in range(50)])
        assert db.get_bytes("__fts__/docs/snap") is None
        assert idx.checkpoint() is True
        assert db.get_bytes("__fts__/docs/snap") is not None
        assert idx.checkpoint() is False  # nothing new since
        idx.close()
    # A script that adds enough and just ends leaves a snapshot behind.
    script = textwrap.dedent(f"""
        from synadb import FullTextIndex
        idx = FullTextIndex({str(path)!r}, "exit")
        idx.add([f"d{{i}}" for i in range(300)], [f"text {{i}}" for i in range(300)])
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    with SynaDB(path, read_only=True) as db:
        assert db.get_bytes("__fts__/exit/snap") is not None
    with FullTextIndex(path, "exit", read_only=True) as idx:
        assert len(idx) == 300 and idx.search("text", k=1)
