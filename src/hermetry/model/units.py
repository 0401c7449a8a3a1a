"""Time units: every timestamp hermetry stores is epoch **milliseconds** (``*_at_ms``), every
duration milliseconds (``*_ms``); Hermes hands us epoch seconds. One definition of each factor."""

from __future__ import annotations

#: Milliseconds in a second, an hour and a (UTC, 24-hour) day.
SECOND_MS = 1000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Seconds in a day (for ``datetime.fromtimestamp(day_number * DAY_S)``).
DAY_S = 86_400


def ms_from_s(seconds: float) -> float:
    """Epoch seconds (Hermes' clocks) → epoch milliseconds (hermetry's)."""
    return seconds * 1000.0
