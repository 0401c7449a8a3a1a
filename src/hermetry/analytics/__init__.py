"""Analytics over the embedded store: the calls every surface (CLI, slash command, JSON) renders.

``insights(db, Query)`` — the report for a window; ``compare(db, baseline, current)`` — two
windows with significance-tested verdicts; ``list_sessions(db, since_ms, until_ms)`` and
``session_detail(db, session_id)`` — sessions, their waterfalls and lineage. docs/json.md
documents what each returns.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Query", "SessionNotFound", "compare", "insights", "list_sessions", "session_detail"]

#: name → the module that defines it; imported on first use, so that ``hermetry insights``
#: does not pay for compare and sessions at start-up.
_HOME = {"Query": "query", "SessionNotFound": "sessions", "compare": "compare", "insights": "report",
         "list_sessions": "sessions", "session_detail": "sessions"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(f"hermetry.analytics.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
