"""Training-data benchmark: ``synadb.Dataset`` vs the usual ways to keep a
big array on disk for a torch DataLoader, on the same rows, in one run.

Data: N rows of ``x`` (float32, 1024 dims) and ``y`` (int64), N chosen so
that ``x`` is each size asked for (GiB: 8 GB is 2,097,152 rows).  Every
writer draws the same rows from a seeded generator, 8192 rows (32 MB) at a
time, so no writer ever holds the whole array.

Peers (each skipped with a note when it is not installed):
  * np.memmap   -- raw float32/int64 files written with ``file.write``, read
                   through ``np.memmap`` by a torch Dataset whose
                   ``__getitems__`` does one fancy index per batch;
  * HF datasets -- ``Dataset.from_generator`` (Arrow, memory-mapped), read
                   ``with_format("numpy")`` with a batched ``__getitems__``;
  * litdata     -- ``optimize`` then ``StreamingDataset(shuffle=True)``;
  * Lance       -- ``lance.write_dataset`` from a RecordBatchReader, read
                   with ``LanceDataset.take`` per batch;
  * synadb      -- ``synadb.Dataset(...).extend(pieces)``, read through
                   ``synadb.integrations.torch.SynaDataset`` when it takes a
                   Dataset name, else a map-style wrapper over ``take``.

Per library and size, each step in its own process: write (time, and the
peak RSS of the writer's process tree), then open, first batch, single-row
latency, and DataLoader epochs (batch 256, shuffle, 0 and 2 workers).  Each
library's files are deleted before the next one writes, so the disk holds
one copy at a time.

Run standalone: ``python benchmarks/bench_dataset.py [--quick] [--sizes 0.5,2,8]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as c  # noqa: E402

sys.path.insert(0, str(c.REPO_ROOT))

DIM = 1024
ROW_BYTES = DIM * 4                 # x only; y adds 8 bytes a row
PIECE_ROWS = 8192                   # 32 MB of x per generated piece
BATCH = 256
EPOCH_CAP_BATCHES = 1024            # 262,144 rows (1 GiB of x) per timed epoch at most
EPOCHS = 2                          # timed epochs per setting; the best counts
COLD_ROWS = 10
WARM_CALLS = 200
SEED = 0

FULL_SIZES = [0.5, 2.0, 8.0]
QUICK_SIZES = [0.05, 0.2]

# Targets from the issue.
OPEN_MAX_S = 0.050
FIRST_BATCH_MAX_S = 1.0
EPOCH_VS_HF = 1.0
EPOCH_VS_MEMMAP = 0.8
WRITE_VS_HF = 0.8
WRITER_RSS_MAX = 1 << 30
FLAT_RATE = 0.8                     # largest size's rate ≥ 0.8× the smallest's
FLAT_RSS = 1.25                     # largest size's writer RSS ≤ 1.25× the smallest's
FLAT_OPEN = 1.5                     # largest size's open ≤ 1.5× the smallest's (or +10 ms)
FLAT_OPEN_SLACK_S = 0.010

LIBS = ["memmap", "hf", "litdata", "lance", "synadb"]
LABELS = {"gen": "(generate only)", "memmap": "np.memmap + __getitems__",
          "hf": "HF datasets (Arrow)", "litdata": "litdata", "lance": "Lance",
          "synadb": "synadb.Dataset (ours)"}
# import name, pip name, licence (checked from each wheel's metadata)
PEERS = {"hf": ("datasets", "datasets", "Apache-2.0"),
         "litdata": ("litdata", "litdata", "Apache-2.0"),
         "lance": ("lance", "pylance", "Apache-2.0")}


def log(msg: str) -> None:
    print(f"[dataset] {msg}", file=sys.stderr, flush=True)


def rows_for(size_gb: float) -> int:
    return int(round(size_gb * (1 << 30) / ROW_BYTES))


# --------------------------------------------------------------------------
# the data: the same seeded pieces for every writer
# --------------------------------------------------------------------------
def piece(p: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [p*PIECE_ROWS, ...) of the data set: x (k, DIM) float32, y (k,) int64."""
    k = min(PIECE_ROWS, rows - p * PIECE_ROWS)
    rng = np.random.default_rng([SEED, p])
    x = rng.random((k, DIM), dtype=np.float32)
    y = rng.integers(0, 1000, k, dtype=np.int64)
    return x, y


