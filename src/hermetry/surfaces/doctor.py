"""``diagnose()``: is hermetry recording, and if not, why — and what to do (``hermetry doctor``).

One library call, read-only: it never creates, migrates or locks the telemetry file. It reports
which file is in use and why that one, its schema version, whether it can be written (and why
not), whether Hermes loads the plugin, Hermes' and hermetry's versions, the drops recorded in
the file and those still waiting in the fallback ledger (``recorder.ledger``), what ``hermetry
prune`` left out of the reports (rows written for pruned time: ``retention``), the price file's
status, problems in the ``hermetry:`` config section, and one action per problem.
``hermetry doctor --json`` prints the result as it is (``hermetry.doctor.v1``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hermetry import config

SCHEMA = "hermetry.doctor.v1"
RECENT_DROPS = 5


def _iso(ms: Any) -> str | None:
    if not isinstance(ms, int | float):
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def _file_source(db: Path | None) -> tuple[Path, str]:
    if db is not None:
        return db, "--db"
    if os.environ.get(config.ENV_DB, "").strip():
        return config.db_path(), f"${config.ENV_DB}"
    configured = config.hermetry_settings().get("db_path")
    if isinstance(configured, str) and configured.strip():
        return config.db_path(), f"hermetry.db_path in {config.hermes_home() / 'config.yaml'}"
    return config.db_path(), "default ($HERMES_HOME/hermetry/telemetry.db)"


def _plugin(home: Path) -> dict[str, Any]:
    cfg = config.hermes_config(home)
    plugins = cfg.get("plugins") if isinstance(cfg.get("plugins"), dict) else {}
    enabled_list = plugins.get("enabled") if isinstance(plugins, dict) else None
    disabled_list = plugins.get("disabled") if isinstance(plugins, dict) else None
    installed = False
    try:
        from importlib.metadata import entry_points

        installed = any(ep.name == "hermetry" for ep in entry_points(group="hermes_agent.plugins"))
    except Exception:
        pass
    if os.environ.get("HERMES_SAFE_MODE", "").strip().lower() in ("1", "true", "yes"):
        return {"enabled": False, "installed": installed, "why": "HERMES_SAFE_MODE is set: Hermes loads no plugins"}
    if isinstance(disabled_list, list) and "hermetry" in disabled_list:
        return {"enabled": False, "installed": installed, "why": "listed in plugins.disabled in config.yaml"}
    if isinstance(enabled_list, list) and "hermetry" in enabled_list:
        why = "listed in plugins.enabled" if installed else "enabled in config.yaml, but not installed here"
        return {"enabled": installed, "installed": installed, "why": why}
    return {"enabled": False, "installed": installed, "why": "not in plugins.enabled in config.yaml"}


def _drops(path: Path, readable: bool) -> dict[str, Any]:
    from hermetry.recorder.ledger import DropLedger

    out: dict[str, Any] = {"events_dropped": 0, "runs_with_drops": 0, "recent": [], "not_yet_in_file": [],
                           "exporters": []}
    if readable:
        try:
            from hermetry.stores.sqlite import connect

            conn = connect(path, readonly=True)
            try:
                total, runs = conn.execute(
                    "SELECT COALESCE(SUM(events_dropped), 0), COUNT(*) FROM recorder_runs WHERE events_dropped > 0"
                ).fetchone()
                out["events_dropped"], out["runs_with_drops"] = int(total), int(runs)
                out["recent"] = [
                    {"run_id": r[0], "host": r[1], "pid": r[2], "started_at": _iso(r[3]), "last_flush_at": _iso(r[4]),
                     "events_written": r[5], "events_dropped": r[6]}
                    for r in conn.execute(
                        "SELECT run_id, host, pid, started_at_ms, last_flush_at_ms, events_written, events_dropped "
                        "FROM recorder_runs WHERE events_dropped > 0 ORDER BY last_flush_at_ms DESC LIMIT ?",
                        (RECENT_DROPS,))]
                out["exporters"] = _exporter_drops(conn)
            finally:
                conn.close()
        except (sqlite3.Error, Exception):
            pass
    ledger = DropLedger(path)
    pending = ledger.pending()
    out["not_yet_in_file"] = [
        {"run_id": r.get("run_id"), "host": r.get("host"), "pid": r.get("pid"), "at": _iso(r.get("at_ms")),
         "events_dropped": r.get("events_dropped"), "reason": r.get("last_error")} for r in pending]
    out["fallback_files"] = [str(p) for p in ledger.paths]
    out["events_dropped"] += sum(int(r.get("events_dropped") or 0) for r in pending)
    return out


def _exporter_drops(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per exporter (OTLP, …): what it could not deliver, over every recording run (exporter_runs)."""
    try:
        rows = conn.execute(
            "SELECT exporter, SUM(events_dropped), SUM(spans_dropped), SUM(points_dropped), "
            "SUM(CASE WHEN events_dropped + spans_dropped + points_dropped > 0 THEN 1 ELSE 0 END), COUNT(*), "
            "MAX(updated_at_ms) FROM exporter_runs GROUP BY exporter ORDER BY exporter").fetchall()
        last = dict(conn.execute(
            "SELECT exporter, last_error FROM exporter_runs e WHERE last_error IS NOT NULL AND updated_at_ms = "
            "(SELECT MAX(updated_at_ms) FROM exporter_runs x WHERE x.exporter = e.exporter AND x.last_error IS NOT NULL)"
        ).fetchall())
    except sqlite3.Error:
        return []  # an older file: no exporter ledger yet
    return [{"exporter": name, "events_dropped": int(ev or 0), "spans_dropped": int(sp or 0),
             "points_dropped": int(pt or 0), "runs_with_drops": int(bad or 0), "runs": int(runs or 0),
             "last_at": _iso(at), "last_error": last.get(name)} for name, ev, sp, pt, bad, runs, at in rows]


