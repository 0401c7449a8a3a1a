"""Tests for hermetry.model.privacy: error text is redacted, truncated and otherwise untouched."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hermetry.model.privacy import ERROR_MESSAGE_LIMIT, clean_error, redact

# Each case: (text containing a secret, the secret that must disappear, text that must stay).
SECRET_CASES = [
    (
        "Incorrect API key provided: sk-proj-Ab12Cd34Ef56Gh78Ij90KlMn. You can find your key at x",
        "sk-proj-Ab12Cd34Ef56Gh78Ij90KlMn",
        "Incorrect API key provided:",
    ),
    ("key sk-abcdefghijklmnopqrstuvwx rejected", "sk-abcdefghijklmnopqrstuvwx", "rejected"),
    (
        "authentication_error: invalid x-api-key sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2 (401)",
        "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2",
        "(401)",
    ),
    (
        "401 Unauthorized; request header Authorization: Bearer ya29.a0AfH6SMBx-3kQ9zPq",
        "ya29.a0AfH6SMBx-3kQ9zPq",
        "401 Unauthorized",
    ),
    ("sent bearer abcDEF123456ghiJKL789 to upstream", "abcDEF123456ghiJKL789", "to upstream"),
    ("GET /v1/models?api_key=q8Zr2Lw7Xy4Pn1 failed", "q8Zr2Lw7Xy4Pn1", "failed"),
    ("config error: API-KEY = 'Zq1Wx2Ec3Rv4' is invalid", "Zq1Wx2Ec3Rv4", "is invalid"),
    ('bad payload {"user": "bob", "password": "hunter2hunter2"}', "hunter2hunter2", '"user": "bob"'),
    ("client_secret=s3cr3tV4lu3 rejected", "s3cr3tV4lu3", "rejected"),
    ("access_token: AbCdEf123456 expired", "AbCdEf123456", "expired"),
    (
        "invalid token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
        ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U in header",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        "in header",
    ),
    (
        "proxy https://alice:S3cretPassw0rd@proxy.example.com:8080/v1 unreachable",
        "alice:S3cretPassw0rd",
        "proxy.example.com:8080/v1 unreachable",
    ),
    (
        "signature 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 mismatch",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "mismatch",
    ),
    ("google key AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv denied", "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv", "denied"),
    ("groq gsk_8Hj2Kl9Mn4Bv6Cx1Zq7W invalid", "gsk_8Hj2Kl9Mn4Bv6Cx1Zq7W", "invalid"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), SECRET_CASES)
def test_secrets_are_redacted(text: str, secret: str, kept: str) -> None:
    out = clean_error(text)
    assert out is not None
    assert secret not in out
    assert "[REDACTED]" in out
    assert kept in out  # only the secret goes, not the message around it


def test_url_credentials_keep_the_host() -> None:
    assert redact("https://alice:S3cretPassw0rd@proxy.example.com/v1") == (
        "https://[REDACTED]@proxy.example.com/v1"
    )


def test_key_value_keeps_the_key() -> None:
    assert redact("api_key=q8Zr2Lw7Xy4Pn1") == "api_key=[REDACTED]"
    assert redact('"password": "hunter2hunter2"') == '"password": "[REDACTED]"'


NORMAL_ERRORS = [
    "HTTP 500: Internal Server Error",
    "Connection refused",
    "[Errno 111] Connection refused",
    "Request timed out after 600.0 seconds",
    "Rate limit reached for gpt-4o in organization on tokens per min (TPM): Limit 30000, Used 29500",
    "Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}",
    "The model `gpt-5-turbo` does not exist or you do not have access to it.",
    "APIConnectionError: Connection error.",
    "Service Unavailable (503), retry after 20s",
    # Anthropic's standard 400 for a too-large max_tokens: the numbers are the diagnosis
    "max_tokens: 8193 > 8192, which is the maximum allowed number of output tokens for claude-3-5-sonnet-20241022",
    "prompt is too long: 210000 tokens > 200000 maximum",
    "request_id=req_011CSHoEeqs5C35K2UUqLMFS status=429",
    "trace 550e8400-e29b-41d4-a716-446655440000 failed",
]


@pytest.mark.parametrize("text", NORMAL_ERRORS)
def test_normal_error_text_is_unchanged(text: str) -> None:
    assert clean_error(text) == text


def test_truncation_to_the_limit_with_an_ellipsis() -> None:
    long = "Internal error " + "x" * 1000
    out = clean_error(long)
    assert out is not None
    assert len(out) == ERROR_MESSAGE_LIMIT
    assert out.endswith("…")
    assert out[:-1] == long[: ERROR_MESSAGE_LIMIT - 1]
    assert clean_error("abcdefghijklmnop", limit=10) == "abcdefghi…"
    exact = "y" * ERROR_MESSAGE_LIMIT
    assert clean_error(exact) == exact  # at the limit: untouched, no ellipsis


def test_one_line_and_empty_inputs() -> None:
    assert clean_error("line one\n\tline   two\r\n") == "line one line two"
    assert clean_error(None) is None
    assert clean_error("") is None
    assert clean_error(" \n\t ") is None
    assert clean_error(ValueError("boom 42")) == "boom 42"


def test_a_secret_past_the_limit_is_not_half_kept() -> None:
    # redaction happens before truncation: the cut never leaves a prefix of a real key behind
    text = "x" * 290 + " sk-abcdefghijklmnopqrstuvwxyz0123"
    out = clean_error(text)
    assert out is not None and len(out) <= ERROR_MESSAGE_LIMIT
    assert "sk-abc" not in out


# -- property: whatever surrounds a secret, it never survives and the limit always holds -------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_HEX = "0123456789abcdef"


def _body(alphabet: str, lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=lo, max_size=hi)


# (how the secret appears in the text, the secret value that must not survive)
_secrets = st.one_of(
    _body(_ALNUM, 16, 48).map(lambda s: ("sk-" + s, "sk-" + s)),
    _body(_ALNUM, 16, 48).map(lambda s: ("sk-ant-api03-" + s, s)),
    _body(_ALNUM, 16, 48).map(lambda s: ("sk-or-v1-" + s, s)),
    _body(_ALNUM + "._-", 16, 48).map(lambda s: ("Bearer Z" + s, "Z" + s)),
    _body(_ALNUM, 12, 40).map(lambda s: ("api_key=Q" + s, "Q" + s)),
    _body(_ALNUM, 12, 40).map(lambda s: ('"password": "P' + s + '"', "P" + s)),
    _body(_ALNUM, 12, 40).map(lambda s: ("token: T" + s, "T" + s)),
    st.tuples(_body(_ALNUM, 8, 24), _body(_ALNUM, 8, 24), _body(_ALNUM, 8, 24)).map(
        lambda t: ("eyJ" + t[0] + ".eyJ" + t[1] + "." + t[2], "eyJ" + t[0] + ".eyJ" + t[1])
    ),
    _body(_HEX, 32, 64).map(lambda s: (s, s)),
    st.tuples(_body(_ALNUM, 3, 12), _body(_ALNUM, 12, 30)).map(
        lambda t: ("https://" + t[0] + ":W" + t[1] + "@host.example/x", "W" + t[1])
    ),
)

_surrounding = st.text(
    st.characters(blacklist_categories=("Cs",)), max_size=200
)


@settings(max_examples=300, deadline=None)
@given(_surrounding, _secrets, _surrounding, st.integers(1, 1000))
def test_secret_never_survives_and_limit_holds(
    before: str, secret: tuple[str, str], after: str, limit: int
) -> None:
    shown, value = secret
    assume(value not in before and value not in after)  # the text around it is not the secret
    out = clean_error(f"{before} {shown} {after}", limit=limit)
    assert out is not None
    assert len(out) <= limit
    assert value not in out


@given(st.text(max_size=2000), st.integers(1, 500))
def test_any_text_fits_the_limit(text: str, limit: int) -> None:
    out = clean_error(text, limit=limit)
    if out is not None:
        assert len(out) <= limit
        assert "\n" not in out


# -- properties: passwords with any punctuation, bearer tokens, provider and AWS keys ----------

_PUNCT_PASSWORD = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=40
)


@settings(max_examples=300, deadline=None)
@given(_PUNCT_PASSWORD.filter(lambda p: p[0] not in "\"'"), st.sampled_from(["password", "PASSWORD", "db_password",
                                                                         "passwd", "pwd", "client_secret"]),
       st.sampled_from(["=", ": ", " = "]))
def test_a_bare_password_with_any_punctuation_goes_entirely(password: str, key: str, sep: str) -> None:
    """``, ; ' " &`` and the rest: an unquoted value is redacted up to the next space."""
    out = redact(f"login failed: {key}{sep}{password} for user bob")
    assert out == f"login failed: {key}{sep}[REDACTED] for user bob"


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
       st.sampled_from(["json", "repr"]))
