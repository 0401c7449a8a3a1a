"""4 · Query scale: ``hermetry insights --json`` over 100k, 1M and 10M API calls, on SQLite and
PostgreSQL, by the rollup path and the exact path — and against ``hermes insights``.

* Histories of 100k, 1M and 10M recorded API calls (``bench._fixtures.history_db``: bulk rows of
  what ``write_events`` writes, 6.5 days, rollups built by the store's own code), and the same
  rows in a real PostgreSQL (``postgres_history``: COPY into a cached cluster). Every report
  covers the whole history, so the window holds 100k, 1M and 10M calls: the worst case.
* For each: the library call ``insights(db, Query)`` in a fresh process (best of N; the
  process's peak RSS), and the CLI as a subprocess (``hermetry --db … insights --json --since …
  --until …``; interpreter start-up and imports included; peak RSS from ``wait4``). The
  default path (rollups when the window is large, as a user gets it) and the exact path
  (every raw row: ``--exact``), each as the JSON's ``method`` says it ran.
* Growth: the exponent of time vs calls, 100k → 1M → 10M (0 = the cost follows the window's
  length; 1 = it follows the rows).
* Refresh: what keeping the rollups current costs — new rows written into a closed hour of the
  1M history, the rollups of the hours they touched rebuilt (in a transaction, rolled back).
* Start-up: ``hermetry insights --json`` on an empty file, next to ``python -c pass``.
* Equal history: a 10,000-session Hermes ``state.db`` (``bench._fixtures.state_db``, built with
  ``hermes_state.SessionDB``) imported with hermetry's importer; ``hermes insights --days N`` on
  the state.db vs ``hermetry insights --json`` on the imported file, both over everything.

``BENCH_QUERY_SIZES=100000,1000000`` and ``BENCH_EXACT_MAX=1000000`` shorten a run (the exact path
at 10M takes minutes and ~5 GB); ``BENCH_QUERY_POSTGRES=0`` leaves PostgreSQL out,
``BENCH_PG_SIZES=…`` measures only some sizes there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import (
    Options,
    child_env,
    fmt_mb,
    fmt_s,
    log,
    row,
    run_child,
    run_python_json,
    tmpdir,
)
from bench._fixtures import history_db, state_db

TARGET_S = 1.0
TARGET_VS_HERMES = 10.0


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _hermetry_bin() -> str:
    candidate = Path(sys.executable).parent / "hermetry"
    return str(candidate) if candidate.exists() else "hermetry"


def _has_exact_flag() -> bool:
    out = run_child([_hermetry_bin(), "insights", "--help"], env=child_env())
    return "--exact" in out.stdout


class ServerCpu:
    """CPU time (user + system, s) a local PostgreSQL server spent: its postmaster's own, the
    backends it reaped (``cutime``/``cstime``) and those still running — read from ``/proc`` of the
    cached cluster's postmaster. :meth:`after` waits (≤ 1 s) for the backends a finished client left
    to be reaped, so their time is counted once. Background workers (autovacuum, checkpointer) are
    included: a figure of the whole server for the duration of one command."""

    def __init__(self, data_dir: Path) -> None:
        self.pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        self.tick = float(os.sysconf("SC_CLK_TCK"))

    def _children(self) -> list[int]:
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def _ticks(self) -> int:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        for child in self._children():
            try:
                with open(f"/proc/{child}/stat") as f:
                    total += sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
            except OSError:
                pass  # reaped meanwhile: counted in cutime at the next read
        return total

    def before(self) -> tuple[int, set[int]]:
        return self._ticks(), set(self._children())

    def after(self, mark: tuple[int, set[int]]) -> float:
        deadline = time.perf_counter() + 1.0
        while set(self._children()) - mark[1] and time.perf_counter() < deadline:
            time.sleep(0.002)
        return (self._ticks() - mark[0]) / self.tick


def cli_insights(db: Path | str, since_ms: float, until_ms: float, reps: int, *, exact: bool = False,
                 flag: bool = False, server: ServerCpu | None = None) -> dict[str, Any]:
    argv = [_hermetry_bin(), "--db", str(db), "insights", "--json", "--since", _iso(since_ms), "--until", _iso(until_ms)]
    if exact and flag:
        argv.append("--exact")
    runs, server_s = [], []
    for _ in range(reps):
        mark = server.before() if server is not None else None
        runs.append(run_child(argv, env=child_env(), timeout=1800))
        if server is not None and mark is not None:
            server_s.append(server.after(mark))
    bad = [r for r in runs if r.returncode != 0]
    if bad:
        raise RuntimeError(f"hermetry insights failed: {bad[0].stderr[-2000:]}")
    best = min(runs, key=lambda r: r.wall_s)
    report = json.loads(best.stdout)
    method = ((report.get("api_calls") or {}).get("latency_ms") or {}).get("method")
    return {"seconds": [r.wall_s for r in runs], "best_s": best.wall_s, "peak_rss_mb": max(r.peak_rss_mb for r in runs),
            "cpu_seconds": [r.cpu_s for r in runs], "best_cpu_s": best.cpu_s,
            "server_cpu_seconds": server_s or None,
            "best_server_cpu_s": server_s[runs.index(best)] if server_s else None,
            "bytes_out": len(best.stdout), "method": method, "api_calls": report["api_calls"]["count"]}


def fmt_cpu(cli: dict[str, Any]) -> str:
    """``CPU 612 ms + server 150 ms``: the CLI's best run's CPU time, and the server's during it."""
    if cli.get("best_cpu_s") is None:
        return ""
    server = cli.get("best_server_cpu_s")
    return f"CPU {fmt_s(cli['best_cpu_s'])}" + (f" + server {fmt_s(server)}" if server is not None else "")


