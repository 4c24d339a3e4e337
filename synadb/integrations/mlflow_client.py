"""The shim's ``MlflowClient`` over a synadb file, and the state it shares
with the fluent API (:mod:`.mlflow`): the tracking URI and one tracker and
registry handle per file.  Needs no mlflow import."""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, KeyNotFound
from ..registry import STAGES, ModelRegistry, canonical_stage
from ..tracking import ExperimentTracker, flatten_params
from .mlflow_entities import (Experiment, FileInfo, Metric, ModelVersion, Param,
                              RegisteredModel, Run, RunData, RunInfo, mlflow_stage)
from .mlflow_docs import REG_MODEL, Docs, doc_id
from .mlflow_experiments import ExperimentCatalog, catalog
from .mlflow_filter import EntityRow, compile_filter, page_of, sort_rows, view_ok
from .mlflow_mapping import (DEFAULT_EXPERIMENT, DEFAULT_PATH, LABELS_TAG, LIFECYCLE_TAG,
                             MODEL_META, PARENT_TAG, RUN_NAME_TAG, VIRTUAL_TAGS, MlflowException,
                             ViewType, artifact_children, artifact_uri_for, bad_parameter,
                             experiment_location,
                             latest_metrics, lifecycle_stage, mlflow_status, mlflow_tags, ms,
                             not_found, parse_tracking_uri, synadb_status)

