"""The sessions rollup (stores/rollups.py ``SESSIONS``, schema 12): sessions by the hour they started
× the report's dimensions × outcome × origin. What it holds equals the injected sessions; every write
of a session marks its start hour; the upgrade's build re-marks no hour; and the report's
session outcomes and the activity figures read through it equal the exact path's — on SQLite and on
a real PostgreSQL, for whole and partial windows, in zones with whole-hour, DST, +05:30 and +05:45 offsets."""

from __future__ import annotations

import math
import sqlite3
import tempfile
from collections import Counter
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hermetry.analytics.activity import activity
from hermetry.analytics.query import Query, Scanner
from hermetry.analytics.report import _session_outcomes, _session_outcomes_rolled
from hermetry.model.events import SessionEnded, SessionStarted
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.recorder.recorder import Recorder
from hermetry.stores import rollups as R
from hermetry.stores.postgres import PostgresStore
from hermetry.stores.postgres import connect as pg_connect
from hermetry.stores.reader import open_db
from hermetry.stores.sqlite import _split_sql, connect, migrate, write_events
from hermetry.stores.sqlite_schema import MIGRATIONS
from hermetry.stores.sqlite_util import transaction
from hermetry.testing.history import NOW_MS, History, synthetic_history
from pg_helpers import recorded_postgres, recorded_sqlite

WHOLE = (NOW_MS - 14 * DAY_MS, NOW_MS + DAY_MS)
LATER = NOW_MS + 2 * DAY_MS  # every hour of the history closed
#: What activity says about the sessions themselves (the rest is rows: messages, tokens, tools).
SESSION_FIGURES = ("sessions", "active_time_ms", "avg_session_ms", "sessions_timed", "by_weekday", "by_hour",
                   "busiest_weekday", "busiest_hour", "active_days", "longest_streak_days")
ZONES: list[tzinfo] = [UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30)),
                       ZoneInfo("America/New_York"), ZoneInfo("Asia/Kathmandu")]


@pytest.fixture(scope="module")
def history() -> History:
    return synthetic_history(seed=33, days=14, sessions_per_day=9)


