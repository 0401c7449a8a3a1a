"""What ``hermes insights`` shows, from hermetry's store: messages, active time, activity by
weekday and hour, active days and streak, notable sessions, each tool's share, skills.

The definitions are Hermes' own (``agent/insights.py`` in hermes-agent 0.19.0), so an operator
can retire ``hermes insights``:

* the sessions are those that **started** in the window (after the report's filters), as
  Hermes selects them; weekday, hour and day use the start time in the report's zone (local
  unless UTC is asked for), as Hermes uses local time;
* **active time** is the sum of the durations of the sessions that ended (end after start),
  **average session length** their mean;
* **active days** are the days with a session start, the **streak** the longest run of
  consecutive active days;
* **notable sessions**: longest (duration), most messages, most tokens (input + output, as
  Hermes counts them: no cache tokens), most tool calls; ties go to the newest session (then the
  greatest session id, on both paths);
* **each tool's share** is its calls over all tool calls of those sessions; **skills loaded /
  edited** are calls of Hermes' ``skill_view`` / ``skill_manage`` tools.

Messages: a backfilled session (``hermetry import``) has Hermes' own message count, read from
``state.db`` — exact. Live capture does not see messages; it *derives* them where the count
is exact by construction: one user message per turn, one assistant message per successful
model call, one tool message per tool call. The JSON says how many sessions each kind covers.
Which skill a call loaded is a tool argument, which hermetry never stores, so per-skill names
are not available (``distinct_skills: null``).

**Time before a prune** (``hermetry prune``) is always read from the rollups, as the report
reads it: the raw rows left there are not its sessions' rows. **A large window** (more than
:data:`EXACT_MAX_SESSIONS` sessions started in it, on a store with rollups, no tool filter): what rows add up to — messages derived from turns, successful calls
and tool calls, each tool's share, skills, tokens — is read from the hourly rollups
(``stores.rollups.read``) over the rows *started in the window*, and what belongs to sessions —
how many started, weekday and hour, active days, streak, active time, the longest session — from
the sessions rollup (``stores.rollups.SESSIONS``: sessions by hour of start, the window's partial
and dirty hours from the sessions table). Weekday, hour and day are applied per hour of start,
which is exact when the zone's offset is a whole number of hours all through each hour (UTC,
most zones, their DST changes); for any other zone (e.g. +05:30, +05:45) the starts come from one
``GROUP BY`` per minute over the window's sessions (the rest still from the rollup); ``starts_by``
says which (``session`` on the exact path, ``hour`` or ``minute`` here). The longest
session: its hour from the rollup, then one indexed lookup in that hour. Hermes' own message
counts of imported sessions come from ``backfill_state`` (no cost without an import). Per-session totals (the sessions with the most
messages, tokens or tool calls) need every row of every session: they are ``null`` there, with
``notable_sessions_not_computed`` saying so, and given by ``exact=True`` (``--exact``).
``method`` says which was used (``exact`` | ``rollups``). The two agree on every figure when the
window holds all of its sessions' rows (tested).

Token totals differ from Hermes' per-platform table because hermetry also counts the auxiliary
model calls Hermes makes (compression summaries, titles, vision; ``api_calls.task`` other than
``main``): recorded live, and imported from ``session_model_usage``. ``tokens_vs_hermes`` gives
both numbers; messages and "most tokens" count the agent loop's own calls only, as Hermes does.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from hermetry.analytics.query import SESSIONS, Query, Scanner, refuse_tool_filter_in_pruned_time
from hermetry.analytics.query import iso as _iso
from hermetry.model.events import TASK_MAIN
from hermetry.model.kinds import API_OK
from hermetry.model.units import HOUR_MS

#: Hermes' tools that load and edit skills (``agent/insights.py``: skill_view / skill_manage).
SKILL_LOAD_TOOL, SKILL_EDIT_TOOL = "skill_view", "skill_manage"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: SQL: an auxiliary model call (compression, titles, vision, …), live or imported: any task but
#: the agent loop's own (``api_calls.task``; NULL only in rows written before schema v5).
AUXILIARY_SQL = f"(COALESCE(a.task, '{TASK_MAIN}') <> '{TASK_MAIN}')"
#: Up to this many sessions started in the window, activity is computed per session from every
#: raw row (exact); above it, from the rollups (see the module docstring). Measured here: the
#: exact path costs ~35–90 µs per session (0.35 s for 10,000 imported sessions, 9 s for 100,000
#: live ones), so this keeps it near 0.2–0.4 s; a week of one busy operator is far below it.
EXACT_MAX_SESSIONS = 5_000
#: Why some notable sessions are null on the rollup path.
NOT_ON_ROLLUPS = ("per-session totals need every row of every session; on a window this large they are "
                  "not computed (ask for the exact path: --exact)")
#: … and on a window reaching back before a prune (review m17): ``--exact`` cannot help there.
NOT_IN_PRUNED_TIME = ("per-session totals need every row of every session; raw rows before {boundary} were "
                      "pruned (hermetry prune), so they cannot be computed for a window reaching back before it "
                      "(--exact cannot help): ask from --since {boundary} on")


def not_computed(since_ms: float, pruned_before_ms: float | None) -> dict[str, Any]:
    """``notable_sessions_not_computed`` on the rollup path: which keys, why, and what would compute
    them (``hint``: the flag the text report suggests — ``--exact``, or in pruned time ``--since``
    the prune boundary)."""
    keys = ["most_messages", "most_tokens", "most_tool_calls"]
    if pruned_before_ms is not None and since_ms < pruned_before_ms:
        boundary = _iso(pruned_before_ms)
        return {"keys": keys, "why": NOT_IN_PRUNED_TIME.format(boundary=boundary), "hint": f"--since {boundary}"}
    return {"keys": keys, "why": NOT_ON_ROLLUPS, "hint": "--exact"}


def _zone(tz: tzinfo | None) -> tzinfo:
    if tz is not None:
        return tz
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else UTC


def _where(conn: sqlite3.Connection, since_ms: float, until_ms: float,
           filters: dict[str, str]) -> tuple[str, list[Any]]:
    """The sessions that started in the window, after the report's filters (the query layer's)."""
    query = Query(since_ms=since_ms, until_ms=until_ms, filters=filters, group_by=())
    _, where, params = Scanner(conn, query).scope(SESSIONS, hint=False)
    return where, params


def _sessions_source(conn: Any, since_ms: float, until_ms: float, filters: dict[str, str]) -> str:
    """``sessions s`` with the store's planner hint for this window (a scan when it holds most rows)."""
    query = Query(since_ms=since_ms, until_ms=until_ms, filters=filters, group_by=())
    source, _, _ = Scanner(conn, query).scope(SESSIONS)
    return source


