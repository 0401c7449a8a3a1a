"""The CLI is a view: ``--json`` prints exactly what the library returns, and the tables show it.

Every command runs in-process through ``hermetry.surfaces.cli.main`` (one also through the
installed entry point) on a synthetic history recorded through the recorder; each result is
compared with the library call the command wraps.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import engine_missing
from hermetry.analytics.compare import compare
from hermetry.analytics.report import Query, insights
from hermetry.analytics.sessions import list_sessions, session_detail
from hermetry.surfaces import cli
from hermetry.surfaces.render import ms
from hermetry.testing.history import DAY_MS, NOW_MS, History, synthetic_history

SINCE, UNTIL = NOW_MS - 14 * DAY_MS, NOW_MS


def iso(ms_value: float) -> str:
    return datetime.fromtimestamp(ms_value / 1000, tz=UTC).isoformat(timespec="seconds")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, Path]:
    history = synthetic_history(seed=31, days=14, sessions_per_day=6)
    return history, history.record(tmp_path_factory.mktemp("cli") / "telemetry.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return json.loads(out)


def same(library_result: Any) -> Any:
    """What the library result looks like after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(library_result, default=str))


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # rich reads it when output is not a terminal


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> float:
    """The CLI's "now" (for --days and default windows) is the history's now."""
    monkeypatch.setattr(cli, "_now_ms", lambda: NOW_MS)
    return NOW_MS


# -- insights ---------------------------------------------------------------------------------

