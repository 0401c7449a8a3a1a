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

import itertools
import math
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hermetry.analytics.query import SESSIONS, TURNS, Query, Scanner, iso
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
from hermetry.stores import rollups
from hermetry.stores.reader import Db, open_db
from hermetry.stores.sqlite_util import IN_CHUNK, chunks, placeholders

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
    sessions, billable, _ = _exact_costs(conn, q)
    return sessions, billable


def _exact_costs(conn: Any, q: Query) -> tuple[list[tuple[float, int]], int, int]:
    """:func:`session_turn_costs` and how many sessions had turns in the window."""
    scan = Scanner(conn, q)
    # 1. the window's turns per session
    source, where, params = scan.scope(TURNS)
    turns = {sid: int(n) for sid, n in scan.execute(
        f"SELECT t.session_id, COUNT(*) FROM {source} WHERE {where} GROUP BY t.session_id", params)}
    if not turns:
        return [], 0, 0
    # 2. their billable calls (a turn without any is a turn at no cost, not an unpriced call)
    known_sql, unpriced_sql = _priced_sql()
    sql = f"SELECT t.session_id, {known_sql}, {unpriced_sql} FROM {source} {_BILLABLE_JOIN} WHERE {where} GROUP BY t.session_id"
    out, billable = [], 0
    for sid, known, unpriced in scan.execute(sql, params):
        billable += 1
        if known is not None and not unpriced:
            out.append((float(known), turns[sid]))
    out.sort()  # the same list whatever order the store returned the groups in
    return out, billable, len(turns)


#: Above this many turns in a window (any filter aside; counted in the ``started_at_ms`` index), the
#: cost test reads a sample of the window's sessions instead of every turn joined to its model calls
#: (that join, over the ~120,000 turns of 2 days of the 1M-call benchmark history, took 10 s; 25–160 s
#: at 10M).
EXACT_MAX_TURNS = 40_000
#: The sessions a sampled cost test reads per window: the first by a hash of the session id
#: (:func:`_sample_key`), so a rerun, or the other store, reads the same ones. 5,000 per window puts
#: the standard error of the relative change of the mean at ~2 % × the per-session coefficient of
#: variation: a 10 % change (``MIN_RELATIVE_CHANGE``) stays detectable at ALPHA, while the read is
#: ~1 s a window at 10M calls (10,000: ~1.4 s; the join over every turn: 13–80 s).
SAMPLE_SESSIONS = 5_000


def _sample_key(session_id: str) -> int:
    """The order a sampled cost test takes sessions in: CRC-32 of the id (the same in every process and
    store; ~0.2 µs a session, where a cryptographic hash took 1.2 µs over 338,000 candidates)."""
    return zlib.crc32(session_id.encode())


def _in_hash_order(ids: list[str], wanted: int) -> Iterator[str]:
    """``ids`` by :func:`_sample_key` (ties by id), sorting only as many as are taken: those whose key
    falls below a threshold expected to hold ~1.5× ``wanted``, then the next band, and so on."""
    keyed = [(zlib.crc32(sid.encode()), sid) for sid in ids]
    lo, width = 0, max(1, int(2**32 * min(1.0, 1.5 * wanted / max(len(keyed), 1))))
    while lo < 2**32:
        hi = lo + width
        yield from (sid for _, sid in sorted(k for k in keyed if lo <= k[0] < hi))
        lo, width = hi, width * 2


@dataclass
class SessionCosts:
    """What the cost test read for one window (see :func:`session_costs`)."""

    #: (known cost in USD, turns) of each fully priced session read
    sessions: list[tuple[float, int]] = field(default_factory=list)
    #: sessions read that had billable calls (the coverage's "of")
    billable: int = 0
    #: sessions with turns in the window that were read (all of them, or the sample)
    read: int = 0
    #: sessions with turns in the window: exact (all read), or estimated from the sample (None: none)
    population: float | None = None
    sampled: bool = False
    #: the window reaches time whose raw rows were pruned (nothing read: no per-session costs there)
    pruned_before_ms: float | None = None


def session_costs(conn: Any, q: Query, *, sample: int | None = None) -> SessionCosts:
    """The cost test's units for one window (:func:`window_costs`)."""
    return window_costs(conn, [q], sample=sample)[0]


