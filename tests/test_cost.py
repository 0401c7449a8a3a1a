"""Tests for hermetry.cost: expected costs are computed by hand from published per-token prices.

Every per-million price below is written as a literal with the model and tier it belongs to;
``test_literal_prices_are_genai_prices_bundled_data`` checks each literal against the data
bundled in genai-prices 0.2.3, so a data change upstream fails loudly in one obvious place.

Canonical token kinds (docs/cost.md): ``input`` excludes cache reads/writes, ``output``
includes reasoning, ``reasoning`` is a subset of output.
"""

from __future__ import annotations

import importlib.metadata
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import data_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from hermetry.cost import (
    CostResult,
    CostStatus,
    PriceFileError,
    PricingConfig,
    TokenUsage,
    _genai_prices,
    format_cost,
    format_usd,
    load_pricing_config,
    parse_pricing_config,
    price_call,
)

M = Decimal(1_000_000)
AT = datetime(2025, 10, 15, 12, 0, tzinfo=UTC)
GENAI_VERSION = f"genai-prices {importlib.metadata.version('genai-prices')}"

# --- published prices, USD per million tokens (as bundled in genai-prices 0.2.3) -------------
# Claude Sonnet 4 (claude-sonnet-4-20250514), flat
SONNET4_IN, SONNET4_CW, SONNET4_CR, SONNET4_OUT = (
    Decimal("3"),
    Decimal("3.75"),
    Decimal("0.3"),
    Decimal("15"),
)
# Claude Sonnet 4.5, prompt <= 200k tokens
SONNET45_IN, SONNET45_CW, SONNET45_CR, SONNET45_OUT = (
    Decimal("3"),
    Decimal("3.75"),
    Decimal("0.3"),
    Decimal("15"),
)
# Claude Sonnet 4.5, prompt > 200k tokens (long-context tier)
SONNET45_LC_IN, SONNET45_LC_CW, SONNET45_LC_CR, SONNET45_LC_OUT = (
    Decimal("6"),
    Decimal("7.5"),
    Decimal("0.6"),
    Decimal("22.5"),
)
# Gemini 2.5 Pro, prompt <= 200k / > 200k
GEMINI25PRO_IN, GEMINI25PRO_OUT = Decimal("1.25"), Decimal("10")
GEMINI25PRO_LC_IN, GEMINI25PRO_LC_OUT = Decimal("2.5"), Decimal("15")
# OpenAI o4-mini (a reasoning model; reasoning tokens are billed as output)
O4MINI_IN, O4MINI_CR, O4MINI_OUT = Decimal("1.1"), Decimal("0.275"), Decimal("4.4")
# Perplexity sonar-deep-research: reasoning tokens have their own price
SONAR_DR_IN, SONAR_DR_OUT, SONAR_DR_REASONING = Decimal("2"), Decimal("8"), Decimal("3")
# OpenAI o3 before / from 2025-06-10 (the price cut)
O3_OLD_IN, O3_OLD_OUT = Decimal("10"), Decimal("40")
O3_NEW_IN, O3_NEW_OUT = Decimal("2"), Decimal("8")
# DeepSeek chat: standard hours 00:30-16:30 UTC / off-peak
DSCHAT_IN, DSCHAT_CR, DSCHAT_OUT = Decimal("0.27"), Decimal("0.07"), Decimal("1.1")
DSCHAT_OFF_IN, DSCHAT_OFF_CR, DSCHAT_OFF_OUT = Decimal("0.135"), Decimal("0.035"), Decimal("0.55")
# Claude Opus 4.6: > 200k tier until 2026-03-12, flat from 2026-03-13
OPUS46_LC_IN, OPUS46_LC_OUT = Decimal("10"), Decimal("37.5")
OPUS46_IN, OPUS46_OUT = Decimal("5"), Decimal("25")


def usd(*terms: tuple[int, Decimal]) -> float:
    """Hand computation: sum of tokens × USD-per-million, divided by a million, exactly."""
    return float(sum((Decimal(tokens) * price for tokens, price in terms), Decimal(0)) / M)


def call(
    provider: str | None,
    model: str | None,
    *,
    input: int | None = 0,
    output: int | None = 0,
    cache_read: int | None = 0,
    cache_write: int | None = 0,
    reasoning: int | None = 0,
    base_url: str | None = None,
    at: datetime = AT,
    provider_cost_usd: float | None = None,
    config: PricingConfig | None = None,
) -> CostResult:
    return price_call(
        provider=provider,
        model=model,
        base_url=base_url,
        usage=TokenUsage(input, output, cache_read, cache_write, reasoning),
        at=at,
        provider_cost_usd=provider_cost_usd,
        config=config,
    )


def assert_unknown(result: CostResult) -> None:
    assert result.cost_status == CostStatus.UNKNOWN
    assert result.cost_usd is None  # never a stand-in 0.0
    assert result.cost_source is None
    assert result.pricing_version is None


