"""Rollups (stores/rollups.py): what they hold equals the injected history; every write path marks
what it changes, and reads are right whether or not a rebuild ran."""

from __future__ import annotations

import math
import sqlite3
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.stats import percentile
from hermetry.model.events import ApiCall, SessionStarted, ToolCall, TurnEnded, TurnStarted
from hermetry.model.sketch import ALPHA
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.stores import rollups as R
from hermetry.stores.sqlite import connect, migrate, write_events
from hermetry.stores.sqlite_util import transaction
from hermetry.testing.history import NOW_MS, History, synthetic_history

WHOLE = (NOW_MS - 14 * DAY_MS, NOW_MS)
AFTER = NOW_MS + 2 * HOUR_MS  # a "now" at which every hour of the history is closed


@pytest.fixture()
def recorded(tmp_path: Path) -> tuple[History, sqlite3.Connection]:
    history = synthetic_history(seed=5, days=14, sessions_per_day=6)
    db = history.record(tmp_path / "telemetry.db")
    conn = connect(db)
    migrate(conn)
    return history, conn


def _within(approx: float | None, exact: float | None) -> bool:
    assert approx is not None and exact is not None
    return abs(approx - exact) <= ALPHA * abs(exact) * (1 + 1e-9) + 1e-9


def _check_quantiles(sketch: R.Sketch | None, values: list[float]) -> None:
    values = sorted(values)
    if not values:
        assert sketch is None or sketch.count == 0
        return
    assert sketch is not None and sketch.count == len(values)
    assert sketch.max == values[-1] and sketch.min == values[0]
    for q in (50, 95, 99):
        assert _within(sketch.quantile(q / 100), percentile(values, q)), q


