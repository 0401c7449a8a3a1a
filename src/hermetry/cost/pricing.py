"""The one place that turns an LLM API call's tokens into a cost — with its provenance.

Every cost hermetry records says where it came from (``cost_status``, ``cost_source``,
``pricing_version``). A cost we cannot establish is ``unknown`` with ``cost_usd=None``; it is
never reported as ``$0``. docs/cost.md explains the rules; :func:`price_call` applies them:

1. a cost the provider reported                  → ``actual``    (``provider_reported``)
2. the operator's price file                      → ``estimated`` (``price_file:<source>``)
3. the operator's subscriptions (+ openai-codex)  → ``included``  (cost ``None``)
4. genai-prices' bundled list prices at ``at``    → ``estimated`` (``genai-prices``)
5. otherwise                                      → ``unknown``   (cost ``None``)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple, TypeGuard

from hermetry.model.kinds import CostStatus

from . import _genai_prices
from .price_file import PricingConfig

__all__ = [
    "BUILTIN_INCLUDED_PROVIDERS",
    "CostResult",
    "CostStatus",
    "StoredCost",
    "TokenUsage",
    "format_cost",
    "format_usd",
    "price_api_call",
    "price_call",
]

log = logging.getLogger(__name__)

PROVIDER_REPORTED = "provider_reported"
GENAI_PRICES = "genai-prices"

#: Hermes routes that are subscription-billed whatever the operator declares: Hermes itself
#: bills ``openai-codex`` (a ChatGPT-plan login) as ``subscription_included``.
BUILTIN_INCLUDED_PROVIDERS = frozenset({"openai-codex"})


@dataclass(frozen=True)
class TokenUsage:
    """Token counts of one API call, in hermetry's canonical (= Hermes' normalized) kinds.

    ``input_tokens`` excludes cache reads and cache writes; ``output_tokens`` includes
    reasoning; ``reasoning_tokens`` is the part of the output that was reasoning (it is never
    added again). ``None`` for input or output means "not reported" — such a call cannot be
    priced from tokens; ``None`` for the other kinds counts as 0.
    """

    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None = 0
    cache_write_tokens: int | None = 0
    reasoning_tokens: int | None = 0

    @property
    def prompt_tokens(self) -> int | None:
        """The whole prompt: input + cache reads + cache writes (what context tiers look at)."""
        if self.input_tokens is None:
            return None
        return self.input_tokens + (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)

    @classmethod
    def from_mapping(cls, usage: Mapping[str, object]) -> TokenUsage:
        """Build from a Hermes ``usage`` dict (same key names); non-integers become ``None``."""

        def count(key: str) -> int | None:
            value = usage.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            input_tokens=count("input_tokens"),
            output_tokens=count("output_tokens"),
            cache_read_tokens=count("cache_read_tokens"),
            cache_write_tokens=count("cache_write_tokens"),
            reasoning_tokens=count("reasoning_tokens"),
        )


@dataclass(frozen=True)
class CostResult:
    """A cost with its provenance.

    ``cost_usd`` is ``None`` for ``unknown`` and for ``included`` (a subscription has no
    per-call price; ``0.0`` would read as "free" and hide the fee). ``cost_source`` names
    where the number came from; ``pricing_version`` names the version of the price list used.
    """

    cost_usd: float | None
    cost_status: CostStatus
    cost_source: str | None
    pricing_version: str | None


UNKNOWN = CostResult(None, CostStatus.UNKNOWN, None, None)


@dataclass(frozen=True)
class _Counts:
    input: int
    output: int
    cache_read: int
    cache_write: int
    reasoning: int


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counts(usage: TokenUsage) -> _Counts | None:
    """Validated counts, or ``None`` if the call's tokens are unknown or nonsensical.

    (Written out, not as generator expressions: this runs once per priced call on the writer
    thread, and the generators cost more than the checks.)"""
    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
    cache_read = usage.cache_read_tokens or 0
    cache_write = usage.cache_write_tokens or 0
    reasoning = usage.reasoning_tokens or 0
    if not (_is_count(input_tokens) and _is_count(output_tokens) and _is_count(cache_read)
            and _is_count(cache_write) and _is_count(reasoning)):
        return None
    return _Counts(int(input_tokens), int(output_tokens), int(cache_read), int(cache_write),
                   int(reasoning))


def _reported_cost(value: object) -> Decimal | None:
    """A usable provider-reported cost: a finite, non-negative number; anything else is ignored."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    cost = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not cost.is_finite() or cost < 0:
        return None
    return cost


def price_call(
    *,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    usage: TokenUsage,
    at: datetime,
    provider_cost_usd: float | None = None,
    config: PricingConfig | None = None,
) -> CostResult:
    """Price one API call made at ``at`` (naive datetimes are taken as UTC). Never raises.

    It runs once per API call in a background thread, so any failure — a genai-prices lookup
    or validation error, odd input — is logged at debug level and reported as ``unknown``.
    """
    try:
        return _price_call(provider, model, base_url, usage, at, provider_cost_usd, config)
    except Exception:
        log.debug("pricing failed for %r/%r; reporting unknown", provider, model, exc_info=True)
        return UNKNOWN


