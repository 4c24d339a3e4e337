"""The MLflow fluent shim: MLflow scripts run unchanged against a synadb file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synadb.integrations.mlflow as mlflow
from synadb import ExperimentTracker, InvalidArgument, ModelRegistry

ROOT = str(Path(__file__).resolve().parents[1])


def _train(lrs=(0.01, 0.1)):
    """A typical MLflow training script, only the import swapped."""
    mlflow.set_experiment("mnist")
    ids = []
    for lr in lrs:
        with mlflow.start_run(run_name=f"lr-{lr}") as run:
            mlflow.log_params({"lr": lr, "epochs": 3, "opt": {"name": "adam"}})
            mlflow.set_tags({"team": "vision", "model.kind": "cnn"})
            for epoch in range(3):
                mlflow.log_metrics({"loss": 1.0 / (epoch + 1) - lr,
                                    "acc": 0.8 + lr + epoch / 100}, step=epoch)
            mlflow.log_dict({"layers": [64, 10]}, "config.json")
            mlflow.log_text("done", "notes/summary.txt")
            ids.append(run.info.run_id)
    return ids


def test_shim_imports_neither_mlflow_nor_pandas():
    code = ("import sys; import synadb.integrations.mlflow as m\n"
            "print('mlflow' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("form", ["plain", "synadb", "file"])
def test_tracking_uri_forms_name_the_same_file(tmp_path, form):
    path = tmp_path / "x.db"
    uri = {"plain": str(path), "synadb": f"synadb://{path}", "file": path.as_uri()}[form]
    assert mlflow.parse_tracking_uri(uri) == str(path)


def test_bad_tracking_uri_is_refused():
    with pytest.raises(InvalidArgument, match="host"):
        mlflow.set_tracking_uri("synadb://somehost/x.db")
    with pytest.raises(InvalidArgument, match="real mlflow"):
        mlflow.set_tracking_uri("http://127.0.0.1:5000")


def test_training_script_runs_are_ours(uri):
    ids = _train()
    assert mlflow.active_run() is None
    with ExperimentTracker(uri) as tracker:
        runs = {r.id: r for r in tracker.list_runs("mnist")}
        assert set(runs) == set(ids)
        run = runs[ids[1]]
        assert run.status == "Completed" and run.name == "lr-0.1"
        assert run.params == {"lr": "0.1", "epochs": "3", "opt.name": "adam"}
        assert run.tag_values["team"] == "vision"
        assert tracker.get_metric(ids[1], "acc") == [(0, 0.9), (1, 0.91), (2, 0.92)]
        assert json.loads(tracker.get_artifact(ids[1], "config.json")) == {"layers": [64, 10]}


def test_run_objects_look_like_mlflow(uri):
    (rid,) = _train([0.1])
    run = mlflow.get_run(rid)
    assert run.info.run_id == run.info.run_uuid == rid
    assert run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"
    assert run.info.experiment_id == mlflow.get_experiment_by_name("mnist").experiment_id
    assert run.info.end_time >= run.info.start_time > 1.7e12  # milliseconds
    assert run.data.params["lr"] == "0.1"
    assert run.data.metrics == {"loss": pytest.approx(1 / 3 - 0.1), "acc": 0.92}
    assert run.data.tags["mlflow.runName"] == "lr-0.1"
    assert run.data.tags["model.kind"] == "cnn"


def test_failed_and_killed_statuses(uri):
    with pytest.raises(RuntimeError):
        with mlflow.start_run() as failing:
            raise RuntimeError("diverged")
    assert mlflow.get_run(failing.info.run_id).info.status == "FAILED"
    run = mlflow.start_run()
    mlflow.end_run("KILLED")
    assert mlflow.get_run(run.info.run_id).info.status == "KILLED"
    with ExperimentTracker(uri) as tracker:
        assert tracker.get_run(failing.info.run_id).status == "Failed"
        assert tracker.get_run(run.info.run_id).status == "Killed"


def test_nested_runs_need_nested_true_and_record_the_parent(uri):
    with mlflow.start_run() as parent:
        with pytest.raises(mlflow.MlflowException, match="nested=True"):
            mlflow.start_run()
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("x", 1.0)
            assert mlflow.active_run().info.run_id == child.info.run_id
        assert mlflow.active_run().info.run_id == parent.info.run_id
    assert mlflow.active_run() is None
    got = mlflow.get_run(child.info.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id
    with ExperimentTracker(uri) as tracker:
        assert tracker.get_run(child.info.run_id).parent_id == parent.info.run_id


def test_log_call_without_a_run_starts_one(uri):
    mlflow.log_param("a", 1)
    run = mlflow.active_run()
    assert run is not None and run.data.params == {"a": "1"}
    mlflow.end_run()
    assert mlflow.last_active_run().info.status == "FINISHED"


def test_changing_a_param_is_refused_as_in_mlflow(uri):
    with mlflow.start_run():
        mlflow.log_param("lr", 0.1)
        mlflow.log_param("lr", "0.1")  # same value: fine
        with pytest.raises(mlflow.MlflowException, match="Changing param values"):
            mlflow.log_param("lr", 0.2)


def test_metric_steps_and_millisecond_timestamps(uri):
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)                       # step 0, as in MLflow
        mlflow.log_metric("loss", 0.4, step=7, timestamp=1_700_000_000_123)
    hist = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.value, m.step) for m in hist] == [(0.5, 0), (0.4, 7)]
    assert hist[1].timestamp == 1_700_000_000_123
    assert hist[1].key == "loss"


def test_latest_metric_is_the_highest_step(uri):
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 3.0, step=5)
        mlflow.log_metric("m", 1.0, step=2)  # logged later at an earlier step
    assert mlflow.get_run(run.info.run_id).data.metrics["m"] == 3.0


def test_artifacts_from_local_files_and_dirs(uri, tmp_path):
    src = tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(b"\x00\x01")
    single = tmp_path / "model.pkl"
    single.write_bytes(b"weights")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(single))
        mlflow.log_artifact(str(single), artifact_path="models/v1")
        mlflow.log_artifacts(str(src), artifact_path="outputs")
        mlflow.log_image(np.zeros((4, 4, 3), np.uint8), "img.png")
    client = mlflow.MlflowClient()
    rid = run.info.run_id
    top = client.list_artifacts(rid)
    assert [(f.path, f.is_dir) for f in top] == [("img.png", False), ("model.pkl", False),
                                                ("models", True), ("outputs", True)]
    assert [f.path for f in client.list_artifacts(rid, "outputs")] == ["outputs/a.txt",
                                                                        "outputs/sub"]
    assert client.list_artifacts(rid, "outputs/sub")[0].file_size == 2
    local = client.download_artifacts(rid, "outputs", str(tmp_path / "dl"))
    assert (Path(local) / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    with ExperimentTracker(uri) as tracker:
        assert tracker.get_artifact(rid, "models/v1/model.pkl") == b"weights"
        assert tracker.artifact_info(rid, "img.png")["type"] == "image"


def test_log_figure(uri):
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with mlflow.start_run() as run:
        mlflow.log_figure(fig, "plots/curve.png")
    plt.close(fig)
    with ExperimentTracker(uri) as tracker:
        assert tracker.get_artifact(run.info.run_id, "plots/curve.png")[:4] == b"\x89PNG"


# ------------------------------------------------------------ search_runs
def test_search_runs_dataframe_has_mlflow_columns(uri):
    pd = pytest.importorskip("pandas")
    ids = _train()
    df = mlflow.search_runs()
    assert list(df.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri",
                                    "start_time", "end_time"]
    assert {"metrics.loss", "metrics.acc", "params.lr", "params.opt.name",
            "tags.team", "tags.mlflow.runName"} <= set(df.columns)
    assert list(df.run_id) == ids[::-1]  # newest first, as MLflow orders by default
    assert isinstance(df.start_time[0], pd.Timestamp) and df.start_time[0].tz is not None
    assert (df.status == "FINISHED").all()


@pytest.mark.parametrize("flt, want", [
    ("metrics.acc > 0.9", [1]),
    ("metrics.acc > 0.9 and params.lr = '0.1'", [1]),
    ("metrics.acc >= 0.8 AND params.lr = '0.01'", [0]),
    ("params.lr != '0.01'", [1]),
    ("attributes.run_id IN ('nothing')", []),
    ("tags.`model.kind` = 'cnn'", [0, 1]),
    ('tags."model.kind" = "cnn"', [0, 1]),
    ("tags.team LIKE 'vis%'", [0, 1]),
    ("tags.team ILIKE 'VIS%'", [0, 1]),
    ("tags.team LIKE 'VIS%'", []),
    ("attributes.status = 'FINISHED'", [0, 1]),
    ("status = 'FAILED'", []),
    ("attributes.run_name = 'lr-0.01'", [0]),
    ("run_name LIKE '%0.1'", [1]),
    ("attributes.start_time > 0", [0, 1]),
    ("metrics.nothing > 0", []),
    ("params.missing IS NULL", [0, 1]),
    ("metrics.acc < 0.85 or metrics.acc > 0.915", [0, 1]),
    ("(params.lr = '0.1' or params.lr = '0.5') and metrics.loss < 0.3", [1]),
])
def test_search_runs_filter_grammar(uri, flt, want):
    ids = _train()
    got = mlflow.search_runs(filter_string=flt, output_format="list")
    assert sorted(r.info.run_id for r in got) == sorted(ids[i] for i in want)


@pytest.mark.parametrize("flt", ["params.lr IN ('0.01', '0.1')", "params.lr NOT IN ('0.01')",
                                 "tags.team IN ('vision')", "attributes.status IN ('FINISHED')"])
def test_search_runs_refuses_in_where_mlflow_does(uri, flt):
    # MLflow accepts IN only on run ids and dataset fields
    _train()
    with pytest.raises(mlflow.MlflowException, match="IN"):
        mlflow.search_runs(filter_string=flt, output_format="list")


def test_client_search_runs_pages_with_mlflow_tokens(uri):
    ids = _train([0.1] * 12)
    client, token, seen = mlflow.MlflowClient(), None, []
    while True:
        page = client.search_runs([mlflow.get_experiment_by_name("mnist").experiment_id],
                                  max_results=5, page_token=token)
        seen += [r.info.run_id for r in page]
        token = page.token
        if token is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 12


def test_last_active_run_is_the_run_that_ended_last(uri):
    with mlflow.start_run() as parent:
        with mlflow.start_run(nested=True):
            pass
    assert mlflow.last_active_run().info.run_id == parent.info.run_id


def test_search_runs_order_by(uri):
    ids = _train([0.1, 0.01, 0.05])
    runs = mlflow.search_runs(order_by=["metrics.acc DESC"], output_format="list")
    assert [r.info.run_id for r in runs] == [ids[0], ids[2], ids[1]]
    runs = mlflow.search_runs(order_by=["params.lr"], output_format="list")
    assert [r.data.params["lr"] for r in runs] == ["0.01", "0.05", "0.1"]
    runs = mlflow.search_runs(order_by=["attributes.start_time ASC"], output_format="list")
    assert [r.info.run_id for r in runs] == ids


def test_runs_started_in_one_millisecond_sort_by_creation_order(uri):
    """Start times are milliseconds: runs created in one tie.  Ties break by
    creation order (as if the clock were finer), never by the random run ids."""
    client = mlflow.MlflowClient()
    eid = client.create_experiment("ties")
    ids = [client.create_run(eid, start_time=1_700_000_000_000).info.run_id
           for _ in range(8)]
    assert len({client.get_run(r).info.start_time for r in ids}) == 1

    def order(**kw):
        return [r.info.run_id for r in client.search_runs([eid], **kw)]

    assert order(order_by=["attributes.start_time ASC"]) == ids
    assert order(order_by=["attributes.start_time DESC"]) == ids[::-1]
    assert order() == ids[::-1]  # MLflow's default: newest first
    for rid in ids:
        client.log_param(rid, "lr", "0.1")
    assert order(order_by=["params.lr ASC"]) == ids[::-1]  # tie on lr: the default next
    assert order(order_by=["params.lr", "attributes.start_time ASC"]) == ids
    # The order survives a reopen (the catalog keeps creation order).
    mlflow._STATE.close()
    assert order(order_by=["attributes.start_time ASC"]) == ids
    # A tight loop of fluent runs: whatever their start times, ASC is creation order.
    mlflow.set_experiment("loop")
    loop = []
    for _ in range(8):
        with mlflow.start_run() as run:
            loop.append(run.info.run_id)
    runs = mlflow.search_runs(order_by=["attributes.start_time ASC"], output_format="list")
    assert [r.info.run_id for r in runs] == loop


@pytest.mark.parametrize("bad", ["metrics.acc >", "params.lr > '1'", "metrics.acc = 'x'",
                                 "attributes.nope = 'x'", "metrics.acc > 1 garbage"])
def test_bad_filters_raise(uri, bad):
    _train([0.1])
    with pytest.raises(mlflow.MlflowException):
        mlflow.search_runs(filter_string=bad, output_format="list")


def test_deleted_runs_are_hidden_and_restorable(uri):
    ids = _train()
    client = mlflow.MlflowClient()
    client.delete_run(ids[0])
    assert [r.info.run_id for r in mlflow.search_runs(output_format="list")] == [ids[1]]
    deleted = mlflow.search_runs(run_view_type=mlflow.ViewType.DELETED_ONLY,
                                 output_format="list")
    assert [r.info.lifecycle_stage for r in deleted] == ["deleted"]
    client.restore_run(ids[0])
    assert len(mlflow.search_runs(output_format="list")) == 2


# ------------------------------------------------------------ MlflowClient
def test_client_experiments(uri):
    client = mlflow.MlflowClient()
    eid = client.create_experiment("exp-a", tags={"owner": "me"})
    with pytest.raises(mlflow.MlflowException):
        client.create_experiment("exp-a")
    assert client.get_experiment(eid).name == "exp-a"
    assert client.get_experiment(eid).tags == {"owner": "me"}
    client.create_experiment("exp-b")
    names = [e.name for e in client.search_experiments(filter_string="name LIKE 'exp-%'",
                                                       order_by=["name"])]
    assert names == ["exp-a", "exp-b"]
    assert [e.name for e in client.search_experiments(
        filter_string="tags.owner = 'me'")] == ["exp-a"]


def test_client_run_basics(uri):
    client = mlflow.MlflowClient()
    eid = client.create_experiment("e")
    run = client.create_run(eid, run_name="r1", tags={"k": "v"})
    rid = run.info.run_id
    client.log_param(rid, "p", 3)
    client.log_metric(rid, "m", 0.5, step=2)
    client.log_batch(rid, metrics=[mlflow.Metric("m", 0.25, 1_700_000_000_000, 3)],
                     params=[mlflow.Param("q", "x")], tags=[mlflow.RunTag("t", "1")])
    client.set_tag(rid, "mlflow.runName", "renamed")
    client.log_dict(rid, {"x": 1}, "d.json")
    client.log_text(rid, "hello", "t.txt")
    client.set_terminated(rid)
    got = client.get_run(rid)
    assert got.info.run_name == "renamed" and got.info.status == "FINISHED"
    assert got.data.params == {"p": "3", "q": "x"}
    assert got.data.metrics == {"m": 0.25}
    assert got.data.tags["k"] == "v" and got.data.tags["t"] == "1"
    assert [f.path for f in client.list_artifacts(rid)] == ["d.json", "t.txt"]
    assert [r.info.run_id for r in client.search_runs([eid], "params.q = 'x'")] == [rid]
    with pytest.raises(mlflow.MlflowException) as e:
        client.get_run("0" * 32)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_client_model_registry(uri):
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_text("weights-v1", "model/model.bin")
    client.create_registered_model("clf", tags={"task": "mnist"}, description="a classifier")
    src = f"runs:/{run.info.run_id}/model/model.bin"
    v1 = client.create_model_version("clf", src, run.info.run_id)
    v2 = client.create_model_version("clf", src, run.info.run_id)
    v3 = client.create_model_version("clf", src, run.info.run_id)
    assert (v1.version, v1.current_stage, v1.source, v1.run_id) == \
        (1, "None", src, run.info.run_id)  # ints, as MLflow's own client
    client.transition_model_version_stage("clf", 1, "Production")
    out = client.transition_model_version_stage("clf", "2", "Production",
                                                archive_existing_versions=True)
    assert out.current_stage == "Production"
    assert client.get_model_version("clf", 1).current_stage == "Archived"
    client.transition_model_version_stage("clf", 3, "Staging")
    latest = client.get_latest_versions("clf", stages=["Production", "Staging"])
    assert sorted((m.version, m.current_stage) for m in latest) == \
        [(2, "Production"), (3, "Staging")]
    assert [m.version for m in client.get_latest_versions("clf", ["None"])] == []
    model = client.get_registered_model("clf")
    assert model.description == "a classifier" and model.tags == {"task": "mnist"}
    assert {m.version for m in model.latest_versions} == {1, 2, 3}
    with pytest.raises(mlflow.MlflowException):
        client.create_registered_model("clf")
    # The versions are ModelRegistry versions in the same file, bytes included.
    mlflow._STATE.close()
    with ModelRegistry(uri) as registry:
        data, info = registry.load_model("clf", version=2)
        assert data == b"weights-v1" and info.stage == "Production"
        assert [c.to_stage for c in registry.stage_history("clf", 1)] == \
            ["Development", "Production", "Archived"]
    assert v3.version == 3


def test_client_aliases_descriptions_and_tags_are_the_plugins(uri):
    """MLflow 3's aliases (and a model's description and tags) set through
    the shim are the ones real MLflow's registry store reads from the file."""
    client = mlflow.MlflowClient()
    for _ in range(2):
        client.create_model_version("net", "s3://bucket/model")
    client.set_registered_model_alias("net", "champion", 1)
    client.set_registered_model_alias("net", "challenger", "2")
    assert client.get_model_version_by_alias("net", "champion").version == 1
    assert client.get_model_version("net", 2).aliases == ["challenger"]
    client.update_registered_model("net", "a small net")
    client.set_registered_model_tag("net", "team", "vision")
    client.set_registered_model_tag("net", "tmp", "x")
    client.delete_registered_model_tag("net", "tmp")
    client.delete_model_version("net", 2)  # its alias goes with it
    with pytest.raises(mlflow.MlflowException, match="alias challenger not found"):
        client.get_model_version_by_alias("net", "challenger")
    with pytest.raises(mlflow.MlflowException, match="alias"):
        client.set_registered_model_alias("net", "latest", 1)
    model = client.get_registered_model("net")
    assert (model.description, model.tags, model.aliases) == \
        ("a small net", {"team": "vision"}, {"champion": 1})
    pytest.importorskip("mlflow.entities")
    from synadb.integrations.mlflow_registry import SynaModelRegistryStore

    store = SynaModelRegistryStore(f"synadb://{uri}")
    real = store.get_registered_model("net")
    assert (real.description, real.tags) == ("a small net", {"team": "vision"})
    assert {a: int(v) for a, v in real.aliases.items()} == {"champion": 1}
    assert store.get_model_version_by_alias("net", "champion").version == 1


