"""The records the Hermes capture queues: one named record per hook (or wrapper) call.

The agent-thread callbacks (:mod:`callbacks`) build a plain tuple in a record's field order —
its first two fields are always the writer-thread normalizer and the time, then the hook's
keyword arguments under their Hermes names (:func:`hook_keys`) — and the writer-thread
normalizers (:mod:`hooks`) read it back *by name*: :func:`picker` resolves the names they want
against the record once, at import, into one C-level ``itemgetter`` (no copy, no Python call per
field). The field order is defined once, here: reordering a record reorders both sides, never
shifts a field; a misspelt name fails at import.

Why plain tuples on the agent's thread: building a ``NamedTuple`` instance costs a Python-level
``__new__`` call (~2× a tuple literal). :data:`view` gives the whole record (tests, debugging).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

R = TypeVar("R", bound=tuple[Any, ...])

#: ``view(Record, item)``: the queued tuple as that record (a C-level copy, no Python call).
view: Callable[[type[R], tuple[Any, ...]], R] = tuple.__new__


def picker(record: type[tuple[Any, ...]], *names: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """``picker(Record, "t", "session_id")(item)`` → ``(item.t, item.session_id)``, by name."""
    if len(names) < 2:
        raise ValueError("pick at least two fields (one would not come back as a tuple)")
    fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
    return itemgetter(*(fields.index(n) for n in names))


def hook_keys(record: type[tuple[Any, ...]], *computed: str) -> tuple[str, ...]:
    """The fields a callback picks from the hook's keyword arguments, in order: every field
    after ``normalize``, ``t`` (and ``probe``), except those the callback ``computed``."""
    fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
    skip = {"normalize", "t", "probe", *computed}
    return tuple(f for f in fields if f not in skip)


class SessionStartRecord(NamedTuple):
    """``on_session_start``."""

    normalize: Any
    t: float
    session_id: Any
    model: Any
    platform: Any


class TurnStartRecord(NamedTuple):
    """``pre_llm_call`` (the message is kept only as a hash of its first 4 KiB)."""

    normalize: Any
    t: float
    session_id: Any
    task_id: Any
    turn_id: Any
    platform: Any
    sender_id: Any
    message_hash: Any


class ArrivalRecord(NamedTuple):
    """``pre_gateway_dispatch``: a message reached the gateway (text kept only as a hash)."""

    normalize: Any
    t: float
    platform: Any
    user_id: Any
    stamp: Any
    text_hash: Any


class TurnEndRecord(NamedTuple):
    """``on_session_end`` (Hermes' end of one turn)."""

    normalize: Any
    t: float
    session_id: Any
    turn_id: Any
    completed: Any
    interrupted: Any
    failed: Any
    turn_exit_reason: Any


class ApiOkRecord(NamedTuple):
    """``post_api_request``, with the stream probe of that attempt."""

    normalize: Any
    t: float
    probe: Any
    session_id: Any
    turn_id: Any
    api_request_id: Any
    model: Any
    provider: Any
    base_url: Any
    api_mode: Any
    api_duration: Any
    started_at: Any
    finish_reason: Any
    response_model: Any
    usage: Any
    first_delta_at: Any
    ended_at: Any
    first_chunk_at: Any


class ApiErrorRecord(NamedTuple):
    """``api_request_error``, with the stream probe of that attempt."""

    normalize: Any
    t: float
    probe: Any
    session_id: Any
    turn_id: Any
    api_request_id: Any
    model: Any
    provider: Any
    base_url: Any
    api_mode: Any
    api_duration: Any
    started_at: Any
    status_code: Any
    retry_count: Any
    reason: Any
    error: Any
    ended_at: Any


class InterruptRecord(NamedTuple):
    """The ``AIAgent.interrupt`` wrapper: why a turn was interrupted (a label, never the text)."""

    normalize: Any
    t: float
    session_id: Any
    label: Any


class ApiAbortedRecord(NamedTuple):
    """The stream probe: a model call interrupted mid-flight (no Hermes hook fires)."""

    normalize: Any
    t: float
    probe: Any
    session_id: Any
    turn_id: Any
    api_request_id: Any
    model: Any
    provider: Any
    base_url: Any
    api_mode: Any


class ToolRecord(NamedTuple):
    """``post_tool_call`` (a terminal command's exit code, never its output)."""

    normalize: Any
    t: float
    session_id: Any
    turn_id: Any
    tool_call_id: Any
    api_request_id: Any
    tool_name: Any
    duration_ms: Any
    status: Any
    error_type: Any
    error_message: Any
    exit_code: Any


class UnknownToolRecord(NamedTuple):
    """Hermes' tool dispatch: the model asked for a tool that does not exist."""

    normalize: Any
    t: float
    context: Any
    name: Any


class AuxUsageRecord(NamedTuple):
    """``SessionDB.record_auxiliary_usage``: an auxiliary model call's usage and task."""

    normalize: Any
    t: float
    session_id: Any
    task: Any
    fields: Any
    timing: Any
    context: Any


class AuxErrorRecord(NamedTuple):
    """The SDK wrapper: an auxiliary model call that failed."""

    normalize: Any
    t: float
    session_id: Any
    timing: Any
    error_type: Any
    http_status: Any
    message: Any
    context: Any


class AuxPostRecord(NamedTuple):
    """Newer Hermes' ``post_auxiliary_call`` (one per physical attempt)."""

    normalize: Any
    t: float
    session_id: Any
    turn_id: Any
    task: Any
    aux_task: Any
    model: Any
    provider: Any
    base_url: Any
    usage: Any
    api_duration: Any
    started_at: Any
    ended_at: Any
    status: Any
    error: Any
    first_chunk_at: Any


class MirrorCreateRecord(NamedTuple):
    """``SessionDB.create_session`` (state_mirror.py passes these in this order)."""

    normalize: Any
    t: float
    session_id: Any
    source: Any
    model: Any
    parent_session_id: Any
    profile: Any


class MirrorEndRecord(NamedTuple):
    """``SessionDB.end_session`` (state_mirror.py)."""

    normalize: Any
    t: float
    session_id: Any
    end_reason: Any
    supersedes: Any


class CronStatusRecord(NamedTuple):
    """Hermes' cron scheduler recorded a job run's status."""

    normalize: Any
    t: float
    job_id: Any
    success: Any


class SessionFinalizeRecord(NamedTuple):
    """``on_session_finalize``."""

    normalize: Any
    t: float
    session_id: Any
    reason: Any


class MirrorReopenRecord(NamedTuple):
    """``SessionDB.reopen_session`` (state_mirror.py)."""

    normalize: Any
    t: float
    session_id: Any


class SubagentStartRecord(NamedTuple):
    """``subagent_start``."""

    normalize: Any
    t: float
    parent_session_id: Any
    parent_turn_id: Any
    child_session_id: Any
    child_role: Any
