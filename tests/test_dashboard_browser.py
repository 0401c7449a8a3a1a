"""The dashboard in a real browser, over a history recorded from real ``hermes`` runs.

Chromium (the system's, driven by Playwright) loads every view of ``hermetry dashboard`` and the
Telemetry tab inside a real ``hermes dashboard``. Every figure is read from the page (each
number carries its raw value in ``data-value``) and compared with ``hermetry insights --json``
(``compare``/``sessions``/``show`` likewise) for the same window and filters, and token counts
with the usage the scripted model sent. Every request the page makes outside 127.0.0.1 is
aborted and counted; the tests require none. Screenshots at 1280 and 390 px go to
``.pytest_cache/d/dashboard-screenshots/`` (with ``-p no:cacheprovider``: a temporary folder).
Under CI=true a missing Chromium fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conftest import engine_missing
from hermetry.analytics.report import Query
from hermetry.analytics.series import hourly
from hermetry.surfaces.dashboard.hermes_tab import install_hermes_tab
from hermetry.surfaces.dashboard.server import DashboardServer
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome, free_port, hermes_executable

pytestmark = pytest.mark.hermes

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WIDTHS = (1280, 390)
PRICES = """\
version: "dashboard-test"
name: dashboard-test
models:
  - match: {provider: custom, model: scripted-model}
    prices: {input_per_mtok: 3.0, output_per_mtok: 15.0, cache_read_per_mtok: 0.3}
    source: "test price sheet"
