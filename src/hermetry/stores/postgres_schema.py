"""The PostgreSQL store's schema: the embedded store's, translated — one definition, two dialects.

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

:func:`translate` turns the embedded store's DML (``?`` / ``?NNN`` parameters, ``MIN(a, b)``,
``instr``) into PostgreSQL's, so the write and merge rules also exist once (stores/sqlite.py).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from hermetry.stores.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS

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


def split_statements(script: str) -> list[str]:
    """A migration script's statements (the embedded store's scripts are SQLite-complete)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip().rstrip(";").strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip().rstrip(";").strip())
    return statements


_DDL_RULES = (
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\)\s*VIRTUAL\b", re.IGNORECASE), ") STORED"),
    (re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE), ""),
)


def ddl(script: str) -> list[str]:
    """One embedded-store migration as PostgreSQL statements."""
    out = []
    for statement in split_statements(script):
        statement = "\n".join(line.split("--", 1)[0].rstrip() for line in statement.splitlines())
        for pattern, replacement in _DDL_RULES:
            statement = pattern.sub(replacement, statement)
        out.append(statement)
    return out


#: MIGRATIONS[n] takes schema version n to n + 1 (the same numbering as the embedded store).
MIGRATIONS: list[list[str]] = [ddl(m) for m in SQLITE_MIGRATIONS]
SCHEMA_VERSION = len(MIGRATIONS)


# ---------------------------------------------------------------------------------------------
# DML: the embedded store's statements, for PostgreSQL
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Translated:
    """A statement for psycopg and where its parameters come from: ``order[i]`` is the index in
    the SQLite parameter tuple of the i-th ``%s`` (a ``?7`` used twice appears twice)."""

    sql: str
    order: tuple[int, ...]

    def params(self, values: tuple[object, ...] | list[object]) -> tuple[object, ...] | None:
        if not self.order:
            return None
        return tuple(values[i] for i in self.order)


_WORD_CALL = re.compile(r"\b(MIN|MAX|instr|IFNULL|SUM|CAST)\s*\(", re.IGNORECASE)
_SIMPLE = (
    (re.compile(r"\bBEGIN\s+(IMMEDIATE|DEFERRED|EXCLUSIVE)\b", re.IGNORECASE), "BEGIN"),
    (re.compile(r"\s+NOT\s+INDEXED\b", re.IGNORECASE), ""),
    # SQLite's rowid: only the analytics' index hint reads it, and PostgreSQL needs no hint
    (re.compile(r"\(SELECT\s+MAX\(rowid\)\s+FROM\s+\w+\)", re.IGNORECASE), "NULL"),
    (re.compile(r"FROM\s+sqlite_master\s+WHERE\s+type\s*=\s*'table'\s+AND\s+name\s*=", re.IGNORECASE),
     "FROM information_schema.tables WHERE table_schema = current_schema() AND table_name ="),
    (re.compile(r"PRAGMA\s+table_x?info\((\w+)\)", re.IGNORECASE),
     r"SELECT ordinal_position - 1, column_name, UPPER(data_type) FROM information_schema.columns "
     r"WHERE table_schema = current_schema() AND table_name = '\1' ORDER BY ordinal_position"),
)
#: a predicate at the top level of an expression (SQLite sums booleans as 0/1; PostgreSQL won't)
_PREDICATE = re.compile(r"(=|<>|!=|<|>|\bLIKE\b|\bAND\b|\bOR\b|\bIS\b|\bIN\b|\bNOT\b|\bBETWEEN\b)",
                        re.IGNORECASE)
_ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
_ORDER_END = re.compile(r"\b(LIMIT|OFFSET)\b", re.IGNORECASE)


def _close_paren(sql: str, open_at: int) -> tuple[int, list[tuple[int, int]]]:
    """Index of the parenthesis closing the one at ``open_at``, and the spans of its top-level
    comma-separated arguments."""
    depth, quote, start, args = 0, False, open_at + 1, []
    i = open_at
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == "'":
                quote = False
        elif ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append((start, i))
                return i, args
        elif ch == "," and depth == 1:
            args.append((start, i))
            start = i + 1
        i += 1
    raise ValueError(f"unbalanced parentheses in {sql!r}")


