"""Tests for hermetry.stores.sqlite on real SQLite files in tmp_path.

Covers the file itself (permissions, schema version, migrations, corrupt files), the merge
rules (natural ids, first end reason wins, live beats backfill, open turns closed) and several
processes writing one file at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermetry.model.events import (
    ApiCall,
    CronRunFinished,
    Event,
    SessionEnded,
    SessionReopened,
    SessionStarted,
    SubagentLinked,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.stores.sqlite import SQLiteStore, StoreCorrupt, connect, migrate, write_events
from hermetry.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from hermetry.testing.query import rows

T0 = 1_700_000_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "telemetry.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db)
    yield s
    s.close()


q = rows


def one(db: Path, sql: str, *params: Any) -> dict[str, Any]:
    rows = q(db, sql, *params)
    assert len(rows) == 1, rows
    return rows[0]


def api(rid: str, session: str = "s1", turn: str | None = None, *, at: float = 0.0, attempt: int = 0,
        status: str = "ok", **kw: Any) -> ApiCall:
    kw.setdefault("latency_ms", 100.0)
    return ApiCall(rid, attempt, session, turn, T0 + at, status=status, **kw)


def write(store: SQLiteStore, *events: Event) -> int:
    return store.write(list(events))


# -- the file ---------------------------------------------------------------------------------


def test_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "telemetry.db"
    old = os.umask(0)  # the most permissive umask must not leak into the file modes
    try:
        s = SQLiteStore(path)
        s.write([api("r1")])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            assert side.exists()  # WAL mode, connection open
            assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, oct(side.stat().st_mode)
        s.close()
    finally:
        os.umask(old)


def test_schema_version_and_wal(store: SQLiteStore, db: Path) -> None:
    write(store)  # an empty batch still opens and migrates the file
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert {"sessions", "turns", "api_calls", "tool_calls", "recorder_runs"} <= tables


def test_migrating_twice_is_a_no_op(db: Path) -> None:
    conn = connect(db)
    try:
        assert migrate(conn) == SCHEMA_VERSION
        write_events(conn, [api("r1")])
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        assert migrate(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT COUNT(*) FROM api_calls").fetchone()[0] == 1
    finally:
        conn.close()
    # and a second store on the same file migrates nothing and loses nothing
    s = SQLiteStore(db)
    s.write([api("r2")])
    s.close()
    assert one(db, "SELECT COUNT(*) AS n FROM api_calls")["n"] == 2


def test_migration_from_version_1_keeps_data(db: Path) -> None:
    if SCHEMA_VERSION < 2:
        pytest.skip("only one schema version so far")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO sessions (session_id, model, origin) VALUES ('old', 'm-old', 'live')")
    conn.close()
    s = SQLiteStore(db)
    s.write([api("r1", session="new")])
    s.close()
    assert one(db, "PRAGMA user_version")["user_version"] == SCHEMA_VERSION
    assert one(db, "SELECT model FROM sessions WHERE session_id = 'old'")["model"] == "m-old"


def test_newer_schema_version_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    s = SQLiteStore(db)
    with pytest.raises(StoreCorrupt, match="newer"):
        s.write([api("r1")])
    s.close()
    assert one(db, "PRAGMA user_version")["user_version"] == SCHEMA_VERSION + 1  # untouched


def test_garbage_file_is_corrupt_and_left_alone(db: Path) -> None:
    garbage = b"this is not a database, it is a text file\n" * 200
    db.write_bytes(garbage)
    s = SQLiteStore(db)
    with pytest.raises(StoreCorrupt):
        s.write([api("r1")])
    with pytest.raises(StoreCorrupt):
        s.write([api("r1")])  # and again: never "repaired" by overwriting
    s.close()
    assert db.read_bytes() == garbage


# -- merges -----------------------------------------------------------------------------------


def test_same_api_call_twice_is_one_row(store: SQLiteStore, db: Path) -> None:
    call = api("r1", input_tokens=10, output_tokens=5)
    write(store, call, call)
    write(store, call)
    other = SQLiteStore(db)  # as if from a second process
    other.write([call])
    other.close()
    assert one(db, "SELECT COUNT(*) AS n FROM api_calls")["n"] == 1
    assert one(db, "SELECT COUNT(*) AS n FROM sessions")["n"] == 1
    row = one(db, "SELECT api_call_id, input_tokens, output_tokens FROM api_calls")
    assert row == {"api_call_id": "r1#0", "input_tokens": 10, "output_tokens": 5}
    # a retry is another attempt of the same request: a second row
    write(store, api("r1", attempt=1, at=200))
    assert [r["api_call_id"] for r in q(db, "SELECT api_call_id FROM api_calls ORDER BY 1")] == ["r1#0", "r1#1"]


def test_same_tool_call_twice_is_one_row(store: SQLiteStore, db: Path) -> None:
    tc = ToolCall("tc1", "s1", "t1", "terminal", T0, 12.0, "ok", toolset="shell")
    write(store, tc, tc)
    assert q(db, "SELECT tool_call_id, tool_name, toolset, status FROM tool_calls") == [
        {"tool_call_id": "tc1", "tool_name": "terminal", "toolset": "shell", "status": "ok"}
    ]


def test_api_call_fills_session_model_and_provider(store: SQLiteStore, db: Path) -> None:
    write(store, SessionStarted("s1", T0, source="cli"))
    write(store, api("r1", "s1", model="claude-x", provider="anthropic"))
    assert one(db, "SELECT model, provider, source FROM sessions") == {
        "model": "claude-x", "provider": "anthropic", "source": "cli",
    }
    # a known model is not replaced by a later call's
    write(store, SessionStarted("s2", T0, model="gpt-a", provider="openai"))
    write(store, api("r2", "s2", model="gpt-b", provider="other"))
    assert one(db, "SELECT model, provider FROM sessions WHERE session_id = 's2'") == {
        "model": "gpt-a", "provider": "openai",
    }


def test_session_start_time_is_the_earliest(store: SQLiteStore, db: Path) -> None:
    write(store, api("r1", "s1", at=500))
    write(store, SessionStarted("s1", T0 + 100))
    write(store, api("r2", "s1", at=900))
    assert one(db, "SELECT started_at_ms FROM sessions")["started_at_ms"] == T0 + 100


def test_first_end_reason_wins(store: SQLiteStore, db: Path) -> None:
    write(store, SessionStarted("s1", T0))
    write(store, SessionEnded("s1", T0 + 1000, "cli_close", "completed"))
    write(store, SessionEnded("s1", T0 + 2000, "session_reset", "reset"))
    assert one(db, "SELECT ended_at_ms, end_reason, outcome FROM sessions") == {
        "ended_at_ms": T0 + 1000, "end_reason": "cli_close", "outcome": "completed",
    }


def test_supersedes_lets_a_later_end_replace_named_reasons(store: SQLiteStore, db: Path) -> None:
    write(store, SessionStarted("s1", T0), SessionStarted("s2", T0))
    write(store, SessionEnded("s1", T0 + 1000, "agent_close", "completed"))
    write(store, SessionEnded("s1", T0 + 2000, "session_reset", "reset", supersedes=("agent_close",)))
    assert one(db, "SELECT ended_at_ms, end_reason, outcome FROM sessions WHERE session_id = 's1'") == {
        "ended_at_ms": T0 + 2000, "end_reason": "session_reset", "outcome": "reset",
    }
    # supersedes names other reasons: the first end stays
    write(store, SessionEnded("s2", T0 + 1000, "cli_close", "completed"))
    write(store, SessionEnded("s2", T0 + 2000, "session_reset", "reset", supersedes=("agent_close",)))
    assert one(db, "SELECT end_reason FROM sessions WHERE session_id = 's2'")["end_reason"] == "cli_close"


def test_reopened_session_can_end_again(store: SQLiteStore, db: Path) -> None:
    write(store, SessionStarted("s1", T0))
    write(store, SessionEnded("s1", T0 + 1000, "cli_close", "completed"))
    write(store, SessionReopened("s1", T0 + 5000))
    assert one(db, "SELECT ended_at_ms, end_reason, outcome FROM sessions") == {
        "ended_at_ms": None, "end_reason": None, "outcome": None,
    }
    write(store, SessionEnded("s1", T0 + 9000, "session_reset", "reset"))
    assert one(db, "SELECT ended_at_ms, end_reason FROM sessions") == {
        "ended_at_ms": T0 + 9000, "end_reason": "session_reset",
    }


def test_backfill_fills_nulls_but_never_overrides_live(store: SQLiteStore, db: Path) -> None:
    live = api("r1", model="live-model", input_tokens=10, cost_usd=None, origin="live")
    backfill = api("r1", model="backfill-model", input_tokens=99, cost_usd=0.5, http_status=200,
                   origin="backfill")
    write(store, live)
    write(store, backfill)
    assert one(db, "SELECT model, input_tokens, cost_usd, http_status, origin FROM api_calls") == {
        "model": "live-model", "input_tokens": 10, "cost_usd": 0.5, "http_status": 200, "origin": "live",
    }


def test_live_overrides_backfill_but_keeps_what_live_lacks(store: SQLiteStore, db: Path) -> None:
    write(store, api("r1", model="backfill-model", input_tokens=99, cost_usd=0.5, origin="backfill"))
    assert one(db, "SELECT origin FROM api_calls")["origin"] == "backfill"
    write(store, api("r1", model="live-model", input_tokens=10, cost_usd=None, origin="live"))
    assert one(db, "SELECT model, input_tokens, cost_usd, origin FROM api_calls") == {
        "model": "live-model", "input_tokens": 10, "cost_usd": 0.5, "origin": "live",
    }
    # sessions follow the same rule
    write(store, SessionStarted("s9", T0, source="cli", profile="p-bf", origin="backfill"))
    write(store, SessionStarted("s9", T0, source="telegram", profile=None, origin="live"))
    write(store, SessionStarted("s9", T0, source="discord", profile="p-late", origin="backfill"))
    assert one(db, "SELECT source, profile, origin FROM sessions WHERE session_id = 's9'") == {
        "source": "telegram", "profile": "p-bf", "origin": "live",
    }


def test_session_end_live_beats_backfill(store: SQLiteStore, db: Path) -> None:
    write(store, SessionStarted("s1", T0, origin="backfill"), SessionStarted("s2", T0))
    write(store, SessionEnded("s1", T0 + 1000, "cron_complete", "completed", origin="backfill"))
    write(store, SessionEnded("s1", T0 + 1500, "cli_close", "completed", origin="live"))
    assert one(db, "SELECT end_reason FROM sessions WHERE session_id = 's1'")["end_reason"] == "cli_close"
    write(store, SessionEnded("s2", T0 + 1000, "cli_close", "completed"))
    write(store, SessionEnded("s2", T0 + 1500, "session_reset", "reset", origin="backfill"))
    assert one(db, "SELECT end_reason FROM sessions WHERE session_id = 's2'")["end_reason"] == "cli_close"


def test_turn_wall_time_is_end_minus_start(store: SQLiteStore, db: Path) -> None:
    write(store, TurnStarted("t1", "s1", T0 + 1000, queue_wait_ms=12.5))
    write(store, TurnEnded("t1", "s1", T0 + 4500, "completed"))
    assert one(db, "SELECT started_at_ms, ended_at_ms, wall_ms, queue_wait_ms, outcome FROM turns") == {
        "started_at_ms": T0 + 1000, "ended_at_ms": T0 + 4500, "wall_ms": 3500.0, "queue_wait_ms": 12.5,
        "outcome": "completed",
    }


def test_open_turns_are_closed_when_the_session_ends(store: SQLiteStore, db: Path) -> None:
    write(
        store,
        SessionStarted("s1", T0),
        # t_err: its last attempt failed (after an earlier ok call) -> errored
        TurnStarted("t_err", "s1", T0),
        api("a1", "s1", "t_err", at=10, latency_ms=100.0),
        api("a2", "s1", "t_err", at=200, status="error", latency_ms=50.0, error_type="rate_limit"),
    )
    write(
        store,
        SessionStarted("s2", T0),
        # t_ok: an earlier attempt failed but the retry succeeded; no end reported -> abandoned
        TurnStarted("t_ok", "s2", T0),
        api("b1", "s2", "t_ok", at=10, status="error", latency_ms=30.0, error_type="timeout"),
        api("b1", "s2", "t_ok", at=100, attempt=1, latency_ms=400.0),
        SessionStarted("s3", T0),
        TurnStarted("t_none", "s3", T0 + 5),  # no API call at all -> abandoned
        SessionStarted("s4", T0),
        TurnStarted("t_done", "s4", T0),
        TurnEnded("t_done", "s4", T0 + 300, "completed"),  # ended: untouched
    )
    write(
        store,
        SessionEnded("s1", T0 + 10_000, "cli_close", "completed"),
        SessionEnded("s2", T0 + 10_000, "cli_close", "completed"),
        SessionEnded("s3", T0 + 10_000, "cli_close", "completed"),
        SessionEnded("s4", T0 + 10_000, "cli_close", "completed"),
    )
    turns = {r["turn_id"]: r for r in q(db, "SELECT * FROM turns")}
    assert {k: (v["outcome"], v["outcome_reason"]) for k, v in turns.items()} == {
        "t_err": ("errored", "reconciled:last_call_failed"),
        "t_ok": ("abandoned", "reconciled:no_turn_end"),
        "t_none": ("abandoned", "reconciled:no_turn_end"),
        "t_done": ("completed", None),
    }
    # ended when its last model call finished, or when the session ended if it made none
    assert turns["t_err"]["ended_at_ms"] == T0 + 250
    assert turns["t_ok"]["ended_at_ms"] == T0 + 500
    assert turns["t_none"]["ended_at_ms"] == T0 + 10_000
    # abandoned: it never reported an end, so its wall time is unknown (the last activity is no end)
    assert turns["t_none"]["wall_ms"] is None and turns["t_ok"]["wall_ms"] is None
    assert turns["t_err"]["wall_ms"] == 250  # errored: it ended when its last model call failed
    assert turns["t_done"]["ended_at_ms"] == T0 + 300


def test_a_turn_whose_last_call_failed_is_errored_whatever_the_error(store: SQLiteStore, db: Path) -> None:
    write(store, TurnStarted("t1", "s1", T0), api("a1", "s1", "t1", status="error"))
    write(store, SessionEnded("s1", T0 + 1000, "cli_close", "completed"))
    assert one(db, "SELECT outcome, outcome_reason FROM turns") == {
        "outcome": "errored", "outcome_reason": "reconciled:last_call_failed",
    }


def test_next_turn_closes_the_previous_open_turn(store: SQLiteStore, db: Path) -> None:
    write(
        store,
        TurnStarted("t1", "s1", T0),
        api("a1", "s1", "t1", at=10, latency_ms=90.0),
        TurnStarted("o1", "other", T0),  # another session's open turn
    )
    write(store, TurnStarted("t2", "s1", T0 + 1000))
    rows = {r["turn_id"]: r for r in q(db, "SELECT turn_id, outcome, outcome_reason, ended_at_ms FROM turns")}
    assert rows["t1"] == {"turn_id": "t1", "outcome": "abandoned", "outcome_reason": "reconciled:no_turn_end",
                          "ended_at_ms": T0 + 100}
    assert rows["t2"]["outcome"] is None  # the new turn stays open
    assert rows["o1"]["outcome"] is None  # other sessions are not touched
    # a repeated TurnStarted of the open turn does not close it
    write(store, TurnStarted("t2", "s1", T0 + 1000))
    assert one(db, "SELECT outcome FROM turns WHERE turn_id = 't2'")["outcome"] is None


def test_a_reported_turn_end_replaces_an_inferred_one(store: SQLiteStore, db: Path) -> None:
    write(store, TurnStarted("t1", "s1", T0), TurnStarted("t2", "s1", T0 + 50))  # closes t1
    write(store, SessionEnded("s1", T0 + 1000, "cli_close", "completed"))  # closes t2
    assert {r["outcome"] for r in q(db, "SELECT outcome FROM turns")} == {"abandoned"}
    write(store, TurnEnded("t2", "s1", T0 + 900, "completed", "final_answer"))  # arrives late
    assert one(db, "SELECT outcome, outcome_reason, wall_ms FROM turns WHERE turn_id = 't2'") == {
        "outcome": "completed", "outcome_reason": "final_answer", "wall_ms": 850.0,
    }
    # but a reported end is not replaced by a second report, nor by a backfill
    write(store, TurnEnded("t2", "s1", T0 + 990, "interrupted", "user"))
    write(store, TurnEnded("t2", "s1", T0 + 999, "errored", "x", origin="backfill"))
    assert one(db, "SELECT outcome, ended_at_ms FROM turns WHERE turn_id = 't2'") == {
        "outcome": "completed", "ended_at_ms": T0 + 900,
    }


def test_backfilled_turn_start_closes_nothing(store: SQLiteStore, db: Path) -> None:
    write(store, TurnStarted("t1", "s1", T0))
    write(store, TurnStarted("t0", "s1", T0 - 5000, origin="backfill"))
    assert one(db, "SELECT outcome FROM turns WHERE turn_id = 't1'")["outcome"] is None


def test_subagent_link(store: SQLiteStore, db: Path) -> None:
    write(store, SessionStarted("child", T0 + 10, model="m"))
    write(store, SubagentLinked("child", "parent", "pt1", T0 + 5))
    assert one(db, "SELECT parent_session_id, parent_turn_id, lineage, model FROM sessions") == {
        "parent_session_id": "parent", "parent_turn_id": "pt1", "lineage": "subagent", "model": "m",
    }


def test_run_rows_accumulate_written_and_keep_latest_dropped(store: SQLiteStore, db: Path) -> None:
    run = {"run_id": "run-1", "host": "h", "pid": 42, "started_at_ms": T0, "events_dropped": 0}
    store.write([api("r1"), api("r2")], run)
    store.write([api("r3")], dict(run, events_dropped=7))
    assert one(db, "SELECT run_id, pid, events_written, events_dropped FROM recorder_runs") == {
        "run_id": "run-1", "pid": 42, "events_written": 3, "events_dropped": 7,
    }


def test_failed_batch_is_rolled_back_whole(store: SQLiteStore, db: Path) -> None:
    write(store, api("keep"))
    bad = ApiCall("bad", 0, "s1", None, T0, 1.0, None)  # type: ignore[arg-type]  # status NOT NULL
    with pytest.raises(sqlite3.IntegrityError):  # a bad event, not "try again later"
        write(store, api("good-but-same-batch"), bad)
    assert [r["api_call_id"] for r in q(db, "SELECT api_call_id FROM api_calls")] == ["keep#0"]
    write(store, api("after"))  # the connection is still usable
    assert one(db, "SELECT COUNT(*) AS n FROM api_calls")["n"] == 2


# -- several processes, one file --------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from hermetry.model.events import ApiCall
    from hermetry.recorder.recorder import Recorder
    from hermetry.stores.sqlite import SQLiteStore

    db, idx, n, ready, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    rec = Recorder(lambda: SQLiteStore(db), register_atexit=False, flush_interval_s=0.01, max_batch=250)
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.002)
    for i in range(n):
        rec.record(ApiCall(f"p{idx}-r{i}", 0, f"s{i % 10}", None, 1.7e12 + i, float(i % 97), "ok",
                           input_tokens=i, output_tokens=idx))
    ok = False
    while not ok and time.monotonic() < deadline:
        ok = rec.flush(2.0)
    rec.close()
    s = rec.stats()
    print(json.dumps({"pid": os.getpid(), "ok": ok, "written": s.written, "dropped": s.dropped,
                      "last_error": s.last_error}))
    """
)


