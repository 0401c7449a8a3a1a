"""The PostgreSQL store: one database that every host of a fleet writes to and reads from.

Selected by a ``postgresql://`` URL in ``HERMETRY_DB`` or ``hermetry: {db_path: …}``
(docs/fleet.md); needs the ``hermetry[postgres]`` extra (psycopg 3).

* Same schema, same rules: the tables and migrations are the embedded store's
  (:mod:`hermetry.stores.postgres_schema` maps their column types), and so are the write and
  merge rules — :func:`hermetry.stores.sqlite.write_events` runs over :class:`PgConnection`: the
  statements are portable SQL, those that differ are built with :data:`POSTGRES` (the
  connection's ``dialect``, :mod:`hermetry.stores.dialect`), and the connection only converts
  ``?`` parameters to psycopg's. tests/test_postgres_statements.py pins every write-path
  statement, run on a real PostgreSQL. A fact written twice (a retried batch, a second process, a
  backfill) is stored once, with the same precedence (live over backfill, first end reason, …).
* Every row carries its host: the connection sets ``hermetry.host``, the default of every
  table's ``host`` column.
* Many writers: each batch is one transaction; upserts on the natural keys cannot duplicate a
  row whatever the interleaving. A deadlock or lock timeout between two writers' batches rolls
  one back and says ``SinkUnavailable``: the batch is retried whole.
* Never hurts the agent: used only from a writer thread (the recorder's, or the fallback
  forwarder's); connecting gives up after ``CONNECT_TIMEOUT_S``; statements after
  ``STATEMENT_TIMEOUT_MS``. Connection errors → ``SinkUnavailable``; a database whose schema is
  newer than this hermetry → ``SinkDisabled``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hermetry.model.events import Event
from hermetry.recorder.sink import SinkDisabled, SinkUnavailable
from hermetry.stores import postgres_schema as schema

log = logging.getLogger("hermetry")

#: libpq's connect timeout (it counts whole seconds; 2 is its minimum).
CONNECT_TIMEOUT_S = 2
#: One statement may not run longer than this (a batch is retried, never lost).
STATEMENT_TIMEOUT_MS = 30_000
#: Waiting for another writer's row lock longer than this rolls the batch back (and retries it).
LOCK_TIMEOUT_MS = 5_000


def is_postgres_url(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except Exception:
        return "postgresql://…"


class PostgresUnavailable(SinkUnavailable):
    """The database cannot take this batch now (unreachable, shutting down, lock timeout)."""


class PostgresBusy(PostgresUnavailable):
    """Another writer held what this batch needed (a deadlock, a lock timeout): retry soon."""


class PostgresDisabled(SinkDisabled):
    """The database will not take hermetry's batches (newer schema, psycopg not installed)."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise PostgresDisabled(
            "a postgresql:// store needs psycopg (pip install 'hermetry[postgres]')"
        ) from exc
    return psycopg


class PostgresDialect:
    """This store's SQL dialect (:class:`hermetry.stores.dialect.Dialect`; the table there says
    what each method stands for)."""

    name = "postgres"

    def least(self, *exprs: str) -> str:
        return f"LEAST({', '.join(exprs)})"

    def greatest(self, *exprs: str) -> str:
        return f"GREATEST({', '.join(exprs)})"

    def strpos(self, haystack: str, needle: str) -> str:
        return f"strpos({haystack}, {needle})"

    def trunc_int(self, expr: str) -> str:
        return f"CAST(TRUNC({expr}) AS BIGINT)"  # a CAST alone would round

    def day_bucket(self, column_ms: str) -> str:
        from hermetry.model.units import DAY_MS

        return f"CAST(FLOOR({column_ms} / {DAY_MS}) AS BIGINT)"

    def begin(self, immediate: bool = True) -> str:
        return "BEGIN"  # row locks are taken as rows are written; there is no file lock to take early

    def has_table_sql(self) -> str:
        return ("SELECT 1 FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = ?")

    def columns_sql(self, table: str) -> str:
        return ("SELECT column_name, UPPER(data_type) FROM information_schema.columns "
                f"WHERE table_schema = current_schema() AND table_name = '{table}' ORDER BY ordinal_position")

    def index_hint(self, scanner: Any, table: Any) -> str:
        return ""  # PostgreSQL's planner has statistics (ANALYZE): no hint, no counting query


