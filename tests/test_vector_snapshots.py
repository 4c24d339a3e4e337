"""VectorStore index snapshots: one live snapshot per store, written without
close(), never rebuilt at open once built.

Processes are real: a writer that exits without close(), one killed with
SIGKILL, then a reader on the same file.
"""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from synadb import SynaDB
from synadb.vectors import VectorStore

ROOT = str(Path(__file__).resolve().parents[1])
DIMS = 32
THRESHOLD = 200


def _rows(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)


def _used(path):
    """Bytes of log in the file (the file itself also holds preallocated room)."""
    with SynaDB(path, read_only=True) as db:
        return db.storage.log_end()


def _open(path, **kw):
    return VectorStore(path, progress=False, index_threshold=THRESHOLD, **kw)


@pytest.fixture
def builds(monkeypatch):
    """Counts HNSW builds from the vector records (what a snapshot saves)."""
    count = []
    real = VectorStore._build_index

    def counting(self, **kw):
        count.append(1)
        return real(self, **kw)

    monkeypatch.setattr(VectorStore, "_build_index", counting)
    return count


# -- 1. one live snapshot per store -------------------------------------------

def test_one_doc_sessions_then_compact_is_the_size_of_a_fresh_build(tmp_path):
    n, sessions = 3000, 5
    x = _rows(n + sessions)
    keys = [f"k{i}" for i in range(n + sessions)]
    fresh, grown = str(tmp_path / "fresh.db"), str(tmp_path / "grown.db")
    with _open(fresh, dimensions=DIMS) as vs:
        vs.insert_batch(keys, x)
    with _open(grown, dimensions=DIMS) as vs:
        vs.insert_batch(keys[:n], x[:n])
    start = _used(grown)
    for s in range(sessions):
        with _open(grown) as vs:
            vs.insert(keys[n + s], x[n + s])
    # A session that adds one document to 3000 writes no new snapshot.
    assert _used(grown) < start + sessions * 4096
    with _open(grown) as vs:
        vs.compact(progress=False)
    assert _used(grown) <= 1.1 * _used(fresh)
    with SynaDB(grown, read_only=True) as db:
        for key in db.keys("__vs__/snap/*"):
            assert db.storage.history_len(key) == 1, key
    with _open(grown, read_only=True) as vs:
        assert len(vs) == n + sessions and vs.verify().rebuilt == []
        assert vs.search(x[n + 2], k=1)[0].key == keys[n + 2]


def test_snapshots_are_latest_only_so_any_compaction_keeps_one(tmp_path):
    # Each session changes enough to write a snapshot; a plain
    # SynaDB.compact() (keep_history=True, as the CLI runs it) keeps only
    # the newest of them.
    path = str(tmp_path / "v.db")
    x = _rows(2000)
    for s in range(4):
        with _open(path, dimensions=DIMS) as vs:
            vs.insert_batch([f"k{i}" for i in range(500 * s, 500 * s + 500)],
                            x[500 * s:500 * s + 500])
    with SynaDB(path) as db:
        assert db.storage.history_len("__vs__/snap/hnsw/data_level0") >= 2
        db.compact(progress=False)
        for key in db.keys("__vs__/snap/*"):
            if key != "__vs__/snap/info":  # a small text: its history is kept
                assert db.storage.history_len(key) == 1, key
    with _open(path, read_only=True) as vs:
        assert len(vs) == 2000
        assert vs.search(x[1234], k=1)[0].key == "k1234"


def test_a_snapshot_part_no_longer_written_is_deleted(tmp_path):
    # An exact store of many records snapshots its matrix; once the graph
    # holds the vectors, that matrix must not stay behind as a second copy.
    path = str(tmp_path / "v.db")
    x = _rows(3000)
    with VectorStore(path, dimensions=DIMS, progress=False, index_threshold=10**9) as vs:
        vs.insert_batch([f"k{i}" for i in range(2500)], x[:2500])
    with SynaDB(path, read_only=True) as db:
        assert db.exists("__vs__/snap/mat")
    with _open(path) as vs:
        vs.insert_batch([f"k{i}" for i in range(2500, 3000)], x[2500:])
        assert vs._index is not None
    with SynaDB(path, read_only=True) as db:
        assert not db.exists("__vs__/snap/mat")
        assert db.exists("__vs__/snap/hnsw/data_level0")


# -- 2. a snapshot without close() ---------------------------------------------

WRITER = """
    import os, signal, sys
    import numpy as np
    from synadb.vectors import VectorStore
    path, how, n, late = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    x = np.random.default_rng(0).standard_normal((n + late, {dims})).astype(np.float32)
    vs = VectorStore(path, dimensions={dims}, progress=False, index_threshold={threshold})
    vs.insert_batch([f"k{{i}}" for i in range(n)], x[:n])
    for i in range(n, n + late):  # one at a time, as a Haystack pipeline writes
        vs.insert(f"k{{i}}", x[i], {{"late": True}})
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    # "exit": no close(), the script just ends
""".format(dims=DIMS, threshold=THRESHOLD)


def _writer(path, how, n, late):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(WRITER), path, how,
                           str(n), str(late)], env=env, capture_output=True, text=True,
                          timeout=300)
    if how == "kill":
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr


def _check(vs, n, late):
    x = _rows(n + late)
    assert len(vs) == n + late
    assert vs._index is not None
    for i in (3, n - 1, n, n + late - 1):
        assert vs.search(x[i], k=1)[0].key == f"k{i}"
    assert vs.get_metadata(f"k{n + late - 1}") == {"late": True}


