"""What a run's fields hold: its status, and params and tags as text.
Shared by the tracker (:mod:`.tracking`) and its query (:mod:`.tracking_query`)."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from . import errors

__all__ = ["RunStatus", "param_text"]


class RunStatus(str, enum.Enum):
    """A run's life: Running, then Completed, Failed or Killed."""

    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    KILLED = "Killed"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "RunStatus | str") -> "RunStatus":
        if isinstance(value, RunStatus):
            return value
        word = str(value).strip().lower()
        aliases = {"finished": "completed", "complete": "completed", "done": "completed",
                   "success": "completed", "error": "failed", "failure": "failed",
                   "scheduled": "running", "active": "running"}
        word = aliases.get(word, word)
        for status in cls:
            if status.value.lower() == word:
                return status
        raise errors.InvalidArgument(
            f"unknown run status {value!r}; use Running, Completed, Failed or Killed")


def param_text(value: Any) -> str:
    """A param or tag value as the text it is stored as."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (np.integer, np.floating)):
        return str(value.item())
    try:
        return str(value)
    except RecursionError:  # a list nested thousands deep
        raise errors.InvalidArgument(
            f"a {type(value).__name__} value is nested too deeply to store as text") from None
