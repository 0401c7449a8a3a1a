"""One analytics call, many views: ``insights()`` returns the report every surface shows.

The CLI tables, ``--json``, the ``/telemetry`` slash command and the dashboard all render
this one structure; none of them computes a number of its own. docs/json.md documents it.

Conventions:

* units are in the keys (``*_ms``, ``*_tokens``, ``*_usd``);
* ``null`` means "not captured", never zero, and every figure says how many rows it covers
  (``coverage: {captured, of}``) and, where it reads better, how many sessions
  (``session_coverage``: sessions with at least one captured value, of the sessions that had
  such rows);
* turns still open (running, or not yet reconciled) are counted as ``open`` and excluded from
  the rates;
* a row belongs to the window when it *started* in it (``since <= started_at < until``);
* a turn's and a tool call's source, model, provider and profile are its session's; an API
  call's model and provider are the call's own; ``tool`` and ``toolset`` classify tool calls
  only (as a filter on turns and API calls they keep the turns that called that tool);
* a conversation is a root session with its subagents and compression continuations; each
  API call belongs to exactly one session, so per-conversation totals count each call once.

How it scales: every count and sum is a SQL ``GROUP BY`` (one scan per table, rows rolled up
per session); percentiles are exact, so for each measure only the value column (and the
breakdown keys) is fetched, sorted by SQLite, and split by key.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from hermetry.analytics.query import (  # noqa: F401 - the query layer; re-exported for older imports
    API_CALLS,
    DIMENSIONS,
    FILTERS,
    SESSIONS,
    TOOL_CALLS,
    TOOL_DIMENSIONS,
    TURNS,
    Query,
    Scanner,
    Table,
    applicable,
    day_iso,
    iso,
    refuse_tool_filter_in_pruned_time,
)
from hermetry.analytics.stats import histogram, rate, summarize
from hermetry.model.kinds import TOKEN_KINDS
from hermetry.model.outcomes import (
    OutcomeClass,
    SessionOutcome,
    TurnOutcome,
    session_outcome_class,
    session_outcome_knowable,
    tool_failed,
    turn_outcome_class,
)
from hermetry.model.sessions import ancestors
from hermetry.model.sketch import Sketch
from hermetry.model.units import DAY_MS
from hermetry.stores import rollups
from hermetry.stores.reader import Db, open_db  # noqa: F401 - re-exported for older imports

REPORT_SCHEMA = "hermetry.insights.v1"

#: Bucket edges (ms) of the turn wall-time histogram; the last bucket is open-ended (one
#: definition: the rollups keep these counts exactly).
WALL_MS_EDGES = rollups.WALL_MS_EDGES

#: The three counts of sessions a report gives, each one concept with one label (defined in
#: docs/telemetry-model.md, "Counting sessions"); every surface prints these labels.
COUNT_LABELS = {
    "sessions": "sessions with activity",  # any turn, API call or tool call started in the window
    "sessions_started": "sessions started",  # the session itself started in the window (outcome rates)
    "conversations": "conversations",  # root sessions of those with activity, children rolled up
}

# ---------------------------------------------------------------------------------------------
# Collecting: SQL aggregates per session, rolled up per slice (the window, or one breakdown key)
# ---------------------------------------------------------------------------------------------

#: The slice holding the whole window; breakdown slices are ``(dim, key)``.
TOTAL: tuple[str, Any] = ("", None)

# What a session had in a slice: bits of ``Slice.session_flags``, for session counts and coverage.
TURN_ROWS, TURN_ENDED, TURN_WALL, TURN_QUEUE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
API_ROWS, API_LATENCY, API_OK, API_TTFT, API_USAGE, API_BILLABLE, API_PRICED = (1 << i for i in range(4, 11))

#: The numbers summed per slice for API calls, in order (see ``_collect_api``).
API_FIELDS = ("calls", "ok", "interrupted", "derived", "latency_captured", "ttft_captured", "usage_captured", *TOKEN_KINDS,
              "billable", "actual", "estimated", "included", "actual_usd", "estimated_usd")

#: Simple aggregates only: grouping by status and cost status is cheaper than CASE per row.
#: One definition, shared with the rollups (``stores.rollups.API_SUMS``, in ``API_FIELDS`` order
#: before folding): a row stands for ``call_count`` model calls, so calls are summed.
API_AGGREGATES = rollups.API_AGGREGATES

#: Below this many model calls in a window, reports read every raw row (exact percentiles); above
#: it, whole hours come from the rollups (percentiles within 1 %; counts and sums identical).
#: Measured: the exact path costs ~20 µs of CPU per model call (1M calls: 22 s; 152k: 3.0 s), so
#: 50,000 keeps an exact report near 1 s; the rollup path costs what the window's hours hold.
EXACT_BELOW_CALLS = 50_000

#: What a report over rollups cannot give (they hold no session ids), and why; those figures are null.
NOT_IN_ROLLUPS = {
    "sessions": "sessions with activity need each row's session: rollups count rows, not sessions",
    "session_coverage": "as above",
    "conversations": "per-conversation figures need every session's rows",
}


@dataclass
class Slice:
    """Everything counted for one slice of the window.

    Group rows are appended as they come and summed once at the end (``api_totals``), which
    keeps the per-row work small when a window holds hundreds of thousands of sessions.
    """

    session_flags: dict[str, int] = field(default_factory=dict)
    by_outcome: Counter[str] = field(default_factory=Counter)
    api_rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: the same folded rows by ``api_calls.task`` (``main`` or an auxiliary task)
    api_by_task: defaultdict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    tool_by_status: Counter[str] = field(default_factory=Counter)
    #: what came from an import (origin ``backfill``): turn outcomes derived from messages, their
    #: wall times, and tool calls (whose status is never known)
    derived_by_outcome: Counter[str] = field(default_factory=Counter)
    derived_wall: int = 0
    derived_tools: int = 0
    toolsets: Counter[str] = field(default_factory=Counter)
    #: sorted values of each measure, for exact percentiles (a Sketch each, from rollups)
    values: dict[str, list[float] | Sketch] = field(default_factory=dict)
    #: the wall-time histogram counts, when they come from rollups (else from ``values``)
    wall_hist: list[int] | None = None
    #: False when read from rollups: no session ids, so no session counts (null in the report)
    sessions_known: bool = True
    _api_totals: dict[str, Any] | None = None

    def sessions_with(self, bit: int) -> int:
        return sum(1 for flags in self.session_flags.values() if flags & bit)

    @property
    def sessions(self) -> int | None:
        return len(self.session_flags) if self.sessions_known else None

    @property
    def turns(self) -> int:
        return sum(self.by_outcome.values())

    @property
    def tool_calls(self) -> int:
        return sum(self.tool_by_status.values())

    def api_totals(self) -> dict[str, Any]:
        if self._api_totals is None:
            self._api_totals = sum_api_fields(self.api_rows)
        return self._api_totals


@dataclass
class Collected:
    """What one query found: the slices, and per-session totals for conversations."""

    query: Query
    slices: dict[tuple[str, Any], Slice]
    #: session id → [API calls, total tokens, known cost (USD), priced calls, unpriced billable calls]
    session_api: dict[str, list[float]]
    session_turns: Counter[str]
    roots: dict[str, str]
    lineage: dict[str, str | None]
    session_outcomes: Counter[str]
    events_dropped: int
    #: of ``session_outcomes``, those the source could not know (imported one-run sessions)
    session_outcomes_unrated: Counter[str] = field(default_factory=Counter)
    #: where the figures came from (None: every raw row, the exact path)
    plan: rollups.Plan | None = None
    #: the rollup path's count reads, for activity to regroup (``rollups.Reads``)
    reads: rollups.Reads | None = None

    def slice(self, key: tuple[str, Any] = TOTAL) -> Slice:
        return self.slices.get(key) or Slice(sessions_known=self.plan is None)


def _rows(scan: Scanner, table: Table, dims: list[str], keys: list[str], aggregates: str) -> Iterator[tuple[Any, ...]]:
    source, where, params = scan.scope(table, dims)
    group = ", ".join([scan.column(table, d) or "" for d in dims] + keys)
    sql = f"SELECT {group}, {aggregates} FROM {source} WHERE {where} GROUP BY {group}"
    yield from scan.execute(sql, params)


def _slices_of(slices: dict[tuple[str, Any], Slice], dims: list[str], row: Sequence[Any]) -> list[Slice]:
    return [slices[TOTAL], *(slices[(d, row[i])] for i, d in enumerate(dims))]


def _collect_turns(scan: Scanner, dims: list[str], slices: dict[tuple[str, Any], Slice],
                   session_turns: Counter[str]) -> None:
    k = len(dims)
    for row in _rows(scan, TURNS, dims, ["t.session_id", "t.outcome", "t.origin"],
                     "COUNT(*), COUNT(t.wall_ms), COUNT(t.queue_wait_ms)"):
        sid, outcome, origin, n, n_wall, n_queue = row[k:]
        session_turns[sid] += n
        flags = TURN_ROWS | (TURN_ENDED if outcome else 0) | (TURN_WALL if n_wall else 0) | (TURN_QUEUE if n_queue else 0)
        derived = origin == "backfill"
        for s in _slices_of(slices, dims, row):
            s.by_outcome[outcome or "open"] += n
            s.session_flags[sid] = s.session_flags.get(sid, 0) | flags
            if derived:
                s.derived_by_outcome[outcome or "open"] += n
                s.derived_wall += n_wall


def fold_api_group(status: str, cost_status: str | None, aggregates: Sequence[Any]) -> tuple[Any, ...]:
    """One group of API calls (same status and cost status; ``API_AGGREGATES``) → ``API_FIELDS``."""
    n, n_latency, n_ttft, n_usage, *tokens, n_cost, cost_usd, derived = aggregates
    ok = status == "ok"
    interrupted = n if status == "interrupted" else 0
    billable = n if ok else n_cost  # every successful call; a failed one only when it was charged
    actual = n_cost if cost_status == "actual" else 0
    estimated = n_cost if cost_status == "estimated" else 0
    included = billable if cost_status == "included" else 0
    return (
        n, n if ok else 0, interrupted, derived, n_latency, n_ttft if ok else 0, n_usage if ok else 0,
        *(tokens if ok else (0,) * len(TOKEN_KINDS)),
        billable, actual, estimated, included,
        cost_usd if actual else 0.0, cost_usd if estimated else 0.0,
    )


def sum_api_fields(rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Column sums of folded API groups, by ``API_FIELDS`` name (costs with ``math.fsum``)."""
    columns = list(zip(*rows, strict=True)) or [()] * len(API_FIELDS)
    return {name: math.fsum(column) if name.endswith("_usd") else sum(column)
            for name, column in zip(API_FIELDS, columns, strict=True)}


