"""synadb.integrations.llamaindex: the kv, document and index stores, one
file for a whole StorageContext, and agreement with LlamaIndex's reference
SimpleVectorStore on list filters and MMR.

Second processes are real subprocesses on the same file: what one process
writes, the other reads while both hold the file open.
"""

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage
from llama_index.core.data_structs.data_structs import IndexDict
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.llms import ChatMessage
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore
from llama_index.core.storage.kvstore.types import BaseKVStore
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import synadb
from synadb import SynaDB
from synadb.integrations.llamaindex import (
    KV_KEY_PREFIX,
    SynaChatStore,
    SynaDocumentStore,
    SynaIndexStore,
    SynaKVStore,
    SynaVectorStore,
)

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "rag.db")


@pytest.fixture
def kv(path):
    s = SynaKVStore(path)
    yield s
    s.close()


def _run(code, *args, timeout=120):
    """Run ``code`` in a fresh interpreter (a second process on the file)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _FailAfter:
    """Make the ``n``-th ``put_text`` on a handle raise, as a full disk would."""

    def __init__(self, db, n):
        self.db, self.n, self.calls = db, n, 0
        self.real = db.put_text

    def __call__(self, key, value):
        self.calls += 1
        if self.calls >= self.n:
            raise OSError("disk full (injected)")
        return self.real(key, value)


# --------------------------------------------------------------- kv store
def test_kv_is_a_base_kv_store(kv):
    assert isinstance(kv, BaseKVStore)


def test_kv_put_get_delete_with_collections(kv):
    kv.put("k", {"a": 1, "nested": {"x": [1, 2.5, None, "é"]}})
    kv.put("k", {"b": 2}, collection="other")
    assert kv.get("k") == {"a": 1, "nested": {"x": [1, 2.5, None, "é"]}}
    assert kv.get("k", collection="other") == {"b": 2}
    assert kv.get("missing") is None and kv.get("k", collection="nope") is None
    kv.put("k", {"a": 3})  # overwrite
    assert kv.get("k") == {"a": 3}
    got = kv.get("k")
    got["a"] = 99  # a copy, not the stored value
    assert kv.get("k") == {"a": 3}
    assert kv.delete("k") is True and kv.delete("k") is False
    assert kv.get("k") is None and kv.get("k", collection="other") == {"b": 2}


def test_kv_get_all_keeps_collections_apart_and_odd_keys_intact(kv):
    # "/" and glob characters in keys or collections must not leak across.
    keys = ["plain", "a/b", "star*", "q?", "[x]", "%41", "ünï"]
    for i, k in enumerate(keys):
        kv.put(k, {"i": i}, collection="c/1")
    kv.put("plain", {"i": -1}, collection="c")
    kv.put("other", {"i": -2}, collection="c/1x")
    assert kv.get_all(collection="c/1") == {k: {"i": i} for i, k in enumerate(keys)}
    assert list(kv.get_all(collection="c/1")) == keys  # first-written order
    assert kv.get_all(collection="c") == {"plain": {"i": -1}}
    assert kv.get_all(collection="c*") == {}
    assert kv.get_all(collection="empty") == {}
    assert set(kv.collections()) == {"c/1", "c", "c/1x"}
    assert all(k.startswith(KV_KEY_PREFIX) for k in kv.client.keys())


def test_kv_bad_input(kv):
    with pytest.raises(synadb.InvalidArgument):
        kv.put("k", {"x": object()})
    with pytest.raises(synadb.InvalidArgument):
        kv.put("k", {"x": float("nan")})
    with pytest.raises(synadb.InvalidArgument):
        kv.put("k", ["not", "a", "dict"])
    with pytest.raises(synadb.InvalidKey):
        kv.put("", {})
    with pytest.raises(synadb.InvalidKey):
        kv.put("k", {}, collection="")
    assert kv.client.keys() == []


def test_kv_put_all_in_batches(kv):
    pairs = [(f"k{i}", {"i": i}) for i in range(7)]
    kv.put_all(pairs, collection="c", batch_size=3)
    assert kv.get_all(collection="c") == dict(pairs)
    kv.put_all(pairs[:2], collection="d")  # the default batch size, 1
    assert kv.get_all(collection="d") == dict(pairs[:2])
    kv.put_all([], collection="e")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(synadb.InvalidArgument):
            kv.put_all(pairs, batch_size=bad)


def test_kv_put_all_value_that_is_not_json_writes_nothing(kv):
    with pytest.raises(synadb.InvalidArgument):
        kv.put_all([("a", {"ok": 1}), ("b", {"bad": {1, 2}})], batch_size=1)
    assert kv.get_all() == {}


@pytest.mark.parametrize("batch_size,fail_at,kept", [
    (10, 4, []),                          # one batch: none of it
    (2, 4, ["k0", "k1"]),                 # the 2nd batch fails: the 1st stays
    (3, 6, ["k0", "k1", "k2"]),           # the last write of the 2nd batch fails
])
def test_kv_put_all_each_batch_is_all_or_nothing(path, kv, monkeypatch, batch_size, fail_at,
                                                 kept):
    kv.put("before", {"x": 0})
    monkeypatch.setattr(kv.client, "put_text", _FailAfter(kv.client, fail_at))
    with pytest.raises(OSError, match="injected"):
        kv.put_all([(f"k{i}", {"i": i}) for i in range(6)], batch_size=batch_size)
    monkeypatch.undo()
    expect = {"before": {"x": 0}, **{k: {"i": int(k[1:])} for k in kept}}
    assert kv.get_all() == expect
    with SynaKVStore(path) as again:  # and so says the file
        assert again.get_all() == expect
    assert SynaDB(path).verify().ok


async def test_kv_async_variants(kv):
    await kv.aput("a", {"n": 1})
    await kv.aput_all([("b", {"n": 2}), ("c", {"n": 3})], batch_size=2)
    assert await kv.aget("a") == {"n": 1}
    assert await kv.aget_all() == {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}
    assert await kv.adelete("a") is True
    assert await kv.adelete("a") is False
    assert await kv.aget("a") is None


def test_kv_reopen_and_persist(path):
    with SynaKVStore(path) as kv:
        kv.put_all([("a", {"n": 1}), ("b", {"n": 2})], collection="c", batch_size=2)
        kv.persist("ignored/path.json")
    assert not os.path.exists("ignored")
    with SynaKVStore(path, read_only=True) as kv:
        assert kv.get_all(collection="c") == {"a": {"n": 1}, "b": {"n": 2}}
        kv.persist()  # a read-only handle has nothing to sync
        with pytest.raises(synadb.ReadOnlyError):
            kv.put("x", {})


def test_kv_live_visibility_across_processes(path, kv):
    kv.put("mine", {"from": "parent"}, collection="c")
    got = _run("""
        import json, sys
        from synadb.integrations.llamaindex import SynaKVStore
        kv = SynaKVStore(sys.argv[1])
        seen = kv.get_all(collection="c")
        kv.put_all([("theirs", {"from": "child"}), ("more", {"n": 2})], collection="c",
                   batch_size=2)
        kv.delete("gone", collection="c")
        print(json.dumps(seen))
    """, path)
    assert got == {"mine": {"from": "parent"}}
    # The parent's handle, open all along, sees the child's writes.
    assert kv.get_all(collection="c") == {"mine": {"from": "parent"},
                                          "theirs": {"from": "child"}, "more": {"n": 2}}


# ----------------------------------------------------------- document store
def _doc_nodes():
    src = RelatedNodeInfo(node_id="doc-1")
    return [TextNode(id_=f"n{i}", text=f"chunk {i}", metadata={"i": i},
                     relationships={NodeRelationship.SOURCE: src}) for i in range(3)]


def test_docstore_is_a_kv_document_store(path):
    with SynaDocumentStore(path) as docs:
        assert isinstance(docs, KVDocumentStore)
        assert isinstance(docs.kvstore, SynaKVStore)
        assert docs.path == docs.kvstore.client.path


def test_docstore_round_trip(path):
    with SynaDocumentStore(path) as docs:
        nodes = _doc_nodes()
        docs.add_documents(nodes)
        assert set(docs.docs) == {"n0", "n1", "n2"}
        assert docs.get_node("n1").text == "chunk 1"
        assert docs.get_node("n1").metadata == {"i": 1}
        assert docs.document_exists("n2") and not docs.document_exists("n9")
        assert docs.get_document_hash("n0") == nodes[0].hash
        info = docs.get_ref_doc_info("doc-1")
        assert info.node_ids == ["n0", "n1", "n2"]
        assert set(docs.get_all_ref_doc_info()) == {"doc-1"}
        with pytest.raises(ValueError):
            docs.add_documents([nodes[0]], allow_update=False)
        docs.delete_document("n0")
        assert not docs.document_exists("n0")
        assert docs.get_ref_doc_info("doc-1").node_ids == ["n1", "n2"]
        docs.delete_ref_doc("doc-1")
        assert docs.docs == {} and docs.get_ref_doc_info("doc-1") is None
        docs.set_document_hashes({"x": "h1", "y": "h2"})
        assert docs.get_all_document_hashes() == {"h1": "x", "h2": "y"}
        with pytest.raises(ValueError):
            docs.delete_document("nope")
        docs.delete_document("nope", raise_error=False)
    with SynaDocumentStore(path) as docs:  # reopen
        assert docs.get_document_hash("y") == "h2"


def test_docstore_add_documents_is_all_or_nothing(path, monkeypatch):
    # The base class writes nodes, hashes and ref-doc info as separate
    # put_all calls; a failure in the last must undo the first.
    with SynaDocumentStore(path, batch_size=1) as docs:
        db = docs.kvstore.client
        monkeypatch.setattr(db, "put_text", _FailAfter(db, 7))  # 3 nodes + 3 hashes + ...
        with pytest.raises(OSError, match="injected"):
            docs.add_documents(_doc_nodes())
        monkeypatch.undo()
        assert db.keys() == []
        assert docs.docs == {} and docs.get_ref_doc_info("doc-1") is None
        docs.add_documents(_doc_nodes())
        assert len(docs.docs) == 3


ADD_NODES = """
import json, sys
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from synadb.integrations.llamaindex import SynaDocumentStore
path, who = sys.argv[1], sys.argv[2]
src = RelatedNodeInfo(node_id="doc-1")
with SynaDocumentStore(path) as docs:
    for i in range(15):
        docs.add_documents([TextNode(id_=f"{who}-{i}", text="x",
                                     relationships={NodeRelationship.SOURCE: src})])
