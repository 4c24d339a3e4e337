"""Model registry: versioned model bytes with SHA-256, stages and history.

Layout (see docs/FORMAT.md)::

    reg/<model>                       JSON: name, created, next version number
    reg/<model>/<version>             JSON: the version's entry (checksum,
                                      size, stage, metadata, description,
                                      tags, chunk count, created); rewritten
                                      on stage and tag changes
    reg/<model>/<version>/<chunk>     the model's bytes, 64 MiB per record
    reg/<model>/stages                one JSON record per stage change

``<model>`` is the name with ``%`` and ``/`` percent-escaped, so names like
``org/classifier`` work.  Every change of an entry happens in one batch under
the file lock: a stage change that archives the previous Production version
is one atomic step, and so is a save.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _convert, errors
from .db import DbConfig, SynaDB
from .report import ComponentReport, describe, warn
from .engine.files import atomic_path, raise_storage

__all__ = ["ModelRegistry", "ModelVersion", "StageChange", "RegistryReport", "STAGES"]

STAGES = ("Development", "Staging", "Production", "Archived")
_CANON = {s.lower(): s for s in STAGES}
_CANON["none"] = "Development"  # MLflow's name for a fresh version
CHUNK = 64 << 20  # bytes per data record: large models stream in pieces


def canonical_stage(stage: object) -> str:
    """``"production"`` -> ``"Production"``; unknown stages raise InvalidArgument."""
    if isinstance(stage, str):
        canon = _CANON.get(stage.strip().lower())
        if canon is not None:
            return canon
    raise errors.InvalidArgument(
        f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")


def _esc(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2F")


def _unesc(part: str) -> str:
    return part.replace("%2F", "/").replace("%25", "%")


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a glob (model names may hold * ? [)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _check_model_name(name: object) -> str:
    if not isinstance(name, str):
        raise errors.InvalidType(f"a model name is a str, got {name!r}")
    if not name.strip():
        raise errors.InvalidArgument(f"a model name must be a non-empty str, got {name!r}")
    if len(name) > 200 or "\0" in name:
        raise errors.InvalidArgument(f"bad model name {name[:60]!r}: at most 200 characters, "
                                     "no NUL")
    return name


@dataclass(frozen=True)
class StageChange:
    """One stage transition, as kept in the history."""

    name: str
    version: int
    from_stage: str
    to_stage: str
    at: float
    user: str | None = None
    comment: str | None = None


@dataclass
class ModelVersion:
    """One saved version: ``.name .version .checksum .stage .size_bytes
    .metadata .created_at``, plus ``.description``, ``.tags`` and ``.format``
    (``bytes``, ``file``, ``torch`` or ``keras``)."""

    name: str
    version: int
    checksum: str
    stage: str
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    format: str = "bytes"
    stage_changed_at: float = 0.0

    @property
    def sha256(self) -> str:
        return self.checksum

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "checksum": self.checksum,
                "stage": self.stage, "size_bytes": self.size_bytes,
                "metadata": dict(self.metadata), "created_at": self.created_at,
                "description": self.description, "tags": dict(self.tags),
                "format": self.format, "stage_changed_at": self.stage_changed_at}


class RegistryReport(ComponentReport):
    """What :meth:`ModelRegistry.verify` (without a model name) found."""

    label = "registry"


def _num(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


def _int(v: Any) -> bool:
    return type(v) is int


def _bad_model(m: Any) -> str:
    if not isinstance(m, dict) or not _int(m.get("next")) or m["next"] < 1:
        return "not a model record (a JSON object with a next version number)"
    return ""


def _bad_entry(e: Any) -> str:
    """Why ``e`` is not a version entry, or ""."""
    if not isinstance(e, dict):
        return "not a JSON object"
    if not _int(e.get("version")) or e["version"] < 1:
        return "no version number"
    sha = e.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        return "no SHA-256"
    if not _int(e.get("size")) or not _int(e.get("chunks")) or e["size"] < 0 \
            or e["chunks"] < 1:
        return "no size or chunk count"
    if e.get("stage") not in STAGES:
        return f"unknown stage {e.get('stage')!r}"
    if not _num(e.get("created")):
        return "no creation time"
    for name in ("metadata", "tags"):
        if not isinstance(e.get(name, {}), dict):
            return f"{name} is not a JSON object"
    return ""


def _bad_change(h: Any) -> str:
    if not isinstance(h, dict) or not _int(h.get("version")) or h.get("to") not in STAGES \
            or not _num(h.get("at")):
        return "not a stage change"
    return ""


def _metadata(metadata: object) -> dict[str, Any]:
    """``metadata`` as a JSON-able dict: str keys, and values that JSON
    cannot hold stored as their str (as before)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise errors.InvalidType(f"metadata must be a dict, got {type(metadata).__name__}")
    out: dict[str, Any] = {}
    for k, v in metadata.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):  # not JSON, or contains itself
            try:
                v = str(v)
            except RecursionError:
                raise errors.InvalidArgument(
                    f"metadata {k!r} is nested too deeply to store") from None
        except RecursionError:
            raise errors.InvalidArgument(
                f"metadata {k!r} is nested too deeply to store as JSON") from None
        out[str(k)] = v
    return out


