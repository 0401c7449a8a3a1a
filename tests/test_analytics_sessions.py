"""``list_sessions()`` and ``session_detail()``: totals, roll-up, lineage and the waterfall.

A hand-built conversation (recorded through the recorder) has a waterfall whose every number
is known: two model calls, two tool calls that overlap, a call running past the turn's end,
a queue wait, an open turn; a subagent and a compression continuation. The synthetic history
checks the listing's totals against its events.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest

from hermetry.analytics.sessions import SessionNotFound, list_sessions, session_detail
from hermetry.model.events import (
    ApiCall,
    Event,
    SessionEnded,
    SessionStarted,
    SubagentLinked,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.testing.history import DAY_MS, NOW_MS, History, synthetic_history

T0 = NOW_MS - 3_600_000  # an hour before "now"


def usage(n: int) -> dict[str, int]:
    return {"input_tokens": n, "output_tokens": n // 10, "cache_read_tokens": 2 * n, "cache_write_tokens": 0,
            "reasoning_tokens": 0}


def call(rid: str, sid: str, tid: str, start: float, latency: float, n: int, *, cost: float | None = 0.01,
         status: str = "ok", attempt: int = 0) -> ApiCall:
    priced = {"cost_usd": cost, "cost_status": "estimated" if cost is not None else "unknown"}
    return ApiCall(rid, attempt, sid, tid, T0 + start, latency, status, model="m", provider="p",
                   ttft_ms=latency / 4, **(usage(n) if status == "ok" else {}),  # type: ignore[arg-type]
                   **(priced if status == "ok" else {}), http_status=None if status == "ok" else 500,
                   error_type=None if status == "ok" else "InternalServerError")


def conversation() -> list[Event]:
    """root R (3 turns) → subagent S during turn 1, then compression into continuation C."""
    ev: list[Event] = [
        SessionStarted("R", T0, source="telegram", session_type="gateway", model="m", provider="p", profile="p1"),
        # turn 1: queued 700 ms; model 100–1100, tools 1200–3200 and 1500–2500 (parallel), model 3300–4300
        TurnStarted("R1", "R", T0, queue_wait_ms=700.0),
        call("r1a", "R", "R1", 100, 1000, 1000),
        ToolCall("c1", "R", "R1", "terminal", T0 + 1200, 2000, "ok", toolset="terminal", api_request_id="r1a"),
        ToolCall("c2", "R", "R1", "read_file", T0 + 1500, 1000, "error", toolset="file", api_request_id="r1a",
                 error_type="ToolError"),
        call("r1b", "R", "R1", 3300, 1000, 500),
        TurnEnded("R1", "R", T0 + 5000, "completed"),
        # the subagent, started from turn 1
        SubagentLinked("S", "R", "R1", T0 + 1300),
        SessionStarted("S", T0 + 1300, source="subagent", session_type="subagent", model="m", provider="p",
                       parent_session_id="R", parent_turn_id="R1", lineage="subagent"),
        TurnStarted("S1", "S", T0 + 1310),
        call("s1a", "S", "S1", 1320, 500, 300),
        TurnEnded("S1", "S", T0 + 1900, "completed"),
        SessionEnded("S", T0 + 1950, "agent_close", "completed"),
        # turn 2: a failed attempt, then a call that runs 500 ms past the turn's recorded end (clipped)
        TurnStarted("R2", "R", T0 + 10_000),
        call("r2a", "R", "R2", 10_100, 400, 0, status="error"),
        call("r2a", "R", "R2", 10_600, 2000, 800, attempt=1),
        TurnEnded("R2", "R", T0 + 12_100, "completed"),
        SessionEnded("R", T0 + 13_000, "compression", "compressed"),
        # the continuation: one completed turn with an unpriced call, one left open
        SessionStarted("C", T0 + 13_100, source="telegram", session_type="gateway", model="m", provider="p",
                       profile="p1", parent_session_id="R", lineage="continuation"),
        TurnStarted("C1", "C", T0 + 13_200),
        call("c1a", "C", "C1", 13_300, 1500, 2000, cost=None),
        TurnEnded("C1", "C", T0 + 15_000, "completed"),
        TurnStarted("C2", "C", T0 + 20_000),
        call("c2a", "C", "C2", 20_100, 900, 100),
    ]
    return ev


@pytest.fixture(scope="module")
def hand_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return History(NOW_MS, conversation()).record(tmp_path_factory.mktemp("hand") / "t.db")


def test_waterfall_of_a_turn_with_parallel_tools(hand_db: Path) -> None:
    detail = session_detail(hand_db, "R")
    assert detail["schema"] == "hermetry.session.v1"
    t1 = detail["turns"][0]
    w = t1["waterfall"]
    assert w == {"queue_wait_ms": 700.0, "wall_ms": 5000.0, "model_ms": 2000.0, "tools_ms": 3000.0,
                 "overlap_ms": 1000.0, "other_ms": 1000.0, "untimed_calls": 0}
    assert w["model_ms"] + w["tools_ms"] - w["overlap_ms"] + w["other_ms"] == w["wall_ms"]
    assert [c["offset_ms"] for c in t1["api_calls"]] == [100.0, 3300.0]
    assert [(c["tool_name"], c["offset_ms"], c["status"]) for c in t1["tool_calls"]] == [
        ("terminal", 1200.0, "ok"), ("read_file", 1500.0, "error")]
    assert t1["subagent_sessions"] == ["S"]


def test_waterfall_clips_calls_to_the_turn_and_never_goes_negative(hand_db: Path) -> None:
    t2 = session_detail(hand_db, "R")["turns"][1]
    w = t2["waterfall"]
    # failed attempt 10_100–10_500 (400), retry 10_600–12_600 clipped to 12_100 (1500)
    assert w["wall_ms"] == 2100.0 and w["model_ms"] == 1900.0 and w["tools_ms"] == 0.0
    assert w["overlap_ms"] == 0.0 and w["other_ms"] == 200.0
    assert [c["attempt"] for c in t2["api_calls"]] == [0, 1]


def test_an_open_turn_has_no_wall_time(hand_db: Path) -> None:
    c2 = session_detail(hand_db, "C")["turns"][1]
    assert c2["outcome"] == "open" and c2["wall_ms"] is None
    assert c2["waterfall"]["wall_ms"] is None and c2["waterfall"]["other_ms"] is None
    assert c2["waterfall"]["model_ms"] == 900.0


def test_session_totals_and_time(hand_db: Path) -> None:
    totals = session_detail(hand_db, "R")["totals"]
    assert totals["turns"] == 2 and totals["turns_by_outcome"] == {"completed": 2}
    assert totals["api_calls"] == 4 and totals["api_errors"] == 1
    assert totals["tool_calls"] == 2 and totals["tool_failures"] == 1
    expected_tokens = sum(sum(usage(n)[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens"))
                          for n in (1000, 500, 800))
    assert totals["tokens"]["total_tokens"] == expected_tokens
    assert totals["cost"]["estimated_usd"] == pytest.approx(0.03) and totals["cost"]["complete"]
    assert totals["time"] == {"queue_wait_ms": 700.0, "wall_ms": 7100.0, "model_ms": 3900.0, "tools_ms": 3000.0,
                              "overlap_ms": 1000.0, "other_ms": 1200.0, "turns_timed": 2}


def test_lineage_parents_children_and_conversation_totals(hand_db: Path) -> None:
    root = session_detail(hand_db, "R")
    assert root["lineage"]["root_session_id"] == "R" and root["lineage"]["parents"] == []
    assert [(c["session_id"], c["lineage"]) for c in root["lineage"]["children"]] == [
        ("S", "subagent"), ("C", "continuation")]
    assert root["lineage"]["conversation_sessions"] == 3
    conv = root["conversation_totals"]
    # every API call of R, S and C once
    assert conv["api_calls"] == 4 + 1 + 2
    assert conv["tokens"]["input_tokens"] == 1000 + 500 + 800 + 300 + 2000 + 100
    assert conv["cost"]["calls"] == {"actual": 0, "estimated": 5, "included": 0, "unknown": 1}
    assert not conv["cost"]["complete"]
    sub = session_detail(hand_db, "S")
    assert [p["session_id"] for p in sub["lineage"]["parents"]] == ["R"]
    assert sub["lineage"]["root_session_id"] == "R" and sub["session"]["parent_turn_id"] == "R1"
    assert sub["conversation_totals"] == conv
    cont = session_detail(hand_db, "C")
    assert cont["session"]["lineage"] == "continuation" and cont["session"]["outcome"] == "open"


def test_a_prefix_finds_a_session_and_unknown_ids_are_refused(hand_db: Path, tmp_path: Path) -> None:
    with pytest.raises(SessionNotFound):
        session_detail(hand_db, "nope")
    with pytest.raises(SessionNotFound):
        session_detail(tmp_path / "missing.db", "R")


def test_list_rolls_subagents_and_continuations_into_the_conversation(hand_db: Path) -> None:
    listed = list_sessions(hand_db, NOW_MS - DAY_MS, NOW_MS)
    assert listed["schema"] == "hermetry.sessions.v1" and listed["count"] == 1
    (row,) = listed["sessions"]
    assert row["session_id"] == "R" and row["sessions_in_conversation"] == 3
    assert row["subagent_sessions"] == 1 and row["continuation_sessions"] == 1
    assert row["turns"] == 2 + 1 + 2 and row["api_calls"] == 7
    assert row["outcome"] == "open"  # the conversation goes on in its continuation
    assert row["duration_ms"] is None  # …which has not ended
    flat = list_sessions(hand_db, NOW_MS - DAY_MS, NOW_MS, roll_up=False)
    assert [r["session_id"] for r in flat["sessions"]] == ["C", "S", "R"]
    by_id = {r["session_id"]: r for r in flat["sessions"]}
    assert by_id["R"]["outcome"] == "compressed" and by_id["R"]["duration_ms"] == 13_000
    assert sum(r["api_calls"] for r in flat["sessions"]) == row["api_calls"]
    assert sum(r["tokens"]["total_tokens"] for r in flat["sessions"]) == row["tokens"]["total_tokens"]


def test_list_totals_match_the_injected_history(tmp_path: Path) -> None:
    history = synthetic_history(seed=21, days=3, sessions_per_day=10)
    db = history.record(tmp_path / "h.db")
    since = NOW_MS - 3 * DAY_MS
    listed = list_sessions(db, since, NOW_MS, limit=1000)
    sessions = history.sessions()
    parents = history.parents()
    roots = [s for s in sessions.values() if s.parent_session_id is None]
    assert listed["count"] == len(roots) == len(listed["sessions"])
    assert [r["session_id"] for r in listed["sessions"]] == [
        s.session_id for s in sorted(roots, key=lambda s: s.started_at_ms, reverse=True)]

    def root(sid: str) -> str:
        while sid in parents:
            sid = parents[sid]
        return sid

    calls, tokens, turns, cost = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(list)
    for c in history.api_calls():
        r = root(c.session_id)
        calls[r] += 1
        if c.status == "ok" and c.input_tokens is not None:
            tokens[r] += c.input_tokens + (c.output_tokens or 0) + (c.cache_read_tokens or 0) + (c.cache_write_tokens or 0)
        if c.cost_status in ("actual", "estimated") and c.cost_usd is not None:
            cost[r].append(c.cost_usd)
    for t in history.turns():
        turns[root(t.session_id)] += 1
    for row in listed["sessions"]:
        sid = row["session_id"]
        assert row["api_calls"] == calls[sid] and row["turns"] == turns[sid]
        assert row["tokens"]["total_tokens"] == tokens[sid]
        known = row["cost"]["known_usd"]
        assert (known is None and not cost[sid]) or known == pytest.approx(math.fsum(cost[sid]), rel=1e-9)
    limited = list_sessions(db, since, NOW_MS, limit=5)
    assert [r["session_id"] for r in limited["sessions"]] == [r["session_id"] for r in listed["sessions"][:5]]
    assert limited["count"] == listed["count"]
