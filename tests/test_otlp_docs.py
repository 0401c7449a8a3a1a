"""docs/opentelemetry.md, docs/prometheus.md and docs/grafana.md show real output: the fragments
between ``<!-- generated:NAME -->`` and ``<!-- /generated -->`` are produced here, by the real
exporter, receiver, collector and dashboard file — and this test fails when a doc drifts.
``HERMETRY_UPDATE_DOCS=1 pytest tests/test_otlp_docs.py`` rewrites them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from hermetry.model import events as ev
from hermetry.sinks import genai
from hermetry.sinks.otlp import OTLPConfig, OTLPSink
from hermetry.surfaces.metrics import GRAFANA_DASHBOARD, exposition
from hermetry.testing.otlp import OTLPReceiver

DOCS = Path(__file__).resolve().parent.parent / "docs"
T0 = 1_767_225_600_000.0  # 2026-01-01T00:00:00Z


def example_events() -> list[ev.Event]:
    """One turn of a CLI session: a model call that asks for a tool, the tool, the final call."""
    usage = {"input_tokens": 934, "cache_read_tokens": 200, "cache_write_tokens": 100, "output_tokens": 56,
             "reasoning_tokens": 12}
    return [
        ev.SessionStarted("20260101_000000_ab12cd", T0, source="cli", session_type="oneshot", model="claude-sonnet-4",
                          provider="anthropic", runtime_version="hermes-agent 0.19.0"),
        ev.TurnStarted("turn-1", "20260101_000000_ab12cd", T0 + 5),
        ev.ApiCall("req-1", 0, "20260101_000000_ab12cd", "turn-1", T0 + 10, 1500.0, "ok", model="claude-sonnet-4",
                   provider="anthropic", base_url="https://api.anthropic.com/v1", response_model="claude-sonnet-4",
                   ttft_ms=420.0, streamed=True, finish_reason="tool_calls", cost_usd=0.004_116,
                   cost_status="estimated", cost_source="genai-prices", **usage),
        ev.ToolCall("call-1", "20260101_000000_ab12cd", "turn-1", "terminal", T0 + 1520, 830.0, "ok",
                    toolset="terminal", api_request_id="req-1"),
        ev.ApiCall("req-2", 0, "20260101_000000_ab12cd", "turn-1", T0 + 2360, 640.0, "ok", model="claude-sonnet-4",
                   provider="anthropic", base_url="https://api.anthropic.com/v1", response_model="claude-sonnet-4",
                   ttft_ms=180.0, streamed=True, finish_reason="stop", input_tokens=300, cache_read_tokens=1100,
                   cache_write_tokens=0, output_tokens=21, reasoning_tokens=0, cost_usd=0.001_545,
                   cost_status="estimated", cost_source="genai-prices"),
        ev.TurnEnded("turn-1", "20260101_000000_ab12cd", T0 + 3010, "completed"),
        ev.SessionEnded("20260101_000000_ab12cd", T0 + 3050, "agent_close", "completed"),
    ]


def _fields_table() -> str:
    lines = ["| event | field | OpenTelemetry | note |", "|---|---|---|---|"]
    lines += [f"| {e} | `{f}` | {o} | {n} |" for e, f, o, n in genai.FIELD_MAP]
    return "\n".join(lines)


def _metrics_table() -> str:
    lines = ["| OpenTelemetry | kind | unit | Prometheus | buckets |", "|---|---|---|---|---|"]
    for m in genai.METRICS:
        buckets = ", ".join(f"{b:g}" for b in m.boundaries) if m.boundaries else ""
        lines.append(f"| `{m.name}` | {m.kind} | `{m.unit}` | `{genai.prometheus_name(m)}` | {buckets} |")
    return "\n".join(lines)


def _example_spans() -> str:
    with OTLPReceiver() as rx:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = rx.endpoint  # the test restores it
        sink = OTLPSink(OTLPConfig(flush_timeout_s=10.0))
        sink.write(example_events())
        assert sink.flush(10.0)
        sink.close()
        spans = sorted(rx.spans(), key=lambda s: (s["start_ns"], s["name"]))
    out = []
    for s in spans:
        out.append(json.dumps({"name": s["name"], "kind": s["kind"], "trace_id": s["trace_id"], "span_id": s["span_id"],
                               "parent_span_id": s["parent_span_id"], "start_ns": s["start_ns"], "end_ns": s["end_ns"],
                               "status": s["status"], "attributes": s["attributes"]}, indent=1, sort_keys=False))
    return "```json\n" + "\n".join(out) + "\n```"


def _exposition(tmp: Path) -> str:
    from hermetry.testing.history import History

    db = History(now_ms=T0, events=example_events()).record(tmp / "example.db")
    keep = ("hermetry_turns{", "hermetry_sessions{", "hermetry_cost_USD_total", "hermetry_tokens_total",
            "gen_ai_client_operation_duration_seconds_count", "gen_ai_client_operation_duration_seconds_sum",
            "gen_ai_client_operation_duration_seconds_bucket{", "hermetry_recorder_dropped_total",
            "hermetry_store_up")
    lines = [line for line in exposition(db).splitlines()
             if line.startswith(keep) and ('le="' not in line or re.search(r'le="(0\.64|1\.28|2\.56|\+Inf)"', line))]
    return "```\n$ hermetry metrics show   # excerpt\n" + "\n".join(lines) + "\n```"


def _panels() -> str:
    dash = json.loads(GRAFANA_DASHBOARD.read_text())
    lines = ["| panel | PromQL |", "|---|---|"]
    for p in dash["panels"]:
        for t in p["targets"]:
            expr = t["expr"].replace("|", "\\|")  # a bare | would split the table's cell (GFM: \| in code)
            lines.append(f"| {p['title']} | `{expr}` |")
    return "\n".join(lines)


def fragments(tmp: Path) -> dict[str, dict[str, str]]:
    return {
        "opentelemetry.md": {"fields": _fields_table(), "metrics": _metrics_table(), "spans": _example_spans()},
        "prometheus.md": {"metrics": _metrics_table(), "exposition": _exposition(tmp)},
        "grafana.md": {"panels": _panels()},
    }


def test_the_field_table_covers_every_canonical_field() -> None:
    covered = {(e, f) for e, f, _, _ in genai.FIELD_MAP}
    for cls in (ev.SessionStarted, ev.SessionEnded, ev.SessionReopened, ev.TurnStarted, ev.TurnEnded, ev.ApiCall,
                ev.ToolCall, ev.SubagentLinked):
        for f in dataclasses.fields(cls):
            assert (cls.__name__, f.name) in covered, f"docs/opentelemetry.md: {cls.__name__}.{f.name} is not mapped"


def test_docs_show_the_real_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "unset")
    update = os.environ.get("HERMETRY_UPDATE_DOCS") == "1"
    stale = []
    for doc, parts in fragments(tmp_path).items():
        path = DOCS / doc
        text = path.read_text()
        for name, body in parts.items():
            pattern = re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(<!-- /generated -->)", re.S)
            assert pattern.search(text), f"{doc}: no <!-- generated:{name} --> block"
            new = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(3), text)
            if new != text:
                stale.append(f"{doc}:{name}")
                text = new
        if update:
            path.write_text(text)
    assert update or not stale, f"regenerate with HERMETRY_UPDATE_DOCS=1: {stale}"
