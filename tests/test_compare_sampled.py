"""``compare`` over large windows (review N6): the per-session cost test reads a deterministic sample of
each window's sessions (the first ``SAMPLE_SESSIONS`` by a hash of the session id) instead of joining
every turn to its model calls, and says so; over pruned time it runs no test rather than testing the
rows that are left. Figures are checked against the sessions, turns and calls the test injected
(``hermetry.testing.history``); SQLite and a real PostgreSQL give the same answer."""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hermetry.analytics import compare as C
from hermetry.analytics.compare import compare
from hermetry.analytics.report import Query
from hermetry.recorder.recorder import Recorder
from hermetry.stores import rollups as R
from hermetry.stores.postgres import PostgresStore
from hermetry.stores.sqlite import connect
from hermetry.surfaces.render import compare_renderable
from hermetry.testing.history import DAY_MS, NOW_MS, History, Regime, synthetic_history

BASELINE = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=NOW_MS - 7 * DAY_MS, group_by=())
CURRENT = Query(since_ms=NOW_MS - 7 * DAY_MS, until_ms=NOW_MS, group_by=())
SAMPLE = 40


@pytest.fixture(autouse=True)
def _small_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "EXACT_MAX_TURNS", 10)  # every window here is "large"
    monkeypatch.setattr(C, "SAMPLE_SESSIONS", SAMPLE)


def _history(seed: int = 7, regime: Regime | None = None) -> History:
    current = regime or Regime()
    return synthetic_history(seed=seed, days=14, sessions_per_day=12,
                             regime=lambda days_ago: current if days_ago < 7 else Regime())


def _truth(history: History, q: Query, sample: int | None) -> tuple[list[tuple[float, int]], int, int]:
    """From the injected events: (fully priced sessions' (known cost, turns in the window), sessions read
    with billable calls, sessions with turns in the window) over the first ``sample`` sessions by
    CRC-32 of their id (None: all)."""
    turns = {t.turn_id: t.session_id for t in history.turns() if q.since_ms <= t.started_at_ms < q.until_ms}
    per: dict[str, list[Any]] = {}
    for sid in turns.values():
        per.setdefault(sid, [0, None, 0, False])[0] += 1
    picked = sorted(per, key=lambda sid: (zlib.crc32(sid.encode()), sid))[:sample]
    for call in history.api_calls():
        sid = turns.get(call.turn_id or "")
        if sid is None or not (call.status == "ok" or call.cost_usd is not None):
            continue
        row = per[sid]
        row[3] = True  # billable
        if call.cost_status in ("actual", "estimated") and call.cost_usd is not None:
            row[1] = (row[1] or 0.0) + call.cost_usd
        elif call.cost_status != "included":
            row[2] += 1
    priced = sorted((per[sid][1], per[sid][0]) for sid in picked if per[sid][1] is not None and not per[sid][2])
    return priced, sum(1 for sid in picked if per[sid][3]), len(per)


def _cost_row(result: dict[str, Any]) -> dict[str, Any]:
    return {m["metric"]: m for m in result["metrics"]}["cost_usd_per_turn"]


def _mean(sessions: list[tuple[float, int]]) -> float:
    return math.fsum(c for c, _ in sessions) / sum(n for _, n in sessions)


def test_a_sampled_cost_test_reads_the_stated_sample_and_says_so(tmp_path: Path) -> None:
    history = _history()
    db = history.record(tmp_path / "h.db")
    result = compare(db, BASELINE, CURRENT)
    row = _cost_row(result)
    for side, q in (("baseline", BASELINE), ("current", CURRENT)):
        priced, billable, population = _truth(history, q, SAMPLE)
        assert population > SAMPLE + 20  # really a sample
        read = row["sessions_read"][side]
        assert read["sampled"] and read["read"] == SAMPLE
        assert abs(read["of"] - population) <= 0.35 * population  # estimated from the sample's hit rate
        assert row[f"n_{side}"] == len(priced) > 20
        assert row["coverage"][side] == {"captured": len(priced), "of": billable}
        assert math.isclose(row[side], _mean(priced), rel_tol=1e-12)
    assert "sampled 40 of ~" in row["note"] and "its figures and test are the sample's" in row["note"]
    assert row["verdict"] == "no significant change"
    sink = io.StringIO()
    Console(file=sink, width=80, color_system=None).print(compare_renderable(result))
    text = " ".join(sink.getvalue().split())
    assert "cost per turn: baseline: sampled 40 of ~" in text
    assert compare(db, BASELINE, CURRENT) == result  # a rerun reads the same sample


