"""A real Prometheus scrapes ``metrics serve`` while the store reclassifies outcomes and the file breaks.

Outcome counts are gauges (``hermetry_sessions``, ``hermetry_turns``): a reclassification moves a
session from one outcome to another, and Prometheus must never see a *counter* step down (no
``resets()``). A file that becomes unreadable shows as ``hermetry_store_up == 0``. Ground truth is
what the test wrote into the store.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from hermetry.model.events import (
    ApiCall,
    CronRunFinished,
    Event,
    SessionEnded,
    SessionReopened,
    SessionStarted,
    TurnEnded,
    TurnStarted,
)
from hermetry.stores.sqlite import SQLiteStore
from test_prometheus import Prometheus, prometheus_binary

T0 = float(int(time.time() - 3600) * 1000)  # recent: the reconciler leaves it alone
CRON = "cron_job9_20261201_000000"


def _write(db: Path, events: list[Event]) -> None:
    store = SQLiteStore(db)
    try:
        store.write(events, None)
    finally:
        store.close()


def _call(req: str, sid: str, tid: str, at: float) -> ApiCall:
    return ApiCall(req, 0, sid, tid, at, 250.0, "ok", model="m-1", provider="openai", input_tokens=100,
                   output_tokens=10)


def _session(sid: str, source: str, kind: str, at: float, end_reason: str) -> list[Event]:
    return [SessionStarted(sid, at, source=source, session_type=kind),
            TurnStarted(f"{sid}-t", sid, at + 1), _call(f"{sid}-r", sid, f"{sid}-t", at + 2),
            TurnEnded(f"{sid}-t", sid, at + 500, "completed"), SessionEnded(sid, at + 600, end_reason, "completed")]


def _metadata_type(p: Prometheus, name: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{p.port}/api/v1/metadata?metric={name}", timeout=10) as resp:
        return str(json.loads(resp.read())["data"][name][0]["type"])


def test_reclassified_outcomes_move_between_gauges_and_no_counter_resets(tmp_path: Path) -> None:
    from hermetry.surfaces.metrics import MetricsServer

    prometheus_binary()
    db = tmp_path / "telemetry.db"
    _write(db, _session("chat", "cli", "interactive", T0, "cli_close") + _session(CRON, "cron", "cron", T0 + 1000,
                                                                                   "cron_complete"))
    server = MetricsServer(db, port=0)
    try:
        with Prometheus(tmp_path / "prometheus", f"127.0.0.1:{server.port}") as p:
            completed = 'sum(hermetry_sessions{hermetry_session_outcome="completed"})'
            p.wait_for(f"{completed} == 2")
            p.wait_for("count_over_time(hermetry_store_up[1m]) > 2")  # a few scrapes before the revision
            # the store revises: Hermes' cron status says the run failed; the chat is resumed and
            # its next turn runs; more calls are appended (counters must only grow)
            _write(db, [CronRunFinished("job9", T0 + 2000, "error"), SessionReopened("chat", T0 + 3000),
                        TurnStarted("chat-t2", "chat", T0 + 3001), _call("chat-r2", "chat", "chat-t2", T0 + 3002)])
            p.wait_for('sum(hermetry_sessions{hermetry_session_outcome="errored", hermetry_outcome_class="failure"}) '
                       "== 1")
            p.wait_for(f"{completed} == 0")
            p.wait_for("sum(hermetry_api_calls_total) == 3")
            p.wait_for("count_over_time(hermetry_store_up[1m]) > 6")  # a few scrapes after it
            assert p.value(f"max_over_time({completed}[5m:1s])") == 2  # it did step down …
            assert _metadata_type(p, "hermetry_sessions") == "gauge"  # … as a gauge
            assert _metadata_type(p, "hermetry_turns") == "gauge"
            # … and no counter (nor histogram bucket, count or sum) ever reset
            with urllib.request.urlopen(f"http://127.0.0.1:{p.port}/api/v1/label/__name__/values", timeout=10) as r:
                names = json.loads(r.read())["data"]
            counters = [n for n in names if n.startswith(("hermetry_", "gen_ai_"))
                        and n.endswith(("_total", "_bucket", "_count", "_sum"))]
            assert "hermetry_api_calls_total" in counters and "hermetry_turn_duration_seconds_bucket" in counters
            assert not [n for n in counters if n.startswith(("hermetry_sessions", "hermetry_turns"))]
            for name in counters:  # resets() drops the name: one family at a time
                assert p.value(f"sum(resets({name}[5m]))") == 0, name
            assert p.value("hermetry_store_up") == 1
            # the file breaks: Prometheus shows it, the figures stay the last good ones
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            db.write_bytes(b"not a telemetry file" * 500)
            p.wait_for("hermetry_store_up == 0")
            assert p.value("sum(hermetry_api_calls_total)") == 3
    finally:
        server.close()
