"""On the rollup path (a large window) the report does not count sessions with activity or
conversations: the text says so with its own mark and how to get them, never "— not captured"
(they were captured)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hermetry.analytics import report as report_module
from hermetry.analytics.query import Query
from hermetry.analytics.report import insights
from hermetry.stores.rollups import rebuild
from hermetry.stores.sqlite import connect
from hermetry.surfaces.render import console, report_renderable
from hermetry.surfaces.text import NA, NOT_COUNTED
from hermetry.testing.history import DAY_MS, NOW_MS, synthetic_history


def _text(report: dict) -> str:  # type: ignore[type-arg]
    sink = io.StringIO()
    console(sink, width=80).print(report_renderable(report))
    return sink.getvalue()


def test_counts_the_rollup_path_leaves_out_are_marked_not_counted(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = synthetic_history(seed=4, days=6, sessions_per_day=10).record(tmp_path / "t.db")
    conn = connect(db)
    rebuild(conn, now_ms=NOW_MS + 2 * 3_600_000)
    conn.close()
    q = Query(NOW_MS - 7 * DAY_MS, NOW_MS, group_by=("source",))
    exact = insights(db, q)
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)
    rolled = insights(db, q)
    assert rolled["method"]["path"] == "rollups" and rolled["coverage"]["sessions"] is None
    text = _text(rolled)
    assert f"{NOT_COUNTED} sessions with activity" in text
    assert f"Conversations: {NOT_COUNTED}" in text and "--exact" in text
    assert f"{NA} sessions" not in text
    assert f"{NOT_COUNTED} not counted on the rollup path" in " ".join(text.split())  # the legend says it
    # the exact path prints the numbers, and never the mark
    plain = _text(exact)
    assert f"{exact['coverage']['sessions']:,} sessions with activity" in plain
    assert NOT_COUNTED not in plain


def test_the_chat_text_marks_them_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hermetry.surfaces.render import chat_text

    db = synthetic_history(seed=4, days=3, sessions_per_day=6).record(tmp_path / "t.db")
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)
    rolled = insights(db, Query(NOW_MS - 4 * DAY_MS, NOW_MS))
    assert rolled["method"]["path"] == "rollups"
    text = chat_text(rolled)
    assert f"{NOT_COUNTED} sessions with activity" in " ".join(text.split())
    assert f"{NA} sessions" not in text
