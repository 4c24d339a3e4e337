"""What a component's ``verify()`` returns, and how components say that they
worked around damage (the derived records they rebuild are caches)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .engine.compact import VerifyReport

__all__ = ["ComponentReport", "warn", "describe"]


@dataclass
class ComponentReport:
    """The engine's report on the file, plus a component's own findings.

    ``engine`` is the database's :class:`~synadb.VerifyReport`; ``problems``
    lists the component's records that cannot be read now (naming their
    keys); ``rebuilt`` what the handle worked around since it opened (a
    derived record rebuilt from the records it summarizes).
    """

    engine: VerifyReport
    problems: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    label: ClassVar[str] = "component"

    @property
    def ok(self) -> bool:
        return self.engine.ok and not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [str(self.engine)]
        lines += [f"  {self.label}: {p}" for p in self.problems]
        lines += [f"  rebuilt: {r}" for r in self.rebuilt]
        return "\n".join(lines)


def warn(path: str, message: str) -> None:
    """Log a worked-around problem on the "synadb" logger."""
    # logging is imported only when there is something to say: import synadb stays light.
    import logging

    logging.getLogger("synadb").warning("%s: %s", path, message)


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
