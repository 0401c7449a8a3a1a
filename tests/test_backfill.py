"""Backfill of Hermes' state.db into the canonical model (hermetry.sources.backfill).

Every state.db here is written by Hermes' own ``hermes_state.SessionDB`` (create_session,
append_message, update_token_counts, record_auxiliary_usage, archive_and_compact,
replace_messages, end_session), never by hand-written SQL — except where a test needs a file
Hermes 0.19.0 cannot write: an older schema (made from a SessionDB-built file by copying
tables without some columns, see ``_downgrade``), a damaged file, and the benchmark's bulk
rows (``_bulk_state_db``, after SessionDB created the schema).

Expected figures are the literals the test wrote (timestamps, tokens, costs), not values read
back through the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermetry.model.events import ApiCall, SessionEnded, SessionStarted, TurnEnded, TurnStarted
from hermetry.model.outcomes import SessionOutcome
from hermetry.sources.backfill import (
    BackfillError,
    ImportResult,
    import_hermes_home,
    import_state_db,
    profile_for_path,
)
from hermetry.sources.backfill.mapping import (
    REASON_DERIVED,
    REASON_NO_FINAL_ANSWER,
    REASON_NO_REPLY,
    cost_fields,
    derive_turns_and_tools,
    tool_names,
)
from hermetry.sources.backfill.state_db import MessageRow
from hermetry.stores.sqlite import SQLiteStore
from hermetry.testing.query import rows

TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")

# Text that must never reach the telemetry store (privacy: no prompts, responses, tool args).
SECRET_PROMPT = "PROMPT-7f3a please summarise my tax return"
SECRET_ANSWER = "ANSWER-91bc your refund is 1234 dollars"
SECRET_ARGS = "ARGS-55d0 rm -rf /home/alice/private"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

q = rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def tool_call(call_id: str, name: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps({"cmd": SECRET_ARGS})}}


@pytest.fixture
def SessionDB(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hermes"))
    (tmp_path / "hermes").mkdir(exist_ok=True)
    from hermes_state import SessionDB as _SessionDB

    return _SessionDB


class History:
    """A state.db written through Hermes' SessionDB, plus what the test wrote into it."""

    def __init__(self, session_db_cls: Any, path: Path) -> None:
        self.path = path
        self.db = session_db_cls(path)
        self.expect: dict[str, dict[str, Any]] = {}
        self.n = 0

    def session(self, sid: str, source: str, **kw: Any) -> float:
        self.db.create_session(sid, source, **kw)
        started = self.db.get_session(sid)["started_at"]
        self.expect[sid] = {"source": source, "turns": [], "tools": Counter(), **kw}
        return float(started)

    def turn(self, sid: str, t_user: float, *, steps: list[tuple[str, float, Any]], final: tuple[float, str] | None,
             expect: str, reason: str, text: str | None = None) -> None:
        """A user message at ``t_user``, tool-calling steps, then an optional final answer."""
        self.n += 1
        self.db.append_message(sid, "user", text or f"{SECRET_PROMPT} #{self.n}", timestamp=t_user)
        last = t_user
        for role, t, payload in steps:
            if role == "assistant":
                self.db.append_message(sid, "assistant", None, tool_calls=payload, timestamp=t)
                for tc in payload:
                    self.expect[sid]["tools"][tc["function"]["name"]] += 1
                last = t
            else:  # tool result
                self.db.append_message(sid, "tool", SECRET_ANSWER, tool_call_id=payload[0], tool_name=payload[1],
                                       timestamp=t)
        if final is not None:
            self.db.append_message(sid, "assistant", f"{SECRET_ANSWER} {final[1]}", timestamp=final[0])
            last = final[0]
        self.expect[sid]["turns"].append({"start": ms(t_user), "end": ms(last), "outcome": expect, "reason": reason})

    def close(self) -> None:
        self.db.close()


def _copies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as Hermes' compressor hands them back to SessionDB (fresh dicts, same fields)."""
    keys = ("role", "content", "tool_call_id", "tool_name", "tool_calls", "timestamp")
    return [{k: m[k] for k in keys if m.get(k) is not None} for m in messages]


