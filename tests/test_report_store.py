"""The CLI's report over a store it may write: the rollups refreshed first, through the one
connection the report then reads with (PostgreSQL), and the figures — summed by PostgreSQL
(integer sums cast back to BIGINT), sketches fetched in binary and merged once per key — equal
to the history the test injected, on both stores."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import report as report_module
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.recorder.recorder import Recorder
from hermetry.stores import postgres as postgres_module
from hermetry.stores.postgres import PostgresStore
from hermetry.surfaces.cli import main
from hermetry.testing.history import NOW_MS, History, synthetic_history
from pg_helpers import pg_rows

SINCE = NOW_MS - 3 * DAY_MS + 0.4 * HOUR_MS  # partial first and last hours: read raw
UNTIL = NOW_MS - 0.5 * HOUR_MS


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _window() -> tuple[float, float]:
    return float(int(SINCE // 1000) * 1000), float(int(UNTIL // 1000) * 1000)  # what --since/--until say


@pytest.fixture(scope="module")
def history() -> History:
    return synthetic_history(seed=5, days=3, sessions_per_day=8)


@pytest.fixture()
def force_rollups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)


def _cli_report(db: Any, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    since, until = _window()
    assert main(["--db", str(db), "insights", "--json", "--since", _iso(since), "--until", _iso(until), *extra]) == 0
    return dict(json.loads(capsys.readouterr().out))


def _check_against_history(report: dict[str, Any], history: History) -> None:
    since, until = _window()
    turns = [t for t in history.turns() if since <= t.started_at_ms < until]
    calls = [c for c in history.api_calls() if since <= c.started_at_ms < until]
    tools = [c for c in history.tool_calls() if since <= c.started_at_ms < until]
    assert turns and calls and tools
    assert report["turns"]["by_outcome"] == dict(sorted(Counter(t.outcome or "open" for t in turns).items()))
    assert report["api_calls"]["count"] == len(calls)
    ok = [c for c in calls if c.status == "ok"]
    for kind in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        assert report["api_calls"]["tokens"][kind] == sum(getattr(c, kind) or 0 for c in ok), kind
        assert isinstance(report["api_calls"]["tokens"][kind], int)
    actual = [c.cost_usd for c in calls if c.cost_status == "actual" and c.cost_usd is not None]
    assert math.isclose(report["api_calls"]["cost"]["actual_usd"], math.fsum(actual), rel_tol=1e-9)
    assert report["tool_calls"]["count"] == len(tools)
    wall = sorted(t.wall_ms for t in turns if t.outcome is not None and t.wall_ms is not None)
    assert report["turns"]["wall_ms"]["count"] == len(wall) and report["turns"]["wall_ms"]["max"] == wall[-1]
    latency = [c.latency_ms for c in calls if c.status in ("ok", "error") and c.latency_ms is not None]
    assert report["api_calls"]["latency_ms"]["count"] == len(latency)
    assert math.isclose(report["api_calls"]["latency_ms"]["avg"], math.fsum(latency) / len(latency), rel_tol=1e-9)
    assert report["api_calls"]["latency_ms"]["max"] == max(latency)
    tool_latency = [c.latency_ms for c in tools if c.latency_ms is not None]
    assert report["tool_calls"]["latency_ms"]["count"] == len(tool_latency)
    assert report["tool_calls"]["latency_ms"]["max"] == max(tool_latency)


def test_postgres_report_refreshes_and_reads_through_one_connection(
        history: History, pg_url: str, force_rollups: None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(lambda: PostgresStore(pg_url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    dirty_before = pg_rows(pg_url, "SELECT COUNT(*) AS n FROM rollup_dirty")[0]["n"]
    assert dirty_before > 5  # written, never rebuilt

    opened: list[bool] = []
    connect = postgres_module.connect

    def counting(url: str, **kw: Any) -> Any:
        opened.append(bool(kw.get("readonly")))
        return connect(url, **kw)

    monkeypatch.setattr(postgres_module, "connect", counting)
    report = _cli_report(pg_url, capsys)
    assert opened == [False]  # one connection: it refreshed, then read
    assert pg_rows(pg_url, "SELECT COUNT(*) AS n FROM rollup_dirty")[0]["n"] < dirty_before  # it did refresh
    assert report["method"]["path"] == "rollups" and report["method"]["hours_from_rollups"] > 0
    _check_against_history(report, history)

    opened.clear()
    exact = _cli_report(pg_url, capsys, "--exact")
    assert opened == [True]  # --exact does not refresh: a reader only
    assert exact["method"]["path"] == "exact"
    _check_against_history(exact, history)


def test_sqlite_report_through_the_rollups_equals_the_injected_history(
        history: History, tmp_path: Path, force_rollups: None, capsys: pytest.CaptureFixture[str]) -> None:
    db = history.record(tmp_path / "telemetry.db")
    report = _cli_report(db, capsys)
    assert report["method"]["path"] == "rollups" and report["method"]["hours_from_rollups"] > 0
    _check_against_history(report, history)


def test_a_postgres_store_without_tables_is_an_empty_report(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _cli_report(pg_url, capsys)
    assert report["api_calls"]["count"] == 0 and report["method"]["path"] == "exact"


def test_a_report_asks_once_whether_each_rollup_table_exists(history: History, tmp_path: Path,
                                                              force_rollups: None) -> None:
    """The plan, the sessions rollup, activity and the late rows each need to know whether a table
    exists: one look-up per table per report (a round trip each on PostgreSQL), the same report."""
    from hermetry.analytics.report import Query, insights
    from hermetry.stores.sqlite import connect

    db = history.record(tmp_path / "telemetry.db")
    since, until = _window()
    q = Query(since_ms=since, until_ms=until, group_by=("source", "model"))
    conn = connect(db, readonly=True)
    try:
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        report = insights(conn, q)
        conn.set_trace_callback(None)
    finally:
        conn.close()
    probes = Counter(s for s in statements if s.startswith("SELECT 1 FROM ") and s.endswith(" LIMIT 1"))
    assert probes and set(probes.values()) == {1}, probes
    assert report == insights(db, q)


def test_a_role_that_cannot_write_reads_the_store_as_it_is(
        history: History, pg_url: str, force_rollups: None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A report through a read-only role: its refresh is refused (no lock, no write), the dirty hours
    are read raw through the same connection, the figures are the history's all the same."""
    import psycopg

    rec = Recorder(lambda: PostgresStore(pg_url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    dirty = pg_rows(pg_url, "SELECT COUNT(*) AS n FROM rollup_dirty")[0]["n"]
    role = f"reader_{abs(hash(pg_url)) % 10**8}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    reader_url = pg_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    assert reader_url != pg_url
    opened: list[str] = []
    connect = postgres_module.connect
    monkeypatch.setattr(postgres_module, "connect", lambda url, **kw: opened.append(url) or connect(url, **kw))
    report = _cli_report(reader_url, capsys)
    assert opened == [reader_url]  # the refused refresh's transaction rolled back, the same connection read
    assert pg_rows(pg_url, "SELECT COUNT(*) AS n FROM rollup_dirty")[0]["n"] == dirty  # nothing rebuilt
    assert report["method"]["path"] == "rollups"
    _check_against_history(report, history)
