"""Cumulative metric series computed from the telemetry file — what ``hermetry metrics`` serves.

The series are the OTLP exporter's (:mod:`hermetry.sinks.genai`: same instruments, attributes and
buckets, built by the same per-row functions). Because they are computed from the file every
process writes, they hold across processes and restarts: a short-lived ``hermes -z`` adds its calls
to the same counters a gateway does, and restarting the server loses nothing.

:class:`MetricFold` keeps them up to date **incrementally** (docs/prometheus.md has the measured
cost of a pass):

* model calls and tool calls — nearly all rows — are written once and never revised: each pass
  folds only the rows past the last ``rowid`` it read, into cumulative counters and histograms;
* turns and sessions are revised by the store (a turn closed as ``errored`` when the next starts,
  a cron status arriving after the end, an API-server session open again while a turn runs, the
  reconciler): their series are counted afresh each pass by a few small ``GROUP BY`` queries, so
  they are always what the file says now — ``hermetry.turns`` and ``hermetry.sessions`` are up-down
  counters (Prometheus gauges) for that reason;
* what rewrites appended rows in place — ``hermetry reprice`` (it keeps the old costs in
  ``cost_history``) and ``hermetry import`` (``backfill_state``) — or a replaced file (another inode,
  or fewer rows than already read) makes the next pass fold everything again, so the figures always
  equal a fold from scratch;
* what ``hermetry prune`` deletes stays counted: before each batch of rows goes, its share of every
  series is added to the file's ``metric_baseline`` table in the same transaction
  (:class:`PrunedSeries`), and every pass adds that baseline — so a prune moves no ``_total`` counter
  and no gauge (a counter reset or a cliff would be a lie: nothing stopped happening).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermetry.analytics.events import appended_calls, exporter_drops, recorder_drops
from hermetry.model.outcomes import RECONCILED_PREFIX
from hermetry.sinks import genai
from hermetry.stores.reader import Db, open_db

#: the append-only tables, folded by rowid high-water mark
APPENDED = ("api_calls", "tool_calls")


@dataclass(frozen=True)
class MetricSnapshot:
    """Every series at one moment, and what computing them took."""

    series: tuple[genai.Series, ...]
    computed_at_ms: float
    compute_ms: float
    #: appended rows (model and tool calls) read by this pass
    events: int
    #: whether this pass folded the whole history (the first, or after a rewrite)
    full: bool = True


def _bucket_sql(value: str, boundaries: tuple[float, ...], lo: int = 0, hi: int | None = None) -> str:
    """The histogram bucket index of ``value`` (``bisect_left``: buckets are (lower, upper]), as a
    binary search of nested CASEs (about log2(n) comparisons a row, not n)."""
    hi = len(boundaries) if hi is None else hi
    if lo >= hi:
        return str(lo)
    mid = (lo + hi) // 2
    return (f"(CASE WHEN {value} <= {boundaries[mid]!r} THEN {_bucket_sql(value, boundaries, lo, mid)} "
            f"ELSE {_bucket_sql(value, boundaries, mid + 1, hi)} END)")


def _ns(ms: float | None) -> int:
    return int(round((ms or 0.0) * 1000)) * 1000


def _histograms(metric: genai.MetricDef, rows: Iterable[tuple[Any, ...]],
                attributes: Any) -> list[genai.Series]:
    """Histogram series from ``(labels…, bucket, count, sum, min, max, first_ms, last_ms)`` rows."""
    out: dict[tuple[tuple[str, Any], ...], genai.Series] = {}
    for row in rows:
        *labels, bucket, count, total, low, high, first, last = row
        key = attributes(*labels)
        s = out.get(key)
        if s is None:
            s = out[key] = genai.new_series(metric, key, _ns(first))
        assert s.bucket_counts is not None
        s.bucket_counts[int(bucket)] += int(count)
        s.count += int(count)
        s.sum += float(total)
        s.min, s.max = min(s.min, float(low)), max(s.max, float(high))
        s.start_ns, s.time_ns = min(s.start_ns, _ns(first)), max(s.time_ns, _ns(last))
    return list(out.values())


def _counts(metric: genai.MetricDef, rows: Iterable[tuple[Any, ...]], attributes: Any) -> list[genai.Series]:
    """Sum series from ``(labels…, count, first_ms, last_ms)`` rows."""
    out: dict[tuple[tuple[str, Any], ...], genai.Series] = {}
    for row in rows:
        *labels, count, first, last = row
        key = attributes(*labels)
        s = out.get(key)
        if s is None:
            s = out[key] = genai.new_series(metric, key, _ns(first))
        s.count += int(count)
        s.sum += int(count)
        s.start_ns, s.time_ns = min(s.start_ns, _ns(first)), max(s.time_ns, _ns(last))
    return list(out.values())


#: one scan of the turns (joined once to their sessions) feeds all three turn series. The wall-time
#: histogram holds only what never changes once counted — a live turn's own end — so its buckets only
#: grow: a turn hermetry closed itself (``reconciled:…``) is not in it (its own end may still come,
#: with another outcome and wall time), nor an imported one (a re-import rewrites those).
_TURNS = f"""
SELECT outcome, source, origin,
       CASE WHEN w IS NULL THEN -1 ELSE {_bucket_sql('w', genai.TURN_DURATION.boundaries)} END,
       CASE WHEN q IS NULL THEN -1 ELSE {_bucket_sql('q', genai.QUEUE_WAIT.boundaries)} END,
       COUNT(outcome), MIN(ended_at_ms), MAX(ended_at_ms),
       COUNT(w), SUM(w), MIN(w), MAX(w),
       COUNT(q), SUM(q), MIN(q), MAX(q), MIN(started_at_ms), MAX(started_at_ms)
