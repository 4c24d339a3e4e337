"""Exports and imports: JSON, JSONL, CSV, Parquet, Arrow and DataFrames."""

import base64
import csv
import doctest
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synadb
import synadb.io
from synadb import DbConfig, SynaDB
from synadb.errors import (
    FormatVersionError,
    InvalidArgument,
    InvalidKey,
    InvalidPath,
    MissingDependency,
    SynaError,
)

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
F32_TINY = np.float32(1e-45)  # the smallest float32 subnormal
UNICODE_KEY = "ключ/日本語/🙂"
AWKWARD_KEY = 'a,b "quoted"\nsecond line'

# Every stored type and its edge cases, one list per key, oldest first.
HISTORIES = {
    "f": [0.1, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308],
    "i": [0, I64_MIN, I64_MAX, I64_MIN + 1, I64_MAX - 1, 2**53 + 1],
    "t": ["", "héllo ✓", "a\x00b", "line\nbreak, \"quoted\""],
    "b": [b"", bytes(range(256)), b"\x00"],
    "v": [np.array([0.5, -1.25, 3.0], dtype=np.float32),
          np.array([math.nan, math.inf, -math.inf, -0.0, F32_TINY], dtype=np.float32),
          np.array([np.float32(0.1)], dtype=np.float32)],
    "n": [None, None],
    "mixed": [1.5, 7, "seven", b"\x07", np.array([7.0], dtype=np.float32), None, -2.5],
    UNICODE_KEY: ["値"],
    AWKWARD_KEY: [b"\xff"],
    "sensor/a": [1.0],
    "sensor/b": [2],
    "other/a": ["x"],
}
TOTAL = sum(len(h) for h in HISTORIES.values())


def put_all(db, histories):
    for key, values in histories.items():
        for v in values:
            db.put(key, v)


def same_value(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        # Bit-equal except that any NaN matches any NaN (payloads are not kept).
        return (a.dtype == b.dtype == np.float32 and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=True)
                and np.array_equal(np.signbit(a[~np.isnan(a)]), np.signbit(b[~np.isnan(b)])))
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def assert_same_histories(src, dst, key_map=None):
    """Every key of src is in dst (renamed by key_map) with the same typed history."""
    key_map = key_map or (lambda k: k)
    assert dst.keys() == [key_map(k) for k in src.keys()]
    for key in src.keys():
        want = src.history_entries(key)
        got = dst.history_entries(key_map(key))
        assert [t for t, _ in got] == [t for t, _ in want], key
        for (_, w), (_, g) in zip(want, got):
            assert same_value(w, g), (key, w, g)


def snapshot(db):
    return {k: db.history_entries(k) for k in db.keys()}


def assert_unchanged(db, before):
    after = snapshot(db)
    assert list(after) == list(before)
    for key in before:
        assert len(after[key]) == len(before[key])
        for (t1, v1), (t2, v2) in zip(before[key], after[key]):
            assert t1 == t2 and same_value(v1, v2)


@pytest.fixture
def src(tmp_path):
    with SynaDB(tmp_path / "src.db") as db:
        put_all(db, HISTORIES)
        db.put_floats_batch("batch", np.array([1.0, 2.5, -3.0]))
        yield db


@pytest.fixture
def dst(tmp_path):
    with SynaDB(tmp_path / "dst.db") as db:
        yield db


def test_fixture_stores_what_it_says(src):
    assert src.history_entries("mixed")[:3] == [("float", 1.5), ("int", 7), ("text", "seven")]
    assert [t for t, _ in src.history_entries("n")] == ["null", "null"]


# ------------------------------------------------------------- round trips
ROUND_TRIPS = [("json", SynaDB.export_json, SynaDB.import_json),
               ("jsonl", SynaDB.export_jsonl, SynaDB.import_jsonl),
               ("parquet", SynaDB.export_parquet, SynaDB.import_parquet)]


