"""Child-process workers (fresh interpreters, so each one's time and peak memory are its own).

``python -m bench._workers NAME ARGS…`` prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plugin_cost() -> dict[str, Any]:
    """What the plugin costs inside a Hermes process: import + register, first write, exit flush."""
    t0 = time.perf_counter()
    import hermes_cli.plugins  # noqa: F401  (what `hermes -z` has loaded before plugins register)
    import run_agent  # noqa: F401

    t1 = time.perf_counter()
    # Hermes imports these for its first model call anyway (stream_probe wraps them at register)
    import openai.resources.chat.completions  # noqa: F401

    t1b = time.perf_counter()
    os.environ["HERMES_HOME"] = tempfile.mkdtemp(prefix="hermetry-bench-plugin-")
    hooks: dict[str, Any] = {}
    try:  # Hermes' own plugin context, so that what Hermes does on registration is counted too
        from hermes_cli.plugins import PluginContext, PluginManager, PluginManifest

        manager = PluginManager()
        ctx: Any = PluginContext(PluginManifest(name="hermetry", source="entrypoint"), manager)
    except Exception:
        manager = None

        class Ctx:
            def register_hook(self, name: str, cb: Any) -> None:
                hooks[name] = cb

            def __getattr__(self, name: str) -> Any:
                return lambda *a, **k: None

        ctx = Ctx()

    t2 = time.perf_counter()
    import hermetry.plugin as plugin

    t3 = time.perf_counter()
    plugin.register(ctx)
    t4 = time.perf_counter()
    if manager is not None:
        hooks = {name: cbs[-1] for name, cbs in getattr(manager, "_hooks", {}).items() if cbs}

    import random

    from bench._workload import session_hooks

    rng = random.Random(5)
    calls = list(session_hooks(0, rng))
    for name, kw in calls:
        if name in hooks:
            hooks[name](**kw)
    capture = plugin.get_capture()
    t5 = time.perf_counter()
    capture.recorder.flush(10)
    t6 = time.perf_counter()
    for name, kw in session_hooks(1, rng):
        if name in hooks:
            hooks[name](**kw)
    t7 = time.perf_counter()
    capture.recorder.flush(10)
    t8 = time.perf_counter()
    return {
        "hermes_import_ms": (t1 - t0) * 1000,
        "openai_import_ms": (t1b - t1) * 1000,
        "register_ms": (t4 - t2) * 1000,
        "imports": {"plugin_module_ms": round((t3 - t2) * 1000, 1), "register_call_ms": round((t4 - t3) * 1000, 1)},
        "first_write_ms": (t6 - t5) * 1000,
        "exit_flush_ms": (t8 - t7) * 1000,
        "hooks": sorted(hooks),
        "events_per_session": len(calls),
    }


def library_insights(db: str, since_ms: str, until_ms: str, reps: str = "1", exact: str = "0",
                     group_by: str = "source,model") -> dict[str, Any]:
    """Time ``insights(db, Query(...))`` in a fresh process (imports excluded).

    ``exact="1"``: the exact path (every raw row), where the library offers the choice."""
    from hermetry.analytics.report import Query, insights

    q = Query(since_ms=float(since_ms), until_ms=float(until_ms), group_by=tuple(filter(None, group_by.split(","))))
    kwargs = exact_kwargs(exact == "1")
    rss0 = _rss_mb()
    times = []
    report: dict[str, Any] = {}
    for _ in range(int(reps)):
        t0 = time.perf_counter()
        report = insights(db, q, **kwargs)
        times.append(time.perf_counter() - t0)
    return {"seconds": times, "coverage": report.get("coverage"), "method": report_method(report),
            "activity_method": (report.get("activity") or {}).get("method"),
            "rss_before_mb": rss0, "peak_rss_mb": _rss_mb(), "api_calls": (report.get("api_calls") or {}).get("count"),
            "total_tokens": ((report.get("api_calls") or {}).get("tokens") or {}).get("total_tokens"),
            "latency_ms": (report.get("api_calls") or {}).get("latency_ms")}


def exact_kwargs(exact: bool) -> dict[str, Any]:
    """How to ask ``insights()`` for the exact path ({} when it has no such choice)."""
    import inspect

    from hermetry.analytics.report import insights

    params = inspect.signature(insights).parameters
    if not exact:
        return {}
    for name in ("exact", "force_exact"):
        if name in params:
            return {name: True}
    if "method" in params:
        return {"method": "exact"}
    return {}


def report_method(report: dict[str, Any]) -> str | None:
    """``exact`` / ``approximate`` as the report's model-call latency says (None: not stated)."""
    lat = (report.get("api_calls") or {}).get("latency_ms") or {}
    method = lat.get("method")
    return None if method is None else str(method)