FROM (SELECT t.outcome, s.source, t.origin, t.ended_at_ms, t.started_at_ms,
             CASE WHEN t.outcome IS NOT NULL AND t.origin = 'live' AND (t.outcome_reason IS NULL
                       OR t.outcome_reason NOT LIKE '{RECONCILED_PREFIX}%') THEN MAX(0.0, t.wall_ms / 1000.0) END AS w,
             CASE WHEN t.started_at_ms IS NOT NULL THEN t.queue_wait_ms / 1000.0 END AS q
      FROM turns t LEFT JOIN sessions s ON s.session_id = t.session_id
      WHERE (t.outcome IS NOT NULL OR t.queue_wait_ms IS NOT NULL){{where}})
GROUP BY 1, 2, 3, 4, 5
"""
_SESSIONS = """
SELECT outcome, source, COUNT(*), MIN(COALESCE(ended_at_ms, started_at_ms)), MAX(COALESCE(ended_at_ms, started_at_ms))
FROM sessions WHERE outcome IS NOT NULL GROUP BY 1, 2
"""


def _turn_series(conn: sqlite3.Connection, where: str = "", params: list[Any] | None = None) -> list[genai.Series]:
    turns, durations, waits = [], [], []
    for (outcome, source, origin, w_bucket, q_bucket, n, first_end, last_end, nw, sw, lw, hw, nq, sq, lq, hq,
         first_start, last_start) in conn.execute(_TURNS.format(where=where), params or []):
        if n:
            turns.append((outcome, source, origin, n, first_end, last_end))
        if nw:
            durations.append((outcome, source, w_bucket, nw, sw, lw, hw, first_end, last_end))
        if nq:
            waits.append((source, q_bucket, nq, sq, lq, hq, first_start, last_start))
    return [*_counts(genai.TURNS, turns, genai.turn_count_attributes),
            *_histograms(genai.TURN_DURATION, durations, genai.turn_duration_attributes),
            *_histograms(genai.QUEUE_WAIT, waits, genai.queue_wait_attributes)]


def revisable_series(conn: sqlite3.Connection) -> list[genai.Series]:
    """The series of what the store revises (turns, sessions): counted afresh, as the file says now."""
    return [*_turn_series(conn), *_counts(genai.SESSIONS, conn.execute(_SESSIONS), genai.session_attributes)]


# ---------------------------------------------------------------------------------------------
# What a prune deleted: kept as a baseline every pass adds
# ---------------------------------------------------------------------------------------------

_METRICS = {m.name: m for m in genai.METRICS}
_BASELINE_DDL = """CREATE TABLE IF NOT EXISTS metric_baseline (
    metric      TEXT NOT NULL,
    attributes  TEXT NOT NULL,
    start_ns    INTEGER NOT NULL,
    time_ns     INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    sum         REAL NOT NULL,
    min         REAL,
    max         REAL,
    buckets     TEXT,
    PRIMARY KEY (metric, attributes)
)"""
_BASELINE_SEQ = "metric_baseline_seq"  # in rollup_meta: bumped by every batch kept


def _series_key(s: genai.Series) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return s.metric.name, s.attributes


def _merge_into(target: genai.Series, other: genai.Series) -> None:
    target.count += other.count
    target.sum += other.sum
    target.min, target.max = min(target.min, other.min), max(target.max, other.max)
    target.start_ns, target.time_ns = min(target.start_ns, other.start_ns), max(target.time_ns, other.time_ns)
    if target.bucket_counts is not None and other.bucket_counts is not None:
        target.bucket_counts = [a + b for a, b in zip(target.bucket_counts, other.bucket_counts, strict=True)]


def pruned_baseline(conn: sqlite3.Connection) -> list[genai.Series]:
    """The series of every row ``hermetry prune`` deleted (empty for a file never pruned)."""
    try:
        rows = conn.execute("SELECT metric, attributes, start_ns, time_ns, count, sum, min, max, buckets "
                            "FROM metric_baseline").fetchall()
    except sqlite3.OperationalError:  # never pruned (the table is made by the first prune)
        return []
    out = []
    for name, attributes, start, at, n, total, low, high, buckets in rows:
        metric = _METRICS.get(name)
        if metric is None:  # a metric this version does not serve
            continue
        s = genai.Series(metric, tuple((k, v) for k, v in json.loads(attributes)), int(start), int(at), int(n),
                         float(total), json.loads(buckets) if buckets is not None else None,
                         math.inf if low is None else float(low), -math.inf if high is None else float(high))
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# The series of appended rows (model calls, tool calls), by GROUP BY: the database adds, not Python
# ---------------------------------------------------------------------------------------------

#: ``(series key, value expression, condition)`` of each histogram a model call feeds: the
#: conditions and values of :func:`genai.api_call_points` (an imported per-session usage row —
#: ``call_count`` set — stays out of the per-operation histograms)
_TOTAL_IN = "c.input_tokens + COALESCE(c.cache_read_tokens, 0) + COALESCE(c.cache_write_tokens, 0)"
_CALL_HISTOGRAMS = (
    ("duration", genai.OPERATION_DURATION, "c.latency_ms / 1000.0", "c.latency_ms IS NOT NULL"),
    ("usage_input", genai.TOKEN_USAGE, _TOTAL_IN, "c.input_tokens IS NOT NULL"),
    ("usage_output", genai.TOKEN_USAGE, "c.output_tokens", "c.output_tokens IS NOT NULL"),
    ("ttfc", genai.TIME_TO_FIRST_CHUNK, "c.ttft_ms / 1000.0",
     "c.ttft_ms IS NOT NULL AND (c.streamed IS NULL OR c.streamed != 0)"),
)
#: the counters a model call feeds from one of its columns when that is neither NULL nor 0
_CALL_SUMS = (("tokens:input", "c.input_tokens"), ("tokens:cache_read", "c.cache_read_tokens"),
              ("tokens:cache_write", "c.cache_write_tokens"), ("tokens:output", "c.output_tokens"),
              ("reasoning", "c.reasoning_tokens"))
#: the columns a model call's attributes come from (with its session's source, model and provider)
_CALL_LABELS = ("model", "provider", "base_url", "status", "error_type", "http_status", "response_model", "task",
                "cost_status")
_AT = "(c.started_at_ms + COALESCE(c.latency_ms, 0.0))"  # a point's time: the call's end


def _column_sql(present: frozenset[str], cls: type) -> Any:
    """``name → SQL`` of a call table's column, or of the event field's default when this (older)
    file has no such column."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(cls)}

    def column(name: str) -> str:
        if name in present:
            return f"c.{name}"
        value = defaults.get(name)
        return "NULL" if not isinstance(value, str) else "'" + value.replace("'", "''") + "'"
    return column


