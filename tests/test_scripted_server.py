"""Tests for the scripted OpenAI-compatible model server (real sockets, real openai SDK)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import engine_missing
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.scripted_server import ReceivedRequest, load_script, reply_from_dict

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
#: How late a scripted delay may land on a machine busy with other work (early is a bug).
LATE_S = 1.5


def client_for(server: ScriptedServer, timeout: float = 10.0) -> openai.OpenAI:
    """An SDK client that does not retry (each call must consume exactly one reply)."""
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0,
                           timeout=timeout)
    # Warm up: the first request of a fresh client pays ~0.1 s of one-off SDK set-up, which
    # would otherwise be counted as model latency.
    client.models.list()
    return client


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_streaming_content_usage_and_timing() -> None:
    usage = ScriptedUsage(prompt_tokens=1200, completion_tokens=340, cached_tokens=800,
                          cache_write_tokens=100, reasoning_tokens=40, cost_usd=0.00123)
    reply = ScriptedReply(content="Hello from the script!", usage=usage,
                          first_chunk_delay_s=0.5, total_duration_s=1.0, chunks=5)
    with ScriptedServer([reply]) as srv:
        client = client_for(srv)
        start = time.time()
        stream = client.chat.completions.create(
            model="scripted-model", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True},
        )
        text, first_at, finish, got_usage, content_chunks = "", None, None, None, 0
        for chunk in stream:
            if chunk.usage is not None:
                got_usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    content_chunks += 1
                    text += choice.delta.content
                    if first_at is None:
                        first_at = time.time()
                if choice.finish_reason:
                    finish = choice.finish_reason
        end = time.time()

    assert text == "Hello from the script!"
    assert content_chunks == 5
    assert finish == "stop"
    assert first_at is not None and got_usage is not None
    # never early; late only by what a loaded machine adds (no timed upper bound that flakes)
    assert 0.5 - 0.02 <= first_at - start <= 0.5 + LATE_S
    assert 1.0 - 0.02 <= end - start <= 1.0 + LATE_S

    assert got_usage.prompt_tokens == 1200
    assert got_usage.completion_tokens == 340
    assert got_usage.total_tokens == 1540
    assert got_usage.prompt_tokens_details is not None
    assert got_usage.prompt_tokens_details.cached_tokens == 800
    # Not a declared field of the SDK's PromptTokensDetails: it arrives as a pydantic extra.
    assert (got_usage.prompt_tokens_details.model_extra or {})["cache_write_tokens"] == 100
    assert got_usage.completion_tokens_details is not None
    assert got_usage.completion_tokens_details.reasoning_tokens == 40
    assert (got_usage.model_extra or {}).get("cost") == pytest.approx(0.00123)

    # The server's own stamps are tighter than what the client can measure.
    chat = srv.chat_requests()
    assert len(chat) == 1 and chat[0].stream
    assert chat[0].headers["authorization"] == "Bearer sk-test"
    served = srv.served[0]
    assert served.request_index == chat[0].index and served.source == "script"
    assert served.completed and served.first_chunk_at and served.last_chunk_at
    assert 0.5 - 0.01 <= served.first_chunk_at - served.received_at <= 0.5 + LATE_S
    assert 1.0 - 0.01 <= served.last_chunk_at - served.received_at <= 1.0 + LATE_S
    assert served.first_chunk_at < served.last_chunk_at


def test_hermes_usage_mapping() -> None:
    usage = ScriptedUsage(prompt_tokens=100, completion_tokens=20, cached_tokens=30,
                          cache_write_tokens=10, reasoning_tokens=5)
    assert usage.hermes_usage() == {
        "input_tokens": 60, "output_tokens": 20, "cache_read_tokens": 30,
        "cache_write_tokens": 10, "reasoning_tokens": 5, "prompt_tokens": 100,
        "total_tokens": 120,
    }
    assert "cost" not in usage.to_openai()
    with pytest.raises(ValueError):
        ScriptedUsage(prompt_tokens=10, completion_tokens=1, cached_tokens=11)
    with pytest.raises(ValueError):
        ScriptedUsage(prompt_tokens=10, completion_tokens=1, reasoning_tokens=2)


def test_streaming_tool_calls_and_reasoning() -> None:
    calls = [
        ScriptedToolCall("terminal", {"command": "echo hi", "timeout": 5}),
        ScriptedToolCall("read_file", {"path": "/tmp/x"}, id="call_fixed"),
    ]
    reply = ScriptedReply(content=None, tool_calls=calls, reasoning="thinking hard", chunks=3)
    with ScriptedServer([reply]) as srv:
        stream = client_for(srv).chat.completions.create(
            model="scripted-model", messages=MESSAGES, stream=True
        )
        acc: dict[int, dict[str, str]] = {}
        reasoning, finish, role = "", None, None
        for chunk in stream:
            for choice in chunk.choices:
                role = role or choice.delta.role
                reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
                for tc in choice.delta.tool_calls or []:
                    slot = acc.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += tc.id or ""
                    assert tc.function is not None
                    slot["name"] += tc.function.name or ""
                    slot["arguments"] += tc.function.arguments or ""
                finish = choice.finish_reason or finish
        request_index = srv.served[0].request_index

    assert role == "assistant"
    assert reasoning == "thinking hard"
    assert finish == "tool_calls"
    assert [acc[i]["name"] for i in sorted(acc)] == ["terminal", "read_file"]
    assert json.loads(acc[0]["arguments"]) == {"command": "echo hi", "timeout": 5}
    assert json.loads(acc[1]["arguments"]) == {"path": "/tmp/x"}
    assert acc[0]["id"] == f"call_{request_index}_0"
    assert acc[1]["id"] == "call_fixed"


def test_non_streaming_reply() -> None:
    reply = ScriptedReply(
        content="plain answer",
        tool_calls=[ScriptedToolCall("todo", '{"raw": true}')],
        usage=ScriptedUsage(prompt_tokens=7, completion_tokens=3),
        first_chunk_delay_s=0.2, total_duration_s=0.4, finish_reason="length",
        model="other-model",
    )
    with ScriptedServer([reply]) as srv:
        client = client_for(srv)
        start = time.time()
        result = client.chat.completions.create(model="scripted-model", messages=MESSAGES)
        elapsed = time.time() - start

    assert 0.4 - 0.02 <= elapsed <= 0.4 + LATE_S
    assert result.model == "other-model"
    choice = result.choices[0]
    assert choice.message.content == "plain answer"
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls is not None
    tool_call = choice.message.tool_calls[0]
    assert tool_call.type == "function"
    assert tool_call.function.name == "todo"
    assert tool_call.function.arguments == '{"raw": true}'
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 3)
    assert srv.requests[-1].stream is False
    served = srv.served[0]
    assert served.completed and served.first_chunk_at == served.last_chunk_at


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(500, openai.InternalServerError), (429, openai.RateLimitError)],
)
def test_http_errors(status: int, error_class: type[openai.APIStatusError]) -> None:
    reply = ScriptedReply(http_status=status, error_message=f"scripted failure {status}",
                          first_chunk_delay_s=0.2)
    with ScriptedServer([reply]) as srv:
        client = client_for(srv)
        start = time.time()
        with pytest.raises(error_class) as info:
            client.chat.completions.create(
                model="scripted-model", messages=MESSAGES, stream=True
            )
        elapsed = time.time() - start

    assert info.value.status_code == status
    assert f"scripted failure {status}" in info.value.message
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == f"scripted failure {status}"
    assert 0.2 - 0.02 <= elapsed <= 0.2 + LATE_S
    assert srv.served[0].completed


def test_hang_times_out_and_stop_is_prompt() -> None:
    srv = ScriptedServer([ScriptedReply(hang=True)]).start()
    try:
        client = client_for(srv, timeout=0.5)
        start = time.time()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(
                model="scripted-model", messages=MESSAGES, stream=True
            )
        assert time.time() - start < 2.0
        served = srv.served[0]
        assert not served.completed and served.first_chunk_at is None
    finally:
        stop_start = time.time()
        srv.stop()
    assert time.time() - stop_start < 1.0


def test_stop_while_hung_request_is_still_open() -> None:
    """A client still waiting on a hung reply must not block stop()."""
    import threading

    srv = ScriptedServer([ScriptedReply(hang=True)]).start()
    client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.chat.completions.create(model="m", messages=MESSAGES)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    assert srv.wait_for_requests(1, timeout=5)
    start = time.time()
    srv.stop()
    assert time.time() - start < 1.0
    worker.join(timeout=5)
    assert errors and isinstance(errors[0], openai.APIConnectionError)


def test_script_exhaustion() -> None:
    with ScriptedServer([ScriptedReply(content="first")],
                        default_reply=ScriptedReply(content="default")) as srv:
        client = client_for(srv)
        texts = [
            client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            for _ in range(3)
        ]
        assert texts == ["first", "default", "default"]
        assert [s.source for s in srv.served] == ["script", "default", "default"]
        assert srv.remaining == 0

    with ScriptedServer([ScriptedReply(content="only")]) as srv:
        client = client_for(srv)
        client.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert "script exhausted" in info.value.message
        assert srv.served[-1].source == "exhausted"


def test_route_answers_without_consuming_script() -> None:
    def route(request: ReceivedRequest) -> ScriptedReply | None:
        if not request.stream:  # e.g. Hermes' title-generation / summary calls
            return ScriptedReply(content="A Title")
        return None

    with ScriptedServer([ScriptedReply(content="scripted")], route=route) as srv:
        client = client_for(srv)
        title = client.chat.completions.create(model="m", messages=MESSAGES)
        assert title.choices[0].message.content == "A Title"
        assert srv.remaining == 1
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "scripted"
        assert [s.source for s in srv.served] == ["route", "script"]
        assert srv.served[1].script_index == 0


def test_models_endpoints_and_404() -> None:
    pricing = {"prompt": "0.000001", "completion": "0.000002"}
    with ScriptedServer(model="my-model", model_pricing=pricing) as srv:
        root = srv.base_url.removesuffix("/v1")
        for path in ("/v1/models", "/models", "/api/v1/models"):
            status, payload = get_json(root + path)
            assert status == 200
            assert payload["data"][0]["id"] == "my-model"
            assert payload["data"][0]["context_length"] == 131072
            assert payload["data"][0]["pricing"] == pricing
            # LM Studio shape, read by Hermes when /api/v1/models answers 200.
            assert payload["models"][0]["key"] == "my-model"
            loaded = payload["models"][0]["loaded_instances"][0]
            assert loaded["config"]["context_length"] == 131072
        assert [m.id for m in client_for(srv).models.list()] == ["my-model"]
        status, payload = get_json(root + "/v1/models/my-model")
        assert status == 200 and payload["id"] == "my-model"

        status, payload = get_json(root + "/v1/nothing-here")
        assert status == 404
        assert payload["error"]["type"] == "not_found_error"
        assert srv.served == []
        assert srv.requests[-1].path == "/v1/nothing-here"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_non_loopback_host_rejected(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ScriptedServer(host=host)


def test_load_script(tmp_path: Path) -> None:
    data = [
        {"content": "a", "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                   "cached_tokens": 1, "cost_usd": 0.5}},
        {"content": None, "tool_calls": [{"name": "terminal", "arguments": {"command": "ls"}}]},
        {"http_status": 503, "error_message": "down", "usage": None},
    ]
    path = tmp_path / "script.json"
    path.write_text(json.dumps(data))
    sources: list[Any] = [path, str(path), data]
    for source in sources:
        script = load_script(source)
        assert script[0].usage == ScriptedUsage(5, 2, cached_tokens=1, cost_usd=0.5)
        assert script[1].tool_calls == [ScriptedToolCall("terminal", {"command": "ls"})]
        assert script[1].effective_finish_reason == "tool_calls"
        assert script[2].usage is None and script[2].http_status == 503
    assert load_script([ScriptedReply()]) == [ScriptedReply()]
    with pytest.raises(ValueError, match="unknown reply field"):
        reply_from_dict({"contnet": "typo"})


def test_cli_serves_script_until_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"content": "from the cli"}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermetry.testing.scripted_server", "--port", "0",
         "--script", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10)
        result = client.chat.completions.create(model="m", messages=MESSAGES)
        assert result.choices[0].message.content == "from the cli"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def hermes_executable() -> Path | None:
    found = shutil.which("hermes")
    path = Path(found) if found else Path(sys.executable).parent / "hermes"
    return path if path.exists() else None


@pytest.mark.hermes
def test_real_hermes_one_shot(tmp_path: Path) -> None:
    hermes = hermes_executable()
    if hermes is None:
        engine_missing("hermes CLI not installed")
    usage = ScriptedUsage(prompt_tokens=100, completion_tokens=20, cached_tokens=30,
                          cache_write_tokens=10, reasoning_tokens=5)
    reply = ScriptedReply(content="hello from script", usage=usage)
    home = tmp_path / "hermes-home"
    home.mkdir()
    usage_file = tmp_path / "usage.json"
    with ScriptedServer([reply]) as srv:
        env = {
            **os.environ,
            "HERMES_HOME": str(home),
            "CUSTOM_BASE_URL": srv.base_url,
            "HERMES_DISABLE_LAZY_INSTALLS": "1",
        }
        proc = subprocess.run(
            [str(hermes), "-z", "hello", "--provider", "custom", "-m", "scripted-model",
             "--usage-file", str(usage_file)],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )

    assert proc.returncode == 0, proc.stderr
    assert "hello from script" in proc.stdout
    chat = srv.chat_requests()
    assert len(chat) == 1
    assert chat[0].path == "/v1/chat/completions"
    assert chat[0].stream
    body = chat[0].body
    assert isinstance(body, dict)
    assert body["model"] == "scripted-model"
    assert body["stream_options"] == {"include_usage": True}
    assert srv.served[0].completed
    # Hermes' own accounting matches the documented mapping of the scripted usage.
    reported = json.loads(usage_file.read_text())
    expected = usage.hermes_usage()
    for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens", "total_tokens"):
        assert reported[key] == expected[key], key
