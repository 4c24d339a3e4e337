"""create_distributed_dataset under model.fit: every epoch, all the data, no warning.

Regression: when one input pipeline fed several replicas (MirroredStrategy
over two devices), TensorFlow reported the distributed dataset's cardinality
in per-replica batches, Keras took that as the epoch's length, and every
epoch ended in "Your input ran out of data; interrupting training".
"""

import json
import logging
import os
import subprocess
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: its C++ log is noise here

import numpy as np
import pytest
import tensorflow as tf

from synadb.integrations.tensorflow import create_distributed_dataset
from synadb.tensors import TensorEngine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, D = 1050, 8  # 1050 rows: the last global batch is short, and splits unevenly
GLOBAL_BATCH = 100

# Two logical CPUs give MirroredStrategy two replicas fed by one pipeline (the
# case that broke).  Only possible before TF initializes its devices; if this
# session already did with one, the two-replica test runs in a subprocess.
try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
    pass


def _write(path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, D)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("x/", x)
        e.put_tensor("y/", y)


def _strategy(kind):
    if kind == "default":
        return tf.distribute.get_strategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus[:1] if kind == "mirrored1" else cpus[:2])


def fit_report(path, kind, epochs=3, steps_per_epoch=None, shuffle=False,
               drop_remainder=False, batch_size=GLOBAL_BATCH):
    """Fit a tiny model on the file; what each epoch did and what was said."""
    import keras

    strategy = _strategy(kind)
    with strategy.scope():
        model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[_Seen()])
    dist = create_distributed_dataset(path, "x/*", batch_size, strategy=strategy,
                                      label_pattern="y/*", shuffle=shuffle, seed=1,
                                      drop_remainder=drop_remainder)

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.steps, self.seen = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.steps.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.steps[-1] += 1

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append(int(round(float(logs["seen"]))))

    steps = Steps()
    records = []
    handler = _ListHandler(records)
    loggers = [logging.getLogger(), logging.getLogger("tensorflow"), logging.getLogger("absl")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(dist, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0,
                      shuffle=False, callbacks=[steps])  # the dataset shuffles itself
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    said = [str(w.message) for w in caught] + records
    # The default strategy hands back the plain tf.data.Dataset (a method).
    card = dist.cardinality() if callable(dist.cardinality) else dist.cardinality
    return {"replicas": strategy.num_replicas_in_sync, "cardinality": int(card),
            "steps": steps.steps, "seen": steps.seen,
            "ran_out": [m for m in said if "ran out of data" in m]}


class _ListHandler(logging.Handler):
    def __init__(self, out):
        super().__init__(logging.DEBUG)
        self.out = out

    def emit(self, record):
        self.out.append(record.getMessage())


def _Seen():
    """A metric: rows trained on this epoch (summed over replicas)."""
    import keras

    class Seen(keras.metrics.Metric):
        def __init__(self):
            super().__init__(name="seen")
            self.n = self.add_variable(shape=(), initializer="zeros", name="n",
                                       aggregation="sum")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.n.assign_add(tf.cast(tf.shape(y_true)[0], self.n.dtype))

        def result(self):
            return self.n

    return Seen()


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("tfdist") / "train.db")
    _write(p)
    return p


def _report(path, kind, **kw):
    """``fit_report`` here, or in a fresh process if this one cannot have two CPUs."""
    if kind != "mirrored2" or len(tf.config.list_logical_devices("CPU")) >= 2:
        return fit_report(path, kind, **kw)
    code = ("import json, sys; sys.path.insert(0, 'tests'); import test_tf_distributed as t; "
            f"print(json.dumps(t.fit_report({path!r}, {kind!r}, **{kw!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    return json.loads(out.stdout.strip().splitlines()[-1])


STEPS = -(-N // GLOBAL_BATCH)  # 11: ten full global batches and one of 50 rows


@pytest.mark.parametrize("kind", ["default", "mirrored1", "mirrored2"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_every_epoch_trains_on_all_rows_without_running_out(path, kind, shuffle):
    r = _report(path, kind, shuffle=shuffle)
    assert r["replicas"] == {"default": 1, "mirrored1": 1, "mirrored2": 2}[kind]
    assert r["ran_out"] == []
    assert r["cardinality"] == STEPS
    assert r["steps"] == [STEPS] * 3
    assert r["seen"] == [N] * 3


@pytest.mark.parametrize("kind", ["default", "mirrored2"])
def test_steps_per_epoch_of_one_epoch_restarts_the_data_every_epoch(path, kind):
    r = _report(path, kind, steps_per_epoch=STEPS)
    assert r["ran_out"] == []
    assert r["steps"] == [STEPS] * 3 and r["seen"] == [N] * 3


def test_drop_remainder_counts_only_full_batches(path):
    r = _report(path, "mirrored2", drop_remainder=True, batch_size=80)
    # 1050 rows in per-replica batches of 40: 26 full ones (1040 rows); one
    # pipeline feeding two replicas makes that 13 steps.
    assert r["ran_out"] == [] and r["cardinality"] == 13
    assert r["steps"] == [13] * 3 and r["seen"] == [26 * 40] * 3