def _collect_api(scan: Scanner, dims: list[str], slices: dict[tuple[str, Any], Slice],
                 session_api: dict[str, list[float]]) -> None:
    k = len(dims)
    for row in _rows(scan, API_CALLS, dims, ["a.session_id", "a.status", "a.error_type", "a.cost_status", "a.task"],
                     API_AGGREGATES):
        sid, status, error_type, cost_status, task = row[k:k + 5]
        nums = fold_api_group(status, cost_status, row[k + 5:])
        f = dict(zip(API_FIELDS, nums, strict=True))
        ok, priced = status == "ok", f["actual"] + f["estimated"]
        flags = (API_ROWS | (API_LATENCY if f["latency_captured"] else 0) | (API_OK if ok else 0)
                 | (API_TTFT if f["ttft_captured"] else 0) | (API_USAGE if f["usage_captured"] else 0)
                 | (API_BILLABLE if f["billable"] else 0) | (API_PRICED if priced else 0))
        per_session = session_api.setdefault(sid, [0, 0, 0.0, 0, 0])
        per_session[0] += f["calls"]
        per_session[1] += f["input_tokens"] + f["output_tokens"] + f["cache_read_tokens"] + f["cache_write_tokens"]
        per_session[2] += f["actual_usd"] + f["estimated_usd"]
        per_session[3] += priced
        per_session[4] += f["billable"] - priced - f["included"]
        for s in _slices_of(slices, dims, row):
            s.api_rows.append(nums)
            s.api_by_task[task or "unknown"].append(nums)
            s.session_flags[sid] = s.session_flags.get(sid, 0) | flags
            if status == "error":
                s.errors[error_type or "unknown"] += f["calls"]


