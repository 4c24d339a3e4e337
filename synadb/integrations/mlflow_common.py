"""What every part of the ``synadb://`` MLflow plugin shares: MLflow's
error codes, and the translation of synadb's errors into MlflowException
(which the server turns into the right HTTP status)."""

from __future__ import annotations

from typing import Any

from ..errors import KeyNotFound, MissingDependency, SynaError
from . import mlflow_mapping as mapping

try:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2
    from mlflow.store.tracking import SEARCH_MAX_RESULTS_THRESHOLD
except ImportError as e:  # pragma: no cover
    raise MissingDependency("mlflow", "mlflow", "the synadb:// MLflow plugin") from e

__all__ = ["code", "wrap", "check_max_results", "MlflowException"]


def code(name: str) -> int:
    """MLflow's numeric error code for ``name`` (``"RESOURCE_DOES_NOT_EXIST"``)."""
    return int(getattr(databricks_pb2, name, databricks_pb2.INTERNAL_ERROR))


def wrap(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call into the shim; our errors become MlflowException with MLflow's codes."""
    try:
        return fn(*args, **kwargs)
    except mapping.MlflowException as e:
        raise MlflowException(e.message, code(e.error_code)) from e
    except KeyNotFound as e:
        raise MlflowException(str(e), code("RESOURCE_DOES_NOT_EXIST")) from e
    except SynaError as e:
        raise MlflowException(str(e), code("INVALID_PARAMETER_VALUE")) from e


def check_max_results(max_results: Any, limit: int = SEARCH_MAX_RESULTS_THRESHOLD) -> None:
    """MLflow's check (and message) for a search's ``max_results``."""
    if max_results is None or max_results < 1:
        raise MlflowException(f"Invalid value {max_results} for parameter 'max_results' "
                              "supplied. It must be a positive integer",
                              code("INVALID_PARAMETER_VALUE"))
    if max_results > limit:
        raise MlflowException(f"Invalid value {max_results} for parameter 'max_results' "
                              f"supplied. It must be at most {limit}",
                              code("INVALID_PARAMETER_VALUE"))
