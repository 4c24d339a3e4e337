"""Dataset and model artifacts across runs, as W&B's artifact walkthrough does."""

import json
import os
import tempfile

import synadb.integrations.wandb as wandb  # was: import wandb

work = tempfile.mkdtemp()

# Run 1 logs a raw dataset (v0), then a cleaned one (v1) as "clean".
with wandb.init(project="pipeline", job_type="upload") as run:
    raw = os.path.join(work, "raw")
    os.makedirs(raw)
    for split in ("train", "test"):
        with open(os.path.join(raw, f"{split}.csv"), "w") as f:
            f.write("x,y\n" + "\n".join(f"{i},{i % 2}" for i in range(20)))
    data = wandb.Artifact("mnist-data", type="dataset", description="raw splits",
                          metadata={"rows": 40})
    data.add_dir(raw)
    run.log_artifact(data)

    cleaned = wandb.Artifact("mnist-data", type="dataset", metadata={"rows": 38})
    cleaned.add_dir(raw)
    with cleaned.new_file("README.txt") as f:
        f.write("two outliers dropped")
    run.log_artifact(cleaned, aliases=["clean"])

# Run 2 uses the clean data and logs a model.
with wandb.init(project="pipeline", job_type="train") as run:
    dataset = run.use_artifact("mnist-data:clean")
    root = dataset.download(os.path.join(work, "download"))
    with open(os.path.join(root, "train.csv")) as f:
        rows = sum(1 for _ in f) - 1
    model_path = os.path.join(work, "model.json")
    with open(model_path, "w") as f:
        json.dump({"weights": [0.1, 0.2], "trained_on": dataset.version, "rows": rows}, f)
    model = wandb.Artifact("classifier", type="model")
    model.add_file(model_path)
    run.log_artifact(model, aliases=["best"])
    run.log({"rows": rows})

# Run 3 picks the model by alias and by version.
with wandb.init(project="pipeline", job_type="eval") as run:
    model = run.use_artifact("classifier:best")
    path = model.file(os.path.join(work, "eval"))
    with open(path) as f:
        trained_on = json.load(f)["trained_on"]
    run.log({"eval_acc": 0.9})
    run.summary["trained_on"] = trained_on
    assert run.use_artifact("mnist-data:v0").version == "v0"
