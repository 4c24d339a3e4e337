"""The synadb:// MLflow plugin, with the real mlflow: in process, and behind
a real ``mlflow server --backend-store-uri synadb:///...`` on loopback."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import forget_mlflow_state

mlflow = pytest.importorskip("mlflow")

from synadb import ExperimentTracker, MissingDependency  # noqa: E402
from synadb.integrations.mlflow import experiment_id_for  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])
MLFLOW_BIN = str(Path(sys.executable).parent / "mlflow")
SERVER_START_TIMEOUT_S = 120


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base, route, **query):
    url = f"{base}{route}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _post(base, route, body):
    req = urllib.request.Request(f"{base}{route}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def start_mlflow_server(tmp, backend_uri, extra=()):
    """Start ``mlflow server`` on a free loopback port in its own process
    group; returns (process, base URL) once /health answers."""
    port = _free_port()
    with open(tmp / f"server-{port}.log", "wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [MLFLOW_BIN, "server", "--backend-store-uri", backend_uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", *extra],
            cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": ROOT})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError("mlflow server exited:\n"
                               + (tmp / f"server-{port}.log").read_text()[-3000:])
        try:
            if _get(base, "/health"):
                return proc, base
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            stop_mlflow_server(proc)
            raise RuntimeError(f"mlflow server did not answer /health within "
                               f"{SERVER_START_TIMEOUT_S} s:\n"
                               + (tmp / f"server-{port}.log").read_text()[-3000:])
        time.sleep(0.2)  # polling interval of the bounded wait, not a race fix


def stop_mlflow_server(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-synadb-server")
    db = tmp / "experiments.db"
    ExperimentTracker(db).close()  # the file exists before the server opens it
    proc, base = start_mlflow_server(tmp, f"synadb://{db}")
    try:
        yield base, str(db)
    finally:
        stop_mlflow_server(proc)


@pytest.fixture
def real_mlflow(tmp_path):
    """The real mlflow's fluent API pointed at a synadb file."""
    before = mlflow.get_tracking_uri()
    db = tmp_path / "experiments.db"
    mlflow.set_tracking_uri(f"synadb://{db}")
    forget_mlflow_state()
    yield str(db)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(before)


# ------------------------------------------------------------ in process
def test_plugin_module_names_its_extra_without_mlflow():
    code = ("import sys; sys.modules['mlflow'] = None\nimport synadb\n"
            "try:\n    import synadb.integrations.mlflow_store\n"
            "except synadb.MissingDependency as e:\n    print('extra', e.extra)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.split() == ["extra", "mlflow"]
    assert issubclass(MissingDependency, ImportError)


def test_entry_points_are_registered():
    from importlib.metadata import entry_points

    for group in ("mlflow.tracking_store", "mlflow.artifact_repository",
                  "mlflow.model_registry_store"):
        names = {ep.name: ep.value for ep in entry_points(group=group)}
        assert names.get("synadb", "").startswith("synadb.integrations.mlflow_plugin:")


def test_real_mlflow_logs_into_the_synadb_file(real_mlflow):
    mlflow.set_experiment("real")
    with mlflow.start_run(run_name="r1") as run:
        mlflow.log_params({"lr": 0.1, "layers": 3})
        mlflow.log_metric("acc", 0.9, step=1)
        mlflow.log_metric("acc", 0.95, step=2)
        mlflow.set_tag("team", "vision")
        mlflow.log_dict({"a": 1}, "cfg/config.json")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("x", 1.0)
    rid = run.info.run_id
    with ExperimentTracker(real_mlflow, read_only=True) as tracker:
        got = tracker.get_run(rid)
        assert got.experiment == "real" and got.name == "r1" and got.status == "Completed"
        assert got.params == {"lr": "0.1", "layers": "3"}
        assert got.tag_values["team"] == "vision"
        assert tracker.get_metric(rid, "acc") == [(1, 0.9), (2, 0.95)]
        assert json.loads(tracker.get_artifact(rid, "cfg/config.json")) == {"a": 1}
        assert tracker.get_run(child.info.run_id).parent_id == rid
    df = mlflow.search_runs(filter_string="metrics.acc > 0.9 and params.lr = '0.1'")
    assert list(df.run_id) == [rid]
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(rid, "acc")] == [1, 2]
    assert [(f.path, f.is_dir) for f in client.list_artifacts(rid)] == [("cfg", True)]
    assert mlflow.artifacts.load_dict(f"runs:/{rid}/cfg/config.json") == {"a": 1}


