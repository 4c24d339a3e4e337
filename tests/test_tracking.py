"""Experiment tracking: API.md's two styles, media, durability, live readers."""

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb import Experiment, ExperimentTracker, RunStatus
from synadb.tracking_media import png_encode

ROOT = str(Path(__file__).resolve().parents[1])


def _child(code, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, env=env, text=True)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "experiments.db")


# -- API.md, run-id style ------------------------------------------------------

def test_run_id_style_as_in_api_md(path):
    tracker = ExperimentTracker(path)
    run_id = tracker.start_run("mnist", tags=["baseline"])
    assert isinstance(run_id, str) and len(run_id) == 32
    tracker.log_param(run_id, "lr", "0.001")
    tracker.log_metric(run_id, "loss", 0.25, step=3)
    tracker.log_metric(run_id, "loss", 0.20)  # step optional: continues from 3
    data_bytes = os.urandom(1000)
    tracker.log_artifact(run_id, "model.pt", data_bytes)
    tracker.end_run(run_id, "Completed")

    (run,) = tracker.list_runs("mnist")
    assert (run.id, run.experiment, run.status, run.tags) == (run_id, "mnist", "Completed",
                                                               ["baseline"])
    assert run.status is RunStatus.COMPLETED
    assert run.params == {"lr": "0.001"}
    assert run.start_time <= run.end_time
    assert tracker.get_metric(run_id, "loss") == [(3, 0.25), (4, 0.20)]
    assert tracker.get_artifact(run_id, "model.pt") == data_bytes
    assert tracker.list_artifacts(run_id) == ["model.pt"]
    tracker.close()

    # Everything is there after a reopen.
    with ExperimentTracker(path) as again:
        (run,) = again.list_runs("mnist")
        assert run.params == {"lr": "0.001"} and run.metrics == {"loss": 0.20}
        assert again.get_metric(run_id, "loss") == [(3, 0.25), (4, 0.20)]
        assert again.get_artifact(run_id, "model.pt") == data_bytes


def test_statuses_accept_enum_and_any_case(path):
    with ExperimentTracker(path) as tracker:
        ids = [tracker.start_run("e") for _ in range(4)]
        tracker.end_run(ids[0], RunStatus.FAILED)
        tracker.end_run(ids[1], "killed")
        tracker.end_run(ids[2], "FINISHED")  # MLflow's word
        assert [r.status.value for r in tracker.list_runs("e")] == [
            "Failed", "Killed", "Completed", "Running"]
        assert tracker.get_run(ids[3]).end_time is None
        with pytest.raises(synadb.InvalidArgument, match="unknown run status"):
            tracker.end_run(ids[3], "paused")
        assert tracker.get_run(ids[3]).status == "Running"


# -- API.md, object style ------------------------------------------------------

def test_object_style_as_in_api_md(path):
    exp = Experiment("mnist", path)
    ids = []
    for i, lr in enumerate([0.001, 0.01, 0.1]):
        with exp.start_run(tags=["baseline"] if i < 2 else ["other"]) as run:
            run.log_params({"learning_rate": lr, "batch_size": 32})
            run.log_param("opt", "adam")
            for epoch in range(5):
                loss, acc = 1.0 / (epoch + 1) + lr, 0.5 + 0.1 * epoch - lr
                run.log_metrics({"loss": loss, "accuracy": acc}, step=epoch)
            run.log_metric("loss", loss, step=5)
            run.log_artifact("config.json", b'{"a": 1}')
            ids.append(run.id)

    runs = exp.query(filter={"status": "completed", "tags": ["baseline"],
                             "learning_rate": "0.001"}, sort_by="accuracy", ascending=False)
    assert [r.id for r in runs] == [ids[0]]
    by_acc = exp.query(sort_by="accuracy", ascending=False)
    assert [r.id for r in by_acc] == ids  # lower lr, higher accuracy
    assert [r.id for r in exp.query(sort_by="learning_rate")] == ids
    assert [r.id for r in exp.query(filter={"tags": "baseline"})] == ids[:2]

    assert exp.get_best_run("loss", minimize=True).id == ids[0]
    assert exp.get_best_run("accuracy", minimize=False).id == ids[0]

    tensor = exp.get_metric_tensor(ids[1], "loss")
    assert tensor.dtype == np.float64 and len(tensor) == 6
    np.testing.assert_allclose(tensor[:5], [1.0 / (e + 1) + 0.01 for e in range(5)])
    assert exp.get_metrics(ids[1], "accuracy")[0] == (0, 0.5 - 0.01)

    cmp = exp.compare_runs([ids[0], ids[2]])
    assert cmp["params"]["learning_rate"] == {ids[0]: "0.001", ids[2]: "0.1"}
    assert cmp["metrics"]["loss"][ids[2]] == pytest.approx(1 / 5 + 0.1)
    assert cmp["params_that_differ"] == ["learning_rate"]

    assert [r.id for r in exp.list_runs()] == ids
    assert exp.get_run(ids[2]).params["batch_size"] == "32"
    assert exp.get_artifact(ids[0], "config.json") == b'{"a": 1}'
    assert exp.list_artifacts(ids[0]) == ["config.json"]
    exp.delete_run(ids[1])
    assert [r.id for r in exp.list_runs()] == [ids[0], ids[2]]
    with pytest.raises(synadb.KeyNotFound):
        exp.get_run(ids[1])
    with pytest.raises(synadb.KeyNotFound):
        exp.get_metric_tensor(ids[1], "loss")
    exp.close()
    with Experiment("mnist", path) as again:
        assert [r.id for r in again.list_runs()] == [ids[0], ids[2]]
        assert not again.tracker.db.keys(f"run/{ids[1]}*")


