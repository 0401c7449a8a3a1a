"""The one query layer every analytics job reads the store through.

* :class:`Query` — what to report on: a time window (epoch ms, ``since <= t < until``), filters
  and breakdowns (:data:`DIMENSIONS`, :data:`FILTERS`); every surface builds one and every
  analytics call (insights, compare, sessions, series, export, reprice) takes one or its window.
* :class:`Table` / :data:`TURNS`, :data:`API_CALLS`, :data:`TOOL_CALLS` — where each dimension
  lives in each table.
* :class:`Scanner` — the one window/filter SQL builder: ``scan.scope(table, dims)`` gives the
  ``FROM … WHERE …`` (and parameters) of a table's rows in the window after the filters;
  :func:`window_sql` is the bare window for jobs that have no filters (export, reprice).
* :class:`Dialect` — the SQL dialect seam (defined in :mod:`hermetry.stores.dialect`, where the
  write path uses it too; re-exported here). Everything the analytics write is portable SQL
  with ``?`` parameters — ``COALESCE``, ``CASE WHEN p THEN 1 ELSE 0 END`` inside ``SUM`` (never
  ``SUM(predicate)``), ``NULLS FIRST``/``NULLS LAST`` on every ``ORDER BY`` term that may be NULL,
  ``INSERT … ON CONFLICT … DO UPDATE/NOTHING`` — except what a dialect method says:

  - ``d.least(a, b, …)`` / ``d.greatest(a, b, …)``: scalar min / max of never-NULL arguments;
  - ``d.strpos(s, sub)``: 1-based position of ``sub`` in ``s``, 0 when absent;
  - ``d.trunc_int(x)``: ``x`` as an integer, truncated toward zero;
  - ``d.day_bucket(col_ms)``: the UTC day number of an epoch-ms column;
  - ``d.begin(immediate=True)``: the statement opening a (write) transaction;
  - ``d.has_table_sql()``: a query with one ``?`` (a table name), a row iff the table exists;
  - ``d.columns_sql(table)``: ``(name, declared type)`` of the table's columns, in order;
  - ``d.index_hint(scanner, table)``: text after ``FROM table alias`` (SQLite's
    ``NOT INDEXED`` when the window holds most of the table), or ``""``.

  ``d = scanner.dialect`` (or :func:`dialect_of` ``(conn)``); :data:`SQLITE` is the embedded
  store's, ``hermetry.stores.postgres.POSTGRES`` the fleet store's. A statement that needs a
  dialect method is built from it — once per dialect when it is a constant
  (cached per ``dialect.name``, as stores/sqlite.py does) — and otherwise
  written once for both.

**Adding a store** (e.g. PostgreSQL): one module in ``stores/`` whose reader (what
:func:`hermetry.stores.reader.open_db` yields for its URL) executes this SQL — converting ``?``
parameters if its driver wants others, and nothing else — and carries ``dialect = <its
Dialect>`` implementing every method above. Nothing in analytics changes. tests/test_dialect.py
runs each method on both real engines.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hermetry.model.units import DAY_MS, DAY_S
from hermetry.stores.dialect import SQLITE as SQLITE
from hermetry.stores.dialect import Dialect as Dialect
from hermetry.stores.dialect import SQLiteDialect as SQLiteDialect
from hermetry.stores.dialect import dialect_of as dialect_of

#: Dimensions a report can be broken down by.
DIMENSIONS = ("source", "model", "provider", "toolset", "tool", "session_type", "profile", "host", "day")
#: Dimensions a report can be filtered on.
FILTERS = ("source", "model", "provider", "toolset", "tool", "session_type", "profile", "host")
#: Dimensions that only classify tool calls.
TOOL_DIMENSIONS = ("tool", "toolset")


class NotAnswerable(ValueError):
    """A question this store cannot answer as asked; the message (one line) says what to ask instead."""


def refuse_tool_filter_in_pruned_time(filters: dict[str, str], since_ms: float, pruned_before_ms: float | None) -> None:
    """A ``tool``/``toolset`` filter keeps the turns (and their calls) that called a tool: that is
    known only from raw rows, and ``hermetry prune`` deleted them before ``pruned_before_ms``
    (the rollups keep no per-tool turns). Refuse, rather than answer from the rows left."""
    if pruned_before_ms is None or since_ms >= pruned_before_ms or not set(filters) & set(TOOL_DIMENSIONS):
        return
    boundary = iso(pruned_before_ms)
    raise NotAnswerable(f"a tool or toolset filter cannot read time before {boundary}: its rows were pruned "
                        f"(hermetry prune) and the rollups keep no per-tool turns; ask from --since {boundary} on")


@dataclass(frozen=True)
class Query:
    """What to report on: a time window (epoch ms, ``since <= t < until``), filters, breakdowns."""

    since_ms: float
    until_ms: float
    filters: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("source", "model")

    @classmethod
    def last_days(cls, days: float, *, now_ms: float | None = None, **kw: Any) -> Query:
        until = now_ms if now_ms is not None else time.time() * 1000
        return cls(since_ms=until - days * DAY_MS, until_ms=until, **kw)

    def check(self) -> None:
        """Raise ValueError for an unknown breakdown or filter, or an empty window."""
        for dim in self.group_by:
            if dim not in DIMENSIONS:
                raise ValueError(f"unknown breakdown {dim!r} (use one of {', '.join(DIMENSIONS)})")
        for key in self.filters:
            if key not in FILTERS:
                raise ValueError(f"unknown filter {key!r} (use one of {', '.join(FILTERS)})")
        if not self.until_ms > self.since_ms:
            raise ValueError("the window is empty: --since must be before --until")



def iso(ms: float | None) -> str | None:
    """Epoch ms → ISO 8601 UTC (seconds), None stays None."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def day_iso(day_number: int) -> str:
    """Days since the epoch (UTC) → ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(day_number * DAY_S, tz=UTC).date().isoformat()



# ---------------------------------------------------------------------------------------------
# The SQL dialect seam
# ---------------------------------------------------------------------------------------------


# One definition, in the stores' layer (the write path needs it too), imported above and
# re-exported for the analytics: ``Dialect``, ``SQLiteDialect``, ``SQLITE``, ``dialect_of``.


def window_sql(alias: str | None = None, column: str = "started_at_ms") -> str:
    """``col >= ? AND col < ?``: a row belongs to a window when it *started* in it."""
    col = f"{alias}.{column}" if alias else column
    return f"{col} >= ? AND {col} < ?"


def window_clause(since_ms: float | None, until_ms: float | None, column: str = "started_at_ms",
                  *, require: bool = False) -> tuple[str, list[Any]]:
    """``(condition, params)`` of a window whose ends may be open (None): ``"1 = 1"`` when both
    are; with ``require`` the column must also be known (``IS NOT NULL``)."""
    clauses, params = ([f"{column} IS NOT NULL"] if require else []), []
    if since_ms is not None:
        clauses.append(f"{column} >= ?")
        params.append(since_ms)
    if until_ms is not None:
        clauses.append(f"{column} < ?")
        params.append(until_ms)
    return (" AND ".join(clauses) or "1 = 1"), params


# ---------------------------------------------------------------------------------------------
# Where each dimension lives, per table, and the window/filter builder
# ---------------------------------------------------------------------------------------------

#: Where each session dimension lives (a turn's, a tool call's dimensions are its session's).
SESSION_COLUMNS = {
    "source": "s.source", "session_type": "s.session_type", "profile": "s.profile",
    "model": "s.model", "provider": "s.provider", "host": "s.host",
}


@dataclass(frozen=True)
class Table:
    name: str
    alias: str
    columns: dict[str, str]

    def column(self, dim: str, dialect: Dialect | None = None) -> str | None:
        """The SQL expression holding ``dim`` for this table's rows (None: not applicable)."""
        if dim == "day":
            return (dialect or SQLITE).day_bucket(f"{self.alias}.started_at_ms")
        return self.columns.get(dim)


