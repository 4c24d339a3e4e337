"""Damaged bytes under the components: the tracker's and the registry's own
records, broken in the file (a flipped byte: the CRC fails) or replaced by
CRC-valid garbage (written through a handle, or patched with a correct CRC
per docs/FORMAT.md), and OS errors while writing files beside the database.

Derived records are caches: a bad ``trk/catalog`` snapshot costs a rebuild
from the run keys, never a run.  A bad entry that is the record itself is
reported (CorruptDatabase naming its key, and ``verify()``), never a raw
JSONDecodeError or UnicodeDecodeError, and every other run still loads.
"""

import errno
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb import Experiment, ExperimentTracker, ModelRegistry, TensorEngine

CATALOG = "trk/catalog"


# -- the file, read as FORMAT.md describes it ----------------------------------

def _records(raw):
    """(offset, type and flags, key, value offset, value length) of each record."""
    pos = 64
    while pos + 12 <= len(raw) and raw[pos] == 0xA7:
        tf = raw[pos + 1]
        klen, vlen = struct.unpack_from("<HI", raw, pos + 2)
        key = raw[pos + 12:pos + 12 + klen].decode("utf-8", "replace")
        yield pos, tf, key, pos + 12 + klen, vlen
        pos += 12 + klen + vlen + 4


def _last_record(path, key):
    raw = Path(path).read_bytes()
    found = [r for r in _records(raw) if r[2] == key]
    assert found, f"no record of {key!r} in {path}"
    return found[-1]


