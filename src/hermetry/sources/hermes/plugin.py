"""The Hermes plugin: ``pip install hermetry && hermes plugins enable hermetry``.

Hermes finds this module through the ``hermes_agent.plugins`` entry point and calls
:func:`register`. Everything here is wrapped so that a failure to set up telemetry leaves
Hermes exactly as it was, only unobserved.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from hermetry import config
from hermetry.recorder.recorder import Recorder
from hermetry.sources.hermes import state_mirror, stream_probe
from hermetry.sources.hermes.hooks import HermesCapture, profile_name

log = logging.getLogger("hermetry")

_lock = threading.Lock()
_capture: HermesCapture | None = None


def _sqlite_store_factory() -> Any:
    from hermetry.stores.sqlite import SQLiteStore

    path = config.db_path()
    return lambda: SQLiteStore(path)


class _LazyPricer:
    """Prices API calls on the writer thread; loads the pricing code and the price file there, on
    the first call that needs them — never on the agent's thread while Hermes starts."""

    def __init__(self) -> None:
        self._processor: Any = None

    def __call__(self, event: Any) -> Any:
        if self._processor is None:
            from hermetry.cost.processor import PriceApiCalls

            self._processor = PriceApiCalls.from_file(config.price_file_path())
        return self._processor(event)


def get_capture() -> HermesCapture:
    """The process-wide capture (one recorder per process, however often Hermes registers us)."""
    global _capture
    with _lock:
        if _capture is None:
            recorder = Recorder(_sqlite_store_factory(), processors=[_LazyPricer()])
            _capture = HermesCapture(recorder, profile=profile_name())
        return _capture


def _wrap_interrupt(capture: HermesCapture) -> None:
    """Remember why a turn was interrupted (a person, or a timeout): Hermes 0.19.0's hooks don't say."""
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
            capture.on_interrupt(getattr(self, "session_id", None), message)
        except Exception:
            pass
        return original(self, message, *args, **kwargs)

    interrupt.__hermetry_wrapped__ = True  # type: ignore[attr-defined]
    interrupt.__wrapped__ = original  # type: ignore[attr-defined]
    cls.interrupt = interrupt


def _flush_before_hard_exit(capture: HermesCapture) -> None:
    """Hermes ends one-shot runs (and some CLI exits) with ``os._exit``, which skips ``atexit``.

    Wrap it so what is queued is written first — bounded, so a locked file delays the exit by
    at most ``HARD_EXIT_FLUSH_S`` and never prevents it.
    """
    import os

    original = os._exit
    if getattr(original, "__hermetry_wrapped__", False):
        return

    def _exit(code: int) -> None:
        try:
            capture.recorder.flush(HARD_EXIT_FLUSH_S)
        except BaseException:
            pass
        original(code)

    _exit.__hermetry_wrapped__ = True  # type: ignore[attr-defined]
    os._exit = _exit  # type: ignore[assignment]


HARD_EXIT_FLUSH_S = 2.0


def register(ctx: Any) -> None:
    """Hermes plugin entry point."""
    try:
        capture = get_capture()
        for hook, callback in capture.callbacks().items():
            ctx.register_hook(hook, callback)
        # The OpenAI SDK wrapper and the interrupt wrapper are set up on the first model call
        # (the middleware's first run), so enabling hermetry imports nothing of Hermes' early.
        stream_probe.ON_ABORT = capture.on_api_aborted
        stream_probe.ON_INSTALL = lambda: _wrap_interrupt(capture)
        ctx.register_middleware("llm_execution", stream_probe.llm_execution_middleware)
        state_mirror.install(*capture.state_callbacks())
        _flush_before_hard_exit(capture)
    except Exception:
        log.warning("hermetry: could not start telemetry capture", exc_info=True)
        return
    try:
        from hermetry.surfaces import hermes_commands

        hermes_commands.register(ctx)
    except Exception:
        log.debug("hermetry: commands not registered", exc_info=True)
