"""Every tracking front door writes one file, and every reader reads it all.

A W&B-style script, a Lightning fit, a Keras fit and an HF Trainer run log
into the same synadb file; the runs then read back through ``wandb.Api()``,
the tracker, the MLflow-style shim and Studio's JSON API.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

L = pytest.importorskip("lightning")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
transformers = pytest.importorskip("transformers")
pytest.importorskip("starlette")

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:The number of training batches:UserWarning"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

import synadb  # noqa: E402
import synadb.integrations.wandb as wandb  # noqa: E402
from synadb import ExperimentTracker  # noqa: E402
from synadb.integrations.keras import SynaKerasCallback  # noqa: E402
from synadb.integrations.lightning import SynaLogger  # noqa: E402
from synadb.integrations.transformers import SynaCallback  # noqa: E402


class Regressor(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(n)
        self.ids = torch.randint(1, 24, (n, 8), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": int(self.ids[i, 0] % 2)}


def log_everywhere(path, tmp_path):
    # 1. A W&B script (its file: dir/synadb-runs.db).
    with wandb.init(project="wb", config={"lr": 0.1}, dir=str(tmp_path)) as run:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1)})
    # 2. Lightning.
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)),
                                       batch_size=4)
    L.Trainer(max_epochs=1, logger=SynaLogger(path, experiment="lightning"), accelerator="cpu",
              devices=1, log_every_n_steps=1, enable_progress_bar=False,
              enable_model_summary=False, enable_checkpointing=False,
              default_root_dir=str(tmp_path)).fit(Regressor(), data)
    # 3. Keras.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    xs = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    model.fit(xs, xs.sum(1), epochs=2, verbose=0,
              callbacks=[SynaKerasCallback(path, experiment="keras", log_model=False)])
    # 4. The HF Trainer, on a tiny model built from a config.
    config = transformers.BertConfig(vocab_size=24, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=2,
                                          per_device_train_batch_size=4, logging_steps=1,
                                          save_strategy="no", report_to="none", use_cpu=True,
                                          disable_tqdm=True)
    transformers.Trainer(model=transformers.BertForSequenceClassification(config), args=args,
                         train_dataset=Tokens(8),
                         callbacks=[SynaCallback(path, experiment="hf", log_model=False)]).train()


def test_every_front_door_reads_back_everywhere(tmp_path, shim):
    path = str(tmp_path / "synadb-runs.db")
    log_everywhere(path, tmp_path)
    wandb.teardown()
    projects = {"wb": "loss", "lightning": "train_loss", "keras": "loss", "hf": "train/loss"}

    api = wandb.Api(file=path)
    for project, metric in projects.items():
        (run,) = api.runs(project)
        assert run.state == "finished", project
        assert metric in run.summary, (project, dict(run.summary))
        assert len(list(run.scan_history(keys=[metric]))) >= 1, project

    with ExperimentTracker(path) as tracker:
        for project, metric in projects.items():
            (run,) = tracker.list_runs(project)
            assert run.status == "Completed"
            assert tracker.get_metric(run.id, metric), project

    shim.set_tracking_uri(f"synadb://{path}")
    found = shim.search_runs(experiment_names=list(projects), output_format="list")
    assert len(found) == 4 and {r.info.status for r in found} == {"FINISHED"}
    assert {m for r in found for m in r.data.metrics} >= set(projects.values())

    with synadb.launch_studio(path, port=0) as studio:
        with urllib.request.urlopen(studio.url + "api/experiments", timeout=30) as resp:
            names = {e["name"] for e in json.load(resp)["experiments"]}
        assert names >= set(projects)
        for project, metric in projects.items():
            with urllib.request.urlopen(f"{studio.url}api/runs?experiment={project}",
                                        timeout=30) as resp:
                body = json.load(resp)
            assert metric in body["metrics"], (project, body["metrics"])
