"""Big generated histories, cached under ``bench/.cache/`` (git-ignored).

* :func:`history_db` — a hermetry telemetry file holding N recorded API calls, written with the
  store's own ``write_events`` in transactions of 50,000 events (not through the Recorder: the
  Recorder's throughput is measured by the ingest benchmark; here only the result matters).
  Shape: sessions of 1–7 turns (mean 4), turns of 1–4 API calls (mean 2.5) and one tool call
  between consecutive API calls (mean 1.5 per turn) — 10 API calls, 6 tool calls per session —
  over a 6.5-day window; sources, models, outcomes, errors and cost statuses mixed.
* :func:`state_db` — a Hermes ``state.db`` of N sessions and ~40 messages each, written with
  Hermes' own ``hermes_state.SessionDB`` (``import_sessions`` in chunks Hermes accepts, then
  ``update_token_counts`` per session so ``session_model_usage`` is filled as a live Hermes
  fills it).

Each fixture records its time window in a JSON sidecar, so a cached fixture is queried over
exactly the window it covers, however old it is.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench._common import CACHE, log

HISTORY_VERSION = 2
#: The span of every generated history: a report over the last week covers all of it.
WINDOW_DAYS = 6.5
STATE_VERSION = 1

SOURCES = (("cli", "interactive", 40), ("cli", "oneshot", 15), ("telegram", "gateway", 15),
           ("api_server", "api", 15), ("cron", "cron", 10), ("subagent", "subagent", 5))
MODELS = (("anthropic/claude-sonnet-4", "openrouter", 35), ("gpt-4.1-mini", "openai", 25),
          ("claude-opus-4", "anthropic", 15), ("qwen3-coder", "custom", 15), ("gemini-2.5-flash", "gemini", 10))
TOOLS = ("terminal", "read_file", "write_file", "search_files", "web_search", "patch", "todo", "delegate_task")
END_REASONS = (("cli_close", 60), ("agent_close", 20), ("new_session", 8), ("cron_complete", 7), (None, 5))


def _pick(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    total = sum(t[-1] for t in table)
    x = rng.uniform(0, total)
    for t in table:
        x -= t[-1]
        if x <= 0:
            return t
    return table[-1]


def _meta_path(db: Path) -> Path:
    return db.with_suffix(".json")


def load_meta(db: Path) -> dict[str, Any] | None:
    try:
        meta: dict[str, Any] = json.loads(_meta_path(db).read_text())
        return meta if db.exists() else None
    except (OSError, ValueError):
        return None


def history_db(n_api_calls: int) -> tuple[Path, dict[str, Any]]:
    """A telemetry file of ``n_api_calls`` generated API calls, at the current schema, rollups built.

    Generated once (:func:`bulk_write`) and cached. A cached file written at an older schema is
    upgraded as any user's file is (the store's ``migrate``), and its rollups rebuilt
    (:func:`build_rollups`); the sidecar JSON records how long each step took.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"history-{n_api_calls}-h{HISTORY_VERSION}-s*.db"))
    db = found[-1] if found else CACHE / f"history-{n_api_calls}-h{HISTORY_VERSION}.db"
    meta = load_meta(db)
    if meta is None:
        log(f"fixtures: generating a history of {n_api_calls:,} API calls → {db.name} (cached afterwards)")
        t0 = time.perf_counter()
        tmp = db.with_suffix(".tmp")
        for p in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            p.unlink(missing_ok=True)
        meta = bulk_write(tmp, history_sessions(n_api_calls, until_ms=time.time() * 1000))
        tmp.rename(db)
        meta["generation_seconds"] = round(time.perf_counter() - t0, 1)
        meta["bytes"] = db.stat().st_size
        _meta_path(db).write_text(json.dumps(meta))
        log(f"fixtures: {db.name}: {meta}")
    if _upgrade(db, meta):
        _meta_path(db).write_text(json.dumps(meta))
    return db, meta


