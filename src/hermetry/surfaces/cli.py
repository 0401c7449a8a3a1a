"""The ``hermetry`` command line — and, mounted by the plugin, ``hermes telemetry``.

Every command is a thin layer over one library call (``hermetry.analytics.report.insights``
and friends), so anything the CLI shows a Python user can get too. ``--json`` prints the
library's result as it is.

The parser is built by :func:`add_commands`, which fills any argparse (sub)parser: the
standalone ``hermetry`` program and Hermes' ``hermes telemetry`` get the same command tree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hermetry import config


def _parse_time(value: str) -> float:
    """ISO date/time (UTC if no zone) → epoch ms."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000


def _db(args: argparse.Namespace) -> Path:
    return Path(args.db).expanduser() if getattr(args, "db", None) else config.db_path()


def _query(args: argparse.Namespace) -> Any:
    from hermetry.analytics.report import Query

    filters = {k: v for k in ("source", "model", "provider", "session_type", "profile") if (v := getattr(args, k, None))}
    group_by = tuple(args.by) if args.by else ("source", "model")
    if args.since or args.until:
        until = _parse_time(args.until) if args.until else datetime.now(UTC).timestamp() * 1000
        since = _parse_time(args.since) if args.since else until - args.days * 86_400_000
        return Query(since_ms=since, until_ms=until, filters=filters, group_by=group_by)
    return Query.last_days(args.days, filters=filters, group_by=group_by)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def cmd_insights(args: argparse.Namespace) -> int:
    from hermetry.analytics.report import insights
    from hermetry.surfaces.render import print_report

    report = insights(_db(args), _query(args))
    if args.json:
        _print_json(report)
    else:
        print_report(report)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hermetry.demo import run_demo

    run_demo(Path(args.dir).resolve())
    return 0


def _add_window(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=float, default=7.0, help="window: the last N days (default 7)")
    p.add_argument("--since", help="window start (ISO date/time, UTC unless a zone is given)")
    p.add_argument("--until", help="window end (ISO date/time; default now)")
    p.add_argument("--source", help="only sessions from this source (cli, telegram, api_server, cron, …)")
    p.add_argument("--model", help="only this model")
    p.add_argument("--provider", help="only this provider")
    p.add_argument("--session-type", dest="session_type", help="only this session type (oneshot, interactive, …)")
    p.add_argument("--profile", help="only this Hermes profile")
    p.add_argument("--by", action="append", metavar="DIM",
                   help="break down by source, model, provider, session_type, profile or day (repeatable)")


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Fill ``parser`` with hermetry's subcommands (used by ``hermetry`` and ``hermes telemetry``)."""
    parser.add_argument("--db", help="telemetry file (default: $HERMETRY_DB or $HERMES_HOME/hermetry/telemetry.db)")
    sub = parser.add_subparsers(dest="hermetry_command", metavar="COMMAND")

    p = sub.add_parser("insights", help="latency, tokens, cost and outcomes for a time window")
    _add_window(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON (docs/json.md)")
    p.set_defaults(hermetry_func=cmd_insights)

    p = sub.add_parser("demo", help="drive real Hermes sessions against a scripted model and show the insights")
    p.add_argument("--dir", default=".demo", help="where the demo's Hermes homes and telemetry go (default .demo)")
    p.set_defaults(hermetry_func=cmd_demo)

    p = sub.add_parser("path", help="print the telemetry file in use")
    p.set_defaults(hermetry_func=lambda a: print(_db(a)) or 0)


def dispatch(args: argparse.Namespace) -> int:
    func = getattr(args, "hermetry_func", None)
    if func is None:
        args.hermetry_parser.print_help()
        return 2
    return int(func(args) or 0)


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
