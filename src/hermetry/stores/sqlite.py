"""The embedded store: canonical events into one local SQLite file.

Written only by the recorder's background thread (never on Hermes' hot path). Several
processes — a gateway, a CLI, cron runs — may write the same file at once: WAL mode lets
readers and one writer proceed together, writers wait for each other through
``busy_timeout``, and a batch that still cannot get the lock is kept by the recorder and
retried, never lost.

Rows are merged by their natural ids (session, turn, API attempt, tool call), so the same
fact arriving twice — from a second process, or from a backfill of Hermes' ``state.db`` — is
stored once. Where a live capture and a backfill disagree, the live value wins.

The statements are the PostgreSQL store's too (stores/postgres.py runs :func:`write_events` on
its connection): portable SQL, and where the engines differ (scalar min/max, string position) a
method of the connection's dialect (:mod:`hermetry.stores.dialect`), built once per dialect.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hermetry.model.events import (
    ApiCall,
    CronRunFinished,
    Event,
    SessionEnded,
    SessionReopened,
    SessionStarted,
    SubagentLinked,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.model.kinds import API_ERROR
from hermetry.model.outcomes import (
    FINALIZE_PREFIX,
    ONE_RUN_SESSION_TYPES,
    REASON_LAST_CALL_FAILED,
    REASON_NO_TURN_END,
    RECONCILED_PREFIX,
    UNENDED_RUN_SESSION_TYPES,
    TurnOutcome,
    session_outcome,
)
from hermetry.model.units import HOUR_MS
from hermetry.recorder.sink import SinkDisabled, SinkUnavailable
from hermetry.stores.dialect import SQLITE, Dialect, dialect_of
from hermetry.stores.rollups import mark_hours
from hermetry.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from hermetry.stores.sqlite_util import is_corrupt, transaction
from hermetry.stores.sqlite_util import split_statements as _split_sql

#: How long one write waits for another process's lock. Short on purpose: the recorder keeps
#: the batch and retries, so waiting longer inside SQLite would only delay a process's exit.
BUSY_TIMEOUT_MS = 250

log = logging.getLogger("hermetry")


class _Hinted(Exception):
    """An error with a one-line hint for the operator: the class's, or the one given."""

    hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class StoreUnavailable(_Hinted, SinkUnavailable, sqlite3.OperationalError):
    """The store cannot take this batch now (locked, disk full, read-only); try again later.
    (Also an ``sqlite3`` error, for readers that catch those.)"""

    hint = "run `hermetry doctor` to see why"


class StoreMissing(StoreUnavailable):
    """No telemetry file at the path (a reading command, or a writer told not to create one)."""

    hint = "nothing recorded yet: run `hermes plugins enable hermetry --no-allow-tool-override`, or `hermetry import`"

    def __init__(self, path: Path) -> None:
        super().__init__(f"no telemetry file at {path}")
        self.path = path


class StoreCorrupt(_Hinted, SinkDisabled, sqlite3.DatabaseError):
    """The file is not a usable hermetry database; nothing will be written to it."""

    hint = "move the file aside; hermetry starts a new one at the same path"


class NotAStore(StoreCorrupt):
    """The path is something else: a folder, Hermes' own state.db, another SQLite database."""


class StoreTooNew(StoreCorrupt):
    """The file was written by a newer hermetry (a higher schema version): never written to."""

    hint = "upgrade hermetry: pip install -U hermetry"


#: Store errors, each with a ``hint`` (what to do), for the one-line messages of the CLI.
StoreError = (StoreUnavailable, StoreCorrupt)

#: Below this much free space a store is reported as full (``inspect_store``).
MIN_FREE_BYTES = 64 * 1024


def describe_sqlite_error(exc: BaseException) -> str:
    """What an SQLite/OS error means for the operator, in a few words."""
    text = str(exc)
    low = text.lower()
    errno = getattr(exc, "errno", None)
    if "full" in low or errno == 28:
        return "the disk is full"
    if "readonly" in low or "read-only" in low or errno == 30:
        return "the file or its folder is read-only"
    if "locked" in low or "busy" in low:
        return "the file is locked by another process"
    if errno == 13 or "permission" in low:
        return "permission denied"
    if "is a directory" in low or errno == 21:
        return "the path is a directory"
    if "not a directory" in low or errno == 20:
        return "a part of the path is a file, not a folder"
    if "unable to open" in low:
        return "the file cannot be opened (a missing folder, or no permission)"
    return text


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 (and its folder 0700) before SQLite opens it.

    SQLite gives its -wal and -shm files the database file's permissions, so they are private too.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)  # the process umask could only have narrowed it; be explicit


def _not_a_file(p: Path) -> NotAStore:
    return NotAStore(f"{p} is a directory, not a telemetry file",
                     hint=f"point --db or HERMETRY_DB at a file, e.g. {p / 'telemetry.db'}")


def connect(path: str | os.PathLike[str], *, readonly: bool = False, create: bool = True) -> sqlite3.Connection:
    """Open the store. Writers get WAL and a busy timeout; readers open read-only.

    A reader gets a connection it can query at the current schema, or one of the store errors
    (``StoreMissing``, ``NotAStore``, ``StoreCorrupt``, ``StoreUnavailable``) with a ``hint``:
    an empty file reads as an empty history, an older schema is upgraded in place when the file
    can be written (else through a copy in memory, the file untouched), a newer one is read with one warning, and a file on read-only media is
    opened immutable. A writer with ``create=False`` refuses a path that does not exist.
    """
    p = Path(path)
    if p.is_dir():
        raise _not_a_file(p)
    if readonly:
        return _connect_readonly(p, upgrade_file=True)
    if not create and not p.exists():
        raise StoreMissing(p)
    try:
        _create_private_file(p)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create {p}: {describe_sqlite_error(exc)}") from exc
    conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        if is_corrupt(exc):
            raise StoreCorrupt(f"{p} is not a hermetry telemetry file ({exc})") from exc
        raise
    if tables and "api_calls" not in tables:
        conn.close()
        raise _foreign(p, tables)
    return conn


