"""hermetry prune: raw rows older than an age go, the rollups keep the history's figures; reports
over pruned time read the rollups only and say so; idempotent; both stores; one line on bad input."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import report as report_module
from hermetry.analytics.report import Query, insights
from hermetry.model.events import ApiCall, SessionStarted, ToolCall, TurnStarted
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.recorder.recorder import Recorder
from hermetry.stores import rollups
from hermetry.stores.postgres import PostgresStore
from hermetry.stores.postgres import connect as pg_connect
from hermetry.stores.sqlite import connect, migrate
from hermetry.surfaces.cli import main
from hermetry.testing.history import NOW_MS, History, synthetic_history
from state_db import write_state_db
from test_rollups_report import same

LATER = NOW_MS + 2 * HOUR_MS
AGE_MS = 7 * DAY_MS + 2 * HOUR_MS  # the boundary: LATER - AGE = NOW - 7 days, a whole hour
BOUNDARY = NOW_MS - 7 * DAY_MS
WHOLE = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=NOW_MS, group_by=("source",))
OLD = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=BOUNDARY, group_by=("model",))


def _raw_counts(conn: Any, before: float) -> dict[str, int]:
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE started_at_ms < ?", (before,)).fetchone()[0]
            for t in ("turns", "api_calls", "tool_calls")}


def _history(seed: int = 31) -> History:
    return synthetic_history(seed=seed, days=14, sessions_per_day=6)


def _prune(db: Path, age_ms: float = AGE_MS) -> dict[str, Any]:
    """``hermetry prune`` of the file at ``db`` as of ``LATER`` (boundary ``BOUNDARY`` by default)."""
    conn = connect(db)
    try:
        return rollups.prune(conn, age_ms, now_ms=LATER)
    finally:
        conn.close()


def _check_prune(conn: Any, db: Any, history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "EXACT_BELOW_CALLS", 10**12)
    before_whole, before_old = insights(db, WHOLE), insights(db, OLD)  # every raw row, exact
    assert before_whole["method"]["path"] == "exact"
    injected = {"turns": sum(1 for t in history.turns() if t.started_at_ms < BOUNDARY),
                "api_calls": sum(1 for c in history.api_calls() if c.started_at_ms < BOUNDARY),
                "tool_calls": sum(1 for c in history.tool_calls() if c.started_at_ms < BOUNDARY)}
    assert all(injected.values())
    dry = rollups.prune(conn, AGE_MS, now_ms=LATER, dry_run=True)
    assert dry["rows"] == injected and dry["pruned_before_ms"] == BOUNDARY
    assert _raw_counts(conn, BOUNDARY) == injected and rollups.pruned_before_ms(conn) is None  # nothing changed

    done = rollups.prune(conn, AGE_MS, now_ms=LATER)
    assert done["rows"] == injected and done["pruned_before_ms"] == BOUNDARY
    assert _raw_counts(conn, BOUNDARY) == dict.fromkeys(injected, 0)
    assert rollups.pruned_before_ms(conn) == BOUNDARY
    sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    assert sessions == len(history.sessions())  # sessions kept

    # reports over pruned time: from the rollups (even when asked for every row), the same figures
    for before, q in ((before_old, OLD), (before_whole, WHOLE)):
        for exact in (False, True):
            after = insights(db, q, exact=exact)
            assert after["method"]["path"] == "rollups"
            assert after["method"]["pruned_before"] == before["window"]["until"] if q is OLD else True
            before.pop("activity", None), after.pop("activity", None)
            same(before, after)

    again = rollups.prune(conn, AGE_MS, now_ms=LATER)  # idempotent
    assert again["rows"] == dict.fromkeys(injected, 0) and rollups.pruned_before_ms(conn) == BOUNDARY


def test_prune_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history = _history()
    db = history.record(tmp_path / "telemetry.db")
    conn = connect(db)
    migrate(conn)
    try:
        _check_prune(conn, db, history, monkeypatch)
    finally:
        conn.close()


def test_prune_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    history = _history(seed=32)
    rec = Recorder(lambda: PostgresStore(pg_url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    conn = pg_connect(pg_url)
    try:
        _check_prune(conn, pg_url, history, monkeypatch)
    finally:
        conn.close()


def test_prune_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _history(seed=33).record(tmp_path / "telemetry.db")
    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM api_calls").fetchone()[0]
    assert main(["--db", str(db), "prune", "--older-than", "1d", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["schema"] == "hermetry.prune.v1" and dry["dry_run"] and dry["rows"]["api_calls"] == n  # all older than a day
    assert main(["--db", str(db), "prune", "--older-than", "1d"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("deleted") and f"{n:,} model call rows" in out and out.count("\n") == 2
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM api_calls").fetchone()[0] == 0
    assert main(["--db", str(db), "insights", "--since", "2025-01-01", "--until", "2025-01-15T12:00:00Z", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["api_calls"]["count"] == n and report["method"]["path"] == "rollups"


def test_a_long_prune_says_how_far_it_got(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """m15: stderr not a terminal (cron, a pipe): a line every PRUNE_PROGRESS_EVERY_S seconds
    (here: after every batch), counting up to every row there was to delete; the summary says
    how long it took (a prune of a second or more)."""
    from hermetry.surfaces import cli

    db = _history(seed=35).record(tmp_path / "telemetry.db")
    with sqlite3.connect(db) as conn:
        total = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in rollups.PRUNED_TABLES)
    monkeypatch.setattr(cli, "PRUNE_PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(cli, "PRUNE_SAY_TIME_S", 0.0)  # (a quick prune's summary says no time)
    monkeypatch.setattr(rollups, "PRUNE_BATCH_ROWS", (100, 100))
    assert main(["--db", str(db), "prune", "--older-than", "1d"]) == 0
    captured = capsys.readouterr()
    assert re.search(r" in [\d.]+ (ms|s) \(\d+ transactions, the longest [\d.]+ (ms|s)\)\n", captured.out), captured.out
    lines = captured.err.splitlines()
    done = [int(m.group(1).replace(",", "")) for m in (re.match(r"hermetry prune: ([\d,]+) of ([\d,]+) raw rows "
                                                               r"deleted \(\d+%\), \d+ s$", line) for line in lines) if m]
    assert len(done) == len(lines) > 3, lines
    assert done == sorted(done) and done[-1] == total and f"of {total:,} raw rows" in lines[0]
    assert captured.out.startswith("deleted")


@pytest.mark.parametrize("age", ["90x", "-3d", "0", "", "d"])
def test_prune_bad_age_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], age: str) -> None:
    db = _history(seed=34).record(tmp_path / "telemetry.db")
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", str(db), "prune", "--older-than", age])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--older-than" in err[0], err  # ("-3d" reads as an option to argparse)
    assert age.startswith("-") or "90d" in err[0], err


def test_import_into_postgres(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`hermetry import` with the store a PostgreSQL URL writes there (and fills its rollups)."""
    home = tmp_path / "hermes"
    home.mkdir()
    monkeypatch.setenv("HERMES_HOME", str(home))
    monkeypatch.setenv("HERMETRY_DB", pg_url)
    write_state_db(home)
    for expected_new in (3, 0):  # idempotent there too
        assert main(["import", "--json"]) == 0
        (r,) = json.loads(capsys.readouterr().out)["results"]
        assert r["error"] is None and r["sessions_new"] == expected_new
    conn = pg_connect(pg_url)
    try:
        assert conn.execute("SELECT SUM(input_tokens), COUNT(*) FROM api_calls").fetchone() == (600, 3)
    finally:
        conn.close()
    assert not (home / "hermetry" / "telemetry.db").exists()  # nothing went to a local file instead


