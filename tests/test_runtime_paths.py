"""One outcome taxonomy, proven on every runtime path and every way a run ends.

A module-scoped fixture drives real hermes-agent 0.19.0 through every path — ``hermes -z``,
``hermes chat -q``, the interactive CLI under a pty, the API server, a webhook (a messaging
gateway with a queue), cron and ``delegate_task`` — each scenario with its own model name, all
recording into ONE telemetry file, as a fleet host would. The tests then assert what each
scenario injected: the same normalized fields on every path, and a distinct classification for
each way a run ends.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.report import Query, insights
from hermetry.stores.sqlite import connect
from hermetry.stores.sqlite_reconcile import reconcile
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import Gateway, HermesHome, hermes_executable, long_history
from hermetry.testing.query import rows

pytestmark = pytest.mark.hermes

USAGE = ScriptedUsage(prompt_tokens=2000, completion_tokens=40, cached_tokens=1500, reasoning_tokens=8)
REPLY = dict(content="Here is the answer.", usage=USAGE, first_chunk_delay_s=0.3, total_duration_s=0.5)

COMPARABLE = {  # scenario/model → (source, session_type, streamed)
    "m-oneshot": ("cli", "oneshot", True),
    "m-query": ("cli", "query", True),
    "m-api": ("api_server", "api", True),
    "m-webhook": ("webhook", "webhook", True),
    "m-cron": ("cron", "cron", False),  # Hermes' cron runs the model call non-streamed
}


def _home(root: Path, name: str, srv: ScriptedServer, db: Path, **config: Any) -> HermesHome:
    home = HermesHome(root / name, srv.base_url, model=name, config={"model": {"default": name}, **config})
    home.env_extra = {"HERMETRY_DB": str(db)}  # type: ignore[attr-defined]
    return home


def _env(home: HermesHome, **extra: str) -> dict[str, str]:
    return home.env(**home.env_extra, **extra)  # type: ignore[attr-defined]


def _pty_chat(home: HermesHome, lines: list[tuple[str, str]]) -> None:
    """Type lines into an interactive ``hermes chat`` under a pty, waiting for each expected text."""
    from ptyprocess import PtyProcessUnicode

    proc = PtyProcessUnicode.spawn([hermes_executable(), "chat"], env=_env(home, TERM="xterm"),
                                   cwd=str(home.root), dimensions=(40, 120))
    try:
        buf = ""

        def wait_for(pattern: str, timeout: float = 60) -> None:
            nonlocal buf
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([proc.fd], [], [], 0.2)
                if ready:
                    try:
                        buf += proc.read(65536)
                    except EOFError:
                        break
                if re.search(pattern, buf):
                    buf = ""
                    return
            raise AssertionError(f"did not see {pattern!r} in the CLI output")

        time.sleep(3)
        for text, expect in lines:
            proc.write(text + "\r")
            if expect:
                wait_for(expect)
            else:
                time.sleep(3)
        deadline = time.monotonic() + 30
        while proc.isalive() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if proc.isalive():
            proc.terminate(force=True)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("paths")
    db = root / "fleet-telemetry.db"
    facts: dict[str, Any] = {"db": db}

    # hermes -z, hermes chat -q, cron: one comparable reply each
    for name, run in (
        ("m-oneshot", lambda h: h.oneshot("question", env=_env(h))),
        ("m-query", lambda h: h.chat_query("question", env=_env(h))),
    ):
        with ScriptedServer([ScriptedReply(**REPLY)]) as srv:
            home = _home(root, name, srv, db)
            result = run(home)
            assert result.returncode == 0, result.stderr
    with ScriptedServer([ScriptedReply(**REPLY)]) as srv:
        home = _home(root, "m-cron", srv, db)
        created = home.run("cron", "create", "every 1h", "question", "--name", "nightly", env=_env(home))
        job_id = re.search(r"\b([0-9a-f]{12})\b", created.stdout + home.run("cron", "list", env=_env(home)).stdout)
        assert job_id, created.stdout
        assert home.run("cron", "run", job_id.group(1), env=_env(home)).returncode == 0

    # the API server: a comparable chat, then a run stopped mid-call, then a compression continuation
    def api_route(req: Any) -> ScriptedReply | None:
        if not req.stream:  # Hermes' context-compression summary request
            return ScriptedReply(content="SUMMARY", usage=ScriptedUsage(50_000, 100))
        return None

    script = [
        ScriptedReply(**REPLY),
        ScriptedReply(content="never finishes", first_chunk_delay_s=60, total_duration_s=60),
        ScriptedReply(content="continued after compression", usage=ScriptedUsage(3000, 9)),
    ]
    with ScriptedServer(script, route=api_route) as srv:
        home = _home(root, "m-api", srv, db, model={"default": "m-api", "context_length": 64000},
                     compression={"in_place": False})
        with Gateway(home, extra_env=home.env_extra) as gw:  # type: ignore[attr-defined]
            answer = gw.chat([{"role": "user", "content": "question"}])
            assert answer["choices"][0]["message"]["content"] == "Here is the answer."
            run_id = gw.start_run("do something slow")
            deadline = time.monotonic() + 30
            while len(srv.served) < 2:  # the slow call has reached the model
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(1.0)
            gw.stop_run(run_id)
            time.sleep(3.0)
            compressed = gw.chat(long_history())
            assert compressed["choices"][0]["message"]["content"] == "continued after compression"
            time.sleep(0.5)

    # a messaging gateway (webhook): a comparable message, then one whose model hangs → inactivity timeout
    with ScriptedServer([ScriptedReply(**REPLY), ScriptedReply(content="never", hang=True)]) as srv:
        home = _home(root, "m-webhook", srv, db)
        # (the inactivity limit also runs while the agent initializes: 8 s leaves room on a busy machine)
        with Gateway(home, api_server=False, webhook=True, agent_timeout_s=8,
                     extra_env=home.env_extra) as gw:  # type: ignore[attr-defined]
            gw.webhook("question", "req-1")
            deadline = time.monotonic() + 60
            while len(srv.served) < 1 or not srv.served[0].completed:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            time.sleep(1.0)
            gw.webhook("this one hangs", "req-2")
            deadline = time.monotonic() + 90  # timeout 8 s, checked every 5 s: poll for its turn end
            while not (db.exists() and _q(db, "SELECT 1 FROM turns t JOIN sessions s USING (session_id) "
                                              "WHERE s.model = 'm-webhook' AND t.outcome = 'timed_out'")):
                assert time.monotonic() < deadline, "the hung webhook run never timed out"
                time.sleep(0.5)

    # the interactive CLI under a pty: a turn, /new (session reset), a turn, /quit
    with ScriptedServer([ScriptedReply(content="first ZZ1", usage=ScriptedUsage(100, 5)),
                         ScriptedReply(content="second ZZ2", usage=ScriptedUsage(120, 6))]) as srv:
        home = _home(root, "m-chat", srv, db, approvals={"destructive_slash_confirm": False})
        _pty_chat(home, [("hello", "ZZ1"), ("/new", ""), ("again", "ZZ2"), ("/quit", "")])

    # delegate_task: the parent's model call delegates, the child answers, the parent finishes
    sub = [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("delegate_task", {"goal": "say hi", "context": "-"})],
                      usage=ScriptedUsage(300, 10)),
        ScriptedReply(content="child says hi", usage=ScriptedUsage(200, 7, cached_tokens=50)),
        ScriptedReply(content="parent done", usage=ScriptedUsage(400, 9)),
    ]
    facts["subagent_usage"] = [r.usage for r in sub]
    with ScriptedServer(sub) as srv:
        home = _home(root, "m-delegate", srv, db)
        assert home.oneshot("delegate it", env=_env(home)).returncode == 0

    # a process killed mid-turn
    with ScriptedServer([ScriptedReply(content="never", hang=True)]) as srv:
        home = _home(root, "m-killed", srv, db)
        proc = subprocess.Popen([hermes_executable(), "-z", "question", "--provider", "custom", "-m", "m-killed"],
                                env=_env(home), cwd=home.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not srv.chat_requests():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(1.0)  # the writer flushes every 100 ms: the turn's start is on disk
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return facts


def _sessions(db: Path, model: str) -> list[dict[str, Any]]:
    return _q(db, "SELECT * FROM sessions WHERE model = ? ORDER BY started_at_ms", model)


_q = rows


def _turns(db: Path, model: str) -> list[dict[str, Any]]:
    return _q(db, "SELECT t.* FROM turns t JOIN sessions s USING (session_id) WHERE s.model = ? "
                  "ORDER BY t.started_at_ms", model)


@pytest.mark.parametrize("model", sorted(COMPARABLE))
def test_same_normalized_fields_on_every_path(matrix: dict[str, Any], model: str) -> None:
    db = matrix["db"]
    source, session_type, streamed = COMPARABLE[model]
    session = _sessions(db, model)[0]
    assert session["session_id"]
    assert (session["source"], session["session_type"], session["provider"]) == (source, session_type, "custom")
    assert session["runtime_version"] == "hermes-agent 0.19.0"
    turn = _turns(db, model)[0]
    assert turn["outcome"] == "completed" and turn["wall_ms"] >= 500 - 5
    call = _q(db, "SELECT * FROM api_calls WHERE turn_id = ?", turn["turn_id"])[0]
    expected = USAGE.hermes_usage()
    for kind in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        assert call[kind] == expected[kind], kind
    assert (call["model"], call["provider"], call["status"]) == (model, "custom", "ok")
    assert 500 - 5 <= call["latency_ms"] <= 500 + 600
    if streamed:
        assert call["streamed"] == 1 and 300 - 5 <= call["ttft_ms"] <= 300 + 300
    else:  # a non-streamed call has no first token to time: not captured, never guessed
        assert call["streamed"] == 0 and call["ttft_ms"] is None


def test_gateway_records_queue_wait(matrix: dict[str, Any]) -> None:
    turns = _turns(matrix["db"], "m-webhook")
    assert all(t["queue_wait_ms"] is not None and t["queue_wait_ms"] >= 0 for t in turns)
    # the API server has no queue: not captured, not zero
    assert all(t["queue_wait_ms"] is None for t in _turns(matrix["db"], "m-api"))


@pytest.fixture(scope="module")
def reconciled(matrix: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fleet file after the reconciler ran with no grace (each test gets the same
    state whichever ran first: none of them depends on another's side effects)."""
    import sqlite3

    copy = tmp_path_factory.mktemp("reconciled") / "fleet-telemetry.db"
    src = sqlite3.connect(matrix["db"])
    try:
        dst = sqlite3.connect(copy)
        src.backup(dst)
        dst.close()
    finally:
        src.close()
    conn = connect(copy)
    try:
        matrix["closed_within_grace"] = reconcile(conn, grace_s=3600)
        matrix["closed"] = reconcile(conn, grace_s=0)
    finally:
        conn.close()
    return copy


