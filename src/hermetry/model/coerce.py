"""Forgiving converters for values that come from outside: hook payloads, other databases.

Every source uses these, so "a wrong type is not captured" means the same everywhere: a
value that is missing, of the wrong type or not a number becomes ``None`` — never 0, never an
exception.
"""

from __future__ import annotations

from typing import Any

_INT64_MAX = 2**63 - 1


def as_float(v: Any) -> float | None:
    """A finite-or-infinite number; None for missing, bools, non-numbers and NaN."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if f == f else None  # NaN is not a measurement


def as_int(v: Any) -> int | None:
    """An integer SQLite can store (64-bit); None for anything else, bools included."""
    if v is None or isinstance(v, bool):
        return None
    try:
        i = int(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return i if -_INT64_MAX <= i <= _INT64_MAX else None
