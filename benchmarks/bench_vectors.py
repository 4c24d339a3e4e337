"""Vector benchmark: synadb's VectorStore vs raw hnswlib, Chroma and the 1.4.0 wheel.

Every system gets the same data: ``n`` clustered unit vectors of 384 dims
(Gaussian blobs around 1000 random unit centres, fixed seed, made with numpy;
nothing is downloaded), 1000 queries drawn the same way, k=10, exact ground
truth by numpy.  Queries are sent one at a time, each timed on its own with
``time.perf_counter`` (GC off, 10 untimed warm-up queries first).

Systems:
  * raw hnswlib     -- ``hnswlib.Index`` in this process (M=16, efC=200, ef=100);
  * ours            -- ``synadb.VectorStore`` with the same knobs:
                       ``insert_batch`` (index deferred) then ``build_index``;
  * raw file write  -- the matrix's float32 bytes written with one ``f.write``
                       (the floor for ``insert_batch``);
  * Chroma          -- ``chromadb.PersistentClient`` in ``.venv-chroma``
                       (benchmarks/peer_chroma.py, a subprocess);
  * wheel 1.4.0     -- the published ``synadb`` wheel's ``VectorStore`` in
                       ``.venv-peers`` (benchmarks/peer_wheel_vectors.py).

Usage:  python benchmarks/bench_vectors.py [--quick] [--skip-peers] [--strict]
        (also run by ``benchmarks/run.py``, after the core table)
Writes: benchmarks/out/vectors.md and benchmarks/out/vectors.json

This module imports neither synadb nor hnswlib at import time: the peer
scripts import it (inside their own venvs) for the data and timing helpers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _common as c  # noqa: E402

REPO_ROOT = c.REPO_ROOT
CHROMA_VENV = REPO_ROOT / ".venv-chroma"
CHROMA_SPEC = "chromadb==1.5.9"
PEERS_VENV = REPO_ROOT / ".venv-peers"
WHEEL_SPEC = "synadb==1.4.0"
WHEEL_VERSION = "1.4.0"

FULL = dict(n=100_000, n_queries=1000, dim=384, centres=1000, spread=0.75, k=10,
            m=16, ef_construction=200, ef_search=100, seed=20240601)
QUICK = dict(FULL, n=20_000)

# Targets from the issue.
P50_RATIO_MAX = 1.2       # our p50 <= 1.2x raw hnswlib ...
RECALL_MIN = 0.95         # ... at recall@10 >= 0.95
BUILD_RATIO_MAX = 1.2     # our build_index <= 1.2x raw hnswlib
REOPEN_MAX_S = 0.25       # close, reopen, first search
INSERT_RATE_MIN = 0.5     # insert_batch >= 0.5x the raw-bytes write speed
FILTER_RATIO_MAX = 2.0    # filtered p50 <= 2x unfiltered, same store, at recall >= RECALL_MIN
FILTER_SHARES = (0.01, 0.10)  # the share of the vectors a filter leaves

WARMUP_QUERIES = 10


def log(msg: str) -> None:
    print(f"[vectors] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# data (also used by the peer scripts)
# --------------------------------------------------------------------------
def make_data(p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) base vectors and (n_queries, dim) queries, float32, unit length."""
    rng = np.random.default_rng(p["seed"])
    d = p["dim"]
    centres = rng.standard_normal((p["centres"], d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    scale = np.float32(p["spread"] / np.sqrt(d))

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, d), dtype=np.float32)
        for s in range(0, m, 20_000):
            e = min(m, s + 20_000)
            lab = rng.integers(0, p["centres"], e - s)
            x = centres[lab] + scale * rng.standard_normal((e - s, d), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[s:e] = x
        return out

    return draw(p["n"]), draw(p["n_queries"])


def ground_truth(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids by cosine (the vectors are unit: inner product)."""
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), 250):
        sim = q[s:s + 250] @ x.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
        out[s:s + 250] = np.take_along_axis(top, order, axis=1)
    return out


def save_data(folder: Path, x: np.ndarray, q: np.ndarray, gt: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "base.npy", x)
    np.save(folder / "queries.npy", q)
    np.save(folder / "gt.npy", gt)


def load_data(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.load(folder / "base.npy"), np.load(folder / "queries.npy"),
            np.load(folder / "gt.npy"))


# --------------------------------------------------------------------------
# timing helpers (also used by the peer scripts)
# --------------------------------------------------------------------------
def time_queries(search: Callable[[np.ndarray], Any], queries: np.ndarray,
                 to_ids: Callable[[Any], list[int]]) -> tuple[np.ndarray, list[list[int]]]:
    """Run each query alone; return per-query seconds and the ids found."""
    for q in queries[:WARMUP_QUERIES]:
        search(q)
    lat = np.empty(len(queries))
    raw = []
    gc.collect()
    gc.disable()
    try:
        pc = time.perf_counter
        for i, q in enumerate(queries):
            t0 = pc()
            r = search(q)
            lat[i] = pc() - t0
            raw.append(r)
    finally:
        gc.enable()
    return lat, [to_ids(r) for r in raw]


def recall_at_k(found: list[list[int]], gt: np.ndarray) -> float:
    k = gt.shape[1]
    hits = sum(len(set(f[:k]) & set(g.tolist())) for f, g in zip(found, gt))
    return hits / (k * len(gt))


def query_stats(lat: np.ndarray, found: list[list[int]], gt: np.ndarray) -> dict:
    return {"p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)),
            "mean_s": float(lat.mean()), "recall": recall_at_k(found, gt),
            "n_queries": int(len(lat))}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, res


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --------------------------------------------------------------------------
# in-process systems
# --------------------------------------------------------------------------
def measure_raw_write(x: np.ndarray, work: Path, repeats: int = 3) -> dict:
    """One f.write of the matrix's float32 bytes into a fresh file; best of ``repeats``.

    ``nofsync``: open + write + close (the bytes reach the page cache, as our
    insert_batch's do).  ``fsync``: the same plus ``os.fsync`` before close.
    """
    path = work / "raw_matrix.f32"
    buf = memoryview(np.ascontiguousarray(x, dtype="<f4")).cast("B")
    res: dict = {"bytes": buf.nbytes}
    for mode in ("nofsync", "fsync"):
        best = float("inf")
        for _ in range(repeats):
            path.unlink(missing_ok=True)
            t0 = time.perf_counter()
            with open(path, "wb") as f:
                f.write(buf)
                if mode == "fsync":
                    f.flush()
                    os.fsync(f.fileno())
            best = min(best, time.perf_counter() - t0)
        res[f"{mode}_s"] = best
    path.unlink(missing_ok=True)
    return res


def measure_raw_hnswlib(x: np.ndarray, q: np.ndarray, gt: np.ndarray, p: dict,
                        work: Path) -> dict:
    import hnswlib

    n, d = x.shape
    index = hnswlib.Index(space="cosine", dim=d)
    index.init_index(max_elements=n, ef_construction=p["ef_construction"], M=p["m"])
    build_s, build_cpu_s = timed_cpu(lambda: index.add_items(x, np.arange(n)))
    index.set_ef(p["ef_search"])
    k = p["k"]
    lat, found = time_queries(lambda v: index.knn_query(v, k=k)[0], q,
                              lambda r: r[0].tolist())
    res = {"build_s": build_s, "build_cpu_s": build_cpu_s, "threads": os.cpu_count(), **query_stats(lat, found, gt),
           "hnswlib": _dist_version("hnswlib")}
    # For orientation: hnswlib's own save + load + first search.
    path = work / "raw.hnsw"
    res["save_s"], _ = timed(lambda: index.save_index(str(path)))
    del index
    gc.collect()

    def reopen():
        idx = hnswlib.Index(space="cosine", dim=d)
        idx.load_index(str(path), max_elements=n)
        idx.set_ef(p["ef_search"])
        return idx.knn_query(q[0], k=k)

    res["reopen_first_search_s"], _ = timed(reopen)
    res["file_bytes"] = path.stat().st_size
    path.unlink()
    return res


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "?"


def import_ours():
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(1, str(REPO_ROOT))
    import synadb
    from synadb import VectorStore

    origin = Path(synadb.__file__).resolve()
    if REPO_ROOT / "synadb" not in origin.parents:
        raise ImportError(f"'synadb' resolves to {origin}, not this repo")
    return VectorStore


def measure_ours(x: np.ndarray, q: np.ndarray, gt: np.ndarray, p: dict, work: Path) -> dict:
    VectorStore = import_ours()
    n = len(x)
    keys = [str(i) for i in range(n)]
    k = p["k"]
    kw = dict(dimensions=p["dim"], metric="cosine", m=p["m"],
              ef_construction=p["ef_construction"], ef_search=p["ef_search"],
              progress=False)
    res: dict = {}

    # insert_batch with the index deferred (best of 2 fresh files), then
    # build_index on the second.  insert_batch is one all-or-nothing batch, and
    # synadb fsyncs at the end of every batch (DbConfig.sync_on_write docs),
    # so it is durable on return.
    tries = []
    for attempt in range(2):
        path = work / f"ours_{attempt}.db"
        store = VectorStore(path, index_threshold=2**62, **kw)
        gc.collect()
        tries.append(timed(lambda: store.insert_batch(keys, x))[0])
        if attempt == 0:
            store.close()
            path.unlink()
    res["insert_s"], res["insert_tries_s"] = min(tries), tries
    res["build_s"], res["build_cpu_s"] = timed_cpu(lambda: store.build_index(progress=False))
    lat, found = time_queries(lambda v: store.search(v, k=k), q,
                              lambda r: [int(h.key) for h in r])
    res.update(query_stats(lat, found, gt))
    res["close_s"], _ = timed(store.close)
    res["file_bytes"] = path.stat().st_size
    del store
    gc.collect()

    # Reopen (the index comes back from the snapshot) + first search.
    holder: dict = {}

    def reopen():
        s = VectorStore(path, **kw)
        holder["s"] = s
        return s.search(q[0], k=k)

    res["reopen_first_search_s"], hits = timed(reopen)
    s = holder["s"]
    res["reopen_index_loaded"] = getattr(s, "_index", None) is not None
    res["reopen_first_hit_ok"] = bool(hits) and int(hits[0].key) == int(gt[0][0])
    res["second_search_s"], _ = timed(lambda: s.search(q[1], k=k))
    s.close()
    path.unlink()
    return res


def measure_filtered(x: np.ndarray, q: np.ndarray, p: dict, work: Path) -> dict:
    """Filtered search on its own store: every vector gets ``{"r": int in
    [0, 1000)}`` (random, independent of the vector), and ``{"r": {"$lt": t}}``
    leaves the share ``t / 1000``.  p50 against unfiltered on the same store;
    recall@10 against the exact answer among the matching vectors."""
    VectorStore = import_ours()
    n, k = len(x), p["k"]
    r = np.random.default_rng(p["seed"] + 1).integers(0, 1000, n)
    path = work / "ours_filtered.db"
    store = VectorStore(path, dimensions=p["dim"], metric="cosine", m=p["m"],
                        ef_construction=p["ef_construction"], ef_search=p["ef_search"],
                        index_threshold=2**62, progress=False)
    try:
        store.insert_batch([str(i) for i in range(n)], x, [{"r": int(v)} for v in r])
        store.build_index(progress=False)
        lat, _ = time_queries(lambda v: store.search(v, k=k), q, lambda res: [])
        res: dict = {"unfiltered_p50_s": float(np.percentile(lat, 50))}
        for share in FILTER_SHARES:
            flt = {"r": {"$lt": int(round(share * 1000))}}
            allowed = np.flatnonzero(r < int(round(share * 1000)))
            gt = np.empty((len(q), k), dtype=np.int64)
            for s in range(0, len(q), 250):
                sim = q[s:s + 250] @ x[allowed].T
                top = np.argsort(-sim, axis=1)[:, :k]
                gt[s:s + 250] = allowed[top]
            lat, found = time_queries(lambda v: store.search(v, k=k, filter=flt), q,
                                      lambda res: [int(h.key) for h in res])
            res[f"{share:g}"] = dict(query_stats(lat, found, gt), allowed=int(len(allowed)))
    finally:
        store.close()
        path.unlink(missing_ok=True)
    return res


# --------------------------------------------------------------------------
# peers (subprocesses in their own venvs)
# --------------------------------------------------------------------------
def _venv_ok(py: Path, check: str) -> tuple[bool, str]:
    try:
        out = subprocess.run([str(py), "-I", "-c", check], capture_output=True, text=True,
                             timeout=180)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    last = (out.stderr.strip().splitlines() or out.stdout.strip().splitlines() or ["?"])[-1]
    return out.returncode == 0, last


def ensure_venv(venv: Path, specs: list[str], check: str) -> tuple[Path | None, str]:
    """``venv``'s python once ``check`` runs there, installing ``specs`` if needed."""
    py = venv / "bin" / "python"
    if py.exists():
        ok, _ = _venv_ok(py, check)
        if ok:
            return py, f"reused {venv.name}"
    try:
        if not py.exists():
            log(f"creating {venv.name} ...")
            subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)],
                           check=True, capture_output=True, text=True, timeout=300)
        log(f"installing {' '.join(specs)} into {venv.name} ...")
        out = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *specs],
                             capture_output=True, text=True, timeout=1200)
        if out.returncode != 0:
            return None, "pip install failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    except (OSError, subprocess.SubprocessError) as e:
        lines = (getattr(e, "stderr", None) or str(e)).strip().splitlines() or ["?"]
        return None, f"could not set up {venv.name}: {lines[-1]}"
    ok, why = _venv_ok(py, check)
    return (py, f"created {venv.name}") if ok else (None, f"not importable after install: {why}")


