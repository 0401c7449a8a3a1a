"""How a figure reads: durations, counts, plurals, rates, money and times — one format for each.

Every surface (the rich tables, plain output, the ``/telemetry`` chat text, the demo) formats
through these functions, so ``1,234`` looks the same in a header and in a table, a duration
of three days prints as ``3.1 d`` rather than ``4,535.7 min``, and an unknown value is ``—``
("not captured") everywhere. Formatting only: no figure is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any

# a percentile summary's ``method`` (docs/json.md): exact, or approximate (from the rollups' sketches)
from hermetry.analytics.stats import APPROXIMATE, EXACT  # noqa: F401 - the one definition
from hermetry.model.units import DAY_MS, HOUR_MS, MINUTE_MS

#: A value that was not captured (JSON ``null``). Never ``0``.
NA = "—"
#: A count the rollup path does not compute (JSON ``null``, ``method.null_in_rollups`` says why):
#: captured, but only ``--exact`` counts it.
NOT_COUNTED = "n/c"
#: After a known cost: some billable calls could not be priced, so the known cost is a lower bound.
UNPRICED = "+?"
#: The cost of calls paid by a subscription (Hermes' ``cost_status = included``).
INCLUDED = "included"
#: A session's per-session totals after ``hermetry prune`` deleted its rows (JSON ``null``, ``pruned``).
PRUNED = "pruned"

#: Every symbol a report may print, with what it means (the legend prints those a report used).
SYMBOLS: dict[str, str] = {
    NA: "not captured",
    NOT_COUNTED: "not counted on the rollup path of a large window (--exact counts it)",
    UNPRICED: "some calls unpriced",
    INCLUDED: "by subscription",
    "n=": "sample size",
    "≥": "at least",
    "✗": "failed API calls",
    "+N": "sessions rolled into the conversation",
    "▁▇": "per-day sparkline",
    "█▓░": "model calls, tool calls, Hermes' own work",
    "≈": "approximate percentile (from hourly rollups, within the relative error stated)",
    PRUNED: "rows deleted by hermetry prune (rollups keep the totals: hermetry insights)",
}

#: What an approximate marker is, once per table: the JSON's relative error as a reader says it.
APPROX_MARK = "≈"

_MINUTE, _HOUR, _DAY = float(MINUTE_MS), float(HOUR_MS), float(DAY_MS)


def duration(ms: float | None) -> str:
    """A duration a person reads: ``812 ms``, ``1.53 s``, ``4.5 min``, ``2.3 h``, ``3.1 d``."""
    if ms is None or (isinstance(ms, float) and not math.isfinite(ms)):
        return NA
    value = float(ms)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 999.5:
        return f"{sign}{value:.0f} ms"
    if value < 59_995:
        return f"{sign}{value / 1000:.2f} s" if value < 9_995 else f"{sign}{value / 1000:.1f} s"
    if value < _HOUR - 3_000:
        return f"{sign}{value / _MINUTE:.1f} min"
    if value < _DAY - 180_000:
        return f"{sign}{value / _HOUR:.1f} h"
    return f"{sign}{value / _DAY:,.1f} d"


def count(value: int | float | None) -> str:
    """A whole number with thousands separators (``12,345``); ``—`` when not captured."""
    if value is None:
        return NA
    return f"{value:,.0f}"


def number(value: float | None, places: int = 1) -> str:
    """A fractional figure (an average): ``1.3``, ``1,204.5``; whole values keep their decimals."""
    return NA if value is None else f"{value:,.{places}f}"


def plural(n: int | float | None, noun: str, plural_noun: str | None = None) -> str:
    """``1 call``, ``2 calls``, ``1,204 sessions``; ``— calls`` when not captured."""
    if n is None:
        return f"{NA} {plural_noun or noun + 's'}"
    word = noun if n == 1 else (plural_noun or (noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou"
                                                else noun + "s"))
    return f"{count(n)} {word}"


def percent(value: float | None, places: int = 0) -> str:
    return NA if value is None else f"{value * 100:.{places}f}%"


def rate(r: dict[str, Any] | None) -> str:
    """A rate with its 95% interval and sample size: ``92% (85–96%, n=40)``."""
    if not r or r.get("value") is None:
        return NA
    return f"{r['value'] * 100:.0f}% ({r['ci95_low'] * 100:.0f}–{r['ci95_high'] * 100:.0f}%, n={r['n']:,})"


def rate_short(r: dict[str, Any] | None) -> str:
    """A rate and its sample size, for tables: ``67% n=3``."""
    if not r or r.get("value") is None:
        return NA
    return f"{r['value'] * 100:.0f}% n={r['n']:,}"


def usd(value: float | None) -> str:
    """Dollars (``$12.40``, ``$0.00123``): sub-cent costs never print as ``$0.00``."""
    if value is None:
        return NA
    global _format_usd
    if _format_usd is None:
        from hermetry.cost import format_usd

        _format_usd = format_usd
    return _format_usd(value)


_format_usd: Any = None


def cost_short(cost: dict[str, Any]) -> str:
    """A cost for a table cell: ``$0.0124``, ``$0.0124 +?`` (some calls unpriced), ``included``
    (every priced call paid by a subscription), ``unknown`` (none could be priced), ``—``."""
    known = cost.get("known_usd")
    calls = cost.get("calls", {})
    unknown, included = calls.get("unknown", 0), calls.get("included", 0)
    if known is None:
        if unknown:
            return "unknown"
        return INCLUDED if included else NA
    return f"{usd(known)}{' ' + UNPRICED if unknown else ''}"


def cost_line(cost: dict[str, Any]) -> str:
    """``$12.40 actual + $3.10 estimated; 41 calls unpriced`` — unknown never becomes $0."""
    calls = cost.get("calls", {})
    parts = []
    if cost.get("actual_usd") is not None:
        parts.append(f"{usd(cost['actual_usd'])} actual")
    if cost.get("estimated_usd") is not None:
        parts.append(f"{usd(cost['estimated_usd'])} estimated")
    text = " + ".join(parts)
    extras = []
    if calls.get("included"):
        extras.append(f"{plural(calls['included'], 'call')} {INCLUDED} (subscription)")
    if calls.get("unknown"):
        extras.append(f"{plural(calls['unknown'], 'call')} unpriced")
    if parts and calls.get("unknown"):
        text = "≥ " + text
    if extras:
        text = "; ".join(([text] if text else []) + [", ".join(extras)])
    return text or NA


def coverage(d: dict[str, Any], noun: str = "calls") -> str:
    """``14/22 calls · 9/12 sessions``: how much of the data a figure covers."""
    cov = d.get("coverage") or {}
    text = f"{count(cov.get('captured', 0))}/{count(cov.get('of', 0))} {noun}"
    sessions = d.get("session_coverage")
    if sessions:
        text += f" · {count(sessions['captured'])}/{count(sessions['of'])} sessions"
    return text


def relative_error(e: float | None) -> str:
    """``≤1 % rel. err`` for a relative error of 0.01 (``≤0.5 % rel. err`` for 0.005)."""
    return "approximate" if e is None else f"≤{e * 100:.2g} % rel. err"


def _methods(summaries: Iterable[dict[str, Any] | None]) -> list[tuple[str, float | None]]:
    """(method, relative error) of each summary that has values and says how it was computed."""
    out = []
    for d in summaries:
        if d and d.get("count") and d.get("method"):
            out.append((str(d["method"]), d.get("relative_error")))
    return out


def percentile_method(summaries: Iterable[dict[str, Any] | None]) -> str:
    """How the percentiles of a table were computed, said once: ``exact``, ``≤1 % rel. err``,
    ``mixed: ≈ ≤1 % rel. err, others exact`` — or ``""`` when no summary says (an older report).

    Summaries without values (nothing captured) say nothing either way and are left out.
    """
    methods = _methods(summaries)
    if not methods:
        return ""
    approx = [e for m, e in methods if m != EXACT]
    if not approx:
        return EXACT
    worst = max((e for e in approx if e is not None), default=None)
    if len(approx) == len(methods):
        return relative_error(worst)
    return f"mixed: {APPROX_MARK} {relative_error(worst)}, others exact"


def percentile_mark(d: dict[str, Any] | None, table_method: str) -> str:
    """`` ≈`` after a figure whose percentiles are approximate, in a table that mixes methods."""
    if not table_method.startswith("mixed") or not d or not d.get("count"):
        return ""
    return f" {APPROX_MARK}" if d.get("method") not in (None, EXACT) else ""


def percentiles_titled(title: str, summaries: Iterable[dict[str, Any] | None], what: str = "percentiles") -> str:
    """``Latency · percentiles exact`` / ``Latency · percentiles ≤1 % rel. err``: a table's title
    that says once how its percentiles were computed (unchanged when no summary says)."""
    method = percentile_method(summaries)
    return f"{title} · {what} {method}" if method else title


# ---------------------------------------------------------------------------------------------
# Times: local with the zone by default, UTC on request
# ---------------------------------------------------------------------------------------------

def local_zone() -> tzinfo:
    """The zone of this machine (``TZ``), as the operator's clock shows it."""
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else UTC


