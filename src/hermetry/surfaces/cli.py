"""The ``hermetry`` command line — and, mounted by the plugin, ``hermes telemetry``.

Every command is a thin layer over one library call, so anything the CLI shows a Python user
can get too; ``--json`` prints the library's result as it is (docs/json.md):

=================  =================================================  ===========================
command            library call                                       JSON schema
=================  =================================================  ===========================
``insights``       ``hermetry.analytics.report.insights``             ``hermetry.insights.v1``
``compare``        ``hermetry.analytics.compare.compare``             ``hermetry.compare.v1``
``sessions``       ``hermetry.analytics.sessions.list_sessions``      ``hermetry.sessions.v1``
``show``           ``hermetry.analytics.sessions.session_detail``     ``hermetry.session.v1``
``export``         ``hermetry.surfaces.export.export_rows``           (the store's rows)
=================  =================================================  ===========================

The parser is built by :func:`add_commands`, which fills any argparse (sub)parser: the
standalone ``hermetry`` program and Hermes' ``hermes telemetry`` get the same command tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hermetry import config
from hermetry.analytics.query import NotAnswerable
from hermetry.model.units import DAY_MS
from hermetry.recorder.sink import SinkUnavailable

#: Exit statuses (docs/cli.md, "Errors and exit statuses").
EXIT_OK, EXIT_ENVIRONMENT, EXIT_USAGE = 0, 1, 2
#: The longest window ``--days`` takes (100 years); "everything" is ``--since 1970-01-01``.
MAX_DAYS = 36_500.0


class UsageError(Exception):
    """A command line that cannot be run as given; printed without a traceback, exit status 2."""


class CommandError(Exception):
    """The command was fine but the environment is not (a file missing, damaged, read-only, …):
    one line ``hermetry: <what> (<what to do>)``, exit status 1."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (exit 2), not usage + error."""

    def error(self, message: str) -> Any:
        hint = "" if message.endswith(")") else f" (see: {self.prog} --help)"
        sys.stderr.write(f"hermetry: {message}{hint}\n")
        sys.exit(EXIT_USAGE)


def _days_type(value: str) -> float:
    try:
        days = float(value.strip().rstrip("dD"))
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and 0 < days <= MAX_DAYS):
        raise argparse.ArgumentTypeError(
            f"expected a number of days above 0 and at most {MAX_DAYS:g}, got {value!r} "
            f"(e.g. 7 or 0.5; for everything use --since 1970-01-01)")
    return days


