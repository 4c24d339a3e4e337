"""synadb.integrations.tensorflow: tf.data pipelines over the file's map, tf.distribute."""

import doctest
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: its C++ log is noise here

import numpy as np
import pytest
import tensorflow as tf

import synadb.integrations.tensorflow as stf
from synadb import errors
from synadb.integrations.tensorflow import (
    create_distributed_dataset,
    syna_dataset,
    to_tf,
)
from synadb.tensors import TensorEngine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, D = 2000, 16

# Two logical CPUs, so MirroredStrategy has two replicas to split batches
# between.  Only possible before TF initializes its devices; if something in
# this session already did, the mirrored test runs with what exists.
try:
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tf") / "train.db")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((N, D)).astype(np.float32)
    x[0, 0] = np.float32("nan")  # bit-exact means NaN payloads too, not just ==
    x[1, 1] = -0.0
    y = np.arange(N, dtype=np.int64)  # a row's label is its index
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("train/", x, rows_per_block=300)
        e.put_tensor("labels/", y, rows_per_block=700)
        e.put_tensor("short/", y[:-1])
        e.put_tensor("img/", rng.integers(0, 255, (10, 2, 3, 3), dtype=np.uint8))
    return path, x, y


def _bytes_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _epoch(ds):
    """Concatenated x (and y) of one pass."""
    parts = list(ds)
    if isinstance(parts[0], tuple):
        return (np.concatenate([p[0].numpy() for p in parts]),
                np.concatenate([p[1].numpy() for p in parts]))
    return np.concatenate([p.numpy() for p in parts])


# ------------------------------------------------------------------ surface
def test_all_is_pinned_and_aliased():
    import synadb.tensorflow as alias

    assert sorted(stf.__all__) == ["create_distributed_dataset", "syna_dataset", "to_tf"]
    assert sorted(alias.__all__) == sorted(stf.__all__)
    for name in stf.__all__:
        assert getattr(alias, name) is getattr(stf, name)


def test_doctests():
    assert doctest.testmod(stf).failed == 0


# ------------------------------------------------------------------ dataset
def test_element_spec_is_known_before_iterating(data):
    path, _x, _y = data
    assert syna_dataset(path, "train/*", 64).element_spec == tf.TensorSpec((None, D),
                                                                           tf.float32)
    spec = syna_dataset(path, "train/*", 64, label_pattern="labels/*").element_spec
    assert spec == (tf.TensorSpec((None, D), tf.float32), tf.TensorSpec((None,), tf.int64))
    fixed = syna_dataset(path, "train/*", 64, drop_remainder=True, dtype=np.float64)
    assert fixed.element_spec == tf.TensorSpec((64, D), tf.float64)
    assert [b.shape for b in fixed][-1] == (64, D) and len(list(fixed)) == N // 64
    half = syna_dataset(path, "train/*", 64, dtype=tf.float16)
    assert half.element_spec.dtype == tf.float16 and next(iter(half)).dtype == tf.float16
    img = syna_dataset(path, "img/*", 4)
    assert img.element_spec == tf.TensorSpec((None, 2, 3, 3), tf.uint8)
    assert [b.shape[0] for b in img] == [4, 4, 2]


def test_epoch_is_bit_exact(data):
    path, x, y = data
    assert _bytes_equal(_epoch(syna_dataset(path, "train/*", 128)), x)
    xb, yb = _epoch(syna_dataset(path, "train/*", 333, label_pattern="labels/*"))
    assert _bytes_equal(xb, x) and _bytes_equal(yb, y)
    xb = _epoch(syna_dataset(path, "train/*", 100, dtype="float64"))
    assert _bytes_equal(xb, x.astype(np.float64))


def test_shuffle_covers_every_row_once_and_reshuffles(data):
    path, x, y = data
    ds = syna_dataset(path, "train/*", 128, label_pattern="labels/*", shuffle=True, seed=3)
    xa, ya = _epoch(ds)
    assert sorted(ya.tolist()) == y.tolist() and (ya != y).any()
    assert _bytes_equal(xa, x[ya])  # each row is exactly its index's row
    _xb, yb = _epoch(ds)
    assert sorted(yb.tolist()) == y.tolist() and (ya != yb).any()  # a new epoch, a new order
    again = syna_dataset(path, "train/*", 128, label_pattern="labels/*", shuffle=True, seed=3)
    assert _bytes_equal(_epoch(again)[1], ya)  # the seed makes it repeatable


