"""A deterministic synthetic telemetry history with known answers, recorded through the recorder.

Analytics tests (and anyone testing a report of their own) need a history whose every figure
is known in advance. ``synthetic_history()`` builds one from a seed as a list of canonical
events — sessions from several sources, models and profiles; turns that complete, fail,
time out or stay open; retries; streamed and non-streamed calls; parallel tool calls;
subagents and compression continuations; queue waits; costs of every status — and
:meth:`History.record` writes it through the real :class:`~hermetry.recorder.recorder.Recorder`
into a :class:`~hermetry.stores.sqlite.SQLiteStore`, exactly as live capture would.

The events *are* the ground truth (a session end's ``outcome`` is the one the scenario
means, written out — for a one-run session whose last turn failed, that failure): a test computes what a report should say from
``history.events`` itself (``turns()``, ``api_calls()``, … are plain views of them) and
compares.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermetry.model.events import (
    ApiCall,
    Event,
    Origin,
    SessionEnded,
    SessionStarted,
    SubagentLinked,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.model.units import DAY_MS

#: 2025-01-15T12:00:00Z — a fixed "now" so that windows and days are reproducible.
NOW_MS = 1_736_942_400_000.0

SOURCES = (("cli", "interactive"), ("telegram", "gateway"), ("api_server", "api"), ("cron", "cron"))
MODELS = (("m-alpha", "prov-a"), ("m-beta", "prov-b"))
PROFILES = ("default", "work")
TOOLS = (("terminal", "terminal"), ("read_file", "file"), ("web_search", "web"))
#: How each source's sessions end, and the outcome that is — written out, not computed with
#: hermetry's own mapping, so the tests that read it check that mapping.
END_REASONS: dict[str, tuple[str | None, str]] = {
    "cli": ("cli_close", "completed"), "telegram": ("idle", "expired"), "cron": ("cron_complete", "completed"),
    "api_server": (None, "unknown"), "subagent": ("agent_close", "completed"),
}
#: A one-run session (cron, API run, subagent) whose last turn failed failed with it;
#: a chat (cli) or gateway conversation (telegram) does not.
ONE_RUN_SOURCES = ("cron", "api_server", "subagent")
FAILED_TURN_SESSION_OUTCOME = {"errored": "errored", "timed_out": "timed_out"}
#: Hermes never ends an API-server session: its outcome is its last turn's, whatever that was.
UNENDED_SOURCES = ("api_server",)


@dataclass(frozen=True)
class Regime:
    """How a day behaves: scale the model's latency and cost, and how often a turn's model call fails."""

    latency_scale: float = 1.0
    api_failure: float = 0.05
    cost_scale: float = 1.0


@dataclass
class Turn:
    """A turn as injected: start, end (None: left open), outcome, and its session's dimensions."""

    turn_id: str
    session_id: str
    started_at_ms: float
    ended_at_ms: float | None
    outcome: str | None
    queue_wait_ms: float | None

    @property
    def wall_ms(self) -> float | None:
        return None if self.ended_at_ms is None else self.ended_at_ms - self.started_at_ms


@dataclass
class History:
    now_ms: float
    events: list[Event] = field(default_factory=list)

    # -- recording ---------------------------------------------------------------------------

    def record(self, path: str | Path) -> Path:
        """Write every event through the recorder into a SQLite store at ``path``."""
        from hermetry.recorder.recorder import Recorder
        from hermetry.stores.sqlite import SQLiteStore

        target = Path(path)
        recorder = Recorder(lambda: SQLiteStore(target), register_atexit=False, flush_interval_s=0.01)
        for event in self.events:
            recorder.record(event)
        recorder.close(timeout=60)
        stats = recorder.stats()
        if stats.dropped or stats.pending or stats.queued:
            raise RuntimeError(f"the recorder did not write the whole history: {stats}")
        return target

    # -- ground truth views ------------------------------------------------------------------

    def sessions(self) -> dict[str, SessionStarted]:
        return {e.session_id: e for e in self.events if isinstance(e, SessionStarted)}

    def session_ends(self) -> dict[str, SessionEnded]:
        return {e.session_id: e for e in self.events if isinstance(e, SessionEnded)}

    def turns(self) -> list[Turn]:
        starts = {e.turn_id: e for e in self.events if isinstance(e, TurnStarted)}
        ends = {e.turn_id: e for e in self.events if isinstance(e, TurnEnded)}
        out = []
        for tid, s in starts.items():
            end = ends.get(tid)
            out.append(Turn(tid, s.session_id, s.started_at_ms, end.ended_at_ms if end else None,
                            end.outcome if end else None, s.queue_wait_ms))
        return out

    def api_calls(self) -> list[ApiCall]:
        return [e for e in self.events if isinstance(e, ApiCall)]

    def tool_calls(self) -> list[ToolCall]:
        return [e for e in self.events if isinstance(e, ToolCall)]

    def parents(self) -> dict[str, str]:
        return {e.session_id: e.parent_session_id for e in self.events
                if isinstance(e, SessionStarted) and e.parent_session_id}


