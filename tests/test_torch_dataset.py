"""The PyTorch adapter over synadb.Dataset: dict samples, ragged and image
columns that train, orders that do not depend on num_workers, set_epoch with
persistent workers, resuming mid-epoch, torch dtypes."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import synadb  # noqa: E402
from synadb.integrations.torch import (  # noqa: E402
    SynaDataLoader,
    SynaDataset,
    SynaIterableDataset,
    pad_collate,
)
from synadb.tensors import TensorEngine  # noqa: E402

WORKERS = [0, 2]


def _tokens(path, n=256, seed=0):
    """Ragged token rows whose label is whether token 7 occurs."""
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, 16, int(rng.integers(2, 12))) for _ in range(n)]
    labels = np.array([int(7 in r) for r in rows], dtype=np.int64)
    with synadb.Dataset(path, "tokens") as ds:
        for s in range(0, n, 64):
            ds.append({"input_ids": rows[s:s + 64], "label": labels[s:s + 64]})
    return rows, labels


def test_samples_are_dicts_and_batches_keep_each_kind(tmp_path):
    path = str(tmp_path / "d.db")
    with synadb.Dataset(path, "t") as ds:
        ds.append({"x": np.arange(12, dtype=np.float64).reshape(6, 2), "y": np.arange(6),
                   "ids": [np.arange(k) for k in range(1, 7)], "cap": list("abcdef"),
                   "meta": [{"k": i} for i in range(6)]})
    sd = SynaDataset(path, "t", dtype=torch.float16)
    assert type(sd).__name__ == "SynaTableDataset" and isinstance(sd, SynaDataset)
    assert len(sd) == 6
    s = sd[4]
    assert s["x"].dtype == torch.float16 and s["x"].tolist() == [8, 9]
    assert s["ids"].tolist() == [0, 1, 2, 3, 4] and s["cap"] == "e" and s["meta"] == {"k": 4}
    batch = next(iter(SynaDataLoader(sd, batch_size=4)))
    assert batch["x"].shape == (4, 2) and batch["y"].tolist() == [0, 1, 2, 3]
    assert [t.tolist() for t in batch["ids"]] == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]
    assert batch["cap"] == ["a", "b", "c", "d"]
    padded = next(iter(SynaDataLoader(SynaDataset(path, "t", ragged="pad", pad_value=-1),
                                      batch_size=3)))
    assert padded["ids"].tolist() == [[0, -1, -1], [0, 1, -1], [0, 1, 2]]
    assert padded["ids_lengths"].tolist() == [1, 2, 3]
    xy = SynaDataset(synadb.Dataset(path, "t", read_only=True), columns=["x", "y"],
                     as_tuple=True)
    x, y = next(iter(SynaDataLoader(xy, batch_size=6)))
    assert x.shape == (6, 2) and y.tolist() == list(range(6))
    plain = torch.utils.data.DataLoader(SynaDataset(path, "t"), batch_size=2,
                                        collate_fn=pad_collate())
    first = next(iter(plain))
    assert first["ids"].tolist() == [[0, 0], [0, 1]] and first["ids_lengths"].tolist() == [1, 2]
    with pytest.raises(synadb.KeyNotFound):
        SynaDataset(path, "t", columns=["nope"])


@pytest.mark.parametrize("workers", WORKERS)
def test_a_ragged_token_dataset_trains(tmp_path, workers):
    path = str(tmp_path / "tok.db")
    _tokens(path)
    torch.manual_seed(0)
    ds = SynaDataset(path, "tokens", ragged="pad")
    model = torch.nn.EmbeddingBag(16, 2, mode="max")
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loader = SynaDataLoader(ds, batch_size=32, shuffle=True, seed=0, num_workers=workers)
    losses = []
    for _ in range(15):
        for b in loader:
            ids, lengths = b["input_ids"], b["input_ids_lengths"]
            offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
            flat = torch.cat([ids[i, :n] for i, n in enumerate(lengths.tolist())])
            loss = torch.nn.functional.cross_entropy(model(flat, offsets), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])


def test_an_image_bytes_label_caption_dataset_trains(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path = str(tmp_path / "img.db")
    rng = np.random.default_rng(1)
    with synadb.Dataset(path, "images") as ds:
        for _ in range(4):
            labels = rng.integers(0, 2, 32)
            jpegs, caps = [], []
            for lab in labels:
                size = int(rng.integers(6, 12))  # images of different sizes
                pix = rng.integers(0, 60, (size, size, 3)) + (150 if lab else 0)
                buf = io.BytesIO()
                Image.fromarray(pix.astype(np.uint8)).save(buf, format="PNG")
                jpegs.append(buf.getvalue())
                caps.append("bright" if lab else "dark")
            ds.append({"image": jpegs, "label": labels, "caption": caps})

    def decode(sample):
        img = Image.open(io.BytesIO(sample["image"])).convert("RGB").resize((8, 8))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return x, sample["label"], sample["caption"]

    sd = SynaDataset(path, "images", transform=decode)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = last = None
    for epoch in range(6):
        for x, y, caps in SynaDataLoader(sd, batch_size=16, shuffle=True, seed=epoch,
                                         collate_fn=torch.utils.data.default_collate):
            assert all(c == ("bright" if int(t) else "dark") for c, t in zip(caps, y))
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
            last = loss.item()
    assert last < first / 2


def _epoch_order(loader, key="y"):
    out = []
    for b in loader:
        out.extend((b[key] if isinstance(b, dict) else b).flatten().tolist())
    return out


def test_the_epoch_order_is_the_same_for_any_num_workers(tmp_path):
    path = str(tmp_path / "d.db")
    with synadb.Dataset(path, "t") as ds:
        ds.append({"y": np.arange(100)})
    orders = {}
    for w in WORKERS:
        loader = SynaDataLoader(SynaDataset(path, "t"), batch_size=7, shuffle=True, seed=3,
                                num_workers=w)
        orders[w] = [_epoch_order(loader), _epoch_order(loader)]
    assert orders[0] == orders[2]
    assert orders[0][0] != orders[0][1]  # each pass is the next epoch
    assert sorted(orders[0][0]) == list(range(100))
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("rows/", np.arange(90))
    it = {}
    for w in WORKERS:
        stream = SynaIterableDataset(path, "rows/*", shuffle=True, seed=5)
        it[w] = _epoch_order(SynaDataLoader(stream, batch_size=8, num_workers=w))
    assert it[0] == it[2] and sorted(it[0]) == list(range(90)) and it[0] != list(range(90))


@pytest.mark.parametrize("workers", WORKERS)
def test_set_epoch_reaches_persistent_workers(tmp_path, workers):
    path = str(tmp_path / "d.db")
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("rows/", np.arange(64))
    stream = SynaIterableDataset(path, "rows/*", shuffle=True, seed=1)
    loader = SynaDataLoader(stream, batch_size=8, num_workers=workers)
    assert loader.persistent_workers == (workers > 0)
    seen = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        seen.append(_epoch_order(loader))
    assert seen[0] != seen[1] and seen[0] == seen[2]
    ref = SynaIterableDataset(path, "rows/*", shuffle=True, seed=1)
    ref.set_epoch(1)
    assert seen[1] == _epoch_order(SynaDataLoader(ref, batch_size=8))


@pytest.mark.parametrize("workers", WORKERS)
def test_resume_mid_epoch_from_a_saved_state(tmp_path, workers):
    path = str(tmp_path / "d.db")
    with synadb.Dataset(path, "t") as ds:
        ds.append({"y": np.arange(50)})
    full = SynaDataLoader(SynaDataset(path, "t"), batch_size=4, shuffle=True, seed=9,
                          num_workers=workers)
    _epoch_order(full)  # epoch 0
    want = [b["y"].tolist() for b in full]  # epoch 1
    first = SynaDataLoader(SynaDataset(path, "t"), batch_size=4, shuffle=True, seed=9,
                           num_workers=workers)
    _epoch_order(first)
    got = []
    for i, b in enumerate(first):
        got.append(b["y"].tolist())
        if i == 4:
            state = first.state_dict()
            break
    assert state["epoch"] == 1 and state["batches"] == 5
    resumed = SynaDataLoader(SynaDataset(path, "t"), batch_size=4, shuffle=True,
                             num_workers=workers)
    resumed.load_state_dict(state)
    got.extend(b["y"].tolist() for b in resumed)
    assert got == want
    nxt = [b["y"].tolist() for b in resumed]  # then epoch 2, as the first loader would
    assert nxt == [b["y"].tolist() for b in first]


def test_torch_dtypes_and_the_device_is_checked_before_reading(tmp_path, monkeypatch):
    path = str(tmp_path / "d.db")
    with TensorEngine(path, progress=False) as e:
        e.put_tensor("x/", np.ones((4, 2), np.float32))
        assert e.get_tensor_torch("x/*", dtype=torch.float16).dtype == torch.float16
        assert SynaDataset(path, "x/*", dtype=torch.float16)[0].dtype == torch.float16
        if not torch.cuda.is_available():
            reads = []
            real = TensorEngine.get_tensor
            monkeypatch.setattr(TensorEngine, "get_tensor",
                                lambda self, *a, **k: reads.append(1) or real(self, *a, **k))
            with pytest.raises(synadb.InvalidArgument, match="CUDA"):
                e.get_tensor_torch("x/*", device="cuda")
            assert reads == []


# ------------------------------------------- DDP on a read-only shared mount
def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank, world_size, port, path, out_dir):
    import os

    import torch.distributed as dist

    from synadb.integrations.torch import create_distributed_loader

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        ds = SynaDataset(path, "t", columns=["y", "ids"])
        loader, sampler = create_distributed_loader(ds, batch_size=16, num_workers=1, seed=1)
        sampler.set_epoch(0)
        ys = [y for b in loader for y in b["y"].tolist()]
        np.save(os.path.join(out_dir, f"y{rank}.npy"), np.array(ys))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture
def read_only_mount(tmp_path):
    import shutil
    import subprocess

    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "--bind", str(rw), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("a read-only bind mount needs mount privileges here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield rw, ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_ddp_ranks_read_a_dataset_on_a_read_only_mount(read_only_mount, tmp_path):
    import torch.multiprocessing as tmp

    rw, ro = read_only_mount
    with synadb.Dataset(rw / "shared.db", "t") as ds:
        ds.append({"y": np.arange(100), "ids": [np.arange(i % 7) for i in range(100)]})
    with pytest.raises(OSError):
        (ro / "probe").write_text("x")  # the mount is read-only indeed
    out = tmp_path / "out"
    out.mkdir()
    tmp.spawn(_ddp_rank, args=(2, _free_port(), str(ro / "shared.db"), str(out)), nprocs=2,
              join=True)
    ys = [np.load(out / f"y{r}.npy") for r in range(2)]
    assert len(ys[0]) == len(ys[1]) == 50
    assert sorted(np.concatenate(ys).tolist()) == list(range(100))