def test_run_context_records_failure_and_kill(path):
    exp = Experiment("e", path)
    with pytest.raises(ZeroDivisionError):
        with exp.start_run() as run:
            run.log_metric("loss", 1.0)
            1 / 0
    failed = exp.get_run(run.id)
    assert failed.status == RunStatus.FAILED
    assert "ZeroDivisionError" in failed.error and failed.end_time is not None
    with pytest.raises(KeyboardInterrupt):
        with exp.start_run() as run:
            raise KeyboardInterrupt
    assert exp.get_run(run.id).status == RunStatus.KILLED
    exp.close()


def test_nested_params_flatten_as_mlflow_does(path):
    exp = Experiment("e", path)
    with exp.start_run() as run:
        run.log_params({"optimizer": {"name": "adam", "betas": [0.9, 0.99], "lr": 1e-3},
                        "epochs": 10, "amp": True, "dropout": np.float32(0.5)})
    assert exp.get_run(run.id).params == {
        "optimizer.name": "adam", "optimizer.betas": "[0.9, 0.99]", "optimizer.lr": "0.001",
        "epochs": "10", "amp": "True", "dropout": "0.5"}
    exp.close()


def test_metric_history_is_numpy_with_steps_and_timestamps(path):
    with ExperimentTracker(path) as tracker:
        rid = tracker.start_run("e")
        for step in range(0, 1000, 10):
            tracker.log_metric(rid, "loss", step / 1000, step=step)
        tracker.log_metric(rid, "loss", math.nan, step=1000)  # a diverged loss is data
        tracker.log_metric_batch(rid, "lr", np.linspace(1, 0, 50))
        hist = tracker.get_metric_history(rid, "loss")
        assert hist["step"].dtype == np.int64
        np.testing.assert_array_equal(hist["step"], np.arange(0, 1001, 10))
        np.testing.assert_array_equal(hist["value"][:-1], np.arange(0, 1000, 10) / 1000)
        assert math.isnan(hist["value"][-1])
        assert np.all(np.diff(hist["timestamp"]) >= 0)
        tracker.end_run(rid)
        run = tracker.get_run(rid)  # every value was stamped while the run ran
        assert run.start_time <= hist["timestamp"].min()
        assert hist["timestamp"].max() <= run.end_time
        np.testing.assert_array_equal(tracker.get_metric_tensor(rid, "lr"), np.linspace(1, 0, 50))
        assert [s for s, _ in tracker.get_metric(rid, "lr")] == list(range(50))
        assert tracker.get_run(rid).metrics["lr"] == 0.0


