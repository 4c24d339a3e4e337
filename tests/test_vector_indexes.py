"""MmapVectorStore, GravityWellIndex, CascadeIndex, SparseVectorStore,
HybridVectorStore and hybrid_search: recall against brute force, exactness,
persistence, crash safety, and bad input that leaves files untouched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synadb import errors
from synadb.vectors.cascade import PRESETS, CascadeIndex
from synadb.vectors.gravity import GravityWellIndex
from synadb.vectors.hybrid import HybridVectorStore
from synadb.vectors.indexes import ScoredKey, hybrid_search
from synadb.vectors.mmap_store import MmapVectorStore
from synadb.vectors.sparse import SparseVectorStore

ROOT = str(Path(__file__).resolve().parents[1])
D = 128


def clustered(n, d=D, centres=50, noise=0.5, seed=0, nq=100):
    """Unit vectors around ``centres`` random directions (like embeddings of
    topics): nearest-neighbour cosine distance ~0.14, other topics ~1."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    lab = rng.integers(0, centres, n + nq)
    x = c[lab] + noise * rng.standard_normal((n + nq, d)) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float32)
    return x[:n], x[n:]


def brute(x, q, k=10, metric="cosine"):
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        xn = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        qn = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        dist = 1 - qn @ xn.T
    elif metric == "euclidean":
        dist = np.sqrt(((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1))
    else:
        dist = -(q64 @ x64.T)
    return np.argsort(dist, axis=1, kind="stable")[:, :k], dist


def recall(results, truth):
    got = [{int(h.key[1:]) for h in hits} for hits in results]
    return float(np.mean([len(g & set(t.tolist())) / len(t) for g, t in zip(got, truth)]))


def keys_for(n, start=0):
    return [f"k{i}" for i in range(start, start + n)]


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def data():
    x, q = clustered(20_000)
    truth, _ = brute(x, q)
    return x, q, truth


@pytest.fixture(scope="module")
def small():
    x, q = clustered(3000, d=32, centres=20, seed=1, nq=20)
    return x, q


# ------------------------------------------------------------ MmapVectorStore
def test_mmap_exact_then_hnsw_recall(tmp_path, data):
    x, q, truth = data
    with MmapVectorStore(tmp_path / "v.mmap", D, initial_capacity=5000) as store:
        assert store.insert_batch(keys_for(len(x)), x, progress=False) == len(x)
        assert store.capacity >= len(x)
        exact = [store.search(v, k=10) for v in q[:20]]
        assert recall(exact, truth[:20]) == 1.0
        store.build_index(progress=False)
        hits = store.search_batch(q, k=10)
        r = recall(hits, truth)
        assert r >= 0.9, r
        # Scores are cosine distances, closest first, and agree with exact.
        s = [h.score for h in hits[0]]
        assert s == sorted(s)
        assert abs(s[0] - exact[0][0].score) < 1e-5


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_mmap_scores_are_distances(tmp_path, small, metric):
    x, q = small
    truth, dist = brute(x, q, 5, metric)
    with MmapVectorStore(tmp_path / "v.mmap", 32, initial_capacity=64, metric=metric) as store:
        store.insert_batch(keys_for(len(x)), x, progress=False)
        for built in (False, True):
            if built:
                store.build_index(progress=False)
            for i, v in enumerate(q[:5]):
                hits = store.search(v, k=5)
                assert [int(h.key[1:]) for h in hits][:3] == truth[i][:3].tolist()
                assert np.allclose([h.score for h in hits], dist[i][truth[i]], atol=2e-4)


def test_mmap_reopen_keeps_index_without_rebuild(tmp_path, small):
    x, q = small
    path = tmp_path / "v.mmap"
    with MmapVectorStore(path, 32, initial_capacity=100) as store:
        for s in range(0, 2000, 500):  # grows 100 -> ... -> 3200 rows
            store.insert_batch(keys_for(500, s), x[s:s + 500], progress=False)
        store.build_index(progress=False)
        store.insert_batch(keys_for(1000, 2000), x[2000:], progress=False)  # joins the index
        store.checkpoint()
        before = store.search_batch(q, k=10)
        exact_rows = store.get("k2500")
    size = os.path.getsize(path)
    with MmapVectorStore(path, 32) as store:
        assert len(store) == 3000 and store.has_index
        assert store._index is None  # loaded lazily, never rebuilt
        assert store.search_batch(q, k=10) == before
        assert np.array_equal(store.get("k2500"), exact_rows)
        assert store.get("nope") is None
    assert os.path.getsize(path) == size  # nothing changed: nothing written


def test_mmap_upsert_and_duplicate_keys(tmp_path):
    with MmapVectorStore(tmp_path / "v.mmap", 3, initial_capacity=4) as store:
        store.insert_batch(["a", "b", "a"], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], progress=False)
        assert len(store) == 2
        assert store.get("a").tolist() == [0, 0, 1]
        store.build_index(progress=False)
        store.insert_batch(["b"], [[0, 0, 1]], progress=False)
        assert {h.key for h in store.search([0, 0, 1], k=2)} == {"a", "b"}
        assert store.search([0, 0, 1], k=2)[0].score == pytest.approx(0.0, abs=1e-6)


