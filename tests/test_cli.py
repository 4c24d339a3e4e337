"""The ``synadb`` command: run in-process through main(), and as a real script."""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synadb import SynaDB, cli

KNOWN = b"hello-world-value"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _script() -> str:
    found = Path(sys.executable).with_name("synadb")
    if found.exists():
        return str(found)
    which = shutil.which("synadb")
    assert which, "the synadb console script is not installed: pip install -e ."
    return which


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.db"
    with SynaDB(path) as db:
        db.put_float("sensor/temp", 23.5)
        db.put_float("sensor/temp", 0.1)
        db.put_int("sensor/count", 42)
        db.put_text("name", "sensor-1")
        db.put_bytes("raw", b"\x00\x01\xfe\xff")
        db.put_vector("emb", np.array([0.1, -2.0, 3.5], dtype=np.float32))
        db.put_null("nothing")
        db.put_text("gone", "x")
        db.delete("gone")
    return str(path)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------ read commands
def test_info(sample, capsys):
    code, out, err = run(capsys, "info", sample)
    assert code == 0 and err == ""
    assert os.path.abspath(sample) in out
    assert "keys:           6" in out
    assert "format version: 2" in out
    code, out, _ = run(capsys, "info", sample, "--json")
    info = json.loads(out)
    assert info["keys"] == 6 and info["format_version"] == 2
    assert info["size_bytes"] == os.path.getsize(sample) >= info["used_bytes"] > 0


def test_keys_all_in_written_order(sample, capsys):
    code, out, _ = run(capsys, "keys", sample)
    assert code == 0
    assert out.splitlines() == ["sensor/temp", "sensor/count", "name", "raw", "emb",
                                "nothing"]


def test_keys_pattern_and_limit(sample, capsys):
    assert run(capsys, "keys", sample, "sensor/*")[1].splitlines() == [
        "sensor/temp", "sensor/count"]
    assert run(capsys, "keys", sample, "*/c*")[1].splitlines() == ["sensor/count"]
    assert run(capsys, "keys", sample, "--limit", "2")[1].splitlines() == [
        "sensor/temp", "sensor/count"]
    assert run(capsys, "keys", sample, "nope*") == (0, "", "")


@pytest.mark.parametrize("key, extra, expected", [
    ("sensor/temp", [], "0.1"),
    ("sensor/count", [], "42"),
    ("name", [], "sensor-1"),
    ("raw", [], "0001feff"),
    ("raw", ["--base64"], "AAH+/w=="),
    ("emb", [], "[0.1, -2.0, 3.5]"),
    ("nothing", [], "null"),
    ("name", ["--json"], '"sensor-1"'),
    ("raw", ["--json"], '"0001feff"'),
])
def test_get(sample, capsys, key, extra, expected):
    code, out, err = run(capsys, "get", sample, key, *extra)
    assert (code, out, err) == (0, expected + "\n", "")


def test_get_float_uses_repr(tmp_path, capsys):
    path = tmp_path / "f.db"
    with SynaDB(path) as db:
        db.put_float("x", 1 / 3)
    assert run(capsys, "get", path, "x")[1] == repr(1 / 3) + "\n"


@pytest.mark.parametrize("key", ["absent", "gone"])
def test_get_missing_key_is_an_error(sample, capsys, key):
    code, out, err = run(capsys, "get", sample, key)
    assert code == 1 and out == ""
    assert err.startswith("synadb: error: ") and repr(key) in err
    assert "Traceback" not in err


def test_history(sample, capsys):
    assert run(capsys, "history", sample, "sensor/temp") == (0, "23.5\n0.1\n", "")
    code, out, _ = run(capsys, "history", sample, "sensor/temp", "--json")
    assert json.loads(out) == [23.5, 0.1]
    assert run(capsys, "history", sample, "sensor/temp", "--limit", "1")[1] == "0.1\n"
    assert run(capsys, "history", sample, "sensor/temp", "--limit", "0")[1] == ""
    code, out, _ = run(capsys, "history", sample, "emb", "--json")
    assert json.loads(out) == [[0.1, -2.0, 3.5]]


def test_history_of_missing_key_is_an_error(sample, capsys):
    code, out, err = run(capsys, "history", sample, "absent")
    assert code == 1 and out == "" and "absent" in err


