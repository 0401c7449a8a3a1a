"""hermetry prune: raw rows older than an age go, the rollups keep the history's figures; reports
over pruned time read the rollups only and say so; idempotent; both stores; one line on bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import report as report_module
from hermetry.analytics.report import Query, insights
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.recorder.recorder import Recorder
from hermetry.stores import rollups
from hermetry.stores.postgres import PostgresStore
from hermetry.stores.postgres import connect as pg_connect
from hermetry.stores.sqlite import connect, migrate
from hermetry.surfaces.cli import main
from hermetry.testing.history import NOW_MS, History, synthetic_history
from test_rollups_report import same

LATER = NOW_MS + 2 * HOUR_MS
AGE_MS = 7 * DAY_MS + 2 * HOUR_MS  # the boundary: LATER - AGE = NOW - 7 days, a whole hour
BOUNDARY = NOW_MS - 7 * DAY_MS
WHOLE = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=NOW_MS, group_by=("source",))
OLD = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=BOUNDARY, group_by=("model",))


def _raw_counts(conn: Any, before: float) -> dict[str, int]:
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE started_at_ms < ?", (before,)).fetchone()[0]
            for t in ("turns", "api_calls", "tool_calls")}


def _history(seed: int = 31) -> History:
    return synthetic_history(seed=seed, days=14, sessions_per_day=6)


def _check_prune(conn: Any, db: Any, history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 10**12)
    before_whole, before_old = insights(db, WHOLE), insights(db, OLD)  # every raw row, exact
    assert before_whole["method"]["path"] == "exact"
    injected = {"turns": sum(1 for t in history.turns() if t.started_at_ms < BOUNDARY),
                "api_calls": sum(1 for c in history.api_calls() if c.started_at_ms < BOUNDARY),
                "tool_calls": sum(1 for c in history.tool_calls() if c.started_at_ms < BOUNDARY)}
    assert all(injected.values())
    dry = rollups.prune(conn, AGE_MS, now_ms=LATER, dry_run=True)
    assert dry["rows"] == injected and dry["pruned_before_ms"] == BOUNDARY
    assert _raw_counts(conn, BOUNDARY) == injected and rollups.pruned_before_ms(conn) is None  # nothing changed

    done = rollups.prune(conn, AGE_MS, now_ms=LATER)
    assert done["rows"] == injected and done["pruned_before_ms"] == BOUNDARY
    assert _raw_counts(conn, BOUNDARY) == dict.fromkeys(injected, 0)
    assert rollups.pruned_before_ms(conn) == BOUNDARY
    sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    assert sessions == len(history.sessions())  # sessions kept

    # reports over pruned time: from the rollups (even when asked for every row), the same figures
    for before, q in ((before_old, OLD), (before_whole, WHOLE)):
        for exact in (False, True):
            after = insights(db, q, exact=exact)
            assert after["method"]["path"] == "rollups"
            assert after["method"]["pruned_before"] == before["window"]["until"] if q is OLD else True
            before.pop("activity", None), after.pop("activity", None)
            same(before, after)

    again = rollups.prune(conn, AGE_MS, now_ms=LATER)  # idempotent
    assert again["rows"] == dict.fromkeys(injected, 0) and rollups.pruned_before_ms(conn) == BOUNDARY


def test_prune_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history = _history()
    db = history.record(tmp_path / "telemetry.db")
    conn = connect(db)
    migrate(conn)
    try:
        _check_prune(conn, db, history, monkeypatch)
    finally:
        conn.close()


def test_prune_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    history = _history(seed=32)
    rec = Recorder(lambda: PostgresStore(pg_url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    conn = pg_connect(pg_url)
    try:
        _check_prune(conn, pg_url, history, monkeypatch)
    finally:
        conn.close()


def test_prune_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _history(seed=33).record(tmp_path / "telemetry.db")
    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM api_calls").fetchone()[0]
    assert main(["--db", str(db), "prune", "--older-than", "1d", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["schema"] == "hermetry.prune.v1" and dry["dry_run"] and dry["rows"]["api_calls"] == n  # all older than a day
    assert main(["--db", str(db), "prune", "--older-than", "1d"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("deleted") and f"{n:,} model call rows" in out and out.count("\n") == 2
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM api_calls").fetchone()[0] == 0
    assert main(["--db", str(db), "insights", "--since", "2025-01-01", "--until", "2025-01-15T12:00:00Z", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["api_calls"]["count"] == n and report["method"]["path"] == "rollups"


@pytest.mark.parametrize("age", ["90x", "-3d", "0", "", "d"])
def test_prune_bad_age_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], age: str) -> None:
    db = _history(seed=34).record(tmp_path / "telemetry.db")
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", str(db), "prune", "--older-than", age])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--older-than" in err[0], err  # ("-3d" reads as an option to argparse)
    assert age.startswith("-") or "90d" in err[0], err


def test_import_into_postgres(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`hermetry import` with the store a PostgreSQL URL writes there (and fills its rollups)."""
    from hermes_state import SessionDB

    home = tmp_path / "hermes"
    home.mkdir()
    monkeypatch.setenv("HERMES_HOME", str(home))
    monkeypatch.setenv("HERMETRY_DB", pg_url)
    db = SessionDB(home / "state.db")
    for i in range(3):
        db.create_session(f"s{i}", "cli", model="m")
        db.append_message(f"s{i}", "user", "question")
        db.append_message(f"s{i}", "assistant", "answer")
        db.update_token_counts(f"s{i}", input_tokens=100 * (i + 1), output_tokens=10, model="m",
                               estimated_cost_usd=0.0, cost_status="unknown", api_call_count=1)
        db.end_session(f"s{i}", "cli_close")
    db.close()
    for expected_new in (3, 0):  # idempotent there too
        assert main(["import", "--json"]) == 0
        (r,) = json.loads(capsys.readouterr().out)["results"]
        assert r["error"] is None and r["sessions_new"] == expected_new
    conn = pg_connect(pg_url)
    try:
        assert conn.execute("SELECT SUM(input_tokens), COUNT(*) FROM api_calls").fetchone() == (600, 3)
    finally:
        conn.close()
    assert not (home / "hermetry" / "telemetry.db").exists()  # nothing went to a local file instead
