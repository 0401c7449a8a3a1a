"""How a session is classified: its type and its lineage — one definition for every source.

The live capture (from Hermes' hooks) and the backfill (from Hermes' state.db) both classify
through these, so a `hermes -z` session or a compression child means the same in either.
"""

from __future__ import annotations


def session_type_for(platform: str | None, argv: list[str]) -> str | None:
    """What kind of run a session belongs to, from its source platform and how Hermes started."""
    p = (platform or "").lower()
    if p == "subagent":
        return "subagent"
    if p == "cron":
        return "cron"
    if p == "api_server":
        return "api"
    if p in ("cli", ""):
        if any(a in ("-z", "--oneshot") or a.startswith("--oneshot=") for a in argv):
            return "oneshot"
        if any(a in ("-q", "--query") for a in argv):
            return "query"
        return "interactive" if p == "cli" else None
    if p == "tui":
        return "interactive"
    if p in ("acp", "batch"):
        return p
    return "gateway"


def lineage_for(source: str | None, parent_session_id: str | None) -> str | None:
    """``subagent`` for a delegated child, ``continuation`` for a compression or branch child."""
    if not parent_session_id:
        return None
    return "subagent" if source == "subagent" else "continuation"
