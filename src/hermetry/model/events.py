"""The canonical telemetry events: one definition, used by every source and every store.

Every source (the Hermes plugin, the backfill importer, the runtime-agnostic Python API)
produces these records; every store persists them; analytics reads what the stores wrote.

Units are in the names: ``*_at_ms`` are Unix epoch milliseconds (UTC), ``*_ms`` are
durations in milliseconds, ``*_tokens`` are token counts, ``*_usd`` are US dollars.
``None`` always means "not captured" — never zero.

Token kinds follow Hermes' normalized usage (and are documented in docs/telemetry-model.md):
``input_tokens`` excludes cache reads and cache writes; ``output_tokens`` includes reasoning
tokens; ``reasoning_tokens`` is the part of the output that was reasoning (never add it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Where a row came from: captured live by a hook, or imported from Hermes' state.db.
Origin = Literal["live", "backfill"]

#: ``ApiCall.task`` of the agent loop's own model calls (auxiliary calls carry Hermes' task name).
TASK_MAIN = "main"

@dataclass(slots=True)
class SessionStarted:
    """A Hermes session (one conversation id) began."""

    session_id: str
    started_at_ms: float
    source: str | None = None
    session_type: str | None = None
    model: str | None = None
    provider: str | None = None
    profile: str | None = None
    parent_session_id: str | None = None
    parent_turn_id: str | None = None
    lineage: str | None = None  # "subagent" | "continuation" (compression or branch child) | None
    runtime_version: str | None = None
    host: str | None = None
    origin: Origin = "live"


@dataclass(slots=True)
class SessionEnded:
    """A session ended (finalized, reset, expired, …). ``end_reason`` is Hermes' raw string."""

    session_id: str
    ended_at_ms: float
    end_reason: str | None
    outcome: str
    origin: Origin = "live"
    #: earlier end reasons this end may replace (Hermes' promote_to_session_reset); otherwise
    #: the first end reason recorded for a session wins, as in Hermes' own state.db
    supersedes: tuple[str, ...] = ()


@dataclass(slots=True)
class SessionReopened:
    """A session that had ended was resumed (Hermes cleared its end); it is open again."""

    session_id: str
    reopened_at_ms: float
    origin: Origin = "live"


@dataclass(slots=True)
class TurnStarted:
    """One user request began (user message → final answer is one turn)."""

    turn_id: str
    session_id: str
    started_at_ms: float
    task_id: str | None = None
    queue_wait_ms: float | None = None
    origin: Origin = "live"


@dataclass(slots=True)
class TurnEnded:
    """A turn finished with an outcome from :mod:`hermetry.model.outcomes`."""

    turn_id: str
    session_id: str
    ended_at_ms: float
    outcome: str
    outcome_reason: str | None = None
    origin: Origin = "live"


@dataclass(slots=True)
class ApiCall:
    """One attempt of one LLM API request (retries are separate attempts of the same request)."""

    api_request_id: str
    attempt: int
    session_id: str
    turn_id: str | None
    started_at_ms: float
    latency_ms: float | None
    status: str  # "ok" | "error" | "interrupted"
    model: str | None = None
    provider: str | None = None
    base_url: str | None = None
    api_mode: str | None = None
    response_model: str | None = None
    ttft_ms: float | None = None
    streamed: bool | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    finish_reason: str | None = None
    http_status: int | None = None
    retry_count: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    provider_cost_usd: float | None = None
    cost_usd: float | None = None
    cost_status: str | None = None
    cost_source: str | None = None
    pricing_version: str | None = None
    origin: Origin = "live"
    #: ``main`` (the agent loop's own call) or Hermes' auxiliary task: ``compression``,
    #: ``title_generation``, ``vision``, ``web_extract``, ``session_search``, … (None: not known)
    task: str | None = TASK_MAIN
    #: how many model calls this row stands for: None for one attempt; an imported row of
    #: Hermes' per-session totals carries Hermes' ``api_call_count``
    call_count: int | None = None

    @property
    def api_call_id(self) -> str:
        return f"{self.api_request_id}#{self.attempt}"


@dataclass(slots=True)
class ToolCall:
    """One tool invocation."""

    tool_call_id: str
    session_id: str
    turn_id: str | None
    tool_name: str
    started_at_ms: float
    latency_ms: float | None
    status: str  # "ok" | "error" | "blocked" | raw Hermes status
    toolset: str | None = None
    api_request_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    origin: Origin = "live"


@dataclass(slots=True)
class SubagentLinked:
    """A delegated child session was started from a parent session's turn."""

    child_session_id: str
    parent_session_id: str
    parent_turn_id: str | None
    linked_at_ms: float
    child_role: str | None = None


@dataclass(slots=True)
class CronRunFinished:
    """Hermes' cron scheduler recorded a job run's status (``last_status``: ``ok`` / ``error``).

    The run's session is the job's latest cron session (Hermes names it ``cron_<job_id>_<time>``);
    the store attaches the status to it, and the session outcome follows it.
    """

    job_id: str
    finished_at_ms: float
    status: str


Event = (
    SessionStarted
    | SessionEnded
    | SessionReopened
    | TurnStarted
    | TurnEnded
    | ApiCall
    | ToolCall
    | SubagentLinked
    | CronRunFinished
)
