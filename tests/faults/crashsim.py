"""Crash states of a synadb workload under the page-loss model (ALICE-style).

The model (Pillai et al., "All File Systems Are Not Created Equal", OSDI
2014, restricted to what matters for one mmap'ed file and a rename):

* Dirty pages of a file reach the disk one 4 KiB page at a time, in any
  order, until an fsync/fdatasync (or a whole-map msync) of that file
  completes.  So after the crash a file holds its image as of its last
  completed sync, plus any subset of the pages that changed since, where a
  changed page may also be torn (its new bytes cut at some byte, the old
  ones after).  Pages past the synced length count as zeros (pre-allocated
  space reads as zeros).
* A rename over the database's name is durable once the folder is fsynced;
  between the two, the name may point at either file.
* A killed process keeps the page cache: the file as it is when an operation
  returns is also a crash state, and it must hold every operation that
  returned.

:class:`Recorder` runs a workload in-process with ``os.fsync``,
``os.fdatasync``, ``os.replace``/``os.rename`` and ``mmap.mmap`` wrapped;
each completed sync of a file in the database's folder snapshots that file
(read through a separate descriptor, so the bytes are the page cache's).
:func:`segments` cuts the history into stretches with one synced image and
one set of required operations, :func:`crash_states` enumerates the states
of a stretch, and :class:`Checker` opens each state and checks the oracle:
the recovered database equals the model after some prefix of the operations
at least as long as the operations that were durable, never raises anything
but ``ChecksumError`` (and that too counts as a violation here: the page
model never damages a synced byte), opens writable to the same state, takes
one more write that survives a reopen, and ``verify()`` does not raise.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import random
import stat
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import synadb

PAGE = 4096
SECTOR = 512
_INF = math.inf


# --------------------------------------------------------------- recording
@dataclass
class Event:
    kind: str  # start, sync, rsync (a range msync), rename, dirsync, opend, end
    ino: int | None
    caps: dict[int, bytes]  # content of every tracked file at this moment
    base: dict[int, int]  # inode -> id of its synced image after this event
    D: int | None  # the inode the database name durably points at
    P: int | None  # the inode a not yet durable rename made it point at


@dataclass
class Op:
    label: str
    promise: str  # "none" | "self" (durable when it returns) | "all" (all earlier ops too)
    start_ev: int
    ret_ev: int = -1
    opend_ev: int | None = None


class Recorder:
    """Runs a workload and records syncs, renames and the model's states.

    Use as a context manager around the workload; call :meth:`step` for each
    operation of the workload (the model's state after it is taken from
    ``canon()``), then :meth:`finish`.
    """

    def __init__(self, path: str, canon: Callable[[], Hashable]) -> None:
        self.path = os.path.realpath(path)
        self.folder = os.path.dirname(self.path)
        self.canon = canon
        self.readers: dict[int, int] = {}  # inode -> our own O_RDONLY descriptor
        self.roles: dict[int, str] = {}
        self.images: list[bytes] = [b""]  # synced image versions; 0: nothing synced
        self.synced: dict[int, int] = {}
        self.D: int | None = None
        self.P: int | None = None
        self.events: list[Event] = []
        self.ops: list[Op] = []
        self.states: list[Hashable] = [canon()]
        self.kills: list[tuple[int, bytes]] = []  # (ops done, the file at the path then)
        self._intern: dict[bytes, bytes] = {}
        self._saved: dict[str, Any] = {}
        self._folder_ino = os.stat(self.folder).st_ino
        self._event("start")

    # ---------------------------------------------------------- patching
    def __enter__(self) -> "Recorder":
        rec = self
        real_fsync, real_fdatasync = os.fsync, os.fdatasync
        real_replace, real_rename = os.replace, os.rename
        real_mmap = mmap.mmap
        self._saved = {"fsync": real_fsync, "fdatasync": real_fdatasync,
                       "replace": real_replace, "rename": real_rename, "mmap": real_mmap}

        def fsync(fd):
            r = real_fsync(fd)
            rec._after_sync(fd)
            return r

        def fdatasync(fd):
            r = real_fdatasync(fd)
            rec._after_sync(fd)
            return r

        def replace(src, dst, **kw):
            return rec._rename(real_replace, src, dst, kw)

        def rename(src, dst, **kw):
            return rec._rename(real_rename, src, dst, kw)

        class TrackedMmap(real_mmap):  # type: ignore[misc, valid-type]
            def __new__(cls, fileno, length, *args, **kw):
                obj = super().__new__(cls, fileno, length, *args, **kw)
                obj._rec_ino = rec._track_fd(fileno) if fileno != -1 else None
                return obj

            def __init__(self, *args, **kw) -> None:
                pass

            def flush(self, *args):
                r = super().flush(*args)
                if self._rec_ino is not None:
                    rec._after_flush(self._rec_ino, args)
                return r

        os.fsync, os.fdatasync = fsync, fdatasync
        os.replace, os.rename = replace, rename
        mmap.mmap = TrackedMmap
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync, os.fdatasync = self._saved["fsync"], self._saved["fdatasync"]
        os.replace, os.rename = self._saved["replace"], self._saved["rename"]
        mmap.mmap = self._saved["mmap"]
        for fd in self.readers.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.readers.clear()

    # ------------------------------------------------------------ events
    def _fd_target(self, fd: int) -> str | None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        if target.endswith(" (deleted)"):
            target = target[: -len(" (deleted)")]
        return target

    def _track_fd(self, fd: int) -> int | None:
        """Start following the file open as ``fd`` if it is in our folder."""
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        target = self._fd_target(fd)
        if target is None or os.path.dirname(target) != self.folder:
            return None
        ino = st.st_ino
        if ino not in self.readers:
            self.readers[ino] = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            name = os.path.basename(target)
            if target == self.path:
                n = sum(1 for r in self.roles.values() if r.startswith("db"))
                name = "db" if n == 0 else f"db#{n + 1}"
            self.roles[ino] = name
        if self.D is None and target == self.path:
            self.D = ino
        return ino

    def _read(self, ino: int) -> bytes:
        fd = self.readers[ino]
        size = os.fstat(fd).st_size
        chunks = []
        at = 0
        while at < size:
            b = os.pread(fd, size - at, at)
            if not b:
                break
            chunks.append(b)
            at += len(b)
        data = b"".join(chunks)
        return self._intern.setdefault(data, data)

    def _event(self, kind: str, ino: int | None = None) -> None:
        caps = {i: self._read(i) for i in self.readers}
        self.events.append(Event(kind, ino, caps, dict(self.synced), self.D, self.P))

    def _new_image(self, ino: int, data: bytes) -> None:
        self.images.append(data)
        self.synced[ino] = len(self.images) - 1

    def _after_sync(self, fd: Any) -> None:
        fdno = fd if isinstance(fd, int) else fd.fileno()
        try:
            st = os.fstat(fdno)
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            if st.st_ino == self._folder_ino:
                if self.P is not None:
                    self.D, self.P = self.P, None
                self._event("dirsync")
            return
        ino = self._track_fd(fdno)
        if ino is None:
            return
        self._new_image(ino, self._read(ino))
        self._event("sync", ino)

    def _after_flush(self, ino: int, args: tuple) -> None:
        if ino not in self.readers:
            return
        cur = self._read(ino)
        if not args:
            self._new_image(ino, cur)
            self._event("sync", ino)
            return
        offset = args[0]
        size = args[1] if len(args) > 1 else len(cur) - offset
        old = self.images[self.synced.get(ino, 0)]
        end = min(len(cur), offset + size)
        lo, hi = offset // PAGE * PAGE, -(-end // PAGE) * PAGE
        img = bytearray(old.ljust(max(len(old), end), b"\0"))
        img[lo:min(hi, len(cur))] = cur[lo:min(hi, len(cur))]
        self._new_image(ino, bytes(img))
        self._event("rsync", ino)

    def _rename(self, real, src, dst, kw):
        if os.path.realpath(os.path.abspath(os.fspath(dst))) != self.path:
            return real(src, dst, **kw)
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ino = os.fstat(fd).st_ino
            if ino not in self.readers:
                self.readers[ino] = os.dup(fd)
                n = sum(1 for r in self.roles.values() if r.startswith("db"))
                self.roles[ino] = f"db#{n + 1}"
        finally:
            os.close(fd)
        r = real(src, dst, **kw)
        self.P = ino
        role = self.roles[ino]
        if not role.startswith("db"):
            n = sum(1 for r in self.roles.values() if r.startswith("db"))
            self.roles[ino] = f"db#{n + 1} (renamed from {role})"
        self._event("rename", ino)
        return r

    # --------------------------------------------------------------- ops
    def step(self, label: str, fn: Callable[[], Any], update: Callable[[], None] | None = None,
             promise: str = "none") -> Any:
        """Run one operation of the workload.  ``update`` changes the model
        after the operation returned; ``promise`` is what the API promises
        about durability when it returns ("none", "self": this op is durable,
        "all": every op before it and this one are durable)."""
        op = Op(label, promise, start_ev=len(self.events))
        self.ops.append(op)
        result = fn()
        if promise != "none":
            self._event("opend")
            op.opend_ev = len(self.events) - 1
            op.ret_ev = op.opend_ev
        else:
            op.ret_ev = len(self.events)
        if update is not None:
            update()
        self.states.append(self.canon())
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = None
        if data is not None:
            self.kills.append((len(self.ops), self._intern.setdefault(data, data)))
        return result

    def finish(self) -> None:
        self._event("end")


# ---------------------------------------------------------------- segments
@dataclass
class Segment:
    ino: int
    role: str
    base: bytes
    upper: bytes
    lo: int  # the recovered state must be model[p] for lo <= p <= hi
    hi: int
    start: int  # event indices
    end: int
    base_event: str

    def describe(self, ops: list[Op]) -> str:
        def lab(n: int) -> str:
            return "nothing" if n == 0 else f"op {n - 1} ({ops[n - 1].label})"
        return (f"file {self.role}, crash between event {self.start} and {self.end}, synced "
                f"image of {len(self.base)} bytes; required at least {self.lo} ops (through "
                f"{lab(self.lo)}), at most {self.hi}")


def _durable_events(rec: Recorder, ino: int) -> list[float]:
    """For each op, the first event index from which it must survive in ``ino``."""
    syncs = [i for i, e in enumerate(rec.events) if e.kind == "sync" and e.ino == ino]
    out: list[float] = []
    next_all: list[float] = [_INF] * (len(rec.ops) + 1)
    for k in range(len(rec.ops) - 1, -1, -1):
        op = rec.ops[k]
        here = op.opend_ev if op.promise == "all" and op.opend_ev is not None else _INF
        next_all[k] = min(here, next_all[k + 1])
    for i, op in enumerate(rec.ops):
        cands = [next_all[i]]
        if op.promise == "self" and op.opend_ev is not None:
            cands.append(op.opend_ev)
        s = next((s for s in syncs if s >= op.ret_ev), None)
        if s is not None:
            cands.append(s)
        out.append(min(cands))
    return out


def segments(rec: Recorder) -> list[Segment]:
    events = rec.events
    starts = [op.start_ev for op in rec.ops]
    segs: list[Segment] = []
    for ino in list(rec.roles):
        dur = _durable_events(rec, ino)
        prefmax = [-1.0]
        for d in dur:
            prefmax.append(max(prefmax[-1], d))

        def required(j: int) -> int:
            k = 0
            while k < len(dur) and prefmax[k + 1] <= j:
                k += 1
            return k

        cur: list[Any] | None = None  # [key, start, end]

        def close(c):
            if c is None:
                return
            (ver, lo), s, e = c
            upper = events[e].caps.get(ino)
            if upper is None:
                return
            hi = sum(1 for st in starts if st <= e)
            segs.append(Segment(ino, rec.roles.get(ino, str(ino)), rec.images[ver], upper,
                                lo, max(lo, hi), s, e, events[s].kind))

        for j in range(len(events) - 1):
            ev = events[j]
            if ino not in (ev.D, ev.P):
                close(cur)
                cur = None
                continue
            key = (ev.base.get(ino, 0), required(j))
            if cur is not None and cur[0] == key:
                cur[2] = j + 1
            else:
                close(cur)
                cur = [key, j, j + 1]
        close(cur)
    return segs


# ------------------------------------------------------------ crash states
@dataclass
class CrashState:
    seg: Segment
    data: bytes
    dropped: tuple[int, ...]  # changed pages left at their synced content
    kept: tuple[int, ...]
    torn: tuple[int, int] | None = None  # (page, cut): see crash_states
    note: str = ""
    changed: int = 0  # pages that differ between the synced image and the upper state

    def describe(self) -> str:
        parts = [f"{self.changed} changed pages"]
        parts.append(f"dropped {list(self.dropped)}" if self.dropped else "none dropped")
        if self.torn:
            p, cut = self.torn
            parts.append(f"page {p} torn: bytes {-cut}.. new, before that old" if cut < 0 else
                         f"page {p} torn: {cut} bytes new, the rest old")
        if self.note:
            parts.append(self.note)
        parts.append(f"file length {len(self.data)}")
        return ", ".join(parts)


def changed_pages(base: bytes, upper: bytes) -> list[int]:
    """Pages that differ (a page past the end of a file counts as zeros)."""
    L = max(len(base), len(upper))
    bpad = base.ljust(L, b"\0")
    upad = upper.ljust(L, b"\0")
    return [p for p in range(-(-L // PAGE))
            if bpad[p * PAGE:(p + 1) * PAGE] != upad[p * PAGE:(p + 1) * PAGE]]


def crash_states(seg: Segment, rng: random.Random, *, all_upto: int, random_subsets: int,
                 torn: int) -> list[CrashState]:
    """The states of one segment, most telling first: the synced image, a
    state with a hole, everything written, then the rest."""
    base, upper = seg.base, seg.upper
    L = max(len(base), len(upper))
    bpad = base.ljust(L, b"\0")
    upad = upper.ljust(L, b"\0")
    changed = changed_pages(base, upper)
    if not changed:
        return [CrashState(seg, upper, (), (), note="no page changed")]
    n = len(changed)

    def build(subset: frozenset[int], tear: tuple[int, int] | None = None,
              length: int | None = None, note: str = "") -> CrashState:
        buf = bytearray(bpad)
        for p in subset:
            buf[p * PAGE:(p + 1) * PAGE] = upad[p * PAGE:(p + 1) * PAGE]
        if tear is not None:
            p, cut = tear
            if cut >= 0:  # the first ``cut`` bytes are new
                buf[p * PAGE:p * PAGE + cut] = upad[p * PAGE:p * PAGE + cut]
            else:  # the bytes from ``-cut`` on are new
                buf[p * PAGE - cut:(p + 1) * PAGE] = upad[p * PAGE - cut:(p + 1) * PAGE]
        size = len(upper) if length is None else length
        data = bytes(buf[:size])
        kept = tuple(sorted(subset))
        dropped = tuple(p for p in changed if p not in subset and (tear is None or p != tear[0]))
        return CrashState(seg, data, dropped, kept, tear, note, len(changed))

    out: list[CrashState] = []
    full = frozenset(changed)
    out.append(build(frozenset(), note="synced image only"))
    seen = {frozenset(), full}
    if n >= 2:
        # A hole: a later page made it, an earlier one did not.
        k = rng.randrange(1, n)
        hole = frozenset(changed[k:]) | frozenset(rng.sample(changed[:k], rng.randrange(0, k)))
        if hole not in seen:
            seen.add(hole)
            out.append(build(hole))
    out.append(build(full, note="every changed page"))
    if n <= all_upto:
        subsets = []
        for mask in range(1, (1 << n) - 1):
            s = frozenset(changed[i] for i in range(n) if mask >> i & 1)
            if s not in seen:
                subsets.append(s)
        rng.shuffle(subsets)
    else:
        subsets = [full - {p} for p in changed] + [frozenset([p]) for p in changed]
        rng.shuffle(subsets)
        for _ in range(random_subsets):
            subsets.append(frozenset(p for p in changed if rng.random() < 0.5))
    for s in subsets:
        if s not in seen:
            seen.add(s)
            out.append(build(s))
    # Torn pages: one changed page only partly written, the other changed
    # pages all new or all old.  Either its new bytes are cut at any byte
    # (the rest old), or only its later sectors are new.  512-byte sectors
    # are atomic: the header (bytes 0..64) never tears, records may tear at
    # any byte (FORMAT.md 9).
    for t in range(torn):
        p = rng.choice(changed)
        a, b = bpad[p * PAGE:(p + 1) * PAGE], upad[p * PAGE:(p + 1) * PAGE]
        diffs = [i for i in range(PAGE) if a[i] != b[i]]
        first, last = diffs[0], diffs[-1]
        lo_cut = max(first + 1, SECTOR if p == 0 else 1)
        sectors = [c for c in range(SECTOR, PAGE, SECTOR) if first < c <= last]
        others = (full - {p}) if t % 4 < 2 else frozenset()
        if t % 3 == 2 and sectors:
            out.append(build(others, (p, -rng.choice(sectors))))  # later sectors new
        elif t % 3 == 1 and sectors:
            out.append(build(others, (p, rng.choice(sectors))))  # earlier sectors new
        elif lo_cut <= last:
            out.append(build(others, (p, rng.randrange(lo_cut, last + 1))))
    # The file's new length may not have reached the disk.
    if 0 < len(base) < len(upper):
        inside = frozenset(p for p in changed if (p + 1) * PAGE <= len(base))
        out.append(build(inside, length=len(base), note="file length as synced"))
    return out


# ------------------------------------------------------------------ oracle
def canon_value(v: Any) -> Hashable:
    """A hashable, exact form of a value read back (floats bit for bit)."""
    import struct

    import numpy as np

    if v is None:
        return ("null",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, float):
        return ("f", struct.pack("<d", v))
    if isinstance(v, int):
        return ("i", v)
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return ("b", bytes(v))
    if isinstance(v, np.ndarray):
        return ("a", v.dtype.str, v.shape, v.tobytes())
    return ("?", repr(v))


class Level:
    """How a workload's data is read back: SynaDB keys, vectors, tensors, runs."""

    name = "kv"

    def open(self, path: str, writable: bool) -> Any:
        raise NotImplementedError

    def read(self, h: Any) -> Hashable:
        raise NotImplementedError

    def probe(self, h: Any) -> None:
        raise NotImplementedError

    def with_probe(self, state: Hashable) -> Hashable:
        raise NotImplementedError

    def close(self, h: Any) -> None:
        h.close()