def _has_backfill_state(conn: sqlite3.Connection) -> bool:
    """Whether the store keeps the import's bookkeeping (a file older than schema v2 does not)."""
    if not isinstance(conn, sqlite3.Connection):  # PostgreSQL: the schema always has it
        return True
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'backfill_state'").fetchone() \
        is not None


def empty_activity(tz: tzinfo | None = None) -> dict[str, Any]:
    return _build({}, {}, {}, Counter(), {}, Counter(), {"total": 0, "auxiliary": 0}, _zone(tz), None)


def _rollups_apply(conn: Any, where: str, params: list[Any], filters: dict[str, str]) -> bool:
    """Whether a window is large enough for the rollup path, and the store and filters allow it."""
    if "tool" in filters or "toolset" in filters:  # "turns that called a tool": not in any rollup
        return False
    from hermetry.stores.rollups import has_rollups

    if not has_rollups(conn):
        return False
    cursor = conn.cursor()
    cursor.row_factory = None
    n = cursor.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM sessions s WHERE {where} LIMIT {EXACT_MAX_SESSIONS + 1}) x",
                       params).fetchone()[0]
    return int(n) > EXACT_MAX_SESSIONS


def activity(conn: sqlite3.Connection | None, since_ms: float, until_ms: float,
             filters: dict[str, str] | None = None, tz: tzinfo | None = None, *,
             exact: bool | None = None, reads: Any = None) -> dict[str, Any]:
    """The ``hermes insights`` figures for the sessions that started in ``[since_ms, until_ms)``.

    ``exact``: True — per session, from every raw row; False — from the rollups where the store
    has them; None (default) — the rollups for a large window (module docstring). ``reads``: the
    report's rollup reads of the same window (``stores.rollups.Reads``), regrouped here rather than
    read again."""
    zone = _zone(tz)
    if conn is None:
        return empty_activity(zone)
    filters = filters or {}
    where, params = _where(conn, since_ms, until_ms, filters)
    from hermetry.stores.rollups import has_rollups, pruned_before_ms

    boundary = pruned_before_ms(conn) if has_rollups(conn) else None
    refuse_tool_filter_in_pruned_time(filters, since_ms, boundary)
    # time before a prune has only rollups (as in the report): the raw rows left there are not its sessions' rows
    pruned = boundary is not None and since_ms < boundary
    if has_rollups(conn) and (pruned or (exact is not True and (
            _rollups_apply(conn, where, params, filters) if exact is None else
            "tool" not in filters and "toolset" not in filters))):
        return _from_rollups(conn, where, params, since_ms, until_ms, filters, zone, reads)
    scope = f"SELECT s.session_id FROM sessions s WHERE {where}"

    def q(sql: str) -> list[tuple[Any, ...]]:
        cursor = conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params).fetchall()

    sessions = {sid: (start, end) for sid, start, end in q(
        f"SELECT s.session_id, s.started_at_ms, s.ended_at_ms FROM sessions s WHERE {where}")}
    turns = dict(q(f"SELECT session_id, COUNT(*) FROM turns WHERE session_id IN ({scope}) GROUP BY 1"))
    api: dict[str, tuple[int, int]] = {}
    tokens = {"total": 0, "auxiliary": 0}
    for sid, ok_main, io_main, total, aux in q(
        f"SELECT a.session_id, SUM(CASE WHEN a.status = '{API_OK}' AND a.api_request_id NOT LIKE 'backfill:%' "
        f"AND NOT {AUXILIARY_SQL} THEN 1 ELSE 0 END), "
        f"COALESCE(SUM(CASE WHEN NOT {AUXILIARY_SQL} THEN COALESCE(a.input_tokens, 0) + COALESCE(a.output_tokens, 0) END), 0), "
        "COALESCE(SUM(COALESCE(a.input_tokens, 0) + COALESCE(a.output_tokens, 0) + COALESCE(a.cache_read_tokens, 0) "
        "+ COALESCE(a.cache_write_tokens, 0)), 0), "
        f"COALESCE(SUM(CASE WHEN {AUXILIARY_SQL} THEN COALESCE(a.input_tokens, 0) + COALESCE(a.output_tokens, 0) "
        "+ COALESCE(a.cache_read_tokens, 0) + COALESCE(a.cache_write_tokens, 0) END), 0) "
        f"FROM api_calls a WHERE a.session_id IN ({scope}) GROUP BY 1"
    ):
        api[sid] = (int(ok_main or 0), int(io_main or 0))
        tokens["total"] += int(total or 0)
        tokens["auxiliary"] += int(aux or 0)
    # two small GROUP BYs, not one by (session, tool): SQL folds the rows, Python sees sessions + tools
    tools_per_session: Counter[str] = Counter(dict(q(
        f"SELECT session_id, COUNT(*) FROM tool_calls WHERE session_id IN ({scope}) GROUP BY 1")))
    tools: Counter[str] = Counter(dict(q(
        f"SELECT tool_name, COUNT(*) FROM tool_calls WHERE session_id IN ({scope}) GROUP BY 1")))
    messages: dict[str, int] = {}
    if _has_backfill_state(conn):
        messages = {sid: n for sid, n in q(
            f"SELECT session_id, message_count FROM backfill_state WHERE session_id IN ({scope}) "
            "AND message_count IS NOT NULL")}
    return _build(sessions, turns, api, tools_per_session, messages, tools, tokens, zone, until_ms)


