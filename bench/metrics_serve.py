"""9 · ``hermetry metrics serve``: the cost of a pass over the telemetry file.

A synthetic history (``hermetry.testing.synthetic_history``: 30 days × 400 sessions a day, ~190k
events; ``--quick``: 7 × 100) written through ``SQLiteStore``, cached in bench/.cache. In one fresh
process (``python -m bench.metrics_serve measure DB``), best of 3 each:

* the baseline: a fold from scratch (what a pass costs at start, or after a reprice or an import),
  and the whole-history fold through the OTLP mapper that every pass did before issue 13;
* a pass with nothing new, and a pass after 100 model calls were appended (the incremental pass:
  new rows by rowid high-water mark, turns and sessions by GROUP BY).

The target (docs/prometheus.md): an incremental pass costs ≤ 5 % of a fold from scratch.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import CACHE, Options, fmt_s, log, row, run_python_json, tmpdir

TARGET_RATIO = 0.05
VERSION = 1


def history_db(days: int, per_day: int) -> Path:
    from hermetry.stores.sqlite import SQLiteStore
    from hermetry.stores.sqlite_schema import SCHEMA_VERSION
    from hermetry.testing.history import synthetic_history

    db = CACHE / f"metrics-history-v{VERSION}-s{SCHEMA_VERSION}-{days}x{per_day}.db"
    if db.exists():
        return db
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = db.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    events = synthetic_history(days=days, sessions_per_day=per_day).events
    store = SQLiteStore(tmp)
    for i in range(0, len(events), 5000):
        store.write(events[i:i + 5000], None)
    store.close()
    tmp.rename(db)
    return db


def measure(db: str) -> dict[str, Any]:
    """In this fresh process, on a scratch copy of ``db``."""
    import sqlite3

    from hermetry.analytics.events import stored_events
    from hermetry.analytics.metrics import MetricFold, metric_snapshot
    from hermetry.model.events import ApiCall
    from hermetry.sinks import genai
    from hermetry.stores.sqlite import SQLiteStore

    def best(fn: Any, reps: int = 3) -> float:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def mapper_fold() -> None:
        mapper = genai.GenAIMapper(spans=False)
        genai.Aggregator(cumulative=True, max_series=100_000).add(mapper.map(stored_events(db))[1])

    with sqlite3.connect(db) as conn:
        rows = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("sessions", "turns", "api_calls", "tool_calls")}
        sid = conn.execute("SELECT session_id FROM sessions LIMIT 1").fetchone()[0]
    full = best(lambda: metric_snapshot(db))
    mapper = best(mapper_fold)
    fold = MetricFold(db)
    fold.update()
    idle = best(fold.update, 5)
    store = SQLiteStore(db)
    appended: list[float] = []
    try:
        for k in range(5):
            store.write([ApiCall(f"bench-{time.time_ns()}-{k}-{i}", 0, sid, None, 1.7e12 + i, 100.0, "ok",
                                 model="m", provider="openai", input_tokens=10, output_tokens=2)
                         for i in range(100)], None)
            t0 = time.perf_counter()
            snap = fold.update()
            appended.append(time.perf_counter() - t0)
            assert snap.events == 100 and not snap.full
    finally:
        store.close()
    return {"rows": rows, "full_s": full, "mapper_fold_s": mapper, "idle_pass_s": idle,
            "pass_after_100_s": min(appended)}


def run(opts: Options) -> dict[str, Any]:
    days, per_day = (7, 100) if opts.quick else (30, 400)
    source = history_db(days, per_day)
    scratch = tmpdir("metrics") / "telemetry.db"
    shutil.copy(source, scratch)
    out, _ = run_python_json(["-m", "bench.metrics_serve", "measure", str(scratch)])
    n = out["rows"]
    size = (f"{n['api_calls']:,} model calls, {n['tool_calls']:,} tool calls, {n['turns']:,} turns, "
            f"{n['sessions']:,} sessions")
    ratio = out["pass_after_100_s"] / out["full_s"]
    log(f"metrics: full {out['full_s']:.2f} s, old mapper fold {out['mapper_fold_s']:.2f} s, idle pass "
        f"{out['idle_pass_s']:.3f} s, pass after +100 calls {out['pass_after_100_s']:.3f} s")
    rows = [
        row("metrics", f"`metrics serve`: a pass after 100 new model calls ({size})",
            f"{fmt_s(out['pass_after_100_s'])} (nothing new: {fmt_s(out['idle_pass_s'])})",
            baseline=f"fold from scratch {fmt_s(out['full_s'])}; the whole-history fold every pass did before "
                     f"{fmt_s(out['mapper_fold_s'])}",
            ratio=f"{ratio:.1%}", target=f"≤ {TARGET_RATIO:.0%}", ok=ratio <= TARGET_RATIO, key="metrics.pass"),
    ]
    return {"rows": rows, "notes": [], "raw": out}


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "measure":
        sys.stdout.write("\n" + json.dumps(measure(sys.argv[2])) + "\n")
        sys.exit(0)
    sys.exit("usage: python -m bench.metrics_serve measure DB (or: python -m bench --only metrics)")
