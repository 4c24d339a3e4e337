"""LangGraph adapters: SynaCheckpointSaver and SynaStore.

LangGraph ships a checkpointer conformance suite
(``langgraph-checkpoint-conformance``); it runs here unmodified over every
capability, the extended ones included.  There is no packaged suite for
``BaseStore``, so the store is held to InMemoryStore's behaviour side by side.
"""

import doctest
import operator
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest

pytest.importorskip("langgraph", reason="langgraph is not installed: "
                                        "pip install 'synadb[langgraph]'")

from langchain_core.embeddings import Embeddings
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from synadb import SynaDB
from synadb.db import Storage
from synadb.integrations import langgraph as lg
from synadb.integrations.langchain import SynaByteStore
from synadb.integrations.langgraph import SynaCheckpointSaver, SynaStore

ROOT = str(Path(__file__).resolve().parents[1])


def test_all_pinned():
    assert sorted(lg.__all__) == ["SynaCheckpointSaver", "SynaStore"]


def test_doctests():
    assert doctest.testmod(lg).failed == 0


# ----------------------------------------------------------------- graphs
class State(TypedDict):
    log: Annotated[list[str], operator.add]


def _approval_graph(saver):
    """draft -> review (interrupts for a human) -> publish."""

    def draft(state):
        return {"log": ["draft"]}

    def review(state):
        answer = interrupt({"question": "publish?"})
        return {"log": [f"review:{answer}"]}

    def publish(state):
        return {"log": ["publish"]}

    b = StateGraph(State)
    b.add_node("draft", draft)
    b.add_node("review", review)
    b.add_node("publish", publish)
    b.add_edge(START, "draft")
    b.add_edge("draft", "review")
    b.add_edge("review", "publish")
    b.add_edge("publish", END)
    return b.compile(checkpointer=saver)


def _counter_graph(saver, store=None):
    class S(TypedDict):
        n: int

    b = StateGraph(S)
    b.add_node("inc", lambda s: {"n": s["n"] + 1})
    b.add_edge(START, "inc")
    b.add_edge("inc", END)
    return b.compile(checkpointer=saver, store=store)


def test_interrupt_and_resume(tmp_path):
    with SynaCheckpointSaver(tmp_path / "g.db") as saver:
        g = _approval_graph(saver)
        cfg = {"configurable": {"thread_id": "t1"}}
        out = g.invoke({"log": []}, cfg)
        assert out["log"] == ["draft"]
        assert out["__interrupt__"][0].value == {"question": "publish?"}
        assert g.get_state(cfg).next == ("review",)
        # Another thread does not see it.
        assert g.get_state({"configurable": {"thread_id": "t2"}}).values == {}
        out = g.invoke(Command(resume="yes"), cfg)
        assert out["log"] == ["draft", "review:yes", "publish"]
        assert g.get_state(cfg).next == ()


def test_history_and_time_travel(tmp_path):
    with SynaCheckpointSaver(tmp_path / "g.db") as saver:
        g = _approval_graph(saver)
        cfg = {"configurable": {"thread_id": "t1"}}
        g.invoke({"log": []}, cfg)
        g.invoke(Command(resume="yes"), cfg)
        history = list(g.get_state_history(cfg))
        steps = [h.metadata["step"] for h in history]
        assert steps == sorted(steps, reverse=True) and steps[-1] == -1
        ids = [h.config["configurable"]["checkpoint_id"] for h in history]
        assert ids == sorted(ids, reverse=True)
        # The same history as InMemorySaver gives for the same run.
        mem = _approval_graph(InMemorySaver())
        mem.invoke({"log": []}, cfg)
        mem.invoke(Command(resume="yes"), cfg)
        ref = list(mem.get_state_history(cfg))
        assert [h.values for h in history] == [h.values for h in ref]
        assert [h.next for h in history] == [h.next for h in ref]

        # Time travel: replay from the checkpoint before review (a fork that
        # interrupts again, as with InMemorySaver), then answer "no".
        before_review = next(h for h in history if h.next == ("review",))
        out = g.invoke(None, before_review.config)
        assert out["log"] == ["draft"] and "__interrupt__" in out
        assert g.get_state(cfg).next == ("review",)
        out = g.invoke(Command(resume="no"), cfg)
        assert out["log"] == ["draft", "review:no", "publish"]
        # The fork is a new branch; the old one is still in the history.
        latest = g.get_state(cfg)
        assert latest.values["log"] == ["draft", "review:no", "publish"]
        assert latest.parent_config is not None
        assert len(list(g.get_state_history(cfg))) > len(history)
        old = g.get_state(history[0].config)
        assert old.values["log"] == ["draft", "review:yes", "publish"]

        # update_state from an old checkpoint forks too.
        forked = g.update_state(before_review.config, {"log": ["edited"]})
        assert g.get_state(forked).values["log"] == ["draft", "edited"]