def _upgrade(db: Path, meta: dict[str, Any]) -> bool:
    """Bring a cached file to the current schema and build its rollups (once per schema version)."""
    from hermetry.stores.sqlite import connect, migrate
    from hermetry.stores.sqlite_schema import SCHEMA_VERSION

    if meta.get("schema_version") == SCHEMA_VERSION:
        return False
    conn = connect(db)
    try:
        t0 = time.perf_counter()
        if migrate(conn):
            log(f"fixtures: {db.name} migrated to schema v{SCHEMA_VERSION} in {time.perf_counter() - t0:.1f} s")
        meta["migrate_seconds"] = round(time.perf_counter() - t0, 1)
        _build_pending(conn)
        if meta.get("rollups_built") and (meta.get("schema_version") or 0) >= 7 and _days_from_hours(conn, meta):
            meta["schema_version"] = SCHEMA_VERSION
            return True
        built = build_rollups(conn)
        if built is not None:
            meta["rollup_build_seconds"] = round(built, 2)
            log(f"fixtures: {db.name}: rollups built in {built:.1f} s")
        meta["rollups_built"] = built is not None
        meta["schema_version"] = SCHEMA_VERSION
        meta["bytes"] = db.stat().st_size
    finally:
        conn.close()
    return True


def _build_pending(conn: Any) -> None:
    """What the upgrade to schema 12 leaves to do after it: the sessions rollup's build
    (``rollups.build_pending``; absent in trees before it, whose migration built it)."""
    from hermetry.stores import rollups

    build = getattr(rollups, "build_pending", None)
    if build is not None and build(conn) is not None:
        log("fixtures: the sessions rollup built after the upgrade")