"""

PLAIN = ScriptedUsage(1200, 8, cached_tokens=900)
TOOL = ScriptedUsage(1500, 30, cached_tokens=1000, reasoning_tokens=12)
TOOL_FINAL = ScriptedUsage(1700, 12, cached_tokens=1400)
BETA = ScriptedUsage(500, 7)


fail_or_skip = engine_missing  # skip locally, fail under CI (tests/conftest.py)


# ---------------------------------------------------------------------------------------------
# The history: real hermes runs against the scripted model
# ---------------------------------------------------------------------------------------------

@dataclass
class Recorded:
    db: Path
    env: dict[str, str]
    since: str  # the window every test asks for (ISO, UTC)
    until: str
    served_usage: list[tuple[str, ScriptedUsage]]  # (model, usage) of every successful reply

    def cli(self, *args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(self.db), *args],
                             capture_output=True, text=True, check=True, env=self.env)
        return json.loads(out.stdout)

    def insights(self, *args: str) -> Any:
        return self.cli("insights", "--json", "--since", self.since, "--until", self.until, *args)

    def tokens(self, model: str | None = None) -> int:
        return sum(u.prompt_tokens + u.completion_tokens for m, u in self.served_usage if model in (None, m))


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    root = tmp_path_factory.mktemp("dashboard-history")
    db = root / "telemetry.db"
    (root / "prices.yaml").write_text(PRICES)
    start = datetime.now(UTC)
    served: list[tuple[str, ScriptedUsage]] = []

    def run(name: str, script: list[ScriptedReply], prompt: str, *, model: str = "scripted-model",
            default: ScriptedReply | None = None) -> None:
        with ScriptedServer(script, default_reply=default) as srv:
            home = HermesHome(root / name, srv.base_url, model=model)
            env = home.env(HERMETRY_DB=str(db), HERMETRY_PRICES=str(root / "prices.yaml"))
            result = home.oneshot(prompt, env=env)
            assert result.returncode == 0, result.stderr[-2000:]
            served.extend((model, s.reply.usage) for s in srv.served
                          if s.reply.http_status == 200 and s.reply.usage is not None)

    run("plain", [ScriptedReply(content="Paris.", usage=PLAIN, first_chunk_delay_s=0.2, total_duration_s=0.4)],
        "What is the capital of France?")
    run("tool", [ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "echo hermetry"})],
                               usage=TOOL, first_chunk_delay_s=0.3, total_duration_s=0.5),
                 ScriptedReply(content="It printed hermetry.", usage=TOOL_FINAL, first_chunk_delay_s=0.1,
                               total_duration_s=0.2)],
        "Run echo hermetry")
    run("beta", [ScriptedReply(content="Beta here.", usage=BETA, first_chunk_delay_s=0.1, total_duration_s=0.2)],
        "Who are you?", model="scripted-beta")
    run("failing", [], "Summarise the news.",
        default=ScriptedReply(http_status=503, error_message="model overloaded", first_chunk_delay_s=0.05))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMETRY_", "HERMES_"))}
    env["HERMES_HOME"] = str(root / "no-home")
    return Recorded(db, env, _iso(start - timedelta(days=2)), _iso(datetime.now(UTC) + timedelta(minutes=5)), served)


# ---------------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        fail_or_skip("playwright is not installed (pip install -e '.[dev]')")
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(executable):
        fail_or_skip("chromium is not installed (tools/install-engines.sh installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """.pytest_cache/d/dashboard-screenshots/ (a temporary folder when the cache is off)."""
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("dashboard-screenshots")) if cache is not None else tmp_path_factory.mktemp("screenshots")


class Page:
    """A page whose requests outside 127.0.0.1 are aborted and remembered."""

    def __init__(self, browser: Any, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.width = width

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def open(self, url: str, root: str = "") -> None:
        """Navigate (also within the page, by fragment) and wait until the view has loaded."""
        main = f"{root} main".strip()
        before = self.page.evaluate(f"() => {{ const m = document.querySelector('{main}'); return m ? m.dataset.loaded || '' : '' }}")
        self.page.goto(url) if not url.startswith("#") else self.page.evaluate(f"location.hash = {json.dumps(url)}")
        self.wait_loaded(main, before)

    def wait_loaded(self, main: str = "main", before: str = "") -> None:
        self.page.wait_for_function(
            "([sel, before]) => { const m = document.querySelector(sel);"
            " return m && m.dataset.loaded && m.dataset.loaded !== before && m.getAttribute('aria-busy') === 'false' }",
            arg=[main, before], timeout=30_000)

    def values(self, selector: str) -> dict[str, Any]:
        """metric → raw value of the figures under ``selector`` (first of each metric)."""
        pairs = self.page.eval_on_selector_all(
            f"{selector} [data-metric]", "els => els.map(e => [e.dataset.metric, e.dataset.value, e.textContent])")
        out: dict[str, Any] = {}
        for metric, raw, _text in pairs:
            out.setdefault(metric, json.loads(raw))
        return out

    def texts(self, selector: str) -> dict[str, str]:
        pairs = self.page.eval_on_selector_all(f"{selector} [data-metric]", "els => els.map(e => [e.dataset.metric, e.textContent])")
        out: dict[str, str] = {}
        for metric, text in pairs:
            out.setdefault(metric, text)
        return out

    def row_values(self, table: str) -> dict[str, dict[str, Any]]:
        rows = self.page.eval_on_selector_all(
            f"[data-table='{table}'] tbody tr[data-key]",
            "trs => trs.map(tr => [tr.dataset.key, Array.from(tr.querySelectorAll('[data-metric]')).map(e => [e.dataset.metric, e.dataset.value])])")
        return {key: {m: json.loads(v) for m, v in figs} for key, figs in rows}

    def methods(self) -> dict[str, tuple[str, str]]:
        """Each percentile label on the page: what it labels → (data-method, its text)."""
        found = self.page.eval_on_selector_all(
            "main [data-method-for]", "els => els.map(e => [e.dataset.methodFor, e.dataset.method, e.textContent])")
        return {key: (method, text) for key, method, text in found}

    def shot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}-{self.width}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()
        assert self.outside == [], f"requests tried to leave the machine: {self.outside}"
        assert self.errors == [], f"errors in the page: {self.errors}"


@pytest.fixture
def pages(browser: Any) -> Iterator[Any]:
    opened: list[Page] = []

    def make(width: int = 1280) -> Page:
        page = Page(browser, width)
        opened.append(page)
        return page

    yield make
    for page in opened:
        page.close()


@pytest.fixture(scope="module")
def dashboard(recorded: Recorded) -> Iterator[DashboardServer]:
    with DashboardServer(recorded.db) as srv:
        yield srv


def window(r: Recorded, **extra: str) -> str:
    params = {"since": r.since, "until": r.until, **extra}
    return "&".join(f"{k}={quote(v, safe=':')}" for k, v in params.items())


def get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if data is None:
            return None
        data = data[part]
    return data


SERIES_TABLES = (("series-tokens", "api_calls.tokens.total_tokens"), ("series-cost", "api_calls.cost.known_usd"),
                 ("series-cost", "api_calls.cost.calls.unknown"), ("series-api_calls.latency_ms", "api_calls.latency_ms.p95"),
                 ("series-api_calls.ttft_ms", "api_calls.ttft_ms.p50"), ("series-turns.wall_ms", "turns.wall_ms.p99"))


def expected_method(summaries: list[dict[str, Any] | None]) -> tuple[str, str] | None:
    """The label the JSON's ``method`` / ``relative_error`` call for (None: the JSON says nothing)."""
    seen = [d for d in summaries if d and d.get("count") and d.get("method")]
    if not seen:
        return None
    approx = [d for d in seen if d["method"] != "exact"]
    if not approx:
        return ("exact", "exact")
    bound = f"≤{max(d.get('relative_error') or 0 for d in approx) * 100:.2g} % rel. err"
    return ("approximate", bound) if len(approx) == len(seen) else ("mixed", f"mixed: some {bound}, others exact")


