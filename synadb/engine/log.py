"""The log file: open, append, scan, recover, checkpoint, follow.

A :class:`Log` owns one open file and its :class:`~.index.Index`.  The file
is memory-mapped shared: an append is a copy into the map, which the kernel
owns from that moment on, so a killed process loses nothing it wrote, and a
reader in another process sees the bytes at once.  Space is pre-allocated in
chunks with ``posix_fallocate`` so that a full disk fails at growth time with
an error instead of a SIGBUS in the middle of a store.

The file never shrinks in place: another process may have it mapped, and a
mapping past the end of a file kills its reader with SIGBUS.  Compaction
writes a new file and renames it over the old one instead.
"""

from __future__ import annotations

import math
import mmap
import os
import random
import struct
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from .. import errors
from . import lock as _lock
from .format import (
    CKPT_AT,
    F_BATCH,
    F_LZ4,
    F_XOR,
    HEADER_SIZE,
    LOCK_REQUEST_AT,
    MARKER,
    READ_VERSION,
    REC_HEAD,
    REC_PREFIX,
    U32,
    T_ABORT,
    T_CHECKPOINT,
    T_COMMIT,
    T_DELETE,
    T_FLOAT,
    T_FLOATS,
    T_INT,
    T_MOVED,
    TYPE_MASK,
    TYPE_NAMES,
    VALUE_TYPES,
    WRITE_VERSION,
    Header,
    check_header,
    checkpoint_slot,
    crc32,
    encode,
    new_header,
)
from .index import Index

T_DAMAGED = 31  # in-memory only: a history entry whose record failed its CRC

_D = struct.Struct("<d")
_Q = struct.Struct("<q")
_MARKER_BYTE = bytes([MARKER])
_MIN_GROW = 1 << 16
_WRITE_PIECE = 4 << 20
_NAN = math.nan

_OPEN_LOGS: "weakref.WeakSet[Log]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _CRC_POOL
    _CRC_POOL = None  # its thread did not survive the fork: submitting would hang
    # flock belongs to the open file description, which fork shares: the
    # child must never use (or unlock) the parent's descriptor for locking.
    for log in list(_OPEN_LOGS):
        log._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class Damage:
    """One damaged stretch of the file, as found by a scan."""

    offset: int
    length: int
    reason: str
    key: str | None = None


@dataclass
class ScanStats:
    records: int = 0
    damaged: list[Damage] = field(default_factory=list)
    end: int = HEADER_SIZE
    garbage_bytes: int = 0  # non-zero bytes after the last good record
    moved: bool = False


def decode_floats(flags: int, value: bytes | memoryview) -> np.ndarray:
    """Decode a T_FLOATS value into float64."""
    raw = bytes(value)
    if flags & F_LZ4:
        import lz4.block  # imported on first use: keeps `import synadb` light

        raw = lz4.block.decompress(raw)
    if flags & F_XOR:
        bits = np.frombuffer(raw, dtype="<u8")
        return np.bitwise_xor.accumulate(bits).view("<f8")
    return np.frombuffer(raw, dtype="<f8").copy()


def encode_floats(chunk: np.ndarray, compress: bool, delta: bool) -> tuple[int, bytes]:
    """Encode float64 values for a T_FLOATS record: (flags, stored bytes)."""
    raw = np.ascontiguousarray(chunk, dtype="<f8").tobytes()
    if not compress or len(raw) < 64:
        return 0, raw
    import lz4.block

    src = raw
    if delta:
        bits = np.frombuffer(raw, dtype="<u8")
        xored = bits.copy()
        xored[1:] ^= bits[:-1]
        src = xored.tobytes()
    packed = lz4.block.compress(src, store_size=True)
    if len(packed) >= len(raw):
        return 0, raw
    return F_LZ4 | (F_XOR if delta else 0), packed


def decompress(raw: bytes) -> bytes:
    import lz4.block

    return lz4.block.decompress(raw)


