"""MLflow 3 logged models (and the GenAI records kept beside them:
evaluation datasets, scorers) in a synadb file, as the ``synadb://``
tracking store's mixin.

The store class (:class:`.mlflow_store.SynaTrackingStore`) mixes this in; it
gives ``self.docs`` (:class:`.mlflow_docs.Docs`) and MLflow's experiment and
run methods.  Everything here is a JSON document of the file:

==========================  ===============================================
kind / id                   document
==========================  ===============================================
``lm/<model id>``           a logged model: attributes, tags, params
``lm-metric/<model id>/*``  one metric value linked to the model (the id
                            hashes MLflow's key: name, timestamp, step, run)
``eds/<dataset id>``        an evaluation dataset (tags, experiments, ...)
``eds-rec/<dataset id>/*``  its records, one document each
``scorer/<key>``            a scorer (all its versions) of one experiment
``scorer-online/<id>``      a scorer's online scoring config
==========================  ===============================================

Searches load the documents and evaluate MLflow's own filter grammar in
Python with MLflow's parsers (``search_logged_model_utils``,
``SearchEvaluationDatasetsUtils``), so filters, orderings, page tokens and
error messages are those of MLflow's SQL store.

A logged model's artifacts live in the same file when the store has no
artifact root: its ``artifact_location`` is
``synadb:///abs/file.db/models/<model id>/artifacts``, which
:class:`.mlflow_store.SynaArtifactRepository` serves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import MissingDependency
from .mlflow_common import check_max_results, code as _code
from .mlflow_docs import Docs

try:
    from mlflow.entities import (DatasetRecord, DatasetRecordSource, LoggedModel,
                                 LoggedModelParameter,
                                 LoggedModelStatus, LoggedModelTag, Metric, RunTag,
                                 ScorerVersion)
    from mlflow.entities.dataset_record import DATASET_RECORD_WRAPPED_OUTPUT_KEY
    from mlflow.entities.lifecycle_stage import LifecycleStage
    from mlflow.exceptions import MlflowException
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.store.tracking import SEARCH_LOGGED_MODEL_MAX_RESULTS_DEFAULT
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_MODELS, MLFLOW_USER
    from mlflow.utils.name_utils import _generate_random_name
    from mlflow.utils.search_utils import (SearchEvaluationDatasetsUtils,
                                           SearchLoggedModelsPaginationToken, SearchUtils)
    from mlflow.utils.time import get_current_time_millis
    from mlflow.utils.uri import append_to_uri_path
    from mlflow.utils.validation import (_validate_logged_model_name, _validate_param,
                                         _validate_tag)
except ImportError as e:  # pragma: no cover
    raise MissingDependency("mlflow", "mlflow>=3", "the synadb:// MLflow plugin") from e

if TYPE_CHECKING:
    # mlflow.entities.EvaluationDataset imports mlflow.data, whose import loads
    # MLflow's artifact-repository plugins, this package among them: importing
    # it while MLflow loads this module as a tracking-store plugin would leave
    # the synadb:// artifact repository unregistered.  Imported where used.
    from mlflow.entities import EvaluationDataset

__all__ = ["LoggedModelMixin"]

# MLflow's SQL store reports dataset warnings (e.g. removing a dataset from an
# experiment it is not in) on its module logger; using the same logger keeps
# one place to configure or silence them, whichever store a server runs.
_DATASET_LOG = logging.getLogger("mlflow.store.tracking.sqlalchemy_store")

_LM = "lm"
_EDS = "eds"
_SCORER = "scorer"
_SCORER_ONLINE = "scorer-online"

#: A logged model's attributes as filters and ``order_by`` name them
#: (MLflow's SQL column names; aliases map onto these).
_MODEL_ATTRIBUTES = {
    "model_id", "experiment_id", "name", "artifact_location", "creation_timestamp_ms",
    "last_updated_timestamp_ms", "status", "lifecycle_stage", "model_type",
    "source_run_id", "status_message",
}
_MODEL_ALIASES = {
    "creation_time": "creation_timestamp_ms",
    "creation_timestamp": "creation_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
}


def _not_found(message: str) -> MlflowException:
    return MlflowException(message, _code("RESOURCE_DOES_NOT_EXIST"))


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, _code("INVALID_PARAMETER_VALUE"))


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _metric_kind(model_id: str) -> str:
    return f"lm-metric/{model_id}"


def _record_kind(dataset_id: str) -> str:
    return f"eds-rec/{dataset_id}"


def _compare(op: str, lhs: Any, rhs: Any) -> bool:
    """SQL's comparison: a missing value (NULL) matches nothing."""
    if lhs is None:
        return False
    return bool(SearchUtils.get_comparison_func(op)(lhs, rhs))


def _sort_stable(items: list[Any], clauses: list[tuple[Callable[[Any], Any], bool]]) -> list[Any]:
    """Sort by ``(key, ascending)`` clauses, most significant first; a None
    key sorts last in either direction (as MLflow's SQL store orders)."""
    out = list(items)
    for key, ascending in reversed(clauses):
        keyed = [(key(item), item) for item in out]
        present = [p for p in keyed if p[0] is not None]
        present.sort(key=lambda p: p[0], reverse=not ascending)
        out = [item for _, item in present] + [item for k, item in keyed if k is None]
    return out


def _model_location(experiment_location: str, model_id: str) -> str:
    """MLflow's layout, ``<experiment location>/models/<id>/artifacts``: so
    ``synadb:///abs/file.db/models/<id>/artifacts`` (inside the file) unless
    the experiment's artifacts go elsewhere."""
    if experiment_location.startswith("synadb:"):
        # append_to_uri_path would drop the empty authority (synadb:/abs/...)
        return f"{experiment_location.rstrip('/')}/models/{model_id}/artifacts"
    return append_to_uri_path(experiment_location, "models", model_id, "artifacts")


