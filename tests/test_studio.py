"""Studio: the JSON API (in process, and over a real socket for the URL
tricks that an HTTP client would tidy away) and the page in headless
Chromium, driven by Playwright, against a real server process.

The browser tests need /usr/bin/chromium (Debian's ``chromium``; make test
installs it).  Playwright never downloads a browser here.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from synadb import SynaDB  # noqa: E402
from synadb.registry import ModelRegistry  # noqa: E402
from synadb.tracking import ExperimentTracker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WAIT_MS = 15_000  # every browser wait is bounded by this


def make_file(path: str) -> dict[str, str]:
    """A file with plain keys, three runs with metrics and artifacts (lr-0.1
    also has system metrics, images at three steps and histograms), a model
    with three versions in different stages (v3 made by lr-0.1), and a small
    vector store whose metadata has a category and a free-text title."""
    rng = np.random.default_rng(0)
    with SynaDB(path) as db:
        for i in range(30):
            db.put_float("sensor/temp", 20.0 + float(np.sin(i / 4)))
        db.put_bytes("blob", b"SYNA\x00\x01\xff" + bytes(range(64)))
        db.put_text("note", "hello studio")
        db.put_int("count", 7)
    runs = {}
    with ExperimentTracker(path) as t:
        for lr in (0.1, 0.01, 0.001):
            rid = t.start_run("mnist", tags=["baseline"], name=f"lr-{lr}")
            t.log_params(rid, {"lr": lr, "batch_size": 32})
            for step in range(25):
                t.log_metric(rid, "loss", float(np.exp(-step * lr * 4)), step=step)
                t.log_metric(rid, "acc", float(1 - np.exp(-step * lr * 4)), step=step)
            img = (np.outer(np.linspace(0, 1, 24), np.linspace(0, 1, 24)) * 255).astype(np.uint8)
            t.log_image(rid, "plots/gradient.png", img)
            t.log_table(rid, "confusion", ["class", "tp", "fp"], [["cat", 10, 2], ["dog", 8, 1]])
            t.log_text(rid, "notes.txt", "first try")
            if lr == 0.1:
                for step in range(5):  # what the system-metrics sampler logs
                    t.log_metrics(rid, {"system/cpu_percent": 20.0 + step,
                                        "system/memory_mb": 900.0 + 10 * step}, step=step)
                for step, width in ((0, 8), (1, 16), (2, 32)):
                    t.log_image(rid, f"samples/step_{step}.png",
                                np.full((8, width), 60 * step, np.uint8))
                _log_histograms(t, rid, rng)
            if lr == 0.01:  # W&B's layout: media/images/<key>/<step>[_<i>].png + caption
                for name, caption in (("0.png", "a cat at step 0"), ("1_0.png", "a cat"),
                                      ("1_1.png", None)):
                    t.log_image(rid, f"media/images/preds/{name}",
                                np.full((6, 12 if "_1" in name else 10, 3), 99, np.uint8))
                    if caption:
                        t.log_dict(rid, f"media/images/preds/{name}.json", {"caption": caption})
            t.end_run(rid)
            runs[f"lr-{lr}"] = rid
    with ModelRegistry(path, progress=False) as reg:
        for i in range(3):
            # The MLflow shim and plugin record the source run as run_id.
            meta = {"accuracy": f"0.9{i}", **({"run_id": runs["lr-0.1"]} if i == 2 else {})}
            reg.save_model("classifier", bytes([i]) * 500, meta)
        reg.set_stage("classifier", 2, "Production")
        reg.set_stage("classifier", 3, "Staging")
    from synadb.vectors.store import VectorStore

    with VectorStore(path, dimensions=8, progress=False) as vs:
        x = rng.normal(size=(60, 8)).astype(np.float32)
        x[:30] += 4
        vs.insert_batch([f"doc{i}" for i in range(60)], x,
                        [{"cluster": "a" if i < 30 else "b",
                          "title": f"Document {i} about topic {i * 7 % 13}"} for i in range(60)])
    return runs


def _log_histograms(t, rid, rng) -> None:
    """Weights at three steps, as typed histogram artifacts, and a W&B-style
    line plot (when tracking_media defines them)."""
    from synadb import tracking_media

    hist = getattr(tracking_media, "histogram_artifact", None)
    plot = getattr(tracking_media, "plot_artifact", None)
    if hist is None or plot is None:
        return
    for step in range(3):
        t.log_artifact(rid, f"weights/hist_{step}", hist(rng.normal(step, 1, 500), num_bins=20))
    t.log_artifact(rid, "pr_curve", plot("line", ["recall", "precision"],
                                         [[r / 10, 1 - r / 20] for r in range(11)],
                                         x="recall", y="precision", title="PR curve"))


@pytest.fixture
def studio_file(tmp_path):
    path = str(tmp_path / "studio.db")
    return path, make_file(path)


def client(path, allow_writes=False):
    from starlette.testclient import TestClient

    from synadb.studio import create_app

    return TestClient(create_app(path, allow_writes=allow_writes), base_url="http://127.0.0.1")


# ---------------------------------------------------------------- the API
def test_api_serves_every_page(studio_file):
    path, runs = studio_file
    with client(path) as c:
        ov = c.get("/api/overview").json()
        assert ov["runs"] == 3 and ov["models"] == 1 and ov["vectors"] == 60
        assert [r["name"] for r in ov["recent_runs"]] == ["lr-0.001", "lr-0.01", "lr-0.1"]
        assert ov["recent_models"][0]["latest_run"] == runs["lr-0.1"]
        assert ov["vector_stores"][0]["count"] == 60
        assert ov["by_type"]["bytes"] >= 1 and ov["info"]["format_version"] >= 1
        assert ov["allow_writes"] is False
        assert c.get("/api/verify").json()["ok"] is True

        keys = c.get("/api/keys", params={"pattern": "sensor/*"}).json()
        assert keys["keys"] == [{"key": "sensor/temp", "type": "float"}]
        assert c.get("/api/keys", params={"type": "int"}).json()["keys"][0]["key"] == "count"
        temp = c.get("/api/key", params={"key": "sensor/temp"}).json()
        assert temp["history"]["numeric"] and temp["history"]["length"] == 30
        blob = c.get("/api/key", params={"key": "blob"}).json()
        assert blob["latest"]["hex"][0].startswith("00000000  53 59 4e 41 00 01 ff")
        assert c.get("/api/key", params={"key": "nope"}).status_code == 404

        listed = c.get("/api/runs").json()
        assert sorted(r["name"] for r in listed["runs"]) == sorted(runs)
        assert listed["params"] == ["batch_size", "lr"]
        assert listed["metrics"] == ["acc", "loss", "system/cpu_percent", "system/memory_mb"]
        rid = runs["lr-0.1"]
        series = c.get("/api/metrics", params={"metric": "loss", "runs": rid}).json()
        assert series["series"][rid]["step"] == list(range(25))
        assert series["series"][rid]["time"][0] > 1e9  # unix seconds, for wall-time axes
        cmp = c.get("/api/compare", params={"runs": f"{rid},{runs['lr-0.01']}"}).json()
        assert cmp["params_that_differ"] == ["lr"]
        # min, max and last of each metric's whole history, not only the last
        loss = cmp["summary"]["loss"][rid]
        assert loss["max"] == 1.0 and loss["last"] == loss["min"] == pytest.approx(np.exp(-9.6))
        # every curve of a run in one request, for its run page
        every = c.get("/api/series", params={"runs": rid}).json()["series"]
        assert sorted(every) == ["acc", "loss", "system/cpu_percent", "system/memory_mb"]
        assert every["system/cpu_percent"][rid]["value"] == [20.0, 21.0, 22.0, 23.0, 24.0]

        table = c.get("/api/artifact", params={"run": rid, "name": "confusion"}).json()
        assert table["view"] == "table" and table["data"][0] == ["cat", 10, 2]
        info = c.get("/api/run", params={"id": rid}).json()["artifact_info"]
        if "pr_curve" in info:  # typed media, as tracking_media defines them
            hist = c.get("/api/artifact", params={"run": rid, "name": "weights/hist_1"}).json()
            assert hist["view"] == "histogram" and len(hist["bins"]) == 21
            assert sum(hist["counts"]) == 500
            plot = c.get("/api/artifact", params={"run": rid, "name": "pr_curve"}).json()
            assert (plot["view"], plot["plot"], plot["x"], plot["y"]) == (
                "plot", "line", "recall", "precision")
            assert plot["columns"] == ["recall", "precision"] and len(plot["data"]) == 11
        png = c.get("/api/artifact/raw", params={"run": rid, "name": "plots/gradient.png"})
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.headers["content-type"] == "image/png"
        assert "sandbox" in png.headers["content-security-policy"]

        model = c.get("/api/model", params={"name": "classifier"}).json()
        assert [v["stage"] for v in model["versions"]] == ["Development", "Production", "Staging"]
        assert [v["run_id"] for v in model["versions"]] == [None, None, rid]
        assert model["versions"][2]["run_name"] == "lr-0.1"
        assert c.get("/api/run", params={"id": rid}).json()["models"] == [
            {"name": "classifier", "version": 3, "stage": "Staging"}]
        assert [h["to"] for h in model["stage_history"]][-2:] == ["Production", "Staging"]
        assert c.get("/api/model/verify", params={"name": "classifier"}).json()["verified"] == {
            "1": True, "2": True, "3": True}

        # The free-text title is no colour; the cluster is.
        vec = c.get("/api/vectors").json()
        assert vec["fields"] == ["cluster"] and set(vec["all_fields"]) == {"cluster", "title"}
        proj = c.get("/api/vectors/projection", params={"dims": 3, "color": "cluster"}).json()
        assert len(proj["points"]) == 60 and len(proj["points"][0]) == 3
        assert set(proj["colors"]) == {"a", "b"}
        nn = c.get("/api/vectors/neighbors", params={"key": "doc0", "k": 5}).json()
        assert len(nn["neighbors"]) == 5 and all(n["key"] != "doc0" for n in nn["neighbors"])
        # The first 30 vectors were shifted together: doc0's neighbours are among them.
        assert all(n["metadata"]["cluster"] == "a" for n in nn["neighbors"])


def test_long_curves_are_thinned_for_panels_but_keep_their_extremes(tmp_path):
    path = str(tmp_path / "long.db")
    with ExperimentTracker(path) as t:
        rid = t.start_run("e")
        values = np.sin(np.arange(5000) / 50.0)
        values[1234] = 9.0  # a spike the thinned curve may miss; min/max may not
        t.log_metric_batch(rid, "loss", values)
    with client(path) as c:
        curve = c.get("/api/series", params={"runs": rid}).json()["series"]["loss"][rid]
        assert len(curve["step"]) <= 1500 and curve["length"] == 5000
        assert curve["step"][0] == 0 and curve["step"][-1] == 4999
        assert curve["max"] == 9.0 and curve["min"] == pytest.approx(-1.0, abs=1e-3)
        more = c.get("/api/series", params={"runs": rid, "points": 5000}).json()
        assert len(more["series"]["loss"][rid]["step"]) == 5000
        assert c.get("/api/series", params={"runs": rid, "points": 1}).status_code == 400


def test_pca_separates_two_clusters():
    from synadb.studio.server import pca

    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 5))
    x[:50, 0] += 10
    proj, share = pca(x, 2)
    assert share[0] > 0.8
    assert np.sign(proj[:50, 0]).std() == 0 and np.sign(proj[:50, 0])[0] != np.sign(proj[50:, 0])[0]


def test_artifacts_logged_as_files_show_by_their_extension(tmp_path):
    # mlflow.log_artifact, and every artifact the real mlflow logs through
    # the synadb:// plugin, is stored as untyped file bytes.
    path = str(tmp_path / "files.db")
    png = b"\x89PNG\r\n\x1a\n" + bytes(16)
    with ExperimentTracker(path) as t:
        rid = t.start_run("e")
        for name, data in (("plots/curve.png", png), ("notes.txt", b"hello"),
                           ("cfg.json", b'{"a": 1}'), ("page.html", b"<script>x</script>")):
            (tmp_path / "f").write_bytes(data)
            t.log_artifact(rid, name, tmp_path / "f")
    with client(path) as c:
        def view(name):
            return c.get("/api/artifact", params={"run": rid, "name": name}).json()
        assert view("plots/curve.png")["view"] == "image"
        raw = c.get("/api/artifact/raw", params={"run": rid, "name": "plots/curve.png"})
        assert raw.headers["content-type"] == "image/png" and raw.content == png
        assert (view("notes.txt")["view"], view("notes.txt")["text"]) == ("text", "hello")
        assert json.loads(view("cfg.json")["text"]) == {"a": 1}
        assert view("page.html")["view"] == "hex"
        raw = c.get("/api/artifact/raw", params={"run": rid, "name": "page.html"})
        assert raw.headers["content-type"] == "application/octet-stream"
        assert "attachment" in raw.headers["content-disposition"]
        info = c.get("/api/run", params={"id": rid}).json()["artifact_info"]
        assert info["plots/curve.png"]["mime"] == "image/png"


@pytest.mark.parametrize("name", ["../secret", "a/../../b", "/etc/passwd", "a\\b", "./x", "a//b"])
def test_artifact_names_that_leave_the_run_are_refused(studio_file, name):
    path, runs = studio_file
    with client(path) as c:
        for url in ("/api/artifact", "/api/artifact/raw"):
            r = c.get(url, params={"run": runs["lr-0.1"], "name": name})
            assert r.status_code == 400, (url, name, r.text)


def test_unknown_run_and_artifact_are_404(studio_file):
    path, runs = studio_file
    with client(path) as c:
        assert c.get("/api/run", params={"id": "../../etc"}).status_code == 404
        r = c.get("/api/artifact/raw", params={"run": runs["lr-0.1"], "name": "missing.bin"})
        assert r.status_code == 404


def test_read_only_refuses_writes(studio_file):
    path, runs = studio_file
    rid = runs["lr-0.1"]
    with client(path) as c:
        hdr = {"X-Synadb-Studio": "1"}
        r = c.post("/api/run/delete", json={"id": rid}, headers=hdr)
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        r = c.post("/api/model/stage", json={"name": "classifier", "version": 1,
                                             "stage": "Production"}, headers=hdr)
        assert r.status_code == 403
        assert c.delete("/api/run").status_code in (404, 405)
    with ExperimentTracker(path, read_only=True) as t:
        assert t.get_run(rid).name == "lr-0.1"
    with ModelRegistry(path, read_only=True) as reg:
        assert reg.get_version("classifier", 1).stage == "Development"


def test_allow_writes_changes_the_file_and_needs_the_header(studio_file):
    path, runs = studio_file
    rid = runs["lr-0.1"]
    with client(path, allow_writes=True) as c:
        # A form post from another site cannot set a custom header.
        assert c.post("/api/run/delete", json={"id": rid}).status_code == 403
        hdr = {"X-Synadb-Studio": "1"}
        assert c.post("/api/run/delete", json={"id": rid}, headers=hdr).status_code == 200
        r = c.post("/api/model/stage", json={"name": "classifier", "version": 1,
                                             "stage": "Production"}, headers=hdr)
        assert r.status_code == 200 and r.json()["stage"] == "Production"
        assert c.post("/api/model/stage", json={"name": "classifier", "version": 1,
                                                "stage": "Bogus"}, headers=hdr).status_code == 400
        # Studio's own read handles see the change at once.
        assert rid not in {r["id"] for r in c.get("/api/runs").json()["runs"]}
    with ModelRegistry(path, read_only=True) as reg:
        assert reg.get_version("classifier", 1).stage == "Production"
        assert reg.get_version("classifier", 2).stage == "Archived"


def test_foreign_host_header_is_refused(studio_file):
    """A DNS-rebinding page reaches 127.0.0.1 under its own host name."""
    path, _ = studio_file
    with client(path) as c:
        assert c.get("/api/overview", headers={"Host": "evil.example"}).status_code == 400


def test_add_parser_registers_the_studio_command():
    import argparse

    from synadb.studio import add_parser

    parser = argparse.ArgumentParser(prog="synadb")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["studio", "x.db", "--port", "9000", "--allow-writes"])
    assert (args.file, args.port, args.host, args.allow_writes) == ("x.db", 9000, "127.0.0.1",
                                                                     True)
    assert callable(args.func)
    assert args.func(parser.parse_args(["studio", "/nonexistent/x.db"])) == 1


def test_import_synadb_does_not_load_the_web_stack():
    code = ("import synadb, sys, json; print(json.dumps([m for m in "
            "('starlette', 'uvicorn', 'synadb.studio') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout) == []


# ---------------------------------------------------------------- a real server
class Server:
    """``python -m synadb.studio FILE`` in a subprocess."""

    def __init__(self, path: str, *extra: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # Port 0 and --json: the server prints its address once its socket
        # listens, and connections made from then on wait in the socket's
        # backlog until it serves them; no port race, no polling.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synadb.studio", path, "--port", "0", "--json", *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError("studio exited: " + self.proc.stderr.read().decode())
        self.url = json.loads(line)["url"].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])

    def get(self, raw_path: str) -> tuple[int, bytes]:
        """GET with the path sent byte for byte (no ``..`` clean-up)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest("GET", raw_path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"127.0.0.1:{self.port}")
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("studio") / "live.db")
    runs = make_file(path)
    server = Server(path)
    yield server, path, runs
    server.stop()


