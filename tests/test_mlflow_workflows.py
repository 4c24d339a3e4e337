"""Three MLflow 3 workflows, each run as a real script in its own process on
``synadb:///<tmp>/a.db`` and on MLflow's own ``sqlite:///<tmp>/b.db``: what
MLflow shows afterwards must be the same on both (ids, times and paths
normalised), and on synadb everything, artifacts included, is in the file.

1. ``mlflow.sklearn.autolog()`` around a GridSearchCV (parent + child runs,
   metrics, params, artifacts, logged models);
2. ``mlflow.pytorch.log_model(..., registered_model_name=...)``, an alias,
   ``mlflow.register_model`` and loads by ``models:/name@alias``,
   ``models:/<model_id>``, ``runs:/<run>/model``;
3. ``mlflow.langchain.autolog()`` tracing an LCEL chain with a fake chat model.
"""

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

ROOT = str(Path(__file__).resolve().parents[1])
SCRIPT_TIMEOUT_S = 600
RESULT_MARK = "@@RESULT@@"

# Every script starts here: argv = (tracking URI, folder of this backend).
# The experiment gets an artifact location in that folder on sqlite (a plain
# path: with a file:/// URI, MLflow 3.17.2 put logged-model and trace
# artifacts under "/<folder without its first component>"); synadb keeps its
# default, the file itself.
PRELUDE = """\
import json, sys
from pathlib import Path

import mlflow
from mlflow import MlflowClient

URI, HERE = sys.argv[1], Path(sys.argv[2])
mlflow.set_tracking_uri(URI)
mlflow.set_registry_uri(URI)
if URI.startswith("sqlite:"):
    exp_id = mlflow.create_experiment("workflow", artifact_location=str(HERE / "artifacts"))
else:
    exp_id = mlflow.create_experiment("workflow")
mlflow.set_experiment(experiment_id=exp_id)
client = MlflowClient()


def artifact_files(uri):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    repo, found, todo = get_artifact_repository(uri), [], [None]
    while todo:
        for f in repo.list_artifacts(todo.pop()):
            (todo if f.is_dir else found).append(f.path)
    return sorted(found)


def emit(result):
    print(__RESULT_MARK__ + json.dumps(result, sort_keys=True))
""".replace("__RESULT_MARK__", repr(RESULT_MARK))

BACKENDS = {"synadb": "synadb:///{dir}/a.db", "sqlite": "sqlite:///{dir}/b.db"}


# ---------------------------------------------------------------- helpers


def run_workflow(tmp_path, body):
    """Run PRELUDE + body as a script on each backend (both processes at
    once, each with its own folder as cwd); return {backend: (result, folder)}."""
    script = tmp_path / "workflow.py"  # one path: mlflow.source.name is the same
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=ROOT, PYTHONHASHSEED="0")
    procs = {}
    for backend, uri in BACKENDS.items():
        here = tmp_path / backend
        here.mkdir()
        procs[backend] = (here, subprocess.Popen(
            [sys.executable, str(script), uri.format(dir=here), str(here)], cwd=here, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    finished = {}
    for backend, (here, proc) in procs.items():
        try:
            out, err = proc.communicate(timeout=SCRIPT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()  # (its returncode, -9, fails it below)
            out, err = proc.communicate()
        finished[backend] = (here, proc.returncode, out, err)
    results = {}
    for backend, (here, returncode, out, err) in finished.items():
        assert returncode == 0, f"{backend} workflow failed ({returncode}):\n{err[-6000:]}"
        line = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)][-1]
        results[backend] = (json.loads(line[len(RESULT_MARK):]), here)
    return results


_ID_PATTERNS = re.compile("|".join([
    r"\b(?:m|tr)-[0-9a-f]{32}\b",  # logged model / trace ids
    r"\b[0-9a-f]{32}\b",  # run ids
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",  # uuids
    r"\b[0-9a-f]{16}\b",  # span ids
]))


def normalise(result, tmp_path):
    """Ids become <id0>, <id1>... in order of first appearance (results are
    emitted in a deterministic order); tmp paths become <tmp>; floats are
    rounded to 6 places."""
    names = {}

    def fix(value):
        if isinstance(value, dict):
            return {fix(k): fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, float):
            return value if math.isnan(value) else round(value, 6)
        if isinstance(value, str):
            value = value.replace(str(tmp_path), "<tmp>")
            return _ID_PATTERNS.sub(lambda m: names.setdefault(m.group(), f"<id{len(names)}>"),
                                    value)
        return value

    return fix(result)


def differences(a, b, path="$"):
    """Where two JSON values differ, as "path: a != b" lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            yield from differences(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


def assert_same(results, tmp_path, drop=lambda r: r):
    """The normalised results of both backends are equal; returns them."""
    syn, sql = (normalise(drop(results[b][0]), tmp_path) for b in BACKENDS)
    diff = list(differences(syn, sql))
    assert not diff, "synadb != sqlite at\n" + "\n".join(diff)
    return syn


def assert_all_in_file(results):
    """synadb wrote nothing beside its .db file (artifacts are inside it), and
    neither backend wrote anything else into its cwd (mlruns/, mlartifacts/)."""
    assert sorted(os.listdir(results["synadb"][1])) == ["a.db"]
    assert set(os.listdir(results["sqlite"][1])) <= {"b.db", "artifacts"}


# ---------------------------------------------------------------- 1. sklearn


SKLEARN_WORKFLOW = """
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

mlflow.sklearn.autolog()
X, y = load_iris(return_X_y=True)
GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1.0]}, cv=2).fit(X, y)