def _foreign(p: Path, tables: set[str]) -> NotAStore:
    if "messages" in tables and "sessions" in tables:
        return NotAStore(f"{p} is Hermes' own state.db, not a hermetry telemetry file",
                         hint="hermetry never writes it; to bring its history in, run `hermetry import`")
    return NotAStore(f"{p} is an SQLite database but not a hermetry telemetry file",
                     hint="point --db or HERMETRY_DB at the telemetry file (`hermetry path` shows the default)")


def _read_only_media(p: Path) -> bool:
    try:
        st = os.statvfs(p.parent)
        if st.f_flag & os.ST_RDONLY:
            return True
    except (OSError, AttributeError):
        pass
    return not os.access(p.parent, os.W_OK)


def _peek_tables(uri: str) -> set[str] | None:
    """The file's tables, read without locking or creating anything beside it (no -shm/-wal
    next to a file that is not ours); None when this quick look cannot tell."""
    try:
        conn = sqlite3.connect(uri + "?immutable=1", uri=True)
        try:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return None  # a torn read while another process checkpoints, or not SQLite: look properly


def _upgrade_in_place(p: Path) -> bool:
    """Bring an older, writable file to the current schema, as the recorder does at its next
    write (``migrate``: one transaction, safe against other processes); False when it cannot
    be written now (read-only, locked, full disk), and the caller reads an upgraded copy."""
    if _read_only_media(p) or not os.access(p, os.R_OK | os.W_OK):
        return False
    try:
        conn = connect(p)
    except (StoreUnavailable, StoreCorrupt, sqlite3.Error):
        return False
    try:
        migrate(conn)
        return True
    except (StoreUnavailable, StoreCorrupt, sqlite3.Error):
        return False
    finally:
        conn.close()