def _from_rollups(conn: Any, where: str, params: list[Any], since_ms: float, until_ms: float,
                  filters: dict[str, str], zone: tzinfo, reads: Any = None) -> dict[str, Any]:
    """The rollup path (module docstring): one row per minute of session starts, one per group of
    rollup rows; exact figures throughout, per-session maxima other than the longest left null."""
    from hermetry.stores.rollups import API, SESSIONS, TOOLS, TURNS, has_kind, plan, read

    def q(sql: str) -> list[tuple[Any, ...]]:
        cursor = conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params).fetchall()

    same = reads is not None and reads.plan.since_ms == since_ms and reads.plan.until_ms == until_ms
    p = reads.plan if same else plan(conn, since_ms, until_ms)
    keep = {k: v for k, v in filters.items() if k in ("source", "model", "provider", "session_type", "profile", "host")}

    def counts(kind: Any, keys: tuple[str, ...]) -> Any:
        found = reads.get(kind, keys, keep) if same else None
        return found if found is not None else read(conn, kind, p, keys=keys, filters=keep, measures=False)

    if has_kind(conn, SESSIONS):
        starts, n_timed, active_ms, longest, starts_by = _sessions_from_rollups(conn, p, keep, since_ms, until_ms,
                                                                                filters, zone)
    else:  # a file read at schema < 12
        starts, n_timed, active_ms, longest = _sessions_by_minute(conn, where, params, since_ms, until_ms, filters)
        starts_by = "minute"
    n_sessions = sum(starts.values())
    exact_sessions, exact_messages = 0, 0
    if _has_backfill_state(conn):  # from the imported sessions to theirs: no cost without an import
        # CROSS JOIN: SQLite keeps this order (each imported session looked up by its key)
        row = q(f"SELECT COUNT(*), SUM(b.message_count) FROM backfill_state b CROSS JOIN sessions s "
                f"WHERE s.session_id = b.session_id AND b.message_count IS NOT NULL AND {where}")[0]
        exact_sessions, exact_messages = int(row[0] or 0), int(row[1] or 0)

    turns = counts(TURNS, ("origin",))
    api = counts(API, ("status", "task"))
    tool_groups = counts(TOOLS, ("tool", "origin"))
    user = sum(int(g.counts["turns"]) for g in turns.values())
    live_turns = sum(int(g.counts["turns"]) for (origin,), g in turns.items() if origin != "backfill")
    ok_main_live = sum(int(g.counts["calls"]) - int(g.counts["derived_calls"]) for (status, task), g in api.items()
                       if status == "ok" and (task or TASK_MAIN) == TASK_MAIN)
    tools: Counter[str] = Counter()
    live_tools = 0
    for (name, origin), g in tool_groups.items():
        tools[name] += int(g.counts["calls"])
        if origin != "backfill":
            live_tools += int(g.counts["calls"])
    kinds = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    total_tokens = sum(int(g.counts[k]) for g in api.values() for k in kinds)
    aux_tokens = sum(int(g.counts[k]) for (_, task), g in api.items() if (task or TASK_MAIN) != TASK_MAIN
                     for k in kinds)

    out = _build({}, {}, {}, Counter(), {}, tools, {"total": total_tokens, "auxiliary": aux_tokens}, zone, until_ms,
                 starts=starts)
    total_messages = exact_messages + live_turns + ok_main_live + live_tools
    out["sessions"] = n_sessions
    out["messages"].update(total=total_messages, user=user, sessions_exact=exact_sessions,
                           sessions_derived=n_sessions - exact_sessions,
                           definition="exact: Hermes' message count (imported sessions started in the window); "
                                      "derived: turns + successful model calls + tool calls started in the window "
                                      "(live capture, hourly rollups)")
    out["avg_messages_per_session"] = total_messages / n_sessions if n_sessions else None
    out["active_time_ms"] = active_ms if n_timed else None
    out["avg_session_ms"] = active_ms / n_timed if n_timed else None
    out["sessions_timed"] = n_timed
    notable = out["notable_sessions"]
    if longest:
        sid, duration_ms, start = longest[0]
        notable["longest"] = {"session_id": sid, "duration_ms": float(duration_ms),
                              "started_at": datetime.fromtimestamp(start / 1000, tz=UTC).astimezone(zone)
                              .isoformat(timespec="seconds")}
    for key in ("most_messages", "most_tokens", "most_tool_calls"):
        notable[key] = None
    out["notable_sessions_not_computed"] = not_computed(since_ms, p.pruned_before_ms) if n_sessions else None
    out["method"] = "rollups"
    out["starts_by"] = starts_by
    return out


