"""The composition root: ``pip install hermetry && hermes plugins enable hermetry``.

Hermes finds this module through the ``hermes_agent.plugins`` entry point and calls
:func:`register`. This is the one place that knows every part and wires them from the
operator's settings (the ``hermetry:`` section of Hermes' ``config.yaml``, docs/cli.md):

* the **source** — :class:`~hermetry.sources.hermes.hooks.HermesCapture` (Hermes' hooks →
  canonical events), the stream probe middleware and the process wrappers;
* the **recorder** with its **processors** (pricing, :class:`_LazyPricer`);
* the **primary store** (:func:`store_factory`: the SQLite file at ``db_path``) and the
  best-effort **exporters** (:func:`hermetry.sinks.exporters_from_settings`);
* the **commands** (``hermes telemetry …``, ``/telemetry``; :mod:`hermetry.surfaces.hermes_commands`),
  unless ``hermetry: {commands: false}``.

``sources/`` only turns Hermes into canonical events; ``surfaces/`` never imports a source — what
a surface needs from one (the ``/telemetry`` middleware marking its own reply as not a model
call, ``hermetry import`` reading Hermes' history) is handed to it from here. Everything in
:func:`register` is wrapped so that a failure to set up telemetry leaves Hermes exactly as it
was, only unobserved.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermetry import config
from hermetry.recorder.recorder import Recorder
from hermetry.recorder.sink import Sink
from hermetry.sources.hermes import state_mirror, stream_probe, wrappers
from hermetry.sources.hermes.hooks import HermesCapture, profile_name
from hermetry.sources.hermes.wrappers import HARD_EXIT_FLUSH_S

if TYPE_CHECKING:
    from hermetry.sources.backfill import ImportResult, Progress

log = logging.getLogger("hermetry")

__all__ = ["HARD_EXIT_FLUSH_S", "ImportRefused", "get_capture", "import_history", "register",
           "store_factory"]

_lock = threading.Lock()
_capture: HermesCapture | None = None


def store_factory(settings: Mapping[str, Any] | None = None) -> Callable[[], Sink]:
    """The primary store the recorder writes to (and retries): the SQLite file at
    :func:`hermetry.config.db_path`, or — for a ``postgresql://`` URL — a fleet's PostgreSQL
    behind a local spool (:mod:`hermetry.stores.fallback`). Built on the writer thread, on its
    first batch."""
    url = config.store_url()
    if url:
        return postgres_store_factory(url)
    from hermetry.recorder.ledger import DropLedger
    from hermetry.stores.sqlite import SQLiteStore

    path = config.db_path()
    factory: Callable[[], Sink] = lambda: SQLiteStore(path)  # noqa: E731
    # where the drop count goes when the file cannot take it at exit (recorder.ledger)
    factory.drop_ledger = DropLedger(path)  # type: ignore[attr-defined]
    return factory


def postgres_store_factory(url: str, *, host: str | None = None,
                           spool: Path | None = None) -> Callable[[], Sink]:
    """Spool locally, forward to PostgreSQL off the writer thread (docs/fleet.md)."""
    host = host or config.host()
    spool = spool or config.spool_path()

    def factory() -> Sink:
        from hermetry.stores.fallback import FleetStore
        from hermetry.stores.postgres import PostgresStore

        return FleetStore(lambda: PostgresStore(url, host=host), spool)

    return factory


def exporter_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``sinks: [otlp, …]`` is shorthand for ``otlp: {enabled: true}`` (each exporter's own section
    still configures it): the settings :func:`hermetry.sinks.exporters_from_settings` reads."""
    out = dict(settings)
    names = settings.get("sinks")
    if isinstance(names, str):
        names = [names]
    for name in names if isinstance(names, list | tuple) else ():
        if isinstance(name, str) and name.strip():
            key = name.strip().lower()
            section = out.get(key)
            out[key] = {**(section if isinstance(section, dict) else {}), "enabled": True}
    return out


