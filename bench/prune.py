"""10 · ``hermetry prune``: how fast it deletes, and what a live writer beside it sees.

On a scratch COPY of the cached query fixture (1M model calls; ``--quick``: 100k — the cached
file itself is never written), the older half of the history (``now`` = the fixture's end, the
age = half its span: ~1M raw rows at 1M) is pruned, in a fresh process each, while a writer
process (``SQLiteStore``, one model call every 0.1 s, the recorder's own 250 ms busy timeout)
writes beside it:

* ``rollups.prune`` — what ``hermetry prune --older-than`` runs (short transactions, each
  batch's share of the Prometheus series kept in the file);
* the baseline: a bare ``DELETE … WHERE started_at_ms < boundary`` of the same rows, one
  transaction per table (what a prune costs at the least, and what it did before it learned to
  let writers in — the writer's refused writes show why it no longer does).

Reported: rows/s, wall and CPU time (user + system), transactions, the longest one (the time a
writer may wait for the lock), the writer's writes refused and its worst wait.
Targets: prune wall ≤ 3× the bare delete's; longest transaction ≤ 50 ms; no write refused.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import Options, fmt_s, log, row, run_python_json, tmpdir

TARGET_RATIO = 3.0
TARGET_LONGEST_S = 0.050

_WRITER = r'''
import json, sys, time
from pathlib import Path
from hermetry.model.events import ApiCall
from hermetry.recorder.sink import SinkUnavailable
from hermetry.stores.sqlite import SQLiteStore
db, stop, at = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
store = SQLiteStore(Path(db))
store.write([], None)
print("ready", flush=True)
ok = refused = i = 0
worst = 0.0
while not stop.exists():
    i += 1
    t0 = time.perf_counter()
    try:
        store.write([ApiCall(api_request_id=f"bench-writer-{i}", attempt=0, session_id="bench-writer", turn_id=None,
                             started_at_ms=at + i, latency_ms=1.0, status="ok")], None)
        ok += 1
    except SinkUnavailable:
        refused += 1
    worst = max(worst, time.perf_counter() - t0)
    time.sleep(0.1)
store.close()
print(json.dumps({"ok": ok, "refused": refused, "worst_wait_s": worst}), flush=True)
'''


def measure(db: str, mode: str, now_ms: float, age_ms: float) -> dict[str, Any]:
    """In this fresh process: prune (or bare-delete) the copy ``db`` beside a writer process."""
    from hermetry.model.units import HOUR_MS
    from hermetry.stores import rollups
    from hermetry.stores.sqlite import connect

    stop = Path(db + ".stop")
    stop.unlink(missing_ok=True)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, db, str(stop), str(now_ms + HOUR_MS)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    conn = connect(Path(db))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        if mode == "prune":
            out = rollups.prune(conn, age_ms, now_ms=now_ms)
            rows, transactions, longest = out["rows"], out["transactions"], out["longest_transaction_s"]
        else:
            boundary = (now_ms - age_ms) // HOUR_MS * HOUR_MS
            rows, transactions, longest = {}, 0, 0.0
            for table in rollups.PRUNED_TABLES:
                t1 = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                rows[table] = conn.execute(f"DELETE FROM {table} WHERE started_at_ms < ?", (boundary,)).rowcount
                conn.execute("COMMIT")
                transactions, longest = transactions + 1, max(longest, time.perf_counter() - t1)
    finally:
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        conn.close()
        stop.touch()
        written = json.loads(writer.communicate(timeout=120)[0].strip().splitlines()[-1])
    return {"mode": mode, "rows": rows, "wall_s": wall, "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
            "transactions": transactions, "longest_transaction_s": longest, "writer": written,
            "load": os.getloadavg()}


def _copy(source: Path, to: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def run(opts: Options) -> dict[str, Any]:
    from bench._fixtures import history_db

    n = 100_000 if opts.quick else 1_000_000
    source, meta = history_db(n)
    now, age = float(meta["until_ms"]), (float(meta["until_ms"]) - float(meta["since_ms"])) / 2
    scratch = tmpdir("prune") / "telemetry.db"
    results = {}
    for mode in ("prune", "delete"):
        _copy(source, scratch)
        try:
            results[mode], _ = run_python_json(["-m", "bench.prune", "measure", str(scratch), mode, str(now), str(age)],
                                               timeout=1800)
        finally:
            for p in (scratch, scratch.with_name(scratch.name + "-wal"), scratch.with_name(scratch.name + "-shm")):
                p.unlink(missing_ok=True)
    p, d = results["prune"], results["delete"]
    total = sum(p["rows"].values())
    assert total == sum(d["rows"].values()), (p["rows"], d["rows"])
    ratio = p["wall_s"] / d["wall_s"]
    for r in (p, d):
        log(f"prune: {r['mode']}: {sum(r['rows'].values()):,} rows in {r['wall_s']:.1f} s (cpu {r['cpu_s']:.1f} s), "
            f"{r['transactions']} transactions, longest {r['longest_transaction_s']:.3f} s; writer "
            f"{r['writer']['ok']} written, {r['writer']['refused']} refused, worst wait {r['writer']['worst_wait_s']:.3f} s; "
            f"load {r['load'][0]:.1f}")
    size = f"{total:,} raw rows ({n:,}-call history, its older half)"
    w = p["writer"]
    rows = [
        row("prune", f"`hermetry prune`: {size}",
            f"{fmt_s(p['wall_s'])} ({total / p['wall_s']:,.0f} rows/s; CPU {fmt_s(p['cpu_s'])})",
            baseline=f"bare DELETE, a transaction per table: {fmt_s(d['wall_s'])} (CPU {fmt_s(d['cpu_s'])})",
            ratio=f"{ratio:.2f}×", target=f"≤ {TARGET_RATIO:.0f}×", ok=ratio <= TARGET_RATIO, key="prune.wall"),
        row("prune", "prune: its longest write transaction (a live writer's wait for the lock)",
            f"{fmt_s(p['longest_transaction_s'])} ({p['transactions']:,} transactions)",
            baseline=f"bare DELETE: {fmt_s(d['longest_transaction_s'])}",
            target=f"≤ {TARGET_LONGEST_S * 1000:.0f} ms", ok=p["longest_transaction_s"] <= TARGET_LONGEST_S,
            key="prune.longest"),
        row("prune", "prune: a writer beside it (one model call / 0.1 s, 250 ms busy timeout)",
            f"{w['refused']} of {w['ok'] + w['refused']:,} writes refused, worst wait {fmt_s(w['worst_wait_s'])}",
            baseline=f"bare DELETE: {d['writer']['refused']} of {d['writer']['ok'] + d['writer']['refused']:,} refused, "
                     f"worst wait {fmt_s(d['writer']['worst_wait_s'])}",
            target="0 refused", ok=w["refused"] == 0, key="prune.writer"),
    ]
    notes = [f"load average at the end: prune {p['load'][0]:.1f}, bare DELETE {d['load'][0]:.1f}"]
    return {"rows": rows, "notes": notes, "raw": results}


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "measure":
        sys.stdout.write("\n" + json.dumps(measure(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])))
                         + "\n")
        sys.exit(0)
    sys.exit("usage: python -m bench.prune measure DB prune|delete NOW_MS AGE_MS (or: python -m bench --only prune)")
