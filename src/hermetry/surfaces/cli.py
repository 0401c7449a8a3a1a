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
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hermetry import config
from hermetry.model.units import DAY_MS
from hermetry.recorder.sink import SinkUnavailable


class UsageError(Exception):
    """A command line that cannot be run as given; printed without a traceback, exit status 2."""


def _parse_time(value: str) -> float:
    """ISO date/time (UTC if no zone) → epoch ms."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"not an ISO date/time: {value!r} (e.g. 2025-01-31 or 2025-01-31T14:00)") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000


def _now_ms() -> float:
    return time.time() * 1000


def _db(args: argparse.Namespace) -> Path:
    return Path(args.db).expanduser() if getattr(args, "db", None) else config.db_path()


def _store(args: argparse.Namespace) -> Path | str:
    """What the reports read: ``--db`` or the configured store — a file, or a ``postgresql://`` URL."""
    given = getattr(args, "db", None)
    if given:
        return given if given.lower().startswith(("postgresql://", "postgres://")) else Path(given).expanduser()
    return config.store()


def _window(args: argparse.Namespace, *, default_days: float | None) -> tuple[float | None, float | None]:
    """``--since/--until`` (either one), else ``--days`` back from now; None: unbounded."""
    days = args.days if args.days is not None else default_days
    if args.since or args.until:
        until = _parse_time(args.until) if args.until else _now_ms()
        since = _parse_time(args.since) if args.since else (until - days * DAY_MS if days is not None else None)
        return since, until
    if days is None:
        return None, None
    until = _now_ms()
    return until - days * DAY_MS, until


def _filters(args: argparse.Namespace) -> dict[str, str]:
    from hermetry.analytics.report import FILTERS

    return {k: v for k in FILTERS if (v := getattr(args, k, None))}


def _query(args: argparse.Namespace) -> Any:
    from hermetry.analytics.report import Query

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

def cmd_insights(args: argparse.Namespace) -> int:
    from hermetry.analytics.report import insights
    from hermetry.surfaces.render import print_report

    report = insights(_store(args), _query(args), tz=_tz(args))
    if args.json:
        _print_json(report)
    else:
        print_report(report, _console(), tz=_tz(args))
    return 0


def compare_queries(args: argparse.Namespace) -> tuple[Any, Any]:
    """Baseline (A) and current (B) windows: by default the last ``--days`` and the ones before."""
    from hermetry.analytics.report import Query

    days = args.days
    b_until = _parse_time(args.b_until) if args.b_until else _now_ms()
    b_since = _parse_time(args.b_since) if args.b_since else b_until - days * DAY_MS
    a_until = _parse_time(args.a_until) if args.a_until else b_since
    a_since = _parse_time(args.a_since) if args.a_since else a_until - days * DAY_MS
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
    result = compare(_store(args), baseline, current)
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
    result = list_sessions(_store(args), since, until, limit=args.limit, roll_up=not args.flat)
    if args.json:
        _print_json(result)
    else:
        print_sessions(result, _console(), tz=_tz(args))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from hermetry.analytics.sessions import SessionNotFound, session_detail
    from hermetry.surfaces.render import print_session

    try:
        detail = session_detail(_store(args), args.session)
    except SessionNotFound as exc:
        raise UsageError(str(exc.args[0])) from exc
    if args.json:
        _print_json(detail)
    else:
        print_session(detail, _console(), tz=_tz(args))
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

    from hermetry.surfaces.export import ExportError, export_rows

    since, until = _window(args, default_days=None)
    to_file = args.output not in (None, "-")
    try:
        if not to_file:
            export_rows(_store(args), args.table, args.format, None, since_ms=since, until_ms=until)
            return 0
        with _progress(f"exporting {args.table}") as progress:
            n = export_rows(_store(args), args.table, args.format, args.output, since_ms=since, until_ms=until,
                            progress=progress)
        Console(stderr=True).print(f"{n:,} {args.table} rows → {args.output}")
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``hermetry import``: Hermes' state.db history into the telemetry file (read-only, idempotent)."""
    import dataclasses

    from hermetry.plugin import ImportRefused, import_history

    home = Path(args.hermes_home).expanduser() if args.hermes_home else config.hermes_home()
    try:
        with _progress("importing sessions") as progress:
            results = import_history(home, _db(args), all_profiles=args.all_profiles, progress=progress)
    except ImportRefused as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        _print_json({"schema": "hermetry.import.v1", "results": [
            {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(r).items()} for r in results]})
        return 1 if any(r.error for r in results) else 0
    from hermetry.surfaces.text import count, duration, plural

    out = _console()
    for r in results:
        if r.error:
            out.print(f"{r.source_path}: {r.error}", style="red", markup=False)
            continue
        out.print(f"{r.source_path}: {plural(r.sessions_seen, 'session')} ({count(r.sessions_new)} new, "
                  f"{count(r.sessions_changed)} changed, {count(r.sessions_unchanged)} unchanged, "
                  f"{count(r.sessions_live)} already captured live); {plural(r.turns, 'turn')}, "
                  f"{plural(r.api_calls, 'token row')}, {plural(r.tool_calls, 'tool call')} "
                  f"in {duration(r.seconds * 1000)}", markup=False)
    return 1 if any(r.error for r in results) else 0


