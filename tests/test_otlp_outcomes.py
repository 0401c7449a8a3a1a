"""OTLP's session and turn counts follow the store's one rules (model/outcomes.py).

A session is counted once however many ends live capture reports; a one-run session's outcome
follows its last turn and Hermes' cron status; a turn Hermes never ended (its model call failed)
is closed the way the store closes it. The real-run test drives ``hermes -z`` against a model
that answers HTTP 500 and checks what the collector received against what the test injected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hermetry.model.events import (
    ApiCall,
    CronRunFinished,
    SessionEnded,
    SessionStarted,
    TurnEnded,
    TurnStarted,
)
from hermetry.sinks import genai
from hermetry.testing import ScriptedReply, ScriptedServer
from hermetry.testing.hermes import HermesHome
from hermetry.testing.otlp import OTLPReceiver

T0 = 1_760_000_000_000.0


def _sessions(points: list[genai.Measurement]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in points:
        if p.metric is genai.SESSIONS:
            outcome = dict(p.attributes)[genai.H_SESSION_OUTCOME]
            out[outcome] = out.get(outcome, 0) + p.value
    return out


def test_a_session_with_several_ends_is_counted_once() -> None:
    _, points = genai.GenAIMapper().map([
        SessionStarted("s", T0, source="cli", session_type="cli"),
        SessionEnded("s", T0 + 10, "cli_close", "completed"),
        SessionEnded("s", T0 + 11, "on_session_finalize:shutdown", "completed"),
    ])
    assert _sessions(points) == {"completed": 1}


def test_a_failed_one_shot_is_an_errored_session_and_its_open_turn_is_closed() -> None:
    m = genai.GenAIMapper()
    spans, points = m.map([
        SessionStarted("s", T0, source="cli", session_type="oneshot"),
        TurnStarted("t", "s", T0 + 1),
        ApiCall("r", 0, "s", "t", T0 + 2, 40.0, "error", http_status=500),
        ApiCall("r", 1, "s", "t", T0 + 50, 30.0, "error", http_status=500),
        SessionEnded("s", T0 + 200, "agent_close", "completed"),
    ])
    assert _sessions(points) == {"errored": 1}
    turns = [p for p in points if p.metric is genai.TURNS]
    assert [dict(p.attributes)[genai.H_TURN_OUTCOME] for p in turns] == ["errored"]
    root = next(s for s in spans if s.name == "invoke_agent hermes")
    assert root.attributes[genai.H_OUTCOME_REASON] == "reconciled:last_call_failed"
    assert root.end_ns == int(T0 + 80) * 1_000_000  # the last call's end, as the store says
    assert all(s.parent_span_id == root.span_id for s in spans if s.name.startswith("chat"))


def test_the_next_turn_closes_an_open_one_and_a_later_success_wins_for_a_conversation() -> None:
    _, points = genai.GenAIMapper().map([
        SessionStarted("s", T0, source="cli", session_type="cli"),
        TurnStarted("t1", "s", T0 + 1),
        TurnStarted("t2", "s", T0 + 100),
        TurnEnded("t2", "s", T0 + 200, "completed"),
        SessionEnded("s", T0 + 300, "cli_close", "completed"),
    ])
    outcomes = sorted(dict(p.attributes)[genai.H_TURN_OUTCOME] for p in points if p.metric is genai.TURNS)
    assert outcomes == ["abandoned", "completed"]  # no call: abandoned (reconciled:no_turn_end)
    assert _sessions(points) == {"completed": 1}


def test_a_failed_cron_job_waits_for_hermes_status() -> None:
    m = genai.GenAIMapper()
    sid = "cron_abc123def456_20261201_210000"
    _, first = m.map([
        SessionStarted(sid, T0, source="cron", session_type="cron"),
        TurnStarted("t", sid, T0 + 1),
        TurnEnded("t", sid, T0 + 5, "completed"),
        SessionEnded(sid, T0 + 6, "cron_complete", "completed"),
    ])
    assert _sessions(first) == {}  # not counted yet: the job's status comes after the end
    _, second = m.map([CronRunFinished("abc123def456", T0 + 7, "error")])
    assert _sessions(second) == {"errored": 1}
    assert _sessions(m.finish()[1]) == {}


def test_a_cron_session_without_status_is_counted_at_finish() -> None:
    m = genai.GenAIMapper()
    sid = "cron_abc123def456_20261201_210000"
    _, points = m.map([SessionStarted(sid, T0, source="cron", session_type="cron"),
                       SessionEnded(sid, T0 + 6, "cron_complete", "completed")])
    assert _sessions(points) == {} and _sessions(m.finish()[1]) == {"completed": 1}


@pytest.mark.hermes
def test_real_one_shot_whose_model_fails_is_exported_errored(tmp_path: Path, db_rows: Any) -> None:
    failure = ScriptedReply(http_status=500, error_message="upstream exploded")
    with OTLPReceiver() as rx, ScriptedServer(default_reply=failure) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url, config={"agent": {"api_max_retries": 1}})
        env = home.env(HERMETRY_OTLP="1", OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint)
        home.oneshot("this fails", env=env)
        attempts = len(srv.served)
        assert rx.wait_for(lambda r: any(p["metric"] == "hermetry.sessions" for p in r.points())
                           and any(s["name"] == "invoke_agent hermes" for s in r.spans()))
        spans, points = rx.spans(), rx.points()
    assert attempts >= 1  # the server really answered 500 (ground truth the test injected)

    def last(metric: str) -> list[dict[str, Any]]:
        latest: dict[Any, dict[str, Any]] = {}
        for p in points:
            if p["metric"] == metric:
                key = tuple(sorted(p["attributes"].items()))
                if key not in latest or p["time_ns"] >= latest[key]["time_ns"]:
                    latest[key] = p
        return list(latest.values())

    sessions = last("hermetry.sessions")
    assert [(p["attributes"]["hermetry.session.outcome"], p["attributes"]["hermetry.outcome.class"], p["value"])
            for p in sessions] == [("errored", "failure", 1)]
    turns = last("hermetry.turns")
    assert [(p["attributes"]["hermetry.turn.outcome"], p["value"]) for p in turns] == [("errored", 1)]
    roots = [s for s in spans if s["name"] == "invoke_agent hermes"]
    chats = [s for s in spans if s["name"].startswith("chat ")]
    assert len(roots) == 1 and len(chats) == attempts
    assert all(c["parent_span_id"] == roots[0]["span_id"] and c["trace_id"] == roots[0]["trace_id"] for c in chats)
    assert roots[0]["status"] == "error"
    # the store says the same
    db = home.telemetry_db
    assert [r["outcome"] for r in db_rows(db, "SELECT outcome FROM sessions")] == ["errored"]
    assert [r["outcome"] for r in db_rows(db, "SELECT outcome FROM turns")] == ["errored"]


def test_grafana_tool_failures_count_known_failure_statuses_only() -> None:
    """The panel's status filter is exactly model.outcomes.tool_failed's failures (unknown is no failure)."""
    import json
    import re

    from hermetry.model import outcomes
    from hermetry.surfaces.metrics import GRAFANA_DASHBOARD

    statuses = [outcomes.TOOL_OK, outcomes.TOOL_ERROR, outcomes.TOOL_BLOCKED, outcomes.TOOL_UNKNOWN_TOOL,
                outcomes.TOOL_UNKNOWN]
    failures = sorted(s for s in statuses if outcomes.tool_failed(s) is True)
    panel = next(p for p in json.loads(GRAFANA_DASHBOARD.read_text())["panels"]
                 if p.get("title") == "Tool failures by tool")
    expr = panel["targets"][0]["expr"]
    match = re.search(r'hermetry_tool_status=~"([^"]+)"', expr)
    assert match and sorted(match.group(1).split("|")) == failures
    assert "!=" not in expr.split(" or ")[0]


def test_an_imported_usage_row_counts_its_calls_and_stays_out_of_per_operation_histograms() -> None:
    _, points = genai.GenAIMapper().map([
        SessionStarted("s", T0, source="cli", session_type="cli", origin="backfill"),
        ApiCall("imp", 0, "s", None, T0, None, "ok", input_tokens=9000, output_tokens=700, call_count=12,
                origin="backfill"),
        ApiCall("live", 0, "s", None, T0 + 1, 20.0, "ok", input_tokens=10, output_tokens=3, task="compression"),
    ])
    calls = sum(p.value for p in points if p.metric is genai.API_CALLS)
    assert calls == 13  # the 12 calls the imported row stands for + 1 live attempt
    usage = [p for p in points if p.metric is genai.TOKEN_USAGE]
    assert sorted(p.value for p in usage) == [3, 10]  # only the live call's per-operation values
    assert all(dict(p.attributes)[genai.H_TASK] == "compression" for p in usage)
    tokens = {dict(p.attributes).get(genai.H_TASK) for p in points if p.metric is genai.TOKENS}
    assert tokens == {"main", "compression"}  # hermetry.tokens can split auxiliary from main


def test_derived_turns_are_labelled_and_left_out_of_rate_panels() -> None:
    import json

    from hermetry.surfaces.metrics import GRAFANA_DASHBOARD

    _, points = genai.GenAIMapper().map([
        TurnStarted("t", "s", T0, origin="backfill"), TurnEnded("t", "s", T0 + 5, "completed", origin="backfill")])
    (turn,) = [p for p in points if p.metric is genai.TURNS]
    assert dict(turn.attributes)[genai.H_ORIGIN] == "backfill"
    exprs = [t["expr"] for p in json.loads(GRAFANA_DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]
    selectors = [e for e in exprs if "hermetry_turns{" in e]
    assert selectors and all(e.count("hermetry_turns{") == e.count('hermetry_turns{hermetry_origin=""')
                             for e in selectors)


def test_the_live_counts_follow_the_stores_revisions() -> None:
    """hermetry.sessions / hermetry.turns are up-down counters: a reopened session leaves its
    outcome, an API-server session (never ended by Hermes 0.19.0) follows its last turn and is open
    again while the next runs, a turn's own late end replaces the outcome the mapper inferred."""
    m = genai.GenAIMapper()
    _, points = m.map([
        SessionStarted("chat", T0, source="cli", session_type="interactive"),
        SessionEnded("chat", T0 + 10, "cli_close", "completed"),
        SessionStarted("api", T0 + 20, source="api_server", session_type="api"),
        TurnStarted("a1", "api", T0 + 21), TurnEnded("a1", "api", T0 + 30, "completed"),
    ])
    assert _sessions(points) == {"completed": 2}
    from hermetry.model.events import SessionReopened

    _, more = m.map([SessionReopened("chat", T0 + 40), TurnStarted("a2", "api", T0 + 50)])
    assert _sessions(points + more) == {"completed": 0}  # both open again
    _, last = m.map([TurnEnded("a2", "api", T0 + 60, "interrupted")])
    assert _sessions(points + more + last) == {"completed": 0, "interrupted": 1}
    # a turn the next one closed (abandoned), whose own end arrives later: counted once, as it ended
    _, closed = m.map([TurnStarted("c1", "chat", T0 + 70), TurnStarted("c2", "chat", T0 + 80),
                       TurnEnded("c1", "chat", T0 + 85, "completed")])
    turns: dict[str, float] = {}
    for p in closed:
        if p.metric is genai.TURNS:
            key = dict(p.attributes)[genai.H_TURN_OUTCOME]
            turns[key] = turns.get(key, 0) + p.value
    assert turns == {"abandoned": 0, "completed": 1}
