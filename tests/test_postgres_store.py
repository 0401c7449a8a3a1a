"""The PostgreSQL store against a real PostgreSQL 15 started by the tests (conftest: pg_server).

Ground truth is what each test wrote: the synthetic history's events, or events built here.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hermetry.recorder.recorder import Recorder
from hermetry.recorder.sink import Sink, SinkDisabled, SinkUnavailable
from hermetry.stores import postgres_schema
from hermetry.stores.postgres import PostgresStore, connect, migrate
from hermetry.stores.sqlite import SQLiteStore
from hermetry.testing.history import synthetic_history
from hermetry.testing.postgres import free_port
from pg_helpers import pg_rows, session_events

TABLES = {
    "sessions": "session_id", "turns": "turn_id", "api_calls": "api_call_id", "tool_calls": "tool_call_id",
}


def sqlite_rows(path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def _record(store_factory: Any, events: list[Any], **kw: Any) -> Recorder:
    rec = Recorder(store_factory, register_atexit=False, flush_interval_s=0.01, **kw)
    for e in events:
        rec.record(e)
    rec.close(timeout=60)
    return rec


def test_the_engine_is_a_real_postgresql_15_on_loopback(pg_server: Any, pg_url: str) -> None:
    row = pg_rows(pg_url, "SELECT current_setting('server_version_num')::int AS v, "
                          "current_setting('listen_addresses') AS listen")[0]
    assert row["v"] >= 150000
    assert row["listen"] == "127.0.0.1"


def test_postgres_store_is_a_sink(pg_url: str) -> None:
    assert isinstance(PostgresStore(pg_url), Sink)


def test_schema_matches_the_embedded_store_and_every_table_has_host(pg_url: str, tmp_path: Path) -> None:
    conn = connect(pg_url)
    assert migrate(conn) == postgres_schema.SCHEMA_VERSION
    assert migrate(conn) == postgres_schema.SCHEMA_VERSION  # idempotent
    conn.close()
    SQLiteStore(tmp_path / "t.db").write([], None)
    lite = sqlite3.connect(tmp_path / "t.db")
    for table in (*TABLES, "recorder_runs", "backfill_state", "cost_history"):
        lite_cols = {r[1] for r in lite.execute(f"PRAGMA table_xinfo({table})")}
        pg_cols = {r["column_name"] for r in pg_rows(
            pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = %s", table)}
        assert lite_cols | {"host"} == pg_cols, table


def test_same_events_same_rows_as_sqlite(pg_url: str, tmp_path: Path) -> None:
    """Every merge rule is the embedded store's: the same history gives the same rows."""
    history = synthetic_history(days=3, sessions_per_day=6)
    history.record(tmp_path / "t.db")
    _record(lambda: PostgresStore(pg_url, host="h1"), history.events, host="h1")
    for table, key in TABLES.items():
        lite = sqlite_rows(tmp_path / "t.db", f"SELECT * FROM {table} ORDER BY {key}")
        pg = pg_rows(pg_url, f"SELECT * FROM {table} ORDER BY {key}")
        assert len(pg) == len(lite) > 0, table
        for a, b in zip(lite, pg, strict=True):
            b = dict(b)
            assert b.pop("host") == (a.pop("host") if table == "sessions" else "h1")
            a.pop("updated_at_ms", None)
            b.pop("updated_at_ms", None)
            assert a == b, table
    # against the injected truth, too
    api = history.api_calls()
    got = pg_rows(pg_url, "SELECT COUNT(*) AS n, SUM(output_tokens)::bigint AS out FROM api_calls")[0]
    assert got == {"n": len(api), "out": sum(c.output_tokens or 0 for c in api)}


def test_a_retried_batch_adds_nothing(pg_url: str) -> None:
    store = PostgresStore(pg_url, host="h1")
    batch = session_events("s1", 50, "h1")
    run = {"run_id": "r1", "host": "h1", "pid": 1, "started_at_ms": 0.0}
    assert store.write(batch, run) == len(batch)
    before = pg_rows(pg_url, "SELECT * FROM api_calls ORDER BY api_call_id")
    store.write(batch, None)  # a retry of the same events (the ledger counted them once)
    assert pg_rows(pg_url, "SELECT * FROM api_calls ORDER BY api_call_id") == before
    # a spooled batch forwarded twice: the second time nothing at all, the ledger included
    assert store.write(batch, run, batch_id="b1") == len(batch)
    assert store.write(batch, run, batch_id="b1") == 0
    ledger = pg_rows(pg_url, "SELECT events_written FROM recorder_runs WHERE run_id = 'r1'")
    assert ledger == [{"events_written": 2 * len(batch)}]
    store.close()


