"""Filtered search through the label mask: the same answers as the predicate.

A filter dict becomes one boolean per label (numpy over per-field columns);
selective filters are then answered exactly over the matching rows, broad
ones through the HNSW graph with the mask as its filter.  These tests hold
both to the definition (``compile_filter``'s predicate on each record's
metadata, exact distances by numpy), never to a timing.
"""

import numpy as np
import pytest

from synadb.vectors import VectorStore, compile_filter

D = 16
N = 3000


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, D))
    x = centres[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _meta(i):
    """Every kind a value can have: ints, floats, bools, str, None, lists,
    nested dicts, a missing field, an int too big for a float64."""
    m = {"n": i % 1000, "grp": ["red", "green", "blue", "gold"][i % 4],
         "score": (i * 37 % 101) / 10.0, "flag": i % 3 == 0,
         "tags": [f"t{i % 7}", f"t{i % 11}"] if i % 5 else f"text t{i % 7} here",
         "nested": {"depth": i % 9}}
    if i % 13 == 0:
        del m["grp"]
    if i % 17 == 0:
        m["n"] = None
    if i % 19 == 0:
        m["n"] = str(i % 1000)  # a str where most hold an int
    if i % 23 == 0:
        m["n"] = 2**60 + i  # beyond float64's exact ints
    if i % 29 == 0:
        m["flag"] = 1  # an int, not a bool
    return m


HUGE = {"n": {"$gt": 2**59}}
FILTERS = [
    {"n": {"$lt": 1}},                       # ~0.1%
    {"n": {"$lt": 10}},                      # ~1%
    {"n": {"$lt": 100}},                     # ~10%
    {"n": {"$lt": 500}},                     # ~50%
    {"n": {"$gte": 0}},                      # ~100% (of the ints)
    {"n": 7},
    {"n": {"$eq": 7.0}},
    {"n": {"$ne": 7}},
    {"n": {"$in": [1, 2, 3, 500, "19"]}},
    {"n": {"$nin": [1, 2, 3]}},
    {"n": {"$gte": 100, "$lt": 300}},
    {"n": {"$gt": "5"}},                     # str ordering, on the str rows only
    {"n": None},
    HUGE,                                    # the huge ints
    {"grp": "red"},
    {"grp": {"$in": ["red", "gold"]}},
    {"grp": {"$exists": False}},
    {"grp": {"$exists": True}, "flag": True},
    {"flag": 1},                             # not the bools
    {"flag": {"$gte": True}},
    {"score": {"$lte": 1.5}},
    {"tags": "t3"},                          # any element of a list
    {"tags": {"$contains": "t4"}},           # list element or substring
    {"tags": {"$in": ["t1", "t2"]}},
    {"nested.depth": {"$lt": 2}},
    {"nested": {"depth": 3}},                # a whole dict
    {"$and": [{"n": {"$lt": 200}}, {"grp": "blue"}]},
    {"$or": [{"n": {"$lt": 5}}, {"grp": "gold", "flag": True}]},
    {"$nor": [{"n": {"$lt": 900}}, {"grp": "red"}]},
    {"$not": {"n": {"$lt": 990}}},
    {"n": {"$not": {"$lt": 995}}},
    {"missing_field": {"$exists": False}},
    {"missing_field": 1},
    {},
]


def _truth(vs, q, k, spec):
    """Exact filtered search by the definition: (keys, distances)."""
    pred = compile_filter(spec)
    keys = [key for key in vs.keys() if vs.get(key) is not None
            and (pred is None or pred(vs.get_metadata(key)))]
    if not keys:
        return [], np.zeros(0)
    x = np.stack([vs.get(key) for key in keys]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d = 1.0 - x @ (q / np.linalg.norm(q))
    order = np.argsort(d, kind="stable")[:k]
    return [keys[i] for i in order], d[order]


def _check_mask(vs, spec):
    """The mask agrees with the predicate on every live label."""
    vs.keys()  # take in the other handle's writes first, as search does
    mask = vs._filter_mask(spec)
    if spec == HUGE:
        assert mask is None  # no float64 holds it: the predicate judges
        return
    assert mask is not None, spec
    pred = compile_filter(spec)
    for key, label in list(vs._label.items()):
        assert bool(mask[label]) == pred(vs.get_metadata(key)), (spec, key)


def _recall(vs, queries, k, spec):
    hits = total = 0
    for q in queries:
        want, _ = _truth(vs, q, k, spec)
        got = [r.key for r in vs.search(q, k=k, filter=spec)]
        assert len(got) == len(want), spec
        hits += len(set(got) & set(want))
        total += len(want)
    return 1.0 if total == 0 else hits / total


@pytest.fixture
def store(tmp_path):
    x = _data()
    with VectorStore(tmp_path / "v.db", dimensions=D, index_threshold=2**62,
                     progress=False) as vs:
        vs.insert_batch([f"k{i}" for i in range(N)], x, [_meta(i) for i in range(N)])
        yield vs


@pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
def test_mask_matches_predicate(store, spec):
    _check_mask(store, spec)


@pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
def test_exact_path_equals_exact_filtered_search(store, spec):
    rng = np.random.default_rng(1)
    for q in rng.normal(size=(3, D)).astype(np.float32):
        want, dist = _truth(store, q, 10, spec)
        got = store.search(q, k=10, filter=spec)
        assert [r.key for r in got] == want
        np.testing.assert_allclose([r.score for r in got], dist, atol=1e-5)
        for r in got:
            assert r.metadata == store.get_metadata(r.key)


def test_selective_filter_with_index_is_exact(store):
    store.build_index(progress=False)
    rng = np.random.default_rng(2)
    for spec in ({"n": {"$lt": 1}}, {"n": {"$lt": 10}}, {"n": {"$in": [3, 4]}},
                 {"$and": [{"n": {"$lt": 40}}, {"grp": "red"}]}):
        for q in rng.normal(size=(5, D)).astype(np.float32):
            want, dist = _truth(store, q, 10, spec)
            got = store.search(q, k=10, filter=spec)
            assert [r.key for r in got] == want
            np.testing.assert_allclose([r.score for r in got], dist, atol=1e-5)


@pytest.mark.parametrize("spec", [{"n": {"$lt": 100}}, {"n": {"$lt": 500}}, {"n": {"$gte": 0}},
                                  {"tags": {"$contains": "t4"}}, {"grp": {"$ne": "red"}},
                                  {"$or": [{"n": {"$lt": 50}}, {"flag": True}]}])
def test_broad_filter_through_the_graph_keeps_recall(store, spec):
    store.build_index(progress=False)
    queries = _data(40, seed=3)
    assert _recall(store, queries, 10, spec) >= 0.95


def test_callable_filter_still_uses_the_predicate(store):
    assert store._filter_mask(lambda m: True) is None
    q = _data(1, seed=4)[0]
    got = store.search(q, k=5, filter=lambda m: m.get("grp") == "red")
    want, _ = _truth(store, q, 5, {"grp": "red"})
    assert [r.key for r in got] == want


@pytest.mark.parametrize("indexed", [False, True])
def test_inserts_deletes_and_updates_are_seen(store, indexed):
    if indexed:
        store.build_index(progress=False)
    spec = {"n": {"$lt": 10}}
    q = _data(1, seed=5)[0]
    store.search(q, k=10, filter=spec)  # columns built now, then stale below
    store.insert("new", q, {"n": 3})
    store.insert_batch(["b1", "b2"], np.stack([q, -q]), [{"n": 4}, {"n": 900}])
    assert store.search(q, k=1, filter=spec)[0].key in ("new", "b1")
    assert store.delete("new") and store.delete("b1")
    store.update_metadata("k1", {"n": 999})     # leaves the filter
    store.update_metadata("k1500", {"n": 5})    # joins it
    store.insert("k2", None, {"n": 2})          # metadata only: never returned
    for s in (spec, {"n": 5}, {"n": 999}, {"grp": {"$exists": False}}):
        _check_mask(store, s)
        want, _ = _truth(store, q, 10, s)
        got = [r.key for r in store.search(q, k=10, filter=s)]
        assert got == want
    keys = [r.key for r in store.search(q, k=50, filter=spec)]
    assert "new" not in keys and "b1" not in keys and "k1" not in keys and "k2" not in keys
    assert "k1500" in keys or len(keys) == 50


@pytest.mark.parametrize("indexed", [False, True])
def test_second_handle_writes_are_seen(tmp_path, indexed):
    path = tmp_path / "v.db"
    x = _data()
    a = VectorStore(path, dimensions=D, index_threshold=2**62, progress=False)
    a.insert_batch([f"k{i}" for i in range(N)], x, [_meta(i) for i in range(N)])
    if indexed:
        a.build_index(progress=False)
    b = VectorStore(path, dimensions=D, index_threshold=2**62, progress=False)
    try:
        q = x[0]
        spec = {"n": {"$lt": 10}}
        assert [r.key for r in a.search(q, k=10, filter=spec)] == _truth(a, q, 10, spec)[0]
        b.insert("from_b", q, {"n": 1})
        b.update_metadata("k0", {"n": 700})
        b.delete("k1")
        b.insert_batch(["bb1", "bb2"], np.stack([x[2], x[3]]), [{"n": 2}, {"grp": "new"}])
        for s in (spec, {"n": 700}, {"grp": "new"}, {"n": {"$in": [1, 2]}}):
            _check_mask(a, s)
            want, _ = _truth(a, q, 10, s)
            assert [r.key for r in a.search(q, k=10, filter=s)] == want
        assert a.search(q, k=1, filter=spec)[0].key == "from_b"
    finally:
        b.close()
        a.close()


def test_reopen_and_clear(tmp_path):
    path = tmp_path / "v.db"
    x = _data()
    spec = {"n": {"$lt": 10}}
    with VectorStore(path, dimensions=D, index_threshold=1000, progress=False) as vs:
        vs.insert_batch([f"k{i}" for i in range(N)], x, [_meta(i) for i in range(N)])
        vs.search(x[0], k=10, filter=spec)
    with VectorStore(path, progress=False) as vs:  # labels come from the snapshot
        _check_mask(vs, spec)
        assert [r.key for r in vs.search(x[0], k=10, filter=spec)] == \
            _truth(vs, x[0], 10, spec)[0]
        vs.clear()
        assert vs.search(x[0], k=10, filter=spec) == []
        vs.insert("only", x[0], {"n": 1})
        assert [r.key for r in vs.search(x[0], k=10, filter=spec)] == ["only"]
