"""Assert on what hermetry recorded without SQL: an in-memory sink and ``capture_events()``.

``InMemorySink`` is a :class:`~hermetry.recorder.sink.Sink` that keeps every event it is given
(the OpenTelemetry SDK's ``InMemorySpanExporter`` is the model): use it as a recorder's primary
store or as an exporter. ``capture_events()`` (structlog's ``capture_logs`` is the model) taps
every recorder in the process for the length of a ``with`` block::

    from hermetry.testing import capture_events

    with capture_events() as events:
        run_my_agent()
    assert [e.status for e in events.of(ApiCall)] == ["ok"]

The events are the canonical ones (:mod:`hermetry.model.events`) after normalization and the
processors (pricing), exactly what the store and the exporters receive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from hermetry.model.events import Event
from hermetry.recorder import recorder as _recorder
from hermetry.recorder.sink import SinkDisabled

E = TypeVar("E")


class InMemorySink:
    """Keeps every event written to it, in order; ``events`` is a snapshot."""

    name = "memory"

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._runs: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def write(self, events: Sequence[Event], run: Mapping[str, Any] | None = None) -> int:
        if self._closed:
            raise SinkDisabled("the in-memory sink is closed")
        with self._lock:
            self._events.extend(events)
            if run is not None:
                self._runs.append(dict(run))
        return len(events)

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True

    def close(self) -> None:
        self._closed = True

    @property
    def events(self) -> tuple[Event, ...]:
        """What was written so far (a copy: it never changes under the caller)."""
        with self._lock:
            return tuple(self._events)

    @property
    def runs(self) -> tuple[dict[str, Any], ...]:
        """The recorder ledgers that came with each batch (run_id, pid, events_dropped, …)."""
        with self._lock:
            return tuple(self._runs)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._runs.clear()


class CapturedEvents(list[Event]):
    """The events a :func:`capture_events` block recorded (a list), with one filter."""

    def of(self, kind: type[E]) -> list[E]:
        """The captured events of one type, e.g. ``events.of(ApiCall)``."""
        return [e for e in self if isinstance(e, kind)]


@contextmanager
def capture_events(flush_timeout_s: float = 10.0) -> Iterator[CapturedEvents]:
    """Capture every canonical event any recorder in this process writes during the block.

    At the end of the block every live recorder is flushed (bounded by ``flush_timeout_s``), so
    the list is complete when the block exits; inside the block it fills as batches are written.
    """
    sink = _Tap()
    _recorder.TAPS.append(sink)
    try:
        yield sink.captured
    finally:
        for rec in list(_recorder.LIVE):
            if getattr(rec, "_closed", False):
                continue
            try:
                rec.flush(flush_timeout_s)
            except Exception:
                pass
        _recorder.TAPS.remove(sink)


class _Tap(InMemorySink):
    """An in-memory sink whose list is the one handed to the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.captured = CapturedEvents()

    def write(self, events: Sequence[Event], run: Mapping[str, Any] | None = None) -> int:
        with self._lock:
            self.captured.extend(events)
        return len(events)
