"""Recognising a reply that is, apart from whitespace, one bare or fenced JSON value of tool calls."""

from __future__ import annotations

from typing import Final, Literal

from hearth.rendering.toolcalls.jsonscan import ARG_KEYS, DepthScan, calls_from_value, read_header, skip_ws

__all__ = ["WholeReply"]

_FENCE: Final = "```"
_FENCE_LANGS: Final = ("", "json")
# Blank lines and a language name fit in this; more text before the JSON means it is not a bare fence.
_MAX_FENCE_HEAD: Final = 32
_FIRST_KEYS: Final = ("name", *ARG_KEYS)

Progress = Literal["need", "fail", "complete"]


class WholeReply:
    """Decide, as the reply grows, whether it is only ``{call}``, ``[{call}, ...]`` or a ```json fence
    around one of those.

    `check` is given the whole reply so far each time (it only grows at the end) and keeps its place,
    so the work stays linear. It answers "fail" as soon as the prefix rules the form out (a first key
    other than name/arguments, an unknown tool name, text after the value), so plain replies are held
    back only briefly; a real candidate is held until the end of output, which alone can confirm it.
    """

    __slots__ = ("_end", "_fenced", "_names", "_scan", "_sniffed", "_start")

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names
        self._start = -1  # index of the JSON value's first character
        self._fenced = False
        self._sniffed = False
        self._scan: DepthScan | None = None
        self._end = -1  # index just past the JSON value

    def check(self, text: str, eof: bool) -> list[tuple[str, str]] | Literal["need", "fail"]:
        progress = self._progress(text)
        if progress == "fail" or (eof and progress == "need"):
            return "fail"
        if not eof:
            return "need"
        calls = calls_from_value(text[self._start : self._end], self._names)
        return calls if calls else "fail"

    def _progress(self, text: str) -> Progress:
        if self._start < 0:
            found = self._find_start(text)
            if found != "complete":
                return found
        if not self._sniffed:
            sniffed = self._sniff(text)
            if sniffed != "complete":
                return sniffed
        if self._end < 0:
            assert self._scan is not None
            kind, end = self._scan.run(text)
            if kind != "end":
                return "need"
            self._end = end
        return self._tail(text)

    def _find_start(self, text: str) -> Progress:
        p = skip_ws(text, 0)
        if p == len(text):
            return "need"
        if text[p] in "{[":
            self._start = p
        elif not text.startswith(_FENCE, p):
            return "need" if _FENCE.startswith(text[p:]) else "fail"
        else:
            q = j = p + len(_FENCE)
            while j < len(text) and text[j] not in "{[":
                j += 1
            lang = text[q:j].strip().lower()
            if j - q > _MAX_FENCE_HEAD or not "json".startswith(lang):
                return "fail"
            if j == len(text):
                return "need"
            if lang not in _FENCE_LANGS:
                return "fail"
            self._start, self._fenced = j, True
        self._scan = DepthScan(self._start)
        return "complete"

    def _sniff(self, text: str) -> Progress:
        p = self._start
        if text[p] == "[":
            p = skip_ws(text, p + 1)
            if p == len(text):
                return "need"
            if text[p] != "{":
                return "fail"
        header = read_header(text, p, self._names)
        if header.status == "fail" or (header.first_key is not None and header.first_key not in _FIRST_KEYS):
            return "fail"
        # With "name" first, wait until read_header has checked the name against the known tools.
        if header.status == "need" and header.first_key in (None, "name"):
            return "need"
        self._sniffed = True
        return "complete"

    def _tail(self, text: str) -> Progress:
        p = skip_ws(text, self._end)
        if self._fenced:
            seg = text[p : p + len(_FENCE)]
            if not _FENCE.startswith(seg):
                return "fail"
            if len(seg) < len(_FENCE):
                return "need"
            p = skip_ws(text, p + len(_FENCE))
        return "complete" if p == len(text) else "fail"
