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
    # bearer tokens and auth headers
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    # key=value / "key": "value" with a secret-looking key ("tokens" is a count: max_tokens: 8193)
    re.compile(
        r"(?i)(\b[\w-]*(?:api[_-]?key|secret|token(?!s)|password|passwd|authorization)[\w-]*\b"
        r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{4,})"
    ),
    # long opaque tokens (JWTs, hex, base64) of 32+ characters
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"),
    re.compile(r"\b[A-Fa-f0-9]{32,}\b"),
    # credentials inside URLs
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
)


def redact(text: str) -> str:
    """Replace anything that looks like a credential with ``[REDACTED]``."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: m.group(1) + "[REDACTED]", text)
        else:
            text = pattern.sub("[REDACTED]", text)
    return text


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
