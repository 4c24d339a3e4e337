"""Studio's web server: a JSON API under ``/api/`` and a one-page front end.

Everything the page needs is served from ``static/`` in this package (no CDN,
so Studio works on an air-gapped machine).  Only names listed in that folder
when the app starts are served: a URL can never reach another file, whatever
``..`` or percent-encoding it carries.

Reads go through read-only handles, which see what a training process
appends while Studio runs.  Writes (``--allow-writes``) open a writable
handle for the one change and close it again: a writer holds the file's
write lease while open, and Studio must not keep a training process waiting
for it.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .. import errors
from ..db import SynaDB
from ..registry import ModelRegistry
from ..tracking import ExperimentTracker, check_artifact_name

STATIC_DIR = Path(__file__).resolve().parent / "static"
_MIME = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".png": "image/png",
         ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8",
         ".LICENSE": "text/plain; charset=utf-8", ".ico": "image/x-icon"}
_VS_CONFIG = "__vs__/config"
MAX_POINTS = 20_000      # points per curve sent to the page; longer ones are thinned
MAX_KEYS_PAGE = 1000     # keys per page of the keys explorer
MAX_HEX_BYTES = 4096     # bytes shown in the hex view
MAX_TEXT_CHARS = 20_000  # characters of a text value shown
MAX_PCA_POINTS = 5000    # vectors projected at most (evenly spaced sample)
RECENT_RUNS = 8          # runs (and models) the overview leads with
MAX_SERIES = 400         # (run, metric) curves one request may ask for
SERIES_POINTS = 1500     # points per curve in a workspace panel (W&B samples 1500 too)
MAX_PLOT_ROWS = 10_000   # rows of a plot's table sent to the page
MAX_CATEGORIES = 30      # a metadata field with more distinct values is not a colour
# Artifacts the page may show inline.  SVG only as an <img> (no script runs
# there), and any artifact fetched directly gets a sandbox CSP.
_INLINE_MIME = {"image/png", "image/svg+xml", "image/jpeg", "image/gif", "text/plain"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; "
                                "style-src 'self' 'unsafe-inline'; object-src 'none'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
}


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


class _SecurityHeaders:
    """Adds :data:`_SECURITY_HEADERS` to every response that lacks them.

    ``frame_ancestors`` lists the origins that may show Studio in a frame
    (a notebook on this machine, for :func:`synadb.studio.launch_studio`);
    by default no page may.
    """

    def __init__(self, app: Any, frame_ancestors: list[str] | None = None) -> None:
        self.app = app
        self.headers = dict(_SECURITY_HEADERS)
        if frame_ancestors:
            del self.headers["X-Frame-Options"]  # it cannot list origins; CSP does
            self.headers["Content-Security-Policy"] = self.headers[
                "Content-Security-Policy"].replace(
                "frame-ancestors 'none'", "frame-ancestors " + " ".join(frame_ancestors))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                for k, v in self.headers.items():
                    if k.lower().encode() not in have:
                        headers.append((k.lower().encode(), v.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=_json_default, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return [_finite(x) for x in obj.tolist()]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return _finite(float(obj))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<{len(obj)} bytes>"
    return str(obj)


def _finite(x: Any) -> Any:
    """JSON has no NaN or infinity: send them as strings the page shows."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _thin(n: int, limit: int = MAX_POINTS) -> np.ndarray | None:
    """Indices that keep at most ``limit`` points, first and last included."""
    if n <= limit:
        return None
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def hexdump(data: bytes, limit: int = MAX_HEX_BYTES) -> list[str]:
    """``offset  hex bytes  ascii`` lines, 16 bytes each, of the first ``limit`` bytes."""
    lines = []
    for off in range(0, min(len(data), limit), 16):
        chunk = data[off:off + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {hexes:<47}  {text}")
    return lines


def _list_param(request: Request, name: str) -> list[str]:
    raw = request.query_params.get(name, "")
    return [p for p in raw.split(",") if p]


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise HTTPError(400, f"missing query parameter {name!r}")
    return value


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise HTTPError(400, f"{name} must be in {lo}..{hi}, got {value}")
    return value


class Studio:
    """The read-only handles on one file, shared by every request.

    One lock serialises requests: the handles are cheap to use but not all
    of them promise thread safety, and Starlette runs sync endpoints on a
    thread pool.
    """

    def __init__(self, path: str | os.PathLike[str], *, allow_writes: bool = False) -> None:
        self.path = os.fspath(path)
        self.allow_writes = allow_writes
        self.lock = threading.RLock()
        self.db = SynaDB(self.path, read_only=True)
        self.tracker = ExperimentTracker(self.path, read_only=True)
        self.registry = ModelRegistry(self.path, read_only=True, progress=False)
        self._vectors: Any = None
        self._verified: dict[tuple[str, int], bool] = {}
        self._counts: tuple[int, dict[str, int], dict[str, int]] | None = None

    def close(self) -> None:
        with self.lock:
            if self._vectors is not None:
                self._vectors.close()
                self._vectors = None
            self.registry.close()
            self.tracker.close()
            self.db.close()

    # -- helpers -------------------------------------------------------
    def vectors(self) -> Any:
        """The file's VectorStore, opened on first use (None if it has none)."""
        if self._vectors is None:
            if not self.db.exists(_VS_CONFIG):
                return None
            from ..vectors.store import VectorStore

            # Its public reads take in other processes' inserts themselves.
            self._vectors = VectorStore(self.path, read_only=True, progress=False)
        return self._vectors

    def key_types(self, keys: list[str]) -> list[str]:
        """Each key's latest value type, from the index (no value is read)."""
        return ["deleted" if t is None else t for t in self.db.types(keys)]

    def writer(self, kind: Callable[..., Any]) -> Any:
        if not self.allow_writes:
            raise HTTPError(403, "Studio is read-only; start it with --allow-writes to change "
                                 "the file")
        return kind(self.path)


def _namespace(key: str) -> str:
    if key.startswith(("run/", "exp/", "trk/")):
        return "experiments"
    if key.startswith("reg/"):
        return "models"
    if key.startswith(("v/", "__vs__/")):
        return "vectors"
    return "other"


def _render_value(value: Any, typ: str) -> dict[str, Any]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"type": "bytes", "size": len(data), "hex": hexdump(data),
                "truncated": len(data) > MAX_HEX_BYTES}
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        return {"type": "vector", "size": int(flat.size),
                "values": [_finite(float(x)) for x in flat[:1024].tolist()],
                "truncated": flat.size > 1024}
    if isinstance(value, str):
        return {"type": "text", "size": len(value), "value": value[:MAX_TEXT_CHARS],
                "truncated": len(value) > MAX_TEXT_CHARS}
    if isinstance(value, float):
        return {"type": typ, "value": _finite(value)}
    return {"type": typ, "value": value}


