"""MLflow 3 logged models, evaluation datasets and scorers in a synadb file,
through the real mlflow package (``synadb.integrations.mlflow_models``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import forget_mlflow_state

mlflow = pytest.importorskip("mlflow")
np = pytest.importorskip("numpy")

from mlflow.entities import (LoggedModelParameter, LoggedModelStatus,  # noqa: E402
                             LoggedModelTag, Metric)
from mlflow.exceptions import MlflowException  # noqa: E402

from synadb.integrations.mlflow_store import SynaArtifactRepository, SynaTrackingStore  # noqa: E402


# mlflow.pyfunc warns at import about its own response types (MLflow's, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "x.db"


@pytest.fixture
def store(db_path: Path) -> SynaTrackingStore:
    return SynaTrackingStore(f"synadb://{db_path}")


@pytest.fixture
def tracking(db_path: Path):
    """mlflow's fluent API on a fresh synadb file."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"synadb://{db_path}")
    forget_mlflow_state()
    try:
        yield db_path
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


# ---------------------------------------------------------------- logged models
def test_logged_model_lifecycle(store: SynaTrackingStore, db_path: Path) -> None:
    exp = store.create_experiment("lm")
    run = store.create_run(exp, "me", 0, [], "train")
    model = store.create_logged_model(
        exp, name="clf", source_run_id=run.info.run_id, model_type="sklearn",
        tags=[LoggedModelTag("team", "a")], params=[LoggedModelParameter("C", "1.0")])
    assert model.model_id.startswith("m-")
    assert model.status == LoggedModelStatus.PENDING
    assert model.artifact_location == f"synadb://{db_path}/models/{model.model_id}/artifacts"
    assert (model.tags, model.params, model.metrics) == ({"team": "a"}, {"C": "1.0"}, None)

    store.set_logged_model_tags(model.model_id, [LoggedModelTag("team", "b"),
                                                 LoggedModelTag("stage", "dev")])
    store.log_logged_model_params(model.model_id, [LoggedModelParameter("penalty", "l2")])
    store.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    store.delete_logged_model_tag(model.model_id, "stage")

    # a second handle on the same file sees it all
    got = SynaTrackingStore(f"synadb://{db_path}").get_logged_model(model.model_id)
    assert (got.name, got.status, got.source_run_id, got.model_type) == (
        "clf", LoggedModelStatus.READY, run.info.run_id, "sklearn")
    assert got.tags == {"team": "b"}
    assert got.params == {"C": "1.0", "penalty": "l2"}

    with pytest.raises(MlflowException, match="No tag with key"):
        store.delete_logged_model_tag(model.model_id, "stage")
    with pytest.raises(MlflowException, match="Changing param values is not allowed"):
        store.log_logged_model_params(model.model_id, [LoggedModelParameter("C", "2.0")])

    store.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException, match="not found"):
        store.get_logged_model(model.model_id)
    assert store.get_logged_model(model.model_id, allow_deleted=True).model_id == model.model_id
    assert store._get_deleted_logged_models() == [model.model_id]
    store._hard_delete_logged_model(model.model_id)
    with pytest.raises(MlflowException, match="not found"):
        store.get_logged_model(model.model_id, allow_deleted=True)


@pytest.mark.parametrize("name", ["", "a/b", "a.b", "a:b", "a%b", "a'b", 'a"b'])
def test_logged_model_name_is_validated(store: SynaTrackingStore, name: str) -> None:
    with pytest.raises(MlflowException, match="Invalid model name"):
        store.create_logged_model(store.create_experiment("lm"), name=name)


def test_logged_model_needs_an_active_experiment(store: SynaTrackingStore) -> None:
    exp = store.create_experiment("gone")
    store.delete_experiment(exp)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        store.create_logged_model(exp)


def test_model_metrics_filters_and_ordering(store: SynaTrackingStore) -> None:
    exp = store.create_experiment("lm")
    run_id = store.create_run(exp, "me", 0, [], "eval").info.run_id
    a = store.create_logged_model(exp, name="a")
    b = store.create_logged_model(exp, name="b", params=[LoggedModelParameter("lr", "0.1")])

    def metric(model_id: str, value: float, dataset: str, ts: int) -> Metric:
        return Metric("acc", value, ts, 0, run_id=run_id, model_id=model_id,
                      dataset_name=dataset, dataset_digest=dataset + "-d")

    store.log_batch(run_id, metrics=[metric(a.model_id, 0.9, "val", 1),
                                     metric(a.model_id, 0.5, "test", 2),
                                     metric(b.model_id, 0.7, "val", 3),
                                     metric(b.model_id, 0.8, "test", 4)], params=[], tags=[])
    got = store.get_logged_model(a.model_id)
    assert sorted((m.dataset_name, m.value, m.run_id) for m in got.metrics) == [
        ("test", 0.5, run_id), ("val", 0.9, run_id)]

    def names(**kwargs) -> list[str]:
        return [m.name for m in store.search_logged_models([exp], **kwargs)]

    assert sorted(names()) == ["a", "b"]
    assert names(filter_string="metrics.acc > 0.85") == ["a"]
    assert names(filter_string="metrics.acc >= 0.8", datasets=[{"dataset_name": "test"}]) == ["b"]
    assert names(filter_string="params.lr = '0.1' AND name LIKE 'b%'") == ["b"]
    assert names(order_by=[{"field_name": "metrics.acc", "dataset_name": "val"}]) == ["b", "a"]
    assert names(order_by=[{"field_name": "metrics.acc", "dataset_name": "test",
                            "ascending": False}]) == ["b", "a"]
    assert names(order_by=[{"field_name": "name"}]) == ["a", "b"]
    with pytest.raises(MlflowException, match="Invalid comparison operator"):
        store.search_logged_models([exp], filter_string="name > 'a'")

    by_name = [{"field_name": "name", "ascending": False}]
    page = store.search_logged_models([exp], max_results=1, order_by=by_name)
    assert [m.name for m in page] == ["b"] and page.token
    rest = store.search_logged_models([exp], max_results=1, order_by=by_name,
                                      page_token=page.token)
    assert [m.name for m in rest] == ["a"] and rest.token is None
    with pytest.raises(MlflowException, match="Order by in the page token does not match"):
        store.search_logged_models([exp], page_token=page.token)


