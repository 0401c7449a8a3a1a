"""After ``hermetry prune``: the report's Activity block over pruned time reads the rollups, as the
rest of the report does (one report, one total), and a tool filter there is refused in one line
rather than answered from the few raw rows left (review N4, N2)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hermetry.analytics.activity import activity
from hermetry.analytics.query import NotAnswerable, Query
from hermetry.analytics.report import insights
from hermetry.model.units import DAY_MS
from hermetry.stores import rollups
from hermetry.stores.sqlite import connect, migrate
from hermetry.surfaces.cli import main
from hermetry.testing.history import NOW_MS, synthetic_history
from test_prune import AGE_MS, BOUNDARY, LATER

#: the whole synthetic history: every session starts and ends in it, so the rows started in the
#: window are the rows of the sessions started in it (where the two activity paths coincide)
SINCE, UNTIL = NOW_MS - 15 * DAY_MS, NOW_MS + DAY_MS
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _pruned(tmp_path: Path):  # type: ignore[no-untyped-def]
    history = synthetic_history(seed=41, days=14, sessions_per_day=6)
    db = history.record(tmp_path / "telemetry.db")
    conn = connect(db)
    migrate(conn)
    assert rollups.prune(conn, AGE_MS, now_ms=LATER)["rows"]["api_calls"] > 0
    assert rollups.pruned_before_ms(conn) == BOUNDARY
    return history, db, conn


def test_activity_over_pruned_time_counts_what_was_recorded(tmp_path: Path) -> None:
    history, _, conn = _pruned(tmp_path)
    try:
        for exact in (None, True):  # every raw row is not there to read: rollups either way
            a = activity(conn, SINCE, UNTIL, exact=exact)
            assert a["method"] == "rollups"
            assert a["sessions"] == len(history.sessions())
            assert {t["tool_name"]: t["calls"] for t in a["tools"]} == Counter(c.tool_name for c in history.tool_calls())
            injected_tokens = sum(getattr(c, k) or 0 for c in history.api_calls() for k in TOKEN_KINDS)
            assert a["tokens_vs_hermes"]["total_tokens"] == injected_tokens
            assert a["messages"]["user"] == len(history.turns())
            assert a["notable_sessions"]["most_tokens"] is None and a["notable_sessions_not_computed"]
        # after the boundary only: raw rows, the exact path as before
        assert activity(conn, BOUNDARY, UNTIL)["method"] == "exact"
    finally:
        conn.close()


def test_tool_filter_over_pruned_time_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history, db, conn = _pruned(tmp_path)
    conn.close()
    tool = history.tool_calls()[0].tool_name
    with pytest.raises(NotAnswerable, match="pruned"):
        insights(db, Query(since_ms=SINCE, until_ms=UNTIL, filters={"tool": tool}))
    after = insights(db, Query(since_ms=BOUNDARY, until_ms=UNTIL, filters={"tool": tool}))  # from the boundary on: fine
    assert after["tool_calls"]["count"] == sum(1 for c in history.tool_calls()
                                               if c.tool_name == tool and c.started_at_ms >= BOUNDARY)
    code = main(["--db", str(db), "insights", "--since", "2025-01-01", "--until", "2025-01-20", "--tool", tool])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pruned" in err[0] and "--since" in err[0], err


def test_notable_sessions_say_what_helps_in_pruned_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Review m17: in pruned time ``--exact`` cannot compute per-session totals; the JSON and the
    text say what can (a window from the boundary on), and a window after it still says --exact."""
    _, db, conn = _pruned(tmp_path)
    try:
        pruned = activity(conn, SINCE, UNTIL)["notable_sessions_not_computed"]
        assert "--exact" not in pruned["hint"] and pruned["hint"].startswith("--since ")
        assert "pruned" in pruned["why"] and "--exact cannot help" in pruned["why"]
        after = activity(conn, BOUNDARY, UNTIL, exact=False)["notable_sessions_not_computed"]
        assert after is not None and after["hint"] == "--exact" and "pruned" not in after["why"]
    finally:
        conn.close()
    assert main(["--db", str(db), "insights", "--since", "2025-01-01", "--until", "2025-01-20"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"per-session totals: {pruned['hint']})" in text and "per-session totals: --exact" not in text
