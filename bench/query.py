"""4 · Query scale: ``hermetry insights --json`` over growing histories, and against ``hermes insights``.

* Histories of 10k, 100k and 1M recorded API calls (``bench._fixtures.history_db``: written
  with the store's ``write_events`` in big transactions). For each: the CLI as a subprocess
  (``hermetry insights --json --since … --until …``, the whole window; wall time includes
  interpreter start-up; peak RSS from ``wait4``) and the library call ``insights(db, Query)``
  timed alone in a fresh process (best of 3; the process's peak RSS).
* Equal history: a 10,000-session Hermes ``state.db`` (``bench._fixtures.state_db``, built with
  ``hermes_state.SessionDB``) imported with hermetry's backfill importer; then
  ``hermes insights --days N`` on the state.db (Hermes' own report, as a subprocess) vs
  ``hermetry insights --json`` on the imported file, both over the whole history.
"""

from __future__ import annotations

import json
import math
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

TARGET_1M_S = 1.0
TARGET_VS_HERMES = 10.0


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _hermetry_bin() -> str:
    candidate = Path(sys.executable).parent / "hermetry"
    return str(candidate) if candidate.exists() else "hermetry"


def cli_insights(db: Path, since_ms: float, until_ms: float, reps: int) -> dict[str, Any]:
    argv = [_hermetry_bin(), "--db", str(db), "insights", "--json", "--since", _iso(since_ms), "--until", _iso(until_ms)]
    runs = [run_child(argv, env=child_env(), timeout=900) for _ in range(reps)]
    bad = [r for r in runs if r.returncode != 0]
    if bad:
        raise RuntimeError(f"hermetry insights failed: {bad[0].stderr[-2000:]}")
    best = min(runs, key=lambda r: r.wall_s)
    return {"seconds": [r.wall_s for r in runs], "best_s": best.wall_s, "peak_rss_mb": max(r.peak_rss_mb for r in runs),
            "bytes_out": len(best.stdout)}


def lib_insights(db: Path, since_ms: float, until_ms: float, reps: int) -> dict[str, Any]:
    out, child = run_python_json(["-m", "bench._workers", "library-insights", str(db), str(since_ms), str(until_ms), str(reps)])
    out["best_s"] = min(out["seconds"])
    out["process_peak_rss_mb"] = child.peak_rss_mb
    return out


def _startup() -> float:
    """The CLI's fixed cost: `hermetry --help`-like start-up (best of 3)."""
    argv = [_hermetry_bin(), "path"]
    return min(run_child(argv, env=child_env()).wall_s for _ in range(3))


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


def run(opts: Options) -> dict[str, Any]:
    sizes = [10_000, 100_000] if opts.quick else [10_000, 100_000, 1_000_000]
    n_sessions = 1_000 if opts.quick else 10_000
    root = tmpdir("query")
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"sizes": {}}
    startup = _startup()
    results["cli_startup_s"] = startup
    for n in sizes:
        db, meta = history_db(n)
        reps = 3 if n < 1_000_000 else 2
        log(f"query: {n:,} API calls ({meta['sessions']:,} sessions, {db.stat().st_size / 2**20:.0f} MB)")
        lib = lib_insights(db, meta["since_ms"], meta["until_ms"], reps)
        cli = cli_insights(db, meta["since_ms"], meta["until_ms"], reps)
        cov = lib.get("coverage") or {}
        if cov.get("api_calls") != meta["api_calls"]:
            log(f"query: warning: report covers {cov.get('api_calls')} calls of {meta['api_calls']}")
        results["sizes"][n] = {"meta": meta, "library": lib, "cli": cli}
        log(f"query: {n:,}: library {lib['best_s']:.3f} s, CLI {cli['best_s']:.3f} s, "
            f"peak RSS {cli['peak_rss_mb']:.0f} MB")
    # growth: exponent of time vs size between the two largest sizes
    ns = sorted(results["sizes"])
    growth = ""
    if len(ns) >= 2:
        a, b = results["sizes"][ns[-2]]["library"]["best_s"], results["sizes"][ns[-1]]["library"]["best_s"]
        growth = f"time ∝ size^{math.log(b / a) / math.log(ns[-1] / ns[-2]):.2f} ({ns[-2]:,} → {ns[-1]:,})"
    for n in ns:
        r = results["sizes"][n]
        lib, cli, meta = r["library"], r["cli"], r["meta"]
        is_target = n == 1_000_000
        rows.append(row(
            "query", f"`hermetry insights --json`, {n:,} API calls ({meta['sessions']:,} sessions, "
                     f"{meta['turns']:,} turns, {meta['tool_calls']:,} tool calls)",
            f"CLI {fmt_s(cli['best_s'])} · library {fmt_s(lib['best_s'])}",
            baseline=f"CLI start-up alone {fmt_s(startup)}",
            ratio=growth if n == ns[-1] else "",
            target=f"≤ {TARGET_1M_S:.0f} s at 1M" if is_target else "",
            ok=(cli["best_s"] <= TARGET_1M_S) if is_target else None,
            memory=f"peak RSS {fmt_mb(cli['peak_rss_mb'])}",
            key=f"query.{n}", cli=cli, library=lib,
        ))

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
        cli = cli_insights(store, since_ms, until_ms, 3)
        lib = lib_insights(store, since_ms, until_ms, 3)
        results["imported"] = {"cli": cli, "library": lib}
        speedup = h_best / cli["best_s"]
        rows.append(row(
            "query", f"equal history ({smeta['sessions']:,} sessions / {smeta['messages']:,} messages): "
                     "`hermetry insights --json` on the imported file vs `hermes insights` on state.db",
            f"CLI {fmt_s(cli['best_s'])} · library {fmt_s(lib['best_s'])}",
            baseline=f"`hermes insights` {fmt_s(h_best)} (peak RSS {fmt_mb(h_rss)})",
            ratio=f"{speedup:.1f}× faster (CLI vs CLI)",
            target=f"≥ {TARGET_VS_HERMES:.0f}× faster", ok=speedup >= TARGET_VS_HERMES,
            memory=f"peak RSS {fmt_mb(cli['peak_rss_mb'])}", key="query.vs_hermes",
        ))
    notes = [
        "Histories are generated with the store's `write_events` in transactions of 50,000 events "
        "(sessions of 1–7 turns, 1–4 API calls per turn, a tool call between consecutive API calls).",
        f"`hermes insights --days {days}` and `hermetry insights --since/--until` both cover the whole history.",
    ]
    return {"rows": rows, "notes": notes, "raw": results}