def _session_truth(history: History) -> dict[str, dict[str, int]]:
    """Per session, what the test injected: turns, model calls, total tokens."""
    truth = {sid: {"turns": 0, "api_calls": 0, "tokens": 0} for sid in history.sessions()}
    for t in history.turns():
        truth[t.session_id]["turns"] += 1
    for c in history.api_calls():
        truth[c.session_id]["api_calls"] += c.call_count or 1
        truth[c.session_id]["tokens"] += sum(getattr(c, k) or 0 for k in (
            "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"))
    return truth


def test_pruned_sessions_have_null_totals_not_zeros(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sessions` and `show` after a prune: a session started before the boundary has unknown
    (null) totals and says it was pruned; one after it keeps the totals the test injected (R10)."""
    from hermetry.analytics.sessions import list_sessions, session_detail

    history = _history(seed=35)
    db = history.record(tmp_path / "telemetry.db")
    truth = _session_truth(history)
    starts = {sid: e.started_at_ms for sid, e in history.sessions().items()}
    old = sorted(sid for sid, t in starts.items() if t < BOUNDARY)
    new = sorted(sid for sid, t in starts.items() if t >= BOUNDARY)
    assert old and new and any(truth[s]["turns"] for s in old)

    def listed() -> dict[str, dict[str, Any]]:
        r = list_sessions(db, WHOLE.since_ms, LATER, limit=10_000, roll_up=False)
        assert r["count"] == len(starts)
        return {s["session_id"]: s for s in r["sessions"]}

    before = listed()
    for sid in starts:  # the product's own figures before the prune match the injection
        got = before[sid]
        assert (got["turns"], got["api_calls"], got["tokens"]["total_tokens"]) == (
            truth[sid]["turns"], truth[sid]["api_calls"], truth[sid]["tokens"]), sid
        assert got["pruned"] is False

    _prune(db)
    after = listed()
    for sid in old:
        got = after[sid]
        assert got["pruned"] is True, sid
        assert got["turns"] is None and got["api_calls"] is None and got["tool_calls"] is None
        assert got["tokens"]["total_tokens"] is None and got["cost"]["known_usd"] is None
        assert got["outcome"] == before[sid]["outcome"]  # the session row itself is kept
    for sid in new:
        got = after[sid]
        assert got["pruned"] is False
        assert (got["turns"], got["api_calls"], got["tokens"]["total_tokens"]) == (
            truth[sid]["turns"], truth[sid]["api_calls"], truth[sid]["tokens"]), sid

    gone, kept = session_detail(db, old[0]), session_detail(db, new[-1])
    assert gone["session"]["pruned"] and gone["totals"]["pruned"] and gone["totals"]["turns"] is None
    assert gone["totals"]["time"]["wall_ms"] is None and gone["pruned_before_ms"] == BOUNDARY
    assert not kept["totals"]["pruned"] and kept["totals"]["turns"] == truth[new[-1]]["turns"]
    assert kept["totals"]["api_calls"] == truth[new[-1]]["api_calls"]

    # rolled up: a conversation with a session before the boundary is pruned as a whole
    rolled = list_sessions(db, WHOLE.since_ms, LATER, limit=10_000)
    for s in rolled["sessions"]:
        assert s["pruned"] is (s["started_at_ms"] < BOUNDARY)  # (a conversation's sessions start after its root)
        assert (s["turns"] is None) is s["pruned"]

    # the text says so, never "0"
    assert main(["--db", str(db), "sessions", "--since", "2025-01-01", "--until", "2025-01-16", "--limit", "500",
                 "--flat"]) == 0
    text = capsys.readouterr().out
    lines = {sid: next(line for line in text.splitlines() if sid in line) for sid in (old[0], new[-1])}
    assert "pruned" in lines[old[0]].split() and " 0 " not in lines[old[0]]
    assert "pruned" not in lines[new[-1]]
    assert "pruned rows deleted by hermetry prune (rollups keep the totals" in " ".join(text.split())
    assert main(["--db", str(db), "show", old[0]]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"^turns\W+pruned$", shown, re.M) and re.search(r"^tokens\W+pruned$", shown, re.M), shown
    assert "pruned (rollups keep the totals)" in " ".join(shown.split())
    assert main(["--db", str(db), "show", new[-1]]) == 0
    assert "pruned" not in capsys.readouterr().out


def _by_metric(series: Any, name: str) -> float:
    return sum(s.sum for s in series if s.metric.name == name)


def _table(series: Any) -> list[Any]:
    """Every series' count, buckets and sum (a float sum rounded: its order of addition moves the
    last bits)."""
    from hermetry.analytics.metrics import series_table

    return [(name, attrs, (n, round(total, 6), buckets)) for name, attrs, (n, total, buckets) in series_table(series)]


def test_metrics_do_not_move_when_rows_are_pruned(tmp_path: Path) -> None:
    """`metrics serve`/`show` after a prune: every counter and gauge series (and histogram bucket)
    is what it was — a fresh fold and a running one — and equals what the test injected (P1)."""
    from hermetry.analytics.metrics import MetricFold, metric_snapshot
    from hermetry.sinks import genai
    from hermetry.stores.sqlite import SQLiteStore
    from hermetry.surfaces.metrics import exposition

    history = _history(seed=36)
    db = history.record(tmp_path / "telemetry.db")
    running = MetricFold(db)
    before = metric_snapshot(db).series
    assert _table(running.update().series) == _table(before)
    # the injected truth, checked once before the prune (it then must not move)
    calls = sum(c.call_count or 1 for c in history.api_calls())
    tokens = sum((c.input_tokens or 0) + (c.cache_read_tokens or 0) + (c.cache_write_tokens or 0)
                 + (c.output_tokens or 0) for c in history.api_calls())
    ended = [t for t in history.turns() if t.outcome is not None]
    assert (_by_metric(before, genai.API_CALLS.name), _by_metric(before, genai.TOKENS.name)) == (calls, tokens)
    assert _by_metric(before, genai.TOOL_CALLS.name) == len(history.tool_calls())
    assert _by_metric(before, genai.TURNS.name) == len(ended)
    def samples() -> dict[str, float]:  # the Prometheus text: every sample but the pass's own timing
        lines = (line.rsplit(" ", 1) for line in exposition(db).splitlines() if line and not line.startswith("#"))
        return {name: round(float(value), 6) for name, value in lines
                if not name.startswith(("hermetry_metrics_pass_", "hermetry_store_read_timestamp"))}

    shown = samples()
    assert any(name.startswith("hermetry_api_calls_total") for name in shown)

    conn = connect(db)
    try:
        for age in (AGE_MS, AGE_MS - 3 * DAY_MS):  # two prunes, the second moving the boundary on
            result = rollups.prune(conn, age, now_ms=LATER)
            assert sum(result["rows"].values()) > 0
            after = metric_snapshot(db).series
            assert _table(after) == _table(before), age
            assert _table(running.update().series) == _table(before), age
    finally:
        conn.close()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM api_calls WHERE started_at_ms < ?",
                                       (NOW_MS - 4 * DAY_MS,)).fetchone() == (0,)
    assert samples() == shown  # the Prometheus text too

    # rows written after the prune are added on top, as before it
    store = SQLiteStore(db)
    store.write([ApiCall(api_request_id="late", attempt=0, session_id="s-new", turn_id=None, started_at_ms=LATER,
                         latency_ms=5.0, status="ok", input_tokens=7, output_tokens=3)], None)
    store.close()
    assert _by_metric(running.update().series, genai.API_CALLS.name) == calls + 1
    assert _by_metric(metric_snapshot(db).series, genai.TOKENS.name) == tokens + 10


def test_rows_for_pruned_time_are_counted_and_the_operator_told(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A row written for time already pruned (a late import, a spool forwarded late) is in no
    report: it is counted and said — in the report's method and text, `doctor`, `import` — and the
    next prune deletes it and keeps the tally (R9)."""
    from hermetry.stores.sqlite import SQLiteStore
    from hermetry.surfaces.doctor import diagnose

    db = _history(seed=37).record(tmp_path / "telemetry.db")
    _prune(db)
    q = Query(since_ms=NOW_MS - 14 * DAY_MS, until_ms=BOUNDARY)
    counted = insights(db, q)["api_calls"]["count"]
    assert insights(db, q)["method"]["late_rows"] == {"turns": 0, "api_calls": 0, "tool_calls": 0}

    # a host's spool forwarded after the boundary passed: one session, a turn, two calls, a tool call
    t = BOUNDARY - 3 * DAY_MS
    store = SQLiteStore(db)
    store.write([SessionStarted(session_id="late-1", started_at_ms=t, source="cli"),
                 TurnStarted(turn_id="late-t", session_id="late-1", started_at_ms=t + 1),
                 *(ApiCall(api_request_id=f"late-r{i}", attempt=0, session_id="late-1", turn_id="late-t",
                           started_at_ms=t + 2 + i, latency_ms=5.0, status="ok", input_tokens=10, output_tokens=1)
                   for i in range(2)),
                 ToolCall(tool_call_id="late-c", session_id="late-1", turn_id="late-t", tool_name="x",
                          started_at_ms=t + 5, latency_ms=1.0, status="ok")], None)
    store.close()
    injected = {"turns": 1, "api_calls": 2, "tool_calls": 1}
    conn = connect(db)
    try:
        rollups.rebuild(conn, now_ms=LATER)
        assert rollups.late_rows(conn) == injected
    finally:
        conn.close()
    report = insights(db, q)
    assert report["api_calls"]["count"] == counted  # not counted …
    assert report["method"]["late_rows"] == injected  # … and said
    assert insights(db, Query(since_ms=BOUNDARY, until_ms=NOW_MS))["method"]["late_rows"] is None  # not in this window

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--db", str(db), "insights", "--since", "2025-01-01", "--until", "2025-01-08"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "raw rows were pruned: read from the rollups" in text and "4 rows written for that time later NOT counted" in text

    from hermetry.surfaces.render import chat_text

    chat = " ".join(chat_text(report).split())  # /telemetry says it too
    assert "raw rows were pruned: read from the rollups" in chat and "4 rows written for that time later NOT" in chat

    doctor = diagnose(db)
    assert doctor["retention"]["late_rows"] == injected and doctor["retention"]["pruned_before"]
    main(["--db", str(db), "doctor"])
    assert "4 rows written later for that time: NOT in any report" in " ".join(capsys.readouterr().out.split())

    # an import of old history (Hermes' state.db from before the boundary)
    home = tmp_path / "hermes"
    write_state_db(home, 2, ago_s=(time.time() * 1000 - BOUNDARY) / 1000 + 86_400)
    assert main(["--db", str(db), "import", "--hermes-home", str(home), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["late_rows"]["rows"]["api_calls"] == 2 and imported["late_rows"]["pruned_before"]
    write_state_db(home / "more", 3, ago_s=(time.time() * 1000 - BOUNDARY) / 1000 + 86_400)
    assert main(["--db", str(db), "import", "--hermes-home", str(home / "more")]) == 0  # s0, s1 again; s2 new
    out = " ".join(capsys.readouterr().out.split())
    assert "2 rows of it started before" in out and "NOT in any report" in out, out  # s2's turn and call
    assert insights(db, q)["api_calls"]["count"] == counted

    conn = connect(db)
    try:
        late = rollups.late_rows(conn)
        assert late["api_calls"] == 2 + 2 + 1
        again = rollups.prune(conn, AGE_MS, now_ms=LATER)  # the next prune deletes them, and keeps the tally
        assert again["rows"] == late
        assert rollups.late_rows(conn) == dict.fromkeys(injected, 0)
        assert rollups.late_rows_deleted(conn) == late
    finally:
        conn.close()
    assert diagnose(db)["retention"]["late_rows_deleted"] == late


_PROBE = """
import json, sys, time
from pathlib import Path
from hermetry.model.events import ApiCall
from hermetry.recorder.sink import SinkUnavailable
from hermetry.stores import postgres
db, stop, at = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
if db.startswith("postgresql://"):  # its writers wait up to postgres.LOCK_TIMEOUT_MS (5 s) for a lock
    store = postgres.PostgresStore(db, host="probe")
else:
    from hermetry.stores.sqlite import SQLiteStore
    store = SQLiteStore(Path(db))
ok, refused, i, errors = [], 0, 0, []
store.write([], None)  # connected (and migrated) before it says it is ready
print("ready", flush=True)
while not stop.exists():  # a live writer: one small batch after another, as fast as it can
    i += 1
    try:
        store.write([ApiCall(api_request_id=f"probe-{i}", attempt=0, session_id="probe", turn_id=None,
                             started_at_ms=at + i, latency_ms=1.0, status="ok")], None)
        ok.append(time.time())
    except SinkUnavailable as exc:  # the lock was not free within the writer's wait
        refused += 1
        errors.append(str(exc)[:300])
store.close()
print(json.dumps({"ok": ok, "refused": refused, "errors": errors[:3]}), flush=True)
"""


def _dense_day(store: Any, turns: int) -> None:
    """One day with ``turns`` turns (20 per session), each with a model call and a tool call
    (what one prune transaction a day used to delete at once)."""
    day = BOUNDARY - 2 * DAY_MS
    for lo in range(0, turns, 2_000):
        batch: list[Any] = []
        for i in range(lo, min(lo + 2_000, turns)):
            t, sid = day + i * 1_000, f"dense-{i // 20}"
            if i % 20 == 0:
                batch.append(SessionStarted(session_id=sid, started_at_ms=t, source="cli"))
            batch += [TurnStarted(turn_id=f"t{i}", session_id=sid, started_at_ms=t),
                      ApiCall(api_request_id=f"d{i}", attempt=0, session_id=sid, turn_id=f"t{i}",
                              started_at_ms=t + 1, latency_ms=5.0, status="ok", input_tokens=i % 97, output_tokens=3),
                      ToolCall(tool_call_id=f"c{i}", session_id=sid, turn_id=f"t{i}", tool_name="x",
                               started_at_ms=t + 7, latency_ms=1.0, status="ok")]
        store.write(batch, None)
    store.close()


def _prune_beside_a_writer(db: str, conn: Any, tmp_path: Path,
                           dirty: Sequence[float] = ()) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    """Prune while a writer process writes as fast as it can: (prune's result, the writer's
    result, the times of the writes taken while the prune ran). ``dirty``: times whose hours are
    marked for a rebuild first (the prune rebuilds them beside the writer)."""
    import subprocess
    import sys

    rollups.rebuild(conn, now_ms=LATER)
    if dirty:
        conn.execute("BEGIN")
        rollups.mark_hours(conn, dirty)
        conn.execute("COMMIT")
    stop = tmp_path / "stop"
    probe = subprocess.Popen([sys.executable, "-c", _PROBE, db, str(stop), str(LATER)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
        started = time.time()
        result = rollups.prune(conn, AGE_MS, now_ms=LATER)
        ended = time.time()
    finally:
        stop.touch()
        out, _ = probe.communicate(timeout=60)
    assert probe.returncode == 0
    writer = json.loads(out.strip().splitlines()[-1])
    return result, writer, [t for t in writer["ok"] if started <= t <= ended]


def test_a_prune_never_holds_the_lock_longer_than_a_writer_waits(tmp_path: Path) -> None:
    """A live writer keeps writing through a prune of a dense day (10,000 turns, model calls and
    tool calls, deleted in many short transactions): every one of its writes is taken (4). (At this
    size the old day-per-transaction prune held the lock ~0.1 s and passed too; on scale's 1M
    fixture it refused most of the writer's writes — the report of this change has the numbers.)"""
    from hermetry.stores.sqlite import SQLiteStore

    db = tmp_path / "telemetry.db"
    _dense_day(SQLiteStore(db), 10_000)
    conn = connect(db)
    try:
        result, writer, during = _prune_beside_a_writer(str(db), conn, tmp_path)
    finally:
        conn.close()
    assert result["rows"] == {"tool_calls": 10_000, "api_calls": 10_000, "turns": 10_000} and result["transactions"] > 1
    assert during, "the writer wrote nothing while the prune ran"
    assert writer["refused"] == 0, (writer["refused"], writer["errors"], len(during),
                                    {k: result[k] for k in ("transactions", "longest_transaction_s")})


def test_a_prune_never_holds_postgres_locks_longer_than_a_writer_waits(pg_url: str, tmp_path: Path) -> None:
    """The same on PostgreSQL: a writer waits up to its lock timeout (5 s), and a deadlock would
    refuse its batch. The prune rebuilds the dense day's hours under
    the table locks of a rebuild first (marked here) — taken in the writers' order (``rollup_dirty``, whose keys
    a writer marks first, then the raw tables): in the opposite order the two deadlocked."""
    _dense_day(PostgresStore(pg_url, host="h1"), 10_000)
    conn = pg_connect(pg_url)
    try:
        day = BOUNDARY - 2 * DAY_MS
        result, writer, during = _prune_beside_a_writer(pg_url, conn, tmp_path,
                                                        dirty=[day + h * HOUR_MS for h in range(3)])
    finally:
        conn.close()
    assert result["rows"] == {"tool_calls": 10_000, "api_calls": 10_000, "turns": 10_000} and result["transactions"] > 1
    assert result["rollup_hours_rebuilt"] >= 3  # the locked rebuild ran beside the writer
    assert during, "the writer wrote nothing while the prune ran"
    assert writer["refused"] == 0, (writer["refused"], writer["errors"], len(during),
                                    {k: result[k] for k in ("transactions", "longest_transaction_s")})


def test_a_refused_table_lock_leaves_no_aborted_transaction(pg_url: str) -> None:
    """A rebuild's (and prune's) PostgreSQL transaction whose LOCK TABLE times out ends there:
    the connection stays usable (not "current transaction is aborted") and the retry can run."""
    import psycopg

    PostgresStore(pg_url, host="h1").write([], None)  # the schema
    holder, conn = pg_connect(pg_url), pg_connect(pg_url)
    try:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE rollup_dirty IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '50ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            rollups._begin(conn)
        assert conn.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT 1").fetchone()[0] == 1
        holder.execute("ROLLBACK")
        rollups._begin(conn)  # free now: taken
        rollups._end(conn, True)
    finally:
        holder.close()
        conn.close()


def test_an_export_over_pruned_time_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`export` (and `export --otlp`) over time a prune deleted: one stderr line, not a silent
    header with no rows (m12); a window after the boundary and the sessions table say nothing."""
    from hermetry.testing.otlp import OTLPReceiver

    db = _history(seed=38).record(tmp_path / "telemetry.db")
    _prune(db)
    assert main(["--db", str(db), "export", "--since", "2025-01-01", "--until", "2025-01-05", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1  # the header: every row of that time is gone …
    (line,) = err.splitlines()  # … and it says so, once
    assert "model calls before 2025-01-08T12:00:00+00:00 were pruned (hermetry prune)" in line
    for argv in (["--since", "2025-01-09"], ["--since", "2025-01-01", "--table", "sessions"]):
        assert main(["--db", str(db), "export", *argv]) == 0
        assert capsys.readouterr().err == ""
    with OTLPReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        assert main(["--db", str(db), "export", "--otlp", "--since", "2025-01-01"]) == 0
    err = capsys.readouterr().err
    assert "were pruned (hermetry prune): none of them is in this export" in " ".join(err.split())


def test_prune_refuses_an_age_past_a_century(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """m10: `--older-than 99999999d` is one line, exit 2 (it was a ValueError from datetime)."""
    db = _history(seed=34).record(tmp_path / "telemetry.db")
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", str(db), "prune", "--older-than", "99999999d"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--older-than" in line and "at most 100 years" in line
