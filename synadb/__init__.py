"""synadb: an AI-native embedded database in one file.

Metrics, experiment runs, model versions, tensors and embeddings, with no
server and no configuration.  ``import synadb`` loads only numpy; LZ4,
tqdm, pyarrow and the framework adapters load when first used.
"""

from __future__ import annotations

from .db import DbConfig, SynaDB, VerifyReport
from .errors import (
    ChecksumError,
    ClosedError,
    CorruptDatabase,
    DatabaseNotFound,
    DimensionMismatch,
    DiskFull,
    DurabilityError,
    FormatVersionError,
    InvalidArgument,
    InvalidKey,
    InvalidKeyType,
    InvalidPath,
    InvalidType,
    KeyNotFound,
    LockTimeout,
    MissingDependency,
    NonFiniteValue,
    NotADatabase,
    NotASynaFile,
    PermissionDenied,
    ReadOnlyError,
    ReadOnlyFilesystem,
    StorageError,
    SynaError,
    TypeMismatch,
)

from .dataset import Column, Dataset, datasets
from .fulltext import FullTextIndex
from .registry import ModelRegistry, ModelVersion
from .sweep import sweep
from .tensors import TensorEngine
from .tracking import Experiment, ExperimentTracker, Run, RunStatus
from .vectors import (
    CascadeIndex,
    GravityWellIndex,
    HybridVectorStore,
    MmapVectorStore,
    ScoredKey,
    SearchResult,
    SparseVectorStore,
    VectorStore,
    hybrid_search,
)

__version__ = "2.0.0"


def launch_studio(path: str, port: int | None = None, **kwargs: object) -> object:
    """Serve Studio, the local web UI, over ``path`` from a background thread
    (needs ``synadb[studio]``), and return at once.

    The handle has ``.url``, ``.port`` and ``.stop()``, is a context
    manager, and shows Studio inline in Jupyter.  Binds to 127.0.0.1 on
    ``port`` (default 8501, or a free port when 8501 is taken; 0 always
    picks a free one) and opens the file read-only unless
    ``allow_writes=True``.  ``synadb studio FILE`` serves in the foreground.

    >>> studio = synadb.launch_studio("experiments.db")   # doctest: +SKIP
    >>> studio.url                                        # doctest: +SKIP
    'http://127.0.0.1:41537/'
    >>> studio.stop()                                     # doctest: +SKIP
    """
    from .studio import launch_studio as _launch

    return _launch(path, port=port, **kwargs)  # type: ignore[arg-type]

__all__ = [
    "SynaDB",
    "DbConfig",
    "VerifyReport",
    "TensorEngine",
    "Dataset",
    "Column",
    "datasets",
    "FullTextIndex",
    "ExperimentTracker",
    "Experiment",
    "Run",
    "RunStatus",
    "sweep",
    "launch_studio",
    "ModelRegistry",
    "ModelVersion",
    "VectorStore",
    "SearchResult",
    "MmapVectorStore",
    "GravityWellIndex",
    "CascadeIndex",
    "SparseVectorStore",
    "HybridVectorStore",
    "hybrid_search",
    "ScoredKey",
    "SynaError",
    "CorruptDatabase",
    "ChecksumError",
    "NotASynaFile",
    "FormatVersionError",
    "DatabaseNotFound",
    "StorageError",
    "DiskFull",
    "PermissionDenied",
    "ReadOnlyFilesystem",
    "DurabilityError",
    "LockTimeout",
    "ReadOnlyError",
    "ClosedError",
    "KeyNotFound",
    "TypeMismatch",
    "InvalidArgument",
    "InvalidKey",
    "InvalidKeyType",
    "InvalidType",
    "InvalidPath",
    "NotADatabase",
    "NonFiniteValue",
    "DimensionMismatch",
    "MissingDependency",
]
