"""The stored vocabularies (API and tool statuses, cost statuses, outcomes, reasons) are written
into SQL from their one definition in model/, never as string literals.

The check reads the source of the modules whose SQL has been moved onto the model's constants;
a value typed again as ``'ok'`` (an SQL literal inside a Python string) fails it. SQL comments
(``-- 'ok' | 'error'`` in the schema) and Python comments are documentation, not SQL, and are
skipped. (analytics/report.py, activity.py and series.py are their owners' to convert:
/work/notes/seams2-left.md at the time of writing.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hermetry.model.kinds import API_STATUSES, CostStatus
from hermetry.model.outcomes import (
    REASON_LAST_CALL_FAILED,
    REASON_NO_SESSION_END,
    REASON_NO_TURN_END,
    TOOL_BLOCKED,
    TOOL_ERROR,
    TOOL_OK,
    SessionOutcome,
    TurnOutcome,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "hermetry"
MODULES = (
    "stores/sqlite.py", "stores/sqlite_schema.py", "stores/sqlite_reconcile.py", "stores/postgres.py",
    "stores/postgres_schema.py", "stores/dialect.py", "cost/reprice.py", "analytics/compare.py",
    "analytics/sessions.py", "analytics/events.py", "analytics/query.py", "surfaces/export.py",
    "stores/rollups.py", "analytics/report.py", "analytics/activity.py", "analytics/series.py", "analytics/metrics.py",
)
VOCABULARY = sorted({*API_STATUSES, TOOL_OK, TOOL_ERROR, TOOL_BLOCKED, *(s.value for s in CostStatus),
                     *(o.value for o in TurnOutcome), *(o.value for o in SessionOutcome),
                     REASON_LAST_CALL_FAILED, REASON_NO_TURN_END, REASON_NO_SESSION_END})


def _literals(source: str) -> list[str]:
    """The vocabulary values ``source`` writes as SQL literals (comments skipped)."""
    lines = []
    for line in source.splitlines():
        if line.lstrip().startswith("#"):
            continue
        lines.append(re.sub(r"--.*$", "", line))  # an SQL comment inside a statement
    text = "\n".join(lines)
    return sorted({v for v in VOCABULARY if f"'{v}'" in text})


@pytest.mark.parametrize("module", MODULES)
def test_no_vocabulary_value_is_an_sql_literal(module: str) -> None:
    found = _literals((SRC / module).read_text())
    assert not found, f"{module} writes {found} as SQL literals: interpolate the model/ constant instead"


def test_the_check_sees_a_literal_and_skips_comments() -> None:
    assert {"ok", "error", "actual", "estimated", "included", "unknown", "errored", "abandoned"} <= set(VOCABULARY)
    assert _literals('sql = "SELECT 1 WHERE status = \'error\' AND cost_status <> \'actual\'"') == ["actual", "error"]
    assert _literals("    status  TEXT NOT NULL,  -- 'ok' | 'error'\n# a 'completed' turn") == []
