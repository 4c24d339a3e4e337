"""The README's training-data quick start runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_training_data_quick_start_runs_as_printed(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    blocks = _blocks("Quick start: training data")
    assert len(blocks) == 3
    for code in blocks:
        p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
    assert "3000 ragged" in subprocess.run(
        [sys.executable, "-c", blocks[0].split("from synadb.torch")[0].replace(
            "training_data.db", "again.db")], cwd=tmp_path, capture_output=True,
        text=True).stdout
