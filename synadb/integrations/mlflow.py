"""MLflow's fluent API and ``MlflowClient`` over a synadb file, without mlflow.

Swap one import and a typical MLflow training script logs into one synadb
file (no server, no ``mlruns/`` tree)::

    import synadb.integrations.mlflow as mlflow

    mlflow.set_tracking_uri("synadb:///abs/path/experiments.db")  # or a plain path
    mlflow.set_experiment("mnist")
    with mlflow.start_run(run_name="baseline"):
        mlflow.log_params({"lr": 0.01, "epochs": 3})
        for epoch in range(3):
            mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_dict({"layers": [64, 10]}, "config.json")

    df = mlflow.search_runs(filter_string="metrics.loss < 0.5 and params.lr = '0.01'",
                            order_by=["metrics.loss ASC"])

This module is the fluent API; the client, the entities, the search grammar
and the mapping live in :mod:`.mlflow_client`, :mod:`.mlflow_entities`,
:mod:`.mlflow_filter` and :mod:`.mlflow_mapping`.  None imports mlflow
(flavors, ``mlflow.models``, ``mlflow.data`` and ``mlflow.artifacts`` are
served by real mlflow on the same file when it is installed): its objects (``Run`` with ``.info`` and
``.data``, ``Metric``, ``Experiment``, ``FileInfo``, ``ModelVersion``...) are
small classes with MLflow's attribute names.  The runs are plain synadb runs:
``ExperimentTracker(path)`` sees them, and with the real mlflow installed the
``synadb://`` plugin (:mod:`synadb.integrations.mlflow_store`) serves them to
MLflow's own UI.

How MLflow's model maps onto synadb's (the plugin and ``synadb mlflow-push``
use the same mapping):

* experiment ids are MLflow's integers (``"0"`` is ``Default``), kept in the
  file (:mod:`.mlflow_experiments`), so the shim, the plugin and every
  process agree on them;
* statuses FINISHED, FAILED, KILLED and RUNNING are our Completed, Failed,
  Killed and Running;
* MLflow's key-value tags are a run's ``tag_values``; the system tags
  ``mlflow.runName`` and ``mlflow.parentRunId`` are the run's name and parent,
  and synadb's label list shows as the tag ``synadb.labels``;
* metric timestamps are milliseconds here (MLflow's unit) and seconds in the
  file; the "latest" value of a metric is the one at the highest step, then
  the latest timestamp, as MLflow defines it;
* deleting a run through this API is MLflow's soft delete (restorable), kept
  in the hidden tag ``synadb.lifecycle_stage``;
* registered models are :class:`~synadb.registry.ModelRegistry` models in the
  same file; stage ``None`` is our Development.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..tracking import RunStatus
from .mlflow_client import STATE, MlflowClient, get_tracking_uri, set_tracking_uri
from .mlflow_entities import (Experiment, FileInfo, Metric, ModelVersion, Param,
                              RegisteredModel, Run, RunData, RunInfo, RunTag)
from .mlflow_experiments import catalog
from .mlflow_mapping import artifact_uri_for, current_user
from .mlflow_mapping import DEFAULT_EXPERIMENT, DEFAULT_EXPERIMENT_ID, parse_tracking_uri
from .mlflow_mapping import PARENT_TAG, MlflowException, ViewType, bad_parameter, not_found

__all__ = [
    "set_tracking_uri", "get_tracking_uri", "set_experiment", "create_experiment",
    "get_experiment", "get_experiment_by_name", "search_experiments", "start_run", "end_run",
    "active_run", "last_active_run", "get_run", "log_param", "log_params", "log_metric",
    "log_metrics", "set_tag", "set_tags", "delete_tag", "log_dict", "log_text", "log_artifact",
    "log_artifacts", "log_figure", "log_image", "get_artifact_uri", "search_runs",
    "MlflowClient", "MlflowException", "ActiveRun", "Run", "RunInfo", "RunData", "Metric",
    "Param", "RunTag", "Experiment", "FileInfo", "RegisteredModel", "ModelVersion",
    "ViewType", "RunStatus", "parse_tracking_uri", "experiment_id_for",
]

_STATE = STATE  # the fluent state (tests reach in)


def experiment_id_for(name: str, tracking_uri: str | os.PathLike[str] | None = None) -> str:
    """The MLflow experiment id of experiment ``name`` in the file at
    ``tracking_uri`` (the current tracking URI by default): "0" for Default,
    else the number MLflow gave it (see :mod:`.mlflow_experiments`)."""
    if name == DEFAULT_EXPERIMENT:
        return DEFAULT_EXPERIMENT_ID
    path = parse_tracking_uri(tracking_uri) if tracking_uri is not None else STATE.path()
    eid = catalog(STATE.tracker(path)).id_of(name)
    if eid is None:
        raise not_found(f"no experiment named {name!r} in {path!r}")
    return eid
class ActiveRun(Run):
    """What ``start_run`` returns: a Run that ends itself on ``with`` exit
    (FINISHED, or FAILED on an exception, KILLED on Ctrl-C)."""

    __slots__ = ()

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        stack = _stack()
        if self.info.run_id in stack:
            # Ending this run ends the nested runs still open under it too.
            while stack and stack[-1] != self.info.run_id:
                end_run(status)
            end_run(status)
        return False
def _stack() -> list[str]:
    stack = getattr(STATE.local, "stack", None)
    if stack is None:
        stack = STATE.local.stack = []
    return stack


def _client() -> MlflowClient:
    return MlflowClient()

def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None
                   ) -> Experiment:
    """Make an experiment active (creating it by name if needed) and return it."""
    client = _client()
    if experiment_name is None and experiment_id is None:
        raise bad_parameter("set_experiment needs experiment_name or experiment_id")
    if experiment_name is None:
        experiment_name = client._exp_name(experiment_id)  # type: ignore[arg-type]
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        client.create_experiment(experiment_name)
        exp = client.get_experiment_by_name(experiment_name)
    elif exp.lifecycle_stage == "deleted":
        raise bad_parameter(f"Cannot set a deleted experiment {experiment_name!r} as the active "
                   "experiment. You can restore the experiment, or permanently delete the "
                   "experiment to create a new one.")
    STATE.experiment = experiment_name
    return exp  # type: ignore[return-value]


def create_experiment(name: str, artifact_location: str | None = None,
                      tags: Mapping[str, Any] | None = None) -> str:
    return _client().create_experiment(name, artifact_location, tags)


def get_experiment(experiment_id: str) -> Experiment:
    return _client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return _client().get_experiment_by_name(name)


def search_experiments(view_type: int = ViewType.ACTIVE_ONLY, max_results: int | None = None,
                       filter_string: str | None = None,
                       order_by: Sequence[str] | None = None) -> list[Experiment]:
    return _client().search_experiments(view_type, max_results, filter_string, order_by)


def _active_experiment() -> str:
    env = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    return STATE.experiment or env or DEFAULT_EXPERIMENT


def start_run(run_id: str | None = None, experiment_id: str | None = None,
              run_name: str | None = None, nested: bool = False,
              parent_run_id: str | None = None, tags: Mapping[str, Any] | None = None,
              description: str | None = None, log_system_metrics: bool | None = None
              ) -> ActiveRun:
    """Start (or with ``run_id``, resume) a run and make it active.

    Use it as ``with mlflow.start_run(): ...``.  Starting a run while another
    is active needs ``nested=True``; the new run's parent is the active one.
    """
    client = _client()
    stack = _stack()
    if stack and not nested:
        raise MlflowException(
            f"Run with UUID {stack[-1]} is already active. To start a new run, first end the "
            "current run with mlflow.end_run(). To start a nested run, call start_run with "
            "nested=True")
    parent = parent_run_id or (stack[-1] if stack and nested else None)
    if run_id is not None:
        run = client.get_run(run_id)
        if run.info.status != "RUNNING":
            client.tracker.end_run(run_id, RunStatus.RUNNING)
    else:
        if experiment_id is not None:
            exp_name = client._exp_name(experiment_id)
        else:
            exp_name = _active_experiment()
            if client.catalog.id_of(exp_name) is None:
                client.create_experiment(exp_name)
        all_tags = {"mlflow.user": current_user(), "mlflow.source.name": os.path.basename(
            sys.argv[0]) if sys.argv and sys.argv[0] else "", "mlflow.source.type": "LOCAL"}
        all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
        if description:
            all_tags["mlflow.note.content"] = description
        if parent:
            all_tags[PARENT_TAG] = parent
        run = client.create_run(client.catalog.id_of(exp_name), tags=all_tags,
                                run_name=run_name)
        run_id = run.info.run_id
    stack.append(run_id)
    return ActiveRun(run.info, run.data)


def end_run(status: str = "FINISHED") -> None:
    """End the active run (the innermost one when runs are nested)."""
    stack = _stack()
    if not stack:
        return
    # Terminate first: a bad status raises and leaves the run active, as in
    # MLflow, instead of dropping it from the stack still RUNNING.
    _client().set_terminated(stack[-1], status)
    ended = stack.pop()
    STATE.last_run_id = ended  # MLflow's last_active_run: the run that ended last
    real = sys.modules.get("mlflow")
    if real is not None and ended in STATE.bridged:
        # Real mlflow was lent this run (see __getattr__): end it there too.
        STATE.bridged.discard(ended)
        active = real.active_run()
        if active is not None and active.info.run_id == ended:
            real.end_run(status)


@atexit.register
def _end_runs_at_exit() -> None:
    # MLflow ends what is still running when the script exits; so do we,
    # then fsync and close the files.
    try:
        while _stack():
            end_run()
    finally:
        STATE.close()


def active_run() -> ActiveRun | None:
    stack = _stack()
    if not stack:
        return None
    run = _client().get_run(stack[-1])
    return ActiveRun(run.info, run.data)


def last_active_run() -> Run | None:
    rid = _stack()[-1] if _stack() else STATE.last_run_id
    return None if rid is None else _client().get_run(rid)


def get_run(run_id: str) -> Run:
    return _client().get_run(run_id)


def _run_id(run_id: str | None = None) -> str:
    if run_id:
        return run_id
    stack = _stack()
    if stack:
        return stack[-1]
    return start_run().info.run_id  # MLflow starts a run on the first log call


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    return _client().log_param(_run_id(), key, value)


def log_params(params: Mapping[str, Any], synchronous: bool | None = None,
               run_id: str | None = None) -> None:
    _client().log_batch(_run_id(run_id), params=[Param(k, v) for k, v in params.items()])


def log_metric(key: str, value: float, step: int | None = None,
               synchronous: bool | None = None, timestamp: int | None = None,
               run_id: str | None = None, **kwargs: Any) -> None:
    """Log one value; ``step`` defaults to 0 and ``timestamp`` (ms) to now, as in MLflow."""
    _client().log_metric(_run_id(run_id), key, value, timestamp, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None,
                synchronous: bool | None = None, run_id: str | None = None,
                timestamp: int | None = None, **kwargs: Any) -> None:
    rid = _run_id(run_id)
    ts = timestamp if timestamp is not None else int(time.time() * 1000)
    _client().log_batch(rid, metrics=[Metric(k, v, ts, step or 0) for k, v in metrics.items()])


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    _client().set_tag(_run_id(), key, value)


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    _client().log_batch(_run_id(), tags=[RunTag(k, v) for k, v in tags.items()])


def delete_tag(key: str) -> None:
    _client().delete_tag(_run_id(), key)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str, run_id: str | None = None
             ) -> None:
    _client().log_dict(_run_id(run_id), dictionary, artifact_file)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    _client().log_text(_run_id(run_id), text, artifact_file)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None,
                 run_id: str | None = None) -> None:
    _client().log_artifact(_run_id(run_id), local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None,
                  run_id: str | None = None) -> None:
    _client().log_artifacts(_run_id(run_id), local_dir, artifact_path)


def log_figure(figure: Any, artifact_file: str, *, save_kwargs: Mapping[str, Any] | None = None
               ) -> None:
    _client().log_figure(_run_id(), figure, artifact_file)


def log_image(image: Any, artifact_file: str | None = None, key: str | None = None,
              step: int | None = None, timestamp: int | None = None,
              synchronous: bool | None = None) -> None:
    _client().log_image(_run_id(), image, artifact_file, key, step)


def delete_run(run_id: str) -> None:
    """Mark a run deleted (``restore_run`` brings it back), as MLflow does."""
    _client().delete_run(run_id)


def register_model(model_uri: str, name: str, tags: Mapping[str, Any] | None = None,
                   await_registration_for: int | None = None) -> ModelVersion:
    """Register ``model_uri`` (``runs:/<run id>/<path>`` or a local file) as
    a new version of ``name``, creating the registered model if needed."""
    return _client().create_model_version(name, model_uri, tags=tags)


# What real mlflow offers and this shim does not (flavors, models, data,
# artifacts, tracing): served by real mlflow on the same file when it is
# installed, else a MissingDependency naming the extra.
_DELEGATED = frozenset({
    "sklearn", "pyfunc", "pytorch", "tensorflow", "keras", "transformers", "langchain",
    "llama_index", "openai", "xgboost", "lightgbm", "catboost", "onnx", "statsmodels",
    "spark", "sentence_transformers", "models", "data", "artifacts", "tracing", "genai",
    "evaluate", "trace", "start_span", "get_trace", "search_traces", "log_input",
    "log_inputs", "log_table", "log_model", "load_table", "autolog", "set_registry_uri",
    "get_registry_uri", "set_active_model", "get_active_model_id", "last_logged_model",
    "get_logged_model", "search_logged_models", "create_external_model", "environment_variables",
    "entities", "exceptions", "tracking", "store", "utils", "MlflowClient"})


def __getattr__(name: str) -> Any:
    if name not in _DELEGATED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import mlflow as real
    except ImportError:
        from ..errors import MissingDependency

        raise MissingDependency("mlflow", "mlflow",
                                f"mlflow.{name} on a synadb file (the shim delegates it to "
                                "real mlflow)") from None
    _bridge(real)
    return getattr(real, name)


def _bridge(real: Any) -> None:
    """Point real mlflow at this shim's file, experiment and active run, so a
    flavor's ``log_model`` lands in the run the script started here."""
    uri = f"synadb://{Path(STATE.path()).as_posix()}"
    if real.get_tracking_uri() != uri:
        real.set_tracking_uri(uri)
    stack = _stack()
    if not stack:
        return
    active = real.active_run()
    if active is not None and active.info.run_id == stack[-1]:
        return
    if active is not None:
        real.end_run()
    real.start_run(run_id=stack[-1])
    STATE.bridged.add(stack[-1])


