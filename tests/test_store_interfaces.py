"""The two seams, each with more than one implementation, driven by the same events.

* The **sink** interface (recorder/sink.py): ``SQLiteStore``, ``PostgresStore`` and
  ``hermetry.testing.InMemorySink`` take the same batches through a real ``Recorder``, and each
  holds what the test injected.
* The **read/write store** interface (stores/reader.open_db + the analytics): a SQLite file and a
  PostgreSQL database written with the same events answer ``insights`` and give back the same
  events, equal to what the test injected. (tests/test_postgres_analytics.py compares every
  report of both on a large synthetic history.)

Ground truth is the events built here (pg_helpers.session_events: call i has i input and 2·i
output tokens, 10 + i ms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.events import stored_events
from hermetry.analytics.query import Query
from hermetry.analytics.report import insights
from hermetry.model.events import ApiCall, Event, ToolCall
from hermetry.recorder.recorder import Recorder
from hermetry.recorder.sink import Sink
from hermetry.stores.postgres import PostgresStore
from hermetry.stores.sqlite import SQLiteStore
from hermetry.testing import InMemorySink
from pg_helpers import T0_MS, session_events

CALLS = 7
EVENTS: list[Event] = session_events("s1", CALLS, "h1") + session_events("s2", CALLS, "h1", t0=T0_MS + 60_000)
INPUT = 2 * sum(range(CALLS))
OUTPUT = 2 * sum(2 * i for i in range(CALLS))


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any, Any]:
    """(kind, sink factory, where to read it back: a path, a URL, or the in-memory sink)."""
    if request.param == "sqlite":
        path = tmp_path / "t.db"
        return "sqlite", lambda: SQLiteStore(path), path
    if request.param == "postgres":
        url = str(request.getfixturevalue("pg_server").create_database())
        return "postgres", lambda: PostgresStore(url, host="h1"), url
    memory = InMemorySink()
    return "memory", lambda: memory, memory


def _held(kind: str, where: Any) -> list[Event]:
    return list(where.events) if kind == "memory" else list(stored_events(where))


def test_every_sink_is_a_sink_and_holds_what_the_recorder_wrote(sink: tuple[str, Any, Any]) -> None:
    kind, factory, where = sink
    assert isinstance(factory(), Sink)
    rec = Recorder(factory, register_atexit=False, flush_interval_s=0.01, max_batch=5, host="h1")
    for e in EVENTS:
        rec.record(e)
    rec.close(timeout=60)
    stats = rec.stats()
    assert (stats.written, stats.dropped, stats.pending) == (len(EVENTS), 0, 0)
    held = _held(kind, where)
    calls = sorted((e for e in held if isinstance(e, ApiCall)), key=lambda c: c.api_request_id)
    assert [c.api_request_id for c in calls] == sorted(e.api_request_id for e in EVENTS if isinstance(e, ApiCall))
    assert sum(c.input_tokens or 0 for c in calls) == INPUT
    assert sum(c.output_tokens or 0 for c in calls) == OUTPUT
    assert sorted(c.latency_ms or 0 for c in calls) == sorted(10.0 + i for i in range(CALLS) for _ in (0, 1))
    assert sum(isinstance(e, ToolCall) for e in held) == 2 * CALLS


def test_a_sink_write_returns_the_count_and_flush_and_close_are_safe(sink: tuple[str, Any, Any]) -> None:
    _, factory, _ = sink
    s = factory()
    assert s.write(EVENTS[:3], None) == 3
    assert s.flush(1.0) is True
    s.close()


def test_both_stores_answer_the_same_from_the_same_events(tmp_path: Path, pg_server: Any) -> None:
    path, url = tmp_path / "t.db", str(pg_server.create_database())
    for store in (SQLiteStore(path), PostgresStore(url, host="h1")):
        assert store.write(EVENTS, None) == len(EVENTS)
        store.close()
    q = Query(since_ms=T0_MS - 1, until_ms=T0_MS + 3_600_000, group_by=())
    for db in (path, url):
        report = insights(db, q)
        assert report["api_calls"]["count"] == 2 * CALLS, db
        assert report["sessions"]["count"] == 2, db
        assert report["turns"]["count"] == 2, db
        held = list(stored_events(db))
        assert sum(e.input_tokens or 0 for e in held if isinstance(e, ApiCall)) == INPUT, db
