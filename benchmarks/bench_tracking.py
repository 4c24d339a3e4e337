"""Experiment tracking and model registry benchmark.

Ours (synadb/tracking.py, synadb/registry.py) against, in the same run:
  * MLflow (file store and sqlite store) -- per-call ``log_metric``,
    ``log_batch``, ``search_runs`` and its model registry
    (``log_artifact`` + ``create_model_version`` on sqlite);
  * W&B offline (``WANDB_MODE=offline``) -- one ``run.log`` per metric and
    one dict per step;
  * the published wheel ``synadb==1.4.0`` in ``.venv-peers``
    (benchmarks/peer_wheel_tracking.py, one subprocess per repetition);
  * plain files -- ``write + sha256 + fsync`` and ``read + sha256`` for
    the registry.

The box is small and shared, so every figure is the median of several
repetitions, and within a repetition ours and the baselines run one after
the other (interleaved), never all of ours first.  The load average is in the
header.  MLflow's per-call logging is slow (hundreds of calls/s), so it runs
on fewer calls than ours; the table says how many.

Run standalone: ``python benchmarks/bench_tracking.py [--quick] [--skip-peers]``
or as ``python benchmarks/run.py --only tracking``.
Writes benchmarks/out/tracking.json and benchmarks/out/tracking.md.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

if str(c.REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(c.REPO_ROOT))

PEERS_PY = c.REPO_ROOT / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_wheel_tracking.py"

FULL = dict(runs=10, params=20, epochs=100, metrics=5, reps=5, wheel_list_reps=2,
            mlf_call_epochs=40,        # MLflow per-call: 1 run x 40 epochs x 5 metrics = 200 calls
            mlf_batch_runs=2,          # MLflow log_batch: 2 runs x 100 steps (per step) and
                                       # 10 runs x 1 call (whole history per call)
            wandb_epochs=100,          # W&B: 1 run x 100 epochs x 5 metrics per style
            wandb_reps=5, wheel_list_max=10_000,
            wheel_fsync_epochs=40,     # wheel default (fsync per put): 1 run x 40 epochs
            list_sizes=(10, 1000, 10_000), mlf_list_sizes=(10, 1000), list_reps=5, warm_reps=7,
            reg_mb=(1, 10, 50), reg_versions=10)
QUICK = dict(runs=10, params=20, epochs=100, metrics=5, reps=3, wheel_list_reps=1,
             mlf_call_epochs=10, mlf_batch_runs=1, wandb_epochs=40, wheel_fsync_epochs=20,
             wandb_reps=1, wheel_list_max=10,
             list_sizes=(10, 10_000), mlf_list_sizes=(10,), list_reps=3, warm_reps=5,
             reg_mb=(1, 10), reg_versions=3)

# Targets from the issue.
T_ABS = 200_000          # metrics/s, ours per-call
T_MLF_CALL = 1000.0      # x MLflow per-call log_metric
T_MLF_BATCH = 50.0       # x MLflow log_batch, per metric
T_WHEEL = 2.0            # x the wheel at the same durability (DESIGN.md)
T_LIST = {10: 1e-3, 10_000: 50e-3}
T_REG = 0.8              # x plain write+sha256+fsync / read+sha256


def log(msg: str) -> None:
    print(f"[tracking] {msg}", file=sys.stderr, flush=True)


med = c.med


# --------------------------------------------------------------------------
# tracking: ours
# --------------------------------------------------------------------------
def _pvals(p):
    return {f"param_{i}": i * 0.5 for i in range(p["params"])}


def _names(p):
    return [f"metric_{i}" for i in range(p["metrics"])]


def ours_runid(work: Path, p: dict) -> dict:
    """ExperimentTracker: start_run(params=...), log_metric(run_id, ...) per metric."""
    from synadb import ExperimentTracker

    path = Path(tempfile.mkdtemp(dir=work)) / "trk.db"
    names, pv = _names(p), _pvals(p)
    t_all = time.perf_counter()
    tr = ExperimentTracker(path)
    loop = first = rest = 0.0
    n = 0
    gc.disable()
    try:
        for _ in range(p["runs"]):
            rid = tr.start_run("bench", ["bench"], params=pv)
            log_metric = tr.log_metric
            t0 = time.perf_counter()
            for m in names:  # epoch 0: each metric's first call registers its name
                log_metric(rid, m, 0.5, step=0)
            t1 = time.perf_counter()
            for ep in range(1, p["epochs"]):
                for m in names:
                    log_metric(rid, m, 0.5 + ep * 1e-3, step=ep)
            t2 = time.perf_counter()
            loop += t2 - t0
            first += t1 - t0
            rest += t2 - t1
            n += p["epochs"] * len(names)
            tr.end_run(rid)
        tr.close()
    finally:
        gc.enable()
    total = time.perf_counter() - t_all
    shutil.rmtree(path.parent, ignore_errors=True)
    return _ours_res(n, p, loop, first, rest, total)


def _ours_res(n, p, loop, first, rest, total):
    n_first = p["runs"] * p["metrics"]
    return {"n": n, "loop_s": loop, "total_s": total, "per_s": n / loop,
            "first_call_s": first / n_first, "steady_per_s": (n - n_first) / rest}


def ours_object(work: Path, p: dict) -> dict:
    """Experiment(name, path): with exp.start_run() as run: run.log_metric(...) per metric."""
    from synadb import Experiment

    path = Path(tempfile.mkdtemp(dir=work)) / "trk.db"
    names, pv = _names(p), _pvals(p)
    t_all = time.perf_counter()
    exp = Experiment("bench", path)
    loop = first = rest = 0.0
    n = 0
    gc.disable()
    try:
        for _ in range(p["runs"]):
            with exp.start_run(tags=["bench"], params=pv) as run:
                log_metric = run.log_metric
                t0 = time.perf_counter()
                for m in names:
                    log_metric(m, 0.5, step=0)
                t1 = time.perf_counter()
                for ep in range(1, p["epochs"]):
                    for m in names:
                        log_metric(m, 0.5 + ep * 1e-3, step=ep)
                t2 = time.perf_counter()
                loop += t2 - t0
                first += t1 - t0
                rest += t2 - t1
                n += p["epochs"] * len(names)
        exp.close()
    finally:
        gc.enable()
    total = time.perf_counter() - t_all
    shutil.rmtree(path.parent, ignore_errors=True)
    return _ours_res(n, p, loop, first, rest, total)


# --------------------------------------------------------------------------
# tracking: MLflow
# --------------------------------------------------------------------------
class MlflowStores:
    """One MlflowClient per store, kept for the whole benchmark: a fresh
    sqlite store costs seconds of schema migration, which is not logging."""

    def __init__(self, work: Path):
        c.quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.root = work / "mlflow"
        self.root.mkdir(parents=True, exist_ok=True)
        self.uris = {"file": f"file://{self.root / 'mlruns'}",
                     "sqlite": f"sqlite:///{self.root / 'mlflow.db'}"}
        self.clients = {k: MlflowClient(tracking_uri=u) for k, u in self.uris.items()}
        self._n = 0

    def new_experiment(self, store: str) -> str:
        self._n += 1
        art = self.root / f"art_{store}_{self._n}"
        return self.clients[store].create_experiment(f"e{self._n}",
                                                     artifact_location=art.as_uri())

    def new_run(self, store: str, eid: str, p: dict) -> str:
        from mlflow.entities import Param

        cl = self.clients[store]
        rid = cl.create_run(eid).info.run_id
        cl.log_batch(rid, params=[Param(k, str(v)) for k, v in _pvals(p).items()])
        return rid


def mlflow_per_call(st: MlflowStores, store: str, p: dict) -> dict:
    cl = st.clients[store]
    eid = st.new_experiment(store)
    rid = st.new_run(store, eid, p)
    names = _names(p)
    log_metric = cl.log_metric
    t0 = time.perf_counter()
    for ep in range(p["mlf_call_epochs"]):
        for m in names:
            log_metric(rid, m, 0.5 + ep * 1e-3, step=ep)
    dt = time.perf_counter() - t0
    cl.set_terminated(rid)
    n = p["mlf_call_epochs"] * len(names)
    return {"n": n, "loop_s": dt, "per_s": n / dt}


def mlflow_batch(st: MlflowStores, store: str, p: dict, per_step: bool) -> dict:
    """log_batch with the step's 5 metrics (what mlflow.log_metrics sends), or
    one log_batch with the run's whole 500-metric history."""
    from mlflow.entities import Metric

    cl = st.clients[store]
    eid = st.new_experiment(store)
    names = _names(p)
    runs = p["mlf_batch_runs"] if per_step else max(p["mlf_batch_runs"], p["runs"] // 5)
    loop = 0.0
    n = 0
    for _ in range(runs):
        rid = st.new_run(store, eid, p)
        t0 = time.perf_counter()
        if per_step:
            for ep in range(p["epochs"]):
                ts = int(time.time() * 1000)
                cl.log_batch(rid, metrics=[Metric(m, 0.5 + ep * 1e-3, ts, ep) for m in names])
        else:
            ts = int(time.time() * 1000)
            cl.log_batch(rid, metrics=[Metric(m, 0.5 + ep * 1e-3, ts, ep)
                                       for ep in range(p["epochs"]) for m in names])
        loop += time.perf_counter() - t0
        n += p["epochs"] * len(names)
        cl.set_terminated(rid)
    return {"n": n, "runs": runs, "loop_s": loop, "per_s": n / loop}


# --------------------------------------------------------------------------
# tracking: W&B offline
# --------------------------------------------------------------------------
def wandb_offline(work: Path, p: dict, style: str) -> dict:
    """One offline run: ``run.log({m: v}, step=ep)`` per metric, or one dict per
    step.  Timed: the log loop plus ``run.finish()`` (which waits until the
    service has written the run's .wandb file); ``wandb.init`` is not timed."""
    import wandb

    d = Path(tempfile.mkdtemp(dir=work, prefix="wandb_"))
    names = _names(p)
    run = wandb.init(dir=str(d), project="bench", config=_pvals(p), mode="offline",
                     settings=wandb.Settings(console="off", x_disable_stats=True,
                                             save_code=False, silent=True))
    try:
        t0 = time.perf_counter()
        for ep in range(p["wandb_epochs"]):
            if style == "dict":
                run.log({m: 0.5 + ep * 1e-3 for m in names}, step=ep)
            else:
                for m in names:
                    run.log({m: 0.5 + ep * 1e-3}, step=ep)
        t1 = time.perf_counter()
        run.finish()
        t2 = time.perf_counter()
    except BaseException:
        run.finish(exit_code=1)
        raise
    n = p["wandb_epochs"] * len(names)
    shutil.rmtree(d, ignore_errors=True)
    return {"n": n, "loop_s": t1 - t0, "finish_s": t2 - t1, "per_s": n / (t2 - t0),
            "per_s_loop_only": n / (t1 - t0)}


def _children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        out.add(int(d))
            except (OSError, IndexError):
                pass
    return out


def wandb_teardown(before: set[int]) -> str:
    """Stop W&B's service process; say whether any child of ours is left."""
    try:
        import wandb

        wandb.teardown()
    except Exception as e:  # noqa: BLE001
        return f"wandb.teardown failed: {e}"
    deadline = time.time() + 10
    left = _children() - before
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = {pid for pid in left if os.path.exists(f"/proc/{pid}")}
    if left:
        for pid in left:  # processes this benchmark started (wandb-core)
            try:
                os.kill(pid, 15)
            except OSError:
                pass
        return f"W&B left {len(left)} process(es) after teardown; sent SIGTERM to {sorted(left)}"
    return "W&B service torn down (no child process left)"


# --------------------------------------------------------------------------
# the wheel (.venv-peers)
# --------------------------------------------------------------------------
def wheel_ok() -> bool:
    if not PEERS_PY.exists():
        return False
    out = subprocess.run([str(PEERS_PY), "-I", "-c", "import synadb; print(synadb.__version__)"],
                         capture_output=True, text=True, timeout=120)
    return out.returncode == 0 and out.stdout.strip() == "1.4.0"


def wheel_call(work: Path, section: str, *args: str, timeout: float = 600) -> dict:
    import json

    cmd = [str(PEERS_PY), "-I", str(PEER_SCRIPT), "--workdir", str(work),
           "--section", section, *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"wheel {section} exceeded {timeout:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"wheel {section} failed (exit {out.returncode}): {err}"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------
# the sections
# --------------------------------------------------------------------------
def _try(store: dict, key: str, fn):
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001 -- report, keep measuring
        res = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)}
        log(f"{key} FAILED: {res['error']}")
    store.setdefault(key, []).append(res)
    return res


