"""Latest-only values: bytes written with ``keep_history=False`` through
:class:`synadb.Storage`, whose superseded copies compaction drops even when
it keeps history (FORMAT.md section 3, "Latest-only values")."""

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb import DbConfig, SynaDB
from synadb.engine import format as fmt
from synadb.engine.format import F_BATCH, F_LATEST, HEADER_SIZE, TYPE_MASK, T_BYTES, T_COMMIT
from synadb.engine.log import Scanner

ROOT = str(Path(__file__).resolve().parents[1])
MiB = 1 << 20


def _records(path):
    """(offset, key, type|flags) of every good record of the file, read
    from its bytes with the engine's own parser."""
    data = Path(path).read_bytes()
    head = fmt.Header(data[:HEADER_SIZE])
    sc = Scanner(data, head.salt, fmt.POS_MASK if head.seeded else 0)
    out = []
    sc.scan(HEADER_SIZE, len(data),
            lambda pos, rec: out.append((pos, rec[0].decode(), rec[1])), len(data))
    return out


def _flags_of(path, key):
    return [tf for _, k, tf in _records(path) if k == key]


def _block(i, size=4 * MiB):
    # Incompressible, and different per version, so a wrong copy shows.
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, size, dtype=np.uint8)


def test_reput_large_value_compacts_to_about_one_copy(db_path):
    size = 8 * MiB
    with SynaDB(db_path) as db:
        st = db.storage
        for i in range(5):
            st.put_blob_parts("blk", [b"hdr", _block(i, size)], keep_history=False)
        assert os.path.getsize(db_path) >= 5 * size
        # Before compaction every value is still there.
        assert len(db.get_history("blk")) == 5
        saved = db.compact(progress=False)  # default arguments: keep_history=True
        assert saved >= 4 * size
        assert size <= os.path.getsize(db_path) < size + MiB
        assert db.get_history("blk") == [b"hdr" + _block(4, size).tobytes()]
        assert db.verify().ok
    with SynaDB(db_path) as db:
        assert db.get_bytes("blk") == b"hdr" + _block(4, size).tobytes()
        assert len(db.get_history("blk")) == 1
        assert db.verify().ok
    # The copy compaction wrote keeps its mark.
    assert [tf & ~TYPE_MASK for tf in _flags_of(db_path, "blk")] == [F_LATEST]


def test_ordinary_keys_keep_their_history(db_path):
    with SynaDB(db_path) as db:
        st = db.storage
        for i in range(3):
            st.put_blob_parts("plain/parts", [bytes([i]) * 5000])
            st.put_blobs([("plain/blobs", bytes([i]) * 70)])
            st.put_blobs([("plain/kw", (b"a", bytes([i])))], keep_history=True)
            db.put_bytes("plain/bytes", bytes([i]) * 3000)  # LZ4-compressed
            db.put_float("f", i + 0.5)
            db.put_text("t", f"v{i}")
            st.put_blob_parts("lo", [bytes([i]) * 5000], keep_history=False)
        before = {k: db.get_history(k) for k in db.keys()}
        db.compact(progress=False)
        after = {k: db.get_history(k) for k in db.keys()}
    assert after == {**before, "lo": [bytes([2]) * 5000]}
    with SynaDB(db_path) as db:
        assert {k: db.get_history(k) for k in db.keys()} == after
    for key in ("plain/parts", "plain/blobs", "plain/kw", "plain/bytes"):
        assert all(not tf & F_LATEST for tf in _flags_of(db_path, key)), key


def test_keep_history_false_still_drops_every_superseded_value(db_path):
    with SynaDB(db_path) as db:
        for i in range(3):
            db.put_text("t", str(i))
            db.storage.put_blob_parts("lo", [str(i).encode()], keep_history=False)
        db.compact(keep_history=False, progress=False)
        assert db.get_history("t") == ["2"] and db.get_history("lo") == [b"2"]


def test_existing_call_signatures_still_work(db_path):
    with SynaDB(db_path) as db:
        st = db.storage
        st.put_blob_parts("a", [b"1"])
        st.put_blob_parts("a", [b"2"])
        st.put_blobs([("b", b"1"), ("c", (b"x", b"y"))], True)  # keys_checked, positionally
        st.put_blobs([("b", b"2")], False)
        db.compact(progress=False)
        assert db.get_history("a") == [b"1", b"2"]
        assert db.get_history("b") == [b"1", b"2"]
        assert db.get_bytes("c") == b"xy"


