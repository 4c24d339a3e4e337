"""The shim's search_runs output formats (issue 15): a DataFrame or an error
naming the extra, never a list where a DataFrame was asked for."""

import builtins

import pytest

import synadb.integrations.mlflow as mlflow
from synadb import MissingDependency
from synadb.integrations.mlflow_entities import Run


@pytest.fixture
def no_pandas(monkeypatch):
    """``import pandas`` fails, as in an install without synadb[arrow]."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def _train():
    mlflow.set_experiment("mnist")
    ids = []
    for lr in (0.01, 0.1):
        with mlflow.start_run() as run:
            mlflow.log_param("lr", lr)
            mlflow.log_metric("loss", 1 - lr, step=0)
            ids.append(run.info.run_id)
    return ids


def test_pandas_format_without_pandas_names_the_extra(uri, no_pandas):
    _train()
    # Before issue 15 this returned a list, and df["metrics.loss"] failed later.
    with pytest.raises(MissingDependency) as err:
        mlflow.search_runs()
    assert err.value.extra == "arrow" and "synadb[arrow]" in str(err.value)
    assert "output_format='list'" in str(err.value)
    with pytest.raises(MissingDependency):
        mlflow.search_runs(output_format="pandas", experiment_names=["absent"])


def test_list_format_returns_run_entities_without_pandas(uri, no_pandas):
    ids = _train()
    runs = mlflow.search_runs(output_format="list")
    assert all(isinstance(r, Run) for r in runs)
    assert [r.info.run_id for r in runs] == ids[::-1]  # newest first, as MLflow
    assert {r.data.metrics["loss"] for r in runs} == {0.99, 0.9}
    assert mlflow.search_runs(output_format="list", experiment_names=["absent"]) == []


def test_pandas_format_gives_a_dataframe(uri):
    pytest.importorskip("pandas")
    _train()
    df = mlflow.search_runs()
    assert sorted(df["metrics.loss"]) == [0.9, 0.99]


def test_unknown_format_is_refused(uri):
    with pytest.raises(mlflow.MlflowException, match="Unsupported output format"):
        mlflow.search_runs(output_format="polars")


def test_a_script_without_pandas_gets_the_install_hint(uri):
    # A fresh interpreter where `import pandas` fails, as in an install
    # without synadb[arrow]: the default format errs, "list" works.
    import os
    import subprocess
    import sys
    from pathlib import Path

    _train()
    code = ("import sys; sys.modules['pandas'] = None\n"
            "import synadb.integrations.mlflow as m\n"
            f"m.set_tracking_uri({uri!r}); m.set_experiment('mnist')\n"
            "print(len(m.search_runs(output_format='list')))\n"
            "m.search_runs()\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert got.returncode == 1 and got.stdout == "2\n"
    assert "synadb.errors.MissingDependency: pandas is needed for search_runs" in got.stderr
    assert "pip install 'synadb[arrow]'" in got.stderr
