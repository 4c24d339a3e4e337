"""MLflow 3 traces in a synadb file (the ``synadb://`` tracking store's trace
API), with the real mlflow: traced code read back like on MLflow's own
SQLite store, across processes, and after reopening the file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import AssessmentSource, Feedback, TraceInfo, TraceState  # noqa: E402
from mlflow.entities.trace_location import TraceLocation  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracing.constant import SpansLocation, TraceTagKey  # noqa: E402

from synadb.integrations.mlflow_store import SynaTrackingStore  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])

# MLflow's tracing warns about its own type-hint inference, and its SQLite
# store (the reference here) about SQLAlchemy deprecations: not ours to fix.
MLFLOW_WARNINGS = pytest.mark.filterwarnings(
    "ignore:.*type hint is inferred:UserWarning",
    "ignore::sqlalchemy.exc.SADeprecationWarning")


@pytest.fixture
def tracking(monkeypatch):
    """Point the fluent API at a URI for the test; traces export synchronously."""
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    before = mlflow.get_tracking_uri()

    def use(uri):
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("traced")
        return MlflowClient(uri)

    yield use
    mlflow.set_tracking_uri(before)


@mlflow.trace(span_type="CHAIN")
def answer(question):
    with mlflow.start_span("retrieve", span_type="RETRIEVER") as span:
        span.set_inputs({"query": question})
        docs = ["doc-a", "doc-b"]
        span.set_outputs(docs)
    with mlflow.start_span("generate", span_type="LLM") as span:
        span.set_inputs({"docs": docs})
        with mlflow.start_span("tokenize") as inner:
            inner.set_attribute("n", 3)
        span.set_outputs("42")
    mlflow.update_current_trace(tags={"team": "qa"})
    return "42"


def _trace_once(client):
    answer("what is the answer?")
    mlflow.flush_trace_async_logging()
    trace_id = mlflow.get_last_active_trace_id()
    return mlflow.get_trace(trace_id), client.search_traces(
        locations=[mlflow.get_experiment_by_name("traced").experiment_id])


def _shape(trace):
    """What must be equal between stores: spans (names, parents, types,
    inputs, outputs, attributes) and the trace's state, name and previews."""
    by_id = {s.span_id: s.name for s in trace.data.spans}
    spans = sorted(
        (s.name, by_id.get(s.parent_id), s.span_type, json.dumps(s.inputs, sort_keys=True),
         json.dumps(s.outputs, sort_keys=True), s.get_attribute("n"), s.status.status_code)
        for s in trace.data.spans)
    info = trace.info
    return (spans, info.state, info.tags.get(TraceTagKey.TRACE_NAME), info.tags.get("team"),
            info.tags.get(TraceTagKey.SPANS_LOCATION), info.request_preview,
            info.response_preview)


@MLFLOW_WARNINGS
def test_traced_code_reads_back_like_on_sqlite(tracking, tmp_path):
    syna_trace, syna_found = _trace_once(tracking(f"synadb://{tmp_path}/x.db"))
    sql_trace, sql_found = _trace_once(tracking(f"sqlite:///{tmp_path}/y.db"))

    assert _shape(syna_trace) == _shape(sql_trace)
    assert _shape(syna_trace)[0][0][:2] == ("answer", None)
    assert syna_trace.info.tags[TraceTagKey.SPANS_LOCATION] == SpansLocation.TRACKING_STORE.value
    assert [t.info.trace_id for t in syna_found] == [syna_trace.info.trace_id]
    assert [_shape(t) for t in syna_found] == [_shape(t) for t in sql_found]
    # Everything is in the one file: no artifact folder beside it.
    assert [f for f in os.listdir(tmp_path) if not f.startswith("y.db")] == ["x.db"]


@MLFLOW_WARNINGS
def test_search_filters_and_assessments_on_the_file(tracking, tmp_path):
    client = tracking(f"synadb://{tmp_path}/x.db")
    first, second = (_trace_once(client)[0].info.trace_id for _ in range(2))
    exp_id = mlflow.get_experiment_by_name("traced").experiment_id

    mlflow.log_feedback(trace_id=first, name="good", value=True,
                        source=AssessmentSource(source_type="HUMAN"))
    client.set_trace_tag(second, "reviewed", "yes")

    def ids(filter_string):
        return {t.info.trace_id
                for t in client.search_traces(locations=[exp_id], filter_string=filter_string)}

    assert ids("feedback.good = 'true'") == {first}
    assert ids("tag.reviewed = 'yes'") == {second}
    assert ids("span.name = 'tokenize' AND span.type = 'UNKNOWN'") == {first, second}
    assert ids(f"trace.request_id = '{second}'") == {second}
    assert ids("trace.text LIKE '%what is the answer?%'") == {first, second}
    assert ids("span.name = 'nope'") == set()
    with pytest.raises(MlflowException, match="Invalid attribute key"):
        ids("invalid = 'x'")