class Scanner:
    """Parses and walks the records of a mapped file; no state beyond that."""

    _mm: mmap.mmap | None
    salt: int

    def __init__(self, mm: mmap.mmap, salt: int) -> None:
        self._mm = mm
        self.salt = salt

    # ---------------------------------------------------------------- parse
    def _parse(self, pos: int, limit: int):
        """Parse the record at pos.

        Returns (key bytes, type|flags, vstart, vend, body_bad, next) or None
        when no trustworthy record starts there.
        """
        mm = self._mm
        if pos + 16 > limit or mm[pos] != MARKER:
            return None
        _, tf, klen, vlen, hc = REC_PREFIX.unpack_from(mm, pos)
        vstart = pos + 12 + klen
        vend = vstart + vlen
        nxt = vend + 4
        if nxt > limit:
            return None
        if crc32(mm[pos + 12:vstart], crc32(mm[pos:pos + 8], self.salt)) != hc:
            return None
        if tf & TYPE_MASK not in TYPE_NAMES:
            return None
        (bc,) = U32.unpack_from(mm, vend)
        if vlen > 65536:
            with memoryview(mm) as mv:
                body_bad = crc32(mv[vstart:vend], hc) != bc
        else:
            body_bad = crc32(mm[vstart:vend], hc) != bc
        return mm[pos + 12:vstart], tf, vstart, vend, body_bad, nxt

    def _scan(self, pos: int, limit: int, apply, *, resync: bool) -> ScanStats:
        """Walk records from pos, calling apply(pos, rec) for each good one.

        With ``resync``, an unreadable stretch followed by good records is
        reported as damage and skipped; without it (a live follower, which
        may be looking at a record still being written) the scan stops.
        """
        st = ScanStats()
        mm = self._mm
        while True:
            rec = self._parse(pos, limit)
            if rec is None:
                if pos >= limit or not resync:
                    break
                nxt = self._resync(pos + 1, limit)
                if nxt < 0:
                    if _nonzero(mm, pos, limit):
                        st.garbage_bytes = limit - pos
                    break
                st.damaged.append(Damage(pos, nxt - pos, "unreadable record header"))
                pos = nxt
                continue
            if rec[4]:
                # A good head but a bad value.  If nothing good follows, this
                # is a torn tail (or, for a follower, a record still being
                # written): stop.  If good records follow, it is damage.
                nxt = rec[5]
                follows = self._parse(nxt, limit) is not None or (
                    resync and self._resync(nxt, limit) >= 0)
                if not follows:
                    if resync and _nonzero(mm, pos, limit):
                        st.garbage_bytes = limit - pos
                    break
                # A follower may have checked this value while its writer was
                # still copying it, and found the next record complete only
                # after: look again now that something follows.
                again = self._parse(pos, limit)
                if again is not None and not again[4]:
                    rec = again
                    apply(pos, rec)
                    st.records += 1
                    pos = rec[5]
                    continue
                try:
                    key = rec[0].decode("utf-8")
                except UnicodeDecodeError:
                    key = None
                st.damaged.append(Damage(pos, nxt - pos, "value CRC mismatch", key))
            st.records += 1
            if rec[1] & TYPE_MASK == T_MOVED:
                st.moved = True
                pos = rec[5]
                break
            apply(pos, rec)
            pos = rec[5]
        st.end = pos
        return st

    def _resync(self, pos: int, limit: int) -> int:
        find = self._mm.find
        while True:
            pos = find(_MARKER_BYTE, pos, limit)
            if pos < 0:
                return -1
            if self._parse(pos, limit) is not None:
                return pos
            pos += 1