_WHERE = "\x00where\x00"  # where call_series' selection goes into its cached statements


@functools.lru_cache(maxsize=16)
def _call_sql(present: frozenset[str], few: bool) -> tuple[str, ...]:
    """The statements of :func:`call_series` for model calls, for a table with these columns:
    ``few`` — the counters by label set, then one per histogram; else one combined statement."""
    from hermetry.model.events import ApiCall

    col = _column_sql(present, ApiCall)
    labels = [col(name) for name in _CALL_LABELS] + ["s.source", "s.model", "s.provider"]
    width = len(labels)
    per_operation = f"{col('call_count')} IS NULL"
    calls = f"COALESCE({col('call_count')}, 1)"
    # the label columns and each histogram's bucket (-1: the row is not in that histogram) are the
    # groups (their sort is the costly part); every other figure is an aggregate of a group
    buckets, values = [], []
    for _name, metric, value, condition in _CALL_HISTOGRAMS:
        value = value.replace("c.ttft_ms", col("ttft_ms"))
        condition = condition.replace("c.ttft_ms", col("ttft_ms")).replace("c.streamed", col("streamed"))
        buckets.append(f"CASE WHEN {per_operation} AND {condition} THEN {_bucket_sql(value, metric.boundaries)} "
                       "ELSE -1 END")
        values.append(f"SUM({value}), MIN({value}), MAX({value})")
    sums = []
    for _key, column in _CALL_SUMS:
        hit = f"{column} IS NOT NULL AND {column} != 0"
        sums.append(f"SUM(CASE WHEN {hit} THEN 1 ELSE 0 END), SUM(CASE WHEN {hit} THEN {column} END), "
                    f"MIN(CASE WHEN {hit} THEN {column} END), MAX(CASE WHEN {hit} THEN {column} END), "
                    f"MIN(CASE WHEN {hit} THEN {_AT} END), MAX(CASE WHEN {hit} THEN {_AT} END)")
    cost = "c.cost_usd IS NOT NULL"
    counters = (f"SUM({calls}), MIN({calls}), MAX({calls}), {', '.join(sums)}, "
                f"COUNT(c.cost_usd), SUM(c.cost_usd), MIN(c.cost_usd), MAX(c.cost_usd), "
                f"MIN(CASE WHEN {cost} THEN {_AT} END), MAX(CASE WHEN {cost} THEN {_AT} END)")
    source = f"FROM api_calls c LEFT JOIN sessions s ON s.session_id = c.session_id WHERE ({_WHERE})"
    groups = ", ".join(str(i + 1) for i in range(width))
    if few:
        return (f"SELECT {', '.join(labels)}, COUNT(*), MIN({_AT}), MAX({_AT}), {counters} {source} GROUP BY {groups}",
                *(f"SELECT {', '.join(labels)}, {bucket}, COUNT(*), MIN({_AT}), MAX({_AT}), {value} {source} "
                  f"AND {bucket} >= 0 GROUP BY {groups}, {width + 1}" for bucket, value in zip(buckets, values, strict=True)))
    return (f"SELECT {', '.join(labels + buckets)}, COUNT(*), MIN({_AT}), MAX({_AT}), {', '.join(values)}, "
            f"{counters} {source} GROUP BY {groups}, {', '.join(str(width + i + 1) for i in range(len(buckets)))}",)


