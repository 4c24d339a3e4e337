"""``wandb.sweep`` and ``wandb.agent``, run locally over a synadb file.

``sweep(config)`` keeps the sweep's config under ``wandb/sweeps/<id>`` in
the file and returns its id; ``agent(sweep_id, function, count)`` runs
``function`` once per trial in this process.  The function calls
``wandb.init()`` as under W&B's agent: the run goes to the sweep's project,
``wandb.config`` holds the trial's parameters (locked: the function's own
defaults for them are ignored), and the run is tagged ``sweep=<id>``,
``sweep_index=<n>`` (synadb.sweep's tags, which Studio groups by).

Methods: ``grid`` (every combination, in order, through
:func:`synadb.sweep.sweep`; a second agent on the same sweep continues where
the first stopped), ``random``, and ``bayes`` (Optuna's TPE, with the
sweep's earlier runs as its history; ``pip install 'synadb[sweeps]'``).

``early_terminate: {"type": "hyperband", "min_iter": 3, "eta": 3}`` (or
``max_iter`` and ``s``) is W&B's: brackets at ``min_iter * eta**k`` (or
``max_iter / eta**k`` for k = 1..s) iterations of the metric (the number of
times it was logged); at a bracket, a run whose best value so far is worse
than the top ``1/eta`` of all the sweep's runs there is stopped.  Its run
ends Killed and the agent goes on to the next trial.

Parameters: ``value``, ``values`` (with ``probabilities``), ``min``/``max``
(ints: ``int_uniform``, else ``uniform``), nested ``parameters``, and
``distribution`` one of constant, categorical, uniform, int_uniform,
q_uniform, log_uniform (min/max are logs), log_uniform_values,
q_log_uniform_values, inv_log_uniform_values, normal, q_normal, log_normal,
q_log_normal, beta.  Under ``bayes`` the normal family is searched within
four sigmas of ``mu``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from .. import errors
from ..sweep import sweep as _grid_sweep
from ..tracking import ExperimentTracker
from .wandb_run import SUMMARY_TAG, SWEEP_TAG, Run, termwarn

__all__ = ["sweep", "agent", "load_sweep", "SweepRunStopped", "hyperband_bands"]

SWEEP_PREFIX = "wandb/sweeps/"
METHODS = ("grid", "random", "bayes")
MAX_FAILURES_IN_A_ROW = 5  # then the agent stops, as W&B's does
_DISCRETE = ("constant", "categorical", "int_uniform")


class SweepRunStopped(BaseException):
    """Raised inside a trial's ``log`` when early termination stops the run.

    A BaseException, as the signal W&B's agent sends is: a training loop's
    ``except Exception`` must not swallow it.  The agent catches it."""


def _tracker_for(sweep_id: str | None = None) -> ExperimentTracker:
    from .wandb import _STATE, _tracker, file_path

    if sweep_id is not None:
        for t in list(_STATE.trackers.values()):
            if not t.closed and t.db.exists(SWEEP_PREFIX + sweep_id):
                return t
    return _tracker(file_path())


def load_sweep(tracker: ExperimentTracker, sweep_id: str) -> dict[str, Any]:
    key = SWEEP_PREFIX + sweep_id
    if not tracker.db.exists(key):
        raise errors.KeyNotFound(f"no sweep {sweep_id!r} in {tracker.path!r}")
    return json.loads(tracker.db.get_text(key))


def _save(tracker: ExperimentTracker, sweep_id: str, state: dict[str, Any]) -> None:
    tracker.db.put_text(SWEEP_PREFIX + sweep_id, json.dumps(state, default=str))


# -- parameters ---------------------------------------------------------------
def _params(spec: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    if not isinstance(spec, Mapping) or not spec:
        raise errors.InvalidArgument("a sweep's 'parameters' is a non-empty dict of "
                                     "name -> {values|value|min/max|distribution}")
    out = []
    for name, p in spec.items():
        if not isinstance(p, Mapping):
            raise errors.InvalidArgument(f"sweep parameter {name!r} must be a dict such as "
                                         f"{{'values': [...]}}, got {p!r}")
        if "parameters" in p:
            out += _params(p["parameters"], prefix + (str(name),))
        else:
            out.append((prefix + (str(name),), dict(p)))
    return out


def _kind(name: str, p: Mapping[str, Any]) -> str:
    dist = p.get("distribution")
    if dist is None:
        if "value" in p:
            return "constant"
        if "values" in p:
            return "categorical"
        if "min" in p and "max" in p:
            ints = all(isinstance(p[k], int) and not isinstance(p[k], bool)
                       for k in ("min", "max"))
            return "int_uniform" if ints else "uniform"
        if "mu" in p or "sigma" in p:
            return "normal"
        raise errors.InvalidArgument(f"sweep parameter {name!r}: give value, values, "
                                     "min/max or a distribution")
    known = ("constant", "categorical", "uniform", "int_uniform", "q_uniform", "log_uniform",
             "log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values",
             "normal", "q_normal", "log_normal", "q_log_normal", "beta")
    if dist not in known:
        raise errors.InvalidArgument(f"sweep parameter {name!r}: unknown distribution "
                                     f"{dist!r}")
    if dist in ("categorical",) and "values" not in p:
        raise errors.InvalidArgument(f"sweep parameter {name!r}: categorical needs values")
    if dist in ("uniform", "int_uniform", "q_uniform", "log_uniform", "log_uniform_values",
                "q_log_uniform_values", "inv_log_uniform_values") \
            and not ("min" in p and "max" in p):
        raise errors.InvalidArgument(f"sweep parameter {name!r}: {dist} needs min and max")
    if "min" in p and "max" in p and p["min"] > p["max"]:
        raise errors.InvalidArgument(f"sweep parameter {name!r}: min is above max")
    return dist


def _sample(kind: str, p: Mapping[str, Any], rng: random.Random) -> Any:
    q = p.get("q", 1.0)
    if kind == "constant":
        return p["value"]
    if kind == "categorical":
        return rng.choices(list(p["values"]), weights=p.get("probabilities"))[0]
    if kind == "uniform":
        return rng.uniform(p["min"], p["max"])
    if kind == "int_uniform":
        return rng.randint(int(p["min"]), int(p["max"]))
    if kind == "q_uniform":
        return round(rng.uniform(p["min"], p["max"]) / q) * q
    if kind == "log_uniform":
        return math.exp(rng.uniform(p["min"], p["max"]))
    if kind in ("log_uniform_values", "q_log_uniform_values"):
        v = math.exp(rng.uniform(math.log(p["min"]), math.log(p["max"])))
        return round(v / q) * q if kind.startswith("q_") else v
    if kind == "inv_log_uniform_values":
        return 1.0 / math.exp(rng.uniform(math.log(1.0 / p["max"]), math.log(1.0 / p["min"])))
    mu, sigma = p.get("mu", 0.0), p.get("sigma", 1.0)
    if kind in ("normal", "q_normal"):
        v = rng.gauss(mu, sigma)
        return round(v / q) * q if kind == "q_normal" else v
    if kind in ("log_normal", "q_log_normal"):
        v = math.exp(rng.gauss(mu, sigma))
        return round(v / q) * q if kind == "q_log_normal" else v
    if kind == "beta":
        return rng.betavariate(p.get("a", 1.0), p.get("b", 1.0))
    raise errors.InvalidArgument(f"unknown distribution {kind!r}")


def _nest(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, v in flat.items():
        cur = out
        for part in path[:-1]:
            cur = cur.setdefault(part, {})
        cur[path[-1]] = v
    return out


def _unnest(config: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    cur: Any = config
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a sweep config (W&B's schema, the parts run here)."""
    if not isinstance(config, Mapping):
        raise errors.InvalidType(f"a sweep config is a dict, got {type(config).__name__}")
    method = config.get("method")
    if method not in METHODS:
        raise errors.InvalidArgument(f"sweep method must be one of {', '.join(METHODS)}, "
                                     f"got {method!r}")
    params = _params(config.get("parameters"))
    for path, p in params:
        kind = _kind(".".join(path), p)
        if method == "grid" and kind not in _DISCRETE:
            raise errors.InvalidArgument(
                f"Parameter {'.'.join(path)} is a continuous distribution ({kind}); grid "
                "search requires all parameters to be discrete (values, value or int "
                "min/max)")
    metric = config.get("metric")
    if metric is not None:
        if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str):
            raise errors.InvalidArgument("sweep 'metric' is {'name': ..., 'goal': "
                                         "'minimize'|'maximize'}")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise errors.InvalidArgument(f"metric goal is 'minimize' or 'maximize', got "
                                         f"{metric.get('goal')!r}")
    if method == "bayes" and metric is None:
        raise errors.InvalidArgument("a bayes sweep needs a metric to optimise")
    et = config.get("early_terminate")
    if et is not None:
        if not isinstance(et, Mapping) or et.get("type") != "hyperband":
            raise errors.InvalidArgument("early_terminate supports {'type': 'hyperband', ...}")
        if metric is None:
            raise errors.InvalidArgument('Hyperband stopping requires "metric" section')
        hyperband_bands(et)
    return dict(config)