_CRASH = """
import os, sys, numpy as np
sys.path.insert(0, {root!r})
from synadb.vectors.mmap_store import MmapVectorStore
x = np.arange(600 * 4, dtype=np.float32).reshape(600, 4) + 1
s = MmapVectorStore({path!r}, 4, initial_capacity=200)
s.insert_batch([f"k{{i}}" for i in range(300)], x[:300], progress=False)
s.checkpoint()
s.insert_batch([f"k{{i}}" for i in range(300, 600)], x[300:], progress=False)  # grows
{action}
os._exit(0)
"""


@pytest.mark.parametrize("action,expect", [
    ("", 300),                        # killed before the second checkpoint
    ("s.checkpoint()", 600),          # killed after it
    # torn write of the second commit slot: the first one still rules
    (("import synadb.vectors.mmap_store as m\n"
      "m._pwrite = lambda fd, data, off, w=m._pwrite: w(fd, bytes(data)[:20] if "
      "off in m.SLOT_OFFSETS else data, off)\n"
      "s.checkpoint()"), 300),
])
def test_mmap_crash_keeps_last_commit(tmp_path, action, expect):
    path = str(tmp_path / "v.mmap")
    subprocess.run([sys.executable, "-c", _CRASH.format(root=ROOT, path=path, action=action)],
                   check=True, timeout=60)
    with MmapVectorStore(path, 4) as store:
        assert len(store) == expect
        assert store.get(f"k{expect - 1}")[0] == (expect - 1) * 4 + 1
        assert store.search([1, 2, 3, 4], k=1)[0].key == "k0"


def test_mmap_damage_is_reported(tmp_path, small):
    x, _ = small
    path = tmp_path / "v.mmap"
    with MmapVectorStore(path, 32, initial_capacity=4000) as store:
        store.insert_batch(keys_for(500), x[:500], progress=False)
        store.build_index(progress=False)
        store.checkpoint()
        tail = store._tail
    raw = bytearray(file_bytes(path))
    index_at = tail[0] + ((tail[1] + 7) & ~7) + 100
    raw[index_at] ^= 0xFF  # a byte of the saved HNSW image
    Path(path).write_bytes(bytes(raw))
    with MmapVectorStore(path, 32) as store:
        with pytest.raises(errors.ChecksumError):
            store.search(x[0])
        store.build_index(progress=False, force=True)
        assert store.search(x[0], k=1)[0].key == "k0"
    raw = bytearray(file_bytes(path))
    with MmapVectorStore(path, 32) as store:
        tail = store._tail
    raw[tail[0] + 3] ^= 0xFF  # a byte of the key table
    Path(path).write_bytes(bytes(raw))
    with pytest.raises(errors.ChecksumError):
        MmapVectorStore(path, 32)
    other = tmp_path / "other"
    other.write_bytes(b"not a vector file at all" * 10)
    with pytest.raises(errors.NotASynaFile):
        MmapVectorStore(other, 32)
    assert other.read_bytes() == b"not a vector file at all" * 10


