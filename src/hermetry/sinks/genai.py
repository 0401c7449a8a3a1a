"""Canonical events → OpenTelemetry GenAI spans and metric measurements (pure, no SDK needed).

One definition of every name hermetry exports, following the GenAI semantic conventions
**v1.41.0** exactly (docs/gen-ai/gen-ai-spans.md, gen-ai-agent-spans.md, gen-ai-metrics.md of
that release), plus hermetry's own ``hermetry.*`` names. The OTLP sink (:mod:`.otlp`) turns the
records built here into SDK objects; the Prometheus endpoint (:mod:`hermetry.surfaces.metrics`)
uses the same names after the standard OpenTelemetry → Prometheus translation
(:func:`prometheus_name`). docs/opentelemetry.md has the full table.

Span structure (decided here; docs/opentelemetry.md explains it):

* one trace per turn: ``invoke_agent hermes`` (INTERNAL) is its root, built when the turn's
  ``TurnEnded`` arrives (its start comes from ``TurnStarted``);
* ``chat {model}`` (CLIENT) per model-call attempt and ``execute_tool {tool}`` (INTERNAL) per tool
  call are its children, built as soon as they finish — before their parent, which is fine in
  OTLP because ids are **deterministic**: a hash of the turn / call id, so a child can name its
  parent before the parent exists, and a replay of the same history yields the same ids;
* a subagent's turns join the trace of the parent turn that delegated them (child of its span);
* an attempt outside any turn (an auxiliary call) is a trace of its own.

Times are the recorded event times (Unix nanoseconds), never the time of export.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hermetry.model.events import (
    ApiCall,
    CronRunFinished,
    Event,
    SessionEnded,
    SessionReopened,
    SessionStarted,
    SubagentLinked,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.model.outcomes import (
    SESSION_OUTCOME_CLASS,
    TURN_OUTCOME_CLASS,
    UNENDED_RUN_SESSION_TYPES,
    reconciled_turn,
    session_outcome,
    session_outcome_for_end_reason,
)
from hermetry.model.privacy import clean_error

SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
AGENT_NAME = "hermes"
SCOPE_NAME = "hermetry"

# -- attribute names (GenAI semantic conventions v1.41.0) --------------------------------------
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
AGENT_NAME_ATTR = "gen_ai.agent.name"
AGENT_VERSION = "gen_ai.agent.version"
CONVERSATION_ID = "gen_ai.conversation.id"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
RESPONSE_TTFC = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT = "gen_ai.usage.input_tokens"
USAGE_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"
USAGE_OUTPUT = "gen_ai.usage.output_tokens"
USAGE_REASONING = "gen_ai.usage.reasoning.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
HTTP_STATUS = "http.response.status_code"

#: Attributes that carry content. hermetry never records content, so none is ever set; they are
#: listed so tests (and readers) can check that.
CONTENT_ATTRIBUTES = (
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.definitions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
)

# -- hermetry's own attributes ----------------------------------------------------------------
H_SOURCE = "hermetry.source"
H_SESSION_ID = "hermetry.session.id"
H_TURN_ID = "hermetry.turn.id"
H_TURN_OUTCOME = "hermetry.turn.outcome"
H_SESSION_OUTCOME = "hermetry.session.outcome"
H_OUTCOME_CLASS = "hermetry.outcome.class"
H_OUTCOME_REASON = "hermetry.turn.outcome_reason"
H_QUEUE_WAIT_S = "hermetry.turn.queue_wait"
H_API_REQUEST_ID = "hermetry.api_request.id"
H_ATTEMPT = "hermetry.api_call.attempt"
H_CALL_STATUS = "hermetry.api_call.status"
H_TASK = "hermetry.task"
H_COST_USD = "hermetry.cost.usd"
H_COST_STATUS = "hermetry.cost.status"
H_COST_SOURCE = "hermetry.cost.source"
H_TOOL_STATUS = "hermetry.tool.status"
H_TOOLSET = "hermetry.toolset"
H_ORIGIN = "hermetry.origin"
H_SINK = "hermetry.sink"
H_TOKEN_KIND = "hermetry.token.kind"

# -- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One instrument: its OpenTelemetry name, kind, unit and (histograms) bucket boundaries."""

    name: str
    #: "histogram" | "counter" (monotonic sum) | "updowncounter" (a non-monotonic sum: a count of what
    #: the store says *now*, which a later reclassification can lower; Prometheus: a gauge)
    kind: str
    unit: str
    description: str
    boundaries: tuple[float, ...] = ()


#: The spec's boundaries for gen_ai.client.operation.duration and …time_to_first_chunk (seconds).
GENAI_DURATION_BUCKETS_S = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                            40.96, 81.92)
#: The spec's boundaries for gen_ai.client.token.usage.
GENAI_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                       16777216, 67108864)
#: hermetry's boundaries for agent latencies that run longer than one model call (a turn's wall
#: time, the wait in a gateway's queue): 0.1 s … 1 h in steps of ×√2 from 1 s up — histogram_quantile
#: interpolates inside a bucket, so a quantile is off by at most one bucket width: ≤ +41 % / −29 %
#: of the true value above 1 s (docs/prometheus.md).
AGENT_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.41, 2.0, 2.83, 4.0, 5.66, 8.0, 11.3, 16.0, 22.6,
                           32.0, 45.3, 64.0, 90.5, 128.0, 181.0, 256.0, 362.0, 512.0, 724.0, 1024.0,
                           1800.0, 3600.0)

OPERATION_DURATION = MetricDef("gen_ai.client.operation.duration", "histogram", "s",
                               "GenAI operation duration.", GENAI_DURATION_BUCKETS_S)
TOKEN_USAGE = MetricDef("gen_ai.client.token.usage", "histogram", "{token}",
                        "Number of input and output tokens used.", GENAI_TOKEN_BUCKETS)
TIME_TO_FIRST_CHUNK = MetricDef("gen_ai.client.operation.time_to_first_chunk", "histogram", "s",
                                "Time to receive the first chunk of a streamed response.",
                                GENAI_DURATION_BUCKETS_S)