def run_doc(r):
    return {
        "id": r.info.run_id, "parent": r.data.tags.get("mlflow.parentRunId"),
        "status": r.info.status, "metrics": r.data.metrics, "params": r.data.params,
        "tags": {k: v for k, v in r.data.tags.items() if k != "mlflow.runName"},
        "artifacts": artifact_files(r.info.artifact_uri),
        "datasets": [[d.dataset.name, d.dataset.digest, d.dataset.source_type,
                      sorted([t.key, t.value] for t in d.tags)] for d in r.inputs.dataset_inputs],
        # (by name: the SQL store returns a run's outputs in no particular order)
        "model_outputs": sorted([client.get_logged_model(m.model_id).name, m.step]
                                for m in (r.outputs.model_outputs if r.outputs else [])),
        "history": sorted([k, [[m.step, m.value] for m in client.get_metric_history(r.info.run_id, k)]]
                          for k in r.data.metrics),
    }


runs = client.search_runs([exp_id])
parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags),
                  key=lambda r: float(r.data.params["C"]))
models = sorted(client.search_logged_models([exp_id]), key=lambda m: m.name)
X_head = X[::15]
emit({
    "runs": [run_doc(r) for r in parents + children],
    "models": [{
        "id": m.model_id, "name": m.name, "run": m.source_run_id, "status": str(m.status),
        "params": m.params, "tags": m.tags, "files": artifact_files(m.artifact_location),
        "metrics": sorted([x.key, x.value, x.dataset_name, x.dataset_digest, x.run_id]
                          for x in m.metrics or []),
        "flavors": sorted(mlflow.models.get_model_info(f"models:/{m.model_id}").flavors),
        "predict": mlflow.sklearn.load_model(f"models:/{m.model_id}").predict(X_head).tolist(),
    } for m in models],
})
"""


def _without_timings(result):
    """Fit and score times are the only values that change between runs."""
    def strip(metrics):
        return {k: (None if "_time" in k else v) for k, v in metrics.items()}
    for run in result["runs"]:
        run["metrics"] = strip(run["metrics"])
        run["history"] = [[k, None if "_time" in k else h] for k, h in run["history"]]
    for model in result["models"]:
        model["metrics"] = [[k, None if "_time" in k else v, *rest]
                            for k, v, *rest in model["metrics"]]
    return result


def test_sklearn_autolog_gridsearch_same_on_synadb_and_sqlite(tmp_path):
    pytest.importorskip("sklearn")
    results = run_workflow(tmp_path, SKLEARN_WORKFLOW)
    shown = assert_same(results, tmp_path, drop=_without_timings)
    assert_all_in_file(results)

    parent, *children = shown["runs"]
    assert parent["parent"] is None and len(children) == 2
    assert all(c["parent"] == parent["id"] for c in children)
    assert [c["params"]["C"] for c in children] == ["0.1", "1.0"]
    assert {"estimator.html", "training_confusion_matrix.png",
            "cv_results.csv"} <= set(parent["artifacts"])
    assert {"training_accuracy_score", "best_cv_score"} <= set(parent["metrics"])
    assert parent["params"]["best_C"] == "1.0"
    assert [m["name"] for m in shown["models"]] == ["best_estimator", "model"]
    for model in shown["models"]:
        assert model["run"] == parent["id"] and model["status"] == "READY"
        assert {"MLmodel", "model.pkl"} <= set(model["files"])
        assert model["flavors"] == ["python_function", "sklearn"]
    assert parent["model_outputs"] == [["best_estimator", 0], ["model", 0]]


# ---------------------------------------------------------------- 2. pytorch + registry


PYTORCH_WORKFLOW = """
import torch
import mlflow.pytorch

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
x = torch.arange(8, dtype=torch.float32).reshape(2, 4)
expected = net(x).detach()
with mlflow.start_run() as run:
    # MLflow 3.17's default serialization ("pt2") traces the model: it needs an example.
    info = mlflow.pytorch.log_model(net, name="model", registered_model_name="net",
                                    input_example=x.numpy())
