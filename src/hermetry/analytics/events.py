"""The telemetry file's rows back as canonical events, in time order (streamed, not loaded).

What ``hermetry export --otlp`` replays to a collector and what the Prometheus endpoint folds into
its counters: the same :mod:`hermetry.model.events` the recorder wrote, rebuilt from the store's
own columns (any column the event has; extra or missing columns are tolerated, so an older or newer
file reads fine). Imported (backfill) history comes back like live history, with its ``origin``.

Order: every session first (its lineage and source give later events their context), then turn
starts, model calls, tool calls (by start time), turn ends (by end time) and session ends (by end
time), merged into one stream — so a turn is open when its calls arrive, as it was live.
"""

from __future__ import annotations

import dataclasses
import heapq
import sqlite3
from collections.abc import Iterator
from typing import Any

from hermetry.analytics.query import dialect_of, window_clause
from hermetry.model.events import (
    ApiCall,
    Event,
    SessionEnded,
    SessionStarted,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.stores.reader import Db, open_db

BATCH = 2_000


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[0] for r in conn.execute(dialect_of(conn).columns_sql(table))}


def _rows(conn: sqlite3.Connection, sql: str, params: list[Any]) -> Iterator[Any]:
    """Rows readable by column name: ``sqlite3.Row`` on SQLite, dicts on another store's reader
    (whose rows are plain tuples)."""
    cursor = conn.cursor()
    sqlite = isinstance(conn, sqlite3.Connection)
    if sqlite:
        cursor.row_factory = sqlite3.Row
    cursor.execute(sql, params)
    names = None if sqlite else [d[0] for d in cursor.description]
    while batch := cursor.fetchmany(BATCH):
        if names is None:
            yield from batch
        else:
            yield from (dict(zip(names, row, strict=True)) for row in batch)


def _window(column: str, since_ms: float | None, until_ms: float | None) -> tuple[str, list[Any]]:
    where, params = window_clause(since_ms, until_ms, column, require=True)
    return f" WHERE {where}", params


def _build(cls: type, row: sqlite3.Row, names: set[str], **fixed: Any) -> Any:
    values = {k: row[k] for k in names}  # names are the table's columns
    values.update(fixed)
    if "streamed" in values and values["streamed"] is not None:
        values["streamed"] = bool(values["streamed"])
    return cls(**values)


def stored_events(db: Db, *, since_ms: float | None = None, until_ms: float | None = None) -> Iterator[Event]:
    """Every recorded event whose time falls in ``[since_ms, until_ms)`` (None: unbounded), in
    time order. Sessions are always all yielded first, as context."""
    with open_db(db) as conn:
        if conn is None:
            return
        yield from _sessions(conn)
        yield from (e for _, _, e in heapq.merge(*_streams(conn, since_ms, until_ms), key=lambda x: (x[0], x[1])))


def _sessions(conn: sqlite3.Connection) -> Iterator[Event]:
    cols = _columns(conn, "sessions")
    names = _fields(SessionStarted) & cols
    for row in _rows(conn, "SELECT * FROM sessions ORDER BY started_at_ms NULLS FIRST", []):
        if row["started_at_ms"] is not None:
            yield _build(SessionStarted, row, names)


