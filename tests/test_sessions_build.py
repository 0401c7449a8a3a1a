"""The upgrade to schema 12 without a long write lock (review N3).

The v11 → v12 migration creates the sessions rollup's tables empty and records the rollup as pending
(``rollups.SESSIONS_PENDING`` in ``rollup_meta``); ``rollups.build_sessions`` builds it afterwards in
short write transactions, driven by ``rollups.refresh`` (insights, dashboard, metrics serve,
/telemetry) and ``hermetry rollup``. Until it is built readers take the sessions table. Throughout —
just upgraded, half built, built, with sessions written and hours rebuilt in between — the report's
session outcomes and the activity figures equal the exact path's and the sessions the test injected,
on SQLite and on a real PostgreSQL; what the build leaves is what a rebuild of every hour builds; a
writer writing during the build is never refused."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import report as report_module
from hermetry.analytics.activity import activity
from hermetry.analytics.query import Query, Scanner
from hermetry.analytics.report import _session_outcomes, collect
from hermetry.model.events import SessionEnded, SessionStarted
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.stores import postgres as P
from hermetry.stores import postgres_schema as S
from hermetry.stores import rollups as R
from hermetry.stores.dialect import dialect_of
from hermetry.stores.sqlite import _split_sql, connect, migrate, write_events
from hermetry.stores.sqlite_schema import MIGRATIONS
from hermetry.stores.sqlite_util import transaction
from hermetry.surfaces.cli import main
from hermetry.testing.history import NOW_MS, History, synthetic_history

LATER = NOW_MS + 2 * DAY_MS  # every hour of the history closed
WINDOWS = [(NOW_MS - 15 * DAY_MS, NOW_MS + DAY_MS),
           (NOW_MS - 11.3 * DAY_MS + 0.41 * HOUR_MS, NOW_MS - 2.2 * DAY_MS - 0.77 * HOUR_MS)]
SESSION_FIGURES = ("sessions", "sessions_timed", "by_weekday", "by_hour", "busiest_weekday", "busiest_hour",
                   "active_days", "longest_streak_days")


@pytest.fixture()
def history() -> History:
    return synthetic_history(seed=33, days=14, sessions_per_day=9)


@pytest.fixture(autouse=True)
def _rollup_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)  # the report reads the rollups: the switch is tested
    monkeypatch.setattr(R, "BUILD_SESSIONS", (10, 10))  # chunks of ~10 sessions (whole hours): many of them


def _v11_sqlite(events: list[Any], db: Path) -> Path:
    """A file at schema 11 holding ``events`` (written by the store's write path)."""
    conn = sqlite3.connect(db, isolation_level=None)
    for version in range(11):
        for statement in _split_sql(MIGRATIONS[version]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=11")
    with transaction(conn):
        write_events(conn, events)
    conn.close()
    return db


def _as_built_at_11(conn: Any) -> None:
    """Just upgraded from a file whose schema-11 rollups were built: every hour rebuilt (this code's
    rebuild writes the sessions rollup's rows too), then the sessions rollup emptied again."""
    R.rebuild(conn, now_ms=LATER)
    for table in (R.SESSIONS.rollup, R.SESSIONS.rollup_day):
        conn.execute(f"DELETE FROM {table}")
    if isinstance(conn, P.PgConnection):
        conn.execute("COMMIT")


def _v11_postgres(history: History, url: str) -> str:
    conn: Any = P.connect(url)
    raw = conn.raw
    with raw.transaction():
        raw.execute(S.META_TABLE)
        for version in range(11):
            for statement in S.MIGRATIONS[version]:
                raw.execute(statement)
        for statement in S.FLEET_EXTRAS:
            raw.execute(statement)
        raw.execute("INSERT INTO hermetry_meta (key, value) VALUES ('schema_version', '11'), ('fleet_version', %s)",
                    (str(S.FLEET_VERSION),))
    with raw.transaction():
        write_events(conn, history.events)
    assert P.schema_version(conn) == 11
    conn.close()
    return url


def _truth(history: History, since: float, until: float) -> Counter[str]:
    ends = history.session_ends()
    return Counter((ends[sid].outcome if sid in ends else None) or "open"
                   for sid, s in history.sessions().items() if since <= s.started_at_ms < until)


def _check(conn: Any, history: History, *, built: bool) -> None:
    """The report's session outcomes and activity's session figures: what the history holds, the exact
    path's, read from the sessions rollup only once it is built."""
    assert R.has_kind(conn, R.SESSIONS) is built
    for since, until in WINDOWS:
        q = Query(since_ms=since, until_ms=until, group_by=())
        exact = _session_outcomes(Scanner(conn, q))
        assert exact[0] == _truth(history, since, until) and sum(exact[0].values()) > 50
        got = collect(conn, q)
        assert got.plan is not None and got.plan.hours_from_rollups > 24
        assert (got.session_outcomes, got.session_outcomes_unrated) == exact
        e = activity(conn, since, until, tz=UTC, exact=True)
        r = activity(conn, since, until, tz=UTC, exact=False)
        assert r["method"] == "rollups" and r["starts_by"] == ("hour" if built else "minute")
        assert {k: r[k] for k in SESSION_FIGURES} == {k: e[k] for k in SESSION_FIGURES}
        assert math.isclose(r["active_time_ms"], e["active_time_ms"], rel_tol=1e-12)
        assert r["notable_sessions"]["longest"] == e["notable_sessions"]["longest"]


def _rows(conn: Any, table: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.row_factory = None
    rows = cur.execute(f"SELECT {', '.join(R.SESSIONS.columns)} FROM {table}").fetchall()
    return sorted((tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows), key=repr)


def _dirty(conn: Any) -> set[int]:
    cur = conn.cursor()
    cur.row_factory = None
    return {int(h) for (h,) in cur.execute("SELECT hour FROM rollup_dirty").fetchall()}


def _pending(conn: Any) -> tuple[bool, float | None]:
    return R._pending_from(conn)


def _upgrade_build_and_check(conn: Any, history: History) -> None:
    """From just upgraded to built, a chunk at a time, with a session written into a built hour and one
    into an hour not built yet, and a rebuild of the dirty hours while half built."""
    assert _pending(conn) == (True, None) and _dirty(conn) == set()
    assert _rows(conn, R.SESSIONS.rollup) == []
    _check(conn, history, built=False)
    first = R.build_sessions(conn, budget_s=0)  # one chunk
    assert first.transactions == 1 and 0 < first.sessions <= 30 and not first.built
    pending, cursor = _pending(conn)
    assert pending and cursor is not None
    _check(conn, history, built=False)
    # a session in an hour already built, one in an hour not built yet; then their hours rebuilt
    built_hour = cursor - 1
    early = SessionStarted(session_id="n3-early", started_at_ms=built_hour * HOUR_MS + 60_000, source="cli")
    late = SessionStarted(session_id="n3-late", started_at_ms=NOW_MS - 3 * DAY_MS + 0.5 * HOUR_MS, source="cli")
    end = SessionEnded(session_id="n3-early", ended_at_ms=NOW_MS, end_reason="x", outcome="completed")
    conn.execute(dialect_of(conn).begin())
    write_events(conn, [early, late, end])
    conn.execute("COMMIT")
    history.events += [early, late, end]
    assert _dirty(conn) == {built_hour, int(late.started_at_ms // HOUR_MS)}
    _check(conn, history, built=False)
    R.rebuild(conn, now_ms=LATER)  # writes the sessions rollup's rows of those hours too (harmless)
    assert _dirty(conn) == set()
    _check(conn, history, built=False)
    half = R.build_sessions(conn, budget_s=0)
    assert half.transactions == 1 and _pending(conn)[0]
    _check(conn, history, built=False)
    rest = R.build_sessions(conn)
    assert rest.built and rest.transactions > 5 and rest.longest_transaction_s < 0.25
    assert _pending(conn) == (False, None) and _dirty(conn) == set()  # the build marks nothing
    # every session once (n3-early went into an hour built before it was written: rebuilt, not built)
    assert first.sessions + half.sessions + rest.sessions == len(history.sessions()) - 1
    _check(conn, history, built=True)
    # what the build left is what a rebuild of every hour builds
    built_rows = _rows(conn, R.SESSIONS.rollup), _rows(conn, R.SESSIONS.rollup_day)
    assert len(built_rows[0]) > 14 * 9 // 2 and built_rows[1]
    conn.execute("INSERT INTO rollup_dirty (hour) SELECT DISTINCT hour FROM rollup_sessions")
    R.rebuild(conn, now_ms=LATER)
    assert (_rows(conn, R.SESSIONS.rollup), _rows(conn, R.SESSIONS.rollup_day)) == built_rows
    assert R.build_sessions(conn).built and R.build_sessions(conn).transactions == 0


def test_sqlite_upgrade_half_built_and_built(history: History, tmp_path: Path) -> None:
    db = _v11_sqlite(history.events, tmp_path / "v11.db")
    conn = connect(db)
    try:
        marked = _dirty(conn)
        assert migrate(conn) == len(MIGRATIONS)
        assert _dirty(conn) == marked  # the upgrade marks no hour
        _as_built_at_11(conn)
        _upgrade_build_and_check(conn, history)
    finally:
        conn.close()


def test_postgres_upgrade_half_built_and_built(history: History, pg_url: str) -> None:
    url = _v11_postgres(history, pg_url)
    conn: Any = P.connect(url)
    try:
        marked = _dirty(conn)
        assert P.migrate(conn) == S.SCHEMA_VERSION
        assert _dirty(conn) == marked  # the upgrade marks no hour
        _as_built_at_11(conn)
        _upgrade_build_and_check(conn, history)
    finally:
        conn.close()


def test_postgres_readers_refresh_builds_it(history: History, pg_url: str) -> None:
    """A report's refresh through its own connection (``open_reader(url, refresh=True)`` lends it) goes
    on with the build, a budget at a time, and the report then reads the rollup."""
    url = _v11_postgres(history, pg_url)
    conn: Any = P.connect(url)
    try:
        P.migrate(conn)
        first = R.refresh(conn, lent=True, now_ms=LATER, budget_s=0)
        assert first is not None and first.sessions_build is not None and first.sessions_build.transactions == 1
        assert _pending(conn)[0]
        for _ in range(200):
            if not _pending(conn)[0]:
                break
            R.refresh(conn, lent=True, now_ms=LATER, budget_s=0.05)
        assert _pending(conn) == (False, None)
        R.rebuild(conn, now_ms=LATER)  # the hours written at schema 11 (the refreshes rebuilt some of them)
        _check(conn, history, built=True)
    finally:
        conn.close()


def test_a_store_created_at_12_or_without_sessions_is_built(tmp_path: Path, history: History) -> None:
    """Nothing pending where there is nothing to build: a new file, a v11 file with no session."""
    db = history.record(tmp_path / "new.db")
    conn = connect(db)
    assert _pending(conn) == (False, None) and R.has_kind(conn, R.SESSIONS)
    conn.close()
    conn = connect(_v11_sqlite([], tmp_path / "empty.db"))
    migrate(conn)
    assert _pending(conn) == (False, None)
    conn.close()


def test_refresh_and_hermetry_rollup_build_it(history: History, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    db = _v11_sqlite(history.events, tmp_path / "v11.db")
    assert R.refresh(db, now_ms=LATER) is None  # an older file: the reader's own upgrade comes first
    conn = connect(db)
    migrate(conn)
    conn.close()
    stats = R.refresh(db, now_ms=LATER, budget_s=0)  # nothing dirty, the build pending: one chunk
    assert stats is not None and stats.sessions_build is not None and stats.sessions_build.transactions == 1
    assert stats.as_dict()["sessions_rollup_build"]["built"] is False
    assert main(["--db", str(db), "rollup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sessions_rollup_build"]["built"] is True and out["sessions_rollup_build"]["sessions"] > 0
    conn = connect(db)
    try:
        _check(conn, history, built=True)
    finally:
        conn.close()
    assert R.refresh(db, now_ms=LATER) is None  # built, nothing dirty: nothing to do


_PROBE = """
import json, sys, time
from pathlib import Path
from hermetry.model.events import SessionStarted
from hermetry.recorder.sink import SinkUnavailable
from hermetry.stores.sqlite import SQLiteStore
db, stop, at = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
store = SQLiteStore(db)
store.write([], None)
print("ready", flush=True)
ok, refused, i, errors = [], 0, 0, []
while not stop.exists():  # a live writer: one small batch after another, as fast as it can
    i += 1
    try:  # sessions in the hours being built (their start hours are marked: read raw, rebuilt later)
        store.write([SessionStarted(session_id=f"probe-{i}", started_at_ms=at + i * 997.0, source="probe")], None)
        ok.append(time.time())
    except SinkUnavailable as exc:
        refused += 1
        errors.append(str(exc)[:300])
store.close()
print(json.dumps({"ok": ok, "refused": refused, "errors": errors[:3]}), flush=True)
"""


def test_a_writer_is_never_refused_during_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30,000 sessions over 5 days built beside a process writing sessions as fast as it can into
    the same hours: every write is taken, and the sessions rollup then holds every session."""
    monkeypatch.setattr(R, "BUILD_SESSIONS", (500, 2_000))  # ≥ 15 transactions however fast the machine
    t0 = NOW_MS - 6 * DAY_MS
    n = 30_000
    db = _v11_sqlite([SessionStarted(session_id=f"s{i}", started_at_ms=t0 + i * 5 * DAY_MS / n,
                                     source=("cli", "telegram", "cron")[i % 3], model=f"m{i % 7}")
                      for i in range(n)], tmp_path / "big.db")
    conn = connect(db)
    migrate(conn)
    stop = tmp_path / "stop"
    probe = subprocess.Popen([sys.executable, "-c", _PROBE, str(db), str(stop), str(t0)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
        started = time.time()
        result = R.build_sessions(conn)
        ended = time.time()
    finally:
        stop.touch()
        out, _ = probe.communicate(timeout=60)
    assert probe.returncode == 0
    writer = json.loads(out.strip().splitlines()[-1])
    during = [t for t in writer["ok"] if started <= t <= ended]
    assert result.built and result.transactions >= 15
    assert writer["refused"] == 0, writer["errors"]
    assert len(during) > 20  # it really wrote while the build ran
    R.rebuild(conn, now_ms=LATER)
    whole = R.read(conn, R.SESSIONS, R.plan(conn, t0 - DAY_MS, NOW_MS + DAY_MS), keys=(), measures=False)[()]
    assert whole.counts["sessions"] == n + len(writer["ok"])
    conn.close()
