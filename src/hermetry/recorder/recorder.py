"""The recorder: a bounded in-memory queue in front of a background writer thread.

The agent's thread only ever appends one tuple to a deque (``submit``) and returns; it never
takes a lock, touches a file or raises. A daemon thread drains the queue every
``flush_interval_s``, turns raw items into canonical events, and writes them in batches.

Guarantees, each tested:

* bounded memory: at most ``capacity`` queued items and ``capacity`` events waiting for the
  store; past that, new items are dropped and *counted* (``stats().dropped``, persisted in the
  ``recorder_runs`` table), never silently;
* a store that is locked, full or read-only keeps its batch and is retried with back-off;
* a corrupt store disables writing (counted as drops) — the agent keeps running;
* ``close()`` (registered with ``atexit``) flushes what is queued, bounded by a timeout.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hermetry.model.events import Event
from hermetry.recorder.sink import Sink, SinkDisabled, SinkUnavailable

log = logging.getLogger("hermetry")

#: A queued item: a tuple whose first element turns the whole tuple into canonical events.
Item = tuple[Any, ...]
Normalizer = Callable[[Item], Iterable[Event]]
#: A processor takes a canonical event and returns it (possibly enriched), like structlog's.
Processor = Callable[[Event], Event]


#: The writer gives up the interpreter at least this often while it turns items into events.
YIELD_EVERY_S = 0.0001


#: The primary sink (the store). Kept as a name for readers of older code.
Store = Sink

#: Sinks that see every batch of every recorder in this process, like exporters (for tests:
#: :func:`hermetry.testing.capture_events`). Read once per batch on the writer thread.
TAPS: list[Sink] = []
#: Every recorder alive in this process (so a capture can flush them all).
LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()


@dataclass(frozen=True)
class ExporterStats:
    """One best-effort exporter's own ledger: batches and events it took or failed."""

    name: str
    batches: int
    events: int
    failed_batches: int
    dropped: int
    last_error: str | None
    disabled: bool
    #: what the exporter itself could not deliver (an OTLP sink: spans + metric points)
    undelivered: int = 0


@dataclass(frozen=True)
class RecorderStats:
    written: int
    dropped: int
    queued: int
    pending: int
    last_error: str | None
    exporters: tuple[ExporterStats, ...] = ()


class _Exporter:
    """An exporter and its counts. A failure here never reaches the store or the agent."""

    __slots__ = ("factory", "sink", "name", "batches", "events", "failed_batches", "dropped",
                 "last_error", "disabled")

    def __init__(self, factory: Callable[[], Sink]) -> None:
        self.factory = factory
        self.sink: Sink | None = None
        self.name = getattr(factory, "sink_name", None) or "exporter"
        self.batches = self.events = self.failed_batches = self.dropped = 0
        self.last_error: str | None = None
        self.disabled = False

    def export(self, batch: list[Event], run: dict[str, Any]) -> None:
        if self.disabled:
            self.dropped += len(batch)
            return
        try:
            if self.sink is None:
                self.sink = self.factory()
                self.name = getattr(self.sink, "name", self.name)
            self.sink.write(batch, run)
            self.batches += 1
            self.events += len(batch)
        except SinkDisabled as exc:
            self.disabled = True
            self.last_error = str(exc)
            self.dropped += len(batch)
            log.warning("hermetry: %s export disabled: %s", self.name, exc)
        except Exception as exc:  # SinkUnavailable or a bug: best effort, counted, not retried
            self.failed_batches += 1
            self.dropped += len(batch)
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.debug("hermetry: %s export failed", self.name, exc_info=True)

    def flush(self, timeout_s: float) -> None:
        if self.sink is not None and not self.disabled:
            try:
                self.sink.flush(timeout_s)
            except Exception:
                log.debug("hermetry: %s flush failed", self.name, exc_info=True)

    def close(self) -> None:
        if self.sink is not None:
            try:
                self.sink.close()
            except Exception:
                log.debug("hermetry: %s close failed", self.name, exc_info=True)

    def ledger(self) -> dict[str, Any]:
        """This exporter's figures as the store persists them per run (``exporter_runs``): the
        events it refused, and what the sink itself reports it could not deliver (``stats()``)."""
        own: dict[str, Any] = {}
        try:
            reported = self.sink.stats() if self.sink is not None and hasattr(self.sink, "stats") else {}
            own = reported if isinstance(reported, dict) else {}
        except Exception:  # noqa: BLE001 - a ledger read must never fail the writer
            pass
        return {"name": self.name, "events_dropped": self.dropped,
                "spans_dropped": int(own.get("dropped_spans") or 0),
                "points_dropped": int(own.get("dropped_points") or 0),
                "failed_batches": self.failed_batches,
                "last_error": own.get("last_error") or self.last_error}

    def stats(self) -> ExporterStats:
        undelivered = getattr(self.sink, "undelivered", 0)
        return ExporterStats(self.name, self.batches, self.events, self.failed_batches,
                             self.dropped, self.last_error, self.disabled,
                             undelivered if isinstance(undelivered, int) else 0)