def bench_logging(work: Path, p: dict, peers: dict, notes: list[str]) -> dict:
    samples: dict[str, list] = {}
    st = None
    try:
        st = MlflowStores(work)
    except Exception as e:  # noqa: BLE001
        notes.append(f"MLflow not measured: {type(e).__name__}: {e}")
    have_wandb = True
    try:
        os.environ["WANDB_MODE"] = "offline"
        os.environ["WANDB_SILENT"] = "true"
        os.environ["WANDB_DISABLE_GIT"] = "true"
        os.environ["WANDB_DISABLE_CODE"] = "true"
        import wandb  # noqa: F401
    except Exception as e:  # noqa: BLE001
        have_wandb = False
        notes.append(f"W&B not measured: {type(e).__name__}: {e}")
    before = _children()
    wargs = ["--runs", str(p["runs"]), "--params", str(p["params"]),
             "--epochs", str(p["epochs"]), "--metrics", str(p["metrics"])]
    try:
        for rep in range(p["reps"]):
            log(f"logging, repetition {rep + 1}/{p['reps']} (load {c.loadavg()})")
            _try(samples, "ours_runid", lambda: ours_runid(work, p))
            if st is not None:
                _try(samples, "mlflow_file_call", lambda: mlflow_per_call(st, "file", p))
            _try(samples, "ours_object", lambda: ours_object(work, p))
            if st is not None:
                _try(samples, "mlflow_sqlite_call", lambda: mlflow_per_call(st, "sqlite", p))
                _try(samples, "mlflow_file_batch_step", lambda: mlflow_batch(st, "file", p, True))
            _try(samples, "ours_runid", lambda: ours_runid(work, p))
            if st is not None:
                _try(samples, "mlflow_sqlite_batch_step",
                     lambda: mlflow_batch(st, "sqlite", p, True))
                _try(samples, "mlflow_file_batch_run", lambda: mlflow_batch(st, "file", p, False))
                _try(samples, "mlflow_sqlite_batch_run",
                     lambda: mlflow_batch(st, "sqlite", p, False))
            _try(samples, "ours_object", lambda: ours_object(work, p))
            if have_wandb and rep < p["wandb_reps"]:
                _try(samples, "wandb_metric", lambda: wandb_offline(work, p, "metric"))
                _try(samples, "wandb_dict", lambda: wandb_offline(work, p, "dict"))
            if peers.get("wheel"):
                _try(samples, "wheel_nosync", lambda: wheel_call(work, "tracking", "--nosync", *wargs))
                _try(samples, "wheel_fsync", lambda: wheel_call(
                    work, "tracking", *wargs[:4], "--runs", "1",
                    "--epochs", str(p["wheel_fsync_epochs"]), "--metrics", str(p["metrics"])))
    finally:
        if have_wandb:
            notes.append(wandb_teardown(before))
    out = {}
    for k, v in samples.items():
        good = [s for s in v if "error" not in s]
        errs = [s["error"] for s in v if "error" in s]
        if errs:
            notes.append(f"{k}: {len(errs)} of {len(v)} repetitions failed: {errs[0]}")
        if good:
            out[k] = {"per_s": med([s["per_s"] for s in good]), "n": good[0]["n"],
                      "reps": len(good), "samples_per_s": [s["per_s"] for s in good]}
            for f in ("total_s", "first_call_s", "steady_per_s"):
                if f in good[0]:
                    out[k][f] = med([s[f] for s in good])
            if "finish_s" in good[0]:
                out[k]["finish_s"] = med([s["finish_s"] for s in good])
                out[k]["per_s_loop_only"] = med([s["per_s_loop_only"] for s in good])
    return out


