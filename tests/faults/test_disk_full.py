"""A real full disk: a 1 MiB tmpfs mounted for the test (root only).

The scenario runs in a child process (_diskfull_child.py): if the engine ever
stores into a mapped page that the file system has no block for, the kernel
kills that process with SIGBUS, and that is reported here as a failure
instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture
def small_tmpfs():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command")
    d = tempfile.mkdtemp(prefix="synadb-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {(r.stderr or r.stdout).strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", d], capture_output=True)
        if not os.path.ismount(d):
            shutil.rmtree(d, ignore_errors=True)


def test_full_tmpfs(small_tmpfs):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join(HERE, "_diskfull_child.py"), small_tmpfs],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if r.returncode < 0:
        sig = signal.Signals(-r.returncode).name
        pytest.fail(f"the child was killed by {sig} (a store into a mapped page with no "
                    f"room on the disk?)\nstderr: {r.stderr[-2000:]}")
    assert r.returncode == 0, f"the child failed:\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not out["problems"], "\n".join(out["problems"] + ["notes: " + "; ".join(out["notes"])])


def test_read_only_mount(small_tmpfs):
    """A real read-only file system: a writable open says so (with the
    errno), a read-only open reads everything."""
    import synadb

    path = os.path.join(small_tmpfs, "ro.db")
    with synadb.SynaDB(path) as db:
        db.put_int("a", 1)
        db.put_text("b", "x")
    r = subprocess.run(["mount", "-o", "remount,ro", small_tmpfs], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {(r.stderr or r.stdout).strip()}")
    try:
        with pytest.raises(synadb.ReadOnlyFilesystem) as info:
            synadb.SynaDB(path)
        assert info.value.errno == 30 and isinstance(info.value, OSError)
        with pytest.raises(synadb.ReadOnlyFilesystem):
            synadb.SynaDB(os.path.join(small_tmpfs, "new.db"))
        with synadb.SynaDB(path, read_only=True) as db:
            assert db.get_int("a") == 1 and db.get_text("b") == "x"
            assert db.verify().ok
    finally:
        subprocess.run(["mount", "-o", "remount,rw", small_tmpfs], capture_output=True)