def _cost(rnd: random.Random, provider: str, profile: str, tokens: dict[str, int], scale: float) -> dict[str, Any]:
    """Every cost status appears: estimated (prov-a), actual / included / unknown (prov-b)."""
    if provider == "prov-a":
        usd = (tokens["input_tokens"] * 3 + tokens["output_tokens"] * 15 + tokens["cache_read_tokens"] * 0.3
               + tokens["cache_write_tokens"] * 3.75) / 1e6 * scale
        return {"cost_usd": usd, "cost_status": "estimated", "cost_source": "synthetic-prices"}
    draw = rnd.random()
    if profile == "work" and draw < 0.3:
        return {"cost_usd": None, "cost_status": "included", "cost_source": "subscription:synthetic"}
    if draw < 0.85:
        usd = (tokens["input_tokens"] * 1 + tokens["output_tokens"] * 5) / 1e6 * scale
        return {"cost_usd": usd, "provider_cost_usd": usd, "cost_status": "actual", "cost_source": "provider_reported"}
    return {"cost_usd": None, "cost_status": "unknown", "cost_source": None}


class _Builder:
    def __init__(self, seed: int, now_ms: float, origin: Origin) -> None:
        self.rnd = random.Random(seed)
        self.now_ms = now_ms
        self.origin: Origin = origin
        self.events: list[Event] = []
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:05d}"

    def session(self, t: float, regime: Regime, *, source: tuple[str, str] | None = None,
                model: tuple[str, str] | None = None, parent: tuple[str, str, str] | None = None) -> float:
        """One session (and its children) starting at ``t``; returns when it ended."""
        rnd = self.rnd
        src, stype = source or rnd.choice(SOURCES)
        model_name, provider = model or rnd.choice(MODELS)
        profile = rnd.choice(PROFILES)
        sid = self._id("s")
        lineage = parent_sid = parent_turn = None
        if parent is not None:
            lineage, parent_sid, parent_turn = parent
        if lineage == "subagent":
            src, stype = "subagent", "subagent"
            self.events.append(SubagentLinked(sid, parent_sid or "", parent_turn, t, child_role="worker"))
        self.events.append(SessionStarted(
            session_id=sid, started_at_ms=t, source=src, session_type=stype, model=model_name, provider=provider,
            profile=profile, parent_session_id=parent_sid, parent_turn_id=parent_turn, lineage=lineage,
            runtime_version="hermes-agent 0.19.0", host="synthetic", origin=self.origin))
        n_turns = 1 if lineage == "subagent" else rnd.randint(1, 4)
        leave_open = lineage is None and rnd.random() < 0.05
        compress_after = rnd.randint(1, n_turns - 1) if (src == "api_server" and lineage is None and n_turns > 1
                                                         and rnd.random() < 0.3) else None
        for k in range(n_turns):
            t += rnd.uniform(2_000, 60_000)
            last = k == n_turns - 1
            t = self.turn(sid, t, src, model_name, provider, profile, regime, left_open=leave_open and last)
            if k == 0 and src == "cli" and lineage is None and rnd.random() < 0.3:
                child_end = self.session(t - 50, regime, model=(model_name, provider),
                                         parent=("subagent", sid, self._last_turn))
                t = max(t, child_end)
            if compress_after is not None and k + 1 == compress_after:
                self.events.append(SessionEnded(sid, t + 5, "compression", "compressed", origin=self.origin))
                return self.session(t + 10, regime, source=(src, stype), model=(model_name, provider),
                                    parent=("continuation", sid, self._last_turn))
        if leave_open:
            return t
        reason, outcome = END_REASONS[src]
        if src in ONE_RUN_SOURCES and reason is not None:
            outcome = FAILED_TURN_SESSION_OUTCOME.get(self._last_outcome or "", outcome)
        if src in UNENDED_SOURCES and self._last_outcome:
            outcome = self._last_outcome  # (the turn outcomes drawn here are session outcomes too)
        if reason is not None or rnd.random() < 0.5 or src in UNENDED_SOURCES:
            self.events.append(SessionEnded(sid, t + 20, reason, outcome, origin=self.origin))
        return t + 20

    _last_turn: str = ""
    _last_outcome: str | None = None

    def turn(self, sid: str, t: float, src: str, model: str, provider: str, profile: str, regime: Regime,
             *, left_open: bool = False) -> float:
        rnd = self.rnd
        tid = self._id("t")
        self._last_turn = tid
        queue = rnd.uniform(50, 3_000) if src == "telegram" else None
        self.events.append(TurnStarted(tid, sid, t, task_id=f"task-{tid}", queue_wait_ms=queue, origin=self.origin))
        t += rnd.uniform(5, 40)
        fails = rnd.random() < regime.api_failure
        n_calls = rnd.randint(1, 3)
        for i in range(n_calls):
            final = i == n_calls - 1
            rid = self._id("r")
            attempt = 0
            if (fails and final) or rnd.random() < 0.05:  # failed attempts before success, or for good
                for _ in range(2 if fails and final else 1):
                    latency = rnd.uniform(30, 400)
                    status_code, kind = (500, "InternalServerError") if fails and final else (429, "RateLimitError")
                    self.events.append(ApiCall(
                        rid, attempt, sid, tid, t, latency, "error", model=model, provider=provider,
                        http_status=status_code, retry_count=attempt, error_type=kind,
                        error_message=f"HTTP {status_code}", origin=self.origin))
                    t += latency + rnd.uniform(100, 500)
                    attempt += 1
                if fails and final:
                    break
            latency = rnd.lognormvariate(math.log(800), 0.5) * regime.latency_scale
            streamed = src != "cron"
            tokens = {
                "input_tokens": rnd.randint(200, 3_000),
                "output_tokens": rnd.randint(20, 600),
                "cache_read_tokens": rnd.choice((0, 500, 2_000)),
                "cache_write_tokens": rnd.choice((0, 0, 100)),
            }
            tokens["reasoning_tokens"] = min(tokens["output_tokens"], rnd.choice((0, 0, 50)))
            call = ApiCall(
                rid, attempt, sid, tid, t, latency, "ok", model=model, provider=provider,
                response_model=model, streamed=streamed,
                ttft_ms=latency * rnd.uniform(0.2, 0.5) if streamed else None,
                finish_reason="stop" if final else "tool_calls", retry_count=attempt or None, origin=self.origin)
            if rnd.random() < 0.03:  # a provider that reported no usage at all: nothing to price
                call.cost_status = "unknown"
            else:
                for kind, n in tokens.items():
                    setattr(call, kind, n)
                for key, value in _cost(rnd, provider, profile, tokens, regime.cost_scale).items():
                    setattr(call, key, value)
            self.events.append(call)
            t += latency
            if not final:
                t = self.tools(sid, tid, rid, t)
        end = t + rnd.uniform(10, 200)
        if left_open:
            return end
        reason: str | None = None
        if fails:
            outcome, reason = "errored", "InternalServerError"
        else:
            draw = rnd.random()
            outcome, reason = (("completed", None) if draw < 0.9 else
                               ("interrupted", "user") if draw < 0.95 else ("timed_out", "inactivity"))
        self.events.append(TurnEnded(tid, sid, end, outcome, reason, origin=self.origin))
        self._last_outcome = outcome
        return end

    def tools(self, sid: str, tid: str, rid: str, t: float) -> float:
        """0–2 tool calls after a model call; two of them sometimes run in parallel."""
        rnd = self.rnd
        n = rnd.randint(0, 2)
        parallel = n == 2 and rnd.random() < 0.4
        end = t
        for _ in range(n):
            name, toolset = rnd.choice(TOOLS)
            start = t + rnd.uniform(1, 20)
            latency = rnd.lognormvariate(math.log(300), 0.8)
            draw = rnd.random()
            status, error_type = ("ok", None) if draw < 0.88 else ("error", "ToolError") if draw < 0.98 else (
                "blocked", "ApprovalDenied")
            self.events.append(ToolCall(self._id("c"), sid, tid, name, start, latency, status, toolset=toolset,
                                        api_request_id=rid, error_type=error_type, origin=self.origin))
            end = max(end, start + latency)
            if not parallel:
                t = start + latency
        return end


