"""Rollups: per-hour aggregates of the raw rows, so a report's cost follows its window, not the history.

The one definition of the rollup SQL, used by both stores (portable SQL with ``?`` parameters, which
the PostgreSQL connection converts; :func:`postgres_migration` for its DDL and triggers).

What is kept (schema version 7, :data:`SQLITE_MIGRATION`), per UTC hour (``hour`` = epoch ms //
3,600,000 of a row's ``started_at_ms``) × the report's dimensions:

* ``rollup_turns`` — session source/session_type/profile/model/provider/host × turn outcome ×
  origin: ``turns``, ``wall_n`` (= ``COUNT(wall_ms)``), ``queue_n``, the exact counts of the
  fixed-edge wall-time histogram (``h0`` … ``h10``, edges :data:`WALL_MS_EDGES`) and sketches
  (:class:`hermetry.model.sketch.Sketch`, ≤ 1 % relative error) of ``wall_ms`` (ended turns) and
  ``queue_wait_ms``;
* ``rollup_api`` — session source/session_type/profile/host × the call's model/provider × status ×
  error_type × cost_status × task: the sums of :data:`API_AGGREGATES` (calls, captured counts, the
  five token kinds, priced calls and cost, imported calls) and sketches of ``latency_ms`` (status
  ok/error) and ``ttft_ms`` (status ok);
* ``rollup_tools`` — session dimensions × tool × toolset × status × origin: ``calls`` and a sketch
  of ``latency_ms``.
* ``rollup_sessions`` (schema 12) — sessions by the hour they *started* × session dimensions ×
  outcome × origin: ``sessions``, ``timed`` (ended after they started), ``duration_ms`` (their summed
  duration) and ``duration_max_ms`` (the longest; combined by MAX, ``Kind.maxima``): a report's
  session outcomes and the activity figures without a pass over every session of the window.
  Marked by triggers on ``sessions`` (insert, delete, a change of its start, end, outcome, origin
  or dimensions: the old and the new start hour); rebuilt in pruned time too (sessions stay).

Counts and sums are exact: a rollup row holds what ``GROUP BY`` over the raw rows of that hour
gives, and a test compares every field with the raw path.

**Maintenance: dirty marking + exact rebuild.** Every write marks the hours it touched in
``rollup_dirty``, in its own transaction: the write path (``stores.sqlite.write_events``, which
the recorder, the importer and the PostgreSQL store all use) marks the hours of the rows of each
batch (``mark_hours``, ``mark_turns``, ``mark_open_turns``: a statement or two per batch, no
per-row cost), reconcile and reprice mark the rows they change, and a trigger on ``sessions``
marks every hour of a session whose dimensions change (they are copied into its rollup rows).
Anything else that updates raw rows must call ``mark_hours`` too. :func:`rebuild` turns dirty
hours into rollups: ``DELETE`` + aggregate ``SELECT … GROUP BY`` (buckets grouped in SQL,
:func:`hermetry.model.sketch.bucket_sql`) + ``INSERT``. Writers do not wait for the aggregation: on SQLite it runs in a read snapshot and a
short write transaction swaps in only the hours whose mark (``rollup_dirty.seq``, bumped by every
mark) did not move meanwhile; on PostgreSQL one hour at a time under a ``SHARE ROW EXCLUSIVE`` lock
of the raw tables (its writers are the hosts' spool forwarders: no agent waits). It runs
at the end of ``hermetry import``, in ``hermetry rollup``, in ``hermetry prune``, and in readers
that can write (``refresh``) — never on Hermes' thread.

**Correctness never depends on when rebuilds run**: :func:`plan` splits a window into hours read
from rollups (whole hours that are not dirty) and ranges read from raw rows (the partial hours at
the edges of the window and every dirty hour), and :func:`read` adds the two. A clean partial
edge hour whose part outside the window holds fewer rows is read as its rollup rows MINUS those
raw rows (``Plan.edge_hours``: counts, histograms and sketch buckets subtract exactly; sketch
extremes are proven or looked up, ``Sketch.settle`` / :func:`raw_values`); the reads of one
report share one snapshot (:func:`snapshot`).

**Pruned history** (``hermetry prune``): raw rows before ``pruned_before_ms`` (in
``rollup_meta``) are gone; hours before it are read from rollups only (the window is snapped to
whole hours there, see ``Plan.snapped``), and are never rebuilt.

Read API (what reports, series and the dashboard call)::

    p = plan(conn, since_ms, until_ms)                 # which hours come from where
    groups = read(conn, TURNS, p, keys=("day", "outcome"), filters={"source": "cli"})
    for key, g in groups.items():                      # key: a tuple in the order of ``keys``
        g.counts["turns"], g.sketches["wall_ms"].quantile(0.95), g.hist  # hist: WALL_MS_EDGES counts

``keys`` are any of a kind's ``KEYS`` names plus ``"day"`` (UTC day number); ``filters`` are
``{key: value}`` equality filters on the same names; ``measures=False`` skips the sketches.
Counts are in ``Kind.counts`` names, sketches in ``Kind.measures`` names.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from operator import add
from typing import Any

from hermetry.model.kinds import API_ERROR, API_OK, TOKEN_KINDS
from hermetry.model.sketch import Sketch, bucket_sql, sign_sql
from hermetry.model.units import HOUR_MS
from hermetry.stores.dialect import dialect_of

#: Bucket edges (ms) of the turn wall-time histogram; the last bucket is open-ended.
WALL_MS_EDGES = (0, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000)

#: How many dirty hours one rebuild transaction takes (short: writers wait for it).
REBUILD_CHUNK_HOURS = 24

_CALLS = "COALESCE(a.call_count, 1)"
#: The sums of one group of API calls (same status and cost status), by name: the report's raw
#: path (``analytics.report``) and the rollups both compute exactly these. A row stands for
#: ``call_count`` model calls (an imported per-session total; NULL = one attempt), so calls are
#: summed, not rows counted; ``derived_calls`` = the calls that come from such imported rows.
API_SUMS: tuple[tuple[str, str], ...] = (
    ("calls", f"SUM({_CALLS})"),
    ("latency_n", "COUNT(a.latency_ms)"),
    ("ttft_n", "COUNT(a.ttft_ms)"),
    ("usage_calls", f"COALESCE(SUM(CASE WHEN COALESCE(a.input_tokens, a.output_tokens) IS NOT NULL THEN {_CALLS} END), 0)"),
    *((kind, f"COALESCE(SUM(a.{kind}), 0)") for kind in TOKEN_KINDS),
    ("cost_calls", f"COALESCE(SUM(CASE WHEN a.cost_usd IS NOT NULL THEN {_CALLS} END), 0)"),
    ("cost_usd", "COALESCE(SUM(a.cost_usd), 0.0)"),
    ("derived_calls", f"COALESCE(SUM(CASE WHEN a.origin = 'backfill' THEN {_CALLS} END), 0)"),
)
API_AGGREGATES = ", ".join(sql for _, sql in API_SUMS)

_HOUR = "CAST(FLOOR({a}.started_at_ms / " + f"{HOUR_MS}.0" + ") AS BIGINT)"


def hour_sql(alias: str) -> str:
    """SQL: the UTC hour number of a row's ``started_at_ms`` (the same in SQLite and PostgreSQL)."""
    return _HOUR.format(a=alias)


def _hist_sql(column: str) -> str:
    cases = " ".join(f"WHEN {column} >= {edge} THEN {i}" for i, edge in reversed(list(enumerate(WALL_MS_EDGES))))
    return f"(CASE {cases} END)"


@dataclass(frozen=True)
class Kind:
    """One raw table and its rollup table: grouping keys, summed counts, sketched measures."""

    name: str
    table: str
    alias: str
    rollup: str
    #: (name, SQL over the raw row joined with its session ``s``), ``hour`` first
    keys: tuple[tuple[str, str], ...]
    #: (name, aggregate SQL): summed again when rollup rows are read
    counts: tuple[tuple[str, str], ...]
    #: (name, SQL of the value; NULL = not counted)
    measures: tuple[tuple[str, str], ...]
    #: the measure whose fixed-edge histogram is kept exactly (``h0`` …), or None
    hist: str | None = None
    #: counts combined by ``MAX`` (NULL: no value), not summed
    maxima: tuple[str, ...] = ()
    #: counts stored as REAL (sums of floats)
    reals: tuple[str, ...] = ()

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.keys)

    @property
    def count_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.counts)

    @property
    def hist_columns(self) -> tuple[str, ...]:
        return tuple(f"h{i}" for i in range(len(WALL_MS_EDGES))) if self.hist else ()

    def sketch_column(self, measure: str) -> str:
        return f"{measure}_sketch"

    @property
    def rollup_day(self) -> str:
        return f"{self.rollup}_day"

    @property
    def columns(self) -> tuple[str, ...]:
        """The rollup tables' columns, in order."""
        return (*self.key_names, *self.count_names, *self.hist_columns,
                *(self.sketch_column(m) for m, _ in self.measures))


_SESSION_KEYS = (("source", "s.source"), ("session_type", "s.session_type"), ("profile", "s.profile"))

TURNS = Kind(
    "turns", "turns", "t", "rollup_turns",
    keys=(("hour", hour_sql("t")), *_SESSION_KEYS, ("model", "s.model"), ("provider", "s.provider"),
          ("host", "s.host"), ("outcome", "t.outcome"), ("origin", "t.origin")),
    counts=(("turns", "COUNT(*)"), ("wall_n", "COUNT(t.wall_ms)"), ("queue_n", "COUNT(t.queue_wait_ms)")),
    measures=(("wall_ms", "CASE WHEN t.outcome IS NOT NULL THEN t.wall_ms END"),
              ("queue_wait_ms", "t.queue_wait_ms")),
    hist="wall_ms",
)
API = Kind(
    "api", "api_calls", "a", "rollup_api",
    keys=(("hour", hour_sql("a")), *_SESSION_KEYS, ("host", "s.host"), ("model", "a.model"),
          ("provider", "a.provider"), ("status", "a.status"), ("error_type", "a.error_type"),
          ("cost_status", "a.cost_status"), ("task", "a.task")),
    counts=API_SUMS,
    # latency: attempts that ended on their own; an interrupted one's duration is censored
    measures=(("latency_ms", f"CASE WHEN a.status IN ('{API_OK}', '{API_ERROR}') THEN a.latency_ms END"),
              ("ttft_ms", f"CASE WHEN a.status = '{API_OK}' THEN a.ttft_ms END")),
)
TOOLS = Kind(
    "tools", "tool_calls", "c", "rollup_tools",
    keys=(("hour", hour_sql("c")), *_SESSION_KEYS, ("model", "s.model"), ("provider", "s.provider"),
          ("host", "s.host"), ("tool", "c.tool_name"), ("toolset", "c.toolset"), ("status", "c.status"),
          ("origin", "c.origin")),
    counts=(("calls", "COUNT(*)"),),
    measures=(("latency_ms", "c.latency_ms"),),
)
#: Sessions by the hour they *started* in (schema 12, :data:`SQLITE_MIGRATION_SESSIONS`): what a
#: report's session outcomes and ``hermes insights``' activity figures need from the sessions table —
#: how many started, by outcome and origin, how many ended after they started ("timed"), the sum
#: and the longest of their durations. Per hour of start, so weekday / hour / active days / streak
#: are exact in any zone whose offset is a whole number of hours (``analytics.activity``).
SESSION_DURATION_SQL = "CASE WHEN s.ended_at_ms > s.started_at_ms THEN s.ended_at_ms - s.started_at_ms END"
SESSIONS = Kind(
    "sessions", "sessions", "s", "rollup_sessions",
    keys=(("hour", hour_sql("s")), *_SESSION_KEYS, ("model", "s.model"), ("provider", "s.provider"),
          ("host", "s.host"), ("outcome", "s.outcome"), ("origin", "s.origin")),
    counts=(("sessions", "COUNT(*)"), ("timed", f"COUNT({SESSION_DURATION_SQL})"),
            ("duration_ms", f"COALESCE(SUM({SESSION_DURATION_SQL}), 0.0)"),
            ("duration_max_ms", f"MAX({SESSION_DURATION_SQL})")),
    measures=(),
    maxima=("duration_max_ms",),
    reals=("duration_ms", "duration_max_ms"),
)
#: The kinds of schema 7–11 (their migrations are frozen: they name these three only).
_V7_KINDS = (TURNS, API, TOOLS)
KINDS = (TURNS, API, TOOLS, SESSIONS)

#: The session columns whose change re-marks every hour of that session's rows.
SESSION_DIMENSIONS = ("source", "session_type", "profile", "model", "provider", "host")


# ---------------------------------------------------------------------------------------------
# Schema (version 7)
# ---------------------------------------------------------------------------------------------

def _table_ddl(kind: Kind, blob: str, table: str | None = None) -> str:
    cols = ["hour INTEGER NOT NULL"] + [f"{k} TEXT" for k in kind.key_names[1:]]
    cols += [f"{c} {'REAL' if c == 'cost_usd' or c in kind.reals else 'INTEGER'}"
             f"{'' if c in kind.maxima else ' NOT NULL'}" for c in kind.count_names]
    cols += [f"{c} INTEGER NOT NULL DEFAULT 0" for c in kind.hist_columns]
    cols += [f"{kind.sketch_column(m)} {blob}" for m, _ in kind.measures]
    table = table or kind.rollup
    return (f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(cols) + "\n);\n"
            f"CREATE INDEX IF NOT EXISTS {table}_hour ON {table}(hour);\n")


_MARK_ALL = (
    "INSERT INTO rollup_dirty (hour) "
    + " UNION ".join(f"SELECT DISTINCT {hour_sql(k.alias)} FROM {k.table} {k.alias} "
                     f"WHERE {k.alias}.started_at_ms IS NOT NULL" for k in _V7_KINDS)
    + ";\n"
)


