"""OTLP over gRPC, exercised: a real ``hermes -z`` with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` exports to
a real gRPC OTLP receiver (``grpcio`` + ``opentelemetry-proto``'s collector service stubs, on
loopback) — the same spans and metrics as over HTTP, checked against the script's injected truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hermetry.testing import ScriptedServer
from hermetry.testing.hermes import HermesHome
from hermetry.testing.otlp import OTLPReceiver
from test_otlp import ANSWER, FINAL_USAGE, PROMPT, TOOL_USAGE, _otlp_env, _script

# (no importorskip: grpcio comes with the dev extra; a missing one fails here, it never skips)


@pytest.mark.hermes
def test_a_real_hermes_run_is_exported_over_grpc(tmp_path: Path, db_rows: Any) -> None:
    with OTLPReceiver(protocol="grpc") as rx, ScriptedServer(_script()) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        result = home.oneshot(PROMPT, env=_otlp_env(home, rx.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc"))
        assert result.returncode == 0, result.stderr
        assert ANSWER in result.stdout
        assert rx.wait_for(lambda r: any(s["name"] == "invoke_agent hermes" for s in r.spans())
                           and any(p["metric"] == "hermetry.sessions" for p in r.points()))
        spans, points = rx.spans(), rx.points()
    assert "OpenTelemetry export" not in result.stderr  # nothing failed, nothing dropped
    assert {path for path, _ in rx.requests} == {"/v1/traces", "/v1/metrics"}  # both signals, over gRPC
    assert sorted(s["name"] for s in spans) == sorted(
        ["invoke_agent hermes", "chat scripted-model", "chat scripted-model", "execute_tool terminal"])
    root = next(s for s in spans if s["name"] == "invoke_agent hermes")
    assert all(s["parent_span_id"] == root["span_id"] for s in spans if s is not root)
    session = db_rows(home.telemetry_db, "SELECT session_id FROM sessions")[0]["session_id"]
    assert root["attributes"]["gen_ai.conversation.id"] == session
    chats = sorted((s for s in spans if s["name"].startswith("chat ")), key=lambda s: s["start_ns"])
    for span, usage in zip(chats, (TOOL_USAGE, FINAL_USAGE), strict=True):
        assert span["attributes"]["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert span["attributes"]["gen_ai.usage.output_tokens"] == usage.completion_tokens
    tokens = [p for p in points if p["metric"] == "gen_ai.client.token.usage"
              and p["attributes"].get("gen_ai.token.type") == "input"]
    assert max(p["sum"] for p in tokens) == TOOL_USAGE.prompt_tokens + FINAL_USAGE.prompt_tokens
    sessions = [p for p in points if p["metric"] == "hermetry.sessions"]
    assert sessions[-1]["value"] == 1 and sessions[-1]["monotonic"] is False  # an up-down counter