def as_state(d: dict) -> tuple:
    return tuple(sorted(d.items()))


class KVLevel(Level):
    name = "kv"
    PROBE = "zz/probe"

    def open(self, path: str, writable: bool) -> Any:
        return synadb.SynaDB(path, read_only=not writable, lock_timeout_s=2.0)

    def read(self, db: Any) -> Hashable:
        return as_state({k: tuple(canon_value(v) for v in db.get_history(k)) for k in db.keys()})

    def probe(self, db: Any) -> None:
        db.put_text(self.PROBE, "probe")

    def with_probe(self, state: Hashable) -> Hashable:
        d = dict(state)
        d[self.PROBE] = d.get(self.PROBE, ()) + (canon_value("probe"),)
        return as_state(d)


@dataclass
class Outcome:
    ro: Hashable = None
    ro_exc: str | None = None
    ro_checksum: bool = False
    rw: Hashable = None
    rw_exc: str | None = None
    after: Hashable = None
    after_exc: str | None = None
    verify_exc: str | None = None


def _exc(e: BaseException) -> str:
    return f"{type(e).__module__}.{type(e).__qualname__}: {str(e)[:300]}"


@dataclass
class Violation:
    kind: str  # "crash" or "kill"
    where: str
    state: str
    problem: str
    found: str
    pages: int  # for sorting: the smallest examples first


