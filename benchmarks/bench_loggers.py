"""Lightning logger benchmark: SynaLogger against CSVLogger and MLFlowLogger.

One Lightning epoch of a tiny model (a 4 -> 1 linear layer, batch 4, on
CPU) whose ``training_step`` logs two metrics at every step
(``log_every_n_steps=1``; Lightning adds ``epoch``, so 3 values a step), run
with each logger in this process:

  * none        -- ``logger=False``: the baseline;
  * noop        -- a Logger whose methods do nothing: Lightning's own
                   per-step logging work (metrics to Python floats, the
                   logger connector), which any logger pays;
  * synadb      -- ``SynaLogger(<tmp>/runs.db)``;
  * csv         -- Lightning's ``CSVLogger`` (buffers rows, writes a CSV
                   every 100 steps);
  * mlflow      -- Lightning's ``MLFlowLogger`` on ``sqlite:///<tmp>/mlflow.db``
                   (real MLflow; its schema is created before timing).

Figures:
  * overhead / logged step -- (fit wall time with the logger - with the
                   no-op logger) / steps (and, for orientation, against
                   ``logger=False``), best of the repeats, interleaved (none, synadb,
                   csv, mlflow, none, ...) so that a busy machine slows them
                   alike; it includes starting and ending the run (one run
                   per fit), and on a loaded 2-core machine it is within the
                   noise for the fast loggers;
  * log_metrics / logged step -- the time spent inside the logger's
                   ``log_metrics`` (plus ``save``, which Lightning calls after
                   it and where CSVLogger writes its rows), divided by the
                   steps: the per-step cost measured directly, without the
                   baseline's noise;
  * other logger calls / fit -- ``log_hyperparams``, ``after_save_checkpoint``
                   and ``finalize`` (ending the run, fsync), once per fit.

Run standalone: ``python benchmarks/bench_loggers.py [--quick]``; the harness
calls :func:`run`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

if str(c.REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(c.REPO_ROOT))

HEADERS = ["logger", "fit (wall)", "overhead / logged step vs no-op logger (vs none)",
           "log_metrics / logged step", "log_metrics vs synadb", "other logger calls / fit"]
VARIANTS = ("none", "noop", "synadb", "csv", "mlflow")
_LOGGER_METHODS = ("log_metrics", "log_hyperparams", "save", "after_save_checkpoint",
                   "finalize")


def _quiet() -> None:
    c.quiet_mlflow()
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _module_and_data(steps: int) -> tuple[Any, Any]:
    import lightning.pytorch as L
    import torch

    class Tiny(L.LightningModule):
        def __init__(self, lr: float = 0.01) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            out = self.layer(x)
            loss = torch.nn.functional.mse_loss(out, y)
            self.log("train_loss", loss)
            self.log("train_mae", (out - y).abs().mean())
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps * 4, 4, generator=g)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)
    return Tiny, data


def _logger(variant: str, tmp: Path, rep: int) -> Any:
    if variant == "none":
        return False
    if variant == "noop":
        from lightning.pytorch.loggers import Logger

        class NoOp(Logger):
            name = "noop"
            version = 0

            def log_metrics(self, metrics: Any, step: Any = None) -> None:
                pass

            def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
                pass

        return NoOp()
    if variant == "synadb":
        from synadb.integrations.lightning import SynaLogger

        return SynaLogger(str(tmp / "runs.db"), experiment="bench", run_name=f"rep{rep}")
    if variant == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(str(tmp / "csv"), name="bench")
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name="bench", run_name=f"rep{rep}",
                        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")


def _timed(logger: Any) -> dict[str, float]:
    """Wrap the logger's methods on the instance; return the running totals."""
    spent = dict.fromkeys(_LOGGER_METHODS, 0.0)
    for name in _LOGGER_METHODS:
        inner = getattr(logger, name)

        def wrapper(*args: Any, _inner: Any = inner, _name: str = name, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - t0

        setattr(logger, name, wrapper)
    return spent


def _fit(variant: str, tmp: Path, steps: int, rep: int) -> tuple[float, dict[str, float]]:
    """(fit wall seconds, seconds inside each logger method)."""
    import lightning.pytorch as L
    import torch

    Tiny, data = _module_and_data(steps)
    torch.manual_seed(0)
    model = Tiny()
    logger = _logger(variant, tmp, rep)
    spent = _timed(logger) if logger is not False else dict.fromkeys(_LOGGER_METHODS, 0.0)
    trainer = L.Trainer(max_epochs=1, logger=logger, accelerator="cpu", devices=1,
                        log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=str(tmp / "root"))
    t0 = time.perf_counter()
    trainer.fit(model, data)
    wall = time.perf_counter() - t0
    if trainer.global_step != steps:
        raise RuntimeError(f"{variant}: {trainer.global_step} steps, expected {steps}")
    return wall, spent


def _check(tmp: Path, steps: int, reps: int) -> list[str]:
    """What each logger wrote: every step of every run, read back."""
    notes = []
    from synadb import ExperimentTracker

    with ExperimentTracker(str(tmp / "runs.db"), read_only=True) as tracker:
        runs = tracker.list_runs("bench")
        counts = {len(tracker.get_metric(r.id, "train_loss")) for r in runs}
        notes.append(f"synadb file: {len(runs)} runs, train_loss values per run {sorted(counts)}")
        if counts != {steps} or len(runs) != reps:
            raise RuntimeError(f"synadb logged {counts} values in {len(runs)} runs")
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench")
    runs = client.search_runs([exp.experiment_id])
    counts = {len(client.get_metric_history(r.info.run_id, "train_loss")) for r in runs}
    notes.append(f"mlflow sqlite: {len(runs)} runs, train_loss values per run {sorted(counts)}")
    if counts != {steps}:
        raise RuntimeError(f"mlflow logged {counts} values")
    return notes


def run(quick: bool = False) -> list[list[str]]:
    """Run the benchmark; print and return the table's rows."""
    import lightning
    import mlflow
    import torch

    _quiet()  # after the imports: MLflow sets its loggers' levels when imported

    torch.set_num_threads(1)  # a tiny model: threads only add noise on 2 cores
    steps = 300 if quick else 2000
    reps = 2 if quick else 3
    info = c.machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="synadb-bench-loggers-"))
    try:
        # MLflow's sqlite schema (alembic migrations, ~1 s) is created once,
        # before timing, as a server's database would already exist.
        mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}").search_experiments()
        _fit("none", tmp, min(steps, 50), -1)  # warm Lightning's imports and caches
        walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
        per_step: dict[str, list[float]] = {v: [] for v in VARIANTS}
        fixed: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for rep in range(reps):
            for variant in VARIANTS:
                wall, spent = _fit(variant, tmp, steps, rep)
                walls[variant].append(wall)
                per_step[variant].append((spent["log_metrics"] + spent["save"]) / steps)
                fixed[variant].append(spent["log_hyperparams"] + spent["finalize"]
                                      + spent["after_save_checkpoint"])
        notes = _check(tmp, steps, reps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bare, base = min(walls["none"]), min(walls["noop"])
    over = {v: max(min(walls[v]) - base, 0.0) / steps for v in VARIANTS}
    over_bare = {v: max(min(walls[v]) - bare, 0.0) / steps for v in VARIANTS}
    within = {v: min(per_step[v]) for v in VARIANTS}
    rows = []
    for v in VARIANTS:
        label = {"none": "none (logger=False)", "noop": "a no-op Logger",
                 "synadb": "SynaLogger (synadb)", "csv": "CSVLogger",
                 "mlflow": "MLFlowLogger (sqlite)"}[v]
        if v == "none":
            rows.append([label, c.fmt_time(min(walls[v])), "baseline", "", "", ""])
            continue
        if v == "noop":
            rows.append([label, c.fmt_time(min(walls[v])),
                         f"baseline ({c.fmt_time(over_bare[v])})", "", "", ""])
            continue
        rows.append([label, c.fmt_time(min(walls[v])),
                     f"{c.fmt_time(over[v])} ({c.fmt_time(over_bare[v])})",
                     c.fmt_time(within[v]), c.fmt_ratio(within[v] / within["synadb"]),
                     c.fmt_time(min(fixed[v]))])
    print(f"Lightning logger benchmark ({'quick' if quick else 'full'} run) on {info['cpu']}, "
          f"{info['cores']} cores, Python {info['python']}, Lightning {lightning.__version__}, "
          f"torch {torch.__version__}, MLflow {mlflow.__version__}; commit {info['commit']}; "
          f"{info['date']}; load average {info['loadavg']} at start.")
    print(f"One epoch of {steps:,} steps, 3 values logged per step (train_loss, train_mae, "
          f"epoch), best of {reps} interleaved fits per logger; ratios > 1× mean slower "
          "than SynaLogger.\n")
    print(c.markdown_table(HEADERS, rows))
    print()
    for n in notes + ["fit wall samples: " + "; ".join(
            f"{v} " + ", ".join(c.fmt_time(w) for w in walls[v]) for v in VARIANTS),
            f"load average at end {c.loadavg()}"]:
        print(f"- {n}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 steps, 2 repeats")
    args = ap.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
