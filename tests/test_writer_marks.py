"""The write path's rollup marks (stores/sqlite.py ``write_events``): every hour whose rows a batch
changes is marked, whatever the batch skips.

A batch remembers what it already did for a session — its open turns closed, its reconciled end
taken back — and skips repeating it. These tests check, against rows built from the events the
test injects, that those skips change nothing: the same events give the same rows in one batch or
one event per batch, and after a rebuild the rollups equal the raw rows (an hour changed but not
marked would keep its stale rollup), on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermetry.model.events import (
    ApiCall,
    Event,
    SessionEnded,
    SessionReopened,
    SessionStarted,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.model.outcomes import REASON_LAST_CALL_FAILED, REASON_NO_TURN_END
from hermetry.model.units import HOUR_MS
from hermetry.stores import rollups as R
from hermetry.stores.sqlite import connect, migrate, write_events
from hermetry.stores.sqlite_util import transaction
from hermetry.testing.history import NOW_MS

BASE = (NOW_MS // HOUR_MS - 48) * HOUR_MS  # a whole hour, two days back
WINDOW = (BASE - 2 * HOUR_MS, BASE + 24 * HOUR_MS)
LATER = NOW_MS + 2 * HOUR_MS  # every hour of these tests is closed by then


def _open(path: Path) -> sqlite3.Connection:
    conn = connect(path)
    migrate(conn)
    return conn


def _write(conn: Any, events: list[Event]) -> None:
    with transaction(conn):
        write_events(conn, events)


def _dirty(conn: Any) -> set[int]:
    return {int(h) for (h,) in conn.execute("SELECT hour FROM rollup_dirty").fetchall()}


def _groups(conn: Any, kind: R.Kind, p: R.Plan) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    out = {}
    for key, g in R.read(conn, kind, p, keys=kind.key_names).items():
        sketches = tuple(sorted((m, s.count, s.min, s.max) for m, s in g.sketches.items() if s.count))
        out[key] = (tuple(sorted(g.counts.items())), tuple(g.hist), sketches)
    return out


def _rollups_equal_raw(conn: Any) -> None:
    """Rebuild, then every kind read through the rollups equals the raw rows, group by group."""
    R.rebuild(conn, now_ms=LATER)
    p = R.plan(conn, *WINDOW)
    assert p.hours_from_rollups > 0
    raw = R.Plan(*WINDOW, (), (WINDOW,))
    for kind in R.KINDS:
        assert _groups(conn, kind, p) == _groups(conn, kind, raw), kind.name


def _turns(conn: Any) -> dict[str, tuple[Any, ...]]:
    return {r[0]: tuple(r[1:]) for r in conn.execute(
        "SELECT turn_id, session_id, started_at_ms, ended_at_ms, outcome, outcome_reason, origin FROM turns").fetchall()}


def test_a_batch_that_closes_an_earlier_batchs_open_turn_marks_that_turns_hour(tmp_path: Path) -> None:
    conn = _open(tmp_path / "t.db")
    _write(conn, [
        SessionStarted(session_id="s", started_at_ms=BASE, source="cli", model="m", provider="p"),
        TurnStarted(turn_id="t1", session_id="s", started_at_ms=BASE + 60_000),
        ApiCall(api_request_id="r1", attempt=0, session_id="s", turn_id="t1", started_at_ms=BASE + 61_000,
                latency_ms=500.0, status="error", model="m", provider="p"),
    ])  # t1 is left open by this batch
    R.rebuild(conn, now_ms=LATER)
    assert _dirty(conn) == set()
    later = BASE + 3 * HOUR_MS
    # the next batch: the session's next turn (closes t1), its end, then another turn and the session's end
    _write(conn, [
        TurnStarted(turn_id="t2", session_id="s", started_at_ms=later),
        TurnEnded(turn_id="t2", session_id="s", ended_at_ms=later + 5_000, outcome="completed"),
        TurnStarted(turn_id="t3", session_id="s", started_at_ms=later + 10_000),  # nothing left to close
        TurnStarted(turn_id="t4", session_id="s", started_at_ms=later + 20_000),  # closes t3
        SessionEnded(session_id="s", ended_at_ms=later + 30_000, end_reason="cli_close", outcome="completed"),
    ])
    assert _dirty(conn) == {int(BASE // HOUR_MS), int(later // HOUR_MS)}
    turns = _turns(conn)
    # t1: closed by t2's start, errored (its last call failed), ended when that call ended
    assert turns["t1"][2:5] == (BASE + 61_500, "errored", REASON_LAST_CALL_FAILED)
    assert turns["t2"][3] == "completed"
    assert turns["t3"][2:5] == (later + 20_000, "abandoned", REASON_NO_TURN_END)  # closed by t4's start
    assert turns["t4"][2:5] == (later + 30_000, "abandoned", REASON_NO_TURN_END)  # closed by the session's end
    _rollups_equal_raw(conn)


def test_an_end_written_in_a_later_batch_marks_its_turns_start_hour(tmp_path: Path) -> None:
    conn = _open(tmp_path / "t.db")
    _write(conn, [TurnStarted(turn_id="t", session_id="s", started_at_ms=BASE + 1_000)])
    R.rebuild(conn, now_ms=LATER)
    _write(conn, [TurnEnded(turn_id="t", session_id="s", ended_at_ms=BASE + 5 * HOUR_MS, outcome="completed")])
    assert _dirty(conn) == {int(BASE // HOUR_MS)}
    _rollups_equal_raw(conn)


def test_an_imported_open_turn_written_in_the_same_batch_is_closed_by_the_next_live_turn(tmp_path: Path) -> None:
    conn = _open(tmp_path / "t.db")
    _write(conn, [
        TurnStarted(turn_id="t1", session_id="s", started_at_ms=BASE),  # closes what was open: nothing
        TurnStarted(turn_id="bf-t2", session_id="s", started_at_ms=BASE + HOUR_MS, origin="backfill"),  # open
        TurnEnded(turn_id="t1", session_id="s", ended_at_ms=BASE + 2_000, outcome="completed"),
        TurnStarted(turn_id="t3", session_id="s", started_at_ms=BASE + 3 * HOUR_MS),  # must close bf-t2
    ])
    turns = _turns(conn)
    assert turns["bf-t2"][3:5] == ("abandoned", REASON_NO_TURN_END)
    assert turns["t1"][3] == "completed" and turns["t3"][3] is None
    assert _dirty(conn) == {int(BASE // HOUR_MS), int(BASE // HOUR_MS) + 1, int(BASE // HOUR_MS) + 3}
    _rollups_equal_raw(conn)


# -- any sequence of events: one batch or one event per batch, the same rows; rollups stay exact

SESSIONS = ("s1", "s2")
TURNS = {"t1": "s1", "t2": "s1", "t3": "s1", "t4": "s1", "t5": "s2"}  # a turn id belongs to one session


def _at(hour: int, part: float = 0.25) -> float:
    return BASE + (hour + part) * HOUR_MS


# Realistic ids: a row's id comes with its start (a repeated event is a retry of the same fact), and
# imported rows have ids of their own (the importer prefixes them), so no row's start ever moves.
@st.composite
def _event(draw: Any) -> Event:
    what = draw(st.sampled_from(["turn_start", "turn_start", "turn_end", "api", "api", "tool", "session_start",
                                 "session_end", "reopen"]))
    origin = draw(st.sampled_from(["live", "live", "live", "backfill"]))
    tag = "" if origin == "live" else "bf-"
    if what in ("turn_start", "turn_end", "api", "tool"):
        tid = draw(st.sampled_from(sorted(TURNS)))
        sid = TURNS[tid]
        at = _at(2 * int(tid[1:]))  # turns in even hours, their calls in odd ones: a missing mark shows
        if what == "turn_start":
            return TurnStarted(turn_id=tag + tid, session_id=sid, started_at_ms=at, origin=origin)  # type: ignore[arg-type]
        if what == "turn_end":
            return TurnEnded(turn_id=tag + tid, session_id=sid, ended_at_ms=at + draw(st.integers(0, 3)) * HOUR_MS,
                             origin=origin, outcome=draw(st.sampled_from(["completed", "interrupted"])))  # type: ignore[arg-type]
        k = draw(st.integers(0, 9))
        if what == "api":
            return ApiCall(api_request_id=f"{tag}r{k}", attempt=0, session_id=sid, turn_id=tag + tid,
                           started_at_ms=_at(2 * k + 1, 0.1), latency_ms=draw(st.sampled_from([None, 100.0, 2_500.0])),
                           status=draw(st.sampled_from(["ok", "error"])), origin=origin,  # type: ignore[arg-type]
                           model=draw(st.sampled_from([None, "m-a", "m-b"])), provider="p", input_tokens=7)
        return ToolCall(tool_call_id=f"{tag}c{k}", session_id=sid, turn_id=tag + tid, tool_name="terminal",
                        started_at_ms=_at(2 * k + 1, 0.6), latency_ms=30.0, status="ok", origin=origin)  # type: ignore[arg-type]
    sid = draw(st.sampled_from(SESSIONS))
    at = _at(draw(st.integers(0, 20)), 0.5)
    if what == "session_start":
        return SessionStarted(session_id=sid, started_at_ms=at, source=draw(st.sampled_from(["cli", "telegram"])),
                              model=draw(st.sampled_from([None, "m-a"])), origin=origin)  # type: ignore[arg-type]
    if what == "session_end":
        return SessionEnded(session_id=sid, ended_at_ms=at, end_reason="cli_close", outcome="completed",
                            origin=origin)  # type: ignore[arg-type]
    return SessionReopened(session_id=sid, reopened_at_ms=at)


_ROWS = {
    "sessions": "SELECT session_id, source, model, provider, started_at_ms, ended_at_ms, end_reason, outcome, origin "
                "FROM sessions ORDER BY 1",
    "turns": "SELECT turn_id, session_id, started_at_ms, ended_at_ms, outcome, outcome_reason, origin FROM turns ORDER BY 1",
    "api_calls": "SELECT * FROM api_calls ORDER BY api_call_id",
    "tool_calls": "SELECT * FROM tool_calls ORDER BY tool_call_id",
}


def _rows(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {t: [tuple(r) for r in conn.execute(q).fetchall()] for t, q in _ROWS.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(_event(), max_size=12), second=st.lists(_event(), min_size=1, max_size=25))
def test_any_events_give_the_same_rows_in_one_batch_or_one_by_one_and_exact_rollups(
        tmp_path: Path, first: list[Event], second: list[Event]) -> None:
    import uuid

    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    whole, alone = _open(folder / "whole.db"), _open(folder / "alone.db")
    try:
        for conn in (whole, alone):  # an earlier batch, rebuilt: the second one must mark what it changes
            if first:
                _write(conn, first)
            R.rebuild(conn, now_ms=LATER)
        _write(whole, second)
        for e in second:
            _write(alone, [e])
        assert _rows(whole) == _rows(alone)
        _rollups_equal_raw(whole)
    finally:
        whole.close()
        alone.close()


def test_postgres_marks_what_a_batch_changes(pg_url: str) -> None:
    from hermetry.stores.postgres import apply_batch
    from hermetry.stores.postgres import connect as pg_connect
    from hermetry.stores.postgres import migrate as pg_migrate

    conn: Any = pg_connect(pg_url)
    try:
        pg_migrate(conn)
        apply_batch(conn, [
            SessionStarted(session_id="s", started_at_ms=BASE, source="cli", model="m", provider="p"),
            TurnStarted(turn_id="t1", session_id="s", started_at_ms=BASE + 60_000),
            TurnStarted(turn_id="t0", session_id="s", started_at_ms=BASE + 2 * HOUR_MS, origin="backfill"),
        ], None)
        R.rebuild(conn, now_ms=LATER)
        assert _dirty(conn) == set()
        later = BASE + 4 * HOUR_MS
        apply_batch(conn, [
            TurnEnded(turn_id="t0", session_id="s", ended_at_ms=later, outcome="completed", origin="backfill"),
            TurnStarted(turn_id="t2", session_id="s", started_at_ms=later),  # closes t1
            TurnEnded(turn_id="t2", session_id="s", ended_at_ms=later + 5_000, outcome="completed"),
            SessionEnded(session_id="s", ended_at_ms=later + 6_000, end_reason="cli_close", outcome="completed"),
        ], None)
        assert _dirty(conn) == {int(BASE // HOUR_MS), int(BASE // HOUR_MS) + 2, int(later // HOUR_MS)}
        turns = _turns(conn)
        assert turns["t1"][3:5] == ("abandoned", REASON_NO_TURN_END) and turns["t0"][3] == "completed"
        _rollups_equal_raw(conn)
    finally:
        conn.close()


class _Statements:
    """A psycopg connection that records (statement, parameters) of what the write path runs."""

    def __init__(self, raw: Any, log: list[tuple[str, Any]]) -> None:
        self._raw, self._log = raw, log

    def execute(self, sql: str, params: Any = None, **kw: Any) -> Any:
        self._log.append((sql, params))
        return self._raw.execute(sql, params, **kw)

    def cursor(self, *a: Any, **kw: Any) -> Any:
        raw, log = self._raw.cursor(*a, **kw), self._log

        class Cursor:
            def executemany(self, sql: str, rows: Any, **kw: Any) -> Any:
                rows = list(rows)
                log.append((sql, rows))
                return raw.executemany(sql, rows, **kw)

            def __getattr__(self, name: str) -> Any:
                return getattr(raw, name)

        return Cursor()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def test_postgres_marks_a_batchs_hours_once_sorted_before_it_writes(pg_url: str) -> None:
    """m8: two hosts' batches around an hour boundary must not wait for each other's marks in
    opposite orders (a deadlock, then a retried batch). Each batch marks every hour it changes in
    one statement, ascending, before it writes anything — the hours of its rows, of the turns it
    closes or ends and of the sessions it changes, whose triggers then find them marked: every
    mark the transaction holds is one that statement took."""
    from hermetry.stores.postgres import apply_batch
    from hermetry.stores.postgres import connect as pg_connect
    from hermetry.stores.postgres import migrate as pg_migrate

    h = int(BASE // HOUR_MS)
    conn: Any = pg_connect(pg_url)
    try:
        pg_migrate(conn)
        apply_batch(conn, [SessionStarted(session_id="s", started_at_ms=_at(10), source="cli"),
                           SessionStarted(session_id="s2", started_at_ms=_at(4), source="cli"),
                           TurnStarted(turn_id="t9", session_id="s", started_at_ms=_at(9)),
                           TurnStarted(turn_id="t7", session_id="s2", started_at_ms=_at(7))], None)
        R.rebuild(conn, now_ms=LATER)
        assert _dirty(conn) == set()
        batch: list[Event] = [  # hours touched in descending order
            SessionStarted(session_id="s3", started_at_ms=_at(11), source="cli"),  # a new session (trigger)
            ApiCall(api_request_id="r", attempt=0, session_id="s", turn_id="t9", started_at_ms=_at(8),
                    latency_ms=10.0, status="ok"),  # moves session s's start from hour 9 to 8 (trigger)
            TurnStarted(turn_id="t6", session_id="s", started_at_ms=_at(6)),  # closes t9 (hour 9)
            TurnEnded(turn_id="t7", session_id="s2", ended_at_ms=_at(7, 0.5), outcome="completed"),  # hour 7
            SessionEnded(session_id="s2", ended_at_ms=_at(12), end_reason="cli_close", outcome="completed"),  # 4
            ToolCall(tool_call_id="c", session_id="s", turn_id="t6", tool_name="terminal", started_at_ms=_at(5),
                     latency_ms=1.0, status="ok"),
        ]
        log: list[tuple[str, Any]] = []
        raw = conn.raw
        conn.raw = _Statements(raw, log)
        with raw.transaction():
            write_events(conn, batch)
            held = {int(hour) for (hour,) in raw.execute(
                "SELECT hour FROM rollup_dirty WHERE xmin::text = (txid_current() % 4294967296)::text").fetchall()}
    finally:
        conn.close()
    writes = [(sql, params) for sql, params in log if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    marks = [i for i, (sql, _) in enumerate(writes) if "rollup_dirty" in sql]
    assert marks == [0], [sql[:60] for sql, _ in writes]
    hours = [int(row[0]) for row in writes[0][1]]
    assert hours == [h + 4, h + 5, h + 6, h + 7, h + 8, h + 9, h + 11]  # (s started at 9: its first turn)
    assert held == set(hours)
