"""Where hermetry keeps its data and what the operator turned on.

The telemetry file is, in order of precedence:

1. ``$HERMETRY_DB`` (a path),
2. ``hermetry.db_path`` in Hermes' ``$HERMES_HOME/config.yaml``,
3. ``$HERMES_HOME/hermetry/telemetry.db`` (``HERMES_HOME`` defaults to ``~/.hermes``).

Either may instead be a ``postgresql://`` URL: a fleet's shared PostgreSQL store
(docs/fleet.md), with a local spool file for when the network is down (``spool_path``). Every
row is stamped with this machine's host id: ``$HERMETRY_HOST``, ``hermetry.host``, or the hostname.

hermetry never writes to Hermes' own ``state.db``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_DB = "HERMETRY_DB"


def hermes_home() -> Path:
    """Hermes' home folder, as Hermes itself resolves it."""
    env = os.environ.get("HERMES_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".hermes"


def hermes_config(home: Path | None = None) -> dict[str, Any]:
    """Hermes' config.yaml as a dict ({} when missing or unreadable)."""
    path = (home or hermes_home()) / "config.yaml"
    try:
        import yaml

        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        return data if isinstance(data, dict) else {}
    except Exception:
        return {}


#: Every key of the ``hermetry:`` section and the YAML types it takes. A key that is not here,
#: or a value of another type, gets one warning naming it (``check_settings``) and is ignored
#: where it is read. A part that adds a setting adds its key here.
SETTINGS: dict[str, tuple[type, ...]] = {
    "db_path": (str,),            # the telemetry file (or a postgresql:// URL: docs/fleet.md)
    "price_file": (str,),         # the operator's price file (docs/cost.md)
    "telemetry_command": (dict,),  # who may run /telemetry on messaging gateways (docs/reliability.md)
    "spool_path": (str,),         # PostgreSQL store: local spool for undelivered batches
    "host": (str,),               # this machine's id in a fleet
    "sinks": (list, str),         # extra sinks / exporters to turn on
    "otlp": (dict,),              # the OTLP exporter's settings
    "prometheus": (dict,),        # not implemented: see NOT_IMPLEMENTED
    "dashboard": (dict, bool),    # not implemented: see NOT_IMPLEMENTED
    "commands": (bool,),          # register `hermes telemetry` and /telemetry
}
#: Keys (and ``sinks:`` names) the operator may expect but nothing reads yet: each gets one
#: "not implemented" warning saying what to use instead, never silence. A part that implements
#: one removes it here.
NOT_IMPLEMENTED: dict[str, str] = {
    "prometheus": "Prometheus metrics are served by `hermetry metrics serve` (docs/prometheus.md)",
    "dashboard": "the dashboard is started with `hermetry dashboard` (docs/dashboard.md)",
}
#: The names ``hermetry.sinks`` turns on.
SINK_NAMES = ("otlp",)
#: The keys of ``hermetry.telemetry_command``.
TELEMETRY_COMMAND_SETTINGS: dict[str, tuple[type, ...]] = {"allow": (list, str)}


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "text", list: "a list", dict: "a mapping", bool: "true/false", int: "a number",
             float: "a number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def check_settings(section: Any) -> list[str]:
    """What is wrong with a ``hermetry:`` section: one line per unknown or wrong-typed key."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return [f"the 'hermetry' section of config.yaml must be a mapping, not {type(section).__name__}; "
                "it is ignored"]
    problems = []
    for key, value in section.items():
        types = SETTINGS.get(str(key))
        if types is None:
            known = ", ".join(sorted(SETTINGS))
            problems.append(f"unknown config key hermetry.{key} is ignored (known keys: {known})")
        elif value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            problems.append(f"config key hermetry.{key} must be {_type_names(types)}, not "
                            f"{type(value).__name__} {value!r:.40}; it is ignored")
        elif key in NOT_IMPLEMENTED:
            problems.append(f"config key hermetry.{key} is not implemented: it is ignored "
                            f"({NOT_IMPLEMENTED[key]})")
        elif key == "sinks" and value is not None:
            for name in [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []:
                label = str(name).strip().lower() if isinstance(name, str) else None
                if label in NOT_IMPLEMENTED:
                    problems.append(f"hermetry.sinks: {label} is not implemented: it is ignored "
                                    f"({NOT_IMPLEMENTED[label]})")
                elif label not in SINK_NAMES:
                    problems.append(f"hermetry.sinks: unknown sink {name!r:.40} is ignored "
                                    f"(known: {', '.join(SINK_NAMES)})")
        elif key == "telemetry_command" and isinstance(value, dict):
            for sub, subvalue in value.items():
                subtypes = TELEMETRY_COMMAND_SETTINGS.get(str(sub))
                if subtypes is None:
                    problems.append(f"unknown config key hermetry.telemetry_command.{sub} is ignored "
                                    f"(known: {', '.join(TELEMETRY_COMMAND_SETTINGS)})")
                elif subvalue is not None and not isinstance(subvalue, subtypes):
                    problems.append(f"config key hermetry.telemetry_command.{sub} must be "
                                    f"{_type_names(subtypes)}, not {type(subvalue).__name__}; it is ignored")
    return problems


def hermetry_settings(home: Path | None = None) -> dict[str, Any]:
    """The ``hermetry:`` section of Hermes' config.yaml; an unknown or wrong-typed key is reported
    once per process (one line naming it, ``hermetry.recorder.notice``)."""
    section = hermes_config(home).get("hermetry")
    try:
        problems = check_settings(section)
        if problems:
            from hermetry.recorder.notice import warn_once

            for problem in problems:
                warn_once(f"config:{problem}", problem)
    except Exception:
        pass
    return section if isinstance(section, dict) else {}


def _is_url(value: str) -> bool:
    return value.lower().startswith(("postgresql://", "postgres://"))


def store_url(home: Path | None = None) -> str | None:
    """The PostgreSQL store's URL when ``HERMETRY_DB`` / ``hermetry.db_path`` is one, else None."""
    env = os.environ.get(ENV_DB, "").strip()
    if env:
        return env if _is_url(env) else None
    configured = hermetry_settings(home).get("db_path")
    if isinstance(configured, str) and _is_url(configured.strip()):
        return configured.strip()
    return None


def db_path(home: Path | None = None) -> Path:
    """The telemetry file to write and read (the local file, when the store is a URL)."""
    env = os.environ.get(ENV_DB, "").strip()
    if env and not _is_url(env):
        return Path(env).expanduser()
    configured = hermetry_settings(home).get("db_path")
    if isinstance(configured, str) and configured.strip() and not _is_url(configured.strip()):
        # relative to HERMES_HOME, so every process (started from any folder) finds the same file
        return (home or hermes_home()) / Path(configured.strip()).expanduser()
    return (home or hermes_home()) / "hermetry" / "telemetry.db"


def store(home: Path | None = None) -> Path | str:
    """What the reports read: the PostgreSQL store's URL when one is configured, else the file."""
    return store_url(home) or db_path(home)


def spool_path(home: Path | None = None) -> Path:
    """Where a PostgreSQL store keeps the batches it could not deliver yet (``hermetry.spool_path``,
    default ``$HERMES_HOME/hermetry/spool.db``)."""
    configured = hermetry_settings(home).get("spool_path")
    if isinstance(configured, str) and configured.strip():
        return (home or hermes_home()) / Path(configured.strip()).expanduser()
    return (home or hermes_home()) / "hermetry" / "spool.db"


ENV_HOST = "HERMETRY_HOST"


def host(home: Path | None = None) -> str:
    """This machine's id in a fleet: ``$HERMETRY_HOST``, ``hermetry.host``, or the hostname."""
    env = os.environ.get(ENV_HOST, "").strip()
    if env:
        return env
    configured = hermetry_settings(home).get("host")
    if isinstance(configured, str) and configured.strip():
        return configured.strip()
    import socket

    return socket.gethostname()


ENV_PRICES = "HERMETRY_PRICES"


def price_file_path(home: Path | None = None) -> Path | None:
    """The operator's price file: ``$HERMETRY_PRICES``, ``hermetry.price_file``, or
    ``$HERMES_HOME/hermetry/prices.yaml`` when it exists (docs/cost.md)."""
    env = os.environ.get(ENV_PRICES, "").strip()
    if env:
        return Path(env).expanduser()
    configured = hermetry_settings(home).get("price_file")
    if isinstance(configured, str) and configured.strip():
        return (home or hermes_home()) / Path(configured.strip()).expanduser()
    default = (home or hermes_home()) / "hermetry" / "prices.yaml"
    return default if default.exists() else None
