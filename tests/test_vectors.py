"""VectorStore: exact and HNSW search, filters, persistence, bad input."""

from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb.vectors import VectorStore, compile_filter


def _clustered(n, d, centres=20, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    x = c[rng.integers(0, centres, n)] + 0.25 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _exact(x, q, metric, k):
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1 - xn @ (q / np.linalg.norm(q))
    elif metric == "dot_product":
        d = -(x @ q)
    else:
        d = np.linalg.norm(x - q, axis=1)
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
@pytest.mark.parametrize("dims", [1, 6, 384, 8192])
def test_exact_search_matches_brute_force(tmp_path, metric, dims):
    rng = np.random.default_rng(dims)
    n = 60 if dims == 8192 else 300
    x = rng.normal(size=(n, dims)).astype(np.float32)
    with VectorStore(str(tmp_path / "v.db"), dimensions=dims, metric=metric) as vs:
        vs.insert_batch([f"k{i}" for i in range(n)], x)
        q = rng.normal(size=dims).astype(np.float32)
        got = vs.search(q, k=5)
    want, dist = _exact(x, q, metric, 5)
    if dims > 1:  # in 1-D, cosine ties are everywhere
        assert [r.key for r in got] == [f"k{i}" for i in want]
    np.testing.assert_allclose([r.score for r in got], dist, rtol=1e-4, atol=1e-4)
    assert all(a.score <= b.score for a, b in zip(got, got[1:]))  # lower is closer


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_hnsw_recall_and_scores_agree_with_exact(tmp_path, metric):
    x = _clustered(3000, 32)
    if metric != "cosine":
        x = x * np.random.default_rng(1).uniform(0.5, 2, size=(len(x), 1)).astype(np.float32)
    path = str(tmp_path / "h.db")
    queries = _clustered(50, 32, seed=9)
    with VectorStore(path, dimensions=32, metric=metric, index_threshold=1000) as vs:
        vs.insert_batch([f"k{i}" for i in range(len(x))], x)
        assert vs._index is not None  # crossed the threshold
        hits = 0
        for q in queries:
            res = vs.search(q, k=10)
            want, _ = _exact(x, q, metric, 10)
            hits += len({r.key for r in res} & {f"k{i}" for i in want})
            # Each score is the same distance exact search gives that key.
            order, dist = _exact(x, q, metric, len(x))
            by_key = {f"k{i}": d for i, d in zip(order, dist)}
            np.testing.assert_allclose([r.score for r in res], [by_key[r.key] for r in res],
                                       rtol=1e-3, atol=1e-3)
        assert hits / (10 * len(queries)) >= 0.95


def test_index_persists_and_reopen_does_not_rebuild(tmp_path, monkeypatch):
    x = _clustered(2500, 16)
    path = str(tmp_path / "p.db")
    with VectorStore(path, dimensions=16, index_threshold=1000) as vs:
        vs.insert_batch([f"k{i}" for i in range(2000)], x[:2000])
        before = [r.key for r in vs.search(x[5], k=10)]
    # After the snapshot: more inserts, a delete and an upsert, then reopen.
    with VectorStore(path) as vs:
        vs.insert_batch([f"k{i}" for i in range(2000, 2500)], x[2000:])
        vs.delete("k5")
        vs.insert("k6", x[2400], {"moved": True})
        vs._db.close()  # a crash: no snapshot of these changes
    built = []
    monkeypatch.setattr(VectorStore, "_build_index",
                        lambda self, **kw: built.append(1))
    with VectorStore(path) as vs:
        assert built == [] and vs._index is not None
        assert len(vs) == 2499 and "k5" not in vs
        assert vs.get_metadata("k6") == {"moved": True}
        np.testing.assert_array_equal(vs.get("k6"), x[2400])
        keys = [r.key for r in vs.search(x[5], k=10)]
        assert "k5" not in keys and keys[1:] != before[:1]
        assert [r.key for r in vs.search(x[2400], k=2)] == ["k2400", "k6"] or \
            [r.key for r in vs.search(x[2400], k=2)] == ["k6", "k2400"]
        assert [r.key for r in vs.search(x[2450], k=1)] == ["k2450"]


def test_filters_with_hnsw_still_return_k(tmp_path):
    x = _clustered(3000, 16)
    metas = [{"genre": ["news", "sport", "tech"][i % 3], "year": 2000 + i % 30,
              "rare": i % 500 == 0} for i in range(3000)]
    with VectorStore(str(tmp_path / "f.db"), dimensions=16, index_threshold=500) as vs:
        vs.insert_batch([f"k{i}" for i in range(3000)], x, metas)
        for flt, n_match in [({"genre": "news"}, 1000), ({"year": {"$gte": 2025}}, 500),
                             ({"rare": True}, 6),
                             ({"$and": [{"genre": "tech"}, {"year": {"$in": [2002, 2005]}}]}, 100),
                             ({"$or": [{"genre": "news"}, {"year": 2001}]}, 1100),
                             ({"genre": {"$nin": ["news", "sport"]}}, 1000),
                             ({"$not": {"genre": "news"}}, 2000)]:
            pred = compile_filter(flt)
            res = vs.search(x[7], k=10, filter=flt)
            assert len(res) == min(10, n_match), flt
            assert all(pred(r.metadata) for r in res), flt
            want = [f"k{i}" for i in range(3000) if pred(metas[i])]
            exact = sorted(want, key=lambda k: float(1 - x[int(k[1:])] @ x[7]))[:len(res)]
            assert len({r.key for r in res} & set(exact)) >= 0.8 * len(res), flt
        assert vs.count({"genre": "news"}) == 1000
        assert set(vs.find({"rare": True})) == {f"k{i}" for i in range(0, 3000, 500)}


def test_upsert_replaces_and_delete_is_honoured(tmp_path):
    path = str(tmp_path / "u.db")
    with VectorStore(path, dimensions=3, index_threshold=2) as vs:
        vs.insert("a", [1, 0, 0], {"v": 1})
        vs.insert("b", [0, 1, 0])
        vs.insert("a", [0, 0, 1], {"v": 2})  # upsert
        assert len(vs) == 2
        assert vs.search([1, 0, 0], k=1)[0].key != "a" or vs.search([1, 0, 0], k=1)[0].score > 0.5
        assert vs.search([0, 0, 1], k=1)[0].key == "a"
        assert vs.get_metadata("a") == {"v": 2}
        assert vs.delete("b") is True and vs.delete("b") is False
        assert [r.key for r in vs.search([0, 1, 0], k=5)] == ["a"]
    with VectorStore(path) as vs:
        assert vs.keys() == ["a"] and vs.dimensions == 3
        np.testing.assert_array_equal(vs.get("a"), np.array([0, 0, 1], dtype=np.float32))


def test_metadata_only_records_and_unknown_dimensions(tmp_path):
    path = str(tmp_path / "m.db")
    with VectorStore(path) as vs:  # dimensions come from the first vector
        vs.insert("doc", None, {"title": "no embedding yet"})
        assert vs.dimensions is None and vs.search([1.0, 2.0]) == []
        vs.insert_batch(["x", "y", "z"], [[1.0, 0.0], None, [0.0, 1.0]], [{}, {"t": 1}, {}])
        assert vs.dimensions == 2 and len(vs) == 2 and vs.count() == 4
        assert [r.key for r in vs.search([1.0, 0.1], k=5)] == ["x", "z"]
    with VectorStore(path) as vs:
        assert vs.dimensions == 2 and vs.get("y") is None and vs.get_metadata("y") == {"t": 1}


def test_second_handle_sees_inserts(tmp_path):
    path = str(tmp_path / "two.db")
    a = VectorStore(path, dimensions=2)
    b = VectorStore(path, read_only=True)
    a.insert("p", [1.0, 0.0])
    assert [r.key for r in b.search([1.0, 0.0], k=1)] == ["p"]
    a.delete("p")
    assert b.search([1.0, 0.0], k=1) == [] and len(b) == 0
    a.close()
    b.close()


@pytest.mark.parametrize("bad, error", [
    (lambda vs: vs.insert("k", [1.0, 2.0]), synadb.DimensionMismatch),
    (lambda vs: vs.insert("k", [[1.0, 2.0, 3.0]]), synadb.DimensionMismatch),
    (lambda vs: vs.insert("k", ["a", "b", "c"]), synadb.DimensionMismatch),
    (lambda vs: vs.insert("k", [1.0, float("nan"), 3.0]), synadb.InvalidArgument),
    (lambda vs: vs.insert("k", [1.0, 1e39, 3.0]), synadb.InvalidArgument),
    (lambda vs: vs.insert("", [1.0, 2.0, 3.0]), synadb.InvalidKey),
    (lambda vs: vs.insert("k", [1.0, 2.0, 3.0], {"x": object()}), synadb.InvalidArgument),
    (lambda vs: vs.insert_batch(["a", "b"], np.ones((2, 4))), synadb.DimensionMismatch),
    (lambda vs: vs.insert_batch(["a", "b"], [[1, 2, 3], [1, 2]]), synadb.DimensionMismatch),
    (lambda vs: vs.insert_batch(["a", "b"], np.full((2, 3), np.inf)), synadb.InvalidArgument),
    (lambda vs: vs.search([1.0, 2.0]), synadb.DimensionMismatch),
    (lambda vs: vs.search([1.0, 2.0, float("nan")]), synadb.InvalidArgument),
    (lambda vs: vs.search([1.0, 2.0, 3.0], k=0), synadb.InvalidArgument),
    (lambda vs: vs.search([1.0, 2.0, 3.0], filter={"a": {"$regex": "x"}}),
     synadb.InvalidArgument),
    (lambda vs: vs.search([1.0, 2.0, 3.0], filter={"$or": {}}), synadb.InvalidArgument),
])
def test_bad_input_raises_and_leaves_file_identical(tmp_path, bad, error):
    path = str(tmp_path / "bad.db")
    with VectorStore(path, dimensions=3) as vs:
        vs.insert("ok", [1.0, 2.0, 3.0], {"a": 1})
        vs._db.sync()
        before = Path(path).read_bytes()
        with pytest.raises(error):
            bad(vs)
        assert Path(path).read_bytes() == before
        assert vs.keys() == ["ok"]


def test_unknown_metric_and_mismatched_reopen(tmp_path):
    path = str(tmp_path / "m.db")
    with pytest.raises(synadb.InvalidArgument, match="unknown metric"):
        VectorStore(path, dimensions=3, metric="manhattan")
    with pytest.raises(synadb.DimensionMismatch):
        VectorStore(path, dimensions=0)
    with pytest.raises(synadb.DimensionMismatch):
        VectorStore(path, dimensions=8193)
    with VectorStore(path, dimensions=3, metric="euclidean") as vs:
        vs.insert("a", [1, 2, 3])
    with pytest.raises(synadb.DimensionMismatch, match="3-dimensional"):
        VectorStore(path, dimensions=4)
    with pytest.raises(synadb.InvalidArgument, match="euclidean"):
        VectorStore(path, metric="dot_product")
    with VectorStore(path) as vs:
        assert vs.metric == "euclidean"


def test_compact_drops_dead_vectors_and_keeps_search(tmp_path):
    x = _clustered(1500, 8)
    path = str(tmp_path / "c.db")
    with VectorStore(path, dimensions=8, index_threshold=500) as vs:
        vs.insert_batch([f"k{i}" for i in range(1500)], x)
        vs.insert_batch([f"k{i}" for i in range(500)], x[1000:1500])  # upserts
        vs.delete_many([f"k{i}" for i in range(500, 700)])
        saved = vs.compact(progress=False)
        assert saved > 0 and len(vs) == 1300
        assert vs.search(x[1200], k=1)[0].key in ("k200", "k1200")
    with VectorStore(path) as vs:
        assert len(vs) == 1300 and "k600" not in vs
        assert vs.search(x[1400], k=1)[0].key in ("k400", "k1400")


def test_progress_false_is_silent(tmp_path, capsys):
    x = _clustered(60_000, 4)
    with VectorStore(str(tmp_path / "q.db"), dimensions=4, progress=False,
                     index_threshold=10**9) as vs:
        vs.insert_batch([f"k{i}" for i in range(len(x))], x)
        assert len(vs) == 60_000
    assert capsys.readouterr().err == ""


def test_filter_semantics():
    f = compile_filter
    assert f({"tags": "a"})({"tags": ["a", "b"]})
    assert not f({"n": {"$gt": 3}})({"n": "x"})  # mixed kinds never match
    assert f({"n": {"$ne": 3}})({})  # $ne matches a missing field
    assert f({"a.b": 1})({"a": {"b": 1}})
    assert f({"x": {"$exists": False}})({"y": 1})
    assert not f({"flag": 1})({"flag": True})  # True is not 1 in a filter
    assert f({"$nor": [{"a": 1}, {"a": 2}]})({"a": 3})
    with pytest.raises(synadb.InvalidArgument):
        f({"a": {"$in": 3}})
    with pytest.raises(synadb.InvalidArgument):
        f({"$bogus": []})


# -- found by review: several handles on one store ----------------------------

def test_two_writers_interleaved_lose_nothing(tmp_path):
    path = str(tmp_path / "w.db")
    x = _clustered(400, 8)
    a = VectorStore(path, dimensions=8)
    b = VectorStore(path, dimensions=8)
    for i in range(200):
        a.insert(f"a{i}", x[i])
        b.insert(f"b{i}", x[200 + i])
        if i % 50 == 0:
            a._db._log.release()  # let the other writer in, as the keeper would
            b._db._log.release()
    b.insert_batch([f"c{i}" for i in range(10)], x[:10])
    a.delete("a0")
    assert len(a) == len(b) == 409
    a.close()
    b.close()
    with VectorStore(path) as vs:
        assert len(vs) == 409 and "a0" not in vs
        for key, row in (("a5", 5), ("b7", 207), ("c3", 3)):
            assert key in {r.key for r in vs.search(x[row], k=3)}


def test_handle_follows_compaction_by_another(tmp_path):
    path = str(tmp_path / "c.db")
    x = _clustered(300, 8)
    a = VectorStore(path, dimensions=8, index_threshold=100)
    a.insert_batch([f"k{i}" for i in range(300)], x)
    reader = VectorStore(path, read_only=True)
    assert len(reader) == 300
    a.delete_many([f"k{i}" for i in range(100)])
    a.compact(progress=False)
    a.insert("new", x[0])
    assert len(reader) == 201 and "k0" not in reader and "new" in reader
    deleted = {f"k{i}" for i in range(100)}
    assert not deleted & {r.key for r in reader.search(x[0], k=20)}
    b = VectorStore(path)
    b.insert("more", x[1])
    b.close()
    a.close()
    reader.close()
    with VectorStore(path) as vs:
        assert len(vs) == 202 and "k5" not in vs and vs.get("k5") is None


def test_reader_never_skips_a_batch_that_was_open_when_it_looked(tmp_path):
    path = str(tmp_path / "r.db")
    w = VectorStore(path, dimensions=2)
    r = VectorStore(path, read_only=True)
    with w._db.batch():
        w._db.put_bytes("v/x", b"\x01\x02\x00\x00\x00" + np.array([1, 0], "<f4").tobytes())
        assert len(r) == 0  # not committed yet
    assert len(r) == 1 and [h.key for h in r.search([1.0, 0.0], k=1)] == ["x"]
    w.close()
    r.close()


def test_crash_tail_is_replayed_once_then_snapshotted(tmp_path, monkeypatch):
    path = str(tmp_path / "t.db")
    x = _clustered(1500, 8)
    with VectorStore(path, dimensions=8, index_threshold=100) as vs:
        vs.insert_batch([f"k{i}" for i in range(500)], x[:500])
    vs = VectorStore(path)
    vs.insert_batch([f"k{i}" for i in range(500, 1500)], x[500:])
    vs._db.close()  # killed: no snapshot of the last 1000
    with VectorStore(path) as vs:
        assert len(vs) == 1500
    applied = []
    orig = VectorStore._apply_changes
    monkeypatch.setattr(VectorStore, "_apply_changes",
                        lambda self, keys, **kw: (applied.extend(keys), orig(self, keys, **kw)))
    with VectorStore(path) as vs:
        assert len(vs) == 1500
    assert applied == []  # the second open replays nothing


def test_key_length_counts_the_internal_prefix(tmp_path):
    path = str(tmp_path / "k.db")
    with VectorStore(path, dimensions=2) as vs:
        vs.insert("ok", [1.0, 0.0])
        vs._db.sync()
        before = Path(path).read_bytes()
        for call in (lambda: vs.insert("x" * 1023, [1.0, 0.0]),
                     lambda: vs.insert_batch(["x" * 1023], [[1.0, 0.0]]),
                     lambda: vs.delete("x" * 1023)):
            with pytest.raises(synadb.InvalidKey, match="1022"):
                call()
        nested: dict = {}
        cur = nested
        for _ in range(5000):
            cur["a"] = {}
            cur = cur["a"]
        with pytest.raises(synadb.InvalidArgument):
            vs.insert("deep", [1.0, 0.0], nested)
        assert Path(path).read_bytes() == before


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_vectors_rebuilt_from_the_graph_on_reopen_are_exact(tmp_path, metric):
    x = _clustered(800, 12) * np.float32(3.0)
    path = str(tmp_path / "g.db")
    with VectorStore(path, dimensions=12, metric=metric, index_threshold=100) as vs:
        vs.insert_batch([f"k{i}" for i in range(800)], x)
        vs.insert("k3", x[700])  # an upsert: a dead label in the graph
        before = vs._mat[:len(vs._keys)].copy()
        want = [(r.key, r.score) for r in vs.search(x[5], k=5, filter={"$not": {"z": 1}})]
    with VectorStore(path) as vs:
        # hnswlib normalises cosine vectors itself: equal to the last ulp.
        np.testing.assert_allclose(vs._mat[:len(vs._keys)], before, rtol=0,
                                   atol=1e-6 if metric == "cosine" else 0)
        got = [(r.key, r.score) for r in vs.search(x[5], k=5, filter={"$not": {"z": 1}})]
        assert [k for k, _ in got] == [k for k, _ in want]
        np.testing.assert_array_equal(vs.get("k3"), x[700])


# -- bulk blocks: insert_batch writes a few large records, not one per key -----

def _state(vs):
    return {k: (vs.get(k), vs.get_metadata(k)) for k in vs.keys()}


def _assert_state(vs, want):
    assert sorted(vs.keys()) == sorted(want)
    for k, (vec, meta) in want.items():
        got = vs.get(k)
        if vec is None:
            assert got is None, k
        else:
            np.testing.assert_array_equal(got, vec, err_msg=k)
        assert vs.get_metadata(k) == meta, k


def test_bulk_insert_is_a_few_records_and_round_trips(tmp_path):
    path = str(tmp_path / "b.db")
    x = _clustered(3000, 8) * np.float32(2.0)
    keys = [f"k{i}" for i in range(3000)]
    metas = [{"i": i} if i % 3 == 0 else None for i in range(3000)]
    with VectorStore(path, dimensions=8) as vs:
        vs.insert_batch(keys, x, metas)
        assert len(vs._db) < 10  # config + one block, not 3000 v/<key> records
        assert not any(k.startswith("v/") for k in vs._db.keys())
        want = {k: (x[i], metas[i] or {}) for i, k in enumerate(keys)}
        _assert_state(vs, want)
        assert vs.search(x[7], k=1)[0].key == "k7"
    with VectorStore(path) as vs:  # reopen after close
        _assert_state(vs, want)
        assert vs.search(x[2999], k=1)[0].key == "k2999"


def test_bulk_upserts_and_deletes_across_blocks(tmp_path, monkeypatch):
    from synadb.vectors import store as st

    monkeypatch.setattr(st, "_BLOCK_FLOAT_BYTES", 4 * 3 * 40)  # 40 rows per block
    path = str(tmp_path / "u.db")
    x = _clustered(300, 3, seed=3)
    want = {}
    with VectorStore(path, dimensions=3) as vs:
        follower = VectorStore(path, read_only=True)
        vs.insert_batch([f"k{i}" for i in range(100)], x[:100])  # 3 blocks
        want.update({f"k{i}": (x[i], {}) for i in range(100)})
        vs.insert_batch([f"k{i}" for i in range(50, 150)], x[150:250],
                        [{"second": i} for i in range(100)])  # upserts across blocks
        want.update({f"k{50 + i}": (x[150 + i], {"second": i}) for i in range(100)})
        vs.insert("k10", x[260], {"single": True})  # a single insert over a block row
        want["k10"] = (x[260], {"single": True})
        assert vs.delete("k20") and vs.delete("k60") and vs.delete("k10")  # tombstones
        assert not vs.delete("k20")
        for k in ("k20", "k60", "k10"):
            del want[k]
        assert vs.delete_many(["k5", "k130", "nope"]) == 2
        del want["k5"], want["k130"]
        vs.insert("k20", x[270])  # back after its tombstone
        want["k20"] = (x[270], {})
        vs.insert_batch(["k60", "k61"], [x[280], None], [{"again": 1}, {"meta": "only"}])
        want["k60"] = (x[280], {"again": 1})
        want["k61"] = (None, {"meta": "only"})
        vs.insert_batch(["d", "d"], [x[1], x[2]])  # a later duplicate wins
        want["d"] = (x[2], {})
        _assert_state(vs, want)
        _assert_state(follower, want)  # another handle follows every step
        assert vs.search(x[280], k=1)[0].key == "k60"
        assert "k10" not in {r.key for r in vs.search(x[260], k=5)}
        follower.close()
    with VectorStore(path, read_only=True) as vs:  # no snapshot (small): a full replay
        _assert_state(vs, want)
    with VectorStore(path, index_threshold=50) as vs:  # with an index and a snapshot
        _assert_state(vs, want)
        assert vs.search(x[280], k=1)[0].key == "k60"
    with VectorStore(path) as vs:  # from the snapshot
        _assert_state(vs, want)
        assert len(vs) == len([1 for v, _ in want.values() if v is not None])
        vs.clear()
        assert vs.keys() == [] and vs.get("k0") is None
    with VectorStore(path) as vs:
        assert vs.keys() == [] and len(vs._db.keys("v/*")) == 0
        assert not vs._db.keys("__vs__/bulk/*")


def test_aborted_bulk_batch_leaves_nothing(tmp_path, monkeypatch):
    from synadb.vectors import store as st

    monkeypatch.setattr(st, "_BLOCK_FLOAT_BYTES", 4 * 4 * 100)
    path = str(tmp_path / "a.db")
    x = _clustered(500, 4)
    with VectorStore(path, dimensions=4) as vs:
        vs.insert_batch([f"k{i}" for i in range(200)], x[:200])
        before = _state(vs)
        calls = []
        real = vs._db._put_blob_parts

        def failing(key, parts):
            calls.append(key)
            if len(calls) == 2:
                raise OSError("disk full")
            real(key, parts)

        monkeypatch.setattr(vs._db, "_put_blob_parts", failing)
        with pytest.raises(OSError):
            vs.insert_batch([f"k{i}" for i in range(100, 400)], x[100:400])
        monkeypatch.undo()
        assert _state(vs).keys() == before.keys()
        np.testing.assert_array_equal(vs.get("k150"), x[150])
        assert len(vs) == 200
    with VectorStore(path) as vs:
        assert len(vs) == 200 and "k300" not in vs
        np.testing.assert_array_equal(vs.get("k150"), x[150])


def test_killed_bulk_writer_leaves_the_committed_prefix(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    path = str(tmp_path / "k.db")
    x = _clustered(400, 4)
    with VectorStore(path, dimensions=4) as vs:
        vs.insert_batch([f"k{i}" for i in range(100)], x[:100])
    np.save(tmp_path / "x.npy", x)
    # The child dies (SIGKILL-like, no cleanup) after its first block is
    # in the file and before the batch commits.
    code = textwrap.dedent(f"""
        import os, numpy as np
        from synadb.vectors import store as st
        from synadb.vectors import VectorStore
        st._BLOCK_FLOAT_BYTES = 4 * 4 * 50
        x = np.load({str(tmp_path / "x.npy")!r})
        vs = VectorStore({path!r})
        real = vs._db._put_blob_parts
        n = []
        def put(key, parts):
            real(key, parts)
            n.append(key)
            if len(n) == 3:
                os._exit(9)
        vs._db._put_blob_parts = put
        vs.insert_batch([f"n{{i}}" for i in range(300)], x[100:400])
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(synadb.__file__).parent.parent))
    done = subprocess.run([sys.executable, "-c", code], env=env)
    assert done.returncode == 9
    with VectorStore(path) as vs:
        assert len(vs) == 100 and not vs.find({"x": 1}) and "n0" not in vs
        np.testing.assert_array_equal(vs.get("k99"), x[99])
        vs.insert_batch(["after"], x[:1])
        assert vs._db.verify().ok
    with VectorStore(path) as vs:
        assert len(vs) == 101 and "after" in vs and "n5" not in vs


def test_compact_repacks_blocks_and_a_follower_keeps_up(tmp_path):
    path = str(tmp_path / "c.db")
    x = _clustered(2000, 16)
    with VectorStore(path, dimensions=16, index_threshold=500) as vs:
        follower = VectorStore(path, read_only=True)
        vs.insert_batch([f"k{i}" for i in range(2000)], x)
        vs.delete_many([f"k{i}" for i in range(1500)])  # tombstones over the block
        vs.insert("k1999", x[0], {"moved": 1})
        want = _state(vs)
        old_blocks = vs._db.keys("__vs__/bulk/*")
        vs.compact(progress=False)
        assert len(vs._db.keys("v/*")) == 1  # the tombstones went with the old block
        new_blocks = vs._db.keys("__vs__/bulk/*")
        assert len(new_blocks) == 1 and not set(new_blocks) & set(old_blocks)
        assert len(vs._db.get_bytes(new_blocks[0])) < 600 * 16 * 4  # 499 rows, not 2000
        _assert_state(vs, want)
        _assert_state(follower, want)
        follower.close()
    with VectorStore(path) as vs:
        _assert_state(vs, want)
        assert vs.search(x[1700], k=1)[0].key == "k1700"
