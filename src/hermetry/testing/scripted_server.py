"""A scripted, OpenAI-compatible model server for end-to-end tests of hermetry.

Why it exists: hermetry claims to record *exactly* what happened during a Hermes run — token
counts, latency (time to first chunk, total duration), tool calls and errors. The only honest
way to test that is to point a real ``hermes`` process at a model whose behaviour we control
to the token and to the tenth of a second. ``ScriptedServer`` is that model: each
``POST /v1/chat/completions`` consumes the next :class:`ScriptedReply` of a script and answers
it with the scripted text, tool calls, usage, timing or HTTP error, in the exact wire format
the ``openai`` Python SDK (which Hermes uses) parses.

Standard library only; binds loopback only; every request and every reply is recorded
(:attr:`ScriptedServer.requests`, :attr:`ScriptedServer.served`) so tests can compare what the
server really did with what hermetry says happened.

Usage as Hermes will report it
------------------------------
:class:`ScriptedUsage` is emitted in OpenAI chat-completions shape::

    {"prompt_tokens": P, "completion_tokens": C, "total_tokens": P + C,
     "prompt_tokens_details": {"cached_tokens": R, "cache_write_tokens": W},
     "completion_tokens_details": {"reasoning_tokens": X},
     "cost": <cost_usd>}                       # only when cost_usd is set

``prompt_tokens`` is the TOTAL prompt (cache reads and writes included) and
``completion_tokens`` includes reasoning, as OpenAI defines them. Hermes 0.19.0
(``agent/usage_pricing.py::normalize_usage``, chat-completions branch) turns this into its
canonical buckets as follows:

==========================  =====================================
Hermes canonical field      value for ``ScriptedUsage(P, C, R, W, X)``
==========================  =====================================
``input_tokens``            ``P - R - W`` (cache reads/writes excluded)
``cache_read_tokens``       ``R`` (from ``prompt_tokens_details.cached_tokens``)
``cache_write_tokens``      ``W`` (from ``prompt_tokens_details.cache_write_tokens``)
``output_tokens``           ``C`` (reasoning *included*, not subtracted)
``reasoning_tokens``        ``X`` (from ``completion_tokens_details.reasoning_tokens``)
``prompt_tokens``           ``P``
``total_tokens``            ``P + C``
==========================  =====================================

:meth:`ScriptedUsage.hermes_usage` returns exactly that mapping. Hermes 0.19.0 ignores the
OpenRouter-style ``cost`` field (it never fills ``actual_cost_usd``); it is emitted so that
hermetry's own capture of provider-reported cost can be tested.

Timing semantics
----------------
All delays are measured from the moment the request line and headers have arrived.
Streaming: the first chunk (carrying ``role`` and the first piece of reasoning, content or
tool call) is flushed at ``first_chunk_delay_s``; the remaining chunks are spread evenly so
that the final chunk (with ``finish_reason``), the usage chunk and ``data: [DONE]`` are
flushed at ``max(first_chunk_delay_s, total_duration_s)``. Non-streaming replies and HTTP
errors are sent whole at ``max(first_chunk_delay_s, total_duration_s)``. Every flush is
stamped with ``time.time()`` in :class:`ServedReply`. Nagle's algorithm is disabled so small
chunks leave the socket when flushed.

Command line::

    python -m hermetry.testing.scripted_server --port 0 --script script.json

prints the base URL (``http://127.0.0.1:PORT/v1``) as its first stdout line and serves until
SIGTERM/SIGINT. ``script.json`` is a JSON list of reply objects using the field names of
:class:`ScriptedReply` (see :func:`load_script`).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_USAGE",
    "ReceivedRequest",
    "ScriptedReply",
    "ScriptedServer",
    "ScriptedToolCall",
    "ScriptedUsage",
    "ServedReply",
    "load_script",
    "main",
    "reply_from_dict",
]

#: Context window advertised by the models endpoints; large enough that Hermes never compresses
#: by accident and never needs to probe elsewhere for a context length.
DEFAULT_CONTEXT_LENGTH = 131072

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models", "/api/v1/models"})


# --------------------------------------------------------------------------------------------
# Script data classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedToolCall:
    """One tool call the scripted model makes.

    ``arguments`` may be a dict (sent as compact JSON) or a raw string, so that malformed
    arguments can be scripted too. When ``id`` is None the server uses the deterministic id
    ``call_<request_index>_<tool_index>`` so tests can predict it.
    """

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None

    def arguments_json(self) -> str:
        """The arguments exactly as they go over the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class ScriptedUsage:
    """Token usage the scripted model reports (OpenAI semantics: totals include the parts).

    ``prompt_tokens`` includes ``cached_tokens`` and ``cache_write_tokens``;
    ``completion_tokens`` includes ``reasoning_tokens``. Inconsistent values raise ValueError,
    because Hermes would silently clip them (``max(0, ...)``) and a test would then compare
    against numbers that were never really reported.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None

    def __post_init__(self) -> None:
        counts = (
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )
        if any(c < 0 for c in counts):
            raise ValueError(f"token counts must be >= 0: {self!r}")
        if self.cached_tokens + self.cache_write_tokens > self.prompt_tokens:
            raise ValueError("prompt_tokens must include cached_tokens and cache_write_tokens")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError("completion_tokens must include reasoning_tokens")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        """The ``usage`` object as sent on the wire (chat-completions shape)."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,
            },
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if self.cost_usd is not None:
            usage["cost"] = self.cost_usd
        return usage

    def hermes_usage(self) -> dict[str, int]:
        """What Hermes 0.19.0's ``normalize_usage`` makes of this usage (see module docstring)."""
        input_tokens = self.prompt_tokens - self.cached_tokens - self.cache_write_tokens
        return {
            "input_tokens": input_tokens,
            "output_tokens": self.completion_tokens,
            "cache_read_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.total_tokens,
        }


