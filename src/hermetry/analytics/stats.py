"""The statistics every report uses: exact percentiles and binomial confidence intervals.

Percentiles are exact over the stored values, by linear interpolation between the two
nearest ranks (Hyndman & Fan type 7 — the default of numpy and of most spreadsheets).
Rates carry a 95% Wilson score interval and their sample size, so a rate from 3 runs is
not read like a rate from 3,000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054


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


def distribution(values: Sequence[float | None], of: int | None = None) -> dict[str, Any]:
    """count/avg/p50/p95/p99/max of the captured values, and how many of ``of`` were captured."""
    captured = sorted(v for v in values if v is not None)
    n = len(captured)
    total = len(values) if of is None else of
    return {
        "count": n,
        "avg": (math.fsum(captured) / n) if n else None,
        "p50": percentile(captured, 50),
        "p95": percentile(captured, 95),
        "p99": percentile(captured, 99),
        "max": float(captured[-1]) if n else None,
        "coverage": {"captured": n, "of": total},
    }


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval for a binomial proportion; None when n == 0."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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
