"""W&B-style API benchmark (issue 16): ``synadb.integrations.wandb`` against
the real W&B in offline mode (``WANDB_MODE=offline``), in the same process
and the same run.

Rows:
  * ``wandb.log`` of a 5-metric dict per step: ours against W&B offline's
    ``run.log`` (loop only, and with ``finish`` -- which waits until every
    row is in the file -- amortised over the loop); target >= 100x.  The
    dicts are made before the clock starts and the collector is off while
    the loop runs, for both: the figure is the cost of ``log``;
  * ``wandb.init`` -> first ``log`` returned, on a new file, system metrics
    on (the default); also until that row is in the file (``run.flush()``);
    W&B offline's init -> first log beside it; target <= 50 ms;
  * ``Api().runs("bench", filters=<Mongo filter>, order=...)`` over 10K
    runs: the first query of a new ``Api`` (open + parse the catalog) and a
    repeated one; target <= 50 ms (the repeated query).

The box is small and shared: every figure is the median of the
repetitions, ours and W&B interleaved within each.  The load average is in
the header.

Run standalone: ``python benchmarks/bench_wandb.py [--quick]``;
``run(quick)`` prints the table and returns its rows (as bench_loggers.py
does); ``measure(quick)`` returns the raw figures.  Writes
benchmarks/out/wandb.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

if str(c.REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(c.REPO_ROOT))

METRICS = ("loss", "acc", "lr", "grad_norm", "throughput")
FULL = dict(reps=5, ours_steps=50_000, wandb_steps=2_000, init_reps=5, wandb_init_reps=3,
            n_runs=10_000, warm_reps=7)
QUICK = dict(reps=2, ours_steps=10_000, wandb_steps=300, init_reps=3, wandb_init_reps=1,
             n_runs=10_000, warm_reps=5)
T_LOG_RATIO = 100.0
T_INIT_S = 50e-3
T_QUERY_S = 50e-3
FILTER = {"config.lr": {"$gt": 0.005}, "summary_metrics.acc": {"$gte": 0.9},
          "state": "finished", "tags": {"$in": ["t1", "t2"]}}
ORDER = "-summary_metrics.acc"


def log(msg: str) -> None:
    print(f"[bench_wandb] {msg}", file=sys.stderr, flush=True)


def _step(i: int) -> dict:
    return {m: 0.5 + i * 1e-6 + k for k, m in enumerate(METRICS)}


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The collector off while a loop is timed (as timeit does), for both sides."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# -- wandb.log ----------------------------------------------------------------
def ours_log(work: Path, steps: int, with_step: bool = False) -> dict:
    import synadb.integrations.wandb as swb

    path = str(work / f"log_{time.monotonic_ns()}.db")
    run = swb.init(project="bench", dir=path, config={"lr": 0.01},
                   settings={"x_disable_stats": True})  # as W&B's side below
    rows = [_step(i) for i in range(1, steps + 1)]  # made before the clock starts
    run.log(_step(0))  # the first row registers the metric names
    with _no_gc():
        t0 = time.perf_counter()
        if with_step:
            for i, row in enumerate(rows, 1):
                run.log(row, step=i)
        else:
            for row in rows:
                run.log(row)
        t1 = time.perf_counter()
    run.finish()
    t2 = time.perf_counter()
    swb.teardown()
    from synadb import ExperimentTracker

    with ExperimentTracker(path, read_only=True) as t:  # every row is in the file
        assert len(t.get_metric_tensor(run.id, "loss")) == steps + 1
    return {"loop_s": (t1 - t0) / steps, "with_finish_s": (t2 - t0) / steps}


def wandb_log(work: Path, steps: int, with_step: bool = False) -> dict:
    import wandb

    d = tempfile.mkdtemp(dir=work, prefix="wandb_")
    run = wandb.init(project="bench", dir=d, mode="offline", config={"lr": 0.01},
                     settings=wandb.Settings(console="off", x_disable_stats=True,
                                             save_code=False, silent=True))
    rows = [_step(i) for i in range(1, steps + 1)]
    run.log(_step(0))
    with _no_gc():
        t0 = time.perf_counter()
        if with_step:
            for i, row in enumerate(rows, 1):
                run.log(row, step=i)
        else:
            for row in rows:
                run.log(row)
        t1 = time.perf_counter()
    run.finish()
    t2 = time.perf_counter()
    shutil.rmtree(d, ignore_errors=True)
    return {"loop_s": (t1 - t0) / steps, "with_finish_s": (t2 - t0) / steps}


# -- init -> first log ------------------------------------------------------------
def ours_init(work: Path) -> dict:
    import synadb.integrations.wandb as swb

    path = str(work / f"init_{time.monotonic_ns()}.db")
    t0 = time.perf_counter()
    run = swb.init(project="bench", dir=path, config={"lr": 0.01, "epochs": 10})
    run.log(_step(0))
    t1 = time.perf_counter()
    run.flush()
    t2 = time.perf_counter()
    run.finish()
    swb.teardown()
    return {"first_log_s": t1 - t0, "first_row_in_file_s": t2 - t0}


def wandb_init(work: Path) -> dict:
    import wandb

    d = tempfile.mkdtemp(dir=work, prefix="wandb_")
    t0 = time.perf_counter()
    run = wandb.init(project="bench", dir=d, mode="offline", config={"lr": 0.01, "epochs": 10},
                     settings=wandb.Settings(console="off", silent=True, save_code=False))
    run.log(_step(0))
    t1 = time.perf_counter()
    run.finish()
    shutil.rmtree(d, ignore_errors=True)
    return {"first_log_s": t1 - t0}


# -- Api().runs over 10K runs --------------------------------------------------------
def build_runs(path: Path, n: int) -> float:
    """``n`` finished runs as ``wandb.init``/``finish`` leave them (config and
    summary tags, labels), written through the tracker in one batch.

    ``end_run`` fsyncs each run; building the fixture, one fsync at the end
    does: SynaDB.sync is a no-op while building, and runs once after."""
    from synadb import ExperimentTracker
    from synadb.db import SynaDB

    t0 = time.perf_counter()
    real_sync = SynaDB.sync
    SynaDB.sync = lambda self: None  # type: ignore[method-assign]
    try:
        with ExperimentTracker(path) as tr:
            with tr.db.batch():
                for i in range(n):
                    cfg = {"lr": 10 ** -(1 + i % 4), "batch_size": 2 ** (4 + i % 3),
                           "model": {"depth": i % 7}}
                    summary = {"acc": (i % 100) / 100, "loss": 1 - (i % 100) / 100,
                               "_step": 99, "_runtime": 12.5}
                    tags = [f"t{i % 5}"]
                    rid = tr.start_run("bench", tags, name=f"run-{i}", params=cfg, tag_values={
                        "wandb.config": json.dumps(cfg), "wandb.summary": json.dumps(summary),
                        "wandb.tags": json.dumps(tags), "wandb.entity": "local"})
                    tr.end_run(rid, "Failed" if i % 10 == 0 else "Completed")
            SynaDB.sync = real_sync  # type: ignore[method-assign]
            tr.sync()
    finally:
        SynaDB.sync = real_sync  # type: ignore[method-assign]
    return time.perf_counter() - t0


def ours_query(path: Path, n: int, warm_reps: int) -> dict:
    import synadb.integrations.wandb as swb

    t0 = time.perf_counter()
    api = swb.Api(file=str(path))
    got = api.runs("bench", filters=FILTER, order=ORDER)
    t1 = time.perf_counter()
    expected = sum(1 for i in range(n) if 10 ** -(1 + i % 4) > 0.005 and i % 100 >= 90
                   and i % 10 != 0 and i % 5 in (1, 2))
    assert len(got) == expected, (len(got), expected)
    assert got[0].summary["acc"] >= got[-1].summary["acc"]
    warm = []
    for _ in range(warm_reps):
        t2 = time.perf_counter()
        api.runs("bench", filters=FILTER, order=ORDER)
        warm.append(time.perf_counter() - t2)
    swb.teardown()  # closes the shared read-only handle: the next "first" is cold again
    return {"first_s": t1 - t0, "warm_s": statistics.median(warm), "matches": len(got)}


# -- the table -------------------------------------------------------------------------
def _med(samples: list[dict], key: str) -> float | None:
    vals = [s[key] for s in samples if key in s]
    return statistics.median(vals) if vals else None


def measure(quick: bool = False) -> list[dict]:
    """Measure; return rows ``{"bench", "ours_s", "peer", "peer_s", "ratio",
    "target", "ok", "note"}`` (seconds)."""
    p = QUICK if quick else FULL
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_MODE"] = "offline"
    try:
        import wandb  # noqa: F401

        have_wandb = True
    except ImportError:
        have_wandb = False
    work = Path(tempfile.mkdtemp(prefix="bench_wandb_"))
    rows: list[dict] = []
    try:
        ol: list[dict] = []
        wl: list[dict] = []
        osl: list[dict] = []
        wsl: list[dict] = []
        for rep in range(p["reps"]):
            log(f"log, repetition {rep + 1}/{p['reps']} (load {c.loadavg()})")
            ol.append(ours_log(work, p["ours_steps"]))
            if have_wandb:
                wl.append(wandb_log(work, p["wandb_steps"]))
            osl.append(ours_log(work, p["ours_steps"], with_step=True))
            if have_wandb:
                wsl.append(wandb_log(work, p["wandb_steps"], with_step=True))
        oi: list[dict] = []
        wi: list[dict] = []
        for rep in range(p["init_reps"]):
            log(f"init, repetition {rep + 1}/{p['init_reps']}")
            oi.append(ours_init(work))
            if have_wandb and rep < p["wandb_init_reps"]:
                wi.append(wandb_init(work))
        if have_wandb:
            import wandb as real_wandb

            real_wandb.teardown()
        path = work / "runs10k.db"
        built = build_runs(path, p["n_runs"])
        log(f"{p['n_runs']} runs built in {built:.2f} s")
        q = [ours_query(path, p["n_runs"], p["warm_reps"]) for _ in range(3 if quick else 5)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ratio(peer: float | None, ours: float | None) -> float | None:
        return None if peer is None or not ours else peer / ours

    steps = f"{p['ours_steps']} steps (W&B {p['wandb_steps']})"
    for key, label in (("loop_s", "loop"), ("with_finish_s", "loop + finish")):
        ours, peer = _med(ol, key), _med(wl, key)
        r = ratio(peer, ours)
        rows.append({"bench": f"wandb.log, dict of 5 metrics ({label})", "ours_s": ours,
                     "peer": "W&B offline run.log", "peer_s": peer, "ratio": r,
                     "target": f">= {T_LOG_RATIO:.0f}x" if key == "loop_s" else "",
                     "ok": (r is not None and r >= T_LOG_RATIO) if key == "loop_s" else None,
                     "note": steps})
    ours, peer = _med(osl, "loop_s"), _med(wsl, "loop_s")
    rows.append({"bench": "wandb.log(dict of 5 metrics, step=n) (loop)", "ours_s": ours,
                 "peer": "W&B offline run.log", "peer_s": peer, "ratio": ratio(peer, ours),
                 "target": "", "ok": None, "note": steps})
    first = _med(oi, "first_log_s")
    rows.append({"bench": "wandb.init -> first log returned (new file, system metrics on)",
                 "ours_s": first, "peer": "W&B offline init -> log",
                 "peer_s": _med(wi, "first_log_s"), "ratio": ratio(_med(wi, "first_log_s"),
                                                                   first),
                 "target": f"<= {T_INIT_S * 1e3:.0f} ms", "ok": first is not None
                 and first <= T_INIT_S, "note": f"median of {len(oi)}"})
    rows.append({"bench": "wandb.init -> first row in the file (run.flush())",
                 "ours_s": _med(oi, "first_row_in_file_s"), "peer": "", "peer_s": None,
                 "ratio": None, "target": "", "ok": None, "note": ""})
    warm = _med(q, "warm_s")
    rows.append({"bench": f"Api().runs over {p['n_runs']} runs, Mongo filter + order "
                          "(repeated query)", "ours_s": warm, "peer": "", "peer_s": None,
                 "ratio": None, "target": f"<= {T_QUERY_S * 1e3:.0f} ms",
                 "ok": warm is not None and warm <= T_QUERY_S,
                 "note": f"{q[0]['matches']} matches; filter {json.dumps(FILTER)}"})
    rows.append({"bench": f"Api().runs over {p['n_runs']} runs, first query of a new Api "
                          "(open + catalog parse)", "ours_s": _med(q, "first_s"), "peer": "",
                 "peer_s": None, "ratio": None, "target": "", "ok": None,
                 "note": f"fixture built in {built:.1f} s"})
    return rows


HEADERS = ["benchmark", "synadb", "peer", "peer time", "ratio", "target", "met", "notes"]


def table_rows(rows: list[dict]) -> list[list[str]]:
    return [[r["bench"], c.fmt_time(r["ours_s"]), r["peer"] or "",
             c.fmt_time(r["peer_s"]) if r["peer_s"] is not None else "",
             c.fmt_ratio(r["ratio"]) if r["ratio"] is not None else "", r["target"],
             "" if r["ok"] is None else ("yes" if r["ok"] else "NO"), r["note"]]
            for r in rows]


def run(quick: bool = False) -> list[list[str]]:
    """Run the benchmark; print the table (markdown) and return its rows.
    The raw figures go to benchmarks/out/wandb.json."""
    info = c.machine_info()
    start_load = c.loadavg()
    raw = measure(quick)
    try:
        import wandb

        peer = f"wandb {wandb.__version__} (offline)"
    except ImportError:
        peer = "wandb not installed: no W&B figures"
    c.write_json(Path(__file__).resolve().parent / "out" / "wandb.json",
                 {"quick": quick, "machine": info, "peer": peer, "rows": raw})
    rows = table_rows(raw)
    print(f"W&B-style API benchmark ({'quick' if quick else 'full'} run) on {info['cpu']}, "
          f"{info['cores']} cores, Python {info['python']}, {peer}; commit {info['commit']}; "
          f"{info['date']}; load average {start_load} at start, {c.loadavg()} at end.")
    print("Medians of interleaved repetitions; ratios are W&B time / synadb time.\n")
    print(c.markdown_table(HEADERS, rows))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    args = ap.parse_args()
    try:
        run(args.quick)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