def _truth_api(history: History, since: float, until: float) -> dict[str, dict[str, Any]]:
    """Per status, from the injected events: calls, tokens, priced calls and cost, latencies."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"calls": 0, "input_tokens": 0, "output_tokens": 0,
                                                         "cost_calls": 0, "cost": [], "latency": [], "ttft": []})
    for c in history.api_calls():
        if not since <= c.started_at_ms < until:
            continue
        t = out[c.status]
        t["calls"] += 1
        t["input_tokens"] += c.input_tokens or 0
        t["output_tokens"] += c.output_tokens or 0
        if c.cost_usd is not None:
            t["cost_calls"] += 1
            t["cost"].append(c.cost_usd)
        if c.status in ("ok", "error") and c.latency_ms is not None:
            t["latency"].append(c.latency_ms)
        if c.status == "ok" and c.ttft_ms is not None:
            t["ttft"].append(c.ttft_ms)
    return out


def _check_api(groups: dict[tuple[Any, ...], R.Group], history: History, since: float, until: float) -> None:
    truth = _truth_api(history, since, until)
    assert {k[0] for k in groups} == set(truth)
    for (status,), g in groups.items():
        t = truth[status]
        assert g.counts["calls"] == t["calls"]
        assert g.counts["input_tokens"] == t["input_tokens"] and g.counts["output_tokens"] == t["output_tokens"]
        assert g.counts["cost_calls"] == t["cost_calls"]
        assert math.isclose(g.counts["cost_usd"], math.fsum(t["cost"]), rel_tol=1e-9, abs_tol=1e-12)
        _check_quantiles(g.sketches.get("latency_ms"), t["latency"])
        _check_quantiles(g.sketches.get("ttft_ms"), t["ttft"])


def _check_turns(groups: dict[tuple[Any, ...], R.Group], history: History, since: float, until: float) -> None:
    turns = [t for t in history.turns() if since <= t.started_at_ms < until]
    by_outcome = Counter(t.outcome for t in turns)
    assert {k[0]: g.counts["turns"] for k, g in groups.items()} == dict(by_outcome)
    wall = [t.wall_ms for t in turns if t.outcome is not None and t.wall_ms is not None]
    total = R.Group({})
    for g in groups.values():
        total.add(g)
    _check_quantiles(total.sketches.get("wall_ms"), wall)
    edges = R.WALL_MS_EDGES
    expected = [sum(1 for w in wall if w >= lo and (i + 1 == len(edges) or w < edges[i + 1])) for i, lo in enumerate(edges)]
    assert (total.hist or [0] * len(edges)) == expected
    _check_quantiles(total.sketches.get("queue_wait_ms"), [t.queue_wait_ms for t in turns if t.queue_wait_ms is not None])


def _check_tools(groups: dict[tuple[Any, ...], R.Group], history: History, since: float, until: float) -> None:
    calls = [c for c in history.tool_calls() if since <= c.started_at_ms < until]
    assert {k: g.counts["calls"] for k, g in groups.items()} == dict(Counter((c.tool_name,) for c in calls))
    for (tool,), g in groups.items():
        _check_quantiles(g.sketches.get("latency_ms"), [c.latency_ms for c in calls if c.tool_name == tool
                                                         and c.latency_ms is not None])


def _check_all(conn: Any, history: History, since: float, until: float) -> R.Plan:
    p = R.plan(conn, since, until)
    _check_api(R.read(conn, R.API, p, keys=("status",)), history, since, until)
    _check_turns(R.read(conn, R.TURNS, p, keys=("outcome",)), history, since, until)
    _check_tools(R.read(conn, R.TOOLS, p, keys=("tool",)), history, since, until)
    return p


def test_rollups_hold_the_injected_history(recorded: tuple[History, sqlite3.Connection]) -> None:
    history, conn = recorded
    stats = R.rebuild(conn, now_ms=AFTER)
    assert stats.hours > 0 and stats.dirty_left == 0
    p = _check_all(conn, history, *WHOLE)
    assert p.hours_from_rollups == 14 * 24 and p.raw_ranges == ()  # the window is whole hours, all clean
    # a window with partial hours at both ends: rollups inside, raw rows at the edges
    since, until = WHOLE[0] + 5 * DAY_MS + 0.37 * HOUR_MS, WHOLE[1] - 2 * DAY_MS - 0.81 * HOUR_MS
    p = _check_all(conn, history, since, until)
    assert len(p.raw_ranges) == 2 and p.hours_from_rollups > 100
    # within one hour: raw rows only
    assert _check_all(conn, history, since, since + 0.5 * HOUR_MS).rollup_hours == ()


def test_reads_are_right_before_any_rebuild(recorded: tuple[History, sqlite3.Connection]) -> None:
    """Every hour with rows starts dirty (the migration marks them): all raw, same figures."""
    history, conn = recorded
    p = _check_all(conn, history, *WHOLE)
    assert p.hours_from_rollups < 14 * 24  # dirty hours are read raw


def test_by_day_and_filters(recorded: tuple[History, sqlite3.Connection]) -> None:
    history, conn = recorded
    R.rebuild(conn, now_ms=AFTER)
    p = R.plan(conn, *WHOLE)
    sessions = history.sessions()
    groups = R.read(conn, R.API, p, keys=("day", "source"), filters={"profile": "work"})
    truth: Counter[tuple[int, Any]] = Counter()
    for c in history.api_calls():
        s = sessions[c.session_id]
        if s.profile == "work":
            truth[(int(c.started_at_ms // DAY_MS), s.source)] += 1
    assert {k: g.counts["calls"] for k, g in groups.items()} == dict(truth)


def _write(conn: sqlite3.Connection, events: list[Any]) -> None:
    with transaction(conn):
        write_events(conn, events)


def _dirty(conn: sqlite3.Connection) -> set[int]:
    return {h for (h,) in conn.execute("SELECT hour FROM rollup_dirty")}


def test_every_write_marks_what_it_changes(recorded: tuple[History, sqlite3.Connection]) -> None:
    history, conn = recorded
    R.rebuild(conn, now_ms=AFTER)
    assert _dirty(conn) == set()
    old = NOW_MS - 10 * DAY_MS + 0.5 * HOUR_MS
    hour = int(old // HOUR_MS)
    # a late API call into an old, rebuilt hour
    sid = next(iter(history.sessions()))
    late = ApiCall(api_request_id="late", attempt=0, session_id=sid, turn_id=None,
                   started_at_ms=old, latency_ms=123.0, status="ok", input_tokens=10, output_tokens=5,
                   model="m-alpha", provider="prov-a")
    _write(conn, [late])
    assert _dirty(conn) == {hour}
    history.events.append(late)
    _check_all(conn, history, *WHOLE)  # the dirty hour is read raw
    R.rebuild(conn, now_ms=AFTER)
    _check_all(conn, history, *WHOLE)
    # a turn's end written later marks its start's hour
    start = TurnStarted(turn_id="late-turn", session_id=sid, started_at_ms=old + 60_000)
    _write(conn, [start])
    R.rebuild(conn, now_ms=AFTER)
    _write(conn, [TurnEnded(turn_id="late-turn", session_id=sid, ended_at_ms=NOW_MS + 60_000, outcome="completed")])
    assert _dirty(conn) == {hour}
    history.events += [start, TurnEnded(turn_id="late-turn", session_id=sid, ended_at_ms=NOW_MS + 60_000,
                                        outcome="completed")]
    R.rebuild(conn, now_ms=AFTER)
    _check_all(conn, history, *WHOLE)
    # a session whose dimensions change: every hour of its rows
    hours = {int(c.started_at_ms // HOUR_MS) for c in history.api_calls() if c.session_id == sid}
    first = sessions_start = history.sessions()[sid]
    assert first.profile is not None
    conn.execute("UPDATE sessions SET profile = 'renamed' WHERE session_id = ?", (sid,))
    assert hours <= _dirty(conn)
    R.rebuild(conn, now_ms=AFTER)
    groups = R.read(conn, R.API, R.plan(conn, *WHOLE), keys=("profile",))
    assert groups[("renamed",)].counts["calls"] == sum(1 for c in history.api_calls() if c.session_id == sid)
    del sessions_start


def test_reprice_and_reconcile_mark_their_rows(recorded: tuple[History, sqlite3.Connection], tmp_path: Path) -> None:
    from hermetry.stores.sqlite_reconcile import reconcile

    history, conn = recorded
    R.rebuild(conn, now_ms=AFTER)
    open_turns = [t for t in history.turns() if t.outcome is None]
    assert open_turns
    reconcile(conn, grace_s=0, now_ms=AFTER + DAY_MS)
    assert {int(t.started_at_ms // HOUR_MS) for t in open_turns} <= _dirty(conn)
    R.rebuild(conn, now_ms=AFTER)
    groups = R.read(conn, R.TURNS, R.plan(conn, *WHOLE), keys=("outcome",))
    raw = {k: g.counts["turns"] for k, g in R.read(conn, R.TURNS, R.Plan(*WHOLE, (), (WHOLE,)), keys=("outcome",)).items()}
    assert {k: g.counts["turns"] for k, g in groups.items()} == raw
    assert (None,) not in raw  # every open turn is closed now


def test_new_session_rows_and_hours_of_a_batch(tmp_path: Path) -> None:
    """A batch marks one row per hour it touched, whatever the number of rows."""
    conn = connect(tmp_path / "t.db")
    migrate(conn)
    base = NOW_MS
    events: list[Any] = [SessionStarted(session_id="s", started_at_ms=base, source="cli")]
    for i in range(50):
        events.append(ToolCall(tool_call_id=f"c{i}", session_id="s", turn_id=None, tool_name="terminal",
                               started_at_ms=base + i * 0.1 * HOUR_MS, latency_ms=5.0, status="ok"))
    _write(conn, events)
    assert _dirty(conn) == {int((base + i * 0.1 * HOUR_MS) // HOUR_MS) for i in range(50)}


def test_an_import_fills_the_rollups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Backfill: the imported rows' hours are rebuilt at the end of `hermetry import`."""
    from hermetry.analytics import report as report_module
    from hermetry.analytics.report import Query, insights
    from hermetry.sources.backfill import import_hermes_home
    from state_db import write_state_db
    from test_rollups_report import same

    home = tmp_path / "hermes"
    # two days ago: closed hours, so the import's rebuild takes them
    write_state_db(home, 4, api_call_count=2, ago_s=172800, spread_s=3600)
    store = tmp_path / "telemetry.db"
    (result,) = import_hermes_home(home, store)
    assert result.rollup_hours >= 4  # the four sessions' (their turns') hours
    conn = connect(store)
    now_hour = int(time.time() * 1000 // HOUR_MS)
    assert [h for h in _dirty(conn) if h < now_hour] == []
    conn.close()
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)
    q = Query(since_ms=(now_hour - 24 * 4) * HOUR_MS, until_ms=(now_hour + 2) * HOUR_MS, group_by=("model",))
    exact, approx = insights(store, q, exact=True), insights(store, q)
    assert approx["method"]["path"] == "rollups" and approx["method"]["hours_from_rollups"] >= 4 * 24
    assert approx["api_calls"]["count"] == 8 and approx["turns"]["count"] == 4
    assert approx["api_calls"]["tokens"]["input_tokens"] == 1000
    exact.pop("activity"), approx.pop("activity")
    same(exact, approx)


