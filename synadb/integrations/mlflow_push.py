"""Copy a synadb file's experiments, runs, logged models, traces and
registered models to an MLflow tracking server (``synadb mlflow-push FILE
--to http://host:port``).

Uses the real mlflow's ``MlflowClient`` (``pip install 'synadb[mlflow]'``),
imported only when a push starts.  The file is read through read-only
handles: what synadb's own API wrote (``ExperimentTracker``,
``ModelRegistry``) and what MLflow wrote through the ``synadb://`` plugin
(dataset inputs, logged models with their files, traces with spans and
assessments, registered models with aliases) are both sent.

What arrives on the server:

* runs with params, metric histories, tags, artifacts, status, parent
  links and dataset inputs;
* logged models with their files, params, tags, metrics and status, linked
  to the pushed run that made them (as its outputs/inputs);
* traces under their own ids, with their info, tags, metadata, spans and
  assessments (run and model references point at the pushed run/model);
* registered models with tags, description and aliases, and their versions
  with tags, description and stage.  A version whose source is a logged
  model (``models:/m-...``) or a run's artifacts (``runs:/<run>/path``)
  points at the pushed model/run, so ``mlflow.pyfunc.load_model(
  "models:/name/1")`` loads it from the server; a version saved with
  ``ModelRegistry`` (bytes only) gets its bytes uploaded as
  ``synadb-models/<name>/v<n>/model.bin`` of its training run (or of a
  holder run in the experiment ``synadb-registered-models``).

Pushing is idempotent: every pushed run, logged model and trace carries the
tag ``synadb.push_state`` (and runs ``synadb.run_id``, logged models
``synadb.model_id``, model versions ``synadb.version``), and a push skips
what the server already has.  A run, logged model or trace is first created
``partial`` and marked ``complete`` only once all of it is on the server; a
later push deletes one left partial by an interrupted push and sends it
again, so nothing is duplicated and nothing is half there.  A run that was
still running when pushed is not sent again later (push it once it has
ended).

Before anything is sent, the server is asked for ``/health`` with a short
timeout, so a wrong or unreachable URL fails in seconds with one line
instead of after MLflow's minutes of retries.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingDependency, SynaError
from ..registry import ModelRegistry
from ..tracking import ExperimentTracker
from . import mlflow_mapping as mapping

__all__ = ["push", "PushError"]

RUN_ID_TAG = "synadb.run_id"
MODEL_ID_TAG = "synadb.model_id"
STATE_TAG = "synadb.push_state"
VERSION_TAG = "synadb.version"
MODELS_EXPERIMENT = "synadb-registered-models"
# MLflow's log_batch limits per request.
MAX_METRICS, MAX_PARAMS = 1000, 100
PAGE = 1000
TRACE_PAGE = 100  # the server caps a trace search's page lower
# How long the up-front /health probe waits for the server.
CONNECT_TIMEOUT_S = 5.0
# Tags the server sets itself on a trace (or that name local places).
_SERVER_TRACE_TAGS = ("mlflow.artifactLocation", "mlflow.trace.spansLocation")
# Set by the server when a version is registered from a logged model.
_MODEL_VERSIONS_TAG = "mlflow.modelVersions"


class PushError(SynaError):
    "The MLflow server is unreachable, or refused or failed a request during a push."


def _mlflow() -> Any:
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise MissingDependency("mlflow", "mlflow", "synadb mlflow-push") from e
    return MlflowClient, MlflowException


def push(path: str | os.PathLike[str], to: str, *, experiments: Sequence[str] | None = None,
         models: bool = True, traces: bool = True, log: Callable[[str], None] | None = None,
         progress: bool = True) -> dict[str, int]:
    """Copy the synadb file ``path`` to the MLflow tracking server at ``to``
    (see the module docstring for what is sent).

    Args:
        path: the synadb file (opened read-only).
        to: the server's tracking URI, e.g. ``http://127.0.0.1:5000``.
        experiments: push only these experiments' runs, logged models and
            traces (default: all).
        models: also push the registered models.
        traces: also push the traces.
        log: called with one line per pushed item.
        progress: a tqdm bar on stderr (only in a terminal, after half a second).

    Returns:
        Counts: ``experiments``, ``runs``, ``runs_skipped``, ``metrics``
        (values), ``artifacts``, ``datasets`` (run dataset inputs),
        ``logged_models``, ``logged_models_skipped``, ``traces``,
        ``traces_skipped``, ``model_versions``, ``model_versions_skipped``.

    Raises:
        MissingDependency: mlflow is not installed.
        PushError: the URI is not an http(s) URL, the server does not
            answer, or it refused a request.
    """
    MlflowClient, MlflowException = _mlflow()
    check_server(to)
    try:
        client = MlflowClient(tracking_uri=to, registry_uri=to)
    except MlflowException as e:
        raise PushError(f"MLflow server {to}: {_first_line(e.message)}") from e
    counts = dict(experiments=0, runs=0, runs_skipped=0, metrics=0, artifacts=0, datasets=0,
                  logged_models=0, logged_models_skipped=0, traces=0, traces_skipped=0,
                  model_versions=0, model_versions_skipped=0)
    # MlflowClient prints a "View run" link per run to stdout, and draws a
    # bar per artifact download: that would corrupt `--json` output and is
    # noise beside the push's own bar.
    try:
        with _env(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
                  MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"), _Source.open(path) as source:
            job = _Push(client, source, counts, log or (lambda _line: None))
            plan = job.plan(experiments, models=models, traces=traces)
            with _bar(plan.size, progress) as bar:
                job.run(plan, bar)
    except MlflowException as e:
        raise PushError(f"MLflow server {to}: {_first_line(e.message)}") from e
    return counts


def check_server(to: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`PushError` (one line) unless ``to`` is an http(s) URL
    whose server answers within ``timeout`` seconds.  Any HTTP answer counts
    (a server behind a login answers 401): only whether it is there is
    checked, so a push fails in seconds, not after MLflow's retries."""
    parsed = urllib.parse.urlparse(to)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise PushError(f"MLflow server {to}: not an http(s) URL; give one like "
                        "http://127.0.0.1:5000")
    try:
        with urllib.request.urlopen(to.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # it answered
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise PushError(f"MLflow server {to}: unreachable ({reason})") from None


# ------------------------------------------------------------------ helpers
def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "request failed"


@contextmanager
def _env(**values: str) -> Iterator[None]:
    """Environment variables set for the push only."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _bar(total: int, progress: bool) -> Iterator[Any]:
    """The project's bar: only in a terminal, only after half a second."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="mlflow-push", unit="item", delay=0.5, leave=False,
               disable=None if progress else True)
    try:
        yield bar
    finally:
        bar.close()


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    """Every item of a paged MLflow search; ``fetch(token)`` returns a page
    (a ``PagedList`` or a ``(items, token)`` pair)."""
    token = None
    while True:
        page = fetch(token)
        items, token = page if isinstance(page, tuple) else (page, page.token)
        yield from items
        if not token:
            return


