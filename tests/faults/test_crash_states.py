"""Crash states of real workloads under the page-loss model (see crashsim.py).

For every workload, in both durability modes: the file as it was at each
completed fsync plus any subset of the 4 KiB pages written since (or a torn
page), and the file as it was when each operation returned (a killed
process).  The recovered database must equal the model after some prefix of
the operations that includes every operation that was durable, read without
errors, reopen writable to the same data and take one more write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import struct

import pytest

import synadb
from synadb import SynaDB

from .crashsim import (
    PAGE,
    Checker,
    KVLevel,
    Recorder,
    canon_value,
    changed_pages,
    explore,
    iter_records,
    segments,
)
from .workloads import WORKLOADS, KVModel, record, w_batches

MODES = [pytest.param(False, id="default"), pytest.param(True, id="sync_on_write")]


@pytest.mark.parametrize("sow", MODES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_crash_states(workload, sow, scratch, budget):
    work = os.path.join(scratch, "work")
    check = os.path.join(scratch, "check")
    os.mkdir(work)
    os.mkdir(check)
    rec, level = record(workload, os.path.join(work, "w.db"), sow, budget.seed)
    report = explore(rec, level, check, budget, seed=budget.seed)
    assert report.states + report.kills > 0
    mode = "sync_on_write" if sow else "default"
    assert not report.violations, report.summary(f"{workload} ({mode})")


# -- the explorer itself: it must see planted bugs -----------------------------

@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def test_explorer_sees_a_batch_that_is_not_atomic(scratch, budget):
    """Planted bug: batch() writes its puts as plain records (no commit).
    Some crash state must then recover part of a batch, and the explorer
    must report it."""

    @contextlib.contextmanager
    def fake_batch(self, sync=True):
        yield self
        if sync:
            self.sync()

    work = os.path.join(scratch, "work")
    os.mkdir(work)
    with _patched(SynaDB, "batch", fake_batch):
        model = KVModel()
        with Recorder(os.path.join(work, "w.db"), model.canon) as rec:
            w_batches(os.path.join(work, "w.db"), False, rec, model, random.Random(1))
            rec.finish()
    os.mkdir(os.path.join(scratch, "check"))
    # Every state, so that the test does not depend on the sampling.
    report = explore(rec, KVLevel(), os.path.join(scratch, "check"),
                     dataclasses.replace(budget, max_states=0, all_subsets_upto=3,
                                         random_subsets=2, torn_per_segment=0,
                                         max_kill_states=1),
                     seed=1)
    partial = [v for v in report.violations
               if "b1/" in v.found and "no allowed prefix" in v.problem]
    assert partial, report.summary("planted non-atomic batch")


def test_explorer_sees_a_sync_that_lies(scratch, budget):
    """Planted bug: db.sync() returns without an fsync.  The crash state
    "synced image only" after it loses puts that sync() promised."""
    work = os.path.join(scratch, "work")
    os.mkdir(work)
    path = os.path.join(work, "w.db")
    model = KVModel()
    with _patched(SynaDB, "sync", lambda self: None):
        with Recorder(path, model.canon) as rec:
            db = rec.step("open", lambda: SynaDB(path))
            rec.step("put a", lambda: db.put_float("a", 1.0), lambda: model.put("a", 1.0))
            rec.step("checkpoint", db.checkpoint, None, "all")  # a real fsync
            for i in range(20):
                rec.step(f"put k{i}", lambda: db.put_float(f"k{i}", float(i)),
                         lambda: model.put(f"k{i}", float(i)))
            rec.step("sync (lies)", db.sync, None, "all")
            rec.step("put z", lambda: db.put_float("z", 2.0), lambda: model.put("z", 2.0))
            rec.step("close", db.close, None, "all")
            rec.finish()
    os.mkdir(os.path.join(scratch, "check"))
    report = explore(rec, KVLevel(), os.path.join(scratch, "check"), budget, seed=2)
    lost = [v for v in report.violations if "synced image only" in v.state
            and "no allowed prefix" in v.problem]
    assert lost, report.summary("planted lying sync")


def test_hole_inside_a_committed_batch(scratch):
    """Built by hand: a batch of 600 puts spans several
    pages; its commit reaches the disk but a page in the middle of the batch
    does not.  Recovery must keep all of the batch or none of it (the commit
    was not durable yet, so none is allowed too) -- never half."""
    work = os.path.join(scratch, "work")
    os.mkdir(work)
    path = os.path.join(work, "w.db")
    model = KVModel()
    with Recorder(path, model.canon) as rec:
        db = rec.step("open", lambda: SynaDB(path))
        rec.step("put a", lambda: db.put_float("a", 1.0), lambda: model.put("a", 1.0))
        rec.step("sync", db.sync, None, "all")
        items = [(f"batch/key/{i:04d}", float(i)) for i in range(600)]

        def run():
            with db.batch():
                for k, v in items:
                    db.put_float(k, v)

        def apply():
            for k, v in items:
                model.put(k, v)

        rec.step("batch of 600", run, apply, "self")
        rec.step("close", db.close, None, "all")
        rec.finish()
    # The stretch from the db.sync() (3 ops durable) to the fsync of the
    # batch's commit (the batch started in it).
    seg = next((s for s in segments(rec) if s.role == "db" and s.lo == 3 and s.hi >= 4), None)
    assert seg is not None, "no stretch from the db.sync() into the batch was recorded"
    changed = [p for p in changed_pages(seg.base, seg.upper) if p > 0]  # not the header's
    assert len(changed) >= 3, f"the batch should span 3+ pages, changed pages: {changed}"
    middle = changed[len(changed) // 2]
    data = bytearray(seg.upper)
    old = seg.base.ljust(len(seg.upper), b"\0")
    data[middle * PAGE:(middle + 1) * PAGE] = old[middle * PAGE:(middle + 1) * PAGE]
    os.mkdir(os.path.join(scratch, "check"))
    checker = Checker(KVLevel(), os.path.join(scratch, "check"), rec.states,
                      [op.label for op in rec.ops])
    out = checker.evaluate(bytes(data))
    bad = checker.judge(out, seg.lo, seg.hi)
    assert bad is None, (f"page {middle} of {changed} dropped (synced image of "
                         f"{len(seg.base)} bytes, allowed prefixes {seg.lo}..{seg.hi}): "
                         f"{bad[0]}\n{checker.diff(bad[1], seg.lo, seg.hi)}")


# -- real damage is reported, never returned, and stays on its key -------------

@pytest.mark.parametrize("workload", ["single_puts", "batches"])
def test_flipped_byte_is_reported_on_its_key_only(workload, scratch, budget):
    work = os.path.join(scratch, "work")
    os.mkdir(work)
    src = os.path.join(work, "w.db")
    rec, _ = record(workload, src, False, budget.seed)
    expected = dict(rec.states[-1])
    with open(src, "rb") as f:
        data = f.read()
    recs = [r for r in iter_records(data) if r[2] > r[1]]
    assert len(recs) > 20, f"could not walk the records of {src} ({len(recs)} found)"
    # Records in the middle of the file, whose key is a key of the model.
    def key_of(r):
        pos = r[0]
        klen = struct.unpack_from("<H", data, pos + 2)[0]
        return data[pos + 12:pos + 12 + klen].decode("utf-8", "replace")

    middle = [r for r in recs[len(recs) // 10: len(recs) * 9 // 10] if key_of(r) in expected]
    rng = random.Random(budget.seed)
    picks = middle if budget.flips >= len(middle) else rng.sample(middle, budget.flips)
    bad = os.path.join(scratch, "flipped.db")
    problems = []
    for r in picks:
        key = key_of(r)
        at = rng.randrange(r[1], r[2])
        flipped = bytearray(data)
        flipped[at] ^= 1 << rng.randrange(8)
        with open(bad, "wb") as f:
            f.write(flipped)
        where = f"byte {at} (value of the record at {r[0]}, key {key!r})"
        try:
            with SynaDB(bad, read_only=True) as db:
                keys = set(db.keys())
                for k, want in expected.items():
                    if k not in keys:
                        problems.append(f"{where}: key {k!r} vanished")
                        continue
                    try:
                        got = tuple(canon_value(v) for v in db.get_history(k))
                    except synadb.ChecksumError:
                        if k != key:
                            problems.append(f"{where}: ChecksumError on another key {k!r}")
                        continue
                    if got != want:
                        problems.append(f"{where}: key {k!r} read back changed "
                                        f"({len(got)} values, {len(want)} written)")
                extra = keys - set(expected)
                if extra:
                    problems.append(f"{where}: unknown keys appeared: {sorted(extra)[:3]}")
                report = db.verify()
                if report.ok:
                    problems.append(f"{where}: verify() says the file is OK")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{where}: opening or reading raised {type(e).__name__}: {e}")
    assert not problems, f"{len(problems)} problems in {len(picks)} flips:\n" + \
        "\n".join(problems[:8])


def test_explorer_sees_a_dataset_manifest_written_before_its_chunks(scratch, budget):
    """Planted bug: no batch, and an append's manifest reaches the file before
    its chunk records.  A crash state that keeps the manifest's page and
    loses a chunk's must be reported (a row count the chunks do not hold)."""
    from synadb.db import Storage

    from .workloads import DatasetLevel, DatasetModel, w_dataset

    @contextlib.contextmanager
    def no_batch(self, sync=True):
        yield self

    deferred = []
    real_parts, real_blobs = Storage.put_blob_parts, Storage.put_blobs

    def defer_chunk(self, key, parts, keep_history=True):
        deferred.append((self, key, [bytes(memoryview(p).cast("B")) for p in parts]))

    def manifest_first(self, items, keys_checked=False, keep_history=True):
        real_blobs(self, items, keys_checked, keep_history)
        while deferred:
            st, key, parts = deferred.pop(0)
            real_parts(st, key, parts, keep_history=False)

    work = os.path.join(scratch, "work")
    os.mkdir(work)
    with _patched(SynaDB, "batch", no_batch), _patched(Storage, "put_blob_parts", defer_chunk), \
            _patched(Storage, "put_blobs", manifest_first):
        model = DatasetModel()
        with Recorder(os.path.join(work, "w.db"), model.canon) as rec:
            w_dataset(os.path.join(work, "w.db"), False, rec, model, random.Random(1))
            rec.finish()
    os.mkdir(os.path.join(scratch, "check"))
    report = explore(rec, DatasetLevel(), os.path.join(scratch, "check"),
                     dataclasses.replace(budget, max_states=0, all_subsets_upto=3,
                                         random_subsets=8, torn_per_segment=0,
                                         max_kill_states=1),
                     seed=1)
    assert report.violations, report.summary("planted manifest-before-chunks")
