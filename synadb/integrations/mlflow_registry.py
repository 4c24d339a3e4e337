"""The ``synadb://`` model registry store: MLflow's registry API over
:class:`synadb.ModelRegistry` in the same file as the runs, with MLflow 3's
aliases, prompts and webhooks kept as documents (:mod:`.mlflow_docs`)."""

from __future__ import annotations

from ..errors import MissingDependency
from . import mlflow as shim
from .mlflow_docs import Docs
from .mlflow_common import code as _code, wrap as _wrap

try:
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
    from mlflow.entities.model_registry import RegisteredModel, RegisteredModelTag
    from mlflow.exceptions import MlflowException
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.store.model_registry.abstract_store import AbstractStore as AbstractRegistryStore
    from mlflow.utils.search_utils import SearchModelUtils, SearchModelVersionUtils, SearchUtils
except ImportError as e:  # pragma: no cover
    raise MissingDependency("mlflow", "mlflow", "the synadb:// MLflow plugin") from e

__all__ = ["SynaModelRegistryStore"]


def _to_version(v: shim.ModelVersion) -> ModelVersion:
    return ModelVersion(v.name, v.version, v.creation_timestamp, v.last_updated_timestamp,
                        v.description, None, v.current_stage, v.source, v.run_id, "READY",
                        None, [ModelVersionTag(k, val) for k, val in v.tags.items()])


def _to_model(m: shim.RegisteredModel) -> RegisteredModel:
    return RegisteredModel(m.name, m.creation_timestamp, m.last_updated_timestamp,
                           m.description, [_to_version(v) for v in m.latest_versions],
                           [RegisteredModelTag(k, v) for k, v in m.tags.items()])


class SynaModelRegistryStore(AbstractRegistryStore):
    """MLflow's model registry store over ``ModelRegistry`` in the same file."""

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None) -> None:
        super().__init__(store_uri, tracking_uri)
        self.path = shim.parse_tracking_uri(store_uri or shim.get_tracking_uri())
        self.client = shim.MlflowClient(self.path)
        self.docs = Docs(self.client.tracker.db)

    def create_registered_model(self, name, tags=None, description=None,
                                deployment_job_id=None):
        tag_map = {t.key: t.value for t in (tags or [])}
        return _to_model(_wrap(self.client.create_registered_model, name, tag_map, description))

    def update_registered_model(self, name, description, deployment_job_id=None):
        raise MlflowException("updating a registered model's description is not supported",
                              _code("INVALID_PARAMETER_VALUE"))

    def rename_registered_model(self, name, new_name):
        raise MlflowException("renaming registered models is not supported",
                              _code("INVALID_PARAMETER_VALUE"))

    def delete_registered_model(self, name):
        _wrap(self.client.delete_registered_model, name)

    def search_registered_models(self, filter_string=None, max_results=None, order_by=None,
                                 page_token=None):
        models = [_to_model(m) for m in _wrap(self.client.search_registered_models)]
        models = SearchModelUtils.filter(models, filter_string)
        models = SearchModelUtils.sort(models, order_by)
        page, token = SearchUtils.paginate(models, page_token, max_results or 100)
        return PagedList(page, token)

    def get_registered_model(self, name):
        return _to_model(_wrap(self.client.get_registered_model, name))

    def get_latest_versions(self, name, stages=None):
        return [_to_version(v) for v in _wrap(self.client.get_latest_versions, name, stages)]

    def set_registered_model_tag(self, name, tag):
        _wrap(self.client.set_registered_model_tag, name, tag.key, tag.value)

    def delete_registered_model_tag(self, name, key):
        raise MlflowException("deleting registered model tags is not supported",
                              _code("INVALID_PARAMETER_VALUE"))

    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None,
                             description=None, local_model_path=None, model_id=None):
        tag_map = {t.key: t.value for t in (tags or [])}
        return _to_version(_wrap(self.client.create_model_version, name, source, run_id,
                                 tag_map, run_link, description))

    def update_model_version(self, name, version, description):
        return _to_version(_wrap(self.client.update_model_version, name, version, description))

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        return _to_version(_wrap(self.client.transition_model_version_stage, name, version,
                                 stage, archive_existing_versions))

    def delete_model_version(self, name, version):
        _wrap(self.client.delete_model_version, name, version)

    def get_model_version(self, name, version):
        return _to_version(_wrap(self.client.get_model_version, name, version))

    def get_model_version_download_uri(self, name, version):
        return self.get_model_version(name, version).source

    def search_model_versions(self, filter_string=None, max_results=None, order_by=None,
                              page_token=None):
        versions = [_to_version(v) for v in _wrap(self.client.search_model_versions)]
        versions = SearchModelVersionUtils.filter(versions, filter_string)
        versions = SearchModelVersionUtils.sort(versions, order_by)
        page, token = SearchUtils.paginate(versions, page_token, max_results or 10000)
        return PagedList(page, token)

    def set_model_version_tag(self, name, version, tag):
        _wrap(self.client.set_model_version_tag, name, version, tag.key, tag.value)

    def delete_model_version_tag(self, name, version, key):
        _wrap(self.client.delete_model_version_tag, name, version, key)

    def set_registered_model_alias(self, name, alias, version):
        raise MlflowException("model aliases are not supported by synadb",
                              _code("INVALID_PARAMETER_VALUE"))

    def delete_registered_model_alias(self, name, alias):
        raise MlflowException("model aliases are not supported by synadb",
                              _code("INVALID_PARAMETER_VALUE"))

    def get_model_version_by_alias(self, name, alias):
        raise MlflowException("model aliases are not supported by synadb",
                              _code("RESOURCE_DOES_NOT_EXIST"))