def test_transition_archiving_staging(uri):
    client = mlflow.MlflowClient()
    for _ in range(2):
        client.create_model_version("m", "s3://bucket/model")
    client.transition_model_version_stage("m", 1, "Staging")
    client.transition_model_version_stage("m", 2, "Staging", archive_existing_versions=True)
    assert client.get_model_version("m", 1).current_stage == "Archived"
    assert client.get_model_version("m", 2).current_stage == "Staging"


def test_end_run_with_a_bad_status_keeps_the_run_active(uri):
    run = mlflow.start_run()
    with pytest.raises(InvalidArgument, match="BOGUS"):
        mlflow.end_run("BOGUS")
    assert mlflow.active_run().info.run_id == run.info.run_id
    mlflow.end_run()
    assert mlflow.get_run(run.info.run_id).info.status == "FINISHED"


def test_numpy_params_are_stored_as_mlflow_stores_them(uri):
    with mlflow.start_run() as run:
        mlflow.log_params({"lr": np.float32(0.1), "n": np.int64(5), "flag": np.bool_(True)})
        mlflow.log_param("wd", np.float32(1e-4))
    assert mlflow.get_run(run.info.run_id).data.params == {
        "lr": "0.1", "n": "5", "flag": "True", "wd": str(np.float32(1e-4))}