# --- the literals are genai-prices' data -------------------------------------------------------


def _tiered(base: Decimal, tier: Decimal) -> tuple[Decimal, Decimal]:
    return base, tier


LITERALS = [
    # (provider id, model ref, at, price key, expected: Decimal or (base, >200k tier))
    ("anthropic", "claude-sonnet-4-20250514", AT, "input_mtok", SONNET4_IN),
    ("anthropic", "claude-sonnet-4-20250514", AT, "cache_write_mtok", SONNET4_CW),
    ("anthropic", "claude-sonnet-4-20250514", AT, "cache_read_mtok", SONNET4_CR),
    ("anthropic", "claude-sonnet-4-20250514", AT, "output_mtok", SONNET4_OUT),
    ("openrouter", "anthropic/claude-sonnet-4", AT, "input_mtok", SONNET4_IN),
    ("openrouter", "anthropic/claude-sonnet-4", AT, "cache_write_mtok", SONNET4_CW),
    ("openrouter", "anthropic/claude-sonnet-4", AT, "cache_read_mtok", SONNET4_CR),
    ("openrouter", "anthropic/claude-sonnet-4", AT, "output_mtok", SONNET4_OUT),
    ("anthropic", "claude-sonnet-4-5", AT, "input_mtok", _tiered(SONNET45_IN, SONNET45_LC_IN)),
    (
        "anthropic",
        "claude-sonnet-4-5",
        AT,
        "cache_write_mtok",
        _tiered(SONNET45_CW, SONNET45_LC_CW),
    ),
    ("anthropic", "claude-sonnet-4-5", AT, "cache_read_mtok", _tiered(SONNET45_CR, SONNET45_LC_CR)),
    ("anthropic", "claude-sonnet-4-5", AT, "output_mtok", _tiered(SONNET45_OUT, SONNET45_LC_OUT)),
    ("google", "gemini-2.5-pro", AT, "input_mtok", _tiered(GEMINI25PRO_IN, GEMINI25PRO_LC_IN)),
    ("google", "gemini-2.5-pro", AT, "output_mtok", _tiered(GEMINI25PRO_OUT, GEMINI25PRO_LC_OUT)),
    ("google", "gemini-2.5-pro", AT, "cache_write_mtok", None),  # none: billed as input
    ("openai", "o4-mini", AT, "input_mtok", O4MINI_IN),
    ("openai", "o4-mini", AT, "cache_read_mtok", O4MINI_CR),
    ("openai", "o4-mini", AT, "output_mtok", O4MINI_OUT),
    ("openai", "o4-mini", AT, "output_reasoning_mtok", None),  # none: reasoning is output
    ("perplexity", "sonar-deep-research", AT, "input_mtok", SONAR_DR_IN),
    ("perplexity", "sonar-deep-research", AT, "output_mtok", SONAR_DR_OUT),
    ("perplexity", "sonar-deep-research", AT, "output_reasoning_mtok", SONAR_DR_REASONING),
    ("openai", "o3", datetime(2025, 6, 9, 23, tzinfo=UTC), "input_mtok", O3_OLD_IN),
    ("openai", "o3", datetime(2025, 6, 9, 23, tzinfo=UTC), "output_mtok", O3_OLD_OUT),
    ("openai", "o3", datetime(2025, 6, 10, 0, tzinfo=UTC), "input_mtok", O3_NEW_IN),
    ("openai", "o3", datetime(2025, 6, 10, 0, tzinfo=UTC), "output_mtok", O3_NEW_OUT),
    ("deepseek", "deepseek-chat", AT, "input_mtok", DSCHAT_IN),
    ("deepseek", "deepseek-chat", AT, "cache_read_mtok", DSCHAT_CR),
    ("deepseek", "deepseek-chat", AT, "output_mtok", DSCHAT_OUT),
    ("deepseek", "deepseek-chat", AT.replace(hour=20), "input_mtok", DSCHAT_OFF_IN),
    ("deepseek", "deepseek-chat", AT.replace(hour=20), "cache_read_mtok", DSCHAT_OFF_CR),
    ("deepseek", "deepseek-chat", AT.replace(hour=20), "output_mtok", DSCHAT_OFF_OUT),
    (
        "anthropic",
        "claude-opus-4-6",
        datetime(2026, 3, 12, tzinfo=UTC),
        "input_mtok",
        _tiered(OPUS46_IN, OPUS46_LC_IN),
    ),
    (
        "anthropic",
        "claude-opus-4-6",
        datetime(2026, 3, 12, tzinfo=UTC),
        "output_mtok",
        _tiered(OPUS46_OUT, OPUS46_LC_OUT),
    ),
    ("anthropic", "claude-opus-4-6", datetime(2026, 3, 13, tzinfo=UTC), "input_mtok", OPUS46_IN),
    ("anthropic", "claude-opus-4-6", datetime(2026, 3, 13, tzinfo=UTC), "output_mtok", OPUS46_OUT),
]


