"""What the tool-call parser emits: plain text, the start of a call, and pieces of its arguments."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CallArgs", "CallStart", "Event", "TextEvent", "merge_events"]


@dataclass(frozen=True, slots=True)
class TextEvent:
    """Reply text that is not part of a tool call (the message's `content`)."""

    text: str


@dataclass(frozen=True, slots=True)
class CallStart:
    """A tool call begins. `index` counts calls from 0 in output order."""

    index: int
    name: str


@dataclass(frozen=True, slots=True)
class CallArgs:
    """A piece of the JSON text of call `index`'s arguments; the pieces concatenate to a JSON object."""

    index: int
    fragment: str


Event = TextEvent | CallStart | CallArgs


def merge_events(events: Iterable[Event]) -> list[Event]:
    """Join adjacent TextEvents and adjacent CallArgs of the same call.

    Streaming and one-shot parsing of the same output give the same list after this.
    """
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, TextEvent) and isinstance(last, TextEvent):
            out[-1] = TextEvent(last.text + event.text)
        elif isinstance(event, CallArgs) and isinstance(last, CallArgs) and last.index == event.index:
            out[-1] = CallArgs(event.index, last.fragment + event.fragment)
        else:
            out.append(event)
    return out