def test_client_errors_are_mlflow_exceptions(tmp_path):
    import synadb

    client = mlflow.MlflowClient(tracking_uri=str(tmp_path / "errs.db"))
    with pytest.raises(mlflow.MlflowException) as info:
        client.log_metric("0" * 32, "loss", 1.0)
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert isinstance(info.value, synadb.SynaError)
    run = client.create_run(client.create_experiment("e"))
    with pytest.raises(mlflow.MlflowException) as info:
        client.log_metric(run.info.run_id, "loss", "high")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(mlflow.MlflowException):
        client.set_terminated("f" * 32)


def test_flavors_without_mlflow_name_the_extra(uri):
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "import synadb, synadb.integrations.mlflow as m\n"
            "for name in ('sklearn', 'pyfunc', 'models', 'data', 'artifacts'):\n"
            "    try:\n        getattr(m, name)\n"
            "    except synadb.MissingDependency as e:\n        print(name, e.extra)\n"
            "try:\n    m.no_such_thing\nexcept AttributeError:\n    print('AttributeError')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.split() == ["sklearn", "mlflow", "pyfunc", "mlflow", "models", "mlflow",
                                  "data", "mlflow", "artifacts", "mlflow", "AttributeError"]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                            "ignore::FutureWarning")
def test_a_flavor_logs_into_the_shims_active_run(uri):
    pytest.importorskip("mlflow")
    sklearn = pytest.importorskip("sklearn.linear_model")
    X = np.arange(40, dtype=float).reshape(20, 2)
    y = (X[:, 0] > 20).astype(int)
    mlflow.set_experiment("flavors")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(sklearn.LogisticRegression().fit(X, y), name="model")
        mlflow.log_metric("acc", 1.0)
    # the model is the shim's run's, and the run ended once, FINISHED
    assert info.run_id == run.info.run_id
    assert mlflow.get_run(run.info.run_id).info.status == "FINISHED"
    loaded = mlflow.sklearn.load_model(info.model_uri)
    assert (loaded.predict(X) == sklearn.LogisticRegression().fit(X, y).predict(X)).all()
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "clf")
    assert version.name == "clf"
    mlflow.delete_run(run.info.run_id)
    assert mlflow.get_run(run.info.run_id).info.lifecycle_stage == "deleted"


