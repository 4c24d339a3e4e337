"""Fit a Keras model on a tf.data pipeline read from a synadb file, logging to the tracker.

    python examples/tf_keras.py

1. writes a synthetic classification table with ``synadb.Dataset``;
2. ``syna_dataset`` turns it into a shuffled, batched ``tf.data.Dataset`` of
   ``(x, y)`` (rows gathered from the file one batch at a time);
3. ``model.fit`` trains a small Keras model, and a Keras callback logs every
   epoch's metrics (loss, accuracy, val_loss, val_accuracy) to the experiment
   tracker and, at the end, stores the model in the registry of the same
   file: ``synadb.integrations.keras.SynaKerasCallback`` when this synadb has
   it, else the equivalent ``TrackerCallback`` written out below;
4. the registered model is loaded back and predicts as the trained one.

Needs ``synadb[tensorflow]`` (tests use ``tensorflow-cpu``).  Files go to
``./example-output/tf_keras/`` (or ``$SYNADB_EXAMPLE_OUT``).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

import numpy as np
import tensorflow as tf

from synadb import Dataset, ExperimentTracker, ModelRegistry
from synadb.tensorflow import syna_dataset

OUT = Path(os.environ.get("SYNADB_EXAMPLE_OUT", "example-output")).resolve() / "tf_keras"
PATH = OUT / "project.db"   # data, runs and the model: one file
ROWS, VAL_ROWS, DIMS, CLASSES, EPOCHS = 4000, 1000, 16, 4, 4


class TrackerCallback(tf.keras.callbacks.Callback):
    """Log a fit to the tracker and register the model: what SynaKerasCallback
    does, written out (used when this synadb has no synadb.integrations.keras)."""

    def __init__(self, path: Path, experiment: str, run_name: str, registered_model_name: str):
        super().__init__()
        self.path, self.experiment, self.run_name = path, experiment, run_name
        self.model_name = registered_model_name

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.tracker = ExperimentTracker(self.path)
        self.run_id = self.tracker.start_run(self.experiment, name=self.run_name,
                                             params=self.params)  # Keras' epochs and steps

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.tracker.log_metrics(self.run_id, {k: float(v) for k, v in (logs or {}).items()},
                                 step=epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.tracker.end_run(self.run_id)
        self.tracker.close()
        with ModelRegistry(self.path) as registry:
            registry.save_model(self.model_name, self.model, {"run_id": self.run_id})


def write_data() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=0.7, size=(CLASSES, DIMS))
    for name, n in (("train", ROWS), ("val", VAL_ROWS)):
        y = rng.integers(0, CLASSES, size=n)
        x = (centers[y] + rng.normal(size=(n, DIMS))).astype(np.float32)
        with Dataset(PATH, name) as ds:
            ds.append({"x": x, "y": y})
        print(f"wrote {n:,} rows to the dataset {name!r}")


def make_callback() -> tf.keras.callbacks.Callback:
    names = dict(experiment="keras", run_name="mlp", registered_model_name="keras-mlp")
    try:  # the packaged callback, when this synadb has it
        from synadb.integrations.keras import SynaKerasCallback
    except ImportError:
        print("callback: TrackerCallback (defined in this example)")
        return TrackerCallback(PATH, **names)
    print("callback: synadb.integrations.keras.SynaKerasCallback")
    return SynaKerasCallback(PATH, **names)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    PATH.unlink(missing_ok=True)  # a re-run starts afresh
    tf.keras.utils.set_random_seed(0)
    write_data()

    train = syna_dataset(PATH, "train", batch_size=64, shuffle=True, seed=0,
                         columns=["x", "y"], as_tuple=True)
    val = syna_dataset(PATH, "val", batch_size=256, columns=["x", "y"], as_tuple=True)
    model = tf.keras.Sequential([tf.keras.Input((DIMS,)),
                                 tf.keras.layers.Dense(32, activation="relu"),
                                 tf.keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    # The callback opens the file, starts a run, logs each epoch's logs as
    # metrics and, when fit ends, ends the run and registers the model.
    history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0,
                        shuffle=False,  # syna_dataset shuffles; Keras cannot shuffle tf.data
                        callbacks=[make_callback()])
    for epoch in range(EPOCHS):
        print(f"  epoch {epoch}  loss {history.history['loss'][epoch]:.4f}  "
              f"val_accuracy {history.history['val_accuracy'][epoch]:.3f}")

    with ExperimentTracker(PATH, read_only=True) as tracker:
        run = tracker.list_runs("keras")[-1]
        print(f"run {run.name} ({run.status.value}): metrics {sorted(run.metrics)}; "
              f"val_accuracy by epoch {[round(v, 3) for _, v in run.get_metric('val_accuracy')]}")
    with ModelRegistry(PATH, read_only=True) as registry:
        mv = registry.latest_version("keras-mlp")
        restored = registry.load_keras("keras-mlp", mv.version)
        x_val, _ = next(iter(val))
        same = np.allclose(restored.predict(x_val, verbose=0), model.predict(x_val, verbose=0))
        print(f"registered keras-mlp v{mv.version} ({mv.size_bytes:,} bytes); "
              f"reloaded model predicts the same: {same}")

    print("files:")
    print(f"  data, runs and model: {PATH}")
    print(f"next: synadb metrics {PATH} mlp   or   synadb studio {PATH}")


if __name__ == "__main__":
    main()
