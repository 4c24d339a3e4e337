"""Workloads measured identically on our synadb and on the published wheel.

Every function takes the ``SynaDB`` class to measure, so the same code runs
in our process (ours, from run.py) and inside ``.venv-peers`` (the wheel, from
peer_wheel.py).  Only the standard library and numpy are used here.

Each function returns a plain dict (JSON-serialisable): per-op figures in
seconds plus the N actually used.
"""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from _common import best_of, key_names, perf_counter

_UNSET = object()


def _open(cls, path: Path, sync: Any = _UNSET):
    """Open with the class's default durability unless ``sync`` is given."""
    if sync is _UNSET:
        return cls(str(path))
    return cls(str(path), sync_on_write=sync)


def _fresh(path: Path) -> Path:
    if path.exists():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    # Some engines keep side files (e.g. "<file>.idx", "<file>-wal").
    for side in path.parent.glob(path.name + "*"):
        if side.is_dir():
            shutil.rmtree(side, ignore_errors=True)
        else:
            side.unlink(missing_ok=True)
    return path


def put_distinct(cls, workdir: Path, n: int, sync: Any = _UNSET,
                 repeats: int = 3, tag: str = "put") -> dict:
    """µs per ``put_float`` on ``n`` distinct ~12-byte keys (fresh file each repeat).

    Timed: the put loop only (open/close are outside the timing), after an
    untimed warm-up of up to 2,000 puts on a throwaway file.
    """
    keys = key_names(n)
    # Untimed warm-up on a throwaway file: imports, allocator, code paths.
    path = _fresh(workdir / f"{tag}_warm.db")
    db = _open(cls, path, sync)
    for i, k in enumerate(keys[:min(n, 2000)]):
        db.put_float(k, float(i))
    db.close()
    _fresh(path)
    best = float("inf")
    for r in range(max(1, repeats)):
        path = _fresh(workdir / f"{tag}_{r}.db")
        db = _open(cls, path, sync)
        put = db.put_float
        gc.collect()
        gc.disable()
        try:
            t0 = perf_counter()
            for i, k in enumerate(keys):
                put(k, float(i))
            dt = perf_counter() - t0
        finally:
            gc.enable()
        db.close()
        best = min(best, dt)
        _fresh(path)
    return {"n": n, "per_op_s": best / n, "total_s": best}


def _calls_for(db, key: str, expect: float, target_s: float) -> int:
    """Check the value, then pick a call count that takes about ``target_s``."""
    got = db.get_float(key)
    if got is None or float(got) != expect:
        raise AssertionError(f"get_float({key!r}) returned {got!r}, expected {expect!r}")
    t0 = perf_counter()
    db.get_float(key)
    one = max(perf_counter() - t0, 1e-7)
    return int(min(200_000, max(1, target_s / one)))


def get_latest(cls, workdir: Path, n_hist: int, repeats: int = 7,
               target_s: float = 0.2, budget_s: float = 20.0) -> dict:
    """get_float latest value on a key with ``n_hist`` values vs a 1-value key.

    Both keys live in the same file (the history key built with
    put_floats_batch, i.e. ``n_hist`` records) and have 11-byte names.  The
    file is closed and reopened before timing.  Repeats alternate between the
    two keys so drift on a busy machine hits both alike; best of each.
    """
    path = _fresh(workdir / "get_latest.db")
    db = _open(cls, path, False)
    db.put_floats_batch("hist/big000", np.arange(n_hist, dtype=np.float64))
    db.put_float("one/value00", 42.0)
    db.close()
    db = _open(cls, path, False)
    cases = {"hist_key": ("hist/big000", float(n_hist - 1)), "one_key": ("one/value00", 42.0)}
    try:
        calls = {name: _calls_for(db, k, v, target_s) for name, (k, v) in cases.items()}
        best = {name: float("inf") for name in cases}
        spent = 0.0
        get = db.get_float
        for _ in range(max(1, repeats)):
            for name, (key, _v) in cases.items():
                per = best_of(lambda: get(key), repeats=1, number=calls[name])
                best[name] = min(best[name], per)
                spent += per * calls[name]
            if spent >= budget_s:
                break
    finally:
        db.close()
        _fresh(path)
    out = {"n_hist": n_hist}
    for name in cases:
        out[name] = {"per_op_s": best[name], "calls_per_repeat": calls[name]}
    out["ratio"] = best["hist_key"] / best["one_key"]
    return out


def history_tensor(cls, workdir: Path, n: int, repeats: int = 3,
                   budget_s: float = 30.0) -> dict:
    """Time ``get_history_tensor`` of one key holding ``n`` float values."""
    path = _fresh(workdir / "history.db")
    db = _open(cls, path, False)
    values = np.random.default_rng(0).standard_normal(n)
    chunk = 100_000
    for s in range(0, n, chunk):
        db.put_floats_batch("hist/tensor", values[s:s + chunk])
    db.close()
    db = _open(cls, path, False)
    try:
        h = db.get_history_tensor("hist/tensor")
        arr = np.asarray(h)
        if arr.shape != (n,) or not np.array_equal(arr, values):
            raise AssertionError(f"history mismatch: shape {arr.shape}, expected ({n},)")
        dtype = str(arr.dtype)
        del h, arr
        per = best_of(lambda: db.get_history_tensor("hist/tensor"),
                      repeats=repeats, budget_s=budget_s)
    finally:
        db.close()
        _fresh(path)
    return {"n": n, "per_op_s": per, "dtype": dtype}