def _as_is(item: Item) -> Iterable[Event]:
    return (item[1],)


class Recorder:
    """Queue canonical (or raw, source-specific) events and write them off-thread."""

    def __init__(
        self,
        store_factory: Callable[[], Sink],
        *,
        exporters: Iterable[Callable[[], Sink]] = (),
        capacity: int = 100_000,
        flush_interval_s: float = 0.1,
        max_batch: int = 5_000,
        register_atexit: bool = True,
        processors: Iterable[Processor] = (),
        host: str | None = None,
        drop_ledger: Any = None,
    ) -> None:
        self._store_factory = store_factory
        #: where the drop count goes when the store cannot take it at exit (ledger.DropLedger);
        #: by default the store factory's own ``drop_ledger`` attribute, if it has one
        self._drop_ledger = drop_ledger if drop_ledger is not None else getattr(store_factory, "drop_ledger", None)
        self._exporters = [_Exporter(f) for f in exporters]
        self.processors = list(processors)
        self.capacity = capacity
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        #: this machine's id in a fleet, stamped on sessions and the ledger (config.host())
        self.host = host or socket.gethostname()
        self._run = {
            "run_id": uuid.uuid4().hex,
            "host": self.host,
            "pid": os.getpid(),
            "started_at_ms": time.time() * 1000,
            "events_dropped": 0,
        }
        try:
            from hermetry import __version__

            self._run["hermetry_version"] = __version__
        except Exception:  # pragma: no cover
            pass
        self._init_state()
        LIVE.add(self)
        if register_atexit:
            # At exit: flush, but keep accepting — other exit handlers (Hermes' own shutdown of
            # its sessions) may still report events after ours has run.
            atexit.register(self.flush_at_exit, 3.0)
        try:
            os.register_at_fork(after_in_child=self._after_fork)
        except Exception:  # pragma: no cover - platforms without fork
            pass

    # -- state -------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._queue: deque[Item] = deque()
        self._pending: list[Event] = []
        self._dropped = 0
        self._drops_reported = 0  # the drop count last written to recorder_runs
        self._exporters_reported: list[dict[str, Any]] = []  # the exporter ledger last written (exporter_runs)
        self._written = 0
        self._drop_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._abandoned = False  # close() gave up waiting: the writer counts what it holds and stops
        self._drop_noticed = False
        self._disabled_reason: str | None = None
        self._last_error: str | None = None
        self._failures = 0
        self._failing = False
        self._passes = 0
        self._store: Store | None = None
        self._thread = threading.Thread(target=self._run_writer, name="hermetry-writer", daemon=True)
        self._started = False

    def _start(self) -> None:
        with self._drop_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def _after_fork(self) -> None:
        # The writer thread and the store's connection do not survive a fork: start fresh, and
        # lazily — most forked children (a terminal tool's pty) exec at once and record nothing.
        self._run = dict(self._run, run_id=uuid.uuid4().hex, pid=os.getpid(), events_dropped=0)
        self._init_state()

    # -- the hot path ------------------------------------------------------------------------

    def submit(self, item: Item) -> None:
        """Queue one raw item ``(normalizer, ...)``. Never blocks, never raises."""
        q = self._queue
        if len(q) < self.capacity and not self._closed:
            q.append(item)
            if not self._started:
                self._start()
        else:
            self._count_drop(1)  # full, or closed: counted, never silent

    def record(self, event: Event) -> None:
        """Queue one canonical event (the runtime-agnostic API)."""
        self.submit((_as_is, event))

    def nudge(self) -> None:
        """Ask the writer to run now (a session ended; the process may be about to exit)."""
        self._wake.set()

    def _exporter_ledger(self) -> list[dict[str, Any]]:
        return [x.ledger() for x in self._exporters if x.sink is not None or x.dropped]

    def _run_record(self, dropped: int) -> dict[str, Any]:
        """The ledger written with a batch: the run's drops, and each exporter's (exporter_runs)."""
        run = dict(self._run, events_dropped=dropped)
        if self._exporters:
            run["exporters"] = self._exporter_ledger()
        return run

    def _count_drop(self, n: int) -> None:
        with self._drop_lock:
            self._dropped += n

    # -- control -----------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (or the timeout passes), then give the
        exporters what is left of the timeout to deliver what they buffer."""
        deadline = time.monotonic() + timeout
        written = self._flush_primary(deadline)
        store = self._store
        if written and store is not None:  # a store that forwards (PostgreSQL's spool) delivers now
            try:
                written = store.flush(max(0.0, deadline - time.monotonic())) is not False
            except Exception:
                log.debug("hermetry: store flush failed", exc_info=True)
        for exporter in self._exporters:
            exporter.flush(max(0.0, deadline - time.monotonic()))
        if self._exporters:
            self._persist_ledger(deadline)  # what the exporters wrote off while flushing, too
        return written

    def _persist_ledger(self, deadline: float) -> None:
        """Have the writer store the drop ledger (the recorder's and each exporter's) if it changed."""
        first_pass = self._passes
        while self._started and self._thread.is_alive() and self._drops_unreported():
            if time.monotonic() >= deadline or (self._failing and self._passes > first_pass + 2):
                return  # the store cannot take it now: flush_at_exit keeps it in the fallback ledger
            self._wake.set()
            time.sleep(0.005)

    def _flush_primary(self, deadline: float) -> bool:
        first_pass = self._passes
        self._wake.set()
        if not self._started:
            return not self._queue and not self._pending
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                return not self._queue and not self._pending  # no writer left to wait for
            if not self._queue and not self._pending and self._idle.is_set():
                return True
            if self._failing and self._passes > first_pass + 2:
                return False  # the store refused a fresh attempt: waiting would only slow the caller
            self._wake.set()
            time.sleep(0.005)
        return not self._queue and not self._pending

    def flush_at_exit(self, timeout: float = 3.0) -> bool:
        """The last flush of a process (``atexit``, Hermes' ``os._exit``): flush, then, if the
        store could not take everything, put the count of what is lost where the next process
        finds it (``ledger.DropLedger``) and say so once. Never raises."""
        ok = False
        try:
            ok = self.flush(timeout)
            lost = len(self._queue) + len(self._pending)
            if lost or (self._dropped != self._drops_reported and self._dropped) or (
                    self._exporters and self._exporter_ledger() != self._exporters_reported):
                self._save_fallback(lost)
        except Exception:
            log.debug("hermetry: final flush failed", exc_info=True)
        return ok

    def _save_fallback(self, lost: int) -> None:
        from hermetry.recorder.notice import counts as notice_counts
        from hermetry.recorder.notice import warn_once

        where = None
        if self._drop_ledger is not None:
            record = dict(self._run_record(self._dropped + lost), events_written=self._written,
                          lost_at_exit=lost, last_error=self._last_error)
            where = self._drop_ledger.save(record)
        if lost and not notice_counts():  # one line per process: a failure already said covers it
            kept = f"; the count is kept in {where} until the file can be written" if where else ""
            warn_once("lost-at-exit", f"{lost:,} telemetry events could not be written before this process "
                                      f"ended ({self._last_error or 'the store did not answer'}){kept}")

    def close(self, timeout: float = 5.0) -> None:
        """Flush and stop the writer. Safe to call more than once.

        If the writer is still busy when the timeout ends (a store that keeps failing), it is
        told to stop: it finishes the write it is in, then counts what it still holds as dropped
        — so no event is ever counted both written and dropped.
        """
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        if self._started:
            self._thread.join(timeout=max(0.1, timeout / 5))
        if self._thread.is_alive():
            self._abandoned = True
            self._wake.set()
        else:
            self._abandon()
        if not self._thread.is_alive() and self._store is not None:
            try:
                self._store.close()
            except Exception:
                log.debug("hermetry: closing the store failed", exc_info=True)
        if not self._thread.is_alive():
            for exporter in self._exporters:
                exporter.close()

    def stats(self) -> RecorderStats:
        return RecorderStats(
            written=self._written,
            dropped=self._dropped,
            queued=len(self._queue),
            pending=len(self._pending),
            last_error=self._last_error,
            exporters=tuple(x.stats() for x in self._exporters),
        )

    # -- the writer thread -------------------------------------------------------------------

    def _abandon(self) -> None:
        """Count what is still held as dropped (close() is done waiting for it)."""
        with self._drop_lock:
            n = len(self._queue) + len(self._pending)
            self._queue.clear()
            self._pending.clear()
            self._dropped += n

    def _notice_drops(self) -> None:
        if self._dropped and not self._drop_noticed:
            self._drop_noticed = True
            from hermetry.recorder.notice import warn_once

            why = self._disabled_reason or self._last_error or "the queue was full"
            warn_once("drops", f"telemetry events are being dropped ({why}); they are counted "
                               f"(`hermetry doctor` shows the count)")

    def _run_writer(self) -> None:
        backoff = self.flush_interval_s
        while True:
            self._wake.wait(backoff)
            self._wake.clear()
            if self._abandoned:
                self._abandon()
                return
            if self._closed and not self._queue and not self._pending and not self._drops_unreported():
                return
            self._idle.clear()
            try:
                ok = self._drain_once()
                backoff = self.flush_interval_s if ok else min(backoff * 2, 2.0)
            except Exception as exc:  # never let the thread die
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.debug("hermetry writer error", exc_info=True)
            finally:
                self._passes += 1
                self._idle.set()
            try:
                self._notice_drops()
            except Exception:
                pass
            if self._abandoned:
                self._abandon()
                return
            if self._closed and (not self._queue and not self._pending or self._disabled_reason):
                return

    def _drain_once(self) -> bool:
        """Move queued items to the store in batches. False when the store must be retried."""
        q = self._queue
        while (q or self._pending) and not self._abandoned:
            room = self.capacity - len(self._pending)
            take = min(len(q), self.max_batch, max(room, 0))
            batch = []
            clock = time.perf_counter
            slice_start = clock()
            for _ in range(take):
                item = q.popleft()
                try:
                    events = item[0](item)
                    if self.processors:
                        events = [self._process(e) for e in events]
                    batch.extend(events)
                except Exception:
                    self._count_drop(1)
                    log.debug("hermetry: could not normalize %r", item[:1], exc_info=True)
                if clock() - slice_start > YIELD_EVERY_S:
                    # Python code holds the interpreter lock; hand it back often, so an agent
                    # thread never waits behind the writer for long (Python's own switch
                    # interval is 5 ms).
                    time.sleep(0)
                    slice_start = clock()
            if batch and (self._exporters or TAPS):
                run = dict(self._run, events_dropped=self._dropped)
                for exporter in self._exporters:
                    exporter.export(batch, run)
                for tap in tuple(TAPS):
                    try:
                        tap.write(batch, run)
                    except Exception:
                        log.debug("hermetry: a tap failed", exc_info=True)
            self._pending.extend(batch)
            if not self._pending:
                continue
            if self._disabled_reason is not None:
                self._count_drop(len(self._pending))
                self._pending.clear()
                continue
            if not self._write_pending():
                if len(q) >= self.capacity and room <= 0:
                    # both buffers are full while the store is unavailable: shed the oldest
                    overflow = len(self._pending) // 2
                    del self._pending[:overflow]
                    self._count_drop(overflow)
                return False
        if self._drops_unreported():
            return self._write_pending()  # nothing left to write but the drop count itself
        return True

    def _write_one_by_one(self) -> bool:
        """A batch keeps failing for a reason that is not the store's: write its events one at a
        time, so only the event that cannot be written is dropped (and counted)."""
        assert self._store is not None
        pending, self._pending = self._pending, []
        for i, event in enumerate(pending):
            try:
                # with the run, so the file's ledger counts what this way writes too
                self._written += self._store.write([event], self._run_record(self._dropped))
                self._drops_reported = self._dropped
            except SinkUnavailable:
                self._pending = pending[i:]
                return False
            except Exception:
                self._count_drop(1)
                log.debug("hermetry: dropped an event that cannot be written: %r", event, exc_info=True)
        self._drops_reported = -1  # make the writer report the new drop count
        return True

    def _drops_unreported(self) -> bool:
        if self._disabled_reason is not None:
            return False
        return self._dropped != self._drops_reported or bool(
            self._exporters and self._exporter_ledger() != self._exporters_reported)

    def _process(self, event: Event) -> Event:
        for processor in self.processors:
            try:
                event = processor(event)
            except Exception:
                log.debug("hermetry: processor %r failed", processor, exc_info=True)
        return event

    def _write_pending(self) -> bool:
        try:
            if self._store is None:
                self._store = self._store_factory()
            dropped = self._dropped
            run = self._run_record(dropped)
            n = self._store.write(self._pending, run)
        except SinkUnavailable as exc:
            self._last_error = str(exc)
            self._failing = True
            text = str(exc).lower()
            if "locked" not in text and "busy" not in text:  # a lock is normal among writers: retried quietly
                from hermetry.recorder.notice import warn_once

                warn_once("store-unavailable", f"{exc}; telemetry events are kept and retried, and counted "
                                               f"as dropped if they cannot be written (`hermetry doctor`)")
            return False
        except SinkDisabled as exc:
            self._disabled_reason = self._last_error = str(exc)
            from hermetry.recorder.notice import warn_once

            hint = getattr(exc, "hint", None)
            warn_once("store-disabled", f"telemetry is not recorded: {exc}" + (f" ({hint})" if hint else "")
                      + "; events are counted as dropped")
            self._drop_noticed = True
            self._count_drop(len(self._pending))
            self._pending.clear()
            return True
        except Exception as exc:
            # Not a store condition but a bug or a bad event: retry a few times, then drop the
            # batch (counted) rather than block every later event behind it.
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.debug("hermetry: write failed", exc_info=True)
            self._failures += 1
            if self._failures >= 3:
                self._failures = 0
                return self._write_one_by_one()
            return False
        self._failures = 0
        self._failing = False
        self._drops_reported = dropped
        self._exporters_reported = run.get("exporters", [])
        self._written += n
        self._pending.clear()
        return True