@pytest.mark.parametrize("raw", [
    "/static/../../etc/passwd",
    "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%5c..%5cetc%5cpasswd",
    "/static/%252e%252e%252fetc%252fpasswd",
    "/static//etc/passwd",
    "/static/%00app.js",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/../server.py",
    "/static/..%2fserver.py",
    "/api/artifact/raw?run=x&name=..%2f..%2fetc%2fpasswd",
    "/api/artifact/raw?run=x&name=%2fetc%2fpasswd",
])
def test_path_tricks_never_leave_static(live, raw):
    server, _, _ = live
    status, body = server.get(raw)
    assert 400 <= status < 500, (raw, status)
    assert b"root:" not in body and b"def create_app" not in body


def test_static_files_are_served(live):
    server, _, _ = live
    status, body = server.get("/static/uPlot.iife.min.js")
    assert status == 200 and b"uPlot" in body
    status, body = server.get("/")
    assert status == 200 and b"/static/app.js" in body


# ------------------------------------------ the browser (the fixture is in conftest.py)


@pytest.fixture
def page(browser, live):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert errors == [], errors


# Counts canvas pixels close to a colour (a run's, say): the curves, not the
# axes or the grid.
_PIXELS = """([sel, hex]) => {
  const want = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (const c of document.querySelectorAll(sel)) {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 200 && Math.abs(d[i] - want[0]) < 30 && Math.abs(d[i + 1] - want[1]) < 30
          && Math.abs(d[i + 2] - want[2]) < 30) n++;
  }
  return n;
}"""
# Counts strongly coloured pixels (any hue): a curve or bar was drawn.
_COLOURED = """(sel) => {
  let n = 0;
  for (const c of document.querySelectorAll(sel)) {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 200 && Math.max(d[i], d[i + 1], d[i + 2])
          - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
  }
  return n;
}"""


