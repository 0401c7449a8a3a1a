"""Rollups from real writers: real ``hermes`` runs (hermes-agent 0.19.0) against the scripted model,
read through the rollup path, total exactly what the model server sent; several writer processes
at once (and a rebuild running beside them) leave rollups equal to the raw rows."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import report as report_module
from hermetry.analytics.report import Query, insights
from hermetry.model.events import SessionStarted
from hermetry.model.units import HOUR_MS
from hermetry.stores import rollups
from hermetry.stores.sqlite import connect, migrate
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome
from hermetry.testing.history import NOW_MS, History, synthetic_history
from test_rollups_report import same

KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@pytest.mark.hermes
def test_real_hermes_totals_through_the_rollups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = [
        ScriptedReply(tool_calls=[ScriptedToolCall("terminal", {"command": "echo hi"})],
                      usage=ScriptedUsage(prompt_tokens=1200, completion_tokens=30, cached_tokens=200)),
        ScriptedReply(content="answer 0", usage=ScriptedUsage(prompt_tokens=1500, completion_tokens=45,
                                                             cached_tokens=400, cache_write_tokens=7)),
        ScriptedReply(content="answer 1", usage=ScriptedUsage(prompt_tokens=900, completion_tokens=12)),
    ]
    with ScriptedServer(script) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        for prompt in ("run echo hi", "second question"):
            r = home.oneshot(prompt)
            assert r.returncode == 0, r.stderr
        served = list(srv.served)
    assert len(served) == len(script)
    truth: Counter[str] = Counter()
    for s in served:
        usage = s.reply.usage.hermes_usage()
        for kind in KINDS:
            truth[kind] += usage[kind]
    conn = connect(home.telemetry_db)
    try:
        migrate(conn)
        rollups.rebuild(conn, include_open=True)  # the runs are in the current hour: roll it up too
    finally:
        conn.close()
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)
    first = int(served[0].received_at * 1000 // HOUR_MS) - 2
    last = int(served[-1].received_at * 1000 // HOUR_MS) + 2
    q = Query(since_ms=first * HOUR_MS, until_ms=last * HOUR_MS, group_by=("model",))
    report = insights(home.telemetry_db, q)
    assert report["method"]["path"] == "rollups" and report["method"]["hours_from_rollups"] >= 4
    api = report["api_calls"]
    assert api["count"] == len(served) and api["errors"] == 0
    assert {k: api["tokens"][k] for k in KINDS} == dict(truth)
    assert report["turns"]["by_outcome"] == {"completed": 2}
    assert report["tool_calls"]["count"] == 1 and report["tools"][0]["tool_name"] == "terminal"
    assert api["latency_ms"]["method"] == "approximate" and api["latency_ms"]["count"] == len(served)
    exact = insights(home.telemetry_db, q, exact=True)
    exact.pop("activity"), report.pop("activity")
    same(exact, report)


def _write(path: str, events: list[Any]) -> None:
    from hermetry.recorder.recorder import Recorder
    from hermetry.stores.sqlite import SQLiteStore

    rec = Recorder(lambda: SQLiteStore(path), register_atexit=False, flush_interval_s=0.005, max_batch=50)
    for e in events:
        rec.record(e)
    rec.close(timeout=120)
    assert rec.stats().dropped == 0


def _rebuild_loop(path: str, rounds: int) -> None:
    conn = connect(path)
    try:
        for _ in range(rounds):
            try:
                rollups.rebuild(conn, now_ms=NOW_MS + 2 * HOUR_MS)
            except Exception:
                pass  # busy: the writers hold the file; the next round takes it
    finally:
        conn.close()


def _by_session(history: History, parts: int) -> list[list[Any]]:
    """The events split into ``parts`` by session, each part in order (as separate processes write)."""
    owner: dict[str, int] = {}
    for e in history.events:
        if isinstance(e, SessionStarted):
            owner[e.session_id] = len(owner) % parts
    out: list[list[Any]] = [[] for _ in range(parts)]
    for e in history.events:
        sid = getattr(e, "session_id", None) or getattr(e, "child_session_id", None)
        out[owner.get(sid, 0) if sid is not None else 0].append(e)
    return out


def test_several_writer_processes_and_a_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history = synthetic_history(seed=41, days=7, sessions_per_day=10)
    path = str(tmp_path / "telemetry.db")
    conn = connect(path)
    migrate(conn)
    conn.close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(path, part)) for part in _by_session(history, 3)]
    procs.append(ctx.Process(target=_rebuild_loop, args=(path, 30)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    conn = connect(path)
    try:
        rollups.rebuild(conn, now_ms=NOW_MS + 2 * HOUR_MS)
    finally:
        conn.close()
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)
    q = Query(since_ms=NOW_MS - 7 * 86_400_000, until_ms=NOW_MS, group_by=("source",))
    approx, exact = insights(path, q), insights(path, q, exact=True)
    assert approx["method"]["path"] == "rollups"
    assert approx["api_calls"]["count"] == len(history.api_calls())
    assert approx["turns"]["count"] == len(history.turns())
    approx.pop("activity"), exact.pop("activity")
    same(exact, approx)
