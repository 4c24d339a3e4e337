"""The engine under faults: each test here is one case of issue 11, and
failed on the engine before it.

Real files in tmp_path; OS faults are injected by wrapping the one os
function that fails (the only way to make EIO or ENOSPC happen on demand),
and real kills use subprocesses.
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import synadb
from synadb import SynaDB
from synadb.engine import format as fmt

PAGE = 4096


def _read_all(path) -> dict:
    with SynaDB(str(path), read_only=True) as db:
        return {k: db.get_history(k) for k in db.keys()}


def _fail_nth(monkeypatch, name: str, code: int, nth: int = 1, module=os):
    """Make the nth call of os.<name> from now on raise OSError(code)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def _disk_full(monkeypatch) -> None:
    """From now on the file cannot grow: posix_fallocate says ENOSPC."""
    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)


# -- 1. a failed compaction never strands later writes ---------------------------

@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_failed_folder_fsync_after_compaction_keeps_every_later_write(tmp_path, monkeypatch,
                                                                      code):
    path = str(tmp_path / "c.db")
    db = SynaDB(path)
    for i in range(50):
        db.put_int(f"k{i}", i)
    db.delete("k0")
    real_open = os.open

    def open_dir_then_fail(p, flags, *a):
        fd = real_open(p, flags, *a)
        if os.path.isdir(p):  # fsync_dir opens the folder; fail its fsync
            _fail_nth(monkeypatch, "fsync", code)
        return fd

    monkeypatch.setattr(os, "open", open_dir_then_fail)
    with pytest.raises(synadb.SynaError) as info:
        db.compact(progress=False)
    monkeypatch.undo()
    assert isinstance(info.value, OSError) and info.value.errno == code
    # The handle follows the new file or refuses to write; never writes into
    # the old, unlinked one.
    wrote = []
    for i in range(100, 600):
        try:
            db.put_int(f"k{i}", i)
            wrote.append(i)
        except synadb.SynaError:
            pass
    try:
        db.close()
    except synadb.SynaError:
        pass
    got = _read_all(path)
    assert "k0" not in got and all(got[f"k{i}"] == [i] for i in range(1, 50))
    assert all(got.get(f"k{i}") == [i] for i in wrote)


def test_compaction_on_a_full_disk_fails_before_the_rename_or_not_at_all(tmp_path,
                                                                          monkeypatch):
    path = str(tmp_path / "c.db")
    db = SynaDB(path)
    for i in range(20):
        db.put_int(f"k{i}", i)
    db.delete("k0")
    ino = os.stat(path).st_ino
    _disk_full(monkeypatch)
    # Fill the file's allocated space to the last bytes, so that the Moved
    # record compaction appends to the old file may need it to grow.
    for size in (4000, 100, 0):
        with pytest.raises(synadb.DiskFull):
            while True:
                db.put_bytes("p", b"x" * size)
    try:
        db.compact(progress=False)
    except synadb.DiskFull:
        assert os.stat(path).st_ino == ino  # failed before the swap
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    monkeypatch.undo()  # space is freed: the same handle works
    db.put_int("after", 1)
    db.close()
    got = _read_all(path)
    assert got["after"] == [1] and "k0" not in got and got["k19"] == [19]


# -- 2. power loss in the default mode: a batch is all or nothing ----------------

def _zero_page(path: str, offset: int) -> None:
    data = bytearray(Path(path).read_bytes())
    start = offset // PAGE * PAGE
    data[start:start + PAGE] = bytes(PAGE)
    Path(path).write_bytes(bytes(data))


