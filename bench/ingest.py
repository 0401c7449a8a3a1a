"""2 · Sustained ingest until durable on disk, through the real Recorder and SQLiteStore.

The workload is whole Hermes CLI sessions, hook by hook (``bench._workload.session_hooks``:
30 hook calls per session, 12 of them ``post_api_request``), turned into queue items by the real
callbacks — the same items a Hermes process would queue.

* **burst**: ``capacity`` items (what the queue holds) are made up front, then submitted as
  fast as possible; events/s = N / (time from the first submit until ``flush()`` reports every
  row committed). This is the writer's capacity.
* **stream**: the real callbacks are called at full speed for many times the queue's capacity
  (the producer outruns any writer), then flushed: what is durable, what was dropped (counted),
  how long the queue got, and that memory stays bounded.
* **stages**: the writer's per-event cost split into normalizing, pricing (the plugin's
  processor) and the SQLite write, each timed alone on the same items (pricing's one-time load,
  genai-prices and the price file at the first priced call, timed apart).

Baselines in the same run: the floor (tuples → deque → a thread that ``executemany``-inserts
raw rows into one table and commits per batch: the least a durable queue can do) and
one synchronous insert + commit per event.
"""

from __future__ import annotations

import copy
import gc
import random
import sqlite3
import threading
import time
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

from bench._common import (
    Options,
    current_rss_mb,
    fmt_mb,
    fmt_rate,
    fmt_us,
    log,
    peak_rss_mb,
    row,
    tmpdir,
)
from bench._workload import EVENTS_PER_SESSION, session_hooks

TARGET_EPS = 150_000


def _make_items(capture: Any, n_events: int, seed: int = 3) -> list[tuple[Any, ...]]:
    """Queue items for ~n_events hook calls, made by the real callbacks into a list."""
    from hermetry.sources.hermes.hooks import HermesCapture

    items: list[tuple[Any, ...]] = []

    class Collect:
        submit = items.append

        def nudge(self) -> None:
            pass

    cap = HermesCapture(Collect(), profile="default")  # type: ignore[arg-type]
    cbs = cap.callbacks()
    rng = random.Random(seed)
    s = 0
    now = time.time()
    while len(items) < n_events:
        for hook, kw in session_hooks(s, rng, now=now):
            cbs[hook](**kw)
        s += 1
    del items[n_events:]
    return items


def _recorder(db: Path, capacity: int = 100_000) -> Any:
    from hermetry.cost.processor import PriceApiCalls
    from hermetry.recorder.recorder import Recorder
    from hermetry.stores.sqlite import SQLiteStore

    return Recorder(lambda: SQLiteStore(db), capacity=capacity, processors=[PriceApiCalls.from_file(None)],
                    register_atexit=False)


def _count_rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("sessions", "turns", "api_calls", "tool_calls")}
    finally:
        conn.close()


def _burst(root: Path, items: list[tuple[Any, ...]]) -> dict[str, Any]:
    db = root / "burst.db"
    rec = _recorder(db, capacity=max(100_000, len(items)))
    # create the file and schema, load pricing: not part of the measurement
    rec.submit(items[0])
    rec.flush(60)
    batch = items[1:]
    gc.collect()
    t0 = time.perf_counter()
    submit = rec.submit
    for it in batch:
        submit(it)
    t_submit = time.perf_counter() - t0
    ok = rec.flush(600)
    dt = time.perf_counter() - t0
    st = rec.stats()
    rec.close(30)
    return {"events": len(batch), "seconds": dt, "submit_seconds": t_submit, "eps": len(batch) / dt,
            "flushed": ok, "written": st.written, "dropped": st.dropped, "rows": _count_rows(db)}


_ID_KEYS = ("session_id", "task_id", "turn_id", "api_request_id", "tool_call_id")


def _stream(root: Path, n_events: int, capacity: int = 100_000) -> dict[str, Any]:
    """Call the real callbacks at full speed: a pool of sessions' hook calls, replayed with fresh ids."""
    from hermetry.sources.hermes.hooks import HermesCapture

    db = root / "stream.db"
    rec = _recorder(db, capacity=capacity)
    cbs = HermesCapture(rec, profile="default").callbacks()
    rng = random.Random(11)
    now = time.time()
    pool = [(cbs[hook], kw, tuple(k for k in _ID_KEYS if kw.get(k)))
            for s in range(500) for hook, kw in session_hooks(s, rng, now=now)]
    rec.submit(_make_items(None, 1)[0])
    rec.flush(60)
    written0 = rec.stats().written
    gc.collect()
    high_water = [0]
    rss_peak = [current_rss_mb()]
    stop = threading.Event()

    def watch() -> None:  # queue length and RSS, sampled
        while not stop.wait(0.005):
            st = rec.stats()
            high_water[0] = max(high_water[0], st.queued + st.pending)
            rss_peak[0] = max(rss_peak[0], current_rss_mb())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rss0 = current_rss_mb()
    t0 = time.perf_counter()
    calls = 0
    cycle = 0
    while calls < n_events:
        suffix = f"~{cycle}"
        for cb, kw, ids in pool:
            kw = dict(kw)
            for k in ids:
                kw[k] += suffix
            cb(**kw)
        calls += len(pool)
        cycle += 1
    t_offered = time.perf_counter() - t0
    ok = rec.flush(900)
    dt = time.perf_counter() - t0
    stop.set()
    watcher.join(1)
    st = rec.stats()
    rec.close(30)
    return {"calls": calls, "offered_eps": calls / t_offered, "seconds": dt, "flushed": ok,
            "written": st.written - written0, "dropped": st.dropped, "durable_eps": (st.written - written0) / dt,
            "queue_high_water": high_water[0], "capacity": capacity,
            "rss_growth_mb": rss_peak[0] - rss0, "rows": _count_rows(db)}


