"""Reading a store: ``open_db(db)`` → a read-only connection the analytics query.

``db`` is a path to the embedded SQLite file, an open ``sqlite3.Connection`` (or another
store's :class:`Reader`), or a ``postgresql://`` URL (the fleet's store, docs/fleet.md). A file that does not exist yet yields
``None``: an empty history, not an error. Every analytics job opens its store here, and asks it
only through :mod:`hermetry.analytics.query`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hermetry.stores.sqlite import connect


@runtime_checkable
class Reader(Protocol):
    """A store's read connection, as the analytics use it: ``sqlite3.Connection`` is one; another
    store's reader executes the same SQL (``?`` parameters) and may carry a ``dialect``
    (:class:`hermetry.analytics.query.Dialect`)."""

    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def cursor(self) -> Any: ...


Db = str | Path | sqlite3.Connection


@contextmanager
def open_db(db: Db) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection (None when the file does not exist yet: an empty history)."""
    if isinstance(db, sqlite3.Connection | Reader):
        yield db  # a reader of another store speaks the same SQL
        return
    if isinstance(db, str) and db.lower().startswith(("postgresql://", "postgres://")):
        from hermetry.stores.postgres import open_reader  # the fleet's store (docs/fleet.md)

        reader = open_reader(db)
        try:
            yield reader  # type: ignore[misc]  # runs the same SQL (stores/dialect.py)
        finally:
            if reader is not None:
                reader.close()
        return
    path = Path(db)
    if not path.exists():
        yield None
        return
    conn = connect(path, readonly=True)
    try:
        yield conn
    finally:
        conn.close()