def _collect_tools(scan: Scanner, dims: list[str], slices: dict[tuple[str, Any], Slice]) -> None:
    # Not per session: tool figures carry row coverage only, which keeps this query small.
    k = len(dims)
    for row in _rows(scan, TOOL_CALLS, dims, ["c.toolset", "c.status", "c.origin"], "COUNT(*)"):
        toolset, status, origin, n = row[k:]
        for s in _slices_of(slices, dims, row):
            s.tool_by_status[status] += n
            if toolset:
                s.toolsets[toolset] += n
            if origin == "backfill":
                s.derived_tools += n


def _collect_values(scan: Scanner, table: Table, dims: list[str], measures: dict[str, str],
                    slices: dict[tuple[str, Any], Slice]) -> None:
    """Fetch the captured values of a table's measures (``name → SQL, NULL when not captured``)
    in one scan, and split them by slice, each sorted.

    Only the values and the breakdown keys are fetched. Sorting in Python (timsort on floats)
    measured several times faster than SQLite's ``ORDER BY`` on a million rows.
    """
    source, where, params = scan.scope(table, dims)
    keys = [scan.column(table, d) or "" for d in dims]
    captured = " OR ".join(f"({sql}) IS NOT NULL" for sql in measures.values())
    sql = f"SELECT {', '.join([*keys, *measures.values()])} FROM {source} WHERE {where} AND ({captured})"
    rows = scan.execute(sql, params).fetchall()
    k = len(dims)
    for j, name in enumerate(measures):
        col = k + j
        total = [r[col] for r in rows if r[col] is not None]
        total.sort()
        slices[TOTAL].values[name] = total
        for i, dim in enumerate(dims):
            groups: dict[Any, list[float]] = defaultdict(list)
            for r in rows:
                if r[col] is not None:
                    groups[r[i]].append(r[col])
            for key, values in groups.items():
                values.sort()
                slices[(dim, key)].values[name] = values


def _roots(conn: sqlite3.Connection) -> tuple[dict[str, str], dict[str, str | None]]:
    """Each child session's root (following parents), and each child's lineage."""
    parents: dict[str, str] = {}
    lineage: dict[str, str | None] = {}
    for sid, parent, kind in conn.execute(
        "SELECT session_id, parent_session_id, lineage FROM sessions WHERE parent_session_id IS NOT NULL"
    ):
        parents[sid] = parent
        lineage[sid] = kind
    roots: dict[str, str] = {}
    for sid in parents:
        roots[sid] = (ancestors(parents, sid) or [parents[sid]])[-1]
    return roots, lineage


def _session_outcomes(scan: Scanner) -> tuple[Counter[str], Counter[str]]:
    """Outcomes of the sessions that started in the window (NULL: still open → ``open``), and
    those of them whose outcome the source could not know (left out of the rates)."""
    source, where, params = scan.scope(SESSIONS, hint=False)
    sql = (f"SELECT s.outcome, s.origin, s.session_type, COUNT(*) FROM {source} WHERE {where} "
           "GROUP BY s.outcome, s.origin, s.session_type")
    return _fold_outcomes(scan.execute(sql, params))


def _fold_outcomes(rows: Iterable[Sequence[Any]]) -> tuple[Counter[str], Counter[str]]:
    outcomes: Counter[str] = Counter()
    unrated: Counter[str] = Counter()
    for outcome, origin, session_type, n in rows:
        outcomes[outcome or "open"] += n
        if not session_outcome_knowable(origin, session_type):
            unrated[outcome or "open"] += n
    return outcomes, unrated


def _session_outcomes_rolled(conn: Any, q: Query, p: rollups.Plan) -> tuple[Counter[str], Counter[str]]:
    """``_session_outcomes`` on the rollup path: the sessions rollup (``rollups.SESSIONS``: whole clean
    hours) plus the sessions table for the plan's raw ranges — the same counts."""
    groups = rollups.read(conn, rollups.SESSIONS, p, keys=("outcome", "origin", "session_type"),
                          filters=dict(q.filters), measures=False)
    return _fold_outcomes((*key, int(g.counts["sessions"])) for key, g in groups.items())