def test_mixed_batch(db_path):
    with SynaDB(db_path) as db:
        st = db.storage
        with db.batch():
            st.put_blobs([("m/a", b"a0"), ("m/b", (b"b", b"0"))], keep_history=False)
            st.put_blob_parts("m/c", [b"c0"], keep_history=False)
            st.put_blob_parts("m/hist", [b"h0"])
            db.put_float("m/f", 0.0)
        with db.batch():
            st.put_blobs([("m/a", b"a1"), ("m/b", b"b1")], keep_history=False)
            st.put_blobs([("m/c", b"c1")], keep_history=True)  # c turns ordinary
            st.put_blob_parts("m/hist", [b"h1"])
            db.put_float("m/f", 1.0)
        # Outside a batch, several items are a batch of their own.
        st.put_blobs([("m/a", b"a2"), ("m/b", b"b2")], keep_history=False)
        # Records of a batch carry both marks.
        tfs = _flags_of(db_path, "m/a")
        assert [tf & TYPE_MASK for tf in tfs] == [T_BYTES] * 3
        assert all(tf & F_LATEST and tf & F_BATCH for tf in tfs)
        db.compact(progress=False)
        assert db.get_history("m/a") == [b"a2"]
        assert db.get_history("m/b") == [b"b2"]
        assert db.get_history("m/c") == [b"c0", b"c1"]
        assert db.get_history("m/hist") == [b"h0", b"h1"]
        assert db.get_history("m/f") == [0.0, 1.0]
        assert db.verify().ok


def test_a_batch_of_latest_only_values_is_all_or_nothing(db_path):
    with SynaDB(db_path) as db:
        st = db.storage
        st.put_blobs([("k/a", b"a0"), ("k/b", b"b0")], keep_history=False)
        with pytest.raises(KeyError):
            with db.batch():
                st.put_blobs([("k/a", b"a1")], keep_history=False)
                st.put_blob_parts("k/b", [b"b1"], keep_history=False)
                raise KeyError("abort")
        assert db.get_history("k/a") == [b"a0"] and db.get_history("k/b") == [b"b0"]
        db.sync()
        # A batch whose Commit never reached the file: the copy below is the
        # file as a killed process would leave it, with the Commit torn.
        st.put_blobs([("k/a", b"a2"), ("k/b", b"b2"), ("k/new", b"n2")],
                     keep_history=False)
        copy = db_path + ".copy"
        shutil.copyfile(db_path, copy)
    commit = [pos for pos, _, tf in _records(copy) if tf & TYPE_MASK == T_COMMIT][-1]
    with open(copy, "r+b") as f:
        f.seek(commit + 1)
        f.write(b"\xff")
    with SynaDB(copy) as db:
        assert db.get_history("k/a") == [b"a0"] and db.get_history("k/b") == [b"b0"]
        assert "k/new" not in db
        db.compact(progress=False)
        assert db.get_history("k/a") == [b"a0"] and "k/new" not in db
        assert db.verify().ok


def test_latest_only_then_ordinary_keeps_history(db_path):
    with SynaDB(db_path) as db:
        st = db.storage
        st.put_blob_parts("k", [b"L1"], keep_history=False)
        st.put_blob_parts("k", [b"L2"], keep_history=False)
        st.put_blob_parts("k", [b"O3"])
        db.compact(progress=False)
        # The latest value is ordinary: the key is an ordinary key again and
        # compaction loses nothing get_history returns.
        assert db.get_history("k") == [b"L1", b"L2", b"O3"]
        # Latest-only again: what came before goes at the next compaction.
        st.put_blob_parts("k", [b"L4"], keep_history=False)
        assert db.get_history("k") == [b"L1", b"L2", b"O3", b"L4"]
        db.compact(progress=False)
        assert db.get_history("k") == [b"L4"]
        assert db.get("k") == b"L4"


def test_ordinary_then_latest_only_keeps_only_the_latest(db_path):
    with SynaDB(db_path) as db:
        db.put_bytes("k", b"O1")
        db.put_text("k", "O2")  # any type before it
        db.storage.put_blob_parts("k", [b"L3"], keep_history=False)
        db.compact(progress=False)
        assert db.get_history("k") == [b"L3"]
        db.put_bytes("k", b"O4")
        db.compact(progress=False)
        assert db.get_history("k") == [b"L3", b"O4"]


def test_a_later_value_of_another_type_makes_the_key_ordinary(db_path):
    with SynaDB(db_path) as db:
        db.storage.put_blob_parts("k", [b"L1"], keep_history=False)
        db.put_float("k", 2.0)
        db.compact(progress=False)
        assert db.get_history("k") == [b"L1", 2.0]


