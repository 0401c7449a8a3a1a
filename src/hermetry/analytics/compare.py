"""``compare()``: two windows side by side, with regressions flagged only when they are not noise.

Each metric is tested, and a change is called a regression (or an improvement) only when it
is both statistically significant and large enough to matter:

==========================  ===========================================================  ==========================
metric                      test (two-sided, ``ALPHA`` = 0.01)                           practical threshold
==========================  ===========================================================  ==========================
``turn_wall_ms_p95``        tail test: the share of each window's values above the       p95 changes by ≥ 10%
``api_latency_ms_p95``      baseline's p95, two-proportion z-test (Fisher's exact test
``ttft_ms_p95``             when a cell expects < 5)
``turn_failure_rate``       two-proportion z-test (Fisher's exact test when a cell       ≥ 1 percentage point
                            expects < 5)
``cost_usd_per_turn``       Mann-Whitney U on each session's cost per turn (sessions,    cost per turn changes
                            not turns, are the independent units)                        by ≥ 10%
==========================  ===========================================================  ==========================

With five metrics at ALPHA = 0.01 the chance that pure noise flags at least one is at most
about 5%. A distribution metric needs ``MIN_SAMPLES`` values (sessions, for cost) in each
window; with fewer the verdict is ``insufficient data``. Cost per turn is the known cost of the
fully priced sessions divided by their turns (a turn without a billable call costs nothing).
The numbers shown for each window are the ones ``insights()`` reports for that window.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import replace
from typing import Any

from hermetry.analytics.query import TURNS, Query, Scanner, iso
from hermetry.analytics.report import build_report, collect
from hermetry.analytics.stats import (
    APPROXIMATE,
    EXACT,
    count_above,
    mann_whitney_u,
    percentile,
    two_proportion_test,
)
from hermetry.model.kinds import API_OK, CostStatus
from hermetry.model.sketch import Sketch
from hermetry.stores.reader import Db, open_db

COMPARE_SCHEMA = "hermetry.compare.v1"
ALPHA = 0.01
MIN_RELATIVE_CHANGE = 0.10
MIN_RATE_CHANGE = 0.01
MIN_SAMPLES = 20

REGRESSION, IMPROVEMENT, NO_CHANGE, INSUFFICIENT = "regression", "improvement", "no significant change", "insufficient data"


def _relative(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return (b - a) / a


def _verdict(p_value: float | None, worse: bool, better: bool) -> str:
    if p_value is None:
        return INSUFFICIENT
    if p_value < ALPHA and worse:
        return REGRESSION
    if p_value < ALPHA and better:
        return IMPROVEMENT
    return NO_CHANGE


def _p95(values: list[float] | Sketch) -> float | None:
    return values.quantile(0.95) if isinstance(values, Sketch) else percentile(values, 95)


def _above(values: list[float] | Sketch, threshold: float) -> int:
    return values.count_above(threshold) if isinstance(values, Sketch) else count_above(values, threshold)


def _p95_metric(name: str, a: list[float] | Sketch, b: list[float] | Sketch) -> dict[str, Any]:
    """Did the tail move? Share of each window above the baseline's p95, compared as proportions.
    (From rollups — a large window — p95 is within 1 % and the counts above it estimated within
    the threshold's bucket; each window's summary says which: its ``method``.)"""
    p95_a, p95_b = _p95(a), _p95(b)
    row: dict[str, Any] = {"metric": name, "unit": "ms", "baseline": p95_a, "current": p95_b,
                           "relative_change": _relative(p95_a, p95_b), "n_baseline": len(a), "n_current": len(b)}
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES or p95_a is None or p95_b is None:
        return row | {"test": None, "p_value": None, "verdict": INSUFFICIENT}
    above_a, above_b = _above(a, p95_a), _above(b, p95_a)
    test, p = two_proportion_test(above_a, len(a), above_b, len(b))
    share_a, share_b = above_a / len(a), above_b / len(b)
    change = row["relative_change"] or 0.0
    worse = share_b > share_a and change >= MIN_RELATIVE_CHANGE
    better = share_b < share_a and change <= -MIN_RELATIVE_CHANGE
    return row | {
        "test": f"tail share above baseline p95, {test}",
        "p_value": p,
        "detail": {"threshold_ms": p95_a, "baseline_above": above_a, "current_above": above_b},
        "verdict": _verdict(p, worse, better),
    }


def _p95_method(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How a p95 row's two figures were computed (their windows' summaries): ``method`` is
    ``exact`` when both are, else ``approximate`` with the larger ``relative_error`` (read from
    rollups, two p95s within 1 % of each other may be the same bucket's value: "+0%")."""
    approx = [d.get("relative_error") for d in (a, b) if d.get("count") and d.get("method") not in (None, EXACT)]
    if not approx:
        return {"method": EXACT, "relative_error": None}
    return {"method": APPROXIMATE, "relative_error": max((e for e in approx if e is not None), default=None)}


def _rate_metric(name: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"metric": name, "unit": "fraction", "baseline": a["value"], "current": b["value"],
                           "relative_change": _relative(a["value"], b["value"]),
                           "n_baseline": a["n"], "n_current": b["n"]}
    test, p = two_proportion_test(a["successes"], a["n"], b["successes"], b["n"])
    if p is None:
        return row | {"test": None, "p_value": None, "verdict": INSUFFICIENT}
    delta = b["value"] - a["value"]
    return row | {"test": test, "p_value": p,
                  "verdict": _verdict(p, delta >= MIN_RATE_CHANGE, delta <= -MIN_RATE_CHANGE)}


