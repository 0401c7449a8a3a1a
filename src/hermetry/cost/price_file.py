"""Operator price files: declared per-token prices and subscriptions, validated at load time.

An operator writes a YAML file to price what genai-prices does not know (a custom or local
endpoint, a negotiated contract) and to declare which routes are paid by a subscription.
Everything is checked when the file is loaded, so a typo fails loudly at start-up instead of
silently mispricing calls later. docs/cost.md documents the format.

Prices are held as :class:`~decimal.Decimal` (USD per million tokens) so that sub-cent costs are
computed exactly; they are converted to ``float`` only at the very end, in :mod:`.pricing`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from os import PathLike
from pathlib import Path

import yaml

__all__ = [
    "Match",
    "ModelPriceRule",
    "ModelPrices",
    "PriceFileError",
    "PriceTier",
    "PricingConfig",
    "Rates",
    "SubscriptionRule",
    "load_pricing_config",
    "parse_pricing_config",
]

_MILLION = Decimal(1_000_000)
_PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
_MATCH_KEYS = ("provider", "model", "base_url")


class PriceFileError(ValueError):
    """The price file is malformed. The message names the file and the offending field."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens for each token kind (hermetry's canonical kinds, see docs/cost.md)."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal
    cache_write_per_mtok: Decimal


@dataclass(frozen=True)
class PriceTier:
    """Rates that replace the base rates once the prompt exceeds ``above_prompt_tokens``."""

    above_prompt_tokens: int
    rates: Rates


@dataclass(frozen=True)
class ModelPrices:
    """Base rates plus optional long-context tiers (ascending by threshold)."""

    base: Rates
    tiers: tuple[PriceTier, ...] = ()

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The rates in force for a call whose whole prompt is ``prompt_tokens``.

        Same "cliff" rule as genai-prices and the vendors: the highest tier whose threshold the
        prompt strictly exceeds applies to *every* token of the call, output included.
        """
        rates = self.base
        for tier in self.tiers:
            if prompt_tokens > tier.above_prompt_tokens:
                rates = tier.rates
        return rates

    def cost_usd(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
    ) -> Decimal:
        """Exact cost in USD. ``input_tokens`` excludes cache reads and writes (canonical model)."""
        prompt_tokens = input_tokens + cache_read_tokens + cache_write_tokens
        rates = self.rates_for(prompt_tokens)
        total = (
            input_tokens * rates.input_per_mtok
            + cache_read_tokens * rates.cache_read_per_mtok
            + cache_write_tokens * rates.cache_write_per_mtok
            + output_tokens * rates.output_per_mtok
        )
        return total / _MILLION


def _normalize_base_url(value: str) -> str:
    return value.strip().rstrip("/").lower()


@dataclass(frozen=True)
class Match:
    """Which calls a rule applies to. Each field is a case-insensitive glob; ``None`` means any."""

    provider: str | None = None
    model: str | None = None
    base_url: str | None = None

    def matches(self, provider: str | None, model: str | None, base_url: str | None) -> bool:
        checks = (
            (self.provider, (provider or "").strip().lower()),
            (self.model, (model or "").strip().lower()),
            (self.base_url, _normalize_base_url(base_url or "")),
        )
        return all(pattern is None or fnmatchcase(value, pattern) for pattern, value in checks)


@dataclass(frozen=True)
class ModelPriceRule:
    """Declared prices for the calls that ``match`` selects."""

    match: Match
    prices: ModelPrices
    source: str | None = None


@dataclass(frozen=True)
class SubscriptionRule:
    """Calls that ``match`` selects are paid by a subscription (cost status ``included``)."""

    match: Match
    name: str | None = None


@dataclass(frozen=True)
class PricingConfig:
    """An operator's price file, parsed. Rules are tried in file order; the first match wins."""

    version: str
    name: str
    models: tuple[ModelPriceRule, ...] = field(default_factory=tuple)
    subscriptions: tuple[SubscriptionRule, ...] = field(default_factory=tuple)

    def find_model(
        self, provider: str | None, model: str | None, base_url: str | None
    ) -> ModelPriceRule | None:
        return next((r for r in self.models if r.match.matches(provider, model, base_url)), None)

    def find_subscription(
        self, provider: str | None, model: str | None, base_url: str | None
    ) -> SubscriptionRule | None:
        return next(
            (r for r in self.subscriptions if r.match.matches(provider, model, base_url)), None
        )


def load_pricing_config(path: str | PathLike[str]) -> PricingConfig:
    """Read and validate an operator price file. Raises :class:`PriceFileError` if it is bad.

    The config's ``name`` (used in ``cost_source``) is the file's top-level ``name`` if it has
    one, else the path as given.
    """
    path_text = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"{path_text}: cannot read price file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceFileError(f"{path_text}: not valid YAML: {exc}") from exc
    return parse_pricing_config(data, name=path_text, where=path_text)


def parse_pricing_config(data: object, *, name: str, where: str | None = None) -> PricingConfig:
    """Validate already-parsed price-file data (e.g. embedded in another config file)."""
    return _Parser(where or name).config(data, default_name=name)