# ---- listing --------------------------------------------------------------
def ours_build_runs(path: Path, n: int, p: dict) -> float:
    """n runs with 20 params each, written in one batch (one lock, one write)."""
    from synadb import ExperimentTracker

    pv = _pvals(p)
    t0 = time.perf_counter()
    with ExperimentTracker(path) as tr:
        with tr.db.batch():
            for _ in range(n):
                tr.start_run("bench", ["bench"], params=pv)
    return time.perf_counter() - t0


def ours_list(path: Path, n: int, warm_reps: int) -> dict:
    from synadb import ExperimentTracker

    gc.collect()
    t0 = time.perf_counter()
    tr = ExperimentTracker(path)
    t1 = time.perf_counter()
    runs = tr.list_runs()
    t2 = time.perf_counter()
    assert len(runs) == n, len(runs)
    warm = []
    for _ in range(warm_reps):
        t3 = time.perf_counter()
        runs = tr.list_runs()
        warm.append(time.perf_counter() - t3)
    tr.close()
    return {"open_s": t1 - t0, "first_s": t2 - t1, "cold_s": t2 - t0, "warm_s": med(warm)}


def mlflow_build_runs(st: MlflowStores, store: str, n: int, p: dict) -> tuple[str, float]:
    t0 = time.perf_counter()
    eid = st.new_experiment(store)
    for _ in range(n):  # create_run + one log_batch of the params (left Running:
        st.new_run(store, eid, p)  # one commit fewer per run; search_runs lists them all)
    return eid, time.perf_counter() - t0


