"""hermetry inside Hermes: ``hermes telemetry …`` and the ``/telemetry`` slash command.

Both are views over the same analytics call as the ``hermetry`` CLI; the slash command
formats it for a chat message. A failure here answers with a short error, never raises
into Hermes.

Registering imports nothing heavy: the analytics, rich and the CLI load when a command runs,
so enabling the plugin adds nothing to Hermes' start-up beyond the capture itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

#: Set by the composition root (hermetry.plugin): tells the capture that a model request was
#: answered by hermetry itself (``/telemetry`` through the API server), so it is not recorded.
MARK_SYNTHETIC: Callable[[object], None] | None = None


def slash_usage() -> str:
    from hermetry.analytics.query import DIMENSIONS

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
        from hermetry.stores.sqlite import StoreError, connect

        db = config.store()
        try:
            if not isinstance(db, str):  # a file (a PostgreSQL URL is checked by the query itself)
                connect(db, readonly=True).close()
        except StoreError as exc:
            return f"hermetry: {exc} ({getattr(exc, 'hint', '')})"
        report = insights(db, Query.last_days(days, group_by=group_by))
        return chat_text(report)
    except Exception as exc:  # answer in chat, never raise into Hermes
        return f"hermetry: could not build the report ({type(exc).__name__}: {exc})"


def _last_user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # multimodal parts: the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else None
    return None


def api_server_slash_middleware(request: Any = None, next_call: Any = None, **context: Any) -> Any:
    """``/telemetry`` through Hermes' API server, which (in 0.19.0) dispatches no slash commands.

    An ``llm_execution`` middleware: when an API-server turn's user message is a ``/telemetry``
    command, answer it with the report instead of calling the model (no tokens are spent, and no
    model call is recorded); anything else goes to the model untouched.
    """
    try:
        if context.get("platform") == "api_server" and isinstance(request, dict):
            text = _last_user_text(request.get("messages"))
            first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
            command, _, rest = first.partition(" ")
            if command == "/telemetry":
                if MARK_SYNTHETIC is not None:
                    MARK_SYNTHETIC(context.get("api_request_id"))
                return _chat_completion(slash_telemetry(rest), request.get("model"))
    except Exception:
        pass
    return next_call()


def _chat_completion(text: str, model: Any) -> Any:
    import time

    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({
        "id": "hermetry-telemetry", "object": "chat.completion", "created": int(time.time()),
        "model": model if isinstance(model, str) else "hermetry",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    })


def _one_shot_process() -> bool:
    """``hermes -z`` / ``hermes chat -q``: no chat prompt in this process, so no slash commands.

    Registering a slash command makes Hermes load its command table (and prompt_toolkit) to
    check for clashes — ~100 ms a one-shot run would pay for a command it cannot receive.
    """
    import sys

    from hermetry.model.sessions import one_shot_kind

    return one_shot_kind(sys.argv[1:]) is not None


def register(ctx: Any, *, mark_synthetic: Callable[[object], None] | None = None) -> None:
    """Register ``hermes telemetry``, ``/telemetry`` and the API server's ``/telemetry``."""
    global MARK_SYNTHETIC
    MARK_SYNTHETIC = mark_synthetic
    if _one_shot_process():
        return
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
    ctx.register_middleware("llm_execution", api_server_slash_middleware)
