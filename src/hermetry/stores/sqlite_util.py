"""The small SQLite helpers every reader and writer of a telemetry (or Hermes') file shares:
one transaction helper, one migration-script splitter, one chunker for ``IN (…)`` lists, one
test for "this file is corrupt"."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from hermetry.stores.dialect import dialect_of

T = TypeVar("T")

#: SQLite's limit on bound parameters is 32766 since 3.32 (999 before): stay far below both.
IN_CHUNK = 500


@contextmanager
def transaction(conn: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """``with transaction(conn): …`` — BEGIN (``immediate``: take the write lock now, so a busy
    file fails here, before any work), COMMIT on success, ROLLBACK on any exception (re-raised).
    The BEGIN is the connection's dialect's (a PostgreSQL connection has no file lock to take)."""
    conn.execute(dialect_of(conn).begin(immediate))
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if getattr(conn, "in_transaction", True):
            conn.execute("ROLLBACK")
        raise


def split_statements(script: str) -> list[str]:
    """A migration script's statements, each without its ``;`` (``executescript`` would commit the
    caller's transaction; the PostgreSQL store runs the same scripts, statement by statement)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip().rstrip(";").strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip().rstrip(";").strip())
    return statements


def chunks(items: Sequence[T], n: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``n`` (for ``WHERE x IN (?, ?, …)`` queries)."""
    for i in range(0, len(items), n):
        yield items[i:i + n]


def placeholders(n: int) -> str:
    """``?, ?, …`` for ``n`` parameters."""
    return ", ".join("?" * n)


_CORRUPT = ("not a database", "malformed", "corrupt", "disk image")


def is_corrupt(exc: BaseException) -> bool:
    """True when SQLite says the file is not a database or is damaged (not merely busy)."""
    text = str(exc).lower()
    return any(s in text for s in _CORRUPT)
