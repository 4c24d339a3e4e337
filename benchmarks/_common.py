"""Shared helpers for the synadb benchmarks: timing, machine info, tables.

Kept free of any synadb import so that every benchmark script (and the
peer-wheel runner, which lives in another venv) can use the same helpers.
File names here never start with ``test_`` so pytest never collects them.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"

perf_counter = time.perf_counter


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------
def best_of(fn: Callable[[], Any], repeats: int = 3, number: int = 1,
            budget_s: float | None = None) -> float:
    """Return the best (minimum) wall time of ``fn`` per call, in seconds.

    ``fn`` is called ``number`` times per repeat; the minimum over ``repeats``
    repeats is divided by ``number``.  The GC is disabled while timing (as
    ``timeit`` does).  If ``budget_s`` is given, stop repeating once that much
    time has been spent (at least one repeat always runs).
    """
    best = float("inf")
    spent = 0.0
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(max(1, repeats)):
            t0 = perf_counter()
            for _ in range(number):
                fn()
            dt = perf_counter() - t0
            best = min(best, dt)
            spent += dt
            if budget_s is not None and spent >= budget_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return best / number


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Time one call; return (seconds, result)."""
    t0 = perf_counter()
    res = fn()
    return perf_counter() - t0, res


# --------------------------------------------------------------------------
# machine / run info
# --------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit(repo: Path = REPO_ROOT) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (git unavailable)"
    if out.returncode != 0:
        return "none (no commits yet)"
    commit = out.stdout.strip()
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10)
        if dirty.returncode == 0 and dirty.stdout.strip():
            commit += " (+uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        pass
    return commit


def init_signature(cls) -> str:
    """``(path, sync_on_write=...)`` of a class's constructor, without ``self``."""
    import inspect
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return "(?)"
    return str(sig)


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git_commit(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg": loadavg(),
    }


def loadavg() -> str:
    """1/5/15-minute load average: a busy machine makes every figure noisier."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    """Human-readable duration with a sensible unit."""
    if seconds is None:
        return "n/a"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "n/a"
    if r >= 100:
        return f"{r:.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain-text table with aligned columns."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    sep = "-+-".join("-" * w for w in widths)
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), sep]
    for r in rows:
        lines.append(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def esc(c: Any) -> str:
        return str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(esc(c) for c in r) + " |")
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def key_names(n: int, prefix: str = "k/") -> list[str]:
    """``n`` distinct keys of ~12 bytes (``k/0000000042``)."""
    width = max(1, 12 - len(prefix))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def med(xs: Iterable[float | None]) -> float | None:
    """The median of the samples that were taken (None: none was)."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def quiet_mlflow() -> None:
    """MLflow as a peer: its file store allowed, its warnings and logs off."""
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    os.environ["GIT_PYTHON_REFRESH"] = "quiet"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --------------------------------------------------------------------------
# files, page cache and memory of subprocesses (the dataset benchmark)
# --------------------------------------------------------------------------
def files_under(path: Path) -> list[Path]:
    """Every regular file at or below ``path``."""
    path = Path(path)
    if path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]


def disk_bytes(path: Path) -> int:
    """Bytes of the files at or below ``path`` (apparent size)."""
    return sum(p.stat().st_size for p in files_under(path))


def drop_page_cache(path: Path) -> int:
    """Ask the kernel to drop ``path``'s clean pages from the page cache.

    ``posix_fadvise(POSIX_FADV_DONTNEED)`` per file: no root needed and only
    these files go cold, unlike ``/proc/sys/vm/drop_caches``.  Dirty pages
    and pages some process has mapped stay, so fsync first and call this
    before the reader maps the file.  Returns the bytes advised.
    """
    total = 0
    for p in files_under(path):
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def fsync_tree(path: Path) -> None:
    """fsync every file at or below ``path`` (and the folders holding them)."""
    dirs = set()
    for p in files_under(path):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dirs.add(p.parent)
    for d in dirs:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def run_sampled(cmd: Sequence[str], timeout_s: float, env: dict[str, str] | None = None,
                interval_s: float = 0.05) -> dict[str, Any]:
    """Run ``cmd``; return its exit code, output and the peak RSS of its process tree.

    ``tree_peak_bytes`` is the largest sum of RSS over the process and its
    descendants seen at any sample (every ``interval_s``); pages shared by a
    fork count once per process, as ``ps`` shows them.  A command that
    outlives ``timeout_s`` is killed with its children.
    """
    import psutil
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = psutil.Popen(list(cmd), stdout=out, stderr=err, env=env)
        peak = 0
        t0 = time.monotonic()
        timed_out = False
        while proc.poll() is None:
            try:
                procs = [proc] + proc.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
            if time.monotonic() - t0 > timeout_s:
                timed_out = True
                for p in proc.children(recursive=True) + [proc]:
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        pass
                proc.wait()
                break
            time.sleep(interval_s)
        out.seek(0)
        err.seek(0)
        return {"rc": proc.returncode, "stdout": out.read().decode("utf-8", "replace"),
                "stderr": err.read().decode("utf-8", "replace"), "tree_peak_bytes": peak,
                "timed_out": timed_out, "wall_s": time.monotonic() - t0}


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, div in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}" if unit == "GB" else f"{n / div:.0f} {unit}"
    return f"{n:.0f} B"
