"""MLflow 3 traces in a synadb file: trace infos, spans, tags, assessments,
search and session/correlation analytics, as the ``synadb://`` tracking
store's mixin.

The store class (:class:`.mlflow_store.SynaTrackingStore`) mixes this in; it
gives ``self.docs`` (:class:`.mlflow_docs.Docs`) and MLflow's experiment and
run methods.

Layout (all JSON documents in the one file, see :mod:`.mlflow_docs`):

``trace/<trace id>``
    the trace's info: experiment, times, state, previews, name, tags,
    metadata, the analytics fields MLflow's SQL store keeps in columns
    (session id, token usage, cost), its assessments (in creation order),
    and the runs and prompt versions linked to it.
``trace_spans/<trace id>``
    its spans by span id: the span's stored JSON (what MLflow's SQL store
    keeps in ``spans.content``) beside the fields that search filters on.

Spans are stored here (the ``mlflow.trace.spansLocation`` tag says
``TRACKING_STORE``), so MLflow's client never writes trace data to an
artifact folder.  Search evaluates MLflow's own parsed filters
(``SearchTraceUtils``) with the SQL store's semantics, over an in-memory
copy of the documents that follows the file's log (other handles and
processes included) instead of re-reading everything per call.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
import types
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from mlflow.entities import (
    Assessment,
    AssessmentError,
    AssessmentSource,
    Expectation,
    Feedback,
    IssueReference,
    Trace,
    TraceData,
    TraceInfo,
)
from mlflow.entities.entity_type import EntityAssociationType
from mlflow.entities.span import LazySpan, Span
from mlflow.entities.span_status import SpanStatusCode
from mlflow.entities.trace_info_v2 import TraceInfoV2
from mlflow.entities.trace_location import TraceLocation
from mlflow.entities.trace_state import TraceState
from mlflow.entities.trace_status import TraceStatus
from mlflow.exceptions import MlflowException, MlflowTracingException
from mlflow.store.analytics import trace_correlation
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking import (
    MAX_RESULTS_QUERY_TRACE_METRICS,
    MAX_TRACE_LINKS_PER_REQUEST,
    SEARCH_TRACES_DEFAULT_MAX_RESULTS,
)
from mlflow.store.tracking.utils.trace_analytics import (
    COST_COLUMN_BY_KEY,
    PROMOTED_TRACE_METADATA_KEYS,
    TOKEN_COLUMN_BY_KEY,
    TRACE_ANALYTICS_COLUMNS_BY_METADATA_KEY,
    analytics_columns_from_metadata,
    assessment_aggregate,
    bounded_model_dimension,
    compatibility_metadata_from_columns,
    finite_float_or_none,
    token_count_or_none,
    validate_session_id,
    validate_trace_name,
)
from mlflow.tracing.analysis import TraceFilterCorrelationResult
from mlflow.tracing.constant import (
    GenAiSemconvKey,
    SpanAttributeKey,
    SpansLocation,
    TraceMetadataKey,
    TraceSizeStatsKey,
    TraceTagKey,
)
from mlflow.tracing.otel.translation import translate_span_when_storing
from mlflow.tracing.utils import (
    SpanAggregationNode,
    TraceJSONEncoder,
    aggregate_cost_from_span_nodes,
    aggregate_usage_from_span_nodes,
    generate_assessment_id,
    generate_request_id_v2,
    try_json_loads,
)
from mlflow.tracing.utils.truncation import _get_truncated_preview
from mlflow.utils.mlflow_tags import MLFLOW_ARTIFACT_LOCATION
from mlflow.utils.search_utils import SearchTraceUtils
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import _resolve_experiment_ids_and_locations, _validate_trace_tag

from .mlflow_common import check_max_results, code
from .mlflow_docs import Docs

__all__ = ["TraceStoreMixin"]

_TRACE = "trace"
_SPANS = "trace_spans"

# MLflow's SQL store keeps token usage and cost in columns; the trace document
# keeps them under the same column names ("cols").
_ANALYTICS_COLUMNS = (*TOKEN_COLUMN_BY_KEY.values(), *COST_COLUMN_BY_KEY.values())
# Span filters skip spans that started well before a `timestamp >` bound (as
# the SQL store's span scan does), allowing this much clock skew.
_SPAN_SEARCH_TOLERANCE_MS = 10_000
_GET_TRACE_ATTEMPTS = 3

Doc = dict[str, Any]


# --------------------------------------------------------------------- cache
class _DocCache:
    """The parsed documents of one kind, kept in step with the file.

    Each look asks the engine which keys were written since the previous
    one (by any handle or process) and re-reads only those, so a search over
    thousands of traces parses only what changed.  Compaction (a new salt)
    starts over.
    """

    def __init__(self, docs: Docs, kind: str) -> None:
        self.docs = docs
        self.kind = kind
        self.prefix = Docs.key(kind, "")
        self.items: dict[str, Doc] = {}
        self.end: int | None = None
        self.salt: int | None = None
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, Doc]:
        """Every live document by id (the caller must not modify them)."""
        storage = self.docs.db.storage
        with self.lock:
            salt = storage.salt()
            if self.end is None or salt != self.salt:
                end = storage.log_end()
                ids = self.docs.ids(self.kind)
                self.items = {i: d for i, d in zip(ids, self.docs.many(self.kind, ids))
                              if d is not None}
                self.end, self.salt = end, salt
            else:
                keys, self.end = storage.keys_written_since(self.end)
                cut = len(self.prefix)
                changed = [k[cut:] for k in keys
                           if k.startswith(self.prefix) and "/" not in k[cut:]]
                for i, d in zip(changed, self.docs.many(self.kind, changed)):
                    if d is None:
                        self.items.pop(i, None)
                    else:
                        self.items[i] = d
            return dict(self.items)


# ----------------------------------------------------------------- entities
def _not_found(message: str) -> MlflowException:
    return MlflowException(message, code("RESOURCE_DOES_NOT_EXIST"))


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, code("INVALID_PARAMETER_VALUE"))


def _columns_view(doc: Doc) -> types.SimpleNamespace:
    """The trace's analytics fields as the attribute object MLflow's
    ``compatibility_metadata_from_columns`` reads."""
    cols = dict.fromkeys(_ANALYTICS_COLUMNS)
    cols.update(doc["cols"])
    return types.SimpleNamespace(session_id=doc["session"], **cols)


def _assessment_row(a: Assessment, trace_id: str) -> Doc:
    """An assessment as stored (the SQL store's ``assessments`` row)."""
    if a.assessment_id is None:
        a.assessment_id = generate_assessment_id()
    now = get_current_time_millis()
    error = None
    if a.feedback is not None:
        kind, value = "feedback", a.feedback.value
        if a.feedback.error:
            error = json.dumps(a.feedback.error.to_dictionary())
    elif a.expectation is not None:
        kind, value = "expectation", a.expectation.value
    elif a.issue is not None:
        kind, value = "issue", a.issue.to_dictionary()
    else:
        raise _invalid("Assessment must have either feedback, expectation, or issue value")
    return {
        "id": a.assessment_id, "trace": trace_id, "name": a.name, "type": kind,
        "value": json.dumps(value), "error": error,
        "created": a.create_time_ms or now, "updated": a.last_update_time_ms or now,
        "source_type": a.source.source_type, "source_id": a.source.source_id,
        "run_id": a.run_id, "span_id": a.span_id, "rationale": a.rationale,
        "overrides": a.overrides, "valid": True,
        "meta": json.dumps(a.metadata) if a.metadata else None,
    }


def _assessment(row: Doc) -> Assessment:
    """The MLflow entity of a stored assessment row."""
    value = json.loads(row["value"])
    meta = None if row["meta"] is None else json.loads(row["meta"])
    source = AssessmentSource(source_type=row["source_type"], source_id=row["source_id"])
    common = dict(source=source, trace_id=row["trace"], metadata=meta, span_id=row["span_id"],
                  create_time_ms=row["created"], last_update_time_ms=row["updated"])
    if row["type"] == "feedback":
        error = None if row["error"] is None else \
            AssessmentError.from_dictionary(json.loads(row["error"]))
        a: Assessment = Feedback(name=row["name"], value=value, error=error,
                                 rationale=row["rationale"], overrides=row["overrides"],
                                 valid=row["valid"], **common)
    elif row["type"] == "expectation":
        a = Expectation(name=row["name"], value=value, **common)
    elif row["type"] == "issue":
        a = IssueReference(issue_id=row["name"], issue_name=value.get("issue_name"),
                           run_id=row["run_id"], rationale=row["rationale"], **common)
    else:
        raise MlflowException(f"Unknown assessment type: {row['type']}",
                              code("INTERNAL_ERROR"))
    a.overrides = row["overrides"]
    a.valid = row["valid"]
    a.run_id = row["run_id"]
    a.assessment_id = row["id"]
    return a


def _trace_info(doc: Doc) -> TraceInfo:
    tags = dict(doc["tags"])
    if doc["name"] is not None:
        tags[TraceTagKey.TRACE_NAME] = doc["name"]
    metadata = dict(doc["meta"])
    metadata.update(compatibility_metadata_from_columns(_columns_view(doc)))
    return TraceInfo(
        trace_id=doc["id"],
        trace_location=TraceLocation.from_experiment_id(doc["exp"]),
        request_time=doc["ts"],
        execution_duration=doc["dur"],
        state=TraceState(doc["state"]),
        tags=tags,
        trace_metadata=metadata,
        client_request_id=doc["crid"],
        request_preview=doc["req"],
        response_preview=doc["resp"],
        assessments=[_assessment(r) for r in doc["assess"]],
    )


def _new_trace(trace_id: str, experiment_id: str, ts: int) -> Doc:
    return {"id": trace_id, "exp": str(experiment_id), "ts": ts, "dur": None,
            "state": TraceState.IN_PROGRESS.value, "crid": None, "req": None, "resp": None,
            "name": None, "tags": {}, "meta": {}, "session": None, "cols": {},
            "assess": [], "runs": [], "prompts": []}


def _set_analytics(doc: Doc, metadata: dict[str, str]) -> None:
    """Move the metadata MLflow promotes to columns (session, token usage,
    cost) into the trace's analytics fields, as the SQL store does."""
    for column, value in analytics_columns_from_metadata(metadata).items():
        if column == "session_id":
            doc["session"] = value
        else:
            doc["cols"][column] = value
    for key in PROMOTED_TRACE_METADATA_KEYS:
        metadata.pop(key, None)


def _is_finalized(doc: Doc) -> bool:
    return TraceMetadataKey.TRACE_INFO_FINALIZED in doc["meta"]


# -------------------------------------------------------------- comparisons
def _like_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, flags | re.DOTALL)


