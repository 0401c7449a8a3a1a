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
from typing import Any

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


# -- numbers that mean what people think (issue 10): ground truth from the scripted server -----

TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def sent_usage(served: list[Any]) -> dict[str, int]:
    """What the scripted server billed, summed over every request it answered with usage."""
    totals = dict.fromkeys(TOKEN_KINDS, 0)
    for s in served:
        if s.completed and s.reply.http_status == 200 and s.reply.usage is not None:
            usage = s.reply.usage.hermes_usage()
            for kind in TOKEN_KINDS:
                totals[kind] += usage[kind]
    return totals


def recorded_usage(db: Path, db_rows: Any) -> dict[str, int]:
    row = db_rows(db, "SELECT " + ", ".join(f"COALESCE(SUM({k}), 0) AS {k}" for k in TOKEN_KINDS) + " FROM api_calls")
    return dict(row[0])


def imported_usage(home: HermesHome, tmp_path: Path, db_rows: Any) -> dict[str, int]:
    from hermetry.sources.backfill import import_hermes_home

    target = tmp_path / "imported.db"
    import_hermes_home(home.root, target)
    return recorded_usage(target, db_rows)


def _wait(predicate: Any, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_failed_cron_job_is_a_failed_session(tmp_path: Path, db_rows) -> None:
    """Hermes ends the run's session 'cron_complete' and records the job run failed: so is the session."""
    import json
    import re

    failure = ScriptedReply(http_status=500, error_message="upstream exploded")
    with ScriptedServer(default_reply=failure) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        created = home.run("cron", "create", "every 1h", "question", "--name", "nightly")
        job = re.search(r"\b([0-9a-f]{12})\b", created.stdout + home.run("cron", "list").stdout)
        assert job, created.stdout
        assert home.run("cron", "run", job.group(1)).returncode == 0
        attempts = len(srv.served)
    assert attempts >= 1
    jobs = json.loads((home.root / "cron" / "jobs.json").read_text())
    jobs = jobs.get("jobs", jobs) if isinstance(jobs, dict) else jobs
    assert [j["last_status"] for j in jobs if j["id"] == job.group(1)] == ["error"]  # Hermes' own record

    db = home.telemetry_db
    (session,) = db_rows(db, "SELECT * FROM sessions")
    assert (session["source"], session["end_reason"]) == ("cron", "cron_complete")
    assert (session["outcome"], session["run_status"]) == ("errored", "error")
    assert [t["outcome"] for t in db_rows(db, "SELECT outcome FROM turns")] == ["errored"]
    report = home.insights("--days", "1")
    assert report["sessions"]["by_outcome"] == {"errored": 1}
    assert report["sessions"]["failure_rate"]["value"] == 1.0
    assert report["api_calls"]["errors"] == attempts


def test_compression_continuation_counts_every_token_once(tmp_path: Path, db_rows) -> None:
    """The summary request fires no hook in 0.19.0: it is recorded anyway, as task 'compression'."""
    from hermetry.testing.hermes import Gateway, long_history

    def route(req: Any) -> ScriptedReply | None:
        if not req.stream:  # Hermes' context-compression summary request
            return ScriptedReply(content="SUMMARY", usage=ScriptedUsage(50_000, 100, cached_tokens=2_000))
        return None

    script = [ScriptedReply(content="continued after compression", usage=ScriptedUsage(3000, 9, cached_tokens=1000))]
    with ScriptedServer(script, route=route) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url, config={
            "model": {"context_length": 64000}, "compression": {"in_place": False}})
        with Gateway(home) as gw:
            answer = gw.chat(long_history())
            assert answer["choices"][0]["message"]["content"] == "continued after compression"
        served = list(srv.served)
    assert sorted(s.source for s in served) == ["route", "script"]  # the summary and the continued turn

    db = home.telemetry_db
    sent = sent_usage(served)
    assert recorded_usage(db, db_rows) == sent
    assert imported_usage(home, tmp_path, db_rows) == sent
    calls = db_rows(db, "SELECT * FROM api_calls ORDER BY started_at_ms")
    assert sorted(c["task"] for c in calls) == ["compression", "main"]
    summary = next(c for c in calls if c["task"] == "compression")
    route_reply = next(s for s in served if s.source == "route")
    assert summary["input_tokens"] == route_reply.reply.usage.hermes_usage()["input_tokens"]
    assert summary["latency_ms"] is not None and summary["latency_ms"] > 0
    report = home.insights("--days", "1")
    by_task = report["api_calls"]["by_task"]
    assert (by_task["main"]["count"], by_task["compression"]["count"]) == (1, 1)
    assert by_task["compression"]["tokens"]["input_tokens"] == route_reply.reply.usage.hermes_usage()["input_tokens"]


