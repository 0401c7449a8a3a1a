"""``compare()``: a planted regression is flagged, noise is not; the tests behind it are right.

Histories are synthetic (``hermetry.testing.history``) and recorded through the recorder. The
baseline window is the 7 days before the last 7; a ``Regime`` makes the last 7 days slower,
more failure-prone or more expensive — or leaves them alone, so that only sampling noise
differs between the windows.
"""

from __future__ import annotations

import itertools
import math
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.compare import ALPHA, compare
from hermetry.analytics.report import Query, insights
from hermetry.analytics.stats import (
    count_above,
    fisher_exact,
    mann_whitney_u,
    percentile,
    two_proportion_test,
)
from hermetry.testing.history import DAY_MS, NOW_MS, Regime, synthetic_history

BASELINE = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=NOW_MS - 7 * DAY_MS, group_by=())
CURRENT = Query(since_ms=NOW_MS - 7 * DAY_MS, until_ms=NOW_MS, group_by=())
METRICS = ["turn_wall_ms_p95", "api_latency_ms_p95", "ttft_ms_p95", "turn_failure_rate", "cost_usd_per_turn"]


def recorded(tmp_path: Path, seed: int, current: Regime) -> Path:
    history = synthetic_history(seed=seed, days=14, sessions_per_day=12,
                                regime=lambda days_ago: current if days_ago < 7 else Regime())
    return history.record(tmp_path / f"h{seed}.db")


def by_metric(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["metric"]: m for m in result["metrics"]}


