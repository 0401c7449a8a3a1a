"""Nothing lost when the network is: spool locally, forward when PostgreSQL is back.

Each test that takes the database away starts its own PostgreSQL (it stops and starts it).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import engine_missing
from hermetry.model.events import ApiCall
from hermetry.recorder.recorder import Recorder
from hermetry.stores import fallback
from hermetry.stores.fallback import FleetStore, Spool, spool_status, sync
from hermetry.stores.postgres import PostgresStore
from hermetry.surfaces.cli import main as cli_main
from hermetry.testing.postgres import EngineMissing, PostgresServer
from pg_helpers import pg_rows, session_events


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except EngineMissing as exc:
        engine_missing(f"PostgreSQL not available: {exc}")
    with server:
        yield server


def _poll(predicate: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _fleet_recorder(url: str, spool: Path, host: str = "h1") -> Recorder:
    return Recorder(lambda: FleetStore(lambda: PostgresStore(url, host=host), spool),
                    register_atexit=False, flush_interval_s=0.01, max_batch=50, host=host)


def test_spool_round_trips_every_event_type(tmp_path: Path) -> None:
    from hermetry.testing.history import synthetic_history

    events = synthetic_history(days=1, sessions_per_day=4).events
    assert fallback.decode(fallback.encode(events)) == events


def test_database_down_then_back_nothing_lost(own_pg: PostgresServer, tmp_path: Path) -> None:
    url = own_pg.create_database("fleet")
    spool = tmp_path / "spool.db"
    sent: list[Any] = []
    rec = _fleet_recorder(url, spool)
    first = session_events("before", 20, "h1")
    for e in first:
        rec.record(e)
    assert rec.flush(30)  # forwarded while the database is up
    assert spool_status(spool).batches == 0
    sent += first

    own_pg.stop()  # the network goes away mid-run
    during = session_events("during", 30, "h1")
    for e in during:
        rec.record(e)
    # not delivered (flush says so rather than waiting out its timeout), but nothing is
    # left in memory either: the batches are in the local spool
    assert rec.flush(30.0) is False
    assert (rec.stats().queued, rec.stats().pending) == (0, 0)
    sent += during
    waiting = spool_status(spool)
    assert waiting.events > 0 and rec.stats().dropped == 0
    assert (spool.stat().st_mode & 0o777) == 0o600

    own_pg.start()  # it comes back: the forwarder delivers without anyone asking
    assert _poll(lambda: spool_status(spool).batches == 0, 60)
    rec.close()
    api = [e for e in sent if isinstance(e, ApiCall)]
    got = pg_rows(url, "SELECT COUNT(*) AS n, SUM(output_tokens)::bigint AS out FROM api_calls")[0]
    assert got == {"n": len(api), "out": sum(e.output_tokens for e in api)}
    ledger = pg_rows(url, "SELECT SUM(events_written)::bigint AS w FROM recorder_runs")[0]["w"]
    assert ledger == len(sent)


def test_sync_forwards_what_a_dead_process_left_and_is_idempotent(pg_url: str, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.db"
    spool = Spool(spool_path)
    batches = [session_events(f"s{i}", 10, "h2") for i in range(5)]
    run = {"run_id": "dead-run", "host": "h2", "pid": 1}
    for b in batches:
        spool.append(b, run)
    saved = sqlite3.connect(spool_path).execute("SELECT * FROM batches ORDER BY seq").fetchall()
    spool.close()

    result = sync(pg_url, spool_path, host="h-sync")
    total = sum(len(b) for b in batches)
    assert (result.forwarded_batches, result.forwarded_events, result.pending_batches) == (5, total, 0)
    # rows keep the host that recorded them, not the one that forwarded them
    assert pg_rows(pg_url, "SELECT DISTINCT host FROM api_calls") == [{"host": "h2"}]

    # a crash after PostgreSQL committed and before the spool forgot: the same batches again
    conn = sqlite3.connect(spool_path)
    conn.executemany("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)", saved)
    conn.commit()
    conn.close()
    again = sync(pg_url, spool_path)
    assert (again.forwarded_events, again.duplicate_batches) == (0, 5)
    assert pg_rows(pg_url, "SELECT COUNT(*) AS n FROM api_calls")[0]["n"] == 50
    assert pg_rows(pg_url, "SELECT events_written FROM recorder_runs") == [{"events_written": total}]


def test_hermetry_sync_cli(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    spool_path = tmp_path / "spool.db"
    Spool(spool_path).append(session_events("s", 7, "h"), None)
    monkeypatch.setenv("HERMETRY_DB", pg_url)
    assert cli_main(["sync", "--spool", str(spool_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == "hermetry.sync.v1"
    assert out["forwarded_events"] == len(session_events("s", 7, "h"))
    assert out["spool"]["batches"] == 0
    assert cli_main(["sync", "--spool", str(spool_path)]) == 0
    assert "forwarded 0 events" in capsys.readouterr().out


def test_sync_with_the_database_down_says_so_and_keeps_everything(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.testing.postgres import free_port

    spool_path = tmp_path / "spool.db"
    Spool(spool_path).append(session_events("s", 3, "h"), None)
    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/x"
    assert cli_main(["sync", "--url", url, "--spool", str(spool_path)]) == 1
    out = capsys.readouterr().out
    assert "still wait" in out and ":pw@" not in out
    assert spool_status(spool_path).batches == 1


def test_a_batch_the_database_refuses_is_set_aside_counted_not_lost(pg_url: str, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.db"
    spool = Spool(spool_path)
    spool.append(session_events("good", 2, "h"), None)
    bad = ApiCall(api_request_id="bad", attempt=0, session_id="s-bad", turn_id=None, started_at_ms=1.0,
                  latency_ms=1.0, status="ok", input_tokens=2**70)  # out of range for BIGINT
    spool.append([bad], None)
    spool.append(session_events("after", 2, "h"), None)
    spool.close()
    for _ in range(fallback.MAX_ATTEMPTS):
        sync(pg_url, spool_path)
    status = spool_status(spool_path)
    assert (status.batches, status.rejected_batches, status.rejected_events) == (0, 1, 1)
    assert pg_rows(pg_url, "SELECT COUNT(*) AS n FROM api_calls")[0]["n"] == 4


def test_the_forwarder_keeps_order_across_processes_sharing_a_spool(pg_url: str, tmp_path: Path) -> None:
    """Two stores on one spool (two processes of one host): one forwarder at a time, oldest first."""
    spool = tmp_path / "spool.db"
    a = FleetStore(lambda: PostgresStore(pg_url, host="h"), spool)
    b = FleetStore(lambda: PostgresStore(pg_url, host="h"), spool)
    for i in range(20):
        (a if i % 2 else b).write(session_events(f"s{i}", 5, "h"), None)
    assert _poll(lambda: spool_status(spool).batches == 0)
    a.close()
    b.close()
    assert pg_rows(pg_url, "SELECT COUNT(*) AS n FROM sessions WHERE outcome = 'completed'")[0]["n"] == 20
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM forwarded_batches").fetchone()[0] == 20