def ms(iso_text: str) -> float:
    return datetime.fromisoformat(iso_text).timestamp() * 1000


OVERVIEW_METRICS = ["coverage.sessions", "coverage.turns", "coverage.api_calls", "coverage.tool_calls", "turns.count",
                    "turns.completion_rate.value", "turns.wall_ms.p95", "api_calls.latency_ms.p95", "api_calls.ttft_ms.p95",
                    "api_calls.tokens.total_tokens", "api_calls.cost.known_usd", "tool_calls.count",
                    "tool_calls.failure_rate.value", "sessions.count"]


# ---------------------------------------------------------------------------------------------
# hermetry dashboard
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_overview_shows_what_insights_json_says(recorded: Recorded, dashboard: DashboardServer, pages: Any,
                                                shots: Path, width: int) -> None:
    page = pages(width)
    page.open(f"{dashboard.url}#/overview?{window(recorded)}")
    expected = recorded.insights("--by", "day", "--by", "source", "--by", "model")
    shown = page.values("main .cards") | page.values("main > .view > p.coverage")
    for metric in OVERVIEW_METRICS:
        assert shown[metric] == get(expected, metric), metric
    # ground truth: the tokens the scripted model reported, each call once
    assert shown["api_calls.tokens.total_tokens"] == recorded.tokens()
    assert page.texts("main .cards")["turns.count"] == f"{expected['turns']['count']:,}"
    # every percentile card says how its percentiles were computed, as the JSON says
    labels = page.methods()
    for path in ("turns.wall_ms", "api_calls.latency_ms", "api_calls.ttft_ms"):
        assert labels.get(path) == expected_method([get(expected, path)]), path
    assert expected["turns"]["count"] == 4 and expected["api_calls"]["errors"] >= 1
    # a 2-day window is drawn per hour: the tables hold what analytics.series.hourly says for each hour
    hours = hourly(recorded.db, Query(ms(recorded.since), ms(recorded.until), {}, ()))["hours"]
    for table, metric in SERIES_TABLES:
        rows = page.row_values(table)
        assert list(rows) == [x["hour"] for x in hours]
        for x in hours:
            assert rows[x["hour"]][metric] == get(x, metric), (table, x["hour"])
    assert sum(r["api_calls.tokens.total_tokens"] for r in page.row_values("series-tokens").values()) == recorded.tokens()
    for dim in ("source", "model"):
        rows = page.row_values(f"rates-{dim}")
        assert set(rows) == {str(r[dim]) for r in expected["breakdowns"][dim]}
        for r in expected["breakdowns"][dim]:
            assert rows[str(r[dim])]["turns.failure_rate.value"] == r["turns"]["failure_rate"]["value"]
    assert page.page.eval_on_selector_all("main figure.chart canvas", "els => els.length") >= 5
    if width == 390:  # nothing wider than the screen: wide tables scroll inside their own box
        assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    page.shot(shots, "overview")
    # a longer window is drawn per UTC day: the tables hold the per-day breakdown of insights --json
    since = _iso(datetime.now(UTC) - timedelta(days=10))
    page.open(f"#/overview?{window(recorded, since=since)}")
    expected = recorded.cli("insights", "--json", "--since", since, "--until", recorded.until, "--by", "day")
    for table, metric in SERIES_TABLES:
        rows = page.row_values(table)
        assert list(rows) == [d["day"] for d in expected["breakdowns"]["day"]]
        for day in expected["breakdowns"]["day"]:
            assert rows[day["day"]][metric] == get(day, metric), (table, day["day"])


