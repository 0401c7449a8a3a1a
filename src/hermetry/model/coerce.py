"""Forgiving converters for values that come from outside: hook payloads, other databases.

Every source uses these, so "a wrong type is not captured" means the same everywhere: a
value that is missing, of the wrong type or not a number becomes ``None`` — never 0, never an
exception.
"""

from __future__ import annotations

import math
from typing import Any

_INT64_MAX = 2**63 - 1


def as_float(v: Any) -> float | None:
    """A finite number; None for missing, bools, non-numbers, NaN and infinities (no duration,
    count or timestamp is infinite: an ``inf`` from outside is garbage, and SQLite would keep it)."""
    if type(v) is float:  # the common case, first (the same answer as below)
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def as_str(v: Any, strip: bool = False) -> str | None:
    """Text (a scalar as its ``str``); None for missing and empty (blank too, with ``strip``), and
    for a container, whose repr is no model name, source or reason."""
    if type(v) is str and not strip:  # the common case, first (the same answer as below)
        return v or None
    if v is None or isinstance(v, list | dict | tuple | set | frozenset):
        return None
    s = v if isinstance(v, str) else str(v)
    if strip:
        s = s.strip()
    return s or None


def as_id(v: Any) -> str | None:
    """An identifier: a non-empty string (or an int, as text); anything else is not an id."""
    if isinstance(v, str):
        return v or None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return None


def as_int(v: Any) -> int | None:
    """An integer SQLite can store (64-bit); None for anything else, bools included."""
    if type(v) is int and -_INT64_MAX <= v <= _INT64_MAX:  # the common case, first
        return v
    if v is None or isinstance(v, bool):
        return None
    try:
        i = int(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return i if -_INT64_MAX <= i <= _INT64_MAX else None