def _screenshot(page, tmp_path, name):
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
    return out


def _run_colour(page, run_id, where="#runs-table"):
    return page.get_attribute(f"{where} tr[data-run-id='{run_id}'] .swatch", "data-color")


def _set_range(page, sel, value):
    page.eval_on_selector(sel, "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }",
                          str(value))


def test_runs_table_and_workspace_panels(page, live, tmp_path):
    server, _, runs = live
    page.goto(server.url + "/#/experiments")
    rows = page.locator("#runs-table tbody tr")
    page.wait_for_function("n => document.querySelectorAll('#runs-table tbody tr').length >= n",
                           arg=len(runs))
    names = rows.locator(".run-name").all_inner_texts()
    assert set(runs) <= set(names)
    # One panel per metric; the system metrics in their own section.
    page.wait_for_selector("#workspace .metric-panel[data-metric='loss'] canvas")
    page.wait_for_selector("#workspace .metric-panel[data-metric='acc'] canvas")
    assert page.locator("#workspace .metric-panel[data-metric^='system/']").count() == 0
    page.wait_for_selector("#system-panels .metric-panel[data-metric='system/cpu_percent'] canvas")
    page.wait_for_function(f"() => ({_COLOURED})('#workspace .metric-panel canvas') > 200")

    # A run's colour comes from its id: the same when it is charted alone.
    rid = runs["lr-0.01"]
    colour = _run_colour(page, rid)
    assert colour == page.get_attribute(f"#workspace-legend [data-run-id='{rid}'] .swatch",
                                        "data-color")
    page.locator(f"#runs-table tr[data-run-id='{rid}'] input[type=checkbox]").check()
    page.wait_for_function(f"() => document.querySelector(\"#workspace .metric-panel[data-metric="
                           f"'loss']\").dataset.runs === '{rid}'")
    assert _run_colour(page, rid) == colour
    loss_canvas = "#workspace .metric-panel[data-metric='loss'] canvas"
    page.wait_for_function(f"a => ({_PIXELS})(a) > 50", arg=[loss_canvas, colour])
    for other in ("lr-0.1", "lr-0.001"):
        page.locator(f"#runs-table tr[data-run-id='{runs[other]}'] input[type=checkbox]").check()
    page.wait_for_function("() => document.querySelector(\"#workspace .metric-panel[data-metric="
                           "'loss']\").dataset.runs.split(',').length === 3")
    assert _run_colour(page, rid) == colour

    # A drag zooms every panel to the same steps; a double click zooms out.
    acc = "#workspace .metric-panel[data-metric='acc']"
    full = page.get_attribute(acc, "data-xrange")
    box = page.locator("#workspace .metric-panel[data-metric='loss'] .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function(f"f => document.querySelector(\"{acc}\").dataset.xrange !== f",
                           arg=full)
    lo, hi = map(float, page.get_attribute(acc, "data-xrange").split(","))
    assert 5 < lo < hi < 18
    assert page.get_attribute("#workspace .metric-panel[data-metric='loss']",
                              "data-xrange") == page.get_attribute(acc, "data-xrange")
    page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(f"f => document.querySelector(\"{acc}\").dataset.xrange === f",
                           arg=full)

    # A panel widens to the whole row, and back.
    narrow = page.eval_on_selector(f"{acc} canvas", "c => c.getBoundingClientRect().width")
    page.click(f"{acc} .panel-grow")
    page.wait_for_function(f"w => document.querySelector(\"{acc} canvas\")"
                           ".getBoundingClientRect().width > 2 * w", arg=narrow)
    page.click(f"{acc} .panel-grow")
    page.wait_for_function(f"w => Math.abs(document.querySelector(\"{acc} canvas\")"
                           ".getBoundingClientRect().width - w) < 2", arg=narrow)

    # Smoothing adds a faded raw line under each smoothed one; log y and the
    # x axis redraw every panel.
    panel = "#workspace .metric-panel[data-metric='loss']"
    assert page.get_attribute(panel, "data-lines") == "3"
    _set_range(page, "#smoothing", 0.8)
    page.wait_for_function(f"() => document.querySelector(\"{panel}\").dataset.lines === '6'")
    assert page.inner_text("#smoothing-value") == "0.80"
    page.check("#log-y")
    page.wait_for_function(f"() => document.querySelector(\"{panel}\").dataset.log === '1'")
    page.select_option("#x-axis", "relative")
    page.wait_for_function(f"() => document.querySelector(\"{panel}\").dataset.x === 'relative'")
    # seconds since each run started: a training loop of milliseconds
    assert 0 <= float(page.get_attribute(panel, "data-xmax")) < 60
    page.select_option("#x-axis", "wall")
    page.wait_for_function(f"() => document.querySelector(\"{panel}\").dataset.x === 'wall'")
    assert float(page.get_attribute(panel, "data-xmax")) > 1e9
    page.wait_for_function(f"a => ({_COLOURED})(a) > 20", arg=f"{panel} canvas")
    _screenshot(page, tmp_path, "workspace.png")
    # The settings stay for the next page (and the next visit).
    page.select_option("#x-axis", "step")
    page.uncheck("#log-y")
    _set_range(page, "#smoothing", 0)

    # Sorting by a param puts lr=0.001 first.
    page.click("#runs-table th[data-col='p:lr']")
    page.wait_for_function("() => document.querySelector('#runs-table tbody tr .run-name')"
                           ".textContent === 'lr-0.001'")
    # Filtering, then comparing two runs: min, max and last of each metric.
    page.fill("#run-filter", "lr=0.1")
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr').length === 1")
    page.fill("#run-filter", "")
    page.locator(f"#runs-table tr[data-run-id='{runs['lr-0.001']}'] input[type=checkbox]"
                 ).uncheck()
    page.click("#compare-btn")
    page.wait_for_selector("#compare-table tr.diff")
    assert "lr" in page.inner_text("#compare-table tr.diff")
    stats = page.locator("#compare-table tr[data-metric='loss']")
    assert [stats.nth(i).get_attribute("data-stat") for i in range(3)] == ["min", "max", "last"]
    cells = stats.nth(1).locator("td.num").all_inner_texts()
    assert cells == ["1", "1"]  # both losses start at 1
    assert page.locator("#compare-table tr[data-metric='loss'][data-stat='min'] td.best"
                        ).count() == 1
    # Parallel coordinates over the params that differ, and how each goes
    # with the metric: the higher the learning rate, the lower the loss.
    page.wait_for_selector("#parallel-canvas")
    assert page.get_attribute("#parallel-canvas", "data-axes") == "lr,loss"
    assert page.get_attribute("#parallel-canvas", "data-lines") == "3"
    assert float(page.get_attribute("#importance-table tr[data-param='lr']", "data-value")) < -0.9
    page.wait_for_function(f"a => ({_COLOURED})(a) > 300", arg="#parallel-canvas")
    # One click selects every run shown; another clears them.
    page.check("#select-all")
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr.selected')"
                           ".length === 3")
    page.uncheck("#select-all")
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr.selected')"
                           ".length === 0")
    _screenshot(page, tmp_path, "compare.png")


