"""The SQL dialect seam (stores/dialect.py): each method means the same on both real engines.

Each method is run on a real SQLite and a real PostgreSQL (conftest: pg_server) with inputs the
test chose, and must give the value the test computed itself. The DDL rule list
(stores/postgres_schema.DDL_RULES) is pinned the same way.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermetry.model.units import DAY_MS
from hermetry.stores import postgres_schema
from hermetry.stores.dialect import SQLITE, Dialect, dialect_of
from hermetry.stores.postgres import POSTGRES, connect, migrate
from hermetry.stores.sqlite import connect as sqlite_connect
from hermetry.stores.sqlite import migrate as sqlite_migrate
from hermetry.stores.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS


@pytest.fixture(params=["sqlite", "postgres"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated store connection of each engine (its ``dialect_of`` is the engine's)."""
    if request.param == "sqlite":
        c: Any = sqlite_connect(tmp_path / "t.db")
        sqlite_migrate(c)
    else:
        c = connect(str(request.getfixturevalue("pg_server").create_database()), host="h")
        migrate(c)
    try:
        yield c
    finally:
        c.close()


def _value(conn: Any, expr: str, *params: Any) -> Any:
    return conn.execute(f"SELECT {expr}", params).fetchone()[0]


def test_each_connection_has_its_engines_dialect(conn: Any) -> None:
    assert dialect_of(conn) is (SQLITE if isinstance(conn, sqlite3.Connection) else POSTGRES)


@pytest.mark.parametrize("values", [(3, 1, 2), (2.5, -7.25, 0.0), (5,)])
def test_least_and_greatest_are_the_scalar_min_and_max(conn: Any, values: tuple[float, ...]) -> None:
    d = dialect_of(conn)
    marks = [f"CAST(? AS {'REAL' if d is SQLITE else 'DOUBLE PRECISION'})" for _ in values]
    if len(values) > 1:
        assert _value(conn, d.least(*marks), *values) == min(values)
        assert _value(conn, d.greatest(*marks), *values) == max(values)


@pytest.mark.parametrize(("haystack", "needle", "want"), [
    (",cli_close,new_session,", ",new_session,", len(",cli_close") + 1),  # the commas are shared
    (",cli_close,", ",new_session,", 0),
    ("abc", "a", 1),
    ("50%_off", "%_", 3),  # no pattern characters: a plain substring
])
def test_strpos_is_a_one_based_position_or_zero(conn: Any, haystack: str, needle: str, want: int) -> None:
    d = dialect_of(conn)
    assert haystack.find(needle) + 1 == want
    assert _value(conn, d.strpos("?", "?"), haystack, needle) == want


@pytest.mark.parametrize(("x", "want"), [(2.7, 2), (-2.7, -2), (2.5, 2), (3.0, 3), (0.4, 0)])
def test_trunc_int_truncates_toward_zero(conn: Any, x: float, want: int) -> None:
    d = dialect_of(conn)
    column = "REAL" if d is SQLITE else "DOUBLE PRECISION"
    assert int(x) == want
    got = _value(conn, d.trunc_int(f"CAST(? AS {column})"), x)
    assert got == want and isinstance(got, int)