def test_mmap_bad_input_changes_nothing(tmp_path, small):
    x, _ = small
    path = tmp_path / "v.mmap"
    with pytest.raises(errors.InvalidArgument):
        MmapVectorStore(path, 32, metric="manhattan")
    with pytest.raises(errors.InvalidArgument):
        MmapVectorStore(path, 8193)
    with pytest.raises(errors.InvalidArgument):
        MmapVectorStore(path, 0)
    assert not path.exists()
    store = MmapVectorStore(path, 32, initial_capacity=100)
    store.insert_batch(keys_for(100), x[:100], progress=False)
    store.checkpoint()
    before = file_bytes(path)
    nan = x[:2].copy()
    nan[1, 3] = np.nan
    bad = [
        (errors.DimensionMismatch, lambda: store.insert_batch(["a"], np.ones((1, 31)))),
        (errors.DimensionMismatch, lambda: store.insert_batch(["a"], np.ones(32))),
        (errors.DimensionMismatch, lambda: store.insert_batch(["a"], [["x"] * 32])),
        (errors.NonFiniteValue, lambda: store.insert_batch(["a", "b"], nan)),
        (errors.NonFiniteValue, lambda: store.insert_batch(["a"], np.full((1, 32), 1e39))),
        (errors.InvalidKey, lambda: store.insert_batch(["", "b"], x[:2])),
        (errors.InvalidKey, lambda: store.insert_batch([1, "b"], x[:2])),
        (errors.InvalidArgument, lambda: store.insert_batch(["a"], x[:2])),
        (errors.DimensionMismatch, lambda: store.search(np.ones(33))),
        (errors.NonFiniteValue, lambda: store.search(np.full(32, np.nan))),
        (errors.InvalidArgument, lambda: store.search(x[0], k=0)),
    ]
    for exc, call in bad:
        with pytest.raises(exc):
            call()
        assert issubclass(exc, errors.SynaError)
    assert len(store) == 100  # nothing grew past capacity either
    assert file_bytes(path) == before
    store.close()
    assert file_bytes(path) == before
    with pytest.raises(errors.DimensionMismatch):
        MmapVectorStore(path, 16)
    with pytest.raises(errors.InvalidArgument):
        MmapVectorStore(path, 32, metric="euclidean")
    assert file_bytes(path) == before
    with pytest.raises(errors.ClosedError):
        store.search(x[0])


def test_mmap_one_handle_at_a_time(tmp_path):
    path = tmp_path / "v.mmap"
    with MmapVectorStore(path, 4, initial_capacity=8), pytest.raises(errors.LockTimeout):
        MmapVectorStore(path, 4)
    MmapVectorStore(path, 4).close()


def test_missing_hnswlib_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "v.mmap"
    with MmapVectorStore(path, 4, initial_capacity=8) as store:
        store.insert_batch(["a"], [[1, 2, 3, 4]], progress=False)
        store.checkpoint()
        before = file_bytes(path)
        monkeypatch.setitem(sys.modules, "hnswlib", None)
        with pytest.raises(errors.MissingDependency, match=r"synadb\[vectors\]"):
            store.build_index(progress=False)
        assert store.search([1, 2, 3, 4], k=1)[0].key == "a"  # exact still works
        assert file_bytes(path) == before


def test_dimension_limits(tmp_path):
    for d in (1, 8192):
        rng = np.random.default_rng(d)
        x = rng.standard_normal((20, d)).astype(np.float32) + 0.1
        for i, cls in enumerate((MmapVectorStore, GravityWellIndex, CascadeIndex)):
            # One dimension has one direction: cosine would tie everything.
            with cls(tmp_path / f"{d}-{i}", d, metric="euclidean") as idx:
                idx.insert_batch(keys_for(20), x, progress=False)
                assert idx.search(x[5], k=1)[0].key == "k5"


# ----------------------------------------------------------- GravityWellIndex
def test_gwi_recall_default_settings(tmp_path, data):
    x, q, truth = data
    with GravityWellIndex(tmp_path / "v.gwi", D) as gwi:
        k = gwi.initialize(x, progress=False)
        assert k == gwi.num_clusters == round(2 * np.sqrt(len(x)))
        gwi.insert_batch(keys_for(len(x)), x, progress=False)
        r = recall(gwi.search_batch(q, k=10), truth)
        assert r >= 0.9, r
        assert recall([gwi.search(v, k=10, nprobe=k) for v in q[:10]], truth[:10]) == 1.0