print(json.dumps(who))
"""


def test_docstore_concurrent_processes_lose_no_ref_doc_ids(path):
    # Each add reads the document's node list, appends and writes it back;
    # the batch holds the file's write lock across that, so processes
    # adding nodes of one document at once keep every id.
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", ADD_NODES, path, who], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("p", "q", "r")]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with SynaDocumentStore(path) as docs:
        ids = docs.get_ref_doc_info("doc-1").node_ids
        assert sorted(ids) == sorted(f"{w}-{i}" for w in "pqr" for i in range(15))
        assert len(docs.docs) == 45


async def test_docstore_async_variants(path):
    with SynaDocumentStore(path) as docs:
        await docs.async_add_documents(_doc_nodes())
        assert (await docs.aget_node("n2")).text == "chunk 2"
        assert await docs.adocument_exists("n1")
        await docs.aset_document_hashes({"n0": "changed"})
        assert await docs.aget_document_hash("n0") == "changed"
        await docs.adelete_document("n0")
        assert not await docs.adocument_exists("n0")
        await docs.adelete_ref_doc("doc-1")
        assert await docs.aget_ref_doc_info("doc-1") is None


def test_index_store_round_trip(path):
    with SynaIndexStore(path) as ix:
        assert isinstance(ix, KVIndexStore)
        s1, s2 = IndexDict(index_id="one"), IndexDict(index_id="two")
        s1.add_node(TextNode(id_="n1", text="x"))
        ix.add_index_struct(s1)
        ix.add_index_struct(s2)
        assert {s.index_id for s in ix.index_structs()} == {"one", "two"}
        assert ix.get_index_struct("one").nodes_dict == s1.nodes_dict
        ix.delete_index_struct("two")
        assert ix.get_index_struct().index_id == "one"
        ix.persist("ignored")
    with SynaIndexStore(path) as ix:
        assert ix.get_index_struct("one").nodes_dict == s1.nodes_dict


def test_many_namespaces_and_the_vector_store_share_one_file(path, tmp_path):
    vs = SynaVectorStore(path=path)
    a, b = SynaDocumentStore(path), SynaDocumentStore(path, namespace="team-b")
    ix1, ix2 = SynaIndexStore(path), SynaIndexStore(path, namespace="other")
    chats = SynaChatStore(path)
    try:
        vs.add([TextNode(id_="v1", text="vec", embedding=[1.0, 0.0])])
        a.add_documents([TextNode(id_="shared-id", text="from a")])
        b.add_documents([TextNode(id_="shared-id", text="from b")])
        ix1.add_index_struct(IndexDict(index_id="i1"))
        ix2.add_index_struct(IndexDict(index_id="i2"))
        chats.add_message("u", ChatMessage(role="user", content="hi"))
        assert a.get_node("shared-id").text == "from a"
        assert b.get_node("shared-id").text == "from b"
        assert [s.index_id for s in ix1.index_structs()] == ["i1"]
        assert [s.index_id for s in ix2.index_structs()] == ["i2"]
        assert len(vs.client) == 1 and vs.client.keys() == ["v1"]
        # One store's bulk changes leave the others alone.
        b.delete_document("shared-id")
        vs.clear()
        assert a.get_node("shared-id").text == "from a"
        assert chats.get_messages("u")[0].content == "hi"
        vs.add([TextNode(id_="v2", text="vec", embedding=[0.0, 1.0])])
    finally:
        for s in (vs, a, b, ix1, ix2, chats):
            s.close()
    assert os.listdir(tmp_path) == ["rag.db"]
    with SynaVectorStore(path=path) as vs, SynaDocumentStore(path) as a, \
            SynaIndexStore(path, namespace="other") as ix2:
        assert vs.client.keys() == ["v2"]
        assert a.get_node("shared-id").text == "from a"
        assert ix2.get_index_struct().index_id == "i2"
    assert SynaDB(path).verify().ok


# ------------------------------------------- one file for a StorageContext
class HashEmbedding(BaseEmbedding):
    """Bag of hashed words: deterministic, no network."""

    dim: int = 32

    def _vec(self, text):
        v = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            v[zlib.crc32(word.encode()) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def _get_query_embedding(self, query):
        return self._vec(query)

    async def _aget_query_embedding(self, query):
        return self._vec(query)

    def _get_text_embedding(self, text):
        return self._vec(text)


# The subprocess defines the same embedding from this source.
EMBED_SRC = '''
import math, re, zlib
from llama_index.core.embeddings import BaseEmbedding
class HashEmbedding(BaseEmbedding):
    dim: int = 32
    def _vec(self, text):
        v = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            v[zlib.crc32(word.encode()) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]
    def _get_query_embedding(self, query):
        return self._vec(query)
    async def _aget_query_embedding(self, query):
        return self._vec(query)
    def _get_text_embedding(self, text):
        return self._vec(text)
'''

DOCS = [
    ("hnsw", "HNSW graphs make approximate vector search fast on large collections."),
    ("crc", "Every record carries a CRC32C checksum so torn writes are detected."),
    ("cats", "Cats sleep for most of the day and hunt at dusk."),
    ("tensors", "Tensors are stored as typed binary blocks with a dtype and a shape."),
    ("locks", "One writer at a time holds the file lock while readers never wait."),
]
QUERIES = ["fast vector search", "checksum torn writes", "file lock readers"]


def _context(path):
    return StorageContext.from_defaults(vector_store=SynaVectorStore(path=path),
                                        docstore=SynaDocumentStore(path),
                                        index_store=SynaIndexStore(path))


def _close(ctx):
    ctx.vector_store.close()
    ctx.docstore.close()
    ctx.index_store.close()


def _top(index, k=3):
    return {q: [[n.node.node_id, n.node.ref_doc_id, round(n.score, 6)]
                for n in index.as_retriever(similarity_top_k=k).retrieve(q)]
            for q in QUERIES}


RELOAD = EMBED_SRC + '''
import json, sys
from llama_index.core import StorageContext, load_index_from_storage
from synadb.integrations.llamaindex import SynaDocumentStore, SynaIndexStore, SynaVectorStore
path = sys.argv[1]
queries = json.loads(sys.argv[2])
ctx = StorageContext.from_defaults(vector_store=SynaVectorStore(path=path),
                                   docstore=SynaDocumentStore(path),
                                   index_store=SynaIndexStore(path))
index = load_index_from_storage(ctx, embed_model=HashEmbedding())
out = {q: [[n.node.node_id, n.node.ref_doc_id, round(n.score, 6)]
           for n in index.as_retriever(similarity_top_k=3).retrieve(q)] for q in queries}
print(json.dumps({"index_id": index.index_id, "top": out,
                  "docs": sorted(ctx.docstore.get_all_document_hashes().values())}))
'''


@pytest.mark.parametrize("store_nodes", [False, True], ids=["text-in-vectors", "docstore-too"])
def test_storage_context_in_one_file_reloads_in_a_second_process(path, tmp_path, store_nodes):
    embed = HashEmbedding()
    ctx = _context(path)
    docs = [Document(text=t, id_=i) for i, t in DOCS]
    index = VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=embed,
                                            store_nodes_override=store_nodes)
    first = _top(index)
    assert first["fast vector search"][0][1] == "hnsw"
    ctx.persist(persist_dir=str(tmp_path / "unused"))  # our stores write no files
    assert not (tmp_path / "unused" / "docstore.json").exists()
    assert not (tmp_path / "unused" / "index_store.json").exists()
    assert not (tmp_path / "unused" / "default__vector_store.json").exists()
    if store_nodes:
        assert len(ctx.docstore.docs) == len(DOCS)
    # The second process reads while this one still holds every store open.
    got = _run(RELOAD, path, json.dumps(QUERIES))
    assert got["index_id"] == index.index_id
    assert got["top"] == first
    assert {i for i, _ in DOCS} <= set(got["docs"])  # (the nodes' hashes too, if stored)
    _close(ctx)
    # Reopen here too, and everything lives in the one file.
    ctx2 = _context(path)
    again = load_index_from_storage(ctx2, embed_model=embed)
    assert _top(again) == first
    _close(ctx2)
    assert [p for p in os.listdir(tmp_path) if p != "unused"] == ["rag.db"]


def test_index_changes_are_seen_by_another_process(path):
    embed = HashEmbedding()
    ctx = _context(path)
    index = VectorStoreIndex.from_documents(
        [Document(text=t, id_=i) for i, t in DOCS[:2]], storage_context=ctx,
        embed_model=embed, store_nodes_override=True)  # so the docstore tracks ref docs
    index.insert(Document(text=DOCS[4][1], id_=DOCS[4][0]))
    index.delete_ref_doc("crc", delete_from_docstore=True)
    got = _run(RELOAD, path, json.dumps(["file lock readers"]))
    assert got["top"]["file lock readers"][0][1] == "locks"
    assert {r[1] for r in got["top"]["file lock readers"]} == {"hnsw", "locks"}
    assert "crc" not in got["docs"] and {"hnsw", "locks"} <= set(got["docs"])
    _close(ctx)


PIPELINE = EMBED_SRC + '''
import json, sys
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from synadb.integrations.llamaindex import SynaDocumentStore, SynaVectorStore
path, docs = sys.argv[1], json.loads(sys.argv[2])
docstore, vs = SynaDocumentStore(path), SynaVectorStore(path=path)
pipe = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0),
                                          HashEmbedding()],
                         docstore=docstore, vector_store=vs)
nodes = pipe.run(documents=[Document(text=t, id_=i) for i, t in docs])
print(json.dumps({"ran": sorted({n.ref_doc_id for n in nodes}),
                  "vectors": len(vs.client)}))
'''


def test_ingestion_pipeline_deduplicates_across_runs_and_processes(path, tmp_path):
    docs = [Document(text=t, id_=i) for i, t in DOCS]
    docstore, vs = SynaDocumentStore(path), SynaVectorStore(path=path)
    pipe = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0),
                                              HashEmbedding()],
                             docstore=docstore, vector_store=vs)
    assert pipe.docstore_strategy == DocstoreStrategy.UPSERTS
    nodes = pipe.run(documents=docs)
    assert {n.ref_doc_id for n in nodes} == {i for i, _ in DOCS}
    n_vectors = len(vs.client)
    assert pipe.run(documents=docs) == []  # same process, second run: nothing new
    # A second process, with its own pipeline: the hashes are in the file.
    same = _run(PIPELINE, path, json.dumps(DOCS))
    assert same == {"ran": [], "vectors": n_vectors}
    changed = [(i, t + " Now with more words." if i == "cats" else t) for i, t in DOCS]
    got = _run(PIPELINE, path, json.dumps(changed))
    assert got == {"ran": ["cats"], "vectors": n_vectors}  # upserted, not added
    # This process's handles see the other's upsert.
    assert "more words" in " ".join(
        n.get_content() for n in vs.get_nodes(filters=None) if n.ref_doc_id == "cats")
    assert pipe.run(documents=[Document(text=t, id_=i) for i, t in changed]) == []
    docstore.close()
    vs.close()
    assert os.listdir(tmp_path) == ["rag.db"]


# ------------------------------------------------- agreement with upstream
def _filter_nodes():
    def node(id_, emb, meta):
        return TextNode(id_=id_, text=f"text {id_}", embedding=emb, metadata=meta)
    return [
        node("A", [1.0, 0.0], {"rank": "a", "quality": ["medium", "high"], "weight": 1.0,
                               "identifier": "6FTR78Yun"}),
        node("B", [0.0, 1.0], {"rank": "c", "quality": ["medium"], "weight": 2.0,
                               "identifier": "6FTR78Ygl"}),
        node("C", [1.0, 1.0], {"rank": "c", "quality": ["low", "medium", "high"],
                               "weight": 3.0, "identifier": "6FTR78Ztl"}),
        node("D", [0.5, 1.0], {"rank": "b", "quality": [], "weight": 1.0}),
        node("E", [1.0, 0.5], {"rank": "low", "weight": 4.0}),
    ]


# LlamaIndex's reference (build_metadata_filter_fn) tests IN as a plain
# ``value in wanted``: a list-valued field is never IN a list of scalars,
# and always NIN it.  We give the same answers, on purpose.
REFERENCE_CASES = [
    (FilterOperator.IN, "quality", ["low"]),
    (FilterOperator.IN, "quality", ["low", "medium", "high"]),
    (FilterOperator.IN, "rank", ["a", "c"]),
    (FilterOperator.IN, "rank", ["low"]),
    (FilterOperator.IN, "weight", [1.0, 3.0]),
    (FilterOperator.IN, "missing", ["a"]),
    (FilterOperator.NIN, "quality", ["low"]),
    (FilterOperator.NIN, "quality", ["medium", "high"]),
    (FilterOperator.NIN, "rank", ["c"]),
    (FilterOperator.NIN, "missing", ["a"]),
    (FilterOperator.ANY, "quality", ["high", "low"]),
    (FilterOperator.ANY, "quality", ["none"]),
    (FilterOperator.ANY, "rank", ["a", "lo"]),  # str field: substring, as upstream
    (FilterOperator.ALL, "quality", ["medium", "high"]),
    (FilterOperator.ALL, "quality", ["low", "medium", "high"]),
    (FilterOperator.ALL, "quality", []),
    (FilterOperator.CONTAINS, "quality", "high"),
    (FilterOperator.CONTAINS, "quality", "med"),
    (FilterOperator.CONTAINS, "identifier", "78Y"),
    (FilterOperator.CONTAINS, "missing", "x"),
]


@pytest.fixture(scope="module")
def reference():
    ref = SimpleVectorStore()
    ref.add(_filter_nodes())
    return ref


@pytest.fixture
def filtered(tmp_path):
    s = SynaVectorStore(path=str(tmp_path / "f.db"))
    s.add(_filter_nodes())
    yield s
    s.close()


@pytest.mark.parametrize("op,key,value", REFERENCE_CASES,
                         ids=[f"{c[0].name}-{c[1]}-{c[2]!r}" for c in REFERENCE_CASES])
def test_list_filters_agree_with_simple_vector_store(reference, filtered, op, key, value):
    q = VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=10,
                         filters=MetadataFilters(filters=[
                             MetadataFilter(key=key, operator=op, value=value)]))
    want = set(reference.query(q).ids)
    assert set(filtered.query(q).ids) == want


def test_in_on_a_list_field_never_matches_as_upstream(filtered):
    # Before 2.0 this matched C (any element); the reference matches nothing.
    q = VectorStoreQuery(query_embedding=[1.0, 1.0], similarity_top_k=10,
                         filters=MetadataFilters(filters=[MetadataFilter(
                             key="quality", operator=FilterOperator.IN, value=["low"])]))
    assert filtered.query(q).ids == []
    q.filters = MetadataFilters(filters=[MetadataFilter(
        key="quality", operator=FilterOperator.ANY, value=["low"])])
    assert filtered.query(q).ids == ["C"]  # what "any element" is spelled as


def _mmr_data(n=300, dim=8, seed=7):
    rng = np.random.default_rng(seed)
    # A tight cluster near the query and a spread-out rest: diversity has
    # to reach past the nearest few to find its picks.
    near = rng.normal(0, 0.05, (n // 3, dim)) + 1.0
    far = rng.normal(0, 1.0, (n - n // 3, dim))
    vecs = np.vstack([near, far]).astype(np.float32)
    return [TextNode(id_=f"n{i:03d}", text=f"t{i}", embedding=v.tolist(),
                     metadata={"half": i % 2}) for i, v in enumerate(vecs)]


@pytest.fixture(scope="module")
def mmr_nodes():
    return _mmr_data()


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("k", [3, 8])
def test_mmr_agrees_with_simple_vector_store(tmp_path, mmr_nodes, threshold, k):
    ref = SimpleVectorStore()
    ref.add(mmr_nodes)
    query = [1.0] * 8
    q = VectorStoreQuery(query_embedding=query, similarity_top_k=k,
                         mode=VectorStoreQueryMode.MMR)
    want = ref.query(q, mmr_threshold=threshold)
    with SynaVectorStore(path=str(tmp_path / "m.db")) as s:
        s.add(mmr_nodes)
        got = s.query(q, mmr_threshold=threshold)
        assert got.ids == want.ids
        assert got.similarities == pytest.approx(want.similarities, abs=1e-6)
        # The same with a filter, which both apply before MMR.
        q.filters = MetadataFilters(filters=[MetadataFilter(key="half", value=1)])
        assert s.query(q, mmr_threshold=threshold).ids == \
            ref.query(q, mmr_threshold=threshold).ids


def test_mmr_picks_beyond_four_times_k(tmp_path, mmr_nodes):
    # The case that failed before: the reference's picks lie past the 4 * k
    # nearest.  A prefetch kwarg still narrows the candidates when asked.
    ref = SimpleVectorStore()
    ref.add(mmr_nodes)
    q = VectorStoreQuery(query_embedding=[1.0] * 8, similarity_top_k=3,
                         mode=VectorStoreQueryMode.MMR)
    want = ref.query(q, mmr_threshold=0.05).ids
    with SynaVectorStore(path=str(tmp_path / "m.db")) as s:
        s.add(mmr_nodes)
        nearest = [h.key for h in s.client.search([1.0] * 8, k=12)]
        assert not set(want) <= set(nearest)  # the data exercise the defect
        assert s.query(q, mmr_threshold=0.05).ids == want
        narrow = s.query(q, mmr_threshold=0.05, mmr_prefetch_factor=4)
        assert set(narrow.ids) <= set(nearest) and narrow.ids != want
        assert s.query(q, mmr_threshold=0.05, mmr_prefetch_k=12).ids == narrow.ids
        assert s.query(q, mmr_threshold=0.05, mmr_prefetch_k=len(mmr_nodes)).ids == want
        with pytest.raises(synadb.InvalidArgument):
            s.query(q, mmr_prefetch_k=5, mmr_prefetch_factor=2)
        with pytest.raises(synadb.InvalidArgument):
            s.query(q, mmr_prefetch_k=0)