@pytest.mark.parametrize(("provider_id", "ref", "at", "key", "expected"), LITERALS)
def test_literal_prices_are_genai_prices_bundled_data(
    provider_id: str, ref: str, at: datetime, key: str, expected: object
) -> None:
    _, model = data_snapshot.get_snapshot().find_provider_model(ref, None, provider_id, None)
    price = getattr(model.get_prices(at), key)
    if isinstance(expected, tuple):
        base, tier = expected
        assert price.base == base
        assert [(t.start, t.price) for t in price.tiers] == [(200_000, tier)]
    else:
        assert price == expected


# --- genai-prices estimates --------------------------------------------------------------------


def test_anthropic_cache_writes_and_reads_each_have_their_price() -> None:
    result = call(
        "anthropic",
        "claude-sonnet-4-20250514",
        input=1_000,
        cache_write=3_000,
        cache_read=2_000,
        output=500,
    )
    expected = usd(
        (1_000, SONNET4_IN), (3_000, SONNET4_CW), (2_000, SONNET4_CR), (500, SONNET4_OUT)
    )
    assert expected == 0.02235
    assert result == CostResult(expected, CostStatus.ESTIMATED, "genai-prices", GENAI_VERSION)
    assert result.pricing_version == "genai-prices 0.2.3"


def test_openrouter_model_ids_are_priced_from_openrouter_list() -> None:
    result = call(
        "openrouter",
        "anthropic/claude-sonnet-4",
        input=1_000,
        cache_write=3_000,
        cache_read=2_000,
        output=500,
    )
    assert result.cost_status == CostStatus.ESTIMATED
    assert result.cost_usd == usd(
        (1_000, SONNET4_IN), (3_000, SONNET4_CW), (2_000, SONNET4_CR), (500, SONNET4_OUT)
    )


def test_long_context_tier_applies_to_every_token_once_prompt_exceeds_200k() -> None:
    # prompt = 10k input + 180k cache read + 20k cache write = 210k > 200k
    result = call(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        input=10_000,
        cache_read=180_000,
        cache_write=20_000,
        output=2_000,
    )
    expected = usd(
        (10_000, SONNET45_LC_IN),
        (180_000, SONNET45_LC_CR),
        (20_000, SONNET45_LC_CW),
        (2_000, SONNET45_LC_OUT),
    )
    assert expected == 0.363
    assert result.cost_usd == expected
    assert result.cost_status == CostStatus.ESTIMATED

    below = call(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        input=10_000,
        cache_read=170_000,
        cache_write=20_000,
        output=2_000,
    )
    assert below.cost_usd == usd(
        (10_000, SONNET45_IN),
        (170_000, SONNET45_CR),
        (20_000, SONNET45_CW),
        (2_000, SONNET45_OUT),
    )


@pytest.mark.parametrize(
    ("input_tokens", "expected"),
    [
        (200_000, usd((200_000, GEMINI25PRO_IN), (1_000, GEMINI25PRO_OUT))),  # at the limit
        (200_001, usd((200_001, GEMINI25PRO_LC_IN), (1_000, GEMINI25PRO_LC_OUT))),  # over it
        (250_000, usd((250_000, GEMINI25PRO_LC_IN), (1_000, GEMINI25PRO_LC_OUT))),
    ],
)
def test_gemini_25_pro_tier_boundary(input_tokens: int, expected: float) -> None:
    result = call("gemini", "gemini-2.5-pro", input=input_tokens, output=1_000)
    assert result.cost_usd == expected
    # Hermes sometimes sends a "models/" or vendor prefix; it is stripped within the provider.
    assert call("gemini", "models/gemini-2.5-pro", input=input_tokens, output=1_000) == result


def test_reasoning_tokens_are_output_and_priced_once() -> None:
    result = call("openai", "o4-mini", input=5_000, cache_read=1_000, output=3_000, reasoning=2_500)
    expected = usd((5_000, O4MINI_IN), (1_000, O4MINI_CR), (3_000, O4MINI_OUT))
    assert expected == 0.018975
    assert result.cost_usd == expected
    double_counted = usd((5_000, O4MINI_IN), (1_000, O4MINI_CR), (5_500, O4MINI_OUT))
    assert result.cost_usd != double_counted
    no_reasoning = call("openai", "o4-mini", input=5_000, cache_read=1_000, output=3_000)
    assert no_reasoning.cost_usd == expected


def test_reasoning_with_its_own_price_is_split_out_of_output() -> None:
    result = call("perplexity", "sonar-deep-research", input=1_000, output=500, reasoning=400)
    assert result.cost_usd == usd(
        (1_000, SONAR_DR_IN), (100, SONAR_DR_OUT), (400, SONAR_DR_REASONING)
    )


