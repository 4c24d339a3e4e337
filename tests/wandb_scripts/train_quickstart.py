"""A training loop as W&B's quick start writes one: config, log, finish.

Runs unchanged under the real wandb with the import line swapped back to
``import wandb``."""

import math
import random

import synadb.integrations.wandb as wandb  # was: import wandb

random.seed(7)

for lr in (0.1, 0.01, 0.001):
    # Start a run per learning rate; config is what the run was trained with.
    run = wandb.init(
        project="quickstart",
        name=f"cnn-lr{lr}",
        tags=["baseline", "cnn"],
        group="lr-scan",
        job_type="train",
        notes="W&B quick start style",
        config={
            "learning_rate": lr,
            "architecture": "CNN",
            "dataset": "CIFAR-10",
            "epochs": 8,
            "optimizer": {"name": "adam", "beta1": 0.9},
        },
    )
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch")
    run.define_metric("val/loss", step_metric="epoch", summary="min")

    offset = random.random() / 10
    for epoch in range(wandb.config.epochs):
        for batch in range(4):
            loss = math.exp(-lr * 10 * (epoch + batch / 4)) + offset
            wandb.log({"train": {"loss": loss, "lr": wandb.config.learning_rate}})
        val_loss = math.exp(-lr * 10 * (epoch + 1)) + offset + 0.05
        acc = 1.0 - val_loss / 2
        wandb.log({"epoch": epoch, "val/loss": val_loss, "val/acc": acc})

    run.summary["best_val_acc"] = 1.0 - run.summary["val/loss"]["min"] / 2
    if lr == 0.1:
        wandb.alert(title="fast", text=f"lr {lr} converged", level=wandb.AlertLevel.INFO)
    run.finish()