def test_runs_table_columns_scroll_and_pick(page, tmp_path):
    """Thirty runs of forty params: the table scrolls both ways (no column is
    cut off), the header and the run names stay in view, and the picker hides
    columns."""
    import synadb

    path = str(tmp_path / "wide.db")
    with ExperimentTracker(path) as t:
        for r in range(30):
            rid = t.start_run("wide", name=f"wide-{r}")
            t.log_params(rid, {f"param_{i:02d}_with_a_long_name": f"value-{r}-{i}"
                               for i in range(40)})
            t.log_metric(rid, "loss", 1.0 / (r + 1), step=0)
            t.end_run(rid)
    with synadb.launch_studio(path) as studio:
        page.goto(studio.url + "#/experiments")
        page.wait_for_selector("#runs-table th[data-col='m:loss']")
        box = "#runs-box"
        sizes = page.eval_on_selector(box, "e => [e.scrollWidth, e.clientWidth, "
                                           "getComputedStyle(e).overflowX]")
        assert sizes[0] > sizes[1] + 1000 and sizes[2] == "auto"
        assert page.eval_on_selector("#runs-table thead", "e => getComputedStyle(e).position"
                                     ) == "sticky"
        # Scrolled down: the header row stays at the top of the box.
        page.eval_on_selector(box, "e => { e.scrollTop = e.scrollHeight; }")
        page.wait_for_function("""() => { const b = document.querySelector('#runs-box');
            return b.scrollTop > 100 && Math.abs(document.querySelector(
              "#runs-table th[data-col='m:loss']").getBoundingClientRect().top
              - b.getBoundingClientRect().top) < 40; }""")
        # Scrolled to the far right: the last column and the run names show.
        page.eval_on_selector(box, "e => { e.scrollLeft = e.scrollWidth; }")
        inside = """([sel, box]) => { const a = document.querySelector(sel).getBoundingClientRect(),
            b = document.querySelector(box).getBoundingClientRect();
            return a.left >= b.left - 1 && a.right <= b.right + 1; }"""
        page.wait_for_function(inside, arg=["#runs-table th[data-col='m:loss']", box])
        assert page.evaluate(inside, ["#runs-table tbody tr .run-name", box])
        _screenshot(page, tmp_path, "runs-wide.png")
        # The picker: hide a param, find a column by name.
        page.click("#column-picker summary")
        page.uncheck("#column-picker input[data-col='p:param_00_with_a_long_name']")
        page.wait_for_selector("#runs-table th[data-col='p:param_00_with_a_long_name']",
                               state="detached")
        assert page.locator("#runs-table th[data-col='p:param_01_with_a_long_name']").count() == 1
        page.fill("#column-picker .picker-search", "param_39")
        assert page.locator("#column-picker input[data-col]").count() == 1
        # ... and it stays hidden when the page is opened again.
        page.reload()
        page.wait_for_selector("#runs-table th[data-col='m:loss']")
        assert page.locator("#runs-table th[data-col='p:param_00_with_a_long_name']").count() == 0