def test_a_lost_page_inside_an_unsynced_batch_loses_the_whole_batch(tmp_path):
    path = str(tmp_path / "b.db")
    with SynaDB(path) as db:
        db.put_float("before", 1.0)
        db.sync()
        with db.batch(sync=False):
            for i in range(300):
                db.put_text(f"key{i:03d}", "v" * 40)
        end = db._log.end
        crash = Path(path).read_bytes()  # the page cache: commit written, not synced
    Path(path).write_bytes(crash)
    _zero_page(path, (end // 2))  # a middle page never reached the disk
    got = _read_all(path)
    batch_keys = [k for k in got if k.startswith("key")]
    assert batch_keys == []  # 158 of them stayed visible before
    assert got["before"] == [1.0]
    with SynaDB(path) as db:
        assert db.get("key150") is None
        db.put_int("next", 1)
    assert _read_all(path)["next"] == [1]


def test_a_lost_page_of_interleaved_histories_leaves_prefixes_not_holes(tmp_path):
    path = str(tmp_path / "h.db")
    with SynaDB(path) as db:
        db.put_float("a", -1.0)
        db.sync()
        for i in range(2000):
            db.put_float(f"m{i % 7}", float(i))
        end = db._log.end
        crash = Path(path).read_bytes()
    Path(path).write_bytes(crash)
    _zero_page(path, end // 2)
    got = _read_all(path)
    for k in (f"m{j}" for j in range(7)):
        full = [float(i) for i in range(2000) if i % 7 == int(k[1:])]
        assert got.get(k, []) == full[:len(got.get(k, []))]  # a prefix
        assert len(got.get(k, [])) < len(full)  # the tail after the hole is gone


def test_a_chunked_copy_of_a_live_file_is_a_consistent_prefix(tmp_path):
    """A backup agent that reads 4 KiB at a time while batches are written."""
    path = str(tmp_path / "live.db")
    copy = bytearray()
    with SynaDB(path) as db:
        db.put_int("n", 0)
        db.sync()
        fd = os.open(path, os.O_RDONLY)
        try:
            for b in range(60):
                with db.batch(sync=(b % 10 == 0)):
                    for i in range(20):
                        db.put_int(f"b{b}/k{i}", b)
                # The agent reads up to and including the page being written:
                # its tail is copied before the next batches fill it.
                while len(copy) <= db._log.end:
                    copy += os.pread(fd, PAGE, len(copy))
            while chunk := os.pread(fd, 1 << 20, len(copy)):
                copy += chunk
        finally:
            os.close(fd)
    (tmp_path / "copy.db").write_bytes(bytes(copy))
    got = _read_all(tmp_path / "copy.db")
    batches = {k.split("/")[0] for k in got if k.startswith("b")}
    for b in batches:
        assert all(got.get(f"{b}/k{i}") == [int(b[1:])] for i in range(20)), b
    # batches are a prefix of those written
    assert batches == {f"b{i}" for i in range(len(batches))}


# -- 3. resync never replays an older copy of the same file ------------------------

def test_an_embedded_copy_of_the_file_is_never_replayed(tmp_path):
    path = str(tmp_path / "e.db")
    with SynaDB(path) as db:
        db.put_int("x", 1)
        db.sync()
        old = Path(path).read_bytes()[:db._log.end]
        db.put_bytes("backup", old)  # a copy of this very file, same salt
        db.put_int("x", 2)
    data = bytearray(Path(path).read_bytes())
    at = data.index(b"backup")
    data[at - 4] ^= 0xFF  # one bad byte in that record's head
    Path(path).write_bytes(bytes(data))
    with SynaDB(path, read_only=True) as db:
        assert db.get_int("x") == 2
        assert db.get_history("x") == [1, 2]
        assert not db.verify().ok


# -- 4. a failed fsync: the handle agrees with the file, then refuses -------------

def test_a_failed_fdatasync_on_a_sync_on_write_put(tmp_path, monkeypatch):
    path = str(tmp_path / "s.db")
    db = SynaDB(path, sync_on_write=True)
    db.put_int("a", 1)
    _fail_nth(monkeypatch, "fdatasync", errno.EIO)
    with pytest.raises(synadb.DurabilityError) as info:
        db.put_int("a", 2)
    assert info.value.errno == errno.EIO and isinstance(info.value, OSError)
    assert db.get_int("a") == 2  # the file holds it; so does the handle
    with pytest.raises(synadb.DurabilityError):
        db.put_int("b", 3)  # never retried in silence
    with pytest.raises(synadb.DurabilityError):
        db.sync()
    db.close()  # no second error: it was raised already
    assert _read_all(path)["a"] in ([1], [1, 2])
    with SynaDB(path) as db2:  # a reopen works
        db2.put_int("b", 3)
    assert _read_all(path)["b"] == [3]


def test_a_failed_commit_fsync_raises_and_the_batch_is_visible(tmp_path, monkeypatch):
    path = str(tmp_path / "b.db")
    db = SynaDB(path)
    db.put_int("a", 1)
    _fail_nth(monkeypatch, "fsync", errno.EIO)
    with pytest.raises(synadb.DurabilityError):
        with db.batch():
            db.put_int("a", 2)
            db.put_int("b", 3)
    assert db.get_int("a") == 2 and db.get_int("b") == 3  # as in the file
    monkeypatch.undo()
    with pytest.raises(synadb.DurabilityError):
        db.checkpoint()  # refused for the fsync, not "inside a batch"
    db.close()
    assert _read_all(path) == {"a": [1, 2], "b": [3]}


# -- 5. a compactor killed between its rename and its Moved record -----------------

def test_followers_notice_a_replaced_file_without_a_moved_record(tmp_path, monkeypatch):
    path = str(tmp_path / "k.db")
    with SynaDB(path) as db:
        db.put_int("old", 1)
        db.delete("old")
        db.put_int("keep", 1)
    reader = SynaDB(path, read_only=True)
    idle = SynaDB(path)
    assert reader.get_int("keep") == 1 and idle.get_int("keep") == 1
    script = textwrap.dedent(f"""
        import os, synadb
        from synadb.engine import log
        log.Log.mark_moved = lambda self: os._exit(9)  # killed right after the rename
        db = synadb.SynaDB({path!r})
        db.compact(progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == 9
    with SynaDB(path) as db:  # a new writer on the new file
        db.put_int("new", 7)
    assert reader.get_int("new") == 7  # at once: the replacing byte says to look
    assert idle.get_int("new") == 7
    idle.put_int("from_idle", 8)
    idle.close()
    reader.close()
    assert _read_all(path)["from_idle"] == [8]


# -- 8. OS faults are SynaErrors that keep the errno --------------------------------

def test_full_disk_is_disk_full_and_the_same_handle_recovers(tmp_path, monkeypatch):
    path = str(tmp_path / "f.db")
    db = SynaDB(path)
    db.put_int("a", 1)
    _disk_full(monkeypatch)
    acked = []
    with pytest.raises(synadb.DiskFull) as info:
        for i in range(100_000):
            db.put_bytes(f"k{i}", b"x" * 1000)
            acked.append(i)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    monkeypatch.undo()
    db.put_int("after", 2)
    db.close()
    got = _read_all(path)
    assert all(got[f"k{i}"] == [b"x" * 1000] for i in acked) and got["after"] == [2]


def test_close_of_a_handle_that_only_read_on_a_full_disk(tmp_path, monkeypatch):
    path = str(tmp_path / "r.db")
    with SynaDB(path, config=synadb.DbConfig(checkpoint_min_bytes=1 << 40)) as w:
        for i in range(30_000):
            w.put_float(f"k{i % 100}", float(i))
    db = SynaDB(path, config=synadb.DbConfig(checkpoint_min_bytes=1))
    assert db.get_float("k1") == 29_901.0
    synced = []
    real_fsync = os.fsync
    _disk_full(monkeypatch)
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    db.close()  # its checkpoint cannot grow the file: skipped, the fsync still runs
    assert synced
    assert _read_all(path)["k1"][-1] == 29_901.0


@pytest.mark.parametrize("code,cls", [(errno.EACCES, synadb.PermissionDenied),
                                      (errno.EROFS, synadb.ReadOnlyFilesystem),
                                      (errno.EIO, synadb.StorageError)])
def test_open_errors_are_synaerrors_with_the_errno(tmp_path, monkeypatch, code, cls):
    path = str(tmp_path / "p.db")
    real = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: (
        (_ for _ in ()).throw(OSError(code, os.strerror(code), p)) if p == path
        else real(p, *a, **k)))
    with pytest.raises(cls) as info:
        SynaDB(path)
    assert info.value.errno == code and isinstance(info.value, OSError)


def test_a_read_only_file_opened_for_writing_says_permission(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes")
    path = str(tmp_path / "ro.db")
    SynaDB(path).close()
    os.chmod(path, 0o444)
    with pytest.raises(synadb.PermissionDenied):
        SynaDB(path)


# -- 9. nothing hangs ----------------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    for ro in (True, False):
        with pytest.raises(synadb.NotADatabase):
            SynaDB(fifo, read_only=ro)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "1", True, 0])
def test_bad_lock_timeouts_are_refused(tmp_path, bad):
    if bad == 0:
        SynaDB(str(tmp_path / "z.db"), lock_timeout_s=bad).close()  # zero is a valid timeout
        return
    with pytest.raises(synadb.InvalidArgument):
        SynaDB(str(tmp_path / "t.db"), lock_timeout_s=bad)
    with pytest.raises(synadb.InvalidArgument):
        SynaDB(str(tmp_path / "t.db"), config=synadb.DbConfig(lock_timeout_s=bad))


# -- 10. bad input: a SynaError, and the file is byte-identical ---------------------

def _bad_calls():
    return [
        ("put_float", lambda db: db.put_float([1], 1.0), synadb.InvalidKeyType),
        ("put_float dict key", lambda db: db.put_float({}, 1.0), synadb.InvalidKeyType),
        ("put_int", lambda db: db.put_int(3, 1), synadb.InvalidKeyType),
        ("put_text", lambda db: db.put_text(b"k", "v"), synadb.InvalidKeyType),
        ("put_bytes", lambda db: db.put_bytes(None, b"v"), synadb.InvalidKeyType),
        ("put_float_row str", lambda db: db.put_float_row("k", "abc"), synadb.InvalidType),
        ("put_float_row int", lambda db: db.put_float_row("k", 5), synadb.InvalidType),
        ("put_float_triple", lambda db: db.put_float_triple("k", "a", 1.0, 2.0),
         synadb.InvalidType),
        ("put_float_row key", lambda db: db.put_float_row([1], (1.0,)), synadb.InvalidKeyType),
        ("put_float_triple key", lambda db: db.put_float_triple([1], 1.0, 1.0, 1.0),
         synadb.InvalidKeyType),
        ("keys(1)", lambda db: db.keys(1), synadb.InvalidType),
        ("get_many(None)", lambda db: db.get_many(None), synadb.InvalidType),
        ("get_many([1])", lambda db: db.get_many([1]), synadb.InvalidKeyType),
        ("get([1])", lambda db: db.get([1]), synadb.InvalidKeyType),
        ("delete(1)", lambda db: db.delete(1), synadb.InvalidKeyType),
        ("get_history(None)", lambda db: db.get_history(None), synadb.InvalidKeyType),
    ]


@pytest.mark.parametrize("name,call,cls", _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_bad_input_is_a_synaerror_and_changes_no_byte(tmp_path, name, call, cls):
    path = str(tmp_path / "b.db")
    with SynaDB(path) as db:
        db.put_float("k", 1.0)
        db.put_float_row("k", (1.0, 2.0))
        db.sync()
        before = Path(path).read_bytes()
        with pytest.raises(cls) as info:
            call(db)
        assert isinstance(info.value, synadb.SynaError)
        if issubclass(cls, TypeError):
            assert isinstance(info.value, TypeError)
        assert Path(path).read_bytes() == before
        db.put_float("k", 2.0)  # the handle is fine


def test_bad_paths_are_invalid_path(tmp_path):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    cases = [str(loop), "/dev/zero", str(tmp_path / "a\0b"), str(tmp_path / ("n" * 300)),
             str(tmp_path / "missing" / "x.db"), str(tmp_path)]
    for p in cases:
        for ro in (False, True):
            with pytest.raises(synadb.SynaError) as info:
                SynaDB(p, read_only=ro)
            assert isinstance(info.value, (synadb.InvalidPath, synadb.DatabaseNotFound)), p


def test_crc_valid_records_that_do_not_decode_are_reported(tmp_path):
    """A record whose CRC is right but whose text is not UTF-8 (or whose LZ4
    block is garbage) raises a SynaError, never UnicodeDecodeError."""
    path = str(tmp_path / "u.db")
    with SynaDB(path) as db:
        db._log.acquire()
        pos = db._log.append(fmt.T_TEXT, b"t", b"\xff\xfe")
        db._log.index.append("t", fmt.T_TEXT, pos, math.nan)
        pos = db._log.append(fmt.T_BYTES | fmt.F_LZ4, b"z", b"\x10\x00\x00\x00garbage")
        db._log.index.append("z", fmt.T_BYTES, pos, math.nan)
    with SynaDB(path, read_only=True) as db:
        with pytest.raises(synadb.CorruptDatabase):
            db.get_text("t")
        with pytest.raises(synadb.CorruptDatabase):
            db.get("z")
        with pytest.raises(synadb.CorruptDatabase):
            db.get_history("t")


# -- format 1 files still open, take writes in format 1, and compact to 2 ------------

def _format1_file(path: str, records: list[tuple[int, bytes, bytes]]) -> None:
    import struct
    import zlib

    salt = 0x1234567
    static = struct.pack("<8sHHIQI", fmt.MAGIC, 1, 1, salt, 0, 0)
    head = bytearray(static + struct.pack("<I", zlib.crc32(static)))
    head += fmt.slot_v1(0, 0) + bytes(8)
    body = b"".join(fmt.encode(t, k, v, salt, 0, 0) for t, k, v in records)
    Path(path).write_bytes(bytes(head) + body)


def test_a_format1_file_reads_appends_and_compacts_to_format2(tmp_path):
    import struct

    path = str(tmp_path / "v1.db")
    _format1_file(path, [(fmt.T_INT, b"a", struct.pack("<q", 1)),
                         (fmt.T_TEXT, b"t", b"hello"),
                         (fmt.T_INT, b"a", struct.pack("<q", 2))])
    assert _read_all(path) == {"a": [1, 2], "t": ["hello"]}
    with SynaDB(path) as db:
        db.put_int("a", 3)
        with db.batch():
            db.put_text("t", "again")
        assert db.info()["format_version"] == 1
    assert _read_all(path) == {"a": [1, 2, 3], "t": ["hello", "again"]}
    with SynaDB(path) as db:
        assert db.verify().ok
        db.compact(progress=False)
        assert db.info()["format_version"] == 2
        db.put_int("a", 4)
    assert _read_all(path) == {"a": [1, 2, 3, 4], "t": ["hello", "again"]}


# -- 7. the engine's own derived record: a bad checkpoint is a cache miss -----------

@pytest.mark.parametrize("how", ["crc", "garbage"])
def test_a_bad_checkpoint_is_reported_and_replayed(tmp_path, how):
    path = str(tmp_path / "c.db")
    with SynaDB(path) as db:
        for i in range(100):
            db.put_float(f"k{i % 10}", float(i))
        db.checkpoint()
        db.put_int("after", 1)
        off = db._log.header.checkpoint_offset
    data = bytearray(Path(path).read_bytes())
    if how == "crc":
        data[off + 40] ^= 0xFF  # inside the snapshot: its CRC fails
    else:  # a CRC-valid record that is not a snapshot
        salt = fmt.Header(bytes(data[:64])).salt
        rec = fmt.encode(fmt.T_CHECKPOINT, b"", b"\x07" * 40, salt, off, fmt.POS_MASK)
        old_len = 16 + len(data[off + 8:off + 12]) * 0 + int.from_bytes(data[off + 4:off + 8],
                                                                         "little")
        assert len(rec) <= old_len
        data[off:off + len(rec)] = rec
        data[off + len(rec):off + old_len] = bytes(old_len - len(rec))
    Path(path).write_bytes(bytes(data))
    with SynaDB(path, read_only=True) as db:
        assert db.get_history("k3") == [float(i) for i in range(3, 100, 10)]
        assert db.get_int("after") == 1
        report = db.verify()
        assert not report.ok and ("checkpoint" in str(report) or report.damaged)


@pytest.mark.parametrize("kw,cls", [
    (dict(checkpoint_min_bytes="1"), synadb.InvalidType),
    (dict(checkpoint_min_bytes=-1), synadb.InvalidArgument),
    (dict(compression_threshold_bytes=1.5), synadb.InvalidType),
    (dict(sync_on_write="yes"), synadb.InvalidType),
    (dict(lock_timeout_s=float("nan")), synadb.InvalidArgument),
])
def test_a_bad_config_is_refused_before_anything_opens(tmp_path, kw, cls):
    with pytest.raises(cls):
        synadb.DbConfig(**kw)
    with pytest.raises(synadb.InvalidType):
        SynaDB(str(tmp_path / "x.db"), config={"sync_on_write": True})
    assert not (tmp_path / "x.db").exists()


def test_sync_and_close_record_the_synced_end(tmp_path):
    """The header's synced end is what lets recovery call a bad record
    before it damage (reported) rather than a torn tail (dropped)."""
    path = str(tmp_path / "w.db")
    db = SynaDB(path)
    db.put_int("a", 1)
    db.sync()
    assert db._log.header.synced_end == db._log.end
    a_at = db._log.index.latest("a")[1]
    db.put_int("b", 2)
    end = db._log.end
    db.close()
    assert fmt.Header(Path(path).read_bytes()[:64]).synced_end == end
    # Real damage to a synced record with good ones after it is reported.
    data = bytearray(Path(path).read_bytes())
    data[a_at + 12 + 1] ^= 0xFF  # inside a's value
    Path(path).write_bytes(bytes(data))
    with SynaDB(path, read_only=True) as db:
        with pytest.raises(synadb.ChecksumError):
            db.get_int("a")
        assert db.get_int("b") == 2
        assert not db.verify().ok


def test_a_compactor_killed_just_before_its_rename_leaves_everything_working(tmp_path):
    path = str(tmp_path / "k.db")
    with SynaDB(path) as db:
        db.put_int("a", 1)
        db.delete("a")
        db.put_int("b", 2)
    reader = SynaDB(path, read_only=True)
    assert reader.get_int("b") == 2
    script = textwrap.dedent(f"""
        import os, synadb
        os.replace = lambda *a: os._exit(9)  # killed with the replacing byte set
        synadb.SynaDB({path!r}).compact(progress=False)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert Path(path).read_bytes()[fmt.REPLACING_AT] == 1
    assert reader.get_int("b") == 2  # checks the path, finds its own file, goes on
    with SynaDB(path) as db:  # a writer clears the byte under the lock
        db.put_int("c", 3)
        db.compact(progress=False)  # and a later compaction removes the dead temp file
    assert Path(path).read_bytes()[fmt.REPLACING_AT] == 0
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert reader.get_int("c") == 3
    reader.close()
    assert _read_all(path) == {"b": [2], "c": [3]}


# -- found in review ------------------------------------------------------------------

@pytest.mark.parametrize("slot", ["intact", "torn"])
def test_a_flipped_bit_in_synced_records_never_costs_the_records_after_it(tmp_path, slot):
    path = str(tmp_path / "s.db")
    db = SynaDB(path, sync_on_write=True)
    for i in range(200):
        db.put_int(f"k{i}", i)
    crash = bytearray(Path(path).read_bytes())  # killed: never closed
    db.close()
    at = crash.index(b"k100") + 4  # k100's value
    crash[at] ^= 0x01
    if slot == "torn":
        crash[fmt.CKPT_AT + 3] ^= 0xFF
    Path(path).write_bytes(bytes(crash))
    with SynaDB(path) as db:  # a writable open, which cuts torn tails
        with pytest.raises(synadb.ChecksumError):
            db.get_int("k100")
        assert [db.get_int(f"k{i}") for i in range(101, 200)] == list(range(101, 200))
        db.put_int("after", 1)
    with SynaDB(path, read_only=True) as db:
        assert db.get_int("k199") == 199 and db.get_int("after") == 1
        assert not db.verify().ok  # the damage is still reported


def test_sync_on_write_syncs_blob_appends_too(tmp_path, monkeypatch):
    db = SynaDB(str(tmp_path / "b.db"), sync_on_write=True)
    db.put_int("warm", 1)
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd)))
    db.storage.put_blob_parts("one", [b"x" * 100])
    db.storage.put_blob_parts("big", [bytes(2 << 20)])
    db.storage.put_blobs([("a", b"1"), ("b", b"2")])
    db.put_bytes("c", b"3")
    assert len(calls) == 4
    db.close()


def test_nobody_writes_into_the_new_file_before_its_rename_is_durable(tmp_path, monkeypatch):
    from synadb.engine import compact as compact_mod

    path = str(tmp_path / "c.db")
    db = SynaDB(path)
    db.put_int("a", 1)
    db.delete("a")
    seen = []
    real = compact_mod.fsync_dir

    def other_writer_tries_first(p):
        other = SynaDB(path, lock_timeout_s=0)
        try:
            other.put_int("b", 2)
            seen.append("wrote")
        except synadb.LockTimeout:
            seen.append("locked out")
        finally:
            other.close()
        real(p)

    monkeypatch.setattr(compact_mod, "fsync_dir", other_writer_tries_first)
    db.compact(progress=False)
    monkeypatch.undo()
    assert seen == ["locked out"]
    db.put_int("b", 3)
    db.close()
    assert _read_all(path) == {"b": [3]}


def test_close_never_waits_on_a_busy_writer_of_a_compacted_file(tmp_path):
    import time

    path = str(tmp_path / "w.db")
    a = SynaDB(path, lock_timeout_s=30, config=synadb.DbConfig(checkpoint_min_bytes=1))
    for i in range(100):
        a.put_int(f"k{i}", i)
    b = SynaDB(path)
    b.delete("k0")
    b.compact(progress=False)
    with b.batch():  # b holds the new file's lock throughout
        b.put_int("x", 1)
        t = time.monotonic()
        a.close()  # would wait lock_timeout_s=30 to checkpoint the new file
        assert time.monotonic() - t < 10
    b.close()
    assert _read_all(path)["x"] == [1]


def test_compaction_os_errors_before_the_copy_are_synaerrors(tmp_path, monkeypatch):
    db = SynaDB(str(tmp_path / "e.db"))
    db.put_int("a", 1)
    monkeypatch.setattr(os, "listdir", lambda *a: (_ for _ in ()).throw(
        OSError(errno.EIO, "I/O error")))
    with pytest.raises(synadb.StorageError):
        db.compact(progress=False)
    monkeypatch.undo()
    db.put_int("a", 2)
    db.close()