@pytest.fixture(scope="module")
def lite(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded_sqlite(history, tmp_path_factory.mktemp("sessions") / "telemetry.db", LATER)


@pytest.fixture(scope="module")
def pg(history: History, pg_server: Any) -> str:
    return recorded_postgres(history, str(pg_server.create_database()), LATER)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("lite" if request.param == "sqlite" else "pg")


def _truth(history: History, since: float, until: float) -> dict[str, Any]:
    """From the injected events: sessions started in the window, by start hour; the ended ones'
    durations (end after start)."""
    ends = history.session_ends()
    started = {sid: s for sid, s in history.sessions().items() if since <= s.started_at_ms < until}
    durations = [ends[sid].ended_at_ms - s.started_at_ms for sid, s in started.items()
                 if sid in ends and ends[sid].ended_at_ms > s.started_at_ms]
    return {"n": len(started), "by_hour": Counter(int(s.started_at_ms // HOUR_MS) for s in started.values()),
            "by_source": Counter(s.source for s in started.values()), "timed": len(durations),
            "duration": math.fsum(durations), "max": max(durations, default=None)}


def _read(conn: Any, since: float, until: float, keys: tuple[str, ...], **filters: Any) -> dict[tuple[Any, ...], R.Group]:
    return R.read(conn, R.SESSIONS, R.plan(conn, since, until), keys=keys, filters=filters, measures=False)


@pytest.mark.parametrize("window", [WHOLE, (WHOLE[0] + 2.37 * DAY_MS, NOW_MS - 3.61 * DAY_MS)], ids=["whole", "partial"])
def test_the_sessions_rollup_holds_the_injected_sessions(store: Any, history: History,
                                                        window: tuple[float, float]) -> None:
    truth = _truth(history, *window)
    assert truth["n"] > 50 and truth["timed"] > 20
    with open_db(store) as conn:
        p = R.plan(conn, *window)
        assert p.hours_from_rollups > 24 * 7  # really read from the rollup rows
        by_hour = _read(conn, *window, ("hour",))
        assert {h: g.counts["sessions"] for (h,), g in by_hour.items()} == dict(truth["by_hour"])
        total = R.Group({}, maxima=R.SESSIONS.maxima)
        for g in by_hour.values():
            total.add(g)
        assert total.counts["timed"] == truth["timed"]
        assert math.isclose(total.counts["duration_ms"], truth["duration"], rel_tol=1e-12)
        assert total.counts["duration_max_ms"] == truth["max"]
        by_source = _read(conn, *window, ("source",))
        assert {k: g.counts["sessions"] for (k,), g in by_source.items()} == dict(truth["by_source"])
        one = _read(conn, *window, ("day",), source="telegram")
        assert sum(g.counts["sessions"] for g in one.values()) == truth["by_source"]["telegram"] > 0


def _rows(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    cols = ", ".join(R.SESSIONS.columns)
    return sorted(conn.execute(f"SELECT {cols} FROM {table}").fetchall(), key=repr)


def test_the_upgrade_builds_it_from_the_sessions_table_and_marks_nothing(history: History, tmp_path: Path) -> None:
    """Schema 11 → 12 on a file whose rollups are clean, then the sessions rollup's build (after the
    migration: tests/test_sessions_build.py): no hour becomes dirty (an upgrade is not a rebuild), and
    what it built is what a rebuild of every hour builds."""
    db = tmp_path / "v11.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for version in range(11):
        for statement in _split_sql(MIGRATIONS[version]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=11")
    with transaction(conn):
        write_events(conn, history.events)
    conn.execute("DELETE FROM rollup_dirty")  # as after a rebuild at schema 11 (its kinds: not under test)
    conn.close()
    conn = connect(db)
    assert migrate(conn) == len(MIGRATIONS)
    assert R.build_sessions(conn).built
    assert conn.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0] == 0
    upgraded = _rows(conn, R.SESSIONS.rollup), _rows(conn, R.SESSIONS.rollup_day)
    assert len(upgraded[0]) > 14 * 9 // 2
    conn.execute("INSERT INTO rollup_dirty (hour) SELECT DISTINCT hour FROM rollup_sessions")
    R.rebuild(conn, now_ms=LATER)
    assert (_rows(conn, R.SESSIONS.rollup), _rows(conn, R.SESSIONS.rollup_day)) == upgraded
    truth = _truth(history, *WHOLE)
    got = _read(conn, *WHOLE, ())[()]
    assert got.counts["sessions"] == truth["n"] and got.counts["duration_max_ms"] == truth["max"]


def _dirty(conn: Any) -> set[int]:
    return {h for (h,) in conn.execute("SELECT hour FROM rollup_dirty").fetchall()}


def test_every_write_of_a_session_marks_its_start_hour(history: History, tmp_path: Path) -> None:
    db = history.record(tmp_path / "t.db")
    conn = connect(db)
    migrate(conn)
    R.rebuild(conn, now_ms=LATER)
    assert _dirty(conn) == set()
    old = NOW_MS - 9 * DAY_MS + 0.25 * HOUR_MS
    hour = int(old // HOUR_MS)

    def check() -> None:  # read raw where dirty, from rollups elsewhere: always the truth
        truth = _truth(history, *WHOLE)
        got = _read(conn, *WHOLE, ("hour",))
        assert {h: g.counts["sessions"] for (h,), g in got.items()} == dict(truth["by_hour"])
        assert sum(g.counts["timed"] for g in got.values()) == truth["timed"]

    new = SessionStarted(session_id="late-s", started_at_ms=old, source="cli", model="m-alpha")
    with transaction(conn):
        write_events(conn, [new])
    history.events.append(new)
    assert _dirty(conn) == {hour}
    check()
    R.rebuild(conn, now_ms=LATER)
    check()
    # its end, much later (a gateway session ending days after it started): its start hour again
    end = SessionEnded(session_id="late-s", ended_at_ms=NOW_MS, end_reason="cli_close", outcome="completed")
    with transaction(conn):
        write_events(conn, [end])
    history.events.append(end)
    assert _dirty(conn) == {hour}
    check()
    R.rebuild(conn, now_ms=LATER)
    check()
    # an earlier start learnt later moves the session: both hours
    earlier = SessionStarted(session_id="late-s", started_at_ms=old - 5 * HOUR_MS, source="cli", model="m-alpha")
    with transaction(conn):
        write_events(conn, [earlier])
    history.events.remove(new)
    history.events.insert(0, earlier)
    assert _dirty(conn) == {hour, hour - 5}
    R.rebuild(conn, now_ms=LATER)
    check()
    conn.execute("DELETE FROM sessions WHERE session_id = 'late-s'")
    assert _dirty(conn) == {hour - 5}
    history.events.remove(earlier)
    history.events.remove(end)
    check()
    conn.close()


def test_postgres_marks_a_session_write_too(pg_server: Any) -> None:
    url = str(pg_server.create_database())
    t0 = NOW_MS - 3 * DAY_MS + 0.5 * HOUR_MS
    rec = Recorder(lambda: PostgresStore(url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    rec.record(SessionStarted(session_id="s1", started_at_ms=t0, source="cli"))
    rec.close(timeout=60)
    conn = pg_connect(url)
    try:
        assert _dirty(conn) == {int(t0 // HOUR_MS)}
        R.rebuild(conn, now_ms=LATER)
        assert _dirty(conn) == set()
        conn.execute("UPDATE sessions SET ended_at_ms = ?, outcome = 'completed' WHERE session_id = 's1'",
                     (t0 + 7 * DAY_MS,))
        conn.execute("COMMIT")
        assert _dirty(conn) == {int(t0 // HOUR_MS)}
        R.rebuild(conn, now_ms=LATER)
        g = R.read(conn, R.SESSIONS, R.plan(conn, t0 - DAY_MS, t0 + DAY_MS), keys=("outcome",))
        assert {k: (x.counts["sessions"], x.counts["duration_max_ms"]) for k, x in g.items()} == {
            ("completed",): (1, 7 * DAY_MS)}
    finally:
        conn.close()


def test_a_session_in_pruned_time_that_ends_later_is_rebuilt(history: History, tmp_path: Path) -> None:
    """Prune keeps sessions (only their rows go): one that started before the boundary and ends after
    the prune moves in the sessions rollup of its start hour, though that hour's raw rows are gone."""
    db = history.record(tmp_path / "p.db")
    conn = connect(db)
    migrate(conn)
    boundary = NOW_MS - 7 * DAY_MS
    start = boundary - 2 * DAY_MS + 0.5 * HOUR_MS
    with transaction(conn):
        write_events(conn, [SessionStarted(session_id="long", started_at_ms=start, source="gateway-x")])
    R.prune(conn, LATER - boundary, now_ms=LATER)
    R.rebuild(conn, now_ms=LATER)
    assert R.pruned_before_ms(conn) == boundary and _dirty(conn) == set()
    with transaction(conn):
        write_events(conn, [SessionEnded(session_id="long", ended_at_ms=NOW_MS, end_reason="x", outcome="completed")])
    assert _dirty(conn) == {int(start // HOUR_MS)}
    R.rebuild(conn, now_ms=LATER)
    assert _dirty(conn) == set()
    g = _read(conn, start - DAY_MS, start + DAY_MS, ("outcome",), source="gateway-x")
    assert {k: (x.counts["sessions"], x.counts["duration_max_ms"]) for k, x in g.items()} == {
        ("completed",): (1, NOW_MS - start)}
    conn.close()


# ---------------------------------------------------------------------------------------------
# The report's session outcomes and activity: rollup path == exact path
# ---------------------------------------------------------------------------------------------

WINDOWS = [WHOLE, (WHOLE[0] + 1.3 * DAY_MS + 0.41 * HOUR_MS, NOW_MS - 2.2 * DAY_MS - 0.77 * HOUR_MS)]
FILTERS: list[dict[str, str]] = [{}, {"source": "telegram"}, {"model": "m-beta", "profile": "work"}]


@pytest.mark.parametrize("window", WINDOWS, ids=["whole", "partial"])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "all")
def test_session_outcomes_read_through_the_rollup_equal_the_exact_ones(store: Any, window: tuple[float, float],
                                                                        filters: dict[str, str]) -> None:
    q = Query(since_ms=window[0], until_ms=window[1], filters=filters, group_by=())
    with open_db(store) as conn:
        exact = _session_outcomes(Scanner(conn, q))
        rolled = _session_outcomes_rolled(conn, q, R.plan(conn, *window))
    assert sum(exact[0].values()) > 5
    assert rolled == exact


def _session_figures(a: dict[str, Any]) -> dict[str, Any]:
    out = {k: a[k] for k in SESSION_FIGURES}
    out["longest"] = a["notable_sessions"]["longest"]
    return out


@pytest.mark.parametrize("tz", ZONES, ids=str)
@pytest.mark.parametrize("window", WINDOWS, ids=["whole", "partial"])
def test_activity_session_figures_through_the_rollup_equal_the_exact_ones(store: Any, window: tuple[float, float],
                                                                          tz: tzinfo) -> None:
    with open_db(store) as conn:
        exact = activity(conn, *window, tz=tz, exact=True)
        rolled = activity(conn, *window, tz=tz, exact=False)
    assert exact["method"] == "exact" and rolled["method"] == "rollups"
    assert (exact["starts_by"], rolled["starts_by"]) == ("session", "minute" if "05" in str(tz) or "Kathmandu" in str(tz)
                                                         else "hour")
    assert exact["sessions"] > 50 and exact["notable_sessions"]["longest"] is not None
    e, r = _session_figures(exact), _session_figures(rolled)
    assert math.isclose(r.pop("active_time_ms"), e.pop("active_time_ms"), rel_tol=1e-12)
    assert math.isclose(r.pop("avg_session_ms"), e.pop("avg_session_ms"), rel_tol=1e-12)
    assert r == e


def test_activity_with_a_filter_through_the_rollup(store: Any) -> None:
    with open_db(store) as conn:
        exact = activity(conn, *WINDOWS[1], {"source": "telegram"}, tz=UTC, exact=True)
        rolled = activity(conn, *WINDOWS[1], {"source": "telegram"}, tz=UTC, exact=False)
    assert 0 < exact["sessions"] < 100
    e, r = _session_figures(exact), _session_figures(rolled)
    assert math.isclose(r.pop("active_time_ms"), e.pop("active_time_ms"), rel_tol=1e-12)
    assert math.isclose(r.pop("avg_session_ms"), e.pop("avg_session_ms"), rel_tol=1e-12)
    assert r == e


def test_a_dst_change_inside_the_window(tmp_path: Path) -> None:
    """New York's clocks moved on 2025-03-09 07:00 UTC: hours on both sides keep whole-hour offsets,
    so the hourly rollup gives each session's local weekday and hour exactly."""
    now = 1_741_780_800_000.0  # 2025-03-12 12:00 UTC
    db = synthetic_history(seed=4, now_ms=now, days=6, sessions_per_day=30).record(tmp_path / "dst.db")
    conn = connect(db)
    migrate(conn)
    R.rebuild(conn, now_ms=now + DAY_MS)
    conn.close()
    with open_db(db) as conn:
        for tz in (ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")):
            exact = activity(conn, now - 6 * DAY_MS, now, tz=tz, exact=True)
            rolled = activity(conn, now - 6 * DAY_MS, now, tz=tz, exact=False)
            e, r = _session_figures(exact), _session_figures(rolled)
            assert math.isclose(r.pop("active_time_ms"), e.pop("active_time_ms"), rel_tol=1e-12)
            assert math.isclose(r.pop("avg_session_ms"), e.pop("avg_session_ms"), rel_tol=1e-12)
            assert r == e and exact["sessions"] > 100


# A property: any sessions, any window, rebuilt or not, any zone: both paths agree.
_T0 = NOW_MS - 5 * DAY_MS
_sessions = st.lists(
    st.tuples(st.floats(0, 5 * DAY_MS), st.one_of(st.none(), st.floats(-HOUR_MS, 3 * DAY_MS)),
              st.sampled_from(["cli", "telegram", "cron"]), st.sampled_from(["completed", "errored", "interrupted"])),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# two sessions as long as each other, started at once: the tie goes to the greater id on both paths
@example(sessions=[(0.0, 1.0, "cli", "completed"), (0.0, 1.0, "cli", "completed")], lo=0.0, span=360_000.0,
         rebuilt=False, tz=UTC, source=None)
@given(sessions=_sessions, lo=st.floats(0, 3 * DAY_MS), span=st.floats(0.1 * HOUR_MS, 4 * DAY_MS),
       rebuilt=st.booleans(), tz=st.sampled_from(ZONES[:3]), source=st.sampled_from([None, "cli"]))
def test_property_both_paths_agree(sessions: list[tuple[float, float | None, str, str]], lo: float, span: float,
                                   rebuilt: bool, tz: tzinfo, source: str | None) -> None:
    events: list[Any] = []
    for i, (start, length, src, outcome) in enumerate(sessions):
        sid = f"p{i}"
        events.append(SessionStarted(session_id=sid, started_at_ms=_T0 + start, source=src, model="m"))
        if length is not None:
            events.append(SessionEnded(session_id=sid, ended_at_ms=_T0 + start + length, end_reason="x",
                                       outcome=outcome))
    with tempfile.TemporaryDirectory() as tmp:
        conn = connect(Path(tmp) / "p.db")
        migrate(conn)
        with transaction(conn):
            write_events(conn, events)
        if rebuilt:
            R.rebuild(conn, now_ms=LATER)
        since, until = _T0 + lo, _T0 + lo + span
        filters = {"source": source} if source else {}
        q = Query(since_ms=since, until_ms=until, filters=filters, group_by=())
        assert _session_outcomes_rolled(conn, q, R.plan(conn, since, until)) == _session_outcomes(Scanner(conn, q))
        exact = activity(conn, since, until, filters, tz=tz, exact=True)
        rolled = activity(conn, since, until, filters, tz=tz, exact=False)
        conn.close()
    e, r = _session_figures(exact), _session_figures(rolled)
    for key in ("active_time_ms", "avg_session_ms"):
        a, b = r.pop(key), e.pop(key)
        assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-12)
    assert r == e