POSTGRES = PostgresDialect()


@dataclass(frozen=True)
class Converted:
    """A statement with psycopg's ``%s`` parameters, and where they come from: ``order[i]`` is
    the index in the ``?``-parameter tuple of the i-th ``%s`` (``?7`` used twice appears twice)."""

    sql: str
    order: tuple[int, ...]

    def params(self, values: Sequence[Any]) -> tuple[Any, ...] | None:
        if not self.order:
            return None
        return tuple(values[i] for i in self.order)


def _convert(sql: str) -> Converted:
    """``?`` / ``?NNN`` → ``%s`` (and a literal ``%`` → ``%%``) outside string literals.

    The only rewrite there is: the statements are portable SQL, and what differs between the
    engines is a :class:`PostgresDialect` method the statement was built with."""
    out, order, highest, i, quote = [], [], 0, 0, False
    while i < len(sql):
        ch = sql[i]
        if quote:
            out.append("%%" if ch == "%" else ch)
            quote = ch != "'"
            i += 1
            continue
        if ch == "'":
            quote = True
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?":
            j = i + 1
            while j < len(sql) and sql[j].isdigit():
                j += 1
            number = int(sql[i + 1:j]) if j > i + 1 else highest + 1
            highest = max(highest, number)
            order.append(number - 1)
            out.append("%s")
            i = j
            continue
        else:
            out.append(ch)
        i += 1
    text = "".join(out)
    if not order:  # psycopg leaves a statement without parameters as it is
        text = text.replace("%%", "%")
    return Converted(text, tuple(order))


_converted: dict[str, Converted] = {}


def convert(sql: str) -> Converted:
    """:func:`_convert`, cached (the write path's statements are a few constants)."""
    done = _converted.get(sql)
    if done is None:
        done = _converted[sql] = _convert(sql)
    return done


class PgConnection:
    """A psycopg connection that runs hermetry's portable SQL (``?`` parameters converted).

    Autocommit: transactions are explicit (``dialect.begin()`` … ``COMMIT``), as with the
    embedded store. ``dialect`` is what statements that differ are built with.
    """

    dialect = POSTGRES

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> Any:
        """Run ``sql`` (``?`` parameters); ``binary``: the rows in PostgreSQL's binary format."""
        c = convert(sql)
        return self.raw.execute(c.sql, c.params(params), binary=binary)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        c = convert(sql)
        cursor = self.raw.cursor()
        cursor.executemany(c.sql, [c.params(r) for r in rows])
        return cursor

    def cursor(self) -> PgCursor:
        return PgCursor(self)

    def close(self) -> None:
        self.raw.close()


class PgCursor:
    """The part of ``sqlite3.Cursor`` the analytics use (rows are always plain tuples)."""

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        self._cur: Any = None
        self.row_factory: Any = None  # accepted and ignored: rows are tuples

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        self._cur = self._conn.execute(sql, params)
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        self._cur = self._conn.executemany(sql, rows)
        return self

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    def fetchmany(self, size: int = 1) -> list[Any]:
        return list(self._cur.fetchmany(size))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur)

    def close(self) -> None:
        if self._cur is not None:
            self._cur.close()


def _sqlite_like_numbers(conn: Any) -> None:
    """Load what PostgreSQL widens as SQLite would give it: an integral ``numeric`` (``SUM`` of a
    BIGINT) as ``int``, any other as ``float``; a boolean as 0/1. Reports then read the same."""
    from psycopg.types.numeric import NumericLoader

    class _Number(NumericLoader):
        def load(self, data: Any) -> Any:
            value = super().load(data)
            if value.is_finite() and value == value.to_integral_value():
                return int(value)
            return float(value)

    class _Bool:
        format = 0

        def __init__(self, oid: int, context: Any = None) -> None:
            pass

        def load(self, data: Any) -> int:
            return 1 if bytes(data) == b"t" else 0

    conn.adapters.register_loader("numeric", _Number)
    conn.adapters.register_loader("bool", _Bool)


