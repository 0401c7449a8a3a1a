"""Exporter sinks: where the recorder's batches go besides the store (OTLP today).

:func:`exporters_from_settings` is what the composition root calls: it reads the operator's
switches — ``HERMETRY_OTLP=1`` or ``hermetry: {otlp: {enabled: true}}`` in Hermes'
config.yaml — and returns one factory per enabled exporter. It imports nothing heavy: the
OpenTelemetry SDK is loaded by the factory, on the recorder's writer thread. Enabled without the
``hermetry[otlp]`` extra installed, it prints one clear line and returns no exporter.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from hermetry.recorder.sink import Sink

ENV_OTLP = "HERMETRY_OTLP"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

MISSING_EXTRA = ("hermetry: OpenTelemetry export is enabled ({why}) but the OpenTelemetry SDK is not "
                 "installed; install it with: pip install 'hermetry[otlp]'")


def otlp_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    section = (settings or {}).get("otlp")
    return dict(section) if isinstance(section, Mapping) else {}


def otlp_enabled(settings: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(enabled, why): ``HERMETRY_OTLP`` wins over config.yaml in both directions."""
    env = os.environ if env is None else env
    raw = env.get(ENV_OTLP, "").strip().lower()
    if raw in _TRUE:
        return True, f"{ENV_OTLP}={env.get(ENV_OTLP)}"
    if raw in _FALSE:
        return False, f"{ENV_OTLP}={env.get(ENV_OTLP)}"
    enabled = otlp_settings(settings).get("enabled")
    return enabled is True or (isinstance(enabled, str) and enabled.lower() in _TRUE), "hermetry.otlp.enabled"


def sdk_installed() -> bool:
    try:
        return (importlib.util.find_spec("opentelemetry.sdk") is not None
                and importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None)
    except (ImportError, ValueError):
        return False


def exporters_from_settings(settings: Mapping[str, Any] | None = None,
                            env: Mapping[str, str] | None = None) -> list[Callable[[], Sink]]:
    """The exporter factories the operator turned on (``settings`` is the ``hermetry:`` section)."""
    factories: list[Callable[[], Sink]] = []
    enabled, why = otlp_enabled(settings, env)
    if enabled:
        if not sdk_installed():
            try:
                print(MISSING_EXTRA.format(why=why), file=sys.stderr, flush=True)
            except Exception:
                pass
        else:
            from hermetry.sinks.otlp import sink_factory

            factories.append(sink_factory(otlp_settings(settings)))
    return factories
