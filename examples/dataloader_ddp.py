"""Train a PyTorch model from a synadb.Dataset: one process, then DDP on 2 CPU processes.

    python examples/dataloader_ddp.py

1. writes a synthetic classification table (x: 16 floats, y: a class) with
   ``synadb.Dataset``;
2. trains a small MLP from it through ``SynaDataset`` -> ``SynaDataLoader``,
   logging each epoch to the experiment tracker;
3. trains it again with ``DistributedDataParallel`` on 2 CPU processes
   (gloo backend, ``torch.multiprocessing.spawn``): each rank reads its own
   shard of the same file (``create_distributed_loader``), and rank 0 alone
   logs to the tracker.

Needs ``synadb[torch]`` (install ``torch==2.13.0`` first for the CPU build).
Files go to ``./example-output/dataloader_ddp/`` (or ``$SYNADB_EXAMPLE_OUT``).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from synadb import Dataset, ExperimentTracker
from synadb.torch import SynaDataLoader, SynaDataset, create_distributed_loader

OUT = Path(os.environ.get("SYNADB_EXAMPLE_OUT", "example-output")).resolve() / "dataloader_ddp"
DATA = OUT / "data.db"            # the training table
RUNS = OUT / "experiments.db"     # the runs of both trainings
ROWS, DIMS, CLASSES = 4096, 16, 4
EPOCHS, BATCH, WORLD = 3, 128, 2


def write_data() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=0.5, size=(CLASSES, DIMS))  # overlapping classes
    y = rng.integers(0, CLASSES, size=ROWS)
    x = (centers[y] + rng.normal(size=(ROWS, DIMS))).astype(np.float32)
    with Dataset(DATA, "train") as ds:
        for lo in range(0, ROWS, 1024):  # appended in pieces, as a data pipeline would
            ds.append({"x": x[lo:lo + 1024], "y": y[lo:lo + 1024]})
        print(f"wrote {len(ds):,} rows (columns {ds.column_names}) to the dataset 'train'")


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIMS, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def dataset() -> SynaDataset:
    # Samples are (x, y) tuples read through a memory map; the file is never loaded whole.
    return SynaDataset(DATA, "train", columns=["x", "y"], as_tuple=True)


def train_epoch(model: nn.Module, loader, opt) -> tuple[float, float]:
    model.train()
    total = correct = seen = 0.0
    for x, y in loader:
        opt.zero_grad()
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        loss.backward()
        opt.step()
        total += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
    return total / seen, correct / seen


def single_process() -> str:
    ds = dataset()
    loader = SynaDataLoader(ds, batch_size=BATCH, shuffle=True, seed=0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with ExperimentTracker(RUNS) as tracker:
        run = tracker.start_run("dataloader-ddp", name="single-process",
                                params={"batch_size": BATCH, "epochs": EPOCHS, "world_size": 1})
        for epoch in range(EPOCHS):
            loss, acc = train_epoch(model, loader, opt)
            tracker.log_metrics(run, {"loss": loss, "accuracy": acc}, step=epoch)
            print(f"  single process  epoch {epoch}  loss {loss:.4f}  accuracy {acc:.3f}")
        tracker.end_run(run)
    ds.close()
    return run


def ddp_worker(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        ds = dataset()
        # Each rank reads a disjoint shard of the same file; the sampler's seed
        # must agree between ranks.
        loader, sampler = create_distributed_loader(ds, batch_size=BATCH // world, seed=0)
        model = nn.parallel.DistributedDataParallel(make_model())
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        tracker = run = None
        if rank == 0:  # one writer: rank 0 logs, the others only train
            tracker = ExperimentTracker(RUNS)
            run = tracker.start_run("dataloader-ddp", name=f"ddp-{world}-cpu",
                                    params={"batch_size": BATCH, "epochs": EPOCHS,
                                            "world_size": world, "backend": "gloo"})
        for epoch in range(EPOCHS):
            sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
            loss, acc = train_epoch(model, loader, opt)
            both = torch.tensor([loss, acc])
            dist.all_reduce(both)  # the mean over ranks, what rank 0 logs
            loss, acc = (both / world).tolist()
            if tracker is not None:
                tracker.log_metrics(run, {"loss": loss, "accuracy": acc}, step=epoch)
                print(f"  DDP ({world} ranks)  epoch {epoch}  loss {loss:.4f}  "
                      f"accuracy {acc:.3f}  ({len(sampler)} rows per rank)")
        if tracker is not None:
            tracker.end_run(run)
            tracker.close()
        ds.close()
        # Every rank done before any tears down: a rank that destroys the
        # group while another still uses its connections can abort
        # ("terminate called without an active exception") in gloo.
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # The work is done and saved: leave without the interpreter's teardown.
    # With gloo a thread torch keeps can still be joinable then, and now and
    # then the process aborts on the way out ("terminate called without an
    # active exception"), which mp.spawn reports as a failed rank.
    sys.stdout.flush()
    os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for f in (DATA, RUNS):
        f.unlink(missing_ok=True)  # a re-run starts afresh
    torch.set_num_threads(1)
    write_data()
    print("1. one process: SynaDataset -> SynaDataLoader")
    single_process()
    print(f"2. DistributedDataParallel, {WORLD} CPU processes (gloo)")
    mp.spawn(ddp_worker, args=(WORLD, free_port()), nprocs=WORLD, join=True)

    with ExperimentTracker(RUNS, read_only=True) as tracker:
        print("runs logged:")
        for r in tracker.list_runs("dataloader-ddp"):
            print(f"  {r.name:<16} {r.status.value:<10} world_size={r.params['world_size']}  "
                  f"final accuracy {r.metrics['accuracy']:.3f}")
    print("files:")
    print(f"  data: {DATA}")
    print(f"  runs: {RUNS}")
    print(f"next: synadb runs {RUNS}   or   synadb studio {RUNS}")


if __name__ == "__main__":
    main()
