"""MLflow itself, logging into one synadb file through the ``synadb://`` plugin.

    python examples/mlflow_plugin.py

With the real MLflow installed, ``mlflow.set_tracking_uri("synadb:///abs/path.db")``
makes MLflow 3 keep experiments, runs, logged models, their artifacts and
the model registry in that one file.  This example trains a scikit-learn
classifier, logs it with ``mlflow.sklearn.log_model``, registers it, points
the ``champion`` alias at it and loads ``models:/iris-clf@champion`` back.

Needs ``synadb[mlflow]`` and scikit-learn.  Files go to
``./example-output/mlflow_plugin/`` (or ``$SYNADB_EXAMPLE_OUT``).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

OUT = Path(os.environ.get("SYNADB_EXAMPLE_OUT", "example-output")).resolve() / "mlflow_plugin"
PATH = OUT / "experiments.db"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    PATH.unlink(missing_ok=True)  # a re-run starts afresh
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")  # MLflow's own deprecation notes

    mlflow.set_tracking_uri(f"synadb://{PATH}")  # synadb:///abs/path.db: three slashes
    mlflow.set_experiment("iris")
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

    with mlflow.start_run(run_name="logreg") as run:
        params = {"C": 1.0, "max_iter": 500}
        clf = LogisticRegression(**params).fit(X_train, y_train)
        accuracy = float(clf.score(X_test, y_test))
        mlflow.log_params(params)
        mlflow.log_metric("test_accuracy", accuracy)
        # pip_requirements given: MLflow need not infer them (slow) for this example
        info = mlflow.sklearn.log_model(clf, name="model", input_example=X_test[:2],
                                        pip_requirements=["scikit-learn"])
    print(f"run {run.info.run_id[:8]}: test accuracy {accuracy:.3f}; "
          f"model logged as {info.model_uri}")

    version = mlflow.register_model(info.model_uri, "iris-clf")
    client = MlflowClient()
    client.set_registered_model_alias("iris-clf", "champion", version.version)
    print(f"registered iris-clf version {version.version}, alias 'champion' -> "
          f"v{client.get_model_version_by_alias('iris-clf', 'champion').version}")

    model = mlflow.sklearn.load_model("models:/iris-clf@champion")
    same = np.array_equal(model.predict(X_test), clf.predict(X_test))
    print(f"loaded models:/iris-clf@champion from the file: predicts as trained: {same}")
    runs = client.search_runs([run.info.experiment_id])
    print(f"in the one file: {len(runs)} run, {len(client.search_registered_models())} "
          "registered model, the logged model's files")
    print("files:")
    print(f"  experiments, models and artifacts: {PATH}")
    print(f"next: mlflow server --backend-store-uri synadb://{PATH}   (MLflow's UI over the file)")


if __name__ == "__main__":
    main()