# ------------------------------------------------------------------ routes
def _overview(st: Studio, request: Request) -> Any:
    info = st.db.info()
    # Counting walks every key: redo it only when the file has grown (the
    # page asks again each time a training process appends).
    cached = st._counts
    if cached is not None and cached[0] == info["used_bytes"]:
        by_type, by_ns = cached[1], cached[2]
    else:
        keys = st.db.keys()
        by_type = {}
        by_ns = {}
        for k, t in zip(keys, st.key_types(keys)):
            by_type[t] = by_type.get(t, 0) + 1
            ns = _namespace(k)
            by_ns[ns] = by_ns.get(ns, 0) + 1
        st._counts = (info["used_bytes"], by_type, by_ns)
    vs = st.vectors()
    runs = st.tracker.list_runs()
    runs.sort(key=lambda r: r.start_time or 0, reverse=True)
    recent = [{"id": r.id, "name": r.name, "experiment": r.experiment,
               "status": r.status.value, "start_time": r.start_time, "end_time": r.end_time,
               "metrics": _clean(dict([kv for kv in r.metrics.items()
                                       if not kv[0].startswith("system/")][:4]))}
              for r in runs[:RECENT_RUNS]]
    models = _models(st, request)["models"]
    models.sort(key=lambda m: m["updated"] or 0, reverse=True)
    stores = [] if vs is None else [{"name": "default", "count": len(vs),
                                     "dimensions": vs.dimensions, "metric": vs.metric}]
    return {"info": info, "by_type": by_type, "by_namespace": by_ns,
            "experiments": len(st.tracker.list_experiments()),
            "runs": len(runs), "recent_runs": recent,
            "models": len(models), "recent_models": models[:RECENT_RUNS],
            "vectors": 0 if vs is None else len(vs), "vector_stores": stores,
            "allow_writes": st.allow_writes}


