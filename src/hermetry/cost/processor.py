"""The recorder processor that prices each finished API call as it is written.

Runs on the recorder's writer thread (never on the agent's), after a source has produced an
:class:`~hermetry.model.events.ApiCall`. A call that already carries a cost status (e.g. a
backfilled one) is left as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hermetry.cost.price_file import PricingConfig, load_pricing_config
from hermetry.cost.pricing import price_api_call
from hermetry.model.events import ApiCall, Event
from hermetry.model.kinds import API_OK

log = logging.getLogger("hermetry")


class PriceApiCalls:
    """``processor(event) -> event``: fill cost_usd / cost_status / cost_source / pricing_version."""

    def __init__(self, config: PricingConfig | None = None) -> None:
        self.config = config

    @classmethod
    def from_file(cls, path: Path | None) -> PriceApiCalls:
        """Use the operator's price file if there is one; a broken file is reported, not fatal."""
        from hermetry.recorder.notice import warn_once

        if path is None:
            return cls(None)
        if not path.exists():
            warn_once("prices", f"no price file at {path}; costs use list prices only (`hermetry doctor`)")
            return cls(None)
        try:
            return cls(load_pricing_config(path))
        except Exception as exc:
            warn_once("prices", f"ignoring the price file {' '.join(str(exc).split())[:300]}; costs use list "
                                f"prices only (`hermetry doctor`)")
            return cls(None)

    def __call__(self, event: Event) -> Event:
        if not isinstance(event, ApiCall) or event.cost_status is not None or event.status != API_OK:
            return event
        (event.cost_usd, event.cost_status, event.cost_source, event.pricing_version) = price_api_call(
            provider=event.provider, model=event.model or event.response_model, base_url=event.base_url,
            tokens=(event.input_tokens, event.output_tokens, event.cache_read_tokens,
                    event.cache_write_tokens, event.reasoning_tokens),
            started_at_ms=event.started_at_ms, provider_cost_usd=event.provider_cost_usd, config=self.config,
        )
        return event
