"""``hermetry metrics serve`` on bad input: a bad port, a port in use, a broken file."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hermetry.model.events import SessionEnded, SessionStarted
from hermetry.stores.sqlite import SQLiteStore
from hermetry.surfaces import metrics


def _serve(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(db), "metrics", "serve", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_bad_port_is_a_usage_error(tmp_path: Path) -> None:
    out = _serve("--port", "99999", db=tmp_path / "t.db")
    assert out.returncode == 2 and "--port 99999: use 0..65535" in out.stderr and "Traceback" not in out.stderr


def test_a_port_in_use_is_the_environment(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = _serve("--port", str(busy.getsockname()[1]), db=tmp_path / "t.db")
    assert out.returncode == 1 and "cannot listen on 127.0.0.1" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2 and "Traceback" not in out.stderr


def test_a_broken_file_is_one_line_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    out = _serve("--port", "0", db=bad)
    assert out.returncode == 1 and "serving" not in out.stdout
    assert len(out.stderr.strip().splitlines()) <= 2 and "Traceback" not in out.stderr


def test_a_file_that_breaks_later_keeps_the_last_good_figures(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import prometheus_client  # noqa: F401 - the metrics extra (make test installs it): missing fails, never skips
    db = tmp_path / "t.db"
    store = SQLiteStore(db)
    store.write([SessionStarted("s", 1.0e12, source="cli", session_type="cli"),
                 SessionEnded("s", 1.0e12 + 5, "cli_close", "completed")], None)
    store.close()
    collector = metrics.TelemetryCollector(db, min_interval_s=0)
    good = collector.snapshot()
    assert any(s.metric.name == "hermetry.sessions" for s in good.series)
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 1000)
    for _ in range(3):
        collector._refresh()  # what a scrape's background pass does
        assert collector.snapshot() is good
    err = capsys.readouterr().err
    assert err.count("serving the last good figures") == 1 and "Traceback" not in err


def test_a_missing_file_is_served_as_an_empty_history_and_said_once(tmp_path: Path) -> None:
    import prometheus_client  # noqa: F401 - the metrics extra (make test installs it): missing fails, never skips
    proc = subprocess.Popen([sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(tmp_path / "typo.db"),
                             "metrics", "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert "serving http://127.0.0.1:" in proc.stdout.readline()
        warning = proc.stderr.readline()
        assert "does not exist yet" in warning and "check the path" in warning
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not (tmp_path / "typo.db").exists()  # serving never creates the file