def _flip_value_byte(path, key):
    """Flip one byte in the middle of the latest value of ``key``: its CRC fails."""
    _, _, _, vstart, vlen = _last_record(path, key)
    with open(path, "r+b") as f:
        f.seek(vstart + vlen // 2)
        b = f.read(1)
        f.seek(vstart + vlen // 2)
        f.write(bytes([b[0] ^ 0x5A]))


def _rewrite_value(path, key, make):
    """Replace the latest (uncompressed) value of ``key`` with ``make(old)``, of
    the same length, and give it a correct body CRC: CRC-valid garbage."""
    pos, tf, _, vstart, vlen = _last_record(path, key)
    assert not tf & 0x20, "the value is LZ4-compressed; pick a smaller one"
    raw = Path(path).read_bytes()
    old = raw[vstart:vstart + vlen]
    new = make(old)
    assert len(new) == vlen
    (head_crc,) = struct.unpack_from("<I", raw, pos + 8)
    (body_crc,) = struct.unpack_from("<I", raw, vstart + vlen)
    # The body CRC chains from the head CRC (FORMAT.md section 3); some
    # versions of the format also mix in the record's offset.  Use whichever
    # seed the record was written with.
    seeds = [s for s in (head_crc, head_crc ^ (pos & 0xFFFFFFFF))
             if zlib.crc32(old, s) == body_crc]
    assert seeds, "cannot tell how this file seeds its body CRCs"
    with open(path, "r+b") as f:
        f.seek(vstart)
        f.write(new + struct.pack("<I", zlib.crc32(new, seeds[0])))


def _pad(text: bytes):
    """``text`` padded with spaces to the old value's length."""
    def make(old):
        assert len(text) <= len(old)
        return text + b" " * (len(old) - len(text))
    return make


def _same(tracker_or_runs, expected):
    """Every run, param, metric and artifact of ``expected`` is there."""
    tracker = tracker_or_runs
    got = {r.id: r for r in tracker.list_runs()}
    assert set(got) == set(expected)
    for rid, want in expected.items():
        run = got[rid]
        assert run.params == want["params"]
        assert run.status == want["status"]
        assert run.experiment == want["experiment"]
        assert tracker.get_metric(rid, "loss") == want["loss"]
        assert tracker.get_artifact(rid, "notes.txt") == want["notes"]


def _tracker_file(path, runs=6, snapshot=True):
    """A tracking file with ``runs`` runs (a snapshot of them if asked, and
    later changes it does not cover); returns what each run holds."""
    expected = {}
    with ExperimentTracker(path) as t:
        for i in range(runs):
            rid = t.start_run("a" if i % 2 else "b", params={"i": i, "opt": {"lr": 0.1 * i}})
            for step in range(3):
                t.log_metric(rid, "loss", 1.0 / (step + 1 + i), step=step)
            t.log_artifact(rid, "notes.txt", f"run {i}".encode())
            t.end_run(rid)
        if snapshot:
            t.checkpoint()
        late = t.start_run("b", params={"late": True})  # after the snapshot
        t.log_metric(late, "loss", 0.5, step=0)
        t.log_artifact(late, "notes.txt", b"late")
        t.end_run(late, "failed")
        for run in t.list_runs():
            expected[run.id] = {"params": dict(run.params), "status": run.status,
                                "experiment": run.experiment,
                                "loss": t.get_metric(run.id, "loss"),
                                "notes": t.get_artifact(run.id, "notes.txt")}
    return expected


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "experiments.db")


# -- trk/catalog is a cache ----------------------------------------------------

def test_a_snapshot_whose_crc_fails_is_rebuilt_from_the_run_keys(path):
    expected = _tracker_file(path)
    _flip_value_byte(path, CATALOG)
    with ExperimentTracker(path) as t:
        _same(t, expected)
        report = t.verify()
        assert not report.ok
        assert any(CATALOG in p for p in report.problems)
        assert any(CATALOG in r for r in report.rebuilt)
    with Experiment("a", path) as exp:  # the object style opens too
        assert len(exp.list_runs()) == sum(e["experiment"] == "a" for e in expected.values())
        assert not exp.verify().ok  # the damaged record stays until compaction
    # Closing a writable handle wrote a good snapshot: the next open uses it.
    with ExperimentTracker(path, read_only=True) as t:
        _same(t, expected)
        assert t.verify().rebuilt == []


def _snapshot_bytes(path):
    with synadb.SynaDB(path, read_only=True) as db:
        return db.get_bytes(CATALOG)


def _garbage(kind, good):
    magic = b"SYNTRK1\n"
    nl = good.index(b"\n", len(magic))
    head, body = good[:nl + 1], good[nl + 1:]
    parts = body.split(b"\0")
    return {
        "bad magic": b"NOTASNAP" + good[8:],
        "no header line": magic + b'{"salt": 1',
        "invalid UTF-8": head + b"\xff\xfe" + body,
        "invalid JSON header": magic + b"{salt: }\n" + body,
        "header not an object": magic + b"[1, 2]\n" + body,
        "truncated triples": head + b"\0".join(parts[:-1]),
        "a whole triple missing": head + b"\0".join(parts[:-3]),
        "empty": b"",
    }[kind]


@pytest.mark.parametrize("kind", ["bad magic", "no header line", "invalid UTF-8",
                                  "invalid JSON header", "header not an object",
                                  "truncated triples", "a whole triple missing", "empty"])
def test_crc_valid_garbage_in_the_snapshot_is_rebuilt_from_the_run_keys(path, kind):
    expected = _tracker_file(path)
    good = _snapshot_bytes(path)
    with synadb.SynaDB(path) as db:  # garbage through a handle: every CRC is right
        db.put_bytes(CATALOG, _garbage(kind, good))
    with ExperimentTracker(path) as t:
        _same(t, expected)
        report = t.verify()
        assert report.engine.ok and not report.ok
        assert any(CATALOG in p for p in report.problems)
    with ExperimentTracker(path, read_only=True) as t:  # close rewrote the snapshot
        _same(t, expected)
        assert t.verify().ok


def test_a_snapshot_that_is_not_bytes_is_rebuilt(path):
    expected = _tracker_file(path)
    with synadb.SynaDB(path) as db:
        db.put_text(CATALOG, "not a snapshot")
    with Experiment("b", path) as exp:
        _same(exp.tracker, expected)


def test_garbage_inside_one_snapshot_entry_falls_back_on_the_run_key(path):
    expected = _tracker_file(path)
    good = _snapshot_bytes(path)
    first = next(iter(expected))
    # A structurally sound snapshot whose entry for one run is not JSON.
    nl = good.index(b"\n", 8)
    parts = good[nl + 1:].split(b"\0")
    i = parts.index(first.encode())
    parts[i + 2] = b"{not json"
    bad = good[:nl + 1] + b"\0".join(parts)
    with synadb.SynaDB(path) as db:
        db.put_bytes(CATALOG, bad)
    with ExperimentTracker(path) as t:
        _same(t, expected)
        assert any(first in r for r in t.verify().rebuilt)


# -- run/<id> and exp/<name> are the records: reported, never raw errors --------

@pytest.mark.parametrize("garbage", [
    pytest.param(lambda old: b"\xff" * len(old), id="invalid UTF-8"),
    pytest.param(_pad(b"{not json"), id="invalid JSON"),
    pytest.param(_pad(b"[1, 2, 3]"), id="not an object"),
    pytest.param(_pad(b'{"experiment": 7}'), id="missing fields"),
])
@pytest.mark.parametrize("snapshot", [False, True], ids=["no snapshot", "stale snapshot"])
def test_a_damaged_run_entry_is_reported_and_the_other_runs_load(path, garbage, snapshot):
    expected = _tracker_file(path, runs=4, snapshot=snapshot)
    victim = list(expected)[1]
    if snapshot:
        # The snapshot would hide the damage; make it stale as compaction does.
        with synadb.SynaDB(path) as db:
            db.delete(CATALOG)
    _rewrite_value(path, f"run/{victim}", garbage)
    with ExperimentTracker(path) as t:
        runs = {r.id for r in t.list_runs()}
        assert runs == set(expected) - {victim}
        with pytest.raises(synadb.CorruptDatabase, match=f"run/{victim}"):
            t.get_run(victim)
        with pytest.raises(synadb.CorruptDatabase, match=f"run/{victim}"):
            t.log_metric(victim, "loss", 1.0)
        _same_except = {k: v for k, v in expected.items() if k != victim}
        for rid, want in _same_except.items():
            run = t.get_run(rid)
            assert run.params == want["params"]
            assert t.get_metric(rid, "loss") == want["loss"]
        report = t.verify()
        assert not report.ok and any(f"run/{victim}" in p for p in report.problems)
        # Deleting the damaged run removes all of it, and the file is clean again.
        t.delete_run(victim)
        assert not t.db.keys(f"run/{victim}*")
        assert t.verify().problems == []
    with Experiment("a", path) as exp:
        assert victim not in {r.id for r in exp.tracker.list_runs()}


def test_a_damaged_experiment_entry_does_not_stop_the_open(path):
    expected = _tracker_file(path, snapshot=False)
    _rewrite_value(path, "exp/a", lambda old: b"\xff" * len(old))
    with Experiment("a", path) as exp:
        _same(exp.tracker, expected)
        assert "a" in exp.tracker.list_experiments()
        assert any("exp/a" in p for p in exp.verify().problems)


def test_a_damaged_change_record_rebuilds_the_catalog(path):
    expected = _tracker_file(path)
    _rewrite_value(path, "trk/changes", lambda old: b"\xff" * len(old))
    with ExperimentTracker(path) as t:
        _same(t, expected)
        assert any("trk/changes" in p for p in t.verify().problems)


def test_a_clean_file_verifies_ok(path):
    _tracker_file(path)
    with ExperimentTracker(path) as t:
        report = t.verify()
        assert report.ok and bool(report) and report.problems == [] and report.rebuilt == []
        assert report.engine.ok


# -- the registry's text records -------------------------------------------------

@pytest.fixture
def reg_path(tmp_path):
    return str(tmp_path / "models.db")


def _registry(reg_path):
    with ModelRegistry(reg_path, sync=False) as reg:
        for i in range(3):
            reg.save_model("m", f"weights {i}".encode(), {"i": i})
        reg.set_stage("m", 2, "Production")
        reg.save_model("other", b"other weights")


@pytest.mark.parametrize("garbage", [
    pytest.param(lambda old: b"\xff" * len(old), id="invalid UTF-8"),
    pytest.param(_pad(b"{not json"), id="invalid JSON"),
    pytest.param(_pad(b'{"version": 1}'), id="missing fields"),
])
def test_a_damaged_version_entry_is_corrupt_database_naming_its_key(reg_path, garbage):
    _registry(reg_path)
    _rewrite_value(reg_path, "reg/m/1", garbage)
    with ModelRegistry(reg_path) as reg:
        with pytest.raises(synadb.CorruptDatabase, match="reg/m/1"):
            reg.get_version("m", 1)
        with pytest.raises(synadb.CorruptDatabase, match="reg/m/1"):
            reg.load_model("m", 1)
        # Listings go on past it; loads of other versions work.
        assert [v.version for v in reg.list_versions("m")] == [2, 3]
        assert reg.load_model("m", 3)[0] == b"weights 2"
        with pytest.raises(synadb.CorruptDatabase, match="reg/m/1"):
            reg.get_production("m")  # the damaged one might be in Production: never guess
        assert reg.list_models() == ["m", "other"]
        assert reg.stats()["versions"] == 3
        report = reg.verify()
        assert not report.ok and any("reg/m/1" in p for p in report.problems)
        assert reg.verify("other") is True


def test_a_damaged_model_record_recomputes_its_next_version(reg_path):
    _registry(reg_path)
    _rewrite_value(reg_path, "reg/m", lambda old: b"\xff" * len(old))
    with ModelRegistry(reg_path) as reg:
        assert [v.version for v in reg.list_versions("m")] == [1, 2, 3]
        v = reg.save_model("m", b"new weights")
        assert v.version == 4  # never a number already used
        assert reg.load_model("m")[0] == b"new weights"
        assert any("reg/m" in r for r in reg.verify().rebuilt)


def test_a_damaged_stage_record_is_corrupt_database(reg_path):
    _registry(reg_path)
    _rewrite_value(reg_path, "reg/m/stages", _pad(b"{]"))
    with ModelRegistry(reg_path) as reg:
        with pytest.raises(synadb.CorruptDatabase, match="reg/m/stages"):
            reg.stage_history("m")
        assert any("reg/m/stages" in p for p in reg.verify().problems)


def test_a_flipped_version_entry_is_a_checksum_error_not_garbage(reg_path):
    _registry(reg_path)
    # Records after it, so that it is damage and not a torn tail.
    _flip_value_byte(reg_path, "reg/m/3")
    with ModelRegistry(reg_path) as reg:
        with pytest.raises(synadb.CorruptDatabase):
            reg.get_version("m", 3)
        assert [v.version for v in reg.list_versions("m")] == [1, 2]
        assert not reg.verify().ok


@pytest.mark.parametrize("garbage", [
    pytest.param(lambda old: b"\xff" * len(old), id="invalid UTF-8"),
    pytest.param(_pad(b"{not json"), id="invalid JSON"),
    pytest.param(_pad(b'{"kind": "rows"}'), id="missing fields"),
])
def test_a_damaged_tensor_manifest_is_corrupt_database(tmp_path, garbage):
    path = str(tmp_path / "t.db")
    with TensorEngine(path) as e:
        e.put_tensor("x/", np.arange(6.0).reshape(3, 2))
        e.put_tensor("y/", np.arange(3))
    _rewrite_value(path, "__tensor__/x/", garbage)
    with TensorEngine(path) as e:
        with pytest.raises(synadb.CorruptDatabase, match="__tensor__/x/"):
            e.get_tensor("x/*")
        with pytest.raises(synadb.CorruptDatabase, match="__tensor__/x/"):
            e.info("x/")


# -- OS errors while writing a file beside the database --------------------------

def _fail_fsync_of_temp_files(monkeypatch, code=errno.ENOSPC):
    """Make fsync of any temp file fail with ``code`` (the only way to get a
    full disk on demand).  Folders and the database fsync as usual."""
    real = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.endswith(".tmp"):
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_full_disk_during_load_to_file_leaves_the_target_as_it_was(reg_path, tmp_path,
                                                                   monkeypatch):
    _registry(reg_path)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "model.bin"
    target.write_bytes(b"the old model")
    before = _listing(out)
    with ModelRegistry(reg_path) as reg:
        _fail_fsync_of_temp_files(monkeypatch)
        with pytest.raises(synadb.DiskFull):
            reg.load_to_file("m", target)
        monkeypatch.undo()
        assert target.read_bytes() == b"the old model"
        assert _listing(out) == before  # no temp file left behind
        reg.load_to_file("m", target)
    assert target.read_bytes() == b"weights 2"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_full_disk_during_parquet_export_leaves_the_target_as_it_was(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    path = str(tmp_path / "t.db")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "x.parquet"
    target.write_bytes(b"old")
    with TensorEngine(path) as e:
        e.put_tensor("x/", np.arange(12.0).reshape(6, 2))
        _fail_fsync_of_temp_files(monkeypatch, errno.EDQUOT)
        with pytest.raises(synadb.DiskFull):
            e.export_parquet(target, "x/*")
        monkeypatch.undo()
        assert target.read_bytes() == b"old" and _listing(out) == ["x.parquet"]
        assert e.export_parquet(target, "x/*") == 6


def test_json_in_the_file_never_leaks_decoding_errors_from_get_run(path):
    """Belt and braces over the parametrized tests: every way a run entry can
    be garbage gives a SynaError from every reader."""
    expected = _tracker_file(path, runs=2, snapshot=False)
    victim = list(expected)[0]
    _rewrite_value(path, f"run/{victim}", _pad(json.dumps({"experiment": "a",
                                                           "status": "Nope"}).encode()))
    with ExperimentTracker(path) as t:
        for call in (lambda: t.get_run(victim), lambda: t.list_artifacts(victim),
                     lambda: t.get_metric(victim, "loss"), lambda: t.end_run(victim),
                     lambda: t.log_param(victim, "x", 1), lambda: t.compare_runs([victim])):
            with pytest.raises(synadb.CorruptDatabase):
                call()
