"""``insights()`` against a synthetic history whose every figure the test computes itself.

The history (``hermetry.testing.history``) is a list of canonical events written through the
real recorder into a real SQLite store. The expected report is computed here, independently,
from those events: counts, sums, exact type-7 percentiles (``statistics.quantiles(method=
"inclusive")``), Wilson intervals from the textbook formula, the cost split, coverage — for
the whole window, for every breakdown key of every dimension, and under every filter.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.report import DIMENSIONS, Query, insights
from hermetry.model.events import ApiCall, SessionStarted, ToolCall, TurnEnded, TurnStarted
from hermetry.testing.history import (
    DAY_MS,
    NOW_MS,
    History,
    Turn,
    sparse_history,
    synthetic_history,
)

FAILURE_OUTCOMES = {"errored", "timed_out", "abandoned"}
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


# ---------------------------------------------------------------------------------------------
# The oracle: what the report must say, computed from the injected events
# ---------------------------------------------------------------------------------------------

def quantile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def wilson(successes: int, n: int) -> tuple[float, float] | tuple[None, None]:
    """Wilson (1927) score interval at 95%, written out independently of hermetry.analytics.stats."""
    if n == 0:
        return None, None
    z = statistics.NormalDist().inv_cdf(0.975)
    p = successes / n
    centre = (2 * n * p + z**2) / (2 * (n + z**2))
    half = z * math.sqrt(z**2 + 4 * n * p * (1 - p)) / (2 * (n + z**2))
    return max(0.0, centre - half), min(1.0, centre + half)


def assert_rate(actual: dict[str, Any], successes: int, n: int) -> None:
    assert (actual["successes"], actual["n"]) == (successes, n)
    if n == 0:
        assert actual["value"] is None and actual["ci95_low"] is None and actual["ci95_high"] is None
        return
    low, high = wilson(successes, n)
    assert actual["value"] == pytest.approx(successes / n)
    assert actual["ci95_low"] == pytest.approx(low, abs=1e-12)
    assert actual["ci95_high"] == pytest.approx(high, abs=1e-12)


def assert_distribution(actual: dict[str, Any], values: Iterable[float | None], of: int | None = None) -> None:
    values = list(values)
    captured = sorted(v for v in values if v is not None)
    assert actual["count"] == len(captured)
    assert actual["coverage"] == {"captured": len(captured), "of": len(values) if of is None else of}
    if not captured:
        assert actual["avg"] is None and actual["p50"] is None and actual["max"] is None
        return
    assert actual["avg"] == pytest.approx(statistics.fmean(captured), rel=1e-12)
    for q in (50, 95, 99):
        assert actual[f"p{q}"] == pytest.approx(quantile(captured, q), rel=1e-12), q
    assert actual["max"] == max(captured)


def day_of(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


@dataclass
class Truth:
    """The injected rows of one slice of the window."""

    history: History
    turns: list[Turn]
    calls: list[ApiCall]
    tools: list[ToolCall]

    def session(self, sid: str) -> SessionStarted:
        return self.history.sessions()[sid]


def dim_of(history: History, row: Turn | ApiCall | ToolCall, dim: str) -> Any:
    """Where each dimension lives: an API call's model/provider are its own, the rest the session's."""
    if dim == "day":
        return day_of(row.started_at_ms)
    if dim in ("tool", "toolset"):
        assert isinstance(row, ToolCall)
        return row.tool_name if dim == "tool" else row.toolset
    if isinstance(row, ApiCall) and dim in ("model", "provider"):
        return getattr(row, dim)
    return getattr(history.sessions()[row.session_id], dim)


def truth(history: History, since: float, until: float, filters: dict[str, str] | None = None) -> Truth:
    filters = filters or {}
    tool_turns = {key: {c.turn_id for c in history.tool_calls() if (c.tool_name if key == "tool" else c.toolset) == value}
                  for key, value in filters.items() if key in ("tool", "toolset")}

    def keep(row: Turn | ApiCall | ToolCall) -> bool:
        if not since <= row.started_at_ms < until:
            return False
        for key, value in filters.items():
            if key in ("tool", "toolset") and not isinstance(row, ToolCall):
                if row.turn_id not in tool_turns[key]:
                    return False
            elif dim_of(history, row, key) != value:
                return False
        return True

    return Truth(history, [t for t in history.turns() if keep(t)], [c for c in history.api_calls() if keep(c)],
                 [c for c in history.tool_calls() if keep(c)])


def check_turns(actual: dict[str, Any], t: Truth) -> None:
    ended = [x for x in t.turns if x.outcome]
    by_outcome: dict[str, int] = defaultdict(int)
    for x in t.turns:
        by_outcome[x.outcome or "open"] += 1
    assert actual["count"] == len(t.turns)
    assert actual["open"] == len(t.turns) - len(ended)
    assert actual["by_outcome"] == dict(sorted(by_outcome.items()))
    known = [x for x in ended if x.outcome != "unknown"]
    assert_rate(actual["completion_rate"], sum(1 for x in known if x.outcome == "completed"), len(known))
    assert_rate(actual["failure_rate"], sum(1 for x in known if x.outcome in FAILURE_OUTCOMES), len(known))
    assert_distribution(actual["wall_ms"], [x.wall_ms for x in ended])
    assert_distribution(actual["queue_wait_ms"], [x.queue_wait_ms for x in t.turns])
    assert sum(actual["wall_ms_histogram"]["counts"]) == len(ended)
    edges = actual["wall_ms_histogram"]["edges_ms"]
    for i, n in enumerate(actual["wall_ms_histogram"]["counts"]):
        hi = edges[i + 1] if i + 1 < len(edges) else math.inf
        assert n == sum(1 for x in ended if edges[i] <= x.wall_ms < hi)
    sessions_ended = {x.session_id for x in ended}
    assert actual["wall_ms"]["session_coverage"] == {"captured": len(sessions_ended), "of": len(sessions_ended)}
    assert actual["queue_wait_ms"]["session_coverage"] == {
        "captured": len({x.session_id for x in t.turns if x.queue_wait_ms is not None}),
        "of": len({x.session_id for x in t.turns})}


def has_usage(c: ApiCall) -> bool:
    return c.input_tokens is not None or c.output_tokens is not None


def priced(c: ApiCall) -> bool:
    return c.cost_status in ("actual", "estimated") and c.cost_usd is not None


def billable(c: ApiCall) -> bool:
    return c.status == "ok" or c.cost_usd is not None


def check_api(actual: dict[str, Any], t: Truth) -> None:
    ok = [c for c in t.calls if c.status == "ok"]
    errors = [c for c in t.calls if c.status != "ok"]
    assert actual["count"] == len(t.calls)
    assert actual["errors"] == len(errors)
    assert_rate(actual["error_rate"], len(errors), len(t.calls))
    error_types: dict[str, int] = defaultdict(int)
    for c in errors:
        error_types[c.error_type or "unknown"] += 1
    assert actual["error_types"] == dict(sorted(error_types.items()))
    # latency of the attempts that ended on their own: an interrupted attempt's duration is censored
    assert_distribution(actual["latency_ms"], [c.latency_ms for c in t.calls if c.status in ("ok", "error")])
    assert_distribution(actual["ttft_ms"], [c.ttft_ms for c in ok])
    assert actual["ttft_ms"]["session_coverage"] == {
        "captured": len({c.session_id for c in ok if c.ttft_ms is not None}), "of": len({c.session_id for c in ok})}
    # tokens: every successful call with usage, each once
    with_usage = [c for c in ok if has_usage(c)]
    tokens = actual["tokens"]
    assert tokens["coverage"] == {"captured": len(with_usage), "of": len(ok)}
    assert tokens["session_coverage"] == {"captured": len({c.session_id for c in with_usage}),
                                          "of": len({c.session_id for c in ok})}
    if ok and not with_usage:
        assert all(tokens[k] is None for k in (*TOKEN_KINDS, "total_tokens"))
    else:
        for kind in TOKEN_KINDS:
            assert tokens[kind] == sum(getattr(c, kind) or 0 for c in with_usage), kind
        assert tokens["total_tokens"] == sum(
            (c.input_tokens or 0) + (c.cache_read_tokens or 0) + (c.cache_write_tokens or 0) + (c.output_tokens or 0)
            for c in with_usage)
    # cost split by status; unknown counted, never summed
    cost = actual["cost"]
    bill = [c for c in t.calls if billable(c)]
    actual_calls = [c for c in bill if priced(c) and c.cost_status == "actual"]
    estimated_calls = [c for c in bill if priced(c) and c.cost_status == "estimated"]
    included = [c for c in bill if c.cost_status == "included"]
    unknown = len(bill) - len(actual_calls) - len(estimated_calls) - len(included)
    assert cost["calls"] == {"actual": len(actual_calls), "estimated": len(estimated_calls),
                             "included": len(included), "unknown": unknown}
    expect_actual = math.fsum(c.cost_usd or 0 for c in actual_calls) if actual_calls else None
    expect_estimated = math.fsum(c.cost_usd or 0 for c in estimated_calls) if estimated_calls else None
    assert cost["actual_usd"] == (None if expect_actual is None else pytest.approx(expect_actual, rel=1e-9))
    assert cost["estimated_usd"] == (None if expect_estimated is None else pytest.approx(expect_estimated, rel=1e-9))
    if expect_actual is None and expect_estimated is None:
        assert cost["known_usd"] is None
    else:
        assert cost["known_usd"] == pytest.approx((expect_actual or 0) + (expect_estimated or 0), rel=1e-9)
    assert cost["complete"] is (unknown == 0)
    assert cost["coverage"] == {"captured": len(actual_calls) + len(estimated_calls), "of": len(bill)}
    assert cost["session_coverage"] == {"captured": len({c.session_id for c in bill if priced(c)}),
                                        "of": len({c.session_id for c in bill})}


def check_tools(actual: dict[str, Any], tools: list[ToolCall]) -> None:
    failures = [c for c in tools if c.status != "ok"]
    assert actual["count"] == len(tools)
    assert actual["failures"] == len(failures)
    assert_rate(actual["failure_rate"], len(failures), len(tools))
    statuses: dict[str, int] = defaultdict(int)
    for c in tools:
        statuses[c.status] += 1
    assert actual["by_status"] == dict(sorted(statuses.items()))
    assert_distribution(actual["latency_ms"], [c.latency_ms for c in tools])


def check_report(report: dict[str, Any], t: Truth) -> None:
    sessions = {x.session_id for x in t.turns} | {c.session_id for c in t.calls}
    parents = t.history.parents()

    def root(sid: str) -> str:
        while sid in parents:
            sid = parents[sid]
        return sid

    assert report["coverage"] == {"sessions": len(sessions), "sessions_started": report["sessions"]["count"],
                                  "conversations": len({root(sid) for sid in sessions}),
                                  "turns": len(t.turns), "api_calls": len(t.calls), "tool_calls": len(t.tools),
                                  "events_dropped": 0}
    assert report["count_labels"] == {"sessions": "sessions with activity", "sessions_started": "sessions started",
                                      "conversations": "conversations"}
    check_turns(report["turns"], t)
    check_api(report["api_calls"], t)
    check_tools(report["tool_calls"], t.tools)
    by_tool: dict[str, list[ToolCall]] = defaultdict(list)
    for c in t.tools:
        by_tool[c.tool_name].append(c)
    assert [x["tool_name"] for x in report["tools"]] == sorted(by_tool, key=lambda n: (-len(by_tool[n]), n))
    for row in report["tools"]:
        calls = by_tool[row["tool_name"]]
        assert row["toolset"] == calls[0].toolset
        check_tools({"count": row["calls"], **{k: row[k] for k in ("failures", "failure_rate", "by_status",
                                                                   "latency_ms")}}, calls)


def check_breakdown(report: dict[str, Any], t: Truth, dim: str) -> None:
    rows = report["breakdowns"][dim]
    groups: dict[Any, Truth] = defaultdict(lambda: Truth(t.history, [], [], []))
    for x in t.turns if dim not in ("tool", "toolset") else []:
        groups[dim_of(t.history, x, dim)].turns.append(x)
    for c in t.calls if dim not in ("tool", "toolset") else []:
        groups[dim_of(t.history, c, dim)].calls.append(c)
    for c in t.tools:
        groups[dim_of(t.history, c, dim)].tools.append(c)
    assert [r[dim] for r in rows] == sorted(groups, key=lambda k: (k is None, str(k)))
    for row in rows:
        g = groups[row[dim]]
        check_tools(row["tool_calls"], g.tools)
        if dim in ("tool", "toolset"):
            assert row["turns"] is None and row["api_calls"] is None and row["sessions"] is None
            continue
        assert row["sessions"] == len({x.session_id for x in g.turns} | {c.session_id for c in g.calls})
        check_turns(row["turns"], g)
        check_api(row["api_calls"], g)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, Path]:
    history = synthetic_history(seed=11, days=14, sessions_per_day=9)
    db = history.record(tmp_path_factory.mktemp("history") / "telemetry.db")
    return history, db


WHOLE = (NOW_MS - 14 * DAY_MS, NOW_MS)


def test_the_history_exercises_every_case(recorded: tuple[History, Path]) -> None:
    """The figures below are only worth as much as the variety of the history behind them."""
    history, _ = recorded
    turns, calls, tools = history.turns(), history.api_calls(), history.tool_calls()
    assert {t.outcome for t in turns} >= {"completed", "errored", "interrupted", "timed_out", None}
    assert {c.cost_status for c in calls} >= {"actual", "estimated", "included", "unknown"}
    assert any(c.status == "error" for c in calls) and any(c.attempt > 0 and c.status == "ok" for c in calls)
    assert any(c.ttft_ms is None and c.status == "ok" for c in calls) and any(not has_usage(c) for c in calls)
    assert {c.status for c in tools} == {"ok", "error", "blocked"}
    assert {e.lineage for e in history.sessions().values()} == {None, "subagent", "continuation"}
    assert any(t.queue_wait_ms is not None for t in turns)


def test_whole_window_every_figure(recorded: tuple[History, Path]) -> None:
    history, db = recorded
    report = insights(db, Query(since_ms=WHOLE[0], until_ms=WHOLE[1], group_by=()))
    assert report["schema"] == "hermetry.insights.v1"
    check_report(report, truth(history, *WHOLE))


@pytest.mark.parametrize("dim", DIMENSIONS)
def test_every_breakdown_key_of_every_dimension(recorded: tuple[History, Path], dim: str) -> None:
    history, db = recorded
    report = insights(db, Query(since_ms=WHOLE[0], until_ms=WHOLE[1], group_by=(dim,)))
    check_report(report, truth(history, *WHOLE))
    check_breakdown(report, truth(history, *WHOLE), dim)


@pytest.mark.parametrize(
    "filters",
    [{"source": "telegram"}, {"model": "m-beta"}, {"provider": "prov-a"}, {"session_type": "api"},
     {"profile": "work"}, {"tool": "terminal"}, {"toolset": "web"}, {"source": "cli", "model": "m-alpha"}],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_filters(recorded: tuple[History, Path], filters: dict[str, str]) -> None:
    history, db = recorded
    report = insights(db, Query(since_ms=WHOLE[0], until_ms=WHOLE[1], filters=filters, group_by=("source",)))
    assert report["filters"] == filters
    t = truth(history, *WHOLE, filters)
    assert t.turns and t.calls  # the filter selects something
    check_report(report, t)
    check_breakdown(report, t, "source")


def test_a_window_takes_the_rows_that_started_in_it(recorded: tuple[History, Path]) -> None:
    history, db = recorded
    since, until = NOW_MS - 5.5 * DAY_MS, NOW_MS - 2.25 * DAY_MS
    report = insights(db, Query(since_ms=since, until_ms=until, group_by=("day",)))
    t = truth(history, since, until)
    check_report(report, t)
    check_breakdown(report, t, "day")
    assert report["window"]["since"] == datetime.fromtimestamp(since / 1000, tz=UTC).isoformat(timespec="seconds")
    days = [d["day"] for d in report["daily"]]
    assert days == [day_of(since + i * DAY_MS) for i in range(len(days))] and days[-1] == day_of(until - 1)
    for d in report["daily"]:
        assert d["turns"] == sum(1 for x in t.turns if day_of(x.started_at_ms) == d["day"])
        assert d["api_calls"] == sum(1 for c in t.calls if day_of(c.started_at_ms) == d["day"])
        assert d["api_errors"] == sum(1 for c in t.calls if day_of(c.started_at_ms) == d["day"] and c.status != "ok")
        assert d["tool_calls"] == sum(1 for c in t.tools if day_of(c.started_at_ms) == d["day"])
        assert d["turn_failures"] == sum(1 for x in t.turns if day_of(x.started_at_ms) == d["day"]
                                         and x.outcome in FAILURE_OUTCOMES)


def root_of(parents: dict[str, str], sid: str) -> str:
    while sid in parents:
        sid = parents[sid]
    return sid


def test_conversations_roll_subagents_up_without_double_counting(recorded: tuple[History, Path]) -> None:
    history, db = recorded
    report = insights(db, Query(since_ms=WHOLE[0], until_ms=WHOLE[1], group_by=()))
    conv = report["conversations"]
    t = truth(history, *WHOLE)
    parents = history.parents()
    active = {x.session_id for x in t.turns} | {c.session_id for c in t.calls}
    members: dict[str, set[str]] = defaultdict(set)
    for sid in active:
        members[root_of(parents, sid)].add(sid)
    lineage = {sid: history.sessions()[sid].lineage for sid in active}
    assert conv["count"] == len(members)
    assert conv["sessions"] == len(active)
    assert conv["subagent_sessions"] == sum(1 for v in lineage.values() if v == "subagent") > 0
    assert conv["continuation_sessions"] == sum(1 for v in lineage.values() if v == "continuation") > 0
    assert conv["count"] < conv["sessions"]
    tokens: dict[str, int] = defaultdict(int)
    for c in t.calls:
        if c.status == "ok" and has_usage(c):
            tokens[root_of(parents, c.session_id)] += ((c.input_tokens or 0) + (c.output_tokens or 0)
                                                       + (c.cache_read_tokens or 0) + (c.cache_write_tokens or 0))
    # each API call is counted once: per-conversation tokens add up to the window's total
    assert sum(tokens.values()) == report["api_calls"]["tokens"]["total_tokens"]
    assert_distribution(conv["tokens_per_conversation"], list(tokens.values()),
                        of=sum(1 for sids in members.values() if any(
                            c.status == "ok" for c in t.calls if c.session_id in sids)))
    calls_per = {root: sum(1 for c in t.calls if c.session_id in sids) for root, sids in members.items()}
    assert_distribution(conv["api_calls_per_conversation"], list(calls_per.values()))
    turns_per = {root: sum(1 for x in t.turns if x.session_id in sids) for root, sids in members.items()}
    assert_distribution(conv["turns_per_conversation"], list(turns_per.values()))
    costs = []  # conversations whose cost is complete: no billable call unpriced (included is not unknown)
    for sids in members.values():
        bill = [c for c in t.calls if c.session_id in sids and billable(c)]
        if any(priced(c) for c in bill) and all(priced(c) or c.cost_status == "included" for c in bill):
            costs.append(math.fsum(c.cost_usd or 0 for c in bill if priced(c)))
    assert conv["cost_usd_per_conversation"]["count"] == len(costs)
    assert conv["cost_usd_per_conversation"]["avg"] == pytest.approx(statistics.fmean(costs), rel=1e-9)


def test_session_outcomes_of_sessions_started_in_the_window(recorded: tuple[History, Path]) -> None:
    history, db = recorded
    report = insights(db, Query(since_ms=WHOLE[0], until_ms=WHOLE[1], group_by=()))
    ends = history.session_ends()
    outcomes: dict[str, int] = defaultdict(int)
    for sid in history.sessions():
        outcomes[ends[sid].outcome if sid in ends else "open"] += 1
    assert report["coverage"]["sessions_started"] == len(history.sessions())
    s = report["sessions"]
    assert s["by_outcome"] == dict(sorted(outcomes.items()))
    ended = sum(outcomes.values()) - outcomes["open"]
    assert_rate(s["completion_rate"], outcomes["completed"], ended)


def test_old_sparse_data_is_not_captured_never_zero(tmp_path: Path) -> None:
    """Calls without time to first token, cost or (some) latency: null with coverage, never 0."""
    history = sparse_history()
    db = history.record(tmp_path / "old.db")
    since = NOW_MS - 3 * DAY_MS
    report = insights(db, Query(since_ms=since, until_ms=NOW_MS, group_by=("model",)))
    t = truth(history, since, NOW_MS)
    check_report(report, t)
    api = report["api_calls"]
    ok = [c for c in t.calls if c.status == "ok"]
    assert api["ttft_ms"]["avg"] is None and api["ttft_ms"]["p95"] is None
    assert api["ttft_ms"]["coverage"] == {"captured": 0, "of": len(ok)} and len(ok) > 0
    assert api["ttft_ms"]["session_coverage"]["captured"] == 0
    assert api["cost"]["known_usd"] is None and api["cost"]["actual_usd"] is None
    assert api["cost"]["calls"]["unknown"] == len([c for c in t.calls if billable(c)])
    assert api["cost"]["complete"] is False
    assert 0 < api["latency_ms"]["coverage"]["captured"] < api["latency_ms"]["coverage"]["of"]
    for row in report["breakdowns"]["model"]:
        assert row["api_calls"]["ttft_ms"]["p50"] is None
        assert row["api_calls"]["cost"]["known_usd"] is None


def test_no_usage_at_all_is_null_tokens_not_zero(tmp_path: Path) -> None:
    history = synthetic_history(seed=5, days=1, sessions_per_day=3)
    for e in history.events:
        if isinstance(e, ApiCall):
            for kind in TOKEN_KINDS:
                setattr(e, kind, None)
    db = history.record(tmp_path / "t.db")
    report = insights(db, Query(since_ms=NOW_MS - DAY_MS, until_ms=NOW_MS, group_by=()))
    tokens = report["api_calls"]["tokens"]
    assert tokens["total_tokens"] is None and tokens["input_tokens"] is None
    assert tokens["coverage"]["captured"] == 0 and tokens["coverage"]["of"] > 0


def test_an_empty_or_missing_file_is_an_empty_history(tmp_path: Path) -> None:
    report = insights(tmp_path / "nothing-here.db", Query.last_days(7))
    assert report["coverage"] == {"sessions": 0, "sessions_started": 0, "conversations": 0, "turns": 0,
                                  "api_calls": 0, "tool_calls": 0, "events_dropped": 0}
    assert report["turns"]["wall_ms"]["p95"] is None and report["turns"]["completion_rate"]["value"] is None
    assert report["breakdowns"] == {"source": [], "model": []}


def test_unknown_breakdowns_and_filters_are_refused(recorded: tuple[History, Path]) -> None:
    _, db = recorded
    with pytest.raises(ValueError, match="breakdown"):
        insights(db, Query(since_ms=WHOLE[0], until_ms=WHOLE[1], group_by=("colour",)))
    with pytest.raises(ValueError, match="filter"):
        insights(db, Query(since_ms=WHOLE[0], until_ms=WHOLE[1], filters={"day": "2025-01-01"}))


def test_a_window_holding_few_rows_uses_the_index_and_agrees(recorded: tuple[History, Path]) -> None:
    """A narrow window walks the started_at index, a wide one scans: both give the same figures."""
    history, db = recorded
    since, until = NOW_MS - 1.2 * DAY_MS, NOW_MS - 1.0 * DAY_MS
    report = insights(db, Query(since_ms=since, until_ms=until, group_by=("source",)))
    check_report(report, truth(history, since, until))




def test_interrupts_unknown_tool_statuses_and_auxiliary_calls(tmp_path: Path) -> None:
    """A stopped call is not an API error; an unknown tool status is not a failure; tasks split."""
    from hermetry.recorder.recorder import Recorder
    from hermetry.stores.sqlite import SQLiteStore

    t0 = NOW_MS - 3_600_000
    db = tmp_path / "t.db"
    events = [
        SessionStarted("s", t0, source="cli", session_type="oneshot", model="m", provider="p"),
        ApiCall("r1", 0, "s", None, t0, 100.0, "ok", input_tokens=10, output_tokens=2),
        ApiCall("r2", 0, "s", None, t0 + 1, 50.0, "error", error_type="InternalServerError", http_status=500),
        ApiCall("r3", 0, "s", None, t0 + 2, 900.0, "interrupted", error_type="interrupted"),
        ApiCall("r4", 0, "s", None, t0 + 3, 300.0, "ok", input_tokens=5000, output_tokens=40, task="compression"),
        ApiCall("r5", 0, "s", None, t0 + 4, 80.0, "ok", input_tokens=30, output_tokens=5, task="title_generation"),
        ToolCall("c1", "s", None, "terminal", t0, 5.0, "ok"),
        ToolCall("c2", "s", None, "terminal", t0, 5.0, "error"),
        ToolCall("c3", "s", None, "terminal", t0, None, "unknown"),
        ToolCall("c4", "s", None, "terminal", t0, None, "unknown"),
        ToolCall("c5", "s", None, "made_up", t0, 0.0, "unknown_tool"),
        *(e for i, outcome in enumerate(("completed", "errored", "unknown"))
          for e in (TurnStarted(f"t{i}", "s", t0 + i), TurnEnded(f"t{i}", "s", t0 + i + 10, outcome))),
    ]
    recorder = Recorder(lambda: SQLiteStore(db), register_atexit=False)
    for e in events:
        recorder.record(e)
    recorder.close(timeout=10)
    report = insights(db, Query.last_days(1, now_ms=NOW_MS, group_by=()))
    api = report["api_calls"]
    assert (api["count"], api["errors"], api["interrupted"]) == (5, 1, 1)
    assert (api["error_rate"]["successes"], api["error_rate"]["n"]) == (1, 4)  # of the calls that ran to an end
    assert api["error_types"] == {"InternalServerError": 1}
    # latency over the attempts that ended on their own (ok or error); the stopped one's 900 ms is
    # only how long until it was stopped, counted in `interrupted`
    assert_distribution(api["latency_ms"], [100.0, 50.0, 300.0, 80.0])
    # rates over the turns whose outcome is known; the unknown end is covered, not counted
    turns = report["turns"]
    assert_rate(turns["completion_rate"], 1, 2)
    assert_rate(turns["failure_rate"], 1, 2)
    assert turns["completion_rate"]["coverage"] == {"known": 2, "of": 3}
    assert list(api["by_task"]) == ["main", "compression", "title_generation"]
    assert {task: (v["count"], v["tokens"]["input_tokens"], v["tokens"]["output_tokens"])
            for task, v in api["by_task"].items()} == {
        "main": (3, 10, 2), "compression": (1, 5000, 40), "title_generation": (1, 30, 5)}
    assert api["tokens"]["input_tokens"] == 10 + 5000 + 30
    tools = report["tool_calls"]
    assert (tools["count"], tools["failures"]) == (5, 2)  # error + unknown_tool; unknown is not known
    assert tools["status_coverage"] == {"captured": 3, "of": 5}
    assert (tools["failure_rate"]["successes"], tools["failure_rate"]["n"]) == (2, 3)