def open_records(cls, workdir: Path, n_records: int, n_keys: int = 1000,
                 repeats: int = 3, budget_s: float = 40.0,
                 put_us_hint: float | None = None,
                 write_budget_s: float = 90.0) -> dict:
    """Write ``n_records`` float records over ``n_keys`` keys, close, time reopen.

    Records are written with put_float round-robin over the keys (no fsync).
    If ``put_us_hint`` says that would exceed ``write_budget_s``, the file is
    written with put_floats_batch per key instead (same record count); the
    writer used is reported.  Timed: ``SynaDB(path)`` alone, and
    ``SynaDB(path)`` + the first ``get_float``.
    """
    path = _fresh(workdir / "open.db")
    keys = key_names(n_keys, prefix="o/")
    per_key = n_records // n_keys
    n_records = per_key * n_keys
    writer = "put_float"
    if put_us_hint is not None and put_us_hint * 1e-6 * n_records > write_budget_s:
        writer = "put_floats_batch"
    db = _open(cls, path, False)
    t0 = perf_counter()
    if writer == "put_float":
        put = db.put_float
        for j in range(per_key):
            v = float(j)
            for k in keys:
                put(k, v)
    else:
        vals = np.arange(per_key, dtype=np.float64)
        for k in keys:
            db.put_floats_batch(k, vals)
    write_s = perf_counter() - t0
    db.close()
    size = os.path.getsize(path) if path.is_file() else None
    probe = keys[n_keys // 2]
    expect = float(per_key - 1)

    def open_only():
        d = _open(cls, path)
        d.close()

    def open_get():
        d = _open(cls, path)
        v = d.get_float(probe)
        d.close()
        if v is None or float(v) != expect:
            raise AssertionError(f"after reopen get_float({probe!r}) = {v!r}, expected {expect}")

    try:
        open_get()  # warm the page cache once, and check correctness
        t_open = best_of(open_only, repeats=repeats, budget_s=budget_s)
        t_open_get = best_of(open_get, repeats=repeats, budget_s=budget_s)
    finally:
        _fresh(path)
    return {"n_records": n_records, "n_keys": n_keys, "writer": writer,
            "write_s": write_s, "file_bytes": size,
            "open_s": t_open, "open_get_s": t_open_get}


def batch_puts(cls, workdir: Path, n_batches: int, batch_size: int = 100,
               n_keys: int = 100, sync: Any = _UNSET, repeats: int = 3,
               tag: str = "batch", budget_s: float = 60.0) -> dict:
    """µs per ``with db.batch(): batch_size × db.put_float(key_i, v)``.

    The file is opened with the class's default durability.  Each batch puts
    one value on each of ``n_keys`` metric keys (``m/000000042``; the same
    keys every batch, so after the warm-up every put appends to an existing
    key, as a training loop does).  ``sync`` is passed to ``db.batch()``
    unless left unset (then the default: fsync at commit); ``sync=False`` is
    the CPU cost of the batch path.

    Timed: ``n_batches`` consecutive batches (open/close outside the timing,
    GC off), divided by ``n_batches``; best of ``repeats`` fresh files.  An
    untimed warm-up of up to 50 batches runs on each file first.  Also
    reported: the median repeat, for a feel of the noise.
    """
    keys = key_names(n_keys, prefix="m/")
    per_batch = [keys[i % n_keys] for i in range(batch_size)]
    kw = {} if sync is _UNSET else {"sync": sync}
    times: list[float] = []
    spent = 0.0
    for r in range(max(1, repeats)):
        path = _fresh(workdir / f"{tag}_{r}.db")
        db = _open(cls, path)
        try:
            put, batch = db.put_float, db.batch
            for j in range(min(50, n_batches)):  # untimed warm-up
                v = float(j)
                with batch(**kw):
                    for k in per_batch:
                        put(k, v)
            gc.collect()
            gc.disable()
            try:
                t0 = perf_counter()
                for j in range(n_batches):
                    v = float(j)
                    with batch(**kw):
                        for k in per_batch:
                            put(k, v)
                dt = perf_counter() - t0
            finally:
                gc.enable()
            got = db.get_float(per_batch[-1])
            if got is None or float(got) != float(n_batches - 1):
                raise AssertionError(f"after the batches get_float({per_batch[-1]!r}) = {got!r}, "
                                     f"expected {float(n_batches - 1)!r}")
        finally:
            db.close()
            _fresh(path)
        times.append(dt / n_batches)
        spent += dt
        if spent >= budget_s:
            break
    times.sort()
    return {"n_batches": n_batches, "batch_size": batch_size, "n_keys": n_keys,
            "sync": "default" if sync is _UNSET else bool(sync),
            "per_op_s": times[0], "median_s": times[len(times) // 2],
            "repeats_run": len(times)}
