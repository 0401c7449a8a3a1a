"""The small vocabularies the canonical model uses, defined once: token kinds, API-call
statuses and cost statuses. Stores, analytics, exporters and surfaces import them from here.

(Outcomes, outcome reasons and tool-call statuses are the outcome taxonomy's:
:mod:`hermetry.model.outcomes`.)
"""

from __future__ import annotations

from enum import StrEnum

#: The five token kinds of an API call, in hermetry's canonical (= Hermes' normalized) sense:
#: ``input_tokens`` excludes cache reads and writes; ``output_tokens`` includes reasoning, and
#: ``reasoning_tokens`` is the part of the output that was reasoning (never added again).
TOKEN_KINDS: tuple[str, ...] = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
)

#: ``ApiCall.status`` of one attempt: the provider answered; the provider or the network failed;
#: a person or a timeout interrupted it (not an API error).
API_OK = "ok"
API_ERROR = "error"
API_INTERRUPTED = "interrupted"
API_STATUSES: tuple[str, ...] = (API_OK, API_ERROR, API_INTERRUPTED)


class CostStatus(StrEnum):
    """How a cost is known (docs/cost.md). Stores and reports use these strings."""

    ACTUAL = "actual"  # the provider reported what it charged
    ESTIMATED = "estimated"  # computed from tokens × a named, versioned price list
    INCLUDED = "included"  # paid by a subscription; no per-call charge to attribute
    UNKNOWN = "unknown"  # no trustworthy price: shown as "unknown", never as $0


#: The statuses of a cost that is known (everything but ``unknown``).
KNOWN_COST_STATUSES: tuple[str, ...] = (CostStatus.ACTUAL, CostStatus.ESTIMATED, CostStatus.INCLUDED)
