"""MLflow plugin benchmark: ``synadb:///`` against ``sqlite:///`` through real MLflow.

Both backends are driven by the same MLflow 3 code in the same run:
  1. logging, in this process, through the MLflow client:
     * ``mlflow.log_metric`` inside ``mlflow.start_run()`` (fluent API);
     * ``MlflowClient().log_batch`` with 100 metrics per call;
     per call, median of interleaved repetitions (synadb, sqlite, synadb, ...).
  2. ``search_runs`` over 10,000 runs through a real ``mlflow server``
     subprocess per backend (``--backend-store-uri synadb:///...`` or
     ``sqlite:///...``), queried over HTTP with
     ``MlflowClient(tracking_uri="http://127.0.0.1:<port>")``:
     * a filter: ``metrics.loss < 0.5 and params.lr = '0.01'``, max_results=1000;
     * an order: ``order_by=["metrics.acc DESC"]``, max_results=100;
     each cold (the first call of that query on a freshly started server,
     whose store was opened by one ``get_experiment`` first) and warm
     (median of several calls).

The 10K-run files hold the same runs (same seed): 3 params, 3 metrics (one
value each, step 0), 2 tags, a run name.  They are built before the servers
start:
  * synadb: through the plugin's own store (``SynaTrackingStore``:
    ``create_run`` + ``log_batch`` per run) inside one ``db.batch(sync=False)``,
    then closed (fsync) -- what the server reads is what MLflow's API wrote;
  * sqlite: MLflow's ``SqlAlchemyStore`` creates the file (its alembic schema)
    and the experiment; the runs are inserted with MLflow's own ORM models
    (the tables of ``SqlRun``, ``SqlTag``, ``SqlParam``, ``SqlMetric``,
    ``SqlLatestMetric``, one executemany each) in one session -- the rows
    ``create_run`` + ``log_batch`` write, in one transaction, because ``create_run`` + ``log_batch`` per run costs ~50 ms
    here (a commit per call) = ~8 min for 10K runs.
Both servers must return the same number of runs for the filter and the same
top run for the order; the benchmark checks it.

Run standalone: ``python benchmarks/bench_mlflow_store.py [--quick]`` or as
``python benchmarks/run.py --only mlflow_store``.
Writes benchmarks/out/mlflow_store.json and benchmarks/out/mlflow_store.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

if str(c.REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(c.REPO_ROOT))

FULL = dict(reps=5,              # interleaved repetitions of each logging workload
            fluent_calls=200,    # mlflow.log_metric calls per repetition (per backend)
            batch_calls=20,      # log_batch calls of 100 metrics per repetition
            batch_size=100,
            search_runs=10_000,  # runs in each server's file
            warm_reps=5)         # warm search_runs calls (median)
QUICK = dict(reps=3, fluent_calls=100, batch_calls=10, batch_size=100,
             search_runs=10_000, warm_reps=3)

FILTER = "metrics.loss < 0.5 and params.lr = '0.01'"
FILTER_MAX = 1000
ORDER = ["metrics.acc DESC"]
ORDER_MAX = 100
SERVER_START_TIMEOUT = 120.0
WARM_BUDGET_S = 12.0     # warm search_runs calls stop (after 3) past this, per query
LOG_BUDGET_S = 40.0      # the logging section stops repeating (after 3 reps) past this

BACKENDS = ("synadb", "sqlite")


def log(msg: str) -> None:
    print(f"[mlflow_store] {msg}", file=sys.stderr, flush=True)


med = c.med


def _uri(backend: str, d: Path) -> str:
    return f"synadb:///{d / 'mlflow.synadb'}" if backend == "synadb" \
        else f"sqlite:///{d / 'mlflow.sqlite'}"


# --------------------------------------------------------------------------
# 1. logging through the MLflow client, in this process
# --------------------------------------------------------------------------
class Loggers:
    """One tracking URI per backend, each with its experiment, made once
    (a fresh sqlite store costs a second or two of schema migration)."""

    def __init__(self, work: Path):
        import mlflow

        self.dirs = {b: work / f"log_{b}" for b in BACKENDS}
        self.uris = {}
        self.eids = {}
        for b, d in self.dirs.items():
            d.mkdir(parents=True, exist_ok=True)
            self.uris[b] = _uri(b, d)
            mlflow.set_tracking_uri(self.uris[b])
            t0 = time.perf_counter()
            self.eids[b] = mlflow.create_experiment(
                "bench", artifact_location=(d / "art").as_uri())
            log(f"{b}: store + experiment made in {time.perf_counter() - t0:.2f} s")

    def fluent(self, b: str, n: int) -> dict:
        """``mlflow.log_metric`` n times inside ``mlflow.start_run()``; the
        first 5 calls (metric registration, client caches) are not timed."""
        import mlflow

        mlflow.set_tracking_uri(self.uris[b])
        gc.collect()
        with mlflow.start_run(experiment_id=self.eids[b]):
            for i in range(5):
                mlflow.log_metric("loss", 1.0, step=i)
            t0 = time.perf_counter()
            for i in range(n):
                mlflow.log_metric("loss", 0.5 + i * 1e-4, step=5 + i)
            dt = time.perf_counter() - t0
        return {"n": n, "per_call_s": dt / n}

    def batch(self, b: str, n: int, size: int) -> dict:
        """``MlflowClient().log_batch`` of ``size`` metrics (one step of
        ``size`` different metrics) n times on one run; the first call
        (registers the metrics) is not timed."""
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        mlflow.set_tracking_uri(self.uris[b])
        cl = MlflowClient()
        names = [f"metric_{j:03d}" for j in range(size)]
        gc.collect()
        rid = cl.create_run(self.eids[b]).info.run_id
        ts = int(time.time() * 1000)
        cl.log_batch(rid, metrics=[Metric(m, 0.0, ts, 0) for m in names])
        t0 = time.perf_counter()
        for s in range(1, n + 1):
            ts = int(time.time() * 1000)
            cl.log_batch(rid, metrics=[Metric(m, s * 1e-3 + j * 1e-6, ts, s)
                                       for j, m in enumerate(names)])
        dt = time.perf_counter() - t0
        cl.set_terminated(rid)
        return {"n": n, "size": size, "per_call_s": dt / n, "per_metric_s": dt / n / size}


def bench_logging(work: Path, p: dict, notes: list[str]) -> dict:
    lg = Loggers(work)
    samples: dict[str, list] = {}

    def take(key, fn):
        try:
            samples.setdefault(key, []).append(fn())
        except Exception as e:  # noqa: BLE001 -- report, keep measuring
            log(f"{key} FAILED: {type(e).__name__}: {e}")
            samples.setdefault(key, []).append({"error": f"{type(e).__name__}: {e}"})

    t_start = time.perf_counter()
    for rep in range(p["reps"]):
        if rep >= 3 and time.perf_counter() - t_start > LOG_BUDGET_S:
            notes.append(f"logging: stopped after {rep} of {p['reps']} repetitions "
                         f"(over its {LOG_BUDGET_S:.0f} s budget; sqlite's commits are slow "
                         "on this disk right now)")
            break
        log(f"logging, repetition {rep + 1}/{p['reps']} (load {c.loadavg()})")
        order = BACKENDS if rep % 2 == 0 else BACKENDS[::-1]
        for b in order:
            take(f"fluent_{b}", lambda: lg.fluent(b, p["fluent_calls"]))
        for b in order:
            take(f"batch_{b}", lambda: lg.batch(b, p["batch_calls"], p["batch_size"]))
    out = {}
    for k, v in samples.items():
        good = [s for s in v if "error" not in s]
        errs = [s["error"] for s in v if "error" in s]
        if errs:
            notes.append(f"{k}: {len(errs)} of {len(v)} repetitions failed: {errs[0]}")
        if good:
            out[k] = {f: med([s[f] for s in good]) for f in good[0] if f.endswith("_s")}
            out[k].update(n=good[0]["n"], reps=len(good),
                          samples_s=[s["per_call_s"] for s in good])
    return out


# --------------------------------------------------------------------------
# 2. search_runs over 10K runs through `mlflow server`
# --------------------------------------------------------------------------
def _run_data(n: int, seed: int = 0):
    """The same n runs for both backends: (name, start ms, metrics, params, tags)."""
    rng = random.Random(seed)
    base = 1_700_000_000_000
    for i in range(n):
        yield (f"run-{i:05d}", base + i * 1000,
               {"loss": rng.random(), "acc": rng.random(), "epoch_time": rng.random() * 10},
               {"lr": rng.choice(["0.1", "0.01", "0.001"]),
                "batch_size": str(rng.choice([32, 64, 128])),
                "optimizer": rng.choice(["adam", "sgd"])},
               {"team": rng.choice(["vision", "nlp"]), "stage": "sweep"})


def build_synadb(d: Path, n: int) -> tuple[str, float]:
    """n runs through the plugin's store: create_run + log_batch per run."""
    from mlflow.entities import Metric, Param, RunTag

    from synadb.integrations.mlflow_store import SynaTrackingStore

    t0 = time.perf_counter()
    st = SynaTrackingStore(_uri("synadb", d))
    eid = st.create_experiment("search")
    with st.tracker.db.batch(sync=False):
        for name, start, mets, pars, tags in _run_data(n):
            rid = st.create_run(eid, "bench", start, [], name).info.run_id
            st.log_batch(rid, [Metric(k, v, start, 0) for k, v in mets.items()],
                         [Param(k, v) for k, v in pars.items()],
                         [RunTag(k, v) for k, v in tags.items()])
    st.tracker.close()  # fsync, checkpoint the index: the server opens a clean file
    return eid, time.perf_counter() - t0


