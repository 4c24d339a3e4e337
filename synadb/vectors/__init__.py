"""Vector storage and search.  hnswlib is imported only when an index is built.

Which one to use:

- :class:`VectorStore`: the default; vectors + metadata + filters, exact then
  HNSW, the store behind the LangChain/LlamaIndex/Haystack adapters.
- :class:`MmapVectorStore`: bulk ingestion of millions of vectors into a
  pre-allocated map, then one HNSW build.
- :class:`GravityWellIndex`: IVF-style, builds in a fraction of HNSW's time.
- :class:`CascadeIndex`: LSH buckets with exact re-ranking, tunable by preset.
- :class:`SparseVectorStore`: exact search over BM25/SPLADE-style sparse vectors.
- :class:`HybridVectorStore`: a hot layer for live ingest over a cold layer.
- :func:`hybrid_search`: fuse dense and sparse results by reciprocal rank.
"""

from .cascade import CascadeIndex
from .filters import compile_filter
from .gravity import GravityWellIndex
from .hybrid import HybridVectorStore
from .indexes import ScoredKey, hybrid_search
from .mmap_store import MmapVectorStore
from .sparse import SparseStats, SparseVectorStore
from .store import METRICS, SearchResult, VectorStore

__all__ = ["VectorStore", "SearchResult", "METRICS", "compile_filter", "MmapVectorStore",
           "GravityWellIndex", "CascadeIndex", "SparseVectorStore", "SparseStats",
           "HybridVectorStore", "hybrid_search", "ScoredKey"]