# ------------------------------------------------------------------ client
def _as_mlflow_errors(cls: type) -> type:
    """Make each public method raise MlflowException, as MLflow's client
    does, where synadb raised KeyNotFound or InvalidArgument (both stay in
    the chain, and MlflowException is a SynaError too)."""

    def translated(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def method(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except MlflowException:
                raise
            except KeyNotFound as e:
                raise not_found(str(e).strip("'\"")) from e
            except InvalidArgument as e:
                raise bad_parameter(str(e)) from e
        return method

    for name, fn in list(vars(cls).items()):
        if not name.startswith("_") and callable(fn) and not isinstance(fn, type):
            setattr(cls, name, translated(fn))
    return cls


@_as_mlflow_errors
class MlflowClient:
    """MLflow's ``MlflowClient`` over a synadb file.

    >>> client = MlflowClient("synadb:///tmp/doctest-client.db")   # doctest: +SKIP
    >>> run = client.create_run(client.create_experiment("x"))       # doctest: +SKIP
    >>> client.log_metric(run.info.run_id, "loss", 0.5, step=1)      # doctest: +SKIP
    >>> [m.value for m in client.get_metric_history(run.info.run_id, "loss")]  # doctest: +SKIP
    [0.5]
    """

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None, *,
                 read_only: bool = False) -> None:
        self.path = parse_tracking_uri(tracking_uri) if tracking_uri else STATE.path()
        self._tracking_uri = tracking_uri or get_tracking_uri()
        self.read_only = read_only  # reads only: never writes to or locks the file

    # -- handles -------------------------------------------------------
    @property
    def tracker(self) -> ExperimentTracker:
        return STATE.tracker(self.path, self.read_only)

    @property
    def registry(self) -> ModelRegistry:
        return STATE.registry(self.path, self.read_only)

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    # -- experiments ---------------------------------------------------
    @property
    def catalog(self) -> ExperimentCatalog:
        return catalog(self.tracker)

    def _names_by_id(self) -> dict[str, str]:
        return {i: d["name"] for i, d in self.catalog.table().items()}

    def _exp_doc(self, experiment_id: str | int) -> tuple[str, dict[str, Any]]:
        eid = str(experiment_id)
        doc = self.catalog.get(eid)
        if doc is None:
            raise not_found(f"No Experiment with id={eid} exists")
        return eid, doc

    def _exp_name(self, experiment_id: str | int) -> str:
        return self._exp_doc(experiment_id)[1]["name"]

    def _experiment(self, eid: str, doc: Mapping[str, Any]) -> Experiment:
        return Experiment(eid, doc["name"], doc.get("artifact_location")
                          or experiment_location(self.path), doc["lifecycle_stage"],
                          dict(doc["tags"]), ms(doc["created"]), ms(doc["updated"]))

    def create_experiment(self, name: str, artifact_location: str | None = None,
                          tags: Mapping[str, Any] | None = None) -> str:
        if not isinstance(name, str) or not name:
            raise bad_parameter(f"an experiment name must be a non-empty str, got {name!r}")
        try:
            return self.catalog.create(name, artifact_location,
                                       {str(k): str(v) for k, v in (tags or {}).items()})
        except ValueError:
            raise MlflowException(f"Experiment(name={name}) already exists.",
                                  "RESOURCE_ALREADY_EXISTS") from None

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._experiment(*self._exp_doc(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        eid = self.catalog.id_of(name)
        return None if eid is None else self.get_experiment(eid)

    def search_experiments(self, view_type: int = ViewType.ACTIVE_ONLY,
                           max_results: int | None = None, filter_string: str | None = None,
                           order_by: Sequence[str] | None = None,
                           page_token: str | None = None) -> list[Experiment]:
        exps = [self._experiment(i, d) for i, d in self.catalog.table().items()]
        exps = [e for e in exps if view_ok(e.lifecycle_stage, view_type)]
        pred = compile_filter(filter_string, "exp")
        exps = [e for e in exps if pred(EntityRow(e))]
        rows = sort_rows([EntityRow(e) for e in exps], order_by,
                         default=(("exp", "creation_time", False),
                                  ("exp", "experiment_id", False)), kind="exp")
        out = [r.exp for r in rows]
        return out[:max_results] if max_results is not None else out

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self.catalog.set_tag(self._exp_doc(experiment_id)[0], str(key), str(value))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        eid, doc = self._exp_doc(experiment_id)
        if key not in doc["tags"]:
            raise not_found(f"No tag with name: {key} in experiment with id {eid}")
        self.catalog.set_tag(eid, key, None)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        eid, doc = self._exp_doc(experiment_id)
        if doc["lifecycle_stage"] != "active":
            raise MlflowException("Cannot rename a non-active experiment.", "INVALID_STATE")
        if new_name != doc["name"]:
            if self.catalog.id_of(new_name) is not None:
                raise MlflowException(f"Experiment(name={new_name}) already exists.",
                                      "RESOURCE_ALREADY_EXISTS")
            self.catalog.rename(eid, new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, "deleted")

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, "active")

    def _set_experiment_stage(self, experiment_id: str, stage: str) -> None:
        eid, doc = self._exp_doc(experiment_id)
        if doc["lifecycle_stage"] == stage:
            raise not_found(f"No Experiment with id={eid} exists")
        self.catalog.update(eid, lifecycle_stage=stage)
        for run in self.tracker.list_runs(doc["name"]):  # its runs go (and return) with it
            self.tracker.set_tag(run.id, LIFECYCLE_TAG, stage)

    # -- runs ------------------------------------------------------------
    def _mlflow_run(self, rid: str) -> Run:
        try:
            run = self.tracker.get_run(rid)
        except KeyNotFound:
            raise not_found(f"Run {rid!r} not found in {self.path!r}") from None
        return to_mlflow_run(self.tracker, run, self.path)

    def create_run(self, experiment_id: str | None = None, start_time: int | None = None,
                   tags: Mapping[str, Any] | None = None, run_name: str | None = None) -> Run:
        name = self._exp_name(experiment_id) if experiment_id is not None \
            else DEFAULT_EXPERIMENT
        tags = {str(k): str(v) for k, v in (tags or {}).items()}
        run_name = run_name or tags.get(RUN_NAME_TAG)
        parent = tags.get(PARENT_TAG)
        for k in VIRTUAL_TAGS:
            tags.pop(k, None)
        rid = self.tracker.start_run(name, name=run_name, tag_values=tags, parent_id=parent,
                                     start_time=None if start_time is None else start_time / 1000)
        return self._mlflow_run(rid)

    def get_run(self, run_id: str) -> Run:
        return self._mlflow_run(run_id)

    def set_terminated(self, run_id: str, status: str | None = "FINISHED",
                       end_time: int | None = None) -> None:
        self.tracker.end_run(run_id, synadb_status(status or "FINISHED"),
                             end_time=None if end_time is None else end_time / 1000)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        if name:
            self.tracker.rename_run(run_id, name)
        if status:
            self.tracker.end_run(run_id, synadb_status(status))

    def delete_run(self, run_id: str) -> None:
        self.tracker.set_tag(run_id, LIFECYCLE_TAG, "deleted")

    def restore_run(self, run_id: str) -> None:
        self.tracker.set_tag(run_id, LIFECYCLE_TAG, "active")

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None
                  ) -> Any:
        self.log_batch(run_id, params=[Param(key, value)])
        return value

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int | None = None,
                   step: int | None = None, synchronous: bool | None = None,
                   **kwargs: Any) -> None:
        self.tracker.log_metric(run_id, key, value, 0 if step is None else step,
                                None if timestamp is None else timestamp / 1000)

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                  tags: Iterable[Any] = (), synchronous: bool | None = None) -> None:
        """Params, tags and metrics in one call; a param logged again with a
        different value is refused, as MLflow refuses it."""
        tracker = self.tracker
        run = tracker.get_run(run_id)
        # MLflow stores str(value): str(np.float32(0.1)) is "0.1", where
        # flatten_params would give "0.10000000149011612".
        new = flatten_params({p.key: p.value if isinstance(p.value, Mapping) else str(p.value)
                              for p in params})
        for k, v in new.items():
            old = run.params.get(k)
            if old is not None and old != v:
                raise bad_parameter(f"Changing param values is not allowed. Param with key={k!r} was "
                           f"already logged with value={old!r} for run ID={run_id!r}. "
                           f"Attempted logging new value {v!r}.")
        if new:
            tracker.log_params(run_id, new)
        for t in tags:
            set_run_tag(tracker, run_id, t.key, t.value)
        for m in metrics:
            tracker.log_metric(run_id, m.key, m.value, 0 if m.step is None else m.step,
                               None if m.timestamp is None else m.timestamp / 1000)

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None
                ) -> None:
        set_run_tag(self.tracker, run_id, key, value)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.tracker.delete_tag(run_id, key)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        try:
            h = self.tracker.get_metric_history(run_id, key)
        except KeyNotFound:
            self._mlflow_run(run_id)  # an unknown run is an error; an unknown metric is []
            return []
        return [Metric(key, v, int(round(t * 1000)), s) for v, s, t in
                zip(h["value"].tolist(), h["step"].tolist(), h["timestamp"].tolist())]

    def search_runs(self, experiment_ids: Sequence[str] | str | None = None,
                    filter_string: str = "", run_view_type: int = ViewType.ACTIVE_ONLY,
                    max_results: int = 1000, order_by: Sequence[str] | None = None,
                    page_token: str | None = None) -> list[Run]:
        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        names = (self.tracker.list_experiments() if experiment_ids is None
                 else [self._exp_name(e) for e in experiment_ids])
        pred = compile_filter(filter_string)
        runs = []
        for name in names:
            for run in self.tracker.list_runs(name):
                if not view_ok(lifecycle_stage(run), run_view_type):
                    continue
                r = to_mlflow_run(self.tracker, run, self.path)
                if pred(r):
                    runs.append(r)
        created = {rid: i for i, rid in enumerate(self.tracker.run_ids())}
        return page_of(sort_rows(runs, order_by, created=created), max_results, page_token)

    # -- artifacts -------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str | os.PathLike[str],
                     artifact_path: str | None = None) -> None:
        local = Path(local_path)
        if local.is_dir():
            return self.log_artifacts(run_id, local, join_path(artifact_path, local.name))
        self.tracker.log_artifact(run_id, join_path(artifact_path, local.name), local)

    def log_artifacts(self, run_id: str, local_dir: str | os.PathLike[str],
                      artifact_path: str | None = None) -> None:
        root = Path(local_dir)
        if not root.is_dir():
            raise bad_parameter(f"{str(local_dir)!r} is not a directory")
        for dirpath, _dirs, files in os.walk(root):
            rel = Path(dirpath).relative_to(root).as_posix()
            for f in sorted(files):
                name = join_path(artifact_path, join_path(None if rel == "." else rel, f))
                self.tracker.log_artifact(run_id, name, Path(dirpath) / f)

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        self.tracker.log_dict(run_id, artifact_file, dictionary)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.tracker.log_text(run_id, artifact_file, text)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, *,
                   save_kwargs: Mapping[str, Any] | None = None) -> None:
        self.tracker.log_figure(run_id, artifact_file, figure)

    def log_image(self, run_id: str, image: Any, artifact_file: str | None = None,
                  key: str | None = None, step: int | None = None,
                  timestamp: int | None = None, synchronous: bool | None = None) -> None:
        if artifact_file is None:
            if key is None:
                raise bad_parameter("log_image needs artifact_file, or key (and step)")
            artifact_file = f"images/{key}/step_{step or 0}.png"
        self.tracker.log_image(run_id, artifact_file, image)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        self._mlflow_run(run_id)
        return list_artifact_infos(self.tracker, run_id, path)

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """Write artifact ``path`` (a file or a directory) under ``dst_path``
        (a new temporary directory by default) and return the local path."""
        dst = Path(dst_path or tempfile.mkdtemp(prefix="synadb-artifacts-"))
        path = path.strip("/")
        names = self.tracker.list_artifacts(run_id)
        chosen = [n for n in names if not path or n == path or n.startswith(path + "/")]
        if not chosen:
            raise not_found(f"run {run_id!r} has no artifact {path!r}")
        for name in chosen:
            target = dst / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.tracker.get_artifact(run_id, name))
        return str(dst / path) if path else str(dst)

    # -- model registry --------------------------------------------------
    # A model's MLflow fields live in the document the plugin's registry
    # store uses (mlflow_docs.REG_MODEL), so both see the same description,
    # tags and aliases; versions, stages and version tags are ModelRegistry's.
    @property
    def _docs(self) -> Docs:
        return Docs(self.tracker.db)

    def _model_meta(self, name: str) -> dict[str, Any] | None:
        doc = self._docs.get(REG_MODEL, doc_id(name))
        if doc is not None:
            return doc
        text = self.tracker.db.get_text(MODEL_META + name)  # written before the documents
        if not text:
            return None
        old = json.loads(text)
        return {"name": name, "store": name, "created": ms(old.get("created")),
                "updated": ms(old.get("created")), "description": old.get("description") or None,
                "tags": dict(old.get("tags") or {}), "aliases": {}}

    @contextmanager
    def _change_model(self, name: str) -> Iterator[dict[str, Any]]:
        """A read-modify-write of ``name``'s document (made for a model that
        has only versions), under the file's lock; yields the document."""
        with self._docs.atomic():
            doc = self._model_meta(name)
            if doc is None:
                versions = self.registry.list_versions(name)
                if not versions:
                    raise not_found(f"Registered Model with name={name} not found")
                first = ms(versions[0].created_at)
                doc = {"name": name, "store": name, "created": first, "updated": first,
                       "description": None, "tags": {}, "aliases": {}}
            doc.setdefault("aliases", {})
            yield doc
            doc["updated"] = ms(time.time())
            self._docs.put(REG_MODEL, doc_id(name), doc)

    def _model_version(self, v: Any, aliases: Mapping[str, int] | None = None
                       ) -> ModelVersion:
        meta = v.metadata or {}
        mv = ModelVersion(v.name, v.version, ms(v.created_at) or 0,
                          ms(max(v.created_at, v.stage_changed_at)) or 0,
                          v.description, mlflow_stage(v.stage), str(meta.get("source", "")),
                          meta.get("run_id"), dict(v.tags))
        if aliases is None:
            aliases = (self._model_meta(v.name) or {}).get("aliases") or {}
        mv.aliases = sorted(a for a, n in aliases.items() if int(n) == v.version)
        return mv

    def _registered(self, name: str) -> RegisteredModel:
        meta = self._model_meta(name)
        versions = self.registry.list_versions(name)
        if meta is None and not versions:
            raise not_found(f"Registered Model with name={name} not found")
        meta = meta or {}
        created = meta.get("created") or (ms(versions[0].created_at) if versions else None)
        latest = self.get_latest_versions(name) if versions else []
        updated = max([meta.get("updated") or created or 0]
                      + [int(m.last_updated_timestamp) for m in latest])
        model = RegisteredModel(name, created, updated, meta.get("description") or "", latest,
                                dict(meta.get("tags", {})))
        model.aliases = dict(meta.get("aliases") or {})
        return model

    def create_registered_model(self, name: str, tags: Mapping[str, Any] | None = None,
                                description: str | None = None) -> RegisteredModel:
        if not isinstance(name, str) or not name:
            raise bad_parameter(f"a registered model name must be a non-empty str, got {name!r}")
        with self._docs.atomic():
            if self._model_meta(name) is not None or self.registry.list_versions(name):
                raise MlflowException(f"Registered Model (name={name}) already exists.",
                                      "RESOURCE_ALREADY_EXISTS")
            now = ms(time.time())
            self._docs.put(REG_MODEL, doc_id(name), {
                "name": name, "store": name, "created": now, "updated": now,
                "description": description, "aliases": {},
                "tags": {str(k): str(v) for k, v in (tags or {}).items()}})
        return self._registered(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._registered(name)

    def update_registered_model(self, name: str, description: str | None = None
                                ) -> RegisteredModel:
        with self._change_model(name) as doc:
            doc["description"] = description
        return self._registered(name)

    def search_registered_models(self, filter_string: str | None = None,
                                 max_results: int | None = None,
                                 order_by: Sequence[str] | None = None,
                                 page_token: str | None = None) -> list[RegisteredModel]:
        names = list(self.registry.list_models())
        names += [d["name"] for d in self._docs.all(REG_MODEL) if d["name"] not in names]
        for key in self.tracker.db.keys(MODEL_META + "*"):
            if key[len(MODEL_META):] not in names:
                names.append(key[len(MODEL_META):])
        pred = compile_filter(filter_string, "exp")
        models = [m for m in (self._registered(n) for n in sorted(names)) if pred(EntityRow(m))]
        return page_of(models, max_results, page_token)

    # aliases: MLflow 3's names for versions ("champion"), kept in the model's document
    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        if not isinstance(alias, str) or not alias or alias.lower() == "latest" or (
                alias[:1].lower() == "v" and alias[1:].isdigit()):
            raise bad_parameter(f"Invalid alias name {alias!r}: an alias is a non-empty name "
                                "other than 'latest' and v<number>")
        self.get_model_version(name, version)
        with self._change_model(name) as doc:
            doc["aliases"][alias] = int(version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        with self._change_model(name) as doc:
            doc["aliases"].pop(alias, None)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        meta = self._model_meta(name)
        if meta is None and not self.registry.list_versions(name):
            raise not_found(f"Registered Model with name={name} not found")
        version = (meta or {}).get("aliases", {}).get(alias)
        if version is None:
            raise not_found(f"Registered model alias {alias} not found.")
        return self.get_model_version(name, version)

    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             tags: Mapping[str, Any] | None = None, run_link: str | None = None,
                             description: str | None = None, **kwargs: Any) -> ModelVersion:
        """A new version whose bytes are the run artifact that ``source``
        (``runs:/<id>/<path>``) names, or the local file it names; a source
        synadb cannot read (a directory, a remote URI) is kept as metadata
        with empty bytes."""
        if self._model_meta(name) is None and not self.registry.list_versions(name):
            self.create_registered_model(name)
        data: Any = b""
        m = re.match(r"runs:/([^/]+)/(.+)", source or "")
        if m:
            run_id = run_id or m.group(1)
            if m.group(2) in self.tracker.list_artifacts(m.group(1)):
                data = self.tracker.get_artifact(m.group(1), m.group(2))
        elif source and os.path.isfile(source):
            data = source
        v = self.registry.save_model(name, data, {"source": source, "run_id": run_id},
                                     description=description or "", tags=tags)
        return self._model_version(v)

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        try:
            return self._model_version(self.registry.get_version(name, int(version)))
        except KeyNotFound:
            raise not_found(f"Model Version (name={name}, version={version}) not found"
                             ) from None

    def transition_model_version_stage(self, name: str, version: str | int, stage: str,
                                       archive_existing_versions: bool = False
                                       ) -> ModelVersion:
        """Move a version to a stage; ``archive_existing_versions`` archives
        the other versions in that stage (Staging or Production)."""
        target = canonical_stage(stage)
        v = int(version)
        self.get_model_version(name, v)
        self.registry.set_stage(name, v, target, archive_existing=archive_existing_versions)
        if archive_existing_versions and target == "Staging":
            for other in self.registry.list_versions(name):
                if other.version != v and other.stage == "Staging":
                    self.registry.set_stage(name, other.version, "Archived")
        return self.get_model_version(name, v)

    def get_latest_versions(self, name: str, stages: Sequence[str] | None = None
                            ) -> list[ModelVersion]:
        """The highest version in each stage (every stage when ``stages`` is None)."""
        versions = self.registry.list_versions(name)
        if not versions and self._model_meta(name) is None:
            raise not_found(f"Registered Model with name={name!r} not found")
        want = [canonical_stage(s) for s in stages] if stages else list(STAGES)
        out = []
        for stage in STAGES:
            if stage not in want:
                continue
            inside = [v for v in versions if v.stage == stage]
            if inside:
                out.append(self._model_version(max(inside, key=lambda v: v.version)))
        return sorted(out, key=lambda m: int(m.version))

    def search_model_versions(self, filter_string: str | None = None,
                              max_results: int | None = None,
                              order_by: Sequence[str] | None = None,
                              page_token: str | None = None) -> list[ModelVersion]:
        out = []
        pred = compile_filter(filter_string, "exp")
        for name in self.registry.list_models():
            for v in self.registry.list_versions(name):
                mv = self._model_version(v)
                row = EntityRow(mv)
                if pred(row):
                    out.append(row)
        rows = sort_rows(out, order_by, kind="exp", default=(
            ("exp", "name", True), ("exp", "version_number", False)))
        return page_of([r.exp for r in rows], max_results, page_token)

    def update_model_version(self, name: str, version: str | int,
                             description: str | None = None) -> ModelVersion:
        if description is not None:
            self.registry.set_description(name, int(version), description)
        return self.get_model_version(name, version)

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: Any
                              ) -> None:
        self.registry.set_tag(name, int(version), key, value)

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        self.registry.delete_tag(name, int(version), key)

    def delete_model_version(self, name: str, version: str | int) -> None:
        self.registry.delete(name, int(version))
        if (self._model_meta(name) or {}).get("aliases"):  # its aliases go with it
            with self._change_model(name) as doc:
                doc["aliases"] = {a: n for a, n in doc["aliases"].items() if int(n) != int(version)}

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        with self._change_model(name) as doc:
            doc["tags"][str(key)] = str(value)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        with self._change_model(name) as doc:
            doc["tags"].pop(key, None)

    def delete_registered_model(self, name: str) -> None:
        self._registered(name)
        if self.registry.list_versions(name):
            self.registry.delete(name)
        self._docs.delete(REG_MODEL, doc_id(name))
        if self.tracker.db.exists(MODEL_META + name):
            self.tracker.db.delete(MODEL_META + name)