def test_price_in_force_at_the_call_time_is_used() -> None:
    before = call(
        "openai", "o3", input=10_000, output=1_000, at=datetime(2025, 6, 9, 12, tzinfo=UTC)
    )
    after = call("openai", "o3", input=10_000, output=1_000, at=datetime(2025, 6, 10, tzinfo=UTC))
    assert before.cost_usd == usd((10_000, O3_OLD_IN), (1_000, O3_OLD_OUT)) == 0.14
    assert after.cost_usd == usd((10_000, O3_NEW_IN), (1_000, O3_NEW_OUT)) == 0.028
    # 22:00 at UTC-5 on 9 June is 03:00 UTC on 10 June: the new price.
    local = datetime(2025, 6, 9, 22, tzinfo=timezone(timedelta(hours=-5)))
    assert call("openai", "o3", input=10_000, output=1_000, at=local) == after
    # A naive datetime is taken as UTC.
    naive = call("openai", "o3", input=10_000, output=1_000, at=datetime(2025, 6, 9, 12))
    assert naive == before


def test_time_of_day_prices() -> None:
    peak = call("deepseek", "deepseek-chat", input=100_000, cache_read=50_000, output=10_000)
    off_peak = call(
        "deepseek",
        "deepseek-chat",
        input=100_000,
        cache_read=50_000,
        output=10_000,
        at=AT.replace(hour=20),
    )
    assert peak.cost_usd == usd((100_000, DSCHAT_IN), (50_000, DSCHAT_CR), (10_000, DSCHAT_OUT))
    assert off_peak.cost_usd == usd(
        (100_000, DSCHAT_OFF_IN), (50_000, DSCHAT_OFF_CR), (10_000, DSCHAT_OFF_OUT)
    )


def test_time_dependent_tier() -> None:
    # Opus 4.6 charged a >200k surcharge until 2026-03-12 and a flat price from 2026-03-13.
    tiered = call(
        "anthropic",
        "claude-opus-4-6",
        input=300_000,
        output=1_000,
        at=datetime(2026, 3, 12, 23, 59, tzinfo=UTC),
    )
    flat = call(
        "anthropic",
        "claude-opus-4-6",
        input=300_000,
        output=1_000,
        at=datetime(2026, 3, 13, tzinfo=UTC),
    )
    assert tiered.cost_usd == usd((300_000, OPUS46_LC_IN), (1_000, OPUS46_LC_OUT)) == 3.0375
    assert flat.cost_usd == usd((300_000, OPUS46_IN), (1_000, OPUS46_OUT)) == 1.525


def test_custom_endpoint_is_unknown_even_with_a_vendor_like_model_name() -> None:
    for provider, base_url in [
        ("custom", "http://127.0.0.1:8080/v1"),
        ("custom", None),
        ("lmstudio", "http://127.0.0.1:1234/v1"),
        ("ollama", "http://localhost:11434/v1"),
        ("custom", "https://llm.internal.example.com/v1"),
    ]:
        result = call(provider, "claude-sonnet-4-5", input=1_000, output=100, base_url=base_url)
        assert_unknown(result)
        assert format_cost(result) == "unknown"


def test_custom_provider_on_a_vendor_api_host_is_priced_by_that_host() -> None:
    result = call(
        "custom", "o4-mini", input=1_000, output=100, base_url="https://api.openai.com/v1"
    )
    assert result.cost_usd == usd((1_000, O4MINI_IN), (100, O4MINI_OUT))
    assert result.cost_status == CostStatus.ESTIMATED


@pytest.mark.parametrize(
    ("provider", "model", "usage"),
    [
        (None, "claude-sonnet-4-5", TokenUsage(1_000, 100)),  # vendor not named: not guessed
        ("anthropic", "claude-made-up-9", TokenUsage(1_000, 100)),  # model not in the list
        ("anthropic", None, TokenUsage(1_000, 100)),
        ("nous", "Hermes-4-405B", TokenUsage(1_000, 100)),  # no list price known
        ("xai-oauth", "grok-4", TokenUsage(1_000, 100)),  # plan route: never list-priced
        ("anthropic", "claude-sonnet-4-5", TokenUsage(None, None)),  # usage not reported
        ("anthropic", "claude-sonnet-4-5", TokenUsage(1_000, None)),
        ("anthropic", "claude-sonnet-4-5", TokenUsage(-1, 100)),  # nonsense counts
    ],
)
def test_unknown_is_none_never_zero(
    provider: str | None, model: str | None, usage: TokenUsage
) -> None:
    result = price_call(provider=provider, model=model, base_url=None, usage=usage, at=AT)
    assert_unknown(result)


def test_zero_tokens_for_a_known_model_is_a_real_zero() -> None:
    result = call("anthropic", "claude-sonnet-4-20250514", input=0, output=0)
    assert result == CostResult(0.0, CostStatus.ESTIMATED, "genai-prices", GENAI_VERSION)