def _streams(conn: sqlite3.Connection, since_ms: float | None,
             until_ms: float | None) -> list[Iterator[tuple[float, int, Event]]]:
    def stream(sql: str, where_col: str, order: int, make: Any) -> Iterator[tuple[float, int, Event]]:
        where, params = _window(where_col, since_ms, until_ms)
        for row in _rows(conn, sql.format(where=where, col=where_col), params):
            event = make(row)
            if event is not None:
                yield row[where_col], order, event

    turn_start = _fields(TurnStarted) & _columns(conn, "turns")
    turn_end = _fields(TurnEnded) & _columns(conn, "turns")
    api = _fields(ApiCall) & _columns(conn, "api_calls")
    tool = _fields(ToolCall) & _columns(conn, "tool_calls")
    session_end = _fields(SessionEnded) & _columns(conn, "sessions")
    return [
        stream("SELECT * FROM turns{where} ORDER BY {col} NULLS FIRST", "started_at_ms", 0,
               lambda r: _build(TurnStarted, r, turn_start)),
        stream("SELECT * FROM api_calls{where} ORDER BY {col} NULLS FIRST", "started_at_ms", 1,
               lambda r: _build(ApiCall, r, api)),
        stream("SELECT * FROM tool_calls{where} ORDER BY {col} NULLS FIRST", "started_at_ms", 1,
               lambda r: _build(ToolCall, r, tool)),
        stream("SELECT * FROM turns{where} AND outcome IS NOT NULL ORDER BY {col} NULLS FIRST", "ended_at_ms", 2,
               lambda r: _build(TurnEnded, r, turn_end)),
        stream("SELECT * FROM sessions{where} AND outcome IS NOT NULL ORDER BY {col} NULLS FIRST", "ended_at_ms", 3,
               lambda r: _build(SessionEnded, r, session_end - {"supersedes"})),
    ]


def recorder_drops(db: Db) -> int:
    """Events every recording process had to drop (the ``recorder_runs`` ledger), summed."""
    with open_db(db) as conn:
        if conn is None:
            return 0
        try:
            value = conn.execute("SELECT COALESCE(SUM(events_dropped), 0) FROM recorder_runs").fetchone()[0]
        except sqlite3.Error:
            return 0
        return int(value or 0)


def appended_calls(conn: sqlite3.Connection, table: str,
                   after_rowid: int) -> Iterator[tuple[int, Any, str | None, str | None, str | None]]:
    """The model calls (``api_calls``) or tool calls (``tool_calls``) stored after ``after_rowid``,
    in rowid order: ``(rowid, event, session source, session model, session provider)`` — what the
    Prometheus endpoint folds incrementally (analytics/metrics.py). These rows are written once
    (whatever rewrites them — reprice, import — is detected there)."""
    yield from _calls(conn, table, "c.rowid > ? ORDER BY c.rowid", [after_rowid])


def calls_by_id(conn: sqlite3.Connection, table: str,
                ids: list[str]) -> Iterator[tuple[int, Any, str | None, str | None, str | None]]:
    """The model calls or tool calls with these ids (``api_call_id``/``tool_call_id``), as
    :func:`appended_calls` yields them (what a prune removes from the served counters)."""
    pk = "api_call_id" if table == "api_calls" else "tool_call_id"
    yield from _calls(conn, table, f"c.{pk} IN ({', '.join('?' for _ in ids)})", list(ids))


def _calls(conn: sqlite3.Connection, table: str, where: str,
           params: list[Any]) -> Iterator[tuple[int, Any, str | None, str | None, str | None]]:
    cls = ApiCall if table == "api_calls" else ToolCall
    names = _fields(cls) & _columns(conn, table)
    sql = (f"SELECT c.rowid AS h_rowid, c.*, s.source AS h_source, s.model AS h_model, s.provider AS h_provider "
           f"FROM {table} c LEFT JOIN sessions s ON s.session_id = c.session_id WHERE {where}")
    for row in _rows(conn, sql, params):
        yield row["h_rowid"], _build(cls, row, names), row["h_source"], row["h_model"], row["h_provider"]


def exporter_drops(db: Db) -> dict[str, int]:
    """What each exporter could not deliver, summed over every recording process's runs (the
    ``exporter_runs`` ledger: events it refused + spans/points it could not send)."""
    with open_db(db) as conn:
        if conn is None:
            return {}
        try:
            rows = conn.execute("SELECT exporter, COALESCE(SUM(events_dropped + spans_dropped + points_dropped), 0) "
                                "FROM exporter_runs GROUP BY exporter ORDER BY exporter").fetchall()
        except sqlite3.Error:
            return {}  # an older file: no exporter ledger yet
        return {str(name): int(n or 0) for name, n in rows}