def test_deleted_latest_only_keys_vanish(db_path):
    with SynaDB(db_path) as db:
        st = db.storage
        for i in range(3):
            st.put_blob_parts("gone", [bytes(5000)], keep_history=False)
            st.put_blob_parts("back", [bytes([i])], keep_history=False)
        db.delete("gone")
        db.delete("back")
        db.put_bytes("back", b"new")
        db.compact(progress=False)
        assert "gone" not in db and db.keys() == ["back"]
        assert db.get_history("back") == [b"new"]
    assert _flags_of(db_path, "gone") == []


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpoint", "replay"])
def test_reopen_sees_the_mark(db_path, checkpoint):
    cfg = DbConfig(checkpoint_min_bytes=0 if checkpoint else 1 << 40, progress=False)
    with SynaDB(db_path, config=cfg) as db:
        st = db.storage
        st.put_blob_parts("lo", [b"1" * 9000], keep_history=False)
        st.put_blob_parts("lo/turned", [b"x"], keep_history=False)
        db.put_text("t", "a")
        if checkpoint:
            db.checkpoint()  # the mark of these two is behind the checkpoint...
        st.put_blob_parts("lo", [b"2" * 9000], keep_history=False)
        st.put_blobs([("lo/b", b"b1")], keep_history=False)
        st.put_blob_parts("lo/turned", [b"y"])
        db.put_text("t", "b")
        st.put_blobs([("lo/b", b"b2")], keep_history=False)  # ...and these after it
    with SynaDB(db_path, config=cfg) as db:
        assert (db.info()["checkpoint_offset"] != 0) is checkpoint
        assert len(db.get_history("lo")) == 2
        db.compact()
        assert db.get_history("lo") == [b"2" * 9000]
        assert db.get_history("lo/b") == [b"b2"]
        assert db.get_history("lo/turned") == [b"x", b"y"]
        assert db.get_history("t") == ["a", "b"]
    # The compacted file (checkpointed) and a replay of it agree.
    with SynaDB(db_path, config=cfg) as db:
        assert db.info()["checkpoint_offset"] != 0
        st = db.storage
        st.put_blob_parts("lo", [b"3"], keep_history=False)
        db.compact()
        assert db.get_history("lo") == [b"3"]
        assert db.get_history("lo/turned") == [b"x", b"y"]


def test_files_with_latest_only_values_stay_format_2(db_path):
    # Older libraries read such files as they are: bit 6 was never set on a
    # Bytes record before, and ignoring it only keeps garbage (FORMAT.md 3).
    with SynaDB(db_path) as db:
        db.storage.put_blob_parts("lo", [b"x"], keep_history=False)
        db.storage.put_blob_parts("lo", [b"y"], keep_history=False)
        db.compact(progress=False)
        info = db.info()
        assert (info["format_version"], info["read_version"]) == (2, 2)
    raw = Path(db_path).read_bytes()[:HEADER_SIZE]
    assert int.from_bytes(raw[8:10], "little") == fmt.WRITE_VERSION == 2
    assert int.from_bytes(raw[10:12], "little") == fmt.READ_VERSION == 2


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpoint", "replay"])
def test_a_damaged_latest_only_value_does_not_cost_the_key_its_history(db_path, checkpoint):
    # With a checkpoint, the index loaded on open still lists the damaged
    # value as bytes (open reads no value): compaction finds the damage when
    # it copies.  Without one, the replay finds it first.
    cfg = DbConfig(checkpoint_min_bytes=0 if checkpoint else 1 << 40, progress=False)
    with SynaDB(db_path, config=cfg) as db:
        st = db.storage
        st.put_blob_parts("k", [b"a" * 5000], keep_history=False)
        st.put_blob_parts("k", [b"b" * 5000], keep_history=False)
        db.put_text("after", "a good record after the damage")
    last = [pos for pos, key, _ in _records(db_path) if key == "k"][-1]
    with open(db_path, "r+b") as f:  # one flipped byte in the value, synced part
        f.seek(last + 12 + 1 + 100)
        f.write(b"\x00")
    with SynaDB(db_path, config=cfg) as db:
        assert (db.info()["checkpoint_offset"] != 0) is checkpoint
        with pytest.raises(synadb.ChecksumError):
            db.get("k")
        assert not db.verify().ok
        db.compact()
        # The damage is not copied; what can still be read stays.
        assert db.get_history("k") == [b"a" * 5000]
        assert db.get_text("after") == "a good record after the damage"
        assert db.verify().ok


def test_another_handle_in_this_process_reads_live(db_path):
    with SynaDB(db_path) as writer:
        reader = SynaDB(db_path, read_only=True)
        other = SynaDB(db_path)
        try:
            for i in range(3):
                writer.storage.put_blob_parts("lo", [f"v{i}".encode()], keep_history=False)
                writer.put_text("t", str(i))
                assert reader.get_bytes("lo") == f"v{i}".encode()
                assert reader.get_history("lo") == [f"v{j}".encode() for j in range(i + 1)]
            other.storage.put_blob_parts("lo", [b"v3"], keep_history=False)
            assert writer.get_history("lo") == [b"v0", b"v1", b"v2", b"v3"]
            writer.compact(progress=False)
            for h in (reader, other, writer):
                assert h.get_bytes("lo") == b"v3"
                assert h.get_history("lo") == [b"v3"]
                assert h.get_history("t") == ["0", "1", "2"]
            other.storage.put_blob_parts("lo", [b"v4"], keep_history=False)
            assert reader.get_history("lo") == [b"v3", b"v4"]
        finally:
            reader.close()
            other.close()


