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


def _close_stale_turns(d: Dialect) -> str:
    done = _by_dialect.get(d.name)
    if done is None:
        done = _by_dialect[d.name] = _close_open_turns_sql(
            ended_at=_last_activity(d), where=f"turns.outcome IS NULL AND {_last_activity(d)} < ?")
    return done


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

def reconcile(conn: sqlite3.Connection, *, grace_s: float = DEFAULT_GRACE_S, now_ms: float | None = None) -> dict[str, int]:
    """Close turns and sessions idle for longer than ``grace_s``. Returns how many of each."""
    cutoff = (time.time() * 1000 if now_ms is None else now_ms) - grace_s * 1000
    with transaction(conn):
        d = dialect_of(conn)
        mark_open_turns(conn, f"turns.outcome IS NULL AND {_last_activity(d)} < ?", (cutoff,))  # rollup hours change
        turns = conn.execute(_close_stale_turns(d), (cutoff,)).rowcount
        stale = [sid for (sid,) in conn.execute(_STALE_SESSIONS, (cutoff,)).fetchall()]
        conn.executemany(_CLOSE_SESSION, [(sid,) for sid in stale])
        _apply_session_rule(conn, stale)
        sessions = len(stale)
    return {"turns_closed": turns, "sessions_closed": sessions}
