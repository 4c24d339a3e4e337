"""SynaDB's public surface: typed puts and gets, history, keys, batches."""

import math
from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb import DbConfig, SynaDB


def test_seed_quick_start_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SynaDB("my_data.db") as db:
        db.put_float("temperature", 23.5); db.put_int("count", 42)
        db.put_text("name", "sensor-1"); db.put_bytes("raw_data", b"\x01\x02\x03")
        db.put_float("temperature", 24.1); db.put_float("temperature", 24.8)
        assert db.get_float("temperature") == 24.8
        np.testing.assert_array_equal(db.get_history_tensor("temperature"), [23.5, 24.1, 24.8])
        db.delete("count"); keys = db.keys(); db.compact()
        assert keys == ["temperature", "name", "raw_data"]
        assert db.keys() == keys
        assert db.get_text("name") == "sensor-1"
        assert db.get_history("temperature") == [23.5, 24.1, 24.8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_data.db"]


def test_every_type_round_trips_through_reopen(db_path):
    vec = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    with SynaDB(db_path) as db:
        db.put_float("f", -0.0)
        db.put_float("nan", math.nan)
        db.put_int("big", 2**63 - 1)
        db.put_int("small", -(2**63))
        db.put_text("t", "héllo ✓")
        db.put_text("empty", "")
        db.put_bytes("b", bytes(range(256)))
        db.put_vector("v", vec)
        db.put_null("n")
        db.put("auto", 7)
    with SynaDB(db_path) as db:
        assert math.copysign(1, db.get_float("f")) == -1
        assert math.isnan(db.get_float("nan"))
        assert db.get_int("big") == 2**63 - 1
        assert db.get_int("small") == -(2**63)
        assert db.get_text("t") == "héllo ✓"
        assert db.get_text("empty") == ""
        assert db.get_bytes("b") == bytes(range(256))
        got = db.get_vector("v")
        assert got.dtype == np.float32 and np.array_equal(got, vec)
        assert db.get("n") is None and db.exists("n")
        assert db.get_int("auto") == 7
        assert db.get("missing") is None and db.get("missing", 5) == 5
        assert db.get_float("missing") is None


def test_history_of_mixed_types_and_ints_is_exact(db_path):
    with SynaDB(db_path) as db:
        db.put_int("k", 2**62 + 1)
        db.put_float("k", 1.5)
        db.put_text("k", "x")
        assert db.get_history("k") == [2**62 + 1, 1.5, "x"]
        with pytest.raises(synadb.TypeMismatch):
            db.get_history_tensor("k")
        assert db.get_history_tensor("nothing").shape == (0,)


def test_typed_get_on_another_type_raises(db_path):
    with SynaDB(db_path) as db:
        db.put_text("t", "x")
        db.put_float("f", 1.0)
        db.put_int("i", 3)
        with pytest.raises(synadb.TypeMismatch, match="'t' holds text"):
            db.get_float("t")
        with pytest.raises(synadb.TypeMismatch):
            db.get_int("f")
        with pytest.raises(synadb.TypeMismatch):
            db.get_text("f")
        with pytest.raises(synadb.TypeMismatch):
            db.get_bytes("t")
        with pytest.raises(TypeError):  # TypeMismatch is also a TypeError
            db.get_vector("t")
        assert db.get_float("i") == 3.0  # an int widens to float


def test_keys_glob_exists_in_len_delete(db_path):
    with SynaDB(db_path) as db:
        for name in ["sensor/a", "sensor/b", "other/c", "sensor/[x]"]:
            db.put_float(name, 1.0)
        assert db.keys("sensor/*") == ["sensor/a", "sensor/b", "sensor/[x]"]
        assert db.keys("*/?") == ["sensor/a", "sensor/b", "other/c"]
        assert "other/c" in db and db.exists("sensor/a") and "nope" not in db
        assert len(db) == 4
        assert db.delete("sensor/a") is True
        assert db.delete("sensor/a") is False
        assert len(db) == 3 and "sensor/a" not in db
        assert db.get_history("sensor/a") == []
        db.put_float("sensor/a", 2.0)  # a deleted key starts a new history
        assert db.get_history("sensor/a") == [2.0]
    with SynaDB(db_path) as db:
        assert db.get_history("sensor/a") == [2.0]
        assert sorted(db) == sorted(["sensor/a", "sensor/b", "other/c", "sensor/[x]"])


def test_get_latest_and_history_after_many_values(db_path):
    with SynaDB(db_path) as db:
        for i in range(5000):
            db.put_float("loss", float(i))
        db.put_floats_batch("loss", np.arange(5000, 7000, dtype=np.float64))
        assert db.get_float("loss") == 6999.0
        hist = db.get_history_tensor("loss")
        np.testing.assert_array_equal(hist, np.arange(7000, dtype=np.float64))
        hist[0] = 99  # a copy, never a view of our memory
        assert db.get_history_tensor("loss")[0] == 0
    with SynaDB(db_path) as db:
        np.testing.assert_array_equal(db.get_history_floats("loss"), np.arange(7000.0))


@pytest.mark.parametrize("compress,delta", [(True, True), (True, False), (False, False)])
def test_put_floats_batch_is_lossless(db_path, compress, delta):
    rng = np.random.default_rng(0)
    series = np.cumsum(rng.normal(size=20_000))
    series[5] = math.nan
    series[6] = math.inf
    cfg = DbConfig(enable_compression=compress, enable_delta=delta)
    with SynaDB(db_path, config=cfg) as db:
        assert db.put_floats_batch("s", series) == len(series)
        db.put_floats_batch("ints", np.arange(10))
    with SynaDB(db_path) as db:
        got = db.get_history_tensor("s")
        assert got.tobytes() == series.tobytes()  # bit-exact, NaN included
        assert db.get_history("ints") == list(map(float, range(10)))


def test_compression_shrinks_large_values(tmp_path):
    text = "all work and no play " * 2000
    sizes = {}
    for on in (True, False):
        path = str(tmp_path / f"c{on}.db")
        with SynaDB(path, config=DbConfig(enable_compression=on)) as db:
            db.put_text("doc", text)
            db.compact(progress=False)
            assert db.get_text("doc") == text
        with SynaDB(path) as db:
            assert db.get_text("doc") == text
        sizes[on] = (tmp_path / f"c{on}.db").stat().st_size
    assert sizes[True] < sizes[False] / 5


def test_batch_is_all_or_nothing(db_path):
    with SynaDB(db_path) as db:
        db.put_float("a", 1.0)
        with db.batch():
            db.put_float("a", 2.0)
            db.put_text("b", "in batch")
            assert db.get_float("a") == 2.0  # read your own writes
        with pytest.raises(RuntimeError):
            with db.batch():
                db.put_float("a", 3.0)
                db.delete("b")
                db.put_int("c", 1)
                raise RuntimeError("boom")
        assert db.get_history("a") == [1.0, 2.0]
        assert db.get_text("b") == "in batch"
        assert "c" not in db and len(db) == 2
    with SynaDB(db_path) as db:  # the aborted records stay dead after reopen
        assert db.get_history("a") == [1.0, 2.0]
        assert db.get_text("b") == "in batch" and "c" not in db


def test_config_and_keyword_forms_both_work(db_path):
    with SynaDB(db_path, sync_on_write=True) as db:
        assert db.config.sync_on_write
        db.put_float("x", 1.0)
        db.sync()
    with SynaDB(db_path, config=DbConfig(sync_on_write=True, enable_delta=False)) as db:
        assert db.config.sync_on_write and not db.config.enable_delta
        assert db.get_float("x") == 1.0


def test_read_only_handle_reads_and_refuses_writes(db_path):
    with SynaDB(db_path) as db:
        db.put_float("x", 1.0)
    before = Path(db_path).read_bytes()
    with SynaDB(db_path, read_only=True) as ro:
        assert ro.get_float("x") == 1.0
        with pytest.raises(synadb.ReadOnlyError):
            ro.put_float("x", 2.0)
        with pytest.raises(synadb.ReadOnlyError):
            ro.delete("x")
        with pytest.raises(synadb.ReadOnlyError):
            ro.compact()
    assert Path(db_path).read_bytes() == before


def test_checkpoint_open_equals_full_replay(db_path):
    with SynaDB(db_path) as db:
        for i in range(3000):
            db.put_float(f"k{i % 300}", float(i))
            if i % 7 == 0:
                db.put_text(f"t{i % 50}", str(i))
        db.delete("k5")
        db.checkpoint()
        for i in range(200):  # a tail after the checkpoint
            db.put_float(f"k{i % 310}", -float(i))
        db.delete("k7")
        expected = {k: db.get_history(k) for k in db.keys()}
    with SynaDB(db_path) as db:
        assert db._log.header.checkpoint_offset > 0
        got = {k: db.get_history(k) for k in db.keys()}
    assert got == expected
    # Ignore the checkpoint: a full replay must agree.
    from synadb.engine import log as logmod
    from synadb.engine.index import Index

    orig = logmod.Log._load_checkpoint
    logmod.Log._load_checkpoint = lambda self: (Index(), logmod.HEADER_SIZE)
    try:
        with SynaDB(db_path, read_only=True) as db:
            assert {k: db.get_history(k) for k in db.keys()} == expected
    finally:
        logmod.Log._load_checkpoint = orig


def test_verify_reports_clean_file(db_path):
    with SynaDB(db_path) as db:
        db.put_text("a", "x")
        report = db.verify()
    assert report.ok and report.records >= 1 and not report.damaged


def test_repr_and_closed(db_path):
    db = SynaDB(db_path)
    db.put_float("a", 1)
    assert "1 keys" in repr(db)
    db.close()
    db.close()  # idempotent
    assert db.closed
    with pytest.raises(synadb.ClosedError):
        db.get_float("a")
    with pytest.raises(synadb.ClosedError):
        db.put_float("a", 2.0)
    with pytest.raises(synadb.ClosedError):
        db.keys()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_values = st.one_of(
    st.floats(allow_nan=False).map(lambda v: ("float", v)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: ("int", v)),
    st.text(max_size=50).map(lambda v: ("text", v)),
    st.binary(max_size=3000).map(lambda v: ("bytes", v)),
)
_keys = st.text(min_size=1, max_size=20).filter(lambda k: "\0" not in k and
                                               not any(0xD800 <= ord(c) <= 0xDFFF for c in k))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_keys, _values), max_size=40), st.booleans())
