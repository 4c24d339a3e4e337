"""W&B's Python API over a synadb file, without wandb and without a server.

Swap one import and a typical W&B training script logs into one synadb
file (``./synadb-runs.db`` by default; ``dir=`` puts it in a directory,
``SYNADB_WANDB_FILE`` names the file, else ``WANDB_DIR`` the directory)::

    import synadb.integrations.wandb as wandb

    run = wandb.init(project="mnist", config={"lr": 0.01, "epochs": 3})
    for epoch in range(wandb.config.epochs):
        wandb.log({"loss": 1.0 / (epoch + 1), "val": {"acc": 0.5 + epoch / 10}})
    wandb.finish()

    api = wandb.Api()
    runs = api.runs("mnist", filters={"config.lr": {"$gt": 0.001}},
                    order="-summary_metrics.val.acc")
    df = runs[0].history()                   # a pandas DataFrame, one row per step

What it covers: ``init`` (project, name, config, tags, group, job_type,
notes, id, resume, mode, reinit, dir, settings) and the run it returns (also
``wandb.run``, a context manager); ``log`` with W&B's step rules;
``config``; ``summary`` and ``define_metric``; ``Table``, ``Image``,
``Histogram`` and ``plot``; ``Artifact``, ``log_artifact``,
``use_artifact``; ``alert``; ``finish``; ``sweep`` and ``agent`` (grid,
random, bayes with Optuna's TPE, hyperband early termination) run locally;
``Api`` over the file; system metrics (``system/*``), on by default
(``settings={"x_disable_stats": True}`` turns them off).

The runs are plain synadb runs: ``ExperimentTracker(path)``, the MLflow shim
(:mod:`synadb.integrations.mlflow`) and Studio read them (the mapping is in
:mod:`.wandb_run`).  Importing this module never imports wandb.
"""

from __future__ import annotations

import atexit
import enum
import os
import secrets
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors as _errors
from ..tracking import ExperimentTracker, RunStatus
from .wandb_api import Api
from .wandb_artifacts import Artifact
from .wandb_media import CustomChart, Histogram, Html, Image, Table, plot
from .wandb_run import (CONFIG_TAG, ENTITY_TAG, GROUP_TAG, JOB_TYPE_TAG, NOTES_TAG,
                        STEP_TAG, SUMMARY_TAG, TAGS_TAG, Config, ConfigError,
                        DisabledRun, Run, Summary, UsageError, config_dict, termwarn,
                        tracker_id)
from .wandb_sweep import agent, controller, sweep

__all__ = [
    "init", "log", "finish", "define_metric", "alert", "AlertLevel", "log_artifact",
    "use_artifact", "log_model", "save", "watch", "unwatch", "login", "setup", "teardown",
    "require", "Settings", "Run", "Config", "Summary", "Table", "Image", "Histogram", "Html",
    "plot",
    "CustomChart", "Artifact", "sweep", "agent", "Api", "run", "config", "summary",
    "UsageError", "ConfigError", "Error", "DEFAULT_FILE", "FILE_ENV", "file_path",
    "mark_preempting", "controller", "generate_id", "util", "errors",
]

DEFAULT_FILE = "synadb-runs.db"
FILE_ENV = "SYNADB_WANDB_FILE"
FLUSH_ENV = "SYNADB_WANDB_FLUSH_S"
DEFAULT_FLUSH_S = 1.0
DEFAULT_PROJECT = "uncategorized"  # W&B's project when none is named
Error = _errors.SynaError
errors = types.SimpleNamespace(Error=_errors.SynaError, UsageError=UsageError,
                               CommError=_errors.StorageError, ConfigError=ConfigError)


