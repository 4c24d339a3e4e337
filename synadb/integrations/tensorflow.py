"""TensorFlow adapters: ``tf.data`` pipelines over a synadb file's rows.

Install with ``pip install 'synadb[tensorflow]'``.  Only this module (and
its alias ``synadb.tensorflow``) imports ``tensorflow``; ``import synadb``
does not.

Setup (rows written once with :class:`~synadb.tensors.TensorEngine`)::

    from synadb.integrations.tensorflow import syna_dataset, create_distributed_dataset

    ds = syna_dataset("train.db", "train/*", batch_size=256, label_pattern="labels/*",
                      shuffle=True, seed=0)
    ds.element_spec   # (TensorSpec((None, 784), tf.float32), TensorSpec((None,), tf.int64))
    model.fit(ds, epochs=3)

Distributed (``batch_size`` is the global batch; each replica gets its share)::

    strategy = tf.distribute.MirroredStrategy()
    dist = create_distributed_dataset("train.db", "train/*", 256, strategy=strategy)
    for batch in dist:
        strategy.run(step, args=(batch,))

Design: the pipeline is ``Dataset.range(n)`` (sharded, shuffled, batched by
tf.data), then one ``tf.numpy_function`` per batch that gathers those rows
from the file's memory map (:meth:`RowView.batch`).  Only index batches
move through tf.data's buffers, so shuffling costs 8 bytes a row, never a
copy of the data; and the element spec is static because the row shape and
dtype come from the file.  ``from_generator`` was the alternative; it gives
the same spec but leaves sharding and per-epoch reshuffling to us.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import _convert, errors
from ..tensors import RowView, TensorEngine

try:
    import tensorflow as tf
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency("tensorflow", "tensorflow",
                                   "synadb.integrations.tensorflow") from e

__all__ = ["create_distributed_dataset", "syna_dataset", "to_tf"]


def to_tf(array: Any) -> tf.Tensor:
    """``array`` as a ``tf.Tensor`` (a copy; TensorFlow owns its buffers).

    Args:
        array: a numpy array or anything ``np.asarray`` accepts.

    Returns:
        A ``tf.Tensor`` with the array's dtype and shape.

    Raises:
        InvalidArgument: TensorFlow has no dtype for the array's.

    >>> to_tf(np.arange(3, dtype=np.int32)).numpy().tolist()
    [0, 1, 2]
    """
    arr = np.asarray(array)
    try:
        return tf.convert_to_tensor(arr)
    except (TypeError, ValueError) as e:
        raise errors.InvalidArgument(f"TensorFlow cannot hold an array of {arr.dtype}") from e


def _np_dtype(dtype: Any) -> np.dtype | None:
    """A numpy dtype for ``dtype`` (numpy or TensorFlow spelling), or None."""
    if dtype is None:
        return None
    if isinstance(dtype, tf.DType):
        try:
            return np.dtype(dtype.as_numpy_dtype)
        except TypeError as e:
            raise errors.InvalidArgument(f"{dtype!r} has no numpy equivalent") from e
    try:
        return np.dtype(dtype)
    except TypeError as e:
        raise errors.InvalidType(f"{dtype!r} is not a dtype") from e


def _get_tensor_tf(engine: TensorEngine, pattern: str, dtype: Any = None) -> tf.Tensor:
    """What ``TensorEngine.get_tensor_tf`` returns (its ``tf_tensor`` converter);
    ``dtype`` may be a TensorFlow dtype (``tf.float16``) or a numpy one."""
    return to_tf(engine.get_tensor(pattern, dtype=_np_dtype(dtype)))


_convert.register("tf_tensor", _get_tensor_tf)


# -- Keras models for the registry (its keras_save / keras_load converters) --
# The native ``.keras`` zip (config.json, metadata.json, model.weights.h5):
# architecture, weights and optimizer state, no pickle.  Keras 3 saves and
# loads it only by path (its file-object support is private), so the bytes
# pass through a private temporary directory that is always removed.
_KERAS_NAME = "model.keras"


def _keras_to_bytes(model: Any) -> bytes:
    """The ``.keras`` zip of ``model.save`` as bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="synadb-keras-") as tmp:
        path = os.path.join(tmp, _KERAS_NAME)
        try:
            model.save(path)
        except (TypeError, ValueError, NotImplementedError) as e:
            raise errors.InvalidArgument(f"Keras cannot save this {type(model).__name__}: "
                                         f"{e}") from e
        with open(path, "rb") as f:
            return f.read()


