"""What may be stored: error text is truncated and secrets redacted; content never is stored.

Prompts, responses and tool arguments are never copied into a canonical event. The only
free text hermetry keeps is an error message, and that passes through :func:`clean_error`.
"""

from __future__ import annotations

import re

ERROR_MESSAGE_LIMIT = 300

_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # provider keys: sk-..., sk-ant-..., sk-or-..., gsk_..., xai-..., AIza...
    re.compile(r"\b(?:sk|gsk|xai|rk|pk)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
    # AWS access key ids (AKIA… long-term, ASIA… temporary, and the other principal prefixes)
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"),
    # bearer tokens and auth headers
    re.compile(r"(?i)\b(?:bearer|basic)\s+[^\s\"',;]{6,}"),
    # long opaque tokens (JWTs, hex, base64) of 32+ characters
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"),
    re.compile(r"\b[A-Fa-f0-9]{32,}\b"),
    # credentials inside URLs
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
)

#: key=value, key: value, "key": "value", 'key': 'value' with a secret-looking key ("tokens" is a
#: count: max_tokens: 8193). The value is everything up to the next space, or the whole quoted
#: string (escapes understood) — so a password holding , ; ' " & or = goes entirely.
_KEY_VALUE = re.compile(
    r"(?i)(\b[\w-]*(?:api[_-]?key|secret|token(?!s)|password|passwd|pwd|authorization|credential)[\w-]*\b"
    r"[\"']?\s*[:=]\s*)"
    r"(\"(?:[^\"\\]|\\.)*(?:\"|$)|'(?:[^'\\]|\\.)*(?:'|$)|[^\s\"']\S*)"
)


def _redact_value(m: re.Match[str]) -> str:
    value = m.group(2)
    quote = value[0] if value[0] in "\"'" else ""
    closed = quote if quote and len(value) > 1 and value.endswith(quote) else ""
    return f"{m.group(1)}{quote}[REDACTED]{closed}"


def redact(text: str) -> str:
    """Replace anything that looks like a credential with ``[REDACTED]``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[REDACTED]", text)
    return _KEY_VALUE.sub(_redact_value, text)


def clean_error(message: object, limit: int = ERROR_MESSAGE_LIMIT) -> str | None:
    """An error message fit to store: one line, redacted, at most ``limit`` characters."""
    if message is None:
        return None
    text = " ".join(str(message).split())
    if not text:
        return None
    text = redact(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