_DURATION = "CASE WHEN s.ended_at_ms > s.started_at_ms THEN s.ended_at_ms - s.started_at_ms END"


def _sessions_from_rollups(conn: Any, p: Any, keep: dict[str, str], since_ms: float, until_ms: float,
                           filters: dict[str, str], zone: tzinfo) -> tuple[Counter[int], int, float, list[Any], str]:
    """(starts per minute, timed sessions, their summed duration, [the longest session row]) of the
    window's sessions, from the sessions rollup (``stores.rollups.SESSIONS``, by hour of start; the
    plan's raw ranges from the sessions table). Weekday, hour and day are applied per hour of start:
    exact when the zone's offset is a whole number of hours all through each hour; for any other
    zone (e.g. +05:30) the starts come from one pass over the window's sessions, per minute (the
    last value says which: ``"hour"`` or ``"minute"``)."""
    from hermetry.stores.rollups import SESSIONS, read

    hours = read(conn, SESSIONS, p, keys=("hour",), filters=keep, measures=False)
    n_timed = sum(int(g.counts["timed"]) for g in hours.values())
    active_ms = sum(float(g.counts["duration_ms"]) for _, g in sorted(hours.items()))
    # the longest: its hour from the rollup (the latest of equal maxima), then one lookup in that hour
    top = max(((float(g.counts["duration_max_ms"]), int(h)) for (h,), g in hours.items()
               if g.counts["duration_max_ms"] is not None), default=None)
    longest: list[Any] = []
    if top is not None:
        lo, hi = max(top[1] * HOUR_MS, since_ms), min((top[1] + 1) * HOUR_MS, until_ms)
        if p.snapped_since_ms is not None and top[1] * HOUR_MS < since_ms:
            lo = top[1] * HOUR_MS  # pruned time: the window's first hour is read whole (``Plan.snapped``)
        where, params = _where(conn, lo, hi, filters)
        cursor = conn.cursor()
        cursor.row_factory = None
        longest = cursor.execute(
            f"SELECT s.session_id, {_DURATION}, s.started_at_ms FROM sessions s WHERE {where} "
            f"AND {_DURATION} = ? ORDER BY 3 DESC, 1 DESC LIMIT 1", [*params, top[0]]).fetchall()
    if all(_whole_hour_offset(zone, int(h)) for (h,) in hours):
        starts: Counter[int] = Counter({int(h) * 60: int(g.counts["sessions"]) for (h,), g in hours.items()
                                        if g.counts["sessions"]})
        return starts, n_timed, active_ms, longest, "hour"
    where, params = _where(conn, since_ms, until_ms, filters)
    starts = _starts_by_minute(conn, where, params, since_ms, until_ms, filters)
    return starts, n_timed, active_ms, longest, "minute"