class AlertLevel(str, enum.Enum):
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class Settings(dict):
    """``wandb.Settings(...)``: keyword settings, read as attributes too.

    Honoured here: ``x_disable_stats`` (or ``_disable_stats``: no system
    metrics), ``x_stats_sampling_interval`` (seconds between system metric
    samples), ``mode``, ``synadb_file`` (the file) and ``synadb_flush_s``
    (seconds between writes of buffered rows; 0 writes every row at once).
    Others are accepted and ignored.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class _PreInit:
    """``wandb.config`` / ``wandb.summary`` before ``init``: any use says so."""

    def __init__(self, what: str) -> None:
        object.__setattr__(self, "_what", what)

    def _fail(self, name: str) -> Any:
        raise UsageError(f"You must call wandb.init() before {self._what}.{name}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._fail(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._fail(name)

    def __getitem__(self, key: str) -> Any:
        return self._fail(f"[{key!r}]")

    def __setitem__(self, key: str, value: Any) -> None:
        self._fail(f"[{key!r}]")

    def __repr__(self) -> str:
        return f"<{self._what} before wandb.init()>"


# The module-level run, config and summary, as W&B has them.
run: Run | None = None
config: Any = _PreInit("wandb.config")
summary: Any = _PreInit("wandb.summary")


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.trackers: dict[str, ExperimentTracker] = {}
        self.readers: dict[str, ExperimentTracker] = {}  # Api's read-only handles
        self.active: list[Run] = []
        self.trial: Any = None  # the sweep trial an agent is running (wandb_sweep)
        self.failed = False  # an uncaught exception is on its way out
        self.hooked = False


_STATE = _State()


def file_path(dir: str | os.PathLike[str] | None = None, settings: Any = None) -> str:
    """The file runs go to: ``dir``/synadb-runs.db, ``settings["synadb_file"]``,
    ``$SYNADB_WANDB_FILE``, ``$WANDB_DIR``/synadb-runs.db, or ./synadb-runs.db."""
    if dir is not None:
        d = os.fspath(dir)
        return os.path.abspath(d if d.endswith(".db") else os.path.join(d, DEFAULT_FILE))
    if settings and settings.get("synadb_file"):
        return os.path.abspath(os.fspath(settings["synadb_file"]))
    if os.environ.get(FILE_ENV):
        return os.path.abspath(os.environ[FILE_ENV])
    if os.environ.get("WANDB_DIR"):
        return os.path.abspath(os.path.join(os.environ["WANDB_DIR"], DEFAULT_FILE))
    return os.path.abspath(DEFAULT_FILE)


def _tracker(path: str) -> ExperimentTracker:
    """One tracker handle per file for the whole process (runs, artifacts,
    sweeps and ``Api`` share it, so each sees the others' writes at once)."""
    with _STATE.lock:
        t = _STATE.trackers.get(path)
        if t is None or t.closed:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            t = _STATE.trackers[path] = ExperimentTracker(path)
        return t


def _open_tracker(path: str) -> ExperimentTracker | None:
    """The process's handle on ``path`` if it has one open."""
    t = _STATE.trackers.get(path)
    return t if t is not None and not t.closed else None


def _reader(path: str) -> ExperimentTracker:
    """The process's writer on ``path`` if it has one, else one read-only
    handle per file that every ``Api()`` shares (closed by ``teardown``)."""
    with _STATE.lock:
        t = _open_tracker(path)
        if t is not None:
            return t
        t = _STATE.readers.get(path)
        if t is None or t.closed:
            t = _STATE.readers[path] = ExperimentTracker(path, read_only=True)
        return t


_ADJ = ("amber", "brave", "calm", "dainty", "eager", "fancy", "gentle", "hardy", "icy",
        "jolly", "keen", "lucky", "misty", "noble", "polar", "quiet", "rosy", "sunny",
        "tidy", "vivid", "wild", "young", "zesty")
_NOUN = ("river", "forest", "meadow", "glade", "comet", "dawn", "sky", "hill", "leaf",
         "moon", "field", "wave", "star", "cloud", "pine", "breeze", "lake", "frost")


def generate_id(length: int = 8) -> str:
    """A W&B-style run id: ``length`` lowercase letters and digits."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _setting(settings: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if n in settings and settings[n] is not None:
            return settings[n]
    return default


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _excepthook_install() -> None:
    if _STATE.hooked:
        return
    _STATE.hooked = True
    previous = sys.excepthook

    def hook(exc_type: Any, exc: Any, tb: Any) -> None:
        # An uncaught exception ends the script: its runs are Failed, as in W&B.
        _STATE.failed = True
        previous(exc_type, exc, tb)

    sys.excepthook = hook
    atexit.register(_at_exit)


def _at_exit() -> None:
    for r in list(_STATE.active):
        try:
            r.finish(exit_code=1 if _STATE.failed else 0)
        except Exception as e:  # the file is gone, the disk is full: say so, exit anyway
            termwarn(f"could not finish run {r.id}: {e}")
    for t in list(_STATE.trackers.values()) + list(_STATE.readers.values()):
        try:
            t.close()
        except Exception as e:
            termwarn(f"could not close {t.path}: {e}")
    _STATE.trackers.clear()
    _STATE.readers.clear()


def _set_globals(r: Run | None) -> None:
    g = globals()
    g["run"] = r
    g["config"] = r.config if r is not None else _PreInit("wandb.config")
    g["summary"] = r.summary if r is not None else _PreInit("wandb.summary")


def _on_finish(r: Run) -> None:
    with _STATE.lock:
        if r in _STATE.active:
            _STATE.active.remove(r)
        if globals().get("run") is r:
            _set_globals(_STATE.active[-1] if _STATE.active else None)
        resume_key = f"wandb/resume/{r.project}"
        db = r.tracker.db
        if db.exists(resume_key) and db.get_text(resume_key) == r._rid:
            db.delete(resume_key)


def init(project: str | None = None, name: str | None = None, config: Any = None,
         tags: Sequence[str] | None = None, group: str | None = None,
         job_type: str | None = None, notes: str | None = None, id: str | None = None,
         resume: bool | str | None = None, mode: str | None = None, reinit: Any = None,
         dir: str | os.PathLike[str] | None = None, entity: str | None = None,
         settings: Any = None, config_exclude_keys: Sequence[str] | None = None,
         config_include_keys: Sequence[str] | None = None,
         allow_val_change: bool | None = None, **ignored: Any) -> Run:
    """Start (or resume) a run and make it ``wandb.run``.

    Args:
        project: the experiment the run goes to (``$WANDB_PROJECT``, else
            "uncategorized"); a sweep's runs go to the sweep's project.
        name: the display name (a generated "adjective-noun-N" if None).
        config: a dict, argparse Namespace or YAML/JSON path: ``wandb.config``.
        tags, group, job_type, notes: as W&B's.
        id: the run id (8 letters and digits generated if None; W&B's ids
            with ``-``, ``_`` or ``.`` are kept as they are, see
            :func:`~synadb.integrations.wandb_run.tracker_id`).
        resume: "allow" (resume ``id`` if it exists), "must" (it must),
            "never" (it must not), "auto"/True (the last run of this project
            that never finished, else a new one).
        mode: "online", "offline" (both write the file) or "disabled"
            (nothing is written).
        reinit: with a run active: "return_previous" (the default, as W&B in
            scripts), "finish_previous" (or True), "create_new".
        dir: the directory of the file (or the ``.db`` file itself).
        settings: ``wandb.Settings`` or a dict (see :class:`Settings`).

    Returns:
        The :class:`~synadb.integrations.wandb_run.Run`.

    Raises:
        UsageError: ``resume="must"`` and no such run, ``"never"`` (or no
            resume) and the id exists.
    """
    settings = Settings(settings or {}) if not isinstance(settings, Settings) else settings
    mode = mode or settings.get("mode") or os.environ.get("WANDB_MODE") or "online"
    if _truthy(os.environ.get("WANDB_DISABLED")):
        mode = "disabled"
    elif mode == "dryrun":
        mode = "offline"
    if mode not in ("online", "offline", "disabled", "shared"):
        raise UsageError(f"mode must be 'online', 'offline' or 'disabled', got {mode!r}")
    if mode == "disabled":
        r = DisabledRun(_filter_config(config_dict(config), config_include_keys,
                                       config_exclude_keys), name or "dummy",
                        project or "disabled")
        _set_globals(r)
        return r
    if reinit is True:
        reinit = "finish_previous"
    elif reinit is None or reinit is False or reinit == "default":
        reinit = "return_previous"  # W&B's default outside notebooks
    if resume is True or resume in ("True", "true"):
        resume = "auto"
    elif resume is False:
        resume = None
    if resume is None and os.environ.get("WANDB_RESUME"):
        resume = os.environ["WANDB_RESUME"]
    if resume not in (None, "allow", "must", "never", "auto"):
        raise UsageError(f"resume must be 'allow', 'must', 'never', 'auto' or True, "
                         f"got {resume!r}")
    with _STATE.lock:
        previous = _STATE.active[-1] if _STATE.active else None
        if previous is not None:
            if reinit == "finish_previous":
                for r in list(_STATE.active):
                    r.finish()
            elif reinit == "create_new":
                pass
            elif resume == "must":
                raise UsageError("Cannot resume a run while another run is active. You must "
                                 "either finish it using run.finish(), or use "
                                 "reinit='create_new' when calling wandb.init().")
            elif reinit == "return_previous":
                return previous
            else:
                raise UsageError(f"reinit must be True, False, 'return_previous', "
                                 f"'finish_previous' or 'create_new', got {reinit!r}")
        r = _start(project, name, config, tags, group, job_type, notes, id, resume, mode,
                   dir, entity, settings, config_include_keys, config_exclude_keys,
                   allow_val_change)
        _STATE.active.append(r)
        if reinit != "create_new" or previous is None:
            _set_globals(r)
        _excepthook_install()
        return r


def _filter_config(cfg: dict[str, Any], include: Sequence[str] | None,
                   exclude: Sequence[str] | None) -> dict[str, Any]:
    if include:
        cfg = {k: v for k, v in cfg.items() if k in include}
    if exclude:
        cfg = {k: v for k, v in cfg.items() if k not in exclude}
    return cfg


def _start(project: str | None, name: str | None, config: Any, tags: Any, group: str | None,
           job_type: str | None, notes: str | None, run_id: str | None, resume: str | None,
           mode: str, directory: Any, entity: str | None, settings: Settings,
           include: Any, exclude: Any, allow_val_change: bool | None) -> Run:
    trial = _STATE.trial
    if trial is not None and trial.project:
        if project and project != trial.project:
            termwarn(f"Ignoring project {project!r} when running a sweep "
                     f"(its runs go to {trial.project!r}).")
        project = trial.project
    project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
    entity = entity or os.environ.get("WANDB_ENTITY") or "local"
    name = name or os.environ.get("WANDB_NAME")
    notes = notes if notes is not None else os.environ.get("WANDB_NOTES")
    group = group or os.environ.get("WANDB_RUN_GROUP")
    job_type = job_type or os.environ.get("WANDB_JOB_TYPE")
    if tags is None and os.environ.get("WANDB_TAGS"):
        tags = [t for t in os.environ["WANDB_TAGS"].split(",") if t]
    labels = [tags] if isinstance(tags, str) else list(tags or [])
    wandb_id = run_id or os.environ.get("WANDB_RUN_ID")
    run_id = None if wandb_id is None else tracker_id(wandb_id)
    path = file_path(directory, settings)
    tracker = _tracker(path)
    flush_s = float(_setting(settings, "synadb_flush_s",
                             default=os.environ.get(FLUSH_ENV, DEFAULT_FLUSH_S)))
    if tracker.db.config.sync_on_write:
        flush_s = 0.0
    stats = not (_setting(settings, "x_disable_stats", "_disable_stats", default=False)
                 or _truthy(os.environ.get("WANDB_X_DISABLE_STATS"))
                 or _truthy(os.environ.get("WANDB__DISABLE_STATS")))
    interval = _setting(settings, "x_stats_sampling_interval", "_stats_sample_rate_seconds")
    system = (float(interval) if interval else True) if stats else False
    cfg = _filter_config(config_dict(config), include, exclude)

    existing = None
    resume_key = f"wandb/resume/{project}"
    if run_id is None and resume == "auto":
        db = tracker.db
        last = db.get_text(resume_key) if db.exists(resume_key) else None
        if last and last in tracker.run_ids(project) \
                and tracker.get_run(last).status is RunStatus.RUNNING:
            run_id = last
    if run_id is not None and run_id in tracker.run_ids():
        existing = tracker.get_run(run_id)
    if existing is not None and resume in (None, "never"):
        raise UsageError(f"run {run_id!r} already exists in {path!r}; pass resume='allow' "
                         "or 'must' to continue it, or use a new id")
    if existing is None and resume == "must":
        raise UsageError(f"resume='must' but there is no run {run_id!r} in {path!r}")
    if existing is not None and existing.experiment != project:
        raise UsageError(f"run {run_id!r} belongs to project {existing.experiment!r}, "
                         f"not {project!r}")

    if existing is not None:
        r = _resume(tracker, existing, project, entity, name, labels, group, job_type,
                    notes, flush_s, mode, system, cfg)
    else:
        rid = run_id or generate_id()
        wandb_id = wandb_id or rid
        if name is None:
            adj, noun = secrets.choice(_ADJ), secrets.choice(_NOUN)
            name = f"{adj}-{noun}-{len(tracker.run_ids(project)) + 1}"
        import json

        values = {ENTITY_TAG: entity, "wandb.id": wandb_id}
        if group:
            values[GROUP_TAG] = group
        if job_type:
            values[JOB_TYPE_TAG] = job_type
        if notes:
            values[NOTES_TAG] = values["mlflow.note.content"] = notes
        if labels:
            values[TAGS_TAG] = json.dumps(labels)
        if trial is not None:
            values.update(trial.tag_values())
        run_cfg = dict(cfg)
        if trial is not None:
            run_cfg.update(trial.params)
        r = Run(tracker, rid, project=project, entity=entity, name=name, group=group,
                job_type=job_type, notes=notes, tags=labels,
                directory=os.path.dirname(path), flush_s=flush_s, resumed=False, mode=mode,
                on_finish=_on_finish, wandb_id=wandb_id)
        if trial is not None:
            r.config._lock(trial.params, "sweep")
        r.config._merge(cfg, True, warn_locked=False)
        if run_cfg:
            values[CONFIG_TAG] = json.dumps(r.config.as_dict(), default=str)
        tracker.start_run(project, labels, name=name, params=r.config.as_dict(),
                          tag_values=values, run_id=rid, system_metrics=system)
    if resume == "auto":
        tracker.db.put_text(resume_key, r._rid)
    if trial is not None:
        trial.attach(r)
    return r


def _resume(tracker: ExperimentTracker, existing: Any, project: str, entity: str,
            name: str | None, labels: list[str], group: str | None, job_type: str | None,
            notes: str | None, flush_s: float, mode: str, system: Any,
            cfg: dict[str, Any]) -> Run:
    """Continue a run: its config, summary and step come back; it is Running again."""
    import json

    tv = existing.tag_values
    stored_tags = json.loads(tv[TAGS_TAG]) if TAGS_TAG in tv else list(existing.tags)
    r = Run(tracker, existing.id, project=project, entity=tv.get(ENTITY_TAG, entity),
            name=name or existing.name, group=group or tv.get(GROUP_TAG),
            job_type=job_type or tv.get(JOB_TYPE_TAG),
            notes=notes if notes is not None else tv.get(NOTES_TAG),
            tags=labels or stored_tags, directory=os.path.dirname(tracker.path),
            flush_s=flush_s, resumed=True, mode=mode, on_finish=_on_finish,
            wandb_id=tv.get("wandb.id", existing.id))
    r.start_time = existing.start_time
    if CONFIG_TAG in tv:
        r.config._merge(json.loads(tv[CONFIG_TAG]), True, warn_locked=False)
    if SUMMARY_TAG in tv:
        stored = json.loads(tv[SUMMARY_TAG])
        r.summary._data.update({k: v for k, v in stored.items()
                                if k not in ("_step", "_runtime", "_timestamp")})
    step = int(tv[STEP_TAG]) if STEP_TAG in tv else 0
    for m in existing.metric_names:
        if not m.startswith("system/"):
            n = tracker.metric_count(existing.id, m)
            if n:
                step = max(step, int(tracker.metric_rows(existing.id, m, n - 1, n)[0, 1]) + 1)
    r._step = step
    tracker.end_run(existing.id, RunStatus.RUNNING)
    if name and name != existing.name:
        tracker.rename_run(existing.id, name)
    if cfg:
        r.config.update(cfg, allow_val_change=True)
    if system:
        tracker.track_system_metrics(existing.id, None if system is True else float(system))
    return r


# -- module-level calls on wandb.run -----------------------------------------
def _active(what: str) -> Run:
    r = globals().get("run")
    if r is None:
        raise UsageError(f"You must call wandb.init() before wandb.{what}()")
    return r


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None,
        sync: bool | None = None) -> None:
    """``wandb.run.log(...)`` (see :meth:`Run.log`)."""
    _active("log").log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish ``wandb.run``: Completed, or Failed for a non-zero exit code."""
    r = globals().get("run")
    if r is not None:
        r.finish(exit_code=exit_code)
        if globals().get("run") is r:  # a DisabledRun
            _set_globals(None)


def define_metric(name: str, step_metric: str | None = None, step_sync: bool | None = None,
                  hidden: bool | None = None, summary: str | None = None,
                  goal: str | None = None, overwrite: bool | None = None) -> Any:
    return _active("define_metric").define_metric(name, step_metric, step_sync, hidden,
                                                  summary, goal, overwrite)


def alert(title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
    _active("alert").alert(title, text, level, wait_duration)


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None,
                 aliases: list[str] | None = None, tags: list[str] | None = None) -> Any:
    return _active("log_artifact").log_artifact(artifact_or_path, name, type, aliases)


def use_artifact(artifact_or_name: Any, type: str | None = None,
                 aliases: list[str] | None = None, use_as: str | None = None) -> Any:
    return _active("use_artifact").use_artifact(artifact_or_name, type)


def log_model(path: Any, name: str | None = None, aliases: list[str] | None = None) -> Any:
    return _active("log_model").log_model(path, name, aliases)


def save(glob_str: str, base_path: str | None = None, policy: str = "live") -> list[str]:
    return _active("save").save(glob_str, base_path, policy)


def watch(*args: Any, **kwargs: Any) -> None:
    """Gradients and parameters are not recorded (accepted so scripts run)."""


def unwatch(*args: Any, **kwargs: Any) -> None:
    pass


def mark_preempting() -> None:
    pass


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to log in to: always True."""
    return True


def setup(*args: Any, **kwargs: Any) -> None:
    return None


def require(*args: Any, **kwargs: Any) -> None:
    return None


def teardown(exit_code: int | None = None) -> None:
    """Finish every active run and close the files."""
    for r in list(_STATE.active):
        r.finish(exit_code=exit_code)
    with _STATE.lock:
        for t in list(_STATE.trackers.values()) + list(_STATE.readers.values()):
            t.close()
        _STATE.trackers.clear()
        _STATE.readers.clear()


PublicApi = Api
util = types.SimpleNamespace(generate_id=generate_id)
