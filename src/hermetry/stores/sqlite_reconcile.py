"""The reconciler: turns and sessions left open by a process that died are closed, not left open forever.

A process killed mid-turn (``kill -9``, OOM, power loss) reports nothing more: Hermes' own
``state.db`` keeps such a session open forever. hermetry closes what was left open once a
grace period has passed with no activity:

* an open turn is closed by the one rule of :func:`hermetry.model.outcomes.reconciled_turn`:
  ``errored`` (``reconciled:last_call_failed``) if its last model call failed, otherwise
  ``abandoned`` (``reconciled:no_turn_end``) with unknown (NULL) wall time; a real end reported
  later still replaces it;
* a session that had such a reconciled turn and never ended is closed too (end_reason
  ``reconciled:no_session_end``): ``abandoned``, or — for a one-run session whose last turn
  failed — that failure (``model.outcomes.session_outcome``); if it turns out to be alive — a
  new turn, or Hermes' own end arrives — that replaces the inferred end.

A session whose turns all ended but which Hermes never closed (an API-server conversation, a
chat the user simply stopped) is *not* abandoned: it stays open, and its turns carry its
outcomes. docs/outcomes.md states these rules.

The store runs it when a writer process opens it (``every_s``: at most once per
:data:`STORE_EVERY_S` across every process writing the store, through ``rollup_meta``), and never
with the write lock held while it looks: the stale turns and sessions are found by plain reads
(a WAL snapshot, no lock), and only when there are some does a short write transaction close
exactly those, re-checking the same conditions. On a fleet-sized file the look takes seconds
(every open session's turns); a writer waiting on it would see its batches refused.
"""

from __future__ import annotations

import sqlite3
import time

from hermetry.model.outcomes import REASON_NO_SESSION_END, RECONCILED_PREFIX, SessionOutcome
from hermetry.stores.dialect import Dialect, dialect_of
from hermetry.stores.rollups import mark_open_turns
from hermetry.stores.sqlite import _apply_session_rule, _close_open_turns_sql
from hermetry.stores.sqlite_util import transaction

#: Default grace period: longer than any turn Hermes lets run (gateway timeout 30 min by default).
DEFAULT_GRACE_S = 6 * 3600
#: How often the store's writers reconcile (seconds, across processes): every writer process's first
#: write would otherwise look at every open session again; against a 6-hour grace, 10 minutes later
#: changes nothing an operator sees.
STORE_EVERY_S = 600.0
#: ``rollup_meta`` key: when the last reconcile pass ran (ms since the epoch).
RECONCILED_AT = "reconciled_at_ms"


def _last_activity(d: Dialect) -> str:
    """When an open turn was last seen doing something (its start, its calls' ends); 0 if never."""
    return d.greatest(
        "COALESCE(turns.started_at_ms, 0)",
        "COALESCE((SELECT MAX(a.started_at_ms + COALESCE(a.latency_ms, 0)) FROM api_calls a "
        "WHERE a.turn_id = turns.turn_id), 0)",
        "COALESCE((SELECT MAX(c.started_at_ms + COALESCE(c.latency_ms, 0)) FROM tool_calls c "
        "WHERE c.turn_id = turns.turn_id), 0)",
    )


_by_dialect: dict[str, str] = {}


_STALE_SESSIONS = f"""
SELECT s.session_id FROM sessions s
WHERE s.ended_at_ms IS NULL AND s.outcome IS NULL
  AND EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.session_id
              AND t.outcome_reason LIKE '{RECONCILED_PREFIX}%')
  AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.session_id AND t.outcome IS NULL)
  AND COALESCE((SELECT MAX(t.ended_at_ms) FROM turns t WHERE t.session_id = s.session_id), 0) < ?
"""

_CLOSE_SESSION = f"""
UPDATE sessions SET
    outcome = '{SessionOutcome.ABANDONED.value}',
    end_reason = '{REASON_NO_SESSION_END}',
    ended_at_ms = (SELECT MAX(t.ended_at_ms) FROM turns t WHERE t.session_id = sessions.session_id)
WHERE session_id = ?
"""

def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})"


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def _last_pass_ms(conn: sqlite3.Connection) -> float | None:
    try:
        row = conn.execute("SELECT value FROM rollup_meta WHERE key = ?", (RECONCILED_AT,)).fetchone()
    except sqlite3.Error:
        return None
    return float(row[0]) if row and row[0] is not None else None


def _record_pass(conn: sqlite3.Connection, now_ms: float) -> None:
    conn.execute("INSERT INTO rollup_meta (key, value) VALUES (?, ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (RECONCILED_AT, now_ms))


def reconcile(conn: sqlite3.Connection, *, grace_s: float = DEFAULT_GRACE_S, now_ms: float | None = None,
              every_s: float = 0.0) -> dict[str, int]:
    """Close turns and sessions idle for longer than ``grace_s``. Returns how many of each.

    ``every_s`` > 0: nothing is done (both counts 0) when a pass ran less than that long ago, in
    this process or another (the store's own calls pass :data:`STORE_EVERY_S`)."""
    now = time.time() * 1000 if now_ms is None else now_ms
    cutoff = now - grace_s * 1000
    d = dialect_of(conn)
    if every_s > 0:
        last = _last_pass_ms(conn)
        if last is not None and 0 <= now - last < every_s * 1000:
            return {"turns_closed": 0, "sessions_closed": 0}
    # 1. look, without the write lock: which turns and sessions are stale now
    stale_turn = f"turns.outcome IS NULL AND {_last_activity(d)} < ?"
    turn_rows = conn.execute(f"SELECT turns.turn_id, turns.session_id FROM turns WHERE {stale_turn}",
                             (cutoff,)).fetchall()
    candidates = {sid for (sid,) in conn.execute(_STALE_SESSIONS, (cutoff,)).fetchall()}
    candidates |= {sid for _, sid in turn_rows if sid is not None}
    turn_ids = [tid for tid, _ in turn_rows]
    turns = sessions = 0
    if not turn_ids and not candidates:  # the usual case: nothing to close, no write lock taken
        if every_s > 0:
            with transaction(conn):
                _record_pass(conn, now)
        return {"turns_closed": 0, "sessions_closed": 0}
    # 2. close exactly those, in one short write, each condition checked again (a turn may have
    # ended, a session come back, since the look)
    with transaction(conn):
        for chunk in _chunks(turn_ids):
            where = f"{stale_turn} AND {_in('turns.turn_id', chunk)}"
            mark_open_turns(conn, where, (cutoff, *chunk))  # rollup hours change
            turns += conn.execute(_close_stale_turns_in(d, len(chunk)), (cutoff, *chunk)).rowcount
        stale: list[str] = []
        for chunk in _chunks(sorted(candidates)):
            stale += [sid for (sid,) in conn.execute(f"{_STALE_SESSIONS} AND {_in('s.session_id', chunk)}",
                                                     (cutoff, *chunk)).fetchall()]
        conn.executemany(_CLOSE_SESSION, [(sid,) for sid in stale])
        _apply_session_rule(conn, stale)
        sessions = len(stale)
        if every_s > 0:
            _record_pass(conn, now)
    return {"turns_closed": turns, "sessions_closed": sessions}


def _close_stale_turns_in(d: Dialect, n: int) -> str:
    key = f"{d.name}:{n}"
    done = _by_dialect.get(key)
    if done is None:
        done = _by_dialect[key] = _close_open_turns_sql(
            ended_at=_last_activity(d),
            where=f"turns.outcome IS NULL AND {_last_activity(d)} < ? AND turns.turn_id IN ({', '.join('?' for _ in range(n))})")
    return done
