"""OpenTelemetry export: a real ``hermes -z`` run exported over OTLP/HTTP to a receiver in the test.

Every figure is checked against the truth the test injected (the scripted server's usage, the
script's tool call, the run's ids as recorded in the store) — never against hermetry's own mapping
of them. The receiver decodes with the official ``opentelemetry-proto`` messages.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hermetry.model.events import (
    ApiCall,
    SessionStarted,
    SubagentLinked,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.sinks import exporters_from_settings, genai
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome, free_port
from hermetry.testing.otlp import OTLPReceiver

TOOL_USAGE = ScriptedUsage(prompt_tokens=1234, completion_tokens=56, cached_tokens=200, cache_write_tokens=100,
                           reasoning_tokens=12)
FINAL_USAGE = ScriptedUsage(prompt_tokens=1400, completion_tokens=21, cached_tokens=1100)
PROMPT = "Run echo hermetry-secret-prompt and tell me what it printed"
ANSWER = "The command printed hermetry-secret-answer."
TOOL_COMMAND = "echo hermetry-secret-arg"


def _script() -> list[ScriptedReply]:
    return [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": TOOL_COMMAND})],
                      usage=TOOL_USAGE, first_chunk_delay_s=0.3, total_duration_s=0.5),
        ScriptedReply(content=ANSWER, usage=FINAL_USAGE, first_chunk_delay_s=0.1, total_duration_s=0.2),
    ]


def _otlp_env(home: HermesHome, endpoint: str, **extra: str) -> dict[str, str]:
    # a long SDK timeout: if hermetry's own exit bound did not hold, the run would take 30 s more
    return home.env(HERMETRY_OTLP="1", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="30",
                    OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test", **extra)


# -- the names are the spec's ----------------------------------------------------------------------

def test_names_are_the_semantic_conventions_constants() -> None:
    from opentelemetry.semconv._incubating.attributes import error_attributes as err
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g
    from opentelemetry.semconv._incubating.attributes import server_attributes as srv
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm

    assert genai.OPERATION_NAME == g.GEN_AI_OPERATION_NAME
    assert genai.PROVIDER_NAME == g.GEN_AI_PROVIDER_NAME
    assert genai.AGENT_NAME_ATTR == g.GEN_AI_AGENT_NAME
    assert genai.CONVERSATION_ID == g.GEN_AI_CONVERSATION_ID
    assert genai.REQUEST_MODEL == g.GEN_AI_REQUEST_MODEL
    assert genai.RESPONSE_MODEL == g.GEN_AI_RESPONSE_MODEL
    assert genai.RESPONSE_FINISH_REASONS == g.GEN_AI_RESPONSE_FINISH_REASONS
    assert genai.RESPONSE_TTFC == g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
    assert genai.USAGE_INPUT == g.GEN_AI_USAGE_INPUT_TOKENS
    assert genai.USAGE_OUTPUT == g.GEN_AI_USAGE_OUTPUT_TOKENS
    assert genai.USAGE_CACHE_READ == g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
    assert genai.USAGE_CACHE_CREATION == g.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
    assert genai.USAGE_REASONING == g.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
    assert genai.TOOL_NAME == g.GEN_AI_TOOL_NAME and genai.TOOL_CALL_ID == g.GEN_AI_TOOL_CALL_ID
    assert genai.TOOL_TYPE == g.GEN_AI_TOOL_TYPE and genai.TOKEN_TYPE == g.GEN_AI_TOKEN_TYPE
    assert genai.ERROR_TYPE == err.ERROR_TYPE
    assert (genai.SERVER_ADDRESS, genai.SERVER_PORT) == (srv.SERVER_ADDRESS, srv.SERVER_PORT)
    assert genai.OPERATION_DURATION.name == gm.GEN_AI_CLIENT_OPERATION_DURATION
    assert genai.TOKEN_USAGE.name == gm.GEN_AI_CLIENT_TOKEN_USAGE
    assert genai.TIME_TO_FIRST_CHUNK.name == gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK
    # v1.41.0's advisory boundaries, as printed in gen-ai-metrics.md of that release
    assert genai.OPERATION_DURATION.boundaries == tuple(0.01 * 2 ** i for i in range(14))
    assert genai.TIME_TO_FIRST_CHUNK.boundaries == genai.OPERATION_DURATION.boundaries
    assert genai.TOKEN_USAGE.boundaries == tuple(4 ** i for i in range(14))
    for content in genai.CONTENT_ATTRIBUTES:
        assert content.startswith("gen_ai.")


# -- the mapping (pure) ---------------------------------------------------------------------------

T0 = 1_750_000_000_000.0


def test_a_subagent_turn_joins_the_trace_of_the_turn_that_delegated_it() -> None:
    m = genai.GenAIMapper()
    spans, _ = m.map([
        SessionStarted("parent", T0, source="cli", model="m1", provider="anthropic"),
        TurnStarted("t1", "parent", T0 + 1),
        SubagentLinked("child", "parent", "t1", T0 + 2),
        SessionStarted("child", T0 + 2, source="subagent", parent_session_id="parent", parent_turn_id="t1"),
        TurnStarted("t2", "child", T0 + 3),
        ApiCall("r1", 0, "child", "t2", T0 + 4, 10.0, "ok", model="m1", provider="anthropic", input_tokens=5, cache_read_tokens=7,
                cache_write_tokens=None, output_tokens=3),
        TurnEnded("t2", "child", T0 + 20, "completed"),
        ToolCall("c1", "parent", "t1", "delegate_task", T0 + 2, 19.0, "error", error_type="Boom",
                 error_message="failed with key sk-abcdefghijklmnop"),
        TurnEnded("t1", "parent", T0 + 30, "errored"),
    ])
    by = {s.name + ":" + str(s.attributes.get(genai.H_TURN_ID)): s for s in spans}
    parent_turn, child_turn = by["invoke_agent hermes:t1"], by["invoke_agent hermes:t2"]
    chat, tool = by["chat m1:t2"], by["execute_tool delegate_task:t1"]
    assert len({s.trace_id for s in spans}) == 1
    assert parent_turn.parent_span_id is None
    assert child_turn.parent_span_id == parent_turn.span_id and chat.parent_span_id == child_turn.span_id
    assert tool.parent_span_id == parent_turn.span_id
    assert child_turn.attributes[genai.CONVERSATION_ID] == "parent"  # the root session
    assert chat.attributes[genai.USAGE_INPUT] == 12  # cache reads count as input in the convention
    assert chat.attributes[genai.PROVIDER_NAME] == "anthropic"
    assert tool.error is not None and "sk-abc" not in tool.error and tool.attributes[genai.ERROR_TYPE] == "Boom"
    assert parent_turn.error is not None and parent_turn.attributes[genai.ERROR_TYPE] == "errored"
    assert (child_turn.start_ns, child_turn.end_ns) == ((int(T0) + 3) * 1_000_000, (int(T0) + 20) * 1_000_000)
    # the same history maps to the same ids (a replay does not invent new traces)
    again, _ = genai.GenAIMapper().map([TurnStarted("t1", "parent", T0 + 1), TurnEnded("t1", "parent", T0 + 30,
                                                                                        "errored")])
    assert (again[0].trace_id, again[0].span_id) == (parent_turn.trace_id, parent_turn.span_id)


def test_cumulative_and_delta_aggregation() -> None:
    def point(v: float, at: int) -> genai.Measurement:
        return genai.Measurement(genai.OPERATION_DURATION, v, (("k", "v"),), at)

    cumulative = genai.Aggregator(cumulative=True)
    first = cumulative.add([point(0.01, 10), point(0.015, 20)])[0]
    second = cumulative.add([point(100.0, 30)])[0]
    assert (first.count, first.bucket_counts[:2]) == (2, [1, 1])  # (lower, upper] buckets: 0.01 is in the first
    assert (second.count, second.start_ns, second.time_ns, second.bucket_counts[-1]) == (3, 10, 30, 1)
    delta = genai.Aggregator(cumulative=False)
    delta.add([point(1.0, 10)])
    assert [(s.count, s.start_ns) for s in delta.add([point(2.0, 30)])] == [(1, 30)]
    bounded = genai.Aggregator(max_series=1)
    bounded.add([point(1.0, 1), genai.Measurement(genai.TURNS, 1, (), 2)])
    assert bounded.dropped == 1


# -- switching it on ------------------------------------------------------------------------------

def test_switches_env_wins_over_config() -> None:
    on = {"otlp": {"enabled": True}}
    assert len(exporters_from_settings(on, env={})) == 1
    assert exporters_from_settings(on, env={"HERMETRY_OTLP": "0"}) == []
    assert len(exporters_from_settings({}, env={"HERMETRY_OTLP": "1"})) == 1
    assert exporters_from_settings({}, env={}) == []


def test_enabled_without_the_extra_says_one_clear_line() -> None:
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from hermetry.sinks import exporters_from_settings\n"
            "print(exporters_from_settings({'otlp': {'enabled': True}}, env={}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'hermetry[otlp]'" in lines[0] and "Traceback" not in out.stderr


# -- a real Hermes run ----------------------------------------------------------------------------

def _run(tmp_path: Path, endpoint: str, *, via_config: bool = False) -> tuple[Any, HermesHome, float]:
    with ScriptedServer(_script()) as srv:
        config = {"hermetry": {"otlp": {"enabled": True}}} if via_config else None
        home = HermesHome(tmp_path / "home", srv.base_url, config=config)
        env = _otlp_env(home, endpoint)
        if via_config:
            del env["HERMETRY_OTLP"]  # switched on by config.yaml alone
        started = time.monotonic()
        result = home.oneshot(PROMPT, env=env)
        return result, home, time.monotonic() - started


@pytest.mark.hermes
def test_real_hermes_run_is_exported_with_the_genai_conventions(tmp_path: Path, db_rows: Any) -> None:
    with OTLPReceiver() as rx:
        result, home, _ = _run(tmp_path, rx.endpoint, via_config=True)
        assert result.returncode == 0, result.stderr
        assert ANSWER in result.stdout
        assert rx.wait_for(lambda r: any(s["name"] == "invoke_agent hermes" for s in r.spans())
                           and any(p["metric"] == "hermetry.sessions" for p in r.points()))
        spans, points = rx.spans(), rx.points()
        raw = b"".join(body for _, body in rx.requests)

    db = home.telemetry_db
    session = db_rows(db, "SELECT session_id FROM sessions")[0]["session_id"]
    turn = db_rows(db, "SELECT * FROM turns")[0]
    calls = db_rows(db, "SELECT * FROM api_calls ORDER BY started_at_ms")
    tool = db_rows(db, "SELECT * FROM tool_calls")[0]

    assert sorted(s["name"] for s in spans) == sorted(
        ["invoke_agent hermes", "chat scripted-model", "chat scripted-model", "execute_tool terminal"])
    root = next(s for s in spans if s["name"] == "invoke_agent hermes")
    chats = sorted((s for s in spans if s["name"].startswith("chat ")), key=lambda s: s["start_ns"])
    tool_span = next(s for s in spans if s["name"] == "execute_tool terminal")
    assert root["kind"] == "internal" and tool_span["kind"] == "internal"
    assert all(c["kind"] == "client" for c in chats)
    assert root["parent_span_id"] is None
    assert {s["trace_id"] for s in spans} == {root["trace_id"]}
    assert all(s["parent_span_id"] == root["span_id"] for s in [*chats, tool_span])
    assert root["resource"]["service.name"] == "hermes"
    assert root["resource"]["deployment.environment.name"] == "test"
    assert root["schema_url"] == "https://opentelemetry.io/schemas/1.41.0"

    a = root["attributes"]
    assert (a["gen_ai.operation.name"], a["gen_ai.agent.name"], a["gen_ai.conversation.id"]) == (
        "invoke_agent", "hermes", session)
    assert a["gen_ai.agent.version"] == "0.19.0" and a["gen_ai.provider.name"] == "custom"
    # times are the recorded ones (ms in the store → ns in OTLP)
    assert abs(root["start_ns"] - turn["started_at_ms"] * 1e6) < 1e3
    assert abs(root["end_ns"] - turn["ended_at_ms"] * 1e6) < 1e3
    assert a["gen_ai.usage.input_tokens"] == TOOL_USAGE.prompt_tokens + FINAL_USAGE.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == TOOL_USAGE.completion_tokens + FINAL_USAGE.completion_tokens

    for span, usage, finish, call in zip(chats, (TOOL_USAGE, FINAL_USAGE), ("tool_calls", "stop"), calls,
                                         strict=True):
        c = span["attributes"]
        assert c["gen_ai.operation.name"] == "chat" and c["gen_ai.provider.name"] == "custom"
        assert c["gen_ai.request.model"] == c["gen_ai.response.model"] == "scripted-model"
        # the convention's input count includes cached tokens: the whole prompt the server billed
        assert c["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert c["gen_ai.usage.cache_read.input_tokens"] == usage.cached_tokens
        assert c["gen_ai.usage.cache_creation.input_tokens"] == usage.cache_write_tokens
        assert c["gen_ai.usage.output_tokens"] == usage.completion_tokens
        assert c["gen_ai.usage.reasoning.output_tokens"] == usage.reasoning_tokens
        assert c["gen_ai.response.finish_reasons"] == (finish,)
        assert c["gen_ai.response.time_to_first_chunk"] == pytest.approx(call["ttft_ms"] / 1000)
        assert (c["server.address"], c["server.port"]) == ("127.0.0.1", int(home.base_url.split(":")[2].split("/")[0]))
        assert "error.type" not in c and span["status"] == "unset"
        assert abs(span["start_ns"] - call["started_at_ms"] * 1e6) < 1e3
    t = tool_span["attributes"]
    assert (t["gen_ai.operation.name"], t["gen_ai.tool.name"], t["gen_ai.tool.call.id"]) == (
        "execute_tool", "terminal", tool["tool_call_id"])

    # no content anywhere: not in attributes, not anywhere in the bytes the collector received
    for s in spans:
        assert not set(s["attributes"]) & set(genai.CONTENT_ATTRIBUTES)
    for secret in ("hermetry-secret-prompt", "hermetry-secret-answer", "hermetry-secret-arg"):
        assert secret.encode() not in raw

    def last(metric: str, **attrs: Any) -> dict[str, Any]:
        matching = [p for p in points if p["metric"] == metric
                    and all(p["attributes"].get(k) == v for k, v in attrs.items())]
        assert matching, (metric, attrs)
        return max(matching, key=lambda p: p["time_ns"])

    duration = last("gen_ai.client.operation.duration")
    assert duration["count"] == 2 and duration["unit"] == "s"
    assert duration["explicit_bounds"] == list(genai.GENAI_DURATION_BUCKETS_S)
    assert duration["sum"] == pytest.approx(sum(c["latency_ms"] for c in calls) / 1000)
    tokens_in = last("gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    tokens_out = last("gen_ai.client.token.usage", **{"gen_ai.token.type": "output"})
    assert tokens_in["sum"] == TOOL_USAGE.prompt_tokens + FINAL_USAGE.prompt_tokens and tokens_in["count"] == 2
    assert tokens_out["sum"] == TOOL_USAGE.completion_tokens + FINAL_USAGE.completion_tokens
    assert tokens_in["explicit_bounds"] == list(genai.GENAI_TOKEN_BUCKETS)
    assert last("gen_ai.client.operation.time_to_first_chunk")["count"] == 2
    assert last("hermetry.turns", **{"hermetry.turn.outcome": "completed"})["value"] == 1
    assert last("hermetry.sessions", **{"hermetry.session.outcome": "completed"})["value"] == 1
    assert last("hermetry.tool_calls", **{"gen_ai.tool.name": "terminal", "hermetry.tool.status": "ok"})["value"] == 1
    assert last("hermetry.api_calls", **{"hermetry.cost.status": "unknown"})["value"] == 2
    assert last("hermetry.turn.duration")["sum"] == pytest.approx(
        (turn["ended_at_ms"] - turn["started_at_ms"]) / 1000)
    # cumulative by default: every point starts at its series' first event, at the event's time
    assert all(p["temporality"] == 2 for p in points)  # AGGREGATION_TEMPORALITY_CUMULATIVE
    assert duration["time_ns"] == pytest.approx((calls[1]["started_at_ms"] + calls[1]["latency_ms"]) * 1e6, abs=1e3)


def _baseline(tmp_path: Path) -> float:
    with ScriptedServer(_script()) as srv:
        home = HermesHome(tmp_path / "base", srv.base_url)
        started = time.monotonic()
        result = home.oneshot(PROMPT)
        assert result.returncode == 0 and ANSWER in result.stdout
        return time.monotonic() - started


#: the exporter waits at most this long at exit (sinks/otlp.py FLUSH_TIMEOUT_S) — plus noise on a
#: shared 2-core machine. Without the bound, the run would take 30 s more (the SDK's timeout here).
EXIT_BOUND_S = 1.0
NOISE_S = 6.0


@pytest.mark.hermes
@pytest.mark.parametrize("collector", ["dead", "slow"])
def test_a_dead_or_slow_collector_changes_nothing_but_is_counted(tmp_path: Path, collector: str, db_rows: Any) -> None:
    baseline = _baseline(tmp_path)
    if collector == "dead":
        result, home, wall = _run(tmp_path, f"http://127.0.0.1:{free_port()}")
    else:
        with OTLPReceiver(mode="hang") as rx:
            result, home, wall = _run(tmp_path, rx.endpoint)
    assert result.returncode == 0
    assert ANSWER in result.stdout
    assert wall < baseline + EXIT_BOUND_S + NOISE_S, (wall, baseline)
    told = [line for line in result.stderr.splitlines() if "OpenTelemetry export" in line]
    assert len(told) == 1 and "dropped and counted" in told[0], result.stderr
    # the store has everything regardless
    assert len(db_rows(home.telemetry_db, "SELECT * FROM api_calls")) == 2
    assert db_rows(home.telemetry_db, "SELECT outcome FROM turns")[0]["outcome"] == "completed"
    # … and the exporter's drops are persisted with the run: every span of the run (1 turn, 2 model
    # calls, 1 tool call: the script's), and metric points
    (ledger,) = db_rows(home.telemetry_db, "SELECT * FROM exporter_runs")
    assert ledger["exporter"] == "otlp" and ledger["spans_dropped"] == 4, ledger
    assert ledger["points_dropped"] > 0 and ledger["last_error"]
    (run,) = db_rows(home.telemetry_db, "SELECT run_id FROM recorder_runs")
    assert run["run_id"] == ledger["run_id"]
    lost = ledger["events_dropped"] + ledger["spans_dropped"] + ledger["points_dropped"]
    from hermetry.analytics.metrics import metric_snapshot
    from hermetry.surfaces.doctor import diagnose

    (otlp,) = [x for x in metric_snapshot(home.telemetry_db).series
               if x.metric is genai.DROPPED and dict(x.attributes)[genai.H_SINK] == "otlp"]
    assert otlp.sum == lost
    (shown,) = diagnose(home.telemetry_db)["drops"]["exporters"]
    assert (shown["exporter"], shown["spans_dropped"], shown["runs_with_drops"]) == ("otlp", 4, 1)


def test_a_quiet_process_sends_its_cumulative_totals_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway with nothing to do still reports its totals every OTEL_METRIC_EXPORT_INTERVAL, so a
    backend behind the collector does not mark its series stale; the value stays what it was."""
    from hermetry.sinks.otlp import OTLPConfig, OTLPSink

    with OTLPReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
        sink = OTLPSink(OTLPConfig.from_env())
        try:
            sink.write([SessionStarted("s", T0, source="cli"), TurnStarted("t", "s", T0),
                        TurnEnded("t", "s", T0 + 1000, "completed")])
            assert rx.wait_for(lambda r: len([p for p in r.points() if p["metric"] == "hermetry.turns"]) >= 3)
        finally:
            sink.close()
        turns = [p for p in rx.points() if p["metric"] == "hermetry.turns"]
    assert {p["value"] for p in turns} == {1}
    assert turns[0]["time_ns"] == (int(T0) + 1000) * 1_000_000  # the event's time first, then "still 1 now"
    assert turns[-1]["time_ns"] > turns[0]["time_ns"] and {p["start_ns"] for p in turns} == {turns[0]["start_ns"]}