def n_pieces(rows: int) -> int:
    return -(-rows // PIECE_ROWS)


def pieces(rows: int):
    for p in range(n_pieces(rows)):
        yield piece(p, rows)


def expected_row(i: int, rows: int) -> tuple[np.ndarray, int]:
    x, y = piece(i // PIECE_ROWS, rows)
    return x[i % PIECE_ROWS], int(y[i % PIECE_ROWS])


# --------------------------------------------------------------------------
# writers (each runs in its own process: python bench_dataset.py --_write LIB)
# --------------------------------------------------------------------------
def write_gen(d: Path, rows: int) -> None:
    s = 0.0
    for x, _ in pieces(rows):
        s += float(x[0, 0])


def write_memmap(d: Path, rows: int) -> None:
    with open(d / "x.f32", "wb") as fx, open(d / "y.i64", "wb") as fy:
        for x, y in pieces(rows):
            fx.write(memoryview(x).cast("B"))
            fy.write(memoryview(y).cast("B"))


def _hf_features():
    import datasets
    return datasets.Features({"x": datasets.List(datasets.Value("float32"), length=DIM),
                              "y": datasets.Value("int64")})


def _hf_rows(rows: int):
    for x, y in pieces(rows):
        for i in range(len(y)):
            yield {"x": x[i], "y": int(y[i])}


def write_hf(d: Path, rows: int) -> None:
    import datasets
    datasets.disable_progress_bars()
    # from_generator is HF's way to build a data set bigger than memory: it
    # takes one example at a time and writes Arrow shards into cache_dir.
    datasets.Dataset.from_generator(_hf_rows, features=_hf_features(),
                                    cache_dir=str(d / "cache"), gen_kwargs={"rows": rows})


def _lit_rows(job: tuple[int, int]):
    p, rows = job
    x, y = piece(p, rows)
    for i in range(len(y)):
        yield {"x": x[i], "y": int(y[i])}


def write_litdata(d: Path, rows: int) -> None:
    from litdata import optimize
    # One worker: every other writer here is one process too.
    optimize(fn=_lit_rows, inputs=[(p, rows) for p in range(n_pieces(rows))],
             output_dir=str(d / "out"), chunk_bytes="64MB", num_workers=1, verbose=False)


def _lance_schema():
    import pyarrow as pa
    return pa.schema([("x", pa.list_(pa.float32(), DIM)), ("y", pa.int64())])


def write_lance(d: Path, rows: int) -> None:
    import lance
    import pyarrow as pa

    schema = _lance_schema()

    def batches():
        for x, y in pieces(rows):
            xs = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM)
            yield pa.RecordBatch.from_arrays([xs, pa.array(y)], schema=schema)

    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()),
                        str(d / "ds.lance"))


def write_synadb(d: Path, rows: int) -> None:
    import synadb
    with synadb.Dataset(str(d / "data.db"), "train", progress=False) as ds:
        ds.extend({"x": x, "y": y} for x, y in pieces(rows))


WRITERS = {"gen": write_gen, "memmap": write_memmap, "hf": write_hf,
           "litdata": write_litdata, "lance": write_lance, "synadb": write_synadb}


def _writer_main(lib: str, d: Path, rows: int) -> dict:
    import resource
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    WRITERS[lib](d, rows)
    t_write = time.perf_counter() - t0
    # Equal durability: whatever each library does, its files are on disk
    # when the clock stops (an fsync of an already synced file is cheap).
    if lib != "gen":
        c.fsync_tree(d)
    t_all = time.perf_counter() - t0
    ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"write_s": t_all, "write_nofsync_s": t_write, "maxrss_self": ru_self,
            "maxrss_children": ru_kids, "disk_bytes": c.disk_bytes(d)}


# --------------------------------------------------------------------------
# readers: a torch Dataset per library (each picklable as its recipe)
# --------------------------------------------------------------------------
def _identity(batch: Any) -> Any:
    """collate_fn for datasets whose __getitems__ already returns (x, y) tensors."""
    return batch


class _PerProcess:
    """Opens its handle lazily, once per process (DataLoader workers reopen)."""

    def __init__(self, d: str, rows: int) -> None:
        self.d = d
        self.rows = rows
        self._h = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {"d": self.d, "rows": self.rows, "_h": None, "_pid": -1}

    def handle(self):
        if self._h is None or self._pid != os.getpid():
            self._h = self.open()
            self._pid = os.getpid()
        return self._h

    def __len__(self) -> int:
        return self.rows


class MemmapDS(_PerProcess):
    def open(self):
        x = np.memmap(os.path.join(self.d, "x.f32"), np.float32, "r", shape=(self.rows, DIM))
        y = np.memmap(os.path.join(self.d, "y.i64"), np.int64, "r", shape=(self.rows,))
        return x, y

    def __getitems__(self, idx):
        import torch
        x, y = self.handle()
        i = np.asarray(idx, dtype=np.int64)
        return torch.from_numpy(np.asarray(x[i])), torch.from_numpy(np.asarray(y[i]))

    def row(self, i: int):
        x, y = self.handle()
        return np.array(x[i]), int(y[i])