TURNS = MetricDef("hermetry.turns", "updowncounter", "{turn}",
                  "Ended turns (user request → final answer) by their current outcome (a reclassified turn "
                  "moves from one outcome to another).")
TURN_DURATION = MetricDef("hermetry.turn.duration", "histogram", "s", "Wall time of a turn.",
                          AGENT_LATENCY_BUCKETS_S)
QUEUE_WAIT = MetricDef("hermetry.turn.queue_wait", "histogram", "s",
                       "Time a gateway message waited before its turn began.", AGENT_LATENCY_BUCKETS_S)
SESSIONS = MetricDef("hermetry.sessions", "updowncounter", "{session}",
                     "Sessions with an outcome, by their current outcome (a reclassified or reopened session "
                     "leaves its old outcome).")
API_CALLS = MetricDef("hermetry.api_calls", "counter", "{call}", "Model-call attempts by status and cost status.")
COST = MetricDef("hermetry.cost", "counter", "USD",
                 "Cost of model calls in US dollars, by cost status (calls of unknown cost add nothing).")
TOKENS = MetricDef("hermetry.tokens", "counter", "{token}",
                   "Tokens by kind: input (without cache), cache_read, cache_write, output (with reasoning); "
                   "the four are disjoint and add up to the total.")
REASONING_TOKENS = MetricDef("hermetry.tokens.reasoning", "counter", "{token}",
                             "Reasoning tokens — already counted in hermetry.tokens{kind=output}.")
TOOL_CALLS = MetricDef("hermetry.tool_calls", "counter", "{call}", "Tool calls by tool and status.")
DROPPED = MetricDef("hermetry.recorder.dropped", "counter", "{event}",
                    "Events the recorder (or an exporter) could not deliver — never silent.")

METRICS: tuple[MetricDef, ...] = (OPERATION_DURATION, TOKEN_USAGE, TIME_TO_FIRST_CHUNK, TURNS, TURN_DURATION,
                                  QUEUE_WAIT, SESSIONS, API_CALLS, COST, TOKENS, REASONING_TOKENS, TOOL_CALLS,
                                  DROPPED)
METRIC_BY_NAME = {m.name: m for m in METRICS}

_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "1": ""}


def prometheus_name(metric: MetricDef) -> str:
    """The metric's Prometheus name after the standard OpenTelemetry translation (the rule of
    opentelemetry-exporter-prometheus: dots → underscores, the unit appended unless it is an
    ``{annotation}``, ``_total`` for monotonic counters; an up-down counter is a gauge, no suffix)."""
    base = metric.name.replace(".", "_")
    unit = "" if metric.unit.startswith("{") else _UNIT_SUFFIX.get(metric.unit, metric.unit)
    if unit and not base.endswith("_" + unit):
        base += "_" + unit
    return base + "_total" if metric.kind == "counter" else base


def prometheus_label(attribute: str) -> str:
    return attribute.replace(".", "_")


# -- providers --------------------------------------------------------------------------------

#: Hermes provider ids → the spec's well-known ``gen_ai.provider.name`` values; anything else is
#: passed on as Hermes names it (the spec allows custom values: openrouter, nous, custom, …).
PROVIDER_NAMES = {
    "anthropic": "anthropic", "openai": "openai", "openai-codex": "openai", "deepseek": "deepseek",
    "groq": "groq", "mistral": "mistral_ai", "mistralai": "mistral_ai", "xai": "x_ai", "x-ai": "x_ai",
    "gemini": "gcp.gemini", "google": "gcp.gemini", "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock",
    "aws-bedrock": "aws.bedrock", "perplexity": "perplexity", "cohere": "cohere", "azure": "azure.ai.openai",
    "watsonx": "ibm.watsonx.ai",
}


def provider_name(provider: str | None) -> str:
    if not provider:
        return "unknown"
    return PROVIDER_NAMES.get(provider.lower(), provider)


