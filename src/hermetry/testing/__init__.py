"""Test helpers for hermetry: a scripted OpenAI-compatible model server to drive real Hermes runs,
and ``rows()`` to read what hermetry recorded."""

from hermetry.testing.query import rows
from hermetry.testing.scripted_server import (
    ScriptedReply,
    ScriptedServer,
    ScriptedToolCall,
    ScriptedUsage,
)

__all__ = ["ScriptedReply", "ScriptedServer", "ScriptedToolCall", "ScriptedUsage", "rows"]