@pytest.mark.parametrize("ext,export,import_", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_round_trip_every_type(src, dst, tmp_path, ext, export, import_):
    path = tmp_path / f"out.{ext}"
    assert export(src, path) == TOTAL + 3
    assert import_(dst, path) == TOTAL + 3
    assert_same_histories(src, dst)
    dst.close()
    with SynaDB(tmp_path / "dst.db") as again:  # the import was committed
        assert_same_histories(src, again)


@pytest.mark.parametrize("ext,export,import_", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_import_prefix_and_pattern(src, dst, tmp_path, ext, export, import_):
    path = tmp_path / f"out.{ext}"
    export(src, path)
    dst.put_float("old/sensor/a", 0.0)
    assert import_(dst, path, key_prefix="old/", key_pattern="sensor/*") == 2
    assert dst.keys() == ["old/sensor/a", "old/sensor/b"]
    assert dst.get_history("old/sensor/a") == [0.0, 1.0]  # appended, not replaced
    assert dst.get_history("old/sensor/b") == [2]


@pytest.mark.parametrize("ext,export,import_", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_large_values_round_trip(tmp_path, ext, export, import_):
    # Big enough to take the LZ4 path on put.
    vec = np.linspace(-1, 1, 4096, dtype=np.float32)
    blob = bytes(range(256)) * 64
    with SynaDB(tmp_path / "a.db") as a, SynaDB(tmp_path / "b.db") as b:
        a.put_vector("v", vec)
        a.put_bytes("b", blob)
        a.put_text("t", "é" * 5000)
        export(a, tmp_path / f"x.{ext}")
        import_(b, tmp_path / f"x.{ext}")
        assert_same_histories(a, b)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_round_trip_property(fmt):
    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                min_size=1, max_size=20),
        st.lists(st.one_of(
            st.none(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(I64_MIN, I64_MAX),
            st.text(st.characters(blacklist_categories=["Cs"])),
            st.binary(),
            st.lists(st.floats(width=32), min_size=1, max_size=8).map(
                lambda xs: np.array(xs, dtype=np.float32))),
            min_size=1, max_size=5),
        max_size=5))
    def check(histories):
        with tempfile.TemporaryDirectory() as folder:
            with SynaDB(os.path.join(folder, "a.db")) as a, \
                    SynaDB(os.path.join(folder, "b.db")) as b:
                put_all(a, histories)
                path = os.path.join(folder, "x." + fmt)
                n = getattr(a, "export_" + fmt)(path)
                assert n == sum(len(h) for h in histories.values())
                assert getattr(b, "import_" + fmt)(path) == n
                assert_same_histories(a, b)

    check()


# --------------------------------------------------------------- filtering
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet", "arrow"])
@pytest.mark.parametrize("kwargs,keys", [
    ({"key_pattern": "sensor/*"}, ["sensor/a", "sensor/b"]),
    ({"key_prefix": "sensor/"}, ["sensor/a", "sensor/b"]),
    ({"key_pattern": "*/a"}, ["sensor/a", "other/a"]),
    ({"key_pattern": "*/a", "key_prefix": "other"}, ["other/a"]),
    ({"key_prefix": "nothing-here"}, []),
])
def test_export_filters(src, tmp_path, fmt, kwargs, keys):
    path = tmp_path / f"out.{fmt}"
    n = getattr(src, "export_" + fmt)(path, **kwargs)
    assert n == len(keys)
    if fmt == "json":
        assert list(json.loads(path.read_text("utf-8"))["keys"]) == keys
    elif fmt == "jsonl":
        lines = path.read_text("utf-8").splitlines()
        assert [json.loads(line)["key"] for line in lines] == keys
    elif fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            assert [r["key"] for r in csv.DictReader(f)] == keys
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        assert pq.read_table(path).column("key").to_pylist() == keys
    else:
        import pyarrow as pa

        with pa.ipc.open_file(path) as r:
            assert r.read_all().column("key").to_pylist() == keys


# ------------------------------------------------------------- file shapes
def test_json_document_shape(src, tmp_path):
    src.export_json(tmp_path / "x.json")
    doc = json.loads((tmp_path / "x.json").read_text("utf-8"))
    assert doc["format"] == "synadb-export" and doc["version"] == 1
    assert list(doc["keys"]) == src.keys()
    assert doc["keys"]["f"][2:5] == [{"type": "float", "value": "NaN"},
                                      {"type": "float", "value": "Infinity"},
                                      {"type": "float", "value": "-Infinity"}]
    assert doc["keys"]["b"][1] == {"type": "bytes",
                                   "value": base64.b64encode(bytes(range(256))).decode()}
    assert doc["keys"]["v"][0] == {"type": "vector", "value": [0.5, -1.25, 3.0]}
    assert doc["keys"]["n"][0] == {"type": "null", "value": None}
    assert doc["keys"]["i"][2] == {"type": "int", "value": I64_MAX}


def test_jsonl_lines_carry_seq(src, tmp_path):
    src.export_jsonl(tmp_path / "x.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == TOTAL + 3
    mixed = [r for r in rows if r["key"] == "mixed"]
    assert [r["seq"] for r in mixed] == list(range(7))
    assert [r["type"] for r in mixed] == ["float", "int", "text", "bytes", "vector", "null",
                                          "float"]


def test_csv_parses_with_csv_module(src, tmp_path):
    assert src.export_csv(tmp_path / "x.csv") == TOTAL + 3
    with open(tmp_path / "x.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader) == ["key", "seq", "type", "value"]
        rows = list(reader)
    assert len(rows) == TOTAL + 3
    by_key = {}
    for key, seq, typ, value in rows:
        by_key.setdefault(key, []).append((int(seq), typ, value))
    assert [v for _, _, v in by_key["f"]][:5] == ["0.1", "-0.0", "NaN", "Infinity", "-Infinity"]
    assert [float(v) for _, _, v in by_key["f"]][5:] == HISTORIES["f"][5:]
    assert [int(v) for _, _, v in by_key["i"]] == HISTORIES["i"]
    assert [v for _, _, v in by_key["t"]] == HISTORIES["t"]
    assert [base64.b64decode(v) for _, _, v in by_key["b"]] == HISTORIES["b"]
    assert json.loads(by_key["v"][0][2]) == [0.5, -1.25, 3.0]
    assert by_key["n"] == [(0, "null", ""), (1, "null", "")]
    assert by_key[AWKWARD_KEY] == [(0, "bytes", base64.b64encode(b"\xff").decode())]
    assert by_key[UNICODE_KEY] == [(0, "text", "値")]


def test_parquet_reads_in_pandas(src, tmp_path):
    import pandas as pd

    src.export_parquet(tmp_path / "x.parquet")
    df = pd.read_parquet(tmp_path / "x.parquet", dtype_backend="pyarrow")
    assert list(df.columns) == ["key", "seq", "type", "value_float", "value_int",
                                "value_text", "value_bytes", "value_vector"]
    assert len(df) == TOTAL + 3
    ints = df[df["key"] == "i"]
    assert ints["value_int"].tolist() == HISTORIES["i"]  # exact beyond 2**53
    assert ints["value_float"].isna().all()
    floats = df[df["key"] == "f"]["value_float"].astype(object).tolist()
    assert floats[0] == 0.1 and floats[3] == math.inf and floats[4] == -math.inf
    assert df[df["key"] == "b"]["value_bytes"].tolist() == HISTORIES["b"]
    assert df[df["key"] == "t"]["value_text"].tolist() == HISTORIES["t"]
    # pandas' default reader works too (ints with nulls become float64 there).
    plain = pd.read_parquet(tmp_path / "x.parquet")
    assert plain[plain["key"] == "sensor/b"]["value_int"].tolist() == [2]
    vec = plain[(plain["key"] == "v") & (plain["seq"] == 0)]["value_vector"].iloc[0]
    np.testing.assert_array_equal(vec, [0.5, -1.25, 3.0])


def test_parquet_reads_in_duckdb(src, tmp_path):
    duckdb = pytest.importorskip("duckdb")

    path = tmp_path / "x.parquet"
    src.export_parquet(path)
    rel = duckdb.sql(f"select * from '{path}' order by key, seq")
    assert rel.columns == ["key", "seq", "type", "value_float", "value_int", "value_text",
                           "value_bytes", "value_vector"]
    q = duckdb.sql

    assert [r[0] for r in q(f"select value_int from '{path}' where key = 'i' "
                            "order by seq").fetchall()] == HISTORIES["i"]
    got = [r[0] for r in q(f"select value_float from '{path}' where key = 'f' "
                           "order by seq").fetchall()]
    assert got[0] == 0.1 and math.isnan(got[2]) and got[3:5] == [math.inf, -math.inf]
    assert [r[0] for r in q(f"select value_text from '{path}' where key = 't' "
                            "order by seq").fetchall()] == HISTORIES["t"]
    assert [bytes(r[0]) for r in q(f"select value_bytes from '{path}' where key = 'b' "
                                   "order by seq").fetchall()] == HISTORIES["b"]
    assert q(f"select value_vector from '{path}' where key = 'v' and seq = 0"
             ).fetchall()[0][0] == [0.5, -1.25, 3.0]
    assert q(f"select count(*) from '{path}' where type = 'null'").fetchall()[0][0] == 3
    assert q(f"select value_text from '{path}' where key = ?",
             params=[UNICODE_KEY]).fetchall()[0][0] == "値"


def test_arrow_file_reads_with_pyarrow_ipc(src, tmp_path):
    import pyarrow as pa

    assert src.export_arrow(tmp_path / "x.arrow") == TOTAL + 3
    with pa.ipc.open_file(tmp_path / "x.arrow") as reader:
        table = reader.read_all()
    assert table.schema.field("value_vector").type == pa.list_(pa.float32())
    assert table.schema.field("value_bytes").type == pa.binary()
    assert table.num_rows == TOTAL + 3
    rows = [r for r in table.to_pylist() if r["key"] == "mixed"]
    assert [r["type"] for r in rows] == ["float", "int", "text", "bytes", "vector", "null",
                                         "float"]
    assert rows[0]["value_float"] == 1.5 and rows[0]["value_int"] is None
    assert rows[1]["value_int"] == 7 and rows[2]["value_text"] == "seven"
    assert rows[3]["value_bytes"] == b"\x07" and rows[4]["value_vector"] == [7.0]
    assert all(rows[5][c] is None for c in rows[5] if c.startswith("value_"))


def test_empty_exports_are_valid_files(dst, tmp_path):
    import pyarrow.parquet as pq

    assert dst.export_json(tmp_path / "e.json") == 0
    assert json.loads((tmp_path / "e.json").read_text())["keys"] == {}
    assert dst.export_parquet(tmp_path / "e.parquet") == 0
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0
    assert dst.import_parquet(tmp_path / "e.parquet") == 0
    assert dst.import_json(tmp_path / "e.json") == 0


# ------------------------------------------------- atomic, all-or-nothing
def test_failed_export_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.db"
    with SynaDB(path) as db:
        db.put_text("a", "fine")
        db.put_text("b", "CORRUPT-ME-PLEASE")
        db.put_text("c", "after")  # so b's damage is not a torn tail to cut
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"CORRUPT-ME")] ^= 0xFF  # break one real byte of b's record
    path.write_bytes(raw)
    out = tmp_path / "out"
    with SynaDB(path) as db:
        for fmt in ["json", "jsonl", "csv", "parquet", "arrow"]:
            target = out.with_suffix("." + fmt)
            target.write_bytes(b"previous export")
            with pytest.raises(synadb.ChecksumError):
                getattr(db, "export_" + fmt)(target)
            assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.db", "out.arrow", "out.csv", "out.json", "out.jsonl", "out.parquet"]


def test_export_to_a_directory(src, tmp_path):
    with pytest.raises(InvalidPath):
        src.export_json(tmp_path)
    with pytest.raises(InvalidPath):
        src.export_parquet(tmp_path)


def write_export_then(tmp_path, src, edit):
    src.export_json(tmp_path / "good.json")
    doc = json.loads((tmp_path / "good.json").read_text("utf-8"))
    bad = tmp_path / "bad.json"
    bad.write_text(edit(doc), encoding="utf-8")
    return bad


def _set(doc, key, i, entry):
    doc["keys"][key][i] = entry
    return json.dumps(doc)


BAD_JSON = {
    # Each breaks the LAST key, so earlier keys were put before the error.
    "bad type": (lambda d: _set(d, "other/a", 0, {"type": "date", "value": "x"}), "other/a"),
    "int as string": (lambda d: _set(d, "other/a", 0, {"type": "int", "value": "1"}), "int"),
    "bad base64": (lambda d: _set(d, "other/a", 0, {"type": "bytes", "value": "@@"}),
                   "base64"),
    "float word": (lambda d: _set(d, "other/a", 0, {"type": "float", "value": "nan"}), "NaN"),
    "no value": (lambda d: _set(d, "other/a", 0, {"type": "text"}), "value"),
    "empty vector": (lambda d: _set(d, "other/a", 0, {"type": "vector", "value": []}),
                     "other/a"),
    "int too big": (lambda d: _set(d, "other/a", 0, {"type": "int", "value": 2**63}),
                    "64 bits"),
    "f32 overflow": (lambda d: _set(d, "other/a", 0, {"type": "vector", "value": [1e39]}),
                     "float32"),
    "null with value": (lambda d: _set(d, "other/a", 0, {"type": "null", "value": 0}), "null"),
    "truncated": (lambda d: json.dumps(d)[:-40], "not valid JSON"),
    "not ours": (lambda d: json.dumps({"keys": d["keys"]}), "synadb export"),
    "bad version": (lambda d: json.dumps({**d, "version": "1"}), "version"),
    "history not list": (lambda d: json.dumps({**d, "keys": {**d["keys"], "zz": 1}}), "list"),
    "duplicate key": (lambda d: json.dumps(d)[:-2] + ', "f": []}}', "duplicate"),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_malformed_json_imports_nothing(src, dst, tmp_path, case):
    edit, needle = BAD_JSON[case]
    bad = write_export_then(tmp_path, src, edit)
    dst.put_float("f", 99.0)
    dst.put_text("keep", "me")
    before = snapshot(dst)
    with pytest.raises(InvalidArgument) as info:
        dst.import_json(bad)
    assert isinstance(info.value, SynaError)
    assert needle in str(info.value) and str(bad) in str(info.value)
    assert_unchanged(dst, before)
    dst.close()
    with SynaDB(tmp_path / "dst.db") as again:  # nothing reached the file either
        assert_unchanged(again, before)


def test_bad_key_in_import_keeps_its_error_class(src, dst, tmp_path):
    bad = write_export_then(tmp_path, src,
                            lambda d: json.dumps({**d, "keys": {**d["keys"], "": []}}))
    assert dst.import_json(bad) == TOTAL + 3  # an empty history puts nothing
    bad = write_export_then(tmp_path, src, lambda d: json.dumps(
        {**d, "keys": {**d["keys"], "": [{"type": "int", "value": 1}]}}))
    before = snapshot(dst)
    with pytest.raises(InvalidKey, match="value 0"):
        dst.import_json(bad)
    assert_unchanged(dst, before)


def test_not_utf8_json(dst, tmp_path):
    (tmp_path / "x.json").write_bytes(b'{"format": "synadb-export", "\xff": 1}')
    with pytest.raises(InvalidArgument, match="UTF-8"):
        dst.import_json(tmp_path / "x.json")


def test_newer_json_version(src, dst, tmp_path):
    bad = write_export_then(tmp_path, src, lambda d: json.dumps({**d, "version": 2}))
    with pytest.raises(FormatVersionError):
        dst.import_json(bad)
    assert dst.keys() == []


def test_malformed_jsonl_names_the_line(src, dst, tmp_path):
    src.export_jsonl(tmp_path / "x.jsonl")
    lines = (tmp_path / "x.jsonl").read_bytes().splitlines(keepends=True)
    dst.put_int("f", 1)
    before = snapshot(dst)
    cases = {
        "cut": lines[:20] + [lines[20][:15] + b"\n"] + lines[21:],
        "not object": lines[:20] + [b"[1, 2]\n"] + lines[21:],
        "seq backwards": lines[:20] + [lines[19]] + lines[20:],
        "no key": lines[:20] + [b'{"seq": 0, "type": "null", "value": null}\n'] + lines[21:],
        "not utf8": lines[:20] + [b'{"key": "\xff"}\n'] + lines[21:],
    }
    for name, content in cases.items():
        (tmp_path / "bad.jsonl").write_bytes(b"".join(content))
        with pytest.raises(InvalidArgument, match="line 21") as info:
            dst.import_jsonl(tmp_path / "bad.jsonl")
        assert str(tmp_path / "bad.jsonl") in str(info.value), name
        assert_unchanged(dst, before)


def test_jsonl_blank_lines_and_interleaving(dst, tmp_path):
    (tmp_path / "x.jsonl").write_text(
        '{"key": "a", "seq": 0, "type": "int", "value": 1}\n\n'
        '{"key": "b", "type": "text", "value": "x"}\n'
        '{"key": "a", "seq": 5, "type": "float", "value": "-Infinity"}\n', "utf-8")
    assert dst.import_jsonl(tmp_path / "x.jsonl") == 3
    assert dst.get_history("a") == [1, -math.inf]
    assert dst.keys() == ["a", "b"]


def test_parquet_rewritten_by_duckdb_still_imports(src, dst, tmp_path):
    duckdb = pytest.importorskip("duckdb")

    path, shuffled = tmp_path / "x.parquet", tmp_path / "shuffled.parquet"
    src.export_parquet(path)
    # Reordered rows, unused value columns dropped: import sorts by seq.
    duckdb.sql(f"copy (select key, seq, type, value_float, value_int from '{path}' "
               f"where key in ('f', 'i', 'sensor/b') order by seq desc) to '{shuffled}'")
    assert dst.import_parquet(shuffled) == len(HISTORIES["f"]) + len(HISTORIES["i"]) + 1
    assert dst.keys() == ["f", "i", "sensor/b"]
    for key in dst.keys():
        want, got = src.history_entries(key), dst.history_entries(key)
        assert len(got) == len(want)
        assert all(t1 == t2 and same_value(a, b) for (t1, a), (t2, b) in zip(want, got))


def test_malformed_parquet_imports_nothing(src, dst, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    dst.put_text("keep", "me")
    before = snapshot(dst)
    path = tmp_path / "x.parquet"
    src.export_parquet(path)
    table = pq.read_table(path)
    broken = tmp_path / "bad.parquet"

    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidArgument, match="Parquet"):
        dst.import_parquet(tmp_path / "junk.parquet")

    ints = table.column("value_int").to_pylist()
    ints[-1] = None  # the last row says int but holds none
    last = table.num_rows - 1
    types = table.column("type").to_pylist()
    types[last] = "int"
    t2 = table.set_column(4, "value_int", pa.array(ints, pa.int64()))
    t2 = t2.set_column(2, "type", pa.array(types, pa.string()))
    pq.write_table(t2, broken)
    with pytest.raises(InvalidArgument, match=f"row {last}"):
        dst.import_parquet(broken)
    assert_unchanged(dst, before)

    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), broken)
    with pytest.raises(InvalidArgument, match="both have seq 0"):
        dst.import_parquet(broken)
    pq.write_table(table.drop_columns(["value_vector"]), broken)
    with pytest.raises(InvalidArgument, match="value_vector"):
        dst.import_parquet(broken)
    pq.write_table(table.drop_columns(["type"]), broken)
    with pytest.raises(InvalidArgument, match="'type'"):
        dst.import_parquet(broken)
    assert_unchanged(dst, before)


