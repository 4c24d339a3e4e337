"""PyTorch adapters: datasets that index a synadb file's rows through its memory map.

Install with ``pip install 'synadb[torch]'``.  Only this module (and its alias
``synadb.torch``) imports ``torch``; ``import synadb`` does not.

Setup (rows written once with :class:`~synadb.tensors.TensorEngine`)::

    from synadb.tensors import TensorEngine
    from synadb.integrations.torch import SynaDataset, SynaDataLoader

    with TensorEngine("train.db") as engine:
        engine.put_tensor("train/", X)          # float32 (N, 784)
        engine.put_tensor("labels/", y)         # int64 (N,)

Train (map-style; each worker reopens the file read-only)::

    ds = SynaDataset("train.db", "train/*", label_pattern="labels/*")
    for x, y in SynaDataLoader(ds, batch_size=256, shuffle=True, num_workers=2):
        ...

Distributed (one process per rank; the process group is already initialized)::

    loader, sampler = create_distributed_loader(ds, batch_size=256, num_workers=2)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, y in loader: ...

Stream (iterable-style; rows are split between DataLoader workers)::

    stream = SynaIterableDataset("train.db", "train/*", shuffle_buffer=10_000, seed=0)
    for x in torch.utils.data.DataLoader(stream, batch_size=256, num_workers=2): ...

Memory: a dataset holds a :class:`~synadb.tensors.RowView`, not the array;
each fetch copies only the rows asked for (the views into the map are
read-only, and ``torch.from_numpy`` of a read-only array would hand out a
tensor whose writes fault or warn).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import _convert, errors
from ..dataset import Dataset as _Table
from ..dataset import names_a_dataset
from ..dataset import pad as _pad
from ..tensors import RowView, TensorEngine

try:
    import torch
    import torch.distributed as dist
    from torch.utils.data import (
        DataLoader,
        Dataset,
        DistributedSampler,
        IterableDataset,
        Sampler,
        default_collate,
        get_worker_info,
    )
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency("torch", "torch", "synadb.integrations.torch") from e

__all__ = [
    "SynaDataLoader",
    "SynaDataset",
    "SynaIterableDataset",
    "SeededSampler",
    "create_distributed_loader",
    "pad_collate",
    "to_torch",
]

Transform = Callable[[Any], Any]
_default_collate: Callable[[Any], Any] = default_collate  # typed: torch's is not


# ------------------------------------------------------------------ helpers
def _device(device: Any) -> torch.device:
    """``device`` as a ``torch.device``; CUDA only where CUDA is."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise errors.InvalidArgument(f"{device!r} is not a torch device") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise errors.InvalidArgument(
            f"device {str(dev)!r} asks for CUDA, but torch {torch.__version__} sees no CUDA "
            "device on this machine (a CPU-only build or no GPU); use device='cpu'")
    return dev


