"""Compaction and verification.

Compaction copies every live key's history into a new file next to the old
one, fsyncs it, renames it over the old path, and fsyncs the folder: the
path always names either the whole old file or the whole new one.  Then it
appends a T_MOVED record to the old file, so that handles still following it
(readers in other processes, writers waiting for its lock) reopen the path.
"""

from __future__ import annotations

import mmap
import os
import random
import stat

from .. import errors
from .format import (
    F_BATCH,
    HEADER_SIZE,
    T_CHECKPOINT,
    T_FLOAT,
    T_FLOATS,
    T_MOVED,
    CKPT_AT,
    Header,
    check_header,
    checkpoint_slot,
    encode,
    new_header,
)
from .index import Index
from .log import T_DAMAGED, Log, Scanner, _fsync_dir, encode_floats

_RUN = 1 << 16  # float values per block record in a compacted file


def compact(log: Log, *, keep_history: bool = True, progress: bool = True) -> int:
    """Rewrite ``log``'s file with only live data; returns bytes saved."""
    import numpy as np
    from tqdm.auto import tqdm

    log.pin()
    try:
        log.refresh()
        old_size = log.stat_size()
        index = log.index
        keys = index.live_keys()
        salt = random.getrandbits(32)
        _remove_stale_temps(log.path)
        tmp = f"{log.path}.compact-{os.getpid()}.tmp"
        new = Index()
        try:
            with open(tmp, "wb") as f:
                f.write(new_header(salt))
                pos = HEADER_SIZE
                bar = tqdm(keys, desc="compact", unit="key", delay=0.5,
                           disable=None if progress else True, leave=False)
                for key in bar:
                    h = index.history(key)
                    kb = key.encode("utf-8")
                    n = len(h.typ)
                    i = 0 if keep_history else n - 1
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
                            rec = encode(T_FLOATS | flags, kb, raw, salt)
                            f.write(rec)
                            new.append_block(key, pos, vals)
                            pos += len(rec)
                            i = j
                            continue
                        rec0 = log._parse(h.off[i], log._maplen)
                        if rec0 is None or rec0[4]:
                            i += 1  # damaged since it was indexed
                            continue
                        tf, vstart, vend = rec0[1], rec0[2], rec0[3]
                        rec = encode(tf & ~F_BATCH, kb, log._mm[vstart:vend], salt)
                        f.write(rec)
                        new.append(key, t, pos, h.val[i])
                        pos += len(rec)
                        i += 1
                bar.close()
                body = new.snapshot(pos)
                f.write(encode(T_CHECKPOINT, b"", body, salt))
                f.seek(CKPT_AT)
                f.write(checkpoint_slot(pos, 1))
                f.flush()
                _copy_owner_and_mode(log.path, f.fileno())
                os.fsync(f.fileno())
            os.replace(tmp, log.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(log.path)
        log.append(log.encode(T_MOVED, b"", b""))
        log.sync()
        log._reopen()
        return max(0, old_size - log.stat_size())
    finally:
        log.unpin()


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


def _copy_owner_and_mode(path: str, fd: int) -> None:
    st = os.stat(path)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        pass  # not ours to give away; the mode is still kept


def verify_file(path: str):
    """Scan every record of the file at ``path``; report damage."""
    from ..db import VerifyReport

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        raw = os.pread(fd, HEADER_SIZE, 0)
        problem = check_header(raw)
        if problem is not None:
            raise errors.NotASynaFile(f"{path!r}: {problem}")
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        try:
            sc = Scanner(mm, Header(raw).salt)
            st = sc._scan(HEADER_SIZE, size, lambda pos, rec: None, resync=True)
        finally:
            mm.close()
    finally:
        os.close(fd)
    return VerifyReport(path=path, records=st.records, file_size=size, end_offset=st.end,
                        damaged=st.damaged, torn_tail_bytes=st.garbage_bytes)
