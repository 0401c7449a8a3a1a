"""``hermetry dashboard``: the page and its JSON, served by the standard library's HTTP server.

Loopback by default. Bound to any other address it requires a token — random, printed at
start — on every request (``?token=`` once: the page then keeps it in a same-site cookie), so a
dashboard opened to the LAN is not open to whoever reaches the port. On loopback, requests
whose ``Host`` header names another machine are refused (DNS rebinding). The page loads
nothing from anywhere else: the charting library is vendored (``static/vendor/``) and the
Content-Security-Policy allows this origin only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import secrets
import socket
import threading
from collections.abc import Callable
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hermetry.surfaces.dashboard.api import DEFAULT_REFRESH_S, FIRST_VIEW, ApiError, DashboardApi

COOKIE = "hermetry_dashboard_token"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


def static_dir() -> Path:
    """The page's files (inside the installed package)."""
    return Path(str(resources.files("hermetry.surfaces.dashboard") / "static"))


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DashboardServer(ThreadingHTTPServer):
    """The dashboard on ``host:port`` (port 0: a free one). ``token`` is None on loopback."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, db: str | Path, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 refresh_s: float = DEFAULT_REFRESH_S, clock: Callable[[], float] | None = None,
                 prepare: bool = True) -> None:
        self.api = DashboardApi(db, refresh_s=refresh_s, clock=clock)
        self.loopback = is_loopback(host)
        self.token = token if token is not None else (None if self.loopback else secrets.token_urlsafe(24))
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)
        self._thread: threading.Thread | None = None
        if prepare:
            self.api.prepare(*FIRST_VIEW)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        if host == "::":
            shown = "[::1]"
        base = f"http://{shown}:{self.port}/"
        return base + (f"?token={self.token}" if self.token else "")

    def start(self) -> DashboardServer:
        """Serve in a background thread (tests, embedding)."""
        self._thread = threading.Thread(target=self.serve_forever, name="hermetry-dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "hermetry-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the URL only
        pass

    # -- checks --------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        if not self.server.loopback:
            return True  # the token is the guard
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host == "" or is_loopback(host)

    def _token_ok(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, set the cookie)."""
        token = self.server.token
        if token is None:
            return True, False
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given, token):
            return True, True
        header = self.headers.get("X-Hermetry-Token") or ""
        if header and hmac.compare_digest(header, token):
            return True, False
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        morsel = cookie.get(COOKIE)
        return bool(morsel and hmac.compare_digest(morsel.value, token)), False

    # -- answers -------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, *, cache: str = "no-store",
              cookie: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        if cookie and self.server.token:
            self.send_header("Set-Cookie", f"{COOKIE}={self.server.token}; Path=/; HttpOnly; SameSite=Strict")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, **kw: Any) -> None:
        body = json.dumps(data, default=str, allow_nan=False).encode()
        self._send(status, body, "application/json", **kw)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        if not self._host_ok():
            self._json(403, {"error": "this dashboard answers on loopback only (Host header refused)"})
            return
        allowed, set_cookie = self._token_ok(query)
        if not allowed:
            self._json(403, {"error": "a token is required: open the URL hermetry dashboard printed at start"})
            return
        path = url.path
        try:
            if path.startswith("/api/"):
                params = {k: v[-1] for k, v in query.items() if k != "token"}
                self._json(200, self.server.api.handle(path[len("/api/"):], params), cookie=set_cookie)
                return
            self._static(path, set_cookie)
        except ApiError as exc:
            self._json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # never a traceback to the browser; one line says what broke
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _static(self, path: str, set_cookie: bool) -> None:
        name = "index.html" if path in ("/", "/index.html") else path.lstrip("/")
        root = static_dir().resolve()
        target = (root / name).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            self._json(404, {"error": f"not found: {path}"})
            return
        content_type = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(200, target.read_bytes(), content_type, cache="no-cache", cookie=set_cookie)

    def do_POST(self) -> None:
        self._json(405, {"error": "the dashboard is read-only"})

    do_PUT = do_DELETE = do_PATCH = do_POST


def serve(db: str | Path, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
          refresh_s: float = DEFAULT_REFRESH_S) -> DashboardServer:
    """A started-in-the-background dashboard server (call ``.stop()``)."""
    return DashboardServer(db, host=host, port=port, token=token, refresh_s=refresh_s).start()
