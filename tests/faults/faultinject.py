"""Count the OS-level I/O calls an operation makes, and fail the i-th one.

:class:`Injector` wraps, for as long as it is entered, ``os.open``,
``os.write``, ``os.pwrite``, ``os.fsync``, ``os.fdatasync``,
``os.posix_fallocate``, ``os.ftruncate``, ``os.replace``, ``os.rename``,
``os.unlink``/``os.remove``, ``open()`` for binary writing (its raw writes,
i.e. the real ``write(2)`` calls behind the buffer), and ``mmap.mmap``
(creating a map: the map grows by being recreated; ``flush()``: msync), and
``fcntl.flock`` when it takes a lock.
Only calls that concern the database's folder (a path in it, the folder
itself, or a descriptor of a file in it) count, and only while ``armed``.
The call numbered ``fail_at`` raises ``OSError(errno)`` instead of running
(for a map, ENOMEM: mmap() cannot fail with EIO or ENOSPC).
"""

from __future__ import annotations

import builtins
import errno as E
import fcntl
import io
import mmap
import os
from dataclasses import dataclass
from typing import Any

FSYNC_KINDS = ("fsync", "fdatasync", "msync")


@dataclass
class Site:
    index: int
    kind: str
    target: str  # a path (the folder for a folder fsync)
    after_rename: bool  # a rename over the database already happened in this operation

    def describe(self, db_path: str) -> str:
        if self.target == db_path:
            what = "the database file"
        elif os.path.isdir(self.target) or self.target == os.path.dirname(db_path):
            what = "the folder"
        else:
            what = os.path.basename(self.target)
        return f"call {self.index} {self.kind}({what})" + (
            " after the rename" if self.after_rename else "")