def _start_writers(tmp_path: Path, db: Path, count: int, n: int) -> tuple[list[subprocess.Popen[str]], Path]:
    go = tmp_path / "go"
    procs, readies = [], []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for idx in range(count):
        ready = tmp_path / f"ready-{idx}"
        readies.append(ready)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(db), str(idx), str(n), str(ready), str(go)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )
        )
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in readies):
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    return procs, go


def _results(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=90)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_four_processes_write_one_file(tmp_path: Path, db: Path) -> None:
    procs, go = _start_writers(tmp_path, db, count=4, n=5000)
    go.touch()  # all four start recording at once, into a file none of them has created yet
    results = _results(procs)

    for r in results:
        assert r["ok"] and r["written"] == 5000 and r["dropped"] == 0, r
    assert one(db, "SELECT COUNT(*) AS n FROM api_calls")["n"] == 20_000
    assert one(db, "SELECT COUNT(DISTINCT api_call_id) AS n FROM api_calls")["n"] == 20_000
    per_proc = q(db, "SELECT output_tokens AS idx, COUNT(*) AS n, SUM(input_tokens) AS s FROM api_calls "
                     "GROUP BY output_tokens ORDER BY 1")
    assert per_proc == [{"idx": i, "n": 5000, "s": sum(range(5000))} for i in range(4)]
    # the ten shared sessions were merged, not duplicated
    assert one(db, "SELECT COUNT(*) AS n FROM sessions")["n"] == 10
    runs = {r["pid"]: r for r in q(db, "SELECT pid, events_written, events_dropped FROM recorder_runs")}
    assert set(runs) == {r["pid"] for r in results}
    assert all(r["events_written"] == 5000 and r["events_dropped"] == 0 for r in runs.values())


