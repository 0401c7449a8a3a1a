"""Run the real ``hermes`` CLI in a throw-away home, with the hermetry plugin enabled.

Used by hermetry's own tests and by ``make demo``; useful to anyone who wants to test what
their Hermes setup records. Pair it with :class:`hermetry.testing.ScriptedServer`::

    with ScriptedServer([ScriptedReply(content="hi")]) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        result = home.oneshot("hello")
        report = home.insights()
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MODEL = "scripted-model"


def hermes_executable() -> str:
    """The ``hermes`` next to this interpreter (the venv under test), else the one on PATH."""
    candidate = Path(sys.executable).parent / "hermes"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hermes")
    if not found:
        raise FileNotFoundError("hermes-agent is not installed (no 'hermes' executable)")
    return found


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class HermesHome:
    """A ``HERMES_HOME`` pointed at a scripted model server, with hermetry enabled."""

    def __init__(
        self,
        root: Path,
        base_url: str,
        *,
        model: str = DEFAULT_MODEL,
        config: dict[str, Any] | None = None,
        plugin: bool = True,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url
        self.model = model
        base: dict[str, Any] = {
            "model": {"provider": "custom", "base_url": base_url, "default": model, "context_length": 131072},
            "plugins": {"enabled": ["hermetry"] if plugin else []},
            "security": {"allow_lazy_installs": False},
            "auxiliary": {"title_generation": {"enabled": False}},
            "agent": {"api_max_retries": 1},
        }
        self.config = _merge(base, config or {})
        (self.root / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    @property
    def telemetry_db(self) -> Path:
        return self.root / "hermetry" / "telemetry.db"

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMETRY_", "HERMES_"))}
        env.update(
            HERMES_HOME=str(self.root),
            HERMES_DISABLE_LAZY_INSTALLS="1",
            CUSTOM_BASE_URL=self.base_url,
            NO_COLOR="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``hermes ARGS…`` in this home and wait for it."""
        return subprocess.run(
            [hermes_executable(), *args],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            cwd=self.root,
        )

    def oneshot(self, prompt: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``hermes -z PROMPT`` — one turn, then the session ends (``agent_close``)."""
        return self.run("-z", prompt, "--provider", "custom", "-m", self.model, **kw)

    def chat_query(self, prompt: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``hermes chat -q PROMPT -Q`` — one query through the interactive CLI's code path."""
        return self.run("chat", "-q", prompt, "-Q", **kw)

    def insights(self, *args: str) -> dict[str, Any]:
        """``hermetry insights --json`` on this home's telemetry, as a dict."""
        import json

        out = subprocess.run(
            [sys.executable, "-m", "hermetry.surfaces.cli", "--db", str(self.telemetry_db), "insights", "--json", *args],
            capture_output=True, text=True, check=True, env=self.env(),
        )
        data: dict[str, Any] = json.loads(out.stdout)
        return data
