"""The raw part of a rollup read (stores/rollups.py ``aggregate_raw``, ``raw_cache``): a window's
partial first and last hours (and dirty hours) are read from raw rows in ONE statement per kind,
shared by a report's reads, with the figures the injected history says — on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.query import Query
from hermetry.analytics.report import insights
from hermetry.model.units import HOUR_MS
from hermetry.stores import rollups as R
from hermetry.stores.postgres import open_reader
from hermetry.stores.reader import open_db
from hermetry.stores.sqlite import connect, migrate
from hermetry.testing.history import History, synthetic_history
from pg_helpers import recorded_postgres, recorded_sqlite
from test_rollups import AFTER, _check_api, _check_tools, _check_turns
from test_rollups_report import same

HISTORY = synthetic_history(seed=11, days=14, sessions_per_day=6)


def _edges(history: History) -> tuple[float, float]:
    """A window with partial hours at both ends (what ``insights --days N`` always has), each edge
    in the middle of one of the history's busiest hours, days apart: its raw part holds rows."""
    calls = sorted(c.started_at_ms for c in history.api_calls())
    by_hour = Counter(int(t // HOUR_MS) for t in calls)
    busy = sorted(sorted(by_hour, key=lambda h: (-by_hour[h], h))[:12])
    first, last = busy[0], busy[-1]
    assert last - first > 5 * 24
    middle = [t for t in calls if int(t // HOUR_MS) == first], [t for t in calls if int(t // HOUR_MS) == last]
    return middle[0][len(middle[0]) // 2] - 0.5, middle[1][len(middle[1]) // 2] + 0.5


SINCE, UNTIL = _edges(HISTORY)


@pytest.fixture(scope="module")
def history() -> History:
    return HISTORY


@pytest.fixture()
def lite(history: History, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(recorded_sqlite(history, tmp_path / "telemetry.db", AFTER))
    yield conn
    conn.close()


@pytest.fixture()
def pg(history: History, pg_url: str) -> Iterator[Any]:
    reader: Any = open_reader(recorded_postgres(history, pg_url, AFTER))
    yield reader
    reader.close()


def _same_groups(a: dict[tuple[Any, ...], R.Group], b: dict[tuple[Any, ...], R.Group]) -> None:
    """The same groups: counts and histograms equal, sketches bucket for bucket (sums to rounding)."""
    assert set(a) == set(b)
    for key, ga in a.items():
        gb = b[key]
        assert set(ga.counts) == set(gb.counts), key
        for name, x in ga.counts.items():
            y = gb.counts[name]
            if isinstance(x, float) or isinstance(y, float):
                assert math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=1e-12), (key, name, x, y)
            else:
                assert x == y, (key, name, x, y)
        assert ga.hist == gb.hist, key
        assert set(ga.sketches) == set(gb.sketches), key
        for m, sa in ga.sketches.items():
            sb = gb.sketches[m]
            assert sa.buckets() == sb.buckets() and sa.count == sb.count and sa.zero == sb.zero, (key, m)
            assert sa.min == sb.min and sa.max == sb.max and math.isclose(sa.sum, sb.sum, rel_tol=1e-12), (key, m)


#: the key sets a report and activity read (and a few more): own-table keys, session keys, day, hour
READS: dict[str, list[tuple[str, ...]]] = {
    "turns": [("day", "outcome", "origin"), (), ("origin",), ("source", "model"), ("hour", "outcome")],
    "api": [("day", "status", "error_type", "cost_status", "task"), (), ("status",), ("source", "model", "status"),
            ("host", "task")],
    "tools": [("day", "tool", "toolset", "status", "origin"), ("tool",), ("source", "model", "tool"), ("profile",)],
    "sessions": [("outcome", "origin", "session_type"), ("hour",), ("source", "day")],
}


def _reads(conn: Any, p: R.Plan, filters: dict[str, Any]) -> dict[tuple[Any, ...], dict[tuple[Any, ...], R.Group]]:
    out = {}
    for kind in R.KINDS:
        for keys in READS[kind.name]:
            for measures in (False, True):
                out[(kind.name, keys, measures)] = R.read(conn, kind, p, keys=keys, filters=filters, measures=measures)
    return out


def _check_shared_reads(conn: Any, history: History) -> None:
    p = R.plan(conn, SINCE, UNTIL, edges=False)  # both partial hours raw (rollup minus raw: test_rollups_edges)
    assert len(p.raw_ranges) == 2 and p.hours_from_rollups > 100
    assert sum(any(lo <= c.started_at_ms < hi for lo, hi in p.raw_ranges) for c in history.api_calls()) > 7
    source = Counter(s.source for s in history.sessions().values()).most_common(1)[0][0]
    for filters in ({}, {"source": source}, {"profile": None}):
        alone = _reads(conn, p, filters)
        with R.raw_cache():
            shared = _reads(conn, p, filters)
            shared_again = _reads(conn, p, filters)  # the cache's groups are not changed by a read
        for what, groups in alone.items():
            _same_groups(groups, shared[what])
            _same_groups(groups, shared_again[what])
    known = {**{k.name: dict(k.keys) for k in R.KINDS}}
    for kind in R.KINDS:  # the read's Python grouping = the rebuild's SQL grouping, group for group
        for keys in READS[kind.name]:
            pairs = tuple((n, R._day_sql(kind.alias) if n == "day" else known[kind.name][n]) for n in keys)
            for filters in ({}, {"source": source}, {"profile": None}):
                in_python = R._aggregate_rows(conn, kind, pairs, p.raw_ranges, filters, True)
                assert (in_python is None) == (kind is R.SESSIONS)
                if in_python is not None:
                    _same_groups(in_python, R._aggregate_one(conn, kind, pairs, p.raw_ranges, filters, True))
    with R.raw_cache():  # and against the injected history, by own and by session keys
        _check_api(R.read(conn, R.API, p, keys=("status",)), history, SINCE, UNTIL)
        _check_turns(R.read(conn, R.TURNS, p, keys=("outcome",)), history, SINCE, UNTIL)
        _check_tools(R.read(conn, R.TOOLS, p, keys=("tool",)), history, SINCE, UNTIL)
        sessions = history.sessions()
        truth = Counter((sessions[c.session_id].source, c.status) for c in history.api_calls()
                        if SINCE <= c.started_at_ms < UNTIL)
        got = R.read(conn, R.API, p, keys=("source", "status"), measures=False)
        assert {k: g.counts["calls"] for k, g in got.items()} == dict(truth)
        only = {k: n for k, n in truth.items() if k[0] == source}
        got = R.read(conn, R.API, p, keys=("source", "status"), filters={"source": source})
        assert {k: g.counts["calls"] for k, g in got.items()} == only


def test_shared_raw_reads_equal_separate_reads_and_the_injected_history(lite: sqlite3.Connection,
                                                                        history: History) -> None:
    _check_shared_reads(lite, history)


def test_shared_raw_reads_on_postgres(pg: Any, history: History) -> None:
    _check_shared_reads(pg, history)


def test_raw_ranges_are_read_once_per_kind_by_a_report(history: History, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``insights`` over a window with partial first and last hours reads each kind's raw rows in
    one statement (activity's sessions by hour, when it reads the rollups: one more), whatever its
    breakdowns (before: one per kind × read × measure, ~25 at the default breakdowns)."""
    db = history.record(tmp_path / "telemetry.db")
    conn = connect(db)
    migrate(conn)
    R.rebuild(conn, now_ms=AFTER)
    conn.close()
    import hermetry.analytics.report as report_module

    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)
    statements: list[str] = []
    execute = R._execute

    def traced(conn: Any, sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(conn, sql, params)

    monkeypatch.setattr(R, "_execute", traced)
    with open_db(db) as reader:  # a partial hour read as rollup minus raw: its outside part is a read of its own
        p = R.plan(reader, SINCE, UNTIL)
    reads = 1 + bool(p.edge_outside)
    for group_by in ((), ("source", "model"), ("model", "provider", "profile")):
        statements.clear()
        report = insights(db, Query(since_ms=SINCE, until_ms=UNTIL, group_by=group_by))
        assert report["method"]["path"] == "rollups"
        raw = Counter(k.name for sql in statements for k in R.KINDS  # a statement over a kind's raw ranges
                      if f"FROM {k.table} {k.alias}" in sql and f"{k.alias}.started_at_ms >= ?" in sql
                      and not sql.startswith("SELECT COUNT(*) FROM api_calls")  # count_calls: the index only
                      and ") < ?" not in sql and ") > ?" not in sql)  # an extreme looked up (raw_values)
        assert raw["turns"] == raw["api"] == raw["tools"] == reads and raw["sessions"] in (1, 2), (group_by, raw)
        exact = insights(db, Query(since_ms=SINCE, until_ms=UNTIL, group_by=group_by), exact=True)
        assert report["api_calls"]["count"] == exact["api_calls"]["count"] == sum(
            1 for c in history.api_calls() if SINCE <= c.started_at_ms < UNTIL)
        assert report["api_calls"]["tokens"]["input_tokens"] == sum(
            c.input_tokens or 0 for c in history.api_calls() if SINCE <= c.started_at_ms < UNTIL)
        report.pop("activity"), exact.pop("activity")
        same(exact, report)


def test_a_row_without_its_session_counts_with_null_session_keys(lite: sqlite3.Connection) -> None:
    """The sessions are LEFT JOINed only when a key or filter reads them: a call whose session row
    is missing is counted either way, its session keys NULL (what a rebuild stores)."""
    lo = math.ceil(SINCE / HOUR_MS) * HOUR_MS - 0.2 * HOUR_MS  # in the partial first hour
    lite.execute("INSERT INTO api_calls (api_call_id, api_request_id, attempt, session_id, started_at_ms, "
                 "latency_ms, status, input_tokens, origin) VALUES ('orphan#0', 'orphan', 0, 'no-such-session', ?, "
                 "1234.5, 'ok', 7, 'live')", (lo,))
    lite.commit()
    p = R.plan(lite, SINCE, UNTIL, edges=False)  # (inserted without marking its hour: read it raw)
    assert any(a <= lo < b for a, b in p.raw_ranges)
    for scope in (False, True):
        with R.raw_cache() if scope else nullcontext():
            by_status = R.read(lite, R.API, p, keys=("status",))
            by_source = R.read(lite, R.API, p, keys=("source", "status"))
            nulls = R.read(lite, R.API, p, keys=("status",), filters={"source": None})
        assert by_source[(None, "ok")].counts["calls"] == 1 and by_source[(None, "ok")].counts["input_tokens"] == 7
        assert nulls[("ok",)].counts["calls"] == 1 and nulls[("ok",)].sketches["latency_ms"].max == 1234.5
        assert sum(g.counts["calls"] for g in by_status.values()) == sum(g.counts["calls"] for g in by_source.values())


def test_raw_cache_is_scoped_and_nests() -> None:
    assert R._RAW_CACHE.get() is None
    with R.raw_cache():
        outer = R._RAW_CACHE.get()
        assert outer == {}
        with R.raw_cache():
            assert R._RAW_CACHE.get() is outer  # a report inside insights shares insights' reads
        assert R._RAW_CACHE.get() is outer
    assert R._RAW_CACHE.get() is None



def test_per_row_forms_of_the_counts() -> None:
    """Each count of the raw-read kinds has a per-row form (summed or maximised in Python); what has
    none (another aggregate, DISTINCT) is refused, and the read groups in SQL instead."""
    assert all(R._per_row(sql) is not None for k in (R.TURNS, R.API, R.TOOLS) for _, sql in k.counts)
    assert R._per_row("COUNT(*)") == "1"
    assert R._per_row("COALESCE(SUM(CASE WHEN a.x IS NOT NULL THEN COALESCE(a.n, 1) END), 0)") == (
        "COALESCE((CASE WHEN a.x IS NOT NULL THEN COALESCE(a.n, 1) END), 0)")
    assert R._per_row("COUNT(a.latency_ms)") == "(CASE WHEN (a.latency_ms) IS NOT NULL THEN 1 ELSE 0 END)"
    for sql in ("AVG(a.x)", "MIN(a.x)", "COUNT(DISTINCT a.x)", "SUM(MAX(a.x))", "SUM(a.x"):
        assert R._per_row(sql) is None, sql


def test_rows_are_grouped_batch_by_batch(lite: sqlite3.Connection, history: History,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A read holds a batch of raw rows at a time (its sessions looked up per batch, once each):
    batches of 3 rows give the groups the SQL grouping gives."""
    monkeypatch.setattr(R, "_ROWS_PER_BATCH", 3)
    p = R.plan(lite, SINCE, UNTIL, edges=False)
    source = Counter(s.source for s in history.sessions().values()).most_common(1)[0][0]
    for kind in (R.TURNS, R.API, R.TOOLS):
        for keys in READS[kind.name]:
            pairs = tuple((n, R._day_sql(kind.alias) if n == "day" else dict(kind.keys)[n]) for n in keys)
            for filters in ({}, {"source": source}):
                rows = R._aggregate_rows(lite, kind, pairs, p.raw_ranges, filters, True)
                assert rows is not None
                if not filters:  # more rows than a batch
                    assert sum(int(next(iter(g.counts.values()))) for g in rows.values()) > 3
                _same_groups(rows, R._aggregate_one(lite, kind, pairs, p.raw_ranges, filters, True))
