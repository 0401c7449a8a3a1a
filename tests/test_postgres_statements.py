"""The write path's statements, pinned: every one of them runs here on a real PostgreSQL.

The PostgreSQL store runs the embedded store's write and merge rules (stores/sqlite.py), its
reconciler and its migrations; the statements are portable SQL, built with the connection's
dialect where the engines differ (stores/dialect.py), and the connection only converts ``?``
parameters. This test drives every event kind through ``apply_batch``, then ``reconcile`` and
``migrate``, records each statement psycopg was given, and compares that list with the golden
file ``tests/golden/postgres_write_statements.sql``.

A golden list rather than an assertion against a set kept in the code: a registry of "the
write statements" would be a second definition of them; the golden file is what PostgreSQL
actually ran, so any change to write-path SQL shows up in review as a diff of real PostgreSQL
text, and this test fails until it has run on a real server. Regenerate it, after reading the
diff, with ``HERMETRY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_postgres_statements.py``.

The same scenario also runs on SQLite, and the figures the scenario's events fix (earliest
start, the superseding end, the reconciled outcomes, …) must be those the test injected, on
both engines.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any, get_args

import pytest

from hermetry.model.events import (
    ApiCall,
    CronRunFinished,
    Event,
    SessionEnded,
    SessionReopened,
    SessionStarted,
    SubagentLinked,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.model.outcomes import REASON_LAST_CALL_FAILED, REASON_NO_SESSION_END
from hermetry.stores.postgres import apply_batch, connect, migrate
from hermetry.stores.sqlite import connect as sqlite_connect
from hermetry.stores.sqlite import migrate as sqlite_migrate
from hermetry.stores.sqlite import write_events
from hermetry.stores.sqlite_reconcile import DEFAULT_GRACE_S, reconcile
from hermetry.stores.sqlite_util import transaction
from pg_helpers import T0_MS

GOLDEN = Path(__file__).parent / "golden" / "postgres_write_statements.sql"
CRON_SID = "cron_j1_20250115_000000"


def _batch() -> list[Any]:
    """One batch with every event kind, arranged so that every branch of the write path runs."""
    t = T0_MS
    return [
        SessionStarted(session_id="s1", started_at_ms=t + 100, source="cli", session_type="interactive",
                       model="m", provider="p", host="h1"),
        # the same session reported again with an earlier start: the earliest wins (dialect.least)
        SessionStarted(session_id="s1", started_at_ms=t + 10, source="cli", origin="backfill"),
        TurnStarted(turn_id="t1", session_id="s1", started_at_ms=t + 20),
        ApiCall(api_request_id="r1", attempt=0, session_id="s1", turn_id="t1", started_at_ms=t + 30,
                latency_ms=5.0, status="error", model="m", provider="p", error_type="http_500"),
        ToolCall(tool_call_id="c1", session_id="s1", turn_id="t1", tool_name="terminal",
                 started_at_ms=t + 31, latency_ms=1.0, status="ok"),
        # a new turn closes the open one: its last call failed, so it errored, at that call's end
        TurnStarted(turn_id="t2", session_id="s1", started_at_ms=t + 40),
        TurnEnded(turn_id="t2", session_id="s1", ended_at_ms=t + 50, outcome="completed"),
        SessionEnded(session_id="s1", ended_at_ms=t + 60, end_reason="cli_close", outcome="completed"),
        # a later end naming the earlier one as superseded replaces it (dialect.strpos)
        SessionEnded(session_id="s1", ended_at_ms=t + 70, end_reason="new_session", outcome="reset",
                     supersedes=("cli_close",)),
        # a cron run: Hermes' status for the job lands on its latest session, and the rule reruns
        SessionStarted(session_id=CRON_SID, started_at_ms=t + 200, source="cron", session_type="cron"),
        TurnStarted(turn_id="ct", session_id=CRON_SID, started_at_ms=t + 201),
        TurnEnded(turn_id="ct", session_id=CRON_SID, ended_at_ms=t + 250, outcome="completed"),
        SessionEnded(session_id=CRON_SID, ended_at_ms=t + 260, end_reason="cron_complete", outcome="completed"),
        CronRunFinished(job_id="j1", finished_at_ms=t + 300, status="error"),
        SessionStarted(session_id="s3", started_at_ms=t + 400, source="cli"),
        SessionEnded(session_id="s3", ended_at_ms=t + 410, end_reason="cli_close", outcome="completed"),
        SessionReopened(session_id="s3", reopened_at_ms=t + 420),
        SubagentLinked(child_session_id="s4", parent_session_id="s1", parent_turn_id="t2", linked_at_ms=t + 45),
        # left open by a process that died: the reconciler closes it
        SessionStarted(session_id="s5", started_at_ms=t + 500, source="cli"),
        TurnStarted(turn_id="t5", session_id="s5", started_at_ms=t + 500),
        ApiCall(api_request_id="r5", attempt=0, session_id="s5", turn_id="t5", started_at_ms=t + 501,
                latency_ms=2.0, status="error"),
    ]


RUN = {"run_id": "run1", "host": "h1", "pid": 1, "started_at_ms": T0_MS, "events_dropped": 0,
       "hermetry_version": "test",
       "exporters": [{"name": "otlp", "events_dropped": 0, "spans_dropped": 4, "points_dropped": 9,
                      "failed_batches": 2, "last_error": "connection refused"}]}
NOW_MS = T0_MS + DEFAULT_GRACE_S * 1000 + 10_000  # every open turn is stale by then


def _figures(execute: Any) -> dict[str, Any]:
    def one(sql: str, *params: Any) -> Any:
        return tuple(execute(sql, params))

    return {
        "s1": one("SELECT started_at_ms, ended_at_ms, end_reason, outcome FROM sessions WHERE session_id = ?", "s1"),
        "t1": one("SELECT ended_at_ms, outcome, outcome_reason FROM turns WHERE turn_id = ?", "t1"),
        "cron": one("SELECT run_status, outcome FROM sessions WHERE session_id = ?", CRON_SID),
        "s3": one("SELECT ended_at_ms, end_reason FROM sessions WHERE session_id = ?", "s3"),
        "s4": one("SELECT parent_session_id, lineage FROM sessions WHERE session_id = ?", "s4"),
        "t5": one("SELECT ended_at_ms, outcome, outcome_reason FROM turns WHERE turn_id = ?", "t5"),
        "s5": one("SELECT end_reason, outcome FROM sessions WHERE session_id = ?", "s5"),
    }


#: What the scenario's events fix (the injected truth), on both engines.
EXPECTED = {
    "s1": (T0_MS + 10, T0_MS + 70, "new_session", "reset"),
    "t1": (T0_MS + 35, "errored", REASON_LAST_CALL_FAILED),
    "s3": (None, None),
    "s4": ("s1", "subagent"),
    "t5": (T0_MS + 503, "errored", REASON_LAST_CALL_FAILED),
    "s5": (REASON_NO_SESSION_END, "abandoned"),  # not a one-run session: its own outcome
}


class _Recording:
    """The psycopg connection, recording each statement it is given (execute and executemany)."""

    def __init__(self, raw: Any, log: list[str]) -> None:
        self._raw, self._log = raw, log

    def execute(self, sql: str, params: Any = None, **kw: Any) -> Any:
        self._log.append(sql)
        return self._raw.execute(sql, params, **kw)

    def cursor(self, *a: Any, **kw: Any) -> Any:
        return _RecordingCursor(self._raw.cursor(*a, **kw), self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _RecordingCursor:
    def __init__(self, cur: Any, log: list[str]) -> None:
        self._cur, self._log = cur, log

    def execute(self, sql: str, params: Any = None, **kw: Any) -> Any:
        self._log.append(sql)
        return self._cur.execute(sql, params, **kw)

    def executemany(self, sql: str, rows: Any, **kw: Any) -> Any:
        self._log.append(sql)
        return self._cur.executemany(sql, rows, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _normalized(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def _render(phases: dict[str, list[str]]) -> str:
    out = ["-- Every statement the PostgreSQL store's write path ran in tests/test_postgres_statements.py,",
           "-- in the order first run (generated: HERMETRY_UPDATE_GOLDEN=1; do not edit by hand)."]
    for phase, statements in phases.items():
        out.append(f"\n-- {phase}")
        seen: dict[str, None] = {}
        for s in statements:
            seen.setdefault(_normalized(s), None)
        out += [f"{s};" for s in seen]
    return "\n".join(out) + "\n"


def test_the_scenario_covers_every_event_kind() -> None:
    assert {type(e) for e in _batch()} == set(get_args(Event))


def test_every_write_path_statement_runs_on_postgresql_and_matches_the_golden_list(pg_url: str) -> None:
    log: list[str] = []
    conn = connect(pg_url, host="h1")
    conn.raw = _Recording(conn.raw, log)
    phases: dict[str, list[str]] = {}
    try:
        migrate(conn)
        phases["migrate (a new database)"], log[:] = list(log), []
        batch = _batch()
        assert apply_batch(conn, batch, RUN, batch_id="b1", spooled_at_ms=T0_MS) == len(batch)
        assert apply_batch(conn, batch, RUN, batch_id="b1", spooled_at_ms=T0_MS) == 0  # forwarded twice
        apply_batch(conn, batch[:3], None)  # a retried batch, no ledger line, no batch id
        phases["apply_batch (every event kind, twice, then a retry)"], log[:] = list(log), []
        assert reconcile(conn, now_ms=NOW_MS) == {"turns_closed": 1, "sessions_closed": 1}  # type: ignore[arg-type]
        phases["reconcile (a dead process's open turn and session)"], log[:] = list(log), []
        migrate(conn)
        phases["migrate (already current)"] = list(log)
        figures = _figures(lambda sql, p: conn.execute(sql, p).fetchone())
    finally:
        conn.close()

    for key, want in EXPECTED.items():
        assert figures[key] == want, key
    assert figures["cron"][0] == "error" and figures["cron"][1] not in (None, "completed"), figures["cron"]

    text = _render(phases)
    if os.environ.get("HERMETRY_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: run with HERMETRY_UPDATE_GOLDEN=1 to create it")
    assert text == GOLDEN.read_text(), (
        "the PostgreSQL write path ran other statements than tests/golden/postgres_write_statements.sql "
        "lists: read the diff, then regenerate it with HERMETRY_UPDATE_GOLDEN=1")


def test_the_golden_list_holds_no_sqlite_only_sql() -> None:
    """What PostgreSQL ran is PostgreSQL's: no SQLite-only construct reached it untranslated."""
    text = GOLDEN.read_text()
    for construct in (r"\binstr\(", r"\bIFNULL\(", r"\bBEGIN IMMEDIATE\b", r"\bNOT INDEXED\b", r"\browid\b",
                      r"\bsqlite_master\b", r"\bPRAGMA\b", r"\bMIN\([^()]*(\([^()]*\))*[^()]*,",
                      r"\?\d*"):
        assert not re.search(construct, text), construct