# --- provider-reported cost -------------------------------------------------------------------


def test_provider_reported_cost_wins_and_is_actual(tmp_path: Path) -> None:
    config = load_pricing_config(write(tmp_path, PRICE_FILE))
    for provider, model in [
        ("openrouter", "anthropic/claude-sonnet-4"),  # genai-prices knows it
        ("custom", "some-local-model"),  # nobody knows it
        ("anthropic", "claude-sonnet-4-5-20250929"),  # the price file overrides it
        ("anthropic", "claude-opus-4-6"),  # declared a subscription
    ]:
        result = call(
            provider,
            model,
            input=1_000,
            output=100,
            provider_cost_usd=0.000123,
            config=config,
        )
        assert result == CostResult(0.000123, CostStatus.ACTUAL, "provider_reported", None)
    # Reported without usage still counts.
    assert call("openrouter", "x", input=None, output=None, provider_cost_usd=2).cost_usd == 2.0
    # A reported zero is the provider's word (e.g. a free model), not a missing value.
    assert call("openrouter", "x", provider_cost_usd=0.0).cost_status == CostStatus.ACTUAL


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), True, "0.5"])
def test_unusable_provider_cost_is_ignored(bad: object) -> None:
    result = call("openai", "o4-mini", input=1_000, output=100, provider_cost_usd=bad)  # type: ignore[arg-type]
    assert result.cost_status == CostStatus.ESTIMATED
    assert result.cost_usd == usd((1_000, O4MINI_IN), (100, O4MINI_OUT))


# --- operator price files ---------------------------------------------------------------------

PRICE_FILE = """
version: "2026-11-contract"
name: acme-prices
models:
  - match: {provider: anthropic, model: "claude-sonnet-4-5*"}
    prices:
      input_per_mtok: 2.5
      output_per_mtok: 12
      cache_read_per_mtok: 0.25
      cache_write_per_mtok: 3.125
    source: acme contract
  - match: {provider: custom, model: my-model, base_url: "http://gpu-box:8000/v1/"}
    prices:
      input_per_mtok: 1.0
      output_per_mtok: 2.0
      cache_read_per_mtok: 0.1
      tiers:
        - {above_prompt_tokens: 100000, input_per_mtok: 2.0, output_per_mtok: 4.0}
subscriptions:
  - {provider: anthropic, model: "claude-opus-*", name: Claude Max}
  - {provider: custom, base_url: "http://team-llm.internal*"}
"""


def write(tmp_path: Path, text: str, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_price_file_overrides_genai_prices(tmp_path: Path) -> None:
    config = load_pricing_config(write(tmp_path, PRICE_FILE))
    result = call(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        input=1_000,
        cache_read=2_000,
        cache_write=3_000,
        output=500,
        config=config,
    )
    expected = usd(
        (1_000, Decimal("2.5")),
        (2_000, Decimal("0.25")),
        (3_000, Decimal("3.125")),
        (500, Decimal("12")),
    )
    assert result == CostResult(
        expected, CostStatus.ESTIMATED, "price_file:acme contract", "2026-11-contract"
    )


def test_price_file_adds_a_custom_model_with_tiers_and_cache_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, PRICE_FILE)
    config = load_pricing_config(path)
    url = "http://GPU-box:8000/v1"  # base_url matching ignores case and a trailing slash
    small = call(
        "custom",
        "my-model",
        input=1_000,
        cache_read=2_000,
        cache_write=3_000,
        output=500,
        base_url=url,
        config=config,
    )
    # cache_write_per_mtok not declared: cache writes cost the input price.
    assert small == CostResult(
        usd(
            (1_000, Decimal("1.0")),
            (2_000, Decimal("0.1")),
            (3_000, Decimal("1.0")),
            (500, Decimal("2.0")),
        ),
        CostStatus.ESTIMATED,
        "price_file:acme-prices",  # no per-rule source: the file's name
        "2026-11-contract",
    )
    # prompt = 90k + 10k + 1k = 101k > 100k: tier input/output; cache read keeps its base price;
    # cache write still follows the (tier) input price.
    large = call(
        "custom",
        "my-model",
        input=90_000,
        cache_read=10_000,
        cache_write=1_000,
        output=500,
        base_url=url,
        config=config,
    )
    assert large.cost_usd == usd(
        (90_000, Decimal("2.0")),
        (10_000, Decimal("0.1")),
        (1_000, Decimal("2.0")),
        (500, Decimal("4.0")),
    )
    # Another endpoint serving a model of the same name is not this contract.
    assert_unknown(
        call(
            "custom", "my-model", input=1, output=1, base_url="http://other:8000/v1", config=config
        )
    )


def test_price_file_name_defaults_to_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, PRICE_FILE.replace("name: acme-prices\n", ""))
    config = load_pricing_config(path)
    assert config.name == str(path)
    result = call(
        "custom", "my-model", input=1, output=1, base_url="http://gpu-box:8000/v1", config=config
    )
    assert result.cost_source == f"price_file:{path}"


