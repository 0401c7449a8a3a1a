"""Real broken environments around a real ``hermes -z``: the run answers exactly as without the
fault, hermetry says what is wrong in ONE line on stderr (Hermes' CLI warnings go there), and
what it could not store is counted — and that count reaches the telemetry file once it can be
written again.

The full disk and the read-only disk are real tmpfs mounts (root is needed to mount: elsewhere
these tests skip and say so; docs/reliability.md).
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hermetry.recorder.ledger import DropLedger
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.faults import MountRefused, fill, free, remount_read_only, tmpfs
from hermetry.testing.hermes import HermesHome

pytestmark = pytest.mark.hermes


def _script() -> list[ScriptedReply]:
    return [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "echo ok"})],
                      usage=ScriptedUsage(500, 20)),
        ScriptedReply(content="All done: ok.", usage=ScriptedUsage(600, 10)),
    ]


def _run(root: Path, db: Path) -> subprocess.CompletedProcess[str]:
    with ScriptedServer(_script()) as srv:
        home = HermesHome(root, srv.base_url)
        return home.oneshot("say ok", env=home.env(HERMETRY_DB=str(db)), timeout=120)


def _hermetry_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "hermetry" in line.lower()]


def _runs(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT run_id, events_written, events_dropped FROM recorder_runs "
                            "ORDER BY started_at_ms").fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], int]:
    """A run with nothing wrong: its answer, and how many events one such run records."""
    tmp = tmp_path_factory.mktemp("clean")
    db = tmp / "telemetry.db"
    result = _run(tmp / "home", db)
    assert result.returncode == 0 and "All done: ok." in result.stdout, result.stderr
    assert _hermetry_lines(result.stderr) == []
    ((_, written, dropped),) = _runs(db)
    assert written > 0 and dropped == 0
    return result, written


def _mounted(path: Path, size: str) -> Any:
    try:
        cm = tmpfs(path, size)
        cm.__enter__()
        return cm
    except MountRefused as exc:  # pragma: no cover - machines that forbid mounts
        pytest.skip(f"cannot mount a tmpfs here ({exc}); see docs/reliability.md")


def test_runs_on_a_full_disk_answer_as_usual_say_so_once_and_their_drops_reach_the_file(
        clean: tuple[subprocess.CompletedProcess[str], int], tmp_path: Path) -> None:
    base, per_run = clean
    disk = tmp_path / "disk"
    cm = _mounted(disk, "1m")
    try:
        db = disk / "telemetry.db"
        first = _run(tmp_path / "home", db)  # creates the file and its schema while there is room
        assert first.returncode == 0 and _hermetry_lines(first.stderr) == []
        fill(disk)
        for _ in range(3):
            result = _run(tmp_path / "home", db)
            assert (result.returncode, result.stdout) == (base.returncode, base.stdout)
            lines = _hermetry_lines(result.stderr)
            assert len(lines) == 1, result.stderr  # one line, not one per event
            assert lines[0].startswith("hermetry: ") and "disk is full" in lines[0], lines
            assert "Traceback" not in result.stderr
        ledger = DropLedger(db)
        waiting = ledger.pending()
        assert [r["events_dropped"] for r in waiting] == [per_run] * 3  # every event of each run counted
        assert not ledger.paths[0].exists()  # the full disk could not take it: the fallback folder did
        free(disk)
        last = _run(tmp_path / "home", db)
        assert last.returncode == 0 and _hermetry_lines(last.stderr) == []
        runs = _runs(db)
        assert [(w, d) for _, w, d in runs] == [(per_run, 0)] + [(0, per_run)] * 3 + [(per_run, 0)]
        assert ledger.pending() == []
    finally:
        cm.__exit__(None, None, None)


def test_a_read_only_telemetry_disk_is_one_line_and_counted(
        clean: tuple[subprocess.CompletedProcess[str], int], tmp_path: Path) -> None:
    base, per_run = clean
    disk = tmp_path / "ro"
    cm = _mounted(disk, "1m")
    try:
        db = disk / "telemetry.db"
        assert _run(tmp_path / "home", db).returncode == 0
        remount_read_only(disk)
        result = _run(tmp_path / "home", db)
        assert (result.returncode, result.stdout) == (base.returncode, base.stdout)
        (line,) = _hermetry_lines(result.stderr)
        assert "read-only" in line, line
        assert [r["events_dropped"] for r in DropLedger(db).pending()] == [per_run]
    finally:
        cm.__exit__(None, None, None)
        for path in DropLedger(db).paths[1:]:
            path.unlink(missing_ok=True)


@pytest.mark.parametrize("what", ["a directory", "random bytes", "a future schema"])
def test_a_file_hermetry_cannot_use_is_one_line_under_hermes_z(
        clean: tuple[subprocess.CompletedProcess[str], int], tmp_path: Path, what: str) -> None:
    base, per_run = clean
    db = tmp_path / "telemetry.db"
    if what == "a directory":
        db.mkdir()
    elif what == "random bytes":
        db.write_bytes(b"\x13\x37" * 4096)
    else:
        from hermetry.stores.sqlite_schema import SCHEMA_VERSION

        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE api_calls (x)")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
    result = _run(tmp_path / "home", db)
    assert (result.returncode, result.stdout) == (base.returncode, base.stdout)
    (line,) = _hermetry_lines(result.stderr)
    expected = {"a directory": "is a directory", "random bytes": "not a hermetry telemetry file",
                "a future schema": "newer than this hermetry"}
    assert line.startswith("hermetry: telemetry is not recorded: ") and expected[what] in line, line
    (record,) = DropLedger(db).pending()
    assert record["events_dropped"] == per_run
    for path in DropLedger(db).paths[1:]:
        path.unlink(missing_ok=True)


def test_a_gateway_says_it_once_in_hermes_log(tmp_path: Path) -> None:
    """In a gateway, the line goes to Hermes' own log (agent.log, errors.log), once for many
    requests, with one ``hermetry:`` prefix; the answers are unaffected."""
    import time

    from hermetry.testing.hermes import Gateway

    db = tmp_path / "a-directory"
    db.mkdir()
    with ScriptedServer([ScriptedReply(content=f"answer {i}", usage=ScriptedUsage(10, 2)) for i in range(3)]) as srv:
        home = HermesHome(tmp_path / "gw", srv.base_url)
        with Gateway(home, extra_env={"HERMETRY_DB": str(db)}) as gw:
            answers = [gw.chat([{"role": "user", "content": f"question {i}"}])["choices"][0]["message"]["content"]
                       for i in range(3)]
            deadline = time.monotonic() + 30
            errors = home.root / "logs" / "errors.log"
            while time.monotonic() < deadline and "telemetry is not recorded" not in (
                    errors.read_text(errors="replace") if errors.exists() else ""):
                time.sleep(0.2)
    assert answers == ["answer 0", "answer 1", "answer 2"]
    for name in ("agent.log", "errors.log"):
        lines = [line for line in (home.root / "logs" / name).read_text(errors="replace").splitlines()
                 if "telemetry is not recorded" in line]
        assert len(lines) == 1, (name, lines)
        assert "is a directory" in lines[0] and "hermetry: hermetry:" not in lines[0]
