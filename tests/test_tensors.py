"""TensorEngine: typed blocks, bit-exact round trips, glob selection, replacement."""

import os
from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb import SynaDB
from synadb.tensors import DTYPES, TensorEngine


@pytest.fixture
def engine(tmp_path):
    with TensorEngine(str(tmp_path / "training_data.db"), progress=False) as e:
        yield e


def test_the_readme_snippet_runs_as_written(engine):
    X = np.random.default_rng(0).random((10000, 784), dtype=np.float32)
    engine.put_tensor("train/", X)
    X2 = engine.get_tensor("train/*", dtype=np.float32)
    X3 = engine.get_tensor("train/*", shape=(10000, 784), dtype=np.float32)
    assert X2.tobytes() == X.tobytes() and X3.shape == (10000, 784)
    big = np.random.default_rng(1).random((25_000, 64), dtype=np.float32)
    engine.put_tensor_chunked("model/weights/", big, chunk_size=10000)
    B = engine.get_tensor_chunked("model/weights/chunk_*", dtype=np.float32)
    assert B.tobytes() == big.tobytes()
    batches = list(engine.stream("train/*", batch_size=32))
    assert [len(b) for b in batches[:2]] == [32, 32] and len(batches[-1]) == 10000 % 32
    assert np.concatenate(batches).tobytes() == X.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_is_bit_exact_after_reopen(tmp_path, dtype):
    rng = np.random.default_rng(3)
    if dtype == "bool":
        a = rng.random((50, 3, 2)) > 0.5
    elif dtype.startswith("float"):
        a = rng.normal(size=(50, 3, 2)).astype(dtype)
        a.flat[0] = np.nan
        a.flat[1] = -np.inf
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=(50, 3, 2), dtype=dtype, endpoint=True)
    path = str(tmp_path / "d.db")
    with TensorEngine(path) as e:
        e.put_tensor("x/", a)
    with TensorEngine(path, read_only=True) as e:
        b = e.get_tensor("x/*")
        assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes()
        assert e.info("x/")["shape"] == (50, 3, 2) and e.info("x/")["dtype"] == a.dtype


def test_rows_are_blocks_not_keys(tmp_path):
    path = str(tmp_path / "b.db")
    with TensorEngine(path) as e:
        e.put_tensor("train/", np.zeros((20_000, 16), dtype=np.float32))
    with SynaDB(path, read_only=True) as db:
        assert len(db) < 10  # a manifest and a few blocks, not 20,000 keys
    with TensorEngine(path) as e:
        assert len(e.keys("train/*")) == 20_000 and e.keys()[0] == "train/00000"


def test_reput_replaces_and_globs_stay_apart(engine):
    engine.put_tensor("train/", np.ones((100, 4), dtype=np.float32))
    engine.put_tensor_chunked("train/", np.ones((30, 4), dtype=np.float32), chunk_size=10)
    engine.put_tensor("train/", np.full((7, 4), 2, dtype=np.float32))  # replaces both
    got = engine.get_tensor("train/*")
    assert got.shape == (7, 4) and (got == 2).all()
    assert engine.keys("train/*") == [f"train/{i:04d}" for i in range(7)]
    with pytest.raises(synadb.KeyNotFound):
        engine.get_tensor_chunked("train/chunk_*")
    engine.put_tensor_chunked("w/", np.arange(40.0).reshape(20, 2), chunk_size=8)
    engine.put_tensor("wrows/", np.zeros((3, 2)))
    assert engine.get_tensor("w*").shape == (3, 2)  # rows only, never chunks
    assert engine.keys("w/*") == ["w/chunk_0000", "w/chunk_0001", "w/chunk_0002"]
    assert engine.get_tensor_chunked("w/chunk_000[02]").shape == (12, 2)


def test_selection_order_and_partial_patterns(engine):
    a = np.arange(30, dtype=np.int64).reshape(15, 2)
    engine.put_tensor("a/", a)
    engine.put_tensor("b/", a + 100)
    np.testing.assert_array_equal(engine.get_tensor("a/001?"), a[10:15])
    np.testing.assert_array_equal(engine.get_tensor("*/0003"), np.stack([a[3], a[3] + 100]))
    both = engine.get_tensor("*")
    np.testing.assert_array_equal(both, np.concatenate([a, a + 100]))


def test_delete_and_partial_delete(engine):
    a = np.arange(20, dtype=np.int32).reshape(10, 2)
    engine.put_tensor("t/", a)
    assert engine.delete("t/000[0-4]") == 5
    np.testing.assert_array_equal(engine.get_tensor("t/*"), a[5:])
    assert engine.delete("t/*") == 5
    assert engine.tensors() == [] and engine.keys() == []


