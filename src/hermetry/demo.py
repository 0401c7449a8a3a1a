"""``hermetry demo``: drive real Hermes sessions against a scripted model, then show the insights.

Every run is a real ``hermes`` process (hermes-agent must be installed) talking to
:class:`hermetry.testing.ScriptedServer` on loopback, with the hermetry plugin enabled. Each
scenario ends a different way, so the report shows what each looks like.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from hermetry.analytics.report import Query, insights
from hermetry.surfaces.render import print_report
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome


@dataclass(frozen=True)
class Scenario:
    name: str
    prompt: str
    script: list[ScriptedReply]
    default_reply: ScriptedReply | None = None


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            "plain answer",
            "What is the capital of France?",
            [ScriptedReply(content="Paris.", usage=ScriptedUsage(1200, 8, cached_tokens=900),
                           first_chunk_delay_s=0.4, total_duration_s=0.7)],
        ),
        Scenario(
            "tool call",
            "How many files are in this folder?",
            [
                ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "ls | wc -l"})],
                              usage=ScriptedUsage(1500, 30, cached_tokens=1000, reasoning_tokens=12),
                              first_chunk_delay_s=0.6, total_duration_s=1.0),
                ScriptedReply(content="There are a few files here.", usage=ScriptedUsage(1700, 12, cached_tokens=1400),
                              first_chunk_delay_s=0.3, total_duration_s=0.5),
            ],
        ),
        Scenario(
            "API failure",
            "Summarise the news.",
            [],
            default_reply=ScriptedReply(http_status=503, error_message="model overloaded", first_chunk_delay_s=0.1),
        ),
    ]


def run_demo(workdir: Path, *, console: Console | None = None,
             on_step: Callable[[str], None] | None = None) -> dict:
    """Run every scenario in ``workdir`` (recreated) and return the insights report."""
    console = console or Console()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    db = workdir / "telemetry.db"
    for sc in scenarios():
        started = time.monotonic()
        with ScriptedServer(sc.script, default_reply=sc.default_reply) as srv:
            home = HermesHome(workdir / sc.name.replace(" ", "-"), srv.base_url)
            result = home.oneshot(sc.prompt, env=home.env(HERMETRY_DB=str(db)))
        took = time.monotonic() - started
        answer = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        console.print(f"[bold]{sc.name}[/bold]: hermes -z exited {result.returncode} in {took:.1f}s — {answer[:80]}")
        if on_step:
            on_step(sc.name)
    report = insights(db, Query.last_days(1, group_by=("source", "model")))
    console.print()
    print_report(report, console)
    console.print(f"Telemetry file: {db}\nExplore it: hermetry --db {db} insights --json")
    return report