def test_what_a_failing_collector_missed_is_reported_when_it_is_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from hermetry.sinks.otlp import OTLPConfig, OTLPSink

    with OTLPReceiver(mode="hang") as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        sink = OTLPSink(OTLPConfig.from_env())
        try:
            sink.write([SessionStarted("s", T0, source="cli"), TurnStarted("t", "s", T0),
                        TurnEnded("t", "s", T0 + 1000, "completed")])
            assert not sink.flush(0.2)  # the collector does not answer: written off, counted
            missed = sink.undelivered
            assert missed >= 1
            rx.mode = "ok"
            deadline = time.monotonic() + 30
            while sink._delivery.inflight is not None:  # the hung request times out (1 s)
                assert time.monotonic() < deadline
                time.sleep(0.05)
            sink.write([TurnStarted("t2", "s", T0 + 2000), TurnEnded("t2", "s", T0 + 3000, "completed")])
            assert rx.wait_for(lambda r: any(p["metric"] == "hermetry.recorder.dropped" for p in r.points()))
        finally:
            sink.close()
        drops = [p for p in rx.points() if p["metric"] == "hermetry.recorder.dropped"]
    assert drops[-1]["attributes"] == {"hermetry.sink": "otlp"} and drops[-1]["value"] == missed


def test_an_exporters_drops_are_persisted_with_its_run_and_shown(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, against a closed port: what the recorder's own ledger says the OTLP exporter could
    not deliver is what the telemetry file keeps, what doctor shows and what metrics serve exports."""
    import os

    from hermetry.analytics.metrics import metric_snapshot
    from hermetry.recorder.recorder import Recorder
    from hermetry.sinks.otlp import sink_factory
    from hermetry.stores.sqlite import SQLiteStore
    from hermetry.testing.query import rows

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    db = tmp_path / "t.db"
    recorder = Recorder(lambda: SQLiteStore(db), exporters=[sink_factory()], register_atexit=False,
                        flush_interval_s=0.01)
    for e in [SessionStarted("s", T0, source="cli"), TurnStarted("t", "s", T0),
              ApiCall("r", 0, "s", "t", T0 + 1, 20.0, "ok", model="m", provider="openai", input_tokens=5,
                      output_tokens=1),
              TurnEnded("t", "s", T0 + 1000, "completed")]:
        recorder.record(e)
    recorder.flush_at_exit(5.0)
    (stats,) = recorder.stats().exporters
    recorder.close(1.0)
    assert stats.undelivered >= 2  # the turn's span and its call's, at least, were not delivered
    (ledger,) = rows(db, "SELECT * FROM exporter_runs")
    assert ledger["spans_dropped"] == 2  # the two spans the test's events make
    assert ledger["spans_dropped"] + ledger["points_dropped"] == stats.undelivered
    (otlp,) = [x for x in metric_snapshot(db).series
               if x.metric is genai.DROPPED and dict(x.attributes)[genai.H_SINK] == "otlp"]
    assert otlp.sum == stats.undelivered + stats.dropped
    out = subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(db), "doctor"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"})
    lines = out.stdout.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("export otlp"))
    assert f"{ledger['spans_dropped']:,} spans" in lines[at] and "in 1 of 1 runs; last: " in lines[at + 1], out.stdout
    assert len(lines[at]) <= 80 and len(lines[at + 1]) <= 80, out.stdout
