"""Copy a synadb file's experiments, runs and registered models to an MLflow
tracking server (``synadb mlflow-push FILE --to http://host:port``).

Uses the real mlflow's ``MlflowClient`` (``pip install 'synadb[mlflow]'``),
imported only when a push starts.

Pushing is idempotent: every pushed run carries the tag ``synadb.run_id``
(and every model version ``synadb.version``), and a push skips what the
server already has.  A run is first created with ``synadb.push_state =
partial`` and marked ``complete`` only after its params, metrics, artifacts
and status are all on the server; a later push deletes a run left partial
by an interrupted push and sends it again, so nothing is duplicated and
nothing is half there.  A run that was still running when pushed is not
sent again later (push it once it has ended).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import MissingDependency, SynaError
from ..registry import ModelRegistry
from ..tracking import ExperimentTracker
from . import mlflow as shim

__all__ = ["push", "PushError"]

RUN_ID_TAG = "synadb.run_id"
STATE_TAG = "synadb.push_state"
VERSION_TAG = "synadb.version"
MODELS_EXPERIMENT = "synadb-registered-models"
# MLflow's log_batch limits per request.
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100


class PushError(SynaError):
    "The MLflow server refused or failed a request during a push."


def _mlflow() -> Any:
    try:
        import mlflow.tracking  # noqa: F401
        from mlflow import entities
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise MissingDependency("mlflow", "mlflow", "synadb mlflow-push") from e
    return MlflowClient, entities, MlflowException


def push(path: str | os.PathLike[str], to: str, *, experiments: Sequence[str] | None = None,
         models: bool = True, log: Callable[[str], None] | None = None) -> dict[str, int]:
    """Copy runs (params, metrics with steps and timestamps, tags, artifacts)
    and registered models from the synadb file ``path`` to the MLflow
    tracking server at ``to``.

    Args:
        path: the synadb file (opened read-only).
        to: the server's tracking URI, e.g. ``http://127.0.0.1:5000``.
        experiments: push only these experiments (default: all).
        models: also push the file's ModelRegistry models.
        log: called with one line per pushed item.

    Returns:
        Counts: ``experiments``, ``runs``, ``runs_skipped``, ``metrics``
        (values), ``artifacts``, ``model_versions``, ``model_versions_skipped``.

    Raises:
        MissingDependency: mlflow is not installed.
        PushError: the server refused a request.
    """
    MlflowClient, _entities, MlflowException = _mlflow()
    try:  # a URI mlflow refuses (no such scheme, a file store) fails here
        client = MlflowClient(tracking_uri=to, registry_uri=to)
    except MlflowException as e:
        raise PushError(f"MLflow server {to}: {e.message}") from e
    counts = dict(experiments=0, runs=0, runs_skipped=0, metrics=0, artifacts=0,
                  model_versions=0, model_versions_skipped=0)
    say = log or (lambda _line: None)
    # MlflowClient prints a "View run" link per run to stdout; that would
    # corrupt `--json` output and is noise for a bulk copy.
    quiet = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    before = os.environ.get(quiet)
    os.environ[quiet] = "true"
    try:
        with ExperimentTracker(path, read_only=True) as tracker:
            remote_ids = _push_runs(client, tracker, experiments, counts, say)
        if models:
            with ModelRegistry(path, read_only=True, progress=False) as registry:
                _push_models(client, registry, remote_ids, counts, say)
    except MlflowException as e:
        raise PushError(f"MLflow server {to}: {e.message}") from e
    finally:
        if before is None:
            os.environ.pop(quiet, None)
        else:
            os.environ[quiet] = before
    return counts


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], "", ViewType.ACTIVE_ONLY, 1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _push_runs(client: Any, tracker: ExperimentTracker, only: Sequence[str] | None,
               counts: dict[str, int], say: Callable[[str], None]) -> dict[str, str]:
    """Returns local run id -> remote run id for every run on the server."""
    remote_ids: dict[str, str] = {}
    names = [n for n in tracker.list_experiments() if only is None or n in only]
    for name in names:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            info = tracker.experiment_info(name)
            eid = client.create_experiment(name, tags=dict(info.get("tags") or {}))
            counts["experiments"] += 1
            say(f"experiment {name}: created")
        else:
            eid = exp.experiment_id
        have: dict[str, Any] = {}
        for r in _all_runs(client, eid):
            local = r.data.tags.get(RUN_ID_TAG)
            if local is None:
                continue
            if r.data.tags.get(STATE_TAG) == "complete":
                have[local] = r.info.run_id
            else:  # left half-pushed by an interrupted push: send it again
                client.delete_run(r.info.run_id)
        # Runs deleted through MLflow (a soft delete, kept as a tag) stay behind.
        runs = [r for r in tracker.list_runs(name)
                if r.tag_values.get(shim.LIFECYCLE_TAG) != "deleted"]
        # Parents first, so a child's mlflow.parentRunId names the remote parent.
        runs.sort(key=lambda r: (r.parent_id is not None, r.start_time))
        for run in runs:
            if run.id in have:
                remote_ids[run.id] = have[run.id]
                counts["runs_skipped"] += 1
                continue
            remote_ids[run.id] = _push_run(client, tracker, eid, run, remote_ids, counts)
            counts["runs"] += 1
            say(f"run {run.id} ({run.name}) -> {remote_ids[run.id]}")
    return remote_ids


def _push_run(client: Any, tracker: ExperimentTracker, eid: str, run: Any,
              remote_ids: dict[str, str], counts: dict[str, int]) -> str:
    from mlflow.entities import Metric, Param, RunTag

    tags = shim.mlflow_tags(run)
    parent = tags.pop(shim.PARENT_TAG, None)
    if parent is not None and parent in remote_ids:
        tags[shim.PARENT_TAG] = remote_ids[parent]
    tags[RUN_ID_TAG] = run.id
    tags[STATE_TAG] = "partial"
    remote = client.create_run(eid, start_time=shim.ms(run.start_time), tags=tags,
                               run_name=run.name).info.run_id
    params = [Param(k, v) for k, v in run.params.items()]
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(remote, params=params[i:i + MAX_PARAMS])
    for key in tracker.list_metrics(run.id):
        h = tracker.get_metric_history(run.id, key)
        values, steps, stamps = (h["value"].tolist(), h["step"].tolist(),
                                 h["timestamp"].tolist())
        batch = [Metric(key, v, int(round(t * 1000)), s)
                 for v, s, t in zip(values, steps, stamps)]
        for i in range(0, len(batch), MAX_METRICS):
            client.log_batch(remote, metrics=batch[i:i + MAX_METRICS])
        counts["metrics"] += len(batch)
    names = tracker.list_artifacts(run.id)
    if names:
        with tempfile.TemporaryDirectory(prefix="synadb-push-") as tmp:
            for name in names:
                local = os.path.join(tmp, *name.split("/"))
                os.makedirs(os.path.dirname(local), exist_ok=True)
                with open(local, "wb") as f:
                    f.write(tracker.get_artifact(run.id, name))
                client.log_artifact(remote, local, posixpath.dirname(name) or None)
                counts["artifacts"] += 1
    if run.status != "Running":
        client.set_terminated(remote, shim.mlflow_status(run.status), shim.ms(run.end_time))
    # Last: only now is the run complete on the server (see the module docstring).
    client.log_batch(remote, tags=[RunTag(STATE_TAG, "complete")])
    return str(remote)


def _push_models(client: Any, registry: ModelRegistry, remote_ids: dict[str, str],
                 counts: dict[str, int], say: Callable[[str], None]) -> None:
    from mlflow.exceptions import MlflowException

    names = registry.list_models()
    if not names:
        return
    holder_eid = None
    for name in names:
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name)
        pushed = {v.tags.get(VERSION_TAG) for v in
                  client.search_model_versions(f"name = '{_quote(name)}'")}
        for v in registry.list_versions(name):
            if str(v.version) in pushed:
                counts["model_versions_skipped"] += 1
                continue
            # The bytes go to the server as an artifact of the run that
            # trained the version (if it was pushed), else of a holder run:
            # MLflow wants a source the version's run_id contains.
            target = remote_ids.get((v.metadata or {}).get("run_id") or "")
            if target is None:
                if holder_eid is None:
                    exp = client.get_experiment_by_name(MODELS_EXPERIMENT)
                    holder_eid = exp.experiment_id if exp is not None else \
                        client.create_experiment(MODELS_EXPERIMENT)
                target = client.create_run(holder_eid, run_name=f"{name}-v{v.version}", tags={
                    "synadb.model": name, VERSION_TAG: str(v.version)}).info.run_id
                client.set_terminated(target)
            artifact_dir = f"synadb-models/{name}/v{v.version}"
            data, _info = registry.load_model(name, version=v.version)
            with tempfile.TemporaryDirectory(prefix="synadb-push-") as tmp:
                local = os.path.join(tmp, "model.bin")
                with open(local, "wb") as f:
                    f.write(data)
                client.log_artifact(target, local, artifact_dir)
            tags = {**{k: str(val) for k, val in v.tags.items()}, VERSION_TAG: str(v.version),
                    "synadb.sha256": v.checksum}
            mv = client.create_model_version(name, f"runs:/{target}/{artifact_dir}",
                                             run_id=target, tags=tags,
                                             description=v.description or None)
            if v.stage != "Development":
                with warnings.catch_warnings():
                    # Stages are deprecated in MLflow but are what synadb has.
                    warnings.simplefilter("ignore", FutureWarning)
                    client.transition_model_version_stage(name, mv.version, v.stage,
                                                          archive_existing_versions=False)
            counts["model_versions"] += 1
            say(f"model {name} v{v.version} -> v{mv.version} ({v.stage})")


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
