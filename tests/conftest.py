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


# -- PostgreSQL (tests/test_postgres*.py): one throwaway cluster per test session, one new database
# per test, so no test sees another's rows. Missing engine: skipped locally, a failure under CI.

@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    import os

    from hermetry.testing.postgres import EngineMissing, PostgresServer

    try:
        import psycopg  # noqa: F401

        server = PostgresServer()
    except (ImportError, EngineMissing) as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    with server:
        yield server


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return str(pg_server.create_database())
