"""Reading Hermes' ``state.db`` without ever changing it.

The file is opened read-only (``mode=ro``; never ``immutable``, because Hermes may be writing
it while we read). All reads happen inside one read transaction, so sessions, messages and
per-model usage come from one consistent snapshot even while Hermes appends.

Columns are discovered with ``PRAGMA table_info``: a column this Hermes version lacks is read
as NULL ("not captured"), columns we do not know are ignored. Message *content* is never
fetched: SQL computes the two facts we need from it (is there any content; is it a context
compaction summary) and only those booleans leave SQLite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermetry.model.coerce import as_float
from hermetry.stores.sqlite_util import chunks, is_corrupt


class BackfillError(Exception):
    """A state.db cannot be imported (missing, locked, corrupt, not Hermes'); nothing was written."""


#: Columns of Hermes' ``sessions`` table that the import reads (all optional except ``id``).
SESSION_COLUMNS: tuple[str, ...] = (
    "id", "source", "model", "billing_provider", "billing_base_url", "parent_session_id",
    "started_at", "ended_at", "end_reason", "message_count", "tool_call_count", "api_call_count",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    "estimated_cost_usd", "actual_cost_usd", "cost_status", "cost_source", "pricing_version",
    "profile_name",
)

#: Columns of ``session_model_usage`` (per session × model × route × task totals, schema v22).
USAGE_COLUMNS: tuple[str, ...] = (
    "session_id", "model", "billing_provider", "billing_base_url", "billing_mode", "task",
    "api_call_count", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "estimated_cost_usd", "actual_cost_usd", "cost_status", "cost_source",
    "first_seen", "last_seen",
)

#: How the context-compaction summary Hermes stores as a message begins (agent/context_compressor.py:
#: SUMMARY_PREFIX and its historical forms, LEGACY_SUMMARY_PREFIX, and a summary merged into the
#: first kept message). Such a message is context, not a request: it starts no turn.
SUMMARY_PREFIXES: tuple[str, ...] = (
    "[CONTEXT COMPACTION",
    "[CONTEXT SUMMARY]:",
    "[PRIOR CONTEXT — for reference only",
)


@dataclass(slots=True)
class MessageRow:
    """The content-free facts about one stored message."""

    id: int
    session_id: str
    role: str | None
    timestamp: float | None
    tool_calls: str | None  # JSON (names are read from it; arguments are dropped right away)
    tool_name: str | None
    tool_call_id: str | None
    has_content: bool
    is_summary: bool
    observed: bool
    compaction_copy: bool = False


_seconds = as_float


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _needs_snapshot(exc: BaseException) -> bool:
    """A WAL database in a folder we may not write: SQLite cannot create its -wal/-shm files."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return (
        name in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN", "SQLITE_READONLY_CANTINIT")
        or "readonly database" in text
        or "unable to open" in text
    )


class StateDB:
    """A read-only view of one Hermes ``state.db`` (use as a context manager)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 5.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.timeout_s = timeout_s
        self.snapshot_dir: Path | None = None  # set when read through a private copy
        self.conn: sqlite3.Connection | None = None
        self.columns: dict[str, set[str]] = {}

    # -- opening -------------------------------------------------------------------------------

    def __enter__(self) -> StateDB:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if not self.path.is_file():
            raise BackfillError(f"{self.path}: no such Hermes state.db")
        try:
            self._open_at(self.path)
        except BackfillError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            if not _needs_snapshot(exc):
                raise self._error(exc) from exc
            # A WAL-mode file in a folder we cannot write, with no -wal/-shm beside it. SQLite
            # needs those files even to read. No process can be writing the file (it could not
            # create its -wal either), and without a -wal the main file is complete: read a
            # private copy of it instead. Hermes' file is still only ever read.
            self._open_snapshot(exc)

    def _open_at(self, path: Path) -> None:
        uri = f"{path.as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout_s, isolation_level=None,
                               check_same_thread=False)
        self.conn = conn
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA query_only=1")
        # registered up front: SQLite refuses new functions while a statement is running
        conn.create_function("hermetry_digest", 4, _digest, deterministic=True)
        # One read transaction for the whole import: a consistent snapshot while Hermes writes.
        conn.execute("BEGIN")
        self.columns = self._discover()
        if "id" not in self.columns.get("sessions", set()):
            raise BackfillError(f"{self.path}: not a Hermes state.db (no sessions table with an id column)")

    def _open_snapshot(self, original: BaseException) -> None:
        wal = Path(f"{self.path}-wal")
        tmp = Path(tempfile.mkdtemp(prefix="hermetry-backfill-"))
        self.snapshot_dir = tmp
        try:
            copy = tmp / "state.db"
            shutil.copyfile(self.path, copy)
            if wal.exists():
                shutil.copyfile(wal, Path(f"{copy}-wal"))
            self._open_at(copy)
        except BackfillError:
            self.close()
            raise
        except (OSError, sqlite3.DatabaseError) as exc:
            self.close()
            raise BackfillError(f"{self.path}: cannot be read ({original}; a private copy failed too: {exc})") from exc

    def _error(self, exc: BaseException) -> BackfillError:
        if _is_locked(exc):
            return BackfillError(
                f"{self.path}: locked by another process for more than {self.timeout_s:g} s "
                f"({exc}); nothing was imported, try again"
            )
        if is_corrupt(exc):
            return BackfillError(f"{self.path}: not a readable SQLite database ({exc}); nothing was imported")
        return BackfillError(f"{self.path}: cannot be read ({exc}); nothing was imported")

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            conn.close()
        if self.snapshot_dir is not None:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)
            self.snapshot_dir = None

    # -- schema --------------------------------------------------------------------------------

    def _discover(self) -> dict[str, set[str]]:
        assert self.conn is not None
        tables = [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found: dict[str, set[str]] = {}
        for table in ("sessions", "messages", "session_model_usage"):
            if table in tables:
                found[table] = {r[1] for r in self.conn.execute(f"PRAGMA table_info({_quote(table)})")}
        return found

    def has(self, table: str, column: str | None = None) -> bool:
        cols = self.columns.get(table)
        if cols is None:
            return False
        return column is None or column in cols

    def missing(self) -> list[str]:
        """``table.column`` names the import would use but this file lacks (read as not captured)."""
        out: list[str] = []
        for table, wanted in (("sessions", SESSION_COLUMNS), ("session_model_usage", USAGE_COLUMNS),
                              ("messages", ("id", "session_id", "role", "timestamp", "tool_calls",
                                            "tool_name", "tool_call_id", "content"))):
            if table not in self.columns:
                out.append(f"{table}")
                continue
            out.extend(f"{table}.{c}" for c in wanted if c not in self.columns[table])
        return out

    def check(self) -> None:
        """Walk every page (``PRAGMA quick_check``) before anything is imported."""
        assert self.conn is not None
        try:
            rows = self.conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        problems = [r[0] for r in rows if r[0] != "ok"]
        if problems:
            raise BackfillError(f"{self.path}: damaged ({'; '.join(problems[:3])}); nothing was imported")

    # -- reading -------------------------------------------------------------------------------

    def _select(self, table: str, wanted: Sequence[str]) -> str:
        cols = self.columns.get(table, set())
        return ", ".join(_quote(c) if c in cols else f"NULL AS {_quote(c)}" for c in wanted)

    def count_sessions(self) -> int:
        assert self.conn is not None
        try:
            return int(self.conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc

    def iter_session_batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """Sessions as dicts keyed by :data:`SESSION_COLUMNS`, ``size`` at a time."""
        assert self.conn is not None
        sql = f"SELECT {self._select('sessions', SESSION_COLUMNS)} FROM sessions ORDER BY rowid"
        try:
            cur = self.conn.execute(sql)
            while True:
                rows = cur.fetchmany(size)
                if not rows:
                    return
                yield [dict(zip(SESSION_COLUMNS, r, strict=True)) for r in rows]
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc

    def usage(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """``session_model_usage`` rows per session (empty when the table does not exist)."""
        out: dict[str, list[dict[str, Any]]] = {}
        if not self.has("session_model_usage", "session_id") or not session_ids:
            return out
        assert self.conn is not None
        order = "rowid"
        select = self._select("session_model_usage", USAGE_COLUMNS)
        try:
            for chunk in chunks(session_ids):
                marks = ",".join("?" * len(chunk))
                for r in self.conn.execute(
                    f"SELECT {select} FROM session_model_usage WHERE session_id IN ({marks}) ORDER BY {order}",
                    tuple(chunk),
                ):
                    row = dict(zip(USAGE_COLUMNS, r, strict=True))
                    out.setdefault(str(row["session_id"]), []).append(row)
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        return out

    def message_stats(self, session_ids: Sequence[str]) -> dict[str, tuple[int, int, float | None]]:
        """(count, max id, max timestamp) of each session's messages — part of its fingerprint."""
        out: dict[str, tuple[int, int, float | None]] = {}
        if not self.has("messages", "session_id") or not session_ids:
            return out
        assert self.conn is not None
        id_col = "id" if self.has("messages", "id") else "rowid"
        ts = "MAX(timestamp)" if self.has("messages", "timestamp") else "NULL"
        try:
            for chunk in chunks(session_ids):
                marks = ",".join("?" * len(chunk))
                for sid, n, max_id, max_ts in self.conn.execute(
                    f"SELECT session_id, COUNT(*), MAX({id_col}), {ts} FROM messages "
                    f"WHERE session_id IN ({marks}) GROUP BY session_id",
                    tuple(chunk),
                ):
                    out[str(sid)] = (int(n), int(max_id or 0), max_ts)
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        return out

    def messages(
        self, session_ids: Sequence[str], copy_check: dict[str, str | None]
    ) -> dict[str, list[MessageRow]]:
        """Each session's messages in insertion order, without their content.

        ``copy_check`` names the sessions whose rows may repeat earlier ones, mapped to their
        parent for continuations: rows flagged ``compaction_copy`` are the copies Hermes
        re-inserts when it compacts a conversation (see :func:`compaction_copies`).
        """
        out: dict[str, list[MessageRow]] = {}
        if not self.has("messages", "session_id") or not self.has("messages", "role") or not session_ids:
            return out
        assert self.conn is not None
        cols = self.columns["messages"]
        id_col = "id" if "id" in cols else "rowid"

        def col(name: str) -> str:
            return _quote(name) if name in cols else "NULL"

        if "content" in cols:
            has_content = "(content IS NOT NULL AND length(content) > 0)"
            is_summary = "(content IS NOT NULL AND (" + " OR ".join(
                f"substr(content, 1, {len(p)}) = '{p}'" for p in SUMMARY_PREFIXES) + "))"
        else:
            has_content = is_summary = "0"
        observed = "COALESCE(observed, 0)" if "observed" in cols else "0"
        sql = (
            f"SELECT {id_col}, session_id, role, {col('timestamp')}, {col('tool_calls')}, "
            f"{col('tool_name')}, {col('tool_call_id')}, {has_content}, {is_summary}, {observed} "
            "FROM messages WHERE session_id IN ({marks}) ORDER BY session_id, " + id_col
        )
        try:
            for chunk in chunks(session_ids):
                marks = ",".join("?" * len(chunk))
                for r in self.conn.execute(sql.format(marks=marks), tuple(chunk)):
                    ts = r[3]
                    out.setdefault(str(r[1]), []).append(
                        MessageRow(
                            id=int(r[0]), session_id=str(r[1]), role=r[2] if isinstance(r[2], str) else None,
                            timestamp=_seconds(ts),
                            tool_calls=r[4] if isinstance(r[4], str) else None,
                            tool_name=r[5] if isinstance(r[5], str) else None,
                            tool_call_id=r[6] if isinstance(r[6], str) else None,
                            has_content=bool(r[7]), is_summary=bool(r[8]), observed=bool(r[9]),
                        )
                    )
            check = {sid: parent for sid, parent in copy_check.items() if sid in out}
            if check and "content" in cols:
                wanted = sorted(set(check) | {p for p in check.values() if p})
                digests = self._digests(wanted)
                for sid, parent in check.items():
                    copies = compaction_copies(
                        out[sid], digests.get(sid, []), digests.get(parent, []) if parent else None
                    )
                    for m in out[sid]:
                        if m.id in copies:
                            m.compaction_copy = True
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        return out

    def compacted_sessions(self, session_ids: Sequence[str]) -> set[str]:
        """Sessions with rows archived by in-place compaction (``compacted = 1``)."""
        if not self.has("messages", "compacted") or not session_ids:
            return set()
        assert self.conn is not None
        found: set[str] = set()
        try:
            for chunk in chunks(session_ids):
                marks = ",".join("?" * len(chunk))
                found.update(
                    str(r[0]) for r in self.conn.execute(
                        f"SELECT DISTINCT session_id FROM messages WHERE compacted = 1 AND session_id IN ({marks})",
                        tuple(chunk),
                    )
                )
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        return found

    def _digests(self, session_ids: Sequence[str]) -> dict[str, list[Digest]]:
        """(id, digest of role/content/tool calls, archived?) of each row, in insertion order.

        The digest is computed inside this process and only compared; content is not kept.
        """
        assert self.conn is not None
        cols = self.columns["messages"]
        id_col = "id" if "id" in cols else "rowid"
        parts = ", ".join(_quote(c) if c in cols else "NULL" for c in ("role", "content", "tool_calls", "tool_call_id"))
        archived = "COALESCE(compacted, 0)" if "compacted" in cols else "0"
        out: dict[str, list[Digest]] = {}
        for chunk in chunks(session_ids):
            marks = ",".join("?" * len(chunk))
            for mid, sid, dig, arch in self.conn.execute(
                f"SELECT {id_col}, session_id, hermetry_digest({parts}), {archived} FROM messages "
                f"WHERE session_id IN ({marks}) ORDER BY session_id, {id_col}",
                tuple(chunk),
            ):
                out.setdefault(str(sid), []).append((int(mid), dig, bool(arch)))
        return out


#: (message id, digest, archived by in-place compaction)
Digest = tuple[int, bytes, bool]


def _digest(role: Any, content: Any, tool_calls: Any, tool_call_id: Any) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for v in (role, content, tool_calls, tool_call_id):
        b = v if isinstance(v, bytes) else ("\x00<null>" if v is None else str(v)).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.digest()


def compaction_copies(rows: Sequence[MessageRow], own: Sequence[Digest], parent: Sequence[Digest] | None) -> set[int]:
    """Ids of the rows that are copies Hermes made when it compacted the conversation.

    Compaction writes ``[kept head] [summary] [kept tail]``: in place it archives the old rows
    (``compacted = 1``) and inserts that block under the same id; a continuation child starts
    with it (a branch child with a plain copy of its parent's conversation). A row is a copy
    when it belongs to a run, next to a summary row (or at the start of a continuation), whose
    rows repeat — in the same order — consecutive rows of the archived history or of the
    parent. Requiring the order keeps a request that merely repeats an earlier one ("continue")
    from being taken for a copy.
    """
    own_ids = {mid: (dig, arch) for mid, dig, arch in own}
    archived = [(mid, dig) for mid, dig, arch in own if arch]
    sources: list[list[tuple[int, bytes]]] = [archived]
    if parent:
        sources.append([(mid, dig) for mid, dig, _ in parent])
    index: dict[bytes, list[tuple[int, int, int]]] = {}  # digest → (source, position, id)
    for si, seq in enumerate(sources):
        for pos, (mid, dig) in enumerate(seq):
            index.setdefault(dig, []).append((si, pos, mid))

    def candidates(m: MessageRow, before: int) -> set[tuple[int, int]]:
        """Where ``m`` could have been copied from: parent rows, or archived rows older than ``before``."""
        entry = own_ids.get(m.id)
        if entry is None:
            return set()
        return {(si, pos) for si, pos, mid in index.get(entry[0], ()) if si == 1 or mid < before}

    copies: set[int] = set()
    n = len(rows)

    def run(start: int, step: int, before: int | None) -> list[int]:
        found: list[int] = []
        cur: set[tuple[int, int]] | None = None
        j = start
        while 0 <= j < n:
            m = rows[j]
            if m.is_summary:
                break
            cands = candidates(m, m.id if before is None else before)
            if cur is not None:
                cands = {c for c in cands if (c[0], c[1] - step) in cur}
            if not cands:
                break
            found.append(m.id)
            cur = cands
            j += step
        return found

    for i, m in enumerate(rows):
        if m.is_summary:
            head = run(i - 1, -1, None)
            copies.update(head)
            # the kept tail repeats rows older than the whole block (never the block's own head)
            copies.update(run(i + 1, 1, min(head, default=m.id)))
    if parent:
        copies.update(run(0, 1, rows[0].id if rows else 0))
    return copies