class Injector:
    def __init__(self, folder: str, db_path: str) -> None:
        self.folder = os.path.realpath(folder)
        self.db_path = os.path.realpath(db_path)
        self.armed = False
        self.calls: list[Site] = []
        self.fail_at: int | None = None
        self.errno = E.EIO
        self.injected: Site | None = None
        self.renamed = False
        self._saved: dict[tuple[Any, str], Any] = {}

    # -------------------------------------------------------------- arming
    def arm(self, fail_at: int | None, err: int = E.EIO) -> None:
        self.calls = []
        self.fail_at = fail_at
        self.errno = err
        self.injected = None
        self.renamed = False
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    # --------------------------------------------------------------- sites
    def _in_folder(self, path: str) -> bool:
        return path == self.folder or os.path.dirname(path) == self.folder

    def _fd_path(self, fd: Any) -> str | None:
        try:
            fd = fd if isinstance(fd, int) else fd.fileno()
            target = os.readlink(f"/proc/self/fd/{fd}")
        except (OSError, AttributeError, ValueError):
            return None
        if target.endswith(" (deleted)"):
            target = target[: -len(" (deleted)")]
        return target

    def _path(self, p: Any) -> str | None:
        try:
            p = os.fspath(p)
        except TypeError:
            return None
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        return os.path.realpath(os.path.abspath(p))

    def hit(self, kind: str, target: str | None) -> None:
        if not self.armed or target is None or not self._in_folder(target):
            return
        site = Site(len(self.calls), kind, target, self.renamed)
        self.calls.append(site)
        if site.index == self.fail_at:
            self.injected = site
            err = E.ENOMEM if kind == "mmap" else self.errno
            raise OSError(err, f"{os.strerror(err)} (injected)", target)

    # ------------------------------------------------------------- patches
    def _patch(self, obj: Any, name: str, value: Any) -> None:
        self._saved[(obj, name)] = getattr(obj, name)
        setattr(obj, name, value)

    def __enter__(self) -> "Injector":
        inj = self
        real = {n: getattr(os, n) for n in ("open", "write", "pwrite", "fsync", "fdatasync",
                                              "posix_fallocate", "ftruncate", "replace",
                                              "rename", "unlink", "remove")}

        def by_fd(name: str):
            fn = real[name]

            def wrapper(fd, *args, **kw):
                if inj.armed:
                    inj.hit(name, inj._fd_path(fd))
                return fn(fd, *args, **kw)
            wrapper.__name__ = name
            return wrapper

        def by_path(name: str, kind: str):
            fn = real[name]

            def wrapper(path, *args, **kw):
                if inj.armed and kw.get("dir_fd") is None:
                    inj.hit(kind, inj._path(path))
                return fn(path, *args, **kw)
            wrapper.__name__ = name
            return wrapper

        def renamer(name: str):
            fn = real[name]

            def wrapper(src, dst, *args, **kw):
                target = inj._path(dst) if inj.armed else None
                if inj.armed:
                    inj.hit(name, target)
                r = fn(src, dst, *args, **kw)
                if inj.armed and target == inj.db_path:
                    inj.renamed = True
                return r
            wrapper.__name__ = name
            return wrapper

        for name in ("write", "pwrite", "fsync", "fdatasync", "posix_fallocate", "ftruncate"):
            self._patch(os, name, by_fd(name))
        self._patch(os, "open", by_path("open", "open"))
        self._patch(os, "unlink", by_path("unlink", "unlink"))
        self._patch(os, "remove", by_path("remove", "unlink"))
        self._patch(os, "replace", renamer("replace"))
        self._patch(os, "rename", renamer("rename"))

        real_open = builtins.open

        class CountingFileIO(io.FileIO):
            def write(self, b):  # the real write(2) behind a buffered file
                inj.hit("write", inj._path(self.name))
                return super().write(b)

        def open_(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
                  closefd=True, opener=None):
            if (inj.armed and isinstance(file, (str, bytes, os.PathLike)) and "b" in mode
                    and any(c in mode for c in "wax+") and opener is None):
                path = inj._path(file)
                if path is not None and inj._in_folder(path):
                    inj.hit("open", path)
                    raw = CountingFileIO(file, mode.replace("b", ""), closefd=closefd)
                    if buffering == 0:
                        return raw
                    size = io.DEFAULT_BUFFER_SIZE if buffering in (-1, 1) else buffering
                    if "+" in mode:
                        return io.BufferedRandom(raw, size)
                    return io.BufferedWriter(raw, size)
            return real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)

        self._patch(builtins, "open", open_)

        real_mmap = mmap.mmap

        class CountingMmap(real_mmap):  # type: ignore[misc, valid-type]
            def __new__(cls, fileno, length, *args, **kw):
                target = inj._fd_path(fileno) if fileno != -1 else None
                if inj.armed:
                    inj.hit("mmap", target)
                obj = super().__new__(cls, fileno, length, *args, **kw)
                obj._inj_target = target
                return obj

            def __init__(self, *args, **kw) -> None:
                pass

            def flush(self, *args):
                if inj.armed:
                    inj.hit("msync", self._inj_target)
                return super().flush(*args)

        self._patch(mmap, "mmap", CountingMmap)

        real_flock = fcntl.flock

        def flock(fd, op):  # taking a lock (the lease, compaction's new file)
            if inj.armed and not op & fcntl.LOCK_UN:
                inj.hit("flock", inj._fd_path(fd))
            return real_flock(fd, op)

        self._patch(fcntl, "flock", flock)
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        for (obj, name), value in reversed(list(self._saved.items())):
            setattr(obj, name, value)
        self._saved.clear()


def select_sites(calls: list[Site], limit: int, rng) -> list[Site]:
    """Every site when ``limit`` is 0; else the first of each kind (and of
    each kind after a rename), the last, and a seeded sample of the rest."""
    if not limit or len(calls) <= limit:
        return list(calls)
    chosen: dict[int, Site] = {}
    seen = set()
    for s in calls:
        key = (s.kind, s.after_rename, os.path.basename(s.target))
        if key not in seen:
            seen.add(key)
            chosen[s.index] = s
    chosen[calls[-1].index] = calls[-1]
    rest = [s for s in calls if s.index not in chosen]
    room = max(0, limit - len(chosen))
    for s in rng.sample(rest, min(room, len(rest))):
        chosen[s.index] = s
    return [chosen[i] for i in sorted(chosen)]
