"""EIO and ENOSPC at every I/O call of an operation (see faultinject.py).

For each operation: count the OS calls it makes on the database's folder,
then, on a fresh database each time, make the i-th call fail with EIO, and
again with ENOSPC.  Then:

(a) the failure comes out as a SynaError: DiskFull (an OSError with errno
    ENOSPC) for ENOSPC, DurabilityError for a failed fsync of the database
    file (DiskFull is accepted too when that fsync said ENOSPC), another
    SynaError otherwise (and any SynaError for a compaction that failed after
    its rename) -- never a raw OSError; and a failed fsync of the database
    file is never swallowed (the operation must not return success);
(b) a new handle on the path holds every value acknowledged before the
    operation, and the operation's own writes all or none of them;
(c) the same handle afterwards either works -- a write that returns is seen
    by a new handle on the path at once and after close -- or refuses the
    write with a SynaError (and after a DurabilityError it must refuse, as
    that error promises);
(d) after an ENOSPC, once "space is freed" (the injection stops), the same
    handle writes again, unless an fsync of the file failed (DurabilityError:
    the handle must refuse) or compaction failed after its rename (a
    SynaError that says to reopen is fine);
and the folder keeps no compaction temp file, the handle closes with at most
a SynaError, and a new writer can open the path and write.
"""

from __future__ import annotations

import errno as E
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import synadb
from synadb import DbConfig, SynaDB

from .crashsim import KVLevel, canon_value
from .faultinject import FSYNC_KINDS, Injector, select_sites
from .workloads import VectorLevel

