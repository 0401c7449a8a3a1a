"""The embedded store's schema and its forward migrations.

``MIGRATIONS[n]`` takes a database at schema version ``n`` to ``n + 1``; the version lives in
``PRAGMA user_version``. Migrations only ever move forward and never drop captured data.
docs/telemetry-model.md documents every column.
"""

from __future__ import annotations

from hermetry.model.events import TASK_MAIN
from hermetry.model.outcomes import (
    REASON_LAST_CALL_FAILED,
    REASON_NO_SESSION_END,
    REASON_NO_TURN_END,
    RECONCILED_PREFIX,
    TurnOutcome,
)
from hermetry.stores.rollups import SQLITE_MIGRATION as ROLLUPS_MIGRATION
from hermetry.stores.rollups import SQLITE_MIGRATION_DAYS as ROLLUP_DAYS_MIGRATION
from hermetry.stores.rollups import SQLITE_MIGRATION_SEQ as ROLLUP_SEQ_MIGRATION
from hermetry.stores.rollups import SQLITE_MIGRATION_SESSIONS as ROLLUP_SESSIONS_MIGRATION

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id         TEXT PRIMARY KEY,
    parent_session_id  TEXT,
    parent_turn_id     TEXT,
    lineage            TEXT,            -- 'subagent' | 'continuation' | NULL
    source             TEXT,            -- Hermes platform/source: cli, telegram, api_server, cron, subagent, ...
    session_type       TEXT,            -- oneshot | interactive | gateway | api | cron | subagent | ...
    profile            TEXT,
    model              TEXT,
    provider           TEXT,
    runtime_version    TEXT,            -- e.g. 'hermes-agent 0.19.0'
    host               TEXT,
    started_at_ms      REAL,            -- Unix epoch milliseconds
    ended_at_ms        REAL,
    end_reason         TEXT,            -- Hermes' raw end_reason, verbatim
    outcome            TEXT,            -- hermetry.model.outcomes.SessionOutcome
    origin             TEXT NOT NULL DEFAULT 'live',   -- 'live' | 'backfill'
    updated_at_ms      REAL
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions(started_at_ms);
CREATE INDEX IF NOT EXISTS sessions_parent ON sessions(parent_session_id);

CREATE TABLE IF NOT EXISTS turns (
    turn_id            TEXT PRIMARY KEY,
    session_id         TEXT NOT NULL,
    task_id            TEXT,
    started_at_ms      REAL,
    ended_at_ms        REAL,
    wall_ms            REAL GENERATED ALWAYS AS (ended_at_ms - started_at_ms) VIRTUAL,
    queue_wait_ms      REAL,
    outcome            TEXT,            -- hermetry.model.outcomes.TurnOutcome; NULL while open
    outcome_reason     TEXT,
    origin             TEXT NOT NULL DEFAULT 'live'
);
CREATE INDEX IF NOT EXISTS turns_session ON turns(session_id);
CREATE INDEX IF NOT EXISTS turns_started ON turns(started_at_ms);

CREATE TABLE IF NOT EXISTS api_calls (
    api_call_id        TEXT PRIMARY KEY,  -- '<api_request_id>#<attempt>'
    api_request_id     TEXT NOT NULL,
    attempt            INTEGER NOT NULL,  -- 0 for the first try, 1.. for retries
    session_id         TEXT NOT NULL,
    turn_id            TEXT,
    model              TEXT,
    provider           TEXT,
    base_url           TEXT,
    api_mode           TEXT,
    response_model     TEXT,
    started_at_ms      REAL,
    latency_ms         REAL,
    ttft_ms            REAL,              -- NULL: not captured (non-streamed, or not measurable)
    streamed           INTEGER,
    status             TEXT NOT NULL,     -- 'ok' | 'error'
    finish_reason      TEXT,
    http_status        INTEGER,
    retry_count        INTEGER,
    error_type         TEXT,
    error_message      TEXT,              -- truncated and redacted
    input_tokens       INTEGER,           -- excludes cache reads and writes
    output_tokens      INTEGER,           -- includes reasoning tokens
    cache_read_tokens  INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens   INTEGER,           -- part of output_tokens
    provider_cost_usd  REAL,
    cost_usd           REAL,              -- NULL unless priced; never a stand-in 0
    cost_status        TEXT,              -- actual | estimated | included | unknown
    cost_source        TEXT,
    pricing_version    TEXT,
    origin             TEXT NOT NULL DEFAULT 'live'
);
CREATE INDEX IF NOT EXISTS api_calls_session ON api_calls(session_id);
CREATE INDEX IF NOT EXISTS api_calls_started ON api_calls(started_at_ms);
CREATE INDEX IF NOT EXISTS api_calls_turn ON api_calls(turn_id);

