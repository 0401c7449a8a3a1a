"""The dashboard's JSON endpoints: each one a thin view over one analytics call.

Both servers use this module: ``hermetry dashboard`` (the standard library's HTTP server,
``server.py``) and the Telemetry tab inside ``hermes dashboard`` (a FastAPI router, see
``hermes_tab.py``). A request is ``(endpoint, query parameters)``; the answer is the library's
result as it is (docs/json.md), so the browser shows what ``hermetry insights --json`` prints.

==================  ==========================================================  ============================
endpoint            library call                                                schema
==================  ==========================================================  ============================
``insights``        ``analytics.report.insights(db, Query)``                    ``hermetry.insights.v1``
``compare``         ``analytics.compare.compare(db, baseline, current)``        ``hermetry.compare.v1``
``sessions``        ``analytics.sessions.list_sessions(db, since, until, …)``   ``hermetry.sessions.v1``
``session``         ``analytics.sessions.session_detail(db, id)``               ``hermetry.session.v1``
``tool-daily``      ``analytics.series.tool_daily(db, Query)``                  ``hermetry.tool_daily.v1``
``version``         a stat of the telemetry file (for live refresh)             ``hermetry.dashboard_version.v1``
==================  ==========================================================  ============================

Parameters: the window is ``days`` (back from now; default 7) or ``since``/``until`` (ISO
date/time, UTC unless a zone is given); filters use the report's names (``source``, ``model``,
``provider``, ``session_type``, ``profile``, ``tool``, ``toolset``); ``by`` is a comma-separated
list of breakdowns. ``compare`` takes ``days`` (each window's length) or ``a_since``/``a_until``/
``b_since``/``b_until``, as ``hermetry compare`` does.

Live refresh is cheap by construction: the browser polls ``version`` (two ``stat()`` calls: the
file and its write-ahead log) and re-asks a view only when it changed; answers are cached per
(endpoint, parameters, version), and one analytics call runs at a time, so a dozen open tabs
cost the store one query per change, not one per tab per poll.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VERSION_SCHEMA = "hermetry.dashboard_version.v1"
DAY_MS = 86_400_000
DEFAULT_DAYS = 7.0
MAX_SESSIONS = 500
#: How often the browser asks ``version`` (seconds).
DEFAULT_REFRESH_S = 5.0
#: Relative windows end at the current time rounded up to this step (ms).
NOW_STEP_MS = 10_000

Params = Mapping[str, str]


class ApiError(Exception):
    """A request that cannot be answered: ``status`` (400 bad input, 404 unknown) and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _time(value: str, name: str) -> float:
    text = value.strip()
    if len(text) > 6 and text[-6] == " " and text[-3] == ":":  # "+00:00" typed into a URL arrives as " 00:00"
        text = text[:-6] + "+" + text[-5:]
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(400, f"{name}: not an ISO date/time: {value!r} (e.g. 2025-01-31 or 2025-01-31T14:00)") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000


def _number(params: Params, name: str, default: float, *, low: float, high: float) -> float:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ApiError(400, f"{name}: not a number: {raw!r}") from exc
    if not low <= value <= high:
        raise ApiError(400, f"{name}: must be between {low:g} and {high:g}")
    return value


def window(params: Params, now_ms: float | None = None) -> tuple[float, float]:
    """``since``/``until`` (either one; the other from ``days``), else the last ``days`` days."""
    now = time.time() * 1000 if now_ms is None else now_ms
    days = _number(params, "days", DEFAULT_DAYS, low=1 / 1440, high=36_600)
    until = _time(params["until"], "until") if params.get("until") else now
    since = _time(params["since"], "since") if params.get("since") else until - days * DAY_MS
    if not until > since:
        raise ApiError(400, "the window is empty: since must be before until")
    return since, until


def filters(params: Params) -> dict[str, str]:
    from hermetry.analytics.report import FILTERS

    return {k: params[k] for k in FILTERS if params.get(k)}


def query(params: Params, *, group_by: tuple[str, ...] = (), now_ms: float | None = None) -> Any:
    from hermetry.analytics.report import Query

    since, until = window(params, now_ms)
    by = tuple(d for d in params["by"].split(",") if d) if "by" in params else group_by  # by= : none
    q = Query(since_ms=since, until_ms=until, filters=filters(params), group_by=by)
    try:
        q.check()
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return q


def compare_queries(params: Params, now_ms: float | None = None) -> tuple[Any, Any]:
    """Baseline (a) and current (b) windows: by default the last ``days`` and the ``days`` before."""
    from hermetry.analytics.report import Query

    now = time.time() * 1000 if now_ms is None else now_ms
    days = _number(params, "days", DEFAULT_DAYS, low=1 / 1440, high=36_600)
    # the current window is b_since/b_until, else the page's since/until, else the last `days`
    until = params.get("b_until") or params.get("until")
    since = params.get("b_since") or params.get("since")
    b_until = _time(until, "until") if until else now
    b_since = _time(since, "since") if since else b_until - days * DAY_MS
    a_until = _time(params["a_until"], "a_until") if params.get("a_until") else b_since
    a_since = _time(params["a_since"], "a_since") if params.get("a_since") else a_until - days * DAY_MS
    out = (Query(a_since, a_until, filters(params), ()), Query(b_since, b_until, filters(params), ()))
    try:
        for q in out:
            q.check()
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return out


