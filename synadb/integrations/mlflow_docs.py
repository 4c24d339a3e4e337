"""MLflow entities that have no synadb component of their own, kept as JSON
documents in the same file: ``mlflow/<kind>/<id>`` (a trace, a span set, a
logged model, a webhook, an alias map...).

Shared by the ``synadb://`` plugin's stores (:mod:`.mlflow_store`,
:mod:`.mlflow_traces`, :mod:`.mlflow_models`, :mod:`.mlflow_registry`).  It
needs no mlflow import: it only keeps documents, the stores give them meaning.

Every read goes to the file, so a second process (an ``mlflow server`` beside
a training script) sees a document as soon as its writer's put returns.  A
read-modify-write goes inside :meth:`Docs.atomic`: the engine's batch holds
the file's write lock across processes, and its puts count all together or
not at all.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

from ..db import SynaDB
from ..errors import SynaError

__all__ = ["Docs", "PREFIX", "REG_MODEL", "doc_id"]

PREFIX = "mlflow/"
# A registered model's MLflow fields (description, tags, aliases, times in
# ms, and "store": the ModelRegistry model that holds its versions), shared
# by the shim's client and the plugin's registry store.
REG_MODEL = "reg_model"


def doc_id(name: str) -> str:
    """``name`` (a model name, which may hold ``/``) as one document id."""
    return name.replace("%", "%25").replace("/", "%2F")


class Docs:
    """JSON documents by kind and id in one synadb file."""

    def __init__(self, db: SynaDB) -> None:
        self.db = db

    @staticmethod
    def key(kind: str, doc_id: str | int) -> str:
        return f"{PREFIX}{kind}/{doc_id}"

    def get(self, kind: str, doc_id: str | int) -> dict[str, Any] | None:
        text = self.db.get_text(self.key(kind, doc_id))
        return None if text is None else _load(self.key(kind, doc_id), text)

    def put(self, kind: str, doc_id: str | int, doc: Any) -> None:
        self.db.put_text(self.key(kind, doc_id), json.dumps(doc, separators=(",", ":")))

    def delete(self, kind: str, doc_id: str | int) -> bool:
        return self.db.delete(self.key(kind, doc_id))

    def ids(self, kind: str) -> list[str]:
        """Ids of ``kind``'s live documents, in first-written order."""
        cut = len(PREFIX) + len(kind) + 1
        return [k[cut:] for k in self.db.keys(f"{PREFIX}{_glob_escape(kind)}/*")
                if "/" not in k[cut:]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every live document of ``kind``, in first-written order."""
        keys = [self.key(kind, i) for i in self.ids(kind)]
        return [_load(k, t) for k, t in zip(keys, self.db.get_many(keys)) if t is not None]

    def many(self, kind: str, doc_ids: list[str]) -> list[dict[str, Any] | None]:
        keys = [self.key(kind, i) for i in doc_ids]
        return [None if t is None else _load(k, t) for k, t in zip(keys, self.db.get_many(keys))]

    @contextmanager
    def atomic(self) -> Iterator["Docs"]:
        """A read-modify-write section: no other writer (thread or process)
        runs inside it, and its puts land together or not at all."""
        with self.db.batch(sync=False):
            yield self

    def last_id(self, counter: str) -> int | None:
        """The counter's last value (None before its first ``next_id``)."""
        return self.db.get_int(f"{PREFIX}counter/{counter}")

    def next_id(self, counter: str, start: int = 1) -> int:
        """The next integer of a counter (call inside :meth:`atomic`)."""
        key = f"{PREFIX}counter/{counter}"
        n = self.db.get_int(key)
        n = start if n is None else n + 1
        self.db.put_int(key, n)
        return n


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _load(key: str, text: Any) -> dict[str, Any]:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as e:
        raise SynaError(f"{key!r} does not hold a JSON document: {e}") from None