READER = """
    import json, sys
    from synadb import SynaDB
    db = SynaDB(sys.argv[1], read_only=True)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "read":
            break
        print(json.dumps({k: [v.decode() if isinstance(v, bytes) else v
                              for v in db.get_history(k)] for k in db.keys()}), flush=True)
    db.close()
"""


def test_a_reader_in_another_process_reads_live(db_path):
    SynaDB(db_path).close()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(READER), db_path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        assert proc.stdout.readline().strip() == "ready"

        def ask():
            proc.stdin.write("read\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        with SynaDB(db_path) as db:
            st = db.storage
            for i in range(3):
                st.put_blob_parts("lo", [f"v{i}".encode()], keep_history=False)
                db.put_text("t", str(i))
                assert ask() == {"lo": [f"v{j}" for j in range(i + 1)],
                                 "t": [str(j) for j in range(i + 1)]}
            with db.batch():
                st.put_blobs([("lo", b"v3"), ("lo/b", b"b")], keep_history=False)
            assert ask()["lo"] == ["v0", "v1", "v2", "v3"]
            db.compact(progress=False)
            assert ask() == {"lo": ["v3"], "t": ["0", "1", "2"], "lo/b": ["b"]}
            st.put_blob_parts("lo", [b"v4"], keep_history=False)
            assert ask()["lo"] == ["v3", "v4"]
    finally:
        proc.stdin.write("exit\n")
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


# -- crash states (the fault suite's explorer, tests/faults/crashsim.py) -------

def test_crash_states_of_latest_only_puts_and_compaction(tmp_path):
    from faults.conftest import _budget
    from faults.crashsim import KVLevel, Recorder, explore
    from faults.workloads import KVModel

    class Model(KVModel):
        def __init__(self):
            super().__init__()
            self.latest_only = set()

        def put_lo(self, key, value, keep_history):
            self.put(key, value)
            (self.latest_only.discard if keep_history else self.latest_only.add)(key)

        def compact(self):
            for k in self.latest_only:
                if self.d.get(k):
                    self.d[k] = self.d[k][-1:]

    budget = _budget()
    rng = random.Random(f"latest-only-{budget.seed}")
    path = str(tmp_path / "work" / "w.db")
    os.mkdir(tmp_path / "work")
    os.mkdir(tmp_path / "check")
    m = Model()
    saved = random.getstate()
    random.seed(f"salts-latest-only-{budget.seed}")  # the same pages run to run
    try:
        with Recorder(path, m.canon) as rec:
            db = rec.step("open", lambda: SynaDB(path))
            st = db.storage

            def put(key, keep, size):
                v = rng.randbytes(size)
                rec.step(f"put_blob_parts {key} keep_history={keep}",
                         lambda: st.put_blob_parts(key, [v], keep_history=keep),
                         lambda: m.put_lo(key, v, keep))

            for i in range(3):
                put("blk", False, 9000)  # straddles pages
                put("hist", True, 700)
            rec.step("sync", db.sync, None, "all")
            items = [(f"b/{j}", rng.randbytes(3000)) for j in range(3)]

            def batch():
                with db.batch():
                    st.put_blobs(items, keep_history=False)
                    db.put_float("b/f", 1.5)

            def apply_batch():
                for k, v in items:
                    m.put_lo(k, v, False)
                m.put("b/f", 1.5)

            rec.step("batch of latest-only blobs", batch, apply_batch, "self")
            put("blk", False, 9000)
            put("b/0", False, 100)
            rec.step("compact", lambda: db.compact(progress=False), m.compact, "all")
            put("blk", False, 9000)
            put("hist", True, 700)
            rec.step("close", db.close, None, "all")
            rec.finish()
    finally:
        random.setstate(saved)
    report = explore(rec, KVLevel(), str(tmp_path / "check"), budget, seed=budget.seed)
    assert report.states + report.kills > 0
    assert not report.violations, report.summary("latest-only")


def test_format_md_documents_the_mark():
    doc = (Path(ROOT) / "docs" / "FORMAT.md").read_text()
    assert F_LATEST == 0x40 and T_BYTES == 5
    assert "| 6 | 0x40 | On Bytes: latest-only." in doc
    assert "**Latest-only values.**" in doc
