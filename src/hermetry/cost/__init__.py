"""Cost with provenance: tokens → ``CostResult`` (actual / estimated / included / unknown).

See docs/cost.md. Everything that shows or stores a cost goes through :func:`price_call` and
:func:`format_usd`; nothing else computes a price.
"""

from .price_file import (
    Match,
    ModelPriceRule,
    ModelPrices,
    PriceFileError,
    PriceTier,
    PricingConfig,
    Rates,
    SubscriptionRule,
    load_pricing_config,
    parse_pricing_config,
)
from .pricing import (
    BUILTIN_INCLUDED_PROVIDERS,
    CostResult,
    CostStatus,
    StoredCost,
    TokenUsage,
    format_cost,
    format_usd,
    price_api_call,
    price_call,
)

__all__ = [
    "BUILTIN_INCLUDED_PROVIDERS",
    "CostResult",
    "CostStatus",
    "Match",
    "ModelPriceRule",
    "ModelPrices",
    "PriceFileError",
    "PriceTier",
    "PricingConfig",
    "Rates",
    "StoredCost",
    "SubscriptionRule",
    "TokenUsage",
    "format_cost",
    "format_usd",
    "load_pricing_config",
    "parse_pricing_config",
    "price_api_call",
    "price_call",
]
