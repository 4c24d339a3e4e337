"""The synadb:// model registry store with the real mlflow: aliases, renames,
descriptions, tag and version deletes, a second process reading the same
file, and the same observable results as MLflow's own ``sqlite://`` store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from synadb import ModelRegistry  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])

# MLflow deprecates stages (still part of its registry contract, so exercised here)
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated since 2.9.0:FutureWarning")


def _error(fn, *args):
    """The error code ``fn(*args)`` raises (it must raise MlflowException)."""
    with pytest.raises(MlflowException) as info:
        fn(*args)
    return info.value.error_code


def _scenario(uri):
    """Register, alias, describe, rename and delete through ``MlflowClient``;
    returns what a user can observe along the way."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    seen = {}
    client.create_registered_model("clf", tags={"team": "vision", "scratch": "x"})
    created = [client.create_model_version("clf", f"s3://bucket/clf/{i}", tags={"i": str(i)})
               for i in range(1, 4)]
    seen["created"] = [v.version for v in created]
    client.set_registered_model_alias("clf", "champion", 2)
    client.set_registered_model_alias("clf", "challenger", "3")
    champion = client.get_model_version_by_alias("clf", "champion")
    seen["champion"] = (champion.version, champion.source, champion.aliases)
    client.transition_model_version_stage("clf", "2", "Production")

    client.update_registered_model("clf", description="the best classifier")
    client.delete_registered_model_tag("clf", "scratch")
    client.rename_registered_model("clf", "classifier")
    seen["old_name"] = _error(client.get_registered_model, "clf")
    seen["new_name_taken"] = _error(client.create_registered_model, "classifier")

    client.delete_model_version("classifier", 3)
    seen["gone_alias"] = _error(client.get_model_version_by_alias, "classifier", "challenger")
    seen["gone_version"] = _error(client.get_model_version, "classifier", 3)

    model = client.get_registered_model("classifier")
    seen["model"] = (model.name, model.description, model.tags, model.aliases,
                     sorted((v.version, v.current_stage) for v in model.latest_versions))
    by_alias = client.get_model_version_by_alias("classifier", "champion")
    seen["by_alias"] = (by_alias.name, by_alias.version, by_alias.current_stage,
                        by_alias.tags, by_alias.aliases)
    seen["versions"] = [(v.name, v.version, v.source, v.aliases)
                        for v in client.search_model_versions("name = 'classifier'")]
    return seen


def test_registry_scenario_on_synadb(tmp_path):
    seen = _scenario(f"synadb://{tmp_path}/x.db")
    assert seen["created"] == [1, 2, 3]
    assert seen["champion"] == (2, "s3://bucket/clf/2", ["champion"])
    assert seen["old_name"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["new_name_taken"] == "RESOURCE_ALREADY_EXISTS"
    assert seen["gone_alias"] == "INVALID_PARAMETER_VALUE"
    assert seen["gone_version"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["model"] == ("classifier", "the best classifier", {"team": "vision"},
                             {"champion": 2}, [(1, "None"), (2, "Production")])
    assert seen["by_alias"] == ("classifier", 2, "Production", {"i": "2"}, ["champion"])
    # as in MLflow's SQL store, searched versions carry no aliases (the model does)
    assert [(v[1], v[3]) for v in seen["versions"]] == [(2, []), (1, [])]


def test_a_second_process_sees_the_same_aliases(tmp_path):
    uri = f"synadb://{tmp_path}/x.db"
    _scenario(uri)
    code = (
        "import json, sys\n"
        "from mlflow import MlflowClient\n"
        "c = MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])\n"
        "m = c.get_registered_model('classifier')\n"
        "v = c.get_model_version_by_alias('classifier', 'champion')\n"
        "print(json.dumps({'aliases': m.aliases, 'description': m.description,\n"
        "                  'champion': [v.version, v.current_stage, v.source]}))\n")
    out = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "aliases": {"champion": 2}, "description": "the best classifier",
        "champion": [2, "Production", "s3://bucket/clf/2"]}


def test_registered_versions_are_synadb_registry_versions(tmp_path):
    db = tmp_path / "x.db"
    client = MlflowClient(tracking_uri=f"synadb://{db}", registry_uri=f"synadb://{db}")
    client.create_registered_model("clf")
    client.create_model_version("clf", "s3://bucket/clf/1", tags={"owner": "ana"})
    client.create_model_version("clf", "s3://bucket/clf/2")
    client.transition_model_version_stage("clf", "2", "Staging")
    client.delete_model_version("clf", "1")
    with ModelRegistry(db, read_only=True) as registry:
        assert [(v.version, v.stage) for v in registry.list_versions("clf")] == [(2, "Staging")]
    with ModelRegistry(db) as registry:  # a model saved with synadb's own API shows in MLflow
        registry.save_model("native", b"weights", tags={"k": "v"})
    native = client.get_model_version("native", 1)
    assert (native.version, native.current_stage, native.tags) == (1, "None", {"k": "v"})


# MLflow's SQL store configures SqlAlchemy mappers that use deprecated loaders
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_same_observable_results_as_mlflows_sqlite_store(tmp_path):
    ours = _scenario(f"synadb://{tmp_path}/x.db")
    theirs = _scenario(f"sqlite:///{tmp_path}/y.db")
    assert ours == theirs