def test_below_the_threshold_every_session_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "EXACT_MAX_TURNS", 10_000)
    history = _history()
    db = history.record(tmp_path / "h.db")
    row = _cost_row(compare(db, BASELINE, CURRENT))
    priced, billable, population = _truth(history, CURRENT, None)
    assert row["sessions_read"]["current"] == {"read": population, "of": population, "of_estimated": False,
                                               "sampled": False, "pruned_before_ms": None}
    assert row["n_current"] == len(priced) and math.isclose(row["current"], _mean(priced), rel_tol=1e-12)
    assert "note" not in row


def test_a_filter_that_leaves_fewer_sessions_than_the_sample_reads_them_all(tmp_path: Path) -> None:
    """A large store (the threshold counts every turn) but a filter leaving fewer sessions than the
    sample: every one of them is read, and nothing says "sampled"."""
    history = _history()
    db = history.record(tmp_path / "h.db")
    q = Query(since_ms=CURRENT.since_ms, until_ms=CURRENT.until_ms, filters={"source": "telegram"}, group_by=())
    row = _cost_row(compare(db, Query(since_ms=BASELINE.since_ms, until_ms=BASELINE.until_ms,
                                      filters={"source": "telegram"}, group_by=()), q))
    telegram = {sid for sid, s in history.sessions().items() if s.source == "telegram"}
    kept = History(history.now_ms, [e for e in history.events if getattr(e, "session_id", None) in telegram])
    priced, billable, population = _truth(kept, q, None)
    assert 0 < population < SAMPLE
    assert row["sessions_read"]["current"] == {"read": population, "of": population, "of_estimated": False,
                                               "sampled": False, "pruned_before_ms": None}
    assert row["n_current"] == len(priced) and math.isclose(row["current"], _mean(priced), rel_tol=1e-12)
    assert "note" not in row


def test_a_planted_cost_regression_is_flagged_from_the_sample(tmp_path: Path) -> None:
    db = _history(seed=9, regime=Regime(latency_scale=1.0, api_failure=0.05, cost_scale=2.0)).record(tmp_path / "h.db")
    result = compare(db, BASELINE, CURRENT)
    assert _cost_row(result)["sessions_read"]["current"]["sampled"]
    assert result["regressions"] == ["cost_usd_per_turn"]


def test_sqlite_and_postgresql_read_the_same_sample(tmp_path: Path, pg_url: str) -> None:
    history = _history(seed=11)
    lite = history.record(tmp_path / "h.db")
    rec = Recorder(lambda: PostgresStore(pg_url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    assert rec.stats().dropped == 0
    a, b = _cost_row(compare(lite, BASELINE, CURRENT)), _cost_row(compare(pg_url, BASELINE, CURRENT))
    assert a["sessions_read"]["current"]["sampled"]
    for key in ("baseline", "current", "relative_change", "p_value"):  # each store sums a session's costs its own way
        assert math.isclose(a.pop(key), b.pop(key), rel_tol=1e-9), key
    assert a == b  # the same sessions read, the same counts


def test_over_pruned_time_no_cost_test_is_run(tmp_path: Path) -> None:
    """Prune keeps sessions but deletes their turns and calls: a cost test there would test only the
    rows left. It says why instead; the other metrics come from the rollups as ever."""
    db = _history(seed=13).record(tmp_path / "h.db")
    conn = connect(db)
    later = NOW_MS + DAY_MS
    R.prune(conn, later - (NOW_MS - 10 * DAY_MS), now_ms=later)  # the boundary inside the baseline window
    conn.close()
    result = compare(db, BASELINE, CURRENT)
    row = _cost_row(result)
    assert row["verdict"] == "insufficient data" and row["baseline"] is None and row["p_value"] is None
    assert row["sessions_read"]["baseline"]["pruned_before_ms"] == NOW_MS - 10 * DAY_MS
    assert "baseline: raw rows before" in row["note"] and "were pruned" in row["note"]
    assert row["sessions_read"]["current"]["pruned_before_ms"] is None  # the current window is read (sampled)
    assert {m["metric"]: m for m in result["metrics"]}["turn_failure_rate"]["verdict"] != "insufficient data"