def test_runs_from_our_api_are_seen_by_real_mlflow(real_mlflow):
    with ExperimentTracker(real_mlflow) as tracker:
        rid = tracker.start_run("ours", name="native", params={"lr": 0.01})
        tracker.log_metric(rid, "loss", 0.5, step=0)
        tracker.log_metric(rid, "loss", 0.25, step=1)
        tracker.end_run(rid, "Failed")
    run = mlflow.MlflowClient().get_run(rid)
    assert run.info.status == "FAILED" and run.info.run_name == "native"
    assert run.data.metrics == {"loss": 0.25} and run.data.params == {"lr": "0.01"}
    assert run.info.experiment_id == experiment_id_for("ours", real_mlflow)


@pytest.mark.filterwarnings("ignore:.*is deprecated since 2.9.0:FutureWarning")
def test_real_mlflow_model_registry_on_the_file(real_mlflow):
    from synadb import ModelRegistry

    mlflow.set_experiment("registry")
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model.bin")
    client = mlflow.MlflowClient()
    client.create_registered_model("clf")
    for _ in range(2):
        client.create_model_version("clf", f"runs:/{run.info.run_id}/model.bin",
                                    run.info.run_id)
    client.transition_model_version_stage("clf", "1", "Production")
    client.transition_model_version_stage("clf", "2", "Production",
                                          archive_existing_versions=True)
    latest = client.get_latest_versions("clf", stages=["Production"])
    assert [v.version for v in latest] == [2]  # ints, as MLflow's own stores
    assert client.get_model_version("clf", "1").current_stage == "Archived"
    with ModelRegistry(real_mlflow, read_only=True) as registry:
        data, info = registry.load_model("clf")
        assert data == b"weights" and info.stage == "Production"


# ------------------------------------------------------- behind mlflow server
def test_server_search_shows_runs_logged_through_our_api(server):
    base, db = server
    with ExperimentTracker(db) as tracker:
        rid = tracker.start_run("served", name="from-synadb", tags=["baseline"],
                                params={"lr": 0.01})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            tracker.log_metric(rid, "loss", loss, step=step, timestamp=1_800_000_000 + step)
        tracker.set_tag(rid, "team", "vision")
        other = tracker.start_run("served", name="worse", params={"lr": 0.5})
        tracker.log_metric(other, "loss", 2.0)
        tracker.end_run(rid)
        tracker.end_run(other, "Killed")

    exps = _post(base, "/api/2.0/mlflow/experiments/search", {"max_results": 100})
    by_name = {e["name"]: e for e in exps["experiments"]}
    eid = by_name["served"]["experiment_id"]
    assert eid == experiment_id_for("served", db)

    found = _post(base, "/api/2.0/mlflow/runs/search",
                  {"experiment_ids": [eid], "filter": "metrics.loss < 1 and params.lr = '0.01'"})
    assert [r["info"]["run_id"] for r in found["runs"]] == [rid]
    run = found["runs"][0]
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "from-synadb"
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"loss": 0.3}
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": "0.01"}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["team"] == "vision" and tags["synadb.labels"] == "baseline"

    everything = _post(base, "/api/2.0/mlflow/runs/search",
                       {"experiment_ids": [eid], "order_by": ["metrics.loss DESC"]})
    assert [(r["info"]["run_id"], r["info"]["status"]) for r in everything["runs"]] == \
        [(other, "KILLED"), (rid, "FINISHED")]

    hist = json.loads(_get(base, "/api/2.0/mlflow/metrics/get-history",
                           run_id=rid, metric_key="loss"))
    assert [(m["value"], int(m["step"]), int(m["timestamp"])) for m in hist["metrics"]] == \
        [(0.9, 0, 1_800_000_000_000), (0.5, 1, 1_800_000_001_000),
         (0.3, 2, 1_800_000_002_000)]