def server_of(base_url: str | None) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` of a base URL (default ports by scheme)."""
    if not base_url:
        return None, None
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None, None
    return host, port if host else None


def input_tokens_total(call: ApiCall) -> int | None:
    """``gen_ai.usage.input_tokens`` counts cached tokens (spec note 13); Hermes' ``input_tokens``
    excludes cache reads and writes, so they are added back. None when the input is unknown."""
    if call.input_tokens is None:
        return None
    return call.input_tokens + (call.cache_read_tokens or 0) + (call.cache_write_tokens or 0)


# -- ids ----------------------------------------------------------------------------------------

def _digest(kind: str, key: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(f"{kind}:{key}".encode(), digest_size=size).digest(), "big")
    return value or 1  # all-zero ids are invalid in OpenTelemetry


def trace_id_for(root_key: str) -> int:
    return _digest("hermetry.trace", root_key, 16)


def span_id_for(key: str) -> int:
    return _digest("hermetry.span", key, 8)


# -- records ----------------------------------------------------------------------------------


@dataclass(slots=True)
class SpanRecord:
    """One finished span, in plain data; :mod:`.otlp` makes an SDK ``ReadableSpan`` of it."""

    name: str
    kind: str  # "internal" | "client"
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: str | None = None  # status ERROR with this (redacted) description; None: status unset


@dataclass(slots=True)
class Measurement:
    """One value for one instrument, with its attributes and the event time it belongs to."""

    metric: MetricDef
    value: float
    attributes: tuple[tuple[str, Any], ...]
    at_ns: int


@dataclass(slots=True)
class _Session:
    root: str
    source: str | None
    model: str | None
    provider: str | None
    agent_version: str | None
    parent_turn_id: str | None
    session_type: str | None = None
    last_turn_id: str | None = None  # the latest turn by start (the one-run rule's "last turn")
    last_turn_started_ms: float = float("-inf")
    last_turn_outcome: str | None = None
    open_turns: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Turn:
    session_id: str
    started_at_ms: float
    queue_wait_ms: float | None
    trace_root: str
    parent_span_id: int | None
    usage: dict[str, int] = field(default_factory=dict)
    provider: str | None = None  # of its first model call, when the session did not say
    last_call_status: str | None = None  # of its latest model call (by start), for reconciled_turn
    last_call_started_ms: float = float("-inf")
    last_call_end_ms: float | None = None  # the latest end of any of its model calls


def _ns(ms: float) -> int:
    # via whole microseconds: ms × 1e6 as a float would lose the last digits of a 2020s epoch
    return int(round(ms * 1000)) * 1000


def _attrs(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _key(d: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    # each instrument's attributes are built in one fixed order, so the tuple needs no sorting
    return tuple([(k, v) for k, v in d.items() if v is not None])


# -- the measurements of one row (the live mapper and the Prometheus fold share them) -------------

#: (model, provider, server.address, server.port, error.type) of a model-call attempt
CallLabels = tuple[str | None, str, str | None, int | None, str | None]


def call_labels(e: ApiCall, session_model: str | None, session_provider: str | None) -> CallLabels:
    """The labels of one model-call attempt (its own model and provider win over its session's)."""
    model = e.model or session_model
    provider = provider_name(e.provider or session_provider)
    address, port = server_of(e.base_url)
    error_type = None
    if e.status == "interrupted":
        error_type = "interrupted"
    elif e.status != "ok":
        error_type = e.error_type or (str(e.http_status) if e.http_status else "_OTHER")
    return model, provider, address, port if address else None, error_type


def api_call_points(e: ApiCall, source: str | None, labels: CallLabels, points: list[Measurement]) -> None:
    """Every measurement one model-call attempt adds (``source``: its session's)."""
    model, provider, address, port, error_type = labels
    task = getattr(e, "task", None)
    at = _ns(e.started_at_ms + (e.latency_ms or 0.0))
    metric_attrs = {OPERATION_NAME: "chat", PROVIDER_NAME: provider, REQUEST_MODEL: model,
                    RESPONSE_MODEL: e.response_model, SERVER_ADDRESS: address,
                    SERVER_PORT: port, ERROR_TYPE: error_type, H_SOURCE: source, H_TASK: task}
    total_in = input_tokens_total(e)
    # an imported usage row (call_count set) is a per-session total of call_count calls, not one
    # operation: it stays out of the per-operation histograms and counts call_count calls
    per_operation = e.call_count is None
    if e.latency_ms is not None and per_operation:
        points.append(Measurement(OPERATION_DURATION, e.latency_ms / 1000, _key(metric_attrs), at))
    token_attrs = {k: v for k, v in metric_attrs.items() if k != ERROR_TYPE}
    if total_in is not None and per_operation:
        points.append(Measurement(TOKEN_USAGE, total_in, _key({**token_attrs, TOKEN_TYPE: "input"}), at))
    if e.output_tokens is not None and per_operation:
        points.append(Measurement(TOKEN_USAGE, e.output_tokens, _key({**token_attrs, TOKEN_TYPE: "output"}), at))
    if e.ttft_ms is not None and e.streamed is not False and per_operation:
        points.append(Measurement(TIME_TO_FIRST_CHUNK, e.ttft_ms / 1000, _key(token_attrs), at))
    by_kind = {PROVIDER_NAME: provider, REQUEST_MODEL: model, H_SOURCE: source, H_TASK: task}
    for kind, n in (("input", e.input_tokens), ("cache_read", e.cache_read_tokens),
                    ("cache_write", e.cache_write_tokens), ("output", e.output_tokens)):
        if n:
            points.append(Measurement(TOKENS, n, _key({**by_kind, H_TOKEN_KIND: kind}), at))
    if e.reasoning_tokens:
        points.append(Measurement(REASONING_TOKENS, e.reasoning_tokens, _key(by_kind), at))
    cost_status = e.cost_status or "unknown"
    calls = {PROVIDER_NAME: provider, REQUEST_MODEL: model, H_SOURCE: source, H_CALL_STATUS: e.status,
             H_COST_STATUS: cost_status, H_TASK: task}
    points.append(Measurement(API_CALLS, e.call_count if e.call_count is not None else 1, _key(calls), at))
    if e.cost_usd is not None:
        points.append(Measurement(COST, e.cost_usd, _key({PROVIDER_NAME: provider, REQUEST_MODEL: model,
                                                           H_SOURCE: source, H_COST_STATUS: cost_status}), at))


def tool_call_points(e: ToolCall, source: str | None, points: list[Measurement]) -> None:
    """The measurement one tool call adds (``source``: its session's)."""
    end = _ns(e.started_at_ms + (e.latency_ms or 0.0))
    points.append(Measurement(TOOL_CALLS, 1, _key({TOOL_NAME: e.tool_name, H_TOOL_STATUS: e.status,
                                                    H_SOURCE: source}), end))


def turn_count_attributes(outcome: str, source: str | None, origin: str | None) -> tuple[tuple[str, Any], ...]:
    """``hermetry.turns``' attributes. Derived (imported) turns carry ``hermetry.origin``: rate
    panels leave them out (they cannot fail)."""
    klass = str(TURN_OUTCOME_CLASS.get(outcome, "neutral"))
    return _key({H_TURN_OUTCOME: outcome, H_OUTCOME_CLASS: klass, H_SOURCE: source,
                 H_ORIGIN: origin if origin != "live" else None})


def turn_duration_attributes(outcome: str, source: str | None) -> tuple[tuple[str, Any], ...]:
    return _key({H_TURN_OUTCOME: outcome, H_SOURCE: source})


def queue_wait_attributes(source: str | None) -> tuple[tuple[str, Any], ...]:
    return _key({H_SOURCE: source})


def session_attributes(outcome: str, source: str | None) -> tuple[tuple[str, Any], ...]:
    klass = str(SESSION_OUTCOME_CLASS.get(outcome, "neutral"))
    return _key({H_SESSION_OUTCOME: outcome, H_OUTCOME_CLASS: klass, H_SOURCE: source})


class GenAIMapper:
    """Turns canonical events into :class:`SpanRecord` and :class:`Measurement` lists.

    Keeps a little state between batches (bounded LRU maps): open turns, so the turn span can be
    built at its end; sessions, for the conversation id, the source and the model. Runs on the
    writer thread (live) or in ``hermetry export --otlp`` (replay).
    """

    def __init__(self, *, max_tracked: int = 20_000, spans: bool = True) -> None:
        self.max_tracked = max_tracked
        self.build_spans = spans
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._turns: OrderedDict[str, _Turn] = OrderedDict()
        self._turn_trace: OrderedDict[str, tuple[str, int]] = OrderedDict()  # ended turns, for late children
        # sessions whose end was seen (the first end wins, however many SessionEnded events live
        # capture sends for it: state.db, the finalize hook, a reset)
        self._ended: OrderedDict[str, None] = OrderedDict()
        # what each session adds to hermetry.sessions now (an up-down counter, the store's current
        # count): its attributes, so a reopen or a new API-server turn takes it back
        self._counted: OrderedDict[str, tuple[tuple[str, Any], ...]] = OrderedDict()
        # turns this mapper closed itself (reconciled): their hermetry.turns attributes, so the
        # turn's own end arriving later replaces that outcome, as in the store
        self._reconciled: OrderedDict[str, tuple[tuple[str, Any], ...]] = OrderedDict()
        # cron sessions ended but not yet counted: their outcome waits for Hermes' job status
        # (CronRunFinished comes after SessionEnded); counted when it arrives, or at finish()
        self._pending_cron: OrderedDict[str, tuple[SessionEnded, _Session | None]] = OrderedDict()

    # -- state --

    def _remember(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_tracked:
            table.popitem(last=False)

    def _session(self, session_id: str) -> _Session | None:
        return self._sessions.get(session_id)

    def _trace_of_turn(self, turn_id: str) -> tuple[str, int]:
        """(trace root key, span id) of a turn, open or recently ended; unknown: its own trace."""
        turn = self._turns.get(turn_id)
        if turn is not None:
            return turn.trace_root, span_id_for("turn:" + turn_id)
        return self._turn_trace.get(turn_id) or ("turn:" + turn_id, span_id_for("turn:" + turn_id))

    # -- mapping --

    def map(self, events: Iterable[Event]) -> tuple[list[SpanRecord], list[Measurement]]:
        spans: list[SpanRecord] = []
        points: list[Measurement] = []
        for event in events:
            if isinstance(event, ApiCall):
                self._api_call(event, spans, points)
            elif isinstance(event, ToolCall):
                self._tool_call(event, spans, points)
            elif isinstance(event, TurnStarted):
                self._turn_started(event, spans, points)
            elif isinstance(event, TurnEnded):
                self._turn_ended(event, spans, points)
            elif isinstance(event, SessionStarted):
                self._session_started(event)
            elif isinstance(event, SessionEnded):
                self._session_ended(event, spans, points)
            elif isinstance(event, CronRunFinished):
                self._cron_finished(event, points)
            elif isinstance(event, SessionReopened):
                # open again: it leaves its outcome (the store clears it); its later turns as usual
                self._ended.pop(event.session_id, None)
                self._set_session(event.session_id, None, _ns(event.reopened_at_ms), points)
            elif isinstance(event, SubagentLinked):
                known = self._sessions.get(event.child_session_id)
                parent = self._sessions.get(event.parent_session_id)
                root = parent.root if parent else event.parent_session_id
                if known is not None:
                    known.root, known.parent_turn_id = root, known.parent_turn_id or event.parent_turn_id
                else:
                    self._remember(self._sessions, event.child_session_id,
                                   _Session(root, "subagent", None, None, None, event.parent_turn_id))
        return (spans if self.build_spans else []), points

    def _session_started(self, e: SessionStarted) -> None:
        parent = self._sessions.get(e.parent_session_id) if e.parent_session_id else None
        root = parent.root if parent else (e.parent_session_id or e.session_id)
        if e.parent_session_id == e.session_id:
            root = e.session_id
        version = e.runtime_version.split()[-1] if e.runtime_version else None
        known = self._sessions.get(e.session_id)
        new = _Session(
            root=known.root if known and not e.parent_session_id else root,
            source=e.source, model=e.model, provider=e.provider, agent_version=version,
            parent_turn_id=e.parent_turn_id or (known.parent_turn_id if known else None),
            session_type=e.session_type or (known.session_type if known else None))
        if known is not None:
            new.last_turn_id, new.last_turn_started_ms = known.last_turn_id, known.last_turn_started_ms
            new.last_turn_outcome, new.open_turns = known.last_turn_outcome, known.open_turns
        self._remember(self._sessions, e.session_id, new)

    def _common(self, session_id: str) -> dict[str, Any]:
        s = self._session(session_id)
        return {CONVERSATION_ID: s.root if s else session_id, H_SESSION_ID: session_id,
                H_SOURCE: s.source if s else None}

    def _close_open_turns(self, session_id: str, at_ms: float, spans: list[SpanRecord], points: list[Measurement],
                          keep: str | None = None) -> None:
        """Close the session's turns left open, as the store does (``model.outcomes.reconciled_turn``):
        Hermes 0.19.0 reports no end for a turn whose model call failed after its retries."""
        s = self._session(session_id)
        if s is None or not s.open_turns:
            return
        for turn_id in [t for t in s.open_turns if t != keep]:
            turn = self._turns.get(turn_id)
            if turn is None:
                continue  # ended, or forgotten (bounded memory)
            outcome, reason = reconciled_turn(turn.last_call_status)
            ended = turn.last_call_end_ms if turn.last_call_end_ms is not None else at_ms
            self._turn_ended(TurnEnded(turn_id, session_id, ended, outcome.value, reason), spans, points,
                             reconciled=True)
        s.open_turns = [t for t in s.open_turns if t == keep]

    def _turn_started(self, e: TurnStarted, spans: list[SpanRecord], points: list[Measurement]) -> None:
        self._close_open_turns(e.session_id, e.started_at_ms, spans, points, keep=e.turn_id)
        s = self._session(e.session_id)
        if s is not None:
            if e.turn_id not in s.open_turns:
                s.open_turns.append(e.turn_id)
            if e.started_at_ms >= s.last_turn_started_ms:
                s.last_turn_id, s.last_turn_started_ms, s.last_turn_outcome = e.turn_id, e.started_at_ms, None
        if s is not None and s.session_type in UNENDED_RUN_SESSION_TYPES and e.session_id not in self._ended:
            # a run Hermes never ends (the API server's) is open again while a new turn runs
            self._set_session(e.session_id, None, _ns(e.started_at_ms), points)
        if e.queue_wait_ms is not None:
            points.append(Measurement(QUEUE_WAIT, e.queue_wait_ms / 1000,
                                      queue_wait_attributes(s.source if s else None), _ns(e.started_at_ms)))
        trace_root, parent_span = "turn:" + e.turn_id, None
        if s is not None and s.parent_turn_id and self.build_spans:
            trace_root, parent_span = self._trace_of_turn(s.parent_turn_id)
        self._remember(self._turns, e.turn_id, _Turn(e.session_id, e.started_at_ms, e.queue_wait_ms, trace_root,
                                                     parent_span))

    def _turn_ended(self, e: TurnEnded, spans: list[SpanRecord], points: list[Measurement], *,
                    reconciled: bool = False) -> None:
        turn = self._turns.pop(e.turn_id, None)
        s = self._session(e.session_id)
        last = False
        if s is not None:
            if e.turn_id in s.open_turns:
                s.open_turns.remove(e.turn_id)
            if s.last_turn_id == e.turn_id or s.last_turn_id is None:
                s.last_turn_id, s.last_turn_outcome = e.turn_id, e.outcome
                last = True
        klass = str(TURN_OUTCOME_CLASS.get(e.outcome, "neutral"))
        source = s.source if s else None
        at = _ns(e.ended_at_ms)
        counted = turn_count_attributes(e.outcome, source, e.origin)
        earlier = self._reconciled.pop(e.turn_id, None)
        if earlier is not None:  # its own end replaces the outcome this mapper inferred
            points.append(Measurement(TURNS, -1, earlier, at))
        points.append(Measurement(TURNS, 1, counted, at))
        if reconciled:
            self._remember(self._reconciled, e.turn_id, counted)
        if last and s is not None and s.session_type in UNENDED_RUN_SESSION_TYPES and e.session_id not in self._ended:
            # a run Hermes never ends follows its last ended turn (model.outcomes.session_outcome)
            outcome = session_outcome(None, s.session_type, e.outcome, None)
            if outcome is not None:
                self._set_session(e.session_id, session_attributes(outcome.value, source), at, points)
        if turn is None:
            return  # its start was never seen (another process): counted, but no span without a start
        # an abandoned turn's wall time is unknown (as in the store); one this mapper closed itself is
        # left out of the histogram, as analytics.metrics leaves it out (its own end may still come)
        if e.outcome != "abandoned" and not reconciled:
            wall_s = max(0.0, (e.ended_at_ms - turn.started_at_ms) / 1000)
            points.append(Measurement(TURN_DURATION, wall_s, turn_duration_attributes(e.outcome, source), at))
        if not self.build_spans:
            return
        self._remember(self._turn_trace, e.turn_id, (turn.trace_root, span_id_for("turn:" + e.turn_id)))
        attrs = {
            OPERATION_NAME: "invoke_agent", PROVIDER_NAME: provider_name((s.provider if s else None) or turn.provider),
            AGENT_NAME_ATTR: AGENT_NAME, AGENT_VERSION: s.agent_version if s else None,
            REQUEST_MODEL: s.model if s else None, **self._common(e.session_id),
            H_TURN_ID: e.turn_id, H_TURN_OUTCOME: e.outcome, H_OUTCOME_CLASS: klass,
            H_OUTCOME_REASON: e.outcome_reason,
            H_QUEUE_WAIT_S: None if turn.queue_wait_ms is None else turn.queue_wait_ms / 1000,
            H_ORIGIN: e.origin if e.origin != "live" else None,
            **turn.usage,
        }
        failed = klass == "failure"
        if failed:
            attrs[ERROR_TYPE] = e.outcome
        spans.append(SpanRecord(
            name=f"invoke_agent {AGENT_NAME}", kind="internal", trace_id=trace_id_for(turn.trace_root),
            span_id=span_id_for("turn:" + e.turn_id), parent_span_id=turn.parent_span_id,
            start_ns=_ns(turn.started_at_ms), end_ns=max(at, _ns(turn.started_at_ms)), attributes=_attrs(attrs),
            error=(clean_error(e.outcome_reason) or e.outcome) if failed else None))

    def _parent(self, turn_id: str | None, own_key: str) -> tuple[int, int | None]:
        if not turn_id:
            return trace_id_for(own_key), None
        root, span = self._trace_of_turn(turn_id)
        return trace_id_for(root), span

    def _api_call(self, e: ApiCall, spans: list[SpanRecord], points: list[Measurement]) -> None:
        s = self._session(e.session_id)
        labels = call_labels(e, s.model if s else None, s.provider if s else None)
        model, provider, address, port, error_type = labels
        task = getattr(e, "task", None)
        at = _ns(e.started_at_ms + (e.latency_ms or 0.0))
        usage = {USAGE_INPUT: input_tokens_total(e), USAGE_CACHE_READ: e.cache_read_tokens,
                 USAGE_CACHE_CREATION: e.cache_write_tokens, USAGE_OUTPUT: e.output_tokens,
                 USAGE_REASONING: e.reasoning_tokens}
        if e.turn_id and e.turn_id in self._turns:
            open_turn = self._turns[e.turn_id]
            open_turn.provider = open_turn.provider or e.provider
            if e.started_at_ms >= open_turn.last_call_started_ms:
                open_turn.last_call_started_ms, open_turn.last_call_status = e.started_at_ms, e.status
            end_ms = e.started_at_ms + (e.latency_ms or 0.0)
            open_turn.last_call_end_ms = max(open_turn.last_call_end_ms or end_ms, end_ms)
            acc = open_turn.usage
            for k, v in usage.items():
                if v is not None:
                    acc[k] = acc.get(k, 0) + v
        if self.build_spans:
            self._chat_span(e, spans, model, provider, address, port, error_type, usage, task, at)
        api_call_points(e, s.source if s else None, labels, points)

    def _chat_span(self, e: ApiCall, spans: list[SpanRecord], model: str | None, provider: str, address: str | None,
                   port: int | None, error_type: str | None, usage: dict[str, Any], task: str | None, at: int) -> None:
        attrs = {
            OPERATION_NAME: "chat", PROVIDER_NAME: provider, REQUEST_MODEL: model, RESPONSE_MODEL: e.response_model,
            SERVER_ADDRESS: address, SERVER_PORT: port if address else None, ERROR_TYPE: error_type,
            REQUEST_STREAM: e.streamed,
            RESPONSE_FINISH_REASONS: (e.finish_reason,) if e.finish_reason else None,
            RESPONSE_TTFC: None if e.ttft_ms is None else e.ttft_ms / 1000,
            **usage, HTTP_STATUS: e.http_status, **self._common(e.session_id), H_TURN_ID: e.turn_id,
            H_API_REQUEST_ID: e.api_request_id, H_ATTEMPT: e.attempt, H_CALL_STATUS: e.status, H_TASK: task,
            H_COST_USD: e.cost_usd, H_COST_STATUS: e.cost_status, H_COST_SOURCE: e.cost_source,
            H_ORIGIN: e.origin if e.origin != "live" else None,
        }
        own = "api:" + e.api_call_id
        trace_id, parent = self._parent(e.turn_id, own)
        start = _ns(e.started_at_ms)
        spans.append(SpanRecord(
            name=f"chat {model}" if model else "chat", kind="client", trace_id=trace_id, span_id=span_id_for(own),
            parent_span_id=parent, start_ns=start, end_ns=max(start, at), attributes=_attrs(attrs),
            error=(clean_error(e.error_message) or error_type) if error_type and error_type != "interrupted" else None))

    def _tool_call(self, e: ToolCall, spans: list[SpanRecord], points: list[Measurement]) -> None:
        s = self._session(e.session_id)
        end = _ns(e.started_at_ms + (e.latency_ms or 0.0))
        tool_call_points(e, s.source if s else None, points)
        if not self.build_spans:
            return
        error_type = None if e.status == "ok" else (e.error_type or e.status)
        own = "tool:" + e.tool_call_id
        trace_id, parent = self._parent(e.turn_id, own)
        start = _ns(e.started_at_ms)
        attrs = {OPERATION_NAME: "execute_tool", TOOL_NAME: e.tool_name, TOOL_CALL_ID: e.tool_call_id,
                 TOOL_TYPE: "function", ERROR_TYPE: error_type, **self._common(e.session_id), H_TURN_ID: e.turn_id,
                 H_TOOL_STATUS: e.status, H_TOOLSET: e.toolset, H_API_REQUEST_ID: e.api_request_id,
                 H_ORIGIN: e.origin if e.origin != "live" else None}
        spans.append(SpanRecord(
            name=f"execute_tool {e.tool_name}", kind="internal", trace_id=trace_id, span_id=span_id_for(own),
            parent_span_id=parent, start_ns=start, end_ns=max(start, end), attributes=_attrs(attrs),
            error=(clean_error(e.error_message) or error_type) if error_type else None))

    def _session_ended(self, e: SessionEnded, spans: list[SpanRecord], points: list[Measurement]) -> None:
        self._close_open_turns(e.session_id, e.ended_at_ms, spans, points)
        if e.session_id in self._ended or e.session_id in self._pending_cron:
            return  # counted once: the first end wins, as in the store
        s = self._session(e.session_id)
        if s is not None and s.session_type == "cron":
            self._remember(self._pending_cron, e.session_id, (e, s))
            return
        self._count_session(e, s, None, points)

    def _count_session(self, e: SessionEnded, s: _Session | None, run_status: str | None,
                       points: list[Measurement]) -> None:
        self._remember(self._ended, e.session_id, None)
        # the store's one rule (model.outcomes.session_outcome), from what this process saw; an
        # outcome that is not its end reason's was ruled already (events read back from the store)
        outcome = session_outcome(e.end_reason, s.session_type if s else None,
                                  s.last_turn_outcome if s else None, run_status)
        ruled = e.outcome != session_outcome_for_end_reason(e.end_reason).value
        value = e.outcome if ruled or outcome is None else outcome.value
        self._set_session(e.session_id, session_attributes(value, s.source if s else None), _ns(e.ended_at_ms),
                          points)

    def _set_session(self, session_id: str, attributes: tuple[tuple[str, Any], ...] | None, at_ns: int,
                     points: list[Measurement]) -> None:
        """Make the session count under ``attributes`` (None: under no outcome, it is open)."""
        before = self._counted.pop(session_id, None)
        if before == attributes:
            if before is not None:
                self._counted[session_id] = before
            return
        if before is not None:
            points.append(Measurement(SESSIONS, -1, before, at_ns))
        if attributes is not None:
            self._remember(self._counted, session_id, attributes)
            points.append(Measurement(SESSIONS, 1, attributes, at_ns))

    def _cron_finished(self, e: CronRunFinished, points: list[Measurement]) -> None:
        # the job's latest cron session (Hermes names it cron_<job_id>_<time>), as the store does
        prefix = f"cron_{e.job_id}_"
        match = [sid for sid in self._pending_cron if sid.startswith(prefix)]
        if not match:
            return
        sid = max(match)
        ended, s = self._pending_cron.pop(sid)
        self._count_session(ended, s, e.status, points)

    def finish(self) -> tuple[list[SpanRecord], list[Measurement]]:
        """What is still held back at the end of a process or a replay: cron sessions whose job
        status never arrived are counted by their end reason and last turn."""
        points: list[Measurement] = []
        while self._pending_cron:
            _, (ended, s) = self._pending_cron.popitem(last=False)
            self._count_session(ended, s, None, points)
        return [], points


# -- aggregation --------------------------------------------------------------------------------


@dataclass(slots=True)
class Series:
    """One metric stream (a metric and one attribute set): a sum, or a histogram's counts."""

    metric: MetricDef
    attributes: tuple[tuple[str, Any], ...]
    start_ns: int
    time_ns: int
    count: int = 0
    sum: float = 0.0
    bucket_counts: list[int] | None = None
    min: float = float("inf")
    max: float = float("-inf")

    def add(self, value: float, at_ns: int) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.time_ns = max(self.time_ns, at_ns)
        self.start_ns = min(self.start_ns, at_ns)
        if self.bucket_counts is not None:
            self.bucket_counts[bisect_left(self.metric.boundaries, value)] += 1  # buckets are (lower, upper]

    def copy(self) -> Series:
        return Series(self.metric, self.attributes, self.start_ns, self.time_ns, self.count, self.sum,
                      None if self.bucket_counts is None else list(self.bucket_counts), self.min, self.max)


def new_series(metric: MetricDef, attributes: tuple[tuple[str, Any], ...], at_ns: int) -> Series:
    buckets = [0] * (len(metric.boundaries) + 1) if metric.kind == "histogram" else None
    return Series(metric, attributes, at_ns, at_ns, bucket_counts=buckets)


class Aggregator:
    """Measurements → the series they touched, as cumulative totals (the OpenTelemetry default,
    start = the series' first event) or as deltas of this batch alone.

    Memory is bounded: at most ``max_series`` cumulative series are kept; measurements of a new
    series beyond that are counted in ``dropped`` (never silent)."""

    def __init__(self, *, cumulative: bool = True, max_series: int = 10_000) -> None:
        self.cumulative = cumulative
        self.max_series = max_series
        self.dropped = 0
        self._totals: dict[tuple[str, tuple[tuple[str, Any], ...]], Series] = {}

    def add(self, points: Iterable[Measurement]) -> list[Series]:
        touched: dict[tuple[str, tuple[tuple[str, Any], ...]], Series] = {}
        for p in points:
            key = (p.metric.name, p.attributes)
            if self.cumulative:
                series = self._totals.get(key)
                if series is None:
                    if len(self._totals) >= self.max_series:
                        self.dropped += 1
                        continue
                    series = self._totals[key] = new_series(p.metric, p.attributes, p.at_ns)
                touched[key] = series
            else:
                series = touched.get(key) or touched.setdefault(key, new_series(p.metric, p.attributes, p.at_ns))
            series.add(p.value, p.at_ns)
        return [s.copy() for s in touched.values()]

    def totals(self) -> list[Series]:
        """Every cumulative series kept so far."""
        return [s.copy() for s in self._totals.values()]


# -- the field table (docs/opentelemetry.md is generated from it; a test checks it covers every field) --

#: (event, canonical field) → where it goes in OpenTelemetry, and how. "—" means "not exported".
FIELD_MAP: tuple[tuple[str, str, str, str], ...] = (
    ("SessionStarted", "session_id", f"`{H_SESSION_ID}`", "on every span of the session"),
    ("SessionStarted", "started_at_ms", "—", "sessions have no span (a session can last days); turns do"),
    ("SessionStarted", "source", f"`{H_SOURCE}`", "spans and every metric (cli, telegram, api_server, cron, …)"),
    ("SessionStarted", "session_type", "—", "in the store and reports only"),
    ("SessionStarted", "model", f"`{REQUEST_MODEL}` (turn span)", "a call's own model wins on its chat span"),
    ("SessionStarted", "provider", f"`{PROVIDER_NAME}` (turn span)", "the spec's well-known names where one applies"),
    ("SessionStarted", "profile", "—", "in the store and reports only"),
    ("SessionStarted", "parent_session_id", f"`{CONVERSATION_ID}`", "the root of the lineage = the conversation"),
    ("SessionStarted", "parent_turn_id", "parent span", "a subagent's turn is a child of the turn that delegated it"),
    ("SessionStarted", "lineage", f"`{CONVERSATION_ID}`", "subagents and continuations keep their root's id"),
    ("SessionStarted", "runtime_version", f"`{AGENT_VERSION}`", "e.g. 0.19.0"),
    ("SessionStarted", "host", "resource `host.name`", "of the exporting process"),
    ("SessionStarted", "origin", f"`{H_ORIGIN}`", "set only for imported history (`backfill`)"),
    ("SessionEnded", "session_id", f"`{H_SESSION_ID}`", ""),
    ("SessionEnded", "ended_at_ms", "point time of `hermetry.sessions`", ""),
    ("SessionEnded", "end_reason", "—", "Hermes' raw string stays in the store; its outcome is exported"),
    ("SessionEnded", "outcome", f"`{H_SESSION_OUTCOME}`, `{H_OUTCOME_CLASS}`", "on `hermetry.sessions`"),
    ("SessionEnded", "origin", f"`{H_ORIGIN}`", ""),
    ("SessionEnded", "supersedes", "—", "store bookkeeping"),
    ("TurnStarted", "turn_id", f"`{H_TURN_ID}`; the turn's span and trace ids", "ids are hashes of it"),
    ("TurnStarted", "session_id", f"`{H_SESSION_ID}`", ""),
    ("TurnStarted", "started_at_ms", "`invoke_agent` span start", ""),
    ("TurnStarted", "task_id", "—", "Hermes-internal"),
    ("TurnStarted", "queue_wait_ms", f"`{H_QUEUE_WAIT_S}` (s); metric `{QUEUE_WAIT.name}`", "gateway platforms only"),
    ("TurnStarted", "origin", f"`{H_ORIGIN}`", ""),
    ("TurnEnded", "turn_id", f"`{H_TURN_ID}`", ""),
    ("TurnEnded", "session_id", f"`{H_SESSION_ID}`", ""),
    ("TurnEnded", "ended_at_ms", "`invoke_agent` span end; metric `hermetry.turn.duration`", ""),
    ("TurnEnded", "outcome", f"`{H_TURN_OUTCOME}`, `{H_OUTCOME_CLASS}`; `{ERROR_TYPE}` + status ERROR on failure",
     "metric `hermetry.turns`"),
    ("TurnEnded", "outcome_reason", f"`{H_OUTCOME_REASON}`", "a label (e.g. `gateway_timeout`), never text"),
    ("TurnEnded", "origin", f"`{H_ORIGIN}`", ""),
    ("ApiCall", "api_request_id", f"`{H_API_REQUEST_ID}`", "retries share it"),
    ("ApiCall", "attempt", f"`{H_ATTEMPT}`", "0 for the first try; one `chat` span per attempt"),
    ("ApiCall", "session_id", f"`{H_SESSION_ID}`", ""),
    ("ApiCall", "turn_id", "parent span (the turn)", "no turn: a trace of its own (auxiliary calls)"),
    ("ApiCall", "started_at_ms", "`chat` span start", ""),
    ("ApiCall", "latency_ms", f"`chat` span end; `{OPERATION_DURATION.name}` (s)", ""),
    ("ApiCall", "status", f"`{H_CALL_STATUS}`; `{ERROR_TYPE}` unless ok", "interrupted → `error.type=interrupted`, status unset"),
    ("ApiCall", "model", f"`{REQUEST_MODEL}`; span name `chat {{model}}`", ""),
    ("ApiCall", "provider", f"`{PROVIDER_NAME}`", "anthropic, openai, gcp.gemini, x_ai, … or Hermes' own id"),
    ("ApiCall", "base_url", f"`{SERVER_ADDRESS}`, `{SERVER_PORT}`", "credentials never (redacted at capture)"),
    ("ApiCall", "api_mode", "—", ""),
    ("ApiCall", "response_model", f"`{RESPONSE_MODEL}`", ""),
    ("ApiCall", "ttft_ms", f"`{RESPONSE_TTFC}` (s); `{TIME_TO_FIRST_CHUNK.name}`", "streamed calls"),
    ("ApiCall", "streamed", f"`{REQUEST_STREAM}`", ""),
    ("ApiCall", "input_tokens", f"`{USAGE_INPUT}` = input + cache read + cache write", "the convention counts cached tokens as input"),
    ("ApiCall", "output_tokens", f"`{USAGE_OUTPUT}`", "includes reasoning"),
    ("ApiCall", "cache_read_tokens", f"`{USAGE_CACHE_READ}`", ""),
    ("ApiCall", "cache_write_tokens", f"`{USAGE_CACHE_CREATION}`", ""),
    ("ApiCall", "reasoning_tokens", f"`{USAGE_REASONING}`", "part of output"),
    ("ApiCall", "finish_reason", f"`{RESPONSE_FINISH_REASONS}`", "a one-element array"),
    ("ApiCall", "http_status", f"`{HTTP_STATUS}`", ""),
    ("ApiCall", "retry_count", "—", "the attempt number says it"),
    ("ApiCall", "error_type", f"`{ERROR_TYPE}`", "else the HTTP status, else `_OTHER`"),
    ("ApiCall", "error_message", "span status description", "truncated and redacted as in the store"),
    ("ApiCall", "provider_cost_usd", "—", "feeds `cost_usd` (status actual)"),
    ("ApiCall", "cost_usd", f"`{H_COST_USD}`; metric `{COST.name}` (USD)", "unknown cost: attribute absent, adds nothing"),
    ("ApiCall", "cost_status", f"`{H_COST_STATUS}`", "actual, estimated, included, unknown"),
    ("ApiCall", "cost_source", f"`{H_COST_SOURCE}`", ""),
    ("ApiCall", "pricing_version", "—", ""),
    ("ApiCall", "origin", f"`{H_ORIGIN}`", ""),
    ("ApiCall", "task", f"`{H_TASK}`", "auxiliary calls (compression, titles, …) when the source says"),
    ("ApiCall", "call_count", f"`{API_CALLS.name}` adds it", "imported per-session totals: not in the per-operation histograms"),
    ("ToolCall", "tool_call_id", f"`{TOOL_CALL_ID}`", ""),
    ("ToolCall", "session_id", f"`{H_SESSION_ID}`", ""),
    ("ToolCall", "turn_id", "parent span (the turn)", ""),
    ("ToolCall", "tool_name", f"`{TOOL_NAME}`; span name `execute_tool {{tool}}`", f"`{TOOL_TYPE}=function`"),
    ("ToolCall", "started_at_ms", "`execute_tool` span start", ""),
    ("ToolCall", "latency_ms", "`execute_tool` span end", ""),
    ("ToolCall", "status", f"`{H_TOOL_STATUS}`; `{ERROR_TYPE}` unless ok", f"metric `{TOOL_CALLS.name}`"),
    ("ToolCall", "toolset", f"`{H_TOOLSET}`", ""),
    ("ToolCall", "api_request_id", f"`{H_API_REQUEST_ID}`", "the model call that asked for it"),
    ("ToolCall", "error_type", f"`{ERROR_TYPE}`", ""),
    ("ToolCall", "error_message", "span status description", "truncated and redacted"),
    ("ToolCall", "origin", f"`{H_ORIGIN}`", ""),
    ("SubagentLinked", "child_session_id", "parent span of the child's turns", ""),
    ("SubagentLinked", "parent_session_id", f"`{CONVERSATION_ID}`", ""),
    ("SubagentLinked", "parent_turn_id", "parent span", ""),
    ("SubagentLinked", "linked_at_ms", "—", ""),
    ("SubagentLinked", "child_role", "—", ""),
)
FIELD_MAP += (
    ("SessionReopened", "session_id", "—", "a resumed session's later turns are exported as usual"),
    ("SessionReopened", "reopened_at_ms", "—", ""),
    ("SessionReopened", "origin", "—", ""),
)