def test_a_batch_waiting_for_a_lock_is_retried_not_lost(tmp_path: Path, db: Path) -> None:
    SQLiteStore(db).write([])  # create and migrate the file
    procs, go = _start_writers(tmp_path, db, count=1, n=500)

    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        write_events(holder, [api("holder")])
        go.touch()
        time.sleep(2.0)  # hold the write lock well past the writer's busy timeout
        assert procs[0].poll() is None  # the writer is still waiting for its batch to land
        holder.execute("COMMIT")
    finally:
        holder.close()

    (result,) = _results(procs)
    assert result["ok"] and result["written"] == 500 and result["dropped"] == 0, result
    assert "locked" in (result["last_error"] or "")  # it was refused at least once, then retried
    assert one(db, "SELECT COUNT(*) AS n FROM api_calls")["n"] == 501
    assert one(db, "SELECT COUNT(*) AS n FROM api_calls WHERE api_call_id LIKE 'p0-r%'")["n"] == 500


def test_hermes_end_replaces_an_end_only_a_hook_reported(store: SQLiteStore, db: Path) -> None:
    """The TUI finalizes with no reason, then writes tui_close to state.db: state.db's reason wins."""
    write(store, SessionStarted(session_id="s1", started_at_ms=1.0),
          SessionEnded(session_id="s1", ended_at_ms=2.0, end_reason="on_session_finalize:unknown", outcome="unknown"),
          SessionEnded(session_id="s1", ended_at_ms=3.0, end_reason="tui_close", outcome="completed"),
          SessionEnded(session_id="s1", ended_at_ms=4.0, end_reason="on_session_finalize:shutdown",
                       outcome="completed"))
    assert one(db, "SELECT end_reason, outcome, ended_at_ms FROM sessions") == {
        "end_reason": "tui_close", "outcome": "completed", "ended_at_ms": 3.0}