@functools.lru_cache(maxsize=4096)
def _call_attributes(labels: tuple[Any, ...]) -> dict[str, tuple[tuple[str, Any], ...]]:
    """Each series' attributes for a model call with these label columns — built by the exporter's
    own :func:`genai.api_call_points` (one definition), from a call that has every measure."""
    (model, provider, base_url, status, error_type, http_status, response_model, task, cost_status,
     source, session_model, session_provider) = labels
    from hermetry.model.events import ApiCall

    call = ApiCall("", 0, "", None, 0.0, 1.0, status, model=model, provider=provider, base_url=base_url,
                   response_model=response_model, ttft_ms=1.0, streamed=True, input_tokens=1, output_tokens=1,
                   cache_read_tokens=1, cache_write_tokens=1, reasoning_tokens=1, error_type=error_type,
                   http_status=http_status, cost_usd=1.0, cost_status=cost_status, task=task)
    points: list[genai.Measurement] = []
    genai.api_call_points(call, source, genai.call_labels(call, session_model, session_provider), points)
    out: dict[str, tuple[tuple[str, Any], ...]] = {}
    for p in points:
        attrs = dict(p.attributes)
        if p.metric is genai.OPERATION_DURATION:
            out["duration"] = p.attributes
        elif p.metric is genai.TOKEN_USAGE:
            out["usage_" + str(attrs[genai.TOKEN_TYPE])] = p.attributes
        elif p.metric is genai.TIME_TO_FIRST_CHUNK:
            out["ttfc"] = p.attributes
        elif p.metric is genai.TOKENS:
            out["tokens:" + str(attrs[genai.H_TOKEN_KIND])] = p.attributes
        elif p.metric is genai.REASONING_TOKENS:
            out["reasoning"] = p.attributes
        elif p.metric is genai.API_CALLS:
            out["api_calls"] = p.attributes
        elif p.metric is genai.COST:
            out["cost"] = p.attributes
    return out


