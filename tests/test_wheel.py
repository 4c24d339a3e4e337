"""The wheel `make wheel` builds installs us, with an extra, in a fresh venv.

PyPI's ``synadb`` is an older, unrelated 1.4 release, so an install that
resolves to it would "work" and import the wrong package: this builds the
wheel of this checkout, installs ``synadb-2.0.0-...whl[studio]`` into a new
virtual environment (no system site-packages), and checks the version, the
console script, a round trip through a file, and Studio served from the
installed package data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERSION = "2.0.0"

CHECK = r"""
import json, os, sys, urllib.request
import numpy as np
import synadb

assert synadb.__version__ == "2.0.0", synadb.__version__
from importlib.metadata import metadata
assert metadata("synadb")["License-Expression"] == "Apache-2.0"   # SPDX, no deprecated table
assert os.path.dirname(synadb.__file__).startswith(sys.prefix), synadb.__file__  # not the checkout
with synadb.SynaDB("w.db") as db:
    db.put_float("loss", 0.5); db.put_float("loss", 0.25)
    db.put_vector("v", np.arange(4, dtype=np.float32))
with synadb.SynaDB("w.db", read_only=True) as db:
    assert db.get_history_tensor("loss").tolist() == [0.5, 0.25]
    assert db.get_vector("v").tolist() == [0.0, 1.0, 2.0, 3.0]
import starlette, uvicorn                      # the [studio] extra's packages
exp = synadb.Experiment("wheel", "w.db")
with exp.start_run() as run:
    run.log_metric("loss", 0.1)
with synadb.launch_studio("w.db", port=0) as studio:   # static files came in the wheel
    with urllib.request.urlopen(studio.url) as page:
        assert page.status == 200 and b"<html" in page.read().lower()
print(json.dumps({"version": synadb.__version__}))
"""


def _run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"$ {' '.join(map(str, cmd))}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def test_wheel_installs_with_an_extra_in_a_fresh_venv(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
         timeout=300)
    wheels = list(dist.glob("*.whl"))
    assert [w.name for w in wheels] == [f"synadb-{VERSION}-py3-none-any.whl"]

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", f"{wheels[0]}[studio]"], timeout=600)

    show = _run([str(py), "-m", "pip", "show", "synadb"], timeout=60).stdout
    assert f"Version: {VERSION}" in show.splitlines()

    work = tmp_path / "work"
    work.mkdir()
    out = _run([str(py), "-c", CHECK], cwd=work, timeout=120).stdout
    assert out.strip().splitlines()[-1] == '{"version": "2.0.0"}'
    cli = _run([str(venv / "bin" / "synadb"), "--version"], cwd=work, timeout=60).stdout
    assert VERSION in cli
