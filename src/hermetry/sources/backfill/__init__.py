"""Backfill: Hermes' existing history (its ``state.db``) in the same canonical model.

``import_state_db(path, store_path)`` imports one file; ``import_hermes_home(home, store_path,
all_profiles=True)`` imports a Hermes home and its profiles. Both are idempotent and
incremental, read Hermes' file read-only, and never store message content. docs/backfill.md
describes what is imported, what is derived and what is not captured.
"""

from hermetry.sources.backfill.importer import (
    BACKFILL_VERSION,
    ImportResult,
    Progress,
    import_hermes_home,
    import_state_db,
    profile_for_path,
)
from hermetry.sources.backfill.state_db import BackfillError

__all__ = [
    "BACKFILL_VERSION",
    "BackfillError",
    "ImportResult",
    "Progress",
    "import_hermes_home",
    "import_state_db",
    "profile_for_path",
]
