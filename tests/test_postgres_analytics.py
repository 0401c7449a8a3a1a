"""The same analytics on both stores: the same events give identical JSON on SQLite and PostgreSQL.

One synthetic history (hermetry.testing.history: sessions of every source, retries, failures,
open turns, subagents, continuations, costs of every status) is recorded through the real
recorder into a SQLite file and into a PostgreSQL database; every report is asked of both.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.compare import compare
from hermetry.analytics.report import DAY_MS, Query, insights
from hermetry.analytics.sessions import list_sessions, session_detail
from hermetry.recorder.recorder import Recorder
from hermetry.stores.postgres import PostgresStore
from hermetry.surfaces.export import export_rows
from hermetry.testing.history import NOW_MS, synthetic_history


@pytest.fixture(scope="module")
def both(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    history = synthetic_history(days=10, sessions_per_day=8)
    path = history.record(tmp_path_factory.mktemp("lite") / "t.db")
    url = pg_server.create_database()
    rec = Recorder(lambda: PostgresStore(url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    assert rec.stats().dropped == 0 and rec.stats().pending == 0
    return path, url, history


def _same(a: Any, b: Any, path: str = "$") -> None:
    """Identical JSON, except that a float may differ in its last bits: each store sums a group's
    REALs in its own scan order (naive summation in both), and float addition is not associative."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (path, a, b)
        return
    assert type(a) is type(b), (path, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), (path, list(a), list(b))  # same keys, same order
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


QUERIES = [
    Query.last_days(7, now_ms=NOW_MS),
    Query.last_days(30, now_ms=NOW_MS, group_by=("source", "model", "day")),
    Query.last_days(30, now_ms=NOW_MS, group_by=("tool", "toolset", "profile", "session_type", "provider")),
    Query.last_days(30, now_ms=NOW_MS, filters={"source": "cli"}, group_by=("model",)),
    Query.last_days(30, now_ms=NOW_MS, filters={"tool": "terminal"}),
    Query.last_days(2, now_ms=NOW_MS - 3 * DAY_MS),
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.group_by}-{q.filters}")
def test_insights_identical(both: tuple[Path, str, Any], query: Query) -> None:
    path, url, _ = both
    lite, pg = insights(path, query), insights(url, query)
    assert lite["api_calls"]["count"] > 0
    _same(lite, pg)


def test_compare_identical(both: tuple[Path, str, Any]) -> None:
    path, url, _ = both
    a = Query.last_days(5, now_ms=NOW_MS - 5 * DAY_MS)
    b = Query.last_days(5, now_ms=NOW_MS)
    _same(compare(path, a, b), compare(url, a, b))


@pytest.mark.parametrize("roll_up", [True, False])
def test_sessions_and_show_identical(both: tuple[Path, str, Any], roll_up: bool) -> None:
    path, url, _ = both
    since, until = NOW_MS - 30 * DAY_MS, NOW_MS
    lite, pg = list_sessions(path, since, until, limit=500, roll_up=roll_up), list_sessions(url, since, until,
                                                                                            limit=500, roll_up=roll_up)
    _same(lite, pg)
    rows = lite.get("sessions") or lite.get("conversations") or []
    assert rows
    for row in rows[:25]:
        sid = row["session_id"]
        _same(session_detail(path, sid), session_detail(url, sid))


