"""Vector storage and search.  hnswlib is imported only when an index is built."""

from .filters import compile_filter
from .store import METRICS, SearchResult, VectorStore

__all__ = ["VectorStore", "SearchResult", "METRICS", "compile_filter"]