def window_costs(conn: Any, queries: Sequence[Query], *, sample: int | None = None) -> list[SessionCosts]:
    """The cost test's units for each window: :func:`session_turn_costs` over every turn while a window
    holds at most :data:`EXACT_MAX_TURNS` turns; above it a deterministic sample of its sessions
    (:func:`_sampled_costs`, ``sample`` = :data:`SAMPLE_SESSIONS`). Over time whose raw rows were pruned nothing is read (the
    rollups keep no session ids): the test is not run rather than run on the rows that happen to be left."""
    out = [SessionCosts() for _ in queries]
    if conn is None:
        return out
    boundary = rollups.pruned_before_ms(conn) if rollups.has_rollups(conn) else None
    cursor = conn.cursor()
    cursor.row_factory = None
    for i, q in enumerate(queries):
        if boundary is not None and q.since_ms < boundary:
            out[i].pruned_before_ms = boundary
            continue
        n_turns = int(cursor.execute("SELECT COUNT(*) FROM turns WHERE started_at_ms >= ? AND started_at_ms < ?",
                                     (q.since_ms, q.until_ms)).fetchone()[0])
        if n_turns > EXACT_MAX_TURNS:
            out[i] = _sampled_costs(conn, q, SAMPLE_SESSIONS if sample is None else sample, _candidates(conn, q))
        else:
            sessions, billable, read = _exact_costs(conn, q)
            out[i] = SessionCosts(sessions, billable, read, float(read))
    return out


def _session_filters(q: Query) -> tuple[list[str], list[Any], list[str], list[Any]]:
    """(session clauses, their parameters, turn clauses, their parameters) of ``q``'s filters: a tool or
    toolset filter keeps the turns that called it, as the exact path's scope does."""
    clauses, params, turn_clauses, turn_params = [], [], [], []
    for key, value in sorted(q.filters.items()):
        column = SESSIONS.column(key)
        if column is None:
            # correlated through the session's tool calls (the ``tool_calls_session`` index): an
            # ``IN (SELECT … FROM tool_calls …)`` is evaluated again in each batch's statement, a scan
            # of every tool call each time (review N11: 1M 5.5 → 17.9 s)
            turn_clauses.append(f"EXISTS (SELECT 1 FROM tool_calls c WHERE c.session_id = t.session_id "
                                f"AND c.turn_id = t.turn_id AND c.{'tool_name' if key == 'tool' else 'toolset'} = ?)")
            turn_params.append(value)
        else:
            clauses.append(f"{column} = ?")
            params.append(value)
    return clauses, params, turn_clauses, turn_params


def _candidates(conn: Any, q: Query) -> list[str]:
    """The sessions (after the window's session filters) that started before its end and had not ended
    before its start: one pass over the sessions table (a plain scan: the range is most of the table;
    ~0.35 s over 1M sessions). (One pass for both windows measured no faster: 2.4 s vs 2.4 s.)"""
    scan = Scanner(conn, q)
    clauses, params, _, _ = _session_filters(q)
    hint = " NOT INDEXED" if scan.dialect.name == "sqlite" else ""
    where = " AND ".join(["(s.started_at_ms IS NULL OR s.started_at_ms < ?)",
                          "(s.ended_at_ms IS NULL OR s.ended_at_ms >= ?)", *clauses])
    return [sid for (sid,) in scan.execute(f"SELECT s.session_id FROM sessions s{hint} WHERE {where}",
                                           [q.until_ms, q.since_ms, *params])]


def _priced_sql() -> tuple[str, str]:
    """(SQL: the known cost of a billable call, SQL: 1 for a billable call without a price) — a call is
    billable when it answered or has a cost; included calls count as priced at no extra cost."""
    priced = f"a.cost_status IN ('{CostStatus.ACTUAL}', '{CostStatus.ESTIMATED}') AND a.cost_usd IS NOT NULL"
    return (f"SUM(CASE WHEN {priced} THEN a.cost_usd END)",
            f"SUM(CASE WHEN NOT ({priced}) AND COALESCE(a.cost_status, '') <> '{CostStatus.INCLUDED}' THEN 1 ELSE 0 END)")


_BILLABLE_JOIN = f"JOIN api_calls a ON a.turn_id = t.turn_id AND (a.status = '{API_OK}' OR a.cost_usd IS NOT NULL)"