class Checker:
    """Opens crash states and judges them against the model's states."""

    def __init__(self, level: Level, folder: str, states: list[Hashable],
                 op_labels: list[str]) -> None:
        self.level = level
        self.folder = folder
        self.states = states
        self.labels = op_labels
        self.index: dict[Hashable, list[int]] = {}
        for p, s in enumerate(states):
            self.index.setdefault(s, []).append(p)
        self.cache: dict[bytes, Outcome] = {}
        self.checked = 0
        self._n = 0

    def evaluate(self, data: bytes) -> Outcome:
        digest = hashlib.blake2b(data, digest_size=20).digest()
        got = self.cache.get(digest)
        if got is not None:
            return got
        self._n += 1
        self.checked += 1
        path = os.path.join(self.folder, f"state{self._n % 2}.db")
        for leftover in os.listdir(self.folder):
            try:
                os.unlink(os.path.join(self.folder, leftover))
            except OSError:
                pass
        with open(path, "wb") as f:
            f.write(data)
        out = Outcome()
        lv = self.level
        try:
            h = lv.open(path, False)
            try:
                out.ro = lv.read(h)
            finally:
                lv.close(h)
        except synadb.ChecksumError as e:
            out.ro_exc, out.ro_checksum = _exc(e), True
        except Exception as e:  # noqa: BLE001 - anything else is what we look for
            out.ro_exc = _exc(e)
        try:
            h = lv.open(path, True)
            try:
                out.rw = lv.read(h)
                lv.probe(h)
            finally:
                lv.close(h)
        except Exception as e:  # noqa: BLE001
            out.rw_exc = _exc(e)
        if out.rw_exc is None:
            try:
                h = lv.open(path, False)
                try:
                    out.after = lv.read(h)
                finally:
                    lv.close(h)
            except Exception as e:  # noqa: BLE001
                out.after_exc = _exc(e)
        try:
            with synadb.SynaDB(path, read_only=True) as db:
                db.verify()
        except Exception as e:  # noqa: BLE001
            out.verify_exc = _exc(e)
        self.cache[digest] = out
        return out

    def allowed(self, state: Hashable, lo: int, hi: int) -> bool:
        return any(lo <= p <= hi for p in self.index.get(state, ()))

    def judge(self, out: Outcome, lo: int, hi: int) -> tuple[str, Hashable] | None:
        # Each problem is "category: detail"; the category has no ": ".
        if out.ro_exc is not None:
            what = "ChecksumError on a page-model state (no synced byte is damaged)" \
                if out.ro_checksum else "read-only open or read raised"
            return f"{what}: {out.ro_exc}", None
        if not self.allowed(out.ro, lo, hi):
            return ("read-only open recovered data that is no allowed prefix of the ops: "
                    f"allowed are the model after {lo}..{hi} ops"), out.ro
        if out.rw_exc is not None:
            return f"writable open, read or probe write raised: {out.rw_exc}", None
        if not self.allowed(out.rw, lo, hi):
            return ("writable open recovered data that is no allowed prefix of the ops: "
                    f"allowed are the model after {lo}..{hi} ops"), out.rw
        if out.after_exc is not None:
            return f"reopen after the probe write raised: {out.after_exc}", None
        if out.after != self.level.with_probe(out.rw):
            before = self.index.get(out.rw, [])
            now = [p for p, s in enumerate(self.states) if self.level.with_probe(s) == out.after]
            return ("after a probe write and a reopen the file is not what the writable handle "
                    f"saw + the probe: it saw the model after {before[:3]} ops; now the file "
                    f"holds the model after {now[:3] or 'no'} ops + the probe"), \
                ("probe", out.after, self.level.with_probe(out.rw))
        if out.verify_exc is not None:
            return f"verify() raised: {out.verify_exc}", None
        return None

    def diff(self, found: Hashable, lo: int, hi: int) -> str:
        """How ``found`` differs from the nearest allowed model state."""
        if found is None:
            return ""
        if isinstance(found, tuple) and len(found) == 3 and found[0] == "probe":
            f, want = dict(found[1]), dict(found[2])
            bad = [k for k in set(f) | set(want) if f.get(k) != want.get(k)]
            lines = [f"{len(bad)} keys differ from what the writable handle saw + the probe"]
            for k in sorted(bad, key=str)[:4]:
                lines.append(f"    {k!r}: expected {_short(want.get(k))}, found {_short(f.get(k))}")
            return "\n".join(lines)
        f = dict(found)
        best = None
        for p in range(lo, hi + 1):
            m = dict(self.states[p])
            bad = [k for k in set(m) | set(f) if m.get(k) != f.get(k)]
            if best is None or len(bad) < len(best[1]):
                best = (p, bad, m)
        if best is None:
            return "no allowed prefix"
        p, bad, m = best
        lines = [f"nearest allowed prefix: {p} ops; {len(bad)} keys differ"]
        for k in sorted(bad, key=str)[:4]:
            lines.append(f"    {k!r}: expected {_short(m.get(k))}, found {_short(f.get(k))}")
        return "\n".join(lines)


