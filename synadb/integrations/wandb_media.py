"""W&B's media types over synadb's typed run artifacts: ``Table``,
``Image``, ``Histogram`` and the ``plot`` charts.

Each is converted when it is made (as W&B does: a figure or an array
changed after ``wandb.Image(...)`` is not seen) and stored, when logged at
key ``k`` and step ``s``, as one typed artifact of the run that Studio
renders (:mod:`synadb.tracking_media` lists the kinds)::

    media/images/<k>/<s>.png            image   (+ <s>.png.json: the caption)
    media/images/<k>/<s>_<i>.png        image   (a list of images at one step)
    media/tables/<k>/<s>.table.json     table
    media/histograms/<k>/<s>.histogram.json   histogram
    media/plots/<k>/<s>.plot.json       plot
    media/html/<k>/<s>.html             html

The run's summary (and ``wandb.Api()``'s) keeps a reference to the last
one, as W&B's does: ``{"_type": "image-file", "path": ..., "caption": ...}``.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

import numpy as np

from .. import errors
from ..tracking_media import (TypedArtifact, histogram_artifact, json_default, plot_artifact,
                              to_png)

__all__ = ["Media", "Table", "Image", "Histogram", "Html", "CustomChart", "plot"]

# store(artifact name, payload) -> None; the payload is a TypedArtifact, PNG
# bytes, or ("table", columns, rows).
Store = Callable[[str, Any], None]


def _safe_key(key: str) -> str:
    """A logged key as artifact path segments (W&B keys may hold '/')."""
    parts = [p for p in key.split("/") if p not in ("", ".", "..")]
    return "/".join(p.replace("\\", "_") for p in parts) or "_"


class Media(abc.ABC):
    """What every W&B media value has: ``_log`` stores it, returns a reference."""

    _type = "media"

    @abc.abstractmethod
    def _log(self, store: Store, key: str, step: int, index: int | None = None) -> dict[str, Any]:
        """Store the value under ``key`` at ``step`` and return the reference
        that the run's summary and history keep in its place."""

    def to_json(self) -> dict[str, Any]:  # W&B's name for the reference
        return {"_type": self._type}


def _image_array(arr: np.ndarray, normalize: bool) -> np.ndarray:
    """W&B's normalisation: floats in [-1, 1] or [0, 1] are scaled to 0..255;
    anything else is clipped to 0..255."""
    if hasattr(arr, "detach") and hasattr(arr, "numpy"):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.dtype == np.uint8 or arr.dtype == np.bool_:
        return arr
    if not normalize:
        return np.clip(arr, 0, 255).astype(np.uint8)
    arr = arr.astype(np.float64)
    if arr.size and not np.isfinite(arr).all():
        raise errors.NonFiniteValue("an image has NaN or infinite pixels")
    if arr.size and arr.min() < 0:
        arr = (arr + 1.0) * 127.5
    elif arr.size and arr.max() <= 1.0:
        arr = arr * 255.0
    return np.clip(arr, 0, 255).astype(np.uint8)


class Image(Media):
    """``wandb.Image(data_or_path, mode=None, caption=None)``: a numpy array
    (HxW, HxWxC or CxHxW; floats are scaled as W&B does), a torch tensor, a
    PIL image, a matplotlib figure, or a path to an image file.

    >>> img = Image(np.zeros((4, 6, 3)), caption="blank")
    >>> (img.width, img.height, img.caption)
    (6, 4, 'blank')
    """

    _type = "image-file"

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None,
                 grouping: int | None = None, classes: Any = None, boxes: Any = None,
                 masks: Any = None, file_type: str | None = None, normalize: bool = True) -> None:
        if caption is not None and not isinstance(caption, str):
            caption = str(caption)
        self.caption = caption
        self._mime = "image/png"
        self._ext = "png"
        if isinstance(data_or_path, (str, os.PathLike)):
            path = os.fspath(data_or_path)
            try:
                with open(path, "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                raise errors.InvalidPath(f"wandb.Image: no file {path!r}") from None
            ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
            if raw[:8] != b"\x89PNG\r\n\x1a\n":
                self._mime = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                              "bmp": "image/bmp", "webp": "image/webp"}.get(ext, "image/" + ext)
                self._ext = ext
            self._bytes = raw
        elif isinstance(data_or_path, Image):
            self._bytes, self._mime, self._ext = data_or_path._bytes, data_or_path._mime, \
                data_or_path._ext
            self.caption = caption if caption is not None else data_or_path.caption
        elif hasattr(data_or_path, "savefig") or type(data_or_path).__module__.startswith("PIL.") \
                or (hasattr(data_or_path, "figure") and hasattr(data_or_path.figure, "savefig")):
            if type(data_or_path).__module__.startswith("PIL.") and mode:
                data_or_path = data_or_path.convert(mode)
            self._bytes = to_png(data_or_path)
        elif hasattr(data_or_path, "gcf") and callable(data_or_path.gcf):  # matplotlib.pyplot
            self._bytes = to_png(data_or_path.gcf())
        else:
            self._bytes = to_png(_image_array(data_or_path, normalize))
        self.width, self.height = _png_size(self._bytes) if self._mime == "image/png" else (0, 0)

    def _log(self, store: Store, key: str, step: int, index: int | None = None) -> dict[str, Any]:
        name = f"media/images/{_safe_key(key)}/{step}{'' if index is None else f'_{index}'}"
        name += "." + self._ext
        store(name, self._bytes if self._mime == "image/png"
              else TypedArtifact("image", self._mime, self._bytes))
        ref = {"_type": self._type, "path": name, "format": self._ext,
               "width": self.width, "height": self.height}
        if self.caption is not None:
            ref["caption"] = self.caption
            store(name + ".json", TypedArtifact(
                "json", "application/json",
                json.dumps({"caption": self.caption, "key": key, "step": step}).encode()))
        return ref

    def to_json(self) -> dict[str, Any]:
        out = {"_type": self._type, "format": self._ext, "width": self.width,
               "height": self.height}
        if self.caption is not None:
            out["caption"] = self.caption
        return out

    def __repr__(self) -> str:
        return f"<wandb.Image {self.width}x{self.height} caption={self.caption!r}>"