def _functions(sql: str) -> str:
    """Scalar ``MIN(a, b)``/``MAX(a, b, …)`` → ``LEAST``/``GREATEST``; ``instr`` → ``strpos``.

    SQLite's scalar MIN/MAX are NULL when an argument is NULL while LEAST/GREATEST skip NULLs;
    every such call in the embedded store's statements takes COALESCEd arguments, so the two agree.
    """
    out, pos = [], 0
    for m in _WORD_CALL.finditer(sql):
        if m.start() < pos:
            continue  # inside a call already rewritten
        name = m.group(1).upper()
        open_at = m.end() - 1
        close_at, args = _close_paren(sql, open_at)
        inner = [_functions(sql[a:b]) for a, b in args]
        out.append(sql[pos:m.start()])
        pos = close_at + 1
        if name == "SUM" and len(inner) == 1 and _is_predicate(inner[0]):
            out.append(f"SUM(CASE WHEN ({inner[0].strip()}) THEN 1 ELSE 0 END)")
            continue
        if name == "CAST":
            cast = re.match(r"(?is)\s*(.*)\s+AS\s+INTEGER\s*$", inner[0]) if len(inner) == 1 else None
            if cast:  # SQLite truncates a REAL cast to INTEGER; PostgreSQL rounds it
                out.append(f"CAST(TRUNC({cast.group(1)}) AS BIGINT)")
                continue
        if name in ("MIN", "MAX") and len(args) > 1:
            fn = "LEAST" if name == "MIN" else "GREATEST"
        elif name == "INSTR":
            fn = "strpos"
        elif name == "IFNULL":
            fn = "COALESCE"
        else:
            fn = m.group(1)
        out.append(f"{fn}({','.join(inner)})")
    out.append(sql[pos:])
    return "".join(out)


def _top_level(expr: str) -> str:
    """``expr`` without string literals and without what is inside its parentheses."""
    out, depth, quote = [], 0, False
    for ch in expr:
        if quote:
            quote = ch != "'"
            continue
        if ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
            if depth == 1:
                out.append("()")
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _is_predicate(expr: str) -> bool:
    text = expr.strip()
    if re.match(r"(?i)CASE\b", text):
        return False
    return bool(_PREDICATE.search(_top_level(text)))


def _nulls_first(sql: str) -> str:
    """SQLite sorts NULL before every value; PostgreSQL after (ascending). Say SQLite's order."""
    out, pos = [], 0
    for m in _ORDER_BY.finditer(sql):
        if m.start() < pos:
            continue
        end, depth, quote, i = len(sql), 0, False, m.end()
        while i < len(sql):
            ch = sql[i]
            if quote:
                quote = ch != "'"
            elif ch == "'":
                quote = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    end = i
                    break
                depth -= 1
            elif depth == 0 and _ORDER_END.match(sql, i) and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
                end = i
                break
            i += 1
        terms, start, depth, quote = [], m.end(), 0, False
        for j in range(m.end(), end):
            ch = sql[j]
            if quote:
                quote = ch != "'"
            elif ch == "'":
                quote = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                terms.append(sql[start:j])
                start = j + 1
        terms.append(sql[start:end])
        fixed = []
        for term in terms:
            t = term.strip()
            if re.search(r"(?i)\bNULLS\s+(FIRST|LAST)$", t):
                fixed.append(t)
            elif re.search(r"(?i)\bDESC$", t):
                fixed.append(f"{t} NULLS LAST")
            else:
                fixed.append(f"{t} NULLS FIRST")
        trailing = " " if end < len(sql) and not sql[end - 1].isspace() and sql[end] != ")" else ""
        out.append(sql[pos:m.end()] + " " + ", ".join(fixed) + (" " if sql[end - 1:end].isspace() else trailing))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def _placeholders(sql: str) -> tuple[str, tuple[int, ...]]:
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
    return "".join(out), tuple(order)


_cache: dict[str, Translated] = {}


def translate(sql: str) -> Translated:
    """The embedded store's statement ``sql`` for PostgreSQL (cached)."""
    done = _cache.get(sql)
    if done is None:
        text = sql
        for pattern, replacement in _SIMPLE:
            text = pattern.sub(replacement, text)
        text = _functions(text)
        text = _nulls_first(text)
        text, order = _placeholders(text)
        if not order:
            text = text.replace("%%", "%")
        done = _cache[sql] = Translated(text, order)
    return done