def zone_name(tz: tzinfo | None, at_ms: float | None = None) -> str:
    """``CET``, ``UTC``, or the offset (``UTC+05:30``) where the zone has no abbreviation."""
    zone = tz or local_zone()
    when = datetime.fromtimestamp((at_ms or 0) / 1000, tz=UTC).astimezone(zone) if at_ms else datetime.now(zone)
    name = when.tzname() or ""
    if name and name[0] not in "+-" and not name[0].isdigit():
        return name
    offset = when.utcoffset()
    if offset is None or not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    return f"UTC{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _dt(ms: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz or local_zone())


def when(ms: float | None, tz: tzinfo | None = None, *, zone: bool = True) -> str:
    """``2026-11-25 16:13 CET`` (minutes; the zone unless ``zone=False``)."""
    if ms is None:
        return NA
    text = _dt(ms, tz).strftime("%Y-%m-%d %H:%M")
    return f"{text} {zone_name(tz, ms)}" if zone else text


def when_short(ms: float | None, tz: tzinfo | None = None) -> str:
    """``11-25 16:13`` for a table whose header names the zone."""
    return NA if ms is None else _dt(ms, tz).strftime("%m-%d %H:%M")


def window(since_ms: float | None, until_ms: float | None, tz: tzinfo | None = None) -> str:
    """``2026-11-24 16:21 → 2026-11-25 16:21 CET``."""
    if since_ms is None and until_ms is None:
        return "all time"
    zone = zone_name(tz, until_ms or since_ms)
    return f"{when(since_ms, tz, zone=False)} → {when(until_ms, tz, zone=False)} {zone}"


def day_label(ms: float, tz: tzinfo | None = None) -> str:
    return _dt(ms, tz).strftime("%b %d")


# ---------------------------------------------------------------------------------------------
# Legend
# ---------------------------------------------------------------------------------------------

def legend(text: str, symbols: Iterable[str] = ()) -> str:
    """One line naming the symbols that ``text`` uses (and any given), in ``SYMBOLS`` order."""
    wanted = set(symbols)
    used = []
    for sym, meaning in SYMBOLS.items():
        probe = {"+N": None, PRUNED: None, "▁▇": None, "█▓░": None, "≥": "≥ ", "n=": "n=", "≈": " ≈"}.get(sym, sym)
        if sym in wanted or (probe is not None and probe in text):
            used.append(f"{sym} {meaning}")
    return ("Legend: " + " · ".join(used)) if used else ""