pytestmark = [
    # A handle left broken by an injected failure may leak a descriptor or a
    # map until it is collected; that is not what these tests look at.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


# ----------------------------------------------------------------- models
class KV:
    """Model + reader of a SynaDB scenario."""

    level = KVLevel()

    def __init__(self) -> None:
        self.d: dict[str, list] = {}

    def put(self, k: str, v: Any) -> None:
        self.d.setdefault(k, []).append(canon_value(v))

    def delete(self, k: str) -> None:
        self.d.pop(k, None)

    def state(self) -> tuple:
        return tuple(sorted((k, tuple(h)) for k, h in self.d.items() if h))

    def copy(self) -> "KV":
        c = type(self)()
        c.d = {k: list(h) for k, h in self.d.items()}
        return c

    def read(self, path: str) -> tuple:
        h = self.level.open(path, False)
        try:
            return self.level.read(h)
        finally:
            h.close()

    def later(self, h: Any, n: int) -> None:
        h.put_float(f"later/{n}", float(n) + 0.25)
        self.put(f"later/{n}", float(n) + 0.25)

    def reopen_and_write(self, path: str) -> None:
        with SynaDB(path, lock_timeout_s=1.0) as db:
            db.put_text("final", "by a new handle")
        self.put("final", "by a new handle")


class Vecs(KV):
    level = VectorLevel()
    VEC = np.full((1, 8), 0.125, dtype=np.float32)

    def put(self, k: str, v: Any) -> None:
        self.d[k] = [np.asarray(v, dtype="<f4").tobytes()]

    def state(self) -> tuple:
        return tuple(sorted((k, h[-1]) for k, h in self.d.items() if h))

    def later(self, h: Any, n: int) -> None:
        h.insert_batch([f"later{n}"], self.VEC * (n + 1))
        self.put(f"later{n}", (self.VEC * (n + 1))[0])

    def reopen_and_write(self, path: str) -> None:
        with synadb.VectorStore(path, progress=False, lock_timeout_s=1.0) as vs:
            vs.insert_batch(["final"], self.VEC * 9)
        self.put("final", (self.VEC * 9)[0])


# -------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    name: str
    setup: Callable[[str], tuple[Any, KV]]
    op: Callable[[Any], None]
    effect: Callable[[KV], None] | None = None  # the model change if the op succeeds
    closes: bool = False  # the op closes the handle


def _kv_setup(sow: bool = False, config: DbConfig | None = None, unsynced: int = 0):
    def setup(path: str):
        rng = random.Random(7)
        db = SynaDB(path, sync_on_write=sow, config=config)
        m = KV()
        for r in range(3):
            for i in range(20):
                v = rng.random()
                db.put_float(f"k/{i:02d}", v)
                m.put(f"k/{i:02d}", v)
        db.put_text("text", "hello " * 50)
        m.put("text", "hello " * 50)
        blob = rng.randbytes(20_000)
        db.put_bytes("blob", blob)
        m.put("blob", blob)
        for i in range(2):
            db.delete(f"k/{i:02d}")
            m.delete(f"k/{i:02d}")
        db.sync()
        for i in range(unsynced):
            db.put_int(f"u/{i}", i)
            m.put(f"u/{i}", i)
        return db, m
    return setup


_BATCH = 6000  # ~170 KB of records: more than the pre-allocated room, the file grows


def _batch(db: SynaDB) -> None:
    with db.batch():
        for i in range(_BATCH):
            db.put_float(f"batch/{i:04d}", i * 0.5)


def _batch_effect(m: KV) -> None:
    for i in range(_BATCH):
        m.put(f"batch/{i:04d}", i * 0.5)


_BIG = random.Random(3).randbytes(300_000)  # more than the pre-allocated room: the file grows


def _vs_setup(extra: bool = False):
    def setup(path: str):
        vs = synadb.VectorStore(path, dimensions=8, metric="euclidean", index_threshold=100,
                                progress=False)
        m = Vecs()
        rng = np.random.default_rng(5)
        keys = [f"v{i:04d}" for i in range(200)]
        mat = rng.standard_normal((200, 8)).astype(np.float32)
        vs.insert_batch(keys, mat)
        for k, row in zip(keys, mat):
            m.put(k, row)
        vs.flush()
        if extra:  # so that close has a stale snapshot to write
            keys = [f"w{i:04d}" for i in range(50)]
            mat = rng.standard_normal((50, 8)).astype(np.float32)
            vs.insert_batch(keys, mat)
            for k, row in zip(keys, mat):
                m.put(k, row)
            assert vs._snapshot_due(closing=True)  # or the scenario would test nothing
        return vs, m
    return setup


_VS_KEYS = [f"n{i:04d}" for i in range(2500)]
_VS_MAT = np.random.default_rng(11).standard_normal((2500, 8)).astype(np.float32)


def _vs_effect(m: KV) -> None:
    for k, row in zip(_VS_KEYS, _VS_MAT):
        m.put(k, row)


SCENARIOS = {
    "compact": Scenario("compact", _kv_setup(), lambda db: db.compact(progress=False)),
    "checkpoint": Scenario("checkpoint", _kv_setup(unsynced=5), lambda db: db.checkpoint()),
    "close": Scenario("close", _kv_setup(config=DbConfig(checkpoint_min_bytes=0), unsynced=5),
                      lambda db: db.close(), closes=True),
    "batch": Scenario("batch", _kv_setup(), _batch, _batch_effect),
    "sync": Scenario("sync", _kv_setup(unsynced=5), lambda db: db.sync()),
    "sow_put": Scenario("sow_put", _kv_setup(sow=True),
                        lambda db: db.put_float("new", 1.5), lambda m: m.put("new", 1.5)),
    "sow_put_big": Scenario("sow_put_big", _kv_setup(sow=True),
                            lambda db: db.put_bytes("newbig", _BIG),
                            lambda m: m.put("newbig", _BIG)),
    "put_big": Scenario("put_big", _kv_setup(), lambda db: db.put_bytes("newbig", _BIG),
                        lambda m: m.put("newbig", _BIG)),
    "vs_insert_batch": Scenario("vs_insert_batch", _vs_setup(),
                                lambda vs: vs.insert_batch(_VS_KEYS, _VS_MAT), _vs_effect),
    "vs_close": Scenario("vs_close", _vs_setup(extra=True), lambda vs: vs.close(), closes=True),
}


# ----------------------------------------------------------------- runner
def _name(e: BaseException) -> str:
    return f"{type(e).__name__}({str(e)[:160]!r})"


def run(sc: Scenario, folder: str, fail_at: int | None, err: int) -> tuple[list[str], Injector]:
    """Run ``sc`` with call ``fail_at`` failing; returns the problems found."""
    os.makedirs(folder)
    path = os.path.join(folder, "x.db")
    problems: list[str] = []
    h = None
    with Injector(folder, path) as inj:
        try:
            h, m = sc.setup(path)
            before = m.state()
            after_m = m.copy()
            if sc.effect is not None:
                sc.effect(after_m)
            after = after_m.state()

            inj.arm(fail_at, err)
            exc: BaseException | None = None
            try:
                sc.op(h)
            except Exception as e:  # noqa: BLE001
                exc = e
            inj.disarm()  # from here on, "space is freed"
            site = inj.injected
            if fail_at is not None and site is None:
                return [], inj  # this run made fewer calls: nothing was injected
            db_file = site is not None and site.target == inj.db_path
            is_sync = site is not None and site.kind in FSYNC_KINDS

            # (a) the error
            if exc is None:
                if fail_at is not None and is_sync and db_file:
                    problems.append("the failed fsync of the database file was swallowed: "
                                    "the operation returned success")
            elif fail_at is None:
                problems.append(f"raised without any injected fault: {_name(exc)}")
            elif not isinstance(exc, synadb.SynaError):
                problems.append(f"raised a raw {_name(exc)}, not a SynaError")
            elif site.after_rename:
                pass  # compaction failed after its rename: any SynaError (one that says reopen)
            elif err == E.ENOSPC and site.kind != "mmap":
                if is_sync:
                    if not isinstance(exc, (synadb.DiskFull, synadb.DurabilityError)):
                        problems.append(f"ENOSPC from an fsync came out as {_name(exc)}, "
                                        "not DiskFull or DurabilityError")
                elif not (isinstance(exc, synadb.DiskFull) and isinstance(exc, OSError)
                          and exc.errno == E.ENOSPC):
                    problems.append(f"ENOSPC came out as {_name(exc)}, not DiskFull with "
                                    "errno ENOSPC")
            elif is_sync and db_file and not isinstance(exc, synadb.DurabilityError):
                problems.append(f"a failed fsync of the database file came out as {_name(exc)}, "
                                "not DurabilityError")

            # (b) a new handle sees what was acknowledged; the op all or nothing
            try:
                now = m.read(path)
            except Exception as e:  # noqa: BLE001
                problems.append(f"a new handle could not read the path: {_name(e)}")
                now = None
            if now is not None:
                if exc is None and fail_at is None and now != after:
                    problems.append("without faults, the operation's writes are not all there")
                elif now == after:
                    m = after_m
                elif now != before:
                    problems.append("a new handle sees neither the state before the operation "
                                    f"nor the one after it{_diff(before, after, now)}")

            # (c)/(d) the same handle afterwards
            must_work = not sc.closes and (fail_at is None or (
                err == E.ENOSPC and site.kind != "mmap" and not (is_sync and db_file)
                and not site.after_rename))
            refuses = isinstance(exc, synadb.DurabilityError)
            for n in range(2):
                try:
                    m.later(h, n)
                    if refuses:
                        problems.append(f"the operation raised {_name(exc)}, yet the same "
                                        f"handle then took a write (after a DurabilityError "
                                        f"a handle refuses writes until reopened)")
                        refuses = False
                except synadb.SynaError as e:
                    if must_work and n == 0:
                        problems.append(f"after the fault the same handle refused a write: "
                                        f"{_name(e)} (it must work again once space is freed)"
                                        if fail_at is not None else
                                        f"a write after the operation raised {_name(e)}")
                    continue
                except Exception as e:  # noqa: BLE001
                    problems.append(f"a later write raised a raw {_name(e)}")
                    continue
                try:
                    seen = m.read(path)
                except Exception as e:  # noqa: BLE001
                    problems.append(f"after a later write, a new handle raised {_name(e)}")
                    continue
                if seen != m.state():
                    problems.append(f"later write {n} returned, but a new handle on the path "
                                    f"does not see it (or sees other changes)"
                                    f"{_diff(m.state(), m.state(), seen)}")
            try:
                h.close()
            except synadb.SynaError:
                pass
            except Exception as e:  # noqa: BLE001
                problems.append(f"close() afterwards raised a raw {_name(e)}")
            h = None
            try:
                seen = m.read(path)
                if seen != m.state():
                    problems.append("after close, the path does not hold every acknowledged "
                                    f"write{_diff(m.state(), m.state(), seen)}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"after close, reading the path raised {_name(e)}")
            try:
                m.reopen_and_write(path)
                if m.read(path) != m.state():
                    problems.append("a new writer's write is not there after its close")
            except Exception as e:  # noqa: BLE001
                problems.append(f"a new writer on the path failed: {_name(e)}")
            stale = [f for f in os.listdir(folder) if ".compact-" in f and f.endswith(".tmp")]
            if stale and not (site is not None and site.kind == "unlink"):
                problems.append(f"compaction left {stale} in the folder")
        finally:
            inj.disarm()
            if h is not None:
                try:
                    h.close()
                except Exception:  # noqa: BLE001
                    pass
    return problems, inj


def _diff(before: tuple, after: tuple, now: tuple) -> str:
    b, a, n = dict(before), dict(after), dict(now)
    lost = [k for k in b if k not in n]
    changed = [k for k in n if k in b and n[k] != b[k] and n[k] != a.get(k)]
    new = [k for k in n if k not in b and k not in a]
    missing_after = [k for k in a if k not in b and k not in n]
    parts = []
    if lost:
        parts.append(f"lost keys {sorted(lost)[:3]}{'...' if len(lost) > 3 else ''} "
                     f"({len(lost)})")
    if changed:
        parts.append(f"changed keys {sorted(changed)[:3]}")
    if new:
        parts.append(f"unknown keys {sorted(new)[:3]}")
    if missing_after and len(missing_after) != len(a) - len(b):
        parts.append(f"{len(missing_after)} of the operation's {len(set(a) - set(b))} new keys")
    return (": " + "; ".join(parts)) if parts else ""


@pytest.mark.parametrize("err", [pytest.param(E.EIO, id="EIO"),
                                 pytest.param(E.ENOSPC, id="ENOSPC")])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_io_error_at_every_call(name, err, scratch, budget):
    sc = SCENARIOS[name]
    problems, inj = run(sc, os.path.join(scratch, "count"), None, err)
    assert not problems, f"{name} without faults: {problems}"
    calls = inj.calls
    assert calls, f"{name}: no I/O call on the database's folder was seen"
    rng = random.Random(f"{budget.seed}-{name}-{err}")
    # A map cannot fail with EIO or ENOSPC: its sites get ENOMEM, once (in the EIO run).
    sites = [s for s in select_sites(calls, budget.max_sites, rng)
             if not (s.kind == "mmap" and err != E.EIO)]
    found = []
    for s in sites:
        probs, inj2 = run(sc, os.path.join(scratch, f"s{s.index}"), s.index, err)
        where = (inj2.injected or s).describe(inj2.db_path)
        found += [f"{where}: {p}" for p in probs]
    kinds = sorted({c.kind for c in calls})
    assert not found, (
        f"{name}, {E.errorcode[err]}: {len(found)} problems at {len(sites)} of {len(calls)} "
        f"call sites ({', '.join(kinds)}):\n  " + "\n  ".join(found[:10]))
