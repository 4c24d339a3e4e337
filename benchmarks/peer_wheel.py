"""Measure the published ``synadb==1.4.0`` wheel (the peer).

The wheel shares our import name, so this script runs inside ``.venv-peers``
(started by run.py as ``.venv-peers/bin/python -I benchmarks/peer_wheel.py``;
``-I`` keeps the repo root and PYTHONPATH off sys.path so ``import synadb``
finds the wheel, never our package).  It prints one JSON object on stdout.

The workloads are the same functions (benchmarks/_workloads.py) that run.py
uses for our engine, so both sides are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--n-put", type=int, default=20_000)
    ap.add_argument("--n-fsync", type=int, default=200)
    ap.add_argument("--n-get-hist", type=int, default=100_000)
    ap.add_argument("--n-history", type=int, default=1_000_000)
    ap.add_argument("--n-open", type=int, default=1_200_000)
    ap.add_argument("--open-keys", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--put-repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="comma list of sections to run")
    args = ap.parse_args()

    import synadb  # the wheel: must not be our repo's package
    from synadb import SynaDB

    origin = Path(synadb.__file__).resolve()
    if REPO_ROOT / "synadb" in origin.parents:
        print(json.dumps({"error": f"imported our package ({origin}), not the wheel"}))
        return 2

    # Only our stdlib/numpy helpers; benchmarks/ holds no 'synadb' module.
    sys.path.insert(0, str(HERE))
    import _workloads as w
    from _common import init_signature

    sig = init_signature(SynaDB)
    out: dict = {
        "version": getattr(synadb, "__version__", "?"),
        "module": str(origin),
        "constructor": sig,
        "python": sys.version.split()[0],
        "sections": {},
    }
    only = {s for s in args.only.split(",") if s}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="peer_wheel_"))
    workdir.mkdir(parents=True, exist_ok=True)

    def section(name, fn):
        if only and name not in only:
            return None
        try:
            res = fn()
        except Exception as e:  # report, keep measuring the rest
            res = {"error": f"{type(e).__name__}: {e}",
                   "trace": traceback.format_exc(limit=3)}
        out["sections"][name] = res
        print(f"[peer] {name}: {json.dumps(res)[:200]}", file=sys.stderr, flush=True)
        return res

    put = section("put_nofsync", lambda: w.put_distinct(
        SynaDB, workdir, args.n_put, sync=False, repeats=args.put_repeats, tag="nofsync"))
    section("put_default_fsync", lambda: w.put_distinct(
        SynaDB, workdir, args.n_fsync, repeats=args.put_repeats, tag="fsync"))
    section("get_latest", lambda: w.get_latest(SynaDB, workdir, args.n_get_hist))
    section("history_tensor", lambda: w.history_tensor(SynaDB, workdir, args.n_history))
    hint = put["per_op_s"] * 1e6 if put and "per_op_s" in put else None
    section("open", lambda: w.open_records(
        SynaDB, workdir, args.n_open, n_keys=args.open_keys, repeats=args.repeats,
        put_us_hint=hint))

    try:
        os.rmdir(workdir)
    except OSError:
        pass
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
