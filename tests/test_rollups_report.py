"""insights() through the rollups vs every raw row, on the same data: every count, sum, token, cost
and rate identical, every percentile within 1 %, the figures rollups cannot give null — on SQLite
and on a real PostgreSQL; and the injected history's own totals through the rollup path."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import report as report_module
from hermetry.analytics.compare import compare
from hermetry.analytics.report import Query, insights
from hermetry.model.sketch import ALPHA
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.testing.history import NOW_MS, History, synthetic_history
from pg_helpers import recorded_postgres, recorded_sqlite

PERCENTILES = ("p50", "p95", "p99")


def _session_figure(path: str) -> bool:
    """Session-derived figures: null through the rollups (report.NOT_IN_ROLLUPS)."""
    import re

    return bool(path in ("$.coverage.sessions", "$.coverage.conversations")
                or re.fullmatch(r"\$\.(daily|breakdowns\.\w+)\[\d+\]\.sessions", path))
SINCE = NOW_MS - 14 * DAY_MS + 0.3 * HOUR_MS  # partial hours at both ends: raw rows there
UNTIL = NOW_MS - 0.6 * HOUR_MS
LATER = NOW_MS + 2 * HOUR_MS


def same(exact: Any, approx: Any, path: str = "$") -> None:
    """``approx`` (rollups) says what ``exact`` says: equal, percentiles within α, session figures null."""
    if isinstance(exact, dict) and {"p50", "method"} <= set(exact):
        assert approx["method"] == ("approximate" if approx["count"] else approx["method"]), path
        for key, value in exact.items():
            if key in PERCENTILES and value is not None:
                assert abs(approx[key] - value) <= ALPHA * abs(value) * (1 + 1e-9) + 1e-9, (path, key, value, approx[key])
            elif key in ("method", "relative_error"):
                continue
            elif key == "session_coverage":
                assert approx[key] is None, path
            else:
                same(value, approx[key], f"{path}.{key}")
        return
    if isinstance(exact, dict):
        assert set(exact) == set(approx), (path, set(exact) ^ set(approx))
        for key, value in exact.items():
            if _session_figure(f"{path}.{key}") or key == "session_coverage":
                assert approx[key] is None, f"{path}.{key}"
            elif key == "conversations" and path == "$":
                assert all(v is None for v in approx[key].values())
            elif key == "method" and path == "$":
                assert approx[key]["path"] == "rollups" and value["path"] == "exact"
            else:
                same(value, approx[key], f"{path}.{key}")
        return
    if isinstance(exact, list):
        assert len(exact) == len(approx), path
        for i, (a, b) in enumerate(zip(exact, approx, strict=True)):
            same(a, b, f"{path}[{i}]")
        return
    if isinstance(exact, float) and isinstance(approx, float):
        assert math.isclose(exact, approx, rel_tol=1e-9, abs_tol=1e-9), (path, exact, approx)
        return
    assert exact == approx, (path, exact, approx)


@pytest.fixture()
def force_rollups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any window goes through the rollups (the threshold is for real sizes)."""
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 0)


@pytest.fixture(scope="module")
def history() -> History:
    return synthetic_history(seed=21, days=14, sessions_per_day=10)