def synthetic_history(*, seed: int = 1, now_ms: float = NOW_MS, days: int = 14, sessions_per_day: int = 8,
                      regime: Callable[[int], Regime] = lambda day: Regime(), origin: Origin = "live") -> History:
    """``days`` days of sessions ending before ``now_ms``; ``regime(days_ago)`` shapes each day
    (``days_ago`` = 0 for the last day), so a test can plant a change in one window."""
    b = _Builder(seed, now_ms, origin)
    for days_ago in range(days - 1, -1, -1):
        day_start = now_ms - (days_ago + 1) * DAY_MS
        starts = sorted(b.rnd.uniform(0.02, 0.9) * DAY_MS for _ in range(sessions_per_day))
        for offset in starts:
            b.session(day_start + offset, regime(days_ago))
    return History(now_ms, b.events)


def sparse_history(*, seed: int = 2, now_ms: float = NOW_MS, days: int = 3, sessions_per_day: int = 4) -> History:
    """Old data: API calls without time to first token or any cost (as older captures wrote
    them), half of them without latency either (imported rows)."""
    history = synthetic_history(seed=seed, now_ms=now_ms, days=days, sessions_per_day=sessions_per_day)
    rnd = random.Random(seed)
    for e in history.events:
        if isinstance(e, ApiCall):
            e.ttft_ms = None
            e.streamed = None
            e.cost_usd = e.provider_cost_usd = None
            e.cost_status = e.cost_source = None
            if rnd.random() < 0.5:
                e.latency_ms = None
    return history