def _limit_type(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return n


def _hours_type(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and 0 <= hours <= MAX_DAYS * 24):
        raise argparse.ArgumentTypeError(f"expected a number of hours of 0 or more, got {value!r}")
    return hours


def _parse_time(value: str, flag: str = "--since") -> float:
    """ISO date/time (UTC if no zone) → epoch ms."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: not an ISO date/time: {value!r} (e.g. 2025-01-31 or 2025-01-31T14:00)") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp() * 1000
    except (OverflowError, OSError, ValueError) as exc:
        raise UsageError(f"{flag}: {value!r} is out of range (give a date between 1970 and 9999)") from exc


def _now_ms() -> float:
    return time.time() * 1000


def _db(args: argparse.Namespace) -> Path:
    """The telemetry *file* a command works on (import, reprice, reconcile, metrics, export --otlp)."""
    given = getattr(args, "db", None)
    if given and not given.lower().startswith(("postgresql://", "postgres://")):
        return Path(given).expanduser()
    url = given or config.store_url()
    if url:  # never quietly fall back to a local file the operator is not using
        from hermetry.stores.postgres import redact_url

        raise UsageError(f"this command works on a telemetry file, and the store is PostgreSQL "
                         f"({redact_url(url)}); pass --db FILE (docs/fleet.md)")
    return config.db_path()


def _store(args: argparse.Namespace) -> Path | str:
    """What the reports read: ``--db`` or the configured store — a file, or a ``postgresql://`` URL."""
    given = getattr(args, "db", None)
    if given:
        return given if given.lower().startswith(("postgresql://", "postgres://")) else Path(given).expanduser()
    return config.store()
def _store_error(exc: Exception) -> CommandError:
    return CommandError(str(exc), getattr(exc, "hint", None))


def _readable_db(args: argparse.Namespace) -> Path | str:
    """The store a reading command reads. A file must exist and be a telemetry file: nothing is
    created, and a file from a newer hermetry is read with one warning (stderr). A PostgreSQL
    URL is passed on as it is."""
    from hermetry.stores.sqlite import StoreError, connect

    path = _store(args)
    if isinstance(path, str):
        return path
    try:
        connect(path, readonly=True).close()
    except StoreError as exc:
        raise _store_error(exc) from exc
    return path


def _writable_db(args: argparse.Namespace) -> Path:
    """The telemetry file a command changes (``reprice``, ``reconcile``): it must exist already,
    be a telemetry file of a schema this hermetry writes, and be writable."""
    from hermetry.stores.sqlite import inspect_store

    path = _db(args)
    status = inspect_store(path)
    if status.problem is not None or not status.writable:
        raise CommandError(status.problem or f"{path} cannot be written", status.hint)
    return path


def _window(args: argparse.Namespace, *, default_days: float | None) -> tuple[float | None, float | None]:
    """The window ``[since, until)`` in epoch ms; None: unbounded.

    ``--since S --days N`` is the N days from S; ``--until U --days N`` the N days up to U;
    ``--days N`` alone the last N days; all three at once is a usage error.
    """
    since = _parse_time(args.since, "--since") if args.since else None
    until = _parse_time(args.until, "--until") if args.until else None
    if since is not None and until is not None and args.days is not None:
        raise UsageError("--days cannot be combined with both --since and --until (give any two of the three)")
    days = args.days if args.days is not None else default_days
    if since is not None and until is None:
        until = since + args.days * DAY_MS if args.days is not None else _now_ms()
    elif since is None:
        if until is None and days is None:
            return None, None
        until = until if until is not None else _now_ms()
        since = until - days * DAY_MS if days is not None else None
    if since is not None and until is not None and not until > since:
        raise UsageError(f"the window is empty: --since ({_iso(since)}) must be before --until ({_iso(until)})")
    return since, until


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _filters(args: argparse.Namespace) -> dict[str, str]:
    from hermetry.analytics.query import FILTERS

    return {k: v for k in FILTERS if (v := getattr(args, k, None))}


#: Where each filter's values live, to suggest the stored spelling of a mistyped one.
_FILTER_COLUMNS = {
    "source": ("sessions", "source"), "model": ("sessions", "model"), "provider": ("sessions", "provider"),
    "session_type": ("sessions", "session_type"), "profile": ("sessions", "profile"),
    "tool": ("tool_calls", "tool_name"), "toolset": ("tool_calls", "toolset"),
}


def _filter_hints(db: Path | str, filters: dict[str, str]) -> None:
    """Filter values match exactly (as stored). When a value matches nothing exactly but a
    stored value differs only in case, say so on stderr — the report itself is unchanged."""
    if not filters or isinstance(db, str):  # (a PostgreSQL store: no hint)
        return
    from hermetry.stores.sqlite import connect

    try:
        conn = connect(db, readonly=True)
    except Exception:
        return
    try:
        for key, value in filters.items():
            table, column = _FILTER_COLUMNS.get(key, (None, None))
            if table is None:
                continue
            found = [r[0] for r in conn.execute(
                f"SELECT {column} FROM {table} WHERE {column} = ? COLLATE NOCASE GROUP BY {column} LIMIT 5",
                (value,))]
            if found and value not in found:
                flag = "--" + key.replace("_", "-")
                sys.stderr.write(f"hermetry: no rows match {flag} {value!r} (values match exactly, "
                                 f"case included; stored: {', '.join(repr(f) for f in found)})\n")
    except Exception:
        pass
    finally:
        conn.close()


def _query(args: argparse.Namespace) -> Any:
    from hermetry.analytics.query import Query

    since, until = _window(args, default_days=7.0)
    assert since is not None and until is not None
    group_by = tuple(args.by) if args.by else ("source", "model")
    query = Query(since_ms=since, until_ms=until, filters=_filters(args), group_by=group_by)
    try:
        query.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return query


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def _console() -> Any:
    from hermetry.surfaces.render import console

    return console(sys.stdout)


def _tz(args: argparse.Namespace) -> Any:
    """``--utc``: times in UTC; otherwise None (local time, zone named)."""
    return UTC if getattr(args, "utc", False) else None


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

def refresh_rollups(db: Any) -> None:
    """Before a report: rebuild the rollups' dirty closed hours when the store can be written (a
    read-only or busy store is read as it is: dirty hours from raw rows, the same figures)."""
    from hermetry.stores.rollups import refresh

    refresh(db)


@contextlib.contextmanager
def report_store(db: Path | str, *, refresh: bool = True) -> Iterator[Any]:
    """What a report reads, its rollups refreshed first (:func:`refresh_rollups`) unless not
    ``refresh``: a file's path as it is, or for a PostgreSQL URL one connection that refreshes and
    then reads (``open_reader(url, refresh=True)``: one connection per command, not two)."""
    if not isinstance(db, str):
        if refresh:
            refresh_rollups(db)
        yield db
        return
    from hermetry.stores.postgres import open_reader

    conn = open_reader(db, refresh=refresh)
    if conn is None:  # no hermetry tables yet: the report opens it itself (an empty history)
        yield db
        return
    try:
        yield conn
    finally:
        conn.close()


def cmd_insights(args: argparse.Namespace) -> int:
    from hermetry.analytics.report import insights

    query = _query(args)
    db = _readable_db(args)
    with report_store(db, refresh=not args.exact) as store:
        report = insights(store, query, tz=_tz(args), exact=args.exact)
    _filter_hints(db, query.filters)
    if args.json:
        _print_json(report)
    else:
        from hermetry.surfaces.render import print_report  # rich: not for --json (start-up time)

        print_report(report, _console(), tz=_tz(args))
    return 0


def compare_queries(args: argparse.Namespace) -> tuple[Any, Any]:
    """Baseline (A) and current (B) windows: by default the last ``--days`` and the ones before."""
    from hermetry.analytics.query import Query

    days = args.days
    b_until = _parse_time(args.b_until, "--b-until") if args.b_until else _now_ms()
    b_since = _parse_time(args.b_since, "--b-since") if args.b_since else b_until - days * DAY_MS
    a_until = _parse_time(args.a_until, "--a-until") if args.a_until else b_since
    a_since = _parse_time(args.a_since, "--a-since") if args.a_since else a_until - days * DAY_MS
    for side, since, until in (("a", a_since, a_until), ("b", b_since, b_until)):
        if not until > since:
            name = "baseline (A)" if side == "a" else "current (B)"
            raise UsageError(f"the {name} window is empty: --{side}-since ({_iso(since)}) must be before "
                             f"--{side}-until ({_iso(until)})")
    filters = _filters(args)
    queries = (Query(since_ms=a_since, until_ms=a_until, filters=filters, group_by=()),
               Query(since_ms=b_since, until_ms=b_until, filters=filters, group_by=()))
    try:
        for query in queries:
            query.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return queries


def cmd_compare(args: argparse.Namespace) -> int:
    from hermetry.analytics.compare import compare
    from hermetry.surfaces.render import print_compare

    baseline, current = compare_queries(args)
    db = _readable_db(args)
    with report_store(db) as store:
        result = compare(store, baseline, current)
    _filter_hints(db, baseline.filters)
    if args.json:
        _print_json(result)
    else:
        print_compare(result, _console(), tz=_tz(args))
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from hermetry.analytics.sessions import list_sessions
    from hermetry.surfaces.render import print_sessions

    since, until = _window(args, default_days=7.0)
    assert since is not None and until is not None
    result = list_sessions(_readable_db(args), since, until, limit=args.limit, roll_up=not args.flat)
    if args.json:
        _print_json(result)
    else:
        print_sessions(result, _console(), tz=_tz(args))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from hermetry.analytics.sessions import SessionNotFound, session_detail
    from hermetry.surfaces.render import print_session

    try:
        detail = session_detail(_readable_db(args), args.session)
    except SessionNotFound as exc:
        raise UsageError(str(exc.args[0])) from exc
    if args.json:
        _print_json(detail)
    else:
        print_session(detail, _console(), tz=_tz(args), all_turns=args.all_turns)
    return 0


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for long work — only where someone watches it (a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def cmd_export(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hermetry.surfaces.export import ExportError, ExportWriteError, check_output, export_rows

    since, until = _window(args, default_days=None)
    if args.otlp:
        return _export_otlp(args, since, until)
    to_file = args.output not in (None, "-")
    try:
        if to_file:
            check_output(args.output, args.format)
        db = _readable_db(args)
        if args.table != "sessions":  # sessions are never pruned
            _say_pruned(db, since, args.table.replace("api_calls", "model calls").replace("_", " "))
        if not to_file:
            export_rows(db, args.table, args.format, None, since_ms=since, until_ms=until)
            return 0
        with _progress(f"exporting {args.table}") as progress:
            n = export_rows(db, args.table, args.format, args.output, since_ms=since, until_ms=until,
                            progress=progress)
        Console(stderr=True).print(f"{n:,} {args.table} rows → {args.output}")
    except ExportWriteError as exc:
        raise CommandError(str(exc), "free some space or write elsewhere") from exc
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    return 0


def _export_otlp(args: argparse.Namespace, since: float | None, until: float | None) -> int:
    """``hermetry export --otlp``: replay history to the collector named by the OTEL_* variables."""
    from rich.console import Console

    from hermetry.surfaces.export import ExportError, export_otlp

    _say_pruned(_db(args), since, "turns, model calls and tool calls (their spans and metric points)")
    try:
        result = export_otlp(_db(args), since_ms=since, until_ms=until)
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    dropped = result.dropped_spans + result.dropped_points
    Console(stderr=True).print(
        f"{result.events:,} events → {result.spans:,} spans and {result.points:,} metric points to {result.endpoint}"
        + (f"; [red]{result.dropped_spans:,} spans and {result.dropped_points:,} points not delivered: "
           f"{result.last_error}[/red]" if dropped else ""), highlight=False)
    return 1 if dropped else 0


def _say_pruned(db: Path | str, since: float | None, what: str) -> None:
    """One line on stderr when an export's window reaches back before ``hermetry prune``'s
    boundary: the rows of that time are gone, so the export has none of them (review m12)."""
    boundary, _late = _late_rows(db)
    if boundary is None or (since is not None and since >= datetime.fromisoformat(boundary).timestamp() * 1000):
        return
    print(f"hermetry: {what} before {boundary} were pruned (hermetry prune): none of them is in this "
          "export; only the rollups keep their totals (hermetry insights)", file=sys.stderr, flush=True)


def cmd_import(args: argparse.Namespace) -> int:
    """``hermetry import``: Hermes' state.db history into the telemetry file (read-only, idempotent)."""
    import dataclasses

    from rich.console import Console

    from hermetry.plugin import ImportRefused, import_history
    from hermetry.stores.sqlite import inspect_store

    home = Path(args.hermes_home).expanduser() if args.hermes_home else config.hermes_home()
    # the store of the Hermes home being imported (--db and $HERMETRY_DB still win): its telemetry
    # file, or the fleet's PostgreSQL database when one is configured
    given = getattr(args, "db", None)
    db: Path | str = (given if given.lower().startswith(("postgresql://", "postgres://")) else Path(given).expanduser()
                      ) if given else config.store(home)
    if not isinstance(db, str):
        status = inspect_store(db)
        if status.kind not in ("missing", "hermetry", "empty") or not status.writable:
            raise CommandError(status.problem or f"{db} cannot be written", status.hint)
    late_before = _late_rows(db)
    try:
        with _progress("importing sessions") as progress:
            results = import_history(home, db, all_profiles=args.all_profiles, progress=progress)
    except ImportRefused as exc:
        raise UsageError(str(exc)) from exc
    late_after = _late_rows(db)
    # rows this import wrote for time a prune already covered: stored, but in no report (review R9)
    late_rows = {t: max(0, n - late_before[1].get(t, 0)) for t, n in late_after[1].items()}
    late: dict[str, Any] = {"pruned_before": late_after[0], "rows": late_rows}
    if args.json:
        from hermetry.stores.postgres import redact_url

        shown = redact_url(db) if isinstance(db, str) else str(db)
        _print_json({"schema": "hermetry.import.v1", "telemetry_file": shown, "results": [
            {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(r).items()} for r in results],
            "late_rows": late})
        return 1 if any(r.error for r in results) else 0
    from hermetry.surfaces.text import count, duration, plural

    if isinstance(db, str) and any(not r.error for r in results):
        from hermetry.stores.postgres import redact_url

        Console(stderr=True).print(f"store: {redact_url(db)}", highlight=False, soft_wrap=True, markup=False)
    elif not isinstance(db, str) and any(not r.error for r in results) and db.exists():  # only once it wrote
        Console(stderr=True).print(f"telemetry file: {db}", highlight=False, soft_wrap=True, markup=False)
    out = _console()
    for r in results:
        if r.error:
            out.print(f"{r.source_path}: {r.error}", style="red", markup=False)
            continue
        out.print(f"{r.source_path}\n  {plural(r.sessions_seen, 'session')}: {count(r.sessions_new)} new, "
                  f"{count(r.sessions_changed)} changed, {count(r.sessions_unchanged)} unchanged, "
                  f"{count(r.sessions_live)} already captured live\n  imported {plural(r.turns, 'turn')}, "
                  f"{plural(r.api_calls, 'token row')}, {plural(r.tool_calls, 'tool call')} "
                  f"in {duration(r.seconds * 1000)}", markup=False, highlight=False)
    n_late = sum(late_rows.values())
    if n_late:
        out.print(f"{plural(n_late, 'row')} of it started before {late['pruned_before']}, time already pruned: "
                  "stored, but NOT in any report (the rollups of pruned hours are not rebuilt; the next "
                  "hermetry prune deletes them)", style="yellow", markup=False, highlight=False)
    return 1 if any(r.error for r in results) else 0


def _late_rows(db: Path | str) -> tuple[str | None, dict[str, int]]:
    """The store's prune boundary and its rows for pruned time (``stores.rollups.late_rows``)."""
    from hermetry.stores import rollups
    from hermetry.stores.reader import open_db

    try:
        with open_db(db) as conn:
            if conn is None or not rollups.has_rollups(conn):
                return None, {}
            boundary = rollups.pruned_before_ms(conn)
            return (_iso(boundary) if boundary is not None else None), rollups.late_rows(conn)
    except Exception as exc:  # an unreadable store: the import says what is wrong with it
        if isinstance(exc, sqlite3.Error | OSError) or type(exc).__module__.startswith("psycopg"):
            return None, {}
        raise


def cmd_reprice(args: argparse.Namespace) -> int:
    """``hermetry reprice``: re-estimate stored calls with today's prices, keeping what they replace."""
    from hermetry.cost import PriceFileError, load_pricing_config
    from hermetry.cost.reprice import reprice

    since, until = _window(args, default_days=None)
    path = Path(args.prices).expanduser() if args.prices else config.price_file_path()
    if path is not None and not path.is_file():
        what = f"no price file at {path}" if not path.exists() else f"the price file {path} is not a file"
        if args.prices:
            raise UsageError(f"--prices: {what} (check the path; docs/cost.md describes the format)")
        raise CommandError(f"{what} (set by $HERMETRY_PRICES or hermetry.price_file)",
                           "fix the path, or unset it to use list prices only")
    try:
        pricing = load_pricing_config(path) if path is not None else None
    except PriceFileError as exc:
        raise CommandError(str(exc), "fix the file (docs/cost.md describes the format)") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"cannot read the price file {path}: {describe_error(exc)}",
                           "it must be a YAML or JSON text file (docs/cost.md)") from exc
    db = _writable_db(args)
    with _progress("repricing API calls") as progress:
        result = reprice(db, config=pricing, since_ms=since or 0.0, until_ms=until, progress=progress)
    result["price_file"] = str(path) if pricing is not None else None
    if args.json:
        _print_json(result)
    else:
        from hermetry.surfaces.text import count, plural

        kept = f", {count(result['kept_known'])} kept (no price today)" if result["kept_known"] else ""
        statuses = ", ".join(f"{k} {count(v)}" for k, v in sorted(result["by_status"].items())) or "none"
        _console().print(f"{plural(result['examined'], 'call')} examined, {count(result['changed'])} repriced{kept} "
                         f"(cost status now: {statuses}); replaced costs kept in cost_history")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """``hermetry reconcile``: close turns and sessions left open by processes that died."""
    from hermetry.stores.sqlite import connect, migrate
    from hermetry.stores.sqlite_reconcile import reconcile

    conn = connect(_writable_db(args), create=False)
    try:
        migrate(conn)
        result = reconcile(conn, grace_s=args.grace_hours * 3600)
    finally:
        conn.close()
    if args.json:
        _print_json({"schema": "hermetry.reconcile.v1", "grace_hours": args.grace_hours, **result})
    else:
        from hermetry.surfaces.text import plural

        print(f"closed {plural(result['turns_closed'], 'turn')} and {plural(result['sessions_closed'], 'session')} "
              f"idle for more than {args.grace_hours:g} h")
    return 0


def _writer(args: argparse.Namespace) -> Any:
    """A writing connection to the store (a file that must exist, or a PostgreSQL URL), migrated."""
    store = _store(args)
    if isinstance(store, str):
        from hermetry.stores.postgres import connect as pg_connect
        from hermetry.stores.postgres import migrate as pg_migrate

        pg = pg_connect(store)
        pg_migrate(pg)
        return pg
    from hermetry.stores.sqlite import connect, migrate

    conn = connect(_writable_db(args), create=False)
    migrate(conn)
    return conn


def _age_type(value: str) -> float:
    """``--older-than``: ``90d``, ``12h``, ``2w`` (a bare number is days) → milliseconds."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", value or "")
    units = {"h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS, "": DAY_MS}
    if m is None or float(m.group(1)) <= 0 or not math.isfinite(float(m.group(1))):
        raise argparse.ArgumentTypeError(f"expected an age like 90d, 12h or 2w, got {value!r}")
    age_ms = float(m.group(1)) * units[m.group(2)]
    if age_ms > 100 * 366 * DAY_MS:
        raise argparse.ArgumentTypeError(f"an age of at most 100 years, got {value!r}")
    return age_ms


def cmd_prune(args: argparse.Namespace) -> int:
    """``hermetry prune``: delete raw rows older than an age; the rollups keep their figures."""
    from hermetry.stores.rollups import prune

    conn = _writer(args)
    started = time.monotonic()
    try:
        with _prune_progress() as progress:
            result = prune(conn, args.older_than, now_ms=_now_ms(), dry_run=args.dry_run, progress=progress)
    finally:
        conn.close()
    if args.json:
        _print_json(result)
        return 0
    from hermetry.surfaces.text import duration, plural

    rows = result["rows"]
    what = (f"{plural(rows['turns'], 'turn')}, {plural(rows['api_calls'], 'model call row')} and "
            f"{plural(rows['tool_calls'], 'tool call')} started before {_iso(result['pruned_before_ms'])}")
    if result["dry_run"]:
        print(f"would delete {what}\n(dry run: nothing changed)")
    else:
        seconds = time.monotonic() - started
        took = (f" in {duration(seconds * 1000)} ({plural(result['transactions'], 'transaction')}, the longest "
                f"{duration(result['longest_transaction_s'] * 1000)})" if seconds >= PRUNE_SAY_TIME_S else "")
        print(f"deleted {what}{took}\n(their counts, sums and percentiles stay in the rollups; sessions kept)")
    return 0


#: how often a prune whose stderr is not a terminal (cron, a pipe) says how far it got
PRUNE_PROGRESS_EVERY_S = 30.0
#: a prune that took this long or longer says how long, in how many transactions (a quick one
#: says nothing: its summary stays the same run after run)
PRUNE_SAY_TIME_S = 1.0


@contextlib.contextmanager
def _prune_progress() -> Iterator[Callable[[int, int], None]]:
    """``hermetry prune``'s progress on stderr: a bar on a terminal (as ``import``'s); elsewhere a
    line every :data:`PRUNE_PROGRESS_EVERY_S` seconds, once it runs that long (m15)."""
    with _progress("pruning raw rows") as bar:
        if bar is not None:
            yield bar
            return
        started = last = time.monotonic()

        def line(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PRUNE_PROGRESS_EVERY_S:
                last = now
                print(f"hermetry prune: {done:,} of {total:,} raw rows deleted ({done / max(total, 1):.0%}), "
                      f"{now - started:.0f} s", file=sys.stderr, flush=True)
        yield line


def cmd_rollup(args: argparse.Namespace) -> int:
    """``hermetry rollup``: rebuild every dirty closed hour of the rollups now."""
    from hermetry.stores.rollups import build_pending, rebuild

    conn = _writer(args)
    try:
        built = build_pending(conn)  # a store upgraded to schema 12: its sessions rollup first
        stats = rebuild(conn, now_ms=_now_ms())
        stats.sessions_build = built
    finally:
        conn.close()
    if args.json:
        _print_json({"schema": "hermetry.rollup.v1", **stats.as_dict()})
    else:
        from hermetry.surfaces.text import duration, plural

        if built is not None:
            print(f"built the sessions rollup: {plural(built.hours, 'hour')} of "
                  f"{plural(built.sessions, 'session')} in {duration(built.seconds * 1000)}")
        print(f"rebuilt {plural(stats.hours, 'hour')} ({plural(stats.rows, 'rollup row')}) in "
              f"{duration(stats.seconds * 1000)}; {plural(stats.dirty_left, 'hour')} still dirty")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    """``hermetry path``: the store in use — a file, or a PostgreSQL URL (without its password)."""
    from hermetry.stores.postgres import redact_url

    store = _store(args)
    print(redact_url(store) if isinstance(store, str) else store)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """``hermetry sync``: forward what this host spooled while PostgreSQL was unreachable."""
    from hermetry.stores.fallback import spool_status, sync
    from hermetry.stores.postgres import is_postgres_url, redact_url

    url = args.url or config.store_url()
    if not url or not is_postgres_url(url):
        raise UsageError("no PostgreSQL store configured (set HERMETRY_DB=postgresql://… or pass --url)")
    spool = Path(args.spool).expanduser() if args.spool else config.spool_path()
    result = sync(url, spool, host=config.host(), timeout_s=args.timeout)
    left = spool_status(spool)
    if args.json:
        _print_json({"schema": "hermetry.sync.v1", "url": redact_url(url), **result.as_dict(),
                     "spool": left.as_dict()})
    else:
        print(f"forwarded {result.forwarded_events:,} events in {result.forwarded_batches:,} batches "
              f"to {redact_url(url)}"
              + (f" ({result.duplicate_batches:,} batches were already there)" if result.duplicate_batches else ""))
        if left.batches:
            print(f"{left.events:,} events in {left.batches:,} batches still wait in {spool}"
                  + (f": {result.error}" if result.error else ""))
        if left.rejected_batches:
            print(f"{left.rejected_events:,} events in {left.rejected_batches:,} batches were refused by "
                  f"PostgreSQL and set aside in {spool} (table rejected)")
    return 1 if left.batches else 0
def cmd_doctor(args: argparse.Namespace) -> int:
    """``hermetry doctor``: is hermetry recording, and if not, why and what to do. Exit 1 if not."""
    from hermetry.surfaces.doctor import diagnose

    result = diagnose(getattr(args, "db", None))
    if args.json:
        _print_json(result)
    else:
        print_doctor(result)
    return 0 if result["ok"] else EXIT_ENVIRONMENT


def print_doctor(r: dict[str, Any]) -> None:
    """The doctor's result as plain lines (fits 80 columns; no colour needed)."""
    f = r["telemetry_file"]
    out = sys.stdout.write
    out(f"telemetry file  {f['path']}\n                chosen by {f['chosen_by']}\n")
    if f["exists"]:
        size = f"{f['size_bytes']:,} bytes" if f["size_bytes"] is not None else "size unknown"
        schema = (f"schema {f['schema_version']} (this hermetry: {f['supported_schema_version']})"
                  if f["schema_version"] is not None else "no schema")
        out(f"                {f['kind']}, {schema}, {size}\n")
    else:
        out("                does not exist yet (the first recorded event creates it)\n")
    writable = "yes" if f["writable"] else f"no: {f['not_writable_because']}"
    out(f"                writable: {writable}\n")
    p = r["plugin"]
    out(f"plugin          {'enabled' if p['enabled'] else 'NOT enabled'} ({p['why']})\n")
    out(f"versions        Hermes {r['hermes']['version'] or 'not installed'}, hermetry {r['hermetry']['version']}\n")
    d = r["drops"]
    if d["events_dropped"]:
        out(f"drops           {d['events_dropped']:,} events dropped ({d['runs_with_drops']} runs in the file, "
            f"{len(d['not_yet_in_file'])} waiting in the fallback ledger)\n")
        for run in d["recent"][:3]:
            out(f"                {run['last_flush_at']}  pid {run['pid']} on {run['host']}: "
                f"{run['events_dropped']:,} dropped\n")
    else:
        out("drops           none recorded\n")
    for x in d.get("exporters", []):
        lost = x["events_dropped"] + x["spans_dropped"] + x["points_dropped"]
        what = (f"not delivered: {x['events_dropped']:,} events, {x['spans_dropped']:,} spans, "
                f"{x['points_dropped']:,} points") if lost else f"nothing lost ({x['runs']} runs)"
        out(f"export {x['exporter']:<8} {what}\n")
        if lost:
            last = f"; last: {x['last_error']}" if x.get("last_error") else ""
            out(f"                in {x['runs_with_drops']} of {x['runs']} runs{last}"[:80] + "\n")
    ret = r.get("retention") or {}
    if ret.get("pruned_before"):
        late = sum((ret.get("late_rows") or {}).values())
        gone = sum((ret.get("late_rows_deleted") or {}).values())
        from hermetry.surfaces.text import plural

        out(f"retention       raw rows pruned before {ret['pruned_before']}\n")
        if late:
            out(f"                {plural(late, 'row')} written later for that time: NOT in any report\n"
                "                (the next hermetry prune deletes them)\n")
        if gone:
            out(f"                {plural(gone, 'such row')} deleted uncounted by later prunes\n")
    ro = r.get("rollups") or {}
    if ro.get("dirty_hours") is not None:
        from hermetry.surfaces.text import plural

        if ro["dirty_hours"] or ro.get("sessions_rollup_pending_from"):
            if ro["dirty_hours"]:
                out(f"rollups         {plural(ro['dirty_hours'], 'closed hour')} to rebuild: reports read them\n"
                    "                from raw rows (same figures, slower)\n")
            if ro.get("sessions_rollup_pending_from"):
                head = "rollups" if not ro["dirty_hours"] else ""
                out(f"{head:<16}sessions rollup still being built (from {ro['sessions_rollup_pending_from']})\n")
            out("                `hermetry rollup` does it now (reports also do, a bit at a time)\n")
        else:
            out("rollups         up to date\n")
    pr = r["prices"]
    out(f"prices          {pr['status']}: {pr['detail']}\n")
    if r["ok"]:
        out("ok: hermetry is recording\n")
        return
    out(f"{len(r['problems'])} problem{'s' if len(r['problems']) != 1 else ''}:\n")
    for problem in r["problems"]:
        out(f"  - {problem['what']}\n    do: {problem['do']}\n")


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``hermetry dashboard``: the web dashboard, or install/remove the tab in ``hermes dashboard``."""
    from hermetry.surfaces.dashboard.cli import run_dashboard

    return run_dashboard(args, _store(args), UsageError)


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_metrics(args: argparse.Namespace) -> int:
    """``hermetry metrics serve|show``: the Prometheus view of the telemetry file (docs/prometheus.md)."""
    from hermetry.surfaces import metrics

    try:
        if args.metrics_command == "show":
            sys.stdout.write(metrics.exposition(_db(args)))
            return 0
        if args.metrics_command == "grafana":
            sys.stdout.write(metrics.GRAFANA_DASHBOARD.read_text(encoding="utf-8"))
            return 0
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port}: use 0..65535")
        server = metrics.MetricsServer(str(_db(args)), host=args.host, port=args.port)
    except metrics.MetricsUnavailable as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:  # the environment, not the command line: exit status 1 (docs/cli.md)
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                           "another --port, or --port 0 for a free one") from exc
    print(f"serving {server.url} from {_db(args)} (Ctrl-C to stop)", flush=True)
    if not Path(_db(args)).exists():
        print(f"hermetry: {_db(args)} does not exist yet: an empty history until Hermes records to it "
              "(check the path if it should)", file=sys.stderr, flush=True)
    if not _loopback(args.host):
        print(f"hermetry: warning: listening on {args.host}: anyone who can reach it sees models, hosts and "
              "spend per source (no token); put it behind a firewall or a proxy", file=sys.stderr, flush=True)
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    server.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hermetry.demo import run_demo

    run_demo(Path(args.dir).resolve())
    return 0


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------

def _add_window(p: argparse.ArgumentParser, *, days_help: str = "the last N days (default 7)") -> None:
    p.add_argument("--days", type=_days_type, default=None,
                   help=f"window: {days_help}; with --since, the N days from it")
    p.add_argument("--since", help="window start (ISO date/time, UTC unless a zone is given)")
    p.add_argument("--until", help="window end (ISO date/time; default now)")


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="only sessions from this source (cli, telegram, api_server, cron, …)")
    p.add_argument("--model", help="only this model")
    p.add_argument("--provider", help="only this provider")
    p.add_argument("--session-type", dest="session_type", help="only this session type (oneshot, interactive, …)")
    p.add_argument("--profile", help="only this Hermes profile")
    p.add_argument("--tool", help="only this tool (turns and API calls: the turns that called it)")
    p.add_argument("--toolset", help="only this toolset (as --tool)")
    p.add_argument("--host", help="only sessions recorded on this host (HERMETRY_HOST; a fleet's store)")


def _add_json(p: argparse.ArgumentParser, schema: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print the result as JSON ({schema}, docs/json.md)")


def _add_utc(p: argparse.ArgumentParser) -> None:
    p.add_argument("--utc", action="store_true", help="show times in UTC (default: local time, zone named)")


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Fill ``parser`` with hermetry's subcommands (used by ``hermetry`` and ``hermes telemetry``)."""
    parser.add_argument("--db", help="telemetry file (default: $HERMETRY_DB or $HERMES_HOME/hermetry/telemetry.db)")
    sub = parser.add_subparsers(dest="hermetry_command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("insights", help="latency, tokens, cost and outcomes for a time window")
    _add_window(p)
    _add_filters(p)
    p.add_argument("--by", action="append", metavar="DIM",
                   help="break down by source, model, provider, toolset, tool, session_type, profile or day "
                        "(repeatable; default: source and model)")
    p.add_argument("--exact", action="store_true",
                   help="read every raw row (exact percentiles) even for a large window; by default a window "
                        "of 50,000+ model calls reads whole hours from the rollups (percentiles within 1 %%)")
    _add_json(p, "hermetry.insights.v1")
    _add_utc(p)
    p.set_defaults(hermetry_func=cmd_insights)

    p = sub.add_parser("compare", help="two windows side by side; flags significant regressions")
    p.add_argument("--days", type=_days_type, default=7.0,
                   help="length of each window (default 7: the last 7 days against the 7 before)")
    for side, name in (("a", "baseline"), ("b", "current")):
        p.add_argument(f"--{side}-since", help=f"{name} window start (ISO date/time)")
        p.add_argument(f"--{side}-until", help=f"{name} window end (ISO date/time)")
    _add_filters(p)
    _add_json(p, "hermetry.compare.v1")
    _add_utc(p)
    p.set_defaults(hermetry_func=cmd_compare)

    p = sub.add_parser("sessions", help="recent sessions (conversations) with outcome, turns, tokens, cost")
    _add_window(p)
    p.add_argument("--limit", type=_limit_type, default=20, help="how many (default 20)")
    p.add_argument("--flat", action="store_true",
                   help="one row per session, instead of subagents and continuations rolled into their conversation")
    _add_json(p, "hermetry.sessions.v1")
    _add_utc(p)
    p.set_defaults(hermetry_func=cmd_sessions)

    p = sub.add_parser("show", help="one session: turns, a waterfall of where the time went, lineage, totals")
    p.add_argument("session", help="session id (a unique prefix is enough)")
    p.add_argument("--all-turns", action="store_true",
                   help="a waterfall for every turn (default: a table of all turns and the slowest five "
                        "drawn, when there are more than 20)")
    _add_json(p, "hermetry.session.v1")
    _add_utc(p)
    p.set_defaults(hermetry_func=cmd_show)

    p = sub.add_parser("export", help="raw event rows as JSON Lines, CSV or Parquet")
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl", help="default jsonl")
    p.add_argument("--table", choices=("api_calls", "tool_calls", "turns", "sessions"), default="api_calls",
                   help="default api_calls")
    _add_window(p, days_help="the last N days (default: everything)")
    p.add_argument("--output", "-o", help="file to write (default: standard output; Parquet needs a file)")
    p.add_argument("--otlp", action="store_true",
                   help="instead: send the history to an OpenTelemetry collector (OTEL_EXPORTER_OTLP_ENDPOINT; "
                        "docs/opentelemetry.md)")
    p.set_defaults(hermetry_func=cmd_export)

    p = sub.add_parser("import", help="import Hermes' existing history (state.db, read-only; idempotent)")
    p.add_argument("--hermes-home", help="Hermes home to read (default: $HERMES_HOME or ~/.hermes)")
    p.add_argument("--all-profiles", action="store_true", help="also import every profiles/*/state.db")
    _add_json(p, "hermetry.import.v1")
    p.set_defaults(hermetry_func=cmd_import)

    p = sub.add_parser("reprice", help="re-estimate stored API calls with today's prices (keeps the old figures)")
    _add_window(p, days_help="the last N days (default: everything)")
    p.add_argument("--prices", help="operator price file (default: $HERMETRY_PRICES, hermetry.price_file, "
                                    "or $HERMES_HOME/hermetry/prices.yaml)")
    _add_json(p, "hermetry.reprice.v1")
    p.set_defaults(hermetry_func=cmd_reprice)

    p = sub.add_parser("reconcile", help="close turns and sessions left open by processes that died")
    p.add_argument("--grace-hours", type=_hours_type, default=6.0,
                   help="close what has been idle for longer than this (default 6)")
    _add_json(p, "hermetry.reconcile.v1")
    p.set_defaults(hermetry_func=cmd_reconcile)

    p = sub.add_parser("prune", help="delete raw rows older than an age; the rollups keep their figures (docs/fleet.md)")
    p.add_argument("--older-than", type=_age_type, required=True, metavar="AGE",
                   help="delete turns, model calls and tool calls that started longer ago than this: 90d, 12h, 2w")
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
    _add_json(p, "hermetry.prune.v1")
    p.set_defaults(hermetry_func=cmd_prune)

    p = sub.add_parser("rollup", help="rebuild the rollups' dirty hours now (reports and import do it too)")
    _add_json(p, "hermetry.rollup.v1")
    p.set_defaults(hermetry_func=cmd_rollup)

    p = sub.add_parser("sync", help="forward events spooled while PostgreSQL was unreachable (docs/fleet.md)")
    p.add_argument("--url", help="the PostgreSQL store (default: HERMETRY_DB / hermetry.db_path)")
    p.add_argument("--spool", help="the spool file (default: hermetry.spool_path or $HERMES_HOME/hermetry/spool.db)")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds (default: until done)")
    _add_json(p, "hermetry.sync.v1")
    p.set_defaults(hermetry_func=cmd_sync)
    p = sub.add_parser("doctor", help="is hermetry recording? the file, its schema, drops, plugin, prices; what to do")
    _add_json(p, "hermetry.doctor.v1")
    p.set_defaults(hermetry_func=cmd_doctor)

    from hermetry.surfaces.dashboard.cli import add_dashboard_arguments

    p = sub.add_parser("dashboard", help="a local web dashboard (or a Telemetry tab in `hermes dashboard`)")
    add_dashboard_arguments(p)
    p.set_defaults(hermetry_func=cmd_dashboard)

    p = sub.add_parser("demo", help="drive real Hermes sessions against a scripted model and show the insights")
    p.add_argument("--dir", default=".demo", help="where the demo's Hermes homes and telemetry go (default .demo)")
    p.set_defaults(hermetry_func=cmd_demo)

    p = sub.add_parser("metrics", help="Prometheus metrics from the telemetry file: serve /metrics, or show it once")
    msub = p.add_subparsers(dest="metrics_command", metavar="ACTION", required=True)
    serve = msub.add_parser("serve", help="serve /metrics for Prometheus (loopback by default)")
    serve.add_argument("--port", type=int, default=9464, help="port (default 9464; 0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    msub.add_parser("show", help="print the /metrics page once")
    msub.add_parser("grafana", help="print the Grafana dashboard JSON (provisionable; docs/grafana.md)")
    p.set_defaults(hermetry_func=cmd_metrics)

    p = sub.add_parser("path", help="print the telemetry file in use")
    p.set_defaults(hermetry_func=cmd_path)


def describe_error(exc: BaseException) -> str:
    """An OS or SQLite error in a few words (the disk is full, read-only, …)."""
    from hermetry.stores.sqlite import describe_sqlite_error

    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    return describe_sqlite_error(exc)


def _say(message: str, hint: str | None = None) -> None:
    message = " ".join(message.split())  # one line, whatever the message carried
    if len(message) > 400:
        message = message[:399] + "…"
    line = f"hermetry: {message}" + (f" ({hint})" if hint else "")
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command. Every failure is one line on stderr, never a traceback:
    exit 2 for a command line that cannot run as given, 1 for an environment that stops it
    (docs/cli.md). ``HERMETRY_DEBUG=1`` shows the traceback of an unexpected error."""
    import sqlite3

    from hermetry.stores.sqlite import StoreError

    func = getattr(args, "hermetry_func", None)
    if func is None:
        args.hermetry_parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except (UsageError, NotAnswerable) as exc:
        _say(str(exc))
        return EXIT_USAGE
    except CommandError as exc:
        _say(str(exc), exc.hint)
        return EXIT_ENVIRONMENT
    except StoreError as exc:
        _say(str(exc), getattr(exc, "hint", None))
        return EXIT_ENVIRONMENT
    except SinkUnavailable as exc:  # a fleet's PostgreSQL store that cannot be reached
        _say(f"cannot reach the telemetry store: {exc}", "is PostgreSQL up? check HERMETRY_DB")
        return EXIT_ENVIRONMENT
    except BrokenPipeError:  # `hermetry … | head`
        with contextlib.suppress(Exception):
            sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (sqlite3.Error, OSError) as exc:
        if os.environ.get("HERMETRY_DEBUG"):
            raise
        where = f" on {_db(args)}" if isinstance(exc, sqlite3.Error) else ""
        _say(f"the command failed{where}: {describe_error(exc)}", "run `hermetry doctor` for what to check")
        return EXIT_ENVIRONMENT
    except Exception as exc:
        if os.environ.get("HERMETRY_DEBUG"):
            raise
        _say(f"unexpected error: {type(exc).__name__}: {exc}",
             "a bug in hermetry: rerun with HERMETRY_DEBUG=1 for the traceback and report it")
        return EXIT_ENVIRONMENT


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hermetry", description="Telemetry and analytics for the Hermes Agent.")
    add_commands(parser)
    parser.set_defaults(hermetry_parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return dispatch(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
