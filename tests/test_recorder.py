"""Tests for hermetry.recorder: the bounded queue in front of the background writer.

Where the property under test is the recorder's own queue (bounds, retries, drops), the store
is a small fake whose behaviour the test controls; where it is "what the agent recorded is what
the file holds", the store is a real SQLiteStore in tmp_path. No test asserts on timing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hermetry.model.events import ApiCall, Event, SessionEnded, SessionStarted, ToolCall
from hermetry.recorder.recorder import Recorder
from hermetry.stores.sqlite import SQLiteStore, StoreCorrupt, StoreUnavailable

WAIT_S = 10.0  # upper bound for "eventually"; never a performance claim


def api(i: int, session: str = "s1", **kw: Any) -> ApiCall:
    return ApiCall(
        api_request_id=f"req-{i}",
        attempt=0,
        session_id=session,
        turn_id=None,
        started_at_ms=1_700_000_000_000.0 + i,
        latency_ms=float(i) * 1.5,
        status="ok",
        input_tokens=i,
        output_tokens=2 * i,
        **kw,
    )


def wait_until(cond: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.002)
    return cond()


def flush_until_done(rec: Recorder, timeout: float = WAIT_S) -> bool:
    """flush() gives up early while the store refuses writes; keep asking until it is written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rec.flush(1.0):
            return True
    return False


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def recorders() -> Iterator[Callable[..., Recorder]]:
    """Make recorders that are always closed (and their threads stopped) after the test."""
    made: list[Recorder] = []

    def make(store_factory: Callable[[], Any], **kw: Any) -> Recorder:
        kw.setdefault("register_atexit", False)
        kw.setdefault("flush_interval_s", 0.01)
        rec = Recorder(store_factory, **kw)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close(timeout=2.0)


# -- fake stores -----------------------------------------------------------------------------


class ListStore:
    """Keeps what it was given; optionally fails according to ``fail``."""

    def __init__(self, fail: Callable[[list[Event]], Exception | None] | None = None) -> None:
        self.events: list[Event] = []
        self.calls = 0
        self.closed = False
        self.fail = fail
        self.lock = threading.Lock()

    def write(self, events: list[Event], run: dict[str, Any] | None = None) -> int:
        with self.lock:
            self.calls += 1
            exc = self.fail(list(events)) if self.fail else None
            if exc is not None:
                raise exc
            self.events.extend(events)
            return len(events)

    def close(self) -> None:
        self.closed = True