def test_each_way_a_run_ends_has_its_own_classification(matrix: dict[str, Any], reconciled: Path) -> None:
    db = reconciled
    assert matrix["closed_within_grace"]["turns_closed"] == 0  # the killed turn is within its grace
    assert matrix["closed"] == {"turns_closed": 1, "sessions_closed": 1}

    # completed
    assert _turns(db, "m-oneshot")[0]["outcome"] == "completed"
    assert _sessions(db, "m-oneshot")[0]["outcome"] == "completed"
    # inactivity timeout on the gateway: the turn timed out, its hung model call was interrupted
    timed_out = _turns(db, "m-webhook")[1]
    assert (timed_out["outcome"], timed_out["outcome_reason"]) == ("timed_out", "Execution timed out (inactivity)")
    hung = _q(db, "SELECT * FROM api_calls WHERE turn_id = ?", timed_out["turn_id"])
    assert [c["status"] for c in hung] == ["interrupted"] and hung[0]["latency_ms"] >= 7500
    # manual interrupt through the API server
    api_turns = _turns(db, "m-api")
    stopped = [t for t in api_turns if t["outcome"] == "interrupted"]
    assert len(stopped) == 1 and stopped[0]["outcome_reason"] == "Stop requested via API"
    # Hermes 0.19.0 never ends an API-server session: each run's session follows its last ended turn
    api_sessions = {s["session_id"]: s for s in _sessions(db, "m-api")}
    assert (api_sessions[stopped[0]["session_id"]]["end_reason"],
            api_sessions[stopped[0]["session_id"]]["outcome"]) == (None, "interrupted")
    answered = [t for t in api_turns if t["outcome"] == "completed"]
    assert answered and all(api_sessions[t["session_id"]]["outcome"] in ("completed", "compressed") for t in answered)
    # session reset: /new ends the first CLI session 'reset', /quit ends the second 'completed'
    chat = _sessions(db, "m-chat")
    assert [(s["end_reason"], s["outcome"]) for s in chat] == [("new_session", "reset"), ("cli_close", "completed")]
    assert [t["outcome"] for t in _turns(db, "m-chat")] == ["completed", "completed"]
    # compression: the parent is 'compressed' (a continuation, not an end), the child continues it
    parents = [s for s in _sessions(db, "m-api") if s["outcome"] == "compressed"]
    assert len(parents) == 1 and parents[0]["end_reason"] == "compression"
    children = _q(db, "SELECT * FROM sessions WHERE parent_session_id = ?", parents[0]["session_id"])
    assert len(children) == 1 and children[0]["lineage"] == "continuation"
    # killed mid-turn: closed by the reconciler as abandoned
    killed_turn = _turns(db, "m-killed")[0]
    assert (killed_turn["outcome"], killed_turn["outcome_reason"]) == ("abandoned", "reconciled:no_turn_end")
    assert killed_turn["wall_ms"] is None  # it ran ≈1 s before the kill; when it would have ended is unknown
    killed = _sessions(db, "m-killed")[0]
    assert (killed["outcome"], killed["end_reason"]) == ("abandoned", "reconciled:no_session_end")
    # a webhook run ended by the inactivity timeout is a timed-out session (Hermes says webhook_complete)
    webhook = _sessions(db, "m-webhook")
    assert [(s["end_reason"], s["outcome"]) for s in webhook] == [("webhook_complete", "completed"),
                                                                  ("webhook_complete", "timed_out")]

    outcomes = {t["outcome"] for t in _q(db, "SELECT outcome FROM turns")}
    assert {"completed", "timed_out", "interrupted", "abandoned"} <= outcomes


