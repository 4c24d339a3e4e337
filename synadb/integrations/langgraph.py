"""LangGraph adapters: a checkpointer and a long-term memory store.

Install with ``pip install 'synadb[langgraph]'``.  Only this module imports
``langgraph``; ``import synadb`` does not.

Checkpointer (a ``BaseCheckpointSaver``: threads, interrupts, time travel)::

    from langgraph.graph import StateGraph
    from synadb.integrations.langgraph import SynaCheckpointSaver

    saver = SynaCheckpointSaver("agent.db")
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, {"configurable": {"thread_id": "user-42"}})
    list(graph.get_state_history({"configurable": {"thread_id": "user-42"}}))

Store (a ``BaseStore``: namespaced JSON items, filters, optional semantic
search when an ``index`` config with embeddings is given)::

    store = SynaStore("agent.db")
    store.put(("users", "42"), "prefs", {"theme": "dark"})
    store.search(("users",), filter={"theme": "dark"})
    graph = builder.compile(checkpointer=saver, store=store)

Both keep their records under their own key prefixes, so one file can hold
a graph's checkpoints, its memory and (say) a LangChain vector store and
byte store.  Another process that opens the file sees every record as soon
as it is written, so a thread interrupted in one process resumes in another.
The ``a*`` methods run their sync twins in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import struct
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from typing_extensions import Self  # typing.Self is 3.11+; we support 3.10

import numpy as np

from .. import errors
from ..db import SynaDB

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        SerializerProtocol,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        IndexConfig,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        ensure_embeddings,
        get_text_at_path,
        tokenize_path,
        validate_op_namespace,
    )
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency(
        "langgraph", "langgraph", "synadb.integrations.langgraph") from e

__all__ = ["SynaCheckpointSaver", "SynaStore"]

#: Key prefixes.  A checkpoint is one record; the channel values it holds
#: are stored once per (channel, version) and shared by later checkpoints
#: that did not change them; each pending write is its own record.
CHECKPOINT_PREFIX = "__lg_ckpt__/"  # <thread>/<ns>/<checkpoint_id>
BLOB_PREFIX = "__lg_blob__/"        # <thread>/<ns>/<channel>/<version>
WRITE_PREFIX = "__lg_write__/"      # <thread>/<ns>/<checkpoint_id>/<task_id>/<idx>
STORE_PREFIX = "__lg_store__/"      # <label>/.../<label>//<key>

_LEN = struct.Struct("<I")
_GLOB_SPECIAL = re.compile(r"([*?\[])")


# ---------------------------------------------------------------- key helpers
def _seg(text: object) -> str:
    """``text`` as one key segment: "/" (and "%", NUL) are %-escaped, so a
    segment never spills into the next and ``split("/")`` takes keys apart."""
    if not isinstance(text, str):
        raise errors.InvalidKeyType(f"ids are str, not {type(text).__name__}: {text!r:.80}")
    return text.replace("%", "%25").replace("/", "%2F").replace("\0", "%00")


def _unseg(seg: str) -> str:
    return seg.replace("%00", "\0").replace("%2F", "/").replace("%25", "%")


def _glob(text: str) -> str:
    # keys(pattern) takes a glob: a thread id holding * ? [ matches only itself.
    return _GLOB_SPECIAL.sub(r"[\1]", text)


def _frames(*parts: bytes) -> bytes:
    return b"".join(_LEN.pack(len(p)) + p for p in parts)


def _unframe(raw: bytes) -> list[bytes]:
    out, pos, end = [], 0, len(raw)
    while pos < end:
        (n,) = _LEN.unpack_from(raw, pos)
        pos += 4
        if pos + n > end:
            raise errors.CorruptDatabase(f"a LangGraph record is cut short at byte {pos}")
        out.append(raw[pos:pos + n])
        pos += n
    return out


class _Handle:
    """One SynaDB handle on ``path``, shared lifecycle of the two classes."""

    _db: SynaDB
    path: str

    def _open(self, path: str | os.PathLike[str]) -> None:
        self._db = SynaDB(path)
        self.path = self._db.path

    def close(self) -> None:
        """Close this handle on the file (other handles stay open)."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------- checkpointer
