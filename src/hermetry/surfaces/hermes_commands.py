"""hermetry inside Hermes: ``hermes telemetry …`` and the ``/telemetry`` slash command.

Both are views over the same analytics call as the ``hermetry`` CLI; the slash command
formats it for a chat message. A failure here answers with a short error, never raises
into Hermes.

Registering imports nothing heavy: the analytics, rich and the CLI load when a command runs,
so enabling the plugin adds nothing to Hermes' start-up beyond the capture itself.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
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
                float(token.rstrip("d"))
            except ValueError:
                pass
            else:  # a number: the CLI's --days rule (finite, above 0, at most MAX_DAYS)
                from hermetry.surfaces.cli import _days_type

                try:
                    days = _days_type(token)
                except argparse.ArgumentTypeError as exc:
                    return f"hermetry: days: {exc}. Usage: {slash_usage()}"
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
        rollup_refresher(db).kick()  # for the next reports; this one reads dirty hours raw
        report = insights(db, Query.last_days(days, group_by=group_by))
        return chat_text(report)
    except Exception as exc:  # answer in chat, never raise into Hermes
        return f"hermetry: could not build the report ({type(exc).__name__}: {exc})"


#: One background rollup refresher per store this process answers ``/telemetry`` for.
_REFRESHERS: dict[str, Any] = {}


def rollup_refresher(db: Any) -> Any:
    """The store's :class:`hermetry.stores.rollup_refresh.RollupRefresher`: ``/telemetry`` runs in
    Hermes' process (a gateway answers it for weeks), so the rebuild of the hours written since
    runs in a child process at ``nice`` 10 (``child=True``), at most every minute and within the
    refresh budget — never on the thread that answers, and never holding the interpreter lock the
    agent's threads need."""
    from hermetry.stores.rollup_refresh import RollupRefresher

    key = str(db)
    refresher = _REFRESHERS.get(key)
    if refresher is None:
        refresher = _REFRESHERS[key] = RollupRefresher(db, name="hermetry-telemetry-rollups", child=True)
    return refresher


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


# -- who may see telemetry ---------------------------------------------------------------------
#
# /telemetry shows the whole deployment's usage and spend. In the CLI and through the local API
# server (whose clients hold its key) the operator is the one asking. On a messaging gateway
# anyone who can message the bot could ask, so there it answers only:
#
# * users listed in ``hermetry: {telemetry_command: {allow: [...]}}`` — ``"USER_ID"``,
#   ``"PLATFORM:USER_ID"``, ``"PLATFORM:*"`` or ``"*"`` (everyone);
# * the platform's admins when the operator set Hermes' own ``allow_admin_from`` (Hermes'
#   slash-command access control, gateway/slash_access.py), or everyone Hermes lets run
#   ``/telemetry`` when it is listed in that platform's ``user_allowed_commands``.
#
# Everyone else gets one line saying it is not enabled for them. Who is asking comes from
# Hermes' ``pre_gateway_dispatch`` hook, which runs in the same task just before the command.

_SENDER: ContextVar[tuple[Any, Any] | None] = ContextVar("hermetry_telemetry_sender", default=None)
_GATEWAY_SEEN = False


def remember_sender(event: Any = None, gateway: Any = None, **_: Any) -> None:
    """``pre_gateway_dispatch`` hook: note who sent the message this task is handling."""
    global _GATEWAY_SEEN
    try:
        _GATEWAY_SEEN = True
        _SENDER.set((getattr(event, "source", None), getattr(gateway, "config", None)))
    except Exception:
        pass


def _platform_name(source: Any) -> str:
    platform = getattr(source, "platform", None)
    return str(getattr(platform, "value", platform) or "unknown")


def telemetry_denied() -> str | None:
    """None when the one asking may see telemetry here, else the line to answer with."""
    try:
        sender = _SENDER.get()
        if sender is None:
            if _GATEWAY_SEEN:  # a gateway, but this message's sender is unknown: not shown
                return "hermetry: /telemetry is not enabled here (the sender is unknown)"
            return None  # the CLI: the operator's own terminal
        source, gateway_config = sender
        platform, user = _platform_name(source), str(getattr(source, "user_id", None) or "")
        from hermetry import config

        section = config.hermetry_settings().get("telemetry_command")
        allow = section.get("allow") if isinstance(section, dict) else None
        if isinstance(allow, str):
            allow = [allow]
        allowed = {str(a).strip() for a in allow} if isinstance(allow, list) else set()
        if allowed & {"*", f"{platform}:*"} or (user and allowed & {user, f"{platform}:{user}"}):
            return None
        try:
            from gateway.slash_access import policy_for_source

            policy = policy_for_source(gateway_config, source)
            if policy.enabled and (policy.is_admin(user) or "telemetry" in policy.user_allowed_commands):
                return None
        except Exception:
            pass
        return (f"hermetry: /telemetry is not enabled for you here (your id: {platform}:{user or '?'}; "
                "the operator can allow it in config.yaml, hermetry: {telemetry_command: {allow: [...]}}, "
                "or list you in the platform's allow_admin_from)")
    except Exception:
        return "hermetry: /telemetry is not enabled here"


#: At most one report is computed at a time for the slash command (a gateway's users could ask
#: together; each report reads the whole window).
_REPORT_LOCK = threading.Lock()
BUSY = "hermetry: a /telemetry report is being computed right now; ask again in a moment"


def _report_once(raw_args: str) -> str:
    if not _REPORT_LOCK.acquire(blocking=False):
        return BUSY
    try:
        return slash_telemetry(raw_args)
    finally:
        _REPORT_LOCK.release()


async def _report_in_thread(raw_args: str) -> str:
    import asyncio

    return await asyncio.to_thread(_report_once, raw_args)


def slash_telemetry_command(raw_args: str = "") -> str | Coroutine[Any, Any, str]:
    """The ``/telemetry`` slash command: the report, for those allowed to see it.

    Called inside a running event loop (Hermes' gateway calls plugin commands from its async
    dispatch and awaits a returned coroutine), it returns a coroutine that computes the report
    in a worker thread, so the gateway's other messages are not held up; in the CLI (no
    gateway dispatch seen in this process) it answers directly. Who is asking is checked here, in the caller's task.
    """
    denied = telemetry_denied()
    if denied is not None:
        return denied
    if not _GATEWAY_SEEN:
        # The CLI/TUI (prompt_toolkit runs a loop of its own): answer in place, so the answer is
        # printed before the next command (`/quit`) is handled.
        return _report_once(raw_args)
    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        return _report_once(raw_args)
    return _report_in_thread(raw_args)


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
    ctx.register_hook("pre_gateway_dispatch", remember_sender)
    ctx.register_command(
        "telemetry",
        slash_telemetry_command,
        description="hermetry: how long, how many tokens, how much money, how often it completes",
        args_hint="[days] [breakdown]",
    )
    ctx.register_middleware("llm_execution", api_server_slash_middleware)