class HFDS(_PerProcess):
    def open(self):
        import datasets
        files = sorted(str(p) for p in Path(self.d).rglob("*.arrow")
                       if not p.name.startswith("cache-"))
        parts = [datasets.Dataset.from_file(f) for f in files]
        ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        return ds.with_format("numpy")

    def __getitems__(self, idx):
        import torch
        b = self.handle()[list(idx)]
        return torch.from_numpy(b["x"]), torch.from_numpy(b["y"])

    def row(self, i: int):
        r = self.handle()[int(i)]
        return np.asarray(r["x"]), int(r["y"])


class LanceDS(_PerProcess):
    def open(self):
        import lance
        return lance.dataset(os.path.join(self.d, "ds.lance"))

    def _take(self, idx):
        t = self.handle().take(list(map(int, idx)), columns=["x", "y"])
        xs = t.column("x").combine_chunks()
        x = xs.flatten().to_numpy().reshape(-1, DIM)
        y = t.column("y").to_numpy()
        return x, y

    def __getitems__(self, idx):
        import torch
        x, y = self._take(idx)
        return torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))

    def row(self, i: int):
        x, y = self._take([i])
        return np.array(x[0]), int(y[0])


class SynaTakeDS(_PerProcess):
    """A thin map-style wrapper: one ``Dataset.take`` per batch."""

    def open(self):
        import synadb
        return synadb.Dataset(os.path.join(self.d, "data.db"), "train", read_only=True,
                              progress=False)

    def __getitems__(self, idx):
        import torch
        b = self.handle().take(np.asarray(idx, dtype=np.int64), columns=["x", "y"])
        return torch.from_numpy(b["x"]), torch.from_numpy(b["y"])

    def row(self, i: int):
        r = self.handle()[int(i)]
        return np.asarray(r["x"]), int(r["y"])


def _xy(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, dict):
        return batch["x"], batch["y"]
    return batch[0], batch[1]


class _Reader:
    """What the reader process measures for one library: open, loaders, rows."""

    def __init__(self, lib: str, d: Path, rows: int) -> None:
        self.lib, self.d, self.rows = lib, d, rows
        self.notes: list[str] = []
        self.ds: Any = None       # what the DataLoader gets
        self.rowsrc: Any = None   # what single-row reads use

    def open(self) -> int:
        lib, d = self.lib, str(self.d)
        if lib == "memmap":
            self.ds = self.rowsrc = MemmapDS(d, self.rows)
            self.ds.handle()
        elif lib == "hf":
            self.ds = self.rowsrc = HFDS(d, self.rows)
            return len(self.ds.handle())
        elif lib == "lance":
            self.ds = self.rowsrc = LanceDS(d, self.rows)
            return self.ds.handle().count_rows()
        elif lib == "litdata":
            from litdata import StreamingDataset
            self.ds = StreamingDataset(os.path.join(d, "out"), shuffle=True, seed=SEED)
            self.rowsrc = self.ds
            return len(self.ds)
        elif lib == "synadb":
            self.rowsrc = SynaTakeDS(d, self.rows)
            n = len(self.rowsrc.handle())
            self.ds = self._syna_torch() or self.rowsrc
            return n
        return self.rows

    def _syna_torch(self):
        """``SynaDataset(path, "train")`` over the Dataset, if the adapter takes one."""
        try:
            from synadb.integrations.torch import SynaDataset
            ds = SynaDataset(os.path.join(self.d, "data.db"), "train")
            x, y = _xy(_first(ds.__getitems__([0, 1])))
            assert tuple(x.shape) == (2, DIM) and tuple(y.shape) == (2,), (x.shape, y.shape)
            self.notes.append("synadb read through synadb.integrations.torch.SynaDataset"
                              "(path, 'train') in SynaDataLoader")
            return ds
        except Exception as e:
            self.notes.append("synadb read through a map-style wrapper calling "
                              "Dataset.take(indices) in __getitems__: SynaDataset(path, 'train') "
                              f"failed with {type(e).__name__}: {str(e)[:160]}")
            return None

    def loader(self, workers: int):
        from torch.utils.data import DataLoader
        kw: dict[str, Any] = {"batch_size": BATCH, "num_workers": workers,
                              "persistent_workers": workers > 0}
        if self.lib == "litdata":
            # An IterableDataset: it shuffles itself (chunk order, then rows
            # within a chunk), so DataLoader's shuffle must stay off.
            return DataLoader(self.ds, **kw)
        if self.lib == "lance" and workers > 0:
            # Lance runs a tokio runtime; a fork of a process that has one
            # can hang, and Lance's docs ask for spawn.
            kw["multiprocessing_context"] = "spawn"
        if self.lib == "synadb" and not isinstance(self.ds, SynaTakeDS):
            from synadb.integrations.torch import SynaDataLoader
            return SynaDataLoader(self.ds, shuffle=True, **kw)
        return DataLoader(self.ds, shuffle=True, collate_fn=_identity, **kw)

    def row(self, i: int) -> tuple[np.ndarray, int]:
        if self.lib == "litdata":
            r = self.rowsrc[int(i)]
            return np.asarray(r["x"]), int(r["y"])
        return self.rowsrc.row(i)