def _stamp(st: Studio, request: Request) -> Any:
    """Changes whenever anything is appended: the page polls this once a
    second and refetches only when it moved."""
    info = st.db.info()
    return {"end": info["used_bytes"], "size": info["size_bytes"]}


def _verify(st: Studio, request: Request) -> Any:
    report = st.db.verify()
    return {"ok": report.ok, "records": report.records, "file_size": report.file_size,
            "torn_tail_bytes": report.torn_tail_bytes, "text": str(report),
            "damaged": [{"offset": d.offset, "length": d.length, "reason": d.reason,
                         "key": d.key} for d in report.damaged[:200]]}


def _keys(st: Studio, request: Request) -> Any:
    pattern = request.query_params.get("pattern") or None
    want = request.query_params.get("type") or None
    offset = _int_param(request, "offset", 0, 0, 1 << 40)
    limit = _int_param(request, "limit", 200, 1, MAX_KEYS_PAGE)
    keys = st.db.keys(pattern)
    types = st.key_types(keys)
    rows = [(k, t) for k, t in zip(keys, types) if want is None or t == want]
    page = rows[offset:offset + limit]
    return {"total": len(rows), "offset": offset,
            "keys": [{"key": k, "type": t} for k, t in page]}


def _key(st: Studio, request: Request) -> Any:
    key = _param(request, "key")
    if not st.db.exists(key):
        raise HTTPError(404, f"no key {key!r}")
    (typ,) = st.key_types([key])
    out: dict[str, Any] = {"key": key, "type": typ}
    out["latest"] = _render_value(st.db.get(key), typ)
    try:
        hist = st.db.get_history_tensor(key)
    except errors.TypeMismatch:
        hist = None
    if hist is not None:
        keep = _thin(len(hist))
        x = np.arange(len(hist)) if keep is None else keep
        y = hist if keep is None else hist[keep]
        out["history"] = {"numeric": True, "length": int(len(hist)),
                          "x": x.tolist(), "y": [_finite(v) for v in y.tolist()]}
    else:
        values = st.db.get_history(key)
        out["history"] = {"numeric": False, "length": len(values),
                          "last": [_render_value(v, typ) for v in values[-50:]]}
    return out


def _run_row(run: Any) -> dict[str, Any]:
    return _clean({"id": run.id, "name": run.name, "experiment": run.experiment,
                   "status": run.status.value, "tags": run.tags, "tag_values": run.tag_values,
                   "params": run.params, "metrics": run.metrics,
                   "start_time": run.start_time, "end_time": run.end_time,
                   "artifacts": run.artifacts, "error": run.error})


def _experiments(st: Studio, request: Request) -> Any:
    names = st.tracker.list_experiments()
    return {"experiments": [{"name": n, "runs": st.tracker.experiment_info(n)["runs"]}
                            for n in names]}


def _runs(st: Studio, request: Request) -> Any:
    exp = request.query_params.get("experiment") or None
    runs = [_run_row(r) for r in st.tracker.list_runs(exp)]
    params = sorted({p for r in runs for p in r["params"]})
    metrics = sorted({m for r in runs for m in r["metrics"]})
    return {"runs": runs, "params": params, "metrics": metrics}


def _run(st: Studio, request: Request) -> Any:
    run_id = _param(request, "id")
    try:
        run = st.tracker.get_run(run_id)
    except (errors.KeyNotFound, errors.InvalidArgument):
        raise HTTPError(404, f"no run {run_id!r}") from None
    row = _run_row(run)
    row["artifact_info"] = {}
    for name in run.artifacts:
        try:
            info = _artifact_type(name, st.tracker.artifact_info(run.id, name))
        except errors.KeyNotFound:
            continue
        row["artifact_info"][name] = _clean(
            {"type": info.get("type"), "size": info.get("size"), "mime": info.get("mime"),
             "time": info.get("time"),
             **{k: info[k] for k in ("caption", "step") if info.get(k) is not None}})
    row["metric_names"] = list(run.metric_names)
    row["models"] = _models_of_run(st, run.id)
    return row