async def test_async_graph(tmp_path):
    async with SynaCheckpointSaver(tmp_path / "g.db") as saver:
        g = _approval_graph(saver)
        cfg = {"configurable": {"thread_id": "a"}}
        await g.ainvoke({"log": []}, cfg)
        out = await g.ainvoke(Command(resume="ok"), cfg)
        assert out["log"] == ["draft", "review:ok", "publish"]
        states = [s async for s in g.aget_state_history(cfg)]
        assert len(states) == len(list(g.get_state_history(cfg)))


def _run(code: str, **fmt) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code).format(**fmt)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_second_process_resumes_thread(tmp_path):
    path = tmp_path / "g.db"
    _run("""
        import sys; sys.path.insert(0, {root!r})
        from tests.test_langgraph import _approval_graph
        from synadb.integrations.langgraph import SynaCheckpointSaver
        saver = SynaCheckpointSaver({path!r})
        out = _approval_graph(saver).invoke({{"log": []}}, {{"configurable": {{"thread_id": "p"}}}})
        assert "__interrupt__" in out
        # No close: a killed process loses nothing it was told was written.
        import os; os._exit(0)
    """, root=ROOT, path=str(path))
    with SynaCheckpointSaver(path) as saver:
        g = _approval_graph(saver)
        cfg = {"configurable": {"thread_id": "p"}}
        assert g.get_state(cfg).next == ("review",)
        out = g.invoke(Command(resume="later"), cfg)
        assert out["log"] == ["draft", "review:later", "publish"]


def test_live_reader_in_other_process(tmp_path):
    # A saver open in this process sees what another process appends.
    path = tmp_path / "g.db"
    with SynaCheckpointSaver(path) as saver:
        cfg = {"configurable": {"thread_id": "x"}}
        assert saver.get_tuple(cfg) is None
        _run("""
            import sys; sys.path.insert(0, {root!r})
            from tests.test_langgraph import _counter_graph
            from synadb.integrations.langgraph import SynaCheckpointSaver
            with SynaCheckpointSaver({path!r}) as s:
                _counter_graph(s).invoke({{"n": 41}}, {{"configurable": {{"thread_id": "x"}}}})
        """, root=ROOT, path=str(path))
        assert saver.get_tuple(cfg).checkpoint["channel_values"]["n"] == 42


def test_put_is_all_or_nothing(tmp_path, monkeypatch):
    # A batch that fails half-way leaves no trace: the thread's latest
    # checkpoint is still the previous one.
    path = tmp_path / "g.db"
    with SynaCheckpointSaver(path) as saver:
        g = _counter_graph(saver)
        cfg = {"configurable": {"thread_id": "t"}}
        g.invoke({"n": 0}, cfg)
        before = saver.get_tuple(cfg)
        keys_before = set(saver._db.keys())

        class Boom(Exception):
            pass

        real = Storage.put_blobs

        def put_then_fail(self, items, *a, **k):
            real(self, items[:1], *a, **k)  # the first record is written...
            raise Boom  # ...and then the process "fails"

        monkeypatch.setattr(Storage, "put_blobs", put_then_fail)
        with pytest.raises(Boom):
            g.invoke({"n": 5}, cfg)
        monkeypatch.undo()
        assert set(saver._db.keys()) == keys_before
        assert saver.get_tuple(cfg).config == before.config


def test_writes_idempotent_and_ordered(tmp_path):
    with SynaCheckpointSaver(tmp_path / "g.db") as saver:
        cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        from langgraph.checkpoint.base import empty_checkpoint
        stored = saver.put(cfg, empty_checkpoint(), {"source": "input", "step": -1}, {})
        saver.put_writes(stored, [("a", 1), ("b", 2)], "task-b", "~1")
        saver.put_writes(stored, [("a", 99)], "task-b", "~1")  # same (task, idx): kept
        saver.put_writes(stored, [("c", 3)], "task-a", "~0")
        writes = saver.get_tuple(stored).pending_writes
        assert writes == [("task-a", "c", 3), ("task-b", "a", 1), ("task-b", "b", 2)]


