"""The live OTLP figures agree with the store on the API-server path.

Hermes 0.19.0's API server never ends a session; the store gives such a session its last ended
turn's outcome (model.outcomes.UNENDED_RUN_SESSION_TYPES). A real ``hermes gateway`` with its API
server exports over OTLP while two requests are answered and one run is stopped mid-call: the
``hermetry.sessions`` the collector last received equal the store's sessions by outcome, and both
equal what the test did (two completed, one interrupted).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hermetry.testing import ScriptedReply, ScriptedServer
from hermetry.testing.hermes import Gateway, HermesHome
from hermetry.testing.otlp import OTLPReceiver

pytestmark = pytest.mark.hermes


def _live(rx: OTLPReceiver) -> dict[tuple[str, str], float]:
    """The latest cumulative value of each hermetry.sessions series (zeros left out)."""
    latest: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    for p in rx.points():
        if p["metric"] != "hermetry.sessions":
            continue
        key = tuple(sorted(p["attributes"].items()))
        if key not in latest or p["time_ns"] >= latest[key]["time_ns"]:
            latest[key] = p
    out: dict[tuple[str, str], float] = {}
    for p in latest.values():
        a = p["attributes"]
        k = (a["hermetry.session.outcome"], a.get("hermetry.source", ""))
        out[k] = out.get(k, 0) + p["value"]
    return {k: v for k, v in out.items() if v}


def _stored(db_rows: Any, db: Path) -> dict[tuple[str, str], float]:
    rows = db_rows(db, "SELECT outcome, source, COUNT(*) AS n FROM sessions WHERE outcome IS NOT NULL "
                       "GROUP BY outcome, source")
    return {(r["outcome"], r["source"] or ""): r["n"] for r in rows}


def test_live_session_counts_equal_the_stores_on_the_api_server(tmp_path: Path, db_rows: Any) -> None:
    script = [ScriptedReply(content="first answer"), ScriptedReply(content="second answer"),
              ScriptedReply(content="never finishes", first_chunk_delay_s=60, total_duration_s=60)]
    with OTLPReceiver() as rx, ScriptedServer(script) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        otlp = {"HERMETRY_OTLP": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}
        with Gateway(home, extra_env=otlp) as gw:
            for text in ("first", "second"):
                reply = gw.chat([{"role": "user", "content": text}])
                assert reply["choices"][0]["message"]["content"].endswith("answer")
            run_id = gw.start_run("do something slow")
            deadline = time.monotonic() + 60
            while len(srv.served) < 3:  # the slow call has reached the model
                assert time.monotonic() < deadline, "the run never reached the model"
                time.sleep(0.1)
            gw.stop_run(run_id)
            truth = {("completed", "api_server"): 2, ("interrupted", "api_server"): 1}
            deadline = time.monotonic() + 60
            while not (_stored(db_rows, home.telemetry_db) == truth and _live(rx) == truth):
                assert time.monotonic() < deadline, (_stored(db_rows, home.telemetry_db), _live(rx))
                time.sleep(0.2)
    # no end reason ever arrived from Hermes: the outcome is the last turn's, live and stored alike
    assert not db_rows(home.telemetry_db, "SELECT 1 FROM sessions WHERE end_reason IS NOT NULL")
