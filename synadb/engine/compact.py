"""Compaction and verification.

Compaction copies every live key's history into a new file next to the old
one (only the latest value of a key whose latest value is latest-only, see
format.F_LATEST, or of every key without ``keep_history``), fsyncs it,
renames it over the old path, and fsyncs the folder: the path always names
either the whole old file or the whole new one.  Then it appends a T_MOVED
record to the old file, so that handles still following it (readers in other
processes, writers waiting for its lock) reopen the path.

Every step can fail (EIO, ENOSPC, a kill).  Before the rename a failure
removes the temp file and changes nothing else.  After it, the handle never
writes into the old file again: it writes the Moved record into space it
reserved before the rename (so that record cannot fail for want of space),
then follows the path to the new file, or becomes broken (every call says
to reopen).  A compactor killed between the rename and the Moved record
leaves handles that notice the path's new inode (see Log.refresh).
"""

from __future__ import annotations

import errno
import mmap
import os
import random
from dataclasses import dataclass, field

from .. import errors
from . import lock
from .files import copy_mode, fsync_dir, raise_storage
from .format import (
    CKPT_AT,
    F_BATCH,
    HEADER_SIZE,
    POS_MASK,
    T_BYTES,
    T_CHECKPOINT,
    T_FLOAT,
    T_FLOATS,
    Header,
    check_header,
    encode,
    new_header,
    slot,
)
from .index import Index
from .log import T_DAMAGED, Damage, Log, Scanner, encode_floats

_RUN = 1 << 16  # float values per block record in a compacted file
_FLUSH = 4 << 20


