"""The code that runs on Hermes' own thread: the hook callbacks. One screen, auditable.

Each callback picks the few keyword arguments its record names (:mod:`records`) into a tuple,
appends it to the recorder's queue (``submit``: a deque append) and returns. No parsing, no
I/O, no locks; any exception is swallowed here so it can never reach Hermes. Prompt, response
and tool-argument payloads are never picked: the message text becomes a hash of its first
4 KiB (so a queue backed up behind a slow store holds no prompts), a terminal result its exit
code. Everything else happens on the writer thread (:mod:`hooks`, the normalizers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from hermetry.sources.hermes import records as rec
from hermetry.sources.hermes import stream_probe, wrappers

if TYPE_CHECKING:
    from hermetry.sources.hermes.hooks import HermesCapture

Callback = Callable[..., None]


def hook_callbacks(capture: HermesCapture, valid_hooks: Iterable[str] = ()) -> dict[str, Callback]:
    """Hook name → callback for ``ctx.register_hook``; hooks only newer Hermes offers are
    included when ``valid_hooks`` (Hermes' ``VALID_HOOKS``) names them."""
    submit, now, take_probe = capture.recorder.submit, time.time, stream_probe.take_probe

    def make(normalize: Callable[..., Any], record: type[tuple[Any, ...]]) -> Callback:
        keys = rec.hook_keys(record)

        def callback(**kw: Any) -> None:
            try:
                submit((normalize, now(), *map(kw.get, keys)))
            except Exception:
                pass

        callback.__name__ = f"hermetry_{normalize.__name__}"
        return callback

    def make_api(normalize: Callable[..., Any], record: type[tuple[Any, ...]]) -> Callback:
        keys = rec.hook_keys(record)

        def callback(**kw: Any) -> None:
            try:
                submit((normalize, now(), take_probe(kw.get("api_request_id")), *map(kw.get, keys)))
            except Exception:
                pass

        callback.__name__ = f"hermetry_{normalize.__name__}"
        return callback

    turn_start_norm, arrival_norm, tool_norm = capture._turn_start, capture._arrival, capture._tool
    tool_keys = rec.hook_keys(rec.ToolRecord, "exit_code")
    exit_code = capture.exit_code

    def turn_start(**kw: Any) -> None:  # TurnStartRecord
        try:
            m = kw.get("user_message")
            submit((turn_start_norm, now(), kw.get("session_id"), kw.get("task_id"), kw.get("turn_id"),
                    kw.get("platform"), kw.get("sender_id"), hash(m[:4096]) if isinstance(m, str) else None))
        except Exception:
            pass
        wrap_interrupt()

    def arrival(**kw: Any) -> None:  # ArrivalRecord
        try:
            event = kw.get("event")
            source = getattr(event, "source", None)
            platform = getattr(source, "platform", None)
            text = getattr(event, "text", None)
            submit((arrival_norm, now(), getattr(platform, "value", platform), getattr(source, "user_id", None),
                    getattr(event, "timestamp", None), hash(text[:4096]) if isinstance(text, str) else None))
        except Exception:
            pass
        wrap_interrupt()

    def tool(**kw: Any) -> None:  # ToolRecord
        try:
            submit((tool_norm, now(), *map(kw.get, tool_keys),
                    exit_code(kw.get("result")) if kw.get("tool_name") == "terminal" else None))
        except Exception:
            pass

    session_start_cb = make(capture._session_start, rec.SessionStartRecord)
    install_if_loaded = stream_probe.install_if_loaded
    on_interrupt = capture.on_interrupt

    def wrap_interrupt() -> None:  # one flag check once done; never imports Hermes itself
        try:
            wrappers.wrap_interrupt_if_loaded(on_interrupt)
        except Exception:
            pass

    def session_start(**kw: Any) -> None:
        session_start_cb(**kw)
        try:
            install_if_loaded()  # one flag check once done
        except Exception:
            pass
        wrap_interrupt()

    newer: dict[str, Callback] = {}
    if "post_auxiliary_call" in set(valid_hooks):
        capture.aux_hooks = True
        newer["post_auxiliary_call"] = make(capture._aux_post_hook, rec.AuxPostRecord)
    return newer | {
        "on_session_start": session_start,
        "pre_llm_call": turn_start,
        "pre_gateway_dispatch": arrival,
        "on_session_end": make(capture._turn_end, rec.TurnEndRecord),
        "post_api_request": make_api(capture._api_ok, rec.ApiOkRecord),
        "api_request_error": make_api(capture._api_error, rec.ApiErrorRecord),
        "post_tool_call": tool,
        "on_session_finalize": make(capture._session_finalize, rec.SessionFinalizeRecord),
        "subagent_start": make(capture._subagent_start, rec.SubagentStartRecord),
    }


def state_callbacks(capture: HermesCapture) -> tuple[Callback, Callback, Callback]:
    """(on_create, on_end, on_reopen) for :func:`state_mirror.install`, which passes the fields
    of MirrorCreateRecord / MirrorEndRecord / MirrorReopenRecord (after ``normalize``) in order."""
    submit, nudge = capture.recorder.submit, capture.recorder.nudge
    create, end, reopen = capture._mirror_create, capture._mirror_end, capture._mirror_reopen

    def on_create(*args: Any) -> None:
        submit((create, *args))

    def on_end(*args: Any) -> None:
        submit((end, *args))
        nudge()

    def on_reopen(*args: Any) -> None:
        submit((reopen, *args))

    return on_create, on_end, on_reopen