def mlflow_list(st: MlflowStores, store: str, eid: str, n: int, warm_reps: int) -> dict:
    """search_runs over all runs of the experiment (paged by 1000)."""
    from mlflow.tracking import MlflowClient

    def search(cl):
        got, token = 0, None
        while True:
            page = cl.search_runs([eid], max_results=1000, page_token=token)
            got += len(page)
            token = page.token
            if not token:
                return got

    gc.collect()
    t0 = time.perf_counter()
    cl = MlflowClient(tracking_uri=st.uris[store])
    t1 = time.perf_counter()
    got = search(cl)
    t2 = time.perf_counter()
    assert got == n, (got, n)
    warm = []
    for _ in range(warm_reps):
        t3 = time.perf_counter()
        search(cl)
        warm.append(time.perf_counter() - t3)
    return {"open_s": t1 - t0, "first_s": t2 - t1, "cold_s": t2 - t0, "warm_s": med(warm)}


def bench_listing(work: Path, p: dict, peers: dict, notes: list[str]) -> dict:
    out: dict = {"ours": {}, "mlflow_file": {}, "mlflow_sqlite": {}, "wheel": {}}
    st = None
    try:
        st = MlflowStores(work / "list")
    except Exception as e:  # noqa: BLE001
        notes.append(f"MLflow search_runs not measured: {type(e).__name__}: {e}")
    for n in p["list_sizes"]:
        path = work / f"list_{n}.db"
        try:
            b = ours_build_runs(path, n, p)
            log(f"ours: {n} runs written in {b:.2f} s")
        except Exception as e:  # noqa: BLE001
            out["ours"][n] = {"error": f"{type(e).__name__}: {e}"}
            continue
        mlf = {}
        if st is not None and n in p["mlf_list_sizes"]:
            for store in ("file", "sqlite"):
                try:
                    eid, b = mlflow_build_runs(st, store, n, p)
                    log(f"MLflow {store}: {n} runs written in {b:.1f} s")
                    mlf[store] = eid
                except Exception as e:  # noqa: BLE001
                    out[f"mlflow_{store}"][n] = {"error": f"{type(e).__name__}: {e}"}
        samples: dict[str, list] = {}
        for rep in range(p["list_reps"]):
            log(f"list {n} runs, repetition {rep + 1}/{p['list_reps']} (load {c.loadavg()})")
            _try(samples, "ours", lambda: ours_list(path, n, p["warm_reps"]))
            for store, eid in mlf.items():  # seconds per call at 1K runs: fewer repeats
                if n < 1000 or rep < 3:
                    _try(samples, f"mlflow_{store}", lambda: mlflow_list(
                        st, store, eid, n, p["warm_reps"] if n < 1000 else 2))
            if (peers.get("wheel") and rep < p["wheel_list_reps"]  # each call rebuilds its file
                    and n <= p["wheel_list_max"]):
                _try(samples, "wheel", lambda: wheel_call(
                    work, "list", "--nosync", "--n-runs", str(n), "--params", str(p["params"]),
                    "--warm-reps", str(p["warm_reps"])))
        for k, v in samples.items():
            good = [s for s in v if "error" not in s]
            if not good:
                out[k][n] = {"error": v[0]["error"]}
                continue
            out[k][n] = {f: med([s.get(f) for s in good])
                         for f in ("open_s", "first_s", "cold_s", "warm_s", "build_s")
                         if f in good[0]}
            out[k][n]["reps"] = len(good)
        path.unlink(missing_ok=True)
    return out


