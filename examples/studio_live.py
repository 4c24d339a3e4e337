"""Studio on a live training run: the web UI follows what the loop logs.

    python examples/studio_live.py

Starts Studio over an experiments file with ``synadb.launch_studio(path,
port=0)`` (a background server; ``.url`` says where, ``.stop()`` ends it),
then runs a small training loop that logs to the same file.  Halfway, it
fetches ``/api/runs`` from Studio over HTTP to show the run is visible while
it trains (status Running, the latest loss); at the end, once more
(Completed), and stops Studio.  Open the printed URL in a browser while it
runs, or afterwards with ``synadb studio FILE``.

Needs ``synadb[studio]``.  Files go to ``./example-output/studio_live/`` (or
``$SYNADB_EXAMPLE_OUT``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np

import synadb
from synadb import ExperimentTracker

OUT = Path(os.environ.get("SYNADB_EXAMPLE_OUT", "example-output")).resolve() / "studio_live"
PATH = OUT / "experiments.db"
STEPS = 200


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def show_runs(base: str, when: str) -> dict:
    runs = get_json(base.rstrip("/") + "/api/runs?experiment=live-demo")["runs"]
    for r in runs:
        loss = r["metrics"].get("loss")
        print(f"  Studio {when}: run {r['name']!r} {r['status']}, "
              f"loss {'-' if loss is None else f'{loss:.4f}'}")
    return runs[0]


class _CliStudio:
    """``synadb studio`` in a subprocess: for a synadb whose launch_studio
    serves in the foreground (it blocks) instead of returning a handle."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "synadb"), "studio", str(path), "--port", "0",
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = json.loads(self.proc.stdout.readline())["url"]  # printed once it listens

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_studio(path: Path):
    import synadb.studio

    if hasattr(synadb.studio, "StudioServer"):  # launch_studio returns a handle
        return synadb.launch_studio(str(path), port=0)
    return _CliStudio(path)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    PATH.unlink(missing_ok=True)  # a re-run starts afresh
    tracker = ExperimentTracker(PATH)  # the file exists before Studio opens it
    studio = start_studio(PATH)
    try:
        print(f"Studio serves {PATH.name} at {studio.url}")
        rng = np.random.default_rng(0)
        run = tracker.start_run("live-demo", name="sgd", params={"lr": 0.05, "steps": STEPS})
        w, target = np.zeros(4), np.array([1.0, -2.0, 0.5, 3.0])
        for step in range(STEPS):
            x = rng.normal(size=(32, 4))
            err = x @ w - x @ target
            w -= 0.05 * x.T @ err / len(x)
            tracker.log_metrics(run, {"loss": float(np.mean(err ** 2)),
                                      "w_error": float(np.linalg.norm(w - target))}, step=step)
            if step == STEPS // 2:
                mid = show_runs(studio.url, f"at step {step}")
                assert mid["status"] == "Running"
        tracker.end_run(run)
        done = show_runs(studio.url, "after the loop")
        assert done["status"] == "Completed"
    finally:
        studio.stop()
        tracker.close()
    print("stopped Studio")
    print("files:")
    print(f"  experiments: {PATH}")
    print(f"next: synadb studio {PATH}   (then open http://127.0.0.1:8501)")


if __name__ == "__main__":
    main()
