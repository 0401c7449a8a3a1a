"""hermetry prune: raw rows older than an age go, the rollups keep the history's figures; reports
over pruned time read the rollups only and say so; idempotent; both stores; one line on bad input."""

from __future__ import annotations

import json
import re
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


def _session_truth(history: History) -> dict[str, dict[str, int]]:
    """Per session, what the test injected: turns, model calls, total tokens."""
    truth = {sid: {"turns": 0, "api_calls": 0, "tokens": 0} for sid in history.sessions()}
    for t in history.turns():
        truth[t.session_id]["turns"] += 1
    for c in history.api_calls():
        truth[c.session_id]["api_calls"] += c.call_count or 1
        truth[c.session_id]["tokens"] += sum(getattr(c, k) or 0 for k in (
            "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"))
    return truth


def test_pruned_sessions_have_null_totals_not_zeros(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sessions` and `show` after a prune: a session started before the boundary has unknown
    (null) totals and says it was pruned; one after it keeps the totals the test injected (R10)."""
    from hermetry.analytics.sessions import list_sessions, session_detail

    history = _history(seed=35)
    db = history.record(tmp_path / "telemetry.db")
    truth = _session_truth(history)
    starts = {sid: e.started_at_ms for sid, e in history.sessions().items()}
    old = sorted(sid for sid, t in starts.items() if t < BOUNDARY)
    new = sorted(sid for sid, t in starts.items() if t >= BOUNDARY)
    assert old and new and any(truth[s]["turns"] for s in old)

    def listed() -> dict[str, dict[str, Any]]:
        r = list_sessions(db, WHOLE.since_ms, LATER, limit=10_000, roll_up=False)
        assert r["count"] == len(starts)
        return {s["session_id"]: s for s in r["sessions"]}

    before = listed()
    for sid in starts:  # the product's own figures before the prune match the injection
        got = before[sid]
        assert (got["turns"], got["api_calls"], got["tokens"]["total_tokens"]) == (
            truth[sid]["turns"], truth[sid]["api_calls"], truth[sid]["tokens"]), sid
        assert got["pruned"] is False

    conn = connect(db)
    try:
        rollups.prune(conn, AGE_MS, now_ms=LATER)
    finally:
        conn.close()
    after = listed()
    for sid in old:
        got = after[sid]
        assert got["pruned"] is True, sid
        assert got["turns"] is None and got["api_calls"] is None and got["tool_calls"] is None
        assert got["tokens"]["total_tokens"] is None and got["cost"]["known_usd"] is None
        assert got["outcome"] == before[sid]["outcome"]  # the session row itself is kept
    for sid in new:
        got = after[sid]
        assert got["pruned"] is False
        assert (got["turns"], got["api_calls"], got["tokens"]["total_tokens"]) == (
            truth[sid]["turns"], truth[sid]["api_calls"], truth[sid]["tokens"]), sid

    gone, kept = session_detail(db, old[0]), session_detail(db, new[-1])
    assert gone["session"]["pruned"] and gone["totals"]["pruned"] and gone["totals"]["turns"] is None
    assert gone["totals"]["time"]["wall_ms"] is None and gone["pruned_before_ms"] == BOUNDARY
    assert not kept["totals"]["pruned"] and kept["totals"]["turns"] == truth[new[-1]]["turns"]
    assert kept["totals"]["api_calls"] == truth[new[-1]]["api_calls"]

    # rolled up: a conversation with a session before the boundary is pruned as a whole
    rolled = list_sessions(db, WHOLE.since_ms, LATER, limit=10_000)
    for s in rolled["sessions"]:
        assert s["pruned"] is (s["started_at_ms"] < BOUNDARY)  # (a conversation's sessions start after its root)
        assert (s["turns"] is None) is s["pruned"]

    # the text says so, never "0"
    assert main(["--db", str(db), "sessions", "--since", "2025-01-01", "--until", "2025-01-16", "--limit", "500",
                 "--flat"]) == 0
    text = capsys.readouterr().out
    lines = {sid: next(line for line in text.splitlines() if sid in line) for sid in (old[0], new[-1])}
    assert "pruned" in lines[old[0]].split() and " 0 " not in lines[old[0]]
    assert "pruned" not in lines[new[-1]]
    assert "pruned rows deleted by hermetry prune (rollups keep the totals" in " ".join(text.split())
    assert main(["--db", str(db), "show", old[0]]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"^turns\W+pruned$", shown, re.M) and re.search(r"^tokens\W+pruned$", shown, re.M), shown
    assert "pruned (rollups keep the totals)" in " ".join(shown.split())
    assert main(["--db", str(db), "show", new[-1]]) == 0
    assert "pruned" not in capsys.readouterr().out
