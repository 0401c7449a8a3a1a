"""Deprecated alias of :mod:`hermetry.plugin` (the composition root), kept for one release for
anything that still names the old entry point ``hermetry.sources.hermes.plugin``."""

from hermetry.plugin import HARD_EXIT_FLUSH_S, get_capture, register

__all__ = ["HARD_EXIT_FLUSH_S", "get_capture", "register"]