client.set_registered_model_alias("net", "champion", 1)
net2 = mlflow.register_model(info.model_uri, "net2")

uris = [["alias", "models:/net@champion"], ["version", "models:/net/1"],
        ["model_id", f"models:/{info.model_id}"], ["model_uri", info.model_uri],
        ["run", f"runs:/{run.info.run_id}/model"], ["net2", f"models:/net2/{net2.version}"]]


def version_doc(v):
    return {"name": v.name, "version": v.version, "source": v.source, "run": v.run_id,
            "model_id": v.model_id, "status": v.status, "aliases": sorted(v.aliases),
            "tags": v.tags, "stage": v.current_stage}


lm = client.get_logged_model(info.model_id)
emit({
    "run": run.info.run_id, "model_id": info.model_id, "model_uri": info.model_uri,
    "info": {"flavors": sorted(info.flavors), "signature": str(info.signature),
             "registered_model_version": info.registered_model_version},
    "loads_equal": [[label, torch.equal(mlflow.pytorch.load_model(uri)(x).detach(), expected)]
                    for label, uri in uris],
    "pyfunc": mlflow.pyfunc.load_model("models:/net@champion").predict(x.numpy()).tolist(),
    "registered": [{"name": rm.name, "aliases": rm.aliases,
                    "latest": [version_doc(v) for v in rm.latest_versions]}
                   for rm in sorted(client.search_registered_models(), key=lambda m: m.name)],
    "versions": [version_doc(v) for name in ["net", "net2"]
                 for v in client.search_model_versions(f"name='{name}'")],
    "by_alias": version_doc(client.get_model_version_by_alias("net", "champion")),
    "logged_model": {"name": lm.name, "run": lm.source_run_id, "status": str(lm.status),
                     "tags": lm.tags, "params": lm.params,
                     "files": artifact_files(lm.artifact_location)},
    "run_outputs": [[m.model_id, m.step] for m in client.get_run(run.info.run_id).outputs.model_outputs],
    "run_artifacts": artifact_files(run.info.artifact_uri),
})
"""


def _model_versions(result):
    """Every ModelVersion document in a workflow-2 result."""
    yield result["by_alias"]
    yield from result["versions"]
    for rm in result["registered"]:
        yield from rm["latest"]


def _without_version_model_ids(result):
    """MLflow's SQL registry does not store ModelVersion.model_id (it has no
    column for it: versions come back with None); synadb keeps it.  Compared
    apart, in the test.

    Loading ``models:/net/1`` from a local artifact folder makes MLflow write
    a ``registered_model_meta`` file into the stored model itself
    (ModelsArtifactRepository.download_artifacts gets the folder back, not a
    copy); synadb hands out a copy, so its stored model stays as logged."""
    for v in _model_versions(result):
        v.pop("model_id")
    files = result["logged_model"]["files"]
    files[:] = [f for f in files if f != "registered_model_meta"]
    return result


def test_pytorch_log_register_alias_load_same_on_synadb_and_sqlite(tmp_path):
    pytest.importorskip("torch")
    results = run_workflow(tmp_path, PYTORCH_WORKFLOW)
    syn_model_id = results["synadb"][0]["model_id"]
    assert {v["model_id"] for v in _model_versions(results["synadb"][0])} <= {None, syn_model_id}
    shown = assert_same(results, tmp_path, drop=_without_version_model_ids)
    assert_all_in_file(results)

    assert shown["loads_equal"] == [[label, True] for label in
                                    ["alias", "version", "model_id", "model_uri", "run", "net2"]]
    assert shown["model_uri"] == f"models:/{shown['model_id']}"
    assert shown["info"]["registered_model_version"] == 1
    assert [rm["name"] for rm in shown["registered"]] == ["net", "net2"]
    assert shown["registered"][0]["aliases"] == {"champion": 1}
    assert shown["by_alias"]["version"] == 1 and shown["by_alias"]["aliases"] == ["champion"]
    assert [(v["name"], v["version"], v["source"], v["run"]) for v in shown["versions"]] == [
        ("net", 1, shown["model_uri"], shown["run"]), ("net2", 1, shown["model_uri"], shown["run"])]
    assert shown["run_outputs"] == [[shown["model_id"], 0]]
    assert {"MLmodel", "data/model.pt2", "input_example.json"} <= set(shown["logged_model"]["files"])


# ---------------------------------------------------------------- 3. langchain trace


LANGCHAIN_WORKFLOW = """
import mlflow.langchain
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

