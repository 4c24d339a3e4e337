"""An MLflow training script, unchanged but for one import, logging into one synadb file.

    python examples/mlflow_shim.py

``synadb.integrations.mlflow`` speaks MLflow's fluent API (``set_experiment``,
``start_run``, ``log_params``, ``log_metric``, ``log_dict``, ``search_runs``,
``MlflowClient``...) without MLflow installed: no server, no ``mlruns/``
tree; runs, metrics and artifacts land in ``experiments.db``.  A small
learning-rate sweep of a NumPy logistic regression is the training script.

Needs only synadb (pandas for ``search_runs``'s DataFrame; without it the
script asks for ``output_format="list"``).  Files go to
``./example-output/mlflow_shim/`` (or ``$SYNADB_EXAMPLE_OUT``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import synadb.integrations.mlflow as mlflow  # instead of: import mlflow
from synadb import MissingDependency

OUT = Path(os.environ.get("SYNADB_EXAMPLE_OUT", "example-output")).resolve() / "mlflow_shim"
PATH = OUT / "experiments.db"


def train(lr: float, epochs: int = 30) -> float:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    y = (x @ rng.normal(size=8) > 0).astype(float)
    w = np.zeros(8)
    for epoch in range(epochs):
        p = 1 / (1 + np.exp(-x @ w))
        w -= lr * x.T @ (p - y) / len(y)
        loss = float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))
        mlflow.log_metrics({"loss": loss, "accuracy": float(((x @ w > 0) == y).mean())},
                           step=epoch)
    return loss


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    PATH.unlink(missing_ok=True)  # a re-run starts afresh
    mlflow.set_tracking_uri(f"synadb://{PATH}")  # a plain path works too
    mlflow.set_experiment("logreg")
    for lr in (0.01, 0.1, 1.0):
        with mlflow.start_run(run_name=f"lr-{lr}") as run:
            mlflow.log_params({"lr": lr, "epochs": 30, "model": {"kind": "logreg", "l2": 0}})
            mlflow.set_tag("team", "examples")
            loss = train(lr)
            mlflow.log_dict({"weights": "not kept", "final_loss": loss}, "summary.json")
            print(f"run {run.info.run_id[:8]} lr={lr}: final loss {loss:.4f}")

    try:
        best = mlflow.search_runs(filter_string="metrics.loss < 0.5",
                                  order_by=["metrics.loss ASC"])
        print("search_runs (a pandas DataFrame, MLflow's columns):")
        print(best[["tags.mlflow.runName", "params.lr", "metrics.loss", "metrics.accuracy"]]
              .to_string(index=False))
        best_id = best.run_id[0]
    except MissingDependency:  # no pandas: MLflow's other output format
        runs = mlflow.search_runs(filter_string="metrics.loss < 0.5",
                                  order_by=["metrics.loss ASC"], output_format="list")
        print("search_runs (Run entities; pandas is not installed):")
        for r in runs:
            print(f"  {r.info.run_name}  lr={r.data.params['lr']}  loss={r.data.metrics['loss']:.4f}")
        best_id = runs[0].info.run_id
    history = mlflow.MlflowClient().get_metric_history(best_id, "loss")
    print(f"best run's loss history: {len(history)} values, "
          f"{history[0].value:.3f} -> {history[-1].value:.3f}")
    print("files:")
    print(f"  experiments: {PATH}")
    print(f"next: synadb runs {PATH} --sort loss   or   synadb studio {PATH}")


if __name__ == "__main__":
    main()