def test_a_reconciled_session_that_comes_back_is_open_again(store: SQLiteStore, db: Path) -> None:
    from hermetry.stores.sqlite_reconcile import reconcile

    write(store, SessionStarted(session_id="s1", started_at_ms=1.0),
          TurnStarted(turn_id="t1", session_id="s1", started_at_ms=1.0))
    conn = connect(db)
    try:
        assert reconcile(conn, grace_s=0) == {"turns_closed": 1, "sessions_closed": 1}
    finally:
        conn.close()
    assert one(db, "SELECT end_reason, outcome FROM sessions") == {
        "end_reason": "reconciled:no_session_end", "outcome": "abandoned"}
    write(store, TurnStarted(turn_id="t2", session_id="s1", started_at_ms=5.0))  # it was alive after all
    assert one(db, "SELECT end_reason, outcome FROM sessions") == {"end_reason": None, "outcome": None}
    write(store, SessionEnded(session_id="s1", ended_at_ms=9.0, end_reason="idle", outcome="expired"))
    assert one(db, "SELECT end_reason, outcome FROM sessions") == {"end_reason": "idle", "outcome": "expired"}


# -- session outcomes that follow how a run ended (issue 10) ----------------------------------

@pytest.mark.parametrize(("session_type", "end_reason", "turn_outcome", "expected"), [
    # one-run sessions: Hermes' "complete" end reason says nothing about how the run went
    ("oneshot", "agent_close", "errored", "errored"),
    ("cron", "cron_complete", "errored", "errored"),
    ("webhook", "webhook_complete", "timed_out", "timed_out"),
    ("subagent", "agent_close", "errored", "errored"),
    ("api", "agent_close", "completed", "completed"),
    ("oneshot", "agent_close", "interrupted", "completed"),  # a person's stop is not a failure
    # conversations keep their end reason's outcome: one failed request is not a failed chat
    ("interactive", "cli_close", "errored", "completed"),
    ("gateway", "idle", "errored", "expired"),
    # a continuation is a continuation whatever its last turn did
    ("api", "compression", "errored", "compressed"),
])
def test_a_one_run_session_follows_its_last_turn(store: SQLiteStore, db: Path, session_type: str, end_reason: str,
                                                 turn_outcome: str, expected: str) -> None:
    write(store, SessionStarted("s1", T0, session_type=session_type),
          TurnStarted("t0", "s1", T0), TurnEnded("t0", "s1", T0 + 10, "completed"),
          TurnStarted("t1", "s1", T0 + 20), TurnEnded("t1", "s1", T0 + 30, turn_outcome))
    claimed = {"idle": "expired", "compression": "compressed"}.get(end_reason, "completed")  # the end reason's own
    write(store, SessionEnded("s1", T0 + 40, end_reason, claimed))
    assert one(db, "SELECT end_reason, outcome FROM sessions") == {"end_reason": end_reason, "outcome": expected}


