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
    if p == "webhook":  # each webhook delivery is one run (Hermes ends it ``webhook_complete``)
        return "webhook"
    if p in ("cli", ""):
        return one_shot_kind(argv) or ("interactive" if p == "cli" else None)
    if p == "tui":
        return "interactive"
    if p in ("acp", "batch"):
        return p
    return "gateway"


def one_shot_kind(argv: list[str]) -> str | None:
    """``oneshot`` for ``hermes -z …``, ``query`` for ``hermes chat -q …`` (one request, no chat
    prompt in the process), None for anything else. ``argv`` is ``sys.argv[1:]``."""
    if any(a in ("-z", "--oneshot") or a.startswith("--oneshot=") for a in argv):
        return "oneshot"
    if any(a in ("-q", "--query") for a in argv):
        return "query"
    return None


def profile_for_home(hermes_home: str | None) -> str:
    """The Hermes profile a home folder belongs to: ``…/profiles/NAME`` is profile NAME, any
    other home (or none) is ``default`` — for the live capture (``$HERMES_HOME``) and the
    backfill (the folder of the ``state.db`` it reads) alike."""
    parts = (hermes_home or "").rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "profiles" and parts[-1]:
        return parts[-1]
    return "default"


def ancestors(parents: dict[str, str], session_id: str) -> list[str]:
    """Parent, grandparent, … up to the root (nearest first), from a child → parent map. A cycle
    (a bug upstream) stops the walk where it closes."""
    out, seen, sid = [], {session_id}, session_id
    while sid in parents and parents[sid] not in seen:
        sid = parents[sid]
        seen.add(sid)
        out.append(sid)
    return out


def lineage_for(source: str | None, parent_session_id: str | None) -> str | None:
    """``subagent`` for a delegated child, ``continuation`` for a compression or branch child."""
    if not parent_session_id:
        return None
    return "subagent" if source == "subagent" else "continuation"
