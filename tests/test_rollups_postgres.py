"""Rollups on a real PostgreSQL: the same tables, marks and rebuilds as SQLite, the same figures."""

from __future__ import annotations

from typing import Any

from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.recorder.recorder import Recorder
from hermetry.stores import rollups as R
from hermetry.stores.postgres import PostgresStore, connect, open_reader
from hermetry.testing.history import NOW_MS, synthetic_history
from test_rollups import AFTER, WHOLE, _check_all


def test_rollups_on_postgres_hold_the_injected_history(pg_url: str) -> None:
    history = synthetic_history(seed=5, days=14, sessions_per_day=6)
    rec = Recorder(lambda: PostgresStore(pg_url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    assert rec.stats().dropped == 0
    reader: Any = open_reader(pg_url)
    try:
        p = _check_all(reader, history, *WHOLE)  # before any rebuild: every hour dirty, read raw
        assert p.hours_from_rollups < 14 * 24
    finally:
        reader.close()
    writer = connect(pg_url)
    try:
        stats = R.rebuild(writer, now_ms=AFTER)
        assert stats.hours > 0 and stats.dirty_left == 0
    finally:
        writer.close()
    reader = open_reader(pg_url)
    try:
        p = _check_all(reader, history, *WHOLE)
        assert p.hours_from_rollups == 14 * 24 and p.raw_ranges == ()
        since, until = WHOLE[0] + 3 * DAY_MS + 0.4 * HOUR_MS, NOW_MS - 0.3 * HOUR_MS
        assert len(_check_all(reader, history, since, until).raw_ranges) == 2
    finally:
        reader.close()