#: Usage reported when a reply does not say otherwise.
DEFAULT_USAGE = ScriptedUsage(prompt_tokens=10, completion_tokens=5)


@dataclass(frozen=True)
class ScriptedReply:
    """How the scripted model answers one chat-completions request.

    - ``content``/``tool_calls``/``reasoning``: what the model says. ``reasoning`` is streamed
      as ``delta.reasoning_content`` before the content.
    - ``usage``: reported in the last stream chunk / the response body; None sends no usage
      at all (like a provider that does not report it).
    - ``first_chunk_delay_s``/``total_duration_s``: timing, see the module docstring.
    - ``finish_reason``: defaults to ``"tool_calls"`` when there are tool calls, else ``"stop"``.
    - ``http_status`` != 200: answer with that status and an OpenAI-style JSON error body
      carrying ``error_message``.
    - ``hang``: accept the request and never answer until the server stops.
    - ``chunks``: how many stream chunks each text (reasoning, content, each tool call's
      arguments) is split into (fewer when the text is shorter).
    - ``model``: the ``model`` field of the response (default: the server's model).
    """

    content: str | None = "ok"
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    usage: ScriptedUsage | None = DEFAULT_USAGE
    first_chunk_delay_s: float = 0.0
    total_duration_s: float = 0.0
    finish_reason: str | None = None
    http_status: int = 200
    error_message: str | None = None
    hang: bool = False
    chunks: int = 4
    reasoning: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.first_chunk_delay_s < 0 or self.total_duration_s < 0:
            raise ValueError("delays must be >= 0")
        if self.chunks < 1:
            raise ValueError("chunks must be >= 1")
        if not 100 <= self.http_status <= 599:
            raise ValueError(f"invalid HTTP status {self.http_status}")

    @property
    def effective_finish_reason(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def reply_at_s(self) -> float:
        """Seconds after arrival at which the reply is complete."""
        return max(self.first_chunk_delay_s, self.total_duration_s)


# --------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    """A request as the server received it. ``headers`` keys are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any | None
    received_at: float
    stream: bool
    index: int = -1


@dataclass
class ServedReply:
    """What the server did for one chat-completions request.

    ``source`` is ``"route"``, ``"script"``, ``"default"`` or ``"exhausted"``;
    ``script_index`` is the position in the script when ``source == "script"``.
    ``first_chunk_at``/``last_chunk_at`` are ``time.time()`` stamps taken right after the first
    and the last bytes of the body were flushed (for non-streaming replies and errors both are
    the same); they stay None for a hung request or a client that went away. ``completed`` is
    True once the whole reply was written.
    """

    request_index: int
    reply: ScriptedReply
    received_at: float
    source: str
    script_index: int | None = None
    first_chunk_at: float | None = None
    last_chunk_at: float | None = None
    completed: bool = False


# --------------------------------------------------------------------------------------------
# Wire format helpers
# --------------------------------------------------------------------------------------------


def _split(text: str, n: int) -> list[str]:
    """Split ``text`` into at most ``n`` non-empty, roughly equal pieces."""
    if not text:
        return []
    n = min(n, len(text))
    size, extra = divmod(len(text), n)
    pieces, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _tool_call_id(call: ScriptedToolCall, request_index: int, tool_index: int) -> str:
    return call.id if call.id is not None else f"call_{request_index}_{tool_index}"


def _stream_deltas(reply: ScriptedReply, request_index: int) -> list[dict[str, Any]]:
    """The ``delta`` objects of a streamed reply, before the final finish_reason chunk."""
    deltas: list[dict[str, Any]] = []
    for piece in _split(reply.reasoning or "", reply.chunks):
        deltas.append({"reasoning_content": piece})
    for piece in _split(reply.content or "", reply.chunks):
        deltas.append({"content": piece})
    for i, call in enumerate(reply.tool_calls):
        pieces = _split(call.arguments_json(), reply.chunks) or [""]
        first = {
            "index": i,
            "id": _tool_call_id(call, request_index, i),
            "type": "function",
            "function": {"name": call.name, "arguments": pieces[0]},
        }
        deltas.append({"tool_calls": [first]})
        for piece in pieces[1:]:
            deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    if not deltas:
        deltas.append({"content": reply.content})
    deltas[0] = {"role": "assistant", **deltas[0]}
    return deltas


def _message(reply: ScriptedReply, request_index: int) -> dict[str, Any]:
    """The assistant ``message`` of a non-streaming response."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _tool_call_id(call, request_index, i),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    return message


_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", "model_not_found"),
    409: ("conflict_error", None),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    text = message if message is not None else f"scripted HTTP {status} error"
    return {"error": {"message": text, "type": kind, "code": code, "param": None}}


def _check_loopback(host: str) -> tuple[str, int]:
    """Return (bind address, address family) for a loopback host, else raise ValueError."""
    if host == "localhost":
        return "127.0.0.1", socket.AF_INET
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"ScriptedServer binds loopback only; {host!r} is not an IP") from None
    if not addr.is_loopback:
        raise ValueError(f"ScriptedServer binds loopback only; {host!r} is not loopback")
    return str(addr), socket.AF_INET6 if addr.version == 6 else socket.AF_INET


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer


class _Handler(BaseHTTPRequestHandler):
    """One connection = one request (``Connection: close``), so each request gets its own thread
    and a hung request never holds up another one."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # flush small SSE chunks immediately
    server_version = "hermetry-scripted/1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            sys.stderr.write(f"scripted-server: {format % args}\n")

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.owner._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.owner._handle(self, "DELETE")


class _ClientGone(Exception):
    """The client closed the connection or the server is stopping."""


class ScriptedServer:
    """An OpenAI-compatible chat-completions server that answers from a script.

    Replies are chosen per ``POST .../chat/completions``: ``route(request)`` first (if given;
    returning None falls through), then the next unconsumed script reply, then
    ``default_reply``, else an HTTP 500 ``"script exhausted"`` error. ``GET /v1/models``,
    ``/models`` and ``/api/v1/models`` list ``model`` with a context length (and ``pricing``,
    per token in USD as OpenRouter spells it, when ``model_pricing`` is given — Hermes then
    prices calls with it). Anything else gets a 404 JSON error. Auth headers are ignored.

    Use as a context manager or call :meth:`start`/:meth:`stop`. Thread-safe.
    """

    def __init__(
        self,
        script: Iterable[ScriptedReply] = (),
        *,
        model: str = "scripted-model",
        host: str = "127.0.0.1",
        port: int = 0,
        default_reply: ScriptedReply | None = None,
        route: Callable[[ReceivedRequest], ScriptedReply | None] | None = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        model_pricing: Mapping[str, str | float] | None = None,
        verbose: bool = False,
    ) -> None:
        self._bind_host, self._family = _check_loopback(host)
        self.host = host
        self.model = model
        self.default_reply = default_reply
        self.route = route
        self.context_length = context_length
        self.model_pricing = dict(model_pricing) if model_pricing is not None else None
        self.verbose = verbose
        self._script: list[ScriptedReply] = list(script)
        self._next_script_index = 0
        self._requested_port = port
        self.requests: list[ReceivedRequest] = []
        self.served: list[ServedReply] = []
        self._lock = threading.Lock()
        self._arrivals = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind and serve in a daemon thread. Returns self."""
        if self._httpd is not None or self._stopping.is_set():
            raise RuntimeError("a ScriptedServer can be started once")
        # A per-instance subclass so the address family (IPv4 or IPv6 loopback) can vary.
        server_class = type("_Server", (_HTTPServer,), {"address_family": self._family})
        httpd = server_class((self._bind_host, self._requested_port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scripted-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving. Hung and in-flight replies are abandoned (their sockets are closed)."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` — what Hermes wants as ``CUSTOM_BASE_URL``."""
        if self.port is None:
            raise RuntimeError("ScriptedServer not started")
        host = f"[{self._bind_host}]" if self._family == socket.AF_INET6 else self._bind_host
        return f"http://{host}:{self.port}/v1"

    # -- inspection ----------------------------------------------------------------------

    @property
    def remaining(self) -> int:
        """How many script replies have not been consumed yet."""
        with self._lock:
            return len(self._script) - self._next_script_index

    def chat_requests(self) -> list[ReceivedRequest]:
        """The received chat-completions POSTs, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path in _CHAT_PATHS]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` requests (of any kind) have arrived."""
        with self._arrivals:
            return self._arrivals.wait_for(lambda: len(self.requests) >= count, timeout)

    # -- request handling ----------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        received_at = time.time()
        t0 = time.monotonic()
        handler.close_connection = True
        path = handler.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in handler.headers.items()}
        raw = b""
        length = int(handler.headers.get("Content-Length") or 0)
        if length > 0:
            raw = handler.rfile.read(length)
        body: Any | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        stream = isinstance(body, dict) and body.get("stream") is True
        request = ReceivedRequest(method, path, headers, body, received_at, stream)
        with self._arrivals:
            request.index = len(self.requests)
            self.requests.append(request)
            self._arrivals.notify_all()

        try:
            if method == "POST" and path in _CHAT_PATHS:
                self._serve_chat(handler, request, t0)
            elif method == "GET" and path in _MODELS_PATHS:
                self._send_json(handler, 200, self._models_payload())
            elif method == "GET" and path.startswith("/v1/models/"):
                self._serve_one_model(handler, path.removeprefix("/v1/models/"))
            else:
                self._send_json(handler, 404, _error_body(404, f"no route for {method} {path}"))
        except (_ClientGone, ConnectionError, TimeoutError):
            pass

    def _choose(self, request: ReceivedRequest) -> tuple[ScriptedReply, str, int | None]:
        if self.route is not None:
            try:
                routed = self.route(request)
            except Exception as exc:  # a broken route must show up in the test, not hang it
                failed = ScriptedReply(
                    content=None, usage=None, http_status=500, error_message=f"route failed: {exc!r}"
                )
                return failed, "route", None
            if routed is not None:
                return routed, "route", None
        with self._lock:
            if self._next_script_index < len(self._script):
                index = self._next_script_index
                self._next_script_index += 1
                return self._script[index], "script", index
        if self.default_reply is not None:
            return self.default_reply, "default", None
        exhausted = ScriptedReply(
            content=None, usage=None, http_status=500, error_message="script exhausted"
        )
        return exhausted, "exhausted", None

    def _serve_chat(self, handler: _Handler, request: ReceivedRequest, t0: float) -> None:
        if not isinstance(request.body, dict):
            self._send_json(handler, 400, _error_body(400, "request body is not a JSON object"))
            return
        reply, source, script_index = self._choose(request)
        served = ServedReply(request.index, reply, request.received_at, source, script_index)
        with self._lock:
            self.served.append(served)

        if reply.hang:
            # Keep the socket open without sending a byte until the server stops.
            self._stopping.wait()
            return
        deadline = t0 + reply.reply_at_s
        if reply.http_status != 200:
            self._sleep_until(deadline)
            error = _error_body(reply.http_status, reply.error_message)
            self._send_json(handler, reply.http_status, error)
            served.first_chunk_at = served.last_chunk_at = time.time()
        elif request.stream:
            self._stream(handler, request, reply, served, t0)
        else:
            self._sleep_until(deadline)
            self._send_json(handler, 200, self._completion(request, reply))
            served.first_chunk_at = served.last_chunk_at = time.time()
        served.completed = True

    def _stream(
        self,
        handler: _Handler,
        request: ReceivedRequest,
        reply: ScriptedReply,
        served: ServedReply,
        t0: float,
    ) -> None:
        base = {
            "id": f"chatcmpl-scripted-{request.index}",
            "object": "chat.completion.chunk",
            "created": int(request.received_at),
            "model": reply.model or self.model,
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return {**base, "choices": [choice]}

        deltas = _stream_deltas(reply, request.index)
        events = [chunk(d) for d in deltas] + [chunk({}, reply.effective_finish_reason)]
        first_at = t0 + reply.first_chunk_delay_s
        end_at = t0 + reply.reply_at_s
        step = (end_at - first_at) / (len(events) - 1)

        self._sleep_until(first_at)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        for i, event in enumerate(events):
            if i > 0:
                self._sleep_until(first_at + i * step)
            payload = self._sse(event)
            if i == len(events) - 1:
                # The usage chunk and [DONE] go out together with the finish_reason chunk.
                if reply.usage is not None:
                    payload += self._sse({**base, "choices": [], "usage": reply.usage.to_openai()})
                payload += b"data: [DONE]\n\n"
            self._write_chunk(handler, payload)
            now = time.time()
            if i == 0:
                served.first_chunk_at = now
        self._write_chunk(handler, b"")  # terminating zero-length chunk
        served.last_chunk_at = time.time()

    def _completion(self, request: ReceivedRequest, reply: ScriptedReply) -> dict[str, Any]:
        response: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{request.index}",
            "object": "chat.completion",
            "created": int(request.received_at),
            "model": reply.model or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": _message(reply, request.index),
                    "finish_reason": reply.effective_finish_reason,
                    "logprobs": None,
                }
            ],
        }
        if reply.usage is not None:
            response["usage"] = reply.usage.to_openai()
        return response

    def _model_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.model,
            "object": "model",
            "created": 0,
            "owned_by": "hermetry-scripted",
            "context_length": self.context_length,
        }
        if self.model_pricing is not None:
            entry["pricing"] = {k: str(v) for k, v in self.model_pricing.items()}
        return entry

    def _models_payload(self) -> dict[str, Any]:
        """OpenAI ``data`` list, plus an LM Studio-style ``models`` list.

        Why both: Hermes probes ``/api/v1/models`` to detect LM Studio; a 200 there makes it
        read the ``models`` list (``key``, ``loaded_instances[].config.context_length``) instead
        of ``data``. Serving both shapes gives Hermes the same context length and pricing
        whichever path it takes.
        """
        entry = self._model_entry()
        lmstudio = {
            "key": self.model,
            "id": self.model,
            "name": self.model,
            "type": "llm",
            "max_context_length": self.context_length,
            "loaded_instances": [{"id": self.model,
                                  "config": {"context_length": self.context_length}}],
        }
        if "pricing" in entry:
            lmstudio["pricing"] = entry["pricing"]
        return {"object": "list", "data": [entry], "models": [lmstudio]}

    def _serve_one_model(self, handler: _Handler, model_id: str) -> None:
        if model_id == self.model:
            self._send_json(handler, 200, self._model_entry())
        else:
            self._send_json(handler, 404, _error_body(404, f"model {model_id!r} not found"))

    # -- low-level I/O -------------------------------------------------------------------

    def _sleep_until(self, deadline: float) -> None:
        """Sleep until the monotonic ``deadline``; abort if the server is stopping."""
        remaining = deadline - time.monotonic()
        if remaining > 0 and self._stopping.wait(remaining):
            raise _ClientGone("server stopping")

    @staticmethod
    def _sse(event: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"

    @staticmethod
    def _write_chunk(handler: _Handler, payload: bytes) -> None:
        """Write one HTTP/1.1 chunk and flush it to the socket."""
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        handler.wfile.flush()

    @staticmethod
    def _send_json(handler: _Handler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()


# --------------------------------------------------------------------------------------------
# Script loading and command line
# --------------------------------------------------------------------------------------------

_REPLY_FIELDS = frozenset(f.name for f in fields(ScriptedReply))
_USAGE_FIELDS = frozenset(f.name for f in fields(ScriptedUsage))
_TOOL_FIELDS = frozenset(f.name for f in fields(ScriptedToolCall))


def _reject_unknown(kind: str, data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"unknown {kind} field(s): {', '.join(sorted(unknown))}")


def reply_from_dict(data: Mapping[str, Any]) -> ScriptedReply:
    """Build a ScriptedReply from a JSON-style dict using the dataclass field names.

    ``usage`` may be an object, ``null`` (no usage reported) or absent (the default usage);
    ``tool_calls`` is a list of ``{name, arguments, id?}`` objects. Unknown keys raise
    ValueError so a typo cannot silently change a test.
    """
    _reject_unknown("reply", data, _REPLY_FIELDS)
    kwargs = dict(data)
    if "usage" in kwargs and kwargs["usage"] is not None:
        _reject_unknown("usage", kwargs["usage"], _USAGE_FIELDS)
        kwargs["usage"] = ScriptedUsage(**kwargs["usage"])
    if "tool_calls" in kwargs:
        calls = []
        for call in kwargs["tool_calls"] or []:
            _reject_unknown("tool call", call, _TOOL_FIELDS)
            calls.append(ScriptedToolCall(**call))
        kwargs["tool_calls"] = calls
    return ScriptedReply(**kwargs)


def load_script(
    path_or_list: str | os.PathLike[str] | Iterable[Mapping[str, Any] | ScriptedReply],
) -> list[ScriptedReply]:
    """Load a script from a JSON file (a list of reply objects) or from an in-memory list.

    Items that already are ScriptedReply instances are kept as they are.
    """
    items: Iterable[Any]
    if isinstance(path_or_list, str | os.PathLike):
        items = json.loads(Path(path_or_list).read_text(encoding="utf-8"))
        if not isinstance(items, list):
            raise ValueError("a script file must contain a JSON list of replies")
    else:
        items = path_or_list
    return [item if isinstance(item, ScriptedReply) else reply_from_dict(item) for item in items]


def main(argv: list[str] | None = None) -> int:
    """Serve a script from the command line until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m hermetry.testing",
        description="Scripted OpenAI-compatible model server (loopback only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="scripted-model")
    parser.add_argument("--script", help="JSON file: a list of reply objects")
    parser.add_argument(
        "--default-reply",
        help="JSON object: the reply used once the script is exhausted (default: HTTP 500)",
    )
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    script = load_script(args.script) if args.script else []
    default = reply_from_dict(json.loads(args.default_reply)) if args.default_reply else None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with ScriptedServer(
        script, model=args.model, host=args.host, port=args.port,
        default_reply=default, verbose=args.verbose,
    ) as server:
        print(server.base_url, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