def _short(v: Any) -> str:
    if v is None:
        return "absent"
    if isinstance(v, tuple) and v and all(isinstance(x, tuple) for x in v):
        vals = [_short_val(x) for x in v]
        if len(vals) > 6:
            vals = vals[:3] + ["..."] + vals[-2:]
        return f"[{len(v)} values: {', '.join(vals)}]"
    return _short_val(v)


def _short_val(x: Any) -> str:
    import struct

    if isinstance(x, tuple) and x and x[0] == "f" and len(x) == 2:
        return repr(struct.unpack("<d", x[1])[0])
    if isinstance(x, tuple) and x and x[0] in ("b", "s"):
        s = x[1]
        return repr(s[:12]) + (f"..({len(s)})" if len(s) > 12 else "")
    if isinstance(x, bytes):
        return f"<{len(x)} bytes {hashlib.md5(x).hexdigest()[:8]}>"
    r = repr(x)
    return r if len(r) < 240 else r[:237] + "..."


# ------------------------------------------------------------------ driver
@dataclass
class Report:
    states: int = 0
    kills: int = 0
    segments: int = 0
    opened: int = 0
    violations: list[Violation] = field(default_factory=list)

    def summary(self, title: str, limit: int = 4) -> str:
        lines = [f"{title}: {len(self.violations)} violations in {self.states} crash states "
                 f"({self.segments} segments) and {self.kills} kill states; "
                 f"{self.opened} distinct files opened"]
        shown = sorted(self.violations, key=lambda v: (v.kind != "kill", v.pages))
        by_problem: dict[str, int] = {}
        for v in self.violations:
            key = v.problem.split(": ")[0]
            by_problem[key] = by_problem.get(key, 0) + 1
        for k, n in sorted(by_problem.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n} x {k}")
        for v in shown[:limit]:
            lines.append(f"- [{v.kind}] {v.problem}")
            lines.append(f"    where: {v.where}")
            lines.append(f"    state: {v.state}")
            if v.found:
                lines.append("    " + v.found)
        return "\n".join(lines)


