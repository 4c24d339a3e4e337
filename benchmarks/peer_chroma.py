"""Chroma on the vector benchmark's data (run by bench_vectors.py in ``.venv-chroma``).

``chromadb.PersistentClient`` (in process, on disk), one collection in cosine
space with the same HNSW knobs as the others through the collection metadata
(``hnsw:M``, ``hnsw:construction_ef``, ``hnsw:search_ef``).  Chroma builds its
HNSW index while adding, so its insert and build are one figure.  Prints one
JSON line after each phase (the last one is the full result), so a run that
hits its time limit still reports what it finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", type=int, default=100)
    args = ap.parse_args()

    import bench_vectors as bv
    out: dict = {}

    def emit() -> None:
        print(json.dumps(out), flush=True)

    try:
        import chromadb
        from chromadb.config import Settings
    except Exception as e:
        print(json.dumps({"error": f"chromadb not importable: {type(e).__name__}: {e}"}))
        return 0
    x, q, gt = bv.load_data(Path(args.data))
    n = len(x)
    path = Path(args.workdir) / "chroma"
    settings = Settings(anonymized_telemetry=False)
    try:
        client = chromadb.PersistentClient(path=str(path), settings=settings)
        meta = {"hnsw:space": "cosine", "hnsw:M": args.m,
                "hnsw:construction_ef": args.ef_construction, "hnsw:search_ef": args.ef_search}
        col = client.create_collection("bench", metadata=meta, embedding_function=None)
        hnsw = (getattr(col, "configuration", None) or {}).get("hnsw") or {}
        out["note"] = (f"chromadb {chromadb.__version__}; cosine, M={hnsw.get('max_neighbors', '?')} "
                       f"efC={hnsw.get('ef_construction', '?')} ef={hnsw.get('ef_search', '?')}; "
                       "indexes while adding (insert = build)")
        ids = [str(i) for i in range(n)]
        step = client.get_max_batch_size()
        gc.collect()
        t0 = time.perf_counter()
        for s in range(0, n, step):
            col.add(ids=ids[s:s + step], embeddings=x[s:s + step])
        out["insert_s"] = time.perf_counter() - t0
        out["build_s"] = None
        emit()
        k = args.k
        lat, found = bv.time_queries(
            lambda v: col.query(query_embeddings=v.reshape(1, -1), n_results=k, include=[]), q,
            lambda r: [int(i) for i in r["ids"][0]])
        out.update(bv.query_stats(lat, found, gt))
        emit()
        del col, client
        from chromadb.api.shared_system_client import SharedSystemClient
        SharedSystemClient.clear_system_cache()
        gc.collect()
        out["file_bytes"] = bv.dir_bytes(path)

        def reopen():
            cl = chromadb.PersistentClient(path=str(path), settings=settings)
            co = cl.get_collection("bench", embedding_function=None)
            return co.query(query_embeddings=q[:1], n_results=k, include=[])

        out["reopen_first_search_s"], r = bv.timed(reopen)
        out["reopen_first_hit_ok"] = int(r["ids"][0][0]) == int(gt[0][0])
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