def get_artifact_uri(artifact_path: str | None = None) -> str:
    uri = artifact_uri_for(STATE.path(), _run_id())
    return f"{uri}/{artifact_path.strip('/')}" if artifact_path else uri


def search_runs(experiment_ids: Sequence[str] | None = None, filter_string: str = "",
                run_view_type: int = ViewType.ACTIVE_ONLY, max_results: int = 100000,
                order_by: Sequence[str] | None = None, output_format: str = "pandas",
                search_all_experiments: bool = False,
                experiment_names: Sequence[str] | None = None) -> Any:
    """Runs matching an MLflow filter string, as a pandas DataFrame with
    MLflow's columns (``metrics.<name>``, ``params.<name>``, ``tags.<name>``),
    or as a list of :class:`Run` entities with ``output_format="list"``.

    Without ``experiment_ids`` or ``experiment_names`` the active experiment
    is searched (every experiment with ``search_all_experiments=True``).

    Raises:
        MissingDependency: ``output_format="pandas"`` (the default, as in
            MLflow) and pandas is not installed; ``pip install 'synadb[arrow]'``
            or pass ``output_format="list"``.
    """
    # Refuse an unusable format before searching: a list handed back where
    # a DataFrame was asked for fails later, at df["metrics.loss"], far from
    # the cause (issue 15).
    _check_output_format(output_format)
    client = _client()
    if experiment_names:
        by_name = client.catalog.by_name()
        ids = [by_name[n] for n in experiment_names if n in by_name]
        if not ids:
            return _output([], output_format)
    elif experiment_ids:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    elif search_all_experiments:
        ids = None
    else:
        name = _active_experiment()
        if name not in client.tracker.list_experiments():
            return _output([], output_format)
        ids = [client.catalog.id_of(name)]
    runs = client.search_runs(ids, filter_string, run_view_type, max_results, order_by)
    return _output(runs, output_format)


