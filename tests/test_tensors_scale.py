"""TensorEngine at scale: selection, ordering and caching cost what they should.

Costs are asserted by counting (names built, manifests parsed, picks and
blocks in a view), never by timing.  The versions these tests guard against
ordered nested prefixes one row at a time (one pick per row, and a block
list per pick), built and matched every row name of every tensor on every
open, and listed every key of the file and parsed every manifest per call.
"""

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import synadb
from synadb import SynaDB
from synadb.tensors import TensorEngine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def engine(tmp_path):
    with TensorEngine(str(tmp_path / "t.db"), progress=False) as e:
        yield e


@pytest.fixture
def name_calls(monkeypatch):
    """The prefix of each call to TensorEngine._names (every row name is built there)."""
    calls = []
    real = TensorEngine._names

    def counting(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(TensorEngine, "_names", staticmethod(counting))
    return calls


@pytest.fixture
def manifest_reads(monkeypatch):
    """The manifest keys parsed, and the calls listing the file's keys."""
    reads, listings = [], []
    real_read, real_keys = TensorEngine._read_manifest, SynaDB.keys

    def read(self, key):
        reads.append(key)
        return real_read(self, key)

    def keys(self, pattern=None):
        listings.append(pattern)
        return real_keys(self, pattern)

    monkeypatch.setattr(TensorEngine, "_read_manifest", read)
    monkeypatch.setattr(SynaDB, "keys", keys)
    return reads, listings


def _width(n):
    return max(4, len(str(max(n - 1, 0))))


def _value(prefix, i):
    """Each row holds its own identity, so a misplaced row shows."""
    return float(sum(map(ord, prefix)) * 100_000 + i)


def _put_all(engine, tensors, rows_per_block=None):
    for prefix, n in tensors.items():
        values = np.array([[_value(prefix, i)] for i in range(n)], dtype=np.float64)
        engine.put_tensor(prefix, values.reshape(n, 1), rows_per_block=rows_per_block)


def _reference(tensors, pattern):
    """(name, prefix, i) of the rows matching, in the order rows() promises:
    by name, equal names by prefix."""
    match = re.compile(fnmatch.translate(pattern), re.S).match
    out = []
    for prefix, n in tensors.items():
        w = _width(n)
        out += [(f"{prefix}{i:0{w}d}", prefix, i) for i in range(n)
                if match(f"{prefix}{i:0{w}d}")]
    return sorted(out)


def _runs(ref):
    """How many stretches of one tensor the reference order has."""
    return sum(1 for j, r in enumerate(ref) if j == 0 or r[1] != ref[j - 1][1])


def _check_view(engine, tensors, pattern):
    ref = _reference(tensors, pattern)
    view = engine.rows(pattern)
    assert view.names == [name for name, _, _ in ref]
    want = np.array([[_value(p, i)] for _, p, i in ref])
    assert np.array_equal(view.batch(range(len(view))), want)
    assert np.array_equal(np.stack([view[j] for j in range(len(view))]), want)
    assert np.array_equal(engine.get_tensor(pattern), want)
    return view, ref


# -- 1. nested prefixes: runs, not a pick per row --------------------------------

def test_a_nested_prefix_costs_one_pick_per_tensor_and_no_names(engine, name_calls):
    # "x/0000" < "x/2999" < "x/day2/0000": digits sort before 'd', so the
    # whole of x/ comes first and then the whole of x/day2/.
    tensors = {"x/": 3000, "x/day2/": 10}
    _put_all(engine, tensors)
    del name_calls[:]
    view = engine.rows("x/*")
    assert len(view) == 3010
    assert len(view._picks) == 2, "one pick per row: ordering is quadratic"
    assert len(view._keys) == 2, "each tensor's one block, once"
    assert name_calls == [], "no name needs building to order the rows"
    _check_view(engine, tensors, "x/*")


def test_interleaved_names_merge_in_runs_and_share_each_tensors_blocks(engine):
    # "x/1" + "0123" = "x/10123" sorts between x/'s "x/1012" and "x/1013":
    # ten rows of x/1 after each of x/1000..x/1029, the worst kind of mixing.
    tensors = {"x/": 1200, "x/1": 300}
    _put_all(engine, tensors, rows_per_block=7)
    blocks = sum(-(-n // 7) for n in tensors.values())
    for pattern in ("x/*", "x/1*", "x/10*", "x/102?", "x/1[0-2]*"):
        view, ref = _check_view(engine, tensors, pattern)
        assert len(view._picks) == _runs(ref), pattern
    view, ref = _check_view(engine, tensors, "x/*")
    assert _runs(ref) == 61  # x/0000..x/1000, then 30 × (ten of x/1, one of x/)
    assert len(view._keys) == blocks, "a block list per pick, not per tensor"
    assert len(set(view._keys)) == blocks


def test_equal_names_order_by_prefix(engine):
    # With 10,001 rows, t/ is 5 digits wide: its row 10000 is "t/10000",
    # as is row 0 of t/1.  The shorter prefix comes first, as it always did.
    tensors = {"t/": 10_001, "t/1": 5}
    _put_all(engine, tensors)
    for pattern in ("t/1000*", "t/10000", "t/1000?"):
        view, ref = _check_view(engine, tensors, pattern)
    view, ref = _check_view(engine, tensors, "t/1000*")
    assert [r[1] for r in ref][:2] == ["t/", "t/1"] and ref[0][0] == ref[1][0] == "t/10000"


_TENSORS = {"a/": 25, "a/1": 12, "a/b/": 3, "ab": 2, "b/": 11, "b/00": 4}
_PIECES = ["a", "b", "/", "0", "1", "2", "9", "00", "a/", "a/1", "b/0", "*", "?", "[0-1]",
           "[!0]", "[a/]", "[", "]", "[!]", "[]1]", "-", "!"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    with TensorEngine(str(tmp_path_factory.mktemp("mixed") / "m.db"), progress=False) as e:
        _put_all(e, _TENSORS, rows_per_block=5)
        yield e


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6).map("".join))
def test_any_glob_selects_what_fnmatch_selects_in_name_order(mixed, pattern):
    ref = _reference(_TENSORS, pattern)
    assert mixed.keys(pattern) == sorted(name for name, _, _ in ref)
    if not ref:
        with pytest.raises(synadb.KeyNotFound):
            mixed.rows(pattern)
        return
    view, _ = _check_view(mixed, _TENSORS, pattern)
    assert len(view._picks) == _runs(ref)


# -- 2. tensors a pattern cannot reach cost nothing ------------------------------

def test_a_pattern_never_names_the_rows_of_a_tensor_it_cannot_reach(engine, name_calls):
    engine.put_tensor("big/", np.zeros((200_000, 1), dtype=np.uint8))
    engine.put_tensor("small/", np.arange(100, dtype=np.uint8).reshape(100, 1))
    del name_calls[:]
    assert len(engine.rows("small/*")) == 100
    assert engine.rows("small/00[0-4]?").batch(range(50)).ravel().tolist() == list(range(50))
    assert engine.rows("small/0042")[0].tolist() == [42]
    assert engine.get_tensor("small/00?1").ravel().tolist() == list(range(1, 100, 10))
    assert engine.keys("small/*") == [f"small/{i:04d}" for i in range(100)]
    assert engine.keys("small/009*") == [f"small/{i:04d}" for i in range(90, 100)]
    assert engine.delete("small/0003") == 1
    assert engine.info("small/")["shape"] == (99, 1)
    assert "big/" not in name_calls, "names of every row of big/ were built"


def test_digit_globs_on_a_large_tensor_build_no_names(engine, name_calls):
    engine.put_tensor("big/", np.arange(200_000, dtype=np.int64).reshape(-1, 1))
    del name_calls[:]
    assert engine.get_tensor("big/*").shape == (200_000, 1)
    # 200,000 rows: six digits wide.
    assert engine.get_tensor("big/00001?").ravel().tolist() == list(range(10, 20))
    assert engine.get_tensor("big/1?000?").ravel().tolist() == [
        i for i in range(100_000, 200_000) if str(i)[2:5] == "000"]
    assert engine.get_tensor("big/19999[!0-8]").ravel().tolist() == [199_999]
    assert len(engine.rows("big/0[0-4]????")) == 50_000
    assert name_calls == []


# -- 2b. manifests are cached per handle and follow every writer ----------------

def test_a_second_open_with_nothing_new_parses_and_lists_nothing(engine, manifest_reads):
    reads, listings = manifest_reads
    engine.put_tensor("a/", np.ones((4, 2), dtype=np.float32))
    engine.put_tensor("b/", np.zeros((3, 2), dtype=np.float32))
    for i in range(50):  # another component's keys share the file
        engine.db.put_text(f"other/{i}", "x")
    assert len(engine.rows("a/*")) == 4
    del reads[:], listings[:]
    for _ in range(3):
        assert len(engine.rows("a/*")) == 4
        assert engine.keys("b/*") == ["b/0000", "b/0001", "b/0002"]
        assert engine.get_tensor("b/*").shape == (3, 2)
        assert engine.tensors() == ["a/", "b/"]
    assert reads == [] and listings == []
    # Its own put is learned as it commits: no manifest re-read, no listing.
    engine.put_tensor("c/", np.ones((2, 2), dtype=np.float32))
    del reads[:], listings[:]
    assert engine.tensors() == ["a/", "b/", "c/"]
    assert reads == [] and listings == []


def test_another_handles_writes_are_seen_reading_only_what_changed(tmp_path, manifest_reads):
    reads, listings = manifest_reads
    path = str(tmp_path / "shared.db")
    with TensorEngine(path, progress=False) as writer:
        writer.put_tensor("a/", np.ones((4, 2), dtype=np.float32))
        writer.put_tensor("b/", np.ones((4, 2), dtype=np.float32))
        with TensorEngine(path, read_only=True, progress=False) as reader:
            assert reader.tensors() == ["a/", "b/"]
            writer.put_tensor("c/", np.full((5, 2), 3, dtype=np.float32))
            del reads[:], listings[:]
            assert reader.get_tensor("c/*").tolist() == [[3.0, 3.0]] * 5
            assert reads == ["__tensor__/c/"] and listings == []
            writer.put_tensor("a/", np.full((2, 3), 7, dtype=np.float32))  # replaced
            assert reader.get_tensor("a/*").tolist() == [[7.0] * 3] * 2
            writer.delete("b/*")
            with pytest.raises(synadb.KeyNotFound):
                reader.rows("b/*")
            assert reader.tensors() == ["a/", "c/"]
            writer.db.compact()  # a new file: the cached offsets mean nothing
            writer.put_tensor("d/", np.ones((1, 2), dtype=np.float32))
            assert reader.tensors() == ["a/", "c/", "d/"]
            assert writer.tensors() == ["a/", "c/", "d/"]


def test_an_aborted_batch_leaves_no_manifest_in_the_cache(engine):
    engine.put_tensor("a/", np.ones((4, 2), dtype=np.float32))
    assert engine.tensors() == ["a/"]
    with pytest.raises(RuntimeError, match="abort"):
        with engine.db.batch():
            engine.put_tensor("tmp/", np.ones((3, 2), dtype=np.float32))
            engine.put_tensor("a/", np.zeros((1, 2), dtype=np.float32))
            assert len(engine.rows("tmp/*")) == 3  # the batch sees its own writes
            assert engine.tensors() == ["a/", "tmp/"]
            raise RuntimeError("abort")
    with pytest.raises(synadb.KeyNotFound):
        engine.rows("tmp/*")
    assert engine.tensors() == ["a/"]
    assert engine.get_tensor("a/*").tolist() == [[1.0, 1.0]] * 4


def test_a_failed_put_leaves_the_cache_as_the_file_is(engine, monkeypatch):
    engine.put_tensor("a/", np.ones((4, 2), dtype=np.float32))
    assert engine.tensors() == ["a/"]

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(engine.db.storage.__class__, "put_blob_parts", fail)
    with pytest.raises(OSError):
        engine.put_tensor("b/", np.ones((4, 2), dtype=np.float32))
    monkeypatch.undo()
    assert engine.tensors() == ["a/"]
    engine.put_tensor("b/", np.ones((4, 2), dtype=np.float32))
    assert engine.tensors() == ["a/", "b/"]


# -- 3. torch and TensorFlow dtypes, duck-typed ---------------------------------

_TORCH_DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                 "bool"]


@pytest.mark.parametrize("name", _TORCH_DTYPES)
def test_torch_tensors_and_dtypes_round_trip(engine, name):
    torch = pytest.importorskip("torch")
    dt = getattr(torch, name)
    t = (torch.arange(6) % 2).to(dt).reshape(3, 2)
    assert engine.put_tensor("x/", t) == 3
    got = engine.get_tensor("x/*", dtype=dt)
    assert got.dtype == np.dtype(name) and got.tolist() == t.tolist()


def test_get_tensor_casts_to_a_torch_dtype(engine):
    torch = pytest.importorskip("torch")
    engine.put_tensor("x/", np.arange(6, dtype=np.float32).reshape(3, 2))
    got = engine.get_tensor("x/*", dtype=torch.float16)
    assert got.dtype == np.float16 and got.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert engine.get_tensor("x/*", dtype=torch.float64).dtype == np.float64
    with pytest.raises(synadb.InvalidArgument, match="bfloat16"):
        engine.get_tensor("x/*", dtype=torch.bfloat16)
    with pytest.raises(synadb.InvalidArgument, match="cannot cast"):
        engine.get_tensor("x/*", dtype=torch.int8)  # float to int: refused, as for numpy


def test_put_tensor_takes_torch_tensors_numpy_would_refuse(engine):
    torch = pytest.importorskip("torch")
    w = torch.ones(3, 2, requires_grad=True)  # np.asarray(w) raises RuntimeError
    assert engine.put_tensor("w/", w * 2) == 3
    assert engine.get_tensor("w/*").tolist() == [[2.0, 2.0]] * 3
    with pytest.raises(synadb.InvalidArgument, match="bfloat16"):
        engine.put_tensor("b/", torch.ones(2, 2, dtype=torch.bfloat16))
    assert engine.tensors() == ["w/"]


def test_tensorflow_tensors_and_dtypes_work(tmp_path):
    pytest.importorskip("tensorflow")
    # A subprocess: importing TensorFlow here would fix its devices before
    # test_tensorflow.py configures them.
    script = (
        "import json, sys, numpy as np\n"
        "import tensorflow as tf\n"
        "from synadb.tensors import TensorEngine\n"
        "with TensorEngine(sys.argv[1], progress=False) as e:\n"
        "    e.put_tensor('x/', tf.constant([[1.5, 2.0], [3.0, 4.0]]))\n"
        "    a = e.get_tensor('x/*', dtype=tf.float16)\n"
        "    e.put_tensor('v/', tf.Variable([1, 2, 3], dtype=tf.int16))\n"
        "    b = e.get_tensor('v/*', dtype=tf.int64)\n"
        "    print(json.dumps([str(a.dtype), a.tolist(), str(b.dtype), b.tolist()]))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tf.db")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == ["float16", [[1.5, 2.0], [3.0, 4.0]], "int64", [1, 2, 3]]


def test_tensors_imports_no_framework():
    tree = ast.parse((ROOT / "synadb" / "tensors.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module or ""]
        else:
            continue
        assert not any(m.split(".")[0] in ("torch", "tensorflow") for m in mods), mods


# ------------------------------------------------- lazy checks, compaction
def test_a_row_view_opens_without_reading_its_blocks(tmp_path, monkeypatch):
    from synadb import dataset as dsmod

    path = str(tmp_path / "t.db")
    x = np.arange(400_000, dtype=np.float32).reshape(-1, 100)  # 1.6 MB: 25 segments
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("x/", x, rows_per_block=1000)
    checked = []
    real = dsmod.CheckedBuffer._check
    monkeypatch.setattr(dsmod.CheckedBuffer, "_check",
                        lambda self, segs: checked.extend(list(segs)) or real(self, list(segs)))
    with TensorEngine(path, read_only=True, progress=False) as e:
        view = e.rows("x/*")
        assert checked == []
        np.testing.assert_array_equal(view.batch([5, 3999]), x[[5, 3999]])
        assert 1 <= len(checked) <= 4
        np.testing.assert_array_equal(view[17], x[17])


def test_a_damaged_tensor_segment_is_reported_when_read(tmp_path):
    path = tmp_path / "t.db"
    x = np.arange(200_000, dtype=np.int64).reshape(-1, 4)
    with TensorEngine(str(path), progress=False) as e:
        e.put_tensor("x/", x)
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(np.arange(120_000, 120_004, dtype="<i8").tobytes())
    raw[at + 1] ^= 0x10
    path.write_bytes(bytes(raw))
    with TensorEngine(str(path), read_only=True, progress=False) as e:
        view = e.rows("x/*")
        np.testing.assert_array_equal(view.batch([0, 49_999]), x[[0, 49_999]])
        with pytest.raises(synadb.ChecksumError, match="tensor block"):
            view.batch([30_000])
        with pytest.raises(synadb.ChecksumError):
            e.get_tensor("x/*")


def test_blocks_written_before_crc_tables_still_read(tmp_path):
    import json
    import struct

    path = str(tmp_path / "t.db")
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    head = (struct.pack("<4sBB2x", b"STB1", 2, 2) + struct.pack("<2Q", 4, 3)).ljust(64, b"\0")
    with synadb.SynaDB(path) as db:  # what an older synadb wrote
        db.put_bytes("__tensor__/x/#0", head + x.tobytes())
        db.put_text("__tensor__/x/", json.dumps({
            "version": 1, "kind": "rows", "dtype": "float32", "shape": [4, 3], "width": 4,
            "blocks": [["__tensor__/x/#0", 0, 4]]}))
    with TensorEngine(path, read_only=True, progress=False) as e:
        np.testing.assert_array_equal(e.get_tensor("x/*"), x)
        np.testing.assert_array_equal(e.rows("x/*").batch([2, 0]), x[[2, 0]])


def test_compaction_reclaims_a_replaced_tensor_by_default(tmp_path):
    import os

    path = str(tmp_path / "t.db")
    x = np.ones((50_000, 64), np.float32)  # 12.8 MB
    with TensorEngine(path, progress=False) as e:
        for i in range(4):
            e.put_tensor("x/", x * i)
        before = os.path.getsize(path)
        e.db.compact()
        assert os.path.getsize(path) < before / 3
        np.testing.assert_array_equal(e.get_tensor("x/0004[0-9]"), x[:10] * 3)
