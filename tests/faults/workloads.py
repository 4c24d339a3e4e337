"""The workloads the crash-state explorer runs, with their models and readers.

Each workload is a function ``(path, sow, rec, model, rng)`` that performs
operations through ``rec.step`` (one step = one operation of the oracle: a
whole batch is one step) and keeps ``model`` in step with what each
operation promised.  ``sow`` is ``sync_on_write=True``.

What each call promises about durability when it returns (FORMAT.md 9):
``db.sync()``, ``close()``, ``checkpoint()``, ``compact()`` make everything
before them durable ("all"); ``with db.batch():`` (sync=True) and
``end_run`` make themselves durable ("self"); with ``sync_on_write=True``
every write is durable when it returns.  Everything else is durable only
once a later sync of the file completes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Hashable
from typing import Any

import numpy as np

import synadb
from synadb import DbConfig, SynaDB

from .crashsim import KVLevel, Level, Recorder, as_state, canon_value


# ------------------------------------------------------------------ models
class KVModel:
    def __init__(self) -> None:
        self.d: dict[str, list] = {}

    def put(self, key: str, value: Any) -> None:
        self.d.setdefault(key, []).append(canon_value(value))

    def delete(self, key: str) -> None:
        self.d.pop(key, None)

    def canon(self) -> Hashable:
        return as_state({k: tuple(h) for k, h in self.d.items() if h})


class DictModel:
    """key -> canonical value (vectors, tensors, runs)."""

    def __init__(self) -> None:
        self.d: dict[str, Hashable] = {}

    def canon(self) -> Hashable:
        return as_state(self.d)


class DatasetModel:
    """The rows appended, in order, as DatasetLevel reads them."""

    def __init__(self) -> None:
        self.d: dict[int, Hashable] = {}

    def canon(self) -> Hashable:
        return tuple(self.d[i] for i in range(len(self.d)))


# ------------------------------------------------------------------ levels
class VectorLevel(Level):
    name = "vectors"
    PROBE = "zz-probe"
    PROBE_VEC = np.full((1, 8), 0.5, dtype=np.float32)

    def open(self, path: str, writable: bool) -> Any:
        return synadb.VectorStore(path, read_only=not writable, progress=False,
                                  lock_timeout_s=2.0)

    def read(self, vs: Any) -> Hashable:
        out = {}
        for k in vs.keys():
            v = vs.get(k)
            out[k] = None if v is None else np.asarray(v, dtype="<f4").tobytes()
        return as_state(out)

    def probe(self, vs: Any) -> None:
        vs.insert_batch([self.PROBE], self.PROBE_VEC)

    def with_probe(self, state: Hashable) -> Hashable:
        d = dict(state)
        d[self.PROBE] = self.PROBE_VEC[0].tobytes()
        return as_state(d)


def canon_array(a: np.ndarray) -> Hashable:
    a = np.ascontiguousarray(a)
    return ("a", a.dtype.newbyteorder("<").str, tuple(a.shape),
            a.astype(a.dtype.newbyteorder("<")).tobytes())


class TensorLevel(Level):
    name = "tensors"
    PREFIXES = ("x/", "zz/")
    PROBE = np.arange(6, dtype=np.int32).reshape(2, 3)

    def open(self, path: str, writable: bool) -> Any:
        return synadb.TensorEngine(path, read_only=not writable, progress=False,
                                   lock_timeout_s=2.0)

    def read(self, te: Any) -> Hashable:
        out = {}
        for p in self.PREFIXES:
            try:
                out[p] = canon_array(np.asarray(te.get_tensor(p + "*")))
            except synadb.KeyNotFound:
                pass
        return as_state(out)

    def probe(self, te: Any) -> None:
        te.put_tensor("zz/", self.PROBE)

    def with_probe(self, state: Hashable) -> Hashable:
        d = dict(state)
        d["zz/"] = canon_array(self.PROBE)
        return as_state(d)


def run_state(status: str, params: dict[str, str],
              metrics: dict[str, list[tuple[float, float, float]]]) -> Hashable:
    return (status, tuple(sorted(params.items())),
            tuple(sorted((name, np.asarray(rows, dtype="<f8").tobytes())
                         for name, rows in metrics.items() if rows)))


class TrackerLevel(Level):
    name = "tracker"
    PROBE = "zzprobe"

    def open(self, path: str, writable: bool) -> Any:
        return synadb.ExperimentTracker(path, read_only=not writable,
                                        config=DbConfig(lock_timeout_s=2.0, progress=False))

    def read(self, t: Any) -> Hashable:
        out = {}
        for run in t.list_runs():
            metrics = {}
            for name in t.list_metrics(run.id):
                h = t.get_metric_history(run.id, name)
                # A metric whose name was registered but whose first value
                # did not make it is the same as no metric.
                metrics[name] = [(float(v), float(s), float(ts)) for v, s, ts in
                                 zip(h["value"], h["step"], h["timestamp"])]
            out[run.id] = run_state(run.status.value, dict(run.params), metrics)
        return as_state(out)

    def probe(self, t: Any) -> None:
        t.start_run("probe", run_id=self.PROBE)

    def with_probe(self, state: Hashable) -> Hashable:
        d = dict(state)
        d[self.PROBE] = run_state("Running", {}, {})
        return as_state(d)


class DatasetLevel(Level):
    """A synadb.Dataset: every row of every column, canonical."""

    name = "dataset"
    NAME = "t"
    PROBE = {"x": np.full((1, 3), 7, dtype=np.float32), "ids": [np.arange(2)],
             "img": [b"probe"], "cap": ["probe"], "meta": [{"probe": True}]}

    def open(self, path: str, writable: bool) -> Any:
        exists = os.path.exists(path) and self.NAME in synadb.datasets(path)
        db = synadb.SynaDB(path, read_only=not writable, lock_timeout_s=2.0)
        try:
            if not writable and not exists:
                return (db, None)
            return (db, synadb.Dataset(db, self.NAME, read_only=not writable, progress=False))
        except BaseException:
            db.close()
            raise

    def read(self, h: Any) -> Hashable:
        _, ds = h
        return dataset_state(ds)

    def probe(self, h: Any) -> None:
        h[1].append(self.PROBE)

    def with_probe(self, state: Hashable) -> Hashable:
        return tuple(state) + tuple(_rows_of(self.PROBE))

    def close(self, h: Any) -> None:
        if h[1] is not None:
            h[1].close()
        h[0].close()


def _rows_of(batch: dict) -> list:
    n = len(batch["cap"])
    return [(canon_array(np.asarray(batch["x"][i])), canon_array(np.asarray(batch["ids"][i])),
             batch["img"][i], batch["cap"][i], repr(batch["meta"][i])) for i in range(n)]


def dataset_state(ds: Any) -> Hashable:
    if ds is None or not len(ds):
        return ()
    got = ds.take(range(len(ds)))
    return tuple(_rows_of(got))


# --------------------------------------------------------------- workloads
def _durable(sow: bool) -> str:
    return "self" if sow else "none"


def w_single_puts(path: str, sow: bool, rec: Recorder, m: KVModel, rng: random.Random) -> None:
    """Puts of every type on interleaved keys; values over 4 KiB straddle
    pages (random bytes stay as they are, long text is LZ4-compressed)."""
    db = rec.step("open", lambda: SynaDB(path, sync_on_write=sow))
    n = 40
    for i in range(n):
        kind = i % 6
        if kind in (0, 1):
            key, v = f"f{kind}", rng.uniform(-1e6, 1e6)
            rec.step(f"put_float {key}", lambda: db.put_float(key, v),
                     lambda: m.put(key, v), _durable(sow))
        elif kind == 2:
            key, iv = "i", rng.randrange(-2**63, 2**63)
            rec.step(f"put_int {key}", lambda: db.put_int(key, iv),
                     lambda: m.put(key, iv), _durable(sow))
        elif kind == 3:
            key = "t"
            s = f"text {i} " * (700 if i % 12 == 3 else 2)
            rec.step(f"put_text {key} ({len(s)} chars)", lambda: db.put_text(key, s),
                     lambda: m.put(key, s), _durable(sow))
        elif kind == 4:
            key = "b"
            b = rng.randbytes((5000, 9000, 17)[i % 3])
            rec.step(f"put_bytes {key} ({len(b)} bytes)", lambda: db.put_bytes(key, b),
                     lambda: m.put(key, b), _durable(sow))
        else:
            key = "mixed"
            if i % 4 == 1:
                rec.step("put_int mixed", lambda: db.put_int(key, i), lambda: m.put(key, i),
                         _durable(sow))
            else:
                fv = i + 0.5
                rec.step("put_float mixed", lambda: db.put_float(key, fv),
                         lambda: m.put(key, fv), _durable(sow))
        if i % 5 == 4:
            rec.step("sync", db.sync, None, "all")
    rec.step("close", db.close, None, "all")


def w_batches(path: str, sow: bool, rec: Recorder, m: KVModel, rng: random.Random) -> None:
    """Batches of 300 and 150 puts (fsynced commit and sync=False), an
    aborted batch, and single puts in between."""
    db = rec.step("open", lambda: SynaDB(path, sync_on_write=sow))

    def singles(tag: str, n: int) -> None:
        for j in range(n):
            v = rng.random()
            key = f"s/{tag}{j % 2}"
            rec.step(f"put_float {key}", lambda: db.put_float(key, v), lambda: m.put(key, v),
                     _durable(sow))

    def batch(label: str, items: list[tuple[str, Any]], sync: bool) -> None:
        def run() -> None:
            with db.batch(sync=sync):
                for k, v in items:
                    if isinstance(v, str):
                        db.put_text(k, v)
                    else:
                        db.put_float(k, v)

        def apply() -> None:
            for k, v in items:
                m.put(k, v)

        rec.step(label, run, apply, "self" if (sync or sow) else "none")

    singles("a", 5)
    batch("batch(sync=True) of 300 puts", [(f"b1/{i:03d}", rng.random()) for i in range(300)],
          True)
    singles("b", 3)
    items = [(f"b2/{i:03d}", rng.random()) for i in range(150)]
    items.insert(75, ("b2/text", "inside a batch " * 20))
    batch("batch(sync=False) of 151 puts", items, False)
    singles("c", 2)

    def aborted() -> None:
        try:
            with db.batch():
                for i in range(40):
                    db.put_float(f"ab/{i}", float(i))
                raise KeyError("abort this batch")
        except KeyError:
            pass

    rec.step("aborted batch of 40 puts", aborted, None, "none")
    batch("batch(sync=True) of 100 puts on b1 keys",
          [(f"b1/{i:03d}", rng.random()) for i in range(0, 300, 3)], True)
    singles("d", 2)
    rec.step("close", db.close, None, "all")


def w_interleaved(path: str, sow: bool, rec: Recorder, m: KVModel, rng: random.Random) -> None:
    """Many keys appended round-robin, one db.sync() in the middle."""
    db = rec.step("open", lambda: SynaDB(path, sync_on_write=sow))
    keys = [f"h/{i:02d}" for i in range(24)]
    rounds = 5
    for r in range(rounds):
        for k in keys:
            v = r + rng.random()
            rec.step(f"put_float {k} round {r}", lambda: db.put_float(k, v),
                     lambda: m.put(k, v), _durable(sow))
        if r == rounds // 2:
            rec.step("sync", db.sync, None, "all")
    rec.step("close", db.close, None, "all")


def w_vectors(path: str, sow: bool, rec: Recorder, m: DictModel, rng: random.Random) -> None:
    """VectorStore bulk blocks: three insert_batch calls (the third replaces
    half of the keys), a flush that writes the HNSW snapshot, close."""
    vs = rec.step("open VectorStore", lambda: synadb.VectorStore(
        path, dimensions=8, metric="euclidean", index_threshold=200, progress=False,
        sync_on_write=sow), None, _durable(sow))
    nprng = np.random.default_rng(rng.randrange(2**32))

    def ib(label: str, keys: list[str]) -> None:
        mat = nprng.standard_normal((len(keys), 8)).astype(np.float32)

        def apply() -> None:
            for k, row in zip(keys, mat):
                m.d[k] = row.tobytes()

        rec.step(label, lambda: vs.insert_batch(keys, mat), apply, _durable(sow))

    ib("insert_batch v000..v149", [f"v{i:03d}" for i in range(150)])
    ib("insert_batch v150..v299", [f"v{i:03d}" for i in range(150, 300)])
    rec.step("flush", vs.flush, None, "all")
    ib("insert_batch v075..v224 (replaces)", [f"v{i:03d}" for i in range(75, 225)])
    rec.step("close", vs.close, None, "all")


def w_tensors(path: str, sow: bool, rec: Recorder, m: DictModel, rng: random.Random) -> None:
    """put_tensor of one prefix three times (rows change count, shape, dtype)."""
    te = rec.step("open TensorEngine", lambda: synadb.TensorEngine(
        path, sync_on_write=sow, progress=False))
    nprng = np.random.default_rng(rng.randrange(2**32))
    versions = [nprng.standard_normal((40, 48)).astype(np.float32),
                nprng.standard_normal((24, 100)),
                np.arange(15, dtype=np.int64).reshape(3, 5)]
    for i, arr in enumerate(versions):
        def apply(arr=arr) -> None:
            m.d["x/"] = canon_array(arr)

        rec.step(f"put_tensor x/ version {i} {arr.dtype}{arr.shape}",
                 lambda arr=arr: te.put_tensor("x/", arr), apply, _durable(sow))
    rec.step("close", te.close, None, "all")


def w_tracker(path: str, sow: bool, rec: Recorder, m: DictModel, rng: random.Random) -> None:
    """Runs: start_run, log_param, log_metric, end_run (which fsyncs)."""
    t = rec.step("open ExperimentTracker",
                 lambda: synadb.ExperimentTracker(path, sync_on_write=sow))
    runs: dict[str, list] = {}
    for r in range(3):
        rid = f"run{r}"
        st: list = ["Running", {}, {}]
        runs[rid] = st

        def upd(rid: str = rid) -> None:
            s = runs[rid]
            m.d[rid] = run_state(s[0], s[1], s[2])

        rec.step(f"start_run {rid}",
                 lambda rid=rid: t.start_run("exp", run_id=rid, start_time=1000.0),
                 upd, _durable(sow))
        for name, value in (("lr", f"0.{r + 1}"), ("batch", str(32 << r))):
            def logp(rid=rid, name=name, value=value) -> None:
                t.log_param(rid, name, value)

            def updp(rid=rid, name=name, value=value) -> None:
                runs[rid][1][name] = value
                upd(rid)

            rec.step(f"log_param {rid} {name}", logp, updp, _durable(sow))
        for s in range(4):
            v = rng.random()

            def logm(rid=rid, s=s, v=v) -> None:
                t.log_metric(rid, "loss", v, step=s, timestamp=1000.0 + s)

            def updm(rid=rid, s=s, v=v) -> None:
                runs[rid][2].setdefault("loss", []).append((v, float(s), 1000.0 + s))
                upd(rid)

            rec.step(f"log_metric {rid} loss step {s}", logm, updm, _durable(sow))

        def endr(rid=rid) -> None:
            t.end_run(rid, end_time=2000.0)

        def upde(rid=rid) -> None:
            runs[rid][0] = "Completed"
            upd(rid)

        rec.step(f"end_run {rid}", endr, upde, "self")
    rec.step("close", t.close, None, "all")


def w_compaction(path: str, sow: bool, rec: Recorder, m: KVModel, rng: random.Random) -> None:
    """Puts, deletes, compact(), then more puts on the compacted file."""
    db = rec.step("open", lambda: SynaDB(path, sync_on_write=sow))
    keys = [f"c/{i:02d}" for i in range(10)]
    for r in range(3):
        for k in keys:
            v = rng.random()
            rec.step(f"put_float {k}", lambda: db.put_float(k, v), lambda: m.put(k, v),
                     _durable(sow))
    big = "compact me " * 600
    rec.step("put_text big", lambda: db.put_text("big", big), lambda: m.put("big", big),
             _durable(sow))
    for k in keys[:3]:
        rec.step(f"delete {k}", lambda: db.delete(k), lambda: m.delete(k), _durable(sow))
    rec.step("compact", lambda: db.compact(progress=False), None, "all")
    for k in keys[2:8]:
        v = rng.random()
        rec.step(f"put_float {k} after compact", lambda: db.put_float(k, v),
                 lambda: m.put(k, v), _durable(sow))
    rec.step("sync", db.sync, None, "all")
    for k in keys[:4]:
        v = rng.random()
        rec.step(f"put_float {k} after sync", lambda: db.put_float(k, v),
                 lambda: m.put(k, v), _durable(sow))
    rec.step("close", db.close, None, "all")


def w_dataset(path: str, sow: bool, rec: Recorder, m: DictModel, rng: random.Random) -> None:
    """Dataset appends of every column kind: small ones and one that spans
    several chunk records (each append all or nothing), then close."""
    from synadb import dataset as dsmod

    nprng = np.random.default_rng(rng.randrange(2**32))
    rows: list = []
    old = dsmod._CHUNK_BYTES
    dsmod._CHUNK_BYTES = 6000  # the large append becomes several chunk records
    try:
        ds = rec.step("open Dataset", lambda: synadb.Dataset(
            path, "t", sync_on_write=sow, progress=False))
        for i, n in enumerate((3, 1, 60, 5)):
            batch = {
                "x": nprng.standard_normal((n, 3)).astype(np.float32),
                "ids": [nprng.integers(0, 99, int(nprng.integers(0, 30))) for _ in range(n)],
                "img": [nprng.bytes(int(nprng.integers(0, 300))) for _ in range(n)],
                "cap": [f"row {len(rows) + j}" for j in range(n)],
                "meta": [{"i": len(rows) + j} for j in range(n)],
            }

            def apply(batch=batch) -> None:
                rows.extend(_rows_of(batch))
                m.d.clear()
                m.d.update(enumerate(rows))

            rec.step(f"append {n} rows", lambda batch=batch: ds.append(batch), apply,
                     _durable(sow))
        rec.step("close", ds.close, None, "all")
    finally:
        dsmod._CHUNK_BYTES = old


WORKLOADS = {
    "single_puts": (w_single_puts, KVModel, KVLevel),
    "batches": (w_batches, KVModel, KVLevel),
    "interleaved": (w_interleaved, KVModel, KVLevel),
    "vectors": (w_vectors, DictModel, VectorLevel),
    "tensors": (w_tensors, DictModel, TensorLevel),
    "tracker": (w_tracker, DictModel, TrackerLevel),
    "compaction": (w_compaction, KVModel, KVLevel),
    "dataset": (w_dataset, DatasetModel, DatasetLevel),
}


def record(name: str, path: str, sow: bool, seed: int) -> tuple[Recorder, Level]:
    """Run workload ``name`` on a new database at ``path`` and record it."""
    fn, model_cls, level_cls = WORKLOADS[name]
    model = model_cls()
    rng = random.Random(f"{name}-{sow}-{seed}")
    # The engine draws each file's salt from the random module: seed it, so
    # that record sizes (a salt in a JSON value) and with them the pages of
    # every crash state are the same from run to run.
    saved = random.getstate()
    random.seed(f"salts-{name}-{sow}-{seed}")
    try:
        with Recorder(path, model.canon) as rec:
            fn(path, sow, rec, model, rng)
            rec.finish()
    finally:
        random.setstate(saved)
    return rec, level_cls()
