"""Reports, the dashboard's API and exports on a telemetry file written by an OLDER hermetry.

Each file is built at schema version N by applying only the first N of
``stores/sqlite_schema.MIGRATIONS`` and writing rows with that version's columns (the ground
truth: one session, two tool calls). A writable file is upgraded in place — what the recorder
does at the next Hermes run — and read; one the reader cannot write is read through an upgraded
copy and left byte for byte as it was. Never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hermetry.analytics.report import DAY_MS, Query
from hermetry.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from hermetry.surfaces.dashboard.api import DashboardApi
from hermetry.testing.history import NOW_MS

SINCE = ("--since", "2000-01-01")
STARTED_MS = NOW_MS - DAY_MS


def older_file(path: Path, version: int) -> Path:
    from hermetry.stores.sqlite import _split_sql

    conn = sqlite3.connect(path, isolation_level=None)
    for v in range(version):
        for statement in _split_sql(MIGRATIONS[v]):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={version}")
    conn.execute("INSERT INTO sessions (session_id, source, started_at_ms, origin) VALUES ('old', 'cli', ?, 'live')",
                 (STARTED_MS,))
    for i, status in enumerate(("ok", "error")):
        conn.execute("INSERT INTO tool_calls (tool_call_id, session_id, tool_name, started_at_ms, latency_ms, status) "
                     "VALUES (?, 'old', 'terminal', ?, 5.0, ?)", (f"c{i}", STARTED_MS + 1000 + i, status))
    conn.close()
    return path


def cli(*argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hermetry.surfaces.cli", *argv]
    if user == "nobody" and os.geteuid() == 0:
        if not shutil.which("setpriv"):  # pragma: no cover
            pytest.skip("needs setpriv to read as another user")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": "/tmp"})


def user_version(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def check_reads(db: Path, user: str | None = None) -> None:
    """Every reading command answers from the file's own rows, with nothing on stderr."""
    for argv in (("insights", *SINCE, "--json"), ("sessions", *SINCE, "--json"), ("show", "old", "--json"),
                 ("export", "--table", "tool_calls", "--format", "jsonl")):
        done = cli("--db", str(db), *argv, user=user)
        assert done.returncode == 0 and done.stderr == "", (argv, done.stderr)
        assert "Traceback" not in done.stdout
        if argv[0] == "insights":
            report = json.loads(done.stdout)
            (tool,) = report["tools"]
            assert (tool["tool_name"], tool["calls"], tool["failures"]) == ("terminal", 2, 1)
        elif argv[0] == "sessions":
            assert [s["session_id"] for s in json.loads(done.stdout)["sessions"]] == ["old"]
        elif argv[0] == "show":
            assert json.loads(done.stdout)["session"]["session_id"] == "old"
        else:
            rows = [json.loads(line) for line in done.stdout.splitlines()]
            assert sorted((r["tool_call_id"], r["status"]) for r in rows) == [("c0", "ok"), ("c1", "error")]


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_a_writable_older_file_is_upgraded_in_place_and_read(tmp_path: Path, version: int) -> None:
    db = older_file(tmp_path / "telemetry.db", version)
    mode = db.stat().st_mode & 0o777
    check_reads(db)
    assert user_version(db) == SCHEMA_VERSION  # upgraded once, as the recorder would have
    assert db.stat().st_mode & 0o777 == mode
    daily = DashboardApi(db).handle("tool-daily", {"since": "2000-01-01"})
    (tool,) = daily["tools"]
    assert (tool["calls"], tool["failures"]) == (2, 1)


@pytest.mark.parametrize("version", [1, SCHEMA_VERSION - 1])
def test_an_older_file_the_reader_cannot_write_is_read_and_left_unchanged(version: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="hermetry-old-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        db = older_file(base / "telemetry.db", version)
        os.chmod(db, 0o444)
        os.chmod(base, 0o555)
        before = hashlib.sha256(db.read_bytes()).hexdigest()
        check_reads(db, user="nobody")
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before
        assert sorted(p.name for p in base.iterdir()) == ["telemetry.db"]
    finally:
        os.chmod(base, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_the_dashboard_api_reads_an_older_file(tmp_path: Path) -> None:
    from hermetry.analytics.series import tool_daily

    db = older_file(tmp_path / "telemetry.db", 4)
    result = tool_daily(db, Query(since_ms=STARTED_MS - DAY_MS, until_ms=NOW_MS, filters={}, group_by=()))
    assert [(t["tool_name"], t["calls"], t["failures"]) for t in result["tools"]] == [("terminal", 2, 1)]
