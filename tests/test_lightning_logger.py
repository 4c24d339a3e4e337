"""SynaLogger: Lightning's Trainer logs runs into a synadb file.

Each test runs a real ``Trainer.fit`` on CPU (a 4 -> 1 linear model, a few
batches), then reads the run back through the tracker, the model registry
and the MLflow-style shim.
"""

import json
import os
import subprocess
import sys
import textwrap
from argparse import Namespace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

from synadb import Experiment, ExperimentTracker, ModelRegistry, SynaDB  # noqa: E402
from synadb.integrations.lightning import SynaLogger  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])

# Lightning's advice for a tiny CPU fit: more DataLoader workers, and a
# log_every_n_steps larger than the few batches of an epoch.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:The number of training batches:UserWarning"),
    # Lightning 2.6 on torch 2.13 still builds torch's deprecated LeafSpec.
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"),
]


class Tiny(L.LightningModule):
    def __init__(self, lr=0.05, opt=None, args=None):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Validated(Tiny):
    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))


def _loader(n=32, batch_size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                       batch_size=batch_size)


def _trainer(tmp_path, logger, epochs=2, **kwargs):
    return L.Trainer(max_epochs=epochs, logger=logger, accelerator="cpu", devices=1,
                     log_every_n_steps=1, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(tmp_path), **kwargs)


def test_fit_logs_params_metrics_checkpoints_and_status(tmp_path, shim):
    path = str(tmp_path / "runs.db")
    logger = SynaLogger(path, experiment="tiny", run_name="first", tags=["baseline"],
                        log_checkpoints=True)
    ckpt = L.callbacks.ModelCheckpoint(monitor="val_loss", save_last=True)
    model = Validated(lr=0.05, opt={"name": "sgd", "betas": {"b1": 0.9}},
                      args=Namespace(depth=2))
    trainer = _trainer(tmp_path, logger, callbacks=[ckpt])
    trainer.fit(model, _loader(), _loader(seed=1))
    run_id = logger.version

    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("tiny")
        assert run.id == run_id and run.name == "first" and run.tags == ["baseline"]
        assert run.status == "Completed" and run.end_time is not None
        # Hyperparameters, nested dicts and Namespaces flattened to dotted names.
        assert run.params["lr"] == "0.05"
        assert run.params["opt.name"] == "sgd" and run.params["opt.betas.b1"] == "0.9"
        assert run.params["args.depth"] == "2"
        # 4 batches x 2 epochs, every step logged at Lightning's step.
        steps = [s for s, _ in tracker.get_metric(run_id, "train_loss")]
        assert steps == list(range(8))
        val = tracker.get_metric(run_id, "val_loss")
        assert [s for s, _ in val] == [3, 7]
        assert abs(val[-1][1] - trainer.callback_metrics["val_loss"].item()) < 1e-6
        assert [v for _, v in tracker.get_metric(run_id, "epoch")][-1] == 1.0

    # Checkpoints under <dir>/<experiment>/<run id>/checkpoints, as versions.
    assert Path(ckpt.best_model_path).parent == tmp_path / "tiny" / run_id / "checkpoints"
    with ModelRegistry(path) as registry:
        versions = registry.list_versions("tiny")
        assert versions and all(v.metadata["run_id"] == run_id for v in versions)
        kinds = [v.metadata["kind"] for v in versions]
        assert "last" in kinds and any("best" in k for k in kinds)
        best = [v for v in versions if "best" in v.metadata["kind"]][-1]
        assert best.metadata["monitor"] == "val_loss"
        assert best.metadata["score"] == pytest.approx(ckpt.best_model_score.item())
        data, _ = registry.load_model("tiny", best.version)
        assert data == Path(ckpt.best_model_path).read_bytes()
        last = [v for v in versions if "last" in v.metadata["kind"]][-1]
        state = torch.load(Path(ckpt.last_model_path), weights_only=False)
        assert registry.load_model("tiny", last.version)[0] == Path(
            ckpt.last_model_path).read_bytes()
        assert state["global_step"] == 8

    # The same run through the MLflow-style shim.
    shim.set_tracking_uri(path)
    (mrun,) = shim.search_runs(experiment_names=["tiny"], output_format="list")
    assert mrun.info.run_id == run_id and mrun.info.status == "FINISHED"
    assert mrun.data.params["opt.name"] == "sgd"
    assert mrun.data.metrics["val_loss"] == pytest.approx(val[-1][1])