def test_run_page_has_its_own_url(page, live, tmp_path):
    server, _, runs = live
    rid = runs["lr-0.1"]
    page.goto(server.url + "/#/experiments")
    page.locator(f"#runs-table tr[data-run-id='{rid}'] .run-name").click()
    page.wait_for_url(f"**/#/runs/{rid}")
    # Opened straight from its URL, as a bookmark or a link would.
    page.goto("about:blank")
    page.goto(f"{server.url}/#/runs/{rid}")
    page.wait_for_selector("#run-head h2:has-text('lr-0.1')")
    assert page.inner_text("#run-status") == "Completed"
    # One panel per metric, the system ones in their own section.
    page.wait_for_selector("#run-panels .metric-panel[data-metric='loss'] canvas")
    assert page.locator("#run-panels .metric-panel").count() == 2
    assert page.locator("#run-system .metric-panel").count() == 2
    assert "cpu_percent" in page.inner_text("#system-table")
    page.wait_for_function(f"() => ({_COLOURED})('#run-panels canvas') > 100")
    assert "0.1" in page.inner_text("#run-params") and "batch_size" in page.inner_text(
        "#run-params")
    assert "baseline" in page.inner_text("#run-tags")
    assert "classifier v3" in page.inner_text("#run-models")
    # Artifacts: the image loads, the table sorts, images at three steps
    # get a step slider.
    page.wait_for_function("() => { const i = document.querySelector("
                           "\"#artifacts [data-artifact='plots/gradient.png'] img\");"
                           " return i && i.complete && i.naturalWidth === 24; }")
    first = "#artifacts [data-artifact='confusion'] .artifact-table tbody tr td"
    page.wait_for_selector(first)
    assert page.inner_text(first) == "cat"
    page.click("#artifacts [data-artifact='confusion'] th:text('tp')")
    page.wait_for_function(f"() => document.querySelector(\"{first}\").textContent === 'dog'")
    series = "#artifacts .media-series[data-kind='image']"
    page.wait_for_selector(series)
    img_width = (f"() => {{ const i = document.querySelector(\"{series} img\"); "
                 "return i && i.complete ? i.naturalWidth : 0; }")
    page.wait_for_function(f"() => ({img_width})() === 32")  # the last step shows first
    assert page.get_attribute(series, "data-step") == "2"
    _set_range(page, f"{series} .step-slider", 0)
    page.wait_for_function(f"() => ({img_width})() === 8")
    assert "samples/step_0.png" in page.inner_text(f"{series} .step-label")
    hist = "#artifacts .media-series[data-kind='histogram']"
    if page.locator("#artifacts [data-artifact='pr_curve']").count():  # tracking_media has them
        page.wait_for_selector(f"{hist} .step-view canvas")
        page.wait_for_selector(f"{hist} .heatmap")
        page.wait_for_function(f"a => ({_COLOURED})(a) > 200", arg=f"{hist} canvas")
        page.wait_for_selector("#artifacts [data-artifact='pr_curve'] .plot[data-plot='line'] "
                               "canvas")
    _screenshot(page, tmp_path, "run.png")


