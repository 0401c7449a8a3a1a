"""Import Hermes' existing history (``state.db``) into the telemetry store.

Idempotent and incremental: the store's ``backfill_state`` table remembers a fingerprint of
every session imported (its counters, end, per-model usage and messages). A session is
written again only when its fingerprint changed; its earlier backfilled rows are then
replaced, never added to. Sessions the store already captured live keep their exact live
rows: the import only fills session fields the live capture lacks (live values win).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermetry.model.events import Event
from hermetry.model.sessions import profile_for_home
from hermetry.sources.backfill.mapping import (
    api_calls_for_session,
    derive_turns_and_tools,
    session_events,
    session_started_ms,
)
from hermetry.sources.backfill.state_db import BackfillError, StateDB
from hermetry.stores import rollups
from hermetry.stores.sqlite import StoreCorrupt, connect, migrate, write_events
from hermetry.stores.sqlite_util import chunks, transaction

#: Bumped when the mapping changes, so the next import rewrites every backfilled session.
BACKFILL_VERSION = 3

#: Sessions per store transaction.
DEFAULT_BATCH = 1000

Progress = Callable[[int, int], None]

#: ids per ``IN (…)`` query here (smaller than the default: some queries bind the list 4 times)
_IN_CHUNK = 200


@dataclass(slots=True)
class ImportResult:
    """What one import of one state.db did."""

    source_path: str
    store_path: str
    profile: str | None
    sessions_seen: int = 0
    sessions_imported: int = 0  # written this run: new + changed
    sessions_new: int = 0
    sessions_changed: int = 0  # imported before, changed since (rows replaced)
    sessions_unchanged: int = 0  # imported before and unchanged: nothing written
    sessions_skipped: int = 0  # unusable rows (no id, or no time at all)
    sessions_live: int = 0  # of the imported, already captured live: no synthetic rows added
    turns: int = 0
    tool_calls: int = 0
    api_calls: int = 0  # synthetic token rows
    events: int = 0
    seconds: float = 0.0
    not_captured: tuple[str, ...] = ()  # state.db columns/tables this file lacks
    read_from_copy: bool = False  # read through a private copy (read-only folder, see state_db)
    error: str | None = None  # import_hermes_home: why this file was not imported
    skipped_ids: list[str] = field(default_factory=list)
    rollup_hours: int = 0  # hours of rollups rebuilt at the end (stores/rollups.py)


def profile_for_path(state_db_path: str | os.PathLike[str]) -> str:
    """``…/profiles/NAME/state.db`` is profile NAME; anything else is ``default`` (as the live capture)."""
    return profile_for_home(str(Path(state_db_path).expanduser().resolve().parent))


def _fingerprint(
    row: dict[str, Any], usage: Sequence[dict[str, Any]], stats: tuple[int, int, float | None] | None,
    profile: str | None, include_auxiliary: bool,
) -> str:
    material = repr((BACKFILL_VERSION, include_auxiliary, profile, sorted(row.items()),
                     [sorted(u.items()) for u in usage], stats))
    return hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _known_fingerprints(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in chunks(ids, _IN_CHUNK):
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(
            f"SELECT session_id, fingerprint FROM backfill_state WHERE session_id IN ({marks})", tuple(chunk)
        ).fetchall())
    return out


def _live_sessions(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    """Sessions with anything captured live (their live rows are exact: add no synthetic ones)."""
    live: set[str] = set()
    for chunk in chunks(ids, 100):
        marks = ",".join("?" * len(chunk))
        sql = " UNION ".join(
            f"SELECT session_id FROM {t} WHERE origin = 'live' AND session_id IN ({marks})"
            for t in ("sessions", "api_calls", "turns", "tool_calls")
        )
        live.update(r[0] for r in conn.execute(sql, tuple(chunk) * 4))
    return live


def _forget_backfilled(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Drop earlier backfilled rows of sessions about to be written again (never live rows)."""
    for chunk in chunks(ids, _IN_CHUNK):
        marks = ",".join("?" * len(chunk))
        for table in ("api_calls", "turns", "tool_calls", "sessions"):
            where = f"origin = 'backfill' AND session_id IN ({marks})"
            if table != "sessions":  # the hours that lose rows are rebuilt too (rows may move hours)
                rollups.mark_rows(conn, table, where, tuple(chunk))
            conn.execute(f"DELETE FROM {table} WHERE {where}", tuple(chunk))


_SQL_STATE = (
    "INSERT INTO backfill_state (session_id, source_path, fingerprint, imported_at_ms, api_call_count, "
    "message_count) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
    "source_path = excluded.source_path, fingerprint = excluded.fingerprint, "
    "imported_at_ms = excluded.imported_at_ms, api_call_count = excluded.api_call_count, "
    "message_count = excluded.message_count"
)


