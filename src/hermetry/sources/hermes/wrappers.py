"""Two wrappers around Hermes' process, for what its 0.19.0 hooks do not say or do.

* ``AIAgent.interrupt``: remember *why* a turn was interrupted (a person, or a timeout);
* ``os._exit``: Hermes ends one-shot runs (and some CLI exits) with ``os._exit``, which skips
  ``atexit`` — flush what is queued first, bounded, so a locked file delays the exit by at most
  ``HARD_EXIT_FLUSH_S`` and never prevents it.

Both are idempotent (a second install is a no-op) and swallow every error of their own: a failure
here loses a figure, never a Hermes call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

HARD_EXIT_FLUSH_S = 2.0


def wrap_interrupt(on_interrupt: Callable[[Any, Any], None]) -> None:
    """Call ``on_interrupt(session_id, message)`` before every ``AIAgent.interrupt``."""
    try:
        import run_agent
    except Exception:
        return
    cls = getattr(run_agent, "AIAgent", None)
    original = getattr(cls, "interrupt", None)
    if cls is None or original is None or getattr(original, "__hermetry_wrapped__", False):
        return

    def interrupt(self: Any, message: Any = None, *args: Any, **kwargs: Any) -> Any:
        try:
            on_interrupt(getattr(self, "session_id", None), message)
        except Exception:
            pass
        return original(self, message, *args, **kwargs)

    interrupt.__hermetry_wrapped__ = True  # type: ignore[attr-defined]
    interrupt.__wrapped__ = original  # type: ignore[attr-defined]
    cls.interrupt = interrupt


_interrupt_wrapped = False


def wrap_interrupt_if_loaded(on_interrupt: Callable[[Any, Any], None]) -> None:
    """:func:`wrap_interrupt` once Hermes has imported ``run_agent`` (never imports it itself).

    Called from the session-start, turn-start and gateway-dispatch hooks, so a timeout that strikes
    before the process's first model call still says why; once installed, one flag check.
    """
    global _interrupt_wrapped
    if _interrupt_wrapped:
        return
    import sys

    run_agent = sys.modules.get("run_agent")
    if run_agent is None:
        return
    wrap_interrupt(on_interrupt)
    original = getattr(getattr(run_agent, "AIAgent", None), "interrupt", None)
    _interrupt_wrapped = bool(getattr(original, "__hermetry_wrapped__", False))


def flush_before_hard_exit(flush: Callable[[float], Any], timeout_s: float = HARD_EXIT_FLUSH_S) -> None:
    """Call ``flush(timeout_s)`` before ``os._exit`` ends the process."""
    original = os._exit
    if getattr(original, "__hermetry_wrapped__", False):
        return

    def _exit(*args: Any, **kwargs: Any) -> Any:
        # any call form (positional, keyword, a wrong one) reaches os._exit exactly as it came
        try:
            flush(timeout_s)
        except BaseException:
            pass
        return original(*args, **kwargs)

    _exit.__hermetry_wrapped__ = True  # type: ignore[attr-defined]
    _exit.__wrapped__ = original  # type: ignore[attr-defined]
    os._exit = _exit
