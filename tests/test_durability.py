"""The engine's promises about bytes on disk: checksums, torn tails, bad files.

These tests break real files: they flip bytes, cut files short, append
garbage, and check what synadb then returns.
"""

import os
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synadb
from synadb import SynaDB
from synadb.engine import format as fmt
from synadb.engine.log import Scanner


def _build(path, ops):
    """Apply (kind, key, value) ops; return [(end offset, {key: history})]."""
    states = []
    hist = {}
    with SynaDB(path) as db:
        for kind, key, value in ops:
            if kind == "delete":
                if db.delete(key):
                    hist.pop(key, None)
            else:
                getattr(db, "put_" + kind)(key, value)
                hist.setdefault(key, []).append(value)
            states.append((db._log.end, {k: list(v) for k, v in hist.items()}))
    return states


def _sample_ops(n, seed):
    rng = random.Random(seed)
    ops = []
    for i in range(n):
        key = f"k{rng.randrange(6)}"
        r = rng.random()
        if r < 0.45:
            ops.append(("float", key, rng.uniform(-1e6, 1e6)))
        elif r < 0.6:
            ops.append(("int", key, rng.randrange(-2**63, 2**63)))
        elif r < 0.75:
            ops.append(("text", "t" + key, "v%d-" % i * rng.randrange(1, 4)))
        elif r < 0.9:
            ops.append(("bytes", "b" + key, os.urandom(rng.randrange(0, 20))))
        else:
            ops.append(("delete", key, None))
    return ops


def _read_all(path):
    """Every key's history as the library returns it; damage raises."""
    with SynaDB(path, read_only=True) as db:
        out = {}
        for k in db.keys():
            try:
                out[k] = db.get_history(k)
            except synadb.ChecksumError:
                out[k] = "damaged"
        return out


# -- 1. one file, with magic and version ------------------------------------

def test_one_file_with_magic_and_version(tmp_path):
    path = tmp_path / "one.db"
    with SynaDB(str(path)) as db:
        for i in range(30_000):
            db.put_float(f"m/{i % 100}", float(i))
        db.compact(progress=False)
        db.put_text("after", "compaction")
    assert [p.name for p in tmp_path.iterdir()] == ["one.db"]
    head = path.read_bytes()[:fmt.HEADER_SIZE]
    assert head[:8] == fmt.MAGIC
    wver, rver = struct.unpack_from("<HH", head, 8)
    assert (wver, rver) == (fmt.WRITE_VERSION, fmt.READ_VERSION)


# -- 2. every record is checksummed: flip each byte -------------------------

def _flip_every_byte(tmp_path, src, expected, *, checkpointed=False):
    data = Path(src).read_bytes()
    with open(src, "rb") as f:
        import mmap

        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        salt = fmt.Header(data[:64]).salt
        spans = []  # (value start, value end, key) of every record
        pos = fmt.HEADER_SIZE
        sc = Scanner(mm, salt)
        while (rec := sc.parse(pos, len(data))) is not None:
            spans.append((rec[2], rec[3], rec[0].decode()))
            pos = rec[5]
        mm.close()
    assert pos == len(data)
    wrong = 0
    unreported = []
    bad = tmp_path / "flipped.db"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        bad.write_bytes(flipped)
        try:
            got = _read_all(str(bad))
        except synadb.CorruptDatabase:
            continue  # the header itself is damaged: refused, nothing returned
        for key, values in got.items():
            if key not in expected:
                wrong += 1  # a key that was never written
                continue
            if values == "damaged":
                continue
            want = expected[key]
            # What comes back must be a subsequence of what was written:
            # never a value that was not put.
            it = iter(want)
            if not all(any(v == w or (v != v and w != w) for w in it) for v in values):
                wrong += 1
        in_value = [k for s, e, k in spans if s <= i < e]
        if in_value and in_value[0] in expected:
            if checkpointed:
                # The checkpoint holds a good copy of numeric values: either
                # that comes back, or the damage is reported.
                assert got.get(in_value[0]) in ("damaged", expected[in_value[0]]), i
            elif spans[-1][0] <= i:
                # Damage in the last record cannot be told from a torn write:
                # it is cut like a torn tail (and verify() reports it).
                assert got.get(in_value[0], []) in ("damaged", expected[in_value[0]][:-1]), i
            else:
                # Damage inside a value is pinned on its key: reading it raises.
                assert got.get(in_value[0]) == "damaged", i
        if i >= fmt.HEADER_SIZE:
            with SynaDB(str(bad), read_only=True) as db:
                if db.verify().ok:
                    unreported.append(i)
    assert wrong == 0
    assert unreported == []


