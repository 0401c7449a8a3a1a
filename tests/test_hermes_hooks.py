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


#: What each GARBAGE payload may leave in the store (rows per table): nothing without an id; the
#: third payload's only id is the int 123, which every session callback may record as "123".
GARBAGE_ROWS: list[dict[str, list[dict[str, Any]]]] = [
    {"sessions": [], "turns": [], "api_calls": [], "tool_calls": []},
    {"sessions": [], "turns": [], "api_calls": [], "tool_calls": []},
    {"sessions": [{"session_id": "123", "end_reason": "42"}], "turns": [],
     "api_calls": [{"session_id": "123", "task": "42", "input_tokens": None, "status": "ok"}], "tool_calls": []},
]


@pytest.mark.parametrize(("payload", "expected"), list(zip(GARBAGE, GARBAGE_ROWS, strict=True)))
def test_every_callback_tolerates_missing_and_wrong_types(capture: Any, payload: dict[str, Any],
                                                          expected: dict[str, list[dict[str, Any]]]) -> None:
    for name, callback in capture.callbacks().items():
        assert callback(**payload) is None, name
    on_create, on_end, on_reopen = capture.state_callbacks()
    sid, reason = payload.get("session_id"), payload.get("reason")
    on_create(time.time(), sid, reason, payload.get("usage"), payload.get("error"), reason)
    on_end(time.time(), sid, reason, payload.get("usage"))
    on_reopen(time.time(), payload.get("turn_id"))
    capture.on_aux_usage(sid, reason, payload)
    capture.on_cron_status(payload.get("status_code"), payload.get("completed"))
    assert capture.recorder.flush(5)
    # nothing that lacks an id was invented; whatever has ids was stored without crashing the writer
    stats = capture.recorder.stats()
    assert (stats.last_error, stats.dropped) == (None, 0)  # no normalizer raised
    for name, want in expected.items():
        got = table(capture.db, name) if capture.db.exists() else []
        assert [{k: row[k] for k in (want[0] if want else {})} for row in got] == want, name
    if expected["sessions"]:
        # state.db's end (Hermes' raw 42, verbatim) replaced the one only a hook reported, and nothing
        # is invented around it
        (row,) = table(capture.db, "sessions")
        assert row["outcome"] == "unknown" and row["model"] is None


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
    """Hermes main adds first_chunk_at (or first_delta_at) on API hooks and failed/turn_exit_reason
    on turn ends."""
    cb = capture.callbacks()
    t0 = time.time()
    cb["post_api_request"](session_id="s", turn_id="t0", api_request_id="r1", api_duration=2.0, started_at=t0,
                           first_chunk_at=t0 + 0.5, usage={"input_tokens": 1, "output_tokens": 1})
    cb["post_api_request"](session_id="s", turn_id="t0", api_request_id="r2", api_duration=2.0, started_at=t0,
                           first_delta_at=t0 + 0.75, usage={"input_tokens": 1, "output_tokens": 1})
    ends = {  # turn id -> (what newer Hermes reports, what that means)
        "t1": (dict(completed=False, interrupted=False, failed=True, turn_exit_reason="max_iterations"),
               ("errored", "max_iterations")),
        "t2": (dict(completed=True, interrupted=True, turn_exit_reason="gateway timeout"),
               ("timed_out", "gateway timeout")),
        "t3": (dict(completed=True, interrupted=True, turn_exit_reason="interrupted_by_user"),
               ("interrupted", "interrupted_by_user")),
        "t4": (dict(completed=False, interrupted=False, turn_exit_reason="max_iterations_reached(90/90)"),
               ("errored", "max_iterations_reached(90/90)")),
        "t5": (dict(completed=True, interrupted=True, turn_exit_reason="guardrail_halt"),
               ("interrupted", "guardrail_halt")),
        "t6": (dict(completed=True, interrupted=False, turn_exit_reason="partial_stream_recovery"),
               ("completed", "partial_stream_recovery")),
        "t7": (dict(completed=True, interrupted=True), ("interrupted", None)),  # 0.19.0: no reason at all
    }
    for tid, (payload, _) in ends.items():
        cb["pre_llm_call"](session_id="s", task_id="k", turn_id=tid, platform="cli")
        cb["on_session_end"](session_id="s", turn_id=tid, **payload)
    assert capture.recorder.flush(5)
    ttft = {r["api_request_id"]: r["ttft_ms"] for r in table(capture.db, "api_calls")}
    assert ttft == {"r1": pytest.approx(500.0), "r2": pytest.approx(750.0)}
    turns = {r["turn_id"]: (r["outcome"], r["outcome_reason"]) for r in table(capture.db, "turns")}
    assert turns == {tid: expected for tid, (_, expected) in ends.items()}