def test_price_file_rule_with_unknown_usage_is_unknown(tmp_path: Path) -> None:
    config = load_pricing_config(write(tmp_path, PRICE_FILE))
    result = call(
        "custom",
        "my-model",
        input=None,
        output=None,
        base_url="http://gpu-box:8000/v1",
        config=config,
    )
    assert_unknown(result)


def test_subscription_is_included_with_no_cost(tmp_path: Path) -> None:
    config = load_pricing_config(write(tmp_path, PRICE_FILE))
    # genai-prices knows Opus 4.6, but the operator pays for it with a plan.
    result = call("anthropic", "claude-opus-4-6", input=1_000, output=100, config=config)
    assert result == CostResult(
        None, CostStatus.INCLUDED, "subscription:Claude Max", "2026-11-contract"
    )
    assert format_cost(result) == "included"
    # Included does not need token counts.
    assert call("anthropic", "claude-opus-4-6", input=None, output=None, config=config) == result
    # Subscription by endpoint, any model; unnamed → the file's name.
    team = call(
        "custom",
        "whatever",
        input=1,
        output=1,
        base_url="http://team-llm.internal/v1",
        config=config,
    )
    assert team == CostResult(
        None, CostStatus.INCLUDED, "subscription:acme-prices", "2026-11-contract"
    )
    # Not covered by the file: genai-prices as usual.
    assert (
        call("openai", "o4-mini", input=1, output=1, config=config).cost_status
        == CostStatus.ESTIMATED
    )


def test_openai_codex_is_included_by_default() -> None:
    result = call("openai-codex", "gpt-5", input=1_000, output=100)
    assert result == CostResult(None, CostStatus.INCLUDED, "subscription:openai-codex", None)


def test_first_matching_rule_wins() -> None:
    config = parse_pricing_config(
        {
            "version": 1,
            "models": [
                {
                    "match": {"model": "special-*"},
                    "prices": {"input_per_mtok": 5, "output_per_mtok": 5},
                },
                {"match": {"model": "*"}, "prices": {"input_per_mtok": 1, "output_per_mtok": 1}},
            ],
        },
        name="inline",
    )
    assert config.version == "1"
    assert call("custom", "Special-7B", input=1_000_000, config=config).cost_usd == 5.0
    assert call("anything", "else", input=1_000_000, config=config).cost_usd == 1.0


MALFORMED = [
    ("models: []\n", "version: required"),
    ("version: ''\n", "version: must not be empty"),
    ("- version: 1\n", "file: expected a mapping"),
    ("version: 1\nmodel: []\n", "unknown key 'model'"),
    ("version: 1\nmodels: {}\n", "models: expected a list"),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices: {input_per_mtok: 1}\n",
        "models[0].prices.output_per_mtok: required",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices: {input_per_mtok: -1, output_per_mtok: 1}\n",
        "models[0].prices.input_per_mtok: must be a finite, non-negative number",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices: {input_per_mtok: .nan, output_per_mtok: 1}\n",
        "models[0].prices.input_per_mtok: must be a finite number",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices: {input_per_mtok: cheap, output_per_mtok: 1}\n",
        "models[0].prices.input_per_mtok: expected a number",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices: {input_per_mtok: true, output_per_mtok: 1}\n",
        "models[0].prices.input_per_mtok: expected a number",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n"
        "    prices: {input_per_mtok: 1, output_per_mtok: 1, input_per_mtoken: 2}\n",
        "models[0].prices: unknown key 'input_per_mtoken'",
    ),
    (
        "version: 1\nmodels:\n  - match: {provider: custom}\n    prices: {input_per_mtok: 1, output_per_mtok: 1}\n",
        "models[0].match.model: required",
    ),
    (
        "version: 1\nmodels:\n  - prices: {input_per_mtok: 1, output_per_mtok: 1}\n",
        "models[0].match: required",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices:\n      input_per_mtok: 1\n      output_per_mtok: 1\n"
        "      tiers:\n        - {above_prompt_tokens: 200000, input_per_mtok: 2}\n"
        "        - {above_prompt_tokens: 100000, input_per_mtok: 3}\n",
        "models[0].prices.tiers[1].above_prompt_tokens: tiers must be in strictly ascending order",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices:\n      input_per_mtok: 1\n      output_per_mtok: 1\n"
        "      tiers:\n        - {above_prompt_tokens: 200000}\n",
        "models[0].prices.tiers[0]: declares no price",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices:\n      input_per_mtok: 1\n      output_per_mtok: 1\n"
        "      tiers:\n        - {input_per_mtok: 2}\n",
        "models[0].prices.tiers[0].above_prompt_tokens: required",
    ),
    (
        "version: 1\nmodels:\n  - match: {model: m}\n    prices:\n      input_per_mtok: 1\n      output_per_mtok: 1\n"
        "      tiers:\n        - {above_prompt_tokens: 2.5e5, input_per_mtok: 2}\n",
        "models[0].prices.tiers[0].above_prompt_tokens: expected a non-negative whole number",
    ),
    ("version: 1\nsubscriptions:\n  - {name: plan}\n", "subscriptions[0]: needs at least one of"),
    ("version: 1\nsubscriptions:\n  - {provider: anthropic, modle: x}\n", "unknown key 'modle'"),
    ("version: 1\nmodels: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_price_files_are_rejected_at_load(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PriceFileError) as excinfo:
        load_pricing_config(path)
    assert message in str(excinfo.value)
    assert str(path) in str(excinfo.value)  # the message names the file


def test_missing_price_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="cannot read price file"):
        load_pricing_config(tmp_path / "nope.yaml")


