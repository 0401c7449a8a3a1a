"""``metrics serve`` while ``hermetry prune`` runs (N8): a pass reads one snapshot of the file, so
no ``_total`` counter steps down and no gauge dips while rows move into the pruned baseline."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import metrics
from hermetry.analytics.metrics import MetricFold, metric_snapshot
from hermetry.model.units import DAY_MS, HOUR_MS
from hermetry.sinks import genai
from hermetry.stores import rollups
from hermetry.stores.sqlite import connect
from hermetry.testing.history import NOW_MS, History, synthetic_history

LATER = NOW_MS + 2 * HOUR_MS
AGE_MS = 4 * DAY_MS + 2 * HOUR_MS  # the older ~70 % of a 14-day history


def _totals(series: Any) -> dict[str, float]:
    """Per metric: the sum over its series (counters, gauges) — what a dashboard's total shows."""
    out: dict[str, float] = {}
    for s in series:
        if s.metric is not genai.DROPPED:
            out[s.metric.name] = out.get(s.metric.name, 0.0) + (s.count if s.bucket_counts is not None else s.sum)
    return out


def _truth(history: History) -> dict[str, float]:
    """What the test injected (checked once before the prune; it must not move)."""
    return {genai.API_CALLS.name: float(sum(c.call_count or 1 for c in history.api_calls())),
            genai.TOOL_CALLS.name: float(len(history.tool_calls())),
            genai.TURNS.name: float(sum(1 for t in history.turns() if t.outcome is not None))}


def _recorded(tmp_path: Path) -> tuple[Path, History]:
    history = synthetic_history(seed=41, days=14, sessions_per_day=10)
    return history.record(tmp_path / "telemetry.db"), history


def test_a_pass_that_a_prune_batch_commits_in_the_middle_of_stays_whole(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The race made certain: the pass has read the (empty) baseline when a whole prune commits —
    it must then fold the raw rows as they were too (its snapshot), not the fewer rows left."""
    db, history = _recorded(tmp_path)
    before = _totals(metric_snapshot(db).series)
    truth = _truth(history)
    assert {k: before[k] for k in truth} == truth
    read = metrics.pruned_baseline
    pruned: list[dict[str, Any]] = []
    started = threading.Event()

    def baseline_then_prune(conn: Any) -> Any:
        got = read(conn)
        if not started.is_set():  # between this pass's baseline and its table scans (once: the
            started.set()         # prune reads the baseline too)
            writer = connect(db)
            try:
                pruned.append(rollups.prune(writer, AGE_MS, now_ms=LATER))
            finally:
                writer.close()
        return got

    monkeypatch.setattr(metrics, "pruned_baseline", baseline_then_prune)
    during = _totals(MetricFold(db).update().series)
    assert pruned and sum(pruned[0]["rows"].values()) > 0
    assert {k: during[k] for k in truth} == truth  # the snapshot before the prune, whole
    monkeypatch.setattr(metrics, "pruned_baseline", read)
    after = _totals(MetricFold(db).update().series)  # the next pass: the baseline plus what is left
    assert {k: after[k] for k in truth} == truth
    assert after == pytest.approx(before)


def test_no_counter_steps_down_in_any_pass_while_a_prune_runs(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The repro's shape (N8): `metrics serve` passes in a loop — a long-lived fold and fresh ones —
    while a prune deletes the older rows in many small batches in another thread; every pass's
    counters and gauges equal what the test injected (none below its previous value)."""
    db, history = _recorded(tmp_path)
    truth = _truth(history)
    monkeypatch.setattr(rollups, "PRUNE_BATCH_ROWS", (50, 50))  # many batches: passes land between them
    monkeypatch.setattr(rollups, "PRUNE_PAUSE_S", 0.002)
    running = MetricFold(db)
    assert {k: v for k, v in _totals(running.update().series).items() if k in truth} == truth
    done = threading.Event()
    result: dict[str, Any] = {}

    def prune() -> None:
        writer = connect(db)
        try:
            result.update(rollups.prune(writer, AGE_MS, now_ms=LATER))
        except BaseException as exc:  # surfaced below
            result["error"] = exc
        finally:
            writer.close()
            done.set()

    thread = threading.Thread(target=prune)
    thread.start()
    passes, during = [], 0
    try:
        while not done.is_set() or not passes:
            for fold in (running, MetricFold(db)):
                moving = _seq(db) > 0  # the prune has kept batches already…
                totals = _totals(fold.update().series)
                passes.append({k: totals.get(k, 0.0) for k in truth})
                during += moving and not done.is_set()  # …and has more to go
    finally:
        thread.join(timeout=120)
    assert "error" not in result, result.get("error")
    assert sum(result["rows"].values()) > 0 and result["transactions"] > 10
    assert during, "no pass ran while the prune was moving rows"
    for i, seen in enumerate(passes):
        assert seen == truth, (i, seen, truth)


def _seq(db: Path) -> int:
    """How many batches a prune has kept so far (``metric_baseline_seq``)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM rollup_meta WHERE key = 'metric_baseline_seq'").fetchone()
    except sqlite3.OperationalError:
        row = None
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else 0