# ------------------------------------------------------------------ reading
class _Source:
    """Read-only handles on the file, and MLflow's view of it through the
    ``synadb://`` plugin's stores (built over those same handles)."""

    def __init__(self, path: str, tracker: ExperimentTracker, registry: ModelRegistry,
                 store: Any, model_registry: Any) -> None:
        self.path, self.tracker, self.registry = path, tracker, registry
        self.store, self.model_registry = store, model_registry

    @classmethod
    @contextmanager
    def open(cls, path: str | os.PathLike[str]) -> Iterator[_Source]:
        """Read-only handles and stores: the push never writes to or locks
        the file."""
        from .mlflow_store import SynaModelRegistryStore, SynaTrackingStore

        full = mapping.parse_tracking_uri(os.fspath(path))
        uri = f"synadb://{full}"
        tracking = SynaTrackingStore(uri, read_only=True)
        registry = SynaModelRegistryStore(uri, read_only=True)
        yield cls(full, tracking.tracker, registry.registry, tracking, registry)


@dataclass
class _Experiment:
    """One experiment's share of a push."""

    name: str
    local_id: str  # "" when MLflow has not numbered it: no MLflow data
    runs: list[Any]  # synadb runs, parents first
    models: list[Any]  # MLflow LoggedModels
    traces: list[Any]  # MLflow TraceInfos