def build_sqlite(d: Path, n: int) -> tuple[str, float]:
    """MLflow's SqlAlchemyStore makes the schema and the experiment; the runs
    are the rows create_run + log_batch would write (runs, tags incl.
    mlflow.runName, params, metrics, latest_metrics), inserted into the tables
    of MLflow's own models in one transaction (instead of two per run)."""
    import uuid

    from mlflow.entities import LifecycleStage, RunStatus, SourceType
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
    from mlflow.utils.uri import append_to_uri_path

    t0 = time.perf_counter()
    st = SqlAlchemyStore(_uri("sqlite", d), (d / "art").as_uri())
    eid = st.create_experiment("search")
    loc = st.get_experiment(eid).artifact_location
    rows: dict = {"runs": [], "tags": [], "params": [], "metrics": []}
    for name, start, mets, pars, tags in _run_data(n):
        rid = uuid.uuid4().hex
        rows["runs"].append(dict(
            name=name, artifact_uri=append_to_uri_path(loc, rid, "artifacts"), run_uuid=rid,
            experiment_id=int(eid), source_type=SourceType.to_string(SourceType.UNKNOWN),
            source_name="", entry_point_name="", user_id="bench",
            status=RunStatus.to_string(RunStatus.RUNNING), start_time=start, end_time=None,
            deleted_time=None, source_version="", lifecycle_stage=LifecycleStage.ACTIVE))
        rows["tags"] += [dict(key=k, value=v, run_uuid=rid)
                         for k, v in {MLFLOW_RUN_NAME: name, **tags}.items()]
        rows["params"] += [dict(key=k, value=v, run_uuid=rid) for k, v in pars.items()]
        rows["metrics"] += [dict(key=k, value=v, timestamp=start, step=0, is_nan=False,
                                 run_uuid=rid) for k, v in mets.items()]
    with st.ManagedSessionMaker() as session:  # one transaction, executemany per table
        session.execute(SqlRun.__table__.insert(), rows["runs"])
        session.execute(SqlTag.__table__.insert(), rows["tags"])
        session.execute(SqlParam.__table__.insert(), rows["params"])
        session.execute(SqlMetric.__table__.insert(), rows["metrics"])
        session.execute(SqlLatestMetric.__table__.insert(), rows["metrics"])
    st.engine.dispose()
    return eid, time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` on a free port, in its own process group (so the
    group we started, and only it, is stopped at the end)."""

    def __init__(self, backend_uri: str, art: Path, log_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        cmd = [str(mlflow_bin), "server", "--backend-store-uri", backend_uri,
               "--default-artifact-root", art.as_uri(), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]
        # No job runner: with a SQL backend the server would otherwise spawn a huey
        # consumer (with worker processes) that competes with the queries on a small
        # box for its first minute; with synadb:/// it never starts one.
        env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true", GIT_PYTHON_REFRESH="quiet",
                   MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.log_path = log_path
        self._log = open(log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self.start_s = self._wait_ready(t0)

    def _wait_ready(self, t0: float) -> float:
        deadline = t0 + SERVER_START_TIMEOUT
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}): "
                                   + self._tail())
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"mlflow server not healthy after {SERVER_START_TIMEOUT:.0f} s: "
                           + self._tail())

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "?"
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group we started
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait(timeout=15)
        self._log.close()


def _query(cl, eid: str, which: str):
    if which == "filter":
        return cl.search_runs([eid], filter_string=FILTER, max_results=FILTER_MAX)
    return cl.search_runs([eid], order_by=ORDER, max_results=ORDER_MAX)


def search_on_server(backend: str, d: Path, eid: str, which: str, warm_reps: int) -> dict:
    """Start a server on the file, open its store with one get_experiment,
    then time the query's first call (cold) and warm_reps more (warm)."""
    from mlflow import MlflowClient

    srv = Server(_uri(backend, d), d / "art", d / f"server_{which}.log")
    try:
        cl = MlflowClient(tracking_uri=srv.url)
        t0 = time.perf_counter()
        cl.get_experiment(eid)  # the server opens its store lazily, on the first request
        open_s = time.perf_counter() - t0
        gc.collect()
        t0 = time.perf_counter()
        page = _query(cl, eid, which)
        cold = time.perf_counter() - t0
        warm = []
        t_warm = time.perf_counter()
        for i in range(warm_reps):
            if i >= 3 and time.perf_counter() - t_warm > WARM_BUDGET_S:
                break
            t0 = time.perf_counter()
            page = _query(cl, eid, which)
            warm.append(time.perf_counter() - t0)
        return {"start_s": srv.start_s, "open_s": open_s, "cold_s": cold,
                "warm_s": med(warm), "warm_samples_s": warm, "n_returned": len(page),
                "more": bool(page.token),
                "first": [r.info.run_name for r in page[:3]]}
    finally:
        srv.stop()


def bench_search(work: Path, p: dict, notes: list[str]) -> dict:
    n = p["search_runs"]
    out: dict = {"build": {}}
    dirs = {b: work / f"search_{b}" for b in BACKENDS}
    eids = {}
    for b, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        try:
            eids[b], took = (build_synadb if b == "synadb" else build_sqlite)(d, n)
            size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            out["build"][b] = {"s": took, "bytes": size}
            log(f"{b}: {n} runs built in {took:.1f} s ({size / 1e6:.1f} MB)")
        except Exception as e:  # noqa: BLE001
            out["build"][b] = {"error": f"{type(e).__name__}: {e}"}
            notes.append(f"{b}: building {n} runs failed: {type(e).__name__}: {e}")
            traceback.print_exc()
    for which in ("filter", "order"):
        out[which] = {}
        for b in BACKENDS:  # a fresh server per backend and query: each cold is a first call
            if b not in eids:
                continue
            log(f"search_runs ({which}) on mlflow server --backend-store-uri {b}:/// "
                f"(load {c.loadavg()})")
            try:
                out[which][b] = search_on_server(b, dirs[b], eids[b], which, p["warm_reps"])
            except Exception as e:  # noqa: BLE001
                out[which][b] = {"error": f"{type(e).__name__}: {e}"}
                notes.append(f"search_runs {which} on {b} failed: {type(e).__name__}: {e}")
                traceback.print_exc()
        got = {b: r for b, r in out[which].items() if "error" not in r}
        if len(got) == 2:
            a, s = got["synadb"], got["sqlite"]
            if (a["n_returned"], a["more"]) != (s["n_returned"], s["more"]) or \
                    (which == "order" and a["first"] != s["first"]):
                notes.append(f"MISMATCH {which}: synadb returned {a['n_returned']} runs "
                             f"(first {a['first']}), sqlite {s['n_returned']} "
                             f"(first {s['first']})")
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)
    return out


# --------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------
HEADERS = ["operation", "synadb:///", "sqlite:/// (same run)", "ratio synadb/sqlite", "notes"]


def _ratio(ours, base) -> str:
    """synadb time / sqlite time, and which is faster."""
    if not ours or not base:
        return "n/a"
    r = ours / base
    tail = f"{c.fmt_ratio(1 / r)} faster" if r <= 1 else f"{c.fmt_ratio(r)} slower"
    return f"{r:.3g} ({tail})"


def build_rows(p: dict, lg: dict, sr: dict) -> list[list[str]]:
    rows: list[list[str]] = []

    def g(d, *path):
        for k in path:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    if lg:
        fs, fq = g(lg, "fluent_synadb", "per_call_s"), g(lg, "fluent_sqlite", "per_call_s")
        reps = g(lg, "fluent_synadb", "reps") or p["reps"]
        rows.append([f"mlflow.log_metric in mlflow.start_run() (per call; {p['fluent_calls']} "
                     "calls, median of reps)", c.fmt_time(fs), c.fmt_time(fq), _ratio(fs, fq),
                     f"{reps} interleaved reps"])
        bs, bq = g(lg, "batch_synadb", "per_call_s"), g(lg, "batch_sqlite", "per_call_s")
        B = p["batch_size"]
        rows.append([f"MlflowClient().log_batch of {B} metrics (per call; {p['batch_calls']} "
                     "calls, median of reps)", c.fmt_time(bs), c.fmt_time(bq), _ratio(bs, bq),
                     "per metric: " + (f"{c.fmt_time(bs / B)} vs {c.fmt_time(bq / B)}"
                                       if bs and bq else "n/a")])
    if not sr:
        return rows
    n = p["search_runs"]
    desc = {"filter": f"search_runs, {n:,} runs, filter \"{FILTER}\", max_results={FILTER_MAX}",
            "order": f"search_runs, {n:,} runs, order_by={ORDER}, max_results={ORDER_MAX}"}
    for which in ("filter", "order"):
        a, s = g(sr, which, "synadb") or {}, g(sr, which, "sqlite") or {}
        if "error" in a or "error" in s:
            rows.append([desc[which], a.get("error", ""), s.get("error", ""), "n/a", ""])
            continue
        got = f"{a.get('n_returned', '?')} runs returned" + (" (+ page token)"
                                                             if a.get("more") else "")
        rows.append([desc[which] + ": cold (first call on a fresh server)",
                     c.fmt_time(a.get("cold_s")), c.fmt_time(s.get("cold_s")),
                     _ratio(a.get("cold_s"), s.get("cold_s")), got])
        rows.append([desc[which] + f": warm (median of {len(a.get('warm_samples_s') or ())}"
                     f" / {len(s.get('warm_samples_s') or ())})",
                     c.fmt_time(a.get("warm_s")), c.fmt_time(s.get("warm_s")),
                     _ratio(a.get("warm_s"), s.get("warm_s")), "over HTTP, same client"])
    a, s = g(sr, "filter", "synadb") or {}, g(sr, "filter", "sqlite") or {}
    if a.get("open_s") and s.get("open_s"):
        rows.append(["mlflow server: first request (store opened lazily: get_experiment)",
                     c.fmt_time(a["open_s"]), c.fmt_time(s["open_s"]),
                     _ratio(a["open_s"], s["open_s"]), "before the cold search"])
        rows.append(["mlflow server: start until /health answers", c.fmt_time(a["start_s"]),
                     c.fmt_time(s["start_s"]), _ratio(a["start_s"], s["start_s"]),
                     "process start, imports"])
    ba, bq = g(sr, "build", "synadb") or {}, g(sr, "build", "sqlite") or {}
    if "s" in ba and "s" in bq:
        rows.append([f"building the {n:,}-run file (see notes: not the same path)",
                     f"{c.fmt_time(ba['s'])} ({ba['bytes'] / 1e6:.1f} MB)",
                     f"{c.fmt_time(bq['s'])} ({bq['bytes'] / 1e6:.1f} MB)", "info",
                     "synadb: store API; sqlite: bulk insert"])
    return rows


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------
def run_bench(quick: bool = False, out_dir: Path | None = None,
              work_root: Path | None = None, only: set[str] | None = None) -> dict:
    c.quiet_mlflow()
    p = dict(QUICK if quick else FULL)
    out_dir = out_dir or c.OUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    root = work_root or out_dir
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlflow_store_", dir=root))
    info = c.machine_info()
    mode = "quick" if quick else "full"
    try:
        import mlflow
        mlflow_version = mlflow.__version__
    except Exception as e:  # noqa: BLE001
        print(f"mlflow not importable: {e}", file=sys.stderr)
        return {"broken": True, "failed": []}
    print("synadb MLflow plugin benchmark (synadb:/// vs sqlite:/// through real MLflow)")
    print(f"  machine : {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"  commit  : {info['commit']}   date: {info['date']}")
    print(f"  load    : {info['loadavg']} (1/5/15 min) at start")
    print(f"  mlflow  : {mlflow_version}; mode {mode}: " + ", ".join(f"{k}={v}" for k, v in p.items()),
          flush=True)
    only = only or {"logging", "search"}
    notes: list[str] = []
    lg: dict = {}
    sr: dict = {}
    took = []
    broken = False
    t_start = time.perf_counter()
    try:
        if "logging" in only:
            t0 = time.perf_counter()
            lg = bench_logging(work, p, notes)
            took.append(f"logging {time.perf_counter() - t0:.0f} s")
        if "search" in only:
            t0 = time.perf_counter()
            sr = bench_search(work, p, notes)
            took.append(f"search (incl. building the files) {time.perf_counter() - t0:.0f} s")
    except Exception as e:  # noqa: BLE001
        broken = True
        notes.append(f"failed: {type(e).__name__}: {e}")
        traceback.print_exc()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "logging" in only and not all(f"{k}_synadb" in lg for k in ("fluent", "batch")):
        broken = True
    if "search" in only and any("error" in (sr.get(w) or {}).get("synadb", {"error": 1})
                                for w in ("filter", "order")):
        broken = True

    rows = build_rows(p, lg, sr)
    notes.append(f"MLflow {mlflow_version}. Ratio = synadb time / sqlite time (< 1: synadb "
                 "faster). Logging: both stores in this process via "
                 "mlflow.set_tracking_uri(...), interleaved, medians of per-call means; "
                 "the first calls of a run (metric registration) are not timed; "
                 "sqlite:/// is MLflow's SqlAlchemyStore at its defaults (a commit per call)")
    if "search" in only:
        notes.append(f"search_runs: one `mlflow server --workers 1` per backend and query, "
                     f"queried over HTTP from this process; {p['search_runs']:,} runs × "
                     "(3 params, 3 metrics at step 0, 2 tags + run name), same seed for both; "
                     "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (else the sqlite server spawns "
                     "MLflow's huey job runner, whose start competes with the first queries); "
                     "cold = first search_runs after one get_experiment (which opens the "
                     "server's store), warm = median of the next calls")
        bs = (sr.get("build") or {})
        notes.append("files built before the servers start: synadb through the plugin's "
                     "SynaTrackingStore (create_run + log_batch per run, one "
                     "db.batch(sync=False), closed with fsync); sqlite by MLflow's "
                     "SqlAlchemyStore (schema, experiment) + one executemany into each table of its "
                     "models (SqlRun, SqlTag, SqlParam, SqlMetric, SqlLatestMetric) in one "
                     "session: the rows create_run + log_batch write, because "
                     "create_run + log_batch per run costs ~50 ms on sqlite here "
                     + ", ".join(f"[{b}: {c.fmt_time(v.get('s'))}]" for b, v in bs.items()))
        for which in ("filter", "order"):
            for b in BACKENDS:
                r = (sr.get(which) or {}).get(b) or {}
                if "warm_samples_s" in r:
                    notes.append(f"{which} on {b}: warm samples "
                                 + ", ".join(c.fmt_time(x) for x in r["warm_samples_s"])
                                 + f"; returned {r['n_returned']}, first runs {r['first']}")
    notes.append("sections took " + ", ".join(took) + f"; total {time.perf_counter() - t_start:.0f} s;"
                 f" load average at end {c.loadavg()}")

    print()
    print(c.format_table(HEADERS, rows))
    print("\nnotes:")
    for n in notes:
        print(f"  - {n}")
    results = {"machine": info, "mode": mode, "params": p, "mlflow": mlflow_version,
               "logging": lg, "search": sr, "rows": rows, "notes": notes}
    c.write_json(out_dir / "mlflow_store.json", results)
    md = [f"MLflow plugin benchmark ({mode} run) on {info['cpu']}, {info['cores']} cores, "
          f"Python {info['python']}, MLflow {mlflow_version}; commit {info['commit']}; "
          f"{info['date']}; load average {info['loadavg']} at start.", "",
          c.markdown_table(HEADERS, rows), "", "Notes:", ""] + [f"- {n}" for n in notes] + [""]
    (out_dir / "mlflow_store.md").write_text("\n".join(md), encoding="utf-8")
    print(f"\nwrote {out_dir / 'mlflow_store.json'} and {out_dir / 'mlflow_store.md'}")
    return {"broken": broken, "failed": []}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls and repetitions")
    ap.add_argument("--out", default=str(c.OUT_DIR))
    ap.add_argument("--sections", default="logging,search", help="comma list of logging, search")
    args = ap.parse_args(argv)
    res = run_bench(quick=args.quick, out_dir=Path(args.out), only=set(args.sections.split(",")))
    if res["broken"]:
        print("ERROR: the synadb:// store could not be measured (see notes)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