class _Series:
    """Series keyed by (metric, attributes), grown from pre-aggregated groups."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, tuple[tuple[str, Any], ...]], genai.Series] = {}

    def add(self, metric: genai.MetricDef, attrs: tuple[tuple[str, Any], ...], n: int, total: Any, low: Any,
            high: Any, first_ms: float, last_ms: float, bucket: int | None = None) -> None:
        if not n:
            return
        key = (metric.name, attrs)
        s = self.by_key.get(key)
        if s is None:
            s = self.by_key[key] = genai.new_series(metric, attrs, _ns(first_ms))
        s.count += int(n)
        s.sum += total
        s.min, s.max = min(s.min, low), max(s.max, high)
        s.start_ns, s.time_ns = min(s.start_ns, _ns(first_ms)), max(s.time_ns, _ns(last_ms))
        if bucket is not None:
            assert s.bucket_counts is not None
            s.bucket_counts[int(bucket)] += int(n)


def call_series(conn: sqlite3.Connection, table: str, where: str, params: list[Any], *,
                few: bool = False) -> list[genai.Series]:
    """The series the rows of ``table`` (``api_calls`` or ``tool_calls``, alias ``c``) matching
    ``where`` add — what folding each row's :func:`genai.api_call_points` /
    :func:`genai.tool_call_points` gives (the same counts, buckets, minima, maxima and times; a sum
    of floats may differ in its last bits: the order of addition), computed by ``GROUP BY``
    queries (the database adds, not Python; 100k model calls: 1.2 s CPU here, 11.6 s folded row by
    row). ``few``: a selection of a few thousand rows (a prune's batch), where one group per label
    set and bucket *combination* would be nearly a group per row: then one ``GROUP BY`` per
    histogram and one for the counters."""
    out = _Series()
    join = "LEFT JOIN sessions s ON s.session_id = c.session_id"
    if table == "tool_calls":
        sql = (f"SELECT c.tool_name, c.status, s.source, COUNT(*), MIN({_AT}), MAX({_AT}) FROM tool_calls c {join} "
               f"WHERE {where} GROUP BY 1, 2, 3")
        from hermetry.model.events import ToolCall

        for tool, status, source, n, first, last in conn.execute(sql, params):
            points: list[genai.Measurement] = []
            genai.tool_call_points(ToolCall("", "", None, tool, 0.0, None, status), source, points)
            out.add(genai.TOOL_CALLS, points[0].attributes, n, int(n), 1, 1, first, last)
        return list(out.by_key.values())
    from hermetry.analytics.events import _columns

    statements = _call_sql(frozenset(_columns(conn, table)), few)
    width = len(_CALL_LABELS) + 3
    k = len(_CALL_HISTOGRAMS)

    def attrs_of(row: Any) -> dict[str, tuple[tuple[str, Any], ...]]:
        return _call_attributes(tuple(row[:width]))

    def add_counters(a: dict[str, tuple[tuple[str, Any], ...]], row: Any, at: int, n: int, first: float,
                     last: float) -> None:
        total, low, high = row[at: at + 3]
        out.add(genai.API_CALLS, a["api_calls"], n, int(total), low, high, first, last)
        at += 3
        for name, _column in _CALL_SUMS:
            n_hit, total, low, high, first_hit, last_hit = row[at: at + 6]
            out.add(genai.REASONING_TOKENS if name == "reasoning" else genai.TOKENS, a[name], n_hit, total, low,
                    high, first_hit, last_hit)
            at += 6
        n_cost, total, low, high, first_cost, last_cost = row[at: at + 6]
        out.add(genai.COST, a["cost"], n_cost, total, low, high, first_cost, last_cost)

    if few:  # the counters by label set, then each histogram by label set and its bucket
        for row in conn.execute(statements[0].replace(_WHERE, where), params):
            n, first, last = row[width: width + 3]
            add_counters(attrs_of(row), row, width + 3, n, first, last)
        for (name, metric, _value, _condition), sql in zip(_CALL_HISTOGRAMS, statements[1:], strict=True):
            for row in conn.execute(sql.replace(_WHERE, where), params):
                bucket, n, first, last, total, low, high = row[width:]
                out.add(metric, attrs_of(row)[name], n, total, low, high, first, last, bucket)
        return list(out.by_key.values())
    for row in conn.execute(statements[0].replace(_WHERE, where), params):
        a = attrs_of(row)
        at = width + k
        n, first, last = row[at: at + 3]
        for i, (name, metric, _value, _condition) in enumerate(_CALL_HISTOGRAMS):
            bucket = row[width + i]
            if bucket >= 0:
                total, low, high = row[at + 3 + 3 * i: at + 6 + 3 * i]
                out.add(metric, a[name], n, total, low, high, first, last, bucket)
        add_counters(a, row, at + 3 + 3 * k, n, first, last)
    return list(out.by_key.values())


class PrunedSeries:
    """What ``hermetry prune`` calls to keep the served series of the rows it deletes (SQLite):
    :meth:`measure` a batch (outside the write lock: a few ``GROUP BY`` queries), then, in the
    transaction that deletes it, :meth:`keep` it — measured again there when :meth:`generation`
    moved meanwhile (a reprice or an import rewrote rows).

    The baseline is read once and kept in memory for the whole prune; each batch writes only the
    series it changed. Another process's prune (``metric_baseline_seq`` moved past what this one
    wrote) makes the next batch read it again; a batch rolled back (:meth:`forget`) too."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, tuple[tuple[str, Any], ...]], genai.Series] | None = None
        self._seq: int | None = None

    def generation(self, conn: sqlite3.Connection) -> tuple[Any, ...]:
        return _generation(conn)[:2]

    def measure(self, conn: sqlite3.Connection, table: str, ids: list[Any], key: str | None = None) -> list[genai.Series]:
        """The series the rows of ``table`` (turns, api_calls, tool_calls) whose ``key`` (default:
        the primary key; ``rowid``) is one of ``ids`` add."""
        marks = ", ".join("?" for _ in ids)
        if table == "turns":
            return _turn_series(conn, f" AND t.{key or 'turn_id'} IN ({marks})", list(ids))
        key = key or ("api_call_id" if table == "api_calls" else "tool_call_id")
        return call_series(conn, table, f"c.{key} IN ({marks})", list(ids), few=True)

    def forget(self) -> None:
        """The last :meth:`keep` was rolled back: read the baseline again next time."""
        self._known = self._seq = None

    def keep(self, conn: sqlite3.Connection, pruned: list[genai.Series]) -> None:
        """Add ``pruned`` to the file's baseline (inside the caller's write transaction)."""
        if not pruned:
            return
        if self._known is None:
            conn.execute(_BASELINE_DDL)
        row = conn.execute("SELECT value FROM rollup_meta WHERE key = ?", (_BASELINE_SEQ,)).fetchone()
        seq = int(row[0]) if row is not None and row[0] is not None else 0
        if self._known is None or seq != self._seq:  # first batch, or another prune wrote meanwhile
            self._known = {_series_key(s): s for s in pruned_baseline(conn)}
        known = self._known
        changed = {}
        try:
            for s in pruned:
                key = _series_key(s)
                mine = known.get(key)
                if mine is None:
                    mine = known[key] = s.copy()
                else:
                    _merge_into(mine, s)
                changed[key] = mine
            conn.executemany(
                "INSERT OR REPLACE INTO metric_baseline (metric, attributes, start_ns, time_ns, count, sum, min, "
                "max, buckets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.metric.name, json.dumps([list(kv) for kv in s.attributes]), s.start_ns, s.time_ns, s.count,
                  s.sum, s.min if math.isfinite(s.min) else None, s.max if math.isfinite(s.max) else None,
                  json.dumps(s.bucket_counts) if s.bucket_counts is not None else None) for s in changed.values()])
            conn.execute("INSERT INTO rollup_meta (key, value) VALUES (?, 1) ON CONFLICT (key) "
                         "DO UPDATE SET value = rollup_meta.value + 1", (_BASELINE_SEQ,))
        except BaseException:
            self.forget()
            raise
        self._seq = seq + 1