def test_insights_json_is_the_library_report(recorded: tuple[History, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, db = recorded
    out = run_json(capsys, "--db", str(db), "insights", "--since", iso(SINCE), "--until", iso(UNTIL), "--json")
    assert out == same(insights(db, Query(since_ms=SINCE, until_ms=UNTIL)))
    assert out["schema"] == "hermetry.insights.v1" and out["coverage"]["api_calls"] > 0


def test_insights_filters_breakdowns_and_days(recorded: tuple[History, Path], capsys: pytest.CaptureFixture[str],
                                              frozen_now: float) -> None:
    _, db = recorded
    out = run_json(capsys, "--db", str(db), "insights", "--days", "5", "--source", "telegram", "--tool", "terminal",
                   "--by", "day", "--by", "tool", "--json")
    expected = insights(db, Query(since_ms=NOW_MS - 5 * DAY_MS, until_ms=NOW_MS,
                                  filters={"source": "telegram", "tool": "terminal"}, group_by=("day", "tool")))
    assert out == same(expected)
    assert out["coverage"]["turns"] > 0 and [r["tool"] for r in out["breakdowns"]["tool"]] == ["terminal"]


def test_insights_tables_show_the_library_numbers(recorded: tuple[History, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, db = recorded
    code, out, _ = run(capsys, "--db", str(db), "insights", "--since", iso(SINCE), "--until", iso(UNTIL))
    assert code == 0
    report = insights(db, Query(since_ms=SINCE, until_ms=UNTIL))
    for figure in (report["turns"]["wall_ms"]["p95"], report["api_calls"]["latency_ms"]["p99"],
                   report["api_calls"]["ttft_ms"]["p50"], report["tool_calls"]["latency_ms"]["max"]):
        assert ms(figure) in out
    assert f"{report['api_calls']['tokens']['total_tokens']:,}" in out
    ttft = report["api_calls"]["ttft_ms"]
    assert f"{ttft['coverage']['captured']}/{ttft['coverage']['of']} calls · " \
           f"{ttft['session_coverage']['captured']}/{ttft['session_coverage']['of']} sessions" in out
    for title in ("Per day", "Turns", "Latency", "Turn wall time", "Tokens and cost", "Conversations", "Tools",
                  "By source", "By model"):
        assert title in out


# -- compare ----------------------------------------------------------------------------------

def test_compare_json_is_the_library_result(recorded: tuple[History, Path], capsys: pytest.CaptureFixture[str],
                                            frozen_now: float) -> None:
    _, db = recorded
    baseline = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=NOW_MS - 7 * DAY_MS, group_by=())
    current = Query(since_ms=NOW_MS - 7 * DAY_MS, until_ms=NOW_MS, group_by=())
    default = run_json(capsys, "--db", str(db), "compare", "--json")  # the last 7 days vs the 7 before
    assert default == same(compare(db, baseline, current))
    explicit = run_json(capsys, "--db", str(db), "compare", "--a-since", iso(SINCE), "--a-until", iso(SINCE + 5 * DAY_MS),
                        "--b-since", iso(SINCE + 5 * DAY_MS), "--b-until", iso(UNTIL), "--model", "m-alpha", "--json")
    a = Query(since_ms=SINCE, until_ms=SINCE + 5 * DAY_MS, filters={"model": "m-alpha"}, group_by=())
    b = Query(since_ms=SINCE + 5 * DAY_MS, until_ms=UNTIL, filters={"model": "m-alpha"}, group_by=())
    assert explicit == same(compare(db, a, b))
    code, out, _ = run(capsys, "--db", str(db), "compare")
    assert code == 0
    for m in default["metrics"]:
        assert m["metric"] in out and m["verdict"] in out


# -- sessions and show ------------------------------------------------------------------------

def test_sessions_and_show_json_are_the_library_results(recorded: tuple[History, Path],
                                                        capsys: pytest.CaptureFixture[str], frozen_now: float) -> None:
    _, db = recorded
    listed = run_json(capsys, "--db", str(db), "sessions", "--days", "3", "--limit", "7", "--json")
    assert listed == same(list_sessions(db, NOW_MS - 3 * DAY_MS, NOW_MS, limit=7))
    assert len(listed["sessions"]) == 7
    flat = run_json(capsys, "--db", str(db), "sessions", "--since", iso(SINCE), "--until", iso(UNTIL), "--flat", "--json")
    assert flat == same(list_sessions(db, SINCE, UNTIL, roll_up=False))
    sid = listed["sessions"][0]["session_id"]
    shown = run_json(capsys, "--db", str(db), "show", sid, "--json")
    assert shown == same(session_detail(db, sid))
    code, out, _ = run(capsys, "--db", str(db), "sessions", "--days", "3", "--limit", "7")
    assert code == 0 and all(s["session_id"] in out for s in listed["sessions"])
    code, out, _ = run(capsys, "--db", str(db), "show", sid)
    assert code == 0 and sid in out and "Turn 1" in out and ms(shown["totals"]["time"]["wall_ms"]) in out


def test_show_with_a_subagent_prints_its_lineage(recorded: tuple[History, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    history, db = recorded
    child = next(s for s in history.sessions().values() if s.lineage == "subagent")
    code, out, _ = run(capsys, "--db", str(db), "show", child.session_id)
    assert code == 0 and "Lineage" in out and child.parent_session_id in out


def test_usage_errors_exit_2_without_a_traceback(recorded: tuple[History, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, db = recorded
    for argv, message in ((("insights", "--by", "colour"), "unknown breakdown"),
                          (("insights", "--since", "last tuesday"), "not an ISO date"),
                          (("insights", "--since", iso(UNTIL), "--until", iso(SINCE)), "window is empty"),
                          (("show", "no-such-session"), "no session"),
                          (("export", "--format", "parquet"), "")):
        code, out, err = run(capsys, "--db", str(db), *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)


# -- export -----------------------------------------------------------------------------------

def table_rows(db: Path, table: str, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    where = " WHERE started_at_ms >= ? AND started_at_ms < ?" if since is not None else ""
    cols = [r[1] for r in conn.execute(f"PRAGMA table_xinfo({table})")]
    rows = [dict(zip(cols, r, strict=True)) for r in conn.execute(
        f"SELECT {', '.join(cols)} FROM {table}{where} ORDER BY started_at_ms", () if since is None else (since, until))]
    conn.close()
    return rows


@pytest.mark.parametrize("table", ["api_calls", "tool_calls", "turns", "sessions"])
def test_export_jsonl_is_the_raw_rows(recorded: tuple[History, Path], capsys: pytest.CaptureFixture[str],
                                      table: str) -> None:
    _, db = recorded
    code, out, _ = run(capsys, "--db", str(db), "export", "--table", table)
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == table_rows(db, table)


def test_export_window_csv_and_progress_to_a_file(recorded: tuple[History, Path], capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    _, db = recorded
    since, until = NOW_MS - 4 * DAY_MS, NOW_MS - 1 * DAY_MS
    target = tmp_path / "turns.csv"
    code, _, err = run(capsys, "--db", str(db), "export", "--format", "csv", "--table", "turns", "--since", iso(since),
                       "--until", iso(until), "--output", str(target))
    expected = table_rows(db, "turns", since, until)
    assert code == 0 and f"{len(expected):,} turns rows" in err
    with open(target, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(expected) > 0
    for row, want in zip(got, expected, strict=True):
        # CSV has no null: an empty field is a value that was not captured
        assert row == {k: "" if v is None else str(v) for k, v in want.items()}


def test_export_parquet_round_trips(recorded: tuple[History, Path], capsys: pytest.CaptureFixture[str],
                                    tmp_path: Path) -> None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        engine_missing("pyarrow (the parquet extra) is not installed")
    _, db = recorded
    target = tmp_path / "calls.parquet"
    code, _, err = run(capsys, "--db", str(db), "export", "--format", "parquet", "--output", str(target))
    assert code == 0, err
    assert pq.read_table(target).to_pylist() == table_rows(db, "api_calls")


def test_export_parquet_without_pyarrow_says_what_to_install(recorded: tuple[History, Path],
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, db = recorded
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow → ImportError
    code, _, err = run(capsys, "--db", str(db), "export", "--format", "parquet", "--output", str(tmp_path / "x.parquet"))
    assert code == 2
    assert "pyarrow" in err and "pip install 'hermetry[parquet]'" in err
    assert not (tmp_path / "x.parquet").exists()


def test_the_installed_entry_point(recorded: tuple[History, Path]) -> None:
    _, db = recorded
    out = subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(db), "insights", "--json",
                          "--since", iso(SINCE), "--until", iso(UNTIL), "--by", "profile"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == same(insights(db, Query(since_ms=SINCE, until_ms=UNTIL, group_by=("profile",))))


def test_json_output_is_plain_json(recorded: tuple[History, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """No NaN or Infinity, no non-JSON types: any JSON reader can take it."""
    _, db = recorded
    code, out, _ = run(capsys, "--db", str(db), "insights", "--since", iso(SINCE), "--until", iso(UNTIL), "--json")
    json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert io.StringIO(out).read().startswith("{")


def test_export_reports_progress_in_batches(recorded: tuple[History, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from hermetry.surfaces import export

    _, db = recorded
    monkeypatch.setattr(export, "BATCH_ROWS", 50)
    seen: list[tuple[int, int]] = []
    n = export.export_rows(db, "api_calls", "jsonl", tmp_path / "a.jsonl", progress=lambda d, t: seen.append((d, t)))
    total = len(table_rows(db, "api_calls"))
    assert n == total and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen}) and len(seen) == -(-total // 50)
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == total
