"""The ``synadb://`` MLflow plugin: MLflow's tracking store, artifact
repository and model registry store over one synadb file.

Install with ``pip install 'synadb[mlflow]'``; the package registers these
classes under MLflow's entry points (``mlflow.tracking_store``,
``mlflow.artifact_repository`` and ``mlflow.model_registry_store``) for the
scheme ``synadb``, so with the real mlflow::

    import mlflow
    mlflow.set_tracking_uri("synadb:///abs/path/experiments.db")
    with mlflow.start_run():
        mlflow.log_metric("loss", 0.5)        # lands in experiments.db

and MLflow's own UI serves the file::

    mlflow server --backend-store-uri synadb:///abs/path/experiments.db

The runs are plain synadb runs (``ExperimentTracker(path)`` sees them, and
runs logged through it show in the UI).  The mapping between the two models
is the shim's (:mod:`synadb.integrations.mlflow`); this module only converts
to and from mlflow's entity classes and lets mlflow's own ``SearchUtils``
evaluate search filters, so the server's search behaves exactly as MLflow's.

Not supported: renaming experiments, traces, logged models (MLflow 3's
``create_logged_model``), datasets and registered model aliases; those
raise ``MlflowException`` (or MLflow's own "not implemented").
"""

from __future__ import annotations

import os
import posixpath
import threading
from pathlib import Path
from typing import Any

from ..errors import MissingDependency
from . import mlflow as shim
from .mlflow_common import code as _code, wrap as _wrap
from .mlflow_docs import Docs
from .mlflow_models import LoggedModelMixin
from .mlflow_traces import TraceStoreMixin

try:
    from mlflow.entities import Experiment, ExperimentTag, FileInfo, Metric, Param, Run
    from mlflow.entities import RunData, RunInfo, RunStatus, RunTag, ViewType
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repo import ArtifactRepository
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.store.tracking.abstract_store import AbstractStore
    from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils
except ImportError as e:  # pragma: no cover - exercised in test_missing_extras style
    raise MissingDependency("mlflow", "mlflow", "the synadb:// MLflow plugin") from e

__all__ = ["SynaTrackingStore", "SynaArtifactRepository", "SynaModelRegistryStore"]

_LOCK = threading.Lock()


def _client(store_uri: str) -> shim.MlflowClient:
    return shim.MlflowClient(store_uri)


def _to_run(r: shim.Run, latest: dict[str, tuple[float, int, int]] | None = None) -> Run:
    i = r.info
    info = RunInfo(run_id=i.run_id, experiment_id=i.experiment_id, user_id=i.user_id or "",
                   status=i.status, start_time=i.start_time, end_time=i.end_time,
                   lifecycle_stage=i.lifecycle_stage, artifact_uri=i.artifact_uri,
                   run_name=i.run_name)
    metrics = [Metric(k, v[0], v[1], v[2]) for k, v in (latest or {}).items()]
    data = RunData(metrics=metrics, params=[Param(k, v) for k, v in r.data.params.items()],
                   tags=[RunTag(k, v) for k, v in r.data.tags.items()])
    return Run(info, data)


def _to_experiment(e: shim.Experiment) -> Experiment:
    return Experiment(e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage,
                      [ExperimentTag(k, v) for k, v in e.tags.items()], e.creation_time,
                      e.last_update_time)