def test_bad_input_is_refused_and_changes_nothing(path):
    tracker = ExperimentTracker(path)
    rid = tracker.start_run("e")
    tracker.log_metric(rid, "loss", 1.0)
    tracker.sync()
    before = Path(path).read_bytes()
    end = tracker.db._log_end()
    for bad in ["../x", "/etc/passwd", "a/../../b", "a\0b", "", "a//b", "./a", "C:/x", "a\\b"]:
        with pytest.raises(synadb.InvalidArgument):
            tracker.log_artifact(rid, bad, b"data")
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metric(rid, "loss", "high")
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metric(rid, "loss", 1.0, step="x")
    with pytest.raises(synadb.KeyNotFound):
        tracker.log_metric("0" * 32, "loss", 1.0)
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_artifact(rid, "obj", object())  # would need pickling
    with pytest.raises(synadb.InvalidArgument):
        tracker.start_run("")
    with pytest.raises(synadb.DimensionMismatch):
        tracker.log_image(rid, "x.png", np.zeros((2, 2, 7)))
    with pytest.raises(synadb.DimensionMismatch):
        tracker.log_table(rid, "t", ["a", "b"], [[1, 2], [3]])
    assert tracker.db._log_end() == end
    tracker.close()
    assert Path(path).read_bytes()[:end] == before[:end]


# -- artifacts and media -------------------------------------------------------

def test_artifacts_by_type_and_no_unpickling_unasked(path):
    torch = pytest.importorskip("torch")
    exp = Experiment("e", path)
    with exp.start_run() as run:
        arr = np.arange(12, dtype=np.int64).reshape(3, 4)
        state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}
        run.log_artifact("arr.npy", arr)
        run.log_artifact("model.pt", state)
        run.log_artifact("notes.txt", "hello")
        run.log_artifact("obj.pkl", {1, 2, 3}, allow_pickle=True)
        run.log_text("log/train.txt", "epoch 1\n")
        run.log_dict("cfg.json", {"lr": 0.1, "layers": [1, 2]})
    types = {n: exp.tracker.artifact_info(run.id, n)["type"] for n in exp.list_artifacts(run.id)}
    assert types == {"arr.npy": "numpy", "model.pt": "torch", "notes.txt": "text",
                     "obj.pkl": "pickle", "log/train.txt": "text", "cfg.json": "json"}
    np.testing.assert_array_equal(exp.load_artifact(run.id, "arr.npy"), arr)
    loaded = exp.load_artifact(run.id, "model.pt")
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    assert exp.load_artifact(run.id, "notes.txt") == "hello"
    assert exp.load_artifact(run.id, "cfg.json") == {"lr": 0.1, "layers": [1, 2]}
    with pytest.raises(synadb.InvalidArgument, match="allow_pickle"):
        exp.load_artifact(run.id, "obj.pkl")
    assert exp.load_artifact(run.id, "obj.pkl", allow_pickle=True) == {1, 2, 3}
    assert exp.tracker.list_artifacts(run.id, prefix="log") == ["log/train.txt"]
    exp.close()


def test_images_figures_and_tables_are_typed_pngs_and_json(path):
    Image = pytest.importorskip("PIL.Image")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    gray = rng.random((9, 5))
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.plot([0, 1, 2], [2, 1, 3])
    exp = Experiment("e", path)
    with exp.start_run() as run:
        run.log_image("rgb.png", rgb)
        run.log_image("gray.png", gray)
        run.log_image("pil.png", Image.fromarray(rgb))
        run.log_image("chw.png", np.transpose(rgb, (2, 0, 1)))
        run.log_figure("curve.png", fig)
        run.log_image("fig_as_image.png", fig)
        run.log_table("preds.json", ["id", "label"], [[1, "cat"], [2, "dog"]])
    plt.close(fig)
    tr = exp.tracker
    for name in ("rgb.png", "pil.png", "chw.png"):
        raw = tr.get_artifact(run.id, name)
        with Image.open(io.BytesIO(raw)) as img:
            np.testing.assert_array_equal(np.asarray(img), rgb)
        assert tr.artifact_info(run.id, name)["mime"] == "image/png"
    np.testing.assert_array_equal(tr.load_artifact(run.id, "gray.png"),
                                  (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8))
    curve = tr.load_artifact(run.id, "curve.png")
    assert curve.shape[:2] == (100, 100)
    assert tr.artifact_info(run.id, "curve.png")["type"] == "figure"
    assert tr.artifact_info(run.id, "preds.json")["type"] == "table"
    assert tr.load_artifact(run.id, "preds.json") == {"columns": ["id", "label"],
                                                      "data": [[1, "cat"], [2, "dog"]]}
    assert exp.get_run(run.id).artifacts["rgb.png"] == "image"
    exp.close()


