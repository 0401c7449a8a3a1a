"""``hermetry sessions`` (text) marks imported sessions "(imported)" — and only those (review N1)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hermetry.surfaces.cli import main
from hermetry.testing.history import synthetic_history


def test_only_imported_sessions_say_imported(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one line per row, the session id on it
    db = synthetic_history(seed=5, days=2, sessions_per_day=4).record(tmp_path / "telemetry.db")
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT session_id FROM sessions ORDER BY started_at_ms")]
        conn.execute("UPDATE sessions SET origin = 'backfill' WHERE session_id = ?", (ids[0],))
    assert main(["--db", str(db), "sessions", "--since", "2024-12-01", "--until", "2025-02-01", "--flat"]) == 0
    out = capsys.readouterr().out
    rows = {sid: next(line for line in out.splitlines() if sid in line) for sid in ids}
    assert "(imported)" in rows[ids[0]]
    assert not [sid for sid in ids[1:] if "(imported)" in rows[sid]]