def _version(name: str, e: Mapping[str, Any]) -> ModelVersion:
    return ModelVersion(name=name, version=e["version"], checksum=e["sha256"], stage=e["stage"],
                        size_bytes=e["size"], metadata=dict(e.get("metadata", {})),
                        created_at=e["created"], description=e.get("description", ""),
                        tags=dict(e.get("tags", {})), format=e.get("format", "bytes"),
                        stage_changed_at=e.get("stage_at", e["created"]))


class ModelRegistry:
    """Versioned models in one file, with stages and integrity checks.

    >>> registry = ModelRegistry(path)                                  # doctest: +SKIP
    >>> v = registry.save_model("classifier", model_bytes, {"accuracy": "0.95"})  # doctest: +SKIP
    >>> registry.set_stage("classifier", v.version, "Production")       # doctest: +SKIP
    >>> data, info = registry.load_model("classifier")                  # doctest: +SKIP

    Versions count from 1 and start in Development.  Every load verifies the
    SHA-256 of the bytes (a mismatch raises :class:`ChecksumError`).  Saves
    and stage changes are atomic, and fsynced before they return (pass
    ``sync=False`` to leave that to the OS).
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False,
                 sync: bool = True, progress: bool = True,
                 config: DbConfig | None = None) -> None:
        self._db = SynaDB(path, read_only=read_only, config=config)
        self.path = self._db.path
        self._sync = sync
        self.progress = progress
        self._rebuilt: list[str] = []  # what this handle worked around, for verify()

    # -- life ------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    @property
    def db(self) -> SynaDB:
        return self._db

    def __enter__(self) -> "ModelRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModelRegistry({self.path!r})"

    # -- helpers ---------------------------------------------------------
    def _json(self, key: str, check: Callable[[Any], str]) -> dict[str, Any] | None:
        """The JSON record at ``key``, checked by ``check``; None if absent.

        A record that passed its CRC but is not what the registry wrote
        (invalid UTF-8 or JSON, missing fields, another type) raises
        CorruptDatabase naming the key, never a decoding error.
        """
        try:  # text that is not UTF-8 is the engine's CorruptDatabase already
            text = self._db.get_text(key)
        except errors.TypeMismatch as e:
            raise self._corrupt(key, f"not a text record ({e})") from e
        if text is None:
            return None
        return self._parsed(key, text, check)

    def _parsed(self, key: str, text: str, check: Callable[[Any], str],
                where: str = "") -> Any:
        """``text`` (of the record at ``key``) as JSON that passes ``check``,
        or CorruptDatabase naming the key (and ``where`` in it)."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise self._corrupt(key, f"{where}not valid JSON ({describe(e)})") from None
        bad = check(value)
        if bad:
            raise self._corrupt(key, f"{where}{bad}")
        return value

    def _corrupt(self, key: str, why: str) -> errors.CorruptDatabase:
        return errors.CorruptDatabase(f"registry record {key!r} in {self.path!r} is damaged: "
                                      f"{why}")

    def _note(self, message: str) -> None:
        if message not in self._rebuilt:
            self._rebuilt.append(message)
            warn(self.path, message)

    def _put_json(self, key: str, value: Mapping[str, Any]) -> None:
        self._db.put_text(key, json.dumps(value, separators=(",", ":")))

    def _model(self, name: str) -> dict[str, Any] | None:
        key = "reg/" + _esc(_check_model_name(name))
        try:
            return self._json(key, _bad_model)
        except errors.CorruptDatabase as e:
            # The model record holds only its name, creation time and the
            # next version number, and that number can be recomputed: one
            # above every version still here or ever staged (numbers of
            # deleted versions live on in the stage history).
            if not self._db.exists(key):
                raise
            top = self._highest_version(name)
            self._note(f"{key!r} is damaged ({e}); its next version number was "
                       f"recomputed as {top + 1}")
            return {"name": name, "created": None, "next": top + 1}

    def _highest_version(self, name: str) -> int:
        esc = _esc(name)
        top = 0
        for key in self._db.keys(f"reg/{_glob_escape(esc)}/*"):
            part = key[len(esc) + 5:].split("/", 1)[0]
            if part.isdigit():
                top = max(top, int(part))
        try:
            history = self._db.get_history(f"reg/{esc}/stages")
        except (errors.SynaError, UnicodeDecodeError):
            history = []
        for text in history:
            try:
                h = json.loads(text) if isinstance(text, str) else None
            except (ValueError, RecursionError):
                continue
            if isinstance(h, dict) and _int(h.get("version")):
                top = max(top, h["version"])
        return top

    def _entry(self, name: str, version: int) -> dict[str, Any]:
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
            raise errors.InvalidType(f"a version is an int, got {version!r}")
        version = int(version)
        key = f"reg/{_esc(_check_model_name(name))}/{version}"
        e = self._json(key, _bad_entry)
        if e is None:
            if self._model(name) is None:
                raise errors.KeyNotFound(f"no model {name!r} in {self.path!r}")
            raise errors.KeyNotFound(f"model {name!r} has no version {version}")
        if e["version"] != version:
            raise self._corrupt(key, f"it holds the entry of version {e['version']}")
        return e

    def _entries(self, name: str, strict: bool = True) -> list[dict[str, Any]]:
        """Every version's entry, oldest first.  A damaged entry raises
        CorruptDatabase (naming its key) when ``strict``; otherwise it is
        left out and logged (listings and searches go on past it)."""
        model = self._model(name)
        if model is None:
            return []
        esc = _esc(name)
        out = []
        for v in range(1, model["next"]):
            try:
                e = self._json(f"reg/{esc}/{v}", _bad_entry)
            except errors.CorruptDatabase as err:
                if strict:
                    raise
                self._note(f"left out of a listing: {err}")
                continue
            if e is not None:
                out.append(e)
        return out

    def _bar(self, total: int, desc: str):
        if not self.progress or total < (256 << 20):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="B", unit_scale=True, delay=0.5,
                    disable=None, leave=False)

    # -- save ------------------------------------------------------------
    def save_model(self, name: str, model: Any, metadata: Mapping[str, Any] | None = None, *,
                   description: str = "", tags: Mapping[str, Any] | None = None,
                   stage: str = "Development") -> ModelVersion:
        """Store a new version of ``name`` and return it.

        ``model`` is bytes (or any buffer), a path to a file (streamed in
        chunks, so a 1 GB model needs no 1 GB of RAM), a torch module or
        state_dict (saved with ``torch.save``; a module keeps its weights;
        format ``torch``, loaded by :meth:`load_torch`), or a Keras 3 model
        (saved whole as its ``.keras`` zip; format ``keras``, loaded by
        :meth:`load_keras`).  :meth:`load_model` returns the stored bytes
        whatever the format.
        """
        _check_model_name(name)
        meta = _metadata(metadata)
        if tags is not None and not isinstance(tags, Mapping):
            raise errors.InvalidType(f"tags must be a dict, got {type(tags).__name__}")
        tag_map = {str(k): str(v) for k, v in (tags or {}).items()}
        if not isinstance(description, str) and description is not None:
            raise errors.InvalidType(f"a description is a str, got {description!r}")
        stage = canonical_stage(stage)
        fmt, source, size = _source(model)
        esc = _esc(name)
        db = self._db
        digest = hashlib.sha256()
        bar = self._bar(size, f"save {name}")
        try:
            with db.batch(sync=self._sync):  # the commit's fsync makes it durable
                m = self._model(name)
                now = time.time()
                if m is None:
                    m = {"name": name, "created": now, "next": 1}
                elif not _num(m.get("created")):
                    m["created"] = now  # a rebuilt record (see _model)
                version = m["next"]
                n = 0
                for n, piece in enumerate(source, 1):
                    # Hash on a second core while this one checksums and
                    # writes the piece (hashlib and zlib drop the GIL).
                    with _alongside(digest.update, len(piece), piece):
                        db.storage.put_blob_parts(f"reg/{esc}/{version}/{n - 1}", [piece])
                    if bar is not None:
                        bar.update(len(piece))
                entry = {"version": version, "sha256": digest.hexdigest(), "size": size,
                         "chunks": n, "stage": stage, "metadata": meta, "created": now,
                         "description": str(description or ""), "tags": tag_map,
                         "format": fmt, "stage_at": now}
                m["next"] = version + 1
                self._put_json("reg/" + esc, m)
                self._put_json(f"reg/{esc}/{version}", entry)
                self._put_json(f"reg/{esc}/stages", {
                    "version": version, "from": None, "to": stage, "at": now,
                    "user": None, "comment": "created"})
        finally:
            if bar is not None:
                bar.close()
        return _version(name, entry)

    save = save_model

    # -- load ------------------------------------------------------------
    def _pick(self, name: str, version: int | None, stage: str | None) -> dict[str, Any]:
        if version is not None:
            return self._entry(name, version)
        if stage is not None:
            stage = canonical_stage(stage)
            if stage == "Production":
                v = self.get_production(name)
                if v is None:
                    raise errors.KeyNotFound(f"model {name!r} has no Production version")
                return self._entry(name, v.version)
            found = [e for e in self._entries(name) if e["stage"] == stage]
            if not found:
                raise errors.KeyNotFound(f"model {name!r} has no version in {stage}")
            return found[-1]
        entries = self._entries(name)
        if not entries:
            raise errors.KeyNotFound(f"no model {name!r} in {self.path!r}")
        return entries[-1]

    def _views(self, name: str, e: Mapping[str, Any]) -> list[memoryview]:
        """The version's bytes as zero-copy views of the file (not yet hashed)."""
        esc = _esc(name)
        views = []
        for i in range(e["chunks"]):
            # check=False: the SHA-256 below covers every byte, so the
            # record's own CRC would be a second pass for nothing.
            view = self._db.storage.value_view(f"reg/{esc}/{e['version']}/{i}", check=False)
            if view is None:
                raise errors.ChecksumError(
                    f"model {name!r} version {e['version']}: chunk {i} is missing",
                    path=self.path)
            views.append(view)
        return views

    def _check(self, name: str, e: Mapping[str, Any], digest: Any) -> None:
        if digest.hexdigest() != e["sha256"]:
            raise errors.ChecksumError(
                f"model {name!r} version {e['version']}: SHA-256 mismatch (stored "
                f"{e['sha256'][:16]}..., read {digest.hexdigest()[:16]}...); the bytes are "
                "damaged", path=self.path)

    def _pieces(self, name: str, e: Mapping[str, Any]) -> Iterator[memoryview]:
        """The version's bytes piece by piece, SHA-256 checked at the end."""
        digest = hashlib.sha256()
        for view in self._views(name, e):
            digest.update(view)
            yield view
        self._check(name, e, digest)

    def load_model(self, name: str, version: int | None = None, *,
                   stage: str | None = None) -> tuple[bytes, ModelVersion]:
        """``(bytes, ModelVersion)`` of a version (default: the latest), with its
        SHA-256 verified.  Raises ChecksumError if the bytes are damaged."""
        e = self._pick(_check_model_name(name), version, stage)
        views = self._views(name, e)
        digest = hashlib.sha256()
        bar = self._bar(e["size"], f"load {name}")

        def hash_all() -> None:
            for v in views:
                digest.update(v)
                if bar is not None:
                    bar.update(len(v))

        try:
            # Hash on a second core while this one copies: hashlib drops the GIL.
            with _alongside(hash_all, e["size"]):
                data = views[0].tobytes() if len(views) == 1 else b"".join(views)
        finally:
            if bar is not None:
                bar.close()
        self._check(name, e, digest)
        return data, _version(name, e)

    def load(self, name: str, version: int | None = None) -> tuple[bytes, ModelVersion]:
        return self.load_model(name, version)

    def load_to_file(self, name: str, path: str | os.PathLike[str], version: int | None = None,
                     *, stage: str | None = None) -> ModelVersion:
        """Stream a version into a file (never all of it in RAM).  The file is
        written next to ``path`` and renamed into place (durably: see
        :func:`synadb.engine.files.atomic_path`) only once the SHA-256 has
        matched; on any error ``path`` is as it was.

        Raises:
            InvalidPath: ``path`` is a directory, or its folder is missing.
            ChecksumError: the stored bytes are damaged.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise errors.InvalidType(f"path must be a str or os.PathLike, not {path!r}")
        e = self._pick(_check_model_name(name), version, stage)
        bar = self._bar(e["size"], f"load {name}")
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    for view in self._pieces(name, e):  # raises before the rename if damaged
                        f.write(view)
                        if bar is not None:
                            bar.update(len(view))
        finally:
            if bar is not None:
                bar.close()
        return _version(name, e)

    def load_keras(self, name: str, version: int | None = None, *, stage: str | None = None,
                   compile: bool = True, safe_mode: bool = True,
                   custom_objects: Mapping[str, Any] | None = None) -> Any:
        """A version saved from a Keras model, as a working ``keras.Model``.

        The bytes are SHA-256 checked as by :meth:`load_model`, then given to
        ``keras.saving.load_model``.  ``safe_mode`` (on unless you turn it
        off) refuses a ``Lambda`` layer's bytecode, the one part of the
        ``.keras`` format that can run code.  ``custom_objects`` names the
        classes of custom layers, as for Keras.

        Raises:
            InvalidArgument: the version was saved as a torch object, or its
                bytes are not a ``.keras`` zip.
            ChecksumError: the stored bytes are damaged.
        """
        # As for torch: the tensorflow adapter lends the loader
        # (synadb/_convert.py); the registry never imports Keras.
        e = self._pick(_check_model_name(name), version, stage)
        if e.get("format") == "torch":
            raise errors.InvalidArgument(
                f"model {name!r} version {e['version']} was saved from torch; "
                "load it with load_torch")
        from_bytes = _convert.get("keras_load", "ModelRegistry.load_keras")
        data, _ = self.load_model(name, e["version"])
        return from_bytes(data, compile=compile, safe_mode=safe_mode,
                          custom_objects=custom_objects)

    def load_torch(self, name: str, version: int | None = None, *, stage: str | None = None,
                   map_location: Any = "cpu") -> Any:
        """A torch-saved version, loaded with ``weights_only=True``."""
        # The torch adapter lends torch.load (synadb/_convert.py): the
        # registry never imports an integration.
        from_bytes = _convert.get("torch_load", "ModelRegistry.load_torch")
        data, _ = self.load_model(name, version, stage=stage)
        return from_bytes(data, map_location=map_location)

    def verify(self, name: str | None = None, version: int | None = None
               ) -> "bool | RegistryReport":
        """Re-hash a version (or all versions of ``name``) against the stored
        SHA-256: True if they match.

        Without a ``name``: check the whole file and return a
        :class:`RegistryReport` (true when nothing is wrong): the engine's
        ``db.verify()`` report, every registry record that cannot be read and
        every version whose bytes fail their SHA-256.  Changes nothing.
        """
        if name is None:
            if version is not None:
                raise errors.InvalidArgument("verify(version=...) needs the model's name")
            return self._verify_all()
        entries = ([self._entry(name, version)] if version is not None
                   else self._entries(_check_model_name(name)))
        for e in entries:
            if not self._intact(name, e):
                return False
        return True

    def _intact(self, name: str, e: Mapping[str, Any]) -> bool:
        try:
            for _ in self._pieces(name, e):
                pass
        except errors.ChecksumError:
            return False
        return True

    def _verify_all(self) -> RegistryReport:
        db = self._db
        engine = db.verify()
        problems: list[str] = []
        names = []
        for key in db.keys("reg/*"):
            if key.count("/") == 1:
                names.append(_unesc(key[4:]))
        for name in names:
            esc = _esc(name)
            try:
                model = self._json("reg/" + esc, _bad_model)
            except errors.CorruptDatabase as e:
                problems.append(str(e))
                model = {"next": self._highest_version(name) + 1}
            for v in range(1, model["next"]):
                try:
                    entry = self._json(f"reg/{esc}/{v}", _bad_entry)
                except errors.SynaError as e:
                    problems.append(str(e))
                    continue
                if entry is not None and not self._intact(name, entry):
                    problems.append(f"model {name!r} version {v}: its bytes do not match "
                                    "their SHA-256")
            try:
                self._stage_changes(name)
            except errors.SynaError as e:
                problems.append(str(e))
        return RegistryReport(engine=engine, problems=problems, rebuilt=list(self._rebuilt))

    # -- listing ---------------------------------------------------------
    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first (a version whose entry is
        damaged is left out and logged; ``verify()`` lists it)."""
        return [_version(name, e) for e in self._entries(_check_model_name(name), strict=False)]

    def get_version(self, name: str, version: int) -> ModelVersion:
        return _version(name, self._entry(name, version))

    def latest_version(self, name: str) -> ModelVersion | None:
        entries = self._entries(name)
        return _version(name, entries[-1]) if entries else None

    def list_models(self) -> list[str]:
        """Model names, in the order they were first saved."""
        names = []
        for key in self._db.keys("reg/*"):
            if key.count("/") == 1 and self._model(_unesc(key[4:])) is not None:
                names.append(_unesc(key[4:]))
        return [n for n in names if self._entries(n, strict=False)]

    def list(self, name: str | None = None) -> list[Any]:
        """The published wheel's ``list``: versions of ``name``, or all model names."""
        return self.list_versions(name) if name is not None else self.list_models()

    def latest_versions(self) -> dict[str, ModelVersion]:
        """The latest version of every model."""
        out = {}
        for name in self.list_models():
            try:
                v = self.latest_version(name)
            except errors.CorruptDatabase as e:
                self._note(f"left out of latest_versions: {e}")
                continue
            if v is not None:
                out[name] = v
        return out

    def find(self, tags: Mapping[str, Any] | None = None, *, stage: str | None = None,
             metadata: Mapping[str, Any] | None = None) -> list[ModelVersion]:
        """Versions of any model whose tags (and metadata) contain the given
        key-values, optionally in one stage."""
        if tags is not None and not isinstance(tags, Mapping):
            raise errors.InvalidType(f"tags must be a dict such as {{'team': 'vision'}}, "
                                     f"got {tags!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise errors.InvalidType(f"metadata must be a dict, got {metadata!r}")
        want_stage = canonical_stage(stage) if stage is not None else None
        found = []
        for name in self.list_models():
            for e in self._entries(name, strict=False):
                if want_stage is not None and e["stage"] != want_stage:
                    continue
                if tags and any(e.get("tags", {}).get(k) != str(v) for k, v in tags.items()):
                    continue
                if metadata and any(e.get("metadata", {}).get(k) != v
                                    for k, v in metadata.items()):
                    continue
                found.append(_version(name, e))
        return found

    find_by_tag = find

    def stats(self) -> dict[str, Any]:
        """``{"models", "versions", "total_bytes", "by_stage"}``."""
        models = versions = total = 0
        by_stage = {s: 0 for s in STAGES}
        for name in self.list_models():
            entries = self._entries(name, strict=False)
            models += 1
            versions += len(entries)
            for e in entries:
                total += e["size"]
                by_stage[e["stage"]] += 1
        return {"models": models, "versions": versions, "total_bytes": total,
                "by_stage": by_stage}

    # -- stages ----------------------------------------------------------
    def set_stage(self, name: str, version: int, stage: str, *, archive_existing: bool = True,
                  user: str | None = None, comment: str | None = None) -> ModelVersion:
        """Move a version to a stage.  Promoting to Production archives the
        current Production version(s) unless ``archive_existing=False``.  The
        change (and any archiving) is one atomic step, kept in the history."""
        stage = canonical_stage(stage)
        esc = _esc(_check_model_name(name))
        db = self._db
        with db.batch(sync=self._sync):
            e = self._entry(name, version)
            now = time.time()
            changes = []
            if stage == "Production" and archive_existing:
                for other in self._entries(name):
                    if other["version"] != version and other["stage"] == "Production":
                        changes.append((other, "Archived"))
            changes.append((e, stage))
            for entry, to in changes:
                if entry["stage"] == to:
                    continue
                old = entry["stage"]
                entry["stage"], entry["stage_at"] = to, now
                self._put_json(f"reg/{esc}/{entry['version']}", entry)
                self._put_json(f"reg/{esc}/stages", {
                    "version": entry["version"], "from": old, "to": to, "at": now,
                    "user": user, "comment": comment})
        return _version(name, e)

    def promote(self, name: str, version: int, stage: str = "Production", **kwargs: Any
                ) -> ModelVersion:
        return self.set_stage(name, version, stage, **kwargs)

    def get_production(self, name: str) -> ModelVersion | None:
        """The Production version promoted last, or None."""
        prod = [e for e in self._entries(name) if e["stage"] == "Production"]
        if not prod:
            return None
        e = max(prod, key=lambda e: (e.get("stage_at", 0.0), e["version"]))
        return _version(name, e)

    get_production_model = get_production

    def stage_history(self, name: str, version: int | None = None) -> list[StageChange]:
        """Every stage change of ``name`` (or of one version), oldest first."""
        if version is not None and (isinstance(version, bool)
                                    or not isinstance(version, (int, np.integer))):
            raise errors.InvalidType(f"a version is an int, got {version!r}")
        out = []
        for h in self._stage_changes(_check_model_name(name)):
            if version is None or h["version"] == version:
                out.append(StageChange(name, h["version"], h.get("from") or "", h["to"],
                                       h["at"], h.get("user"), h.get("comment")))
        return out

    def _stage_changes(self, name: str) -> list[dict[str, Any]]:
        """The stage-change records of ``name``, checked (CorruptDatabase naming
        the key if one is not what the registry wrote)."""
        key = f"reg/{_esc(name)}/stages"
        return [self._parsed(key, text, _bad_change, f"record {i}: ")
                for i, text in enumerate(self._db.get_history(key))
                if isinstance(text, str)]  # another type: not ours (and never was)

    def rollback(self, name: str, *, user: str | None = None,
                 comment: str | None = "rollback") -> ModelVersion:
        """Make the previous Production version Production again (archiving
        the current one).  Raises KeyNotFound if there is none to go back to."""
        current = self.get_production(name)
        alive = {e["version"] for e in self._entries(name)}
        previous = None
        for change in reversed(self.stage_history(name)):
            if change.to_stage != "Production" or change.version not in alive:
                continue
            if current is not None and change.version == current.version:
                continue
            previous = change.version
            break
        if previous is None:
            raise errors.KeyNotFound(f"model {name!r} has no earlier Production version "
                                     "to roll back to")
        return self.set_stage(name, previous, "Production", user=user, comment=comment)

    # -- tags and descriptions ------------------------------------------
    def _update(self, name: str, version: int, fn) -> ModelVersion:
        esc = _esc(_check_model_name(name))
        with self._db.batch(sync=self._sync):
            e = self._entry(name, version)
            fn(e)
            self._put_json(f"reg/{esc}/{e['version']}", e)
        return _version(name, e)

    def set_tag(self, name: str, version: int, key: str, value: Any) -> ModelVersion:
        return self._update(name, version,
                            lambda e: e.setdefault("tags", {}).__setitem__(str(key), str(value)))

    def delete_tag(self, name: str, version: int, key: str) -> ModelVersion:
        return self._update(name, version, lambda e: e.setdefault("tags", {}).pop(str(key), None))

    def set_description(self, name: str, version: int, description: str) -> ModelVersion:
        return self._update(name, version,
                            lambda e: e.__setitem__("description", str(description)))

    # -- delete and compare ---------------------------------------------
    def delete(self, name: str, version: int | None = None) -> int:
        """Delete one version, or the whole model.  Returns versions deleted.
        The numbers of deleted versions are never reused."""
        esc = _esc(_check_model_name(name))
        db = self._db
        with db.batch(sync=self._sync):
            entries = ([self._entry(name, version)] if version is not None
                       else self._entries(name))
            if version is None and not entries:
                raise errors.KeyNotFound(f"no model {name!r} in {self.path!r}")
            for e in entries:
                for i in range(e["chunks"]):
                    db.delete(f"reg/{esc}/{e['version']}/{i}")
                db.delete(f"reg/{esc}/{e['version']}")
            if version is None:
                # The model's record (its next version number) stays, so a
                # model saved again under this name never reuses a number.
                db.delete(f"reg/{esc}/stages")
        return len(entries)

    delete_model = delete

    def compare(self, name: str, v1: int, v2: int) -> dict[str, Any]:
        """Two versions side by side: size, checksum, stage, and metadata and
        tags with what changed."""
        a, b = self.get_version(name, v1), self.get_version(name, v2)
        keys = sorted(set(a.metadata) | set(b.metadata))
        return {
            "name": name, "versions": (v1, v2),
            "size_bytes": (a.size_bytes, b.size_bytes),
            "size_delta": b.size_bytes - a.size_bytes,
            "same_bytes": a.checksum == b.checksum,
            "checksum": (a.checksum, b.checksum), "stage": (a.stage, b.stage),
            "created_at": (a.created_at, b.created_at),
            "metadata": {k: (a.metadata.get(k), b.metadata.get(k)) for k in keys},
            "metadata_changed": [k for k in keys if a.metadata.get(k) != b.metadata.get(k)],
            "tags": {k: (a.tags.get(k), b.tags.get(k)) for k in sorted(set(a.tags) | set(b.tags))},
        }


@contextmanager
def _alongside(fn: Any, size: int, *args: Any) -> Iterator[None]:
    """Run ``fn(*args)`` in a thread while the block runs (inline if small)."""
    if size < (8 << 20):  # a thread's start and join cost more than it saves
        fn(*args)
        yield
        return
    failed: list[BaseException] = []

    def work() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # surfaced below, in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=work, name="synadb-sha256", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failed:
        raise failed[0]


def _source(model: Any) -> tuple[str, Iterator[Any], int]:
    """(format, iterator of buffers of at most CHUNK bytes, total size)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        view = memoryview(model).cast("B") if isinstance(model, memoryview) else memoryview(model)
        size = view.nbytes
        return "bytes", (view[i:i + CHUNK] for i in range(0, max(size, 1), CHUNK)), size
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise errors.InvalidArgument(
                f"model {path!r} is a str but not a file; pass bytes for the model's content")
        size = os.path.getsize(path)
        return "file", _read_chunks(path), size
    if _is_keras_model(model):
        # A Keras model means the caller has Keras loaded; the tensorflow
        # adapter lends the .keras writer, the registry never imports it.
        to_bytes = _convert.get("keras_save", "saving a Keras model")
        data = memoryview(to_bytes(model))
        return "keras", (data[i:i + CHUNK] for i in range(0, max(len(data), 1), CHUNK)), len(data)
    if any((c.__module__ or "").partition(".")[0] == "torch" for c in type(model).__mro__) or (
            isinstance(model, Mapping) and model and all(
            (type(v).__module__ or "").startswith("torch") for v in model.values())):
        # A torch object means the caller has torch loaded; the adapter lends
        # torch.save (synadb/_convert.py), the registry never imports it.
        to_bytes = _convert.get("torch_save", "saving a torch model")
        data = memoryview(to_bytes(model))
        return "torch", (data[i:i + CHUNK] for i in range(0, max(len(data), 1), CHUNK)), len(data)
    raise errors.InvalidArgument(
        f"cannot save a {type(model).__name__} as a model: pass bytes, a file path, a "
        "torch module/state_dict or a Keras model")


def _is_keras_model(model: Any) -> bool:
    """Whether ``model`` is a Keras 3 ``Model`` (Sequential, functional or a
    subclass defined anywhere), told by its classes' module, never by
    importing Keras.  A Keras model on the torch backend is also a
    ``torch.nn.Module``: it is saved as Keras, whole."""
    for cls in type(model).__mro__:
        if cls.__name__ == "Model" and (cls.__module__ or "").partition(".")[0] == "keras":
            return True
    return False


def _read_chunks(path: str) -> Iterator[bytes]:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise_storage(e, "read the model file", path)
    with f:
        first = True
        while True:
            try:
                piece = f.read(CHUNK)
            except OSError as e:
                raise_storage(e, "read the model file", path)
            if not piece and not first:
                return
            first = False
            yield piece
            if len(piece) < CHUNK:
                return

