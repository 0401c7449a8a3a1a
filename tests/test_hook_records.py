"""The hook callbacks and the normalizers agree on every field by name (hooks split in two).

Each callback is called with every keyword argument its record names, each a distinct value;
the queued tuple, read back as that record, must carry each value under the same name — so a
reordered record or a hand-built tuple out of step with its record is caught here, not by a
silently shifted field in the telemetry file."""

from __future__ import annotations

from typing import Any

import pytest

from hermetry.sources.hermes import records as rec
from hermetry.sources.hermes.hooks import HermesCapture

#: hook → (its record, the record fields the callback computes instead of copying)
HOOKS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "on_session_start": (rec.SessionStartRecord, ()),
    "pre_llm_call": (rec.TurnStartRecord, ("message_hash",)),
    "on_session_end": (rec.TurnEndRecord, ()),
    "post_api_request": (rec.ApiOkRecord, ()),
    "api_request_error": (rec.ApiErrorRecord, ()),
    "post_tool_call": (rec.ToolRecord, ("exit_code",)),
    "on_session_finalize": (rec.SessionFinalizeRecord, ()),
    "subagent_start": (rec.SubagentStartRecord, ()),
    "post_auxiliary_call": (rec.AuxPostRecord, ()),
}


class _Queue:
    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []

    def submit(self, item: tuple[Any, ...]) -> None:
        self.items.append(item)

    def nudge(self) -> None:
        pass


@pytest.fixture
def capture() -> tuple[HermesCapture, _Queue]:
    queue = _Queue()
    return HermesCapture(queue, profile="default"), queue  # type: ignore[arg-type]


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_field_arrives_under_its_own_name(capture: tuple[HermesCapture, _Queue], hook: str) -> None:
    cap, queue = capture
    record, computed = HOOKS[hook]
    keys = rec.hook_keys(record, *computed)
    kwargs = {k: f"<{k}>" for k in keys} | {"user_message": "hello", "result": '{"exit_code": 3}'}
    if hook == "post_tool_call":
        kwargs["tool_name"] = "terminal"
    callbacks = cap.callbacks(valid_hooks=["post_auxiliary_call"])
    callbacks[hook](**kwargs)
    (item,) = queue.items
    assert len(item) == len(record._fields)
    r = rec.view(record, item)
    assert callable(r.normalize) and isinstance(r.t, float)
    for key in keys:
        assert getattr(r, key) == kwargs[key], key
    if hook == "pre_llm_call":
        assert r.message_hash == hash("hello")  # the text itself is never queued
    if hook == "post_tool_call":
        assert r.exit_code == 3


def test_the_state_mirror_callbacks_queue_their_records(capture: tuple[HermesCapture, _Queue]) -> None:
    cap, queue = capture
    on_create, on_end, on_reopen = cap.state_callbacks()
    on_create(1.0, "s1", "cli", "m", None, "default")
    on_end(2.0, "s1", "cli_close", ())
    on_reopen(3.0, "s1")
    created, ended, reopened = queue.items
    assert rec.view(rec.MirrorCreateRecord, created).source == "cli"
    assert rec.view(rec.MirrorEndRecord, ended).end_reason == "cli_close"
    assert rec.view(rec.MirrorReopenRecord, reopened).session_id == "s1"
    events = [e for item in queue.items for e in item[0](item)]
    assert [type(e).__name__ for e in events] == ["SessionStarted", "SessionEnded", "SessionReopened"]


def test_subagent_stop_is_not_captured(capture: tuple[HermesCapture, _Queue]) -> None:
    assert "subagent_stop" not in capture[0].callbacks()