def build_history(session_db_cls: Any, path: Path) -> History:
    """Many sources and end reasons, a compression chain, a subagent, tools, tokens and costs."""
    h = History(session_db_cls, path)
    db = h.db

    # CLI: two turns, a model switch mid-session (two session_model_usage rows), an auxiliary
    # title call, estimated costs.
    t = h.session("cli-1", "cli", model="anthropic/claude-sonnet-4")
    h.turn("cli-1", t + 1.0, steps=[("assistant", t + 2.5, [tool_call("c1", "terminal"), tool_call("c2", "read_file")]),
                                    ("tool", t + 3.0, ("c1", "terminal")), ("tool", t + 3.2, ("c2", "read_file"))],
           final=(t + 4.75, "done"), expect="completed", reason=REASON_DERIVED)
    h.turn("cli-1", t + 10.0, steps=[], final=(t + 12.5, "ok"), expect="completed", reason=REASON_DERIVED)
    db.update_token_counts("cli-1", input_tokens=1200, output_tokens=300, cache_read_tokens=5000, cache_write_tokens=700,
                           reasoning_tokens=120, model="anthropic/claude-sonnet-4", estimated_cost_usd=0.0123,
                           cost_status="estimated", cost_source="official_docs_snapshot", pricing_version="2026-01",
                           billing_provider="anthropic", api_call_count=2)
    db.update_token_counts("cli-1", input_tokens=800, output_tokens=200, cache_read_tokens=0, cache_write_tokens=0,
                           reasoning_tokens=0, model="openai/gpt-4.1", estimated_cost_usd=0.0077,
                           cost_status="estimated", cost_source="official_docs_snapshot", billing_provider="openrouter",
                           api_call_count=1)
    db.record_auxiliary_usage("cli-1", "title_generation", model="gpt-4o-mini", billing_provider="openai",
                              input_tokens=50, output_tokens=10, estimated_cost_usd=0.0001)
    db.end_session("cli-1", "cli_close")
    h.expect["cli-1"].update(end="cli_close", provider="anthropic", tokens={"input_tokens": 2000, "output_tokens": 500,
                             "cache_read_tokens": 5000, "cache_write_tokens": 700, "reasoning_tokens": 120},
                             cost=0.02, aux={"input_tokens": 50, "output_tokens": 10})

    # Subagent child of cli-1.
    t = h.session("sub-1", "subagent", model="anthropic/claude-haiku-4", parent_session_id="cli-1")
    h.turn("sub-1", t + 1.0, steps=[("assistant", t + 1.5, [tool_call("s1", "web_search")]),
                                    ("tool", t + 2.0, ("s1", "web_search"))],
           final=(t + 3.0, "found"), expect="completed", reason=REASON_DERIVED)
    db.update_token_counts("sub-1", input_tokens=400, output_tokens=90, model="anthropic/claude-haiku-4",
                           estimated_cost_usd=0.001, cost_status="estimated", billing_provider="anthropic",
                           api_call_count=2)
    db.end_session("sub-1", "agent_close")
    h.expect["sub-1"].update(end="agent_close", provider="anthropic", tokens={"input_tokens": 400, "output_tokens": 90,
                             "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0}, cost=0.001)

    # Telegram: the turn stops after a tool call (no final answer); Hermes could not price it
    # (0.0 + unknown → unknown, never $0). Gateway expiry 'idle'.
    t = h.session("tg-1", "telegram", model="gpt-4o")
    h.turn("tg-1", t + 2.0, steps=[("assistant", t + 6.0, [tool_call("g1", "terminal")]),
                                   ("tool", t + 7.0, ("g1", "terminal"))],
           final=None, expect="unknown", reason=REASON_NO_FINAL_ANSWER)
    db.update_token_counts("tg-1", input_tokens=900, output_tokens=40, model="gpt-4o", estimated_cost_usd=0.0,
                           cost_status="unknown", cost_source="none", billing_provider="custom", api_call_count=1)
    db.end_session("tg-1", "idle")
    h.expect["tg-1"].update(end="idle", provider="custom", tokens={"input_tokens": 900, "output_tokens": 40,
                            "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0}, cost=None)

    # Cron: a subscription ('included' → a real 0.0).
    t = h.session("cron-1", "cron", model="gpt-5")
    h.turn("cron-1", t + 1.0, steps=[], final=(t + 31.0, "report"), expect="completed", reason=REASON_DERIVED)
    db.update_token_counts("cron-1", input_tokens=100, output_tokens=20, model="gpt-5", estimated_cost_usd=0.0,
                           cost_status="included", cost_source="user_override", billing_provider="openai-codex",
                           api_call_count=1)
    db.end_session("cron-1", "cron_complete")
    h.expect["cron-1"].update(end="cron_complete", provider="openai-codex", tokens={"input_tokens": 100,
                              "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0,
                              "reasoning_tokens": 0}, cost=0.0)

    # API server: still open (end_reason NULL); the gateway writes absolute totals (no per-model split).
    t = h.session("api-1", "api_server", model="qwen3")
    h.turn("api-1", t + 0.5, steps=[], final=(t + 0.9, "hi"), expect="completed", reason=REASON_DERIVED)
    db.update_token_counts("api-1", input_tokens=70, output_tokens=7, model="qwen3", estimated_cost_usd=0.0,
                           cost_status="unknown", billing_provider="custom", api_call_count=1, absolute=True)
    h.expect["api-1"].update(end=None, provider="custom", tokens={"input_tokens": 70, "output_tokens": 7,
                             "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0}, cost=None)

    # Webhook: a request nobody answered, ended with a custom string the API lets clients set.
    t = h.session("wh-1", "webhook", model="gpt-4o")
    h.turn("wh-1", t + 1.0, steps=[], final=None, expect="unknown", reason=REASON_NO_REPLY)
    db.end_session("wh-1", "Client Went Away ✨")
    h.expect["wh-1"].update(end="Client Went Away ✨", provider=None, tokens=None, cost=None)

    # Compression chain: parent ends 'compression'; the child is seeded with the compacted
    # history (Hermes' replace_messages) and continues with one new turn; then /new.
    t = h.session("comp-p", "cli", model="gpt-4.1")
    h.turn("comp-p", t + 1.0, steps=[], final=(t + 2.0, "a"), expect="completed", reason=REASON_DERIVED)
    h.turn("comp-p", t + 3.0, steps=[], final=(t + 5.0, "b"), expect="completed", reason=REASON_DERIVED)
    db.update_token_counts("comp-p", input_tokens=90_000, output_tokens=1000, model="gpt-4.1",
                           estimated_cost_usd=0.19, cost_status="estimated", billing_provider="openai", api_call_count=2)
    db.end_session("comp-p", "compression")
    h.expect["comp-p"].update(end="compression", provider="openai", tokens={"input_tokens": 90_000,
                              "output_tokens": 1000, "cache_read_tokens": 0, "cache_write_tokens": 0,
                              "reasoning_tokens": 0}, cost=0.19)
    t2 = h.session("comp-c", "cli", model="gpt-4.1", parent_session_id="comp-p")
    head, tail = _copies(db.get_messages("comp-p")[:1]), _copies(db.get_messages("comp-p")[-2:])
    db.replace_messages("comp-c", head + [
        {"role": "assistant", "content": "[CONTEXT COMPACTION — REFERENCE ONLY] Earlier turns were compacted ..."},
    ] + tail)
    h.turn("comp-c", t2 + 1.0, steps=[], final=(t2 + 1.5, "c"), expect="completed", reason=REASON_DERIVED)
    db.update_token_counts("comp-c", input_tokens=3000, output_tokens=100, model="gpt-4.1",
                           estimated_cost_usd=0.007, cost_status="estimated", billing_provider="openai", api_call_count=1)
    db.end_session("comp-c", "new_session")
    h.expect["comp-c"].update(end="new_session", provider="openai", tokens={"input_tokens": 3000,
                              "output_tokens": 100, "cache_read_tokens": 0, "cache_write_tokens": 0,
                              "reasoning_tokens": 0}, cost=0.007)

    # In-place compaction (Hermes 0.19.0's default): the old rows are archived and the
    # summary plus the kept tail re-inserted under the same id; then one more turn.
    t = h.session("inpl-1", "discord", model="gpt-4.1")
    h.turn("inpl-1", t + 1.0, steps=[], final=(t + 2.0, "1"), expect="completed", reason=REASON_DERIVED)
    h.turn("inpl-1", t + 3.0, steps=[("assistant", t + 3.5, [tool_call("i1", "terminal")]),
                                     ("tool", t + 3.7, ("i1", "terminal"))],
           final=(t + 4.0, "2"), expect="completed", reason=REASON_DERIVED)
    before = db.get_messages("inpl-1")
    # kept head (the first exchange), the summary, kept tail (the last turn, with its tool call)
    db.archive_and_compact("inpl-1", _copies(before[:2]) + [
        {"role": "user", "content": "[CONTEXT SUMMARY]: earlier we did things"}] + _copies(before[-4:]))
    h.turn("inpl-1", t + 9.0, steps=[], final=(t + 9.25, "3"), expect="completed", reason=REASON_DERIVED)
    db.end_session("inpl-1", "session_reset")
    h.expect["inpl-1"].update(end="session_reset", provider=None, tokens=None, cost=None)

    # A branch: the child continues a copy of the parent's conversation.
    t = h.session("br-p", "tui", model="m1")
    h.turn("br-p", t + 1.0, steps=[], final=(t + 2.0, "x"), expect="completed", reason=REASON_DERIVED)
    db.end_session("br-p", "branched")
    h.expect["br-p"].update(end="branched", provider=None, tokens=None, cost=None)
    t2 = h.session("br-c", "tui", model="m1", parent_session_id="br-p")
    db.replace_messages("br-c", _copies(db.get_messages("br-p")))
    h.turn("br-c", t2 + 5.0, steps=[], final=(t2 + 6.0, "y"), expect="completed", reason=REASON_DERIVED)
    h.expect["br-c"].update(end=None, provider=None, tokens=None, cost=None)
    return h


@pytest.fixture
def history(SessionDB: Any, tmp_path: Path) -> History:
    h = build_history(SessionDB, tmp_path / "hermes" / "state.db")
    h.close()
    return h


# ---------------------------------------------------------------------------------------------
# The import reproduces what Hermes recorded
# ---------------------------------------------------------------------------------------------

def test_import_reproduces_sessions_turns_tools_tokens_and_costs(history: History, tmp_path: Path) -> None:
    store = tmp_path / "telemetry.db"
    hermes = {r["id"]: r for r in q(history.path, "SELECT * FROM sessions")}
    before = sha256(history.path)

    calls: list[tuple[int, int]] = []
    result = import_state_db(history.path, store, progress=lambda d, n: calls.append((d, n)))

    assert sha256(history.path) == before
    assert result.sessions_seen == result.sessions_imported == result.sessions_new == len(history.expect)
    assert result.sessions_skipped == result.sessions_unchanged == result.sessions_live == 0
    assert calls[0] == (0, len(history.expect)) and calls[-1] == (len(history.expect), len(history.expect))
    assert result.not_captured == ()

    sessions = {r["session_id"]: r for r in q(store, "SELECT * FROM sessions")}
    assert set(sessions) == set(history.expect)
    # what each session's end means, written out (not computed with hermetry's own mapping)
    expected_outcome = {"cli-1": "completed", "sub-1": "completed", "tg-1": "expired", "cron-1": "completed",
                        "api-1": None, "wh-1": "unknown", "comp-p": "compressed", "comp-c": "reset",
                        "inpl-1": "reset", "br-p": "reset", "br-c": None}
    assert set(expected_outcome) == set(history.expect)
    for sid, exp in history.expect.items():
        row, src = sessions[sid], hermes[sid]
        assert row["origin"] == "backfill"
        assert row["source"] == exp["source"]
        assert row["model"] == exp["model"]
        assert row["provider"] == exp["provider"]
        assert row["profile"] == "default"  # HERMES_HOME is not under profiles/
        assert row["parent_session_id"] == exp.get("parent_session_id")
        assert row["started_at_ms"] == ms(src["started_at"])
        assert row["end_reason"] == exp["end"]  # verbatim, odd strings included
        if exp["end"] is None:
            assert row["ended_at_ms"] is None and row["outcome"] is None
        else:
            assert row["ended_at_ms"] == ms(src["ended_at"])
            assert row["outcome"] == expected_outcome[sid], sid

    # lineage and session types
    assert sessions["sub-1"]["lineage"] == "subagent" and sessions["sub-1"]["session_type"] == "subagent"
    assert sessions["comp-c"]["lineage"] == "continuation" and sessions["br-c"]["lineage"] == "continuation"
    assert sessions["cli-1"]["lineage"] is None
    assert {sid: sessions[sid]["session_type"] for sid in ("cli-1", "tg-1", "cron-1", "api-1", "wh-1", "br-p")} == {
        "cli-1": "interactive", "tg-1": "gateway", "cron-1": "cron", "api-1": "api", "wh-1": "webhook",
        "br-p": "interactive"}
    outcomes = {sid: sessions[sid]["outcome"] for sid in ("cli-1", "comp-p", "comp-c", "tg-1", "wh-1", "br-p")}
    assert outcomes == {"cli-1": SessionOutcome.COMPLETED, "comp-p": SessionOutcome.COMPRESSED,
                        "comp-c": SessionOutcome.RESET, "tg-1": SessionOutcome.EXPIRED,
                        "wh-1": SessionOutcome.UNKNOWN, "br-p": SessionOutcome.RESET}

    # turns: one per user request (compaction summaries and copied history start none),
    # wall time from the timestamps written, derived outcome and marker
    for sid, exp in history.expect.items():
        turns = q(store, "SELECT * FROM turns WHERE session_id = ? ORDER BY started_at_ms", sid)
        got = [{"start": t["started_at_ms"], "end": t["ended_at_ms"], "outcome": t["outcome"],
                "reason": t["outcome_reason"]} for t in turns]
        assert got == exp["turns"], sid
        assert all(t["wall_ms"] == t["ended_at_ms"] - t["started_at_ms"] for t in turns)
        assert all(t["origin"] == "backfill" and t["turn_id"].startswith(f"backfill:{sid}:") for t in turns)
    cli_walls = [t["wall_ms"] for t in q(store, "SELECT wall_ms FROM turns WHERE session_id='cli-1' ORDER BY 1")]
    assert cli_walls == [2500, 3750]
    assert len(history.expect["inpl-1"]["turns"]) == 3 and len(history.expect["comp-c"]["turns"]) == 1

    # tool calls by name, no latency, status unknown, tied to their turn
    for sid, exp in history.expect.items():
        tools = q(store, "SELECT * FROM tool_calls WHERE session_id = ?", sid)
        assert Counter(t["tool_name"] for t in tools) == exp["tools"], sid
        assert all(t["latency_ms"] is None and t["status"] == "unknown" and t["turn_id"] for t in tools)
    assert result.tool_calls == sum(sum(e["tools"].values()) for e in history.expect.values())

    # tokens: the main-loop rows sum exactly to Hermes' session totals, per kind
    for sid, exp in history.expect.items():
        main = q(store, "SELECT * FROM api_calls WHERE session_id = ? AND api_request_id NOT LIKE '%:aux:%'", sid)
        if exp["tokens"] is None:
            assert main == [], sid
            continue
        for kind in TOKEN_KINDS:
            assert sum(r[kind] for r in main) == exp["tokens"][kind] == hermes[sid][kind], (sid, kind)
        assert all(r["latency_ms"] is None and r["ttft_ms"] is None and r["status"] == "ok" and r["attempt"] == 0
                   and r["api_request_id"].startswith(f"backfill:{sid}:") for r in main)
        costs = [r["cost_usd"] for r in main]
        if exp["cost"] is None:
            assert costs == [None] * len(costs) and {r["cost_status"] for r in main} == {"unknown"}, sid
        else:
            assert sum(c for c in costs if c is not None) == pytest.approx(exp["cost"], abs=1e-12), sid

    # the model switch is kept: one row per model route
    cli = {r["model"]: r for r in q(store, "SELECT * FROM api_calls WHERE session_id='cli-1' "
                                           "AND api_request_id NOT LIKE '%:aux:%'")}
    assert set(cli) == {"anthropic/claude-sonnet-4", "openai/gpt-4.1"}
    assert cli["openai/gpt-4.1"]["provider"] == "openrouter" and cli["openai/gpt-4.1"]["input_tokens"] == 800
    assert cli["anthropic/claude-sonnet-4"]["cost_usd"] == pytest.approx(0.0123)
    assert cli["anthropic/claude-sonnet-4"]["cost_status"] == "estimated"
    assert cli["anthropic/claude-sonnet-4"]["cost_source"] == "official_docs_snapshot"
    assert cli["anthropic/claude-sonnet-4"]["pricing_version"] == "2026-01"
    cron = q(store, "SELECT * FROM api_calls WHERE session_id='cron-1'")
    assert [(r["cost_usd"], r["cost_status"]) for r in cron] == [(0.0, "included")]

    # Hermes' auxiliary calls (outside the session totals) are their own rows
    aux = q(store, "SELECT * FROM api_calls WHERE api_request_id LIKE '%:aux:%'")
    assert [(r["session_id"], r["model"], r["input_tokens"], r["output_tokens"]) for r in aux] == [
        ("cli-1", "gpt-4o-mini", 50, 10)]
    # that row carries no cost provenance, so it is re-estimated from published prices, as Hermes'
    # own insights does: gpt-4o-mini at $0.15 / $0.60 per million input / output tokens
    assert (aux[0]["cost_status"], aux[0]["cost_source"]) == ("estimated", "genai-prices")
    assert aux[0]["cost_usd"] == pytest.approx((50 * 0.15 + 10 * 0.60) / 1_000_000, abs=1e-12)

    # grand totals: state.db's sessions + auxiliary usage == the store's API-call rows
    for kind in TOKEN_KINDS:
        hermes_total = sum(r[kind] or 0 for r in hermes.values()) + sum(
            r[kind] for r in q(history.path, "SELECT * FROM session_model_usage WHERE task <> ''"))
        assert sum(r[kind] or 0 for r in q(store, "SELECT * FROM api_calls")) == hermes_total

    # bookkeeping: Hermes' own call counts are kept beside the synthetic rows
    state = {r["session_id"]: r for r in q(store, "SELECT * FROM backfill_state")}
    assert state["cli-1"]["api_call_count"] == 3 and state["cli-1"]["source_path"] == str(history.path.resolve())


def test_no_message_content_reaches_the_store(history: History, tmp_path: Path) -> None:
    store = tmp_path / "telemetry.db"
    import_state_db(history.path, store)
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("telemetry.db*"))
    for secret in (SECRET_PROMPT, SECRET_ANSWER, SECRET_ARGS, "tax return", "rm -rf"):
        assert secret.encode() not in blob


def test_second_import_adds_nothing_and_changed_sessions_are_replaced(
    SessionDB: Any, history: History, tmp_path: Path
) -> None:
    store = tmp_path / "telemetry.db"
    first = import_state_db(history.path, store)
    snapshot = {t: q(store, f"SELECT * FROM {t} ORDER BY 1") for t in ("turns", "api_calls", "tool_calls")}
    sessions = q(store, "SELECT session_id, source, model, provider, end_reason, outcome FROM sessions ORDER BY 1")

    second = import_state_db(history.path, store)
    assert second.sessions_seen == first.sessions_seen
    assert second.sessions_unchanged == first.sessions_imported
    assert second.sessions_imported == second.events == second.turns == second.api_calls == 0
    assert {t: q(store, f"SELECT * FROM {t} ORDER BY 1") for t in snapshot} == snapshot
    assert q(store, "SELECT session_id, source, model, provider, end_reason, outcome FROM sessions ORDER BY 1") == sessions

    # Hermes continues the open API-server session: one more turn and absolute totals.
    db = SessionDB(history.path)
    t = db.get_session("api-1")["started_at"]
    db.append_message("api-1", "user", SECRET_PROMPT, timestamp=t + 20.0)
    db.append_message("api-1", "assistant", SECRET_ANSWER, timestamp=t + 26.0)
    db.update_token_counts("api-1", input_tokens=150, output_tokens=19, model="qwen3", api_call_count=2,
                           absolute=True)
    db.end_session("api-1", "agent_close")
    db.close()

    third = import_state_db(history.path, store)
    assert (third.sessions_imported, third.sessions_changed, third.sessions_new) == (1, 1, 0)
    assert third.sessions_unchanged == first.sessions_imported - 1
    api = q(store, "SELECT * FROM api_calls WHERE session_id='api-1'")
    assert [(r["input_tokens"], r["output_tokens"]) for r in api] == [(150, 19)]  # replaced, not added
    turns = q(store, "SELECT * FROM turns WHERE session_id='api-1' ORDER BY started_at_ms")
    assert [t["wall_ms"] for t in turns] == [400, 6000]
    row = q(store, "SELECT * FROM sessions WHERE session_id='api-1'")[0]
    assert (row["end_reason"], row["outcome"]) == ("agent_close", "completed")
    assert import_state_db(history.path, store).sessions_imported == 0

    # Hermes resumes an ended session (reopen_session clears its end): the import follows
    db = SessionDB(history.path)
    db.reopen_session("tg-1")
    db.close()
    assert import_state_db(history.path, store).sessions_changed == 1
    row = q(store, "SELECT * FROM sessions WHERE session_id='tg-1'")[0]
    assert (row["ended_at_ms"], row["end_reason"], row["outcome"]) == (None, None, None)


def test_state_db_is_untouched_while_hermes_has_it_open(SessionDB: Any, tmp_path: Path) -> None:
    """Hermes holds the file open (WAL with uncheckpointed writes): read, never written."""
    path = tmp_path / "hermes" / "state.db"
    h = build_history(SessionDB, path)  # not closed: Hermes still running
    wal = Path(f"{path}-wal")
    assert wal.exists()
    hashes = (sha256(path), sha256(wal))
    result = import_state_db(path, tmp_path / "telemetry.db")
    assert result.sessions_imported == len(h.expect)
    assert (sha256(path), sha256(wal)) == hashes
    # and Hermes can keep writing while the store is read
    h.db.append_message("cli-1", "user", "more", timestamp=time.time())
    h.close()


def test_hermes_writing_during_the_import(SessionDB: Any, tmp_path: Path) -> None:
    path = tmp_path / "hermes" / "state.db"
    h = build_history(SessionDB, path)
    stop = threading.Event()

    def writer() -> None:
        db = SessionDB(path)
        i = 0
        while not stop.is_set():
            db.create_session(f"late-{i}", "cli")
            db.append_message(f"late-{i}", "user", "x", timestamp=time.time())
            i += 1
        db.close()

    th = threading.Thread(target=writer)
    th.start()
    try:
        result = import_state_db(path, tmp_path / "telemetry.db", batch_size=2)
    finally:
        stop.set()
        th.join()
        h.close()
    assert result.sessions_imported >= len(h.expect)
    again = import_state_db(path, tmp_path / "telemetry.db")
    assert again.sessions_unchanged == result.sessions_imported  # one consistent snapshot, then the rest
    assert again.sessions_imported == again.sessions_seen - result.sessions_imported


def test_totals_not_split_by_model_get_a_rest_row(SessionDB: Any, tmp_path: Path) -> None:
    """Per-call deltas feed session_model_usage; the gateway's absolute totals do not. The rows
    still sum to the session totals: the unattributed part is one ``…:rest`` row, and a split
    that exceeds the totals is not used at all."""
    path = tmp_path / "hermes" / "state.db"
    db = SessionDB(path)
    db.create_session("gw-1", "telegram", model="gpt-4o")
    db.update_token_counts("gw-1", input_tokens=100, output_tokens=10, model="gpt-4o", billing_provider="openai",
                           estimated_cost_usd=0.001, cost_status="estimated", api_call_count=1)
    db.update_token_counts("gw-1", input_tokens=350, output_tokens=45, model="gpt-4o", estimated_cost_usd=0.004,
                           cost_status="estimated", api_call_count=3, absolute=True)
    db.create_session("gw-2", "telegram", model="gpt-4o")
    db.update_token_counts("gw-2", input_tokens=100, output_tokens=10, model="gpt-4o", billing_provider="openai",
                           api_call_count=1)
    db.update_token_counts("gw-2", input_tokens=60, output_tokens=5, model="gpt-4o", api_call_count=1, absolute=True)
    db.close()
    store = tmp_path / "telemetry.db"
    import_state_db(path, store)
    gw1 = {r["api_request_id"]: r for r in q(store, "SELECT * FROM api_calls WHERE session_id='gw-1'")}
    assert {k: (r["input_tokens"], r["output_tokens"]) for k, r in gw1.items()} == {
        "backfill:gw-1:gpt-4o@openai": (100, 10), "backfill:gw-1:gpt-4o:rest": (250, 35)}
    assert sum(r["cost_usd"] for r in gw1.values()) == pytest.approx(0.004)
    gw2 = q(store, "SELECT * FROM api_calls WHERE session_id='gw-2'")
    assert [(r["api_request_id"], r["input_tokens"], r["output_tokens"]) for r in gw2] == [
        ("backfill:gw-2:gpt-4o", 60, 5)]


# ---------------------------------------------------------------------------------------------
# Live capture first: never double counted
# ---------------------------------------------------------------------------------------------

def test_session_captured_live_is_not_double_counted(SessionDB: Any, tmp_path: Path) -> None:
    store_path = tmp_path / "telemetry.db"
    path = tmp_path / "hermes" / "state.db"
    db = SessionDB(path)
    db.create_session("live-1", "telegram", model="gpt-4o")
    t = db.get_session("live-1")["started_at"]

    # the plugin captured this session live: exact per-call rows
    store = SQLiteStore(store_path)
    store.write([
        SessionStarted(session_id="live-1", started_at_ms=ms(t), source="telegram", session_type="gateway",
                       model="gpt-4o", profile="default"),
        TurnStarted(turn_id="live-1:task:abc", session_id="live-1", started_at_ms=ms(t + 1)),
        ApiCall(api_request_id="req-1", attempt=0, session_id="live-1", turn_id="live-1:task:abc",
                started_at_ms=ms(t + 1.1), latency_ms=812.0, status="ok", model="gpt-4o", input_tokens=900,
                output_tokens=40, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0),
        TurnEnded(turn_id="live-1:task:abc", session_id="live-1", ended_at_ms=ms(t + 2), outcome="completed"),
    ])
    store.close()

    db.append_message("live-1", "user", SECRET_PROMPT, timestamp=t + 1)
    db.append_message("live-1", "assistant", SECRET_ANSWER, timestamp=t + 2)
    db.update_token_counts("live-1", input_tokens=900, output_tokens=40, model="gpt-4o", billing_provider="openai",
                           estimated_cost_usd=0.0027, cost_status="estimated", api_call_count=1)
    db.end_session("live-1", "idle")
    # and one session that was never seen live
    db.create_session("old-1", "cli", model="gpt-4o")
    db.update_token_counts("old-1", input_tokens=10, output_tokens=1, model="gpt-4o", api_call_count=1)
    db.close()

    result = import_state_db(path, store_path)
    assert (result.sessions_imported, result.sessions_live) == (2, 1)
    api = q(store_path, "SELECT * FROM api_calls WHERE session_id='live-1'")
    assert [(r["api_request_id"], r["origin"], r["input_tokens"]) for r in api] == [("req-1", "live", 900)]
    turns = q(store_path, "SELECT * FROM turns WHERE session_id='live-1'")
    assert [(t["turn_id"], t["origin"]) for t in turns] == [("live-1:task:abc", "live")]
    row = q(store_path, "SELECT * FROM sessions WHERE session_id='live-1'")[0]
    assert row["origin"] == "live"
    assert row["provider"] == "openai"  # a field the live capture lacked is filled in
    assert (row["end_reason"], row["outcome"]) == ("idle", "expired")
    assert sum(r["input_tokens"] for r in q(store_path, "SELECT * FROM api_calls")) == 900 + 10
    assert import_state_db(path, store_path).sessions_imported == 0


def test_live_values_win_over_backfill(SessionDB: Any, tmp_path: Path) -> None:
    path = tmp_path / "hermes" / "state.db"
    db = SessionDB(path)
    db.create_session("s", "cli", model="model-in-state-db")
    db.end_session("s", "cli_close")
    db.close()
    store = SQLiteStore(tmp_path / "telemetry.db")
    store.write([SessionStarted(session_id="s", started_at_ms=1, source="cli", model="live-model"),
                 SessionEnded(session_id="s", ended_at_ms=2, end_reason="tui_close", outcome="completed")])
    store.close()
    import_state_db(path, tmp_path / "telemetry.db")
    row = q(tmp_path / "telemetry.db", "SELECT * FROM sessions")[0]
    assert (row["model"], row["end_reason"], row["started_at_ms"]) == ("live-model", "tui_close", 1)


# ---------------------------------------------------------------------------------------------
# Schema drift, damage, locks
# ---------------------------------------------------------------------------------------------

def _downgrade(path: Path, drop: dict[str, set[str]], drop_tables: tuple[str, ...] = ()) -> None:
    """Make an older-schema copy: rebuild tables without some columns (SQLite cannot drop
    columns that indexes or foreign keys use), drop whole tables, add an unknown column."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys=OFF")
    for trig in [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]:
        conn.execute(f'DROP TRIGGER "{trig}"')
    for table, cols in drop.items():
        keep = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] not in cols]
        conn.execute(f"CREATE TABLE {table}_old AS SELECT {', '.join(keep)} FROM {table}")
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {table}_old RENAME TO {table}")
    for table in drop_tables:
        conn.execute(f"DROP TABLE {table}")
    conn.execute("ALTER TABLE sessions ADD COLUMN some_future_column TEXT DEFAULT 'x'")
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()


def test_older_schema_imports_with_missing_fields_not_captured(history: History, tmp_path: Path) -> None:
    old = tmp_path / "old" / "state.db"
    old.parent.mkdir()
    shutil.copy(history.path, old)
    _downgrade(old, {
        "sessions": {"billing_provider", "billing_base_url", "cache_read_tokens", "cache_write_tokens",
                     "reasoning_tokens", "estimated_cost_usd", "actual_cost_usd", "cost_status", "cost_source",
                     "pricing_version", "profile_name", "api_call_count", "end_reason"},
        "messages": {"tool_calls", "active", "compacted", "observed"},
    }, drop_tables=("session_model_usage",))
    store = tmp_path / "telemetry.db"
    result = import_state_db(old, store, profile="work")
    assert result.sessions_imported == len(history.expect)
    assert "sessions.billing_provider" in result.not_captured and "session_model_usage" in result.not_captured
    assert "messages.tool_calls" in result.not_captured

    rows = {r["session_id"]: r for r in q(store, "SELECT * FROM sessions")}
    assert all(r["provider"] is None and r["profile"] == "work" for r in rows.values())
    # ended_at without end_reason: ended, reason not captured → unknown
    assert (rows["cli-1"]["end_reason"], rows["cli-1"]["outcome"]) == (None, "unknown")
    assert rows["cli-1"]["ended_at_ms"] is not None
    api = q(store, "SELECT * FROM api_calls WHERE session_id='cli-1'")
    assert len(api) == 1  # no per-model split without session_model_usage
    assert (api[0]["input_tokens"], api[0]["output_tokens"]) == (2000, 500)
    assert (api[0]["cache_read_tokens"], api[0]["reasoning_tokens"], api[0]["cost_usd"]) == (None, None, None)
    # tool calls fall back to the role='tool' rows' tool_name
    tools = Counter(r["tool_name"] for r in q(store, "SELECT * FROM tool_calls WHERE session_id='cli-1'"))
    assert tools == Counter({"terminal": 1, "read_file": 1})
    # turns still derive from messages (the in-place copies can no longer be told apart)
    assert len(q(store, "SELECT * FROM turns WHERE session_id='cli-1'")) == 2


def test_nulls_everywhere_and_odd_types(SessionDB: Any, tmp_path: Path) -> None:
    path = tmp_path / "hermes" / "state.db"
    db = SessionDB(path)
    db.create_session("n-1", "cli")
    db.append_message("n-1", "assistant", "greeting before any request", timestamp=db.get_session("n-1")["started_at"])
    db.create_session("n-2", "unknown")
    db.close()
    # columns Hermes fills with NULL or with the wrong type after a bad migration
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sessions SET model=NULL, source='', input_tokens='12', output_tokens=NULL, "
                 "ended_at=started_at+5, end_reason='  ' WHERE id='n-1'")
    conn.commit()
    conn.close()
    store = tmp_path / "telemetry.db"
    result = import_state_db(path, store)
    assert result.sessions_imported == 2
    rows = {r["session_id"]: r for r in q(store, "SELECT * FROM sessions")}
    assert rows["n-1"]["source"] is None and rows["n-1"]["model"] is None and rows["n-1"]["session_type"] is None
    assert (rows["n-1"]["end_reason"], rows["n-1"]["outcome"]) == (None, "unknown")
    assert q(store, "SELECT input_tokens, output_tokens FROM api_calls WHERE session_id='n-1'") == [
        {"input_tokens": 12, "output_tokens": None}]
    assert q(store, "SELECT * FROM turns") == []
    assert rows["n-2"]["session_type"] == "gateway" and rows["n-2"]["end_reason"] is None
    assert q(store, "SELECT * FROM api_calls WHERE session_id='n-2'") == []  # no usage, no row


def test_corrupt_file_is_refused_and_nothing_written(history: History, tmp_path: Path) -> None:
    store = tmp_path / "telemetry.db"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(BackfillError, match="not a readable SQLite database"):
        import_state_db(junk, store)
    assert not store.exists()

    # a real state.db damaged inside (pages overwritten): quick_check refuses it up front
    damaged = tmp_path / "damaged.db"
    conn = sqlite3.connect(history.path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(history.path.read_bytes())
    page = 4096
    noise = random.Random(20261202)  # the same damage every run: os.urandom's could miss what quick_check reads
    for off in range(page * 3, len(data) - page, page * 2):
        data[off + 100 : off + 900] = noise.randbytes(800)
    damaged.write_bytes(bytes(data))
    with pytest.raises(BackfillError):
        import_state_db(damaged, store)
    assert not store.exists()

    with pytest.raises(BackfillError, match="no such Hermes state.db"):
        import_state_db(tmp_path / "missing.db", store)
    not_hermes = tmp_path / "other.db"
    sqlite3.connect(not_hermes).execute("CREATE TABLE t(x)").connection.close()
    with pytest.raises(BackfillError, match="not a Hermes state.db"):
        import_state_db(not_hermes, store)
    assert not store.exists()


@pytest.mark.parametrize("mode", ["rollback-journal", "wal-exclusive"])
def test_locked_file_is_a_clear_error_and_nothing_written(history: History, tmp_path: Path, mode: str) -> None:
    store = tmp_path / "telemetry.db"
    conn = sqlite3.connect(history.path, isolation_level=None)
    if mode == "rollback-journal":
        conn.execute("PRAGMA journal_mode=DELETE")
    else:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE sessions SET title='x' WHERE id='cli-1'")
    try:
        t0 = time.monotonic()
        with pytest.raises(BackfillError, match="locked"):
            import_state_db(history.path, store, timeout_s=0.3)
        assert time.monotonic() - t0 < 5
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert not store.exists()
    assert import_state_db(history.path, store).sessions_imported == len(history.expect)


def _run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0:
        cmd = [sys.executable, "-c", code]
    elif shutil.which("setpriv"):
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code]
    else:  # pragma: no cover
        pytest.skip("needs a non-root user to make a folder read-only")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": "/tmp"})


def test_read_only_folder_without_wal_files(history: History) -> None:
    """A WAL state.db in a folder we cannot write, closed cleanly (no -wal/-shm beside it):
    SQLite cannot read it in place, so a private copy is read; Hermes' folder is unchanged."""
    base = Path(tempfile.mkdtemp(prefix="hermetry-ro-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        ro = base / "ro"
        ro.mkdir()
        shutil.copy(history.path, ro / "state.db")
        assert not Path(f"{ro}/state.db-wal").exists()
        out = base / "out"
        out.mkdir()
        os.chmod(out, 0o777)
        os.chmod(ro / "state.db", 0o444)
        os.chmod(ro, 0o555)
        before = sha256(ro / "state.db")
        code = textwrap.dedent(f"""
            import json
            from hermetry.sources.backfill import import_state_db
            r = import_state_db({str(ro / 'state.db')!r}, {str(out / 'telemetry.db')!r})
            print(json.dumps([r.sessions_imported, r.read_from_copy]))
        """)
        proc = _run_as_nobody(code)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == [len(history.expect), True]
        assert sorted(p.name for p in ro.iterdir()) == ["state.db"]
        assert sha256(ro / "state.db") == before
    finally:
        for p in (base / "ro", base):
            if p.exists():
                os.chmod(p, 0o755)
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Hermes home and profiles
# ---------------------------------------------------------------------------------------------

def test_import_hermes_home_with_profiles(SessionDB: Any, tmp_path: Path) -> None:
    home = tmp_path / "hermes"
    db = SessionDB(home / "state.db")
    db.create_session("root-1", "cli")
    db.close()
    db = SessionDB(home / "profiles" / "work" / "state.db")
    db.create_session("work-1", "telegram")
    db.create_session("work-2", "cli", profile_name="explicit")
    db.close()
    (home / "profiles" / "broken").mkdir(parents=True)
    (home / "profiles" / "broken" / "state.db").write_bytes(b"garbage" * 100)
    store = tmp_path / "telemetry.db"

    seen: list[tuple[int, int]] = []
    only_root = import_hermes_home(home, store, progress=lambda d, n: seen.append((d, n)))
    assert [(r.profile, r.sessions_imported) for r in only_root] == [("default", 1)]
    results = import_hermes_home(home, store, all_profiles=True, progress=lambda d, n: seen.append((d, n)))
    assert [(r.profile, r.sessions_imported, r.sessions_unchanged, r.error is None) for r in results] == [
        ("default", 0, 1, True), ("broken", 0, 0, False), ("work", 2, 0, True)]
    assert seen[-1] == (3, 3)
    profiles = {r["session_id"]: r["profile"] for r in q(store, "SELECT * FROM sessions")}
    assert profiles == {"root-1": "default", "work-1": "work", "work-2": "explicit"}
    with pytest.raises(BackfillError, match="no Hermes state.db"):
        import_hermes_home(tmp_path / "empty", store)


def test_profile_for_path(tmp_path: Path) -> None:
    assert profile_for_path(tmp_path / "profiles" / "work" / "state.db") == "work"
    assert profile_for_path(tmp_path / ".hermes" / "state.db") == "default"


def test_store_cannot_be_the_state_db(history: History) -> None:
    with pytest.raises(BackfillError):
        import_state_db(history.path, history.path)


def test_repeated_compaction_in_place_and_repeated_requests(SessionDB: Any, tmp_path: Path) -> None:
    """Two in-place compactions; the user repeats "continue" before and right after each one.
    Copies re-inserted by compaction start no turn; genuine repeats do."""
    path = tmp_path / "hermes" / "state.db"
    h = History(SessionDB, path)
    t = h.session("long-1", "slack", model="m")
    for k in range(3):
        h.turn("long-1", t + k * 10 + 1, steps=[], final=(t + k * 10 + 2, f"r{k}"), expect="completed",
               reason=REASON_DERIVED, text="continue")
    for generation in range(2):
        before = [m for m in h.db.get_messages("long-1")]
        h.db.archive_and_compact("long-1", _copies(before[:2]) + [
            {"role": "assistant", "content": f"[CONTEXT COMPACTION — REFERENCE ONLY] summary {generation}"}]
            + _copies(before[-2:]))
        base = t + 100 * (generation + 1)
        h.turn("long-1", base, steps=[], final=(base + 1.5, "again"), expect="completed", reason=REASON_DERIVED,
               text="continue")
        h.turn("long-1", base + 5, steps=[], final=(base + 7, "more"), expect="completed", reason=REASON_DERIVED)
    # an observed group-chat message (not addressed to the agent) starts no turn
    h.db.append_message("long-1", "user", "someone else talking", observed=True, timestamp=t + 400)
    h.close()
    store = tmp_path / "telemetry.db"
    import_state_db(path, store)
    turns = q(store, "SELECT started_at_ms, ended_at_ms, outcome FROM turns ORDER BY started_at_ms")
    assert [(r["started_at_ms"], r["ended_at_ms"]) for r in turns] == [
        (e["start"], e["end"]) for e in h.expect["long-1"]["turns"]]
    assert len(turns) == 7


# ---------------------------------------------------------------------------------------------
# Pure mapping rules
# ---------------------------------------------------------------------------------------------

def test_cost_rules() -> None:
    # Hermes' "could not price": 0.0 with unknown or NULL status is unknown, never $0
    assert cost_fields(0.0, None, "unknown", "none", None).cost_usd is None
    assert cost_fields(0.0, None, None, None, None).cost_status == "unknown"
    assert cost_fields(None, None, None, None, None).cost_usd is None
    # a subscription's 0.0 is real
    assert (cost_fields(0.0, None, "included", "user_override", None).cost_usd, ) == (0.0, )
    # estimates and provider-reported costs
    c = cost_fields(0.5, None, "estimated", "official_docs_snapshot", "v3")
    assert (c.cost_usd, c.cost_status, c.cost_source, c.pricing_version, c.provider_cost_usd) == (
        0.5, "estimated", "official_docs_snapshot", "v3", None)
    c = cost_fields(0.5, 0.42, "actual", "provider_cost_api", None)
    assert (c.cost_usd, c.provider_cost_usd, c.cost_status) == (0.42, 0.42, "actual")
    assert cost_fields(0.3, None, None, None, None).cost_status == "estimated"  # older Hermes: no status column


def test_tool_names_never_keep_arguments() -> None:
    openai_shape = json.dumps([tool_call("a", "terminal"), {"function": {"name": "read_file"}}])
    assert tool_names(openai_shape) == [("a", "terminal"), (None, "read_file")]
    assert tool_names(json.dumps([{"name": "web_search", "arguments": "{}"}])) == [(None, "web_search")]
    assert tool_names("{not json") is None and tool_names(None) is None and tool_names("[]") is None


def _msg(i: int, role: str, ts: float | None, *, content: bool = True, tools: str | None = None,
         summary: bool = False) -> MessageRow:
    return MessageRow(id=i, session_id="s", role=role, timestamp=ts, tool_calls=tools, tool_name=None,
                      tool_call_id=None, has_content=content, is_summary=summary, observed=False)


def test_turn_derivation_edge_cases() -> None:
    msgs = [
        _msg(1, "assistant", 10.0),  # before any request: no turn
        _msg(2, "user", 11.0),
        _msg(3, "assistant", None, content=False, tools=json.dumps([tool_call("x", "terminal")])),  # NULL time
        _msg(4, "user", 20.0, summary=True),  # a compaction summary: context, not a request
        _msg(5, "assistant", 25.0),
        _msg(6, "user", 30.0),
        _msg(7, "assistant", 29.0),  # clock went backwards: clamped, never negative
    ]
    d = derive_turns_and_tools("s", msgs, fallback_ms=9000)
    ends = [e for e in d.events if isinstance(e, TurnEnded)]
    starts = [e for e in d.events if isinstance(e, TurnStarted)]
    assert [(s.started_at_ms, e.ended_at_ms, e.outcome, e.outcome_reason) for s, e in zip(starts, ends, strict=True)] == [
        (11000, 25000, "completed", REASON_DERIVED), (30000, 30000, "completed", REASON_DERIVED)]
    assert d.tool_calls == 1 and d.turns == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "tool", "system", None]),
                          st.one_of(st.none(), st.floats(0, 1e6)), st.booleans(), st.booleans()), max_size=40))
def test_turn_derivation_properties(spec: list[tuple[str | None, float | None, bool, bool]]) -> None:
    msgs = [_msg(i, role or "", ts, content=c, summary=s) for i, (role, ts, c, s) in enumerate(spec)]
    for m, (role, *_rest) in zip(msgs, spec, strict=True):
        m.role = role
    d = derive_turns_and_tools("s", msgs, fallback_ms=0)
    starts = [e for e in d.events if isinstance(e, TurnStarted)]
    ends = {e.turn_id: e for e in d.events if isinstance(e, TurnEnded)}
    assert len(starts) == d.turns == sum(1 for m in msgs if m.role == "user" and not m.is_summary)
    for s in starts:
        assert ends[s.turn_id].ended_at_ms >= s.started_at_ms
        assert (ends[s.turn_id].outcome_reason or "").startswith("derived")


# ---------------------------------------------------------------------------------------------
# Performance
# ---------------------------------------------------------------------------------------------

def _bulk_state_db(session_db_cls: Any, path: Path, sessions: int, messages_per_session: int) -> None:
    """Hermes' schema from SessionDB, then rows in bulk (SessionDB's one-transaction-per-message
    API would take minutes at benchmark size). Shapes follow what SessionDB writes."""
    session_db_cls(path).close()
    conn = sqlite3.connect(path)
    conn.execute("BEGIN")
    t0 = 1_700_000_000.0
    reasons = ["cli_close", "agent_close", "compression", "cron_complete", "new_session", "idle", None]
    for i in range(sessions):
        sid = f"20240101_{i:06d}_bench"
        start = t0 + i * 60
        reason = reasons[i % len(reasons)]
        conn.execute(
            "INSERT INTO sessions (id, source, model, billing_provider, started_at, ended_at, end_reason, message_count, "
            "input_tokens, output_tokens, estimated_cost_usd, cost_status, api_call_count) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (sid, "cli", "gpt-x", "openrouter", start, start + 50 if reason else None, reason, messages_per_session,
             1000, 500, 0.01, "estimated", messages_per_session // 4))
        conn.execute(
            "INSERT INTO session_model_usage (session_id, model, billing_provider, api_call_count, input_tokens, "
            "output_tokens, estimated_cost_usd, cost_status, first_seen, last_seen) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (sid, "gpt-x", "openrouter", messages_per_session // 4, 1000, 500, 0.01, "estimated", start, start + 40))
        rows = []
        ts = start
        for k in range(0, messages_per_session, 4):
            calls = json.dumps([tool_call(f"c{k}", "terminal")])
            rows += [(sid, "user", SECRET_PROMPT, None, None, None, ts + 1),
                     (sid, "assistant", None, calls, None, None, ts + 3),
                     (sid, "tool", SECRET_ANSWER, None, "terminal", f"c{k}", ts + 4),
                     (sid, "assistant", SECRET_ANSWER, None, None, None, ts + 7)]
            ts += 7
        conn.executemany("INSERT INTO messages (session_id, role, content, tool_calls, tool_name, tool_call_id, "
                         "timestamp) VALUES (?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize("sessions,limit_s", [
    pytest.param(1000, 10.0, id="1k-sessions"),
    pytest.param(10_000, 30.0, id="10k-sessions",
                 marks=pytest.mark.skipif(not os.environ.get("HERMETRY_BENCH"), reason="set HERMETRY_BENCH=1")),
])
def test_import_speed(SessionDB: Any, tmp_path: Path, sessions: int, limit_s: float) -> None:
    path = tmp_path / "hermes" / "state.db"
    _bulk_state_db(SessionDB, path, sessions, 40)
    result = import_state_db(path, tmp_path / "telemetry.db")
    assert isinstance(result, ImportResult)
    assert (result.sessions_imported, result.turns, result.tool_calls) == (sessions, sessions * 10, sessions * 10)
    assert result.seconds <= limit_s, result.seconds
    t0 = time.perf_counter()
    again = import_state_db(path, tmp_path / "telemetry.db")
    assert again.sessions_unchanged == sessions and time.perf_counter() - t0 <= limit_s / 5


# ---------------------------------------------------------------------------------------------
# hermetry insights over imported data agrees with Hermes' own insights
# ---------------------------------------------------------------------------------------------

def test_insights_over_imported_history_agree_with_hermes_insights(history: History, SessionDB: Any,
                                                                   tmp_path: Path) -> None:
    from agent.insights import InsightsEngine

    from hermetry.analytics.report import Query, insights

    store = tmp_path / "telemetry.db"
    import_state_db(history.path, store)
    hermes_db = SessionDB(history.path)
    try:
        theirs = InsightsEngine(hermes_db).generate(days=3650)["overview"]
    finally:
        hermes_db.close()
    ours = insights(store, Query.last_days(3650))
    tokens = ours["api_calls"]["tokens"]
    assert ours["coverage"]["sessions_started"] == theirs["total_sessions"]
    assert tokens["input_tokens"] == theirs["total_input_tokens"]
    assert tokens["output_tokens"] == theirs["total_output_tokens"]
    assert tokens["cache_read_tokens"] == theirs["total_cache_read_tokens"]
    assert tokens["cache_write_tokens"] == theirs["total_cache_write_tokens"]
    assert tokens["total_tokens"] == theirs["total_tokens"]
    cost = ours["api_calls"]["cost"]
    assert (cost["estimated_usd"] or 0.0) + (cost["actual_usd"] or 0.0) == pytest.approx(theirs["estimated_cost"], abs=1e-9)


def test_imported_figures_say_what_they_are(history: History, SessionDB: Any, tmp_path: Path) -> None:
    """A state.db written by Hermes' own SessionDB: every figure the import cannot know is unknown,
    API calls are Hermes' api_call_count, and neither a rate nor a comparison claims anything more."""
    import sqlite3

    from hermetry.analytics.compare import compare
    from hermetry.analytics.report import Query, insights
    from hermetry.analytics.sessions import list_sessions, session_detail

    store = tmp_path / "telemetry.db"
    import_state_db(history.path, store)
    hermes = sqlite3.connect(f"file:{history.path}?mode=ro", uri=True)
    try:
        main_calls = hermes.execute("SELECT SUM(api_call_count) FROM sessions").fetchone()[0]
        aux_calls = hermes.execute("SELECT SUM(api_call_count) FROM session_model_usage WHERE task <> ''").fetchone()[0]
        turns_imported = len([t for exp in history.expect.values() for t in exp["turns"]])
        tools_imported = sum(sum(exp["tools"].values()) for exp in history.expect.values())
    finally:
        hermes.close()
    assert main_calls > 0 and aux_calls > 0

    everything = Query(since_ms=0, until_ms=4e12, group_by=())  # the history's times are "now" and after
    report = insights(store, everything)
    api = report["api_calls"]
    assert api["count"] == main_calls + aux_calls  # calls, not the import's per-session rows
    assert (api["by_task"]["main"]["count"], api["by_task"]["title_generation"]["count"]) == (main_calls, aux_calls)
    assert api["derived"] == {"calls": main_calls + aux_calls, "in_error_rate": False}
    assert api["error_rate"]["value"] is None and api["error_rate"]["n"] == 0  # state.db keeps no failures
    assert api["errors"] is None and {t["errors"] for t in api["by_task"].values()} == {None}  # unknown, not 0
    assert api["latency_ms"]["coverage"] == {"captured": 0, "of": main_calls + aux_calls}
    tools = report["tool_calls"]
    assert tools["count"] == tools_imported and tools["by_status"] == {"unknown": tools_imported}
    assert tools["failures"] == 0 and tools["failure_rate"]["value"] is None and tools["failure_rate"]["n"] == 0
    assert tools["status_coverage"] == {"captured": 0, "of": tools_imported}
    assert tools["derived"] == {"count": tools_imported}
    turns = report["turns"]
    assert turns["count"] == turns_imported
    assert turns["derived"] == {"count": turns_imported, "in_rates": False, "in_wall_ms": turns_imported}
    for name in ("completion_rate", "failure_rate"):  # derived outcomes can never be a failure
        assert turns[name]["value"] is None and turns[name]["n"] == 0
    one_run = {"sub-1", "cron-1", "api-1", "wh-1"}  # their runs may have failed: state.db cannot say
    assert report["sessions"]["derived"] == {"count": len(one_run), "in_rates": False}
    assert report["sessions"]["completion_rate"]["n"] == 7 - 1  # the 7 other sessions, of which br-c never ended

    starts = sorted(r["started_at_ms"] for r in q(store, "SELECT started_at_ms FROM turns"))
    mid = starts[len(starts) // 2]
    result = compare(store, Query(since_ms=0, until_ms=mid), Query(since_ms=mid, until_ms=starts[-1] + 1))
    verdicts = {m["metric"]: m["verdict"] for m in result["metrics"]}
    assert verdicts["turn_failure_rate"] == "insufficient data"

    listed = list_sessions(store, 0, starts[-1] + 1, roll_up=False, limit=100)
    assert listed["sessions"] and all(s["derived"] for s in listed["sessions"])
    detail = session_detail(store, "cli-1")
    assert detail["session"]["derived"] is True
    for turn in detail["turns"]:
        assert turn["derived"] is True
        w = turn["waterfall"]
        assert w["derived"] is True and (w["model_ms"], w["tools_ms"], w["other_ms"]) == (None, None, None)
    assert detail["totals"]["tool_failures"] is None  # no imported tool call has a known status
    assert detail["totals"]["api_errors"] is None  # nor any imported call's failure
    import io

    from rich.console import Console

    from hermetry.surfaces.render import report_renderable

    sink = io.StringIO()
    Console(file=sink, width=80, color_system=None).print(report_renderable(report))
    text = sink.getvalue()
    wall_note = next(line for line in text.splitlines() if line.startswith("turn wall time: captured"))
    assert wall_note.endswith(f", {turns_imported} derived")  # from message timestamps, not measured: said so
    assert "API errors: — of" in text
    cli_calls = 3 + 1  # Hermes' api_call_count of cli-1, and its title-generation call
    assert detail["totals"]["derived"]["api_calls"] == detail["totals"]["api_calls"] == cli_calls