def _metrics(st: Studio, request: Request) -> Any:
    metric = _param(request, "metric")
    out = {}
    for run_id in _list_param(request, "runs")[:50]:
        try:
            h = st.tracker.get_metric_history(run_id, metric)
        except (errors.KeyNotFound, errors.InvalidArgument):
            continue
        out[run_id] = _curve(h)
    return {"metric": metric, "series": out}


def _curve(h: dict[str, np.ndarray], limit: int = MAX_POINTS) -> dict[str, Any]:
    """A metric history for the page: steps, values and unix times (thinned
    to ``limit`` points), and the min, max and last of all of it."""
    n = len(h["step"])
    keep = _thin(n, limit)
    steps, values, times = (h["step"], h["value"], h["timestamp"]) if keep is None else (
        h["step"][keep], h["value"][keep], h["timestamp"][keep])
    v = h["value"]
    fin = v[np.isfinite(v)] if n else v
    return {"step": steps.tolist(), "value": [_finite(x) for x in values.tolist()],
            "time": [round(float(t), 6) for t in times.tolist()], "length": int(n),
            "min": _finite(float(fin.min())) if len(fin) else None,
            "max": _finite(float(fin.max())) if len(fin) else None,
            "last": _finite(float(v[-1])) if n else None}


def _series(st: Studio, request: Request) -> Any:
    """Every curve of the given runs (or only the given metrics):
    ``{"series": {metric: {run id: curve}}}``, at most :data:`MAX_SERIES`."""
    ids = _list_param(request, "runs")[:50]
    want = set(_list_param(request, "metrics"))
    points = _int_param(request, "points", SERIES_POINTS, 2, MAX_POINTS)
    out: dict[str, dict[str, Any]] = {}
    n = 0
    for run_id in ids:
        try:
            names = st.tracker.get_run(run_id).metric_names
        except (errors.KeyNotFound, errors.InvalidArgument):
            continue
        for m in names:
            if want and m not in want:
                continue
            if n >= MAX_SERIES:
                break
            try:
                h = st.tracker.get_metric_history(run_id, m)
            except (errors.KeyNotFound, errors.InvalidArgument):
                continue
            out.setdefault(m, {})[run_id] = _curve(h, points)
            n += 1
    return {"series": out, "truncated": n >= MAX_SERIES}


def _compare(st: Studio, request: Request) -> Any:
    ids = _list_param(request, "runs")[:20]
    try:
        out = st.tracker.compare_runs(ids)
    except (errors.KeyNotFound, errors.InvalidArgument) as e:
        raise HTTPError(404, str(e)) from None
    # min, max and last of each metric's whole history, per run
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for m in out["metrics"]:
        for rid in out["runs"]:
            try:
                c = _curve(st.tracker.get_metric_history(rid, m))
            except (errors.KeyNotFound, errors.InvalidArgument):
                c = {"min": None, "max": None, "last": None, "length": 0}
            summary.setdefault(m, {})[rid] = {k: c[k] for k in ("min", "max", "last", "length")}
    out["summary"] = summary
    return _clean(out)


# A file logged by path (mlflow.log_artifact, and every artifact the real
# mlflow logs through the synadb:// plugin: figures, images, dicts, text) is
# stored untyped; its extension says how to show it.
_EXT_KINDS = {".png": ("image", "image/png"), ".jpg": ("image", "image/jpeg"),
              ".jpeg": ("image", "image/jpeg"), ".gif": ("image", "image/gif"),
              ".svg": ("image", "image/svg+xml"), ".json": ("json", "application/json"),
              ".yaml": ("yaml", "application/x-yaml"), ".yml": ("yaml", "application/x-yaml"),
              **{e: ("text", "text/plain") for e in (".txt", ".log", ".md", ".csv", ".tsv",
                                                      ".py", ".cfg", ".ini", ".toml")}}


