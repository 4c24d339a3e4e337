"""synadb.integrations.torch: datasets over the file's map, loaders, distributed shards."""

import doctest
import os
import pickle
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp
from torch.utils.data import DataLoader

import synadb.integrations.torch as st
from synadb import errors
from synadb.integrations.torch import (
    SynaDataLoader,
    SynaDataset,
    SynaIterableDataset,
    create_distributed_loader,
    to_torch,
)
from synadb.tensors import TensorEngine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, D = 2000, 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("torch") / "train.db")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, D)).astype(np.float32)
    x[0, 0] = np.float32("nan")  # bit-exact means NaN payloads too, not just ==
    x[1, 1] = -0.0
    y = np.arange(N, dtype=np.int64)  # a row's label is its index: shards are checkable
    # Small blocks, so an epoch crosses many of them.
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("train/", x, rows_per_block=300)
        e.put_tensor("labels/", y, rows_per_block=700)
        e.put_tensor("short/", y[:-1])
        e.put_tensor("img/", rng.integers(0, 255, (10, 2, 3, 3), dtype=np.uint8))
    return path, x, y


def _bytes_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ surface
def test_all_is_pinned_and_aliased():
    import synadb.torch as alias

    assert sorted(st.__all__) == sorted(["SynaDataset", "SynaIterableDataset",
                                         "SynaDataLoader", "SeededSampler",
                                         "create_distributed_loader", "pad_collate",
                                         "to_torch"])
    assert sorted(alias.__all__) == sorted(st.__all__)
    for name in st.__all__:
        assert getattr(alias, name) is getattr(st, name)


def test_doctests():
    assert doctest.testmod(st, optionflags=doctest.ELLIPSIS).failed == 0


# ------------------------------------------------------------------ dataset
def test_rows_are_bit_exact_writable_copies(data):
    path, x, _y = data
    ds = SynaDataset(path, "train/*")
    assert len(ds) == N and ds.row_shape == (D,)
    for i in (0, 1, 299, 300, N - 1, -1):
        row = ds[i]
        assert isinstance(row, torch.Tensor) and row.dtype == torch.float32
        assert _bytes_equal(row.numpy(), x[i])
    row = ds[5]
    row += 1  # a copy: writable, and the file is untouched
    assert _bytes_equal(ds[5].numpy(), x[5])
    with pytest.raises(IndexError):
        ds[N]


def test_labels_give_pairs_and_must_match_in_length(data):
    path, x, _y = data
    ds = SynaDataset(path, "train/*", label_pattern="labels/*")
    xi, yi = ds[1234]
    assert _bytes_equal(xi.numpy(), x[1234]) and yi.dtype == torch.int64 and int(yi) == 1234
    with pytest.raises(errors.DimensionMismatch, match="1999 labels"):
        SynaDataset(path, "train/*", label_pattern="short/*")
    with pytest.raises(errors.KeyNotFound):
        SynaDataset(path, "nothing/*")
    with pytest.raises(errors.DatabaseNotFound):
        SynaDataset(path + ".missing", "train/*")


def test_getitems_fetches_a_batch(data):
    path, x, y = data
    ds = SynaDataset(path, "train/*", label_pattern="labels/*")
    idx = [1999, 0, 5, 5, 700, -1]
    got = ds.__getitems__(idx)
    assert len(got) == len(idx)
    xb, yb = got.stacked
    assert _bytes_equal(xb.numpy(), x[idx]) and yb.tolist() == [int(v) for v in y[idx]]
    assert all(_bytes_equal(g[0].numpy(), x[i]) for g, i in zip(got, idx))
    with pytest.raises(IndexError):
        ds.__getitems__([0, N])


def test_transforms_and_dtype(data):
    path, x, _y = data
    ds = SynaDataset(path, "train/*", label_pattern="labels/*", transform=lambda t: t * 2,
                     target_transform=lambda t: t + 1, dtype=np.float64)
    xi, yi = ds[3]
    assert xi.dtype == torch.float64 and _bytes_equal(xi.numpy(), x[3].astype(np.float64) * 2)
    assert int(yi) == 4
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))  # the __getitems__ path
    assert _bytes_equal(xb.numpy(), x[:4].astype(np.float64) * 2)  # row 0 holds a NaN
    assert yb.tolist() == [1, 2, 3, 4]
    half = SynaDataset(path, "train/*", dtype=torch.float16)
    assert half[3].dtype == torch.float16
    img = SynaDataset(path, "img/*")
    assert img[0].shape == (2, 3, 3) and img[0].dtype == torch.uint8


def test_pickle_keeps_the_recipe_not_the_handle(data):
    path, x, _y = data
    ds = SynaDataset(path, "train/*", label_pattern="labels/*")
    ds[0]
    state = ds.__getstate__()
    assert state["_engine"] is None and state["_x"] is None and state["pattern"] == "train/*"
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._engine is None  # opened lazily, on first fetch
    assert _bytes_equal(clone[42][0].numpy(), x[42])
    assert ds._engine is not None  # the original keeps its handle