def _from_rollups(path: Path, readable: bool, out: dict[str, Any],
                  fill: Callable[[sqlite3.Connection, dict[str, Any]], None]) -> dict[str, Any]:
    """``out`` (its values None: unknown), filled by ``fill`` from the file read-only when it can be
    read and has rollups; a file that cannot says nothing rather than failing the doctor."""
    if not readable:
        return out
    try:
        from hermetry.stores import rollups
        from hermetry.stores.sqlite import connect

        conn = connect(path, readonly=True)
        try:
            if rollups.has_rollups(conn):
                fill(conn, out)
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - the doctor reports what it can read
        pass
    return out


def _retention(path: Path, readable: bool) -> dict[str, Any]:
    """``hermetry prune``'s boundary, and the rows written for pruned time since — in no report
    (``stores.rollups.late_rows``) — plus those a later prune deleted uncounted."""
    from hermetry.stores import rollups

    def fill(conn: sqlite3.Connection, out: dict[str, Any]) -> None:
        boundary = rollups.pruned_before_ms(conn)
        if boundary is not None:
            out["pruned_before"] = _iso(boundary)
            out["late_rows"] = rollups.late_rows(conn)
            out["late_rows_deleted"] = rollups.late_rows_deleted(conn)

    return _from_rollups(path, readable, {"pruned_before": None, "late_rows": None, "late_rows_deleted": None}, fill)