def test_rows_view_reads_through_the_map(engine):
    a = np.random.default_rng(2).random((5000, 8)).astype(np.float32)
    engine.put_tensor("x/", a, rows_per_block=700)
    view = engine.rows("x/*")
    assert len(view) == 5000 and view.shape == (5000, 8)
    np.testing.assert_array_equal(view[4999], a[4999])
    np.testing.assert_array_equal(view.batch([0, 701, 4999, 3]), a[[0, 701, 4999, 3]])
    assert not view[0].flags.writeable  # a view of the file, not a copy


@pytest.mark.parametrize("bad, error", [
    (lambda e: e.put_tensor("x/", np.array(1.0)), synadb.DimensionMismatch),
    (lambda e: e.put_tensor("x/", np.array([1 + 2j])), synadb.InvalidArgument),
    (lambda e: e.put_tensor("x/", np.array(["a"], dtype=object)), synadb.InvalidArgument),
    (lambda e: e.put_tensor("", np.zeros(3)), synadb.InvalidArgument),
    (lambda e: e.put_tensor("x*/", np.zeros(3)), synadb.InvalidArgument),
    (lambda e: e.get_tensor(""), synadb.InvalidArgument),
    (lambda e: e.get_tensor("nothing/*"), synadb.KeyNotFound),
    (lambda e: e.get_tensor("ok/*", shape=(7, 7)), synadb.DimensionMismatch),
    (lambda e: e.get_tensor("ok/*", dtype=np.int8), synadb.InvalidArgument),
    (lambda e: e.put_tensor_chunked("c/", np.zeros(3), chunk_size=0), synadb.InvalidArgument),
    (lambda e: e.stream("ok/*", batch_size=0).__next__(), synadb.InvalidArgument),
])
def test_bad_input_raises_and_leaves_file_identical(tmp_path, bad, error):
    path = str(tmp_path / "bad.db")
    with TensorEngine(path) as e:
        e.put_tensor("ok/", np.ones((4, 3), dtype=np.float32))
        e.db.sync()
        before = Path(path).read_bytes()
        with pytest.raises(error):
            bad(e)
        assert Path(path).read_bytes() == before


def test_a_damaged_block_is_never_returned(tmp_path):
    path = str(tmp_path / "dmg.db")
    a = np.arange(1000, dtype=np.float64)
    with TensorEngine(path) as e:
        e.put_tensor("x/", a)
        e.put_tensor("y/", a)  # good records after the damage
    raw = bytearray(Path(path).read_bytes())
    at = raw.find(a[500:501].tobytes())
    raw[at] ^= 0xFF
    Path(path).write_bytes(raw)
    with TensorEngine(path, read_only=True) as e:
        with pytest.raises(synadb.ChecksumError):
            e.get_tensor("x/*")
        np.testing.assert_array_equal(e.get_tensor("y/*"), a)


def test_export_parquet_one_row_per_sample_reads_in_duckdb(engine, tmp_path):
    import duckdb
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    y = np.arange(20, dtype=np.int64)
    engine.put_tensor("train/x/", x)
    engine.put_tensor("train/y/", y)
    out = str(tmp_path / "train.parquet")
    assert engine.export_parquet(out, "train/x/*", label_pattern="train/y/*") == 20
    rows = duckdb.sql(f"select key, x, y from '{out}' order by y").fetchall()
    assert len(rows) == 20 and rows[0][0] == "train/x/0000"
    assert [list(r[1]) for r in rows] == x.tolist() and [r[2] for r in rows] == y.tolist()


# -- found by review ------------------------------------------------------------

def test_bad_rows_per_block_and_ragged_rows_change_nothing(engine):
    engine.put_tensor("x/", np.ones((3, 2)))
    for bad in (-1, 0, 1.5, True):
        with pytest.raises(synadb.InvalidArgument):
            engine.put_tensor("x/", np.full((3, 2), 5.0), rows_per_block=bad)
    with pytest.raises(synadb.DimensionMismatch):
        engine.put_tensor("x/", [[1.0, 2.0], [3.0]])
    assert (engine.get_tensor("x/*") == 1).all()


def test_partial_delete_ignores_a_prefix_that_extends_it(engine):
    a = np.arange(6.0).reshape(3, 2)
    engine.put_tensor("a/", a)
    engine.put_tensor("a/b/", a + 100)
    assert engine.delete("a/0001") == 1
    np.testing.assert_array_equal(engine.get_tensor("a/000?"), a[[0, 2]])
    np.testing.assert_array_equal(engine.get_tensor("a/b/*"), a + 100)


def test_a_row_view_stays_one_version_across_a_reput(engine):
    old = np.arange(40.0).reshape(20, 2)
    engine.put_tensor("x/", old, rows_per_block=4)
    view = engine.rows("x/*")
    engine.put_tensor("x/", -old[:10], rows_per_block=4)  # fewer rows, same keys
    np.testing.assert_array_equal(np.stack([view[i] for i in range(20)]), old)
    np.testing.assert_array_equal(engine.get_tensor("x/*"), -old[:10])


