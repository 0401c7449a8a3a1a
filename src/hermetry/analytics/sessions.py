"""Sessions: the recent ones (``list_sessions``) and one in detail (``session_detail``).

A session's totals use the same token and cost rules as ``insights()`` (``report.fold_api_group``,
``tokens_from_totals``, ``cost_from_totals``). Listed sessions are conversations by default: a
root session with its subagents and compression continuations rolled up, each API call counted
once (it belongs to exactly one session).

The waterfall of a turn says where its wall time went::

    wall_ms = model_ms + tools_ms - overlap_ms + other_ms

``model_ms`` and ``tools_ms`` are the summed durations of the turn's API calls and tool calls
(clipped to the turn), ``overlap_ms`` is the time during which two or more of them ran at once
(parallel tool calls), and ``other_ms`` — Hermes' own work between calls — is what no call
covered, so it is never negative. Queue wait happens *before* a turn starts (hermetry's turn
starts when Hermes picks the message up), so it is shown next to the wall time, not inside it:
the person waited ``queue_wait_ms + wall_ms``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from hermetry.analytics.query import iso, window_sql
from hermetry.analytics.report import (
    API_AGGREGATES,
    API_FIELDS,
    api_errors,
    cost_from_totals,
    fold_api_group,
    sum_api_fields,
    tokens_from_totals,
    tool_counts,
    turn_rates,
)
from hermetry.model.kinds import TOKEN_KINDS
from hermetry.model.sessions import ancestors as lineage_ancestors
from hermetry.stores import rollups
from hermetry.stores.dialect import dialect_of
from hermetry.stores.reader import Db, open_db
from hermetry.stores.sqlite_util import chunks

SESSIONS_SCHEMA = "hermetry.sessions.v1"
SESSION_SCHEMA = "hermetry.session.v1"

_SESSION_FIELDS = (
    "session_id", "parent_session_id", "parent_turn_id", "lineage", "source", "session_type", "profile",
    "model", "provider", "runtime_version", "started_at_ms", "ended_at_ms", "end_reason", "outcome", "origin",
)
_CHUNK = 500


class SessionNotFound(LookupError):
    """No session with that id (or id prefix) in the telemetry file."""


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples, whatever the connection's row factory
    return cursor.execute(sql, params)


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = _execute(conn, sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


#: Ids per ``IN (…)`` list on the listing path: one query per table for most listings (SQLite
#: allows 32,766 parameters since 3.32, PostgreSQL 65,535) instead of one per 500 sessions.
_LISTING_CHUNK = 10_000


def _session_view(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in _SESSION_FIELDS}
    out["started_at"], out["ended_at"] = iso(row.get("started_at_ms")), iso(row.get("ended_at_ms"))
    started, ended = row.get("started_at_ms"), row.get("ended_at_ms")
    out["duration_ms"] = ended - started if started is not None and ended is not None else None
    out["outcome"] = row.get("outcome") or ("open" if ended is None else None)
    out["derived"] = row.get("origin") == "backfill"  # imported from Hermes' state.db
    return out


# ---------------------------------------------------------------------------------------------
# Per-session totals
# ---------------------------------------------------------------------------------------------

def _children_below(conn: sqlite3.Connection, roots: Iterable[str]) -> dict[str, list[str]]:
    """The children of each session at or below ``roots`` (each parent's oldest first), found hop
    by hop through the ``parent_session_id`` index — never a scan of every session."""
    children: dict[str, list[tuple[float | None, str]]] = defaultdict(list)
    # SQLite's statistics see parent_session_id as one value (NULL: most sessions are roots) and
    # would scan every session instead: name the index
    index = " INDEXED BY sessions_parent" if dialect_of(conn).name == "sqlite" else ""
    seen = set(roots)
    frontier = sorted(seen)
    while frontier:
        found: list[str] = []
        for chunk in chunks(frontier, _CHUNK):
            marks = ", ".join("?" * len(chunk))
            # no ORDER BY: SQLite would walk the start-time index (every session) to honour it
            for sid, parent, started in _execute(
                conn, f"SELECT session_id, parent_session_id, started_at_ms FROM sessions{index} "
                      f"WHERE parent_session_id IN ({marks})", chunk
            ):
                children[parent].append((started, sid))
                if sid not in seen:
                    seen.add(sid)
                    found.append(sid)
        frontier = found
    return {parent: [sid for _, sid in sorted(kids, key=lambda k: (k[0] is not None, k[0] or 0.0))]
            for parent, kids in children.items()}


def _parents_above(conn: sqlite3.Connection, session_id: str) -> dict[str, str]:
    """Child → parent from ``session_id`` up to its root (one indexed look-up a hop)."""
    parents: dict[str, str] = {}
    sid: str | None = session_id
    while sid is not None and sid not in parents:
        row = _execute(conn, "SELECT parent_session_id FROM sessions WHERE session_id = ?", (sid,)).fetchone()
        if row is None or row[0] is None:
            break
        parents[sid] = row[0]
        sid = row[0]
    return parents


def _descendants(children: dict[str, list[str]], session_id: str) -> list[str]:
    """The session and everything below it (subagents, continuations), each once."""
    out, todo, seen = [], [session_id], {session_id}
    while todo:
        sid = todo.pop(0)
        out.append(sid)
        for child in children.get(sid, ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return out


def _per_session(conn: sqlite3.Connection, session_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Turn outcomes, folded API groups, API error types and tool statuses of each session."""
    out: dict[str, dict[str, Any]] = {
        sid: {"turns": Counter(), "derived_turns": Counter(), "api": [], "errors": Counter(), "tools": Counter(),
              "derived_tools": 0}
        for sid in session_ids
    }
    for chunk in chunks(list(session_ids), _LISTING_CHUNK):
        marks = ", ".join("?" * len(chunk))
        for sid, outcome, origin, n in _execute(
            conn, f"SELECT session_id, outcome, origin, COUNT(*) FROM turns WHERE session_id IN ({marks}) "
                  "GROUP BY 1, 2, 3", chunk
        ):
            out[sid]["turns"][outcome or "open"] += n
            if origin == "backfill":
                out[sid]["derived_turns"][outcome or "open"] += n
        for sid, status, error_type, cost_status, *aggregates in _execute(
            conn, f"SELECT a.session_id, a.status, a.error_type, a.cost_status, {API_AGGREGATES} FROM api_calls a "
            f"WHERE a.session_id IN ({marks}) GROUP BY 1, 2, 3, 4", chunk
        ):
            out[sid]["api"].append(fold_api_group(status, cost_status, aggregates))
            if status == "error":
                out[sid]["errors"][error_type or "unknown"] += aggregates[0]
        for sid, status, origin, n in _execute(
            conn, f"SELECT session_id, status, origin, COUNT(*) FROM tool_calls WHERE session_id IN ({marks}) "
                  "GROUP BY 1, 2, 3", chunk
        ):
            out[sid]["tools"][status] += n
            if origin == "backfill":
                out[sid]["derived_tools"] += n
    return out


def _sum_api(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """``sum_api_fields``, without the summing for one group of calls (the same numbers:
    ``math.fsum`` of one float is that float)."""
    if len(rows) != 1:
        return sum_api_fields(rows)
    return {name: float(v) if name.endswith("_usd") else v for name, v in zip(API_FIELDS, rows[0], strict=True)}


def _totals(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Totals over one or more sessions' parts (every API call once)."""
    parts = list(parts)
    if len(parts) == 1:  # most rows of a listing: the session's own counters, nothing to merge
        one = parts[0]
        turns, derived_turns, errors, tools = one["turns"], one["derived_turns"], one["errors"], one["tools"]
        derived_tools, api = one["derived_tools"], one["api"]
    else:
        turns, derived_turns, errors, tools = Counter(), Counter(), Counter(), Counter()
        derived_tools = 0
        api = []
        for part in parts:
            turns.update(part["turns"])
            derived_turns.update(part["derived_turns"])
            errors.update(part["errors"])
            tools.update(part["tools"])
            derived_tools += part["derived_tools"]
            api.extend(part["api"])
    t = _sum_api(api)
    tool_calls = sum(tools.values())
    tool_failures, tools_known = tool_counts(tools)
    completion, _failure = turn_rates(turns, derived_turns)
    return {
        "turns": sum(turns.values()),
        "turns_by_outcome": dict(sorted(turns.items())),
        "completion_rate": completion,  # over reported turn ends: imported (derived) turns left out
        "derived": {"turns": sum(derived_turns.values()), "api_calls": t["derived"], "tool_calls": derived_tools},
        "api_calls": t["calls"],
        "api_errors": api_errors(t),
        "api_interrupted": t["interrupted"],
        "api_error_types": dict(sorted(errors.items())),
        "tool_calls": tool_calls,
        "tool_failures": tool_failures if tools_known or not tool_calls else None,  # None: no status known
        "tool_status_coverage": {"captured": tools_known, "of": tool_calls},
        "tokens": tokens_from_totals(t),
        "cost": cost_from_totals(t),
    }


#: The totals that are data-keyed maps (their keys are outcomes, error types): null as a whole.
_KEYED = ("turns_by_outcome", "api_error_types")


def _unknown(value: Any) -> Any:
    """The same shape with every figure null (a dict keeps its keys)."""
    if isinstance(value, dict):
        return {k: None if k in _KEYED else _unknown(v) for k, v in value.items()}
    return None


def pruned_before(conn: Any) -> float | None:
    """The store's prune boundary (``stores.rollups.pruned_before_ms``; None: never pruned, or a
    store without rollups)."""
    if not rollups.has_rollups(conn):
        return None
    return rollups.pruned_before_ms(conn)


def is_pruned(started_at_ms: float | None, boundary: float | None) -> bool:
    """Were some of this session's raw rows (turns, calls) deleted by ``hermetry prune``? Those
    that started before ``boundary`` were: a session started before it may have had some."""
    return boundary is not None and (started_at_ms is None or started_at_ms < boundary)


def _pruned_totals(totals: dict[str, Any], pruned: bool) -> dict[str, Any]:
    """A session whose rows were pruned: its row-derived totals are unknown (null), never the
    zeros the few rows left would add up to; ``pruned`` says why. (The rollups keep these figures
    for the hours, without session ids: ``insights`` over that time still has them.)"""
    if not pruned:
        return totals | {"pruned": False}
    return _unknown(totals) | {"pruned": True}


# ---------------------------------------------------------------------------------------------
# list_sessions
# ---------------------------------------------------------------------------------------------

#: A session "rolled in" to a conversation: it names a parent, and that parent is in the store.
_ROLLED_IN = ("parent_session_id IS NOT NULL AND EXISTS"
              " (SELECT 1 FROM sessions p WHERE p.session_id = sessions.parent_session_id)")


def _count(conn: sqlite3.Connection, since_ms: float, until_ms: float, *, roll_up: bool) -> int:
    """The listing's exact total: sessions that started in the window, less (rolled up) those
    that belong to a conversation listed by its root (a known parent).

    Read as two index counts, not a row look-up per session of the window (3.6 s over the 1M
    sessions of a 7-day window at 10M calls, review N9): every session started in the window
    (the start-time index covers it), minus the rolled-in ones among them — found through the
    ``parent_session_id`` index when the store has fewer sessions with a parent than the window
    has sessions (most stores: subagents and continuations are the few), else by looking up the
    window's own rows (a store made mostly of children: then that is the smaller walk)."""
    window = window_sql()
    params = (since_ms, until_ms)
    started = int(_execute(conn, f"SELECT COUNT(*) FROM sessions WHERE {window}", params).fetchone()[0])
    if not roll_up or started == 0:
        return started
    # SQLite's statistics see parent_session_id as one value (NULL) and would walk every session
    index = " INDEXED BY sessions_parent" if dialect_of(conn).name == "sqlite" else ""
    with_parent = int(_execute(
        conn, f"SELECT COUNT(*) FROM (SELECT 1 FROM sessions{index} WHERE parent_session_id IS NOT NULL LIMIT ?) c",
        (started,)).fetchone()[0])
    if with_parent == 0:
        return started
    if with_parent < started:  # the few children, each looked up: is it in the window, is its parent known?
        rolled_in = _execute(conn, f"SELECT COUNT(*) FROM sessions{index} WHERE {_ROLLED_IN} AND {window}",
                             params).fetchone()[0]
    else:  # at least as many children as the window has sessions: look up the window's rows
        rolled_in = _execute(conn, f"SELECT COUNT(*) FROM sessions WHERE {window} AND {_ROLLED_IN}",
                             params).fetchone()[0]
    return started - int(rolled_in)


def list_sessions(db: Db, since_ms: float, until_ms: float, *, limit: int = 20, roll_up: bool = True) -> dict[str, Any]:
    """Sessions that started in the window, newest first, with their totals.

    With ``roll_up`` (the default) each row is a conversation: a root session (one without a
    known parent) with its subagents and compression continuations; its totals include them,
    its ``outcome`` is that of the conversation's last continuation and its ``duration_ms``
    runs from the root's start to the last end. Without it every session is its own row.
    """
    result: dict[str, Any] = {
        "schema": SESSIONS_SCHEMA,
        "window": {"since": iso(since_ms), "until": iso(until_ms), "since_ms": since_ms, "until_ms": until_ms},
        "rolled_up": roll_up,
        "count": 0,
        "limit": limit,
        "pruned_before": None,
        "pruned_before_ms": None,
        "sessions": [],
    }
    with open_db(db) as conn:
        if conn is None:
            return result
        boundary = pruned_before(conn)
        result["pruned_before"], result["pruned_before_ms"] = (iso(boundary) if boundary is not None else None,
                                                               boundary)
        where = window_sql()
        if roll_up:
            # a parent looked up by its key, only for the rows that name one (NOT IN would index every session)
            where += (" AND (parent_session_id IS NULL OR NOT EXISTS"
                      " (SELECT 1 FROM sessions p WHERE p.session_id = sessions.parent_session_id))")
        params = (since_ms, until_ms)
        result["count"] = _count(conn, since_ms, until_ms, roll_up=roll_up)
        listed = _rows(conn, f"SELECT * FROM sessions WHERE {where} ORDER BY started_at_ms DESC NULLS LAST LIMIT ?",
                       (*params, limit))
        children = _children_below(conn, [r["session_id"] for r in listed]) if roll_up else {}
        members = {r["session_id"]: (_descendants(children, r["session_id"]) if roll_up else [r["session_id"]])
                   for r in listed}
        everyone = sorted({sid for sids in members.values() for sid in sids})
        parts = _per_session(conn, everyone)
        info: dict[str, dict[str, Any]] = {r["session_id"]: r for r in listed}
        rest = [sid for sid in everyone if sid not in info]  # rolled-in sessions the listing did not fetch
        for chunk in chunks(rest, _LISTING_CHUNK):
            marks = ", ".join("?" * len(chunk))
            for row in _rows(conn, f"SELECT * FROM sessions WHERE session_id IN ({marks})", chunk):
                info[row["session_id"]] = row
    for row in listed:
        sids = members[row["session_id"]]
        view = _session_view(row)
        pruned = any(is_pruned(info[sid].get("started_at_ms"), boundary) for sid in sids if sid in info)
        view.update(_pruned_totals(_totals(parts[sid] for sid in sids), pruned))
        others = [info[sid] for sid in sids[1:] if sid in info]
        view["subagent_sessions"] = sum(1 for o in others if o.get("lineage") == "subagent")
        view["continuation_sessions"] = sum(1 for o in others if o.get("lineage") != "subagent")
        if roll_up and others:
            chain = [row] + sorted((o for o in others if o.get("lineage") != "subagent"),
                                   key=lambda o: o.get("started_at_ms") or 0)
            view["outcome"] = _session_view(chain[-1])["outcome"]
            view["end_reason"] = chain[-1].get("end_reason")
            ends = [info[sid].get("ended_at_ms") for sid in sids if sid in info]
            view["ended_at_ms"] = None if None in ends else max(e for e in ends if e is not None)
            view["ended_at"] = iso(view["ended_at_ms"])
            started = row.get("started_at_ms")
            view["duration_ms"] = (view["ended_at_ms"] - started
                                   if view["ended_at_ms"] is not None and started is not None else None)
        view["sessions_in_conversation"] = len(sids)
        result["sessions"].append(view)
    return result


# ---------------------------------------------------------------------------------------------
# session_detail and the waterfall
# ---------------------------------------------------------------------------------------------

def _union_ms(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, None
    for lo, hi in sorted(intervals):
        if end is None or lo > end:
            total += hi - lo
            end = hi
        elif hi > end:
            total += hi - end
            end = hi
    return total


def waterfall(turn: dict[str, Any], api_calls: Sequence[dict[str, Any]], tool_calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where a turn's wall time went (see the module docstring); None fields were not captured."""
    start, end = turn.get("started_at_ms"), turn.get("ended_at_ms")
    timed_api = [(c["started_at_ms"], c["started_at_ms"] + c["latency_ms"]) for c in api_calls
                 if c.get("started_at_ms") is not None and c.get("latency_ms") is not None]
    timed_tools = [(c["started_at_ms"], c["started_at_ms"] + c["latency_ms"]) for c in tool_calls
                   if c.get("started_at_ms") is not None and c.get("latency_ms") is not None]
    untimed = len(api_calls) + len(tool_calls) - len(timed_api) - len(timed_tools)
    out: dict[str, Any] = {"queue_wait_ms": turn.get("queue_wait_ms"), "wall_ms": None, "model_ms": None,
                           "tools_ms": None, "overlap_ms": None, "other_ms": None, "untimed_calls": untimed}
    if turn.get("origin") == "backfill":
        # imported: the wall time is derived from message timestamps, and state.db times no call,
        # so where the time went is unknown — never "0 ms in model calls"
        out["wall_ms"] = turn.get("wall_ms")
        out["derived"] = True
        return out
    if (api_calls and not timed_api) or (tool_calls and not timed_tools):
        # some calls and none of them timed: their time is unknown, not zero
        out["wall_ms"] = turn.get("wall_ms")
        out["model_ms"] = sum(hi - lo for lo, hi in timed_api) if timed_api or not api_calls else None
        out["tools_ms"] = sum(hi - lo for lo, hi in timed_tools) if timed_tools or not tool_calls else None
        return out
    if start is None or end is None:
        out["model_ms"] = sum(hi - lo for lo, hi in timed_api)
        out["tools_ms"] = sum(hi - lo for lo, hi in timed_tools)
        return out

    def clip(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(max(lo, start), min(hi, end)) for lo, hi in intervals if min(hi, end) > max(lo, start)]

    api, tools = clip(timed_api), clip(timed_tools)
    model_ms = sum(hi - lo for lo, hi in api)
    tools_ms = sum(hi - lo for lo, hi in tools)
    busy = _union_ms(api + tools)
    wall = end - start
    out.update(wall_ms=wall, model_ms=model_ms, tools_ms=tools_ms,
               overlap_ms=max(0.0, model_ms + tools_ms - busy), other_ms=max(0.0, wall - busy))
    return out


_API_DETAIL = (
    "api_call_id", "api_request_id", "attempt", "model", "provider", "started_at_ms", "latency_ms", "ttft_ms",
    "streamed", "status", "finish_reason", "http_status", "retry_count", "error_type", "error_message",
    *TOKEN_KINDS, "cost_usd", "cost_status", "cost_source", "origin",
)
_TOOL_DETAIL = ("tool_call_id", "api_request_id", "tool_name", "toolset", "started_at_ms", "latency_ms", "status",
                "error_type", "error_message", "origin")


def _resolve(conn: sqlite3.Connection, session_id: str) -> dict[str, Any]:
    rows = _rows(conn, "SELECT * FROM sessions WHERE session_id = ?", (session_id,))
    if not rows:  # a unique prefix is enough, as with git
        rows = _rows(conn, "SELECT * FROM sessions WHERE session_id LIKE ? ESCAPE '\\' LIMIT 2",
                     (session_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",))
        if len(rows) > 1:
            raise SessionNotFound(f"session id prefix {session_id!r} is ambiguous")
    if not rows:
        raise SessionNotFound(f"no session {session_id!r}")
    return rows[0]


def session_detail(db: Db, session_id: str) -> dict[str, Any]:
    """One session: its turns with their waterfalls, its lineage and its totals.

    ``session_id`` may be a unique prefix. Raises :class:`SessionNotFound`.
    """
    with open_db(db) as conn:
        if conn is None:
            raise SessionNotFound(f"no session {session_id!r} (no telemetry recorded yet)")
        row = _resolve(conn, session_id)
        boundary = pruned_before(conn)
        sid = row["session_id"]
        ancestors = lineage_ancestors(_parents_above(conn, sid), sid)
        root = ancestors[-1] if ancestors else sid
        children = _children_below(conn, [root])
        conversation = _descendants(children, root)
        related = sorted(set(ancestors) | set(children.get(sid, ())))
        info: dict[str, dict[str, Any]] = {}
        for chunk in chunks(related, _CHUNK):
            marks = ", ".join("?" for _ in chunk)
            for r in _rows(conn, f"SELECT * FROM sessions WHERE session_id IN ({marks})", chunk):
                info[r["session_id"]] = r
        turns = _rows(conn, "SELECT * FROM turns WHERE session_id = ? ORDER BY started_at_ms NULLS FIRST, turn_id", (sid,))
        api = _rows(conn, f"SELECT {', '.join(_API_DETAIL)}, turn_id FROM api_calls WHERE session_id = ? "
                          "ORDER BY started_at_ms NULLS FIRST, attempt", (sid,))
        tools = _rows(conn, f"SELECT {', '.join(_TOOL_DETAIL)}, turn_id FROM tool_calls WHERE session_id = ? "
                            "ORDER BY started_at_ms NULLS FIRST", (sid,))
        parts = _per_session(conn, conversation)
        starts = {s: r.get("started_at_ms") for s, r in info.items()}
        starts[sid] = row.get("started_at_ms")
        if any(s not in starts for s in conversation):
            for chunk in chunks([s for s in conversation if s not in starts], _CHUNK):
                marks = ", ".join("?" for _ in chunk)
                starts.update(_execute(conn, f"SELECT session_id, started_at_ms FROM sessions "
                                             f"WHERE session_id IN ({marks})", chunk).fetchall())

    api_by_turn: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    tools_by_turn: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for c in api:
        api_by_turn[c.pop("turn_id")].append(c)
    for c in tools:
        tools_by_turn[c.pop("turn_id")].append(c)
    known_turns = {t["turn_id"] for t in turns}
    subagents_by_turn: dict[str, list[str]] = defaultdict(list)
    for child in children.get(sid, ()):
        turn_id = info.get(child, {}).get("parent_turn_id")
        if turn_id:
            subagents_by_turn[turn_id].append(child)

    turn_views = []
    for index, t in enumerate(turns, start=1):
        calls, tool_calls = api_by_turn.get(t["turn_id"], []), tools_by_turn.get(t["turn_id"], [])
        start = t.get("started_at_ms")
        for c in (*calls, *tool_calls):
            c["offset_ms"] = c["started_at_ms"] - start if start is not None and c.get("started_at_ms") is not None else None
        turn_views.append({
            "index": index,
            "turn_id": t["turn_id"],
            "started_at": iso(start),
            "started_at_ms": start,
            "ended_at_ms": t.get("ended_at_ms"),
            "outcome": t.get("outcome") or "open",
            "outcome_reason": t.get("outcome_reason"),
            "wall_ms": t.get("wall_ms"),
            "queue_wait_ms": t.get("queue_wait_ms"),
            "derived": t.get("origin") == "backfill",  # outcome and times derived from state.db's messages
            "waterfall": waterfall(t, calls, tool_calls),
            "api_calls": calls,
            "tool_calls": tool_calls,
            "subagent_sessions": subagents_by_turn.get(t["turn_id"], []),
        })

    time_totals: dict[str, Any] = {}
    for key in ("queue_wait_ms", "wall_ms", "model_ms", "tools_ms", "overlap_ms", "other_ms"):
        values = [tv["waterfall"][key] for tv in turn_views if tv["waterfall"][key] is not None]
        time_totals[key] = sum(values) if values else None
    time_totals["turns_timed"] = sum(1 for tv in turn_views if tv["waterfall"]["wall_ms"] is not None)

    def brief(other: str) -> dict[str, Any]:
        r = info.get(other)
        if r is None:  # known only as someone's parent: not recorded by hermetry
            return {"session_id": other, "recorded": False}
        v = _session_view(r)
        return {k: v[k] for k in ("session_id", "lineage", "parent_turn_id", "source", "session_type", "model",
                                  "started_at", "outcome", "end_reason")} | {"recorded": True}

    pruned = is_pruned(row.get("started_at_ms"), boundary)
    totals = _pruned_totals(_totals([parts[sid]]), pruned)
    totals["time"] = _unknown(time_totals) if pruned else time_totals
    conversation_pruned = any(is_pruned(starts.get(s), boundary) for s in conversation)
    return {
        "schema": SESSION_SCHEMA,
        "session": _session_view(row) | {"pruned": pruned},
        # raw rows before this were deleted (hermetry prune): the turns listed are the ones kept
        "pruned_before": iso(boundary) if boundary is not None else None,
        "pruned_before_ms": boundary,
        "lineage": {
            "root_session_id": root,
            "parents": [brief(a) for a in ancestors],
            "children": [brief(c) for c in children.get(sid, ())],
            "conversation_sessions": len(conversation),
        },
        "turns": turn_views,
        "unattributed": {  # calls recorded without a turn (e.g. captured outside a turn)
            "api_calls": [c for k, v in api_by_turn.items() if k not in known_turns for c in v],
            "tool_calls": [c for k, v in tools_by_turn.items() if k not in known_turns for c in v],
        },
        "totals": totals,
        "conversation_totals": _pruned_totals(_totals(parts[s] for s in conversation), conversation_pruned),
    }