def _writer_memory(root: Path, items: list[tuple[Any, ...]]) -> float:
    """tracemalloc peak (MB) of draining one queue's worth of items (tracing slows it: not timed)."""
    rec = _recorder(root / "traced.db", capacity=max(100_000, len(items)))
    rec.submit(items[0])
    rec.flush(60)
    tracemalloc.start()
    for it in items[1:]:
        rec.submit(it)
    rec.flush(900)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rec.close(30)
    return peak / 2**20


def _stages(root: Path, items: list[tuple[Any, ...]]) -> dict[str, float]:
    """µs per event for each writer stage, each timed alone on the same items."""
    from hermetry.cost.processor import PriceApiCalls
    from hermetry.model.events import ApiCall
    from hermetry.stores.sqlite import SQLiteStore

    t0 = time.perf_counter()
    events = [e for it in items for e in it[0](it)]
    t_norm = time.perf_counter() - t0
    price = PriceApiCalls.from_file(None)
    # loading genai-prices and the price file happens once, at a process's first priced call (the
    # burst does it before it starts its clock too): timed apart, not spread over the events
    t0 = time.perf_counter()
    price(copy.copy(next(e for e in events if isinstance(e, ApiCall))))
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    events = [price(e) for e in events]
    t_price = time.perf_counter() - t0
    # live Hermes makes a call every few seconds to minutes: a priced call in a minute not seen before
    calls = [e for e in events if isinstance(e, ApiCall) and e.status == "ok"][:200]
    spread = []
    for k, e in enumerate(calls):
        c = copy.copy(e)
        c.started_at_ms = e.started_at_ms + (k + 1) * 180_000.0  # 3 minutes apart
        c.cost_usd = c.cost_status = c.cost_source = c.pricing_version = None
        spread.append(c)
    t0 = time.perf_counter()
    for c in spread:
        price(c)
    t_minute = time.perf_counter() - t0
    store = SQLiteStore(root / "stages.db")
    store.write(events[:1])
    t0 = time.perf_counter()
    for i in range(0, len(events), 5000):  # the recorder's max_batch
        store.write(events[i:i + 5000], None)
    t_write = time.perf_counter() - t0
    store.close()
    n = len(items)
    return {"normalize_us": t_norm / n * 1e6, "price_us": t_price / n * 1e6, "store_us": t_write / n * 1e6,
            "events_per_item": len(events) / n, "price_load_ms": t_load * 1e3,
            "price_new_minute_us": t_minute / max(len(spread), 1) * 1e6}