@pytest.fixture(scope="module")
def lite(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded_sqlite(history, tmp_path_factory.mktemp("lite") / "telemetry.db", LATER)


@pytest.fixture(scope="module")
def pg(history: History, pg_server: Any) -> str:
    return recorded_postgres(history, str(pg_server.create_database()), LATER)


QUERIES = [
    Query(since_ms=SINCE, until_ms=UNTIL, group_by=()),
    Query(since_ms=SINCE, until_ms=UNTIL, group_by=("source", "model")),
    Query(since_ms=SINCE, until_ms=UNTIL, group_by=("day", "tool")),
    Query(since_ms=SINCE, until_ms=UNTIL, group_by=("provider", "profile", "session_type", "host", "toolset")),
    Query(since_ms=SINCE, until_ms=UNTIL, filters={"source": "telegram"}, group_by=("model",)),
    Query(since_ms=SINCE, until_ms=UNTIL, filters={"model": "m-beta", "profile": "work"}, group_by=("source",)),
]


def _pair(db: Any, q: Query) -> tuple[dict[str, Any], dict[str, Any]]:
    exact = insights(db, q, exact=True)
    approx = insights(db, q)
    assert exact["method"]["path"] == "exact" and approx["method"]["path"] == "rollups"
    assert approx["method"]["hours_from_rollups"] > 300
    exact.pop("activity"), approx.pop("activity")
    return exact, approx


@pytest.mark.parametrize("q", QUERIES, ids=lambda q: "-".join(q.group_by) + "|" + ",".join(q.filters))
def test_rollup_path_says_what_the_exact_path_says_sqlite(lite: Path, q: Query, force_rollups: None) -> None:
    same(*_pair(lite, q))


@pytest.mark.parametrize("q", QUERIES[:4], ids=lambda q: "-".join(q.group_by) + "|" + ",".join(q.filters))
def test_rollup_path_says_what_the_exact_path_says_postgres(pg: str, q: Query, force_rollups: None) -> None:
    same(*_pair(pg, q))


def test_rollup_totals_equal_the_injected_history(lite: Path, history: History, force_rollups: None) -> None:
    report = insights(lite, QUERIES[0])
    assert report["method"]["path"] == "rollups"
    turns = [t for t in history.turns() if SINCE <= t.started_at_ms < UNTIL]
    calls = [c for c in history.api_calls() if SINCE <= c.started_at_ms < UNTIL]
    tools = [c for c in history.tool_calls() if SINCE <= c.started_at_ms < UNTIL]
    assert report["turns"]["by_outcome"] == dict(sorted(Counter(t.outcome or "open" for t in turns).items()))
    assert report["api_calls"]["count"] == len(calls)
    ok = [c for c in calls if c.status == "ok"]
    for kind in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        assert report["api_calls"]["tokens"][kind] == sum(getattr(c, kind) or 0 for c in ok)
    actual = [c.cost_usd for c in calls if c.cost_status == "actual" and c.cost_usd is not None]
    assert math.isclose(report["api_calls"]["cost"]["actual_usd"], math.fsum(actual), rel_tol=1e-9)
    assert report["tool_calls"]["count"] == len(tools)
    wall = sorted(t.wall_ms for t in turns if t.outcome is not None and t.wall_ms is not None)
    assert report["turns"]["wall_ms"]["count"] == len(wall) and report["turns"]["wall_ms"]["max"] == wall[-1]
    assert report["coverage"]["sessions"] is None and report["method"]["null_in_rollups"]


def test_small_windows_and_tool_filters_read_every_row(lite: Path) -> None:
    """Below the threshold (the default) and with a tool filter, the exact path; it says so."""
    assert insights(lite, QUERIES[0])["method"]["path"] == "exact"
    q = Query(since_ms=SINCE, until_ms=UNTIL, filters={"tool": "terminal"})
    assert insights(lite, q)["api_calls"]["latency_ms"]["method"] == "exact"


def test_compare_through_the_rollups(lite: Path, force_rollups: None, monkeypatch: pytest.MonkeyPatch) -> None:
    base = Query(since_ms=SINCE, until_ms=SINCE + 7 * DAY_MS)
    cur = Query(since_ms=SINCE + 7 * DAY_MS, until_ms=UNTIL)
    approx = compare(lite, base, cur)
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 10**12)
    exact = compare(lite, base, cur)
    assert [m["verdict"] for m in approx["metrics"]] == [m["verdict"] for m in exact["metrics"]]
    for a, e in zip(approx["metrics"], exact["metrics"], strict=True):
        if e["metric"].endswith("_p95") and e["baseline"] is not None:
            assert abs(a["baseline"] - e["baseline"]) <= ALPHA * e["baseline"] * (1 + 1e-9)
    assert approx["baseline"]["api_latency_ms"]["method"] == "approximate"
    assert exact["baseline"]["api_latency_ms"]["method"] == "exact"