def test_trace_written_by_another_process_is_seen(tmp_path):
    db = tmp_path / "x.db"
    store = SynaTrackingStore(f"synadb://{db}")
    exp_id = store.create_experiment("shared")
    assert store.search_traces([exp_id])[0] == []  # this handle has looked already

    script = f"""
import mlflow
mlflow.set_tracking_uri("synadb://{db}")
mlflow.set_experiment(experiment_id="{exp_id}")
@mlflow.trace
def work(x):
    with mlflow.start_span("child") as s:
        s.set_inputs(x)
    return x + 1
work(1)
mlflow.flush_trace_async_logging()
print(mlflow.get_last_active_trace_id())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=300, check=True)
    trace_id = done.stdout.split()[-1]

    infos, _ = store.search_traces([exp_id])
    assert [i.trace_id for i in infos] == [trace_id]
    assert infos[0].state == TraceState.OK
    trace = store.get_trace(trace_id)
    assert sorted(s.name for s in trace.data.spans) == ["child", "work"]
    assert store.search_traces([exp_id], filter_string="span.name = 'child'")[0][0] \
        .trace_id == trace_id


def test_traces_survive_closing_and_reopening_the_file(tmp_path):
    uri = f"synadb://{tmp_path}/x.db"
    store = SynaTrackingStore(uri)
    exp_id = store.create_experiment("kept")
    info = store.start_trace(TraceInfo(
        trace_id="tr-kept", trace_location=TraceLocation.from_experiment_id(exp_id),
        request_time=1000, execution_duration=5, state=TraceState.OK,
        tags={TraceTagKey.TRACE_NAME: "kept", "k": "v"}, trace_metadata={"m": "1"}))
    feedback = store.create_assessment(Feedback(
        trace_id="tr-kept", name="score", value=0.5,
        source=AssessmentSource(source_type="CODE", source_id="judge")))
    store.link_prompts_to_trace("tr-kept", [_Prompt("p", 2)])
    store.tracker.close()

    reopened = SynaTrackingStore(uri)
    again = reopened.get_trace_info("tr-kept")
    assert (again.request_time, again.execution_duration, again.state) == (1000, 5, TraceState.OK)
    assert again.tags["k"] == "v" and again.tags[TraceTagKey.TRACE_NAME] == "kept"
    assert again.trace_metadata["m"] == "1"
    assert [a.assessment_id for a in again.assessments] == [feedback.assessment_id]
    assert reopened.get_assessment("tr-kept", feedback.assessment_id).value == 0.5
    found, _ = reopened.search_traces([exp_id], filter_string="prompt = 'p/2'")
    assert [t.trace_id for t in found] == ["tr-kept"]
    assert reopened.delete_traces(exp_id, trace_ids=["tr-kept"]) == 1
    assert reopened.search_traces([exp_id])[0] == []


class _Prompt:
    def __init__(self, name, version):
        self.name, self.version = name, version


def _span(trace_id, span_id, start_ns, end_ns, parent=None):
    """An MLflow span as the exporter hands it to ``log_spans``."""
    from mlflow.entities.span import create_mlflow_span
    from opentelemetry import trace as otel
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan

    def context(i):
        return otel.SpanContext(trace_id=7, span_id=i, is_remote=False,
                                trace_flags=otel.TraceFlags(1))

    return create_mlflow_span(ReadableSpan(
        name=f"s{span_id}", context=context(span_id),
        parent=None if parent is None else context(parent),
        attributes={"mlflow.traceRequestId": json.dumps(trace_id)},
        start_time=start_ns, end_time=end_ns, resource=Resource.get_empty()), trace_id)


def test_log_spans_creates_the_trace_and_widens_its_time_range(tmp_path):
    store = SynaTrackingStore(f"synadb://{tmp_path}/x.db")
    exp_id = store.create_experiment("spans")
    store.log_spans(exp_id, [_span("tr-s", 2, 1_500_000_000, None, parent=1)])
    info = store.get_trace_info("tr-s")
    assert (info.request_time, info.execution_duration, info.state) == \
        (1500, None, TraceState.IN_PROGRESS)
    assert info.tags[TraceTagKey.SPANS_LOCATION] == SpansLocation.TRACKING_STORE.value

    store.log_spans(exp_id, [_span("tr-s", 1, 1_000_000_000, 3_000_000_000)])
    info = store.get_trace_info("tr-s")
    assert (info.request_time, info.execution_duration, info.state) == \
        (1000, 2000, TraceState.OK)
    trace = store.get_trace("tr-s")
    assert [s.name for s in trace.data.spans] == ["s1", "s2"]  # root first
    assert trace.data.spans[1].parent_id == trace.data.spans[0].span_id


def test_trace_metrics_count_by_status(tmp_path):
    from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType

    store = SynaTrackingStore(f"synadb://{tmp_path}/x.db")
    exp_id = store.create_experiment("metrics")
    for i, state in enumerate([TraceState.OK, TraceState.OK, TraceState.ERROR]):
        store.start_trace(TraceInfo(
            trace_id=f"tr-{i}", trace_location=TraceLocation.from_experiment_id(exp_id),
            request_time=1000 + i, execution_duration=10 * (i + 1), state=state))
    points = store.query_trace_metrics(
        [exp_id], MetricViewType.TRACES, "trace_count",
        [MetricAggregation(AggregationType.COUNT)], dimensions=["trace_status"])
    assert {p.dimensions["trace_status"]: p.values["COUNT"] for p in points} == \
        {"OK": 2, "ERROR": 1}