def test_media_in_wandb_layout_show_by_step_with_captions(page, live):
    server, _, runs = live
    page.goto(f"{server.url}/#/runs/{runs['lr-0.01']}")
    series = "#artifacts .media-series[data-series='preds']"
    page.wait_for_selector(series)
    # The last step first: both of its images, the caption under the first.
    assert page.get_attribute(series, "data-step") == "1"
    page.wait_for_function(f"() => document.querySelectorAll(\"{series} img\").length === 2")
    page.wait_for_function(f"() => document.querySelector(\"{series} figcaption\")"
                           ".textContent === 'a cat'")
    _set_range(page, f"{series} .step-slider", 0)
    page.wait_for_function(f"() => document.querySelector(\"{series} figcaption\")"
                           ".textContent === 'a cat at step 0'")
    assert page.locator(f"{series} img").count() == 1
    # The caption files are no artifacts of their own on the page.
    assert page.locator("#artifacts [data-artifact$='.png.json']").count() == 0


def test_models_page_links_versions_to_their_runs(page, live, tmp_path):
    server, _, runs = live
    page.goto(server.url + "/#/models")
    page.wait_for_selector("#versions-table .stage-badge")
    stages = page.locator("#versions-table .stage-badge").all_inner_texts()
    assert stages == ["Development", "Production", "Staging"]
    assert "Production" in page.inner_text("#stage-history")
    page.click("#verify-models-btn")
    page.wait_for_function("() => document.querySelectorAll('#versions-table .ok').length === 3")
    _screenshot(page, tmp_path, "models.png")
    link = page.locator("#versions-table tr[data-version='3'] .source-run a")
    assert link.inner_text() == "lr-0.1"
    assert page.locator("#versions-table tr[data-version='1'] .source-run a").count() == 0
    link.click()
    page.wait_for_url(f"**/#/runs/{runs['lr-0.1']}")
    page.wait_for_selector("#run-head h2:has-text('lr-0.1')")


def test_overview_leads_with_runs_models_and_vectors(page, live, tmp_path):
    server, _, runs = live
    page.goto(server.url + "/#/overview")
    page.wait_for_selector("#recent-runs tbody tr")
    assert set(page.locator("#recent-runs .run-name").all_inner_texts()) == set(runs)
    assert page.locator("#recent-models a:text('classifier')").count() == 1
    assert page.locator("#recent-models a:text('lr-0.1')").count() == 1
    assert "60" in page.inner_text("#vector-stores")
    text = page.inner_text("main")
    assert "checkpoint" not in text and text.index("Recent runs") < text.index("File details")
    page.click("#verify-btn")
    page.wait_for_selector("#verify-result .ok")
    _screenshot(page, tmp_path, "overview.png")
    # The favicon, for the tab.
    href = page.get_attribute("link[rel=icon]", "href")
    status, body = server.get(href)
    assert status == 200 and body.startswith(b"<svg")
    assert server.get("/favicon.ico")[0] == 200
    page.locator("#recent-runs .run-name", has_text="lr-0.01").click()
    page.wait_for_url(f"**/#/runs/{runs['lr-0.01']}")
    page.go_back()
    page.click("#recent-models a:text('classifier')")
    page.wait_for_url("**/#/models/classifier")
    page.wait_for_selector("#versions-table tr[data-version='3']")


def test_keys_page(page, live, tmp_path):
    server, _, _ = live
    page.goto(server.url + "/#/keys")
    page.fill("#key-pattern", "blob")
    page.press("#key-pattern", "Enter")
    page.wait_for_selector("#keys-table td:text('blob')")
    page.click("#keys-table td:text('blob')")
    page.wait_for_selector("#hex-view")
    assert "53 59 4e 41" in page.inner_text("#hex-view")
    page.fill("#key-pattern", "sensor/*")
    page.press("#key-pattern", "Enter")
    page.click("#keys-table td:text('sensor/temp')")
    page.wait_for_function(f"() => ({_COLOURED})('#key-chart canvas') > 20")
    _screenshot(page, tmp_path, "keys.png")


def test_vectors_page_highlights_the_query_and_its_neighbours(page, live, tmp_path):
    server, _, _ = live
    page.goto(server.url + "/#/vectors")
    page.wait_for_selector("#pca-canvas")
    page.wait_for_function("() => { const c = document.querySelector('#pca-canvas');"
                           " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height)"
                           ".data; let n = 0; for (let i = 3; i < d.length; i += 4)"
                           " if (d[i] > 0) n++; return n > 500; }")
    # Only the category is offered for colouring, not the free-text title.
    options = page.locator("#pca-color option").all_inner_texts()
    assert "cluster" in options and "title" not in options
    axes = page.inner_text("#pca-axes")
    assert axes.startswith("PC1 (") and "PC2 (" in axes and "% of variance" in axes
    assert page.get_attribute("#pca-canvas", "data-highlighted") == "0"
    page.fill("#nn-key", "doc0")
    page.press("#nn-key", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#neighbors-table tbody tr')"
                           ".length === 10")
    # The query and its ten neighbours are marked on the map.
    page.wait_for_function("() => document.querySelector('#pca-canvas').dataset.highlighted"
                           " === '11'")
    assert page.evaluate(_PIXELS, ["#pca-canvas", "#f2a516"]) > 20  # the query's marker
    assert page.evaluate(_PIXELS, ["#pca-canvas", "#e4572e"]) > 50  # the neighbours' rings
    assert "query" in page.inner_text("#pca-legend")
    _screenshot(page, tmp_path, "vectors.png")
    # In 3D too, and a click elsewhere clears it.
    page.select_option("#pca-dims", "3")
    page.wait_for_function("() => document.querySelector('#pca-axes').textContent"
                           ".includes('PC3 (')")
    page.wait_for_function("() => document.querySelector('#pca-canvas').dataset.highlighted"
                           " === '11'")
    page.click("#nn-clear")
    assert page.get_attribute("#pca-canvas", "data-highlighted") == "0"


