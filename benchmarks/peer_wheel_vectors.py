"""The published ``synadb==1.4.0`` wheel's VectorStore on the vector benchmark's data.

Run by bench_vectors.py inside ``.venv-peers`` as ``python -I`` (so ``import
synadb`` is the wheel, never this repo's package).  The wheel's native HNSW
takes no M/efConstruction/ef arguments, so it runs with its built-in values.
Bulk load is its documented fastest path: ``insert_batch_fast`` (index
deferred) then ``build_index``; ``sync_on_write=False`` as for ours.  Prints
one JSON line after each phase (the last one is the full result), so a run
that hits its time limit still reports what it finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--m", type=int, default=16)              # not settable in the wheel
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", type=int, default=100)
    args = ap.parse_args()

    import synadb
    from synadb import VectorStore

    origin = Path(synadb.__file__).resolve()
    if REPO_ROOT / "synadb" in origin.parents:
        print(json.dumps({"error": f"imported our package ({origin}), not the wheel"}))
        return 0
    sys.path.insert(0, str(HERE))
    import bench_vectors as bv

    out: dict = {"note": f"wheel {synadb.__version__}: built-in HNSW params (not settable); "
                         "insert_batch_fast + build_index, sync_on_write=False"}

    def emit() -> None:
        print(json.dumps(out), flush=True)

    x, q, gt = bv.load_data(Path(args.data))
    n, d = x.shape
    path = str(Path(args.workdir) / "wheel.db")
    kw = dict(dimensions=d, metric="cosine", backend="hnsw", sync_on_write=False)
    try:
        store = VectorStore(path, **kw)
        keys = [str(i) for i in range(n)]
        gc.collect()
        out["insert_s"], _ = bv.timed(lambda: store.insert_batch_fast(keys, x))
        emit()
        out["build_s"], _ = bv.timed(store.build_index)
        emit()
        k = args.k
        lat, found = bv.time_queries(lambda v: store.search(v, k=k), q,
                                     lambda r: [int(h.key) for h in r])
        out.update(bv.query_stats(lat, found, gt))
        emit()
        out["close_s"], _ = bv.timed(store.close)
        del store
        gc.collect()
        out["file_bytes"] = bv.dir_bytes(Path(args.workdir))

        def reopen():
            s = VectorStore(path, **kw)
            return s.search(q[0], k=k)

        out["reopen_first_search_s"], r = bv.timed(reopen)
        out["reopen_first_hit_ok"] = bool(r) and int(r[0].key) == int(gt[0][0])
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
