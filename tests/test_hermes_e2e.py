"""End to end: a real ``hermes -z`` (hermes-agent 0.19.0) against the scripted model server.

Every figure is checked against what the script injected: token counts exactly; latency and
time to first token within a stated tolerance of the injected delays; the tool call and its
status; the turn's and the session's outcome; and ``hermetry insights --json`` agrees.

Tolerances. The client cannot see a chunk before the server sends it, so a measured delay is
never below the injected one (less 5 ms for clock granularity). Above it, Hermes adds its own
work — building the request, a fresh HTTP client and connection per call — so we allow
+300 ms for time to first token and +600 ms for the whole call.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome

pytestmark = pytest.mark.hermes

TTFT_SLACK_MS = 300
LATENCY_SLACK_MS = 600
EARLY_MS = 5


def within(measured: float | None, injected_s: float, slack_ms: float) -> bool:
    return measured is not None and injected_s * 1000 - EARLY_MS <= measured <= injected_s * 1000 + slack_ms


TOOL_USAGE = ScriptedUsage(prompt_tokens=1234, completion_tokens=56, cached_tokens=200, cache_write_tokens=100,
                           reasoning_tokens=12)
FINAL_USAGE = ScriptedUsage(prompt_tokens=1400, completion_tokens=21, cached_tokens=1100)


def test_tool_call_run_recorded_exactly(tmp_path: Path, db_rows) -> None:
    script = [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "echo hermetry"})],
                      usage=TOOL_USAGE, first_chunk_delay_s=0.8, total_duration_s=1.5),
        ScriptedReply(content="The command printed hermetry.", usage=FINAL_USAGE,
                      first_chunk_delay_s=0.3, total_duration_s=0.6),
    ]
    with ScriptedServer(script) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        result = home.oneshot("Run echo hermetry and tell me what it printed")
        served = list(srv.served)

    assert result.returncode == 0, result.stderr
    assert "The command printed hermetry." in result.stdout
    assert [s.script_index for s in served] == [0, 1]
    db = home.telemetry_db
    assert oct(db.stat().st_mode & 0o777) == "0o600"

    sessions = db_rows(db, "SELECT * FROM sessions")
    assert len(sessions) == 1
    s = sessions[0]
    assert (s["source"], s["session_type"], s["model"], s["provider"]) == ("cli", "oneshot", "scripted-model", "custom")
    assert (s["end_reason"], s["outcome"]) == ("agent_close", "completed")
    assert s["runtime_version"] == "hermes-agent 0.19.0"

    calls = db_rows(db, "SELECT * FROM api_calls ORDER BY started_at_ms")
    assert len(calls) == 2
    for call, usage, reply in zip(calls, (TOOL_USAGE, FINAL_USAGE), script, strict=True):
        expected = usage.hermes_usage()
        for kind in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
            assert call[kind] == expected[kind], kind
        assert call["status"] == "ok" and call["attempt"] == 0 and call["streamed"] == 1
        assert within(call["ttft_ms"], reply.first_chunk_delay_s, TTFT_SLACK_MS), call["ttft_ms"]
        assert within(call["latency_ms"], reply.total_duration_s, LATENCY_SLACK_MS), call["latency_ms"]
        assert call["ttft_ms"] < call["latency_ms"]
        # custom endpoint, no declared price: unknown — never a fake $0
        assert call["cost_status"] == "unknown" and call["cost_usd"] is None
    assert [c["finish_reason"] for c in calls] == ["tool_calls", "stop"]

    tools = db_rows(db, "SELECT * FROM tool_calls")
    assert len(tools) == 1
    tool = tools[0]
    assert (tool["tool_name"], tool["toolset"], tool["status"]) == ("terminal", "terminal", "ok")
    assert tool["latency_ms"] is not None and tool["latency_ms"] > 0
    assert tool["api_request_id"] == calls[0]["api_request_id"]

    turns = db_rows(db, "SELECT * FROM turns")
    assert len(turns) == 1
    turn = turns[0]
    assert turn["outcome"] == "completed"
    # the turn contains both model calls and the tool run
    assert turn["wall_ms"] >= calls[0]["latency_ms"] + calls[1]["latency_ms"]

    # no content is stored anywhere: neither the prompt, the reply nor the tool arguments
    raw = db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes() if db.with_name(db.name + "-wal").exists() else b"")
    for secret in (b"Run echo hermetry", b"The command printed", b"echo hermetry"):
        assert secret not in raw

    report = home.insights("--days", "1")
    assert report["coverage"]["sessions"] == 1
    assert report["turns"]["count"] == 1
    assert report["turns"]["by_outcome"] == {"completed": 1}
    assert report["turns"]["completion_rate"]["value"] == 1.0
    assert report["turns"]["completion_rate"]["n"] == 1
    tokens = report["api_calls"]["tokens"]
    for kind in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        assert tokens[kind] == TOOL_USAGE.hermes_usage()[kind] + FINAL_USAGE.hermes_usage()[kind]
    assert tokens["total_tokens"] == TOOL_USAGE.prompt_tokens + TOOL_USAGE.completion_tokens + \
        FINAL_USAGE.prompt_tokens + FINAL_USAGE.completion_tokens
    lat = report["api_calls"]["latency_ms"]
    assert lat["count"] == 2 and lat["max"] == max(c["latency_ms"] for c in calls)
    assert math.isclose(lat["avg"], (calls[0]["latency_ms"] + calls[1]["latency_ms"]) / 2)
    ttft = report["api_calls"]["ttft_ms"]
    assert ttft["coverage"] == {"captured": 2, "of": 2}
    assert ttft["max"] == max(c["ttft_ms"] for c in calls)
    assert report["turns"]["wall_ms"]["p50"] == turn["wall_ms"]
    assert report["tool_calls"]["count"] == 1 and report["tool_calls"]["failures"] == 0
    assert report["tools"][0]["tool_name"] == "terminal"
    assert report["api_calls"]["cost"]["calls"]["unknown"] == 2
    assert report["api_calls"]["cost"]["known_usd"] is None
    assert [row["source"] for row in report["breakdowns"]["source"]] == ["cli"]
    assert [row["model"] for row in report["breakdowns"]["model"]] == ["scripted-model"]


def test_failed_api_call_is_an_errored_turn(tmp_path: Path, db_rows) -> None:
    """Every failed attempt is one row with its HTTP status; the turn is classed errored."""
    failure = ScriptedReply(http_status=500, error_message="upstream exploded", first_chunk_delay_s=0.05)
    with ScriptedServer(default_reply=failure) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        result = home.oneshot("hello")
        attempts = len(srv.served)

    assert result.returncode == 0  # Hermes reports the failure in its reply, and exits 0
    assert attempts >= 1
    db = home.telemetry_db
    calls = db_rows(db, "SELECT * FROM api_calls ORDER BY attempt")
    assert len(calls) == attempts
    assert [c["attempt"] for c in calls] == list(range(attempts))
    assert len({c["api_request_id"] for c in calls}) == 1
    for c in calls:
        assert c["status"] == "error" and c["http_status"] == 500
        assert c["input_tokens"] is None and c["cost_usd"] is None
        assert "upstream exploded" in (c["error_message"] or "")
    turn = db_rows(db, "SELECT * FROM turns")[0]
    assert turn["outcome"] == "errored"
    # Hermes closes the run 'agent_close' as if it went well; the run failed, so the session did
    session = db_rows(db, "SELECT end_reason, outcome FROM sessions")[0]
    assert (session["end_reason"], session["outcome"]) == ("agent_close", "errored")

    report = home.insights("--days", "1")
    assert report["turns"]["by_outcome"] == {"errored": 1}
    assert report["turns"]["failure_rate"]["value"] == 1.0
    assert report["sessions"]["by_outcome"] == {"errored": 1}
    assert (report["sessions"]["failure_rate"]["value"], report["sessions"]["completion_rate"]["value"]) == (1.0, 0.0)
    assert report["api_calls"]["errors"] == attempts and report["api_calls"]["interrupted"] == 0
    assert report["api_calls"]["tokens"]["coverage"] == {"captured": 0, "of": 0}
