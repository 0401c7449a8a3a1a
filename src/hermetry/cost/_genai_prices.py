"""Adapter to the genai-prices package: which vendor a Hermes call belongs to, and its list price.

Three things happen here and nowhere else:

* **Provider names.** Hermes names providers its own way (``gemini``, ``xai``, ``openai-api``,
  ``custom``…); genai-prices has its own ids (``google``, ``x-ai``, ``openai``…). The table below
  maps the common ones. We never let genai-prices infer a vendor from the *model name*: a
  ``custom`` endpoint serving a model called ``claude-sonnet-4-5`` is someone's local server,
  not Anthropic. A vendor is recognised only by a mapped provider name or, for unmapped
  providers such as ``custom``, by a ``base_url`` on that vendor's official API host.
* **Token fields.** genai-prices' ``input_tokens`` is the *whole* prompt, cache reads and writes
  included (it subtracts the cache kinds it has prices for); hermetry's excludes them. We add
  them back before calling it.
* **Caching.** Model resolution is cached per genai-prices data snapshot, so a call is priced in
  well under a millisecond even for models genai-prices does not know.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib.metadata import version as _dist_version
from types import MappingProxyType
from typing import Any

# genai-prices itself (and the openai types it pulls in) is imported only when a call actually
# needs a list price: a process whose calls are custom endpoints never pays for loading it.

log = logging.getLogger(__name__)

#: Shown as ``pricing_version``: the installed package, whose bundled data is what priced the call.
GENAI_PRICES_VERSION = f"genai-prices {_dist_version('genai-prices')}"

#: Hermes provider name (lower-case) → genai-prices provider id.
PROVIDER_IDS = MappingProxyType(
    {
        "anthropic": "anthropic",
        "claude": "anthropic",
        "openai": "openai",
        "openai-api": "openai",
        "gemini": "google",
        "google": "google",
        "google-gemini": "google",
        "google-ai-studio": "google",
        "vertex": "google",
        "deepseek": "deepseek",
        "xai": "x-ai",
        "x-ai": "x-ai",
        "grok": "x-ai",
        "openrouter": "openrouter",
        "mistral": "mistral",
        "groq": "groq",
        "fireworks": "fireworks",
        "fireworks-ai": "fireworks",
        "fw": "fireworks",
        "together": "together",
        "together-ai": "together",
        "novita": "novita",
        "novita-ai": "novita",
        "novitaai": "novita",
        "bedrock": "aws",
        "aws": "aws",
        "aws-bedrock": "aws",
        "amazon-bedrock": "aws",
        "azure": "azure",
        "azure-foundry": "azure",
        "zai": "zai",
        "z-ai": "zai",
        "glm": "zai",
        "moonshot": "moonshotai",
        "kimi": "moonshotai",
        "kimi-coding": "moonshotai",
        "minimax": "minimax",
        "arcee": "arcee",
        "cerebras": "cerebras",
        "perplexity": "perplexity",
        "cohere": "cohere",
    }
)

#: Routes billed by a plan or an OAuth login rather than per token at list price. genai-prices
#: is never consulted for them — not even by base_url (``xai-oauth`` talks to api.x.ai) — so
#: they are ``unknown`` unless the operator declares a price or a subscription (``openai-codex``
#: is ``included`` by default, see pricing.py).
PLAN_ROUTES = frozenset(
    {
        "openai-codex",
        "xai-oauth",
        "qwen-oauth",
        "minimax-oauth",
        "copilot",
        "copilot-acp",
        "alibaba-coding-plan",
        "opencode-go",
        "stepfun",
    }
)


@dataclass(frozen=True)
class Route:
    """How to ask genai-prices: by provider id, or by the API URL the call went to."""

    provider_id: str | None = None
    api_url: str | None = None


@dataclass(frozen=True)
class Estimate:
    cost_usd: Decimal
    pricing_version: str


@functools.lru_cache(maxsize=512)
def resolve_route(provider: str | None, base_url: str | None) -> Route | None:
    """Which genai-prices provider prices this Hermes route, or ``None`` if none may."""
    name = (provider or "").strip().lower()
    if name in PLAN_ROUTES:
        return None
    if name in PROVIDER_IDS:
        return Route(provider_id=PROVIDER_IDS[name])
    # custom, local servers and providers we do not map: only an official vendor API host
    # identifies the vendor (genai-prices matches base_url against each vendor's API pattern).
    url = (base_url or "").strip()
    if not url or _is_private_host(url):
        return None  # a local or private server is no vendor's API: no need to even load prices
    return Route(api_url=url)


def _is_private_host(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    if host in ("localhost", "") or host.endswith((".local", ".internal", ".lan", ".localhost")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _candidate_refs(model: str) -> tuple[str, ...]:
    """The model name as given, then without a ``vendor/`` or ``models/`` prefix.

    The prefix is only stripped within the already-chosen provider, so it never moves a call
    to another vendor; aggregators (OpenRouter) keep their ``vendor/model`` ids and match first.
    """
    ref = model.strip()
    if "/" in ref:
        return (ref, ref.rsplit("/", 1)[1])
    return (ref,)


@functools.lru_cache(maxsize=2048)
def _find_model_ref(snapshot_stamp: datetime, route: Route, model: str) -> str | None:
    """The first candidate model ref genai-prices knows for this route; cached, misses too.

    ``snapshot_stamp`` keys the cache to the genai-prices data snapshot in use, so an
    auto-updated snapshot is looked up afresh.
    """
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    for ref in _candidate_refs(model):
        try:
            snapshot.find_provider_model(ref, None, route.provider_id, route.api_url)
        except LookupError:
            continue
        return ref
    log.debug("genai-prices has no price for model %r via %r", model, route)
    return None


def estimate(
    *,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    reasoning_tokens: int,
    at: datetime,
) -> Estimate | None:
    """genai-prices' list price for the call at time ``at``, or ``None`` if it has none.

    Token counts are hermetry's canonical ones (``input_tokens`` excludes cache reads/writes,
    ``output_tokens`` includes reasoning). Lookup errors are returned as ``None``; genai-prices'
    validation errors propagate (the caller turns any exception into ``unknown``).
    """
    from genai_prices import data_snapshot

    stamp = data_snapshot.get_snapshot().timestamp
    key = (provider, base_url, model, int(at.timestamp() // 60), stamp)
    if key in _memo:
        found = _memo[key]
    else:
        found = _lookup(provider, base_url, model, at, stamp)
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        _memo[key] = found
    if found is None:
        return None
    route, ref, rates = found
    reasoning = min(reasoning_tokens, output_tokens)
    if rates is not None:
        base, per_input, per_cache_read, per_cache_write, per_output, per_reasoning, version = rates
        cost = (base + input_tokens * per_input + cache_read_tokens * per_cache_read
                + cache_write_tokens * per_cache_write + output_tokens * per_output
                + reasoning * per_reasoning) / _MILLION
        return Estimate(cost_usd=cost, pricing_version=version)
    total, version = _calc(route, ref, at, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens,
                           reasoning)
    return Estimate(cost_usd=total, pricing_version=version)


_MILLION = Decimal(1_000_000)

#: ``estimate``'s lookups for one route, model and minute — what :func:`resolve_route`,
#: :func:`_find_model_ref` and :func:`_linear_rates` give for them (each deterministic for a
#: data snapshot), as one dict lookup on plain values: building the ``Route``, hashing it twice
#: and ``datetime.replace`` cost more than the arithmetic (bench/ingest.py, price stage).
#: Bounded: cleared when full.
_memo: dict[tuple[Any, ...], tuple[Route, str, Any] | None] = {}
_MEMO_SIZE = 4096


def _lookup(provider: str | None, base_url: str | None, model: str | None, at: datetime,
            stamp: datetime) -> tuple[Route, str, Any] | None:
    """(route, model ref, linear rates or None) for a call at ``at``; None: no price."""
    route = resolve_route(provider, base_url)
    if route is None or not model or not model.strip():
        return None
    ref = _find_model_ref(stamp, route, model)
    if ref is None:
        return None
    return route, ref, _rates_in_effect(stamp, route, ref, at.replace(second=0, microsecond=0))


#: The linear rates of each price a model has had (its ``ModelPrice`` object in genai-prices' data,
#: kept with them), so a minute not seen before costs one look-up of the price in effect, not
#: six of genai-prices' calculations: a model's prices change at a few dates and, for off-peak
#: rates, twice a day. Bounded: cleared when full.
_rates: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _rates_in_effect(stamp: datetime, route: Route, ref: str, minute: datetime) -> Any:
    """:func:`_linear_rates` of the price in effect at ``minute``, derived once per price.
    (genai-prices prices a call by the ``ModelPrice`` it selects for the call's time and nothing
    else of the time — hermetry passes no price context.)"""
    from genai_prices import data_snapshot

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(ref, None, route.provider_id, route.api_url)
        price = info.get_prices(minute)
    except Exception:
        return _linear_rates(stamp, route, ref, minute)
    key = (stamp, route, ref, id(price))
    known = _rates.get(key)
    if known is not None and known[0] is price:
        return known[1]
    rates = _linear_rates(stamp, route, ref, minute)
    if len(_rates) >= _MEMO_SIZE:
        _rates.clear()
    _rates[key] = (price, rates)
    return rates


def _calc(route: Route, ref: str, at: datetime, input_tokens: int, cache_read_tokens: int,
          cache_write_tokens: int, output_tokens: int, reasoning_tokens: int) -> tuple[Decimal, str]:
    """genai-prices' own calculation (the reference every fast path is derived from)."""
    import genai_prices
    from genai_prices import Usage

    usage = Usage(
        # genai-prices' input is the whole prompt; it carves out the cache kinds it prices.
        input_tokens=input_tokens + cache_read_tokens + cache_write_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        output_tokens=output_tokens,
        # Reasoning is part of output; genai-prices only splits it out for the few models that
        # price it differently, otherwise it is output and counted once.
        output_reasoning_tokens=reasoning_tokens,
    )
    if route.provider_id is not None:
        calc = genai_prices.calc_price(usage, ref, provider_id=route.provider_id, genai_request_timestamp=at)
    else:
        calc = genai_prices.calc_price(usage, ref, provider_api_url=route.api_url, genai_request_timestamp=at)
    version = GENAI_PRICES_VERSION
    if calc.auto_update_timestamp is not None:
        # Prices came from a downloaded snapshot, not the package's bundled data: say when.
        version = f"{version} (data {calc.auto_update_timestamp.isoformat(timespec='seconds')})"
    return calc.total_price, version