def test_png_encoder_round_trips_through_our_own_decoder():
    from synadb.tracking_media import png_decode_plain

    rng = np.random.default_rng(1)
    for shape in [(1, 1), (7, 3), (4, 5, 3), (6, 2, 4)]:
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(png_decode_plain(png_encode(arr)), arr)


# -- processes: crash, live reader, copies, two writers --------------------------

TRAINER = """
    import sys
    from synadb import ExperimentTracker
    tracker = ExperimentTracker(sys.argv[1])
    rid = tracker.start_run("live", tags=["t"])
    tracker.log_params(rid, {"lr": 0.1})
    print(rid, flush=True)
    step = 0
    while True:
        tracker.log_metric(rid, "loss", float(step), step=step)
        if step % 100 == 0:
            tracker.log_text(rid, f"notes/{step // 100 % 5}.txt", str(step))
        if len(sys.argv) < 4:
            print(step, flush=True)  # the log call above has returned
        elif step == int(sys.argv[2]) // 2:  # quiet mode: pause mid-run until told
            print("half", flush=True)
            sys.stdin.readline()
        if step == int(sys.argv[2]):
            tracker.end_run(rid)
            print("done", flush=True)
            sys.stdin.readline()
        step += 1
"""


def test_killed_training_process_loses_no_logged_metric(path):
    proc = _child(TRAINER, path, -1)
    rid = proc.stdout.readline().strip()
    for line in proc.stdout:
        last = int(line)
        if last >= 3000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()
    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("live")
        assert run.id == rid and run.status == "Running" and run.params == {"lr": "0.1"}
        steps = [s for s, _ in tracker.get_metric(rid, "loss")]
        assert steps[: last + 1] == list(range(last + 1))
        assert tracker.get_artifact(rid, "notes/0.txt")
        assert tracker.db.verify().ok


def test_notebook_reads_runs_while_training_logs(path):
    ExperimentTracker(path).close()
    notebook = ExperimentTracker(path, read_only=True)
    assert notebook.list_runs() == []
    proc = _child(TRAINER, path, 20000, "quiet")
    rid = proc.stdout.readline().strip()
    # Mid-run, with the trainer paused: the notebook sees exactly what has
    # been logged so far, without reopening.
    assert proc.stdout.readline().strip() == "half"
    (run,) = notebook.list_runs("live")
    assert run.id == rid and run.status == "Running" and run.params == {"lr": "0.1"}
    np.testing.assert_array_equal(notebook.get_metric_tensor(rid, "loss"),
                                  np.arange(10001, dtype=np.float64))
    proc.stdin.write("\n")
    proc.stdin.flush()
    seen = 0
    deadline = time.monotonic() + 120
    while True:
        runs = notebook.list_runs("live")
        if runs and "loss" in runs[0].metric_names:  # the trainer prints rid before logging
            assert runs[0].id == rid
            values = notebook.get_metric_tensor(rid, "loss")
            assert len(values) >= seen  # a growing prefix, never torn
            np.testing.assert_array_equal(values, np.arange(len(values), dtype=np.float64))
            seen = len(values)
            if runs[0].status == "Completed" and seen == 20001:
                break
        assert time.monotonic() < deadline, f"saw {seen} values"
    # While the trainer waits on stdin (a newline lets it log on until killed).
    assert notebook.get_run(rid).metrics["loss"] == 20000.0
    proc.stdin.write("\n")
    proc.stdin.close()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    notebook.close()


