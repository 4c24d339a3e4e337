"""MLflow 3 logged models (and the GenAI records kept beside them:
evaluation datasets, scorers) in a synadb file, as the ``synadb://``
tracking store's mixin.

The store class (:class:`.mlflow_store.SynaTrackingStore`) mixes this in; it
gives ``self.docs`` (:class:`.mlflow_docs.Docs`) and MLflow's experiment and
run methods.
"""

from __future__ import annotations

__all__ = ["LoggedModelMixin"]


class LoggedModelMixin:
    """Logged models, evaluation datasets and scorers."""
