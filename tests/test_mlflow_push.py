"""`synadb mlflow-push`: a synadb file's runs and models onto a real MLflow
server (sqlite backend, proxied artifacts) on loopback, idempotently."""

import json
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from synadb import ExperimentTracker, ModelRegistry  # noqa: E402
from synadb.cli import main  # noqa: E402
import synadb.integrations.mlflow as shim  # noqa: E402
from test_mlflow_plugin import start_mlflow_server, stop_mlflow_server  # noqa: E402


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