def _np_dtype(dtype: Any) -> np.dtype | None:
    """A numpy dtype for ``dtype`` (numpy or torch spelling), or None to keep the stored one."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        try:
            return np.dtype(torch.empty((), dtype=dtype).numpy().dtype)
        except TypeError as e:  # bfloat16 and friends have no numpy twin
            raise errors.InvalidArgument(f"{dtype} has no numpy equivalent; cast in a "
                                         "transform instead") from e
    try:
        dt: np.dtype = np.dtype(dtype)
    except TypeError as e:
        raise errors.InvalidType(f"{dtype!r} is not a dtype") from e
    return dt


def _tensor(arr: np.ndarray, dtype: np.dtype | None) -> torch.Tensor:
    """A tensor owning a writable copy of ``arr`` (which may be a read-only map view)."""
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)  # astype copies
    elif not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")
    return torch.from_numpy(np.asarray(arr))


def to_torch(array: Any, device: str | torch.device = "cpu") -> torch.Tensor:
    """``array`` as a tensor on ``device``.

    On the CPU the tensor shares the array's memory when the array is
    writable; a read-only array (a view into the file's map) is copied first.

    Args:
        array: a numpy array or anything ``np.asarray`` accepts.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or a ``torch.device``.

    Returns:
        A ``torch.Tensor`` with the array's dtype and shape.

    Raises:
        InvalidArgument: ``device`` is not a device, or names CUDA on a machine without it.

    >>> to_torch(np.arange(3, dtype=np.int32))
    tensor([0, 1, 2], dtype=torch.int32)
    """
    dev = _device(device)
    t = _tensor(np.asarray(array), None)
    return t if dev.type == "cpu" else t.to(dev)


def _get_tensor_torch(engine: TensorEngine, pattern: str, device: Any = "cpu",
                      dtype: Any = None) -> torch.Tensor:
    """What ``TensorEngine.get_tensor_torch`` returns (its ``torch_tensor`` converter).

    ``dtype`` may be a torch dtype (``torch.float16``) or a numpy one; the
    device is checked before anything is read.
    """
    dev = _device(device)
    arr = engine.get_tensor(pattern, dtype=_np_dtype(dtype))
    return to_torch(arr, dev)


_convert.register("torch_tensor", _get_tensor_torch)


def _open_views(path: str, pattern: str,
                label_pattern: str | None) -> tuple[TensorEngine, RowView, RowView | None]:
    engine = TensorEngine(path, read_only=True, progress=False)
    try:
        x = engine.rows(pattern)
        y = engine.rows(label_pattern) if label_pattern is not None else None
    except BaseException:
        engine.close()
        raise
    if y is not None and len(y) != len(x):
        engine.close()
        raise errors.DimensionMismatch(
            f"{pattern!r} has {len(x)} rows but {label_pattern!r} has {len(y)} labels in {path!r}")
    return engine, x, y


class _Reader:
    """Path and patterns, plus an engine opened lazily once per process.

    Pickling keeps only the recipe, so the dataset crosses into spawn
    workers; a fork worker sees a different pid and reopens rather than share
    the parent's handle (whose lock and map belong to the parent).
    """

    _len: int
    row_shape: tuple[int, ...]
    stored_dtype: np.dtype

    def __init__(self, path: str | os.PathLike[str], pattern: str, label_pattern: str | None,
                 transform: Transform | None, target_transform: Transform | None,
                 dtype: Any) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise errors.InvalidArgument("pattern is empty; use e.g. 'train/*'")
        self.path = os.fspath(path)
        self.pattern = pattern
        self.label_pattern = label_pattern
        self.transform = transform
        self.target_transform = target_transform
        self.dtype = dtype
        self._np_dtype = _np_dtype(dtype)
        self._engine: TensorEngine | None = None
        self._x: RowView | None = None
        self._y: RowView | None = None
        self._pid = -1
        # Open now: a bad path, pattern or label count fails here, not in a worker.
        self._views()
        assert self._x is not None
        self._len = len(self._x)
        self.row_shape = self._x.row_shape
        self.stored_dtype = self._x.dtype

    def _views(self) -> tuple[RowView, RowView | None]:
        if self._engine is None or self._pid != os.getpid():
            old = self._engine
            self._engine, self._x, self._y = _open_views(self.path, self.pattern,
                                                         self.label_pattern)
            self._pid = os.getpid()
            if old is not None:
                old.close()  # the fork's copy: read-only, closing it writes nothing
            self._len = len(self._x)
            self._end = self._engine.db.storage.log_end()
        assert self._x is not None
        return self._x, self._y

    def _fresh(self) -> None:
        """Reopen the views if a writer changed the file since: a re-put
        tensor (more or fewer rows) is read whole from the next epoch on,
        which asks ``len`` again (the views held until then stay one
        consistent version: they pin the map they were read from)."""
        if self._engine is not None and self._pid == os.getpid() and \
                self._engine.db.storage.log_end() != self._end:
            self._engine = None  # the old views keep their map alive while used
            self._views()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_engine=None, _x=None, _y=None, _pid=-1)
        return state

    def close(self) -> None:
        """Close this process's handle; the next fetch reopens it."""
        if self._engine is not None and self._pid == os.getpid():
            self._engine.close()
        self._engine = self._x = self._y = None
        self._pid = -1

    def _x_tensor(self, arr: np.ndarray) -> Any:
        t = _tensor(arr, self._np_dtype)
        return self.transform(t) if self.transform is not None else t

    def _y_tensor(self, arr: np.ndarray) -> Any:
        t = _tensor(np.asarray(arr), None)
        return self.target_transform(t) if self.target_transform is not None else t


# -------------------------------------------------------------- map-style
class _Samples(list):  # type: ignore[type-arg]
    """The samples of one batch, plus the batch already stacked.

    ``__getitems__`` must return a list of samples (that is what any
    ``collate_fn`` expects), but it fetched them as one array: :func:`_collate`
    hands that array on instead of stacking the rows again.
    """

    stacked: Any = None


class _Batch(Sequence):  # type: ignore[type-arg]
    """The samples of one batch, made only if asked for, plus the batch
    already stacked.

    The default :func:`_collate` takes ``stacked`` and never looks at the
    samples, so a batch of 256 rows costs one gather and no per-row objects;
    a custom ``collate_fn`` indexes or iterates it like the list of samples
    ``__getitems__`` is meant to return.
    """

    __slots__ = ("stacked", "_n", "_sample", "_made")

    def __init__(self, stacked: Any, n: int, sample: Callable[[int], Any]) -> None:
        self.stacked = stacked
        self._n = n
        self._sample = sample
        self._made: list[Any] | None = None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if self._made is None:
            self._made = [self._sample(j) for j in range(self._n)]
        return self._made[i]


def _collate(batch: Any) -> Any:
    stacked = getattr(batch, "stacked", None)
    if stacked is not None:
        return stacked
    return _default_collate(batch)


class SynaDataset(_Reader, Dataset):  # type: ignore[type-arg]
    """A map-style ``torch.utils.data.Dataset`` over the rows matching ``pattern``.

    Rows are read by index through :meth:`TensorEngine.rows`, so the dataset
    never holds the whole array.  ``dataset[i]`` is ``x`` (a tensor holding a
    copy of row ``i``), or ``(x, y)`` when ``label_pattern`` is given.
    ``__getitems__`` fetches a whole batch with one gather, which
    ``DataLoader`` uses when it batches.

    The dataset pickles as its path and patterns, so it works with any
    ``num_workers`` and with both ``fork`` and ``spawn``: each worker
    process reopens the file read-only on first use.

    Args:
        path: the synadb file.
        pattern: glob over row names, e.g. ``"train/*"``.
        label_pattern: glob over the label rows; must match as many rows.
        transform: applied to each ``x`` tensor.
        target_transform: applied to each ``y`` tensor.
        dtype: cast ``x`` to this numpy or torch dtype (default: as stored).

    Raises:
        KeyNotFound: nothing matches a pattern.
        DimensionMismatch: the label count differs from the row count, or the
            pattern matches tensors of different row shape or dtype.
        DatabaseNotFound: no file at ``path``.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "d.db")
    >>> with TensorEngine(path) as e:
    ...     _ = e.put_tensor("x/", np.arange(6, dtype=np.float32).reshape(3, 2))
    ...     _ = e.put_tensor("y/", np.array([0, 1, 0]))
    >>> ds = SynaDataset(path, "x/*", label_pattern="y/*")
    >>> len(ds), ds[1]
    (3, (tensor([2., 3.]), tensor(1)))
    """

    def __new__(cls, path: Any = None, pattern: str = "train/*", *args: Any,
                **kwargs: Any) -> Any:
        if cls is SynaDataset and names_a_dataset(path, pattern):
            return super().__new__(SynaTableDataset)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike[str], pattern: str = "train/*",
                 label_pattern: str | None = None, transform: Transform | None = None,
                 target_transform: Transform | None = None, dtype: Any = None) -> None:
        _Reader.__init__(self, path, pattern, label_pattern, transform, target_transform,
                         dtype)

    def __len__(self) -> int:
        self._fresh()
        return self._len

    def _rows_for(self, top: int) -> tuple[RowView, RowView | None]:
        # A persistent worker outlives epochs: after a re-put it catches up
        # here (one cheap look at the file's end per batch).
        self._views()
        self._fresh()
        return self._views()

    def __getitem__(self, index: int) -> Any:
        x, y = self._rows_for(int(index))
        i = int(index)
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} out of range for a dataset of {self._len} rows")
        xt = self._x_tensor(x[i])
        return xt if y is None else (xt, self._y_tensor(y[i]))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        idx = np.asarray(indices, dtype=np.int64)
        x, y = self._rows_for(int(idx.max()) if len(idx) else 0)
        if len(idx) and (idx.min() < -self._len or idx.max() >= self._len):
            raise IndexError(f"an index in the batch is out of range for {self._len} rows")
        idx = np.where(idx < 0, idx + self._len, idx)
        xb = _tensor(x.batch(idx), self._np_dtype)
        yb = _tensor(y.batch(idx), None) if y is not None else None
        if self.transform is None and self.target_transform is None:
            # Samples as views of the batch, if asked for; _collate takes it whole.
            if yb is None:
                return _Batch(xb, len(idx), xb.__getitem__)  # type: ignore[return-value]
            return _Batch((xb, yb), len(idx),  # type: ignore[return-value]
                          lambda i: (xb[i], yb[i]))
        out = _Samples()
        xs = [self.transform(r) if self.transform else r for r in xb.unbind(0)]
        if yb is None:
            out.extend(xs)
        else:
            ys = [self.target_transform(r) if self.target_transform else r
                  for r in yb.unbind(0)]
            out.extend(zip(xs, ys))
        return out

    def __repr__(self) -> str:
        labels = f", label_pattern={self.label_pattern!r}" if self.label_pattern else ""
        return (f"SynaDataset({self.path!r}, {self.pattern!r}{labels}; {self._len} rows of "
                f"{self.stored_dtype}{list(self.row_shape)})")