# ------------------------------------------------------------- DataFrames
def test_dataframe_round_trip(src, dst):
    df = src.to_dataframe()
    assert list(df.columns) == ["key", "seq", "type", "value"]
    assert len(df) == TOTAL + 3 and str(df["seq"].dtype) == "int64"
    mixed = df[df["key"] == "mixed"]
    assert mixed["type"].tolist()[:3] == ["float", "int", "text"]
    assert mixed["value"].tolist()[:3] == [1.5, 7, "seven"]
    assert dst.from_dataframe(df.iloc[::-1], key_prefix="p/") == TOTAL + 3
    # Reversed rows: seq puts each history back in order (keys now come in
    # reverse first-appearance order, which is row order).
    assert sorted(dst.keys()) == sorted("p/" + k for k in src.keys())
    for key in src.keys():
        want, got = src.history_entries(key), dst.history_entries("p/" + key)
        assert [t for t, _ in got] == [t for t, _ in want]
        assert all(same_value(a, b) for (_, a), (_, b) in zip(want, got))


def test_to_dataframe_filters_and_equal_length_vectors(dst):
    dst.put_vector("v/a", [1, 2])
    dst.put_vector("v/b", [3, 4])
    dst.put_int("w", 1)
    df = dst.to_dataframe(key_pattern="v/*")
    assert df["value"].dtype == object and len(df) == 2
    np.testing.assert_array_equal(df["value"].iloc[1], np.array([3, 4], dtype=np.float32))
    assert dst.to_dataframe(key_prefix="w")["value"].tolist() == [1]