@functools.lru_cache(maxsize=256)
def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return _like_regex(pattern, re.IGNORECASE if ignore_case else 0)


def _rlike(value: str, pattern: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False


def _sql_compare(comparator: str, lhs: Any, rhs: Any) -> bool:
    """``lhs <comparator> rhs`` as SQL evaluates it (NULL matches nothing;
    LIKE is case-sensitive, as MLflow sets it for SQLite)."""
    if lhs is None:
        return False
    if comparator == "LIKE":
        return _like(rhs, False).fullmatch(str(lhs)) is not None
    if comparator == "ILIKE":
        return _like(rhs, True).fullmatch(str(lhs)) is not None
    if comparator == "RLIKE":
        return _rlike(str(lhs), rhs)
    if comparator == "IN":
        return lhs in rhs
    if comparator == "NOT IN":
        return lhs not in rhs
    if isinstance(lhs, (int, float)) and isinstance(rhs, str):
        try:
            rhs = float(rhs)
        except ValueError:  # SQL orders every number before every text
            return comparator in ("!=", "<", "<=")
    return SearchTraceUtils.get_comparison_func(comparator)(lhs, rhs)


# ------------------------------------------------------------------- search
@dataclass(frozen=True)
class _Clause:
    type: str
    key: str
    value: Any
    comparator: str


@functools.lru_cache(maxsize=128)
def _parse_filter(filter_string: str | None) -> tuple[_Clause, ...]:
    return tuple(_Clause(c.get("type"), c.get("key"), c.get("value"), c["comparator"].upper())
                 for c in SearchTraceUtils.parse_search_filter_for_search_traces(filter_string))


@functools.lru_cache(maxsize=128)
def _parse_order_by(clause: str) -> tuple[str, str, bool]:
    return SearchTraceUtils.parse_order_by_for_search_traces(clause)


def _attribute(doc: Doc, key: str) -> Any:
    if key in ("end_time_ms", "end_time"):
        return doc["ts"] + (doc["dur"] or 0)
    if key == "experiment_id":
        return int(doc["exp"]) if doc["exp"].isdigit() else doc["exp"]
    field = {"request_id": "id", "timestamp_ms": "ts", "execution_time_ms": "dur",
             "status": "state", "client_request_id": "crid", "request_preview": "req",
             "response_preview": "resp"}.get(key)
    if field is None:
        raise _invalid(f"Invalid attribute key '{key}'")
    return doc[field]


def _analytics_match(doc: Doc, key: str, comparator: str, value: str | None) -> bool:
    """MLflow's filter on a reserved metadata key (token usage, cost) that the
    SQL store evaluates over its analytics columns."""
    columns = TRACE_ANALYTICS_COLUMNS_BY_METADATA_KEY[key]
    present = {item: doc["cols"].get(col) for item, col in columns.items()}
    exists = any(v is not None for v in present.values())
    if comparator == "IS NULL":
        return not exists
    if comparator == "IS NOT NULL":
        return exists
    if comparator not in ("=", "!="):
        raise _invalid(f"Comparator '{comparator}' is not supported for reserved metadata "
                       f"'{key}'. Only '=', '!=', 'IS NULL', and 'IS NOT NULL' are supported.")
    parsed = try_json_loads(value) if isinstance(value, str) else None
    convert = token_count_or_none if key == TraceMetadataKey.TOKEN_USAGE else finite_float_or_none
    normalized = {}
    if isinstance(parsed, dict) and set(parsed) <= set(columns):
        normalized = {item: v for item in columns if (v := convert(parsed.get(item))) is not None}
    matches = bool(normalized) and value == json.dumps(normalized) and all(
        present[item] == normalized[item] if item in normalized else present[item] is None
        for item in columns)
    return matches if comparator == "=" else exists and not matches


def _assessment_value_match(row: Doc, comparator: str, value: Any) -> bool:
    if comparator in SearchTraceUtils.NUMERIC_ASSESSMENT_COMPARATORS:
        aggregate, numeric = assessment_aggregate(json.loads(row["value"]))
        return numeric and _sql_compare(comparator, aggregate, float(value))
    if comparator in ("=", "!="):
        equal = row["value"] in (value, json.dumps(value))
        return equal if comparator == "=" else not equal
    return _sql_compare(comparator, row["value"], value)


class _Matcher:
    """A compiled search filter: ``matcher(doc)`` tells whether a trace
    matches, with the SQL store's semantics for every kind of clause.

    ``scope`` holds the traces the search covers (session-scoped assessments
    expand to every trace of the session among them); ``spans`` returns the
    span documents by trace id, read only when a span clause needs them.
    """

    def __init__(self, filter_string: str | None, scope: list[Doc],
                 spans: Callable[[], dict[str, Doc]]) -> None:
        self.scope = scope
        self.spans_source = spans
        self._spans: dict[str, Doc] | None = None
        self.tests: list[Callable[[Doc], bool]] = []
        self.span_tests: list[Callable[[Doc], bool]] = []
        self.span_min_start_ns: int | None = None
        lower_ms: int | None = None
        for c in _parse_filter(filter_string) if filter_string else ():
            if c.type == "attribute" and c.key == "timestamp_ms" and c.comparator in (">", ">="):
                lower_ms = c.value if lower_ms is None else max(lower_ms, c.value)
            self._compile(c)
        if self.span_tests and lower_ms is not None:
            self.span_min_start_ns = (lower_ms - _SPAN_SEARCH_TOLERANCE_MS) * 1_000_000

    def __call__(self, doc: Doc) -> bool:
        if not all(test(doc) for test in self.tests):
            return False
        return not self.span_tests or self._any_span(doc)

    def _any_span(self, doc: Doc) -> bool:
        if self._spans is None:
            self._spans = self.spans_source()
        spans = self._spans.get(doc["id"]) or {}
        lower = self.span_min_start_ns
        return any(all(t(s) for t in self.span_tests) for s in spans.values()
                   if lower is None or s["start"] >= lower)

    def _session_covered(self, wanted: Callable[[Doc], bool]) -> set[str]:
        """Trace ids of the sessions that hold a session-scoped assessment
        ``wanted`` accepts (on any of their traces in scope)."""
        marker = f'"{TraceMetadataKey.TRACE_SESSION}":'
        sessions = {d["session"] for d in self.scope if d["session"] is not None
                    and any(wanted(a) and a["meta"] is not None and marker in a["meta"]
                            for a in d["assess"])}
        return {d["id"] for d in self.scope if d["session"] in sessions} if sessions else set()

    def _compile(self, c: _Clause) -> None:  # noqa: C901 - one branch per clause kind
        u = SearchTraceUtils
        key, value, cmp = c.key, c.value, c.comparator
        add = self.tests.append
        if u.is_issue(c.type, key, cmp):
            add(lambda d: any(a["type"] == "issue" and a["name"] == value for a in d["assess"]))
        elif u.is_attribute(c.type, key, cmp):
            add(lambda d: _sql_compare(cmp, _attribute(d, key), value))
        elif u.is_tag(c.type, cmp) and key == TraceTagKey.TRACE_NAME:
            add(self._column_test("name", cmp, value))
        elif u.is_request_metadata(c.type, cmp) and key == TraceMetadataKey.TRACE_SESSION:
            add(self._column_test("session", cmp, value))
        elif u.is_request_metadata(c.type, cmp) and key in TRACE_ANALYTICS_COLUMNS_BY_METADATA_KEY:
            add(lambda d: _analytics_match(d, key, cmp, value))
        elif u.is_request_metadata(c.type, cmp) and key == TraceMetadataKey.SOURCE_RUN \
                and cmp == "=":
            add(lambda d: value in d["runs"] or d["meta"].get(key) == value)
        elif u.is_tag(c.type, cmp):
            if key == TraceTagKey.LINKED_PROMPTS:
                if cmp != "=":
                    raise _invalid(f"Invalid comparator '{cmp}' for prompts filter. Only '=' is "
                                   'supported with format: prompt = "name/version"')
                if value.count("/") != 1:
                    raise _invalid(f"Invalid prompts filter value '{value}'. "
                                   'Expected format: prompt = "name/version"')
                add(lambda d: value in d["prompts"])
            else:
                add(self._mapping_test("tags", key, cmp, value))
        elif u.is_request_metadata(c.type, cmp):
            add(self._mapping_test("meta", key, cmp, value))
        elif u.is_span(c.type, key, cmp):
            self.span_tests.append(self._span_test(key, cmp, value))
        elif u.is_assessment(c.type, key, cmp):
            self._assessment_test(c.type, key, cmp, value)
        else:
            raise _invalid(f"Invalid search expression type '{c.type}'")

    @staticmethod
    def _column_test(field: str, cmp: str, value: Any) -> Callable[[Doc], bool]:
        if cmp == "IS NULL":
            return lambda d: d[field] is None
        if cmp == "IS NOT NULL":
            return lambda d: d[field] is not None
        return lambda d: _sql_compare(cmp, d[field], value)

    @staticmethod
    def _mapping_test(field: str, key: str, cmp: str, value: Any) -> Callable[[Doc], bool]:
        if cmp == "IS NULL":
            return lambda d: key not in d[field]
        if cmp == "IS NOT NULL":
            return lambda d: key in d[field]
        return lambda d: _sql_compare(cmp, d[field].get(key), value)

    @staticmethod
    def _span_test(key: str, cmp: str, value: Any) -> Callable[[Doc], bool]:
        if not key.startswith("attributes."):
            return lambda s: _sql_compare(cmp, s[key], value)
        # Span attributes are matched inside the stored span JSON, where each
        # value is itself JSON: "<name>": "\"<value>\"" (as the SQL store does).
        name = SearchTraceUtils._trim_backticks(key[len("attributes."):])
        if cmp == "RLIKE":
            body = value[1:] if value.startswith("^") else value
            prefix = '"\\\\"' if value.startswith("^") else '"\\\\".*'
            suffix = '\\\\"' if value.endswith("$") else ""
            if value.endswith("$"):
                body = body[:-1]
            pattern = f'"{name}": {prefix}{body}{suffix}'
        else:
            pattern = f'%"{name}"{value}%'
        return lambda s: _sql_compare(cmp, s["content"], pattern)

    def _assessment_test(self, kind: str, name: str, cmp: str, value: Any) -> None:
        def same(a: Doc) -> bool:
            return a["type"] == kind and a["name"] == name and a["valid"]

        if cmp in ("IS NULL", "IS NOT NULL"):
            wanted = same
        else:
            def wanted(a: Doc) -> bool:
                return same(a) and _assessment_value_match(a, cmp, value)
        covered = self._session_covered(wanted)

        def has(d: Doc) -> bool:
            return d["id"] in covered or any(wanted(a) for a in d["assess"])

        self.tests.append((lambda d: not has(d)) if cmp == "IS NULL" else has)


def _order_key(order_by: list[str]) -> Callable[[Doc], Any]:
    """A sort key for the SQL store's trace ordering: the given clauses
    (NULLs last), then newest first, then trace id."""
    getters: list[tuple[Callable[[Doc], Any], bool]] = []
    seen: set[tuple[str, str]] = set()
    for clause in order_by:
        kind, key, ascending = _parse_order_by(clause)
        if SearchTraceUtils.is_request_metadata(kind, "=") and \
                key in TRACE_ANALYTICS_COLUMNS_BY_METADATA_KEY:
            raise _invalid(f"Ordering by reserved metadata '{key}' is not supported because "
                           "it is represented by multiple columns.")
        if SearchTraceUtils.is_attribute(kind, key, "="):
            get = functools.partial(_attribute, key=key)
        elif SearchTraceUtils.is_tag(kind, "=") and key == TraceTagKey.TRACE_NAME:
            get = _field_getter("name")
        elif SearchTraceUtils.is_request_metadata(kind, "=") and \
                key == TraceMetadataKey.TRACE_SESSION:
            get = _field_getter("session")
        elif SearchTraceUtils.is_tag(kind, "="):
            get = _mapping_getter("tags", key)
        elif SearchTraceUtils.is_request_metadata(kind, "="):
            get = _mapping_getter("meta", key)
        else:
            raise _invalid(f"Invalid identifier type '{kind}'")
        if (kind, key) in seen:
            raise MlflowException(f"`order_by` contains duplicate fields: {order_by}")
        seen.add((kind, key))
        getters.append((get, ascending))
    if ("attribute", "timestamp_ms") not in seen:
        getters.append((_field_getter("ts"), False))
    if ("attribute", "request_id") not in seen:
        getters.append((_field_getter("id"), True))

    def compare(a: Doc, b: Doc) -> int:
        for get, ascending in getters:
            x, y = get(a), get(b)
            if x is None or y is None:
                if x is None and y is None:
                    continue
                return 1 if x is None else -1
            if x != y:
                return (-1 if x < y else 1) * (1 if ascending else -1)
        return 0

    return functools.cmp_to_key(compare)


def _field_getter(field: str) -> Callable[[Doc], Any]:
    return lambda d: d[field]


def _mapping_getter(field: str, key: str) -> Callable[[Doc], Any]:
    return lambda d: d[field].get(key)


# -------------------------------------------------------------------- spans
def _json_string(value: Any) -> Any:
    """A span attribute's plain value: JSON strings are decoded, the rest kept."""
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return value
    return parsed if isinstance(parsed, str) else value


def _aggregation_data(attributes: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = attributes.get(key)
    if isinstance(value, str):
        value = try_json_loads(value)
    return value if isinstance(value, dict) else None


@dataclass
class _SpanBatch:
    """What one log_spans call brings to one trace."""

    rows: dict[str, Doc]
    min_start_ms: int
    max_end_ms: int | None
    root_status: str | None
    has_usage: bool
    has_cost: bool
    session_id: str | None
    user_id: str | None
    root_attributes: dict[str, Any] | None
    trace_tags: dict[str, str]
    resource_tags: dict[str, str]


def _span_batch(spans: list[Span]) -> _SpanBatch:
    rows: dict[str, Doc] = {}
    session_id = user_id = root_attributes = root_status = None
    trace_tags: dict[str, str] = {}
    resource_tags: dict[str, str] = {}
    for span in spans:
        span_dict = translate_span_when_storing(span)
        attributes = span_dict.get("attributes") or {}
        if session_id is None and (sid := attributes.get(SpanAttributeKey.SESSION_ID)
                                   or attributes.get(GenAiSemconvKey.CONVERSATION_ID)):
            session_id = validate_session_id(_json_string(sid))
        if user_id is None and (uid := attributes.get("user.id")):
            user_id = _json_string(uid)
        rows[span.span_id] = {
            "parent": span.parent_id, "name": span.name, "type": span.span_type,
            "status": span.status.status_code, "start": span.start_time_ns,
            "end": span.end_time_ns,
            "usage": _aggregation_data(attributes, SpanAttributeKey.CHAT_USAGE),
            "cost": _aggregation_data(attributes, SpanAttributeKey.LLM_COST),
            # Non-ASCII kept as is, so `trace.text` LIKE filters match what users type.
            "content": json.dumps(span_dict, cls=TraceJSONEncoder, ensure_ascii=False),
        }
        if span.parent_id is None:
            root_attributes = attributes
            root_status = (TraceState.ERROR if span.status.status_code == SpanStatusCode.ERROR
                           else TraceState.OK).value
            trace_tags.update(_root_span_tags(attributes))
        resource = getattr(span._span, "resource", None)
        if resource is not None and resource.attributes and not resource_tags:
            resource_tags = _resource_tags(resource.attributes)
    ends = [s.end_time_ns for s in spans if s.end_time_ns is not None]
    return _SpanBatch(
        rows=rows,
        min_start_ms=min(s.start_time_ns for s in spans) // 1_000_000,
        max_end_ms=max(ends) // 1_000_000 if ends else None,
        root_status=root_status,
        has_usage=any(r["usage"] for r in rows.values()),
        has_cost=any(r["cost"] for r in rows.values()),
        session_id=session_id, user_id=user_id, root_attributes=root_attributes,
        trace_tags=trace_tags, resource_tags=resource_tags)


def _root_span_tags(attributes: dict[str, Any]) -> dict[str, str]:
    """User trace tags carried as ``mlflow.traceTag.<key>`` root span
    attributes (traces exported over OTLP)."""
    tags = {}
    prefix = SpanAttributeKey.TRACE_TAG_PREFIX
    for name, raw in attributes.items():
        if not name.startswith(prefix):
            continue
        try:
            key, value = _validate_trace_tag(name[len(prefix):], str(_json_string(raw)))
            if key == TraceTagKey.TRACE_NAME:
                value = validate_trace_name(value)
        except MlflowException:
            continue
        tags[key] = value
    return tags


def _resource_tags(attributes: Any) -> dict[str, str]:
    """OTel resource attributes (``service.name``...) as trace tags, leaving
    out the SDK's own and MLflow's reserved ones."""
    tags = {}
    for name, raw in attributes.items():
        if name.startswith(("telemetry.sdk.", "mlflow.")):
            continue
        value = raw if isinstance(raw, str) else json.dumps(raw)
        try:
            key, value = _validate_trace_tag(name, value)
        except MlflowException:
            continue
        tags[key] = value
    return tags


def _apply_spans(doc: Doc, batch: _SpanBatch, spans: dict[str, Doc], created: bool) -> None:
    """Update a trace's info from a span batch, as the SQL store's log_spans:
    time range and status (unless start_trace finalized them), previews,
    name, token usage and cost over the whole span tree, session, user."""
    finalized = _is_finalized(doc)
    if not finalized:
        start = min(doc["ts"], batch.min_start_ms)
        if batch.max_end_ms is not None:
            old_end = None if doc["dur"] is None else doc["ts"] + doc["dur"]
            end = old_end if old_end is not None and old_end > batch.max_end_ms \
                else batch.max_end_ms
            doc["dur"] = end - start
        doc["ts"] = start
    if doc["state"] in (TraceState.IN_PROGRESS.value, TraceState.STATE_UNSPECIFIED.value) \
            and batch.root_status:
        doc["state"] = batch.root_status
    if batch.root_attributes is not None:
        try:
            if doc["req"] is None and (inputs := batch.root_attributes.get(
                    SpanAttributeKey.INPUTS)):
                doc["req"] = _get_truncated_preview(inputs, role="user")
            if doc["resp"] is None and (outputs := batch.root_attributes.get(
                    SpanAttributeKey.OUTPUTS)):
                doc["resp"] = _get_truncated_preview(outputs, role="assistant")
        except Exception:  # a preview is best effort, as in MLflow's store
            pass
    if TraceTagKey.TRACE_NAME in batch.trace_tags:
        doc["name"] = batch.trace_tags[TraceTagKey.TRACE_NAME]
    for flag, field, columns, aggregate, convert in (
            (batch.has_usage, "usage", TOKEN_COLUMN_BY_KEY, aggregate_usage_from_span_nodes,
             token_count_or_none),
            (batch.has_cost, "cost", COST_COLUMN_BY_KEY, aggregate_cost_from_span_nodes,
             finite_float_or_none)):
        if not flag:
            continue
        if finalized and not created and \
                any(doc["cols"].get(c) is not None for c in columns.values()):
            continue  # start_trace's values are authoritative
        total = aggregate([SpanAggregationNode(span_id=i, parent_id=s["parent"], data=s[field])
                           for i, s in spans.items()])
        for key, column in columns.items():
            if total and (value := convert(total.get(key))) is not None:
                doc["cols"][column] = value
    if batch.session_id and doc["session"] is None:
        doc["session"] = batch.session_id
    if batch.user_id and TraceMetadataKey.TRACE_USER not in doc["meta"]:
        doc["meta"][TraceMetadataKey.TRACE_USER] = batch.user_id
    doc["tags"][TraceTagKey.SPANS_LOCATION] = SpansLocation.TRACKING_STORE.value
    doc["tags"].update(batch.resource_tags)
    doc["tags"].update({k: v for k, v in batch.trace_tags.items()
                        if k != TraceTagKey.TRACE_NAME})


def _trace_spans(doc: Doc, spans: Doc | None, allow_partial: bool) -> list[Span] | None:
    """The stored spans of a trace, root first then by start time; None
    when the trace is not fully exported yet (and partial is not allowed)."""
    if doc["tags"].get(TraceTagKey.SPANS_LOCATION) != SpansLocation.TRACKING_STORE.value:
        raise MlflowTracingException("Trace data not stored in tracking store")
    rows = sorted((spans or {}).values(),
                  key=lambda s: (0 if s["parent"] is None else 1, s["start"]))
    if not allow_partial and (stats := doc["meta"].get(TraceMetadataKey.SIZE_STATS)):
        if len(rows) < json.loads(stats).get(TraceSizeStatsKey.NUM_SPANS, 0):
            return None
    return [LazySpan.from_stored_content(s["content"]) for s in rows]


# ------------------------------------------------------------ trace metrics
def _metric_rows(scope: list[Doc], span_docs: dict[str, Doc]) -> dict[str, list[Doc]]:
    """The scoped traces as rows of MLflow's SQL trace tables (what its
    trace-metrics queries read), by table."""
    rows: dict[str, list[Doc]] = defaultdict(list)
    for d in scope:
        exp = int(d["exp"])
        rows["trace_info"].append(dict(
            request_id=d["id"], experiment_id=exp, timestamp_ms=d["ts"],
            execution_time_ms=d["dur"], status=d["state"], client_request_id=d["crid"],
            request_preview=d["req"], response_preview=d["resp"], trace_name=d["name"],
            session_id=d["session"], **d["cols"]))
        rows["trace_tags"] += [dict(request_id=d["id"], key=k, value=v)
                               for k, v in d["tags"].items()]
        rows["trace_request_metadata"] += [dict(request_id=d["id"], key=k, value=v)
                                           for k, v in d["meta"].items()]
        rows["entity_associations"] += [
            dict(association_id=f"{d['id']}/{run_id}", source_type=EntityAssociationType.TRACE,
                 source_id=d["id"], destination_type=EntityAssociationType.RUN,
                 destination_id=run_id) for run_id in d["runs"]]
        for a in d["assess"]:
            aggregate, numeric = assessment_aggregate(json.loads(a["value"]))
            rows["assessments"].append(dict(
                assessment_id=a["id"], trace_id=d["id"], name=a["name"],
                assessment_type=a["type"], value=a["value"], error=a["error"],
                created_timestamp=a["created"], last_updated_timestamp=a["updated"],
                experiment_id=exp, trace_timestamp_ms=d["ts"], aggregate_value=aggregate,
                is_numeric_value=numeric, source_type=a["source_type"],
                source_id=a["source_id"], run_id=a["run_id"], span_id=a["span_id"],
                rationale=a["rationale"], overrides=a["overrides"], valid=a["valid"],
                assessment_metadata=a["meta"]))
        for span_id, sp in (span_docs.get(d["id"]) or {}).items():
            attributes = json.loads(sp["content"]).get("attributes") or {}
            cost = sp["cost"] or {}
            rows["spans"].append(dict(
                trace_id=d["id"], experiment_id=exp, span_id=span_id,
                parent_span_id=sp["parent"], name=sp["name"], type=sp["type"],
                status=sp["status"], start_time_unix_nano=sp["start"],
                end_time_unix_nano=sp["end"], content=sp["content"],
                input_cost=finite_float_or_none(cost.get("input_cost")),
                output_cost=finite_float_or_none(cost.get("output_cost")),
                total_cost=finite_float_or_none(cost.get("total_cost")),
                model_name=bounded_model_dimension(
                    _json_string(attributes.get(SpanAttributeKey.MODEL))),
                model_provider=bounded_model_dimension(
                    _json_string(attributes.get(SpanAttributeKey.MODEL_PROVIDER)))))
    return rows


def _query_metrics(scope: list[Doc], span_docs: dict[str, Doc], **query: Any) -> list[Any]:
    """Run MLflow's own trace-metrics query (``query_metrics``) over the
    scoped traces, loaded into a private in-memory SQLite database."""
    import sqlalchemy
    from sqlalchemy.orm import Session
    from sqlalchemy.schema import CreateTable

    from mlflow.entities.trace_metrics import MetricViewType
    from mlflow.store.db.utils import create_sqlalchemy_engine
    from mlflow.store.tracking.dbmodels import models
    from mlflow.store.tracking.utils.sql_trace_metrics_utils import query_metrics

    tables = {"trace_info": models.SqlTraceInfo, "trace_tags": models.SqlTraceTag,
              "trace_request_metadata": models.SqlTraceMetadata,
              "assessments": models.SqlAssessments, "spans": models.SqlSpan,
              "entity_associations": models.SqlEntityAssociation}
    engine = create_sqlalchemy_engine("sqlite://")
    try:
        with engine.begin() as conn:  # tables only: the models' indexes need migrations
            for m in tables.values():
                conn.execute(CreateTable(m.__table__))
        with Session(engine) as session:
            for table, rows in _metric_rows(scope, span_docs).items():
                if rows:
                    session.execute(sqlalchemy.insert(tables[table]), rows)
            model = models.SqlAssessments \
                if query["view_type"] == MetricViewType.ASSESSMENTS else models.SqlTraceInfo
            return query_metrics(db_type="sqlite", query=session.query(model),
                                 accessible_experiment_ids=sorted({int(d["exp"]) for d in scope}),
                                 **query)
    finally:
        engine.dispose()


# -------------------------------------------------------------------- mixin
class TraceStoreMixin:
    """MLflow's tracking-store trace API over JSON documents in the synadb
    file: traces and their spans, tags, assessments, run/prompt links,
    search, completed sessions and filter correlation, with the semantics of
    MLflow's ``SqlAlchemyStore``."""

    docs: Docs
    get_experiment: Callable[[str], Any]

    # -- helpers -----------------------------------------------------------
    def _trace_cache(self, kind: str) -> _DocCache:
        caches = self.__dict__.setdefault("_trace_caches", {})
        cache = caches.get(kind)
        if cache is None:
            cache = caches[kind] = _DocCache(self.docs, kind)
        return cache

    def _trace_docs(self) -> dict[str, Doc]:
        return self._trace_cache(_TRACE).snapshot()

    def _span_docs(self) -> dict[str, Doc]:
        return self._trace_cache(_SPANS).snapshot()

    def _trace_doc(self, trace_id: str) -> Doc:
        doc = self.docs.get(_TRACE, trace_id)
        if doc is None:
            raise _not_found(f"Trace with ID '{trace_id}' not found.")
        return doc

    def _active_experiment(self, experiment_id: str) -> Any:
        experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != "active":
            raise _invalid(f"The experiment {experiment.experiment_id} must be in the 'active' "
                           f"state. Current state is {experiment.lifecycle_stage}.")
        return experiment

    @staticmethod
    def _artifact_location(experiment: Any, trace_id: str) -> str:
        """Where MLflow puts trace attachments: ``<experiment>/traces/<id>/artifacts``."""
        base = experiment.artifact_location.rstrip("/")
        if not base.endswith(f"/{experiment.experiment_id}"):
            base = f"{base}/experiments/{experiment.experiment_id}"
        return f"{base}/traces/{trace_id}/artifacts"

    def _scope(self, experiment_ids: Iterable[str] | None) -> list[Doc]:
        docs = self._trace_docs().values()
        if experiment_ids is None:
            return list(docs)
        wanted = {str(e) for e in experiment_ids}
        return [d for d in docs if d["exp"] in wanted]

    def _matching(self, scope: list[Doc], filter_string: str | None) -> list[Doc]:
        if not filter_string:
            return list(scope)
        match = _Matcher(filter_string, scope, self._span_docs)
        return [d for d in scope if match(d)]

    # -- traces ------------------------------------------------------------
    def start_trace(self, trace_info: TraceInfo) -> TraceInfo:
        name = validate_trace_name(trace_info.tags.get(TraceTagKey.TRACE_NAME))
        experiment = self._active_experiment(trace_info.experiment_id)
        trace_id = trace_info.trace_id
        metadata = dict(trace_info.trace_metadata)
        tags = {k: v for k, v in trace_info.tags.items() if k != TraceTagKey.TRACE_NAME}
        tags[MLFLOW_ARTIFACT_LOCATION] = self._artifact_location(experiment, trace_id)
        rows = [_assessment_row(a, trace_id) for a in trace_info.assessments]
        with self.docs.atomic():
            doc = self.docs.get(_TRACE, trace_id)
            if doc is None:
                doc = _new_trace(trace_id, trace_info.experiment_id, trace_info.request_time)
                doc["req"] = trace_info.request_preview
                doc["resp"] = trace_info.response_preview
                doc["name"] = name
            else:  # created by log_spans: what start_trace brings wins
                if TraceTagKey.TRACE_NAME in trace_info.tags:
                    doc["name"] = name
                if trace_info.request_preview is not None:
                    doc["req"] = trace_info.request_preview
                if trace_info.response_preview is not None:
                    doc["resp"] = trace_info.response_preview
            doc["exp"] = str(trace_info.experiment_id)
            doc["ts"] = trace_info.request_time
            doc["dur"] = trace_info.execution_duration
            doc["state"] = trace_info.state.value
            doc["crid"] = trace_info.client_request_id
            _set_analytics(doc, metadata)
            doc["tags"].update(tags)
            doc["meta"].update(metadata)
            doc["meta"][TraceMetadataKey.TRACE_INFO_FINALIZED] = "true"
            by_id = {r["id"]: i for i, r in enumerate(doc["assess"])}
            for row in rows:
                if row["id"] in by_id:
                    doc["assess"][by_id[row["id"]]] = row
                else:
                    doc["assess"].append(row)
            self.docs.put(_TRACE, trace_id, doc)
        return _trace_info(doc)

    def log_spans(self, location: str, spans: list[Span], tracking_uri: str | None = None
                  ) -> list[Span]:
        if not spans:
            return []
        by_trace: dict[str, list[Span]] = defaultdict(list)
        for span in spans:
            by_trace[span.trace_id].append(span)
        batches = {trace_id: _span_batch(group) for trace_id, group in by_trace.items()}
        experiment = None
        with self.docs.atomic():
            for trace_id, batch in batches.items():
                doc = self.docs.get(_TRACE, trace_id)
                created = doc is None
                if created:
                    experiment = experiment or self.get_experiment(location)
                    doc = _new_trace(trace_id, location, batch.min_start_ms)
                    doc["tags"][MLFLOW_ARTIFACT_LOCATION] = \
                        self._artifact_location(experiment, trace_id)
                stored = self.docs.get(_SPANS, trace_id) or {}
                stored.update(batch.rows)
                _apply_spans(doc, batch, stored, created)
                self.docs.put(_SPANS, trace_id, stored)
                self.docs.put(_TRACE, trace_id, doc)
        return spans

    def get_trace_info(self, trace_id: str) -> TraceInfo:
        return _trace_info(self._trace_doc(trace_id))

    def get_trace(self, trace_id: str, *, allow_partial: bool = False) -> Trace:
        for attempt in range(_GET_TRACE_ATTEMPTS):
            doc = self.docs.get(_TRACE, trace_id)
            if doc is None:
                raise _not_found(f"Trace with ID {trace_id} is not found.")
            spans = _trace_spans(doc, self.docs.get(_SPANS, trace_id), allow_partial)
            if spans is not None:
                return Trace(info=_trace_info(doc), data=TraceData(spans=spans))
            if attempt < _GET_TRACE_ATTEMPTS - 1:
                time.sleep(2 ** attempt)  # its spans may still be on their way
        raise _not_found(f"Trace with ID {trace_id} is not fully exported yet, "
                         "please try again later.")

    def _trace_docs_by_ids(self, trace_ids: list[str],
                           experiment_ids: list[str] | None) -> list[Doc]:
        unique = list(dict.fromkeys(trace_ids))
        wanted = None if experiment_ids is None else {str(e) for e in experiment_ids}
        return [d for d in self.docs.many(_TRACE, unique)
                if d is not None and (wanted is None or d["exp"] in wanted)]

    def batch_get_traces(self, trace_ids: list[str], location: str | None = None,
                         experiment_ids: list[str] | None = None) -> list[Trace]:
        if not trace_ids:
            return []
        docs = self._trace_docs_by_ids(trace_ids, experiment_ids)
        span_docs = self.docs.many(_SPANS, [d["id"] for d in docs])
        traces = []
        for doc, spans in zip(docs, span_docs):
            loaded = _trace_spans(doc, spans, allow_partial=False)
            if loaded:
                traces.append(Trace(info=_trace_info(doc), data=TraceData(spans=loaded)))
        return traces

    def batch_get_trace_infos(self, trace_ids: list[str], location: str | None = None,
                              experiment_ids: list[str] | None = None) -> list[TraceInfo]:
        if not trace_ids:
            return []
        return [_trace_info(d) for d in self._trace_docs_by_ids(trace_ids, experiment_ids)]

    def search_traces(self, experiment_ids: list[str] | None = None,
                      filter_string: str | None = None,
                      max_results: int = SEARCH_TRACES_DEFAULT_MAX_RESULTS,
                      order_by: list[str] | None = None, page_token: str | None = None,
                      model_id: str | None = None, locations: list[str] | None = None
                      ) -> tuple[list[TraceInfo], str | None]:
        locations = _resolve_experiment_ids_and_locations(experiment_ids, locations)
        check_max_results(max_results)
        key = _order_key(order_by or [])
        hits = sorted(self._matching(self._scope(locations), filter_string), key=key)
        offset = SearchTraceUtils.parse_start_offset_from_page_token(page_token)
        page = hits[offset:offset + max_results]
        token = SearchTraceUtils.create_page_token(offset + max_results) \
            if len(page) == max_results else None
        return [_trace_info(d) for d in page], token

    def _delete_traces(self, experiment_id: str, max_timestamp_millis: int | None = None,
                       max_traces: int | None = None, trace_ids: list[str] | None = None) -> int:
        with self.docs.atomic():
            ids = self.docs.ids(_TRACE) if trace_ids is None else list(dict.fromkeys(trace_ids))
            docs = [d for d in self.docs.many(_TRACE, ids) if d is not None
                    and d["exp"] == str(experiment_id)
                    and (max_timestamp_millis is None or d["ts"] <= max_timestamp_millis)]
            if max_traces is not None:
                docs = sorted(docs, key=lambda d: (d["ts"], d["id"]))[:max_traces]
            for doc in docs:
                self.docs.delete(_TRACE, doc["id"])
                self.docs.delete(_SPANS, doc["id"])
        return len(docs)

    # -- tags --------------------------------------------------------------
    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        key, value = _validate_trace_tag(key, value)
        if key == TraceTagKey.TRACE_NAME:
            value = validate_trace_name(value)
        with self.docs.atomic():
            doc = self._trace_doc(trace_id)
            if key == TraceTagKey.TRACE_NAME:
                doc["name"] = value
            else:
                doc["tags"][key] = value
            self.docs.put(_TRACE, trace_id, doc)

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        missing = _not_found(f"No trace tag with key '{key}' for trace with ID '{trace_id}'")
        with self.docs.atomic():
            doc = self.docs.get(_TRACE, trace_id)
            if key == TraceTagKey.TRACE_NAME:
                if doc is None:
                    raise _not_found(f"Trace with ID '{trace_id}' not found.")
                if doc["name"] is None:
                    raise missing
                doc["name"] = None
            elif doc is None or doc["tags"].pop(key, None) is None:
                raise missing
            self.docs.put(_TRACE, trace_id, doc)

    # -- assessments -------------------------------------------------------
    def create_assessment(self, assessment: Assessment) -> Assessment:
        trace_id = assessment.trace_id
        row = _assessment_row(assessment, trace_id)
        with self.docs.atomic():
            doc = self._trace_doc(trace_id)
            if row["overrides"]:
                target = next((a for a in doc["assess"] if a["id"] == row["overrides"]), None)
                if target is None:
                    raise _not_found(f"Assessment with ID '{row['overrides']}' not found "
                                     f"for trace '{trace_id}'")
                target["valid"] = False
            if any(a["id"] == row["id"] for a in doc["assess"]):
                raise MlflowException(f"Failed to create assessment for trace '{trace_id}' "
                                      "due to a constraint violation.", code("INTERNAL_ERROR"))
            doc["assess"].append(row)
            self.docs.put(_TRACE, trace_id, doc)
        return _assessment(row)

    def _stored_assessment(self, doc: Doc | None, trace_id: str, assessment_id: str) -> Doc:
        if doc is None:
            raise _not_found(f"Trace with request_id '{trace_id}' not found")
        row = next((a for a in doc["assess"] if a["id"] == assessment_id), None)
        if row is None:
            raise _not_found(f"Assessment with ID '{assessment_id}' not found for trace "
                             f"'{trace_id}'")
        return row

    def get_assessment(self, trace_id: str, assessment_id: str) -> Assessment:
        doc = self.docs.get(_TRACE, trace_id)
        return _assessment(self._stored_assessment(doc, trace_id, assessment_id))

    def update_assessment(self, trace_id: str, assessment_id: str, name: str | None = None,
                          expectation: Any = None, feedback: Any = None,
                          rationale: str | None = None, metadata: dict[str, str] | None = None
                          ) -> Assessment:
        with self.docs.atomic():
            doc = self.docs.get(_TRACE, trace_id)
            row = self._stored_assessment(doc, trace_id, assessment_id)
            if expectation is not None and feedback is not None:
                raise _invalid("Cannot specify both `expectation` and `feedback` parameters.")
            if expectation is not None and row["type"] != "expectation":
                raise _invalid("Cannot update expectation value on a Feedback assessment.")
            if feedback is not None and row["type"] != "feedback":
                raise _invalid("Cannot update feedback value on an Expectation assessment.")
            if name is not None:
                row["name"] = name
            if expectation is not None:
                row["value"] = json.dumps(expectation.value)
            if feedback is not None:
                row["value"] = json.dumps(feedback.value)
                row["error"] = json.dumps(feedback.error.to_dictionary()) \
                    if feedback.error else None
            if rationale is not None and row["type"] == "feedback":
                row["rationale"] = rationale
            if metadata:
                merged = json.loads(row["meta"]) if row["meta"] else {}
                merged.update(metadata)
                row["meta"] = json.dumps(merged)
            row["updated"] = get_current_time_millis()
            self.docs.put(_TRACE, trace_id, doc)
        return _assessment(row)

    def delete_assessment(self, trace_id: str, assessment_id: str) -> None:
        with self.docs.atomic():
            doc = self.docs.get(_TRACE, trace_id)
            row = None if doc is None else \
                next((a for a in doc["assess"] if a["id"] == assessment_id), None)
            if row is None:
                return  # idempotent
            doc["assess"].remove(row)
            if row["overrides"]:  # the overridden assessment counts again
                for a in doc["assess"]:
                    if a["id"] == row["overrides"]:
                        a["valid"] = True
            self.docs.put(_TRACE, trace_id, doc)

    # -- links -------------------------------------------------------------
    def link_traces_to_run(self, trace_ids: list[str], run_id: str) -> None:
        if not trace_ids:
            return
        if len(trace_ids) > MAX_TRACE_LINKS_PER_REQUEST:
            raise _invalid(f"Cannot link more than {MAX_TRACE_LINKS_PER_REQUEST} traces to a "
                           f"run in a single request. Provided {len(trace_ids)} traces.")
        self._relink(trace_ids, "runs", run_id, add=True)

    def unlink_traces_from_run(self, trace_ids: list[str], run_id: str) -> None:
        self._relink(trace_ids, "runs", run_id, add=False)

    def _relink(self, trace_ids: list[str], field: str, target: str, add: bool) -> None:
        with self.docs.atomic():
            unique = list(dict.fromkeys(trace_ids))
            for doc in self.docs.many(_TRACE, unique):
                if doc is None or (target in doc[field]) == add:
                    continue
                if add:
                    doc[field].append(target)
                else:
                    doc[field].remove(target)
                self.docs.put(_TRACE, doc["id"], doc)

    def link_prompts_to_trace(self, trace_id: str, prompt_versions: list[Any]) -> None:
        if not prompt_versions:
            return
        with self.docs.atomic():
            doc = self._trace_doc(trace_id)
            for pv in prompt_versions:
                prompt_id = f"{pv.name}/{pv.version}"
                if prompt_id not in doc["prompts"]:
                    doc["prompts"].append(prompt_id)
            self.docs.put(_TRACE, trace_id, doc)

    # -- analytics ---------------------------------------------------------
    def find_completed_sessions(self, experiment_id: str, min_last_trace_timestamp_ms: int,
                                max_last_trace_timestamp_ms: int,
                                max_results: int | None = None,
                                filter_string: str | None = None) -> list[Any]:
        from mlflow.genai.scorers.online.entities import CompletedSession

        scope = [d for d in self._scope([experiment_id]) if d["session"] is not None]
        by_session: dict[str, list[Doc]] = defaultdict(list)
        for doc in scope:
            by_session[doc["session"]].append(doc)
        candidates = {s for s, docs in by_session.items()
                      if any(d["ts"] >= min_last_trace_timestamp_ms for d in docs)}
        if filter_string:
            match = _Matcher(filter_string, self._scope([experiment_id]), self._span_docs)
            kept = set()
            for session in candidates:
                first = min(d["ts"] for d in by_session[session])
                if any(d["ts"] == first and match(d) for d in by_session[session]):
                    kept.add(session)
            candidates = kept
        stats = [(s, min(d["ts"] for d in by_session[s]), max(d["ts"] for d in by_session[s]))
                 for s in candidates]
        done = sorted((x for x in stats if x[2] <= max_last_trace_timestamp_ms),
                      key=lambda x: (x[2], x[0]))
        if max_results is not None:
            done = done[:max_results]
        return [CompletedSession(session_id=s, first_trace_timestamp_ms=first,
                                 last_trace_timestamp_ms=last) for s, first, last in done]

    def calculate_trace_filter_correlation(self, experiment_ids: list[str], filter_string1: str,
                                           filter_string2: str, base_filter: str | None = None
                                           ) -> TraceFilterCorrelationResult:
        base = self._matching(self._scope(experiment_ids), base_filter)
        ids1 = {d["id"] for d in self._matching(base, filter_string1)}
        ids2 = {d["id"] for d in self._matching(base, filter_string2)}
        total, joint = len(base), len(ids1 & ids2)
        npmi = trace_correlation.calculate_npmi_from_counts(joint, len(ids1), len(ids2), total)
        return TraceFilterCorrelationResult(
            npmi=npmi.npmi, npmi_smoothed=npmi.npmi_smoothed, filter1_count=len(ids1),
            filter2_count=len(ids2), joint_count=joint, total_count=total)

    def query_trace_metrics(self, experiment_ids: list[str], view_type: Any, metric_name: str,
                            aggregations: list[Any], dimensions: list[str] | None = None,
                            filters: list[str] | None = None,
                            time_interval_seconds: int | None = None,
                            start_time_ms: int | None = None, end_time_ms: int | None = None,
                            max_results: int = MAX_RESULTS_QUERY_TRACE_METRICS,
                            page_token: str | None = None) -> PagedList:
        from mlflow.store.tracking.utils.sql_trace_metrics_utils import (
            validate_query_trace_metrics_params,
        )

        validate_query_trace_metrics_params(view_type, metric_name, aggregations, dimensions)
        if time_interval_seconds and (start_time_ms is None or end_time_ms is None):
            raise _invalid("start_time_ms and end_time_ms are required if "
                           "time_interval_seconds is set")
        scope = self._scope(experiment_ids)
        points = _query_metrics(
            scope, self._span_docs() if scope else {}, view_type=view_type,
            metric_name=metric_name, aggregations=aggregations, dimensions=dimensions,
            filters=filters, time_interval_seconds=time_interval_seconds,
            max_results=max_results, time_ranges_ms=[(start_time_ms, end_time_ms)])
        return PagedList(points, None)  # MLflow's SQL store does not paginate either

    # -- legacy (V2) trace API ---------------------------------------------
    def deprecated_start_trace_v2(self, experiment_id: str, timestamp_ms: int,
                                  request_metadata: dict[str, str], tags: dict[str, str]
                                  ) -> TraceInfoV2:
        name = validate_trace_name(tags.get(TraceTagKey.TRACE_NAME))
        experiment = self._active_experiment(experiment_id)
        trace_id = generate_request_id_v2()
        doc = _new_trace(trace_id, experiment_id, timestamp_ms)
        doc["name"] = name
        metadata = dict(request_metadata)
        _set_analytics(doc, metadata)
        doc["meta"] = metadata
        doc["tags"] = {k: v for k, v in tags.items() if k != TraceTagKey.TRACE_NAME}
        doc["tags"][MLFLOW_ARTIFACT_LOCATION] = self._artifact_location(experiment, trace_id)
        self.docs.put(_TRACE, trace_id, doc)
        return TraceInfoV2.from_v3(_trace_info(doc))

    def deprecated_end_trace_v2(self, request_id: str, timestamp_ms: int, status: TraceStatus,
                                request_metadata: dict[str, str], tags: dict[str, str]
                                ) -> TraceInfoV2:
        with self.docs.atomic():
            doc = self._trace_doc(request_id)
            doc["dur"] = timestamp_ms - doc["ts"]
            doc["state"] = TraceStatus(status).to_state().value
            metadata = dict(request_metadata)
            _set_analytics(doc, metadata)
            doc["meta"].update(metadata)
            tags = dict(tags)
            if TraceTagKey.TRACE_NAME in tags:
                doc["name"] = validate_trace_name(tags.pop(TraceTagKey.TRACE_NAME))
            doc["tags"].update(tags)
            self.docs.put(_TRACE, request_id, doc)
        return TraceInfoV2.from_v3(_trace_info(doc))