@pytest.mark.parametrize("table", ["api_calls", "tool_calls", "turns", "sessions"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_identical_but_for_the_host_column(both: tuple[Path, str, Any], table: str, fmt: str,
                                                  tmp_path: Path) -> None:
    path, url, _ = both
    out_lite, out_pg = tmp_path / f"l.{fmt}", tmp_path / f"p.{fmt}"
    n_lite = export_rows(path, table, fmt, out_lite)
    n_pg = export_rows(url, table, fmt, out_pg)
    assert n_lite == n_pg > 0
    if fmt == "jsonl":
        lite = [json.loads(line) for line in out_lite.read_text().splitlines()]
        pg = [json.loads(line) for line in out_pg.read_text().splitlines()]
    else:
        import csv

        lite = list(csv.DictReader(io.StringIO(out_lite.read_text())))
        pg = list(csv.DictReader(io.StringIO(out_pg.read_text())))
    for a, b in zip(lite, pg, strict=True):
        if table == "sessions":  # when each store wrote the row
            a.pop("updated_at_ms")
            b.pop("updated_at_ms")
        else:  # PostgreSQL's extra column: every row carries its host
            assert b.pop("host") == "h1"
    assert lite == pg


def test_by_host_and_host_filter(pg_server: Any) -> None:
    """Ground truth: the sessions and calls this test wrote per host."""
    from pg_helpers import T0_MS, session_events

    url = pg_server.create_database()
    plan = {"gw-1": (3, 4), "gw-2": (2, 7), "cron-1": (1, 1)}  # host -> (sessions, calls each)
    for host, (sessions, calls) in plan.items():
        store = PostgresStore(url, host=host)
        for s in range(sessions):
            store.write(session_events(f"{host}-{s}", calls, host), None)
        store.close()
    q = Query(since_ms=T0_MS - DAY_MS, until_ms=T0_MS + DAY_MS, group_by=("host",))
    report = insights(url, q)
    rows = {r["host"]: r for r in report["breakdowns"]["host"]}
    assert set(rows) == set(plan)
    for host, (sessions, calls) in plan.items():
        assert rows[host]["sessions"] == sessions
        assert rows[host]["api_calls"]["count"] == sessions * calls
        assert rows[host]["api_calls"]["tokens"]["input_tokens"] == sessions * sum(range(calls))
        assert rows[host]["tool_calls"]["count"] == sessions * calls
    only = insights(url, Query(since_ms=q.since_ms, until_ms=q.until_ms, filters={"host": "gw-2"}, group_by=()))
    assert only["api_calls"]["count"] == 2 * 7
    assert only["sessions"]["count"] == 2


def test_cli_reads_the_fleet_store(both: tuple[Path, str, Any], monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.surfaces.cli import main

    path, url, history = both
    monkeypatch.setenv("HERMETRY_DB", url)
    args = ["insights", "--json", "--since", "2024-12-01", "--until", "2025-01-16", "--by", "host"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["api_calls"]["count"] == len(history.api_calls())
    assert [r["host"] for r in report["breakdowns"]["host"]] == ["synthetic"]  # the history's own host
    monkeypatch.setenv("HERMETRY_DB", str(path))
    assert main(args) == 0
    _same(report, json.loads(capsys.readouterr().out))


def test_cli_with_the_fleet_store_down_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.surfaces.cli import main
    from hermetry.testing.postgres import free_port

    monkeypatch.setenv("HERMETRY_DB", f"postgresql://postgres:secret@127.0.0.1:{free_port()}/x")
    assert main(["insights", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("hermetry: cannot reach the telemetry store") and captured.err.count("\n") == 1
    assert "secret" not in captured.err


def test_an_empty_database_is_an_empty_history(pg_url: str) -> None:
    report = insights(pg_url, Query.last_days(7))
    assert report["api_calls"]["count"] == 0 and report["sessions"]["count"] == 0


def test_commands_that_need_a_file_refuse_a_postgresql_store_clearly(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """With the store in PostgreSQL, reprice/reconcile/metrics never quietly use a local file."""
    from hermetry.surfaces.cli import main

    monkeypatch.setenv("HERMETRY_DB", "postgresql://u:pw@127.0.0.1:1/x")
    assert main(["path"]) == 0
    assert capsys.readouterr().out.strip() == "postgresql://u:***@127.0.0.1:1/x"
    for argv in (["reconcile"], ["metrics", "show"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "the store is PostgreSQL" in err and "pw@" not in err, argv


SERIES_QUERIES = [
    Query.last_days(2, now_ms=NOW_MS),
    Query.last_days(2, now_ms=NOW_MS - 3 * DAY_MS, filters={"source": "cli"}),
    Query.last_days(3, now_ms=NOW_MS, filters={"tool": "terminal"}),
]


@pytest.mark.parametrize("query", SERIES_QUERIES, ids=lambda q: f"{q.since_ms}-{q.filters}")
def test_series_identical(both: tuple[Path, str, Any], query: Query) -> None:
    """The dashboard's time series (analytics/series.py) read the same from both stores."""
    from hermetry.analytics.series import hourly, tool_daily

    path, url, _ = both
    _same(json.loads(json.dumps(hourly(path, query))), json.loads(json.dumps(hourly(url, query))))
    _same(json.loads(json.dumps(tool_daily(path, query))), json.loads(json.dumps(tool_daily(url, query))))


def test_stored_events_identical(both: tuple[Path, str, Any]) -> None:
    """The events a store gives back (export --otlp, metrics) are the same from both stores, and
    as many as the history recorded of each kind that is stored as a row."""
    from hermetry.analytics.events import recorder_drops, stored_events
    from hermetry.model.events import ApiCall, ToolCall

    path, url, history = both
    lite, pg = list(stored_events(path)), list(stored_events(url))
    assert len(lite) == len(pg) > 0
    for a, b in zip(lite, pg, strict=True):
        assert type(a) is type(b)
        _same(dataclasses.asdict(a), dataclasses.asdict(b))
    assert sum(isinstance(e, ApiCall) for e in pg) == len(history.api_calls())
    assert sum(isinstance(e, ToolCall) for e in pg) == sum(isinstance(e, ToolCall) for e in history.events)
    assert recorder_drops(path) == recorder_drops(url) == 0
