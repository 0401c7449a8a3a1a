"""A gateway inactivity timeout that strikes before the process's first model call still says
why: the ``AIAgent.interrupt`` wrapper is installed by the first session-start / turn-start /
gateway-dispatch hook that sees Hermes' ``run_agent`` loaded — never by importing it early.

Runs in a fresh interpreter (the wrapper patches Hermes' class for the process) against the real
``run_agent.AIAgent`` and the gateway's own timeout reason; no model call is ever made."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys
    from hermetry.recorder.recorder import Recorder
    from hermetry.sources.hermes.hooks import HermesCapture
    from hermetry.stores.sqlite import SQLiteStore
    from hermetry.testing.query import rows

    db = sys.argv[1]
    rec = Recorder(lambda: SQLiteStore(db), register_atexit=False)
    cb = HermesCapture(rec, profile="default").callbacks()
    cb["pre_gateway_dispatch"](event=None)  # Hermes' agent not loaded yet: nothing imported
    assert "run_agent" not in sys.modules, "hermetry imported Hermes' agent early"

    import run_agent
    from gateway.run import _INTERRUPT_REASON_TIMEOUT

    agent = run_agent.AIAgent(base_url="http://127.0.0.1:9/v1", api_key="x", model="m", quiet_mode=True,
                              skip_context_files=True, skip_memory=True)
    agent.session_id = "s-early"
    cb["on_session_start"](session_id="s-early", model="m", platform="webhook")
    cb["pre_llm_call"](session_id="s-early", task_id="k", turn_id="t-early", platform="webhook")
    agent.interrupt(_INTERRUPT_REASON_TIMEOUT)  # the gateway's inactivity timeout, before any model call
    cb["on_session_end"](session_id="s-early", turn_id="t-early", completed=False, interrupted=True)
    assert rec.flush(10)
    print(rows(db, "SELECT outcome, outcome_reason FROM turns"))
    rec.close()
""")


def test_timeout_before_the_first_model_call_is_a_timeout(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(db)], capture_output=True, text=True, timeout=180,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    from gateway.run import _INTERRUPT_REASON_TIMEOUT  # the reason the test injected

    assert out.stdout.strip().splitlines()[-1] == str([{"outcome": "timed_out",
                                                        "outcome_reason": _INTERRUPT_REASON_TIMEOUT}])
