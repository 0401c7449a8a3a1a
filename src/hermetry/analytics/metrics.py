"""Cumulative metric series computed from the telemetry file — what ``hermetry metrics`` serves.

The series are exactly the OTLP exporter's (:mod:`hermetry.sinks.genai`: same instruments, same
attributes, same buckets), folded over the whole recorded history. Because they are computed from
the file every process writes, they are monotonic across processes and restarts: a short-lived
``hermes -z`` adds its calls to the same counters a gateway does, and restarting the server loses
nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hermetry.analytics.events import recorder_drops, stored_events
from hermetry.model.events import Event
from hermetry.sinks import genai
from hermetry.stores.reader import Db


@dataclass(frozen=True)
class MetricSnapshot:
    """Every series at one moment, and how long computing them took."""

    series: tuple[genai.Series, ...]
    computed_at_ms: float
    compute_ms: float
    events: int


def metric_snapshot(db: Db) -> MetricSnapshot:
    """Fold the whole history of ``db`` into cumulative series (one pass, streamed)."""
    started = time.perf_counter()
    mapper = genai.GenAIMapper(spans=False)
    aggregator = genai.Aggregator(cumulative=True, max_series=100_000)
    batch: list[Event] = []
    events = 0
    for event in stored_events(db):
        batch.append(event)
        if len(batch) >= 5_000:
            aggregator.add(mapper.map(batch)[1])
            events += len(batch)
            batch.clear()
    aggregator.add(mapper.map(batch)[1])
    aggregator.add(mapper.finish()[1])
    events += len(batch)
    now_ns = time.time_ns()
    dropped = recorder_drops(db)
    # recorder drops: always present (0 is a figure an operator wants to see)
    aggregator.add([genai.Measurement(genai.DROPPED, dropped, ((genai.H_SINK, "recorder"),), now_ns)])
    series = tuple(aggregator.totals())
    return MetricSnapshot(series, time.time() * 1000, (time.perf_counter() - started) * 1000, events)
