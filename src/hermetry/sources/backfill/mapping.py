"""Rows of Hermes' ``state.db`` → canonical events (``origin="backfill"``).

Pure functions: no I/O. docs/backfill.md is the mapping table in prose; keep the two in step.

What ``state.db`` does not hold is left ``None`` ("not captured"): API latency, time to first
token, tool latency and status, retries, per-call token counts. What the import *derives*
rather than reads carries a marker:

* turn ids are ``backfill:<session_id>:t<n>`` and every derived turn's ``outcome_reason``
  starts with ``derived`` (``derived``, ``derived:no_final_answer``, ``derived:no_reply``);
* token totals become synthetic API-call rows whose ``api_request_id`` starts with
  ``backfill:`` — one per session × model route (from ``session_model_usage``) or one per
  session — each standing for many real calls, with ``latency_ms`` and ``ttft_ms`` ``None``;
* tool calls are ``backfill:<session_id>:<message id>:<n>`` with status ``unknown``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hermetry.model.coerce import as_float, as_int, as_str
from hermetry.model.events import (
    TASK_MAIN,
    ApiCall,
    Event,
    SessionEnded,
    SessionStarted,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.model.kinds import KNOWN_COST_STATUSES, TOKEN_KINDS
from hermetry.model.outcomes import TurnOutcome, session_outcome_for_end_reason
from hermetry.model.privacy import redact
from hermetry.model.sessions import lineage_for, session_type_for
from hermetry.sources.backfill.state_db import MessageRow

#: Prefix of every id the import makes up (turns, API-call rows, tool calls).
ID_PREFIX = "backfill:"

#: ``outcome_reason`` of derived turns: completed (a final answer exists) …
REASON_DERIVED = "derived"
#: … unknown: the last assistant message before the next request was not a final answer …
REASON_NO_FINAL_ANSWER = "derived:no_final_answer"
#: … unknown: no assistant message at all answered the request.
REASON_NO_REPLY = "derived:no_reply"

#: Tool-call status when state.db cannot say whether the tool succeeded.
TOOL_STATUS_UNKNOWN = "unknown"



# ---------------------------------------------------------------------------------------------
# Small forgiving converters: state.db columns may hold NULL, or the wrong type after drift.
# ---------------------------------------------------------------------------------------------

def _s(v: Any) -> str | None:
    return as_str(v, strip=True)


def _raw(v: Any) -> str | None:
    """A string kept verbatim (end reasons); only empty means absent."""
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    return s if s.strip() else None


_i = as_int
_f = as_float


#: Past year 9999 a timestamp is garbage (and would not fit SQLite's 64-bit integers as ms).
_MAX_MS = 253_402_300_800_000


def _ms(seconds: float | None) -> int | None:
    if seconds is None or not math.isfinite(seconds) or abs(seconds * 1000.0) > _MAX_MS:
        return None
    return int(round(seconds * 1000.0))


# ---------------------------------------------------------------------------------------------
# Cost
# ---------------------------------------------------------------------------------------------

@dataclass(slots=True, frozen=True)
class Cost:
    provider_cost_usd: float | None
    cost_usd: float | None
    cost_status: str | None
    cost_source: str | None
    pricing_version: str | None


def cost_fields(estimated: Any, actual: Any, status: Any, source: Any, pricing_version: Any) -> Cost:
    """Hermes' cost columns → canonical cost fields.

    * a provider-reported ``actual_cost_usd`` (> 0, or 0 with ``cost_status = 'actual'``) is the
      cost, and also ``provider_cost_usd``;
    * otherwise ``estimated_cost_usd`` is the cost — except Hermes' ``0.0`` written together
      with ``cost_status`` ``unknown`` or NULL, which means "could not price", never "free";
    * otherwise the cost is ``None`` with status ``unknown``.
    """
    est, act = _f(estimated), _f(actual)
    st = (_s(status) or "").lower() or None
    src, pv = _s(source), _s(pricing_version)
    if act is not None and (act > 0 or (act == 0 and st == "actual")):
        return Cost(act, act, "actual", src, pv)
    if est is not None and not (est == 0 and st in (None, "unknown")):
        return Cost(None, est, st if st in KNOWN_COST_STATUSES else "estimated", src, pv)
    return Cost(None, None, "unknown", src, pv)


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------

def usage_row_cost(u: dict[str, Any], model: str | None, provider: str | None, base_url: str | None,
                   tokens: dict[str, int | None], at_ms: int | None, pricing_version: Any) -> Cost:
    """Cost of one ``session_model_usage`` row.

    A row that carries no provenance at all (no ``cost_status``, no ``cost_source``) is
    re-estimated, as Hermes' own ``insights`` does for such rows: here from genai-prices at the
    row's first-seen time, through the one pricing function; everything else keeps Hermes' figure.
    """
    if _s(u.get("cost_status")) or _s(u.get("cost_source")):
        return cost_fields(u.get("estimated_cost_usd"), u.get("actual_cost_usd"), u.get("cost_status"),
                           u.get("cost_source"), pricing_version)
    act = _f(u.get("actual_cost_usd"))
    if act is not None and act > 0:
        return cost_fields(None, act, "actual", None, pricing_version)
    from hermetry.cost import price_api_call

    priced = price_api_call(
        provider=provider, model=model, base_url=base_url,
        tokens=(tokens.get("input_tokens"), tokens.get("output_tokens"), tokens.get("cache_read_tokens"),
                tokens.get("cache_write_tokens"), tokens.get("reasoning_tokens")),
        started_at_ms=at_ms,
    )
    return Cost(None, *priced)


def session_started_ms(row: dict[str, Any], messages: list[MessageRow] | None) -> int | None:
    started = _ms(_f(row.get("started_at")))
    if started is not None:
        return started
    first = min((m.timestamp for m in messages or () if m.timestamp is not None), default=None)
    if first is not None:
        return _ms(first)
    return _ms(_f(row.get("ended_at")))


def session_events(row: dict[str, Any], started_ms: int, profile: str | None) -> tuple[SessionStarted, SessionEnded | None]:
    sid = str(row["id"])
    source = _s(row.get("source"))
    parent = _s(row.get("parent_session_id"))
    start = SessionStarted(
        session_id=sid,
        started_at_ms=started_ms,
        source=source,
        session_type=session_type_for(source, []) if source is not None else None,
        model=_s(row.get("model")),
        provider=_s(row.get("billing_provider")),
        profile=_s(row.get("profile_name")) or profile,
        parent_session_id=parent,
        lineage=lineage_for(source, parent),
        origin="backfill",
    )
    end: SessionEnded | None = None
    ended = _ms(_f(row.get("ended_at")))
    if ended is not None:
        reason = _raw(row.get("end_reason"))
        end = SessionEnded(
            session_id=sid,
            ended_at_ms=max(ended, started_ms),
            end_reason=reason,
            outcome=session_outcome_for_end_reason(reason).value,
            origin="backfill",
        )
    return start, end


# ---------------------------------------------------------------------------------------------
# Turns and tool calls, derived from messages
# ---------------------------------------------------------------------------------------------

def tool_names(tool_calls_json: str | None) -> list[tuple[str | None, str]] | None:
    """(call id, tool name) of each call in an assistant message's stored ``tool_calls``.

    Hermes stores either OpenAI's shape (``{"id", "function": {"name", "arguments"}}``) or
    ``{"name", "arguments"}``. Arguments are never kept. ``None`` when there is nothing usable.
    """
    if not tool_calls_json:
        return None
    try:
        data = json.loads(tool_calls_json)
    except (TypeError, ValueError):
        return None
    items = data if isinstance(data, list) else [data]
    out: list[tuple[str | None, str]] = []
    for tc in items:
        if not isinstance(tc, dict):
            continue
        fn = tc.get("function")
        name = _s(fn.get("name")) if isinstance(fn, dict) else None
        name = name or _s(tc.get("name")) or _s(tc.get("tool_name")) or "unknown"
        out.append((_s(tc.get("id")) or _s(tc.get("call_id")), name))
    return out or None


@dataclass(slots=True)
class _Turn:
    n: int
    start_ms: int
    last_ms: int
    assistant_ms: int | None = None
    final: bool = False


@dataclass(slots=True)
class Derived:
    events: list[Event] = field(default_factory=list)
    turns: int = 0
    tool_calls: int = 0


def derive_turns_and_tools(session_id: str, messages: list[MessageRow], fallback_ms: int) -> Derived:
    """Turns from user messages, tool calls from assistant ``tool_calls`` (or ``tool`` rows).

    A turn starts at each user message (context rows — compaction summaries, copies of
    earlier rows, observed group-chat messages — start none) and ends at the last assistant
    message before the next user message. It is completed when that assistant message has
    content and calls no tool (a final answer), otherwise unknown. Times are the messages'
    stored timestamps (clamped so a turn never ends before it starts).
    """
    out = Derived()
    turn: _Turn | None = None
    tools: list[ToolCall] = []
    fallback_tools: list[ToolCall] = []
    parsed_any = False
    prev_ms = fallback_ms
    prefix = f"{ID_PREFIX}{session_id}:"

    def close(t: _Turn) -> None:
        tid = f"{prefix}t{t.n}"
        if t.assistant_ms is None:
            end, outcome, reason = t.last_ms, TurnOutcome.UNKNOWN, REASON_NO_REPLY
        elif t.final:
            end, outcome, reason = t.assistant_ms, TurnOutcome.COMPLETED, REASON_DERIVED
        else:
            end, outcome, reason = t.assistant_ms, TurnOutcome.UNKNOWN, REASON_NO_FINAL_ANSWER
        out.events.append(TurnStarted(turn_id=tid, session_id=session_id, started_at_ms=t.start_ms, origin="backfill"))
        out.events.append(TurnEnded(turn_id=tid, session_id=session_id, ended_at_ms=max(end, t.start_ms),
                                    outcome=outcome.value, outcome_reason=reason, origin="backfill"))
        out.turns += 1

    n = 0
    for m in messages:
        ts = _ms(m.timestamp)
        if ts is None:
            ts = prev_ms
        prev_ms = ts
        if m.compaction_copy or m.observed:
            continue
        role = (m.role or "").lower()
        if role == "user":
            if m.is_summary:
                continue
            if turn is not None:
                close(turn)
            n += 1
            turn = _Turn(n=n, start_ms=ts, last_ms=ts)
            continue
        if m.is_summary:
            continue
        if turn is not None:
            turn.last_ms = max(turn.last_ms, ts)
        tid = f"{prefix}t{turn.n}" if turn is not None else None
        if role == "assistant":
            calls = tool_names(m.tool_calls)
            if turn is not None:
                turn.assistant_ms = ts
                turn.final = m.has_content and not calls
            if calls:
                parsed_any = True
                for k, (_call_id, name) in enumerate(calls):
                    tools.append(ToolCall(
                        tool_call_id=f"{prefix}{m.id}:{k}", session_id=session_id, turn_id=tid,
                        tool_name=name, started_at_ms=ts, latency_ms=None, status=TOOL_STATUS_UNKNOWN,
                        origin="backfill",
                    ))
        elif role == "tool":
            fallback_tools.append(ToolCall(
                tool_call_id=f"{prefix}{m.id}:0", session_id=session_id, turn_id=tid,
                tool_name=_s(m.tool_name) or "unknown", started_at_ms=ts, latency_ms=None,
                status=TOOL_STATUS_UNKNOWN, origin="backfill",
            ))
    if turn is not None:
        close(turn)
    chosen = tools if parsed_any else fallback_tools
    out.events.extend(chosen)
    out.tool_calls = len(chosen)
    return out


# ---------------------------------------------------------------------------------------------
# Token totals → synthetic API-call rows
# ---------------------------------------------------------------------------------------------

def _tokens(row: dict[str, Any]) -> dict[str, int | None]:
    return {k: _i(row.get(k)) for k in TOKEN_KINDS}


def _api_call(
    request_id: str, session_id: str, started_ms: int, model: str | None, provider: str | None,
    base_url: str | None, tokens: dict[str, int | None], cost: Cost, task: str | None = TASK_MAIN,
    calls: int | None = None,
) -> ApiCall:
    return ApiCall(
        api_request_id=request_id, attempt=0, session_id=session_id, turn_id=None,
        started_at_ms=started_ms, latency_ms=None, status="ok", model=model, provider=provider,
        base_url=redact(base_url) if base_url else None, ttft_ms=None,
        input_tokens=tokens["input_tokens"], output_tokens=tokens["output_tokens"],
        cache_read_tokens=tokens["cache_read_tokens"], cache_write_tokens=tokens["cache_write_tokens"],
        reasoning_tokens=tokens["reasoning_tokens"], provider_cost_usd=cost.provider_cost_usd,
        cost_usd=cost.cost_usd, cost_status=cost.cost_status, cost_source=cost.cost_source,
        pricing_version=cost.pricing_version, origin="backfill", task=task,
        call_count=calls if calls is not None and calls > 0 else None,  # unknown: counted as one
    )


def _any_usage(tokens: dict[str, int | None], calls: int | None, est: float | None, act: float | None) -> bool:
    return any(v for v in tokens.values()) or bool(calls) or bool(est) or bool(act)


def _route(model: str | None, provider: str | None) -> str:
    return (model or "unknown") + (f"@{provider}" if provider else "")


def _nonneg(v: float) -> float:
    """A difference of two float sums: rounding noise is zero, never a negative cost."""
    return 0.0 if v < 1e-9 else v


class _Ids:
    """Readable, unique request ids within one session."""

    def __init__(self, session_id: str) -> None:
        self.base = f"{ID_PREFIX}{session_id}:"
        self.seen: set[str] = set()

    def make(self, name: str) -> str:
        rid = self.base + name
        out, k = rid, 1
        while out in self.seen:
            k += 1
            out = f"{rid}~{k}"
        self.seen.add(out)
        return out


def api_calls_for_session(
    row: dict[str, Any], usage_rows: list[dict[str, Any]], started_ms: int, *, include_auxiliary: bool = True
) -> list[ApiCall]:
    """Synthetic API-call rows whose token sums equal state.db's exactly.

    ``sessions`` holds the main agent loop's totals. When ``session_model_usage`` splits them
    by model route (task ``''``) and the split does not exceed them, there is one row per
    route plus one ``…:rest`` row for any part not attributed (the gateway writes absolute
    totals that are not split). Otherwise one row carries the session's totals. Auxiliary
    calls (compression, titles, vision; task ≠ ``''``), which Hermes keeps out of the session
    totals, get one row per task × route when ``include_auxiliary``.
    """
    sid = str(row["id"])
    ids = _Ids(sid)
    model, provider = _s(row.get("model")), _s(row.get("billing_provider"))
    base_url = _s(row.get("billing_base_url"))
    totals = _tokens(row)
    calls = _i(row.get("api_call_count"))
    est, act = _f(row.get("estimated_cost_usd")), _f(row.get("actual_cost_usd"))
    status, source, pv = row.get("cost_status"), row.get("cost_source"), row.get("pricing_version")

    main = [u for u in usage_rows if not _s(u.get("task"))]
    aux = [u for u in usage_rows if _s(u.get("task"))]
    out: list[ApiCall] = []

    split_ok = bool(main)
    if split_ok:
        sums = {k: sum(_i(u.get(k)) or 0 for u in main) for k in TOKEN_KINDS}
        split_ok = all(totals[k] is None or sums[k] <= (totals[k] or 0) for k in TOKEN_KINDS)
    if split_ok:
        for u in main:
            utokens = _tokens(u)
            u_model = _s(u.get("model"))
            u_provider = _s(u.get("billing_provider")) or provider
            first = _ms(_f(u.get("first_seen")))
            cost = usage_row_cost(u, u_model, u_provider, _s(u.get("billing_base_url")) or base_url, utokens,
                                  first if first is not None else started_ms, pv)
            out.append(_api_call(
                ids.make(_route(u_model, u_provider)),
                sid, first if first is not None else started_ms, u_model, u_provider,
                _s(u.get("billing_base_url")) or base_url, utokens, cost, calls=_i(u.get("api_call_count")),
            ))
        rest = {k: (None if totals[k] is None else (totals[k] or 0) - sums[k]) for k in TOKEN_KINDS}
        rest_calls = None if calls is None else calls - sum(_i(u.get("api_call_count")) or 0 for u in main)
        used_est = sum(_f(u.get("estimated_cost_usd")) or 0.0 for u in main)
        rest_est = None if est is None else _nonneg(est - used_est)
        used_act = sum(_f(u.get("actual_cost_usd")) or 0.0 for u in main)
        rest_act = None if act is None else _nonneg(act - used_act)
        if any(v for v in rest.values()) or (rest_calls or 0) > 0 or (rest_est or 0) > 0 or (rest_act or 0) > 0:
            cost = cost_fields(rest_est, rest_act, status, source, pv)
            out.append(_api_call(ids.make(_route(model, None) + ":rest"), sid, started_ms, model, provider,
                                 base_url, rest, cost, calls=rest_calls))
    elif _any_usage(totals, calls, est, act):
        cost = cost_fields(est, act, status, source, pv)
        out.append(_api_call(ids.make(_route(model, None)), sid, started_ms, model, provider, base_url, totals, cost,
                             calls=calls))

    if include_auxiliary:
        for u in aux:
            utokens = _tokens(u)
            u_est, u_act = _f(u.get("estimated_cost_usd")), _f(u.get("actual_cost_usd"))
            if not _any_usage(utokens, _i(u.get("api_call_count")), u_est, u_act):
                continue
            u_model, u_provider = _s(u.get("model")), _s(u.get("billing_provider"))
            first = _ms(_f(u.get("first_seen")))
            cost = usage_row_cost(u, u_model, u_provider, _s(u.get("billing_base_url")), utokens,
                                  first if first is not None else started_ms, None)
            out.append(_api_call(
                ids.make(f"aux:{_s(u.get('task'))}:{_route(u_model, u_provider)}"),
                sid, first if first is not None else started_ms, u_model, u_provider,
                _s(u.get("billing_base_url")), utokens, cost, task=_s(u.get("task")),
                calls=_i(u.get("api_call_count")),
            ))
    return out
