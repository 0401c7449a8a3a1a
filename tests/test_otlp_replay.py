"""``hermetry export --otlp``: recorded and imported history replayed to a collector.

One real ``hermes -z`` run captured live, one run by a Hermes without hermetry imported from its
``state.db`` — both sent by the real CLI to an OTLP/HTTP receiver. Token figures are checked against
the usage the scripted server sent.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome, free_port
from hermetry.testing.otlp import OTLPReceiver

pytestmark = pytest.mark.hermes

LIVE = [ScriptedUsage(prompt_tokens=1234, completion_tokens=56, cached_tokens=200),
        ScriptedUsage(prompt_tokens=1400, completion_tokens=21, cached_tokens=1100)]
IMPORTED = ScriptedUsage(prompt_tokens=900, completion_tokens=40)


def _cli(db: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HermesHome]:
    root = tmp_path_factory.mktemp("replay")
    db = root / "telemetry.db"
    script = [ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "echo hi"})],
                            usage=LIVE[0]),
              ScriptedReply(content="done", usage=LIVE[1])]
    with ScriptedServer(script) as srv:
        live = HermesHome(root / "live", srv.base_url)
        assert live.oneshot("run it", env=live.env(HERMETRY_DB=str(db))).returncode == 0
    with ScriptedServer([ScriptedReply(content="old answer", usage=IMPORTED)]) as srv:
        old = HermesHome(root / "old", srv.base_url, plugin=False)
        assert old.oneshot("an old question").returncode == 0
    imported = _cli(db, "import", "--hermes-home", str(old.root), env=old.env())
    assert imported.returncode == 0, imported.stderr
    return db, old


def test_recorded_and_imported_history_is_replayed(history: tuple[Path, HermesHome], db_rows: Any) -> None:
    db, home = history
    assert {r["origin"] for r in db_rows(db, "SELECT origin FROM sessions")} == {"live", "backfill"}
    with OTLPReceiver() as rx:
        started_ns = time.time_ns()
        out = _cli(db, "export", "--otlp", env=home.env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint))
        assert out.returncode == 0, out.stderr
        spans, points = rx.spans(), rx.points()
    assert "spans and" in out.stderr and "not delivered" not in out.stderr

    turns = [s for s in spans if s["name"] == "invoke_agent hermes"]
    assert len(turns) == 2
    origins = sorted(s["attributes"].get("hermetry.origin", "live") for s in turns)
    assert origins == ["backfill", "live"]
    live_turn = next(s for s in turns if "hermetry.origin" not in s["attributes"])
    children = [s for s in spans if s["parent_span_id"] == live_turn["span_id"]]
    assert sorted(s["name"] for s in children) == ["chat scripted-model", "chat scripted-model",
                                                   "execute_tool terminal"]
    assert all(s["trace_id"] == live_turn["trace_id"] for s in children)
    # the replay keeps the events' own times: nothing is stamped with the export's time
    assert all(s["end_ns"] < started_ns for s in spans)
    assert all(p["time_ns"] < started_ns for p in points)

    def final(metric: str, **attrs: Any) -> float:
        matching = [p for p in points if p["metric"] == metric
                    and all(p["attributes"].get(k) == v for k, v in attrs.items())]
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}
        for p in matching:  # cumulative: the last point of each series carries its total
            key = tuple(sorted(p["attributes"].items()))
            if key not in latest or p["time_ns"] >= latest[key]["time_ns"]:
                latest[key] = p
        return sum(p.get("sum", p.get("value", 0)) for p in latest.values())

    # the per-operation histogram holds the live calls only: an imported row is a per-session total
    assert final("gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) == sum(
        u.prompt_tokens for u in LIVE)
    assert final("gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}) == sum(
        u.completion_tokens for u in LIVE)
    # … while the token counters hold every token, imported included
    assert final("hermetry.tokens", **{"hermetry.token.kind": "output"}) == sum(
        u.completion_tokens for u in [*LIVE, IMPORTED])
    assert final("hermetry.turns") == 2


def test_replay_to_a_dead_collector_says_so_and_fails(history: tuple[Path, HermesHome]) -> None:
    db, home = history
    started = time.monotonic()
    out = _cli(db, "export", "--otlp", env=home.env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
                                                    OTEL_EXPORTER_OTLP_TIMEOUT="1"))
    assert out.returncode == 1
    assert "not delivered" in out.stderr and "Traceback" not in out.stderr
    assert time.monotonic() - started < 120
