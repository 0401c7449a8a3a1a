"""1 · Hook cost per recorded API-call event, on the agent's thread.

The real ``post_api_request`` callback from ``HermesCapture(recorder).callbacks()`` is called
with the keyword arguments Hermes 0.19.0 passes (``bench._workload``), exactly as Hermes'
``invoke_hook`` calls it (``cb(**kwargs)``), while the recorder's writer thread runs and writes
to a real SQLite file through the same processors the plugin installs (pricing). Each call is
timed with ``perf_counter_ns``. Baselines, measured in the same process and the same way:

* ``otel``: an OpenTelemetry SDK span with 16 attributes, ended at once, through a
  ``BatchSpanProcessor`` (default settings) whose exporter discards;
* ``sqlite``: a synchronous insert of the same 16 fields + commit (WAL, synchronous=NORMAL);
* ``floor``: the same fields picked into a tuple and appended to a deque that a thread drains;
* ``noop``: ``def cb(**kw): pass`` — what Hermes' calling convention alone costs.

Three pacings: back-to-back; sleep-paced (the agent thread is idle between events, as when it
waits for the model); busy-paced (the agent thread runs Python between events, so a background
thread that wants the interpreter must take it from the agent). In the busy-paced runs the
agent thread also records every gap ≥ 50 µs in its own progress: that is time it could not run —
the writer (or the exporter thread) holding the interpreter, or the OS.

Mechanisms are measured in interleaved rounds; after each round the mechanism's background
thread is flushed so that it is idle while the next mechanism is measured. The harness's own
pool of pre-built payloads is moved out of the cyclic GC's reach (``gc.freeze()``) so that
collections walking it do not add harness-made pauses to every mechanism's tail; the GC still
runs on everything the mechanisms allocate.
"""

from __future__ import annotations

import gc
import os
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import Options, fmt_us, log, row, summarize_ns, tmpdir
from bench._workload import post_api_request_kwargs

STALL_NS = 50_000

# the 12 fields hermetry's post_api_request callback picks (hooks._API_OK_KEYS) + a timestamp
_FLOOR_KEYS = (
    "session_id", "turn_id", "api_request_id", "model", "provider", "base_url", "api_mode",
    "api_duration", "started_at", "finish_reason", "response_model", "usage",
)


class Mechanism:
    name = ""
    callback: Callable[..., None]

    def quiesce(self) -> None:
        """Let the background thread finish what it was given (so it is idle afterwards)."""

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}


class Hermetry(Mechanism):
    name = "hermetry"

    def __init__(self, root: Path) -> None:
        from hermetry.cost.processor import PriceApiCalls
        from hermetry.recorder.recorder import Recorder
        from hermetry.sources.hermes.hooks import HermesCapture
        from hermetry.stores.sqlite import SQLiteStore

        db = root / "telemetry.db"
        # as plugin.get_capture() builds it (no operator price file: genai-prices estimates)
        self.recorder = Recorder(lambda: SQLiteStore(db), processors=[PriceApiCalls.from_file(None)],
                                 register_atexit=False)
        self.callback = HermesCapture(self.recorder).callbacks()["post_api_request"]

    def quiesce(self) -> None:
        self.recorder.flush(120)

    def close(self) -> None:
        self.recorder.close(30)

    def stats(self) -> dict[str, Any]:
        s = self.recorder.stats()
        return {"written": s.written, "dropped": s.dropped}


