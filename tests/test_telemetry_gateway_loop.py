"""``/telemetry`` on a gateway does not compute the report on the gateway's event loop.

Hermes 0.19.0's gateway calls a plugin command's handler from its async dispatch and awaits a
returned coroutine (gateway/run.py); the CLI calls it from a plain thread. Inside a running loop
the handler returns a coroutine that computes the report in a worker thread, one at a time; in
a plain thread it answers directly. The report here is real (a recorded history); it is held
at its start by the test so that "while it computes" is a state the test controls, not a race.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics import report as report_module
from hermetry.surfaces import hermes_commands
from hermetry.surfaces.hermes_commands import BUSY, slash_telemetry, slash_telemetry_command
from hermetry.testing.history import synthetic_history


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(hermes_commands, "_GATEWAY_SEEN", False)  # the CLI's view: the operator asks
    history = synthetic_history(seed=7, now_ms=time.time() * 1000 - 3_600_000, days=3, sessions_per_day=20)
    path = history.record(tmp_path / "telemetry.db")
    monkeypatch.setenv("HERMETRY_DB", str(path))
    return path


def test_the_cli_path_answers_directly(db: Path) -> None:
    answer = slash_telemetry_command("7")
    assert isinstance(answer, str) and answer == slash_telemetry("7")
    assert answer.startswith("hermetry, last 7 days")


def test_the_cli_answers_directly_even_inside_its_own_event_loop(db: Path) -> None:
    """prompt_toolkit runs a loop in the CLI: an answer deferred to a coroutine would be printed
    after the next command (`/quit`) — the CLI must get the text itself."""

    async def cli() -> Any:
        return slash_telemetry_command("7")

    answer = asyncio.run(cli())
    assert isinstance(answer, str) and answer.startswith("hermetry, last 7 days")


def test_in_a_running_loop_the_report_runs_in_a_worker_thread_and_the_loop_stays_responsive(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_insights = report_module.insights
    started, release = threading.Event(), threading.Event()
    report_threads: list[int] = []

    def held_insights(*args: Any, **kwargs: Any) -> Any:
        report_threads.append(threading.get_ident())
        started.set()
        assert release.wait(60), "the test never released the report"
        return real_insights(*args, **kwargs)

    monkeypatch.setattr(report_module, "insights", held_insights)
    # a gateway process, and a sender the operator allows (the allow rules have their own tests)
    monkeypatch.setattr(hermes_commands, "_GATEWAY_SEEN", True)
    monkeypatch.setattr(hermes_commands, "telemetry_denied", lambda: None)

    async def gateway() -> tuple[str, str, int]:
        loop_thread = threading.get_ident()
        result = slash_telemetry_command("7")
        assert inspect.iscoroutine(result)  # what Hermes' gateway awaits
        task = asyncio.ensure_future(result)
        while not started.is_set():  # the report has begun (in its thread)
            await asyncio.sleep(0.001)
        ticks = 0
        for _ in range(50):  # the loop keeps running other work while the report is held
            await asyncio.sleep(0)
            ticks += 1
        assert not task.done()
        second = slash_telemetry_command("7")  # another user, meanwhile: one computation at a time
        busy = await second if inspect.iscoroutine(second) else second
        release.set()
        answer = await asyncio.wait_for(task, 60)
        assert report_threads[-1] != loop_thread
        return answer, busy, ticks

    release.set()  # the reference answer, computed directly
    expected = slash_telemetry("7")
    release.clear()
    started.clear()
    answer, busy, ticks = asyncio.run(gateway())
    assert ticks == 50
    assert busy == BUSY
    assert answer == expected and answer.startswith("hermetry, last 7 days")
    # the lock is free again: a later request is computed
    assert asyncio.run(_ask("7")) == expected


async def _ask(raw: str) -> str:
    result = slash_telemetry_command(raw)
    return await result if inspect.iscoroutine(result) else result
