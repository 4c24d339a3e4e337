"""syna_dataset over a synadb.Dataset: every column kind in tf.data, real Keras fits."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: its C++ log is noise here

import keras
import numpy as np
import pytest
import tensorflow as tf

import synadb
from synadb import errors
from synadb.integrations.tensorflow import create_distributed_dataset, syna_dataset
from synadb.tensors import TensorEngine

# Two logical CPUs, so MirroredStrategy has two replicas; only possible before
# TF initializes its devices (else the mirrored test runs with what exists).
try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
    pass

N_MIXED = 7


def _mixed_rows():
    """Every kind, in two appends (3 rows, then 4): batches cross chunks."""
    rng = np.random.default_rng(3)
    n = N_MIXED
    return {
        "x": rng.standard_normal((n, 3)).astype(np.float32),
        "img": rng.integers(0, 255, (n, 2, 2), dtype=np.uint8),
        "flag": np.array([True, False, True, True, False, False, True]),
        "ids": [np.arange(k, dtype=np.int32) + 1 for k in (3, 1, 0, 5, 2, 4, 1)],
        "pts": [rng.standard_normal((k, 2)) for k in (2, 0, 1, 3, 1, 2, 4)],  # float64
        "blob": [bytes([i]) * i + b"\x00\xff" for i in range(n)],
        "caption": ["a cat", "café ☕", "", "line\nbreak", "x" * 50, "ü", "end"],
        "meta": [{"i": i, "tags": ["a"] * i, "src": "wiki", "score": i / 4} for i in range(n)],
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds") / "data.db")
    rows = _mixed_rows()
    with synadb.Dataset(path, "mixed", progress=False) as ds:
        for lo, hi in ((0, 3), (3, N_MIXED)):
            ds.append({k: v[lo:hi] for k, v in rows.items()})
    with synadb.Dataset(path, "numbered", progress=False) as ds:
        ds.append({"i": np.arange(200, dtype=np.int64),
                   "v": np.arange(200, dtype=np.float64) * 0.5,
                   "big": np.arange(200, dtype=np.int64) * 1000})
    with TensorEngine(path, progress=False) as e:  # tensor rows beside the datasets
        e.put_tensor("rows/", np.ones((4, 2), np.float32))
    return path, rows


def _all(ds):
    """One pass as a dict of per-column lists of rows (ragged rows as lists)."""
    out = {}
    for b in ds:
        for k, v in b.items():
            rows = v.to_list() if isinstance(v, tf.RaggedTensor) else list(v.numpy())
            out.setdefault(k, []).extend(rows)
    return out


# ------------------------------------------------------------ every kind
def test_element_spec_for_every_kind(files):
    path, _rows = files
    ds = syna_dataset(path, "mixed", 3)
    assert ds.element_spec == {
        "x": tf.TensorSpec((None, 3), tf.float32),
        "img": tf.TensorSpec((None, 2, 2), tf.uint8),
        "flag": tf.TensorSpec((None,), tf.bool),
        "ids": tf.RaggedTensorSpec((None, None), tf.int32, 1, tf.int64),
        "pts": tf.RaggedTensorSpec((None, None, 2), tf.float64, 1, tf.int64),
        "blob": tf.TensorSpec((None,), tf.string),
        "caption": tf.TensorSpec((None,), tf.string),
        "meta": tf.TensorSpec((None,), tf.string),
    }
    fixed = syna_dataset(path, "mixed", 3, drop_remainder=True, columns=["ids", "x"],
                         as_tuple=True)
    assert fixed.element_spec == (tf.RaggedTensorSpec((3, None), tf.int32, 1, tf.int64),
                                  tf.TensorSpec((3, 3), tf.float32))
    got = list(fixed)
    assert len(got) == N_MIXED // 3 and all(b[0].shape[0] == 3 for b in got)


def test_values_for_every_kind(files):
    path, rows = files
    got = _all(syna_dataset(path, "mixed", 3))  # 3 + 3 + 1 rows, across both chunks
    assert np.array_equal(np.stack(got["x"]), rows["x"])
    assert np.array_equal(np.stack(got["img"]), rows["img"])
    assert got["flag"] == rows["flag"].tolist()
    assert got["ids"] == [r.tolist() for r in rows["ids"]]
    assert got["pts"] == [r.tolist() for r in rows["pts"]]  # inner shape (k, 2) kept
    assert got["blob"] == rows["blob"]
    assert [c.decode("utf-8") for c in got["caption"]] == rows["caption"]
    assert [json.loads(m) for m in got["meta"]] == rows["meta"]


def test_columns_as_tuple_and_a_dataset_object(files):
    path, rows = files
    with synadb.Dataset(path, "mixed", read_only=True, progress=False) as table:
        ds = syna_dataset(table, batch_size=4, columns=["caption", "x"], as_tuple=True)
    # The pipeline reads through a handle of its own: closing the user's is fine.
    parts = list(ds)
    assert all(isinstance(p, tuple) and len(p) == 2 for p in parts)
    caps = [c.decode() for p in parts for c in p[0].numpy()]
    assert caps == rows["caption"]
    assert np.array_equal(np.concatenate([p[1].numpy() for p in parts]), rows["x"])
    one = syna_dataset(path, "mixed", 8, columns="meta")
    assert list(one.element_spec) == ["meta"]


def test_ragged_batches_are_real_ragged_tensors(files):
    path, rows = files
    ids = next(iter(syna_dataset(path, "mixed", 4, columns=["ids"])))["ids"]
    assert isinstance(ids, tf.RaggedTensor) and ids.ragged_rank == 1
    assert ids.row_lengths().numpy().tolist() == [3, 1, 0, 5]
    padded = ids.to_tensor()
    assert padded.shape == (4, 5) and padded.numpy()[1].tolist() == [1, 0, 0, 0, 0]


# --------------------------------------------------------------- shuffle
def _order(ds):
    return np.concatenate([b["i"].numpy() for b in ds])


def test_shuffle_is_deterministic_per_seed_and_epoch(files):
    path, _rows = files
    a = syna_dataset(path, "numbered", 32, shuffle=True, seed=7)
    b = syna_dataset(path, "numbered", 32, shuffle=True, seed=7)
    a1, a2 = _order(a), _order(a)
    b1, b2 = _order(b), _order(b)
    assert sorted(a1.tolist()) == list(range(200)) == sorted(a2.tolist())
    assert (a1 != np.arange(200)).any() and (a1 != a2).any()  # shuffled, anew each epoch
    assert (a1 == b1).all() and (a2 == b2).all()  # the same seed, the same epochs
    assert (_order(syna_dataset(path, "numbered", 32, shuffle=True, seed=8)) != a1).any()
    # Rows travel with their index: v is i / 2 wherever i lands.
    for batch in syna_dataset(path, "numbered", 50, shuffle=True, seed=7):
        assert np.array_equal(batch["v"].numpy(), batch["i"].numpy() * 0.5)


def test_shards_are_disjoint_and_cover_all(files):
    path, _rows = files
    seen = [_order(syna_dataset(path, "numbered", 16, shuffle=True, seed=1, num_shards=3,
                                shard_index=k)) for k in range(3)]
    assert sorted(np.concatenate(seen).tolist()) == list(range(200))


# ----------------------------------------------------------------- dtype
def test_dtype_casts_floating_columns(files):
    path, rows = files
    ds = syna_dataset(path, "mixed", 7, dtype=tf.float16)
    spec = ds.element_spec
    assert spec["x"].dtype == tf.float16 and spec["pts"].dtype == tf.float16
    assert spec["ids"].dtype == tf.int32 and spec["img"].dtype == tf.uint8  # ints untouched
    b = next(iter(ds))
    assert np.array_equal(b["x"].numpy(), rows["x"].astype(np.float16))
    per = syna_dataset(path, "mixed", 7, dtype={"ids": tf.int64, "img": "float32",
                                                "x": np.float64})
    assert per.element_spec["ids"].dtype == tf.int64
    assert per.element_spec["img"].dtype == tf.float32
    assert per.element_spec["pts"].dtype == tf.float64  # not named: as stored
    b = next(iter(per))
    assert b["ids"].to_list() == [r.tolist() for r in rows["ids"]]
    assert np.array_equal(b["x"].numpy(), rows["x"].astype(np.float64))


def test_bad_dtypes_are_refused_when_built(files):
    path, _rows = files
    # Refused before a pipeline exists: nothing fails later, inside tf.data.
    for source in (("mixed",), ("rows/*",)):
        with pytest.raises(errors.InvalidArgument, match="tf.string"):
            syna_dataset(path, *source, 4, dtype=tf.string)
        with pytest.raises(errors.InvalidArgument):
            syna_dataset(path, *source, 4, dtype=np.str_)
        with pytest.raises(errors.InvalidArgument):
            syna_dataset(path, *source, 4, dtype=tf.bfloat16)  # as get_tensor_tf refuses it
        with pytest.raises(errors.InvalidType):
            syna_dataset(path, *source, 4, dtype="not a dtype")
    # Lossy casts: float to int, for tensor rows and for a dataset's columns.
    with pytest.raises(errors.InvalidArgument, match="float32 to int32"):
        syna_dataset(path, "rows/*", 4, dtype=tf.int32)
    with pytest.raises(errors.InvalidArgument, match="floating columns"):
        syna_dataset(path, "mixed", 4, dtype=tf.int32)
    with pytest.raises(errors.InvalidArgument, match="float32 to int32"):
        syna_dataset(path, "mixed", 4, dtype={"x": tf.int32})
    with pytest.raises(errors.InvalidArgument, match="int32 to bool"):
        syna_dataset(path, "mixed", 4, dtype={"ids": tf.bool})
    with pytest.raises(errors.InvalidArgument, match="not numbers"):
        syna_dataset(path, "mixed", 4, dtype={"caption": tf.float32})
    with pytest.raises(errors.KeyNotFound, match="nope"):
        syna_dataset(path, "mixed", 4, dtype={"nope": tf.float32})
    with pytest.raises(errors.InvalidArgument):
        create_distributed_dataset(path, "mixed", 4, dtype=tf.string)
    # A narrowing int cast is allowed when the values fit, checked per batch.
    small = syna_dataset(path, "numbered", 64, columns=["i"], dtype={"i": tf.int16})
    assert _order(small).dtype == np.int16
    big = syna_dataset(path, "numbered", 64, columns=["big"], dtype={"big": tf.int16})
    with pytest.raises(tf.errors.InvalidArgumentError, match="do not fit in int16"):
        list(big)


def test_bad_arguments(files):
    path, _rows = files
    with pytest.raises(errors.KeyNotFound, match="nope"):
        syna_dataset(path, "mixed", 4, columns=["x", "nope"])
    with pytest.raises(errors.InvalidArgument, match="label_pattern"):
        syna_dataset(path, "mixed", 4, label_pattern="rows/*")
    with pytest.raises(errors.InvalidArgument, match="columns"):
        syna_dataset(path, "rows/*", 4, columns=["x"])
    with pytest.raises(errors.KeyNotFound, match="mixed"):  # a misspelt name lists the datasets
        syna_dataset(path, "mixd", 4)
    with pytest.raises(errors.InvalidArgument):
        syna_dataset(path, "mixed")  # no batch size
    with synadb.Dataset(path, "mixed", read_only=True, progress=False) as table:
        with pytest.raises(errors.InvalidArgument, match="numbered"):
            syna_dataset(table, "numbered", 4)


# ----------------------------------------------------------- training
def test_ragged_tokens_train_a_keras_model(tmp_path):
    """Token ids of varying length and a label: the label is whether the ids
    come from the low or the high half of the vocabulary."""
    rng = np.random.default_rng(0)
    n, vocab = 256, 40
    labels = rng.integers(0, 2, n)
    ids = [rng.integers(1, vocab // 2, rng.integers(2, 15)) + lab * (vocab // 2 - 1)
           for lab in labels]
    path = str(tmp_path / "tokens.db")
    with synadb.Dataset(path, "tokens", progress=False) as ds:
        ds.append({"input_ids": [a.astype(np.int32) for a in ids[:100]],
                   "label": labels[:100]})
        ds.append({"input_ids": [a.astype(np.int32) for a in ids[100:]],
                   "label": labels[100:]})
    data = syna_dataset(path, "tokens", 32, columns=["input_ids", "label"], as_tuple=True,
                        shuffle=True, seed=0)
    assert data.element_spec[0] == tf.RaggedTensorSpec((None, None), tf.int32, 1, tf.int64)
    data = data.map(lambda x, y: (x.to_tensor(), y))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(vocab, 8, mask_zero=True),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2),
    ])
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.fit(data, epochs=4, verbose=0, shuffle=False).history["loss"]
    assert loss[-1] < 0.5 * loss[0], loss


def test_image_bytes_with_captions_train_a_keras_model(tmp_path):
    """PNGs of different sizes, an int label (the dominant colour) and a
    caption: decoded and resized in a .map, then fit."""
    rng = np.random.default_rng(1)
    n, side = 96, 12
    labels = np.arange(n) % 3
    pngs, sizes = [], []
    for lab in labels:
        h, w = (int(s) for s in rng.integers(6, 24, 2))
        img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        img[..., lab] = rng.integers(160, 255, (h, w), dtype=np.uint8)
        pngs.append(tf.io.encode_png(img).numpy())
        sizes.append((h, w))
    captions = [f"a {('red', 'green', 'blue')[lab]} picture" for lab in labels]
    path = str(tmp_path / "images.db")
    with synadb.Dataset(path, "images", progress=False) as ds:
        ds.append({"image": pngs, "label": labels.astype(np.int64), "caption": captions})

    first = next(iter(syna_dataset(path, "images", 4)))
    assert first["caption"].numpy()[2].decode() == captions[2]
    assert tf.io.decode_png(first["image"][1]).shape[:2] == sizes[1]  # stored as written

    def decode(png):
        img = tf.io.decode_png(png, channels=3)
        return tf.image.resize(tf.cast(img, tf.float32) / 255.0, (side, side))

    def prepare(images, y):
        return tf.map_fn(decode, images, fn_output_signature=tf.float32), y

    data = syna_dataset(path, "images", 16, columns=["image", "label"], as_tuple=True,
                        shuffle=True, seed=0).map(prepare)
    assert data.element_spec == (tf.TensorSpec((None, side, side, 3), tf.float32),
                                 tf.TensorSpec((None,), tf.int64))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((side, side, 3)),
        keras.layers.GlobalAveragePooling2D(),  # the mean colour tells the label
        keras.layers.Dense(3),
    ])
    model.compile(keras.optimizers.Adam(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.fit(data, epochs=5, verbose=0, shuffle=False).history["loss"]
    assert loss[-1] < 0.5 * loss[0], loss


# ---------------------------------------------------------- distributed
def test_distributed_over_a_dataset_under_the_default_strategy(files):
    path, rows = files
    dist = create_distributed_dataset(path, "numbered", 32, shuffle=True, seed=4)
    got = np.concatenate([b["i"].numpy() for b in dist])
    assert sorted(got.tolist()) == list(range(200))
    with synadb.Dataset(path, "mixed", read_only=True, progress=False) as table:
        dist = create_distributed_dataset(table, batch_size=4, columns=["ids", "caption"],
                                          as_tuple=True)
    ids, caps = [], []
    for r, c in dist:
        ids.extend(r.to_list())
        caps.extend(x.decode() for x in c.numpy())
    assert ids == [r.tolist() for r in rows["ids"]] and caps == rows["caption"]


def test_distributed_over_a_dataset_under_mirrored_strategy(files):
    path, rows = files
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(cpus)
    replicas = strategy.num_replicas_in_sync
    dist = create_distributed_dataset(path, "mixed", 2 * replicas, strategy=strategy,
                                      columns=["ids", "x"], as_tuple=True)
    seen_ids, seen_x = [], []
    for ids, x in dist:
        for r, xr in zip(strategy.experimental_local_results(ids),
                         strategy.experimental_local_results(x)):
            assert isinstance(r, tf.RaggedTensor) and r.shape[0] <= 2
            seen_ids.extend(r.to_list())
            seen_x.extend(xr.numpy().tolist())
    order = [rows["x"].tolist().index(v) for v in seen_x]
    assert sorted(order) == list(range(N_MIXED))
    assert seen_ids == [rows["ids"][i].tolist() for i in order]  # rows stay whole