def test_property_round_trip_of_typed_values(tmp_path_factory, ops, compress):
    path = str(tmp_path_factory.mktemp("prop") / "p.db")
    want = {}
    cfg = DbConfig(enable_compression=compress, compression_threshold_bytes=100)
    with SynaDB(path, config=cfg) as db:
        for key, (kind, value) in ops:
            getattr(db, "put_" + kind)(key, value)
            want.setdefault(key, []).append(value)
        assert {k: db.get_history(k) for k in db.keys()} == want
    with SynaDB(path) as db:
        assert {k: db.get_history(k) for k in db.keys()} == want
        assert db.keys() == list(want)
        assert db.verify().ok


def test_compaction_progress_bar_can_be_silenced(db_path, capsys):
    with SynaDB(db_path) as db:
        for i in range(2000):
            db.put_float(f"k{i}", float(i))
        db.compact(progress=False)
    assert capsys.readouterr().err == ""
    with SynaDB(db_path) as db:
        assert len(db) == 2000 and db.get_float("k1999") == 1999.0


def test_info_reports_the_file(db_path):
    with SynaDB(db_path) as db:
        db.put_float("a", 1.0)
        info = db.info()
    assert info["keys"] == 1 and info["format_version"] == 2
    assert 64 < info["used_bytes"] <= info["size_bytes"]
