"""``hermetry dashboard``'s arguments and command (registered by ``surfaces/cli.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hermetry.surfaces.dashboard import DEFAULT_REFRESH_S


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other address requires the token printed at start)")
    p.add_argument("--port", type=int, default=8719, help="port (default 8719; 0 picks a free one)")
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_S, metavar="SECONDS",
                   help=f"how often open pages check the telemetry file for new data (default {DEFAULT_REFRESH_S:g})")
    p.add_argument("--install-hermes-tab", action="store_true",
                   help="add a Telemetry tab to `hermes dashboard` ($HERMES_HOME/plugins/hermetry/dashboard/) and exit")
    p.add_argument("--remove-hermes-tab", action="store_true", help="remove that tab and exit")


def run_dashboard(args: argparse.Namespace, db: Path | str, usage_error: type[Exception]) -> int:
    from hermetry.surfaces.dashboard import hermes_tab

    if args.install_hermes_tab and args.remove_hermes_tab:
        raise usage_error("--install-hermes-tab and --remove-hermes-tab exclude each other")
    try:
        if args.install_hermes_tab:
            where = hermes_tab.install_hermes_tab()
            print(f"Telemetry tab written to {where}")
            print("restart `hermes dashboard` to see it (hermetry must be in plugins.enabled: "
                  "`hermes plugins enable hermetry`)")
            return 0
        if args.remove_hermes_tab:
            removed = hermes_tab.remove_hermes_tab()
            print(f"removed {removed}" if removed else "no Telemetry tab installed")
            return 0
    except (FileExistsError, OSError) as exc:
        print(f"hermetry: {exc}", file=sys.stderr)
        return 1
    if not 0 <= args.port <= 65535:
        raise usage_error(f"--port {args.port}: use 0..65535")
    if not args.refresh > 0:
        raise usage_error("--refresh must be positive")
    from hermetry.surfaces.dashboard.server import DashboardServer

    try:
        server = DashboardServer(db, host=args.host, port=args.port, refresh_s=args.refresh)
    except OSError as exc:  # the environment, not the command line: exit status 1 (docs/cli.md)
        print(f"hermetry: cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
              "(another --port, or --port 0 for a free one)", file=sys.stderr)
        return 1
    print(f"hermetry dashboard: {server.url}", flush=True)
    print(f"reading {server.api.shown_db()}" + ("" if server.api.exists() else " (no telemetry recorded yet)"),
          flush=True)
    if server.token:
        print(f"listening on {args.host}: every request needs the token in that URL", flush=True)
    print("Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
