"""Nothing lost when the network is: a local spool in front of the PostgreSQL store.

A process that records to PostgreSQL never writes there from the recorder's thread. Each batch
is first appended to a local SQLite file, the *spool* (``$HERMES_HOME/hermetry/spool.db``, 0600;
one row per batch, with an id), which takes microseconds and needs no network. A forwarder thread
then applies spooled batches to PostgreSQL in the order they were spooled and deletes them once
the database has committed them. So:

* the agent never waits on the network, not even at exit: the recorder's flush ends when the
  batch is spooled; the forwarder gets what is left of the flush's time, and what it could not
  deliver stays spooled;
* PostgreSQL down, unreachable or slow: batches wait in the spool and are forwarded when it is
  back — by the forwarder (it retries with back-off, every ``RETRY_MAX_S`` at the latest), by the
  next hermetry process on the host, or by ``hermetry sync``;
* forwarding is idempotent: each batch's id is recorded in ``forwarded_batches`` in the same
  transaction that applies it, so a batch forwarded again (a lost acknowledgement, a crash
  between the commit and the spool's delete) adds nothing;
* several processes on one host share the spool; one at a time forwards (an exclusive lock on
  ``spool.db.lock``), oldest batch first, so events of one session keep their order;
* counted: :func:`spool_status` (and ``hermetry sync --json``) says how many batches and events
  wait, and since when; a batch PostgreSQL rejects for its content (not for being unreachable)
  is moved to the spool's ``rejected`` table after ``MAX_ATTEMPTS`` tries, counted and warned about
  once, never dropped silently.

The spool stores the canonical events (JSON), never more than the store would: no content.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from hermetry.model import events as ev
from hermetry.recorder.sink import SinkDisabled, SinkUnavailable
from hermetry.stores.sqlite_util import transaction

log = logging.getLogger("hermetry")

#: Batches forwarded per PostgreSQL transaction (at most; fewer when they are large).
FORWARD_BATCHES = 50
FORWARD_EVENTS = 20_000
#: Back-off between forwarding attempts while PostgreSQL is unreachable.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
#: A batch PostgreSQL refuses this often for its content is set aside (``rejected``).
MAX_ATTEMPTS = 5
BUSY_TIMEOUT_MS = 2_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id        TEXT NOT NULL UNIQUE,
    spooled_at_ms   REAL NOT NULL,
    events          INTEGER NOT NULL,
    payload         TEXT NOT NULL,       -- JSON: [[event type, {fields}], ...]
    run             TEXT,                -- JSON: the recorder's ledger when it was spooled
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE TABLE IF NOT EXISTS rejected (
    seq             INTEGER PRIMARY KEY,
    batch_id        TEXT NOT NULL,
    spooled_at_ms   REAL NOT NULL,
    events          INTEGER NOT NULL,
    payload         TEXT NOT NULL,
    run             TEXT,
    error           TEXT,
    rejected_at_ms  REAL NOT NULL
);
"""

#: every canonical event type, by name (from the model's own union, so none is forgotten)
_EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in get_args(ev.Event)}


def encode(events: Sequence[ev.Event]) -> str:
    return json.dumps([[type(e).__name__, _fields(e)] for e in events], separators=(",", ":"))


def _fields(e: Any) -> dict[str, Any]:
    return {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}


def decode(payload: str) -> list[ev.Event]:
    out: list[ev.Event] = []
    for name, fields in json.loads(payload):
        cls = _EVENT_TYPES.get(name)
        if cls is None:  # a type this hermetry no longer records
            continue
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in fields.items() if k in known}
        if "supersedes" in kwargs and isinstance(kwargs["supersedes"], list):
            kwargs["supersedes"] = tuple(kwargs["supersedes"])
        out.append(cls(**kwargs))
    return out


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    return conn