def _png_size(raw: bytes) -> tuple[int, int]:
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or len(raw) < 24:
        return 0, 0
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


class Html(Media):
    """``wandb.Html(data, inject=True)``: an HTML string or file, stored as an
    ``html`` artifact (text/html)."""

    _type = "html-file"

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        if hasattr(data, "read"):
            data = data.read()
        elif isinstance(data, (str, os.PathLike)) and not data_is_not_path \
                and os.path.isfile(os.fspath(data)):
            with open(os.fspath(data), encoding="utf-8") as f:
                data = f.read()
        if not isinstance(data, str):
            raise errors.InvalidType(f"wandb.Html takes a str or a file, got "
                                     f"{type(data).__name__}")
        self.html = data

    def _log(self, store: Store, key: str, step: int, index: int | None = None) -> dict[str, Any]:
        name = f"media/html/{_safe_key(key)}/{step}{'' if index is None else f'_{index}'}.html"
        store(name, TypedArtifact("html", "text/html", self.html.encode("utf-8")))
        return {"_type": self._type, "path": name}


class Histogram(Media):
    """``wandb.Histogram(sequence=None, np_histogram=None, num_bins=64)``.

    >>> h = Histogram([1, 2, 2, 3], num_bins=2)
    >>> h.histogram, len(h.bins)
    ([1, 3], 3)
    """

    _type = "histogram"

    def __init__(self, sequence: Any = None, np_histogram: Any = None,
                 num_bins: int = 64) -> None:
        self._artifact = histogram_artifact(sequence, np_histogram=np_histogram,
                                            num_bins=num_bins)
        body = json.loads(self._artifact.raw)
        self.bins: list[float] = body["bins"]
        self.histogram: list[float] = body["values"]

    def _log(self, store: Store, key: str, step: int, index: int | None = None) -> dict[str, Any]:
        name = f"media/histograms/{_safe_key(key)}/{step}.histogram.json"
        store(name, self._artifact)
        return {"_type": self._type, "path": name, "bins": self.bins, "values": self.histogram}

    def to_json(self) -> dict[str, Any]:
        return {"_type": self._type, "bins": self.bins, "values": self.histogram}


