"""One snapshot for a plan and its reads, whoever calls the report's collection (review m23):
an inner block inside a caller's snapshot shares it and never commits it — on both stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hermetry.analytics.query import Query
from hermetry.analytics.report import collect
from hermetry.stores import rollups
from hermetry.stores.postgres import connect as pg_connect
from hermetry.stores.postgres import migrate as pg_migrate
from hermetry.stores.sqlite import connect, migrate


def _in_tx(conn: Any) -> bool:
    return rollups._in_transaction(conn)


def _check(conn: Any) -> None:
    q = Query(since_ms=0.0, until_ms=1.0e13)
    assert not _in_tx(conn)
    with rollups.snapshot(conn):
        assert _in_tx(conn)
        with rollups.snapshot(conn):  # nested: shares the outer one
            assert _in_tx(conn)
        assert _in_tx(conn)  # … and did not commit it
        collect(conn, q)  # compare's and the dashboard's series' entry point: inside the caller's
        assert _in_tx(conn)
    assert not _in_tx(conn)
    collect(conn, q)  # on its own: its own snapshot, ended when it returns
    assert not _in_tx(conn)


def test_sqlite(tmp_path: Path) -> None:
    conn = connect(tmp_path / "telemetry.db")
    migrate(conn)
    try:
        assert isinstance(conn, sqlite3.Connection)
        _check(conn)
    finally:
        conn.close()


def test_postgresql(pg_url: str) -> None:
    conn: Any = pg_connect(pg_url)
    pg_migrate(conn)
    try:
        _check(conn)
    finally:
        conn.close()
