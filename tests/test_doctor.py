"""``hermetry doctor``: which file, its schema, writable or not and why, plugin, versions, drops,
prices, config problems — and what to do. Read-only: it never creates or changes the file."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hermetry.model.events import ApiCall
from hermetry.recorder.ledger import DropLedger
from hermetry.recorder.recorder import Recorder
from hermetry.stores.sqlite import SQLiteStore
from hermetry.stores.sqlite_schema import SCHEMA_VERSION
from hermetry.surfaces import cli
from hermetry.surfaces.doctor import diagnose


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = cli.main([*argv, "doctor", "--json"])
    out, err = capsys.readouterr()
    assert err == ""
    return code, json.loads(out)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hermes"
    home.mkdir()
    (home / "config.yaml").write_text("plugins:\n  enabled: [hermetry]\n")
    monkeypatch.setenv("HERMES_HOME", str(home))
    from hermetry.recorder import notice

    notice.reset()
    return home


def test_a_healthy_setup_before_anything_was_recorded(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, r = doctor(capsys)
    f = r["telemetry_file"]
    assert code == 0 and r["ok"] and r["schema"] == "hermetry.doctor.v1"
    assert f["path"] == str(home / "hermetry" / "telemetry.db") and f["exists"] is False and f["writable"]
    assert r["plugin"]["enabled"] and r["hermes"]["version"] == "0.19.0"
    assert r["drops"]["events_dropped"] == 0 and r["prices"]["status"] == "none"
    assert not (home / "hermetry").exists()  # doctor created nothing


def test_drops_in_the_file_and_in_the_fallback_ledger_are_counted(home: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    db = home / "hermetry" / "telemetry.db"
    rec = Recorder(lambda: SQLiteStore(db), register_atexit=False, flush_interval_s=0.01)
    rec.record(ApiCall("bad", 0, "s1", None, 1.0, 1.0, None))  # type: ignore[arg-type]  # rejected: dropped
    rec.record(ApiCall("good", 0, "s1", None, 2.0, 1.0, "ok"))
    deadline = 50
    while not rec.flush(1.0) and deadline:
        deadline -= 1
    rec.close()
    DropLedger(db).save({"run_id": "dead-run", "host": "h", "pid": 4242, "events_dropped": 5,
                         "last_error": "the disk is full"})
    before = db.read_bytes()
    assert "events are being dropped" in capsys.readouterr().err  # the recorder said so, once
    code, r = doctor(capsys)
    d = r["drops"]
    assert code == 1 and not r["ok"]
    assert d["events_dropped"] == 1 + 5 and d["runs_with_drops"] == 1
    assert d["recent"][0]["events_dropped"] == 1 and d["recent"][0]["pid"] == os.getpid()
    assert [(x["run_id"], x["events_dropped"]) for x in d["not_yet_in_file"]] == [("dead-run", 5)]
    assert any("5 dropped events" in p["what"] for p in r["problems"])
    assert db.read_bytes() == before


@pytest.mark.parametrize("case", ["future schema", "not a database", "a folder"])
def test_a_file_that_cannot_be_written_says_why_and_what_to_do(home: Path, capsys: pytest.CaptureFixture[str],
                                                              case: str) -> None:
    db = home / "hermetry" / "telemetry.db"
    db.parent.mkdir()
    if case == "future schema":
        conn = sqlite3.connect(db)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        conn.execute("CREATE TABLE api_calls (x)")
        conn.commit()
        conn.close()
    elif case == "not a database":
        db.write_bytes(b"\x00garbage" * 1000)
    else:
        db.mkdir()
    code, r = doctor(capsys)
    f = r["telemetry_file"]
    assert code == 1 and f["writable"] is False and f["not_writable_because"]
    (problem,) = r["problems"]
    assert problem["do"]
    expected = {"future schema": "newer", "not a database": "not a hermetry telemetry file", "a folder": "directory"}
    assert expected[case] in problem["what"]
    if case == "future schema":
        assert f["schema_version"] == SCHEMA_VERSION + 1 and "upgrade" in problem["do"]


def test_plugin_prices_and_config_problems(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (home / "config.yaml").write_text("plugins:\n  enabled: []\nhermetry:\n  price_file: prices.yaml\n  colour: 1\n")
    (home / "prices.yaml").write_bytes(b"\xff\xfe not yaml")
    code, r = doctor(capsys)
    whats = " | ".join(p["what"] for p in r["problems"])
    assert code == 1 and r["plugin"]["enabled"] is False
    assert "Hermes does not load hermetry" in whats and "price file" in whats and "hermetry.colour" in whats
    (load,) = [p for p in r["problems"] if p["what"].startswith("Hermes does not load")]
    assert load["do"].endswith("hermes plugins enable hermetry --no-allow-tool-override")  # non-interactive
    assert r["prices"]["status"] == "error"
    monkeypatch.setenv("HERMES_SAFE_MODE", "1")
    assert "HERMES_SAFE_MODE" in diagnose()["plugin"]["why"]


def test_the_text_view_fits_80_columns_and_ends_with_what_to_do(home: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERMETRY_DB", "/nonexistent-hermetry-test/t.db")
    (home / "config.yaml").write_text("plugins:\n  enabled: [hermetry]\n")
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert code == 0, out  # a file that does not exist yet, in a folder that can be created: fine
    assert "chosen by $HERMETRY_DB" in out and "ok: hermetry is recording" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_doctor_says_when_the_rollups_are_behind_and_what_finishes_them(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Review m21: after an upgrade (sessions rollup pending) or writes nobody rebuilt yet, reports
    are slower for a reason the operator should see — and `hermetry rollup` is the cure."""
    from hermetry.model.units import HOUR_MS
    from hermetry.stores import rollups
    from hermetry.stores.sqlite import connect
    from hermetry.testing.history import synthetic_history

    db = home / "hermetry" / "telemetry.db"
    db.parent.mkdir()
    history = synthetic_history(seed=5, days=2, sessions_per_day=4)
    history.record(db)
    hours = {int(e.started_at_ms // HOUR_MS) for e in history.events
             if isinstance(e, ApiCall) and e.started_at_ms is not None}
    _, r = doctor(capsys)
    assert r["rollups"]["dirty_hours"] == len(hours)  # every hour written, none rebuilt yet
    assert cli.main(["rollup"]) == 0
    capsys.readouterr()
    _, r = doctor(capsys)
    assert r["rollups"] == {"dirty_hours": 0, "sessions_rollup_pending_from": None}
    cli.main(["doctor"])
    assert "rollups         up to date" in capsys.readouterr().out
    conn = connect(db)
    conn.execute("INSERT INTO rollup_meta (key, value) VALUES (?, NULL)", (rollups.SESSIONS_PENDING,))
    conn.close()
    _, r = doctor(capsys)
    assert r["rollups"]["sessions_rollup_pending_from"] == "the first session"
    cli.main(["doctor"])
    text = capsys.readouterr().out
    assert "sessions rollup still being built" in text and "`hermetry rollup`" in text
    block = text[text.index("rollups "):text.index("prices ")].splitlines()
    assert len(block) == 2 and max(len(line) for line in block) <= 80  # the file's own path may be longer
