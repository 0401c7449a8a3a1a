"""The seams between the layers, checked on the source itself (issue 12's "Done when").

* ``surfaces/`` never imports a source, ``sources/`` never imports a surface or the root;
* the recorder imports no store (it knows only the Sink interface);
* the composition root builds the recorder's sinks from the operator's settings.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import hermetry
from hermetry import plugin

SRC = Path(hermetry.__file__).parent

#: the one module allowed to cross: the deprecated entry point, an alias of hermetry.plugin
ALIASES = {SRC / "sources" / "hermes" / "plugin.py"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions (relative ones resolved)."""
    names: set[str] = set()
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _offenders(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in sorted((SRC / folder).rglob("*.py")):
        if path in ALIASES:
            continue
        bad = sorted(n for n in _imports(path) if n.startswith(forbidden))
        if bad:
            found[str(path.relative_to(SRC))] = bad
    return found


def test_the_import_checker_sees_function_level_imports(tmp_path: Path) -> None:
    probe = SRC / "surfaces" / "hermes_commands.py"
    assert "hermetry.surfaces.cli" in _imports(probe)  # imported inside a function there


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("surfaces", ("hermetry.sources",)),
    ("sources", ("hermetry.surfaces", "hermetry.plugin")),
    ("recorder", ("hermetry.stores", "hermetry.sources", "hermetry.surfaces", "hermetry.sinks")),
    ("model", ("hermetry.stores", "hermetry.sources", "hermetry.surfaces", "hermetry.recorder")),
])
def test_layers_do_not_reach_across(folder: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(folder, forbidden) == {}


def test_the_old_entry_point_is_the_root() -> None:
    from hermetry.sources.hermes import plugin as old

    assert old.register is plugin.register and old.get_capture is plugin.get_capture


def test_sinks_setting_turns_exporters_on() -> None:
    settings = plugin.exporter_settings({"sinks": ["OTLP", "", 3], "otlp": {"endpoint": "x"}, "db_path": "a"})
    assert settings["otlp"] == {"endpoint": "x", "enabled": True}
    assert settings["db_path"] == "a"
    assert plugin.exporter_settings({"sinks": "otlp"})["otlp"] == {"enabled": True}
    assert "otlp" not in plugin.exporter_settings({})


def test_the_root_hands_the_exporters_to_the_recorder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hermetry import sinks
    from hermetry.testing import InMemorySink

    seen: list[dict[str, Any]] = []
    memory = InMemorySink()

    def exporters(settings: Any) -> list[Any]:
        seen.append(dict(settings))
        return [lambda: memory] if settings.get("memory", {}).get("enabled") else []

    monkeypatch.setattr(sinks, "exporters_from_settings", exporters)
    monkeypatch.setenv("HERMETRY_DB", str(tmp_path / "t.db"))
    recorder = plugin.build_recorder({"sinks": ["memory"]})
    try:
        from hermetry.model.events import SessionStarted

        recorder.record(SessionStarted(session_id="s1", started_at_ms=1.0))
        assert recorder.flush(10)
        assert [e.session_id for e in memory.events] == ["s1"]  # type: ignore[attr-defined]
        assert recorder.stats().written == 1  # and the primary store (SQLite) took it too
    finally:
        recorder.close()
    assert seen == [{"sinks": ["memory"], "memory": {"enabled": True}}]


def test_register_wires_hooks_middleware_and_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HERMES_HOME", str(tmp_path))
    monkeypatch.setenv("HERMETRY_DB", str(tmp_path / "t.db"))
    monkeypatch.setattr("sys.argv", ["hermes", "chat"])
    monkeypatch.setattr(plugin, "_capture", None)
    calls: dict[str, list[str]] = {"hook": [], "middleware": [], "command": [], "cli": []}

    class Ctx:
        def register_hook(self, name: str, cb: Any) -> None:
            calls["hook"].append(name)

        def register_middleware(self, name: str, cb: Any) -> None:
            calls["middleware"].append(name)

        def register_command(self, name: str, *a: Any, **k: Any) -> None:
            calls["command"].append(name)

        def register_cli_command(self, name: str, *a: Any, **k: Any) -> None:
            calls["cli"].append(name)

    import os

    from hermetry.sources.hermes import state_mirror

    monkeypatch.setattr(state_mirror, "install", lambda *a, **k: None)
    monkeypatch.setattr(os, "_exit", os._exit)  # the wrapper the root installs is undone after
    plugin.register(Ctx())
    try:
        assert {"on_session_start", "post_api_request", "post_tool_call"} <= set(calls["hook"])
        assert calls["middleware"] == ["llm_execution", "llm_execution"]  # probe, API-server /telemetry
        assert calls["command"] == ["telemetry"] and calls["cli"] == ["telemetry"]
        (tmp_path / "config.yaml").write_text("hermetry:\n  commands: false\n")
        calls["command"].clear()
        plugin.register(Ctx())
        assert calls["command"] == []
    finally:
        capture = plugin._capture
        if capture is not None:
            capture.recorder.close()


# -- the read side: analytics ask the store through one query layer with a dialect seam ----------


class _OtherDialect:
    """A second dialect: the same figures through different SQL (and no planner hint)."""

    name = "other"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def day_bucket(self, column_ms: str) -> str:
        self.calls.append("day_bucket")
        return f"CAST((({column_ms}) - (({column_ms}) % 86400000)) / 86400000 AS INTEGER)"

    def index_hint(self, scanner: Any, table: Any) -> str:
        self.calls.append(f"index_hint:{table.name}")
        return ""


class _Reader:
    """A read connection of another store: speaks the query layer's SQL, has its own dialect."""

    def __init__(self, conn: Any, dialect: _OtherDialect) -> None:
        self._conn, self.dialect = conn, dialect

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._conn.execute(sql, params)

    def cursor(self) -> Any:
        return self._conn.cursor()


def test_analytics_use_the_store_s_dialect_and_answer_the_same(tmp_path: Path) -> None:
    import json

    from hermetry.analytics.query import SQLITE, Query, dialect_of
    from hermetry.analytics.report import insights
    from hermetry.stores.sqlite import connect
    from hermetry.testing.history import DAY_MS, NOW_MS, synthetic_history

    history = synthetic_history(seed=3, days=3, sessions_per_day=4)
    db = history.record(tmp_path / "t.db")
    query = Query(since_ms=NOW_MS - 3 * DAY_MS, until_ms=NOW_MS, group_by=("day", "model"),
                  filters={"source": "cli"})
    conn = connect(db, readonly=True)
    try:
        assert dialect_of(conn) is SQLITE
        dialect = _OtherDialect()
        other = insights(_Reader(conn, dialect), query)  # type: ignore[arg-type]
        embedded = insights(conn, query)
    finally:
        conn.close()
    assert "day_bucket" in dialect.calls and {"index_hint:turns", "index_hint:api_calls"} <= set(dialect.calls)
    assert embedded["turns"]["count"] > 0
    # equal to the last few bits: another plan may sum the same floats in another order
    def rounded(x: Any) -> Any:
        if isinstance(x, float):
            return float(f"{x:.10g}")
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        return [rounded(v) for v in x] if isinstance(x, list) else x

    assert json.dumps(rounded(other), sort_keys=True, default=str) == json.dumps(rounded(embedded), sort_keys=True,
                                                                                 default=str)
