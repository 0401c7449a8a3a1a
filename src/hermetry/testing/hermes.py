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


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """``hermes gateway run`` in a :class:`HermesHome`, with the API server and/or a webhook route.

    Everything listens on 127.0.0.1 only. Use as a context manager; the gateway is stopped
    (SIGTERM, then SIGKILL) on exit.
    """

    API_KEY = "hermetry-test-key-0123456789"

    def __init__(self, home: HermesHome, *, api_server: bool = True, webhook: bool = False,
                 agent_timeout_s: float | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.api_port = free_port() if api_server else None
        self.webhook_port = free_port() if webhook else None
        env: dict[str, str] = {"GATEWAY_ALLOW_ALL_USERS": "true"}
        if api_server:
            env.update(API_SERVER_ENABLED="true", API_SERVER_KEY=self.API_KEY, API_SERVER_HOST="127.0.0.1",
                       API_SERVER_PORT=str(self.api_port))
        if agent_timeout_s is not None:
            env.update(HERMES_AGENT_TIMEOUT=str(agent_timeout_s), HERMES_AGENT_TIMEOUT_WARNING="0")
        if webhook:
            cfg = dict(home.config)
            cfg["platforms"] = {"webhook": {"enabled": True, "extra": {
                "host": "127.0.0.1", "port": self.webhook_port,
                "routes": {"r1": {"secret": "INSECURE_NO_AUTH", "prompt": "{text}"}}}}}
            home.config = cfg
            (home.root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        env.update(extra_env or {})
        self.env = home.env(**env)
        self.log_path = home.root / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gateway:
        import time

        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen([hermes_executable(), "gateway", "run"], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.home.root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log_path.read_text()[-3000:]}")
            if self._ready():
                return self
            time.sleep(0.2)
        raise TimeoutError(f"gateway not ready:\n{self.log_path.read_text()[-3000:]}")

    def _ready(self) -> bool:
        import socket

        for port in (self.api_port, self.webhook_port):
            if port is None:
                continue
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    # -- API server ----------------------------------------------------------------------------

    def _post(self, url: str, body: dict[str, Any], timeout: float = 120,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
        import json
        import urllib.request

        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        data: dict[str, Any] = json.loads(raw) if raw else {}
        return data

    def chat(self, messages: list[dict[str, Any]], timeout: float = 120) -> dict[str, Any]:
        """POST /v1/chat/completions (non-streaming) to the API server."""
        return self._post(f"http://127.0.0.1:{self.api_port}/v1/chat/completions",
                          {"model": "hermes-agent", "messages": messages}, timeout,
                          {"Authorization": f"Bearer {self.API_KEY}"})

    def start_run(self, text: str) -> str:
        """POST /v1/runs → run id."""
        out = self._post(f"http://127.0.0.1:{self.api_port}/v1/runs", {"input": text},
                         headers={"Authorization": f"Bearer {self.API_KEY}"})
        return str(out.get("run_id") or out.get("id"))

    def get_run(self, run_id: str) -> dict[str, Any]:
        """GET /v1/runs/RUN — the run's status (``running``, ``completed``, ``cancelled``, …)."""
        import json
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/v1/runs/{run_id}",
                                     headers={"Authorization": f"Bearer {self.API_KEY}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop_run(self, run_id: str) -> dict[str, Any]:
        """POST /v1/runs/RUN/stop — Hermes interrupts the run ("Stop requested via API")."""
        return self._post(f"http://127.0.0.1:{self.api_port}/v1/runs/{run_id}/stop", {},
                          headers={"Authorization": f"Bearer {self.API_KEY}"})

    # -- webhook -------------------------------------------------------------------------------

    def webhook(self, text: str, request_id: str) -> dict[str, Any]:
        """POST a message to the webhook route (a messaging-gateway platform, with a queue)."""
        return self._post(f"http://127.0.0.1:{self.webhook_port}/webhooks/r1", {"text": text},
                          headers={"X-Request-ID": request_id})


def long_history(turns: int = 40) -> list[dict[str, str]]:
    """A conversation of ~95k approximate tokens: posted to the API server of a Hermes whose
    context is 64,000 tokens (``compression: {in_place: false}``), it makes Hermes compress and
    continue in a child session."""
    history: list[dict[str, str]] = []
    for i in range(turns):
        history.append({"role": "user", "content": f"q{i} " + "lorem ipsum dolor sit amet " * 250})
        history.append({"role": "assistant", "content": f"a{i} " + "consectetur adipiscing " * 50})
    history.append({"role": "user", "content": "and finally?"})
    return history