# ----------------------------------------------------------- dataset tables
def _dtypes(dtype: Any) -> Any:
    if isinstance(dtype, dict):
        return {k: _np_dtype(v) for k, v in dtype.items()}
    return _np_dtype(dtype)


def pad_collate(pad_value: Any = 0, columns: Sequence[str] | None = None) -> Callable[[Any], Any]:
    """A ``collate_fn`` that pads ragged columns (lists of 1-d+ tensors, e.g.
    token ids) to the longest row and adds ``<name>_lengths``; other
    columns stack as ``default_collate`` does, and strings/bytes stay lists.

    Use it with samples that are dicts (a :class:`SynaDataset` over a
    :class:`synadb.Dataset`), e.g. ``DataLoader(ds, collate_fn=pad_collate())``.
    """

    def collate(batch: Any) -> Any:
        stacked = getattr(batch, "stacked", None)
        if isinstance(stacked, dict):
            return _pad_dict(stacked, pad_value, columns)
        if not batch or not isinstance(batch[0], dict):
            return _default_collate(batch)
        out: dict[str, Any] = {}
        for k in batch[0]:
            vals = [b[k] for b in batch]
            same = all(isinstance(v, torch.Tensor) for v in vals) and \
                len({tuple(v.shape) for v in vals}) == 1
            out[k] = torch.stack(vals) if same else vals
        return _pad_dict(out, pad_value, columns)

    return collate


