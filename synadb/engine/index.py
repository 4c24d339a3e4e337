"""The in-memory index: key -> history of (record offset, value, type).

Numeric values live in a contiguous ``array('d')`` per key, so the latest
value is one index operation and a whole history becomes a NumPy array with
one copy.  Other values are read from the file by offset when asked for.

The index is checkpointed into the file as columns (keys, counts, offsets,
values, types).  Loading a checkpoint does not build a Python object per key:
a key's history is materialized from the columns the first time it is used,
so opening a file of a million keys costs a dict build, not a million
objects.
"""

from __future__ import annotations

import struct
from array import array

import numpy as np

from .format import T_FLOAT, T_INT

_CKPT_HEAD = struct.Struct("<IIQQQ")  # version, nkeys, nentries, covered_end, blob_len
_CKPT_VERSION = 1
_NUMERIC = bytes([T_FLOAT, T_INT])


class Hist:
    """One key's live history (since its last delete), oldest first."""

    __slots__ = ("off", "val", "typ", "nonnum")

    def __init__(self) -> None:
        self.off = array("q")  # record offset of each value
        self.val = array("d")  # the value if numeric, else NaN
        self.typ = bytearray()  # record type of each value
        self.nonnum = 0  # how many values are not float/int

    def truncate(self, n: int) -> None:
        del self.off[n:]
        del self.val[n:]
        removed = self.typ[n:]
        del self.typ[n:]
        self.nonnum -= len(removed) - _count_numeric(removed)

    def copy(self) -> "Hist":
        h = Hist()
        h.off = array("q", self.off)
        h.val = array("d", self.val)
        h.typ = bytearray(self.typ)
        h.nonnum = self.nonnum
        return h


def _count_numeric(typ: bytes | bytearray) -> int:
    return len(typ) - len(typ.translate(None, _NUMERIC))


