"""Copy a synadb file's experiments, runs and models to an MLflow tracking server.

    python examples/mlflow_push.py

When one machine is not enough, ``synadb mlflow-push FILE --to URL`` (or
``synadb.integrations.mlflow_push.push``) sends what a file holds to a
shared MLflow server: experiments, runs with params, metric histories (steps
and timestamps), tags and artifacts, and registered models.  Pushing again
sends only what is new.

This example logs two runs and registers a model in a synadb file, starts a
local ``mlflow server`` (sqlite backend) on a free port, pushes the file to
it with the ``synadb`` command, checks what the server holds with MLflow's
client, pushes again (nothing new), and stops the server.

Needs ``synadb[mlflow]``.  Files go to ``./example-output/mlflow_push/`` (or
``$SYNADB_EXAMPLE_OUT``): the synadb file and the server's folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from synadb import ExperimentTracker, ModelRegistry

OUT = Path(os.environ.get("SYNADB_EXAMPLE_OUT", "example-output")).resolve() / "mlflow_push"
PATH = OUT / "experiments.db"
SERVER = OUT / "mlflow-server"   # the server's sqlite database, artifacts and log
BIN = Path(sys.executable).parent


def fill() -> None:
    with ExperimentTracker(PATH) as tracker:
        for lr in (0.1, 0.01):
            run = tracker.start_run("push-demo", name=f"lr-{lr}", params={"lr": lr})
            for step in range(20):
                tracker.log_metric(run, "loss", 1.0 / (step + 1) + lr, step=step)
            tracker.log_artifact(run, "notes.txt", f"trained with lr={lr}".encode())
            tracker.end_run(run)
    with ModelRegistry(PATH) as registry:
        registry.save_model("demo-model", b"model weights", {"lr": "0.01"})
    print(f"logged 2 runs and 1 model version in {PATH.name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    SERVER.mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(SERVER / "server.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{SERVER / 'mlflow.db'}", "--artifacts-destination", str(SERVER / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=SERVER, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()  # the server keeps its own copy
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # wait for /health, at most 90 s
        if proc.poll() is not None:
            raise SystemExit("mlflow server exited:\n"
                             + (SERVER / "server.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise SystemExit("mlflow server did not start within 90 s; see " + str(SERVER / "server.log"))


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def push(url: str) -> None:
    cmd = [str(BIN / "synadb"), "mlflow-push", str(PATH), "--to", url, "--no-progress"]
    print("$", " ".join(cmd[:1] + ["mlflow-push", PATH.name, "--to", url, "--no-progress"]))
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print("  " + got.stdout.strip().replace("\n", "\n  "))
    if got.returncode:
        raise SystemExit(f"mlflow-push failed:\n{got.stderr}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    PATH.unlink(missing_ok=True)  # a re-run starts afresh
    shutil.rmtree(SERVER, ignore_errors=True)
    fill()
    proc, url = start_server()
    try:
        print(f"started mlflow server at {url} (sqlite backend in {SERVER.name}/)")
        push(url)
        import mlflow

        client = mlflow.MlflowClient(url, registry_uri=url)
        exp = client.get_experiment_by_name("push-demo")
        runs = client.search_runs([exp.experiment_id])
        for r in sorted(runs, key=lambda r: r.info.run_name):
            history = client.get_metric_history(r.info.run_id, "loss")
            print(f"  on the server: run {r.info.run_name}  lr={r.data.params['lr']}  "
                  f"{len(history)} loss values  artifacts "
                  f"{[f.path for f in client.list_artifacts(r.info.run_id)]}")
        models = [m.name for m in client.search_registered_models()]
        print(f"  on the server: registered models {models}")
        print("pushing again sends only what is new:")
        push(url)
    finally:
        stop_server(proc)
        print("stopped the mlflow server")
    print("files:")
    print(f"  synadb file: {PATH}")
    print(f"  the server's sqlite database: {SERVER / 'mlflow.db'}")
    print(f"  the server's artifacts: {SERVER / 'artifacts'}")
    print(f"next: mlflow server --backend-store-uri sqlite:///{SERVER / 'mlflow.db'} "
          f"--artifacts-destination {SERVER / 'artifacts'}   (MLflow's UI over what was pushed)")


if __name__ == "__main__":
    main()