def rollup_refresh(db: str, sessions: str = "50") -> dict[str, Any]:
    """What keeping the rollups current costs: on a copy of a history, whole sessions written by
    the store's write path into one closed hour two days back (which marks it dirty), then the
    store's refresh (``rollups.rebuild``) of what they dirtied."""
    import shutil
    import sqlite3

    from hermetry.model.events import (
        ApiCall,
        SessionEnded,
        SessionStarted,
        ToolCall,
        TurnEnded,
        TurnStarted,
    )
    from hermetry.model.units import HOUR_MS
    from hermetry.stores import rollups
    from hermetry.stores.sqlite import connect, write_events

    folder = tempfile.mkdtemp(prefix="hermetry-bench-refresh-")
    try:
        copy = os.path.join(folder, "t.db")
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        conn = connect(copy)
        if not rollups.has_rollups(conn):
            return {"skipped": "no rollups in this schema"}
        left = rollups.rebuild(conn, include_open=True)  # start clean
        hour = int(time.time() * 1000 // HOUR_MS) - 48
        events: list[Any] = []
        calls = 0
        for i in range(int(sessions)):
            sid = f"refresh-{i:04d}"
            t = hour * HOUR_MS + i * (HOUR_MS / (int(sessions) + 1))
            events.append(SessionStarted(session_id=sid, started_at_ms=t, source="cli", session_type="interactive",
                                         model="gpt-4.1-mini", provider="openai", profile="default", host="bench"))
            turn = f"{sid}-t0"
            events.append(TurnStarted(turn_id=turn, session_id=sid, started_at_ms=t, task_id=sid))
            for a in range(4):
                calls += 1
                events.append(ApiCall(api_request_id=f"{turn}-r{a}", attempt=0, session_id=sid, turn_id=turn,
                                      started_at_ms=t + a * 2000, latency_ms=1500 + a, status="ok", model="gpt-4.1-mini",
                                      provider="openai", ttft_ms=400, input_tokens=1000, output_tokens=100,
                                      cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
                                      cost_usd=0.001, cost_status="estimated", cost_source="genai-prices"))
                if a < 3:
                    events.append(ToolCall(tool_call_id=f"{turn}-c{a}", session_id=sid, turn_id=turn, tool_name="terminal",
                                           started_at_ms=t + a * 2000 + 1600, latency_ms=200, status="ok", toolset="core"))
            events.append(TurnEnded(turn_id=turn, session_id=sid, ended_at_ms=t + 9000, outcome="completed"))
            events.append(SessionEnded(session_id=sid, ended_at_ms=t + 10_000, end_reason="cli_close", outcome="completed"))
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        write_events(conn, events)
        conn.execute("COMMIT")
        write_s = time.perf_counter() - t0
        dirty = conn.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0]
        stats = rollups.rebuild(conn, include_open=True)
        conn.close()
        return {"events": len(events), "calls": calls, "write_s": write_s, "refresh_s": stats.seconds,
                "buckets": stats.hours, "dirty_before": dirty, "rollup_rows": stats.rows,
                "initial_dirty_rebuilt": left.hours}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def import_state_db(state_db: str, store: str) -> dict[str, Any]:
    """Run the backfill importer once; seconds and what it did."""
    try:
        from hermetry.sources.backfill import import_state_db as do_import
    except Exception as exc:  # the importer is not there (yet)
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    result = do_import(state_db, store)
    dt = time.perf_counter() - t0
    fields = {k: getattr(result, k) for k in dir(result) if not k.startswith("_")
              and isinstance(getattr(result, k, None), int | float | str)}
    return {"seconds": dt, "result": fields, "rss_before_mb": rss0, "peak_rss_mb": _rss_mb()}


def main(argv: list[str]) -> int:
    name, *args = argv
    fn = {"plugin-cost": plugin_cost, "library-insights": library_insights, "import-state-db": import_state_db,
          "rollup-refresh": rollup_refresh}[name]
    out = fn(*args)  # type: ignore[operator]
    sys.stdout.write("\n" + json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for plugin/recorder threads at interpreter exit


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
