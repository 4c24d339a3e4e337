"""synadb.Dataset: columns of five kinds, appended in pieces, read lazily."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import synadb
from synadb import dataset as dsmod
from synadb.dataset import Dataset, pad


def _batch(rng, n, start=0):
    return {
        "x": rng.random((n, 4), dtype=np.float32),
        "y": np.arange(start, start + n, dtype=np.int64),
        "tokens": [rng.integers(0, 100, int(rng.integers(0, 9))) for _ in range(n)],
        "jpeg": [bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8))
                 for _ in range(n)],
        "caption": [f"row {start + i} ünïcode" for i in range(n)],
        "meta": [{"i": start + i, "tags": ["a", "b"][: i % 3]} for i in range(n)],
    }


def _concat(batches):
    out = {}
    for k in batches[0]:
        v = [b[k] for b in batches]
        out[k] = np.concatenate(v) if isinstance(v[0], np.ndarray) else sum(v, [])
    return out


def _assert_rows(ds, want, idx):
    got = ds.take(idx)
    np.testing.assert_array_equal(got["x"], want["x"][idx])
    np.testing.assert_array_equal(got["y"], want["y"][idx])
    for i, j in enumerate(idx):
        np.testing.assert_array_equal(got["tokens"][i], want["tokens"][j])
        assert got["jpeg"][i] == want["jpeg"][j]
        assert got["caption"][i] == want["caption"][j]
        assert got["meta"][i] == want["meta"][j]


def test_round_trip_every_kind_across_appends_and_reopen(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.db"
    batches = [_batch(rng, n, s) for n, s in ((50, 0), (1, 50), (30, 51))]
    with Dataset(path, "train") as ds:
        for b in batches:
            ds.append(b)
        assert len(ds) == 81
    want = _concat(batches)
    with Dataset(path, "train", read_only=True) as ds:
        cols = ds.columns
        assert [c.kind for c in cols.values()] == ["fixed", "fixed", "ragged", "bytes", "text",
                                                    "json"]
        assert cols["x"].dtype == np.float32 and cols["x"].shape == (4,)
        idx = np.random.default_rng(1).permutation(81)
        _assert_rows(ds, want, idx)
        row = ds[80]
        assert row["y"] == 80 and row["caption"] == want["caption"][80]
        sl = ds[10:20]
        np.testing.assert_array_equal(sl["y"], np.arange(10, 20))
        np.testing.assert_array_equal(ds["y"], np.arange(81))
        assert [r["y"] for r in ds] == list(range(81))
        assert ds.take([3], columns=["caption"]) == {"caption": [want["caption"][3]]}


def test_ragged_with_inner_shape_and_padding(tmp_path):
    rows = [np.arange(k * 2, dtype=np.float32).reshape(k, 2) for k in (3, 0, 5)]
    with Dataset(tmp_path / "d.db", "boxes") as ds:
        ds.append({"boxes": rows})
        got = ds.take([2, 1, 0])["boxes"]
    assert [g.shape for g in got] == [(5, 2), (0, 2), (3, 2)]
    np.testing.assert_array_equal(got[0], rows[2])
    padded, lengths = pad([np.array([1, 2, 3]), np.array([4])], value=-1)
    np.testing.assert_array_equal(padded, [[1, 2, 3], [4, -1, -1]])
    np.testing.assert_array_equal(lengths, [3, 1])


def test_a_reader_sees_appends_live(tmp_path):
    path = tmp_path / "d.db"
    rng = np.random.default_rng(2)
    with Dataset(path, "t") as w:
        w.append(_batch(rng, 5))
        r = Dataset(path, "t", read_only=True)
        assert len(r) == 5
        w.append(_batch(rng, 7, 5))
        assert len(r) == 12
        assert r[11]["y"] == 11
        r.close()


def test_an_append_is_all_or_nothing(tmp_path):
    rng = np.random.default_rng(3)
    with Dataset(tmp_path / "d.db", "t") as ds:
        ds.append(_batch(rng, 4))
        bad = _batch(rng, 3, 4)
        bad["caption"][2] = 7  # not a str
        with pytest.raises(synadb.InvalidType):
            ds.append(bad)
        bad = _batch(rng, 3, 4)
        bad["x"] = bad["x"][:2]
        with pytest.raises(synadb.DimensionMismatch):
            ds.append(bad)
        with pytest.raises(synadb.InvalidArgument, match="lacks"):
            ds.append({"x": np.zeros((1, 4), np.float32)})
        with pytest.raises(synadb.InvalidType):
            ds.append({**_batch(rng, 1), "y": np.array([0.5])})  # float into int64
        assert len(ds) == 4
    with Dataset(tmp_path / "d.db", "t", read_only=True) as ds:
        assert len(ds) == 4


def test_bad_input_is_refused_clearly(tmp_path):
    with pytest.raises(synadb.InvalidArgument):
        Dataset(tmp_path / "d.db", "a#b")
    with pytest.raises(synadb.DatabaseNotFound):
        Dataset(tmp_path / "d.db", "nothing", read_only=True)
    synadb.SynaDB(tmp_path / "d.db").close()
    with pytest.raises(synadb.KeyNotFound):
        Dataset(tmp_path / "d.db", "nothing", read_only=True)
    with Dataset(tmp_path / "d.db", "t") as ds:
        with pytest.raises(synadb.InvalidArgument, match="kind"):
            ds.append({"m": [None, None]})
        with pytest.raises(synadb.InvalidType):
            ds.append({"s": "not a list"})
        ds.append({"v": np.arange(3)})
        with pytest.raises(IndexError):
            ds[3]
        with pytest.raises(synadb.InvalidType):
            ds.take([0.5])
        with pytest.raises(synadb.KeyNotFound):
            ds.take([0], columns=["nope"])
    with Dataset(tmp_path / "d.db", "m", schema={"m": "json"}) as ds:
        ds.append({"m": [None, None]})
        assert ds[1]["m"] is None


def test_open_reads_no_data_and_reads_check_only_what_they_touch(tmp_path, monkeypatch):
    path = tmp_path / "d.db"
    rng = np.random.default_rng(4)
    monkeypatch.setattr(dsmod, "_CHUNK_BYTES", 1 << 20)
    x = rng.random((20_000, 64), dtype=np.float32)  # 5 MB: 5 chunks of 80 segments
    with Dataset(path, "t") as ds:
        ds.append({"x": x})
    checked = []
    real = dsmod.CheckedBuffer._check

    def spy(self, segs):
        segs = list(segs)
        checked.extend(segs)
        return real(self, segs)

    monkeypatch.setattr(dsmod.CheckedBuffer, "_check", spy)
    with Dataset(path, "t", read_only=True) as ds:
        assert checked == []  # open: metadata only
        np.testing.assert_array_equal(ds.take([7, 19_999])["x"], x[[7, 19_999]])
        assert 1 <= len(checked) <= 4
        total = ds.verify()
        assert total >= x.nbytes


def test_a_corrupted_byte_is_reported_where_it_is(tmp_path, monkeypatch):
    path = tmp_path / "d.db"
    monkeypatch.setattr(dsmod, "_CHUNK_BYTES", 1 << 20)
    x = np.arange(200_000, dtype=np.int64).reshape(-1, 8)
    with Dataset(path, "t") as ds:
        ds.append({"x": x})
    raw = bytearray(path.read_bytes())
    needle = np.arange(12_500 * 8, 12_500 * 8 + 8, dtype="<i8").tobytes()
    at = bytes(raw).find(needle)
    assert at > 0
    raw[at + 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with Dataset(path, "t", read_only=True) as ds:
        np.testing.assert_array_equal(ds.take([0, 24_999])["x"], x[[0, 24_999]])
        with pytest.raises(synadb.ChecksumError, match="column 'x'"):
            ds.take([12_500])
        with pytest.raises(synadb.ChecksumError):
            ds.verify()


def test_extend_streams_a_generator_in_bounded_memory(tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(dsmod, "_CHUNK_BYTES", 8 << 20)  # gathers 4 MB per append

    def gen():
        rng = np.random.default_rng(5)
        for i in range(40):  # 40 × 2 MB = 80 MB in all
            yield {"x": rng.random((2048, 256), dtype=np.float32), "y": np.full(2048, i)}

    with Dataset(tmp_path / "d.db", "t", progress=False) as ds:
        tracemalloc.start()
        n = ds.extend(gen())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert n == len(ds) == 40 * 2048
        assert peak < 24 << 20  # 80 MB went through
        assert ds[40 * 2048 - 1]["y"] == 39
        assert 10 <= ds.info()["chunks"] <= 40  # small batches gathered into fewer chunks


_KILLED_WRITER = textwrap.dedent("""
    import os, sys, numpy as np, synadb
    from synadb import dataset as dsmod
    dsmod._CHUNK_BYTES = 1 << 16
    ds = synadb.Dataset(sys.argv[1], "t")
    ds.append({"x": np.zeros((1000, 16), np.float32), "y": np.arange(1000)})
    real = synadb.db.Storage.put_blob_parts
    calls = [0]
    def dying(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), 9)  # a killed writer, mid-append
        return real(self, *args, **kwargs)
    synadb.db.Storage.put_blob_parts = dying
    ds.append({"x": np.ones((5000, 16), np.float32), "y": np.arange(5000)})