def test_experiments_from_before_ids_are_numbered_with_their_fields(tmp_path):
    """A file written before MLflow ids were kept (the tracker's experiments,
    the shim's old mlflow/exp/<name> tags and lifecycle stage) gets MLflow's
    integer ids on first sight, keeping those fields; a read-only handle
    shows the same ids without writing."""
    path = tmp_path / "old.db"
    with ExperimentTracker(path) as tracker:
        tracker.start_run("cifar")
        tracker.start_run("mnist")
        tracker.db.put_text("mlflow/exp/mnist", json.dumps(
            {"tags": {"team": "vision"}, "lifecycle_stage": "deleted", "updated": 1.0e9}))
    client = mlflow.MlflowClient(f"synadb://{path}", read_only=True)
    seen = {e.name: e.experiment_id for e in client.search_experiments(view_type=3)}
    assert seen == {"cifar": "1", "mnist": "2"}  # Default is made by the first writer
    mlflow._STATE.close()
    client = mlflow.MlflowClient(f"synadb://{path}")
    exps = {e.name: e for e in client.search_experiments(view_type=3)}
    assert {n: e.experiment_id for n, e in exps.items()} == {
        "Default": "0", "cifar": "1", "mnist": "2"}
    assert exps["mnist"].tags == {"team": "vision"}
    assert exps["mnist"].lifecycle_stage == "deleted"
    assert client.tracker.db.get_text("mlflow/exp/mnist") is None  # adopted, then dropped
    mlflow._STATE.close()
