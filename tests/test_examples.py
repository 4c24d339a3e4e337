"""Run each example in examples/ as a user would, and check what it says it wrote.

Each example runs in a subprocess of this interpreter (the project's venv),
in a fresh temporary working folder, and must exit 0 and end with a
``files:`` section whose ``  <what>: <path>`` lines name files that exist,
inside ``./example-output/`` of that folder.  The RAG examples and the quick
start have their own checks (``make examples``, tests/test_readme_rag.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT_S = 300

# example -> the modules it needs beyond synadb and numpy
NEEDS = {
    "dataloader_ddp": ["torch"],
    "tf_keras": ["tensorflow"],
    "mlflow_shim": [],
    "mlflow_plugin": ["mlflow", "sklearn"],
    "mlflow_push": ["mlflow"],
    "registry": [],
    "studio_live": ["starlette", "uvicorn"],
}
# Examples checked elsewhere: the RAG scripts need an embedding model (make examples).
ELSEWHERE = {"quickstart", "rag_langchain", "rag_llamaindex", "rag_haystack"}


def test_every_example_is_run_somewhere():
    found = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert found == set(NEEDS) | ELSEWHERE


def _printed_files(out: str) -> list[Path]:
    lines = out.splitlines()
    assert "files:" in lines, f"no 'files:' section in:\n{out}"
    paths = []
    for line in lines[lines.index("files:") + 1:]:
        if not line.startswith("  "):
            break
        paths.append(Path(line.split(": ", 1)[1].strip()))
    return paths


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_example_runs_and_its_files_exist(name, tmp_path):
    missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name}.py needs {', '.join(missing)}")
    env = {k: v for k, v in os.environ.items() if k != "SYNADB_EXAMPLE_OUT"}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(EXAMPLES.parent))
    got = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert got.returncode == 0, f"{name}.py failed:\n{got.stdout}\n{got.stderr}"
    assert "Traceback" not in got.stderr
    paths = _printed_files(got.stdout)
    assert paths, f"{name}.py lists no files:\n{got.stdout}"
    out_dir = (tmp_path / "example-output" / name).resolve()
    for p in paths:
        assert p.is_absolute() and p.exists(), f"{name}.py printed {p}, which does not exist"
        assert p.resolve().is_relative_to(out_dir), f"{p} is outside {out_dir}"
    assert "next:" in got.stdout  # each example suggests what to do with its files
