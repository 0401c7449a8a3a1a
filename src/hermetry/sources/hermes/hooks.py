"""Hermes lifecycle hooks → canonical events: the capture and its writer-thread normalizers.

Two halves, on two threads, in two modules:

* **Callbacks** (:mod:`callbacks`; Hermes' thread, inline on its hot path): each picks the few
  keyword arguments its record (:mod:`records`) names into a tuple, appends it to the
  recorder's queue and returns. No parsing, no I/O, no locks; any exception is swallowed there
  so it can never reach Hermes. Prompt, response and tool-argument payloads are never picked.
* **Normalizers** (here; the recorder's writer thread): read each tuple back as its named
  record and turn it into :mod:`hermetry.model.events`, tolerating missing fields and wrong
  types.

See ../shared/hermes-reference.md (hooks and their arguments, as seen in Hermes 0.19.0).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from hermetry.model.coerce import as_float, as_id, as_int, as_str
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
    FINALIZE_PREFIX,
    RUN_STATUS_ERROR,
    RUN_STATUS_OK,
    TOOL_ERROR,
    TOOL_OK,
    TOOL_UNKNOWN,
    TOOL_UNKNOWN_TOOL,
    TurnOutcome,
    interrupt_label,
    newer_hermes_exit_outcome,
    session_outcome_for_end_reason,
    turn_outcome_for_exit_reason,
    turn_outcome_for_interrupt,
)
from hermetry.model.privacy import clean_error
from hermetry.model.sessions import lineage_for, profile_for_home, session_type_for
from hermetry.recorder.recorder import Recorder
from hermetry.sources.hermes import stream_probe
from hermetry.sources.hermes.callbacks import hook_callbacks, state_callbacks
from hermetry.sources.hermes.records import (
    ApiAbortedRecord,
    ApiErrorRecord,
    ApiOkRecord,
    ArrivalRecord,
    AuxErrorRecord,
    AuxPostRecord,
    AuxUsageRecord,
    CronStatusRecord,
    InterruptRecord,
    MirrorCreateRecord,
    MirrorEndRecord,
    MirrorReopenRecord,
    SessionFinalizeRecord,
    SessionStartRecord,
    SubagentStartRecord,
    ToolRecord,
    TurnEndRecord,
    TurnStartRecord,
    UnknownToolRecord,
    picker,
)

# ---------------------------------------------------------------------------------------------
# Small, forgiving converters (writer thread)
# ---------------------------------------------------------------------------------------------

_str = as_str
_id = as_id
_int = as_int
_float = as_float


def _ms(seconds: Any) -> float | None:
    f = _float(seconds)
    return None if f is None else f * 1000.0


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


# ---------------------------------------------------------------------------------------------
# The capture: callbacks and their normalizers
# ---------------------------------------------------------------------------------------------

class HermesCapture:
    """Registers Hermes hooks that feed one recorder."""

    def __init__(self, recorder: Recorder, *, profile: str | None = None) -> None:
        self.recorder = recorder
        self.profile = profile
        # this machine's id in a fleet (config.host(), handed to the recorder by the composition root)
        self.host = getattr(recorder, "host", None) or socket.gethostname()
        self.runtime_version = _hermes_version()
        self.argv = list(sys.argv[1:])
        # writer-thread state: attempts seen per API request (retries reuse the same id)
        self._attempts: OrderedDict[str, int] = OrderedDict()
        # gateway arrivals waiting for their turn: (platform, sender) -> [(arrived_at_s, text hash)]
        self._arrivals: dict[tuple[str, str], list[tuple[float, int | None]]] = {}
        # why each session's current turn was interrupted (a label, never the text), fed through the
        # queue by the AIAgent.interrupt wrapper (see plugin.py) so it stays in order with the turn
        self.interrupt_reasons: dict[str, str] = {}

    # -- registration ------------------------------------------------------------------------

    def callbacks(self, valid_hooks: Iterable[str] = ()) -> dict[str, Callable[..., None]]:
        """Hook name → callback, ready for ``ctx.register_hook`` (see :mod:`callbacks`)."""
        return hook_callbacks(self, valid_hooks)

    @staticmethod
    def exit_code(result: Any) -> int | None:
        """A terminal tool's exit code from its result (agent thread; see :func:`_exit_code`)."""
        return _exit_code(result)

    # -- normalizers (writer thread) ---------------------------------------------------------

    def _session_started(self, t: float, session_id: Any, source: Any, model: Any, profile: Any = None,
                         parent_session_id: Any = None) -> Iterable[Event]:
        sid = _id(session_id)
        if not sid:
            return ()
        src, parent = _str(source), _id(parent_session_id)
        return (
            SessionStarted(
                session_id=sid, started_at_ms=t * 1000, source=src,
                session_type=session_type_for(src, self.argv), model=_str(model),
                profile=_str(profile) or self.profile, parent_session_id=parent,
                lineage=lineage_for(src, parent), runtime_version=self.runtime_version, host=self.host,
            ),
        )

    def _session_start(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, model, platform) = _PICK_SESSION_START(item)
        return self._session_started(t, session_id, platform, model)

    def _turn_start(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, task_id, turn_id, platform, sender_id, message_hash) = _PICK_TURN_START(item)
        sid, tid = _id(session_id), _id(turn_id)
        if not sid or not tid:
            return ()
        self.interrupt_reasons.pop(sid, None)  # an interrupt of an earlier turn is not this turn's
        arrived = self._take_arrival(_str(platform), _str(sender_id), message_hash, t)
        queue_wait_ms = max(0.0, (t - arrived) * 1000) if arrived is not None else None
        return (TurnStarted(turn_id=tid, session_id=sid, started_at_ms=t * 1000, task_id=_id(task_id),
                            queue_wait_ms=queue_wait_ms),)

    # -- queue wait: a gateway message's arrival, matched to the turn that answers it ------------

    def _arrival(self, item: tuple[Any, ...]) -> Iterable[Event]:
        """pre_gateway_dispatch: remember when a message reached Hermes (nothing stored yet)."""
        (t, platform, user_id, stamp, text_hash) = _PICK_ARRIVAL(item)
        platform, sender = _str(platform), _id(user_id)
        if not platform or not sender:
            return ()
        arrived = t
        if stamp is not None and hasattr(stamp, "timestamp"):
            try:
                # a naive datetime is the gateway's local time, which .timestamp() assumes too
                arrived = min(t, float(stamp.timestamp()))
            except Exception:
                arrived = t
        key = (platform, sender)
        # Every inbound message fires this hook, even ones that never start a turn (unauthorized
        # senders, group chatter): keep only recent arrivals, a few per sender, a bounded map.
        pending = [p for p in self._arrivals.get(key, ()) if t - p[0] <= ARRIVAL_TTL_S][-(ARRIVALS_PER_SENDER - 1):]
        pending.append((arrived, text_hash if isinstance(text_hash, int) else None))
        self._arrivals[key] = pending
        if len(self._arrivals) > 10_000:
            self._arrivals.pop(next(iter(self._arrivals)))
        return ()

    def _take_arrival(self, platform: str | None, sender: str | None, message_hash: Any, now: float) -> float | None:
        """The arrival of the message this turn answers: same platform and sender, and the same
        text when it can be told. If the text does not match (the gateway may add context to
        the message) it is used only when it is the one message pending — otherwise the wait is
        not captured, rather than guessed."""
        if not platform or not sender:
            return None
        key = (platform, sender)
        pending = [p for p in self._arrivals.get(key, ()) if now - p[0] <= ARRIVAL_TTL_S]
        if not pending:
            self._arrivals.pop(key, None)
            return None
        index = next((i for i, p in enumerate(pending) if message_hash is not None and p[1] == message_hash), None)
        if index is None and len(pending) == 1:
            index = 0
        if index is None:
            self._arrivals[key] = pending
            return None
        arrived = pending.pop(index)[0]
        if pending:
            self._arrivals[key] = pending
        else:
            self._arrivals.pop(key, None)
        return arrived

    def _turn_end(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, turn_id, completed, interrupted, failed, turn_exit_reason) = _PICK_TURN_END(item)
        sid, tid = _id(session_id), _id(turn_id)
        if not sid or not tid:
            return ()
        reason: str | None = None
        exit_text = _str(turn_exit_reason)  # newer Hermes says why a turn ended; 0.19.0 does not
        named = turn_outcome_for_exit_reason(exit_text) if exit_text else None
        label = self.interrupt_reasons.pop(sid, None) if interrupted is True else None
        if failed is True:
            outcome, reason = TurnOutcome.ERRORED, exit_text or "failed"
        elif label is not None:  # hermetry saw why the agent was interrupted (0.19.0's only source)
            outcome, reason = turn_outcome_for_interrupt(label), label
        elif named is not None:
            outcome, reason = named, exit_text
        elif interrupted is True:
            outcome, reason = (newer_hermes_exit_outcome(exit_text), exit_text) if exit_text else (
                TurnOutcome.INTERRUPTED, None)
        elif completed is True:
            outcome, reason = TurnOutcome.COMPLETED, exit_text
        elif completed is False:
            outcome, reason = TurnOutcome.ERRORED, exit_text or "not_completed"
        else:
            outcome, reason = TurnOutcome.UNKNOWN, exit_text
        return (TurnEnded(turn_id=tid, session_id=sid, ended_at_ms=t * 1000, outcome=outcome, outcome_reason=reason),)

    def _attempt(self, api_request_id: str, failed: bool) -> int:
        attempts = self._attempts
        n = attempts.get(api_request_id, 0)
        if failed:
            attempts[api_request_id] = n + 1
            attempts.move_to_end(api_request_id)
            if len(attempts) > 10_000:
                attempts.popitem(last=False)
        else:
            attempts.pop(api_request_id, None)
        return n

    def _api_call(self, *, t: float, probe: Any, session_id: Any, turn_id: Any, api_request_id: Any,
                  model: Any, provider: Any, base_url: Any, api_mode: Any, status: str,
                  started_at: Any = None, ended_at: Any = None, api_duration: Any = None,
                  **fields: Any) -> ApiCall | None:
        """One attempt of a model call, from whichever hook (or the middleware) saw it end."""
        rid, sid = _id(api_request_id), _id(session_id)
        if not rid or not sid:
            return None
        attempt = self._attempt(rid, failed=status != "ok")
        started_ms, latency_ms = _attempt_timing(probe, attempt, started_at, ended_at, api_duration, t)
        fields.setdefault("ttft_ms", _probe_ttft(probe))
        return ApiCall(
            api_request_id=rid, attempt=attempt, session_id=sid, turn_id=_id(turn_id),
            started_at_ms=started_ms, latency_ms=latency_ms, status=status, model=_str(model),
            provider=_str(provider), base_url=_redact_url(_str(base_url)), api_mode=_str(api_mode),
            streamed=_get(probe, "streamed"), provider_cost_usd=_float(_get(probe, "cost")), **fields,
        )

    def _api_ok(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, probe, session_id, turn_id, api_request_id, model, provider, base_url, api_mode, api_duration, started_at, finish_reason, response_model, usage, first_delta_at, ended_at, first_chunk_at) = _PICK_API_OK(item)
        if _get(probe, "synthetic"):
            return ()  # answered by hermetry itself (/telemetry), not by a model
        start = _float(_get(probe, "start")) or _float(started_at)
        call = self._api_call(
            t=t, probe=probe, session_id=session_id, turn_id=turn_id, api_request_id=api_request_id,
            model=model, provider=provider, base_url=base_url, api_mode=api_mode, status="ok",
            started_at=started_at, ended_at=ended_at, api_duration=api_duration,
            ttft_ms=_probe_ttft(probe) or (_hook_ttft(start, first_chunk_at if first_chunk_at is not None
                                                      else first_delta_at) if start is not None else None),
            response_model=_str(response_model), finish_reason=_str(finish_reason),
            input_tokens=_int(_get(usage, "input_tokens")), output_tokens=_int(_get(usage, "output_tokens")),
            cache_read_tokens=_int(_get(usage, "cache_read_tokens")),
            cache_write_tokens=_int(_get(usage, "cache_write_tokens")),
            reasoning_tokens=_int(_get(usage, "reasoning_tokens")),
        )
        return (call,) if call else ()

    def _api_error(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, probe, session_id, turn_id, api_request_id, model, provider, base_url, api_mode, api_duration, started_at, status_code, retry_count, reason, error, ended_at) = _PICK_API_ERROR(item)
        # (a failed attempt may still have been billed: the probe's provider cost is kept)
        call = self._api_call(
            t=t, probe=probe, session_id=session_id, turn_id=turn_id, api_request_id=api_request_id,
            model=model, provider=provider, base_url=base_url, api_mode=api_mode, status="error",
            started_at=started_at, ended_at=ended_at, api_duration=api_duration,
            http_status=_int(status_code), retry_count=_int(retry_count),
            error_type=_str(_get(error, "type")) or _str(reason), error_message=clean_error(_get(error, "message")),
        )
        return (call,) if call else ()

    def on_interrupt(self, session_id: Any, message: Any) -> None:
        """Called by the AIAgent.interrupt wrapper: queue the reason's label, never the message."""
        self.recorder.submit((self._interrupt_noted, time.time(), session_id, interrupt_label(message)))

    def _interrupt_noted(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (session_id, label) = _PICK_INTERRUPT(item)
        sid = _id(session_id)
        if sid:
            self.interrupt_reasons[sid] = label
            if len(self.interrupt_reasons) > 10_000:
                self.interrupt_reasons.pop(next(iter(self.interrupt_reasons)))
        return ()

    def on_api_aborted(self, context: dict[str, Any], probe: dict[str, Any] | None, ended_at: float) -> None:
        """stream_probe.ON_ABORT: an interrupted model call (no Hermes hook fires for it)."""
        get = context.get
        self.recorder.submit((self._api_aborted, ended_at, probe, get("session_id"), get("turn_id"),
                              get("api_request_id"), get("model"), get("provider"), get("base_url"),
                              get("api_mode")))

    def _api_aborted(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, probe, session_id, turn_id, api_request_id, model, provider, base_url, api_mode) = _PICK_API_ABORTED(item)
        call = self._api_call(
            t=t, probe=probe, session_id=session_id, turn_id=turn_id, api_request_id=api_request_id,
            model=model, provider=provider, base_url=base_url, api_mode=api_mode, status="interrupted",
            ended_at=t, error_type="interrupted",
        )
        return (call,) if call else ()

    def _tool(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, turn_id, tool_call_id, api_request_id, tool_name, duration_ms, status, error_type, error_message, exit_code) = _PICK_TOOL(item)
        sid, name = _id(session_id), _str(tool_name)
        if not sid or not name:
            return ()
        latency = _float(duration_ms)
        raw_status = (_str(status) or "").lower()
        status_norm = TOOL_OK if raw_status in ("ok", "success", "succeeded", "completed") else (raw_status or TOOL_UNKNOWN)
        kind, message = _str(error_type), clean_error(error_message)
        if status_norm == TOOL_OK and isinstance(exit_code, int) and exit_code != 0:
            # Hermes says ok for a terminal command that exited non-zero (unless it knows the
            # code is benign, e.g. grep's 1): hermetry derives the failure, and says so
            status_norm, kind, message = TOOL_ERROR, NONZERO_EXIT, f"exit code {exit_code}"
        return (self._tool_call(t, sid, turn_id, tool_call_id, api_request_id, name, latency, status_norm, kind,
                                message),)

    def _tool_call(self, t: float, sid: str, turn_id: Any, tool_call_id: Any, api_request_id: Any, name: str,
                   latency: float | None, status: str, error_type: str | None, error_message: str | None) -> ToolCall:
        # a provider's tool_call_id is only unique within its response (some adapters derive it
        # from the tool's name and arguments), so the row id is scoped to the model call
        scope = _id(api_request_id) or _id(turn_id) or sid
        raw_id = _id(tool_call_id)
        tcid = f"{sid}:{scope}:{raw_id}" if raw_id else f"{sid}:{scope}:{name}:{t:.6f}"
        return ToolCall(
            tool_call_id=tcid, session_id=sid, turn_id=_id(turn_id), tool_name=name,
            toolset=_toolset_for(name) if status != TOOL_UNKNOWN_TOOL else None,
            started_at_ms=t * 1000 - (latency or 0.0), latency_ms=latency, status=status,
            api_request_id=_id(api_request_id), error_type=error_type, error_message=error_message,
        )

    def on_unknown_tool(self, name: Any) -> None:
        """A model asked for a tool that does not exist: Hermes answers it an error, runs nothing and
        fires no tool hook (0.19.0). Called on the agent's thread, right after its model call."""
        context = stream_probe.last_call_context()
        self.recorder.submit((self._unknown_tool, time.time(), context, name if isinstance(name, str) else None))

    def _unknown_tool(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, context, name) = _PICK_UNKNOWN_TOOL(item)
        get = context.get if isinstance(context, dict) else (lambda _k: None)
        sid = _id(get("session_id"))
        if not sid:
            return ()
        # the name the model made up is not Hermes' vocabulary: kept only as a bounded label
        label = (name or "").strip()[:80] or "(blank)"
        return (self._tool_call(t, sid, get("turn_id"), None, get("api_request_id"), label, 0.0,
                                TOOL_UNKNOWN_TOOL, "unknown_tool", None),)

    # -- auxiliary model calls (compression, titles, vision, web_extract, session_search) -------

    #: Set when Hermes offers ``post_auxiliary_call`` (newer Hermes): the hooks then report every
    #: auxiliary attempt, and the record_auxiliary_usage observation stands down (no double count).
    aux_hooks = False

    def on_aux_usage(self, session_id: Any, task: Any, fields: dict[str, Any]) -> None:
        """state_mirror: Hermes recorded an auxiliary call's usage (hook thread: queue, return)."""
        if self.aux_hooks:
            return
        context = stream_probe.last_call_context()
        self.recorder.submit((self._aux_usage, time.time(), session_id, task, fields, stream_probe.take_aux_timing(),
                              context))

    def _aux_usage(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, task, fields, timing, context) = _PICK_AUX_USAGE(item)
        get = fields.get
        call = self._aux_call(
            t, session_id, _str(task) or "auxiliary", timing, context, status="ok",
            model=_str(get("model")) or _str(_get(timing, "model")), provider=_str(get("billing_provider")),
            base_url=_str(get("billing_base_url")),
            input_tokens=_int(get("input_tokens")), output_tokens=_int(get("output_tokens")),
            cache_read_tokens=_int(get("cache_read_tokens")), cache_write_tokens=_int(get("cache_write_tokens")),
            reasoning_tokens=_int(get("reasoning_tokens")),
        )
        return (call,) if call else ()

    def on_aux_error(self, timing: dict[str, Any], exc: BaseException) -> None:
        """stream_probe: an auxiliary SDK call raised (Hermes records nothing for it)."""
        if self.aux_hooks:
            return
        session_id = None
        try:
            accounting = sys.modules.get("agent.aux_accounting")
            ctx = accounting.get_accounting_context() if accounting is not None else None
            session_id = ctx[1] if ctx else None
        except Exception:
            session_id = None
        if session_id is None:
            return  # outside any session: nothing to attribute it to
        status = getattr(exc, "status_code", None)
        self.recorder.submit((self._aux_error, time.time(), session_id, timing, type(exc).__name__,
                              status if isinstance(status, int) else None, str(exc)[:500],
                              stream_probe.last_call_context()))

    def _aux_error(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, timing, error_type, http_status, message, context) = _PICK_AUX_ERROR(item)
        call = self._aux_call(t, session_id, "auxiliary", timing, context, status="error",
                              model=_str(_get(timing, "model")), error_type=_str(error_type),
                              http_status=_int(http_status), error_message=clean_error(message))
        return (call,) if call else ()

    def _aux_post_hook(self, item: tuple[Any, ...]) -> Iterable[Event]:
        """Newer Hermes' ``post_auxiliary_call`` (one per physical attempt)."""
        (t, session_id, turn_id, task, aux_task, model, provider, base_url, usage, api_duration, started_at, ended_at, status, error, first_chunk_at) = _PICK_AUX_POST(item)
        start, end, duration = _float(started_at), _float(ended_at), _float(api_duration)
        if start is None and end is not None and duration is not None:
            start = end - duration
        timing = {"start": start, "end": end if end is not None else (start + duration if start is not None
                                                                        and duration is not None else None)}
        failed = error is not None or (_str(status) or "ok").lower() not in ("ok", "success", "succeeded")
        call = self._aux_call(
            t, session_id, _str(aux_task) or _str(task) or "auxiliary", timing, {"turn_id": turn_id,
                                                                                 "session_id": session_id},
            status="error" if failed else "ok", model=_str(model), provider=_str(provider), base_url=_str(base_url),
            input_tokens=_int(_get(usage, "input_tokens")), output_tokens=_int(_get(usage, "output_tokens")),
            cache_read_tokens=_int(_get(usage, "cache_read_tokens")),
            cache_write_tokens=_int(_get(usage, "cache_write_tokens")),
            reasoning_tokens=_int(_get(usage, "reasoning_tokens")),
            ttft_ms=_hook_ttft(start, first_chunk_at),
            error_type=(_str(_get(error, "type")) or _str(error)) if failed else None,
            error_message=clean_error(_get(error, "message")) if failed else None,
        )
        return (call,) if call else ()

    def _aux_call(self, t: float, session_id: Any, task: str, timing: Any, context: Any, *, status: str,
                  **fields: Any) -> ApiCall | None:
        sid = _id(session_id)
        if not sid:
            return None
        start, end = _float(_get(timing, "start")), _float(_get(timing, "end"))
        turn_id = _id(_get(context, "turn_id")) if _id(_get(context, "session_id")) == sid else None
        self._aux_seq += 1
        return ApiCall(
            api_request_id=f"aux:{sid}:{task}:{t:.6f}:{self._aux_seq}", attempt=0, session_id=sid, turn_id=turn_id,
            started_at_ms=(start if start is not None else t) * 1000,
            latency_ms=(end - start) * 1000 if start is not None and end is not None and end >= start else None,
            status=status, task=task, streamed=_get(timing, "streamed"), **fields,
        )

    _aux_seq = 0

    # -- Hermes' own session records (see state_mirror.py) -------------------------------------

    def state_callbacks(self) -> tuple[Callable[..., None], Callable[..., None], Callable[..., None]]:
        """(on_create, on_end, on_reopen) for :func:`state_mirror.install` (see :mod:`callbacks`)."""
        return state_callbacks(self)

    def _mirror_create(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, source, model, parent_session_id, profile) = _PICK_MIRROR_CREATE(item)
        return self._session_started(t, session_id, source, model, profile, parent_session_id)

    def _mirror_end(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, end_reason, supersedes) = _PICK_MIRROR_END(item)
        sid = _id(session_id)
        if not sid:
            return ()
        raw = _str(end_reason)
        return (
            SessionEnded(
                session_id=sid, ended_at_ms=t * 1000, end_reason=raw,
                outcome=session_outcome_for_end_reason(raw),
                supersedes=tuple(r for r in (supersedes if isinstance(supersedes, tuple | list) else ())
                                 if isinstance(r, str)),
            ),
        )

    def on_cron_status(self, job_id: Any, success: Any) -> None:
        """state_mirror: Hermes' cron scheduler recorded a job run's status."""
        self.recorder.submit((self._cron_status, time.time(), job_id, success))
        self.recorder.nudge()

    def _cron_status(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, job_id, success) = _PICK_CRON_STATUS(item)
        job = _id(job_id)
        if not job or not isinstance(success, bool):
            return ()
        return (CronRunFinished(job_id=job, finished_at_ms=t * 1000,
                                status=RUN_STATUS_OK if success else RUN_STATUS_ERROR),)

    def _session_finalize(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id, reason) = _PICK_SESSION_FINALIZE(item)
        sid = _id(session_id)
        if not sid:
            return ()
        raw = f"{FINALIZE_PREFIX}{_str(reason) or 'unknown'}"
        return (SessionEnded(session_id=sid, ended_at_ms=t * 1000, end_reason=raw,
                             outcome=session_outcome_for_end_reason(raw)),)

    def _mirror_reopen(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, session_id) = _PICK_MIRROR_REOPEN(item)
        sid = _id(session_id)
        return (SessionReopened(session_id=sid, reopened_at_ms=t * 1000),) if sid else ()

    def _subagent_start(self, item: tuple[Any, ...]) -> Iterable[Event]:
        (t, parent_session_id, parent_turn_id, child_session_id, child_role) = _PICK_SUBAGENT_START(item)
        child, parent = _id(child_session_id), _id(parent_session_id)
        if not child or not parent:
            return ()
        return (SubagentLinked(child_session_id=child, parent_session_id=parent, parent_turn_id=_id(parent_turn_id),
                               linked_at_ms=t * 1000, child_role=_str(child_role)),)



#: ``error_type`` of a terminal call hermetry marks failed from its exit code.
NONZERO_EXIT = "nonzero_exit"



#: Each normalizer reads its queued tuple by field name (resolved here, once, against its record):
#: one C-level call, no copy, and a reordered record cannot shift a field.
_PICK_API_OK = picker(ApiOkRecord, "t", "probe", "session_id", "turn_id", "api_request_id", "model",
    "provider", "base_url", "api_mode", "api_duration", "started_at", "finish_reason", "response_model",
    "usage", "first_delta_at", "ended_at", "first_chunk_at")
_PICK_API_ERROR = picker(ApiErrorRecord, "t", "probe", "session_id", "turn_id", "api_request_id", "model",
    "provider", "base_url", "api_mode", "api_duration", "started_at", "status_code", "retry_count", "reason",
    "error", "ended_at")
_PICK_API_ABORTED = picker(ApiAbortedRecord, "t", "probe", "session_id", "turn_id", "api_request_id",
    "model", "provider", "base_url", "api_mode")
_PICK_SESSION_START = picker(SessionStartRecord, "t", "session_id", "model", "platform")
_PICK_TURN_START = picker(TurnStartRecord, "t", "session_id", "task_id", "turn_id", "platform", "sender_id",
    "message_hash")
_PICK_ARRIVAL = picker(ArrivalRecord, "t", "platform", "user_id", "stamp", "text_hash")
_PICK_TURN_END = picker(TurnEndRecord, "t", "session_id", "turn_id", "completed", "interrupted", "failed",
    "turn_exit_reason")
_PICK_INTERRUPT = picker(InterruptRecord, "session_id", "label")
_PICK_TOOL = picker(ToolRecord, "t", "session_id", "turn_id", "tool_call_id", "api_request_id", "tool_name",
    "duration_ms", "status", "error_type", "error_message", "exit_code")
_PICK_UNKNOWN_TOOL = picker(UnknownToolRecord, "t", "context", "name")
_PICK_AUX_USAGE = picker(AuxUsageRecord, "t", "session_id", "task", "fields", "timing", "context")
_PICK_AUX_ERROR = picker(AuxErrorRecord, "t", "session_id", "timing", "error_type", "http_status", "message",
    "context")
_PICK_AUX_POST = picker(AuxPostRecord, "t", "session_id", "turn_id", "task", "aux_task", "model", "provider",
    "base_url", "usage", "api_duration", "started_at", "ended_at", "status", "error", "first_chunk_at")
_PICK_MIRROR_CREATE = picker(MirrorCreateRecord, "t", "session_id", "source", "model", "parent_session_id",
    "profile")
_PICK_MIRROR_END = picker(MirrorEndRecord, "t", "session_id", "end_reason", "supersedes")
_PICK_CRON_STATUS = picker(CronStatusRecord, "t", "job_id", "success")
_PICK_SESSION_FINALIZE = picker(SessionFinalizeRecord, "t", "session_id", "reason")
_PICK_MIRROR_REOPEN = picker(MirrorReopenRecord, "t", "session_id")
_PICK_SUBAGENT_START = picker(SubagentStartRecord, "t", "parent_session_id", "parent_turn_id",
    "child_session_id", "child_role")

def _exit_code(result: Any) -> int | None:
    """A terminal result's non-zero ``exit_code`` that Hermes gave no benign meaning (hook thread:
    two substring searches, no JSON parse). The output comes first in the JSON and is escaped, so
    the first unescaped ``"exit_code": `` is the field itself."""
    if not isinstance(result, str):
        return None
    i = result.find('"exit_code": ')
    if i < 0 or '"exit_code_meaning"' in result:
        return None
    j = i + 13
    k = j + 1 if result[j:j + 1] == "-" else j
    while k < len(result) and k - j < 6 and result[k].isdigit():
        k += 1
    try:
        code = int(result[j:k])
    except ValueError:
        return None
    return code or None


#: A gateway message that waited longer than this (Hermes' default agent timeout) is not matched.
ARRIVAL_TTL_S = 1800.0
#: At most this many arrivals are remembered per sender.
ARRIVALS_PER_SENDER = 8

_API_OK_KEYS = (
    "session_id", "turn_id", "api_request_id", "model", "provider", "base_url", "api_mode",
    "api_duration", "started_at", "finish_reason", "response_model", "usage", "first_delta_at", "ended_at",
    "first_chunk_at",
)
_API_ERROR_KEYS = (
    "session_id", "turn_id", "api_request_id", "model", "provider", "base_url", "api_mode",
    "api_duration", "started_at", "status_code", "retry_count", "reason", "error", "ended_at",
)
_AUX_POST_KEYS = (
    "session_id", "turn_id", "task", "aux_task", "model", "provider", "base_url", "usage", "api_duration",
    "started_at", "ended_at", "status", "error", "first_chunk_at",
)
_TOOL_KEYS = (
    "session_id", "turn_id", "tool_call_id", "api_request_id", "tool_name", "duration_ms", "status",
    "error_type", "error_message",
)

def _attempt_timing(probe: Any, attempt: int, started_at: Any, ended_at: Any, api_duration: Any,
                    t: float) -> tuple[float, float | None]:
    """(started_at_ms, latency_ms) of ONE attempt.

    Hermes 0.19.0 starts its API clock once per request, before its retry loop
    (agent/conversation_loop.py), so for a retry its ``started_at``/``api_duration`` span every
    earlier attempt and back-off too. The stream probe's start is per attempt: use it when we
    have it; a retry without it has no honest latency (None), the first attempt uses Hermes'.
    """
    start = _get(probe, "start")
    end = _float(ended_at)
    if isinstance(start, float):
        stop = end if end is not None and end >= start else t
        return start * 1000, (stop - start) * 1000
    hermes_start = _float(started_at)
    started_ms = (hermes_start if hermes_start is not None else t) * 1000
    return started_ms, (_ms(api_duration) if attempt == 0 else None)


def _hook_ttft(started_at: Any, first_delta_at: Any) -> float | None:
    """Newer Hermes passes ``first_chunk_at`` (the merged upstream name; some builds say
    ``first_delta_at``) on its API hooks: use it where it exists."""
    start, first = _float(started_at), _float(first_delta_at)
    if start is None or first is None or first < start:
        return None
    return (first - start) * 1000.0


def _probe_ttft(probe: Any) -> float | None:
    if not isinstance(probe, dict):
        return None
    start, first = probe.get("start"), probe.get("first")
    if isinstance(start, float) and isinstance(first, float) and first >= start:
        return (first - start) * 1000.0
    return None


#: URLs that carry nothing to redact, and their normalized form (a model call's base URL is one
#: of a few endpoints: parsing it once per call was a third of the normalizer's time). A URL
#: with credentials, a query or a fragment is never kept here. Bounded: cleared when full.
_CLEAN_URLS: dict[str, str | None] = {}


def _redact_url(url: str | None) -> str | None:
    """Keep the endpoint, never credentials or query strings embedded in it."""
    if not url:
        return url
    done = _CLEAN_URLS.get(url)
    if done is not None:
        return done
    redacted = _redact_url_uncached(url)
    if redacted is not None and "@" not in url and "?" not in url and "#" not in url:
        if len(_CLEAN_URLS) >= 256:
            _CLEAN_URLS.clear()
        _CLEAN_URLS[url] = redacted
    return redacted


def _redact_url_uncached(url: str) -> str | None:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return None


_TOOLSET_CACHE: dict[str, str | None] = {}


def _toolset_for(tool_name: str) -> str | None:
    """The Hermes toolset a tool belongs to, from Hermes' own registry (None if unknown)."""
    if tool_name in _TOOLSET_CACHE:
        return _TOOLSET_CACHE[tool_name]
    toolset = None
    try:
        from tools.registry import registry  # Hermes' tool registry

        entry = registry.get_entry(tool_name) if hasattr(registry, "get_entry") else None
        toolset = getattr(entry, "toolset", None) if entry is not None else None
    except Exception:
        toolset = None
    _TOOLSET_CACHE[tool_name] = toolset
    return toolset


def _hermes_version() -> str | None:
    """The running Hermes' version, from its own module (a package-metadata scan costs ~30 ms)."""
    try:
        import hermes_cli

        version = getattr(hermes_cli, "__version__", None)
        if isinstance(version, str) and version:
            return f"hermes-agent {version}"
        from importlib.metadata import version as dist_version

        return f"hermes-agent {dist_version('hermes-agent')}"
    except Exception:
        return None


def profile_name() -> str | None:
    """The active Hermes profile (``$HERMES_HOME`` under ``profiles/NAME`` is profile NAME)."""
    return profile_for_home(os.environ.get("HERMES_HOME"))