""")


def test_a_writer_killed_mid_append_leaves_whole_appends(tmp_path):
    path = tmp_path / "d.db"
    p = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], capture_output=True)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()
    with Dataset(path, "t") as ds:
        assert len(ds) == 1000
        assert ds.take(range(1000))["x"].sum() == 0
        ds.append({"x": np.ones((2, 16), np.float32), "y": np.arange(2)})
        assert len(ds) == 1002
        assert ds.verify() > 0


def test_many_datasets_in_one_file_and_clear(tmp_path):
    path = tmp_path / "d.db"
    with Dataset(path, "a") as a, Dataset(path, "b") as b:
        a.append({"v": np.arange(3)})
        b.append({"w": ["x", "y"]})
    assert synadb.datasets(path) == ["a", "b"]
    with Dataset(path, "a") as a:
        a.clear()
        assert len(a) == 0
        a.append({"other": [1.5]})
        assert a[0]["other"] == 1.5
    with Dataset(path, "b", read_only=True) as b:
        assert b["w"] == ["x", "y"]


def test_pickles_as_its_recipe(tmp_path):
    path = tmp_path / "d.db"
    with Dataset(path, "t") as ds:
        ds.append({"v": np.arange(10)})
        clone = pickle.loads(pickle.dumps(ds))
    assert clone.read_only and len(clone) == 10 and clone[9]["v"] == 9
    clone.close()


def test_to_parquet_is_read_by_pyarrow_duckdb_and_hf(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    duckdb = pytest.importorskip("duckdb")
    rng = np.random.default_rng(6)
    b = _batch(rng, 25)
    b["img"] = rng.random((25, 2, 3), dtype=np.float32)
    with Dataset(tmp_path / "d.db", "t") as ds:
        ds.append(b)
        files = ds.to_parquet(tmp_path / "out", rows_per_file=10)
    assert [os.path.basename(f) for f in files] == [f"part-0000{i}.parquet" for i in range(3)]
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == 25
    assert table.column("tokens").to_pylist()[3] == b["tokens"][3].tolist()
    assert table.column("jpeg").to_pylist()[4] == b["jpeg"][4]
    np.testing.assert_array_equal(np.array(table.column("img").to_pylist()[7]),
                                  b["img"][7].reshape(-1))
    n = duckdb.sql(f"select count(*), max(y) from read_parquet('{tmp_path}/out/*.parquet')")
    assert n.fetchall() == [(25, 24)]
    hf = pytest.importorskip("datasets")
    loaded = hf.load_dataset("parquet", data_files=files, split="train")
    assert loaded[3]["caption"] == b["caption"][3]
    assert loaded[3]["tokens"] == b["tokens"][3].tolist()


def test_from_hf_keeps_every_kind(tmp_path):
    hf = pytest.importorskip("datasets")
    rows = {
        "x": [[float(i), float(i) + 0.5] for i in range(6)],
        "label": list(range(6)),
        "input_ids": [list(range(i)) for i in range(6)],
        "text": [f"t{i}" for i in range(6)],
        "blob": [bytes([i]) * i for i in range(6)],
    }
    features = hf.Features({
        "x": hf.Sequence(hf.Value("float32"), length=2), "label": hf.ClassLabel(num_classes=6),
        "input_ids": hf.Sequence(hf.Value("int32")), "text": hf.Value("string"),
        "blob": hf.Value("binary")})
    src = hf.Dataset.from_dict(rows, features=features).shuffle(seed=0)
    ds = Dataset.from_hf(src, tmp_path / "d.db", "imported")
    try:
        kinds = {n: c.kind for n, c in ds.columns.items()}
        assert kinds == {"x": "fixed", "label": "fixed", "input_ids": "ragged", "text": "text",
                         "blob": "bytes"}
        for i in range(6):
            want = src[i]
            got = ds[i]
            assert got["x"].tolist() == want["x"] and got["label"] == want["label"]
            assert got["input_ids"].tolist() == want["input_ids"]
            assert got["text"] == want["text"] and got["blob"] == want["blob"]
    finally:
        ds.close()


def test_compaction_reclaims_cleared_chunks_and_old_manifests(tmp_path):
    path = tmp_path / "d.db"
    x = np.ones((20_000, 64), np.float32)  # 5 MB
    with Dataset(path, "t") as ds:
        for _ in range(3):
            ds.clear()
            ds.append({"x": x})
        for _ in range(50):
            ds.append({"x": x[:1]})
        before = os.path.getsize(path)
        ds.db.compact()  # default keep_history=True
        after = os.path.getsize(path)
        assert after < before / 2
        assert len(ds) == 20_050
    with Dataset(path, "t", read_only=True) as ds:
        assert len(ds) == 20_050 and ds.verify() >= x.nbytes
        np.testing.assert_array_equal(ds.take([0, 20_049])["x"], x[:2])


def test_take_ragged_flat_and_undecoded(tmp_path, monkeypatch):
    monkeypatch.setattr(dsmod, "_CHUNK_BYTES", 256)  # rows spread over many chunks
    rows = [np.arange(k, dtype=np.int32) + 100 * k for k in range(40)]
    with Dataset(tmp_path / "d.db", "t") as ds:
        ds.append({"ids": rows, "s": [f"é{i}" for i in range(40)],
                   "j": [{"k": i} for i in range(40)]})
        assert ds.info()["chunks"] > 5
        pick = [39, 0, 17, 3, 17]
        values, offsets = ds.take(pick, ["ids"], ragged="flat")["ids"]
        assert offsets.tolist() == np.cumsum([0] + [len(rows[i]) for i in pick]).tolist()
        np.testing.assert_array_equal(values, np.concatenate([rows[i] for i in pick]))
        got = ds.take(pick, ["s", "j"], decode=False)
        assert got["s"][0] == "é39".encode() and got["j"][2] == b'{"k": 17}'
        listed = ds.take(pick, ["ids"])["ids"]
        assert all((a == rows[i]).all() for a, i in zip(listed, pick))
        with pytest.raises(synadb.InvalidArgument):
            ds.take([0], ragged="padded")


def test_append_takes_a_dataframe_and_an_arrow_table(tmp_path):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    with Dataset(tmp_path / "d.db", "t") as ds:
        ds.append(pd.DataFrame({"a": [1.5, 2.5], "s": ["x", "y"]}))
        ds.append(pa.table({"a": [3.5], "s": ["z"]}))
        assert ds["s"] == ["x", "y", "z"]
        np.testing.assert_array_equal(ds["a"], [1.5, 2.5, 3.5])
        assert ds.columns["a"].kind == "fixed" and ds.columns["s"].kind == "text"


def test_open_reads_only_the_manifest_and_sections_are_aligned_in_the_file(tmp_path,
                                                                          monkeypatch):
    path = tmp_path / "d.db"
    monkeypatch.setattr(dsmod, "_CHUNK_BYTES", 4096)
    with Dataset(path, "t") as ds:
        for i in range(5):
            ds.append({"x": np.full((700, 3), i, np.float32), "s": ["é"] * 700})
        assert ds.info()["chunks"] > 10
    heads = []
    real = dsmod._Chunk.__init__
    monkeypatch.setattr(dsmod._Chunk, "__init__",
                        lambda self, *a, **k: heads.append(a[0]) or real(self, *a, **k))
    with Dataset(path, "t", read_only=True) as ds:
        assert heads == [] and len(ds) == 3500
        assert ds[3499]["x"].tolist() == [4, 4, 4] and len(heads) == 1
        for i in (0, 3, len(ds._chunks) - 1):
            data = ds._chunk(i).typed(ds.columns["x"], "values", np.dtype("<f4"), (3,))
            assert data.ctypes.data % 64 == 0  # the map starts at a page: aligned in the file


def test_a_reader_of_a_cleared_and_rewritten_dataset_is_told_to_refresh(tmp_path):
    path = tmp_path / "d.db"
    with Dataset(path, "t") as w:
        w.append({"v": np.arange(10)})
        r = Dataset(path, "t", read_only=True)
        assert len(r) == 10  # manifest read, no chunk yet
        w.clear()
        w.append({"v": np.arange(100, 110)})
        assert r.take([0])["v"].tolist() == [0]  # its snapshot: the old map still holds it
        r.db.get_bytes("other")  # the handle's index moves on to the new chunks
        r._chunks[0] = None
        with pytest.raises(synadb.InvalidArgument, match="refresh"):
            r.take([0])
        assert r.refresh() == 10 and r[0]["v"] == 100
        r.close()


@pytest.mark.parametrize("dtype,shape", [("int8", ()), ("float64", (3, 2)), ("bool", (5,)),
                                         ("uint16", (1,))])
def test_gathers_across_many_chunks_and_maps_match_numpy(tmp_path, monkeypatch, dtype, shape):
    monkeypatch.setattr(dsmod, "_CHUNK_BYTES", 2048)
    rng = np.random.default_rng(7)
    path = tmp_path / "d.db"
    want = []
    reader = None
    with Dataset(path, "t") as ds:
        for i in range(12):  # the file grows between appends: chunks in several maps
            part = (rng.random((300, *shape)) * 100).astype(dtype)
            ds.append({"v": part, "n": np.arange(300) + 300 * i})
            want.append(part)
            if i == 3:
                reader = Dataset(path, "t", read_only=True)
                reader.take(range(len(reader)))  # map the first chunks now
    want = np.concatenate(want)
    for handle in (reader, Dataset(path, "t", read_only=True)):
        for _ in range(5):
            idx = rng.integers(0, len(want), 257)
            got = handle.take(idx)
            np.testing.assert_array_equal(got["v"], want[idx])
            np.testing.assert_array_equal(got["n"], idx)
        handle.close()


def test_chunks_with_other_segment_sizes_read_and_verify(tmp_path, monkeypatch):
    path = tmp_path / "d.db"
    x = np.arange(40_000, dtype=np.float32).reshape(-1, 40)
    monkeypatch.setattr(dsmod, "_seg_shift", lambda row_bytes: 12)  # 4 KiB segments
    with Dataset(path, "t") as ds:
        ds.append({"x": x[:500]})
    monkeypatch.undo()
    with Dataset(path, "t") as ds:
        ds.append({"x": x[500:]})
    with Dataset(path, "t", read_only=True) as ds:
        assert ds._chunk(0).secs[("x", "values")].shift == 12
        assert ds._chunk(1).secs[("x", "values")].shift == 16
        np.testing.assert_array_equal(ds.take([999, 3, 500])["x"], x[[999, 3, 500]])
        assert ds.verify() == x.nbytes
