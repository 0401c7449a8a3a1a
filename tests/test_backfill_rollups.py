"""A re-import that moves or removes imported rows keeps the rollups equal to the raw rows.

Hermes rewrites a session's messages when it compacts it (``SessionDB.replace_messages``); the
importer then drops the session's earlier imported rows and writes new ones. An hour that held
old rows but gets no new ones must be rebuilt too, or its (clean) rollup keeps counting rows that
are gone.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hermetry.sources.backfill import import_state_db
from hermetry.stores import rollups
from hermetry.stores.sqlite import connect, migrate

H = 3600.0


@pytest.fixture
def SessionDB(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hermes"))
    (tmp_path / "hermes").mkdir()
    from hermes_state import SessionDB as _SessionDB
    return _SessionDB


def _counts(conn: sqlite3.Connection, since_ms: float, until_ms: float) -> dict[str, tuple[int, int]]:
    """(through the rollup read path, straight from the raw rows) per kind, over whole hours."""
    p = rollups.plan(conn, since_ms, until_ms)
    assert p.hours_from_rollups > 0  # the rollups are really read, not only raw ranges
    out = {}
    for kind, count in ((rollups.TURNS, "turns"), (rollups.API, "calls"), (rollups.TOOLS, "calls")):
        via = sum(g.counts[count] for g in rollups.read(conn, kind, p, measures=False).values())
        column = "COALESCE(call_count, 1)" if kind is rollups.API else "1"
        raw = conn.execute(f"SELECT COALESCE(SUM({column}), 0) FROM {kind.table} "
                           "WHERE started_at_ms >= ? AND started_at_ms < ?", (since_ms, until_ms)).fetchone()[0]
        out[kind.name] = (via, raw)
    return out


def test_reimport_that_moves_rows_to_other_hours_rebuilds_the_hours_they_left(SessionDB: Any, tmp_path: Path) -> None:
    state = tmp_path / "hermes" / "state.db"
    db = SessionDB(state)
    db.create_session("s1", "cli", model="gpt-4o")
    t0 = float(db.get_session("s1")["started_at"]) - 30 * H  # closed hours: rebuildable
    with sqlite3.connect(state) as c:
        c.execute("UPDATE sessions SET started_at = ? WHERE id = 's1'", (t0,))
    db.append_message("s1", "user", "hi", timestamp=t0 + 3)
    db.append_message("s1", "assistant", "hello", timestamp=t0 + 4)
    db.append_message("s1", "user", "again", timestamp=t0 + 1.2 * H)
    db.append_message("s1", "assistant", "ok", timestamp=t0 + 1.2 * H + 2)
    db.update_token_counts("s1", input_tokens=100, output_tokens=10, model="gpt-4o", api_call_count=2)
    db.end_session("s1", "cli_close")
    store = tmp_path / "telemetry.db"
    import_state_db(state, store)
    conn = connect(store)
    migrate(conn)
    rollups.rebuild(conn)
    since, until = (int(t0 // H) - 5) * H * 1000, (int(t0 // H) + 10) * H * 1000
    first = _counts(conn, since, until)
    assert first["turns"] == (2, 2)  # the two exchanges Hermes stored
    # Hermes compacts the session: both exchanges become one, three hours later
    db.replace_messages("s1", [{"role": "user", "content": "summary", "timestamp": t0 + 3 * H},
                               {"role": "assistant", "content": "ok", "timestamp": t0 + 3 * H + 1}])
    assert import_state_db(state, store).sessions_changed == 1
    rollups.rebuild(conn)
    after = _counts(conn, since, until)
    assert after["turns"] == (1, 1)
    for name, (via, raw) in after.items():
        assert via == raw, name
    conn.close()