def connect(url: str, *, host: str | None = None, readonly: bool = False) -> PgConnection:
    """Open the database. Raises ``PostgresUnavailable`` when it cannot be reached."""
    psycopg = _psycopg()
    options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="hermetry", options=options)
    except psycopg.Error as exc:
        raise PostgresUnavailable(f"{redact_url(url)}: {_first_line(exc)}") from exc
    try:
        if host is not None:
            conn.execute("SELECT set_config('hermetry.host', %s, false)", (host,))
        if readonly:
            _read_only(conn)
    except psycopg.Error as exc:
        conn.close()
        raise PostgresUnavailable(f"{redact_url(url)}: {_first_line(exc)}") from exc
    return PgConnection(conn)


def _read_only(raw: Any) -> None:
    """Make a psycopg connection a reader's: read-only transactions, numbers loaded as SQLite gives them."""
    raw.execute("SET default_transaction_read_only = on")
    _sqlite_like_numbers(raw)


def open_reader(url: str, *, refresh: bool = False) -> PgConnection | None:
    """A read-only connection for the analytics (None: no hermetry tables yet, an empty history).
    Raises ``PostgresUnavailable`` when the database cannot be reached.

    ``refresh``: first rebuild the rollups' dirty closed hours (:func:`hermetry.stores.rollups.refresh`,
    within its budget) through this same connection, which then turns read-only — a report that
    refreshes opens one connection, not one to refresh and one to read (a backend's start and its
    first statements' catalog look-ups, each time). A database this role cannot write is read as
    it is."""
    conn = connect(url, readonly=not refresh)
    try:
        version = schema_version(conn)
    except Exception as exc:
        conn.close()
        raise PostgresUnavailable(f"{redact_url(url)}: {_first_line(exc)}") from exc
    if version == 0:
        conn.close()
        return None
    if version > schema.SCHEMA_VERSION:
        log.warning("hermetry: the telemetry database has schema version %s, newer than this hermetry (%s); "
                    "reading it anyway", version, schema.SCHEMA_VERSION)
    if refresh:
        from hermetry.stores import rollups

        rollups.refresh(conn, lent=True)  # never raises for the database's errors: reads stay right without it
        psycopg = _psycopg()
        try:
            if conn.raw.broken:  # lost meanwhile: a reader of its own, as without the refresh
                raise psycopg.OperationalError("the connection was lost")
            if conn.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.raw.execute("ROLLBACK")  # a refused rebuild (no rights, a standby) left its transaction open
            _read_only(conn.raw)
        except psycopg.Error:
            conn.close()
            return open_reader(url)
    return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def schema_version(conn: PgConnection) -> int:
    """The database's schema version (0: no hermetry tables yet)."""
    row = conn.raw.execute("SELECT to_regclass('hermetry_meta') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = conn.raw.execute("SELECT value FROM hermetry_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: PgConnection) -> int:
    """Bring the database to the current schema; several processes may race (an advisory lock
    serializes them). Raises ``PostgresDisabled`` for a schema newer than this hermetry."""
    version = schema_version(conn)
    if version > schema.SCHEMA_VERSION:
        raise PostgresDisabled(
            f"the telemetry database has schema version {version}, newer than this hermetry "
            f"({schema.SCHEMA_VERSION}); upgrade hermetry"
        )
    if version == schema.SCHEMA_VERSION and _fleet_version(conn) == schema.FLEET_VERSION:
        return version
    raw = conn.raw
    with raw.transaction():
        raw.execute("SELECT pg_advisory_xact_lock(hashtext('hermetry.migrate'))")
        raw.execute(schema.META_TABLE)
        version = schema_version(conn)  # re-read under the lock
        if version > schema.SCHEMA_VERSION:
            raise PostgresDisabled(f"the telemetry database has schema version {version}; upgrade hermetry")
        if version == schema.SCHEMA_VERSION and _fleet_version(conn) == schema.FLEET_VERSION:
            return version  # another process migrated while we waited: no DDL (it would lock out writers)
        while version < schema.SCHEMA_VERSION:
            for statement in schema.MIGRATIONS[version]:
                raw.execute(statement)
            version += 1
        for statement in schema.FLEET_EXTRAS:
            raw.execute(statement)
        for key, value in (("schema_version", version), ("fleet_version", schema.FLEET_VERSION)):
            raw.execute(
                "INSERT INTO hermetry_meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, str(value)))
    return version


def _fleet_version(conn: PgConnection) -> int:
    row = conn.raw.execute("SELECT value FROM hermetry_meta WHERE key = 'fleet_version'").fetchone()
    return int(row[0]) if row else 0


def _reconcile_quietly(conn: PgConnection) -> None:
    """Close what dead processes left open — the embedded store's rule, run on this database."""
    from hermetry.stores.sqlite_reconcile import STORE_EVERY_S, reconcile

    try:
        reconcile(conn, every_s=STORE_EVERY_S)  # type: ignore[arg-type]  # PgConnection runs the same SQL
    except Exception as exc:
        try:
            conn.raw.execute("ROLLBACK")
        except Exception:
            pass
        log.debug("hermetry: reconciling open turns on PostgreSQL failed: %s", exc)


def apply_batch(conn: PgConnection, events: Sequence[Event], run: Mapping[str, Any] | None,
                *, batch_id: str | None = None, spooled_at_ms: float | None = None) -> int:
    """Write one batch in one transaction. With ``batch_id``, a batch already applied is skipped
    (returns 0): forwarding the same spooled batch twice adds nothing."""
    from hermetry.stores.sqlite import write_events, write_run

    raw = conn.raw
    # One round trip per batch, not per statement: the statements are pipelined (libpq pipeline
    # mode) and nothing in write_events reads a result back.
    with raw.pipeline() as pipeline, raw.transaction():
        if run is not None and run.get("host"):
            # rows are stamped with the host that recorded them, whoever forwards them
            raw.execute("SELECT set_config('hermetry.host', %s, true)", (str(run["host"]),))
        if batch_id is not None:
            cur = raw.execute(
                "INSERT INTO forwarded_batches (batch_id, events, spooled_at_ms, forwarded_at_ms) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (batch_id) DO NOTHING",
                (batch_id, len(events), spooled_at_ms, time.time() * 1000))
            pipeline.sync()
            if cur.rowcount == 0:
                return 0
        n = write_events(conn, events)  # type: ignore[arg-type]  # PgConnection runs the same SQL
        if run is not None:
            write_run(conn, dict(run), n)  # type: ignore[arg-type]
    return n


class PostgresStore:
    """The writer side of the PostgreSQL store (a Sink), for one writer thread."""

    name = "postgres"

    def __init__(self, url: str, *, host: str | None = None, reconcile: bool = True) -> None:
        self.url = url
        self.host = host
        self._reconcile = reconcile
        self._conn: PgConnection | None = None

    def _connection(self) -> PgConnection:
        if self._conn is None:
            conn = connect(self.url, host=self.host)
            try:
                migrate(conn)
                if self._reconcile:
                    _reconcile_quietly(conn)
            except PostgresDisabled:
                conn.close()
                raise
            except Exception as exc:
                conn.close()
                raise self._classify(exc) from exc
            self._conn = conn
        return self._conn

    def _classify(self, exc: BaseException) -> BaseException:
        """Connection trouble and contention → retry later; anything else is the batch's fault."""
        psycopg = _psycopg()
        contention = (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable,
                      psycopg.errors.SerializationFailure)
        if isinstance(exc, contention):  # the transaction was rolled back; the connection is fine
            return PostgresBusy(f"{redact_url(self.url)}: {_first_line(exc)}")
        if isinstance(exc, psycopg.OperationalError | psycopg.errors.QueryCanceled):
            self._drop_connection()
            return PostgresUnavailable(f"{redact_url(self.url)}: {_first_line(exc)}")
        if isinstance(exc, psycopg.errors.InsufficientPrivilege | psycopg.errors.ReadOnlySqlTransaction):
            return PostgresUnavailable(f"{redact_url(self.url)}: {_first_line(exc)}")
        if isinstance(exc, psycopg.InterfaceError):
            self._drop_connection()
            return PostgresUnavailable(f"{redact_url(self.url)}: {_first_line(exc)}")
        return exc

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def write(self, events: Sequence[Event], run: Mapping[str, Any] | None = None, *,
              batch_id: str | None = None, spooled_at_ms: float | None = None) -> int:
        """Write one batch in one transaction; ``PostgresUnavailable`` to have it retried."""
        conn = self._connection()
        try:
            return apply_batch(conn, events, run, batch_id=batch_id, spooled_at_ms=spooled_at_ms)
        except Exception as exc:
            classified = self._classify(exc)
            if classified is exc:
                raise
            raise classified from exc

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True  # every write commits its own transaction

    def close(self) -> None:
        self._drop_connection()