# ---------------------------------------------------------------- documents
def _model_entity(doc: dict[str, Any], metrics: list[Metric]) -> LoggedModel:
    return LoggedModel(
        experiment_id=doc["experiment_id"], model_id=doc["model_id"], name=doc["name"],
        artifact_location=doc["artifact_location"],
        creation_timestamp=doc["creation_timestamp_ms"],
        last_updated_timestamp=doc["last_updated_timestamp_ms"],
        model_type=doc.get("model_type"), source_run_id=doc.get("source_run_id"),
        status=LoggedModelStatus(doc["status"]), status_message=doc.get("status_message"),
        tags=dict(doc.get("tags") or {}), params=dict(doc.get("params") or {}),
        metrics=metrics or None)


def _metric_entity(doc: dict[str, Any]) -> Metric:
    return Metric(key=doc["key"], value=doc["value"], timestamp=doc["timestamp"],
                  step=doc["step"], run_id=doc.get("run_id"), model_id=doc["model_id"],
                  dataset_name=doc.get("dataset_name"),
                  dataset_digest=doc.get("dataset_digest"))


def _dataset_entity(doc: dict[str, Any]) -> EvaluationDataset:
    """The dataset without its records or experiment ids (MLflow loads
    both lazily, through the tracking store)."""
    from mlflow.entities import EvaluationDataset

    return EvaluationDataset(
        dataset_id=doc["dataset_id"], name=doc["name"], digest=doc["digest"],
        created_time=doc["created_time"], last_update_time=doc["last_update_time"],
        tags=dict(doc.get("tags") or {}), schema=doc.get("schema"),
        profile=doc.get("profile"), created_by=doc.get("created_by"),
        last_updated_by=doc.get("last_updated_by"))


def _record_entity(doc: dict[str, Any]) -> DatasetRecord:
    outputs = doc.get("outputs")
    source = doc.get("source")
    return DatasetRecord(
        dataset_record_id=doc["dataset_record_id"], dataset_id=doc["dataset_id"],
        inputs=doc["inputs"],
        outputs=outputs.get(DATASET_RECORD_WRAPPED_OUTPUT_KEY) if outputs else None,
        expectations=doc.get("expectations"), tags=doc.get("tags"),
        source=DatasetRecordSource.from_dict(source) if source else None,
        source_id=doc.get("source_id"), created_time=doc["created_time"],
        last_update_time=doc["last_update_time"], created_by=doc.get("created_by"),
        last_updated_by=doc.get("last_updated_by"))


def _dataset_digest(name: str, last_update_time: int) -> str:
    """MLflow's dataset digest: any change of state gives a new one."""
    return hashlib.sha256(f"{name}:{last_update_time}".encode()).hexdigest()[:8]


