"""Test helpers for hermetry: a scripted OpenAI-compatible model server to drive real Hermes runs,
``capture_events()`` and ``InMemorySink`` to assert on what was recorded without SQL, and
``rows()`` to read a telemetry file."""

from hermetry.testing.memory import CapturedEvents, InMemorySink, capture_events
from hermetry.testing.query import rows
from hermetry.testing.scripted_server import (
    ScriptedReply,
    ScriptedServer,
    ScriptedToolCall,
    ScriptedUsage,
)

__all__ = ["CapturedEvents", "InMemorySink", "ScriptedReply", "ScriptedServer", "ScriptedToolCall",
           "ScriptedUsage", "capture_events", "rows"]
