"""Each adapter names its pip extra when its framework is not installed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("module, blocked, extra", [
    ("synadb.integrations.torch", "torch", "torch"),
    ("synadb.integrations.tensorflow", "tensorflow", "tensorflow"),
    ("synadb.integrations.langchain", "langchain_core", "langchain"),
    ("synadb.integrations.llamaindex", "llama_index", "llamaindex"),
    ("synadb.integrations.haystack", "haystack", "haystack"),
    ("synadb.integrations.lightning", "lightning", "lightning"),
    ("synadb.integrations.transformers", "transformers", "transformers"),
    ("synadb.integrations.keras", "keras", "tensorflow"),
])
def test_missing_framework_raises_missing_dependency(module, blocked, extra):
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "import synadb\n"
            f"try:\n    import {module}\n"
            "except synadb.MissingDependency as e:\n"
            "    print('extra', e.extra, 'pip install' in str(e))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.split() == ["extra", extra, "True"]
