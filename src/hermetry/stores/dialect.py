"""The SQL dialect seam: what truly differs between the stores' engines, named once.

Every statement hermetry runs on a store — the write and merge rules (stores/sqlite.py), the
reconciler, the analytics' queries — is written once, in SQL that SQLite (≥ 3.30) and
PostgreSQL (≥ 12) both run with the same meaning:

* ``?`` parameters (a driver that wants others converts them: stores/postgres.PgConnection);
* ``COALESCE`` (never ``IFNULL``); ``CASE WHEN p THEN 1 ELSE 0 END`` inside ``SUM``/``COUNT``
  (never ``SUM(predicate)``: PostgreSQL cannot add booleans);
* every ``ORDER BY`` term says ``NULLS FIRST`` / ``NULLS LAST`` when the column may be NULL
  (the engines' defaults are opposite; SQLite's are ``ASC NULLS FIRST``, ``DESC NULLS LAST``,
  so writing them costs SQLite nothing);
* ``INSERT … ON CONFLICT (key) DO UPDATE SET … excluded.col …`` / ``DO NOTHING``; ``RETURNING``;
* ``||``, ``LIKE``, ``substr(s, start, n)``, ``LIMIT``, sub-selects, aggregate ``MIN``/``MAX``.

What does differ is a method of :class:`Dialect` (one implementation per engine: ``SQLITE``
here, ``POSTGRES`` in stores/postgres.py), and statements that need one are built from it
(once per dialect, cached):

===================  ===================================  =========================================
method               SQLite                               PostgreSQL
===================  ===================================  =========================================
``least(a, b, …)``   ``MIN(a, b, …)`` (scalar)            ``LEAST(a, b, …)``
``greatest(…)``      ``MAX(a, b, …)`` (scalar)            ``GREATEST(…)``
``strpos(s, sub)``   ``instr(s, sub)``                    ``strpos(s, sub)``
``trunc_int(x)``     ``CAST(x AS INTEGER)``               ``CAST(TRUNC(x) AS BIGINT)``
``day_bucket(col)``  ``CAST(col / 86400000 AS INTEGER)``  ``CAST(FLOOR(col / 86400000) AS BIGINT)``
``begin(immediate)`` ``BEGIN IMMEDIATE`` / ``BEGIN``      ``BEGIN``
``has_table_sql()``  ``sqlite_master``                    ``information_schema.tables``
``columns_sql(t)``   ``PRAGMA table_xinfo(t)``            ``information_schema.columns``
``index_hint(…)``    ``NOT INDEXED`` when a window holds  ``""`` (the planner has statistics)
                     most of a table
===================  ===================================  =========================================

``least``/``greatest`` take arguments that are never NULL (wrap them in ``COALESCE``): SQLite's
scalar ``MIN``/``MAX`` are NULL when any argument is, PostgreSQL's ``LEAST``/``GREATEST`` skip
NULLs — with non-NULL arguments both give the same value. ``trunc_int`` truncates toward zero
(a PostgreSQL ``CAST`` alone would round); ``day_bucket`` is the UTC day number (days since the
epoch) of an epoch-ms column.

A connection says its dialect with a ``dialect`` attribute; :func:`dialect_of` gives it (a plain
``sqlite3.Connection`` has none: SQLite's).
"""

from __future__ import annotations

from typing import Any, Protocol

from hermetry.model.units import DAY_MS


class Dialect(Protocol):
    """What differs between the SQL of two stores (see the module docstring's table)."""

    name: str

    def least(self, *exprs: str) -> str:
        """The smallest of ``exprs`` (each never NULL)."""
        ...

    def greatest(self, *exprs: str) -> str:
        """The largest of ``exprs`` (each never NULL)."""
        ...

    def strpos(self, haystack: str, needle: str) -> str:
        """1-based position of ``needle`` in ``haystack``; 0 when absent."""
        ...

    def trunc_int(self, expr: str) -> str:
        """``expr`` as an integer, truncated toward zero."""
        ...

    def day_bucket(self, column_ms: str) -> str:
        """The UTC day number (days since the epoch) of an epoch-ms column."""
        ...

    def begin(self, immediate: bool = True) -> str:
        """The statement opening a transaction (``immediate``: take the write lock now)."""
        ...

    def has_table_sql(self) -> str:
        """A query with one ``?`` (a table name) that returns a row iff that table exists."""
        ...

    def columns_sql(self, table: str) -> str:
        """A query returning ``(name, declared type)`` of each of ``table``'s columns, in order,
        generated ones included (``table`` is one of hermetry's own table names)."""
        ...

    def index_hint(self, scanner: Any, table: Any) -> str:
        """Text to put after ``FROM table alias`` (a planner hint), or ``""``; ``scanner`` is the
        analytics' :class:`hermetry.analytics.query.Scanner`, ``table`` its ``Table``."""
        ...


class SQLiteDialect:
    """The embedded store's dialect."""

    name = "sqlite"

    def least(self, *exprs: str) -> str:
        return f"MIN({', '.join(exprs)})"

    def greatest(self, *exprs: str) -> str:
        return f"MAX({', '.join(exprs)})"

    def strpos(self, haystack: str, needle: str) -> str:
        return f"instr({haystack}, {needle})"

    def trunc_int(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def day_bucket(self, column_ms: str) -> str:
        return self.trunc_int(f"{column_ms} / {DAY_MS}")

    def begin(self, immediate: bool = True) -> str:
        return "BEGIN IMMEDIATE" if immediate else "BEGIN"

    def has_table_sql(self) -> str:
        return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def columns_sql(self, table: str) -> str:
        return f"SELECT name, type FROM pragma_table_xinfo('{table}')"

    def index_hint(self, scanner: Any, table: Any) -> str:
        """``NOT INDEXED`` when the window holds most of the table.

        SQLite (without ANALYZE statistics) always walks the ``started_at_ms`` index for a
        range, which is several times slower than a plain scan once the range covers most
        rows. Counting the window in that index is cheap, so count and choose.
        """
        in_window, last_rowid = scanner.execute(
            f"SELECT COUNT(*), (SELECT MAX(rowid) FROM {table.name}) FROM {table.name} "
            "WHERE started_at_ms >= ? AND started_at_ms < ?",
            (scanner.q.since_ms, scanner.q.until_ms),
        ).fetchone()
        return " NOT INDEXED" if in_window * 3 > (last_rowid or 0) else ""


SQLITE = SQLiteDialect()


def dialect_of(conn: Any) -> Dialect:
    """The dialect of a connection: its own ``dialect`` attribute, else SQLite's."""
    dialect = getattr(conn, "dialect", None)
    return dialect if dialect is not None else SQLITE