def exporter_factories(settings: Mapping[str, Any]) -> list[Callable[[], Sink]]:
    """The best-effort exporters the settings turn on (none unless configured)."""
    from hermetry.sinks import exporters_from_settings

    return exporters_from_settings(exporter_settings(settings))


class _LazyPricer:
    """Prices API calls on the writer thread; loads the pricing code and the price file there, on
    the first call that needs them — never on the agent's thread while Hermes starts."""

    def __init__(self) -> None:
        self._processor: Any = None

    def __call__(self, event: Any) -> Any:
        if self._processor is None:
            from hermetry.cost.processor import PriceApiCalls

            self._processor = PriceApiCalls.from_file(config.price_file_path())
        return self._processor(event)


def build_recorder(settings: Mapping[str, Any]) -> Recorder:
    """Recorder, processors, primary store and exporters, from the operator's settings."""
    return Recorder(store_factory(settings), exporters=exporter_factories(settings),
                    processors=[_LazyPricer()], host=config.host())


def get_capture(settings: Mapping[str, Any] | None = None) -> HermesCapture:
    """The process-wide capture (one recorder per process, however often Hermes registers us)."""
    global _capture
    with _lock:
        if _capture is None:
            if settings is None:
                settings = config.hermetry_settings()
            _capture = HermesCapture(build_recorder(settings), profile=profile_name())
        return _capture


def register(ctx: Any) -> None:
    """Hermes plugin entry point."""
    settings: Mapping[str, Any] = {}
    try:
        settings = config.hermetry_settings()
        capture = get_capture(settings)
        for hook, callback in capture.callbacks(_valid_hooks()).items():
            ctx.register_hook(hook, callback)
        # The OpenAI SDK wrapper is set up on the first model call (the middleware's first run), the
        # interrupt wrapper by the first hook that finds run_agent loaded (callbacks.wrap_interrupt)
        # or then, so enabling hermetry imports nothing of Hermes' early.
        stream_probe.ON_ABORT = capture.on_api_aborted
        stream_probe.ON_AUX_ERROR = capture.on_aux_error

        def late_setup() -> None:  # on the first model call, when Hermes has loaded these
            wrappers.wrap_interrupt(capture.on_interrupt)
            state_mirror.install_late(capture.on_cron_status, capture.on_unknown_tool)

        stream_probe.ON_INSTALL = late_setup
        ctx.register_middleware("llm_execution", stream_probe.llm_execution_middleware)
        state_mirror.install(*capture.state_callbacks(), on_aux_usage=capture.on_aux_usage)
        wrappers.flush_before_hard_exit(capture.recorder.flush_at_exit)
    except Exception:
        log.warning("hermetry: could not start telemetry capture", exc_info=True)
        return
    try:
        if settings.get("commands", True) is not False:
            from hermetry.surfaces import hermes_commands

            hermes_commands.register(ctx, mark_synthetic=stream_probe.mark_synthetic)
    except Exception:
        log.debug("hermetry: commands not registered", exc_info=True)


# -- the backfill source into the store (``hermetry import``) ----------------------------------


class ImportRefused(Exception):
    """A state.db cannot be imported (missing, locked, corrupt, not Hermes'); nothing was written."""


def _valid_hooks() -> frozenset[str]:
    """The hook names this Hermes offers (hooks only newer Hermes has are used when present)."""
    import sys

    plugins = sys.modules.get("hermes_cli.plugins")
    hooks = getattr(plugins, "VALID_HOOKS", None) if plugins is not None else None
    try:
        return frozenset(h for h in hooks if isinstance(h, str)) if hooks else frozenset()
    except TypeError:
        return frozenset()


def import_history(home: Path, db: Path | str, *, all_profiles: bool = False,
                   progress: Progress | None = None) -> list[ImportResult]:
    """Hermes' ``state.db`` history (and with ``all_profiles`` every profile's) into ``db``."""
    from hermetry.sources.backfill import BackfillError, import_hermes_home

    try:
        return import_hermes_home(home, db, all_profiles=all_profiles, progress=progress)
    except BackfillError as exc:
        raise ImportRefused(str(exc)) from exc
