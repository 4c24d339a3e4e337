"""The ``synadb://`` entry points MLflow loads (``mlflow.tracking_store``,
``mlflow.artifact_repository``, ``mlflow.model_registry_store``).

MLflow loads its plugins while ``import mlflow`` is still running.  The
stores import mlflow's entities, which can start that import: had the entry
points named the store classes, MLflow would find their module half
loaded and drop the plugin with a "circular import" warning.  These
factories import the stores only when MLflow first asks for one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["tracking_store", "artifact_repository", "model_registry_store"]


def tracking_store(store_uri: str | None = None, artifact_uri: str | None = None) -> Any:
    from .mlflow_store import SynaTrackingStore

    return SynaTrackingStore(store_uri, artifact_uri)


def artifact_repository(artifact_uri: str, *args: Any, **kwargs: Any) -> Any:
    from .mlflow_store import SynaArtifactRepository

    return SynaArtifactRepository(artifact_uri, *args, **kwargs)


def model_registry_store(store_uri: str | None = None, tracking_uri: str | None = None) -> Any:
    from .mlflow_registry import SynaModelRegistryStore

    return SynaModelRegistryStore(store_uri, tracking_uri)