class Table(Media):
    """``wandb.Table(columns=None, data=None, dataframe=None)``; rows are
    added with ``add_data`` and columns with ``add_column``.  Cells may hold
    numbers, text, lists, ``Image``s (stored beside the table) and None.

    >>> t = Table(columns=["x", "y"], data=[[1, 2]])
    >>> t.add_data(3, 4); t.get_column("y")
    [2, 4]
    """

    _type = "table"
    MAX_ROWS = 200_000  # W&B's limit for a logged table

    def __init__(self, columns: Sequence[str] | None = None, data: Any = None,
                 rows: Any = None, dataframe: Any = None, dtype: Any = None,
                 optional: Any = True, allow_mixed_types: bool = False,
                 log_mode: str | None = None) -> None:
        if dataframe is not None:
            if columns is None:
                columns = [str(c) for c in dataframe.columns]
            data = dataframe.itertuples(index=False, name=None)
        if data is None:
            data = rows
        if data is not None and hasattr(data, "ndim") and hasattr(data, "tolist"):
            data = data.tolist()
        data = [] if data is None else [list(r) for r in data]
        if columns is None:
            columns = ["Input", "Output", "Expected"]  # W&B's default
        if isinstance(columns, (str, bytes)) or not isinstance(columns, Iterable):
            raise errors.InvalidType(f"Table columns are a list of names, got {columns!r}")
        self.columns: list[str] = [str(c) for c in columns]
        if len(set(self.columns)) != len(self.columns):
            raise errors.InvalidArgument(f"Table columns must be unique, got {self.columns}")
        self.data: list[list[Any]] = []
        for row in data:
            self.add_data(*row)

    def add_data(self, *data: Any) -> None:
        if len(data) != len(self.columns):
            raise errors.DimensionMismatch(
                f"This table expects {len(self.columns)} columns: {self.columns}, "
                f"found {len(data)}")
        self.data.append([_plain(v) for v in data])

    def add_column(self, name: str, data: Sequence[Any], optional: bool = False) -> None:
        if name in self.columns:
            raise errors.InvalidArgument(f"Column {name!r} already exists in the table")
        if hasattr(data, "tolist"):
            data = data.tolist()
        data = list(data)
        if self.data and len(data) != len(self.data):
            raise errors.DimensionMismatch(
                f"Column {name!r} has {len(data)} values for {len(self.data)} rows")
        if not self.data:
            self.data = [[] for _ in data]
        self.columns.append(str(name))
        for row, v in zip(self.data, data):
            row.append(_plain(v))

    def get_column(self, name: str, convert_to: str | None = None) -> Any:
        if name not in self.columns:
            raise errors.KeyNotFound(f"Column {name!r} not in the table ({self.columns})")
        i = self.columns.index(name)
        col = [row[i] for row in self.data]
        return np.array(col) if convert_to == "numpy" else col

    def get_index(self) -> list[int]:
        return list(range(len(self.data)))

    def get_dataframe(self) -> Any:
        try:
            import pandas as pd
        except ImportError as e:
            raise errors.MissingDependency("pandas", "arrow", "Table.get_dataframe") from e
        return pd.DataFrame(self.data, columns=self.columns)

    def iterrows(self) -> Iterable[tuple[int, list[Any]]]:
        return enumerate(self.data)

    def _rows_for_store(self, store: Store, base: str) -> list[list[Any]]:
        out = []
        for r, row in enumerate(self.data):
            cells = []
            for c, v in enumerate(row):
                if isinstance(v, Media):
                    v = v._log(store, f"{base}/cells", r, c)
                cells.append(v)
            out.append(cells)
        return out

    def _log(self, store: Store, key: str, step: int, index: int | None = None) -> dict[str, Any]:
        if len(self.data) > self.MAX_ROWS:
            raise errors.InvalidArgument(
                f"a logged Table has at most {self.MAX_ROWS} rows, got {len(self.data)}")
        base = f"media/tables/{_safe_key(key)}/{step}{'' if index is None else f'_{index}'}"
        name = base + ".table.json"
        store(name, ("table", self.columns, self._rows_for_store(store, base)))
        return {"_type": "table-file", "path": name, "ncols": len(self.columns),
                "nrows": len(self.data)}

    def to_json(self) -> dict[str, Any]:
        return {"_type": self._type, "columns": self.columns,
                "data": json.loads(json.dumps(self.data, default=_cell_json))}

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<wandb.Table {len(self.data)} rows x {self.columns}>"


def _cell_json(v: Any) -> Any:
    return v.to_json() if isinstance(v, Media) else json_default(v)