def _sqlite_triggers(bump: bool = False) -> str:
    # Rows are marked by whoever writes them (``mark_hours``, ``mark_turns``, ``mark_open_turns``:
    # one statement per batch — per-row triggers on the raw tables measured +30-60 % CPU per batch).
    # A change of a session's dimensions, which every row of that session carries in the
    # rollups, is marked here: ``UPDATE OF`` those columns only, so most session upserts skip it.
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in SESSION_DIMENSIONS)
    hours = " UNION ".join(f"SELECT {hour_sql(k.alias)} AS hour FROM {k.table} {k.alias} "
                           f"WHERE {k.alias}.session_id = NEW.session_id AND {k.alias}.started_at_ms IS NOT NULL"
                           for k in _V7_KINDS)
    insert = (f"INSERT INTO rollup_dirty (hour) SELECT hour FROM ({hours}) WHERE true {_BUMP}" if bump else
              f"INSERT INTO rollup_dirty (hour) SELECT hour FROM ({hours}) "
              f"WHERE hour NOT IN (SELECT hour FROM rollup_dirty)")
    return (
        f"CREATE TRIGGER IF NOT EXISTS sessions_rollup_dims AFTER UPDATE OF {', '.join(SESSION_DIMENSIONS)} "
        f"ON sessions WHEN {changed} BEGIN\n    {insert};\nEND;\n"
    )


#: What a mark does to an hour already dirty. SQLite (schema ≥ 10) bumps its ``seq``, so a rebuild
#: that aggregated the hour in a read snapshot can tell, before it swaps its rows in, whether a writer
#: marked the hour meanwhile (then the hour stays dirty). PostgreSQL's rebuild holds a lock instead.
_BUMP = "ON CONFLICT (hour) DO UPDATE SET seq = seq + 1"
_KEEP = "ON CONFLICT (hour) DO NOTHING"


def _on_conflict(conn: Any) -> str:
    return _KEEP if _is_postgres(conn) else _BUMP


def _sql_mark(conn: Any) -> str:
    return f"INSERT INTO rollup_dirty (hour) VALUES (?) {_on_conflict(conn)}"


def mark_open_turns(conn: Any, where: str, params: Sequence[Any]) -> None:
    """Mark the hours of the open turns ``where`` selects (over ``turns``), before an UPDATE
    closes them (the write path's and the reconciler's)."""
    conn.execute(f"INSERT INTO rollup_dirty (hour) SELECT DISTINCT {hour_sql('turns')} FROM turns "
                 f"WHERE ({where}) AND turns.started_at_ms IS NOT NULL {_on_conflict(conn)}", params)


def mark_rows(conn: Any, table: str, where: str, params: Sequence[Any]) -> None:
    """Mark the hours of the rows of ``table`` (a raw table: turns, api_calls, tool_calls) that
    ``where`` selects, before a DELETE or UPDATE changes them (the importer's re-import, prune):
    a deleted row's hour must be rebuilt too, or its clean rollup keeps counting it."""
    conn.execute(f"INSERT INTO rollup_dirty (hour) SELECT DISTINCT {hour_sql(table)} FROM {table} "
                 f"WHERE ({where}) AND {table}.started_at_ms IS NOT NULL {_on_conflict(conn)}", params)


def mark_turns(conn: Any, turn_ids: Sequence[str]) -> None:
    """Mark the hours of turns whose end the write path just wrote (looked up: an end event
    does not say when its turn started)."""
    for i in range(0, len(turn_ids), 500):
        chunk = turn_ids[i:i + 500]
        conn.execute(f"INSERT INTO rollup_dirty (hour) SELECT DISTINCT {hour_sql('t')} FROM turns t "
                     f"WHERE t.turn_id IN ({', '.join('?' for _ in chunk)}) AND t.started_at_ms IS NOT NULL "
                     f"{_on_conflict(conn)}", list(chunk))


def mark_hours(conn: Any, started_at_ms: Iterable[float | None]) -> None:
    """Mark the hours of rows the write path inserted (inside its transaction; sorted, so two
    writers never wait for each other's marks in opposite orders)."""
    hours = sorted({int(t // HOUR_MS) for t in started_at_ms if t is not None and t == t})
    if hours:
        conn.executemany(_sql_mark(conn), [(h,) for h in hours])


_TABLES = (
    "CREATE TABLE IF NOT EXISTS rollup_dirty (\n    hour INTEGER PRIMARY KEY\n);\n"
    "CREATE TABLE IF NOT EXISTS rollup_meta (\n    key TEXT PRIMARY KEY,\n    value REAL\n);\n"
)

#: Version 7: the rollup tables, their dirty marks (every hour that has rows starts dirty) and the
#: triggers that keep marking. (Frozen: a later change to the rollups is a new migration.)
SQLITE_MIGRATION = _TABLES + "".join(_table_ddl(k, "BLOB") for k in _V7_KINDS) + _MARK_ALL + _sqlite_triggers()


#: Version 9 (after exporter_runs, 8): the day level — the same columns, ``hour`` = the day's first hour, each row the
#: merge of that day's hourly rows (reads of long windows merge 24× fewer sketches). Every hour
#: already rolled up is marked dirty, so its day is built by the next rebuild (read raw until then).
SQLITE_MIGRATION_DAYS = "".join(_table_ddl(k, "BLOB", k.rollup_day) for k in _V7_KINDS) + (
    "INSERT INTO rollup_dirty (hour) SELECT hour FROM ("
    + " UNION ".join(f"SELECT DISTINCT hour FROM {k.rollup}" for k in _V7_KINDS)
    + ") WHERE hour NOT IN (SELECT hour FROM rollup_dirty);\n")


#: Version 10: a mark's sequence number (``rollup_dirty.seq``), bumped by every mark of an hour
#: already dirty, so a rebuild aggregates outside the write lock (see :func:`rebuild`); the session
#: trigger bumps it too. PostgreSQL gets the column only (its rebuild locks; marks stay DO NOTHING).
SQLITE_MIGRATION_SEQ = ("ALTER TABLE rollup_dirty ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;\n"
                        "DROP TRIGGER IF EXISTS sessions_rollup_dims;\n" + _sqlite_triggers(bump=True))

#: The session columns whose change moves a session in ``rollup_sessions`` (re-marks its start hour,
#: the old one and the new one).
SESSION_ROLLUP_COLUMNS = ("started_at_ms", "ended_at_ms", "outcome", "origin", *SESSION_DIMENSIONS)


#: ``rollup_meta`` key: the sessions rollup is NOT built from this hour on (value NULL: from the first
#: session). Set by the upgrade to schema 12 of a store that has sessions; absent once
#: :func:`build_sessions` has built every hour — and in every store created at schema 12, or upgraded
#: before this key existed (their upgrade built it in the migration). Readers take the sessions table
#: while it is present (:func:`sessions_built`).
SESSIONS_PENDING = "sessions_rollup_pending_from_hour"


def _sessions_pending_sql() -> list[str]:
    """Schema 12's upgrade of a store that has sessions: the sessions rollup recorded as pending, built
    later in short transactions (:func:`build_sessions`, from ``refresh`` and ``hermetry rollup``) —
    not in the migration's one write transaction (a GROUP BY over every session: 28–32 s on 1M
    sessions with the write lock held, every other writer's batches refused meanwhile). No hour is
    marked dirty (an upgrade is not a rebuild)."""
    return [f"INSERT INTO rollup_meta (key, value) SELECT '{SESSIONS_PENDING}', NULL "
            "WHERE EXISTS (SELECT 1 FROM sessions WHERE started_at_ms IS NOT NULL)"]


def _sqlite_session_triggers() -> str:
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in SESSION_ROLLUP_COLUMNS)
    old, new = _HOUR.format(a="OLD"), _HOUR.format(a="NEW")
    return (
        "CREATE TRIGGER IF NOT EXISTS sessions_rollup_insert AFTER INSERT ON sessions "
        f"WHEN NEW.started_at_ms IS NOT NULL BEGIN\n    INSERT INTO rollup_dirty (hour) VALUES ({new}) {_BUMP};\nEND;\n"
        f"CREATE TRIGGER IF NOT EXISTS sessions_rollup_update AFTER UPDATE OF {', '.join(SESSION_ROLLUP_COLUMNS)} "
        f"ON sessions WHEN {changed} BEGIN\n    INSERT INTO rollup_dirty (hour) SELECT h FROM (SELECT {old} AS h "
        f"UNION SELECT {new}) WHERE h IS NOT NULL {_BUMP};\nEND;\n"
        "CREATE TRIGGER IF NOT EXISTS sessions_rollup_delete AFTER DELETE ON sessions "
        f"WHEN OLD.started_at_ms IS NOT NULL BEGIN\n    INSERT INTO rollup_dirty (hour) VALUES ({old}) {_BUMP};\nEND;\n"
    )


#: Version 12: the sessions rollup's tables (:data:`SESSIONS`), empty, recorded as pending
#: (:data:`SESSIONS_PENDING`, built afterwards by :func:`build_sessions`), and the triggers that mark a
#: session's start hour when it is inserted, deleted, or one of :data:`SESSION_ROLLUP_COLUMNS` changes
#: (every write path: recorder, import, reconcile, sync).
SQLITE_MIGRATION_SESSIONS = ("".join(_table_ddl(SESSIONS, "BLOB", t) for t in (SESSIONS.rollup, SESSIONS.rollup_day))
                             + "".join(f"{sql};\n" for sql in _sessions_pending_sql()) + _sqlite_session_triggers())


def _postgres_sessions_migration() -> list[str]:
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in SESSION_ROLLUP_COLUMNS)
    old, new = _HOUR.format(a="OLD"), _HOUR.format(a="NEW")
    mark = "INSERT INTO rollup_dirty (hour) VALUES ({}) ON CONFLICT DO NOTHING;"
    statements = _pg_ddl("".join(_table_ddl(SESSIONS, "BYTEA", t) for t in (SESSIONS.rollup, SESSIONS.rollup_day)))
    statements += _sessions_pending_sql()
    statements.append(f"""
CREATE OR REPLACE FUNCTION hermetry_rollup_mark_session_row() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.started_at_ms IS NOT NULL THEN {mark.format(new)} END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.started_at_ms IS NOT NULL THEN {mark.format(old)} END IF;
    ELSIF {changed} THEN
        IF OLD.started_at_ms IS NOT NULL THEN {mark.format(old)} END IF;
        IF NEW.started_at_ms IS NOT NULL THEN {mark.format(new)} END IF;
    END IF;
    RETURN NULL;
END
$fn$""")
    statements.append("DROP TRIGGER IF EXISTS sessions_rollup_row ON sessions")
    statements.append(f"CREATE TRIGGER sessions_rollup_row AFTER INSERT OR DELETE OR UPDATE OF "
                      f"{', '.join(SESSION_ROLLUP_COLUMNS)} ON sessions "
                      "FOR EACH ROW EXECUTE FUNCTION hermetry_rollup_mark_session_row()")
    return statements


def _pg_ddl(ddl: str) -> list[str]:
    return [s.strip() for s in ddl.replace("INTEGER", "BIGINT").replace("REAL", "DOUBLE PRECISION").split(";")
            if s.strip()]


def postgres_statements(script: str) -> list[str] | None:
    """The PostgreSQL form of a rollup migration (None: ``script`` is not one of them)."""
    if script is SQLITE_MIGRATION:
        return postgres_migration()
    if script is SQLITE_MIGRATION_SESSIONS:
        return _postgres_sessions_migration()
    if script is SQLITE_MIGRATION_SEQ:
        return ["ALTER TABLE rollup_dirty ADD COLUMN IF NOT EXISTS seq BIGINT NOT NULL DEFAULT 0"]
    if script is SQLITE_MIGRATION_DAYS:
        return _pg_ddl("".join(_table_ddl(k, "BYTEA", k.rollup_day) for k in _V7_KINDS)) + [
            "INSERT INTO rollup_dirty (hour) " + " UNION ".join(f"SELECT DISTINCT hour FROM {k.rollup}" for k in _V7_KINDS)
            + " ON CONFLICT DO NOTHING"]
    return None


def postgres_migration() -> list[str]:
    """Version 7 for PostgreSQL: the same tables (BYTEA sketches) and the same marking, as
    PL/pgSQL trigger functions."""
    statements = _pg_ddl(_TABLES + "".join(_table_ddl(k, "BYTEA") for k in _V7_KINDS))
    hour = _HOUR
    statements.append("INSERT INTO rollup_dirty (hour) " + " UNION ".join(
        f"SELECT {hour.format(a=k.alias)} FROM {k.table} {k.alias} WHERE {k.alias}.started_at_ms IS NOT NULL"
        for k in _V7_KINDS))
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in SESSION_DIMENSIONS)
    hours = " UNION ".join(
        f"SELECT {hour.format(a=k.alias)} FROM {k.table} {k.alias} WHERE {k.alias}.session_id = NEW.session_id "
        f"AND {k.alias}.started_at_ms IS NOT NULL" for k in _V7_KINDS)
    statements.append(f"""
CREATE OR REPLACE FUNCTION hermetry_rollup_mark_session() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF {changed} THEN
        INSERT INTO rollup_dirty (hour) {hours} ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$fn$""")
    statements.append("DROP TRIGGER IF EXISTS sessions_rollup_dims ON sessions")
    statements.append(f"CREATE TRIGGER sessions_rollup_dims AFTER UPDATE OF {', '.join(SESSION_DIMENSIONS)} ON sessions "
                      "FOR EACH ROW EXECUTE FUNCTION hermetry_rollup_mark_session()")
    return statements


# ---------------------------------------------------------------------------------------------
# Aggregating raw rows (the one definition: rebuilds store it, reads add it for raw ranges)
# ---------------------------------------------------------------------------------------------

