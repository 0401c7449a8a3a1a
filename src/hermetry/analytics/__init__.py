"""Analytics over the embedded store: the calls every surface (CLI, slash command, JSON) renders.

``insights(db, Query)`` — the report for a window; ``compare(db, baseline, current)`` — two
windows with significance-tested verdicts; ``list_sessions(db, since_ms, until_ms)`` and
``session_detail(db, session_id)`` — sessions, their waterfalls and lineage. docs/json.md
documents what each returns.
"""

from hermetry.analytics.compare import compare
from hermetry.analytics.query import Query
from hermetry.analytics.report import insights
from hermetry.analytics.sessions import SessionNotFound, list_sessions, session_detail

__all__ = ["Query", "SessionNotFound", "compare", "insights", "list_sessions", "session_detail"]
