"""File-system primitives every component shares: OS errors as SynaErrors,
and the one write-temp-then-rename routine.

Why one routine: a rename is atomic, but not durable by itself.  Without an
fsync of the temp file *before* the rename, a power cut can leave the new
name pointing at an empty or partial file on ext4/xfs (the data blocks were
never written, the rename was); without an fsync of the folder *after* it,
the rename itself may be lost.  Four hand-written copies of this dance got
it wrong in different ways, so there is only this one.
"""

from __future__ import annotations

import errno as _errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, NoReturn

from .. import errors

_BY_ERRNO: dict[int, type[errors.StorageError]] = {
    _errno.ENOSPC: errors.DiskFull,
    _errno.EDQUOT: errors.DiskFull,
    _errno.EACCES: errors.PermissionDenied,
    _errno.EPERM: errors.PermissionDenied,
    _errno.EROFS: errors.ReadOnlyFilesystem,
}


def storage_error(e: OSError, what: str, path: str | None = None) -> errors.SynaError:
    """The SynaError for an OSError raised while doing ``what`` to ``path``.

    The result keeps ``errno`` (and is an OSError too), so code that looks at
    ``e.errno`` keeps working.  Path problems that are the caller's (a loop
    of symlinks, a name too long, a folder where a file should be) become
    :class:`~synadb.errors.InvalidPath`.
    """
    if isinstance(e, errors.SynaError):
        return e
    path = path if path is not None else (e.filename if isinstance(e.filename, str) else None)
    code = e.errno
    reason = e.strerror or str(e)
    if code in (_errno.ELOOP, _errno.ENAMETOOLONG, _errno.ENOTDIR, _errno.EISDIR):
        return errors.InvalidPath(f"cannot {what} {path!r}: {reason}")
    if code == _errno.ENOENT:
        return errors.InvalidPath(f"cannot {what} {path!r}: a folder on the path is missing")
    cls = _BY_ERRNO.get(code, errors.StorageError)
    hint = {errors.DiskFull: "; nothing was half-written: free space and retry",
            errors.ReadOnlyFilesystem: "; open it with read_only=True"}.get(cls, "")
    return cls(code or _errno.EIO, f"cannot {what} {path!r}: {reason}{hint}", path)


def raise_storage(e: OSError, what: str, path: str | None = None) -> NoReturn:
    raise storage_error(e, what, path) from e


def check_path(path: object) -> str:
    """A usable database path as str, or InvalidPath/NotADatabase.

    Refuses what would otherwise fail late or hang: a NUL byte, bytes paths,
    FIFOs, devices and sockets (opening a FIFO for reading blocks until a
    writer appears).
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise errors.InvalidPath(f"path must be a str or os.PathLike, not {path!r}")
    if not path:
        raise errors.InvalidPath("the path is empty")
    if "\0" in path:
        raise errors.InvalidPath(f"path {path!r} contains a NUL character")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise_storage(e, "open", path)
    if stat.S_ISDIR(st.st_mode):
        raise errors.InvalidPath(f"{path!r} is a directory, not a database file")
    if not stat.S_ISREG(st.st_mode):
        raise errors.NotADatabase(
            f"{path!r} is not a regular file (a FIFO, device or socket); it was not opened")
    return path


def fsync_dir(path: str) -> None:
    """fsync the folder holding ``path``, so that a rename or create in it is durable."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, mode_from: str | None = None) -> Iterator[str]:
    """Yield a temp path beside ``path``; when the block ends without error
    the temp file is fsynced, renamed over ``path`` and the folder fsynced.

    On any error (or if the block raised) the temp file is removed and
    ``path`` is as it was.  ``mode_from`` copies that file's permission bits
    (and owner, where allowed) to the new file.  OS errors come out as
    :func:`storage_error` SynaErrors.
    """
    target = os.fspath(path)
    if not isinstance(target, str):
        raise errors.InvalidPath(f"paths are str or os.PathLike[str], not {path!r}")
    if "\0" in target:
        raise errors.InvalidPath(f"path {target!r} contains a NUL character")
    if os.path.isdir(target) or target.endswith(os.sep):
        raise errors.InvalidPath(f"{target!r} is a directory")
    folder, name = os.path.split(os.path.abspath(target))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    step = "write"
    try:
        yield tmp
        step = "fsync"
        fd = os.open(tmp, os.O_RDWR | os.O_CLOEXEC)  # fsync needs a writable fd on some systems
        try:
            if mode_from is not None:
                copy_mode(mode_from, fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        step = "rename"
        os.replace(tmp, target)
        tmp = ""
        step = "fsync the folder of"
        fsync_dir(target)
    except OSError as e:
        _unlink_quietly(tmp)
        raise_storage(e, step, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], None], *,
                 mode_from: str | None = None) -> None:
    """Replace ``path`` with ``data`` (bytes, or a function that writes to a
    binary file) atomically and durably; see :func:`atomic_path`."""
    with atomic_path(path, mode_from=mode_from) as tmp:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)


def copy_mode(src: str, fd: int) -> None:
    """Give the file open as ``fd`` the permission bits (and owner) of ``src``."""
    st = os.stat(src)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        pass  # not ours to give away; the mode is still kept


def _unlink_quietly(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
