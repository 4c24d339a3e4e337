"""MLflow's view of a file's experiments: integer ids and the fields
synadb's tracker keeps no place for (lifecycle stage, artifact location,
tags set later, last update time).

Shared by the shim (:mod:`.mlflow`) and the ``synadb://`` plugin
(:mod:`.mlflow_store`), so a script on either sees the same ids.  Needs no
mlflow import.

Ids are MLflow's: ``"0"`` is the Default experiment, the others count up
from 1 in the order MLflow first saw them.  An experiment that synadb's own
tracker created (``ExperimentTracker.start_run("cifar")``) gets its id the
first time an MLflow client lists the file.  Each id's document,
``mlflow/expid/<id>``, holds ``{"name", "tags", "lifecycle_stage",
"created", "updated", "artifact_location"}``.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from ..errors import KeyNotFound
from ..tracking import ExperimentTracker
from .mlflow_docs import Docs

__all__ = ["ExperimentCatalog", "catalog", "DEFAULT_EXPERIMENT", "DEFAULT_EXPERIMENT_ID"]

DEFAULT_EXPERIMENT = "Default"
DEFAULT_EXPERIMENT_ID = "0"
_KIND = "expid"
_LEGACY = "exp"  # before ids: mlflow/exp/<name> held tags and the lifecycle stage
# Keys whose change can change the table (ours, and the tracker's experiments).
_WATCH = (f"mlflow/{_KIND}/", "exp/")
_CATALOGS: "weakref.WeakKeyDictionary[ExperimentTracker, ExperimentCatalog]" = \
    weakref.WeakKeyDictionary()


def _now() -> float:
    """Now, in whole milliseconds (MLflow's times are ms, truncated)."""
    return int(time.time() * 1000) / 1000


def _whole_ms(seconds: float | None) -> float | None:
    """A time cut to whole milliseconds, as MLflow's are (rounded up, a
    creation time could pass a later ``creation_time >= t`` filter)."""
    return None if seconds is None else int(seconds * 1000) / 1000


def catalog(tracker: ExperimentTracker) -> "ExperimentCatalog":
    """The catalog of ``tracker``'s file (one per tracker handle, so its
    cache is shared by every client on that handle)."""
    cat = _CATALOGS.get(tracker)
    if cat is None:
        cat = _CATALOGS[tracker] = ExperimentCatalog(tracker)
    return cat


class ExperimentCatalog:
    """Experiment ids <-> names, and MLflow's experiment fields."""

    def __init__(self, tracker: ExperimentTracker) -> None:
        self.tracker = tracker
        self.docs = Docs(tracker.db)
        self._cache: dict[str, dict[str, Any]] | None = None
        self._salt = 0
        self._end = 0

    def table(self) -> dict[str, dict[str, Any]]:
        """id -> document for every experiment, numbering the new ones (and
        creating Default, which MLflow clients assume every store has).

        Cached until a key that names an experiment is written (by any
        process): a lookup costs a look at the keys written since."""
        storage = self.tracker.db.storage
        if self._cache is not None and storage.salt() == self._salt:
            changed, end = storage.keys_written_since(self._end)
            if not any(k.startswith(_WATCH) for k in changed):
                self._end = end
                return self._cache
        self._salt, self._end = storage.salt(), storage.log_end()
        self._cache = table = self._load()
        return table

    def _load(self) -> dict[str, dict[str, Any]]:
        ids = self.docs.ids(_KIND)
        table = {i: d for i, d in zip(ids, self.docs.many(_KIND, ids)) if d is not None}
        known = {d["name"] for d in table.values()}
        if DEFAULT_EXPERIMENT_ID in table and all(
                n in known for n in self.tracker.list_experiments()):
            return table
        if self.tracker.db.config.read_only:
            return self._provisional(table, known)
        with self.docs.atomic():
            ids = self.docs.ids(_KIND)
            table = {i: d for i, d in zip(ids, self.docs.many(_KIND, ids)) if d is not None}
            known = {d["name"] for d in table.values()}
            names = self.tracker.list_experiments()
            if DEFAULT_EXPERIMENT_ID not in table and DEFAULT_EXPERIMENT not in names:
                self.tracker.create_experiment(DEFAULT_EXPERIMENT)
                names.insert(0, DEFAULT_EXPERIMENT)
            for name in names:
                if name in known:
                    continue
                if name == DEFAULT_EXPERIMENT and DEFAULT_EXPERIMENT_ID not in table:
                    eid = DEFAULT_EXPERIMENT_ID
                else:
                    eid = str(self.docs.next_id("experiment"))
                table[eid] = self._adopt(eid, name)
        return table

    def _provisional(self, table: dict[str, dict[str, Any]], known: set[str]
                     ) -> dict[str, dict[str, Any]]:
        """A read-only handle cannot number new experiments: it shows them
        with the ids a writer would give them next (in the same order)."""
        counter = self.docs.last_id("experiment") or 0
        for name in self.tracker.list_experiments():
            if name in known:
                continue
            if name == DEFAULT_EXPERIMENT and DEFAULT_EXPERIMENT_ID not in table:
                eid = DEFAULT_EXPERIMENT_ID
            else:
                counter += 1
                eid = str(counter)
            info = self.tracker.experiment_info(name)
            created = _whole_ms(info.get("created")) or _now()
            table[eid] = {"name": name, "tags": dict(info.get("tags") or {}),
                          "lifecycle_stage": "active", "created": created, "updated": created,
                          "artifact_location": None}
        return table

    def _adopt(self, eid: str, name: str) -> dict[str, Any]:
        info = self.tracker.experiment_info(name)
        legacy = self.docs.get(_LEGACY, name) or {}
        created = _whole_ms(info.get("created")) or _now()
        tags = dict(info.get("tags") or {})
        tags.update(legacy.get("tags") or {})
        doc = {"name": name, "tags": tags,
               "lifecycle_stage": legacy.get("lifecycle_stage", "active"),
               "created": created, "updated": legacy.get("updated") or created,
               "artifact_location": None}
        self.docs.put(_KIND, eid, doc)
        if legacy:
            self.docs.delete(_LEGACY, name)
        return doc

    def by_name(self) -> dict[str, str]:
        """name -> id."""
        return {d["name"]: i for i, d in self.table().items()}

    def get(self, experiment_id: str | int) -> dict[str, Any] | None:
        """The document of ``experiment_id`` (None if there is none)."""
        eid = str(experiment_id)
        doc = self.docs.get(_KIND, eid)
        if doc is None and (eid == DEFAULT_EXPERIMENT_ID or eid.isdigit()):
            doc = self.table().get(eid)
        return doc

    def id_of(self, name: str) -> str | None:
        return self.by_name().get(name)

    def create(self, name: str, artifact_location: str | None = None,
               tags: dict[str, str] | None = None) -> str:
        """A new experiment's id; KeyError-free: raises ValueError if the
        name is taken."""
        self.table()  # number what exists first, so ids follow creation order
        with self.docs.atomic():
            if name in self.tracker.list_experiments():
                raise ValueError(name)
            self.tracker.create_experiment(name)
            eid = str(self.docs.next_id("experiment"))
            now = _now()
            self.docs.put(_KIND, eid, {"name": name, "tags": dict(tags or {}),
                                       "lifecycle_stage": "active", "created": now,
                                       "updated": now, "artifact_location": artifact_location})
        return eid

    def update(self, experiment_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of an experiment's document (and its update time)."""
        eid = str(experiment_id)
        with self.docs.atomic():
            doc = self.docs.get(_KIND, eid)
            if doc is None:
                raise KeyNotFound(f"no experiment with id {eid}")
            doc.update(fields)
            doc["updated"] = _now()
            self.docs.put(_KIND, eid, doc)
        return doc

    def set_tag(self, experiment_id: str, key: str, value: str | None) -> None:
        """Set a tag, or delete it when ``value`` is None."""
        eid = str(experiment_id)
        with self.docs.atomic():
            doc = self.docs.get(_KIND, eid)
            if doc is None:
                raise KeyNotFound(f"no experiment with id {eid}")
            if value is None:
                doc["tags"].pop(key, None)
            else:
                doc["tags"][key] = value
            doc["updated"] = _now()
            self.docs.put(_KIND, eid, doc)

    def rename(self, experiment_id: str, new_name: str) -> None:
        eid = str(experiment_id)
        with self.docs.atomic():
            doc = self.docs.get(_KIND, eid)
            if doc is None:
                raise KeyNotFound(f"no experiment with id {eid}")
            self.tracker.rename_experiment(doc["name"], new_name)
            doc["name"], doc["updated"] = new_name, _now()
            self.docs.put(_KIND, eid, doc)