def _writer_process(url: str, host: str, sessions: int, calls: int) -> None:
    events: list[Any] = []
    for s in range(sessions):
        events += session_events(f"{host}-s{s}", calls, host)
    rec = Recorder(lambda: PostgresStore(url, host=host), register_atexit=False, flush_interval_s=0.005,
                   max_batch=97, host=host)
    for e in events:
        rec.record(e)
    rec.close(timeout=120)
    stats = rec.stats()
    assert stats.dropped == 0 and stats.pending == 0, stats


def test_many_hosts_and_processes_write_at_once_without_loss_or_duplicates(pg_url: str) -> None:
    hosts, sessions, calls = 6, 5, 40
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer_process, args=(pg_url, f"host-{i}", sessions, calls)) for i in range(hosts)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    by_host = pg_rows(pg_url, "SELECT host, COUNT(*) AS n, SUM(input_tokens)::bigint AS inp FROM api_calls "
                              "GROUP BY host ORDER BY host")
    expected_in = sessions * sum(range(calls))
    assert by_host == [{"host": f"host-{i}", "n": sessions * calls, "inp": expected_in} for i in range(hosts)]
    assert pg_rows(pg_url, "SELECT COUNT(*) AS n FROM tool_calls")[0]["n"] == hosts * sessions * calls
    assert pg_rows(pg_url, "SELECT host, COUNT(*) AS n FROM sessions GROUP BY host ORDER BY host") == [
        {"host": f"host-{i}", "n": sessions} for i in range(hosts)]
    ledger = pg_rows(pg_url, "SELECT host, SUM(events_written)::bigint AS w, SUM(events_dropped)::bigint AS d "
                             "FROM recorder_runs GROUP BY host ORDER BY host")
    per_host = sessions * (4 + 2 * calls)
    assert ledger == [{"host": f"host-{i}", "w": per_host, "d": 0} for i in range(hosts)]


def test_unreachable_database_is_unavailable_not_an_error(tmp_path: Path) -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    with pytest.raises(SinkUnavailable) as info:
        store.write(session_events("s", 1, "h"), None)
    assert "127.0.0.1" in str(info.value)


def test_a_password_never_appears_in_errors() -> None:
    store = PostgresStore(f"postgresql://u:s3cr3t-pw@127.0.0.1:{free_port()}/x")
    with pytest.raises(SinkUnavailable) as info:
        store.write([], None)
    assert "s3cr3t-pw" not in str(info.value)


def test_a_newer_schema_disables_the_store(pg_url: str) -> None:
    conn = connect(pg_url)
    migrate(conn)
    conn.raw.execute("UPDATE hermetry_meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(SinkDisabled, match="upgrade hermetry"):
        PostgresStore(pg_url).write([], None)


def test_concurrent_first_connections_migrate_once(pg_url: str) -> None:
    import threading

    errors: list[BaseException] = []

    def go() -> None:
        try:
            c = connect(pg_url)
            migrate(c)
            c.close()
        except BaseException as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pg_rows(pg_url, "SELECT value FROM hermetry_meta WHERE key = 'schema_version'") == [
        {"value": str(postgres_schema.SCHEMA_VERSION)}]


def test_parameter_conversion_keeps_order_and_literals_and_rewrites_nothing_else() -> None:
    from hermetry.stores.postgres import convert

    c = convert("SELECT ?, ?, instr(?3, 'a%?'), MIN(COALESCE(x, 0), ?) WHERE y LIKE 'p%'")
    # only the parameters change: SQLite-only SQL stays as written (and PostgreSQL would refuse it)
    assert c.sql == "SELECT %s, %s, instr(%s, 'a%%?'), MIN(COALESCE(x, 0), %s) WHERE y LIKE 'p%%'"
    assert c.order == (0, 1, 2, 3)
    assert c.params(("a", "b", "c", "d")) == ("a", "b", "c", "d")
    numbered = convert("VALUES (?, ?) WHERE a = ?3 OR b = ?3")
    assert numbered.order == (0, 1, 2, 2)
    assert numbered.params(["x", "y", "z"]) == ("x", "y", "z", "z")
    assert convert("SELECT 'a%' || 'b'").sql == "SELECT 'a%' || 'b'"  # no parameters: psycopg leaves % alone