def test_copy_taken_while_tracker_is_open_has_every_run(path, tmp_path):
    tracker = ExperimentTracker(path)
    exp = Experiment("shared", tracker=tracker)
    ids = []
    for i in range(3):
        with exp.start_run(params={"i": i}) as run:
            for step in range(50):
                run.log_metric("loss", 1 / (step + 1), step=step)
            run.log_artifact("w.bin", bytes([i]) * 100)
        ids.append(run.id)
    live = tracker.start_run("shared")
    tracker.log_metric(live, "loss", 0.5)
    copy = str(tmp_path / "copy.db")
    shutil.copy(path, copy)  # the tracker is still open, not even synced
    with ExperimentTracker(copy) as elsewhere:
        runs = elsewhere.list_runs("shared")
        assert [r.id for r in runs] == ids + [live]
        for i, rid in enumerate(ids):
            assert elsewhere.get_run(rid).params == {"i": str(i)}
            assert len(elsewhere.get_metric(rid, "loss")) == 50
            assert elsewhere.get_artifact(rid, "w.bin") == bytes([i]) * 100
        assert elsewhere.get_metric(live, "loss") == [(0, 0.5)]
    tracker.close()


LOGGER = """
    import sys
    from synadb import ExperimentTracker
    tracker = ExperimentTracker(sys.argv[1], config=None)
    for r in range(int(sys.argv[3])):
        rid = tracker.start_run("multi", name=f"{sys.argv[2]}-{r}")
        tracker.log_params(rid, {"who": sys.argv[2], "r": r})
        for step in range(300):
            tracker.log_metric(rid, "loss", float(step), step=step)
        tracker.end_run(rid)
    tracker.close()
    print("ok", flush=True)
"""


def test_two_processes_log_runs_into_one_file(path):
    procs = [_child(LOGGER, path, who, 5) for who in ("a", "b")]
    for proc in procs:
        assert proc.stdout.read().strip() == "ok"
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
    with ExperimentTracker(path) as tracker:
        runs = tracker.list_runs("multi")
        assert sorted(r.name for r in runs) == sorted(f"{w}-{r}" for w in "ab" for r in range(5))
        for run in runs:
            assert run.status == "Completed" and run.params["who"] == run.name[0]
            assert tracker.get_metric_tensor(run.id, "loss").tolist() == list(map(float,
                                                                                 range(300)))


def test_tracker_follows_compaction_by_another_handle(path):
    a = ExperimentTracker(path)
    rid = a.start_run("e", params={"x": 1})
    for step in range(100):
        a.log_metric(rid, "loss", float(step))
    b = ExperimentTracker(path)
    gone = b.start_run("e")
    b.delete_run(gone)
    b.db.compact()
    assert [r.id for r in a.list_runs("e")] == [rid]
    a.log_metric(rid, "loss", 100.0)  # writes into the new file
    assert b.get_metric_tensor(rid, "loss").tolist() == list(map(float, range(101)))
    a.close()
    b.close()


def test_many_runs_list_and_query_from_the_catalog(path):
    with ExperimentTracker(path) as tracker:
        with tracker.db.batch():
            for i in range(2000):
                rid = tracker.start_run("big" if i % 2 else "small", params={"i": i})
                tracker.log_metric(rid, "acc", i / 2000)
                tracker.end_run(rid)
    with ExperimentTracker(path, read_only=True) as tracker:
        assert len(tracker.list_runs("big")) == 1000
        assert len(tracker.list_runs()) == 2000
        best = tracker.query("big", sort_by="acc", ascending=False, limit=3)
        assert [r.params["i"] for r in best] == ["1999", "1997", "1995"]
        hits = tracker.query(filter={"metrics": {"acc": (">=", 0.999)}})
        assert sorted(r.params["i"] for r in hits) == ["1998", "1999"]


def test_sweep_grid_random_and_tagged_runs(path):
    grid = {"lr": [0.1, 0.01], "bs": [16, 32, 64], "opt": "adam"}
    configs = list(synadb.sweep(grid=grid, method="grid"))
    assert len(configs) == 6 and {c["opt"] for c in configs} == {"adam"}
    assert {(c["lr"], c["bs"]) for c in configs} == {(a, b) for a in (0.1, 0.01)
                                                      for b in (16, 32, 64)}
    a = [dict(c) for c in synadb.sweep(grid=grid, method="random", n=4, seed=3)]
    b = [dict(c) for c in synadb.sweep(grid=grid, method="random", n=4, seed=3)]
    assert a == b and len({tuple(sorted(c.items())) for c in a}) == 4
    with pytest.raises(synadb.InvalidArgument):
        list(synadb.sweep(grid=grid, method="bayes"))
    with Experiment("sweep", path) as exp:
        for run, cfg in synadb.sweep(grid=grid, method="random", n=3, seed=0, experiment=exp):
            with run:
                run.log_metric("accuracy", 1 - cfg["lr"] + cfg["bs"] / 1000)
        runs = exp.list_runs()
        assert len(runs) == 3 and all("sweep" in r.tags for r in runs)
        assert len({r.tag_values["sweep"] for r in runs}) == 1
        best = exp.get_best_run("accuracy", minimize=False)
        assert best.metrics["accuracy"] == max(r.metrics["accuracy"] for r in runs)
        assert best.params["lr"] in ("0.1", "0.01")


