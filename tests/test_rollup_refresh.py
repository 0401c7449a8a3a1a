"""Long-lived readers keep the rollups built: `/telemetry` (inside Hermes' process) and `metrics
serve` rebuild dirty closed hours in a thread of their own, throttled — never on the caller's
thread (item 6 of the retention brief; review R5)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from hermetry.stores import rollups
from hermetry.stores.rollup_refresh import RollupRefresher
from hermetry.testing.history import synthetic_history


def _dirty(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def dirty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[threading.Thread]]:
    """A recorded history never rebuilt (every hour dirty; all of them closed long ago), and the
    threads ``rollups.refresh`` ran on."""
    db = synthetic_history(seed=51, days=5, sessions_per_day=6).record(tmp_path / "telemetry.db")
    assert _dirty(db) > 24
    ran_on: list[threading.Thread] = []
    real = rollups.refresh

    def refresh(*args: Any, **kwargs: Any) -> Any:
        ran_on.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(rollups, "refresh", refresh)
    return db, ran_on


def test_telemetry_refreshes_the_rollups_off_its_own_thread(dirty_store: tuple[Path, list[threading.Thread]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from hermetry.surfaces import hermes_commands

    db, ran_on = dirty_store
    monkeypatch.setenv("HERMETRY_DB", str(db))
    monkeypatch.setattr(hermes_commands, "_REFRESHERS", {})
    text = hermes_commands.slash_telemetry("30")
    assert not text.startswith("hermetry:"), text
    refresher = hermes_commands.rollup_refresher(db)
    assert refresher.thread is not None and refresher.child
    refresher.thread.join(timeout=120)
    # rebuilt by a child process: nothing of it ran in Hermes' process (no thread here took the GIL for it)
    assert ran_on == []
    assert _dirty(db) == 0 and refresher.last is not None and refresher.last.hours > 24
    hermes_commands.slash_telemetry("30")  # within the minute: no second rebuild
    assert refresher.thread.ident is not None and not refresher.thread.is_alive()
    assert hermes_commands.rollup_refresher(db).kick() is None


def test_a_child_refresh_gets_the_store_through_its_environment_not_its_arguments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL URL may hold a password; ``ps`` shows every process's arguments to every user."""
    import subprocess

    from hermetry.stores import rollup_refresh

    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def spy(args: list[str], **kwargs: Any) -> Any:  # records, then runs the real child
        seen.append((list(args), dict(kwargs["env"])))
        return real_run(args, **kwargs)

    monkeypatch.setattr(rollup_refresh.subprocess, "run", spy)
    url = "postgresql://hermetry:s3cret-pw@127.0.0.1:9/telemetry?connect_timeout=1"
    r = RollupRefresher(url, every_s=0, child=True)
    thread = r.kick()
    assert thread is not None
    thread.join(timeout=60)
    assert r.last is None  # nothing listens there: nothing done, nothing raised
    (args, env), = seen
    assert not any("s3cret" in a for a in args) and env["HERMETRY_REFRESH_DB"] == url


def test_metrics_serve_refreshes_the_rollups_in_the_background(
        dirty_store: tuple[Path, list[threading.Thread]]) -> None:
    from hermetry.surfaces.metrics import TelemetryCollector

    db, ran_on = dirty_store
    shown = TelemetryCollector(db, min_interval_s=0)  # `metrics show`: one pass, nothing written
    shown.snapshot()
    assert shown.rollups.thread is None and _dirty(db) > 24
    collector = TelemetryCollector(db, min_interval_s=0, keep_rollups=True)  # what `metrics serve` runs
    collector.snapshot()  # every scrape kicks the (throttled) rebuild and does not wait for it
    assert collector.rollups.thread is not None
    collector.rollups.thread.join(timeout=120)
    assert ran_on == [collector.rollups.thread] and _dirty(db) == 0


def test_a_refresher_never_raises_and_never_overlaps(tmp_path: Path) -> None:
    r = RollupRefresher(tmp_path / "missing" / "telemetry.db", every_s=0)
    thread = r.kick()
    assert thread is not None
    thread.join(timeout=30)
    assert r.last is None and not (tmp_path / "missing").exists()  # nothing to do, nothing created
    never = RollupRefresher(tmp_path / "t.db", every_s=float("inf"))
    assert never.kick() is None