def test_a_writer_that_exits_without_close_leaves_a_snapshot(tmp_path, builds):
    path = str(tmp_path / "v.db")
    n, late = 1500, 40  # the late ones: below a snapshot at a write's end, 2.6% at exit
    _writer(path, "exit", n, late)
    with _open(path, read_only=True) as vs:
        assert builds == [] and vs.verify().rebuilt == []
        assert vs._replayed == 0  # the exit's snapshot covers the late inserts too
        _check(vs, n, late)


def test_a_killed_writer_costs_a_replay_of_its_tail_not_a_rebuild(tmp_path, builds):
    path = str(tmp_path / "v.db")
    n, late = 1500, 40
    _writer(path, "kill", n, late)
    with _open(path, read_only=True) as vs:
        assert builds == [] and vs.verify().rebuilt == []
        assert vs._replayed == late  # what came after the snapshot at insert_batch's end
        _check(vs, n, late)
    # A writable handle saves the replayed tail at close: later opens replay nothing.
    with _open(path) as vs:
        assert vs._replayed == late
    with _open(path, read_only=True) as vs:
        assert builds == [] and vs._replayed == 0
        _check(vs, n, late)


def test_a_store_first_built_by_a_killed_writer_is_never_rebuilt(tmp_path, builds):
    # The index is built by an insert that crosses index_threshold: the
    # snapshot is written at the end of that very insert.
    path = str(tmp_path / "v.db")
    _writer(path, "kill", THRESHOLD - 1, 5)
    with _open(path, read_only=True) as vs:
        assert builds == [] and vs.verify().rebuilt == []
        assert vs._replayed <= 5
        _check(vs, THRESHOLD - 1, 5)


def test_single_inserts_snapshot_every_tenth_and_a_crash_replays_little(tmp_path, builds):
    path = str(tmp_path / "v.db")
    n = 4000
    x = _rows(n)
    vs = _open(path, dimensions=DIMS)
    for i in range(n):
        vs.insert(f"k{i}", x[i])
    with SynaDB(path, read_only=True) as db:
        snapshots = db.storage.history_len("__vs__/snap/info")
    assert 2 <= snapshots <= 8  # not one per insert, not one per session only
    vs._db.close()  # a crash: no close()
    builds.clear()
    with _open(path, read_only=True) as ro:
        assert builds == [] and ro.verify().rebuilt == []
        assert ro._replayed <= 1000
        assert len(ro) == n and ro.search(x[3999], k=1)[0].key == "k3999"


def test_an_open_that_builds_the_index_from_the_records_says_so(tmp_path):
    path = str(tmp_path / "v.db")
    with VectorStore(path, dimensions=DIMS, progress=False, index_threshold=10**9) as vs:
        vs.insert_batch([f"k{i}" for i in range(500)], _rows(500))
    with _open(path, read_only=True) as vs:  # a lower threshold: the graph is new
        assert vs._index is not None
        assert any("built from the vector records" in r for r in vs.verify().rebuilt)


# -- 3. a closed file holds each vector once ---------------------------------------

@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_a_closed_file_holds_each_vector_once(tmp_path, metric, builds):
    # hnswlib's saved graph holds every vector; the records hold them too.
    # The snapshot keeps the graph without them (but for dead labels).
    dims, n = 256, 2000
    x = np.random.default_rng(1).standard_normal((n + 50, dims)).astype(np.float32)
    path = str(tmp_path / "v.db")
    with VectorStore(path, dimensions=dims, metric=metric, progress=False,
                     index_threshold=THRESHOLD) as vs:
        vs.insert_batch([f"k{i}" for i in range(n)], x[:n])
        for i in range(50):  # own records, upserts (dead labels) and deletes
            vs.insert(f"s{i}", x[n + i], {"i": i})
        vs.insert("k7", x[n + 7] * 2)
        vs.delete("k9")
        vs.flush()  # the snapshot covers all of it
        want_mat = vs._mat[:len(vs._keys)].copy()
        queries = x[::97]
        want = [[(r.key, r.score) for r in vs.search(q, k=5)] for q in queries]
    raw = (n + 50) * dims * 4
    with SynaDB(path, read_only=True) as db:
        snap = sum(len(db.get_bytes(k)) for k in db.keys("__vs__/snap/*")
                   if k != "__vs__/snap/info")
        dead = len(db.get_bytes("__vs__/snap/dead"))
    assert dead == 2 * dims * 4  # the vectors of k7 and k9 before the upsert and the delete
    assert snap <= 0.2 * raw  # the graph's links and the labels; it was > raw
    builds.clear()
    with VectorStore(path, progress=False, read_only=True, index_threshold=THRESHOLD) as vs:
        assert builds == [] and vs._replayed == 0 and vs.verify().rebuilt == []
        np.testing.assert_allclose(vs._mat[:len(vs._keys)], want_mat, rtol=0,
                                   atol=1e-6 if metric == "cosine" else 0)
        got = [[(r.key, r.score) for r in vs.search(q, k=5)] for q in queries]
        assert [[k for k, _ in g] for g in got] == [[k for k, _ in w] for w in want]
        np.testing.assert_allclose([s for g in got for _, s in g],
                                   [s for w in want for _, s in w], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(vs.get("k7"), x[n + 7] * 2)
        assert "k9" not in vs and vs.get_metadata("s3") == {"i": 3}