def test_odd_ids_stay_apart(tmp_path):
    # Ids with "/", "%", glob characters: each is its own thread / namespace.
    with SynaCheckpointSaver(tmp_path / "g.db") as saver:
        g = _counter_graph(saver)
        for i, tid in enumerate(["a/b", "a", "a%2Fb", "*", "[x]", "a?"]):
            g.invoke({"n": i * 10}, {"configurable": {"thread_id": tid}})
        for i, tid in enumerate(["a/b", "a", "a%2Fb", "*", "[x]", "a?"]):
            cfg = {"configurable": {"thread_id": tid}}
            assert g.get_state(cfg).values == {"n": i * 10 + 1}
            assert len(list(saver.list(cfg))) == 3
        saver.delete_thread("*")
        assert saver.get_tuple({"configurable": {"thread_id": "*"}}) is None
        assert saver.get_tuple({"configurable": {"thread_id": "a"}}) is not None


def test_unchanged_values_stored_once(tmp_path):
    # Channel values are stored per version: a big value that later steps
    # leave alone is not copied into every checkpoint.
    class S(TypedDict):
        doc: str
        n: int

    b = StateGraph(S)
    for name in ("a", "b", "c"):
        b.add_node(name, lambda s: {"n": s["n"] + 1})
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", "c")
    b.add_edge("c", END)
    with SynaCheckpointSaver(tmp_path / "g.db") as saver:
        g = b.compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "t"}}
        g.invoke({"doc": "x" * 100_000, "n": 0}, cfg)
        assert len(list(saver.list(cfg))) == 5
        docs = [k for k in saver._db.keys(lg.BLOB_PREFIX + "*") if "/doc/" in k]
        assert len(docs) == 1
        for h in g.get_state_history(cfg):
            if h.metadata["step"] >= 0:
                assert h.values["doc"] == "x" * 100_000
        # Pruning keeps what the surviving checkpoint needs.
        saver.prune(["t"])
        assert g.get_state(cfg).values == {"doc": "x" * 100_000, "n": 3}
        assert len(list(saver.list(cfg))) == 1


# ------------------------------------------------------------ conformance
async def test_checkpoint_conformance(tmp_path):
    conformance = pytest.importorskip(
        "langgraph.checkpoint.conformance",
        reason="pip install langgraph-checkpoint-conformance")
    from langgraph.checkpoint.conformance.report import ProgressCallbacks

    counter = iter(range(1000))

    @conformance.checkpointer_test(name="SynaCheckpointSaver")
    async def syna_saver():
        saver = SynaCheckpointSaver(tmp_path / f"conf-{next(counter)}.db")
        try:
            yield saver
        finally:
            saver.close()

    failures = []
    report = await conformance.validate(syna_saver, progress=ProgressCallbacks(
        on_test_result=lambda cap, name, ok, err: ok or failures.append(f"{cap}.{name}\n{err}")))
    assert not failures, "\n".join(failures)
    for cap, result in report.results.items():
        assert result.detected and result.passed, (cap, result)


# ------------------------------------------------------------------ store
class AxisEmbeddings(Embeddings):
    """Texts name their vectors ("1 0 0"); anything after the numbers is ignored."""

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text):
        nums = []
        for tok in text.split():
            try:
                nums.append(float(tok))
            except ValueError:
                break
        return (nums + [0.0, 0.0, 0.0])[:3]


def _exercise(store: BaseStore):
    """The same calls on any BaseStore; returns what they gave (without times)."""
    store.put(("users", "1"), "prefs", {"theme": "dark", "size": 3, "tags": ["a", "b"],
                                       "nested": {"x": 1}})
    store.put(("users", "2"), "prefs", {"theme": "light", "size": 1})
    store.put(("users", "2"), "notes", {"text": "hello"})
    store.put(("docs",), "d1", {"kind": "report"})
    store.put(("docs", "drafts", "v1"), "d2", {"kind": "draft"})
    store.put(("users", "2"), "notes", {"text": "hello again"})  # update
    store.put(("docs",), "gone", {"kind": "tmp"})
    store.delete(("docs",), "gone")

    def items(found):
        return sorted((i.namespace, i.key, str(i.value)) for i in found)

    return {
        "get": store.get(("users", "2"), "notes").value,
        "deleted": store.get(("docs",), "gone"),
        "all": items(store.search(("users",), limit=100)),
        "eq": items(store.search(("users",), filter={"theme": "dark"})),
        "gte": items(store.search(("users", "1"), filter={"size": {"$gte": 2}})),
        "ne": items(store.search(("users",), filter={"theme": {"$ne": "dark"}})),
        "nested": items(store.search((), filter={"nested": {"x": 1}})),
        "list": items(store.search((), filter={"tags": ["a", "b"]})),
        "page": len(store.search((), limit=2, offset=1)),
        "ns": store.list_namespaces(),
        "ns_prefix": store.list_namespaces(prefix=("users",)),
        "ns_suffix": store.list_namespaces(suffix=("v1",)),
        "ns_wild": store.list_namespaces(prefix=("docs", "*")),
        "ns_depth": store.list_namespaces(max_depth=1),
        "ns_page": store.list_namespaces(limit=1, offset=1),
        # Last: InMemoryStore's get of a missing namespace creates it.
        "missing": store.get(("users", "9"), "x"),
    }


