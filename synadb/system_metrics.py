"""System metrics of a run: CPU, RAM, disk and GPU, sampled in a thread.

``ExperimentTracker.start_run(..., system_metrics=True)`` (and
``synadb.integrations.wandb.init``, by default) starts a
:class:`SystemMetrics` sampler that logs ordinary metrics, as W&B and MLflow
2.8+ do::

    system/cpu_percent          whole machine, since the previous sample
    system/memory_percent       RAM in use (total - available) / total
    system/memory_used_mb
    system/process_rss_mb       this process's resident set
    system/disk_percent         the filesystem holding the database
    system/gpu<i>_utilization_percent, system/gpu<i>_memory_percent,
    system/gpu<i>_memory_used_mb              when pynvml or nvidia-smi works

Each metric's step is the sample number (0, 1, 2, ...), so system metrics
never move a run's training step.  psutil is used when installed, else
``/proc`` (Linux); a source that fails is dropped, never retried each tick.

A sample is always logged when the sampler stops, so a run shorter than one
interval still has one; ``stop`` joins the thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SystemMetrics", "sample_once", "DEFAULT_INTERVAL_S", "PREFIX"]

DEFAULT_INTERVAL_S = 10.0  # W&B samples every 10-15 s; a training step is far shorter
PREFIX = "system/"
_NVIDIA_SMI_TIMEOUT_S = 5.0


def _proc_cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    vals = [float(x) for x in fields[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already counted in user
    return total - idle, total


def _proc_memory() -> tuple[float, float] | None:
    """(total, available) bytes from /proc/meminfo."""
    try:
        with open("/proc/meminfo", "rb") as f:
            info = {}
            for line in f:
                name, _, rest = line.partition(b":")
                info[name] = float(rest.split()[0]) * 1024.0
    except (OSError, ValueError, IndexError):
        return None
    total = info.get(b"MemTotal")
    avail = info.get(b"MemAvailable", info.get(b"MemFree"))
    return None if not total or avail is None else (total, avail)


def _proc_rss() -> float | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _Gpus:
    """GPU utilisation and memory through pynvml, else nvidia-smi, else none."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._smi = None
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                             for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
        except Exception:  # not installed, no driver, no GPU: all mean "no GPU metrics"
            self._nvml = None
            self._smi = shutil.which("nvidia-smi")

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self._nvml is not None:
            nv = self._nvml
            for i, h in enumerate(self._handles):
                util = nv.nvmlDeviceGetUtilizationRates(h)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                out.update(self._row(i, float(util.gpu), mem.used / 2**20, mem.total / 2**20))
        elif self._smi:
            res = subprocess.run(
                [self._smi, "--query-gpu=utilization.gpu,memory.used,memory.total",
                 "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT_S, check=True)
            for i, line in enumerate(res.stdout.strip().splitlines()):
                util, used, total = (float(x) for x in line.split(","))
                out.update(self._row(i, util, used, total))
        return out

    @staticmethod
    def _row(i: int, util: float, used_mb: float, total_mb: float) -> dict[str, float]:
        return {f"{PREFIX}gpu{i}_utilization_percent": util,
                f"{PREFIX}gpu{i}_memory_used_mb": used_mb,
                f"{PREFIX}gpu{i}_memory_percent": 100.0 * used_mb / total_mb if total_mb else 0.0}


class _Sampler:
    """What one sample reads; keeps the previous CPU reading for the rate."""

    def __init__(self, disk_path: str | None) -> None:
        try:
            import psutil  # type: ignore[import-untyped]
        except ImportError:
            psutil = None
        self._ps = psutil
        self._proc = psutil.Process() if psutil is not None else None
        self._disk = disk_path or os.getcwd()
        self._gpus: _Gpus | None = None
        self._gpu_failed = False
        self._cpu_prev = _proc_cpu_times() if psutil is None else None
        if psutil is not None:
            psutil.cpu_percent(None)  # the baseline the first sample is measured from

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        ps = self._ps
        if ps is not None:
            out[PREFIX + "cpu_percent"] = float(ps.cpu_percent(None))
            vm = ps.virtual_memory()
            out[PREFIX + "memory_percent"] = float(vm.percent)
            out[PREFIX + "memory_used_mb"] = (vm.total - vm.available) / 2**20
            out[PREFIX + "process_rss_mb"] = self._proc.memory_info().rss / 2**20
        else:
            now = _proc_cpu_times()
            if now is not None and self._cpu_prev is not None:
                busy, total = now[0] - self._cpu_prev[0], now[1] - self._cpu_prev[1]
                out[PREFIX + "cpu_percent"] = 100.0 * busy / total if total > 0 else 0.0
            self._cpu_prev = now
            mem = _proc_memory()
            if mem is not None:
                out[PREFIX + "memory_percent"] = 100.0 * (mem[0] - mem[1]) / mem[0]
                out[PREFIX + "memory_used_mb"] = (mem[0] - mem[1]) / 2**20
            rss = _proc_rss()
            if rss is not None:
                out[PREFIX + "process_rss_mb"] = rss / 2**20
        try:
            du = shutil.disk_usage(self._disk)
            out[PREFIX + "disk_percent"] = 100.0 * du.used / du.total if du.total else 0.0
        except OSError:
            pass
        if not self._gpu_failed:
            try:
                if self._gpus is None:
                    self._gpus = _Gpus()
                out.update(self._gpus.sample())
            except Exception:  # a driver error or a hung nvidia-smi: stop asking
                self._gpu_failed = True
        return out


def sample_once(disk_path: str | None = None) -> dict[str, float]:
    """One reading of every available system metric (CPU since the process
    started, when psutil is missing).

    >>> "system/memory_percent" in sample_once()   # doctest: +SKIP
    True
    """
    return _Sampler(disk_path).sample()


class SystemMetrics:
    """Samples system metrics every ``interval_s`` in a daemon thread and
    hands each sample to ``log(metrics, step)``.

    Args:
        log: called with ``({name: value}, sample number)`` from the thread.
            An exception it raises stops the sampler (the run ended, the file
            closed): training is never disturbed by its metrics.
        interval_s: seconds between samples.
        disk_path: a path on the filesystem whose usage is reported.
    """

    def __init__(self, log: Callable[[dict[str, float], int], None],
                 interval_s: float = DEFAULT_INTERVAL_S, disk_path: str | None = None) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) \
                or not interval_s > 0:
            from .errors import InvalidArgument

            raise InvalidArgument(f"interval_s must be a positive number, got {interval_s!r}")
        self._log = log
        self.interval_s = float(interval_s)
        self._disk = disk_path
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one sample at a time (the thread's or stop's)
        self._sampler: _Sampler | None = None
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "SystemMetrics":
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._loop, name="synadb-system-metrics",
                                        daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        with self._lock:
            try:
                # Built in the thread: importing psutil or probing the GPU
                # must not delay the run's start.
                self._sampler = _Sampler(self._disk)
            except Exception as e:
                self.error = e
                self._stop.set()
                return
        while not self._stop.wait(self.interval_s):
            if not self._tick():
                return

    def _tick(self) -> bool:
        with self._lock:
            if self._sampler is None or self.error is not None:
                return False
            try:
                values = self._sampler.sample()
                if values:
                    self._log(values, self.samples)
                    self.samples += 1
            except Exception as e:  # the run ended under us, the disk is full...
                self.error = e
                self._stop.set()
                return False
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop and join the thread, then log one last sample (once)."""
        if self._thread is None:
            return
        already = self._stop.is_set()
        self._stop.set()
        self._thread.join(timeout_s)
        if already or self.error is not None:
            return
        with self._lock:
            if self._sampler is None:
                try:
                    self._sampler = _Sampler(self._disk)
                except Exception as e:
                    self.error = e
                    return
        self._tick()

    def __enter__(self) -> "SystemMetrics":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