class _Out:
    """Buffered writes to a descriptor, with os.write (so every I/O call is
    one the fault-injection tests can see)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0  # the file offset of the next byte

    def write(self, b: bytes) -> None:
        self.buf += b
        self.pos += len(b)
        if len(self.buf) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        view = memoryview(self.buf)
        while view:
            view = view[os.write(self.fd, view):]
        self.buf = bytearray()


def compact(log: Log, *, keep_history: bool = True, progress: bool = True) -> int:
    """Rewrite ``log``'s file with only live data; returns bytes saved.

    ``keep_history``: copy every value of each live key, except for keys
    whose latest value is latest-only (F_LATEST): those keep that value only.
    """
    import numpy as np
    from tqdm.auto import tqdm

    log.pin()
    try:
        log.refresh()
        index = log.index
        keys = index.live_keys()
        salt = random.getrandbits(32)
        tmp = f"{log.path}.compact-{os.getpid()}.tmp"
        new = Index()
        fd = -1
        try:
            old_size = log.stat_size()
            _remove_stale_temps(log.path)
            # Read-write: after the rename this descriptor becomes the handle's.
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            out = _Out(fd)
            out.write(bytes(new_header(salt)))
            bar = tqdm(keys, desc="compact", unit="key", delay=0.5,
                       disable=None if progress else True, leave=False)
            for key in bar:
                h = index.history(key)
                kb = key.encode("utf-8")
                n = len(h.typ)
                i = 0 if keep_history else n - 1
                if i < n - 1 and h.typ[-1] == T_BYTES and log.latest_only(h.off[-1]):
                    # The latest value is latest-only: its writer said the
                    # values it replaces are garbage (a large value re-put
                    # under one key must not keep every old copy), whatever
                    # keep_history says.  If that value turns out damaged
                    # since it was indexed, the history is copied as for any
                    # key, so that the key keeps what can still be read.
                    got = log.stored_value(h.off[-1])
                    if got is not None:
                        new.append(key, T_BYTES, out.pos, h.val[-1])
                        out.write(encode(got[0] & ~F_BATCH, kb, got[1], salt, out.pos,
                                         POS_MASK))
                        continue
                while i < n:
                    t = h.typ[i]
                    if t == T_DAMAGED:  # never copy damage forward
                        i += 1
                        continue
                    if t == T_FLOAT:
                        j = i
                        while j < n and j - i < _RUN and h.typ[j] == T_FLOAT:
                            j += 1
                        vals = np.frombuffer(h.val, dtype=np.float64)[i:j]
                        flags, raw = encode_floats(vals, True, True)
                        new.append_block(key, out.pos, vals)
                        out.write(encode(T_FLOATS | flags, kb, raw, salt, out.pos, POS_MASK))
                        i = j
                        continue
                    got = log.stored_value(h.off[i])
                    if got is not None:  # else damaged since it was indexed
                        new.append(key, t, out.pos, h.val[i])
                        out.write(encode(got[0] & ~F_BATCH, kb, got[1], salt, out.pos,
                                         POS_MASK))
                    i += 1
            bar.close()
            ckpt = out.pos
            out.write(encode(T_CHECKPOINT, b"", new.snapshot(ckpt), salt, ckpt, POS_MASK))
            out.flush()
            # The header names the checkpoint and says everything is synced;
            # both are true once the fsync below returns, before the rename.
            _pwrite_all(fd, slot(ckpt, out.pos, 1), CKPT_AT)
            copy_mode(log.path, fd)
            os.fsync(fd)
            # Lock the new file before it has a name anyone can open: no
            # other writer may write to it before its rename is durable
            # (the folder fsync below), or a failed folder fsync could lose
            # what that writer was told was synced.
            if not lock.try_lock(fd):
                raise errors.LockTimeout(f"could not lock the new file {tmp!r}")
            # The Moved record must not fail after the rename: make room now.
            log.reserve(16)
            log.mark_replacing(True)
            os.replace(tmp, log.path)
        except BaseException as e:
            log.mark_replacing(False)
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError) and not isinstance(e, errors.SynaError):
                raise_storage(e, "compact", log.path)
            raise
        # Swapped: the path names the new file.  Whatever fails now, this
        # handle must end up on the new file or refuse to work.
        dir_error: OSError | None = None
        try:
            fsync_dir(log.path)
        except OSError as e:
            dir_error = e
        log.mark_moved()
        log.follow(fd)  # the handle takes the new file's descriptor, locked
        if dir_error is not None:
            # The rename may not survive a power cut (the old file, with the
            # same data, would be back).  Like any failed fsync: report it
            # and refuse further writes through this handle.
            err = errors.DurabilityError(
                dir_error.errno or errno.EIO,
                f"compaction replaced {log.path!r}, but fsync of its folder failed "
                f"({dir_error.strerror}); after a power cut the old file may be back. "
                "This handle refuses writes: open the database again", log.path)
            err.durable_end = log.end
            log.failed = err
            log.release()
            raise err from dir_error
        return max(0, old_size - log.stat_size())
    finally:
        log.unpin()


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    done = os.pwrite(fd, data, at)
    while done < len(data):
        done += os.pwrite(fd, data[done:], at + done)


def _remove_stale_temps(path: str) -> None:
    # We hold the write lock, and compaction only runs under it: any temp
    # file of an earlier compaction belongs to one that died.
    folder, name = os.path.split(path)
    for entry in os.listdir(folder or "."):
        if entry.startswith(name + ".compact-") and entry.endswith(".tmp"):
            try:
                os.unlink(os.path.join(folder, entry))
            except OSError:
                pass


@dataclass
class VerifyReport:
    """What :meth:`SynaDB.verify` found."""

    path: str
    records: int
    file_size: int
    end_offset: int
    damaged: list[Damage] = field(default_factory=list)
    torn_tail_bytes: int = 0
    # Problems with derived records (the checkpoint, a component's cache):
    # opening works around them by replaying the log, but they are damage.
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.torn_tail_bytes and not self.notes

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.records} records, {'OK' if self.ok else 'DAMAGED'}"]
        for d in self.damaged:
            who = f" (key {d.key!r})" if d.key else ""
            lines.append(f"  offset {d.offset}, {d.length} bytes: {d.reason}{who}")
        lines += [f"  {note}" for note in self.notes]
        if self.torn_tail_bytes:
            lines.append(f"  torn tail: {self.torn_tail_bytes} bytes after offset "
                         f"{self.end_offset} are not records")
        return "\n".join(lines)


def verify_file(path: str) -> VerifyReport:
    """Scan every record of the file at ``path``; report damage."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise_storage(e, "verify", path)
    try:
        size = os.fstat(fd).st_size
        raw = os.pread(fd, HEADER_SIZE, 0)
        problem = check_header(raw)
        if problem is not None:
            raise errors.NotASynaFile(f"{path!r}: {problem}")
        head = Header(raw)
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        try:
            sc = Scanner(mm, head.salt, POS_MASK if head.seeded else 0)
            st = sc.scan(HEADER_SIZE, size, lambda pos, rec: None,
                         min(head.synced_end, size), tail=True)
            notes = _checkpoint_notes(sc, head, size)
        finally:
            mm.close()
    except OSError as e:
        raise_storage(e, "verify", path)
    finally:
        os.close(fd)
    return VerifyReport(path=path, records=st.records, file_size=size, end_offset=st.end,
                        damaged=st.damaged, torn_tail_bytes=st.garbage_bytes, notes=notes)


def _checkpoint_notes(sc: Scanner, head: Header, size: int) -> list[str]:
    """Why the checkpoint the header names cannot be used, if it cannot."""
    if not head.slot_ok:
        return ["the header's checkpoint slot is damaged (opens replay the whole log)"]
    try:
        sc.load_checkpoint(head.checkpoint_offset, size)
    except ValueError as e:
        return [f"{e}; opens replay the whole log"]
    return []