# ---- registry -------------------------------------------------------------
def plain_save(path: Path, data: bytes) -> str:
    """What a careful hand-rolled registry does: hash, write, fsync."""
    digest = hashlib.sha256(data).hexdigest()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return digest


def plain_load(path: Path, digest: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise RuntimeError("checksum mismatch")
    return data


class MlflowRegistry:
    """MLflow's model registry on the sqlite store: a save writes the bytes to a
    file, logs it as a run artifact and registers a model version; a load
    downloads the version's artifact and reads it.  MLflow does not fsync and
    keeps no checksum."""

    def __init__(self, work: Path):
        c.quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{work / 'reg.db'}"
        self.cl = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.eid = self.cl.create_experiment("reg", artifact_location=(work / "art").as_uri())
        self.models: set[str] = set()

    def save(self, name: str, data: bytes) -> int:
        src = self.work / "model.bin"
        with open(src, "wb") as f:
            f.write(data)
        if name not in self.models:
            self.cl.create_registered_model(name)
            self.models.add(name)
        run = self.cl.create_run(self.eid)
        self.cl.log_artifact(run.info.run_id, str(src))
        mv = self.cl.create_model_version(name, f"{run.info.artifact_uri}/model.bin",
                                          run_id=run.info.run_id)
        self.cl.set_terminated(run.info.run_id)
        return int(mv.version)

    def load(self, name: str, version: int) -> bytes:
        from mlflow.artifacts import download_artifacts

        dst = Path(tempfile.mkdtemp(dir=self.work))
        try:
            src = self.cl.get_model_version_download_uri(name, str(version))
            local = download_artifacts(artifact_uri=src, dst_path=str(dst))
            p = Path(local)
            if p.is_dir():
                p = p / "model.bin"
            return p.read_bytes()
        finally:
            shutil.rmtree(dst, ignore_errors=True)


def bench_registry(work: Path, p: dict, peers: dict, notes: list[str]) -> dict:
    from synadb import ModelRegistry

    out: dict = {}
    for mb in p["reg_mb"]:
        size = mb << 20
        nv = p["reg_versions"]
        log(f"registry {mb} MB x {nv} versions (load {c.loadavg()})")
        d = Path(tempfile.mkdtemp(dir=work, prefix=f"reg{mb}_"))
        blobs = [os.urandom(size), os.urandom(size)]  # alternate: no dedup, no reuse
        res: dict[str, dict[str, list]] = {k: {"save": [], "load": []}
                                           for k in ("ours", "plain", "mlflow")}
        mlreg = None
        try:
            mlreg = MlflowRegistry(d / "mlflow")
        except Exception as e:  # noqa: BLE001
            notes.append(f"MLflow registry not measured: {type(e).__name__}: {e}")
        reg = ModelRegistry(d / "reg.db")
        digests = []
        try:
            for v in range(nv):
                data = blobs[v % 2]
                gc.collect()
                first = ("ours", "plain") if v % 2 == 0 else ("plain", "ours")
                for who in first:
                    t0 = time.perf_counter()
                    if who == "ours":
                        mv = reg.save_model("model", data, {"v": v})
                        assert mv.version == v + 1
                    else:
                        digests.append(plain_save(d / f"plain_{v}.bin", data))
                    res[who]["save"].append(time.perf_counter() - t0)
                if mlreg is not None:
                    try:
                        t0 = time.perf_counter()
                        mlreg.save("model", data)
                        res["mlflow"]["save"].append(time.perf_counter() - t0)
                    except Exception as e:  # noqa: BLE001
                        notes.append(f"MLflow registry save failed: {type(e).__name__}: {e}")
                        mlreg = None
            for v in range(nv):
                gc.collect()
                first = ("ours", "plain") if v % 2 == 0 else ("plain", "ours")
                for who in first:
                    t0 = time.perf_counter()
                    if who == "ours":
                        got, _ = reg.load_model("model", v + 1)
                    else:
                        got = plain_load(d / f"plain_{v}.bin", digests[v])
                    res[who]["load"].append(time.perf_counter() - t0)
                    assert len(got) == size
                    del got
                if mlreg is not None:
                    try:
                        t0 = time.perf_counter()
                        got = mlreg.load("model", v + 1)
                        res["mlflow"]["load"].append(time.perf_counter() - t0)
                        assert len(got) == size
                        del got
                    except Exception as e:  # noqa: BLE001
                        notes.append(f"MLflow registry load failed: {type(e).__name__}: {e}")
                        mlreg = None
        finally:
            reg.close()
            shutil.rmtree(d, ignore_errors=True)
        row = {k: {"save_s": med(v["save"]), "load_s": med(v["load"]),
                   "n": len(v["save"])} for k, v in res.items() if v["save"]}
        if peers.get("wheel"):
            for mode, args in (("wheel", []), ("wheel_nosync", ["--nosync"])):
                w = wheel_call(work, "registry", *args, "--size", str(size),
                               "--versions", str(nv))
                if "error" in w:
                    notes.append(f"{mode} registry {mb} MB: {w['error']}")
                else:
                    row[mode] = {"save_s": med(w["save_s"]), "load_s": med(w["load_s"]),
                                 "n": len(w["save_s"])}
        out[mb] = row
    return out


# --------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------
def _rate(x):
    if x is None:
        return "n/a"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M/s"
    if x >= 1e3:
        return f"{x / 1e3:.1f}K/s"
    return f"{x:.0f}/s"


def _mbps(size, s):
    return "n/a" if not s else f"{size / s / 1e6:,.0f} MB/s"


HEADERS = ["operation", "synadb (ours)", "baseline (same run)", "ratio", "target", "pass/fail"]


def build_rows(p: dict, lg: dict, ls: dict, rg: dict) -> tuple[list[list[str]], list[str]]:
    rows: list[list[str]] = []
    failed: list[str] = []

    def add(op, ours, base, ratio, target, ok):
        rows.append([op, ours, base, ratio, target,
                     "n/a" if ok is None else ("PASS" if ok else "FAIL")])
        if ok is False:
            failed.append(op)

    def g(k):
        return (lg.get(k) or {}).get("per_s")

    R, E, M = p["runs"], p["epochs"], p["metrics"]
    shape = f"{R} runs × {p['params']} params, {E} epochs × {M} metrics"
    o_id, o_obj = g("ours_runid"), g("ours_object")
    if lg:
        add(f"log_metric, ExperimentTracker(run_id, ...), {shape}", _rate(o_id), "—", "—",
            f"> {T_ABS // 1000}K/s", None if o_id is None else o_id > T_ABS)
        add(f"log_metric, Run object (with exp.start_run() as run), {shape}", _rate(o_obj), "—",
            "—", f"> {T_ABS // 1000}K/s", None if o_obj is None else o_obj > T_ABS)
        for key, label in (("ours_runid", "run-id"), ("ours_object", "Run object")):
            d = lg.get(key) or {}
            if "steady_per_s" in d:
                add(f"  of which: {label}, epochs 2..{E} (metric already registered)",
                    _rate(d["steady_per_s"]), "—", "—", "info", None)
                add(f"  of which: {label}, epoch 1 (first call of each metric: catalog "
                    "change: the run entry is rewritten)", c.fmt_time(d["first_call_s"]) + " per call",
                    "—", "—", "info", None)

        def vs(label, key, target, note=""):
            b = g(key)
            r = None if (o_id is None or b is None) else o_id / b
            n = (lg.get(key) or {}).get("n")
            add(f"log_metric (run-id) vs {label}" + (f" [{n} metrics{note}]" if n else ""),
                _rate(o_id), _rate(b), "n/a" if r is None else f"{c.fmt_ratio(r)} faster",
                "info" if target is None else f"≥ {target:g}×",
                None if (target is None or r is None) else r >= target)

        mc = p["mlf_call_epochs"] * M
        vs("MLflow file store, per-call log_metric", "mlflow_file_call", T_MLF_CALL,
           f", 1 run × {mc} calls")
        vs("MLflow sqlite store, per-call log_metric", "mlflow_sqlite_call", T_MLF_CALL,
           f", 1 run × {mc} calls")
        vs(f"MLflow file store, log_batch of {M} per step (per metric)", "mlflow_file_batch_step",
           T_MLF_BATCH)
        vs(f"MLflow sqlite store, log_batch of {M} per step (per metric)",
           "mlflow_sqlite_batch_step", T_MLF_BATCH)
        vs(f"MLflow file store, one log_batch of {E * M} per run (per metric)",
           "mlflow_file_batch_run", None)
        vs(f"MLflow sqlite store, one log_batch of {E * M} per run (per metric)",
           "mlflow_sqlite_batch_run", None)
        vs("W&B offline, run.log per metric (+ finish)", "wandb_metric", None)
        vs(f"W&B offline, run.log dict of {M} per step (+ finish)", "wandb_dict", None)
        vs("wheel 1.4.0, sync off (same durability)", "wheel_nosync", T_WHEEL)
        vs("wheel 1.4.0 default (fsync each put; ours does not)", "wheel_fsync", None)

    # listing
    for n in p["list_sizes"]:
        o = (ls.get("ours") or {}).get(n) or {}
        if not ls:
            break
        if "error" in o or not o:
            add(f"list_runs, {n:,} runs", f"n/a ({o.get('error', 'not run')})", "—", "—",
                "", None)
            continue
        tgt = T_LIST.get(n)
        tstr = "info" if tgt is None else f"< {c.fmt_time(tgt)}"
        add(f"list_runs, {n:,} runs: open + first call (fresh handle)",
            c.fmt_time(o["cold_s"]),
            f"of which open {c.fmt_time(o['open_s'])}, list {c.fmt_time(o['first_s'])}", "—",
            tstr, None if tgt is None else o["cold_s"] < tgt)
        add(f"list_runs, {n:,} runs: warm", c.fmt_time(o["warm_s"]), "—", "—", tstr,
            None if tgt is None else o["warm_s"] < tgt)
        for key, label in (("mlflow_file", "MLflow file store search_runs"),
                           ("mlflow_sqlite", "MLflow sqlite store search_runs"),
                           ("wheel", "wheel 1.4.0 list_runs (ids only)")):
            b = (ls.get(key) or {}).get(n)
            if not b:
                continue
            if "error" in b:
                add(f"list_runs, {n:,} runs vs {label}", "", f"n/a ({b['error']})", "", "info",
                    None)
                continue
            for phase, lab in (("cold_s", "new client + first call"), ("warm_s", "warm")):
                r = b[phase] / o[phase] if o.get(phase) else None
                add(f"list_runs, {n:,} runs, {lab}, vs {label}", c.fmt_time(o[phase]),
                    c.fmt_time(b[phase]), "n/a" if r is None else
                    (f"{c.fmt_ratio(r)} faster" if r >= 1 else f"{c.fmt_ratio(1 / r)} slower"),
                    "info", None)

    # registry
    nv = p["reg_versions"]
    for mb, row in rg.items():
        o = row.get("ours") or {}
        pl = row.get("plain") or {}
        for op, base_lbl in (("save", "write+sha256+fsync"), ("load", "read+sha256")):
            k = f"{op}_s"
            size = mb << 20
            r = pl[k] / o[k] if o.get(k) and pl.get(k) else None
            verb = "save_model (fsynced)" if op == "save" else "load_model (sha256 checked)"
            add(f"ModelRegistry.{verb}, {mb} MB × {nv} versions (median)",
                f"{c.fmt_time(o.get(k))} ({_mbps(size, o.get(k))})",
                f"{base_lbl}: {c.fmt_time(pl.get(k))}", "n/a" if r is None else
                f"{c.fmt_ratio(r)} its speed", f"≥ {T_REG}× speed",
                None if r is None else r >= T_REG)
            for key, label in (("mlflow", "MLflow registry (sqlite; no fsync, no checksum)"),
                               ("wheel", "wheel 1.4.0 (fsync per put)"),
                               ("wheel_nosync", "wheel 1.4.0 sync off")):
                b = row.get(key)
                if not b or not b.get(k):
                    continue
                r = b[k] / o[k] if o.get(k) else None
                add(f"  {op}, {mb} MB, vs {label}", c.fmt_time(o.get(k)), c.fmt_time(b[k]),
                    "n/a" if r is None else
                    (f"{c.fmt_ratio(r)} faster" if r >= 1 else f"{c.fmt_ratio(1 / r)} slower"),
                    "info", None)
    return rows, failed


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------
def fsync_probe(d: Path, n: int = 20) -> float:
    """How slow fsync is on this disk right now (others share it)."""
    path = d / f"fsync_probe_{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    ts = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 100)
            t0 = time.perf_counter()
            os.fsync(fd)
            ts.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(ts)


def run_bench(quick: bool = False, skip_peers: bool = False, out_dir: Path | None = None,
              work_root: Path | None = None, only: set[str] | None = None) -> dict:
    p = dict(QUICK if quick else FULL)
    out_dir = out_dir or c.OUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    root = work_root or out_dir
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tracking_", dir=root))
    info = c.machine_info()
    mode = "quick" if quick else "full"
    print("synadb tracking + registry benchmark")
    print(f"  machine : {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"  commit  : {info['commit']}   date: {info['date']}")
    print(f"  load    : {info['loadavg']} (1/5/15 min) at start; figures are medians of "
          f"{p['reps']} interleaved repetitions")
    fs = fsync_probe(root)
    print(f"  disk    : fsync after a 100-byte append: median {c.fmt_time(fs)} (of 20)")
    print(f"  mode    : {mode}", flush=True)
    notes: list[str] = []
    versions = {}
    for mod in ("mlflow", "wandb"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            versions[mod] = f"unavailable ({type(e).__name__})"
    peers = {"wheel": False}
    if skip_peers:
        notes.append("wheel not measured (--skip-peers)")
    elif wheel_ok():
        peers["wheel"] = True
    else:
        try:  # the same set-up as the core benchmark: .venv-peers with the wheel
            import run as core_run

            py, why = core_run.ensure_peers()
        except Exception as e:  # noqa: BLE001
            py, why = None, f"{type(e).__name__}: {e}"
        if py is not None and wheel_ok():
            peers["wheel"] = True
        else:
            notes.append(f"wheel not measured: {why}")
    only = only or {"logging", "listing", "registry"}
    t_start = time.perf_counter()
    lg = ls = rg = {}
    broken = False
    try:
        took = []
        for name, fn in (("logging", bench_logging), ("listing", bench_listing),
                         ("registry", bench_registry)):
            if name in only:
                t0 = time.perf_counter()
                res = fn(work, p, peers, notes)
                took.append(f"{name} {time.perf_counter() - t0:.0f} s")
                lg, ls, rg = (res, ls, rg) if name == "logging" else \
                    (lg, res, rg) if name == "listing" else (lg, ls, res)
        notes.append("sections took " + ", ".join(took))
    except Exception as e:  # noqa: BLE001
        broken = True
        notes.append(f"ours failed: {type(e).__name__}: {e}")
        traceback.print_exc()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "logging" in only and ("ours_runid" not in lg or "ours_object" not in lg):
        broken = True
    load_end = c.loadavg()
    fs_end = fsync_probe(out_dir)
    rows, failed = build_rows(p, lg, ls, rg)

    ow = (lg.get("ours_runid") or {})
    if "total_s" in ow:
        notes.append(f"ours, whole tracking workload (open, {p['runs']} × start_run with "
                     f"{p['params']} params, {ow['n']} log_metric, end_run with fsync, close): "
                     f"{c.fmt_time(ow['total_s'])} (median)")
    wm = lg.get("wandb_metric") or {}
    if "finish_s" in wm:
        notes.append(f"W&B run.log only queues to its service process; its rates include "
                     f"run.finish() ({c.fmt_time(wm['finish_s'])}); loop alone: "
                     f"{_rate(wm['per_s_loop_only'])} per metric, "
                     f"{_rate((lg.get('wandb_dict') or {}).get('per_s_loop_only'))} dict/step")
    notes.append(f"MLflow {versions.get('mlflow')} (MlflowClient, MLFLOW_ALLOW_FILE_STORE=true); "
                 f"W&B {versions.get('wandb')} offline; runs/metrics timed without run set-up")
    notes.append("MLflow per-call log_metric is measured on 1 run × "
                 f"{p['mlf_call_epochs'] * p['metrics']} calls, log_batch per step on "
                 f"{p['mlf_batch_runs']} run(s) × {p['epochs']} steps, one log_batch per run on "
                 f"{max(p['mlf_batch_runs'], p['runs'] // 5)} runs, W&B on 1 run × "
                 f"{p['wandb_epochs'] * p['metrics']} metrics ({p['wandb_reps']} repetition(s)), "
                 "the wheel at its fsync default "
                 f"on 1 run × {p['wheel_fsync_epochs'] * p['metrics']} metrics (too slow for "
                 "the full workload); ours and the wheel with sync off on the full workload")
    notes.append("list_runs: ours returns Run objects (params, tags, status); the wheel returns "
                 "run ids; MLflow search_runs returns Run entities (params, metrics, tags). "
                 "'open + first call' = new ExperimentTracker / MlflowClient on the existing "
                 "file, then the first query; the OS page cache is warm")
    notes.append("registry: ours and the plain baseline alternate version by version; "
                 "versions alternate between two random blobs")
    notes.append(f"fsync of a 100-byte append: {c.fmt_time(fs)} at start, {c.fmt_time(fs_end)} "
                 "at end (median of 20)")
    notes.append(f"load average at end: {load_end}; total time {time.perf_counter() - t_start:.0f} s")

    print()
    print(c.format_table(HEADERS, rows))
    print("\nnotes:")
    for n in notes:
        print(f"  - {n}")
    results = {"machine": info, "mode": mode, "fsync_s": [fs, fs_end], "params": p, "versions": versions,
               "logging": lg, "listing": {k: {str(n): v for n, v in d.items()}
                                          for k, d in ls.items()},
               "registry": {str(k): v for k, v in rg.items()},
               "rows": rows, "failed": failed, "notes": notes}
    c.write_json(out_dir / "tracking.json", results)
    md = [f"Tracking and registry benchmark ({mode} run) on {info['cpu']}, {info['cores']} cores, "
          f"Python {info['python']}; commit {info['commit']}; {info['date']}; load average "
          f"{info['loadavg']} at start, {load_end} at end; fsync {c.fmt_time(fs)} at start.", "",
          c.markdown_table(HEADERS, rows), "", "Notes:", ""] + [f"- {n}" for n in notes] + [""]
    (out_dir / "tracking.md").write_text("\n".join(md), encoding="utf-8")
    print(f"\nwrote {out_dir / 'tracking.json'} and {out_dir / 'tracking.md'}")
    return {"broken": broken, "failed": failed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    ap.add_argument("--skip-peers", action="store_true", help="do not measure the 1.4.0 wheel")
    ap.add_argument("--out", default=str(c.OUT_DIR))
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--sections", default="logging,listing,registry",
                    help="comma list of logging, listing, registry")
    args = ap.parse_args(argv)
    res = run_bench(quick=args.quick, skip_peers=args.skip_peers, out_dir=Path(args.out),
                    only=set(args.sections.split(",")))
    if res["broken"]:
        print("ERROR: our tracking could not be measured (see notes)", file=sys.stderr)
        return 1
    return 1 if args.strict and res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
