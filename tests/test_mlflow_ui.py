"""MLflow's own web UI over a synadb file, in headless Chromium.

A file is filled through the real mlflow (runs with a diverging loss that
reaches inf and nan, params, tags, a pandas dataset input, a logged pyfunc
model registered as a version, traces with nested spans and a feedback
assessment).  Then a real ``mlflow server --backend-store-uri
synadb:///.../ui.db`` serves it and Playwright opens the pages MLflow 3 shows
for it: the runs table and its charts, a run, the logged models, the
registered model, the traces and one trace, and the GenAI overview pages.
Every HTTP response the page gets is recorded: none may be a 5xx, no GraphQL
answer may carry an error, and the page must show the names and values that
were logged.

The same data on ``--backend-store-uri sqlite:///...`` is the control: each
page must also render there, and every API endpoint the page calls must
answer alike (same status class) on both servers.

The browser tests need /usr/bin/chromium (Debian's ``chromium``; make test
installs it, see .ci/chromium.sh).  Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import forget_mlflow_state

mlflow = pytest.importorskip("mlflow")
pd = pytest.importorskip("pandas")

ROOT = str(Path(__file__).resolve().parents[1])
MLFLOW_BIN = str(Path(sys.executable).parent / "mlflow")
# Bounds, not delays: a busy 2-core machine needs them generous.
SERVER_START_TIMEOUT_S = 180
WAIT_MS = 60_000
EXPERIMENT = "ui-check"


# ---------------------------------------------------------------- the data
def prepare(tracking_uri: str, artifact_location: str | None = None) -> dict[str, str]:
    """Log the UI's material through the real mlflow; returns the ids."""
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own warnings are not under test here
        mp.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # set_experiment exports it
        mlflow.set_tracking_uri(tracking_uri)
        forget_mlflow_state()
        try:
            return _log_runs_models_and_traces(artifact_location)
        finally:
            forget_mlflow_state()
            mlflow.set_tracking_uri(before)


