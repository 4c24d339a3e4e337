"""VectorStore(quantization=..., memory="mapped"): compact graphs, exact scores.

The quantized graph only proposes candidates; the store re-ranks them on
the float32 vectors in its records.  So every test compares with an exact
store over the same vectors: the keys found (recall on clustered data) and
the scores (exact for every key both return).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("usearch")

from synadb import VectorStore  # noqa: E402
from synadb.errors import InvalidArgument, SynaError  # noqa: E402

DIM = 48
MODES = [(q, m) for q in (None, "f16", "i8", "binary") for m in ("ram", "mapped")
         if (q, m) != (None, "ram")]


def clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    return x.astype(np.float32)


def exact(tmp_path, keys, x, metric="cosine", metas=None):
    ex = VectorStore(tmp_path / f"exact-{metric}.db", DIM, metric=metric,
                     index_threshold=10**9, progress=False)
    ex.insert_batch(keys, x, metas)
    return ex


def recall(vs, ex, queries, k=10, flt=None):
    hits = 0
    for q in queries:
        got = {r.key for r in vs.search(q, k, filter=flt)}
        hits += len(got & {r.key for r in ex.search(q, k, filter=flt)})
    return hits / (k * len(queries))


CASES = [("cosine", q, m) for q, m in MODES] + [
    (metric, q, m) for metric in ("euclidean", "dot_product")
    for q, m in (("i8", "mapped"), ("f16", "ram"), ("binary", "ram"))]


@pytest.mark.parametrize("metric,quant,memory", CASES)
def test_round_trip_recall_and_exact_scores(tmp_path, quant, memory, metric):
    x = clustered(6000)
    keys = [f"k{i}" for i in range(len(x))]
    metas = [{"g": i % 10} for i in range(len(x))]
    path = tmp_path / "q.db"
    with VectorStore(path, DIM, metric=metric, quantization=quant, memory=memory,
                     index_threshold=1000, progress=False) as vs:
        vs.insert_batch(keys[:4000], x[:4000], metas[:4000])
        for i in range(4000, 4100):  # single records beside the blocks
            vs.insert(keys[i], x[i], metas[i])
        vs.insert_batch(keys[4100:], x[4100:], metas[4100:])
        assert vs.delete("k3")
        assert vs.index_info()["kind"] == "usearch"
    ex = exact(tmp_path, [k for k in keys if k != "k3"], np.delete(x, 3, axis=0), metric,
               [m for i, m in enumerate(metas) if i != 3])
    queries = clustered(40, seed=1)
    with VectorStore(path, memory=memory, progress=False) as vs:
        info = vs.index_info()
        assert info["quantization"] == quant and info["mapped"] == (memory == "mapped")
        assert info["vectors"] == len(x) - 1
        if memory == "mapped":  # neither a graph nor a float32 matrix in RAM
            assert info["ram_bytes"] == 0
        # Sign bits of 48 dimensions sort neighbours coarsely (binary is
        # for embeddings of hundreds of dimensions: see the test below).
        # Inner product on vectors of unequal length is not a metric: the
        # float32 hnswlib graph finds 0.81 of these too.
        floor = 0.5 if quant == "binary" else 0.75 if metric == "dot_product" else 0.9
        assert recall(vs, ex, queries) >= floor
        assert recall(vs, ex, queries[:10], flt={"g": 3}) >= floor
        for q in queries[:5]:
            want = {r.key: r.score for r in ex.search(q, 10)}
            for r in vs.search(q, 10):
                if r.key in want:
                    assert r.score == pytest.approx(want[r.key], rel=1e-4, abs=1e-4)
        assert "k3" not in {r.key for r in vs.search(x[3], 5)}
        # Writes after a (mapped) open: found at once, and after a reopen.
        vs.insert("fresh", x[10] + 0.001)
        vs.delete("k11")
        assert vs.search(x[10], 2)[0].key in {"fresh", "k10"}
        assert "k11" not in {r.key for r in vs.search(x[11], 5)}
    with VectorStore(path, memory=memory, progress=False) as vs:
        assert "fresh" in {r.key for r in vs.search(x[10], 2)}
        assert "k11" not in {r.key for r in vs.search(x[11], 5)}
        np.testing.assert_array_equal(vs.get("k7"), x[7])


def test_binary_codes_find_neighbours_at_embedding_sizes(tmp_path):
    x = clustered(4000, dim=384)
    keys = [f"k{i}" for i in range(len(x))]
    with VectorStore(tmp_path / "b.db", 384, quantization="binary", index_threshold=500,
                     progress=False) as vs, \
            VectorStore(tmp_path / "e.db", 384, index_threshold=10**9, progress=False) as ex:
        vs.insert_batch(keys, x)
        ex.insert_batch(keys, x)
        # Sign bits keep only a coarse order: on these clusters even an
        # exact scan of the 400 nearest codes re-ranked finds 0.74 of the
        # true top 10 (measured), and 48 dimensions' worth of bits far less.
        assert recall(vs, ex, clustered(30, seed=2, dim=384)) >= 0.65


@pytest.mark.parametrize("memory", ["ram", "mapped"])
def test_large_batches_after_the_build_index_their_own_rows(tmp_path, memory):
    """A batch of over a million floats is normalised on a second thread
    while it is written; the rows it fills are the ones indexed (a second
    buffer, never filled, was indexed instead: recall fell to ~0.1 at 1M)."""
    x = clustered(4000, dim=384)
    with VectorStore(tmp_path / "big.db", 384, quantization="i8", memory=memory,
                     index_threshold=500, progress=False) as vs:
        vs.insert_batch([f"k{i}" for i in range(1000)], x[:1000])      # builds the index
        vs.insert_batch([f"k{i}" for i in range(1000, 4000)], x[1000:])  # 1.15M floats
        for i in (1000, 2222, 3999):
            assert vs.search(x[i], 1)[0].key == f"k{i}"
    with VectorStore(tmp_path / "big.db", memory=memory, progress=False) as vs:
        assert [vs.search(x[i], 1)[0].key for i in (1500, 3500)] == ["k1500", "k3500"]


def test_quantization_is_kept_in_the_file(tmp_path):
    path = tmp_path / "q.db"
    with VectorStore(path, DIM, quantization="i8", progress=False) as vs:
        vs.insert("a", np.ones(DIM))
    with VectorStore(path, progress=False) as vs:
        assert vs.quantization == "i8"
    with pytest.raises(InvalidArgument, match="quantization='i8'"):
        VectorStore(path, quantization="f16", progress=False)
    with pytest.raises(InvalidArgument, match="unknown quantization"):
        VectorStore(tmp_path / "other.db", DIM, quantization="i4", progress=False)
    with pytest.raises(InvalidArgument, match="memory"):
        VectorStore(tmp_path / "other.db", DIM, memory="disk", progress=False)


def test_mapped_refuses_an_hnswlib_store_clearly(tmp_path):
    path = tmp_path / "plain.db"
    with VectorStore(path, DIM, progress=False) as vs:
        vs.insert("a", np.ones(DIM))
    with pytest.raises(SynaError, match="memory='mapped'"):
        VectorStore(path, memory="mapped", progress=False)


def test_mapped_graph_is_served_from_the_file_and_remapped_after_a_snapshot(tmp_path):
    x = clustered(5000)
    path = tmp_path / "m.db"
    with VectorStore(path, DIM, memory="mapped", quantization="i8", index_threshold=500,
                     progress=False) as vs:
        vs.insert_batch([f"k{i}" for i in range(4000)], x[:4000])
        info = vs.index_info()
        assert info["mapped"]  # the build's snapshot is served from the file at once
        # A tenth more: the next snapshot merges them and maps the new graph.
        vs.insert_batch([f"k{i}" for i in range(4000, 5000)], x[4000:])
        assert vs.index_info()["mapped"]
        assert vs.search(x[4500], 1)[0].key == "k4500"


def test_second_process_reads_a_mapped_store_live(tmp_path):
    x = clustered(3000)
    path = tmp_path / "live.db"
    writer = VectorStore(path, DIM, quantization="i8", memory="mapped", index_threshold=500,
                         progress=False)
    writer.insert_batch([f"k{i}" for i in range(2000)], x[:2000])
    reader = VectorStore(path, read_only=True, memory="mapped", progress=False)
    assert reader.search(x[5], 1)[0].key == "k5"
    writer.insert_batch([f"k{i}" for i in range(2000, 3000)], x[2000:])
    writer.insert("solo", -x[0])
    assert reader.search(x[2500], 1)[0].key == "k2500"
    assert reader.search(-x[0], 1)[0].key == "solo"
    writer.close()
    reader.close()


def test_killed_writer_leaves_a_store_that_opens_and_searches(tmp_path):
    """A writer killed without close(): the next open replays what the last
    snapshot did not cover, and finds every committed vector."""
    path = tmp_path / "killed.db"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from synadb import VectorStore
        rng = np.random.default_rng(3)
        vs = VectorStore({str(path)!r}, {DIM}, quantization="i8", index_threshold=200,
                         progress=False)
        vs.insert_batch([f"k{{i}}" for i in range(2000)],
                        rng.standard_normal((2000, {DIM})).astype(np.float32))
        for i in range(50):
            vs.insert(f"s{{i}}", rng.standard_normal({DIM}).astype(np.float32))
        os._exit(0)  # no close, no atexit
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, DIM)).astype(np.float32)
    singles = rng.standard_normal((50, DIM)).astype(np.float32)
    with VectorStore(path, progress=False) as vs:
        assert len(vs) == 2050
        assert vs.search(x[17], 1)[0].key == "k17"
        assert vs.search(singles[-1], 1)[0].key == "s49"


def test_snapshot_at_exit_writes_large_parts(tmp_path):
    """The snapshot written from the atexit hook (no close) includes parts
    of over 1 MiB, whose CRC used a thread pool that no longer takes work at
    exit: it is computed inline instead of failing."""
    path = tmp_path / "exit.db"
    script = textwrap.dedent(f"""
        import numpy as np
        from synadb import VectorStore
        vs = VectorStore({str(path)!r}, 64, index_threshold=10**9, progress=False)
        vs.insert_batch([f"k{{i}}" for i in range(12000)],
                        np.random.default_rng(0).standard_normal((12000, 64)).astype(np.float32))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "not written at exit" not in proc.stderr, proc.stderr
    from synadb import SynaDB
    with SynaDB(path, read_only=True) as db:
        assert db.exists("__vs__/snap/info")


def test_quantized_store_survives_compaction(tmp_path):
    x = clustered(3000)
    path = tmp_path / "c.db"
    with VectorStore(path, DIM, quantization="f16", index_threshold=500, progress=False) as vs:
        vs.insert_batch([f"k{i}" for i in range(3000)], x)
        vs.delete_many([f"k{i}" for i in range(0, 3000, 2)])
        vs.compact()
        assert len(vs) == 1500
        assert vs.search(x[7], 1)[0].key == "k7"
    with VectorStore(path, progress=False) as vs:
        assert vs.search(x[9], 1)[0].key == "k9"
        assert vs.index_info()["kind"] == "usearch"


def test_without_usearch_asking_for_it_names_the_extra(tmp_path):
    code = textwrap.dedent(f"""
        import sys; sys.modules["usearch"] = None; sys.modules["usearch.index"] = None
        import synadb
        try:
            synadb.VectorStore({str(tmp_path / "q.db")!r}, 8, quantization="i8")
        except synadb.MissingDependency as e:
            print("extra", e.extra)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["extra", "vectors"], out.stderr
