"""The ``synadb://`` model registry store: MLflow's whole registry contract
(``AbstractStore``) over :class:`synadb.ModelRegistry` in the same file as
the runs, with the semantics of MLflow's own SQL store.

Where things live:

* a version's bytes, stage, tags and description are a
  :class:`~synadb.ModelRegistry` version (``reg/<model>/<version>``), so
  ``ModelRegistry(path)`` lists, loads and promotes what MLflow registered,
  under the same number;
* what only MLflow has is kept as documents (:mod:`.mlflow_docs`):
  ``reg_model/<name>`` (creation and update times in ms, description, tags,
  aliases, and the registry model that holds its versions),
  ``reg_version/<registry model>/<version>`` (times, source, run id, run
  link, logged model id; after a delete, the redacted tombstone MLflow
  keeps) and ``reg_webhook/<id>`` (secrets encrypted as MLflow does).

A model saved with synadb's own API, and never seen by MLflow, shows in
MLflow as a registered model of the same name.  ``ModelRegistry`` cannot
rename, so a renamed model keeps its versions under the registry name they
were saved with (the model document points there); a model created later
under a name whose registry model is taken this way gets the registry name
``<name>:<n>`` (``:`` never occurs in an MLflow name).  As in synadb, the
numbers of a deleted model's versions are never reused when a model of that
name is created again (MLflow's SQL store would start again at 1).

Prompts are MLflow's ``AbstractStore`` default: registered models tagged
``mlflow.prompt.is_prompt``, which searches leave out unless asked for.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import KeyNotFound, MissingDependency, SynaError
from ..registry import ModelVersion as SynaVersion
from . import mlflow_mapping as mapping
from .mlflow_client import STATE, MlflowClient, get_tracking_uri
from .mlflow_entities import mlflow_stage
from .mlflow_docs import REG_MODEL, Docs, doc_id

try:
    from cryptography.fernet import Fernet, InvalidToken
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
    from mlflow.entities.model_registry import RegisteredModel, RegisteredModelAlias
    from mlflow.entities.model_registry import RegisteredModelTag
    from mlflow.entities.model_registry.model_version_stages import (
        ALL_STAGES, DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS, STAGE_ARCHIVED,
        STAGE_DELETED_INTERNAL, get_canonical_stage)
    from mlflow.entities.model_registry.prompt_version import IS_PROMPT_TAG_KEY
    from mlflow.entities.webhook import Webhook, WebhookEvent, WebhookStatus, WebhookTestResult
    from mlflow.environment_variables import MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY
    from mlflow.exceptions import MlflowException
    from mlflow.prompt.registry_utils import handle_resource_already_exist_error, has_prompt_tag
    from mlflow.protos.databricks_pb2 import (INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS,
                                              RESOURCE_DOES_NOT_EXIST)
    from mlflow.store.artifact.utils.models import _parse_model_uri
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.store.model_registry import (SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
                                             SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD,
                                             SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
                                             SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD)
    from mlflow.store.model_registry.abstract_store import AbstractStore as AbstractRegistryStore
    from mlflow.utils.search_utils import SearchModelUtils, SearchModelVersionUtils, SearchUtils
    from mlflow.utils.time import get_current_time_millis
    from mlflow.utils.validation import (
        _REGISTERED_MODEL_ALIAS_LATEST, _validate_model_alias_name,
        _validate_model_alias_name_reserved, _validate_model_name, _validate_model_renaming,
        _validate_model_version, _validate_model_version_tag, _validate_registered_model_tag,
        _validate_tag_name, _validate_webhook_events, _validate_webhook_name,
        _validate_webhook_url)
except ImportError as e:  # pragma: no cover
    raise MissingDependency("mlflow", "mlflow", "the synadb:// MLflow plugin") from e

__all__ = ["SynaModelRegistryStore"]

MODEL, WEBHOOK = REG_MODEL, "reg_webhook"
_REDACTED = {"description": None, "user_id": None, "source": "REDACTED-SOURCE-PATH",
             "run_id": "REDACTED-RUN-ID", "run_link": "REDACTED-RUN-LINK",
             "status_message": None}
# Like MLflow's SQL store: the key from the environment, else one per process
# (a secret written then cannot be read back by another process).
_PROCESS_KEY = Fernet.generate_key()


def _mlflow_registry(attr: str) -> Any:
    """``attr`` of MLflow's SQL registry module if it is loaded (its clock,
    its tracking client), else MLflow's own: pinning them there, as MLflow's
    tests do, pins ours too.  Never imported here: its import configures
    SqlAlchemy mappers, which a ``-W error`` run refuses."""
    module = sys.modules.get("mlflow.store.model_registry.sqlalchemy_store")
    if module is not None:
        return getattr(module, attr)
    if attr == "MlflowClient":
        from mlflow.tracking.client import MlflowClient

        return MlflowClient
    return get_current_time_millis


def _now() -> int:
    """MLflow's registry clock, in ms."""
    return _mlflow_registry("get_current_time_millis")()


