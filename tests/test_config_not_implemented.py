"""An operator's setting is never ignored silently: keys and sink names nothing implements yet
are accepted with one "not implemented" line each, saying what to use instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermetry import config
from hermetry.recorder import notice


def test_unimplemented_keys_and_sinks_each_get_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    notice.reset()
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("hermetry:\n  prometheus: {port: 9464}\n  dashboard: true\n"
                                      "  sinks: [otlp, Prometheus, grafana]\n")
    monkeypatch.setenv("HERMES_HOME", str(home))
    for _ in range(3):
        settings = config.hermetry_settings()
    assert settings["dashboard"] is True  # still returned as written
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4, err
    assert "hermetry.prometheus is not implemented: it is ignored" in err[0] and "hermetry metrics serve" in err[0]
    assert "hermetry.dashboard is not implemented: it is ignored" in err[1] and "hermetry dashboard" in err[1]
    assert "hermetry.sinks: prometheus is not implemented" in err[2]
    assert "hermetry.sinks: unknown sink 'grafana' is ignored (known: otlp)" in err[3]
    notice.reset()


def test_implemented_settings_say_nothing() -> None:
    assert config.check_settings({"sinks": ["otlp"], "otlp": {"enabled": True}, "commands": True,
                                  "telemetry_command": {"allow": ["*"]}}) == []
    assert config.check_settings({"sinks": "otlp"}) == []


def test_import_says_where_it_wrote_only_after_a_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from hermetry.surfaces import cli

    home = tmp_path / "hermes"
    home.mkdir()
    (home / "state.db").write_bytes(b"\x00not a database\xff" * 64)  # unreadable as SQLite
    monkeypatch.delenv("HERMETRY_DB", raising=False)
    code = cli.main(["import", "--hermes-home", str(home)])
    err = capsys.readouterr().err
    assert code == 1
    assert "telemetry file:" not in err
