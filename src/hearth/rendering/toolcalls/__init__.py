"""Tool calls in model output: incremental parsing for streaming and one-shot responses.

Use :func:`profile_for_template` to pick a profile from the model's chat template, then feed the
generated text to a :class:`ToolCallParser` (streaming) or call :func:`parse_all` (whole reply).
"""

from __future__ import annotations

from hearth.rendering.toolcalls.events import CallArgs, CallStart, Event, TextEvent, merge_events
from hearth.rendering.toolcalls.parser import ToolCallParser, parse_all
from hearth.rendering.toolcalls.profiles import Profile, get_profile, profile_for_template

__all__ = [
    "CallArgs",
    "CallStart",
    "Event",
    "Profile",
    "TextEvent",
    "ToolCallParser",
    "get_profile",
    "merge_events",
    "parse_all",
    "profile_for_template",
]