def lib_insights(db: Path | str, since_ms: float, until_ms: float, reps: int, *, exact: bool = False) -> dict[str, Any]:
    out, child = run_python_json(["-m", "bench._workers", "library-insights", str(db), str(since_ms), str(until_ms),
                                  str(reps), "1" if exact else "0"], timeout=3600)
    out["best_s"] = min(out["seconds"])
    out["process_peak_rss_mb"] = child.peak_rss_mb
    return out


def _startup() -> dict[str, float]:
    """The CLI's fixed cost: ``insights --json`` on an empty file, and a bare interpreter (best of 5)."""
    root = tmpdir("startup")
    empty = root / "empty.db"
    from hermetry.stores.sqlite import connect, migrate

    conn = connect(empty)
    migrate(conn)
    conn.close()
    env = child_env()
    insights = min(run_child([_hermetry_bin(), "--db", str(empty), "insights", "--json"], env=env).wall_s
                   for _ in range(5))
    bare = min(run_child([sys.executable, "-c", "pass"], env=env).wall_s for _ in range(5))
    imports = min(run_child([sys.executable, "-c", "import hermetry.surfaces.cli, hermetry.analytics.report"],
                            env=env).wall_s for _ in range(5))
    return {"insights_empty_s": insights, "python_s": bare, "imports_s": imports}


def imported_store(state: Path, root: Path) -> tuple[Path | None, str | None, dict[str, Any] | None]:
    """The state.db imported with hermetry's importer (reusing the import benchmark's, when fresh)."""
    cached = state.parent / "imported.db"
    src = Path(__file__).resolve().parents[1] / "src" / "hermetry"
    newest_code = max((p.stat().st_mtime for p in src.rglob("*.py")), default=0)
    if cached.exists() and cached.stat().st_mtime > newest_code and (state.parent / "imported.json").exists():
        return cached, None, None
    store = root / "imported.db"
    out, _ = run_python_json(["-m", "bench._workers", "import-state-db", str(state), str(store)], timeout=1800)
    if "skipped" in out:
        return None, out["skipped"], None
    return store, None, out


def _seed_openrouter_cache(home: Path) -> None:
    """Give Hermes the OpenRouter model list a networked machine would have cached.

    ``hermes insights`` prices OpenRouter sessions from OpenRouter's model list (fetched once,
    cached an hour in ``$HERMES_HOME/cache``). This machine has no network: without the cache
    every OpenRouter session would wait for a failing fetch, which is not what a user sees.
    """
    from bench._fixtures import MODELS

    entries = {}
    for model, provider, _ in MODELS:
        if provider == "openrouter":
            entry = {"context_length": 200000, "max_completion_tokens": 64000, "name": model,
                     "pricing": {"prompt": "0.000003", "completion": "0.000015",
                                 "input_cache_read": "0.0000003", "input_cache_write": "0.00000375"}}
            entries[model] = entry
            entries.setdefault(model.split("/", 1)[1], entry)
    (home / "cache").mkdir(exist_ok=True)
    (home / "cache" / "openrouter_model_metadata.json").write_text(json.dumps(entries))