def test_subagent_tokens_belong_to_the_child_and_roll_up_once(matrix: dict[str, Any]) -> None:
    db = matrix["db"]
    parent = _sessions(db, "m-delegate")
    parent = [s for s in parent if s["source"] == "cli"][0]
    children = _q(db, "SELECT * FROM sessions WHERE parent_session_id = ?", parent["session_id"])
    assert len(children) == 1
    child = children[0]
    assert (child["source"], child["lineage"], child["session_type"]) == ("subagent", "subagent", "subagent")
    assert child["parent_turn_id"] == _turns(db, "m-delegate")[0]["turn_id"]
    first, child_usage, last = matrix["subagent_usage"]
    child_calls = _q(db, "SELECT * FROM api_calls WHERE session_id = ?", child["session_id"])
    assert [c["input_tokens"] for c in child_calls] == [child_usage.hermes_usage()["input_tokens"]]
    parent_calls = _q(db, "SELECT * FROM api_calls WHERE session_id = ?", parent["session_id"])
    assert sorted(c["output_tokens"] for c in parent_calls) == sorted([first.completion_tokens, last.completion_tokens])
    # rolled up to the root conversation: every call once
    rolled = _q(db, """
        WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL SELECT s.session_id FROM sessions s JOIN tree ON s.parent_session_id = tree.id)
        SELECT SUM(output_tokens) AS out, COUNT(*) AS n FROM api_calls WHERE session_id IN (SELECT id FROM tree)""",
        parent["session_id"])[0]
    assert rolled == {"out": first.completion_tokens + child_usage.completion_tokens + last.completion_tokens, "n": 3}