@pytest.mark.parametrize(("turn_outcome", "expected"), [
    ("completed", "completed"), ("errored", "errored"), ("timed_out", "timed_out"),
    ("interrupted", "interrupted"),  # stopped via /v1/runs/…/stop: the run was stopped, not completed
    ("abandoned", "abandoned"), ("unknown", "unknown"),
])
def test_an_api_server_run_follows_its_last_turn_without_an_end(store: SQLiteStore, db: Path, turn_outcome: str,
                                                                 expected: str) -> None:
    """Hermes 0.19.0 never ends an API-server session: its outcome follows its last ended turn."""
    write(store, SessionStarted("s1", T0, session_type="api"), TurnStarted("t1", "s1", T0))
    assert one(db, "SELECT outcome FROM sessions")["outcome"] is None  # the run is running
    write(store, TurnEnded("t1", "s1", T0 + 10, turn_outcome))
    assert one(db, "SELECT end_reason, outcome FROM sessions") == {"end_reason": None, "outcome": expected}
    write(store, TurnStarted("t2", "s1", T0 + 20))  # the same session runs again: open while it does
    assert one(db, "SELECT outcome FROM sessions")["outcome"] is None
    write(store, TurnEnded("t2", "s1", T0 + 30, "completed"))
    assert one(db, "SELECT outcome FROM sessions")["outcome"] == "completed"
    # a conversation Hermes never ended is open whatever its turns did
    write(store, SessionStarted("s2", T0, session_type="gateway"), TurnStarted("u1", "s2", T0),
          TurnEnded("u1", "s2", T0 + 10, "errored"))
    assert one(db, "SELECT outcome FROM sessions WHERE session_id = 's2'")["outcome"] is None


