"""A canary string in every prompt, tool argument, tool output and reply, on each runtime path
of a real Hermes: it never appears anywhere in the telemetry file (nor its -wal), while the
run itself is fully recorded."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import Gateway, HermesHome

pytestmark = pytest.mark.hermes

CANARY = "CANARY-7f3a9c-do-not-store"


def _script() -> list[ScriptedReply]:
    return [
        # a tool call whose arguments carry the canary, and whose command fails printing it
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall(
            "terminal", {"command": f"echo {CANARY}; echo {CANARY} >&2; exit 3"})], usage=ScriptedUsage(500, 20)),
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": f"echo ok {CANARY}"})],
                      usage=ScriptedUsage(520, 20)),
        ScriptedReply(content=f"Here is your {CANARY} answer.", reasoning=f"thinking about {CANARY}",
                      usage=ScriptedUsage(600, 10)),
    ]


def _telemetry_bytes(db: Path) -> bytes:
    data = b""
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            data += path.read_bytes()
    return data


def _check(db: Path) -> None:
    data = _telemetry_bytes(db)
    assert data and CANARY.encode() not in data
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        tools = conn.execute("SELECT status FROM tool_calls ORDER BY started_at_ms").fetchall()
        calls = conn.execute("SELECT COUNT(*) FROM api_calls").fetchone()[0]
    finally:
        conn.close()
    assert calls >= 3 and len(tools) >= 2  # the run was recorded, only its content was not


def test_the_canary_never_reaches_the_file_from_hermes_z(tmp_path: Path) -> None:
    with ScriptedServer(_script()) as srv:
        home = HermesHome(tmp_path / "z", srv.base_url)
        result = home.oneshot(f"please handle {CANARY}", timeout=180)
    assert result.returncode == 0 and CANARY in result.stdout, result.stderr
    _check(home.telemetry_db)


def test_the_canary_never_reaches_the_file_from_hermes_chat(tmp_path: Path) -> None:
    with ScriptedServer(_script()) as srv:
        home = HermesHome(tmp_path / "chat", srv.base_url)
        result = home.chat_query(f"please handle {CANARY}", timeout=180)
    assert result.returncode == 0 and CANARY in result.stdout, result.stderr
    _check(home.telemetry_db)


def test_the_canary_never_reaches_the_file_from_the_api_server(tmp_path: Path) -> None:
    with ScriptedServer(_script()) as srv:
        home = HermesHome(tmp_path / "api", srv.base_url)
        with Gateway(home) as gw:
            answer = gw.chat([{"role": "system", "content": f"system {CANARY}"},
                              {"role": "user", "content": f"please handle {CANARY}"}])
            assert CANARY in answer["choices"][0]["message"]["content"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the gateway writes on its own schedule
                if home.telemetry_db.exists() and _count(home.telemetry_db) >= 3:
                    break
                time.sleep(0.2)
    _check(home.telemetry_db)


def _count(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM api_calls").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
