"""``hermetry demo``: drive real Hermes sessions against a scripted model, then show the insights.

Every run is a real ``hermes`` process (hermes-agent must be installed) talking to
:class:`hermetry.testing.ScriptedServer` on loopback, with the hermetry plugin enabled, all
recording into one telemetry file. The scenarios end every way a run can end: completed,
failed, interrupted, timed out, compressed — through the CLI, the API server, a messaging
gateway (webhook), cron and a delegated subagent.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from hermetry.analytics.report import Query, insights
from hermetry.surfaces.render import print_report
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import Gateway, HermesHome, long_history

Step = Callable[[Path, Path], str]


#: The demo declares a price for its scripted model, as an operator would for a custom endpoint
#: (docs/cost.md); without it every call would honestly show as "unknown".
DEMO_PRICES = """\
version: "demo-2026-11"
name: demo-prices
models:
  - match: {provider: custom, model: scripted-model}
    prices: {input_per_mtok: 3.0, output_per_mtok: 15.0, cache_read_per_mtok: 0.3}
    source: "demo price sheet"
"""


def _demo_env(workdir: Path, db: Path) -> dict[str, str]:
    prices = workdir / "prices.yaml"
    if not prices.exists():
        prices.write_text(DEMO_PRICES)
    return {"HERMETRY_DB": str(db), "HERMETRY_PRICES": str(prices)}


def _home(workdir: Path, name: str, srv: ScriptedServer, db: Path, **config: Any) -> tuple[HermesHome, dict[str, str]]:
    home = HermesHome(workdir / name, srv.base_url, config=config)
    return home, home.env(**_demo_env(workdir, db))


def plain_answer(workdir: Path, db: Path) -> str:
    with ScriptedServer([ScriptedReply(content="Paris.", usage=ScriptedUsage(1200, 8, cached_tokens=900),
                                       first_chunk_delay_s=0.4, total_duration_s=0.7)]) as srv:
        home, env = _home(workdir, "plain-answer", srv, db)
        return home.oneshot("What is the capital of France?", env=env).stdout.strip()


def tool_call(workdir: Path, db: Path) -> str:
    script = [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "ls | wc -l"})],
                      usage=ScriptedUsage(1500, 30, cached_tokens=1000, reasoning_tokens=12),
                      first_chunk_delay_s=0.6, total_duration_s=1.0),
        ScriptedReply(content="There are a few files here.", usage=ScriptedUsage(1700, 12, cached_tokens=1400),
                      first_chunk_delay_s=0.3, total_duration_s=0.5),
    ]
    with ScriptedServer(script) as srv:
        home, env = _home(workdir, "tool-call", srv, db)
        return home.oneshot("How many files are in this folder?", env=env).stdout.strip()


def api_failure(workdir: Path, db: Path) -> str:
    failing = ScriptedReply(http_status=503, error_message="model overloaded", first_chunk_delay_s=0.1)
    with ScriptedServer(default_reply=failing) as srv:
        home, env = _home(workdir, "api-failure", srv, db)
        return home.oneshot("Summarise the news.", env=env).stdout.strip()


def provider_reported_cost(workdir: Path, db: Path) -> str:
    """A provider that reports what it charged (OpenRouter-style ``usage.cost``): cost is actual."""
    reply = ScriptedReply(content="42.", usage=ScriptedUsage(900, 6, cost_usd=0.00123), first_chunk_delay_s=0.2,
                          total_duration_s=0.4)
    with ScriptedServer([reply]) as srv:
        home, env = _home(workdir, "provider-cost", srv, db)
        return home.oneshot("What is six times seven?", env=env).stdout.strip()


def subagent(workdir: Path, db: Path) -> str:
    script = [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("delegate_task", {"goal": "check the weather",
                                                                                    "context": "-"})],
                      usage=ScriptedUsage(900, 20)),
        ScriptedReply(content="Sunny.", usage=ScriptedUsage(400, 5), first_chunk_delay_s=0.2, total_duration_s=0.3),
        ScriptedReply(content="The subagent says it is sunny.", usage=ScriptedUsage(1000, 10)),
    ]
    with ScriptedServer(script) as srv:
        home, env = _home(workdir, "subagent", srv, db)
        return home.oneshot("Ask a helper about the weather.", env=env).stdout.strip()


def cron_job(workdir: Path, db: Path) -> str:
    with ScriptedServer([ScriptedReply(content="Nightly report done.", usage=ScriptedUsage(2500, 40))]) as srv:
        home, env = _home(workdir, "cron", srv, db)
        created = home.run("cron", "create", "every 1d", "Write the nightly report", "--name", "nightly", env=env)
        listing = created.stdout + home.run("cron", "list", env=env).stdout
        job = re.search(r"\b([0-9a-f]{12})\b", listing)
        if not job:
            return "could not create the cron job"
        return home.run("cron", "run", job.group(1), env=env).stdout.strip().splitlines()[-1]


def api_server(workdir: Path, db: Path) -> str:
    """Through the API server: one answer, one run stopped mid-call, one compressed history."""
    def summary(req: Any) -> ScriptedReply | None:
        return ScriptedReply(content="SUMMARY", usage=ScriptedUsage(50_000, 100)) if not req.stream else None

    script = [
        ScriptedReply(content="Hello from the API.", usage=ScriptedUsage(800, 9), first_chunk_delay_s=0.3,
                      total_duration_s=0.5),
        ScriptedReply(content="too slow", first_chunk_delay_s=60, total_duration_s=60),
        ScriptedReply(content="Continuing after compression.", usage=ScriptedUsage(3000, 9)),
    ]
    with ScriptedServer(script, route=summary) as srv:
        home, env = _home(workdir, "api-server", srv, db, model={"context_length": 64000},
                          compression={"in_place": False})
        with Gateway(home, extra_env=_demo_env(workdir, db)) as gw:
            gw.chat([{"role": "user", "content": "hello"}])
            run_id = gw.start_run("a slow job")
            deadline = time.monotonic() + 30
            while len(srv.served) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            gw.stop_run(run_id)
            time.sleep(2.0)
            gw.chat(long_history())
    return "answered one request, stopped one run, compressed one long conversation"


def gateway_timeout(workdir: Path, db: Path) -> str:
    """A messaging gateway (webhook): one answer, then a model that hangs past the agent timeout."""
    script = [ScriptedReply(content="Got it.", usage=ScriptedUsage(600, 4), first_chunk_delay_s=0.2,
                            total_duration_s=0.3),
              ScriptedReply(content="never", hang=True)]
    with ScriptedServer(script) as srv:
        home, env = _home(workdir, "webhook", srv, db)
        with Gateway(home, api_server=False, webhook=True, agent_timeout_s=4,
                     extra_env=_demo_env(workdir, db)) as gw:
            gw.webhook("ping", "demo-1")
            deadline = time.monotonic() + 30
            while not (srv.served and srv.served[0].completed) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            gw.webhook("this one hangs", "demo-2")
            time.sleep(14)  # Hermes checks its 4 s inactivity timeout every 5 s
    return "answered one message; the next one timed out"


SCENARIOS: list[tuple[str, Step]] = [
    ("CLI one-shot, plain answer", plain_answer),
    ("CLI one-shot with a tool call", tool_call),
    ("CLI one-shot, model API fails", api_failure),
    ("CLI one-shot, provider reports its cost", provider_reported_cost),
    ("delegated subagent", subagent),
    ("cron job", cron_job),
    ("API server: completed, interrupted, compressed", api_server),
    ("webhook gateway: completed, then timed out", gateway_timeout),
]


def _hermes_env(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMETRY_", "HERMES_"))}
    env.update(HERMES_HOME=str(home), HERMES_DISABLE_LAZY_INSTALLS="1", NO_COLOR="1", COLUMNS="80")
    return env


def hermes_says(workdir: Path) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """What Hermes itself reports about the demo's runs: its own insights engine
    (``agent/insights.py``, what ``hermes insights`` prints) over each scenario's state.db,
    and the real ``hermes insights --days 1`` text of the first one that has sessions."""
    import subprocess

    from hermetry.testing.hermes import hermes_executable

    overviews: list[tuple[str, dict[str, Any]]] = []
    texts: dict[str, str] = {}
    for home in sorted(p.parent for p in workdir.glob("*/state.db")):
        out = subprocess.run([hermes_executable(), "insights", "--days", "1"], env=_hermes_env(home),
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        texts[home.name] = f"$ HERMES_HOME={home.name} hermes insights --days 1\n" + out.stdout.strip("\n")
        overviews.append((home.name, _overview(out.stdout)))
    # the full text of the busiest small home (tool calls, then messages): a representative page
    shown = max(overviews, key=lambda o: (o[1].get("Tool calls", 0), -o[1].get("Messages", 0)), default=None)
    return overviews, texts[shown[0]] if shown else ""


def _overview(text: str) -> dict[str, Any]:
    """The overview figures of ``hermes insights``' text (``Sessions: 1  Messages: 4`` …)."""
    figures: dict[str, Any] = {}
    for label, value in re.findall(r"(Sessions|Messages|Tool calls|User messages|Total tokens):\s+([\d,]+)", text):
        figures[label] = int(value.replace(",", ""))
    return figures


