"""Promises that need more than one process: crashes, writers, live readers."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb import SynaDB

ROOT = str(Path(__file__).resolve().parents[1])


def _child(code, *args, stdin=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stdin=stdin, env=env, text=True)


# -- 4. crashes ----------------------------------------------------------------

WRITER = """
    import sys
    from synadb import SynaDB
    path, sync = sys.argv[1], sys.argv[2] == "1"
    db = SynaDB(path, sync_on_write=sync)
    i = 0
    while True:
        db.put_float(f"k/{i % 500}", float(i))
        if i % 7 == 0:
            db.put_text(f"t/{i % 50}", "x" * (i % 300))
        if i % 11 == 0:
            with db.batch():
                db.put_int("batch/a", i)
                db.put_int("batch/b", i)
        print(i, flush=True)  # the put above has returned
        i += 1
"""


@pytest.mark.parametrize("sync", [False, True])
def test_sigkill_loses_no_acknowledged_put(tmp_path, sync):
    rng = random.Random(7 + sync)
    path = str(tmp_path / "crash.db")
    acked = -1
    for round_ in range(4):
        proc = _child(WRITER, path, int(sync))
        target = acked + rng.randrange(50, 400 if sync else 3000)
        last = -1
        for line in proc.stdout:
            last = int(line)
            if last >= target:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        acked = last
        # Every put that returned is there.
        with SynaDB(path, read_only=True) as db:
            for i in range(max(0, acked - 600), acked + 1):
                hist = db.get_history(f"k/{i % 500}")
                assert float(i) in hist, (round_, i)
            a, b = db.get_int("batch/a"), db.get_int("batch/b")
            assert a == b  # batches are all or nothing
        # A writer's open cuts the torn tail; then the file is clean.
        with SynaDB(path) as db:
            assert db.verify().ok
        # The next round's writer appends after whatever was recovered.


# -- 5. many processes ---------------------------------------------------------

APPENDER = """
    import sys
    from synadb import SynaDB
    path, me, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with SynaDB(path, lock_timeout_s=60) as db:
        for i in range(n):
            db.put_float(f"w{me}/{i}", float(i))
            db.put_int("all", me * n + i)
    print("done", flush=True)
"""


def test_four_writers_append_10000_each(tmp_path):
    path = str(tmp_path / "shared.db")
    n = 10_000
    procs = [_child(APPENDER, path, me, n) for me in range(4)]
    for p in procs:
        assert p.stdout.read().strip() == "done"
        p.stdout.close()
        assert p.wait() == 0
    with SynaDB(path, read_only=True) as db:
        assert len(db.keys("w*")) == 4 * n
        for me in range(4):
            for i in range(0, n, 997):
                assert db.get_float(f"w{me}/{i}") == float(i)
        everything = db.get_history("all")
        assert sorted(everything) == list(range(4 * n))
        for me in range(4):  # each writer's own values stay in its order
            mine = [v for v in everything if v // n == me]
            assert mine == sorted(mine)
        assert db.verify().ok


def test_second_writer_times_out_then_gets_in(db_path):
    a = SynaDB(db_path)
    b = SynaDB(db_path, lock_timeout_s=0.3)  # two handles in one process
    try:
        with a.batch():  # a batch keeps the lock until it ends
            a.put_float("x", 1.0)
            with pytest.raises(synadb.LockTimeout, match="lock_timeout_s=0.3"):
                b.put_float("y", 2.0)
        b.put_float("y", 2.0)
        a.put_float("x", 3.0)  # handed back and forth as they write
        b.put_float("y", 4.0)
    finally:
        a.close()
    # Closing a never disturbs b.
    b.put_float("y", 5.0)
    assert b.get_history("x") == [1.0, 3.0]
    assert b.get_history("y") == [2.0, 4.0, 5.0]
    b.close()


TRAINER = """
    import sys
    from synadb import SynaDB
    path, n = sys.argv[1], int(sys.argv[2])
    with SynaDB(path) as db:
        for step in range(n):
            db.put_float("train/loss", float(step))
            if step % 100 == 0:
                db.put_text("train/status", f"step {step}")
    print("done", flush=True)
"""


def test_open_reader_sees_writer_live_without_reopening(db_path):
    n = 200_000  # enough that the writer grows and remaps the file
    SynaDB(db_path).close()
    reader = SynaDB(db_path, read_only=True)
    proc = _child(TRAINER, db_path, n)
    seen = 0
    deadline = time.monotonic() + 120
    polls = 0
    while seen < n:
        hist = reader.get_history_tensor("train/loss")
        # Always a prefix of what is being written, never a torn value.
        assert len(hist) >= seen
        np.testing.assert_array_equal(hist, np.arange(len(hist), dtype=np.float64))
        seen = len(hist)
        polls += 1
        assert time.monotonic() < deadline, f"saw only {seen} of {n}"
    assert proc.stdout.read().strip() == "done"
    proc.stdout.close()
    proc.wait()
    assert reader.get_float("train/loss") == n - 1
    assert reader.get_text("train/status") == f"step {(n - 1) // 100 * 100}"
    assert polls > 1
    reader.close()


READER = """
    import json, sys
    from synadb import SynaDB
    db = SynaDB(sys.argv[1], read_only=True)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "read":
            print(json.dumps({k: db.get_history(k) for k in db.keys()}), flush=True)
        else:
            break
    db.close()
"""


def test_reader_in_another_process_survives_compaction(db_path):
    with SynaDB(db_path) as db:
        for i in range(5000):
            db.put_float(f"k{i % 10}", float(i))
        db.put_text("gone", "soon")
    proc = _child(READER, db_path, stdin=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"

    def ask():
        proc.stdin.write("read\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    before = ask()
    assert before["k3"][:2] == [3.0, 13.0]
    with SynaDB(db_path) as db:
        db.delete("gone")
        saved = db.compact(progress=False)
        assert saved > 0
        db.put_float("k3", -1.0)
        expected = {k: db.get_history(k) for k in db.keys()}
    assert ask() == expected
    proc.stdin.write("exit\n")
    proc.stdin.close()
    proc.wait()
    proc.stdout.close()
    # And keep_history=False keeps only the latest values.
    with SynaDB(db_path) as db:
        db.compact(keep_history=False, progress=False)
        assert db.get_history("k3") == [-1.0]
        assert db.get_float("k4") == expected["k4"][-1]


def test_forked_child_writes_through_an_inherited_handle(db_path):
    import multiprocessing as mp

    db = SynaDB(db_path)
    db.put_float("parent", 0.0)  # the parent holds the lease at fork time

    def child():
        for i in range(2000):
            db.put_float("child", float(i))
        db.close()

    proc = mp.get_context("fork").Process(target=child)
    proc.start()
    for i in range(1, 2000):
        db.put_float("parent", float(i))
    proc.join(60)
    assert proc.exitcode == 0
    assert db.get_history("parent") == [float(i) for i in range(2000)]
    assert db.get_history("child") == [float(i) for i in range(2000)]
    assert db.verify().ok
    db.close()
