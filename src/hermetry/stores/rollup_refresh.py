"""Keeping a store's rollups built from a long-lived reader (``metrics serve``, ``/telemetry``).

``RollupRefresher(db).kick()`` starts :func:`hermetry.stores.rollups.refresh` — the bounded
rebuild of dirty closed hours every reader that can write uses (the CLI's ``insights``, the
dashboard) — in a daemon thread of its own: at most one at a time, at most every ``every_s``,
never on the caller's thread, never raising. Without it a process that only reads (a gateway
answering ``/telemetry`` for weeks, a ``metrics serve``) leaves the hours written since the last
``hermetry insights``/``rollup`` dirty, and every report reads them raw. Reads stay right either
way (dirty hours are read from raw rows); this only keeps them fast.

``child=True`` (what ``/telemetry`` uses, since it answers inside Hermes' own process) runs the
refresh in a child Python process at ``nice`` 10 instead of a thread: the thread that starts it
only waits for the child, so the rebuild's Python work never takes the interpreter lock from the
agent's threads. The store's address reaches the child through its environment, never its
command line (a PostgreSQL URL may hold a password, and ``ps`` shows arguments to every user).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from typing import Any

#: How often a long-lived reader rebuilds the store's dirty hours (seconds), as the dashboard does.
EVERY_S = 60.0

#: What the child process of ``child=True`` runs: one bounded refresh, its stats as JSON on stdout.
_CHILD = (
    "import json, os\n"
    "try:\n    os.nice(10)\nexcept OSError:\n    pass\n"
    "from hermetry.stores import rollups\n"
    "budget = os.environ.get('HERMETRY_REFRESH_BUDGET_S')\n"
    "db = os.environ['HERMETRY_REFRESH_DB']\n"
    "stats = rollups.refresh(db) if not budget else rollups.refresh(db, budget_s=float(budget))\n"
    "print(json.dumps(stats.as_dict() if stats is not None else None))\n"
)
#: A child still running this long after its budget is killed (its transaction rolls back).
CHILD_GRACE_S = 60.0


class RollupRefresher:
    """A throttled background ``rollups.refresh(db)`` (see the module docstring)."""

    def __init__(self, db: Any, *, every_s: float = EVERY_S, budget_s: float | None = None,
                 name: str = "hermetry-rollups", child: bool = False) -> None:
        self.db = db
        #: run each refresh in a child process (see the module docstring), not in this one
        self.child = child
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

            if self.child:
                self.last = self._in_child()
            else:
                self.last = (rollups.refresh(self.db) if self.budget_s is None
                             else rollups.refresh(self.db, budget_s=self.budget_s))
        except Exception:  # noqa: BLE001 - reads stay right without it (dirty hours read raw), only slower
            self.last = None
        finally:
            with self._lock:
                self._running = False

    def _in_child(self) -> Any:
        from hermetry.stores.rollups import REFRESH_BUDGET_S, RebuildStats

        env = dict(os.environ, HERMETRY_REFRESH_DB=str(self.db))
        if self.budget_s is not None:
            env["HERMETRY_REFRESH_BUDGET_S"] = repr(self.budget_s)
        budget = REFRESH_BUDGET_S if self.budget_s is None else self.budget_s
        try:
            done = subprocess.run([sys.executable, "-c", _CHILD], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=budget + CHILD_GRACE_S,
                                  start_new_session=True, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0:
            return None
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        stats = json.loads(lines[-1]) if lines else None
        if not isinstance(stats, dict):
            return None
        return RebuildStats(hours=int(stats["hours_rebuilt"]), rows=int(stats["rollup_rows"]),
                            seconds=float(stats["seconds"]), dirty_left=int(stats["dirty_hours_left"]))
