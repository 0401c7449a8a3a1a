"""Time to first token and provider-reported cost, observed on the model call itself.

Hermes 0.19.0 exposes neither to plugins. We learn them the way OpenTelemetry's OpenAI
instrumentation does, by watching the SDK call:

1. an ``llm_execution`` middleware (which knows Hermes' ``api_request_id``) notes the
   request's ``messages`` list — the very object Hermes passes on to the SDK — before the call;
2. a thin wrapper around ``openai...Completions.create`` recognises that list, and wraps the
   returned ``Stream``'s iterator so the first chunk carrying content, a tool call or reasoning
   is time-stamped, and a ``usage.cost`` in the final chunk is kept.

Nothing is added to the outgoing request. Anything this module cannot recognise — another SDK,
a non-streamed reply — is simply "not captured": the probe never guesses. Every step is wrapped
so that a failure here only loses the figure.

**Auxiliary calls** (compression summaries, titles, vision, web_extract, session_search) go
through the same SDK with no hook in Hermes 0.19.0. The wrapper times each such call (one
physical attempt) into a context variable; Hermes then records the successful one's usage with
``SessionDB.record_auxiliary_usage`` on the same thread, where ``state_mirror`` picks the timing
up — so each auxiliary call becomes exactly one row, from one observation (never two). A failed
auxiliary attempt, which Hermes does not record, is reported through :data:`ON_AUX_ERROR`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

log = logging.getLogger("hermetry")

#: api_request_id -> probe dict {"start": s, "first": s | None, "cost": usd | None, "streamed": bool | None}
PROBES: dict[str, dict[str, Any]] = {}
#: id(messages list) -> (probe, the list itself, kept alive so its id cannot be reused meanwhile)
_INFLIGHT: dict[int, tuple[dict[str, Any], object]] = {}
_MAX_PROBES = 4096  # probes whose hook never fired (crashed calls) must not accumulate

#: Called as ON_ABORT(context, probe, ended_at_s) when a model call is interrupted: Hermes 0.19.0
#: fires no hook for an interrupted call, so the capture records that attempt from here.
ON_ABORT: Callable[[dict[str, Any], dict[str, Any] | None, float], None] | None = None


#: The last auxiliary SDK call on this thread/context: {"start": s, "end": s, "model": str | None}.
AUX_TIMING: ContextVar[dict[str, Any] | None] = ContextVar("hermetry_aux_timing", default=None)
#: Called as ON_AUX_ERROR(timing, exception) when an auxiliary SDK call raised.
ON_AUX_ERROR: Callable[[dict[str, Any], BaseException], None] | None = None

_LOCAL = threading.local()


def last_call_context() -> dict[str, Any] | None:
    """The ids of the last main-loop model call made on this thread (session, turn, request)."""
    return getattr(_LOCAL, "context", None)


def take_aux_timing() -> dict[str, Any] | None:
    """Remove and return the timing of the last auxiliary call on this thread/context."""
    timing = AUX_TIMING.get()
    if timing is not None:
        AUX_TIMING.set(None)
    return timing


def take_probe(api_request_id: object) -> dict[str, Any] | None:
    """Remove and return the probe for a finished API request attempt (hot path: one dict pop)."""
    if isinstance(api_request_id, str):
        return PROBES.pop(api_request_id, None)
    return None


def mark_synthetic(api_request_id: object) -> None:
    """This request was answered by hermetry itself (``/telemetry``), not by a model: don't record it."""
    if isinstance(api_request_id, str):
        probe = PROBES.get(api_request_id)
        if probe is None:
            probe = PROBES[api_request_id] = {"start": time.time(), "first": None, "cost": None, "streamed": None}
        probe["synthetic"] = True


def llm_execution_middleware(request: Any = None, next_call: Callable[..., Any] | None = None, **context: Any) -> Any:
    """Hermes ``llm_execution`` middleware: mark the request, run it unchanged."""
    assert next_call is not None
    key = None
    try:
        if not _installed:
            _install_once()  # on the first model call, not while Hermes starts up
        api_request_id = context.get("api_request_id")
        _LOCAL.context = {"session_id": context.get("session_id"), "turn_id": context.get("turn_id"),
                          "api_request_id": api_request_id}
        messages = request.get("messages") if isinstance(request, dict) else None
        if isinstance(api_request_id, str) and api_request_id and isinstance(messages, list):
            if len(PROBES) > _MAX_PROBES:
                PROBES.clear()
            probe: dict[str, Any] = {"start": time.time(), "first": None, "cost": None, "streamed": None}
            PROBES[api_request_id] = probe
            key = id(messages)
            _INFLIGHT[key] = (probe, messages)
    except Exception:  # pragma: no cover - defensive
        key = None
    try:
        _LOCAL.in_main = getattr(_LOCAL, "in_main", 0) + 1
    except Exception:
        pass
    try:
        return next_call()
    except Exception as exc:
        # Hermes' middleware chain wraps downstream errors; the interrupt is the .original
        on_abort = ON_ABORT
        if on_abort is not None and isinstance(getattr(exc, "original", exc), InterruptedError):
            try:
                taken = take_probe(context.get("api_request_id"))
                if taken is not None and taken.get("sent"):  # interrupted before sending: no attempt
                    on_abort(context, taken, time.time())
            except Exception:
                pass
        raise
    finally:
        try:
            _LOCAL.in_main -= 1
            if key is not None:
                _INFLIGHT.pop(key, None)
        except Exception:
            pass


