"""A window's partial first/last hour read as its hourly rollup MINUS the raw rows outside the
window (``rollups.Plan.edge_hours``, review N5): the same report as every raw row — counts, sums,
tokens, costs exact, percentiles within 1 %, min/max exact — on random windows, on SQLite and on
PostgreSQL; the sketch arithmetic it rests on; and the extremes the subtraction cannot tell,
read exactly."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermetry.analytics import report as report_module
from hermetry.analytics.report import Query, insights
from hermetry.model.sketch import ALPHA, Sketch
from hermetry.model.units import HOUR_MS
from hermetry.recorder.recorder import Recorder
from hermetry.stores import rollups
from hermetry.stores.postgres import PostgresStore
from hermetry.stores.postgres import connect as pg_connect
from hermetry.stores.reader import open_db
from hermetry.stores.sqlite import connect, migrate, write_events
from hermetry.testing.history import NOW_MS, History, synthetic_history
from test_rollups_report import same

LATER = NOW_MS + 2 * HOUR_MS
HISTORY = synthetic_history(seed=23, days=6, sessions_per_day=40)

values = st.lists(st.one_of(st.floats(min_value=0.001, max_value=1e7, allow_nan=False),
                            st.sampled_from([0.0, 1.0, 250.0, 4000.0])), min_size=1, max_size=150)


# --- the sketch arithmetic ----------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(values, st.data())
def test_an_hour_minus_a_part_of_it_is_the_sketch_of_the_rest(hour: list[float], data: st.DataObject) -> None:
    """``Sketch.subtract``: bucket counts, count and sum of what is left equal a sketch built from
    it; ``settle`` proves the extremes exact or says which it could not, and ``resolve`` with the
    values beyond ``bounds_wanted`` makes them exact. Beside a part nothing was subtracted from (the
    window's whole hours), that part's extremes count as proven."""
    cut = sorted(data.draw(st.sets(st.integers(0, len(hour) - 1), max_size=len(hour))))
    outside = [hour[i] for i in cut]
    left = [v for i, v in enumerate(hour) if i not in set(cut)]
    whole = data.draw(st.lists(st.floats(min_value=0.0, max_value=1e7, allow_nan=False), max_size=30))
    s = Sketch.of(whole).merge(Sketch.of(hour).unsure().subtract(Sketch.of(outside)))
    truth = sorted(left + whole)
    unsettled = s.settle()
    assert s.count == len(truth)
    if not truth:
        assert s.count == 0 and not s.buckets()
        return
    built = Sketch.of(truth)
    assert (s.zero, s._pos.offset if s._pos.counts else None, s._pos.counts, s._neg.counts) == (
        built.zero, built._pos.offset if built._pos.counts else None, built._pos.counts, built._neg.counts)
    assert math.isclose(s.sum, math.fsum(truth), rel_tol=1e-9, abs_tol=1e-6)
    for name, exact in (("min", truth[0]), ("max", truth[-1])):
        if name not in unsettled:
            assert getattr(s, name) == exact
        else:  # an estimate from its bucket until resolved
            assert abs(getattr(s, name) - exact) <= ALPHA * abs(exact) * (1 + 1e-9) + 1e-12
    lo, hi = s.bounds_wanted()
    s.resolve([v for v in left if (lo is not None and v < lo) or (hi is not None and v > hi)])
    assert (s.min, s.max) == (truth[0], truth[-1]) and not s.unsettled
    exact = Sketch.of(truth)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        assert s.quantile(q) == exact.quantile(q)


def test_nothing_subtracted_that_reached_the_max_keeps_it_proven() -> None:
    s = Sketch.of([5.0, 900.0]).unsure().subtract(Sketch.of([5.0]))
    assert s.settle() == () and (s.min, s.max, s.count) == (900.0, 900.0, 1)  # one value left
    u = Sketch.of([5.0, 300.0, 900.0]).unsure().subtract(Sketch.of([5.0]))
    assert u.settle() == ("min",) and u.max == 900.0 and abs(u.min - 300.0) <= 300.0 * ALPHA
    assert u.bounds_wanted() == (math.inf, None)  # no part of it is known to be left: any value may be the min
    u.resolve([300.0, 900.0])
    assert (u.min, u.max) == (300.0, 900.0)
    t = Sketch.of([5.0, 7.0, 900.0]).unsure().subtract(Sketch.of([900.0]))
    assert t.settle() == ("max",) and t.min == 5.0 and abs(t.max - 7.0) <= 7.0 * ALPHA
    beside = Sketch.of([6.0]).merge(Sketch.of([5.0, 7.0, 900.0]).unsure().subtract(Sketch.of([900.0])))
    assert beside.settle() == ("max",) and beside.bounds_wanted() == (None, 6.0)  # only values above 6 matter
    t.resolve([7.0])
    assert t.max == 7.0


# --- the plan -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def history() -> History:
    return HISTORY


@pytest.fixture(scope="module")
def lite(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = history.record(tmp_path_factory.mktemp("edges") / "telemetry.db")
    conn = connect(db)
    migrate(conn)
    rollups.rebuild(conn, now_ms=LATER)
    conn.close()
    return db


@pytest.fixture(scope="module")
def pg(history: History, pg_server: Any) -> str:
    url = str(pg_server.create_database())
    rec = Recorder(lambda: PostgresStore(url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    assert rec.stats().dropped == 0
    conn = pg_connect(url)
    rollups.rebuild(conn, now_ms=LATER)
    conn.close()
    return url


@pytest.fixture()
def force_rollups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)


def _busy_hours(history: History) -> list[int]:
    """The history's busier hours (the top half by model calls), ascending: an edge there has rows
    on both sides of it."""
    by_hour = Counter(int(c.started_at_ms // HOUR_MS) for c in history.api_calls())
    ranked = sorted(by_hour, key=lambda h: (-by_hour[h], h))
    return sorted(ranked[:len(ranked) // 2])


def _check(db: Any, q: Query) -> rollups.Plan:
    with open_db(db) as conn:
        p = rollups.plan(conn, q.since_ms, q.until_ms)
    exact, approx = insights(db, q, exact=True), insights(db, q)
    assert exact["method"]["path"] == "exact" and approx["method"]["path"] == "rollups"
    exact.pop("activity"), approx.pop("activity")
    same(exact, approx)  # counts, sums, costs equal; percentiles within 1 %; min/max equal
    return p


def test_a_partial_hour_is_its_rollup_minus_what_lies_outside(lite: Path, history: History) -> None:
    """Where the part of an edge hour outside the window holds fewer rows, the plan reads the hour's
    rollup and subtracts that part; where it holds more, the window's part raw (as before)."""
    hours = _busy_hours(history)
    h0, h1 = hours[3], hours[-3]
    with open_db(lite) as conn:
        mostly_in = rollups.plan(conn, h0 * HOUR_MS + 0.1 * HOUR_MS, h1 * HOUR_MS + 0.9 * HOUR_MS)
        mostly_out = rollups.plan(conn, h0 * HOUR_MS + 0.9 * HOUR_MS, h1 * HOUR_MS + 0.1 * HOUR_MS)
        never = rollups.plan(conn, h0 * HOUR_MS + 0.1 * HOUR_MS, h1 * HOUR_MS + 0.9 * HOUR_MS, edges=False)
    assert mostly_in.edge_hours == (h0, h1) and len(mostly_in.edge_outside) == 2 and not mostly_in.raw_ranges
    assert mostly_in.hours_from_rollups == never.hours_from_rollups == h1 - h0 - 1  # whole hours only
    assert mostly_out.edge_hours == () and len(mostly_out.raw_ranges) == 2
    assert never.edge_hours == () and never.raw_ranges == mostly_in.edge_inside


@pytest.mark.parametrize("group_by", [(), ("source", "model"), ("day", "tool"), ("provider", "profile", "host")])
def test_partial_hours_minus_raw_say_what_every_row_says(lite: Path, history: History, group_by: tuple[str, ...],
                                                         force_rollups: None) -> None:
    hours = _busy_hours(history)
    q = Query(since_ms=hours[2] * HOUR_MS + 0.13 * HOUR_MS, until_ms=hours[-2] * HOUR_MS + 0.81 * HOUR_MS,
              group_by=group_by)
    assert len(_check(lite, q).edge_hours) == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_windows_say_what_every_row_says(lite: Path, force_rollups: None, data: st.DataObject) -> None:
    """The property: any window (edges anywhere in an hour, any breakdown, a filter) through the
    rollups with subtracted edges = every raw row."""
    hours = _busy_hours(HISTORY)
    a = data.draw(st.integers(0, len(hours) - 30))
    b = data.draw(st.integers(a + 2, len(hours) - 1))
    since = hours[a] * HOUR_MS + data.draw(st.floats(0.0, 0.999)) * HOUR_MS
    until = hours[b] * HOUR_MS + data.draw(st.floats(0.0, 0.999)) * HOUR_MS
    group_by = data.draw(st.sampled_from([(), ("source", "model"), ("tool",), ("host", "provider")]))
    filters = data.draw(st.sampled_from([{}, {"source": "telegram"}, {"model": "m-beta"}]))
    _check(lite, Query(since_ms=since, until_ms=until, group_by=group_by, filters=filters))


def test_postgres_partial_hours_minus_raw(pg: str, history: History, force_rollups: None) -> None:
    hours = _busy_hours(history)
    rng = random.Random(5)
    used = 0
    for group_by in ((), ("source", "model"), ("tool",)):
        since = hours[rng.randrange(1, 10)] * HOUR_MS + rng.uniform(0.05, 0.4) * HOUR_MS
        until = hours[-rng.randrange(2, 10)] * HOUR_MS + rng.uniform(0.6, 0.95) * HOUR_MS
        used += len(_check(pg, Query(since_ms=since, until_ms=until, group_by=group_by)).edge_hours)
    assert used >= 4


def test_an_extreme_in_the_subtracted_part_is_read_exactly(history: History, tmp_path: Path,
                                                           force_rollups: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The slowest and the fastest call of the whole history lie in the part of an edge hour
    outside the window: the rollup's max/min are theirs, so the report reads the window's part of
    that hour for its exact max/min (``rollups.raw_values``) — equal to every raw row's."""
    db = history.record(tmp_path / "telemetry.db")
    conn = connect(db)
    migrate(conn)
    hours = _busy_hours(history)
    by_hour = Counter(int(c.started_at_ms // HOUR_MS) for c in history.api_calls())
    h = max(hours[:len(hours) // 2], key=lambda x: by_hour[x])  # a busy hour early in the history
    template = next(c for c in history.api_calls() if c.status == "ok" and c.latency_ms)
    extremes = [replace(template, api_request_id=f"x{i}", attempt=0,
                        started_at_ms=h * HOUR_MS + 60_000.0 * (i + 1), latency_ms=latency)
                for i, latency in enumerate((9.9e7, 0.0001))]
    conn.execute("BEGIN")
    write_events(conn, extremes)  # as the recorder writes: their hour is marked, then rebuilt
    conn.execute("COMMIT")
    rollups.rebuild(conn, now_ms=LATER)
    conn.close()
    looked_up: list[str] = []
    raw_values = rollups.raw_values

    def spy(*args: Any, **kw: Any) -> Any:
        looked_up.append(args[3])
        return raw_values(*args, **kw)

    monkeypatch.setattr(rollups, "raw_values", spy)
    q = Query(since_ms=h * HOUR_MS + 0.1 * HOUR_MS, until_ms=hours[-3] * HOUR_MS + 0.5 * HOUR_MS, group_by=("model",))
    p = _check(db, q)
    assert h in p.edge_hours and "latency_ms" in looked_up
    approx = insights(db, q)["api_calls"]["latency_ms"]
    assert approx["max"] < 9.9e7 and "estimated" not in approx


def test_a_snapshot_does_not_see_a_write_made_during_it(lite: Path, tmp_path: Path) -> None:
    """``rollups.snapshot``: the plan and the reads of one report see one state of the store."""
    db = tmp_path / "t.db"
    db.write_bytes(lite.read_bytes())
    writer = connect(db)
    with open_db(db) as reader, rollups.snapshot(reader):
        before = reader.execute("SELECT COUNT(*) FROM api_calls").fetchone()[0]
        writer.execute("DELETE FROM api_calls WHERE rowid IN (SELECT rowid FROM api_calls LIMIT 5)")
        writer.commit()
        assert reader.execute("SELECT COUNT(*) FROM api_calls").fetchone()[0] == before
    with open_db(db) as reader:
        assert reader.execute("SELECT COUNT(*) FROM api_calls").fetchone()[0] == before - 5
    writer.close()


def test_a_kind_whose_counts_do_not_subtract_reads_the_partial_hours_raw(lite: Path, history: History) -> None:
    """Sessions keep a MAX (the longest): their partial hours are read raw, and equal the raw path."""
    hours = _busy_hours(history)
    with open_db(lite) as conn:
        p = rollups.plan(conn, hours[3] * HOUR_MS + 0.1 * HOUR_MS, hours[-3] * HOUR_MS + 0.9 * HOUR_MS)
        assert p.edge_hours and not rollups.kind_subtracts(rollups.SESSIONS)
        assert p.raw_for(rollups.SESSIONS) == tuple(rollups._merge((*p.raw_ranges, *p.edge_inside)))
        q = rollups.plan(conn, p.since_ms, p.until_ms, edges=False)
        for keys in ((), ("outcome", "origin"), ("source", "day")):
            a = rollups.read(conn, rollups.SESSIONS, p, keys=keys, measures=False)
            b = rollups.read(conn, rollups.SESSIONS, q, keys=keys, measures=False)
            assert {k: g.counts for k, g in a.items()} == {k: g.counts for k, g in b.items()}
