"""``metrics serve``'s passes are incremental, and equal a fold from scratch (analytics/metrics.py).

Each step appends to a real SQLite store through :class:`SQLiteStore` (the recorder's own writer),
including what the store revises afterwards — a turn closed when the next one starts, a cron status
arriving after the session's end, a reopened session, an API-server session open again while a new
turn runs, a reprice. After every step the long-lived fold must say exactly what a fresh fold of
the file says, and a pass must read only the rows appended since the last one.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hermetry.analytics.events import stored_events
from hermetry.analytics.metrics import MetricFold, metric_snapshot, series_table
from hermetry.model.events import (
    ApiCall,
    CronRunFinished,
    Event,
    SessionEnded,
    SessionReopened,
    SessionStarted,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from hermetry.sinks import genai
from hermetry.stores.sqlite import SQLiteStore
from hermetry.testing.history import synthetic_history

#: an hour ago: recent enough that the reconciler (6 h of grace) leaves what is open alone
T0 = float(int(time.time() - 3600) * 1000)


def _write(db: Path, events: list[Event]) -> None:
    store = SQLiteStore(db)
    try:
        store.write(events, None)
    finally:
        store.close()


def _call(req: str, sid: str, tid: str | None, at: float, status: str = "ok", **kw: object) -> ApiCall:
    return ApiCall(req, 0, sid, tid, at, 300.0, status, model="m-1", provider="openai", input_tokens=100,
                   output_tokens=10, **kw)  # type: ignore[arg-type]


def _figures(snapshot_series: tuple[genai.Series, ...]) -> list[tuple[object, ...]]:
    # a turn/session series the long-lived fold exposed before and that fell to nothing stays at 0
    # (a fresh fold never saw it): compare what counts
    return [row for row in series_table(snapshot_series) if row[2][0] or row[2][1]]


def _value(series: tuple[genai.Series, ...], metric: genai.MetricDef, **attrs: str) -> float:
    return sum(s.sum for s in series if s.metric is metric
               and all(dict(s.attributes).get(k) == v for k, v in attrs.items()))


CRON = "cron_job1_20261201_000000"
STEPS: list[list[Event]] = [
    [SessionStarted("chat", T0, source="cli", session_type="interactive"),
     TurnStarted("t1", "chat", T0 + 1),
     _call("r1", "chat", "t1", T0 + 2),
     ToolCall("tc1", "chat", "t1", "terminal", T0 + 400, 50.0, "ok"),
     TurnEnded("t1", "chat", T0 + 900, "completed"),
     # a turn that never reports its end (its call failed): closed by the next turn's start
     TurnStarted("t2", "chat", T0 + 1000),
     _call("r2", "chat", "t2", T0 + 1001, status="error", http_status=500)],
    [TurnStarted("t3", "chat", T0 + 5000),
     _call("r3", "chat", "t3", T0 + 5001),
     TurnEnded("t3", "chat", T0 + 6000, "completed"),
     SessionEnded("chat", T0 + 7000, "cli_close", "completed"),
     SessionStarted(CRON, T0 + 8000, source="cron", session_type="cron"),
     TurnStarted("c1", CRON, T0 + 8001),
     _call("rc", CRON, "c1", T0 + 8002),
     TurnEnded("c1", CRON, T0 + 9000, "completed"),
     SessionEnded(CRON, T0 + 9001, "cron_complete", "completed")],
    # Hermes' cron status arrives after the end: completed → errored
    [CronRunFinished("job1", T0 + 9500, "error")],
    # the chat is resumed: open again (its outcome leaves the count)
    [SessionReopened("chat", T0 + 20_000),
     SessionStarted("api", T0 + 21_000, source="api_server", session_type="api"),
     TurnStarted("a1", "api", T0 + 21_001),
     _call("ra1", "api", "a1", T0 + 21_002),
     TurnEnded("a1", "api", T0 + 22_000, "completed")],
    # the API-server session (never ended by Hermes) is open again while its next turn runs
    [TurnStarted("a2", "api", T0 + 30_000),
     _call("ra2", "api", "a2", T0 + 30_001),
     ToolCall("tc2", "api", "a2", "web_search", T0 + 30_400, 20.0, "error")],
    [TurnEnded("a2", "api", T0 + 31_000, "interrupted")],
]


def test_every_pass_equals_a_fold_from_scratch_and_reads_only_new_rows(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    fold = MetricFold(db)
    assert fold.update().events == 0  # no file yet: an empty history
    for step in STEPS:
        _write(db, step)
        snap = fold.update()
        appended = sum(isinstance(e, ApiCall | ToolCall) for e in step)
        assert snap.events == appended  # only what this step appended
        assert _figures(snap.series) == _figures(metric_snapshot(db).series), step
    # nothing new: nothing read
    assert fold.update().events == 0
    series = fold.update().series
    # the store's revisions, as the file says now (ground truth: the steps above)
    assert _value(series, genai.SESSIONS, **{genai.H_SESSION_OUTCOME: "errored"}) == 1  # the cron run
    assert _value(series, genai.SESSIONS, **{genai.H_SESSION_OUTCOME: "completed"}) == 0  # chat reopened
    completed = [s for s in series if s.metric is genai.SESSIONS
                 and dict(s.attributes)[genai.H_SESSION_OUTCOME] == "completed"]
    assert completed and completed[0].sum == 0  # still exposed, at 0 (not "no data")
    assert _value(series, genai.SESSIONS, **{genai.H_SESSION_OUTCOME: "interrupted"}) == 1  # the API session
    assert _value(series, genai.TURNS, **{genai.H_TURN_OUTCOME: "errored"}) == 1  # t2, closed by t3
    assert _value(series, genai.TURNS, **{genai.H_TURN_OUTCOME: "completed"}) == 4
    assert _value(series, genai.API_CALLS) == 6
    assert _value(series, genai.TOOL_CALLS, **{genai.H_TOOL_STATUS: "error"}) == 1


def test_a_reprice_or_an_import_makes_the_next_pass_fold_everything_again(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    _write(db, STEPS[0])
    fold = MetricFold(db)
    first = fold.update()
    assert first.full and first.events == 3
    assert not fold.update().full
    # what hermetry reprice does to a stored call: the new cost in place, the old one kept
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO cost_history (api_call_id, cost_usd, cost_status, replaced_at_ms) "
                     "SELECT api_call_id, cost_usd, cost_status, 1 FROM api_calls WHERE api_request_id = 'r1'")
        conn.execute("UPDATE api_calls SET cost_usd = 0.25, cost_status = 'estimated' WHERE api_request_id = 'r1'")
    again = fold.update()
    assert again.full and again.events == 3
    assert _value(again.series, genai.COST) == 0.25
    assert _figures(again.series) == _figures(metric_snapshot(db).series)


def test_the_fold_equals_the_exporters_own_mapping_of_the_history(tmp_path: Path) -> None:
    """The same rows through the live OTLP mapper (what ``export --otlp`` replays) give the same
    figures: one definition of every series."""
    db = synthetic_history(days=4).record(tmp_path / "h.db")
    mapper = genai.GenAIMapper(spans=False)
    aggregator = genai.Aggregator(cumulative=True)
    aggregator.add(mapper.map(stored_events(db))[1])
    aggregator.add(mapper.finish()[1])
    theirs = {(n, a): v for n, a, v in series_table(aggregator.totals())}
    ours = {(n, a): v for n, a, v in series_table(metric_snapshot(db).series) if n != genai.DROPPED.name}
    assert set(ours) == set(theirs)
    for key, (count, total, buckets) in ours.items():
        their_count, their_total, their_buckets = theirs[key]
        if key[0] in (genai.TURNS.name, genai.SESSIONS.name):
            assert total == their_total, key  # up-down counters: what counts is the sum
        else:
            assert (count, buckets) == (their_count, their_buckets), key
            assert abs(total - their_total) <= 1e-9 * max(1.0, abs(total)), key  # summed in another order


def test_another_file_moved_into_place_is_folded_from_scratch(tmp_path: Path) -> None:
    db, other = tmp_path / "t.db", tmp_path / "other.db"
    _write(db, STEPS[0])
    # other rows, and more of them than the first file has: a high-water mark alone would not notice
    _write(other, STEPS[3] + STEPS[4] + STEPS[1])
    fold = MetricFold(db)
    fold.update()
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    other.replace(db)
    snap = fold.update()
    assert snap.full and _figures(snap.series) == _figures(metric_snapshot(db).series)


def test_turn_duration_buckets_never_step_down_when_a_closed_turn_gets_its_own_end(tmp_path: Path) -> None:
    """The store closes a turn whose call failed when the next one starts (``reconciled:…``); its own end
    may arrive later with another outcome and wall time. The histogram's counters must not decrease
    (Prometheus would read a reset): such a turn enters it only with its own end."""
    db = tmp_path / "telemetry.db"
    _write(db, [SessionStarted("chat", T0, source="cli", session_type="interactive"), TurnStarted("t1", "chat", T0 + 1),
                _call("r1", "chat", "t1", T0 + 2, "error", http_status=500), TurnStarted("t2", "chat", T0 + 5000)])
    fold = MetricFold(db)

    def buckets() -> dict[tuple[object, ...], tuple[int, ...]]:
        return {s.attributes: (s.count, *s.bucket_counts) for s in fold.update().series
                if s.metric is genai.TURN_DURATION}

    before = buckets()
    with sqlite3.connect(db) as conn:  # the store did close t1 itself (the state the test is about)
        assert conn.execute("SELECT outcome_reason FROM turns WHERE turn_id = 't1'").fetchone()[0].startswith(
            "reconciled:")
    _write(db, [TurnEnded("t1", "chat", T0 + 4000, "completed")])  # t1's own end, late
    after = buckets()
    for attributes, counts in before.items():
        assert all(b >= a for a, b in zip(counts, after.get(attributes, (0,) * len(counts)), strict=True)), attributes
    assert sum(c[0] for c in after.values()) == sum(c[0] for c in before.values()) + 1  # t1, once, with its own end


def test_the_sql_measure_of_calls_equals_folding_each_row(tmp_path: Path) -> None:
    """``call_series`` (what a prune keeps of each batch: GROUP BYs) gives what folding every row's
    own points gives — counts, buckets, minima, maxima, times — on calls of every shape: imported
    per-session totals (``call_count``), unstreamed calls with a TTFT, zero and missing tokens,
    errors by HTTP status or type, interrupted calls, calls whose session row is missing."""
    from hermetry.analytics.events import appended_calls
    from hermetry.analytics.metrics import call_series

    history = synthetic_history(days=3, sessions_per_day=6)
    def call(req: str, at: float, **kw: object) -> ApiCall:
        fields: dict[str, object] = {"latency_ms": 300.0, "status": "ok", "model": "m-1", "provider": "openai",
                                     "input_tokens": 100, "output_tokens": 10, **kw}
        return ApiCall(req, 0, str(fields.pop("session_id", "chat")), None, at, **fields)  # type: ignore[arg-type]

    odd = [call("imp", T0, call_count=7, latency_ms=None),
           call("nostream", T0 + 1, streamed=False, ttft_ms=40.0),
           call("zero", T0 + 2, input_tokens=0, output_tokens=None, reasoning_tokens=0),
           call("http", T0 + 3, status="error", http_status=429),
           call("typed", T0 + 4, status="error", error_type="Timeout"),
           call("stop", T0 + 5, status="interrupted", cost_usd=0.5, cost_status="estimated"),
           call("orphan", T0 + 6, session_id="no-such-session", model=None, provider=None, task=None)]
    db = tmp_path / "t.db"
    _write(db, [SessionStarted("chat", T0 - 1, source="cli", model="m-0", provider="anthropic"), *history.events,
                *odd])
    with sqlite3.connect(db) as conn:
        for table in ("api_calls", "tool_calls"):
            folded = genai.Aggregator(cumulative=True, max_series=10**9)
            points: list[genai.Measurement] = []
            for _rowid, event, source, model, provider in appended_calls(conn, table, 0):
                if table == "api_calls":
                    genai.api_call_points(event, source, genai.call_labels(event, model, provider), points)
                else:
                    genai.tool_call_points(event, source, points)
            folded.add(points)
            theirs = {(s.metric.name, s.attributes): s for s in folded.totals()}
            for few in (False, True):
                ours = {(s.metric.name, s.attributes): s for s in call_series(conn, table, "1", [], few=few)}
                assert set(ours) == set(theirs), (table, few)
                for key, s in ours.items():
                    t = theirs[key]
                    assert (s.count, s.bucket_counts, s.min, s.max, s.start_ns, s.time_ns) == (
                        t.count, t.bucket_counts, t.min, t.max, t.start_ns, t.time_ns), key
                    assert abs(s.sum - t.sum) <= 1e-9 * max(1.0, abs(t.sum)), key  # summed in another order
                if table == "api_calls":  # the injected truth: one per call, 7 for the imported row
                    calls = sum(1 for e in history.events if isinstance(e, ApiCall)) + 6 + 7
                    assert sum(s.sum for s in ours.values() if s.metric is genai.API_CALLS) == calls