@functools.lru_cache(maxsize=4096)
def _linear_rates(snapshot_stamp: datetime, route: Route, ref: str,
                  minute: datetime) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal, str] | None:
    """Per-million-token rates for a model whose price is linear in the token counts, derived
    from genai-prices' own calculation; ``None`` when it is not (tiered prices) — then every
    call goes through genai-prices. genai-prices spends ~50–70 µs per call; this is a few µs.

    Cached per minute: prices that change with the time of day (off-peak rates) change on
    minute boundaries at the finest.
    """
    from genai_prices import data_snapshot
    from genai_prices.types import TieredPrices

    try:
        provider, info = data_snapshot.get_snapshot().find_provider_model(ref, None, route.provider_id, route.api_url)
        model_price = info.get_prices(minute)
    except Exception:
        return None
    if any(isinstance(v, TieredPrices) for v in vars(model_price).values()):
        return None
    m = 1_000_000
    base, version = _calc(route, ref, minute, 0, 0, 0, 0, 0)
    rates = [(_calc(route, ref, minute, *tokens)[0] - base) for tokens in (
        (m, 0, 0, 0, 0), (0, m, 0, 0, 0), (0, 0, m, 0, 0), (0, 0, 0, m, 0))]
    with_reasoning = _calc(route, ref, minute, 0, 0, 0, m, m)[0] - base - rates[3]
    return base * _MILLION, rates[0], rates[1], rates[2], rates[3], with_reasoning, version


