"""Incremental tool-call parsing of model output, identical for streaming and one-shot use."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from hearth.rendering.toolcalls.arguments import ArgumentsScanner
from hearth.rendering.toolcalls.events import CallArgs, CallStart, Event, TextEvent
from hearth.rendering.toolcalls.jsonscan import (
    DepthScan,
    call_from_object,
    partial_suffix,
    read_header,
    skip_ws,
)
from hearth.rendering.toolcalls.profiles import get_profile
from hearth.rendering.toolcalls.whole import WholeReply

__all__ = ["ToolCallParser", "parse_all"]


class _Mode(enum.Enum):
    START = enum.auto()  # nothing but whitespace yet
    WHOLE = enum.auto()  # the reply may be one bare or fenced JSON value of calls
    TEXT = enum.auto()  # free text, watching for the open tag
    PLAIN = enum.auto()  # free text with nothing left to look for
    HEADER = enum.auto()  # after an open tag: reading `{"name": ..., "arguments": `
    BUFFERED = enum.auto()  # a block that cannot stream: wait for its object to close
    ARGS = enum.auto()  # streaming a committed call's arguments
    REST = enum.auto()  # after the arguments value: "}" or more members
    SKIP = enum.auto()  # skipping further members of the call object
    AFTER = enum.auto()  # after the call object: an optional close tag
    DISCARD = enum.auto()  # after broken arguments: drop the rest of the block


class ToolCallParser:
    """Split model output into text and tool calls, chunk by chunk.

    `names` are the tools offered to the model; `profile` is "hermes" (``<tool_call>{json}</tool_call>``
    blocks in free text) or "json" (no markers). Both also take a reply that is, apart from whitespace,
    a bare JSON object ``{"name": ..., "arguments": ...}``, a list of them, or either inside a ```json
    fence.

    Guarantees:
    (a) For any split of an output into chunks, the events of feed(c1), feed(c2), ..., finish() are the
        same after `merge_events` as those of feed(whole), finish(): streaming and one-shot agree.
    (b) Each call is a CallStart (indices 0, 1, ... in output order) followed, before any other event,
        by CallArgs fragments that concatenate to the JSON text of an object: the arguments exactly as
        generated, except that arguments given as a JSON string are decoded once, missing or null
        arguments are "{}", raw control characters in strings are escaped, and arguments that break off
        or turn invalid after the call was announced are closed at the last valid point.
    (c) Text is released as soon as it cannot belong to a call. Held back are: a trailing partial open
        tag (``"<tool"``); a whole block from its open tag until it is decided; whitespace right after a
        call (dropped if the output ends or another call follows); and a reply that starts, after
        whitespace, with ``{``, ``[`` or a fence, until the whole-reply form is ruled out or confirmed.
    (d) Model output never makes it raise. A block whose JSON does not parse, names an unknown tool, or
        whose arguments are not an object is plain text, tag included, and scanning resumes just after
        its open tag. A hermes call whose header ``{"name": <known tool>, "arguments": {`` has been read
        is committed (it is streaming); if the rest is malformed its arguments are repaired as in (b)
        and the remainder of the block, up to ``</tool_call>`` or the next ``<tool_call>``, is dropped.
    """

    __slots__ = (
        "_after_block",
        "_args",
        "_buf",
        "_close",
        "_count",
        "_eof",
        "_events",
        "_mode",
        "_names",
        "_open",
        "_scan",
        "_whole",
        "_ws_before_tag",
    )

    def __init__(self, names: Iterable[str], profile: str = "hermes") -> None:
        spec = get_profile(profile)
        self._names = frozenset(names)
        self._open = spec.open_tag
        self._close = spec.close_tag
        self._buf = ""  # input not yet consumed
        self._eof = False
        self._events: list[Event] = []
        self._mode = _Mode.START
        self._count = 0  # calls started so far
        self._after_block = False
        self._ws_before_tag = ""  # whitespace dropped before an open tag, restored if the block is text
        self._args: ArgumentsScanner | None = None
        self._scan: DepthScan | None = None
        self._whole: WholeReply | None = None

    def feed(self, text: str) -> list[Event]:
        """Add generated text; return the events it completes."""
        if self._eof:
            raise RuntimeError("ToolCallParser.feed() called after finish()")
        self._buf += text
        return self._run()

    def finish(self) -> list[Event]:
        """End of output: release everything still held back."""
        if self._eof:
            return []
        self._eof = True
        return self._run()

    def _run(self) -> list[Event]:
        while self._step():
            pass
        events, self._events = self._events, []
        return events

    def _step(self) -> bool:
        """Advance one state; False once nothing more can be done without more input."""
        match self._mode:
            case _Mode.START:
                return self._start()
            case _Mode.WHOLE:
                return self._whole_reply()
            case _Mode.TEXT:
                return self._text()
            case _Mode.PLAIN:
                return self._plain()
            case _Mode.HEADER:
                return self._header()
            case _Mode.BUFFERED:
                return self._buffered()
            case _Mode.ARGS:
                return self._arguments()
            case _Mode.REST:
                return self._rest()
            case _Mode.SKIP:
                return self._skip()
            case _Mode.AFTER:
                return self._after()
            case _Mode.DISCARD:
                return self._discard()

    # -- output ------------------------------------------------------------------------------------

    def _emit_text(self, text: str) -> None:
        if not text:
            return
        last = self._events[-1] if self._events else None
        if isinstance(last, TextEvent):
            self._events[-1] = TextEvent(last.text + text)
        else:
            self._events.append(TextEvent(text))

    def _emit_args(self, fragment: str) -> None:
        if not fragment:
            return
        index = self._count - 1
        last = self._events[-1] if self._events else None
        if isinstance(last, CallArgs) and last.index == index:
            self._events[-1] = CallArgs(index, last.fragment + fragment)
        else:
            self._events.append(CallArgs(index, fragment))

    def _start_call(self, name: str) -> None:
        self._events.append(CallStart(self._count, name))
        self._count += 1
        self._ws_before_tag = ""

    def _text_mode(self) -> _Mode:
        return _Mode.TEXT if self._open else _Mode.PLAIN

    # -- free text ---------------------------------------------------------------------------------

    def _start(self) -> bool:
        j = skip_ws(self._buf, 0)
        if j == len(self._buf):
            if not self._eof:
                return False
            self._mode = self._text_mode()
        elif self._buf[j] in "{[`":
            self._whole = WholeReply(self._names)
            self._mode = _Mode.WHOLE
        else:
            self._mode = self._text_mode()
        return True

    def _whole_reply(self) -> bool:
        assert self._whole is not None
        verdict = self._whole.check(self._buf, self._eof)
        if isinstance(verdict, str):
            if verdict == "need":
                return False
            # Not the whole-reply form: read the same text again as free text.
            self._mode = self._text_mode()
            return True
        for name, args in verdict:
            self._start_call(name)
            self._emit_args(args)
        self._buf = ""
        self._mode = _Mode.PLAIN
        return True

    def _plain(self) -> bool:
        text, self._buf = self._buf, ""
        self._emit_text(text)
        return bool(text)

    def _text(self) -> bool:
        buf, tag = self._buf, self._open
        if self._after_block:
            j = skip_ws(buf, 0)
            if buf.startswith(tag, j):
                return self._open_block(buf[:j], j)
            if j == len(buf):
                if self._eof and buf:
                    self._buf = ""  # whitespace after the last call is not content
                    return True
                return False
            if not self._eof and tag.startswith(buf[j:]):
                return False
            self._after_block = False
        i = buf.find(tag)
        if i >= 0:
            self._emit_text(buf[:i])
            return self._open_block("", i)
        keep = 0 if self._eof else partial_suffix(buf, tag)
        out = buf[: len(buf) - keep]
        self._emit_text(out)
        self._buf = buf[len(out) :]
        return bool(out)

    def _open_block(self, whitespace: str, at: int) -> bool:
        self._ws_before_tag = whitespace
        self._after_block = False
        self._buf = self._buf[at + len(self._open) :]
        self._mode = _Mode.HEADER
        return True

    def _fail_block(self) -> bool:
        """The open tag did not start a call: it is text, and scanning resumes right after it."""
        self._emit_text(self._ws_before_tag + self._open)
        self._ws_before_tag = ""
        self._mode = _Mode.TEXT
        return True

    # -- inside a block ----------------------------------------------------------------------------

    def _header(self) -> bool:
        header = read_header(self._buf, 0, self._names)
        if header.status == "fail" or (header.status == "need" and self._eof):
            return self._fail_block()
        if header.status == "need":
            return False
        if header.status == "buffer":
            self._scan = DepthScan(skip_ws(self._buf, 0))
            self._mode = _Mode.BUFFERED
            return True
        self._start_call(header.name)
        self._buf = self._buf[header.end :]
        self._args = ArgumentsScanner()
        self._mode = _Mode.ARGS
        return True

    def _buffered(self) -> bool:
        assert self._scan is not None
        kind, end = self._scan.run(self._buf, self._close)
        if kind == "more" and not self._eof:
            return False
        call = call_from_object(self._buf[self._scan.start : end], self._names) if kind == "end" else None
        if call is None:
            return self._fail_block()
        self._start_call(call[0])
        self._emit_args(call[1])
        self._buf = self._buf[end:]
        self._mode = _Mode.AFTER
        return True

    def _arguments(self) -> bool:
        assert self._args is not None
        if self._buf:
            fragment, used, status = self._args.feed(self._buf)
            self._emit_args(fragment)
            self._buf = self._buf[used:]
            if status != "more":
                self._mode = _Mode.REST if status == "done" else _Mode.DISCARD
            return True
        if not self._eof:
            return False
        self._emit_args(self._args.finish())
        self._mode = _Mode.AFTER
        return True

    def _rest(self) -> bool:
        buf = self._buf
        j = skip_ws(buf, 0)
        if j == len(buf) and not self._eof:
            return False
        if buf[j : j + 1] == ",":
            self._scan = DepthScan(j + 1, depth=1)
            self._mode = _Mode.SKIP
            return True
        # "}" closes the call object; anything else means the model left it unclosed.
        self._buf = buf[j + 1 :] if buf[j : j + 1] == "}" else buf[j:]
        self._mode = _Mode.AFTER
        return True

    def _skip(self) -> bool:
        assert self._scan is not None
        kind, end = self._scan.run(self._buf, self._close)
        if kind == "more" and not self._eof:
            return False
        self._buf = self._buf[end:] if kind != "more" else ""
        self._mode = _Mode.AFTER
        return True

    def _after(self) -> bool:
        buf, tag = self._buf, self._close
        j = skip_ws(buf, 0)
        if buf.startswith(tag, j):
            self._buf = buf[j + len(tag) :]
        elif not self._eof and tag.startswith(buf[j:]):
            return False
        # A missing close tag is accepted: models often stop right after the object.
        self._mode = _Mode.TEXT
        self._after_block = True
        return True

    def _discard(self) -> bool:
        buf = self._buf
        at_close, at_open = buf.find(self._close), buf.find(self._open)
        if at_close >= 0 and (at_open < 0 or at_close < at_open):
            self._buf = buf[at_close + len(self._close) :]
        elif at_open >= 0:
            self._buf = buf[at_open:]
        elif self._eof:
            self._buf = ""
        else:
            keep = max(partial_suffix(buf, self._close), partial_suffix(buf, self._open))
            self._buf = buf[len(buf) - keep :]
            return False
        self._mode = _Mode.TEXT
        self._after_block = True
        return True


def parse_all(
    text: str, names: Iterable[str], profile: str = "hermes"
) -> tuple[str | None, list[tuple[str, str]]]:
    """One-shot parse: (content, or None if empty or whitespace only; [(name, arguments JSON)])."""
    parser = ToolCallParser(names, profile)
    content: list[str] = []
    calls: list[tuple[str, list[str]]] = []
    for event in [*parser.feed(text), *parser.finish()]:
        if isinstance(event, TextEvent):
            content.append(event.text)
        elif isinstance(event, CallStart):
            calls.append((event.name, []))
        else:
            calls[event.index][1].append(event.fragment)
    joined = "".join(content)
    return (joined if joined.strip() else None), [(name, "".join(parts)) for name, parts in calls]