def test_a_new_pid_reopens(data, monkeypatch):
    path, x, _y = data
    ds = SynaDataset(path, "train/*")
    ds[0]
    first = ds._engine
    monkeypatch.setattr(st.os, "getpid", lambda: -12345)  # as a fork worker sees it
    assert _bytes_equal(ds[9].numpy(), x[9])
    assert ds._engine is not first and first.db._log is None  # the old handle is closed


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("rows", [3, 8])
def test_a_re_put_with_another_row_count_is_read_whole_from_the_next_epoch(tmp_path, persistent,
                                                                          rows):
    # Used to kill the next epoch: a worker found the new row count and refused.
    path = str(tmp_path / "moving.db")
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("x/", np.arange(5, dtype=np.float32).reshape(5, 1))
    ds = SynaDataset(path, "x/*")
    loader = SynaDataLoader(ds, batch_size=2, shuffle=True, seed=0, num_workers=2,
                            persistent_workers=persistent)
    assert sorted(torch.cat(list(loader)).flatten().tolist()) == [0, 1, 2, 3, 4]
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("x/", np.arange(10, 10 + rows, dtype=np.float32).reshape(rows, 1))
    got = sorted(torch.cat(list(loader)).flatten().tolist())
    assert got == list(range(10, 10 + rows))
    shipped = pickle.loads(pickle.dumps(ds))  # what a spawn worker receives
    assert len(shipped) == rows and shipped[rows - 1].item() == 9 + rows


# 4 workers on a 2-core runner is what the test asks for; torch's advice against it is noise.
_FOUR = pytest.mark.filterwarnings(
    "ignore:This DataLoader will create 4 worker processes:UserWarning")
CONFIGS = [(0, None), (2, "fork"), (2, "spawn"),
           pytest.param(4, "fork", marks=_FOUR), pytest.param(4, "spawn", marks=_FOUR)]


@pytest.mark.parametrize("workers,context", CONFIGS)
def test_epoch_is_bit_exact(data, workers, context):
    path, x, y = data
    ds = SynaDataset(path, "train/*", label_pattern="labels/*")
    kw = {"num_workers": workers, "multiprocessing_context": context} if workers else {}
    # One loader, so spawn pays for its worker start-ups once: the sampler is
    # a list the main process reads each epoch; the first epoch is in order,
    # then the same persistent workers serve a shuffled one.
    order = list(range(N))
    loader = SynaDataLoader(ds, batch_size=100, sampler=order, **kw)
    xs, ys = zip(*loader)
    assert _bytes_equal(torch.cat(xs).numpy(), x) and torch.cat(ys).tolist() == y.tolist()
    np.random.default_rng(workers).shuffle(order)
    xs, ys = zip(*loader)
    xb, yb = torch.cat(xs).numpy(), torch.cat(ys).numpy()
    assert yb.tolist() == order and sorted(order) == y.tolist()
    assert _bytes_equal(xb, x[yb])  # each row is exactly its index's row
    if context != "spawn":
        # torch's own DataLoader and RandomSampler (auto-collation through __getitems__).
        xs, ys = zip(*DataLoader(ds, batch_size=64, shuffle=True, **kw))
        xb, yb = torch.cat(xs).numpy(), torch.cat(ys).numpy()
        assert sorted(yb.tolist()) == y.tolist() and _bytes_equal(xb, x[yb])
    assert _bytes_equal(ds[0][0].numpy(), x[0])  # the parent's handle survived the workers


def test_one_item_at_a_time_without_batching(data):
    path, x, _y = data
    ds = SynaDataset(path, "train/*")
    rows = list(DataLoader(ds, batch_size=None))
    assert _bytes_equal(torch.stack(rows).numpy(), x)


