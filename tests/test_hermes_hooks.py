"""The Hermes hook callbacks, driven directly: missing and wrong-typed fields are tolerated.

Real Hermes runs are covered by the end-to-end tests; here each callback gets payloads Hermes
could plausibly send when it changes (fields missing, renamed, of another type), and the
test checks what was stored against what it passed in.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hermetry.model.sessions import session_type_for
from hermetry.recorder.recorder import Recorder
from hermetry.sources.hermes import stream_probe
from hermetry.sources.hermes.hooks import HermesCapture
from hermetry.stores.sqlite import SQLiteStore
from hermetry.testing.query import rows


@pytest.fixture
def capture(tmp_path: Path) -> Any:
    db = tmp_path / "t.db"
    rec = Recorder(lambda: SQLiteStore(db), register_atexit=False)
    cap = HermesCapture(rec, profile="default")
    cap.db = db  # type: ignore[attr-defined]
    yield cap
    rec.close()


def table(db: Path, name: str) -> list[dict[str, Any]]:
    return rows(db, f"SELECT * FROM {name}")


GARBAGE: list[dict[str, Any]] = [
    {},
    {"session_id": None, "turn_id": None},
    {"session_id": 123, "turn_id": ["x"], "api_request_id": {"a": 1}, "usage": [1, 2], "api_duration": "slow",
     "started_at": "yesterday", "status_code": "five hundred", "error": "not a dict", "duration_ms": object(),
     "completed": "yes", "interrupted": 0, "event": object(), "reason": 42},
]


@pytest.mark.parametrize("payload", GARBAGE)
def test_every_callback_tolerates_missing_and_wrong_types(capture: Any, payload: dict[str, Any]) -> None:
    for name, callback in capture.callbacks().items():
        assert callback(**payload) is None, name
    on_create, on_end, on_reopen = capture.state_callbacks()
    sid, reason = payload.get("session_id"), payload.get("reason")
    on_create(time.time(), sid, reason, payload.get("usage"), payload.get("error"), reason)
    on_end(time.time(), sid, reason, payload.get("usage"))
    on_reopen(time.time(), payload.get("turn_id"))
    assert capture.recorder.flush(5)
    # nothing that lacks an id was invented; whatever has ids was stored without crashing the writer
    stats = capture.recorder.stats()
    assert (stats.last_error, stats.dropped) == (None, 0)  # no normalizer raised
    for name in ("sessions", "turns", "api_calls", "tool_calls"):
        for row in table(capture.db, name) if capture.db.exists() else []:
            assert row["session_id"] == "123", row  # only the int id is an id; lists and dicts are not


def test_wrong_types_become_not_captured_not_zero(capture: Any) -> None:
    cb = capture.callbacks()
    cb["post_api_request"](session_id="s1", turn_id="t1", api_request_id="r1", model="m", provider="p",
                           base_url="https://user:secret@api.example.com/v1?key=abc", api_mode="chat_completions",
                           api_duration="slow", started_at=None, finish_reason=7,
                           usage={"input_tokens": "12", "output_tokens": None, "cache_read_tokens": "many",
                                  "cache_write_tokens": 3.0, "reasoning_tokens": True})
    assert capture.recorder.flush(5)
    (call,) = table(capture.db, "api_calls")
    assert call["latency_ms"] is None and call["ttft_ms"] is None
    assert (call["input_tokens"], call["output_tokens"], call["cache_read_tokens"]) == (12, None, None)
    assert call["cache_write_tokens"] == 3 and call["reasoning_tokens"] is None  # a bool is not a count
    assert call["finish_reason"] == "7"
    assert call["base_url"] == "https://api.example.com/v1"  # no credentials, no query string


def test_a_realistic_sequence(capture: Any) -> None:
    cb = capture.callbacks()
    t0 = time.time()
    cb["on_session_start"](session_id="s1", model="gpt-x", platform="telegram")
    cb["pre_llm_call"](session_id="s1", task_id="k", turn_id="t1", platform="telegram", sender_id="u1",
                       user_message="hi", conversation_history=[], is_first_turn=True, model="gpt-x")
    cb["api_request_error"](session_id="s1", turn_id="t1", api_request_id="r1", api_duration=0.25,
                            started_at=t0, status_code=429, retry_count=0, reason="rate_limit",
                            error={"type": "RateLimitError", "message": "slow down, key sk-abcdefghijklmnop1234"})
    cb["post_api_request"](session_id="s1", turn_id="t1", api_request_id="r1", api_duration=1.5, started_at=t0 + 1,
                           finish_reason="stop", usage={"input_tokens": 100, "output_tokens": 20,
                                                        "cache_read_tokens": 0, "cache_write_tokens": 0,
                                                        "reasoning_tokens": 5})
    cb["post_tool_call"](session_id="s1", turn_id="t1", tool_call_id="c1", tool_name="web_search", duration_ms=321,
                         status="error", error_type="Timeout", error_message="took too long", args={"q": "secret"})
    cb["on_session_end"](session_id="s1", turn_id="t1", completed=True, interrupted=False)
    assert capture.recorder.flush(5)
    calls = sorted(table(capture.db, "api_calls"), key=lambda r: r["attempt"])
    assert [(c["attempt"], c["status"], c["http_status"]) for c in calls] == [(0, "error", 429), (1, "ok", None)]
    # Hermes times a request once across its retries: a retry's own latency is only known from the
    # stream probe (absent here), so it is not captured rather than inflated
    assert calls[0]["latency_ms"] == pytest.approx(250.0) and calls[1]["latency_ms"] is None
    assert "sk-abcdefghijklmnop1234" not in calls[0]["error_message"]
    (tool,) = table(capture.db, "tool_calls")
    assert (tool["tool_name"], tool["status"], tool["latency_ms"], tool["error_type"]) == ("web_search", "error", 321.0,
                                                                                       "Timeout")
    (turn,) = table(capture.db, "turns")
    assert turn["outcome"] == "completed"
    (session,) = table(capture.db, "sessions")
    assert (session["source"], session["session_type"], session["model"]) == ("telegram", "gateway", "gpt-x")


def test_queue_wait_matches_the_arrival_of_the_same_message(capture: Any) -> None:
    from types import SimpleNamespace

    cb = capture.callbacks()
    now = time.time()
    src = SimpleNamespace(platform=SimpleNamespace(value="telegram"), user_id="u1")
    first = SimpleNamespace(source=src, text="first question", timestamp=None)
    second = SimpleNamespace(source=src, text="second question", timestamp=None)
    cb["pre_gateway_dispatch"](event=first, gateway=None, session_store=None)
    time.sleep(0.05)
    cb["pre_gateway_dispatch"](event=second, gateway=None, session_store=None)
    time.sleep(0.05)
    # the agent answers the second message first: it is matched by its text, not by order
    cb["pre_llm_call"](session_id="s2", task_id="k", turn_id="t-second", platform="telegram", sender_id="u1",
                       user_message="second question")
    cb["pre_llm_call"](session_id="s1", task_id="k", turn_id="t-first", platform="telegram", sender_id="u1",
                       user_message="first question")
    assert capture.recorder.flush(5)
    waits = {r["turn_id"]: r["queue_wait_ms"] for r in table(capture.db, "turns")}
    assert 40 <= waits["t-second"] < waits["t-first"]
    assert waits["t-first"] >= 90
    assert time.time() - now < 60


def test_session_types() -> None:
    assert session_type_for("cli", ["-z", "hi"]) == "oneshot"
    assert session_type_for("cli", ["chat", "-q", "hi"]) == "query"
    assert session_type_for("cli", ["chat"]) == "interactive"
    assert session_type_for("api_server", []) == "api"
    assert session_type_for("telegram", []) == "gateway"
    assert session_type_for("subagent", ["-z"]) == "subagent"


def test_stream_probe_times_the_first_content_chunk() -> None:
    from types import SimpleNamespace

    def chunk(content: str | None = None, usage: Any = None) -> Any:
        delta = SimpleNamespace(content=content, tool_calls=None, model_extra={})
        return SimpleNamespace(choices=[SimpleNamespace(delta=delta)] if usage is None else [], usage=usage)

    probe: dict[str, Any] = {"start": time.time(), "first": None, "cost": None, "gen": 1}
    usage = SimpleNamespace(model_extra={"cost": 0.5})
    timed = stream_probe._timed(iter([chunk(None), chunk("hello"), chunk(usage=usage)]), probe, 1)
    first = next(timed)  # role-only chunk: not a token
    assert first.choices[0].delta.content is None and probe["first"] is None
    next(timed)
    assert probe["first"] is not None
    list(timed)
    assert probe["cost"] == 0.5


def test_newer_hermes_fields_are_used_when_present(capture: Any) -> None:
    """Hermes main adds first_delta_at on API hooks and failed/turn_exit_reason on turn ends."""
    cb = capture.callbacks()
    t0 = time.time()
    cb["pre_llm_call"](session_id="s", task_id="k", turn_id="t1", platform="cli")
    cb["post_api_request"](session_id="s", turn_id="t1", api_request_id="r1", api_duration=2.0, started_at=t0,
                           first_delta_at=t0 + 0.75, usage={"input_tokens": 1, "output_tokens": 1})
    cb["on_session_end"](session_id="s", turn_id="t1", completed=False, interrupted=False, failed=True,
                         turn_exit_reason="max_iterations")
    cb["pre_llm_call"](session_id="s", task_id="k", turn_id="t2", platform="cli")
    cb["on_session_end"](session_id="s", turn_id="t2", completed=True, interrupted=True,
                         turn_exit_reason="gateway timeout")
    assert capture.recorder.flush(5)
    (call,) = table(capture.db, "api_calls")
    assert call["ttft_ms"] == pytest.approx(750.0)
    turns = {r["turn_id"]: (r["outcome"], r["outcome_reason"]) for r in table(capture.db, "turns")}
    assert turns == {"t1": ("errored", "max_iterations"), "t2": ("timed_out", "gateway timeout")}


def test_a_superseded_stream_does_not_overwrite_the_probe() -> None:
    from types import SimpleNamespace

    def chunk(content: str) -> Any:
        delta = SimpleNamespace(content=content, tool_calls=None, model_extra={})
        return SimpleNamespace(choices=[SimpleNamespace(delta=delta)], usage=None)

    probe: dict[str, Any] = {"start": time.time(), "first": None, "cost": None, "gen": 1}
    stale = stream_probe._timed(iter([chunk("late")]), probe, 1)
    probe["gen"], probe["first"] = 2, None  # Hermes reconnected: a newer create() owns the probe
    list(stale)
    assert probe["first"] is None
