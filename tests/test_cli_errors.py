"""Every command, every bad input: one line ``hermetry: <what> (<what to do>)``, never a traceback.

Exit status 2 for a command line that cannot run as given, 1 for an environment that stops it
(docs/cli.md, "Errors and exit statuses"). Reading commands never create a file; a file from a
newer hermetry is read with a warning and never written; files on read-only media are read.
The commands run through the installed entry point (a real process) where the exit path
matters, in-process otherwise.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hermetry.stores.sqlite_schema import SCHEMA_VERSION
from hermetry.surfaces import cli
from hermetry.testing.faults import MountRefused, fill, remount_read_only, tmpfs
from hermetry.testing.history import DAY_MS, NOW_MS, synthetic_history

READERS = (("insights",), ("sessions",), ("compare",), ("export",), ("show", "x"))
WRITERS = (("reprice",), ("reconcile",))
SINCE = ("--since", "2000-01-01")


def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The real entry point, in a process of its own."""
    done = subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", *argv], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)
    return done.returncode, done.stdout, done.stderr


def inproc(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("hermetry: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    history = synthetic_history(seed=7, days=3, sessions_per_day=3)
    return history.record(tmp_path_factory.mktemp("errors") / "telemetry.db")


def copy_of(telemetry: Path, target: Path) -> Path:
    src = sqlite3.connect(telemetry)
    dst = sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()
    return target


# -- files that are not telemetry --------------------------------------------------------------

@pytest.mark.parametrize("what", ["random bytes", "a directory", "Hermes' state.db", "another database"])
def test_a_path_that_is_not_a_telemetry_file_is_one_line_for_every_command(tmp_path: Path, what: str) -> None:
    path = tmp_path / "telemetry.db"
    if what == "random bytes":
        path.write_bytes(os.urandom(8192))
    elif what == "a directory":
        path.mkdir()
    elif what == "Hermes' state.db":
        from hermes_state import SessionDB

        SessionDB(path).close()
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE things (x)")
        conn.commit()
        conn.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    content = path.read_bytes() if path.is_file() else None
    expected = {"random bytes": "is not a hermetry telemetry file", "a directory": "is a directory",
                "Hermes' state.db": "is Hermes' own state.db", "another database": "not a hermetry telemetry file"}
    for argv in (*READERS, *WRITERS):
        code, _, err = run("--db", str(path), *argv)
        line = one_line(err)
        assert code == 1 and expected[what] in line and "(" in line, (argv, err)
    # and through $HERMETRY_DB, the way the issue found it
    code, _, err = run("insights", env={"HERMETRY_DB": str(path)})
    assert code == 1 and expected[what] in one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created beside it
    if content is not None:
        assert path.read_bytes() == content  # and nothing written into it


def test_a_missing_file_is_the_same_line_for_every_reading_command_and_nothing_is_created(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "typo" / "telemetry.db"
    for argv in (*READERS, *WRITERS, ("export", "--format", "csv"), ("insights", "--json")):
        code, out, err = inproc(capsys, "--db", str(path), *argv)
        assert code == 1 and out == "", argv
        assert one_line(err).startswith(f"hermetry: no telemetry file at {path} ("), argv
    assert not (tmp_path / "typo").exists()


def test_an_empty_history_exports_like_insights_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "telemetry.db"
    path.touch()
    code, out, _ = inproc(capsys, "--db", str(path), "insights", "--json")
    assert code == 0 and json.loads(out)["coverage"]["turns"] == 0
    code, out, err = inproc(capsys, "--db", str(path), "export")
    assert (code, out, err) == (0, "", "")
    code, out, _ = inproc(capsys, "--db", str(path), "export", "--format", "csv", "--table", "turns")
    assert code == 0 and out.splitlines()[0].startswith("turn_id,")
    assert path.stat().st_size == 0  # still untouched


# -- schema versions ---------------------------------------------------------------------------

def test_a_future_schema_is_read_with_one_warning_and_never_written(telemetry: Path, tmp_path: Path) -> None:
    path = copy_of(telemetry, tmp_path / "future.db")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 3}")
    conn.commit()
    conn.close()
    content = path.read_bytes()
    code, out, err = run("--db", str(path), "insights", *SINCE, "--json")
    warning = one_line(err)
    assert code == 0 and "newer than this hermetry" in warning and "upgrade" in warning
    assert json.loads(out)["coverage"]["turns"] > 0
    code, _, err = run("--db", str(path), "sessions", *SINCE)
    assert code == 0 and "newer" in one_line(err)
    for argv in WRITERS:
        code, _, err = run("--db", str(path), *argv)
        line = one_line(err)
        assert code == 1 and "newer" in line and "upgrade hermetry" in line, (argv, err)
    assert path.read_bytes() == content


def test_an_older_schema_is_upgraded_in_place_and_read(telemetry: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A writable older file is migrated (as the recorder would); tests/test_dashboard_older_schema.py
    covers every older version and a file the reader cannot write (read from a copy, unchanged)."""
    from hermetry.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO sessions (session_id, source, started_at_ms, origin) VALUES ('old', 'cli', ?, 'live')",
                 (NOW_MS - DAY_MS,))
    conn.close()
    code, out, err = inproc(capsys, "--db", str(path), "sessions", *SINCE, "--json")
    assert code == 0 and err == "" and [s["session_id"] for s in json.loads(out)["sessions"]] == ["old"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


# -- read-only media and a full disk (real tmpfs mounts) ---------------------------------------

def _mount(path: Path, size: str = "2m") -> Any:
    try:
        return tmpfs(path, size)
    except MountRefused as exc:  # pragma: no cover - machines that forbid mounts
        pytest.skip(f"cannot mount a tmpfs here ({exc}); see docs/reliability.md")


def test_reports_read_a_file_on_read_only_media_and_writers_say_why_they_cannot(
        telemetry: Path, tmp_path: Path) -> None:
    try:
        mount = tmpfs(tmp_path / "ro", "4m")
        ro = mount.__enter__()
    except MountRefused as exc:  # pragma: no cover
        pytest.skip(f"cannot mount a tmpfs here ({exc}); see docs/reliability.md")
    try:
        path = copy_of(telemetry, ro / "telemetry.db")
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        conn.close()
        remount_read_only(ro)
        window = (*SINCE, "--until", "2100-01-01")
        expected = json.loads(run("--db", str(telemetry), "insights", *window, "--json")[1])
        code, out, err = run("--db", str(path), "insights", *window, "--json")
        assert code == 0 and err == "", err
        assert json.loads(out) == expected and expected["coverage"]["turns"] > 0
        for argv in (("sessions", *SINCE), ("export",), ("compare",)):
            code, out, err = run("--db", str(path), *argv)
            assert code == 0 and err == "" and out, (argv, err)
        for argv in WRITERS:
            code, _, err = run("--db", str(path), *argv)
            line = one_line(err)
            assert code == 1 and "read-only" in line, (argv, err)
    finally:
        mount.__exit__(None, None, None)


def test_export_to_a_full_disk_is_one_line(telemetry: Path, tmp_path: Path) -> None:
    try:
        mount = tmpfs(tmp_path / "full", "256k")
        full = mount.__enter__()
    except MountRefused as exc:  # pragma: no cover
        pytest.skip(f"cannot mount a tmpfs here ({exc}); see docs/reliability.md")
    try:
        fill(full)
        code, _, err = run("--db", str(telemetry), "export", "-o", str(full / "rows.jsonl"))
        line = one_line(err)
        assert code == 1 and "No space left on device" in line, err
    finally:
        mount.__exit__(None, None, None)


# -- bad values --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (("insights", "--days", "1e9"), "--days"), (("insights", "--days", "inf"), "--days"),
    (("insights", "--days", "nan"), "--days"), (("insights", "--days", "-1"), "--days"),
    (("insights", "--days", "0"), "--days"), (("sessions", "--days", "-1"), "--days"),
    (("compare", "--days", "0"), "--days"), (("sessions", "--limit", "-5"), "--limit"),
    (("sessions", "--limit", "0"), "--limit"), (("reconcile", "--grace-hours", "-1"), "--grace-hours"),
    (("reconcile", "--grace-hours", "inf"), "--grace-hours"),
    (("insights", "--since", "2025-01-01", "--until", "2025-02-01", "--days", "3"), "--days"),
    (("insights", "--since", "tuesday"), "--since"), (("insights", "--until", "soon"), "--until"),
    (("insights", "--since", "2025-02-01", "--until", "2025-01-01"), "--since"),
    (("compare", "--b-since", "2999-01-01"), "--b-since"), (("compare", "--a-until", "x"), "--a-until"),
    (("export", "-o", "/nonexistent/x"), "/nonexistent"), (("export", "--format", "yaml"), "--format"),
    (("reprice", "--prices", "nope.yaml"), "--prices"), (("insights", "--by", "colour"), "colour"),
    (("no-such-command",), "no-such-command"), (("insights", "--bogus"), "--bogus"),
])
def test_bad_values_are_usage_errors_naming_the_flag(telemetry: Path, capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path, argv: tuple[str, ...], flag: str) -> None:
    before = telemetry.stat().st_mtime_ns
    code, out, err = inproc(capsys, "--db", str(telemetry), *argv)
    line = one_line(err)
    assert code == 2 and flag in line and out == "", (argv, err)
    assert telemetry.stat().st_mtime_ns == before


def test_export_into_a_folder_is_refused_before_reading(telemetry: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = inproc(capsys, "--db", str(telemetry), "export", "-o", str(tmp_path))
    assert code == 2 and "is a folder" in one_line(err)


def test_since_with_days_is_the_days_from_since(telemetry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = inproc(capsys, "--db", str(telemetry), "insights", "--since", "2025-01-01", "--days", "3", "--json")
    window = json.loads(out)["window"]
    assert code == 0 and (window["since"], window["until"]) == ("2025-01-01T00:00:00+00:00",
                                                                "2025-01-04T00:00:00+00:00")
    code, out, _ = inproc(capsys, "--db", str(telemetry), "insights", "--until", "2025-01-04", "--days", "1", "--json")
    window = json.loads(out)["window"]
    assert (window["since"], window["until"]) == ("2025-01-03T00:00:00+00:00", "2025-01-04T00:00:00+00:00")


@pytest.mark.parametrize("content, expected", [(os.urandom(2048), "not UTF-8"), (b"models: [1, 2", "")])
def test_a_broken_price_file_is_one_line(telemetry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: bytes, expected: str) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_bytes(content)
    code, _, err = inproc(capsys, "--db", str(telemetry), "reprice", "--prices", str(prices))
    line = one_line(err)
    assert code == 1 and str(prices) in line and expected in line, err


def test_a_configured_price_file_that_does_not_exist_is_said(telemetry: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HERMETRY_PRICES", str(tmp_path / "gone.yaml"))
    code, _, err = inproc(capsys, "--db", str(telemetry), "reprice")
    assert code == 1 and "no price file at" in one_line(err) and "HERMETRY_PRICES" in err


def test_a_filter_value_in_the_wrong_case_gets_a_hint(telemetry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(f"{telemetry.as_uri()}?mode=ro", uri=True)
    (source,) = conn.execute("SELECT source FROM sessions WHERE source IS NOT NULL LIMIT 1").fetchone()
    conn.close()
    code, out, err = inproc(capsys, "--db", str(telemetry), "insights", *SINCE, "--source", source.upper(), "--json")
    assert code == 0 and json.loads(out)["coverage"]["turns"] == 0
    line = one_line(err)
    assert f"--source {source.upper()!r}" in line and repr(source) in line
    code, _, err = inproc(capsys, "--db", str(telemetry), "insights", *SINCE, "--source", source, "--json")
    assert code == 0 and err == ""


# -- import, config --------------------------------------------------------------------------

def test_import_with_a_hermes_home_writes_that_homes_file_and_says_where(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hermes_state import SessionDB

    other = tmp_path / "other-home"
    other.mkdir()
    db = SessionDB(other / "state.db")
    db.create_session("s1", "cli", model="m")
    db.end_session("s1", "cli_close")
    db.close()
    code, _, err = inproc(capsys, "import", "--hermes-home", str(other))
    target = other / "hermetry" / "telemetry.db"
    assert code == 0 and f"telemetry file: {target}" in err
    assert target.exists() and not (Path(os.environ["HERMES_HOME"]) / "hermetry").exists()
    code, out, _ = inproc(capsys, "import", "--hermes-home", str(other), "--json")
    assert json.loads(out)["telemetry_file"] == str(target)


def test_config_keys_of_the_wrong_type_or_unknown_get_one_warning_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry import config
    from hermetry.recorder import notice

    notice.reset()
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("hermetry:\n  db_path: [1, 2]\n  colour: blue\n"
                                      "  telemetry_command: {allow: 5}\n")
    monkeypatch.setenv("HERMES_HOME", str(home))
    for _ in range(3):
        assert config.db_path() == home / "hermetry" / "telemetry.db"  # the bad value is ignored
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3, err
    assert "hermetry.db_path must be text" in err[0]
    assert "unknown config key hermetry.colour" in err[1]
    assert "hermetry.telemetry_command.allow must be" in err[2]
    notice.reset()


def test_an_unexpected_error_is_one_line_too(telemetry: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import hermetry.analytics.report as report

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(report, "insights", broken)
    code, _, err = inproc(capsys, "--db", str(telemetry), "insights")
    line = one_line(err)
    assert code == 1 and "ZeroDivisionError: a bug" in line and "HERMETRY_DEBUG=1" in line


def test_the_documented_errors_are_what_the_cli_says(telemetry: Path, tmp_path: Path) -> None:
    """docs/cli.md's "Errors and exit statuses" examples, run in a folder holding their files."""
    from hermes_state import SessionDB

    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    block = docs.split("<!-- errors:begin -->", 1)[1].split("<!-- errors:end -->", 1)[0]
    lines = [line for line in block.splitlines() if line and not line.startswith("```")]
    copy_of(telemetry, tmp_path / "telemetry.db")
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    SessionDB(tmp_path / "state.db").close()
    examples = 0
    for i in range(0, len(lines), 3):
        command, said, status = lines[i:i + 3]
        assert command.startswith("$ hermetry ") and status.startswith("[exit "), lines[i:i + 3]
        done = subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", *command.split()[2:]],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env={**os.environ, "COLUMNS": "200"})
        assert (done.stderr.strip(), f"[exit {done.returncode}]") == (said, status), command
        examples += 1
    assert examples >= 8