def run_peer(py: Path, script: str, data: Path, work: Path, p: dict,
             timeout_s: float) -> tuple[dict | None, str]:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [str(py), "-I", str(HERE / script), "--data", str(data), "--workdir", str(work),
           "--k", str(p["k"]), "--m", str(p["m"]), "--ef-construction", str(p["ef_construction"]),
           "--ef-search", str(p["ef_search"])]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    problem = ""
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True,
                              timeout=timeout_s, cwd=str(work), env=env)
        stdout = done.stdout
        if done.returncode != 0:
            problem = f"exit {done.returncode}"
    except subprocess.TimeoutExpired as e:  # run() has killed it; keep what it printed
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        problem = f"stopped at the {timeout_s:.0f} s budget"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [ln for ln in stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        return None, problem or "no result"
    data_out = json.loads(lines[-1])
    if "error" in data_out:
        problem = "; ".join(x for x in (data_out.pop("error"), problem) if x)
    if not any(k.endswith("_s") and v is not None for k, v in data_out.items()):
        return None, problem or "no result"
    if problem:
        missing = [k for k in ("insert_s", "build_s", "p50_s", "reopen_first_search_s")
                   if k not in data_out]
        problem += f" (missing: {', '.join(missing)})" if missing else ""
    return data_out, problem


def measure_chroma(data: Path, work: Path, p: dict, timeout_s: float) -> tuple[dict | None, str]:
    py, note = ensure_venv(CHROMA_VENV, [CHROMA_SPEC, "numpy"],
                           "import numpy, chromadb; print(chromadb.__version__)")
    if py is None:
        return None, note
    log(f"Chroma ({note}) ...")
    return run_peer(py, "peer_chroma.py", data, work, p, timeout_s)


def measure_wheel(data: Path, work: Path, p: dict, timeout_s: float) -> tuple[dict | None, str]:
    check = (f"import numpy, synadb; assert synadb.__version__ == {WHEEL_VERSION!r}, "
             "synadb.__version__")
    py, note = ensure_venv(PEERS_VENV, [WHEEL_SPEC, "numpy"], check)
    if py is None:
        return None, note
    log(f"wheel {WHEEL_VERSION} ({note}) ...")
    return run_peer(py, "peer_wheel_vectors.py", data, work, p, timeout_s)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def _g(d: dict | None, key: str):
    return None if not isinstance(d, dict) else d.get(key)


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _rate(nbytes: float, s: float | None) -> str:
    return "n/a" if not s else f"{nbytes / s / 1e6:.0f} MB/s"


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


HEADERS = ["measure", "synadb VectorStore", "baseline", "ratio", "target", "pass/fail"]
PEER_HEADERS = ["system", "insert", "build index", "p50", "p95", "recall@10",
                "reopen + 1st search", "file", "notes"]


def build_rows(p: dict, ours: dict | None, raw: dict | None, write: dict | None,
               filtered: dict | None = None) -> list[dict]:
    rows: list[dict] = []
    nb = p["n"] * p["dim"] * 4

    def row(measure, ours_s, base_s, ratio, target, ok, ours_txt=None, base_txt=None,
            ratio_txt=None):
        rows.append({"measure": measure, "ours_s": ours_s, "baseline_s": base_s,
                     "ratio": ratio, "target": target, "pass": ok,
                     "cells": [measure, ours_txt or c.fmt_time(ours_s), base_txt or "n/a",
                               ratio_txt or (c.fmt_ratio(ratio) if ratio else "n/a"),
                               target, _verdict(ok)]})

    o50, r50 = _g(ours, "p50_s"), _g(raw, "p50_s")
    orc, rrc = _g(ours, "recall"), _g(raw, "recall")
    r = _ratio(o50, r50)
    ok = None if r is None or orc is None else (r <= P50_RATIO_MAX and orc >= RECALL_MIN)
    row("query p50 (k=10, one at a time)", o50, r50, r,
        f"≤ {P50_RATIO_MAX}× raw at recall ≥ {RECALL_MIN}", ok,
        ours_txt=None if o50 is None else f"{c.fmt_time(o50)} (recall {orc:.4f})",
        base_txt=None if r50 is None else f"raw hnswlib: {c.fmt_time(r50)} (recall {rrc:.4f})",
        ratio_txt=None if r is None else f"{c.fmt_ratio(r)} raw")
    o95, r95 = _g(ours, "p95_s"), _g(raw, "p95_s")
    r = _ratio(o95, r95)
    row("query p95", o95, r95, r, "info", None,
        base_txt=None if r95 is None else f"raw hnswlib: {c.fmt_time(r95)}",
        ratio_txt=None if r is None else f"{c.fmt_ratio(r)} raw")
    ob, rb = _g(ours, "build_s"), _g(raw, "build_s")
    r = _ratio(ob, rb)
    rcpu = _ratio(_g(ours, "build_cpu_s"), _g(raw, "build_cpu_s"))
    row(f"build_index, {p['n'] // 1000}K×{p['dim']} (M={p['m']}, efC={p['ef_construction']})",
        ob, rb, r, f"≤ {BUILD_RATIO_MAX}× raw", None if r is None else r <= BUILD_RATIO_MAX,
        ours_txt=None if ob is None else f"{c.fmt_time(ob)} ({p['n'] / ob:,.0f} vec/s)",
        base_txt=None if rb is None else f"raw hnswlib add_items: {c.fmt_time(rb)} "
                                         f"({p['n'] / rb:,.0f} vec/s)",
        ratio_txt=None if r is None else f"{c.fmt_ratio(r)} raw" + (
            "" if rcpu is None else f" (CPU time {c.fmt_ratio(rcpu)})"))
    oi, wf, wn = _g(ours, "insert_s"), _g(write, "fsync_s"), _g(write, "nofsync_s")
    r = _ratio(wf, oi)  # speed ratio: ours / raw
    row("insert_batch, index deferred (fsyncs at batch end) vs f.write + fsync", oi, wf, r,
        f"≥ {INSERT_RATE_MIN}× raw write speed", None if r is None else r >= INSERT_RATE_MIN,
        ours_txt=None if oi is None else f"{c.fmt_time(oi)} ({_rate(nb, oi)})",
        base_txt=None if wf is None else f"f.write {nb / 1e6:.0f} MB + fsync: {c.fmt_time(wf)} "
                                         f"({_rate(nb, wf)}); no fsync: {c.fmt_time(wn)}",
        ratio_txt=None if r is None else f"{c.fmt_ratio(r)} raw speed")
    oro, rro = _g(ours, "reopen_first_search_s"), _g(raw, "reopen_first_search_s")
    loaded = _g(ours, "reopen_index_loaded")
    row("close, reopen + first search", oro, rro, _ratio(oro, rro), f"≤ {REOPEN_MAX_S} s",
        None if oro is None else (oro <= REOPEN_MAX_S and bool(loaded)),
        ours_txt=None if oro is None else f"{c.fmt_time(oro)}"
                                          f"{'' if loaded else ' (index NOT loaded)'}",
        base_txt=None if rro is None else f"hnswlib load_index + search: {c.fmt_time(rro)}",
        ratio_txt=None if _ratio(oro, rro) is None else f"{c.fmt_ratio(_ratio(oro, rro))} raw")
    oc = _g(ours, "close_s")
    row("close() after build (writes the index snapshot)", oc, _g(raw, "save_s"),
        _ratio(oc, _g(raw, "save_s")), "info", None,
        base_txt=None if _g(raw, "save_s") is None else
        f"hnswlib save_index: {c.fmt_time(raw['save_s'])}")
    u50 = _g(filtered, "unfiltered_p50_s")
    for share in FILTER_SHARES:
        f = _g(filtered, f"{share:g}")
        f50, frc = _g(f, "p50_s"), _g(f, "recall")
        r = _ratio(f50, u50)
        row(f"filtered query p50, filter leaves {share:.0%} (k={p['k']})", f50, u50, r,
            f"≤ {FILTER_RATIO_MAX}× unfiltered at recall ≥ {RECALL_MIN}",
            None if r is None or frc is None else (r <= FILTER_RATIO_MAX and frc >= RECALL_MIN),
            ours_txt=None if f50 is None else f"{c.fmt_time(f50)} (recall {frc:.4f} "
                                              f"vs exact filtered)",
            base_txt=None if u50 is None else f"ours unfiltered: {c.fmt_time(u50)}",
            ratio_txt=None if r is None else f"{c.fmt_ratio(r)} unfiltered")
    return rows


def peer_rows(p: dict, ours: dict | None, raw: dict | None, write: dict | None,
              peers: dict) -> list[list[str]]:
    def fs(v):
        return "n/a" if v is None else c.fmt_time(v)

    def size(v):
        return "n/a" if not v else f"{v / 1e6:.0f} MB"

    def rec(v):
        return "n/a" if v is None else f"{v:.4f}"

    out = []
    if raw:
        out.append(["raw hnswlib (in process)", "—", fs(raw.get("build_s")), fs(raw.get("p50_s")),
                    fs(raw.get("p95_s")), rec(raw.get("recall")),
                    fs(raw.get("reopen_first_search_s")), size(raw.get("file_bytes")),
                    f"hnswlib {raw.get('hnswlib')}; add_items on {raw.get('threads')} threads; "
                    "reopen = load_index"])
    else:
        out.append(["raw hnswlib (in process)"] + ["n/a"] * 7 + ["failed"])
    if ours:
        out.append(["synadb VectorStore (ours)", fs(ours.get("insert_s")), fs(ours.get("build_s")),
                    fs(ours.get("p50_s")), fs(ours.get("p95_s")), rec(ours.get("recall")),
                    fs(ours.get("reopen_first_search_s")), size(ours.get("file_bytes")),
                    "insert_batch (fsync at batch end), build_index; one file"])
    else:
        out.append(["synadb VectorStore (ours)"] + ["n/a"] * 7 + ["failed"])
    for name, (res, note) in peers.items():
        if res is None:
            out.append([name] + ["n/a"] * 7 + [note])
            continue
        out.append([name, fs(res.get("insert_s")), fs(res.get("build_s")), fs(res.get("p50_s")),
                    fs(res.get("p95_s")), rec(res.get("recall")),
                    fs(res.get("reopen_first_search_s")), size(res.get("file_bytes")),
                    "; ".join(x for x in (res.get("note"), note) if x)])
    if write:
        out.append(["raw f.write + fsync of the matrix", fs(write.get("fsync_s")), "—", "—", "—",
                    "—", "—", size(write.get("bytes")),
                    f"without fsync: {fs(write.get('nofsync_s'))}"])
    return out


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------
def run_bench(*, quick: bool = False, skip_peers: bool = False, peers: str = "chroma,wheel",
              out_dir: Path | None = None, work_root: Path | None = None,
              chroma_timeout: float | None = None, wheel_timeout: float | None = None,
              print_fn: Callable[[str], None] = print) -> dict:
    """Run everything; print the tables; write vectors.md/.json.  Returns a dict
    with ``rows``, ``broken`` (ours could not be measured) and ``failed`` (targets)."""
    p = dict(QUICK if quick else FULL)
    out_dir = Path(out_dir or c.OUT_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_root = Path(work_root or out_dir / "tmp")
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vec_", dir=work_root))
    mode = "quick" if quick else "full"
    info = c.machine_info()
    loads: list[tuple[str, str]] = [("start", c.loadavg())]
    t_start = time.perf_counter()
    print_fn(f"vector benchmark ({mode}): {p['n']:,}×{p['dim']} clustered unit vectors "
             f"({p['centres']} centres, seed {p['seed']}), {p['n_queries']} queries one at a time, "
             f"k={p['k']}, HNSW M={p['m']} efC={p['ef_construction']} ef={p['ef_search']}")
    print_fn(f"  load average at start: {loads[0][1]} ({info['cores']} cores)")

    notes: list[str] = []
    raw = ours = write = filtered = None
    peers_res: dict[str, tuple[dict | None, str]] = {}
    try:
        log("generating data + exact ground truth ...")
        gen_s, (x, q) = timed(lambda: make_data(p))
        gt_s, gt = timed(lambda: ground_truth(x, q, p["k"]))
        log(f"data {gen_s:.1f} s, ground truth {gt_s:.1f} s")
        data_dir = work / "data"
        save_data(data_dir, x, q, gt)

        def section(name, fn):
            log(f"{name} ...")
            try:
                res = fn()
            except Exception as e:  # report, go on with the others
                notes.append(f"{name} failed: {type(e).__name__}: {e}")
                log(notes[-1] + "\n" + traceback.format_exc(limit=5))
                res = None
            loads.append((name, c.loadavg()))
            gc.collect()
            return res

        write = section("raw write", lambda: measure_raw_write(x, work))
        raw = section("raw hnswlib", lambda: measure_raw_hnswlib(x, q, gt, p, work))
        ours = section("synadb VectorStore", lambda: measure_ours(x, q, gt, p, work))
        filtered = section("synadb filtered search", lambda: measure_filtered(x, q, p, work))
        del x
        gc.collect()
        want = {s.strip() for s in peers.split(",") if s.strip()}
        if skip_peers:
            want = set()
        # The wheel's single-threaded native HNSW build is far slower than the
        # others (~110-140 s for 20K on 2 busy cores, so many minutes for 100K):
        # it gets a fixed budget and reports what it finished within it.
        ct = chroma_timeout or (300.0 if not quick else 150.0)
        wt = wheel_timeout or (60.0 if not quick else 240.0)
        if "chroma" in want:
            peers_res["Chroma (PersistentClient)"] = section(
                "chroma", lambda: measure_chroma(data_dir, work / "chroma", p, ct)) \
                or (None, "failed (see log)")
        else:
            peers_res["Chroma (PersistentClient)"] = (None, "skipped")
        if "wheel" in want:
            peers_res[f"synadb wheel {WHEEL_VERSION}"] = section(
                "wheel", lambda: measure_wheel(data_dir, work / "wheel", p, wt)) \
                or (None, "failed (see log)")
        else:
            peers_res[f"synadb wheel {WHEEL_VERSION}"] = (None, "skipped")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            work_root.rmdir()
        except OSError:
            pass
    total_s = time.perf_counter() - t_start

    rows = build_rows(p, ours, raw, write, filtered)
    prow = peer_rows(p, ours, raw, write, peers_res)
    if ours:
        notes.append("ours: VectorStore(path, dimensions, metric='cosine', m, ef_construction, "
                     "ef_search, index_threshold=2**62) so insert_batch does not build; "
                     "sync_on_write=False (the default), but a batch fsyncs when it ends, so "
                     "insert_batch is durable on return: its target compares against "
                     "f.write + fsync of the same bytes (equal durability)")
        notes.append("reopen is warm (page cache not dropped) for every system; ours reopen "
                     f"loaded the HNSW snapshot: {ours.get('reopen_index_loaded')}, first hit "
                     f"correct: {ours.get('reopen_first_hit_ok')}, second search "
                     f"{c.fmt_time(ours.get('second_search_s'))}")
    if ours and ours.get("insert_tries_s"):
        notes.append("ours insert_batch tries (best taken): "
                     + ", ".join(c.fmt_time(t) for t in ours["insert_tries_s"]))
    notes.append("build: wall time is the target; CPU time (all threads of the process) is "
                 "shown too, since other jobs on a shared machine stretch wall time")
    notes.append("load average (1/5/15 min) after each section: "
                 + "; ".join(f"{k}: {v}" for k, v in loads))
    notes.append(f"total benchmark time {total_s:.0f} s (incl. data generation)")

    print_fn("")
    print_fn(c.format_table(HEADERS, [r["cells"] for r in rows]))
    print_fn("")
    print_fn(c.format_table(PEER_HEADERS, prow))
    print_fn("\nnotes:")
    for n in notes:
        print_fn(f"  - {n}")

    md = [f"Vector benchmark ({mode} run) on {info['cpu']}, {info['cores']} cores, "
          f"Python {info['python']}; commit {info['commit']}; {info['date']}; "
          f"load average at start {loads[0][1]}.", "",
          f"Data: {p['n']:,}×{p['dim']} clustered unit vectors ({p['centres']} centres), "
          f"{p['n_queries']} queries one at a time, k={p['k']}, HNSW M={p['m']}, "
          f"efC={p['ef_construction']}, ef={p['ef_search']}.", "",
          c.markdown_table(HEADERS, [r["cells"] for r in rows]), "",
          c.markdown_table(PEER_HEADERS, prow), "", "Notes:", ""] + [f"- {n}" for n in notes]
    (out_dir / "vectors.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    c.write_json(out_dir / "vectors.json", {
        "machine": info, "mode": mode, "params": p, "loadavg": loads, "total_s": total_s,
        "raw_write": write, "raw_hnswlib": raw, "ours": ours, "filtered": filtered,
        "peers": {k: {"result": v[0], "note": v[1]} for k, v in peers_res.items()},
        "rows": [{k: v for k, v in r.items() if k != "cells"} for r in rows], "notes": notes})
    print_fn(f"\nwrote {out_dir / 'vectors.md'} and {out_dir / 'vectors.json'}")
    return {"rows": rows, "broken": ours is None,
            "failed": [r["measure"] for r in rows if r["pass"] is False]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="synadb vector benchmark")
    ap.add_argument("--quick", action="store_true", help="20K vectors instead of 100K")
    ap.add_argument("--skip-peers", action="store_true", help="no Chroma, no wheel")
    ap.add_argument("--peers", default="chroma,wheel", help="comma list: chroma,wheel")
    ap.add_argument("--out", default=str(c.OUT_DIR))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--chroma-timeout", type=float, default=None)
    ap.add_argument("--wheel-timeout", type=float, default=None)
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = ap.parse_args(argv)
    res = run_bench(quick=args.quick, skip_peers=args.skip_peers, peers=args.peers,
                    out_dir=Path(args.out), work_root=args.workdir and Path(args.workdir),
                    chroma_timeout=args.chroma_timeout, wheel_timeout=args.wheel_timeout)
    if res["broken"]:
        print("ERROR: our VectorStore could not be measured (see notes)", file=sys.stderr)
        return 1
    return 1 if args.strict and res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
