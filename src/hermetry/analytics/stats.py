"""The statistics every report uses: exact percentiles, binomial intervals and significance tests.

Percentiles are exact over the stored values, by linear interpolation between the two
nearest ranks (Hyndman & Fan type 7 — the default of numpy, R and most spreadsheets, and
``statistics.quantiles(method="inclusive")``). Rates carry a 95% Wilson score interval and
their sample size, so a rate from 3 runs is not read like a rate from 3,000.

The tests used by ``hermetry compare`` (docs/cli.md states when each is used):

* two proportions: a two-sided two-proportion z-test with a pooled variance, or Fisher's exact
  test when any cell of the 2×2 table expects fewer than 5 observations;
* two distributions: the Mann-Whitney U test (normal approximation, tie-corrected, with a
  continuity correction).

Standard library only.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any

from hermetry.model.sketch import Sketch

Z95 = 1.959963984540054

#: ``summarize(…)["method"]``: percentiles over every stored value, or from rollup sketches
#: (within ``relative_error`` of the exact value; count, avg and max stay exact).
EXACT, APPROXIMATE = "exact", "approximate"

#: Below this expected count in any cell, proportions are compared with Fisher's exact test.
FISHER_BELOW_EXPECTED = 5.0


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of already-sorted values; None for no values."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return float(sorted_values[0])
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo]))


def summarize(values: Sequence[float] | Sketch, of: int, sessions: tuple[int, int] | None = None) -> dict[str, Any]:
    """count/avg/p50/p95/p99/max of captured values, and how many of ``of`` rows were captured.

    ``values`` are the sorted values themselves (exact percentiles, ``"method": "exact"``) or a
    :class:`~hermetry.model.sketch.Sketch` of them (rollups: count, avg and max exact, percentiles
    within ``relative_error`` of the exact ones, ``"method": "approximate"``).

    ``sessions`` (captured, of) adds ``session_coverage``: in how many sessions at least one
    value was captured, of the sessions that had such rows.
    """
    if isinstance(values, Sketch):
        values.settle()  # a partial hour's rollup minus raw rows: its min/max proven, or estimated
        n = values.count
        out: dict[str, Any] = {
            "count": n,
            "avg": values.sum / n if n else None,
            "p50": values.quantile(0.50),
            "p95": values.quantile(0.95),
            "p99": values.quantile(0.99),
            "max": float(values.max) if n else None,
            "coverage": {"captured": n, "of": of},
            "method": APPROXIMATE,
            "relative_error": values.alpha,
        }
        if values.unsettled:  # not proven exact (the report reads them exactly; another caller may not)
            out["estimated"] = list(values.unsettled)
    else:
        n = len(values)
        out = {
            "count": n,
            "avg": (math.fsum(values) / n) if n else None,
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
            "max": float(values[-1]) if n else None,
            "coverage": {"captured": n, "of": of},
            "method": EXACT,
            "relative_error": None,
        }
    if sessions is not None:
        out["session_coverage"] = {"captured": sessions[0], "of": sessions[1]}
    return out


def histogram(sorted_values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts of sorted values in ``[edges[i], edges[i+1])``; the last bucket is open-ended."""
    counts = []
    for i, lo in enumerate(edges):
        start = bisect_left(sorted_values, lo)
        end = bisect_left(sorted_values, edges[i + 1]) if i + 1 < len(edges) else len(sorted_values)
        counts.append(end - start)
    return counts


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval for a binomial proportion; None when n == 0."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval always contains p; rounding must not push 0/n above 0 or n/n below 1
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def rate(successes: int, n: int) -> dict[str, Any]:
    """A proportion with its interval and sample size (value None when n == 0)."""
    ci = wilson_interval(successes, n)
    return {
        "value": successes / n if n else None,
        "ci95_low": ci[0] if ci else None,
        "ci95_high": ci[1] if ci else None,
        "successes": successes,
        "n": n,
    }


def count_above(sorted_values: Sequence[float], threshold: float) -> int:
    """How many sorted values are strictly above ``threshold``."""
    return len(sorted_values) - bisect_right(sorted_values, threshold)


# ---------------------------------------------------------------------------------------------
# Significance tests (two-sided p-values)
# ---------------------------------------------------------------------------------------------

def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(x_a: int, n_a: int, x_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test for x_a/n_a vs x_b/n_b.

    Sums the hypergeometric probabilities of every table (same margins) no more likely than
    the observed one.
    """
    k, n = x_a + x_b, n_a + n_b
    lo, hi = max(0, k - n_b), min(k, n_a)
    log_denominator = _log_choose(n, k)

    def p(x: int) -> float:
        return math.exp(_log_choose(n_a, x) + _log_choose(n_b, k - x) - log_denominator)

    observed = p(x_a)
    total = math.fsum(q for x in range(lo, hi + 1) if (q := p(x)) <= observed * (1 + 1e-7))
    return min(1.0, total)


def two_proportion_test(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[str, float | None]:
    """(test name, two-sided p-value) for x_a/n_a vs x_b/n_b; p is None when a side is empty."""
    if n_a <= 0 or n_b <= 0:
        return "none", None
    k, n = x_a + x_b, n_a + n_b
    expected = (n_a * k / n, n_a * (n - k) / n, n_b * k / n, n_b * (n - k) / n)
    if min(expected) < FISHER_BELOW_EXPECTED and min(k, n - k, n_a, n_b) <= 100_000:
        return "fisher-exact", fisher_exact(x_a, n_a, x_b, n_b)
    pooled = k / n
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return "two-proportion-z", 1.0
    z = (x_b / n_b - x_a / n_a) / se
    return "two-proportion-z", min(1.0, 2 * normal_sf(abs(z)))


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the Mann-Whitney U test for sorted samples ``a`` and ``b``.

    Normal approximation with the tie correction and a 0.5 continuity correction; None when
    either sample is empty.
    """
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        return None
    # merge the two sorted samples, giving tied values their average rank
    rank_sum_b = 0.0
    tie_term = 0.0
    i = j = 0
    rank = 0
    while i < n_a or j < n_b:
        value = a[i] if j >= n_b or (i < n_a and a[i] <= b[j]) else b[j]
        in_a = in_b = 0
        while i < n_a and a[i] == value:
            i += 1
            in_a += 1
        while j < n_b and b[j] == value:
            j += 1
            in_b += 1
        t = in_a + in_b
        average_rank = rank + (t + 1) / 2
        rank += t
        rank_sum_b += in_b * average_rank
        if t > 1:
            tie_term += t**3 - t
    u_b = rank_sum_b - n_b * (n_b + 1) / 2
    mean = n_a * n_b / 2
    n = n_a + n_b
    variance = n_a * n_b / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0
    z = (abs(u_b - mean) - 0.5) / math.sqrt(variance)
    return min(1.0, 2 * normal_sf(max(z, 0.0)))
