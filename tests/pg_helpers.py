"""Helpers for the PostgreSQL tests: read rows, a small session whose every figure is known, and a
history recorded into each store with its rollups built (the both-stores fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from hermetry.model.events import (
    ApiCall,
    SessionEnded,
    SessionStarted,
    ToolCall,
    TurnEnded,
    TurnStarted,
)

T0_MS = 1_736_900_000_000.0


def pg_rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    """One query on the database at ``url``; rows as dicts."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql, params or None)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def session_events(sid: str, calls: int, host: str, t0: float = T0_MS) -> list[Any]:
    """One completed session on ``host``: one turn, ``calls`` model calls (call i: i input and
    2·i output tokens, 10 + i ms) and as many tool calls."""
    out: list[Any] = [SessionStarted(session_id=sid, started_at_ms=t0, source="cli", model="m", provider="p",
                                     host=host),
                      TurnStarted(turn_id=f"{sid}-t", session_id=sid, started_at_ms=t0)]
    for i in range(calls):
        out.append(ApiCall(api_request_id=f"{sid}-r{i}", attempt=0, session_id=sid, turn_id=f"{sid}-t",
                           started_at_ms=t0 + i, latency_ms=10.0 + i, status="ok", model="m", provider="p",
                           input_tokens=i, output_tokens=2 * i))
        out.append(ToolCall(tool_call_id=f"{sid}-c{i}", session_id=sid, turn_id=f"{sid}-t", tool_name="terminal",
                            started_at_ms=t0 + i, latency_ms=1.0, status="ok"))
    out += [TurnEnded(turn_id=f"{sid}-t", session_id=sid, ended_at_ms=t0 + calls + 10, outcome="completed"),
            SessionEnded(session_id=sid, ended_at_ms=t0 + calls + 20, end_reason="cli_close", outcome="completed")]
    return out


def recorded_sqlite(history: Any, path: Path, now_ms: float) -> Path:
    """``history`` recorded into a new SQLite file at ``path``, migrated, rollups built as of ``now_ms``."""
    from hermetry.stores import rollups
    from hermetry.stores.sqlite import connect, migrate

    db = history.record(path)
    conn = connect(db)
    try:
        migrate(conn)
        rollups.rebuild(conn, now_ms=now_ms)
    finally:
        conn.close()
    return db


def recorded_postgres(history: Any, url: str, now_ms: float, host: str = "h1") -> str:
    """``history``'s events written into the PostgreSQL database at ``url`` through the recorder
    (nothing dropped), rollups built as of ``now_ms``; returns ``url``."""
    from hermetry.recorder.recorder import Recorder
    from hermetry.stores import rollups
    from hermetry.stores.postgres import PostgresStore
    from hermetry.stores.postgres import connect as pg_connect

    rec = Recorder(lambda: PostgresStore(url, host=host), register_atexit=False, flush_interval_s=0.01, host=host)
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    assert rec.stats().dropped == 0
    conn = pg_connect(url)
    try:
        rollups.rebuild(conn, now_ms=now_ms)
    finally:
        conn.close()
    return url