#: the series counted afresh each pass (``revisable_series``); every other one is folded from rows
_REVISABLE = frozenset(m.name for m in (genai.TURNS, genai.TURN_DURATION, genai.QUEUE_WAIT, genai.SESSIONS))


def _with_baseline(series: list[genai.Series], baseline: list[genai.Series], revisable: bool) -> list[genai.Series]:
    """``series`` with the baseline's (revisable or appended) series added in."""
    by_key = {_series_key(s): s for s in series}
    for b in baseline:
        if (b.metric.name in _REVISABLE) is not revisable:
            continue
        mine = by_key.get(_series_key(b))
        if mine is None:
            series.append(b.copy())
            by_key[_series_key(b)] = series[-1]
        else:
            _merge_into(mine, b)
    return series


def drop_series(conn: sqlite3.Connection | None, now_ns: int) -> list[genai.Series]:
    """``hermetry.recorder.dropped`` by sink: the recorders' own drops (always present — 0 is a
    figure an operator wants to see) and each exporter's (persisted per recorder run)."""
    counts = {"recorder": recorder_drops(conn) if conn is not None else 0}
    if conn is not None:
        for sink, n in exporter_drops(conn).items():
            counts[sink] = counts.get(sink, 0) + n
    out = []
    for sink, n in counts.items():
        s = genai.new_series(genai.DROPPED, ((genai.H_SINK, sink),), now_ns)
        s.add(n, now_ns)
        out.append(s)
    return out


