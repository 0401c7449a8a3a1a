"""The dashboard's server and JSON endpoints, without a browser.

Figures are checked against the synthetic history's injected events (the ground truth) or
against the library call the endpoint is documented to wrap; the server is a real
``DashboardServer`` on loopback, asked over real HTTP.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from hermetry.analytics.report import DAY_MS, Query, insights
from hermetry.analytics.series import hourly, tool_daily
from hermetry.model.events import SessionStarted, ToolCall, TurnEnded, TurnStarted
from hermetry.surfaces.dashboard import api as api_module
from hermetry.surfaces.dashboard.api import ApiError, DashboardApi
from hermetry.surfaces.dashboard.hermes_tab import MARKER, install_hermes_tab, remove_hermes_tab
from hermetry.surfaces.dashboard.server import DashboardServer, static_dir
from hermetry.testing.history import NOW_MS, History, synthetic_history

WHOLE = (NOW_MS - 14 * DAY_MS, NOW_MS)


@pytest.fixture(autouse=True)
def _no_rollup_rebuilds_of_the_shared_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's history is shared: its dashboards must not write to it (rebuilding rollups),
    so no test depends on what another's left; the test of the rebuilds sets its own period."""
    monkeypatch.setattr(api_module, "ROLLUP_REFRESH_S", math.inf)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, Path]:
    history = synthetic_history(days=14, sessions_per_day=6)
    db = history.record(tmp_path_factory.mktemp("dash") / "telemetry.db")
    return history, db


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
            return resp.status, resp.headers, json.loads(body) if resp.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"null")


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


# ---------------------------------------------------------------------------------------------
# analytics.series.tool_daily — against the injected tool calls
# ---------------------------------------------------------------------------------------------