def test_read_only_experiment_handle_on_an_existing_file(path):
    exp = Experiment("e", path)
    with exp.start_run() as run:
        run.log_metrics({"a": 1.0, "b": 2.0, "c": 3.0}, step=0)  # three new names, one change
    assert exp.tracker.db._history_len("trk/changes") == 4  # experiment, run, names, end
    exp.close()
    with Experiment("e", path, read_only=True) as ro:
        assert [r.id for r in ro.list_runs()] == [run.id]
        assert ro.get_run(run.id).metrics == {"a": 1.0, "b": 2.0, "c": 3.0}
        with pytest.raises(synadb.ReadOnlyError):
            ro.start_run()


def test_catalog_snapshot_plus_later_changes_reopen_exactly(path):
    tracker = ExperimentTracker(path)
    ids = [tracker.start_run("a" if i % 3 else "b", params={"i": i}) for i in range(100)]
    tracker.log_metric(ids[0], "loss", 0.5)
    tracker.close()  # enough changed: close writes the snapshot
    assert ExperimentTracker(path, read_only=True).db.exists("trk/catalog")
    other = ExperimentTracker(path)  # changes the snapshot does not cover
    other.end_run(ids[5], "failed", error="boom")
    other.delete_run(ids[7])
    late = other.start_run("a", params={"i": "late"})
    other.log_param(ids[1], "extra", 1)
    other.db.sync()
    fresh = ExperimentTracker(path, read_only=True)
    runs = fresh.list_runs()
    assert [r.id for r in runs] == [i for i in ids if i != ids[7]] + [late]  # order kept
    assert [r.id for r in fresh.list_runs("b")] == [i for n, i in enumerate(ids) if n % 3 == 0]
    got = {r.id: r for r in runs}
    assert got[ids[5]].status == "Failed" and got[ids[5]].error == "boom"
    assert got[ids[1]].params == {"i": "1", "extra": "1"}
    assert got[ids[0]].metrics == {"loss": 0.5} and got[ids[42]].params == {"i": "42"}
    assert got[ids[43]].experiment == "a" and got[ids[42]].experiment == "b"
    assert got[ids[42]].status == "Running"
    # Compaction changes the salt: the snapshot is ignored, the catalog rebuilt.
    other.db.compact()
    again = ExperimentTracker(path, read_only=True)
    assert [r.id for r in again.list_runs()] == [r.id for r in runs]
    assert again.get_run(ids[5]).status == "Failed"
    for t in (fresh, again, other):
        t.close()


def test_get_run_follows_changes_made_by_another_handle(path):
    # A notebook holding its own handle polls a run that training ends.
    training, notebook = ExperimentTracker(path), ExperimentTracker(path)
    rid = training.start_run("mnist")
    assert notebook.get_run(rid).status == "Running"
    training.log_param(rid, "lr", "0.1")
    training.log_artifact(rid, "cfg.json", {"a": 1})
    training.end_run(rid, "Completed")
    run = notebook.get_run(rid)
    assert run.status == "Completed" and run.params == {"lr": "0.1"}
    assert notebook.list_artifacts(rid) == ["cfg.json"]
    assert notebook.load_artifact(rid, "cfg.json") == {"a": 1}
    training.close()
    notebook.close()


