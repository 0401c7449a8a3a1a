"""Series the report does not give: tool calls and failures per tool per UTC day.

``insights()`` already gives every figure *per day* (``group_by=("day",)``: distributions,
tokens, cost and rates for each day) and *per tool* (``tools``), but not both at once. The
dashboard's failure heatmap needs the cross product, so it lives here, with the report's own
definitions: a tool call belongs to the day it started in, a failure is a call whose status is
not ``ok``, and the window and filters are applied exactly as ``insights()`` applies them (the
report's :class:`~hermetry.analytics.report.Scanner`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hermetry.analytics.report import DAY_MS, TOOL_CALLS, Db, Query, Scanner, day_iso, iso, open_db
from hermetry.analytics.stats import rate

TOOL_DAILY_SCHEMA = "hermetry.tool_daily.v1"


def tool_daily(db: Db, query: Query) -> dict[str, Any]:
    """Per tool (most used first) and per UTC day of the window: calls, failures, failure rate.

    ``{"schema", "window", "filters", "days": [YYYY-MM-DD, …], "tools": [{"tool_name",
    "calls", "failures", "days": [{"day", "calls", "failures", "failure_rate"}, …]}, …]}`` —
    one entry per day of the window for every tool (a day without calls has zeros and a
    ``null`` rate).
    """
    query.check()
    first, last = int(query.since_ms // DAY_MS), int((query.until_ms - 1) // DAY_MS)
    day_numbers = list(range(first, last + 1))
    counts: dict[str | None, dict[int, list[int]]] = defaultdict(dict)
    with open_db(db) as conn:
        if conn is not None:
            scan = Scanner(conn, query)
            source, where, params = scan.scope(TOOL_CALLS, ["day"])
            day = TOOL_CALLS.column("day")
            sql = (f"SELECT c.tool_name, {day}, COUNT(*), SUM(CASE WHEN c.status = 'ok' THEN 0 ELSE 1 END) "
                   f"FROM {source} WHERE {where} GROUP BY c.tool_name, {day}")
            for name, day_number, n, failures in scan.execute(sql, params):
                counts[name][int(day_number)] = [int(n), int(failures)]
    tools: list[dict[str, Any]] = []
    for name, by_day in counts.items():
        days: list[dict[str, Any]] = []
        for d in day_numbers:
            n, failures = by_day.get(d, (0, 0))
            days.append({"day": day_iso(d), "calls": n, "failures": failures, "failure_rate": rate(failures, n)})
        tools.append({"tool_name": name, "calls": sum(v[0] for v in by_day.values()),
                      "failures": sum(v[1] for v in by_day.values()), "days": days})
    tools.sort(key=lambda t: (-t["calls"], str(t["tool_name"])))
    return {
        "schema": TOOL_DAILY_SCHEMA,
        "window": {"since": iso(query.since_ms), "until": iso(query.until_ms),
                   "since_ms": query.since_ms, "until_ms": query.until_ms},
        "filters": dict(query.filters),
        "days": [day_iso(d) for d in day_numbers],
        "tools": tools,
    }
