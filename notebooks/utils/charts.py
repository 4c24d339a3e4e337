"""Chart helpers with one colour scheme for every notebook (matplotlib).

Outside a Jupyter kernel (a plain ``python`` run, CI) the Agg backend is used,
so nothing needs a display.  Every chart is also saved as a PNG in
``figures/`` under the working directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

# One colour per system, the same in every notebook.
COLORS = {
    "synadb": "#2563eb",       # blue
    "mlflow": "#f97316",       # orange
    "mlflow (batch)": "#fdba74",
    "files + sha256": "#6b7280",  # grey: the DVC way
    "wandb": "#eab308",        # yellow
    "train": "#2563eb",
    "val": "#16a34a",
}
_FALLBACK = ["#7c3aed", "#db2777", "#0891b2", "#65a30d"]

plt.rcParams.update({
    "figure.figsize": (8, 4),
    "figure.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.3,
    "font.size": 10,
})


def color(name: str, i: int = 0) -> str:
    return COLORS.get(name, _FALLBACK[i % len(_FALLBACK)])


def show(fig: "plt.Figure", name: str | None = None) -> "plt.Figure":
    """Save ``fig`` to ``figures/<name>.png`` and display it (inline in Jupyter)."""
    fig.tight_layout()
    if name:
        Path("figures").mkdir(exist_ok=True)
        fig.savefig(Path("figures") / f"{name}.png", dpi=100)
    if matplotlib.get_backend().lower() != "agg":
        plt.show()
    else:
        plt.close(fig)
    return fig


def _label(ax, values, fmt: str) -> None:
    for bar, v in zip(ax.patches, values):
        ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                    textcoords="offset points")


def bar_chart(values: Mapping[str, float], title: str, ylabel: str, *, log: bool = False,
              fmt: str = "{:.3g}", name: str | None = None, ax=None) -> "plt.Figure":
    """One bar per system, coloured by system."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    else:
        fig = ax.figure
    names = list(values)
    ax.bar(names, [values[n] for n in names],
           color=[color(n, i) for i, n in enumerate(names)])
    _label(ax, [values[n] for n in names], fmt)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    return show(fig, name) if own else fig


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str,
                 ylabel: str, *, xlabel: str = "", log: bool = False, fmt: str = "{:.3g}",
                 name: str | None = None, ax=None) -> "plt.Figure":
    """Bars grouped by ``groups`` (x axis), one coloured bar per system in each."""
    own = ax is None
    if own:
        fig, ax = plt.subplots()
    else:
        fig = ax.figure
    n = len(series)
    width = 0.8 / max(n, 1)
    for i, (system, vals) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, vals, width, label=system, color=color(system, i))
        for b, v in zip(bars, vals):
            ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    if log:
        ax.set_yscale("log")
    ax.legend(frameon=False)
    return show(fig, name) if own else fig


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str,
               xlabel: str, ylabel: str, *, log: bool = False, name: str | None = None,
               ax=None) -> "plt.Figure":
    """One line per series: ``{label: (xs, ys)}``."""
    own = ax is None
    if own:
        fig, ax = plt.subplots()
    else:
        fig = ax.figure
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, label=label, color=color(label, i), linewidth=2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(frameon=False)
    return show(fig, name) if own else fig