def explore(rec: Recorder, level: Level, folder: str, budget: Any, seed: int) -> Report:
    """Check the kill states and a budgeted set of crash states of ``rec``."""
    rng = random.Random(seed)
    checker = Checker(level, folder, rec.states, [op.label for op in rec.ops])
    report = Report()

    kills = list(rec.kills)
    if budget.max_kill_states and len(kills) > budget.max_kill_states:
        last = kills[-1]
        kills = rng.sample(kills[:-1], budget.max_kill_states - 1) + [last]
        kills.sort(key=lambda kv: kv[0])
    for n_done, data in kills:
        out = checker.evaluate(data)
        report.kills += 1
        bad = checker.judge(out, n_done, n_done)
        if bad:
            problem, found = bad
            label = rec.ops[n_done - 1].label if n_done else "start"
            report.violations.append(Violation(
                "kill", f"process killed right after op {n_done - 1} ({label}) returned: "
                f"every op that returned must be there, exactly",
                f"the file as it was then ({len(data)} bytes)", problem,
                checker.diff(found, n_done, n_done) if found is not None else "", 0))

    segs = segments(rec)
    report.segments = len(segs)
    per_seg = [crash_states(s, rng, all_upto=budget.all_subsets_upto,
                            random_subsets=budget.random_subsets,
                            torn=budget.torn_per_segment) for s in segs]
    # Round-robin over segments (those where a hole is possible first), so a
    # capped budget still looks at every stretch of the history.
    order = list(range(len(segs)))
    rng.shuffle(order)
    order.sort(key=lambda i: 0 if len(per_seg[i]) > 2 else 1)
    picked: list[CrashState] = []
    depth = 0
    while True:
        added = False
        for i in order:
            if depth < len(per_seg[i]):
                picked.append(per_seg[i][depth])
                added = True
        depth += 1
        if not added:
            break
    if budget.max_states:
        picked = picked[: budget.max_states]
    for cs in picked:
        out = checker.evaluate(cs.data)
        report.states += 1
        seg = cs.seg
        bad = checker.judge(out, seg.lo, seg.hi)
        if bad:
            problem, found = bad
            report.violations.append(Violation(
                "crash", seg.describe(rec.ops), cs.describe(), problem,
                checker.diff(found, seg.lo, seg.hi) if found is not None else "",
                len(cs.dropped) + (1 if cs.torn else 0)))
    report.opened = checker.checked
    return report


def iter_records(data: bytes, start: int = 64) -> Iterator[tuple[int, int, int, int]]:
    """(record offset, value start, value end, next offset) of each record,
    walked by the lengths alone (no CRC check): for picking bytes to damage."""
    import struct

    pos = start
    while pos + 16 <= len(data) and data[pos] == 0xA7:
        _, _, klen, vlen = struct.unpack_from("<BBHI", data, pos)
        vstart = pos + 12 + klen
        nxt = vstart + vlen + 4
        if nxt > len(data):
            return
        yield pos, vstart, vstart + vlen, nxt
        pos = nxt
