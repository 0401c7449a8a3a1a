"""Where hermetry keeps its data and what the operator turned on.

The telemetry file is, in order of precedence:

1. ``$HERMETRY_DB`` (a path),
2. ``hermetry.db_path`` in Hermes' ``$HERMES_HOME/config.yaml``,
3. ``$HERMES_HOME/hermetry/telemetry.db`` (``HERMES_HOME`` defaults to ``~/.hermes``).

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


def hermetry_settings(home: Path | None = None) -> dict[str, Any]:
    """The ``hermetry:`` section of Hermes' config.yaml."""
    section = hermes_config(home).get("hermetry")
    return section if isinstance(section, dict) else {}


def db_path(home: Path | None = None) -> Path:
    """The telemetry file to write and read."""
    env = os.environ.get(ENV_DB, "").strip()
    if env:
        return Path(env).expanduser()
    configured = hermetry_settings(home).get("db_path")
    if isinstance(configured, str) and configured.strip():
        # relative to HERMES_HOME, so every process (started from any folder) finds the same file
        return (home or hermes_home()) / Path(configured.strip()).expanduser()
    return (home or hermes_home()) / "hermetry" / "telemetry.db"


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
