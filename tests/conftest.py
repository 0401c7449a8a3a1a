"""Shared fixtures: a scripted model server and a throw-away Hermes home with hermetry enabled."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from hermetry.testing.query import rows


def under_ci() -> bool:
    """True when the ``CI`` environment variable says so (``1``/``true``/``yes``, any case)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def engine_missing(message: str) -> NoReturn:
    """An engine a test needs (PostgreSQL, Prometheus, Chromium, Playwright) is not there:
    skip locally, FAIL under CI — a CI run never goes green by skipping what it must test."""
    if under_ci():
        pytest.fail(f"required under CI: {message}")
    pytest.skip(message)


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


# -- PostgreSQL (tests/test_postgres*.py): one throwaway cluster per test session, one new database
# per test, so no test sees another's rows. Missing engine: skipped locally, a failure under CI.

@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    from hermetry.testing.postgres import EngineMissing, PostgresServer

    try:
        import psycopg  # noqa: F401

        server = PostgresServer()
    except (ImportError, EngineMissing) as exc:
        engine_missing(f"PostgreSQL not available: {exc}")
    with server:
        yield server


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return str(pg_server.create_database())