CREATE TABLE IF NOT EXISTS tool_calls (
    tool_call_id       TEXT PRIMARY KEY,
    session_id         TEXT NOT NULL,
    turn_id            TEXT,
    api_request_id     TEXT,
    tool_name          TEXT NOT NULL,
    toolset            TEXT,
    started_at_ms      REAL,
    latency_ms         REAL,
    status             TEXT NOT NULL,
    error_type         TEXT,
    error_message      TEXT,
    origin             TEXT NOT NULL DEFAULT 'live'
);
CREATE INDEX IF NOT EXISTS tool_calls_session ON tool_calls(session_id);
CREATE INDEX IF NOT EXISTS tool_calls_started ON tool_calls(started_at_ms);

-- One row per recording process: what it wrote and what it had to drop.
CREATE TABLE IF NOT EXISTS recorder_runs (
    run_id             TEXT PRIMARY KEY,
    host               TEXT,
    pid                INTEGER,
    started_at_ms      REAL,
    last_flush_at_ms   REAL,
    events_written     INTEGER NOT NULL DEFAULT 0,
    events_dropped     INTEGER NOT NULL DEFAULT 0,
    hermetry_version   TEXT
);
"""

#: Version 2: bookkeeping for the backfill importer (hermetry.sources.backfill). One row per
#: Hermes session imported from a state.db: what it looked like when imported (so a second
#: import skips it unless it changed) and Hermes' own counters that the canonical rows
#: summarize (a backfilled session's tokens are one synthetic API-call row per model, which
#: stands for ``api_call_count`` real calls).
SCHEMA_V2_BACKFILL = """
CREATE TABLE IF NOT EXISTS backfill_state (
    session_id         TEXT PRIMARY KEY,
    source_path        TEXT NOT NULL,     -- the state.db it was last imported from (resolved path)
    fingerprint        TEXT NOT NULL,     -- digest of the session's counters, end and messages
    imported_at_ms     REAL NOT NULL,
    api_call_count     INTEGER,           -- Hermes' sessions.api_call_count (NULL: not captured)
    message_count      INTEGER            -- messages seen in state.db for this session
);
CREATE INDEX IF NOT EXISTS backfill_state_source ON backfill_state(source_path);
"""

#: Version 3: ``hermetry reprice`` keeps every cost it replaces. One row per replaced cost of
#: an API call: the figure and provenance as they were, and when they were replaced.
SCHEMA_V3_COST_HISTORY = """
CREATE TABLE IF NOT EXISTS cost_history (
    api_call_id        TEXT NOT NULL,
    cost_usd           REAL,
    cost_status        TEXT,
    cost_source        TEXT,
    pricing_version    TEXT,
    replaced_at_ms     REAL NOT NULL,
    PRIMARY KEY (api_call_id, replaced_at_ms)
);
"""

#: Version 4: partial indexes over what is still open, so the reconciler that every recording
#: process runs when it opens the file costs nothing on a large history.
SCHEMA_V4_OPEN_INDEXES = """
CREATE INDEX IF NOT EXISTS turns_open ON turns(started_at_ms) WHERE outcome IS NULL;
CREATE INDEX IF NOT EXISTS sessions_open ON sessions(started_at_ms) WHERE ended_at_ms IS NULL AND outcome IS NULL;
"""

#: Version 5: numbers that mean what people think (issue 10).
#:
#: * ``api_calls.task``: ``main`` for the agent loop's own model calls, or the auxiliary task
#:   (``compression``, ``title_generation``, ``vision``, ``web_extract``, ``session_search``, …);
#: * ``sessions.run_status``: Hermes' own status of the run a session was (cron ``last_status``);
#: * ``turns.wall_ms`` is unknown (NULL) for an ``abandoned`` turn: it never reported an end, and
#:   the last activity seen is not when it ended (the generated column is dropped and re-added;
#:   no stored data changes);
#: * one ``reconciled:…`` vocabulary (``model.outcomes``) for what was inferred before.
#:
#: Imported auxiliary rows get task ``auxiliary`` here; the next import names their task.
SCHEMA_V5_TRUTH = f"""
ALTER TABLE api_calls ADD COLUMN task TEXT;
UPDATE api_calls SET task = CASE WHEN api_request_id LIKE 'backfill:%:aux:%' THEN 'auxiliary' ELSE '{TASK_MAIN}' END;
ALTER TABLE sessions ADD COLUMN run_status TEXT;
ALTER TABLE turns DROP COLUMN wall_ms;
ALTER TABLE turns ADD COLUMN wall_ms REAL GENERATED ALWAYS AS (
    CASE WHEN outcome = '{TurnOutcome.ABANDONED}' THEN NULL ELSE ended_at_ms - started_at_ms END) VIRTUAL;
UPDATE turns SET outcome_reason = '{REASON_LAST_CALL_FAILED}'
    WHERE outcome_reason LIKE '{RECONCILED_PREFIX}%' AND outcome = '{TurnOutcome.ERRORED}';