def test_server_lists_and_serves_artifacts(server):
    base, db = server
    with ExperimentTracker(db) as tracker:
        rid = tracker.start_run("served-artifacts")
        tracker.log_artifact(rid, "plots/loss.txt", "a plot")
        tracker.log_artifact(rid, "weights.bin", b"\x00\x01\x02")
        tracker.end_run(rid)
    listed = json.loads(_get(base, "/api/2.0/mlflow/artifacts/list", run_id=rid))
    assert [(f["path"], f["is_dir"]) for f in listed["files"]] == \
        [("plots", True), ("weights.bin", False)]
    inner = json.loads(_get(base, "/api/2.0/mlflow/artifacts/list", run_id=rid, path="plots"))
    assert [f["path"] for f in inner["files"]] == ["plots/loss.txt"]
    assert _get(base, "/get-artifact", run_id=rid, path="weights.bin") == b"\x00\x01\x02"


def test_rest_writes_through_the_server_land_in_the_file(server):
    base, db = server
    eid = _post(base, "/api/2.0/mlflow/experiments/create", {"name": "via-rest"})[
        "experiment_id"]
    run = _post(base, "/api/2.0/mlflow/runs/create",
                {"experiment_id": eid, "run_name": "rest-run", "start_time": 0})["run"]
    rid = run["info"]["run_id"]
    _post(base, "/api/2.0/mlflow/runs/log-metric",
          {"run_id": rid, "key": "acc", "value": 0.75, "timestamp": 1_800_000_000_500,
           "step": 4})
    _post(base, "/api/2.0/mlflow/runs/log-parameter", {"run_id": rid, "key": "lr", "value": "1"})
    _post(base, "/api/2.0/mlflow/runs/update",
          {"run_id": rid, "status": "FINISHED", "end_time": 1_800_000_001_000})
    with ExperimentTracker(db, read_only=True) as tracker:
        got = tracker.get_run(rid)
        assert (got.experiment, got.name, got.status) == ("via-rest", "rest-run", "Completed")
        assert got.params == {"lr": "1"}
        h = tracker.get_metric_history(rid, "acc")
        assert (h["value"].tolist(), h["step"].tolist(), h["timestamp"].tolist()) == \
            ([0.75], [4], [1_800_000_000.5])


def test_the_readme_mlflow_plugin_snippet_runs_as_printed(tmp_path):
    """The README's real-MLflow block (autolog, register, alias, trace), run
    as printed in a fresh process and folder: one file, nothing beside it."""
    text = Path(ROOT, "README.md").read_text()
    start = text.index("import mlflow\nfrom sklearn.datasets import load_iris")
    block = text[start:text.index("```", start)]
    out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[0 0 0] 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments.db"]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                            "ignore::FutureWarning")
@pytest.mark.parametrize("slashes", ["///", "////"])
def test_three_and_four_slash_uris_work_everywhere(tmp_path, slashes):
    """sqlite's idiom f"sqlite:///{abs_path}" gives four slashes; artifact
    reads below a folder, and loading a registered model, work with both."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    db = tmp_path / "four.db"
    mlflow.set_tracking_uri(f"synadb:{slashes}{str(db).lstrip('/')}" if slashes == "///"
                            else f"synadb:///{db}")
    forget_mlflow_state()
    try:
        X = np.arange(20, dtype=float).reshape(10, 2)
        y = (X[:, 0] > 8).astype(int)
        fitted = sklearn.LogisticRegression().fit(X, y)
        with mlflow.start_run() as run:
            mlflow.log_dict({"a": 1}, "cfg/params.json")
            mlflow.sklearn.log_model(fitted, name="model", registered_model_name="four")
        rid = run.info.run_id
        assert mlflow.artifacts.load_dict(f"runs:/{rid}/cfg/params.json") == {"a": 1}
        local = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="cfg",
                                                    dst_path=str(tmp_path / "out"))
        assert os.listdir(local) == ["params.json"]
        model = mlflow.sklearn.load_model("models:/four/1")
        assert (model.predict(X) == fitted.predict(X)).all()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["four.db", "out"]
    finally:
        forget_mlflow_state()