def test_casts_that_change_values_are_refused(engine):
    engine.put_tensor("i/", np.array([[300, -1]], dtype=np.int64))
    engine.put_tensor("f/", np.array([[1e10, 1.0]], dtype=np.float64))
    with pytest.raises(synadb.InvalidArgument, match="fit"):
        engine.get_tensor("i/*", dtype=np.int8)
    with pytest.raises(synadb.InvalidArgument, match="overflow"):
        engine.get_tensor("f/*", dtype=np.float16)
    assert engine.get_tensor("i/*", dtype=np.int16).tolist() == [[300, -1]]


def test_zero_rows_round_trip(engine):
    engine.put_tensor("z/", np.zeros((0, 3, 2), dtype=np.float32))
    got = engine.get_tensor("z/*")
    assert got.shape == (0, 3, 2) and got.dtype == np.float32


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
def test_a_reput_releases_the_old_pages_but_old_readers_keep_their_values(tmp_path,
                                                                         monkeypatch):
    # Blocks above the release size: the re-put drops the old records' pages
    # from this handle's map and the cache.  Everyone still holding the old
    # version must read it bit-exact, from the cache or the disk.
    released = []
    fadvise = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: (released.append(a), fadvise(*a)))
    path = str(tmp_path / "big.db")
    rng = np.random.default_rng(5)
    old = rng.random((3000, 256))  # 6 MB in three blocks
    new = rng.random((2000, 256))
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("w/", old, rows_per_block=1000)
        view = e.rows("w/*")
        first = view[1500].copy()
        reader = TensorEngine(path, read_only=True, progress=False)
        other = reader.rows("w/*")
        np.testing.assert_array_equal(other.batch(range(3000)), old)  # mapped there
        e.put_tensor("w/", new, rows_per_block=1000)
        assert len(released) == 3  # the path under test ran, once per old block
        np.testing.assert_array_equal(view.batch(range(3000)), old)
        np.testing.assert_array_equal(view[1500], first)
        np.testing.assert_array_equal(other.batch(range(3000)), old)
        np.testing.assert_array_equal(e.get_tensor("w/*"), new)
        e.put_tensor("w/", old, rows_per_block=1000)  # after a get mapped the pages
        np.testing.assert_array_equal(e.get_tensor("w/*"), old)
        reader.close()
        assert e.db.verify().ok
    with TensorEngine(path, read_only=True) as e:
        np.testing.assert_array_equal(e.get_tensor("w/*"), old)


# -- bad input: SynaErrors, and the file unchanged ------------------------------

def test_row_view_refuses_bad_indices_with_syna_errors(tmp_path):
    path = str(tmp_path / "rows.db")
    with TensorEngine(path) as e:
        e.put_tensor("x/", np.arange(20, dtype=np.float32).reshape(10, 2))
        e.db.sync()
        before = Path(path).read_bytes()
        view = e.rows("x/*")
        for bad in ([10**9], [10], [-1], [0, -11], np.array([3, 10], dtype=np.uint64)):
            with pytest.raises(synadb.InvalidArgument, match="out of range"):
                view.batch(bad)
            with pytest.raises(IndexError):  # and an IndexError, as Python's
                view.batch(bad)
        for bad in ([1.5], [1.0, 2.0], ["a"], [[0, 1], [2]], 5, "01", [True], None):
            with pytest.raises(synadb.InvalidType):
                view.batch(bad)
        with pytest.raises(synadb.InvalidArgument):
            view.batch(np.zeros((2, 2), dtype=np.int64))
        with pytest.raises(synadb.InvalidArgument):
            view[10**9]
        with pytest.raises(synadb.InvalidType):
            view[1.0]
        # What is fine stays fine.
        assert view.batch([9, 0]).tolist() == [[18.0, 19.0], [0.0, 1.0]]
        assert view.batch(np.array([2], dtype=np.uint8)).tolist() == [[4.0, 5.0]]
        assert view.batch([]).shape == (0, 2) and view[-1].tolist() == [18.0, 19.0]
        assert len(list(view)) == 10  # iteration stops at the IndexError
        assert Path(path).read_bytes() == before