def join_path(base: str | None, name: str) -> str:
    base = (base or "").strip("/")
    return f"{base}/{name}" if base else name


def set_run_tag(tracker: ExperimentTracker, run_id: str, key: str, value: Any) -> None:
    if key == RUN_NAME_TAG:
        tracker.rename_run(run_id, str(value))
    elif key == LABELS_TAG:
        tracker.add_tags(run_id, [t for t in str(value).split(",") if t])
    elif key == PARENT_TAG:
        tracker.set_tag(run_id, key, value)  # kept as a plain tag: parents are set at start
    else:
        tracker.set_tag(run_id, key, value)


def list_artifact_infos(tracker: ExperimentTracker, run_id: str,
                        path: str | None = None) -> list[FileInfo]:
    """The direct children of ``path`` among a run's artifacts, MLflow style."""
    sizes = {n: int(i.get("size", 0)) for n, i in tracker.artifact_infos(run_id).items()}
    dirs, files = artifact_children(sizes, path)
    out = [FileInfo(d, True, None) for d in dirs]
    out += [FileInfo(f, False, n) for f, n in files.items()]
    return sorted(out, key=lambda f: f.path)


def to_mlflow_run(tracker: ExperimentTracker, run: Any, path: str) -> Run:
    latest = latest_metrics(tracker, run)
    tags = mlflow_tags(run)
    info = RunInfo(run.id, catalog(tracker).id_of(run.experiment) or "", run.name,
                   tags.get("mlflow.user", ""), mlflow_status(run.status),
                   ms(run.start_time), ms(run.end_time), artifact_uri_for(path, run.id),
                   lifecycle_stage(run))
    return Run(info, RunData({k: v[0] for k, v in latest.items()}, dict(run.params), tags))