def test_gwi_persistence_and_retraining(tmp_path, small):
    x, q = small
    path = tmp_path / "v.gwi"
    with GravityWellIndex(path, 32, metric="euclidean") as gwi:
        # Inserted before initialize: searched exactly, then reassigned.
        gwi.insert_batch(keys_for(1000), x[:1000], progress=False)
        truth, _ = brute(x[:1000], q, 10, "euclidean")
        assert recall([gwi.search(v) for v in q], truth) == 1.0
        gwi.initialize(x[:1000], num_clusters=30, progress=False)
        for s in range(1000, 3000, 250):
            gwi.insert_batch(keys_for(250, s), x[s:s + 250], progress=False)
        gwi.save()
        before = gwi.search_batch(q, k=10, nprobe=8)
    with GravityWellIndex(path, 32) as gwi:
        assert gwi.metric == "euclidean" and gwi.num_clusters == 30 and len(gwi) == 3000
        assert gwi.search_batch(q, k=10, nprobe=8) == before
        gwi.clear()
        assert len(gwi) == 0 and gwi.search(q[0]) == []
    with GravityWellIndex(path, 32) as gwi:
        assert len(gwi) == 0 and gwi.num_clusters == 30


def test_gwi_bad_input_changes_nothing(tmp_path, small):
    x, _ = small
    path = tmp_path / "v.gwi"
    with pytest.raises(errors.InvalidArgument):
        GravityWellIndex(path, 32, metric="hamming")
    assert not path.exists()
    gwi = GravityWellIndex(path, 32)
    gwi.initialize(x[:500], progress=False)
    gwi.insert_batch(keys_for(500), x[:500], progress=False)
    gwi.save()  # synced: close then has nothing to add (not even the header's synced end)
    before = file_bytes(path)
    nan = x[:3].copy()
    nan[2, 0] = np.nan
    for exc, call in [
        (errors.DimensionMismatch, lambda: gwi.insert_batch(["a"], np.ones((1, 33)))),
        (errors.NonFiniteValue, lambda: gwi.insert_batch(keys_for(3), nan)),
        (errors.DimensionMismatch, lambda: gwi.initialize(np.ones((10, 5)))),
        (errors.NonFiniteValue, lambda: gwi.initialize(nan)),
        (errors.InvalidArgument, lambda: gwi.initialize(x[:10], num_clusters=11)),
        (errors.InvalidArgument, lambda: gwi.search(x[0], nprobe=0)),
        (errors.DimensionMismatch, lambda: gwi.search(x[0, :5])),
    ]:
        with pytest.raises(exc):
            call()
    assert file_bytes(path) == before
    gwi.close()
    with pytest.raises(errors.DimensionMismatch):
        GravityWellIndex(path, 64)
    with pytest.raises(errors.InvalidArgument):  # a GWI file is not a Cascade file
        CascadeIndex(path, 32)
    assert file_bytes(path) == before


# ------------------------------------------------------------- CascadeIndex
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_cascade_recall_every_preset(tmp_path, data, preset):
    x, q, truth = data
    with CascadeIndex(tmp_path / "v.cascade", D, preset=preset) as idx:
        idx.insert_batch(keys_for(len(x)), x, progress=False)
        r = recall(idx.search_batch(q, k=10), truth)
        assert r >= 0.9, (preset, r)


def test_cascade_presets_do_what_they_say(tmp_path, data):
    """fast_search re-ranks fewer candidates than small, high_recall more."""
    x, q, _ = data
    seen = {}
    for preset in ("fast_search", "small", "high_recall"):
        with CascadeIndex(tmp_path / preset, D, preset) as idx:
            idx.insert_batch(keys_for(len(x)), x, progress=False)
            seen[preset] = np.mean([len(idx._candidates(v / np.linalg.norm(v), 10, None))
                                    for v in q[:20]])
    assert seen["fast_search"] < 0.6 * seen["small"] < 0.6 * seen["high_recall"]


def test_cascade_explicit_settings_and_persistence(tmp_path, small):
    x, q = small
    path = tmp_path / "v.cascade"
    with CascadeIndex(path, 32, num_hyperplanes=12, bucket_capacity=64, nprobe=6) as idx:
        assert (idx.num_tables, idx.num_hyperplanes, idx.bucket_capacity, idx.nprobe) == \
            (4, 12, 64, 6)
        for s in range(0, 3000, 1000):
            idx.insert_batch(keys_for(1000, s), x[s:s + 1000], progress=False)
        idx.save()
        before = idx.search_batch(q, k=10)
    truth, _ = brute(x, q, 10)
    assert recall(before, truth) >= 0.9
    with CascadeIndex(path, 32) as idx:
        assert len(idx) == 3000 and idx.num_hyperplanes == 12
        assert idx.search_batch(q, k=10) == before
        assert idx.search(q[0], k=10, nprobe=10_000)[0].key == f"k{truth[0][0]}"
    with pytest.raises(errors.InvalidArgument):
        CascadeIndex(path, 32, preset="large")  # 32-bit codes, the file has 12
    with pytest.raises(errors.InvalidArgument):
        CascadeIndex(tmp_path / "new", 32, preset="huge")
    with pytest.raises(errors.InvalidArgument):
        CascadeIndex(tmp_path / "new", 32, num_hyperplanes=65)
    assert not (tmp_path / "new").exists()