def test_read_commands_leave_the_file_byte_identical(sample, capsys):
    before = Path(sample).read_bytes()
    mtime = os.stat(sample).st_mtime_ns
    for argv in (["info", sample], ["keys", sample], ["get", sample, "name"],
                 ["history", sample, "sensor/temp"], ["verify", sample],
                 ["get", sample, "absent"]):
        cli.main(argv)
    capsys.readouterr()
    assert Path(sample).read_bytes() == before
    assert os.stat(sample).st_mtime_ns == mtime


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize("command", ["info", "keys", "verify", "get", "history",
                                     "compact", "export"])
def test_missing_file_is_an_error_and_creates_nothing(tmp_path, capsys, command):
    path = tmp_path / "nope.db"
    extra = {"get": ["k"], "history": ["k"], "export": [tmp_path / "out.json"]}
    code, out, err = run(capsys, command, path, *extra.get(command, []))
    assert code == 1 and out == ""
    assert err.startswith("synadb: error: ") and "nope.db" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["info", "keys", "verify", "compact"])
@pytest.mark.parametrize("content", [b"just some notes\nnot a database\n" * 10, b""],
                         ids=["text", "empty"])
def test_non_synadb_file_is_an_error_and_left_untouched(tmp_path, capsys, command,
                                                        content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    code, out, err = run(capsys, command, path)
    assert code == 1 and out == ""
    assert err.startswith("synadb: error: ") and "Traceback" not in err
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_directory_is_an_error(tmp_path, capsys):
    code, _, err = run(capsys, "info", tmp_path)
    assert code == 1 and "directory" in err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["keys"], ["keys", "x", "--limit", "-1"],
                                  ["export", "x.db", "out.unknown"]])
def test_usage_errors_exit_2(tmp_path, capsys, argv):
    if argv[:1] == ["export"]:
        SynaDB(tmp_path / "x.db").close()
        argv = ["export", str(tmp_path / "x.db"), str(tmp_path / "out.unknown")]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "usage: synadb" in err and "error:" in err


# ------------------------------------------------------------------- verify
def test_verify_clean(sample, capsys):
    code, out, err = run(capsys, "verify", sample)
    assert code == 0 and err == ""
    assert "OK" in out and "DAMAGED" not in out


def test_verify_finds_a_flipped_byte(tmp_path, capsys):
    path = tmp_path / "damaged.db"
    with SynaDB(path) as db:
        for i in range(20):
            db.put_text(f"before/{i}", f"value {i}")
        db.put_text("victim", KNOWN.decode())
        for i in range(20):
            db.put_text(f"after/{i}", f"value {i}")
    data = bytearray(path.read_bytes())
    assert data.count(KNOWN) == 1
    at = data.index(KNOWN) + len(KNOWN) // 2
    data[at] ^= 0x40
    path.write_bytes(data)

    code, out, err = run(capsys, "verify", path)
    assert code == 1
    assert "DAMAGED" in out and "offset" in out
    assert err == f"synadb: error: {str(path)!r} has 1 damaged record\n"
    assert path.read_bytes() == data  # verify never repairs
    # The records around the damage still read.
    assert run(capsys, "get", path, "after/19")[:2] == (0, "value 19\n")
    code, _, err = run(capsys, "get", path, "victim")
    assert code == 1 and err.startswith("synadb: error: ") and "damaged" in err


# ------------------------------------------------------------------ compact
@pytest.mark.parametrize("drop_history", [False, True])
def test_compact_keeps_data(tmp_path, capsys, drop_history):
    path = tmp_path / "c.db"
    with SynaDB(path) as db:
        for i in range(200):
            db.put_float("loss", 1.0 / (i + 1))
            db.put_text("status", f"step {i}")
        db.put_text("tmp", "x" * 500)
        db.delete("tmp")
    before = path.stat().st_size
    argv = ["compact", path, "--no-progress"] + (["--drop-history"] if drop_history else [])
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == ""
    assert "saved" in out
    assert path.stat().st_size <= before
    with SynaDB(path, read_only=True) as db:
        assert db.keys() == ["loss", "status"]
        assert db.get_text("status") == "step 199"
        want = [1.0 / 200] if drop_history else [1.0 / (i + 1) for i in range(200)]
        assert db.get_history("loss") == want
        assert db.verify().ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.db"]


# ------------------------------------------------------------------- export
@pytest.mark.parametrize("name, fmt", [("out.json", None), ("out.data", "json")])
def test_export_json(sample, tmp_path, capsys, name, fmt):
    out_path = tmp_path / name
    argv = ["export", sample, out_path] + (["--format", fmt] if fmt else [])
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert str(out_path) in out
    json.loads(out_path.read_text(encoding="utf-8"))
    assert "sensor/temp" in out_path.read_text(encoding="utf-8")


