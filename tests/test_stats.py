"""Tests for hermetry.analytics.stats against hand-computed and published values.

Percentiles are Hyndman & Fan type 7 (numpy's default): h = (n - 1) * q / 100, then linear
interpolation between the values at ranks floor(h) and floor(h) + 1 (0-based).

Wilson intervals are checked against Newcombe (1998), "Two-sided confidence intervals for the
single proportion: comparison of seven methods", Statistics in Medicine 17:857-872, Table I
(method 3, score interval without continuity correction), which prints them to 4 decimals.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermetry.analytics.stats import percentile, rate, summarize, wilson_interval

# -- percentiles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),  # h = 1.5  -> 2 + 0.5 * (3 - 2)
        ([1, 2, 3, 4], 95, 3.85),  # h = 2.85 -> 3 + 0.85 * (4 - 3)
        ([1, 2, 3, 4], 25, 1.75),  # h = 0.75 -> 1 + 0.75 * (2 - 1)
        ([1, 2, 3, 4], 0, 1.0),
        ([1, 2, 3, 4], 100, 4.0),
        ([10, 20, 30, 40, 50], 90, 46.0),  # h = 3.6 -> 40 + 0.6 * 10
        ([10, 20, 30, 40, 50], 50, 30.0),  # h = 2 exactly: the middle value
        ([0, 100], 99, 99.0),  # h = 0.99
        ([100, 200, 400, 800], 99, 788.0),  # h = 2.97 -> 400 + 0.97 * 400
    ],
)
def test_percentile_hand_computed(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected, abs=1e-12)


def test_percentile_single_value_and_empty() -> None:
    for q in (0, 50, 95, 99, 100):
        assert percentile([7.5], q) == 7.5
        assert percentile([], q) is None


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=60),
    st.data(),
)
def test_percentile_exact_ranks_and_bounds(values: list[float], data: st.DataObject) -> None:
    s = sorted(values)
    n = len(s)
    # a q that lands exactly on rank k returns the k-th smallest value
    k = data.draw(st.integers(0, n - 1))
    assert percentile(s, 100.0 * k / (n - 1)) == pytest.approx(s[k], rel=1e-9, abs=1e-6)
    # any q lies between min and max, and the function is monotone in q
    q1, q2 = sorted(data.draw(st.lists(st.floats(0, 100), min_size=2, max_size=2)))
    p1, p2 = percentile(s, q1), percentile(s, q2)
    assert p1 is not None and p2 is not None
    assert s[0] - 1e-6 <= p1 <= p2 + 1e-6
    assert p2 <= s[-1] + 1e-6


def test_summarize_counts_only_captured_values() -> None:
    d = summarize([1.0, 2.0, 3.0, 4.0], of=6)  # 4 captured of 6 rows
    assert d["count"] == 4
    assert d["coverage"] == {"captured": 4, "of": 6}
    assert d["avg"] == 2.5
    assert d["p50"] == 2.5
    assert d["p95"] == pytest.approx(3.85)
    assert d["max"] == 4.0
    empty = summarize([], of=10)
    assert empty["count"] == 0 and empty["avg"] is None and empty["p50"] is None
    assert empty["max"] is None and empty["coverage"] == {"captured": 0, "of": 10}


# -- Wilson score interval ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),
        # Newcombe (1998), Table I, method 3
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_published_values(successes: int, n: int, low: float, high: float) -> None:
    ci = wilson_interval(successes, n)
    assert ci is not None
    assert ci[0] == pytest.approx(low, abs=1e-4)
    assert ci[1] == pytest.approx(high, abs=1e-4)


def test_wilson_no_trials_is_none() -> None:
    assert wilson_interval(0, 0) is None
    r = rate(0, 0)
    assert r["value"] is None and r["ci95_low"] is None and r["ci95_high"] is None
    assert r["n"] == 0


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 10, 13, 25, 27, 100, 1000])
def test_wilson_extremes_are_exact(n: int) -> None:
    """0/n has lower bound exactly 0 and n/n upper bound exactly 1 (not 1e-17 / 0.9999999)."""
    zero = wilson_interval(0, n)
    full = wilson_interval(n, n)
    assert zero is not None and full is not None
    assert zero[0] == 0.0
    assert full[1] == 1.0
    # symmetry: the interval of n-k is the mirror of that of k
    assert zero[1] == pytest.approx(1 - full[0], abs=1e-12)


def test_wilson_symmetric_formula() -> None:
    # the closed form, written out independently, for one mid-range case
    s, n, z = 37, 90, 1.959963984540054
    p = s / n
    centre = (2 * n * p + z * z) / (2 * (n + z * z))
    half = z * math.sqrt(z * z + 4 * n * p * (1 - p)) / (2 * (n + z * z))
    assert wilson_interval(s, n) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_rate_reports_value_interval_and_sample_size() -> None:
    r = rate(8, 10)
    assert r["value"] == 0.8 and r["successes"] == 8 and r["n"] == 10
    assert r["ci95_low"] == pytest.approx(0.4902, abs=1e-4)
    assert r["ci95_high"] == pytest.approx(0.9433, abs=1e-4)


@given(st.integers(1, 100_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_estimate_within_unit_interval(sn: tuple[int, int]) -> None:
    successes, n = sn
    ci = wilson_interval(successes, n)
    assert ci is not None
    low, high = ci
    p = successes / n
    assert 0.0 <= low <= p <= high <= 1.0
