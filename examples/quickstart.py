"""synadb quick start: one file, no server, no configuration.

Run with `make demo`.  It writes its files into ./demo-output/ (or the
folder in $SYNADB_DEMO_OUT), replacing what an earlier run left there, and
ends by saying what to try next on them.
"""

import os
import shutil

import numpy as np

from synadb import DbConfig, SynaDB

workdir = os.path.abspath(os.environ.get("SYNADB_DEMO_OUT", "demo-output"))
shutil.rmtree(workdir, ignore_errors=True)  # a fresh start each run
os.makedirs(workdir)
print("writing into", workdir)
path = os.path.join(workdir, "my_data.db")

# 1. Typed values with history (the original synadb quick start, as written).
with SynaDB(path) as db:
    db.put_float("temperature", 23.5); db.put_int("count", 42)
    db.put_text("name", "sensor-1"); db.put_bytes("raw_data", b"\x01\x02\x03")
    db.put_float("temperature", 24.1); db.put_float("temperature", 24.8)
    print("latest temperature:", db.get_float("temperature"))
    print("its history:       ", db.get_history_tensor("temperature"))
    db.delete("count"); print("keys:", db.keys()); db.compact(progress=False)

# 2. A training loop logging metrics, and a reader that sees them live.
with SynaDB(path) as db, SynaDB(path, read_only=True) as notebook:
    for step in range(1000):
        db.put_float("train/loss", 1.0 / (step + 1))
        db.put_float("train/acc", 1.0 - 1.0 / (step + 2))
        if step == 499:
            print("notebook sees, mid-run:", len(notebook.get_history_tensor("train/loss")),
                  "loss values")
    db.put_floats_batch("eval/loss", np.linspace(1.0, 0.1, 10))  # many values, one call
    print("metric keys:", db.keys("train/*"))
    print("final loss:", db.get_float("train/loss"))

# 3. All or nothing.
with SynaDB(path) as db:
    try:
        with db.batch():
            db.put_text("run/status", "half-written")
            raise RuntimeError("crash in the middle")
    except RuntimeError:
        pass
    print("status after the failed batch:", db.get_text("run/status"))

    # 4. Export for pandas, DuckDB or anyone else; check the file's integrity.
    n = db.export_json(os.path.join(workdir, "metrics.json"), key_pattern="train/*")
    print(f"exported {n} values to metrics.json")
    print(db.verify())

# 5. Settings: compression for large values, fsync on every write.
with SynaDB(path, config=DbConfig(enable_compression=True, sync_on_write=True)) as db:
    db.put_text("notes", "durable " * 1000)
    print("notes survive power loss:", len(db.get_text("notes")), "chars")

# 6. Experiment tracking: runs with params, metrics and artifacts.
from synadb import Experiment, ModelRegistry, sweep  # noqa: E402

exp = Experiment("demo", os.path.join(workdir, "experiments.db"))
for run, cfg in sweep(grid={"lr": [0.1, 0.01, 0.001], "epochs": [20]}, experiment=exp):
    with run:  # Completed on exit, Failed with the error text on an exception
        for epoch in range(cfg["epochs"]):
            loss = 1.0 / (1 + epoch * cfg["lr"] * 10)
            run.log_metrics({"loss": loss, "accuracy": 1 - loss}, step=epoch)
        run.log_dict("config.json", dict(cfg))
best = exp.get_best_run("accuracy", minimize=False)
print("best run:", best.name, best.params, f"accuracy={best.metrics['accuracy']:.3f}")
print("its loss curve:", exp.get_metric_tensor(best.id, "loss")[:5].round(3), "...")
exp.close()

# 7. Model registry: versions, stages and a SHA-256 check on every load.
with ModelRegistry(os.path.join(workdir, "models.db")) as registry:
    for acc in ("0.91", "0.94"):
        v = registry.save_model("classifier", os.urandom(100_000), {"accuracy": acc})
    registry.set_stage("classifier", 1, "Production")
    registry.set_stage("classifier", 2, "Production")  # archives version 1
    print("versions:", [(v.version, v.stage) for v in registry.list_versions("classifier")])
    registry.rollback("classifier")
    data, info = registry.load_model("classifier", stage="Production")
    print(f"after rollback, Production is v{info.version}: {len(data)} bytes, "
          f"sha256 {info.checksum[:12]}...")

# 8. Training data: a table of columns appended in pieces, read by index.
from synadb import Dataset  # noqa: E402

rng = np.random.default_rng(0)
with Dataset(os.path.join(workdir, "train.db"), "train") as ds:
    for day in range(3):  # a day's rows at a time: nothing is rewritten
        ds.append({"x": rng.random((500, 32), dtype=np.float32),
                   "label": rng.integers(0, 10, 500),
                   "tokens": [rng.integers(0, 1000, n) for n in rng.integers(3, 20, 500)],
                   "caption": [f"day {day} sample {i}" for i in range(500)]})
    batch = ds.take(rng.permutation(len(ds))[:4], columns=["label", "tokens", "caption"])
    print(f"dataset: {len(ds)} rows of", {n: c.kind for n, c in ds.columns.items()})
    print("a shuffled batch:", batch["label"], [len(t) for t in batch["tokens"]],
          batch["caption"][:2])

print("database files:", [f for f in os.listdir(workdir) if f.endswith(".db")])

exp_db = os.path.join(workdir, "experiments.db")
print(f"""
Next, on the files this demo left in {workdir}:
  .venv/bin/synadb info {exp_db}
  .venv/bin/synadb runs {exp_db} --experiment demo --sort accuracy
  .venv/bin/pip install -e '.[studio]' && .venv/bin/synadb studio {exp_db}
  make examples   (one script per job: RAG, DataLoader/DDP, tf.data, MLflow, registry, Studio)
  make docs       (the documentation site)    make test    (the whole suite)""")