def day_of(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


@pytest.mark.parametrize("filters", [{}, {"source": "cli"}, {"tool": "terminal"}, {"model": "m-beta"}],
                         ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "all")
def test_tool_daily_counts_every_injected_call(recorded: tuple[History, Path], filters: dict[str, str]) -> None:
    history, db = recorded
    since, until = NOW_MS - 9.5 * DAY_MS, NOW_MS - 1.25 * DAY_MS
    result = tool_daily(db, Query(since_ms=since, until_ms=until, filters=filters, group_by=()))
    sessions = history.sessions()

    def keep(c: Any) -> bool:
        s = sessions[c.session_id]
        return since <= c.started_at_ms < until and all(
            (c.tool_name if k == "tool" else getattr(s, k)) == v for k, v in filters.items())

    calls: Counter[tuple[str, str]] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    for c in history.tool_calls():
        if keep(c):
            calls[(c.tool_name, day_of(c.started_at_ms))] += 1
            failures[(c.tool_name, day_of(c.started_at_ms))] += c.status != "ok"
    first, last = int(since // DAY_MS), int((until - 1) // DAY_MS)
    assert result["days"] == [day_of(d * DAY_MS) for d in range(first, last + 1)]
    assert {t["tool_name"] for t in result["tools"]} == {name for name, _ in calls}
    for t in result["tools"]:
        assert [d["day"] for d in t["days"]] == result["days"]
        for d in t["days"]:
            key = (t["tool_name"], d["day"])
            assert (d["calls"], d["failures"]) == (calls[key], failures[key]), key
            if calls[key]:
                assert d["failure_rate"]["value"] == pytest.approx(failures[key] / calls[key])
            else:
                assert d["failure_rate"]["value"] is None
        assert t["calls"] == sum(n for (name, _), n in calls.items() if name == t["tool_name"])
    assert [t["calls"] for t in result["tools"]] == sorted((t["calls"] for t in result["tools"]), reverse=True)


def _record(db: Path, events: list[Any]) -> Path:
    from hermetry.recorder.recorder import Recorder
    from hermetry.stores.sqlite import SQLiteStore

    recorder = Recorder(lambda: SQLiteStore(db), register_atexit=False, flush_interval_s=0.01)
    for event in events:
        recorder.record(event)
    recorder.close(timeout=30)
    assert not recorder.stats().dropped
    return db


def test_tool_daily_unknown_status_is_neither_ok_nor_failed(tmp_path: Path) -> None:
    """Live statuses: ``unknown`` is left out of the rate (coverage), ``blocked`` and
    ``unknown_tool`` are failures (docs/telemetry-model.md), as in insights."""
    day0 = (int(NOW_MS // DAY_MS) - 3) * DAY_MS
    statuses = {0: ["ok", "ok", "error", "unknown", "unknown"],  # 1 failed of 3 known, 2 unknown
                1: ["unknown", "unknown"],  # no known status: no rate, not 100 %
                2: ["blocked", "unknown_tool", "ok", "ok"]}  # 2 failed of 4
    events: list[Any] = [SessionStarted("s1", day0 + 1000, source="cli")]
    for d, day_statuses in statuses.items():
        for i, status in enumerate(day_statuses):
            events.append(ToolCall(f"c{d}-{i}", "s1", None, "terminal", day0 + d * DAY_MS + 3_600_000 + i, 10.0, status))
    db = _record(tmp_path / "telemetry.db", events)
    query = Query(since_ms=day0, until_ms=day0 + 3 * DAY_MS, filters={}, group_by=())
    (tool,) = tool_daily(db, query)["tools"]
    got = [(d["calls"], d["failures"], d["status_coverage"], d["failure_rate"]["value"]) for d in tool["days"]]
    assert got == [(5, 1, {"captured": 3, "of": 5}, pytest.approx(1 / 3)),
                   (2, 0, {"captured": 0, "of": 2}, None),
                   (4, 2, {"captured": 4, "of": 4}, pytest.approx(2 / 4))]
    assert (tool["calls"], tool["failures"], tool["status_coverage"]) == (11, 3, {"captured": 7, "of": 11})
    assert tool["by_status"] == {"blocked": 1, "error": 1, "ok": 4, "unknown": 4, "unknown_tool": 1}
    (report,) = insights(db, query)["tools"]  # the same definition as the report's
    assert (report["calls"], report["failures"], report["failure_rate"]["value"]) == (11, 3, pytest.approx(3 / 7))


def test_tool_daily_of_an_imported_history_is_not_all_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Imported tool calls (state.db, written by Hermes' own SessionDB) have no status: the
    heatmap shows them as unknown, never as 100 % failed."""
    from hermetry.sources.backfill import import_state_db

    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hermes"))
    (tmp_path / "hermes").mkdir()
    from hermes_state import SessionDB

    state = SessionDB(tmp_path / "hermes" / "state.db")
    t0 = (int(NOW_MS // DAY_MS) - 1) * DAY_MS / 1000 + 3600  # seconds, yesterday 01:00 UTC
    state.create_session("imp-1", "cli", model="m")
    state.append_message("imp-1", "user", "hi", timestamp=t0)
    calls = [{"id": f"tc{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}
             for i, name in enumerate(["terminal", "terminal", "terminal", "read_file"])]
    state.append_message("imp-1", "assistant", None, tool_calls=calls, timestamp=t0 + 1)
    for i, c in enumerate(calls):
        state.append_message("imp-1", "tool", "out", tool_call_id=c["id"], tool_name=c["function"]["name"], timestamp=t0 + 2 + i)
    state.append_message("imp-1", "assistant", "done", timestamp=t0 + 10)
    state.close()
    db = tmp_path / "telemetry.db"
    import_state_db(tmp_path / "hermes" / "state.db", db)
    query = Query(since_ms=NOW_MS - 3 * DAY_MS, until_ms=NOW_MS + 1, filters={}, group_by=())
    tools = {t["tool_name"]: t for t in tool_daily(db, query)["tools"]}
    assert {n: (t["calls"], t["failures"], t["failure_rate"]["value"], t["status_coverage"]) for n, t in tools.items()} == {
        "terminal": (3, 0, None, {"captured": 0, "of": 3}), "read_file": (1, 0, None, {"captured": 0, "of": 1})}
    for t in tools.values():
        assert all(d["failures"] == 0 and d["failure_rate"]["value"] is None for d in t["days"])
    report = {t["tool_name"]: t for t in insights(db, query)["tools"]}
    assert {n: (t["calls"], t["failures"], t["failure_rate"]["value"]) for n, t in report.items()} == {
        "terminal": (3, 0, None), "read_file": (1, 0, None)}


def test_hourly_gives_each_hour_the_report_of_that_hour(recorded: tuple[History, Path]) -> None:
    """Counts and percentiles per hour, against the injected turns and calls of each hour."""
    from hermetry.analytics.stats import percentile

    history, db = recorded
    since, until = NOW_MS - 2.2 * DAY_MS, NOW_MS - 0.5 * DAY_MS - 1_800_000  # clipped first and last hours
    result = hourly(db, Query(since_ms=since, until_ms=until, filters={"model": "m-alpha"}, group_by=()))
    hours = result["hours"]
    assert hours[0]["since_ms"] == since and hours[-1]["until_ms"] == until
    assert all(a["until_ms"] == b["since_ms"] for a, b in zip(hours, hours[1:], strict=False))
    calls = [c for c in history.api_calls() if since <= c.started_at_ms < until and c.model == "m-alpha"]
    assert sum(x["api_calls"]["count"] for x in hours) == len(calls) > 0
    for x in hours:
        mine = sorted(c.latency_ms for c in calls if x["since_ms"] <= c.started_at_ms < x["until_ms"]
                      and c.latency_ms is not None)
        assert x["api_calls"]["count"] == len([c for c in calls if x["since_ms"] <= c.started_at_ms < x["until_ms"]])
        assert x["api_calls"]["latency_ms"]["p95"] == (pytest.approx(percentile(mine, 95)) if mine else None)
        ok = [c for c in calls if x["since_ms"] <= c.started_at_ms < x["until_ms"] and c.status == "ok"
              and c.input_tokens is not None]
        if ok and x["api_calls"]["tokens"]["total_tokens"] is not None:
            assert x["api_calls"]["tokens"]["total_tokens"] == sum(
                c.input_tokens + c.cache_read_tokens + c.cache_write_tokens + c.output_tokens for c in ok)
    turns = [t for t in history.turns() if since <= t.started_at_ms < until
             and history.sessions()[t.session_id].model == "m-alpha"]
    assert sum(x["turns"]["count"] for x in hours) == len(turns)
    with pytest.raises(ValueError, match="at most 3 days"):
        hourly(db, Query(since_ms=NOW_MS - 4 * DAY_MS, until_ms=NOW_MS, group_by=()))


def test_tool_daily_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    result = tool_daily(tmp_path / "none.db", Query(since_ms=WHOLE[0], until_ms=WHOLE[1], group_by=()))
    assert result["tools"] == [] and len(result["days"]) == 15
    assert not (tmp_path / "none.db").exists()


# ---------------------------------------------------------------------------------------------
# DashboardApi — thin views over the library calls
# ---------------------------------------------------------------------------------------------

def test_insights_endpoint_is_the_library_call(recorded: tuple[History, Path]) -> None:
    _, db = recorded
    api = DashboardApi(db)
    params = {"since": iso(WHOLE[0]), "until": iso(WHOLE[1]), "by": "day,model", "source": "telegram"}
    expected = insights(db, Query(WHOLE[0], WHOLE[1], {"source": "telegram"}, ("day", "model")))
    assert api.handle("insights", params) == expected
    assert api.handle("insights", {**params, "by": ""})["breakdowns"] == {}


def test_answers_are_kept_and_recomputed_in_the_background_after_a_write(recorded: tuple[History, Path],
                                                                        tmp_path: Path) -> None:
    _, source = recorded
    db = tmp_path / "copy.db"
    db.write_bytes(source.read_bytes())
    # (no rollup rebuilds here: a rebuild writes the file, which asks for one more recompute)
    api = DashboardApi(db, refresh_s=0.05, clock=lambda: NOW_MS, rollups_every_s=math.inf)
    first = api.handle("insights", {"days": "7"})
    assert api.handle("insights", {"days": "7"}) is first and api.calls == 1  # unchanged file: the kept answer
    version = api.version()["version"]
    t = NOW_MS - 60_000
    History(NOW_MS, [SessionStarted(session_id="new-session", started_at_ms=t, source="cli", session_type="oneshot"),
                     TurnStarted("new-turn-1", "new-session", t + 10),
                     TurnEnded("new-turn-1", "new-session", t + 900, "completed", None),
                     TurnStarted("new-turn-2", "new-session", t + 1000)]).record(db)
    assert api.version()["version"] != version
    assert api.handle("insights", {"days": "7"}) is first  # served at once, while a new answer is computed
    assert api.wait_idle(30)
    assert api.calls == 2
    again = api.handle("insights", {"days": "7"})
    assert again["coverage"]["turns"] == first["coverage"]["turns"] + 2
    assert api.handle("insights", {"days": "7"}) is again and api.calls == 2
    assert api.version()["computing"] == 0


def test_an_open_dashboard_keeps_the_rollups_built(recorded: tuple[History, Path], tmp_path: Path) -> None:
    """Hours written since the last rebuild are dirty (read raw, slowly, on a big history): an open
    dashboard rebuilds them in a thread of its own, and what it shows does not change."""
    from hermetry.stores.rollups import rebuild

    _, source = recorded
    db = tmp_path / "copy.db"
    db.write_bytes(source.read_bytes())

    def dirty() -> int:
        conn = sqlite3.connect(db)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0])
        finally:
            conn.close()

    conn = sqlite3.connect(db)  # every hour with calls dirty, whatever other tests' dashboards did
    with conn:
        conn.execute("INSERT INTO rollup_dirty (hour) SELECT DISTINCT CAST(started_at_ms / 3600000 AS INTEGER) "
                     "FROM api_calls WHERE started_at_ms IS NOT NULL ON CONFLICT (hour) DO NOTHING")
    conn.close()
    assert dirty() > 0
    api = DashboardApi(db, clock=lambda: NOW_MS, rollups_every_s=0)
    before = api.handle("insights", {"days": "7"})
    thread = api._rollups_thread
    assert thread is not None
    thread.join(30)
    conn = sqlite3.connect(db)
    try:
        left = rebuild(conn, budget_s=0)  # what a rebuild would still find (closed hours only)
    finally:
        conn.close()
    assert left.hours == 0
    assert DashboardApi(db, clock=lambda: NOW_MS, rollups_every_s=math.inf).handle("insights", {"days": "7"}) == before


def test_the_server_prepares_the_first_view_while_it_starts(recorded: tuple[History, Path]) -> None:
    _, db = recorded
    with DashboardServer(db) as srv:
        assert srv.api.wait_idle(60) and srv.api.calls == 1
        status, _, data = get(srv.url + "api/insights?by=day,source,model")
        assert status == 200 and srv.api.calls == 1  # the page's first question was already answered
        assert data["group_by"] == ["day", "source", "model"] and data["window"]["days"] == 7


@pytest.mark.parametrize(("endpoint", "params", "status", "message"), [
    ("insights", {"days": "x"}, 400, "days: not a number"),
    ("insights", {"since": "yesterday"}, 400, "since: not an ISO date/time"),
    ("insights", {"since": "2025-01-02", "until": "2025-01-01"}, 400, "the window is empty"),
    ("insights", {"by": "colour"}, 400, "unknown breakdown 'colour'"),
    ("sessions", {"limit": "100000"}, 400, "limit: must be between"),
    ("session", {}, 400, "id: a session id"),
    ("session", {"id": "no-such-session"}, 404, "no session 'no-such-session'"),
    ("nothing", {}, 404, "no endpoint 'nothing'"),
])
def test_bad_requests_say_what_is_wrong(recorded: tuple[History, Path], endpoint: str, params: dict[str, str],
                                        status: int, message: str) -> None:
    _, db = recorded
    with pytest.raises(ApiError) as info:
        DashboardApi(db).handle(endpoint, params)
    assert info.value.status == status and message in info.value.message


def test_compare_defaults_to_the_window_before(recorded: tuple[History, Path]) -> None:
    from hermetry.analytics.compare import compare

    _, db = recorded
    result = DashboardApi(db).handle("compare", {"since": iso(NOW_MS - 7 * DAY_MS), "until": iso(NOW_MS)})
    expected = compare(db, Query(NOW_MS - 14 * DAY_MS, NOW_MS - 7 * DAY_MS, {}, ()), Query(NOW_MS - 7 * DAY_MS, NOW_MS, {}, ()))
    assert result == expected


def test_a_corrupt_file_is_one_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "telemetry.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ApiError) as info:
        DashboardApi(db).handle("insights", {"days": "7"})
    assert info.value.status == 500 and str(db) in info.value.message


# ---------------------------------------------------------------------------------------------
# The server: loopback, token, headers, static files
# ---------------------------------------------------------------------------------------------

def test_loopback_server_serves_the_page_and_json(recorded: tuple[History, Path]) -> None:
    _, db = recorded
    with DashboardServer(db) as srv:
        assert srv.token is None and srv.url == f"http://127.0.0.1:{srv.port}/"
        status, headers, body = get(srv.url)
        assert status == 200 and b"app.js" in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        status, headers, data = get(srv.url + "api/insights?" + urlencode({"since": iso(WHOLE[0]), "until": iso(WHOLE[1])}))
        assert status == 200 and data == json.loads(json.dumps(insights(db, Query(WHOLE[0], WHOLE[1]))))
        assert headers["Cache-Control"] == "no-store"
        status, _, data = get(srv.url + "api/insights?by=colour")
        assert status == 400 and "unknown breakdown" in data["error"]
        status, _, data = get(srv.url + "../../etc/passwd")
        assert status == 404
        status, _, data = get(srv.url + "api/version", headers={"Host": "attacker.example:80"})
        assert status == 403 and "loopback" in data["error"]


def test_non_loopback_bind_requires_the_printed_token(recorded: tuple[History, Path]) -> None:
    _, db = recorded
    with DashboardServer(db, host="0.0.0.0") as srv:
        assert srv.token and len(srv.token) >= 24
        base = f"http://127.0.0.1:{srv.port}/"
        for path in ("", "api/version", "api/insights?days=7", "app.js"):
            status, _, data = get(base + path)
            assert status == 403 and "token is required" in data["error"], path
        status, _, _ = get(base + "api/version?token=wrong")
        assert status == 403
        status, headers, _ = get(srv.url)  # the printed URL carries the token; the page keeps it in a cookie
        assert status == 200
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        status, _, data = get(base + "api/version", headers={"Cookie": cookie})
        assert status == 200 and data["schema"] == "hermetry.dashboard_version.v1"


def test_cli_refuses_a_bad_port_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.surfaces.cli import main

    assert main(["--db", str(tmp_path / "t.db"), "dashboard", "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hermetry: --port 70000") and "Traceback" not in err


def test_the_page_names_no_other_host() -> None:
    """No CDN, no font service, no analytics: every URL in the page's files is relative."""
    for path in static_dir().rglob("*"):
        if path.suffix not in (".js", ".css", ".html"):
            continue
        text = path.read_text(encoding="utf-8")
        if path.parent.name == "vendor":
            # uPlot mentions URLs only in comments and its license header
            text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        urls = re.findall(r"(?:src|href)\s*=\s*[\"'](https?:)?//", text)
        assert not urls, path
        assert not re.search(r"fetch\(\s*[\"']https?://", text), path
    assert (static_dir() / "vendor" / "uPlot.LICENSE").read_text().startswith("The MIT License")


def test_hermes_tab_install_and_remove(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = install_hermes_tab(home)
    assert folder == home / "plugins" / "hermetry" / "dashboard"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["name"] == "hermetry" and manifest["api"] == "plugin_api.py"
    assert manifest["tab"]["path"] == "/telemetry"
    assert not (folder.parent / "plugin.yaml").exists()  # Hermes' agent loader must skip it
    bundle = (folder / "dist" / "index.js").read_text()
    assert "__HERMES_PLUGIN_SDK__" in bundle and "HermetryDashboard" in bundle and "uPlot" in bundle
    assert "router = build_router()" in (folder / "plugin_api.py").read_text()
    assert install_hermes_tab(home) == folder  # refreshing is fine
    assert remove_hermes_tab(home) == folder and not folder.exists() and not folder.parent.exists()
    assert remove_hermes_tab(home) is None
    # a folder hermetry did not write is never touched
    foreign = home / "plugins" / "hermetry" / "dashboard"
    foreign.mkdir(parents=True)
    (foreign / "manifest.json").write_text("{}")
    with pytest.raises(FileExistsError):
        install_hermes_tab(home)
    with pytest.raises(FileExistsError):
        remove_hermes_tab(home)
    assert (foreign / "manifest.json").exists() and not (foreign / MARKER).exists()


def test_hermes_router_answers_like_the_server(recorded: tuple[History, Path]) -> None:
    import fastapi  # Hermes' own dependency (installed with hermes-agent): missing fails, never skips
    from fastapi.testclient import TestClient

    from hermetry.surfaces.dashboard.hermes_router import build_router

    _, db = recorded
    app = fastapi.FastAPI()
    app.include_router(build_router(db), prefix="/api/plugins/hermetry")
    client = TestClient(app)
    params = {"since": iso(WHOLE[0]), "until": iso(WHOLE[1]), "by": "model"}
    response = client.get("/api/plugins/hermetry/insights", params=params)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(DashboardApi(db).handle("insights", params)))
    response = client.get("/api/plugins/hermetry/session", params={"id": "nope"})
    assert response.status_code == 404 and "no session" in response.json()["error"]


def test_files_are_package_data() -> None:
    names = {p.name for p in static_dir().rglob("*")}
    assert {"index.html", "app.js", "app.css", "boot.js", "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"} <= names
    assert os.path.getsize(static_dir() / "vendor" / "uPlot.iife.min.js") > 40_000


def test_docs_name_every_endpoint_and_view() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "dashboard.md").read_text()
    for endpoint in ("insights", "compare", "sessions", "session", "tool-daily", "hourly", "version"):
        assert f"| `{endpoint}` |" in doc, endpoint
    app = (static_dir() / "app.js").read_text()
    for view in ("Overview", "Breakdowns", "Tools", "Sessions", "Compare"):
        assert f"| {view} |" in doc and f'"{view}"' in app, view


def test_a_postgresql_store_is_read_the_same_way(recorded: tuple[History, Path], pg_server: Any) -> None:
    """`hermetry dashboard` reads the store the CLI reads, also a postgresql:// one."""
    from hermetry.recorder.recorder import Recorder
    from hermetry.stores.postgres import PostgresStore

    history, db = recorded
    url = str(pg_server.create_database())
    rec = Recorder(lambda: PostgresStore(url, host="h1"), register_atexit=False, flush_interval_s=0.01, host="h1")
    for e in history.events:
        rec.record(e)
    rec.close(timeout=60)
    api = DashboardApi(url)
    params = {"since": iso(WHOLE[0]), "until": iso(WHOLE[1]), "by": "model"}
    q = Query(WHOLE[0], WHOLE[1], {}, ("model",))
    assert api.handle("insights", params) == insights(url, q)
    daily = api.handle("tool-daily", params)
    assert daily == tool_daily(db, Query(WHOLE[0], WHOLE[1], {}, ()))
    assert api.version()["exists"] is True


def test_the_command_prints_a_token_url_for_a_non_loopback_bind(recorded: tuple[History, Path]) -> None:
    """`hermetry dashboard --host 0.0.0.0`: the real command, its banner, and the token it asks for."""
    import subprocess
    import sys

    _, db = recorded
    proc = subprocess.Popen([sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(db), "dashboard",
                             "--host", "0.0.0.0", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(r"hermetry dashboard: (http://127\.0\.0\.1:(\d+)/\?token=([\w-]{24,}))$", first.strip())
        assert match, first
        assert proc.stdout.readline().startswith(f"reading {db}")
        assert "every request needs the token" in proc.stdout.readline()
        base = f"http://127.0.0.1:{match.group(2)}/"
        assert get(base + "api/version")[0] == 403
        assert get(base + f"api/version?token={match.group(3)}")[0] == 200
        status, _, body = get(match.group(1))
        assert status == 200 and b"app.js" in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_install_and_remove_the_tab_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.surfaces.cli import main

    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "home"))
    assert main(["dashboard", "--install-hermes-tab"]) == 0
    assert "Telemetry tab written to" in capsys.readouterr().out
    assert (tmp_path / "home" / "plugins" / "hermetry" / "dashboard" / "manifest.json").exists()
    assert main(["dashboard", "--remove-hermes-tab"]) == 0
    assert not (tmp_path / "home" / "plugins" / "hermetry").exists()
    assert main(["dashboard", "--remove-hermes-tab"]) == 0
    assert "no Telemetry tab installed" in capsys.readouterr().out


def test_a_port_in_use_is_one_line_and_exit_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from hermetry.surfaces.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--db", str(tmp_path / "t.db"), "dashboard", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hermetry: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1


@pytest.mark.parametrize("value, ci", [("true", True), ("True", True), ("1", True), ("YES", True), ("", False),
                                       ("0", False), ("false", False)])
def test_a_missing_engine_fails_under_ci_and_skips_otherwise(monkeypatch: pytest.MonkeyPatch, value: str,
                                                               ci: bool) -> None:
    """The one helper every engine-backed test (PostgreSQL, Prometheus, Chromium) calls."""
    from conftest import engine_missing

    monkeypatch.setenv("CI", value)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="chromium is not installed"):
        engine_missing("chromium is not installed")