def cmd_reprice(args: argparse.Namespace) -> int:
    """``hermetry reprice``: re-estimate stored calls with today's prices, keeping what they replace."""
    from hermetry.cost import PriceFileError, load_pricing_config
    from hermetry.cost.reprice import reprice

    path = Path(args.prices).expanduser() if args.prices else config.price_file_path()
    try:
        pricing = load_pricing_config(path) if path is not None and path.exists() else None
    except PriceFileError as exc:
        raise UsageError(str(exc)) from exc
    since, until = _window(args, default_days=None)
    with _progress("repricing API calls") as progress:
        result = reprice(_db(args), config=pricing, since_ms=since or 0.0, until_ms=until, progress=progress)
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

    conn = connect(_db(args))
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


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``hermetry dashboard``: the web dashboard, or install/remove the tab in ``hermes dashboard``."""
    from hermetry.surfaces.dashboard.cli import run_dashboard

    return run_dashboard(args, _store(args), UsageError)


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
        server = metrics.MetricsServer(str(_db(args)), host=args.host, port=args.port)
    except metrics.MetricsUnavailable as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    print(f"serving {server.url} from {_db(args)} (Ctrl-C to stop)", flush=True)
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
    p.add_argument("--days", type=float, default=None, help=f"window: {days_help}")
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
    sub = parser.add_subparsers(dest="hermetry_command", metavar="COMMAND")

    p = sub.add_parser("insights", help="latency, tokens, cost and outcomes for a time window")
    _add_window(p)
    _add_filters(p)
    p.add_argument("--by", action="append", metavar="DIM",
                   help="break down by source, model, provider, toolset, tool, session_type, profile or day "
                        "(repeatable; default: source and model)")
    _add_json(p, "hermetry.insights.v1")
    _add_utc(p)
    p.set_defaults(hermetry_func=cmd_insights)

    p = sub.add_parser("compare", help="two windows side by side; flags significant regressions")
    p.add_argument("--days", type=float, default=7.0,
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
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--flat", action="store_true",
                   help="one row per session, instead of subagents and continuations rolled into their conversation")
    _add_json(p, "hermetry.sessions.v1")
    _add_utc(p)
    p.set_defaults(hermetry_func=cmd_sessions)

    p = sub.add_parser("show", help="one session: turns, a waterfall of where the time went, lineage, totals")
    p.add_argument("session", help="session id (a unique prefix is enough)")
    _add_json(p, "hermetry.session.v1")
    _add_utc(p)
    p.set_defaults(hermetry_func=cmd_show)

    p = sub.add_parser("export", help="raw event rows as JSON Lines, CSV or Parquet")
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl", help="default jsonl")
    p.add_argument("--table", choices=("api_calls", "tool_calls", "turns", "sessions"), default="api_calls",
                   help="default api_calls")
    _add_window(p, days_help="the last N days (default: everything)")
    p.add_argument("--output", "-o", help="file to write (default: standard output; Parquet needs a file)")
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
    p.add_argument("--grace-hours", type=float, default=6.0,
                   help="close what has been idle for longer than this (default 6)")
    _add_json(p, "hermetry.reconcile.v1")
    p.set_defaults(hermetry_func=cmd_reconcile)

    p = sub.add_parser("sync", help="forward events spooled while PostgreSQL was unreachable (docs/fleet.md)")
    p.add_argument("--url", help="the PostgreSQL store (default: HERMETRY_DB / hermetry.db_path)")
    p.add_argument("--spool", help="the spool file (default: hermetry.spool_path or $HERMES_HOME/hermetry/spool.db)")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds (default: until done)")
    _add_json(p, "hermetry.sync.v1")
    p.set_defaults(hermetry_func=cmd_sync)

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
    p.set_defaults(hermetry_func=lambda a: print(_db(a)) or 0)


def dispatch(args: argparse.Namespace) -> int:
    func = getattr(args, "hermetry_func", None)
    if func is None:
        args.hermetry_parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except UsageError as exc:
        print(f"hermetry: {exc}", file=sys.stderr)
        return 2
    except SinkUnavailable as exc:  # a fleet's PostgreSQL store that cannot be reached
        print(f"hermetry: cannot reach the telemetry store: {exc} (is PostgreSQL up? check HERMETRY_DB)",
              file=sys.stderr)
        return 1
    except BrokenPipeError:  # `hermetry … | head`
        sys.stderr.close()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hermetry", description="Telemetry and analytics for the Hermes Agent.")
    add_commands(parser)
    parser.set_defaults(hermetry_parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return dispatch(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