def test_a_quoted_password_goes_entirely_whatever_it_holds(password: str, form: str) -> None:
    """Quoted values (JSON, Python reprs) with escaped quotes, commas, ampersands, spaces."""
    import json

    text = json.dumps({"user": "bob", "password": password}) if form == "json" else repr({"user": "bob",
                                                                                          "password": password})
    out = clean_error(f"bad payload {text}", limit=10_000)
    assert out is not None
    expected_json = '{"user": "bob", "password": "[REDACTED]"}'
    if form == "json":
        assert out == " ".join(f"bad payload {expected_json}".split())
    else:
        head = "bad payload {'user': 'bob', 'password': "
        assert out.startswith(head) and out[len(head):] in ("'[REDACTED]'}", '"[REDACTED]"}'), out


_TOKEN68 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/"


@settings(max_examples=300, deadline=None)
@given(st.text(_TOKEN68, min_size=8, max_size=80).map(lambda t: t + "=="), st.sampled_from(
    ["Authorization: Bearer {}", "authorization: bearer {}", "BEARER {}", '{{"Authorization": "Bearer {}"}}',
     "Proxy-Authorization: Basic {}"]))
def test_bearer_and_basic_credentials_never_survive(token: str, template: str) -> None:
    out = clean_error(template.format(token), limit=10_000)
    assert out is not None and token not in out and token[:8] not in out


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(_ALNUM + "-_", min_size=20, max_size=60).map(lambda s: "sk-" + s),
    st.text(_ALNUM + "-_", min_size=20, max_size=60).map(lambda s: "sk-proj-" + s),
    st.text(_ALNUM, min_size=20, max_size=60).map(lambda s: "sk-ant-api03-" + s),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(lambda s: "AKIA" + s),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(lambda s: "ASIA" + s),
), _surrounding, _surrounding)
def test_provider_and_aws_keys_never_survive_anywhere_in_the_text(key: str, before: str, after: str) -> None:
    assume(key not in before and key not in after)
    out = clean_error(f"{before} {key} {after}", limit=10_000)
    assert out is not None and key not in out
