"""A RAG app's whole state in one file, reopened by a second process.

A LangChain app (vectors, the indexing API's record manager, the parent
docstore of a ParentDocumentRetriever, the LLM cache, chat history and a
LangGraph checkpointer) and a LlamaIndex app (its whole StorageContext)
each write one file; a fresh interpreter then opens only that file and
finds every surface as the app left it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")
pytest.importorskip("langchain_classic")
pytest.importorskip("llama_index.core")

ROOT = str(Path(__file__).resolve().parents[1])


def run_child(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_langchain_app_with_langgraph_in_one_file(tmp_path):
    from langchain_classic.retrievers import ParentDocumentRetriever
    from langchain_classic.storage import create_kv_docstore
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.indexing import index
    from langchain_core.outputs import Generation
    from langchain_text_splitters import CharacterTextSplitter
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    from synadb.integrations.langchain import (SynaByteStore, SynaCache,
                                               SynaChatMessageHistory, SynaRecordManager,
                                               SynaVectorStore)
    from synadb.integrations.langgraph import SynaCheckpointSaver

    path = str(tmp_path / "app.db")
    emb = DeterministicFakeEmbedding(size=16)
    docs = [Document(page_content="alpha beta gamma delta", metadata={"source": "a"}),
            Document(page_content="one file holds the app", metadata={"source": "b"})]
    with SynaVectorStore(path, emb) as vs, SynaRecordManager("docs", path) as rm:
        got = index(docs, rm, vs, cleanup="incremental", source_id_key="source",
                    key_encoder="sha256")
        assert got["num_added"] == 2
    # One vector store per file: the retriever's child chunks go beside the
    # indexed documents, their parents into a byte store namespace.
    with SynaVectorStore(path, emb) as vs, SynaByteStore(path, namespace="parents") as parents:
        retriever = ParentDocumentRetriever(
            vectorstore=vs, docstore=create_kv_docstore(parents),
            child_splitter=CharacterTextSplitter(separator=" ", chunk_size=6, chunk_overlap=0),
            id_key="doc_id")
        retriever.add_documents([Document(page_content="parent text with several words")],
                                ids=["p1"])
        assert retriever.invoke("several")[0].page_content == "parent text with several words"
    with SynaCache(path) as cache:
        cache.update("prompt", "llm-config", [Generation(text="cached answer")])
    with SynaChatMessageHistory(path, "session") as chat:
        chat.add_user_message("hello")
        chat.add_ai_message("hi there")

    class State(TypedDict):
        n: int

    graph = StateGraph(State)
    graph.add_node("inc", lambda s: {"n": s["n"] + 1})
    graph.add_edge(START, "inc")
    graph.add_edge("inc", END)
    with SynaCheckpointSaver(path) as saver:
        app = graph.compile(checkpointer=saver)
        assert app.invoke({"n": 1}, {"configurable": {"thread_id": "t1"}})["n"] == 2

    seen = run_child(f"""
        import json
        from langchain_core.embeddings import DeterministicFakeEmbedding
        from synadb.integrations.langchain import (SynaByteStore, SynaCache,
            SynaChatMessageHistory, SynaRecordManager, SynaVectorStore)
        from synadb.integrations.langgraph import SynaCheckpointSaver
        from langchain_classic.storage import create_kv_docstore
        path, emb = {path!r}, DeterministicFakeEmbedding(size=16)
        out = {{}}
        with SynaVectorStore(path, emb) as vs, SynaRecordManager("docs", path) as rm:
            out["hit"] = vs.similarity_search("one file holds the app", k=1)[0].metadata
            out["keys"] = len(rm.list_keys())
        with SynaByteStore(path, namespace="parents") as parents:
            out["parent"] = create_kv_docstore(parents).mget(["p1"])[0].page_content
        with SynaCache(path) as cache:
            out["cache"] = cache.lookup("prompt", "llm-config")[0].text
        with SynaChatMessageHistory(path, "session") as chat:
            out["chat"] = [m.content for m in chat.messages]
        with SynaCheckpointSaver(path) as saver:
            tup = saver.get_tuple({{"configurable": {{"thread_id": "t1"}}}})
            out["state"] = tup.checkpoint["channel_values"]["n"]
        print(json.dumps(out))
    """)
    assert seen == {"hit": {"source": "b"}, "keys": 2, "parent": "parent text with several words",
                    "cache": "cached answer", "chat": ["hello", "hi there"], "state": 2}


def test_llamaindex_storage_context_in_one_file(tmp_path):
    from llama_index.core import Document, MockEmbedding, StorageContext, VectorStoreIndex

    from synadb.integrations.llamaindex import (SynaDocumentStore, SynaIndexStore,
                                                SynaVectorStore)

    path = str(tmp_path / "rag.db")
    storage = StorageContext.from_defaults(
        vector_store=SynaVectorStore(path=path), docstore=SynaDocumentStore(path),
        index_store=SynaIndexStore(path))
    docs = [Document(text="synadb keeps the whole storage context", id_="d1"),
            Document(text="a second document about bells", id_="d2")]
    index = VectorStoreIndex.from_documents(docs, storage_context=storage,
                                            embed_model=MockEmbedding(embed_dim=8),
                                            store_nodes_override=True)
    index.set_index_id("main")
    storage.vector_store.close()
    assert sorted(os.listdir(tmp_path)) == ["rag.db"]  # no other file

    seen = run_child(f"""
        import json
        from llama_index.core import MockEmbedding, StorageContext, load_index_from_storage
        from synadb.integrations.llamaindex import (SynaDocumentStore, SynaIndexStore,
                                                    SynaVectorStore)
        path = {path!r}
        storage = StorageContext.from_defaults(
            vector_store=SynaVectorStore(path=path), docstore=SynaDocumentStore(path),
            index_store=SynaIndexStore(path))
        index = load_index_from_storage(storage, index_id="main",
                                        embed_model=MockEmbedding(embed_dim=8))
        nodes = index.as_retriever(similarity_top_k=2).retrieve("bells")
        print(json.dumps({{"docs": sorted(storage.docstore.get_all_ref_doc_info()),
                          "texts": sorted(n.node.get_content() for n in nodes)}}))
    """)
    assert seen == {"docs": ["d1", "d2"],
                    "texts": sorted(d.text for d in docs)}