def _drops(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT COALESCE(SUM(events_dropped), 0) FROM recorder_runs").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0


def _measures(kind: rollups.Kind, names: dict[str, str]) -> dict[str, str]:
    """The measures' SQL (one definition: the rollups'), under the report's names."""
    sql = dict(kind.measures)
    return {report_name: sql[name] for name, report_name in names.items()}


def rollup_plan(conn: Any, q: Query, *, exact: bool = False) -> rollups.Plan | None:
    """How ``collect`` reads ``q``: a plan over the rollups, or None for every raw row (the exact
    path) — chosen when asked (``exact``), when the window holds fewer than
    :data:`EXACT_BELOW_CALLS` model calls, when a tool or toolset filter needs each turn's tools,
    or when the store has no rollups. Time before a prune has only rollups: always read from them
    (with a tool or toolset filter there: :class:`~hermetry.analytics.query.NotAnswerable`)."""
    if conn is None or not rollups.has_rollups(conn):
        return None
    p = rollups.plan(conn, q.since_ms, q.until_ms)
    pruned = p.pruned_before_ms is not None and q.since_ms < p.pruned_before_ms
    refuse_tool_filter_in_pruned_time(q.filters, q.since_ms, p.pruned_before_ms)
    if not pruned and (exact or p.hours_from_rollups == 0 or set(q.filters) & set(TOOL_DIMENSIONS)):
        return None
    if not pruned and rollups.count_calls(conn, p) < EXACT_BELOW_CALLS:
        return None
    return p


def collect(conn: sqlite3.Connection | None, q: Query, *, exact: bool = False) -> Collected:
    """Run the report's queries for ``q`` (no rendering): the raw material of insights and compare.

    Small windows (and ``exact``) read every raw row; large ones read whole hours from the rollups
    and the rest raw (:func:`rollup_plan`): the same counts and sums, percentiles within 1 %. The
    plan and its reads share one snapshot of the store (``rollups.snapshot``; the caller's, when it
    has one): a partial hour read as its rollup minus raw rows needs both as of one moment — every
    caller (compare, the dashboard's series), not only ``insights`` (review m23)."""
    with rollups.snapshot(conn):
        return _collect(conn, q, exact=exact)


def _collect(conn: sqlite3.Connection | None, q: Query, *, exact: bool) -> Collected:
    q.check()
    slices: defaultdict[tuple[str, Any], Slice] = defaultdict(Slice)
    slices[TOTAL] = Slice()
    session_api: dict[str, list[float]] = {}
    session_turns: Counter[str] = Counter()
    if conn is None:
        return Collected(q, slices, session_api, session_turns, {}, {}, Counter(), 0)
    scan = Scanner(conn, q)
    dims = list(q.group_by) + ([] if "day" in q.group_by else ["day"])  # always: the daily series
    tool_dims = dims + [d for d in TOOL_DIMENSIONS if d not in dims]  # always: the tools table
    p = rollup_plan(conn, q, exact=exact)
    if p is not None:
        with rollups.raw_cache():  # each kind's raw ranges read once for all its reads
            reads = _collect_rollups(conn, q, p, dims, tool_dims, slices)
            outcomes, unrated = (_session_outcomes_rolled(conn, q, p) if rollups.has_kind(conn, rollups.SESSIONS)
                                 else _session_outcomes(scan))
        return Collected(q, slices, session_api, session_turns, {}, {}, outcomes, _drops(conn), unrated, plan=p,
                         reads=reads)
    _collect_turns(scan, applicable(TURNS, dims), slices, session_turns)
    _collect_api(scan, applicable(API_CALLS, dims), slices, session_api)
    _collect_tools(scan, applicable(TOOL_CALLS, tool_dims), slices)
    # values are split only by the breakdowns asked for (and tool latency by tool)
    value_dims = list(q.group_by)
    turn_dims, api_dims = applicable(TURNS, value_dims), applicable(API_CALLS, value_dims)
    tool_value_dims = applicable(TOOL_CALLS, value_dims + ([] if "tool" in value_dims else ["tool"]))
    _collect_values(scan, TURNS, turn_dims, _measures(rollups.TURNS, {"wall_ms": "wall_ms",
                                                                      "queue_wait_ms": "queue_wait_ms"}), slices)
    # latency: attempts that ended on their own (answered or failed); an interrupted attempt's duration
    # is only how long until a person or a timeout stopped it (censored), counted on its own
    _collect_values(scan, API_CALLS, api_dims, _measures(rollups.API, {"latency_ms": "latency_ms",
                                                                       "ttft_ms": "ttft_ms"}), slices)
    _collect_values(scan, TOOL_CALLS, tool_value_dims, _measures(rollups.TOOLS, {"latency_ms": "tool_latency_ms"}),
                    slices)
    roots, lineage = _roots(conn)
    outcomes, unrated = _session_outcomes(scan)
    return Collected(q, slices, session_api, session_turns, roots, lineage, outcomes, _drops(conn), unrated)


def _collect_rollups(conn: Any, q: Query, p: rollups.Plan, dims: list[str], tool_dims: list[str],
                     slices: defaultdict[tuple[str, Any], Slice]) -> rollups.Reads:
    """The rollup path: the same slices as the raw path (``_collect_turns`` …), from
    ``rollups.read`` (whole clean hours from rollups, the rest of the window from raw rows).
    Per-session figures are not known here (``Slice.sessions_known``)."""
    filters = dict(q.filters)
    for s in slices.values():
        s.sessions_known = False
    slices.default_factory = lambda: Slice(sessions_known=False)
    reads = rollups.Reads(p, dict(filters))

    def counts(kind: rollups.Kind, keys: tuple[str, ...]) -> dict[tuple[Any, ...], rollups.Group]:
        groups = rollups.read(conn, kind, p, keys=keys, filters=filters, measures=False)
        reads.groups[kind.name] = (keys, groups)
        return groups

    turn_dims = applicable(TURNS, dims)
    k = len(turn_dims)
    for key, g in counts(rollups.TURNS, (*turn_dims, "outcome", "origin")).items():
        outcome, origin = key[k:]
        n, n_wall = int(g.counts["turns"]), int(g.counts["wall_n"])
        for s in _slices_of(slices, turn_dims, key):
            s.by_outcome[outcome or "open"] += n
            if origin == "backfill":
                s.derived_by_outcome[outcome or "open"] += n
                s.derived_wall += n_wall
    api_dims = applicable(API_CALLS, dims)
    k = len(api_dims)
    names = [name for name, _ in rollups.API_SUMS]
    for key, g in counts(rollups.API, (*api_dims, "status", "error_type", "cost_status", "task")).items():
        status, error_type, cost_status, task = key[k:]
        nums = fold_api_group(status, cost_status, [g.counts[name] for name in names])
        calls = nums[0]
        for s in _slices_of(slices, api_dims, key):
            s.api_rows.append(nums)
            s.api_by_task[task or "unknown"].append(nums)
            if status == "error":
                s.errors[error_type or "unknown"] += calls
    tdims = applicable(TOOL_CALLS, tool_dims)
    k = len(tdims)
    for key, g in counts(rollups.TOOLS, (*tdims, "toolset", "status", "origin")).items():
        toolset, status, origin = key[k:]
        n = int(g.counts["calls"])
        for s in _slices_of(slices, tdims, key):
            s.tool_by_status[status] += n
            if toolset:
                s.toolsets[toolset] += n
            if origin == "backfill":
                s.derived_tools += n
    value_dims = list(q.group_by)
    tool_value_dims = applicable(TOOL_CALLS, value_dims + ([] if "tool" in value_dims else ["tool"]))
    for kind, vdims, names_of in ((rollups.TURNS, applicable(TURNS, value_dims), {"wall_ms": "wall_ms",
                                                                                  "queue_wait_ms": "queue_wait_ms"}),
                                  (rollups.API, applicable(API_CALLS, value_dims), {"latency_ms": "latency_ms",
                                                                                    "ttft_ms": "ttft_ms"}),
                                  (rollups.TOOLS, tool_value_dims, {"latency_ms": "tool_latency_ms"})):
        # the sketches (and the turns' histogram counts); the counts came from the reads above. The
        # rollup rows' sketches are merged once per key, each slice's from its keys' merges (the
        # sums added again in the rows' order: the same bits as merging every row into each slice)
        pending: dict[tuple[int, str], tuple[Slice, list[tuple[Sketch, list[float]]]]] = {}
        for key, g in rollups.read(conn, kind, p, keys=tuple(vdims), filters=filters,
                                   counts=kind is rollups.TURNS, merge=False).items():
            targets = _slices_of(slices, vdims, key)
            for measure, parsed in g.parsed.items():
                merged_key = (Sketch.merged_parsed(parsed), [part[2] for part in parsed])
                for s in targets:
                    pending.setdefault((id(s), names_of[measure]), (s, []))[1].append(merged_key)
            for measure, sketch in g.sketches.items():
                for s in targets:
                    mine = s.values.get(names_of[measure])
                    if isinstance(mine, Sketch):
                        mine.merge(sketch)
                    else:
                        s.values[names_of[measure]] = sketch.copy()
            if kind is rollups.TURNS:
                hist = g.hist or [0] * len(WALL_MS_EDGES)
                for s in targets:
                    s.wall_hist = [a + b for a, b in zip(s.wall_hist or [0] * len(hist), hist, strict=True)]
        for (_, name), (s, groups) in pending.items():
            merged = Sketch.merged_groups(groups)
            mine = s.values.get(name)
            s.values[name] = merged.merge(mine) if isinstance(mine, Sketch) else merged
        if p.edge_hours and rollups.kind_subtracts(kind):
            _settle_edges(conn, kind, p, vdims, filters, names_of, slices)
    return reads


def _settle_edges(conn: Any, kind: rollups.Kind, p: rollups.Plan, vdims: list[str], filters: dict[str, Any],
                  names_of: dict[str, str], slices: defaultdict[tuple[str, Any], Slice]) -> None:
    """The partial hours read as rollup minus raw (``Plan.edge_hours``) keep counts, sums and
    percentiles exact-as-ever, but a slice's min/max is provably a value of the window only when
    the rows subtracted did not hold it or another part of the window does (``Sketch.settle``);
    for the slices where neither holds, the window's part of those hours is scanned once per
    measure for the values that could be the extreme (``rollups.raw_values``) — so ``max`` stays
    exact (docs/json.md)."""
    for measure, name in names_of.items():
        waiting = []
        for s in list(slices.values()):
            sketch = s.values.get(name)
            if isinstance(sketch, Sketch) and sketch.settle():
                waiting.append((s, sketch, *sketch.bounds_wanted()))
        if not waiting:
            continue
        lows = [lo for _, _, lo, _ in waiting if lo is not None]
        highs = [hi for _, _, _, hi in waiting if hi is not None]
        found: defaultdict[int, list[float]] = defaultdict(list)
        for key, value in rollups.raw_values(conn, kind, p.edge_inside, measure, vdims, filters,
                                             below=max(lows) if lows else None, above=min(highs) if highs else None):
            for s in _slices_of(slices, vdims, key):
                found[id(s)].append(value)
        for s, sketch, _, _ in waiting:
            sketch.resolve(found.get(id(s), ()))



# ---------------------------------------------------------------------------------------------
# Building the report from what was collected
# ---------------------------------------------------------------------------------------------

def _sessions(s: Slice, captured: int, of: int) -> tuple[int, int] | None:
    """(sessions with ``captured``, sessions with ``of``); None when not known (rollups)."""
    return (s.sessions_with(captured), s.sessions_with(of)) if s.sessions_known else None


def _summary(values: list[float] | Sketch, of: int, s: Slice, sessions: tuple[int, int] | None = None) -> dict[str, Any]:
    """``summarize`` with ``session_coverage`` (null when the slice cannot know it)."""
    out = summarize(values, of, sessions)
    if sessions is None and not s.sessions_known:
        out["session_coverage"] = None
    return out


def _session_coverage(s: Slice, captured: int, of: int) -> dict[str, int] | None:
    known = _sessions(s, captured, of)
    return None if known is None else {"captured": known[0], "of": known[1]}


def turn_rates(by_outcome: Counter[str], derived: Counter[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(completion rate, failure rate) over the ended turns whose outcome is known.

    Imported turns are left out: their outcome is derived from messages, which never say that a
    turn failed or timed out, so a rate over them would claim what the data cannot know. An
    ``unknown`` outcome (an end was reported, not what kind) is neither completed nor failed: it is
    left out of ``n`` too, and each rate says how many ended turns it covers (``coverage``).
    """
    live = by_outcome - derived
    ended = sum(n for o, n in live.items() if o != "open")
    known = ended - live.get(TurnOutcome.UNKNOWN, 0)
    failures = sum(n for o, n in live.items() if o != "open" and turn_outcome_class(o) == OutcomeClass.FAILURE)
    coverage = {"coverage": {"known": known, "of": ended}}
    return rate(live.get(TurnOutcome.COMPLETED, 0), known) | coverage, rate(failures, known) | coverage


def turn_summary(s: Slice) -> dict[str, Any]:
    open_turns = s.by_outcome.get("open", 0)
    ended = s.turns - open_turns
    wall = s.values.get("wall_ms", [])
    completion, failure = turn_rates(s.by_outcome, s.derived_by_outcome)
    return {
        "count": s.turns,
        "open": open_turns,
        "by_outcome": dict(sorted(s.by_outcome.items())),
        "completion_rate": completion,
        "failure_rate": failure,
        "derived": {"count": sum(s.derived_by_outcome.values()), "in_rates": False, "in_wall_ms": s.derived_wall},
        "wall_ms": _summary(wall, ended, s, _sessions(s, TURN_WALL, TURN_ENDED)),
        "wall_ms_histogram": {"edges_ms": list(WALL_MS_EDGES),
                              "counts": s.wall_hist if isinstance(wall, Sketch) else histogram(wall, WALL_MS_EDGES)},
        "queue_wait_ms": _summary(s.values.get("queue_wait_ms", []), s.turns, s, _sessions(s, TURN_QUEUE, TURN_ROWS)),
    }


def cost_from_totals(t: dict[str, Any]) -> dict[str, Any]:
    """Cost split by provenance from summed ``API_FIELDS``; unknown is counted, never summed as zero."""
    actual = t["actual_usd"] if t["actual"] else None
    estimated = t["estimated_usd"] if t["estimated"] else None
    known = None if actual is None and estimated is None else (actual or 0.0) + (estimated or 0.0)
    unknown = t["billable"] - t["actual"] - t["estimated"] - t["included"]
    return {
        "actual_usd": actual,
        "estimated_usd": estimated,
        "known_usd": known,
        "calls": {"actual": t["actual"], "estimated": t["estimated"], "included": t["included"], "unknown": unknown},
        "complete": unknown == 0,
        "coverage": {"captured": t["actual"] + t["estimated"], "of": t["billable"]},
    }


def tokens_from_totals(t: dict[str, Any]) -> dict[str, Any]:
    """Token sums per kind from summed ``API_FIELDS``; null when calls succeeded but none reported usage."""
    tokens: dict[str, Any] = {kind: t[kind] for kind in TOKEN_KINDS}
    tokens["total_tokens"] = t["input_tokens"] + t["cache_read_tokens"] + t["cache_write_tokens"] + t["output_tokens"]
    if t["ok"] and not t["usage_captured"]:  # unknown tokens, not zero tokens
        tokens = dict.fromkeys(tokens)
    tokens["coverage"] = {"captured": t["usage_captured"], "of": t["ok"]}
    return tokens


def api_errors(t: dict[str, Any]) -> int | None:
    """Attempts the provider or the network failed: not the ones a person or a timeout interrupted.

    None (unknown, not zero) when every call that ran to an end is imported: Hermes' state.db
    keeps no failed attempts, so imported history cannot say how many failed."""
    if t["derived"] and not _could_fail(t):
        return None
    return int(t["calls"] - t["ok"] - t["interrupted"])


def _could_fail(t: dict[str, Any]) -> int:
    return int(t["calls"] - t["interrupted"] - t["derived"])


def api_error_rate(t: dict[str, Any]) -> dict[str, Any]:
    """Errors over the attempts that ran to an end and could have failed: interrupted attempts
    and imported calls (Hermes' state.db keeps no failed attempts) are left out."""
    return rate(api_errors(t) or 0, _could_fail(t))


def by_task(groups: dict[str, list[tuple[Any, ...]]]) -> dict[str, dict[str, Any]]:
    """Model calls split by task: ``main`` (the agent loop) and each auxiliary task."""
    out = {}
    for task in sorted(groups, key=lambda k: (k != "main", k)):
        t = sum_api_fields(groups[task])
        out[task] = {"count": t["calls"], "errors": api_errors(t), "interrupted": t["interrupted"],
                     "tokens": tokens_from_totals(t), "cost": cost_from_totals(t)}
    return out


def api_summary(s: Slice) -> dict[str, Any]:
    t = s.api_totals()
    tokens = tokens_from_totals(t)
    tokens["session_coverage"] = _session_coverage(s, API_USAGE, API_OK)
    cost = cost_from_totals(t)
    cost["session_coverage"] = _session_coverage(s, API_PRICED, API_BILLABLE)
    errors = api_errors(t)
    return {
        "count": t["calls"],
        "errors": errors,
        "interrupted": t["interrupted"],
        "error_rate": api_error_rate(t),
        "derived": {"calls": t["derived"], "in_error_rate": False},
        "error_types": dict(sorted(s.errors.items())),
        "by_task": by_task(s.api_by_task),
        "latency_ms": _summary(s.values.get("latency_ms", []), t["calls"] - t["interrupted"], s,
                               _sessions(s, API_LATENCY, API_ROWS)),
        "ttft_ms": _summary(s.values.get("ttft_ms", []), t["ok"], s, _sessions(s, API_TTFT, API_OK)),
        "tokens": tokens,
        "cost": cost,
    }


def tool_counts(by_status: dict[str, int]) -> tuple[int, int]:
    """(failures, calls whose status is known): an ``unknown`` status is neither ok nor failed."""
    failures = sum(n for status, n in by_status.items() if tool_failed(status))
    known = sum(n for status, n in by_status.items() if tool_failed(status) is not None)
    return failures, known


def tool_summary(s: Slice) -> dict[str, Any]:
    count = s.tool_calls
    failures, known = tool_counts(s.tool_by_status)
    return {
        "count": count,
        "failures": failures,
        "failure_rate": rate(failures, known),
        "status_coverage": {"captured": known, "of": count},
        "derived": {"count": s.derived_tools},
        "by_status": dict(sorted(s.tool_by_status.items())),
        "latency_ms": summarize(s.values.get("tool_latency_ms", []), count),
    }


def _session_summary(outcomes: Counter[str], unrated: Counter[str]) -> dict[str, Any]:
    total = sum(outcomes.values())
    rated = outcomes - unrated
    ended = sum(n for o, n in rated.items() if o != "open")
    failures = sum(n for o, n in rated.items() if o != "open" and session_outcome_class(o) == OutcomeClass.FAILURE)
    return {
        "count": total,
        "open": outcomes.get("open", 0),
        "by_outcome": dict(sorted(outcomes.items())),
        "completion_rate": rate(rated.get(SessionOutcome.COMPLETED, 0), ended),
        "failure_rate": rate(failures, ended),
        # imported one-run sessions: state.db cannot say whether the run failed
        "derived": {"count": sum(unrated.values()), "in_rates": False},
    }


def _conversations(c: Collected) -> dict[str, Any]:
    """Per conversation (root + subagents + continuations): every API call counted once.
    All null when read from rollups (they hold no sessions: ``NOT_IN_ROLLUPS``)."""
    if not c.slice().sessions_known:
        return dict.fromkeys(("count", "sessions", "subagent_sessions", "continuation_sessions",
                              "turns_per_conversation", "api_calls_per_conversation", "tokens_per_conversation",
                              "cost_usd_per_conversation"))
    flags = c.slice().session_flags
    members: dict[str, list[str]] = defaultdict(list)
    for sid in flags:
        members[c.roots.get(sid, sid)].append(sid)
    no_api = [0, 0, 0.0, 0, 0]
    calls, tokens, costs, turns = [], [], [], []
    with_ok = billable = subagents = continuations = 0
    for sids in members.values():
        rows = [c.session_api.get(sid, no_api) for sid in sids]
        had = 0
        for sid in sids:
            had |= flags[sid]
            if sid in c.lineage:
                if c.lineage[sid] == "subagent":
                    subagents += 1
                else:
                    continuations += 1
        calls.append(sum(r[0] for r in rows))
        turns.append(sum(c.session_turns.get(sid, 0) for sid in sids))
        if had & API_OK:
            with_ok += 1
        if had & API_USAGE:
            tokens.append(sum(r[1] for r in rows))
        if had & API_BILLABLE:
            billable += 1
            if had & API_PRICED and all(r[4] == 0 for r in rows):
                costs.append(math.fsum(r[2] for r in rows))
    n = len(members)
    for values in (calls, tokens, costs, turns):
        values.sort()
    return {
        "count": n,
        "sessions": len(flags),
        "subagent_sessions": subagents,
        "continuation_sessions": continuations,
        "turns_per_conversation": summarize(turns, n),
        "api_calls_per_conversation": summarize(calls, n),
        "tokens_per_conversation": summarize(tokens, with_ok),
        "cost_usd_per_conversation": summarize(costs, billable),
    }


def _key_out(dim: str, key: Any) -> Any:
    return day_iso(key) if dim == "day" and key is not None else key


def _failures(s: Slice) -> int:
    return sum(n for o, n in s.by_outcome.items() if o != "open" and turn_outcome_class(o) == OutcomeClass.FAILURE)


def _daily(c: Collected) -> list[dict[str, Any]]:
    """Per UTC day of the window: counts (a day without rows has zero of them)."""
    q = c.query
    first, last = int(q.since_ms // DAY_MS), int((q.until_ms - 1) // DAY_MS)
    out = []
    for day in range(first, last + 1):
        s = c.slice(("day", day))
        t = s.api_totals()
        out.append({
            "day": day_iso(day),
            "sessions": s.sessions,
            "turns": s.turns,
            "turn_failures": _failures(s),
            "api_calls": t["calls"],
            "api_errors": api_errors(t),
            "total_tokens": tokens_from_totals(t)["total_tokens"],
            "tool_calls": s.tool_calls,
        })
    return out


def _breakdown(c: Collected, dim: str) -> list[dict[str, Any]]:
    keys = {key for (d, key) in c.slices if d == dim}
    rows = []
    for key in sorted(keys, key=lambda k: (k is None, str(k))):
        s = c.slice((dim, key))
        row: dict[str, Any] = {dim: _key_out(dim, key), "sessions": s.sessions}
        if dim in TOOL_DIMENSIONS:  # these classify tool calls only
            row.update(sessions=None, turns=None, api_calls=None)
        else:
            row.update(turns=turn_summary(s), api_calls=api_summary(s))
        row["tool_calls"] = tool_summary(s)
        rows.append(row)
    return rows


def _tools(c: Collected) -> list[dict[str, Any]]:
    out = []
    for (dim, name), s in c.slices.items():
        if dim != "tool":
            continue
        summary = tool_summary(s)
        out.append({
            "tool_name": name,
            "toolset": s.toolsets.most_common(1)[0][0] if s.toolsets else None,
            "calls": summary["count"],
            "failures": summary["failures"],
            "failure_rate": summary["failure_rate"],
            "status_coverage": summary["status_coverage"],
            "by_status": summary["by_status"],
            "latency_ms": summary["latency_ms"],
        })
    return sorted(out, key=lambda t: (-t["calls"], str(t["tool_name"])))


def build_report(c: Collected) -> dict[str, Any]:
    """The insights report (``hermetry.insights.v1``) from collected figures."""
    q, total = c.query, c.slice()
    tools, api = tool_summary(total), api_summary(total)
    conversations = _conversations(c)
    return {
        "schema": REPORT_SCHEMA,
        "window": {"since": iso(q.since_ms), "until": iso(q.until_ms), "since_ms": q.since_ms,
                   "until_ms": q.until_ms, "days": round((q.until_ms - q.since_ms) / DAY_MS, 4)},
        "filters": dict(q.filters),
        "group_by": list(q.group_by),
        "coverage": {"sessions": total.sessions, "sessions_started": sum(c.session_outcomes.values()),
                     "conversations": conversations["count"], "turns": total.turns, "api_calls": api["count"], "tool_calls": total.tool_calls,
                     "events_dropped": c.events_dropped},
        "sessions": _session_summary(c.session_outcomes, c.session_outcomes_unrated),
        "count_labels": dict(COUNT_LABELS),
        "conversations": conversations,
        "turns": turn_summary(total),
        "api_calls": api,
        "tool_calls": {k: tools[k] for k in ("count", "failures", "failure_rate", "status_coverage", "by_status",
                                             "latency_ms", "derived")},
        "tools": _tools(c),
        "daily": _daily(c),
        "breakdowns": {dim: _breakdown(c, dim) for dim in q.group_by},
        "method": report_method(c),
    }


def report_method(c: Collected) -> dict[str, Any]:
    """How the figures were computed: every raw row (``exact``), or rollups for the window's whole
    hours (``rollups``: counts and sums identical, percentiles within ``relative_error``)."""
    p = c.plan
    if p is None:
        return {"path": "exact", "relative_error": None, "exact_below_calls": EXACT_BELOW_CALLS,
                "hours_from_rollups": 0, "pruned_before": None, "since_read_from": None, "null_in_rollups": None}
    return {"path": "rollups", "relative_error": Sketch.alpha, "exact_below_calls": EXACT_BELOW_CALLS,
            "hours_from_rollups": p.hours_from_rollups,
            "pruned_before": iso(p.pruned_before_ms),
            # before a prune only whole hours exist: the window's start as read
            "since_read_from": iso(p.snapped_since_ms),
            "null_in_rollups": dict(NOT_IN_ROLLUPS)}


def insights(db: Db, query: Query, *, tz: tzinfo | None = None, exact: bool = False) -> dict[str, Any]:
    """The report for a window: coverage, outcomes, latency, tokens, cost, tools, breakdowns,
    and what ``hermes insights`` shows (``activity``; weekday and hour in ``tz``, default local).

    A large window reads the rollups (``method`` says so; dirty hours are read raw — a surface
    that may write calls ``stores.rollups.refresh(db)`` first); ``exact`` reads every raw row."""
    from hermetry.analytics.activity import activity

    query.check()
    # the report's reads share their raw ranges' rows, in one snapshot of the store (a partial hour
    # read as its rollup minus raw rows needs both as of one moment)
    with open_db(db) as conn, rollups.raw_cache(), rollups.snapshot(conn):
        collected = collect(conn, query, exact=exact)
        report = build_report(collected)
        report["activity"] = activity(conn, query.since_ms, query.until_ms, query.filters, tz,
                                      exact=True if exact else None, reads=collected.reads)
        # rows written for pruned time after the prune: in no figure above (stores.rollups.late_rows)
        report["method"]["late_rows"] = (rollups.late_rows(conn, query.since_ms, query.until_ms)
                                         if conn is not None and report["method"]["pruned_before"] else None)
        return report
