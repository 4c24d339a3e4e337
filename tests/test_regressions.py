"""Bugs found by adversarial review, each kept fixed by a test."""

import os
import signal
import stat
import struct
from pathlib import Path

import pytest

import synadb
from synadb import SynaDB


def test_put_after_another_handle_compacts_is_not_lost(db_path):
    a = SynaDB(db_path)
    for i in range(10):
        a.put_float("loss", float(i))
    a.put_text("t", "hello")
    a._log.release()  # as the keeper would after a pause
    with SynaDB(db_path) as b:
        b.compact(progress=False)
    # a still has the old file; its next writes must land in the new one.
    a.put_float("loss", 10.0)
    a.put_float("new", 1.0)
    a.put_text("t", "world")
    a.put_int("i", 5)
    a.delete("t")
    a.close()
    with SynaDB(db_path, read_only=True) as db:
        assert db.get_history("loss") == [float(i) for i in range(11)]
        assert db.get_float("new") == 1.0 and db.get_int("i") == 5 and "t" not in db
        assert db.verify().ok


def test_stale_handle_new_key_does_not_collide(db_path):
    a = SynaDB(db_path)
    a.put_float("seed", 0.0)
    a._log.release()
    with SynaDB(db_path) as b:
        b.put_float("k", 1.0)  # a has not seen k yet
    a.put_float("k", 2.0)
    a.put_float("other", 3.0)
    assert a.get_history("k") == [1.0, 2.0]
    assert a.get_float("other") == 3.0 and len(a) == 3
    a.checkpoint()
    a.close()
    with SynaDB(db_path) as db:
        assert {k: db.get_history(k) for k in db.keys()} == {
            "seed": [0.0], "k": [1.0, 2.0], "other": [3.0]}


def test_checkpoint_and_compact_refused_inside_a_batch(db_path):
    with SynaDB(db_path) as db:
        db.put_int("a", 1)
        with pytest.raises(RuntimeError):
            with db.batch():
                db.put_int("a", 2)
                with pytest.raises(synadb.InvalidArgument, match="batch"):
                    db.checkpoint()
                with pytest.raises(synadb.InvalidArgument, match="batch"):
                    db.compact()
                raise RuntimeError
        assert db.get_history("a") == [1]
    with SynaDB(db_path) as db:
        assert db.get_history("a") == [1]


def test_compact_through_a_symlink_keeps_the_link(tmp_path):
    real = tmp_path / "real.db"
    link = tmp_path / "link.db"
    with SynaDB(str(real)) as db:
        db.put_int("x", 1)
    link.symlink_to(real)
    with SynaDB(str(link)) as db:
        db.put_int("x", 2)
        db.compact(progress=False)
    assert link.is_symlink()
    with SynaDB(str(real)) as db:
        assert db.get_history("x") == [1, 2]


def test_compact_keeps_file_mode_and_cleans_dead_temps(db_path):
    with SynaDB(db_path) as db:
        db.put_int("x", 1)
    os.chmod(db_path, 0o600)
    Path(db_path + ".compact-999999.tmp").write_bytes(b"left by a killed compaction")
    with SynaDB(db_path) as db:
        db.compact(progress=False)
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    assert sorted(os.listdir(os.path.dirname(db_path))) == ["test.db"]


HOLDER = """
import os, signal, sys
from synadb import SynaDB
db = SynaDB(sys.argv[1])
db.put_int("parent", 1)            # takes the lock
pid = os.fork()
if pid == 0:                        # a worker that inherited the handle, idle
    signal.pause()
    os._exit(0)
print(pid, flush=True)
with db.batch():                    # hold the lock until we are killed
    db.put_int("parent", 2)
    print("holding", flush=True)
    signal.pause()
"""


def test_forked_child_does_not_keep_a_dead_parents_lock(db_path):
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, db_path], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=root))
    child_pid = int(proc.stdout.readline())
    try:
        assert proc.stdout.readline().strip() == "holding"
        with SynaDB(db_path, lock_timeout_s=0.2) as db:
            with pytest.raises(synadb.LockTimeout):
                db.put_int("me", 1)  # the parent holds it
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with SynaDB(db_path, lock_timeout_s=5) as db:
            db.put_int("me", 1)  # the idle child must not keep it
            assert db.get_history("parent") == [1]
    finally:
        os.kill(child_pid, signal.SIGKILL)
        proc.stdout.close()


def test_non_str_keys_on_reads_are_invalid_keys(db_path):
    with SynaDB(db_path) as db:
        db.put_int("a", 1)
        for call in (lambda: db.exists(["a"]), lambda: db.get(1), lambda: db.get_float(b"a"),
                     lambda: db.get_history(None), lambda: db.get_history_tensor(3)):
            with pytest.raises(synadb.InvalidKey):
                call()
        with pytest.raises(synadb.InvalidArgument, match="too large"):
            db.put_float("a", 10**400)
        with pytest.raises(synadb.InvalidArgument, match="float32"):
            db.put_vector("v", [1e39])


def test_moved_marker_pointing_at_itself_is_an_error_not_a_loop(db_path):
    from synadb.engine import format as fmt

    with SynaDB(db_path) as db:
        db.put_int("a", 1)
        db._log.append(fmt.T_MOVED, b"", b"")
    with pytest.raises(synadb.CorruptDatabase, match="replaced by compaction"):
        SynaDB(db_path)
    assert struct.unpack_from("<I", Path(db_path).read_bytes(), 12)  # file still there