def test_filters_and_window_change_the_numbers(recorded: Recorded, dashboard: DashboardServer, pages: Any,
                                               shots: Path) -> None:
    page = pages()
    page.open(f"{dashboard.url}#/overview?{window(recorded)}")
    all_turns = page.values("main .cards")["turns.count"]
    # a filter typed into the form, applied with the keyboard
    page.page.fill("#f-model", "scripted-beta")
    before = page.page.get_attribute("main", "data-loaded") or ""
    page.page.press("#f-model", "Enter")
    page.wait_loaded("main", before)
    assert "model=scripted-beta" in page.page.evaluate("location.hash")
    shown = page.values("main .cards")
    expected = recorded.insights("--model", "scripted-beta")
    for metric in ("turns.count", "api_calls.tokens.total_tokens", "api_calls.latency_ms.p95", "api_calls.cost.known_usd"):
        assert shown[metric] == get(expected, metric), metric
    assert shown["turns.count"] == 1 < all_turns
    assert shown["api_calls.tokens.total_tokens"] == recorded.tokens("scripted-beta")
    assert shown["api_calls.cost.known_usd"] is None  # no price for that model: unknown, never $0
    assert page.texts("main .cards")["api_calls.cost.known_usd"] == "—"
    page.shot(shots, "overview-filtered")
    # a window with nothing in it
    page.open("#/overview?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z")
    shown = page.values("main .cards")
    assert shown["turns.count"] == 0 and shown["api_calls.latency_ms.p95"] is None
    assert page.texts("main .cards")["api_calls.latency_ms.p95"] == "—"


