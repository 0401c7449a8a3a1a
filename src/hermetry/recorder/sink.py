"""The sink seam: where the recorder's batches go.

A *sink* takes batches of canonical events on the recorder's writer thread. The recorder has one
**primary** sink (the store: SQLite by default, PostgreSQL for fleets) that drives retries — a
batch it cannot take now stays queued and is retried — and any number of best-effort
**exporters** (OTLP, …) that each see every batch once, after normalization and processors,
whatever the primary did with it. An exporter's failure is counted against that exporter alone
and never retried by the recorder: exporters own their buffering (the OpenTelemetry SDK's span
processor / exporter split is the model).

Sinks raise only the two exceptions below to say something about themselves; anything else is
treated as a bad batch (retried a few times, then written one event at a time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from hermetry.model.events import Event


class SinkUnavailable(Exception):
    """The sink cannot take this batch now (locked, disk full, read-only, network down): keep the
    batch and try again later."""


class SinkDisabled(Exception):
    """The sink will never take a batch in this process (a corrupt or future-schema file, a bad
    configuration): the batch is counted as dropped and the sink is not called again."""


@runtime_checkable
class Sink(Protocol):
    """One destination for canonical events. Called only from the recorder's writer thread."""

    #: short name used in drop counts and diagnostics ("sqlite", "postgres", "otlp", …)
    name: str

    def write(self, events: Sequence[Event], run: Mapping[str, Any] | None = None) -> int:
        """Write one batch; return how many events it took. ``run`` is the recorder's ledger
        (run_id, host, pid, started_at_ms, events_dropped, …) for stores that persist it."""
        ...

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Deliver what the sink buffers itself, within ``timeout_s``; True when nothing is left."""
        ...

    def close(self) -> None:
        """Release connections and threads. Safe to call more than once."""
        ...