def test_a_turn_end_after_the_session_end_still_counts(store: SQLiteStore, db: Path) -> None:
    write(store, SessionStarted("s1", T0, session_type="webhook"), TurnStarted("t1", "s1", T0),
          SessionEnded("s1", T0 + 50, "webhook_complete", "completed"))
    # the session end closed the open turn as abandoned; its real end arrives afterwards
    write(store, TurnEnded("t1", "s1", T0 + 40, "timed_out", "Execution timed out (inactivity)"))
    assert one(db, "SELECT outcome FROM sessions")["outcome"] == "timed_out"


def test_hermes_cron_status_fails_the_job_session(store: SQLiteStore, db: Path) -> None:
    write(store,
          SessionStarted("cron_abc123_20250101_010000", T0, source="cron", session_type="cron"),
          SessionStarted("cron_abc123_20250101_020000", T0 + 3_600_000, source="cron", session_type="cron"),
          SessionStarted("cron_other_20250101_020000", T0 + 3_600_000, source="cron", session_type="cron"),
          TurnStarted("t1", "cron_abc123_20250101_020000", T0 + 3_600_000),
          TurnEnded("t1", "cron_abc123_20250101_020000", T0 + 3_601_000, "completed"),
          SessionEnded("cron_abc123_20250101_020000", T0 + 3_601_100, "cron_complete", "completed"),
          SessionEnded("cron_other_20250101_020000", T0 + 3_601_100, "cron_complete", "completed"))
    # e.g. the agent answered with an empty response: Hermes' cron records the run failed
    write(store, CronRunFinished("abc123", T0 + 3_601_200, "error"))
    got = {r["session_id"]: (r["run_status"], r["outcome"]) for r in q(db, "SELECT * FROM sessions")}
    assert got == {"cron_abc123_20250101_010000": (None, None),  # an earlier run of the job: untouched
                   "cron_abc123_20250101_020000": ("error", "errored"),
                   "cron_other_20250101_020000": (None, "completed")}