def test_flipping_any_byte_never_returns_a_wrong_value(tmp_path):
    src = str(tmp_path / "small.db")
    states = _build(src, [
        ("float", "temp", 23.5), ("int", "count", 42), ("text", "name", "sensor-1"),
        ("bytes", "raw", b"\x01\x02\x03"), ("float", "temp", 24.1), ("float", "temp", 24.8),
        ("text", "name", "sensor-2"), ("int", "count", -7),
    ])
    end, expected = states[-1]
    # The log as written, without its pre-allocated tail.
    Path(src).write_bytes(Path(src).read_bytes()[:end])
    _flip_every_byte(tmp_path, src, expected)


def test_flipping_any_byte_of_a_compacted_file(tmp_path):
    src = str(tmp_path / "small.db")
    with SynaDB(src) as db:
        for v in (1.5, 2.5, 3.5):
            db.put_float("loss", v)
        db.put_text("note", "hello")
        db.put_int("step", 3)
        db.compact(progress=False)  # float runs become blocks, plus a checkpoint
        expected = {k: db.get_history(k) for k in db.keys()}
    _flip_every_byte(tmp_path, src, expected, checkpointed=True)


# -- 3. torn tails ------------------------------------------------------------

OPS = _sample_ops(60, seed=1)


class _Source(tuple):
    def __repr__(self):  # keep hypothesis' failure reports readable
        return f"<log of {len(self[0])} bytes, {len(self[1])} states>"


@pytest.fixture(scope="module")
def torn_source(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("torn") / "src.db")
    states = _build(path, OPS)
    end = states[-1][0]
    data = Path(path).read_bytes()[:end]
    return _Source((data, states))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=fmt.HEADER_SIZE, max_value=10_000),
       garbage=st.one_of(st.just(b""), st.binary(min_size=1, max_size=300)),
       zeros=st.booleans())
def test_torn_tail_gives_exact_prefix_and_stays_writable(tmp_path, torn_source, cut,
                                                         garbage, zeros):
    data, states = torn_source
    cut = min(cut, len(data))
    path = tmp_path / "torn.db"
    path.write_bytes(data[:cut] + garbage + (bytes(4096) if zeros else b""))
    expected = {}
    for end, hist in states:
        if end <= cut:
            expected = hist
    assert _read_all(str(path)) == expected
    # Writes after recovery land, and a reopen sees old and new alike.
    with SynaDB(str(path)) as db:
        db.put_float("k0", 0.25)
        db.put_text("after", "recovery")
    expected = {k: list(v) for k, v in expected.items()}
    expected.setdefault("k0", []).append(0.25)
    expected["after"] = ["recovery"]
    assert _read_all(str(path)) == expected
    with SynaDB(str(path), read_only=True) as db:
        assert db.verify().ok


def test_torn_batch_counts_for_nothing(tmp_path):
    path = str(tmp_path / "b.db")
    with SynaDB(path) as db:
        db.put_float("a", 1.0)
        with db.batch():
            db.put_float("a", 2.0)
            db.put_float("b", 3.0)
            end_inside = db._log.end
        full = db._log.end
    data = Path(path).read_bytes()
    for cut in range(end_inside - 30, full):
        Path(path).write_bytes(data[:cut])
        assert _read_all(path) == {"a": [1.0]}
        with SynaDB(path) as db:  # a later writer closes the dead batch
            db.put_float("c", 4.0)
            with db.batch():
                db.put_float("d", 5.0)
        assert _read_all(path) == {"a": [1.0], "c": [4.0], "d": [5.0]}


# -- 9. bad input leaves the file byte-identical --------------------------------

def test_text_file_is_never_touched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n" * 10)
    before = path.read_bytes()
    for ro in (False, True):
        with pytest.raises(synadb.NotASynaFile, match="not a synadb file"):
            SynaDB(str(path), read_only=ro)
    assert path.read_bytes() == before


