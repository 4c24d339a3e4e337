"""The on-disk layout of a synadb file: constants and pure encode/decode.

No I/O happens here.  ``docs/FORMAT.md`` is the prose version of this module;
keep the two in step.  All integers are little-endian.

File = 64-byte header, then an append-only log of records, then (possibly)
zero bytes of pre-allocated space.  A record (K = key length, V = value
length)::

    0       u8   marker 0xA7 (never 0, so pre-allocated zeros never parse)
    1       u8   type in the low 5 bits, flags in the high 3 bits
    2       u16  K, key length in bytes
    4       u32  V, value length in bytes (as stored, after compression)
    8       u32  head CRC = crc32(bytes 0..8 + key, seed=salt)
    12      K    key (UTF-8)
    12+K    V    value
    12+K+V  u32  body CRC = crc32(value, seed=head CRC ^ (offset mod 2**32))

The body CRC comes last so that a writer can keep the constant prefix of a
key's records (header, head CRC, key) and only checksum the new value.

The head CRC lets a reader trust a record's length and key even when its
value is damaged, so damage can be pinned on one key.  The body CRC chains
from it, so together they cover type, key and value.  Seeding with the
file's random salt keeps records of *another* synadb file (say, stored as a
bytes value, or garbage after a torn tail) from ever parsing as ours; seeding
the body CRC with the record's own offset (format 2) does the same for an
older copy of *this* file stored inside it, which has the same salt.  The
offset goes into the body CRC, not the head CRC, so that the head of every
record of one key stays constant and can be cached (the put hot path).

Format 1 files (no offset seed, no synced-end watermark) are still read and
appended to in their own format; compaction rewrites them as format 2.

Flag bits (byte 1, high 3 bits): F_LZ4 on any value; bit 6 is F_XOR on
T_FLOATS and F_LATEST (a latest-only value, see below) on T_BYTES, and zero
on every other type; F_BATCH on records of an open batch.
"""

from __future__ import annotations

import struct
import time
import zlib

MAGIC = b"\x89SYNADB\n"
# WRITE_VERSION: what this library writes.  READ_VERSION: the oldest reader
# that can still read what we write.  A file whose read version is newer than
# ours is refused; one whose write version is newer opens read-only.
WRITE_VERSION = 2
READ_VERSION = 2

HEADER_SIZE = 64
_HEAD_STATIC = struct.Struct("<8sHHIQI")  # magic, wver, rver, salt, created_ms, reserved
# The header slot, bytes 32..56.  Format 1: checkpoint offset, checkpoint
# seq (u64), reserved.  Format 2: checkpoint offset, synced end, checkpoint
# seq (u32).  The same shape, so one Struct reads both.
_HEAD_CKPT = struct.Struct("<QQI")
_U32 = struct.Struct("<I")
CKPT_AT = 32
LOCK_REQUEST_AT = 56  # one byte a waiting writer sets; not checksummed
REPLACING_AT = 57  # one byte compaction sets just before its rename; not checksummed

MARKER = 0xA7
REC_HEAD = struct.Struct("<BBHI")  # marker, type|flags, key_len, value_len
REC_PREFIX = struct.Struct("<BBHII")  # ... and the head CRC
U32 = struct.Struct("<I")

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 0xFFFF_FFFF

# Record types (low 5 bits of byte 1).
T_NULL = 1
T_FLOAT = 2
T_INT = 3
T_TEXT = 4
T_BYTES = 5
T_VECTOR = 6
T_FLOATS = 7  # a block of float64 values of one key (put_floats_batch)
T_DELETE = 8  # tombstone: the key's history ends here
T_COMMIT = 9  # closes a batch: its records count
T_ABORT = 10  # closes a batch: its records never happened
T_CHECKPOINT = 11  # a snapshot of the index of everything before it
T_MOVED = 12  # compaction replaced this file; reopen the path

TYPE_MASK = 0x1F
F_LZ4 = 0x20  # value is LZ4 block-compressed, with its size prefixed
F_XOR = 0x40  # T_FLOATS values are XOR-delta encoded (lossless)
# Bit 6 on T_BYTES: a latest-only value.  Once a later value of the key
# supersedes it, compaction drops it even when keeping history (and if it is
# the key's latest value, compaction keeps only it).  It shares its bit with
# F_XOR because that bit had only ever been set on T_FLOATS, so no file of any
# version has it on T_BYTES by accident; and it needs no new format version:
# a reader that does not know it reads an ordinary bytes value, and its
# compaction keeps the superseded copies (and the bit), which costs space only.
F_LATEST = 0x40
F_BATCH = 0x80  # part of a batch: counts only once a T_COMMIT follows

VALUE_TYPES = frozenset({T_NULL, T_FLOAT, T_INT, T_TEXT, T_BYTES, T_VECTOR, T_FLOATS})
TYPE_NAMES = {
    T_NULL: "null",
    T_FLOAT: "float",
    T_INT: "int",
    T_TEXT: "text",
    T_BYTES: "bytes",
    T_VECTOR: "vector",
    T_FLOATS: "float",
    T_DELETE: "delete",
    T_COMMIT: "commit",
    T_ABORT: "abort",
    T_CHECKPOINT: "checkpoint",
    T_MOVED: "moved",
}

crc32 = zlib.crc32


