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

A :class:`synadb.Dataset` (columns of kinds fixed, ragged, bytes, text,
json) by its name: elements are dicts of its columns, or tuples::

    ds = syna_dataset("data.db", "train", batch_size=32, columns=["ids", "label"],
                      as_tuple=True, shuffle=True, seed=0)
    ds.element_spec   # (RaggedTensorSpec([None, None], tf.int64, 1, tf.int64),
                      #  TensorSpec((None,), tf.int64))
    model.fit(ds.map(lambda ids, y: (ids.to_tensor(), y)), epochs=3)

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
the same spec but leaves sharding and per-epoch reshuffling to us.  A
dataset table goes the same way, one :meth:`synadb.Dataset.take` per batch:
a ragged column crosses the ``numpy_function`` as its values and row splits
and becomes a ``tf.RaggedTensor`` in the graph; bytes, text and json cross
as object arrays of bytes (``tf.string``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from .. import _convert, errors
from ..dataset import Column
from ..dataset import Dataset as _Table
from ..dataset import datasets as _dataset_names
from ..dataset import names_a_dataset
from ..tensors import DTYPES, RowView, TensorEngine

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


# -- dtype= : the casts get_tensor_tf makes, refused up front when they cannot be --
def _cast_dtype(dtype: Any, what: str = "dtype") -> np.dtype | None:
    """The numpy dtype ``dtype=`` asks for, or None to keep the stored one.

    Only the numeric dtypes a tensor is stored as (``get_tensor_tf`` casts to
    the same ones).  Checked when the pipeline is built: ``dtype=tf.string``
    used to pass here and fail on the first batch, deep inside tf.data.
    """
    if dtype is None:
        return None
    if isinstance(dtype, tf.DType) and dtype == tf.string:
        raise errors.InvalidArgument(
            f"{what}=tf.string: dtype= casts numeric data; the bytes, text and json columns "
            "of a synadb.Dataset come as tf.string already")
    dt = _np_dtype(dtype)
    assert dt is not None
    if dt.name not in DTYPES:
        raise errors.InvalidArgument(f"{what}={dtype!r}: cannot cast to {dt}; use one of "
                                     f"{', '.join(DTYPES)}")
    return dt


def _check_cast(stored: np.dtype, dt: np.dtype | None, what: str) -> None:
    """Refuse a cast that changes what the values mean (float to int, int to
    bool, signed to unsigned), as ``get_tensor_tf`` does."""
    if dt is not None and not np.can_cast(stored, dt, casting="same_kind"):
        raise errors.InvalidArgument(f"{what}: cannot cast {stored} to {dt} without changing "
                                     "what the values mean")


def _cast(arr: np.ndarray, dt: np.dtype | None) -> np.ndarray:
    """``arr`` as ``dt``; a narrowing cast checks that the values fit (an int
    out of range, a float that overflows), as ``get_tensor_tf`` does."""
    if dt is None or arr.dtype == dt:
        return arr
    if np.can_cast(arr.dtype, dt, casting="safe"):  # nothing to check: skip the scans
        return arr.astype(dt)
    return TensorEngine._finish(arr, None, dt)


# ------------------------------------------------------------ tensor rows
class _Source:
    """The file's row views, opened once per pipeline and gathered per batch.

    tf.data calls :meth:`gather` from its own threads; RowView caches its
    block views and the engine serializes map access, so sharing one
    read-only handle between those threads is safe.
    """

    def __init__(self, path: str, pattern: str, label_pattern: str | None,
                 dtype: Any) -> None:
        cast = _cast_dtype(dtype)  # before opening: nothing to close on a bad dtype
        self.engine = TensorEngine(path, read_only=True, progress=False)
        try:
            try:
                self.x: RowView = self.engine.rows(pattern)
            except errors.KeyNotFound as e:
                if not _has_glob(pattern):
                    names = _dataset_names(path)
                    if names:  # a dataset name misspelt, most likely
                        raise errors.KeyNotFound(f"{e}; the file holds the datasets "
                                                 f"{names}") from None
                raise
            self.y: RowView | None = (self.engine.rows(label_pattern)
                                      if label_pattern is not None else None)
            if self.y is not None and len(self.y) != len(self.x):
                raise errors.DimensionMismatch(
                    f"{pattern!r} has {len(self.x)} rows but {label_pattern!r} has "
                    f"{len(self.y)} labels in {path!r}")
            _check_cast(self.x.dtype, cast, f"dtype of {pattern!r}")
        except BaseException:
            self.engine.close()
            raise
        self.cast = None if cast == self.x.dtype else cast
        self.x_dtype = cast if cast is not None else self.x.dtype
        self.n = len(self.x)

    def close(self) -> None:
        self.engine.close()

    def gather(self, idx: np.ndarray) -> Any:
        xb = _cast(self.x.batch(idx), self.cast)
        return xb if self.y is None else (xb, self.y.batch(idx))

    def fetcher(self, dim: int | None) -> Any:
        x_spec = tf.TensorSpec((dim, *self.x.row_shape), _tf_dtype(self.x_dtype))
        outs = [x_spec]
        if self.y is not None:
            outs.append(tf.TensorSpec((dim, *self.y.row_shape), _tf_dtype(self.y.dtype)))

        def fetch(idx: tf.Tensor) -> Any:
            got = tf.numpy_function(self.gather, [idx], [s.dtype for s in outs],
                                    stateful=False)
            got = [_shaped(t, s.shape, dim) for t, s in zip(got, outs)]
            return got[0] if self.y is None else tuple(got)

        return fetch


def _shaped(t: tf.Tensor, shape: Any, dim: int | None) -> tf.Tensor:
    """``t`` with its static shape: checked when the batch dimension is fixed
    (``drop_remainder``), else only declared (numpy_function's outputs have none)."""
    if dim is not None:
        return tf.ensure_shape(t, shape)
    t.set_shape(shape)
    return t


# ----------------------------------------------------------- dataset tables
def _has_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _table_dtypes(dtype: Any) -> Any:
    if isinstance(dtype, dict):
        return {k: _cast_dtype(v, f"dtype[{k!r}]") for k, v in dtype.items()}
    dt = _cast_dtype(dtype)
    if dt is not None and dt.kind != "f":
        # It would only ever meet floating columns, so it could only truncate.
        raise errors.InvalidArgument(
            f"dtype={dtype!r} applies to the floating columns and would cast them to {dt} "
            "(losing their fractions); for other columns give a dict {column: dtype}")
    return dt


class _TableSource:
    """A :class:`synadb.Dataset` opened read-only once per pipeline; each
    batch of indices is one :meth:`~synadb.Dataset.take`, flattened into the
    arrays a ``numpy_function`` can return (a ragged column as its values
    and row splits, a string column as an object array of bytes)."""

    def __init__(self, path: str, name: str, columns: Any, as_tuple: bool, dtype: Any,
                 rows: int | None = None) -> None:
        casts = _table_dtypes(dtype)  # before opening: nothing to close on a bad dtype
        if isinstance(columns, str):
            columns = [columns]
        self.table = _Table(path, name, read_only=True, progress=False)
        try:
            have = self.table.columns
            names = list(columns) if columns is not None else list(have)
            missing = [c for c in names if c not in have]
            if missing:
                raise errors.KeyNotFound(f"dataset {name!r} in {path!r} has no column "
                                         f"{missing[0]!r} (it has {list(have)})")
            if len(set(names)) != len(names) or not names:
                raise errors.InvalidArgument(f"columns must name distinct columns, got {names}")
            self.cols = [have[c] for c in names]
            self.casts: dict[str, np.dtype | None] = {}
            for c in self.cols:
                if isinstance(casts, dict):
                    dt = casts.get(c.name)
                    if dt is not None and c.dtype is None:
                        raise errors.InvalidArgument(
                            f"dtype[{c.name!r}]: the column holds {c.kind}, not numbers")
                elif c.dtype is not None and c.dtype.kind == "f":
                    dt = casts
                else:
                    dt = None
                if c.dtype is not None:
                    _check_cast(c.dtype, dt, f"dtype of column {c.name!r}")
                self.casts[c.name] = None if dt == c.dtype else dt
            if isinstance(casts, dict):
                extra = [k for k in casts if k not in names]
                if extra:
                    raise errors.KeyNotFound(f"dtype names the column {extra[0]!r}, which is "
                                             f"not read (columns: {names})")
            total = len(self.table)
        except BaseException:
            self.table.close()
            raise
        self.names = names
        self.as_tuple = bool(as_tuple)
        # A fixed length: the rows there are now (every pipeline of a
        # distributed dataset gets the count its cardinality was made from).
        self.n = total if rows is None else min(rows, total)
        # tf.data may run two iterators of one dataset at once; a take updates
        # the handle's CRC bookkeeping, so one at a time.
        self.lock = threading.Lock()

    def close(self) -> None:
        self.table.close()

    def _dtype(self, c: Column) -> np.dtype:
        dt = self.casts[c.name]
        assert c.dtype is not None
        return dt if dt is not None else c.dtype

    def gather(self, idx: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            got = self.table.take(idx, self.names, ragged="flat", decode=False)
        out: list[np.ndarray] = []
        for c in self.cols:
            v = got[c.name]
            if c.kind == "fixed":
                out.append(_cast(v, self.casts[c.name]))
            elif c.kind == "ragged":
                vals, splits = v  # one gather: values and row splits
                out += [_cast(vals, self.casts[c.name]), splits]
            else:
                # bytes, and text/JSON as the UTF-8 the file holds
                arr = np.empty(len(v), dtype=object)
                arr[:] = v
                out.append(arr)
        return out

    def fetcher(self, dim: int | None) -> Any:
        tout: list[tf.DType] = []
        for c in self.cols:
            if c.kind == "fixed":
                tout.append(_tf_dtype(self._dtype(c)))
            elif c.kind == "ragged":
                tout += [_tf_dtype(self._dtype(c)), tf.int64]
            else:
                tout.append(tf.string)
        splits_dim = None if dim is None else dim + 1

        def fetch(idx: tf.Tensor) -> Any:
            flat = iter(tf.numpy_function(self.gather, [idx], tout, stateful=False))
            out: dict[str, Any] = {}
            for c in self.cols:
                if c.kind == "ragged":
                    vals, splits = next(flat), next(flat)
                    vals.set_shape((None, *c.shape))
                    splits = _shaped(splits, (splits_dim,), dim)
                    out[c.name] = tf.RaggedTensor.from_row_splits(vals, splits, validate=False)
                else:
                    out[c.name] = _shaped(next(flat), (dim, *c.shape), dim)
            return tuple(out[n] for n in self.names) if self.as_tuple else out

        return fetch


def _open(path: Any, pattern: Any, label_pattern: str | None, dtype: Any, columns: Any,
          as_tuple: bool) -> tuple[Any, tuple[str, str] | None]:
    """The source ``syna_dataset(path, pattern, ...)`` reads, and for a
    dataset table its (path, name) to reopen it by."""
    if names_a_dataset(path, pattern):
        if isinstance(path, _Table):
            if pattern is not None and pattern != path.name:
                raise errors.InvalidArgument(f"pattern={pattern!r} with the dataset "
                                             f"{path.name!r}: give one or the other")
            target = (path.path, path.name)
        else:
            target = (os.fspath(path), pattern)
        if label_pattern is not None:
            raise errors.InvalidArgument(
                "a dataset's elements are dicts of columns: choose them with columns=[...] "
                "(and as_tuple=True for (x, y)), not label_pattern")
        return _TableSource(*target, columns, as_tuple, dtype), target
    if columns is not None or as_tuple:
        raise errors.InvalidArgument(
            f"columns= and as_tuple= choose the columns of a synadb.Dataset; {pattern!r} is a "
            "pattern over tensor rows (give label_pattern= for (x, y))")
    if not isinstance(pattern, str) or not pattern:
        raise errors.InvalidArgument(f"give a pattern over row names (\"train/*\") or a "
                                     f"dataset's name, got {pattern!r}")
    return _Source(os.fspath(path), pattern, label_pattern, dtype), None


def _reopen(path: Any, pattern: Any, target: tuple[str, str] | None, label_pattern: str | None,
            dtype: Any, columns: Any, as_tuple: bool, rows: int) -> Any:
    if target is not None:
        return _TableSource(*target, columns, as_tuple, dtype, rows=rows)
    return _Source(os.fspath(path), pattern, label_pattern, dtype)


def _pipeline(src: Any, batch_size: int, shuffle: bool, seed: int | None, drop_remainder: bool,
              num_shards: int, shard_index: int, prefetch: bool) -> tf.data.Dataset:
    n = src.n
    fetch = src.fetcher(batch_size if drop_remainder else None)
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


def syna_dataset(path: str | os.PathLike[str] | _Table, pattern: str | None = None,
                 batch_size: int | None = None, label_pattern: str | None = None,
                 shuffle: bool = False, seed: int | None = None, dtype: Any = None, *,
                 drop_remainder: bool = False, num_shards: int = 1, shard_index: int = 0,
                 prefetch: bool = True, columns: Any = None,
                 as_tuple: bool = False) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of batches of the rows matching ``pattern``, or
    of the rows of a :class:`synadb.Dataset`.

    Tensor rows: each element is a batch ``x`` of shape ``(None,
    *row_shape)`` (the batch dimension is ``batch_size`` when
    ``drop_remainder``), or ``(x, y)`` with ``label_pattern``.

    A dataset (``pattern`` has no glob characters and names a
    :class:`synadb.Dataset` in the file, or ``path`` is one): each element is
    a dict of its columns (or a tuple in ``columns`` order with
    ``as_tuple``, e.g. ``(x, y)`` for ``model.fit``).  ``fixed`` columns come
    as dense tensors of their dtype and row shape, ``ragged`` ones as
    ``tf.RaggedTensor`` (ragged rank 1, the inner shape kept; ``.to_tensor()``
    pads), ``bytes`` and ``text`` as ``tf.string``, ``json`` as ``tf.string``
    holding the JSON text (``tf.io.decode_png`` or a JSON parser in a
    ``.map`` take them from there).

    Rows are gathered one batch at a time.  With ``shuffle``, each pass over
    the dataset (epoch) sees a new permutation; ``seed`` makes the sequence
    of permutations repeatable.

    Args:
        path: the synadb file, or an open :class:`synadb.Dataset` (read
            through a handle of its own).
        pattern: glob over row names, e.g. ``"train/*"``, or a dataset's name.
        batch_size: rows per batch.
        label_pattern: glob over labels; must match as many rows.
        shuffle: shuffle all rows (by index) every epoch.
        seed: the shuffle seed.
        dtype: cast ``x`` to this dtype (numpy or tf spelling); for a
            dataset, cast its floating columns (or a dict ``{column:
            dtype}``).  Only casts that keep what values mean (float64 to
            float32, int to float, int64 to int32 if the values fit).
        drop_remainder: drop a short last batch (gives a static batch dimension).
        num_shards: split the rows into this many disjoint shards ...
        shard_index: ... and keep this one (for multi-worker input).
        prefetch: end the pipeline with ``prefetch(AUTOTUNE)``.
        columns: a dataset's columns to read (default: all), in this order.
        as_tuple: a dataset's elements as tuples in ``columns`` order.

    Returns:
        The dataset; its ``element_spec`` is known before iterating.

    Raises:
        KeyNotFound: nothing matches a pattern; no such column.
        DimensionMismatch: the label count differs from the row count.
        InvalidArgument: a bad batch size or shard; a dtype that is not
            numeric (``tf.string``) or that would change what the values
            mean (float to int); ``label_pattern`` with a dataset, or
            ``columns`` with a pattern.

    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "d.db")
    >>> with TensorEngine(p) as e:
    ...     _ = e.put_tensor("x/", np.arange(10, dtype=np.float32).reshape(5, 2))
    >>> ds = syna_dataset(p, "x/*", batch_size=2)
    >>> ds.element_spec
    TensorSpec(shape=(None, 2), dtype=tf.float32, name=None)
    >>> [b.shape[0] for b in ds]
    [2, 2, 1]
    >>> import synadb
    >>> with synadb.Dataset(p, "docs", progress=False) as t:
    ...     _ = t.append({"ids": [np.arange(3), np.arange(1)], "label": np.array([0, 1])})
    >>> ds = syna_dataset(p, "docs", batch_size=2)
    >>> ds.element_spec["ids"]
    RaggedTensorSpec(TensorShape([None, None]), tf.int64, 1, tf.int64)
    >>> next(iter(ds))["ids"].to_list()
    [[0, 1, 2], [0]]
    """
    batch_size = _batch_size(batch_size)
    num_shards = _batch_size(num_shards, "num_shards")
    if isinstance(shard_index, bool) or not isinstance(shard_index, (int, np.integer)) \
            or not 0 <= shard_index < num_shards:
        raise errors.InvalidArgument(f"shard_index must be in [0, {num_shards}), "
                                     f"got {shard_index!r}")
    src, _target = _open(path, pattern, label_pattern, dtype, columns, as_tuple)
    return _pipeline(src, batch_size, shuffle, seed, drop_remainder, num_shards, shard_index,
                     prefetch)


def create_distributed_dataset(path: str | os.PathLike[str] | _Table,
                               pattern: str | None = None, batch_size: int | None = None,
                               strategy: tf.distribute.Strategy | None = None,
                               label_pattern: str | None = None, shuffle: bool = False,
                               seed: int | None = None, dtype: Any = None, *,
                               drop_remainder: bool = False,
                               options: tf.distribute.InputOptions | None = None,
                               columns: Any = None, as_tuple: bool = False,
                               ) -> tf.distribute.DistributedDataset:
    """:func:`syna_dataset` distributed over ``strategy``'s replicas.

    Built with ``strategy.distribute_datasets_from_function``: each input
    pipeline (one per worker host) reads a disjoint shard of the rows, in
    batches of ``batch_size // num_replicas`` (``batch_size`` is global, as
    in ``model.fit``); the strategy hands each replica its own batches.

    Args:
        path: the synadb file, or an open :class:`synadb.Dataset`.
        pattern: glob over row names, or a dataset's name.
        batch_size: the global batch size; must divide by the replica count.
        strategy: a ``tf.distribute.Strategy`` (default: the current one).
        label_pattern, shuffle, seed, dtype, drop_remainder, columns, as_tuple:
            as in :func:`syna_dataset`.
        options: ``tf.distribute.InputOptions`` for the strategy.

    Returns:
        A ``tf.distribute.DistributedDataset``; iterate it and pass each
        element to ``strategy.run``, or hand it to ``model.fit`` (its
        ``cardinality`` is the number of steps in an epoch, which Keras
        takes as the epoch's length).

    Raises:
        InvalidArgument: ``batch_size`` does not divide by the replica count,
            or as in :func:`syna_dataset`.
    """
    batch_size = _batch_size(batch_size)
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise errors.InvalidArgument(f"the global batch size {batch_size} does not divide "
                                     f"by {replicas} replicas")
    # Fail in the caller, not inside the strategy's input function.
    src, target = _open(path, pattern, label_pattern, dtype, columns, as_tuple)
    rows = src.n
    src.close()
    seen: list[tf.distribute.InputContext] = []

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        seen.append(ctx)
        s = _reopen(path, pattern, target, label_pattern, dtype, columns, as_tuple, rows)
        return _pipeline(s, ctx.get_per_replica_batch_size(batch_size), shuffle, seed,
                         drop_remainder, ctx.num_input_pipelines, ctx.input_pipeline_id,
                         prefetch=True)

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