def test_bad_value_or_step_of_a_new_metric_changes_nothing(path):
    tracker = ExperimentTracker(path)
    rid = tracker.start_run("e")
    tracker.log_metric(rid, "loss", 1.0)
    tracker.sync()
    end = tracker.db._log_end()
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metric(rid, "acc", "high")            # a new metric, bad value
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metric(rid, "acc", 0.5, step="x")     # a new metric, bad step
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metric(rid, "loss", 0.5, step=2**80)  # would read back as garbage
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metric(rid, "\U0001F600" * 250, 0.5)  # 1000 UTF-8 bytes: too long a key
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metrics(rid, {"loss": 0.5, "acc": None})   # none of them is logged
    with pytest.raises(synadb.DimensionMismatch):
        tracker.log_metric_batch(rid, "batch", [1.0, 2.0], steps=[1])
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_metric_batch(rid, "batch", ["a"])
    with pytest.raises(synadb.InvalidArgument):
        tracker.log_dict(rid, None, {})
    with pytest.raises(synadb.InvalidArgument):
        tracker.get_run(["not", "a", "str"])
    assert tracker.db._log_end() == end
    assert tracker.get_run(rid).metric_names == ["loss"]
    assert tracker.get_metric(rid, "loss") == [(0, 1.0)]
    tracker.log_metric(rid, "loss", 0.5, step=np.float64(7.0))
    tracker.log_metrics(rid, {"loss": 0.25, "acc": 0.9}, step=np.int64(2**53))
    assert tracker.get_metric(rid, "loss") == [(0, 1.0), (7, 0.5), (2**53, 0.25)]
    tracker.close()


def test_query_refuses_an_mlflow_filter_string_with_a_syna_error(path):
    exp = Experiment("q", path)
    with exp.start_run(tags=["a"]) as run:
        run.log_param("lr", 0.01)
    with pytest.raises(synadb.InvalidArgument, match="filter must be a dict"):
        exp.query(filter="params.lr = '0.01'")
    with pytest.raises(synadb.InvalidArgument, match="sort_by"):
        exp.query(sort_by=5)
    with pytest.raises(synadb.InvalidArgument, match="tags"):
        exp.query(filter={"tags": 5})
    assert [r.id for r in exp.query(filter={"lr": 0.01, "tags": "a"})] == [run.id]
    exp.close()


def test_sweep_takes_numpy_arrays_sets_and_ranges_as_candidates():
    grid = {"lr": np.logspace(-3, -1, 3), "bs": range(2), "opt": {"name": "adam"}}
    configs = list(synadb.sweep(grid))
    assert len(configs) == 6
    assert sorted({c["lr"] for c in configs}) == pytest.approx([0.001, 0.01, 0.1])
    assert all(type(c["lr"]) is float for c in configs)  # logged as "0.01", not an array
    assert {c["bs"] for c in configs} == {0, 1} and configs[0]["opt"] == {"name": "adam"}
    assert len(list(synadb.sweep({"a": {1, 2}, "b": np.float64(0.5)}))) == 2


def test_random_sweep_over_a_huge_grid_draws_without_listing_it():
    grid = {f"p{i}": list(range(10)) for i in range(12)}  # 10**12 combinations
    configs = [dict(c) for c in synadb.sweep(grid, method="random", n=5, seed=1)]
    assert len(configs) == 5 and len({tuple(c.values()) for c in configs}) == 5
    assert configs == [dict(c) for c in synadb.sweep(grid, method="random", n=5, seed=1)]
    assert all(set(c) == set(grid) and all(0 <= v < 10 for v in c.values()) for c in configs)


def test_unknown_filter_operator_is_an_error(path):
    with ExperimentTracker(path) as tracker:
        rid = tracker.start_run("e")
        tracker.log_metric(rid, "acc", 0.9)
        assert [r.id for r in tracker.query(filter={"metrics": {"acc": (">", 0.5)}})] == [rid]
        with pytest.raises(synadb.InvalidArgument, match="operator"):
            tracker.query(filter={"metrics": {"acc": ("~", 0.5)}})


# -- bad input: SynaErrors, and the file unchanged ------------------------------

def _deep(levels=3000, leaf=1):
    top = d = {}
    for _ in range(levels - 1):
        d["a"] = {}
        d = d["a"]
    d["a"] = leaf
    return top


def _deep_list(levels=3000):
    top = cur = []
    for _ in range(levels):
        nxt = []
        cur.append(nxt)
        cur = nxt
    return top


def _unchanged(path, tracker, calls, error=synadb.InvalidArgument):
    tracker.sync()
    before = Path(path).read_bytes()
    for call in calls:
        with pytest.raises(error):
            call()
    tracker.sync()
    assert Path(path).read_bytes() == before