mlflow.langchain.autolog()
prompt = ChatPromptTemplate.from_messages([("system", "You are terse."),
                                           ("human", "Tell me about {topic}")])
chain = prompt | FakeListChatModel(responses=["MLflow is a platform."]) | StrOutputParser()
answer = chain.invoke({"topic": "MLflow"})
mlflow.flush_trace_async_logging(terminate=False)  # traces are exported in the background


def spans_doc(trace):
    return [{"id": s.span_id, "parent": s.parent_id, "name": s.name, "type": s.span_type,
             "status": str(s.status.status_code), "inputs": s.inputs, "outputs": s.outputs,
             "attributes": s.attributes, "events": [e.name for e in s.events]}
            for s in sorted(trace.data.spans, key=lambda s: s.start_time_ns)]


found = mlflow.search_traces(locations=[exp_id], return_type="list")
frame = mlflow.search_traces(locations=[exp_id])
trace = mlflow.get_trace(found[0].info.trace_id)
tags = dict(trace.info.tags)
emit({
    "answer": answer, "found": len(found), "frame_rows": len(frame),
    "frame_columns": sorted(frame.columns),
    "trace_id": trace.info.trace_id, "frame_trace_ids": list(frame["trace_id"]),
    "artifact_location": tags.pop("mlflow.artifactLocation", None),
    "info": {"state": str(trace.info.state), "request_preview": trace.info.request_preview,
             "response_preview": trace.info.response_preview, "tags": tags,
             "metadata": trace.info.trace_metadata,
             "experiment": trace.info.experiment_id == exp_id},
    "spans": spans_doc(trace),
    "searched_spans_same": spans_doc(found[0]) == spans_doc(trace),
})
"""


def _without_trace_location_and_sizes(result):
    """The trace's artifact location is each backend's own; its serialized
    size moves by a byte or two with the span timestamps."""
    result.pop("artifact_location")
    for key in ("mlflow.trace.sizeBytes", "mlflow.trace.sizeStats"):
        assert key in result["info"]["metadata"]
        result["info"]["metadata"][key] = "<size>"
    return result


def test_langchain_autolog_trace_same_on_synadb_and_sqlite(tmp_path):
    pytest.importorskip("langchain_core", reason="langchain-core is not installed")
    results = run_workflow(tmp_path, LANGCHAIN_WORKFLOW)
    assert results["synadb"][0]["artifact_location"].startswith("synadb:///")
    shown = assert_same(results, tmp_path, drop=_without_trace_location_and_sizes)
    assert_all_in_file(results)

    assert shown["answer"] == "MLflow is a platform."
    assert (shown["found"], shown["frame_rows"]) == (1, 1)
    assert shown["frame_trace_ids"] == [shown["trace_id"]]
    assert shown["searched_spans_same"] and shown["info"]["experiment"]
    assert shown["info"]["state"] == "OK"
    root, *leaves = shown["spans"]
    assert (root["name"], root["type"], root["parent"]) == ("RunnableSequence", "CHAIN", None)
    assert [(s["name"], s["type"], s["parent"]) for s in leaves] == [
        ("ChatPromptTemplate", "CHAIN", root["id"]),
        ("FakeListChatModel", "CHAT_MODEL", root["id"]),
        ("StrOutputParser", "CHAIN", root["id"])]
    assert root["inputs"] == {"topic": "MLflow"} and root["outputs"] == "MLflow is a platform."