def _first(b: Any) -> Any:
    stacked = getattr(b, "stacked", None)
    return stacked if stacked is not None else b


def _rss(pid: int | None = None) -> dict:
    import psutil
    m = psutil.Process(pid).memory_info()
    return {"rss": m.rss, "anon": m.rss - m.shared}


def _epoch(loader, cap: int) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    for k, b in enumerate(loader):
        n += len(_xy(b)[0])
        if k + 1 >= cap:
            break
    return n, time.perf_counter() - t0


def _preload(d: Path) -> float:
    """Read every file once so that the timed epochs run from the page cache."""
    t0 = time.perf_counter()
    buf = bytearray(8 << 20)
    for p in c.files_under(d):
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t0


def _reader_main(lib: str, d: Path, rows: int, cap: int, epochs: int) -> dict:
    import torch
    torch.set_num_threads(1)
    if lib == "hf":
        import datasets  # noqa: F401
    elif lib == "litdata":
        import litdata  # noqa: F401
    elif lib == "lance":
        import lance  # noqa: F401
    elif lib == "synadb":
        import synadb  # noqa: F401
        import synadb.integrations.torch  # noqa: F401
    rd = _Reader(lib, d, rows)
    res: dict[str, Any] = {"dropped_bytes": c.drop_page_cache(d)}

    t0 = time.perf_counter()
    n = rd.open()
    res["open_s"] = time.perf_counter() - t0
    res["len"] = n
    l0 = rd.loader(0)
    it = iter(l0)
    x, y = _xy(next(it))
    res["first_batch_s"] = time.perf_counter() - t0
    del it
    if tuple(x.shape) != (BATCH, DIM) or tuple(y.shape) != (BATCH,):
        raise AssertionError(f"first batch has shapes {tuple(x.shape)}, {tuple(y.shape)}")

    # Single rows: rows nobody has read yet, each after dropping the files'
    # unmapped pages again (mapped ones stay: see c.drop_page_cache).
    rng = np.random.default_rng(123)
    picks = [int(i) for i in rng.choice(rows, COLD_ROWS, replace=False)]
    cold = []
    for i in picks:
        c.drop_page_cache(d)
        t = time.perf_counter()
        rd.row(i)
        cold.append(time.perf_counter() - t)
    warm = []
    for _ in range(WARM_CALLS // COLD_ROWS):
        for i in picks:
            t = time.perf_counter()
            rd.row(i)
            warm.append(time.perf_counter() - t)
    res["row_cold_s"] = statistics.median(cold)
    res["row_warm_s"] = statistics.median(warm)

    # Same data as every other writer: the last row and a middle one.
    for i in (rows - 1, rows // 2 + 7):
        gx, gy = rd.row(i)
        ex, ey = expected_row(i, rows)
        if gy != ey or not np.array_equal(gx, ex):
            raise AssertionError(f"row {i} differs from the generated data")

    res["preload_s"] = _preload(d)
    full = -(-rows // BATCH)
    res["batches_per_epoch"] = min(full, cap)
    res["capped"] = full > cap
    for workers in (0, 2):
        loader = l0 if workers == 0 else rd.loader(workers)
        for k, _ in enumerate(loader):  # workers start, the first fetches warm up
            if k >= 2:
                break
        rates = []
        for _ in range(epochs):
            nrows, dt = _epoch(loader, cap)
            rates.append(nrows / dt)
        res[f"epoch_w{workers}"] = max(rates)
        res[f"epoch_w{workers}_all"] = rates
        if workers == 0:
            res["rss_main"] = _rss()
        else:
            import psutil
            kids = [p for p in psutil.Process().children() if p.is_running()]
            per = [_rss(p.pid) for p in kids]
            res["rss_worker"] = max(per, key=lambda r: r["rss"]) if per else None
            res["n_children"] = len(kids)
        del loader
    res["notes"] = rd.notes
    return res


# --------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------
def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HOME": str(work / "hf_home"), "HF_DATASETS_CACHE": str(work / "hf_home"),
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore",
                "DATA_OPTIMIZER_CACHE_FOLDER": str(work / "lit_cache"),
                "DATA_OPTIMIZER_DATA_CACHE_FOLDER": str(work / "lit_cache")})
    return env


def _child(mode: str, lib: str, d: Path, rows: int, work: Path, timeout_s: float,
           extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, "-u", str(Path(__file__).resolve()), mode, lib, "--dir", str(d),
           "--rows", str(rows)] + (extra or [])
    r = c.run_sampled(cmd, timeout_s, env=_env(work))
    out: dict[str, Any] = {}
    for line in reversed(r["stdout"].splitlines()):
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            break
    if r["timed_out"]:
        out.setdefault("error", f"timed out after {timeout_s:.0f} s")
    elif r["rc"] != 0 or not out:
        tail = [ln for ln in r["stderr"].strip().splitlines() if ln.strip()][-3:]
        out.setdefault("error", f"exit {r['rc']}: " + " | ".join(tail)[-400:])
    out["tree_peak_bytes"] = r["tree_peak_bytes"]
    return out


def available(lib: str) -> tuple[bool, str]:
    if lib in ("gen", "memmap"):
        return True, ""
    if lib == "synadb":
        try:
            import synadb
            synadb.Dataset  # noqa: B018
        except Exception as e:
            return False, f"synadb.Dataset is not there yet ({type(e).__name__}: {e})"
        return True, ""
    mod, pip, _ = PEERS[lib]
    if importlib.util.find_spec(mod) is None:
        return False, f"not installed (pip install {pip}; `make bench` installs it)"
    return True, ""


def _version(lib: str) -> str:
    from importlib import metadata
    name = {"hf": "datasets", "litdata": "litdata", "lance": "pylance", "synadb": "synadb"}.get(lib)
    if name is None:
        return f"numpy {np.__version__}"
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def measure_size(size_gb: float, work_root: Path, libs: list[str], epochs: int) -> dict:
    rows = rows_for(size_gb)
    need = rows * (ROW_BYTES + 8) * 1.3 + (1 << 30)
    free = shutil.disk_usage(work_root).free
    if free < need:
        return {"rows": rows, "error": f"needs about {c.fmt_bytes(need)} free on "
                                       f"{work_root}, has {c.fmt_bytes(free)}"}
    timeout = 900 + 600 * size_gb
    out: dict[str, Any] = {"rows": rows, "size_gb": size_gb, "libs": {}}
    for lib in ["gen"] + libs:
        ok, why = available(lib)
        if not ok:
            out["libs"][lib] = {"skipped": why}
            log(f"{size_gb:g} GB {lib}: skipped, {why}")
            continue
        d = Path(tempfile.mkdtemp(prefix=f"{lib}_", dir=work_root))
        try:
            log(f"{size_gb:g} GB {lib}: write {rows:,} rows ...")
            w = _child("--_write", lib, d / "data", rows, d, timeout)
            res = {"write": w}
            if "error" not in w and lib != "gen":
                log(f"{size_gb:g} GB {lib}: wrote in {w['write_s']:.1f} s, "
                    f"peak {c.fmt_bytes(w['tree_peak_bytes'])}; read ...")
                res["read"] = _child("--_read", lib, d / "data", rows, d, timeout,
                                     ["--cap", str(EPOCH_CAP_BATCHES), "--epochs", str(epochs)])
                if "error" in res["read"]:
                    log(f"{size_gb:g} GB {lib}: read FAILED: {res['read']['error']}")
            elif "error" in w:
                log(f"{size_gb:g} GB {lib}: write FAILED: {w['error']}")
            out["libs"][lib] = res
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return out


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------
def _g(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _ms(s: float | None) -> str:
    return "n/a" if s is None else c.fmt_time(s)


def _rate(r: float | None) -> str:
    return "n/a" if r is None else f"{r:,.0f}/s"


def _mem(m: dict | None) -> str:
    if not m:
        return "n/a"
    return f"{c.fmt_bytes(m['rss'])} ({c.fmt_bytes(m['anon'])} anon)"


def size_rows(sz: dict) -> list[list[str]]:
    rows = []
    x_bytes = sz["rows"] * ROW_BYTES
    for lib in ["gen"] + LIBS:
        r = sz["libs"].get(lib)
        if r is None:
            continue
        if "skipped" in r:
            rows.append([LABELS[lib], r["skipped"]] + [""] * 10)
            continue
        w, rd = r.get("write", {}), r.get("read", {})
        if "error" in w:
            rows.append([LABELS[lib], f"write failed: {w['error']}"] + [""] * 10)
            continue
        ws = w.get("write_s")
        peak = max(w.get("tree_peak_bytes") or 0, w.get("maxrss_self") or 0)
        cells = [LABELS[lib], f"{ws:.2f} s ({x_bytes / ws / 1e6:,.0f} MB/s)", c.fmt_bytes(peak),
                 c.fmt_bytes(w.get("disk_bytes")) if lib != "gen" else ""]
        if lib == "gen":
            rows.append(cells + [""] * 8)
            continue
        if "error" in rd:
            rows.append(cells + [f"read failed: {rd['error']}"] + [""] * 7)
            continue
        cells += [_ms(rd.get("open_s")), _ms(rd.get("first_batch_s")),
                  _rate(rd.get("epoch_w0")), _rate(rd.get("epoch_w2")),
                  _mem(rd.get("rss_main")), _mem(rd.get("rss_worker")),
                  _ms(rd.get("row_cold_s")), _ms(rd.get("row_warm_s"))]
        rows.append(cells)
    return rows


SIZE_HEADERS = ["library", "write (gen+write+fsync)", "writer peak RSS", "on disk",
                "open (cold: fadvise DONTNEED)", "open + first batch (cold)",
                "epoch 0 workers", "epoch 2 workers", "RSS main (0w)", "RSS per worker (2w)",
                "row cold", "row warm"]
TARGET_HEADERS = ["operation", "synadb (ours)", "baseline", "ratio", "target", "pass/fail"]


def target_rows(results: list[dict]) -> tuple[list[list[str]], list[str]]:
    rows: list[list[str]] = []
    failed: list[str] = []

    def add(op, ours, base, ratio, target, ok):
        rows.append([op, ours, base, ratio, target,
                     "n/a" if ok is None else "PASS" if ok else "FAIL"])
        if ok is False:
            failed.append(op)

    sized = [s for s in results if "libs" in s]
    for sz in sized:
        tag = f"{sz['size_gb']:g} GB"
        L = sz["libs"]
        ours = _g(L, "synadb", "read") or {}
        ow = _g(L, "synadb", "write") or {}
        o = ours.get("open_s")
        add(f"{tag}: open (new process, files dropped from page cache)", _ms(o), "—", "—",
            f"≤ {OPEN_MAX_S * 1e3:.0f} ms", None if o is None else o <= OPEN_MAX_S)
        fb = ours.get("first_batch_s")
        add(f"{tag}: open + first shuffled batch of {BATCH} (cold)", _ms(fb), "—", "—",
            f"≤ {FIRST_BATCH_MAX_S:g} s", None if fb is None else fb <= FIRST_BATCH_MAX_S)
        cap = " (capped)" if ours.get("capped") else ""
        for w in (0, 2):
            k = f"epoch_w{w}"
            for peer, want in (("hf", EPOCH_VS_HF), ("memmap", EPOCH_VS_MEMMAP)):
                b = _g(L, peer, "read", k)
                r = None if b is None or ours.get(k) is None else ours[k] / b
                add(f"{tag}: DataLoader epoch{cap}, batch {BATCH}, shuffle, {w} workers",
                    _rate(ours.get(k)), f"{LABELS[peer]}: {_rate(b)}",
                    "n/a" if r is None else f"{r:.2f}×", f"≥ {want:g}×",
                    None if r is None else r >= want)
        hw = _g(L, "hf", "write", "write_s")
        ws = ow.get("write_s")
        peak = None if not ow or "error" in ow else max(ow.get("tree_peak_bytes") or 0,
                                                        ow.get("maxrss_self") or 0)
        r = None if hw is None or ws is None else hw / ws
        ok = None if r is None or peak is None else (r >= WRITE_VS_HF and peak <= WRITER_RSS_MAX)
        add(f"{tag}: write {sz['rows']:,} rows (speed; writer peak RSS)",
            f"{_ms(ws)}; {c.fmt_bytes(peak)}", f"{LABELS['hf']} from_generator: {_ms(hw)}",
            "n/a" if r is None else f"{r:.2f}×",
            f"≥ {WRITE_VS_HF:g}× speed at ≤ {c.fmt_bytes(WRITER_RSS_MAX)}", ok)

    if len(sized) >= 2:
        a, b = sized[0], sized[-1]
        tag = f"{b['size_gb']:g} GB vs {a['size_gb']:g} GB"

        def ours(sz, *path):
            return _g(sz["libs"], "synadb", *path)

        def rate_w(sz):
            s = ours(sz, "write", "write_s")
            return None if s is None else sz["rows"] / s

        for label, f in (("write rows/s", rate_w),
                         ("epoch samples/s, 0 workers", lambda s: ours(s, "read", "epoch_w0")),
                         ("epoch samples/s, 2 workers", lambda s: ours(s, "read", "epoch_w2"))):
            va, vb = f(a), f(b)
            r = None if va is None or vb is None else vb / va
            add(f"flat, {tag}: {label}", _rate(vb), f"ours at {a['size_gb']:g} GB: {_rate(va)}",
                "n/a" if r is None else f"{r:.2f}×", f"≥ {FLAT_RATE:g}×",
                None if r is None else r >= FLAT_RATE)

        def peak(sz):
            w = ours(sz, "write")
            if not w or "error" in w:
                return None
            return max(w.get("tree_peak_bytes") or 0, w.get("maxrss_self") or 0)
        pa_, pb = peak(a), peak(b)
        r = None if pa_ is None or pb is None else pb / pa_
        add(f"flat, {tag}: writer peak RSS", c.fmt_bytes(pb),
            f"ours at {a['size_gb']:g} GB: {c.fmt_bytes(pa_)}",
            "n/a" if r is None else f"{r:.2f}×", f"≤ {FLAT_RSS:g}×",
            None if r is None else r <= FLAT_RSS)
        oa, ob = ours(a, "read", "open_s"), ours(b, "read", "open_s")
        r = None if oa is None or ob is None else ob / oa
        add(f"flat, {tag}: open (cold)", _ms(ob), f"ours at {a['size_gb']:g} GB: {_ms(oa)}",
            "n/a" if r is None else f"{r:.2f}×",
            f"≤ {FLAT_OPEN:g}× (or + {FLAT_OPEN_SLACK_S * 1e3:.0f} ms)",
            None if r is None else (r <= FLAT_OPEN or ob - oa <= FLAT_OPEN_SLACK_S))
    return rows, failed


# --------------------------------------------------------------------------
def run_bench(sizes: list[float] | None = None, quick: bool = False,
              out_dir: Path | None = None, work_root: Path | None = None,
              epochs: int = EPOCHS) -> dict:
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    out_dir = out_dir or c.OUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    root = work_root or out_dir
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dataset_", dir=root))
    m = c.machine_info()
    print("synadb dataset benchmark")
    print(f"  machine : {m['cpu']}, {m['cores']} cores, "
          f"{c.fmt_bytes(_mem_total())} RAM, Python {m['python']}")
    print(f"  commit  : {m['commit']}")
    print(f"  date    : {m['date']}  (load average at start: {m['loadavg']})")
    print(f"  sizes   : {', '.join(f'{s:g} GB ({rows_for(s):,} rows)' for s in sizes)} of "
          f"x float32[{DIM}] + y int64; batch {BATCH}; epochs capped at "
          f"{EPOCH_CAP_BATCHES} batches; best of {epochs} epochs")
    vers = {lib: (_version(lib) if available(lib)[0] else available(lib)[1]) for lib in LIBS}
    print("  versions: " + "; ".join(f"{LABELS[k]}: {v}" for k, v in vers.items()))
    print(f"  scratch : {work}", flush=True)

    results: list[dict] = []
    try:
        for s in sizes:
            try:
                results.append({"size_gb": s} | measure_size(s, work, LIBS, epochs))
            except Exception as e:
                results.append({"size_gb": s, "rows": rows_for(s),
                                "error": f"{type(e).__name__}: {e}",
                                "trace": traceback.format_exc(limit=4)})
                log(f"{s:g} GB FAILED: {results[-1]['error']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    md: list[str] = [f"Dataset benchmark on {m['cpu']}, {m['cores']} cores, Python "
                     f"{m['python']}; commit {m['commit']}; {m['date']}.", ""]
    for sz in results:
        title = f"{sz['size_gb']:g} GB: {sz['rows']:,} rows"
        full = -(-sz["rows"] // BATCH)
        if full > EPOCH_CAP_BATCHES:
            title += f" (epochs capped at {EPOCH_CAP_BATCHES:,} of {full:,} batches)"
        print(f"\n{title}")
        md += [f"### {title}", ""]
        if "error" in sz:
            print(f"  not measured: {sz['error']}")
            md += [f"not measured: {sz['error']}", ""]
            continue
        t = size_rows(sz)
        print(c.format_table(SIZE_HEADERS, t))
        md += [c.markdown_table(SIZE_HEADERS, t), ""]

    trows, failed = target_rows(results)
    print()
    print(c.format_table(TARGET_HEADERS, trows))
    md += ["### Targets", "", c.markdown_table(TARGET_HEADERS, trows), ""]

    notes = _notes(results, vers)
    print("\nnotes:\n" + "\n".join("  - " + n for n in notes))
    md += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    (out_dir / "dataset.md").write_text("\n".join(md), encoding="utf-8")
    c.write_json(out_dir / "dataset.json", {"machine": m, "sizes": sizes, "versions": vers,
                                            "params": {"dim": DIM, "batch": BATCH,
                                                       "piece_rows": PIECE_ROWS,
                                                       "epoch_cap_batches": EPOCH_CAP_BATCHES,
                                                       "epochs": epochs},
                                            "results": results, "notes": notes})
    print(f"\nwrote {out_dir / 'dataset.md'} and {out_dir / 'dataset.json'}")
    broken = not any(_g(s, "libs", "synadb", "read", "epoch_w0") for s in results)
    return {"failed": failed, "broken": broken}


def _mem_total() -> int | None:
    try:
        import psutil
        return psutil.virtual_memory().total
    except ImportError:
        return None


def _notes(results: list[dict], vers: dict) -> list[str]:
    notes = [
        "write = generating the rows (the '(generate only)' row is that alone) + the library's "
        "write + an fsync of every file it made; each writer runs in its own process, and "
        "'writer peak RSS' is the largest sum of RSS over that process and its children "
        "(sampled every 50 ms; at least the process's own ru_maxrss)",
        "open, first batch and 'row cold' run in a new process after "
        "posix_fadvise(POSIX_FADV_DONTNEED) of every file of the data set (cold-ish: the "
        "kernel keeps pages some process maps; imports are done before the clock starts); "
        "'first batch' counts from before open to the first batch of a shuffled "
        "DataLoader(batch_size=256, num_workers=0)",
        f"'row cold' is the median of {COLD_ROWS} random rows, each read after dropping the "
        f"files again; 'row warm' the median of {WARM_CALLS} reads of those rows: "
        "ds[i] for synadb, HF and litdata, x[i] for np.memmap, take([i]) for Lance",
        f"epochs run from the page cache (each library's files are read once before), "
        f"DataLoader(batch_size={BATCH}, shuffle=True), best of the timed epochs after a "
        f"3-batch warm-up with persistent workers; an epoch stops at {EPOCH_CAP_BATCHES} "
        f"batches ({EPOCH_CAP_BATCHES * BATCH:,} rows) where the data has more "
        "(marked 'capped' in the targets)",
        "RSS counts mapped file pages; 'anon' is RSS less file-backed and shared pages",
        "synadb grows its file ahead of the data with posix_fallocate (so 'on disk' includes "
        "an allocated tail) and then writes into allocated blocks; the other writers extend "
        "their files as they go, which costs far more on some file systems (on the VM this "
        "was written on, dd wrote 0.4 GB/s extending a file and 2.4 GB/s into a fallocated one)",
        "np.memmap, HF, Lance and the synadb wrapper return (x, y) tensors from __getitems__ "
        "(collate_fn passes them on); litdata is an IterableDataset that shuffles chunk "
        "order and rows within a chunk (not a global permutation) and its rows go through "
        "default_collate; Lance's workers use spawn (its runtime does not survive fork)",
        "HF: Dataset.from_generator (one example at a time, Arrow shards in cache_dir), "
        "reopened with Dataset.from_file of each shard (+ concatenate_datasets), "
        "with_format('numpy'), one ds[indices] per batch; litdata: optimize(num_workers=1, "
        "chunk_bytes='64MB'); Lance: write_dataset from a RecordBatchReader, take() per batch",
    ]
    seen = set()
    for sz in results:
        for lib, r in (sz.get("libs") or {}).items():
            for n in _g(r, "read", "notes") or []:
                if n not in seen:
                    seen.add(n)
                    notes.append(n)
            if "skipped" in r and r["skipped"] not in seen:
                seen.add(r["skipped"])
                notes.append(f"{LABELS[lib]}: {r['skipped']}")
    for lib, (mod, pip, lic) in PEERS.items():
        notes.append(f"{LABELS[lib]}: pip package {pip} ({lic}), here {vers.get(lib)}")
    return notes


def _sizes(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="synadb.Dataset vs np.memmap, HF datasets, "
                                 "litdata and Lance as torch training data")
    ap.add_argument("--sizes", type=_sizes, default=None,
                    help="sizes of x in GB, comma-separated (default 0.5,2,8)")
    ap.add_argument("--quick", action="store_true", help="sizes 0.05,0.2")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="timed epochs per setting")
    ap.add_argument("--out", default=str(c.OUT_DIR))
    ap.add_argument("--workdir", default=None, help="scratch folder (default: the out folder)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    # internal: one writer or reader in this process
    ap.add_argument("--_write", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_read", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cap", type=int, default=EPOCH_CAP_BATCHES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._write or args._read:
        if args._write:
            res = _writer_main(args._write, Path(args.dir), args.rows)
        else:
            res = _reader_main(args._read, Path(args.dir), args.rows, args.cap, args.epochs)
        print("RESULT " + json.dumps(res, default=str), flush=True)
        return 0
    res = run_bench(sizes=args.sizes, quick=args.quick, out_dir=Path(args.out),
                    work_root=Path(args.workdir) if args.workdir else None, epochs=args.epochs)
    if res["broken"]:
        return 1
    return 1 if args.strict and res["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