def hyperband_bands(et: Mapping[str, Any]) -> list[int]:
    """The iterations at which hyperband may stop a run (W&B's definition).

    >>> hyperband_bands({"type": "hyperband", "min_iter": 3, "eta": 3})[:3]
    [3, 9, 27]
    >>> hyperband_bands({"type": "hyperband", "max_iter": 27, "eta": 3, "s": 2})
    [3, 9]
    """
    eta = et.get("eta", 3)
    if not isinstance(eta, (int, float)) or eta <= 1:
        raise errors.InvalidArgument(f"hyperband eta must be a number above 1, got {eta!r}")
    if "max_iter" in et:
        band = float(et["max_iter"])
        bands = []
        for _ in range(int(et.get("s", 0))):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        bands.sort()
    elif "min_iter" in et:
        band = float(et["min_iter"])
        bands = []
        for _ in range(100):
            bands.append(int(band))
            band *= eta
    else:
        raise errors.InvalidArgument('invalid config for hyperband stopping: either '
                                     '"max_iter" or "min_iter" must be specified')
    if not bands:
        raise errors.InvalidArgument("Bands must be an array of length at least 1. Try "
                                     "increasing s, decreasing eta, or increasing min_iter.")
    return bands


# -- sweep and agent ----------------------------------------------------------
def sweep(sweep: Any, entity: str | None = None, project: str | None = None,
          prior_runs: list[str] | None = None, *, file: str | None = None) -> str:
    """Register a sweep; returns its id for :func:`agent`.

    Raises:
        InvalidArgument: the config is not one a sweep can run.
    """
    from .wandb import DEFAULT_PROJECT, _tracker, file_path, generate_id
    import os

    config = sweep() if callable(sweep) else sweep
    config = validate(config)
    project = project or config.get("project") or os.environ.get("WANDB_PROJECT") \
        or DEFAULT_PROJECT
    tracker = _tracker(file_path(file)) if file else _tracker_for()
    sid = generate_id(8)
    _save(tracker, sid, {"config": config, "project": project, "created": time.time(),
                         "state": "PENDING", "runs": 0})
    print(f"wandb: Created sweep with ID: {sid}", file=sys.stderr)
    return sid


