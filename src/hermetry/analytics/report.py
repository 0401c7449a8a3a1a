"""One analytics call, many views: ``insights()`` returns the report every surface shows.

The CLI tables, ``--json``, the ``/telemetry`` slash command and the dashboard all render
this one structure; none of them computes a number of its own.

Conventions (docs/json.md documents the JSON):

* units are in the keys (``*_ms``, ``*_tokens``, ``*_usd``);
* ``null`` means "not captured", never zero, and every distribution says how many of the
  rows it covers (``coverage: {captured, of}``);
* turns still open (running, or not yet reconciled) are counted as ``open`` and excluded
  from the rates;
* a turn's source, model and profile are its session's; an API call's model and provider
  are the call's own.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hermetry.analytics.stats import distribution, rate
from hermetry.model.outcomes import OutcomeClass, TurnOutcome, turn_outcome_class
from hermetry.stores.sqlite import connect

REPORT_SCHEMA = "hermetry.insights.v1"

#: Dimensions a report can be broken down by, and the column that holds each.
DIMENSIONS = ("source", "model", "provider", "session_type", "profile", "day")
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


@dataclass(frozen=True)
class Query:
    """What to report on: a time window, filters, and breakdowns."""

    since_ms: float
    until_ms: float
    filters: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("source", "model")

    @classmethod
    def last_days(cls, days: float, *, now_ms: float | None = None, **kw: Any) -> Query:
        until = now_ms if now_ms is not None else time.time() * 1000
        return cls(since_ms=until - days * 86_400_000, until_ms=until, **kw)


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _where(alias_time: str, q: Query, session_alias: str = "s", own: dict[str, str] | None = None) -> tuple[str, list[Any]]:
    clauses = [f"{alias_time} >= ?", f"{alias_time} < ?"]
    params: list[Any] = [q.since_ms, q.until_ms]
    for key, value in q.filters.items():
        if key not in DIMENSIONS or key == "day":
            raise ValueError(f"unknown filter {key!r} (use one of {', '.join(DIMENSIONS[:-1])})")
        column = (own or {}).get(key, f"{session_alias}.{key}")
        clauses.append(f"{column} = ?")
        params.append(value)
    return " AND ".join(clauses), params


_DAY = "strftime('%Y-%m-%d', {t} / 1000.0, 'unixepoch')"


def _turn_rows(conn: sqlite3.Connection, q: Query) -> list[sqlite3.Row]:
    where, params = _where("t.started_at_ms", q)
    return conn.execute(
        f"""SELECT t.turn_id, t.session_id, t.wall_ms, t.outcome, t.queue_wait_ms,
                   s.source, s.model, s.provider, s.session_type, s.profile,
                   {_DAY.format(t='t.started_at_ms')} AS day
            FROM turns t LEFT JOIN sessions s ON s.session_id = t.session_id
            WHERE {where}""",
        params,
    ).fetchall()


def _api_rows(conn: sqlite3.Connection, q: Query) -> list[sqlite3.Row]:
    where, params = _where("a.started_at_ms", q, own={"model": "a.model", "provider": "a.provider"})
    return conn.execute(
        f"""SELECT a.session_id, a.latency_ms, a.ttft_ms, a.status, a.streamed,
                   a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_write_tokens,
                   a.reasoning_tokens, a.cost_usd, a.cost_status, a.error_type, a.origin,
                   s.source, a.model, a.provider, s.session_type, s.profile,
                   {_DAY.format(t='a.started_at_ms')} AS day
            FROM api_calls a LEFT JOIN sessions s ON s.session_id = a.session_id
            WHERE {where}""",
        params,
    ).fetchall()


def _tool_rows(conn: sqlite3.Connection, q: Query) -> list[sqlite3.Row]:
    where, params = _where("c.started_at_ms", q)
    return conn.execute(
        f"""SELECT c.session_id, c.tool_name, c.toolset, c.latency_ms, c.status,
                   s.source, s.model, s.provider, s.session_type, s.profile,
                   {_DAY.format(t='c.started_at_ms')} AS day
            FROM tool_calls c LEFT JOIN sessions s ON s.session_id = c.session_id
            WHERE {where}""",
        params,
    ).fetchall()


def _turn_summary(rows: Sequence[sqlite3.Row]) -> dict[str, Any]:
    by_outcome: dict[str, int] = defaultdict(int)
    classes: dict[str, int] = defaultdict(int)
    for r in rows:
        outcome = r["outcome"] or "open"
        by_outcome[outcome] += 1
        if r["outcome"]:
            classes[turn_outcome_class(r["outcome"])] += 1
    ended = sum(classes.values())
    return {
        "count": len(rows),
        "open": by_outcome.get("open", 0),
        "by_outcome": dict(sorted(by_outcome.items())),
        "completion_rate": rate(by_outcome.get(TurnOutcome.COMPLETED, 0), ended),
        "failure_rate": rate(classes.get(OutcomeClass.FAILURE, 0), ended),
        "wall_ms": distribution([r["wall_ms"] for r in rows if r["outcome"]]),
        "queue_wait_ms": distribution([r["queue_wait_ms"] for r in rows]),
    }


def _api_summary(rows: Sequence[sqlite3.Row]) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok"]
    with_usage = [r for r in ok if r["input_tokens"] is not None or r["output_tokens"] is not None]
    tokens: dict[str, Any] = {k: sum(r[k] or 0 for r in with_usage) for k in TOKEN_KINDS}
    tokens["total_tokens"] = (
        tokens["input_tokens"] + tokens["cache_read_tokens"] + tokens["cache_write_tokens"] + tokens["output_tokens"]
    )
    tokens["coverage"] = {"captured": len(with_usage), "of": len(ok)}
    errors = len(rows) - len(ok)
    error_types: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["status"] != "ok":
            error_types[r["error_type"] or "unknown"] += 1
    return {
        "count": len(rows),
        "errors": errors,
        "error_rate": rate(errors, len(rows)),
        "error_types": dict(sorted(error_types.items())),
        "latency_ms": distribution([r["latency_ms"] for r in rows]),
        "ttft_ms": distribution([r["ttft_ms"] for r in ok]),
        "tokens": tokens,
        "cost": cost_summary(rows),
    }


def cost_summary(rows: Iterable[sqlite3.Row]) -> dict[str, Any]:
    """Cost split by provenance; unknown is counted, never summed as zero."""
    sums: dict[str, list[float]] = {"actual": [], "estimated": [], "included": []}
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["status"] != "ok" and r["cost_usd"] is None:
            continue  # a failed attempt that produced nothing billable
        status = r["cost_status"] or "unknown"
        if status in sums and r["cost_usd"] is not None:
            sums[status].append(float(r["cost_usd"]))
        elif status != "included":
            status = "unknown"
        counts[status] += 1
    actual = math.fsum(sums["actual"]) if sums["actual"] else None
    estimated = math.fsum(sums["estimated"]) if sums["estimated"] else None
    return {
        "actual_usd": actual,
        "estimated_usd": estimated,
        "known_usd": (actual or 0.0) + (estimated or 0.0) if (actual is not None or estimated is not None) else None,
        "calls": {k: counts.get(k, 0) for k in ("actual", "estimated", "included", "unknown")},
        "complete": counts.get("unknown", 0) == 0,
    }


def _tool_summary(rows: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
    by_tool: dict[str, list[sqlite3.Row]] = defaultdict(list)
    for r in rows:
        by_tool[r["tool_name"]].append(r)
    out = []
    for name, group in sorted(by_tool.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        failures = sum(1 for r in group if r["status"] != "ok")
        out.append(
            {
                "tool_name": name,
                "toolset": group[0]["toolset"],
                "calls": len(group),
                "failures": failures,
                "failure_rate": rate(failures, len(group)),
                "latency_ms": distribution([r["latency_ms"] for r in group]),
            }
        )
    return out


def _group(rows: Sequence[sqlite3.Row], dim: str) -> dict[str, list[sqlite3.Row]]:
    groups: dict[str, list[sqlite3.Row]] = defaultdict(list)
    for r in rows:
        key = r[dim]
        groups["(unknown)" if key is None else str(key)].append(r)
    return groups


def insights(db: str | Path | sqlite3.Connection, query: Query) -> dict[str, Any]:
    """The report for a window: coverage, turns and outcomes, latency, tokens, cost, tools, breakdowns."""
    for dim in query.group_by:
        if dim not in DIMENSIONS:
            raise ValueError(f"unknown breakdown {dim!r} (use one of {', '.join(DIMENSIONS)})")
    conn = db if isinstance(db, sqlite3.Connection) else _open(db)
    try:
        turns = _turn_rows(conn, query) if conn is not None else []
        calls = _api_rows(conn, query) if conn is not None else []
        tools = _tool_rows(conn, query) if conn is not None else []
        drops = _drops(conn) if conn is not None else 0
    finally:
        if conn is not None and not isinstance(db, sqlite3.Connection):
            conn.close()

    sessions = {r["session_id"] for r in turns} | {r["session_id"] for r in calls}
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "window": {"since": _iso(query.since_ms), "until": _iso(query.until_ms),
                   "days": round((query.until_ms - query.since_ms) / 86_400_000, 4)},
        "filters": dict(query.filters),
        "coverage": {"sessions": len(sessions), "turns": len(turns), "api_calls": len(calls),
                     "tool_calls": len(tools), "events_dropped": drops},
        "turns": _turn_summary(turns),
        "api_calls": _api_summary(calls),
        "tool_calls": {
            "count": len(tools),
            "failures": sum(1 for r in tools if r["status"] != "ok"),
            "failure_rate": rate(sum(1 for r in tools if r["status"] != "ok"), len(tools)),
            "latency_ms": distribution([r["latency_ms"] for r in tools]),
        },
        "tools": _tool_summary(tools),
        "breakdowns": {},
    }
    for dim in query.group_by:
        t_groups, a_groups = _group(turns, dim), _group(calls, dim)
        rows = []
        for key in sorted(set(t_groups) | set(a_groups)):
            t, a = t_groups.get(key, []), a_groups.get(key, [])
            rows.append({
                dim: key,
                "sessions": len({r["session_id"] for r in t} | {r["session_id"] for r in a}),
                "turns": _turn_summary(t),
                "api_calls": _api_summary(a),
            })
        report["breakdowns"][dim] = rows
    return report


def _open(path: str | Path) -> sqlite3.Connection | None:
    """Open the store read-only; a missing file is an empty history, not an error."""
    p = Path(path)
    if not p.exists():
        return None
    return connect(p, readonly=True)


def _drops(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT COALESCE(SUM(events_dropped), 0) FROM recorder_runs").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0
