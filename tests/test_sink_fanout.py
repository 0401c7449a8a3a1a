"""The sink seam: one primary store drives retries; each exporter sees every batch once and
fails alone (its own counts), never hurting the store or the agent."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hermetry.model.events import ApiCall, Event
from hermetry.recorder.recorder import Recorder
from hermetry.recorder.sink import Sink, SinkDisabled, SinkUnavailable
from hermetry.stores.sqlite import SQLiteStore


def api(i: int) -> ApiCall:
    return ApiCall(api_request_id=f"req-{i}", attempt=0, session_id="s1", turn_id=None,
                   started_at_ms=1_700_000_000_000.0 + i, latency_ms=1.0, status="ok")


class Collect:
    name = "collect"

    def __init__(self, fail: type[Exception] | None = None) -> None:
        self.events: list[Event] = []
        self.fail = fail
        self.flushed = 0
        self.closed = False

    def write(self, events: Sequence[Event], run: Mapping[str, Any] | None = None) -> int:
        if self.fail is not None:
            raise self.fail("refused")
        self.events.extend(events)
        return len(events)

    def flush(self, timeout_s: float = 5.0) -> bool:
        self.flushed += 1
        return True

    def close(self) -> None:
        self.closed = True


def test_store_and_exporters_are_sinks(tmp_path: Path) -> None:
    assert isinstance(SQLiteStore(tmp_path / "t.db"), Sink)
    assert isinstance(Collect(), Sink)


def test_every_exporter_sees_every_event_once_and_fails_alone(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    good, broken, disabled = Collect(), Collect(SinkUnavailable), Collect(SinkDisabled)
    rec = Recorder(lambda: SQLiteStore(db), exporters=[lambda: good, lambda: broken, lambda: disabled],
                   register_atexit=False, flush_interval_s=0.01)
    for i in range(500):
        rec.record(api(i))
    assert rec.flush(10.0)
    rec.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM api_calls").fetchone()[0] == 500
    conn.close()
    assert sorted(e.api_request_id for e in good.events) == sorted(f"req-{i}" for i in range(500))  # type: ignore[attr-defined]
    by_obj = rec.stats().exporters
    assert [s.events for s in by_obj] == [500, 0, 0]
    assert [s.dropped for s in by_obj] == [0, 500, 500]
    assert by_obj[2].disabled and not by_obj[1].disabled
    assert rec.stats().written == 500 and rec.stats().dropped == 0
    assert good.flushed >= 1 and good.closed and broken.closed
