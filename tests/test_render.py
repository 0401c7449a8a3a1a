"""Every report, at every width, never cuts a value: 60, 80, 120 and 200 columns and plain output.

Each report (insights, compare, sessions, show, the /telemetry chat text, import / reprice /
reconcile) is rendered from a small and a large synthetic history (and an empty one). A render
fails when rich cut something (``…``), a line is wider than the width, or a value the library
returned — a session id, a count, a percentile, a cost — is missing from the text.
"""

from __future__ import annotations

import io
import re
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from hermetry.analytics.compare import compare
from hermetry.analytics.report import Query, insights
from hermetry.analytics.sessions import list_sessions, session_detail
from hermetry.surfaces import cli
from hermetry.surfaces.render import (
    PLAIN_WIDTH,
    chat_text,
    compare_renderable,
    report_renderable,
    session_renderable,
    sessions_renderable,
    summary_renderable,
)
from hermetry.surfaces.text import cost_short, count, duration, plural, rate_short
from hermetry.testing.history import DAY_MS, NOW_MS, synthetic_history

WIDTHS = (60, 80, 120, 200)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_history(seed=5, days=3, sessions_per_day=4).record(tmp_path_factory.mktemp("small") / "t.db")


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_history(seed=6, days=90, sessions_per_day=10).record(tmp_path_factory.mktemp("large") / "t.db")


@pytest.fixture(params=["small", "large"])
def history(request: pytest.FixtureRequest) -> tuple[Path, float]:
    days = 3 if request.param == "small" else 90
    return request.getfixturevalue(request.param), days


def render(renderable: RenderableType, width: int) -> str:
    sink = io.StringIO()
    Console(file=sink, width=width, color_system=None).print(renderable)
    return sink.getvalue()


def check(text: str, width: int, expected: list[str]) -> None:
    assert "…" not in text, "a value was cut"
    for line in text.splitlines():
        assert len(line) <= width, f"wider than {width}: {line!r}"
    flat = re.sub(r"\s+", " ", text)
    missing = [e for e in expected if e not in text and e not in flat]
    assert not missing, f"missing at {width} columns: {missing}"


def report_values(report: dict[str, Any]) -> list[str]:
    """What a reader must find: totals, percentiles, every breakdown row's figures and cost."""
    turns, api = report["turns"], report["api_calls"]
    out = [f"{api['tokens']['total_tokens']:,}", f"{api['tokens']['input_tokens']:,}",
           duration(turns["wall_ms"]["p95"]), duration(api["latency_ms"]["p99"]), duration(api["ttft_ms"]["p50"]),
           plural(report["coverage"]["turns"], "turn"), plural(report["coverage"]["api_calls"], "API call")]
    for outcome, n in turns["by_outcome"].items():
        out += [outcome, f"{n:,}"]
    for dim, rows in report["breakdowns"].items():
        for row in rows:
            if row["turns"] is None:
                continue
            out += [str(row[dim]), rate_short(row["turns"]["completion_rate"]), duration(row["turns"]["wall_ms"]["p95"]),
                    f"{row['api_calls']['tokens']['total_tokens']:,}", cost_short(row["api_calls"]["cost"])]
    for tool in report["tools"]:
        out += [tool["tool_name"], rate_short(tool["failure_rate"]), duration(tool["latency_ms"]["p95"])]
    act = report["activity"]
    out += [f"{act['messages']['total']:,}", f"{act['messages']['user']:,}", duration(act["active_time_ms"]),
            duration(act["avg_session_ms"]), plural(act["longest_streak_days"], "day")]
    for v in act["notable_sessions"].values():
        if v:
            out.append(v["session_id"])
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_insights_at_every_width(history: tuple[Path, float], width: int) -> None:
    db, days = history
    report = insights(db, Query(since_ms=NOW_MS - days * DAY_MS, until_ms=NOW_MS,
                                group_by=("source", "model", "day")), tz=UTC)
    text = render(report_renderable(report, tz=UTC), width)
    check(text, width, report_values(report) + [report["daily"][-1]["day"], "Legend:"])


@pytest.mark.parametrize("width", WIDTHS)
def test_the_four_questions_at_every_width(history: tuple[Path, float], width: int) -> None:
    db, days = history
    report = insights(db, Query(since_ms=NOW_MS - days * DAY_MS, until_ms=NOW_MS), tz=UTC)
    text = render(summary_renderable(report, tz=UTC), width)
    values = [duration(report["turns"]["wall_ms"]["p95"]), f"{report['api_calls']['tokens']['total_tokens']:,}"]
    for dim in ("source", "model"):
        values += [str(r[dim]) for r in report["breakdowns"][dim]]
        values += [cost_short(r["api_calls"]["cost"]) for r in report["breakdowns"][dim]]
    check(text, width, values)


def test_the_four_questions_fit_one_screen(small: Path) -> None:
    report = insights(small, Query(since_ms=NOW_MS - 3 * DAY_MS, until_ms=NOW_MS), tz=UTC)
    text = render(summary_renderable(report, tz=UTC), 80)
    assert len(text.rstrip("\n").splitlines()) <= 24, text


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_at_every_width(history: tuple[Path, float], width: int) -> None:
    db, days = history
    half = days / 2 * DAY_MS
    result = compare(db, Query(since_ms=NOW_MS - 2 * half, until_ms=NOW_MS - half, group_by=()),
                     Query(since_ms=NOW_MS - half, until_ms=NOW_MS, group_by=()))
    text = render(compare_renderable(result, tz=UTC), width)
    values = []
    for m in result["metrics"]:
        values += [m["metric"], m["verdict"]]
        if m["unit"] == "ms":
            values += [duration(m["baseline"]), duration(m["current"])]
    check(text, width, values)