# --- properties ---------------------------------------------------------------------------------

TIERED_FILE = parse_pricing_config(
    {
        "version": "t",
        "models": [
            {
                "match": {"provider": "custom", "model": "tiered"},
                "prices": {
                    "input_per_mtok": "0.5",
                    "output_per_mtok": "1.5",
                    "cache_read_per_mtok": "0.05",
                    "tiers": [
                        {"above_prompt_tokens": 128_000, "input_per_mtok": 1, "output_per_mtok": 3},
                        {
                            "above_prompt_tokens": 200_000,
                            "input_per_mtok": 2,
                            "cache_read_per_mtok": 0.2,
                        },
                    ],
                },
            }
        ],
    },
    name="tiered",
)

ROUTES = [
    ("anthropic", "claude-sonnet-4-5", None),
    ("anthropic", "claude-sonnet-4-20250514", None),
    ("gemini", "gemini-2.5-pro", None),
    ("openai", "o4-mini", None),
    ("deepseek", "deepseek-chat", None),
    ("openrouter", "anthropic/claude-sonnet-4.5", None),
    ("custom", "tiered", TIERED_FILE),
]
KINDS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
counts = st.integers(min_value=0, max_value=400_000)


@settings(max_examples=300, deadline=None)
@given(
    route=st.sampled_from(ROUTES),
    base=st.fixed_dictionaries({kind: counts for kind in KINDS}),
    kind=st.sampled_from(KINDS),
    extra=st.integers(min_value=0, max_value=300_000),
)
def test_cost_is_non_negative_and_monotone_in_each_token_kind(
    route: tuple[str, str, PricingConfig | None], base: dict[str, int], kind: str, extra: int
) -> None:
    provider, model, config = route
    more = dict(base, **{kind: base[kind] + extra})
    low = price_call(
        provider=provider,
        model=model,
        base_url=None,
        usage=TokenUsage(**base),
        at=AT,
        config=config,
    )
    high = price_call(
        provider=provider,
        model=model,
        base_url=None,
        usage=TokenUsage(**more),
        at=AT,
        config=config,
    )
    assert low.cost_status == high.cost_status == CostStatus.ESTIMATED
    assert low.cost_usd is not None and high.cost_usd is not None
    assert 0 <= low.cost_usd <= high.cost_usd


@settings(max_examples=100, deadline=None)
@given(input=counts, output=counts, share=st.floats(min_value=0, max_value=1))
def test_reasoning_share_never_changes_cost_when_not_priced_separately(
    input: int, output: int, share: float
) -> None:
    plain = call("openai", "o4-mini", input=input, output=output)
    reasoning = call("openai", "o4-mini", input=input, output=output, reasoning=int(output * share))
    assert plain == reasoning


# --- robustness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"usage": TokenUsage(10, 5, reasoning_tokens=50)},  # reasoning > output
        {"usage": TokenUsage("10", 5)},  # type: ignore[arg-type]
        {"usage": TokenUsage(True, 5)},
        {"usage": None},
        {"at": None},
        {"provider": 42},
        {"model": ["gpt-5"]},
        {"base_url": object()},
    ],
)
def test_price_call_never_raises(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "provider": "openai",
        "model": "o4-mini",
        "base_url": None,
        "usage": TokenUsage(10, 5),
        "at": AT,
    }
    args.update(kwargs)
    result = price_call(**args)  # type: ignore[arg-type]
    assert isinstance(result, CostResult)
    if result.cost_status != CostStatus.ESTIMATED:
        assert_unknown(result)


def test_lookup_failure_inside_genai_prices_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(**_: object) -> None:
        raise RuntimeError("broken data")

    monkeypatch.setattr(_genai_prices, "estimate", boom)
    assert_unknown(call("openai", "o4-mini", input=1, output=1))


