"""MLflow 3 traces in a synadb file: trace infos, spans, tags, assessments,
search and trace metrics, as the ``synadb://`` tracking store's mixin.

The store class (:class:`.mlflow_store.SynaTrackingStore`) mixes this in; it
gives ``self.docs`` (:class:`.mlflow_docs.Docs`) and MLflow's experiment and
run methods.
"""

from __future__ import annotations

__all__ = ["TraceStoreMixin"]


class TraceStoreMixin:
    """Traces, spans and assessments (MLflow's tracking-store trace API)."""