@dataclass
class Group:
    """What one group of rows adds up to: counts (``Kind.counts`` names), the wall-time
    histogram counts (turns), and a sketch per measure (``Kind.measures`` names)."""

    counts: dict[str, Any]
    hist: list[int] = field(default_factory=list)
    sketches: dict[str, Sketch] = field(default_factory=dict)
    #: the counts combined by MAX (``Kind.maxima``; None = no value), not summed
    maxima: tuple[str, ...] = ()
    #: rollup rows' sketches not merged yet (``read(merge=False)``): ``Sketch.parse`` d, by measure
    parsed: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, other: Group) -> None:
        for name, value in other.counts.items():
            if name in self.maxima:
                mine = self.counts.get(name)
                self.counts[name] = value if mine is None else mine if value is None else max(mine, value)
            else:
                self.counts[name] = self.counts.get(name, 0) + value
        if other.hist:
            self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)] if self.hist else list(other.hist)
        for name, sketch in other.sketches.items():
            mine = self.sketches.get(name)
            if mine is None:
                self.sketches[name] = sketch.copy()
            else:
                mine.merge(sketch)

    def subtract(self, other: Group, *, counts: bool = True) -> None:
        """Take ``other`` (a part of what this group counted: raw rows of an hour whose rollup row
        this holds) out: counts, histogram and sketch buckets subtract exactly; the sketches'
        extremes are settled when read (``Sketch.settle``). Not for ``maxima`` (a MAX does not
        subtract). ``counts=False``: the sketches only (a read that did not sum the rollup rows'
        counts, ``read(counts=False)``)."""
        assert not self.maxima, "a maximum does not subtract"
        for name, value in other.counts.items() if counts else ():
            if value is not None:
                self.counts[name] = (self.counts.get(name) or 0) - value
        if other.hist and counts:
            self.hist = [a - b for a, b in zip(self.hist or [0] * len(other.hist), other.hist, strict=True)]
        for name, sketch in other.sketches.items():
            mine = self.sketches.get(name)
            if mine is None:
                mine = self.sketches[name] = Sketch().unsure()
            mine.subtract(sketch)


    def empty(self) -> bool:
        """Counts nothing (what a subtraction leaves of a group whose rows were all taken out)."""
        return (not any(self.counts.values()) and not any(self.hist) and not self.parsed
                and not any(sk.count for sk in self.sketches.values()))


def _is_postgres(conn: Any) -> bool:
    dialect = getattr(conn, "dialect", None)
    return getattr(dialect, "name", "sqlite") == "postgres"


