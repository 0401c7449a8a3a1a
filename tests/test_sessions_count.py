"""``list_sessions()``'s ``count``: exact against the lineage the test injected, on SQLite and PostgreSQL.

The count is read as "sessions started in the window, less the rolled-in ones among them" (a
known parent), the rolled-in ones found either through the children (few in the store) or through
the window's own rows (a window with fewer sessions than the store has children). The windows
below take each of those paths; the truth is the test's own roll-up of the sessions it wrote:
roots, subagents and continuations (children whose parent is known, some two levels deep, one
whose parent started before the window), an orphan whose parent was never recorded (it is a
root), a child of that orphan, and sessions outside the window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.sessions import list_sessions
from hermetry.model.events import Event, SessionEnded, SessionStarted
from hermetry.testing.history import DAY_MS, NOW_MS

H = 3_600_000
T0 = NOW_MS - 2 * DAY_MS

#: session id → (start offset from T0 in hours, parent id or None, lineage)
LINEAGE: dict[str, tuple[float, str | None, str | None]] = {
    "old-1": (-30, None, None), "old-2": (-20, None, None),
    "P": (-1, None, None), "P1": (0.5, "P", "continuation"),  # a child in the window, its parent before it
    "A": (1, None, None), "A1": (1.1, "A", "subagent"), "A1a": (1.2, "A1", "subagent"),  # two levels
    "B": (2, None, None), "B1": (2.5, "B", "continuation"),
    "D": (3, None, None),
    "O": (4, "gone", "continuation"),  # its parent was never recorded: a root
    "Q": (4.5, "O", "subagent"),  # the orphan's child: rolled into it
    "E": (20, None, None), "E1": (20.5, "E", "subagent"),  # after the window
}

#: (since, until) in hours from T0; the comment says which way the rolled-in sessions are read
WINDOWS = [
    (0, 10),  # 9 sessions started, 7 with a parent in the store: through the children
    (-40, 40),  # every session: through the children
    (1, 1.15),  # A and its subagent: 2 started, ≥ 2 with a parent: through the window's rows
    (4, 4.1),  # the orphan alone: through the window's rows
    (4, 4.6),  # the orphan and its child
    (1.1, 1.3),  # two children, no root among them: count 0
    (5, 19),  # nothing started
]


def events() -> list[Event]:
    out: list[Event] = []
    for sid, (hours, parent, lineage) in LINEAGE.items():
        start = T0 + hours * H
        out.append(SessionStarted(sid, start, source="subagent" if lineage == "subagent" else "cli",
                                  model="m", provider="p", parent_session_id=parent, lineage=lineage))
        out.append(SessionEnded(sid, start + 60_000, "cli_close", "completed"))
    return out


def truth(since_h: float, until_h: float) -> tuple[list[str], list[str]]:
    """(conversations, sessions) that started in the window, newest first, from the injected lineage."""
    started = sorted((sid for sid, (h, _, _) in LINEAGE.items() if since_h <= h < until_h),
                     key=lambda sid: LINEAGE[sid][0], reverse=True)
    roots = [sid for sid in started if LINEAGE[sid][1] is None or LINEAGE[sid][1] not in LINEAGE]
    return roots, started


class _Events:
    def __init__(self, evs: list[Event]) -> None:
        self.events = evs


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        from hermetry.stores.sqlite import connect, migrate, write_events

        path = tmp_path / "t.db"
        conn = connect(path)
        migrate(conn)
        conn.execute("BEGIN")
        write_events(conn, events())
        conn.execute("COMMIT")
        conn.close()
        return str(path)
    from pg_helpers import recorded_postgres

    url: str = request.getfixturevalue("pg_url")
    return recorded_postgres(_Events(events()), url, NOW_MS)


def test_the_lineage_is_what_the_windows_need() -> None:
    roots, started = truth(0, 10)
    assert roots == ["O", "D", "B", "A"] and len(started) == 9
    assert sum(1 for _, p, _ in LINEAGE.values() if p is not None) == 7  # < 9: the children's way


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{w[0]}h-{w[1]}h")
def test_count_is_exact_on_both_stores(store: str, window: tuple[float, float]) -> None:
    since_h, until_h = window
    roots, started = truth(since_h, until_h)
    since, until = T0 + since_h * H, T0 + until_h * H
    rolled: dict[str, Any] = list_sessions(store, since, until, limit=1000)
    assert rolled["count"] == len(roots)
    assert [r["session_id"] for r in rolled["sessions"]] == roots
    flat = list_sessions(store, since, until, limit=1000, roll_up=False)
    assert flat["count"] == len(started)
    assert [r["session_id"] for r in flat["sessions"]] == started
    if roots:  # the count is the whole listing's, whatever the limit
        first = list_sessions(store, since, until, limit=1)
        assert first["count"] == len(roots) and [r["session_id"] for r in first["sessions"]] == roots[:1]
