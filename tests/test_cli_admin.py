"""``hermetry import``, ``reprice`` and ``reconcile``: thin CLI layers over their library calls."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hermetry.model.events import ApiCall, SessionStarted, TurnStarted
from hermetry.recorder.recorder import Recorder
from hermetry.stores.sqlite import SQLiteStore
from hermetry.surfaces.cli import main
from state_db import write_state_db


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_import_is_idempotent_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "hermes"
    home.mkdir()
    monkeypatch.setenv("HERMES_HOME", str(home))
    write_state_db(home)
    store = tmp_path / "telemetry.db"

    code, first = run_json(capsys, "--db", str(store), "import", "--hermes-home", str(home), "--json")
    assert code == 0 and first["schema"] == "hermetry.import.v1"
    (r,) = first["results"]
    assert (r["sessions_seen"], r["sessions_new"], r["turns"]) == (3, 3, 3)
    code, second = run_json(capsys, "--db", str(store), "import", "--hermes-home", str(home), "--json")
    (r,) = second["results"]
    assert (r["sessions_new"], r["sessions_unchanged"]) == (0, 3)
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("SELECT SUM(input_tokens), COUNT(*) FROM api_calls").fetchone() == (600, 3)
        # Hermes' 0.0 with status unknown is unknown, not free
        assert conn.execute("SELECT COUNT(*) FROM api_calls WHERE cost_usd IS NULL AND cost_status = 'unknown'"
                            ).fetchone() == (3,)
    finally:
        conn.close()


def test_import_of_a_missing_history_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(tmp_path / "t.db"), "import", "--hermes-home", str(tmp_path / "nowhere")]) == 2
    assert "state.db" in capsys.readouterr().err
    assert not (tmp_path / "t.db").exists()


def _record(store: Path, *events: Any) -> None:
    rec = Recorder(lambda: SQLiteStore(store), register_atexit=False)
    for e in events:
        rec.record(e)
    rec.close()


def test_reprice_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "t.db"
    _record(store, ApiCall(api_request_id="r", attempt=0, session_id="s", turn_id="t", started_at_ms=1e12,
                           latency_ms=5.0, status="ok", provider="custom", model="mine",
                           input_tokens=2_000_000, output_tokens=1_000_000, cost_status="unknown"))
    prices = tmp_path / "prices.yaml"
    prices.write_text('version: "v2"\nmodels:\n  - match: {provider: custom, model: mine}\n'
                      '    prices: {input_per_mtok: 1.5, output_per_mtok: 4}\n')
    code, out = run_json(capsys, "--db", str(store), "reprice", "--prices", str(prices), "--json")
    assert code == 0 and (out["examined"], out["changed"]) == (1, 1)
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("SELECT cost_usd, cost_status, pricing_version FROM api_calls").fetchone() == (
            2 * 1.5 + 1 * 4.0, "estimated", "v2")
    finally:
        conn.close()


def test_reconcile_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "t.db"
    _record(store, SessionStarted(session_id="s", started_at_ms=1.0),
            TurnStarted(turn_id="t", session_id="s", started_at_ms=1.0))
    code, out = run_json(capsys, "--db", str(store), "reconcile", "--grace-hours", "1", "--json")
    assert (out["turns_closed"], out["sessions_closed"]) == (1, 1)  # idle since 1970
    code, out = run_json(capsys, "--db", str(store), "reconcile", "--json")
    assert (out["turns_closed"], out["sessions_closed"]) == (0, 0)


def test_reprice_never_replaces_a_known_estimate_with_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "t.db"
    _record(store, ApiCall(api_request_id="r", attempt=0, session_id="s", turn_id="t", started_at_ms=1e12,
                           latency_ms=5.0, status="ok", provider="custom", model="mine", input_tokens=10,
                           output_tokens=1, cost_usd=0.5, cost_status="estimated", cost_source="price_file:x",
                           pricing_version="v1"))
    code, out = run_json(capsys, "--db", str(store), "reprice", "--json")  # no price file given now
    assert (out["changed"], out["kept_known"]) == (0, 1)
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("SELECT cost_usd, cost_status FROM api_calls").fetchone() == (0.5, "estimated")
    finally:
        conn.close()
