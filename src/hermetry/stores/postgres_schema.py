"""The PostgreSQL store's schema: the embedded store's, its column types mapped — one definition.

The canonical tables, their columns and their forward migrations are defined once, in
:mod:`hermetry.stores.sqlite_schema`; ``MIGRATIONS[n]`` here is the same migration written for
PostgreSQL (``REAL`` → ``DOUBLE PRECISION``, ``INTEGER`` → ``BIGINT``, generated columns
``STORED``). The version lives in the ``hermetry_meta`` table (``schema_version``).

On top of the canonical schema a fleet needs a little more, kept in ``FLEET_EXTRAS`` (applied,
idempotently, whenever the schema is created or migrated; ``fleet_version`` records it):

* every row carries its host: sessions and the ledger have it from the embedded schema (the
  recording process's ``config.host()``); every other table gets a ``host`` column defaulting to
  the writing transaction's ``hermetry.host`` setting (the recording process's host, set by the
  store), so rows written by the canonical statements are stamped without a field of their own
  in the events;
* ``forwarded_batches``: the ids of spooled batches already applied, so a batch forwarded twice
  (a retry after a lost acknowledgement, two forwarders) adds nothing the second time.

The DDL is the only SQL translated, by a short rule list (:data:`DDL_RULES`, each rule tested
in tests/test_dialect.py): ``REAL`` → ``DOUBLE PRECISION`` (SQLite's REAL is 8 bytes),
``INTEGER`` → ``BIGINT`` (SQLite's INTEGER is up to 8 bytes), a generated column ``VIRTUAL`` →
``STORED`` (PostgreSQL 15 has only stored ones); ``--`` comments are dropped. The DML — the
write and merge rules, the reconciler, the analytics — is not translated: it is portable SQL
built with the connection's dialect (:mod:`hermetry.stores.dialect`), written once in
stores/sqlite.py and analytics/.
"""

from __future__ import annotations

import re

from hermetry.stores import rollups
from hermetry.stores.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS
from hermetry.stores.sqlite_util import split_statements

#: Tables of the canonical schema whose rows are stamped with their host by the connection.
#: ``sessions.host`` and ``recorder_runs.host`` are canonical columns, written from the events
#: and the ledger exactly as in the embedded store (a default there would change its merge rules).
HOST_TABLES = ("turns", "api_calls", "tool_calls", "backfill_state", "cost_history")

META_TABLE = """
CREATE TABLE IF NOT EXISTS hermetry_meta (
    key                TEXT PRIMARY KEY,
    value              TEXT NOT NULL
)
"""

HOST_DEFAULT = "current_setting('hermetry.host', true)"

#: Version of ``FLEET_EXTRAS``; bumped when a statement is added there.
FLEET_VERSION = 1


def _fleet_extras() -> list[str]:
    statements = []
    for table in HOST_TABLES:
        statements.append(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS host TEXT")
        statements.append(f"ALTER TABLE {table} ALTER COLUMN host SET DEFAULT {HOST_DEFAULT}")
    statements += [
        "CREATE INDEX IF NOT EXISTS sessions_host ON sessions(host)",
        """CREATE TABLE IF NOT EXISTS forwarded_batches (
            batch_id           TEXT PRIMARY KEY,   -- assigned when the batch was spooled
            host               TEXT DEFAULT current_setting('hermetry.host', true),
            events             BIGINT NOT NULL,
            spooled_at_ms      DOUBLE PRECISION,
            forwarded_at_ms    DOUBLE PRECISION NOT NULL
        )""",
    ]
    return statements


FLEET_EXTRAS: list[str] = _fleet_extras()


#: (pattern, replacement) applied in order to each statement of an embedded-store migration.
DDL_RULES = (
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\)\s*VIRTUAL\b", re.IGNORECASE), ") STORED"),
)


def ddl(script: str) -> list[str]:
    """One embedded-store migration as PostgreSQL statements."""
    out = []
    for statement in split_statements(script):
        statement = "\n".join(line.split("--", 1)[0].rstrip() for line in statement.splitlines())
        for pattern, replacement in DDL_RULES:
            statement = pattern.sub(replacement, statement)
        out.append(statement)
    return out


#: MIGRATIONS[n] takes schema version n to n + 1 (the same numbering as the embedded store).
MIGRATIONS: list[list[str]] = [rollups.postgres_statements(m) or ddl(m)
                               for m in SQLITE_MIGRATIONS]  # rollups: triggers are PL/pgSQL, sketches BYTEA
SCHEMA_VERSION = len(MIGRATIONS)