def _generation(conn: sqlite3.Connection) -> tuple[Any, ...]:
    """What changes when appended rows were rewritten in place (a reprice, an import)."""
    out: list[Any] = []
    for sql in ("SELECT MAX(rowid), MAX(replaced_at_ms) FROM cost_history",
                "SELECT MAX(rowid), MAX(imported_at_ms), COUNT(*) FROM backfill_state",
                f"SELECT MAX(value) FROM rollup_meta WHERE key = '{_BASELINE_SEQ}'"):  # a prune kept a batch
        try:
            out.append(tuple(conn.execute(sql).fetchone()))
        except sqlite3.OperationalError:  # an older file without the table
            out.append(None)
    return tuple(out)


def _identity(db: Db) -> tuple[int, int] | None:
    """Which file this is (another file moved into place starts a fold from scratch)."""
    if isinstance(db, str | Path):
        try:
            st = os.stat(db)
        except OSError:
            return None
        return st.st_dev, st.st_ino
    return None


def _max_rowid(conn: sqlite3.Connection, table: str) -> int:
    try:
        return int(conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


class MetricFold:
    """The file's cumulative series, brought up to date by :meth:`update` (one pass at a time)."""

    def __init__(self, db: Db, *, max_series: int = 100_000) -> None:
        self.db = db
        self.max_series = max_series
        self._lock = threading.Lock()
        # every turn/session series exposed so far: one whose count fell to nothing stays, at 0
        # (a vanished series is "no data" to Prometheus, not 0: a share or an alert would break)
        self._revisable_seen: dict[tuple[str, tuple[tuple[str, Any], ...]], genai.MetricDef] = {}
        self._reset()

    def _reset(self) -> None:
        self._aggregator = genai.Aggregator(cumulative=True, max_series=self.max_series)
        self._high_water = dict.fromkeys(APPENDED, 0)
        self._generation: tuple[Any, ...] | None = None
        self._baseline: list[genai.Series] = []

    def update(self) -> MetricSnapshot:
        """Fold what was appended since the last pass; count turns and sessions afresh."""
        with self._lock:
            started = time.perf_counter()
            full = False
            events = 0
            with open_db(self.db) as conn:
                if conn is None:  # no file yet: an empty history
                    self._reset()
                    series = drop_series(None, time.time_ns())
                    return MetricSnapshot(tuple(series), time.time() * 1000, (time.perf_counter() - started) * 1000,
                                          0, True)
                # one read transaction: the whole pass sees one snapshot of the file. A prune moves
                # rows into the baseline batch by batch; reading the baseline and the tables at
                # different moments would count a batch in neither (or in both) — N8
                mine = isinstance(conn, sqlite3.Connection) and not conn.in_transaction
                if mine:
                    conn.execute("BEGIN")
                try:
                    generation = (*_generation(conn), _identity(self.db))
                    rewound = any(_max_rowid(conn, t) < self._high_water[t] for t in APPENDED)
                    if generation != self._generation or rewound:
                        self._reset()
                        self._generation = generation
                        self._baseline = pruned_baseline(conn)
                    full = not any(self._high_water.values())
                    events = self._fold_appended(conn)
                    appended = _with_baseline(self._aggregator.totals(), self._baseline, revisable=False)
                    series = [*appended, *self._revisable(conn), *drop_series(conn, time.time_ns())]
                except BaseException:
                    self._reset()  # half a pass folded: the next one starts afresh
                    raise
                finally:
                    if mine:
                        conn.execute("ROLLBACK")  # it only read
            return MetricSnapshot(tuple(series), time.time() * 1000, (time.perf_counter() - started) * 1000,
                                  events, full)

    def _revisable(self, conn: sqlite3.Connection) -> list[genai.Series]:
        now = _with_baseline(revisable_series(conn), self._baseline, revisable=True)
        present = {(x.metric.name, x.attributes) for x in now}
        at = time.time_ns()
        gone = [genai.new_series(metric, key[1], at) for key, metric in self._revisable_seen.items()
                if key not in present]
        for x in now:
            self._revisable_seen.setdefault((x.metric.name, x.attributes), x.metric)
        return now + gone

    def _fold_appended(self, conn: sqlite3.Connection) -> int:
        n = 0
        batch: list[genai.Measurement] = []
        for table in APPENDED:
            for rowid, event, source, model, provider in appended_calls(conn, table, self._high_water[table]):
                if table == "api_calls":
                    genai.api_call_points(event, source, genai.call_labels(event, model, provider), batch)
                else:
                    genai.tool_call_points(event, source, batch)
                self._high_water[table] = rowid
                n += 1
                if len(batch) >= 5_000:
                    self._aggregator.add(batch)
                    batch.clear()
        self._aggregator.add(batch)
        return n


def metric_snapshot(db: Db) -> MetricSnapshot:
    """Every series of ``db``, folded from scratch (what one pass of a fresh :class:`MetricFold` gives)."""
    return MetricFold(db).update()


def series_table(series: Iterable[genai.Series]) -> Iterator[tuple[str, tuple[tuple[str, Any], ...], Any]]:
    """(metric, attributes, value) of each series, sorted — to compare two snapshots' figures."""
    rows = [(s.metric.name, s.attributes, (s.count, s.sum, tuple(s.bucket_counts or ())))
            for s in series]
    yield from sorted(rows, key=lambda r: (r[0], repr(r[1])))