def _version_kind(store: str) -> str:
    return f"reg_version/{doc_id(store)}"


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _model_not_found(name: str) -> MlflowException:
    return MlflowException(f"Registered Model with name={name} not found",
                           RESOURCE_DOES_NOT_EXIST)


def _version_not_found(name: str, version: Any) -> MlflowException:
    return MlflowException(f"Model Version (name={name}, version={version}) not found",
                           RESOURCE_DOES_NOT_EXIST)


def _check_max_results(max_results: Any) -> int:
    max_results = max_results or 100
    if max_results < 1 or max_results > 1000:
        raise MlflowException("max_results must be between 1 and 1000.", INVALID_PARAMETER_VALUE)
    return max_results


def _page(rows: list[Any], page_token: str | None, max_results: int) -> PagedList:
    """One page of ``rows`` and the token of the next (None on the last)."""
    offset = SearchUtils.parse_start_offset_from_page_token(page_token)
    end = offset + max_results
    token = SearchUtils.create_page_token(end) if len(rows) > end else None
    return PagedList(rows[offset:end], token)


def _sorted(rows: list[Any], keys: list[tuple[Callable[[Any], Any], bool]]) -> list[Any]:
    """``rows`` ordered by ``(key, ascending)`` pairs, the first one first."""
    for key, ascending in reversed(keys):
        rows = sorted(rows, key=key, reverse=not ascending)
    return rows


def _querying_prompts(parsed: list[dict[str, Any]]) -> bool:
    """Whether a parsed filter asks for prompts (else prompts are left out)."""
    for f in parsed:
        if f["type"] == "tag" and f["key"] == IS_PROMPT_TAG_KEY:
            return ((f["comparator"] == "=" and f["value"].lower() == "true")
                    or (f["comparator"] == "!=" and f["value"].lower() == "false"))
    return False


def _tag_clause(f: dict[str, Any]) -> Callable[[dict[str, str]], bool]:
    """A tag comparison as MLflow's SQL store runs it: a missing tag never matches."""
    if f["comparator"] not in ("=", "!=", "LIKE", "ILIKE"):
        raise MlflowException.invalid_parameter_value(
            f"Invalid comparator for tag: {f['comparator']}")
    compare = SearchUtils.get_comparison_func(f["comparator"])
    key, value = f["key"], f["value"]
    return lambda tags: key in tags and tags[key] is not None and compare(tags[key], value)


def _tag_clauses(parsed: list[dict[str, Any]]) -> list[Callable[[dict[str, str]], bool]]:
    """The tag clauses; without a prompt query, the prompt tag's clauses drop
    out and prompts are left out altogether (MLflow's SQL store does so)."""
    clauses = [_tag_clause(f) for f in parsed if f["type"] == "tag"
               and (f["key"] != IS_PROMPT_TAG_KEY or _querying_prompts(parsed))]
    if not _querying_prompts(parsed):
        clauses.append(lambda tags: tags.get(IS_PROMPT_TAG_KEY) != "true")
    return clauses


def _model_filter(filter_string: str | None) -> Callable[[RegisteredModel], bool]:
    parsed = SearchModelUtils.parse_search_filter(filter_string)
    names = []
    for f in parsed:
        if f["type"] == "attribute":
            if f["key"] != "name":
                raise MlflowException(f"Invalid attribute name: {f['key']}",
                                      INVALID_PARAMETER_VALUE)
            if f["comparator"] not in ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"):
                raise MlflowException(f"Invalid comparator for attribute: {f['comparator']}",
                                      INVALID_PARAMETER_VALUE)
            names.append((SearchUtils.get_comparison_func(f["comparator"]), f["value"]))
        elif f["type"] != "tag":
            raise MlflowException(f"Invalid token type: {f['type']}", INVALID_PARAMETER_VALUE)
    tags = _tag_clauses(parsed)
    return lambda m: (all(cmp(m.name, v) for cmp, v in names)
                      and all(clause(m._tags) for clause in tags))


def _version_attr(mv: ModelVersion, key: str) -> Any:
    return {"name": mv.name, "version_number": int(mv.version), "run_id": mv.run_id,
            "source_path": mv.source}[key]