def _check_output_format(output_format: str) -> None:
    if output_format == "list":
        return
    if output_format != "pandas":
        raise bad_parameter(f"Unsupported output format: {output_format}. Supported string values "
                   "are 'pandas' or 'list'")
    try:
        import pandas  # noqa: F401
    except ImportError as e:
        from ..errors import MissingDependency

        raise MissingDependency("pandas", "arrow",
                                "search_runs(output_format='pandas'); or pass "
                                "output_format='list' for Run entities") from e


def _output(runs: list[Run], output_format: str) -> Any:
    runs = list(runs)
    _check_output_format(output_format)
    if output_format == "list":
        return runs
    import pandas as pd

    info: dict[str, list[Any]] = {"run_id": [], "experiment_id": [], "status": [],
                                  "artifact_uri": [], "start_time": [], "end_time": []}
    cols: dict[str, list[Any]] = {}
    n = len(runs)
    for i, run in enumerate(runs):
        info["run_id"].append(run.info.run_id)
        info["experiment_id"].append(run.info.experiment_id)
        info["status"].append(run.info.status)
        info["artifact_uri"].append(run.info.artifact_uri)
        info["start_time"].append(pd.to_datetime(run.info.start_time, unit="ms", utc=True))
        info["end_time"].append(pd.to_datetime(run.info.end_time, unit="ms", utc=True))
        for prefix, values, null in (("metrics.", run.data.metrics, np.nan),
                                     ("params.", run.data.params, None),
                                     ("tags.", run.data.tags, None)):
            for k, v in values.items():
                col = cols.get(prefix + k)
                if col is None:
                    col = cols[prefix + k] = [null] * n
                col[i] = v
    data: dict[str, Any] = dict(info)
    for prefix in ("metrics.", "params.", "tags."):
        data.update({k: v for k, v in cols.items() if k.startswith(prefix)})
    return pd.DataFrame(data)