def _chunk_has_payload(chunk: Any) -> bool:
    choices = getattr(chunk, "choices", None)
    if not choices:
        return False
    delta = getattr(choices[0], "delta", None)
    if delta is None:
        return False
    if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
        return True
    extra = getattr(delta, "model_extra", None) or {}
    return bool(extra.get("reasoning_content") or extra.get("reasoning"))


def _usage_cost(usage: Any) -> float | None:
    """An OpenRouter-style ``usage.cost`` (USD) if the provider reported one."""
    if usage is None:
        return None
    extra = getattr(usage, "model_extra", None) or {}
    cost = extra.get("cost")
    if cost is None and isinstance(usage, dict):
        cost = usage.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
        return None
    return float(cost)


def _timed(iterator: Iterator[Any], probe: dict[str, Any], generation: int) -> Iterator[Any]:
    waiting = True
    for chunk in iterator:
        try:
            if probe.get("gen") != generation:
                waiting = False  # Hermes reconnected: a newer stream of this attempt owns the probe
            elif waiting and _chunk_has_payload(chunk):
                probe["first"] = time.time()
                waiting = False
            usage = getattr(chunk, "usage", None)
            if usage is not None and probe.get("gen") == generation:
                cost = _usage_cost(usage)
                if cost is not None:
                    probe["cost"] = cost
        except Exception:  # pragma: no cover - defensive
            pass
        yield chunk


def _observe(probe: dict[str, Any], result: Any, streamed: bool) -> None:
    from openai import Stream

    probe["streamed"] = streamed
    if isinstance(result, Stream):
        result._iterator = _timed(result._iterator, probe, probe["gen"])
    elif not streamed:
        probe["cost"] = _usage_cost(getattr(result, "usage", None))


_installed = False
_sdk_wrapped = False
#: Called once the SDK is wrapped (the plugin sets the interrupt wrapper up here too).
ON_INSTALL: Callable[[], None] | None = None


def install_if_loaded() -> None:
    """Wrap the SDK now if Hermes has already imported it (costs nothing then).

    Called when a session starts: Hermes may make an auxiliary call (a preflight compression
    summary) before the turn's first main model call, which is where :func:`_install_once` runs.
    """
    global _sdk_wrapped
    if _sdk_wrapped:
        return
    import sys

    if "openai" in sys.modules:
        _sdk_wrapped = install()


def _install_once() -> None:
    global _installed, _sdk_wrapped
    _installed = True
    if not _sdk_wrapped:
        _sdk_wrapped = install()
    if ON_INSTALL is not None:
        try:
            ON_INSTALL()
        except Exception:
            log.debug("hermetry: deferred setup failed", exc_info=True)


def install() -> bool:
    """Wrap the OpenAI SDK's chat-completions ``create`` once. False if not possible here."""
    try:
        from openai.resources.chat.completions import Completions
    except Exception:
        return False
    original = Completions.create
    if getattr(original, "__hermetry_wrapped__", False):
        return True

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Outside Hermes' plugin isolation: anything of hermetry's that fails here only loses the
        # figure — the call itself is made exactly once, with exactly the arguments it came with.
        try:
            entry = _INFLIGHT.get(id(kwargs.get("messages"))) if _INFLIGHT else None
            if entry is None:
                route = "main" if getattr(_LOCAL, "in_main", 0) else "auxiliary"
            else:
                route = "probe"
                probe = entry[0]
                probe["sent"] = True
                probe["gen"] = probe.get("gen", 0) + 1  # a reconnect within the attempt starts a new stream
                probe["first"] = None
        except Exception:
            route = "main"  # unobserved
        if route == "main":  # the main loop's call, not recognised: Hermes' hooks report it
            return original(self, *args, **kwargs)
        if route == "auxiliary":
            return _auxiliary(original, self, args, kwargs)
        result = original(self, *args, **kwargs)
        try:
            _observe(probe, result, bool(kwargs.get("stream")))
        except Exception:
            pass  # the stream is returned as the SDK made it
        return result

    create.__hermetry_wrapped__ = True  # type: ignore[attr-defined]
    create.__wrapped__ = original  # type: ignore[attr-defined]
    create.__doc__ = original.__doc__
    Completions.create = create  # type: ignore[method-assign]
    return True


def _auxiliary(original: Callable[..., Any], client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A model call no main-loop middleware announced: Hermes' auxiliary client. Time it."""
    try:
        start = time.time()
    except Exception:  # pragma: no cover - a broken clock must not stop the call
        start = 0.0
    try:
        result = original(client, *args, **kwargs)
    except BaseException as exc:
        on_error = ON_AUX_ERROR
        if on_error is not None and isinstance(exc, Exception):
            try:
                on_error({"start": start, "end": time.time(), "model": kwargs.get("model"),
                          "streamed": bool(kwargs.get("stream"))}, exc)
            except Exception:
                pass
        raise
    try:
        AUX_TIMING.set({"start": start, "end": time.time(), "model": kwargs.get("model"),
                        "streamed": bool(kwargs.get("stream"))})
    except Exception:  # pragma: no cover - defensive
        pass
    return result
