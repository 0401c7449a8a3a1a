"""Session lifecycle as Hermes records it in its own ``state.db`` — observed, never written.

Hermes 0.19.0 fires no hook when a one-shot run ends, when a compression continuation
starts a child session, or with the ``end_reason`` it stores. All of those go through a few
methods of ``hermes_state.SessionDB``; wrapping them lets hermetry see exactly the session
ids, sources, lineage and raw end reasons that Hermes writes, on every runtime path.

The wrappers call Hermes' method first and, only if it returned, queue one small tuple.
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


def install(on_create: Callable[..., None], on_end: Callable[..., None], on_reopen: Callable[..., None]) -> bool:
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

    wrap("create_session", create_session)
    wrap("end_session", end_session)
    wrap("promote_to_session_reset", promote)
    wrap("reopen_session", reopen)
    return True