class StoredCost(NamedTuple):
    """The four cost columns of an API-call row, as every writer stores them."""

    cost_usd: float | None
    cost_status: str
    cost_source: str | None
    pricing_version: str | None


def price_api_call(
    *,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    tokens: tuple[int | None, int | None, int | None, int | None, int | None],
    started_at_ms: float | None,
    provider_cost_usd: float | None = None,
    config: PricingConfig | None = None,
) -> StoredCost:
    """Price one stored or recorded API call: ``tokens`` in :data:`hermetry.model.kinds.TOKEN_KINDS`
    order, its start in epoch ms. The one adapter between a call's row and :func:`price_call`
    (the live processor, ``reprice`` and the backfill all use it). Never raises."""
    result = price_call(
        provider=provider, model=model, base_url=base_url, usage=TokenUsage(*tokens),
        at=datetime.fromtimestamp((started_at_ms or 0) / 1000, tz=UTC),
        provider_cost_usd=provider_cost_usd, config=config,
    )
    return StoredCost(result.cost_usd, str(result.cost_status), result.cost_source, result.pricing_version)


def _price_call(
    provider: str | None,
    model: str | None,
    base_url: str | None,
    usage: TokenUsage,
    at: datetime,
    provider_cost_usd: float | None,
    config: PricingConfig | None,
) -> CostResult:
    reported = _reported_cost(provider_cost_usd)
    if reported is not None:
        return CostResult(float(reported), CostStatus.ACTUAL, PROVIDER_REPORTED, None)

    counts = _counts(usage)

    if config is not None:
        rule = config.find_model(provider, model, base_url)
        if rule is not None:
            if counts is None:
                return UNKNOWN
            cost = rule.prices.cost_usd(
                input_tokens=counts.input,
                output_tokens=counts.output,
                cache_read_tokens=counts.cache_read,
                cache_write_tokens=counts.cache_write,
            )
            source = f"price_file:{rule.source or config.name}"
            return CostResult(float(cost), CostStatus.ESTIMATED, source, config.version)

        subscription = config.find_subscription(provider, model, base_url)
        if subscription is not None:
            source = f"subscription:{subscription.name or config.name}"
            return CostResult(None, CostStatus.INCLUDED, source, config.version)

    provider_name = (provider or "").strip().lower()
    if provider_name in BUILTIN_INCLUDED_PROVIDERS:
        return CostResult(None, CostStatus.INCLUDED, f"subscription:{provider_name}", None)

    if counts is None:
        return UNKNOWN
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    estimate = _genai_prices.estimate(
        provider=provider,
        model=model,
        base_url=base_url,
        input_tokens=counts.input,
        output_tokens=counts.output,
        cache_read_tokens=counts.cache_read,
        cache_write_tokens=counts.cache_write,
        reasoning_tokens=counts.reasoning,
        at=at,
    )
    if estimate is None:
        return UNKNOWN
    return CostResult(
        float(estimate.cost_usd), CostStatus.ESTIMATED, GENAI_PRICES, estimate.pricing_version
    )


def format_usd(value: float | None) -> str:
    """Dollars for people: ``None`` → ``"unknown"``; sub-cent amounts keep 3 significant digits.

    ``12.4`` → ``$12.40``, ``1234.5`` → ``$1,234.50``, ``0.5`` → ``$0.50``,
    ``0.0123`` → ``$0.0123``, ``0.000123`` → ``$0.000123``, ``0`` → ``$0.00``.
    Amounts of a dollar or more get cents; smaller ones get three significant digits (at least
    two decimals), so a real sub-cent cost never prints as ``$0.00``.
    """
    if value is None or isinstance(value, bool):
        return "unknown"
    number = float(value)
    if not math.isfinite(number):
        return "unknown"
    amount = Decimal(repr(number))
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount >= 1:
        return f"{sign}${amount.quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}"
    places = max(2, 2 - amount.adjusted())  # adjusted() is the exponent of the leading digit
    rounded = amount.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    whole, _, fraction = f"{rounded:f}".partition(".")
    return f"{sign}${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def format_cost(result: CostResult) -> str:
    """A cost with its status for display: ``$0.0123``, ``~$0.0123``, ``included``, ``unknown``.

    Estimates carry a ``~`` so they are never mistaken for a provider's bill.
    """
    if result.cost_status == CostStatus.INCLUDED and result.cost_usd is None:
        return "included"
    if result.cost_usd is None:
        return "unknown"
    text = format_usd(result.cost_usd)
    return f"~{text}" if result.cost_status == CostStatus.ESTIMATED else text
