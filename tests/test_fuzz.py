"""Fuzz: hypothesis over Hermes' hook payloads (missing, wrong-typed, huge, unicode fields) and
over the rows of a Hermes ``state.db``. No exception reaches Hermes (a hook callback never
raises), the import never crashes, and nothing is stored with a wrong type: every stored value
is NULL or of its column's declared type."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermetry.recorder.recorder import Recorder
from hermetry.sources.hermes.hooks import HermesCapture
from hermetry.stores.sqlite import SQLiteStore

#: every keyword argument Hermes 0.19.0 passes to some hook (hermes-reference.md), and a few it doesn't
KEYS = (
    "session_id", "task_id", "turn_id", "api_request_id", "model", "provider", "base_url", "api_mode",
    "platform", "sender_id", "user_message", "conversation_history", "is_first_turn", "api_call_count",
    "message_count", "tool_count", "approx_input_tokens", "request_char_count", "max_tokens", "started_at",
    "ended_at", "api_duration", "finish_reason", "response_model", "usage", "assistant_tool_call_count",
    "response", "status_code", "retry_count", "max_retries", "retryable", "reason", "error", "tool_name",
    "args", "tool_call_id", "result", "duration_ms", "status", "error_type", "error_message", "completed",
    "interrupted", "reason", "old_session_id", "new_session_id", "parent_session_id", "parent_turn_id",
    "child_session_id", "child_role", "child_status", "assistant_response", "first_chunk_at", "event",
    "turn_exit_reason", "failed", "telemetry_schema_version", "unexpected_field",
)

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50),
    st.text(st.characters(), min_size=1000, max_size=5000), st.binary(max_size=20),
    st.sampled_from(["", "ok", "error", "cli", "telegram", "stop", "length", "m", "s1", "t1", "r1",
                     "\x00", "🦊" * 10, "1e308", "nan", "-1"]),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
         "prompt_tokens", "total_tokens", "type", "message", "cost", "x"]), inner, max_size=6)), max_leaves=12)
_ids = st.sampled_from(["s1", "s2", "t1", "t2", "r1", "r2", "c1"])
_payloads = st.dictionaries(st.sampled_from(KEYS), st.one_of(_values, _ids), max_size=20)


def _typed(db: Path) -> list[str]:
    """Every stored value whose type is not its column's declared type (nor NULL)."""
    allowed = {"INTEGER": {"integer", "null"}, "REAL": {"real", "integer", "null"}, "TEXT": {"text", "null"}}
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    wrong = []
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, name, declared, *_ in conn.execute(f"PRAGMA table_xinfo({table})"):
                ok = allowed.get((declared or "").upper())
                if ok is None:
                    continue
                for (kind,) in conn.execute(f"SELECT DISTINCT typeof({name}) FROM {table}"):
                    if kind not in ok:
                        wrong.append(f"{table}.{name} ({declared}) holds {kind}")
                if (declared or "").upper() == "REAL":
                    for (value,) in conn.execute(f"SELECT {name} FROM {table} WHERE typeof({name}) = 'real'"):
                        if not math.isfinite(value):
                            wrong.append(f"{table}.{name} holds {value}")
    finally:
        conn.close()
    return wrong


def test_random_hook_payloads_never_raise_and_store_nothing_mistyped(tmp_path: Path) -> None:
    db = tmp_path / "telemetry.db"
    recorder = Recorder(lambda: SQLiteStore(db), register_atexit=False, flush_interval_s=0.05)
    capture = HermesCapture(recorder, profile="default")
    callbacks = capture.callbacks()
    calls = {"n": 0}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(sorted(callbacks)), _payloads), min_size=1, max_size=8))
    def run(sequence: list[tuple[str, dict[str, Any]]]) -> None:
        for hook, payload in sequence:
            assert callbacks[hook](**payload) is None  # returns, never raises
            calls["n"] += 1

    run()
    # and one well-formed call, so the file exists whatever the generated payloads held
    callbacks["on_session_start"](session_id="fuzz-anchor", model="m", platform="cli")
    deadline = 100
    while not recorder.flush(1.0) and deadline:
        deadline -= 1
    recorder.close()
    assert calls["n"] > 400
    assert db.exists()
    assert _typed(db) == []


_cells = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(),
                   st.text(max_size=30), st.binary(max_size=10),
                   st.sampled_from(["cli", "telegram", "cron_complete", "estimated", "unknown", "1e999", ""]))


def test_random_state_db_rows_import_without_a_crash_or_a_mistyped_value(tmp_path: Path) -> None:
    from hermes_state import SessionDB

    from hermetry.sources.backfill import BackfillError, import_state_db

    count = {"n": 0, "imported": 0}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.dictionaries(st.sampled_from(
        ["source", "user_id", "model", "billing_provider", "billing_base_url", "parent_session_id", "started_at",
         "ended_at", "end_reason", "message_count", "tool_call_count", "api_call_count", "input_tokens",
         "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "estimated_cost_usd",
         "actual_cost_usd", "cost_status", "cost_source", "pricing_version", "profile_name", "title"]),
        _cells, max_size=12), min_size=1, max_size=6),
        st.lists(st.dictionaries(st.sampled_from(["role", "content", "tool_name", "tool_calls", "timestamp",
                                                  "token_count", "finish_reason"]), _cells, max_size=6),
                 max_size=8))
    def run(sessions: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
        count["n"] += 1
        folder = tmp_path / f"case{count['n']}"
        folder.mkdir()
        state = folder / "state.db"
        SessionDB(state).close()
        conn = sqlite3.connect(state)
        for i, row in enumerate(sessions):
            cols = ["id", *row]
            conn.execute(f"INSERT OR IGNORE INTO sessions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                         [f"sess-{i}", *row.values()])
        for row in messages:
            cols = ["session_id", *row]
            conn.execute(f"INSERT OR IGNORE INTO messages ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                         ["sess-0", *row.values()])
        conn.commit()
        conn.close()
        store = folder / "telemetry.db"
        try:
            import_state_db(state, store)
        except BackfillError:
            return  # refused with a clear message: fine, nothing written
        count["imported"] += 1
        assert _typed(store) == []

    run()
    assert count["n"] > 10 and count["imported"] > 5, count