SESSIONS = Table("sessions", "s", dict(SESSION_COLUMNS))
TURNS = Table("turns", "t", dict(SESSION_COLUMNS))
API_CALLS = Table("api_calls", "a", {**SESSION_COLUMNS, "model": "a.model", "provider": "a.provider"})
TOOL_CALLS = Table("tool_calls", "c", {**SESSION_COLUMNS, "tool": "c.tool_name", "toolset": "c.toolset"})


def applicable(table: Table, dims: Iterable[str]) -> list[str]:
    """The dimensions of ``dims`` that classify this table's rows."""
    return [d for d in dims if table.column(d) is not None]


class Scanner:
    """Builds the ``FROM``/``WHERE`` of a query over one table, for one connection and one query."""

    def __init__(self, conn: sqlite3.Connection, q: Query) -> None:
        self.conn, self.q = conn, q
        self.dialect = dialect_of(conn)
        self._hints: dict[str, str] = {}

    def column(self, table: Table, dim: str) -> str | None:
        """``table.column(dim)`` in this store's dialect."""
        return table.column(dim, self.dialect)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Plain tuples, whatever the connection's row factory (``sqlite3.Row`` is much slower)."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params)

    def scope(self, table: Table, dims: Sequence[str] = (), *, hint: bool = True) -> tuple[str, str, list[Any]]:
        """``(FROM …, WHERE …, params)`` for this table's rows in the window, after the filters.

        A ``tool``/``toolset`` filter on a table without that column keeps the rows of the turns
        (for sessions: the sessions) that called that tool."""
        a, q = table.alias, self.q
        clauses = [window_sql(a)]
        params: list[Any] = [q.since_ms, q.until_ms]
        join = False
        for key, value in sorted(q.filters.items()):
            column = table.column(key, self.dialect)
            if column is None:
                tool_column = "tool_name" if key == "tool" else "toolset"
                owner = "session_id" if table is SESSIONS else "turn_id"
                clauses.append(f"{a}.{owner} IN (SELECT {owner} FROM tool_calls WHERE {tool_column} = ?)")
            else:
                clauses.append(f"{column} = ?")
                join = join or column.startswith("s.")
            params.append(value)
        join = join or any((table.column(d, self.dialect) or "").startswith("s.") for d in dims)
        source = f"{table.name} {a}{self._index_hint(table) if hint else ''}"
        if join and table is not SESSIONS:
            source += f" LEFT JOIN sessions s ON s.session_id = {a}.session_id"
        return source, " AND ".join(clauses), params

    def _index_hint(self, table: Table) -> str:
        if table.name not in self._hints:
            self._hints[table.name] = self.dialect.index_hint(self, table)
        return self._hints[table.name]

