"""MLflow's entities as the shim returns them: small classes with
MLflow's attribute names (``Run`` with ``.info`` and ``.data``, ``Metric``,
``Experiment``, ``ModelVersion``...).  Needs no mlflow import."""

from __future__ import annotations

from typing import Any

# ----------------------------------------------------------------- entities
class Entity:
    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"<{type(self).__name__}: {body}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __iter__(self):  # MLflow entities iterate as (name, value) pairs
        return ((k, getattr(self, k)) for k in self.__slots__)

    def to_dictionary(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Metric(Entity):
    """One metric value: ``key value timestamp (ms) step``."""

    __slots__ = ("key", "value", "timestamp", "step")

    def __init__(self, key: str, value: float, timestamp: int, step: int) -> None:
        self.key, self.value, self.timestamp, self.step = key, value, timestamp, step


class Param(Entity):
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


class RunTag(Entity):
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


class RunInfo(Entity):
    __slots__ = ("run_id", "experiment_id", "run_name", "user_id", "status", "start_time",
                 "end_time", "artifact_uri", "lifecycle_stage")

    def __init__(self, run_id: str, experiment_id: str, run_name: str, user_id: str,
                 status: str, start_time: int | None, end_time: int | None,
                 artifact_uri: str, lifecycle_stage: str = "active") -> None:
        self.run_id, self.experiment_id, self.run_name = run_id, experiment_id, run_name
        self.user_id, self.status, self.start_time = user_id, status, start_time
        self.end_time, self.artifact_uri = end_time, artifact_uri
        self.lifecycle_stage = lifecycle_stage

    @property
    def run_uuid(self) -> str:
        return self.run_id


class RunData(Entity):
    __slots__ = ("metrics", "params", "tags")

    def __init__(self, metrics: dict[str, float], params: dict[str, str],
                 tags: dict[str, str]) -> None:
        self.metrics, self.params, self.tags = metrics, params, tags


class Run(Entity):
    """``run.info`` (RunInfo) and ``run.data`` (RunData), as in MLflow."""

    __slots__ = ("info", "data")

    def __init__(self, info: RunInfo, data: RunData) -> None:
        self.info, self.data = info, data

    def to_dictionary(self) -> dict[str, Any]:
        return {"info": self.info.to_dictionary(), "data": self.data.to_dictionary()}

class Experiment(Entity):
    __slots__ = ("experiment_id", "name", "artifact_location", "lifecycle_stage", "tags",
                 "creation_time", "last_update_time")

    def __init__(self, experiment_id: str, name: str, artifact_location: str,
                 lifecycle_stage: str, tags: dict[str, str], creation_time: int | None,
                 last_update_time: int | None) -> None:
        self.experiment_id, self.name = experiment_id, name
        self.artifact_location, self.lifecycle_stage = artifact_location, lifecycle_stage
        self.tags, self.creation_time = tags, creation_time
        self.last_update_time = last_update_time


class FileInfo(Entity):
    __slots__ = ("path", "is_dir", "file_size")

    def __init__(self, path: str, is_dir: bool, file_size: int | None) -> None:
        self.path, self.is_dir, self.file_size = path, is_dir, file_size


class ModelVersion(Entity):
    """A registered model version as MLflow shows it: ``version`` is an int
    and ``current_stage`` is None/Staging/Production/Archived."""

    __slots__ = ("name", "version", "creation_timestamp", "last_updated_timestamp",
                 "description", "user_id", "current_stage", "source", "run_id", "status",
                 "status_message", "tags", "run_link", "aliases")

    def __init__(self, name: str, version: int, creation_timestamp: int,
                 last_updated_timestamp: int, description: str, current_stage: str,
                 source: str, run_id: str | None, tags: dict[str, str]) -> None:
        self.name, self.version = name, version
        self.creation_timestamp = creation_timestamp
        self.last_updated_timestamp = last_updated_timestamp
        self.description, self.user_id = description, None
        self.current_stage, self.source, self.run_id = current_stage, source, run_id
        self.status, self.status_message = "READY", None
        self.tags, self.run_link, self.aliases = tags, None, []


class RegisteredModel(Entity):
    __slots__ = ("name", "creation_timestamp", "last_updated_timestamp", "description",
                 "latest_versions", "tags", "aliases")

    def __init__(self, name: str, creation_timestamp: int | None,
                 last_updated_timestamp: int | None, description: str,
                 latest_versions: list[ModelVersion], tags: dict[str, str]) -> None:
        self.name, self.creation_timestamp = name, creation_timestamp
        self.last_updated_timestamp, self.description = last_updated_timestamp, description
        self.latest_versions, self.tags, self.aliases = latest_versions, tags, {}


def mlflow_stage(stage: str) -> str:
    return "None" if stage == "Development" else stage