def test_a_crashed_run_whose_last_call_failed_is_closed(store: SQLiteStore, db: Path) -> None:
    """The process died after its model call failed: the turn is errored, the session closed (errored)."""
    from hermetry.stores.sqlite_reconcile import reconcile

    write(store, SessionStarted("s1", T0, session_type="oneshot"), TurnStarted("t1", "s1", T0),
          api("r1", "s1", "t1", at=10, status="error", latency_ms=40.0),
          SessionStarted("s2", T0, session_type="interactive"), TurnStarted("t2", "s2", T0),
          api("r2", "s2", "t2", at=10, status="error", latency_ms=40.0))
    conn = connect(db)
    try:
        assert reconcile(conn, grace_s=0, now_ms=T0 + 1000) == {"turns_closed": 2, "sessions_closed": 2}
    finally:
        conn.close()
    turns = {r["turn_id"]: (r["outcome"], r["outcome_reason"], r["wall_ms"]) for r in q(db, "SELECT * FROM turns")}
    assert turns == {"t1": ("errored", "reconciled:last_call_failed", 50.0),
                     "t2": ("errored", "reconciled:last_call_failed", 50.0)}
    sessions = {r["session_id"]: (r["end_reason"], r["outcome"]) for r in q(db, "SELECT * FROM sessions")}
    assert sessions == {"s1": ("reconciled:no_session_end", "errored"),
                        "s2": ("reconciled:no_session_end", "abandoned")}