def test_live_runs_and_curves_appear_without_reload(page, live):
    server, path, runs = live
    page.goto(server.url + "/#/experiments")
    page.wait_for_selector("#workspace .metric-panel canvas")
    page.evaluate("window.__noReload = true")
    loss = "#workspace .metric-panel[data-metric='loss']"
    with ExperimentTracker(path) as t:
        rid = t.start_run("mnist", name="live-run")
        t.log_param(rid, "lr", "0.5")
        t.log_metric(rid, "loss", 1.0, step=0)
        page.wait_for_selector(f"#runs-table tr[data-run-id='{rid}']")
        # Chart only this run, then watch its curve grow as steps arrive.
        page.locator(f"#runs-table tr[data-run-id='{rid}'] input[type=checkbox]").check()
        page.wait_for_function(f"() => document.querySelector(\"{loss}\").dataset.points"
                               " === '1'")
        for step in range(1, 20):
            t.log_metric(rid, "loss", 1.0 / (step + 1), step=step)
        page.wait_for_function(f"() => document.querySelector(\"{loss}\").dataset.points"
                               " === '20'")
        colour = _run_colour(page, rid)
        page.wait_for_function(f"a => ({_PIXELS})(a) > 20", arg=[f"{loss} canvas", colour])
        # A metric that appears mid-run gets its own panel, in a section
        # named by its prefix.
        t.log_metric(rid, "val/loss", 2.0, step=0)
        page.wait_for_selector("#workspace [data-section='val'] .metric-panel"
                               "[data-metric='val/loss']")
        assert page.locator("#workspace [data-section='charts'] .metric-panel[data-metric="
                            "'loss']").count() == 1
        t.end_run(rid)
        page.wait_for_selector(f"#runs-table tr[data-run-id='{rid}'] .status-Completed")
    assert page.evaluate("window.__noReload") is True  # the same page, never reloaded


def test_launch_studio_returns_a_handle_at_once(studio_file):
    import urllib.error
    import urllib.request

    import synadb

    path, _ = studio_file
    studio = synadb.launch_studio(path)
    try:
        assert studio.port > 0 and studio.url == f"http://127.0.0.1:{studio.port}/"
        assert studio.running and "serving" in repr(studio)
        with urllib.request.urlopen(studio.url + "api/overview", timeout=10) as r:
            assert json.loads(r.read())["runs"] == 3
            # A notebook on this machine may frame it; nothing else may.
            csp = r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'self' http://localhost:*" in csp
            assert r.headers["X-Frame-Options"] is None
        html = studio._repr_html_()
        assert f'<iframe src="{studio.url}"' in html
        with pytest.raises(urllib.error.HTTPError) as e:  # still read-only
            urllib.request.urlopen(urllib.request.Request(
                studio.url + "api/run/delete", data=b"{}", method="POST",
                headers={"X-Synadb-Studio": "1"}), timeout=10)
        assert e.value.code == 403
        e.value.close()
    finally:
        studio.stop()
    assert not studio.running and "stopped" in repr(studio)
    with pytest.raises(OSError):
        urllib.request.urlopen(studio.url + "api/stamp", timeout=5)
    studio.stop()  # twice is fine
    # A context manager; the file was never written to.
    with synadb.launch_studio(path, port=0) as again:
        with urllib.request.urlopen(again.url + "api/stamp", timeout=10) as r:
            assert r.status == 200
    assert not again.running


def test_launch_studio_refuses_a_missing_file_and_a_busy_port(tmp_path, studio_file):
    import synadb

    with pytest.raises(synadb.DatabaseNotFound):
        synadb.launch_studio(str(tmp_path / "missing.db"))
    path, _ = studio_file
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError, match="cannot serve on"):
            synadb.launch_studio(path, port=busy.getsockname()[1])


def test_the_cli_server_refuses_frames(live):
    server, _, _ = live
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": f"127.0.0.1:{server.port}"})
        r = conn.getresponse()
        r.read()
        assert r.getheader("X-Frame-Options") == "DENY"
        assert "frame-ancestors 'none'" in r.getheader("Content-Security-Policy")
    finally:
        conn.close()