def _pad_dict(batch: dict[str, Any], pad_value: Any, columns: Sequence[str] | None) -> Any:
    out = dict(batch)
    for k, v in batch.items():
        if columns is not None and k not in columns:
            continue
        if isinstance(v, list) and v and all(isinstance(t, torch.Tensor) and t.ndim >= 1
                                             for t in v):
            padded, lengths = _pad([t.numpy() for t in v], pad_value)
            out[k] = torch.from_numpy(padded)
            out[k + "_lengths"] = torch.from_numpy(lengths)
    return out


class SynaTableDataset(SynaDataset):
    """A map-style dataset over a :class:`synadb.Dataset`: each sample is a
    dict of its columns (or a tuple, with ``as_tuple``).

    Made by ``SynaDataset(path, "train")`` when ``"train"`` names a dataset
    in the file (no glob characters), or ``SynaDataset(ds)``.  ``fixed``
    columns come as tensors, ``ragged`` ones as 1-d+ tensors of varying
    length (batched as a list, or padded with ``ragged="pad"`` plus a
    ``<name>_lengths`` tensor), ``bytes``/``text``/``json`` as Python values.

    Args:
        path: the file, or an open :class:`synadb.Dataset`.
        pattern: the dataset's name.
        columns: the columns to read (default: all), in this order.
        as_tuple: samples as tuples in ``columns`` order, e.g. ``(x, y)``.
        transform: applied to each sample (the dict, or the tuple).
        dtype: cast floating columns to this numpy or torch dtype, or a dict
            ``{column: dtype}``.
        ragged: ``"list"`` or ``"pad"`` (how a batch holds ragged columns).
        pad_value: the padding of ``ragged="pad"``.

    The length is the row count when the dataset is made (rows appended
    later show after :meth:`refresh`): workers index the same rows.
    """

    def __init__(self, path: Any, pattern: str = "train", label_pattern: str | None = None,
                 transform: Transform | None = None, target_transform: Transform | None = None,
                 dtype: Any = None, *, columns: Sequence[str] | None = None,
                 as_tuple: bool = False, ragged: str = "list", pad_value: Any = 0) -> None:
        if label_pattern is not None or target_transform is not None:
            raise errors.InvalidArgument(
                "a dataset's samples are dicts of columns: choose them with columns=[...] "
                "(and as_tuple=True for (x, y)), not label_pattern/target_transform")
        if ragged not in ("list", "pad"):
            raise errors.InvalidArgument(f"ragged is 'list' or 'pad', got {ragged!r}")
        if isinstance(path, _Table):
            name, path = path.name, path.path
        else:
            name = pattern
        self.path = os.fspath(path)
        self.pattern = self.name = name
        self.label_pattern = None
        self.transform = transform
        self.target_transform = None
        self.dtype = dtype
        self._np_dtype = _dtypes(dtype)
        self.as_tuple = bool(as_tuple)
        self.ragged = ragged
        self.pad_value = pad_value
        self._table: _Table | None = None
        self._pid = -1
        t = self._open()
        names = list(t.columns)
        self.columns = list(columns) if columns is not None else names
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise errors.KeyNotFound(f"dataset {name!r} in {self.path!r} has no column "
                                     f"{missing[0]!r} (it has {names})")
        self.kinds = {c: t.columns[c].kind for c in self.columns}
        self._len = len(t)

    def _open(self) -> _Table:
        if self._table is None or self._pid != os.getpid():
            self._table = _Table(self.path, self.name, read_only=True, progress=False)
            self._pid = os.getpid()
        return self._table

    def __len__(self) -> int:
        return self._len

    def refresh(self) -> int:
        """Take in rows appended since the dataset was made; returns the length."""
        self._len = len(self._open())
        return self._len

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_table=None, _pid=-1)
        return state

    def close(self) -> None:
        if self._table is not None and self._pid == os.getpid():
            self._table.close()
        self._table = None
        self._pid = -1

    def _cast(self, name: str, arr: np.ndarray) -> np.ndarray:
        dt = self._np_dtype.get(name) if isinstance(self._np_dtype, dict) else self._np_dtype
        if dt is not None and arr.dtype.kind == "f" and dt != arr.dtype:
            return arr.astype(dt)
        return arr

    def _batch(self, idx: np.ndarray) -> dict[str, Any]:
        got = self._open().take(idx, self.columns)
        out: dict[str, Any] = {}
        for c in self.columns:
            v = got[c]
            kind = self.kinds[c]
            if kind == "fixed":
                out[c] = torch.from_numpy(self._cast(c, v))
            elif kind == "ragged":
                out[c] = [torch.from_numpy(self._cast(c, a)) for a in v]
            else:
                out[c] = v
        return out

    def _check(self, idx: np.ndarray) -> np.ndarray:
        n = self._len
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"an index is out of range for a dataset of {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def _shape(self, sample: dict[str, Any]) -> Any:
        return tuple(sample[c] for c in self.columns) if self.as_tuple else sample

    def __getitem__(self, index: int) -> Any:
        b = self._batch(self._check(np.array([int(index)], dtype=np.int64)))
        sample = self._shape({c: v[0] for c, v in b.items()})
        return self.transform(sample) if self.transform is not None else sample

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        idx = self._check(np.asarray(indices, dtype=np.int64).reshape(-1))
        b = self._batch(idx)
        k = len(idx)

        def sample(i: int) -> Any:
            return self._shape({c: v[i] for c, v in b.items()})

        if self.transform is not None:
            out = _Samples()
            out.extend(self.transform(sample(i)) for i in range(k))
            return out
        stacked = _pad_dict(b, self.pad_value, None) if self.ragged == "pad" else b
        stacked = tuple(stacked[c] for c in self.columns) if self.as_tuple else stacked
        return _Batch(stacked, k, sample)  # type: ignore[return-value]

    def __repr__(self) -> str:
        cols = ", ".join(f"{c}: {k}" for c, k in self.kinds.items())
        return f"SynaDataset({self.path!r}, {self.name!r}; {self._len} rows; {cols})"