def _exponent(points: list[tuple[int, float]]) -> str:
    """``^0.05, ^0.98``: the exponent of time vs calls between consecutive sizes."""
    parts = []
    for (n0, t0), (n1, t1) in zip(points, points[1:], strict=False):
        if t0 > 0 and t1 > 0:
            parts.append(f"{math.log(t1 / t0) / math.log(n1 / n0):.2f}")
    return ("time ∝ calls^" + " then ^".join(parts)) if parts else ""


def _sizes(opts: Options) -> list[int]:
    env = os.environ.get("BENCH_QUERY_SIZES")
    if env:
        return [int(x) for x in env.split(",") if x.strip()]
    return [10_000, 100_000] if opts.quick else [100_000, 1_000_000, 10_000_000]


def _measure_store(label: str, target: Any, meta: dict[str, Any], n: int, *, exact_max: int, flag: bool,
                   reps: int, server: ServerCpu | None = None) -> dict[str, Any]:
    since, until = meta["since_ms"], meta["until_ms"]
    lib = lib_insights(target, since, until, reps)
    cli = cli_insights(target, since, until, reps, flag=flag, server=server)
    if lib.get("api_calls") != meta["api_calls"]:
        log(f"query: warning: {label} report covers {lib.get('api_calls')} calls of {meta['api_calls']}")
    out: dict[str, Any] = {"library": lib, "cli": cli}
    if lib.get("method") == "approximate" and n <= exact_max:
        exact_reps = 1 if n >= 10_000_000 else min(reps, 2)
        out["exact_library"] = lib_insights(target, since, until, exact_reps, exact=True)
        out["exact_cli"] = cli_insights(target, since, until, 1, exact=True, flag=flag) if n < 10_000_000 else None
    log(f"query: {label} {n:,}: library {lib['best_s']:.3f} s ({lib.get('method')}), CLI {cli['best_s']:.3f} s "
        f"({fmt_cpu(cli)})"
        + (f"; exact path {out['exact_library']['best_s']:.2f} s" if out.get("exact_library") else ""))
    return out


def _refresh(n: int) -> dict[str, Any] | None:
    """Rollups kept current: rows written into one closed hour, that hour rebuilt (rolled back)."""
    try:
        out, _ = run_python_json(["-m", "bench._workers", "rollup-refresh", str(history_db(n)[0])], timeout=1800)
    except RuntimeError as exc:
        log(f"query: refresh not measured: {str(exc)[-300:]}")
        return None
    return None if out.get("skipped") else out