def _sampled_costs(conn: Any, q: Query, sample: int, found_ids: list[str]) -> SessionCosts:
    """The first ``sample`` sessions with turns in the window, by :func:`_sample_key`, and their costs.

    ``found_ids``: the window's candidates (:func:`_candidates`). Taken in hash order, 500 at a time:
    their turns in the window (the ``turns_session`` index: a session's rows, not the window's), until
    ``sample`` have turns there; then those sessions' turns joined to their billable calls, as the exact
    path does. ``population`` is estimated from the share of candidates that had turns (exact when
    every candidate was read). Turns whose session has no sessions row are not candidates (the exact
    path counts them)."""
    scan = Scanner(conn, q)
    out = SessionCosts(sampled=True)
    _, _, tool_clauses, tool_params = _session_filters(q)
    ordered = _in_hash_order(found_ids, sample)
    window = "t.started_at_ms >= ? AND t.started_at_ms < ?" + "".join(f" AND {c}" for c in tool_clauses)
    wparams = [q.since_ms, q.until_ms, *tool_params]
    turns: dict[str, int] = {}
    checked = hits = 0
    while len(turns) < sample and checked < len(found_ids):
        batch = list(itertools.islice(ordered, IN_CHUNK))
        checked += len(batch)
        found = dict(scan.execute(f"SELECT t.session_id, COUNT(*) FROM turns t WHERE t.session_id IN "
                                  f"({placeholders(len(batch))}) AND {window} GROUP BY t.session_id",
                                  [*batch, *wparams]).fetchall())
        hits += len(found)
        for sid in batch:  # in hash order, up to the sample
            if sid in found and len(turns) < sample:
                turns[sid] = int(found[sid])
    out.read = len(turns)
    seen_all = checked >= len(found_ids)
    out.sampled = not (seen_all and len(turns) == hits)  # every session with turns read (a filter left few)
    out.population = float(hits) if seen_all or not checked else len(found_ids) * hits / checked
    known_sql, unpriced_sql = _priced_sql()
    picked = list(turns)
    for ids in chunks(picked):
        for sid, known, unpriced in scan.execute(
                f"SELECT t.session_id, {known_sql}, {unpriced_sql} FROM turns t {_BILLABLE_JOIN} "
                f"WHERE t.session_id IN ({placeholders(len(ids))}) AND {window} GROUP BY t.session_id",
                [*ids, *wparams]):
            out.billable += 1
            if known is not None and not unpriced:
                out.sessions.append((float(known), turns[sid]))
    out.sessions.sort()  # the same list whatever order the store returned the groups in
    return out


def _cost_note(a: SessionCosts, b: SessionCosts) -> str | None:
    """What the text says under the table when the cost test read a sample, or could not run."""
    parts = []
    for name, c in (("baseline", a), ("current", b)):
        if c.pruned_before_ms is not None:
            parts.append(f"{name}: raw rows before {iso(c.pruned_before_ms)} were pruned (per-session costs "
                         "need them): not tested")
        elif c.sampled:
            parts.append(f"{name}: sampled {c.read:,} of ~{round(c.population or 0):,} sessions")
    if not parts:
        return None
    return "cost per turn: " + "; ".join(parts) + (" — its figures and test are the sample's"
                                                   if a.sampled or b.sampled else "")


def _cost_metric(a: SessionCosts, b: SessionCosts) -> dict[str, Any]:
    def per_turn(sessions: list[tuple[float, int]]) -> float | None:
        turns = sum(n for _, n in sessions)
        return math.fsum(c for c, _ in sessions) / turns if turns else None

    sessions_a, sessions_b = a.sessions, b.sessions
    mean_a, mean_b = per_turn(sessions_a), per_turn(sessions_b)
    row: dict[str, Any] = {
        "metric": "cost_usd_per_turn", "unit": "USD", "baseline": mean_a, "current": mean_b,
        "relative_change": _relative(mean_a, mean_b),
        "n_baseline": len(sessions_a), "n_current": len(sessions_b),
        "coverage": {"baseline": {"captured": len(sessions_a), "of": a.billable},
                     "current": {"captured": len(sessions_b), "of": b.billable}},
        "sessions_read": {side: {"read": c.read, "of": None if c.population is None else round(c.population),
                                 "of_estimated": c.sampled and c.population != c.read, "sampled": c.sampled,
                                 "pruned_before_ms": c.pruned_before_ms}
                          for side, c in (("baseline", a), ("current", b))},
    }
    note = _cost_note(a, b)
    if note:
        row["note"] = note
    if a.pruned_before_ms is not None or b.pruned_before_ms is not None:
        return row | {"baseline": None, "current": None, "relative_change": None, "test": None, "p_value": None,
                      "verdict": INSUFFICIENT}
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
        costs_a, costs_b = window_costs(conn, [baseline, current])
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
