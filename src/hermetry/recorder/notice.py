"""One clear line, once, where Hermes' own warnings go.

hermetry must never be noisy inside the agent, and never silent when it loses data. The first
time something goes wrong of a given kind (the store cannot be written, a file is from a newer
hermetry, …) :func:`warn_once` says so in one line:

* in a Hermes gateway (``hermes gateway run``) it goes to Hermes' log (``agent.log`` and
  ``errors.log`` under ``$HERMES_HOME/logs``) through the ``hermetry`` logger;
* everywhere else (``hermes -z``, ``hermes chat``, cron runs, the ``hermetry`` CLI, a Python
  program using the recorder) it is written to standard error, and also logged when Hermes'
  logging is set up (its log files only; a console handler would show it twice, so then the
  console handler is the one that shows it).

Later occurrences of the same kind are counted (:func:`counts`), not printed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger("hermetry")

_lock = threading.Lock()
_seen: dict[str, int] = {}
_said: list[str] = []


def _gateway_process() -> bool:
    argv = sys.argv[1:3]
    return "gateway" in argv


def _console_handler_on_root() -> bool:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            stream = getattr(handler, "stream", None)
            if stream in (sys.stderr, sys.__stderr__):
                return True
    return False


def warn_once(key: str, message: str) -> bool:
    """Say ``hermetry: message`` once per ``key`` in this process; True if it was said now.

    Never raises (a closed stderr or a broken handler only loses the line).
    """
    if getattr(_quiet, "on", False):
        return False
    try:
        with _lock:
            _seen[key] = _seen.get(key, 0) + 1
            if _seen[key] > 1:
                return False
            _said.append(message)
        has_logging = logging.getLogger().hasHandlers() and bool(logging.getLogger().handlers)
        if has_logging:
            # the log format names the logger already ("hermetry: …"): don't repeat it
            log.warning("%s", message)
        if _gateway_process() or (has_logging and _console_handler_on_root()):
            return True
        stream = sys.stderr
        if stream is None or getattr(stream, "name", None) == os.devnull:
            # `hermes -z` sends stderr to /dev/null while the agent runs and writes its own
            # warnings to the real stderr: so does hermetry
            stream = sys.__stderr__
        if stream is not None:
            stream.write(f"hermetry: {message}\n")
            stream.flush()
        return True
    except Exception:
        return False


_quiet = threading.local()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Within the block, on this thread, notices are neither said nor remembered (a view such as
    ``hermetry doctor`` lists the same problems itself)."""
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = False


def counts() -> dict[str, int]:
    """How often each kind of notice was raised in this process (said once, counted always)."""
    with _lock:
        return dict(_seen)


def said() -> list[str]:
    """The lines said so far in this process (for tests and ``hermetry doctor``)."""
    with _lock:
        return list(_said)


def reset() -> None:
    """Forget what was said (tests)."""
    with _lock:
        _seen.clear()
        _said.clear()