class _Parser:
    """Validation with error messages that point at the field, e.g. ``models[2].prices.tiers[0]``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, at: str, problem: str) -> PriceFileError:
        return PriceFileError(f"{self.where}: {at}: {problem}")

    def mapping(self, value: object, at: str, allowed: tuple[str, ...]) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise self.fail(at, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                # Unknown keys are errors: a misspelt price key must not silently fall back.
                raise self.fail(at, f"unknown key {key!r} (allowed: {', '.join(allowed)})")
        return value

    def sequence(self, value: object, at: str) -> list[object]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(at, f"expected a list, got {type(value).__name__}")
        return value

    def text(self, value: object, at: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(at, f"expected a string, got {type(value).__name__}")
        text = str(value).strip()
        if not text:
            raise self.fail(at, "must not be empty")
        return text

    def optional_text(self, value: object, at: str) -> str | None:
        return None if value is None else self.text(value, at)

    def price(self, value: object, at: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise self.fail(at, f"expected a number (USD per million tokens), got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(at, f"must be a finite number, got {value!r}")
        try:
            # str() of a float is its shortest repr, so YAML's 0.1 becomes exactly Decimal("0.1").
            price = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.fail(
                at, f"expected a number (USD per million tokens), got {value!r}"
            ) from None
        if not price.is_finite() or price < 0:
            raise self.fail(at, f"must be a finite, non-negative number, got {value!r}")
        return price

    def threshold(self, value: object, at: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(at, f"expected a non-negative whole number of tokens, got {value!r}")
        return value

    def config(self, data: object, *, default_name: str) -> PricingConfig:
        top = self.mapping(data, "file", ("version", "name", "models", "subscriptions"))
        if "version" not in top:
            raise self.fail("version", 'required (e.g. version: "2026-11-contract")')
        version = self.text(top["version"], "version")
        name = self.optional_text(top.get("name"), "name") or default_name
        models = tuple(
            self.model_rule(item, f"models[{i}]")
            for i, item in enumerate(self.sequence(top.get("models"), "models"))
        )
        subscriptions = tuple(
            self.subscription(item, f"subscriptions[{i}]")
            for i, item in enumerate(self.sequence(top.get("subscriptions"), "subscriptions"))
        )
        return PricingConfig(version=version, name=name, models=models, subscriptions=subscriptions)

    def match(self, value: object, at: str) -> Match:
        raw = self.mapping(value, at, _MATCH_KEYS)
        provider = self.optional_text(raw.get("provider"), f"{at}.provider")
        model = self.optional_text(raw.get("model"), f"{at}.model")
        base_url = self.optional_text(raw.get("base_url"), f"{at}.base_url")
        return Match(
            provider=provider.lower() if provider else None,
            model=model.lower() if model else None,
            base_url=_normalize_base_url(base_url) if base_url else None,
        )

    def model_rule(self, value: object, at: str) -> ModelPriceRule:
        raw = self.mapping(value, at, ("match", "prices", "source"))
        if "match" not in raw:
            raise self.fail(f"{at}.match", "required")
        if "prices" not in raw:
            raise self.fail(f"{at}.prices", "required")
        match = self.match(raw["match"], f"{at}.match")
        if match.model is None:
            raise self.fail(f"{at}.match.model", 'required (use "*" to match every model)')
        return ModelPriceRule(
            match=match,
            prices=self.prices(raw["prices"], f"{at}.prices"),
            source=self.optional_text(raw.get("source"), f"{at}.source"),
        )

    def declared(self, raw: Mapping[str, object], at: str) -> dict[str, Decimal]:
        return {key: self.price(raw[key], f"{at}.{key}") for key in _PRICE_KEYS if key in raw}

    def rates(self, declared: Mapping[str, Decimal]) -> Rates:
        # Without a declared cache price, cache tokens cost the same as uncached input:
        # no discount is assumed that the operator did not write down.
        input_price = declared["input_per_mtok"]
        return Rates(
            input_per_mtok=input_price,
            output_per_mtok=declared["output_per_mtok"],
            cache_read_per_mtok=declared.get("cache_read_per_mtok", input_price),
            cache_write_per_mtok=declared.get("cache_write_per_mtok", input_price),
        )

    def prices(self, value: object, at: str) -> ModelPrices:
        raw = self.mapping(value, at, (*_PRICE_KEYS, "tiers"))
        base = self.declared(raw, at)
        for key in ("input_per_mtok", "output_per_mtok"):
            if key not in base:
                raise self.fail(f"{at}.{key}", "required")
        tiers: list[PriceTier] = []
        previous = -1
        declared = base
        for i, item in enumerate(self.sequence(raw.get("tiers"), f"{at}.tiers")):
            tier_at = f"{at}.tiers[{i}]"
            tier_raw = self.mapping(item, tier_at, ("above_prompt_tokens", *_PRICE_KEYS))
            if "above_prompt_tokens" not in tier_raw:
                raise self.fail(f"{tier_at}.above_prompt_tokens", "required")
            threshold = self.threshold(
                tier_raw["above_prompt_tokens"], f"{tier_at}.above_prompt_tokens"
            )
            if threshold <= previous:
                raise self.fail(
                    f"{tier_at}.above_prompt_tokens",
                    f"tiers must be in strictly ascending order ({threshold} after {previous})",
                )
            previous = threshold
            overrides = self.declared(tier_raw, tier_at)
            if not overrides:
                raise self.fail(tier_at, f"declares no price (one of: {', '.join(_PRICE_KEYS)})")
            # A tier restates only what changes; anything it leaves out keeps the price of the
            # tier below (a later tier never silently falls back to the cheaper base). The cache
            # defaults (= input price) are applied after merging.
            declared = {**declared, **overrides}
            tiers.append(PriceTier(threshold, self.rates(declared)))
        return ModelPrices(base=self.rates(base), tiers=tuple(tiers))

    def subscription(self, value: object, at: str) -> SubscriptionRule:
        raw = self.mapping(value, at, (*_MATCH_KEYS, "name"))
        name = self.optional_text(raw.get("name"), f"{at}.name")
        match = self.match({k: v for k, v in raw.items() if k in _MATCH_KEYS}, at)
        if match == Match():
            raise self.fail(at, "needs at least one of provider, model, base_url")
        return SubscriptionRule(match=match, name=name)