@dataclass(frozen=True)
class SpoolStatus:
    """What waits in a spool file."""

    path: str
    batches: int
    events: int
    oldest_spooled_at_ms: float | None
    rejected_batches: int
    rejected_events: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def spool_status(path: str | os.PathLike[str]) -> SpoolStatus:
    """Batches and events waiting in the spool (zeros when it does not exist)."""
    p = Path(path)
    if not p.exists():
        return SpoolStatus(str(p), 0, 0, None, 0, 0, None)
    conn = _open(p)
    try:
        n, events, oldest = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(events), 0), MIN(spooled_at_ms) FROM batches").fetchone()
        rn, revents = conn.execute("SELECT COUNT(*), COALESCE(SUM(events), 0) FROM rejected").fetchone()
        row = conn.execute("SELECT last_error FROM batches WHERE last_error IS NOT NULL ORDER BY seq LIMIT 1").fetchone()
        return SpoolStatus(str(p), n, events, oldest, rn, revents, row[0] if row else None)
    finally:
        conn.close()


class Spool:
    """The spool file: append batches, hand out the oldest, delete what was delivered."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = _open(self.path)
            except sqlite3.DatabaseError as exc:
                if "not a database" in str(exc) or "malformed" in str(exc):
                    raise SinkDisabled(f"{self.path}: {exc}") from exc
                raise SinkUnavailable(f"{self.path}: {exc}") from exc
            except OSError as exc:
                raise SinkUnavailable(f"{self.path}: {exc}") from exc
        return self._conn

    def append(self, events: Sequence[ev.Event], run: Mapping[str, Any] | None) -> str:
        batch_id = uuid.uuid4().hex
        payload = encode(events)
        try:
            self._connection().execute(
                "INSERT INTO batches (batch_id, spooled_at_ms, events, payload, run) VALUES (?, ?, ?, ?, ?)",
                (batch_id, time.time() * 1000, len(events), payload,
                 json.dumps(dict(run), default=str) if run is not None else None))
        except sqlite3.Error as exc:
            raise SinkUnavailable(f"{self.path}: {exc}") from exc
        return batch_id

    def oldest(self, max_batches: int = FORWARD_BATCHES, max_events: int = FORWARD_EVENTS) -> list[tuple[Any, ...]]:
        rows = self._connection().execute(
            "SELECT seq, batch_id, spooled_at_ms, events, payload, run, attempts FROM batches "
            "ORDER BY seq LIMIT ?", (max_batches,)).fetchall()
        out: list[tuple[Any, ...]] = []
        total = 0
        for row in rows:
            if out and total + row[3] > max_events:
                break
            out.append(row)
            total += row[3]
        return out

    def delete(self, seqs: Sequence[int]) -> None:
        conn = self._connection()
        conn.executemany("DELETE FROM batches WHERE seq = ?", [(s,) for s in seqs])

    def failed(self, seq: int, error: str) -> int:
        """Count a failed attempt of one batch; set it aside after ``MAX_ATTEMPTS``. Returns attempts."""
        conn = self._connection()
        conn.execute("UPDATE batches SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error[:500], seq))
        row = conn.execute("SELECT attempts FROM batches WHERE seq = ?", (seq,)).fetchone()
        attempts = int(row[0]) if row else 0
        if attempts >= MAX_ATTEMPTS:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO rejected (seq, batch_id, spooled_at_ms, events, payload, run, error, rejected_at_ms) "
                    "SELECT seq, batch_id, spooled_at_ms, events, payload, run, last_error, ? FROM batches WHERE seq = ?",
                    (time.time() * 1000, seq))
                conn.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            log.warning("hermetry: a spooled batch was refused %d times by PostgreSQL and set aside in %s "
                        "(table rejected): %s", attempts, self.path, error)
        return attempts

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


@dataclass
class ForwardResult:
    """What one forwarding run did."""

    forwarded_batches: int = 0
    forwarded_events: int = 0
    duplicate_batches: int = 0  # already applied earlier: nothing added
    rejected_batches: int = 0
    pending_batches: int = 0
    error: str | None = None
    #: the error was contention with another writer (a deadlock, a lock timeout), not the network
    busy: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_busy(exc: BaseException) -> bool:
    from hermetry.stores.postgres import PostgresBusy

    return isinstance(exc, PostgresBusy)


class _ForwardLock:
    """One forwarder per spool file at a time, across processes (flock on ``<spool>.lock``)."""

    def __init__(self, spool_path: Path) -> None:
        self.path = spool_path.with_name(spool_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self, blocking: bool = False) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


def forward(spool: Spool, store: Any, *, deadline: float | None = None, blocking: bool = False) -> ForwardResult:
    """Apply spooled batches to ``store`` (a PostgresStore), oldest first, until the spool is empty,
    the store is unavailable, or ``deadline`` (``time.monotonic()``) passes.

    Raises ``SinkDisabled`` when the store will never take a batch (the spool keeps them)."""
    result = ForwardResult()
    lock = _ForwardLock(spool.path)
    if not lock.acquire(blocking):
        result.error = "another process is forwarding this spool"
        return result
    try:
        while deadline is None or time.monotonic() < deadline:
            rows = spool.oldest()
            if not rows:
                break
            try:
                applied = _forward_rows(store, rows, result)
            except SinkUnavailable as exc:
                result.error = str(exc)
                result.busy = _is_busy(exc)
                break
            spool.delete([r[0] for r in applied])
            if len(applied) < len(rows):  # one batch was refused for its content
                bad = rows[len(applied)]
                if spool.failed(bad[0], result.error or "refused") >= MAX_ATTEMPTS:
                    result.rejected_batches += 1
                if len(applied) == 0:
                    break  # retry later; never spin on a batch the database refuses
        result.pending_batches = spool._connection().execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    finally:
        lock.release()
    return result


def _forward_rows(store: Any, rows: list[tuple[Any, ...]], result: ForwardResult) -> list[tuple[Any, ...]]:
    """Apply ``rows`` one batch per transaction (each batch's id deduplicates it). Returns the rows
    applied, in order, stopping before a batch the database refused for its content."""
    applied: list[tuple[Any, ...]] = []
    for row in rows:
        seq, batch_id, spooled_at_ms, n_events, payload, run, _attempts = row
        try:
            events = decode(payload)
            n = store.write(events, json.loads(run) if run else None, batch_id=batch_id, spooled_at_ms=spooled_at_ms)
        except (SinkUnavailable, SinkDisabled):
            raise
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            log.debug("hermetry: PostgreSQL refused a spooled batch", exc_info=True)
            return applied
        if n == 0 and n_events:
            result.duplicate_batches += 1
        else:
            result.forwarded_batches += 1
            result.forwarded_events += n
        applied.append(row)
    return applied


class FleetStore:
    """The Sink the recorder writes to when the store is PostgreSQL: spool, then forward.

    ``write`` only appends to the spool (local, fast) and wakes the forwarder thread; ``flush``
    gives the forwarder up to its timeout to empty the spool; ``close`` stops it. What could not
    be forwarded stays in the spool for the next process or ``hermetry sync``.
    """

    name = "postgres"

    def __init__(self, store_factory: Callable[[], Any], spool_path: str | os.PathLike[str]) -> None:
        self._store_factory = store_factory
        self._store: Any = None
        self.spool_path = Path(spool_path)
        self._spool = Spool(self.spool_path)        # the recorder's thread appends
        self._fwd_spool = Spool(self.spool_path)    # the forwarder's thread reads and deletes
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._disabled: str | None = None
        self._warned = False
        self.spooled_batches = self.spooled_events = 0
        self.forwarded_batches = self.forwarded_events = self.duplicate_batches = 0
        self.last_error: str | None = None
        self._pending = True  # unknown at start: the spool may hold batches of earlier processes
        self._backoff = RETRY_MIN_S
        self._attempts = 0  # forwarding passes finished
        self._failing = False

    # -- Sink ------------------------------------------------------------------------------

    def write(self, events: Sequence[ev.Event], run: Mapping[str, Any] | None = None) -> int:
        self._spool.append(events, run)
        self.spooled_batches += 1
        self.spooled_events += len(events)
        self._pending = True
        self._start()
        self._wake.set()
        return len(events)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Give the forwarder up to ``timeout_s`` to deliver what is spooled; True when it did."""
        if self._disabled:
            return False
        self._start()
        deadline = time.monotonic() + timeout_s
        first = self._attempts
        self._backoff = RETRY_MIN_S
        self._wake.set()
        while time.monotonic() < deadline:
            if not self._pending and self._idle.is_set():
                return True
            if self._thread is None or not self._thread.is_alive():
                return False
            if self._attempts > first + 1 and self._failing:
                return False  # a fresh attempt failed: the spool keeps it; waiting would only delay exit
            time.sleep(0.005)
        return not self._pending

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._thread is None or not self._thread.is_alive():
            if self._store is not None:
                try:
                    self._store.close()
                except Exception:
                    pass
            self._fwd_spool.close()
        self._spool.close()

    # -- the forwarder thread -----------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None and not self._stop:
            self._thread = threading.Thread(target=self._run, name="hermetry-forwarder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        wait = 0.0
        while not self._stop:
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop:
                break
            self._idle.clear()
            try:
                wait = self._forward_once()
            except Exception as exc:  # never let the thread die
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._failing = True
                log.debug("hermetry: forwarder error", exc_info=True)
                wait = self._next_backoff()
            finally:
                self._attempts += 1
                self._idle.set()

    def _next_backoff(self) -> float:
        wait, self._backoff = self._backoff, min(self._backoff * 2, RETRY_MAX_S)
        return wait

    def _forward_once(self) -> float:
        if self._disabled:
            return RETRY_MAX_S
        try:
            if self._store is None:
                self._store = self._store_factory()
            result = forward(self._fwd_spool, self._store)
        except SinkDisabled as exc:
            self._disabled = self.last_error = str(exc)
            log.warning("hermetry: not forwarding to PostgreSQL (events stay in %s): %s", self.spool_path, exc)
            return RETRY_MAX_S
        except SinkUnavailable as exc:
            result = ForwardResult(error=str(exc), pending_batches=1)
        self.forwarded_batches += result.forwarded_batches
        self.forwarded_events += result.forwarded_events
        self.duplicate_batches += result.duplicate_batches
        # contention is retried at once and is not a reason for flush to give up; the network is
        self._failing = result.pending_batches > 0 and bool(result.error) and not result.busy
        if result.busy and result.pending_batches:
            self.last_error = result.error
            return 0.01
        if result.pending_batches == 0:
            self._pending = False
            self._backoff = RETRY_MIN_S
            self._warned = False
            return RETRY_MAX_S  # look again now and then: another process may have spooled
        self.last_error = result.error
        if result.error and not self._warned and "another process" not in result.error:
            self._warned = True
            log.warning("hermetry: PostgreSQL unavailable, events are kept in %s and forwarded when it is "
                        "back (hermetry sync forwards now): %s", self.spool_path, result.error)
        return self._next_backoff()

    def stats(self) -> dict[str, Any]:
        return {"spooled_batches": self.spooled_batches, "spooled_events": self.spooled_events,
                "forwarded_batches": self.forwarded_batches, "forwarded_events": self.forwarded_events,
                "duplicate_batches": self.duplicate_batches, "pending": self._pending,
                "last_error": self.last_error, "disabled": self._disabled}


def sync(url: str, spool_path: str | os.PathLike[str], *, host: str | None = None,
         timeout_s: float | None = None) -> ForwardResult:
    """Forward everything spooled at ``spool_path`` to the PostgreSQL store at ``url`` now
    (``hermetry sync``). Waits for a forwarder of another process to finish first."""
    from hermetry.stores.postgres import PostgresStore

    path = Path(spool_path)
    if not path.exists():
        return ForwardResult()
    spool = Spool(path)
    store = PostgresStore(url, host=host)
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return forward(spool, store, deadline=deadline, blocking=True)
    finally:
        store.close()
        spool.close()