def _log_runs_models_and_traces(artifact_location: str | None) -> dict[str, str]:
    import mlflow.pyfunc
    from mlflow.entities import AssessmentSource

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str], params=None) -> list[str]:
            return model_input

    @mlflow.trace(span_type="LLM")
    def generate(question):
        with mlflow.start_span("tokenize") as span:
            span.set_attribute("n_tokens", 3)
        return "forty-two"

    @mlflow.trace(span_type="CHAIN")
    def answer(question):
        with mlflow.start_span("retrieve", span_type="RETRIEVER") as span:
            span.set_inputs({"query": question})
            span.set_outputs(["doc-a", "doc-b"])
        return generate(question)

    exp_id = mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=exp_id)
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0]})
    with mlflow.start_run(run_name="diverging") as diverging:
        mlflow.log_params({"lr": "0.5", "optimizer": "sgd"})
        mlflow.set_tags({"team": "vision"})
        for step, loss in enumerate([1.0, 3.5, float("inf"), float("nan")]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metric("grad_norm", float("inf"))
        mlflow.log_metric("best_acc", 0.25)
        mlflow.log_input(mlflow.data.from_pandas(train, name="train"), context="training")
        model = mlflow.pyfunc.log_model(name="echo_model", python_model=Echo(),
                                        pip_requirements=["mlflow"])
    mlflow.register_model(model.model_uri, "echo")  # the file is the registry too
    with mlflow.start_run(run_name="steady") as steady:
        mlflow.log_params({"lr": "0.01", "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("best_acc", 0.93)
    answer("what is the answer?")
    judged = mlflow.get_last_active_trace_id()
    mlflow.log_feedback(trace_id=judged, name="correctness", value=True,
                        rationale="matches the reference answer",
                        source=AssessmentSource(source_type="HUMAN", source_id="reviewer"))
    answer("second question")
    return {"exp": exp_id, "run": diverging.info.run_id, "steady": steady.info.run_id,
            "model": model.model_id, "trace": judged}


# ---------------------------------------------------------------- the servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Site:
    """A running ``mlflow server`` and the ids of what it serves."""

    backend: str
    base: str
    ids: dict[str, str]
    log: Path
    proc: subprocess.Popen

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def get_json(self, route: str, **query: Any) -> Any:
        url = f"{self.base}{route}?{urllib.parse.urlencode(query, doseq=True)}"
        with urllib.request.urlopen(url, timeout=60) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its workers
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def start_server(backend: str, backend_uri: str, ids: dict[str, str], tmp: Path) -> Site:
    """``mlflow server`` on a free loopback port; returns once /health answers."""
    port = _free_port()
    log = tmp / f"{backend}-server.log"
    with open(log, "wb") as out:  # the child keeps its own copy of the handle
        proc = subprocess.Popen(
            [MLFLOW_BIN, "server", "--backend-store-uri", backend_uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            cwd=tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": ROOT})
    site = Site(backend, f"http://127.0.0.1:{port}", ids, log, proc)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{site.server_log()}")
        try:
            with urllib.request.urlopen(f"{site.base}/health", timeout=10) as r:
                if r.status == 200:
                    return site
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            site.stop()
            raise RuntimeError(f"mlflow server did not answer /health within "
                               f"{SERVER_START_TIMEOUT_S} s:\n{site.server_log()}")
        time.sleep(0.25)  # the polling interval of a bounded wait


@pytest.fixture(scope="module")
def synadb_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-ui-synadb")
    uri = f"synadb://{tmp / 'ui.db'}"
    site = start_server("synadb", uri, prepare(uri), tmp)
    yield site
    site.stop()


@pytest.fixture(scope="module")
def sqlite_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-ui-sqlite")
    uri = f"sqlite:///{tmp / 'ui-sqlite.db'}"
    ids = prepare(uri, artifact_location=(tmp / "artifacts").as_uri())
    site = start_server("sqlite", uri, ids, tmp)
    yield site
    site.stop()


# ------------------------------------------ the browser (the fixture is in conftest.py)


_IDS = re.compile(r"\b(?:tr-|m-)?[0-9a-f]{32}\b")


def _endpoint(response) -> str:
    """"POST /ajax-api/2.0/mlflow/runs/search": the method and path, ids as {id}."""
    path = urllib.parse.urlsplit(response.url).path
    return f"{response.request.method} {_IDS.sub('{id}', path)}"


@dataclass
class Call:
    endpoint: str  # see _endpoint
    url: str
    status: int
    graphql_errors: list[str] = field(default_factory=list)


def _graphql_errors(body: Any) -> list[str]:
    """The ``errors`` of a GraphQL answer and every non-null ``apiError`` in it."""
    found = [json.dumps(e) for e in (body.get("errors") or [])] if isinstance(body, dict) else []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "apiError" and value:
                    found.append(json.dumps(value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(body)
    return found


class Tab:
    """One browser tab on one server, recording every HTTP response and every
    uncaught page error."""

    def __init__(self, context, site: Site):
        self.site = site
        self.page = context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.calls: list[Call] = []
        self.page_errors: list[str] = []
        self.page.on("response", self._record)
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def _record(self, response) -> None:
        path = urllib.parse.urlsplit(response.url).path
        if path.startswith("/static-files/") or not response.url.startswith(self.site.base):
            return
        call = Call(_endpoint(response), response.url, response.status)
        if path == "/graphql":
            try:
                call.graphql_errors = _graphql_errors(response.json())
            except Exception as e:  # noqa: BLE001 - an unreadable answer is an error too
                call.graphql_errors = [f"unreadable GraphQL answer: {e!r}"]
        self.calls.append(call)

    def open(self, route: str) -> None:
        self.page.goto(f"{self.site.base}/#/{route.format(**self.site.ids)}")

    def see(self, *texts: str) -> None:
        """Wait until each text shows somewhere visible on the page."""
        from playwright.sync_api import expect

        for text in texts:
            expect(self.page.get_by_text(text).filter(visible=True).first).to_be_visible(
                timeout=WAIT_MS)

    def wait_for_call(self, endpoint: str) -> None:
        """Wait until the page has had an answer from the endpoint."""
        if not any(c.endpoint == endpoint for c in self.calls):
            self.page.wait_for_event("response", lambda r: _endpoint(r) == endpoint,
                                     timeout=WAIT_MS)

    def api(self) -> dict[str, set[int]]:
        """Each endpoint the page called, with the statuses it got."""
        out: dict[str, set[int]] = {}
        for c in self.calls:
            out.setdefault(c.endpoint, set()).add(c.status)
        return out

    def assert_healthy(self) -> None:
        where = f"on the {self.site.backend} server"
        server_errors = [f"{c.status} {c.url}" for c in self.calls if c.status >= 500]
        assert not server_errors, (f"5xx answers {where}: {server_errors}\n"
                                   f"server log:\n{self.site.server_log()}")
        graphql = [e for c in self.calls for e in c.graphql_errors]
        assert not graphql, f"GraphQL errors {where}: {graphql}"
        assert not self.page_errors, f"uncaught page errors {where}: {self.page_errors}"


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1600, "height": 1100})
    yield ctx
    ctx.close()


@pytest.fixture
def tab(context, synadb_site):
    return Tab(context, synadb_site)


# ---------------------------------------------------------------- the pages
@dataclass(frozen=True)
class Page:
    """A route of MLflow's UI, what it must show, and the calls it must make."""

    route: str
    texts: tuple[str, ...]
    calls: tuple[str, ...]


API2, API3 = "/ajax-api/2.0/mlflow", "/ajax-api/3.0/mlflow"
PAGES = {
    "runs table": Page(
        "experiments/{exp}/runs", ("diverging", "steady", "train (", "echo"),
        (f"POST {API2}/runs/search", f"POST {API2}/experiments/search-datasets",
         f"POST {API2}/logged-models/search")),
    "runs charts": Page(
        "experiments/{exp}/runs?compareRunsMode=CHART", ("Model metrics", "best_acc"),
        (f"GET {API2}/metrics/get-history-bulk-interval",)),
    "run": Page(
        "experiments/{exp}/runs/{run}", ("diverging", "optimizer", "sgd", "vision", "train ("),
        ("POST /graphql", f"GET {API2}/model-versions/search")),
    "run artifacts": Page(
        "experiments/{exp}/runs/{run}/artifacts", ("MLmodel", "python_model.pkl"),
        (f"GET {API2}/artifacts/list", f"GET {API2}/logged-models/{{id}}/artifacts/directories")),
    "compare runs": Page(
        'compare-runs?runs=["{run}","{steady}"]&experiments=["{exp}"]',
        ("Comparing 2 Runs", "diverging", "steady", "NaN"),
        (f"POST {API2}/runs/search",)),
    "logged models": Page(
        "experiments/{exp}/models", ("echo_model", "Ready", "diverging"),
        (f"POST {API2}/logged-models/search", f"GET {API2}/runs/get")),
    "logged model": Page(
        "experiments/{exp}/models/{model}", ("echo_model", "{model}", "best_acc"),
        (f"GET {API2}/logged-models/{{id}}", f"GET {API2}/runs/get")),
    "registered models": Page(
        "models", ("echo", "Version 1"), (f"GET {API2}/registered-models/search",)),
    "model version": Page(
        "models/echo/versions/1", ("Source Run", "diverging", "echo_model"),
        (f"GET {API2}/model-versions/get", "GET /model-versions/get-artifact")),
    "traces": Page(
        "experiments/{exp}/traces", ("what is the answer?", "second question", "correctness"),
        (f"POST {API3}/traces/search",)),
    "trace": Page(
        "experiments/{exp}/traces?selectedEvaluationId={trace}", ("retrieve", "generate"),
        (f"GET {API3}/traces/{{id}}", f"GET {API3}/get-trace-artifact")),
    "overview": Page(
        "experiments/{exp}", ("Usage", "Latency", "Errors"), (f"POST {API3}/traces/metrics",)),
    "overview quality": Page(
        "experiments/{exp}/overview/quality", ("Quality Summary", "correctness"),
        (f"POST {API3}/traces/metrics",)),
    "overview tool calls": Page(
        "experiments/{exp}/overview/tool-calls", ("Total Tool Calls",),
        (f"POST {API3}/traces/metrics",)),
    "evaluation runs": Page(
        "experiments/{exp}/evaluation-runs", ("Evaluation runs", "steady"),
        (f"POST {API2}/runs/search",)),
    "judges": Page(
        "experiments/{exp}/judges", ("New LLM judge",), (f"GET {API3}/scorers/list",)),
    "datasets": Page(
        "experiments/{exp}/datasets", ("Create dataset",), (f"POST {API3}/datasets/search",)),
    "prompts": Page(
        "experiments/{exp}/prompts", ("Create your first prompt",),
        (f"GET {API2}/registered-models/search",)),
}


def visit(context, site: Site, page: Page) -> Tab:
    """Open the page, wait for its texts and calls, and check the answers."""
    tab = Tab(context, site)
    tab.open(page.route)
    tab.see(*(t.format(**site.ids) for t in page.texts))
    for endpoint in page.calls:
        tab.wait_for_call(endpoint)
    tab.assert_healthy()
    return tab


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_and_calls_the_api_like_sqlite(context, synadb_site, sqlite_site, name):
    page = PAGES[name]
    ours = visit(context, synadb_site, page)
    theirs = visit(context, sqlite_site, page)
    for endpoint in page.calls:
        assert max(ours.api()[endpoint]) < 400, (endpoint, ours.api()[endpoint])
    # An endpoint both pages called answers alike (the UI asks for /users/current,
    # which is a 404 on both); an error only synadb gives is a synadb bug.
    both = ours.api().keys() & theirs.api().keys()
    differ = {e: (sorted(ours.api()[e]), sorted(theirs.api()[e])) for e in both
              if {s // 100 for s in ours.api()[e]} != {s // 100 for s in theirs.api()[e]}}
    assert not differ, f"status differs (synadb, sqlite): {differ}"
    only_ours_failing = {e: sorted(s) for e, s in ours.api().items()
                         if e not in theirs.api() and max(s) >= 400}
    assert not only_ours_failing, only_ours_failing


# ---------------------------------------------------------------- closer looks
def test_runs_table_shows_the_dataset_and_model_of_the_run(tab):
    from playwright.sync_api import expect

    def row(run_id):  # MLflow's grid draws a row in parts (pinned and scrolled cells)
        return tab.page.locator(f'[role="row"][row-id="{run_id}"]')

    tab.open(PAGES["runs table"].route)
    tab.see("Dataset")
    ids = tab.site.ids
    expect(row(ids["run"]).filter(has_text="train (").first).to_be_visible(timeout=WAIT_MS)
    expect(row(ids["run"]).filter(has_text="Training").first).to_be_visible(timeout=WAIT_MS)
    # The Models column names the run's model by its registered version.
    expect(row(ids["run"]).locator('a[href$="#/models/echo/versions/1"]')).to_be_visible(
        timeout=WAIT_MS)
    expect(row(ids["steady"]).filter(has_text="steady").first).to_be_visible(timeout=WAIT_MS)
    expect(row(ids["steady"]).filter(has_text="train (")).to_have_count(0)
    tab.assert_healthy()


def test_run_with_inf_and_nan_metrics_loads(tab):
    from playwright.sync_api import expect

    tab.open(PAGES["run"].route)
    tab.see("About this run", tab.site.ids["run"])
    row = tab.page.get_by_role("row").filter(visible=True)
    for name, value in (("optimizer", "sgd"), ("lr", "0.5"), ("best_acc", "0.25")):
        expect(row.filter(has_text=name).first).to_contain_text(value, timeout=WAIT_MS)
    tab.see("team", "vision", "train (", "echo_model")
    expect(tab.page.get_by_text("Can't load run details")).to_have_count(0)
    tab.assert_healthy()


def test_trace_detail_shows_nested_spans_and_the_feedback(tab):
    from playwright.sync_api import expect

    def component(name):  # MLflow's own component ids in the trace explorer
        return tab.page.locator(f'[data-component-id="shared.model-trace-explorer.{name}"]')

    tab.open(PAGES["trace"].route)
    tab.see("what is the answer?", "forty-two")
    for span in ("answer", "retrieve", "generate", "tokenize"):
        expect(tab.page.get_by_text(span, exact=True).filter(visible=True).first).to_be_visible(
            timeout=WAIT_MS)
    component("assessments-pane-toggle").filter(visible=True).first.click()
    tab.see("correctness")
    component("toggle-assessment-expanded").filter(visible=True).first.click()
    tab.see("matches the reference answer", "reviewer")
    tab.page.get_by_text("retrieve", exact=True).filter(visible=True).first.click()
    tab.see("doc-a")  # the retriever span's outputs
    tab.assert_healthy()


# ---------------------------------------------------------------- the REST answers behind
def _history(site: Site, run: str) -> list[tuple[int, Any]]:
    body = site.get_json("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                         run_ids=[run], metric_key="loss", max_results=320)
    return [(m["step"], m["value"]) for m in body["metrics"]]


def test_diverging_loss_history_reads_like_sqlite(synadb_site, sqlite_site):
    ours = _history(synadb_site, synadb_site.ids["run"])
    theirs = _history(sqlite_site, sqlite_site.ids["run"])
    assert ours == theirs == [(0, 1.0), (1, 3.5), (2, sys.float_info.max), (3, "NaN")]
    assert math.isnan(float(ours[3][1]))