def test_cascade_folds_segments_on_save(tmp_path, small):
    x, q = small
    path = tmp_path / "v.cascade"
    with CascadeIndex(path, 32) as idx:
        for i in range(40):  # 40 small writes, 40 segments
            idx.insert_batch(keys_for(25, 25 * i), x[25 * i:25 * (i + 1)], progress=False)
        idx.insert_batch(["k3"], x[2999:3000], progress=False)  # an upsert
        grown = os.path.getsize(path)
        idx.save()
        assert idx._nseg == 1
        before = idx.search_batch(q, k=5)
    assert os.path.getsize(path) < grown
    with CascadeIndex(path, 32) as idx:
        assert len(idx) == 1000
        assert idx.search_batch(q, k=5) == before
        assert idx.search(x[2999], k=1)[0].key == "k3"


def test_cascade_bad_input_changes_nothing(tmp_path, small):
    x, _ = small
    path = tmp_path / "v.cascade"
    idx = CascadeIndex(path, 32, "fast_search")
    idx.insert_batch(keys_for(100), x[:100], progress=False)
    before = file_bytes(path)
    for exc, call in [
        (errors.DimensionMismatch, lambda: idx.insert_batch(["a"], np.ones((1, 3)))),
        (errors.NonFiniteValue, lambda: idx.insert_batch(["a"], np.full((1, 32), np.inf))),
        (errors.InvalidKey, lambda: idx.insert_batch(["a\0b"], x[:1])),
        (errors.InvalidArgument, lambda: idx.search(x[0], nprobe=-1)),
    ]:
        with pytest.raises(exc):
            call()
    assert file_bytes(path) == before
    idx.close()


