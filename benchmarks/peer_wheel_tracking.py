"""Tracking and registry workloads on the published ``synadb==1.4.0`` wheel.

Runs inside ``.venv-peers`` (``.venv-peers/bin/python -I
benchmarks/peer_wheel_tracking.py ...``; ``-I`` keeps our repo off sys.path,
so ``import synadb`` is the wheel) and prints one JSON object on stdout.
bench_tracking.py calls it once per repetition, between our own
measurements, so that ours and the wheel are interleaved in time.

The wheel's ``Experiment`` opens ``SynaDB(path)``, whose default fsyncs every
put, and has no option to turn that off; ``--nosync`` swaps the class its
modules use for one that passes ``sync_on_write=False`` (the wheel's own
constructor option), to see the wheel's cost without the fsyncs.

Sections:
  tracking  R runs x P params, E epochs x M metrics, one ``run.log_metric``
            per metric; metrics/s of the metric loop.
  list      ``Experiment.list_runs()`` (ids only: the wheel has no run
            objects in its listing) on a file of N runs: first call on a
            fresh handle (open + call) and warm.
  registry  ``ModelRegistry.save(name, bytes)`` / ``load(name, version)`` for
            V versions of S bytes (the wheel verifies SHA-256 on load).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent


def _patch_nosync(synadb) -> None:
    """Make the wheel's Experiment and ModelRegistry open with sync_on_write=False."""
    import synadb.experiment as exp_mod
    import synadb.models as models_mod

    base = synadb.SynaDB

    class NoSync(base):  # type: ignore[misc, valid-type]
        def __init__(self, path, sync_on_write=False):
            super().__init__(path, sync_on_write=False)

    exp_mod.SynaDB = NoSync
    models_mod.SynaDB = NoSync


def tracking(work: Path, runs: int, params: int, epochs: int, metrics: int) -> dict:
    from synadb import Experiment

    path = str(work / "trk.db")
    exp = Experiment("bench", path)
    names = [f"metric_{i}" for i in range(metrics)]
    pvals = {f"param_{i}": i * 0.5 for i in range(params)}
    n = 0
    loop_s = 0.0
    t_all = time.perf_counter()
    for _ in range(runs):
        run = exp.start_run(tags=["bench"])
        run.log_params(pvals)
        t0 = time.perf_counter()
        log = run.log_metric
        for ep in range(epochs):
            for m in names:
                log(m, 0.5 + ep * 1e-3, step=ep)
        loop_s += time.perf_counter() - t0
        n += epochs * metrics
        run.end("completed")
    total_s = time.perf_counter() - t_all
    exp.close()
    return {"n": n, "loop_s": loop_s, "total_s": total_s, "per_s": n / loop_s}


def list_runs(work: Path, n_runs: int, params: int, warm_reps: int) -> dict:
    from synadb import Experiment

    path = str(work / f"list_{n_runs}.db")
    exp = Experiment("bench", path)
    pvals = {f"param_{i}": i * 0.5 for i in range(params)}
    t0 = time.perf_counter()
    for _ in range(n_runs):
        run = exp.start_run(tags=["bench"])
        run.log_params(pvals)
    build_s = time.perf_counter() - t0
    exp.close()
    t0 = time.perf_counter()
    exp = Experiment("bench", path)
    ids = exp.list_runs()
    cold = time.perf_counter() - t0
    assert len(ids) == n_runs, len(ids)
    warm = []
    for _ in range(warm_reps):
        t0 = time.perf_counter()
        ids = exp.list_runs()
        warm.append(time.perf_counter() - t0)
    exp.close()
    return {"n_runs": n_runs, "build_s": build_s, "cold_s": cold,
            "warm_s": statistics.median(warm), "returns": "run ids (str)"}


def registry(work: Path, size: int, versions: int) -> dict:
    from synadb import ModelRegistry

    path = str(work / f"reg_{size}.db")
    reg = ModelRegistry(path)
    blobs = [os.urandom(size) for _ in range(2)]
    save, load = [], []
    for v in range(versions):
        data = blobs[v % 2]
        t0 = time.perf_counter()
        mv = reg.save("model", data, {"v": str(v)})
        save.append(time.perf_counter() - t0)
        assert mv.version == v + 1
    for v in range(versions):
        t0 = time.perf_counter()
        out = reg.load("model", version=v + 1)
        load.append(time.perf_counter() - t0)
        assert len(out) == size
    reg.close()
    return {"size": size, "versions": versions, "save_s": save, "load_s": load}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--section", choices=("tracking", "list", "registry"), required=True)
    ap.add_argument("--nosync", action="store_true", help="sync_on_write=False")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--params", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--metrics", type=int, default=5)
    ap.add_argument("--n-runs", type=int, default=10)
    ap.add_argument("--warm-reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--versions", type=int, default=10)
    args = ap.parse_args()

    import synadb  # the wheel: must not be our repo's package

    origin = Path(synadb.__file__).resolve()
    if REPO_ROOT / "synadb" in origin.parents:
        print(json.dumps({"error": f"imported our package ({origin}), not the wheel"}))
        return 2
    if args.nosync:
        _patch_nosync(synadb)
    work = Path(tempfile.mkdtemp(prefix="wheel_", dir=args.workdir))
    out: dict = {"version": getattr(synadb, "__version__", "?"), "nosync": args.nosync}
    try:
        if args.section == "tracking":
            out.update(tracking(work, args.runs, args.params, args.epochs, args.metrics))
        elif args.section == "list":
            out.update(list_runs(work, args.n_runs, args.params, args.warm_reps))
        else:
            out.update(registry(work, args.size, args.versions))
    except Exception as e:  # report, never hang the harness
        out["error"] = f"{type(e).__name__}: {e}"
        out["trace"] = traceback.format_exc(limit=4)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