def test_fast_enough_to_price_every_call() -> None:
    usage = TokenUsage(12_000, 800, 40_000, 1_000, 300)
    routes = [
        ("anthropic", "claude-sonnet-4-5"),
        ("custom", "local-model"),
        ("openrouter", "no/such-model"),
    ]
    for provider, model in routes:  # warm the caches
        price_call(provider=provider, model=model, base_url=None, usage=usage, at=AT)
    started = time.perf_counter()
    for _ in range(300):
        for provider, model in routes:
            price_call(provider=provider, model=model, base_url=None, usage=usage, at=AT)
    per_call = (time.perf_counter() - started) / 900
    assert per_call < 0.005  # generous: typically well under 0.2 ms


def test_token_usage_from_hermes_mapping() -> None:
    usage = TokenUsage.from_mapping(
        {
            "input_tokens": 100,
            "output_tokens": 50,
            "cache_read_tokens": 1_000,
            "cache_write_tokens": None,
            "reasoning_tokens": 20,
            "prompt_tokens": 1_100,
        }
    )
    assert usage == TokenUsage(100, 50, 1_000, None, 20)
    assert usage.prompt_tokens == 1_100
    assert TokenUsage.from_mapping({}) == TokenUsage(None, None, None, None, None)


# --- display ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "unknown"),
        (float("nan"), "unknown"),
        (0.0, "$0.00"),
        (0.000123, "$0.000123"),
        (0.0001234, "$0.000123"),
        (0.00012351, "$0.000124"),
        (0.0000001, "$0.0000001"),
        (0.0042, "$0.0042"),
        (0.02235, "$0.0224"),
        (0.5, "$0.50"),
        (0.999, "$0.999"),
        (1.0, "$1.00"),
        (12.4, "$12.40"),
        (12.345, "$12.35"),
        (1234.5, "$1,234.50"),
    ],
)
def test_format_usd(value: float | None, text: str) -> None:
    assert format_usd(value) == text


def test_format_cost_marks_estimates() -> None:
    assert (
        format_cost(CostResult(0.02235, CostStatus.ACTUAL, "provider_reported", None)) == "$0.0224"
    )
    assert format_cost(CostResult(0.02235, CostStatus.ESTIMATED, "genai-prices", "v")) == "~$0.0224"
    assert format_cost(CostResult(None, CostStatus.INCLUDED, "subscription:x", None)) == "included"
    assert format_cost(CostResult(None, CostStatus.UNKNOWN, None, None)) == "unknown"


def test_a_tier_keeps_the_prices_of_the_tier_below_unless_it_restates_them() -> None:
    # TIERED_FILE: output 1.5 → 3 above 128k; the 200k tier restates only input and cache read,
    # so its output stays 3 (not the base 1.5); cache writes follow each tier's input price.
    rates = TIERED_FILE.models[0].prices.rates_for(250_000)
    assert (rates.input_per_mtok, rates.output_per_mtok) == (Decimal(2), Decimal(3))
    assert (rates.cache_read_per_mtok, rates.cache_write_per_mtok) == (Decimal("0.2"), Decimal(2))
    result = call("custom", "tiered", input=250_000, output=1_000, config=TIERED_FILE)
    assert result.cost_usd == usd((250_000, Decimal(2)), (1_000, Decimal(3)))


# -- the linear fast path equals genai-prices' own calculation ---------------------------------

_FAST_PATH_MODELS = [
    ("anthropic", "claude-sonnet-4-20250514"),
    ("openai", "gpt-4o"),
    ("openai", "o4-mini"),
    ("openrouter", "anthropic/claude-sonnet-4"),
    ("google", "gemini-2.5-pro"),  # tiered: always genai-prices' own calculation
    ("deepseek", "deepseek-chat"),  # time-of-day prices
    ("perplexity", "sonar-deep-research"),  # reasoning priced on its own
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(_FAST_PATH_MODELS),
    st.integers(0, 400_000), st.integers(0, 300_000), st.integers(0, 50_000), st.integers(0, 60_000),
    st.integers(0, 60_000),
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)),
)
def test_fast_path_is_exactly_genai_prices(route_model: tuple[str, str], inp: int, cache_read: int,
                                           cache_write: int, out: int, reasoning: int, at: datetime) -> None:
    from hermetry.cost import _genai_prices as gp

    provider, model = route_model
    reasoning = min(reasoning, out)
    route = gp.resolve_route(provider, None)
    assert route is not None
    estimate = gp.estimate(provider=provider, model=model, base_url=None, input_tokens=inp, output_tokens=out,
                           cache_read_tokens=cache_read, cache_write_tokens=cache_write,
                           reasoning_tokens=reasoning, at=at)
    from genai_prices import data_snapshot

    ref = gp._find_model_ref(data_snapshot.get_snapshot().timestamp, route, model)
    if ref is None:
        assert estimate is None
        return
    reference, _ = gp._calc(route, ref, at, inp, cache_read, cache_write, out, reasoning)
    assert estimate is not None and estimate.cost_usd == reference  # exact Decimal equality
