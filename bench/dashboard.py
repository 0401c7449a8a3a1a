"""6 · Dashboard first view: how long until `hermetry dashboard` shows the Overview, at 100k and 1M API calls.

The real command runs as a subprocess (``hermetry --db H dashboard --port P``) over the query
benchmark's histories (``bench._fixtures.history_db``: 6.5 days, so the default 7-day window
covers all of it). Measured over loopback HTTP, as a browser would fetch it:

* **first view, prepared** — the page (HTML, scripts, styles, the vendored uPlot) and the
  Overview's JSON (``/api/insights?by=day,source,model``), once the server has prepared that
  answer (it computes it in the background as it starts);
* **ready after** — from starting the process until that answer is prepared (what someone who
  opens the page at once waits at most);
* **a view never asked before** — the same Overview with a filter: the analytics call itself;
* **live refresh** — one ``/api/version`` poll (what every open page does every 5 s);
* **in a browser** (Chromium, when installed): ``page.goto`` until the Overview is drawn —
  *cold* (opened the moment the server listens: nothing prepared or cached) and *warm*.

Baseline, same run: ``hermetry insights --json`` for the same window (the CLI, cold).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._common import Options, child_env, fmt_s, log, row, run_child
from bench._fixtures import history_db

TARGET_S = 1.0
FIRST_VIEW = "/api/insights?by=day,source,model"
ASSETS = ("/", "/app.js", "/app.css", "/boot.js", "/vendor/uPlot.iife.min.js", "/vendor/uPlot.min.css")


def _hermetry() -> str:
    candidate = Path(sys.executable).parent / "hermetry"
    return str(candidate) if candidate.exists() else "hermetry"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as resp:
        data: bytes = resp.read()
        return data


def _page_and_view(base: str, view: str) -> float:
    t0 = time.perf_counter()
    for asset in ASSETS:
        _get(base + asset)
    _get(base + view)
    return time.perf_counter() - t0


class _Browser:
    """Chromium (the system's, as the tests drive it), one fresh page per view: no cache shared."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        executable = shutil.which("chromium") or "/usr/bin/chromium"
        if not os.path.exists(executable):
            raise FileNotFoundError(executable)
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])

    def first_view(self, url: str) -> float:
        """``page.goto`` until the Overview is drawn (cards and charts), in a new context."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("main[data-loaded][aria-busy=false] .cards", timeout=600_000)
        seconds = time.perf_counter() - t0
        context.close()
        return seconds

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


def _browser() -> _Browser | None:
    try:
        return _Browser()
    except Exception as exc:  # no Playwright, no Chromium: the HTTP figures still stand
        log(f"dashboard: no browser ({type(exc).__name__}: {exc}); HTTP figures only")
        return None


def measure(db: Path, meta: dict[str, Any], browser: _Browser | None) -> dict[str, Any]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    t_start = time.perf_counter()
    proc = subprocess.Popen([_hermetry(), "--db", str(db), "dashboard", "--port", str(port)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "hermetry dashboard: URL" once it listens
        listening = time.perf_counter() - t_start
        # cold: the page opened the moment the server listens (its first answer not prepared yet)
        if browser is not None:
            cold = browser.first_view(base + "/")
        else:
            cold = _page_and_view(base, FIRST_VIEW)
        cold_total = time.perf_counter() - t_start
        while json.loads(_get(base + "/api/version"))["computing"]:
            time.sleep(0.05)
        ready = time.perf_counter() - t_start
        warm_browser = min(browser.first_view(base + "/") for _ in range(3)) if browser is not None else None
        prepared = min(_page_and_view(base, FIRST_VIEW) for _ in range(5))
        polls = []
        for _ in range(200):
            t0 = time.perf_counter()
            _get(base + "/api/version")
            polls.append(time.perf_counter() - t0)
        polls.sort()
        t0 = time.perf_counter()
        _get(base + FIRST_VIEW + "&source=cli")
        unseen = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    since, until = meta["since_ms"], meta["until_ms"]
    from datetime import UTC, datetime

    def iso(ms: float) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")

    cli_run = min((run_child([_hermetry(), "--db", str(db), "insights", "--json", "--since", iso(since), "--until",
                              iso(until), "--by", "day", "--by", "source", "--by", "model"], env=child_env(), timeout=900)
                   for _ in range(2)), key=lambda r: r.wall_s)
    method = ((json.loads(cli_run.stdout).get("api_calls") or {}).get("latency_ms") or {}).get("method")
    return {"listening_s": listening, "cold_first_view_s": cold, "cold_from_start_s": cold_total, "ready_s": ready,
            "warm_browser_first_view_s": warm_browser, "prepared_first_view_s": prepared,
            "poll_median_s": polls[len(polls) // 2], "poll_p99_s": polls[int(len(polls) * 0.99)],
            "unseen_view_s": unseen, "cli_insights_s": cli_run.wall_s, "method": method,
            "in_browser": browser is not None}


def run(opts: Options) -> dict[str, Any]:
    sizes = [10_000, 100_000] if opts.quick else [100_000, 1_000_000]
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    browser = _browser()
    try:
        for n in sizes:
            db, meta = history_db(n)
            log(f"dashboard: {n:,} API calls")
            m = measure(db, meta, browser)
            raw[n] = m
            log(f"dashboard: {n:,}: {m}")
            is_target = n == 1_000_000
            where = "in Chromium, page.goto until the Overview is drawn" if m["in_browser"] else \
                "page + JSON over HTTP (no browser here)"
            warm = m["warm_browser_first_view_s"] if m["in_browser"] else m["prepared_first_view_s"]
            rows.append(row(
                "dashboard", f"first view (Overview, 7 days), {n:,} API calls, cold: opened the moment the server "
                             f"listens ({where}); analytics path: {m['method'] or 'exact'}",
                f"{fmt_s(m['cold_first_view_s'])} (process start → drawn {fmt_s(m['cold_from_start_s'])})",
                baseline=f"`hermetry insights --json` (same figures, as a CLI) {fmt_s(m['cli_insights_s'])}",
                ratio=f"listening after {fmt_s(m['listening_s'])}",
                target=f"≤ {TARGET_S:.0f} s at 1M" if is_target else "",
                ok=(m["cold_first_view_s"] <= TARGET_S) if is_target else None,
                key=f"dashboard.cold.{n}", **m,
            ))
            rows.append(row(
                "dashboard", f"… warm: the same page again, its answer kept ({n:,} API calls); and a view never "
                             "asked before (a filter)",
                f"{fmt_s(warm)} · unseen view {fmt_s(m['unseen_view_s'])}",
                baseline=f"page + JSON over HTTP {fmt_s(m['prepared_first_view_s'])}",
                target=f"≤ {TARGET_S:.0f} s at 1M" if is_target else "",
                ok=(max(warm, m["unseen_view_s"]) <= TARGET_S) if is_target else None,
                key=f"dashboard.warm.{n}",
            ))
    finally:
        if browser is not None:
            browser.close()
    last = raw[sizes[-1]]
    rows.append(row(
        "dashboard", "live refresh: one `/api/version` poll per open page every 5 s (two stat() calls)",
        f"median {last['poll_median_s'] * 1e3:.2f} ms · p99 {last['poll_p99_s'] * 1e3:.2f} ms",
        baseline="a recompute only after a write, at most one at a time, ≥ 4× its own duration apart",
        key="dashboard.poll",
    ))
    notes = ["Cold: the server has just started (rollups built, nothing computed or cached yet) and the page is "
             "opened at once; warm: opened again, the answer kept by the server (recomputed only after a write). "
             "The Overview's figures are the ones `insights()` gives (the same JSON the CLI prints)."]
    return {"rows": rows, "notes": notes, "raw": {str(k): v for k, v in raw.items()}}