def test_from_dataframe_infers_types(dst):
    import pandas as pd

    df = pd.DataFrame({"key": ["a", "a", "b", "c", "d", "e", "f", "g", "h"],
                       "value": [1, 2.5, "x", b"y", None, np.array([1.0, 2.0]),
                                 np.float32(0.25), np.int64(-3), np.True_]})
    assert dst.from_dataframe(df) == 9
    assert dst.history_entries("a") == [("int", 1), ("float", 2.5)]
    assert [dst.history_entries(k)[0][0] for k in "bcdefgh"] == [
        "text", "bytes", "null", "vector", "float", "int", "int"]
    assert dst.get_int("h") == 1


def test_from_dataframe_with_types_and_seq(dst):
    import pandas as pd

    df = pd.DataFrame({"key": ["a", "a", "a", "b"], "seq": [2, 0, 1, 0],
                       "type": ["float", "float", "vector", None],
                       "value": [3, 1, [1, 2], pd.NA]})
    assert dst.from_dataframe(df) == 4
    assert [t for t, _ in dst.history_entries("a")] == ["float", "vector", "float"]
    assert dst.get_history("a")[0] == 1.0 and dst.get_history("a")[2] == 3.0
    assert dst.history_entries("b") == [("null", None)]


def test_from_dataframe_bad_row_imports_nothing(dst):
    import pandas as pd

    dst.put_int("a", 0)
    before = snapshot(dst)
    with pytest.raises(InvalidArgument, match=r"row 2 \(key 'c'\)"):
        dst.from_dataframe(pd.DataFrame({"key": ["a", "b", "c"], "value": [1, 2, [3]]}))
    with pytest.raises(InvalidArgument, match="row 1"):
        dst.from_dataframe(pd.DataFrame({"key": ["a", "b"], "type": ["int", "int"],
                                         "value": [1, 2.5]}))
    with pytest.raises(InvalidArgument, match="both have seq 1"):
        dst.from_dataframe(pd.DataFrame({"key": ["a", "a"], "seq": [1, 1], "value": [1, 2]}))
    with pytest.raises(InvalidArgument, match="'value'"):
        dst.from_dataframe(pd.DataFrame({"key": ["a"]}))
    with pytest.raises(InvalidArgument, match="keys are str"):
        dst.from_dataframe(pd.DataFrame({"key": ["a", 5], "value": [1, 2]}))
    assert_unchanged(dst, before)