# ---------------------------------------------------------- HybridVectorStore
def test_hybrid_recall_across_layers(tmp_path, data):
    x, q, truth = data
    hot, cold = tmp_path / "hot.gwi", tmp_path / "cold.cascade"
    n = len(x)
    with HybridVectorStore(hot, cold, dimensions=D) as hv:
        hv.initialize_hot(x[:5000], progress=False)
        hv.ingest_batch(keys_for(n // 2), x[:n // 2], progress=False)
        assert hv.promote_to_cold(progress=False) == n // 2
        assert len(hv.hot) == 0 and len(hv.cold) == n // 2
        hv.ingest_batch(keys_for(n // 2 - 500, n // 2), x[n // 2:n - 500], progress=False)
        for i in range(n - 500, n):
            hv.ingest(f"k{i}", x[i])
        assert len(hv) == n
        hits = [hv.search(v, k=10) for v in q]
        r = recall(hits, truth)
        assert r >= 0.9, r
        assert all([h.score for h in hs] == sorted(h.score for h in hs) for hs in hits)
    with HybridVectorStore(hot, cold, dimensions=D) as hv:
        assert len(hv) == n
        assert [hv.search(v, k=10) for v in q[:10]] == hits[:10]


def test_hybrid_hot_copy_wins_until_promoted(tmp_path, small):
    x, _ = small
    with HybridVectorStore(tmp_path / "h", tmp_path / "c", 32, cold_preset="small") as hv:
        hv.initialize_hot(x[:500], progress=False)
        hv.ingest_batch(keys_for(500), x[:500], progress=False)
        hv.promote_to_cold(progress=False)
        hv.ingest("k7", x[2000])  # k7 moves
        assert len(hv) == 500 and "k7" in hv
        top = hv.search(x[2000], k=3)
        assert top[0].key == "k7" and top[0].score == pytest.approx(0, abs=1e-6)
        assert [h.key for h in hv.search(x[7], k=3)].count("k7") <= 1
        assert "k7" not in [h.key for h in hv.search(x[7], k=1)]
        hv.promote_to_cold(progress=False)
        assert len(hv) == 500 and hv.search(x[2000], k=1)[0].key == "k7"
    with pytest.raises(errors.InvalidArgument):
        HybridVectorStore(tmp_path / "same", tmp_path / "same", 32)
    with pytest.raises(errors.DimensionMismatch):
        HybridVectorStore(tmp_path / "h", tmp_path / "c", 16)


# ----------------------------------------------------------- SparseVectorStore
def _sparse_docs(n, vocab, rng, nnz=20):
    docs = []
    for _ in range(n):
        m = int(rng.integers(1, nnz))
        idx = rng.choice(vocab, m, replace=False)
        docs.append((idx, rng.random(m).astype(np.float32) * 3))
    return docs


def _dense(docs, vocab):
    mat = np.zeros((len(docs), vocab))
    for i, (idx, val) in enumerate(docs):
        mat[i, idx] = val.astype(np.float32)
    return mat


def _check_exact(store, docs, live, vocab, queries, k=10):
    mat = _dense(docs, vocab)
    for qi, qv in queries:
        qd = np.zeros(vocab)
        qd[qi] = np.float32(qv) if np.isscalar(qv) else qv.astype(np.float32)
        scores = mat @ qd
        touched = (mat[:, qi] != 0).any(axis=1) & live
        cand = np.flatnonzero(touched)
        order = cand[np.lexsort((cand, -scores[cand]))][:k]
        hits = store.search(qi, qv, k=k)
        assert [h.score for h in hits] == pytest.approx(scores[order].tolist(), rel=1e-9)
        assert [h.key for h in hits] == [f"d{i}" for i in order]


def test_sparse_is_exact(tmp_path):
    rng = np.random.default_rng(3)
    vocab = 2000
    docs = _sparse_docs(6000, vocab, rng)  # > 65536 postings: the merge path runs
    path = tmp_path / "lex.svs"
    queries = [(rng.choice(vocab, 8, replace=False), rng.random(8)) for _ in range(30)]
    live = np.ones(len(docs), dtype=bool)
    with SparseVectorStore(path, vocab_size=vocab) as svs:
        n = svs.index_batch([f"d{i}" for i in range(5000)], [d[0] for d in docs[:5000]],
                            [d[1] for d in docs[:5000]], progress=False)
        assert n == 5000
        for i in range(5000, 6000):  # recent, unmerged postings
            svs.index(f"d{i}", indices=docs[i][0].tolist(), values=docs[i][1].tolist())
        # Replace ten vectors and delete ten.
        for i in range(10):
            docs[i] = (rng.choice(vocab, 5, replace=False), rng.random(5).astype(np.float32))
            svs.index(f"d{i}", docs[i][0], docs[i][1])
        for i in range(10, 20):
            assert svs.delete(f"d{i}")
            live[i] = False
        assert not svs.delete("d10")
        _check_exact(svs, docs, live, vocab, queries)
        st = svs.stats()
        assert (st.num_vectors, st.vocab_size) == (5990, vocab)
        assert st.num_postings == sum(len(d[0]) for d, ok in zip(docs, live) if ok)
    with SparseVectorStore.open(path) as svs:  # replays every segment
        assert svs.vocab_size == vocab and len(svs) == 5990
        _check_exact(svs, docs, live, vocab, queries)
        svs.save()  # folds ~1000 segments into one, compacts
        assert svs._nseg == 1
        _check_exact(svs, docs, live, vocab, queries[:5])
    with SparseVectorStore.open(path) as svs:
        _check_exact(svs, docs, live, vocab, queries, k=3)
        assert svs.search([0], [0.0]) == []  # a zero query matches nothing


def test_sparse_ties_and_scores_higher_is_better(tmp_path):
    with SparseVectorStore(tmp_path / "s", vocab_size=10) as svs:
        svs.index("b", [1, 2], [1.0, 1.0])
        svs.index("a", [1], [2.0])
        svs.index("c", [3], [5.0])
        hits = svs.search([1, 2], [1.0, 1.0], k=5)
        assert hits == [ScoredKey("b", 2.0), ScoredKey("a", 2.0)]  # tie: indexed first
        assert svs.search([3, 9], [2.0, 1.0], k=1) == [("c", 10.0)]


def test_sparse_bad_input_changes_nothing(tmp_path):
    path = tmp_path / "s"
    svs = SparseVectorStore(path, vocab_size=100)
    svs.index("a", [1, 2], [1.0, 2.0])
    svs.save()  # synced: close then has nothing to add (not even the header's synced end)
    before = file_bytes(path)
    for exc, call in [
        (errors.InvalidArgument, lambda: svs.index("b", [1, 1], [1.0, 2.0])),
        (errors.InvalidArgument, lambda: svs.index("b", [100], [1.0])),
        (errors.InvalidArgument, lambda: svs.index("b", [-1], [1.0])),
        (errors.InvalidArgument, lambda: svs.index("b", [1.5], [1.0])),
        (errors.DimensionMismatch, lambda: svs.index("b", [1, 2], [1.0])),
        (errors.NonFiniteValue, lambda: svs.index("b", [1], [np.nan])),
        (errors.InvalidKey, lambda: svs.index("", [1], [1.0])),
        (errors.InvalidArgument, lambda: svs.search([1], [1.0], k=0)),
        (errors.NonFiniteValue, lambda: svs.search([1], [np.inf])),
        (errors.InvalidArgument, lambda: svs.index_batch(["x", "y"], [[1], [2]], [[1.0]])),
    ]:
        with pytest.raises(exc):
            call()
    assert file_bytes(path) == before
    svs.close()
    with pytest.raises(errors.InvalidArgument):
        SparseVectorStore(path, vocab_size=50)
    with pytest.raises(errors.DatabaseNotFound):
        SparseVectorStore.open(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(errors.InvalidArgument):  # a sparse file is not a GWI
        GravityWellIndex(path, 8)
    assert file_bytes(path) == before
    with SparseVectorStore.open(path) as svs:
        assert svs.search([2], [1.0]) == [("a", 2.0)]


# ---------------------------------------------------------------- fusion
def test_rrf_hand_example():
    dense = [ScoredKey("a", 0.1), ScoredKey("b", 0.2), ScoredKey("c", 0.3)]
    sparse = [("c", 9.0), ("d", 5.0), ("a", 1.0), ("c", 0.5)]  # repeated c: best rank only
    got = hybrid_search(dense, sparse, k=10, rrf_k=60)
    want = {"a": 1 / 61 + 1 / 63, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 62}
    assert [h.key for h in got] == ["a", "c", "b", "d"]  # ties: first seen first
    for h in got:
        assert h.score == pytest.approx(want[h.key], rel=1e-12)
    assert [h.key for h in hybrid_search(["x", "y"], ["y"], k=1, rrf_k=0)] == ["y"]
    assert hybrid_search([], [], k=3) == []
    with pytest.raises(errors.InvalidArgument):
        hybrid_search(dense, sparse, k=0)
    with pytest.raises(errors.InvalidArgument):
        hybrid_search(dense, sparse, rrf_k=-1)
    with pytest.raises(errors.InvalidArgument):
        hybrid_search([object()], [])


# ------------------------------------------------------- progress & imports
def test_progress_false_prints_nothing(tmp_path, small, capfd):
    x, _ = small
    with MmapVectorStore(tmp_path / "m", 32, initial_capacity=10) as m:
        m.insert_batch(keys_for(3000), x, progress=False)
        m.build_index(progress=False)
    with HybridVectorStore(tmp_path / "h", tmp_path / "c", 32) as hv:
        hv.initialize_hot(x, progress=False)
        hv.ingest_batch(keys_for(3000), x, progress=False)
        hv.promote_to_cold(progress=False)
    with SparseVectorStore(tmp_path / "s", vocab_size=10) as svs:
        svs.index_batch(["a", "b"], [[1], [2]], [[1.0], [2.0]], progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # The default (progress=True) shows bars only in a terminal; here is none.
    with CascadeIndex(tmp_path / "c2", 32) as idx:
        idx.insert_batch(keys_for(3000), x)
    assert capfd.readouterr() == ("", "")


def test_modules_import_no_hnswlib_or_tqdm():
    code = ("import synadb.vectors.mmap_store, synadb.vectors.gravity, "
            "synadb.vectors.cascade, synadb.vectors.sparse, synadb.vectors.hybrid, "
            "synadb.vectors.indexes, sys, json; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"})
    mods = set(json.loads(out.stdout))
    assert not {"hnswlib", "tqdm"} & mods