class _Trial:
    """One run of a sweep: its parameters, and the early-termination check."""

    def __init__(self, sweep_id: str, project: str, params: dict[str, Any], index: int,
                 config: Mapping[str, Any], prior: list[list[float]]) -> None:
        self.sweep_id, self.project, self.params, self.index = sweep_id, project, params, index
        self.run: Run | None = None
        metric = config.get("metric") or {}
        self.metric = metric.get("name")
        self.maximize = metric.get("goal") == "maximize"
        et = config.get("early_terminate")
        self.bands = hyperband_bands(et) if et else None
        self.strict = bool(et and et.get("strict"))
        self.r = 1.0 / et.get("eta", 3) if et else 0.0
        self.prior = prior
        self.history: list[float] = []
        self.stopped_at: int | None = None

    def tag_values(self) -> dict[str, str]:
        return {SWEEP_TAG: self.sweep_id, "sweep_index": str(self.index),
                "wandb.sweep": self.sweep_id}

    def attach(self, run: Run) -> None:
        self.run = run
        run.sweep_id = self.sweep_id
        if self.bands and self.metric:
            run._set_hook(self._on_row)

    def _on_row(self, nums: dict[str, float]) -> None:
        v = nums.get(self.metric)  # type: ignore[arg-type]
        if v is None or math.isnan(v):
            return
        self.history.append(-v if self.maximize else v)
        band = self._stop_band()
        if band is not None and self.run is not None:
            self.stopped_at = band
            self.run._kill(f"stopped by hyperband early termination at band {band}")
            raise SweepRunStopped(f"run {self.run.id} stopped at band {band}")

    def _stop_band(self) -> int | None:
        """The band at which this run is below the threshold, if any (W&B's
        hyperband_stop_runs for one running run)."""
        hist = self.history
        histories = self.prior + [hist]
        closest, threshold = -1, 0.0
        for band in self.bands or ():
            if band > len(hist):
                break
            values = sorted(h[band - 1] for h in histories if len(h) >= band)
            closest, threshold = band, values[int(self.r * len(values))]
        if closest < 0:
            return None
        value = hist[closest - 1] if self.strict else min(hist)
        return closest if value > threshold else None