# ------------------------------------------------------------------ loader
def test_loader_defaults(data):
    path, x, _y = data
    ds = SynaDataset(path, "train/*")
    loader = SynaDataLoader(ds)
    assert loader.batch_size == 32 and not loader.pin_memory and loader.device is None
    assert len(loader) == -(-N // 32)
    assert SynaDataLoader(ds, num_workers=2).persistent_workers
    assert not SynaDataLoader(ds, num_workers=2, persistent_workers=False).persistent_workers
    cpu = SynaDataLoader(ds, batch_size=500, device="cpu")
    assert _bytes_equal(torch.cat(list(cpu)).numpy(), x)


def test_cuda_device_without_cuda_is_refused(data, monkeypatch):
    path, x, _y = data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ds = SynaDataset(path, "train/*")
    with pytest.raises(errors.InvalidArgument, match="CUDA"):
        SynaDataLoader(ds, device="cuda")
    with pytest.raises(errors.InvalidArgument, match="CUDA"):
        to_torch(x, device="cuda:0")
    with pytest.raises(errors.InvalidArgument):
        SynaDataLoader(ds, device="toaster")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path(data):
    path, x, _y = data
    ds = SynaDataset(path, "train/*", label_pattern="labels/*")
    loader = SynaDataLoader(ds, batch_size=256, device="cuda")
    assert loader.pin_memory
    xb, yb = next(iter(loader))
    assert xb.is_cuda and yb.is_cuda and _bytes_equal(xb.cpu().numpy(), x[:256])
    t = to_torch(x, device="cuda")
    assert t.is_cuda and _bytes_equal(t.cpu().numpy(), x)


def test_to_torch_cpu(data):
    path, x, _y = data
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    t = to_torch(a)
    assert t.dtype == torch.int32 and t.shape == (3, 4) and t.tolist() == a.tolist()
    assert t.data_ptr() == a.ctypes.data  # a writable array is shared, not copied
    ro = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(N, D)
    assert not ro.flags.writeable
    t = to_torch(ro, torch.device("cpu"))
    assert _bytes_equal(t.numpy(), x) and t.numpy().flags.writeable
    with TensorEngine(path, read_only=True, progress=False) as e:
        assert _bytes_equal(e.get_tensor_torch("train/*").numpy(), x)
        assert e.get_tensor_torch("labels/*", dtype=np.float64).dtype == torch.float64


# ------------------------------------------------------------- distributed
def test_distributed_loader_with_explicit_ranks(data):
    path, _x, _y = data
    ds = SynaDataset(path, "train/*", label_pattern="labels/*")
    seen = []
    for rank in range(3):
        loader, sampler = create_distributed_loader(ds, 128, 0, rank=rank, world_size=3,
                                                    seed=5, drop_last=True)
        sampler.set_epoch(1)
        ys = torch.cat([b[1] for b in loader]).tolist()
        assert len(ys) == N // 3
        seen.append(set(ys))
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    with pytest.raises(errors.InvalidArgument, match="process group"):
        create_distributed_loader(ds, 128, 0)
    with pytest.raises(errors.InvalidArgument):
        create_distributed_loader(ds, 128, 0, rank=2, world_size=2)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world_size, port, path, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        ds = SynaDataset(path, "train/*", label_pattern="labels/*")
        loader, sampler = create_distributed_loader(ds, batch_size=64, num_workers=1, seed=3)
        assert sampler.num_replicas == world_size and sampler.rank == rank
        sampler.set_epoch(0)
        xs, ys = zip(*loader)
        np.save(os.path.join(out_dir, f"x{rank}.npy"), torch.cat(xs).numpy())
        np.save(os.path.join(out_dir, f"y{rank}.npy"), torch.cat(ys).numpy())
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_get_disjoint_shards_covering_all(data, tmp_path):
    path, x, y = data
    tmp.spawn(_rank_main, args=(2, _free_port(), path, str(tmp_path)), nprocs=2, join=True)
    ys = [np.load(tmp_path / f"y{r}.npy") for r in range(2)]
    assert len(ys[0]) == len(ys[1]) == N // 2
    assert not set(ys[0].tolist()) & set(ys[1].tolist())
    assert sorted(np.concatenate(ys).tolist()) == y.tolist()
    for r in range(2):
        assert _bytes_equal(np.load(tmp_path / f"x{r}.npy"), x[ys[r]])


# ---------------------------------------------------------------- iterable
def test_iterable_in_one_process_streams_in_order(data):
    path, x, y = data
    it = SynaIterableDataset(path, "train/*", read_rows=333)
    assert len(it) == N
    assert _bytes_equal(torch.stack(list(it)).numpy(), x)
    batched = SynaIterableDataset(path, "train/*", batch_size=300, label_pattern="labels/*")
    xs, ys = zip(*batched)
    assert [len(b) for b in xs] == [300] * 6 + [200]
    assert _bytes_equal(torch.cat(xs).numpy(), x) and torch.cat(ys).tolist() == y.tolist()
    with pytest.raises(TypeError):
        len(batched)
    with pytest.raises(errors.InvalidArgument):
        SynaIterableDataset(path, "train/*", batch_size=0)
    with pytest.raises(errors.InvalidArgument):
        SynaIterableDataset(path, "train/*", batch_size=4, transform=abs)


@pytest.mark.parametrize("batch_size,shuffle_buffer", [(None, 0), (None, 256), (50, 0),
                                                       (50, 100)])
def test_iterable_with_two_workers_covers_every_row_once(data, batch_size, shuffle_buffer):
    path, x, y = data
    it = SynaIterableDataset(path, "train/*", batch_size=batch_size,
                             shuffle_buffer=shuffle_buffer, seed=1, label_pattern="labels/*")
    loader = DataLoader(it, batch_size=None if batch_size else 64, num_workers=2,
                        multiprocessing_context="fork")
    xs, ys = zip(*loader)
    xb, yb = torch.cat(xs).numpy(), torch.cat(ys).numpy()
    assert len(yb) == N and sorted(yb.tolist()) == y.tolist()  # no duplicates, none missing
    assert _bytes_equal(xb, x[yb])
    if shuffle_buffer:
        assert (yb != y).any()


def test_iterable_shuffle_is_seeded_per_epoch(data):
    path, _x, y = data
    it = SynaIterableDataset(path, "labels/*", shuffle_buffer=500, seed=4)
    a = torch.stack(list(it)).tolist()
    b = torch.stack(list(it)).tolist()
    it.set_epoch(1)
    c = torch.stack(list(it)).tolist()
    assert a == b and a != c and sorted(a) == sorted(c) == y.tolist()