def test_terminal_exit_code_and_unknown_tools(capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    cb = capture.callbacks()
    base = dict(session_id="s", turn_id="t", api_request_id="r", duration_ms=12)
    cb["post_tool_call"](tool_name="terminal", tool_call_id="c1", status="ok",
                         result=json.dumps({"output": 'says "exit_code": 0', "exit_code": 7, "error": None}), **base)
    cb["post_tool_call"](tool_name="terminal", tool_call_id="c2", status="ok",
                         result=json.dumps({"output": "", "exit_code": 1, "error": None,
                                            "exit_code_meaning": "No matches found"}), **base)
    cb["post_tool_call"](tool_name="terminal", tool_call_id="c3", status="ok",
                         result=json.dumps({"output": "hi", "exit_code": 0, "error": None}), **base)
    cb["post_tool_call"](tool_name="read_file", tool_call_id="c4", status="error", error_type="tool_error",
                         result=json.dumps({"error": "no such file"}), **base)
    monkeypatch.setattr(stream_probe._LOCAL, "context", {"session_id": "s", "turn_id": "t", "api_request_id": "r2"},
                        raising=False)
    capture.on_unknown_tool("made_up_tool")
    assert capture.recorder.flush(5)
    got = {r["tool_name"] + (r["tool_call_id"][-3:] if r["tool_name"] != "made_up_tool" else ""):
           (r["status"], r["error_type"], r["error_message"]) for r in table(capture.db, "tool_calls")}
    assert got == {
        "terminal:c1": ("error", "nonzero_exit", "exit code 7"),  # Hermes said ok; the command failed
        "terminal:c2": ("ok", None, None),  # Hermes knows grep's 1 means "no match"
        "terminal:c3": ("ok", None, None),
        "read_file:c4": ("error", "tool_error", None),
        "made_up_tool": ("unknown_tool", "unknown_tool", None),
    }
    unknown = [r for r in table(capture.db, "tool_calls") if r["status"] == "unknown_tool"][0]
    assert (unknown["session_id"], unknown["turn_id"], unknown["api_request_id"]) == ("s", "t", "r2")


def test_auxiliary_calls_one_row_each_from_hermes_record(capture: Any) -> None:
    """record_auxiliary_usage carries the task and usage; the SDK wrapper's timing joins it."""
    stream_probe.AUX_TIMING.set({"start": 100.0, "end": 100.25, "model": "aux-m", "streamed": False})
    capture.on_aux_usage("s", "compression", {"model": "aux-m", "billing_provider": "custom",
                                              "input_tokens": 50_000, "output_tokens": 100, "cache_read_tokens": 0,
                                              "cache_write_tokens": 0, "reasoning_tokens": 0})
    assert stream_probe.AUX_TIMING.get() is None  # taken: it cannot be joined to a second record
    capture.on_aux_usage("s", "title_generation", {"model": "aux-m", "input_tokens": 30, "output_tokens": 5})
    capture.on_aux_error({"start": 200.0, "end": 200.5, "model": "aux-m"}, RuntimeError("boom"))  # no session
    assert capture.recorder.flush(5)
    calls = sorted(table(capture.db, "api_calls"), key=lambda r: r["task"])
    assert [(c["task"], c["session_id"], c["input_tokens"], c["output_tokens"], c["status"]) for c in calls] == [
        ("compression", "s", 50_000, 100, "ok"), ("title_generation", "s", 30, 5, "ok")]
    assert calls[0]["latency_ms"] == pytest.approx(250.0) and calls[0]["started_at_ms"] == 100_000.0
    assert calls[1]["latency_ms"] is None  # no timing seen for it: not captured, not zero
    assert len({c["api_request_id"] for c in calls}) == 2


def test_newer_hermes_auxiliary_hooks_replace_the_record_observer(capture: Any) -> None:
    cb = capture.callbacks(valid_hooks={"post_auxiliary_call", "post_api_request"})
    assert "post_auxiliary_call" in cb
    cb["post_auxiliary_call"](session_id="s", aux_task="vision", model="v", started_at=10.0, ended_at=10.5,
                              usage={"input_tokens": 7, "output_tokens": 3})
    capture.on_aux_usage("s", "vision", {"input_tokens": 7, "output_tokens": 3})  # Hermes still records it too
    assert capture.recorder.flush(5)
    (call,) = table(capture.db, "api_calls")
    assert (call["task"], call["input_tokens"], call["output_tokens"], call["latency_ms"]) == ("vision", 7, 3, 500.0)
    assert "post_auxiliary_call" not in HermesCapture(capture.recorder).callbacks()  # 0.19.0: not offered


def test_cron_status_reaches_the_session(capture: Any) -> None:
    on_create, on_end, _ = capture.state_callbacks()
    t = time.time()
    on_create(t, "cron_job1_20250101_000000", "cron", "m", None, None)
    on_end(t + 1, "cron_job1_20250101_000000", "cron_complete", ())
    capture.on_cron_status("job1", False)
    capture.on_cron_status("job1", "not a bool")  # ignored
    assert capture.recorder.flush(5)
    (session,) = table(capture.db, "sessions")
    assert (session["end_reason"], session["run_status"], session["outcome"]) == ("cron_complete", "error", "errored")


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
