"""The README's one-file RAG block runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_one_file_rag_block_runs_as_printed(tmp_path):
    pytest.importorskip("langchain_core")
    text = README.read_text()
    start = text.index("**A whole RAG app in one file.**")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert "'num_added': 2" in lines[0]
    assert lines[1:] == ["2", "a"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["app.db"]
