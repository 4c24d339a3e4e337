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
runs logged through it show in the UI).  What synadb's tracker has no place
for (experiment ids, dataset inputs, logged models, traces) lives as JSON
documents in the same file (:mod:`.mlflow_docs`).  The store follows
MLflow's SQL store: its validation, its error codes and messages, its
metric de-duplication, and MLflow's own ``SearchUtils`` for filters, order
and pages.  The parts: this module (experiments, runs, metrics, inputs,
artifacts), :mod:`.mlflow_models` (logged models), :mod:`.mlflow_traces`
(traces) and :mod:`.mlflow_registry` (the model registry).

Artifacts live in the file (``synadb:///abs/file.db/runs/<id>/artifacts``)
unless the store is given an artifact root (``mlflow server
--default-artifact-root``, or an experiment's ``artifact_location``): then
MLflow's own repository for that URI holds them, as with any MLflow store.
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KeyNotFound, MissingDependency, SynaError
from . import mlflow_mapping as mapping
from .mlflow_client import MlflowClient, get_tracking_uri
from .mlflow_common import check_max_results, code as _code, wrap as _wrap
from .mlflow_docs import Docs
from .mlflow_experiments import DEFAULT_EXPERIMENT_ID, catalog
from .mlflow_models import LoggedModelMixin
from .mlflow_traces import TraceStoreMixin

try:
    from mlflow.entities import Dataset, DatasetInput, Experiment, ExperimentTag, FileInfo
    from mlflow.entities import InputTag, LifecycleStage, LoggedModelInput, LoggedModelOutput
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunInputs, RunOutputs
    from mlflow.entities import RunStatus, RunTag, ViewType
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repo import ArtifactRepository
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.store.tracking import SEARCH_MAX_RESULTS_DEFAULT
    from mlflow.store.tracking.abstract_store import AbstractStore
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_RUN_NAME
    from mlflow.utils.name_utils import _generate_random_name
    from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local
    from mlflow.utils.validation import (
        _validate_batch_log_data, _validate_dataset_inputs, _validate_experiment_artifact_location_length,
        _validate_experiment_name, _validate_experiment_tag, _validate_metric, _validate_param,
        _validate_param_keys_unique, _validate_run_id, _validate_tag,
    )
except ImportError as e:  # pragma: no cover - exercised in test_missing_extras style
    raise MissingDependency("mlflow", "mlflow", "the synadb:// MLflow plugin") from e

__all__ = ["SynaTrackingStore", "SynaArtifactRepository", "SynaModelRegistryStore"]

_MAX_FLOAT = 1.7976931348623157e308
# Hidden run tags: fields of an MLflow run that synadb's run has no slot for.
USER_TAG, STATUS_TAG, ARTIFACT_TAG = mapping.USER_TAG, mapping.STATUS_TAG, mapping.ARTIFACT_TAG
DELETED_TAG, NO_NAME_TAG = mapping.DELETED_TAG, mapping.NO_NAME_TAG
_INPUTS = "run_inputs"  # docs: run id -> {"datasets": [...], "models": [...]}
_OUTPUTS = "run_outputs"  # docs: run id -> [{"model_id", "step"}]
_DATASETS = "dataset"  # docs: "<experiment id>:<digest>:<name>" -> dataset fields


def _bad(message: str, error: str = "INVALID_PARAMETER_VALUE") -> MlflowException:
    return MlflowException(message, _code(error))


def _clamp(value: float) -> float:
    """A metric value as MLflow's SQL store returns it: infinities become
    the largest finite floats (JSON and the UI's GraphQL cannot carry inf)."""
    if math.isinf(value):
        return _MAX_FLOAT if value > 0 else -_MAX_FLOAT
    return value


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


class _MetricCache:
    """What a store knows of one metric's history: how many rows it has
    read, the latest value in MLflow's sense (highest step, then latest
    time, then largest value), and, once a batch needed it, the set of rows
    for de-duplication.  Extended by reading only rows logged since."""

    __slots__ = ("n", "latest", "seen")

    def __init__(self) -> None:
        self.n = 0
        self.latest: tuple[int, int, float] | None = None  # (step, ts ms, value)
        self.seen: set[tuple[int, int, Any]] | None = None

    def take(self, rows: np.ndarray) -> None:
        """Take in rows (value, step, unix time) logged after the ones seen."""
        self.n += len(rows)
        if len(rows) == 0:
            return
        if self.seen is not None:
            for value, step, ts in rows.tolist():
                row = (int(step), int(round(ts * 1000)), value)
                self.seen.add(_row_key(row))
        ms = np.round(rows[:, 2] * 1000)
        # NaN sorts last in lexsort, so a NaN value loses a tie to a number
        value = np.where(np.isnan(rows[:, 0]), -np.inf, rows[:, 0])
        i = int(np.lexsort((value, ms, rows[:, 1]))[-1])
        best = (int(rows[i, 1]), int(ms[i]), float(rows[i, 0]))
        if self.latest is None or _later(best, self.latest):
            self.latest = best


def _later(a: tuple[int, int, float], b: tuple[int, int, float]) -> bool:
    if a[:2] != b[:2]:
        return a[:2] > b[:2]
    return not math.isnan(a[2]) and (math.isnan(b[2]) or a[2] >= b[2])


def _row_key(row: tuple[int, int, float]) -> tuple[int, int, Any]:
    v = row[2]
    return (row[0], row[1], "nan" if math.isnan(v) else v)


class _SearchRow:
    """What MLflow's ``SearchUtils`` reads of a run (``info``, ``data.metrics
    / params / tags``, ``inputs``), without building the whole entity."""

    __slots__ = ("info", "data", "inputs")

    def __init__(self, info: RunInfo, metrics: dict[str, float], params: dict[str, str],
                 tags: dict[str, str]) -> None:
        self.info = info
        self.data = _SearchData(metrics, params, tags)
        self.inputs = RunInputs(dataset_inputs=[], model_inputs=[])


class _SearchData:
    __slots__ = ("metrics", "params", "tags")

    def __init__(self, metrics: dict[str, float], params: dict[str, str],
                 tags: dict[str, str]) -> None:
        self.metrics, self.params, self.tags = metrics, params, tags


class SynaTrackingStore(TraceStoreMixin, LoggedModelMixin, AbstractStore):
    """MLflow's tracking store over ``ExperimentTracker``: ``synadb:///abs/path.db``."""

    DEFAULT_EXPERIMENT_ID = DEFAULT_EXPERIMENT_ID
    ARTIFACTS_FOLDER_NAME = "artifacts"

    def __init__(self, store_uri: str | None = None, artifact_uri: str | None = None, *,
                 read_only: bool = False) -> None:
        super().__init__()
        self.store_uri = store_uri or get_tracking_uri()
        self.path = mapping.parse_tracking_uri(self.store_uri)
        self.client = MlflowClient(self.path, read_only=read_only)
        self.docs = Docs(self.tracker.db)
        self.catalog = catalog(self.tracker)
        self.artifact_root_uri = resolve_uri_if_local(artifact_uri) if artifact_uri else None
        self._metrics: dict[tuple[str, str], _MetricCache] = {}
        # What search_runs filters and sorts on, per run, until the run changes.
        self._rows: dict[str, _SearchRow] = {}
        self._rows_mark: tuple[int, int] | None = None
        self._location_prefix = mapping.experiment_location(self.path)
        if not read_only:
            self.catalog.table()  # the Default experiment exists, as in MLflow's stores

    @property
    def tracker(self) -> Any:
        return self.client.tracker

    # -- experiments -----------------------------------------------------
    def _location(self, eid: str, doc: dict[str, Any]) -> str:
        return doc.get("artifact_location") or mapping.experiment_location(self.path)

    def _to_experiment(self, eid: str, doc: dict[str, Any]) -> Experiment:
        return Experiment(eid, doc["name"], self._location(eid, doc), doc["lifecycle_stage"],
                          [ExperimentTag(k, v) for k, v in doc["tags"].items()],
                          _ms(doc["created"]), _ms(doc["updated"]))

    def _experiment_doc(self, experiment_id: Any) -> dict[str, Any]:
        eid = str(experiment_id)
        try:
            int(eid)
        except ValueError:
            raise _bad(f"Invalid experiment ID '{eid}'. Experiment ID must be a valid "
                       "integer.") from None
        doc = self.catalog.get(eid)
        if doc is None:
            raise _bad(f"No Experiment with id={eid} exists", "RESOURCE_DOES_NOT_EXIST")
        return doc

    def _check_active_experiment(self, eid: str, doc: dict[str, Any]) -> None:
        if doc["lifecycle_stage"] != LifecycleStage.ACTIVE:
            raise _bad(f"The experiment {eid} must be in the 'active' state. "
                       f"Current state is {doc['lifecycle_stage']}.")

    def search_experiments(self, view_type=ViewType.ACTIVE_ONLY,
                           max_results=SEARCH_MAX_RESULTS_DEFAULT, filter_string=None,
                           order_by=None, page_token=None):
        check_max_results(max_results)
        stages = set(LifecycleStage.view_type_to_stages(view_type))
        exps = [self._to_experiment(i, d) for i, d in self.catalog.table().items()
                if d["lifecycle_stage"] in stages]
        exps = SearchExperimentsUtils.filter(exps, filter_string)
        exps = SearchExperimentsUtils.sort(exps, order_by or ["creation_time DESC",
                                                              "experiment_id DESC"])
        page, token = SearchUtils.paginate(exps, page_token, max_results)
        return PagedList(page, token)

    def create_experiment(self, name, artifact_location=None, tags=None):
        _validate_experiment_name(name)
        if artifact_location:
            artifact_location = resolve_uri_if_local(artifact_location)
            _validate_experiment_artifact_location_length(artifact_location)
        for tag in tags or []:
            _validate_experiment_tag(tag.key, tag.value)
        try:
            eid = self.catalog.create(name, artifact_location,
                                      {t.key: t.value for t in tags or []})
        except ValueError:
            raise _bad(f"Experiment(name={name}) already exists.",
                       "RESOURCE_ALREADY_EXISTS") from None
        if not artifact_location and self.artifact_root_uri:
            self.catalog.update(eid, artifact_location=append_to_uri_path(
                self.artifact_root_uri, eid))
        return eid

    def get_experiment(self, experiment_id):
        eid = str(experiment_id)
        return self._to_experiment(eid, self._experiment_doc(eid))

    def get_experiment_by_name(self, experiment_name):
        eid = self.catalog.id_of(experiment_name)
        return None if eid is None else self.get_experiment(eid)

    def _set_runs_stage(self, eid: str, stage: str) -> None:
        name = self._experiment_doc(eid)["name"]
        for run in self.tracker.list_runs(name):
            if mapping.lifecycle_stage(run) != stage:
                self._mark(run.id, stage)

    def _mark(self, run_id: str, stage: str) -> None:
        self.tracker.set_tags(run_id, {
            mapping.LIFECYCLE_TAG: stage,
            DELETED_TAG: str(_ms(time.time())) if stage == LifecycleStage.DELETED else ""})

    def delete_experiment(self, experiment_id):
        eid = str(experiment_id)
        doc = self._experiment_doc(eid)
        if doc["lifecycle_stage"] != LifecycleStage.ACTIVE:
            raise _bad(f"No Experiment with id={eid} exists", "RESOURCE_DOES_NOT_EXIST")
        self.catalog.update(eid, lifecycle_stage=LifecycleStage.DELETED)
        self._set_runs_stage(eid, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id):
        eid = str(experiment_id)
        doc = self._experiment_doc(eid)
        if doc["lifecycle_stage"] != LifecycleStage.DELETED:
            raise _bad(f"No Experiment with id={eid} exists", "RESOURCE_DOES_NOT_EXIST")
        self.catalog.update(eid, lifecycle_stage=LifecycleStage.ACTIVE)
        self._set_runs_stage(eid, LifecycleStage.ACTIVE)

    def rename_experiment(self, experiment_id, new_name):
        _validate_experiment_name(new_name)
        eid = str(experiment_id)
        doc = self._experiment_doc(eid)
        if doc["lifecycle_stage"] != LifecycleStage.ACTIVE:
            raise _bad("Cannot rename a non-active experiment.", "INVALID_STATE")
        if doc["name"] == new_name:
            return
        if self.catalog.id_of(new_name) is not None:
            raise _bad(f"Experiment(name={new_name}) already exists.",
                       "RESOURCE_ALREADY_EXISTS")
        self.catalog.rename(eid, new_name)

    def set_experiment_tag(self, experiment_id, tag):
        _validate_experiment_tag(tag.key, tag.value)
        eid = str(experiment_id)
        self._check_active_experiment(eid, self._experiment_doc(eid))
        self.catalog.set_tag(eid, tag.key, str(tag.value))

    def delete_experiment_tag(self, experiment_id, key):
        eid = str(experiment_id)
        doc = self._experiment_doc(eid)
        self._check_active_experiment(eid, doc)
        if key not in doc["tags"]:
            raise _bad(f"No tag with name: {key} in experiment with id {eid}",
                       "RESOURCE_DOES_NOT_EXIST")
        self.catalog.set_tag(eid, key, None)

    # -- runs ------------------------------------------------------------
    def _synadb_run(self, run_id: str) -> Any:
        try:
            return self.tracker.get_run(run_id)
        except (KeyNotFound, SynaError):
            raise _bad(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST") from None

    def _active_run(self, run_id: str) -> Any:
        run = self._synadb_run(run_id)
        stage = mapping.lifecycle_stage(run)
        if stage != LifecycleStage.ACTIVE:
            raise _bad(f"The run {run_id} must be in the 'active' state. "
                       f"Current state is {stage}.")
        return run

    def _latest(self, run: Any) -> list[Metric]:
        out = []
        for key in run.metric_names:
            got = self._metric(run.id, key).latest
            if got is not None:
                out.append(Metric(key, _clamp(got[2]), got[1], got[0]))
        return out

    def _metric(self, run_id: str, key: str, dedup: bool = False) -> _MetricCache:
        """The cache of one metric, brought up to date with the file."""
        cache = self._metrics.get((run_id, key))
        if cache is None:
            cache = self._metrics[(run_id, key)] = _MetricCache()
        if dedup and cache.seen is None:
            cache.seen, cache.n, cache.latest = set(), 0, None  # re-read, keeping every row
        if cache.n == 0:  # first look: the whole history in one vectorised read
            try:
                h = self.tracker.get_metric_history(run_id, key)
            except KeyNotFound:  # a metric not logged yet
                return cache
            cache.take(np.column_stack((h["value"], h["step"], h["timestamp"])))
            return cache
        n = self.tracker.metric_count(run_id, key)
        if n < cache.n:  # the run was deleted and made again, or compacted
            cache.n, cache.latest, cache.seen = 0, None, set() if cache.seen is not None else None
        if n > cache.n:
            cache.take(self.tracker.metric_rows(run_id, key, cache.n, n))
        return cache

    def _info_and_tags(self, run: Any, ids: dict[str, str] | None
                       ) -> tuple[RunInfo, dict[str, str]]:
        tags = mapping.mlflow_tags(run)
        hidden = run.tag_values
        if NO_NAME_TAG in hidden:
            tags.pop(MLFLOW_RUN_NAME, None)
        eid = (ids if ids is not None else self.catalog.by_name()).get(run.experiment, "")
        status = hidden.get(STATUS_TAG) or mapping.mlflow_status(run.status)
        info = RunInfo(experiment_id=eid, user_id=hidden.get(USER_TAG, ""),
                       status=status, start_time=_ms(run.start_time),
                       end_time=_ms(run.end_time),
                       lifecycle_stage=hidden.get(mapping.LIFECYCLE_TAG, LifecycleStage.ACTIVE),
                       artifact_uri=hidden.get(ARTIFACT_TAG)
                       or f"{self._location_prefix}/runs/{run.id}/artifacts",
                       run_id=run.id, run_name=run.name)
        return info, tags

    def _to_run(self, run: Any, ids: dict[str, str] | None = None) -> Run:
        info, tags = self._info_and_tags(run, ids)
        data = RunData(metrics=self._latest(run),
                       params=[Param(k, v) for k, v in run.params.items()],
                       tags=[RunTag(k, v) for k, v in tags.items()])
        return Run(info, data, self._inputs(run.id), self._outputs(run.id))

    def _search_row(self, run: Any, ids: dict[str, str]) -> "_SearchRow":
        info, tags = self._info_and_tags(run, ids)
        metrics = {m.key: m.value for m in self._latest(run)}
        return _SearchRow(info, metrics, dict(run.params), tags)

    def _inputs(self, run_id: str) -> RunInputs:
        doc = self.docs.get(_INPUTS, run_id)
        if not doc:
            return RunInputs(dataset_inputs=[], model_inputs=[])
        keys = [d["dataset"] for d in doc.get("datasets", [])]
        found = dict(zip(keys, self.docs.many(_DATASETS, keys)))
        datasets = [DatasetInput(Dataset(**found[d["dataset"]]["fields"]),
                                 [InputTag(k, v) for k, v in d["tags"]])
                    for d in doc.get("datasets", []) if found.get(d["dataset"])]
        models = [LoggedModelInput(m) for m in doc.get("models", [])]
        return RunInputs(dataset_inputs=datasets, model_inputs=models)

    def _outputs(self, run_id: str) -> RunOutputs:
        doc = self.docs.get(_OUTPUTS, run_id)
        return RunOutputs([LoggedModelOutput(m["model_id"], m["step"]) for m in doc or []])

    def get_run(self, run_id):
        return self._to_run(self._synadb_run(run_id))

    def create_run(self, experiment_id, user_id, start_time, tags, run_name):
        eid = str(experiment_id if experiment_id is not None else DEFAULT_EXPERIMENT_ID)
        doc = self._experiment_doc(eid)
        self._check_active_experiment(eid, doc)
        tags = list(tags or [])
        name_tag = next((t.value for t in tags if t.key == MLFLOW_RUN_NAME), None)
        if run_name and name_tag and run_name != name_tag:
            raise _bad("Both 'run_name' argument and 'mlflow.runName' tag are specified, but "
                       f"with different values (run_name='{run_name}', "
                       f"mlflow.runName='{name_tag}').")
        run_name = run_name or name_tag or _generate_random_name()
        values = {t.key: str(t.value) for t in tags if t.key not in mapping.VIRTUAL_TAGS}
        if user_id:
            values[USER_TAG] = str(user_id)
        run_id = uuid.uuid4().hex
        location = doc.get("artifact_location")
        if location:
            values[ARTIFACT_TAG] = append_to_uri_path(location, run_id,
                                                      self.ARTIFACTS_FOLDER_NAME)
        parent = next((t.value for t in tags if t.key == mapping.PARENT_TAG), None)
        labels = next((t.value for t in tags if t.key == mapping.LABELS_TAG), "")
        _wrap(self.tracker.start_run, doc["name"], [x for x in labels.split(",") if x],
              name=run_name, tag_values=values, parent_id=parent, run_id=run_id,
              start_time=None if start_time is None else start_time / 1000)
        return self.get_run(run_id)

    def update_run_info(self, run_id, run_status, end_time, run_name):
        run = self._active_run(run_id)
        end_s = None if end_time is None else end_time / 1000
        if run_status is not None:
            status = RunStatus.to_string(run_status) if isinstance(run_status, int) \
                else str(run_status)
            st = mapping.synadb_status(status)
            _wrap(self.tracker.end_run, run_id, st, end_time=end_s, stamp=False)
            exact = status if mapping.mlflow_status(st) != status else ""
            if exact or run.tag_values.get(STATUS_TAG):
                self.tracker.set_tag(run_id, STATUS_TAG, exact)
        elif end_s is not None:
            _wrap(self.tracker.end_run, run_id, run.status, end_time=end_s, stamp=False)
        if run_name:
            self._rename(run_id, run_name)
        return self.get_run(run_id).info

    def _rename(self, run_id: str, name: str) -> None:
        _wrap(self.tracker.rename_run, run_id, name)
        if NO_NAME_TAG in self._synadb_run(run_id).tag_values:
            self.tracker.delete_tag(run_id, NO_NAME_TAG)

    def delete_run(self, run_id):
        self._synadb_run(run_id)
        self._mark(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id):
        self._synadb_run(run_id)
        self._mark(run_id, LifecycleStage.ACTIVE)

    def _get_deleted_runs(self, older_than=0):
        """Ids of deleted runs deleted at least ``older_than`` ms ago (``mlflow gc``)."""
        cutoff = _ms(time.time()) - older_than
        return [r.id for r in self.tracker.list_runs()
                if mapping.lifecycle_stage(r) == LifecycleStage.DELETED
                and int(r.tag_values.get(DELETED_TAG) or 0) <= cutoff]

    def _hard_delete_run(self, run_id):
        """Delete a run for good, with its metrics, artifacts and inputs (``mlflow gc``)."""
        _wrap(self.tracker.delete_run, run_id)
        self.docs.delete(_INPUTS, run_id)
        self.docs.delete(_OUTPUTS, run_id)

    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):
        run = self._synadb_run(run_id)
        if metric_key not in run.metric_names:
            return PagedList([], None)
        rows = self.tracker.metric_rows(run_id, metric_key)
        order = np.lexsort((rows[:, 0], rows[:, 1], np.round(rows[:, 2] * 1000)))
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        stop = len(order) if max_results is None else offset + max_results
        metrics = [Metric(metric_key, _clamp(v), int(round(t * 1000)), int(s), run_id=run_id)
                   for v, s, t in rows[order[offset:stop]].tolist()]
        token = SearchUtils.create_page_token(stop) if stop < len(order) else None
        return PagedList(metrics, token)

    def _search_runs(self, experiment_ids, filter_string, run_view_type, max_results,
                     order_by, page_token):
        """MLflow's search: filter and sort light rows (kept until their run
        changes, in any process), then build full runs for the page only."""
        if max_results is not None:
            check_max_results(max_results)
        table = self.catalog.table()
        names = {d["name"]: i for i, d in table.items()}
        stages = set(LifecycleStage.view_type_to_stages(run_view_type))
        changed, self._rows_mark = self.tracker.changes_since(self._rows_mark)
        if changed is None:
            self._rows.clear()
        else:
            for rid in changed:
                self._rows.pop(rid, None)
        by_id: dict[str, Any] = {}
        rows = []
        for eid in experiment_ids or []:
            doc = table.get(str(eid))
            if doc is None:
                continue
            for run in self.tracker.list_runs(doc["name"]):
                row = self._rows.get(run.id)
                if row is None or row.info.experiment_id != str(eid):
                    row = self._rows[run.id] = self._search_row(run, names)
                if row.info.lifecycle_stage in stages:
                    rows.append(row)
                    by_id[run.id] = run
        if filter_string and "dataset" in filter_string.lower():
            for row in rows:  # only a dataset filter reads the inputs
                row.inputs = self._inputs(row.info.run_id)
        rows = SearchUtils.filter(rows, filter_string)
        rows = SearchUtils.sort(rows, order_by)
        page, token = SearchUtils.paginate(rows, page_token, max_results or len(rows) or 1)
        return [self._to_run(by_id[r.info.run_id], names) for r in page], token

    def log_batch(self, run_id, metrics, params, tags):
        _validate_run_id(run_id)
        metrics, params, tags = _validate_batch_log_data(list(metrics), list(params),
                                                         list(tags))
        _validate_param_keys_unique(params)
        run = self._active_run(run_id)
        try:
            self._log_params(run, params)
            self._set_tags(run_id, tags)
            self._log_metrics(run_id, metrics)
        except MlflowException:
            raise
        except SynaError as e:
            raise _bad(str(e)) from e
        except Exception as e:
            raise MlflowException(str(e), _code("INTERNAL_ERROR")) from e

    def _log_params(self, run: Any, params: list[Param]) -> None:
        if not params:
            return
        have = run.params
        changed = [p for p in params if p.key in have and have[p.key] != str(p.value)]
        if changed:
            shown = [Param(p.key, have[p.key]) for p in changed]
            raise _bad(f"Changing param values is not allowed. Params were already logged="
                       f"'{shown}' for run ID='{run.id}'.")
        new = {p.key: str(p.value) for p in params if p.key not in have}
        if new:
            self.tracker.log_params(run.id, new)

    def _set_tags(self, run_id: str, tags: list[RunTag]) -> None:
        plain = {}
        for t in tags:
            if t.key == MLFLOW_RUN_NAME:
                self._rename(run_id, str(t.value))
            elif t.key == mapping.LABELS_TAG:
                self.tracker.add_tags(run_id, [x for x in str(t.value).split(",") if x])
            else:
                plain[t.key] = "" if t.value is None else str(t.value)
        self.tracker.set_tags(run_id, plain)

    def _log_metrics(self, run_id: str, metrics: list[Metric]) -> None:
        """Append metrics, skipping any (key, step, timestamp, value) the run
        already holds, as MLflow's stores do (a retried batch logs once)."""
        if not metrics:
            return
        fresh: dict[str, list[Metric]] = {}
        for m in metrics:
            fresh.setdefault(m.key, []).append(m)
        for key, group in fresh.items():
            cache = self._metric(run_id, key, dedup=True)
            rows = []
            for m in group:
                row = (int(m.step or 0), int(m.timestamp), float(m.value))
                k = _row_key(row)
                if k not in cache.seen:
                    cache.seen.add(k)
                    rows.append(row)
            if len(rows) == 1:
                step, ts, value = rows[0]
                self.tracker.log_metric(run_id, key, value, step, ts / 1000)
            elif rows:
                arr = np.asarray(rows, dtype=np.float64)
                self.tracker.log_metric_batch(run_id, key, arr[:, 2], arr[:, 0], arr[:, 1] / 1000)
            for row in rows:  # rows this store wrote need no re-reading
                if cache.latest is None or _later(row, cache.latest):
                    cache.latest = row
            cache.n += len(rows)
        with_models = [m for m in metrics if getattr(m, "model_id", None)]
        if with_models and hasattr(self, "_record_model_metrics"):
            self._record_model_metrics(run_id, with_models)

    def log_metric(self, run_id, metric):
        if metric.value is None:
            raise _bad("Missing value for required parameter 'value'. See the API docs for "
                       "more information about request parameters.")
        _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        self._active_run(run_id)
        self._log_metrics(run_id, [metric])

    def log_param(self, run_id, param):
        param = _validate_param(param.key, param.value) or param
        run = self._active_run(run_id)
        if param.key in run.params and run.params[param.key] != str(param.value):
            raise _bad(f"Changing param values is not allowed. Param with key='{param.key}' was "
                       f"already logged with value='{run.params[param.key]}' for run "
                       f"ID='{run_id}'. Attempted logging new value '{param.value}'.")
        self._log_params(run, [param])

    def set_tag(self, run_id, tag):
        _validate_tag(tag.key, tag.value)
        self._active_run(run_id)
        self._set_tags(run_id, [tag])

    def delete_tag(self, run_id, key):
        run = self._active_run(run_id)
        if key not in self._to_run(run).data.tags:
            raise _bad(f"No tag with name: {key} in run with id {run_id}",
                       "RESOURCE_DOES_NOT_EXIST")
        if key == MLFLOW_RUN_NAME:
            self.tracker.set_tag(run_id, NO_NAME_TAG, "1")
        else:
            _wrap(self.tracker.delete_tag, run_id, key)

    # -- inputs and outputs ------------------------------------------------
    def log_inputs(self, run_id, datasets=None, models=None):
        _validate_run_id(run_id)
        if datasets is not None:
            if not isinstance(datasets, list):
                raise TypeError(f"Argument 'datasets' should be a list, got '{type(datasets)}'")
            _validate_dataset_inputs(datasets)
        run = self._active_run(run_id)
        eid = self.catalog.id_of(run.experiment) or ""
        unique: dict[tuple[str, str], Any] = {}
        for d in datasets or []:
            if d.dataset is None:
                raise MlflowException("Dataset input must have a dataset associated with it.",
                                      _code("INTERNAL_ERROR"))
            unique.setdefault((d.dataset.name, d.dataset.digest), d)
        with self.docs.atomic():
            doc = self.docs.get(_INPUTS, run_id) or {"datasets": [], "models": []}
            logged = {d["dataset"] for d in doc["datasets"]}
            for (name, digest), d in unique.items():
                key = f"{eid}:{digest}:{name}"
                if self.docs.get(_DATASETS, key) is None:
                    ds = d.dataset
                    self.docs.put(_DATASETS, key, {"experiment_id": eid, "fields": {
                        "name": ds.name, "digest": ds.digest, "source_type": ds.source_type,
                        "source": ds.source, "schema": ds.schema, "profile": ds.profile}})
                if key not in logged:
                    logged.add(key)
                    doc["datasets"].append({"dataset": key,
                                            "tags": [[t.key, t.value] for t in d.tags]})
            for m in models or []:
                if m.model_id not in doc["models"]:
                    doc["models"].append(m.model_id)
            self.docs.put(_INPUTS, run_id, doc)

    def log_outputs(self, run_id, models):
        self._active_run(run_id)
        with self.docs.atomic():
            doc = self.docs.get(_OUTPUTS, run_id) or []
            for m in models:
                doc.append({"model_id": m.model_id, "step": m.step})
            self.docs.put(_OUTPUTS, run_id, doc)

    def _search_datasets(self, experiment_ids):
        """Dataset summaries (name, digest, context) of runs in ``experiment_ids``,
        for the UI's Dataset column."""
        from mlflow.store.tracking.sqlalchemy_store import _DatasetSummary

        wanted = {str(e) for e in experiment_ids}
        table = self.catalog.table()
        seen: dict[tuple[str, str, str, str | None], None] = {}
        for eid in wanted:
            doc = table.get(eid)
            if doc is None:
                continue
            for rid in self.tracker.run_ids(doc["name"]):
                inputs = self.docs.get(_INPUTS, rid)
                for d in (inputs or {}).get("datasets", []):
                    _, digest, name = d["dataset"].split(":", 2)
                    context = dict(d["tags"]).get(MLFLOW_DATASET_CONTEXT)
                    seen[(eid, name, digest, context)] = None
                    if len(seen) >= 1000:
                        break
        return [_DatasetSummary(experiment_id=e, name=n, digest=g, context=c)
                for e, n, g, c in seen]


class _RunFiles:
    """A run's artifacts: synadb's own (``ExperimentTracker.log_artifact``)."""

    def __init__(self, tracker: Any, run_id: str) -> None:
        self.tracker, self.run_id = tracker, run_id

    def sizes(self) -> dict[str, int]:
        return {n: int(i.get("size", 0)) for n, i in self.tracker.artifact_infos(
            self.run_id).items()}

    def put(self, name: str, local: str) -> None:
        _wrap(self.tracker.log_artifact, self.run_id, name, Path(local))

    def get(self, name: str) -> bytes:
        return _wrap(self.tracker.get_artifact, self.run_id, name)

    def delete(self, name: str) -> None:
        self.tracker.delete_artifact(self.run_id, name)

    def together(self) -> Any:
        return contextlib.nullcontext()  # each run artifact is its own record


class _DocFiles:
    """The files of anything but a run (a logged model's, a trace's), as
    bytes values ``mlflow/files/<scope>/<id>/<name>`` with a manifest of
    names and sizes (``mlflow/files_<scope>/<id>``), changed together."""

    def __init__(self, docs: Docs, scope: str, owner: str) -> None:
        self.docs, self.db = docs, docs.db
        self.kind, self.owner = f"files_{scope}", owner
        self.prefix = f"mlflow/files/{scope}/{owner}/"

    def sizes(self) -> dict[str, int]:
        return dict(self.docs.get(self.kind, self.owner) or {})

    def put(self, name: str, local: str) -> None:
        data = Path(local).read_bytes()
        with self.docs.atomic():
            manifest = self.sizes()
            self.db.put_bytes(self.prefix + name, data)
            manifest[name] = len(data)
            self.docs.put(self.kind, self.owner, manifest)

    def get(self, name: str) -> bytes:
        data = self.db.get_bytes(self.prefix + name)
        if data is None:
            raise MlflowException(f"no artifact {name!r}", _code("RESOURCE_DOES_NOT_EXIST"))
        return data

    def together(self) -> Any:
        return self.docs.atomic()

    def delete(self, name: str) -> None:
        with self.docs.atomic():
            manifest = self.sizes()
            manifest.pop(name, None)
            self.db.delete(self.prefix + name)
            self.docs.put(self.kind, self.owner, manifest)


def _listing(sizes: dict[str, int], prefix: str) -> list[FileInfo]:
    dirs, files = mapping.artifact_children(sizes, prefix)
    out = [FileInfo(d, True, None) for d in dirs]
    out += [FileInfo(f, False, n) for f, n in files.items()]
    return sorted(out, key=lambda f: f.path)


class SynaArtifactRepository(ArtifactRepository):
    """Artifacts inside the synadb file.

    ``artifact_uri`` is ``synadb:///abs/file.db/<scope>/<id>/artifacts[/sub]``
    as the stores hand it out: ``runs/<run id>`` (the run's synadb
    artifacts), ``models/<model id>`` (a logged model's files),
    ``experiments/<id>/traces/<trace id>`` (a trace's attachments).  The file is the longest prefix of the path that is an existing
    file.
    """

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None,
                 registry_uri: str | None = None) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        path = mapping.parse_tracking_uri(artifact_uri)
        parts = Path(path).parts
        for i in range(len(parts), 0, -1):
            candidate = os.path.join(*parts[:i])
            if os.path.isfile(candidate):
                rest = parts[i:]
                break
        else:
            raise MlflowException(f"no synadb file in artifact URI {artifact_uri!r}",
                                  _code("INVALID_PARAMETER_VALUE"))
        k = rest.index("artifacts") if "artifacts" in rest[2:] else -1
        if k < 2:
            raise MlflowException(f"artifact URI {artifact_uri!r} does not name artifacts "
                                  "in the file (.../file.db/runs/<id>/artifacts)",
                                  _code("INVALID_PARAMETER_VALUE"))
        self.path = candidate
        # runs/<id>, models/<id>, experiments/<id>/traces/<id>, ...
        self.scope, self.owner = "/".join(rest[:k - 1]), rest[k - 1]
        self.base = "/".join(rest[k + 1:])
        self.client = MlflowClient(candidate)
        tracker = self.client.tracker
        self.files = (_RunFiles(tracker, self.owner) if self.scope == "runs"
                      else _DocFiles(Docs(tracker.db), self.scope, self.owner))

    @property
    def run_id(self) -> str:
        return self.owner

    def _name(self, rel: str | None) -> str:
        return "/".join(p for p in (self.base, (rel or "").strip("/")) if p)

    def log_artifact(self, local_file, artifact_path=None):
        name = self._name(posixpath.join(artifact_path or "", os.path.basename(local_file)))
        self.files.put(name, local_file)

    def log_artifacts(self, local_dir, artifact_path=None):
        root = Path(local_dir)
        files = []
        for dirpath, _dirs, names in os.walk(root):
            rel = Path(dirpath).relative_to(root).as_posix()
            for f in sorted(names):
                sub = posixpath.join(artifact_path or "", "" if rel == "." else rel, f)
                files.append((self._name(sub), os.path.join(dirpath, f)))
        with self.files.together():  # a model's files land all at once (or not at all)
            for name, local in files:
                self.files.put(name, local)

    def list_artifacts(self, path=None):
        infos = _listing(self.files.sizes(), self._name(path))
        cut = len(self.base) + 1 if self.base else 0
        return [FileInfo(f.path[cut:], f.is_dir, f.file_size) for f in infos]

    def _download_file(self, remote_file_path, local_path):
        data = self.files.get(self._name(remote_file_path))
        with open(local_path, "wb") as f:
            f.write(data)

    def delete_artifacts(self, artifact_path=None):
        full = self._name(artifact_path)
        for name in list(self.files.sizes()):
            if not full or name == full or name.startswith(full + "/"):
                self.files.delete(name)


from .mlflow_registry import SynaModelRegistryStore  # noqa: E402  (the entry point's home)
