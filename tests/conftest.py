"""Shared fixtures: a scripted model server and a throw-away Hermes home with hermetry enabled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermetry.testing.query import rows


@pytest.fixture
def db_rows() -> Any:
    return rows


@pytest.fixture(autouse=True)
def _isolate_hermes_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may read or write the developer's real ~/.hermes or telemetry file."""
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hermes-home-default"))
    monkeypatch.delenv("HERMETRY_DB", raising=False)
    monkeypatch.delenv("HERMETRY_PRICES", raising=False)
    yield
