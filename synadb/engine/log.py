"""The log file: open, append, scan, recover, checkpoint, follow.

Every record reaches the file through this module (``Log.append*``): it is
the one place that builds record bytes at an offset, grows the file, syncs,
and decides what a crash left behind (see ``Scanner._scan`` and FORMAT.md
section 4).

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
import stat
import struct
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from .. import errors
from . import lock as _lock
from .files import check_path, fsync_dir, raise_storage
from .format import (
    CKPT_AT,
    F_BATCH,
    F_LATEST,
    POS_MASK,
    F_LZ4,
    F_XOR,
    HEADER_SIZE,
    LOCK_REQUEST_AT,
    MARKER,
    REPLACING_AT,
    UNKNOWN_END,
    READ_VERSION,
    REC_HEAD,
    REC_PREFIX,
    U32,
    T_ABORT,
    T_BYTES,
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
    crc32,
    slot_ok,
    encode,
    float_record_packer,
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
_pack_u32 = U32.pack
_KV_LEN = struct.Struct("<xxHI")
_monotonic = time.monotonic

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
    """Parses and walks the records of a mapped file; no state beyond that.

    ``pmask`` is POS_MASK for a format-2 file (body CRCs seeded with the
    record's offset) and 0 for format 1.
    """

    _mm: mmap.mmap | None
    salt: int
    pmask: int

    def __init__(self, mm: mmap.mmap, salt: int, pmask: int = POS_MASK) -> None:
        self._mm = mm
        self.salt = salt
        self.pmask = pmask

    # ---------------------------------------------------------------- parse
    def parse(self, pos: int, limit: int):
        """Parse the record at pos.

        Returns (key bytes, type|flags, vstart, vend, body_bad, next) when a
        record with a good head starts there (``body_bad``: its value failed
        its CRC), or None when nothing trustworthy starts there.
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
        seed = hc ^ (pos & self.pmask)
        if vlen > 65536:
            with memoryview(mm) as mv:
                body_bad = crc32(mv[vstart:vend], seed) != bc
        else:
            body_bad = crc32(mm[vstart:vend], seed) != bc
        return mm[pos + 12:vstart], tf, vstart, vend, body_bad, nxt

    def head_flags(self, pos: int, limit: int) -> int | None:
        """The type|flags byte of the record at ``pos`` if its head (and so
        that byte) passes its CRC, else None.  Unlike :meth:`parse` it never
        reads the value: deciding what to copy of a 1 GB value costs no CRC
        pass over it."""
        mm = self._mm
        if pos + 16 > limit or mm[pos] != MARKER:
            return None
        _, tf, klen, vlen, hc = REC_PREFIX.unpack_from(mm, pos)
        if pos + 16 + klen + vlen > limit:
            return None
        if crc32(mm[pos + 12:pos + 12 + klen], crc32(mm[pos:pos + 8], self.salt)) != hc:
            return None
        return tf

    def scan(self, pos: int, limit: int, apply, durable: int, *, tail: bool = False) -> ScanStats:
        """Walk records from pos, calling apply(pos, rec) for each good one.

        The recovery rule (FORMAT.md section 4).  ``durable`` is the synced
        end: every byte before it was fsynced, so a bad record there with
        good records after it (before ``durable``) is real damage, reported
        (a value that fails its CRC is applied as damaged, so reading it
        raises ChecksumError; an unreadable head is skipped to the next good
        record).  At or after ``durable`` the first record that is not
        wholly good ends the log: under power loss the pages after the last
        sync reach the disk in any order, so good records beyond a bad one
        may follow a hole, and adopting them would give a key a history with
        a middle missing, or a batch half of its records.  For a live
        follower, the first bad record there is simply one still being
        written.  ``tail``: also look for non-zero bytes after the end.
        """
        st = ScanStats()
        parse = self.parse
        while True:
            rec = parse(pos, limit)
            if rec is not None and not rec[4]:
                st.records += 1
                if rec[1] & TYPE_MASK == T_MOVED:
                    st.moved = True
                    pos = rec[5]
                    break
                apply(pos, rec)
                pos = rec[5]
                continue
            bound = min(limit, durable)
            nxt = -1
            if pos < bound:
                nxt = self._resync(rec[5] if rec is not None else pos + 1, bound)
            if nxt < 0:
                # The end of the log: at or past the synced end this is the
                # unsynced tail; before it, with nothing good after, the file
                # was cut short (a truncated copy) and it is a tail all the same.
                if tail and pos < limit and _nonzero(self._mm, pos, limit):
                    st.garbage_bytes = limit - pos
                break
            # Inside the synced part, with good records after: damage.
            if rec is not None:
                try:
                    key = rec[0].decode("utf-8")
                except UnicodeDecodeError:
                    key = None
                st.damaged.append(Damage(pos, rec[5] - pos, "value CRC mismatch", key))
                st.records += 1
                apply(pos, rec)
                pos = rec[5]
                continue
            st.damaged.append(Damage(pos, nxt - pos, "unreadable record header"))
            pos = nxt
        st.end = pos
        return st

    def load_checkpoint(self, off: int, limit: int) -> tuple[Index, int]:
        """The index snapshot in the checkpoint record at ``off`` and the
        offset after it; ValueError saying why it cannot be used (the
        checkpoint is a cache: the caller replays the log instead)."""
        if not off:
            return Index(), HEADER_SIZE
        rec = self.parse(off, limit) if HEADER_SIZE <= off < limit else None
        if rec is None or rec[4] or rec[1] & TYPE_MASK != T_CHECKPOINT:
            raise ValueError(f"the checkpoint at offset {off} is damaged")
        try:
            value = self._mm[rec[2]:rec[3]]
            if rec[1] & F_LZ4:
                value = decompress(value)
            index, covered = Index.from_snapshot(value)
        except (ValueError, struct.error, UnicodeDecodeError, MemoryError) as e:
            raise ValueError(f"the checkpoint at offset {off} does not load ({e})") from e
        except Exception as e:  # lz4's own error type
            if type(e).__module__.split(".")[0] != "lz4":
                raise
            raise ValueError(f"the checkpoint at offset {off} does not decompress") from e
        if covered != off:
            raise ValueError(f"the checkpoint at offset {off} covers offset {covered}")
        return index, rec[5]

    def _resync(self, pos: int, limit: int) -> int:
        """The next offset in [pos, limit) where a wholly good record starts.

        Wholly good: head and body CRC, the body seeded with the offset, so
        a copy of an older version of this file stored as a value (same
        salt) never qualifies: its records sit at other offsets.
        """
        find = self._mm.find
        parse = self.parse
        while True:
            pos = find(_MARKER_BYTE, pos, limit)
            if pos < 0:
                return -1
            rec = parse(pos, self._maplen_for_resync())
            if rec is not None and not rec[4]:
                return pos
            pos += 1

    def _maplen_for_resync(self) -> int:
        return len(self._mm)


class Log(Scanner):
    """One open synadb file: the map, the index, the write lease.

    Failure states: ``failed`` (an fsync failed: reads go on, every write
    raises DurabilityError) and ``broken`` (the handle could not follow the
    file its path names after a compaction: every call raises ClosedError
    telling the caller to reopen).
    """

    def __init__(self, path: str, *, read_only: bool = False, sync_on_write: bool = False,
                 lock_timeout_s: float = 10.0) -> None:
        path = check_path(path)
        # realpath: compaction renames over the real file, never over a symlink.
        try:
            self.path = os.path.realpath(path, strict=False)
        except OSError as e:  # a loop of symlinks
            raise_storage(e, "open", path)
        self.read_only = read_only
        self.sync_on_write = sync_on_write
        self.lock_timeout_s = check_timeout(lock_timeout_s)
        self.mutex = threading.RLock()
        self.closed = True
        self.failed: errors.DurabilityError | None = None
        self.broken: errors.SynaError | None = None
        self.leased = False  # holds the write lease (the file lock) now
        self._pinned = 0  # >0: a batch or compaction needs the lease kept
        self._end_seen = -1  # the keeper's last look at self.end (idle detection)
        self._tail_start = HEADER_SIZE  # where the log after the last checkpoint starts
        self._lease_since = 0.0
        self._yield_until = 0.0
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._maplen = 0
        self._pending: list[tuple] = []  # batch records seen but not yet committed
        self._relock_timeout: float | None = None  # see _reopen
        self._open()
        _OPEN_LOGS.add(self)

    # ------------------------------------------------------------------ open
    def _open(self) -> None:
        path = self.path
        check_path(path)
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            raise errors.InvalidPath(f"the folder of {path!r} does not exist")
        # O_NONBLOCK: if a FIFO appears at the path after the check above,
        # opening it must not block; on a regular file the flag does nothing.
        flags = os.O_CLOEXEC | os.O_NONBLOCK
        try:
            if self.read_only:
                fd = os.open(path, os.O_RDONLY | flags)
            else:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except FileNotFoundError:
            if self.read_only:
                raise errors.DatabaseNotFound(f"no database at {path!r}") from None
            raise errors.InvalidPath(f"the folder of {path!r} does not exist") from None
        except OSError as e:
            raise_storage(e, "open", path)
        try:
            self._init_from_fd(fd)
        except OSError as e:
            os.close(fd)
            raise_storage(e, "open", path)
        except BaseException:
            os.close(fd)
            raise
        self.closed = False

    def _init_from_fd(self, fd: int) -> None:
        self._fd = fd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise errors.NotADatabase(f"{self.path!r} is not a regular file; it was not read")
        size = st.st_size
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
                    _pwrite_all(fd, bytes(new_header(random.getrandbits(32))), 0)
                    os.fsync(fd)
                    fsync_dir(self.path)
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
        self.pmask = POS_MASK if self.header.seeded else 0
        self.new_float: dict[int, tuple] = {}  # key length -> float_record_packer()
        self.verified: set[int] = set()  # offsets of large records whose CRC this handle checked
        self._map(size)
        self.index, start = self._load_checkpoint()
        self._pending = []
        # Looking for non-zero bytes after the end reads the file's whole
        # reserved tail (up to a quarter of its size): only a writer needs
        # to know, to zero a torn tail before it appends (_recover_tail
        # looks again when it takes the lease).
        self.stats = self.scan(start, self._maplen, self._apply, self._durable_bound(),
                               tail=not self.read_only)
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
        elif (self._garbage or self.header.seeded and self.header.synced_end > self.end) \
                and not self.read_only and not self.leased:
            # A torn tail from a crash: cut it now if no writer is busy (if
            # one is, whoever writes next cuts it under the lock).
            try:
                self.acquire(timeout_s=0.0)
            except errors.LockTimeout:
                pass
            else:
                self._drop_lease()

    def _maplen_for_resync(self) -> int:
        return self._maplen

    def _durable_bound(self) -> int:
        """The synced end as the header says now (other writers move it)."""
        h = self.header
        if self._mm is not None and self._maplen >= HEADER_SIZE:
            raw = self._mm[CKPT_AT:CKPT_AT + 24]
            if slot_ok(raw):  # not one read while a writer rewrites it
                before = h.synced_end if h.synced_end < UNKNOWN_END else 0
                h.read_slot(raw)
                h.synced_end = max(h.synced_end, before)
        return min(h.synced_end, self._maplen)

    def _follow_bound(self) -> int:
        """The synced end for walking new records: with none known (format
        1, a torn slot), the first bad record ends the walk for now, as it
        is one still being written (never a search of the rest of the map)."""
        d = self._durable_bound()
        return d if self.header.synced_end < UNKNOWN_END else self.end

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
        try:
            return self.load_checkpoint(self.header.checkpoint_offset, self._maplen)
        except ValueError:
            return Index(), HEADER_SIZE  # a bad checkpoint only costs a full replay

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
            try:
                vals = decode_floats(tf, self._mm[vstart:vend])
            except Exception:  # CRC-valid but undecodable: report it as damage
                index.append(key, T_DAMAGED, pos, _NAN)
                return
            index.append_block(key, pos, vals)
        else:
            index.append(key, typ, pos, _NAN)

    # --------------------------------------------------------------- follow
    def refresh(self) -> None:
        """Take in records other handles appended since we last looked."""
        end = self.end
        mm = self._mm
        if end < self._maplen and mm[end] != MARKER:
            # Nothing new.  A compactor killed between its rename and its
            # Moved record leaves no record to tell us that the path names
            # another file now, but it set the replacing byte before the
            # rename: while that byte is set, check the path.
            if mm[REPLACING_AT] and self._replaced():
                self._reopen()
            return
        self._refresh_slow()

    def _refresh_slow(self) -> None:
        # Something new, or we are at the end of our map: the file may have
        # grown past our map (a record can straddle its end).
        if self.broken is not None:
            raise self.broken
        try:
            size = os.fstat(self._fd).st_size
            if size > self._maplen:
                self._map(size)
        except OSError as e:
            raise_storage(e, "read", self.path)
        st = self.scan(self.end, self._maplen, self._apply, self._follow_bound())
        self._set_end(st.end)
        if st.moved:
            self._reopen()
        elif self._maplen - self.end < 16 and self._replaced():
            self._reopen()

    def _reopen(self, fd: int | None = None) -> None:
        """The file was compacted and replaced: follow the path to the new one.

        ``fd``: a descriptor of the new file that the caller opened and
        already holds the lock on (compaction): it becomes this handle's,
        with the lease, so that no other writer comes between.  If following
        fails, the handle is broken: it holds no descriptor of the old file
        any more (so it can never write into a file the path no longer names)
        and every later call says to reopen.
        """
        had_lease = self.leased
        self._drop_lease()
        old_fd = self._fd
        self._mm = None
        self._fd = -1
        if old_fd >= 0:
            os.close(old_fd)
        adopted = fd is not None
        try:
            if fd is None:
                try:
                    fd = os.open(self.path, (os.O_RDONLY if self.read_only else os.O_RDWR)
                                 | os.O_CLOEXEC | os.O_NONBLOCK)
                except OSError as e:
                    raise_storage(e, "reopen", self.path)
            if adopted:
                self.leased = True  # the caller's lock on fd
            try:
                self._init_from_fd(fd)
            except OSError as e:
                self.leased = False
                self._fd = -1
                os.close(fd)
                raise_storage(e, "reopen", self.path)
            except BaseException:
                self.leased = False
                self._fd = -1
                os.close(fd)
                raise
        except errors.SynaError as e:
            self._fd = -1  # closed above; never close a descriptor number twice
            self.broken = errors.ClosedError(
                f"{self.path!r} was replaced by compaction and this handle could not "
                f"follow it ({e}); open the database again")
            self.broken.__cause__ = e
            self._mm = None
            self._maplen = 0
            raise self.broken from e
        if adopted:
            self._lease_since = time.monotonic()
            _lock.KEEPER.register(self)
        elif had_lease:
            # Within acquire(timeout_s=...), keep to the caller's timeout:
            # close() and sync() never wait on a busy writer.
            self.acquire(self._relock_timeout)

    # ---------------------------------------------------------------- write
    def acquire(self, timeout_s: float | None = None) -> None:
        """Take the write lease (the file lock), then catch up."""
        if self.read_only:
            raise errors.ReadOnlyError(f"{self.path!r} is open read-only")
        if self.broken is not None:
            raise self.broken
        if self.failed is not None:
            raise self._refuse()
        if self.leased:
            return
        if timeout_s is None:
            timeout_s = self.lock_timeout_s
            wait = self._yield_until - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                got = _lock.lock_with_timeout(self._fd, timeout_s, self._request)
            except OSError as e:
                raise_storage(e, "lock", self.path)
            if not got:
                raise errors.LockTimeout(
                    f"another writer held the lock on {self.path!r} for more than "
                    f"lock_timeout_s={self.lock_timeout_s}")
            self.leased = True
            self._lease_since = time.monotonic()
            if self._mm[LOCK_REQUEST_AT]:
                self._mm[LOCK_REQUEST_AT] = 0
            fd = self._fd
            replaced = self._replaced()
            if self._mm[REPLACING_AT] and not replaced:
                self._mm[REPLACING_AT] = 0  # a compactor died before its rename
            if replaced:
                # A compactor died between its rename and its Moved record:
                # the path names another file now.  Follow it, and lock that
                # one with what is left of the same timeout.
                self._relock_timeout = timeout_s
                try:
                    self._reopen()
                finally:
                    self._relock_timeout = None
                if self.leased:
                    break
                continue
            self._relock_timeout = timeout_s
            try:
                self.refresh()
            finally:
                self._relock_timeout = None
            if self._fd == fd:  # not moved under us
                break
            # _reopen re-acquired on the new file already
            if self.leased:
                break
        if (self._garbage or self._mm[self.end:self.end + 1] not in (b"", b"\0")
                or self.header.seeded and self.header.synced_end > self.end):
            self._recover_tail()
        if self._pending:
            # Batch records with no commit after them, seen while we hold the
            # lock: their writer died mid-batch.  Close them with an abort so
            # that a later commit can never adopt them.
            self._pending = []
            self.append(T_ABORT, b"", b"")
        _lock.KEEPER.register(self)

    def _refuse(self) -> errors.DurabilityError:
        first = self.failed
        err = errors.DurabilityError(
            first.errno, f"an earlier fsync of {self.path!r} failed ({first.strerror}); "
            f"only what came before offset {first.durable_end} is known to be on disk. "
            "This handle refuses writes: open the database again", self.path)
        err.durable_end = first.durable_end
        return err

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except OSError:
            return False

    def _request(self) -> None:
        # Ask the holder to hand over.  A stray byte here only makes some
        # holder release its lease a little early.
        if self._mm is not None and not self._mm[LOCK_REQUEST_AT]:
            self._mm[LOCK_REQUEST_AT] = 1

    def _recover_tail(self) -> None:
        """Under the lock: cut a torn tail by zeroing it (never by truncating).

        The zeros are made durable (msync) before anything is appended over
        them: otherwise, after a second crash, records of the old lost tail
        that lie beyond our new ones could reach the disk without the zeros
        and be read as if they followed them.
        """
        size = os.fstat(self._fd).st_size
        if size > self._maplen:
            self._map(size)
        st = self.scan(self.end, self._maplen, self._apply, self._durable_bound(), tail=True)
        self._set_end(st.end)
        if st.moved:
            self._reopen()
            return
        h = self.header
        cut = h.seeded and h.synced_end > st.end
        if cut:
            # The file ends before the end the header says was synced (a
            # truncated copy): from now on only what is here counts as synced.
            h.synced_end = st.end
            self._mm[CKPT_AT:CKPT_AT + 24] = h.slot_bytes()
        if st.garbage_bytes or cut:
            self._mm[st.end:self._maplen] = bytes(self._maplen - st.end)
            try:
                self._mm.flush()
            except OSError as e:
                self._fail(e)
        self._garbage = False

    def release(self) -> None:
        with self.mutex:
            self._drop_lease()

    def _drop_lease(self) -> None:
        if self.leased:
            self.leased = False
            try:
                _lock.unlock(self._fd)
            except OSError:
                pass

    def lease_tick(self) -> bool:
        """Called by the keeper thread.  True once the lease is given up."""
        if not self.mutex.acquire(timeout=0.05):
            return False
        try:
            if not self.leased or self.closed:
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

    # The append path.  Callers hold ``mutex``; each method takes the lease
    # if needed, writes whole records at self.end, and advances it.  None of
    # them syncs: the caller updates its index first and then calls
    # settle(), so that a failed fsync leaves the handle agreeing with the
    # file (FORMAT.md section 9).
    def append(self, tf: int, key: bytes, value: bytes | bytearray | memoryview) -> int:
        """Append one record of type|flags ``tf``.  Returns its offset."""
        if not self.leased:
            self.acquire()
        pos = self.end
        rec = encode(tf, key, value, self.salt, pos, self.pmask)
        n = len(rec)
        if pos + n + 16 > self._maplen:
            self._grow(n)
        self._mm.write(rec)
        self.end = pos + n
        return pos

    def append_cached(self, pre: bytes, hc: int, vb: bytes) -> int:
        """Append a record from its cached constant start ``pre`` (header,
        head CRC, key; see format.prefix) and value: the put hot path."""
        pos = self.end
        rec = pre + vb + _pack_u32(crc32(vb, hc ^ (pos & self.pmask)))
        n = len(rec)
        if pos + n + 16 > self._maplen:
            self._grow(n)
        self._mm.write(rec)
        self.end = pos + n
        return pos

    def append_float(self, kb: bytes, vb: bytes) -> int:
        """Append a T_FLOAT record of a key not seen before: the record is
        packed in one call from a per-key-length template."""
        klen = len(kb)
        fnew = self.new_float.get(klen)
        if fnew is None:
            fnew = self.new_float[klen] = float_record_packer(klen, self.salt)
        pos = self.end
        hc = crc32(kb, fnew[0])
        rec = fnew[1](MARKER, T_FLOAT, klen, 8, hc, kb, vb, crc32(vb, hc ^ (pos & self.pmask)))
        if pos + 36 + klen > self._maplen:
            self._grow(len(rec))
        self._mm.write(rec)
        self.end = pos + len(rec)
        return pos

    def settle(self) -> None:
        """End of a write call: fdatasync it when the handle syncs every write."""
        if self.sync_on_write:
            self._sync(data_only=True)

    def _grow(self, n: int, end: int | None = None) -> None:
        try:
            size = os.fstat(self._fd).st_size
            need = (self.end if end is None else end) + n + 16
            if size < need:
                new = max(need, size + max(_MIN_GROW, size // 4))
                new = (new + 65535) & ~65535
                try:
                    os.posix_fallocate(self._fd, size, new - size)
                except OSError as e:
                    if e.errno not in (95, 22):  # EOPNOTSUPP/EINVAL: a file system without it
                        raise
                    os.ftruncate(self._fd, new)
                size = new
            self._map(size)
        except OSError as e:
            raise_storage(e, "grow", self.path)

    def pin(self) -> None:
        if not self.leased:
            self.acquire()
        self._pinned += 1

    def unpin(self) -> None:
        self._pinned -= 1

    def append_parts(self, tf: int, key: bytes, parts: list) -> int:
        """Append one record whose value is the concatenation of ``parts``
        (buffers), without joining them: one copy into the map, one CRC pass."""
        if not self.leased:
            self.acquire()
        views = [_bytes_view(p) for p in parts]
        vlen = sum(len(v) for v in views)
        klen = len(key)
        hc = crc32(key, crc32(REC_HEAD.pack(MARKER, tf, klen, vlen), self.salt))
        n = 12 + klen + vlen + 4
        pos = self.end
        seed = hc ^ (pos & self.pmask)
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
            try:
                crc = _crc_pool().submit(_crc_chain, views, seed)
            except RuntimeError:
                # At interpreter exit (a store's snapshot from an atexit
                # hook) no pool takes work any more: compute it here.
                crc = _Done(_crc_chain(views, seed))
            at = pos
            try:
                try:
                    for buf in [*head, *views]:
                        mv = memoryview(buf).cast("B") if not isinstance(buf, bytes) else memoryview(buf)
                        for s in range(0, len(mv), _WRITE_PIECE):
                            piece = mv[s:s + _WRITE_PIECE]
                            _pwrite_all(self._fd, piece, at)
                            at += len(piece)
                finally:
                    bc = crc.result()
                _pwrite_all(self._fd, _pack_u32(bc), at)
            except OSError as e:
                # Nothing after self.end counts; clear what was half-written
                # so that no later append can be read as following it.
                self._mm[pos:min(at, self._maplen)] = bytes(min(at, self._maplen) - pos)
                raise_storage(e, "write", self.path)
            self._set_end(pos + n)
            # Its CRC was just computed from the very bytes written: reading
            # it back through this handle need not check it again.
            self.verified.add(pos)
        else:
            bc = _crc_chain(views, seed)
            if pos + n + 16 > self._maplen:
                self._grow(n)
            mm = self._mm
            for b in [*head, *views, _pack_u32(bc)]:
                mm.write(b)
            self.end = pos + n
        return pos

    def append_records(self, tf: int, recs: list[tuple[bytes, tuple]],
                       commit_last: bool = False) -> list[int]:
        """Append records of type ``tf`` whose values are tuples of buffers,
        writing each buffer straight into the map.  With ``commit_last`` the
        last record is written as a Commit.  Returns the offsets."""
        if not self.leased:
            self.acquire()
        salt = self.salt
        pmask = self.pmask
        prepared = []
        pos = start = self.end
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
            bc = hc ^ (pos & pmask)
            for p in parts:
                bc = crc32(p, bc)
            prepared.append((REC_PREFIX.pack(MARKER, t, klen, vlen, hc), key, parts,
                             _pack_u32(bc), pos))
            pos += 16 + klen + vlen
        if pos + 16 > self._maplen:
            self._grow(pos - start)
        write = self._mm.write
        offsets = []
        for head, key, parts, tail, at in prepared:
            offsets.append(at)
            write(head)
            write(key)
            for p in parts:
                write(p)
            write(tail)
        self.end = pos
        return offsets

    def keys_written(self, start: int, end: int) -> set[str]:
        """Keys of the value and delete records in [start, end)."""
        found: set[str] = set()

        def note(pos: int, rec) -> None:
            if rec[0]:
                found.add(rec[0].decode("utf-8", "replace"))

        self.scan(start, end, note, self._follow_bound())
        return found

    # ---------------------------------------------------------------- reads
    def committed_end(self) -> int:
        """The offset up to which every record is committed or aborted: the
        start of a batch still open in another handle, else the end."""
        return self._pending[0][0] if self._pending else self.end

    def value_view(self, off: int, check: bool = True) -> memoryview:
        """A zero-copy, read-only view of the value of the record at ``off``
        (a copy if it is compressed).  It pins the current map, so it stays
        valid across the file growing.  ``check=False`` skips the body CRC
        for callers that verify a stronger hash themselves (the head, and so
        the length, was checked when the record was indexed)."""
        mm = self._mm
        if off in self.verified or (not check and not mm[off + 1] & F_LZ4):
            # Checked once by this handle; records never change in place.
            klen, vlen = _KV_LEN.unpack_from(mm, off)
            start = off + 12 + klen
            return memoryview(mm)[start:start + vlen].toreadonly()
        rec = self.parse(off, self._maplen)
        if rec is None or rec[4]:
            raise errors.ChecksumError(f"damaged record at offset {off} of {self.path!r}",
                                       path=self.path, offset=off)
        if rec[1] & F_LZ4:
            return memoryview(self.read_value(off)[1])
        self.verified.add(off)
        return memoryview(mm)[rec[2]:rec[3]].toreadonly()

    def _record_end(self, off: int, min_bytes: int) -> int | None:
        """The end of the record at ``off`` in the map (None: not a whole
        record there, or its value is under ``min_bytes``)."""
        if off + 12 > self._maplen:
            return None
        marker, _, klen, vlen = REC_HEAD.unpack_from(self._mm, off)
        end = off + 12 + klen + vlen + 4
        if marker != MARKER or vlen < min_bytes or end > self._maplen:
            return None
        return end

    def advise_random(self, offsets: list[int]) -> None:
        """Hint that the records at ``offsets`` will be read at random
        (single rows of a large value): no read-ahead around each fault in
        this map, so a few rows do not bring whole neighbourhoods into it."""
        mm = self._mm
        if mm is None or not hasattr(mmap, "MADV_RANDOM"):
            return
        page = mmap.PAGESIZE
        for off in offsets:
            end = self._record_end(off, 0)
            if end is None:
                continue
            lo = off // page * page
            try:
                mm.madvise(mmap.MADV_RANDOM, lo, end - lo)
            except (OSError, ValueError):
                return

    def drop_cached(self, offsets: list[int], min_bytes: int) -> None:
        """Drop the whole pages of the records at ``offsets`` (of at least
        ``min_bytes``) from this map and from the page cache: a hint."""
        mm = self._mm
        if mm is None or not hasattr(os, "posix_fadvise"):
            return
        page = mmap.PAGESIZE
        for off in offsets:
            end = self._record_end(off, min_bytes)
            if end is None:
                continue
            lo, hi = -(-off // page) * page, end // page * page  # whole pages only
            if hi <= lo:
                continue
            try:
                # Our own map's page-table entries first: the cache keeps
                # mapped pages.  For a shared file map this only unmaps; the
                # next access maps the file's bytes again.
                mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
                os.posix_fadvise(self._fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)
            except (OSError, ValueError):
                return

    def stored_value(self, off: int) -> tuple[int, bytes] | None:
        """(type|flags, value bytes as stored, still compressed) of the good
        record at ``off``, or None if it is damaged.  For compaction."""
        rec = self.parse(off, self._maplen)
        if rec is None or rec[4]:
            return None
        return rec[1], self._mm[rec[2]:rec[3]]

    def latest_only(self, off: int) -> bool:
        """Whether the record at ``off`` is a latest-only bytes value
        (F_LATEST on T_BYTES).  The mark lives only in the record, never in
        the index or its checkpoint, so a handle that loaded a checkpoint
        and one that replayed the log see the same; a record whose head is
        damaged counts as unmarked (compaction then keeps the history)."""
        tf = self.head_flags(off, self._maplen)
        return tf is not None and tf & TYPE_MASK == T_BYTES and bool(tf & F_LATEST)

    # ----------------------------------------------------------- compaction
    def reserve(self, n: int) -> None:
        """Make sure ``n`` bytes can be appended without growing the file
        (a record that must not fail for want of space)."""
        if self.end + n + 16 > self._maplen:
            self._grow(n)

    def mark_replacing(self, on: bool) -> None:
        """Set (just before compaction's rename) or clear the replacing byte,
        which tells followers to check the path at once (see refresh)."""
        self._mm[REPLACING_AT] = 1 if on else 0

    def mark_moved(self) -> None:
        """Append a Moved record in space reserved before (see reserve): the
        file was replaced at its path, and handles following it must reopen.
        Not synced: nobody opens this file after a crash, since the path
        names the new one; live handles read it from the page cache."""
        self._mm.seek(self.end)
        self._mm.write(encode(T_MOVED, b"", b"", self.salt, self.end, self.pmask))
        self.end = self._mm.tell()

    def follow(self, fd: int | None = None) -> None:
        """Reopen the path (after compaction replaced the file); see _reopen."""
        self._reopen(fd)

    def read_value(self, off: int) -> tuple[int, bytes]:
        """(flags|type, value bytes) of the record at off, CRC-checked."""
        rec = self.parse(off, self._maplen)
        if rec is None or rec[4]:
            raise errors.ChecksumError(
                f"damaged record at offset {off} of {self.path!r}", path=self.path,
                offset=off)
        tf, vstart, vend = rec[1], rec[2], rec[3]
        raw = self._mm[vstart:vend]
        if tf & F_LZ4:
            try:
                raw = decompress(raw)
            except Exception as e:
                raise errors.ChecksumError(
                    f"the record at offset {off} of {self.path!r} passes its CRC but does "
                    f"not decompress ({e})", path=self.path, offset=off) from e
        return tf, raw

    # ------------------------------------------------------------- durable
    def _sync(self, data_only: bool = False) -> None:
        """fsync (or fdatasync) the file; then, holding the lease, record the
        new synced end in the header slot.

        The slot is not fsynced itself: until the next sync it may be lost,
        which only makes recovery treat more of the file as an unsynced tail
        (never a wrong value: what a sync made durable has no bad record for
        the tail rule to stop at).  It is written after every sync all the
        same: a synced end that lags would let a flipped bit in synced
        records past it pass for a torn tail, which a writer then zeroes.
        """
        end = self.end
        try:
            if data_only:
                os.fdatasync(self._fd)
            else:
                os.fsync(self._fd)
        except OSError as e:
            self._fail(e)
        if self.leased and self.header.seeded and end > self.header.synced_end:
            self._durable_bound()  # the slot as the last writer left it
            h = self.header
            if end > h.synced_end:
                h.synced_end = end
                self._mm[CKPT_AT:CKPT_AT + 24] = h.slot_bytes()

    def _fail(self, e: OSError) -> None:
        """An fsync failed: from now on this handle refuses writes."""
        err = errors.DurabilityError(
            e.errno, f"fsync of {self.path!r} failed ({e.strerror or e}); only what came "
            f"before offset {self.header.synced_end} is known to be on disk. This handle "
            "refuses further writes: open the database again", self.path)
        err.durable_end = self.header.synced_end
        self.failed = err
        self._pinned = 0
        self._drop_lease()
        raise err from e

    def sync(self) -> None:
        if self.read_only or self._mm is None:
            return
        if self.failed is not None:
            raise self._refuse()
        if not self.leased and self.header.seeded and self.end > self.header.synced_end:
            try:  # the lease lets us record the synced end; not worth waiting for
                self.acquire(timeout_s=0.0)
            except errors.LockTimeout:
                pass
        self._sync()

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
            self.append(T_CHECKPOINT, b"", body)
            self._sync()  # the snapshot must be durable before the header names it
            h = self.header
            h.checkpoint_offset = off
            h.checkpoint_seq += 1
            h.synced_end = max(h.synced_end, self.end)
            self._mm[CKPT_AT:CKPT_AT + 24] = h.slot_bytes()
            self._sync()
            self._tail_start = self.end
        finally:
            self.unpin()

    def close(self, *, checkpoint_min_bytes: int = 256 << 10) -> None:
        """Checkpoint if worthwhile, fsync, and free everything.

        The checkpoint is a cache: if it cannot be written (a full disk, a
        busy writer) the next open replays a longer tail, so close goes on.
        A handle whose fsync failed earlier closes without syncing again
        (that failure was raised already; a retry could falsely succeed).
        A failure of close's own fsync is raised, after everything is freed.
        """
        if self.closed:
            return
        err: BaseException | None = None
        try:
            if (not self.read_only and self._mm is not None and self.failed is None
                    and self.broken is None):
                if (self.end - self._tail_start >= checkpoint_min_bytes and not self._pending
                        and self.index.journal is None):
                    try:
                        # Never make close wait on a busy writer.
                        self.acquire(timeout_s=0.0)
                        self.checkpoint()
                    except errors.DurabilityError as e:
                        err = e
                    except (errors.LockTimeout, errors.StorageError):
                        pass
                if err is None:
                    # Always: the keeper may have given up our lease after writes.
                    try:
                        self._sync()
                    except errors.DurabilityError as e:
                        err = e
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
        if err is not None:
            raise err

    def _forked(self) -> None:
        self.leased = False
        self._pinned = 0
        self.mutex = threading.RLock()
        if self._fd < 0 or self.closed:
            return
        # The inherited descriptor (and the map's duplicate of it) share the
        # parent's open file description, and with it the parent's flock:
        # drop both, or a dead parent's lock lives on in this child.
        old_fd, old_mm = self._fd, self._mm
        mode = (os.O_RDONLY if self.read_only else os.O_RDWR) | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            # A new open file description of the very file the parent had
            # (not of the path: it may name a compacted replacement by now,
            # which this handle follows through the Moved record as usual).
            try:
                fd = os.open(f"/proc/self/fd/{old_fd}", mode)
            except OSError:
                fd = os.open(self.path, mode)
                if os.fstat(fd).st_ino != os.fstat(old_fd).st_ino:
                    os.close(fd)
                    return
            self._fd = fd
            self._map(max(self._maplen, 1))
        except (OSError, ValueError):
            if self._fd != old_fd:
                os.close(self._fd)
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


def check_timeout(value: object, what: str = "lock_timeout_s") -> float:
    """A timeout in seconds: a finite number >= 0 (NaN or infinity would
    make a wait loop spin forever)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.InvalidType(f"{what} must be a number of seconds, not {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise errors.InvalidArgument(f"{what} must be finite and >= 0, not {value!r}")
    return v


def _pwrite_all(fd: int, data, at: int) -> None:
    done = os.pwrite(fd, data, at)
    while done < len(data):  # a short write: finish it
        done += os.pwrite(fd, data[done:], at + done)


_CRC_POOL = None


class _Done:
    """A finished future's face, for a value computed inline."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def result(self) -> int:
        return self.value


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


_fsync_dir = fsync_dir  # for callers of the older name