def _whole_hour_offset(zone: tzinfo, hour: int) -> bool:
    """Is ``zone``'s offset a whole number of hours, the same all through UTC hour ``hour``?"""
    first = datetime.fromtimestamp(hour * 3600, tz=UTC).astimezone(zone).utcoffset()
    last = datetime.fromtimestamp(hour * 3600 + 3599, tz=UTC).astimezone(zone).utcoffset()
    return first == last and first is not None and first.total_seconds() % 3600 == 0


_MINUTE = "CAST(FLOOR(s.started_at_ms / 60000.0) AS BIGINT)"


def _starts_by_minute(conn: Any, where: str, params: list[Any], since_ms: float, until_ms: float,
                      filters: dict[str, str]) -> Counter[int]:
    source = _sessions_source(conn, since_ms, until_ms, filters)
    cursor = conn.cursor()
    cursor.row_factory = None
    return Counter({int(m): int(n) for m, n in cursor.execute(
        f"SELECT {_MINUTE}, COUNT(*) FROM {source} WHERE {where} GROUP BY 1", params)})


def _sessions_by_minute(conn: Any, where: str, params: list[Any], since_ms: float, until_ms: float,
                        filters: dict[str, str]) -> tuple[Counter[int], int, float, list[Any]]:
    """What :func:`_sessions_from_rollups` gives, from one pass over the window's sessions, one row
    per minute of starts (a store without the sessions rollup); the longest session is looked up in
    the minute that holds the longest duration."""
    source = _sessions_source(conn, since_ms, until_ms, filters)
    cursor = conn.cursor()
    cursor.row_factory = None
    starts: Counter[int] = Counter()
    n_timed, active_ms = 0, 0.0
    top: tuple[float, int] | None = None  # (longest duration, its latest minute)
    for m, n, k, total, most in cursor.execute(
            f"SELECT {_MINUTE}, COUNT(*), COUNT({_DURATION}), SUM({_DURATION}), MAX({_DURATION}) "
            f"FROM {source} WHERE {where} GROUP BY 1", params).fetchall():
        starts[int(m)] += int(n)
        n_timed += int(k or 0)
        active_ms += float(total or 0.0)
        if most is not None and (top is None or (float(most), int(m)) > top):
            top = (float(most), int(m))
    longest: list[Any] = []
    if top is not None:
        longest = cursor.execute(
            f"SELECT s.session_id, {_DURATION}, s.started_at_ms FROM sessions s WHERE {where} "
            f"AND s.started_at_ms >= ? AND s.started_at_ms < ? AND {_DURATION} = ? ORDER BY 3 DESC, 1 DESC LIMIT 1",
            [*params, top[1] * 60_000.0, (top[1] + 1) * 60_000.0, top[0]]).fetchall()
    return starts, n_timed, active_ms, longest