class Otel(Mechanism):
    name = "otel"

    def __init__(self, root: Path) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from opentelemetry.trace import SpanKind

        class Discard(SpanExporter):
            exported = 0

            def export(self, spans: Any) -> SpanExportResult:
                Discard.exported += len(spans)
                return SpanExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

        self._discard = Discard
        self.provider = TracerProvider(resource=Resource.create({"service.name": "hermes-agent"}))
        self.provider.add_span_processor(BatchSpanProcessor(Discard()))
        tracer = self.provider.get_tracer("hermes.bench")
        client = SpanKind.CLIENT

        def callback(**kw: Any) -> None:
            try:
                usage = kw.get("usage") or {}
                attrs = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": kw.get("provider") or "",
                    "gen_ai.request.model": kw.get("model") or "",
                    "gen_ai.response.model": kw.get("response_model") or "",
                    "gen_ai.response.finish_reasons": (kw.get("finish_reason") or "",),
                    "gen_ai.usage.input_tokens": usage.get("prompt_tokens") or 0,
                    "gen_ai.usage.output_tokens": usage.get("output_tokens") or 0,
                    "gen_ai.usage.cache_read_input_tokens": usage.get("cache_read_tokens") or 0,
                    "gen_ai.usage.cache_creation_input_tokens": usage.get("cache_write_tokens") or 0,
                    "gen_ai.usage.reasoning_tokens": usage.get("reasoning_tokens") or 0,
                    "server.address": kw.get("base_url") or "",
                    "hermes.session_id": kw.get("session_id") or "",
                    "hermes.turn_id": kw.get("turn_id") or "",
                    "hermes.api_request_id": kw.get("api_request_id") or "",
                    "hermes.platform": kw.get("platform") or "",
                    "hermes.api_mode": kw.get("api_mode") or "",
                }
                span = tracer.start_span(f"chat {kw.get('model')}", kind=client, attributes=attrs,
                                         start_time=int(kw["started_at"] * 1e9))
                span.end(end_time=int(kw["ended_at"] * 1e9))
            except Exception:
                pass

        self.callback = callback

    def quiesce(self) -> None:
        self.provider.force_flush(60_000)

    def close(self) -> None:
        self.provider.shutdown()

    def stats(self) -> dict[str, Any]:
        return {"exported": self._discard.exported}


