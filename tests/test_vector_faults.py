"""VectorStore under faults: damaged records, concurrent processes, bad input.

Damage is made the way a disk makes it: a byte flipped in the file, found
by its key; concurrency is real processes on one file.
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import synadb
from synadb import SynaDB
from synadb.errors import ChecksumError, InvalidKeyType
from synadb.vectors import VectorStore

ROOT = str(Path(__file__).resolve().parents[1])
MARKER = 0xA7
HEADER = 12  # marker, type, key length, value length, head CRC


def _child(code, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, env=env, text=True)


def _records(path, key):
    """Offsets of every record of ``key`` in the file, oldest first."""
    data = Path(path).read_bytes()
    kb = key.encode("utf-8")
    found = []
    at = data.find(kb)
    while at >= 0:
        pos = at - HEADER
        if pos >= 64 and data[pos] == MARKER \
                and struct.unpack_from("<H", data, pos + 2)[0] == len(kb):
            found.append(pos)
        at = data.find(kb, at + 1)
    return found


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def _damage(path, key, where):
    """Flip one byte of the latest record of ``key``: in its head (the
    12-byte header and key) or in its value."""
    pos = _records(path, key)[-1]
    klen, vlen = struct.unpack_from("<HI", Path(path).read_bytes(), pos + 2)
    at = {"type": pos + 1, "length": pos + 5, "crc": pos + 9, "key": pos + HEADER + klen - 1,
          "value": pos + HEADER + klen + vlen // 2}[where]
    _flip(path, at)


def _rows(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _build(path, kind):
    """A store with block rows, v/<key> records (with and without metadata),
    a deleted block key (a tombstone) and a metadata-only record.

    kind: "none" (no snapshot), "exact" (a snapshot with the matrix),
    "hnsw" (a snapshot with the graph).
    """
    n_bulk = {"none": 200, "exact": 2100, "hnsw": 400}[kind]
    bulk = _rows(n_bulk, 8, 1)
    single = _rows(20, 8, 2)
    want = {}
    with VectorStore(path, dimensions=8, progress=False,
                     index_threshold=100 if kind == "hnsw" else 10**9) as vs:
        keys = [f"b{i}" for i in range(n_bulk)]
        vs.insert_batch(keys, bulk, [{"i": i} if i % 3 == 0 else None for i in range(n_bulk)])
        want.update({k: (bulk[i], {"i": i} if i % 3 == 0 else {}) for i, k in enumerate(keys)})
        for i in range(20):
            meta = {"s": i, "t": "é"} if i % 2 else None
            vs.insert(f"s{i}", single[i], meta)
            want[f"s{i}"] = (single[i], meta or {})
        vs.insert("b5", single[0][::-1].copy(), {"moved": True})  # a v/<key> over a block row
        want["b5"] = (single[0][::-1].copy(), {"moved": True})
        vs.delete("b7")  # a tombstone over a block row
        del want["b7"]
        vs.insert("only-meta", None, {"m": 1})
        want["only-meta"] = (None, {"m": 1})
    assert bool(_records(path, "__vs__/snap/info")) == (kind != "none")
    # Records after the ones we damage, so that a value damaged at the very
    # end is not taken for a torn tail.
    with SynaDB(path) as db:
        db.put_text("filler", "x")
    return want


def _check_holds(vs, want):
    assert sorted(vs.keys()) == sorted(want)
    assert len(vs) == sum(v is not None for v, _ in want.values())
    for key, (vec, meta) in want.items():
        got = vs.get(key)
        if vec is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, vec)
        assert vs.get_metadata(key) == meta
    for key, (vec, _) in list(want.items())[:50]:
        if vec is not None:
            assert vs.search(vec, k=1)[0].key == key


# -- damaged v/<key> records -----------------------------------------------------

@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("kind", ["none", "exact", "hnsw"])
@pytest.mark.parametrize("where", ["type", "length", "crc", "key", "value"])
def test_damaged_vector_record_is_reported_never_returned(tmp_path, where, kind, checkpoint):
    path = str(tmp_path / "v.db")
    want = _build(path, kind)
    if checkpoint:
        # The engine's index checkpoint then vouches for the record's place,
        # so even a damaged head is pinned on its key.
        with SynaDB(path) as db:
            db.checkpoint()
    victim = "s3"
    vec, _ = want.pop(victim)
    _damage(path, "v/" + victim, where)

    with VectorStore(path, progress=False) as vs:
        hits = [r.key for r in vs.search(vec, k=10)]
        assert victim not in hits  # never returned as data
        listed = vs.keys()
        pinned = checkpoint or where == "value"
        if pinned:
            # The engine knows whose record it is: get says so.
            with pytest.raises(ChecksumError):
                vs.get(victim)
        else:
            assert vs.get(victim) is None
        assert vs.get_metadata(victim) is None
        # keys(), len() and search agree with get().
        assert victim not in vs.keys() and victim not in vs
        assert sorted(listed) in (sorted(want), sorted([*want, victim]))
        _check_holds(vs, want)
        with SynaDB(path, read_only=True) as db:
            assert not db.verify().ok  # and the damage is reported
    # A second open (from the snapshot the first may have rewritten) agrees.
    with VectorStore(path, progress=False, read_only=True) as vs:
        assert victim not in [r.key for r in vs.search(vec, k=10)]
        assert victim not in vs.keys()
        _check_holds(vs, want)


@pytest.mark.parametrize("kind", ["none", "hnsw"])
def test_damaged_block_does_not_stop_open(tmp_path, kind):
    path = str(tmp_path / "v.db")
    want = _build(path, kind)
    with SynaDB(path, read_only=True) as db:
        block = next(k for k in db.keys() if k.startswith("__vs__/bulk/"))
    _damage(path, block, "value")
    with VectorStore(path, progress=False) as vs:
        keys = vs.keys()
        for key in ("s1", "s2", "only-meta"):  # not in the block
            assert key in keys
            assert vs.get_metadata(key) == want[key][1]
        for key in keys:
            try:
                got = vs.get(key)
            except ChecksumError:
                continue
            if want[key][0] is not None:
                np.testing.assert_array_equal(got, want[key][0])


# -- damaged snapshot records --------------------------------------------------

SNAP_EXACT = ["info", "keys", "alive", "mat", "meta", "src_blk", "src_row", "shadow"]
SNAP_HNSW = ["info", "keys", "alive", "meta", "src_blk", "src_row", "shadow",
             "hnsw/data_level0", "hnsw/link_lists", "hnsw/element_levels",
             "hnsw/label_lookup_external", "hnsw/label_lookup_internal"]


def _garbage(path, name, how):
    key = "__vs__/snap/" + name
    with SynaDB(path) as db:
        if name == "info":
            info = json.loads(db.get_text(key))
            info["n"] += 1  # plausible, and wrong
            db.put_text(key, {"json": "{not json", "utf8": "\x00\xff\u2028 garbage",
                              "same": json.dumps(info), "empty": ""}[how])
            return
        old = db.get_bytes(key)
        db.put_bytes(key, {"json": b"{not json", "utf8": b"\xff\xfe\xfd\x00\x80",
                           "same": bytes(len(old)) if old else b"\x01",
                           "empty": b""}[how])


@pytest.mark.parametrize("how", ["crc", "json", "utf8", "same", "empty"])
@pytest.mark.parametrize("kind,name", [("exact", n) for n in SNAP_EXACT]
                         + [("hnsw", n) for n in SNAP_HNSW])
def test_damaged_snapshot_record_costs_a_replay_not_the_open(tmp_path, kind, name, how):
    path = str(tmp_path / "v.db")
    want = _build(path, kind)
    if how == "crc":
        _damage(path, "__vs__/snap/" + name, "value")
    else:
        _garbage(path, name, how)
    with VectorStore(path, progress=False) as vs:
        _check_holds(vs, want)
        report = vs.verify()  # the rebuild is said, and CRC damage makes it not ok
        assert any("snapshot" in r for r in report.rebuilt)
        assert report.ok == (how != "crc")
    # The rebuilt snapshot is a good one.
    with VectorStore(path, progress=False, read_only=True) as vs:
        _check_holds(vs, want)


@pytest.mark.parametrize("change", ["deleted", "not-a-dict", "wrong-types", "huge-index",
                                    "covers-too-much"])
def test_snapshot_missing_or_implausible_costs_a_replay(tmp_path, change):
    path = str(tmp_path / "v.db")
    want = _build(path, "hnsw")
    with SynaDB(path) as db:
        info = json.loads(db.get_text("__vs__/snap/info"))
        if change == "deleted":
            db.delete("__vs__/snap/hnsw/data_level0")
        elif change == "not-a-dict":
            db.put_text("__vs__/snap/info", json.dumps([info]))
        elif change == "wrong-types":
            info.update(n="many", blocks=7, hnsw=[1])
            db.put_text("__vs__/snap/info", json.dumps(info))
        elif change == "huge-index":  # hnswlib would try to allocate this much
            info["hnsw"]["max_elements"] = 1 << 60
            db.put_text("__vs__/snap/info", json.dumps(info))
        else:  # past the end of the file: later records would never be read
            info["covered_end"] = 1 << 40
            db.put_text("__vs__/snap/info", json.dumps(info))
    with VectorStore(path, progress=False, read_only=True) as reader:
        _check_holds(reader, want)
        with VectorStore(path, progress=False) as writer:
            writer.insert("late", np.ones(8, np.float32), {"late": 1})
        want["late"] = (np.ones(8, np.float32), {"late": 1})
        _check_holds(reader, want)  # it follows the writer from where it is


# -- processes -----------------------------------------------------------------

INGEST = """
    import sys
    import numpy as np
    from synadb.vectors import VectorStore
    path, batches, tag, every = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    rng = np.random.default_rng(sum(map(ord, tag)))
    vs = VectorStore(path, dimensions=8, progress=False)
    for b in range(batches):
        if every and b and b % every == 0:  # a fresh handle now and then
            vs.close()
            vs = VectorStore(path, dimensions=8, progress=False)
        vs.insert_batch([f"{tag}{b}/{i}" for i in range(25)],
                        rng.random((25, 8), dtype=np.float32))
        print(b, flush=True)  # committed
    vs.close()
