"""Small JSON helpers for finding tool calls in text: pure, never raising on bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from hearth.rendering.toolcalls.arguments import normalize_arguments

__all__ = [
    "ARG_KEYS",
    "DepthScan",
    "Header",
    "calls_from_value",
    "partial_suffix",
    "read_header",
    "skip_ws",
]

WS: Final = " \t\n\r"
# Llama-style templates call the arguments "parameters"; accept both spellings.
ARG_KEYS: Final = ("arguments", "parameters")

Call = tuple[str, str]


def skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in WS:
        pos += 1
    return pos


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`: what to hold back."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


class DepthScan:
    """Finds where a JSON value ends by tracking strings, escapes and bracket depth (no validation).

    Resumable: `run` continues from where the previous call stopped, so scanning a growing buffer stays
    linear. Positions are indices into the buffer passed to `run`, which must only grow at the end.
    """

    __slots__ = ("depth", "escape", "in_string", "pos", "start")

    def __init__(self, start: int, depth: int = 0) -> None:
        self.start = start
        self.pos = start
        self.depth = depth
        self.in_string = False
        self.escape = False

    def run(self, text: str, stop: str = "") -> tuple[Literal["more", "end", "stop"], int]:
        """("end", i): depth returned to 0 just before i. ("stop", i): `stop` begins at i outside a string
        (a close tag inside an unfinished object). ("more", i): the text ran out."""
        i, n = self.pos, len(text)
        while i < n:
            c = text[i]
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif c == "\\":
                    self.escape = True
                elif c == '"':
                    self.in_string = False
            elif c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth <= 0:
                    self.pos = i + 1
                    return "end", i + 1
            elif stop and c == stop[0]:
                if text.startswith(stop, i):
                    self.pos = i
                    return "stop", i
                if stop.startswith(text[i:]):
                    self.pos = i  # maybe the start of `stop`: look again when more text arrives
                    return "more", i
            i += 1
        self.pos = i
        return "more", i


class _Need(Exception):
    """The text ends before the answer is known."""


class _Cursor:
    __slots__ = ("pos", "text")

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def peek(self) -> str:
        self.pos = skip_ws(self.text, self.pos)
        if self.pos >= len(self.text):
            raise _Need
        return self.text[self.pos]

    def take(self, ch: str) -> bool:
        if self.peek() != ch:
            return False
        self.pos += 1
        return True

    def string(self) -> str | None:
        """The next JSON string token decoded, or None if the next token is not a string."""
        if self.peek() != '"':
            return None
        text, i = self.text, self.pos + 1
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                token, self.pos = text[self.pos : i + 1], i + 1
                try:
                    value = json.loads(token, strict=False)
                except ValueError:
                    return None
                return value if isinstance(value, str) else None
            i += 1
        raise _Need


@dataclass(frozen=True, slots=True)
class Header:
    """How the start of a call object reads.

    status: "need" (text ends too early), "fail" (cannot be a call to a known tool), "commit" (the
    object starts ``{"name": <known>, "arguments": {`` so it can stream; `end` is the index of that
    ``{``), "buffer" (may still be a call, but only the whole object can tell).
    `first_key` is the object's first key once read.
    """

    status: Literal["need", "fail", "commit", "buffer"]
    first_key: str | None = None
    name: str = ""
    end: int = 0


def read_header(text: str, pos: int, names: frozenset[str]) -> Header:
    cur = _Cursor(text, pos)
    first: str | None = None
    try:
        if not cur.take("{"):
            return Header("fail")
        first = cur.string()
        if first is None:
            return Header("fail")
        if first != "name":
            return Header("buffer", first)
        if not cur.take(":"):
            return Header("fail", first)
        name = cur.string()
        if name is None or name not in names:
            return Header("fail", first)
        # From here on anything unexpected may still parse as a call ("arguments" as a string, extra
        # keys): let the whole object decide.
        if not cur.take(",") or cur.string() not in ARG_KEYS or not cur.take(":") or cur.peek() != "{":
            return Header("buffer", first)
        return Header("commit", first, name, cur.pos)
    except _Need:
        return Header("need", first)


def _split(text: str, opener: str, closer: str, members: bool) -> list[tuple[Any, str, str]] | None:
    """Split a JSON object or array into (key, value, value's exact text) triples ("" keys for arrays).

    None unless `text` is exactly one such container. The raw value text is kept because arguments
    must be passed on as generated, not re-serialized.
    """
    decoder = json.JSONDecoder(strict=False)
    i = skip_ws(text, 0)
    if text[i : i + 1] != opener:
        return None
    i = skip_ws(text, i + 1)
    out: list[tuple[Any, str, str]] = []
    if text[i : i + 1] == closer:
        return out if skip_ws(text, i + 1) == len(text) else None
    while True:
        key: Any = ""
        try:
            if members:
                key, i = decoder.raw_decode(text, i)
                i = skip_ws(text, i)
                if not isinstance(key, str) or text[i : i + 1] != ":":
                    return None
                i = skip_ws(text, i + 1)
            value, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            return None
        out.append((key, value, text[i:end]))
        i = skip_ws(text, end)
        sep = text[i : i + 1]
        if sep == closer:
            return out if skip_ws(text, i + 1) == len(text) else None
        if sep != ",":
            return None
        i = skip_ws(text, i + 1)


def call_from_object(text: str, names: frozenset[str]) -> Call | None:
    """(name, arguments JSON) if `text` is one JSON object calling a known tool, else None.

    Missing or null arguments become "{}"; arguments given as a JSON string holding an object are
    decoded once. Anything else (unknown name, arguments that are not an object) is not a call.
    """
    split = _split(text, "{", "}", members=True)
    if split is None:
        return None
    members = {key: (value, raw) for key, value, raw in split}
    name = members.get("name", (None, ""))[0]
    if not isinstance(name, str) or name not in names:
        return None
    value, raw = next((members[k] for k in ARG_KEYS if k in members), (None, ""))
    if value is None or value == "":
        return name, "{}"
    if isinstance(value, str):
        args = normalize_arguments(value)
    elif isinstance(value, dict):
        args = normalize_arguments(raw)
    else:
        return None
    return None if args is None else (name, args)


def calls_from_value(text: str, names: frozenset[str]) -> list[Call] | None:
    """Calls from one JSON object or a non-empty list of them; None unless every element is a call."""
    if text.lstrip(WS).startswith("{"):
        call = call_from_object(text, names)
        return None if call is None else [call]
    split = _split(text, "[", "]", members=False)
    if not split:
        return None
    calls = [call_from_object(raw, names) for _, _, raw in split]
    return None if any(c is None for c in calls) else [c for c in calls if c is not None]
