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
``hourly``          ``analytics.series.hourly(db, Query)`` (≤ 3 days)            ``hermetry.hourly.v1``
``version``         a stat of the telemetry file (for live refresh)             ``hermetry.dashboard_version.v1``
==================  ==========================================================  ============================

Parameters: the window is ``days`` (back from now; default 7) or ``since``/``until`` (ISO
date/time, UTC unless a zone is given); filters use the report's names (``source``, ``model``,
``provider``, ``session_type``, ``profile``, ``tool``, ``toolset``); ``by`` is a comma-separated
list of breakdowns. ``compare`` takes ``days`` (each window's length) or ``a_since``/``a_until``/
``b_since``/``b_until``, as ``hermetry compare`` does.

Live refresh is cheap by construction: the browser polls ``version`` (two ``stat()`` calls: the
file and its write-ahead log) and asks a view again only when it changed. Answers are kept per
(endpoint, parameters); after a change the kept answer is served at once while one new answer
is computed in the background (see :class:`DashboardApi` for the bound on its cost), so a dozen
open tabs cost the store one query per change, not one per tab per poll, and a page never
waits for a report it has already seen.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hermetry.analytics.query import NotAnswerable
from hermetry.model.units import DAY_MS
from hermetry.stores.rollup_refresh import EVERY_S, RollupRefresher
from hermetry.surfaces.dashboard import DEFAULT_REFRESH_S  # noqa: F401 - how often the browser asks ``version``

VERSION_SCHEMA = "hermetry.dashboard_version.v1"
DEFAULT_DAYS = 7.0
MAX_SESSIONS = 500
#: A kept answer over a window relative to now ("the last 7 days") is fresh this long (s).
RELATIVE_FRESH_S = 30.0
#: A kept answer is recomputed no sooner than this many times its last computation's duration.
COST_FACTOR = 4.0
#: How often an open dashboard rebuilds the store's dirty rollup hours (seconds; see ``refresh_rollups``).
ROLLUP_REFRESH_S = EVERY_S
#: The breakdowns of ``insights`` when none are asked for (the CLI's default).
DEFAULT_BY = ("source", "model")
#: What the page asks for first (``#/overview``): the server prepares it while it starts.
FIRST_VIEW = ("insights", {"by": "day,source,model"})

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
    from hermetry.analytics.query import FILTERS

    return {k: params[k] for k in FILTERS if params.get(k)}


def query(params: Params, *, group_by: tuple[str, ...] = (), now_ms: float | None = None) -> Any:
    from hermetry.analytics.query import Query

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
    from hermetry.analytics.query import Query

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


def is_url(db: str | Path) -> bool:
    return isinstance(db, str) and db.lower().startswith(("postgresql://", "postgres://"))


def data_version(db: str | Path, refresh_s: float = DEFAULT_REFRESH_S) -> str:
    """Changes whenever the telemetry file (or its write-ahead log) is written.

    A PostgreSQL store cannot be watched with ``stat()``: it is taken to change every
    ``refresh_s`` (the recompute bound still applies).
    """
    if is_url(db):
        return f"t{int(time.time() // max(refresh_s, 0.1))}"
    db = Path(db)
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


@dataclass
class _Answer:
    result: dict[str, Any]
    version: str  # data_version() when the computation started
    computed_at: float  # time.monotonic()
    cost_s: float


class DashboardApi:
    """Answers the dashboard's requests for one telemetry file (see the module docstring).

    Answers are kept per (endpoint, parameters). A kept answer is served as it is while the
    file is unchanged (relative windows: for up to ``RELATIVE_FRESH_S``); once the file changed,
    the kept answer is served at once and a new one is computed in the background — at most
    one computation at a time, and never sooner than ``COST_FACTOR`` times the last one's
    duration after it, so a busy store is read by the dashboard for at most about
    1 / (1 + COST_FACTOR) of one core. ``version()`` changes when the file or any kept answer
    does, so open pages know when to ask again. Only a question never asked before waits
    for its answer.
    """

    def __init__(self, db: str | Path, *, refresh_s: float = DEFAULT_REFRESH_S, cache_entries: int = 64,
                 clock: Callable[[], float] | None = None, rollups_every_s: float | None = None) -> None:
        self.db: str | Path = db if is_url(db) else Path(db)
        #: seconds between rollup rebuilds (None: :data:`ROLLUP_REFRESH_S`; ``math.inf``: never)
        self.rollups_every_s = rollups_every_s
        self.refresh_s = refresh_s
        self._answers: OrderedDict[tuple[Any, ...], _Answer] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = threading.Lock()
        #: one analytics call at a time: a 1M-call report holds hundreds of MB while it runs
        self._work_lock = threading.Lock()
        self._pending: set[tuple[Any, ...]] = set()
        self._generation = 0
        self._clock = clock
        self.calls = 0  # analytics calls actually run (not served from what was kept)
        self._rollups: RollupRefresher | None = None

    def now_ms(self) -> float:
        return self._clock() if self._clock is not None else time.time() * 1000

    def refresh_rollups(self) -> None:
        """Keep the store's rollups built while the dashboard is open: the throttled background
        refresh every long-lived reader uses (:class:`~hermetry.stores.rollup_refresh.RollupRefresher`,
        at most every :data:`ROLLUP_REFRESH_S`, never on a request's thread). Without it, hours
        written since the last ``hermetry insights``/``rollup`` stay dirty and every view reads them
        raw. Nothing happens on a store this process cannot write."""
        if self._rollups is None:
            every = ROLLUP_REFRESH_S if self.rollups_every_s is None else self.rollups_every_s
            self._rollups = RollupRefresher(self.db, every_s=every, name="hermetry-dashboard-rollups")
        self._rollups.kick()

    @property
    def _rollups_thread(self) -> threading.Thread | None:
        """The last rollup refresh started (tests join it)."""
        return self._rollups.thread if self._rollups is not None else None

    def version(self) -> dict[str, Any]:
        self.refresh_rollups()
        with self._lock:
            generation, pending = self._generation, len(self._pending)
        return {"schema": VERSION_SCHEMA, "version": f"{self._data_version()}#{generation}", "db": self.shown_db(),
                "exists": self.exists(), "refresh_s": self.refresh_s, "computing": pending}

    def _data_version(self) -> str:
        return data_version(self.db, self.refresh_s)

    def exists(self) -> bool:
        return is_url(self.db) or Path(self.db).exists()

    def shown_db(self) -> str:
        """The store, as it may be shown (a URL without its password)."""
        if is_url(self.db):
            from hermetry.stores.postgres import redact_url

            return redact_url(str(self.db))
        return str(self.db)

    def handle(self, endpoint: str, params: Params) -> dict[str, Any]:
        """The JSON answer for ``endpoint`` (raises :class:`ApiError`)."""
        endpoint = endpoint.strip("/")
        if endpoint == "version":
            return self.version()
        handlers: dict[str, Callable[[Params], tuple[bool, Callable[[], dict[str, Any]]]]] = {
            "insights": self._insights, "compare": self._compare, "sessions": self._sessions,
            "session": self._session, "tool-daily": self._tool_daily, "hourly": self._hourly,
        }
        handler = handlers.get(endpoint)
        if handler is None:
            raise ApiError(404, f"no endpoint {endpoint!r}")
        relative, run = handler(params)  # validates the parameters first: bad input is a 400 now
        key = (endpoint, tuple(sorted(params.items())))
        return self._answer(key, run, relative)

    def prepare(self, endpoint: str, params: Params) -> None:
        """Compute an answer in the background now (the default view, while the server starts)."""
        relative, run = {"insights": self._insights}[endpoint](params)
        key = (endpoint, tuple(sorted(params.items())))
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        threading.Thread(target=self._background, args=(key, run), name="hermetry-dashboard-prepare",
                         daemon=True).start()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until no background computation is running (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.01)
        return False

    def _answer(self, key: tuple[Any, ...], run: Callable[[], dict[str, Any]], relative: bool) -> dict[str, Any]:
        version = self._data_version()
        with self._lock:
            kept = self._answers.get(key)
            if kept is not None:
                self._answers.move_to_end(key)
                age = time.monotonic() - kept.computed_at
                if kept.version == version and (not relative or age < RELATIVE_FRESH_S):
                    return kept.result
                if key not in self._pending:
                    self._pending.add(key)
                    wait = max(self.refresh_s, COST_FACTOR * kept.cost_s) - age
                    timer = threading.Timer(max(0.0, wait), self._background, args=(key, run))
                    timer.name, timer.daemon = "hermetry-dashboard-refresh", True
                    timer.start()
                return kept.result
        return self._compute(key, run)

    def _background(self, key: tuple[Any, ...], run: Callable[[], dict[str, Any]]) -> None:
        try:
            self._compute(key, run)
        except Exception:
            pass  # the next request asks again, and gets the error itself
        finally:
            with self._lock:
                self._pending.discard(key)
                self._generation += 1

    def _compute(self, key: tuple[Any, ...], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.refresh_rollups()
        with self._work_lock:
            version = self._data_version()
            with self._lock:  # another request may have answered it meanwhile
                kept = self._answers.get(key)
                if kept is not None and kept.version == version and time.monotonic() - kept.computed_at < 1.0:
                    return kept.result
            t0 = time.monotonic()
            try:
                result = run()
            except sqlite3.DatabaseError as exc:
                raise ApiError(500, f"cannot read the telemetry file {self.shown_db()}: {exc}") from exc
            except NotAnswerable as exc:
                raise ApiError(400, str(exc)) from exc
            done = time.monotonic()
            self.calls += 1
        with self._lock:
            self._answers[key] = _Answer(result, version, done, done - t0)
            self._answers.move_to_end(key)
            while len(self._answers) > self._cache_entries:
                self._answers.popitem(last=False)
        return result

    # Each handler checks its parameters and returns (is the window relative to now, the call).
    def _insights(self, params: Params) -> tuple[bool, Callable[[], dict[str, Any]]]:
        from hermetry.analytics.report import insights

        query(params, group_by=DEFAULT_BY, now_ms=self.now_ms())
        return _relative(params), lambda: insights(self.db, query(params, group_by=DEFAULT_BY, now_ms=self.now_ms()))

    def _tool_daily(self, params: Params) -> tuple[bool, Callable[[], dict[str, Any]]]:
        from hermetry.analytics.series import tool_daily

        query(params, now_ms=self.now_ms())
        return _relative(params), lambda: tool_daily(self.db, query(params, now_ms=self.now_ms()))

    def _hourly(self, params: Params) -> tuple[bool, Callable[[], dict[str, Any]]]:
        from hermetry.analytics.series import MAX_HOURLY_DAYS, hourly

        q = query(params, now_ms=self.now_ms())
        if q.until_ms - q.since_ms > MAX_HOURLY_DAYS * DAY_MS:
            raise ApiError(400, f"an hourly series covers at most {MAX_HOURLY_DAYS} days")
        return _relative(params), lambda: hourly(self.db, query(params, now_ms=self.now_ms()))

    def _compare(self, params: Params) -> tuple[bool, Callable[[], dict[str, Any]]]:
        from hermetry.analytics.compare import compare

        compare_queries(params, now_ms=self.now_ms())
        relative = not (params.get("b_until") or params.get("until"))
        return relative, lambda: compare(self.db, *compare_queries(params, now_ms=self.now_ms()))

    def _sessions(self, params: Params) -> tuple[bool, Callable[[], dict[str, Any]]]:
        from hermetry.analytics.sessions import list_sessions

        window(params, self.now_ms())
        limit = int(_number(params, "limit", 50, low=1, high=MAX_SESSIONS))
        roll_up = params.get("flat") not in ("1", "true", "yes")

        def run() -> dict[str, Any]:
            since, until = window(params, self.now_ms())
            return list_sessions(self.db, since, until, limit=limit, roll_up=roll_up)

        return _relative(params), run

    def _session(self, params: Params) -> tuple[bool, Callable[[], dict[str, Any]]]:
        from hermetry.analytics.sessions import SessionNotFound, session_detail

        session_id = (params.get("id") or "").strip()
        if not session_id:
            raise ApiError(400, "id: a session id (or a unique prefix) is required")

        def run() -> dict[str, Any]:
            try:
                return session_detail(self.db, session_id)
            except SessionNotFound as exc:
                raise ApiError(404, str(exc.args[0])) from exc

        return False, run


def _relative(params: Params) -> bool:
    return not params.get("until")