class GatedStore(ListStore):
    """A store whose writes block until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write(self, events: list[Event], run: dict[str, Any] | None = None) -> int:
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise RuntimeError("test gate never opened")
        return super().write(events, run)


# -- everything recorded lands exactly once ---------------------------------------------------


def test_recorded_events_land_in_sqlite_exactly_once(
    tmp_path: Path, recorders: Callable[..., Recorder]
) -> None:
    db = tmp_path / "t.db"
    rec = recorders(lambda: SQLiteStore(db), max_batch=37)
    threads = [
        threading.Thread(target=lambda k=k: [rec.record(api(k * 1000 + i, session=f"s{k}")) for i in range(250)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    tools = [
        ToolCall(f"tc-{i}", "s0", None, "terminal", 1_700_000_000_000.0 + i, float(i), "ok")
        for i in range(50)
    ]
    for tc in tools:
        rec.record(tc)
    for t in threads:
        t.join()
    assert rec.flush(WAIT_S)

    expected = {f"req-{k * 1000 + i}#0": k * 1000 + i for k in range(4) for i in range(250)}
    got = query(db, "SELECT api_call_id, session_id, input_tokens, output_tokens, latency_ms, status FROM api_calls")
    assert len(got) == len(expected) == 1000
    for api_call_id, session_id, inp, out, latency, status in got:
        i = expected.pop(api_call_id)
        assert (session_id, inp, out, latency, status) == (f"s{i // 1000}", i, 2 * i, i * 1.5, "ok")
    assert expected == {}
    assert sorted(query(db, "SELECT tool_call_id FROM tool_calls")) == sorted((t.tool_call_id,) for t in tools)

    s = rec.stats()
    assert (s.written, s.dropped, s.queued, s.pending) == (1050, 0, 0, 0)
    rec.close()
    assert query(db, "SELECT events_written, events_dropped, pid FROM recorder_runs") == [(1050, 0, os.getpid())]


# -- bounded memory ---------------------------------------------------------------------------


def test_bounded_queue_drops_exactly_what_it_did_not_accept(recorders: Callable[..., Recorder]) -> None:
    store = GatedStore()
    rec = recorders(lambda: store, capacity=100)
    first = api(-1)
    rec.record(first)
    assert store.entered.wait(WAIT_S)  # the writer holds [first] and is stuck in the store

    submitted = [api(i) for i in range(1000)]
    worker = threading.Thread(target=lambda: [rec.record(e) for e in submitted])
    worker.start()
    worker.join(WAIT_S)
    assert not worker.is_alive(), "submit blocked on a blocked store"

    s = rec.stats()
    assert s.queued == 100  # capacity, not more
    assert s.pending == 1
    assert s.dropped == 900  # exactly the ones not accepted
    assert s.written == 0

    store.gate.set()
    assert rec.flush(WAIT_S)
    s = rec.stats()
    assert s.written + s.dropped == 1 + len(submitted)
    assert (s.written, s.dropped, s.queued, s.pending) == (101, 900, 0, 0)
    # what was kept is the first `capacity` items, in order, each once
    assert store.events == [first, *submitted[:100]]


def test_queue_never_exceeds_capacity_while_the_store_is_stuck(recorders: Callable[..., Recorder]) -> None:
    store = GatedStore()
    rec = recorders(lambda: store, capacity=100, max_batch=30)
    submitted = 0
    for i in range(1000):
        rec.record(api(i))
        submitted += 1
        if i % 50 == 0:
            s = rec.stats()
            assert s.queued <= 100 and s.pending <= 100
    assert store.entered.wait(WAIT_S)
    s = rec.stats()
    assert s.queued <= 100 and s.pending <= 100
    assert s.dropped == submitted - s.queued - s.pending - s.written
    store.gate.set()
    assert rec.flush(WAIT_S)
    s = rec.stats()
    assert s.written + s.dropped == submitted
    assert len(store.events) == s.written
    assert len({e.api_call_id for e in store.events}) == s.written  # nothing written twice


# -- store conditions -------------------------------------------------------------------------


def test_unavailable_store_keeps_the_batch_and_writes_it_later(recorders: Callable[..., Recorder]) -> None:
    available = threading.Event()
    store = ListStore(lambda _: None if available.is_set() else StoreUnavailable("database is locked"))
    rec = recorders(lambda: store)
    events = [api(i) for i in range(50)]
    for e in events:
        rec.record(e)
    assert wait_until(lambda: store.calls >= 3)  # refused, and retried
    s = rec.stats()
    assert s.queued + s.pending == 50
    assert s.dropped == 0 and s.written == 0
    assert s.last_error is not None and "locked" in s.last_error
    assert rec.flush(0.5) is False  # nothing was written

    available.set()
    assert flush_until_done(rec)
    assert store.events == events  # all of them, once, in order
    s = rec.stats()
    assert (s.written, s.dropped) == (50, 0)


def test_a_failing_normalizer_drops_only_its_item(recorders: Callable[..., Recorder]) -> None:
    store = ListStore()
    rec = recorders(lambda: store)

    def normalize(item: tuple[Any, ...]) -> Iterable[Event]:
        if item[1] == 13:
            raise ValueError("unparseable hook payload")
        return (api(item[1]),)

    for i in range(30):
        rec.submit((normalize, i))
    assert rec.flush(WAIT_S)
    assert [e.input_tokens for e in store.events] == [i for i in range(30) if i != 13]
    s = rec.stats()
    assert (s.written, s.dropped) == (29, 1)


def test_corrupt_store_disables_writing_and_counts_drops(recorders: Callable[..., Recorder]) -> None:
    store = ListStore(lambda _: StoreCorrupt("file is not a database"))
    rec = recorders(lambda: store)
    for i in range(10):
        rec.record(api(i))
    assert rec.flush(WAIT_S)
    s = rec.stats()
    assert (s.written, s.dropped) == (0, 10)
    assert s.last_error is not None and "not a database" in s.last_error

    for i in range(10, 15):
        rec.record(api(i))  # must not raise
        rec.submit(("not a callable", i))  # a broken item must not raise either
    assert rec.flush(WAIT_S)
    assert rec.stats().dropped == 20
    assert store.calls == 1  # disabled: never tried again
    assert store.events == []


def test_generic_errors_are_retried_then_dropped(recorders: Callable[..., Recorder]) -> None:
    # a transient failure: retried, nothing lost
    flaky_left = [2]

    def flaky(_: list[Event]) -> Exception | None:
        if flaky_left[0] > 0:
            flaky_left[0] -= 1
            return RuntimeError("transient")
        return None

    store = ListStore(flaky)
    rec = recorders(lambda: store)
    rec.record(api(1))
    assert flush_until_done(rec)
    assert store.events == [api(1)] and rec.stats().dropped == 0
    assert store.calls == 3

    # a batch that always fails: a few attempts, then dropped and counted; later events flow
    poison = api(666)
    store2 = ListStore(lambda evs: RuntimeError("bad event") if poison in evs else None)
    rec2 = recorders(lambda: store2)
    rec2.record(poison)
    assert flush_until_done(rec2)
    assert rec2.stats().dropped == 1
    attempts = store2.calls
    assert 2 <= attempts <= 5
    rec2.record(api(2))
    assert flush_until_done(rec2)
    assert store2.events == [api(2)]
    assert (rec2.stats().written, rec2.stats().dropped) == (1, 1)


def test_a_bad_event_cannot_wedge_the_sqlite_writer(tmp_path: Path, recorders: Callable[..., Recorder]) -> None:
    """An event SQLite rejects (NOT NULL) is dropped after retries; later events still land."""
    db = tmp_path / "t.db"
    rec = recorders(lambda: SQLiteStore(db))
    bad = ApiCall("bad", 0, "s1", None, 1.0, 1.0, None)  # type: ignore[arg-type]  # status is NOT NULL
    rec.record(bad)
    assert flush_until_done(rec)
    assert rec.stats().dropped == 1
    for i in range(20):
        rec.record(api(i))
    assert flush_until_done(rec)
    assert query(db, "SELECT COUNT(*) FROM api_calls") == [(20,)]
    rec.close()
    assert query(db, "SELECT events_written, events_dropped FROM recorder_runs") == [(20, 1)]


# -- close ------------------------------------------------------------------------------------


def test_close_flushes_what_is_queued(tmp_path: Path, recorders: Callable[..., Recorder]) -> None:
    db = tmp_path / "t.db"
    # the writer would not run on its own for a minute: only close() can get these written
    rec = recorders(lambda: SQLiteStore(db), flush_interval_s=60)
    rec.record(SessionStarted("s1", 1000.0, model="m"))
    for i in range(100):
        rec.record(api(i))
    rec.record(SessionEnded("s1", 5000.0, "cli_close", "completed"))
    rec.close()
    assert query(db, "SELECT COUNT(*) FROM api_calls") == [(100,)]
    assert query(db, "SELECT model, end_reason FROM sessions") == [("m", "cli_close")]
    assert rec.stats().written == 102
    rec.close()  # a second close is harmless


def test_close_closes_the_store(recorders: Callable[..., Recorder]) -> None:
    store = ListStore()
    rec = recorders(lambda: store)
    rec.record(api(1))
    rec.close()
    assert store.events == [api(1)]
    assert store.closed


def test_drops_are_persisted_in_recorder_runs(tmp_path: Path, recorders: Callable[..., Recorder]) -> None:
    db = tmp_path / "t.db"
    rec = recorders(lambda: SQLiteStore(db), capacity=10, flush_interval_s=60)
    for i in range(25):
        rec.record(api(i))  # the writer is asleep: 10 queued, 15 dropped
    assert rec.stats().dropped == 15
    rec.close()
    assert query(db, "SELECT COUNT(*) FROM api_calls") == [(10,)]
    assert query(db, "SELECT events_written, events_dropped, pid FROM recorder_runs") == [(10, 15, os.getpid())]


def test_drops_after_the_last_write_are_persisted(tmp_path: Path, recorders: Callable[..., Recorder]) -> None:
    db = tmp_path / "t.db"
    rec = recorders(lambda: SQLiteStore(db))
    rec.record(api(1))
    assert rec.flush(WAIT_S)

    def broken(item: tuple[Any, ...]) -> Iterable[Event]:
        raise KeyError("missing field")

    for i in range(7):
        rec.submit((broken, i))  # dropped on the writer thread; nothing left to write after them
    rec.close()
    assert rec.stats().dropped == 7
    assert query(db, "SELECT events_written, events_dropped FROM recorder_runs") == [(1, 7)]


# -- fork -------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads
def test_fork_child_records_through_the_same_recorder(tmp_path: Path, recorders: Callable[..., Recorder]) -> None:
    db = tmp_path / "t.db"
    rec = recorders(lambda: SQLiteStore(db))
    rec.record(api(0, session="parent"))
    assert rec.flush(WAIT_S)  # the writer is idle when we fork

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            for i in range(100):
                rec.record(api(1000 + i, session="child"))
            ok = flush_until_done(rec)
            s = rec.stats()
            rec.close()
            code = 0 if ok and s.written == 100 and s.dropped == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    rec.record(api(1, session="parent"))
    assert rec.flush(WAIT_S)
    rec.close()
    assert query(db, "SELECT session_id, COUNT(*) FROM api_calls GROUP BY session_id ORDER BY 1") == [
        ("child", 100),
        ("parent", 2),
    ]
    runs = dict(query(db, "SELECT pid, events_written FROM recorder_runs"))
    assert runs == {os.getpid(): 2, pid: 100}


def test_one_unwritable_event_drops_only_itself(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    rec = Recorder(lambda: SQLiteStore(db), register_atexit=False)
    for i in range(50):
        rec.record(ApiCall(api_request_id=f"r{i}", attempt=0, session_id="s", turn_id="t", started_at_ms=1.0,
                           latency_ms=1.0, status="ok", input_tokens=i))
    bad = ApiCall(api_request_id="bad", attempt=0, session_id="s", turn_id="t", started_at_ms=1.0, latency_ms=1.0,
                  status="ok", error_message=object())  # type: ignore[arg-type]  # SQLite cannot bind it
    rec.record(bad)
    rec.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*), SUM(input_tokens) FROM api_calls").fetchone() == (50, sum(range(50)))
        assert conn.execute("SELECT events_dropped FROM recorder_runs").fetchone() == (1,)
    finally:
        conn.close()
    assert rec.stats().dropped == 1


def test_events_after_close_are_counted_as_dropped(tmp_path: Path) -> None:
    rec = Recorder(lambda: SQLiteStore(tmp_path / "t.db"), register_atexit=False)
    rec.close()
    rec.record(SessionStarted(session_id="late", started_at_ms=1.0))
    assert rec.stats().dropped == 1
    assert rec.flush(0.5) is True  # nothing to wait for: no writer, nothing queued


# -- the ledger is exact on every path ----------------------------------------------------------


def test_events_written_one_by_one_are_in_the_files_ledger(tmp_path: Path) -> None:
    """A batch holding one event SQLite rejects is written one event at a time: the good ones
    land and are counted written *in the file*, the bad one is counted dropped."""
    db = tmp_path / "t.db"
    rec = Recorder(lambda: SQLiteStore(db), register_atexit=False, flush_interval_s=60.0)
    bad = ApiCall("bad", 0, "s1", None, 1.0, 1.0, None)  # type: ignore[arg-type]  # status is NOT NULL
    for i in range(10):
        rec.record(api(i))
    rec.record(bad)
    for i in range(10, 20):
        rec.record(api(i))
    assert flush_until_done(rec)
    rec.close()
    assert query(db, "SELECT COUNT(*) FROM api_calls") == [(20,)]
    assert (rec.stats().written, rec.stats().dropped) == (20, 1)
    assert query(db, "SELECT events_written, events_dropped FROM recorder_runs") == [(20, 1)]


def test_close_that_gives_up_waiting_never_counts_an_event_twice() -> None:
    """close() times out while the writer is inside a write: that write still lands (written),
    what is behind it is dropped — written + dropped == submitted, never more."""
    store = GatedStore()
    rec = Recorder(lambda: store, register_atexit=False, flush_interval_s=0.01, max_batch=10)
    for i in range(35):
        rec.record(api(i))
    assert store.entered.wait(WAIT_S)  # the writer is inside its first write, blocked
    rec.close(timeout=0.2)
    store.gate.set()
    assert wait_until(lambda: not rec._thread.is_alive())
    s = rec.stats()
    assert s.written == len(store.events) == 10
    assert s.written + s.dropped == 35, s
    assert s.queued == s.pending == 0


def test_a_store_that_never_recovers_leaves_its_drop_count_for_the_next_process(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.recorder import notice
    from hermetry.recorder.ledger import DropLedger

    notice.reset()
    db = tmp_path / "t.db"
    ledger = DropLedger(db)
    store = ListStore(lambda _: StoreUnavailable(f"cannot write {db}: the disk is full"))
    rec = Recorder(lambda: store, register_atexit=False, flush_interval_s=0.01, drop_ledger=ledger)
    for i in range(7):
        rec.record(api(i))
    assert wait_until(lambda: store.calls >= 2)
    assert rec.flush_at_exit(0.3) is False
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err  # said once, when it started failing
    assert "the disk is full" in err[0] and "retried" in err[0] and "counted as dropped" in err[0]
    (line,) = ledger.pending()
    assert ledger.paths[0].exists()  # beside the telemetry file: that folder was writable
    assert (line["run_id"], line["events_dropped"], line["lost_at_exit"]) == (rec._run["run_id"], 7, 7)

    # the next process that can write the file brings the count in, and the fallback is gone
    rec2 = Recorder(lambda: SQLiteStore(db), register_atexit=False, flush_interval_s=0.01)
    rec2.record(api(100))
    assert flush_until_done(rec2)
    rec2.close()
    rows = dict(query(db, "SELECT run_id, events_dropped FROM recorder_runs"))
    assert rows == {rec._run["run_id"]: 7, rec2._run["run_id"]: 0}
    assert ledger.pending() == [] and not ledger.paths[0].exists()
    rec._closed = True  # its writer is a daemon thread retrying a fake: stop it
    rec._abandoned = True
    notice.reset()


def test_a_lock_is_retried_quietly_but_a_full_disk_is_said_once(capsys: pytest.CaptureFixture[str],
                                                               recorders: Callable[..., Recorder]) -> None:
    from hermetry.recorder import notice

    notice.reset()
    locked = ListStore(lambda _: StoreUnavailable("cannot write x: the file is locked by another process"))
    rec = recorders(lambda: locked)
    rec.record(api(1))
    assert wait_until(lambda: locked.calls >= 3)
    assert capsys.readouterr().err == ""
    full = ListStore(lambda _: StoreUnavailable("cannot write x: the disk is full"))
    rec2 = recorders(lambda: full)
    for i in range(5):
        rec2.record(api(i))
    assert wait_until(lambda: full.calls >= 4)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the disk is full" in err and "Traceback" not in err
    notice.reset()


def test_a_process_that_loses_events_at_exit_without_an_earlier_notice_says_so_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.recorder import notice
    from hermetry.recorder.ledger import DropLedger

    notice.reset()
    ledger = DropLedger(tmp_path / "t.db")
    store = GatedStore()  # the writer never finishes its first write before the exit
    rec = Recorder(lambda: store, register_atexit=False, flush_interval_s=0.01, drop_ledger=ledger)
    for i in range(4):
        rec.record(api(i))
    assert store.entered.wait(WAIT_S)
    rec.flush_at_exit(0.2)
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("hermetry: 4 telemetry events could not be written") and str(ledger.paths[0]) in err
    assert ledger.pending()[0]["events_dropped"] == 4
    store.gate.set()
    rec.close()
    notice.reset()