def run(opts: Options) -> dict[str, Any]:
    sizes = _sizes(opts)
    exact_max = int(os.environ.get("BENCH_EXACT_MAX", "10000000"))
    with_pg = os.environ.get("BENCH_QUERY_POSTGRES", "1") != "0"
    n_sessions = 1_000 if opts.quick else 10_000
    root = tmpdir("query")
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"sqlite": {}, "postgres": {}}
    startup = _startup()
    results["startup"] = startup
    flag = _has_exact_flag()
    metas = {n: history_db(n)[1] for n in sizes}
    for n in sizes:
        db, meta = history_db(n)
        log(f"query: SQLite, {n:,} API calls ({meta['sessions']:,} sessions, {db.stat().st_size / 2**20:,.0f} MB)")
        results["sqlite"][n] = _measure_store("SQLite", db, meta, n, exact_max=exact_max, flag=flag,
                                              reps=3)
    if with_pg:
        from bench._fixtures import cached_postgres, postgres_history

        pg_sizes = [int(x) for x in os.environ.get("BENCH_PG_SIZES", ",".join(map(str, sizes))).split(",") if x.strip()]
        with cached_postgres() as pg:
            server = ServerCpu(pg.data)
            for n in pg_sizes:
                url, pg_meta = postgres_history(pg, n)
                metas[n]["pg"] = {k: pg_meta.get(k) for k in ("copy_seconds", "rollup_build_seconds")}
                log(f"query: PostgreSQL, {n:,} API calls")
                results["postgres"][n] = _measure_store("PostgreSQL", url, pg_meta, n, exact_max=exact_max, flag=flag,
                                                        reps=3, server=server)
    results["metas"] = metas

    for store, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        measured = results[store]
        if not measured:
            continue
        ns = sorted(measured)
        default_points = [(n, measured[n]["library"]["best_s"]) for n in ns]
        exact_points = [(n, measured[n]["exact_library"]["best_s"]) for n in ns if measured[n].get("exact_library")]
        for n in ns:
            r, meta = measured[n], metas[n]
            lib, cli = r["library"], r["cli"]
            method = (lib.get("method") or "exact (no rollups in this build)") + (
                f"; activity: {lib['activity_method']}" if lib.get("activity_method") else "")
            ex = r.get("exact_library")
            is_target = n >= 1_000_000
            baseline = f"CLI start-up alone {fmt_s(startup['insights_empty_s'])}"
            if ex:
                baseline = f"exact path: library {fmt_s(ex['best_s'])}" + (
                    f" · CLI {fmt_s(r['exact_cli']['best_s'])}" if r.get("exact_cli") else "") + " · " + baseline
            rows.append(row(
                "query", f"{label}: `insights --json` over {n:,} API calls ({meta['sessions']:,} sessions, "
                         f"{meta['turns']:,} turns, {meta['tool_calls']:,} tool calls), whole window; path: {method}",
                f"CLI {fmt_s(cli['best_s'])} ({fmt_cpu(cli)}) · library {fmt_s(lib['best_s'])}",
                baseline=baseline,
                ratio=(f"{ex['best_s'] / lib['best_s']:.0f}× faster than exact" if ex else "")
                      + ((" · " if ex else "") + _exponent(default_points) if n == ns[-1] and len(ns) > 1 else ""),
                target=f"≤ {TARGET_S:.0f} s at 1M and 10M" if is_target else "",
                ok=(cli["best_s"] <= TARGET_S) if is_target else None,
                memory=f"peak RSS {fmt_mb(cli['peak_rss_mb'])}" + (f" (exact {fmt_mb(ex['process_peak_rss_mb'])})" if ex else ""),
                key=f"query.{store}.{n}", cli=cli, library=lib, exact=ex,
            ))
        if len(exact_points) > 1:
            rows.append(row("query", f"{label}: growth of the exact path (every raw row)", _exponent(exact_points),
                            baseline="default path: " + _exponent(default_points),
                            key=f"query.{store}.growth"))
    build = [(n, metas[n].get("rollup_build_seconds"), (metas[n].get("pg") or {}).get("rollup_build_seconds"))
             for n in sizes]
    if any(b[1] for b in build):
        rows.append(row("query", "rollups built from scratch (every hour of the history), once per fixture",
                        " · ".join(f"{n:,}: {fmt_s(s)}" for n, s, _ in build if s) + " (SQLite)",
                        baseline=" · ".join(f"{n:,}: {fmt_s(p)}" for n, _, p in build if p) + (" (PostgreSQL)" if any(
                            b[2] for b in build) else ""),
                        ratio=" · ".join(f"{n:,}: {metas[n]['generation_seconds']:.0f} s to generate the rows"
                                         for n in sizes if metas[n].get("generation_seconds")),
                        key="query.rollup_build"))
    refresh = _refresh(1_000_000 if 1_000_000 in sizes else sizes[-1])
    if refresh:
        results["refresh"] = refresh
        rows.append(row("query", f"rollups kept current: {refresh['calls']:,} new API calls "
                                 f"({refresh['events']:,} events) written into a closed hour, then refreshed",
                        f"refresh {fmt_s(refresh['refresh_s'])}", baseline=f"the write itself {fmt_s(refresh['write_s'])}",
                        ratio=f"{refresh['buckets']:,} dirty bucket(s) rebuilt",
                        key="query.refresh", **refresh))
    rows.append(row("query", "CLI start-up: `hermetry insights --json` on an empty file",
                    fmt_s(startup["insights_empty_s"]),
                    baseline=f"`python -c pass` {fmt_s(startup['python_s'])} · importing the CLI and the report "
                             f"{fmt_s(startup['imports_s'])}",
                    key="query.startup"))

    # equal history: Hermes' state.db vs the same history imported
    state, smeta = state_db(n_sessions)
    log(f"query: state.db with {smeta['sessions']:,} sessions / {smeta['messages']:,} messages "
        f"({state.stat().st_size / 2**20:.0f} MB)")
    days = max(1, math.ceil((time.time() - smeta["since_s"]) / 86400) + 1)
    hermes_home = root / "hermes-home"
    hermes_home.mkdir()
    shutil.copy2(state, hermes_home / "state.db")  # Hermes opens it read-write: keep the cached copy pristine
    _seed_openrouter_cache(hermes_home)
    from hermetry.testing.hermes import hermes_executable

    env = child_env(HERMES_HOME=str(hermes_home), NO_COLOR="1")
    hermes_runs = [run_child([hermes_executable(), "insights", "--days", str(days)], env=env, timeout=900) for _ in range(2)]
    if any(r.returncode != 0 or "Error generating insights" in r.stdout for r in hermes_runs):
        raise RuntimeError(f"hermes insights failed: {hermes_runs[0].stdout[-1000:]} {hermes_runs[0].stderr[-1000:]}")
    h_best = min(r.wall_s for r in hermes_runs)
    h_rss = max(r.peak_rss_mb for r in hermes_runs)
    results["hermes_insights"] = {"seconds": [r.wall_s for r in hermes_runs], "cpu_seconds": [r.cpu_s for r in hermes_runs],
                                  "peak_rss_mb": h_rss, "days": days}
    log(f"query: hermes insights {h_best:.2f} s (CPU {min(r.cpu_s for r in hermes_runs):.2f} s)")
    if "Failed to fetch" in hermes_runs[0].stderr + hermes_runs[0].stdout:
        log("query: warning: hermes insights tried the network")
    store, skipped, _ = imported_store(state, root)
    if store is None:
        rows.append(row("query", f"equal history ({smeta['sessions']:,} sessions / {smeta['messages']:,} messages): "
                                 "hermetry insights on the imported file vs `hermes insights`",
                        "skipped: the backfill importer is not available", baseline=f"`hermes insights` {fmt_s(h_best)}",
                        target=f"≥ {TARGET_VS_HERMES:.0f}× faster", ok=None, key="query.vs_hermes", skipped=skipped))
    else:
        since_ms, until_ms = smeta["since_s"] * 1000 - 86_400_000, time.time() * 1000 + 3_600_000
        cli = cli_insights(store, since_ms, until_ms, 3, flag=flag)
        lib = lib_insights(store, since_ms, until_ms, 3)
        results["imported"] = {"cli": cli, "library": lib}
        speedup = h_best / cli["best_s"]
        rows.append(row(
            "query", f"equal history ({smeta['sessions']:,} sessions / {smeta['messages']:,} messages): "
                     f"`hermetry insights --json` on the imported file vs `hermes insights` on state.db; "
                     f"path: {lib.get('method') or 'exact'}",
            f"CLI {fmt_s(cli['best_s'])} · library {fmt_s(lib['best_s'])}",
            baseline=f"`hermes insights` {fmt_s(h_best)} (peak RSS {fmt_mb(h_rss)})",
            ratio=f"{speedup:.1f}× faster (CLI vs CLI)",
            target=f"≥ {TARGET_VS_HERMES:.0f}× faster", ok=speedup >= TARGET_VS_HERMES,
            memory=f"peak RSS {fmt_mb(cli['peak_rss_mb'])}", key="query.vs_hermes",
        ))
    notes = [
        "Histories: bulk INSERTs of exactly the rows the store's `write_events` leaves (checked row for row by "
        "tests/test_bench_fixtures.py), 6.5 days, sessions of 1–7 turns, 1–4 API calls per turn, a tool call between "
        "consecutive API calls; PostgreSQL: the same rows by COPY. Each report covers the whole history.",
        f"`hermes insights --days {days}` and `hermetry insights --since/--until` both cover the whole history.",
        "Generation: " + ", ".join(f"{n:,} calls {metas[n].get('generation_seconds', 0):.0f} s"
                                   + (f" (+ {metas[n]['pg']['copy_seconds']:.0f} s COPY into PostgreSQL)"
                                      if (metas[n].get("pg") or {}).get("copy_seconds") else "")
                                   for n in sizes if metas[n].get("generation_seconds") is not None),
    ]
    return {"rows": rows, "notes": notes, "raw": json.loads(json.dumps(results, default=str))}