# ---------------------------------------------------------- fluent state
class State:
    def __init__(self) -> None:
        self.uri: str | None = None
        self.experiment: str | None = None
        self.trackers: dict[tuple[str, bool], ExperimentTracker] = {}
        self.registries: dict[tuple[str, bool], ModelRegistry] = {}
        self.local = threading.local()
        self.last_run_id: str | None = None
        self.bridged: set[str] = set()  # runs lent to real mlflow's fluent API
        self.lock = threading.Lock()

    def path(self) -> str:
        return parse_tracking_uri(get_tracking_uri())

    def tracker(self, path: str | None = None, read_only: bool = False) -> ExperimentTracker:
        """The process's tracker on ``path`` (one writable, one read-only)."""
        key = (path or self.path(), read_only)
        with self.lock:
            t = self.trackers.get(key)
            if t is None or t.closed:
                t = self.trackers[key] = ExperimentTracker(key[0], read_only=read_only)
            return t

    def registry(self, path: str | None = None, read_only: bool = False) -> ModelRegistry:
        key = (path or self.path(), read_only)
        with self.lock:
            r = self.registries.get(key)
            if r is None or r.db.closed:
                r = self.registries[key] = ModelRegistry(key[0], read_only=read_only,
                                                         progress=False)
            return r

    def close(self) -> None:
        with self.lock:
            for t in self.trackers.values():
                t.close()
            for r in self.registries.values():
                r.close()
            self.trackers.clear()
            self.registries.clear()


STATE = State()

def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Log to this file from now on: a path, ``synadb:///abs/path.db`` or
    ``file:``.  Runs still active keep logging where they started."""
    text = os.fspath(uri)
    parse_tracking_uri(text)  # refuse a bad URI now, not at the first log call
    STATE.uri = text


def get_tracking_uri() -> str:
    """The current tracking URI; without one, ``MLFLOW_TRACKING_URI`` if it
    names a file, else ``mlruns.db`` in the working directory."""
    if STATE.uri:
        return STATE.uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env and not env.startswith(("http:", "https:", "databricks")):
        return env
    return DEFAULT_PATH