def test_migration_from_v4_keeps_rows_and_unifies_reasons(db: Path) -> None:
    conn = connect(db)
    try:
        for version in range(4):
            for statement in [s for s in MIGRATIONS[version].split(";\n") if s.strip()]:
                conn.execute(statement)
        conn.execute("PRAGMA user_version=4")
        conn.execute("INSERT INTO turns (turn_id, session_id, started_at_ms, ended_at_ms, outcome, outcome_reason) "
                     "VALUES ('a', 's', 0, 1900, 'abandoned', 'reconciled:no_end_within_grace'), "
                     "('e', 's', 0, 500, 'errored', 'reconciled:RateLimitError'), ('c', 's', 0, 700, 'completed', NULL)")
        conn.execute("INSERT INTO api_calls (api_call_id, api_request_id, attempt, session_id, status) VALUES "
                     "('r#0', 'r', 0, 's', 'ok'), ('backfill:s:aux:compression:m@p#0', "
                     "'backfill:s:aux:compression:m@p', 0, 's', 'ok')")
        assert migrate(conn) == SCHEMA_VERSION
    finally:
        conn.close()
    turns = {r["turn_id"]: (r["outcome_reason"], r["wall_ms"]) for r in q(db, "SELECT * FROM turns")}
    assert turns == {"a": ("reconciled:no_turn_end", None), "e": ("reconciled:last_call_failed", 500.0),
                     "c": (None, 700.0)}
    assert {r["api_request_id"]: r["task"] for r in q(db, "SELECT * FROM api_calls")} == {
        "r": "main", "backfill:s:aux:compression:m@p": "auxiliary"}
