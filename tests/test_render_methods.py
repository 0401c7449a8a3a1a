"""Every percentile says how it was computed: ``exact`` or ``≤1 % rel. err`` (approximate, from
the rollups' sketches) — once per table, in the text report (80 columns, piped), the
``/telemetry`` chat text and the one-screen summary, from the JSON's ``method`` and
``relative_error`` on each summary (docs/json.md), never guessed by the renderer."""

from __future__ import annotations

import copy
import io
import re
from typing import Any

import pytest
from rich.console import Console, RenderableType

from hermetry.analytics.report import Query, insights
from hermetry.surfaces.render import chat_text, report_renderable, summary_renderable
from hermetry.surfaces.text import percentile_method
from hermetry.testing.history import DAY_MS, NOW_MS, synthetic_history


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db = synthetic_history(seed=11, days=3, sessions_per_day=6).record(tmp_path_factory.mktemp("m") / "t.db")
    return insights(db, Query(since_ms=NOW_MS - 3 * DAY_MS, until_ms=NOW_MS, group_by=("day", "source", "tool")))


def summaries(node: Any) -> list[dict[str, Any]]:
    """Every percentile summary in a report (a dict with p50 and coverage)."""
    out = []
    if isinstance(node, dict):
        if "p50" in node and "coverage" in node:
            out.append(node)
        for v in node.values():
            out.extend(summaries(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(summaries(v))
    return out


def stated(report: dict[str, Any], method: str | None, *, only: str | None = None) -> dict[str, Any]:
    """A copy of the report whose summaries say ``method`` (None: say nothing, as before rollups)."""
    out = copy.deepcopy(report)
    for path, d in _paths(out):
        d.pop("method", None)
        d.pop("relative_error", None)
        if method is None:
            continue
        m = method if only is None or only in path else "exact"
        d["method"], d["relative_error"] = m, (0.01 if m == "approximate" else None)
    return out


def _paths(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        if "p50" in node and "coverage" in node:
            out.append((path, node))
        for k, v in node.items():
            out.extend(_paths(v, f"{path}.{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, f"{path}[{i}]"))
    return out


def text(renderable: RenderableType, width: int = 80) -> str:
    sink = io.StringIO()
    Console(file=sink, width=width, color_system=None).print(renderable)
    return sink.getvalue()


def titles(out: str, name: str) -> list[str]:
    """The titles of the tables called ``name`` (a table split to fit says so: not repeated)."""
    return [line for line in out.splitlines() if line.startswith(name) and not line.endswith("(continued)")]


def test_exact_percentiles_say_exact_once_per_table(report: dict[str, Any]) -> None:
    out = text(report_renderable(stated(report, "exact")))
    assert titles(out, "Latency") == ["Latency · percentiles exact"]
    assert titles(out, "Tools") == ["Tools · p50/p95 exact"]
    assert titles(out, "By source") == ["By source · percentiles exact"]
    assert "rel. err" not in out and "≈" not in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_approximate_percentiles_say_their_relative_error(report: dict[str, Any]) -> None:
    out = text(report_renderable(stated(report, "approximate")))
    assert titles(out, "Latency") == ["Latency · percentiles ≤1 % rel. err"]
    assert titles(out, "By tool") == ["By tool · percentiles ≤1 % rel. err"]
    assert "p95 ≤1 % rel. err" in out  # the per-day sparklines' p95 rows
    assert "percentiles exact" not in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_a_table_mixing_methods_marks_the_approximate_rows(report: dict[str, Any]) -> None:
    mixed = stated(report, "approximate", only="api_calls.latency_ms")
    out = text(report_renderable(mixed))
    assert titles(out, "Latency") == ["Latency · percentiles mixed: ≈ ≤1 % rel. err, others exact"]
    assert re.search(r"^API call ≈ ", out, re.M)
    assert re.search(r"^turn wall time  ", out, re.M)  # exact: no mark
    assert "≈ approximate percentile" in out  # the legend explains the mark


def test_no_label_when_the_report_does_not_say(report: dict[str, Any]) -> None:
    out = text(report_renderable(stated(report, None)))
    assert titles(out, "Latency") == ["Latency"]
    assert "percentiles" not in out.split("Latency", 1)[1].splitlines()[0]


@pytest.mark.parametrize("method,label", [("exact", "percentiles: exact"),
                                          ("approximate", "percentiles: ≤1 % rel. err")])
def test_chat_text_and_summary_say_it(report: dict[str, Any], method: str, label: str) -> None:
    r = stated(report, method)
    chat = chat_text(r)
    assert label in chat
    assert chat.index(label) < chat.index("turn time p50/p95")
    assert all(len(line) <= 48 for line in chat.splitlines())
    summary = " ".join(text(summary_renderable(r)).split())  # the legend line wraps like prose
    assert ("p95 exact" if method == "exact" else "p95 ≤1 % rel. err") in summary
    assert label not in chat_text(stated(report, None))


def test_the_real_report_is_labelled_as_its_json_says(report: dict[str, Any]) -> None:
    """Whatever insights() computed (exact here, or from rollups), the label is its JSON's."""
    api = report["api_calls"]
    method = percentile_method([report["turns"]["wall_ms"], api["latency_ms"], api["ttft_ms"],
                                report["tool_calls"]["latency_ms"], report["turns"]["queue_wait_ms"]])
    out = text(report_renderable(report))
    assert titles(out, "Latency") == [f"Latency · percentiles {method}" if method else "Latency"]
    if all("method" in d for d in summaries(report) if d["count"]):
        assert method in ("exact", "≤1 % rel. err")
