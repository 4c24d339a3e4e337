"""A hyperparameter sweep as W&B's sweep guide runs one: config, sweep, agent."""

import synadb.integrations.wandb as wandb  # was: import wandb

sweep_configuration = {
    "method": "grid",
    "name": "lr-batch",
    "metric": {"goal": "maximize", "name": "val_acc"},
    "parameters": {
        "lr": {"values": [0.001, 0.01, 0.1]},
        "batch_size": {"values": [16, 64]},
        "epochs": {"value": 6},
    },
    "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
}


def objective(config):
    # Better accuracy for learning rates near 0.01 and small batches.
    return 1.0 - abs(config.lr - 0.01) * 5 - config.batch_size / 1000


def main():
    run = wandb.init(config={"lr": 0.5})  # the sweep's value wins
    score = objective(wandb.config)
    for epoch in range(wandb.config.epochs):
        wandb.log({"epoch": epoch, "val_acc": score * (epoch + 1) / wandb.config.epochs})
    run.finish()


sweep_id = wandb.sweep(sweep=sweep_configuration, project="sweep-demo")
wandb.agent(sweep_id, function=main, count=10)