def _plain(v: Any) -> Any:
    """A table cell as a JSON value (numpy scalars and arrays to Python)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


class CustomChart(Media):
    """What ``wandb.plot.line(...)`` and friends return: a chart over a table."""

    _type = "plot"

    def __init__(self, kind: str, table: Table, x: str | None, y: str | None, title: str,
                 **extra: Any) -> None:
        if not isinstance(table, Table):
            raise errors.InvalidType(f"wandb.plot.{kind} takes a wandb.Table, got "
                                     f"{type(table).__name__}")
        self.kind, self.table, self.x, self.y, self.title = kind, table, x, y, title
        self.extra = extra
        self._artifact = plot_artifact(kind, table.columns, _json_rows(table), x=x, y=y,
                                       title=title, **extra)

    def _log(self, store: Store, key: str, step: int, index: int | None = None) -> dict[str, Any]:
        name = f"media/plots/{_safe_key(key)}/{step}.plot.json"
        store(name, self._artifact)
        return {"_type": self._type, "plot": self.kind, "path": name, "title": self.title}


def _json_rows(table: Table) -> list[list[Any]]:
    return json.loads(json.dumps(table.data, default=_cell_json))


class _Plot:
    """``wandb.plot``: ``line``, ``scatter``, ``bar``, ``histogram`` and
    ``line_series``, each over a ``wandb.Table`` as in W&B."""

    CustomChart = CustomChart

    @staticmethod
    def line(table: Table, x: str, y: str, stroke: str | None = None, title: str = "",
             split_table: bool = False) -> CustomChart:
        return CustomChart("line", table, x, y, title, stroke=stroke)

    @staticmethod
    def scatter(table: Table, x: str, y: str, title: str = "",
                split_table: bool = False) -> CustomChart:
        return CustomChart("scatter", table, x, y, title)

    @staticmethod
    def bar(table: Table, label: str, value: str, title: str = "",
            split_table: bool = False) -> CustomChart:
        return CustomChart("bar", table, label, value, title)

    @staticmethod
    def histogram(table: Table, value: str, title: str = "",
                  split_table: bool = False) -> CustomChart:
        return CustomChart("histogram", table, value, None, title)

    @staticmethod
    def line_series(xs: Sequence[Any], ys: Sequence[Sequence[Any]],
                    keys: Sequence[str] | None = None, title: str = "",
                    xname: str = "x", split_table: bool = False) -> CustomChart:
        xs_list = list(xs)
        many = bool(xs_list) and isinstance(xs_list[0], (list, tuple, np.ndarray))
        keys = list(keys) if keys is not None else [f"key_{i}" for i in range(len(ys))]
        if len(keys) != len(ys):
            raise errors.DimensionMismatch(f"line_series: {len(keys)} keys for {len(ys)} series")
        table = Table(columns=["step", "lineKey", "lineVal"])
        for i, (k, series) in enumerate(zip(keys, ys)):
            xi = list(xs_list[i]) if many else xs_list
            for xv, yv in zip(xi, series):
                table.add_data(xv, k, yv)
        return CustomChart("line_series", table, "step", "lineVal", title, xname=xname,
                           series="lineKey")


    @staticmethod
    def confusion_matrix(probs: Any = None, y_true: Any = None, preds: Any = None,
                         class_names: Sequence[str] | None = None,
                         title: str = "Confusion Matrix Curve",
                         split_table: bool = False) -> CustomChart:
        """W&B's confusion matrix: a table of (Actual, Predicted, nPredictions)
        for every pair of classes, from ``preds`` or the argmax of ``probs``."""
        if y_true is None or (probs is None) == (preds is None):
            raise errors.InvalidArgument("confusion_matrix needs y_true and one of probs "
                                         "or preds")
        truth = np.asarray(y_true).reshape(-1)
        guess = (np.asarray(probs).argmax(axis=-1) if probs is not None
                 else np.asarray(preds)).reshape(-1)
        if len(truth) != len(guess):
            raise errors.DimensionMismatch(f"confusion_matrix: {len(truth)} labels for "
                                           f"{len(guess)} predictions")
        n = int(max(truth.max(initial=-1), guess.max(initial=-1))) + 1
        if probs is not None:
            n = max(n, np.asarray(probs).shape[-1])
        names = list(class_names) if class_names is not None else [
            f"Class_{i + 1}" for i in range(n)]
        if len(names) < n:
            raise errors.InvalidArgument(f"confusion_matrix: {len(names)} class names for "
                                         f"labels up to {n - 1}")
        counts = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(counts, (truth.astype(np.int64), guess.astype(np.int64)), 1)
        table = Table(columns=["Actual", "Predicted", "nPredictions"])
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                table.add_data(a, b, int(counts[i, j]))
        return CustomChart("confusion_matrix", table, "Predicted", "nPredictions", title,
                           actual="Actual")


plot = _Plot()


def is_media(value: Any) -> bool:
    return isinstance(value, Media)


def as_media(value: Any) -> Media | list[Media] | None:
    """A logged value as media: a Media, a list of them, a matplotlib figure
    (an Image), or a numpy array / tensor of more than one number (a
    Histogram, as W&B does); None for anything else."""
    if isinstance(value, Media):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Media) for v in value):
        return list(value)
    if hasattr(value, "savefig") or (hasattr(value, "gcf") and callable(value.gcf)):
        return Image(value)
    if (isinstance(value, np.ndarray) or (hasattr(value, "detach") and hasattr(value, "numpy"))) \
            and getattr(value, "ndim", 0) > 0 and getattr(value, "size", None) != 1:
        size = value.size if isinstance(value, np.ndarray) else value.numel()
        if size > 1:
            return Histogram(value)
    return None


def reference_json(value: Any) -> Any:
    """A summary value as JSON (media as their reference, numpy as Python)."""
    if isinstance(value, Mapping):
        return {str(k): reference_json(v) for k, v in value.items()}
    if isinstance(value, Media):
        return value.to_json()
    return value
