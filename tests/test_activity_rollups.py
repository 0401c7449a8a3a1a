"""Activity (what ``hermes insights`` shows) on a large window comes from the rollups and the
sessions table, not from every row of every session: the same figures as the exact path when the
window holds all of its sessions' rows, per-session maxima it cannot give left null, saying why."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import activity as activity_module
from hermetry.analytics.activity import activity
from hermetry.stores.reader import open_db
from hermetry.stores.rollups import rebuild
from hermetry.stores.sqlite import connect
from hermetry.testing.history import DAY_MS, NOW_MS, synthetic_history

PER_SESSION = ("most_messages", "most_tokens", "most_tool_calls")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_history(seed=21, days=20, sessions_per_day=12).record(tmp_path_factory.mktemp("a") / "t.db")


def both(db: Path, since_ms: float, until_ms: float, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    with open_db(db) as conn:
        return (activity(conn, since_ms, until_ms, exact=True, **kw),
                activity(conn, since_ms, until_ms, exact=False, **kw))


def comparable(a: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in a.items() if k not in ("method", "notable_sessions_not_computed", "starts_by")}
    out["messages"] = {k: v for k, v in a["messages"].items() if k != "definition"}
    out["notable_sessions"] = {k: v for k, v in a["notable_sessions"].items() if k not in PER_SESSION}
    return out


@pytest.mark.parametrize("rebuilt", [False, True])
@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))])
def test_rollup_path_equals_the_exact_path_over_the_whole_history(db: Path, tmp_path: Path, rebuilt: bool,
                                                                   tz: Any) -> None:
    if rebuilt:  # read from rollup rows (else every hour is still dirty: read from raw rows)
        copy = tmp_path / "t.db"
        copy.write_bytes(db.read_bytes())
        conn = connect(copy)
        assert rebuild(conn, include_open=True).hours > 0
        conn.close()
        db = copy
    exact, rolled = both(db, 0, NOW_MS + DAY_MS, tz=tz)
    assert exact["method"] == "exact" and rolled["method"] == "rollups"
    assert exact["sessions"] > 100 and exact["messages"]["total"] > 0 and exact["tools"]
    assert comparable(rolled) == comparable(exact)
    assert all(rolled["notable_sessions"][k] is None for k in PER_SESSION)
    assert all(exact["notable_sessions"][k] is not None for k in PER_SESSION)
    assert "--exact" in rolled["notable_sessions_not_computed"]["why"]


def test_filters_apply_the_same_way(db: Path) -> None:
    exact, rolled = both(db, 0, NOW_MS + DAY_MS, filters={"source": "telegram"})
    assert 0 < exact["sessions"] < both(db, 0, NOW_MS + DAY_MS)[0]["sessions"]
    assert comparable(rolled) == comparable(exact)


def test_a_tool_filter_keeps_the_exact_path(db: Path) -> None:
    with open_db(db) as conn:
        assert activity(conn, 0, NOW_MS + DAY_MS, {"tool": "terminal"}, exact=False)["method"] == "exact"


def test_the_default_follows_the_window_size(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_db(db) as conn:
        assert activity(conn, 0, NOW_MS + DAY_MS)["method"] == "exact"  # a few hundred sessions
        monkeypatch.setattr(activity_module, "EXACT_MAX_SESSIONS", 50)
        assert activity(conn, 0, NOW_MS + DAY_MS)["method"] == "rollups"
        assert activity(conn, NOW_MS - DAY_MS, NOW_MS)["method"] == "exact"  # one day: ~12 sessions


def test_the_text_report_says_what_the_rollup_path_left_out(db: Path) -> None:
    import io

    from rich.console import Console

    from hermetry.analytics.report import Query, insights
    from hermetry.surfaces.render import report_renderable

    report = insights(db, Query(since_ms=0, until_ms=NOW_MS + DAY_MS))
    with open_db(db) as conn:
        report["activity"] = activity(conn, 0, NOW_MS + DAY_MS, exact=False)
    sink = io.StringIO()
    Console(file=sink, width=80, color_system=None).print(report_renderable(report))
    text = " ".join(sink.getvalue().split())
    assert "longest" in text and "per-session totals: --exact" in text
    assert all(len(line) <= 80 for line in sink.getvalue().splitlines())


def test_insights_exact_reads_activity_exactly_too(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``insights --exact`` is what the report's note advises for the per-session maxima: it must reach
    activity too (a large window would otherwise still leave them null)."""
    from hermetry.analytics.query import Query
    from hermetry.analytics.report import insights

    monkeypatch.setattr(activity_module, "EXACT_MAX_SESSIONS", 50)
    q = Query(since_ms=0, until_ms=NOW_MS + DAY_MS)
    assert insights(db, q)["activity"]["method"] == "rollups"
    exact = insights(db, q, exact=True)["activity"]
    assert exact["method"] == "exact"
    assert all(exact["notable_sessions"][k] is not None for k in PER_SESSION)


def test_insights_activity_regroups_the_reports_reads(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the rollup path activity takes its row counts from the report's reads of the same window
    (no second scan of the rollup rows): the same figures as activity read on its own."""
    from hermetry.analytics import report as report_module
    from hermetry.analytics.query import Query
    from hermetry.analytics.report import insights
    from hermetry.stores import rollups

    copy = db.parent / "regroup.db"
    copy.write_bytes(db.read_bytes())
    conn = connect(copy)
    rebuild(conn, include_open=True)
    conn.close()
    monkeypatch.setattr(activity_module, "EXACT_MAX_SESSIONS", 50)
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)
    for filters in ({}, {"source": "telegram"}):
        q = Query(since_ms=NOW_MS - 15.3 * DAY_MS, until_ms=NOW_MS - 0.6 * DAY_MS, filters=filters, group_by=("model",))
        with open_db(copy) as conn:
            alone = activity(conn, q.since_ms, q.until_ms, filters)
        calls: list[str] = []
        real = rollups.read

        def counting(conn: Any, kind: Any, p: Any, calls: list[str] = calls, real: Any = real, **kw: Any) -> Any:
            calls.append(kind.name)
            return real(conn, kind, p, **kw)

        monkeypatch.setattr(rollups, "read", counting)
        report = insights(copy, q)
        monkeypatch.setattr(rollups, "read", real)
        assert report["method"]["path"] == "rollups" and report["activity"]["method"] == "rollups"
        assert report["activity"] == alone
        assert sorted(calls) == sorted(["turns", "api", "tools"] * 2 + ["sessions", "sessions"])  # none twice for activity