@pytest.mark.parametrize("width", WIDTHS)
def test_breakdowns_are_sortable_tables(recorded: Recorded, dashboard: DashboardServer, pages: Any, shots: Path,
                                        width: int) -> None:
    page = pages(width)
    page.open(f"{dashboard.url}#/breakdowns?{window(recorded, by='model')}")
    expected = {r["model"]: r for r in recorded.insights("--by", "model")["breakdowns"]["model"]}
    rows = page.row_values("breakdown-model")
    assert set(rows) == set(expected) == {"scripted-model", "scripted-beta"}
    for key, row in rows.items():
        for metric in ("turns.count", "api_calls.count", "api_calls.latency_ms.p50", "api_calls.tokens.total_tokens",
                       "api_calls.cost.known_usd", "tool_calls.count"):
            assert row[metric] == get(expected[key], metric), (key, metric)
    header = page.page.locator("[data-table='breakdown-model'] button[data-sort='API calls']")
    header.click()
    order = list(page.row_values("breakdown-model"))
    assert order == sorted(expected, key=lambda k: -expected[k]["api_calls"]["count"])
    assert page.page.get_attribute("[data-table='breakdown-model'] th:has(button[data-sort='API calls'])", "aria-sort") == "descending"
    header = page.page.locator("[data-table='breakdown-model'] button[data-sort='API calls']")
    header.press("Enter")  # sorting works from the keyboard too
    assert list(page.row_values("breakdown-model")) == order[::-1]
    assert page.methods().get("breakdown:model") == expected_method(
        [get(r, m) for r in expected.values() for m in ("turns.wall_ms", "api_calls.latency_ms", "api_calls.ttft_ms",
                                                        "tool_calls.latency_ms")])
    page.shot(shots, "breakdowns")
    for dim in ("source", "provider", "session_type", "tool", "host"):
        page.open(f"#/breakdowns?{window(recorded, by=dim)}")
        keys = {str(r[dim]) if r[dim] is not None else "(none)" for r in recorded.insights("--by", dim)["breakdowns"][dim]}
        assert set(page.row_values(f"breakdown-{dim}")) == keys, dim


def _state_method(node: Any, method: str) -> None:
    """Give every percentile summary in an answer the ``method`` rollups give (in place)."""
    if isinstance(node, dict):
        if "p50" in node and "coverage" in node:
            node["method"], node["relative_error"] = method, (0.01 if method == "approximate" else None)
        for v in node.values():
            _state_method(v, method)
    elif isinstance(node, list):
        for v in node:
            _state_method(v, method)