UPDATE turns SET outcome_reason = '{REASON_NO_TURN_END}'
    WHERE outcome_reason LIKE '{RECONCILED_PREFIX}%' AND outcome <> '{TurnOutcome.ERRORED}';
UPDATE sessions SET end_reason = '{REASON_NO_SESSION_END}' WHERE end_reason LIKE '{RECONCILED_PREFIX}%';
"""

#: Version 6: ``api_calls.call_count`` — how many model calls a row stands for. NULL for a live
#: row (one attempt); for a row the import made from Hermes' per-session totals, Hermes' own
#: ``api_call_count`` (NULL when Hermes had none: counted as one). The next import fills it in.
SCHEMA_V6_CALL_COUNT = """
ALTER TABLE api_calls ADD COLUMN call_count INTEGER;
"""

#: Version 7: rollups (hermetry.stores.rollups, which defines them): per-hour aggregates by the
#: report's dimensions, the dirty marks that say which hours need a rebuild (every hour that
#: has rows starts dirty), and the triggers that mark them on every write.
SCHEMA_V7_ROLLUPS = ROLLUPS_MIGRATION

#: Version 8: each exporter's own ledger, per recording process run (``recorder_runs.run_id``):
#: what an exporter (OTLP, …) could not deliver, so a drop is never only in a dead process's memory
#: (``hermetry doctor``, ``hermetry_recorder_dropped_total{hermetry_sink=…}``). A run's latest
#: figures replace its earlier ones (they are the process's running totals).
SCHEMA_V8_EXPORTER_RUNS = """
CREATE TABLE IF NOT EXISTS exporter_runs (
    run_id             TEXT NOT NULL,
    exporter           TEXT NOT NULL,     -- the sink's name: otlp, …
    events_dropped     INTEGER NOT NULL DEFAULT 0,  -- events it refused (its write failed, or it was disabled)
    spans_dropped      INTEGER NOT NULL DEFAULT 0,  -- spans it could not deliver
    points_dropped     INTEGER NOT NULL DEFAULT 0,  -- metric points it could not deliver
    failed_batches     INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,              -- truncated; no content
    updated_at_ms      REAL,
    PRIMARY KEY (run_id, exporter)
);
"""

#: Version 9: the rollups' day level (hermetry.stores.rollups.SQLITE_MIGRATION_DAYS).
SCHEMA_V9_ROLLUP_DAYS = ROLLUP_DAYS_MIGRATION

#: Version 10: rollup marks carry a sequence number (hermetry.stores.rollups.SQLITE_MIGRATION_SEQ).
SCHEMA_V10_ROLLUP_SEQ = ROLLUP_SEQ_MIGRATION

#: Version 11: the sessions started in a window by outcome (every report's session rates) read from
#: one index alone: walking ``sessions_started`` and looking each row up measured 7.6 s over 1M
#: sessions (10M model calls), a plain scan 1.4 s.
SCHEMA_V11_SESSION_OUTCOMES = """
CREATE INDEX IF NOT EXISTS sessions_started_outcome ON sessions(started_at_ms, outcome, origin, session_type);
"""

#: Version 12: the sessions rollup (hermetry.stores.rollups.SESSIONS): sessions by start hour × the
#: report's dimensions × outcome × origin — what every report's session rates and the activity figures
#: read instead of a pass over every session started in the window (1.3 s + 1.0 s over 1M sessions).
#: The upgrade creates its tables empty and records it as pending (``rollup_meta``
#: ``sessions_rollup_pending_from_hour``); ``rollups.build_sessions`` builds it from the sessions table
#: afterwards, in short write transactions (``refresh``, ``hermetry rollup``), and readers take the
#: sessions table until it is built — one GROUP BY inside the migration held the write lock ~30 s on
#: 1M sessions. No hour is re-marked (an upgrade is not a rebuild). A file upgraded before this change
#: has no pending row: built.
SCHEMA_V12_ROLLUP_SESSIONS = ROLLUP_SESSIONS_MIGRATION

#: MIGRATIONS[n] upgrades schema version n to n + 1 (version 0 is an empty file).
MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2_BACKFILL, SCHEMA_V3_COST_HISTORY, SCHEMA_V4_OPEN_INDEXES, SCHEMA_V5_TRUTH,
                         SCHEMA_V6_CALL_COUNT, SCHEMA_V7_ROLLUPS, SCHEMA_V8_EXPORTER_RUNS, SCHEMA_V9_ROLLUP_DAYS,
                         SCHEMA_V10_ROLLUP_SEQ, SCHEMA_V11_SESSION_OUTCOMES, SCHEMA_V12_ROLLUP_SESSIONS]

SCHEMA_VERSION = len(MIGRATIONS)