# ----------------------------------------------------- optional deps, UX
def test_missing_pyarrow(src, dst, tmp_path, monkeypatch):
    src.export_json(tmp_path / "x.json")
    for name in ["pyarrow", "pyarrow.parquet", "pyarrow.ipc"]:
        monkeypatch.setitem(sys.modules, name, None)
    for call in [lambda: src.export_parquet(tmp_path / "x.parquet"),
                 lambda: src.export_arrow(tmp_path / "x.arrow"),
                 lambda: dst.import_parquet(tmp_path / "x.json")]:
        with pytest.raises(MissingDependency) as info:
            call()
        assert isinstance(info.value, ImportError) and isinstance(info.value, SynaError)
        assert info.value.package == "pyarrow"
        assert "pip install 'synadb[arrow]'" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.db", "src.db", "x.json"]


def test_missing_pandas(src, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependency, match="synadb\\[arrow\\]") as info:
        src.to_dataframe()
    assert info.value.package == "pandas"


def test_text_exports_load_no_pyarrow_or_pandas(tmp_path):
    code = (
        "import sys, synadb\n"
        f"db = synadb.SynaDB({str(tmp_path / 'a.db')!r})\n"
        "db.put_float('x', 1.0); db.put_vector('v', [1.0, 2.0])\n"
        f"db.export_json({str(tmp_path / 'a.json')!r})\n"
        f"db.export_jsonl({str(tmp_path / 'a.jsonl')!r})\n"
        f"db.export_csv({str(tmp_path / 'a.csv')!r})\n"
        f"db.import_json({str(tmp_path / 'a.json')!r}, key_prefix='c/')\n"
        "db.close()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'pandas'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert out.stderr == ""


def test_exports_print_nothing_outside_a_terminal(src, tmp_path, capfd):
    for fmt in ["json", "jsonl", "csv", "parquet", "arrow"]:
        getattr(src, "export_" + fmt)(tmp_path / f"x.{fmt}")
    src.to_dataframe()
    assert capfd.readouterr() == ("", "")


def test_progress_off_in_config(tmp_path, capfd):
    with SynaDB(tmp_path / "a.db", config=DbConfig(progress=False)) as db:
        db.put_int("a", 1)
        assert db.export_json(tmp_path / "a.json") == 1
    assert capfd.readouterr() == ("", "")


def test_module_doctest():
    result = doctest.testmod(synadb.io)
    assert result.attempted > 0 and result.failed == 0
