"""The writer path's two memos (bench/ingest.py, stages normalize and price) change no figure.

* ``cost._genai_prices.estimate`` remembers, per route, model and UTC minute, what its lookups
  gave; a call it has seen the minute of is priced exactly as genai-prices' own calculation
  prices it (the reference here), also for prices that change with the time of day.
* ``sources.hermes.hooks._redact_url`` remembers the normalized form of URLs that carry nothing
  to redact; a URL with credentials, a query or a fragment is never remembered.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hermetry.cost import _genai_prices as gp


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "gpt-4o"),
    ("deepseek", "deepseek-chat"),  # time-of-day prices
    ("google", "gemini-2.5-pro"),  # tiered: genai-prices' own calculation every time
    ("openrouter", "anthropic/claude-sonnet-4"),
])
def test_a_remembered_minute_prices_every_call_as_genai_prices_does(provider: str, model: str) -> None:
    from genai_prices import data_snapshot

    gp._memo.clear()
    route = gp.resolve_route(provider, None)
    assert route is not None
    ref = gp._find_model_ref(data_snapshot.get_snapshot().timestamp, route, model)
    assert ref is not None
    # the same minute twice (the second a memo hit, other tokens), then other hours of the day
    calls = [(datetime(2025, 6, 3, 10, 0, 5, tzinfo=UTC), (1_000, 200, 300, 0, 50)),
             (datetime(2025, 6, 3, 10, 0, 55, tzinfo=UTC), (250_000, 4_000, 0, 1_000, 0)),
             (datetime(2025, 6, 3, 17, 45, 0, tzinfo=UTC), (1_000, 200, 300, 0, 50)),
             (datetime(2025, 6, 3, 17, 45, 30, tzinfo=UTC), (7, 3, 0, 0, 3))]
    for at, (inp, out, cache_read, cache_write, reasoning) in calls:
        got = gp.estimate(provider=provider, model=model, base_url=None, input_tokens=inp, output_tokens=out,
                          cache_read_tokens=cache_read, cache_write_tokens=cache_write,
                          reasoning_tokens=reasoning, at=at)
        reference, _ = gp._calc(route, ref, at, inp, cache_read, cache_write, out, min(reasoning, out))
        assert got is not None and got.cost_usd == reference, (at, inp, out)
    assert len(gp._memo) == 2  # two minutes seen


@pytest.mark.parametrize(("provider", "model", "day"), [
    ("deepseek", "deepseek-chat", datetime(2025, 6, 3, tzinfo=UTC)),  # off-peak rates twice a day
    ("openai", "o3", datetime(2025, 6, 9, 18, tzinfo=UTC)),  # a price change at midnight, 10 June
    ("openai", "gpt-4o", datetime(2025, 6, 3, tzinfo=UTC)),
])
def test_rates_derived_once_per_price_price_every_minute_as_genai_prices_does(
        provider: str, model: str, day: datetime) -> None:
    """A minute not seen before reuses the rates of the price in effect then (derived at another
    minute of the same price): every minute of a day, priced exactly as genai-prices prices it."""
    from datetime import timedelta

    from genai_prices import data_snapshot

    gp._memo.clear()
    gp._rates.clear()
    route = gp.resolve_route(provider, None)
    assert route is not None
    ref = gp._find_model_ref(data_snapshot.get_snapshot().timestamp, route, model)
    assert ref is not None
    for k in range(0, 24 * 60, 7):
        at = day + timedelta(minutes=k, seconds=k % 60)
        inp, out, cache_read, reasoning = 1_000 + k, 200 + k % 97, 300 * (k % 3), k % 50
        got = gp.estimate(provider=provider, model=model, base_url=None, input_tokens=inp, output_tokens=out,
                          cache_read_tokens=cache_read, cache_write_tokens=0, reasoning_tokens=reasoning, at=at)
        reference, _ = gp._calc(route, ref, at, inp, cache_read, 0, out, min(reasoning, out))
        assert got is not None and got.cost_usd == reference, at
    assert len(gp._memo) > 200 and len(gp._rates) <= 3  # one derivation per price, not per minute


def test_the_price_memo_is_bounded() -> None:
    gp._memo.clear()
    for minute in range(gp._MEMO_SIZE + 10):
        gp.estimate(provider="openai", model="gpt-4o", base_url=None, input_tokens=1, output_tokens=1,
                    cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
                    at=datetime.fromtimestamp(1_750_000_000 + 60 * minute, tz=UTC))
        assert len(gp._memo) <= gp._MEMO_SIZE


def test_a_model_without_a_price_stays_unpriced_when_remembered() -> None:
    at = datetime(2025, 6, 3, 10, 0, tzinfo=UTC)
    for _ in range(2):
        assert gp.estimate(provider="openai", model="no-such-model-xyz", base_url=None, input_tokens=1,
                           output_tokens=1, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
                           at=at) is None
        assert gp.estimate(provider="custom", model="llama", base_url="http://127.0.0.1:8080/v1", input_tokens=1,
                           output_tokens=1, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
                           at=at) is None


@pytest.mark.parametrize(("url", "want"), [
    ("https://API.OpenAI.com/v1", "https://api.openai.com/v1"),
    ("https://user:secret@api.example.com:8443/v1?key=sk-123#frag", "https://api.example.com:8443/v1"),
    ("https://api.example.com/v1?api_key=sk-456", "https://api.example.com/v1"),
    ("http://[::1", None),
])
def test_redacted_urls_are_the_same_remembered_or_not_and_secrets_are_never_remembered(url: str,
                                                                                      want: str | None) -> None:
    from hermetry.sources.hermes import hooks

    hooks._CLEAN_URLS.clear()
    assert hooks._redact_url(url) == want
    assert hooks._redact_url(url) == want  # a second time: remembered if there was nothing to redact
    assert all("@" not in k and "?" not in k and "#" not in k for k in hooks._CLEAN_URLS)
    assert "secret" not in repr(hooks._CLEAN_URLS) and "sk-" not in repr(hooks._CLEAN_URLS)
    assert (url in hooks._CLEAN_URLS) == (want is not None and not any(c in url for c in "@?#"))
