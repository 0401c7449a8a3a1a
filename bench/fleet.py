"""7 · Fleet ingest: 8 writer processes (distinct host ids) into one PostgreSQL, vs one SQLite file.

Each process records whole sessions of canonical events (one turn per 4 model calls, a tool call
per model call, realistic field sizes) through the real Recorder, as a Hermes process would,
and flushes. Measured from the first process's start until the last has flushed:

* **PostgreSQL, direct**: Recorder → PostgresStore (one transaction per batch);
* **PostgreSQL, as the plugin records**: Recorder → FleetStore (local spool, forwarder thread);
  "done" means forwarded, the spool empty;
* **baseline, same run**: the same 8 processes into one SQLite file (Recorder → SQLiteStore).

Every run is checked exactly: the rows in the store are the events sent, per host. The server
is a throwaway PostgreSQL 15 on loopback with ``fsync=on`` and ``synchronous_commit=off`` — the
durability SQLite's WAL with ``synchronous=NORMAL`` has (nothing corrupts; the last commits may be
lost on power loss). Also measured: bytes on disk per model call (tables + indexes, with the
call's share of its session, turn and tool call), for docs/fleet.md.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench._common import Options, fmt_rate, log, row, tmpdir

PROCESSES = 8
CALLS_PER_TURN = 4
TURNS_PER_SESSION = 3


def _events(host: str, n_calls: int) -> list[Any]:
    from hermetry.model.events import (
        ApiCall,
        SessionEnded,
        SessionStarted,
        ToolCall,
        TurnEnded,
        TurnStarted,
    )

    out: list[Any] = []
    t = time.time() * 1000 - n_calls * 2200.0  # recent: the reconciler leaves live turns alone
    calls = 0
    s = 0
    while calls < n_calls:
        sid = f"{host}-session-{s:06d}-5f1d2c3b"
        out.append(SessionStarted(session_id=sid, started_at_ms=t, source="telegram", session_type="gateway",
                                  model="anthropic/claude-sonnet-4", provider="openrouter", profile="default",
                                  runtime_version="hermes-agent 0.19.0", host=host))
        for k in range(TURNS_PER_SESSION):
            tid = f"{sid}:turn:{k}"
            out.append(TurnStarted(turn_id=tid, session_id=sid, started_at_ms=t, task_id=f"task-{s}-{k}",
                                   queue_wait_ms=3.5))
            for i in range(CALLS_PER_TURN):
                rid = f"req_{host}_{s}_{k}_{i}_7a9c"
                out.append(ApiCall(
                    api_request_id=rid, attempt=0, session_id=sid, turn_id=tid, started_at_ms=t, latency_ms=1834.2,
                    status="ok", model="anthropic/claude-sonnet-4", provider="openrouter",
                    base_url="https://openrouter.ai/api/v1", api_mode="chat_completions",
                    response_model="anthropic/claude-4-sonnet-20250522", ttft_ms=612.7, streamed=True,
                    input_tokens=1200 + i, output_tokens=85, cache_read_tokens=14_000, cache_write_tokens=0,
                    reasoning_tokens=0, finish_reason="tool_calls", cost_usd=0.0091, cost_status="estimated",
                    cost_source="genai-prices", pricing_version="0.0.30"))
                out.append(ToolCall(tool_call_id=f"call_{rid}", session_id=sid, turn_id=tid, tool_name="terminal",
                                    toolset="terminal", api_request_id=rid, started_at_ms=t + 1900,
                                    latency_ms=240.0, status="ok"))
                t += 2200
                calls += 1
            out.append(TurnEnded(turn_id=tid, session_id=sid, ended_at_ms=t, outcome="completed"))
        out.append(SessionEnded(session_id=sid, ended_at_ms=t, end_reason="idle", outcome="completed"))
        s += 1
    return out


def _writer(kind: str, target: str, spool: str, host: str, n_calls: int, ready: Any, start: Any, done: Any) -> None:
    from hermetry.recorder.recorder import Recorder

    events = _events(host, n_calls)
    if kind == "sqlite":
        from hermetry.stores.sqlite import SQLiteStore

        factory: Any = lambda: SQLiteStore(target)  # noqa: E731
    elif kind == "postgres":
        from hermetry.stores.postgres import PostgresStore

        factory = lambda: PostgresStore(target, host=host)  # noqa: E731
    else:
        from hermetry.stores.fallback import FleetStore
        from hermetry.stores.postgres import PostgresStore

        factory = lambda: FleetStore(lambda: PostgresStore(target, host=host), spool)  # noqa: E731
    stores: list[Any] = []

    def keep(make: Any) -> Any:
        def build() -> Any:
            stores.append(make())
            return stores[-1]
        return build

    rec = Recorder(keep(factory), register_atexit=False, host=host)
    ready.put(host)
    start.wait()
    for e in events:
        rec.record(e)
    ok = rec.flush(600)
    error = rec.stats().last_error or (getattr(stores[0], "last_error", None) if stores else None)
    rec.close(30)
    done.put((host, ok, rec.stats().dropped, len(events), error))


def _run(kind: str, target: str, root: Path, n_calls: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ready, start, done = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(kind, target, str(root / f"spool-{kind}-{i}.db"), f"host-{i}",
                                               n_calls, ready, start, done)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    for _ in procs:  # every process has imported and built its events before the clock starts
        ready.get(timeout=300)
    t0 = time.perf_counter()
    start.set()
    results = [done.get(timeout=900) for _ in procs]
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join(60)
    events = sum(r[3] for r in results)
    errors = sorted({str(r[4]) for r in results if r[4]})
    if errors:
        log(f"fleet: {kind}: errors seen (retried): {errors}")
    return {"seconds": seconds, "events": events, "eps": events / seconds, "errors": errors,
            "all_flushed": all(r[1] for r in results), "dropped": sum(r[2] for r in results)}


def _pg_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("sessions", "turns", "api_calls", "tool_calls")}


def _pg_bytes(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        return int(conn.execute(
            "SELECT SUM(pg_total_relation_size(c)) FROM unnest(ARRAY['sessions','turns','api_calls','tool_calls',"
            "'recorder_runs','forwarded_batches']::regclass[]) AS c").fetchone()[0])


def _sqlite_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("sessions", "turns", "api_calls", "tool_calls")}
    finally:
        conn.close()


def _expected(n_calls: int) -> dict[str, int]:
    per_proc = {"api_calls": n_calls, "tool_calls": n_calls}
    turns = -(-n_calls // CALLS_PER_TURN)
    sessions = -(-turns // TURNS_PER_SESSION)
    per_proc.update(turns=sessions * TURNS_PER_SESSION, sessions=sessions)
    per_proc["api_calls"] = per_proc["tool_calls"] = sessions * TURNS_PER_SESSION * CALLS_PER_TURN
    return {k: v * PROCESSES for k, v in per_proc.items()}


def _copy_to_postgres(path: Path, url: str) -> None:
    """The rows of a SQLite telemetry file into an empty PostgreSQL store (COPY; for the query bench)."""
    from hermetry.stores.postgres import connect, migrate

    conn = connect(url, host="bench")
    migrate(conn)
    lite = sqlite3.connect(path)
    try:
        for table in ("sessions", "turns", "api_calls", "tool_calls", "recorder_runs"):
            cols = [r[1] for r in lite.execute(f"PRAGMA table_xinfo({table})") if r[6] == 0]  # not generated
            with conn.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for r in lite.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                    copy.write_row(r)
        conn.raw.execute("VACUUM ANALYZE")
    finally:
        lite.close()
        conn.close()


def _best_of(n: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _query(pg: Any, opts: Options) -> list[dict[str, Any]]:
    """``insights()`` over the whole history, the same rows in SQLite and in PostgreSQL."""
    from bench._fixtures import history_db
    from hermetry.analytics.report import Query, insights

    rows = []
    for n in ((100_000,) if opts.quick else (100_000, 1_000_000)):
        path, meta = history_db(n)
        url = pg.create_database(f"q{n}")
        log(f"fleet: copying a {n:,}-call history into PostgreSQL")
        _copy_to_postgres(path, url)
        q = Query(since_ms=0.0, until_ms=time.time() * 1000 + 86_400_000, group_by=("source", "model"))
        lite_s = _best_of(3, lambda: insights(path, q))  # noqa: B023
        pg_s = _best_of(3, lambda: insights(url, q))  # noqa: B023
        same = insights(path, q)["api_calls"]["count"] == insights(url, q)["api_calls"]["count"] == n
        log(f"fleet: insights over {n:,} calls: SQLite {lite_s:.2f} s, PostgreSQL {pg_s:.2f} s, same count {same}")
        rows.append(row("fleet", f"insights() over {n:,} recorded model calls (whole history) on PostgreSQL, best of 3",
                        f"{pg_s:.2f} s", baseline=f"the same rows in SQLite {lite_s:.2f} s",
                        ratio=f"{pg_s / lite_s:.2f}× SQLite", target="≤ 1 s at 1M" if n == 1_000_000 else "",
                        ok=(pg_s <= 1.0 and same) if n == 1_000_000 else (None if same else False),
                        key=f"fleet_query_{n}", pg_s=pg_s, sqlite_s=lite_s))
    return rows


def run(opts: Options) -> dict[str, Any]:
    from hermetry.testing.postgres import PostgresServer

    root = tmpdir("fleet")
    n_calls = 2_000 if opts.quick else 12_000
    expected = _expected(n_calls)
    with PostgresServer(durable=True) as pg:
        log(f"fleet: {PROCESSES} processes × {n_calls:,} model calls into SQLite (baseline)")
        lite_path = root / "fleet.db"
        lite = _run("sqlite", str(lite_path), root, n_calls)
        lite_exact = _sqlite_counts(lite_path) == expected
        lite_bytes = lite_path.stat().st_size + sum(p.stat().st_size for p in root.glob("fleet.db-wal"))
        log(f"fleet: sqlite {lite['eps']:,.0f} events/s, exact {lite_exact}")

        url = pg.create_database("direct")
        log(f"fleet: {PROCESSES} processes into PostgreSQL, direct")
        direct = _run("postgres", url, root, n_calls)
        direct_exact = _pg_counts(url) == expected
        pg_bytes = _pg_bytes(url)
        log(f"fleet: postgres direct {direct['eps']:,.0f} events/s, exact {direct_exact}")

        url2 = pg.create_database("spooled")
        log(f"fleet: {PROCESSES} processes into PostgreSQL through the spool (as the plugin records)")
        spooled = _run("fleet", url2, root, n_calls)
        spooled_exact = _pg_counts(url2) == expected
        log(f"fleet: postgres spooled {spooled['eps']:,.0f} events/s, exact {spooled_exact}")
        query_rows = _query(pg, opts)

    calls = expected["api_calls"]
    per_call_pg, per_call_lite = pg_bytes / calls, lite_bytes / calls
    fleet_calls_per_day = 1_000 * 40 * 86_400
    rows = [
        row("fleet", f"{PROCESSES} processes (distinct hosts) × {n_calls:,} model calls → PostgreSQL, direct: "
                     "events/s until committed", fmt_rate(direct["eps"]),
            baseline=f"the same into one SQLite file {fmt_rate(lite['eps'])}",
            ratio=f"{direct['eps'] / lite['eps']:.2f}× SQLite",
            target="exactly the events sent", ok=direct_exact and direct["dropped"] == 0 and direct["all_flushed"],
            key="fleet_pg_direct", eps=direct["eps"], sqlite_eps=lite["eps"]),
        row("fleet", "the same through the local spool (how the plugin records): events/s until forwarded",
            fmt_rate(spooled["eps"]), baseline=f"direct {fmt_rate(direct['eps'])}",
            ratio=f"{spooled['eps'] / direct['eps']:.2f}× direct · {spooled['eps'] / lite['eps']:.2f}× SQLite",
            target="exactly the events sent", ok=spooled_exact and spooled["dropped"] == 0 and spooled["all_flushed"],
            key="fleet_pg_spooled", eps=spooled["eps"]),
        row("fleet", "bytes on disk per model call (tables + indexes; with its share of session, turn, tool call)",
            f"{per_call_pg:,.0f} B (PostgreSQL)", baseline=f"SQLite {per_call_lite:,.0f} B",
            ratio=f"{per_call_pg / per_call_lite:.2f}× SQLite",
            target="", ok=None, key="fleet_bytes_per_call", pg_bytes_per_call=per_call_pg,
            sqlite_bytes_per_call=per_call_lite,
            fleet_gb_per_day=per_call_pg * fleet_calls_per_day / 1e9),
    ]
    rows += query_rows
    notes = [f"SQLite exact: {lite_exact}; 1,000 hosts × 40 model calls/s = {fleet_calls_per_day:,} calls/day "
             f"≈ {per_call_pg * fleet_calls_per_day / 1e12:.2f} TB/day of raw rows in PostgreSQL"]
    return {"rows": rows, "notes": notes}
