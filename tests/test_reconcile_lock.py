"""The reconciler beside live writers (review N10): it looks for stale turns and sessions without
the write lock, takes the lock only to close what it found, and the store's writers run it at
most once per ``STORE_EVERY_S`` between them — not at every process's first write."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hermetry.model.events import ApiCall, SessionEnded, SessionStarted, TurnEnded, TurnStarted
from hermetry.stores.sqlite import SQLiteStore, connect
from hermetry.stores.sqlite_reconcile import (
    DEFAULT_GRACE_S,
    RECONCILED_AT,
    STORE_EVERY_S,
    reconcile,
)

NOW = time.time() * 1000
OLD = NOW - 2 * DEFAULT_GRACE_S * 1000  # idle for longer than the grace: stale


def _open_turn(sid: str, at: float) -> list[object]:
    """A session whose process died mid-turn: its one model call succeeded, no turn end came."""
    return [SessionStarted(session_id=sid, started_at_ms=at, source="cli"),
            TurnStarted(turn_id=f"{sid}-t", session_id=sid, started_at_ms=at),
            ApiCall(api_request_id=f"{sid}-r", attempt=0, session_id=sid, turn_id=f"{sid}-t",
                    started_at_ms=at + 1, latency_ms=5.0, status="ok")]


def _done(sid: str, at: float) -> list[object]:
    return [SessionStarted(session_id=sid, started_at_ms=at, source="cli"),
            TurnStarted(turn_id=f"{sid}-t", session_id=sid, started_at_ms=at),
            TurnEnded(turn_id=f"{sid}-t", session_id=sid, ended_at_ms=at + 10, outcome="completed"),
            SessionEnded(session_id=sid, ended_at_ms=at + 20, end_reason="cli_close", outcome="completed")]


def _write(db: Path, events: list[object]) -> None:
    store = SQLiteStore(db)
    try:
        store.write(events)  # type: ignore[arg-type]
    finally:
        store.close()


def _turn(db: Path, turn_id: str) -> tuple[object, object]:
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute("SELECT outcome, outcome_reason FROM turns WHERE turn_id = ?", (turn_id,)).fetchone())
    finally:
        conn.close()


def test_looking_takes_no_write_lock(tmp_path: Path) -> None:
    """With another process holding the write lock, a pass that finds nothing stale finishes (it
    used to wait out the busy timeout and fail); one that finds something closes exactly that once
    the lock is free, its conditions checked again."""
    db = tmp_path / "telemetry.db"
    _write(db, _done("fresh", NOW - 60_000))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer's batch in progress
    conn = connect(db)
    try:
        assert reconcile(conn) == {"turns_closed": 0, "sessions_closed": 0}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _write(db, _open_turn("dead", OLD))
    assert reconcile(conn) == {"turns_closed": 1, "sessions_closed": 1}
    assert _turn(db, "dead-t") == ("abandoned", "reconciled:no_turn_end")
    assert reconcile(conn) == {"turns_closed": 0, "sessions_closed": 0}  # nothing left to close
    conn.close()


def test_the_stores_writers_reconcile_once_per_period_between_them(tmp_path: Path) -> None:
    db = tmp_path / "telemetry.db"
    _write(db, _done("first", NOW - 60_000))  # the first writer's open: a pass, recorded
    conn = connect(db)
    try:
        (at,) = conn.execute("SELECT value FROM rollup_meta WHERE key = ?", (RECONCILED_AT,)).fetchone()
        assert NOW - 60_000 <= at <= time.time() * 1000
        _write(db, _open_turn("dead", OLD))
        _write(db, [])  # another writer process opens the store within the period: no pass
        assert _turn(db, "dead-t") == (None, None)
        # once the period is over, the next writer's open reconciles
        conn.execute("UPDATE rollup_meta SET value = ? WHERE key = ?", (at - STORE_EVERY_S * 1000 - 1, RECONCILED_AT))
    finally:
        conn.close()
    _write(db, [])
    assert _turn(db, "dead-t") == ("abandoned", "reconciled:no_turn_end")