def _metric_value(run: Run | None, name: str | None, maximize: bool) -> float | None:
    if run is None or name is None:
        return None
    v = run.summary.get(name)
    if isinstance(v, Mapping):
        for k in (("max", "best", "last") if maximize else ("min", "best", "last")):
            if k in v:
                v = v[k]
                break
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        return None
    return float(v)


class _Proposer:
    """Next parameters for a sweep; told each result (bayes learns from them)."""

    def __init__(self, config: Mapping[str, Any], tracker: ExperimentTracker, sweep_id: str,
                 project: str) -> None:
        self.config = config
        self.method = config["method"]
        self.params = [(path, p, _kind(".".join(path), p)) for path, p in
                       _params(config["parameters"])]
        self.rng = random.Random(config.get("seed"))
        self.tracker = tracker
        self.prior_runs = [r for r in tracker.list_runs(project)
                           if r.tag_values.get(SWEEP_TAG) == sweep_id]
        self.index = len(self.prior_runs)
        self.grid: Any = None
        if self.method == "grid":
            values = {}
            for path, p, kind in self.params:
                if kind == "constant":
                    values[path] = [p["value"]]
                elif kind == "categorical":
                    values[path] = list(p["values"])
                else:
                    values[path] = list(range(int(p["min"]), int(p["max"]) + 1))
            combos = _grid_sweep(values, "grid", sweep_id=sweep_id)
            for _ in range(self.index):  # an earlier agent ran these
                next(combos, None)
            self.grid = combos
        elif self.method == "bayes":
            self._study_init()

    def _study_init(self) -> None:
        try:
            import optuna
        except ImportError as e:
            raise errors.MissingDependency("optuna", "sweeps",
                                           "bayes sweeps (Optuna's TPE)") from e
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metric = self.config["metric"]
        self.optuna = optuna
        self.study = optuna.create_study(
            direction="maximize" if metric.get("goal") == "maximize" else "minimize",
            sampler=optuna.samplers.TPESampler(seed=self.config.get("seed")))
        self.dists: dict[str, Any] = {}
        self.cats: dict[str, list[Any]] = {}
        for path, p, kind in self.params:
            key = ".".join(path)
            d = optuna.distributions
            if kind == "constant":
                continue
            if kind == "categorical":
                choices = list(p["values"])
                self.cats[key] = choices
                self.dists[key] = d.CategoricalDistribution(list(range(len(choices))))
            elif kind == "int_uniform":
                self.dists[key] = d.IntDistribution(int(p["min"]), int(p["max"]))
            elif kind in ("uniform", "q_uniform"):
                self.dists[key] = d.FloatDistribution(float(p["min"]), float(p["max"]))
            elif kind == "log_uniform":
                self.dists[key] = d.FloatDistribution(math.exp(p["min"]), math.exp(p["max"]),
                                                      log=True)
            elif kind in ("log_uniform_values", "q_log_uniform_values",
                          "inv_log_uniform_values"):
                self.dists[key] = d.FloatDistribution(float(p["min"]), float(p["max"]),
                                                      log=True)
            elif kind == "beta":
                self.dists[key] = d.FloatDistribution(0.0, 1.0)
            else:  # the normal family: within four sigmas
                mu, sigma = float(p.get("mu", 0.0)), float(p.get("sigma", 1.0))
                lo, hi = mu - 4 * sigma, mu + 4 * sigma
                if kind in ("log_normal", "q_log_normal"):
                    self.dists[key] = d.FloatDistribution(math.exp(lo), math.exp(hi), log=True)
                else:
                    self.dists[key] = d.FloatDistribution(lo, hi)
        # The sweep's earlier runs (another agent, an earlier call) teach TPE.
        maximize = metric.get("goal") == "maximize"
        for run in self.prior_runs:
            value = None
            text = run.tag_values.get(SUMMARY_TAG)
            if text:
                summary = json.loads(text)
                v = summary.get(metric["name"])
                if isinstance(v, Mapping):
                    v = v.get("max" if maximize else "min", v.get("last"))
                value = v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            if value is None or math.isnan(value):
                continue
            cfg = json.loads(run.tag_values.get("wandb.config", "{}"))
            params = {}
            for path, p, kind in self.params:
                key = ".".join(path)
                if key not in self.dists:
                    continue
                found, v = _unnest(cfg, path)
                if not found:
                    break
                if key in self.cats:
                    if v not in self.cats[key]:
                        break
                    v = self.cats[key].index(v)
                params[key] = v
            else:
                try:
                    self.study.add_trial(self.optuna.trial.create_trial(
                        params=params, distributions=self.dists, value=float(value)))
                except ValueError:  # outside the distributions now: not history
                    pass

    def next(self) -> dict[str, Any] | None:
        if self.method == "grid":
            combo = next(self.grid, None)
            if combo is None:
                return None
            return _nest(dict(combo))
        flat: dict[tuple[str, ...], Any] = {}
        if self.method == "random":
            for path, p, kind in self.params:
                flat[path] = _sample(kind, p, self.rng)
            return _nest(flat)
        self.trial = self.study.ask(self.dists)
        for path, p, kind in self.params:
            key = ".".join(path)
            if kind == "constant":
                flat[path] = p["value"]
                continue
            v = self.trial.params[key]
            if key in self.cats:
                v = self.cats[key][v]
            elif kind in ("q_uniform", "q_log_uniform_values", "q_normal", "q_log_normal"):
                q = p.get("q", 1.0)
                v = round(v / q) * q
            elif kind == "inv_log_uniform_values":
                v = float(v)
            flat[path] = v
        return _nest(flat)

    def tell(self, value: float | None) -> None:
        if self.method != "bayes":
            return
        if value is None:
            self.study.tell(self.trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(self.trial, value)


def agent(sweep_id: str, function: Callable[[], Any] | None = None, entity: str | None = None,
          project: str | None = None, count: int | None = None) -> None:
    """Run ``function`` for ``count`` trials of the sweep (a grid: until it
    is done), here, one after another.

    Raises:
        MissingDependency: a bayes sweep without optuna (``synadb[sweeps]``).
    """
    from .wandb import _STATE

    if function is None:
        raise errors.InvalidArgument("a local agent needs function= (the training function "
                                     "that calls wandb.init())")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or count < 0):
        raise errors.InvalidArgument(f"count must be a non-negative int, got {count!r}")
    sid = sweep_id.split("/")[-1]
    tracker = _tracker_for(sid)
    state = load_sweep(tracker, sid)
    config = state["config"]
    proj = state["project"]
    proposer = _Proposer(config, tracker, sid, proj)
    metric = (config.get("metric") or {}).get("name")
    maximize = (config.get("metric") or {}).get("goal") == "maximize"
    prior: list[list[float]] = []
    if config.get("early_terminate") and metric:
        for r in proposer.prior_runs:
            if metric in r.metric_names:
                h = tracker.get_metric_tensor(r.id, metric)
                vals = [float(-x if maximize else x) for x in h.tolist() if not math.isnan(x)]
                if vals:
                    prior.append(vals)
    done = 0
    failures = 0
    state["state"] = "RUNNING"
    _save(tracker, sid, state)
    while count is None or done < count:
        params = proposer.next()
        if params is None:
            state["state"] = "FINISHED"
            break
        trial = _Trial(sid, proj, params, proposer.index, config, prior)
        proposer.index += 1
        exit_code = 0
        _STATE.trial = trial
        try:
            function()
        except SweepRunStopped:
            pass
        except Exception:
            traceback.print_exc()
            exit_code = 1
        finally:
            _STATE.trial = None
        run = trial.run
        if run is not None and not run._finished:
            run.finish(exit_code=exit_code)
        proposer.tell(_metric_value(run, metric, maximize))
        if trial.history:
            prior.append(trial.history)
        done += 1
        state["runs"] = state.get("runs", 0) + 1
        _save(tracker, sid, state)
        failures = failures + 1 if exit_code else 0
        if failures >= MAX_FAILURES_IN_A_ROW:
            termwarn(f"Detected {failures} failed runs in a row, killing sweep.")
            break
    _save(tracker, sid, state)


def controller(*args: Any, **kwargs: Any) -> Any:
    raise errors.InvalidArgument("sweep controllers are W&B server objects; run "
                                 "wandb.agent(sweep_id, function, count) locally instead")