class Index:
    """Key -> :class:`Hist`, with an optional checkpoint base behind it."""

    def __init__(self) -> None:
        self.kid: dict[str, int] = {}
        self.names: list[str] = []
        self.hists: list[Hist | None] = []  # None: still only in the base
        self.nlive = 0
        # Checkpoint base: per-key start/count into flat columns.
        self._b_start: np.ndarray | None = None
        self._b_count: np.ndarray | None = None
        self._b_off: np.ndarray | None = None
        self._b_val: np.ndarray | None = None
        self._b_typ: np.ndarray | None = None
        # Batch undo journal: kid -> (length before the batch, saved Hist or None).
        self.journal: dict[int, tuple[int, Hist | None]] | None = None

    # -- lookups ---------------------------------------------------------
    def get(self, key: str) -> Hist | None:
        """The key's history, or None if the key is absent or deleted."""
        kid = self.kid.get(key)
        if kid is None:
            return None
        h = self.hists[kid]
        if h is None:
            h = self._materialize(kid)
        return h if h.typ else None

    def live_keys(self) -> list[str]:
        names = self.names
        out = []
        b_count = self._b_count
        nbase = 0 if b_count is None else len(b_count)
        for kid, h in enumerate(self.hists):
            if h is None:
                if kid < nbase and b_count[kid]:
                    out.append(names[kid])
            elif h.typ:
                out.append(names[kid])
        return out

    def _materialize(self, kid: int) -> Hist:
        h = Hist()
        s = int(self._b_start[kid])
        e = s + int(self._b_count[kid])
        h.off.frombytes(self._b_off[s:e].tobytes())
        h.val.frombytes(self._b_val[s:e].tobytes())
        h.typ = bytearray(self._b_typ[s:e].tobytes())
        h.nonnum = len(h.typ) - _count_numeric(h.typ)
        self.hists[kid] = h
        return h

    def _hist_for_write(self, key: str) -> tuple[int, Hist]:
        kid = self.kid.get(key)
        if kid is None:
            kid = len(self.names)
            self.kid[key] = kid
            self.names.append(key)
            h = Hist()
            self.hists.append(h)
        else:
            h = self.hists[kid]
            if h is None:
                h = self._materialize(kid)
        if self.journal is not None and kid not in self.journal:
            self.journal[kid] = (len(h.typ), None)
        return kid, h

    # -- mutations -------------------------------------------------------
    def append(self, key: str, typ: int, off: int, val: float) -> None:
        kid, h = self._hist_for_write(key)
        if not h.typ:
            self.nlive += 1
        h.off.append(off)
        h.val.append(val)
        h.typ.append(typ)
        if typ != T_FLOAT and typ != T_INT:
            h.nonnum += 1

    def append_block(self, key: str, off: int, values: np.ndarray) -> None:
        n = len(values)
        if n == 0:
            return
        kid, h = self._hist_for_write(key)
        if not h.typ:
            self.nlive += 1
        h.off.extend(array("q", [off]) * n)
        h.val.frombytes(np.ascontiguousarray(values, dtype="<f8").tobytes())
        h.typ += bytes([T_FLOAT]) * n

    def delete(self, key: str) -> bool:
        """Clear the key's history.  Returns whether it was live."""
        kid = self.kid.get(key)
        if kid is None:
            return False
        h = self.hists[kid]
        if h is None:
            h = self._materialize(kid)
        if not h.typ:
            return False
        if self.journal is not None:
            old_len, saved = self.journal.get(kid, (len(h.typ), None))
            if saved is None:
                saved = h.copy()
                saved.truncate(old_len)
            self.journal[kid] = (old_len, saved)
        self.hists[kid] = Hist()
        self.nlive -= 1
        return True

    # -- batches ---------------------------------------------------------
    def begin(self) -> None:
        self.journal = {}

    def commit(self) -> None:
        self.journal = None

    def rollback(self) -> None:
        journal, self.journal = self.journal or {}, None
        for kid, (old_len, saved) in journal.items():
            h = self.hists[kid]
            was_live = bool(h is not None and h.typ)
            if saved is not None:
                h = self.hists[kid] = saved
            else:
                h.truncate(old_len)
            self.nlive += bool(h.typ) - was_live

    # -- checkpoints -----------------------------------------------------
    def snapshot(self, covered_end: int) -> bytes:
        """Serialize the live index as columns."""
        names = self.names
        parts_off: list[bytes] = []
        parts_val: list[bytes] = []
        parts_typ: list[bytes] = []
        keys: list[str] = []
        counts: list[int] = []
        b_count = self._b_count
        nbase = 0 if b_count is None else len(b_count)
        if nbase:
            # Keys never touched since load are copied column-wise in one go.
            untouched = np.fromiter((h is None for h in self.hists[:nbase]),
                                    dtype=bool, count=nbase)
            sel = np.flatnonzero(untouched & (b_count > 0))
            if len(sel):
                cnt = b_count[sel]
                starts = self._b_start[sel]
                total = int(cnt.sum())
                first = np.repeat(starts - np.concatenate(([0], np.cumsum(cnt)[:-1])), cnt)
                gather = first + np.arange(total)
                parts_off.append(self._b_off[gather].tobytes())
                parts_val.append(self._b_val[gather].tobytes())
                parts_typ.append(self._b_typ[gather].tobytes())
                keys.extend(names[i] for i in sel.tolist())
                counts.extend(cnt.tolist())
        for kid, h in enumerate(self.hists):
            if h is not None and h.typ:
                keys.append(names[kid])
                counts.append(len(h.typ))
                parts_off.append(h.off.tobytes())
                parts_val.append(h.val.tobytes())
                parts_typ.append(bytes(h.typ))
        blob = "\0".join(keys).encode("utf-8")
        nentries = sum(counts)
        return b"".join([
            _CKPT_HEAD.pack(_CKPT_VERSION, len(keys), nentries, covered_end, len(blob)),
            blob,
            np.asarray(counts, dtype="<i8").tobytes(),
            *parts_off, *parts_val, *parts_typ,
        ])

    @classmethod
    def from_snapshot(cls, buf: bytes | memoryview) -> tuple["Index", int]:
        """Load a snapshot; returns the index and the log offset it covers."""
        ver, nkeys, nentries, covered_end, blob_len = _CKPT_HEAD.unpack_from(buf, 0)
        if ver != _CKPT_VERSION:
            raise ValueError(f"unknown checkpoint version {ver}")
        pos = _CKPT_HEAD.size
        blob = bytes(buf[pos:pos + blob_len])
        pos += blob_len
        idx = cls()
        names = blob.decode("utf-8").split("\0") if nkeys else []
        if len(names) != nkeys:
            raise ValueError("checkpoint key table is inconsistent")
        counts = np.frombuffer(buf, dtype="<i8", count=nkeys, offset=pos).astype(np.int64)
        pos += 8 * nkeys
        if int(counts.sum()) != nentries:
            raise ValueError("checkpoint counts are inconsistent")
        idx._b_off = np.frombuffer(buf, dtype="<i8", count=nentries, offset=pos).copy()
        pos += 8 * nentries
        idx._b_val = np.frombuffer(buf, dtype="<f8", count=nentries, offset=pos).copy()
        pos += 8 * nentries
        idx._b_typ = np.frombuffer(buf, dtype=np.uint8, count=nentries, offset=pos).copy()
        idx._b_count = counts
        idx._b_start = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64) \
            if nkeys else np.zeros(0, dtype=np.int64)
        idx.names = names
        idx.kid = dict(zip(names, range(nkeys)))
        idx.hists = [None] * nkeys
        idx.nlive = int(np.count_nonzero(counts))
        return idx, covered_end