def _keras_from_bytes(raw: bytes | bytearray | memoryview, *, compile: bool = True,
                      safe_mode: bool = True, custom_objects: Any = None) -> Any:
    """``keras.saving.load_model`` of a ``.keras`` zip held in ``raw``.

    ``safe_mode=True`` (the default) refuses the one part of the format that
    can run code (a ``Lambda`` layer's marshalled bytecode).

    Raises:
        InvalidArgument: ``raw`` is not a ``.keras`` zip, or Keras refuses it
            (an unknown custom class, a ``Lambda`` layer under ``safe_mode``).
    """
    import tempfile
    import zipfile

    import keras

    with tempfile.TemporaryDirectory(prefix="synadb-keras-") as tmp:
        path = os.path.join(tmp, _KERAS_NAME)
        with open(path, "wb") as f:
            f.write(raw)
        if not zipfile.is_zipfile(path):
            raise errors.InvalidArgument("these bytes are not a Keras model (a .keras zip); "
                                         "was the version saved from a Keras model?")
        try:
            return keras.saving.load_model(path, custom_objects=custom_objects,
                                           compile=compile, safe_mode=safe_mode)
        except (TypeError, ValueError) as e:  # e.g. a Lambda layer under safe_mode
            raise errors.InvalidArgument(f"Keras cannot load this model: {e}") from e


_convert.register("keras_save", _keras_to_bytes)
_convert.register("keras_load", _keras_from_bytes)