class Log(Scanner):
    """One open synadb file: the map, the index, the write lease."""

    def __init__(self, path: str, *, read_only: bool = False, sync_on_write: bool = False,
                 lock_timeout_s: float = 10.0) -> None:
        # realpath: compaction renames over the real file, never over a symlink.
        self.path = os.path.realpath(os.fspath(path))
        self.read_only = read_only
        self.sync_on_write = sync_on_write
        self.lock_timeout_s = lock_timeout_s
        self.mutex = threading.RLock()
        self.closed = True
        self._lease = False
        self._pinned = 0  # >0: a batch or compaction needs the lease kept
        self._end_seen = -1  # the keeper's last look at self.end (idle detection)
        self._tail_start = HEADER_SIZE  # where the log after the last checkpoint starts
        self._lease_since = 0.0
        self._yield_until = 0.0
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._maplen = 0
        self._pending: list[tuple] = []  # batch records seen but not yet committed
        self._open()
        _OPEN_LOGS.add(self)

    # ------------------------------------------------------------------ open
    def _open(self) -> None:
        path = self.path
        if os.path.isdir(path):
            raise errors.InvalidPath(f"{path!r} is a directory, not a database file")
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            raise errors.InvalidPath(f"the folder of {path!r} does not exist")
        if self.read_only:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise errors.DatabaseNotFound(f"no database at {path!r}") from None
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._init_from_fd(fd)
        except BaseException:
            os.close(fd)
            raise
        self.closed = False

    def _init_from_fd(self, fd: int) -> None:
        self._fd = fd
        size = os.fstat(fd).st_size
        if size == 0 and self.read_only:
            # Maybe a writer is creating it this instant: it holds the lock
            # while it writes the header.  Wait for that, then look again.
            if _lock.lock_with_timeout(fd, self.lock_timeout_s, shared=True):
                _lock.unlock(fd)
            size = os.fstat(fd).st_size
            if size == 0:
                raise errors.NotASynaFile(f"{self.path!r} is empty, not a synadb file")
        if size == 0:
            # A new file, or one whose creator died before writing the header.
            # Whoever holds the lock writes the header; the others then read it.
            if not _lock.lock_with_timeout(fd, self.lock_timeout_s):
                raise errors.LockTimeout(f"timed out creating {self.path!r}")
            try:
                if os.fstat(fd).st_size == 0:
                    os.pwrite(fd, bytes(new_header(random.getrandbits(32))), 0)
                    os.fsync(fd)
                    _fsync_dir(self.path)
            finally:
                _lock.unlock(fd)
            size = os.fstat(fd).st_size
        raw = os.pread(fd, HEADER_SIZE, 0)
        problem = check_header(raw)
        if problem is not None:
            raise errors.NotASynaFile(f"{self.path!r}: {problem}; the file was not changed")
        self.header = Header(raw)
        if self.header.read_version > READ_VERSION:
            raise errors.FormatVersionError(
                f"{self.path!r} needs format version {self.header.read_version}; "
                f"this synadb reads up to {READ_VERSION}: upgrade synadb")
        if self.header.write_version > WRITE_VERSION and not self.read_only:
            raise errors.FormatVersionError(
                f"{self.path!r} was written by format {self.header.write_version}; this "
                f"synadb writes {WRITE_VERSION}: open it with read_only=True or upgrade")
        self.salt = self.header.salt
        self.new_float: dict[int, tuple] = {}  # key length -> float_record_packer()
        self.verified: set[int] = set()  # offsets of large records whose CRC this handle checked
        self._map(size)
        self.index, start = self._load_checkpoint()
        self._pending = []
        self.stats = self._scan(start, self._maplen, self._apply, resync=True)
        self._set_end(self.stats.end)
        self._garbage = self.stats.garbage_bytes > 0
        self._tail_start = start
        if self.stats.moved:
            # Opened the old file in the instant between compaction's rename
            # and our open: go to the new one.
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                raise errors.CorruptDatabase(
                    f"{self.path!r} says it was replaced by compaction, but it is the "
                    "file at that path; copy its data out with export_jsonl()")
            self._reopen()
        elif self._garbage and not self.read_only:
            # A torn tail from a crash: cut it now if no writer is busy (if
            # one is, whoever writes next cuts it under the lock).
            try:
                self.acquire(timeout_s=0.0)
            except errors.LockTimeout:
                pass
            else:
                self._drop_lease()

    def _map(self, size: int) -> None:
        access = mmap.ACCESS_READ if self.read_only else mmap.ACCESS_WRITE
        self._mm = mmap.mmap(self._fd, size, access=access)
        self._maplen = size
        if hasattr(self, "end"):
            self._mm.seek(min(self.end, size))

    def _set_end(self, end: int) -> None:
        # Invariant: the map's file position is self.end, so that an append
        # is a single mm.write() (a third of the cost of a slice store).
        self.end = end
        self._mm.seek(end)

    def _load_checkpoint(self) -> tuple[Index, int]:
        off = self.header.checkpoint_offset
        if off and HEADER_SIZE <= off < self._maplen:
            rec = self._parse(off, self._maplen)
            if rec is not None and rec[1] & TYPE_MASK == T_CHECKPOINT and not rec[4]:
                _, tf, vstart, vend, _, nxt = rec
                try:
                    value = self._mm[vstart:vend]
                    if tf & F_LZ4:
                        value = decompress(value)
                    index, covered = Index.from_snapshot(value)
                    if covered == off:
                        return index, nxt
                except (ValueError, struct.error):
                    pass  # a bad checkpoint only costs a full replay
        return Index(), HEADER_SIZE

    # ---------------------------------------------------------------- apply
    def _apply(self, pos: int, rec) -> None:
        tf = rec[1]
        typ = tf & TYPE_MASK
        if tf & F_BATCH:
            self._pending.append((pos, rec))
            return
        if typ == T_COMMIT:
            pending, self._pending = self._pending, []
            for p, r in pending:
                self._apply_one(p, r)
            return
        if typ == T_ABORT:
            self._pending = []
            return
        self._apply_one(pos, rec)

    def _apply_one(self, pos: int, rec) -> None:
        kb, tf, vstart, vend, body_bad, _ = rec
        typ = tf & TYPE_MASK
        if typ == T_CHECKPOINT or typ not in VALUE_TYPES and typ != T_DELETE:
            return
        key = kb.decode("utf-8", "replace")
        index = self.index
        if typ == T_DELETE:
            index.delete(key)
        elif body_bad:
            index.append(key, T_DAMAGED, pos, _NAN)
        elif typ == T_FLOAT:
            index.append(key, T_FLOAT, pos, _D.unpack_from(self._mm, vstart)[0])
        elif typ == T_INT:
            index.append(key, T_INT, pos, float(_Q.unpack_from(self._mm, vstart)[0]))
        elif typ == T_FLOATS:
            index.append_block(key, pos, decode_floats(tf, self._mm[vstart:vend]))
        else:
            index.append(key, typ, pos, _NAN)

    # --------------------------------------------------------------- follow
    def refresh(self) -> None:
        """Take in records other handles appended since we last looked."""
        end = self.end
        if end < self._maplen and self._mm[end] != MARKER:
            return
        self._refresh_slow()

    def _refresh_slow(self) -> None:
        # Something new, or we are at the end of our map: the file may have
        # grown past our map (a record can straddle its end).
        size = os.fstat(self._fd).st_size
        if size > self._maplen:
            self._map(size)
        st = self._scan(self.end, self._maplen, self._apply, resync=False)
        self._set_end(st.end)
        if st.moved:
            self._reopen()

    def _reopen(self) -> None:
        """The file was compacted and replaced: follow the path to the new one."""
        had_lease = self._lease
        self._drop_lease()
        old_fd = self._fd
        self._mm = None
        self._fd = -1
        os.close(old_fd)
        fd = os.open(self.path, (os.O_RDONLY if self.read_only else os.O_RDWR) | os.O_CLOEXEC)
        self._init_from_fd(fd)
        if had_lease:
            self.acquire()

    # ---------------------------------------------------------------- write
    def acquire(self, timeout_s: float | None = None) -> None:
        """Take the write lease (the file lock), then catch up."""
        if self.read_only:
            raise errors.ReadOnlyError(f"{self.path!r} is open read-only")
        if self._lease:
            return
        if timeout_s is None:
            timeout_s = self.lock_timeout_s
            wait = self._yield_until - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        while True:
            if not _lock.lock_with_timeout(self._fd, timeout_s, self._request):
                raise errors.LockTimeout(
                    f"another writer held the lock on {self.path!r} for more than "
                    f"lock_timeout_s={self.lock_timeout_s}")
            self._lease = True
            self._lease_since = time.monotonic()
            if self._mm[LOCK_REQUEST_AT]:
                self._mm[LOCK_REQUEST_AT] = 0
            fd = self._fd
            if self._replaced():
                # A compactor died between its rename and its Moved record:
                # the path names another file now.  Follow it.
                self._reopen()
                if self._lease:
                    break
                continue
            self.refresh()
            if self._fd == fd:  # not moved under us
                break
            # _reopen re-acquired on the new file already
            if self._lease:
                break
        if self._garbage or self._mm[self.end:self.end + 1] not in (b"", b"\0"):
            self._recover_tail()
        if self._pending:
            # Batch records with no commit after them, seen while we hold the
            # lock: their writer died mid-batch.  Close them with an abort so
            # that a later commit can never adopt them.
            self._pending = []
            self.append(self.encode(T_ABORT, b"", b""))
        _lock.KEEPER.register(self)

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return False

    def _request(self) -> None:
        # Ask the holder to hand over.  A stray byte here only makes some
        # holder release its lease a little early.
        if self._mm is not None and not self._mm[LOCK_REQUEST_AT]:
            self._mm[LOCK_REQUEST_AT] = 1

    def _recover_tail(self) -> None:
        """Under the lock: cut a torn tail by zeroing it (never by truncating)."""
        size = os.fstat(self._fd).st_size
        if size > self._maplen:
            self._map(size)
        st = self._scan(self.end, self._maplen, self._apply, resync=True)
        self._set_end(st.end)
        if st.moved:
            self._reopen()
            return
        if st.garbage_bytes:
            self._mm[st.end:self._maplen] = bytes(self._maplen - st.end)
            self._mm.flush()
        self._garbage = False

    def release(self) -> None:
        with self.mutex:
            self._drop_lease()

    def _drop_lease(self) -> None:
        if self._lease:
            self._lease = False
            try:
                _lock.unlock(self._fd)
            except OSError:
                pass

    def lease_tick(self) -> bool:
        """Called by the keeper thread.  True once the lease is given up."""
        if not self.mutex.acquire(timeout=0.05):
            return False
        try:
            if not self._lease or self.closed:
                return True
            if self._pinned:
                return False
            end = self.end
            idle = end == self._end_seen
            self._end_seen = end
            wanted = self._mm[LOCK_REQUEST_AT] and (
                time.monotonic() - self._lease_since >= _lock.TICK_S)
            if idle or wanted:
                if wanted:
                    self._yield_until = time.monotonic() + _lock.YIELD_S
                self._drop_lease()
                return True
            return False
        finally:
            self.mutex.release()

    def append(self, rec: bytes) -> int:
        """Append one encoded record; the caller holds ``mutex``.  Returns its offset."""
        if not self._lease:
            self.acquire()
        n = len(rec)
        pos = self.end
        if pos + n + 16 > self._maplen:
            self._grow(n)
        self._mm.write(rec)
        self.end = pos + n
        if self.sync_on_write:
            os.fdatasync(self._fd)
        return pos

    def _grow(self, n: int, end: int | None = None) -> None:
        size = os.fstat(self._fd).st_size
        need = (self.end if end is None else end) + n + 16
        if size < need:
            new = max(need, size + max(_MIN_GROW, size // 4))
            new = (new + 65535) & ~65535
            try:
                os.posix_fallocate(self._fd, size, new - size)
            except OSError as e:
                if e.errno in (95, 22):  # EOPNOTSUPP/EINVAL: a file system without it
                    os.ftruncate(self._fd, new)
                else:
                    raise
            size = new
        self._map(size)

    def encode(self, typ: int, key: bytes, value: bytes) -> bytes:
        return encode(typ, key, value, self.salt)

    def pin(self) -> None:
        if not self._lease:
            self.acquire()
        self._pinned += 1

    def unpin(self) -> None:
        self._pinned -= 1

    def append_many(self, recs: list[bytes]) -> int:
        """Append encoded records with one copy; returns the first offset."""
        if not self._lease:
            self.acquire()
        blob = b"".join(recs)
        n = len(blob)
        pos = self.end
        if pos + n + 16 > self._maplen:
            self._grow(n)
        self._mm.write(blob)
        self.end = pos + n
        if self.sync_on_write:
            os.fdatasync(self._fd)
        return pos

    def append_parts(self, tf: int, key: bytes, parts: list) -> int:
        """Append one record whose value is the concatenation of ``parts``
        (buffers), without joining them: one copy into the map, one CRC pass."""
        if not self._lease:
            self.acquire()
        views = [_bytes_view(p) for p in parts]
        vlen = sum(len(v) for v in views)
        klen = len(key)
        hc = crc32(key, crc32(REC_HEAD.pack(MARKER, tf, klen, vlen), self.salt))
        n = 12 + klen + vlen + 4
        pos = self.end
        head = [REC_PREFIX.pack(MARKER, tf, klen, vlen, hc), key]
        if n >= (1 << 20):
            # Large: pwrite in 4 MiB pieces (see _WRITE_PIECE), while a
            # thread computes the body CRC (zlib.crc32 and os.pwrite both
            # release the GIL): the CRC pass hides behind the copy into the
            # page cache.  The CRC trailer is written last, only once both are
            # done, so a crash before it leaves a torn tail as before.
            if pos + n + 16 > self._maplen:
                # Allocate first: writing into allocated blocks is faster
                # than extending the file piece by piece.
                self._grow(0, end=pos + n)
            crc = _crc_pool().submit(_crc_chain, views, hc)
            at = pos
            try:
                for buf in [*head, *views]:
                    mv = memoryview(buf).cast("B") if not isinstance(buf, bytes) else memoryview(buf)
                    for s in range(0, len(mv), _WRITE_PIECE):
                        piece = mv[s:s + _WRITE_PIECE]
                        done = os.pwrite(self._fd, piece, at)
                        while done < len(piece):  # a short write: finish it
                            done += os.pwrite(self._fd, piece[done:], at + done)
                        at += len(piece)
            finally:
                bc = crc.result()
            os.pwrite(self._fd, U32.pack(bc), at)
            self._set_end(pos + n)
            # Its CRC was just computed from the very bytes written: reading
            # it back through this handle need not check it again.
            self.verified.add(pos)
        else:
            bc = _crc_chain(views, hc)
            if pos + n + 16 > self._maplen:
                self._grow(n)
            mm = self._mm
            for b in [*head, *views, U32.pack(bc)]:
                mm.write(b)
            self.end = pos + n
        if self.sync_on_write:
            os.fdatasync(self._fd)
        return pos

    def append_records(self, tf: int, recs: list[tuple[bytes, tuple]],
                       commit_last: bool = False) -> list[int]:
        """Append records of type ``tf`` whose values are tuples of buffers,
        writing each buffer straight into the map.  With ``commit_last`` the
        last record is written as a Commit.  Returns the offsets."""
        if not self._lease:
            self.acquire()
        salt = self.salt
        prepared = []
        total = 0
        for i, (key, parts) in enumerate(recs):
            t = T_COMMIT if commit_last and i == len(recs) - 1 else tf
            # Any C-contiguous buffer (bytes, a NumPy row) is checksummed
            # and written as it is: no memoryview, no copy.
            vlen = 0
            for p in parts:
                n = getattr(p, "nbytes", None)
                vlen += len(p) if n is None else n
            klen = len(key)
            hc = crc32(key, crc32(REC_HEAD.pack(MARKER, t, klen, vlen), salt))
            bc = hc
            for p in parts:
                bc = crc32(p, bc)
            prepared.append((REC_PREFIX.pack(MARKER, t, klen, vlen, hc), key, parts,
                             U32.pack(bc), 16 + klen + vlen))
            total += 16 + klen + vlen
        pos = self.end
        if pos + total + 16 > self._maplen:
            self._grow(total)
        write = self._mm.write
        offsets = []
        for head, key, parts, tail, size in prepared:
            offsets.append(pos)
            write(head)
            write(key)
            for p in parts:
                write(p)
            write(tail)
            pos += size
        self.end = pos
        if self.sync_on_write:
            os.fdatasync(self._fd)
        return offsets

    def keys_written(self, start: int, end: int) -> set[str]:
        """Keys of the value and delete records in [start, end)."""
        found: set[str] = set()

        def note(pos: int, rec) -> None:
            if rec[0]:
                found.add(rec[0].decode("utf-8", "replace"))

        self._scan(start, end, note, resync=False)
        return found

    # ---------------------------------------------------------------- reads
    def read_value(self, off: int) -> tuple[int, bytes]:
        """(flags|type, value bytes) of the record at off, CRC-checked."""
        rec = self._parse(off, self._maplen)
        if rec is None or rec[4]:
            raise errors.ChecksumError(
                f"damaged record at offset {off} of {self.path!r}", path=self.path,
                offset=off)
        tf, vstart, vend = rec[1], rec[2], rec[3]
        raw = self._mm[vstart:vend]
        if tf & F_LZ4:
            raw = decompress(raw)
        return tf, raw

    # ------------------------------------------------------------- durable
    def sync(self) -> None:
        if not self.read_only and self._mm is not None:
            os.fsync(self._fd)

    def checkpoint(self) -> None:
        """Write a snapshot of the index and point the header at it."""
        if self.read_only:
            return
        if self.index.journal is not None:
            raise errors.InvalidArgument("cannot checkpoint inside a batch")
        self.pin()
        try:
            off = self.end
            body = self.index.snapshot(off)
            rec = self.encode(T_CHECKPOINT, b"", body)
            self.append(rec)
            os.fsync(self._fd)  # the snapshot must be durable before the header names it
            seq = self.header.checkpoint_seq + 1
            self._mm[CKPT_AT:CKPT_AT + 24] = checkpoint_slot(off, seq)
            self.header.checkpoint_offset = off
            self.header.checkpoint_seq = seq
            os.fsync(self._fd)
            self._tail_start = self.end
        finally:
            self.unpin()

    def close(self, *, checkpoint_min_bytes: int = 256 << 10) -> None:
        if self.closed:
            return
        try:
            if not self.read_only and self._mm is not None:
                if (self.end - self._tail_start >= checkpoint_min_bytes and not self._pending
                        and self.index.journal is None):
                    try:
                        # Never make close wait on a busy writer: the next
                        # open just replays a longer tail.
                        self.acquire(timeout_s=0.0)
                        self.checkpoint()
                    except errors.LockTimeout:
                        pass  # another writer is busy; the next open replays more
                # Always: the keeper may have given up our lease after writes.
                os.fsync(self._fd)
        finally:
            self.closed = True
            self._drop_lease()
            mm, self._mm = self._mm, None
            if mm is not None:
                try:
                    mm.close()
                except BufferError:
                    pass  # someone still holds a view; the map dies with it
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            _OPEN_LOGS.discard(self)

    def _forked(self) -> None:
        self._lease = False
        self._pinned = 0
        self.mutex = threading.RLock()
        if self._fd < 0 or self.closed:
            return
        # The inherited descriptor (and the map's duplicate of it) share the
        # parent's open file description, and with it the parent's flock:
        # drop both, or a dead parent's lock lives on in this child.
        old_fd, old_mm = self._fd, self._mm
        try:
            self._fd = os.open(self.path, (os.O_RDONLY if self.read_only else os.O_RDWR)
                               | os.O_CLOEXEC)
            self._map(max(self._maplen, 1))
        except OSError:
            self._fd, self._mm = old_fd, old_mm
            return
        try:
            old_mm.close()
        except BufferError:
            pass
        os.close(old_fd)

    def __del__(self) -> None:
        # A handle that was never closed: free the descriptor (and so the
        # lock) without writing anything.
        try:
            if not self.closed:
                self.closed = True
                self._mm = None
                if self._fd >= 0:
                    os.close(self._fd)
        except Exception:
            pass

    def stat_size(self) -> int:
        return os.fstat(self._fd).st_size


_CRC_POOL = None


def _crc_pool():
    global _CRC_POOL
    if _CRC_POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _CRC_POOL = ThreadPoolExecutor(1, thread_name_prefix="synadb-crc")
    return _CRC_POOL


def _crc_chain(views, seed: int) -> int:
    for v in views:
        seed = crc32(v, seed)
    return seed


def _bytes_view(buf) -> memoryview:
    v = memoryview(buf)
    if v.nbytes == 0:
        return memoryview(b"")
    return v if v.format == "B" and v.ndim == 1 else v.cast("B")


def _nonzero(mm: mmap.mmap, start: int, end: int) -> bool:
    step = 1 << 20
    zero = bytes(step)
    pos = start
    while pos < end:
        chunk = mm[pos:min(end, pos + step)]
        if chunk != zero[:len(chunk)]:
            return True
        pos += step
    return False


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