SLOWER = Regime(latency_scale=1.6, api_failure=0.05, cost_scale=1.0)
FAILING = Regime(latency_scale=1.0, api_failure=0.30, cost_scale=1.0)
PRICIER = Regime(latency_scale=1.0, api_failure=0.05, cost_scale=2.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planted_regressions_are_flagged(tmp_path: Path, seed: int) -> None:
    slow = by_metric(compare(recorded(tmp_path, seed, SLOWER), BASELINE, CURRENT))
    for name in ("turn_wall_ms_p95", "api_latency_ms_p95", "ttft_ms_p95"):
        assert slow[name]["verdict"] == "regression", (name, slow[name])
    assert slow["turn_failure_rate"]["verdict"] == "no significant change"
    assert slow["cost_usd_per_turn"]["verdict"] == "no significant change"

    failing = compare(recorded(tmp_path, seed + 100, FAILING), BASELINE, CURRENT)
    assert failing["regressions"] == ["turn_failure_rate"]

    pricier = compare(recorded(tmp_path, seed + 200, PRICIER), BASELINE, CURRENT)
    assert pricier["regressions"] == ["cost_usd_per_turn"]


def test_noise_alone_is_not_flagged(tmp_path: Path) -> None:
    result = compare(recorded(tmp_path, 1000, Regime()), BASELINE, CURRENT)
    assert result["regressions"] == [] and result["improvements"] == []
    assert {m["verdict"] for m in result["metrics"]} == {"no significant change"}
    assert any(m["baseline"] != m["current"] for m in result["metrics"])  # the windows do differ, by noise


def test_noise_is_flagged_about_as_often_as_alpha_says(tmp_path: Path) -> None:
    """Same behaviour in both windows, 20 histories × 5 metrics = 100 tests at alpha = 0.01:
    about one false flag is expected; more than three would happen by chance less than 2% of
    the time (binomial), so more means a test is anti-conservative."""
    flagged = []
    for seed in range(20):
        result = compare(recorded(tmp_path, 2000 + seed, Regime()), BASELINE, CURRENT)
        flagged += result["regressions"] + result["improvements"]
        for m in result["metrics"]:
            assert m["verdict"] != "insufficient data", m
    assert len(flagged) <= 3, flagged


def test_the_reverse_direction_is_an_improvement(tmp_path: Path) -> None:
    db = recorded(tmp_path, 7, SLOWER)
    result = compare(db, CURRENT, BASELINE)  # the slow week as the baseline
    assert result["regressions"] == []
    assert {"turn_wall_ms_p95", "api_latency_ms_p95", "ttft_ms_p95"} <= set(result["improvements"])


def test_figures_are_the_insights_figures_and_the_test_is_the_stated_one(tmp_path: Path) -> None:
    db = recorded(tmp_path, 3, SLOWER)
    result = compare(db, BASELINE, CURRENT)
    assert result["schema"] == "hermetry.compare.v1"
    a, b = insights(db, BASELINE), insights(db, CURRENT)
    m = by_metric(result)
    assert m["turn_wall_ms_p95"]["baseline"] == a["turns"]["wall_ms"]["p95"]
    assert m["turn_wall_ms_p95"]["current"] == b["turns"]["wall_ms"]["p95"]
    assert m["api_latency_ms_p95"]["current"] == b["api_calls"]["latency_ms"]["p95"]
    assert m["turn_failure_rate"]["baseline"] == a["turns"]["failure_rate"]["value"]
    assert result["baseline"]["coverage"] == a["coverage"] and result["current"]["coverage"] == b["coverage"]
    # the tail test: share of each window above the baseline's p95, compared as proportions
    import sqlite3

    conn = sqlite3.connect(db)
    lat = {name: sorted(v for (v,) in conn.execute(
        "SELECT latency_ms FROM api_calls WHERE started_at_ms >= ? AND started_at_ms < ? AND latency_ms IS NOT NULL",
        (q.since_ms, q.until_ms))) for name, q in (("a", BASELINE), ("b", CURRENT))}
    conn.close()
    threshold = percentile(lat["a"], 95)
    above_a = sum(1 for v in lat["a"] if v > threshold)
    above_b = sum(1 for v in lat["b"] if v > threshold)
    row = m["api_latency_ms_p95"]
    assert row["detail"] == {"threshold_ms": threshold, "baseline_above": above_a, "current_above": above_b}
    pooled = (above_a + above_b) / (len(lat["a"]) + len(lat["b"]))
    z = (above_b / len(lat["b"]) - above_a / len(lat["a"])) / math.sqrt(
        pooled * (1 - pooled) * (1 / len(lat["a"]) + 1 / len(lat["b"])))
    assert row["p_value"] == pytest.approx(2 * (1 - statistics.NormalDist().cdf(abs(z))), rel=1e-9)
    assert row["p_value"] < ALPHA


def test_too_little_data_is_insufficient_not_a_verdict(tmp_path: Path) -> None:
    history = synthetic_history(seed=4, days=2, sessions_per_day=2)
    db = history.record(tmp_path / "small.db")
    result = compare(db, Query(since_ms=NOW_MS - 2 * DAY_MS, until_ms=NOW_MS - DAY_MS, group_by=()),
                     Query(since_ms=NOW_MS - DAY_MS, until_ms=NOW_MS, group_by=()))
    verdicts = by_metric(result)
    for name in ("turn_wall_ms_p95", "api_latency_ms_p95", "ttft_ms_p95", "cost_usd_per_turn"):
        assert verdicts[name]["verdict"] == "insufficient data"
        assert verdicts[name]["p_value"] is None
    assert result["regressions"] == []
    empty = compare(tmp_path / "missing.db", BASELINE, CURRENT)
    assert {m["verdict"] for m in empty["metrics"]} == {"insufficient data"}


# -- the statistics behind the verdicts ---------------------------------------------------------

def exact_fisher(x_a: int, n_a: int, x_b: int, n_b: int) -> float:
    """Two-sided Fisher by enumerating every table with the same margins, in exact fractions."""
    k, n = x_a + x_b, n_a + n_b

    def p(x: int) -> Fraction:
        return Fraction(math.comb(n_a, x) * math.comb(n_b, k - x), math.comb(n, k))

    observed = p(x_a)
    return float(sum(q for x in range(max(0, k - n_b), min(k, n_a) + 1) if (q := p(x)) <= observed))


@pytest.mark.parametrize("table", [(1, 10, 11, 14), (8, 10, 1, 6), (0, 5, 5, 5), (3, 40, 9, 41), (2, 2, 0, 3)])
def test_fisher_exact_matches_enumeration(table: tuple[int, int, int, int]) -> None:
    assert fisher_exact(*table) == pytest.approx(exact_fisher(*table), rel=1e-9)


def test_two_proportions_use_fisher_for_small_counts_and_z_otherwise() -> None:
    name, p = two_proportion_test(1, 10, 6, 10)
    assert name == "fisher-exact" and p == pytest.approx(exact_fisher(1, 10, 6, 10), rel=1e-9)
    name, p = two_proportion_test(30, 300, 60, 300)
    pooled = 90 / 600
    z = (60 / 300 - 30 / 300) / math.sqrt(pooled * (1 - pooled) * (2 / 300))
    assert name == "two-proportion-z"
    assert p == pytest.approx(2 * (1 - statistics.NormalDist().cdf(z)), rel=1e-9)
    assert two_proportion_test(0, 0, 3, 10) == ("none", None)


def mwu_reference(a: list[float], b: list[float]) -> float:
    """U from counting pairs; the normal approximation written out with the tie correction."""
    u = sum(1.0 if y > x else 0.5 if y == x else 0.0 for x, y in itertools.product(a, b))
    n_a, n_b = len(a), len(b)
    n = n_a + n_b
    counts: dict[float, int] = {}
    for v in a + b:
        counts[v] = counts.get(v, 0) + 1
    ties = sum(t**3 - t for t in counts.values())
    sigma = math.sqrt(n_a * n_b / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = max(0.0, abs(u - n_a * n_b / 2) - 0.5) / sigma
    return 2 * (1 - statistics.NormalDist().cdf(z))


@pytest.mark.parametrize("seed", range(5))
def test_mann_whitney_matches_the_reference(seed: int) -> None:
    import random

    rnd = random.Random(seed)
    a = sorted(round(rnd.gauss(10, 3), 1) for _ in range(rnd.randint(5, 40)))  # rounded: ties happen
    b = sorted(round(rnd.gauss(11, 3), 1) for _ in range(rnd.randint(5, 40)))
    assert mann_whitney_u(a, b) == pytest.approx(mwu_reference(a, b), rel=1e-9)


def test_mann_whitney_extremes() -> None:
    same = [float(i) for i in range(30)]
    assert mann_whitney_u(same, same) == pytest.approx(1.0)
    assert mann_whitney_u(same, [v + 100 for v in same]) < 1e-9
    assert mann_whitney_u([], same) is None


def test_count_above() -> None:
    assert count_above([1, 2, 2, 3, 5], 2) == 2
    assert count_above([1, 2], 5) == 0


def test_p95_rows_say_exact_or_the_rollups_error_at_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """m13: each p95 row's JSON says how it was computed (its windows' summaries), and the text
    says it once in the table's title — `exact`, or `≤1 % rel. err` on the rollup path."""
    import io

    from rich.console import Console

    from hermetry.analytics import report as report_module
    from hermetry.stores.rollups import rebuild
    from hermetry.stores.sqlite import connect
    from hermetry.surfaces.render import compare_renderable

    db = recorded(tmp_path, 41, Regime())

    def text(result: dict[str, Any]) -> str:
        sink = io.StringIO()
        Console(file=sink, width=80, color_system=None).print(compare_renderable(result))
        out = sink.getvalue()
        assert max(len(line) for line in out.splitlines()) <= 80
        return out

    exact = compare(db, BASELINE, CURRENT)
    p95s = [m for m in exact["metrics"] if m["metric"].endswith("_p95")]
    assert [(m["method"], m["relative_error"]) for m in p95s] == [("exact", None)] * 3
    assert "Metrics · p95 exact" in text(exact)

    conn = connect(db)
    try:
        rebuild(conn, now_ms=NOW_MS + DAY_MS)
    finally:
        conn.close()
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 1)  # both windows from the rollups
    approx = compare(db, BASELINE, CURRENT)
    assert approx["baseline"]["turn_wall_ms"]["method"] == "approximate"
    p95s = [m for m in approx["metrics"] if m["metric"].endswith("_p95")]
    assert [(m["method"], m["relative_error"]) for m in p95s] == [("approximate", 0.01)] * 3
    shown = text(approx)
    assert "Metrics · p95 ≤1 % rel. err" in shown and "exact" not in shown


def test_a_turn_without_calls_is_a_turn_at_no_cost_not_an_unpriced_call(tmp_path: Path) -> None:
    """The per-turn cost test counts a session whose turn made no model call (interrupted before
    it, say) with that turn at $0 — it used to drop the whole session as "not every call priced"."""
    import sqlite3

    from hermetry.analytics.compare import session_turn_costs

    db = recorded(tmp_path, 5, SLOWER)
    conn = sqlite3.connect(db)
    q = CURRENT
    before, billable_before = session_turn_costs(conn, q)
    window = (q.since_ms, q.until_ms)
    sid, turn_id = conn.execute("SELECT session_id, turn_id FROM turns WHERE started_at_ms >= ? AND started_at_ms < ? "
                                "ORDER BY started_at_ms LIMIT 1", window).fetchone()
    n_turns = conn.execute("SELECT COUNT(*) FROM turns WHERE session_id = ? AND started_at_ms >= ? AND started_at_ms < ?",
                           (sid, *window)).fetchone()[0]
    cost = conn.execute("SELECT SUM(a.cost_usd) FROM turns t JOIN api_calls a ON a.turn_id = t.turn_id "
                        "WHERE t.session_id = ? AND t.started_at_ms >= ? AND t.started_at_ms < ?", (sid, *window)).fetchone()[0]
    assert any(math.isclose(c, cost) and n == n_turns for c, n in before)  # the session is in the test
    columns = [r[1] for r in conn.execute("PRAGMA table_info(turns)")]
    conn.execute(f"INSERT INTO turns ({', '.join(columns)}) SELECT "
                 + ", ".join("?" if c == "turn_id" else c for c in columns) + " FROM turns WHERE turn_id = ?",
                 (f"{turn_id}-nocall", turn_id))  # one more turn of that session, without a call
    conn.commit()
    after, billable_after = session_turn_costs(conn, q)
    conn.close()
    assert billable_after == billable_before and len(after) == len(before)
    assert any(math.isclose(c, cost) and n == n_turns + 1 for c, n in after)
    assert not any(math.isclose(c, cost) and n == n_turns for c, n in after)
