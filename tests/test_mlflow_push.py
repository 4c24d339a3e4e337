"""`synadb mlflow-push`: a synadb file's runs, logged models, traces and
registered models onto a real MLflow server (sqlite backend, proxied
artifacts) on loopback, idempotently; an unreachable server fails fast."""

import json
import socket
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from synadb import ExperimentTracker, ModelRegistry  # noqa: E402
from synadb.cli import main  # noqa: E402
import synadb.integrations.mlflow as shim  # noqa: E402
from synadb.integrations.mlflow_push import PushError, push  # noqa: E402
from conftest import forget_mlflow_state  # noqa: E402
from test_mlflow_plugin import start_mlflow_server, stop_mlflow_server  # noqa: E402

# MLflow's own warnings (type-hint inference of traced functions, its SQLite
# store's SQLAlchemy deprecations, stages, its pandas calls): not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*type hint is inferred:UserWarning",
    "ignore:Starting with pandas version 4.0",
    "ignore::sqlalchemy.exc.SADeprecationWarning",
    "ignore::FutureWarning")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-sqlite-server")
    proc, base = start_mlflow_server(
        tmp, f"sqlite:///{tmp / 'mlflow.db'}",
        ["--artifacts-destination", str(tmp / "artifacts")])
    try:
        yield base
    finally:
        stop_mlflow_server(proc)


def _fill(path):
    with ExperimentTracker(path) as tracker:
        parent = tracker.start_run("push-exp", name="parent", tags=["baseline"],
                                   params={"lr": 0.01, "opt": {"name": "adam"}})
        for step in range(5):
            tracker.log_metric(parent, "loss", 1.0 / (step + 1), step=step * 10,
                               timestamp=1_800_000_000 + step * 0.25)
        tracker.set_tag(parent, "team", "vision")
        tracker.log_artifact(parent, "config/train.json", {"epochs": 5})
        tracker.log_artifact(parent, "weights.bin", b"\x00\x01\x02")
        child = tracker.start_run("push-exp", name="child", parent_id=parent)
        tracker.log_metric(child, "acc", 0.5)
        tracker.end_run(child, "Failed")
        tracker.end_run(parent)
    with ModelRegistry(path) as registry:
        registry.save_model("clf", b"model-v1", {"run_id": parent})
        registry.save_model("clf", b"model-v2", {"run_id": parent}, tags={"k": "v"})
        registry.set_stage("clf", 1, "Production")
        registry.set_stage("clf", 2, "Staging")
    return parent, child


