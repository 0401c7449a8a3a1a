"""Nothing that goes wrong inside hermetry may change a Hermes run's result.

Each case runs the same scripted conversation through a real ``hermes -z`` and compares it
with a clean run: same exit code, same answer, same conversation in Hermes' own state.db.
Faults are injected from outside the product, through a ``sitecustomize`` module on
``PYTHONPATH`` that patches hermetry inside the Hermes process.
"""

from __future__ import annotations

import sqlite3
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedToolCall, ScriptedUsage
from hermetry.testing.hermes import HermesHome

pytestmark = pytest.mark.hermes

SITECUSTOMIZE = textwrap.dedent(
    '''
    import os
    fault = os.environ.get("HERMETRY_TEST_FAULT", "")

    def _boom(*args, **kwargs):
        raise RuntimeError("injected hermetry fault")

    if fault == "hooks_raise":
        # every hook callback, the middleware and the SessionDB mirror raise
        import hermetry.sources.hermes.hooks as hooks
        import hermetry.sources.hermes.stream_probe as probe
        original = hooks.HermesCapture.callbacks
        hooks.HermesCapture.callbacks = lambda self: {name: _boom for name in original(self)}
        hooks.HermesCapture.state_callbacks = lambda self: (_boom, _boom, _boom)
        probe.llm_execution_middleware = _boom
    elif fault == "writer_raises":
        # every normalizer and every store write raise on the writer thread
        import hermetry.sources.hermes.hooks as hooks
        import hermetry.stores.sqlite as store
        for name in dir(hooks.HermesCapture):
            if name.startswith(("_api", "_turn", "_session", "_tool", "_mirror", "_subagent")):
                setattr(hooks.HermesCapture, name, _boom)
        store.SQLiteStore.write = _boom
    elif fault == "sdk_internals_raise":
        # everything of hermetry's behind the OpenAI SDK create wrapper and the stream iterator
        # wrapper (outside Hermes' plugin isolation) raises
        import hermetry.sources.hermes.stream_probe as probe

        class _RaisingDict(dict):
            def get(self, *a, **k):
                raise RuntimeError("injected hermetry fault")

            def __bool__(self):
                raise RuntimeError("injected hermetry fault")

        class _Raising:
            def __getattr__(self, name):
                raise RuntimeError("injected hermetry fault")

        for name in ("_observe", "_chunk_has_payload", "_usage_cost", "_timed", "ON_AUX_ERROR"):
            setattr(probe, name, _boom)
        probe._INFLIGHT = _RaisingDict()
        probe.AUX_TIMING = _Raising()
    elif fault == "exit_internals_raise":
        # what the os._exit wrapper calls raises (even a BaseException)
        import hermetry.recorder.recorder as recorder

        def _exit_boom(*args, **kwargs):
            raise SystemExit("injected hermetry fault")

        recorder.Recorder.flush_at_exit = _exit_boom
        recorder.Recorder.flush = _exit_boom
    elif fault == "interrupt_internals_raise":
        import hermetry.sources.hermes.hooks as hooks
        hooks.HermesCapture.on_interrupt = _boom
        hooks.HermesCapture.on_api_aborted = _boom
    elif fault == "register_raises":
        import hermetry.plugin as plugin
        plugin.get_capture = _boom
    '''
)


def _script() -> list[ScriptedReply]:
    return [
        ScriptedReply(content=None, tool_calls=[ScriptedToolCall("terminal", {"command": "echo ok"})],
                      usage=ScriptedUsage(500, 20)),
        ScriptedReply(content="All done: ok.", usage=ScriptedUsage(600, 10)),
    ]


def _conversation(state_db: Path) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(f"{state_db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT role, tool_name FROM messages ORDER BY id")]
    finally:
        conn.close()


def _run(tmp_path: Path, name: str, *, fault: str = "", db: Path | None = None,
         hold_lock: bool = False) -> tuple[subprocess.CompletedProcess[str], HermesHome]:
    hooks_dir = tmp_path / "sitecustomize"
    hooks_dir.mkdir(exist_ok=True)
    (hooks_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    with ScriptedServer(_script()) as srv:
        home = HermesHome(tmp_path / name, srv.base_url)
        extra = {"PYTHONPATH": str(hooks_dir), "HERMETRY_TEST_FAULT": fault}
        if db is not None:
            extra["HERMETRY_DB"] = str(db)
        lock = None
        if hold_lock:
            assert db is not None
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
        try:
            result = home.oneshot("say ok", env=home.env(**extra), timeout=120)
        finally:
            if lock is not None:
                lock.execute("ROLLBACK")
                lock.close()
    return result, home


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], list]:
    tmp = tmp_path_factory.mktemp("baseline")
    result, home = _run(tmp, "clean")
    assert result.returncode == 0, result.stderr
    assert "All done: ok." in result.stdout
    assert home.telemetry_db.exists()
    return result, _conversation(home.state_db)


