"""SynaChatMessageStore: haystack-experimental's chat history protocol in the
RAG file, used through its own ChatMessageWriter / ChatMessageRetriever."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("haystack")
hx = pytest.importorskip("haystack_experimental")

from haystack import Document, Pipeline  # noqa: E402
from haystack.dataclasses import ChatMessage, ToolCall  # noqa: E402
from haystack_experimental.chat_message_stores.in_memory import (  # noqa: E402
    InMemoryChatMessageStore,
)
from haystack_experimental.components.retrievers import ChatMessageRetriever  # noqa: E402
from haystack_experimental.components.writers import ChatMessageWriter  # noqa: E402

from synadb.integrations.haystack import SynaChatMessageStore, SynaDocumentStore  # noqa: E402


def conversation() -> list[ChatMessage]:
    call = ToolCall(tool_name="weather", arguments={"city": "Paris"}, id="c1")
    return [
        ChatMessage.from_system("be brief"),
        ChatMessage.from_user("hi"),
        ChatMessage.from_assistant("hello"),
        ChatMessage.from_user("weather in Paris?"),
        ChatMessage.from_assistant(tool_calls=[call]),
        ChatMessage.from_tool("sunny", origin=call),
        ChatMessage.from_assistant("It is sunny."),
        ChatMessage.from_user("thanks"),
    ]


@pytest.mark.parametrize("skip_system", [True, False])
@pytest.mark.parametrize("last_k", [None, 0, 1, 2, 3, 10])
def test_same_answers_as_the_in_memory_reference(tmp_path, skip_system, last_k):
    ours = SynaChatMessageStore(tmp_path / "chat.db", skip_system_messages=skip_system)
    ref = InMemoryChatMessageStore(skip_system_messages=skip_system)
    ref.delete_all_messages()
    try:
        for store in (ours, ref):
            assert store.write_messages("s1", conversation()[:5]) == (4 if skip_system else 5)
            store.write_messages("s1", conversation()[5:])
            store.write_messages("s2", [ChatMessage.from_user("other")])
        assert ours.count_messages("s1") == ref.count_messages("s1")
        got = ours.retrieve_messages("s1", last_k=last_k)
        want = ref.retrieve_messages("s1", last_k=last_k)
        assert [m.to_dict() for m in got] == [m.to_dict() for m in want]
    finally:
        ref.delete_all_messages()
        ours.close()


def test_ids_dedupe_and_bad_input(tmp_path):
    store = SynaChatMessageStore(tmp_path / "chat.db")
    first = store.retrieve_messages("s", last_k=None)
    assert first == []
    store.write_messages("s", [ChatMessage.from_user("a"), ChatMessage.from_assistant("b")])
    again = store.retrieve_messages("s")
    assert [m.meta["chat_message_id"] for m in again] == ["0", "1"]
    assert store.write_messages("s", again) == 0  # already stored: not written twice
    with pytest.raises(ValueError):
        store.write_messages("s", ["not a message"])
    with pytest.raises(ValueError):
        store.retrieve_messages("s", last_k=-1)
    store.delete_messages("s")
    assert store.count_messages("s") == 0
    store.close()


def test_pipeline_components_and_a_second_process(tmp_path):
    path = tmp_path / "app.db"
    docs = SynaDocumentStore(path=str(path), embedding_dim=3)
    docs.write_documents([Document(content="one file", embedding=[1.0, 0.0, 0.0])])
    store = SynaChatMessageStore(path)
    pipe = Pipeline()
    pipe.add_component("writer", ChatMessageWriter(store))
    pipe.run({"writer": {"chat_history_id": "u1", "messages": conversation()[1:3]}})
    reader = ChatMessageRetriever(SynaChatMessageStore.from_dict(store.to_dict()))
    out = reader.run(chat_history_id="u1")["messages"]
    assert [m.text for m in out] == ["hi", "hello"]
    code = textwrap.dedent(f"""
        from haystack.dataclasses import ChatMessage
        from synadb.integrations.haystack import SynaChatMessageStore
        s = SynaChatMessageStore({str(path)!r})
        print([m.text for m in s.retrieve_messages("u1")])
        s.write_messages("u1", [ChatMessage.from_user("from child")])
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['hi', 'hello']"
    assert store.retrieve_messages("u1")[-1].text == "from child"  # live, same handle
    store.delete_all_messages()
    assert store.count_messages("u1") == 0
    assert docs.count_documents() == 1  # the documents in the same file stay
    store.close()


def test_documents_written_by_langchain_read_in_haystack(tmp_path):
    """One file, two frameworks: what LangChain's adapter wrote, Haystack's
    store reads as Documents (id = key, content = text, meta = metadata)."""
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from synadb.integrations.langchain import SynaVectorStore

    emb = DeterministicFakeEmbedding(size=8)
    path = tmp_path / "shared.db"
    lc = SynaVectorStore.from_texts(["alpha beta", "gamma delta"], emb, path=str(path),
                                    metadatas=[{"n": 1}, {"n": 2}], ids=["a", "b"])
    lc.store.close()
    docs = SynaDocumentStore(path=str(path))
    hits = docs.query_by_embedding(emb.embed_query("alpha beta"), top_k=2)
    assert hits[0].id == "a" and hits[0].content == "alpha beta" and hits[0].meta == {"n": 1}
    assert {d.id for d in docs.filter_documents()} == {"a", "b"}