@pytest.mark.parametrize("bad, error", [
    (lambda e: e.keys(5), synadb.InvalidType),
    (lambda e: e.info(5), synadb.InvalidType),
    (lambda e: e.get_tensor(5), synadb.InvalidType),
    (lambda e: e.get_tensor("ok/*", dtype="nonsense"), synadb.InvalidType),
    (lambda e: e.put_tensor(5, np.zeros(3)), synadb.InvalidType),
    (lambda e: e.put_tensor_chunked("c/", np.zeros(3), chunk_size="2"), synadb.InvalidType),
    (lambda e: e.stream("ok/*", batch_size="2").__next__(), synadb.InvalidType),
    (lambda e: e.export_parquet(5, "ok/*"), synadb.InvalidType),
    (lambda e: e.export_parquet("/", "ok/*"), synadb.InvalidPath),
    (lambda e: e.export_parquet(e.path + ".parquet", "ok/*", batch_rows=0),
     synadb.InvalidArgument),
    (lambda e: e.delete(5), synadb.InvalidType),
])
def test_wrong_types_raise_syna_errors_and_leave_file_identical(tmp_path, bad, error):
    path = str(tmp_path / "bad.db")
    with TensorEngine(path) as e:
        e.put_tensor("ok/", np.ones((4, 3), dtype=np.float32))
        e.db.sync()
        before = Path(path).read_bytes()
        with pytest.raises(error):
            bad(e)
        assert Path(path).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["bad.db"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_export_parquet_is_fsynced_before_and_after_its_rename(engine, tmp_path, monkeypatch,
                                                              durability_events):
    pytest.importorskip("pyarrow")
    engine.put_tensor("x/", np.arange(12.0).reshape(6, 2))
    target = tmp_path / "x.parquet"
    assert engine.export_parquet(target, "x/*") == 6
    monkeypatch.undo()
    events = durability_events
    (i,) = [i for i, ev in enumerate(events) if ev[0] == "rename"
            and ev[2] == os.path.realpath(target)]
    assert ("fsync", events[i][1]) in events[:i], "renamed before it was fsynced"
    assert ("fsync", os.path.realpath(tmp_path)) in events[i + 1:], "folder not fsynced"
    import pyarrow.parquet as pq
    assert pq.read_table(target).num_rows == 6


def test_export_parquet_of_zero_rows_writes_an_empty_file(engine, tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    engine.put_tensor("none/", np.zeros((0, 3), dtype=np.float32))
    out = tmp_path / "none.parquet"
    assert engine.export_parquet(out, "none/*") == 0
    assert pq.read_table(out).num_rows == 0


# -- layering: components never import an integration ---------------------------

def test_components_import_no_integration_module():
    import ast

    root = Path(__file__).resolve().parents[1] / "synadb"
    for name in ("tensors.py", "tracking.py", "registry.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mods = [("." * node.level) + (node.module or "")]
                mods += [f"{mods[0]}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            assert not any("integrations" in m for m in mods), f"{name} imports {mods}"


def test_get_tensor_torch_finds_the_adapter_without_importing_it_first(tmp_path):
    pytest.importorskip("torch")
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import torch
        from synadb import TensorEngine
        e = TensorEngine({str(tmp_path / "t.db")!r})
        e.put_tensor("x/", np.arange(6, dtype=np.float32).reshape(3, 2))
        before = "synadb.integrations.torch" in sys.modules
        t = e.get_tensor_torch("x/*", dtype=torch.float16)
        assert t.dtype == torch.float16 and t.tolist() == [[0, 1], [2, 3], [4, 5]]
        t = e.get_tensor_torch("x/*", dtype=np.float64)
        assert t.dtype == torch.float64
        print(before, "synadb.integrations.torch" in sys.modules)
    """)
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_get_tensor_torch_and_tf_take_their_frameworks_dtypes(engine):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    engine.put_tensor("x/", x)
    torch = pytest.importorskip("torch")
    t = engine.get_tensor_torch("x/*", dtype=torch.float16)
    assert t.dtype == torch.float16 and t.float().numpy().tolist() == x.tolist()
    with pytest.raises(synadb.InvalidArgument):
        engine.get_tensor_torch("x/*", dtype=torch.int8)  # changes what the values mean
    with pytest.raises(synadb.InvalidType):
        engine.get_tensor_torch("x/*", dtype="nonsense")


def test_get_tensor_tf_takes_tf_dtypes(engine):
    tf = pytest.importorskip("tensorflow")
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    engine.put_tensor("x/", x)
    t = engine.get_tensor_tf("x/*", dtype=tf.float16)
    assert t.dtype == tf.float16 and t.numpy().astype(np.float32).tolist() == x.tolist()


@pytest.mark.parametrize("method, blocked, extra", [("get_tensor_torch", "torch", "torch"),
                                                    ("get_tensor_tf", "tensorflow", "tensorflow")])
def test_a_missing_framework_names_its_extra(tmp_path, method, blocked, extra):
    import subprocess
    import sys

    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "import numpy as np, synadb\n"
            f"e = synadb.TensorEngine({str(tmp_path / 't.db')!r})\n"
            "e.put_tensor('x/', np.ones(3))\n"
            f"try:\n    e.{method}('x/*')\n"
            "except synadb.MissingDependency as err:\n"
            "    print('extra', err.extra)\n")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["extra", extra]
