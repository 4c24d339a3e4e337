"""Helpers shared by the synadb notebooks: config, system info, timing, charts.

The notebooks import this package as ``utils`` (run them from ``notebooks/``,
or put that folder on ``PYTHONPATH``).  ``SYNADB_NB_SMALL=1`` selects the small
config the test suite uses; ``SYNADB_NB_RESULTS=path`` makes
:func:`save_results` write the notebook's results there as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import warnings

# tqdm.auto in a kernel without ipywidgets warns once per import; the bars are not used here.
warnings.filterwarnings("ignore", message="IProgress not found")

from .charts import COLORS, bar_chart, grouped_bars, line_chart, show  # noqa: F401

NOTEBOOKS = Path(__file__).resolve().parent.parent
REPO = NOTEBOOKS.parent
SMALL = os.environ.get("SYNADB_NB_SMALL", "") not in ("", "0")


def pick(full: Any, small: Any) -> Any:
    """``small`` in the small (test) config, else ``full``."""
    return small if SMALL else full


def system_info(**extra: str) -> dict[str, Any]:
    """Print and return what the figures were measured on."""
    import numpy as np

    try:
        import synadb
        sv = synadb.__version__
    except ImportError:  # pragma: no cover
        sv = "not installed"
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": _mem_gb(),
        "numpy": np.__version__,
        "synadb": sv,
        "config": "small (SYNADB_NB_SMALL=1)" if SMALL else "full",
    }
    for name in extra.values():
        info[name] = _version_of(name)
    width = max(len(k) for k in info)
    for k, v in info.items():
        print(f"{k:<{width}}  {v}")
    return info


def _version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
        return round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


# -- timing -----------------------------------------------------------------
class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def timeit(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run ``fn`` ``warmup`` + ``repeat`` times; seconds as median/min/max/mean."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "mean": statistics.fmean(times), "n": repeat}


def fmt_time(seconds: float) -> str:
    """Human-readable duration: ns, µs, ms or s."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    """A byte count in binary units (KiB, MiB, GiB: powers of 1024)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def tree_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(files, bytes)`` under a directory (or of one file)."""
    p = Path(path)
    if p.is_file():
        return 1, p.stat().st_size
    files = total = 0
    for root, _, names in os.walk(p):
        for name in names:
            files += 1
            total += os.path.getsize(os.path.join(root, name))
    return files, total


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed at the end."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def save_results(results: dict[str, Any]) -> dict[str, Any]:
    """Write ``results`` as JSON to ``$SYNADB_NB_RESULTS`` (if set) and return them."""
    out = os.environ.get("SYNADB_NB_RESULTS")
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=_jsonable)
    return results


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def in_notebook() -> bool:
    return "ipykernel" in sys.modules
