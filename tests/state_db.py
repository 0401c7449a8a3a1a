"""A small Hermes ``state.db`` for the import tests: written by Hermes' own ``SessionDB``."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def write_state_db(home: Path, sessions: int = 3, *, api_call_count: int = 1, ago_s: float = 0.0,
                   spread_s: float = 0.0) -> Path:
    """``home/state.db`` with ``sessions`` ended CLI sessions ``s0`` … (a question and an answer
    each; input tokens ``100 * (i + 1)``, 10 output tokens, model ``m``, cost unknown as Hermes
    records it: 0.0 with status ``unknown``). ``ago_s`` moves every time back by that many
    seconds, session ``i`` by ``i * spread_s`` more (closed hours, pruned time)."""
    from hermes_state import SessionDB

    home.mkdir(parents=True, exist_ok=True)
    db = SessionDB(home / "state.db")
    for i in range(sessions):
        db.create_session(f"s{i}", "cli", model="m")
        db.append_message(f"s{i}", "user", "question")
        db.append_message(f"s{i}", "assistant", "answer")
        db.update_token_counts(f"s{i}", input_tokens=100 * (i + 1), output_tokens=10, model="m",
                               estimated_cost_usd=0.0, cost_status="unknown", api_call_count=api_call_count)
        db.end_session(f"s{i}", "cli_close")
    db.close()
    if ago_s or spread_s:
        state = sqlite3.connect(home / "state.db")
        shift = f"{float(ago_s)!r} + CAST(substr({{col}}, 2) AS INTEGER) * {float(spread_s)!r}"
        with state:
            state.execute(f"UPDATE sessions SET started_at = started_at - ({shift.format(col='id')}), "
                          f"ended_at = ended_at - ({shift.format(col='id')})")
            state.execute(f"UPDATE messages SET timestamp = timestamp - ({shift.format(col='session_id')})")
            state.execute(f"UPDATE session_model_usage SET first_seen = first_seen - ({shift.format(col='session_id')}), "
                          f"last_seen = last_seen - ({shift.format(col='session_id')})")
        state.close()
    return home / "state.db"