def test_store_matches_inmemory(tmp_path):
    with SynaStore(tmp_path / "s.db") as store:
        assert _exercise(store) == _exercise(InMemoryStore())
        # Where InMemoryStore raises TypeError (a comparison on an item that
        # lacks the field), the item simply does not match, as in Postgres.
        assert [i.key for i in store.search(("users",), filter={"size": {"$gte": 2}})] \
            == ["prefs"]


async def test_store_async(tmp_path):
    with SynaStore(tmp_path / "s.db") as store:
        await store.aput(("a",), "k", {"v": 1})
        assert (await store.aget(("a",), "k")).value == {"v": 1}
        assert [i.key for i in await store.asearch(("a",), filter={"v": 1})] == ["k"]
        assert await store.alist_namespaces() == [("a",)]
        await store.adelete(("a",), "k")
        assert await store.aget(("a",), "k") is None


def test_store_keeps_created_at_and_persists(tmp_path):
    path = tmp_path / "s.db"
    with SynaStore(path) as store:
        store.put(("n",), "k", {"v": 1})
        first = store.get(("n",), "k")
        store.put(("n",), "k", {"v": 2})
        second = store.get(("n",), "k")
        assert second.created_at == first.created_at
        assert second.updated_at >= first.updated_at
    with SynaStore(path) as store:
        assert store.get(("n",), "k").value == {"v": 2}


def test_store_odd_labels(tmp_path):
    with SynaStore(tmp_path / "s.db") as store:
        store.put(("a/b",), "k/1", {"v": 1})
        store.put(("a", "b"), "k", {"v": 2})
        store.put(("*",), "%", {"v": 3})
        assert store.get(("a/b",), "k/1").value == {"v": 1}
        assert [i.value["v"] for i in store.search(("a",))] == [2]
        assert [i.value["v"] for i in store.search(("*",))] == [3]
        assert sorted(store.list_namespaces()) == [("*",), ("a", "b"), ("a/b",)]
        with pytest.raises(Exception, match="period"):
            store.put(("a.b",), "k", {"v": 1})


def test_store_semantic_search(tmp_path):
    index = {"dims": 3, "embed": AxisEmbeddings(), "fields": ["text"]}
    ref = InMemoryStore(index=index)
    with SynaStore(tmp_path / "s.db", index=index) as store:
        for s in (store, ref):
            s.put(("m",), "x", {"text": "1 0 0 about x"})
            s.put(("m",), "y", {"text": "0 1 0 about y"})
            s.put(("m",), "xy", {"text": "1 1 0 both"})
            s.put(("m",), "plain", {"other": "no text"})
            s.put(("m",), "skip", {"text": "1 0 0"}, index=False)
        got = store.search(("m",), query="1 0.1 0", limit=5)
        want = ref.search(("m",), query="1 0.1 0", limit=5)
        assert [i.key for i in got] == [i.key for i in want]
        for a, b in zip(got, want):
            assert (a.score is None) == (b.score is None)
            if a.score is not None:
                assert a.score == pytest.approx(b.score)
        # Filter and query together.
        got = store.search(("m",), query="0 1 0", filter={"text": "1 1 0 both"})
        assert [i.key for i in got] == ["xy"]


def test_store_in_a_graph_node(tmp_path):
    path = tmp_path / "agent.db"

    class S(TypedDict):
        user: str
        seen: int

    def remember(state, *, store: BaseStore):
        ns = ("visits", state["user"])
        item = store.get(ns, "count")
        n = (item.value["n"] if item else 0) + 1
        store.put(ns, "count", {"n": n})
        return {"seen": n}

    b = StateGraph(S)
    b.add_node("remember", remember)
    b.add_edge(START, "remember")
    b.add_edge("remember", END)
    with SynaCheckpointSaver(path) as saver, SynaStore(path) as store:
        g = b.compile(checkpointer=saver, store=store)
        # Memory crosses threads; state does not.
        assert g.invoke({"user": "ann", "seen": 0}, {"configurable": {"thread_id": "1"}})["seen"] == 1
        assert g.invoke({"user": "ann", "seen": 0}, {"configurable": {"thread_id": "2"}})["seen"] == 2
        assert g.invoke({"user": "bob", "seen": 0}, {"configurable": {"thread_id": "3"}})["seen"] == 1
    with SynaStore(path) as store:
        assert store.get(("visits", "ann"), "count").value == {"n": 2}