def test_deeply_nested_or_cyclic_params_are_refused_and_change_nothing(path):
    cyclic = {"lr": 0.1}
    cyclic["self"] = cyclic
    with ExperimentTracker(path) as t:
        rid = t.start_run("e")
        run = t.get_run(rid)
        _unchanged(path, t, [
            lambda: t.log_params(rid, _deep()),
            lambda: t.log_param(rid, "p", _deep()),
            lambda: run.log_params({"net": _deep()}),
            lambda: t.log_dict(rid, "config.json", _deep()),
            lambda: t.log_dict(rid, "config.yaml", _deep()),
            lambda: t.log_artifact(rid, "config.json", _deep()),
            lambda: t.start_run("e", params=_deep()),
            lambda: t.log_params(rid, cyclic),
            lambda: t.log_dict(rid, "cyclic.json", cyclic),
            lambda: t.log_param(rid, "p", _deep_list()),
            lambda: t.set_tag(rid, "t", _deep_list()),
            lambda: t.log_table(rid, "t.json", ["a"], [[_deep_list()]]),
        ])
        # A reasonable nesting still flattens as before.
        assert t.log_params(rid, _deep(5, "x")) == {"a.a.a.a.a": "x"}


def test_wrong_typed_arguments_are_syna_errors_and_change_nothing(path, tmp_path):
    with ExperimentTracker(path) as t:
        rid = t.start_run("e", tags=["base"])
        t.log_metric(rid, "loss", 1.0)
        t.log_artifact(rid, "notes.txt", "hi")
        _unchanged(path, t, [
            lambda: t.log_metric(rid, ["loss"], 1.0),
            lambda: t.log_metric([rid], "loss", 1.0),
            lambda: t.log_metric(rid, "loss", 1.0, timestamp="now"),
            lambda: t.log_metrics(rid, [("loss", 1.0)]),
            lambda: t.log_metrics([rid], {"loss": 1.0}),
            lambda: t.start_run("e", tag_values=[("k", "v")]),
            lambda: t.start_run("e", params=[("lr", 1)]),
            lambda: t.start_run("e", start_time="yesterday"),
            lambda: t.start_run("e", tags=5),
            lambda: t.start_run("e", name=5),
            lambda: t.end_run(rid, end_time="later"),
            lambda: t.list_runs(["e"]),
            lambda: t.run_ids(["e"]),
            lambda: t.experiment_info(["e"]),
            lambda: t.create_experiment("x", tags=[("k", "v")]),
            lambda: t.get_artifact(rid, ["notes.txt"]),
            lambda: t.artifact_info(rid, ["notes.txt"]),
            lambda: t.delete_artifact(rid, ["notes.txt"]),
            lambda: t.list_artifacts(rid, prefix=5),
            lambda: t.delete_tag(rid, ["k"]),
            lambda: t.add_tags(rid, 5),
            lambda: t.query(limit="3"),
            lambda: t.query(filter={"params": ["lr"]}),
            lambda: t.query(filter={"metrics": {"loss": ("$in", 5)}}),
            lambda: t.compare_runs(5),
            lambda: t.get_best_run("e", ["loss"]),
            lambda: t.log_table(rid, "t.json", 5, []),
            lambda: t.log_table(rid, "t.json", ["a"], [5]),
            lambda: t.log_figure(rid, 5, object()),
            lambda: t.log_dict(rid, "k.json", {(1, 2): "tuple keys"}),
            lambda: t.log_artifact(rid, "f.bin", tmp_path / "no-such-file"),
            lambda: t.get_run(5),
            lambda: t.delete_run(5),
        ], error=synadb.SynaError)
        # Where Python would raise TypeError, so do we (and InvalidArgument too).
        with pytest.raises(TypeError):
            t.log_metric(rid, ["loss"], 1.0)
        with pytest.raises(synadb.InvalidType):
            t.log_params(rid, [("lr", 1)])


def test_verify_reports_the_engine_and_the_tracker(path):
    with Experiment("mnist", path) as exp:
        with exp.start_run() as run:
            run.log_metric("loss", 0.5)
        report = exp.verify()
        assert report.ok and report.engine.ok and report.problems == []
        assert isinstance(report.engine, synadb.VerifyReport)
        assert "OK" in str(report)