def _version_filter(filter_string: str | None) -> Callable[[ModelVersion], bool]:
    parsed = SearchModelVersionUtils.parse_search_filter(filter_string)
    attrs = []
    for f in parsed:
        key, comparator, value = f["key"], f["comparator"], f["value"]
        if f["type"] == "attribute":
            if key not in SearchModelVersionUtils.VALID_SEARCH_ATTRIBUTE_KEYS:
                raise MlflowException(f"Invalid attribute name: {key}", INVALID_PARAMETER_VALUE)
            if key in SearchModelVersionUtils.NUMERIC_ATTRIBUTES:
                if comparator not in SearchModelVersionUtils.VALID_NUMERIC_ATTRIBUTE_COMPARATORS:
                    raise MlflowException(f"Invalid comparator for attribute {key}: {comparator}",
                                          INVALID_PARAMETER_VALUE)
                try:
                    if isinstance(value, float):
                        raise ValueError(value)
                    value = int(value)
                except (TypeError, ValueError):
                    raise MlflowException.invalid_parameter_value(
                        f"Invalid value for numeric attribute '{key}': {value!r}") from None
            elif (comparator not in SearchModelVersionUtils.VALID_STRING_ATTRIBUTE_COMPARATORS
                  or (comparator in ("IN", "NOT IN") and key not in ("run_id", "name"))):
                raise MlflowException(f"Invalid comparator for attribute: {comparator}",
                                      INVALID_PARAMETER_VALUE)
            attrs.append((key, SearchUtils.get_comparison_func(comparator), value))
        elif f["type"] != "tag":
            raise MlflowException(f"Invalid token type: {f['type']}", INVALID_PARAMETER_VALUE)
    tags = _tag_clauses(parsed)

    def match(mv: ModelVersion) -> bool:
        for key, cmp, value in attrs:
            have = _version_attr(mv, key)
            if have is None or not cmp(have, value):  # SQL: NULL matches nothing
                return False
        return all(clause(mv.tags) for clause in tags)

    return match


def _model_order(order_by: Sequence[str] | None
                 ) -> list[tuple[Callable[[RegisteredModel], Any], bool]]:
    keys, seen = [], set()
    for clause in order_by or []:
        token, ascending = SearchUtils.parse_order_by_for_search_registered_models(clause)
        if token == "name":
            field = "name"
        elif token in SearchUtils.VALID_TIMESTAMP_ORDER_BY_KEYS:
            field = "last_updated_timestamp"  # as in MLflow's SQL store, every timestamp key
        else:
            raise MlflowException(
                f"Invalid order by key '{token}' specified.Valid keys are "
                f"'{SearchUtils.RECOMMENDED_ORDER_BY_KEYS_REGISTERED_MODELS}'",
                INVALID_PARAMETER_VALUE)
        if field in seen:
            raise MlflowException(f"`order_by` contains duplicate fields: {order_by}")
        seen.add(field)
        keys.append((lambda m, f=field: getattr(m, f), ascending))
    if "name" not in seen:
        keys.append((lambda m: m.name, True))
    return keys


_VERSION_ORDER_FIELDS = {"name": "name", "version_number": "version",
                         "creation_timestamp": "creation_timestamp",
                         "last_updated_timestamp": "last_updated_timestamp"}


def _version_order(order_by: Sequence[str]) -> list[tuple[Callable[[ModelVersion], Any], bool]]:
    keys, seen = [], set()
    for clause in order_by:
        _, key, ascending = SearchModelVersionUtils.parse_order_by_for_search_model_versions(
            clause)
        if key not in SearchModelVersionUtils.VALID_ORDER_BY_ATTRIBUTE_KEYS:
            raise MlflowException(
                f"Invalid order by key '{key}' specified. Valid keys are "
                f"{SearchModelVersionUtils.VALID_ORDER_BY_ATTRIBUTE_KEYS}",
                INVALID_PARAMETER_VALUE)
        field = _VERSION_ORDER_FIELDS[key]
        if field in seen:
            raise MlflowException(f"`order_by` contains duplicate fields: {order_by}")
        seen.add(field)
        keys.append((lambda mv, f=field: getattr(mv, f), ascending))
    if "name" not in seen:
        keys.append((lambda mv: mv.name, True))
    if "version" not in seen:
        keys.append((lambda mv: mv.version, False))
    return keys


def _cipher() -> Fernet:
    """The cipher of webhook secrets (MLflow's key variable, as its SQL store)."""
    return Fernet(MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY.get() or _PROCESS_KEY)