def test_insights_show_outcome_rates_by_source_and_model_with_intervals(reconciled: Path) -> None:
    db = reconciled
    report = insights(db, Query.last_days(1, group_by=("source", "model")))
    by_source = {row["source"]: row for row in report["breakdowns"]["source"]}
    assert {"cli", "api_server", "cron", "webhook", "subagent"} <= set(by_source)
    for source, row in by_source.items():
        turns = _q(db, "SELECT t.outcome FROM turns t JOIN sessions s USING (session_id) WHERE s.source = ?", source)
        ended = [t for t in turns if t["outcome"]]
        completed = sum(1 for t in ended if t["outcome"] == "completed")
        rate = row["turns"]["completion_rate"]
        assert (rate["successes"], rate["n"]) == (completed, len(ended)), source
        assert rate["ci95_low"] <= rate["value"] <= rate["ci95_high"]
    webhook = by_source["webhook"]["turns"]
    assert webhook["by_outcome"] == {"completed": 1, "timed_out": 1}
    assert webhook["failure_rate"]["value"] == 0.5 and webhook["failure_rate"]["n"] == 2
    by_model = {row["model"]: row for row in report["breakdowns"]["model"]}
    assert by_model["m-killed"]["turns"]["by_outcome"] == {"abandoned": 1}