@pytest.mark.parametrize("width", WIDTHS)
def test_sessions_at_every_width(history: tuple[Path, float], width: int) -> None:
    db, days = history
    result = list_sessions(db, NOW_MS - days * DAY_MS, NOW_MS, limit=200)
    text = render(sessions_renderable(result, tz=UTC), width)
    values = []
    for s in result["sessions"]:
        values += [s["session_id"], count(s["tokens"]["total_tokens"]), cost_short(s["cost"]), duration(s["duration_ms"])]
    check(text, width, values + ["UTC"])


@pytest.mark.parametrize("width", WIDTHS)
def test_show_at_every_width(history: tuple[Path, float], width: int) -> None:
    db, days = history
    listed = list_sessions(db, NOW_MS - days * DAY_MS, NOW_MS, limit=10_000, roll_up=False)
    biggest = max(listed["sessions"], key=lambda s: (s["api_calls"] + s["tool_calls"], s["session_id"]))
    detail = session_detail(db, biggest["session_id"])
    text = render(session_renderable(detail, tz=UTC), width)
    values = [detail["session"]["session_id"], count(detail["totals"]["tokens"]["total_tokens"])]
    for turn in detail["turns"]:
        values.append(f"Turn {turn['index']}")
        for c in turn["api_calls"]:
            values.append(duration(c["latency_ms"]))
            if c["status"] != "ok" and c.get("error_type"):
                values.append(c["error_type"])
        for c in turn["tool_calls"]:
            values += [f"tool {c['tool_name']}", duration(c["latency_ms"])]
    check(text, width, values)


@pytest.mark.parametrize("width", WIDTHS)
def test_chat_text_at_every_width(history: tuple[Path, float], width: int) -> None:
    db, days = history
    report = insights(db, Query(since_ms=NOW_MS - days * DAY_MS, until_ms=NOW_MS, group_by=("source",)))
    text = chat_text(report, width=width)
    turns = report["turns"]
    values = [f"{report['api_calls']['tokens']['total_tokens']:,}", duration(turns["wall_ms"]["p95"])]
    for row in report["breakdowns"]["source"]:
        values += [f"{row['source']}:", plural(row["turns"]["count"], "turn")]
    check(text, width, values)


def test_empty_history_says_how_to_start(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    report = insights(missing, Query.last_days(7))
    for text in (render(report_renderable(report), 80), chat_text(report),
                 render(sessions_renderable(list_sessions(missing, 0, NOW_MS)), 80)):
        assert "hermes plugins enable hermetry --no-allow-tool-override" in re.sub(r"\s+", " ", text)
        assert "hermetry import" in text


# -- through the CLI: plain output (not a terminal) ----------------------------------------------

@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(cli, "_now_ms", lambda: NOW_MS)


@pytest.mark.parametrize("argv", [
    ("insights", "--days", "90", "--by", "day", "--by", "source"),
    ("sessions", "--days", "90", "--limit", "50"),
    ("compare", "--days", "30"),
    ("reconcile",),
    ("reprice",),
])
def test_plain_output_uses_a_sane_width_and_cuts_nothing(large: Path, capsys: pytest.CaptureFixture[str],
                                                         plain: None, argv: tuple[str, ...]) -> None:
    code = cli.main(["--db", str(large), *argv, "--utc"] if argv[0] in ("insights", "sessions", "compare")
                    else ["--db", str(large), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "\x1b[" not in out, "colour codes in plain output"
    check(out, PLAIN_WIDTH, [])
    assert "{" not in out, "a Python structure printed for a person"


def test_utc_and_local_times_name_their_zone(small: Path, capsys: pytest.CaptureFixture[str], plain: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        cli.main(["--db", str(small), "sessions", "--days", "3"])
        local, _ = capsys.readouterr()
        cli.main(["--db", str(small), "sessions", "--days", "3", "--utc"])
        utc, _ = capsys.readouterr()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert "IST" in local and "UTC" in utc
    first = list_sessions(small, NOW_MS - 3 * DAY_MS, NOW_MS)["sessions"][0]
    assert first["started_at"][11:16] in utc  # UTC wall clock


@pytest.mark.parametrize("width", WIDTHS)
def test_import_output_at_every_width(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hh"))
    monkeypatch.setenv("COLUMNS", str(width))
    (tmp_path / "hh").mkdir()
    from hermes_state import SessionDB

    db = SessionDB(tmp_path / "hh" / "state.db")
    for n in range(3):
        db.create_session(f"s{n}", "cli", model="m")
        db.append_message(f"s{n}", "user", "q")
        db.append_message(f"s{n}", "assistant", "a")
        db.update_token_counts(f"s{n}", input_tokens=10, output_tokens=2, model="m", api_call_count=1)
    db.close()
    code = cli.main(["--db", str(tmp_path / "t.db"), "import", "--hermes-home", str(tmp_path / "hh")])
    out, err = capsys.readouterr()
    assert code == 0, err
    check(out, width, ["3 sessions: 3 new", plural(3, "turn"), plural(3, "token row")])
