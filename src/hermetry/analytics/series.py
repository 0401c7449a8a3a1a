"""Series the report does not give: per hour, and tool failures per tool per UTC day.

``hourly()``: the report's turn, API-call and tool-call figures for each hour of a window —
``insights()`` breaks a window down by day only, which draws a day as one point.

``insights()`` already gives every figure *per day* (``group_by=("day",)``: distributions,
tokens, cost and rates for each day) and *per tool* (``tools``), but not both at once. The
dashboard's failure heatmap needs the cross product, so it lives here, with the report's own
definitions: a tool call belongs to the day it started in, a failure is what
:func:`hermetry.model.outcomes.tool_failed` calls one (via ``report.tool_counts``: an ``unknown``
status — e.g. every imported call — is neither ok nor failed, and the rate is over the calls
whose status is known, with that coverage), and the window and filters are applied exactly as
``insights()`` applies them (the report's :class:`~hermetry.analytics.report.Scanner`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hermetry.analytics.query import TOOL_CALLS, Query, Scanner, day_iso, iso
from hermetry.analytics.report import api_summary, collect, tool_counts, tool_summary, turn_summary
from hermetry.analytics.stats import rate
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.stores.reader import Db, open_db

TOOL_DAILY_SCHEMA = "hermetry.tool_daily.v1"
HOURLY_SCHEMA = "hermetry.hourly.v1"
#: A longer window is drawn per day (``insights(group_by=("day",))``), not per hour.
MAX_HOURLY_DAYS = 3


def hourly(db: Db, query: Query) -> dict[str, Any]:
    """For each UTC hour of the window (the first and last clipped to it), the figures
    ``insights()`` gives for that hour alone: ``turns`` (count, outcomes, rates, wall time,
    queue wait), ``api_calls`` (counts, latency, TTFT, tokens, cost) and ``tool_calls``.

    ``{"schema", "window", "filters", "hours": [{"hour", "since_ms", "until_ms", "turns",
    "api_calls", "tool_calls"}, …]}``. Each hour is one run of the report's own collection
    (``report.collect``), so every figure means exactly what it means in ``insights()``.
    At most ``MAX_HOURLY_DAYS`` days.
    """
    query.check()
    if query.until_ms - query.since_ms > MAX_HOURLY_DAYS * DAY_MS:
        raise ValueError(f"an hourly series covers at most {MAX_HOURLY_DAYS} days")
    hours: list[dict[str, Any]] = []
    with open_db(db) as conn:
        start = int(query.since_ms // HOUR_MS) * HOUR_MS
        while start < query.until_ms:
            since, until = max(float(start), query.since_ms), min(float(start + HOUR_MS), query.until_ms)
            total = collect(conn, Query(since, until, dict(query.filters), ())).slice()
            tools = tool_summary(total)
            hours.append({"hour": iso(start), "since_ms": since, "until_ms": until, "turns": turn_summary(total),
                          "api_calls": api_summary(total), "tool_calls": tools})
            start += HOUR_MS
    return {
        "schema": HOURLY_SCHEMA,
        "window": {"since": iso(query.since_ms), "until": iso(query.until_ms),
                   "since_ms": query.since_ms, "until_ms": query.until_ms},
        "filters": dict(query.filters),
        "hours": hours,
    }


def tool_daily(db: Db, query: Query) -> dict[str, Any]:
    """Per tool (most used first) and per UTC day of the window: calls, failures, failure rate.

    ``{"schema", "window", "filters", "days": [YYYY-MM-DD, …], "tools": [{"tool_name",
    "calls", "failures", "failure_rate", "status_coverage", "by_status", "days": [{"day",
    "calls", "failures", "failure_rate", "status_coverage"}, …]}, …]}`` — one entry per day of
    the window for every tool (a day without calls has zeros and a ``null`` rate). The rate is
    ``failures / calls with a known status`` (``status_coverage = {"captured", "of"}``), so a
    day of imported calls (status ``unknown``) has a ``null`` rate, not 100 %.
    """
    query.check()
    first, last = int(query.since_ms // DAY_MS), int((query.until_ms - 1) // DAY_MS)
    day_numbers = list(range(first, last + 1))
    # tool -> day -> status -> calls
    counts: dict[str | None, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    with open_db(db) as conn:
        if conn is not None:
            scan = Scanner(conn, query)
            source, where, params = scan.scope(TOOL_CALLS, ["day"])
            day = scan.column(TOOL_CALLS, "day")
            sql = (f"SELECT c.tool_name, {day}, c.status, COUNT(*) "
                   f"FROM {source} WHERE {where} GROUP BY c.tool_name, {day}, c.status")
            for name, day_number, status, n in scan.execute(sql, params):
                by_status = counts[name][int(day_number)]
                key = str(status) if status else "unknown"
                by_status[key] = by_status.get(key, 0) + int(n)

    def figures(by_status: dict[str, int]) -> dict[str, Any]:
        n = sum(by_status.values())
        failures, known = tool_counts(by_status)
        return {"calls": n, "failures": failures, "failure_rate": rate(failures, known),
                "status_coverage": {"captured": known, "of": n}}

    tools: list[dict[str, Any]] = []
    for name, by_day in counts.items():
        days = [{"day": day_iso(d), **figures(by_day.get(d, {}))} for d in day_numbers]
        total: dict[str, int] = defaultdict(int)
        for by_status in by_day.values():
            for status, n in by_status.items():
                total[status] += n
        tools.append({"tool_name": name, **figures(total), "by_status": dict(sorted(total.items())), "days": days})
    tools.sort(key=lambda t: (-t["calls"], str(t["tool_name"])))
    return {
        "schema": TOOL_DAILY_SCHEMA,
        "window": {"since": iso(query.since_ms), "until": iso(query.until_ms),
                   "since_ms": query.since_ms, "until_ms": query.until_ms},
        "filters": dict(query.filters),
        "days": [day_iso(d) for d in day_numbers],
        "tools": tools,
    }