def test_the_same_scenario_on_sqlite_gives_the_same_figures(tmp_path: Path) -> None:
    conn = sqlite_connect(tmp_path / "t.db")
    try:
        sqlite_migrate(conn)
        batch = _batch()
        with transaction(conn):
            write_events(conn, batch)
        assert reconcile(conn, now_ms=NOW_MS) == {"turns_closed": 1, "sessions_closed": 1}
        figures = _figures(lambda sql, p: conn.execute(sql, p).fetchone())
    finally:
        conn.close()
    for key, want in EXPECTED.items():
        assert figures[key] == want, key
    assert figures["cron"][0] == "error" and figures["cron"][1] not in (None, "completed"), figures["cron"]


def test_sqlite_runs_the_same_statements_but_for_the_dialect_methods(tmp_path: Path) -> None:
    """The two engines' write statements differ only where a dialect method put its own text."""
    from hermetry.stores.dialect import SQLITE
    from hermetry.stores.postgres import POSTGRES
    from hermetry.stores.sqlite import _dialect_sql

    for lite, pg in zip(_dialect_sql(SQLITE), _dialect_sql(POSTGRES), strict=True):
        assert lite != pg
        assert re.sub(r"\b(MIN|MAX|instr)\(", "F(", lite) == re.sub(r"\b(LEAST|GREATEST|strpos)\(", "F(", pg)
    assert sqlite3.sqlite_version_info >= (3, 30)  # NULLS FIRST / LAST