def _execute(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    cursor = conn.cursor()
    cursor.row_factory = None
    return cursor.execute(sql, params)


def _fetch(conn: Any, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[Any]:
    """Every row of ``sql`` at once (one call, not one per row). ``binary``: on PostgreSQL the rows
    come in binary form — a sketch (BYTEA) as its bytes, not as hex text twice their size (measured
    on the 10M-call benchmark's hourly tool sketches, 14.5 MB: 155–290 ms → 53–70 ms); only for
    rows of text, integer and BYTEA columns (a ``numeric`` would load as ``Decimal``)."""
    if binary and _is_postgres(conn):
        return list(conn.execute(sql, params, binary=True).fetchall())
    return list(_execute(conn, sql, params).fetchall())


def _ranges_sql(column: str, ranges: Sequence[tuple[float, float]]) -> tuple[str, list[Any]]:
    if not ranges:
        return "1 = 0", []
    clauses, params = [], []
    for lo, hi in ranges:
        clauses.append(f"({column} >= ? AND {column} < ?)")
        params += [lo, hi]
    return "(" + " OR ".join(clauses) + ")", params


def _filters_sql(kind: Kind, filters: Mapping[str, Any], raw: bool) -> tuple[str, list[Any]]:
    keys = dict(kind.keys)
    clauses, params = [], []
    for name, value in sorted(filters.items()):
        if name not in keys or name == "hour":
            raise ValueError(f"rollups of {kind.name} cannot be filtered on {name!r}")
        column = keys[name] if raw else f"r.{name}"
        if value is None:
            clauses.append(f"{column} IS NULL")
        else:
            clauses.append(f"{column} = ?")
            params.append(value)
    return "".join(f" AND {c}" for c in clauses), params


#: Inside :func:`raw_cache`: {(connection, kind, raw ranges, filters): the groups of those raw rows
#: by :func:`_cache_keys`}; None outside one.
_RAW_CACHE: ContextVar[dict[tuple[Any, ...], dict[tuple[Any, ...], Group]] | None] = ContextVar(
    "hermetry_rollups_raw_cache", default=None)


@contextmanager
def raw_cache() -> Iterator[None]:
    """Within this block, the reads (:func:`read`) of one kind over the same raw ranges and
    filters on the same connection share ONE read of those raw rows: a report reads each kind
    several times (its counts by the breakdowns, its sketches by fewer keys, activity's figures),
    and a window's partial first and last hours are raw for every one of them. The rows are
    grouped once by every key but ``hour`` (plus ``day``), with the sketches and the histogram,
    and each read folds them to its keys as it folds rollup rows. A read by ``hour`` is not
    shared (it would hold a group per hour). Held: at most the groups of the raw ranges (as many
    as their days' rollup rows), dropped at the block's end. Rows written meanwhile are not seen
    by the block's later reads: one report, one reading of its raw ranges. Nested blocks share the
    outermost one's reads."""
    if _RAW_CACHE.get() is not None:  # inside another: share its reads
        yield
        return
    token, probes = _RAW_CACHE.set({}), _PROBES.set({})  # and its look-ups of which tables exist
    sessions = _SESSION_CACHE.set({})  # and of the raw rows' sessions
    try:
        yield
    finally:
        _RAW_CACHE.reset(token)
        _PROBES.reset(probes)
        _SESSION_CACHE.reset(sessions)


#: Inside :func:`raw_cache`: {connection: {session id: its ``SESSION_DIMENSIONS``}} — the sessions
#: a report's raw reads looked up, shared by the kinds (a session's turns, calls and tools lie in
#: the same raw ranges: looked up once, not once per kind). None outside one.
_SESSION_CACHE: ContextVar[dict[int, dict[str, tuple[Any, ...]]] | None] = ContextVar(
    "hermetry_rollups_session_cache", default=None)
_SESSION_COLUMNS = tuple(f"s.{d}" for d in SESSION_DIMENSIONS)


def _sessions_of(conn: Any, columns: Sequence[str], ids: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """:func:`_session_keys_of`, through the report's session cache where there is one (and the
    columns are plain session dimensions)."""
    cache = _SESSION_CACHE.get()
    if cache is None or not all(c in _SESSION_COLUMNS for c in columns):
        return _session_keys_of(conn, columns, ids)
    known = cache.setdefault(id(conn), {})
    wanted = set(ids)
    missing = [sid for sid in wanted if sid not in known]
    if missing:
        known.update(_session_keys_of(conn, _SESSION_COLUMNS, missing))
    at = [_SESSION_COLUMNS.index(c) for c in columns]
    return {sid: tuple(row[i] for i in at) for sid in wanted if (row := known.get(sid)) is not None}


def _in_transaction(conn: Any) -> bool:
    """Is ``conn`` inside a transaction already (sqlite3's ``in_transaction``; a PostgreSQL
    connection's libpq status — an outer snapshot must not be committed by an inner block)?"""
    if _is_postgres(conn):
        try:
            return int(conn.raw.info.transaction_status) != 0  # psycopg.pq.TransactionStatus.IDLE
        except Exception:
            return False
    return bool(getattr(conn, "in_transaction", False))


@contextmanager
def snapshot(conn: Any) -> Iterator[None]:
    """The block's reads see the store as of one moment (a read transaction: SQLite ``BEGIN``,
    PostgreSQL ``REPEATABLE READ READ ONLY``), so a plan and its reads agree — a partial hour read as
    its rollup rows minus raw rows (``Plan.edge_hours``) needs both from the same state. Nothing
    when ``conn`` is None or already in a transaction (nested blocks share the outer one); a store
    that refuses leaves each statement its own snapshot, as without it."""
    began = False
    if conn is not None and not _in_transaction(conn):
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if _is_postgres(conn) else "BEGIN")
            began = True
        except Exception:
            began = False
    try:
        yield
    finally:
        if began:
            try:
                conn.execute("COMMIT")
            except Exception:
                pass


def _day_sql(alias: str) -> str:
    return f"CAST(FLOOR({alias}.started_at_ms / {24 * HOUR_MS}.0) AS BIGINT)"


_SESSION_COLUMN = re.compile(r"\bs\.")


def _reads_session(sql: str) -> bool:
    return bool(_SESSION_COLUMN.search(sql))


def _cache_keys(kind: Kind, joined: bool) -> tuple[tuple[str, str], ...]:
    """What :func:`raw_cache` groups a kind's raw rows by: every key but ``hour`` (only those of
    the kind's own table unless ``joined``: the sessions' columns cost a lookup per row), then ``day``."""
    return (*((n, sql) for n, sql in kind.keys if n != "hour" and (joined or kind.table == "sessions"
                                                         or not _reads_session(sql))),
            ("day", _day_sql(kind.alias)))


def _fold(kind: Kind, groups: Mapping[tuple[Any, ...], Group], joined: bool, keys: Sequence[str],
          measures: bool) -> dict[tuple[Any, ...], Group]:
    """``groups`` (by :func:`_cache_keys`) added up by ``keys``; ``groups`` are left as they are."""
    names = [n for n, _ in _cache_keys(kind, joined)]
    at = [names.index(n) for n in keys]
    out: dict[tuple[Any, ...], Group] = {}
    for full, g in groups.items():
        key = tuple(full[i] for i in at)
        mine = out.get(key)
        if mine is None:
            out[key] = Group(dict(g.counts), list(g.hist),
                             {m: sk.copy() for m, sk in g.sketches.items()} if measures else {}, maxima=kind.maxima)
        else:
            mine.add(g if measures else Group(g.counts, g.hist, maxima=kind.maxima))
    return out


def aggregate_raw(conn: Any, kind: Kind, ranges: Sequence[tuple[float, float]],
                  filters: Mapping[str, Any] | None = None, *, keys: Sequence[str] | None = None,
                  measures: bool = True) -> dict[tuple[Any, ...], Group]:
    """The raw rows started in ``ranges`` (epoch ms, ``[lo, hi)``), grouped by every key of the
    kind (``hour`` first): what a rollup row holds — or, for a read, by ``keys`` only (names of
    the kind's keys and ``"day"``; grouping by fewer keys is what keeps reading dirty hours as
    cheap as the exact path), without the sketches unless ``measures``. One statement
    (:func:`_aggregate_one`); inside :func:`raw_cache` the reads of a report share it."""
    if not ranges:
        return {}
    if keys is None:
        return _aggregate_one(conn, kind, kind.keys, ranges, filters, measures)
    known = {**dict(kind.keys), "day": _day_sql(kind.alias)}
    cache = _RAW_CACHE.get()
    if cache is None or "hour" in keys:
        return _aggregate_read(conn, kind, tuple((n, known[n]) for n in keys), ranges, filters, measures)
    slot = (id(conn), kind.name, tuple(ranges), tuple(sorted((filters or {}).items())))
    # by the kind's own keys unless the read needs a session's (then by all, which serves any read)
    joined = kind.table != "sessions" and (any(_reads_session(known[n]) for n in keys) or (*slot, False) not in cache
                                           and (*slot, True) in cache)
    groups = cache.get((*slot, joined))
    if groups is None:
        groups = cache[(*slot, joined)] = _aggregate_read(conn, kind, _cache_keys(kind, joined), ranges, filters, True)
    return _fold(kind, groups, joined, keys, measures)


def _raw_columns(kind: Kind) -> list[str]:
    """The raw row's columns the kind's counts and measures read (``alias.column`` in their SQL)."""
    pattern = re.compile(rf"\b{kind.alias}\.(\w+)")
    found: list[str] = []
    for _, sql in (*kind.counts, *kind.measures):
        for column in pattern.findall(sql):
            if column not in found:
                found.append(column)
    return found


_AGGREGATE = re.compile(r"\b(COUNT|SUM|MAX)\(")
_OTHER_AGGREGATE = re.compile(r"\b(AVG|MIN|TOTAL|GROUP_CONCAT|STRING_AGG|DISTINCT|OVER)\b", re.IGNORECASE)


def _per_row(sql: str) -> str | None:
    """An aggregate count's SQL as its value over one row, summed (``Kind.maxima``: maximised) in
    Python over a group to give the aggregate: ``COUNT(*)`` → 1, ``COUNT(x)`` → 1 or 0 by whether
    x is NULL, ``SUM(x)`` and ``MAX(x)`` → x (``COALESCE(SUM(x), 0)`` → x or 0). None for anything
    else (the read then groups in SQL). One definition: the counts' SQL, rewritten."""
    out: list[str] = []
    at = 0
    while (m := _AGGREGATE.search(sql, at)) is not None:
        depth, j = 1, m.end()
        while depth:
            if j >= len(sql):
                return None
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        arg = sql[m.end():j - 1]
        if _AGGREGATE.search(arg) or _OTHER_AGGREGATE.search(arg):
            return None
        out.append(sql[at:m.start()])
        if m.group(1) == "COUNT":
            out.append("1" if arg.strip() == "*" else f"(CASE WHEN ({arg}) IS NOT NULL THEN 1 ELSE 0 END)")
        else:
            out.append(f"({arg})")
        at = j
    out.append(sql[at:])
    text = "".join(out)
    return None if _OTHER_AGGREGATE.search(text) else text


#: Session ids per statement when a read looks up the sessions of its raw rows.
_SESSION_CHUNK = 500
#: Raw rows a read holds at a time (the sessions it looked up are kept: one tuple per session).
_ROWS_PER_BATCH = 20_000


def _session_keys_of(conn: Any, columns: Sequence[str], ids: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """{session id: the values of ``columns`` (SQL over ``s``)} for the sessions that exist."""
    out: dict[str, tuple[Any, ...]] = {}
    ids = sorted(ids)
    for i in range(0, len(ids), _SESSION_CHUNK):
        chunk = ids[i:i + _SESSION_CHUNK]
        sql = (f"SELECT s.session_id, {', '.join(columns)} FROM sessions s "
               f"WHERE s.session_id IN ({', '.join('?' * len(chunk))})")
        for row in _execute(conn, sql, chunk):
            out[row[0]] = tuple(row[1:])
    return out


def _in_file_order(conn: Any, table: str, alias: str, where: str) -> str:
    """``where`` (over ``alias``'s rows) as a condition that visits them in the order they lie in the
    file: on SQLite ``rowid IN (SELECT rowid … WHERE where)`` — the ``started_at_ms`` index finds
    the rowids, SQLite sorts them and reads each table page once, rows of one session together
    (bulk-imported history lies session by session, an hour's rows scattered over the file: read
    in time order every row is a page fetch of its own; measured on the benchmark's 10M file,
    api_calls of 43 minutes: 0.30 → 0.20 s CPU). PostgreSQL's bitmap heap scan does this itself."""
    if _is_postgres(conn):
        return where
    return f"{alias}.rowid IN (SELECT {alias}.rowid FROM {table} {alias} WHERE {where})"


def _aggregate_rows(conn: Any, kind: Kind, key_pairs: Sequence[tuple[str, str]], ranges: Sequence[tuple[float, float]],
                    filters: Mapping[str, Any] | None, measures: bool) -> dict[tuple[Any, ...], Group] | None:
    """A read's raw ranges grouped in Python: ONE statement fetches each row's own keys, its
    counts' per-row values (:func:`_per_row`), each measure's sign, bucket (``sign_sql``,
    ``bucket_sql``: the rebuild's) and value, and its histogram edge; the sessions' keys (and
    filters) come from one look-up per distinct session (in chunks) instead of a join per row —
    the same groups as :func:`_aggregate_one` (LEFT JOIN: a missing session's keys are NULL).
    None when a count has no per-row form (then :func:`_aggregate_one`)."""
    per_row = [_per_row(sql) for _, sql in kind.counts]
    if kind.table == "sessions" or any(p is None for p in per_row):
        return None
    a = kind.alias
    fsql_own, fparams = _filters_sql(kind, {n: v for n, v in (filters or {}).items()
                                            if not _reads_session(dict(kind.keys)[n])}, raw=True)
    s_filters = [(n, v) for n, v in sorted((filters or {}).items()) if _reads_session(dict(kind.keys)[n])]
    own = [(i, sql) for i, (_, sql) in enumerate(key_pairs) if not _reads_session(sql)]
    theirs = [(i, sql) for i, (_, sql) in enumerate(key_pairs) if _reads_session(sql)]
    s_columns = [sql for _, sql in theirs] + [dict(kind.keys)[n] for n, _ in s_filters]
    chosen = kind.measures if measures else ()
    cols = [f"{a}.session_id", *(sql for _, sql in own), *(p or "" for p in per_row)]
    for _, expr in chosen:
        cols += [sign_sql(expr), bucket_sql(expr), expr]
    hist = _hist_sql(dict(kind.measures)[kind.hist]) if kind.hist else None
    if hist:
        cols.append(hist)
    where, params = _ranges_sql(f"{a}.started_at_ms", ranges)
    cursor = _execute(conn, f"SELECT {', '.join(cols)} FROM {kind.table} {a} "
                            f"WHERE {_in_file_order(conn, kind.table, a, where + fsql_own)}", [*params, *fparams])
    nt, no, nc, nm = len(theirs), len(own), len(per_row), len(chosen)
    c0, m0 = 1 + no, 1 + no + nc
    c1 = c0 + nc
    maxed = [n in kind.maxima for n in kind.count_names]
    any_max = any(maxed)
    #: per session: the key's part from its session (None: a session filter drops its rows)
    suffix: dict[str, tuple[Any, ...] | None] = {}
    missing = (None,) * len(s_columns)

    def session_suffix(found: tuple[Any, ...]) -> tuple[Any, ...] | None:
        for j, (_, value) in enumerate(s_filters):
            got = found[nt + j]
            if (got is not None) if value is None else (got != value):
                return None
        return found[:nt]

    # per key (own keys + the session's): [counts], [hist], per measure ({(sign, bucket): n}, [n, min, max, sum])
    acc: dict[tuple[Any, ...], tuple[list[Any], list[int], list[tuple[dict[tuple[int, int], int], list[Any]]]]] = {}
    nh = len(WALL_MS_EDGES)
    empty: tuple[Any, ...] = ()
    while rows := cursor.fetchmany(_ROWS_PER_BATCH):  # memory: a batch of rows, not the ranges' all
        if s_columns:
            new = {r[0] for r in rows if r[0] not in suffix}
            if new:
                found = _sessions_of(conn, s_columns, new)
                for sid in new:
                    suffix[sid] = session_suffix(found.get(sid, missing))
        for row in rows:
            if s_columns:
                tail = suffix[row[0]]
                if tail is None:
                    continue
                key = row[1:c0] + tail
            else:
                key = row[1:c0] if no else empty
            g = acc.get(key)
            values = row[c0:c1]
            if g is None:
                g = acc[key] = ([None] * nc, [0] * nh if hist else [], [({}, [0, None, None, 0.0]) for _ in range(nm)])
            counts = g[0]
            if any_max or None in values or None in counts:
                for i in range(nc):
                    v = values[i]
                    if v is not None:
                        mine = counts[i]
                        counts[i] = v if mine is None else (max(mine, v) if maxed[i] else mine + v)
            else:
                counts[:] = map(add, counts, values)
            for j in range(nm):
                at = m0 + 3 * j
                sign = row[at]
                if sign is None:
                    continue
                buckets, stats = g[2][j]
                b = (sign, row[at + 1])
                buckets[b] = buckets.get(b, 0) + 1
                v = row[at + 2]
                if stats[0]:
                    if v < stats[1]:
                        stats[1] = v
                    elif v > stats[2]:
                        stats[2] = v
                else:
                    stats[1] = stats[2] = v
                stats[0] += 1
                stats[3] += v
            if hist:
                h = row[-1]
                if h is not None:
                    g[1][h] += 1
    # back to the order of ``key_pairs``
    order = [i for i, _ in own] + [i for i, _ in theirs]
    at_of = [order.index(i) for i in range(len(key_pairs))]
    out: dict[tuple[Any, ...], Group] = {}
    for key, (counts, hist_counts, cells) in acc.items():
        group = Group(dict(zip(kind.count_names, counts, strict=True)), hist_counts, maxima=kind.maxima)
        for j, (measure, _) in enumerate(chosen):
            buckets, (n, lo, hi, total) = cells[j]
            if n:
                group.sketches[measure] = Sketch.of_buckets(buckets, n, lo, hi, total)
        out[tuple(key[i] for i in at_of)] = group
    return out


def raw_values(conn: Any, kind: Kind, ranges: Sequence[tuple[float, float]], measure: str, keys: Sequence[str],
               filters: Mapping[str, Any] | None, *, below: float | None, above: float | None) -> list[tuple[tuple[Any, ...], float]]:
    """(key by ``keys``, value) of each raw row started in ``ranges`` whose ``measure`` value (the
    sketch's SQL) is below ``below`` or above ``above`` (None: not that side): where a read that
    subtracted raw rows from a partial hour's rollup (``Plan.edge_hours``) finds its exact min/max
    when the subtraction could not tell them (``Sketch.settle``, ``bounds_wanted``). Few rows come
    back (the values beyond the sure ones), but every row of ``ranges`` is scanned, in file order."""
    if not ranges or (below is None and above is None):
        return []
    a = kind.alias
    known = {**dict(kind.keys), "day": _day_sql(kind.alias)}
    expr = dict(kind.measures)[measure]
    own = [(i, known[n]) for i, n in enumerate(keys) if not _reads_session(known[n])]
    theirs = [(i, known[n]) for i, n in enumerate(keys) if _reads_session(known[n])]
    fsql_own, fparams = _filters_sql(kind, {n: v for n, v in (filters or {}).items()
                                            if not _reads_session(dict(kind.keys)[n])}, raw=True)
    s_filters = [(n, v) for n, v in sorted((filters or {}).items()) if _reads_session(dict(kind.keys)[n])]
    s_columns = [sql for _, sql in theirs] + [dict(kind.keys)[n] for n, _ in s_filters]
    beyond, bparams = [], []
    if below is not None:
        beyond.append(f"({expr}) < ?")
        bparams.append(below)
    if above is not None:
        beyond.append(f"({expr}) > ?")
        bparams.append(above)
    where, params = _ranges_sql(f"{a}.started_at_ms", ranges)
    sql = (f"SELECT {a}.session_id, {expr}{''.join(f', {c}' for _, c in own)} FROM {kind.table} {a} "
           f"WHERE {_in_file_order(conn, kind.table, a, where + fsql_own)} AND ({' OR '.join(beyond)})")
    rows = _execute(conn, sql, [*params, *fparams, *bparams]).fetchall()
    found = _session_keys_of(conn, s_columns, {r[0] for r in rows}) if s_columns else {}
    missing = (None,) * len(s_columns)
    out: list[tuple[tuple[Any, ...], float]] = []
    for row in rows:
        session = found.get(row[0], missing)
        if any((session[len(theirs) + j] is not None) if value is None else (session[len(theirs) + j] != value)
               for j, (_, value) in enumerate(s_filters)):
            continue
        key: list[Any] = [None] * len(keys)
        for j, (i, _) in enumerate(own):
            key[i] = row[2 + j]
        for j, (i, _) in enumerate(theirs):
            key[i] = session[j]
        out.append((tuple(key), row[1]))
    return out


def _aggregate_read(conn: Any, kind: Kind, key_pairs: Sequence[tuple[str, str]],
                    ranges: Sequence[tuple[float, float]], filters: Mapping[str, Any] | None,
                    measures: bool) -> dict[tuple[Any, ...], Group]:
    """A read's raw groups: in Python over the rows (:func:`_aggregate_rows`) where it can, else in SQL."""
    found = _aggregate_rows(conn, kind, key_pairs, ranges, filters, measures)
    return found if found is not None else _aggregate_one(conn, kind, key_pairs, ranges, filters, measures)


def _aggregate_one(conn: Any, kind: Kind, key_pairs: Sequence[tuple[str, str]], ranges: Sequence[tuple[float, float]],
                   filters: Mapping[str, Any] | None, measures: bool) -> dict[tuple[Any, ...], Group]:
    """:func:`aggregate_raw`'s ONE statement: the rows of ``ranges`` (joined to their sessions) are
    read once into a materialized CTE — the keys computed, the columns the counts and measures
    read — and grouped from there in one ``UNION ALL``: the counts by the keys, each measure's
    sketch buckets (``sign_sql``, ``bucket_sql``: count, min, max, sum) by the keys + bucket, the
    histogram by the keys + edge. The same SQL expressions as a rebuild's, so the same numbers
    (sketches bucket for bucket); one scan of the raw rows instead of one per part."""
    out: dict[tuple[Any, ...], Group] = {}
    a = kind.alias
    k = len(key_pairs)
    where, params = _ranges_sql(f"{a}.started_at_ms", ranges)
    fsql, fparams = _filters_sql(kind, filters or {}, raw=True)
    # the session's columns only when a key or a filter reads them (LEFT JOIN on its primary key:
    # the same rows either way)
    joined = kind.table != "sessions" and any(_reads_session(sql) for sql in (*(s for _, s in key_pairs), fsql))
    source = f"{kind.table} {a} LEFT JOIN sessions s ON s.session_id = {a}.session_id" if joined else f"{kind.table} {a}"
    inner = [f"{sql} AS k{i}" for i, (_, sql) in enumerate(key_pairs)]
    inner += [f"{a}.{c} AS {c}" for c in _raw_columns(kind)]
    ks = [f"k{i}" for i in range(k)]
    head = "".join(f"{c}, " for c in ks)
    by = ", ".join(ks)
    chosen = kind.measures if measures else ()
    nc = len(kind.counts)
    typed_null = ("CAST(NULL AS BIGINT)",) * 3 + ("CAST(NULL AS DOUBLE PRECISION)",) * 3
    hist = _hist_sql(dict(kind.measures)[kind.hist]) if kind.hist else None

    def slots(j: int, values: Sequence[str]) -> str:  # the measure columns, ``values`` in measure j's
        cols: list[str] = []
        for i in range(len(chosen)):
            cols += values if i == j else typed_null
        if hist:
            cols += values if j == len(chosen) else ("CAST(NULL AS BIGINT)",) * 2
        return "".join(f", {c}" for c in cols)

    parts = [f"SELECT 0, {head}{', '.join(s for _, s in kind.counts)}{slots(-1, ())} FROM raw {a}"
             + (f" GROUP BY {by}" if k else "")]
    nulls = ", NULL" * nc
    for j, (_, expr) in enumerate(chosen):
        sign, bucket = sign_sql(expr), bucket_sql(expr)
        parts.append(f"SELECT {j + 1}, {head}{nulls[2:]}"
                     f"{slots(j, (sign, bucket, 'COUNT(*)', f'MIN({expr})', f'MAX({expr})', f'SUM({expr})'))} "
                     f"FROM raw {a} WHERE ({expr}) IS NOT NULL GROUP BY {head}{sign}, {bucket}")
    if hist:
        parts.append(f"SELECT {len(chosen) + 1}, {head}{nulls[2:]}{slots(len(chosen), (hist, 'COUNT(*)'))} "
                     f"FROM raw {a} WHERE {hist} IS NOT NULL GROUP BY {head}{hist}")
    sql = (f"WITH raw AS MATERIALIZED (SELECT {', '.join(inner) or '1 AS one'} FROM {source} WHERE {where}{fsql}) "
           + " UNION ALL ".join(parts))
    rows = _execute(conn, sql, [*params, *fparams]).fetchall()
    names = kind.count_names
    for row in rows:  # the counts first (a parallel plan need not return the parts in order)
        if row[0] == 0:
            if not k and not row[1]:  # an aggregate without GROUP BY over no rows
                continue
            out[tuple(row[1:1 + k])] = Group(dict(zip(names, row[1 + k:1 + k + nc], strict=True)), maxima=kind.maxima)
    if not out:
        return out
    if hist:
        for g in out.values():
            g.hist = [0] * len(WALL_MS_EDGES)
    at = 1 + k + nc
    for row in rows:
        part = row[0]
        if part == 0:
            continue
        g = out[tuple(row[1:1 + k])]
        if part <= len(chosen):
            measure = chosen[part - 1][0]
            c = at + 6 * (part - 1)
            sketch = g.sketches.get(measure)
            if sketch is None:
                sketch = g.sketches[measure] = Sketch()
            sketch.add_bucket(row[c], row[c + 1], row[c + 2], row[c + 3], row[c + 4], row[c + 5])
        else:
            c = at + 6 * len(chosen)
            g.hist[row[c]] += row[c + 1]
    return out


# ---------------------------------------------------------------------------------------------
# Rebuilding dirty hours
# ---------------------------------------------------------------------------------------------

@dataclass
class RebuildStats:
    hours: int = 0
    rows: int = 0
    seconds: float = 0.0
    #: dirty hours left (a budget ran out, or hours still open)
    dirty_left: int = 0
    #: what the sessions rollup's build did first (a store upgraded to schema 12), or None
    sessions_build: SessionsBuild | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hours_rebuilt": self.hours, "rollup_rows": self.rows,
                               "seconds": round(self.seconds, 3), "dirty_hours_left": self.dirty_left}
        if self.sessions_build is not None:
            out["sessions_rollup_build"] = self.sessions_build.as_dict()
        return out


def pruned_before_ms(conn: Any) -> float | None:
    """The boundary before which raw rows were pruned (None: never pruned)."""
    row = _execute(conn, "SELECT value FROM rollup_meta WHERE key = 'pruned_before_ms'").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _runs(hours: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted hours → ``[first, last + 1)`` runs of consecutive hours."""
    runs: list[tuple[int, int]] = []
    for h in hours:
        if runs and runs[-1][1] == h:
            runs[-1] = (runs[-1][0], h + 1)
        else:
            runs.append((h, h + 1))
    return runs


def _begin(conn: Any) -> None:
    conn.execute(dialect_of(conn).begin())
    if _is_postgres(conn):
        # no writer's row half-seen: writers wait for this short transaction, and it for them.
        # rollup_dirty first: a writer marks its hours there before it writes a row
        # (sqlite.write_events' _mark_ahead), so it holds that table and then needs the raw ones —
        # locked the other way round, the two deadlocked (PostgreSQL refused the writer's batch
        # when it chose to abort the writer: the probe test's "1 refused write in ~1 of 5 runs")
        try:
            conn.execute("LOCK TABLE rollup_dirty, sessions, turns, api_calls, tool_calls IN SHARE ROW EXCLUSIVE MODE")
        except BaseException:
            # a lock timeout or a deadlock aborts the transaction: end it, or every later
            # statement on this connection fails ("current transaction is aborted")
            _end(conn, False)
            raise


def _end(conn: Any, ok: bool) -> None:
    try:
        conn.execute("COMMIT" if ok else "ROLLBACK")
    except Exception:
        if ok:
            raise


def _in_list(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def rebuild(conn: Any, *, now_ms: float | None = None, budget_s: float | None = None,
            include_open: bool = False, before_hour: int | None = None) -> RebuildStats:
    """Rebuild dirty closed hours exactly from the raw rows (all of them, or until ``budget_s``
    has passed). The current hour stays dirty unless ``include_open`` (it is still being written;
    reads take it from raw rows). ``conn`` must be a writer.

    Writers never wait for the aggregation. On SQLite a chunk of hours is aggregated in a read
    snapshot (WAL: writers go on meanwhile), then a short write transaction swaps in the rows of
    the hours whose mark did not move (``rollup_dirty.seq``); an hour a writer marked meanwhile
    stays dirty (read raw, rebuilt next time). PostgreSQL's writers are the forwarders of the
    hosts' spools (no agent waits for them): there a chunk is one hour, aggregated and swapped
    under a ``SHARE ROW EXCLUSIVE`` lock of the raw tables. Chunks grow from one hour while they
    fit the budget, so a budget is overrun by at most about one hour's work."""
    t0 = time.perf_counter()
    stats = RebuildStats()
    now = time.time() * 1000 if now_ms is None else now_ms
    limit = int(now // HOUR_MS) + (1 if include_open else 0)
    if before_hour is not None:
        limit = min(limit, before_hour)
    postgres = _is_postgres(conn)
    chunk = 1 if (postgres or budget_s is not None) else REBUILD_CHUNK_HOURS
    while True:
        started = time.perf_counter()
        picked, done = (_rebuild_chunk_locked if postgres else _rebuild_chunk_snapshot)(conn, limit, chunk, stats)
        elapsed = time.perf_counter() - t0
        if picked < chunk or not done:  # nothing more, or every hour was re-marked meanwhile
            break
        if budget_s is not None:
            left = budget_s - elapsed
            per_hour = (time.perf_counter() - started) / max(picked, 1)
            if left <= 0:
                break
            if not postgres:
                chunk = max(1, min(REBUILD_CHUNK_HOURS, int(left / max(per_hour, 1e-6)), chunk * 2))
    stats.dirty_left = int(_execute(conn, "SELECT COUNT(*) FROM rollup_dirty").fetchone()[0])
    stats.seconds = time.perf_counter() - t0
    return stats


def _floor_hour(conn: Any) -> int | None:
    pruned = pruned_before_ms(conn)
    return int(math.ceil(pruned / HOUR_MS)) if pruned is not None else None


def _rebuild_chunk_locked(conn: Any, limit: int, chunk: int, stats: RebuildStats) -> tuple[int, int]:
    ok = False
    _begin(conn)
    try:
        floor_hour = _floor_hour(conn)
        if floor_hour is not None:  # pruned time: no raw rows to rebuild from; rollups stay
            _rebuild_pruned_sessions(conn, floor_hour)
            _execute(conn, "DELETE FROM rollup_dirty WHERE hour < ?", (floor_hour,))
        hours = [h for (h,) in _execute(conn, "SELECT hour FROM rollup_dirty WHERE hour < ? ORDER BY hour LIMIT ?",
                                        (limit, chunk)).fetchall()]
        if hours:
            stats.rows += _store_hours(conn, hours, _aggregate_hours(conn, hours))
            stats.hours += len(hours)
        ok = True
    finally:
        _end(conn, ok)
    return len(hours), len(hours)


def _rebuild_chunk_snapshot(conn: Any, limit: int, chunk: int, stats: RebuildStats) -> tuple[int, int]:
    ok = False
    conn.execute(dialect_of(conn).begin(immediate=False))  # a read snapshot from the first SELECT on
    try:
        floor_hour = _floor_hour(conn)
        marks = dict(_execute(conn, "SELECT hour, seq FROM rollup_dirty WHERE hour < ? AND hour >= ? "
                                    "ORDER BY hour LIMIT ?",
                              (limit, floor_hour if floor_hour is not None else -(2 ** 62), chunk)).fetchall())
        built = _aggregate_hours(conn, sorted(marks)) if marks else {}
        ok = True
    finally:
        _end(conn, ok)
    ok = False
    _begin(conn)  # the write lock, for the swap only
    try:
        if floor_hour is not None:
            _rebuild_pruned_sessions(conn, floor_hour)
            _execute(conn, "DELETE FROM rollup_dirty WHERE hour < ?", (floor_hour,))
        swap: list[int] = []
        if marks:
            where, params = _in_list("hour", sorted(marks))
            now_marks = dict(_execute(conn, f"SELECT hour, seq FROM rollup_dirty WHERE {where}", params).fetchall())
            # moved: a writer marked it after the snapshot; gone: another rebuild swapped it in
            swap = [h for h in sorted(marks) if now_marks.get(h) == marks[h]]
        if swap:
            keep = set(swap)
            built = {kind: {k: g for k, g in groups.items() if k[0] in keep} for kind, groups in built.items()}
            stats.rows += _store_hours(conn, swap, built)
            stats.hours += len(swap)
        ok = True
    finally:
        _end(conn, ok)
    return len(marks), len(swap)


def _aggregate_hours(conn: Any, hours: list[int]) -> dict[str, dict[tuple[Any, ...], Group]]:
    """What the rollup rows of ``hours`` hold, from the raw rows (per kind, by every key)."""
    ranges = [(lo * HOUR_MS, hi * HOUR_MS) for lo, hi in _runs(hours)]
    return {kind.name: aggregate_raw(conn, kind, ranges) for kind in KINDS}


def _store_hours(conn: Any, hours: list[int], built: Mapping[str, Mapping[tuple[Any, ...], Group]]) -> int:
    """Replace the rollup rows of ``hours`` by ``built``, clear their marks, rebuild their days
    (inside the caller's write transaction)."""
    rows = sum(_replace_rows(conn, kind, hours, built.get(kind.name, {})) for kind in KINDS)
    where, params = _in_list("hour", hours)
    _execute(conn, f"DELETE FROM rollup_dirty WHERE {where}", params)
    for day in sorted({h // 24 for h in hours}):
        _rebuild_day(conn, day)
    return rows


def _replace_rows(conn: Any, kind: Kind, hours: list[int], groups: Mapping[tuple[Any, ...], Group]) -> int:
    """Replace ``kind``'s hourly rollup rows of ``hours`` by ``groups`` (by every key, hour first)."""
    where, params = _in_list("hour", hours)
    _execute(conn, f"DELETE FROM {kind.rollup} WHERE {where}", params)
    columns = kind.columns
    values = []
    for key, g in groups.items():
        sketches = [g.sketches[m].to_bytes() if m in g.sketches else None for m, _ in kind.measures]
        values.append((*key, *(g.counts[c] for c in kind.count_names), *g.hist, *sketches))
    if values:
        conn.executemany(f"INSERT INTO {kind.rollup} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                         values)
    return len(values)


def _rebuild_pruned_sessions(conn: Any, floor_hour: int) -> None:
    """Dirty hours before a prune's boundary keep their rollups (no raw rows to rebuild them from) —
    but sessions are never pruned: a session that started there and ended (or changed) since is
    rebuilt into ``rollup_sessions`` from the sessions table (inside the caller's write transaction:
    an index range over that hour's sessions)."""
    hours = [h for (h,) in _execute(conn, "SELECT hour FROM rollup_dirty WHERE hour < ? ORDER BY hour",
                                    (floor_hour,)).fetchall()]
    if not hours:
        return
    groups = aggregate_raw(conn, SESSIONS, [(lo * HOUR_MS, hi * HOUR_MS) for lo, hi in _runs(hours)])
    _replace_rows(conn, SESSIONS, hours, groups)
    for day in sorted({h // 24 for h in hours}):
        _rebuild_day(conn, day)


def _rebuild_day(conn: Any, day: int, kinds: Sequence[Kind] = KINDS) -> None:
    """The day level of ``day``: its hours' rollup rows merged by every key but the hour. (Used by
    a read only while none of the day's hours is dirty, so a stale merge is never read.)"""
    for kind in kinds:
        first = day * 24
        _execute(conn, f"DELETE FROM {kind.rollup_day} WHERE hour = ?", (first,))
        nk, nc, nh = len(kind.keys), len(kind.count_names), len(kind.hist_columns)
        maxima = {j for j, c in enumerate(kind.count_names) if c in kind.maxima}
        merged: dict[tuple[Any, ...], list[Any]] = {}
        for row in _execute(conn, f"SELECT {', '.join(kind.columns)} FROM {kind.rollup} WHERE hour >= ? AND hour < ?",
                            (first, first + 24)):
            key = (first, *row[1:nk])
            acc = merged.get(key)
            if acc is None:
                merged[key] = acc = [[None if j in maxima else 0 for j in range(nc + nh)], [[] for _ in kind.measures]]
            sums = acc[0]
            for j in range(nc + nh):
                if j in maxima:
                    if row[nk + j] is not None and (sums[j] is None or row[nk + j] > sums[j]):
                        sums[j] = row[nk + j]
                else:
                    sums[j] += row[nk + j]
            for j, blob in enumerate(row[nk + nc + nh:]):
                if blob is not None:
                    acc[1][j].append(blob)
        if not merged:
            continue
        values = [(*key, *sums, *(Sketch.merged(b).to_bytes() if b else None for b in blobs))
                  for key, (sums, blobs) in merged.items()]
        conn.executemany(f"INSERT INTO {kind.rollup_day} ({', '.join(kind.columns)}) "
                         f"VALUES ({', '.join('?' for _ in kind.columns)})", values)


# ---------------------------------------------------------------------------------------------
# Building the sessions rollup of a store upgraded to schema 12
# ---------------------------------------------------------------------------------------------

#: How long one transaction of :func:`build_sessions` aims to hold the write lock (SQLite's writers
#: wait at most 250 ms for it), the sessions one reads (at least, at most: whole hours of start), and
#: the least time it then leaves the lock free (as long as it held it: see ``PRUNE_PAUSE_S``).
BUILD_TRANSACTION_S = 0.05
BUILD_SESSIONS = (500, 50_000)
BUILD_PAUSE_S = 0.005
#: How many times in a row a chunk may find the write lock taken (each after the connection's busy
#: timeout, then a growing pause) before :func:`build_sessions` gives up (the next call goes on).
BUILD_BUSY_RETRIES = 40


def _lock_busy(exc: BaseException) -> bool:
    """A lock another writer holds (SQLite: locked/busy; PostgreSQL: a lock timeout or deadlock)."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text or type(exc).__name__ in ("LockNotAvailable", "DeadlockDetected")


@dataclass
class SessionsBuild:
    """What :func:`build_sessions` did."""

    hours: int = 0
    sessions: int = 0
    transactions: int = 0
    longest_transaction_s: float = 0.0
    seconds: float = 0.0
    #: the sessions rollup is built (nothing pending)
    built: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"hours": self.hours, "sessions": self.sessions, "transactions": self.transactions,
                "longest_transaction_s": round(self.longest_transaction_s, 4), "seconds": round(self.seconds, 3),
                "built": self.built}


def _pending_from(conn: Any) -> tuple[bool, float | None]:
    """(is the sessions rollup still to build, from which hour: None = the first session's)."""
    row = _execute(conn, "SELECT value FROM rollup_meta WHERE key = ?", (SESSIONS_PENDING,)).fetchone()
    return (False, None) if row is None else (True, None if row[0] is None else float(row[0]))


#: (is the sessions rollup still to build, from which hour) — what ``hermetry doctor`` says.
sessions_pending = _pending_from


def sessions_built(conn: Any) -> bool:
    """Is the sessions rollup built, so a read may take whole hours from it (schema 12, and not
    :data:`SESSIONS_PENDING`)? Until then readers take the sessions table (the same figures)."""
    if not _readable(conn, SESSIONS.rollup_day):
        return False
    try:
        return not _pending_from(conn)[0]
    except Exception:
        if _is_postgres(conn):
            try:
                conn.execute("ROLLBACK")
            except Exception:
                pass
        return False


def _first_start(conn: Any, from_ms: float | None, offset: int = 0) -> float | None:
    """The start of the ``offset``-th session (0: the first) started at or after ``from_ms`` (None:
    any), in start order — a walk of the ``sessions_started`` index."""
    where, params = ("s.started_at_ms IS NOT NULL", []) if from_ms is None else ("s.started_at_ms >= ?", [from_ms])
    row = _execute(conn, f"SELECT s.started_at_ms FROM sessions s WHERE {where} ORDER BY s.started_at_ms "
                         f"LIMIT 1 OFFSET {int(offset)}", params).fetchone()
    return None if row is None else float(row[0])


def build_sessions(conn: Any, *, budget_s: float | None = None) -> SessionsBuild:
    """Build the sessions rollup of a store upgraded to schema 12 (:data:`SESSIONS_PENDING`), in
    start-hour order from the first session, in short write transactions — each aggregates whole hours
    of about :data:`BUILD_TRANSACTION_S` worth of sessions from the sessions table, replaces those hours'
    rows, writes the day level of the days it completed and moves the pending mark past them (the
    last one removes it) — until built or ``budget_s`` has passed (one chunk at least). ``conn`` must be
    a writer.

    Writers are not refused: the lock is held for one chunk (~50 ms; the chunk grows or shrinks to
    that from the last one's time), then left free at least as long; the chunk's rows are read once
    outside the lock first (warm pages: the lock is held for CPU, not disk). The aggregation itself
    is in the lock: a session written meanwhile is in it, or marks its hour dirty after it (read raw,
    rebuilt as any dirty hour) — a snapshot read outside the lock could be swapped in after a rebuild
    of an hour changed meanwhile, with no mark left to say so. Rows a rebuild writes for hours not
    built yet are replaced when the build gets there; none is read before it is built
    (:func:`sessions_built`). On PostgreSQL a chunk takes the rebuild's table lock (``_begin``)."""
    t0 = time.perf_counter()
    out = SessionsBuild()
    lo_n, hi_n = BUILD_SESSIONS
    n = max(lo_n, min(hi_n, 5_000))
    busy = 0
    while True:
        pending, cursor = _pending_from(conn)
        if not pending:
            out.built = True
            break
        if budget_s is not None and (out.transactions or busy) and time.perf_counter() - t0 >= budget_s:
            break  # (one chunk, or one try, at least per call)
        # the chunk, outside the lock: [lo, hi) hours from the cursor over about n sessions (whole hours)
        from_ms = None if cursor is None else cursor * HOUR_MS
        first = _first_start(conn, from_ms)
        lo = int(cursor) if cursor is not None else (int(first // HOUR_MS) if first is not None else 0)
        hi: int | None = None
        if first is not None:
            nth = _first_start(conn, first, n)
            if nth is not None:
                hi = max(int(first // HOUR_MS) + 1, int(nth // HOUR_MS))
            else:  # the last chunk: to the end of the last session's day
                last = _execute(conn, "SELECT MAX(started_at_ms) FROM sessions").fetchone()[0]
                hi = (int(float(last) // HOUR_MS) // 24 + 1) * 24
            _execute(conn, "SELECT COUNT(s.model), COUNT(s.host) FROM sessions s WHERE s.started_at_ms >= ? "
                           "AND s.started_at_ms < ?", (lo * HOUR_MS, hi * HOUR_MS)).fetchone()  # warm the pages
        ok = False
        try:
            _begin(conn)
        except Exception as exc:  # a writer holds the lock (longer than our busy timeout): later
            if not _lock_busy(exc) or busy >= BUILD_BUSY_RETRIES:
                raise
            busy += 1
            _end(conn, False)
            time.sleep(min(0.5, 0.05 * busy))
            continue
        busy = 0
        held = time.perf_counter()
        try:
            again = _pending_from(conn)
            if again == (pending, cursor):  # no other builder moved it meanwhile
                if hi is None:  # no session at or after the cursor
                    _execute(conn, "DELETE FROM rollup_meta WHERE key = ?", (SESSIONS_PENDING,))
                else:
                    groups = aggregate_raw(conn, SESSIONS, [(lo * HOUR_MS, hi * HOUR_MS)])
                    _execute(conn, f"DELETE FROM {SESSIONS.rollup} WHERE hour >= ? AND hour < ?", (lo, hi))
                    columns = SESSIONS.columns
                    values = [(*key, *(g.counts[c] for c in SESSIONS.count_names)) for key, g in groups.items()]
                    if values:
                        conn.executemany(f"INSERT INTO {SESSIONS.rollup} ({', '.join(columns)}) "
                                         f"VALUES ({', '.join('?' for _ in columns)})", values)
                    # the day level of the days this chunk completed (their earlier hours: built before)
                    d0, d1 = lo // 24 * 24, hi // 24 * 24
                    _execute(conn, f"DELETE FROM {SESSIONS.rollup_day} WHERE hour >= ? AND hour < ?", (d0, d1))
                    for (day,) in _execute(conn, f"SELECT DISTINCT hour / 24 FROM {SESSIONS.rollup} "
                                                 "WHERE hour >= ? AND hour < ?", (d0, d1)).fetchall():
                        _rebuild_day(conn, int(day), (SESSIONS,))
                    if _first_start(conn, hi * HOUR_MS) is None:  # the last chunk
                        _execute(conn, "DELETE FROM rollup_meta WHERE key = ?", (SESSIONS_PENDING,))
                    else:
                        _execute(conn, "UPDATE rollup_meta SET value = ? WHERE key = ?", (float(hi), SESSIONS_PENDING))
                    out.hours += hi - lo
                    out.sessions += sum(int(g.counts["sessions"]) for g in groups.values())
            ok = True
        finally:
            _end(conn, ok)
        took = time.perf_counter() - held
        out.transactions += 1
        out.longest_transaction_s = max(out.longest_transaction_s, took)
        n = max(lo_n, min(hi_n, 2 * n, int(n * BUILD_TRANSACTION_S / max(took, 1e-4))))
        time.sleep(max(BUILD_PAUSE_S, took))  # the writers' turn
    out.seconds = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------------
# Reading a window
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """Where each part of a window ``[since_ms, until_ms)`` is read from."""

    since_ms: float
    until_ms: float
    #: runs of hours ``[first, last + 1)`` read from the hourly rollups
    rollup_hours: tuple[tuple[int, int], ...]
    #: ranges of epoch ms ``[lo, hi)`` read from raw rows
    raw_ranges: tuple[tuple[float, float], ...]
    #: raw rows before this were pruned (None: never)
    pruned_before_ms: float | None = None
    #: the window's start as read, when pruned time snapped it to a whole hour (else None)
    snapped_since_ms: float | None = None
    #: runs of hours, whole UTC days, read from the daily rollups
    rollup_days: tuple[tuple[int, int], ...] = ()
    #: the window's partial first/last hours read as their (clean) hourly rollup rows MINUS the raw
    #: rows of ``edge_outside`` (the part of those hours outside the window) — chosen where that part
    #: holds fewer rows than the window's part, ``edge_inside`` (:func:`plan`). A kind whose counts do
    #: not subtract (``Kind.maxima``) reads ``edge_inside`` raw instead.
    edge_hours: tuple[int, ...] = ()
    edge_outside: tuple[tuple[float, float], ...] = ()
    edge_inside: tuple[tuple[float, float], ...] = ()

    @property
    def hours_from_rollups(self) -> int:
        """Whole hours read from rollups (not the partial ones, ``edge_hours``)."""
        return sum(hi - lo for lo, hi in (*self.rollup_hours, *self.rollup_days))

    def as_dict(self) -> dict[str, Any]:
        return {"hours_from_rollups": self.hours_from_rollups,
                "raw_ranges": len(self.raw_ranges),
                "edge_hours": len(self.edge_hours),
                "pruned_before_ms": self.pruned_before_ms,
                "snapped_since_ms": self.snapped_since_ms}

    def raw_for(self, kind: Kind) -> tuple[tuple[float, float], ...]:
        """The raw ranges ``kind`` reads: ``raw_ranges``, plus ``edge_inside`` for a kind that cannot
        subtract."""
        if not self.edge_inside or kind_subtracts(kind):
            return self.raw_ranges
        return tuple(_merge((*self.raw_ranges, *self.edge_inside)))


def kind_subtracts(kind: Kind) -> bool:
    """Can a read take raw rows out of this kind's rollup rows (every count a sum)?"""
    return not kind.maxima


#: Above this many separate ranges (dirty hours scattered over the window) a plan reads the window
#: from raw rows (the SQL would grow past what a planner handles well); a rebuild fixes it.
MAX_RANGES = 200


def plan(conn: Any, since_ms: float, until_ms: float, *, edges: bool = True) -> Plan:
    """Split ``[since_ms, until_ms)``: whole hours that are not dirty from rollups, the rest raw —
    a partial first or last hour, where cheaper, as its rollup minus the raw rows outside the window
    (``Plan.edge_hours``; ``edges=False``: never)."""
    pruned = pruned_before_ms(conn)
    first, last = math.ceil(since_ms / HOUR_MS), math.floor(until_ms / HOUR_MS)
    snapped = None
    if pruned is not None and since_ms < pruned:
        # before the boundary only rollups exist: whole hours, the window's start snapped down
        first = math.floor(since_ms / HOUR_MS)
        snapped = first * HOUR_MS if first * HOUR_MS != since_ms else None
    if last <= first:
        return Plan(since_ms, until_ms, (), ((since_ms, until_ms),), pruned, None)
    pruned_hour = math.ceil(pruned / HOUR_MS) if pruned is not None else None
    dirty = [h for (h,) in _execute(conn, "SELECT hour FROM rollup_dirty WHERE hour >= ? AND hour < ? ORDER BY hour",
                                    (first, last)).fetchall()
             if pruned_hour is None or h >= pruned_hour]
    raw_hours = _runs(dirty)
    clean: list[tuple[int, int]] = []
    at = first
    for lo, hi in raw_hours:
        if lo > at:
            clean.append((at, lo))
        at = hi
    if at < last:
        clean.append((at, last))
    raw: list[tuple[float, float]] = []
    if since_ms < first * HOUR_MS:
        raw.append((since_ms, first * HOUR_MS))
    raw += [(lo * HOUR_MS, hi * HOUR_MS) for lo, hi in raw_hours]
    if last * HOUR_MS < until_ms:
        raw.append((last * HOUR_MS, until_ms))
    if len(raw) > MAX_RANGES or len(clean) > MAX_RANGES:
        return Plan(since_ms, until_ms, (), ((since_ms, until_ms),), pruned, None)
    hours, days = _split_days(clean)
    edges_read = _edges(conn, since_ms, until_ms, first, last, pruned_hour) if edges else []
    for _, inside, _ in edges_read:
        raw.remove(inside)
    return Plan(since_ms, until_ms, tuple(hours), tuple(_merge(raw)), pruned, snapped, tuple(days),
                edge_hours=tuple(h for h, _, _ in edges_read),
                edge_outside=tuple(_merge(r for _, _, outside in edges_read for r in outside)),
                edge_inside=tuple(inside for _, inside, _ in edges_read))


def _edges(conn: Any, since_ms: float, until_ms: float, first: int, last: int,
           pruned_hour: int | None) -> list[tuple[int, tuple[float, float], list[tuple[float, float]]]]:
    """The window's partial first and last hours worth reading as rollup minus raw: (hour, the
    window's part, the parts outside it). An hour qualifies when it is clean (its rollup rows are
    its raw rows' aggregate), not pruned, and the part outside the window holds fewer model calls
    than the part inside (counted on the ``started_at_ms`` index: two cheap counts per hour; the
    raw read then touches the fewer rows — e.g. the last hour of a window ending before the
    history does holds no rows after it). Model calls stand for every kind's rows."""
    candidates: list[tuple[int, tuple[float, float], list[tuple[float, float]]]] = []
    if since_ms < first * HOUR_MS:
        h = first - 1
        candidates.append((h, (since_ms, first * HOUR_MS), [(h * HOUR_MS, since_ms)]))
    if last * HOUR_MS < until_ms:
        candidates.append((last, (last * HOUR_MS, until_ms), [(until_ms, (last + 1) * HOUR_MS)]))
    candidates = [c for c in candidates if pruned_hour is None or c[0] >= pruned_hour]
    if not candidates:
        return []
    hours = [h for h, _, _ in candidates]
    dirty = {h for (h,) in _execute(conn, f"SELECT hour FROM rollup_dirty WHERE hour IN ({', '.join('?' * len(hours))})",
                                    hours).fetchall()}
    out = []
    for h, inside, outside in candidates:
        if h in dirty:
            continue
        n_in = _count_rows(conn, [inside])
        if _count_rows(conn, outside) < n_in:
            out.append((h, inside, outside))
    return out


def _count_rows(conn: Any, ranges: Sequence[tuple[float, float]]) -> int:
    where, params = _ranges_sql("a.started_at_ms", ranges)
    return int(_execute(conn, f"SELECT COUNT(*) FROM api_calls a WHERE {where}", params).fetchone()[0])


def _split_days(clean: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Clean hour runs → (hour runs, runs of whole UTC days): a day wholly inside a clean run has
    no dirty hour, so its daily rows are the merge of its current hourly rows."""
    hours: list[tuple[int, int]] = []
    days: list[tuple[int, int]] = []
    for lo, hi in clean:
        d0 = -(-lo // 24) * 24  # the first day boundary at or after lo
        d1 = hi // 24 * 24
        if d1 - d0 < 24:
            hours.append((lo, hi))
            continue
        if lo < d0:
            hours.append((lo, d0))
        days.append((d0, d1))
        if d1 < hi:
            hours.append((d1, hi))
    return hours, days


def _merge(ranges: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(ranges):
        if out and out[-1][1] >= lo:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _sum_sql(kind: Kind, column: str, postgres: bool) -> str:
    """A rollup column added up over rows: ``MAX`` for ``Kind.maxima``, else ``SUM`` — on PostgreSQL an
    integer column's ``SUM`` (a ``numeric``, loaded in Python one value at a time) cast back to
    BIGINT (loaded in C; the same ints)."""
    if column in kind.maxima:
        return f"MAX(r.{column})"
    if postgres and column != "cost_usd" and column not in kind.reals:
        return f"CAST(SUM(r.{column}) AS BIGINT)"
    return f"SUM(r.{column})"


def _key_sql(name: str) -> str:
    return "r.hour / 24" if name == "day" else f"r.{name}"


def read(conn: Any, kind: Kind, p: Plan, *, keys: Sequence[str] = (), filters: Mapping[str, Any] | None = None,
         measures: bool = True, counts: bool = True, merge: bool = True) -> dict[tuple[Any, ...], Group]:
    """The window's groups by ``keys``: rollup rows of ``p.rollup_days`` (daily) and
    ``p.rollup_hours`` (hourly) plus raw rows of ``p.raw_ranges``, added. Keys:
    ``kind.key_names`` and ``"day"``. ``counts=False`` (with ``measures``): the sketches only — the
    rollup rows' counts and histogram are not summed (one query less; raw ranges still count).
    ``merge=False``: the rollup rows' sketches are left parsed in ``Group.parsed`` (a caller that adds
    each group into several totals merges each total once, ``Sketch.merged_parsed``); ``sketches``
    then hold the raw ranges' only."""
    filters = dict(filters or {})
    valid = set(kind.key_names) | {"day"}
    for name in keys:
        if name not in valid:
            raise ValueError(f"rollups of {kind.name} have no key {name!r}")
    out: dict[tuple[Any, ...], Group] = {}
    k = len(keys)
    key_sql = [_key_sql(n) for n in keys]
    fsql, fparams = _filters_sql(kind, filters, raw=False)
    names, nh = kind.count_names, len(kind.hist_columns)
    blobs: dict[tuple[tuple[Any, ...], str], list[bytes]] = defaultdict(list)
    levels: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ((kind.rollup_day, p.rollup_days),
                                                                    (kind.rollup, p.rollup_hours))
    postgres = _is_postgres(conn)
    if "hour" in keys:  # the day level has no hours: read those days' hourly rows
        levels = ((kind.rollup, tuple(sorted((*p.rollup_days, *p.rollup_hours)))),)
    # the partial hours read as rollup minus raw (Plan.edge_hours): their own level, their sketches
    # kept apart (what is subtracted comes out of them)
    subtracts = bool(p.edge_hours) and kind_subtracts(kind)
    if subtracts:
        levels += ((kind.rollup, tuple(_runs(sorted(p.edge_hours)))),)
    edge_at = len(levels) - 1 if subtracts else -1
    edge_blobs: dict[tuple[tuple[Any, ...], str], list[bytes]] = defaultdict(list)
    for level, (table, runs) in enumerate(levels):
        if not runs:
            continue
        into_blobs = edge_blobs if level == edge_at else blobs
        where, params = _ranges_sql("r.hour", runs)
        where += fsql
        params += fparams
        sums = [_sum_sql(kind, c, postgres) for c in (*names, *kind.hist_columns)]
        group = f" GROUP BY {', '.join(str(i + 1) for i in range(k))}" if k else ""
        sql = f"SELECT {', '.join([*key_sql, *sums])} FROM {table} r WHERE {where}{group}"
        for row in (_fetch(conn, sql, params) if counts or not measures else ()):
            if row[k] is None:  # no rows at all (an aggregate without GROUP BY)
                continue
            g = Group(dict(zip(names, row[k:k + len(names)], strict=True)),
                      list(row[k + len(names):k + len(names) + nh]) if nh else [], maxima=kind.maxima)
            key = tuple(row[:k])
            known = out.get(key)
            if known is None:
                out[key] = g
            else:
                known.add(g)
        if measures and kind.measures:
            columns = [f"r.{kind.sketch_column(m)}" for m, _ in kind.measures]
            any_sketch = " OR ".join(f"{c} IS NOT NULL" for c in columns)
            sql = f"SELECT {', '.join([*key_sql, *columns])} FROM {table} r WHERE {where} AND ({any_sketch})"
            measure_names = [m for m, _ in kind.measures]
            for row in _fetch(conn, sql, params, binary=True):  # keys and sketches only
                key = tuple(row[:k])
                for j, m in enumerate(measure_names):
                    if row[k + j] is not None:
                        into_blobs[(key, m)].append(row[k + j])
    for (key, m), found in blobs.items():
        into = out.get(key)
        if into is None:
            into = out[key] = Group({}, maxima=kind.maxima)
        if merge:
            into.sketches[m] = Sketch.merged(found)
        else:
            into.parsed[m] = [x for x in map(Sketch.parse, found) if x is not None]
    for (key, m), found in edge_blobs.items():
        into = out.get(key)
        if into is None:
            into = out[key] = Group({}, maxima=kind.maxima)
        edge = Sketch.merged(found).unsure()
        mine = into.sketches.get(m)
        into.sketches[m] = edge if mine is None else mine.merge(edge)
    raw_ranges = p.raw_for(kind)
    if raw_ranges:
        for key, g in aggregate_raw(conn, kind, raw_ranges, filters, keys=keys, measures=measures).items():
            known = out.get(key)
            if known is None:
                out[key] = g
            else:
                known.add(g)
    if subtracts and p.edge_outside:
        for key, g in aggregate_raw(conn, kind, p.edge_outside, filters, keys=keys, measures=measures).items():
            known = out.get(key)
            if known is None:  # (not in the hour's rollup rows: read while they changed)
                known = out[key] = Group({}, maxima=kind.maxima)
            known.subtract(g, counts=counts)
            if known.empty():  # all its rows were outside the window: no group, as on the raw path
                del out[key]
    return out


#: Inside :func:`raw_cache`: {(connection, table): readable} — one report asks once per table (the
#: plan, the sessions rollup, activity, late rows each asked: a round trip each on PostgreSQL).
_PROBES: ContextVar[dict[tuple[int, str], bool] | None] = ContextVar("hermetry_rollups_probes", default=None)


def _readable(conn: Any, table: str) -> bool:
    """Can this store read ``table`` (a PostgreSQL connection is rolled back if it cannot)?"""
    probes = _PROBES.get()
    known = probes.get((id(conn), table)) if probes is not None else None
    if known is not None:
        return known
    try:
        _execute(conn, f"SELECT 1 FROM {table} LIMIT 1").fetchall()
        found = True
    except Exception:
        if _is_postgres(conn):
            try:
                conn.execute("ROLLBACK")
            except Exception:
                pass
        found = False
    if probes is not None:
        probes[(id(conn), table)] = found
    return found


def has_rollups(conn: Any) -> bool:
    """Does this store have the rollup tables (schema ≥ 7)?"""
    return _readable(conn, "rollup_dirty")


@dataclass
class Reads:
    """Groups a caller already read for one plan and one set of filters (by kind name: the keys
    and the groups), so another view of the same window (activity beside the report) regroups them
    instead of scanning the same rollup rows again (:func:`regroup`)."""

    plan: Plan
    filters: dict[str, Any]
    groups: dict[str, tuple[tuple[str, ...], dict[tuple[Any, ...], Group]]] = field(default_factory=dict)

    def get(self, kind: Kind, keys: Sequence[str], filters: Mapping[str, Any]) -> dict[tuple[Any, ...], Group] | None:
        """``read(conn, kind, self.plan, keys=keys, filters=filters, measures=False)`` from what was
        read, or None when it does not hold it (other filters, or keys it was not grouped by)."""
        found = self.groups.get(kind.name)
        if found is None or dict(filters) != self.filters or not set(keys) <= set(found[0]):
            return None
        return regroup(found[1], found[0], keys, kind)


def regroup(groups: Mapping[tuple[Any, ...], Group], from_keys: Sequence[str], to_keys: Sequence[str],
            kind: Kind) -> dict[tuple[Any, ...], Group]:
    """Groups by ``from_keys`` added up by ``to_keys`` (a subset of them; counts only)."""
    at = [list(from_keys).index(k) for k in to_keys]
    out: dict[tuple[Any, ...], Group] = {}
    maxima = kind.maxima
    for key, g in groups.items():
        new = tuple([key[i] for i in at])
        known = out.get(new)
        if known is None:  # a copy: the groups read stay as they are
            out[new] = Group(dict(g.counts), list(g.hist), maxima=maxima)
        else:
            known.add(Group(g.counts, g.hist, maxima=maxima))  # counts only (``add`` leaves its argument as it is)
    return out


def has_kind(conn: Any, kind: Kind) -> bool:
    """Can a read take ``kind``'s rollups: has this store its tables (a file read at an older schema
    may not: :data:`SESSIONS` came with schema 12), built (the sessions rollup of a store upgraded to
    12 is built after the upgrade: :func:`sessions_built`)?"""
    if kind in _V7_KINDS:
        return has_rollups(conn)
    return sessions_built(conn) if kind is SESSIONS else _readable(conn, kind.rollup_day)


def count_calls(conn: Any, p: Plan) -> int:
    """Model calls (rows × ``call_count``) in a planned window, counted cheaply: summed over its
    rollup hours, counted over its raw ranges (the ``started_at_ms`` index)."""
    n = 0
    for table, runs in ((API.rollup_day, p.rollup_days), (API.rollup, p.rollup_hours)):
        if runs:
            where, params = _ranges_sql("r.hour", runs)
            n += int(_execute(conn, f"SELECT COALESCE(SUM(r.calls), 0) FROM {table} r WHERE {where}", params).fetchone()[0])
    raw = (*p.raw_ranges, *p.edge_inside)  # the partial hours' part: counted as raw
    if raw:
        n += _count_rows(conn, raw)
    return n


#: How long a reader's refresh may rebuild before it reads (what is left dirty is read raw).
REFRESH_BUDGET_S = 2.0


def refresh(db: Any, *, budget_s: float = REFRESH_BUDGET_S, now_ms: float | None = None,
            lent: bool = False) -> RebuildStats | None:
    """Rebuild the dirty closed hours of the store at ``db`` (a path or a ``postgresql://`` URL)
    before a report reads it, when it can be written; None when nothing was done (nothing dirty,
    a read-only or locked file, a connection the caller owns, no rights). Reads are right without
    it — they take dirty hours from raw rows — only slower. ``lent``: ``db`` is a writable
    PostgreSQL connection the caller lends for the rebuild (it stays open: the report then reads
    through it, ``stores.postgres.open_reader(url, refresh=True)``)."""
    import sqlite3
    from pathlib import Path

    now = time.time() * 1000 if now_ms is None else now_ms
    conn: Any = None
    try:
        if lent and _is_postgres(db):
            conn = db
        elif isinstance(db, str) and db.lower().startswith(("postgresql://", "postgres://")):
            from hermetry.stores.postgres import connect as pg_connect

            conn = pg_connect(db)
        elif isinstance(db, (str, Path)):
            from hermetry.stores.sqlite import SCHEMA_VERSION, connect

            path = Path(db)
            if not path.is_file() or not path.stat().st_size or not os_access_rw(path):
                return None
            # look first without writing anything (an empty or foreign file stays untouched)
            peek = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=0.25)
            try:
                if peek.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    return None  # an older (or newer) file: the reader's own upgrade comes first
                if peek.execute("SELECT 1 FROM rollup_dirty WHERE hour < ? LIMIT 1",
                                (int(now // HOUR_MS),)).fetchone() is None and not _pending_from(peek)[0]:
                    return None
            finally:
                peek.close()
            conn = connect(path, create=False)
        else:
            return None  # an open connection: the caller's, not ours to write through
        if not has_rollups(conn):
            return None
        row = _execute(conn, "SELECT 1 FROM rollup_dirty WHERE hour < ? LIMIT 1", (int(now // HOUR_MS),)).fetchone()
        built = build_pending(conn, budget_s / 2 if row is not None else budget_s)
        if row is None:
            return None if built is None else RebuildStats(sessions_build=built)
        stats = rebuild(conn, now_ms=now, budget_s=max(0.0, budget_s - (built.seconds if built else 0.0)))
        stats.sessions_build = built
        return stats
    except (sqlite3.Error, OSError):
        return None
    except Exception as exc:  # e.g. PostgreSQL unreachable or read-only: the read says it, not this
        if type(exc).__module__.startswith(("psycopg", "hermetry")):
            return None
        raise
    finally:
        if conn is not None and conn is not db:
            try:
                conn.close()
            except Exception:
                pass


def build_pending(conn: Any, budget_s: float | None = None) -> SessionsBuild | None:
    """The sessions rollup's build (:func:`build_sessions`) for up to ``budget_s`` (None: to the end),
    when it is pending; None when not."""
    if not _readable(conn, SESSIONS.rollup_day) or not _pending_from(conn)[0]:
        return None
    return build_sessions(conn, budget_s=budget_s)


def os_access_rw(path: Any) -> bool:
    import os

    return os.access(path, os.R_OK | os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)


# ---------------------------------------------------------------------------------------------
# Pruning raw rows (the rollups keep the history)
# ---------------------------------------------------------------------------------------------

#: The raw tables a prune deletes from (sessions stay: see ``prune``), children first.
PRUNED_TABLES = ("tool_calls", "api_calls", "turns")
_PRIMARY_KEY = {"turns": "turn_id", "api_calls": "api_call_id", "tool_calls": "tool_call_id"}

#: How long one of prune's delete transactions aims to hold the write lock (a live writer waits
#: for it: SQLite's busy timeout is 250 ms). Each transaction deletes a batch of rows of one table,
#: sized from the last one's time, within :data:`PRUNE_BATCH_ROWS`; after each the prune leaves the
#: lock free for as long as it held it (at least :data:`PRUNE_PAUSE_S`): back-to-back transactions
#: would starve a writer whose busy handler polls for the lock (measured: 20 of 450 probe writes
#: refused with 50 ms transactions and no pause).
PRUNE_TRANSACTION_S = 0.020
PRUNE_PAUSE_S = 0.005
PRUNE_BATCH_ROWS = (100, 20_000)

#: ``rollup_meta`` keys: rows written for pruned time that a prune deleted (never in any report).
_LATE_DELETED = "late_rows_deleted:"


def late_rows(conn: Any, since_ms: float | None = None, until_ms: float | None = None) -> dict[str, int]:
    """Raw rows stored for pruned time — a late import, a host's spool forwarded after the
    boundary passed, a reconcile — in ``[since_ms, until_ms)`` (None: unbounded): they are in no
    report (the rollups of pruned hours are never rebuilt: the rows they hold are gone, and a
    late row may be a retry of one they already count), and the next prune deletes them. All
    zeros when never pruned. (Every raw row before the boundary is such a row: the prune deleted
    the others.)"""
    boundary = pruned_before_ms(conn) if has_rollups(conn) else None
    if boundary is None:
        return dict.fromkeys(reversed(PRUNED_TABLES), 0)
    hi = boundary if until_ms is None else min(boundary, until_ms)
    lo = -math.inf if since_ms is None else since_ms
    if hi <= lo:
        return dict.fromkeys(reversed(PRUNED_TABLES), 0)
    where = "started_at_ms < ?" + ("" if since_ms is None else " AND started_at_ms >= ?")
    params = [hi] + ([] if since_ms is None else [lo])
    return {t: int(_execute(conn, f"SELECT COUNT(*) FROM {t} WHERE {where}", params).fetchone()[0])
            for t in reversed(PRUNED_TABLES)}


def late_rows_deleted(conn: Any) -> dict[str, int]:
    """Rows written for pruned time that later prunes deleted, by table (never counted: see
    :func:`late_rows`)."""
    out = dict.fromkeys(reversed(PRUNED_TABLES), 0)
    if not has_rollups(conn):
        return out
    for key, value in _execute(conn, "SELECT key, value FROM rollup_meta WHERE key LIKE ?",
                               (_LATE_DELETED + "%",)).fetchall():
        table = key[len(_LATE_DELETED):]
        if table in out:
            out[table] = int(value or 0)
    return out


#: How long a prune's transaction waits for the write lock on SQLite (its writers are live
#: recorders: the prune waits for them, not they for it). Writers keep their own 250 ms.
PRUNE_LOCK_WAIT_MS = 60_000
#: SQLite's page cache of a prune's connection (KiB; SQLite's default is 2,000)
PRUNE_CACHE_KIB = 65_536


def prune(conn: Any, older_than_ms: float, *, now_ms: float | None = None, dry_run: bool = False,
          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Delete raw turns, model calls and tool calls that started before ``now - older_than_ms``
    (snapped down to a whole hour), after rebuilding the rollups of those hours; record the
    boundary (``pruned_before_ms``): reports over earlier time read the rollups only.

    Sessions rows stay: one per conversation (small beside its calls), they hold the outcomes,
    lineage and dimensions that session reports and the rollups' session dimensions need.
    Idempotent: a second run with the same age deletes what arrived since, nothing else.
    ``dry_run`` counts what would go and changes nothing. ``conn`` must be a writer.

    Writers never wait long: the rows go in short transactions (a batch of one table each, sized
    to :data:`PRUNE_TRANSACTION_S`). Rows that arrived for time already pruned (:func:`late_rows`)
    are deleted too and tallied (:func:`late_rows_deleted`). On SQLite each batch's share of the
    Prometheus series is kept in the file first (``analytics.metrics.PrunedSeries``, same
    transaction), so ``hermetry metrics`` totals stay what they were.

    ``progress(done, total)`` is called after each batch (rows deleted so far, of those there were
    to delete when it began)."""
    if _is_postgres(conn):
        return _prune(conn, older_than_ms, now_ms, dry_run, progress)
    waited = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    checkpoints = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {PRUNE_LOCK_WAIT_MS}")  # a busy writer must not fail the prune
    # the indexes' pages a batch touches stay in memory for the next batches (under the lock,
    # a page read again from the OS cost a batch ~2x: the raw rows' own order is not the index's)
    conn.execute(f"PRAGMA cache_size = {-PRUNE_CACHE_KIB}")
    # its WAL is copied back to the file between batches (see _delete_batches), not at a commit
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    try:
        return _prune(conn, older_than_ms, now_ms, dry_run, progress)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(waited)}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoints)}")
        conn.execute(f"PRAGMA cache_size = {int(cache)}")


def _prune(conn: Any, older_than_ms: float, now_ms: float | None, dry_run: bool,
           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    now = time.time() * 1000 if now_ms is None else now_ms
    boundary_hour = int((now - older_than_ms) // HOUR_MS)
    boundary = float(boundary_hour * HOUR_MS)
    before = pruned_before_ms(conn)
    counts = {table: int(_execute(conn, f"SELECT COUNT(*) FROM {table} WHERE started_at_ms < ?",
                                  (max(boundary, before or boundary),)).fetchone()[0]) for table in PRUNED_TABLES}
    out: dict[str, Any] = {"schema": "hermetry.prune.v1", "pruned_before_ms": boundary, "dry_run": dry_run,
                           "previous_pruned_before_ms": before, "rows": counts, "rollup_hours_rebuilt": 0,
                           "sessions_kept": True, "late_rows": late_rows(conn), "transactions": 0,
                           "longest_transaction_s": 0.0}
    if dry_run:
        return out
    if before is not None and before > boundary:
        boundary, boundary_hour = before, int(before // HOUR_MS)  # never move the boundary back
        out["pruned_before_ms"] = boundary
    rebuilt = attempts = 0
    while True:  # rebuild, then set the boundary in a transaction that sees nothing dirty below it
        floor = _floor_hour(conn)
        if _execute(conn, "SELECT 1 FROM rollup_dirty WHERE hour < ? AND hour >= ? LIMIT 1",
                    (boundary_hour, floor if floor is not None else -(2 ** 62))).fetchone():
            rebuilt += _retried(conn, lambda: rebuild(conn, now_ms=now, before_hour=boundary_hour,
                                                      include_open=True)).hours
        ok = False
        conn.execute(dialect_of(conn).begin())
        try:
            if _is_postgres(conn):
                # the marks only: a writer marks its rows' hours first in the transaction that
                # writes them, so it waits here (or committed before). A lock timeout or deadlock
                # ends this transaction (``finally``) and the loop tries again
                try:
                    conn.execute("LOCK TABLE rollup_dirty IN SHARE ROW EXCLUSIVE MODE")
                except Exception as exc:
                    attempts += 1
                    if attempts >= 5 or type(exc).__name__ not in ("DeadlockDetected", "LockNotAvailable"):
                        raise
                    time.sleep(0.1 * attempts)
                    continue
            if _execute(conn, "SELECT 1 FROM rollup_dirty WHERE hour < ? AND hour >= ? LIMIT 1",
                        (boundary_hour, _floor_hour(conn) or -(2 ** 62))).fetchone():
                ok = True
                continue  # a write arrived meanwhile: rebuild it too
            _execute(conn, "INSERT INTO rollup_meta (key, value) VALUES ('pruned_before_ms', ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (boundary,))
            ok = True
            break
        finally:
            _end(conn, ok)
    out["rollup_hours_rebuilt"] = rebuilt
    keep: Any = None
    if not _is_postgres(conn):  # the Prometheus view reads SQLite files only
        from hermetry.analytics.metrics import PrunedSeries

        keep = PrunedSeries()
    deleted = dict.fromkeys(PRUNED_TABLES, 0)
    done, todo = 0, sum(counts.values())

    def step(rows: int) -> None:
        nonlocal done
        done += rows
        if progress is not None:
            progress(done, max(todo, done))
    # rows before the previous boundary arrived after it was set: never counted (tallied)
    phases = ([(-math.inf, before, True)] if before is not None else []) + [(before or -math.inf, boundary, False)]
    for lo, hi, late in phases:
        if hi <= lo:
            continue
        for table in PRUNED_TABLES:
            deleted[table] += _delete_batches(conn, table, lo, hi, late, keep, out, step)
    out["rows"] = deleted
    out["longest_transaction_s"] = round(out["longest_transaction_s"], 4)
    return out


def _retried(conn: Any, work: Any, attempts: int = 5) -> Any:
    """``work()``, again after a PostgreSQL deadlock or lock timeout (a rebuild's table locks
    against a writer's), a few times, its transaction rolled back first."""
    for attempt in range(attempts):
        try:
            return work()
        except Exception as exc:
            if attempt == attempts - 1 or type(exc).__name__ not in ("DeadlockDetected", "LockNotAvailable"):
                raise
            try:
                conn.execute("ROLLBACK")
            except Exception:
                pass  # nothing was open
            time.sleep(0.1 * (attempt + 1))


def _delete_batches(conn: Any, table: str, lo: float, hi: float, late: bool, keep: Any, out: dict[str, Any],
                    progress: Any = None) -> int:
    """Delete ``table``'s rows started in ``[lo, hi)``, a batch per transaction (see ``prune``):
    the batch and its share of the served series are found outside the write lock — while the
    writers have their turn after the last batch — and the lock is held only to keep that share
    and delete exactly those rows.

    SQLite: the batches walk the table in rowid order (a batch's rows share pages: a third of the
    time under the lock of batches taken in time order, whose rows an import or a bulk write left
    scattered over the table), from the first to the last rowid there was to delete when it began:
    rows written for that time meanwhile are late rows (:func:`late_rows`), for the next prune."""
    sqlite = not _is_postgres(conn)
    where = "started_at_ms < ?" + (" AND started_at_ms >= ?" if lo > -math.inf else "")
    params: list[Any] = [hi] + ([lo] if lo > -math.inf else [])
    if sqlite:
        first, last = _execute(conn, f"SELECT MIN(rowid), MAX(rowid) FROM {table} WHERE {where}", params).fetchone()
        if first is None:
            return 0
        key, after = "rowid", int(first) - 1
        # the unary + keeps SQLite on the rowid range (not the started_at_ms index)
        pick = (f"SELECT rowid FROM {table} WHERE rowid > ? AND rowid <= {int(last)} AND +{where} "
                "ORDER BY rowid LIMIT ?")
    else:
        key, after = _PRIMARY_KEY[table], 0
        pick = f"SELECT {key} FROM {table} WHERE {where} LIMIT ?"
    lo_n, hi_n = PRUNE_BATCH_ROWS
    n, total = max(lo_n, min(hi_n, 1_000)), 0
    pause_until = 0.0
    while True:
        ids = [r[0] for r in _execute(conn, pick, ((after,) if sqlite else ()) + (*params, n)).fetchall()]
        if not ids:
            return total
        generation = keep.generation(conn) if keep is not None else None
        measured = keep.measure(conn, table, ids, key) if keep is not None else None
        time.sleep(max(0.0, pause_until - time.perf_counter()))  # what is left of the writers' turn
        marks = ", ".join("?" for _ in ids)
        mine = f"{key} IN ({marks}) AND {where}"  # still there, still in the range
        ok = False
        # SQLite: the write lock. PostgreSQL: row locks of these rows only — no table lock (as a
        # rebuild takes): nobody writes them but a late row's writer, and a writer holding one
        # table while waiting for another would deadlock with a LOCK TABLE of all of them
        conn.execute(dialect_of(conn).begin())
        t0 = time.perf_counter()  # the lock is held from here (waiting for it is not holding it)
        try:
            if keep is not None:
                if keep.generation(conn) != generation:  # rows rewritten meanwhile: measure them as they are now
                    measured = keep.measure(conn, table, ids, key)
                keep.keep(conn, measured)
            if table == "api_calls":
                _execute(conn, f"DELETE FROM cost_history WHERE api_call_id IN "
                               f"(SELECT api_call_id FROM api_calls WHERE {mine})", [*ids, *params])
            cur = _execute(conn, f"DELETE FROM {table} WHERE {mine}", [*ids, *params])
            gone = int(cur.rowcount) if cur.rowcount is not None and cur.rowcount >= 0 else len(ids)
            if gone != len(ids):  # another prune took some of them: measured wrong, redo the batch
                raise _Retry
            total += gone
            if late:
                _execute(conn, "INSERT INTO rollup_meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                               "DO UPDATE SET value = rollup_meta.value + excluded.value", (_LATE_DELETED + table, gone))
            ok = True
        except _Retry:
            pass
        finally:
            _end(conn, ok)
            if not ok and keep is not None:
                keep.forget()  # what it kept in memory was rolled back
        took = time.perf_counter() - t0
        out["transactions"] += 1
        out["longest_transaction_s"] = max(out["longest_transaction_s"], took)
        if ok:
            if sqlite:
                after = ids[-1]
            if progress is not None:
                progress(gone)
            if len(ids) < n:
                return total
        n = max(lo_n, min(hi_n, 2 * n, int(n * PRUNE_TRANSACTION_S / max(took, 1e-4))))
        # the writers' turn (see PRUNE_PAUSE_S): the next batch is found and measured meanwhile,
        # and on SQLite the WAL copied back into the file (a checkpoint at the commit — SQLite's
        # default — would count into the time the batch took; it does not block a writer)
        pause_until = time.perf_counter() + max(PRUNE_PAUSE_S, took)
        if sqlite:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


class _Retry(Exception):
    """A prune batch to do again (its rows changed between measuring and deleting)."""