# ---------------------------------------------------------------- loaders
def _move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple):
        return tuple(_move(b, device) for b in batch)
    if isinstance(batch, list):
        return [_move(b, device) for b in batch]
    if isinstance(batch, dict):
        return {k: _move(v, device) for k, v in batch.items()}
    return batch


class SeededSampler(Sampler[int]):
    """Indices of a map-style dataset in an order that depends only on
    ``seed`` and the epoch: the same for any ``num_workers``, on any
    machine, and after a restart.

    Each pass advances the epoch by one (so every epoch reshuffles) unless
    :meth:`set_epoch` chose it.  ``start`` skips the first indices of the
    next pass (resuming mid-epoch reads nothing for them).

    Args:
        data_source: the dataset (its ``len`` is taken at every pass).
        shuffle: a seeded permutation, else ``0..n-1``.
        seed: the seed; ``None`` draws one from torch's global generator
            (so ``torch.manual_seed`` makes it repeatable).
    """

    def __init__(self, data_source: Any, shuffle: bool = True, seed: int | None = None) -> None:
        self.data_source = data_source
        self.shuffle = bool(shuffle)
        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise errors.InvalidType(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0
        self._started = False
        self._chosen = False

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order for the next pass."""
        self.epoch = int(epoch)
        self._chosen = True

    def __len__(self) -> int:
        return max(0, len(self.data_source) - self.start)

    def order(self, epoch: int) -> np.ndarray:
        """The whole order of ``epoch``."""
        n = len(self.data_source)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed & (2**63 - 1), int(epoch)]).permutation(n)

    def __iter__(self) -> Iterator[int]:
        if self._started and not self._chosen:
            self.epoch += 1
        self._started, self._chosen = True, False
        start, self.start = self.start, 0
        return iter(self.order(self.epoch)[start:].tolist())


class SynaDataLoader(DataLoader):  # type: ignore[type-arg]
    """``torch.utils.data.DataLoader`` with defaults for synadb datasets.

    Differences from ``DataLoader``: ``batch_size`` defaults to 32; workers
    persist across epochs when ``num_workers > 0`` (reopening the file every
    epoch buys nothing); ``pin_memory`` defaults to on only when batches go
    to CUDA; the default ``collate_fn`` takes the batch
    :meth:`SynaDataset.__getitems__` already stacked; and ``device`` moves
    every batch there (``non_blocking``, from pinned memory).

    Order and resumption: a map-style dataset is read in the order of a
    :class:`SeededSampler` (``seed``), the same whatever ``num_workers`` is;
    each pass over the loader is the next epoch unless :meth:`set_epoch`
    says which.  :meth:`state_dict` records the epoch and the batches
    already yielded; :meth:`load_state_dict` on a new loader resumes at the
    next batch of that epoch (as ``torchdata``'s StatefulDataLoader does).

    Args:
        dataset: any dataset, typically a :class:`SynaDataset`.
        batch_size: rows per batch.
        shuffle: shuffle each epoch.
        seed: the shuffle seed (default: drawn from torch's generator).
        device: where batches go; ``None`` leaves them on the CPU.
        **kwargs: anything ``DataLoader`` takes.

    Raises:
        InvalidArgument: ``device`` names CUDA on a machine without CUDA.
    """

    def __init__(self, dataset: Any, batch_size: int | None = 32, shuffle: bool | None = None,
                 num_workers: int = 0, *, seed: int | None = None,
                 device: str | torch.device | None = None,
                 pin_memory: bool | None = None, persistent_workers: bool | None = None,
                 collate_fn: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        self.device = _device(device) if device is not None else None
        to_cuda = self.device is not None and self.device.type == "cuda"
        if pin_memory is None:
            pin_memory = to_cuda  # _device already refused CUDA where there is none
        if persistent_workers is None:
            persistent_workers = num_workers > 0
        if collate_fn is None and batch_size is not None:
            collate_fn = _collate
        iterable = isinstance(dataset, IterableDataset)
        self.seeded: SeededSampler | None = None
        if (not iterable and kwargs.get("sampler") is None
                and kwargs.get("batch_sampler") is None):
            self.seeded = SeededSampler(dataset, shuffle=bool(shuffle), seed=seed)
            kwargs["sampler"] = self.seeded
            shuffle = None
        elif iterable and isinstance(dataset, SynaIterableDataset) and batch_size is not None \
                and dataset.batch_size is None:
            dataset.group = int(batch_size)  # workers deal whole batches: see its __iter__
        self._epoch_batches = 0
        self._resume = 0
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle,
                         num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, collate_fn=collate_fn,
                         **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch``'s order on the next pass (sampler and dataset)."""
        for obj in (self.seeded, self.sampler, self.dataset):
            fn = getattr(obj, "set_epoch", None)
            if fn is not None:
                fn(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is: the epoch and the batches it has yielded in it."""
        if self.seeded is None:
            raise errors.InvalidArgument("state_dict needs the loader's own sampler (no "
                                         "sampler=/batch_sampler=, a map-style dataset)")
        return {"epoch": self.seeded.epoch, "seed": self.seeded.seed,
                "shuffle": self.seeded.shuffle, "batches": self._epoch_batches,
                "batch_size": self.batch_size, "length": len(self.dataset)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the batch after the one ``state`` was taken at."""
        if self.seeded is None:
            raise errors.InvalidArgument("load_state_dict needs the loader's own sampler")
        if state.get("batch_size") != self.batch_size:
            raise errors.InvalidArgument(f"the state was taken with batch_size "
                                         f"{state.get('batch_size')}, this loader has "
                                         f"{self.batch_size}")
        self.seeded.seed = int(state["seed"])
        self.seeded.shuffle = bool(state["shuffle"])
        self.seeded.set_epoch(int(state["epoch"]))
        self._resume = int(state["batches"])

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        skip, self._resume = self._resume, 0
        if self.seeded is not None:
            self.seeded.start = skip * (self.batch_size or 1)
        it = super().__iter__()
        return self._count(it, skip)

    def _count(self, it: Iterator[Any], skip: int) -> Iterator[Any]:
        self._epoch_batches = skip
        move = self.device is not None and self.device.type != "cpu"
        for b in it:
            self._epoch_batches += 1
            yield _move(b, self.device) if move else b


def create_distributed_loader(dataset: Any, batch_size: int, num_workers: int = 0,
                              shuffle: bool = True, seed: int = 0, *, rank: int | None = None,
                              world_size: int | None = None, drop_last: bool = False,
                              drop_last_batch: bool = False, **kwargs: Any
                              ) -> tuple[SynaDataLoader, DistributedSampler[Any]]:
    """A loader over this rank's shard of ``dataset``, and the sampler that picks it.

    The shard comes from a ``DistributedSampler``: the initialized process
    group's rank and world size, or ``rank``/``world_size`` given here.
    Call ``sampler.set_epoch(epoch)`` before each epoch so that shuffling
    differs between epochs (and agrees between ranks).  Unless
    ``drop_last``, the sampler pads with repeated indices so every rank gets
    the same count; shards are disjoint when ``len(dataset)`` divides evenly.

    Args:
        dataset: a map-style dataset (e.g. :class:`SynaDataset`).
        batch_size: rows per batch on each rank.
        num_workers: loader worker processes on each rank.
        shuffle: shuffle within the epoch (same permutation on every rank).
        seed: the shuffle seed; must be the same on every rank.
        rank: this process's rank (default: from the process group).
        world_size: the number of ranks (default: from the process group).
        drop_last: the sampler drops the dataset's tail instead of padding it
            (``DistributedSampler``'s meaning).
        drop_last_batch: the loader drops each epoch's short last batch
            (``DataLoader``'s ``drop_last``).
        **kwargs: passed on to :class:`SynaDataLoader`.

    Returns:
        ``(loader, sampler)``.

    Raises:
        InvalidArgument: no process group is initialized and ``rank`` or
            ``world_size`` is missing, or the rank is out of range.
    """
    if rank is None or world_size is None:
        if not (dist.is_available() and dist.is_initialized()):
            raise errors.InvalidArgument(
                "no torch.distributed process group is initialized: call "
                "torch.distributed.init_process_group first, or pass rank= and world_size=")
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise errors.InvalidArgument(f"rank {rank} is not in [0, {world_size})")
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
        drop_last=drop_last)
    loader = SynaDataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler,
                            num_workers=num_workers, drop_last=drop_last_batch, **kwargs)
    return loader, sampler


# ---------------------------------------------------------------- iterable
class SynaIterableDataset(_Reader, IterableDataset):  # type: ignore[type-arg]
    """An iterable-style dataset that streams the rows matching ``pattern``.

    Rows are read ``read_rows`` at a time in key order, never all at once.
    Under a ``DataLoader`` with workers, worker ``k`` of ``n`` streams the
    ``k``-th contiguous slice of the rows, so an epoch yields every row
    exactly once.  ``shuffle_buffer > 0`` shuffles through a buffer of that
    many rows (as ``tf.data`` does): cheap, but only local.

    Args:
        path: the synadb file.
        pattern: glob over row names.
        batch_size: ``None`` yields single rows (let the ``DataLoader``
            batch them); an int yields batches of that many rows (use
            ``DataLoader(..., batch_size=None)``); a worker's last batch may
            be shorter.
        shuffle_buffer: rows held for shuffling; 0 keeps key order.
        seed: seeds the shuffle, with the epoch (:meth:`set_epoch`) and worker id.
        label_pattern: glob over labels; items become ``(x, y)``.
        transform: applied to each row's ``x`` (only when ``batch_size`` is None).
        target_transform: applied to each row's ``y`` (likewise).
        dtype: cast ``x`` to this numpy or torch dtype.
        read_rows: rows fetched from the file at a time.
    """

    def __init__(self, path: str | os.PathLike[str], pattern: str = "train/*",
                 batch_size: int | None = None, shuffle_buffer: int = 0,
                 seed: int | None = None, *, label_pattern: str | None = None,
                 transform: Transform | None = None, target_transform: Transform | None = None,
                 dtype: Any = None, read_rows: int = 1024, shuffle: bool = False) -> None:
        for name, v, low in (("batch_size", batch_size, 1), ("shuffle_buffer", shuffle_buffer, 0),
                             ("read_rows", read_rows, 1)):
            if v is None and name == "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise errors.InvalidArgument(f"{name} must be an int >= {low}, got {v!r}")
        if batch_size is not None and (transform is not None or target_transform is not None):
            raise errors.InvalidArgument("transforms apply to single rows: use batch_size=None "
                                         "and let the DataLoader batch")
        _Reader.__init__(self, path, pattern, label_pattern, transform, target_transform,
                         dtype)
        self.batch_size = batch_size
        self.shuffle_buffer = int(shuffle_buffer)
        self.shuffle = bool(shuffle)
        if seed is None and self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.seed = seed
        self.read_rows = int(read_rows)
        # Rows a DataLoader batches together: SynaDataLoader sets it to its
        # batch_size, so that workers deal whole batches (see __iter__).
        self.group: int | None = None
        # The epoch lives in shared memory: set_epoch in the main process
        # reaches persistent workers, which keep their copy of the dataset.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order next (call it before iterating); it reaches
        workers that persist across epochs."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        if self.batch_size is not None:
            # Each worker's tail batch may be short, so the count depends on
            # num_workers, which the dataset cannot know.
            raise TypeError("SynaIterableDataset with batch_size has no fixed length")
        return self._len

    def _shard(self) -> tuple[int, int, int]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        return self._len * wid // nw, self._len * (wid + 1) // nw, wid

    def _dealt(self) -> list[np.ndarray] | None:
        """This worker's units of rows when the order is global: the epoch's
        order (seeded permutation, or key order) cut into units of one batch,
        worker ``k`` of ``n`` taking units ``k, k+n, ...``.  A DataLoader
        takes one batch from each worker in turn, so the batches come in the
        same order for any ``num_workers``.  None: contiguous shards."""
        unit = self.batch_size or self.group
        if not self.shuffle and unit is None:
            return None
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        n = self._len
        order = (np.random.default_rng([int(self.seed or 0) & (2**63 - 1), self.epoch])
                 .permutation(n) if self.shuffle else np.arange(n))
        unit = unit or self.read_rows
        return [order[s:s + unit] for s in range(wid * unit, n, nw * unit)]

    def _rows(self) -> Iterator[Any]:
        """This worker's rows as tensors (or ``(x, y)`` pairs)."""
        x, y = self._views()
        dealt = self._dealt()
        if dealt is None:
            lo, hi, _ = self._shard()
            dealt = [np.arange(s, min(hi, s + self.read_rows))
                     for s in range(lo, hi, self.read_rows)]
        for idx in dealt:
            xb = _tensor(x.batch(idx), self._np_dtype)
            if y is None:
                for r in xb.unbind(0):
                    yield self._x_tensor_t(r)
            else:
                yb = _tensor(y.batch(idx), None)
                for r, t in zip(xb.unbind(0), yb.unbind(0)):
                    yield self._x_tensor_t(r), self._y_tensor_t(t)

    def _x_tensor_t(self, t: torch.Tensor) -> Any:
        return self.transform(t) if self.transform is not None else t

    def _y_tensor_t(self, t: torch.Tensor) -> Any:
        return self.target_transform(t) if self.target_transform is not None else t

    def _shuffled(self, items: Iterator[Any], wid: int) -> Iterator[Any]:
        if self.shuffle_buffer <= 1:
            yield from items
            return
        seq = None if self.seed is None else (self.seed, self.epoch, wid)
        rng = np.random.default_rng(seq)
        buf: list[Any] = []
        for item in items:
            if len(buf) < self.shuffle_buffer:
                buf.append(item)
                continue
            j = int(rng.integers(len(buf)))
            buf[j], item = item, buf[j]
            yield item
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[Any]:
        lo, hi, wid = self._shard()
        if self.batch_size is not None and self.shuffle_buffer <= 1:
            # A batch is one gather: a run of rows in key order, or a unit
            # of the epoch's dealt order.
            x, y = self._views()
            dealt = self._dealt()
            if dealt is None:
                dealt = [np.arange(s, min(hi, s + self.batch_size))
                         for s in range(lo, hi, self.batch_size)]
            for idx in dealt:
                xb = _tensor(x.batch(idx), self._np_dtype)
                yield xb if y is None else (xb, _tensor(y.batch(idx), None))
            return
        items = self._shuffled(self._rows(), wid)
        if self.batch_size is None:
            yield from items
            return
        chunk: list[Any] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == self.batch_size:
                yield _default_collate(chunk)
                chunk = []
        if chunk:
            yield _default_collate(chunk)

    def __repr__(self) -> str:
        return (f"SynaIterableDataset({self.path!r}, {self.pattern!r}; {self._len} rows, "
                f"batch_size={self.batch_size}, shuffle_buffer={self.shuffle_buffer})")
