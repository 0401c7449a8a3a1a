"""What ``hermes insights`` shows, from hermetry's store — checked against what the test injected.

Live capture: a synthetic history (every event known) plus skill tool calls; each figure of
``insights()["activity"]`` is recomputed here from the events with Hermes' definitions
(agent/insights.py). Backfill: a state.db written with Hermes' own SessionDB, imported; the
message counts must be the ones written, and the auxiliary tokens the ones recorded. And the
units the text uses: durations, plurals, included, the legend.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hermetry.analytics.report import Query, insights
from hermetry.model.events import ApiCall, ToolCall
from hermetry.surfaces.render import report_renderable, session_renderable
from hermetry.surfaces.text import cost_short, duration, plural
from hermetry.testing.history import DAY_MS, NOW_MS, History, synthetic_history

ZONE = timezone(timedelta(hours=5, minutes=30))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, Path]:
    history = synthetic_history(seed=12, days=10, sessions_per_day=5)
    sessions = list(history.sessions().values())
    for n, s in enumerate(sessions[-6:]):  # skills: loads and edits, as Hermes' skill tools
        name = "skill_view" if n % 3 else "skill_manage"
        history.events.append(ToolCall(f"skill-{n}", s.session_id, None, name, s.started_at_ms + 1, 5.0, "ok",
                                       toolset="skills"))
    last = sessions[-1]  # an auxiliary model call (a compression summary), recorded live
    history.events.append(ApiCall("aux-1", 0, last.session_id, None, last.started_at_ms + 2, 900.0, "ok",
                                  model="m-alpha", provider="prov-a", input_tokens=5000, output_tokens=120,
                                  cache_read_tokens=0, cache_write_tokens=0, task="compression"))
    return history, history.record(tmp_path_factory.mktemp("act") / "t.db")


def test_live_figures_are_hermes_definitions_over_the_injected_events(live: tuple[History, Path]) -> None:
    history, db = live
    since, until = NOW_MS - 7 * DAY_MS, NOW_MS
    act = insights(db, Query(since_ms=since, until_ms=until), tz=ZONE)["activity"]

    starts = {sid: s for sid, s in history.sessions().items() if since <= s.started_at_ms < until}
    ends = history.session_ends()
    turns = Counter(t.session_id for t in history.turns() if t.session_id in starts)
    main_calls = [c for c in history.api_calls() if c.session_id in starts and c.task == "main"]
    ok_calls = Counter(c.session_id for c in main_calls if c.status == "ok")
    tools = Counter(c.session_id for c in history.tool_calls() if c.session_id in starts)
    messages = {sid: turns[sid] + ok_calls[sid] + tools[sid] for sid in starts}
    assert act["sessions"] == len(starts)
    assert act["messages"]["user"] == sum(turns.values())
    assert act["messages"]["total"] == sum(messages.values())
    assert act["messages"]["sessions_derived"] == len(starts) and act["messages"]["sessions_exact"] == 0
    durations = {sid: ends[sid].ended_at_ms - s.started_at_ms for sid, s in starts.items()
                 if sid in ends and ends[sid].ended_at_ms > s.started_at_ms}
    assert act["active_time_ms"] == pytest.approx(sum(durations.values()))
    assert act["avg_session_ms"] == pytest.approx(sum(durations.values()) / len(durations))

    local = {sid: datetime.fromtimestamp(s.started_at_ms / 1000, tz=UTC).astimezone(ZONE) for sid, s in starts.items()}
    weekday = Counter(d.weekday() for d in local.values())
    hour = Counter(d.hour for d in local.values())
    assert [d["sessions"] for d in act["by_weekday"]] == [weekday.get(i, 0) for i in range(7)]
    assert [h["sessions"] for h in act["by_hour"]] == [hour.get(i, 0) for i in range(24)]
    days = sorted({d.date() for d in local.values()})
    assert act["active_days"] == len(days)
    best = run = 1
    for a, b in zip(days, days[1:], strict=False):
        run = run + 1 if (b - a).days == 1 else 1
        best = max(best, run)
    assert act["longest_streak_days"] == best
    assert act["timezone"]["utc_offset_minutes"] == 330

    def top(values: dict[str, float]) -> str:
        return max(values, key=lambda sid: (values[sid], starts[sid].started_at_ms))

    io_tokens = Counter()
    for c in main_calls:  # Hermes' "most tokens": the agent loop's input + output
        io_tokens[c.session_id] += (c.input_tokens or 0) + (c.output_tokens or 0)
    notable = act["notable_sessions"]
    assert notable["longest"]["session_id"] == top(durations)
    assert notable["most_messages"]["session_id"] == top(messages)
    assert notable["most_tokens"] == {"session_id": top(io_tokens), "tokens": io_tokens[top(io_tokens)],
                                      "started_at": notable["most_tokens"]["started_at"]}
    assert notable["most_tool_calls"]["session_id"] == top(tools)

    by_tool = Counter(c.tool_name for c in history.tool_calls() if c.session_id in starts)
    shares = {t["tool_name"]: t["share"] for t in act["tools"]}
    assert shares == pytest.approx({k: v / sum(by_tool.values()) for k, v in by_tool.items()})
    assert act["skills"]["loads"] == by_tool["skill_view"] and act["skills"]["edits"] == by_tool["skill_manage"]
    assert act["skills"]["loads"] + act["skills"]["edits"] > 0
    assert act["skills"]["distinct_skills"] is None and act["skills"]["distinct_skills_not_captured"]
    total = sum((c.input_tokens or 0) + (c.output_tokens or 0) + (c.cache_read_tokens or 0)
                + (c.cache_write_tokens or 0) for c in history.api_calls() if c.session_id in starts)
    assert act["tokens_vs_hermes"] == {**act["tokens_vs_hermes"], "total_tokens": total, "auxiliary_tokens": 5120,
                                       "main_loop_tokens": total - 5120}


def test_the_text_report_shows_them(live: tuple[History, Path]) -> None:
    _, db = live
    report = insights(db, Query(since_ms=NOW_MS - 7 * DAY_MS, until_ms=NOW_MS), tz=UTC)
    sink = io.StringIO()
    Console(file=sink, width=100, color_system=None).print(report_renderable(report, tz=UTC))
    text = sink.getvalue()
    act = report["activity"]
    for expected in (f"{act['messages']['total']:,}", duration(act["active_time_ms"]), "Sessions by weekday and hour",
                     "Notable sessions", plural(act["skills"]["loads"], "load"), "tokens vs Hermes",
                     act["notable_sessions"]["longest"]["session_id"]):
        assert expected in text, expected


def test_backfill_messages_are_hermes_own_counts_and_auxiliary_tokens_are_named(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hh"))
    (tmp_path / "hh").mkdir()
    from hermes_state import SessionDB

    from hermetry.plugin import import_history

    db = SessionDB(tmp_path / "hh" / "state.db")
    db.create_session("s1", "telegram", model="m1")
    written = 0
    for k in range(3):
        db.append_message("s1", "user", f"q{k}")
        db.append_message("s1", "assistant", "a")
        written += 2
    db.update_token_counts("s1", input_tokens=900, output_tokens=100, model="m1", api_call_count=3)
    db.record_auxiliary_usage("s1", "title_generation", model="m2", input_tokens=40, output_tokens=2)
    db.end_session("s1", "idle")
    db.close()
    store = tmp_path / "t.db"
    import_history(tmp_path / "hh", store)
    act = insights(store, Query(since_ms=0, until_ms=4e12))["activity"]
    assert act["messages"] == {**act["messages"], "total": written, "user": 3, "sessions_exact": 1,
                               "sessions_derived": 0}
    assert act["tokens_vs_hermes"]["auxiliary_tokens"] == 42
    assert act["tokens_vs_hermes"]["main_loop_tokens"] == 1000


@pytest.mark.parametrize(("ms", "text"), [(812, "812 ms"), (1530, "1.53 s"), (12_400, "12.4 s"),
                                          (270_000, "4.5 min"), (8_280_000, "2.3 h"), (272_160_000, "3.1 d"),
                                          (None, "—")])
def test_durations_read_as_a_person_reads_them(ms: float | None, text: str) -> None:
    assert duration(ms) == text


def test_plurals_and_included() -> None:
    assert plural(1, "call") == "1 call" and plural(2, "call") == "2 calls" and plural(1204, "session") == "1,204 sessions"
    assert plural(1, "day") == "1 day" and plural(3, "entry") == "3 entries"
    paid_by_subscription: dict[str, Any] = {"known_usd": None, "calls": {"included": 3, "unknown": 0}}
    assert cost_short(paid_by_subscription) == "included"
    partly: dict[str, Any] = {"known_usd": 0.25, "calls": {"included": 0, "unknown": 2}}
    assert cost_short(partly) == "$0.25 +?"


def test_a_long_session_lists_every_turn_and_draws_the_slowest(tmp_path: Path) -> None:
    from hermetry.model.events import ApiCall, SessionStarted, TurnEnded, TurnStarted
    from hermetry.testing.history import History as H

    events: list[Any] = [SessionStarted(session_id="long", started_at_ms=NOW_MS - DAY_MS, source="telegram",
                                        session_type="gateway", model="m", provider="p")]
    t = NOW_MS - DAY_MS
    for k in range(30):
        wall = 1000 + 37 * k
        events += [TurnStarted(f"t{k}", "long", t),
                   ApiCall(f"r{k}", 0, "long", f"t{k}", t + 5, wall - 10, "ok", model="m", provider="p"),
                   TurnEnded(f"t{k}", "long", t + wall, "completed")]
        t += wall + 500
    db = H(NOW_MS, events).record(tmp_path / "t.db")
    from hermetry.analytics.sessions import session_detail

    detail = session_detail(db, "long")
    sink = io.StringIO()
    Console(file=sink, width=80, color_system=None).print(session_renderable(detail))
    text = sink.getvalue()
    for turn in detail["turns"]:
        assert duration(turn["waterfall"]["wall_ms"]) in text
    drawn = [int(line.split()[1]) for line in text.splitlines() if line.startswith("Turn ") and "·" in line]
    assert drawn == [26, 27, 28, 29, 30]  # the five slowest, in order
    sink = io.StringIO()
    Console(file=sink, width=80, color_system=None).print(session_renderable(detail, all_turns=True))
    assert sum(1 for line in sink.getvalue().splitlines() if line.startswith("Turn ") and "·" in line) == 30