@pytest.mark.parametrize("method", ["approximate", "exact"])
def test_percentile_labels_follow_the_json_method(recorded: Recorded, dashboard: DashboardServer, pages: Any,
                                                  method: str) -> None:
    """The labels come from the answer's ``method``, whichever path computed it: the same page
    over answers that say ``approximate`` (as from rollups) and ``exact``."""
    page = pages()
    answers: dict[str, Any] = {}

    def restate(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        _state_method(body, method)
        answers[route.request.url] = body
        route.fulfill(response=response, json=body)

    page.context.route(re.compile(r".*/api/(insights|hourly)\?.*"), restate)  # the report and its hourly series
    page.open(f"{dashboard.url}#/overview?{window(recorded)}")
    labels = page.methods()
    want = ("approximate", "≤1 % rel. err") if method == "approximate" else ("exact", "exact")
    for path in ("turns.wall_ms", "api_calls.latency_ms", "api_calls.ttft_ms", "series:api_calls.latency_ms"):
        assert labels[path] == want, path
    page.open(f"#/breakdowns?{window(recorded, by='model')}")
    assert page.methods()["breakdown:model"] == want
    page.open(f"#/tools?{window(recorded)}")
    assert page.methods()["tools"] == want
    assert answers


@pytest.mark.parametrize("width", WIDTHS)
def test_tools_and_failure_heatmap(recorded: Recorded, dashboard: DashboardServer, pages: Any, shots: Path,
                                   width: int) -> None:
    page = pages(width)
    page.open(f"{dashboard.url}#/tools?{window(recorded)}")
    expected = {t["tool_name"]: t for t in recorded.insights()["tools"]}
    rows = page.row_values("tools")
    assert set(rows) == set(expected) and "terminal" in rows
    for name, row in rows.items():
        for metric in ("calls", "failures", "failure_rate.value", "latency_ms.p50", "latency_ms.p95"):
            assert row[metric] == get(expected[name], metric), (name, metric)
    assert rows["terminal"]["calls"] == 1  # the one tool call the script asked for
    assert page.methods().get("tools") == expected_method([t["latency_ms"] for t in expected.values()])
    cells = page.page.eval_on_selector_all(
        "[data-table='heatmap'] tr[data-key='terminal'] td[data-calls]",
        "tds => tds.map(td => [td.dataset.day, +td.dataset.calls, +td.dataset.failures, td.textContent])")
    busy = [c for c in cells if c[1]]
    assert len(busy) == 1 and busy[0][1:] == [1, expected["terminal"]["failures"], f"{expected['terminal']['failures']}/1"]
    page.shot(shots, "tools")


@pytest.mark.parametrize("width", WIDTHS)
def test_sessions_list_and_one_session_waterfall(recorded: Recorded, dashboard: DashboardServer, pages: Any,
                                                 shots: Path, width: int) -> None:
    page = pages(width)
    page.open(f"{dashboard.url}#/sessions?{window(recorded)}")
    listed = recorded.cli("sessions", "--json", "--since", recorded.since, "--until", recorded.until, "--limit", "50")
    rows = page.row_values("sessions")
    assert set(rows) == {s["session_id"] for s in listed["sessions"]}
    for s in listed["sessions"]:
        for metric in ("turns", "api_calls", "tool_calls", "tokens.total_tokens", "cost.known_usd", "duration_ms"):
            assert rows[s["session_id"]][metric] == get(s, metric), metric
    page.shot(shots, "sessions")
    with_tool = next(s for s in listed["sessions"] if s["tool_calls"])
    page.page.fill("#session-search", with_tool["session_id"])
    visible = page.page.eval_on_selector_all("[data-table='sessions'] tbody tr:not([hidden])", "trs => trs.length")
    assert visible == 1
    link = page.page.locator(f"[data-table='sessions'] tr[data-key='{with_tool['session_id']}'] a")
    before = page.page.get_attribute("main", "data-loaded") or ""
    link.click()
    page.wait_loaded("main", before)
    detail = recorded.cli("show", with_tool["session_id"], "--json")
    turn = detail["turns"][0]
    shown = page.values(f"[data-turn='{turn['turn_id']}']")
    for key in ("queue_wait_ms", "wall_ms", "model_ms", "tools_ms", "overlap_ms", "other_ms"):
        assert shown[f"waterfall.{key}"] == turn["waterfall"][key], key
    bars = page.page.eval_on_selector_all(f"[data-turn='{turn['turn_id']}'] .wf-bar", "els => els.map(e => e.className)")
    assert sum("model" in b for b in bars) == len(turn["api_calls"]) and sum("tool" in b for b in bars) == len(turn["tool_calls"])
    assert page.values("main")["session.outcome"] == detail["session"]["outcome"]
    assert "none: this is a root session" in page.page.inner_text("main")
    page.shot(shots, "session")


def test_pruned_sessions_say_pruned_not_unknown(recorded: Recorded, pages: Any, tmp_path: Path) -> None:
    """After ``hermetry prune`` the sessions' row totals are unknown because their rows were
    deleted: the list and the session's Totals say "pruned" (and why), never 0 or "not captured"."""
    from hermetry.model.units import HOUR_MS
    from hermetry.stores import rollups
    from hermetry.stores.sqlite import connect, migrate

    db = tmp_path / "pruned.db"
    with sqlite3.connect(recorded.db) as src, sqlite3.connect(db) as dst:  # the WAL's rows too
        src.backup(dst)
    conn = connect(db)
    migrate(conn)
    calls = conn.execute("SELECT COUNT(*) FROM api_calls").fetchone()[0]
    # a boundary one whole hour after now: every recorded session started before it
    done = rollups.prune(conn, HOUR_MS, now_ms=time.time() * 1000 + 2 * HOUR_MS)
    conn.close()
    assert calls and done["rows"]["api_calls"] == calls  # every row went
    listed = Recorded(db, recorded.env, recorded.since, recorded.until, recorded.served_usage).cli(
        "sessions", "--json", "--since", recorded.since, "--until", recorded.until, "--limit", "50")["sessions"]
    assert listed and all(s["pruned"] is True and s["turns"] is None for s in listed)
    with DashboardServer(db) as srv:
        page = pages(1280)
        page.open(f"{srv.url}#/sessions?{window(recorded)}")
        rows = page.row_values("sessions")
        assert set(rows) == {s["session_id"] for s in listed}
        assert all(r["turns"] is None and r["api_calls"] is None for r in rows.values())
        cells = page.page.eval_on_selector_all("[data-table='sessions'] [data-metric='turns']",
                                               "els => els.map(e => [e.textContent, e.title])")
        assert cells and all(text == "pruned" and "hermetry prune" in title for text, title in cells)
        page.open(f"{srv.url}#/session?{window(recorded, id=listed[0]['session_id'])}")
        totals = page.page.eval_on_selector_all("[data-table='totals'] [data-metric='totals.api_calls']",
                                                "els => els.map(e => e.textContent)")
        assert totals == ["pruned"]


def test_compare_marks_what_compare_json_says(recorded: Recorded, dashboard: DashboardServer, pages: Any,
                                              shots: Path) -> None:
    page = pages()
    a_since = "2020-01-01T00:00:00Z"
    page.open(f"{dashboard.url}#/compare?{window(recorded, a_since=a_since, a_until=recorded.since)}")
    expected = recorded.cli("compare", "--json", "--a-since", a_since, "--a-until", recorded.since,
                            "--b-since", recorded.since, "--b-until", recorded.until)
    verdicts = dict(page.page.eval_on_selector_all("[data-table='compare'] tr[data-key]",
                                                   "trs => trs.map(tr => [tr.dataset.key, tr.querySelector('[data-verdict]').dataset.verdict])"))
    assert verdicts == {m["metric"]: m["verdict"] for m in expected["metrics"]}
    rows = page.row_values("compare")
    for m in expected["metrics"]:
        assert rows[m["metric"]]["baseline"] == m["baseline"] and rows[m["metric"]]["current"] == m["current"]
    summary = page.page.inner_text("main [data-summary]")
    if expected["regressions"]:
        assert summary.startswith("Significant regressions")
    elif all(m["verdict"] == "insufficient data" for m in expected["metrics"]):
        assert summary.startswith("Not enough data to tell")  # never "no regression" when nothing was tested
    else:
        assert summary.startswith("No significant regression")
    sides = page.row_values("compare-windows")
    for path in ("turns.count", "turn_wall_ms.p95", "api_latency_ms.p95", "cost.known_usd"):
        assert sides[path]["baseline." + path] == get(expected["baseline"], path), path
        assert sides[path]["current." + path] == get(expected["current"], path), path
    page.shot(shots, "compare")


def contrast(page: Any, selector: str) -> float:
    """WCAG contrast ratio of an element's text against the first opaque background behind it."""
    return float(page.evaluate("""(sel) => {
      const el = document.querySelector(sel);
      const rgb = s => s.match(/[\\d.]+/g).map(Number);
      const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                         return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      let bg = null, node = el;
      while (node && node.nodeType === 1) { const c = rgb(getComputedStyle(node).backgroundColor); if (c.length < 4 || c[3] > 0) { bg = c; break; } node = node.parentElement; }
      bg = bg || [255, 255, 255];
      const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg);
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    }""", selector))


def test_keyboard_contrast_and_no_network(recorded: Recorded, dashboard: DashboardServer, pages: Any) -> None:
    page = pages(390)
    page.open(f"{dashboard.url}#/overview?{window(recorded)}")
    p = page.page
    p.keyboard.press("Tab")
    assert p.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(12):  # Tab through the navigation to "Tools" and open it with Enter
        p.keyboard.press("Tab")
        if p.evaluate("document.activeElement.dataset.view") == "tools":
            break
    assert p.evaluate("document.activeElement.dataset.view") == "tools"
    before = p.get_attribute("main", "data-loaded") or ""
    p.keyboard.press("Enter")
    page.wait_loaded("main", before)
    assert p.get_attribute("main", "data-view") == "tools"
    assert p.get_attribute("nav a[data-view='tools']", "aria-current") == "page"
    for selector in ("main p.coverage", ".panel h2", "nav a[data-view='overview']", "nav a[aria-current]",
                     "table.data thead th", "table.data tbody td", ".controls label", ".status"):
        assert contrast(p, selector) >= 4.5, selector
    assert page.outside == []


def test_live_refresh_while_hermes_runs(tmp_path: Path, pages: Any) -> None:
    """An empty history, then a real hermes run: the open page shows it without a reload."""
    db = tmp_path / "live" / "telemetry.db"
    with ScriptedServer([ScriptedReply(content="Live.", usage=PLAIN)]) as srv, \
            DashboardServer(db, refresh_s=0.3) as dash:
        page = pages()
        page.open(f"{dash.url}#/overview?days=1")
        assert page.values("main .cards")["turns.count"] == 0
        assert not db.exists()  # the dashboard never creates the telemetry file
        loaded = page.page.get_attribute("main", "data-loaded")
        home = HermesHome(tmp_path / "home", srv.base_url)
        result = home.oneshot("hello", env=home.env(HERMETRY_DB=str(db)))
        assert result.returncode == 0, result.stderr[-2000:]
        page.page.wait_for_function(
            "() => { const e = document.querySelector(\"main .cards [data-metric='turns.count']\"); return e && e.dataset.value === '1' }",
            timeout=30_000)
        assert page.page.get_attribute("main", "data-loaded") != loaded
        assert page.values("main .cards")["api_calls.tokens.total_tokens"] == PLAIN.prompt_tokens + PLAIN.completion_tokens


# ---------------------------------------------------------------------------------------------
# The Telemetry tab inside a real `hermes dashboard`
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hermes_dashboard(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hermes-dashboard")
    home = HermesHome(root / "home", "http://127.0.0.1:9/v1")  # plugins.enabled: [hermetry]
    install_hermes_tab(home.root)
    port = free_port()
    env = home.env(HERMETRY_DB=str(recorded.db))
    log = open(root / "dashboard.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([hermes_executable(), "dashboard", "--port", str(port), "--no-open", "--skip-build"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=home.root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        import urllib.request

        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"hermes dashboard exited:\n{(root / 'dashboard.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/api/dashboard/plugins", timeout=2) as resp:
                    plugins = json.loads(resp.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError((root / "dashboard.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        assert any(p["name"] == "hermetry" and p["has_api"] for p in plugins), plugins
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_telemetry_tab_in_hermes_dashboard(recorded: Recorded, hermes_dashboard: str, pages: Any, shots: Path,
                                           width: int) -> None:
    page = pages(width)
    page.open(f"{hermes_dashboard}/telemetry#/overview?{window(recorded)}", root="#hermetry-tab")
    expected = recorded.insights("--by", "day", "--by", "source", "--by", "model")
    shown = page.values("#hermetry-tab main .cards")
    for metric in ("turns.count", "turns.wall_ms.p95", "api_calls.latency_ms.p95", "api_calls.ttft_ms.p95",
                   "api_calls.tokens.total_tokens", "api_calls.cost.known_usd", "tool_calls.count", "sessions.count"):
        assert shown[metric] == get(expected, metric), metric
    assert shown["api_calls.tokens.total_tokens"] == recorded.tokens()
    page.shot(shots, "hermes-tab-overview")
    page.open(f"#/tools?{window(recorded)}", root="#hermetry-tab")
    rows = page.row_values("tools")
    assert {k: v["calls"] for k, v in rows.items()} == {t["tool_name"]: t["calls"] for t in recorded.insights()["tools"]}
    page.open(f"#/overview?{window(recorded, model='scripted-beta')}", root="#hermetry-tab")
    assert page.values("#hermetry-tab main .cards")["api_calls.tokens.total_tokens"] == recorded.tokens("scripted-beta")
    page.shot(shots, "hermes-tab-filtered")