def test_model_versions_tag_lists_registrations(store: SynaTrackingStore) -> None:
    model = store.create_logged_model(store.create_experiment("lm"))
    for version in ("1", "2", "2"):
        store.set_model_versions_tags("reg", version, model.model_id)
    tag = store.get_logged_model(model.model_id).tags["mlflow.modelVersions"]
    assert json.loads(tag) == [{"name": "reg", "version": "1"}, {"name": "reg", "version": "2"}]


# ---------------------------------------------------------------- artifacts
def test_model_artifact_repository_keeps_files_in_the_db(store: SynaTrackingStore,
                                                          db_path: Path,
                                                          tmp_path: Path) -> None:
    model = store.create_logged_model(store.create_experiment("lm"))
    assert model.artifact_location == f"synadb://{db_path}/models/{model.model_id}/artifacts"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "MLmodel").write_text("flavors: {}\n")
    (src / "sub" / "weights.bin").write_bytes(bytes(range(256)))

    SynaArtifactRepository(model.artifact_location).log_artifacts(str(src))
    assert sorted(os.listdir(tmp_path)) == ["src", "x.db"]  # nothing written beside the file

    repo = SynaArtifactRepository(model.artifact_location)
    assert [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts()] == [
        ("MLmodel", False, 12), ("sub", True, None)]
    assert [f.path for f in repo.list_artifacts("sub")] == ["sub/weights.bin"]
    (tmp_path / "out").mkdir()
    out = Path(repo.download_artifacts("", dst_path=str(tmp_path / "out")))
    assert (out / "sub" / "weights.bin").read_bytes() == bytes(range(256))

    repo.delete_artifacts("sub")
    assert [f.path for f in repo.list_artifacts()] == ["MLmodel"]


# ---------------------------------------------------------------- fluent API
def _fitted_classifier():
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    return LogisticRegression().fit(X, y), X


def test_sklearn_model_round_trips_through_the_file(tracking: Path) -> None:
    pytest.importorskip("sklearn")
    import mlflow.sklearn

    clf, X = _fitted_classifier()
    info = mlflow.sklearn.log_model(clf, name="clf", pip_requirements=["scikit-learn"])
    assert info.model_uri == f"models:/{info.model_id}"
    loaded = mlflow.sklearn.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))

    model = mlflow.get_logged_model(info.model_id)
    assert model.artifact_location.startswith(f"synadb://{tracking}/models/")
    assert os.listdir(tracking.parent) == [tracking.name]  # the model lives in the file


def test_pyfunc_model_in_a_run(tracking: Path) -> None:
    import mlflow.pyfunc

    class AddOne(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[int], params=None) -> list[int]:
            return [x + 1 for x in model_input]

    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="adder", python_model=AddOne(),
                                       pip_requirements=["mlflow"])
    assert mlflow.pyfunc.load_model(info.model_uri).predict([1, 2]) == [2, 3]
    model = mlflow.get_logged_model(info.model_id)
    assert (model.name, model.source_run_id) == ("adder", run.info.run_id)


def test_search_and_last_logged_model(tracking: Path) -> None:
    pytest.importorskip("sklearn")
    import mlflow.sklearn

    clf, _ = _fitted_classifier()
    first = mlflow.sklearn.log_model(clf, name="first", pip_requirements=["scikit-learn"])
    second = mlflow.sklearn.log_model(clf, name="second", pip_requirements=["scikit-learn"])
    assert mlflow.last_logged_model().model_id == second.model_id

    found = mlflow.search_logged_models(output_format="list")
    assert [m.name for m in found] == ["second", "first"]
    found = mlflow.search_logged_models(filter_string="name = 'first'", output_format="list")
    assert [m.model_id for m in found] == [first.model_id]
    assert mlflow.get_logged_model(first.model_id).name == "first"