def _shown(store: Path | str) -> str:
    if _is_url(store):
        from hermetry.stores.postgres import redact_url

        return redact_url(str(store))
    return str(store)


def _is_url(store: object) -> bool:
    return isinstance(store, str) and store.strip().lower().startswith(("postgresql://", "postgres://"))


def _open_postgres(url: str) -> Any:
    """The fleet's store (``HERMETRY_DB=postgresql://…``): the same rows, through the same SQL."""
    from hermetry import config
    from hermetry.stores.postgres import connect as pg_connect
    from hermetry.stores.postgres import migrate as pg_migrate
    from hermetry.stores.postgres import redact_url

    try:
        conn = pg_connect(url, host=config.host())
        pg_migrate(conn)
    except Exception as exc:
        raise BackfillError(f"telemetry store {redact_url(url)} cannot be opened for writing: {exc}") from exc
    return conn


def _open_store(store_path: Path | str, timeout_s: float) -> sqlite3.Connection:
    if _is_url(store_path):
        return _open_postgres(str(store_path))
    assert isinstance(store_path, Path)
    try:
        conn = connect(store_path)
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        migrate(conn)
    except StoreCorrupt as exc:
        raise BackfillError(f"telemetry store {store_path} is not usable: {exc}") from exc
    except (sqlite3.Error, OSError) as exc:
        raise BackfillError(f"telemetry store {store_path} cannot be opened for writing: {exc}") from exc
    return conn


def import_state_db(
    state_db_path: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    profile: str | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH,
    include_auxiliary: bool = True,
    verify: bool = True,
    timeout_s: float = 5.0,
) -> ImportResult:
    """Import one Hermes ``state.db`` into the telemetry store at ``store_path``.

    ``profile`` names the Hermes profile for sessions whose ``profile_name`` is empty (default:
    from the path, ``profiles/NAME/state.db`` → NAME, else ``default``). ``progress(done,
    total)`` is called with sessions processed so far. ``verify`` runs ``PRAGMA quick_check``
    first so a damaged file is refused before anything is written. Raises
    :class:`BackfillError` when the file cannot be read (missing, locked for longer than
    ``timeout_s``, corrupt, not a Hermes state.db) or the store cannot be written.
    """
    t0 = time.perf_counter()
    source = Path(state_db_path).expanduser().resolve()
    store: Path | str = str(store_path) if _is_url(store_path) else Path(store_path).expanduser().resolve()
    if source == store:
        raise BackfillError(f"{source}: the telemetry store cannot be Hermes' own state.db")
    prof = profile if profile is not None else profile_for_path(source)
    result = ImportResult(source_path=str(source), store_path=_shown(store), profile=prof)

    with StateDB(source, timeout_s=timeout_s) as src:
        result.not_captured = tuple(src.missing())
        result.read_from_copy = src.snapshot_dir is not None
        total = src.count_sessions()
        if progress is not None:  # the total first, so a bar never shows 0/? while the file is checked
            progress(0, total)
        if verify:
            src.check()
        conn = _open_store(store, timeout_s)
        try:
            done = 0
            for rows in src.iter_session_batches(max(1, batch_size)):
                _import_batch(src, conn, rows, result, prof, include_auxiliary)
                done += len(rows)
                if progress is not None:
                    progress(min(done, total) if total else done, max(total, done))
            # what was imported is dirty in the rollups: rebuild it now, not in the next report (a
            # busy file leaves it dirty: reports read dirty hours from raw rows, the same figures)
            with contextlib.suppress(Exception):  # (sqlite3 or psycopg: never lose the import for it)
                result.rollup_hours = rollups.rebuild(conn).hours
        finally:
            conn.close()
    result.seconds = time.perf_counter() - t0
    return result


