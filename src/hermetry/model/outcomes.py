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
    # Sessions Hermes leaves open in state.db (e.g. ``hermes chat -q``) but finalizes through
    # the on_session_finalize hook: hermetry records the hook's reason with this prefix, and a
    # later end reason from state.db replaces it.
    "on_session_finalize:shutdown": SessionOutcome.COMPLETED,
    "on_session_finalize:session_boundary": SessionOutcome.RESET,
    "on_session_finalize:session_expired": SessionOutcome.EXPIRED,
}


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


def newer_hermes_exit_outcome(turn_exit_reason: str) -> TurnOutcome:
    """Newer Hermes names why an interrupted turn ended (``turn_exit_reason``)."""
    return TurnOutcome.TIMED_OUT if "timeout" in turn_exit_reason.lower() or "timed out" in turn_exit_reason.lower() \
        else TurnOutcome.INTERRUPTED