def test_one_file_shared_with_other_stores(tmp_path):
    path = tmp_path / "shared.db"
    with SynaCheckpointSaver(path) as saver, SynaStore(path) as store, \
            SynaByteStore(path) as bs, SynaDB(path) as db:
        bs.mset([("doc1", b"parent text")])
        db.put_text("app/setting", "on")
        g = _counter_graph(saver, store)
        g.invoke({"n": 1}, {"configurable": {"thread_id": "t"}})
        store.put(("mem",), "k", {"v": 1})
        saver.delete_thread("t")
        saver.prune(["t"])
        assert bs.mget(["doc1"]) == [b"parent text"]
        assert list(bs.yield_keys()) == ["doc1"]
        assert db.get_text("app/setting") == "on"
        assert store.get(("mem",), "k").value == {"v": 1}
        assert store.list_namespaces() == [("mem",)]
        assert list(saver.list(None)) == []
        g.invoke({"n": 5}, {"configurable": {"thread_id": "t"}})
        assert [k for k in db.keys() if not k.startswith(("__lg_", "__lc_bs__/", "app/"))] == []
    with SynaDB(path) as db:
        assert db.verify().ok


def test_missing_langgraph_names_the_extra():
    out = _run("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "langgraph" or name.startswith("langgraph."):
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        from synadb import errors
        try:
            import synadb.integrations.langgraph
        except errors.MissingDependency as e:
            print(e)
    """)
    assert "pip install 'synadb[langgraph]'" in out


def test_import_synadb_loads_no_langgraph():
    out = _run("""
        import sys, synadb
        print(sorted(m for m in sys.modules if m.startswith(("langgraph", "langchain"))))
    """)
    assert out.strip() == "[]"


def test_list_across_threads(tmp_path):
    with SynaCheckpointSaver(tmp_path / "g.db") as saver:
        g = _counter_graph(saver)
        for tid in ("a", "b", "c"):
            g.invoke({"n": 0}, {"configurable": {"thread_id": tid}})
        latest_b = saver.get_tuple({"configurable": {"thread_id": "b"}})
        saver.put_writes(latest_b.config, [("n", 7)], "task")
        every = list(saver.list(None))
        assert len(every) == 9
        ids = [t.config["configurable"]["checkpoint_id"] for t in every]
        assert ids == sorted(ids, reverse=True)  # newest first, as SqliteSaver
        b = next(t for t in every if t.config == latest_b.config)
        assert b.pending_writes == [("task", "n", 7)]
        inputs = list(saver.list(None, filter={"source": "input"}))
        assert sorted(t.config["configurable"]["thread_id"] for t in inputs) == ["a", "b", "c"]
        assert len(list(saver.list(None, limit=4))) == 4
        assert len(list(saver.list(None, before={"configurable": {
            "checkpoint_id": ids[2]}}))) == 6


def test_killed_writer_leaves_consistent_threads(tmp_path):
    # SIGKILL a process that keeps checkpointing; every checkpoint that
    # survives is whole: its values load and its parent is there.
    import signal
    import time

    path = tmp_path / "g.db"
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {ROOT!r})
        from tests.test_langgraph import _counter_graph
        from synadb.integrations.langgraph import SynaCheckpointSaver
        s = SynaCheckpointSaver({str(path)!r})
        g = _counter_graph(s)
        i = 0
        while True:
            g.invoke({{"n": i}}, {{"configurable": {{"thread_id": f"t{{i % 3}}"}}}})
            i += 1
            if i == 5:
                print("go", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == b"go"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with SynaCheckpointSaver(path) as saver:
        tuples = list(saver.list(None))
        assert len(tuples) >= 15
        ids = {(t.config["configurable"]["thread_id"], t.config["configurable"]["checkpoint_id"])
               for t in tuples}
        for t in tuples:
            if t.parent_config is not None:
                p = t.parent_config["configurable"]
                assert (p["thread_id"], p["checkpoint_id"]) in ids
            if t.metadata["step"] >= 0:
                assert set(t.checkpoint["channel_values"]) >= {"n"}
        # And the thread carries on.
        g = _counter_graph(saver)
        assert g.invoke({"n": 100}, {"configurable": {"thread_id": "t0"}}) == {"n": 101}
