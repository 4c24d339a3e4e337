"""W&B's ``Artifact`` over a synadb file: versioned, aliased, checksummed
sets of files.

Layout in the tracking file::

    wandb/artifacts/<project>/<name>    JSON: the artifact's versions and
                                        aliases (its index); rewritten, in
                                        one batch with the files, by each
                                        log_artifact
    run/<run id>/a/wandb-artifacts/<name>/v<N>/<path>
                                        each file's bytes, an artifact of the
                                        run that logged the version

A version's manifest holds each file's SHA-256 and size; ``download``
checks every file against it and raises :class:`~synadb.ChecksumError` on a
mismatch.  Versions are ``v0, v1, ...``; ``latest`` is always the newest;
other aliases (``"best"``, ``"production"``) move to the version last logged
with them.  Logging the same files again makes no new version (W&B dedupes
by digest too); it only adds the aliases.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import errors
from ..tracking import ExperimentTracker
from .wandb_media import Media, Table

if TYPE_CHECKING:
    from .wandb_run import Run

__all__ = ["Artifact", "ArtifactStore", "log_artifact", "use_artifact", "parse_artifact_path"]

INDEX_PREFIX = "wandb/artifacts/"
FILES_PREFIX = "wandb-artifacts/"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_VERSION = re.compile(r"^v(\d+)$")


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class ManifestEntry:
    """One file of an artifact: ``path``, ``digest`` (SHA-256 hex), ``size``."""

    def __init__(self, path: str, digest: str, size: int) -> None:
        self.path, self.digest, self.size = path, digest, size

    def __repr__(self) -> str:
        return f"<ManifestEntry {self.path} {self.size} bytes>"


def _entry_path(name: str) -> str:
    name = name.replace(os.sep, "/").strip("/")
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise errors.InvalidArgument(f"bad artifact file name {name!r}: a relative path "
                                     "without '..'")
    return name


class Artifact:
    """``wandb.Artifact(name, type, description=None, metadata=None)``.

    Add files with ``add_file``, ``add_dir``, ``new_file`` or ``add(obj,
    name)``, then ``run.log_artifact(artifact, aliases=[...])``.  A logged or
    used artifact has ``version`` (``"v3"``), ``aliases``, ``digest`` and
    ``download(root)``.
    """

    def __init__(self, name: str, type: str, description: str | None = None,
                 metadata: dict[str, Any] | None = None, incremental: bool = False,
                 use_as: str | None = None) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise errors.InvalidArgument(
                f"Artifact name {name!r} may only contain alphanumeric characters, dashes, "
                "underscores, and dots")
        if not isinstance(type, str) or not type:
            raise errors.InvalidArgument(f"an artifact type is a non-empty str, got {type!r}")
        self._base_name = name
        self.type = type
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._files: dict[str, bytes] = {}
        self._tmp: list[tempfile.TemporaryDirectory[str]] = []
        self.version: str | None = None
        self.aliases: list[str] = []
        self.project: str | None = None
        self.entity = "local"
        self.source_run: str | None = None
        self.created_at: str | None = None
        self._manifest: dict[str, dict[str, Any]] | None = None
        self._store: ArtifactStore | None = None
        self._prefix = ""  # where a logged version's files are, in its run's artifacts

    # -- names --------------------------------------------------------
    @property
    def name(self) -> str:
        return self._base_name if self.version is None else f"{self._base_name}:{self.version}"

    @property
    def source_name(self) -> str:
        return self.name

    @property
    def qualified_name(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"

    @property
    def id(self) -> str | None:
        return None if self.version is None else f"{self.project}/{self.name}"

    @property
    def digest(self) -> str:
        return _digest(self.manifest_dict())

    @property
    def size(self) -> int:
        return sum(e["size"] for e in self.manifest_dict().values())

    def __repr__(self) -> str:
        return f"<Artifact {self.name} ({self.type})>"

    # -- adding files -------------------------------------------------
    def _check_mutable(self) -> None:
        if self.version is not None:
            raise errors.InvalidArgument(
                f"artifact {self.name} is logged: it cannot change (make a new Artifact)")

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None,
                 is_tmp: bool = False, skip_cache: bool = False, policy: str = "mutable",
                 overwrite: bool = False) -> ManifestEntry:
        """Add a file (its bytes are read now: later changes are not seen)."""
        self._check_mutable()
        path = os.fspath(local_path)
        if not os.path.isfile(path):
            raise errors.InvalidPath(f"add_file: {path!r} is not a file")
        with open(path, "rb") as f:
            raw = f.read()
        key = _entry_path(name or os.path.basename(path))
        if key in self._files and not overwrite and self._files[key] != raw:
            raise errors.InvalidArgument(f"artifact already has a file {key!r} "
                                         "(pass overwrite=True to replace it)")
        self._files[key] = raw
        return ManifestEntry(key, _sha256(raw), len(raw))

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None,
                skip_cache: bool = False, policy: str = "mutable") -> None:
        """Add every file under a directory (at ``name/`` if given)."""
        self._check_mutable()
        root = os.fspath(local_path)
        if not os.path.isdir(root):
            raise errors.InvalidPath(f"add_dir: {root!r} is not a directory")
        for dirpath, _dirs, files in os.walk(root):
            for fn in sorted(files):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                self.add_file(full, f"{name.strip('/')}/{rel}" if name else rel, overwrite=True)

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None
                 ) -> Iterator[Any]:
        """A file to write into the artifact: ``with art.new_file("a.txt") as f:``."""
        self._check_mutable()
        key = _entry_path(name)
        if "b" in mode:
            buf: Any = io.BytesIO()
            yield buf
            self._files[key] = buf.getvalue()
        else:
            sbuf = io.StringIO()
            yield sbuf
            self._files[key] = sbuf.getvalue().encode(encoding or "utf-8")

    def add(self, obj: Any, name: str, overwrite: bool = False) -> ManifestEntry:
        """Add a media object (a ``Table`` as ``<name>.table.json``)."""
        self._check_mutable()
        if isinstance(obj, Table):
            key = _entry_path(name if name.endswith(".table.json") else name + ".table.json")
            raw = json.dumps(obj.to_json()).encode("utf-8")
        elif isinstance(obj, Media):
            key = _entry_path(name + ".json")
            raw = json.dumps(obj.to_json()).encode("utf-8")
        else:
            raise errors.InvalidType(f"Artifact.add takes a wandb media object, got "
                                     f"{type(obj).__name__}")
        self._files[key] = raw
        return ManifestEntry(key, _sha256(raw), len(raw))

    def add_reference(self, uri: str, name: str | None = None, **kwargs: Any) -> None:
        raise errors.InvalidArgument(
            "reference artifacts (URIs to outside storage) are not kept in a synadb file; "
            "add the files themselves with add_file/add_dir")

    def remove(self, item: str) -> None:
        self._check_mutable()
        self._files.pop(_entry_path(item))

    # -- reading -------------------------------------------------------
    def manifest_dict(self) -> dict[str, dict[str, Any]]:
        if self._manifest is not None:
            return self._manifest
        return {k: {"sha256": _sha256(v), "size": len(v)} for k, v in sorted(self._files.items())}

    @property
    def manifest(self) -> Any:
        entries = {k: ManifestEntry(k, v["sha256"], v["size"])
                   for k, v in self.manifest_dict().items()}
        return type("ArtifactManifest", (), {"entries": entries})()

    def files(self) -> list[ManifestEntry]:
        return list(self.manifest.entries.values())

    def get_entry(self, name: str) -> ManifestEntry:
        try:
            return self.manifest.entries[name]
        except KeyError:
            raise errors.KeyNotFound(f"artifact {self.name} has no file {name!r}") from None

    def _read(self, path: str) -> bytes:
        """A file's bytes, checked against the manifest's SHA-256."""
        if self._store is None:
            return self._files[path]
        info = self.manifest_dict().get(path)
        if info is None:
            raise errors.KeyNotFound(f"artifact {self.name} has no file {path!r}")
        raw = self._store.read_file(self, path)
        if _sha256(raw) != info["sha256"] or len(raw) != info["size"]:
            raise errors.ChecksumError(
                f"artifact {self.qualified_name}: file {path!r} does not match its SHA-256 "
                f"(manifest {info['sha256'][:16]}..., read {_sha256(raw)[:16]}...)",
                path=path)
        return raw

    def get(self, name: str) -> Any:
        """A table added with ``add(table, name)``, as a ``Table``."""
        for key in (name, name + ".table.json"):
            if key in self.manifest_dict():
                body = json.loads(self._read(key))
                if key.endswith(".table.json"):
                    return Table(columns=body["columns"], data=body["data"])
                return body
        return None

    def download(self, root: str | os.PathLike[str] | None = None,
                 allow_missing_references: bool = False, skip_cache: bool | None = None,
                 path_prefix: str | None = None) -> str:
        """Write the files under ``root`` (default ``./artifacts/<name>:<version>``),
        each checked against its SHA-256 first; returns the directory."""
        if self.version is None:
            raise errors.InvalidArgument("download needs a logged artifact (log_artifact first)")
        out = os.fspath(root) if root is not None else os.path.join("artifacts", self.name)
        for path in self.manifest_dict():
            if path_prefix and not path.startswith(path_prefix):
                continue
            raw = self._read(path)
            dest = os.path.join(out, *path.split("/"))
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            with open(dest, "wb") as f:
                f.write(raw)
        return out

    def file(self, root: str | os.PathLike[str] | None = None) -> str:
        """The one file of a single-file artifact, downloaded."""
        names = list(self.manifest_dict())
        if len(names) != 1:
            raise errors.InvalidArgument(f"artifact {self.name} has {len(names)} files, not one")
        return os.path.join(self.download(root), *names[0].split("/"))

    def verify(self, root: str | os.PathLike[str] | None = None) -> None:
        """Check downloaded files (under ``root``) against the manifest."""
        base = os.fspath(root) if root is not None else os.path.join("artifacts", self.name)
        for path, info in self.manifest_dict().items():
            with open(os.path.join(base, *path.split("/")), "rb") as f:
                if _sha256(f.read()) != info["sha256"]:
                    raise errors.ChecksumError(f"{path!r} under {base!r} does not match "
                                               "the artifact's SHA-256", path=path)

    def checkout(self, root: str | None = None) -> str:
        return self.download(root)

    def wait(self, timeout: int | None = None) -> "Artifact":
        return self

    def save(self, project: str | None = None, settings: Any = None) -> None:
        from . import wandb as _wandb

        _wandb.log_artifact(self)

    def logged_by(self) -> Any:
        if self._store is None or self.source_run is None:
            return None
        from .wandb_api import PublicRun

        return PublicRun.by_id(self._store.tracker, self.source_run)


def _digest(manifest: dict[str, dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for path in sorted(manifest):
        h.update(path.encode("utf-8") + b"\0" + manifest[path]["sha256"].encode() + b"\n")
    return h.hexdigest()


def parse_artifact_path(path: str, default_project: str | None) -> tuple[str, str, str]:
    """``[entity/][project/]name[:alias]`` -> (project, name, alias)."""
    if not isinstance(path, str) or not path:
        raise errors.InvalidArgument(f"an artifact path is 'project/name:alias', got {path!r}")
    name, _, alias = path.partition(":")
    parts = name.split("/")
    if len(parts) == 1:
        project = default_project
    elif len(parts) in (2, 3):
        project = parts[-2]
    else:
        raise errors.InvalidArgument(f"bad artifact path {path!r}: [entity/][project/]name:alias")
    if not project:
        raise errors.InvalidArgument(f"artifact {path!r}: name its project ('project/{path}')")
    return project, parts[-1], alias or "latest"


class ArtifactStore:
    """The artifacts of one tracking file (see the module docstring)."""

    def __init__(self, tracker: ExperimentTracker) -> None:
        self.tracker = tracker

    def _key(self, project: str, name: str) -> str:
        return f"{INDEX_PREFIX}{project}/{name}"

    def _index(self, project: str, name: str) -> dict[str, Any] | None:
        db = self.tracker.db
        key = self._key(project, name)
        text = db.get_text(key) if db.exists(key) else None
        return None if text is None else json.loads(text)

    def log(self, run: "Run", art: Artifact, aliases: list[str] | None) -> Artifact:
        if art.version is not None:
            raise errors.InvalidArgument(f"artifact {art.name} is already logged")
        aliases = [a for a in (aliases or []) if a != "latest"]
        for a in aliases:
            if not isinstance(a, str) or not _NAME.match(a) or _VERSION.match(a):
                raise errors.InvalidArgument(f"bad alias {a!r}: letters, digits, -, _ and . "
                                             "(and not a version like 'v3')")
        manifest = art.manifest_dict()
        digest = _digest(manifest)
        db = self.tracker.db
        with db.batch():
            index = self._index(run.project, art._base_name) or {
                "type": art.type, "versions": [], "aliases": {}}
            if index["type"] != art.type:
                raise errors.InvalidArgument(
                    f"artifact {art._base_name!r} has type {index['type']!r}, not {art.type!r}")
            versions = index["versions"]
            if versions and versions[-1]["digest"] == digest:
                entry = versions[-1]  # the same files again: no new version
            else:
                n = len(versions)
                prefix = f"{FILES_PREFIX}{art._base_name}/v{n}/"
                for path, raw in sorted(art._files.items()):
                    self.tracker.log_artifact(run._rid, prefix + path, raw)
                entry = {"version": n, "run": run._rid, "digest": digest, "files": manifest,
                         "prefix": prefix, "description": art.description,
                         "metadata": art.metadata, "created": time.time()}
                versions.append(entry)
            for a in aliases:
                index["aliases"][a] = entry["version"]
            db.put_text(self._key(run.project, art._base_name), json.dumps(index))
        self._fill(art, run.project, index, entry)
        art._files = {}
        return art

    def _fill(self, art: Artifact, project: str, index: dict[str, Any],
              entry: dict[str, Any]) -> None:
        n = entry["version"]
        art.version = f"v{n}"
        art.project = project
        art.type = index["type"]
        art.description = entry.get("description")
        art.metadata = dict(entry.get("metadata") or {})
        art.source_run = entry["run"]
        art.created_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry["created"]))
        art._manifest = entry["files"]
        art._store = self
        art._prefix = entry["prefix"]
        art.aliases = sorted(a for a, v in index["aliases"].items() if v == n)
        if n == len(index["versions"]) - 1:
            art.aliases.insert(0, "latest")

    def get(self, project: str, name: str, alias: str = "latest",
            type: str | None = None) -> Artifact:
        index = self._index(project, name)
        if index is None:
            raise errors.KeyNotFound(f"no artifact {name!r} in project {project!r} of "
                                     f"{self.tracker.path!r}")
        if type is not None and index["type"] != type:
            raise errors.InvalidArgument(f"artifact {name!r} has type {index['type']!r}, "
                                         f"not {type!r}")
        versions = index["versions"]
        m = _VERSION.match(alias)
        if alias == "latest":
            n = len(versions) - 1
        elif m:
            n = int(m.group(1))
        elif alias in index["aliases"]:
            n = index["aliases"][alias]
        else:
            raise errors.KeyNotFound(f"artifact {project}/{name} has no version or alias "
                                     f"{alias!r}")
        if not 0 <= n < len(versions):
            raise errors.KeyNotFound(f"artifact {project}/{name} has no version v{n} "
                                     f"({len(versions)} versions)")
        art = Artifact(name, index["type"])
        self._fill(art, project, index, versions[n])
        return art

    def versions(self, project: str, name: str) -> list[Artifact]:
        index = self._index(project, name)
        if index is None:
            return []
        return [self.get(project, name, f"v{e['version']}") for e in index["versions"]]

    def names(self, project: str | None = None) -> list[tuple[str, str]]:
        """(project, name) of every artifact (of ``project``)."""
        prefix = INDEX_PREFIX + (f"{project}/" if project else "")
        out = []
        for key in self.tracker.db.keys(prefix + "*"):
            proj, _, name = key[len(INDEX_PREFIX):].partition("/")
            out.append((proj, name))
        return out

    def read_file(self, art: Artifact, path: str) -> bytes:
        return self.tracker.get_artifact(art.source_run or "", art._prefix + path)


def _note(run: "Run", tag: str, ref: str) -> None:
    tracker = run.tracker
    have = tracker.get_run(run._rid).tag_values.get(tag)
    refs = json.loads(have) if have else []
    if ref not in refs:
        refs.append(ref)
        tracker.set_tag(run._rid, tag, json.dumps(refs))


def log_artifact(run: "Run", art: Artifact, aliases: list[str] | None = None) -> Artifact:
    from .wandb_run import LOGGED_TAG

    ArtifactStore(run.tracker).log(run, art, aliases)
    _note(run, LOGGED_TAG, f"{art.project}/{art.name}")
    return art


def use_artifact(run: "Run", artifact_or_name: Any, type: str | None = None) -> Artifact:
    from .wandb_run import USED_TAG

    store = ArtifactStore(run.tracker)
    if isinstance(artifact_or_name, Artifact):
        if artifact_or_name.version is None:
            raise errors.InvalidArgument("use_artifact of an artifact never logged: log it "
                                         "first (or pass its name)")
        art = artifact_or_name
    else:
        project, name, alias = parse_artifact_path(artifact_or_name, run.project)
        art = store.get(project, name, alias, type)
    _note(run, USED_TAG, f"{art.project}/{art.name}")
    return art
