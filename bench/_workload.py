"""What Hermes 0.19.0 hands a plugin: realistic hook keyword arguments, and whole sessions of them.

Shapes follow ``agent/conversation_loop.py`` (the ``post_api_request`` call, ~line 4485),
``run_agent.AIAgent._usage_summary_for_api_request_hook`` / ``_api_response_payload_for_hook``
and ``hermes_cli.plugins.PluginManager.invoke_hook`` (which adds ``telemetry_schema_version``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

MODELS = (
    ("anthropic/claude-sonnet-4", "openrouter", "https://openrouter.ai/api/v1"),
    ("gpt-4.1-mini", "openai", "https://api.openai.com/v1"),
    ("claude-opus-4", "anthropic", "https://api.anthropic.com"),
    ("qwen3-coder", "custom", "http://127.0.0.1:8080/v1"),
    ("gemini-2.5-flash", "gemini", "https://generativelanguage.googleapis.com/v1beta/openai"),
)
PLATFORMS = ("cli", "cli", "cli", "telegram", "api_server", "cron", "discord")
TOOLS = ("terminal", "read_file", "write_file", "search_files", "web_search", "patch", "todo")

try:  # the real response object Hermes passes as assistant_message (0.19.0)
    from agent.transports.types import NormalizedResponse as _Normalized
except Exception:  # pragma: no cover - Hermes not installed
    _Normalized = None


def _assistant_message(text: str, tool_calls: int) -> Any:
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "terminal", "arguments": '{"command":"ls"}'}}
        for i in range(tool_calls)
    ]
    if _Normalized is not None:
        return _Normalized(content=text, tool_calls=calls or None, finish_reason="tool_calls" if calls else "stop")
    return {"role": "assistant", "content": text, "tool_calls": calls}


def usage_summary(rng: random.Random) -> dict[str, int]:
    """``asdict(CanonicalUsage)`` minus raw_usage, plus prompt_tokens / total_tokens."""
    cache_read = rng.choice((0, 0, 2048, 8192, 30000))
    inp = rng.randint(200, 6000)
    out = rng.randint(20, 1500)
    reasoning = rng.choice((0, 0, min(out, 256)))
    cache_write = rng.choice((0, 0, 0, 1024))
    prompt = inp + cache_read + cache_write
    return {
        "input_tokens": inp, "output_tokens": out, "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write, "reasoning_tokens": reasoning, "request_count": 1,
        "prompt_tokens": prompt, "total_tokens": prompt + out,
    }


def post_api_request_kwargs(
    i: int, rng: random.Random, *, session_id: str | None = None, turn_id: str | None = None,
    task_id: str | None = None, platform: str = "cli", model_index: int | None = None,
    tool_calls: int | None = None, now: float | None = None,
) -> dict[str, Any]:
    """One ``post_api_request`` call's keyword arguments, as Hermes 0.19.0 builds them."""
    model, provider, base_url = MODELS[model_index if model_index is not None else i % len(MODELS)]
    t_end = now if now is not None else time.time()
    duration = rng.uniform(0.4, 9.0)
    n_tools = tool_calls if tool_calls is not None else rng.choice((0, 0, 1, 2))
    text = "" if n_tools else "Here is what I found. " * rng.randint(1, 20)
    usage = usage_summary(rng)
    finish = "tool_calls" if n_tools else "stop"
    message = _assistant_message(text, n_tools)
    sid = session_id or f"20260101_120000_{i // 12:06x}"
    return {
        "task_id": task_id or sid,
        "turn_id": turn_id or f"turn-{i // 3}",
        "api_request_id": f"req-{i:08d}-{rng.getrandbits(32):08x}",
        "session_id": sid,
        "platform": platform,
        "model": model,
        "provider": provider,
        "base_url": base_url,
        "api_mode": "chat_completions",
        "api_call_count": i % 7 + 1,
        "api_duration": duration,
        "started_at": t_end - duration,
        "ended_at": t_end,
        "finish_reason": finish,
        "message_count": 4 + 2 * (i % 20),
        "response_model": model,
        "response": {
            "model": model,
            "finish_reason": finish,
            "assistant_message": {"role": "assistant", "content": text, "tool_calls": [
                {"id": f"call_{k}", "type": "function", "function": {"name": "terminal", "arguments": '{"command":"ls"}'}}
                for k in range(n_tools)
            ]},
            "usage": dict(usage),
        },
        "usage": usage,
        "assistant_message": message,
        "assistant_content_chars": len(text),
        "assistant_tool_call_count": n_tools,
        "telemetry_schema_version": "hermes.observer.v1",
    }


#: How a session is shaped in the ingest workload (also documented in docs/benchmarks.md).
TURNS_PER_SESSION = 4
API_CALLS_PER_TURN = 3  # two tool-calling rounds, then the answer
TOOL_CALLS_PER_TURN = 2


def session_hooks(s: int, rng: random.Random, *, now: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every hook one Hermes CLI session fires: start, 4 turns × (turn start, 3 API calls, 2 tool
    calls, turn end), finalize — 30 hook calls, 12 of them post_api_request."""
    t = now if now is not None else time.time()
    sid = f"20260101_{s:08d}_{rng.getrandbits(24):06x}"
    platform = PLATFORMS[s % len(PLATFORMS)]
    mi = s % len(MODELS)
    model = MODELS[mi][0]
    yield "on_session_start", {"session_id": sid, "model": model, "platform": platform,
                               "telemetry_schema_version": "hermes.observer.v1"}
    for k in range(TURNS_PER_SESSION):
        turn = f"{sid}-t{k}"
        yield "pre_llm_call", {
            "session_id": sid, "task_id": sid, "turn_id": turn, "user_message": "please look at the repo",
            "conversation_history": [], "is_first_turn": k == 0, "model": model, "platform": platform,
            "sender_id": None, "telemetry_schema_version": "hermes.observer.v1",
        }
        for a in range(API_CALLS_PER_TURN):
            n_tools = 1 if a < TOOL_CALLS_PER_TURN else 0
            kw = post_api_request_kwargs(s * 100 + k * 10 + a, rng, session_id=sid, turn_id=turn, task_id=sid,
                                         platform=platform, model_index=mi, tool_calls=n_tools, now=t)
            yield "post_api_request", kw
            if n_tools:
                yield "post_tool_call", {
                    "tool_name": TOOLS[(s + k + a) % len(TOOLS)], "args": {"command": "ls"},
                    "tool_call_id": f"call_{kw['api_request_id']}", "session_id": sid, "task_id": sid,
                    "turn_id": turn, "api_request_id": kw["api_request_id"], "result": "file_a\nfile_b",
                    "duration_ms": rng.uniform(2, 900), "status": "ok" if rng.random() > 0.03 else "error",
                    "error_type": None, "error_message": None, "telemetry_schema_version": "hermes.observer.v1",
                }
        yield "on_session_end", {"session_id": sid, "task_id": sid, "turn_id": turn, "completed": True,
                                 "interrupted": False, "model": model, "platform": platform,
                                 "telemetry_schema_version": "hermes.observer.v1"}
    yield "on_session_finalize", {"session_id": sid, "platform": platform, "reason": "shutdown",
                                  "telemetry_schema_version": "hermes.observer.v1"}


EVENTS_PER_SESSION = 2 + TURNS_PER_SESSION * (2 + API_CALLS_PER_TURN + TOOL_CALLS_PER_TURN)
