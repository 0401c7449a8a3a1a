"""The outcome taxonomy: the one place that says how a turn or a session ended.

Every source classifies through this module and every report counts with it, so "completed",
"timed out" or "failed" means the same thing on the CLI, the gateways, the API server, cron
and subagents. docs/outcomes.md explains each rule.

Each outcome belongs to a class:

* ``success`` — the agent did what was asked (counts toward the completion rate),
* ``failure`` — the agent or its model did not (counts toward the failure rate),
* ``neutral`` — neither: a user's choice, a policy, a continuation, or not known.
"""

from __future__ import annotations

from enum import StrEnum


class OutcomeClass(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


class TurnOutcome(StrEnum):
    """How one user request (a turn) ended."""

    COMPLETED = "completed"  # a final answer was produced
    INTERRUPTED = "interrupted"  # stopped by a person or client (Ctrl-C, /stop, API stop)
    TIMED_OUT = "timed_out"  # stopped by an inactivity or wall-clock limit
    ERRORED = "errored"  # the model API failed after its retries, or the agent raised
    ABANDONED = "abandoned"  # left open: the process died or never reported an end
    UNKNOWN = "unknown"  # an end was reported but not what kind


class SessionOutcome(StrEnum):
    """How a session (one conversation id) ended."""

    COMPLETED = "completed"  # closed normally by its owner (CLI exit, one-shot done, cron done)
    RESET = "reset"  # the user started over (/new, /reset, switch, branch, resume another)
    COMPRESSED = "compressed"  # continued in a child session after context compression
    EXPIRED = "expired"  # closed by a gateway policy (idle, daily, eviction, suspension)
    INTERRUPTED = "interrupted"  # the client or host went away (disconnect, shutdown signal)
    TIMED_OUT = "timed_out"  # closed by a timeout
    ERRORED = "errored"  # ended by an error
    ABANDONED = "abandoned"  # never closed: the process died; closed by the reconciler
    UNKNOWN = "unknown"  # an end reason hermetry does not know; the raw string is kept


TURN_OUTCOME_CLASS: dict[str, OutcomeClass] = {
    TurnOutcome.COMPLETED: OutcomeClass.SUCCESS,
    TurnOutcome.INTERRUPTED: OutcomeClass.NEUTRAL,
    TurnOutcome.TIMED_OUT: OutcomeClass.FAILURE,
    TurnOutcome.ERRORED: OutcomeClass.FAILURE,
    TurnOutcome.ABANDONED: OutcomeClass.FAILURE,
    TurnOutcome.UNKNOWN: OutcomeClass.NEUTRAL,
}

SESSION_OUTCOME_CLASS: dict[str, OutcomeClass] = {
    SessionOutcome.COMPLETED: OutcomeClass.SUCCESS,
    SessionOutcome.RESET: OutcomeClass.NEUTRAL,
    SessionOutcome.COMPRESSED: OutcomeClass.NEUTRAL,
    SessionOutcome.EXPIRED: OutcomeClass.NEUTRAL,
    SessionOutcome.INTERRUPTED: OutcomeClass.NEUTRAL,
    SessionOutcome.TIMED_OUT: OutcomeClass.FAILURE,
    SessionOutcome.ERRORED: OutcomeClass.FAILURE,
    SessionOutcome.ABANDONED: OutcomeClass.FAILURE,
    SessionOutcome.UNKNOWN: OutcomeClass.NEUTRAL,
}

#: Every ``end_reason`` Hermes 0.19.0 (and newer main) writes, mapped to a session outcome.
#: Anything not listed is kept verbatim and classed ``unknown`` — never guessed.
END_REASON_OUTCOME: dict[str, SessionOutcome] = {
    # closed normally by whoever owned the session
    "cli_close": SessionOutcome.COMPLETED,
    "agent_close": SessionOutcome.COMPLETED,
    "cron_complete": SessionOutcome.COMPLETED,
    "webhook_complete": SessionOutcome.COMPLETED,
    "tui_close": SessionOutcome.COMPLETED,
    # the user moved on to another conversation
    "new_session": SessionOutcome.RESET,
    "session_reset": SessionOutcome.RESET,
    "session_switch": SessionOutcome.RESET,
    "resumed_other": SessionOutcome.RESET,
    "branched": SessionOutcome.RESET,
    "superseded_by_resume": SessionOutcome.RESET,
    # continued in a child session
    "compression": SessionOutcome.COMPRESSED,
    # gateway policies
    "idle": SessionOutcome.EXPIRED,
    "daily": SessionOutcome.EXPIRED,
    "idle_timeout": SessionOutcome.EXPIRED,
    "lru_evict": SessionOutcome.EXPIRED,
    "suspended": SessionOutcome.EXPIRED,
    "resume_pending_expired": SessionOutcome.EXPIRED,
    # the client or host went away
    "tui_shutdown": SessionOutcome.INTERRUPTED,
    "ws_disconnect": SessionOutcome.INTERRUPTED,
    "ws_orphan_reap": SessionOutcome.ABANDONED,
    "compute_host_shutdown": SessionOutcome.INTERRUPTED,
    "compute_host_sigterm": SessionOutcome.INTERRUPTED,
    "compute_host_stdin_closed": SessionOutcome.INTERRUPTED,
    "compute_host_orphan": SessionOutcome.ABANDONED,
    "startup_orphan_reap": SessionOutcome.ABANDONED,
    "orphaned_compression": SessionOutcome.ERRORED,
    # hermetry's reconciler closed a session its dead process left open
    "reconciled:no_session_end": SessionOutcome.ABANDONED,
    # Sessions Hermes leaves open in state.db (e.g. ``hermes chat -q``) but finalizes through
    # the on_session_finalize hook: hermetry records the hook's reason with this prefix, and a
    # later end reason from state.db replaces it.
    "on_session_finalize:shutdown": SessionOutcome.COMPLETED,
    "on_session_finalize:session_boundary": SessionOutcome.RESET,
    "on_session_finalize:session_expired": SessionOutcome.EXPIRED,
}

#: Prefix of an ``end_reason`` only the ``on_session_finalize`` hook reported (see above).
FINALIZE_PREFIX = "on_session_finalize:"


def session_outcome_for_end_reason(end_reason: str | None) -> SessionOutcome:
    """Classify Hermes' raw ``end_reason``. ``None`` (still open) is handled by the caller."""
    if not end_reason:
        return SessionOutcome.UNKNOWN
    return END_REASON_OUTCOME.get(end_reason.strip().lower(), SessionOutcome.UNKNOWN)


def turn_outcome_class(outcome: str | None) -> OutcomeClass:
    return TURN_OUTCOME_CLASS.get(outcome or "", OutcomeClass.NEUTRAL)


def session_outcome_class(outcome: str | None) -> OutcomeClass:
    return SESSION_OUTCOME_CLASS.get(outcome or "", OutcomeClass.NEUTRAL)


#: The fixed reasons Hermes 0.19.0 passes to ``AIAgent.interrupt()`` (gateway/run.py,
#: gateway/platforms/api_server.py, cron/scheduler.py, tools/delegate_tool.py), and what each means.
#: Anything else passed to interrupt() is a person's new message — its text is never kept.
INTERRUPT_REASONS: dict[str, TurnOutcome] = {
    "Execution timed out (inactivity)": TurnOutcome.TIMED_OUT,
    "Cron job timed out (inactivity)": TurnOutcome.TIMED_OUT,
    "Stop requested": TurnOutcome.INTERRUPTED,
    "Stop requested via API": TurnOutcome.INTERRUPTED,
    "Session reset requested": TurnOutcome.INTERRUPTED,
    "SSE client disconnected": TurnOutcome.INTERRUPTED,
    "SSE task cancelled": TurnOutcome.INTERRUPTED,
    "Gateway shutting down": TurnOutcome.INTERRUPTED,
    "Gateway restarting": TurnOutcome.INTERRUPTED,
    "Async delegation cancelled": TurnOutcome.INTERRUPTED,
}
#: Labels for interrupts that carry no fixed reason.
INTERRUPT_BY_USER = "user_interrupt"  # Ctrl-C, /stop without a reason
INTERRUPT_BY_NEW_MESSAGE = "new_message"  # the user sent a new message while the agent worked


def interrupt_label(message: object) -> str:
    """A storable label for an interrupt: Hermes' fixed reason, or a generic label — never user text."""
    if message is None or message == "":
        return INTERRUPT_BY_USER
    if isinstance(message, str) and message.strip() in INTERRUPT_REASONS:
        return message.strip()
    return INTERRUPT_BY_NEW_MESSAGE


def turn_outcome_for_interrupt(label: str | None) -> TurnOutcome:
    """An interrupted turn is a timeout when Hermes' reason says a limit fired."""
    if label is None:
        return TurnOutcome.INTERRUPTED
    return INTERRUPT_REASONS.get(label, TurnOutcome.INTERRUPTED)


#: ``turn_exit_reason`` values newer Hermes (0.20+) reports on ``on_session_end``, and what each
#: means. ``max_iterations_reached(n/m)`` carries its counts; it is matched by its prefix.
TURN_EXIT_REASONS: dict[str, TurnOutcome] = {
    "interrupted_by_user": TurnOutcome.INTERRUPTED,
    "guardrail_halt": TurnOutcome.INTERRUPTED,  # a policy stopped the turn: neutral, reason kept
    "max_iterations_reached": TurnOutcome.ERRORED,  # the agent ran out of its step budget
    "partial_stream_recovery": TurnOutcome.COMPLETED,  # the answer was recovered from a broken stream
}


def turn_outcome_for_exit_reason(turn_exit_reason: str) -> TurnOutcome | None:
    """The outcome newer Hermes' ``turn_exit_reason`` names (None: a value this table doesn't know)."""
    text = turn_exit_reason.strip().lower()
    key = text.split("(", 1)[0].strip()
    if key in TURN_EXIT_REASONS:
        return TURN_EXIT_REASONS[key]
    if "timeout" in text or "timed out" in text or "timed_out" in text:
        return TurnOutcome.TIMED_OUT
    return None


def newer_hermes_exit_outcome(turn_exit_reason: str) -> TurnOutcome:
    """Newer Hermes names why an interrupted turn ended (``turn_exit_reason``)."""
    outcome = turn_outcome_for_exit_reason(turn_exit_reason)
    return TurnOutcome.INTERRUPTED if outcome is None or outcome == TurnOutcome.COMPLETED else outcome


# ---------------------------------------------------------------------------------------------
# Sessions that are one run: their outcome follows how the run ended
# ---------------------------------------------------------------------------------------------

#: Session types that are one run of the agent (``model/sessions.py`` assigns them): a one-shot
#: ``hermes -z``, ``hermes chat -q``, a cron job, a webhook or API-server run, a subagent. Hermes
#: closes these with ``agent_close`` / ``cron_complete`` / ``webhook_complete`` however the run
#: went, so their outcome follows the run's last turn when that failed, and Hermes' own cron
#: status when it has one. Interactive chats and gateway conversations keep the end-reason rule:
#: one failed request does not make a conversation a failure.
ONE_RUN_SESSION_TYPES = frozenset({"oneshot", "query", "cron", "webhook", "api", "subagent"})

#: A failed last turn → the session outcome it gives a one-run session.
_TURN_FAILURE_SESSION = {
    TurnOutcome.ERRORED.value: SessionOutcome.ERRORED,
    TurnOutcome.TIMED_OUT.value: SessionOutcome.TIMED_OUT,
}
#: One-run session types Hermes 0.19.0 never ends (its API server keeps no session lifecycle: no
#: end reason ever arrives). Their outcome follows their last ended turn without waiting for one.
UNENDED_RUN_SESSION_TYPES = frozenset({"api"})
#: A one-run session's last turn outcome → its session outcome, for runs Hermes never ends.
_TURN_SESSION = {
    TurnOutcome.COMPLETED.value: SessionOutcome.COMPLETED,
    TurnOutcome.INTERRUPTED.value: SessionOutcome.INTERRUPTED,
    TurnOutcome.TIMED_OUT.value: SessionOutcome.TIMED_OUT,
    TurnOutcome.ERRORED.value: SessionOutcome.ERRORED,
    TurnOutcome.ABANDONED.value: SessionOutcome.ABANDONED,
}
#: End-reason outcomes a failed run overrides (a run that "completed", or whose end is unknown).
_OVERRIDABLE = frozenset({SessionOutcome.COMPLETED, SessionOutcome.UNKNOWN, SessionOutcome.ABANDONED})

#: Hermes' own status of a run, as hermetry stores it (``sessions.run_status``): cron's
#: ``last_status`` (``ok``/``error``) for the job run a cron session was.
RUN_STATUS_OK = "ok"
RUN_STATUS_ERROR = "error"


def session_outcome(end_reason: str | None, session_type: str | None, last_turn_outcome: str | None,
                    run_status: str | None = None) -> SessionOutcome | None:
    """The one rule for a session's outcome (docs/outcomes.md). None while the session is open.

    * the raw ``end_reason`` is classified by :data:`END_REASON_OUTCOME`;
    * a session of a :data:`ONE_RUN_SESSION_TYPES` type whose end says completed (or unknown, or
      abandoned) becomes ``errored``/``timed_out`` when its last turn did, and ``errored``
      when Hermes' own run status says the run failed (cron: ``last_status = error``);
    * every other session keeps its end reason's outcome;
    * a session Hermes never ends (:data:`UNENDED_RUN_SESSION_TYPES`: the API server's) follows its
      last turn while it has no end reason: None while that turn runs, else the turn's outcome.
    """
    if end_reason is None:
        if session_type in UNENDED_RUN_SESSION_TYPES and last_turn_outcome:
            return _TURN_SESSION.get(last_turn_outcome, SessionOutcome.UNKNOWN)
        return None
    base = session_outcome_for_end_reason(end_reason)
    if session_type not in ONE_RUN_SESSION_TYPES or base not in _OVERRIDABLE:
        return base
    failed = _TURN_FAILURE_SESSION.get(last_turn_outcome or "")
    if failed is not None:
        return failed
    if run_status == RUN_STATUS_ERROR:
        return SessionOutcome.ERRORED
    return base


def session_outcome_knowable(origin: str | None, session_type: str | None) -> bool:
    """Whether a session's outcome says how it went. An imported one-run session is not: Hermes'
    state.db keeps no failed turns, so its "completed" might have been a failed run."""
    return not (origin == "backfill" and session_type in ONE_RUN_SESSION_TYPES)


# ---------------------------------------------------------------------------------------------
# What hermetry infers for what was left open: one vocabulary for every closer
# ---------------------------------------------------------------------------------------------

#: Prefix of every ``outcome_reason``/``end_reason`` hermetry inferred rather than was told.
RECONCILED_PREFIX = "reconciled:"
#: A turn left open whose last model call had failed (Hermes 0.19.0 fires no turn end then): errored.
REASON_LAST_CALL_FAILED = "reconciled:last_call_failed"
#: A turn left open that never reported an end (the next turn started, its session ended, or the
#: process died): abandoned, with unknown wall time.
REASON_NO_TURN_END = "reconciled:no_turn_end"
#: A session never closed by Hermes after its turns were reconciled (the process died).
REASON_NO_SESSION_END = "reconciled:no_session_end"


def reconciled_turn(last_call_status: str | None) -> tuple[TurnOutcome, str]:
    """(outcome, outcome_reason) of a turn hermetry closes because no end was reported."""
    if last_call_status == "error":
        return TurnOutcome.ERRORED, REASON_LAST_CALL_FAILED
    return TurnOutcome.ABANDONED, REASON_NO_TURN_END


# ---------------------------------------------------------------------------------------------
# Tool-call status
# ---------------------------------------------------------------------------------------------

#: Statuses of a tool-call row (docs/telemetry-model.md): Hermes' own ``ok``/``error``/``blocked``;
#: ``unknown_tool`` — the model asked for a tool that does not exist (Hermes ran nothing);
#: ``unknown`` — the source cannot say (imported history). ``error`` with ``error_type``
#: ``nonzero_exit`` is hermetry's: Hermes says ``ok`` for a terminal command that exited non-zero.
TOOL_OK = "ok"
TOOL_ERROR = "error"
TOOL_BLOCKED = "blocked"
TOOL_UNKNOWN_TOOL = "unknown_tool"
TOOL_UNKNOWN = "unknown"
#: Statuses that are not known outcomes: left out of tool failure rates (and counted as coverage).
TOOL_STATUS_NOT_KNOWN = frozenset({TOOL_UNKNOWN})
#: The one status that is not a failure. ``blocked`` (a policy refused the call) and
#: ``unknown_tool`` count as failures: the call did not do what the model asked.
TOOL_STATUS_NOT_FAILURE = frozenset({TOOL_OK})


def tool_failed(status: str | None) -> bool | None:
    """True/False for a known status, None when the status is not known."""
    if not status or status in TOOL_STATUS_NOT_KNOWN:
        return None
    return status not in TOOL_STATUS_NOT_FAILURE