def _hermes_table(overviews: list[tuple[str, dict[str, Any]]]) -> Any:
    from hermetry.surfaces.render_layout import Column, Grid
    from hermetry.surfaces.text import NA, count

    grid = Grid("What hermes insights says about each scenario's Hermes home (--days 1)",
                [Column("home", key=True, justify="left"), Column("sessions"), Column("messages"),
                 Column("user messages", "user"), Column("tool calls", "tools"), Column("total tokens", "tokens")])
    for name, o in overviews:
        grid.add_row(name, *(count(o[k]) if k in o else NA for k in
                             ("Sessions", "Messages", "User messages", "Tool calls", "Total tokens")))
    grid.notes.append("Each scenario ran in its own Hermes home, so Hermes reports them one by one, and only "
                      "what its state.db keeps: no latency, no failure rates, no time to first token.")
    return grid


def run_demo(workdir: Path, *, console: Console | None = None) -> dict[str, Any]:
    """Run every scenario in ``workdir`` (recreated), show what ``hermes insights`` says about
    them, then hermetry's answer to the four questions on one screen, then the full report."""
    from rich.rule import Rule

    from hermetry.surfaces.render import console as report_console
    from hermetry.surfaces.render import summary_renderable

    console = console or report_console()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    db = workdir / "telemetry.db"
    for title, step in SCENARIOS:
        started = time.monotonic()
        with console.status(f"{title} …"):
            try:
                said = step(workdir, db)
            except Exception as exc:  # a scenario that cannot run here is reported, not fatal
                said = f"[red]could not run: {type(exc).__name__}: {exc}[/red]"
        last = (said.splitlines() or [""])[-1]
        console.print(f"[bold]{title}[/bold] ({time.monotonic() - started:.1f} s): {last[:90]}")

    console.print()
    console.print(Rule("Before: what Hermes says (hermes insights)"))
    with console.status("hermes insights …"):
        overviews, text = hermes_says(workdir)
    console.print(_hermes_table(overviews))
    if text:
        console.print()
        console.print(text, markup=False, highlight=False)

    report = insights(db, Query.last_days(1, group_by=("source", "model")))
    console.print()
    console.print(Rule("After: hermetry, the four questions on one screen"))
    console.print(summary_renderable(report))
    console.print()
    console.print(Rule("The full report: hermetry insights --days 1 --by source --by session_type"))
    print_report(insights(db, Query.last_days(1, group_by=("source", "session_type"))), console)
    console.print(f"Telemetry file: {db}\nExplore it: hermetry --db {db} sessions · show SESSION · insights --json")
    return report
