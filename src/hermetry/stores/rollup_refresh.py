"""Keeping a store's rollups built from a long-lived reader (``metrics serve``, ``/telemetry``).

``RollupRefresher(db).kick()`` starts :func:`hermetry.stores.rollups.refresh` — the bounded
rebuild of dirty closed hours every reader that can write uses (the CLI's ``insights``, the
dashboard) — in a daemon thread of its own: at most one at a time, at most every ``every_s``,
never on the caller's thread, never raising. Without it a process that only reads (a gateway
answering ``/telemetry`` for weeks, a ``metrics serve``) leaves the hours written since the last
``hermetry insights``/``rollup`` dirty, and every report reads them raw. Reads stay right either
way (dirty hours are read from raw rows); this only keeps them fast.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

#: How often a long-lived reader rebuilds the store's dirty hours (seconds), as the dashboard does.
EVERY_S = 60.0


class RollupRefresher:
    """A throttled background ``rollups.refresh(db)`` (see the module docstring)."""

    def __init__(self, db: Any, *, every_s: float = EVERY_S, budget_s: float | None = None,
                 name: str = "hermetry-rollups") -> None:
        self.db = db
        self.every_s = every_s
        self.budget_s = budget_s
        self.name = name
        self._lock = threading.Lock()
        self._running = False
        self._at = -math.inf
        #: the last refresh started (tests join it)
        self.thread: threading.Thread | None = None
        #: what the last finished refresh did (``RebuildStats`` or None: nothing to do / not writable)
        self.last: Any = None

    def kick(self) -> threading.Thread | None:
        """Start a refresh unless one runs or one started less than ``every_s`` ago; returns its
        thread (None when none was started). Returns at once."""
        with self._lock:
            if self.every_s == math.inf or self._running or time.monotonic() - self._at < self.every_s:
                return None
            self._running, self._at = True, time.monotonic()
        thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self.thread = thread
        thread.start()
        return thread

    def _work(self) -> None:
        try:
            from hermetry.stores import rollups

            self.last = (rollups.refresh(self.db) if self.budget_s is None
                         else rollups.refresh(self.db, budget_s=self.budget_s))
        except Exception:  # noqa: BLE001 - reads stay right without it (dirty hours read raw), only slower
            self.last = None
        finally:
            with self._lock:
                self._running = False