def test_a_rebuild_aggregates_without_the_write_lock_and_keeps_an_hour_marked_meanwhile_dirty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers never wait for a rebuild's aggregation; an hour a writer marks while it runs is
    not swapped in from the older snapshot (it stays dirty, is read raw, and the next rebuild is exact)."""
    db = tmp_path / "telemetry.db"
    conn = connect(db)
    migrate(conn)
    t = NOW_MS - 5 * HOUR_MS - HOUR_MS / 2  # inside a closed hour
    first = [SessionStarted(session_id="s1", started_at_ms=t, source="cli"),
             ApiCall(session_id="s1", api_request_id="a1", attempt=0, turn_id=None, started_at_ms=t + 1, latency_ms=100.0, status="ok",
                     model="m", provider="p", input_tokens=7, output_tokens=3)]
    with transaction(conn):
        write_events(conn, first)
    late = ApiCall(session_id="s1", api_request_id="a2", attempt=0, turn_id=None, started_at_ms=t + 2, latency_ms=200.0, status="ok",
                   model="m", provider="p", input_tokens=11, output_tokens=5)
    aggregate = R.aggregate_raw
    other: list[sqlite3.Connection] = []

    def aggregate_while_a_writer_writes(c: Any, kind: R.Kind, *a: Any, **kw: Any) -> Any:
        out = aggregate(c, kind, *a, **kw)
        if kind is R.API and not other:
            writer = connect(db)
            other.append(writer)
            writer.execute("PRAGMA busy_timeout=0")  # would raise "database is locked" if the rebuild held it
            with transaction(writer):
                write_events(writer, [late])
        return out

    monkeypatch.setattr(R, "aggregate_raw", aggregate_while_a_writer_writes)
    R.rebuild(conn, now_ms=AFTER)
    monkeypatch.setattr(R, "aggregate_raw", aggregate)
    assert other, "the writer ran during the aggregation"
    hour = int(t // HOUR_MS)
    assert conn.execute("SELECT 1 FROM rollup_dirty WHERE hour = ?", (hour,)).fetchone() is not None
    window = (hour * HOUR_MS, (hour + 1) * HOUR_MS)

    def calls_and_tokens() -> tuple[int, int]:
        groups = R.read(conn, R.API, R.plan(conn, *window), measures=False)
        return (sum(g.counts["calls"] for g in groups.values()),
                sum(g.counts["input_tokens"] for g in groups.values()))

    assert calls_and_tokens() == (2, 18)  # the late call is read raw, not lost behind a stale rollup
    R.rebuild(conn, now_ms=AFTER)
    p = R.plan(conn, *window)
    assert p.hours_from_rollups == 1 and not p.raw_ranges
    assert calls_and_tokens() == (2, 18)
    other[0].close()
    conn.close()


def test_a_sketch_only_read_gives_the_same_sketches(recorded: tuple[History, sqlite3.Connection]) -> None:
    history, conn = recorded
    R.rebuild(conn, now_ms=AFTER)
    since, until = WHOLE[0] + 0.37 * HOUR_MS, WHOLE[1] - 0.81 * HOUR_MS  # raw edges, clean days and hours
    p = R.plan(conn, since, until)
    assert p.rollup_days and p.rollup_hours and p.raw_ranges
    for kind in (R.API, R.TOOLS):
        full = R.read(conn, kind, p, keys=("source",))
        only = R.read(conn, kind, p, keys=("source",), counts=False)
        assert set(only) == set(full)
        for key, g in full.items():
            assert {m: s.buckets() for m, s in only[key].sketches.items()} == {m: s.buckets() for m, s in g.sketches.items()}
