"""Best-effort exporters (OTLP, …) that the recorder fans every batch out to.

:func:`exporters_from_settings` is what the composition root (:mod:`hermetry.plugin`) calls to
learn which exporters the operator turned on; each returned factory builds one
:class:`~hermetry.recorder.sink.Sink` on the writer thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hermetry.recorder.sink import Sink


def exporters_from_settings(settings: Mapping[str, Any]) -> list[Callable[[], Sink]]:
    """The exporters ``settings`` (the ``hermetry:`` section of config.yaml) turn on: none yet."""
    return []
