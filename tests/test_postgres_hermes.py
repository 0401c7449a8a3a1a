"""A fleet of real ``hermes`` processes (hermes-agent 0.19.0) recording into one PostgreSQL.

Ground truth is what the scripted model server sent: every reply it served and that reply's
usage. Each "host" is its own Hermes home with its own ``HERMETRY_HOST`` and its own spool.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import engine_missing
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome, hermes_executable
from hermetry.testing.postgres import EngineMissing, PostgresServer
from pg_helpers import pg_rows

pytestmark = pytest.mark.hermes

KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _usage(i: int) -> ScriptedUsage:
    return ScriptedUsage(prompt_tokens=1000 + 17 * i, completion_tokens=40 + i, cached_tokens=300 + i,
                         cache_write_tokens=i, reasoning_tokens=i % 5)


def _truth(served: list[Any]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for s in served:
        usage = s.reply.usage.hermes_usage()
        for kind in KINDS:
            totals[kind] += usage[kind]
    return {"calls": len(served), **{k: totals[k] for k in KINDS}}


def _stored(url: str) -> dict[str, int]:
    row = pg_rows(url, "SELECT COUNT(*) AS calls, "
                       + ", ".join(f"SUM({k})::bigint AS {k}" for k in KINDS) + " FROM api_calls")[0]
    return {k: int(v or 0) for k, v in row.items()}


def _sync(home: HermesHome, url: str, host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", "sync"], capture_output=True, text=True,
                          env=home.env(HERMETRY_DB=url, HERMETRY_HOST=host), timeout=120)


def test_several_hosts_one_database_totals_exact(tmp_path: Path, pg_server: Any) -> None:
    url = pg_server.create_database()
    hosts = ("gw-1", "cron-1", "api-1")
    runs_per_host = 2
    script = [ScriptedReply(content=f"answer {i}", usage=_usage(i)) for i in range(len(hosts) * runs_per_host)]
    with ScriptedServer(script) as srv:
        homes = {h: HermesHome(tmp_path / h, srv.base_url) for h in hosts}
        for _ in range(runs_per_host):  # the hosts run at the same time
            procs = {
                h: subprocess.Popen(
                    [hermes_executable(), "-z", f"hello from {h}", "--provider", "custom", "-m", home.model],
                    env=home.env(HERMETRY_DB=url, HERMETRY_HOST=h), cwd=home.root, text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                for h, home in homes.items()
            }
            for h, p in procs.items():
                out, err = p.communicate(timeout=240)
                assert p.returncode == 0, (h, err)
                assert "answer" in out
        served = list(srv.served)
    # whatever a process could not forward before it exited is forwarded by `hermetry sync`
    for h, home in homes.items():
        assert _sync(home, url, h).returncode == 0
    assert len(served) == len(script)
    assert _stored(url) == _truth(served)
    by_host = pg_rows(url, "SELECT s.host, COUNT(DISTINCT s.session_id) AS sessions, COUNT(a.*) AS calls "
                           "FROM sessions s JOIN api_calls a ON a.session_id = s.session_id "
                           "GROUP BY s.host ORDER BY s.host")
    assert by_host == [{"host": h, "sessions": runs_per_host, "calls": runs_per_host} for h in sorted(hosts)]
    # every row carries its host, and each session's rows the same one
    mixed = pg_rows(url, "SELECT COUNT(*) AS n FROM api_calls a JOIN sessions s USING (session_id) "
                         "WHERE a.host IS DISTINCT FROM s.host")
    assert mixed == [{"n": 0}]
    outcomes = pg_rows(url, "SELECT outcome, COUNT(*) AS n FROM sessions GROUP BY outcome")
    assert outcomes == [{"outcome": "completed", "n": len(script)}]
    assert not any(home.telemetry_db.exists() for home in homes.values())  # nothing written elsewhere


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except EngineMissing as exc:
        engine_missing(f"PostgreSQL not available: {exc}")
    with server:
        yield server


def test_database_stopped_mid_run_nothing_lost_after_sync(tmp_path: Path, own_pg: PostgresServer) -> None:
    url = own_pg.create_database("fleet")
    script = [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "echo hi"})],
                      usage=_usage(1), total_duration_s=0.2),
        # the second model call is slow: PostgreSQL goes away while it runs
        ScriptedReply(content="It printed hi.", usage=_usage(2), first_chunk_delay_s=2.0, total_duration_s=2.5),
        ScriptedReply(content="second run, database still down", usage=_usage(3)),
    ]
    with ScriptedServer(script) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        env = home.env(HERMETRY_DB=url, HERMETRY_HOST="edge-1")
        proc = subprocess.Popen([hermes_executable(), "-z", "run echo hi", "--provider", "custom", "-m", home.model],
                                env=env, cwd=home.root, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(srv.served) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert len(srv.served) == 2, "the second model call never started"
        own_pg.stop()
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert "It printed hi." in out
        # a whole run while the database is down: the agent is unaffected
        second = home.run("-z", "again", "--provider", "custom", "-m", home.model, env=env)
        assert second.returncode == 0, second.stderr
        assert "database still down" in second.stdout
        served = list(srv.served)

    spool = home.root / "hermetry" / "spool.db"
    assert spool.exists() and (spool.stat().st_mode & 0o777) == 0o600
    own_pg.start()
    synced = _sync(home, url, "edge-1")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert _stored(url) == _truth(served)
    tools = pg_rows(url, "SELECT tool_name, status, host FROM tool_calls")
    assert tools == [{"tool_name": "terminal", "status": "ok", "host": "edge-1"}]
    sessions = pg_rows(url, "SELECT outcome, host FROM sessions ORDER BY started_at_ms")
    assert sessions == [{"outcome": "completed", "host": "edge-1"}] * 2
    # and a second sync adds nothing
    again = _sync(home, url, "edge-1")
    assert again.returncode == 0 and "forwarded 0 events" in again.stdout
    assert _stored(url) == _truth(served)