def test_fluent_logged_model_without_artifacts(tracking: Path) -> None:
    model = mlflow.initialize_logged_model(name="external", tags={"k": "v"})
    mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert mlflow.last_logged_model().model_id == model.model_id
    got = mlflow.get_logged_model(model.model_id)
    assert got.status == LoggedModelStatus.READY
    assert got.tags["k"] == "v"
    assert [m.name for m in mlflow.search_logged_models(output_format="list")] == ["external"]


# ---------------------------------------------------------------- datasets
def test_evaluation_dataset_records(store: SynaTrackingStore) -> None:
    exp = store.create_experiment("ds")
    ds = store.create_dataset("qa", tags={"mlflow.user": "ann"}, experiment_ids=[exp])
    assert ds.dataset_id.startswith("d-") and ds.created_by == "ann"
    result = store.upsert_dataset_records(ds.dataset_id, [
        {"inputs": {"q": "a"}, "expectations": {"y": 1}, "tags": {"t": "1"}},
        {"inputs": {"q": "b"}, "outputs": "B"},
        {"inputs": {"q": "a"}, "expectations": {"z": 2}, "tags": {"mlflow.user": "bob"}},
    ])
    assert result == {"inserted": 2, "updated": 1}

    records, token = store._load_dataset_records(ds.dataset_id, max_results=None)
    assert token is None
    by_q = {r.inputs["q"]: r for r in records}
    assert by_q["a"].expectations == {"y": 1, "z": 2}
    assert by_q["a"].tags == {"t": "1", "mlflow.user": "bob"}
    assert by_q["a"].last_updated_by == "bob"
    assert by_q["b"].outputs == "B"

    got = store.get_dataset(ds.dataset_id)
    assert json.loads(got.profile) == {"num_records": 2}
    assert json.loads(got.schema)["inputs"] == {"q": "string"}
    assert store.get_dataset_experiment_ids(ds.dataset_id) == [exp]

    assert store.delete_dataset_records(ds.dataset_id, [by_q["b"].dataset_record_id]) == 1
    page, token = store._load_dataset_records(ds.dataset_id, max_results=10)
    assert [r.inputs["q"] for r in page] == ["a"] and token is None

    store.delete_dataset(ds.dataset_id)
    with pytest.raises(MlflowException, match="not found"):
        store.get_dataset(ds.dataset_id)


def test_search_datasets(store: SynaTrackingStore) -> None:
    e1, e2 = store.create_experiment("e1"), store.create_experiment("e2")
    store.create_dataset("alpha", tags={"tier": "gold"}, experiment_ids=[e1])
    store.create_dataset("beta", tags={"tier": "silver"}, experiment_ids=[e1, e2])
    store.create_dataset("gamma", experiment_ids=[e2])

    def names(**kwargs) -> list[str]:
        return [d.name for d in store.search_datasets(**kwargs)]

    assert names(experiment_ids=[e1], order_by=["name"]) == ["alpha", "beta"]
    assert names(filter_string="tags.tier = 'gold'") == ["alpha"]
    assert names(filter_string="name LIKE '%a' AND tags.tier != 'gold'") == ["beta"]
    assert names(order_by=["name DESC"]) == ["gamma", "beta", "alpha"]
    page = store.search_datasets(order_by=["name"], max_results=2)
    assert [d.name for d in page] == ["alpha", "beta"]
    assert names(order_by=["name"], page_token=page.token) == ["gamma"]
    with pytest.raises(MlflowException, match="Invalid attribute key"):
        store.search_datasets(filter_string="color = 'red'")


# ---------------------------------------------------------------- scorers
def test_scorer_versions_and_online_config(store: SynaTrackingStore) -> None:
    exp = store.create_experiment("sc")
    for n in (1, 2):
        store.register_scorer(exp, "judge", json.dumps({"v": n}))
    store.register_scorer(exp, "aaa", json.dumps({"v": 0}))

    assert [(s.scorer_name, s.scorer_version) for s in store.list_scorers(exp)] == [
        ("aaa", 1), ("judge", 2)]
    assert [s._serialized_scorer for s in store.list_scorer_versions(exp, "judge")] == [
        '{"v": 1}', '{"v": 2}']
    assert store.get_scorer(exp, "judge", version=1).scorer_version == 1

    config = store.upsert_online_scoring_config(exp, "judge", sample_rate=0.0)
    scorer_id = store.get_scorer(exp, "judge").scorer_id
    assert [c.online_scoring_config_id for c in store.get_online_scoring_configs([scorer_id])] \
        == [config.online_scoring_config_id]
    with pytest.raises(MlflowException, match="does not use a gateway model"):
        store.upsert_online_scoring_config(exp, "judge", sample_rate=0.5)

    store.delete_scorer(exp, "judge", version=2)
    assert store.get_scorer(exp, "judge").scorer_version == 1
    store.delete_scorer(exp, "judge")
    with pytest.raises(MlflowException, match="Scorer with name 'judge' not found"):
        store.get_scorer(exp, "judge")
    assert store.get_online_scoring_configs([scorer_id]) == []
