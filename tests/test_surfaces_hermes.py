"""hermetry inside Hermes: ``/telemetry`` and ``hermes telemetry`` are views over ``insights()``.

In-process: the slash command's text is exactly ``chat_text(insights(...))`` for its window.
With a real Hermes 0.19.0 (marked ``hermes``):

* ``hermes telemetry …`` (mounted with ``register_cli_command``) prints the library's JSON;
* ``/telemetry`` typed into ``hermes chat`` is dispatched to the plugin and answers with the
  report — without a model call;
* a messaging gateway (the webhook platform) dispatches ``/telemetry`` to the plugin too;
* the API server does **not** dispatch slash commands in 0.19.0: ``/telemetry`` posted to
  ``/v1/chat/completions`` goes to the model as an ordinary message (pinned here, so that a
  Hermes that starts dispatching them is noticed).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.report import Query, insights
from hermetry.surfaces.hermes_commands import slash_telemetry, slash_usage
from hermetry.surfaces.render import chat_text
from hermetry.testing import ScriptedReply, ScriptedServer
from hermetry.testing.hermes import Gateway, HermesHome, hermes_executable
from hermetry.testing.history import DAY_MS, History, synthetic_history
from hermetry.testing.query import rows


def recent_history(tmp_path: Path) -> tuple[History, Path]:
    """Five days of history ending an hour ago: inside any "last 7 days" window taken now."""
    history = synthetic_history(seed=41, now_ms=time.time() * 1000 - 3_600_000, days=5, sessions_per_day=5)
    db = history.record(tmp_path / "telemetry.db")
    # close what is open the way any hermetry process opening the file would, so the figures
    # cannot change under the test when Hermes (with the plugin) opens it
    from hermetry.stores.sqlite import connect
    from hermetry.stores.sqlite_reconcile import reconcile

    conn = connect(db)
    reconcile(conn)
    conn.close()
    return history, db


def expected_text(db: Path, days: float, group_by: tuple[str, ...]) -> str:
    return chat_text(insights(db, Query.last_days(days, group_by=group_by)))


# -- in process -------------------------------------------------------------------------------

def test_slash_command_is_the_chat_view_of_insights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, db = recent_history(tmp_path)
    monkeypatch.setenv("HERMETRY_DB", str(db))
    for raw, days, group_by in (("", 7, ("source",)), ("7 model", 7, ("model",)), ("6d day", 6, ("day",)),
                                ("tool 5.5", 5.5, ("tool",)), ("  14   profile ", 14, ("profile",))):
        text = slash_telemetry(raw)
        assert text == expected_text(db, days, group_by), raw
    text = slash_telemetry("7")
    report = insights(db, Query.last_days(7, group_by=("source",)))
    assert f"{report['coverage']['turns']} turns" in text and report["coverage"]["turns"] > 0
    assert text.splitlines()[0] == "hermetry, last 7 days"


def test_slash_command_answers_bad_arguments_with_its_usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERMETRY_DB", str(tmp_path / "none.db"))
    assert slash_telemetry("colour").endswith(slash_usage())
    assert "above 0" in slash_telemetry("0") and slash_telemetry("0").endswith(slash_usage())
    for raw in ("inf", "1e400", "nan", "-1", "36501"):  # the CLI's --days rule, never an OverflowError
        text = slash_telemetry(raw)
        assert text.startswith("hermetry: days: expected a number of days") and text.endswith(slash_usage()), raw
    # no file yet: said as every reading command says it (nothing is created)
    assert slash_telemetry("7").startswith(f"hermetry: no telemetry file at {tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "none.db").touch()  # an empty file is an empty history
    assert slash_telemetry("7").startswith("hermetry, last 7 days\nNothing recorded yet")


# -- real Hermes ------------------------------------------------------------------------------

@pytest.mark.hermes
def test_hermes_telemetry_is_the_same_command_tree(tmp_path: Path) -> None:
    _, db = recent_history(tmp_path)
    since, until = time.time() * 1000 - 7 * DAY_MS, time.time() * 1000
    iso = [time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ms / 1000)) for ms in (since, until)]
    with ScriptedServer([]) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        result = home.run("telemetry", "--db", str(db), "insights", "--json", "--since", iso[0], "--until", iso[1],
                          "--by", "model")
        listing = home.run("telemetry", "--db", str(db), "sessions", "--json", "--limit", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["window"]["since"], report["window"]["until"]) == tuple(iso)
    expected = insights(db, Query(since_ms=report["window"]["since_ms"], until_ms=report["window"]["until_ms"],
                                  group_by=("model",)))
    assert report == json.loads(json.dumps(expected)) and report["coverage"]["turns"] > 0
    assert listing.returncode == 0 and json.loads(listing.stdout)["schema"] == "hermetry.sessions.v1"


@pytest.mark.hermes
def test_slash_telemetry_in_the_hermes_cli(tmp_path: Path) -> None:
    _, db = recent_history(tmp_path)
    with ScriptedServer([]) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        expected = expected_text(db, 7, ("model",))
        # Hermes' CLI prints a command's answer through prompt_toolkit, after the fact: `/quit` is
        # typed only once the answer is on the screen (piping both at once races Hermes' exit).
        out_path = tmp_path / "chat.out"
        with open(out_path, "w") as out:
            proc = subprocess.Popen([hermes_executable(), "chat"], stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.STDOUT, text=True, cwd=home.root,
                                    env=home.env(HERMETRY_DB=str(db)))
            assert proc.stdin is not None
            proc.stdin.write("/telemetry 7 model\n")
            proc.stdin.flush()
            last = expected.splitlines()[-1]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and last not in out_path.read_text(errors="replace"):
                time.sleep(0.2)
            proc.stdin.write("/quit\n")
            proc.stdin.close()
            returncode = proc.wait(timeout=120)
        stdout = out_path.read_text(errors="replace")
        model_requests = [r for r in srv.requests if r.path.endswith("/chat/completions")]
    assert returncode == 0, stdout[-2000:]
    assert model_requests == []  # answered by the plugin, not the model
    for line in expected.splitlines():
        assert line in stdout, line


@pytest.mark.hermes
def _webhook_telemetry(tmp_path: Path, name: str, db: Path, config: dict[str, Any] | None = None) -> tuple[str, int]:
    with ScriptedServer([]) as srv:
        home = HermesHome(tmp_path / name, srv.base_url, config=config)
        with Gateway(home, api_server=False, webhook=True, extra_env={"HERMETRY_DB": str(db)}) as gw:
            gw.webhook("/telemetry 7", request_id=str(uuid.uuid4()))
            deadline = time.monotonic() + 60
            logs = ""
            while time.monotonic() < deadline and "[webhook] Response for" not in logs:
                time.sleep(0.5)
                logs = "".join(p.read_text(errors="replace") for p in (home.root / "logs").glob("*.log")) \
                    + gw.log_path.read_text(errors="replace")
        model_requests = [r for r in srv.requests if r.path.endswith("/chat/completions")]
    return logs[logs.index("[webhook] Response for"):], len(model_requests)


def test_slash_telemetry_through_a_messaging_gateway(tmp_path: Path) -> None:
    """The webhook platform delivers replies to Hermes' log ('deliver: log'), first 200 characters.
    A messaging gateway answers /telemetry only to those the operator allows (default: nobody
    but the platform's admins); allowed, it is the report."""
    _, db = recent_history(tmp_path)
    denied, model_calls = _webhook_telemetry(tmp_path, "default", db)
    assert model_calls == 0
    reply = denied.splitlines()[0]  # the delivered reply (the log lines after it name paths, which may say anything)
    assert "/telemetry is not enabled for you here" in reply and "report" not in reply.lower()
    assert expected_text(db, 7, ("source",)).splitlines()[1] not in denied
    response, model_calls = _webhook_telemetry(tmp_path, "allowed", db,
                                               {"hermetry": {"telemetry_command": {"allow": ["webhook:*"]}}})
    assert model_calls == 0
    first_lines = expected_text(db, 7, ("source",)).splitlines()[:2]
    for line in first_lines:
        assert line in response, (line, response[:400])


@pytest.mark.hermes
def test_slash_telemetry_through_the_api_server(tmp_path: Path) -> None:
    """Hermes 0.19.0's API server dispatches no slash commands (gateway/platforms/api_server.py
    passes every message to the agent): hermetry's llm_execution middleware answers /telemetry
    there instead of the model — no model request, no recorded model call."""
    _, db = recent_history(tmp_path)
    before = _count_calls(db)
    expected = expected_text(db, 7, ("source",)).splitlines()
    with ScriptedServer([ScriptedReply(content="the model answered")]) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        with Gateway(home, extra_env={"HERMETRY_DB": str(db)}) as gw:
            answer = gw.chat([{"role": "user", "content": "/telemetry 7"}])
            other = gw.chat([{"role": "user", "content": "an ordinary question"}])
        chat_requests = [r for r in srv.requests if r.path.endswith("/chat/completions")]
    lines = answer["choices"][0]["message"]["content"].splitlines()
    # the report as it stood (the /telemetry turn itself may already count as an open turn)
    assert lines[0] == expected[0]
    for prefix in ("tokens:", "cost:", "API p50/p95:"):
        assert [x for x in lines if x.startswith(prefix)] == [x for x in expected if x.startswith(prefix)]
    assert other["choices"][0]["message"]["content"] == "the model answered"  # everything else: the model
    assert len(chat_requests) == 1
    assert _count_calls(db) == before + 1  # only the real model call was recorded


def _count_calls(db: Path) -> int:
    return int(rows(db, "SELECT COUNT(*) AS n FROM api_calls")[0]["n"])
