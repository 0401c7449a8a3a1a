"""Read what hermetry recorded, for tests (yours and ours): ``rows(db, sql)`` as plain dicts."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def rows(db: str | Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Run one query on a telemetry file, opened read-only, and return its rows as dicts."""
    conn = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()