@pytest.mark.parametrize("ms", [0.0, 1.0, DAY_MS - 0.5, DAY_MS, 20_000 * DAY_MS + 43_200_000.25])
def test_day_bucket_is_the_utc_day_number(conn: Any, ms: float) -> None:
    d = dialect_of(conn)
    conn.execute(d.begin())
    try:
        conn.execute("INSERT INTO sessions (session_id, started_at_ms, origin) VALUES (?, ?, 'live')", ("s", ms))
        got = conn.execute(f"SELECT {d.day_bucket('started_at_ms')} FROM sessions").fetchone()[0]
    finally:
        conn.execute("ROLLBACK")
    assert got == int(ms // DAY_MS)


def test_begin_opens_a_transaction_that_rolls_back(conn: Any) -> None:
    d = dialect_of(conn)
    conn.execute(d.begin(immediate=True))
    conn.execute("INSERT INTO sessions (session_id, origin) VALUES ('gone', 'live')")
    conn.execute("ROLLBACK")
    conn.execute(d.begin(immediate=False))
    conn.execute("INSERT INTO sessions (session_id, origin) VALUES ('kept', 'live')")
    conn.execute("COMMIT")
    assert [r[0] for r in conn.execute("SELECT session_id FROM sessions").fetchall()] == ["kept"]


def test_has_table_and_columns_introspect_the_schema(conn: Any) -> None:
    d = dialect_of(conn)
    assert conn.execute(d.has_table_sql(), ("backfill_state",)).fetchone() is not None
    assert conn.execute(d.has_table_sql(), ("no_such_table",)).fetchone() is None
    columns = conn.execute(d.columns_sql("turns")).fetchall()
    names = [c[0] for c in columns]
    # the canonical columns, in the schema's order, the generated one included
    lite = sqlite3.connect(":memory:")
    for script in SQLITE_MIGRATIONS:
        lite.executescript(script)
    want = [r[1] for r in lite.execute("PRAGMA table_xinfo(turns)")]
    assert names[:len(want)] == want
    assert names[len(want):] == ([] if d is SQLITE else ["host"])
    types = dict((c[0], c[1]) for c in columns)
    assert types["wall_ms"] == ("REAL" if d is SQLITE else "DOUBLE PRECISION")
    assert types["turn_id"] == "TEXT"


def test_index_hint(conn: Any) -> None:
    from hermetry.analytics.query import TURNS, Query, Scanner

    q = Query(since_ms=0, until_ms=1e15)
    scanner = Scanner(conn, q)
    assert scanner.dialect is dialect_of(conn)
    # an empty table: the window holds none of it, so neither engine wants a hint
    assert scanner.dialect.index_hint(scanner, TURNS) == ""
    if scanner.dialect is SQLITE:
        conn.execute("INSERT INTO turns (turn_id, session_id, started_at_ms, origin) VALUES ('t', 's', 1, 'live')")
        assert scanner.dialect.index_hint(scanner, TURNS) == " NOT INDEXED"


@pytest.mark.parametrize("d", [SQLITE, POSTGRES])
def test_both_dialects_implement_every_method(d: Dialect) -> None:
    methods = {"least", "greatest", "strpos", "trunc_int", "day_bucket", "begin", "has_table_sql",
               "columns_sql", "index_hint"}
    assert all(callable(getattr(d, m, None)) for m in methods)
    assert d.name in ("sqlite", "postgres")


# --- the DDL rules -----------------------------------------------------------------------------

def test_each_ddl_rule_does_what_the_docstring_says(pg_url: str) -> None:
    script = """CREATE TABLE rule_check (
    id                 TEXT PRIMARY KEY,   -- a comment; PostgreSQL keeps none
    n                  INTEGER NOT NULL DEFAULT 0,
    a_ms               REAL,
    b_ms               REAL,
    d_ms               REAL GENERATED ALWAYS AS (b_ms - a_ms) VIRTUAL
);"""
    [statement] = postgres_schema.ddl(script)
    assert "--" not in statement
    assert re.findall(r"\b(BIGINT|DOUBLE PRECISION|STORED|INTEGER|REAL|VIRTUAL)\b", statement) == [
        "BIGINT", "DOUBLE PRECISION", "DOUBLE PRECISION", "DOUBLE PRECISION", "STORED"]
    conn = connect(pg_url)
    try:
        conn.raw.execute(statement)
        conn.execute("INSERT INTO rule_check (id, n, a_ms, b_ms) VALUES (?, ?, ?, ?)", ("x", 2**40, 1.5, 4.0))
        assert conn.execute("SELECT n, d_ms FROM rule_check").fetchone() == (2**40, 2.5)
    finally:
        conn.close()


def test_the_ddl_rules_cover_every_type_the_embedded_schema_declares() -> None:
    """A new column type in stores/sqlite_schema.py needs a rule (or proof it is portable)."""
    lite = sqlite3.connect(":memory:")
    for script in SQLITE_MIGRATIONS:
        lite.executescript(script)
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    declared = {r[2].upper() for t in tables for r in lite.execute(f"PRAGMA table_xinfo({t})")}
    # BLOB: the rollup sketches only, whose PostgreSQL DDL (BYTEA) is stores/rollups.postgres_migration()
    assert declared <= {"TEXT", "REAL", "INTEGER", "BLOB"}, declared
    generated = {r[1] for t in tables for r in lite.execute(f"PRAGMA table_xinfo({t})") if r[6] == 2}
    assert generated, "the schema has virtual generated columns (VIRTUAL → STORED)"
