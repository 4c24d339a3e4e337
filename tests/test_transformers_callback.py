"""SynaCallback: the Hugging Face Trainer logs runs into a synadb file.

A real ``Trainer`` trains a tiny randomly initialised BERT classifier built
from a config (no download, input ids made by hand) for a few steps on CPU,
with ``report_to="none"`` and our callback; the run is read back through the
tracker, the registry and the MLflow-style shim.
"""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it

from synadb import Experiment, ExperimentTracker, ModelRegistry  # noqa: E402
from synadb.integrations.transformers import SynaCallback, extract_model, load_model  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Hand-made input ids; the label is whether token 7 occurs."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 20, (n, 8), generator=g)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long),
                "labels": self.labels[i]}


def _model():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=24, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def _trainer(tmp_path, callback, model=None, max_steps=6, **kwargs):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=4,
        per_device_eval_batch_size=8, learning_rate=1e-3, logging_steps=1, eval_strategy="steps",
        eval_steps=3, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        seed=0, **kwargs)
    return transformers.Trainer(model=model or _model(), args=args,
                                train_dataset=Tokens(32, 0), eval_dataset=Tokens(16, 1),
                                callbacks=[callback])


def test_train_logs_args_config_metrics_and_the_model(tmp_path, shim):
    path = str(tmp_path / "runs.db")
    callback = SynaCallback(path, experiment="tiny-bert", tags=["hf"],
                            registered_model_name="tiny-bert")
    trainer = _trainer(tmp_path, callback, run_name="bert-run")
    trainer.train()
    run_id = callback.run_id

    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("tiny-bert")
        assert run.id == run_id and run.name == "bert-run" and run.tags == ["hf"]
        assert run.status == "Completed"
        # TrainingArguments, the model config and the parameter count.
        assert run.params["learning_rate"] == "0.001" and run.params["max_steps"] == "6"
        assert run.params["per_device_train_batch_size"] == "4"
        assert run.params["config.hidden_size"] == "16"
        assert run.params["config.model_type"] == "bert"
        assert run.params["model.num_parameters"] == str(trainer.model.num_parameters())
        assert tracker.load_artifact(run_id, "model_config.json")["hidden_size"] == 16
        # Metrics as HF names them for W&B: train/..., eval/..., at the global step.
        assert [s for s, _ in tracker.get_metric(run_id, "train/loss")] == [1, 2, 3, 4, 5, 6]
        assert [s for s, _ in tracker.get_metric(run_id, "eval/loss")] == [3, 6]
        history = [h for h in trainer.state.log_history if "loss" in h]
        assert [v for _, v in tracker.get_metric(run_id, "train/loss")] == pytest.approx(
            [h["loss"] for h in history])
        assert tracker.get_metric(run_id, "train_runtime")[0][0] == 6
        assert "train/learning_rate" in run.metric_names

    # The final model: a registry version that loads back with the same weights.
    with ModelRegistry(path) as registry:
        (v,) = registry.list_versions("tiny-bert")
        assert v.metadata["run_id"] == run_id and v.metadata["global_step"] == 6
        assert v.metadata["architectures"] == ["BertForSequenceClassification"]
    assert callback.model_version.version == v.version
    back = load_model(path, "tiny-bert")
    assert type(back) is transformers.BertForSequenceClassification
    trained = trainer.model.state_dict()
    assert all(torch.equal(t, trained[k]) for k, t in back.state_dict().items())
    files = tmp_path / "unpacked"
    extract_model(path, "tiny-bert", files)
    assert (files / "config.json").is_file() and (files / "model.safetensors").is_file()

    shim.set_tracking_uri(path)
    (mrun,) = shim.search_runs(experiment_names=["tiny-bert"], output_format="list")
    assert mrun.info.run_id == run_id and mrun.info.status == "FINISHED"
    assert mrun.data.params["config.hidden_size"] == "16"
    assert mrun.data.metrics["eval/loss"] == pytest.approx(
        tracker_last(path, run_id, "eval/loss"))


def tracker_last(path, run_id, key):
    with ExperimentTracker(path) as tracker:
        return tracker.get_metric(run_id, key)[-1][1]


def test_a_crash_in_train_ends_the_run_failed(tmp_path):
    path = str(tmp_path / "runs.db")

    class Crash(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("nan loss")

    with pytest.raises(RuntimeError, match="nan loss"):
        with SynaCallback(path, experiment="tiny-bert", log_model=False) as callback:
            trainer = _trainer(tmp_path, callback)
            trainer.add_callback(Crash())
            trainer.train()
    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("tiny-bert")
        assert run.status == "Failed" and "nan loss" in run.error
        assert [s for s, _ in tracker.get_metric(run.id, "train/loss")] == [1]


def test_logs_into_an_existing_synadb_run(tmp_path):
    path = str(tmp_path / "runs.db")
    with Experiment("objects", path) as exp:
        with exp.start_run(name="mine") as run:
            callback = SynaCallback(path, run=run, log_model=False)
            _trainer(tmp_path, callback, max_steps=3).train()
            assert exp.get_run(run.id).status == "Running"  # the caller's to end
        got = exp.get_run(run.id)
        assert got.status == "Completed" and got.params["max_steps"] == "3"
        assert len(got.get_metric("train/loss")) == 3


def test_a_run_alone_cannot_store_the_model(tmp_path):
    from synadb import InvalidArgument

    with Experiment("objects", str(tmp_path / "runs.db")) as exp, exp.start_run() as run:
        with pytest.raises(InvalidArgument, match="log_model"):
            SynaCallback(run=run)
        assert SynaCallback(run=run, log_model=False).run_id == run.id


def test_logs_into_a_run_of_the_mlflow_shim(tmp_path, shim):
    path = str(tmp_path / "runs.db")
    shim.set_tracking_uri(f"synadb://{path}")
    shim.set_experiment("via-mlflow")
    with shim.start_run(run_name="hf") as active:
        callback = SynaCallback(run=active, registered_model_name="hf-model")
        _trainer(tmp_path, callback, max_steps=3).train()
    got = shim.get_run(active.info.run_id)
    assert got.info.status == "FINISHED" and got.data.params["max_steps"] == "3"
    assert "train/loss" in got.data.metrics
    with ModelRegistry(path) as registry:
        (v,) = registry.list_versions("hf-model")
        assert v.metadata["run_id"] == active.info.run_id


def test_without_transformers_the_import_names_the_extra():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; sys.modules['transformers'] = None\n"
            "import synadb\n"
            "try:\n    import synadb.integrations.transformers\n"
            "except synadb.MissingDependency as e:\n"
            "    print('extra', e.extra, 'pip install' in str(e))\n")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": root})
    assert out.stdout.split() == ["extra", "transformers", "True"]
