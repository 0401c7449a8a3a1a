"""Session lifecycle as Hermes records it in its own ``state.db`` — observed, never written.

Hermes 0.19.0 fires no hook when a one-shot run ends, when a compression continuation
starts a child session, or with the ``end_reason`` it stores. All of those go through a few
methods of ``hermes_state.SessionDB``; wrapping them lets hermetry see exactly the session
ids, sources, lineage and raw end reasons that Hermes writes, on every runtime path.

The same goes for the usage of auxiliary model calls (``record_auxiliary_usage``: its task and
token counts), for Hermes' cron status (``cron.scheduler.mark_job_run``) and for a model's call
of a tool that does not exist (``agent.conversation_loop._invalid_tool_name_error_content``):
Hermes 0.19.0 fires no hook for any of them.

The wrappers call Hermes' function first and, only if it returned, queue one small tuple.
hermetry still never opens or writes ``state.db`` itself.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hermetry")

#: end reasons that Hermes' promote_to_session_reset() may overwrite (hermes_state.py, 0.19.0)
PROMOTABLE_END_REASONS = ("agent_close", "ws_orphan_reap")


def install(on_create: Callable[..., None], on_end: Callable[..., None], on_reopen: Callable[..., None],
            on_aux_usage: Callable[[Any, Any, dict[str, Any]], None] | None = None) -> bool:
    """Wrap SessionDB's lifecycle methods once per process. False when Hermes isn't importable."""
    try:
        from hermes_state import SessionDB
    except Exception:
        return False
    if getattr(SessionDB.end_session, "__hermetry_wrapped__", False):
        return True

    def wrap(name: str, after: Callable[..., None]) -> None:
        original = getattr(SessionDB, name, None)
        if original is None:
            return

        @functools.wraps(original)
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            try:
                after(time.time(), result, *args, **kwargs)
            except Exception:
                pass
            return result

        method.__hermetry_wrapped__ = True  # type: ignore[attr-defined]
        setattr(SessionDB, name, method)

    def create_session(t: float, _result: Any, session_id: Any, source: Any = None, **kw: Any) -> None:
        on_create(t, session_id, source, kw.get("model"), kw.get("parent_session_id"), kw.get("profile_name"))

    def end_session(t: float, _result: Any, session_id: Any, end_reason: Any = None, *_: Any, **__: Any) -> None:
        on_end(t, session_id, end_reason, ())

    def promote(t: float, result: Any, session_id: Any, reason: Any = "session_reset", *_: Any, **__: Any) -> None:
        if result:  # Hermes returns True when it did promote the row
            on_end(t, session_id, reason, PROMOTABLE_END_REASONS)

    def reopen(t: float, _result: Any, session_id: Any, *_: Any, **__: Any) -> None:
        on_reopen(t, session_id)

    def aux_usage(t: float, _result: Any, session_id: Any = None, task: Any = None, *_: Any, **kw: Any) -> None:
        if on_aux_usage is not None:
            on_aux_usage(session_id, task, {k: kw.get(k) for k in _AUX_FIELDS})

    wrap("create_session", create_session)
    wrap("record_auxiliary_usage", aux_usage)
    wrap("end_session", end_session)
    wrap("promote_to_session_reset", promote)
    wrap("reopen_session", reopen)
    return True


_AUX_FIELDS = ("model", "billing_provider", "billing_base_url", "input_tokens", "output_tokens",
               "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _wrap_function(module: Any, name: str, after: Callable[..., None]) -> bool:
    original = getattr(module, name, None)
    if original is None or not callable(original):
        return False
    if getattr(original, "__hermetry_wrapped__", False):
        return True

    @functools.wraps(original)
    def function(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            after(*args, **kwargs)
        except Exception:
            pass
        return result

    function.__hermetry_wrapped__ = True  # type: ignore[attr-defined]
    setattr(module, name, function)
    return True


def install_late(on_cron_status: Callable[[Any, Any], None], on_unknown_tool: Callable[[Any], None]) -> None:
    """Wrap what Hermes has loaded by its first model call (imported nothing of Hermes' here).

    ``cron.scheduler`` imports ``mark_job_run`` by name, so its own reference is the one wrapped.
    """
    import sys

    scheduler = sys.modules.get("cron.scheduler")
    if scheduler is not None:
        def cron_status(job_id: Any = None, success: Any = None, *_: Any, **__: Any) -> None:
            on_cron_status(job_id, success)

        _wrap_function(scheduler, "mark_job_run", cron_status)
    loop = sys.modules.get("agent.conversation_loop")
    if loop is not None:
        def unknown_tool(name: Any = None, *_: Any, **__: Any) -> None:
            on_unknown_tool(name)

        _wrap_function(loop, "_invalid_tool_name_error_content", unknown_tool)