def test_fit_then_test_logs_into_one_run(tmp_path):
    path = str(tmp_path / "runs.db")
    logger = SynaLogger(path, experiment="tiny")

    class WithTest(Tiny):
        def test_step(self, batch, batch_idx):
            self.log("test_loss", self._loss(batch))

    model = WithTest()
    trainer = _trainer(tmp_path, logger, epochs=1, enable_checkpointing=False)
    trainer.fit(model, _loader())
    trainer.test(model, _loader(seed=2), verbose=False)
    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("tiny")
        assert run.status == "Completed"
        assert set(run.metric_names) >= {"train_loss", "test_loss"}


def test_failed_fit_marks_the_run_failed(tmp_path):
    path = str(tmp_path / "runs.db")

    class Boom(Tiny):
        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("diverged")
            return super().training_step(batch, batch_idx)

    logger = SynaLogger(path, experiment="tiny")
    with pytest.raises(RuntimeError, match="diverged"):
        _trainer(tmp_path, logger, enable_checkpointing=False).fit(Boom(), _loader())
    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("tiny")
        assert run.status == "Failed"
        assert [s for s, _ in tracker.get_metric(run.id, "train_loss")] == [0, 1]


def test_logs_into_an_existing_synadb_run(tmp_path):
    path = str(tmp_path / "runs.db")
    with Experiment("objects", path) as exp:
        with exp.start_run(name="mine") as run:
            run.log_param("dataset", "toy")
            logger = SynaLogger(path, run=run, log_checkpoints=True,
                                registered_model_name="tiny-model")
            assert logger.name == "objects" and logger.version == run.id
            _trainer(tmp_path, logger, epochs=1).fit(Tiny(), _loader())
            # The caller's run: finalize leaves it to its with block.
            assert exp.get_run(run.id).status == "Running"
        got = exp.get_run(run.id)
        assert got.status == "Completed"
        assert got.params["dataset"] == "toy" and got.params["lr"] == "0.05"
        assert len(got.get_metric("train_loss")) == 4
    with ModelRegistry(path) as registry:
        (v,) = registry.list_versions("tiny-model")
        assert v.metadata["run_id"] == run.id


