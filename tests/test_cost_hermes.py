"""Cost provenance on real Hermes runs against the scripted server (a custom endpoint).

Expected costs are computed here, by hand, from the prices this test declares.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hermetry.analytics.report import Query, insights
from hermetry.cost import load_pricing_config
from hermetry.cost.reprice import reprice
from hermetry.testing import ScriptedReply, ScriptedServer, ScriptedUsage
from hermetry.testing.hermes import HermesHome
from hermetry.testing.query import rows

pytestmark = pytest.mark.hermes

USAGE = ScriptedUsage(prompt_tokens=10_000, completion_tokens=2_000, cached_tokens=6_000, cache_write_tokens=1_000,
                      reasoning_tokens=500)
PRICE_FILE = """
version: "2026-11-test-contract"
name: test-prices
models:
  - match: {provider: custom, model: "scripted-model"}
    prices: {input_per_mtok: 3.0, output_per_mtok: 15.0, cache_read_per_mtok: 0.3, cache_write_per_mtok: 3.75}
    source: "our contract"
"""


def expected_cost() -> float:
    # input excludes cache reads/writes: 10,000 - 6,000 - 1,000 = 3,000; reasoning is inside output
    per_m = Decimal(1_000_000)
    cost = (Decimal(3_000) * Decimal("3.0") + Decimal(6_000) * Decimal("0.3") + Decimal(1_000) * Decimal("3.75")
            + Decimal(2_000) * Decimal("15.0")) / per_m
    return float(cost)


def _calls(db: Path) -> list[dict[str, Any]]:
    return rows(db, "SELECT * FROM api_calls ORDER BY started_at_ms")


def test_custom_endpoint_is_unknown_until_a_price_is_declared(tmp_path: Path) -> None:
    db = tmp_path / "telemetry.db"
    prices = tmp_path / "prices.yaml"
    with ScriptedServer([ScriptedReply(content="one", usage=USAGE), ScriptedReply(content="two", usage=USAGE)]) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        assert home.oneshot("first", env=home.env(HERMETRY_DB=str(db))).returncode == 0
        prices.write_text(PRICE_FILE)
        assert home.oneshot("second", env=home.env(HERMETRY_DB=str(db), HERMETRY_PRICES=str(prices))).returncode == 0

    first, second = _calls(db)
    # no declared price: unknown, and never a fake $0
    assert (first["cost_status"], first["cost_usd"], first["cost_source"]) == ("unknown", None, None)
    # declared: estimated, with the declared source and version
    assert second["cost_status"] == "estimated"
    assert second["cost_source"] == "price_file:our contract"
    assert second["pricing_version"] == "2026-11-test-contract"
    assert second["cost_usd"] == pytest.approx(expected_cost(), abs=1e-12)

    cost = insights(db, Query.last_days(1))["api_calls"]["cost"]
    assert cost["calls"] == {"actual": 0, "estimated": 1, "included": 0, "unknown": 1}
    assert cost["estimated_usd"] == pytest.approx(expected_cost(), abs=1e-12)
    assert cost["complete"] is False  # one call is unpriced: the total is a lower bound

    # repricing with the declared prices re-estimates the first call and keeps what it replaced
    result = reprice(db, config=load_pricing_config(prices))
    assert (result["examined"], result["changed"]) == (2, 1)
    first, second = _calls(db)
    assert first["cost_status"] == "estimated" and first["cost_usd"] == pytest.approx(expected_cost(), abs=1e-12)
    conn = sqlite3.connect(db)
    try:
        history = conn.execute("SELECT api_call_id, cost_usd, cost_status FROM cost_history").fetchall()
    finally:
        conn.close()
    assert history == [(first["api_call_id"], None, "unknown")]
    assert reprice(db, config=load_pricing_config(prices))["changed"] == 0  # idempotent


def test_provider_reported_cost_wins_and_is_actual(tmp_path: Path) -> None:
    reported = 0.0123456
    usage = ScriptedUsage(prompt_tokens=800, completion_tokens=50, cost_usd=reported)
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICE_FILE)  # a declared price exists, but the provider's own figure wins
    with ScriptedServer([ScriptedReply(content="priced by the provider", usage=usage)]) as srv:
        home = HermesHome(tmp_path / "home", srv.base_url)
        assert home.oneshot("hi", env=home.env(HERMETRY_PRICES=str(prices))).returncode == 0
    (call,) = _calls(home.telemetry_db)
    assert (call["cost_status"], call["cost_source"]) == ("actual", "provider_reported")
    assert call["cost_usd"] == pytest.approx(reported, abs=1e-12)
    assert call["provider_cost_usd"] == pytest.approx(reported, abs=1e-12)
    # reprice never touches a provider-reported cost
    assert reprice(home.telemetry_db, config=load_pricing_config(prices))["examined"] == 0