def _days_from_hours(conn: Any, meta: dict[str, Any]) -> bool:
    """A cached file whose hourly rollups were built (schema ≥ 7) and whose raw rows never
    changed since: schema 9 only adds the day level, which is the merge of those hours — built
    here with the store's own day merge (``rollups._rebuild_day``), not by re-reading 10M raw
    rows. False when the store has no day level (then everything is rebuilt)."""
    from hermetry.stores import rollups

    day_rebuild = getattr(rollups, "_rebuild_day", None)
    if day_rebuild is None:
        return False
    t0 = time.perf_counter()
    days = sorted({h // 24 for (h,) in conn.execute("SELECT DISTINCT hour FROM rollup_api")})
    conn.execute("BEGIN IMMEDIATE")
    for day in days:
        day_rebuild(conn, day)
    conn.execute("DELETE FROM rollup_dirty")
    conn.execute("COMMIT")
    meta["day_level_seconds"] = round(time.perf_counter() - t0, 2)
    log(f"fixtures: day level of {len(days)} days merged from the hourly rollups in {meta['day_level_seconds']} s")
    return True


def build_rollups(conn: Any) -> float | None:
    """Build every rollup hour of a store from its raw rows; seconds taken (None: no rollups).

    The store's own maintenance (``hermetry.stores.rollups.rebuild``, what ``hermetry import``,
    ``hermetry rollup`` and a reader's refresh run), over every dirty hour, the open one too.
    """
    try:
        from hermetry.stores import rollups
    except ImportError:
        return None
    if not rollups.has_rollups(conn):
        return None
    t0 = time.perf_counter()
    stats = rollups.rebuild(conn, include_open=True)
    log(f"fixtures: rollups: {stats.as_dict()}")
    return time.perf_counter() - t0


def _mark_every_hour(conn: Any) -> None:
    """What the write path would have marked for rows bulk-inserted without it: every hour that
    has rows (``stores.rollups.mark_hours``, as for any inserted row)."""
    try:
        from hermetry.stores.rollups import has_rollups, hour_sql, mark_hours
    except ImportError:
        return
    if not has_rollups(conn):
        return
    from hermetry.model.units import HOUR_MS

    hours: set[int] = set()
    for table, alias in (("turns", "t"), ("api_calls", "a"), ("tool_calls", "c")):
        hours.update(h for (h,) in conn.execute(f"SELECT DISTINCT {hour_sql(alias)} FROM {table} {alias} "
                                                f"WHERE {alias}.started_at_ms IS NOT NULL"))
    conn.execute("BEGIN")
    mark_hours(conn, [h * HOUR_MS for h in hours])
    conn.execute("COMMIT")


def history_sessions(n_api_calls: int, *, until_ms: float) -> Iterator[list[Any]]:
    """The canonical events of a generated history, one session at a time (deterministic for a size).

    Yields each session's events in the order a live recorder would write them; the first
    item of every list is the ``SessionStarted``. :func:`bulk_write` turns them into rows, and
    ``tests/test_bench_fixtures.py`` checks those rows against the store's own ``write_events``.
    """
    from hermetry.model.events import (
        ApiCall,
        SessionEnded,
        SessionStarted,
        ToolCall,
        TurnEnded,
        TurnStarted,
    )
    from hermetry.model.outcomes import session_outcome_for_end_reason

    rng = random.Random(n_api_calls)
    since_ms = until_ms - WINDOW_DAYS * 86_400_000
    day = time.strftime('%Y%m%d', time.gmtime(since_ms / 1000))
    n_calls = s = 0
    while n_calls < n_api_calls:
        sid = f"{day}_{s:08d}_{rng.getrandbits(24):06x}"
        s += 1
        source, session_type, _ = _pick(rng, SOURCES)
        model, provider, _ = _pick(rng, MODELS)
        t = rng.uniform(since_ms, until_ms - 3_600_000)
        events: list[Any] = [SessionStarted(
            session_id=sid, started_at_ms=t, source=source, session_type=session_type, model=model,
            provider=provider, profile="default", runtime_version="hermes-agent 0.19.0", host="bench")]
        for k in range(rng.randint(1, 7)):
            turn = f"{sid}-t{k}"
            events.append(TurnStarted(turn_id=turn, session_id=sid, started_at_ms=t, task_id=sid))
            t += rng.uniform(50, 400)
            calls = rng.randint(1, 4)
            failed_turn = False
            for a in range(calls):
                n_calls += 1
                latency = rng.lognormvariate(7.5, 0.7)  # ~1.8 s median
                error = rng.random() < 0.02
                inp = rng.randint(200, 6000)
                out = rng.randint(20, 1500)
                cache_read = rng.choice((0, 0, 2048, 8192, 30000))
                cost_status = "unknown" if provider == "custom" else rng.choice(("estimated",) * 9 + ("actual",))
                events.append(ApiCall(
                    api_request_id=f"{turn}-r{a}", attempt=0, session_id=sid, turn_id=turn, started_at_ms=t,
                    latency_ms=latency, status="error" if error else "ok", model=model, provider=provider,
                    base_url="https://example.invalid/v1", api_mode="chat_completions", response_model=model,
                    ttft_ms=latency * rng.uniform(0.1, 0.5), streamed=True,
                    input_tokens=None if error else inp, output_tokens=None if error else out,
                    cache_read_tokens=None if error else cache_read, cache_write_tokens=None if error else 0,
                    reasoning_tokens=None if error else rng.choice((0, 0, min(out, 256))),
                    finish_reason=None if error else ("tool_calls" if a < calls - 1 else "stop"),
                    http_status=503 if error else None, error_type="APIStatusError" if error else None,
                    cost_usd=None if error or cost_status == "unknown" else (inp * 3 + out * 15 + cache_read * 0.3) / 1e6,
                    cost_status=None if error else cost_status,
                    cost_source=None if error or cost_status == "unknown" else "genai-prices",
                ))
                t += latency
                failed_turn = error
                if a < calls - 1:
                    tool_latency = rng.lognormvariate(5, 1.2)
                    ok = rng.random() > 0.04
                    events.append(ToolCall(
                        tool_call_id=f"{turn}-c{a}", session_id=sid, turn_id=turn,
                        tool_name=TOOLS[rng.randrange(len(TOOLS))], started_at_ms=t, latency_ms=tool_latency,
                        status="ok" if ok else "error", toolset="core", api_request_id=f"{turn}-r{a}",
                        error_type=None if ok else "ToolError",
                    ))
                    t += tool_latency
            x = rng.random()
            outcome = ("errored" if failed_turn else "completed" if x < 0.93 else "interrupted" if x < 0.97
                       else "timed_out" if x < 0.99 else "unknown")
            events.append(TurnEnded(turn_id=turn, session_id=sid, ended_at_ms=t, outcome=outcome))
            t += rng.uniform(2_000, 120_000)
        reason = _pick(rng, END_REASONS)[0]
        if reason is not None:
            events.append(SessionEnded(session_id=sid, ended_at_ms=t, end_reason=reason,
                                       outcome=session_outcome_for_end_reason(reason)))
        yield events


def session_rows(events: list[Any], now_ms: float) -> tuple[tuple[Any, ...], list[list[Any]], list[tuple[Any, ...]],
                                                         list[tuple[Any, ...]]]:
    """One generated session's final rows, as ``write_events`` would leave them (no upserts).

    Valid for what :func:`history_sessions` generates only: one start, turns that each end
    before the next starts, calls inside turns, at most one end. The API- and tool-call rows
    are the store's own (``_api_row``/``_tool_row``); the session outcome follows the store's
    one-run rule (``model.outcomes.session_outcome``).
    """
    from hermetry.model.events import ApiCall, SessionEnded, ToolCall, TurnEnded, TurnStarted
    from hermetry.model.outcomes import (
        ONE_RUN_SESSION_TYPES,
        UNENDED_RUN_SESSION_TYPES,
        session_outcome,
    )
    from hermetry.stores.sqlite import _api_row, _session_start_row, _tool_row

    start = events[0]
    session = [*_session_start_row(start, now_ms), None, None, None, None]  # + ended_at_ms, end_reason, outcome, run_status
    turns: list[list[Any]] = []
    api: list[tuple[Any, ...]] = []
    tools: list[tuple[Any, ...]] = []
    for e in events[1:]:
        if isinstance(e, ApiCall):
            api.append(_api_row(e))
        elif isinstance(e, ToolCall):
            tools.append(_tool_row(e))
        elif isinstance(e, TurnStarted):
            turns.append([e.turn_id, e.session_id, e.task_id, e.started_at_ms, None, e.queue_wait_ms, None, None, e.origin])
        elif isinstance(e, TurnEnded):
            turns[-1][4], turns[-1][6], turns[-1][7] = e.ended_at_ms, e.outcome, e.outcome_reason
        elif isinstance(e, SessionEnded):
            session[-4:-1] = [e.ended_at_ms, e.end_reason, e.outcome]
    end_reason, session_type = session[-3], start.session_type
    unended = end_reason is None and session_type in UNENDED_RUN_SESSION_TYPES
    if (end_reason is not None or unended) and session_type in ONE_RUN_SESSION_TYPES:
        outcome = session_outcome(end_reason, session_type, turns[-1][6] if turns else None, None)
        value = None if outcome is None else outcome.value
        if value is not None or unended:
            session[-2] = value
    return tuple(session), turns, api, tools


SESSION_COLUMNS = ("session_id", "parent_session_id", "parent_turn_id", "lineage", "source", "session_type",
                   "profile", "model", "provider", "runtime_version", "host", "started_at_ms", "origin",
                   "updated_at_ms", "ended_at_ms", "end_reason", "outcome", "run_status")
TURN_COLUMNS = ("turn_id", "session_id", "task_id", "started_at_ms", "ended_at_ms", "queue_wait_ms", "outcome",
                "outcome_reason", "origin")


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def bulk_write(path: Path, sessions: Iterable[list[Any]], *, batch_calls: int = 200_000) -> dict[str, Any]:
    """Write generated sessions into a new telemetry file at the current schema, fast.

    The store's schema (``migrate``), then its secondary indexes dropped, plain ``executemany``
    INSERTs of final rows (:func:`session_rows`) in transactions of ~``batch_calls`` API calls,
    the indexes rebuilt once at the end, ``ANALYZE``. 10M API calls take minutes, not the hour
    the per-event upserts of the write path would. Rollups (when the schema has them) are not
    built here: see :func:`build_rollups`.
    """
    from hermetry.stores.sqlite import _API_COLS, _TOOL_COLS, connect, migrate

    conn = connect(path)
    migrate(conn)
    conn.execute("PRAGMA cache_size=-400000")
    conn.execute("PRAGMA synchronous=OFF")
    indexes = [(name, sql) for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('sessions', 'turns', 'api_calls', 'tool_calls')")]
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    sql = {"sessions": _insert("sessions", SESSION_COLUMNS), "turns": _insert("turns", TURN_COLUMNS),
           "api_calls": _insert("api_calls", _API_COLS), "tool_calls": _insert("tool_calls", _TOOL_COLS)}
    buffers: dict[str, list[Any]] = {table: [] for table in sql}
    counts = dict.fromkeys(("sessions", "turns", "api_calls", "tool_calls"), 0)
    since_ms = until_ms = None
    now_ms = time.time() * 1000

    def flush() -> None:
        conn.execute("BEGIN")
        for table, rows in buffers.items():
            conn.executemany(sql[table], rows)
            counts[table] += len(rows)
            rows.clear()
        conn.execute("COMMIT")

    pending = 0
    for events in sessions:
        session, turns, api, tools = session_rows(events, now_ms)
        buffers["sessions"].append(session)
        buffers["turns"].extend(turns)
        buffers["api_calls"].extend(api)
        buffers["tool_calls"].extend(tools)
        pending += len(api)
        if pending >= batch_calls:
            flush()
            pending = 0
    flush()
    t0 = time.perf_counter()
    for _, create in indexes:
        conn.execute(create)
    index_s = time.perf_counter() - t0
    _mark_every_hour(conn)
    since_ms, until_ms = conn.execute("SELECT MIN(started_at_ms), MAX(COALESCE(ended_at_ms, started_at_ms)) "
                                      "FROM sessions").fetchone()
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {**counts, "since_ms": math.floor(since_ms or 0) - 1, "until_ms": math.ceil(until_ms or 0) + 3_600_000,
            "index_seconds": round(index_s, 1), "written_with": "bulk INSERT of write_events' final rows"}


# ---------------------------------------------------------------------------------------------
# Hermes' state.db
# ---------------------------------------------------------------------------------------------

def state_db(n_sessions: int) -> tuple[Path, dict[str, Any]]:
    """A Hermes home folder holding ``state.db`` with n_sessions sessions (~40 messages each)."""
    home = CACHE / f"hermes-home-{n_sessions}-v{STATE_VERSION}"
    db = home / "state.db"
    meta_file = home / "fixture.json"
    if db.exists() and meta_file.exists():
        return db, json.loads(meta_file.read_text())
    log(f"fixtures: building a {n_sessions:,}-session state.db with hermes_state.SessionDB (cached afterwards)")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    t0 = time.perf_counter()
    meta = _generate_state(db, n_sessions)
    meta["generation_seconds"] = round(time.perf_counter() - t0, 1)
    meta["bytes"] = db.stat().st_size
    meta_file.write_text(json.dumps(meta))
    log(f"fixtures: {db}: {meta}")
    return db, meta


def _text(rng: random.Random, lo: int, hi: int) -> str:
    words = ("the", "file", "test", "function", "error", "result", "agent", "model", "token", "cost",
             "config", "session", "update", "check", "value", "return", "python", "data", "path", "run")
    n = rng.randint(lo, hi) // 6
    return " ".join(words[rng.randrange(len(words))] for _ in range(max(1, n)))


def _generate_state(db: Path, n_sessions: int) -> dict[str, Any]:
    from hermes_state import SessionDB

    rng = random.Random(n_sessions)
    now = time.time()
    since = now - 6.5 * 86400
    sdb = SessionDB(db_path=db)
    chunk: list[dict[str, Any]] = []
    chunk_messages = 0
    usage: list[tuple[str, dict[str, Any]]] = []
    n_messages = 0
    n_tool_calls = 0

    def flush() -> None:
        nonlocal chunk_messages
        result = sdb.import_sessions(chunk)
        if not result.get("ok"):
            raise RuntimeError(f"SessionDB.import_sessions refused the fixture: {result.get('errors', [])[:3]}")
        chunk.clear()
        chunk_messages = 0

    for s in range(n_sessions):
        sid = f"{time.strftime('%Y%m%d', time.gmtime(since))}_{s:06d}_{rng.getrandbits(24):06x}"
        source = _pick(rng, SOURCES)[0]
        model, provider, _ = _pick(rng, MODELS)
        t = rng.uniform(since, now - 3600)
        started = t
        messages: list[dict[str, Any]] = []
        api_calls = 0
        for _turn in range(rng.randint(3, 7)):
            messages.append({"role": "user", "content": _text(rng, 40, 400), "timestamp": t})
            t += rng.uniform(1, 5)
            for r in range(rng.randint(1, 5)):
                api_calls += 1
                call_id = f"call_{s}_{len(messages)}_{r}"
                tool = TOOLS[rng.randrange(len(TOOLS))]
                messages.append({"role": "assistant", "content": "", "timestamp": t, "finish_reason": "tool_calls",
                                 "tool_calls": [{"id": call_id, "type": "function",
                                                 "function": {"name": tool, "arguments": json.dumps({"path": "src/x.py"})}}]})
                t += rng.uniform(0.05, 3)
                messages.append({"role": "tool", "content": _text(rng, 60, 900), "tool_call_id": call_id,
                                 "tool_name": tool, "timestamp": t})
                n_tool_calls += 1
                t += rng.uniform(1, 8)
            api_calls += 1
            messages.append({"role": "assistant", "content": _text(rng, 60, 900), "timestamp": t, "finish_reason": "stop"})
            t += rng.uniform(30, 600)
        end_reason = _pick(rng, END_REASONS)[0]
        chunk.append({
            "id": sid, "source": source, "model": model, "started_at": started,
            "ended_at": t if end_reason else None, "end_reason": end_reason, "title": f"bench session {s}",
            "messages": messages,
        })
        inp = sum(rng.randint(500, 6000) for _ in range(api_calls))
        out = sum(rng.randint(20, 1200) for _ in range(api_calls))
        usage.append((sid, {
            "input_tokens": inp, "output_tokens": out, "cache_read_tokens": inp * 3, "cache_write_tokens": 0,
            "reasoning_tokens": out // 10, "model": model, "billing_provider": provider,
            "estimated_cost_usd": (inp * 3 + out * 15) / 1e6, "cost_status": "estimated", "cost_source": "official_docs_snapshot",
            "api_call_count": api_calls,
        }))
        n_messages += len(messages)
        chunk_messages += len(messages)
        if len(chunk) >= 400 or chunk_messages >= 40_000:
            flush()
    if chunk:
        flush()
    for sid, u in usage:
        sdb.update_token_counts(sid, **u)
    sdb.close()
    return {"sessions": n_sessions, "messages": n_messages, "tool_calls": n_tool_calls, "since_s": since,
            "until_s": now, "written_with": "hermes_state.SessionDB.import_sessions + update_token_counts"}


# ---------------------------------------------------------------------------------------------
# The same histories in PostgreSQL
# ---------------------------------------------------------------------------------------------

PG_FIXTURE_VERSION = 1


def cached_postgres() -> Any:
    """A PostgreSQL server (Debian's binaries, as the tests start them) whose cluster lives in
    ``bench/.cache/pg-v*/`` and is reused across runs: the 10M-call copy is made once.
    Loopback only; ``trust`` authentication; fsync on, commits acknowledged before flushed."""
    import contextlib

    from hermetry.testing.postgres import PostgresServer

    class CachedPostgres(PostgresServer):
        def __init__(self) -> None:
            super().__init__(durable=True)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = CACHE / f"pg-v{PG_FIXTURE_VERSION}"
            self.data = self.dir / "data"
            self.dir.mkdir(parents=True, exist_ok=True)
            if self._as_root:
                shutil.chown(self.dir, "postgres")
            self._initialized = (self.data / "PG_VERSION").exists()
            if (self.data / "postmaster.pid").exists():  # a run that was killed: the server may still be up
                with contextlib.suppress(Exception):
                    self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

        def destroy(self) -> None:  # keep the cluster: it is the cache
            self.stop()

    return CachedPostgres()


def postgres_history(pg: Any, n_api_calls: int) -> tuple[str, dict[str, Any]]:
    """The history of :func:`history_db` copied into a database of the cached cluster (once):
    COPY of every row (secondary indexes dropped during the copy and rebuilt), then the store's
    own ``migrate`` and rollup build. Returns (URL, meta incl. ``copy_seconds``)."""
    import psycopg

    db, meta = history_db(n_api_calls)
    name = f"h{n_api_calls}_v{HISTORY_VERSION}"
    sidecar = pg.dir / f"{name}.json"
    url = pg.url(name)
    if sidecar.exists():
        pg_meta: dict[str, Any] = json.loads(sidecar.read_text())
        if _upgrade_pg(url, pg_meta):
            sidecar.write_text(json.dumps(pg_meta))
        return url, pg_meta
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    log(f"fixtures: copying the {n_api_calls:,}-call history into PostgreSQL ({name})")
    t0 = time.perf_counter()
    copy_sqlite_to_postgres(db, url)
    pg_meta = {**meta, "copy_seconds": round(time.perf_counter() - t0, 1), "schema_version": None}
    _upgrade_pg(url, pg_meta)
    sidecar.write_text(json.dumps(pg_meta))
    log(f"fixtures: {name}: {pg_meta}")
    return url, pg_meta


def _upgrade_pg(url: str, meta: dict[str, Any]) -> bool:
    from hermetry.stores.postgres import connect, migrate
    from hermetry.stores.sqlite_schema import SCHEMA_VERSION

    if meta.get("schema_version") == SCHEMA_VERSION:
        return False
    conn = connect(url, host="bench")
    try:
        conn.raw.execute("SET statement_timeout = 0")
        migrate(conn)
        _build_pending(conn)
        built = build_rollups(conn)
        if built is not None and (built >= 1.0 or not meta.get("rollup_build_seconds")):
            # an upgrade that found nothing to rebuild keeps the build's own time
            meta["rollup_build_seconds"] = round(built, 2)
            log(f"fixtures: PostgreSQL {url.rsplit('/', 1)[-1]}: rollups built in {built:.1f} s")
        meta["rollups_built"] = built is not None
        meta["schema_version"] = SCHEMA_VERSION
    finally:
        conn.close()
    return True


def copy_sqlite_to_postgres(path: Path, url: str) -> None:
    """Every row of a SQLite telemetry file into an empty PostgreSQL store, with COPY."""
    import sqlite3

    from hermetry.stores.postgres import connect, migrate

    conn = connect(url, host="bench")
    migrate(conn)
    raw = conn.raw
    raw.execute("SET statement_timeout = 0")  # the store's per-statement limit is for its own small writes
    raw.execute("SET maintenance_work_mem = '512MB'")
    tables = ("sessions", "turns", "api_calls", "tool_calls", "recorder_runs")
    indexes = raw.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY(%s) "
        "AND indexname NOT LIKE '%%_pkey'", (list(tables),)).fetchall()
    for name, _ in indexes:
        raw.execute(f'DROP INDEX "{name}"')
    raw.commit()
    lite = sqlite3.connect(path)
    try:
        for table in tables:
            cols = [r[1] for r in lite.execute(f"PRAGMA table_xinfo({table})") if r[6] == 0]  # not generated
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for r in lite.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                    copy.write_row(r)
            raw.commit()
        for _, create in indexes:
            raw.execute(create)
        raw.commit()
        raw.autocommit = True
        raw.execute("VACUUM ANALYZE")
    finally:
        lite.close()
        conn.close()