def session_turn_costs(conn: sqlite3.Connection | None, q: Query) -> tuple[list[tuple[float, int]], int]:
    """Per session: (known cost in USD, turns) over its turns that started in the window, for the
    sessions whose every billable call in those turns was priced (included calls count as priced
    at no extra cost); and how many sessions had billable calls (the coverage).

    Sessions, not turns, are the units of the test: turns of one session share a model, a
    provider and a task, so they are not independent samples.
    """
    if conn is None:
        return [], 0
    scan = Scanner(conn, q)
    # 1. the window's turns per session
    source, where, params = scan.scope(TURNS)
    turns = {sid: int(n) for sid, n in scan.execute(
        f"SELECT t.session_id, COUNT(*) FROM {source} WHERE {where} GROUP BY t.session_id", params)}
    if not turns:
        return [], 0
    # 2. their billable calls (a turn without any is a turn at no cost, not an unpriced call)
    priced = f"a.cost_status IN ('{CostStatus.ACTUAL}', '{CostStatus.ESTIMATED}') AND a.cost_usd IS NOT NULL"
    sql = (f"SELECT t.session_id, SUM(CASE WHEN {priced} THEN a.cost_usd END), "
           f"SUM(CASE WHEN NOT ({priced}) AND COALESCE(a.cost_status, '') <> '{CostStatus.INCLUDED}' THEN 1 ELSE 0 END) "
           f"FROM {source} JOIN api_calls a ON a.turn_id = t.turn_id AND (a.status = '{API_OK}' OR a.cost_usd IS NOT NULL) "
           f"WHERE {where} GROUP BY t.session_id")
    out, billable = [], 0
    for sid, known, unpriced in scan.execute(sql, params):
        billable += 1
        if known is not None and not unpriced:
            out.append((float(known), turns[sid]))
    return out, billable


def _cost_metric(a: tuple[list[tuple[float, int]], int], b: tuple[list[tuple[float, int]], int]) -> dict[str, Any]:
    def per_turn(sessions: list[tuple[float, int]]) -> float | None:
        turns = sum(n for _, n in sessions)
        return math.fsum(c for c, _ in sessions) / turns if turns else None

    (sessions_a, of_a), (sessions_b, of_b) = a, b
    mean_a, mean_b = per_turn(sessions_a), per_turn(sessions_b)
    row: dict[str, Any] = {
        "metric": "cost_usd_per_turn", "unit": "USD", "baseline": mean_a, "current": mean_b,
        "relative_change": _relative(mean_a, mean_b),
        "n_baseline": len(sessions_a), "n_current": len(sessions_b),
        "coverage": {"baseline": {"captured": len(sessions_a), "of": of_a},
                     "current": {"captured": len(sessions_b), "of": of_b}},
    }
    if len(sessions_a) < MIN_SAMPLES or len(sessions_b) < MIN_SAMPLES:
        return row | {"test": None, "p_value": None, "verdict": INSUFFICIENT}
    p = mann_whitney_u(sorted(c / n for c, n in sessions_a), sorted(c / n for c, n in sessions_b))
    change = row["relative_change"] or 0.0
    return row | {"test": "mann-whitney-u on per-session cost per turn", "p_value": p,
                  "verdict": _verdict(p, change >= MIN_RELATIVE_CHANGE, change <= -MIN_RELATIVE_CHANGE)}


def _window(q: Query, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "since": iso(q.since_ms), "until": iso(q.until_ms), "since_ms": q.since_ms, "until_ms": q.until_ms,
        "coverage": report["coverage"],
        "turns": {k: report["turns"][k] for k in ("count", "open", "by_outcome", "completion_rate", "failure_rate",
                                                  "derived")},
        "turn_wall_ms": report["turns"]["wall_ms"],
        "api_latency_ms": report["api_calls"]["latency_ms"],
        "ttft_ms": report["api_calls"]["ttft_ms"],
        "cost": report["api_calls"]["cost"],
    }


def compare(db: Db, baseline: Query, current: Query) -> dict[str, Any]:
    """Compare ``current`` against ``baseline`` (same filters expected): verdict per metric."""
    baseline, current = replace(baseline, group_by=()), replace(current, group_by=())  # no breakdowns needed
    with open_db(db) as conn:
        a, b = collect(conn, baseline), collect(conn, current)
        costs_a, costs_b = session_turn_costs(conn, baseline), session_turn_costs(conn, current)
    report_a, report_b = build_report(a), build_report(b)
    values_a, values_b = a.slice().values, b.slice().values
    window_a, window_b = _window(baseline, report_a), _window(current, report_b)
    metrics = [
        _p95_metric("turn_wall_ms_p95", values_a.get("wall_ms", []), values_b.get("wall_ms", []))
        | _p95_method(window_a["turn_wall_ms"], window_b["turn_wall_ms"]),
        _p95_metric("api_latency_ms_p95", values_a.get("latency_ms", []), values_b.get("latency_ms", []))
        | _p95_method(window_a["api_latency_ms"], window_b["api_latency_ms"]),
        _p95_metric("ttft_ms_p95", values_a.get("ttft_ms", []), values_b.get("ttft_ms", []))
        | _p95_method(window_a["ttft_ms"], window_b["ttft_ms"]),
        _rate_metric("turn_failure_rate", report_a["turns"]["failure_rate"], report_b["turns"]["failure_rate"]),
        _cost_metric(costs_a, costs_b),
    ]
    return {
        "schema": COMPARE_SCHEMA,
        "filters": dict(current.filters),
        "baseline": window_a,
        "current": window_b,
        "method": {"alpha": ALPHA, "min_relative_change": MIN_RELATIVE_CHANGE,
                   "min_rate_change": MIN_RATE_CHANGE, "min_samples": MIN_SAMPLES},
        "metrics": metrics,
        "regressions": [m["metric"] for m in metrics if m["verdict"] == REGRESSION],
        "improvements": [m["metric"] for m in metrics if m["verdict"] == IMPROVEMENT],
    }
