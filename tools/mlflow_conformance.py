"""Run MLflow's own tests against the synadb:// store and hold the bar.

    python tools/mlflow_conformance.py [--min N] [--suites client fluent ...]

Runs ``../shared/mlflow-conformance`` (MLflow's test tree at a pinned
commit, with a harness that swaps one fixture per module for a synadb
store), scores it against the tests that pass on ``sqlite:///`` with the
same mlflow, prints the figure, and exits non-zero when fewer than
``--min`` pass (by default: all but the listed ones).  Failures are printed, each unlisted one loudly: the tests
that can only pass on a SQL store are listed, each with its reason, in
``tests/mlflow_conformance/sql_only.tsv``.

The harness is found at $SYNADB_MLFLOW_CONFORMANCE, else
``<repo>/../shared/mlflow-conformance``, else
``/work/shared/mlflow-conformance``.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LISTED = REPO / "tests" / "mlflow_conformance" / "sql_only.tsv"


def harness() -> Path:
    for candidate in (os.environ.get("SYNADB_MLFLOW_CONFORMANCE"),
                      REPO.parent / "shared" / "mlflow-conformance",
                      "/work/shared/mlflow-conformance"):
        if candidate and (Path(candidate) / "run_suite.py").is_file():
            return Path(candidate)
    sys.exit("mlflow conformance: no harness found (set SYNADB_MLFLOW_CONFORMANCE to the "
             "mlflow-conformance folder)")


def listed() -> dict[tuple[str, str], str]:
    """(suite, test name) -> why it can only pass on a SQL store."""
    out = {}
    for line in LISTED.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            suite, test, why = line.split("\t", 2)
            out[(suite, test)] = why
    return out


def results(out: Path, want: dict[str, set[str]]) -> dict[tuple[str, str], str | None]:
    """(suite, test id) -> None if it passed, else its first failure line."""
    got: dict[tuple[str, str], str | None] = {}
    for suite, ids in want.items():
        seen = {}
        xml = out / f"{suite}.xml"
        if xml.exists():
            for tc in ET.parse(xml).getroot().iter("testcase"):
                bad = [ch for ch in tc if ch.tag in ("failure", "error", "skipped")]
                msg = None if not bad else (bad[0].get("message") or bad[0].tag)
                seen[f"{tc.get('classname')}::{tc.get('name')}"] = msg
        for tid in ids:
            got[(suite, tid)] = seen.get(tid, "not run")
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min", type=int, default=None,
                    help="fail below this many passes (default: every test not listed)")
    ap.add_argument("--suites", nargs="*")
    ap.add_argument("--out")
    a = ap.parse_args()
    src = harness()
    out = Path(a.out or tempfile.mkdtemp(prefix="synadb-mlflow-conformance-"))
    cmd = [sys.executable, str(src / "run_suite.py"), "--mlflow-src", str(src),
           "--backend", "synadb", "--out", str(out)]
    if a.suites:
        cmd += ["--suites", *a.suites]
    print("mlflow conformance:", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    want: dict[str, set[str]] = collections.defaultdict(set)
    for line in (src / "control" / "passed-on-sqlite.tsv").read_text().splitlines():
        suite, tid = line.split("\t")
        if not a.suites or suite in a.suites:
            want[suite].add(tid)
    got = results(out, want)
    sql_only = listed()
    passed = sum(1 for v in got.values() if v is None)
    unlisted = sorted((s, t, m) for (s, t), m in got.items()
                      if m is not None and (s, t.split("::")[-1]) not in sql_only)
    for suite in sorted(want):
        n = sum(1 for (s, _), v in got.items() if s == suite and v is None)
        print(f"  {suite:18s} {n:4d} / {len(want[suite])}")
    for s, t, m in unlisted:
        print(f"  FAILED (not a listed test): {s} {t.split('::')[-1]}: "
              f"{(m or '').splitlines()[0][:160] if m else ''}")
    total = len(got)
    print(f"mlflow conformance: synadb passes {passed} of the {total} MLflow tests that pass "
          f"on sqlite ({len(sql_only)} listed, with why, in {LISTED.relative_to(REPO)})")
    bar = a.min if a.min is not None else total - len(sql_only)
    if a.suites is None and passed < bar:
        print(f"mlflow conformance: below the bar of {bar}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
