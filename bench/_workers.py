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
    fn = {"plugin-cost": plugin_cost, "library-insights": library_insights, "import-state-db": import_state_db}[name]
    out = fn(*args)  # type: ignore[operator]
    sys.stdout.write("\n" + json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for plugin/recorder threads at interpreter exit


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