def test_shards_are_disjoint_and_cover_all(data):
    path, _x, y = data
    seen = [_epoch(syna_dataset(path, "labels/*", 50, shuffle=True, seed=1, num_shards=3,
                                shard_index=i)) for i in range(3)]
    assert sorted(np.concatenate(seen).tolist()) == y.tolist()


def test_bad_arguments(data):
    path, _x, _y = data
    with pytest.raises(errors.DimensionMismatch, match="1999 labels"):
        syna_dataset(path, "train/*", 8, label_pattern="short/*")
    with pytest.raises(errors.KeyNotFound):
        syna_dataset(path, "nothing/*", 8)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(errors.InvalidArgument):
            syna_dataset(path, "train/*", bad)
    with pytest.raises(errors.InvalidArgument):
        syna_dataset(path, "train/*", 8, num_shards=2, shard_index=2)
    with pytest.raises(errors.DatabaseNotFound):
        syna_dataset(path + ".missing", "train/*", 8)


def test_keras_fits_on_it(data):
    path, x, y = data
    labels = (y % 2).astype(np.int64)
    lpath = path + ".labels.db"
    with TensorEngine(lpath, progress=False) as e:
        e.put_tensor("x/", np.nan_to_num(x))
        e.put_tensor("y/", labels)
    ds = syna_dataset(lpath, "x/*", 256, label_pattern="y/*", shuffle=True, seed=0)
    model = tf.keras.Sequential([tf.keras.Input((D,)), tf.keras.layers.Dense(2)])
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(ds, epochs=2, verbose=0, shuffle=False)  # the dataset shuffles
    assert len(hist.history["loss"]) == 2 and np.isfinite(hist.history["loss"]).all()


# ------------------------------------------------------------- distributed
def test_distributed_under_the_default_strategy(data):
    path, x, y = data
    dist = create_distributed_dataset(path, "train/*", 128, label_pattern="labels/*")
    xb, yb = _epoch(dist)
    assert _bytes_equal(xb, x) and _bytes_equal(yb, y)


def test_distributed_under_mirrored_strategy(data):
    path, x, y = data
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(cpus)
    replicas = strategy.num_replicas_in_sync
    assert replicas == len(cpus)  # 2, unless TF was initialized before this module
    dist = create_distributed_dataset(path, "train/*", 64 * replicas, strategy=strategy,
                                      label_pattern="labels/*", shuffle=True, seed=2)
    seen_x, seen_y = [], []
    total = tf.constant(0, tf.int64)
    for xs, ys in dist:
        for xr, yr in zip(strategy.experimental_local_results(xs),
                          strategy.experimental_local_results(ys)):
            assert xr.shape[0] <= 64
            seen_x.append(xr.numpy())
            seen_y.append(yr.numpy())
        per_replica = strategy.run(lambda v: tf.reduce_sum(v), args=(ys,))
        total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    yb = np.concatenate(seen_y)
    assert sorted(yb.tolist()) == y.tolist()
    assert _bytes_equal(np.concatenate(seen_x), x[yb])
    assert int(total) == int(y.sum())
    if replicas > 1:
        with pytest.raises(errors.InvalidArgument, match="replicas"):
            create_distributed_dataset(path, "train/*", 2 * replicas + 1, strategy=strategy)


# -------------------------------------------------------------------- to_tf
def test_to_tf(data):
    path, x, _y = data
    t = to_tf(np.arange(12, dtype=np.int32).reshape(3, 4))
    assert t.dtype == tf.int32 and t.shape == (3, 4) and t.numpy().tolist()[2] == [8, 9, 10, 11]
    assert _bytes_equal(to_tf(x).numpy(), x)
    with TensorEngine(path, read_only=True, progress=False) as e:
        assert _bytes_equal(e.get_tensor_tf("train/*").numpy(), x)
        assert e.get_tensor_tf("labels/*", dtype=np.float64).dtype == tf.float64