def test_gateway_title_generation_is_recorded(tmp_path: Path, db_rows) -> None:
    """A gateway session's title call (Hermes' default) is billed like any other: it is recorded."""
    from hermetry.testing.hermes import Gateway

    def route(req: Any) -> ScriptedReply | None:
        if not req.stream:  # the title-generation request
            return ScriptedReply(content="A Title", usage=ScriptedUsage(180, 6))
        return None

    with ScriptedServer([ScriptedReply(content="hello there", usage=ScriptedUsage(900, 12, cached_tokens=300))],
                        route=route) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url,
                          config={"auxiliary": {"title_generation": {"enabled": True}}})
        with Gateway(home, api_server=False, webhook=True) as gw:
            gw.webhook("question", "req-1")
            _wait(lambda: len([s for s in srv.served if s.completed]) >= 2)
            _wait(lambda: bool(db_rows(home.telemetry_db, "SELECT 1 FROM api_calls WHERE task = 'title_generation'"))
                  if home.telemetry_db.exists() else False)
        served = list(srv.served)
    assert sorted(s.source for s in served) == ["route", "script"]
    db = home.telemetry_db
    sent = sent_usage(served)
    assert recorded_usage(db, db_rows) == sent
    assert imported_usage(home, tmp_path, db_rows) == sent
    tasks = sorted(c["task"] for c in db_rows(db, "SELECT task FROM api_calls"))
    assert tasks == ["main", "title_generation"]
    report = home.insights("--days", "1")
    assert report["api_calls"]["tokens"]["coverage"] == {"captured": 2, "of": 2}


def test_every_tool_call_the_model_asked_for_has_a_row(tmp_path: Path, db_rows) -> None:
    """A tool that does not exist (Hermes runs nothing, fires no hook) and a terminal command that
    exits 7 (Hermes says ok): each has a row whose status says what happened."""
    script = [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("no_such_tool", {"x": 1})], usage=ScriptedUsage(300, 9)),
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "exit 7"})],
                      usage=ScriptedUsage(400, 9)),
        ScriptedReply(content="It exited 7.", usage=ScriptedUsage(500, 5)),
    ]
    with ScriptedServer(script) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        result = home.oneshot("Run the tools")
        served = list(srv.served)
    assert result.returncode == 0, result.stderr
    assert [s.script_index for s in served] == [0, 1, 2]
    db = home.telemetry_db
    calls = db_rows(db, "SELECT api_request_id FROM api_calls ORDER BY started_at_ms")
    tools = db_rows(db, "SELECT * FROM tool_calls ORDER BY started_at_ms")
    assert [(t["tool_name"], t["status"], t["error_type"]) for t in tools] == [
        ("no_such_tool", "unknown_tool", "unknown_tool"),
        ("terminal", "error", "nonzero_exit"),
    ]
    assert tools[1]["error_message"] == "exit code 7" and tools[1]["toolset"] == "terminal"
    # each row belongs to the model call that asked for it
    assert [t["api_request_id"] for t in tools] == [calls[0]["api_request_id"], calls[1]["api_request_id"]]
    report = home.insights("--days", "1")
    assert report["tool_calls"]["by_status"] == {"error": 1, "unknown_tool": 1}
    assert report["tool_calls"]["failure_rate"]["value"] == 1.0
