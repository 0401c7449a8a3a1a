"""The benchmarks' big histories are written with bulk INSERTs of final rows (bench/_fixtures.py),
not through the store's write path — so they must hold exactly what ``write_events`` would write
for the same events, or the benchmarks measure a different store."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._fixtures import build_rollups, bulk_write, history_sessions  # noqa: E402

from hermetry.stores.sqlite import connect, migrate, write_events  # noqa: E402

TABLES = {"sessions": "session_id", "turns": "turn_id", "api_calls": "api_call_id", "tool_calls": "tool_call_id"}


def _rows(path: Path, table: str, key: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_xinfo({table})") if r[1] != "updated_at_ms"]
        return conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}").fetchall()
    finally:
        conn.close()


def test_bulk_fixture_rows_equal_what_write_events_writes(tmp_path: Path) -> None:
    until_ms = time.time() * 1000
    sessions = list(history_sessions(3_000, until_ms=until_ms))
    bulk = tmp_path / "bulk.db"
    meta = bulk_write(bulk, sessions, batch_calls=700)
    reference = tmp_path / "write_events.db"
    conn = connect(reference)
    migrate(conn)
    for events in sessions:
        conn.execute("BEGIN IMMEDIATE")
        write_events(conn, events)
        conn.execute("COMMIT")
    conn.close()
    for table, key in TABLES.items():
        expected = _rows(reference, table, key)
        assert expected, table
        assert _rows(bulk, table, key) == expected, table
        assert meta[table] == len(expected)
    assert meta["api_calls"] >= 3_000
    # the hours the write path marks for its rollups are marked too, and the rollups built from
    # either file are the same rows
    # the same hours marked (how often each was marked, ``seq``, depends on the batches)
    assert [r[0] for r in _rows(bulk, "rollup_dirty", "hour")] == [r[0] for r in _rows(reference, "rollup_dirty", "hour")]
    for path in (bulk, reference):
        c = connect(path)
        assert build_rollups(c) is not None
        c.close()
    for table in ("rollup_turns", "rollup_api", "rollup_tools"):
        columns = [r[1] for r in sqlite3.connect(bulk).execute(f"PRAGMA table_info({table})")]
        expected = _rows(reference, table, ", ".join(columns))
        assert expected and _rows(bulk, table, ", ".join(columns)) == expected, table
    # the bulk file keeps the store's indexes (dropped while inserting, rebuilt at the end)
    def indexes(path: Path) -> set[str]:
        c = sqlite3.connect(path)
        try:
            return {r[0] for r in c.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        finally:
            c.close()
    assert indexes(bulk) == indexes(reference)
    # every row lies in the window the fixture reports
    c = sqlite3.connect(bulk)
    try:
        lo, hi = c.execute("SELECT MIN(started_at_ms), MAX(started_at_ms) FROM api_calls").fetchone()
    finally:
        c.close()
    assert meta["since_ms"] <= lo and hi < meta["until_ms"]
