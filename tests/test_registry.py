"""Model registry: both name sets, stages, SHA-256 on every load, streaming."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import synadb
from synadb import ModelRegistry, ModelVersion
from synadb import registry as registry_mod

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "models.db")


def test_api_md_snippet(path):
    registry = ModelRegistry(path)
    blobs = [os.urandom(2000 + i) for i in range(5)]
    v = registry.save_model("classifier", blobs[0], {"accuracy": "0.95"})
    assert isinstance(v, ModelVersion)
    assert (v.name, v.version, v.stage, v.size_bytes) == ("classifier", 1, "Development", 2000)
    assert v.metadata == {"accuracy": "0.95"} and len(v.checksum) == 64
    for blob in blobs[1:]:
        registry.save_model("classifier", blob)
    data, info = registry.load_model("classifier")  # latest
    assert data == blobs[4] and info.version == 5
    data, info = registry.load_model("classifier", version=3)
    assert data == blobs[2] and info.version == 3
    assert [x.version for x in registry.list_versions("classifier")] == [1, 2, 3, 4, 5]
    assert registry.get_production("classifier") is None
    registry.set_stage("classifier", 5, "Production")
    assert registry.get_production("classifier").version == 5
    registry.close()
    with ModelRegistry(path) as again:  # all of it survives a reopen
        assert again.get_production("classifier").version == 5
        assert again.load_model("classifier", version=1)[0] == blobs[0]


def test_published_wheel_names(path):
    with ModelRegistry(path) as reg:
        v1 = reg.save("m", b"one", {"note": "first"})
        v2 = reg.save("m", b"two", {"note": "second"})
        reg.save("other", b"x")
        assert reg.load("m")[0] == b"two" and reg.load("m", 1)[0] == b"one"
        assert reg.promote("m", 1, "staging").stage == "Staging"
        assert [v.stage for v in reg.list("m")] == ["Staging", "Development"]
        assert reg.list() == ["m", "other"]
        assert reg.get_version("m", 2).checksum == v2.checksum != v1.checksum
        reg.promote("m", 2, "Production")
        assert reg.get_production_model("m").version == 2
        cmp = reg.compare("m", 1, 2)
        assert cmp["metadata"]["note"] == ("first", "second")
        assert cmp["metadata_changed"] == ["note"] and not cmp["same_bytes"]
        assert reg.delete("m", 1) == 1
        assert [v.version for v in reg.list("m")] == [2]
        assert reg.save("m", b"three").version == 3  # numbers are never reused
        assert reg.delete("other") == 1
        assert reg.list() == ["m"]
        with pytest.raises(synadb.KeyNotFound):
            reg.load("other")


def test_stages_are_canonical_and_history_is_kept(path):
    with ModelRegistry(path) as reg:
        for i in range(3):
            reg.save_model("m", bytes([i]) * 10)
        reg.set_stage("m", 1, "PRODUCTION", user="ana", comment="first release")
        reg.set_stage("m", 2, "production")  # archives 1
        assert [v.stage for v in reg.list_versions("m")] == ["Archived", "Production",
                                                             "Development"]
        reg.set_stage("m", 3, "Production", archive_existing=False)
        assert [v.stage for v in reg.list_versions("m")] == ["Archived", "Production",
                                                             "Production"]
        assert reg.get_production("m").version == 3  # promoted last
        hist = reg.stage_history("m", 1)
        assert [(h.from_stage, h.to_stage) for h in hist] == [
            ("", "Development"), ("Development", "Production"), ("Production", "Archived")]
        assert (hist[1].user, hist[1].comment) == ("ana", "first release")
        assert hist[1].at <= hist[2].at
        before = Path(path).read_bytes()
        with pytest.raises(synadb.InvalidArgument, match="unknown stage"):
            reg.set_stage("m", 1, "Live")
        with pytest.raises(synadb.KeyNotFound):
            reg.set_stage("m", 9, "Staging")
        assert Path(path).read_bytes() == before


def test_rollback_goes_to_the_previous_production_version(path):
    with ModelRegistry(path) as reg:
        for i in range(4):
            reg.save_model("m", bytes([i]))
        for v in (1, 2, 4):
            reg.set_stage("m", v, "Production")
        assert reg.rollback("m").version == 2
        assert reg.get_production("m").version == 2
        assert reg.get_version("m", 4).stage == "Archived"
        assert reg.rollback("m").version == 4  # back again, like an undo
        reg.delete("m", 2)
        assert reg.rollback("m").version == 1  # skips a deleted version
        with ModelRegistry(path) as fresh:
            fresh.save_model("solo", b"x")
            with pytest.raises(synadb.KeyNotFound):
                fresh.rollback("solo")


def test_flipped_byte_raises_checksum_error_on_load(path):
    model = os.urandom(50_000)
    with ModelRegistry(path) as reg:
        reg.save_model("m", model)
        reg.save_model("m", b"fine")
    raw = bytearray(Path(path).read_bytes())
    at = raw.find(model[1000:1032]) + 7
    raw[at] ^= 0x10
    Path(path).write_bytes(bytes(raw))
    with ModelRegistry(path) as reg:
        with pytest.raises(synadb.ChecksumError):
            reg.load_model("m", version=1)
        assert not reg.verify("m", 1) and reg.verify("m", 2)
        assert reg.load_model("m")[0] == b"fine"


def test_bytes_that_do_not_match_their_sha256_are_refused(path):
    # Bytes swapped behind the registry's back (the records themselves are
    # sound, so only the SHA-256 can tell).
    with ModelRegistry(path) as reg:
        reg.save_model("m", b"genuine weights")
        reg.db.put_bytes("reg/m/1/0", b"tampered weights")
        with pytest.raises(synadb.ChecksumError, match="SHA-256"):
            reg.load_model("m")
        with pytest.raises(synadb.ChecksumError, match="SHA-256"):
            reg.load_to_file("m", os.path.join(os.path.dirname(path), "out.bin"))
        assert not os.path.exists(os.path.join(os.path.dirname(path), "out.bin"))


def test_large_models_stream_in_chunks(path, tmp_path, monkeypatch):
    monkeypatch.setattr(registry_mod, "CHUNK", 4096)
    model = os.urandom(4096 * 5 + 123)
    src = tmp_path / "model.bin"
    src.write_bytes(model)
    with ModelRegistry(path) as reg:
        v = reg.save_model("big", src)  # from a file, chunk by chunk
        assert v.size_bytes == len(model) and v.format == "file"
        v2 = reg.save_model("big", memoryview(model))
        assert v2.checksum == v.checksum
        assert len(reg.db.keys("reg/big/1/*")) == 6
        assert reg.load_model("big", 1)[0] == model
        out = tmp_path / "out.bin"
        reg.load_to_file("big", out, version=2)
        assert out.read_bytes() == model
        empty = reg.save_model("big", b"")
        assert reg.load_model("big", empty.version)[0] == b""


def test_tags_descriptions_search_and_stats(path):
    with ModelRegistry(path) as reg:
        reg.save_model("a", b"12345", tags={"team": "nlp"}, description="baseline")
        reg.save_model("a", b"123", tags={"team": "nlp", "arch": "bert"})
        reg.save_model("org/b", b"1", tags={"team": "vision"})
        reg.set_tag("org/b", 1, "arch", "vit")
        reg.set_description("a", 2, "distilled")
        assert [(v.name, v.version) for v in reg.find(tags={"team": "nlp"})] == [("a", 1),
                                                                                ("a", 2)]
        assert [(v.name, v.version) for v in reg.find({"arch": "vit"})] == [("org/b", 1)]
        latest = reg.latest_versions()
        assert {n: v.version for n, v in latest.items()} == {"a": 2, "org/b": 1}
        assert reg.get_version("a", 2).description == "distilled"
        assert reg.stats() == {"models": 2, "versions": 3, "total_bytes": 9,
                               "by_stage": {"Development": 3, "Staging": 0,
                                            "Production": 0, "Archived": 0}}


def test_failed_save_leaves_no_version(path, monkeypatch):
    with ModelRegistry(path) as reg:
        reg.save_model("m", b"ok")

        def broken(model):
            def pieces():
                yield b"first piece"
                raise OSError("disk went away")
            return "bytes", pieces(), 100

        monkeypatch.setattr(registry_mod, "_source", broken)
        with pytest.raises(OSError):
            reg.save_model("m", b"ignored")
        monkeypatch.undo()
        assert [v.version for v in reg.list_versions("m")] == [1]
        assert reg.save_model("m", b"next").version == 2
    with ModelRegistry(path) as reg:
        assert [v.version for v in reg.list_versions("m")] == [1, 2]


def test_torch_state_dict_round_trip(path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(4, 2)
    with ModelRegistry(path) as reg:
        v = reg.save_model("lin", model, {"framework": "torch"})
        assert v.format == "torch"
        state = reg.load_torch("lin")
        assert set(state) == {"weight", "bias"}
        assert torch.equal(state["weight"], model.state_dict()["weight"])
        with pytest.raises(synadb.InvalidArgument):
            reg.save_model("bad", object())


SAVER = """
    import sys
    from synadb import ModelRegistry
    with ModelRegistry(sys.argv[1]) as reg:
        for i in range(10):
            reg.save_model("shared", (sys.argv[2] * 100).encode(), {"who": sys.argv[2]})
    print("ok", flush=True)