def _rollups(path: Path, readable: bool) -> dict[str, Any]:
    """How current the rollups are: closed hours waiting to be rebuilt (reports read them from raw
    rows — the same figures, slower) and whether schema 12's sessions rollup is still being built
    (review m21: after an upgrade an operator sees slower reports and nothing said why)."""
    import time

    from hermetry.model.units import HOUR_MS
    from hermetry.stores import rollups

    def fill(conn: sqlite3.Connection, out: dict[str, Any]) -> None:
        now_hour = int(time.time() * 1000 // HOUR_MS)
        out["dirty_hours"] = int(conn.execute("SELECT COUNT(*) FROM rollup_dirty WHERE hour < ?",
                                              (now_hour,)).fetchone()[0])
        pending, from_hour = rollups.sessions_pending(conn)
        if pending:
            out["sessions_rollup_pending_from"] = (_iso(from_hour * HOUR_MS) if from_hour is not None
                                                   else "the first session")

    return _from_rollups(path, readable, {"dirty_hours": None, "sessions_rollup_pending_from": None}, fill)


def _prices() -> dict[str, Any]:
    path = config.price_file_path()
    if path is None:
        return {"path": None, "status": "none", "detail": "no price file: list prices (genai-prices) only"}
    if not path.is_file():
        return {"path": str(path), "status": "missing", "detail": f"no price file at {path}"}
    try:
        from hermetry.cost import load_pricing_config

        pricing = load_pricing_config(path)
    except Exception as exc:
        return {"path": str(path), "status": "error", "detail": " ".join(str(exc).split())[:300]}
    return {"path": str(path), "status": "ok",
            "detail": f"{len(pricing.models)} model rules, {len(pricing.subscriptions)} subscriptions"}


def diagnose(db: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Everything ``hermetry doctor`` shows, as a dict (``hermetry.doctor.v1``). Read-only."""
    from hermetry.recorder.notice import quiet

    with quiet():  # the problems are in the result; don't also print them
        return _diagnose(db)


def _diagnose(db: str | os.PathLike[str] | None) -> dict[str, Any]:
    from hermetry import __version__
    from hermetry.stores.sqlite import inspect_store

    home = config.hermes_home()
    path, source = _file_source(Path(db).expanduser() if db is not None else None)
    status = inspect_store(path)
    plugin = _plugin(home)
    drops = _drops(path, status.readable)
    retention = _retention(path, status.readable)
    rollup_state = _rollups(path, status.readable)
    prices = _prices()
    section = config.hermes_config(home).get("hermetry")
    config_problems = config.check_settings(section)

    problems: list[dict[str, str]] = []
    if status.problem and status.kind != "missing":
        problems.append({"what": status.problem, "do": status.hint or ""})
    elif not status.writable:
        problems.append({"what": f"{path} cannot be created: {status.not_writable_because}",
                         "do": "fix the folder's permissions or space, or point HERMETRY_DB elsewhere"})
    if not plugin["enabled"]:
        problems.append({"what": f"Hermes does not load hermetry ({plugin['why']})",
                         "do": "hermes plugins enable hermetry --no-allow-tool-override" if plugin["installed"]
                         else ("pip install hermetry into Hermes' environment, then "
                               "hermes plugins enable hermetry --no-allow-tool-override")})
    if drops["not_yet_in_file"]:
        n = sum(int(r.get("events_dropped") or 0) for r in drops["not_yet_in_file"])
        problems.append({"what": f"{n:,} dropped events are counted in {drops['fallback_files']} but not in the "
                                 "telemetry file yet", "do": "they are moved in by the next Hermes run that can "
                                                             "write the file"})
    if prices["status"] in ("missing", "error"):
        problems.append({"what": f"price file: {prices['detail']}", "do": "fix it or unset it (docs/cost.md)"})
    for line in config_problems:
        problems.append({"what": line, "do": f"fix the hermetry: section of {home / 'config.yaml'}"})

    return {
        "schema": SCHEMA,
        "ok": not problems,
        "telemetry_file": {
            "path": str(path), "chosen_by": source, "exists": status.exists, "kind": status.kind,
            "schema_version": status.schema_version, "supported_schema_version": status.supported_schema_version,
            "readable": status.readable, "writable": status.writable,
            "not_writable_because": status.not_writable_because, "size_bytes": status.size_bytes,
            "free_bytes": status.free_bytes,
        },
        "plugin": plugin,
        "hermes": {"version": _version("hermes-agent"), "home": str(home)},
        "hermetry": {"version": __version__},
        "drops": drops,
        "retention": retention,
        "rollups": rollup_state,
        "prices": prices,
        "config_problems": config_problems,
        "problems": problems,
    }