class SynaTrackingStore(TraceStoreMixin, LoggedModelMixin, AbstractStore):
    """MLflow's tracking store over ``ExperimentTracker``: ``synadb:///abs/path.db``."""

    def __init__(self, store_uri: str | None = None, artifact_uri: str | None = None) -> None:
        super().__init__()
        self.store_uri = store_uri or shim.get_tracking_uri()
        self.path = shim.parse_tracking_uri(self.store_uri)
        self.client = _client(self.path)
        self.docs = Docs(self.tracker.db)

    @property
    def tracker(self) -> Any:
        return self.client.tracker

    def _run(self, run_id: str) -> Run:
        r = _wrap(self.client.get_run, run_id)
        return _to_run(r, shim.latest_metrics(self.tracker, self.tracker.get_run(run_id)))

    # -- experiments -----------------------------------------------------
    def search_experiments(self, view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                           filter_string=None, order_by=None, page_token=None):
        exps = [_to_experiment(e) for e in
                self.client.search_experiments(view_type=ViewType.ALL)
                if shim._view_ok(e.lifecycle_stage, view_type)]
        exps = SearchExperimentsUtils.filter(exps, filter_string)
        exps = SearchExperimentsUtils.sort(exps, order_by or ["last_update_time DESC",
                                                              "experiment_id"])
        page, token = SearchUtils.paginate(exps, page_token, max_results)
        return PagedList(page, token)

    def create_experiment(self, name, artifact_location=None, tags=None):
        tag_map = {t.key: t.value for t in (tags or [])}
        return _wrap(self.client.create_experiment, name, artifact_location, tag_map)

    def get_experiment(self, experiment_id):
        if str(experiment_id) == shim.DEFAULT_EXPERIMENT_ID and \
                shim.DEFAULT_EXPERIMENT not in self.tracker.list_experiments():
            # MLflow clients assume experiment 0 exists in every store.
            self.tracker.create_experiment(shim.DEFAULT_EXPERIMENT)
        return _to_experiment(_wrap(self.client.get_experiment, experiment_id))

    def get_experiment_by_name(self, experiment_name):
        if experiment_name == shim.DEFAULT_EXPERIMENT:
            return self.get_experiment(shim.DEFAULT_EXPERIMENT_ID)
        e = self.client.get_experiment_by_name(experiment_name)
        return None if e is None else _to_experiment(e)

    def delete_experiment(self, experiment_id):
        _wrap(self.client.delete_experiment, experiment_id)

    def restore_experiment(self, experiment_id):
        _wrap(self.client.restore_experiment, experiment_id)

    def rename_experiment(self, experiment_id, new_name):
        raise MlflowException("synadb experiment ids derive from their names; renaming an "
                              "experiment is not supported", _code("INVALID_PARAMETER_VALUE"))

    def set_experiment_tag(self, experiment_id, tag):
        _wrap(self.client.set_experiment_tag, experiment_id, tag.key, tag.value)

    # -- runs ------------------------------------------------------------
    def get_run(self, run_id):
        return self._run(run_id)

    def create_run(self, experiment_id, user_id, start_time, tags, run_name):
        tag_map = {t.key: t.value for t in (tags or [])}
        if user_id:
            tag_map.setdefault("mlflow.user", user_id)
        if experiment_id is not None:
            self.get_experiment(experiment_id)  # creates Default on first use
        r = _wrap(self.client.create_run, experiment_id, start_time, tag_map, run_name)
        return self._run(r.info.run_id)

    def update_run_info(self, run_id, run_status, end_time, run_name):
        if run_name:
            _wrap(self.tracker.rename_run, run_id, run_name)
        if run_status is not None:
            status = RunStatus.to_string(run_status) if isinstance(run_status, int) \
                else str(run_status)
            st = shim.synadb_status(status)
            end_s = None if end_time is None else end_time / 1000
            _wrap(self.tracker.end_run, run_id, st, end_time=end_s)
        return self._run(run_id).info

    def delete_run(self, run_id):
        _wrap(self.client.delete_run, run_id)

    def restore_run(self, run_id):
        _wrap(self.client.restore_run, run_id)

    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):
        metrics = [Metric(m.key, m.value, m.timestamp, m.step)
                   for m in _wrap(self.client.get_metric_history, run_id, metric_key)]
        if max_results is not None or page_token is not None:
            page, token = SearchUtils.paginate(metrics, page_token, max_results or len(metrics))
            return PagedList(page, token)
        return PagedList(metrics, None)

    def _search_runs(self, experiment_ids, filter_string, run_view_type, max_results,
                     order_by, page_token):
        runs = []
        known = self.client._names_by_id()
        tracker = self.tracker
        for eid in experiment_ids or []:
            name = known.get(str(eid))
            if name is None:
                continue
            for run in tracker.list_runs(name):
                if not shim._view_ok(shim.lifecycle_stage(run), run_view_type):
                    continue
                r = shim.to_mlflow_run(tracker, run, self.path)
                runs.append(_to_run(r, shim.latest_metrics(tracker, run)))
        runs = SearchUtils.filter(runs, filter_string)
        runs = SearchUtils.sort(runs, order_by)
        return SearchUtils.paginate(runs, page_token, max_results)

    def log_batch(self, run_id, metrics, params, tags):
        _wrap(self.client.log_batch, run_id, metrics=metrics, params=params, tags=tags)

    def log_metric(self, run_id, metric):
        self.log_batch(run_id, metrics=[metric], params=[], tags=[])

    def log_param(self, run_id, param):
        self.log_batch(run_id, metrics=[], params=[param], tags=[])

    def set_tag(self, run_id, tag):
        self.log_batch(run_id, metrics=[], params=[], tags=[tag])

    def delete_tag(self, run_id, key):
        _wrap(self.client.delete_tag, run_id, key)

    def log_inputs(self, run_id, datasets=None, models=None):
        # Dataset inputs have no place in a synadb run yet: accepted and not
        # kept, so mlflow.log_input in a script does not fail.
        self._run(run_id)

    def search_logged_models(self, experiment_ids, filter_string=None, datasets=None,
                             max_results=None, order_by=None, page_token=None):
        # MLflow 3 looks for logged models when listing run artifacts; a
        # synadb file holds none (models go to the registry).
        return PagedList([], None)

    def link_traces_to_run(self, trace_ids, run_id):
        raise MlflowException("traces are not stored in synadb files",
                              _code("INVALID_PARAMETER_VALUE"))