class SynaCheckpointSaver(_Handle, BaseCheckpointSaver[str]):
    """A LangGraph checkpointer that keeps every checkpoint in a synadb file.

    It behaves as LangGraph's ``InMemorySaver`` and ``SqliteSaver`` do (same
    list order, filters, ``before``/``limit``, idempotent ``put_writes``),
    and passes LangGraph's checkpointer conformance suite, extended
    capabilities included (``delete_for_runs``, ``copy_thread``, ``prune``).
    Values go through the saver's ``serde`` (``JsonPlusSerializer``, which
    never unpickles unless you configure it to).

    Each ``put`` and each ``put_writes`` is all or nothing: a process killed
    in the middle leaves the previous checkpoint as the latest one.

    Records live under ``__lg_ckpt__/`` (checkpoints), ``__lg_blob__/``
    (channel values, once per version) and ``__lg_write__/`` (pending
    writes); a thread id, namespace and ids together must fit in one key
    (1 KiB), or ``InvalidKey`` is raised.

    Args:
        path: the database file (created if missing); may be shared with
            other synadb stores.
        serde: LangGraph serializer (default ``JsonPlusSerializer``).

    Example:
        >>> import os, tempfile
        >>> from langgraph.graph import StateGraph, START, END
        >>> from typing_extensions import TypedDict
        >>> class S(TypedDict):
        ...     n: int
        >>> b = StateGraph(S)
        >>> _ = b.add_node("inc", lambda s: {"n": s["n"] + 1}).add_edge(START, "inc")
        >>> _ = b.add_edge("inc", END)
        >>> path = os.path.join(tempfile.mkdtemp(), "agent.db")
        >>> with SynaCheckpointSaver(path) as saver:
        ...     g = b.compile(checkpointer=saver)
        ...     cfg = {"configurable": {"thread_id": "t1"}}
        ...     g.invoke({"n": 1}, cfg)["n"], g.get_state(cfg).values
        (2, {'n': 2})
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self._open(path)

    def __repr__(self) -> str:
        return f"SynaCheckpointSaver({self.path!r})"

    # ----------------------------------------------------------- key layout
    @staticmethod
    def _ckpt_key(thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{CHECKPOINT_PREFIX}{_seg(thread_id)}/{_seg(ns)}/{_seg(checkpoint_id)}"

    @staticmethod
    def _blob_key(thread_id: str, ns: str, channel: str, version: object) -> str:
        return f"{BLOB_PREFIX}{_seg(thread_id)}/{_seg(ns)}/{_seg(channel)}/{_seg(str(version))}"

    @staticmethod
    def _write_key(thread_id: str, ns: str, checkpoint_id: str, task_id: str,
                   idx: int) -> str:
        return (f"{WRITE_PREFIX}{_seg(thread_id)}/{_seg(ns)}/{_seg(checkpoint_id)}/"
                f"{_seg(task_id)}/{idx}")

    def _ckpt_names(self, thread_id: str | None = None,
                    ns: str | None = None) -> list[tuple[str, str, str, str]]:
        """(key, thread, ns, checkpoint id) of the stored checkpoints."""
        if thread_id is None:
            pattern = CHECKPOINT_PREFIX + "*"
        elif ns is None:
            pattern = _glob(f"{CHECKPOINT_PREFIX}{_seg(thread_id)}/") + "*"
        else:
            pattern = _glob(f"{CHECKPOINT_PREFIX}{_seg(thread_id)}/{_seg(ns)}/") + "*"
        out = []
        cut = len(CHECKPOINT_PREFIX)
        for name in self._db.keys(pattern):
            parts = name[cut:].split("/")
            if len(parts) == 3:
                t, n, c = (_unseg(p) for p in parts)
                out.append((name, t, n, c))
        return out

    def _writes_of(self, thread_id: str | None, ns: str | None = None,
                   checkpoint_id: str | None = None) -> dict[tuple[str, str, str], list[str]]:
        """Write-record keys of every thread, one thread, one namespace or
        one checkpoint, by (thread, ns, checkpoint id): one scan of the keys."""
        head = WRITE_PREFIX
        if thread_id is not None:
            head += _seg(thread_id) + "/"
            if ns is not None:
                head += _seg(ns) + "/"
                if checkpoint_id is not None:
                    head += _seg(checkpoint_id) + "/"
        cut = len(WRITE_PREFIX)
        out: dict[tuple[str, str, str], list[str]] = {}
        for name in self._db.keys(_glob(head) + "*"):
            parts = name[cut:].split("/")
            if len(parts) == 5:
                out.setdefault((_unseg(parts[0]), _unseg(parts[1]), _unseg(parts[2])),
                               []).append(name)
        return out

    # --------------------------------------------------------------- decode
    def _pending_writes(self, names: Sequence[str]) -> list[tuple[str, str, Any]]:
        if not names:
            return []
        rows = []
        for raw in self._db.get_many(list(names)):
            if not isinstance(raw, bytes):
                continue  # deleted since the keys were listed
            task_id, channel, typ, data, task_path, idx = _unframe(raw)
            rows.append((task_path.decode(), task_id.decode(), int(idx), channel.decode(),
                         (typ.decode(), data)))
        # LangGraph replays a super-step's writes in this order; a reducer
        # that is not order-invariant depends on it.
        rows.sort(key=lambda r: writes_sort_key(r[0], r[1], r[2]))
        return [(tid, ch, self.serde.loads_typed(v)) for _, tid, _, ch, v in rows]

    def _tuple(self, config: RunnableConfig, thread_id: str, ns: str, checkpoint_id: str,
               raw: bytes, write_names: Sequence[str],
               metadata: CheckpointMetadata | None = None) -> CheckpointTuple:
        ctyp, cdata, mtyp, mdata, parent = _unframe(raw)
        checkpoint: Checkpoint = self.serde.loads_typed((ctyp.decode(), cdata))
        if metadata is None:
            metadata = self.serde.loads_typed((mtyp.decode(), mdata))
        versions = checkpoint["channel_versions"]
        chans = list(versions)
        values: dict[str, Any] = {}
        if chans:
            blobs = self._db.get_many([self._blob_key(thread_id, ns, ch, versions[ch])
                                       for ch in chans])
            for ch, blob in zip(chans, blobs):
                if not isinstance(blob, bytes):
                    continue
                btyp, bdata = _unframe(blob)
                if btyp != b"empty":
                    values[ch] = self.serde.loads_typed((btyp.decode(), bdata))
        parent_id = parent.decode()
        return CheckpointTuple(
            config=config,
            checkpoint={**checkpoint, "channel_values": values},
            metadata=metadata,  # type: ignore[arg-type]
            parent_config=({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                             "checkpoint_id": parent_id}}
                           if parent_id else None),
            pending_writes=self._pending_writes(write_names),
        )

    # ------------------------------------------------------------ interface
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (its latest if no
        ``checkpoint_id``), with its values and pending writes; None if absent."""
        conf = config["configurable"]
        thread_id: str = conf["thread_id"]
        ns: str = conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            raw = self._db.get(self._ckpt_key(thread_id, ns, checkpoint_id))
            if not isinstance(raw, bytes):
                return None
        else:
            names = self._ckpt_names(thread_id, ns)
            if not names:
                return None
            key, _, _, checkpoint_id = max(names, key=lambda n: n[3])
            raw = self._db.get(key)
            if not isinstance(raw, bytes):  # deleted by another process just now
                return self.get_tuple(config)
            config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                       "checkpoint_id": checkpoint_id}}
        writes = self._writes_of(thread_id, ns, checkpoint_id).get(
            (thread_id, ns, checkpoint_id), [])
        return self._tuple(config, thread_id, ns, checkpoint_id, raw, writes)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None,
             limit: int | None = None) -> Iterator[CheckpointTuple]:
        """Checkpoints, newest first (by checkpoint id), of one thread (and
        namespace, if ``config`` names one) or of all threads.

        Args:
            config: ``{"configurable": {"thread_id", "checkpoint_ns"?,
                "checkpoint_id"?}}`` or None for every thread.
            filter: metadata keys that must equal these values.
            before: only checkpoints whose id is below this one's.
            limit: at most this many.
        """
        conf = config["configurable"] if config else {}
        thread_id = conf.get("thread_id") if config else None
        ns = conf.get("checkpoint_ns") if config else None
        only_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        names = self._ckpt_names(thread_id, ns)
        names.sort(key=lambda n: n[3], reverse=True)
        writes: dict[tuple[str, str, str], list[str]] | None = None
        for key, t, n, cid in names:
            if only_id and cid != only_id:
                continue
            if before_id and cid >= before_id:
                continue
            if limit is not None and limit <= 0:
                break
            raw = self._db.get(key)
            if not isinstance(raw, bytes):
                continue  # deleted since it was listed
            metadata = None
            if filter:
                _, _, mtyp, mdata, _ = _unframe(raw)
                metadata = self.serde.loads_typed((mtyp.decode(), mdata))
                if not all(v == metadata.get(k) for k, v in filter.items()):
                    continue
            if limit is not None:
                limit -= 1
            if writes is None:  # one scan for all the tuples listed
                writes = self._writes_of(thread_id, ns)
            yield self._tuple({"configurable": {"thread_id": t, "checkpoint_ns": n,
                                                "checkpoint_id": cid}},
                              t, n, cid, raw, writes.get((t, n, cid), []), metadata)

    def put(self, config: RunnableConfig, checkpoint: Checkpoint,
            metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed (all or
        nothing); its parent is ``config``'s ``checkpoint_id``."""
        conf = config["configurable"]
        thread_id = conf["thread_id"]
        ns = conf.get("checkpoint_ns", "")
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        items: list[tuple[str, Any]] = []
        for ch, ver in new_versions.items():
            typ, data = (self.serde.dumps_typed(values[ch]) if ch in values
                         else ("empty", b""))
            items.append((self._blob_key(thread_id, ns, ch, ver), _frames(typ.encode(), data)))
        ctyp, cdata = self.serde.dumps_typed(c)
        mtyp, mdata = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
        parent = conf.get("checkpoint_id") or ""
        # The checkpoint record goes last in one batch: a reader never finds
        # a checkpoint whose values are not there yet.
        items.append((self._ckpt_key(thread_id, ns, checkpoint["id"]),
                      _frames(ctyp.encode(), cdata, mtyp.encode(), mdata, parent.encode())))
        with self._db.batch(sync=False):
            self._db.storage.put_blobs(items, keep_history=False)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                 "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        """Store a task's writes against a checkpoint (all or nothing).

        A write that is already stored (same task and index) is kept as it
        is; the special channels (errors, interrupts...) are replaced.
        """
        conf = config["configurable"]
        thread_id = conf["thread_id"]
        ns = conf.get("checkpoint_ns", "")
        checkpoint_id = conf["checkpoint_id"]
        rows = []
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            typ, data = self.serde.dumps_typed(value)
            rows.append((self._write_key(thread_id, ns, checkpoint_id, task_id, idx), idx,
                         _frames(task_id.encode(), channel.encode(), typ.encode(), data,
                                 task_path.encode(), str(idx).encode())))
        if not rows:
            return
        # The check and the writes happen under the write lock: two
        # processes replaying the same task keep exactly one copy.
        with self._db.batch(sync=False):
            items = [(key, rec) for key, idx, rec in rows
                     if idx < 0 or not self._db.exists(key)]
            self._db.storage.put_blobs(items, keep_history=False)

    # -------------------------------------------------------------- removal
    def _delete(self, names: Iterable[str]) -> None:
        for name in names:
            self._db.delete(name)

    def _unused_blobs(self, thread_id: str, ns: str, keep: Iterable[str]) -> list[str]:
        """Blob keys of (thread, ns) that none of the checkpoints ``keep``
        (keys) refers to."""
        used = set()
        for raw in self._db.get_many(list(keep)):
            if isinstance(raw, bytes):
                ctyp, cdata, *_ = _unframe(raw)
                ck = self.serde.loads_typed((ctyp.decode(), cdata))
                used.update(self._blob_key(thread_id, ns, ch, v)
                            for ch, v in ck["channel_versions"].items())
        head = f"{BLOB_PREFIX}{_seg(thread_id)}/{_seg(ns)}/"
        return [b for b in self._db.keys(_glob(head) + "*") if b not in used]

    def _drop_checkpoints(self, doomed: set[str]) -> None:
        """Delete the checkpoints with these keys, their writes, and the
        channel values no remaining checkpoint of their namespace uses."""
        if not doomed:
            return
        with self._db.batch():
            by_ns: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for key, t, n, cid in self._ckpt_names():
                by_ns.setdefault((t, n), []).append((key, cid))
            for (t, n), entries in by_ns.items():
                gone = [(k, cid) for k, cid in entries if k in doomed]
                if not gone:
                    continue
                writes = self._writes_of(t, n)
                for k, cid in gone:
                    self._delete([k, *writes.get((t, n, cid), [])])
                keep = [k for k, _ in entries if k not in doomed]
                self._delete(self._unused_blobs(t, n, keep))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, value and write of a thread."""
        with self._db.batch():
            for prefix in (CHECKPOINT_PREFIX, BLOB_PREFIX, WRITE_PREFIX):
                self._delete(self._db.keys(_glob(f"{prefix}{_seg(thread_id)}/") + "*"))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) that these runs made."""
        runs = set(run_ids)
        if not runs:
            return
        doomed = set()
        for key, *_ in self._ckpt_names():
            raw = self._db.get(key)
            if isinstance(raw, bytes):
                _, _, mtyp, mdata, _ = _unframe(raw)
                if self.serde.loads_typed((mtyp.decode(), mdata)).get("run_id") in runs:
                    doomed.add(key)
        self._drop_checkpoints(doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of a thread to another."""
        src, dst = _seg(source_thread_id) + "/", _seg(target_thread_id) + "/"
        with self._db.batch():
            for prefix in (BLOB_PREFIX, WRITE_PREFIX, CHECKPOINT_PREFIX):
                names = self._db.keys(_glob(prefix + src) + "*")
                # Records never hold their thread id: a copy is the bytes.
                items = [(prefix + dst + n[len(prefix + src):], v)
                         for n, v in zip(names, self._db.get_many(names))
                         if isinstance(v, bytes)]
                self._db.storage.put_blobs(items, keep_history=False)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep only each namespace's newest checkpoint
        of these threads; ``"delete"``: delete the threads."""
        if strategy == "delete":
            with self._db.batch():
                for t in thread_ids:
                    self.delete_thread(t)
            return
        if strategy != "keep_latest":
            raise errors.InvalidArgument(
                f"strategy is 'keep_latest' or 'delete', not {strategy!r}")
        doomed = set()
        for t in thread_ids:
            by_ns: dict[str, list[tuple[str, str]]] = {}
            for key, _, n, cid in self._ckpt_names(t):
                by_ns.setdefault(n, []).append((cid, key))
            for entries in by_ns.values():
                entries.sort()
                doomed.update(key for _, key in entries[:-1])
        self._drop_checkpoints(doomed)

    def get_next_version(self, current: str | None, channel: None) -> str:
        # InMemorySaver's and SqliteSaver's scheme: a zero-padded counter
        # (string order is numeric order) and a random tie-breaker.
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # ----------------------------------------------------------------- async
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *,
                    filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None,
                    limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for tup in found:
            yield tup

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *,
                     strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


# ---------------------------------------------------------------------- store
def _compare(item_value: Any, filter_value: Any) -> bool:
    """InMemoryStore's (JSONB-like) filter semantics: nested dicts match
    key by key, lists element by element, ``$``-keys are operators."""
    if isinstance(filter_value, dict):
        if any(k.startswith("$") for k in filter_value):
            return all(_operator(item_value, k, v) for k, v in filter_value.items())
        if not isinstance(item_value, dict):
            return False
        return all(_compare(item_value.get(k), v) for k, v in filter_value.items())
    if isinstance(filter_value, (list, tuple)):
        return (isinstance(item_value, (list, tuple)) and len(item_value) == len(filter_value)
                and all(_compare(i, f) for i, f in zip(item_value, filter_value)))
    return bool(item_value == filter_value)


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        try:
            a, b = float(value), float(arg)
        except (TypeError, ValueError):
            return False  # a missing or non-numeric field matches no comparison
        return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]
    raise errors.InvalidArgument(f"unsupported filter operator {op!r}")


def _matches(cond: MatchCondition, ns: tuple[str, ...]) -> bool:
    path = tuple(cond.path)
    if len(ns) < len(path):
        return False
    pairs = (zip(ns, path) if cond.match_type == "prefix"
             else zip(reversed(ns), reversed(path)) if cond.match_type == "suffix" else None)
    if pairs is None:
        raise errors.InvalidArgument(f"match_type is 'prefix' or 'suffix', "
                                     f"not {cond.match_type!r}")
    return all(p == "*" or k == p for k, p in pairs)


class SynaStore(_Handle, BaseStore):
    """LangGraph's long-term memory store (``BaseStore``) in a synadb file.

    Items are JSON dicts under hierarchical namespaces, as in
    ``InMemoryStore``: ``get``, ``put`` (``None`` deletes), ``search`` with a
    namespace prefix, a filter (exact values, nested dicts, ``$eq $ne $gt
    $gte $lt $lte``), ``limit``/``offset``, and ``list_namespaces`` with
    prefix/suffix conditions (``"*"`` wildcards) and ``max_depth``.  With
    ``index={"dims": ..., "embed": ..., "fields": [...]}`` a ``query``
    ranks items by cosine similarity of their embedded fields (exact, over
    the items under the prefix that pass the filter).  TTLs are not
    supported.

    Each item is one latest-only record under
    ``__lg_store__/<label>/.../<label>//<key>``; the ops of one ``batch``
    that write are applied all or nothing.

    Args:
        path: the database file (created if missing).
        index: LangGraph ``IndexConfig`` for semantic search, or None.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "mem.db")
        >>> with SynaStore(path) as store:
        ...     store.put(("users", "42"), "prefs", {"theme": "dark", "size": 3})
        ...     store.get(("users", "42"), "prefs").value
        ...     [i.key for i in store.search(("users",), filter={"size": {"$gte": 2}})]
        ...     store.list_namespaces(prefix=("users",))
        {'theme': 'dark', 'size': 3}
        ['prefs']
        [('users', '42')]
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 index: IndexConfig | None = None) -> None:
        self.index_config: dict[str, Any] | None = None
        self.embeddings = None
        if index:
            cfg: dict[str, Any] = dict(index)
            self.embeddings = ensure_embeddings(cfg.get("embed"))
            cfg["__tokenized_fields"] = [(p, tokenize_path(p)) if p != "$" else (p, p)
                                         for p in (cfg.get("fields") or ["$"])]
            self.index_config = cfg
        self._open(path)

    def __repr__(self) -> str:
        return f"SynaStore({self.path!r})"

    @staticmethod
    def _name(namespace: tuple[str, ...], key: str) -> str:
        # Labels are never empty (LangGraph refuses them), so "//" can only
        # be the border between the namespace and the key.
        return STORE_PREFIX + "/".join(_seg(x) for x in namespace) + "//" + _seg(key)

    @staticmethod
    def _parse(name: str) -> tuple[tuple[str, ...], str] | None:
        body = name[len(STORE_PREFIX):]
        ns, sep, key = body.partition("//")
        if not sep:
            return None
        return tuple(_unseg(x) for x in ns.split("/")), _unseg(key)

    def _names(self, prefix: tuple[str, ...] = ()) -> list[str]:
        head = STORE_PREFIX + "".join(_seg(x) + "/" for x in prefix)
        return self._db.keys(_glob(head) + "*")

    @staticmethod
    def _item(raw: Any, cls: type = Item, **extra: Any) -> Any:
        if not isinstance(raw, bytes):
            return None
        rec = json.loads(raw)
        return cls(namespace=tuple(rec["ns"]), key=rec["key"], value=rec["value"],
                   created_at=datetime.fromisoformat(rec["created_at"]),
                   updated_at=datetime.fromisoformat(rec["updated_at"]), **extra)

    # ------------------------------------------------------------------ ops
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the ops in order of kind: reads see the store as it was
        before this batch's puts, as in InMemoryStore."""
        ops = list(ops)
        puts, texts = self._plan(ops)
        vectors = (self.embeddings.embed_documents([t for t, _ in texts])
                   if texts and self.embeddings else [])
        queries = {op.query for op in ops if isinstance(op, SearchOp) and op.query}
        qvec = ({q: self.embeddings.embed_query(q) for q in queries}
                if queries and self.embeddings else {})
        return self._run(ops, puts, texts, vectors, qvec)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        puts, texts = self._plan(ops)
        vectors = (await self.embeddings.aembed_documents([t for t, _ in texts])
                   if texts and self.embeddings else [])
        queries = sorted({op.query for op in ops if isinstance(op, SearchOp) and op.query})
        qvec: dict[str, list[float]] = {}
        if queries and self.embeddings:
            got = await asyncio.gather(*(self.embeddings.aembed_query(q) for q in queries))
            qvec = dict(zip(queries, got))
        return await asyncio.to_thread(self._run, ops, puts, texts, vectors, qvec)

    def _plan(self, ops: list[Op]) -> tuple[dict[tuple[tuple[str, ...], str], PutOp],
                                            list[tuple[str, tuple[tuple[str, ...], str, str]]]]:
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if not isinstance(op, (GetOp, PutOp, SearchOp, ListNamespacesOp)):
                raise errors.InvalidArgument(f"unknown store operation {type(op).__name__}")
            validate_op_namespace(op)
            if isinstance(op, PutOp):
                puts[(op.namespace, op.key)] = op  # the last put of a key wins
        texts: list[tuple[str, tuple[tuple[str, ...], str, str]]] = []
        if self.index_config and self.embeddings:
            for op in puts.values():
                if op.value is None or op.index is False:
                    continue
                paths = (self.index_config["__tokenized_fields"] if op.index is None
                         else [(p, tokenize_path(p)) for p in op.index])
                for path, field in paths:
                    found = get_text_at_path(op.value, field)
                    for i, text in enumerate(found):
                        where = f"{path}.{i}" if len(found) > 1 else path
                        texts.append((text, (op.namespace, op.key, where)))
        return puts, texts

    def _run(self, ops: list[Op], puts: dict[tuple[tuple[str, ...], str], PutOp],
             texts: list[tuple[str, tuple[tuple[str, ...], str, str]]],
             vectors: list[list[float]], qvec: dict[str, list[float]]) -> list[Result]:
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(self._item(self._db.get(self._name(op.namespace, op.key))))
            elif isinstance(op, SearchOp):
                results.append(self._search(op, qvec.get(op.query) if op.query else None))
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                results.append(None)
        if puts:
            self._apply(puts, texts, vectors)
        return results

    def _apply(self, puts: dict[tuple[tuple[str, ...], str], PutOp],
               texts: list[tuple[str, tuple[tuple[str, ...], str, str]]],
               vectors: list[list[float]]) -> None:
        if len(vectors) != len(texts):
            raise errors.InvalidArgument(f"the embedder returned {len(vectors)} vectors "
                                         f"for {len(texts)} texts")
        emb: dict[tuple[tuple[str, ...], str], dict[str, list[float]]] = {}
        for (_, (ns, key, where)), vec in zip(texts, vectors):
            emb.setdefault((ns, key), {})[where] = [float(x) for x in vec]
        now = datetime.now(timezone.utc).isoformat()
        # Reading created_at and writing happen under the write lock, so
        # two processes updating one item keep its first creation time.
        with self._db.batch(sync=False):
            items: list[tuple[str, Any]] = []
            for (ns, key), op in puts.items():
                name = self._name(ns, key)
                if op.value is None:
                    self._db.delete(name)
                    continue
                old = self._db.get(name)
                created = json.loads(old)["created_at"] if isinstance(old, bytes) else now
                rec = {"ns": list(ns), "key": key, "value": dict(op.value),
                       "created_at": created, "updated_at": now}
                if (ns, key) in emb:
                    rec["vectors"] = emb[(ns, key)]
                try:
                    items.append((name, json.dumps(rec, ensure_ascii=False).encode()))
                except (TypeError, ValueError) as e:
                    raise errors.InvalidType(
                        f"{ns}/{key}: store values must be JSON-serializable ({e})") from e
            self._db.storage.put_blobs(items, keep_history=False)

    def _search(self, op: SearchOp, query: list[float] | None) -> list[SearchItem]:
        names = self._names(tuple(op.namespace_prefix))
        recs = []
        for raw in self._db.get_many(names):
            if not isinstance(raw, bytes):
                continue
            rec = json.loads(raw)
            if op.filter and not all(_compare(rec["value"].get(k), v)
                                     for k, v in op.filter.items()):
                continue
            recs.append((rec, raw))
        if query is None:
            return [self._item(raw, SearchItem)
                    for _, raw in recs[op.offset:op.offset + op.limit]]
        q = np.asarray(query, dtype=np.float64)
        qn = float(np.linalg.norm(q)) or 1.0
        scored, scoreless = [], []
        for rec, raw in recs:
            vecs = list((rec.get("vectors") or {}).values())
            if not vecs:
                scoreless.append(raw)
                continue
            m = np.asarray(vecs, dtype=np.float64)
            norms = np.linalg.norm(m, axis=1)
            norms[norms == 0] = np.inf  # a zero vector is similar to nothing
            scored.append((float(np.max(m @ q / (norms * qn))), raw))  # max over fields
        scored.sort(key=lambda s: s[0], reverse=True)
        kept = [(s, raw) for s, raw in scored[op.offset:op.offset + op.limit]]
        if len(kept) < op.limit:  # as InMemoryStore: unembedded items fill up
            kept += [(None, raw) for raw in scoreless[:op.limit - len(kept)]]
        return [self._item(raw, SearchItem, score=s) for s, raw in kept]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        found = set()
        for name in self._names():
            parsed = self._parse(name)
            if parsed is not None:
                found.add(parsed[0])
        spaces = [ns for ns in found
                  if all(_matches(c, ns) for c in (op.match_conditions or ()))]
        if op.max_depth is not None:
            spaces = list({ns[:op.max_depth] for ns in spaces})
        return sorted(spaces)[op.offset:op.offset + op.limit]