class SyncSqlite(Mechanism):
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        conn = sqlite3.connect(root / "sync.db", check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS api_calls (api_request_id TEXT PRIMARY KEY, session_id TEXT, turn_id TEXT,"
            " task_id TEXT, platform TEXT, model TEXT, provider TEXT, base_url TEXT, api_mode TEXT,"
            " started_at REAL, latency_ms REAL, finish_reason TEXT, input_tokens INTEGER, output_tokens INTEGER,"
            " cache_read_tokens INTEGER, reasoning_tokens INTEGER)"
        )
        conn.commit()
        self.conn = conn
        sql = "INSERT INTO api_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

        def callback(**kw: Any) -> None:
            try:
                usage = kw.get("usage") or {}
                conn.execute(sql, (
                    kw.get("api_request_id"), kw.get("session_id"), kw.get("turn_id"), kw.get("task_id"),
                    kw.get("platform"), kw.get("model"), kw.get("provider"), kw.get("base_url"),
                    kw.get("api_mode"), kw.get("started_at"), (kw.get("api_duration") or 0) * 1000,
                    kw.get("finish_reason"), usage.get("input_tokens"), usage.get("output_tokens"),
                    usage.get("cache_read_tokens"), usage.get("reasoning_tokens"),
                ))
                conn.commit()
            except Exception:
                pass

        self.callback = callback

    def close(self) -> None:
        self.conn.close()


class Floor(Mechanism):
    name = "floor"

    def __init__(self, root: Path) -> None:
        q: deque[tuple[Any, ...]] = deque()
        self.q = q
        self._stop = threading.Event()
        self.drained = 0

        def drain() -> None:
            pop = q.popleft
            while not self._stop.wait(0.1):
                n = 0
                while q:
                    pop()
                    n += 1
                self.drained += n

        self._thread = threading.Thread(target=drain, daemon=True)
        self._thread.start()
        append, now, keys = q.append, time.time, _FLOOR_KEYS

        def callback(**kw: Any) -> None:
            append((now(), *map(kw.get, keys)))

        self.callback = callback

    def quiesce(self) -> None:
        while self.q:
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class Noop(Mechanism):
    name = "noop"

    def __init__(self, root: Path) -> None:
        def callback(**kw: Any) -> None:
            pass

        self.callback = callback


# ---------------------------------------------------------------------------------------------

def _b2b(cb: Callable[..., None], kws: list[dict[str, Any]], out: list[int], stalls: list[int]) -> None:
    pc = time.perf_counter_ns
    for k in kws:
        t0 = pc()
        cb(**k)
        out.append(pc() - t0)


def _sleep_paced(gap_s: float) -> Callable[..., None]:
    def run(cb: Callable[..., None], kws: list[dict[str, Any]], out: list[int], stalls: list[int]) -> None:
        pc, sleep = time.perf_counter_ns, time.sleep
        for k in kws:
            sleep(gap_s)
            t0 = pc()
            cb(**k)
            out.append(pc() - t0)

    return run


def _busy_paced(gap_ns: int) -> Callable[..., None]:
    def run(cb: Callable[..., None], kws: list[dict[str, Any]], out: list[int], stalls: list[int]) -> None:
        pc = time.perf_counter_ns
        for k in kws:
            last = pc()
            end = last + gap_ns
            while True:  # the agent's own Python work between events; note where it could not run
                now = pc()
                if now - last >= STALL_NS:
                    stalls.append(now - last)
                last = now
                if now >= end:
                    break
            t0 = pc()
            cb(**k)
            out.append(pc() - t0)

    return run


def run(opts: Options) -> dict[str, Any]:
    quick = opts.quick
    rng = random.Random(1)
    root = tmpdir("hook")
    n_b2b = 10_000 if quick else 50_000
    n_sleep = 2_000 if quick else 10_000
    n_busy = 4_000 if quick else 20_000
    rounds = 5
    gap_sleep_s = 0.0005
    gap_busy_ns = 200_000
    log(f"hook: building {n_b2b:,} kwargs payloads")
    payloads = [post_api_request_kwargs(i, rng) for i in range(n_b2b)]

    mechs: list[Mechanism] = [Hermetry(root), Otel(root), SyncSqlite(root), Floor(root), Noop(root)]
    # warm-up: imports, the store's file and schema, pricing tables, SQLite page cache
    for m in mechs:
        for k in payloads[:2000]:
            m.callback(**k)
        m.quiesce()
    # The pool of payloads is the harness's, not Hermes': keep the cyclic GC from walking it on
    # every collection (that would add harness-made pauses to every mechanism's tail alike).
    gc.collect()
    gc.freeze()

    modes: list[tuple[str, str, Callable[..., None], int, list[str]]] = [
        ("b2b", "back-to-back", _b2b, n_b2b, [m.name for m in mechs]),
        ("sleep", f"sleep-paced, {gap_sleep_s * 1e6:.0f} µs between events", _sleep_paced(gap_sleep_s), n_sleep,
         ["hermetry", "otel", "sqlite", "floor"]),
        ("busy", f"busy-paced, {gap_busy_ns / 1000:.0f} µs of agent work between events", _busy_paced(gap_busy_ns),
         n_busy, ["hermetry", "otel", "sqlite", "floor"]),
    ]
    only = os.environ.get("BENCH_HOOK_MODES")  # e.g. "busy" while experimenting
    if only:
        modes = [m for m in modes if m[0] in only.split(",")]
    results: dict[str, dict[str, Any]] = {}
    for mode, label, runner, n, names in modes:
        samples: dict[str, list[int]] = {m: [] for m in names}
        stalls: dict[str, list[int]] = {m: [] for m in names}
        spent: dict[str, float] = dict.fromkeys(names, 0.0)
        per_round = n // rounds
        log(f"hook: {label}: {n:,} calls per mechanism, {rounds} interleaved rounds")
        for r in range(rounds):
            for m in mechs:
                if m.name not in names:
                    continue
                chunk = payloads[(r * per_round) % len(payloads):][:per_round]
                # distinct ids per mode and round, so that nothing is an upsert of an earlier row
                chunk = [dict(k, api_request_id=f"{k['api_request_id']}-{mode}{r}") for k in chunk]
                gc.collect()
                t0 = time.perf_counter()
                runner(m.callback, chunk, samples[m.name], stalls[m.name])
                spent[m.name] += time.perf_counter() - t0
                m.quiesce()
        for name in names:
            s = summarize_ns(samples[name])
            st = stalls[name]
            s["stalls_over_50us"] = len(st)
            s["stall_max_us"] = max(st) / 1000 if st else 0.0
            s["stall_total_ms"] = sum(st) / 1e6
            s["stall_per_s"] = len(st) / spent[name] if spent[name] else 0.0
            s["seconds"] = spent[name]
            results.setdefault(mode, {})[name] = s
        log("hook: " + label + ": " + ", ".join(
            f"{k} med {v['median_us']:.2f} p99.9 {v['p999_us']:.1f} µs" for k, v in results[mode].items()))
    stats = {m.name: m.stats() for m in mechs}
    for m in mechs:
        m.close()

    rows = []
    for mode, label, _, _n, _names in modes:
        res = results[mode]
        h, o, q, f = res["hermetry"], res["otel"], res["sqlite"], res["floor"]
        r_otel = o["median_us"] / h["median_us"]
        r_sql = q["median_us"] / h["median_us"]
        rows.append(row(
            "hook", f"post_api_request, {label} — median", fmt_us(h["median_us"]),
            baseline=f"OTel {fmt_us(o['median_us'])} · sync SQLite {fmt_us(q['median_us'])} · floor {fmt_us(f['median_us'])}",
            ratio=f"OTel/hermetry {r_otel:.1f}× · SQLite/hermetry {r_sql:.1f}× · hermetry/floor {h['median_us'] / f['median_us']:.1f}×",
            target="≥ 7× below OTel, ≥ 4× below SQLite", ok=r_otel >= 7 and r_sql >= 4, key=f"hook.{mode}.median",
            hermetry=h, otel=o, sqlite=q, floor=f, noop=res.get("noop"),
        ))
        rows.append(row(
            "hook", f"post_api_request, {label} — p99 / p99.9 / max",
            f"{fmt_us(h['p99_us'])} / {fmt_us(h['p999_us'])} / {fmt_us(h['max_us'])}",
            baseline=(f"OTel {fmt_us(o['p99_us'])} / {fmt_us(o['p999_us'])} · "
                      f"SQLite {fmt_us(q['p99_us'])} / {fmt_us(q['p999_us'])} · floor {fmt_us(f['p99_us'])} / {fmt_us(f['p999_us'])}"),
            ratio=f"p99.9: OTel/hermetry {o['p999_us'] / h['p999_us']:.1f}× · SQLite/hermetry {q['p999_us'] / h['p999_us']:.1f}×",
            target="p99.9 ≤ 100 µs", ok=h["p999_us"] <= 100, key=f"hook.{mode}.tail",
        ))
        if mode == "busy":
            rows.append(row(
                "hook", "agent thread kept from running (busy-paced): gaps ≥ 50 µs — longest, per second, share",
                f"{fmt_us(h['stall_max_us'])}, {h['stall_per_s']:.0f}/s, {h['stall_total_ms'] / 1000 / h['seconds'] * 100:.2f}%",
                baseline=(f"OTel {fmt_us(o['stall_max_us'])}, {o['stall_per_s']:.0f}/s · "
                          f"SQLite (no thread: OS noise) {fmt_us(q['stall_max_us'])}, {q['stall_per_s']:.0f}/s · "
                          f"floor {fmt_us(f['stall_max_us'])}, {f['stall_per_s']:.0f}/s"),
                target="writer never holds the interpreter long (≤ 100 µs)", ok=h["stall_max_us"] <= 100,
                key="hook.busy.stalls",
            ))
    noop = results.get("b2b", {}).get("noop")
    notes = [
        f"Calling convention alone (Hermes' `cb(**kwargs)` with {len(payloads[0])} keyword arguments into "
        f"`def cb(**kw): pass`): median {fmt_us(noop['median_us'])}." if noop else "",
        f"Writer/exporter totals: {stats}",
    ]
    return {"rows": rows, "notes": [n for n in notes if n], "raw": results}