# ---------------------------------------------------------------------------------------------
# 4b · an everyday window: `insights --days 2`, its first and last hours partial (read raw)
# ---------------------------------------------------------------------------------------------

def _last_call_ms(db: Path) -> float:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return float(conn.execute("SELECT MAX(started_at_ms) FROM api_calls").fetchone()[0])
    finally:
        conn.close()


def run_window(opts: Options) -> dict[str, Any]:
    """``insights --json`` over the last 2 days of a history, as ``--days 2`` reads it on a store older
    than the window: "now" is the fixture's last call, the window starts 2 days − 17 min before
    (its first hour partial, from 24 past; its last hour open), so both edge hours are partial: each
    read raw, or as its rollup minus the raw rows outside the window where those are fewer
    (``rollups.Plan.edge_hours``).
    Baseline in the same run: the same window snapped to the whole hours inside it (no raw part) —
    the ratio is what the partial hours cost. Library (best of 3, fresh process) and CLI (best of 3)."""
    sizes = [int(x) for x in os.environ.get("BENCH_QUERY_SIZES", "").split(",") if x.strip()] or (
        [100_000] if opts.quick else [1_000_000, 10_000_000])
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    for n in sizes:
        db, meta = history_db(n)
        until = _last_call_ms(db) // 1000 * 1000  # the CLI's --since/--until are whole seconds
        since = until - 2 * 86_400_000 + 17 * 60_000
        whole = (math.ceil(since / 3_600_000) * 3_600_000, math.floor(until / 3_600_000) * 3_600_000)
        log(f"query window: SQLite {n:,}: {_iso(since)} … {_iso(until)}")
        lib, cli = lib_insights(db, since, until, 3), cli_insights(db, since, until, 3)
        lib_whole, cli_whole = lib_insights(db, *whole, 3), cli_insights(db, *whole, 3)
        raw[str(n)] = {"since_ms": since, "until_ms": until, "library": lib, "cli": cli,
                       "whole_hours": {"library": lib_whole, "cli": cli_whole}}
        log(f"query window: {n:,}: CLI {cli['best_s']:.3f} s, library {lib['best_s']:.3f} s "
            f"(whole hours: CLI {cli_whole['best_s']:.3f} s)")
        rows.append(row(
            "window", f"SQLite: `insights --json` over the last 2 days of {n:,} API calls "
                      f"({cli['api_calls']:,} in the window), first and last hours partial (each read raw "
                      f"or as rollup minus raw, the fewer rows); path: {lib.get('method')}",
            f"CLI {fmt_s(cli['best_s'])} · library {fmt_s(lib['best_s'])}",
            baseline=f"the whole hours inside it: CLI {fmt_s(cli_whole['best_s'])} · library "
                     f"{fmt_s(lib_whole['best_s'])}",
            ratio=f"partial hours add {lib['best_s'] - lib_whole['best_s']:+.2f} s (library)",
            target=f"≤ {TARGET_S:.0f} s at 1M and 10M" if n >= 1_000_000 else "",
            ok=(cli["best_s"] <= TARGET_S) if n >= 1_000_000 else None,
            memory=f"peak RSS {fmt_mb(cli['peak_rss_mb'])}", key=f"window.sqlite.{n}"))
    notes = ["The query bench's histories (bench._fixtures.history_db); \"now\" = the history's last call, "
             "the window = now − 2 days + 17 min … now (`--days 2` minus 17 minutes: the first hour from 24 past, "
             "the last from its start; each partial hour read raw, or as its rollup minus the raw rows outside the "
             "window where those are fewer — here both: the 24 minutes before the window, and the last hour after "
             "the history's last call). The fixtures' rows were bulk-written session by session, "
             "so an hour's rows lie scattered over the file (a live store writes them in time order, together)."]
    return {"rows": rows, "notes": notes, "raw": raw}
