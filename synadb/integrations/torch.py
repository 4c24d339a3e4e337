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
from ..tensors import RowView, TensorEngine

try:
    import torch
    import torch.distributed as dist
    from torch.utils.data import (
        DataLoader,
        Dataset,
        DistributedSampler,
        IterableDataset,
        default_collate,
        get_worker_info,
    )
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency("torch", "torch", "synadb.integrations.torch") from e

__all__ = [
    "SynaDataLoader",
    "SynaDataset",
    "SynaIterableDataset",
    "create_distributed_loader",
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
            n = getattr(self, "_len", None)
            if n is not None and len(self._x) != n:
                # A writer replaced the tensor after the dataset was made:
                # indices from the parent's sampler would be wrong here.
                raise errors.DimensionMismatch(
                    f"{self.pattern!r} in {self.path!r} has {len(self._x)} rows now but "
                    f"{n} when the dataset was created")
        assert self._x is not None
        return self._x, self._y

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

    def __init__(self, path: str | os.PathLike[str], pattern: str = "train/*",
                 label_pattern: str | None = None, transform: Transform | None = None,
                 target_transform: Transform | None = None, dtype: Any = None) -> None:
        _Reader.__init__(self, path, pattern, label_pattern, transform, target_transform,
                         dtype)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Any:
        x, y = self._views()
        i = int(index)
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} out of range for a dataset of {self._len} rows")
        xt = self._x_tensor(x[i])
        return xt if y is None else (xt, self._y_tensor(y[i]))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        x, y = self._views()
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < -self._len or idx.max() >= self._len):
            raise IndexError(f"an index in the batch is out of range for {self._len} rows")
        idx = np.where(idx < 0, idx + self._len, idx)
        xb = _tensor(x.batch(idx), self._np_dtype)
        yb = _tensor(y.batch(idx), None) if y is not None else None
        out = _Samples()
        if self.transform is None and self.target_transform is None:
            # Samples as views of the batch; _collate skips re-stacking them.
            out.extend(xb.unbind(0) if yb is None else zip(xb.unbind(0), yb.unbind(0)))
            out.stacked = xb if yb is None else (xb, yb)
            return out
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


class SynaDataLoader(DataLoader):  # type: ignore[type-arg]
    """``torch.utils.data.DataLoader`` with defaults for synadb datasets.

    Differences from ``DataLoader``: ``batch_size`` defaults to 32; workers
    persist across epochs when ``num_workers > 0`` (reopening the file every
    epoch buys nothing); ``pin_memory`` defaults to on only when batches go
    to CUDA; the default ``collate_fn`` takes the batch
    :meth:`SynaDataset.__getitems__` already stacked; and ``device`` moves
    every batch there (``non_blocking``, from pinned memory).

    Args:
        dataset: any dataset, typically a :class:`SynaDataset`.
        batch_size: rows per batch.
        device: where batches go; ``None`` leaves them on the CPU.
        **kwargs: anything ``DataLoader`` takes.

    Raises:
        InvalidArgument: ``device`` names CUDA on a machine without CUDA.
    """

    def __init__(self, dataset: Any, batch_size: int | None = 32, shuffle: bool | None = None,
                 num_workers: int = 0, *, device: str | torch.device | None = None,
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
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle,
                         num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, collate_fn=collate_fn,
                         **kwargs)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        it = super().__iter__()
        if self.device is None or self.device.type == "cpu":
            return it
        return (_move(b, self.device) for b in it)


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
                 dtype: Any = None, read_rows: int = 1024) -> None:
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
        self.seed = seed
        self.read_rows = int(read_rows)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Vary the shuffle between epochs (call it before iterating)."""
        self.epoch = int(epoch)

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

    def _rows(self) -> Iterator[Any]:
        """This worker's rows as tensors (or ``(x, y)`` pairs), in key order."""
        x, y = self._views()
        lo, hi, _ = self._shard()
        for s in range(lo, hi, self.read_rows):
            idx = np.arange(s, min(hi, s + self.read_rows))
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
            # In key order a batch is a contiguous run of rows: one gather each.
            x, y = self._views()
            for s in range(lo, hi, self.batch_size):
                idx = np.arange(s, min(hi, s + self.batch_size))
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
