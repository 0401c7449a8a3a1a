"""``hermetry.testing.capture_events()`` and ``InMemorySink``: asserting on what was recorded
without SQL. The figures checked are the ones each test passes to Hermes' hook callbacks."""

from __future__ import annotations

from pathlib import Path

from hermetry.model.events import ApiCall, SessionStarted, ToolCall
from hermetry.recorder.recorder import Recorder
from hermetry.recorder.sink import Sink
from hermetry.sources.hermes.hooks import HermesCapture
from hermetry.stores.sqlite import SQLiteStore
from hermetry.testing import InMemorySink, capture_events, rows


def _one_call(capture: HermesCapture, *, input_tokens: int, output_tokens: int) -> None:
    cb = capture.callbacks()
    cb["on_session_start"](session_id="s1", model="m1", platform="cli")
    cb["post_api_request"](session_id="s1", turn_id="t1", api_request_id="r1", model="m1", provider="p",
                           api_duration=0.25, usage={"input_tokens": input_tokens, "output_tokens": output_tokens})
    cb["post_tool_call"](session_id="s1", turn_id="t1", tool_call_id="c1", tool_name="terminal",
                         duration_ms=12.5, status="success")


def test_in_memory_sink_is_a_sink_and_a_primary_store() -> None:
    memory = InMemorySink()
    assert isinstance(memory, Sink)
    recorder = Recorder(lambda: memory, register_atexit=False)
    try:
        _one_call(HermesCapture(recorder, profile="default"), input_tokens=321, output_tokens=45)
        assert recorder.flush(10)
        (call,) = [e for e in memory.events if isinstance(e, ApiCall)]
        assert (call.input_tokens, call.output_tokens, call.latency_ms) == (321, 45, 250.0)
        assert memory.runs and memory.runs[-1]["events_dropped"] == 0
    finally:
        recorder.close()
    assert recorder.stats().written == 3
    memory.clear()
    assert memory.events == ()


def test_capture_events_sees_what_the_store_stores(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    recorder = Recorder(lambda: SQLiteStore(db), register_atexit=False)
    try:
        with capture_events() as events:
            _one_call(HermesCapture(recorder, profile="default"), input_tokens=1000, output_tokens=7)
        # complete when the block exits: every live recorder was flushed
        assert [type(e) for e in events] == [SessionStarted, ApiCall, ToolCall]
        (call,) = events.of(ApiCall)
        (stored,) = rows(db, "SELECT input_tokens, output_tokens FROM api_calls")
        assert (call.input_tokens, call.output_tokens) == (1000, 7) == (stored["input_tokens"],
                                                                          stored["output_tokens"])
        (tool,) = events.of(ToolCall)
        assert (tool.tool_name, tool.latency_ms, tool.status) == ("terminal", 12.5, "ok")
        # after the block nothing more is captured
        recorder.record(SessionStarted(session_id="s2", started_at_ms=1.0))
        assert recorder.flush(10)
        assert len(events) == 3
    finally:
        recorder.close()


def test_capture_events_blocks_do_not_see_each_other() -> None:
    memory = InMemorySink()
    recorder = Recorder(lambda: memory, register_atexit=False)
    try:
        with capture_events() as outer:
            recorder.record(SessionStarted(session_id="a", started_at_ms=1.0))
            assert recorder.flush(10)
            with capture_events() as inner:
                recorder.record(SessionStarted(session_id="b", started_at_ms=2.0))
        assert [e.session_id for e in inner] == ["b"]  # type: ignore[attr-defined]
        assert [e.session_id for e in outer] == ["a", "b"]  # type: ignore[attr-defined]
    finally:
        recorder.close()


def test_a_closed_in_memory_sink_disables_itself_and_counts_the_drop() -> None:
    memory = InMemorySink()
    memory.close()
    recorder = Recorder(lambda: memory, register_atexit=False)
    try:
        recorder.record(SessionStarted(session_id="a", started_at_ms=1.0))
        recorder.flush(10)
        assert recorder.stats().dropped == 1 and memory.events == ()
    finally:
        recorder.close()