def _batch_size(value: Any, what: str = "batch_size") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise errors.InvalidArgument(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _tf_dtype(dt: np.dtype) -> tf.DType:
    try:
        return tf.as_dtype(dt)
    except TypeError as e:
        raise errors.InvalidArgument(f"TensorFlow has no dtype for {dt}") from e


class _Source:
    """The file's row views, opened once per pipeline and gathered per batch.

    tf.data calls :meth:`gather` from its own threads; RowView caches its
    block views and the engine serializes map access, so sharing one
    read-only handle between those threads is safe.
    """

    def __init__(self, path: str, pattern: str, label_pattern: str | None,
                 dtype: Any) -> None:
        self.engine = TensorEngine(path, read_only=True, progress=False)
        try:
            self.x: RowView = self.engine.rows(pattern)
            self.y: RowView | None = (self.engine.rows(label_pattern)
                                      if label_pattern is not None else None)
        except BaseException:
            self.engine.close()
            raise
        if self.y is not None and len(self.y) != len(self.x):
            self.engine.close()
            raise errors.DimensionMismatch(
                f"{pattern!r} has {len(self.x)} rows but {label_pattern!r} has "
                f"{len(self.y)} labels in {path!r}")
        if dtype is None:
            self.x_dtype = self.x.dtype
        else:
            try:
                self.x_dtype = np.dtype(tf.as_dtype(dtype).as_numpy_dtype)
            except TypeError as e:
                raise errors.InvalidArgument(f"{dtype!r} is not a dtype") from e

    def gather(self, idx: np.ndarray) -> Any:
        xb = self.x.batch(idx)
        if xb.dtype != self.x_dtype:
            xb = xb.astype(self.x_dtype)
        return xb if self.y is None else (xb, self.y.batch(idx))


def syna_dataset(path: str | os.PathLike[str], pattern: str, batch_size: int,
                 label_pattern: str | None = None, shuffle: bool = False,
                 seed: int | None = None, dtype: Any = None, *, drop_remainder: bool = False,
                 num_shards: int = 1, shard_index: int = 0,
                 prefetch: bool = True) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of batches of the rows matching ``pattern``.

    Each element is a batch ``x`` of shape ``(None, *row_shape)`` (the batch
    dimension is ``batch_size`` when ``drop_remainder``), or ``(x, y)`` with
    ``label_pattern``.  Rows are gathered from the file's memory map one
    batch at a time.  With ``shuffle``, each pass over the dataset (epoch)
    sees a new permutation; ``seed`` makes the sequence of permutations
    repeatable.

    Args:
        path: the synadb file.
        pattern: glob over row names, e.g. ``"train/*"``.
        batch_size: rows per batch.
        label_pattern: glob over labels; must match as many rows.
        shuffle: shuffle all rows (by index) every epoch.
        seed: the shuffle seed.
        dtype: cast ``x`` to this dtype (numpy or tf spelling).
        drop_remainder: drop a short last batch (gives a static batch dimension).
        num_shards: split the rows into this many disjoint shards ...
        shard_index: ... and keep this one (for multi-worker input).
        prefetch: end the pipeline with ``prefetch(AUTOTUNE)``.

    Returns:
        The dataset; its ``element_spec`` is known before iterating.

    Raises:
        KeyNotFound: nothing matches a pattern.
        DimensionMismatch: the label count differs from the row count.
        InvalidArgument: a bad batch size, shard or dtype.

    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "d.db")
    >>> with TensorEngine(p) as e:
    ...     _ = e.put_tensor("x/", np.arange(10, dtype=np.float32).reshape(5, 2))
    >>> ds = syna_dataset(p, "x/*", batch_size=2)
    >>> ds.element_spec
    TensorSpec(shape=(None, 2), dtype=tf.float32, name=None)
    >>> [b.shape[0] for b in ds]
    [2, 2, 1]
    """
    batch_size = _batch_size(batch_size)
    num_shards = _batch_size(num_shards, "num_shards")
    if isinstance(shard_index, bool) or not isinstance(shard_index, (int, np.integer)) \
            or not 0 <= shard_index < num_shards:
        raise errors.InvalidArgument(f"shard_index must be in [0, {num_shards}), "
                                     f"got {shard_index!r}")
    src = _Source(os.fspath(path), pattern, label_pattern, dtype)
    n = len(src.x)
    dim = batch_size if drop_remainder else None
    x_spec = tf.TensorSpec((dim, *src.x.row_shape), _tf_dtype(src.x_dtype))
    specs: Any = x_spec
    if src.y is not None:
        specs = (x_spec, tf.TensorSpec((dim, *src.y.row_shape), _tf_dtype(src.y.dtype)))
    outs = [x_spec] if src.y is None else list(specs)

    def fetch(idx: tf.Tensor) -> Any:
        got = tf.numpy_function(src.gather, [idx], [s.dtype for s in outs], stateful=False)
        got = [tf.ensure_shape(t, s.shape) if dim is not None else _with_shape(t, s)
               for t, s in zip(got, outs)]
        return got[0] if src.y is None else tuple(got)

    ds = tf.data.Dataset.range(n)
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    if shuffle:
        # The buffer holds every index of the shard, so the shuffle is uniform.
        ds = ds.shuffle(max(1, -(-n // num_shards)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # One numpy_function at a time: gathers hold the GIL, so parallel calls
    # would only contend; prefetch overlaps them with the training step.
    ds = ds.map(fetch)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    # Keep the handle alive as long as the dataset: the graph only holds the
    # Python function, and its closure the source.
    ds._synadb_source = src
    return ds


def _with_shape(t: tf.Tensor, spec: tf.TensorSpec) -> tf.Tensor:
    t.set_shape(spec.shape)
    return t


def create_distributed_dataset(path: str | os.PathLike[str], pattern: str, batch_size: int,
                               strategy: tf.distribute.Strategy | None = None,
                               label_pattern: str | None = None, shuffle: bool = False,
                               seed: int | None = None, dtype: Any = None, *,
                               drop_remainder: bool = False,
                               options: tf.distribute.InputOptions | None = None,
                               ) -> tf.distribute.DistributedDataset:
    """:func:`syna_dataset` distributed over ``strategy``'s replicas.

    Built with ``strategy.distribute_datasets_from_function``: each input
    pipeline (one per worker host) reads a disjoint shard of the rows, in
    batches of ``batch_size // num_replicas`` (``batch_size`` is global, as
    in ``model.fit``); the strategy hands each replica its own batches.

    Args:
        path: the synadb file.
        pattern: glob over row names.
        batch_size: the global batch size; must divide by the replica count.
        strategy: a ``tf.distribute.Strategy`` (default: the current one).
        label_pattern, shuffle, seed, dtype, drop_remainder: as in :func:`syna_dataset`.
        options: ``tf.distribute.InputOptions`` for the strategy.

    Returns:
        A ``tf.distribute.DistributedDataset``; iterate it and pass each
        element to ``strategy.run``, or hand it to ``model.fit`` (its
        ``cardinality`` is the number of steps in an epoch, which Keras
        takes as the epoch's length).

    Raises:
        InvalidArgument: ``batch_size`` does not divide by the replica count.
    """
    batch_size = _batch_size(batch_size)
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise errors.InvalidArgument(f"the global batch size {batch_size} does not divide "
                                     f"by {replicas} replicas")
    path = os.fspath(path)
    # Fail in the caller, not inside the strategy's input function.
    src = _Source(path, pattern, label_pattern, dtype)
    rows = len(src.x)
    src.engine.close()
    seen: list[tf.distribute.InputContext] = []

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        seen.append(ctx)
        return syna_dataset(path, pattern, ctx.get_per_replica_batch_size(batch_size),
                            label_pattern=label_pattern, shuffle=shuffle, seed=seed,
                            dtype=dtype, drop_remainder=drop_remainder,
                            num_shards=ctx.num_input_pipelines,
                            shard_index=ctx.input_pipeline_id)

    dist = strategy.distribute_datasets_from_function(dataset_fn, options)
    if seen:
        _fix_cardinality(dist, rows, batch_size // replicas, seen[0].num_input_pipelines,
                         replicas, drop_remainder)
    return dist


def _fix_cardinality(dist: Any, rows: int, per_replica: int, pipelines: int, replicas: int,
                     drop_remainder: bool) -> None:
    """Make ``dist.cardinality`` the number of steps in an epoch.

    TensorFlow (2.21) reports the cardinality of a
    ``distribute_datasets_from_function`` dataset as that of one input
    pipeline, i.e. the number of *per-replica* batches it yields.  When one
    pipeline feeds several replicas (MirroredStrategy over two devices, a
    multi-GPU worker) a step takes one batch for each of them, so an epoch
    has that many times fewer steps than reported.  Keras takes the
    cardinality as the epoch's length: it waited for steps that never came,
    ran dry and warned "Your input ran out of data; interrupting training"
    every epoch (and with ``steps_per_epoch`` set to the true length it did
    not restart the iterator, so every other epoch trained on nothing).
    ``experimental_distribute_dataset`` counts global batches and gets it
    right, but it cannot give each worker a disjoint shard to read: every
    worker would gather every row and keep its share.

    The count comes from the row count, not from this worker's pipeline:
    shard 0 is the largest, and a distributed epoch lasts until every
    pipeline is dry, so every worker agrees on the same number of steps.
    """
    local = max(1, replicas // max(1, pipelines))
    if local == 1 or getattr(dist, "_cardinality", None) is None:
        return  # one pipeline per replica: TF's count is the step count
    try:
        reported = int(dist.cardinality)
    except (TypeError, ValueError):  # not built (ParameterServerStrategy)
        return
    if reported < 0:  # unknown or infinite: nothing to correct
        return
    shard_rows = -(-rows // pipelines)
    batches = shard_rows // per_replica if drop_remainder else -(-shard_rows // per_replica)
    dist._cardinality = np.int64(-(-batches // local))
