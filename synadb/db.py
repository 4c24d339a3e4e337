"""SynaDB: a typed key/value store in one file, where every put appends.

Each key keeps its whole history; ``get`` returns the latest value in O(1)
whatever the history's length, and a numeric history comes out as a NumPy
array with one copy.

>>> import tempfile, os
>>> with SynaDB(os.path.join(tempfile.mkdtemp(), "doc.db")) as db:
...     db.put_float("temperature", 23.5); db.put_float("temperature", 24.1)
...     db.get_float("temperature"), db.get_history_tensor("temperature").tolist()
(24.1, [23.5, 24.1])
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import errors
from .engine import format as fmt
from .engine.format import (
    F_BATCH,
    F_LATEST,
    F_LZ4,
    MAX_KEY_BYTES,
    T_ABORT,
    T_BYTES,
    T_COMMIT,
    T_DELETE,
    T_FLOAT,
    T_FLOATS,
    T_INT,
    T_NULL,
    T_TEXT,
    T_VECTOR,
    TYPE_MASK,
)
from .engine.compact import VerifyReport, compact, verify_file
from .engine.log import T_DAMAGED, Log, check_timeout, encode_floats

__all__ = ["SynaDB", "DbConfig", "VerifyReport", "Storage"]

_pack_d = struct.Struct("<d").pack
_ROW_PACKERS: dict[int, Any] = {}
_pack_3d = struct.Struct("<3d").pack
_FLOAT_TYPES = bytes([T_FLOAT]) * 64
_pack_q = struct.Struct("<q").pack
_MAX_VECTOR_DIMS = 8192
_BLOCK_VALUES = 1 << 20  # float values per T_FLOATS record
_TYPE_WORDS = {T_NULL: "null", T_FLOAT: "float", T_INT: "int", T_TEXT: "text",
               T_BYTES: "bytes", T_VECTOR: "vector", T_DAMAGED: "damaged"}


def _check_read_key(key: object) -> None:
    if type(key) is not str:
        raise errors.InvalidKeyType(f"keys are str, not {type(key).__name__}: {key!r:.80}")


@dataclass
class DbConfig:
    """How a :class:`SynaDB` stores and syncs.

    Attributes:
        enable_compression: LZ4-compress values of at least
            ``compression_threshold_bytes`` (and float blocks) when it helps.
        enable_delta: XOR-delta encode float blocks before compressing
            (lossless; series of similar floats shrink a lot).
        sync_on_write: fsync after every write (power-loss safe, slow).
            Off: every write reaches the OS before the call returns, so a
            killed process loses nothing; fsync on close, sync(), batch end
            and checkpoints.
        read_only: open for reading only; never locks, never writes.
        lock_timeout_s: how long a writer waits for another writer's lock.
        allow_nonfinite: False rejects NaN/inf floats with NonFiniteValue.
        compression_threshold_bytes: smallest value worth compressing.
        checkpoint_min_bytes: on close, checkpoint the index if at least
            this many bytes of log came after the last checkpoint.
        progress: show tqdm bars on long operations (in a terminal).
    """

    enable_compression: bool = True
    enable_delta: bool = True
    sync_on_write: bool = False
    read_only: bool = False
    lock_timeout_s: float = 10.0
    allow_nonfinite: bool = True
    compression_threshold_bytes: int = 1024
    checkpoint_min_bytes: int = 256 << 10
    progress: bool = True

    def __post_init__(self) -> None:
        # Refused here, before anything is opened: a wrong type would
        # otherwise surface later as a raw TypeError mid-write, and a NaN
        # timeout as a wait that never ends.
        for name in ("enable_compression", "enable_delta", "sync_on_write", "read_only",
                     "allow_nonfinite", "progress"):
            if not isinstance(getattr(self, name), (bool, int)):
                raise errors.InvalidType(f"DbConfig.{name} must be a bool, not "
                                         f"{getattr(self, name)!r:.80}")
        for name in ("compression_threshold_bytes", "checkpoint_min_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise errors.InvalidType(f"DbConfig.{name} must be an int, not {v!r:.80}")
            if v < 0:
                raise errors.InvalidArgument(f"DbConfig.{name} must be >= 0, not {v}")
        self.lock_timeout_s = check_timeout(self.lock_timeout_s)


class SynaDB:
    """A typed key/value database with history, in one file.

    Args:
        path: the database file; created if missing (unless read-only).
        sync_on_write: fsync every write (overrides ``config``).
        read_only: open for reading only; sees other writers' new records.
        config: a :class:`DbConfig`.
        lock_timeout_s: overrides ``config.lock_timeout_s``.

    Raises:
        NotASynaFile: the file is not a synadb file (it is left untouched).
        FormatVersionError: the file is from a newer synadb.
        InvalidPath: the path is a directory.
        DatabaseNotFound: read-only open of a missing file.
    """

    def __init__(self, path: str | os.PathLike[str], sync_on_write: bool | None = None, *,
                 read_only: bool | None = None, config: DbConfig | None = None,
                 lock_timeout_s: float | None = None) -> None:
        if config is not None and not isinstance(config, DbConfig):
            raise errors.InvalidType(f"config must be a DbConfig, not {config!r:.80}")
        cfg = DbConfig(**vars(config)) if config is not None else DbConfig()
        if sync_on_write is not None:
            cfg.sync_on_write = bool(sync_on_write)
        if read_only is not None:
            cfg.read_only = bool(read_only)
        if lock_timeout_s is not None:
            cfg.lock_timeout_s = check_timeout(lock_timeout_s)
        if not isinstance(path, (str, os.PathLike)):
            raise errors.InvalidPath(f"path must be a str or os.PathLike, not {path!r}")
        self.config = cfg
        self._finite_only = not cfg.allow_nonfinite
        self._log: Log | None = None
        self._log = Log(path, read_only=cfg.read_only, sync_on_write=cfg.sync_on_write,
                        lock_timeout_s=cfg.lock_timeout_s)
        self.path = self._log.path
        self._flag = 0  # F_BATCH while inside batch()

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "SynaDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Checkpoint if worthwhile, fsync, release the lock, close the file."""
        log = self._log
        if log is None:
            return
        with log.mutex:
            try:
                log.close(checkpoint_min_bytes=self.config.checkpoint_min_bytes)
            finally:
                self._log = None

    @property
    def closed(self) -> bool:
        return self._log is None

    def info(self) -> dict[str, Any]:
        """Facts about the open file: size, bytes in use, keys, format.

        The file grows in pre-allocated steps, so ``size_bytes`` can exceed
        ``used_bytes`` (the end of the last record) until compaction.
        """
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log.refresh()
            h = log.header
            return {
                "path": self.path,
                "size_bytes": log.stat_size(),
                "used_bytes": log.end,
                "keys": log.index.nlive,
                "format_version": h.write_version,
                "read_version": h.read_version,
                "created_ms": h.created_ms,
                "checkpoint_offset": h.checkpoint_offset,
                "read_only": log.read_only,
                "sync_on_write": log.sync_on_write,
            }

    def __repr__(self) -> str:
        state = "closed" if self._log is None else f"{len(self)} keys"
        return f"SynaDB({self.path!r}, {state})"

    def _w(self) -> Log:
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        if log.read_only:
            raise errors.ReadOnlyError(f"{self.path!r} is open read-only")
        return log

    def _r(self) -> Log:
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        log.refresh()
        return log

    # ----------------------------------------------------------------- keys
    @staticmethod
    def _key(key: object) -> bytes:
        if not isinstance(key, str):
            raise errors.InvalidKeyType(f"keys are str, not {type(key).__name__}: {key!r:.80}")
        try:
            kb = key.encode("utf-8")
        except UnicodeEncodeError as e:
            raise errors.InvalidKey(f"key {key!r} is not valid UTF-8") from e
        if not kb:
            raise errors.InvalidKey("the key is empty")
        if len(kb) > MAX_KEY_BYTES:
            raise errors.InvalidKey(
                f"key {key[:40]!r}... is {len(kb)} bytes; the limit is {MAX_KEY_BYTES}")
        if b"\0" in kb:
            raise errors.InvalidKey(f"key {key!r} contains a NUL character")
        return kb

    # ----------------------------------------------------------------- puts
    def _put(self, typ: int, key: str, value: bytes, num: float) -> None:
        kb = self._key(key)
        log = self._w()
        with log.mutex:
            # Lock and catch up *before* encoding: taking the lock may find
            # that the file was compacted (new salt, new index).
            log.acquire()
            pos = log.append(typ | self._flag, kb, value)
            log.index.append(key, typ & TYPE_MASK, pos, num)
            if not self._flag:  # a batch's records count (and sync) at its commit
                log.settle()

    def put_float(self, key: str, value: float) -> None:
        """Append a float (f64) to ``key``'s history."""
        # The hot path of metric logging: kept flat on purpose (see
        # benchmarks/); every other put goes through _put.
        if type(value) is not float or self._finite_only:
            value = self._float(key, value)
        log = self._log
        if log is None or log.read_only or self._flag or type(key) is not str:
            return self._put(T_FLOAT, key, _pack_d(value), value)
        log.mutex.acquire()
        try:
            if not log.leased:
                log.acquire()  # before any lookup or encoding (see _put)
            idx = log.index
            kid = idx.kid.get(key)
            vb = _pack_d(value)
            if kid is None:
                try:
                    kb = key.encode("utf-8")
                except UnicodeEncodeError:
                    kb = b""
                if not 0 < len(kb) <= MAX_KEY_BYTES or "\0" in key:
                    kb = self._key(key)  # raises the right InvalidKey
                pos = log.append_float(kb, vb)
                idx.new_key(key, T_FLOAT, pos, value)
            else:
                pre = idx.fpre.get(kid)
                if pre is None:
                    pre = idx.fpre[kid] = fmt.prefix(T_FLOAT, key.encode("utf-8"), 8, log.salt)
                pos = log.append_cached(pre[0], pre[1], vb)
                h = idx.hists.get(kid)
                if h is not None and idx.journal is None:
                    h.off.append(pos)
                    h.val.append(value)
                    h.typ.append(T_FLOAT)
                else:
                    idx.append(key, T_FLOAT, pos, value)
            if log.sync_on_write:
                log.settle()
        finally:
            log.mutex.release()

    def put_float_row(self, key: str, values: tuple[float, ...]) -> None:
        """Append a short row of floats (say value, step, time) to ``key``.

        The row is one T_FLOATS record, so the history reads back as a flat
        float64 array that reshapes to ``(-1, len(values))``.  This is the
        hot path of metric logging: values must already be floats (NaN and
        infinity are stored as they are; the caller decides what it allows).
        """
        try:
            n = len(values)
        except TypeError:
            raise errors.InvalidType(f"{key!r}: a row is a tuple of floats, not "
                                     f"{type(values).__name__}") from None
        pack = _ROW_PACKERS.get(n)
        if pack is None:
            if not 1 <= n <= _BLOCK_VALUES:
                raise errors.InvalidArgument(f"{key!r}: a row holds 1..{_BLOCK_VALUES} values")
            pack = _ROW_PACKERS[n] = struct.Struct(f"<{n}d").pack
        try:
            vb = pack(*values)
        except struct.error:
            raise errors.InvalidType(f"{key!r}: a row holds floats, not {values!r}"[:200]) \
                from None
        log = self._log
        if log is None or log.read_only or self._flag or type(key) is not str:
            kb = self._key(key)
            log = self._w()
            with log.mutex:
                log.acquire()
                pos = log.append(T_FLOATS | self._flag, kb, vb)
                log.index.append_block(key, pos, np.frombuffer(vb, dtype="<f8"))
                if not self._flag:
                    log.settle()
            return
        self._append_row(log, key, vb, values)

    def put_float_triple(self, key: str, a: float, b: float, c: float) -> None:
        """``put_float_row(key, (a, b, c))``, packed without a length lookup:
        the metric hot path."""
        log = self._log
        if log is None or log.read_only or self._flag or type(key) is not str:
            return self.put_float_row(key, (a, b, c))
        try:
            vb = _pack_3d(a, b, c)
        except struct.error:
            return self.put_float_row(key, (a, b, c))  # raises the right error
        self._append_row(log, key, vb, (a, b, c))

    def _append_row(self, log: Log, key: str, vb: bytes, values: tuple[float, ...]) -> None:
        """Append the packed row ``vb`` of ``key`` outside a batch, with the
        record's constant prefix cached per (key, length) like put_float's."""
        n = len(values)
        log.mutex.acquire()
        try:
            if not log.leased:
                log.acquire()  # before any lookup or encoding (see _put)
            idx = log.index
            pre = idx.rpre.get((key, n))
            if pre is None:
                pre = idx.rpre[(key, n)] = fmt.prefix(T_FLOATS, self._key(key), n * 8,
                                                      log.salt)
            pos = log.append_cached(pre[0], pre[1], vb)
            kid = idx.kid.get(key)
            h = idx.hists.get(kid) if kid is not None else None
            if h is not None and idx.journal is None:
                h.off.extend((pos,) * n)
                h.val.extend(values)
                h.typ += _FLOAT_TYPES[:n] if n <= 64 else bytes([T_FLOAT]) * n
            else:
                idx.append_block(key, pos, np.frombuffer(vb, dtype="<f8"))
            if log.sync_on_write:
                log.settle()
        finally:
            log.mutex.release()

    def _float(self, key: object, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                              np.integer)):
            raise errors.InvalidArgument(f"{key!r}: {value!r} is not a float")
        try:
            v = float(value)
        except OverflowError:
            raise errors.InvalidArgument(
                f"{key!r}: {str(value)[:30]}... is too large for a float") from None
        if not self.config.allow_nonfinite and not math.isfinite(v):
            raise errors.NonFiniteValue(f"{key!r}: {v!r} is not finite")
        return v

    def put_int(self, key: str, value: int) -> None:
        """Append an int (i64) to ``key``'s history."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise errors.InvalidArgument(f"{key!r}: {value!r} is not an int")
        v = int(value)
        if not -(1 << 63) <= v < (1 << 63):
            raise errors.InvalidArgument(f"{key!r}: {v} does not fit in 64 bits")
        self._put(T_INT, key, _pack_q(v), float(v))

    def put_text(self, key: str, value: str) -> None:
        """Append a UTF-8 string to ``key``'s history."""
        if not isinstance(value, str):
            raise errors.InvalidArgument(f"{key!r}: put_text needs a str, not "
                                         f"{type(value).__name__}")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise errors.InvalidArgument(f"{key!r}: the text is not valid Unicode") from e
        self._put_blob(T_TEXT, key, raw)

    def put_bytes(self, key: str, value: bytes | bytearray | memoryview) -> None:
        """Append raw bytes to ``key``'s history."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise errors.InvalidArgument(f"{key!r}: put_bytes needs bytes, not "
                                         f"{type(value).__name__}")
        self._put_blob(T_BYTES, key, bytes(value))

    def put_null(self, key: str) -> None:
        """Append a null value to ``key``'s history."""
        self._put(T_NULL, key, b"", math.nan)

    def put_vector(self, key: str, vector: Any) -> None:
        """Append a float32 vector of 1..8192 dimensions."""
        arr = np.asarray(vector)
        if arr.ndim != 1 or not 1 <= arr.shape[0] <= _MAX_VECTOR_DIMS:
            raise errors.DimensionMismatch(
                f"{key!r}: a vector must be 1-D with 1..{_MAX_VECTOR_DIMS} values, "
                f"got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise errors.DimensionMismatch(f"{key!r}: vector dtype {arr.dtype} is not numeric")
        with np.errstate(over="ignore", invalid="ignore"):
            f32 = arr.astype("<f4", copy=False)
        if not np.isfinite(f32).all():
            if np.isfinite(arr).all():
                raise errors.InvalidArgument(f"{key!r}: a value is too large for float32")
            if not self.config.allow_nonfinite:
                raise errors.NonFiniteValue(f"{key!r}: the vector has NaN or infinity")
        arr = f32
        self._put_blob(T_VECTOR, key, arr.tobytes())

    def put(self, key: str, value: Any) -> None:
        """Append a value, choosing its type from the Python type."""
        if value is None:
            self.put_null(key)
        elif isinstance(value, bool):
            self.put_int(key, int(value))
        elif isinstance(value, (int, np.integer)):
            self.put_int(key, value)
        elif isinstance(value, (float, np.floating)):
            self.put_float(key, value)
        elif isinstance(value, str):
            self.put_text(key, value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.put_bytes(key, value)
        elif isinstance(value, np.ndarray):
            self.put_vector(key, value)
        else:
            raise errors.InvalidArgument(f"{key!r}: cannot store a {type(value).__name__}")

    def _put_blob(self, typ: int, key: str, raw: bytes) -> None:
        if len(raw) > fmt.MAX_VALUE_BYTES:
            raise errors.InvalidArgument(f"{key!r}: a value is limited to 4 GiB")
        flags = 0
        cfg = self.config
        if cfg.enable_compression and len(raw) >= cfg.compression_threshold_bytes:
            import lz4.block

            packed = lz4.block.compress(raw, store_size=True)
            if len(packed) < len(raw):
                raw, flags = packed, F_LZ4
        self._put(typ | flags, key, raw, math.nan)

    def put_floats_batch(self, key: str, values: Any, *,
                         allow_nonfinite: bool | None = None) -> int:
        """Append many floats to one key in one record.  Returns how many.

        ``allow_nonfinite`` overrides the handle's config for this call.
        """
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise errors.DimensionMismatch(f"{key!r}: put_floats_batch needs a 1-D array, "
                                           f"got shape {arr.shape}")
        if arr.dtype.kind not in "fiu":
            raise errors.InvalidArgument(f"{key!r}: dtype {arr.dtype} is not numeric")
        arr = np.ascontiguousarray(arr, dtype="<f8")
        allow = self.config.allow_nonfinite if allow_nonfinite is None else allow_nonfinite
        if not allow and not np.isfinite(arr).all():
            raise errors.NonFiniteValue(f"{key!r}: the values have NaN or infinity")
        kb = self._key(key)
        log = self._w()
        with log.mutex:
            log.acquire()
            if len(arr) > _BLOCK_VALUES and not self._flag:
                with self.batch():  # several records, still all or nothing
                    self._put_blocks(log, key, kb, arr)
            else:
                self._put_blocks(log, key, kb, arr)
                if not self._flag:
                    log.settle()
        return len(arr)

    def _put_blocks(self, log: Log, key: str, kb: bytes, arr: np.ndarray) -> None:
        cfg = self.config
        for start in range(0, len(arr), _BLOCK_VALUES):
            chunk = arr[start:start + _BLOCK_VALUES]
            flags, raw = encode_floats(chunk, cfg.enable_compression, cfg.enable_delta)
            pos = log.append(T_FLOATS | flags | self._flag, kb, raw)
            log.index.append_block(key, pos, chunk)

    # ----------------------------------------------------------------- gets
    def _value(self, log: Log, key: str, typ: int, off: int, num: float) -> Any:
        if typ == T_FLOAT:
            return num
        if typ == T_NULL:
            return None
        if typ == T_DAMAGED:
            raise errors.ChecksumError(
                f"{key!r}: the record at offset {off} of {self.path!r} is damaged "
                f"(CRC mismatch); db.verify() lists it", path=self.path, offset=off)
        tf, raw = log.read_value(off)
        if typ == T_INT:
            return struct.unpack("<q", raw)[0]
        if typ == T_TEXT:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise errors.CorruptDatabase(
                    f"{key!r}: the text at offset {off} of {self.path!r} passes its CRC but "
                    f"is not UTF-8 ({e.reason})") from None
        if typ == T_BYTES:
            return raw
        if typ == T_VECTOR:
            return np.frombuffer(raw, dtype="<f4").copy()
        raise errors.CorruptDatabase(f"{key!r}: unknown value type {typ} at offset {off}")

    def _latest(self, key: str) -> tuple[Log, Any, int, int, float]:
        _check_read_key(key)
        log = self._r()
        got = log.index.latest(key)
        if got is None:
            return log, None, 0, 0, 0.0
        return log, True, got[0], got[1], got[2]

    def get(self, key: str, default: Any = None) -> Any:
        """The latest value of ``key`` whatever its type, or ``default``."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log, h, typ, off, num = self._latest(key)
            if h is None:
                return default
            return self._value(log, key, typ, off, num)

    def types(self, keys: list[str]) -> list[str | None]:
        """The type name of each key's latest value ("float", "int", "text",
        "bytes", "vector", "null", or "damaged"), None where the key is
        absent.  Reads the index only, never a value."""
        if isinstance(keys, (str, bytes)) or not hasattr(keys, "__iter__"):
            raise errors.InvalidType(f"types takes a list of keys, not {keys!r:.80}")
        keys = list(keys)
        for key in keys:
            _check_read_key(key)
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            latest = self._r().index.latest
            return [None if (got := latest(k)) is None else _TYPE_WORDS.get(got[0], "unknown")
                    for k in keys]

    def get_many(self, keys: list[str], default: Any = None) -> list[Any]:
        """The latest value of each key (``default`` where absent), in one go."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        if isinstance(keys, (str, bytes)) or not hasattr(keys, "__iter__"):
            raise errors.InvalidType(f"get_many takes a list of keys, not {keys!r:.80}")
        keys = list(keys)
        for key in keys:
            _check_read_key(key)
        out = []
        with log.mutex:
            log = self._r()
            latest = log.index.latest
            value = self._value
            for key in keys:
                got = latest(key)
                out.append(default if got is None else value(log, key, got[0], got[1], got[2]))
        return out

    def _typed(self, key: str, want: tuple[int, ...], word: str) -> Any:
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log, h, typ, off, num = self._latest(key)
            if h is None:
                return None
            if typ not in want and typ != T_DAMAGED:
                raise errors.TypeMismatch(
                    f"{key!r} holds {_TYPE_WORDS.get(typ, typ)}, not {word}")
            return self._value(log, key, typ, off, num)

    def get_float(self, key: str) -> float | None:
        """Latest float of ``key`` (an int is widened), or None if absent.

        Raises:
            TypeMismatch: the latest value is not a number.
            ChecksumError: the latest record is damaged.
        """
        log = self._log
        if log is not None and type(key) is str:
            with log.mutex:
                log.refresh()
                got = log.index.latest(key)
                if got is None:
                    return None
                if got[0] == T_FLOAT:
                    return got[2]
        v = self._typed(key, (T_FLOAT, T_INT), "float")
        return None if v is None else float(v)

    def get_int(self, key: str) -> int | None:
        """Latest int of ``key``, or None if absent."""
        return self._typed(key, (T_INT,), "int")

    def get_text(self, key: str) -> str | None:
        """Latest text of ``key``, or None if absent."""
        return self._typed(key, (T_TEXT,), "text")

    def get_bytes(self, key: str) -> bytes | None:
        """Latest bytes of ``key``, or None if absent."""
        return self._typed(key, (T_BYTES,), "bytes")

    def get_vector(self, key: str) -> np.ndarray | None:
        """Latest vector (float32) of ``key``, or None if absent."""
        return self._typed(key, (T_VECTOR,), "vector")

    def get_history(self, key: str) -> list[Any]:
        """Every value of ``key`` since it was last deleted, oldest first."""
        _check_read_key(key)
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log = self._r()
            h = log.index.history(key)
            if h is None:
                return []
            if not h.nonnum and T_INT not in h.typ:
                return h.val.tolist()
            value = self._value
            return [value(log, key, t, o, v) for t, o, v in zip(h.typ, h.off, h.val)]

    def get_history_tensor(self, key: str) -> np.ndarray:
        """The numeric history of ``key`` as float64, oldest first (one copy).

        Raises:
            TypeMismatch: the history holds a non-numeric value.
            ChecksumError: a record in the history is damaged.
        """
        _check_read_key(key)
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log.refresh()
            h = log.index.history(key)
            if h is None:
                return np.empty(0, dtype=np.float64)
            if h.nonnum:
                if T_DAMAGED in h.typ:
                    i = h.typ.index(T_DAMAGED)
                    self._value(log, key, T_DAMAGED, h.off[i], 0.0)
                bad = next(t for t in h.typ if t not in (T_FLOAT, T_INT))
                raise errors.TypeMismatch(
                    f"{key!r} has {_TYPE_WORDS.get(bad, bad)} values; only a numeric "
                    "history becomes a tensor")
            return np.frombuffer(h.val, dtype=np.float64).copy()

    get_history_floats = get_history_tensor

    # -------------------------------------------------------- keys & delete
    def delete(self, key: str) -> bool:
        """Delete ``key`` and its history.  Returns whether it existed."""
        kb = self._key(key)
        log = self._w()
        with log.mutex:
            log.acquire()
            if log.index.latest(key) is None:
                return False
            log.append(T_DELETE | self._flag, kb, b"")
            log.index.delete(key)
            if not self._flag:
                log.settle()
            return True

    def exists(self, key: str) -> bool:
        _check_read_key(key)
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            return self._r().index.latest(key) is not None

    __contains__ = exists

    def keys(self, pattern: str | None = None) -> list[str]:
        """Live keys, in first-written order; ``pattern`` is a glob (``"sensor/*"``)."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        if pattern is not None and not isinstance(pattern, str):
            raise errors.InvalidType(f"keys(pattern) takes a glob str, not {pattern!r:.80}")
        with log.mutex:
            names = self._r().index.live_keys()
        if pattern is None:
            return names
        match = re.compile(fnmatch.translate(pattern), re.S).match
        return [k for k in names if match(k)]

    def __len__(self) -> int:
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            return self._r().index.nlive

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    # ----------------------------------------------------------- durability
    @contextmanager
    def batch(self, sync: bool = True) -> Iterator["SynaDB"]:
        """All or nothing: the puts and deletes inside count only together.

        Other handles see none of them until the block ends; if the block
        raises (or the process dies in it), none of them ever happened.
        The commit is fsynced unless ``sync=False`` (then it is as durable
        as a plain put: it survives a killed process, not a power cut).
        """
        log = self._w()
        with log.mutex:
            if self._flag:  # nested: part of the outer batch
                yield self
                return
            log.pin()
            log.index.begin()
            self._flag = F_BATCH
            start = log.end
            try:
                yield self
            except BaseException:
                self._flag = 0
                log.index.rollback()
                if log.end != start and log.leased:  # an empty batch leaves no trace
                    log.append(T_ABORT, b"", b"")
                raise
            else:
                self._flag = 0
                if log.end != start:
                    log.append(T_COMMIT, b"", b"")
                # The index takes the batch before the commit is synced: if
                # that fsync fails, the handle still agrees with the file
                # (which holds the commit) and refuses later writes.
                log.index.commit()
                if log.end != start:
                    if sync:
                        log.sync()
                    else:
                        log.settle()
            finally:
                self._flag = 0
                log.index.journal = None
                log.unpin()

    def sync(self) -> None:
        """fsync now: everything written so far survives power loss."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log.sync()

    def checkpoint(self) -> None:
        """Snapshot the index into the file so that the next open is fast."""
        log = self._w()
        with log.mutex:
            if self._flag:
                raise errors.InvalidArgument("checkpoint() inside a batch: it would "
                                             "snapshot values the batch may still abort")
            log.checkpoint()

    def verify(self) -> VerifyReport:
        """Scan every record of the file and report damage; changes nothing."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            return verify_file(self.path)

    def compact(self, keep_history: bool = True, progress: bool | None = None) -> int:
        """Rewrite the file without deleted keys (and, if asked, without
        superseded values), then swap it in atomically.  Returns bytes saved.

        With ``keep_history`` every live key keeps its whole history, except
        a key whose latest value was written latest-only (see
        :meth:`Storage.put_blob_parts`): it keeps that value only, so its
        ``get_history`` is ``[get(key)]`` afterwards.  ``get`` never changes.
        Readers open in other processes follow the swap.
        """
        log = self._w()
        show = self.config.progress if progress is None else progress
        with log.mutex:
            if self._flag:
                raise errors.InvalidArgument("compact() inside a batch: finish the batch first")
            return compact(log, keep_history=keep_history, progress=show)

    # ------------------------------------------------------ export / import
    def export_json(self, path: str | os.PathLike[str], key_pattern: str | None = None,
                    key_prefix: str | None = None) -> int:
        from . import io

        return io.export_json(self, path, key_pattern=key_pattern, key_prefix=key_prefix)

    def export_jsonl(self, path: str | os.PathLike[str], key_pattern: str | None = None,
                     key_prefix: str | None = None) -> int:
        from . import io

        return io.export_jsonl(self, path, key_pattern=key_pattern, key_prefix=key_prefix)

    def export_csv(self, path: str | os.PathLike[str], key_pattern: str | None = None,
                   key_prefix: str | None = None) -> int:
        from . import io

        return io.export_csv(self, path, key_pattern=key_pattern, key_prefix=key_prefix)

    def export_parquet(self, path: str | os.PathLike[str], key_pattern: str | None = None,
                       key_prefix: str | None = None) -> int:
        from . import io

        return io.export_parquet(self, path, key_pattern=key_pattern, key_prefix=key_prefix)

    def export_arrow(self, path: str | os.PathLike[str], key_pattern: str | None = None,
                     key_prefix: str | None = None) -> int:
        from . import io

        return io.export_arrow(self, path, key_pattern=key_pattern, key_prefix=key_prefix)

    def import_json(self, path: str | os.PathLike[str], key_prefix: str = "",
                    key_pattern: str | None = None) -> int:
        from . import io

        return io.import_json(self, path, key_prefix=key_prefix, key_pattern=key_pattern)

    def import_jsonl(self, path: str | os.PathLike[str], key_prefix: str = "",
                     key_pattern: str | None = None) -> int:
        from . import io

        return io.import_jsonl(self, path, key_prefix=key_prefix, key_pattern=key_pattern)

    def import_parquet(self, path: str | os.PathLike[str], key_prefix: str = "",
                       key_pattern: str | None = None) -> int:
        from . import io

        return io.import_parquet(self, path, key_prefix=key_prefix, key_pattern=key_pattern)

    def to_dataframe(self, key_pattern: str | None = None, key_prefix: str | None = None):
        from . import io

        return io.to_dataframe(self, key_pattern=key_pattern, key_prefix=key_prefix)

    def from_dataframe(self, df: Any, key_prefix: str = "") -> int:
        from . import io

        return io.from_dataframe(self, df, key_prefix=key_prefix)

    @property
    def storage(self) -> "Storage":
        """The engine interface that synadb's components build on (see
        :class:`Storage`); not needed for ordinary use."""
        st = self.__dict__.get("_storage")
        if st is None:
            st = self.__dict__["_storage"] = Storage(self)
        return st

    # ------------------------------------------------------------- internals
    # Behind Storage (below): the one way components reach them.
    def _log_end(self) -> int:
        """The log offset up to which every record is committed (or aborted)."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log.refresh()
            return log.committed_end()

    def _salt(self) -> int:
        return self._r().salt

    def _keys_written_since(self, offset: int) -> tuple[set[str], int]:
        """Keys written (put or deleted) after log offset ``offset``, and the end."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log.refresh()
            # Stop before a batch still open in another handle: its records
            # count only once its commit is here, and we will look again.
            end = log.committed_end()
            if offset >= end:
                return set(), max(offset, end) if end == log.end else offset
            return log.keys_written(offset, end), end

    def _value_view(self, key: str, refresh: bool = True,
                    check: bool = True) -> memoryview | None:
        """A zero-copy, CRC-checked view of ``key``'s latest (uncompressed) bytes.

        The view pins the current map of the file; it stays valid while it
        lives, even across the file growing.  ``check=False`` skips the body
        CRC for callers that verify a stronger hash of the bytes themselves
        (the record's head, and so its length, was checked when indexed).
        """
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            if refresh:
                log.refresh()
            got = log.index.latest(key)
            if got is None:
                return None
            typ, off, _ = got
            if typ == T_DAMAGED:
                self._value(log, key, typ, off, 0.0)  # raises ChecksumError
            if typ != T_BYTES:
                raise errors.TypeMismatch(f"{key!r} holds {_TYPE_WORDS.get(typ, typ)}, "
                                          "not bytes")
            return log.value_view(off, check)

    def _put_blob_parts(self, key: str, parts: list[Any], keep_history: bool = True) -> None:
        """Append one bytes value given as buffers, with a single copy
        (latest-only unless ``keep_history``; see Storage.put_blob_parts)."""
        kb = self._key(key)
        log = self._w()
        with log.mutex:
            log.acquire()
            tf = T_BYTES | (0 if keep_history else F_LATEST) | self._flag
            pos = log.append_parts(tf, kb, parts)
            log.index.append(key, T_BYTES, pos, math.nan)
            if not self._flag:
                log.settle()

    def _put_blobs(self, items: list[tuple[str, Any]], keys_checked: bool = False,
                   keep_history: bool = True) -> None:
        """Append many bytes values (all or nothing), each given as bytes or
        as a tuple of C-contiguous buffers that are written without being
        joined (latest-only unless ``keep_history``; see Storage.put_blobs)."""
        if not items:
            return
        log = self._w()
        if keys_checked:
            keys = [(key, key.encode("utf-8")) for key, _ in items]
        else:
            keys = [(key, self._key(key)) for key, _ in items]
        with log.mutex:
            log.acquire()
            flag = self._flag
            single = len(items) == 1 or flag
            tf = T_BYTES | (0 if keep_history else F_LATEST) | (flag if single else F_BATCH)
            recs = [(kb, v if isinstance(v, tuple) else (v,)) for (_, kb), (_, v)
                    in zip(keys, items)]
            if not single:
                recs.append((b"", ()))
            offsets = log.append_records(tf, recs, commit_last=not single)
            append = log.index.append
            for (key, _), pos in zip(keys, offsets):
                append(key, T_BYTES, pos, math.nan)
            if not flag:
                log.settle()

    def _history_len(self, key: str) -> int:
        """How many values ``key``'s live history holds (0 if absent)."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log.refresh()
            idx = log.index
            kid = idx.kid.get(key)
            if kid is None or not idx.l_typ[kid]:
                return 0
            h = idx.hists.get(kid)
            if h is not None:
                return len(h.off)
            h = idx.history(key)
            return 0 if h is None else len(h.off)

    def _history_items(self, key: str, start: int = 0,
                       stop: int | None = None) -> list[tuple[int, Any]]:
        """(record type, value) of history entries ``start:stop`` of ``key``
        (only those are read)."""
        _check_read_key(key)
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            log = self._r()
            h = log.index.history(key)
            if h is None:
                return []
            value = self._value
            part = slice(start, stop)
            return [(t, value(log, key, t, o, v))
                    for t, o, v in zip(h.typ[part], h.off[part], h.val[part])]

    def _history_slice(self, key: str, start: int, stop: int) -> list[Any]:
        """Values ``start:stop`` of ``key``'s history (without reading the rest)."""
        return [v for _, v in self._history_items(key, start, stop)]

    def _float_tails(self, keys: list[str], n: int) -> list[list[float] | None]:
        """The last ``n`` numeric values of each key, from the index (no
        reads); None for a key with fewer."""
        log = self._log
        if log is None:
            raise errors.ClosedError(f"{self.path!r} is closed")
        with log.mutex:
            tail = log.index.tail
            return [tail(key, n) for key in keys]

    def history_entries(self, key: str) -> list[tuple[str, Any]]:
        """(type name, value) of every history entry; for exporters."""
        return [(_TYPE_WORDS[t], v) for t, v in self._history_items(key)]


class Storage:
    """The named interface between the engine and the components built on a
    :class:`SynaDB` (VectorStore, TensorEngine, the tracker, the registry).

    Components reach the file only through these methods: zero-copy reads
    of large values, appends of values given as buffers, the log positions
    that let a component catch up with other handles' writes, and a few
    index reads.  Everything else they need is SynaDB's public API.
    """

    __slots__ = ("_db",)

    def __init__(self, db: SynaDB) -> None:
        self._db = db

    @staticmethod
    def check_key(key: object) -> bytes:
        """The UTF-8 bytes of a valid key, or InvalidKey/InvalidKeyType."""
        return SynaDB._key(key)

    def value_offset(self, key: str) -> int:
        """The file offset at which the value of this handle's next append,
        under ``key``, will start: exact inside ``batch()`` (which holds the
        write lock) until this handle appends anything else, a guess outside
        it (another process may append first).  A component aligns its data
        to the file with it (the map starts at offset 0); it must not rely on
        the guess for anything but speed."""
        return self._db._w().end + fmt.REC_PREFIX.size + len(SynaDB._key(key))

    def in_batch(self) -> bool:
        """Whether this handle is inside its ``batch()``: what it writes now
        may still be rolled back."""
        return bool(self._db._flag)

    def locked(self) -> Any:
        """The handle's lock, as a context manager: reads inside it see one
        version of the file (no other thread of this handle writes)."""
        log = self._db._log
        if log is None:
            raise errors.ClosedError(f"{self._db.path!r} is closed")
        return log.mutex

    def salt(self) -> int:
        """The file's salt: it changes when compaction replaces the file, so
        a component's cached log positions are then void."""
        return self._db._salt()

    def log_end(self) -> int:
        """The log offset up to which every record is committed (or aborted)."""
        return self._db._log_end()

    def keys_written_since(self, offset: int) -> tuple[set[str], int]:
        """Keys put or deleted after ``offset``, and the offset this covers to."""
        return self._db._keys_written_since(offset)

    def value_view(self, key: str, refresh: bool = True,
                   check: bool = True) -> memoryview | None:
        """A zero-copy, CRC-checked, read-only view of ``key``'s latest bytes."""
        return self._db._value_view(key, refresh, check)

    def put_blob_parts(self, key: str, parts: list[Any], keep_history: bool = True) -> None:
        """Append one bytes value given as buffers, with a single copy.

        Args:
            key: the key.
            parts: C-contiguous buffers (bytes, NumPy arrays, memoryviews)
                whose concatenation is the value; they are not joined.
            keep_history: False writes a *latest-only* value: once a later
                value of ``key`` supersedes it, the file need not keep it,
                and while it is the key's latest value, compaction keeps only
                it (even with ``compact(keep_history=True)``), so after
                compaction ``get_history(key)`` may hold just that value.
                Until compaction every value stays readable, and a later
                ordinary value makes the key keep its history again.  Use it
                for values that are replaced, not appended to (blocks of a
                stored array, caches), where old copies are garbage.

        Inside ``db.batch()`` the value counts only with the rest of the batch.
        """
        # The ordinary call keeps its two-argument form: fault-injection
        # tests stand in for this hook with that signature.
        if keep_history:
            self._db._put_blob_parts(key, parts)
        else:
            self._db._put_blob_parts(key, parts, keep_history=False)

    def put_blobs(self, items: list[tuple[str, Any]], keys_checked: bool = False,
                  keep_history: bool = True) -> None:
        """Append many bytes values, all or nothing.

        Args:
            items: (key, value) pairs; a value is bytes or a tuple of
                C-contiguous buffers written without being joined.
            keys_checked: the caller already validated every key
                (:meth:`check_key`).
            keep_history: False writes every value latest-only (see
                :meth:`put_blob_parts`).
        """
        if keep_history:  # the older call's form, as above
            self._db._put_blobs(items, keys_checked)
        else:
            self._db._put_blobs(items, keys_checked, keep_history=False)

    def history_len(self, key: str) -> int:
        """How many values ``key``'s live history holds (0 if absent)."""
        return self._db._history_len(key)

    def history_slice(self, key: str, start: int, stop: int) -> list[Any]:
        """Values ``start:stop`` of ``key``'s history, reading only those."""
        return self._db._history_slice(key, start, stop)

    def float_tails(self, keys: list[str], n: int) -> list[list[float] | None]:
        """The last ``n`` numeric values of each key (None where fewer), from
        the index."""
        return self._db._float_tails(keys, n)

    def advise_random(self, keys: list[str]) -> None:
        """Hint that the latest values of ``keys`` will be read a row here
        and a row there (a vector re-rank): the map reads no pages ahead
        of them.  Only a hint."""
        log = self._db._log
        if log is None:
            return
        with log.mutex:
            offs = [got[1] for key in keys if (got := log.index.latest(key)) is not None]
            log.advise_random(offs)

    def drop_cached(self, keys: list[str], min_bytes: int) -> None:
        """Hint that the latest values of ``keys`` (those of at least
        ``min_bytes``) will not be read soon: drop their pages from the
        cache.  Only a hint; readers of those bytes still read them."""
        log = self._db._log
        if log is None:
            return
        with log.mutex:
            offs = [got[1] for key in keys if (got := log.index.latest(key)) is not None]
            log.drop_cached(offs, min_bytes)