def _field_type(value: Any) -> str:
    """A record field's type as MLflow's dataset schema names it."""
    for typ, name in ((type(None), "null"), (bool, "boolean"), (int, "integer"),
                      (float, "float"), (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, typ):
            return name
    return "unknown"


def _merge_schema(schema_json: str | None, records: list[dict[str, Any]]) -> str | None:
    """The dataset schema extended with the fields first seen in ``records``."""
    if not records and not schema_json:
        return None
    schema = json.loads(schema_json) if schema_json else {
        "inputs": {}, "outputs": {}, "expectations": {}, "version": "1.0"}
    for record in records:
        for section in ("inputs", "expectations"):
            for key, value in (record.get(section) or {}).items():
                schema[section].setdefault(key, _field_type(value))
        outputs = record.get("outputs")
        if isinstance(outputs, dict):
            for key, value in outputs.items():
                schema["outputs"].setdefault(key, _field_type(value))
        elif outputs is not None and not schema["outputs"]:
            schema["outputs"] = _field_type(outputs)
    return json.dumps(schema)


def _scorer_key(experiment_id: str, name: str) -> str:
    return _hash(str(experiment_id), name)


def _scorer_version(doc: dict[str, Any], version: dict[str, Any]) -> ScorerVersion:
    return ScorerVersion(experiment_id=doc["experiment_id"], scorer_name=doc["name"],
                         scorer_version=version["version"],
                         serialized_scorer=version["serialized_scorer"],
                         creation_time=version["creation_time"], scorer_id=doc["scorer_id"])


def _experiment_order(experiment_id: str) -> tuple[int, str]:
    return (int(experiment_id), "") if str(experiment_id).isdigit() else (0, str(experiment_id))


# ---------------------------------------------------------------- the mixin
class LoggedModelMixin:
    """Logged models, evaluation datasets and scorers."""

    # What the store class gives (see the module docstring).
    docs: Docs
    get_experiment: Callable[[str], Any]
    get_run: Callable[[str], Any]
    set_tag: Callable[[str, RunTag], None]
    get_gateway_endpoint: Callable[..., Any]

    # -- logged models ---------------------------------------------------
    def _model_doc(self, model_id: str, allow_deleted: bool = True) -> dict[str, Any]:
        doc = self.docs.get(_LM, model_id) if isinstance(model_id, str) else None
        if doc is None or (not allow_deleted and doc["lifecycle_stage"] == LifecycleStage.DELETED):
            raise _not_found(f"Logged model with ID '{model_id}' not found.")
        return doc

    def _model_metrics(self, model_id: str) -> list[Metric]:
        return [_metric_entity(d) for d in self.docs.all(_metric_kind(model_id))]

    def _model(self, doc: dict[str, Any]) -> LoggedModel:
        return _model_entity(doc, self._model_metrics(doc["model_id"]))

    def _active_experiment(self, experiment_id: str) -> Any:
        experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
            raise _invalid(f"The experiment {experiment.experiment_id} must be in the 'active' "
                           f"state. Current state is {experiment.lifecycle_stage}.")
        return experiment

    def create_logged_model(self, experiment_id: str, name: str | None = None,
                            source_run_id: str | None = None,
                            tags: list[LoggedModelTag] | None = None,
                            params: list[LoggedModelParameter] | None = None,
                            model_type: str | None = None) -> LoggedModel:
        """A new PENDING model of an active experiment (MLflow's semantics:
        the name is validated, a random one is drawn when omitted)."""
        _validate_logged_model_name(name)
        for param in params or []:
            _validate_param(param.key, param.value)
        experiment = self._active_experiment(experiment_id)
        model_id = f"m-{uuid.uuid4().hex}"
        now = get_current_time_millis()
        doc = {
            "model_id": model_id, "experiment_id": str(experiment.experiment_id),
            "name": name or _generate_random_name(),
            "artifact_location": _model_location(experiment.artifact_location, model_id),
            "creation_timestamp_ms": now, "last_updated_timestamp_ms": now,
            "status": LoggedModelStatus.PENDING.value, "status_message": None,
            "lifecycle_stage": LifecycleStage.ACTIVE, "model_type": model_type,
            "source_run_id": source_run_id,
            "tags": {t.key: t.value for t in tags or []},
            "params": {p.key: p.value for p in params or []},
        }
        self.docs.put(_LM, model_id, doc)
        return _model_entity(doc, [])

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        return self._model(self._model_doc(model_id, allow_deleted))

    def log_logged_model_params(self, model_id: str,
                                params: list[LoggedModelParameter]) -> None:
        """Add params; like a run's, a param keeps its first value."""
        for param in params:
            _validate_param(param.key, param.value)
        with self.docs.atomic():
            doc = self._model_doc(model_id)
            for param in params:
                old = doc["params"].get(param.key)
                if old is not None and old != param.value:
                    raise _invalid(f"Changing param values is not allowed. Param with key="
                                   f"'{param.key}' was already logged with value='{old}' for "
                                   f"logged model ID='{model_id}'. Attempted logging new "
                                   f"value '{param.value}'.")
                doc["params"][param.key] = param.value
            self.docs.put(_LM, model_id, doc)

    def _update_model(self, model_id: str, change: Callable[[dict[str, Any]], None],
                      touch: bool = False) -> dict[str, Any]:
        """Apply ``change`` to the model's document in one atomic section."""
        with self.docs.atomic():
            doc = self._model_doc(model_id)
            change(doc)
            if touch:
                doc["last_updated_timestamp_ms"] = get_current_time_millis()
            self.docs.put(_LM, model_id, doc)
        return doc

    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        value = LoggedModelStatus(status).value
        doc = self._update_model(model_id, lambda d: d.update(status=value), touch=True)
        return self._model(doc)

    def set_logged_model_tags(self, model_id: str, tags: list[LoggedModelTag]) -> None:
        for tag in tags:
            _validate_tag(tag.key, tag.value)
        self._update_model(model_id, lambda d: d["tags"].update({t.key: t.value for t in tags}))

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        def drop(doc: dict[str, Any]) -> None:
            if key not in doc["tags"]:
                raise _not_found(f"No tag with key {key!r} found for model with ID "
                                 f"{model_id!r}.")
            del doc["tags"][key]
        self._update_model(model_id, drop)

    def set_model_versions_tags(self, name: str, version: str, model_id: str) -> None:
        """Record on the model that registry version ``name``/``version`` came
        from it (the ``mlflow.modelVersions`` tag), atomically."""
        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

        entry = {"name": name, "version": version}

        def add(doc: dict[str, Any]) -> None:
            existing = json.loads(doc["tags"].get(MLFLOW_MODEL_VERSIONS) or "[]")
            if entry not in existing:
                existing.append(entry)
            doc["tags"][MLFLOW_MODEL_VERSIONS] = json.dumps(existing)
        self._update_model(model_id, add)

    def delete_logged_model(self, model_id: str) -> None:
        """Soft delete: the model leaves searches and ``get``; ``mlflow gc``
        removes it for good."""
        self._update_model(model_id, lambda d: d.update(lifecycle_stage=LifecycleStage.DELETED),
                           touch=True)

    def _hard_delete_logged_model(self, model_id: str) -> None:
        with self.docs.atomic():
            self._model_doc(model_id)
            kind = _metric_kind(model_id)
            for metric_id in self.docs.ids(kind):
                self.docs.delete(kind, metric_id)
            self.docs.delete(_LM, model_id)

    def _get_deleted_logged_models(self, older_than: int = 0) -> list[str]:
        cutoff = get_current_time_millis() - older_than
        return [d["model_id"] for d in self.docs.all(_LM)
                if d["lifecycle_stage"] == LifecycleStage.DELETED
                and d["last_updated_timestamp_ms"] <= cutoff]

    def record_logged_model(self, run_id: str, mlflow_model: Any) -> None:
        """Append the model's metadata to the run's ``mlflow.log-model.history``
        tag (MLflow 2's way of listing a run's models, still written)."""
        from mlflow.models import Model

        if not isinstance(mlflow_model, Model):
            raise TypeError("Argument 'mlflow_model' should be mlflow.models.Model, got "
                            f"'{type(mlflow_model)}'")
        with self.docs.atomic():
            run = self.get_run(run_id)
            if run.info.lifecycle_stage != LifecycleStage.ACTIVE:
                raise MlflowException(f"The run {run_id} must be in the 'active' state. "
                                      f"Current state is {run.info.lifecycle_stage}.",
                                      _code("INVALID_STATE"))
            previous = run.data.tags.get(MLFLOW_LOGGED_MODELS)
            models = (json.loads(previous) if previous else []) + [mlflow_model.get_tags_dict()]
            value = json.dumps(models)
            _validate_tag(MLFLOW_LOGGED_MODELS, value)
            self.set_tag(run_id, RunTag(MLFLOW_LOGGED_MODELS, value))

    def _record_model_metrics(self, run_id: str, metrics: Iterable[Metric],
                              experiment_id: str | None = None) -> None:
        """Link the metrics that carry a ``model_id`` to their logged models.

        ``log_batch`` calls this with the batch's metrics (after validating
        them); metrics without a model id are skipped.  A value is keyed as in
        MLflow (model, name, timestamp, step, run), so logging it again is a
        no-op.  ``experiment_id`` is the run's, looked up when not given.
        Raises RESOURCE_DOES_NOT_EXIST, writing nothing, if a model is unknown.
        """
        linked = [m for m in metrics if m.model_id is not None]
        if not linked:
            return
        if experiment_id is None:
            experiment_id = self.get_run(run_id).info.experiment_id
        with self.docs.atomic():
            for model_id in {m.model_id for m in linked}:
                self._model_doc(model_id)
            for m in linked:
                self.docs.put(_metric_kind(m.model_id), _hash(m.key, m.timestamp, m.step, run_id), {
                    "model_id": m.model_id, "key": m.key, "value": m.value,
                    "timestamp": m.timestamp, "step": m.step, "run_id": run_id,
                    "experiment_id": str(experiment_id), "dataset_name": m.dataset_name,
                    "dataset_digest": m.dataset_digest,
                })

    def search_logged_models(self, experiment_ids: list[str], filter_string: str | None = None,
                             datasets: list[dict[str, Any]] | None = None,
                             max_results: int | None = None,
                             order_by: list[dict[str, Any]] | None = None,
                             page_token: str | None = None) -> PagedList[LoggedModel]:
        """MLflow's logged-model search: its filter grammar (``AND``ed
        comparisons of attributes, ``metrics.``, ``params.``, ``tags.``),
        ``datasets`` restricting metric filters, ``order_by`` dicts (metrics
        by their latest value, per dataset if given) and page tokens."""
        from mlflow.utils.search_logged_model_utils import parse_filter_string

        if datasets and not all(d.get("dataset_name") for d in datasets):
            raise _invalid("`dataset_name` in the `datasets` clause must be specified.")
        offset = 0
        if page_token:
            token = SearchLoggedModelsPaginationToken.decode(page_token)
            token.validate(experiment_ids, filter_string, order_by)
            offset = token.offset
        max_results = max_results or SEARCH_LOGGED_MODEL_MAX_RESULTS_DEFAULT
        comparisons = parse_filter_string(filter_string)
        sort_clauses = _model_sort_clauses(order_by)

        wanted = {str(e) for e in experiment_ids}
        docs = [d for d in self.docs.all(_LM) if d["experiment_id"] in wanted
                and d["lifecycle_stage"] != LifecycleStage.DELETED]
        rows = [(d, self._model_metrics(d["model_id"])) for d in docs]
        rows = [r for r in rows if _model_matches(r[0], r[1], comparisons, datasets)]
        rows = _sort_stable(rows, [(lambda r, k=key: k(*r), asc) for key, asc in sort_clauses])
        page = rows[offset:offset + max_results]
        token = None
        if len(rows) > offset + max_results:
            token = SearchLoggedModelsPaginationToken(
                offset=offset + max_results, experiment_ids=experiment_ids,
                filter_string=filter_string, order_by=order_by).encode()
        return PagedList([_model_entity(d, ms) for d, ms in page], token)

    # -- evaluation datasets ---------------------------------------------
    def _dataset_doc(self, dataset_id: str) -> dict[str, Any] | None:
        return self.docs.get(_EDS, dataset_id) if isinstance(dataset_id, str) and dataset_id \
            else None

    def create_dataset(self, name: str, tags: dict[str, str] | None = None,
                       experiment_ids: list[str] | None = None) -> EvaluationDataset:
        """A new, empty evaluation dataset; the ``mlflow.user`` tag names its
        creator."""
        now = get_current_time_millis()
        user = (tags or {}).get(MLFLOW_USER)
        doc = {
            "dataset_id": f"d-{uuid.uuid4().hex}", "name": name,
            "digest": _dataset_digest(name, now), "created_time": now,
            "last_update_time": now, "tags": {k: str(v) for k, v in (tags or {}).items()},
            "schema": None, "profile": None, "created_by": user, "last_updated_by": user,
            "experiment_ids": [str(e) for e in experiment_ids or []],
        }
        self.docs.put(_EDS, doc["dataset_id"], doc)
        dataset = _dataset_entity(doc)
        dataset.experiment_ids = list(doc["experiment_ids"])
        dataset._tracking_store = self
        return dataset

    def get_dataset(self, dataset_id: str) -> EvaluationDataset:
        doc = self._dataset_doc(dataset_id)
        if doc is None:
            raise _not_found(f"Evaluation dataset with id '{dataset_id}' not found")
        return _dataset_entity(doc)

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete the dataset and its records (a missing one is a no-op)."""
        with self.docs.atomic():
            if self._dataset_doc(dataset_id) is None:
                _DATASET_LOG.warning(f"Evaluation dataset with id '{dataset_id}' not found.")
                return
            kind = _record_kind(dataset_id)
            for record_id in self.docs.ids(kind):
                self.docs.delete(kind, record_id)
            self.docs.delete(_EDS, dataset_id)

    def search_datasets(self, experiment_ids: list[str] | None = None,
                        filter_string: str | None = None, max_results: int = 1000,
                        order_by: list[str] | None = None,
                        page_token: str | None = None) -> PagedList[EvaluationDataset]:
        """Datasets (without records) of any of ``experiment_ids`` (all when
        empty), filtered and ordered with MLflow's dataset search grammar."""
        check_max_results(max_results)
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        clauses = _dataset_filter(filter_string)
        sort_clauses = _dataset_sort_clauses(order_by)
        wanted = {str(e) for e in experiment_ids or []}
        docs = [d for d in self.docs.all(_EDS)
                if (not wanted or wanted & set(d["experiment_ids"]))
                and all(clause(d) for clause in clauses)]
        docs = _sort_stable(docs, sort_clauses)
        page = docs[offset:offset + max_results]
        token = (SearchUtils.create_page_token(offset + max_results)
                 if len(docs) > offset + max_results else None)
        return PagedList([_dataset_entity(d) for d in page], token)

    def get_dataset_experiment_ids(self, dataset_id: str) -> list[str]:
        doc = self._dataset_doc(dataset_id)
        return [] if doc is None else list(doc["experiment_ids"])

    def set_dataset_tags(self, dataset_id: str, tags: dict[str, Any]) -> None:
        """Merge ``tags`` into the dataset's (a None value changes nothing)."""
        with self.docs.atomic():
            doc = self._dataset_doc(dataset_id)
            if doc is None:
                raise _not_found(f"Could not find evaluation dataset with ID {dataset_id}")
            doc["tags"].update({k: str(v) for k, v in tags.items() if v is not None})
            self.docs.put(_EDS, dataset_id, doc)

    def delete_dataset_tag(self, dataset_id: str, key: str) -> None:
        """Remove a tag (idempotent, like MLflow's)."""
        with self.docs.atomic():
            doc = self._dataset_doc(dataset_id)
            if doc is not None and doc["tags"].pop(key, None) is not None:
                self.docs.put(_EDS, dataset_id, doc)

    def _edit_dataset_experiments(self, dataset_id: str,
                                  change: Callable[[list[str]], bool]) -> EvaluationDataset:
        with self.docs.atomic():
            doc = self._dataset_doc(dataset_id)
            if doc is None:
                raise _not_found(f"Dataset '{dataset_id}' not found")
            if change(doc["experiment_ids"]):
                doc["last_update_time"] = get_current_time_millis()
                self.docs.put(_EDS, dataset_id, doc)
        return _dataset_entity(doc)

    def add_dataset_to_experiments(self, dataset_id: str,
                                   experiment_ids: list[str]) -> EvaluationDataset:
        wanted = [str(e) for e in experiment_ids]
        for exp_id in wanted:
            try:
                self.get_experiment(exp_id)
            except MlflowException:
                raise _not_found(f"No Experiment with id={exp_id}") from None

        def add(current: list[str]) -> bool:
            current.extend(e for e in dict.fromkeys(wanted) if e not in current)
            return True
        return self._edit_dataset_experiments(dataset_id, add)

    def remove_dataset_from_experiments(self, dataset_id: str,
                                        experiment_ids: list[str]) -> EvaluationDataset:
        """Idempotent: an experiment the dataset is not in is only warned about."""
        def remove(current: list[str]) -> bool:
            found = False
            for exp_id in map(str, experiment_ids):
                if exp_id in current:
                    current.remove(exp_id)
                    found = True
                else:
                    _DATASET_LOG.warning(
                        f"Dataset '{dataset_id}' was not associated with experiment '{exp_id}'")
            return found
        return self._edit_dataset_experiments(dataset_id, remove)

    def upsert_dataset_records(self, dataset_id: str,
                               records: list[dict[str, Any]]) -> dict[str, int]:
        """Insert records, merging those whose inputs are already there
        (expectations and tags merge, outputs are replaced)."""
        kind = _record_kind(dataset_id)
        inserted = updated = 0
        with self.docs.atomic():
            doc = self._dataset_doc(dataset_id)
            if doc is None:
                raise _not_found(f"Evaluation dataset with id '{dataset_id}' not found")
            now = get_current_time_millis()
            updated_by = None
            for record in records:
                inputs = record.get("inputs", {})
                input_hash = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
                record_id = f"dr-{_hash(dataset_id, input_hash)}"
                tags = record.get("tags") or {}
                user = tags.get(MLFLOW_USER)
                updated_by = user or updated_by
                existing = self.docs.get(kind, record_id)
                if existing is not None:
                    _merge_record(existing, record, now)
                    self.docs.put(kind, record_id, existing)
                    updated += 1
                    continue
                self.docs.put(kind, record_id, _new_record(dataset_id, record_id, record, now))
                inserted += 1
            count = len(self.docs.ids(kind))
            doc.update(last_update_time=now, last_updated_by=updated_by,
                       digest=_dataset_digest(doc["name"], now),
                       schema=_merge_schema(doc.get("schema"), records))
            if count:
                doc["profile"] = json.dumps({"num_records": count})
            self.docs.put(_EDS, dataset_id, doc)
        return {"inserted": inserted, "updated": updated}

    def _load_dataset_records(self, dataset_id: str, max_results: int | None = None,
                              page_token: str | None = None
                              ) -> tuple[list[DatasetRecord], str | None]:
        """Records by (created_time, record id); ``max_results=None`` returns
        them all, else a page and the cursor token of the next one."""
        from mlflow.store.tracking import LOAD_DATASET_RECORDS_MAX_RESULTS

        docs = sorted(self.docs.all(_record_kind(dataset_id)),
                      key=lambda d: (d["created_time"], d["dataset_record_id"]))
        if page_token:
            try:
                created, last_id = base64.b64decode(page_token.encode()).decode().split(":", 1)
                cursor = (int(created), last_id)
            except (ValueError, UnicodeDecodeError):
                raise _invalid(f"Invalid page token {page_token!r}") from None
            docs = [d for d in docs if (d["created_time"], d["dataset_record_id"]) > cursor]
        token = None
        if max_results is not None:
            limit = max_results or LOAD_DATASET_RECORDS_MAX_RESULTS
            if len(docs) > limit:
                docs = docs[:limit]
                cursor_text = f"{docs[-1]['created_time']}:{docs[-1]['dataset_record_id']}"
                token = base64.b64encode(cursor_text.encode()).decode()
        return [_record_entity(d) for d in docs], token

    def delete_dataset_records(self, dataset_id: str, dataset_record_ids: list[str]) -> int:
        """Delete records by id; returns how many existed."""
        kind = _record_kind(dataset_id)
        with self.docs.atomic():
            doc = self._dataset_doc(dataset_id)
            if doc is None:
                raise _not_found(f"Evaluation dataset with id '{dataset_id}' not found")
            deleted = sum(self.docs.delete(kind, rid) for rid in set(dataset_record_ids)
                          if self.docs.get(kind, rid) is not None)
            if not deleted:
                _DATASET_LOG.warning(f"No records found to delete for dataset {dataset_id}. "
                                     "Records may have already been deleted or never existed.")
                return 0
            count = len(self.docs.ids(kind))
            doc["profile"] = json.dumps({"num_records": count}) if count else None
            self.docs.put(_EDS, dataset_id, doc)
        return deleted

    # -- scorers ---------------------------------------------------------
    def _scorer_doc(self, experiment_id: str, name: str) -> dict[str, Any]:
        self._active_experiment(experiment_id)
        doc = self.docs.get(_SCORER, _scorer_key(experiment_id, name))
        if doc is None or not doc["versions"]:
            raise _not_found(f"Scorer with name '{name}' not found for experiment "
                             f"{experiment_id}.")
        return doc

    def _resolve_endpoint(self, serialized: str, missing_to_none: bool = True) -> str:
        """The serialized scorer with its gateway endpoint id (as stored)
        turned back into the endpoint's name."""
        from mlflow.genai.scorers.scorer_utils import (build_gateway_model,
                                                       extract_endpoint_ref,
                                                       extract_model_from_serialized_scorer,
                                                       is_gateway_model,
                                                       update_model_in_serialized_scorer)

        data = json.loads(serialized)
        model = extract_model_from_serialized_scorer(data)
        if not is_gateway_model(model):
            return serialized
        try:
            endpoint = self.get_gateway_endpoint(endpoint_id=extract_endpoint_ref(model))
            new_model = build_gateway_model(endpoint.name)
        except NotImplementedError:  # no gateway store: keep the reference as stored
            return serialized
        except MlflowException:
            if not missing_to_none:
                return serialized
            new_model = None  # the endpoint was deleted
        return json.dumps(update_model_in_serialized_scorer(data, new_model))

    def _resolved_version(self, doc: dict[str, Any], version: dict[str, Any]) -> ScorerVersion:
        return _scorer_version(doc, {**version, "serialized_scorer": self._resolve_endpoint(
            version["serialized_scorer"])})

    def register_scorer(self, experiment_id: str, name: str,
                        serialized_scorer: str) -> ScorerVersion:
        """A new version of the experiment's scorer ``name``.  A scorer on a
        gateway model keeps the endpoint's id (resolved to its name on read)."""
        from mlflow.genai.scorers.scorer_utils import (build_gateway_model,
                                                       extract_endpoint_ref,
                                                       extract_model_from_serialized_scorer,
                                                       is_gateway_model,
                                                       update_model_in_serialized_scorer,
                                                       validate_scorer_model,
                                                       validate_scorer_name)

        validate_scorer_name(name)
        experiment = self._active_experiment(experiment_id)
        data = json.loads(serialized_scorer)
        model = extract_model_from_serialized_scorer(data)
        validate_scorer_model(model)
        if is_gateway_model(model):
            try:
                endpoint = self.get_gateway_endpoint(name=extract_endpoint_ref(model))
            except NotImplementedError:
                raise MlflowException("gateway endpoints are not stored in synadb files; "
                                      f"scorer {name!r} cannot use model {model!r}",
                                      _code("INVALID_PARAMETER_VALUE")) from None
            data = update_model_in_serialized_scorer(data, build_gateway_model(
                endpoint.endpoint_id))
            serialized_scorer = json.dumps(data)
        exp_id = str(experiment.experiment_id)
        key = _scorer_key(exp_id, name)
        with self.docs.atomic():
            doc = self.docs.get(_SCORER, key) or {
                "scorer_id": str(uuid.uuid4()), "experiment_id": exp_id, "name": name,
                "versions": []}
            number = max((v["version"] for v in doc["versions"]), default=0) + 1
            version = {"version": number, "serialized_scorer": serialized_scorer,
                       "creation_time": get_current_time_millis()}
            doc["versions"].append(version)
            self.docs.put(_SCORER, key, doc)
        return self._resolved_version(doc, version)

    def list_scorers(self, experiment_id: str) -> list[ScorerVersion]:
        """The latest version of each of the experiment's scorers, by name."""
        experiment = self._active_experiment(experiment_id)
        return self.list_scorers_across_experiments([experiment.experiment_id])

    def list_scorers_across_experiments(self, experiment_ids: list[str]) -> list[ScorerVersion]:
        """The latest version of every scorer of these experiments, by
        experiment then name (no experiment checks: the caller filtered)."""
        wanted = {str(e) for e in experiment_ids or []}
        docs = sorted((d for d in self.docs.all(_SCORER)
                       if d["experiment_id"] in wanted and d["versions"]),
                      key=lambda d: (_experiment_order(d["experiment_id"]), d["name"]))
        return [self._resolved_version(d, max(d["versions"], key=lambda v: v["version"]))
                for d in docs]

    def get_scorer(self, experiment_id: str, name: str,
                   version: int | None = None) -> ScorerVersion:
        """A version of the scorer, the latest when ``version`` is None."""
        doc = self._scorer_doc(experiment_id, name)
        if version is None:
            return self._resolved_version(doc, max(doc["versions"], key=lambda v: v["version"]))
        for v in doc["versions"]:
            if v["version"] == version:
                return self._resolved_version(doc, v)
        raise _not_found(f"Scorer with name '{name}' and version {version} not found for "
                         f"experiment {experiment_id}.")

    def list_scorer_versions(self, experiment_id: str, name: str) -> list[ScorerVersion]:
        doc = self._scorer_doc(experiment_id, name)
        return [self._resolved_version(doc, v)
                for v in sorted(doc["versions"], key=lambda v: v["version"])]

    def delete_scorer(self, experiment_id: str, name: str, version: int | None = None) -> None:
        """Delete one version, or (``version=None``) the scorer with its
        online scoring config."""
        with self.docs.atomic():
            doc = self._scorer_doc(experiment_id, name)
            key = _scorer_key(str(experiment_id), name)
            if version is None:
                self.docs.delete(_SCORER, key)
                self.docs.delete(_SCORER_ONLINE, doc["scorer_id"])
                return
            kept = [v for v in doc["versions"] if v["version"] != version]
            if len(kept) == len(doc["versions"]):
                raise _not_found(f"Scorer with name '{name}' and version {version} not found "
                                 f"for experiment {experiment_id}.")
            doc["versions"] = kept
            self.docs.put(_SCORER, key, doc)

    def get_online_scoring_configs(self, scorer_ids: list[str]) -> list[Any]:
        from mlflow.genai.scorers.online.entities import OnlineScoringConfig

        return [OnlineScoringConfig(**d) for d in self.docs.many(_SCORER_ONLINE, list(scorer_ids))
                if d is not None] if scorer_ids else []

    def upsert_online_scoring_config(self, experiment_id: str, scorer_name: str,
                                     sample_rate: float,
                                     filter_string: str | None = None) -> Any:
        """Set (replacing any previous) the scorer's online scoring config.
        A positive sample rate needs a scorer on a gateway model that does
        not need expectations; ``filter_string`` is a trace search filter."""
        from mlflow.genai.scorers.online.entities import OnlineScoringConfig
        from mlflow.utils.search_utils import SearchTraceUtils

        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
            raise _invalid(f"sample_rate must be a number, got {type(sample_rate).__name__}")
        if not 0.0 <= sample_rate <= 1.0:
            raise _invalid(f"sample_rate must be between 0.0 and 1.0, got {sample_rate}")
        if filter_string:
            if not isinstance(filter_string, str):
                raise _invalid(f"filter_string must be a string, got "
                               f"{type(filter_string).__name__}")
            SearchTraceUtils.parse_search_filter_for_search_traces(filter_string)
        with self.docs.atomic():
            doc = self._scorer_doc(experiment_id, scorer_name)
            if sample_rate > 0:
                latest = max(doc["versions"], key=lambda v: v["version"])
                _check_online_scorer(scorer_name, latest["serialized_scorer"])
            config = {"online_scoring_config_id": uuid.uuid4().hex,
                      "scorer_id": doc["scorer_id"], "sample_rate": sample_rate,
                      "experiment_id": str(experiment_id), "filter_string": filter_string}
            self.docs.put(_SCORER_ONLINE, doc["scorer_id"], config)
        return OnlineScoringConfig(**config)

    def get_active_online_scorers(self) -> list[Any]:
        """Every scorer with a positive sample rate whose latest version runs
        on a gateway model, across experiments."""
        from mlflow.genai.scorers.online.entities import OnlineScorer, OnlineScoringConfig
        from mlflow.genai.scorers.scorer_utils import (extract_model_from_serialized_scorer,
                                                       is_gateway_model)

        configs = {d["scorer_id"]: d for d in self.docs.all(_SCORER_ONLINE)
                   if d["sample_rate"] > 0}
        out = []
        for doc in self.docs.all(_SCORER):
            config = configs.get(doc["scorer_id"])
            if config is None or not doc["versions"]:
                continue
            latest = max(doc["versions"], key=lambda v: v["version"])
            serialized = latest["serialized_scorer"]
            if not is_gateway_model(extract_model_from_serialized_scorer(json.loads(serialized))):
                continue
            out.append(OnlineScorer(
                name=doc["name"],
                serialized_scorer=self._resolve_endpoint(serialized, missing_to_none=False),
                online_config=OnlineScoringConfig(**config), scorer_version=latest["version"]))
        return out


# ---------------------------------------------------------------- helpers
def _model_row(doc: dict[str, Any], attribute: str) -> Any:
    if attribute not in _MODEL_ATTRIBUTES:
        raise MlflowException.invalid_parameter_value(
            f"Invalid attribute key '{attribute}'. Valid keys are: {sorted(_MODEL_ATTRIBUTES)}",
            error_class="ATTRIBUTE_NOT_FOUND")
    return doc.get(attribute)


def _on_datasets(metric: Metric, datasets: list[dict[str, Any]] | None) -> bool:
    return not datasets or any(
        metric.dataset_name == d["dataset_name"]
        and ("dataset_digest" not in d or metric.dataset_digest == d["dataset_digest"])
        for d in datasets)


def _model_matches(doc: dict[str, Any], metrics: list[Metric], comparisons: list[Any],
                   datasets: list[dict[str, Any]] | None) -> bool:
    """MLflow's SQL semantics: a metric comparison holds if any value of the
    metric (on the given datasets) satisfies it; with datasets and no metric
    comparison, the model needs some metric on one of them."""
    from mlflow.utils.search_logged_model_utils import EntityType

    has_metric_filter = False
    for comp in comparisons:
        kind, key, op, value = comp.entity.type, comp.entity.key, comp.op, comp.value
        if kind == EntityType.METRIC:
            has_metric_filter = True
            if not any(m.key == key and _on_datasets(m, datasets)
                       and _compare(op, m.value, value) for m in metrics):
                return False
        elif kind == EntityType.PARAM:
            if not _compare(op, doc["params"].get(key), value):
                return False
        elif kind == EntityType.TAG:
            if not _compare(op, doc["tags"].get(key), value):
                return False
        elif not _compare(op, _model_row(doc, key), value):
            return False
    if datasets and not has_metric_filter:
        return any(_on_datasets(m, datasets) for m in metrics)
    return True


def _latest_metric(metrics: list[Metric], name: str, dataset_name: str | None,
                   dataset_digest: str | None) -> float | None:
    """The value MLflow orders a model by: the metric's latest (timestamp,
    then step, then first run id) value, on the dataset when named."""
    candidates = [m for m in metrics if m.key == name
                  and (not dataset_name or m.dataset_name == dataset_name)
                  and (not dataset_digest or m.dataset_digest == dataset_digest)]
    if not candidates:
        return None
    candidates.sort(key=lambda m: m.run_id or "")
    return max(candidates, key=lambda m: (m.timestamp, m.step)).value


def _model_sort_clauses(order_by: list[dict[str, Any]] | None
                        ) -> list[tuple[Callable[[dict[str, Any], list[Metric]], Any], bool]]:
    """``order_by`` dicts as (key(doc, metrics), ascending) clauses, with
    MLflow's tie-breakers: newest first, then model id."""
    clauses: list[tuple[Callable[[dict[str, Any], list[Metric]], Any], bool]] = []
    seen: set[str] = set()
    for ob in order_by or []:
        field = ob.get("field_name")
        ascending = ob.get("ascending", True)
        if not isinstance(field, str):
            raise _invalid("`field_name` in the `order_by` clause must be specified.")
        if "." not in field:
            name = _MODEL_ALIASES.get(field, field)
            if name not in _MODEL_ATTRIBUTES:
                raise MlflowException.invalid_parameter_value(
                    f"Invalid order by field name: {field}", error_class="ATTRIBUTE_NOT_FOUND")
            seen.add(name)
            clauses.append((lambda d, ms, n=name: d.get(n), ascending))
            continue
        entity, metric = field.split(".", 1)
        if entity != "metrics":
            raise _invalid(f"Invalid order by field name: {field}. Only metrics are supported.")
        clauses.append((lambda d, ms, k=metric, n=ob.get("dataset_name"),
                        g=ob.get("dataset_digest"): _latest_metric(ms, k, n, g), ascending))
    if "creation_timestamp_ms" not in seen:
        clauses.append((lambda d, ms: d["creation_timestamp_ms"], False))
    if "model_id" not in seen:
        clauses.append((lambda d, ms: d["model_id"], True))
    return clauses


def _dataset_filter(filter_string: str | None) -> list[Callable[[dict[str, Any]], bool]]:
    """The filter as predicates over dataset documents, validated as MLflow's
    SQL store validates it."""
    if not filter_string:
        return []
    utils = SearchEvaluationDatasetsUtils
    predicates: list[Callable[[dict[str, Any]], bool]] = []
    for f in utils.parse_search_filter(filter_string):
        kind, key, op, value = f["type"], f["key"], f["comparator"], f["value"]
        if kind == "attribute":
            if utils.is_string_attribute(kind, key, op) and op not in ("=", "!=", "LIKE", "ILIKE") \
                    and not (key == "name" and op == "IN"):
                raise _invalid(f"Invalid comparator for string attribute: {op}")
            if key in utils.NUMERIC_ATTRIBUTES:
                if op not in utils.VALID_NUMERIC_ATTRIBUTE_COMPARATORS:
                    raise _invalid(f"Invalid comparator for numeric attribute: {op}")
                try:
                    if isinstance(value, float):
                        raise ValueError(value)
                    value = int(value)
                except (TypeError, ValueError):
                    raise _invalid(f"Invalid value for numeric attribute '{key}': "
                                   f"{str(value)!r}") from None
            predicates.append(lambda d, k=key, o=op, v=value: _compare(o, d.get(k), v))
        else:
            if op not in ("=", "!=", "LIKE", "ILIKE"):
                raise _invalid(f"Invalid comparator for tag: {op}")
            predicates.append(lambda d, k=key, o=op, v=value: _compare(o, d["tags"].get(k), v))
    return predicates


def _dataset_sort_clauses(order_by: list[str] | None
                          ) -> list[tuple[Callable[[dict[str, Any]], Any], bool]]:
    clauses: list[tuple[Callable[[dict[str, Any]], Any], bool]] = []
    for text in order_by or ["created_time DESC"]:
        kind, key, ascending = \
            SearchEvaluationDatasetsUtils.parse_order_by_for_search_evaluation_datasets(text)
        if kind != "attribute":
            raise _invalid(f"Invalid order_by entity: {kind}")
        clauses.append((lambda d, k=key: d.get(k), ascending))
    clauses.append((lambda d: d["dataset_id"], False))
    return clauses


def _new_record(dataset_id: str, record_id: str, record: dict[str, Any],
                now: int) -> dict[str, Any]:
    source = record.get("source")
    if isinstance(source, dict):
        source = DatasetRecordSource.from_dict(source)
    user = (record.get("tags") or {}).get(MLFLOW_USER)
    entity = DatasetRecord(dataset_record_id=record_id, dataset_id=dataset_id,
                           inputs=record.get("inputs", {}), outputs=record.get("outputs", {}),
                           created_time=now, last_update_time=now,
                           expectations=record.get("expectations"), tags=record.get("tags"),
                           source=source, created_by=user, last_updated_by=user)
    outputs = entity.outputs
    return {
        "dataset_record_id": record_id, "dataset_id": dataset_id, "inputs": entity.inputs,
        "outputs": None if outputs is None else {DATASET_RECORD_WRAPPED_OUTPUT_KEY: outputs},
        "expectations": entity.expectations, "tags": entity.tags,
        "source": entity.source.to_dict() if entity.source else None,
        "source_id": entity.source_id, "source_type": entity.source_type,
        "created_time": now, "last_update_time": now, "created_by": user,
        "last_updated_by": user,
    }


def _merge_record(doc: dict[str, Any], record: dict[str, Any], now: int) -> None:
    """MLflow's record merge: outputs replace, expectations and tags merge,
    the creator and source stay."""
    if "outputs" in record:
        outputs = record["outputs"]
        doc["outputs"] = None if outputs is None else {DATASET_RECORD_WRAPPED_OUTPUT_KEY: outputs}
    if record.get("expectations"):
        doc["expectations"] = {**(doc.get("expectations") or {}), **record["expectations"]}
    tags = record.get("tags")
    if tags:
        doc["tags"] = {**(doc.get("tags") or {}), **tags}
        if MLFLOW_USER in tags:
            doc["last_updated_by"] = tags[MLFLOW_USER]
    doc["last_update_time"] = now


def _check_online_scorer(name: str, serialized: str) -> None:
    """Automatic evaluation runs scorers on gateway models that need no
    expectations (ground truth)."""
    from mlflow.genai.judges.instructions_judge import EXPECTATIONS_FIELD, InstructionsJudge
    from mlflow.genai.scorers.base import Scorer
    from mlflow.genai.scorers.scorer_utils import (extract_model_from_serialized_scorer,
                                                   is_gateway_model)

    if not is_gateway_model(extract_model_from_serialized_scorer(json.loads(serialized))):
        raise _invalid(f"Scorer '{name}' does not use a gateway model. Automatic evaluation "
                       "is only supported for scorers that use gateway models.")
    try:
        scorer = Scorer.model_validate_json(serialized)
    except Exception:  # as MLflow: a scorer that cannot load is not blocked here
        return
    if isinstance(scorer, InstructionsJudge) and EXPECTATIONS_FIELD in scorer.get_input_fields():
        raise _invalid(f"Scorer '{name}' requires expectations, but scorers with expectations "
                       "are not currently supported for automatic evaluation.")
