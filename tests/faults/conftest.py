"""Fixtures of the fault suite: the budget (quick or full) and a scratch folder.

``SYNADB_CRASH_BUDGET=full`` (what ``make crash`` sets) explores every crash
state the page-loss model allows for small segments and every fault site;
unset (``make test``), a seeded sample of them keeps the whole folder well
under a minute and a half on a busy 2-core machine.  ``SYNADB_CRASH_SEED``
changes the seed of the sampling (default 0), so that repeated full runs can
look at other samples.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Budget:
    full: bool
    seed: int
    # Crash-state explorer (per workload and mode).
    all_subsets_upto: int  # changed pages for which every subset is tried
    random_subsets: int  # extra seeded subsets for segments with more pages
    torn_per_segment: int  # torn-page states per segment
    max_states: int  # cap on page-model states checked (0: no cap)
    max_kill_states: int  # process-kill states (file at an op's return); 0: all
    # Flipped bytes in the damage test.
    flips: int
    # Fault injection: sites per operation (0: every site).
    max_sites: int


def _budget() -> Budget:
    full = os.environ.get("SYNADB_CRASH_BUDGET", "").strip().lower() in ("full", "1", "long")
    seed = int(os.environ.get("SYNADB_CRASH_SEED", "0") or 0)
    if full:
        return Budget(full=True, seed=seed, all_subsets_upto=10, random_subsets=64,
                      torn_per_segment=12, max_states=0, max_kill_states=0, flips=400,
                      max_sites=0)
    return Budget(full=False, seed=seed, all_subsets_upto=5, random_subsets=6,
                  torn_per_segment=4, max_states=250, max_kill_states=40, flips=60,
                  max_sites=24)


@pytest.fixture(scope="session")
def budget() -> Budget:
    return _budget()


@pytest.fixture
def scratch(tmp_path):
    """A fresh folder, on tmpfs when there is one (crash states are written
    and opened by the hundred; fsync on a real disk would dominate)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    if base is None:
        yield str(tmp_path)
        return
    d = tempfile.mkdtemp(prefix="synadb-faults-", dir=base)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