class SynaArtifactRepository(ArtifactRepository):
    """Run artifacts inside the synadb file.

    ``artifact_uri`` is ``synadb:///abs/file.db/runs/<run id>/artifacts[/sub]``
    (what the tracking store hands out): the file is the longest prefix of
    the path that is an existing file.
    """

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None,
                 registry_uri: str | None = None) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        path = shim.parse_tracking_uri(artifact_uri)
        parts = Path(path).parts
        for i in range(len(parts), 0, -1):
            candidate = os.path.join(*parts[:i])
            if os.path.isfile(candidate):
                rest = parts[i:]
                break
        else:
            raise MlflowException(f"no synadb file in artifact URI {artifact_uri!r}",
                                  _code("INVALID_PARAMETER_VALUE"))
        if len(rest) < 3 or rest[0] != "runs" or rest[2] != "artifacts":
            raise MlflowException(f"artifact URI {artifact_uri!r} does not name a run's "
                                  "artifacts (.../file.db/runs/<id>/artifacts)",
                                  _code("INVALID_PARAMETER_VALUE"))
        self.path = candidate
        self.run_id = rest[1]
        self.base = "/".join(rest[3:])
        self.client = _client(candidate)

    def _name(self, rel: str | None) -> str:
        return "/".join(p for p in (self.base, (rel or "").strip("/")) if p)

    def log_artifact(self, local_file, artifact_path=None):
        name = self._name(posixpath.join(artifact_path or "", os.path.basename(local_file)))
        _wrap(self.client.tracker.log_artifact, self.run_id, name, Path(local_file))

    def log_artifacts(self, local_dir, artifact_path=None):
        _wrap(self.client.log_artifacts, self.run_id, local_dir,
              self._name(artifact_path) or None)

    def list_artifacts(self, path=None):
        full = self._name(path)
        infos = shim.list_artifact_infos(self.client.tracker, self.run_id, full or None)
        cut = len(self.base) + 1 if self.base else 0
        return [FileInfo(f.path[cut:], f.is_dir, f.file_size) for f in infos]

    def _download_file(self, remote_file_path, local_path):
        data = _wrap(self.client.tracker.get_artifact, self.run_id, self._name(remote_file_path))
        with open(local_path, "wb") as f:
            f.write(data)

    def delete_artifacts(self, artifact_path=None):
        full = self._name(artifact_path)
        tracker = self.client.tracker
        for name in tracker.list_artifacts(self.run_id):
            if not full or name == full or name.startswith(full + "/"):
                tracker.delete_artifact(self.run_id, name)


from .mlflow_registry import SynaModelRegistryStore  # noqa: E402  (the entry point's home)