def _push(path, base, capsys):
    assert main(["mlflow-push", str(path), "--to", base, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_push_copies_runs_and_models_and_is_idempotent(server, tmp_path, capsys):
    path = tmp_path / "experiments.db"
    parent, child = _fill(path)
    first = _push(path, server, capsys)
    assert (first["runs"], first["runs_skipped"], first["metrics"], first["artifacts"],
            first["model_versions"]) == (2, 0, 6, 2, 2)

    client = mlflow.MlflowClient(server, registry_uri=server)
    exp = client.get_experiment_by_name("push-exp")
    runs = client.search_runs([exp.experiment_id])
    by_local = {r.data.tags["synadb.run_id"]: r for r in runs}
    assert set(by_local) == {parent, child}
    p = by_local[parent]
    assert p.info.status == "FINISHED" and p.info.run_name == "parent"
    assert p.data.params == {"lr": "0.01", "opt.name": "adam"}
    assert p.data.tags["team"] == "vision" and p.data.tags["synadb.labels"] == "baseline"
    with ExperimentTracker(path, read_only=True) as tracker:
        started_s = tracker.get_run(parent).start_time
    assert p.info.start_time == pytest.approx(started_s * 1000, abs=1)
    hist = client.get_metric_history(p.info.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in hist] == [
        (s * 10, 1.0 / (s + 1), 1_800_000_000_000 + s * 250) for s in range(5)]
    c = by_local[child]
    assert c.info.status == "FAILED"
    assert c.data.tags["mlflow.parentRunId"] == p.info.run_id
    # The model versions' bytes went to the run that trained them.
    assert sorted(f.path for f in client.list_artifacts(p.info.run_id)) == \
        ["config", "synadb-models", "weights.bin"]
    local = client.download_artifacts(p.info.run_id, "weights.bin", str(tmp_path))
    assert Path(local).read_bytes() == b"\x00\x01\x02"
    local = client.download_artifacts(p.info.run_id, "config/train.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == {"epochs": 5}

    versions = {v.tags["synadb.version"]: v for v in
                client.search_model_versions("name = 'clf'")}
    assert set(versions) == {"1", "2"}
    assert versions["1"].current_stage == "Production"
    assert versions["2"].current_stage == "Staging" and versions["2"].tags["k"] == "v"
    assert versions["1"].run_id == p.info.run_id  # linked to the training run
    assert versions["2"].source == f"runs:/{p.info.run_id}/synadb-models/clf/v2"
    src = client.download_artifacts(p.info.run_id, "synadb-models/clf/v2/model.bin",
                                    str(tmp_path / "m"))
    assert Path(src).read_bytes() == b"model-v2"

    # Again: nothing new.  Then one more run and version: only those go.
    again = _push(path, server, capsys)
    assert (again["runs"], again["runs_skipped"], again["model_versions"],
            again["model_versions_skipped"]) == (0, 2, 0, 2)
    with ExperimentTracker(path) as tracker:
        third = tracker.start_run("push-exp", name="third")
        tracker.log_metric(third, "loss", 0.1)
        tracker.end_run(third)
        # A run deleted through MLflow's API (a soft delete) is not pushed.
        binned = tracker.start_run("push-exp", name="binned")
        tracker.end_run(binned)
    shim.MlflowClient(tracking_uri=str(path)).delete_run(binned)
    with ModelRegistry(path) as registry:
        registry.save_model("clf", b"model-v3")
    last = _push(path, server, capsys)
    assert (last["runs"], last["runs_skipped"], last["model_versions"]) == (1, 2, 1)
    assert len(client.search_runs([exp.experiment_id])) == 3
    assert len(client.search_model_versions("name = 'clf'")) == 3


def test_half_pushed_run_is_replaced_not_duplicated(server, tmp_path, capsys):
    path = tmp_path / "experiments.db"
    with ExperimentTracker(path) as tracker:
        rid = tracker.start_run("push-partial", name="r")
        tracker.log_metric(rid, "m", 1.0)
        tracker.end_run(rid)
    client = mlflow.MlflowClient(server)
    eid = client.create_experiment("push-partial")
    # What an interrupted push leaves behind: the run, still marked partial.
    client.create_run(eid, tags={"synadb.run_id": rid, "synadb.push_state": "partial"})
    out = _push(path, server, capsys)
    assert out["runs"] == 1
    runs = client.search_runs([eid])
    assert len(runs) == 1 and runs[0].data.tags["synadb.push_state"] == "complete"
    assert runs[0].data.metrics == {"m": 1.0}


def test_push_text_output_and_missing_file(server, tmp_path, capsys):
    path = tmp_path / "experiments.db"
    with ExperimentTracker(path) as tracker:
        tracker.end_run(tracker.start_run("push-text"))
    assert main(["mlflow-push", str(path), "--to", server, "--experiment", "push-text",
                 "--quiet", "--no-models"]) == 0
    assert capsys.readouterr().out.startswith("pushed 1 runs (0 already there)")
    assert main(["mlflow-push", str(tmp_path / "absent.db"), "--to", server]) == 1
    assert "error" in capsys.readouterr().err


def test_push_without_mlflow_names_the_extra(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "x.db"
    ExperimentTracker(path).close()
    code = ("import sys; sys.modules['mlflow'] = None\nfrom synadb.cli import main\n"
            f"sys.exit(main(['mlflow-push', {str(path)!r}, '--to', 'http://127.0.0.1:9']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ,
                              "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 1
    assert "pip install 'synadb[mlflow]'" in out.stderr


@pytest.fixture
def synadb_tracking(tmp_path, monkeypatch):
    """mlflow's fluent API (tracking and registry) on a fresh synadb file;
    traces export synchronously."""
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    path = tmp_path / "experiments.db"
    uri = f"synadb://{path}"
    before = mlflow.get_tracking_uri()
    forget_mlflow_state()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield path
    finally:
        forget_mlflow_state()  # the registry follows the tracking URI again
        mlflow.set_tracking_uri(before)


def test_push_logged_model_registry_traces_and_datasets(server, synadb_tracking, capsys):
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [0.5, 0.5], [2.5, 0.5]])
    y = np.array([0, 0, 1, 1, 0, 1])
    mlflow.set_experiment("push-sklearn")
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame(X, columns=["a", "b"]),
                                                 name="train-set"), context="training")
        info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="saved_model",
                                        registered_model_name="clf-mlflow",
                                        params={"solver": "lbfgs"})
        mlflow.log_metric("acc", 0.75, model_id=info.model_id)

        @mlflow.trace
        def predict(rows):
            return int(sum(rows))

        predict([1, 2])
    trace_id = mlflow.get_last_active_trace_id()
    local = mlflow.MlflowClient()
    local.set_registered_model_alias("clf-mlflow", "champion", 1)
    local.set_registered_model_tag("clf-mlflow", "team", "ml")
    local.update_registered_model("clf-mlflow", "a classifier")
    local.set_model_version_tag("clf-mlflow", "1", "checked", "yes")
    expected = mlflow.pyfunc.load_model("models:/clf-mlflow/1").predict(X)

    first = _push(synadb_tracking, server, capsys)
    assert (first["runs"], first["datasets"], first["logged_models"], first["traces"],
            first["model_versions"]) == (1, 1, 1, 1, 1)

    remote = mlflow.MlflowClient(server, registry_uri=server)
    eid = remote.get_experiment_by_name("push-sklearn").experiment_id
    (pushed_run,) = remote.search_runs([eid])
    assert pushed_run.data.tags["synadb.run_id"] == run.info.run_id
    (dataset,) = pushed_run.inputs.dataset_inputs
    assert dataset.dataset.name == "train-set"
    (model,) = remote.search_logged_models([eid])
    assert model.tags["synadb.model_id"] == info.model_id
    assert model.source_run_id == pushed_run.info.run_id
    assert model.params["solver"] == "lbfgs"
    assert [(m.key, m.value) for m in model.metrics] == [("acc", 0.75)]
    assert [o.model_id for o in pushed_run.outputs.model_outputs] == [model.model_id]

    version = remote.get_model_version("clf-mlflow", "1")
    assert version.source == f"models:/{model.model_id}"
    assert version.run_id == pushed_run.info.run_id
    assert version.tags["checked"] == "yes"
    registered = remote.get_registered_model("clf-mlflow")
    assert registered.aliases == {"champion": "1"}
    assert (registered.tags["team"], registered.description) == ("ml", "a classifier")
    mlflow.set_tracking_uri(server)  # load from the server, not the file
    mlflow.set_registry_uri(server)
    for uri in ("models:/clf-mlflow/1", "models:/clf-mlflow@champion"):
        assert (mlflow.pyfunc.load_model(uri).predict(X) == expected).all()

    traces = remote.search_traces(locations=[eid])
    assert [t.info.trace_id for t in traces] == [trace_id]
    assert traces[0].info.tags["synadb.push_state"] == "complete"
    assert traces[0].info.trace_metadata["mlflow.sourceRun"] == pushed_run.info.run_id
    assert [s.name for s in traces[0].data.spans] == ["predict"]

    again = _push(synadb_tracking, server, capsys)
    assert (again["runs"], again["logged_models"], again["traces"], again["model_versions"],
            again["runs_skipped"], again["logged_models_skipped"], again["traces_skipped"],
            again["model_versions_skipped"]) == (0, 0, 0, 0, 1, 1, 1, 1)


def test_unreachable_server_or_no_scheme_fails_fast_with_one_line(tmp_path, capsys):
    path = tmp_path / "experiments.db"
    with ExperimentTracker(path) as tracker:
        tracker.end_run(tracker.start_run("push-down"))
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{bound.getsockname()[1]}"
        for to in (down, "127.0.0.1:5000"):
            started = time.monotonic()
            assert main(["mlflow-push", str(path), "--to", to]) == 1
            assert time.monotonic() - started < 30  # MLflow's own retries take minutes
            out = capsys.readouterr()
            assert out.out == ""
            assert len(out.err.strip().splitlines()) == 1
            assert out.err.startswith("synadb: error: ")
        with pytest.raises(PushError, match="unreachable"):
            push(path, down, progress=False)