def _webhook(doc: dict[str, Any]) -> Webhook:
    secret = None
    if doc.get("secret") is not None:
        try:
            secret = _cipher().decrypt(doc["secret"].encode()).decode()
        except InvalidToken:  # written under another key: not readable here
            secret = None
    return Webhook(webhook_id=doc["id"], name=doc["name"], url=doc["url"],
                   events=[WebhookEvent(e, a) for e, a in doc["events"]],
                   creation_timestamp=doc["created"], last_updated_timestamp=doc["updated"],
                   description=doc.get("description"), status=WebhookStatus(doc["status"]),
                   secret=secret)


class SynaModelRegistryStore(AbstractRegistryStore):
    """MLflow's model registry store over ``ModelRegistry`` in the same file."""

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None, *,
                 read_only: bool = False) -> None:
        super().__init__(store_uri, tracking_uri)
        self.path = mapping.parse_tracking_uri(store_uri or get_tracking_uri())
        # One registry handle per file and process, shared with the shim's client.
        self.registry = STATE.registry(self.path, read_only)
        self.docs = Docs(self.registry.db)

    # -- storage -----------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[None]:
        """One atomic read-modify-write; synadb's errors become MLflow's."""
        with self._errors(), self.docs.atomic():
            yield

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """synadb's errors (a damaged record, a bad name) as MLflow's."""
        try:
            yield
        except KeyNotFound as e:
            raise MlflowException(str(e), RESOURCE_DOES_NOT_EXIST) from e
        except SynaError as e:
            raise MlflowException(str(e), INVALID_PARAMETER_VALUE) from e

    def _claimed(self) -> set[str]:
        """Registry models that hold an MLflow model's versions."""
        return {d["store"] for d in self.docs.all(MODEL)}

    def _native(self, name: str) -> dict[str, Any] | None:
        """The model document of a model saved with synadb's own API only."""
        versions = self.registry.list_versions(name)
        if not versions or name in self._claimed():
            return None
        first = min(_ms(v.created_at) for v in versions)
        updated = max(_ms(max(v.created_at, v.stage_changed_at)) for v in versions)
        return {"name": name, "store": name, "created": first, "updated": updated,
                "description": None, "tags": {}, "aliases": {}}

    def _model(self, name: str) -> dict[str, Any]:
        """The model document of ``name`` (RESOURCE_DOES_NOT_EXIST if none)."""
        _validate_model_name(name)
        doc = self.docs.get(MODEL, doc_id(name)) or self._native(name)
        if doc is None:
            raise _model_not_found(name)
        return doc

    def _put_model(self, doc: dict[str, Any]) -> None:
        self.docs.put(MODEL, doc_id(doc["name"]), doc)

    def _version_doc(self, store: str, rv: SynaVersion) -> dict[str, Any]:
        """The MLflow fields of a version (made up from the registry entry
        for a version synadb saved itself)."""
        doc = self.docs.get(_version_kind(store), rv.version)
        if doc is not None:
            return doc
        meta = rv.metadata or {}
        return {"created": _ms(rv.created_at),
                "updated": _ms(max(rv.created_at, rv.stage_changed_at)),
                "description": None, "user_id": None, "source": str(meta.get("source", "")),
                "storage": None, "run_id": meta.get("run_id"), "run_link": None,
                "status": "READY", "status_message": None, "model_id": None}

    def _live(self, name: str, version: Any) -> tuple[dict[str, Any], int, SynaVersion]:
        """A live version: its model's document, number and registry entry
        (as in MLflow's SQL store, a missing model is a missing version)."""
        _validate_model_name(name)
        v = _validate_model_version(version)
        doc = self.docs.get(MODEL, doc_id(name)) or self._native(name)
        try:
            if doc is not None:
                return doc, v, self.registry.get_version(doc["store"], v)
        except KeyNotFound:
            pass
        raise _version_not_found(name, v)

    def _entity(self, model: dict[str, Any], rv: SynaVersion,
                doc: dict[str, Any] | None = None, with_aliases: bool = True) -> ModelVersion:
        """The MLflow version.  As in MLflow's SQL store, the versions a search
        or a registered model lists carry no aliases (``with_aliases=False``);
        the model carries them."""
        doc = doc or self._version_doc(model["store"], rv)
        aliases = [a for a, v in model["aliases"].items()
                   if v == rv.version] if with_aliases else []
        return ModelVersion(
            model["name"], rv.version, doc["created"], doc["updated"],
            rv.description or doc["description"], doc["user_id"],
            mlflow_stage(rv.stage), doc["source"], doc["run_id"], doc["status"],
            doc["status_message"], [ModelVersionTag(k, v) for k, v in rv.tags.items()],
            doc["run_link"], aliases, model_id=doc.get("model_id"))

    def _versions(self, model: dict[str, Any], with_aliases: bool = False
                  ) -> list[ModelVersion]:
        """Every live version of ``model``, oldest first."""
        store = model["store"]
        rvs = self.registry.list_versions(store)
        docs = self.docs.many(_version_kind(store), [str(rv.version) for rv in rvs])
        return [self._entity(model, rv, doc, with_aliases) for rv, doc in zip(rvs, docs)]

    def _latest(self, model: dict[str, Any], with_aliases: bool = False) -> list[ModelVersion]:
        """The highest version in each stage."""
        latest: dict[str, ModelVersion] = {}
        for mv in self._versions(model, with_aliases):  # oldest first: the last one stays
            latest[mv.current_stage] = mv
        return list(latest.values())

    def _registered(self, model: dict[str, Any]) -> RegisteredModel:
        live = {rv.version for rv in self.registry.list_versions(model["store"])}
        return RegisteredModel(
            model["name"], model["created"], model["updated"], model["description"],
            self._latest(model), [RegisteredModelTag(k, v) for k, v in model["tags"].items()],
            [RegisteredModelAlias(a, v) for a, v in model["aliases"].items() if v in live],
            deployment_job_id=model.get("deployment_job_id"))

    def _all_models(self) -> list[dict[str, Any]]:
        docs = self.docs.all(MODEL)
        claimed = {d["store"] for d in docs}
        natives = [self._native(n) for n in self.registry.list_models() if n not in claimed]
        return docs + [d for d in natives if d is not None]

    def _source_bytes(self, source: str) -> Any:
        """What a version's bytes are: the run artifact a ``runs:/<id>/<file>``
        source names, or the local file it names; empty otherwise (a folder,
        a remote URI, a logged model)."""
        parsed = urllib.parse.urlparse(source)
        if parsed.scheme == "runs":
            run_id, _, artifact = parsed.path.lstrip("/").partition("/")
            tracker = MlflowClient(self.path).tracker
            try:
                if artifact in tracker.list_artifacts(run_id):
                    return tracker.get_artifact(run_id, artifact)
            except SynaError:
                return b""
        elif not parsed.scheme and source and os.path.isfile(source):
            return source
        return b""

    # -- registered models ------------------------------------------------
    def create_registered_model(self, name, tags=None, description=None,
                                deployment_job_id=None) -> RegisteredModel:
        _validate_model_name(name)
        for tag in tags or []:
            _validate_registered_model_tag(tag.key, tag.value)
        with self._write():
            existing = self.docs.get(MODEL, doc_id(name)) or self._native(name)
            if existing is not None:
                handle_resource_already_exist_error(name, has_prompt_tag(existing["tags"]),
                                                    has_prompt_tag(tags))
            claimed = self._claimed()
            store, n = name, 1
            while store in claimed:
                n += 1
                store = f"{name}:{n}"
            now = _now()
            doc = {"name": name, "store": store, "created": now, "updated": now,
                   "description": description, "tags": {t.key: t.value for t in tags or []},
                   "aliases": {}, "deployment_job_id": deployment_job_id}
            self._put_model(doc)
        return self._registered(doc)

    def update_registered_model(self, name, description,
                                deployment_job_id=None) -> RegisteredModel:
        with self._write():
            doc = self._model(name)
            doc["description"], doc["updated"] = description, _now()
            self._put_model(doc)
        return self._registered(doc)

    def rename_registered_model(self, name, new_name) -> RegisteredModel:
        _validate_model_renaming(new_name)
        with self._write():
            doc = self._model(name)
            if new_name != name and (self.docs.get(MODEL, doc_id(new_name))
                                     or self._native(new_name)):
                raise MlflowException(f"Registered Model (name={new_name}) already exists.",
                                      RESOURCE_ALREADY_EXISTS)
            now = _now()
            kind = _version_kind(doc["store"])
            for rv in self.registry.list_versions(doc["store"]):
                vdoc = self._version_doc(doc["store"], rv)
                vdoc["updated"] = now
                self.docs.put(kind, rv.version, vdoc)
            self.docs.delete(MODEL, doc_id(name))
            doc["name"], doc["updated"] = new_name, now
            self._put_model(doc)
        return self._registered(doc)

    def delete_registered_model(self, name) -> None:
        with self._write():
            doc = self._model(name)
            if self.registry.list_versions(doc["store"]):
                self.registry.delete(doc["store"])
            kind = _version_kind(doc["store"])
            for v in self.docs.ids(kind):
                self.docs.delete(kind, v)
            self.docs.delete(MODEL, doc_id(name))

    def search_registered_models(self, filter_string=None,
                                 max_results=SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
                                 order_by=None, page_token=None) -> PagedList:
        if max_results is None:
            max_results = SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT
        if max_results > SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD:
            raise MlflowException(
                "Invalid value for request parameter max_results. It must be at most "
                f"{SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD}, but got value {max_results}",
                INVALID_PARAMETER_VALUE)
        match = _model_filter(filter_string)
        order = _model_order(order_by)
        SearchUtils.parse_start_offset_from_page_token(page_token)
        with self._errors():
            models = [self._registered(d) for d in self._all_models()]
        return _page(_sorted([m for m in models if match(m)], order), page_token, max_results)

    def get_registered_model(self, name) -> RegisteredModel:
        with self._errors():
            return self._registered(self._model(name))

    def get_latest_versions(self, name, stages=None) -> list[ModelVersion]:
        with self._errors():
            latest = self._latest(self._model(name), with_aliases=True)
        wanted = {get_canonical_stage(s) for s in (stages or ALL_STAGES)}
        return [mv for mv in latest if mv.current_stage in wanted]

    def set_registered_model_tag(self, name, tag) -> None:
        _validate_model_name(name)
        _validate_registered_model_tag(tag.key, tag.value)
        with self._write():
            doc = self._model(name)
            doc["tags"][tag.key] = tag.value
            self._put_model(doc)

    def delete_registered_model_tag(self, name, key) -> None:
        _validate_model_name(name)
        _validate_tag_name(key)
        with self._write():
            doc = self._model(name)
            if key in doc["tags"]:
                del doc["tags"][key]
                self._put_model(doc)

    # -- model versions ---------------------------------------------------
    def _storage_location(self, source: str, run_id: str | None) -> tuple[str, str | None]:
        """Where a ``models:/`` source's files are, and the run behind it."""
        if urllib.parse.urlparse(source).scheme != "models":
            return source, run_id
        parsed = _parse_model_uri(source)
        try:
            if parsed.model_id is not None:
                model = _mlflow_registry("MlflowClient")().get_logged_model(parsed.model_id)
                return model.artifact_location, run_id or model.source_run_id
            return self.get_model_version_download_uri(parsed.name, parsed.version), run_id
        except Exception as e:
            raise MlflowException(
                f"Unable to fetch model from model URI source artifact location '{source}'."
                f"Error: {e}") from e

    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None,
                             description=None, local_model_path=None,
                             model_id=None) -> ModelVersion:
        _validate_model_name(name)
        for tag in tags or []:
            _validate_model_version_tag(tag.key, tag.value)
        storage, run_id = self._storage_location(source, run_id)
        if not run_id and model_id:
            run_id = _mlflow_registry("MlflowClient")().get_logged_model(model_id).source_run_id
        data = self._source_bytes(source)
        with self._write():
            doc = self._model(name)
            now = _now()
            rv = self.registry.save_model(
                doc["store"], data, {"source": source, "run_id": run_id},
                description=description or "", tags={t.key: t.value for t in tags or []})
            vdoc = {"created": now, "updated": now, "description": description,
                    "user_id": None, "source": source,
                    "storage": storage if storage != source else None, "run_id": run_id,
                    "run_link": run_link, "status": "READY", "status_message": None,
                    "model_id": model_id}
            self.docs.put(_version_kind(doc["store"]), rv.version, vdoc)
            doc["updated"] = now
            self._put_model(doc)
        return self._entity(doc, rv, vdoc)

    def update_model_version(self, name, version, description=None) -> ModelVersion:
        with self._write():
            doc, v, rv = self._live(name, version)
            vdoc = self._version_doc(doc["store"], rv)
            vdoc["description"], vdoc["updated"] = description, _now()
            rv = self.registry.set_description(doc["store"], v, description or "")
            self.docs.put(_version_kind(doc["store"]), v, vdoc)
        return self._entity(doc, rv, vdoc)

    def transition_model_version_stage(self, name, version, stage,
                                       archive_existing_versions) -> ModelVersion:
        target = get_canonical_stage(stage)
        if archive_existing_versions and target not in DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS:
            raise MlflowException(
                "Model version transition cannot archive existing model versions because "
                f"'{stage}' is not an Active stage. Valid stages are "
                f"{DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS}")
        with self._write():
            doc, v, rv = self._live(name, version)
            store, kind, now = doc["store"], _version_kind(doc["store"]), _now()
            moves = [(rv, target)]
            if archive_existing_versions:
                moves += [(other, STAGE_ARCHIVED) for other in self.registry.list_versions(store)
                          if other.version != v and mlflow_stage(other.stage) == target]
            for entry, to in moves:
                self.registry.set_stage(store, entry.version, to, archive_existing=False)
                vdoc = self._version_doc(store, entry)
                vdoc["updated"] = now
                self.docs.put(kind, entry.version, vdoc)
            doc["updated"] = now
            self._put_model(doc)
            return self._entity(doc, self.registry.get_version(store, v))

    def delete_model_version(self, name, version) -> None:
        version = _validate_model_version(version)
        with self._write():
            doc, v, rv = self._live(name, version)
            vdoc = self._version_doc(doc["store"], rv)
            now = _now()
            vdoc.update(_REDACTED, updated=now, deleted=True)
            self.docs.put(_version_kind(doc["store"]), v, vdoc)
            self.registry.delete(doc["store"], v)
            doc["aliases"] = {a: n for a, n in doc["aliases"].items() if n != v}
            doc["updated"] = now
            self._put_model(doc)

    def _get_sql_model_version_including_deleted(self, name, version) -> ModelVersion:
        """A version, deleted ones too (redacted): the hook MLflow's tests use
        to check that a delete redacts what it keeps."""
        with self._errors():
            doc = self._model(name)
            v = _validate_model_version(version)
            vdoc = self.docs.get(_version_kind(doc["store"]), v)
            if vdoc is None or not vdoc.get("deleted"):
                doc, _, rv = self._live(name, v)
                return self._entity(doc, rv, vdoc)
        return ModelVersion(name, v, vdoc["created"], vdoc["updated"], None, None,
                            STAGE_DELETED_INTERNAL, vdoc["source"], vdoc["run_id"],
                            vdoc["status"], None, [], vdoc["run_link"], [],
                            model_id=vdoc.get("model_id"))

    def get_model_version(self, name, version) -> ModelVersion:
        with self._errors():
            doc, _, rv = self._live(name, version)
            return self._entity(doc, rv)

    def get_model_version_download_uri(self, name, version) -> str:
        with self._errors():
            doc, _, rv = self._live(name, version)
            vdoc = self._version_doc(doc["store"], rv)
        return vdoc.get("storage") or vdoc["source"]

    def search_model_versions(self, filter_string=None,
                              max_results=SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
                              order_by=None, page_token=None) -> PagedList:
        if not isinstance(max_results, int) or max_results < 1:
            raise MlflowException("Invalid value for max_results. It must be a positive "
                                  f"integer, but got {max_results}", INVALID_PARAMETER_VALUE)
        if max_results > SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD:
            raise MlflowException(
                "Invalid value for request parameter max_results. It must be at most "
                f"{SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD}, but got value {max_results}",
                INVALID_PARAMETER_VALUE)
        match = _version_filter(filter_string)
        order = _version_order(
            order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"])
        SearchUtils.parse_start_offset_from_page_token(page_token)
        with self._errors():
            versions = [mv for d in self._all_models() for mv in self._versions(d)]
        return _page(_sorted([mv for mv in versions if match(mv)], order), page_token,
                     max_results)

    def set_model_version_tag(self, name, version, tag) -> None:
        _validate_model_name(name)
        version = _validate_model_version(version)
        _validate_model_version_tag(tag.key, tag.value)
        with self._write():
            doc = self._live(name, version)[0]
            self.registry.set_tag(doc["store"], version, tag.key, tag.value)

    def delete_model_version_tag(self, name, version, key) -> None:
        _validate_model_name(name)
        version = _validate_model_version(version)
        _validate_tag_name(key)
        with self._write():
            doc = self._live(name, version)[0]
            self.registry.delete_tag(doc["store"], version, key)

    # -- aliases ----------------------------------------------------------
    def set_registered_model_alias(self, name, alias, version) -> None:
        _validate_model_name(name)
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
        version = _validate_model_version(version)
        with self._write():
            doc = self._live(name, version)[0]
            doc["aliases"][alias] = version
            self._put_model(doc)

    def delete_registered_model_alias(self, name, alias) -> None:
        _validate_model_name(name)
        _validate_model_alias_name(alias)
        with self._write():
            doc = self._model(name)
            if doc["aliases"].pop(alias, None) is not None:
                self._put_model(doc)

    def get_model_version_by_alias(self, name, alias) -> ModelVersion:
        _validate_model_name(name)
        _validate_model_alias_name(alias)
        if alias.lower() == _REGISTERED_MODEL_ALIAS_LATEST:
            if versions := self.get_latest_versions(name):
                return max(versions, key=lambda mv: int(mv.version))
            raise MlflowException(f"Latest version not found for model {name}.",
                                  RESOURCE_DOES_NOT_EXIST)
        with self._errors():
            doc = self._model(name)
            version = doc["aliases"].get(alias)
            if version is not None:
                doc, _, rv = self._live(name, version)
                return self._entity(doc, rv)
        raise MlflowException(f"Registered model alias {alias} not found.",
                              INVALID_PARAMETER_VALUE)

    def _await_model_version_creation(self, mv, await_creation_for) -> None:
        """A version is READY once created: nothing to wait for."""

    # -- webhooks ---------------------------------------------------------
    def _webhook_doc(self, webhook_id: str) -> dict[str, Any]:
        doc = self.docs.get(WEBHOOK, doc_id(webhook_id))
        if doc is None:
            raise MlflowException(f"Webhook with ID {webhook_id} not found.",
                                  RESOURCE_DOES_NOT_EXIST)
        return doc

    def create_webhook(self, name: str, url: str, events: list[WebhookEvent],
                       description: str | None = None, secret: str | None = None,
                       status: WebhookStatus | None = None) -> Webhook:
        _validate_webhook_name(name)
        _validate_webhook_url(url)
        _validate_webhook_events(events)
        now = _now()
        doc = {"id": str(uuid.uuid4()), "name": name, "url": url,
               "events": [[e.entity.value, e.action.value] for e in events],
               "description": description,
               "secret": None if secret is None else _cipher().encrypt(secret.encode()).decode(),
               "status": (status or WebhookStatus.ACTIVE).value, "created": now, "updated": now}
        with self._write():
            self.docs.put(WEBHOOK, doc_id(doc["id"]), doc)
        return _webhook(doc)

    def get_webhook(self, webhook_id: str) -> Webhook:
        return _webhook(self._webhook_doc(webhook_id))

    def _webhooks(self, keep: Callable[[dict[str, Any]], bool], max_results: int | None,
                  page_token: str | None) -> PagedList:
        """Webhooks newest first, paged as MLflow's SQL store pages them."""
        max_results = _check_max_results(max_results)
        SearchUtils.parse_start_offset_from_page_token(page_token)
        docs = list(enumerate(d for d in self.docs.all(WEBHOOK) if keep(d)))
        docs.sort(key=lambda pair: (pair[1]["created"], pair[0]), reverse=True)
        return _page([_webhook(d) for _, d in docs], page_token, max_results)

    def list_webhooks(self, max_results: int | None = None,
                      page_token: str | None = None) -> PagedList:
        return self._webhooks(lambda d: True, max_results, page_token)

    def list_webhooks_by_event(self, event: WebhookEvent, max_results: int | None = None,
                               page_token: str | None = None) -> PagedList:
        want = [event.entity.value, event.action.value]
        return self._webhooks(lambda d: want in d["events"], max_results, page_token)

    def update_webhook(self, webhook_id: str, name: str | None = None,
                       description: str | None = None, url: str | None = None,
                       events: list[WebhookEvent] | None = None, secret: str | None = None,
                       status: WebhookStatus | None = None) -> Webhook:
        with self._write():
            doc = self._webhook_doc(webhook_id)
            if name is not None:
                _validate_webhook_name(name)
                doc["name"] = name
            if url is not None:
                _validate_webhook_url(url)
                doc["url"] = url
            if events is not None:
                _validate_webhook_events(events)
                doc["events"] = [[e.entity.value, e.action.value] for e in events]
            if description is not None:
                doc["description"] = description
            if secret is not None:
                doc["secret"] = _cipher().encrypt(secret.encode()).decode()
            if status is not None:
                doc["status"] = status.value
            doc["updated"] = _now()
            self.docs.put(WEBHOOK, doc_id(doc["id"]), doc)
        return _webhook(doc)

    def delete_webhook(self, webhook_id: str) -> None:
        with self._write():
            self._webhook_doc(webhook_id)
            self.docs.delete(WEBHOOK, doc_id(webhook_id))

    def test_webhook(self, webhook_id: str,
                     event: WebhookEvent | None = None) -> WebhookTestResult:
        """Send a test payload to the webhook's URL (as MLflow's server does)."""
        from mlflow.webhooks.delivery import test_webhook

        return test_webhook(self.get_webhook(webhook_id), event)