def test_logs_into_a_run_of_the_mlflow_shim(tmp_path, shim):
    path = str(tmp_path / "runs.db")
    shim.set_tracking_uri(f"synadb://{path}")
    shim.set_experiment("via-mlflow")
    with shim.start_run(run_name="shim-run") as active:
        shim.log_param("framework", "lightning")
        logger = SynaLogger(run=active)
        assert logger.name == "via-mlflow" and logger.save_dir == str(tmp_path)
        _trainer(tmp_path, logger, epochs=1, enable_checkpointing=False).fit(Tiny(), _loader())
    got = shim.get_run(active.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "shim-run"
    assert got.data.params == {"framework": "lightning", "lr": "0.05", "opt": "None",
                               "args": "None"}
    assert "train_loss" in got.data.metrics
    with ExperimentTracker(path) as tracker:
        assert [s for s, _ in tracker.get_metric(active.info.run_id, "train_loss")] == [0, 1, 2, 3]


def test_needs_a_file_or_a_run(tmp_path):
    from synadb import InvalidArgument, InvalidType

    with pytest.raises(InvalidArgument, match="path"):
        SynaLogger()
    with pytest.raises(InvalidType, match="run="):
        SynaLogger(run="not a run")
    # Checkpoints go to the registry of the run's file: a Run alone does not name it.
    with Experiment("objects", str(tmp_path / "runs.db")) as exp, exp.start_run() as run:
        with pytest.raises(InvalidArgument, match="log_checkpoints"):
            SynaLogger(run=run, log_checkpoints=True)
        assert SynaLogger(run=run).version == run.id


_DDP_SCRIPT = """
import json, os, sys
import torch
import lightning.pytorch as L
from synadb.integrations.lightning import SynaLogger

class Tiny(L.LightningModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

if __name__ == "__main__":
    torch.set_num_threads(1)
    path = sys.argv[1]
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)),
                                       batch_size=4)
    logger = SynaLogger(path, experiment="ddp", log_checkpoints=True)
    trainer = L.Trainer(max_epochs=2, strategy=sys.argv[2], accelerator="cpu", devices=2,
                        logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=os.path.dirname(path))
    trainer.fit(Tiny(), data)
    print("RESULT " + json.dumps({"rank": trainer.global_rank, "version": logger.version,
                                  "steps": trainer.global_step}), flush=True)
"""


# strategy="ddp_spawn" works too (its workers get a pickled logger, see
# test_a_pickled_logger_logs_into_the_same_run) but takes twice as long
# here (each worker imports torch and Lightning again): only "ddp" runs.
@pytest.mark.parametrize("strategy", ["ddp"])
def test_ddp_on_two_cpu_processes_rank_zero_writes(tmp_path, shim, strategy):
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    path = str(tmp_path / "runs.db")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("MASTER_PORT", None)
    out = subprocess.run([sys.executable, str(script), path, strategy], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    results = sorted((json.loads(line[7:]) for line in out.stdout.splitlines()
                      if line.startswith("RESULT ")), key=lambda r: r["rank"])
    if strategy == "ddp":
        # Rank 1 (a second run of the script) never opened the file.
        assert [r["rank"] for r in results] == [0, 1]
        assert results[1]["version"] is None and results[0]["steps"] == 8
    else:
        # Spawned workers got a pickled logger: the main process's names their run.
        assert [r["rank"] for r in results] == [0]
    run_id = results[0]["version"]
    steps = 8  # 32 rows / 2 ranks / batch 4 = 4 steps an epoch, 2 epochs

    with SynaDB(path, read_only=True) as db:
        assert db.verify().ok
    with ExperimentTracker(path) as tracker:
        assert tracker.verify().ok
        (run,) = tracker.list_runs("ddp")
        assert run.id == run_id and run.status == "Completed"
        assert run.params == {"lr": "0.05"}
        # Rank 0's steps, each once.
        assert [s for s, _ in tracker.get_metric(run_id, "train_loss")] == list(range(steps))
    with ModelRegistry(path) as registry:
        versions = registry.list_versions("ddp")
        assert versions and {v.metadata["run_id"] for v in versions} == {run_id}
        assert registry.verify().ok
    shim.set_tracking_uri(path)
    (mrun,) = shim.search_runs(experiment_names=["ddp"], output_format="list")
    assert mrun.info.run_id == run_id and mrun.info.status == "FINISHED"


def test_without_lightning_the_import_names_the_extra():
    code = ("import sys; sys.modules['lightning'] = None\n"
            "import synadb\n"
            "try:\n    import synadb.integrations.lightning\n"
            "except synadb.MissingDependency as e:\n"
            "    print('extra', e.extra, 'pip install' in str(e))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.split() == ["extra", "lightning", "True"]


def test_a_pickled_logger_logs_into_the_same_run(tmp_path):
    """ddp_spawn pickles the Trainer and its logger for the workers."""
    import pickle

    path = str(tmp_path / "runs.db")
    logger = SynaLogger(path, experiment="tiny")
    copy = pickle.loads(pickle.dumps(logger))  # before the run started: pickling starts it
    assert copy.version == logger.version is not None
    copy.log_hyperparams({"lr": 0.1})
    copy.log_metrics({"loss": 1.0}, step=0)
    copy.finalize("success")
    logger.finalize("success")
    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("tiny")
        assert run.status == "Completed" and run.params == {"lr": "0.1"}
        assert tracker.get_metric(run.id, "loss") == [(0, 1.0)]