def _floor(root: Path, items: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Raw tuples → deque → writer thread → executemany into one table, commit per batch."""
    conn = sqlite3.connect(root / "floor.db", check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    width = 14
    conn.execute(f"CREATE TABLE raw ({', '.join(f'c{i}' for i in range(width))})")
    sql = f"INSERT INTO raw VALUES ({', '.join('?' * width)})"
    q: deque[tuple[Any, ...]] = deque()
    done = threading.Event()
    written = [0]
    total = len(items)

    def to_row(it: tuple[Any, ...]) -> tuple[Any, ...]:
        r = tuple(v if isinstance(v, int | float | str | None) else None for v in it[1:width + 1])
        return r + (None,) * (width - len(r))

    def writer() -> None:
        while written[0] < total:
            if not q:
                time.sleep(0.001)
                continue
            batch = [to_row(q.popleft()) for _ in range(min(len(q), 5000))]
            conn.execute("BEGIN")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
            written[0] += len(batch)
        done.set()

    t = threading.Thread(target=writer, daemon=True)
    t0 = time.perf_counter()
    t.start()
    for it in items:
        q.append(it)
    done.wait(600)
    dt = time.perf_counter() - t0
    conn.close()
    return {"events": total, "seconds": dt, "eps": total / dt}


def _sync(root: Path, items: list[tuple[Any, ...]]) -> dict[str, Any]:
    conn = sqlite3.connect(root / "sync.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    width = 14
    conn.execute(f"CREATE TABLE raw ({', '.join(f'c{i}' for i in range(width))})")
    sql = f"INSERT INTO raw VALUES ({', '.join('?' * width)})"
    rows = []
    for it in items:
        r = tuple(v if isinstance(v, int | float | str | None) else None for v in it[1:width + 1])
        rows.append(r + (None,) * (width - len(r)))
    t0 = time.perf_counter()
    for r in rows:
        conn.execute(sql, r)
        conn.commit()
    dt = time.perf_counter() - t0
    conn.close()
    return {"events": len(rows), "seconds": dt, "eps": len(rows) / dt}


def run(opts: Options) -> dict[str, Any]:
    root = tmpdir("ingest")
    n_burst = 20_000 if opts.quick else 100_000
    n_stream = 60_000 if opts.quick else 400_000
    log(f"ingest: making {n_burst:,} queue items with the real callbacks")
    items = _make_items(None, n_burst + 1)
    log("ingest: stage costs")
    stages = _stages(root, items[: min(len(items), 20_000)])
    log(f"ingest: stages µs/event {stages}")
    log("ingest: burst through Recorder + SQLiteStore")
    burst = _burst(root, items)
    log(f"ingest: burst {burst['eps']:,.0f} events/s ({burst['seconds']:.2f} s), dropped {burst['dropped']}")
    log("ingest: floor (raw executemany writer) and per-event sync insert")
    floor = _floor(root, items[1:])
    sync = _sync(root, items[1: 1 + min(20_000, n_burst)])
    log(f"ingest: floor {floor['eps']:,.0f}/s, sync {sync['eps']:,.0f}/s")
    log(f"ingest: stream of {n_stream:,} hook calls at full speed")
    stream = _stream(root, n_stream)
    log(f"ingest: stream durable {stream['durable_eps']:,.0f}/s, dropped {stream['dropped']:,}, "
        f"queue high-water {stream['queue_high_water']:,}")
    log("ingest: writer memory (tracemalloc) for one queue's worth")
    traced_n = min(len(items) - 1, 50_000)
    traced_mb = _writer_memory(root, items[: traced_n + 1])
    del items
    rows = [
        row("ingest", f"burst: {burst['events']:,} events (one queue's worth) submitted, then flushed — events/s until committed",
            fmt_rate(burst["eps"]),
            baseline=f"floor (raw executemany writer) {fmt_rate(floor['eps'])} · sync insert+commit per event {fmt_rate(sync['eps'])}",
            ratio=f"{burst['eps'] / floor['eps']:.2f}× floor · {burst['eps'] / sync['eps']:.1f}× sync",
            target=f"≥ {TARGET_EPS:,}/s", ok=burst["eps"] >= TARGET_EPS and burst["dropped"] == 0,
            memory=f"writer: tracemalloc peak {fmt_mb(traced_mb)} for {traced_n:,} events",
            key="ingest.burst", burst=burst, floor=floor, sync=sync, traced_mb=traced_mb),
        row("ingest", f"stream: {stream['calls']:,} real hook calls at full speed (offered {fmt_rate(stream['offered_eps'])}), then flushed",
            f"{fmt_rate(stream['durable_eps'])} durable; {stream['dropped']:,} dropped (counted)",
            baseline=f"queue capacity {stream['capacity']:,}; high-water {stream['queue_high_water']:,}",
            target="memory bounded; drops counted, none silent",
            ok=stream["written"] + stream["dropped"] == stream["calls"] and stream["queue_high_water"] <= 2 * stream["capacity"],
            memory=f"+{fmt_mb(stream['rss_growth_mb'])} RSS (sampled peak)",
            key="ingest.stream", stream=stream),
        row("ingest", "writer cost per event, by stage (µs): normalize · price · SQLite write "
                      f"(pricing's one-time load apart: {stages['price_load_ms']:.0f} ms; a priced call in a minute "
                      f"not seen before, as live calls are: {stages['price_new_minute_us']:.0f} µs)",
            f"{stages['normalize_us']:.1f} · {stages['price_us']:.1f} · {stages['store_us']:.1f} = "
            f"{stages['normalize_us'] + stages['price_us'] + stages['store_us']:.1f} µs",
            baseline=f"floor {fmt_us(1e6 / floor['eps'])}/event",
            target=f"≤ {1e6 / TARGET_EPS:.1f} µs/event in total",
            ok=(stages["normalize_us"] + stages["price_us"] + stages["store_us"]) <= 1e6 / TARGET_EPS,
            key="ingest.stages", stages=stages),
    ]
    notes = [
        f"Workload: Hermes CLI sessions of {EVENTS_PER_SESSION} hook calls (4 turns × (turn start, 3 API calls, "
        "2 tool calls, turn end) + session start/finalize); the API calls are priced by the plugin's processor "
        "(genai-prices).",
        f"Peak RSS of the ingest process: {fmt_mb(peak_rss_mb())} (includes the pre-made items).",
        f"Rows after stream: {stream['rows']}.",
    ]
    return {"rows": rows, "notes": notes, "raw": {"burst": burst, "stream": stream, "stages": stages,
                                                   "floor": floor, "sync": sync}}
