"""One writer at a time: an flock on the data file, held as a short lease.

Why flock and not fcntl byte-range locks: POSIX fcntl locks belong to the
process and vanish when *any* descriptor of the file closes, so two handles
on one file in one process would silently share (and drop) each other's lock.
flock locks belong to the open file description, so each handle is its own
writer.

Why a lease: taking and dropping the lock around every put costs two
syscalls (about 2 µs here, as much as the write itself).  So a writer takes
the lock at its first write and keeps it while it keeps writing.  A keeper
thread gives it up for the writer when the writer has been idle for a tick,
or when another writer has asked for it (by setting the request byte in the
header) and the lease is older than a tick.  Readers never lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
import weakref
from typing import Protocol

TICK_S = 0.02  # idle longer than this and the lease is given up
YIELD_S = 0.01  # after a forced hand-over, wait this long before asking again


class LeaseHolder(Protocol):
    def lease_tick(self) -> bool: ...


def try_lock(fd: int, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def lock_with_timeout(fd: int, timeout_s: float, on_wait=None, shared: bool = False) -> bool:
    """Poll for the lock until ``timeout_s`` has passed; True if taken.

    ``on_wait`` is called between polls (it sets the request byte so the
    holder hands over).  Backs off from 0.5 ms to 5 ms, like SQLite's busy
    handler.
    """
    if try_lock(fd, shared):
        return True
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while True:
        if on_wait is not None:
            on_wait()
        now = time.monotonic()
        if now >= deadline:
            return try_lock(fd, shared)
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 0.005)
        if try_lock(fd, shared):
            return True


class _Keeper:
    """One daemon thread per process that ticks every lease holder."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._holders: weakref.WeakSet = weakref.WeakSet()
        self._thread: threading.Thread | None = None

    def register(self, holder: LeaseHolder) -> None:
        with self._cv:
            self._holders.add(holder)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="synadb-lease",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._holders:
                    self._cv.wait()
                holders = list(self._holders)
            time.sleep(TICK_S)
            for h in holders:
                try:
                    released = h.lease_tick()
                except Exception:  # a closed or broken handle: stop ticking it
                    released = True
                if released:
                    with self._cv:
                        self._holders.discard(h)


KEEPER = _Keeper()


def _reset_after_fork() -> None:
    # Threads do not survive fork; the child starts with a fresh keeper.
    global KEEPER
    KEEPER = _Keeper()


os.register_at_fork(after_in_child=_reset_after_fork)
