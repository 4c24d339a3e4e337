"""`import synadb` loads numpy and nothing heavy (promise 10)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
HEAVY = ["torch", "tensorflow", "langchain", "langchain_core", "llama_index", "haystack",
         "mlflow", "pyarrow", "pandas", "hnswlib", "lz4", "tqdm", "duckdb", "lightning",
         "transformers", "keras", "usearch", "wandb"]


def _modules_after(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"})
    return set(json.loads(out.stdout))


def test_import_synadb_loads_no_framework():
    mods = _modules_after("import synadb")
    loaded = sorted(m for m in HEAVY if m in mods)
    assert loaded == [], f"import synadb pulled in {loaded}"


def test_using_the_core_loads_no_framework(tmp_path):
    path = str(tmp_path / "x.db")
    mods = _modules_after(
        f"import synadb\nwith synadb.SynaDB({path!r}) as db:\n"
        "    db.put_float('a', 1.0); db.put_text('b', 'x'); db.get_history('a')\n")
    loaded = sorted(m for m in HEAVY if m in mods and m not in ("lz4", "tqdm"))
    assert loaded == []


def test_public_names_are_pinned():
    import synadb

    assert {"SynaDB", "DbConfig", "SynaError", "ChecksumError", "TypeMismatch",
            "KeyNotFound", "LockTimeout", "ReadOnlyError", "DimensionMismatch",
            "CorruptDatabase", "MissingDependency"} <= set(synadb.__all__)
    for name in synadb.__all__:
        assert getattr(synadb, name) is not None
    for name in synadb.__all__:
        obj = getattr(synadb, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, synadb.SynaError)