"""


def _blocks(probe):
    return len(probe.keys("__vs__/bulk/*"))


def test_handles_opened_during_ingest_miss_nothing(tmp_path):
    path = str(tmp_path / "v.db")
    VectorStore(path, dimensions=8, progress=False).close()
    batches, opens = 300, 25
    proc = _child(INGEST, path, batches, "w", 0)
    probe = SynaDB(path, read_only=True)
    kept = []
    opened = 0
    try:
        for line in proc.stdout:
            b = int(line)
            if b % (batches // opens) != 3 or opened >= opens:
                continue
            read_only = opened % 2 == 0
            opened += 1
            vs = VectorStore(path, progress=False, read_only=read_only)
            # Every batch committed before a call is seen by that call.
            committed = _blocks(probe)
            assert len(vs) >= 25 * committed
            committed = _blocks(probe)
            assert len(vs.search(np.ones(8, np.float32), k=3)) == 3
            assert len(vs.keys()) >= 25 * committed
            if read_only:
                kept.append(vs)
            else:
                vs.close()  # writes a snapshot of what it saw
        assert proc.wait() == 0
        assert opened == opens
        for vs in kept:
            assert len(vs) == 25 * batches
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        for vs in kept:
            vs.close()
        probe.close()
    with VectorStore(path, progress=False, read_only=True) as vs:
        assert len(vs) == 25 * batches
        assert vs.get(f"w{batches - 1}/24") is not None
    with VectorStore(path, progress=False) as vs:  # the writer's last snapshot too
        assert len(vs) == 25 * batches


def test_two_writer_processes_lose_no_batch(tmp_path):
    path = str(tmp_path / "v.db")
    VectorStore(path, dimensions=8, progress=False).close()
    batches = 300
    # Each writer also reopens its store now and then: every open catches
    # up with the other's batches, and every close writes a snapshot.
    procs = [_child(INGEST, path, batches, tag, 10) for tag in ("a", "b")]
    for p in procs:
        with p:
            out = p.stdout.read().split()
        assert p.returncode == 0
        assert int(out[-1]) == batches - 1
    with VectorStore(path, progress=False, read_only=True) as vs:
        assert len(vs) == 2 * 25 * batches
        for tag in ("a", "b"):
            for b in range(batches):
                assert f"{tag}{b}/0" in vs
    # Compaction keeps them too (it rebuilds from the records).
    with VectorStore(path, progress=False) as vs:
        vs.compact(progress=False)
        assert len(vs) == 2 * 25 * batches


# -- bad input -----------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda vs: vs.get(3),
    lambda vs: vs.get(None),
    lambda vs: vs.get(b"k0"),
    lambda vs: vs.get_metadata(None),
    lambda vs: vs.get_metadata(["k0"]),
    lambda vs: vs.delete(1.5),
    lambda vs: vs.delete_many(["k0", 2]),
    lambda vs: vs.insert(123, np.ones(4, np.float32)),
    lambda vs: vs.insert_batch(["k9", 7], np.ones((2, 4), np.float32)),
    lambda vs: vs.update_metadata(5, {"a": 1}),
    lambda vs: vs.update_metadata(["k0"], {"a": 1}),
])
@pytest.mark.parametrize("read_only", [False, True])
def test_bad_key_types_raise_and_change_nothing(tmp_path, call, read_only):
    path = str(tmp_path / "v.db")
    with VectorStore(path, dimensions=4, progress=False) as vs:
        vs.insert_batch(["k0", "k1"], np.eye(2, 4, dtype=np.float32), [{"a": 0}, None])
        vs.insert("k2", np.ones(4, np.float32))
    before = Path(path).read_bytes()
    with VectorStore(path, progress=False, read_only=read_only) as vs:
        with pytest.raises(synadb.SynaError) as err:
            call(vs)
        if not (read_only and isinstance(err.value, synadb.errors.ReadOnlyError)):
            assert isinstance(err.value, InvalidKeyType)
            assert isinstance(err.value, TypeError)
        assert Path(path).read_bytes() == before
        assert len(vs) == 3 and vs.get_metadata("k0") == {"a": 0}
        assert 3 not in vs and None not in vs and ["k0"] not in vs
    assert Path(path).read_bytes() == before