def test_newer_format_is_refused(tmp_path):
    path = tmp_path / "future.db"
    with SynaDB(str(path)) as db:
        db.put_float("x", 1.0)

    def set_versions(wver, rver):
        raw = bytearray(path.read_bytes())
        struct.pack_into("<HH", raw, 8, wver, rver)
        struct.pack_into("<I", raw, 28, fmt.crc32(bytes(raw[:28])))
        path.write_bytes(raw)
        return bytes(raw)

    before = set_versions(fmt.WRITE_VERSION + 1, fmt.READ_VERSION + 1)
    for ro in (False, True):
        with pytest.raises(synadb.FormatVersionError, match="upgrade"):
            SynaDB(str(path), read_only=ro)
    assert path.read_bytes() == before
    # Written by a newer library that older readers can still read.
    before = set_versions(fmt.WRITE_VERSION + 1, fmt.READ_VERSION)
    with pytest.raises(synadb.FormatVersionError, match="read_only=True"):
        SynaDB(str(path))
    with SynaDB(str(path), read_only=True) as db:
        assert db.get_float("x") == 1.0
    assert path.read_bytes() == before


def test_directory_and_missing_paths(tmp_path):
    with pytest.raises(synadb.InvalidPath, match="directory"):
        SynaDB(str(tmp_path))
    with pytest.raises(synadb.DatabaseNotFound):
        SynaDB(str(tmp_path / "absent.db"), read_only=True)
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError
        SynaDB(str(tmp_path / "absent.db"), read_only=True)
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(synadb.InvalidPath):
        SynaDB(str(tmp_path / "no" / "such" / "dir.db"))


@pytest.mark.parametrize("bad_call, error", [
    (lambda db: db.put_float("", 1.0), synadb.InvalidKey),
    (lambda db: db.put_text("k" * 2000, "x"), synadb.InvalidKey),
    (lambda db: db.put_float("a\0b", 1.0), synadb.InvalidKey),
    (lambda db: db.put_float(42, 1.0), synadb.InvalidKey),
    (lambda db: db.put_int("n", 1.5), synadb.InvalidArgument),
    (lambda db: db.put_int("n", 2**64), synadb.InvalidArgument),
    (lambda db: db.put_float("n", "1.0"), synadb.InvalidArgument),
    (lambda db: db.put_text("n", b"bytes"), synadb.InvalidArgument),
    (lambda db: db.put_bytes("n", "text"), synadb.InvalidArgument),
    (lambda db: db.put_vector("n", [[1.0, 2.0]]), synadb.DimensionMismatch),
    (lambda db: db.put_vector("n", []), synadb.DimensionMismatch),
    (lambda db: db.put_vector("n", ["a"]), synadb.DimensionMismatch),
    (lambda db: db.put_floats_batch("n", [[1.0]]), synadb.DimensionMismatch),
    (lambda db: db.get_float("text"), synadb.TypeMismatch),
])
def test_bad_input_raises_and_leaves_file_identical(db_path, bad_call, error):
    with SynaDB(db_path) as db:
        db.put_text("text", "x")
        db.sync()
        before = Path(db_path).read_bytes()
        with pytest.raises(error) as info:
            bad_call(db)
        assert isinstance(info.value, synadb.SynaError)
        assert Path(db_path).read_bytes() == before
        assert db.keys() == ["text"]


def test_non_finite_rejected_when_caller_forbids(db_path):
    cfg = synadb.DbConfig(allow_nonfinite=False)
    with SynaDB(db_path, config=cfg) as db:
        db.put_float("ok", 1.0)
        db.sync()
        before = Path(db_path).read_bytes()
        for bad in (float("nan"), float("inf"), -float("inf")):
            with pytest.raises(synadb.NonFiniteValue, match="not finite"):
                db.put_float("x", bad)
        with pytest.raises(synadb.NonFiniteValue):
            db.put_floats_batch("x", [1.0, float("nan")])
        with pytest.raises(synadb.NonFiniteValue):
            db.put_vector("x", [1.0, float("inf")])
        assert Path(db_path).read_bytes() == before
        assert "x" not in db


def test_closed_and_read_only_errors_leave_file_alone(db_path):
    db = SynaDB(db_path)
    db.put_float("a", 1.0)
    db.close()
    before = Path(db_path).read_bytes()
    for call in (lambda: db.put_float("a", 2.0), lambda: db.get("a"), lambda: len(db),
                 lambda: db.delete("a"), lambda: db.sync()):
        with pytest.raises(synadb.ClosedError, match="closed"):
            call()
    with SynaDB(db_path, read_only=True) as ro:
        with pytest.raises(synadb.ReadOnlyError):
            ro.put_text("b", "x")
        with pytest.raises(synadb.ReadOnlyError):
            with ro.batch():
                pass
    assert Path(db_path).read_bytes() == before
