"""Errors raised by synadb.

Every error raised on purpose derives from :class:`SynaError`, so
``except synadb.SynaError`` catches them all.  The tree::

    SynaError
     ├── CorruptDatabase            the file is damaged or is not a synadb file
     │    ├── ChecksumError         a record failed its CRC (file, offset, CRCs)
     │    └── NotASynaFile          the file does not start with synadb's magic
     ├── FormatVersionError         the file was written by a newer format
     ├── DatabaseNotFound           (also FileNotFoundError) read-only open of a missing file
     ├── StorageError               (also OSError, with its errno) the OS refused an I/O call
     │    ├── DiskFull              ENOSPC/EDQUOT: nothing was half-written; free space, go on
     │    ├── PermissionDenied      (also PermissionError) EACCES/EPERM
     │    ├── ReadOnlyFilesystem    EROFS
     │    └── DurabilityError       an fsync failed: the handle refuses writes; reopen
     ├── LockTimeout                another writer held the lock for too long
     ├── ReadOnlyError              a write on a read-only handle
     ├── ClosedError                any use of a closed handle
     ├── KeyNotFound                (also KeyError)
     ├── TypeMismatch               (also TypeError) typed get on another type
     ├── InvalidArgument            (also ValueError) bad input
     │    ├── InvalidKey            empty, too long, NUL, or not a str
     │    │    └── InvalidKeyType   (also TypeError) a key that is not a str
     │    ├── InvalidType           (also TypeError) an argument of the wrong type
     │    ├── InvalidPath           a directory, or an unusable path
     │    │    └── NotADatabase     a FIFO, a device or a socket: never opened
     │    ├── NonFiniteValue        NaN/inf where the caller forbade it
     │    └── DimensionMismatch     wrong vector/tensor shape or dtype
     └── MissingDependency          (also ImportError) an optional extra is missing
"""

from __future__ import annotations

__all__ = [
    "SynaError",
    "CorruptDatabase",
    "ChecksumError",
    "NotASynaFile",
    "FormatVersionError",
    "DatabaseNotFound",
    "StorageError",
    "DiskFull",
    "PermissionDenied",
    "ReadOnlyFilesystem",
    "DurabilityError",
    "LockTimeout",
    "ReadOnlyError",
    "ClosedError",
    "KeyNotFound",
    "TypeMismatch",
    "InvalidArgument",
    "InvalidKey",
    "InvalidKeyType",
    "InvalidType",
    "InvalidPath",
    "NotADatabase",
    "NonFiniteValue",
    "DimensionMismatch",
    "MissingDependency",
]


class SynaError(Exception):
    "Base class of every error synadb raises on purpose."


class CorruptDatabase(SynaError):
    "The file is damaged in a way synadb cannot read past."


class ChecksumError(CorruptDatabase):
    "A record's stored CRC does not match its bytes; the record is not returned."

    def __init__(self, message: str, *, path: str = "", offset: int = -1,
                 expected: int | None = None, actual: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.expected = expected
        self.actual = actual


class NotASynaFile(CorruptDatabase):
    "The file exists but is not a synadb file; it is left untouched."


class FormatVersionError(SynaError):
    "The file was written by a newer synadb format than this library reads."


class DatabaseNotFound(SynaError, FileNotFoundError):
    "A read-only open of a file that does not exist."


class StorageError(SynaError, OSError):
    """The operating system refused an I/O call; ``errno`` and ``filename`` are
    the OS's.  Raised as ``StorageError(errno, message, path)``."""


class DiskFull(StorageError):
    "No space left (ENOSPC, EDQUOT); nothing was half-written, and after space is freed the handle works."


class PermissionDenied(StorageError, PermissionError):
    "The OS denied access to the file or its folder (EACCES, EPERM)."


class ReadOnlyFilesystem(StorageError):
    "The file system is mounted read-only (EROFS); open with read_only=True."


class DurabilityError(StorageError):
    """An fsync failed, so what reached the disk is unknown past ``durable_end``.

    The handle stays readable but refuses every later write (retrying an
    fsync after a failure can report success for lost data: PostgreSQL's
    2018 "fsyncgate").  Reopen the database to go on writing.
    """

    durable_end: int = -1


class LockTimeout(SynaError):
    "Another writer held the file's write lock for longer than lock_timeout_s."


class ReadOnlyError(SynaError):
    "A write was attempted on a read-only handle."


class ClosedError(SynaError):
    "The handle was used after close()."


class KeyNotFound(SynaError, KeyError):
    "The key does not exist."

    def __str__(self) -> str:  # KeyError quotes its argument; keep messages readable
        return str(self.args[0]) if self.args else ""


class TypeMismatch(SynaError, TypeError):
    "A typed get found a value of another type."


class InvalidArgument(SynaError, ValueError):
    "An argument was rejected before anything was written."


class InvalidKey(InvalidArgument):
    "A key is empty, too long, contains NUL, or is not a str."


class InvalidKeyType(InvalidKey, TypeError):
    "A key that is not a str (also a TypeError, as Python would raise)."


class InvalidType(InvalidArgument, TypeError):
    "An argument of the wrong type (also a TypeError, as Python would raise)."


class InvalidPath(InvalidArgument):
    "The path is a directory or otherwise cannot hold a database file."


class NotADatabase(InvalidPath):
    "The path names a FIFO, a device or a socket; it is never opened for reading."


class NonFiniteValue(InvalidArgument):
    "NaN or infinity where the caller forbade non-finite values."


class DimensionMismatch(InvalidArgument):
    "A vector or tensor has the wrong shape or dtype."


class MissingDependency(SynaError, ImportError):
    "An optional dependency is not installed; the message names the pip extra."

    def __init__(self, package: str, extra: str, feature: str = "") -> None:
        what = f" for {feature}" if feature else ""
        super().__init__(
            f"{package} is needed{what}: pip install 'synadb[{extra}]'"
        )
        self.package = package
        self.extra = extra
