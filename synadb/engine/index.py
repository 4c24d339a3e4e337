"""The in-memory index: key -> history of (record offset, value, type).

Per key id (``kid``) the index keeps the latest entry in three flat columns
(``l_off``, ``l_val``, ``l_typ``), and, once a key has two or more values,
a :class:`Hist` with its whole history.  Numeric values live in a contiguous
``array('d')``, so the latest value is one index operation and a whole
history becomes a NumPy array with one copy.  Other values are read from the
file by offset when asked for.

Why the flat columns: a new key then costs a few appends, not a Python
object with three containers (four times slower, and it wakes the cyclic GC).

The index is checkpointed into the file as columns (keys, counts, offsets,
values, types).  Loading one builds no Python object per key: a key's history
is materialized from the columns the first time it is needed.
"""

from __future__ import annotations

import struct
from array import array
from itertools import compress

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
        removed = self.typ[n:]
        del self.off[n:]
        del self.val[n:]
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
    """Key -> latest entry and history, with an optional checkpoint base.

    Key ids are positions in the ``kid`` dict, which keeps insertion order
    and never loses a key (a deleted key keeps its id), so the dict's key
    order is the first-written order and no separate name list is needed.
    """

    def __init__(self) -> None:
        self.kid: dict[str, int] = {}
        self.l_off = array("q")
        self.l_val = array("d")
        self.l_typ = bytearray()  # 0: no live value
        self.hists: dict[int, Hist] = {}  # keys with two or more values
        self.fpre: dict[int, tuple[bytes, int]] = {}  # cached float record prefix per key
        self.rpre: dict[tuple[str, int], tuple[bytes, int]] = {}  # ... of float rows, per (key, length)
        self.nlive = 0
        # Checkpoint base: keys below nbase whose in_base flag is set still
        # have their history only in these columns.
        self.nbase = 0
        self.in_base = bytearray()
        self._b_start: np.ndarray | None = None
        self._b_count: np.ndarray | None = None
        self._b_off: np.ndarray | None = None
        self._b_val: np.ndarray | None = None
        self._b_typ: np.ndarray | None = None
        # Batch undo journal: kid -> (hist length or -1, l_off, l_val, l_typ, Hist)
        self.journal: dict[int, tuple] | None = None

    # -- lookups ---------------------------------------------------------
    def latest(self, key: str) -> tuple[int, int, float] | None:
        """(type, offset, numeric value) of the latest value, or None."""
        kid = self.kid.get(key)
        if kid is None:
            return None
        h = self.hists.get(kid)
        if h is not None:
            return h.typ[-1], h.off[-1], h.val[-1]
        t = self.l_typ[kid]
        if not t:
            return None
        return t, self.l_off[kid], self.l_val[kid]

    def history(self, key: str) -> Hist | None:
        """The key's whole live history, or None if absent."""
        kid = self.kid.get(key)
        if kid is None or not self.l_typ[kid]:
            return None
        h = self.hists.get(kid)
        if h is not None:
            return h
        if kid < self.nbase and self.in_base[kid]:
            return self._materialize(kid)
        return self._single(kid)  # a view; not stored, so single-value keys stay cheap

    def tail(self, key: str, n: int) -> list[float] | None:
        """The last ``n`` numeric values of ``key`` (None if it has fewer),
        without materializing a checkpointed history."""
        kid = self.kid.get(key)
        if kid is None or not self.l_typ[kid]:
            return None
        h = self.hists.get(kid)
        if h is not None:
            return h.val[len(h.val) - n:].tolist() if len(h.val) >= n else None
        if kid < self.nbase and self.in_base[kid]:
            s = int(self._b_start[kid])
            c = int(self._b_count[kid])
            return self._b_val[s + c - n:s + c].tolist() if c >= n else None
        return [self.l_val[kid]] if n == 1 else None

    def _single(self, kid: int) -> Hist:
        h = Hist()
        t = self.l_typ[kid]
        h.off.append(self.l_off[kid])
        h.val.append(self.l_val[kid])
        h.typ.append(t)
        h.nonnum = 0 if t in _NUMERIC else 1
        return h

    def live_keys(self) -> list[str]:
        return list(compress(self.kid, self.l_typ))

    def _materialize(self, kid: int) -> Hist:
        h = Hist()
        s = int(self._b_start[kid])
        e = s + int(self._b_count[kid])
        h.off.frombytes(self._b_off[s:e].tobytes())
        h.val.frombytes(self._b_val[s:e].tobytes())
        h.typ = bytearray(self._b_typ[s:e].tobytes())
        h.nonnum = len(h.typ) - _count_numeric(h.typ)
        self.hists[kid] = h
        self.in_base[kid] = 0
        return h

    # -- mutations -------------------------------------------------------
    def new_key(self, key: str, typ: int, off: int, val: float) -> None:
        kid = len(self.kid)
        self.kid[key] = kid
        self.l_off.append(off)
        self.l_val.append(val)
        self.l_typ.append(typ)
        self.nlive += 1
        if self.journal is not None:
            self.journal[kid] = (-1, 0, 0.0, 0, None)

    def append(self, key: str, typ: int, off: int, val: float) -> None:
        kid = self.kid.get(key)
        if kid is None:
            self.new_key(key, typ, off, val)
            return
        if self.journal is not None and kid not in self.journal:
            self._remember(kid)
        h = self.hists.get(kid)
        if h is None:
            if not self.l_typ[kid]:  # deleted: the key starts again
                self.l_off[kid] = off
                self.l_val[kid] = val
                self.l_typ[kid] = typ
                self.nlive += 1
                return
            h = self._promote(kid)
        h.off.append(off)
        h.val.append(val)
        h.typ.append(typ)
        if typ != T_FLOAT and typ != T_INT:
            h.nonnum += 1

    def _promote(self, kid: int) -> Hist:
        """Give a live key a stored Hist (before its second value)."""
        if kid < self.nbase and self.in_base[kid]:
            return self._materialize(kid)
        h = self.hists[kid] = self._single(kid)
        return h

    def append_block(self, key: str, off: int, values: np.ndarray) -> None:
        n = len(values)
        if n == 0:
            return
        vals = np.ascontiguousarray(values, dtype="<f8")
        self.append(key, T_FLOAT, off, float(vals[0]))
        if n == 1:
            return
        kid = self.kid[key]
        h = self.hists.get(kid) or self._promote(kid)
        h.off.extend(array("q", [off]) * (n - 1))
        h.val.frombytes(vals[1:].tobytes())
        h.typ += bytes([T_FLOAT]) * (n - 1)

    def delete(self, key: str) -> bool:
        """Clear the key's history.  Returns whether it was live."""
        kid = self.kid.get(key)
        if kid is None or not self.l_typ[kid]:
            return False
        if self.journal is not None and kid not in self.journal:
            self._remember(kid)
        self.hists.pop(kid, None)
        if kid < self.nbase:
            self.in_base[kid] = 0
        self.l_typ[kid] = 0
        self.nlive -= 1
        return True

    # -- batches ---------------------------------------------------------
    def _remember(self, kid: int) -> None:
        h = self.hists.get(kid)
        if h is None and kid < self.nbase and self.in_base[kid]:
            h = self._materialize(kid)
        n = len(h.typ) if h is not None else -1
        self.journal[kid] = (n, self.l_off[kid], self.l_val[kid], self.l_typ[kid], h)

    def begin(self) -> None:
        self.journal = {}

    def commit(self) -> None:
        self.journal = None

    def rollback(self) -> None:
        journal, self.journal = self.journal or {}, None
        for kid, (n, off, val, typ, h) in journal.items():
            was_live = bool(self.l_typ[kid])
            if n >= 0:
                h.truncate(n)
                self.hists[kid] = h
            else:
                self.hists.pop(kid, None)
            self.l_off[kid] = off
            self.l_val[kid] = val
            self.l_typ[kid] = typ
            self.nlive += bool(typ) - was_live

    # -- checkpoints -----------------------------------------------------
    def snapshot(self, covered_end: int) -> bytes:
        """Serialize the live index as columns, keys in first-written order."""
        n = len(self.kid)
        typ_l = np.frombuffer(bytes(self.l_typ), dtype=np.uint8)
        live = typ_l != 0
        counts = live.astype(np.int64)
        in_base = np.zeros(n, dtype=bool)
        if self.nbase:
            in_base[:self.nbase] = np.frombuffer(bytes(self.in_base), dtype=bool)
        base = np.flatnonzero(live & in_base)
        if len(base):
            counts[base] = self._b_count[base]
        hists = self.hists
        hist_kids = [k for k, h in hists.items() if typ_l[k]]
        for k in hist_kids:
            counts[k] = len(hists[k].typ)
        total = int(counts.sum())
        starts = np.cumsum(counts) - counts
        off = np.empty(total, dtype="<i8")
        val = np.empty(total, dtype="<f8")
        typ = np.empty(total, dtype=np.uint8)
        single = live & ~in_base
        if hist_kids:
            single[hist_kids] = False
        single = np.flatnonzero(single)
        if len(single):
            dest = starts[single]
            off[dest] = np.frombuffer(self.l_off, dtype=np.int64)[single]
            val[dest] = np.frombuffer(self.l_val, dtype=np.float64)[single]
            typ[dest] = typ_l[single]
        if len(base):
            cnt = counts[base]
            seg = np.repeat(np.cumsum(cnt) - cnt, cnt)
            within = np.arange(int(cnt.sum())) - seg
            src = np.repeat(self._b_start[base], cnt) + within
            dest = np.repeat(starts[base], cnt) + within
            off[dest] = self._b_off[src]
            val[dest] = self._b_val[src]
            typ[dest] = self._b_typ[src]
        for k in hist_kids:
            h = hists[k]
            s = int(starts[k])
            e = s + len(h.typ)
            off[s:e] = np.frombuffer(h.off, dtype=np.int64)
            val[s:e] = np.frombuffer(h.val, dtype=np.float64)
            typ[s:e] = np.frombuffer(bytes(h.typ), dtype=np.uint8)
        keys = list(compress(self.kid, live.tolist()))
        blob = "\0".join(keys).encode("utf-8")
        return b"".join([
            _CKPT_HEAD.pack(_CKPT_VERSION, len(keys), total, covered_end, len(blob)),
            blob,
            counts[live].astype("<i8").tobytes(),
            off.tobytes(), val.tobytes(), typ.tobytes(),
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
        names = blob.decode("utf-8").split("\0") if nkeys else []
        if len(names) != nkeys:
            raise ValueError("checkpoint key table is inconsistent")
        counts = np.frombuffer(buf, dtype="<i8", count=nkeys, offset=pos).astype(np.int64)
        pos += 8 * nkeys
        if int(counts.sum()) != nentries or (nkeys and counts.min() < 1):
            raise ValueError("checkpoint counts are inconsistent")
        idx = cls()
        idx._b_off = np.frombuffer(buf, dtype="<i8", count=nentries, offset=pos).copy()
        pos += 8 * nentries
        idx._b_val = np.frombuffer(buf, dtype="<f8", count=nentries, offset=pos).copy()
        pos += 8 * nentries
        idx._b_typ = np.frombuffer(buf, dtype=np.uint8, count=nentries, offset=pos).copy()
        idx._b_count = counts
        ends = np.cumsum(counts)
        idx._b_start = ends - counts
        last = ends - 1
        idx.kid = dict(zip(names, range(nkeys)))
        if len(idx.kid) != nkeys:
            raise ValueError("checkpoint has duplicate keys")
        idx.l_off = array("q", idx._b_off[last].tobytes())
        idx.l_val = array("d", idx._b_val[last].tobytes())
        idx.l_typ = bytearray(idx._b_typ[last].tobytes())
        idx.nbase = nkeys
        idx.in_base = bytearray((counts > 1).astype(np.uint8).tobytes())
        idx.nlive = nkeys
        return idx, covered_end
