"""5 · Import scale: a 10,000-session, ~400,000-message Hermes ``state.db`` into a fresh telemetry file.

``hermetry.sources.backfill.import_state_db(state_db, store)`` runs once in a fresh process
(time of the call; the process's peak RSS from ``wait4``). The result is kept as
``bench/.cache/hermes-home-N-v*/imported.db`` so the query benchmark can compare
``hermetry insights`` on it with ``hermes insights`` on the state.db. A second import of the
same file into the same store (nothing changed: every session skipped) shows the incremental
cost.
"""

from __future__ import annotations

import json
from typing import Any

from bench._common import Options, fmt_mb, fmt_s, log, row, run_python_json
from bench._fixtures import state_db

TARGET_S = 30.0


def run(opts: Options) -> dict[str, Any]:
    n_sessions = 1_000 if opts.quick else 10_000
    state, meta = state_db(n_sessions)
    store = state.parent / "imported.db"
    for suffix in ("", "-wal", "-shm"):
        store.with_name(store.name + suffix).unlink(missing_ok=True)
    (state.parent / "imported.json").unlink(missing_ok=True)
    log(f"import: {meta['sessions']:,} sessions / {meta['messages']:,} messages ({state.stat().st_size / 2**20:.0f} MB)")
    out, child = run_python_json(["-m", "bench._workers", "import-state-db", str(state), str(store)], timeout=1800)
    label = f"import a {meta['sessions']:,}-session / {meta['messages']:,}-message state.db (fresh store)"
    if "skipped" in out:
        log(f"import: skipped ({out['skipped']})")
        return {"rows": [row("import", label, "skipped: the backfill importer is not available",
                             target=f"≤ {TARGET_S:.0f} s", ok=None, key="import.full", skipped=out["skipped"])],
                "notes": [f"importer unavailable: {out['skipped']}"], "raw": out}
    log(f"import: {out['seconds']:.2f} s, peak RSS {child.peak_rss_mb:.0f} MB; result {out['result']}")
    again, child2 = run_python_json(["-m", "bench._workers", "import-state-db", str(state), str(store)], timeout=1800)
    log(f"import: again (unchanged) {again['seconds']:.2f} s")
    (state.parent / "imported.json").write_text(json.dumps(out))
    res = out["result"]
    rate = meta["messages"] / out["seconds"]
    rows = [
        row("import", label, fmt_s(out["seconds"]),
            baseline=f"{rate:,.0f} messages/s · {meta['sessions'] / out['seconds']:,.0f} sessions/s",
            ratio=f"re-import, nothing changed: {fmt_s(again['seconds'])}",
            target=f"≤ {TARGET_S:.0f} s", ok=out["seconds"] <= TARGET_S,
            memory=f"peak RSS {fmt_mb(child.peak_rss_mb)}", key="import.full", first=out, again=again),
    ]
    notes = [
        "Import result: " + ", ".join(f"{k}={v}" for k, v in res.items() if isinstance(v, int | float) and not isinstance(v, bool)),
        f"state.db built with Hermes' own SessionDB in {meta.get('generation_seconds')} s "
        f"({meta.get('bytes', 0) / 2**20:.0f} MB).",
    ]
    return {"rows": rows, "notes": notes, "raw": {"first": out, "again": again, "meta": meta,
                                                   "peak_rss_mb": [child.peak_rss_mb, child2.peak_rss_mb]}}
