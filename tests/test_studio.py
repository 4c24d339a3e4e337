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
    """A file with plain keys, three runs with metrics and artifacts, a model
    with three versions in different stages, and a small vector store."""
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
            t.end_run(rid)
            runs[f"lr-{lr}"] = rid
    with ModelRegistry(path, progress=False) as reg:
        for i in range(3):
            reg.save_model("classifier", bytes([i]) * 500, {"accuracy": f"0.9{i}"})
        reg.set_stage("classifier", 2, "Production")
        reg.set_stage("classifier", 3, "Staging")
    from synadb.vectors.store import VectorStore

    with VectorStore(path, dimensions=8, progress=False) as vs:
        x = rng.normal(size=(60, 8)).astype(np.float32)
        x[:30] += 4
        vs.insert_batch([f"doc{i}" for i in range(60)], x,
                        [{"cluster": "a" if i < 30 else "b"} for i in range(60)])
    return runs


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
        assert listed["params"] == ["batch_size", "lr"] and listed["metrics"] == ["acc", "loss"]
        rid = runs["lr-0.1"]
        series = c.get("/api/metrics", params={"metric": "loss", "runs": rid}).json()
        assert series["series"][rid]["step"] == list(range(25))
        cmp = c.get("/api/compare", params={"runs": f"{rid},{runs['lr-0.01']}"}).json()
        assert cmp["params_that_differ"] == ["lr"]

        table = c.get("/api/artifact", params={"run": rid, "name": "confusion"}).json()
        assert table["view"] == "table" and table["data"][0] == ["cat", 10, 2]
        png = c.get("/api/artifact/raw", params={"run": rid, "name": "plots/gradient.png"})
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.headers["content-type"] == "image/png"
        assert "sandbox" in png.headers["content-security-policy"]

        model = c.get("/api/model", params={"name": "classifier"}).json()
        assert [v["stage"] for v in model["versions"]] == ["Development", "Production", "Staging"]
        assert [h["to"] for h in model["stage_history"]][-2:] == ["Production", "Staging"]
        assert c.get("/api/model/verify", params={"name": "classifier"}).json()["verified"] == {
            "1": True, "2": True, "3": True}

        proj = c.get("/api/vectors/projection", params={"dims": 3, "color": "cluster"}).json()
        assert len(proj["points"]) == 60 and len(proj["points"][0]) == 3
        assert set(proj["colors"]) == {"a", "b"}
        nn = c.get("/api/vectors/neighbors", params={"key": "doc0", "k": 5}).json()
        assert len(nn["neighbors"]) == 5 and all(n["key"] != "doc0" for n in nn["neighbors"])
        # The first 30 vectors were shifted together: doc0's neighbours are among them.
        assert all(n["metadata"]["cluster"] == "a" for n in nn["neighbors"])


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
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m synadb.studio FILE`` in a subprocess."""

    def __init__(self, path: str, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synadb.studio", path, "--port", str(self.port), *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:  # bounded poll until it answers
            if self.proc.poll() is not None:
                raise RuntimeError("studio exited: " + self.proc.stderr.read().decode())
            try:
                status, _ = self.get("/api/stamp")
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("studio did not answer within 30 s")
            time.sleep(0.05)

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
        if self.proc.stderr:
            self.proc.stderr.close()


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


# Counts canvas pixels close to the chart's first colour (#2f6fde): the
# curves, not the axes or the grid.
_CURVE_PIXELS = """(sel) => {
  let n = 0;
  for (const c of document.querySelectorAll(sel)) {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 200 && Math.abs(d[i] - 47) < 40 && Math.abs(d[i + 1] - 111) < 40
          && Math.abs(d[i + 2] - 222) < 40) n++;
  }
  return n;
}"""


def _screenshot(page, tmp_path, name):
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
    # One run writes the README's picture: STUDIO_SCREENSHOT=docs/studio.png
    if name == "experiments.png" and os.environ.get("STUDIO_SCREENSHOT"):
        shutil.copy(out, os.environ["STUDIO_SCREENSHOT"])
    return out


def test_runs_table_and_metric_chart(page, live, tmp_path):
    server, _, runs = live
    page.goto(server.url + "/#/experiments")
    rows = page.locator("#runs-table tbody tr")
    page.wait_for_function("n => document.querySelectorAll('#runs-table tbody tr').length >= n",
                           arg=len(runs))
    names = rows.locator(".run-name").all_inner_texts()
    assert set(runs) <= set(names)
    page.wait_for_selector("#metric-chart canvas")
    page.wait_for_function(f"() => ({_CURVE_PIXELS})('#metric-chart canvas') > 50")
    # Sorting by a param puts lr=0.001 first.
    page.click("#runs-table th[data-col='p:lr']")
    page.wait_for_function("() => document.querySelector('#runs-table tbody tr .run-name')"
                           ".textContent === 'lr-0.001'")
    # Filtering, then comparing two runs side by side.
    page.fill("#run-filter", "lr=0.1")
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr').length === 1")
    page.fill("#run-filter", "")
    for name in ("lr-0.1", "lr-0.01"):
        page.locator(f"#runs-table tr[data-run-id='{runs[name]}'] input[type=checkbox]").check()
    page.click("#compare-btn")
    page.wait_for_selector("#compare-table tr.diff")
    assert "lr" in page.inner_text("#compare-table tr.diff")
    # A run's artifacts: the image loads, the table renders.
    page.locator(f"#runs-table tr[data-run-id='{runs['lr-0.1']}'] .run-name").click()
    page.wait_for_selector("#artifacts .artifact-table td")
    page.wait_for_function("() => { const i = document.querySelector('#artifacts img');"
                           " return i && i.complete && i.naturalWidth === 24; }")
    _screenshot(page, tmp_path, "experiments.png")


def test_models_page_shows_stages(page, live, tmp_path):
    server, _, _ = live
    page.goto(server.url + "/#/models")
    page.wait_for_selector("#versions-table .stage-badge")
    stages = page.locator("#versions-table .stage-badge").all_inner_texts()
    assert stages == ["Development", "Production", "Staging"]
    assert "Production" in page.inner_text("#stage-history")
    page.click("#verify-models-btn")
    page.wait_for_function("() => document.querySelectorAll('#versions-table .ok').length === 3")
    _screenshot(page, tmp_path, "models.png")


def test_overview_keys_and_vectors_pages(page, live, tmp_path):
    server, _, _ = live
    page.goto(server.url + "/#/overview")
    page.wait_for_selector("#overview-cards")
    page.click("#verify-btn")
    page.wait_for_selector("#verify-result .ok")
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
    page.wait_for_function(f"() => ({_CURVE_PIXELS})('#key-chart canvas') > 20")
    page.goto(server.url + "/#/vectors")
    page.wait_for_function("() => { const c = document.querySelector('#pca-canvas');"
                           " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height)"
                           ".data; let n = 0; for (let i = 3; i < d.length; i += 4)"
                           " if (d[i] > 0) n++; return n > 500; }")
    page.click("#vectors-info")  # no-op click: the page stays alive
    page.fill("#nn-key", "doc0")
    page.press("#nn-key", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#neighbors-table tbody tr')"
                           ".length === 10")
    _screenshot(page, tmp_path, "vectors.png")


def test_live_runs_and_curves_appear_without_reload(page, live):
    server, path, runs = live
    page.goto(server.url + "/#/experiments")
    page.wait_for_selector("#metric-chart canvas")
    page.evaluate("window.__noReload = true")
    with ExperimentTracker(path) as t:
        rid = t.start_run("mnist", name="live-run")
        t.log_param(rid, "lr", "0.5")
        t.log_metric(rid, "loss", 1.0, step=0)
        page.wait_for_selector(f"#runs-table tr[data-run-id='{rid}']")
        # Chart only this run, then watch its curve grow as steps arrive.
        page.locator(f"#runs-table tr[data-run-id='{rid}'] input[type=checkbox]").check()
        page.wait_for_function("() => document.querySelector('#metric-chart').dataset.points"
                               " === '1'")
        for step in range(1, 20):
            t.log_metric(rid, "loss", 1.0 / (step + 1), step=step)
        page.wait_for_function("() => document.querySelector('#metric-chart').dataset.points"
                               " === '20'")
        page.wait_for_function(f"() => ({_CURVE_PIXELS})('#metric-chart canvas') > 20")
        t.end_run(rid)
        page.wait_for_selector(f"#runs-table tr[data-run-id='{rid}'] .status-Completed")
    assert page.evaluate("window.__noReload") is True  # the same page, never reloaded


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
    assert "synadb studio: error: cannot serve on" in got.stderr
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
