"""The one definition of each small shared concept (model/, stores/sqlite_util.py, the cost
adapter): each behaves as every former copy did."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hermetry.cost import TokenUsage, price_api_call, price_call
from hermetry.model.kinds import TOKEN_KINDS, CostStatus
from hermetry.model.sessions import ancestors, one_shot_kind, profile_for_home, session_type_for
from hermetry.sources.backfill import profile_for_path
from hermetry.stores.sqlite_util import chunks, is_corrupt, transaction


@pytest.mark.parametrize(("argv", "kind"), [
    (["-z", "hi"], "oneshot"), (["--oneshot=hi"], "oneshot"), (["chat", "-q", "hi"], "query"),
    (["chat", "--query", "hi"], "query"), (["chat"], None), ([], None), (["--zz"], None),
])
def test_one_shot_kind_is_the_session_type_of_a_cli_run(argv: list[str], kind: str | None) -> None:
    assert one_shot_kind(argv) == kind
    assert session_type_for("cli", argv) == (kind or "interactive")


@pytest.mark.parametrize(("home", "profile"), [
    ("/h/.hermes/profiles/work", "work"), ("/h/.hermes/profiles/work/", "work"), ("/h/.hermes", "default"),
    ("", "default"), (None, "default"), ("/profiles/", "default"),
])
def test_one_profile_rule_for_live_and_backfill(home: str | None, profile: str, tmp_path: Path) -> None:
    assert profile_for_home(home) == profile


def test_backfill_profile_is_the_state_db_folder(tmp_path: Path) -> None:
    assert profile_for_path(tmp_path / "profiles" / "ops" / "state.db") == "ops"
    assert profile_for_path(tmp_path / "state.db") == "default"


def test_ancestors_walk_and_stop_at_a_cycle() -> None:
    assert ancestors({"c": "b", "b": "a"}, "c") == ["b", "a"]
    assert ancestors({"c": "b"}, "a") == []
    assert ancestors({"a": "b", "b": "a"}, "a") == ["b"]  # a cycle stops where it closes


def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ZeroDivisionError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise ZeroDivisionError
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)] and not conn.in_transaction
    conn.close()


def test_chunks_and_corruption() -> None:
    assert [list(c) for c in chunks(list(range(5)), 2)] == [[0, 1], [2, 3], [4]]
    assert is_corrupt(sqlite3.DatabaseError("file is not a database"))
    assert is_corrupt(sqlite3.DatabaseError("database disk image is malformed"))
    assert not is_corrupt(sqlite3.OperationalError("database is locked"))


def test_the_cost_adapter_is_price_call() -> None:
    tokens = (1200, 300, 5000, 0, 40)
    at_ms = datetime(2025, 6, 1, tzinfo=UTC).timestamp() * 1000
    direct = price_call(provider="openai", model="gpt-4o", base_url=None, usage=TokenUsage(*tokens),
                        at=datetime(2025, 6, 1, tzinfo=UTC))
    stored = price_api_call(provider="openai", model="gpt-4o", base_url=None, tokens=tokens, started_at_ms=at_ms)
    assert stored == (direct.cost_usd, str(direct.cost_status), direct.cost_source, direct.pricing_version)
    assert stored.cost_status == CostStatus.ESTIMATED and stored.cost_usd is not None
    assert tuple(TokenUsage.__dataclass_fields__) == TOKEN_KINDS  # the adapter's tuple order