def test_studio_shows_inline_in_a_notebook(page, studio_file, tmp_path):
    """What Jupyter does with the handle's _repr_html_: a page on another
    local port frames Studio."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import synadb

    path, _ = studio_file
    with synadb.launch_studio(path) as studio:
        (tmp_path / "notebook.html").write_text(
            "<!doctype html><html><body><h1>notebook</h1>" + studio._repr_html_()
            + "</body></html>")

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            page.goto(f"http://localhost:{httpd.server_address[1]}/notebook.html")
            frame = page.frame_locator("iframe")
            frame.locator("#recent-runs tbody tr").first.wait_for()
            assert frame.locator("#recent-runs .run-name").count() == 3
            _screenshot(page, tmp_path, "notebook.png")
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join()


def test_a_file_with_plain_keys_only(tmp_path):
    """No runs, models or vectors: every page answers, empty."""
    path = str(tmp_path / "plain.db")
    with SynaDB(path) as db:
        db.put_float("x", 1.0)
    with client(path) as c:
        assert c.get("/api/overview").json()["runs"] == 0
        assert c.get("/api/runs").json() == {"runs": [], "params": [], "metrics": []}
        assert c.get("/api/models").json()["models"] == []
        assert c.get("/api/vectors").json() == {"present": False}
        assert c.get("/api/vectors/projection").status_code == 404
        assert c.get("/api/model", params={"name": "nope"}).status_code == 404
        assert c.get("/api/metrics", params={"metric": "loss", "runs": "nope"}).json()[
            "series"] == {}
    # Studio opened it read-only: nothing was added to the file.
    with SynaDB(path, read_only=True) as db:
        assert db.keys() == ["x"]


def test_launch_refuses_a_missing_file(tmp_path):
    from synadb.studio import main

    assert main([str(tmp_path / "missing.db"), "--port", "0"]) == 1


def test_port_0_reports_the_bound_port_and_a_busy_port_is_exit_1(tmp_path):
    path = str(tmp_path / "p.db")
    SynaDB(path).close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        got = subprocess.run([sys.executable, "-m", "synadb.cli", "studio", path, "--port",
                              str(port), "--json"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert (got.returncode, got.stdout) == (1, "")
    assert "error: cannot serve on" in got.stderr  # the CLI's one error format
    assert "Traceback" not in got.stderr
    proc = subprocess.Popen([sys.executable, "-m", "synadb.cli", "studio", path, "--port", "0",
                             "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert port != 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/stamp")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_what_the_wandb_api_logs_shows_on_the_run_page(page, tmp_path):
    """Media logged through ``synadb.integrations.wandb`` (W&B's own calls)
    render as Studio's typed media: images by step with captions,
    histograms over steps, a sortable table and the plots."""
    wandb = pytest.importorskip("synadb.integrations.wandb")
    import synadb

    run = wandb.init(project="media", name="wb", config={"lr": 0.01}, dir=str(tmp_path))
    rng = np.random.default_rng(3)
    for step in range(3):
        run.log({"loss": 1 / (step + 1),
                 "preds": [wandb.Image(rng.random((8, 8, 3)), caption=f"pred {step}-{i}")
                           for i in range(2)],
                 "weights": wandb.Histogram(rng.normal(step, 1, 200))}, step=step)
    table = wandb.Table(columns=["x", "y"], data=[[i, 10 - i] for i in range(5)])
    run.log({"squares": table, "line": wandb.plot.line(table, "x", "y", title="down")})
    rid = run.id
    wandb.finish()
    path = next(tmp_path.glob("*.db"))
    with synadb.launch_studio(path) as studio:
        page.goto(f"{studio.url}#/runs/{rid}")
        preds = "#artifacts .media-series[data-series='preds']"
        page.wait_for_function(f"() => document.querySelectorAll(\"{preds} img\").length === 2")
        page.wait_for_function(f"() => document.querySelector(\"{preds} figcaption\")"
                               ".textContent === 'pred 2-0'")
        page.wait_for_selector("#artifacts .media-series[data-series='weights'] .heatmap")
        first = "#artifacts [data-artifact$='.table.json'] tbody tr td"
        page.wait_for_selector(first)
        page.click("#artifacts [data-artifact$='.table.json'] th:text('y')")
        page.wait_for_function(f"() => document.querySelector(\"{first}\").textContent === '4'")
        page.wait_for_selector("#artifacts .plot[data-plot='line'] canvas")
        _screenshot(page, tmp_path, "wandb-run.png")


def test_every_page_of_a_file_with_plain_keys_only(page, tmp_path):
    """No runs, models or vectors: each page says so, and none throws."""
    import synadb

    path = str(tmp_path / "plain.db")
    with SynaDB(path) as db:
        db.put_float("x", 1.0)
    with synadb.launch_studio(path) as studio:
        for route, text in (("overview", "No runs yet"), ("experiments", "No runs."),
                            ("models", "No models in this file."),
                            ("vectors", "This file holds no vector store."),
                            ("runs/nope", "no run 'nope'")):
            page.goto(f"{studio.url}#/{route}")
            page.locator("main").get_by_text(text).first.wait_for()
        page.goto(f"{studio.url}#/keys")
        page.wait_for_selector("#keys-table td:text('x')")


def _run_colour_index(run_id: str, palette: int = 15) -> int:
    """app.js's runColor: FNV-1a of the id, modulo the palette's size."""
    h = 0x811C9DC5
    for ch in run_id:
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    return h % palette


def _id_of_colour(index: int) -> str:
    """A run id that app.js draws in palette colour ``index``."""
    return next(f"{n:032x}" for n in range(1000) if _run_colour_index(f"{n:032x}") == index)


def make_training_file(path: str, rng: np.random.Generator) -> list[str]:
    """Five noisy training runs of 300 steps, an hour or so each: train/ and
    val/ curves, a cosine learning rate and system metrics.  Their ids give
    them five well-told-apart colours."""
    ids = []
    with ExperimentTracker(path) as t:
        for i, (name, lr, bs) in enumerate((
                ("resnet18-lr3e-4", 3e-4, 128), ("resnet18-lr1e-3", 1e-3, 128),
                ("resnet18-lr3e-3", 3e-3, 256), ("resnet34-lr1e-3", 1e-3, 128),
                ("vit-tiny-lr5e-4", 5e-4, 64))):
            rid = t.start_run("cifar10", name=name, run_id=_id_of_colour(i),
                              start_time=time.time() - 3600 * (5 - i) - 600 * i,
                              tags=["baseline"] if "18" in name else ["sweep"])
            t.log_params(rid, {"lr": lr, "batch_size": bs, "optimizer": "adamw", "epochs": 30,
                               "weight_decay": 0.05, "model": name.split("-")[0]})
            k, floor = 2.5 + 900 * lr + rng.uniform(0, 0.6), 0.15 + rng.uniform(0, 0.25)
            for step in range(300):
                x = step / 300
                loss = floor + 2.2 * np.exp(-k * x * 3) + rng.normal(0, 0.06)
                t.log_metrics(rid, {"train/loss": loss,
                                    "train/acc": 1 - loss / 2.6 + rng.normal(0, 0.01),
                                    "train/lr": lr * 0.5 * (1 + np.cos(np.pi * x))}, step=step)
                if step % 10 == 0:
                    t.log_metrics(rid, {"val/loss": loss + 0.1 + rng.normal(0, 0.03),
                                        "val/acc": 1 - (loss + 0.1) / 2.6}, step=step)
                    t.log_metrics(rid, {"system/cpu_percent": 70 + rng.normal(0, 8),
                                        "system/gpu_util": 88 + rng.normal(0, 4)}, step=step)
            t.end_run(rid)
            ids.append(rid)
    return ids


def test_workspace_of_a_training_sweep(page, tmp_path, monkeypatch):
    """The README's picture: ``STUDIO_SCREENSHOT=docs/studio.png pytest
    tests/test_studio.py -k sweep`` writes it."""
    import synadb

    monkeypatch.chdir(tmp_path)  # the page shows the path as given
    ids = make_training_file("experiments.db", np.random.default_rng(7))
    with synadb.launch_studio("experiments.db") as studio:
        page.set_viewport_size({"width": 1400, "height": 1050})
        page.goto(studio.url + "#/experiments")
        page.wait_for_selector("#workspace [data-section='train'] .metric-panel canvas")
        assert page.locator("#workspace [data-section='val'] .metric-panel").count() == 2
        for rid in ids:
            assert page.get_attribute(f"#workspace-legend [data-run-id='{rid}'] .swatch",
                                      "data-color") == _run_colour(page, rid)
        _set_range(page, "#smoothing", 0.6)
        page.wait_for_function("() => document.querySelector('#workspace .metric-panel')"
                               ".dataset.lines === '10'")
        out = tmp_path / "sweep.png"
        page.screenshot(path=str(out))
        assert out.stat().st_size > 50_000
        if os.environ.get("STUDIO_SCREENSHOT"):
            shutil.copy(out, os.environ["STUDIO_SCREENSHOT"])
