"""The wrappers hermetry puts where Hermes does not isolate plugins — the OpenAI SDK's ``create``,
the stream iterator it returns, and ``os._exit`` — with every hermetry internal behind them
made to raise: the model call, every streamed chunk, the SDK's own errors and the exit code are
exactly what they are without hermetry. (The interrupt wrapper and whole runs: real Hermes, in
test_never_hurt_hermes.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from hermetry.sources.hermes import stream_probe
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected hermetry fault")


class _RaisingDict(dict):  # type: ignore[type-arg]
    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected hermetry fault")

    def __bool__(self) -> bool:
        raise RuntimeError("injected hermetry fault")


class _RaisingLocal:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("injected hermetry fault")

    def __setattr__(self, name: str, value: Any) -> None:
        raise RuntimeError("injected hermetry fault")


class _RaisingVar:
    def set(self, value: Any) -> Any:
        raise RuntimeError("injected hermetry fault")

    def get(self, *args: Any) -> Any:
        raise RuntimeError("injected hermetry fault")


REPLIES = [
    ScriptedReply(content="The quick brown fox jumps over the lazy dog.", chunks=6, usage=ScriptedUsage(40, 9)),
    ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "echo ok"})], chunks=3,
                  usage=ScriptedUsage(50, 5)),
    ScriptedReply(content="not streamed", usage=ScriptedUsage(10, 2)),
    ScriptedReply(content="x", http_status=500, error_message="upstream exploded"),
]


def _calls(base_url: str) -> list[Any]:
    """Stream two replies, one non-streamed, one error — the way Hermes calls the SDK."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    out: list[Any] = []
    for stream in (True, True, False, True):
        messages = [{"role": "user", "content": "hi"}]
        probe = {"start": 0.0, "first": None, "cost": None, "streamed": None}
        inflight = stream_probe._INFLIGHT
        registered = type(inflight) is dict  # as the middleware does for a main-loop call
        if registered:
            inflight[id(messages)] = (probe, messages)
        try:
            kwargs: dict[str, Any] = {"model": "m", "messages": messages, "stream": stream}
            if stream:
                kwargs["stream_options"] = {"include_usage": True}
            result = client.chat.completions.create(**kwargs)
            if stream:
                out.append([c.model_dump(exclude={"id", "created"}) for c in result])
            else:
                out.append(result.model_dump(exclude={"id", "created"}))
        except Exception as exc:
            out.append((type(exc).__name__, getattr(exc, "status_code", None), str(exc)))
        finally:
            if registered:
                inflight.pop(id(messages), None)
    return out


@pytest.fixture
def unwrapped_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from openai.resources.chat.completions import Completions

    original = getattr(Completions.create, "__wrapped__", Completions.create)
    monkeypatch.setattr(Completions, "create", original)
    yield


def test_the_sdk_and_stream_wrappers_pass_everything_through_when_hermetry_breaks(
        unwrapped_sdk: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedServer(list(REPLIES)) as srv:
        without = _calls(srv.base_url)
    assert len(without) == 4 and without[3][1] == 500  # the error case is an SDK error, as sent
    assert stream_probe.install()
    with ScriptedServer(list(REPLIES)) as srv:
        assert _calls(srv.base_url) == without  # wrapped, hermetry working
    for name in ("_observe", "_chunk_has_payload", "_usage_cost", "_timed"):
        monkeypatch.setattr(stream_probe, name, _boom)
    monkeypatch.setattr(stream_probe, "AUX_TIMING", _RaisingVar())
    monkeypatch.setattr(stream_probe, "ON_AUX_ERROR", _boom)
    with ScriptedServer(list(REPLIES)) as srv:
        assert _calls(srv.base_url) == without  # every probe step raises: the same chunks, errors
        assert len(srv.requests) == 4  # each call made once
    monkeypatch.setattr(stream_probe, "_INFLIGHT", _RaisingDict())
    monkeypatch.setattr(stream_probe, "_LOCAL", _RaisingLocal())
    with ScriptedServer(list(REPLIES)) as srv:
        assert _calls(srv.base_url) == without  # even the lookup that routes the call raises
        assert len(srv.requests) == 4


EXIT_SCRIPT = textwrap.dedent('''
    import os, sys
    from hermetry.sources.hermes import wrappers

    def flush(timeout):
        raise {exc}("injected hermetry fault")

    wrappers.flush_before_hard_exit(flush)
    form = sys.argv[1]
    if form == "positional":
        os._exit(7)
    elif form == "zero":
        os._exit(0)
    elif form == "bool":
        os._exit(True)
    elif form == "none-args":
        try:
            os._exit()
        except TypeError as exc:
            print("TypeError:", exc)
            os._exit(3)
    elif form == "keyword":
        try:
            os._exit(status=5)
        except TypeError as exc:
            print("TypeError:", exc)
            os._exit(4)
''')

BARE_EXIT = textwrap.dedent('''
    import os, sys
    form = sys.argv[1]
    if form == "positional":
        os._exit(7)
    elif form == "zero":
        os._exit(0)
    elif form == "bool":
        os._exit(True)
    elif form == "none-args":
        try:
            os._exit()
        except TypeError as exc:
            print("TypeError:", exc)
            os._exit(3)
    elif form == "keyword":
        try:
            os._exit(status=5)
        except TypeError as exc:
            print("TypeError:", exc)
            os._exit(4)
''')


@pytest.mark.parametrize("form", ["positional", "zero", "bool", "none-args", "keyword"])
@pytest.mark.parametrize("exc", ["RuntimeError", "SystemExit", "KeyboardInterrupt"])
def test_every_os_exit_call_form_passes_through_even_when_the_flush_raises(form: str, exc: str) -> None:
    bare = subprocess.run([sys.executable, "-c", BARE_EXIT, form], capture_output=True, text=True, timeout=60)
    wrapped = subprocess.run([sys.executable, "-c", EXIT_SCRIPT.format(exc=exc), form], capture_output=True,
                             text=True, timeout=60)
    assert (wrapped.returncode, wrapped.stdout) == (bare.returncode, bare.stdout), wrapped.stderr
    assert wrapped.stderr == bare.stderr == ""