def _connect_readonly(p: Path, *, warn: bool = True, upgrade_file: bool = False) -> sqlite3.Connection:
    if not p.exists():
        raise StoreMissing(p)
    uri = p.resolve().as_uri()
    peek = _peek_tables(uri)
    if peek and "api_calls" not in peek:
        raise _foreign(p, peek)
    modes = ("?mode=ro", "?immutable=1")
    for i, mode in enumerate(modes):
        conn = sqlite3.connect(uri + mode, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            break
        except sqlite3.DatabaseError as exc:
            conn.close()
            text = str(exc)
            if is_corrupt(exc):
                raise StoreCorrupt(f"{p} is not a hermetry telemetry file ({text})",
                                   hint="check the path; if it is the telemetry file, it is damaged: move it aside") from exc
            # On read-only media SQLite cannot create the -shm file a WAL database needs; no
            # other process can be writing there either, so the file is read as immutable.
            if i + 1 < len(modes) and _read_only_media(p):
                continue
            raise StoreUnavailable(f"cannot read {p}: {describe_sqlite_error(exc)}") from exc
    if not tables and version == 0:
        conn.close()
        return _in_memory_store()  # an empty file: an empty history
    if "api_calls" not in tables:
        conn.close()
        raise _foreign(p, tables)
    if version > SCHEMA_VERSION and warn:
        from hermetry.recorder.notice import warn_once

        warn_once(f"future-schema-read:{p}",
                  f"warning: {p} has schema version {version}, newer than this hermetry knows "
                  f"({SCHEMA_VERSION}); reading it anyway, newer fields are not shown "
                  f"(upgrade hermetry: pip install -U hermetry)")
    elif version < SCHEMA_VERSION:
        # An older file: a writable one is upgraded in place (what the recorder does at the next
        # Hermes run; a report then reads the file, not a copy of it in memory); one that cannot
        # be written (read-only media, no permission, locked) is read through an upgraded copy.
        if upgrade_file and _upgrade_in_place(p):
            conn.close()
            return _connect_readonly(p, warn=warn)
        mem = _in_memory_store(migrated=False)
        conn.backup(mem)
        conn.close()
        migrate(mem)
        return mem
    conn.row_factory = sqlite3.Row
    return conn


def _in_memory_store(*, migrated: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    if migrated:
        migrate(conn)
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to the current schema version; safe when several processes race."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return version
    if version > SCHEMA_VERSION:
        raise StoreTooNew(
            f"telemetry file has schema version {version}, newer than this hermetry "
            f"({SCHEMA_VERSION}); nothing is written to it"
        )
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
        while version < SCHEMA_VERSION:
            for statement in _split_sql(MIGRATIONS[version]):
                conn.execute(statement)
            version += 1
            conn.execute(f"PRAGMA user_version={version}")
    return version




# ---------------------------------------------------------------------------------------------
# Writing events
# ---------------------------------------------------------------------------------------------

def _merge(column: str, table: str) -> str:
    """Live values override backfilled ones; otherwise the first known value is kept."""
    return (
        f"{column} = CASE WHEN excluded.origin = 'live' AND {table}.origin <> 'live' "
        f"THEN COALESCE(excluded.{column}, {table}.{column}) "
        f"ELSE COALESCE({table}.{column}, excluded.{column}) END"
    )


def _latest(column: str, table: str) -> str:
    """Later facts override earlier ones (an end replaces nothing known before)."""
    return f"{column} = COALESCE(excluded.{column}, {table}.{column})"


def _upsert(table: str, key: str, columns: Sequence[str], merge: Sequence[str], latest: Sequence[str] = ()) -> str:
    cols = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    sets = [_merge(c, table) for c in merge] + [_latest(c, table) for c in latest]
    sets.append(
        f"origin = CASE WHEN excluded.origin = 'live' OR {table}.origin = 'live' THEN 'live' ELSE {table}.origin END"
    )
    return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT({key}) DO UPDATE SET {', '.join(sets)}"


_SESSION_COLS = (
    "session_id", "parent_session_id", "parent_turn_id", "lineage", "source", "session_type",
    "profile", "model", "provider", "runtime_version", "host", "started_at_ms", "origin",
    "updated_at_ms",
)


def _sql_session_start(d: Dialect) -> str:
    return _upsert(
        "sessions", "session_id", _SESSION_COLS,
        merge=("parent_session_id", "parent_turn_id", "lineage", "source", "session_type", "profile",
               "model", "provider", "runtime_version", "host"),
        latest=("updated_at_ms",),
    ).replace(
        # the earliest start wins whoever reported it (both arguments are NULL only when both are)
        "origin = CASE",
        "started_at_ms = " + d.least("COALESCE(sessions.started_at_ms, excluded.started_at_ms)",
                                     "COALESCE(excluded.started_at_ms, sessions.started_at_ms)")
        + ", origin = CASE",
        1,
    )


def _sql_session_ensure(d: Dialect) -> str:
    # (excluded.started_at_ms is never NULL: the ensured session's first event has a time)
    return (
        "INSERT INTO sessions (session_id, started_at_ms, origin, updated_at_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(session_id) DO UPDATE SET started_at_ms = "
        + d.least("COALESCE(sessions.started_at_ms, excluded.started_at_ms)", "excluded.started_at_ms")
        # only when it moves the start (an update that changes nothing still runs the sessions triggers)
        + " WHERE sessions.started_at_ms IS NULL OR excluded.started_at_ms < sessions.started_at_ms"
    )

# A session's model and provider from its calls where it has none yet; only where it fills
# something (an UPDATE that changes nothing still runs the sessions triggers). By what is known:
_SQL_SESSION_ENSURE_MODEL = {
    (True, True): "UPDATE sessions SET model = COALESCE(model, ?), provider = COALESCE(provider, ?) "
                  "WHERE session_id = ? AND (model IS NULL OR provider IS NULL)",
    (True, False): "UPDATE sessions SET model = ? WHERE session_id = ? AND model IS NULL",
    (False, True): "UPDATE sessions SET provider = ? WHERE session_id = ? AND provider IS NULL",
}

# The first end reason wins (as in Hermes' state.db), except that a live capture replaces a
# backfilled end, and an end may name the earlier reasons it supersedes.
def _take_end(d: Dialect) -> str:
    """The condition under which an end replaces the stored one (``?7``: the reasons it supersedes)."""
    return (
        "(sessions.ended_at_ms IS NULL AND sessions.end_reason IS NULL)"
        " OR (excluded.origin = 'live' AND sessions.origin <> 'live')"
        " OR " + d.strpos("',' || ?7 || ','", "',' || sessions.end_reason || ','") + " > 0"
        # an end only a hook reported, or one the reconciler inferred, gives way to Hermes' own
        f" OR (sessions.end_reason LIKE '{FINALIZE_PREFIX}%' AND excluded.end_reason NOT LIKE '{FINALIZE_PREFIX}%')"
        f" OR (sessions.end_reason LIKE '{RECONCILED_PREFIX}%' AND excluded.origin = 'live')"
    )


def _sql_session_end(d: Dialect) -> str:
    return (
        "INSERT INTO sessions (session_id, ended_at_ms, end_reason, outcome, origin, updated_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
        + ", ".join(
            f"{c} = CASE WHEN {_take_end(d)} THEN excluded.{c} ELSE sessions.{c} END"
            for c in ("ended_at_ms", "end_reason", "outcome")
        )
        + ", updated_at_ms = excluded.updated_at_ms"
    )


class _DialectSQL(NamedTuple):
    """The write path's statements that differ between dialects."""

    session_start: str
    session_ensure: str
    session_end: str


_by_dialect: dict[str, _DialectSQL] = {}


def _dialect_sql(d: Dialect) -> _DialectSQL:
    """The statements for dialect ``d``, built once."""
    done = _by_dialect.get(d.name)
    if done is None:
        done = _by_dialect[d.name] = _DialectSQL(_sql_session_start(d), _sql_session_ensure(d), _sql_session_end(d))
    return done

_SQL_SESSION_UNRECONCILE = (
    "UPDATE sessions SET ended_at_ms = NULL, end_reason = NULL, outcome = NULL, updated_at_ms = ? "
    f"WHERE session_id = ? AND end_reason LIKE '{RECONCILED_PREFIX}%'"
)
_SQL_SESSION_REOPEN = (
    "UPDATE sessions SET ended_at_ms = NULL, end_reason = NULL, outcome = NULL, updated_at_ms = ? "
    "WHERE session_id = ?"
)

_TURN_COLS = ("turn_id", "session_id", "task_id", "started_at_ms", "queue_wait_ms", "origin")
_SQL_TURN_START = _upsert("turns", "turn_id", _TURN_COLS, merge=("session_id", "task_id", "started_at_ms", "queue_wait_ms"))
# A turn's reported end replaces an end hermetry inferred (outcome_reason 'reconciled:…'), which
# is only a stand-in for a turn whose end had not been reported (yet) when its session ended.
_TAKE_TURN_END = (
    "turns.outcome IS NULL OR (excluded.origin = 'live' AND (turns.origin <> 'live' "
    f"OR turns.outcome_reason LIKE '{RECONCILED_PREFIX}%'))"
)
_SQL_TURN_END = (
    "INSERT INTO turns (turn_id, session_id, ended_at_ms, outcome, outcome_reason, origin) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(turn_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = CASE WHEN {_TAKE_TURN_END} THEN excluded.{c} ELSE turns.{c} END"
        for c in ("ended_at_ms", "outcome", "outcome_reason")
    )
    + ", session_id = COALESCE(turns.session_id, excluded.session_id), "
    "origin = CASE WHEN excluded.origin = 'live' OR turns.origin = 'live' THEN 'live' ELSE turns.origin END"
)

_API_COLS = (
    "api_call_id", "api_request_id", "attempt", "session_id", "turn_id", "model", "provider",
    "base_url", "api_mode", "response_model", "started_at_ms", "latency_ms", "ttft_ms", "streamed",
    "status", "finish_reason", "http_status", "retry_count", "error_type", "error_message",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    "provider_cost_usd", "cost_usd", "cost_status", "cost_source", "pricing_version", "task", "call_count",
    "origin",
)
_SQL_API = _upsert("api_calls", "api_call_id", _API_COLS, merge=_API_COLS[1:-1])

_TOOL_COLS = (
    "tool_call_id", "session_id", "turn_id", "api_request_id", "tool_name", "toolset",
    "started_at_ms", "latency_ms", "status", "error_type", "error_message", "origin",
)
_SQL_TOOL = _upsert("tool_calls", "tool_call_id", _TOOL_COLS, merge=_TOOL_COLS[1:-1])
_API_STARTED, _TOOL_STARTED = _API_COLS.index("started_at_ms"), _TOOL_COLS.index("started_at_ms")

_SQL_SUBAGENT_LINK = (
    "INSERT INTO sessions (session_id, parent_session_id, parent_turn_id, lineage, source, "
    "session_type, started_at_ms, origin, updated_at_ms) VALUES (?, ?, ?, 'subagent', 'subagent', 'subagent', ?, 'live', ?) "
    "ON CONFLICT(session_id) DO UPDATE SET parent_session_id = excluded.parent_session_id, "
    "parent_turn_id = COALESCE(excluded.parent_turn_id, sessions.parent_turn_id), lineage = 'subagent', "
    "session_type = COALESCE(sessions.session_type, 'subagent')"
)

# A turn left open when its session ends, or when the next turn of the same session starts,
# is closed here by the one rule of model/outcomes.reconciled_turn: errored if its last model
# call failed (its end is that call's end), otherwise abandoned (wall time unknown).
_LAST_CALL_STATUS = (
    "(SELECT a.status FROM api_calls a WHERE a.turn_id = turns.turn_id "
    "ORDER BY a.started_at_ms DESC NULLS LAST, a.attempt DESC NULLS LAST LIMIT 1)"
)


def _close_open_turns_sql(*, ended_at: str, where: str) -> str:
    """UPDATE closing the open turns ``where`` selects (the store and the reconciler share it)."""
    return f"""
UPDATE turns SET
    outcome = CASE WHEN {_LAST_CALL_STATUS} = '{API_ERROR}'
        THEN '{TurnOutcome.ERRORED.value}' ELSE '{TurnOutcome.ABANDONED.value}' END,
    outcome_reason = CASE WHEN {_LAST_CALL_STATUS} = '{API_ERROR}'
        THEN '{REASON_LAST_CALL_FAILED}' ELSE '{REASON_NO_TURN_END}' END,
    ended_at_ms = {ended_at}
WHERE {where}
"""


_SQL_CLOSE_OPEN_TURNS = _close_open_turns_sql(
    ended_at="COALESCE((SELECT MAX(a.started_at_ms + COALESCE(a.latency_ms, 0)) FROM api_calls a "
             "WHERE a.turn_id = turns.turn_id), ?)",
    where="session_id = ? AND outcome IS NULL AND turn_id <> ?",
)
# What it closes, when they started (SQLite: looked at first, closed only if there are any — most
# of the time there are none; PostgreSQL: the UPDATE returns them, read at the end of the batch).
_SQL_OPEN_TURNS = "SELECT started_at_ms FROM turns WHERE session_id = ? AND outcome IS NULL AND turn_id <> ?"
_SQL_CLOSE_OPEN_TURNS_RETURNING = _SQL_CLOSE_OPEN_TURNS + "RETURNING started_at_ms\n"
# When turns started whose end a batch wrote without their start (an end event does not say)
_SQL_TURN_STARTS = "SELECT started_at_ms FROM turns WHERE turn_id IN ({})"

# Hermes' cron status belongs to the job's latest cron session (``cron_<job_id>_<YYYYmmdd_HHMMSS>``).
_SQL_CRON_STATUS = (
    "UPDATE sessions SET run_status = ?, updated_at_ms = ? WHERE session_id = ("
    "SELECT session_id FROM sessions WHERE source = 'cron' AND substr(session_id, 1, ?) = ? "
    "AND started_at_ms <= ? ORDER BY started_at_ms DESC NULLS LAST LIMIT 1) RETURNING session_id"
)

_SQL_SESSIONS_FOR_RULE = (
    "SELECT s.session_id, s.end_reason, s.session_type, s.run_status, s.outcome, s.origin, "
    "(SELECT t.outcome FROM turns t WHERE t.session_id = s.session_id "
    " ORDER BY t.started_at_ms DESC NULLS LAST, t.turn_id DESC LIMIT 1) "
    "FROM sessions s WHERE s.session_id IN ({})"
)


def _apply_session_rule(conn: sqlite3.Connection, session_ids: Iterable[str]) -> None:
    """Set each ended session's outcome by the one rule (model/outcomes.session_outcome).
    (The sessions are read 500 at a time: one statement, and one round trip on PostgreSQL.)"""
    ids = list(session_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = conn.execute(_SQL_SESSIONS_FOR_RULE.format(", ".join("?" * len(chunk))), chunk).fetchall()
        for sid, end_reason, session_type, run_status, current, origin, last_turn in rows:
            # (an imported one: its turns' outcomes are derived from messages, so it stays open)
            unended = end_reason is None and session_type in UNENDED_RUN_SESSION_TYPES and origin == "live"
            if (end_reason is None and not unended) or session_type not in ONE_RUN_SESSION_TYPES:
                continue  # open, or a conversation: its end reason's outcome was written with it
            outcome = session_outcome(end_reason, session_type, last_turn, run_status)
            value = None if outcome is None else outcome.value
            if value != current and (value is not None or unended):  # an unended run: open again while a turn runs
                conn.execute("UPDATE sessions SET outcome = ? WHERE session_id = ?", (value, sid))


def _session_start_row(e: SessionStarted, now: float) -> tuple[Any, ...]:
    return (
        e.session_id, e.parent_session_id, e.parent_turn_id, e.lineage, e.source, e.session_type,
        e.profile, e.model, e.provider, e.runtime_version, e.host, e.started_at_ms, e.origin, now,
    )


def _api_row(e: ApiCall) -> tuple[Any, ...]:
    return (
        e.api_call_id, e.api_request_id, e.attempt, e.session_id, e.turn_id, e.model, e.provider,
        e.base_url, e.api_mode, e.response_model, e.started_at_ms, e.latency_ms, e.ttft_ms,
        None if e.streamed is None else int(e.streamed), e.status, e.finish_reason, e.http_status,
        e.retry_count, e.error_type, e.error_message, e.input_tokens, e.output_tokens,
        e.cache_read_tokens, e.cache_write_tokens, e.reasoning_tokens, e.provider_cost_usd,
        e.cost_usd, e.cost_status, e.cost_source, e.pricing_version, e.task, e.call_count, e.origin,
    )


def _tool_row(e: ToolCall) -> tuple[Any, ...]:
    return (
        e.tool_call_id, e.session_id, e.turn_id, e.api_request_id, e.tool_name, e.toolset,
        e.started_at_ms, e.latency_ms, e.status, e.error_type, e.error_message, e.origin,
    )


def write_events(conn: sqlite3.Connection, events: Iterable[Event]) -> int:
    """Apply events in order inside the caller's transaction. Returns how many were applied.

    API and tool calls — the bulk of all events — commute with each other and with the turn
    upserts, so they are buffered and written with ``executemany`` (and each session is ensured
    once per buffer); the buffers are flushed before any statement whose result depends on them
    (closing a session's open turns reads their model calls; session upserts merge with the
    ensured row).

    Rollup hours: the hour of every row the batch inserts or changes is collected here (inserted
    rows: their ``started_at_ms``; ended turns: their start, known from the batch or looked up;
    closed open turns: theirs) and the hours are marked once, sorted (``mark_hours``). SQLite
    (one writer at a time) marks them at the end. PostgreSQL, where several hosts write at once,
    marks them at the start (:func:`_mark_ahead`), before any row is written: the store's
    triggers on ``sessions`` (stores/rollups.py), which mark session changes as the rows are
    written, then find their hours already marked by this transaction, and two writers never
    wait for each other's marks in opposite orders (no deadlock on ``rollup_dirty`` keys).

    Turn ids are unique (Hermes' and the importer's, which prefixes its own): what the batch knows
    about a session's open turns is only ever a superset of them.
    """
    now = time.time() * 1000
    n = 0
    ex = conn.execute
    dialect = dialect_of(conn)
    sql = _dialect_sql(dialect)
    # PostgreSQL pipelines the batch: what the closing UPDATEs return is read at the end
    deferred: list[Any] | None = [] if dialect.name != SQLITE.name else None
    marked: set[int] = set()
    if deferred is not None:
        events = events if isinstance(events, list | tuple) else list(events)
        marked = _mark_ahead(conn, events)
    ensure: dict[str, list[Any]] = {}  # session_id -> [earliest started_at_ms, origin, model, provider]
    api_rows: list[tuple[Any, ...]] = []
    tool_rows: list[tuple[Any, ...]] = []
    ruled: dict[str, None] = {}  # sessions whose outcome the one-run rule must look at again
    started: list[float | None] = []  # when each row written started: its rollup hour is marked dirty
    turn_started: set[str] = set()  # turns this batch started (their hour is in ``started``)
    ended: dict[str, None] = {}  # turns whose end was written without their start: looked up
    # session_id -> the turns of it that may still be open, known since this batch closed its
    # open turns (absent: not known, the close must run)
    open_turns: dict[str, set[str]] = {}
    unreconciled: set[str] = set()  # live sessions already taken back from the reconciler in this batch

    def need_session(sid: str, at_ms: float, origin: str, model: str | None = None, provider: str | None = None) -> None:
        known = ensure.get(sid)
        if known is None:
            ensure[sid] = [at_ms, origin, model, provider]
            return
        if at_ms < known[0]:
            known[0] = at_ms
        if known[2] is None:
            known[2] = model
        if known[3] is None:
            known[3] = provider

    def flush() -> None:
        if ensure:
            conn.executemany(sql.session_ensure, [(sid, v[0], v[1], now) for sid, v in ensure.items()])
            models: dict[tuple[bool, bool], list[tuple[Any, ...]]] = {}
            for sid, v in ensure.items():
                known = (v[2] is not None, v[3] is not None)
                if known[0] or known[1]:
                    models.setdefault(known, []).append((*(x for x in v[2:4] if x is not None), sid))
            for known, rows in models.items():
                conn.executemany(_SQL_SESSION_ENSURE_MODEL[known], rows)
            ensure.clear()
        if api_rows:
            conn.executemany(_SQL_API, api_rows)
            started.extend(row[_API_STARTED] for row in api_rows)
            api_rows.clear()
        if tool_rows:
            conn.executemany(_SQL_TOOL, tool_rows)
            started.extend(row[_TOOL_STARTED] for row in tool_rows)
            tool_rows.clear()

    def close_open_turns(sid: str, at_ms: float, keep: str) -> None:
        """Close the session's open turns but ``keep`` (the store's one rule, which reads their
        model calls), unless this batch knows there are none; collect their hours."""
        maybe_open = open_turns.get(sid)
        open_turns[sid] = {keep} if keep else set()
        if maybe_open is not None and maybe_open <= {keep}:
            return
        flush()
        if deferred is not None:
            deferred.append(ex(_SQL_CLOSE_OPEN_TURNS_RETURNING, (at_ms, sid, keep)))
            return
        closing = ex(_SQL_OPEN_TURNS, (sid, keep)).fetchall()  # the batch holds the write lock
        if closing:
            ex(_SQL_CLOSE_OPEN_TURNS, (at_ms, sid, keep))
            started.extend(r[0] for r in closing)

    for e in events:
        n += 1
        if isinstance(e, ApiCall):
            need_session(e.session_id, e.started_at_ms, e.origin, e.model, e.provider)
            api_rows.append(_api_row(e))
            continue
        if isinstance(e, ToolCall):
            need_session(e.session_id, e.started_at_ms, e.origin)
            tool_rows.append(_tool_row(e))
            continue
        if isinstance(e, TurnStarted):  # (no flush: a turn's row reads nothing the buffers hold)
            sid = e.session_id
            need_session(sid, e.started_at_ms, e.origin)
            if e.origin == "live" and sid not in unreconciled:
                # a session the reconciler gave up on is alive after all (once a batch: only an
                # end, below, could give it a reconciled end again)
                ex(_SQL_SESSION_UNRECONCILE, (now, sid))
                unreconciled.add(sid)
            ex(_SQL_TURN_START, (e.turn_id, sid, e.task_id, e.started_at_ms, e.queue_wait_ms, e.origin))
            started.append(e.started_at_ms)
            turn_started.add(e.turn_id)
            if e.origin == "live":
                close_open_turns(sid, e.started_at_ms, e.turn_id)
            else:
                maybe_open = open_turns.get(sid)
                if maybe_open is not None:
                    maybe_open.add(e.turn_id)
            ruled[sid] = None
            continue
        if isinstance(e, TurnEnded):
            ex(_SQL_TURN_END, (e.turn_id, e.session_id, e.ended_at_ms, e.outcome, e.outcome_reason, e.origin))
            if e.turn_id not in turn_started:
                ended[e.turn_id] = None
            maybe_open = open_turns.get(e.session_id)
            if maybe_open is not None:
                if e.outcome is None:  # (typed as always set; an end without one leaves it open)
                    maybe_open.add(e.turn_id)
                else:
                    maybe_open.discard(e.turn_id)
            ruled[e.session_id] = None
            continue
        flush()
        if isinstance(e, SessionStarted):
            ex(sql.session_start, _session_start_row(e, now))
        elif isinstance(e, SessionEnded):
            supersedes = ",".join(e.supersedes)
            ex(sql.session_end, (e.session_id, e.ended_at_ms, e.end_reason, e.outcome, e.origin, now, supersedes))
            unreconciled.discard(e.session_id)
            if e.origin == "live":
                close_open_turns(e.session_id, e.ended_at_ms, "")
            ruled[e.session_id] = None
        elif isinstance(e, CronRunFinished):
            prefix = f"cron_{e.job_id}_"
            for (sid,) in ex(_SQL_CRON_STATUS, (e.status, now, len(prefix), prefix, e.finished_at_ms)).fetchall():
                ruled[sid] = None
        elif isinstance(e, SessionReopened):
            ex(_SQL_SESSION_REOPEN, (now, e.session_id))
        elif isinstance(e, SubagentLinked):
            ex(_SQL_SUBAGENT_LINK, (e.child_session_id, e.parent_session_id, e.parent_turn_id, e.linked_at_ms, now))
        else:  # pragma: no cover - a new event type without a writer is a bug
            raise TypeError(f"no writer for {type(e).__name__}")
    flush()
    if ruled:
        _apply_session_rule(conn, ruled)
    if ended and deferred is None:  # (PostgreSQL looked them up ahead)
        ids = list(ended)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            started.extend(r[0] for r in ex(_SQL_TURN_STARTS.format(", ".join("?" * len(chunk))), chunk).fetchall())
    if deferred:
        for cursor in deferred:
            started.extend(r[0] for r in cursor.fetchall())
    if marked:  # what was not known ahead (another writer's turn of the session, opened meanwhile)
        started = [t for t in started if t is not None and t == t and int(t // HOUR_MS) not in marked]
    mark_hours(conn, started)
    return n


def _mark_ahead(conn: Any, events: Sequence[Event]) -> set[int]:
    """PostgreSQL: mark, sorted and before anything is written, every hour the batch will change:
    its rows' (from the events), the current start hour of each session it touches (the
    sessions triggers mark it when the row changes), the open turns of those sessions (a
    live turn start or session end closes them) and the turns it ends without starting them
    (one round trip for the look-ups). What is still marked later: the hours of every row of a
    session whose dimensions change (the dimensions trigger; a session's first model, or a start
    event arriving after its rows) — rare, and only then can two batches still wait on each other
    (PostgreSQL detects it; the batch is retried). Returns the hours marked."""
    times: list[float | None] = []
    sessions: dict[str, None] = {}
    ended: dict[str, None] = {}
    turns: set[str] = set()
    for e in events:
        if isinstance(e, ApiCall | ToolCall):
            times.append(e.started_at_ms)
            sessions[e.session_id] = None
        elif isinstance(e, TurnStarted):
            times.append(e.started_at_ms)
            sessions[e.session_id] = None
            turns.add(e.turn_id)
        elif isinstance(e, TurnEnded):
            sessions[e.session_id] = None
            if e.turn_id not in turns:
                ended[e.turn_id] = None
        elif isinstance(e, SessionStarted):
            times.append(e.started_at_ms)
            sessions[e.session_id] = None
        elif isinstance(e, SessionEnded | SessionReopened):
            sessions[e.session_id] = None
        elif isinstance(e, SubagentLinked):
            times.append(e.linked_at_ms)
            sessions[e.child_session_id] = None
    cursors = []
    sids, tids = list(sessions), list(ended)
    for i in range(0, len(sids), 500):
        chunk = sids[i:i + 500]
        marks = ", ".join("?" * len(chunk))
        cursors.append(conn.execute(f"SELECT started_at_ms FROM sessions WHERE session_id IN ({marks})", chunk))
        cursors.append(conn.execute(f"SELECT started_at_ms FROM turns WHERE session_id IN ({marks}) "
                                    "AND outcome IS NULL", chunk))
    for i in range(0, len(tids), 500):
        chunk = tids[i:i + 500]
        cursors.append(conn.execute(_SQL_TURN_STARTS.format(", ".join("?" * len(chunk))), chunk))
    for cursor in cursors:
        times.extend(r[0] for r in cursor.fetchall())
    hours = {int(t // HOUR_MS) for t in times if t is not None and t == t}
    mark_hours(conn, [h * HOUR_MS for h in hours])
    return hours


def _reconcile_quietly(conn: sqlite3.Connection) -> None:
    """Close what dead processes left open (see sqlite_reconcile), at most every
    ``STORE_EVERY_S`` across the store's writers; a busy file just skips it."""
    from hermetry.stores.sqlite_reconcile import STORE_EVERY_S, reconcile

    try:
        reconcile(conn, every_s=STORE_EVERY_S)
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            log.warning("hermetry: reconciling open turns failed: %s", exc)
    except sqlite3.Error as exc:
        log.warning("hermetry: reconciling open turns failed: %s", exc)


class SQLiteStore:
    """The writer side of the embedded store, used by the recorder's thread only (a Sink)."""

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = None
            try:
                conn = connect(self.path)
                migrate(conn)
                _reconcile_quietly(conn)
                adopt_drop_ledger(conn, self.path)
            except (StoreCorrupt, StoreUnavailable):
                if conn is not None:
                    conn.close()
                raise
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    conn.close()
                if is_corrupt(exc):
                    raise StoreCorrupt(f"{self.path} is not a hermetry telemetry file ({exc})") from exc
                raise StoreUnavailable(f"cannot open {self.path}: {describe_sqlite_error(exc)}") from exc
            except OSError as exc:
                if conn is not None:
                    conn.close()
                raise StoreUnavailable(f"cannot open {self.path}: {describe_sqlite_error(exc)}") from exc
            self._conn = conn
        return self._conn

    def write(self, events: Sequence[Event], run: Mapping[str, Any] | None = None) -> int:
        """Write one batch in one transaction; raise StoreUnavailable to have it retried."""
        conn = self._connection()
        try:
            with transaction(conn):
                n = write_events(conn, events)
                if run is not None:
                    _write_run(conn, run, n)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError):
            raise  # a bad event, not a store condition: retrying it later cannot succeed
        except sqlite3.DatabaseError as exc:
            if is_corrupt(exc):
                raise StoreCorrupt(f"{self.path} is not a hermetry telemetry file ({exc})") from exc
            raise StoreUnavailable(f"cannot write {self.path}: {describe_sqlite_error(exc)}") from exc
        return n

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True  # every write commits its own transaction

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


_SQL_RUN = (
    "INSERT INTO recorder_runs (run_id, host, pid, started_at_ms, last_flush_at_ms, events_written, "
    "events_dropped, hermetry_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
    "last_flush_at_ms = excluded.last_flush_at_ms, "
    "events_written = recorder_runs.events_written + excluded.events_written, "
    "events_dropped = excluded.events_dropped"
)


_SQL_ADOPT_RUN = (
    "INSERT INTO recorder_runs (run_id, host, pid, started_at_ms, last_flush_at_ms, events_written, "
    "events_dropped, hermetry_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
    # the run's own later flush knows better than an earlier fallback line
    "events_dropped = CASE WHEN recorder_runs.last_flush_at_ms IS NULL "
    "OR excluded.last_flush_at_ms >= recorder_runs.last_flush_at_ms "
    f"THEN {SQLITE.greatest('recorder_runs.events_dropped', 'excluded.events_dropped')} "
    "ELSE recorder_runs.events_dropped END, last_flush_at_ms = "
    + SQLITE.greatest("COALESCE(recorder_runs.last_flush_at_ms, 0)", "excluded.last_flush_at_ms")
)  # (the drop ledger is the embedded store's: only SQLite runs this one)


def adopt_drop_ledger(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> int:
    """Bring the drop counts other processes could not write (recorder.ledger) into
    ``recorder_runs``; returns how many runs were adopted. A busy file leaves them for later."""
    from hermetry.recorder.ledger import DropLedger

    ledger = DropLedger(path)
    if not any(p.exists() for p in ledger.paths):
        return 0
    records, claimed = ledger.take()
    if not records:
        ledger.done(claimed)
        return 0
    try:
        with transaction(conn):
            for r in records:
                conn.execute(_SQL_ADOPT_RUN, (
                    r["run_id"], r.get("host"), r.get("pid"), r.get("started_at_ms"), r.get("at_ms"),
                    int(r.get("events_written") or 0), int(r.get("events_dropped") or 0), r.get("hermetry_version")))
                _write_exporter_runs(conn, r, float(r.get("at_ms") or time.time() * 1000))
    except (sqlite3.Error, TypeError, ValueError):
        ledger.give_back(claimed)
        return 0
    ledger.done(claimed)
    return len(records)


_SQL_EXPORTER_RUN = (
    "INSERT INTO exporter_runs (run_id, exporter, events_dropped, spans_dropped, points_dropped, failed_batches, "
    "last_error, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, exporter) DO UPDATE SET "
    "events_dropped = excluded.events_dropped, spans_dropped = excluded.spans_dropped, "
    "points_dropped = excluded.points_dropped, failed_batches = excluded.failed_batches, "
    "last_error = excluded.last_error, updated_at_ms = excluded.updated_at_ms"
)


def _write_exporter_runs(conn: sqlite3.Connection, run: Mapping[str, Any], at_ms: float) -> None:
    """Each exporter's running totals for this run (recorder: ``run["exporters"]``), latest wins."""
    for x in run.get("exporters") or ():
        if not isinstance(x, Mapping) or not x.get("name"):
            continue
        error = x.get("last_error")
        conn.execute(_SQL_EXPORTER_RUN, (
            run["run_id"], str(x["name"]), int(x.get("events_dropped") or 0), int(x.get("spans_dropped") or 0),
            int(x.get("points_dropped") or 0), int(x.get("failed_batches") or 0),
            None if error is None else str(error)[:200], at_ms))


def _write_run(conn: sqlite3.Connection, run: Mapping[str, Any], written: int) -> None:
    now = time.time() * 1000
    conn.execute(
        _SQL_RUN,
        (run["run_id"], run.get("host"), run.get("pid"), run.get("started_at_ms"),
         now, written, run.get("events_dropped", 0), run.get("hermetry_version")),
    )
    _write_exporter_runs(conn, run, now)


#: The ledger write, shared with the PostgreSQL store (the same portable statement).
write_run = _write_run
# ---------------------------------------------------------------------------------------------
# What a path holds (for `hermetry doctor` and the CLI's checks), without creating anything
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreStatus:
    """What is at a telemetry path, found without creating or changing anything."""

    path: str
    exists: bool
    #: missing | hermetry | empty | directory | not_sqlite | hermes_state_db | other_sqlite | unreadable
    kind: str
    schema_version: int | None
    supported_schema_version: int
    readable: bool
    writable: bool
    #: why it cannot be written (None when it can)
    not_writable_because: str | None
    size_bytes: int | None
    free_bytes: int | None
    problem: str | None
    hint: str | None


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
        return int(st.f_bavail * st.f_frsize)
    except (OSError, AttributeError):
        return None


def _writable_folder(folder: Path) -> tuple[bool, str | None]:
    """Can files be created in ``folder`` (or in the nearest existing folder above it)?"""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return False, f"{probe} is a file, not a folder"
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return False, f"{probe} is on a read-only filesystem"
    except (OSError, AttributeError):
        pass
    if not os.access(probe, os.W_OK | os.X_OK):
        return False, f"no permission to write in {probe}"
    free = _free_bytes(probe)
    if free is not None and free < MIN_FREE_BYTES:
        return False, f"the disk holding {probe} is full ({free:,} bytes free)"
    return True, None


def inspect_store(path: str | os.PathLike[str]) -> StoreStatus:
    """Classify the telemetry path: what it is, its schema version, whether it can be read and
    written, and why not — never creating, migrating or locking anything."""
    p = Path(path)
    base: dict[str, Any] = dict(path=str(p), supported_schema_version=SCHEMA_VERSION, schema_version=None,
                                size_bytes=None, free_bytes=None, problem=None, hint=None)
    folder_ok, folder_why = _writable_folder(p.parent)
    base["free_bytes"] = _free_bytes(p.parent) if p.parent.exists() else None
    if p.is_dir():
        err = _not_a_file(p)
        return StoreStatus(**base | dict(exists=True, kind="directory", readable=False, writable=False,
                                         not_writable_because=str(err), problem=str(err), hint=err.hint))
    if not p.exists():
        missing = StoreMissing(p)
        return StoreStatus(**base | dict(exists=False, kind="missing", readable=False, writable=folder_ok,
                                         not_writable_because=folder_why, problem=str(missing),
                                         hint=missing.hint))
    base["size_bytes"] = p.stat().st_size
    kind, version, problem, hint = "hermetry", None, None, None
    try:
        conn = _connect_readonly(p, warn=False)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
        if base["size_bytes"] == 0 or version == SCHEMA_VERSION and _is_empty_file(p):
            kind = "empty"
        else:
            version = _file_version(p)
    except StoreCorrupt as exc:
        kind = ("hermes_state_db" if "state.db" in str(exc) else
                "other_sqlite" if isinstance(exc, NotAStore) else "not_sqlite")
        problem, hint = str(exc), exc.hint
    except StoreUnavailable as exc:
        kind, problem, hint = "unreadable", str(exc), exc.hint
    readable = problem is None
    writable, why = folder_ok, folder_why
    if kind not in ("hermetry", "empty"):
        writable, why = False, problem
    elif version is not None and version > SCHEMA_VERSION:
        writable = False
        why = f"its schema version {version} is newer than this hermetry's ({SCHEMA_VERSION})"
        problem, hint = f"{p} is never written: {why}", StoreTooNew.hint
    elif writable and not os.access(p, os.W_OK):
        writable, why = False, f"no permission to write {p}"
    if not writable and problem is None:
        problem = f"{p} cannot be written: {why}"
        hint = "free some space, fix the permissions, or point HERMETRY_DB elsewhere"
    return StoreStatus(**base | dict(exists=True, kind=kind, schema_version=version, readable=readable,
                                     writable=writable, not_writable_because=why, problem=problem,
                                     hint=hint))


def _file_version(p: Path) -> int | None:
    """The file's own ``user_version`` (the reader may have upgraded a copy in memory)."""
    for mode in ("?mode=ro", "?immutable=1"):
        try:
            conn = sqlite3.connect(p.resolve().as_uri() + mode, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                return int(conn.execute("PRAGMA user_version").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            continue
    return None


def _is_empty_file(p: Path) -> bool:
    return _file_version(p) == 0