def _build(sessions: dict[str, tuple[float | None, float | None]], turns: dict[str, int],
           api: dict[str, tuple[int, int]], tools_per_session: Counter[str], exact_messages: dict[str, int],
           tools: Counter[str], tokens: dict[str, int], zone: tzinfo, at_ms: float | None, *,
           starts: Counter[int] | None = None) -> dict[str, Any]:
    per_session_messages: dict[str, int] = {}
    user = exact = derived = 0
    for sid in sessions:
        user += turns.get(sid, 0)
        if sid in exact_messages:
            per_session_messages[sid] = exact_messages[sid]
            exact += 1
        else:
            per_session_messages[sid] = turns.get(sid, 0) + api.get(sid, (0, 0))[0] + tools_per_session.get(sid, 0)
            derived += 1
    total_messages = sum(per_session_messages.values())

    durations = {sid: end - start for sid, (start, end) in sessions.items()
                 if start is not None and end is not None and end > start}
    weekday: Counter[int] = Counter()
    hour: Counter[int] = Counter()
    days: set[date] = set()
    # every zone's offset is a whole number of minutes: convert each minute once, not each session
    minutes: Counter[int] = starts if starts is not None else Counter(
        int(start // 60_000) for start, _ in sessions.values() if start is not None)
    for minute, n in minutes.items():
        dt = datetime.fromtimestamp(minute * 60, tz=UTC).astimezone(zone)
        weekday[dt.weekday()] += n
        hour[dt.hour] += n
        days.add(dt.date())
    streak = best = 0
    previous: date | None = None
    for d in sorted(days):
        streak = streak + 1 if previous is not None and d - previous == timedelta(days=1) else 1
        best = max(best, streak)
        previous = d

    by_weekday: list[dict[str, Any]] = [{"day": WEEKDAYS[i], "sessions": weekday.get(i, 0)} for i in range(7)]
    by_hour: list[dict[str, Any]] = [{"hour": h, "sessions": hour.get(h, 0)} for h in range(24)]
    n = len(sessions) if starts is None else sum(starts.values())
    total_tool_calls = sum(tools.values())
    at = datetime.now(zone) if at_ms is None else datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(zone)
    offset = at.utcoffset() or timedelta(0)
    offset_minutes = int(offset.total_seconds() // 60)

    def notable(values: dict[str, float], unit: str) -> dict[str, Any] | None:
        best_sid = max((sid for sid, v in values.items() if v and v > 0),
                       key=lambda sid: (values[sid], sessions[sid][0] or 0, sid), default=None)
        if best_sid is None:
            return None
        start = sessions[best_sid][0]
        return {"session_id": best_sid, unit: values[best_sid],
                "started_at": None if start is None else
                datetime.fromtimestamp(start / 1000, tz=UTC).astimezone(zone).isoformat(timespec="seconds")}

    return {
        "method": "exact",
        # what weekday, hour and day were applied to: each session's start, or (rollups) each hour or
        # minute of starts — the same figures (module docstring)
        "starts_by": "session",
        "timezone": {"name": at.tzname(), "utc_offset_minutes": offset_minutes},
        "sessions": n,
        "messages": {
            "total": total_messages,
            "user": user,
            "sessions_exact": exact,
            "sessions_derived": derived,
            "definition": "exact: Hermes' message count (imported); derived: turns + successful model calls "
                          "+ tool calls (live capture)",
        },
        "avg_messages_per_session": total_messages / n if n else None,
        "active_time_ms": sum(durations.values()) if durations else None,
        "avg_session_ms": sum(durations.values()) / len(durations) if durations else None,
        "sessions_timed": len(durations),
        "by_weekday": by_weekday,
        "by_hour": by_hour,
        "busiest_weekday": max(by_weekday, key=lambda d: d["sessions"]) if n else None,
        "busiest_hour": max(by_hour, key=lambda h: h["sessions"]) if n else None,
        "active_days": len(days),
        "longest_streak_days": best,
        "notable_sessions": {
            "longest": notable({sid: float(v) for sid, v in durations.items()}, "duration_ms"),
            "most_messages": notable({sid: float(v) for sid, v in per_session_messages.items()}, "messages"),
            "most_tokens": notable({sid: float(v[1]) for sid, v in api.items() if sid in sessions}, "tokens"),
            "most_tool_calls": notable({sid: float(v) for sid, v in tools_per_session.items()}, "tool_calls"),
        },
        "tools": [{"tool_name": name, "calls": c, "share": c / total_tool_calls}
                  for name, c in sorted(tools.items(), key=lambda kv: (-kv[1], kv[0]))],
        "skills": {
            "loads": tools.get(SKILL_LOAD_TOOL, 0),
            "edits": tools.get(SKILL_EDIT_TOOL, 0),
            "distinct_skills": None,
            "distinct_skills_not_captured": "which skill a call used is a tool argument, which hermetry does not store",
        },
        "tokens_vs_hermes": {
            "total_tokens": tokens["total"],
            "auxiliary_tokens": tokens["auxiliary"],
            "main_loop_tokens": tokens["total"] - tokens["auxiliary"],
            "why": "hermetry counts auxiliary model calls (compression, titles, vision) where it knows them; "
                   "Hermes' per-platform table counts the main agent loop only",
        },
    }