def data_version(db: Path) -> str:
    """Changes whenever the telemetry file (or its write-ahead log) is written."""
    parts = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = os.stat(path)
        except OSError:
            parts.append("-")
            continue
        # an empty log (a reader created it, or a checkpoint truncated it) holds no data
        parts.append(f"{st.st_mtime_ns:x}.{st.st_size:x}" if st.st_size or path == db else "-")
    return "/".join(parts)


class DashboardApi:
    """Answers the dashboard's requests for one telemetry file (see the module docstring)."""

    def __init__(self, db: str | Path, *, refresh_s: float = DEFAULT_REFRESH_S, cache_entries: int = 64,
                 clock: Callable[[], float] | None = None) -> None:
        self.db = Path(db)
        self.refresh_s = refresh_s
        self._cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._cache_entries = cache_entries
        self._cache_lock = threading.Lock()
        #: one analytics call at a time: a 1M-call report holds hundreds of MB while it runs
        self._work_lock = threading.Lock()
        self._clock = clock
        self.calls = 0  # analytics calls actually run (not served from the cache)

    def _now_ms(self) -> float:
        """"Now" for relative windows, rounded *up* to ``NOW_STEP_MS``: the last 7 days asked
        twice within 10 s are the same window (one cached answer), and nothing recorded
        before the request falls outside it."""
        now = self._clock() if self._clock is not None else time.time() * 1000
        return float(math.ceil(now / NOW_STEP_MS) * NOW_STEP_MS)

    def version(self) -> dict[str, Any]:
        return {"schema": VERSION_SCHEMA, "version": data_version(self.db), "db": str(self.db),
                "exists": self.db.exists(), "refresh_s": self.refresh_s}

    def handle(self, endpoint: str, params: Params) -> dict[str, Any]:
        """The JSON answer for ``endpoint`` (raises :class:`ApiError`)."""
        endpoint = endpoint.strip("/")
        if endpoint == "version":
            return self.version()
        handlers: dict[str, Callable[[Params], tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]]] = {
            "insights": self._insights, "compare": self._compare, "sessions": self._sessions,
            "session": self._session, "tool-daily": self._tool_daily,
        }
        handler = handlers.get(endpoint)
        if handler is None:
            raise ApiError(404, f"no endpoint {endpoint!r}")
        key, run = handler(params)
        return self._cached((endpoint, *key), run)

    def _cached(self, key: tuple[Any, ...], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        full = (*key, data_version(self.db))
        with self._cache_lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]
        with self._work_lock:
            with self._cache_lock:  # another request may have answered it meanwhile
                if full in self._cache:
                    return self._cache[full]
            try:
                result = run()
            except sqlite3.DatabaseError as exc:
                raise ApiError(500, f"cannot read the telemetry file {self.db}: {exc}") from exc
            self.calls += 1
        with self._cache_lock:
            self._cache[full] = result
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
        return result

    def _insights(self, params: Params) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
        from hermetry.analytics.report import insights

        q = query(params, group_by=("source", "model"), now_ms=self._now_ms())
        return _key(q), lambda: insights(self.db, q)

    def _tool_daily(self, params: Params) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
        from hermetry.analytics.series import tool_daily

        q = query(params, now_ms=self._now_ms())
        return _key(q), lambda: tool_daily(self.db, q)

    def _compare(self, params: Params) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
        from hermetry.analytics.compare import compare

        a, b = compare_queries(params, now_ms=self._now_ms())
        return (*_key(a), *_key(b)), lambda: compare(self.db, a, b)

    def _sessions(self, params: Params) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
        from hermetry.analytics.sessions import list_sessions

        since, until = window(params, self._now_ms())
        limit = int(_number(params, "limit", 50, low=1, high=MAX_SESSIONS))
        roll_up = params.get("flat") not in ("1", "true", "yes")
        return ((round(since), round(until), limit, roll_up),
                lambda: list_sessions(self.db, since, until, limit=limit, roll_up=roll_up))

    def _session(self, params: Params) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
        from hermetry.analytics.sessions import SessionNotFound, session_detail

        session_id = (params.get("id") or "").strip()
        if not session_id:
            raise ApiError(400, "id: a session id (or a unique prefix) is required")

        def run() -> dict[str, Any]:
            try:
                return session_detail(self.db, session_id)
            except SessionNotFound as exc:
                raise ApiError(404, str(exc.args[0])) from exc

        return (session_id,), run


def _key(q: Any) -> tuple[Any, ...]:
    return (round(q.since_ms), round(q.until_ms), tuple(sorted(q.filters.items())), q.group_by)