"""


def test_two_processes_save_versions_without_clashing(path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(SAVER), path, who],
                              stdout=subprocess.PIPE, env=env, text=True) for who in "ab"]
    for p in procs:
        assert p.communicate()[0].strip() == "ok"
    with ModelRegistry(path) as reg:
        versions = reg.list_versions("shared")
        assert [v.version for v in versions] == list(range(1, 21))
        for v in versions:
            data, _ = reg.load_model("shared", v.version)
            assert data == (v.metadata["who"] * 100).encode()


def test_deleting_a_whole_model_never_reuses_its_version_numbers(path):
    registry = ModelRegistry(path)
    registry.save_model("m", b"1")
    registry.save_model("m", b"2")
    assert registry.delete("m") == 2
    assert registry.list_models() == [] and registry.list_versions("m") == []
    with pytest.raises(synadb.KeyNotFound):
        registry.load_model("m")
    with pytest.raises(synadb.KeyNotFound):
        registry.delete("m")
    v = registry.save_model("m", b"new")  # a pinned "m v1" must not mean other bytes
    assert v.version == 3 and registry.list_models() == ["m"]
    assert [c.version for c in registry.stage_history("m")] == [3]
    registry.close()


def test_save_with_tags_that_are_not_a_dict_is_a_syna_error(path):
    registry = ModelRegistry(path)
    with pytest.raises(synadb.InvalidArgument, match="tags must be a dict"):
        registry.save_model("m", b"1", tags=[("team", "nlp")])
    assert registry.list_models() == []
    registry.close()


# -- bad input: SynaErrors, and the file unchanged ------------------------------

def _unchanged(path, calls, error=synadb.InvalidArgument):
    before = Path(path).read_bytes()
    for call in calls:
        with pytest.raises(error):
            call()
    assert Path(path).read_bytes() == before


def test_load_to_file_refuses_a_directory_and_leaves_everything_as_it_was(path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with ModelRegistry(path) as registry:
        registry.save_model("m", b"weights")
        _unchanged(path, [lambda: registry.load_to_file("m", "/"),
                          lambda: registry.load_to_file("m", out),
                          lambda: registry.load_to_file("m", str(out) + os.sep),
                          lambda: registry.load_to_file("m", tmp_path / "missing" / "m.bin")],
                   error=synadb.InvalidPath)
        with pytest.raises(synadb.InvalidType):
            registry.load_to_file("m", 5)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not [p for p in Path("/").iterdir() if p.name.endswith(("synadb-tmp", ".tmp"))
                and p.name.startswith(".")]


def test_find_and_friends_refuse_wrong_types_with_syna_errors(path):
    deep = top = {}
    for _ in range(3000):
        deep["a"] = {}
        deep = deep["a"]
    with ModelRegistry(path) as registry:
        registry.save_model("m", b"weights", tags={"team": "vision"})
        _unchanged(path, [lambda: registry.find(tags=[1]),
                          lambda: registry.find(tags="team"),
                          lambda: registry.find(tags=[("team", "vision")]),
                          lambda: registry.find(metadata=[1]),
                          lambda: registry.get_version("m", "1"),
                          lambda: registry.get_version(5, 1),
                          lambda: registry.stage_history("m", version="1"),
                          lambda: registry.save_model("m", b"w", metadata=top),
                          lambda: registry.save_model("m", b"w", description=5),
                          lambda: registry.verify(version=1)])
        with pytest.raises(TypeError):  # InvalidType: a TypeError too
            registry.find(tags=[1])
        assert [v.version for v in registry.find(tags={"team": "vision"})] == [1]
        # Metadata keys JSON cannot hold are stored as their str, not a TypeError.
        v = registry.save_model("m", b"w2", metadata={(1, 2): "pair", "n": 3})
        assert registry.get_version("m", v.version).metadata == {"(1, 2)": "pair", "n": 3}


def _durably_replaced(events, target):
    """The temp file was fsynced before it was renamed onto ``target``, and
    the folder was fsynced after."""
    target = os.path.realpath(target)
    renames = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == target]
    assert len(renames) == 1, events
    i = renames[0]
    tmp = events[i][1]
    assert ("fsync", tmp) in events[:i], f"{tmp} was renamed before it was fsynced"
    assert ("fsync", os.path.dirname(target)) in events[i + 1:], "the folder was not fsynced"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_load_to_file_is_fsynced_before_and_after_its_rename(path, tmp_path, monkeypatch,
                                                            durability_events):
    with ModelRegistry(path) as registry:
        registry.save_model("m", b"weights " * 1000)
        target = tmp_path / "model.bin"
        target.write_bytes(b"old")
        registry.load_to_file("m", target)
        monkeypatch.undo()
        _durably_replaced(durability_events, target)
    assert target.read_bytes() == b"weights " * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "models.db"]


def test_torch_save_and_load_go_through_the_converter_entry_points(tmp_path):
    pytest.importorskip("torch")
    code = textwrap.dedent(f"""
        import sys
        import torch
        from synadb import ModelRegistry, ExperimentTracker
        reg = ModelRegistry({str(tmp_path / "m.db")!r})
        reg.save_model("net", {{"w": torch.ones(2)}})
        assert torch.equal(reg.load_torch("net")["w"], torch.ones(2))
        t = ExperimentTracker({str(tmp_path / "t.db")!r})
        rid = t.start_run("e")
        t.log_artifact(rid, "w.pt", {{"w": torch.zeros(3)}})
        assert torch.equal(t.load_artifact(rid, "w.pt")["w"], torch.zeros(3))
        print("synadb.integrations._torch_io" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"]  # loaded on demand, by the entry point


def test_a_user_defined_torch_module_subclass_is_saved(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):  # defined here, so its __module__ is this test's
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

    net = Net()
    with ModelRegistry(str(tmp_path / "r.db")) as reg:
        reg.save_model("net", net)
        state = reg.load_torch("net")
    assert torch.equal(state["fc.weight"], net.fc.weight)
