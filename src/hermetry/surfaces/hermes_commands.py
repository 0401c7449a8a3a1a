"""hermetry inside Hermes: ``hermes telemetry …`` and the ``/telemetry`` slash command.

Both are views over the same analytics call as the ``hermetry`` CLI; the slash command
formats it for a chat message. A failure here answers with a short error, never raises
into Hermes.

Registering imports nothing heavy: the analytics, rich and the CLI load when a command runs,
so enabling the plugin adds nothing to Hermes' start-up beyond the capture itself.
"""

from __future__ import annotations

import argparse
from typing import Any


def slash_usage() -> str:
    from hermetry.analytics.report import DIMENSIONS

    return "/telemetry [days] [" + "|".join(DIMENSIONS) + "]"


def _setup(parser: argparse.ArgumentParser) -> None:
    from hermetry.surfaces import cli

    cli.add_commands(parser)
    parser.set_defaults(hermetry_parser=parser)


def _dispatch(args: argparse.Namespace) -> int:
    from hermetry.surfaces import cli

    return cli.dispatch(args)


def slash_telemetry(raw_args: str = "") -> str:
    """``/telemetry [days] [breakdown]`` → the insights report as chat text.

    ``days`` is a number (``7``, ``7d``, ``0.5``); ``breakdown`` one of the report's dimensions.
    """
    try:
        from hermetry import config
        from hermetry.analytics.report import DIMENSIONS, Query, insights
        from hermetry.surfaces.render import chat_text

        days, group_by = 7.0, ("source",)
        for token in (raw_args or "").split():
            token = token.strip().lower()
            try:
                days = float(token.rstrip("d"))
            except ValueError:
                pass
            else:
                if not days > 0:
                    return f"days must be more than 0. Usage: {slash_usage()}"
                continue
            if token in DIMENSIONS:
                group_by = (token,)
            else:
                return f"unknown argument {token!r}. Usage: {slash_usage()}"
        report = insights(config.db_path(), Query.last_days(days, group_by=group_by))
        return chat_text(report)
    except Exception as exc:  # answer in chat, never raise into Hermes
        return f"hermetry: could not build the report ({type(exc).__name__}: {exc})"


def register(ctx: Any) -> None:
    ctx.register_cli_command(
        "telemetry",
        "hermetry: latency, tokens, cost and outcomes of your agent's runs",
        _setup,
        _dispatch,
        description="Telemetry and analytics for Hermes, recorded by the hermetry plugin.",
    )
    ctx.register_command(
        "telemetry",
        slash_telemetry,
        description="hermetry: how long, how many tokens, how much money, how often it completes",
        args_hint="[days] [breakdown]",
    )
