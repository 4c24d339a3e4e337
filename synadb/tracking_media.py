"""How the tracker stores an artifact: bytes, text, JSON, numpy arrays,
images (PNG, written without Pillow), figures, tables, histograms, plots and
torch objects, each with a kind and a MIME type, and back.

Kinds a viewer (Studio) can render, with what their bytes hold:

========== ================== ==============================================
kind       MIME               bytes
========== ================== ==============================================
image      image/png          a PNG
figure     image/png, svg...  a rendered figure
table      application/json   ``{"columns": [...], "data": [[...], ...]}``
histogram  application/json   ``{"bins": [n+1 edges], "values": [n counts]}``
plot       application/json   ``{"plot": "line"|"scatter"|"bar", "x": col,
                              "y": col, "title": str, "table": {columns,
                              data}}`` (W&B's ``wandb.plot.*``)
html       text/html          an HTML page (W&B's ``wandb.Html``)
========== ================== ==============================================
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _convert, errors
from .engine.files import storage_error

MAX_HISTOGRAM_BINS = 512  # W&B's limit too


class TypedArtifact:
    """Bytes whose kind and MIME type the caller chose (a histogram, a plot):
    ``tracker.log_artifact(run_id, name, TypedArtifact(...))`` stores them
    with that kind."""

    __slots__ = ("kind", "mime", "raw")

    def __init__(self, kind: str, mime: str, raw: bytes) -> None:
        if not isinstance(kind, str) or not kind or not isinstance(raw, (bytes, bytearray)):
            raise errors.InvalidType("a TypedArtifact is a kind (str) and bytes")
        self.kind, self.mime, self.raw = kind, mime, bytes(raw)


def histogram_artifact(values: Any = None, *, np_histogram: Any = None,
                       num_bins: int = 64) -> TypedArtifact:
    """A histogram of ``values`` (NaN and infinities left out), or one numpy
    already computed (``np_histogram=(counts, edges)``), as a ``histogram``.

    >>> json.loads(histogram_artifact([1, 2, 2, 3], num_bins=2).raw)["values"]
    [1, 3]
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) \
            or not 1 <= num_bins <= MAX_HISTOGRAM_BINS:
        raise errors.InvalidArgument(
            f"num_bins must be an int in 1..{MAX_HISTOGRAM_BINS}, got {num_bins!r}")
    if np_histogram is not None:
        try:
            counts, edges = np_histogram
            counts = np.asarray(counts, dtype=np.float64).reshape(-1)
            edges = np.asarray(edges, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgument(
                f"np_histogram is (counts, bin edges) as np.histogram returns ({e})") from None
        if len(edges) != len(counts) + 1:
            raise errors.DimensionMismatch(
                f"np_histogram has {len(counts)} counts and {len(edges)} edges; "
                "edges must be one more")
        if len(counts) > MAX_HISTOGRAM_BINS:
            raise errors.InvalidArgument(
                f"a histogram has at most {MAX_HISTOGRAM_BINS} bins, got {len(counts)}")
    else:
        if values is None:
            raise errors.InvalidArgument("a histogram needs values or np_histogram")
        if hasattr(values, "detach") and hasattr(values, "numpy"):  # a torch tensor
            values = values.detach().cpu().numpy()
        try:
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgument(f"histogram values must be numbers ({e})") from None
        arr = arr[np.isfinite(arr)]
        counts, edges = np.histogram(arr, bins=int(num_bins)) if len(arr) else (
            np.zeros(int(num_bins)), np.linspace(0.0, 1.0, int(num_bins) + 1))
    ints = all(float(c).is_integer() for c in counts)
    body = {"bins": [float(e) for e in edges],
            "values": [int(c) if ints else float(c) for c in counts]}
    return TypedArtifact("histogram", "application/json", json.dumps(body).encode("utf-8"))


PLOT_KINDS = ("line", "scatter", "bar", "line_series", "histogram", "confusion_matrix")


def plot_artifact(plot: str, columns: list[str], data: list[list[Any]], *,
                  x: str | None = None, y: str | None = None, title: str = "",
                  **extra: Any) -> TypedArtifact:
    """A chart over a table (``wandb.plot.line(table, "x", "y")``) as a
    ``plot``: which chart, its axes and the table it draws."""
    if plot not in PLOT_KINDS:
        raise errors.InvalidArgument(f"unknown plot {plot!r}; one of {', '.join(PLOT_KINDS)}")
    for axis, col in (("x", x), ("y", y)):
        if col is not None and col not in columns:
            raise errors.InvalidArgument(
                f"plot {axis}={col!r} is not a column of the table ({columns})")
    body = {"plot": plot, "x": x, "y": y, "title": title or "",
            "table": {"columns": list(columns), "data": data}, **extra}
    try:
        raw = json.dumps(body, default=json_default).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise errors.InvalidArgument(f"plot {title!r}: not JSON ({e})") from None
    return TypedArtifact("plot", "application/json", raw)


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _torch_bytes(obj: Any) -> bytes:
    # Only the adapters import a framework (DESIGN.md), and components never
    # import an adapter: the torch one lends torch.save through
    # synadb/_convert.py.  A torch object here means torch is loaded already.
    return _convert.get("torch_save", "torch artifacts")(obj)


def _is_torch(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    if mod.startswith("torch"):
        return True
    if isinstance(obj, Mapping) and obj:
        return all((type(v).__module__ or "").startswith("torch") for v in obj.values())
    return False


def encode_artifact(name: str, data: Any, allow_pickle: bool) -> tuple[str, str, Any]:
    if isinstance(data, TypedArtifact):
        return data.kind, data.mime, data.raw
    if isinstance(data, (bytes, bytearray, memoryview)):
        return "bytes", "application/octet-stream", bytes(data)
    if isinstance(data, str):
        return "text", "text/plain", data.encode("utf-8")
    if isinstance(data, os.PathLike):
        try:
            with open(data, "rb") as f:
                return "file", "application/octet-stream", f.read()
        except FileNotFoundError:
            raise errors.InvalidPath(f"artifact {name!r}: no file {os.fspath(data)!r}") from None
        except OSError as e:
            raise storage_error(e, "read the artifact file", os.fspath(data)) from e
    if isinstance(data, np.ndarray):
        if data.dtype.hasobject:
            raise errors.InvalidArgument(f"artifact {name!r}: object arrays need pickling; "
                                         "pass allow_pickle=True and a pickled bytes value")
        buf = io.BytesIO()
        np.save(buf, data, allow_pickle=False)
        return "numpy", "application/x-npy", buf.getvalue()
    if _is_torch(data):
        if hasattr(data, "state_dict") and not isinstance(data, Mapping):
            data = data.state_dict()  # a Module: keep its weights, never the class
        return "torch", "application/x-torch", _torch_bytes(data)
    if isinstance(data, (Mapping, list, tuple, int, float, bool)) or data is None:
        try:
            return "json", "application/json", json.dumps(data).encode("utf-8")
        except (TypeError, ValueError):
            pass
        except RecursionError:
            raise errors.InvalidArgument(
                f"artifact {name!r}: nested too deeply to store") from None
    if allow_pickle:
        import pickle

        try:
            return "pickle", "application/x-pickle", pickle.dumps(data)
        except RecursionError:
            raise errors.InvalidArgument(
                f"artifact {name!r}: nested too deeply to pickle") from None
    raise errors.InvalidArgument(
        f"artifact {name!r}: cannot store a {type(data).__name__} without pickling; "
        "pass bytes, str, a numpy array or a torch state_dict, or allow_pickle=True")


def decode_artifact(kind: str, raw: bytes, allow_pickle: bool) -> Any:
    if kind in ("text",):
        return raw.decode("utf-8")
    if kind in ("json", "table", "histogram", "plot"):
        return json.loads(raw)
    if kind == "yaml":
        import yaml

        return yaml.safe_load(raw)
    if kind == "numpy":
        return np.load(io.BytesIO(raw), allow_pickle=False)
    if kind in ("image", "figure") and raw[:8] == b"\x89PNG\r\n\x1a\n":
        return png_decode(raw)
    if kind == "torch":
        return _convert.get("torch_load", "torch artifacts")(raw)
    if kind == "pickle":
        if not allow_pickle:
            raise errors.InvalidArgument("this artifact is a pickle; load it with "
                                         "allow_pickle=True only if you trust the file")
        import pickle

        return pickle.loads(raw)
    return raw


def to_png(image: Any) -> bytes:
    """PNG bytes of a numpy array, a PIL image or a matplotlib figure."""
    if isinstance(image, (bytes, bytearray)) and bytes(image[:8]) == b"\x89PNG\r\n\x1a\n":
        return bytes(image)
    if hasattr(image, "savefig"):  # matplotlib Figure
        buf = io.BytesIO()
        image.savefig(buf, format="png")
        return buf.getvalue()
    if hasattr(image, "figure") and hasattr(image.figure, "savefig"):  # Axes
        return to_png(image.figure)
    if type(image).__module__.startswith("PIL.") and hasattr(image, "save"):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    if hasattr(image, "detach") and hasattr(image, "numpy"):  # a torch tensor
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    return png_encode(arr)


def png_encode(arr: np.ndarray) -> bytes:
    """Encode an HxW (gray), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) array as PNG.

    uint8 is taken as is; floats are taken as [0, 1] and clipped; bool as
    black and white.  A CHW array with 1, 3 or 4 leading channels (torch's
    layout) is transposed.
    """
    import struct
    import zlib

    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) \
            or 0 in arr.shape:
        raise errors.DimensionMismatch(
            f"an image must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise errors.NonFiniteValue("an image has NaN or infinite pixels")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255:
            raise errors.InvalidArgument(
                f"image pixels of dtype {arr.dtype} must be uint8, or floats in [0, 1]")
        arr = arr.astype(np.uint8)
    h, w = arr.shape[:2]
    color = {2: 0, 3: 2 if arr.ndim == 3 and arr.shape[2] == 3 else 6}[arr.ndim]
    rows = np.ascontiguousarray(arr).reshape(h, -1)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()  # filter 0 per row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def png_decode(raw: bytes) -> Any:
    """A PNG as a numpy array (PIL if installed, else our own 8-bit reader)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as img:
            return np.asarray(img)
    except ImportError:
        pass
    return png_decode_plain(raw)


def png_decode_plain(raw: bytes) -> np.ndarray:
    import struct
    import zlib

    pos, idat, hdr = 8, [], None
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        tag = raw[pos + 4:pos + 8]
        body = raw[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        pos += 12 + n
    if hdr is None:
        raise errors.CorruptDatabase("not a PNG")
    w, h, depth, color, _, _, interlace = hdr
    ch = {0: 1, 2: 3, 6: 4, 4: 2}.get(color)
    if depth != 8 or ch is None or interlace:
        return raw  # not one we wrote: hand back the bytes
    data = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * ch + 1)
    out = np.empty((h, w * ch), np.int32)
    prev = np.zeros(w * ch, np.int32)
    for y in range(h):
        f, line = data[y, 0], data[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        else:  # 1, 3, 4 need a left neighbour: do them byte by byte
            cur = np.zeros_like(line)
            for x in range(len(line)):
                a = cur[x - ch] if x >= ch else 0
                b = prev[x]
                c = prev[x - ch] if x >= ch else 0
                if f == 1:
                    cur[x] = (line[x] + a) & 255
                elif f == 3:
                    cur[x] = (line[x] + (a + b) // 2) & 255
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[x] = (line[x] + pr) & 255
        out[y] = cur
        prev = cur
    arr = out.astype(np.uint8).reshape(h, w, ch)
    return arr[:, :, 0] if ch == 1 else arr


# -- object style ----------------------------------------------------------