def _import_batch(
    src: StateDB, conn: sqlite3.Connection, rows: list[dict[str, Any]], result: ImportResult,
    profile: str | None, include_auxiliary: bool,
) -> None:
    result.sessions_seen += len(rows)
    valid: list[dict[str, Any]] = []
    for row in rows:
        sid = row.get("id")
        if sid is None or not str(sid).strip():
            result.sessions_skipped += 1
            continue
        row["id"] = str(sid)
        valid.append(row)
    ids = [r["id"] for r in valid]
    usage = src.usage(ids)
    stats = src.message_stats(ids)
    known = _known_fingerprints(conn, ids)

    todo: list[tuple[dict[str, Any], str]] = []
    for row in valid:
        sid = row["id"]
        fp = _fingerprint(row, usage.get(sid, ()), stats.get(sid), profile, include_auxiliary)
        if known.get(sid) == fp:
            result.sessions_unchanged += 1
        else:
            todo.append((row, fp))
    if not todo:
        return

    todo_ids = [r["id"] for r, _ in todo]
    live = _live_sessions(conn, todo_ids)
    fresh = [sid for sid in todo_ids if sid not in live]
    compacted = src.compacted_sessions(fresh)
    copy_check: dict[str, str | None] = {}
    for row, _ in todo:
        sid = row["id"]
        if sid in live:
            continue
        parent = row.get("parent_session_id")
        continuation = bool(parent) and row.get("source") != "subagent"
        if sid in compacted or continuation:
            copy_check[sid] = str(parent) if continuation else None
    messages = src.messages(fresh, copy_check)

    events: list[Event] = []
    states: list[tuple[Any, ...]] = []
    now = time.time() * 1000
    for row, fp in todo:
        sid = row["id"]
        msgs = messages.get(sid)
        started = session_started_ms(row, msgs)
        if started is None:
            result.sessions_skipped += 1
            result.skipped_ids.append(sid)
            continue
        start, end = session_events(row, started, profile)
        events.append(start)
        if sid in live:
            result.sessions_live += 1
        else:
            derived = derive_turns_and_tools(sid, msgs or [], started)
            events.extend(derived.events)
            result.turns += derived.turns
            result.tool_calls += derived.tool_calls
            calls = api_calls_for_session(row, usage.get(sid, []), started, include_auxiliary=include_auxiliary)
            events.extend(calls)
            result.api_calls += len(calls)
        if end is not None:
            events.append(end)
        if sid in known:
            result.sessions_changed += 1
        else:
            result.sessions_new += 1
        result.sessions_imported += 1
        st = stats.get(sid)
        calls_n = row.get("api_call_count")
        states.append((sid, result.source_path, fp, now,
                       calls_n if isinstance(calls_n, int) else None, st[0] if st else 0))

    try:
        with transaction(conn):
            _forget_backfilled(conn, fresh)
            result.events += write_events(conn, events)
            conn.executemany(_SQL_STATE, states)
    except Exception as exc:  # sqlite3 or psycopg: the batch is rolled back either way
        if not isinstance(exc, sqlite3.Error) and type(exc).__module__.split(".")[0] != "psycopg":
            raise
        raise BackfillError(
            f"telemetry store {result.store_path}: could not write ({exc}); sessions imported so far are "
            "kept, run the import again to continue"
        ) from exc


def import_hermes_home(
    hermes_home: str | os.PathLike[str] | None = None,
    store_path: str | os.PathLike[str] | None = None,
    *,
    all_profiles: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> list[ImportResult]:
    """Import ``$HERMES_HOME/state.db`` (and with ``all_profiles`` every ``profiles/*/state.db``).

    ``hermes_home`` and ``store_path`` default to :func:`hermetry.config.hermes_home` and
    :func:`hermetry.config.store` (the telemetry file, or the ``postgresql://`` store when one is
    configured: the import writes there, through the same write path). ``progress(done, total)`` counts sessions over all files.
    A file that cannot be imported does not stop the others: its result carries ``error``.
    Raises :class:`BackfillError` only when there is no state.db to import at all. Other
    keyword options go to :func:`import_state_db`.
    """
    from hermetry import config

    home = Path(hermes_home).expanduser() if hermes_home is not None else config.hermes_home()
    given = store_path if store_path is not None else config.store(home)
    store: Path | str = str(given) if _is_url(given) else Path(given).expanduser()
    targets: list[tuple[Path, str]] = []
    if (home / "state.db").is_file():
        targets.append((home / "state.db", "default"))
    if all_profiles and (home / "profiles").is_dir():
        for p in sorted((home / "profiles").iterdir()):
            if (p / "state.db").is_file():
                targets.append((p / "state.db", p.name))
    if not targets:
        where = f"{home}/state.db" + (f" or {home}/profiles/*/state.db" if all_profiles else "")
        raise BackfillError(f"no Hermes state.db found ({where})")

    counts = [_count(path) for path, _ in targets]
    grand = sum(counts)
    if progress is not None:
        progress(0, grand)
    offset = 0
    results: list[ImportResult] = []
    for (path, prof), n in zip(targets, counts, strict=True):
        def sub(done: int, total: int, _offset: int = offset, _n: int = n) -> None:
            if progress is not None:
                progress(_offset + min(done, _n), grand)

        try:
            results.append(import_state_db(path, store, profile=prof, progress=sub, **options))
        except BackfillError as exc:
            results.append(ImportResult(source_path=str(path.resolve()),
                                        store_path=_shown(store if _is_url(store) else Path(store).resolve()),
                                        profile=prof, error=str(exc)))
        offset += n
        if progress is not None:
            progress(offset, grand)
    return results


def _count(path: Path) -> int:
    try:
        with StateDB(path) as src:
            return src.count_sessions()
    except BackfillError:
        return 0

