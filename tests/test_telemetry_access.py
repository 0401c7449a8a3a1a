"""Who may see telemetry: on messaging gateways ``/telemetry`` answers only the users the
operator allows (hermetry's allow list, or Hermes' own admins / allowed commands); the CLI and
the local API server keep it. In process with Hermes' real gateway types; through a real
gateway in test_surfaces_hermes.py."""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

import pytest

from hermetry.surfaces import hermes_commands
from hermetry.surfaces.hermes_commands import (
    remember_sender,
    slash_telemetry_command,
    telemetry_denied,
)


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(hermes_commands, "_GATEWAY_SEEN", False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HERMES_HOME", str(home))
    monkeypatch.setenv("HERMETRY_DB", str(tmp_path / "none.db"))
    return home


def _source(platform: str = "telegram", user: str | None = "1001", chat_type: str = "dm") -> Any:
    from gateway.config import Platform
    from gateway.session import SessionSource

    return SessionSource(platform=Platform(platform), chat_id="c1", chat_type=chat_type, user_id=user)


def _gateway_config(extra: dict[str, Any] | None = None, platform: str = "telegram") -> Any:
    from gateway.config import GatewayConfig, Platform, PlatformConfig

    return GatewayConfig(platforms={Platform(platform): PlatformConfig(enabled=True, extra=extra or {})})


class _Event:
    def __init__(self, source: Any) -> None:
        self.source = source


class _Gateway:
    def __init__(self, config: Any) -> None:
        self.config = config


def ask(source: Any, config: Any) -> str | None:
    """What /telemetry says to this sender, in a task context of its own (as the gateway's)."""
    def run() -> str | None:
        remember_sender(event=_Event(source), gateway=_Gateway(config))
        return telemetry_denied()

    return contextvars.copy_context().run(run)


def test_the_cli_keeps_it() -> None:
    assert telemetry_denied() is None
    assert slash_telemetry_command("7").startswith("hermetry: no telemetry file at")  # the report's answer


def test_a_gateway_denies_everyone_by_default_and_says_how_to_allow(fresh: Path) -> None:
    denied = ask(_source(), _gateway_config())
    assert denied is not None and "not enabled for you" in denied and "telegram:1001" in denied
    assert "telemetry_command" in denied and "allow_admin_from" in denied
    # once a gateway runs in this process, a message whose sender is unknown is denied too
    assert telemetry_denied() is not None and "not enabled" in slash_telemetry_command("7")


@pytest.mark.parametrize("entry, telegram_1001, telegram_2002, discord_1001", [
    ("1001", True, False, True), ("telegram:1001", True, False, False),
    ("telegram:*", True, True, False), ("*", True, True, True)])
def test_the_allow_list_lets_those_users_in(fresh: Path, entry: str, telegram_1001: bool, telegram_2002: bool,
                                            discord_1001: bool) -> None:
    (fresh / "config.yaml").write_text(f'hermetry:\n  telemetry_command:\n    allow: ["{entry}"]\n')
    assert (ask(_source(), _gateway_config()) is None) is telegram_1001
    assert (ask(_source(user="2002"), _gateway_config()) is None) is telegram_2002
    assert (ask(_source("discord", "1001"), _gateway_config(platform="discord")) is None) is discord_1001


def test_hermes_admins_and_hermes_allowed_commands_let_a_user_in() -> None:
    admins = _gateway_config({"allow_admin_from": ["1001"]})
    assert ask(_source(user="1001"), admins) is None  # the platform's admin (owner)
    assert ask(_source(user="2002"), admins) is not None  # a user, the admin list set: no
    opened = _gateway_config({"allow_admin_from": ["1001"], "user_allowed_commands": ["telemetry"]})
    assert ask(_source(user="2002"), opened) is None  # the operator gave users /telemetry in Hermes
    # admins are per scope in Hermes: a DM admin is not a group admin
    assert ask(_source(user="1001", chat_type="group"), admins) is not None


def test_the_api_server_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hermes_commands, "_GATEWAY_SEEN", True)
    answer = hermes_commands.api_server_slash_middleware(
        request={"messages": [{"role": "user", "content": "/telemetry 7"}], "model": "m"},
        next_call=lambda: pytest.fail("the model was called"), platform="api_server",
        api_request_id="test-telemetry-access")
    assert "no telemetry file at" in answer.choices[0].message.content
    from hermetry.sources.hermes import stream_probe

    stream_probe.take_probe("test-telemetry-access")  # leave no mark behind for other tests