@dataclass
class _Plan:
    experiments: list[_Experiment] = field(default_factory=list)
    registered: list[tuple[Any, list[Any]]] = field(default_factory=list)  # (model, versions)

    @property
    def size(self) -> int:
        return (sum(len(e.runs) + len(e.models) + len(e.traces) for e in self.experiments)
                + sum(len(versions) for _, versions in self.registered))


# ------------------------------------------------------------------ pushing
class _Push:
    """One push: the server's client, the file, and the ids given so far."""

    def __init__(self, client: Any, source: _Source, counts: dict[str, int],
                 say: Callable[[str], None]) -> None:
        from mlflow.tracing.client import TracingClient

        self.client, self.source, self.counts, self._say = client, source, counts, say
        self.tracing = TracingClient(client.tracking_uri)
        self.run_ids: dict[str, str] = {}  # local run id -> remote run id
        self.model_ids: dict[str, str] = {}  # local logged model id -> remote
        self.bar: Any = None
        self._holder_eid: str | None = None

    def say(self, line: str) -> None:
        from tqdm.auto import tqdm

        with tqdm.external_write_mode():
            self._say(line)

    def plan(self, only: Sequence[str] | None, *, models: bool, traces: bool) -> _Plan:
        """What the file holds, read before anything is sent (the bar's total)."""
        tracker, store = self.source.tracker, self.source.store
        plan = _Plan()
        ids = self._experiment_ids()
        for name in tracker.list_experiments():
            if only is not None and name not in only:
                continue
            eid = ids.get(name, "")
            # Runs deleted through MLflow (a soft delete, kept as a tag) stay behind.
            runs = [r for r in tracker.list_runs(name)
                    if r.tag_values.get(mapping.LIFECYCLE_TAG) != "deleted"]
            # Parents first, so a child's mlflow.parentRunId names the remote parent.
            runs.sort(key=lambda r: (r.parent_id is not None, r.start_time))
            logged, infos = [], []
            if eid:
                logged = list(_pages(lambda t: store.search_logged_models(
                    [eid], max_results=PAGE, page_token=t)))
                if traces:
                    infos = list(_pages(lambda t: store.search_traces(
                        locations=[eid], max_results=PAGE, page_token=t)))
            plan.experiments.append(_Experiment(name, eid, runs, logged, infos))
        if models:
            registry = self.source.model_registry
            for rm in _pages(lambda t: registry.search_registered_models(
                    max_results=PAGE, page_token=t)):
                versions = list(_pages(lambda t: registry.search_model_versions(
                    f"name = '{_quote(rm.name)}'", max_results=PAGE, page_token=t)))
                plan.registered.append((rm, sorted(versions, key=lambda v: int(v.version))))
        return plan

    def _experiment_ids(self) -> dict[str, str]:
        """Experiment name -> MLflow id.  The ids are numbered by the first
        writable MLflow look at the file; a read-only handle cannot number
        experiments synadb made since, and then no experiment has one here
        (such a file's MLflow data is not pushed: open it through MLflow
        once, e.g. ``mlflow.search_experiments()``, and push again)."""
        try:
            return {e.name: str(e.experiment_id) for e in _pages(
                lambda t: self.source.store.search_experiments(max_results=PAGE,
                                                               page_token=t))}
        except SynaError:
            self.say("note: the file has experiments MLflow has not numbered yet; only "
                     "synadb's runs and models are pushed")
            return {}

    def run(self, plan: _Plan, bar: Any) -> None:
        self.bar = bar
        for exp in plan.experiments:
            eid = self._experiment(exp.name)
            self._push_runs(exp, eid)
            self._push_logged_models(exp, eid)
            self._push_traces(exp, eid)
        for rm, versions in plan.registered:
            self._push_registered_model(rm, versions)

    def _done(self, line: str | None) -> None:
        if line is not None:
            self.say(line)
        self.bar.update(1)

    # -- experiments and runs ----------------------------------------------
    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        info = self.source.tracker.experiment_info(name)
        eid = self.client.create_experiment(name, tags=dict(info.get("tags") or {}))
        self.counts["experiments"] += 1
        self.say(f"experiment {name}: created")
        return str(eid)

    def _remote(self, items: Iterator[Any], key: Callable[[Any], str | None],
                state: Callable[[Any], str | None], delete: Callable[[Any], None]
                ) -> dict[str, Any]:
        """Local id -> what the server already holds completely; what an
        interrupted push left partial is deleted (it is sent again)."""
        have = {}
        for item in items:
            local = key(item)
            if local is None:
                continue
            if state(item) == "complete":
                have[local] = item
            else:
                delete(item)
        return have

    def _push_runs(self, exp: _Experiment, eid: str) -> None:
        from mlflow.entities import ViewType

        client = self.client
        have = self._remote(
            _pages(lambda t: client.search_runs([eid], "", ViewType.ACTIVE_ONLY, PAGE,
                                                page_token=t)),
            lambda r: r.data.tags.get(RUN_ID_TAG), lambda r: r.data.tags.get(STATE_TAG),
            lambda r: client.delete_run(r.info.run_id))
        for run in exp.runs:
            if run.id in have:
                self.run_ids[run.id] = have[run.id].info.run_id
                self.counts["runs_skipped"] += 1
                self._done(None)
                continue
            self.run_ids[run.id] = self._push_run(eid, run, bool(exp.local_id))
            self.counts["runs"] += 1
            self._done(f"run {run.id} ({run.name}) -> {self.run_ids[run.id]}")

    def _push_run(self, eid: str, run: Any, mlflow_view: bool) -> str:
        """One run; ``mlflow_view``: MLflow knows its experiment (it may have
        dataset inputs)."""
        from mlflow.entities import Metric, Param, RunTag

        client, tracker = self.client, self.source.tracker
        tags = mapping.mlflow_tags(run)
        parent = tags.pop(mapping.PARENT_TAG, None)
        if parent is not None and parent in self.run_ids:
            tags[mapping.PARENT_TAG] = self.run_ids[parent]
        tags[RUN_ID_TAG] = run.id
        tags[STATE_TAG] = "partial"
        remote = str(client.create_run(eid, start_time=mapping.ms(run.start_time), tags=tags,
                                       run_name=run.name).info.run_id)
        params = [Param(k, v) for k, v in run.params.items()]
        for i in range(0, len(params), MAX_PARAMS):
            client.log_batch(remote, params=params[i:i + MAX_PARAMS])
        for key in tracker.list_metrics(run.id):
            h = tracker.get_metric_history(run.id, key)
            batch = [Metric(key, v, int(round(t * 1000)), s) for v, s, t in
                     zip(h["value"].tolist(), h["step"].tolist(), h["timestamp"].tolist())]
            for i in range(0, len(batch), MAX_METRICS):
                client.log_batch(remote, metrics=batch[i:i + MAX_METRICS])
            self.counts["metrics"] += len(batch)
        names = tracker.list_artifacts(run.id)
        if names:
            with tempfile.TemporaryDirectory(prefix="synadb-push-") as tmp:
                for name in names:
                    local = os.path.join(tmp, *name.split("/"))
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    with open(local, "wb") as f:
                        f.write(tracker.get_artifact(run.id, name))
                    client.log_artifact(remote, local, posixpath.dirname(name) or None)
                    self.counts["artifacts"] += 1
        datasets = self.source.store.get_run(run.id).inputs.dataset_inputs \
            if mlflow_view else []
        if datasets:
            client.log_inputs(remote, datasets=datasets)
            self.counts["datasets"] += len(datasets)
        if run.status != "Running":
            client.set_terminated(remote, mapping.mlflow_status(run.status),
                                  mapping.ms(run.end_time))
        # Last: only now is the run complete on the server (see the module docstring).
        client.log_batch(remote, tags=[RunTag(STATE_TAG, "complete")])
        return remote

    # -- logged models -------------------------------------------------------
    def _push_logged_models(self, exp: _Experiment, eid: str) -> None:
        if not exp.models:
            return
        client = self.client
        have = self._remote(
            _pages(lambda t: client.search_logged_models([eid], max_results=PAGE,
                                                         page_token=t)),
            lambda m: m.tags.get(MODEL_ID_TAG), lambda m: m.tags.get(STATE_TAG),
            lambda m: client.delete_logged_model(m.model_id))
        links = self._model_links(exp)
        for model in exp.models:
            if model.model_id in have:
                self.model_ids[model.model_id] = have[model.model_id].model_id
                self.counts["logged_models_skipped"] += 1
                self._done(None)
                continue
            remote = self._push_logged_model(eid, model, links.get(model.model_id, []))
            self.model_ids[model.model_id] = remote
            self.counts["logged_models"] += 1
            self._done(f"logged model {model.model_id} ({model.name}) -> {remote}")

    def _model_links(self, exp: _Experiment) -> dict[str, list[tuple[str, Any]]]:
        """Local model id -> ("output" step | "input", local run id) of the
        experiment's runs that made or used it."""
        links: dict[str, list[tuple[str, Any]]] = {}
        for run in exp.runs:
            mlflow_run = self.source.store.get_run(run.id)
            for out in mlflow_run.outputs.model_outputs if mlflow_run.outputs else []:
                links.setdefault(out.model_id, []).append((run.id, out.step))
            for inp in mlflow_run.inputs.model_inputs if mlflow_run.inputs else []:
                links.setdefault(inp.model_id, []).append((run.id, None))
        return links

    def _push_logged_model(self, eid: str, model: Any, links: list[tuple[str, Any]]) -> str:
        from mlflow.entities import LoggedModelInput, LoggedModelOutput, Metric
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        client = self.client
        tags = {k: v for k, v in model.tags.items() if k != _MODEL_VERSIONS_TAG}
        tags.update({MODEL_ID_TAG: model.model_id, STATE_TAG: "partial"})
        remote = client.create_logged_model(
            eid, name=model.name, source_run_id=self.run_ids.get(model.source_run_id or ""),
            tags=tags, params=dict(model.params or {}), model_type=model.model_type).model_id
        repo = get_artifact_repository(model.artifact_location)
        if repo.list_artifacts():
            with tempfile.TemporaryDirectory(prefix="synadb-push-") as tmp:
                client.log_model_artifacts(remote, repo.download_artifacts("", tmp))
        by_run: dict[str, list[Any]] = {}
        for m in model.metrics or []:
            run = self.run_ids.get(m.run_id or "")
            if run is not None:  # a model's metric is logged through its run
                by_run.setdefault(run, []).append(Metric(
                    m.key, m.value, m.timestamp, m.step, model_id=remote,
                    dataset_name=m.dataset_name, dataset_digest=m.dataset_digest, run_id=run))
        for run, batch in by_run.items():
            for i in range(0, len(batch), MAX_METRICS):
                client.log_batch(run, metrics=batch[i:i + MAX_METRICS])
        for local_run, step in links:
            run = self.run_ids.get(local_run)
            if run is None:
                continue
            if step is None:
                client.log_inputs(run, models=[LoggedModelInput(remote)])
            else:
                client.log_outputs(run, [LoggedModelOutput(remote, step)])
        client.finalize_logged_model(remote, model.status)
        client.set_logged_model_tags(remote, {STATE_TAG: "complete"})
        return str(remote)

    # -- traces ----------------------------------------------------------------
    def _push_traces(self, exp: _Experiment, eid: str) -> None:
        if not exp.traces:
            return
        tracing = self.tracing
        have = self._remote(
            _pages(lambda t: tracing.store.search_traces(locations=[eid],
                                                         max_results=TRACE_PAGE,
                                                         page_token=t)),
            lambda info: info.trace_id, lambda info: info.tags.get(STATE_TAG),
            lambda info: tracing.delete_traces(eid, trace_ids=[info.trace_id]))
        for info in exp.traces:
            if info.trace_id in have:
                self.counts["traces_skipped"] += 1
                self._done(None)
                continue
            self._push_trace(eid, info.trace_id)
            self.counts["traces"] += 1
            self._done(f"trace {info.trace_id}")

    def _push_trace(self, eid: str, trace_id: str) -> None:
        """Spans first (as MLflow's exporter sends them), then the info, then
        the assessments; the trace keeps its id."""
        from mlflow.entities import TraceInfo
        from mlflow.entities.trace_location import TraceLocation
        from mlflow.tracing.constant import SpansLocation, TraceMetadataKey, TraceTagKey

        tracing = self.tracing
        trace = self.source.store.get_trace(trace_id)
        local = trace.info
        metadata = dict(local.trace_metadata)
        for key, ids in ((TraceMetadataKey.SOURCE_RUN, self.run_ids),
                         (TraceMetadataKey.MODEL_ID, self.model_ids)):
            if metadata.get(key) in ids:
                metadata[key] = ids[metadata[key]]
        tags = {k: v for k, v in local.tags.items() if k not in _SERVER_TRACE_TAGS}
        tags[STATE_TAG] = "partial"
        try:
            tracing.log_spans(eid, trace.data.spans)
        except NotImplementedError:  # a server before 3.4: spans go as an artifact
            pass
        info = tracing.start_trace(TraceInfo(
            trace_id=trace_id, trace_location=TraceLocation.from_experiment_id(eid),
            request_time=local.request_time, execution_duration=local.execution_duration,
            state=local.state, tags=tags, trace_metadata=metadata,
            client_request_id=local.client_request_id,
            request_preview=local.request_preview, response_preview=local.response_preview))
        if info.tags.get(TraceTagKey.SPANS_LOCATION) != SpansLocation.TRACKING_STORE.value:
            tracing._upload_trace_data(info, trace.data)
        new_ids: dict[str, str] = {}
        for a in local.assessments:  # oldest first: what one overrides is there already
            old = a.assessment_id
            a.assessment_id, a.trace_id = None, info.trace_id
            a.overrides = new_ids.get(a.overrides or "", a.overrides)
            a.run_id = self.run_ids.get(a.run_id or "", a.run_id)
            new_ids[old] = tracing.log_assessment(info.trace_id, a).assessment_id
        tracing.set_trace_tag(info.trace_id, STATE_TAG, "complete")

    # -- registered models --------------------------------------------------
    def _push_registered_model(self, rm: Any, versions: list[Any]) -> None:
        from mlflow.exceptions import MlflowException

        client, name = self.client, rm.name
        try:
            remote_model = client.get_registered_model(name)
        except MlflowException:
            remote_model = client.create_registered_model(name, tags=rm.tags,
                                                          description=rm.description)
        for key, value in rm.tags.items():
            if remote_model.tags.get(key) != value:
                client.set_registered_model_tag(name, key, value)
        if rm.description and remote_model.description != rm.description:
            client.update_registered_model(name, rm.description)
        remote_versions = {v.tags.get(VERSION_TAG): str(v.version) for v in
                           _pages(lambda t: client.search_model_versions(
                               f"name = '{_quote(name)}'", max_results=PAGE, page_token=t))}
        for mv in versions:
            local = str(mv.version)
            if local in remote_versions:
                self.counts["model_versions_skipped"] += 1
                self._done(None)
                continue
            pushed = self._push_version(mv)
            if pushed is None:
                self.counts["model_versions_skipped"] += 1
                self._done(f"model {name} v{local}: not pushed, its source {mv.source} "
                           "was not pushed (push its experiment too)")
                continue
            remote_versions[local] = pushed
            self.counts["model_versions"] += 1
            self._done(f"model {name} v{local} -> v{pushed} ({mv.current_stage})")
        for alias, version in rm.aliases.items():
            target = remote_versions.get(str(version))
            if target is not None and remote_model.aliases.get(alias) != target:
                client.set_registered_model_alias(name, alias, target)

    def _push_version(self, mv: Any) -> str | None:
        """One version; returns its number on the server, or None when it
        names a logged model or run of the file that was not pushed."""
        tags = {**mv.tags, VERSION_TAG: str(mv.version)}
        run_id = self.run_ids.get(mv.run_id or "")
        model_id = self.model_ids.get(mv.model_id or "")
        source = self._remote_source(mv.source)
        if source is None:  # bytes saved with ModelRegistry, or a URI the server may know
            uploaded = self._upload_version_bytes(mv, run_id)
            if uploaded is not None:
                source, run_id, tags["synadb.sha256"] = uploaded
            elif urllib.parse.urlparse(mv.source or "").scheme in ("models", "runs"):
                return None
            else:
                source = mv.source or ""
        elif model_id is None and source.startswith("models:/"):
            model_id = source.removeprefix("models:/")
        created = self.client.create_model_version(
            mv.name, source, run_id=run_id, tags=tags, description=mv.description or None,
            model_id=model_id)
        if mv.current_stage not in ("None", None):
            with warnings.catch_warnings():
                # Stages are deprecated in MLflow but are what synadb has.
                warnings.simplefilter("ignore", FutureWarning)
                self.client.transition_model_version_stage(
                    mv.name, created.version, mv.current_stage, archive_existing_versions=False)
        return str(created.version)

    def _remote_source(self, source: str | None) -> str | None:
        """A version's source on the server: a pushed logged model
        (``models:/<id>``) or a pushed run's artifacts (``runs:/<id>/path``);
        None when the source names neither."""
        parsed = urllib.parse.urlparse(source or "")
        ref = parsed.netloc + parsed.path
        if parsed.scheme == "models" and ref.lstrip("/") in self.model_ids:
            return f"models:/{self.model_ids[ref.lstrip('/')]}"
        if parsed.scheme == "runs":
            run, _, rest = ref.lstrip("/").partition("/")
            if run in self.run_ids:
                return f"runs:/{self.run_ids[run]}/{rest}".rstrip("/")
        return None

    def _upload_version_bytes(self, mv: Any, run_id: str | None
                              ) -> tuple[str, str, str] | None:
        """The version's bytes (saved with ``ModelRegistry``) as
        ``model.bin`` of its run, or of a holder run: MLflow wants a source
        the version's run contains.  Returns (source, run id, sha256), or
        None when the file holds no bytes for it."""
        registry = self.source.registry
        try:
            entry = registry.get_version(mv.name, int(mv.version))
            data, _info = registry.load_model(mv.name, version=int(mv.version))
        except SynaError:
            return None
        if not data:
            return None
        if run_id is None:
            run_id = self._holder_run(mv.name, str(mv.version))
        artifact_dir = f"synadb-models/{mv.name}/v{mv.version}"
        with tempfile.TemporaryDirectory(prefix="synadb-push-") as tmp:
            local = os.path.join(tmp, "model.bin")
            with open(local, "wb") as f:
                f.write(data)
            self.client.log_artifact(run_id, local, artifact_dir)
        return f"runs:/{run_id}/{artifact_dir}", run_id, entry.checksum

    def _holder_run(self, name: str, version: str) -> str:
        if self._holder_eid is None:
            exp = self.client.get_experiment_by_name(MODELS_EXPERIMENT)
            self._holder_eid = str(exp.experiment_id if exp is not None else
                                   self.client.create_experiment(MODELS_EXPERIMENT))
        run = self.client.create_run(self._holder_eid, run_name=f"{name}-v{version}", tags={
            "synadb.model": name, VERSION_TAG: version}).info.run_id
        self.client.set_terminated(run)
        return str(run)