def new_header(salt: int) -> bytearray:
    """Return the 64 header bytes of a new, empty file (of format WRITE_VERSION)."""
    head = bytearray(HEADER_SIZE)
    static = _HEAD_STATIC.pack(MAGIC, WRITE_VERSION, READ_VERSION, salt,
                               int(time.time() * 1000), 0)
    head[0:28] = static
    head[28:32] = _U32.pack(crc32(static))
    head[CKPT_AT:CKPT_AT + 24] = slot(0, HEADER_SIZE, 0)
    return head


def slot(checkpoint_offset: int, synced_end: int, seq: int) -> bytes:
    """Bytes 32..56 of a format-2 header: the latest checkpoint and the
    synced end (every byte before it was fsynced before the slot was written)."""
    body = _HEAD_CKPT.pack(checkpoint_offset, synced_end, seq & 0xFFFF_FFFF)
    return body + _U32.pack(crc32(body))


def slot_ok(raw: bytes) -> bool:
    """Whether 24 slot bytes (header bytes 32..56) pass their CRC."""
    return _U32.unpack_from(raw, 20)[0] == crc32(raw[:20])


def slot_v1(offset: int, seq: int) -> bytes:
    """Bytes 32..56 of a format-1 header (no synced end)."""
    body = _HEAD_CKPT.pack(offset, seq, 0)
    return body + _U32.pack(crc32(body))


class Header:
    """The parsed header (call :func:`check_header` first).

    ``seeded``: records' body CRCs are seeded with their offset (format 2).
    ``synced_end``: before this offset every record was fsynced, so damage
    there is corruption to report; after it a bad record is a torn tail.
    Format 1 has no such field (UNKNOWN_END: the whole file is read as
    synced, format 1's own rule); nor has a torn slot (and its checkpoint
    pointer is ignored: a longer replay).
    """

    __slots__ = ("write_version", "read_version", "salt", "created_ms",
                 "checkpoint_offset", "checkpoint_seq", "synced_end", "seeded", "slot_ok")

    def __init__(self, raw: bytes) -> None:
        magic, wver, rver, salt, created, _ = _HEAD_STATIC.unpack_from(raw, 0)
        self.write_version = wver
        self.read_version = rver
        self.salt = salt
        self.created_ms = created
        self.seeded = rver >= 2
        self.read_slot(raw[CKPT_AT:CKPT_AT + 24])

    def read_slot(self, raw: bytes) -> None:
        off, second, third = _HEAD_CKPT.unpack_from(raw, 0)
        (crc,) = _U32.unpack_from(raw, 20)
        self.slot_ok = crc == crc32(raw[:20])
        if not self.slot_ok:
            off, second, third = 0, 0, 0
        self.checkpoint_offset = off
        if self.seeded:
            # A torn slot says nothing about what was synced: read the whole
            # file as synced (format 1's rule), so a bad record with good ones
            # after it is damage to report, never a tail for a writer to zero.
            self.synced_end = max(second, off, HEADER_SIZE) if self.slot_ok else UNKNOWN_END
            self.checkpoint_seq = third
        else:
            # No synced end in format 1: recovery keeps format 1's rule (a
            # bad record followed by good ones is damage, skipped and
            # reported), never zeroing good records it cannot place.
            self.synced_end = UNKNOWN_END
            self.checkpoint_seq = second

    def slot_bytes(self) -> bytes:
        if self.seeded:
            return slot(self.checkpoint_offset, self.synced_end, self.checkpoint_seq)
        return slot_v1(self.checkpoint_offset, self.checkpoint_seq)


def check_header(raw: bytes) -> str | None:
    """Say what is wrong with a header, or None if it is a good one."""
    if len(raw) < HEADER_SIZE or raw[:8] != MAGIC:
        return "not a synadb file (bad magic bytes)"
    (crc,) = _U32.unpack_from(raw, 28)
    if crc != crc32(raw[0:28]):
        return "the file header is damaged (header CRC mismatch)"
    return None


def encode(typ: int, key: bytes, value: bytes, salt: int, pos: int, pmask: int) -> bytes:
    """Encode one record that will start at offset ``pos``.  ``typ`` may
    carry flag bits; ``pmask`` is POS_MASK for format 2, 0 for format 1."""
    klen = len(key)
    vlen = len(value)
    hc = crc32(key, crc32(REC_HEAD.pack(MARKER, typ, klen, vlen), salt))
    return b"".join((REC_PREFIX.pack(MARKER, typ, klen, vlen, hc), key, value,
                     U32.pack(crc32(value, hc ^ (pos & pmask)))))


POS_MASK = 0xFFFF_FFFF
UNKNOWN_END = 1 << 62  # the synced end of a format-1 file


def prefix(typ: int, key: bytes, vlen: int, salt: int) -> tuple[bytes, int]:
    """The constant start of every record of (typ, key, vlen), and its head CRC."""
    klen = len(key)
    hc = crc32(key, crc32(REC_HEAD.pack(MARKER, typ, klen, vlen), salt))
    return REC_PREFIX.pack(MARKER, typ, klen, vlen, hc) + key, hc


def float_record_packer(klen: int, salt: int):
    """(head CRC seed, packer) for float records of keys of ``klen`` bytes.

    The packer takes (marker, type, klen, 8, head CRC, key, value, body CRC)
    and builds the whole record in one call; the seed is the CRC of the
    record's first 8 bytes, so the head CRC is ``crc32(key, seed)`` (and the
    body CRC ``crc32(value, head CRC ^ (offset & pmask))``).
    """
    seed = crc32(REC_HEAD.pack(MARKER, T_FLOAT, klen, 8), salt)
    return seed, struct.Struct(f"<BBHII{klen}s8sI").pack