def _same_as_baseline(baseline, result, home: HermesHome) -> None:
    base_result, base_conversation = baseline
    assert result.returncode == base_result.returncode, result.stderr
    assert result.stdout == base_result.stdout
    assert _conversation(home.state_db) == base_conversation
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("fault", ["hooks_raise", "writer_raises", "register_raises", "sdk_internals_raise",
                                   "exit_internals_raise"])
def test_exceptions_inside_hermetry_do_not_change_the_run(tmp_path: Path, baseline, fault: str) -> None:
    result, home = _run(tmp_path, fault, fault=fault)
    _same_as_baseline(baseline, result, home)


def test_corrupt_telemetry_file_does_not_change_the_run(tmp_path: Path, baseline) -> None:
    db = tmp_path / "corrupt" / "telemetry.db"
    db.parent.mkdir()
    garbage = b"this is not a sqlite database" * 100
    db.write_bytes(garbage)
    result, home = _run(tmp_path, "corrupt-run", db=db)
    _same_as_baseline(baseline, result, home)
    assert db.read_bytes() == garbage  # hermetry never wrote into a file it does not understand


def test_unwritable_telemetry_location_does_not_change_the_run(tmp_path: Path, baseline) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where hermetry expects a folder")
    result, home = _run(tmp_path, "unwritable-run", db=blocker / "telemetry.db")
    _same_as_baseline(baseline, result, home)


def test_locked_telemetry_file_does_not_change_the_run(tmp_path: Path, baseline) -> None:
    db = tmp_path / "locked" / "telemetry.db"
    db.parent.mkdir()
    sqlite3.connect(db).close()
    result, home = _run(tmp_path, "locked-run", db=db, hold_lock=True)
    _same_as_baseline(baseline, result, home)


def _interrupted_run(tmp_path: Path, name: str, *, plugin: bool, fault: str = "") -> dict[str, Any]:
    """Start an API-server run whose model call hangs, stop it, and return what Hermes says."""
    import time

    from hermetry.testing.hermes import Gateway

    hooks_dir = tmp_path / "sitecustomize"
    hooks_dir.mkdir(exist_ok=True)
    (hooks_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    with ScriptedServer([ScriptedReply(content="never", hang=True)]) as srv:
        home = HermesHome(tmp_path / name, srv.base_url, plugin=plugin)
        with Gateway(home, extra_env={"PYTHONPATH": str(hooks_dir), "HERMETRY_TEST_FAULT": fault}) as gw:
            run_id = gw.start_run("do something slow")
            deadline = time.monotonic() + 60
            while not srv.requests or not any(r.path.endswith("/chat/completions") for r in srv.requests):
                assert time.monotonic() < deadline, "the run never reached the model"
                time.sleep(0.1)
            stopped = gw.stop_run(run_id)
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                status = gw.get_run(run_id)
                if status.get("status") not in ("queued", "running", "in_progress", "stopping", None):
                    break
                time.sleep(0.2)
            return {"stopped": {k: v for k, v in stopped.items() if k not in ("run_id", "id")},
                    "status": status.get("status"), "error": status.get("error")}


def test_an_interrupt_is_exactly_the_same_when_hermetrys_interrupt_wrapper_breaks(tmp_path: Path) -> None:
    """The interrupt wrapper wraps Hermes' own AIAgent.interrupt: with everything behind it
    raising, the stop request answers and the run ends exactly as without hermetry."""
    without = _interrupted_run(tmp_path, "no-plugin", plugin=False)
    working = _interrupted_run(tmp_path, "working", plugin=True)
    broken = _interrupted_run(tmp_path, "broken", plugin=True, fault="interrupt_internals_raise")
    assert without["status"] == "cancelled", without
    assert working == without and broken == without
    # the wrapper was in the path: working, it recorded why the turn ended
    conn = sqlite3.connect(f"{(tmp_path / 'working' / 'hermetry' / 'telemetry.db').as_uri()}?mode=ro", uri=True)
    reasons = [r[0] for r in conn.execute("SELECT outcome_reason FROM turns")]
    conn.close()
    assert reasons == ["Stop requested via API"]
