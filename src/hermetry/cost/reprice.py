"""``hermetry reprice``: re-estimate stored API calls with the prices in force now.

Prices change (a new genai-prices release, an operator's new contract). Repricing recomputes
each stored call's cost with :func:`~hermetry.cost.pricing.price_call`, at the call's own time,
and keeps the figure it replaces in ``cost_history`` — nothing is lost. Costs the provider
reported (``actual``) are facts, not estimates: they are never repriced. A known estimate is
never replaced by "unknown" (say, when the price file that priced it is not given this time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hermetry.analytics.query import window_sql
from hermetry.cost.price_file import PricingConfig
from hermetry.cost.pricing import price_api_call
from hermetry.model.kinds import API_OK, CostStatus
from hermetry.model.units import DAY_MS
from hermetry.stores.rollups import mark_hours
from hermetry.stores.sqlite import connect, migrate
from hermetry.stores.sqlite_util import transaction

_SELECT = f"""
SELECT api_call_id, provider, model, response_model, base_url, started_at_ms, input_tokens, output_tokens,
       cache_read_tokens, cache_write_tokens, reasoning_tokens, provider_cost_usd,
       cost_usd, cost_status, cost_source, pricing_version
FROM api_calls
WHERE status = '{API_OK}' AND origin = 'live' AND COALESCE(cost_status, '{CostStatus.UNKNOWN}') <> '{CostStatus.ACTUAL}'
  AND {window_sql()}
"""


def reprice(
    db: str | Path,
    *,
    config: PricingConfig | None = None,
    since_ms: float = 0.0,
    until_ms: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Reprice stored calls in the window; returns counts of calls examined and changed."""
    conn = connect(db, create=False)  # repricing a file that does not exist creates nothing
    try:
        migrate(conn)
        until = until_ms if until_ms is not None else time.time() * 1000 + DAY_MS
        rows = conn.execute(_SELECT, (since_ms, until)).fetchall()
        now_ms = time.time() * 1000
        changed: list[tuple[Any, ...]] = []
        changed_at: list[float | None] = []  # their rollup hours are marked dirty
        history: list[tuple[Any, ...]] = []
        by_status: dict[str, int] = {}
        kept = 0
        for i, r in enumerate(rows):
            (call_id, provider, model, response_model, base_url, started, inp, out, cr, cw, rs, reported,
             old_cost, old_status, old_source, old_version) = r
            new: tuple[Any, ...] = tuple(price_api_call(
                provider=provider, model=model or response_model, base_url=base_url,
                tokens=(inp, out, cr, cw, rs), started_at_ms=started, provider_cost_usd=reported,
                config=config,
            ))
            if new[1] == CostStatus.UNKNOWN and old_status in (CostStatus.ESTIMATED, CostStatus.INCLUDED):
                # today's rules cannot price it (e.g. the price file is not given): keep the known figure
                kept += 1
                new = (old_cost, old_status, old_source, old_version)
            by_status[new[1]] = by_status.get(new[1], 0) + 1
            if new != (old_cost, old_status, old_source, old_version):
                history.append((call_id, old_cost, old_status, old_source, old_version, now_ms))
                changed.append((*new, call_id))
                changed_at.append(started)
            if progress and (i % 1000 == 0 or i == len(rows) - 1):
                progress(i + 1, len(rows))
        with transaction(conn):
            conn.executemany(
                "INSERT OR IGNORE INTO cost_history (api_call_id, cost_usd, cost_status, cost_source, "
                "pricing_version, replaced_at_ms) VALUES (?, ?, ?, ?, ?, ?)", history)
            conn.executemany(
                "UPDATE api_calls SET cost_usd = ?, cost_status = ?, cost_source = ?, pricing_version = ? "
                "WHERE api_call_id = ?", changed)
            mark_hours(conn, changed_at)
    finally:
        conn.close()
    return {"schema": "hermetry.reprice.v1", "examined": len(rows), "changed": len(changed), "kept_known": kept,
            "by_status": dict(sorted(by_status.items()))}