def test_export_jsonl_with_pattern(sample, tmp_path, capsys):
    out_path = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "export", sample, out_path, "--pattern", "sensor/*")
    assert (code, err) == (0, "")
    text = out_path.read_text(encoding="utf-8")
    for line in text.splitlines():
        json.loads(line)
    assert "sensor/temp" in text and "sensor/count" in text
    assert "sensor-1" not in text and "emb" not in text


# --------------------------------------------------------------- help, docs
@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_has_help(capsys, name):
    # New commands must be documented: a help line in the top-level listing
    # and a working --help of their own.
    code, out, _ = run(capsys, "--help")
    assert code == 0
    listed = [line.split(None, 1) for line in out.splitlines()
              if line.strip().startswith(name + " ")]
    assert listed and listed[0][1].strip(), f"{name} has no help line in `synadb --help`"
    code, out, err = run(capsys, name, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: synadb {name} ")
    for action in _subcommands()[name]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"synadb {name} {action.option_strings[0]} has no help"


def test_version(capsys):
    from synadb import __version__

    assert run(capsys, "--version") == (0, f"synadb {__version__}\n", "")


# -------------------------------------------------------------- subprocess
def test_console_script_runs(sample):
    script = _script()
    got = subprocess.run([script, "get", sample, "sensor/count"], capture_output=True,
                         text=True, timeout=60)
    assert (got.returncode, got.stdout, got.stderr) == (0, "42\n", "")
    got = subprocess.run([script, "get", sample, "absent"], capture_output=True,
                         text=True, timeout=60)
    assert got.returncode == 1 and got.stdout == ""
    assert got.stderr.startswith("synadb: error: ") and "Traceback" not in got.stderr


def test_python_dash_m_help():
    got = subprocess.run([sys.executable, "-W", "error", "-m", "synadb.cli", "--help"],
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("usage: synadb ") and got.stderr == ""
    for name in _subcommands():
        assert name in got.stdout


def test_reads_while_a_writer_holds_the_file(tmp_path):
    # A read-only command must neither wait for the writer's lock nor miss
    # what the writer has already put.
    path = tmp_path / "live.db"
    with SynaDB(path) as db:
        db.put_int("n", 1)
        db.put_int("n", 2)
        got = subprocess.run([_script(), "history", str(path), "n", "--json"],
                             capture_output=True, text=True, timeout=30)
        assert (got.returncode, got.stderr) == (0, "")
        assert json.loads(got.stdout) == [1, 2]
        db.put_int("n", 3)


# -------------------------------------------------------- runs and models
@pytest.fixture
def tracked(tmp_path):
    from synadb import Experiment, ModelRegistry

    path = str(tmp_path / "tracked.db")
    exp = Experiment("mnist", path)
    for lr in (0.1, 0.01, 0.001):
        with exp.start_run(params={"lr": lr}, name=f"lr{lr}") as r:
            r.log_metric("acc", 1 - lr)
    with pytest.raises(RuntimeError):
        with exp.start_run(name="broken"):
            raise RuntimeError("diverged")
    exp.close()
    with ModelRegistry(path) as reg:
        reg.save_model("clf", b"weights-1", {"acc": "0.9"})
        reg.save_model("clf", b"weights-22")
        reg.set_stage("clf", 2, "production")
    return path


def test_runs_lists_sorts_and_filters(tracked, capsys):
    code, out, _ = run(capsys, "runs", tracked, "--json")
    runs = json.loads(out)
    assert code == 0 and [r["name"] for r in runs] == ["lr0.1", "lr0.01", "lr0.001", "broken"]
    assert runs[3]["status"] == "Failed" and "diverged" in runs[3]["error"]
    code, out, _ = run(capsys, "runs", tracked, "--sort", "acc", "--desc", "--limit", "2",
                       "--json")
    assert [r["params"]["lr"] for r in json.loads(out)] == ["0.001", "0.01"]
    code, out, _ = run(capsys, "runs", tracked, "--status", "failed", "--json")
    assert [r["name"] for r in json.loads(out)] == ["broken"]
    code, out, _ = run(capsys, "runs", tracked)  # a plain table when not a terminal
    lines = out.splitlines()
    assert lines[0].split() == ["run", "name", "experiment", "status", "started", "acc"]
    assert len(lines) == 5 and "lr0.01" in out and "0.99" in out
    code, _, err = run(capsys, "runs", tracked, "--experiment", "nope")
    assert code == 1 and "no experiment 'nope'" in err


def test_runs_status_with_sort_keeps_the_order_and_refuses_a_typo(tracked, capsys):
    code, out, _ = run(capsys, "runs", tracked, "--status", "completed", "--sort", "acc",
                       "--json")
    assert code == 0
    assert [r["params"]["lr"] for r in json.loads(out)] == ["0.1", "0.01", "0.001"]
    code, out, _ = run(capsys, "runs", tracked, "--status", "finished", "--sort", "acc",
                       "--desc", "--json")
    assert [r["params"]["lr"] for r in json.loads(out)] == ["0.001", "0.01", "0.1"]
    code, _, err = run(capsys, "runs", tracked, "--status", "complet")
    assert code == 1 and "unknown run status 'complet'" in err


def test_models_lists_versions_and_stages(tracked, capsys):
    code, out, _ = run(capsys, "models", tracked, "--json")
    versions = json.loads(out)
    assert code == 0 and [(v["version"], v["stage"]) for v in versions] == [
        (1, "Development"), (2, "Production")]
    assert versions[0]["size_bytes"] == 9 and len(versions[0]["checksum"]) == 64
    code, out, _ = run(capsys, "models", tracked)
    assert "Production" in out and "clf" in out
    code, _, err = run(capsys, "models", tracked, "--name", "absent")
    assert code == 1 and "no model 'absent'" in err


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_speaks_json(name):
    options = {a for action in _subcommands()[name]._actions for a in action.option_strings}
    assert "--json" in options


def test_json_output_of_keys_verify_compact_and_export(sample, tmp_path, capsys):
    assert json.loads(run(capsys, "keys", sample, "sensor/*", "--json")[1]) == [
        "sensor/temp", "sensor/count"]
    report = json.loads(run(capsys, "verify", sample, "--json")[1])
    assert report["ok"] is True and report["damaged"] == [] and report["records"] > 0
    code, out, _ = run(capsys, "export", sample, "--format", "jsonl", "--json")
    result = json.loads(out)
    assert code == 0 and result["format"] == "jsonl" and result["out"].endswith("sample.jsonl")
    assert Path(result["out"]).exists()
    code, _, err = run(capsys, "export", sample)
    assert code == 2 and "give OUT or --format" in err
    done = json.loads(run(capsys, "compact", sample, "--json", "--no-progress")[1])
    assert done["size_after"] <= done["size_before"]


def test_mlflow_push_to_a_uri_mlflow_refuses_is_one_line(tracked, capsys):
    pytest.importorskip("mlflow")
    code, _, err = run(capsys, "mlflow-push", tracked, "--to", "foo://nowhere")
    assert code == 1 and err.startswith("synadb: error: MLflow server foo://nowhere:")
    assert "Traceback" not in err


# ------------------------------------------------- tracker metrics (issue 15)
@pytest.fixture
def metric_file(tmp_path):
    from synadb import ExperimentTracker

    path = str(tmp_path / "exp.db")
    with ExperimentTracker(path) as t:
        rid = t.start_run("mnist", name="baseline")
        for i in range(200):
            t.log_metrics(rid, {"loss": 2.0 / (i + 1), "acc": i / 200}, step=i * 10,
                          timestamp=1_700_000_000.0 + i)
        t.log_artifact(rid, "weights", b"\xab" * 1_300_000)
        t.end_run(rid)
        other = t.start_run("mnist", name="second")
        t.log_metric(other, "loss", 0.5, step=0)
        t.end_run(other)
    return path, rid, other


def test_get_on_a_metric_key_shows_the_last_row_not_its_timestamp(metric_file, capsys):
    path, rid, _ = metric_file
    key = f"run/{rid}/m/loss"
    code, out, err = run(capsys, "get", path, key)
    # Before issue 15 this printed 1700000199.0, the time of the last row.
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["step", "value", "time"]
    assert out.splitlines()[1].split()[:2] == ["1990", repr(2.0 / 200)]
    assert "2023-11-14 22:" in out and "1700000199" not in out
    code, out, _ = run(capsys, "get", path, key, "--json")
    assert json.loads(out) == {"step": 1990, "value": 2.0 / 200, "time": 1_700_000_199.0}


def test_history_on_a_metric_key_is_one_row_per_step(metric_file, capsys):
    path, rid, _ = metric_file
    key = f"run/{rid}/m/acc"
    code, out, _ = run(capsys, "history", path, key, "--json")
    rows = json.loads(out)
    # Before issue 15: 600 interleaved values (value, step, time, value, ...).
    assert code == 0 and len(rows) == 200
    assert rows[0] == {"step": 0, "value": 0.0, "time": 1_700_000_000.0}
    assert rows[-1] == {"step": 1990, "value": 199 / 200, "time": 1_700_000_199.0}
    code, out, _ = run(capsys, "history", path, key, "--limit", "2")
    lines = out.splitlines()
    assert lines[0].split() == ["step", "value", "time"] and len(lines) == 3
    assert lines[1].split()[:2] == ["1980", "0.99"]
    assert json.loads(run(capsys, "history", path, key, "--limit", "0", "--json")[1]) == []


def test_a_key_that_only_looks_like_a_metric_prints_as_it_is(tmp_path, capsys):
    path = tmp_path / "plain.db"
    with SynaDB(path) as db:
        db.put_text("run/x/m/note", "hello")
        db.put_float("run/x/m/single", 0.5)
    assert run(capsys, "get", path, "run/x/m/note")[1] == "hello\n"
    assert run(capsys, "get", path, "run/x/m/single")[1] == "0.5\n"
    assert run(capsys, "history", path, "run/x/m/single")[1] == "0.5\n"


def test_large_bytes_print_a_preview_with_the_size(metric_file, capsys):
    path, rid, _ = metric_file
    key = f"run/{rid}/a/weights"
    code, out, err = run(capsys, "get", path, key)
    # Before issue 15: 2.6 million hex digits.
    assert (code, err) == (0, "") and len(out) < 200
    assert out.startswith("ab" * 32 + "...") and "1.2 MiB" in out and "1,300,000 bytes" in out
    code, out, _ = run(capsys, "get", path, key, "--full")
    assert out == "ab" * 1_300_000 + "\n"
    assert len(run(capsys, "history", path, key)[1]) < 200
    code, out, _ = run(capsys, "get", path, key, "--json")  # programs get all of it
    assert json.loads(out) == "ab" * 1_300_000


def test_metrics_summarises_a_run(metric_file, capsys):
    path, rid, _ = metric_file
    for ref in (rid, rid[:6], "baseline"):
        code, out, err = run(capsys, "metrics", path, ref, "--json")
        assert (code, err) == (0, "")
        got = json.loads(out)
        assert got["run"] == rid and got["name"] == "baseline"
        assert got["metrics"] == [
            {"metric": "loss", "latest": 0.01, "min": 0.01, "max": 2.0, "count": 200,
             "last_step": 1990},
            {"metric": "acc", "latest": 0.995, "min": 0.0, "max": 0.995, "count": 200,
             "last_step": 1990}]
    code, out, _ = run(capsys, "metrics", path, rid[:6])
    lines = out.splitlines()
    assert lines[0].split() == ["metric", "latest", "min", "max", "count", "last", "step"]
    assert lines[1].split() == ["loss", "0.01", "0.01", "2", "200", "1990"]
    assert not any(c in out for c in cli.SPARK)  # no sparkline into a pipe


def test_metrics_shows_one_metric_with_a_sparkline_on_a_terminal(metric_file, capsys,
                                                                  monkeypatch):
    path, rid, _ = metric_file
    code, out, _ = run(capsys, "metrics", path, rid, "loss", "--json")
    got = json.loads(out)
    assert code == 0 and got["metric"] == "loss" and len(got["rows"]) == 200
    assert got["rows"][1] == {"step": 10, "value": 1.0, "time": 1_700_000_001.0}
    code, out, _ = run(capsys, "metrics", path, rid, "loss", "--limit", "3", "--json")
    assert [r["step"] for r in json.loads(out)["rows"]] == [1970, 1980, 1990]
    code, out, _ = run(capsys, "metrics", path, rid, "loss")
    assert out.splitlines()[0].split() == ["step", "value", "time"]
    assert len(out.splitlines()) == 201 and not any(c in out for c in cli.SPARK)

    monkeypatch.setattr(cli, "_tty", lambda: True)
    code, out, _ = run(capsys, "metrics", path, rid, "loss")
    spark = out.splitlines()[0].split()[-1]
    # loss falls: the line starts at the top block and ends at the bottom one.
    assert len(spark) == cli.SPARK_WIDTH and spark[0] == "█" and spark[-1] == "▁"
    code, out, _ = run(capsys, "metrics", path, rid)
    assert "█" in out and "▁" in out


def test_sparkline():
    assert cli._sparkline([]) == ""
    assert cli._sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert cli._sparkline([3, 3]) == "▁▁"
    assert cli._sparkline([0, float("nan"), 1]) == "▁ █"
    assert len(cli._sparkline(range(1000), width=20)) == 20


@pytest.mark.parametrize("argv, message", [
    (["zzz"], "no run 'zzz'"),
    (["baseline", "nope"], "has no metric 'nope'; it has loss, acc"),
])
def test_metrics_errors(metric_file, capsys, argv, message):
    path, _, _ = metric_file
    code, out, err = run(capsys, "metrics", path, *argv)
    assert code == 1 and out == ""
    assert err.startswith("synadb: error: ") and message in err


def test_metrics_refuses_an_ambiguous_prefix(tmp_path, capsys):
    from synadb import ExperimentTracker

    path = str(tmp_path / "many.db")
    with ExperimentTracker(path) as t:
        ids = [t.start_run("e") for _ in range(17)]  # 17 hex ids: two share a first digit
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    code, _, err = run(capsys, "metrics", path, first)
    assert code == 1 and f"{first!r} matches" in err and "give more of the run id" in err


# ------------------------------------------------ one error format (issue 15)
def test_runs_sort_by_an_unknown_field_is_an_error(tracked, capsys):
    # Before issue 15 this listed the runs unsorted and exited 0.
    code, out, err = run(capsys, "runs", tracked, "--sort", "nosuchmetric")
    assert code == 1 and out == ""
    assert err.startswith("synadb: error: cannot sort by 'nosuchmetric'")
    assert "metrics: acc" in err and "params: lr" in err
    for field in ("acc", "metrics.acc", "lr", "params.lr", "start_time", "name"):
        assert run(capsys, "runs", tracked, "--sort", field)[0] == 0
    assert run(capsys, "runs", tracked, "--sort", "params.acc")[0] == 1


def test_mlflow_push_of_an_unknown_experiment_is_an_error(tracked, capsys):
    # Before issue 15: exit 0 having pushed nothing.
    code, out, err = run(capsys, "mlflow-push", tracked, "--to", "http://127.0.0.1:9",
                         "--experiment", "nosuch")
    assert code == 1 and out == ""
    assert err == f"synadb: error: no experiment 'nosuch' in {tracked!r}; it has mnist\n"


def test_studio_on_a_missing_file_errs_like_every_command(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    code, out, err = run(capsys, "studio", missing)
    code2, _, err2 = run(capsys, "info", missing)
    assert (code, out) == (1, "") and err == err2
    assert err.startswith("synadb: error: ") and "missing.db" in err
    assert list(tmp_path.iterdir()) == []


def test_export_to_a_missing_folder_names_the_folder(sample, tmp_path, capsys):
    out_path = tmp_path / "no" / "such" / "out.parquet"
    code, out, err = run(capsys, "export", sample, out_path)
    assert code == 1 and out == ""
    assert err == (f"synadb: error: cannot write {str(out_path)!r}: the folder "
                   f"{str(out_path.parent)!r} does not exist\n")
    assert ".tmp" not in err
    code, _, err = run(capsys, "export", sample, tmp_path, "--format", "json")
    assert code == 1 and "it is a folder" in err


@pytest.mark.parametrize("argv", [["keys"], ["get", "x.db"], ["info", "x.db", "--bogus"],
                                  ["metrics", "x.db", "r", "--limit", "-1"]])
def test_usage_errors_use_the_same_error_line(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("usage: synadb ") and lines[-1].startswith("synadb: error: ")


def test_an_unexpected_error_is_one_line_too(sample, capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("division by zero")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=broken)
    code, out, err = run(capsys, "info", sample)
    assert code == 1 and out == ""
    assert err == ("synadb: error: ZeroDivisionError: division by zero "
                   "(SYNADB_TRACEBACK=1 shows where)\n")
    monkeypatch.setenv("SYNADB_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["info", sample])


def test_os_errors_lose_their_errno_prefix(capsys, monkeypatch):
    def refused(args):
        raise OSError(98, "cannot serve on 127.0.0.1:8501: Address already in use")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=refused)
    assert run(capsys, "info", "x.db")[2] == (
        "synadb: error: cannot serve on 127.0.0.1:8501: Address already in use\n")