def _artifact_type(name: str, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with type and mime guessed from the name's extension when
    the artifact was stored as untyped bytes."""
    if info.get("type") in ("file", "bytes") and \
            (info.get("mime") or "application/octet-stream") == "application/octet-stream":
        guess = _EXT_KINDS.get(os.path.splitext(name)[1].lower())
        if guess is not None:
            return {**info, "type": guess[0], "mime": guess[1]}
    return info


def _artifact_lookup(st: Studio, request: Request) -> tuple[str, str, dict[str, Any]]:
    run_id = _param(request, "run")
    name = _param(request, "name")
    try:
        check_artifact_name(name)
    except errors.InvalidArgument as e:
        raise HTTPError(400, str(e)) from None
    try:
        info = st.tracker.artifact_info(run_id, name)
    except (errors.KeyNotFound, errors.InvalidArgument):
        raise HTTPError(404, f"run {run_id!r} has no artifact {name!r}") from None
    return run_id, name, _artifact_type(name, info)


def _artifact_raw(st: Studio, request: Request) -> Response:
    run_id, name, info = _artifact_lookup(st, request)
    data = st.tracker.get_artifact(run_id, name)
    mime = str(info.get("mime") or "application/octet-stream")
    inline = mime in _INLINE_MIME
    # The file name in the header is the last path part, ASCII only: the
    # header must not carry quotes or newlines from a name.
    fname = "".join(c if c.isalnum() or c in "._-" else "_" for c in name.rsplit("/", 1)[-1])
    headers = {"Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
                                          "style-src 'unsafe-inline'",
               "Content-Disposition": f'{"inline" if inline else "attachment"}; '
                                      f'filename="{fname or "artifact"}"',
               "Cache-Control": "no-store"}
    return Response(data, media_type=mime if inline else "application/octet-stream",
                    headers=headers)


def _artifact_view(st: Studio, request: Request) -> Any:
    """The artifact decoded for the page: a table, text, JSON, an image
    (by URL) or, for anything else, its size and a hex view."""
    run_id, name, info = _artifact_lookup(st, request)
    kind = info.get("type")
    mime = info.get("mime") or ""
    out: dict[str, Any] = {"name": name, "type": kind, "mime": mime, "size": info.get("size")}
    if kind in ("image", "figure") and mime.startswith("image/") and mime in _INLINE_MIME:
        out["view"] = "image"
        return out
    raw = st.tracker.get_artifact(run_id, name)
    if kind in ("histogram", "plot"):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if kind == "histogram" and isinstance(body, dict) and _is_histogram(body):
            out.update(view="histogram", bins=_clean(body["bins"]), counts=_clean(body["values"]))
            return out
        if kind == "plot" and isinstance(body, dict) and isinstance(body.get("table"), dict):
            table = body["table"]
            data = table.get("data", [])
            out.update(view="plot", plot=body.get("plot"), x=body.get("x"), y=body.get("y"),
                       title=body.get("title") or "", columns=table.get("columns", []),
                       data=_clean(data[:MAX_PLOT_ROWS]), rows=len(data),
                       extra=_clean({k: v for k, v in body.items()
                                     if k not in ("plot", "x", "y", "title", "table")}))
            return out
        kind = "json"  # not the shape promised: show it as JSON
    if kind == "table":
        table = json.loads(raw)
        out.update(view="table", columns=table.get("columns", []),
                   data=_clean(table.get("data", [])[:2000]),
                   rows=len(table.get("data", [])))
    elif kind in ("text", "yaml") or mime.startswith("text/plain"):
        text = raw.decode("utf-8", "replace")
        out.update(view="text", text=text[:MAX_TEXT_CHARS],
                   truncated=len(text) > MAX_TEXT_CHARS)
    elif kind == "json":
        try:
            text = json.dumps(json.loads(raw), indent=2)
        except ValueError:
            text = raw.decode("utf-8", "replace")
        out.update(view="text", text=text[:MAX_TEXT_CHARS],
                   truncated=len(text) > MAX_TEXT_CHARS)
    elif kind == "numpy":
        import io

        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
            out.update(view="text", text=f"array shape={arr.shape} dtype={arr.dtype}\n"
                                         + np.array2string(arr, threshold=200))
        except ValueError:
            out.update(view="hex", hex=hexdump(raw))
    else:
        out.update(view="hex", hex=hexdump(raw), truncated=len(raw) > MAX_HEX_BYTES)
    return out


# Where a model version says which run made it: the MLflow shim and the
# synadb:// registry plugin record ``run_id`` in its metadata; loggers and
# users may use the other names, in metadata or tags.
_RUN_FIELDS = ("run_id", "source_run_id", "source_run", "synadb.run_id", "mlflow.source.run_id",
               "run")


def _source_run(st: Studio, version: Any) -> str | None:
    """The id of the run a model version came from, if it names one that
    this file holds."""
    for where in (version.metadata, version.tags):
        for field in _RUN_FIELDS:
            rid = where.get(field)
            if isinstance(rid, str) and rid and _run_exists(st, rid):
                return rid
    return None


def _run_exists(st: Studio, run_id: str) -> bool:
    try:
        st.tracker.get_run(run_id)
    except (errors.KeyNotFound, errors.InvalidArgument, errors.InvalidKey):
        return False
    return True


def _models_of_run(st: Studio, run_id: str) -> list[dict[str, Any]]:
    """Model versions whose source is ``run_id``."""
    out = []
    reg = st.registry
    for name in reg.list_models():
        for v in reg.list_versions(name):
            if any(where.get(f) == run_id for where in (v.metadata, v.tags)
                   for f in _RUN_FIELDS):
                out.append({"name": name, "version": v.version, "stage": v.stage})
    return out


def _is_histogram(body: dict[str, Any]) -> bool:
    bins, values = body.get("bins"), body.get("values")
    return (isinstance(bins, list) and isinstance(values, list) and len(bins) == len(values) + 1
            and all(isinstance(x, (int, float)) for x in bins + values))


def _models(st: Studio, request: Request) -> Any:
    out = []
    reg = st.registry
    for name in reg.list_models():
        versions = reg.list_versions(name)
        prod = reg.get_production(name)
        latest = versions[-1] if versions else None
        rid = None if latest is None else _source_run(st, latest)
        out.append({"name": name, "versions": len(versions),
                    "latest": None if latest is None else latest.version,
                    "production": None if prod is None else prod.version,
                    "stages": dict(Counter(v.stage for v in versions)),
                    "updated": None if latest is None else latest.created_at,
                    "latest_run": rid,
                    "latest_run_name": None if rid is None else st.tracker.get_run(rid).name})
    return {"models": out, "stats": reg.stats()}


def _model(st: Studio, request: Request) -> Any:
    name = _param(request, "name")
    reg = st.registry
    try:
        versions = reg.list_versions(name)
    except (errors.KeyNotFound, errors.InvalidArgument):
        raise HTTPError(404, f"no model {name!r}") from None
    if not versions:
        raise HTTPError(404, f"no model {name!r}")
    rows = []
    for v in versions:
        d = _clean(v.to_dict())
        d["verified"] = st._verified.get((name, v.version))
        rid = _source_run(st, v)
        d["run_id"] = rid
        d["run_name"] = None if rid is None else st.tracker.get_run(rid).name
        rows.append(d)
    history = [{"version": h.version, "from": h.from_stage, "to": h.to_stage, "at": h.at,
                "user": h.user, "comment": h.comment} for h in reg.stage_history(name)]
    return {"name": name, "versions": rows, "stage_history": history}


def _model_verify(st: Studio, request: Request) -> Any:
    """Re-hash every version of a model (reading is all it does)."""
    name = _param(request, "name")
    try:
        versions = st.registry.list_versions(name)
    except (errors.KeyNotFound, errors.InvalidArgument):
        raise HTTPError(404, f"no model {name!r}") from None
    out = {}
    for v in versions:
        try:
            ok = st.registry.verify(name, v.version)
        except errors.SynaError:
            ok = False
        st._verified[(name, v.version)] = ok
        out[str(v.version)] = ok
    return {"name": name, "verified": out}


def _vectors(st: Studio, request: Request) -> Any:
    vs = st.vectors()
    if vs is None:
        return {"present": False}
    keys = vs.keys()
    seen: dict[str, set[Any]] = {}
    free: set[str] = set()
    sample = _sample(keys, 1000)
    for k in sample:
        for f, v in (vs.get_metadata(k) or {}).items():
            f = str(f)
            vals = seen.setdefault(f, set())
            if isinstance(v, (str, bool, int)) and not isinstance(v, float):
                vals.add(v)
            elif v is not None:
                free.add(f)  # floats, lists and dicts are no categories
            if len(vals) > MAX_CATEGORIES:
                free.add(f)
    # A field is a category when few distinct values repeat: free text
    # (titles, chunks) and ids have about one value per vector.
    categorical = [f for f, vals in seen.items() if f not in free and vals
                   and len(vals) <= max(2, len(sample) // 2)]
    return {"present": True, "count": len(keys), "dimensions": vs.dimensions,
            "metric": vs.metric, "fields": categorical, "all_fields": list(seen),
            "sample_keys": keys[:20]}


def _sample(keys: list[str], limit: int) -> list[str]:
    if len(keys) <= limit:
        return keys
    idx = np.linspace(0, len(keys) - 1, limit).round().astype(np.int64)
    return [keys[i] for i in np.unique(idx)]


def pca(mat: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows projected on the ``dims`` leading principal components, and the
    share of variance each explains."""
    x = mat.astype(np.float64) - mat.mean(axis=0, dtype=np.float64)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(dims, vt.shape[0])
    proj = x @ vt[:k].T
    if k < dims:  # fewer points or dimensions than asked: pad with zeros
        proj = np.hstack([proj, np.zeros((len(proj), dims - k))])
    var = s ** 2
    share = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
    return proj, share


def _projection(st: Studio, request: Request) -> Any:
    vs = st.vectors()
    if vs is None:
        raise HTTPError(404, "this file holds no vector store")
    dims = _int_param(request, "dims", 2, 2, 3)
    limit = _int_param(request, "limit", MAX_PCA_POINTS, 1, MAX_PCA_POINTS)
    color = request.query_params.get("color") or None
    keys, rows = [], []
    # Keys the page must see on the map (a query and its neighbours), even
    # when the sample leaves them out.
    include = _list_param(request, "include")[:200]
    picked = _sample(vs.keys(), limit)
    have = set(picked)
    for k in picked + [k for k in include if k not in have]:
        v = vs.get(k)
        if v is not None:
            keys.append(k)
            rows.append(v)
    if not rows:
        return {"keys": [], "points": [], "colors": [], "explained": []}
    proj, share = pca(np.stack(rows), dims)
    colors: list[Any] = []
    if color:
        for k in keys:
            meta = vs.get_metadata(k) or {}
            c = meta.get(color)
            colors.append(c if isinstance(c, (int, float, str, bool)) or c is None else str(c))
    return _clean({"keys": keys, "points": np.round(proj, 6).tolist(), "colors": colors,
                   "color": color, "explained": share.tolist(), "total": len(vs)})


def _neighbors(st: Studio, request: Request) -> Any:
    vs = st.vectors()
    if vs is None:
        raise HTTPError(404, "this file holds no vector store")
    key = _param(request, "key")
    k = _int_param(request, "k", 10, 1, 100)
    vec = vs.get(key)
    if vec is None:
        raise HTTPError(404, f"no vector {key!r}")
    hits = [h for h in vs.search(vec, k=k + 1) if h.key != key][:k]
    return _clean({"key": key, "metadata": vs.get_metadata(key),
                   "neighbors": [{"key": h.key, "score": float(h.score),
                                  "metadata": h.metadata} for h in hits]})


# ------------------------------------------------------------------ writes
def _delete_run(st: Studio, request: Request, body: dict[str, Any]) -> Any:
    run_id = body.get("id")
    if not isinstance(run_id, str) or not run_id:
        raise HTTPError(400, "the body needs the run's id")
    tracker = st.writer(ExperimentTracker)
    try:
        tracker.delete_run(run_id)
    except errors.KeyNotFound:
        raise HTTPError(404, f"no run {run_id!r}") from None
    finally:
        tracker.close()
    return {"deleted": run_id}


def _set_stage(st: Studio, request: Request, body: dict[str, Any]) -> Any:
    name, version, stage = body.get("name"), body.get("version"), body.get("stage")
    if not isinstance(name, str) or not isinstance(version, int) or not isinstance(stage, str):
        raise HTTPError(400, "the body needs name (str), version (int) and stage (str)")
    reg = st.writer(ModelRegistry)
    try:
        v = reg.set_stage(name, version, stage, user="studio")
    except errors.KeyNotFound:
        raise HTTPError(404, f"no version {version} of {name!r}") from None
    finally:
        reg.close()
    return {"name": name, "version": v.version, "stage": v.stage}


# ------------------------------------------------------------------ app
def create_app(path: str | os.PathLike[str], *, allow_writes: bool = False,
               allowed_hosts: list[str] | None = None,
               frame_ancestors: list[str] | None = None) -> Starlette:
    """The Studio ASGI app over the database at ``path``.

    Args:
        path: an existing synadb file.
        allow_writes: accept the POST endpoints that change the file.
        allowed_hosts: ``Host`` header values accepted (default: loopback
            names only, which stops DNS-rebinding pages from reading the file).
        frame_ancestors: origins that may show Studio in a frame (CSP
            ``frame-ancestors`` sources; default: none may).

    Raises:
        DatabaseNotFound: the file does not exist.
    """
    st = Studio(path, allow_writes=allow_writes)
    static = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}

    def read(fn: Callable[[Studio, Request], Any]) -> Callable[[Request], Any]:
        def endpoint(request: Request) -> Response:
            try:
                with st.lock:
                    result = fn(st, request)
            except HTTPError as e:
                return _json({"error": e.message}, e.status)
            except errors.SynaError as e:
                return _json({"error": str(e)}, 400)
            return result if isinstance(result, Response) else _json(result)
        return endpoint

    def write(fn: Callable[[Studio, Request, dict[str, Any]], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not st.allow_writes:
                return _json({"error": "Studio is read-only; start it with --allow-writes "
                                       "to change the file"}, 403)
            # A custom header and a JSON body: a page on another origin
            # cannot send either without a CORS preflight, which we never
            # answer, so a visited web page cannot change the file.
            if request.headers.get("x-synadb-studio") != "1":
                return _json({"error": "missing X-Synadb-Studio header"}, 403)
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                return _json({"error": "the body must be JSON"}, 400)
            if not isinstance(body, dict):
                return _json({"error": "the body must be a JSON object"}, 400)

            def run() -> Any:
                with st.lock:
                    return fn(st, request, body)

            from starlette.concurrency import run_in_threadpool

            try:
                return _json(await run_in_threadpool(run))
            except HTTPError as e:
                return _json({"error": e.message}, e.status)
            except errors.SynaError as e:
                return _json({"error": str(e)}, 400)
        return endpoint

    def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"},
                            media_type="text/html; charset=utf-8")

    def static_file(request: Request) -> Response:
        # Only the exact names found in static/ at start: no path is ever
        # built from the URL, so "..", "%2e%2e" or "/etc/passwd" find nothing.
        p = static.get(request.path_params["name"])
        if p is None:
            return _json({"error": "not found"}, 404)
        return FileResponse(p, media_type=_MIME.get(p.suffix, "application/octet-stream"))

    def favicon(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    def not_found(request: Request) -> Response:
        return _json({"error": "not found"}, 404)

    routes = [
        Route("/", index),
        Route("/static/{name}", static_file),
        Route("/favicon.ico", favicon),
        Route("/api/series", read(_series)),
        Route("/api/overview", read(_overview)),
        Route("/api/stamp", read(_stamp)),
        Route("/api/verify", read(_verify), methods=["GET", "POST"]),
        Route("/api/keys", read(_keys)),
        Route("/api/key", read(_key)),
        Route("/api/experiments", read(_experiments)),
        Route("/api/runs", read(_runs)),
        Route("/api/run", read(_run)),
        Route("/api/metrics", read(_metrics)),
        Route("/api/compare", read(_compare)),
        Route("/api/artifact", read(_artifact_view)),
        Route("/api/artifact/raw", read(_artifact_raw)),
        Route("/api/models", read(_models)),
        Route("/api/model", read(_model)),
        Route("/api/model/verify", read(_model_verify), methods=["GET", "POST"]),
        Route("/api/vectors", read(_vectors)),
        Route("/api/vectors/projection", read(_projection)),
        Route("/api/vectors/neighbors", read(_neighbors)),
        Route("/api/run/delete", write(_delete_run), methods=["POST"]),
        Route("/api/model/stage", write(_set_stage), methods=["POST"]),
        Route("/api/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        st.close()

    hosts = allowed_hosts or list(LOOPBACK_HOSTS)
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
                                Middleware(_SecurityHeaders, frame_ancestors=frame_ancestors)])
    app.state.studio = st
    app.state.started = time.time()
    return app
