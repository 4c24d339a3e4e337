"""synadb.integrations.wandb: W&B's API over a synadb file (issue 16)."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import synadb
import synadb.integrations.wandb as wandb
from synadb import errors
from synadb.integrations import wandb_api, wandb_sweep
from synadb.integrations.wandb import _STATE, _set_globals
from synadb.tracking import Experiment, ExperimentTracker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tests", "wandb_scripts")
NO_STATS = {"x_disable_stats": True}


@pytest.fixture
def wb(tmp_path, monkeypatch):
    """A fresh file per test (through the env var, as a user would set it)."""
    path = str(tmp_path / "runs.db")
    monkeypatch.setenv("SYNADB_WANDB_FILE", path)
    monkeypatch.chdir(tmp_path)
    for var in ("WANDB_PROJECT", "WANDB_MODE", "WANDB_RESUME", "WANDB_RUN_ID", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    yield path
    wandb.teardown()
    _STATE.failed = False
    _STATE.trial = None
    _set_globals(None)


def reopen(path):
    wandb.teardown()
    return ExperimentTracker(path)


# -- import ------------------------------------------------------------------
def test_import_never_imports_wandb_and_works_without_it(tmp_path):
    code = ("import sys; sys.modules['wandb'] = None\n"
            "import synadb.integrations.wandb as wandb\n"
            "r = wandb.init(project='p', settings={'x_disable_stats': True})\n"
            "wandb.log({'a': 1}); wandb.finish()\n"
            "assert 'wandb' not in sys.modules or sys.modules['wandb'] is None\n"
            "print(len(wandb.Api().runs('p')))\n")
    env = dict(os.environ, PYTHONPATH=ROOT, SYNADB_WANDB_FILE=str(tmp_path / "r.db"))
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_import_is_light():
    code = ("import sys, synadb.integrations.wandb\n"
            "print(sorted(m for m in ('pandas', 'optuna', 'wandb', 'matplotlib', 'PIL', "
            "'psutil', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_default_file_and_dir(tmp_path, monkeypatch, wb):
    monkeypatch.delenv("SYNADB_WANDB_FILE")
    assert wandb.file_path() == str(tmp_path / "synadb-runs.db")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wd"))
    assert wandb.file_path() == str(tmp_path / "wd" / "synadb-runs.db")
    run = wandb.init(project="p", dir=str(tmp_path / "there"), settings=NO_STATS)
    run.finish()
    assert os.path.exists(tmp_path / "there" / "synadb-runs.db")


# -- init, log, steps ---------------------------------------------------------
def test_init_log_finish_roundtrip(wb):
    run = wandb.init(project="mnist", name="first", config={"lr": 0.01, "opt": {"b1": 0.9}},
                     tags=["a", "b"], group="g", job_type="train", notes="hello",
                     settings=NO_STATS)
    assert wandb.run is run and run.project == "mnist" and run.name == "first"
    assert len(run.id) == 8 and run.id.isalnum()
    for i in range(5):
        wandb.log({"loss": 1.0 / (i + 1), "val": {"acc": i / 10}})
    wandb.finish()
    assert wandb.run is None
    t = reopen(wb)
    r = t.get_run(run.id)
    assert r.status == "Completed" and r.experiment == "mnist" and r.name == "first"
    assert r.params == {"lr": "0.01", "opt.b1": "0.9"}
    assert r.tags == ["a", "b"]
    assert t.get_metric(run.id, "loss") == [(i, 1.0 / (i + 1)) for i in range(5)]
    assert t.get_metric(run.id, "val.acc")[-1] == (4, 0.4)
    assert json.loads(r.tag_values["wandb.config"]) == {"lr": 0.01, "opt": {"b1": 0.9}}
    summary = json.loads(r.tag_values["wandb.summary"])
    assert summary["loss"] == 0.2 and summary["_step"] == 4
    t.close()


def test_step_rules(wb, capsys):
    run = wandb.init(project="p", settings=NO_STATS)
    run.log({"a": 1})                       # step 0
    run.log({"b": 2}, commit=False)         # accumulates at step 1
    run.log({"c": 3})                       # step 1 committed with b and c
    assert run.step == 2
    run.log({"d": 4}, step=5)               # jumps; pending until later
    run.log({"e": 5}, step=5)               # same row
    run.log({"f": 6}, step=3)               # backwards: warned and dropped
    assert "less than the current step 5" in capsys.readouterr().err
    run.log({"g": 7}, step=7, commit=True)  # commits step 5, then 7
    assert run.step == 8
    run.log({"h": 8})
    run.finish()
    t = reopen(wb)
    steps = {m: [s for s, _ in t.get_metric(run.id, m)] for m in t.list_metrics(run.id)}
    assert steps == {"a": [0], "b": [1], "c": [1], "d": [5], "e": [5], "g": [7], "h": [8]}
    t.close()


def test_rows_with_changing_keys_and_a_reused_dict(wb):
    run = wandb.init(project="p", settings={"x_disable_stats": True, "synadb_flush_s": 3600})
    d = {"a": 0.0, "b": 0.0}
    expected = {"a": [], "b": [], "c": []}
    for i in range(30):
        if i % 7 == 3:
            run.log({"c": i, "img": wandb.Histogram([i, i + 1])})  # a slow-path row
            expected["c"].append((i, float(i)))
        elif i % 5 == 0:
            run.log({"b": i * 10})
            expected["b"].append((i, float(i * 10)))
        else:
            d["a"], d["b"] = np.float64(i), -i  # the same dict, changed after each log
            run.log(d)
            expected["a"].append((i, float(i)))
            expected["b"].append((i, float(-i)))
        if i == 17:
            assert run.summary["a"] == 16 and run.summary["c"] == 17
            run.flush()
    assert run.summary["b"] == -29 and run.summary["a"] == 29
    run.finish()
    t = reopen(wb)
    for key, rows in expected.items():
        assert t.get_metric(run.id, key) == rows, key
    t.close()


def test_log_rejects_bad_input(wb):
    run = wandb.init(project="p", settings=NO_STATS)
    with pytest.raises(TypeError):
        run.log([("a", 1)])
    with pytest.raises(TypeError):
        run.log({1: 2.0})
    with pytest.raises(errors.InvalidArgument):
        run.log({"obj": object()})
    run.log({"losses": [0.1, 0.2], "phase": "warmup"})  # kept in the summary, as W&B does
    assert run.summary["losses"] == [0.1, 0.2] and run.summary["phase"] == "warmup"
    run.finish()
    with pytest.raises(wandb.UsageError):
        run.log({"a": 1})
    with pytest.raises(wandb.UsageError):
        wandb.log({"a": 1})


def test_buffered_rows_reach_the_file_on_flush_and_at_once_with_flush_s_zero(wb):
    run = wandb.init(project="p", settings={"x_disable_stats": True, "synadb_flush_s": 3600})
    run.log({"a": 1.0})
    run.log({"a": 2.0})
    other = ExperimentTracker(wb, read_only=True)
    assert "a" not in other.list_metrics(run.id)  # still in the buffer
    run.flush()
    assert [v for _, v in other.get_metric(run.id, "a")] == [1.0, 2.0]
    run.finish()
    now = wandb.init(project="p", settings={"x_disable_stats": True, "synadb_flush_s": 0})
    now.log({"b": 1.0})
    assert other.get_metric(now.id, "b") == [(0, 1.0)]
    now.finish()
    other.close()


def test_context_manager_and_exit_codes(wb):
    with pytest.raises(RuntimeError):
        with wandb.init(project="p", settings=NO_STATS) as bad:
            wandb.log({"a": 1})
            raise RuntimeError("boom")
    with wandb.init(project="p", settings=NO_STATS) as good:
        wandb.log({"a": 1})
    failed = wandb.init(project="p", settings=NO_STATS)
    wandb.finish(exit_code=3)
    api = wandb.Api()
    states = {r.id: r.state for r in api.runs("p")}
    assert states == {bad.id: "failed", good.id: "finished", failed.id: "failed"}


def test_script_exit_finishes_its_run(tmp_path):
    # A script that never calls finish: its run ends at exit, Failed when an
    # uncaught exception ended the script (W&B's exit hook does the same).
    path = str(tmp_path / "r.db")
    env = dict(os.environ, PYTHONPATH=ROOT, SYNADB_WANDB_FILE=path)
    for name, tail in (("ok", ""), ("bad", "1 / 0\n")):
        code = ("import synadb.integrations.wandb as wandb\n"
                f"wandb.init(project='p', name={name!r}, settings={{'x_disable_stats': True}})\n"
                "wandb.log({'a': 1.0})\n" + tail)
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       timeout=120)
    states = {r.name: r.state for r in wandb.Api(file=path).runs("p")}
    wandb.teardown()
    assert states == {"ok": "finished", "bad": "failed"}


def test_mode_disabled_writes_nothing(wb):
    run = wandb.init(project="p", mode="disabled", config={"a": 1})
    run.log({"x": 1})
    assert wandb.config.a == 1
    wandb.finish()
    assert not os.path.exists(wb)


def test_reinit(wb):
    first = wandb.init(project="p", settings=NO_STATS)
    assert wandb.init(project="p", settings=NO_STATS) is first  # return_previous
    second = wandb.init(project="p", reinit=True, settings=NO_STATS)
    assert second is not first and wandb.run is second
    third = wandb.init(project="p", reinit="create_new", settings=NO_STATS)
    assert wandb.run is second and third is not second
    third.finish()
    second.finish()
    assert ExperimentTracker(wb, read_only=True).get_run(first.id).status == "Completed"


def test_resume_modes(wb):
    run = wandb.init(project="p", id="abc123", config={"lr": 0.1}, settings=NO_STATS)
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    run.summary["best"] = 7
    run.finish()
    with pytest.raises(wandb.UsageError, match="already exists"):
        wandb.init(project="p", id="abc123", resume="never", settings=NO_STATS)
    with pytest.raises(wandb.UsageError, match="already exists"):
        wandb.init(project="p", id="abc123", settings=NO_STATS)
    with pytest.raises(wandb.UsageError, match="no run"):
        wandb.init(project="p", id="nosuch1", resume="must", settings=NO_STATS)
    again = wandb.init(project="p", id="abc123", resume="must", settings=NO_STATS)
    assert again.resumed and again.step == 2 and again.config.lr == 0.1
    assert again.summary["best"] == 7
    again.log({"loss": 0.25})
    again.finish()
    fresh = wandb.init(project="p", id="new1", resume="allow", settings=NO_STATS)
    assert not fresh.resumed
    fresh.finish()
    t = reopen(wb)
    assert t.get_metric("abc123", "loss") == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert t.get_run("abc123").status == "Completed"
    t.close()


def test_run_ids_with_dashes_as_wandb_allows(wb):
    run = wandb.init(project="p", id="exp-1_seed.3", settings=NO_STATS)
    assert run.id == "exp-1_seed.3" and run.path.endswith("/p/exp-1_seed.3")
    run.log({"a": 1.0})
    run.finish()
    again = wandb.init(project="p", id="exp-1_seed.3", resume="must", settings=NO_STATS)
    assert again.resumed and again.step == 1
    again.finish()
    api = wandb.Api()
    assert api.run("p/exp-1_seed.3").id == "exp-1_seed.3"
    assert [r.id for r in api.runs("p", {"name": "exp-1_seed.3"})] == ["exp-1_seed.3"]
    with pytest.raises(wandb.UsageError, match="special characters"):
        wandb.init(project="p", id="a/b", settings=NO_STATS)


def test_resume_auto_continues_a_run_that_never_finished(wb):
    code = ("import os, synadb.integrations.wandb as wandb\n"
            "r = wandb.init(project='p', resume='auto', settings={'x_disable_stats': True,"
            " 'synadb_flush_s': 0})\n"
            "wandb.log({'x': 1.0}); print(r.id, flush=True); os._exit(9)\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    crashed = out.stdout.split()[0]
    live = wandb.Api().run(f"p/{crashed}")  # what a notebook sees of a run that died
    assert live.state == "running" and live.summary["x"] == 1.0
    run = wandb.init(project="p", resume=True, settings=NO_STATS)
    assert run.id == crashed and run.resumed and run.step == 1
    run.log({"x": 2.0})
    run.finish()
    nxt = wandb.init(project="p", resume="auto", settings=NO_STATS)
    assert nxt.id != crashed  # the crashed run finished: a new one starts
    nxt.finish()


# -- config and summary --------------------------------------------------------
def test_config_access_update_and_locks(wb):
    with pytest.raises(wandb.UsageError):
        wandb.config.lr
    run = wandb.init(project="p", config={"lr": 0.1}, settings=NO_STATS)
    assert wandb.config.lr == 0.1 and wandb.config["lr"] == 0.1 and "lr" in wandb.config
    wandb.config.epochs = 3
    wandb.config["batch"] = 32
    wandb.config.update({"wd": 0.01, "lr": 0.1})  # same value: fine
    with pytest.raises(wandb.ConfigError, match="allow_val_change"):
        wandb.config.update({"lr": 0.2})
    with pytest.raises(wandb.ConfigError):
        wandb.config.lr = 0.3
    wandb.config.update({"lr": 0.2}, allow_val_change=True)
    assert dict(wandb.config) == {"lr": 0.2, "epochs": 3, "batch": 32, "wd": 0.01}
    run.config._lock({"bs": 8}, "sweep")
    run.config.update({"bs": 16})  # ignored with a warning, as in W&B
    assert run.config.bs == 8
    run.finish()
    r = ExperimentTracker(wb, read_only=True).get_run(run.id)
    assert r.params["lr"] == "0.2" and r.params["epochs"] == "3"


def test_summary_and_define_metric(wb):
    run = wandb.init(project="p", settings=NO_STATS)
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch", summary="max")
    run.define_metric("loss", summary="min,mean")
    run.define_metric("acc", summary="best", goal="maximize")
    run.define_metric("quiet", summary="none")
    for epoch, (loss, acc) in enumerate([(3.0, 0.1), (1.0, 0.7), (2.0, 0.4)]):
        run.log({"epoch": epoch, "loss": loss, "acc": acc, "quiet": 1})
        run.log({"val/acc": acc, "val/f1": acc / 2})  # step_sync adds epoch
    run.summary["note"] = "ok"
    s = run.summary
    assert s["loss"] == {"min": 1.0, "mean": 2.0}
    assert s["acc"] == {"best": 0.7}
    assert s["val/acc"] == {"max": 0.7} and s["val/f1"] == {"max": 0.35}
    assert "quiet" not in s and s["epoch"] == 2 and s.note == "ok"
    with pytest.raises(errors.InvalidArgument):
        run.define_metric("x", summary="median")
    run.finish()
    t = reopen(wb)
    # The val/* rows carry the epoch they belong to.
    assert [s for s, _ in t.get_metric(run.id, "epoch")] == [0, 1, 2, 3, 4, 5]
    assert json.loads(t.get_run(run.id).tag_values["wandb.metrics"])[1]["name"] == "val/*"
    t.close()
    got = wandb.Api().run(f"p/{run.id}").summary
    assert got["loss"] == {"min": 1.0, "mean": 2.0} and got["note"] == "ok"


# -- media ---------------------------------------------------------------------
def test_table_api():
    t = wandb.Table(columns=["a", "b"], data=[[1, "x"]])
    t.add_data(2, "y")
    t.add_column("c", [0.5, 0.25])
    assert t.get_column("c") == [0.5, 0.25] and t.get_column("a", convert_to="numpy").sum() == 3
    with pytest.raises(errors.DimensionMismatch):
        t.add_data(1)
    import pandas as pd

    df = pd.DataFrame({"x": [1, 2], "y": [3.0, 4.0]})
    t2 = wandb.Table(dataframe=df)
    assert t2.columns == ["x", "y"] and t2.data == [[1, 3.0], [2, 4.0]]
    assert t2.get_dataframe().equals(df)


def test_confusion_matrix_counts_pairs():
    chart = wandb.plot.confusion_matrix(y_true=[0, 1, 1, 2], preds=[0, 1, 2, 2],
                                        class_names=["a", "b", "c"])
    cells = {(a, p): n for a, p, n in chart.table.data}
    assert cells[("b", "c")] == 1 and cells[("b", "b")] == 1 and cells[("c", "c")] == 1
    assert sum(cells.values()) == 4 and len(cells) == 9
    probs = np.eye(3)[[0, 1, 2, 2]]  # the same predictions, as probabilities
    by_probs = wandb.plot.confusion_matrix(probs=probs, y_true=[0, 1, 1, 2]).table.data
    assert [n for _, _, n in by_probs] == [n for _, _, n in chart.table.data]
    assert by_probs[0][:2] == ["Class_1", "Class_1"]
    with pytest.raises(errors.InvalidArgument):
        wandb.plot.confusion_matrix(y_true=[0, 1])


def test_media_are_typed_artifacts(wb, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    run = wandb.init(project="p", settings=NO_STATS)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    pil = PILImage.new("RGB", (5, 3), (255, 0, 0))
    table = wandb.Table(columns=["x", "y", "img"])
    table.add_data(1, 2, wandb.Image(np.zeros((2, 2))))
    run.log({"arr": wandb.Image(np.ones((4, 6, 3)), caption="ones"),
             "fig": wandb.Image(fig), "pil": wandb.Image(pil),
             "hist": wandb.Histogram([1, 2, 2, 3], num_bins=2),
             "npy": np.arange(10.0),  # an array becomes a histogram, as in W&B
             "tab": table,
             "line": wandb.plot.line(wandb.Table(data=[[0, 1], [1, 3]], columns=["x", "y"]),
                                     "x", "y", title="T"),
             "bar": wandb.plot.bar(wandb.Table(data=[["a", 1]], columns=["l", "v"]), "l", "v"),
             "page": wandb.Html("<b>hi</b>")})
    plt.close(fig)
    with pytest.raises(errors.InvalidType):
        wandb.plot.scatter([[1, 2]], "x", "y")
    with pytest.raises(errors.InvalidArgument):
        wandb.plot.line(table, "x", "nope")
    run.finish()
    t = reopen(wb)
    kinds = t.get_run(run.id).artifacts
    assert kinds["media/images/arr/0.png"] == "image"
    assert kinds["media/images/fig/0.png"] == "image"
    assert kinds["media/histograms/hist/0.histogram.json"] == "histogram"
    assert kinds["media/histograms/npy/0.histogram.json"] == "histogram"
    assert kinds["media/tables/tab/0.table.json"] == "table"
    assert kinds["media/plots/line/0.plot.json"] == "plot"
    assert kinds["media/html/page/0.html"] == "html"
    assert t.get_artifact(run.id, "media/html/page/0.html") == b"<b>hi</b>"
    assert t.load_artifact(run.id, "media/images/arr/0.png").shape == (4, 6, 3)
    assert t.load_artifact(run.id, "media/images/pil/0.png")[0, 0].tolist() == [255, 0, 0]
    assert t.load_artifact(run.id, "media/images/arr/0.png.json")["caption"] == "ones"
    assert t.load_artifact(run.id, "media/histograms/hist/0.histogram.json") == {
        "bins": [1.0, 2.0, 3.0], "values": [1, 3]}
    tab = t.load_artifact(run.id, "media/tables/tab/0.table.json")
    assert tab["columns"] == ["x", "y", "img"] and tab["data"][0][2]["_type"] == "image-file"
    plot = t.load_artifact(run.id, "media/plots/line/0.plot.json")
    assert plot["plot"] == "line" and plot["table"]["data"] == [[0, 1], [1, 3]]
    summary = json.loads(t.get_run(run.id).tag_values["wandb.summary"])
    assert summary["arr"]["caption"] == "ones" and summary["tab"]["_type"] == "table-file"
    t.close()


def test_histogram_artifact_kinds_round_trip(db_path):
    from synadb.tracking_media import histogram_artifact, plot_artifact

    with ExperimentTracker(db_path) as t:
        rid = t.start_run("e")
        assert t.log_artifact(rid, "h.json", histogram_artifact(
            np_histogram=np.histogram([0.0, 1.0, 1.0], bins=2))) == "histogram"
        assert t.log_artifact(rid, "p.json", plot_artifact(
            "scatter", ["a", "b"], [[1, 2]], x="a", y="b")) == "plot"
        assert t.load_artifact(rid, "h.json")["values"] == [1, 2]
        assert t.load_artifact(rid, "p.json")["plot"] == "scatter"
        # The kinds that were there still behave as before.
        assert t.log_artifact(rid, "x.npy", np.arange(3)) == "numpy"
    with pytest.raises(errors.InvalidArgument):
        histogram_artifact([1.0], num_bins=1000)


# -- artifacts -------------------------------------------------------------------
def test_artifact_versions_aliases_and_download(wb, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("one")
    (src / "sub" / "b.bin").write_bytes(b"\x00\x01")
    run = wandb.init(project="p", settings=NO_STATS)
    art = wandb.Artifact("data", type="dataset", metadata={"n": 2})
    art.add_dir(str(src))
    run.log_artifact(art)
    assert art.version == "v0" and art.aliases == ["latest"]
    same = wandb.Artifact("data", type="dataset")
    same.add_dir(str(src))
    run.log_artifact(same, aliases=["stable"])  # same files: no new version
    assert same.version == "v0" and "stable" in same.aliases
    (src / "a.txt").write_text("two")
    new = wandb.Artifact("data", type="dataset")
    new.add_dir(str(src))
    with new.new_file("notes.md") as f:
        f.write("# v1")
    wandb.log_artifact(new, aliases=["stable"])  # the alias moves
    assert new.version == "v1"
    with pytest.raises(errors.InvalidArgument):
        wandb.log_artifact(wandb.Artifact("data", type="model"))
    run.finish()

    user = wandb.init(project="p", settings=NO_STATS)
    latest = user.use_artifact("data:latest")
    assert latest.version == "v1" and latest.aliases == ["latest", "stable"]
    assert user.use_artifact("data:v0").aliases == []
    assert user.use_artifact("p/data:stable").version == "v1"
    root = latest.download(str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "a.txt").read_text() == "two"
    assert (tmp_path / "dl" / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "dl" / "notes.md").read_text() == "# v1"
    latest.verify(root)
    v0 = wandb.Api().artifact("p/data:v0")
    assert v0.metadata == {"n": 2} and v0.download(str(tmp_path / "v0"))
    assert (tmp_path / "v0" / "a.txt").read_text() == "one"
    with pytest.raises(errors.KeyNotFound):
        user.use_artifact("data:v9")
    with pytest.raises(errors.KeyNotFound):
        user.use_artifact("data:nosuch")
    user.finish()
    used = wandb.Api().run(f"p/{user.id}").used_artifacts()
    assert [a.name for a in used] == ["data:v1", "data:v0"]


def test_artifact_download_detects_changed_bytes(wb, tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights" * 100)
    run = wandb.init(project="p", settings=NO_STATS)
    art = wandb.Artifact("model", type="model")
    art.add_file(str(f))
    run.log_artifact(art)
    # Someone rewrites the stored bytes under the artifact (a valid record,
    # so the engine's CRC passes): the manifest's SHA-256 must catch it.
    run.tracker.log_artifact(run.id, art._prefix + "model.bin", b"tampered")
    run.finish()
    with pytest.raises(errors.ChecksumError, match="SHA-256"):
        wandb.Api().artifact("p/model:latest").download(str(tmp_path / "out"))


# -- alert -------------------------------------------------------------------------
def test_alert_is_a_logged_event(wb):
    run = wandb.init(project="p", settings=NO_STATS)
    run.log({"a": 1})
    wandb.alert(title="Low acc", text="acc 0.1", level=wandb.AlertLevel.WARN)
    wandb.alert(title="again", text="x")
    with pytest.raises(errors.InvalidArgument):
        wandb.alert(title="t", text="x", level="LOUD")
    run.finish()
    t = reopen(wb)
    lines = t.load_artifact(run.id, "events/alerts.jsonl").splitlines()
    assert [json.loads(x)["level"] for x in lines] == ["WARN", "INFO"]
    assert json.loads(lines[0])["title"] == "Low acc"
    assert t.get_metric(run.id, "events/alerts") == [(1, 1.0), (1, 2.0)]
    t.close()


# -- sweeps ---------------------------------------------------------------------------
def _train():
    with wandb.init(config={"lr": 99.0}, settings=NO_STATS):
        lr = wandb.config.lr
        for epoch in range(8):
            wandb.log({"loss": (lr - 0.01) ** 2 + 1.0 / (epoch + 1)})


def test_sweep_grid_runs_every_combination_and_continues(wb):
    sid = wandb.sweep({"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                       "parameters": {"lr": {"values": [0.001, 0.01, 0.1]},
                                      "opt": {"parameters": {"name": {"value": "adam"}}}}},
                      project="sw")
    wandb.agent(sid, _train, count=2)
    wandb.agent(sid, _train)  # the rest of the grid, then stops
    sw = wandb.Api().sweep(f"sw/{sid}")
    got = sorted((r.config["lr"], r.config["opt"]["name"]) for r in sw.runs)
    assert got == [(0.001, "adam"), (0.01, "adam"), (0.1, "adam")]
    assert sw.best_run().config["lr"] == 0.01
    assert sw.state == "FINISHED"
    t = reopen(wb)
    assert all(r.tag_values["sweep"] == sid for r in t.list_runs("sw"))
    t.close()


def test_sweep_random_samples_distributions(wb):
    sid = wandb.sweep({"method": "random", "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "layers": {"min": 1, "max": 4}, "drop": {"min": 0.0, "max": 0.5},
        "act": {"values": ["relu", "gelu"], "probabilities": [1.0, 0.0]},
        "q": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 5}}}, project="sw")
    seen = []

    def fn():
        with wandb.init(settings=NO_STATS) as run:
            seen.append(dict(run.config))
    wandb.agent(sid, fn, count=6)
    assert len(seen) == 6
    for c in seen:
        assert 1e-4 <= c["lr"] <= 1e-1 and c["layers"] in (1, 2, 3, 4)
        assert 0.0 <= c["drop"] <= 0.5 and c["act"] == "relu" and c["q"] in (0, 5, 10)


def test_sweep_bayes_uses_optuna_tpe(wb):
    # "seed" (a synadb extension) makes Optuna's proposals repeatable.
    sid = wandb.sweep({"method": "bayes", "metric": {"name": "loss", "goal": "minimize"},
                       "parameters": {"lr": {"min": 0.0, "max": 0.2}}, "seed": 3},
                      project="sw")
    wandb.agent(sid, _train, count=12)
    runs = wandb.Api().runs("sw", filters={"sweep": sid})
    assert len(runs) == 12
    best = wandb.Api().sweep(f"sw/{sid}").best_run()
    assert best.summary["loss"] == min(r.summary["loss"] for r in runs)
    assert abs(best.config["lr"] - 0.01) < 0.05
    # A second agent continues the same study: TPE is told the first 12 runs.
    wandb.agent(sid, _train, count=3)
    assert len(wandb.Api().runs("sw", filters={"sweep": sid})) == 15


def test_sweep_bayes_without_optuna_names_the_extra(wb, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    sid = wandb.sweep({"method": "bayes", "metric": {"name": "loss"},
                       "parameters": {"lr": {"min": 0.0, "max": 1.0}}}, project="sw")
    with pytest.raises(errors.MissingDependency, match=r"synadb\[sweeps\]"):
        wandb.agent(sid, _train, count=1)


def test_sweep_config_is_checked(wb):
    with pytest.raises(errors.InvalidArgument, match="grid search requires"):
        wandb.sweep({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 0.2}}})
    with pytest.raises(errors.InvalidArgument):
        wandb.sweep({"method": "annealing", "parameters": {"a": {"value": 1}}})
    with pytest.raises(errors.InvalidArgument):
        wandb.sweep({"method": "bayes", "parameters": {"a": {"values": [1]}}})


def test_hyperband_bands_as_wandb_defines_them():
    assert wandb_sweep.hyperband_bands({"min_iter": 3, "eta": 3})[:4] == [3, 9, 27, 81]
    assert wandb_sweep.hyperband_bands({"max_iter": 27, "eta": 3, "s": 2}) == [3, 9]
    assert wandb_sweep.hyperband_bands({"max_iter": 5, "eta": 2, "s": 2}) == [1, 2]
    with pytest.raises(errors.InvalidArgument):
        wandb_sweep.hyperband_bands({"eta": 3})


def test_hyperband_stops_runs_worse_at_a_bracket(wb):
    # Good learning rates first: the bad ones are worse at the first bracket.
    sid = wandb.sweep({"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                       "parameters": {"lr": {"values": [0.01, 0.02, 0.5, 0.9]}},
                       "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2}},
                      project="hb")
    steps_run = {}

    def train():
        run = wandb.init(settings=NO_STATS)
        for epoch in range(8):
            steps_run[run.config.lr] = epoch + 1
            wandb.log({"loss": run.config.lr + 1.0 / (epoch + 1)})
        run.finish()
    wandb.agent(sid, train)
    runs = {r.config["lr"]: r for r in wandb.Api().runs("hb")}
    assert runs[0.01].state == "finished" and steps_run[0.01] == 8
    assert runs[0.5].state == "killed" and steps_run[0.5] == 2
    assert runs[0.9].state == "killed" and "hyperband" in runs[0.9].error
    assert len(runs[0.9].history(keys=["loss"])) == 2


def test_agent_survives_a_failing_trial(wb, capsys):
    sid = wandb.sweep({"method": "grid", "parameters": {"x": {"values": [1, 2, 3]}}},
                      project="f")

    def fn():
        with wandb.init(settings=NO_STATS):
            if wandb.config.x == 2:
                raise ValueError("bad x")
            wandb.log({"y": wandb.config.x})
    wandb.agent(sid, fn)
    assert "bad x" in capsys.readouterr().err
    states = sorted((r.config["x"], r.state) for r in wandb.Api().runs("f"))
    assert states == [(1, "finished"), (2, "failed"), (3, "finished")]


# -- Api -------------------------------------------------------------------------------
def _populate():
    for i, (lr, acc) in enumerate([(0.001, 0.80), (0.01, 0.95), (0.1, 0.91), (0.05, 0.5)]):
        tags = ["even"] if i % 2 == 0 else ["odd", "x"]
        run = wandb.init(project="ent/proj".split("/")[1], name=f"r{i}",
                         config={"lr": lr, "model": {"depth": i}}, tags=tags,
                         settings=NO_STATS)
        for step in range(3):
            run.log({"acc": acc * (step + 1) / 3, "loss": 1 - acc})
        run.finish(exit_code=1 if i == 3 else 0)


def test_api_runs_mongo_filters_and_order(wb):
    _populate()
    api = wandb.Api()

    def names(*args, **kwargs):
        return [r.name for r in api.runs(*args, **kwargs)]
    assert names("proj") == ["r0", "r1", "r2", "r3"]
    assert names("ent/proj", {"config.lr": {"$gt": 0.01}}) == ["r2", "r3"]
    assert names("proj", {"config.lr.value": 0.01}) == ["r1"]
    assert names("proj", {"config.model.depth": {"$gte": 2}}) == ["r2", "r3"]
    assert names("proj", {"summary_metrics.acc": {"$gte": 0.9}}) == ["r1", "r2"]
    assert names("proj", {"state": "finished"}) == ["r0", "r1", "r2"]
    assert names("proj", {"state": {"$ne": "finished"}}) == ["r3"]
    assert names("proj", {"tags": {"$in": ["odd"]}}) == ["r1", "r3"]
    assert names("proj", {"tags": "even"}) == ["r0", "r2"]
    assert names("proj", {"tags": {"$nin": ["x"]}}) == ["r0", "r2"]
    assert names("proj", {"$and": [{"config.lr": {"$lt": 0.1}},
                                   {"summary_metrics.acc": {"$gt": 0.6}}]}) == ["r0", "r1"]
    assert names("proj", {"$or": [{"display_name": "r0"}, {"config.lr": 0.1}]}) == ["r0", "r2"]
    assert names("proj", {"display_name": {"$regex": "^r[12]$"}}) == ["r1", "r2"]
    assert names("proj", {"summary_metrics.nope": {"$exists": False}}) == ["r0", "r1", "r2",
                                                                          "r3"]
    assert names("proj", order="-summary_metrics.acc") == ["r1", "r2", "r0", "r3"]
    assert names("proj", order="+config.lr") == ["r0", "r1", "r3", "r2"]
    assert names("proj", order="-created_at") == ["r3", "r2", "r1", "r0"]
    assert names("nosuch") == []
    with pytest.raises(errors.InvalidArgument):
        api.runs("proj", {"config.lr": {"$near": 1}})


def test_api_run_history_and_scan(wb):
    _populate()
    api = wandb.Api()
    r = api.runs("proj", {"display_name": "r1"})[0]
    assert api.run(f"proj/{r.id}") == r and api.run(f"local/proj/runs/{r.id}").name == "r1"
    assert r.config == {"lr": 0.01, "model": {"depth": 1}}
    assert r.state == "finished" and r.tags == ["odd", "x"] and r.project == "proj"
    assert r.summary["acc"] == pytest.approx(0.95)
    df = r.history()
    assert list(df["_step"]) == [0, 1, 2]
    assert {"acc", "loss", "_runtime", "_timestamp"} <= set(df.columns)
    assert df["acc"].tolist() == pytest.approx([0.95 / 3, 0.95 * 2 / 3, 0.95])
    assert len(r.history(samples=2)) == 2
    by_loss = r.history(keys=["acc"], x_axis="loss")
    assert set(by_loss.columns) == {"_step", "_timestamp", "_runtime", "acc", "loss"}
    rows = list(r.scan_history(keys=["acc"]))
    assert [row["_step"] for row in rows] == [0, 1, 2] and "loss" not in rows[0]
    assert r.history(pandas=False)[0]["loss"] == pytest.approx(0.05)


def test_api_reads_runs_the_tracker_wrote(wb):
    with ExperimentTracker(wb) as t:
        rid = t.start_run("plain", params={"lr": "0.5", "name": "x"})
        t.log_metric(rid, "acc", 0.7, step=0)
        t.end_run(rid)
    wandb.teardown()
    r = wandb.Api().runs("plain", {"config.lr": {"$gt": 0.1}})[0]
    assert r.config == {"lr": 0.5, "name": "x"} and r.summary["acc"] == 0.7


def test_api_filter_touches_no_history(wb, monkeypatch):
    _populate()
    api = wandb.Api()
    api.runs("proj", {"summary_metrics.acc": {"$gt": 0.5}})
    calls = []
    monkeypatch.setattr(ExperimentTracker, "get_metric_history",
                        lambda *a, **k: calls.append(a))
    assert len(api.runs("proj", {"summary_metrics.acc": {"$gt": 0.5}},
                        order="-summary_metrics.acc")) == 3
    assert calls == []


def test_compile_filter_doctest_cases():
    f = wandb_api.compile_filter({"$nor": [{"a": 1}], "b": {"$all": [1, 2]}})
    assert f({"a": 2, "b": [1, 2, 3]}) and not f({"a": 1, "b": [1, 2]})
    assert not f({"a": 2, "b": [1]})


# -- system metrics --------------------------------------------------------------------
def test_system_metrics_sampled_and_stopped(db_path):
    before = {t.ident for t in threading.enumerate()}
    with ExperimentTracker(db_path) as t:
        rid = t.start_run("e", system_metrics=0.01)
        sampler = t._system[rid]
        assert sampler.running
        t.end_run(rid)
        assert not sampler.running and sampler.error is None
        names = t.list_metrics(rid)
        for m in ("system/cpu_percent", "system/memory_percent", "system/disk_percent",
                  "system/process_rss_mb"):
            assert m in names
            vals = t.get_metric_tensor(rid, m)
            assert len(vals) >= 1 and np.isfinite(vals).all()
        assert 0.0 < t.get_metric_tensor(rid, "system/memory_percent")[-1] <= 100.0
        assert [s for s, _ in t.get_metric(rid, "system/cpu_percent")] == list(
            range(len(t.get_metric(rid, "system/cpu_percent"))))
        plain = t.start_run("e")
        assert plain not in t._system
        t.end_run(plain)
    assert {t.ident for t in threading.enumerate()} - before == set()


def test_system_metrics_object_style_and_close_stops_them(db_path):
    exp = Experiment("e", db_path)
    run = exp.start_run(system_metrics=True)
    sampler = exp.tracker._system[run.id]
    exp.close()  # close stops the sampler too
    assert not sampler.running
    with ExperimentTracker(db_path) as t:
        assert "system/memory_percent" in t.list_metrics(run.id)
    with pytest.raises(errors.InvalidArgument):
        ExperimentTracker(db_path).start_run("e", system_metrics=-1)


def test_system_metrics_proc_fallback(monkeypatch):
    from synadb import system_metrics

    monkeypatch.setitem(sys.modules, "psutil", None)
    sampler = system_metrics._Sampler(None)
    sum(range(100000))
    vals = sampler.sample()
    assert 0.0 <= vals["system/cpu_percent"] <= 100.0
    assert 0.0 < vals["system/memory_percent"] <= 100.0
    assert vals["system/process_rss_mb"] > 1.0


def test_system_metrics_read_gpus_through_nvidia_smi(tmp_path, monkeypatch):
    # No GPU here: a stand-in nvidia-smi on PATH answers the query W&B's and
    # our sampler make, for two GPUs.
    from synadb import system_metrics

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '35, 1024, 8192'\necho '0, 0, 16384'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    vals = system_metrics.sample_once()
    assert vals["system/gpu0_utilization_percent"] == 35.0
    assert vals["system/gpu0_memory_used_mb"] == 1024.0
    assert vals["system/gpu0_memory_percent"] == 12.5
    assert vals["system/gpu1_memory_percent"] == 0.0
    fake.write_text("#!/bin/sh\nexit 3\n")  # a broken driver: GPU metrics drop out
    sampler = system_metrics._Sampler(None)
    assert not any("gpu" in k for k in sampler.sample())
    assert "system/memory_percent" in sampler.sample()


def test_wandb_init_samples_system_metrics_by_default(wb):
    run = wandb.init(project="p", settings={"x_stats_sampling_interval": 0.01})
    sampler = run.tracker._system[run.id]
    run.log({"a": 1})
    run.finish()
    assert not sampler.running
    off = wandb.init(project="p", settings=wandb.Settings(x_disable_stats=True))
    off.finish()
    t = reopen(wb)
    assert "system/cpu_percent" in t.list_metrics(run.id)
    assert not any(m.startswith("system/") for m in t.list_metrics(off.id))
    t.close()
    r = wandb.Api().run(f"p/{run.id}")
    assert "system/memory_percent" in r.system_metrics
    assert "system/cpu_percent" not in r.history().columns
    assert "system/cpu_percent" in r.history(stream="system").columns


# -- W&B-style scripts, read back every way --------------------------------------------
def test_wandb_style_scripts_read_back_through_api_tracker_and_mlflow(tmp_path):
    path = str(tmp_path / "runs.db")
    env = dict(os.environ, PYTHONPATH=ROOT, SYNADB_WANDB_FILE=path, MPLBACKEND="Agg")
    for script in ("train_quickstart.py", "media_tables.py", "artifacts_pipeline.py",
                   "sweep_local.py"):
        out = subprocess.run([sys.executable, "-W", "error", os.path.join(SCRIPTS, script)],
                             env=env, capture_output=True, text=True, timeout=300,
                             cwd=str(tmp_path))
        assert out.returncode == 0, f"{script}: {out.stderr[-2000:]}"

    api = wandb.Api(file=path)
    quick = api.runs("quickstart", filters={"config.learning_rate": {"$gte": 0.01},
                                            "state": "finished", "tags": {"$in": ["cnn"]}},
                     order="-summary_metrics.best_val_acc")
    assert [r.name for r in quick] == ["cnn-lr0.1", "cnn-lr0.01"]
    best = quick[0]
    assert best.group == "lr-scan" and best.job_type == "train"
    assert best.config["optimizer"] == {"name": "adam", "beta1": 0.9}
    assert set(best.summary["val/loss"]) == {"min"}
    hist = best.history(keys=["val/acc", "epoch"])
    assert hist["epoch"].tolist() == [float(e) for e in range(8)]
    assert len(best.history(keys=["train.loss"])) == 32

    media = api.runs("media")[0]
    assert media.summary["predictions"]["nrows"] == 5
    assert media.summary["curve"]["plot"] == "line"

    assert api.artifact("pipeline/mnist-data:clean").version == "v1"
    model = api.artifact("pipeline/classifier:best")
    assert model.logged_by().job_type == "train"
    eval_run = api.runs("pipeline", {"jobType": "eval"})[0]
    assert eval_run.summary["trained_on"] == "v1"

    sweep_runs = api.runs("sweep-demo")
    assert len(sweep_runs) == 6
    sweep = api.sweep(f"sweep-demo/{sweep_runs[0].sweep_name}")
    assert sweep.best_run().config == {"lr": 0.01, "batch_size": 16, "epochs": 6}
    assert {r.state for r in sweep_runs} == {"finished", "killed"}
    wandb.teardown()  # closes the Api's read-only handle

    with ExperimentTracker(path, read_only=True) as t:
        assert set(t.list_experiments()) >= {"quickstart", "media", "pipeline", "sweep-demo"}
        r = t.query("quickstart", filter={"learning_rate": "0.1"})[0]
        assert r.status == "Completed" and r.params["optimizer.name"] == "adam"
        assert t.get_metric_tensor(r.id, "val/acc")[-1] == pytest.approx(
            best.summary["val/acc"])

    import synadb.integrations.mlflow as mlflow

    old = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(path)
    try:
        found = mlflow.search_runs(experiment_names=["quickstart"],
                                   filter_string="params.learning_rate = '0.1'",
                                   output_format="list")
        assert [r.info.run_name for r in found] == ["cnn-lr0.1"]
        assert found[0].info.status == "FINISHED"
        assert found[0].data.metrics["val/acc"] == pytest.approx(best.summary["val/acc"])
    finally:
        mlflow.set_tracking_uri(old)


def test_public_names():
    for name in ("init", "log", "finish", "config", "summary", "run", "define_metric",
                 "Table", "Image", "Histogram", "plot", "Artifact", "sweep", "agent", "Api",
                 "alert", "log_artifact", "use_artifact", "Settings"):
        assert hasattr(wandb, name), name
    assert synadb.integrations.wandb.Api is wandb_api.Api
