"""An incremental, validating scanner for the JSON object of a tool call's arguments."""

from __future__ import annotations

import enum
import re
from typing import Final, Literal

__all__ = ["ArgumentsScanner", "ScanStatus", "normalize_arguments"]

ScanStatus = Literal["more", "done", "error"]

_WS: Final = " \t\n\r"
_SIMPLE_ESCAPES: Final = frozenset('"\\/bfnrt')
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_CONTROL_ESCAPES: Final = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_LITERAL_RESTS: Final = {"t": "rue", "f": "alse", "n": "ull"}
# [0-9], not \d: \d also matches non-ASCII digits, which JSON does not allow.
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Every prefix of a JSON number ("-", "1.", "1e", "1e+"), so a number can be checked as it grows.
_NUMBER_PREFIX: Final = re.compile(r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:(?<=[0-9])[eE][+-]?[0-9]*)?)?")


class _St(enum.Enum):
    START = enum.auto()  # before the opening "{"
    OBJ_FIRST = enum.auto()  # after "{": a key or "}"
    OBJ_KEY = enum.auto()  # after "," in an object: a key
    COLON = enum.auto()  # after a key
    VALUE = enum.auto()  # after ":" or after "," in an array
    ARR_FIRST = enum.auto()  # after "[": a value or "]"
    AFTER = enum.auto()  # after a value inside a container: "," or the closer
    STR = enum.auto()
    ESC = enum.auto()  # after a backslash in a string
    HEX = enum.auto()  # inside \uXXXX
    NUM = enum.auto()
    LIT = enum.auto()  # inside true / false / null
    DONE = enum.auto()  # the object closed, or input was cut at an error


class ArgumentsScanner:
    """Validate a JSON object arriving in pieces and release its text as early as is safe.

    Guarantees:
    - the concatenation of everything `feed` and `finish` return is the text of one valid JSON object,
      whatever the input;
    - that text is the input verbatim, except that raw control characters inside strings are escaped
      (models put literal newlines in code arguments and strict parsers reject them), and that input
      which stops being valid JSON, or ends before the object closes, is cut at the last safe point and
      closed there (a truncated ``{"a": "xy`` becomes ``{"a": "xy"}``);
    - only what follows the last safe point is held back: a key until its value starts, a number or
      literal until it ends, a comma until what follows it, a partial escape sequence;
    - it is pure and iterative (no recursion, so deep nesting cannot overflow the stack), and the
      result does not depend on how the input is split between calls.
    """

    __slots__ = (
        "_close",
        "_hex_left",
        "_in_key",
        "_lit",
        "_num",
        "_out",
        "_pending",
        "_stack",
        "_state",
        "_tail",
    )

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._tail = ""  # the closers for the open containers, innermost first
        self._state = _St.START
        self._pending = ""  # accepted text after the last safe point
        self._out: list[str] = []  # text up to the last safe point, not yet returned
        self._close = "{}"  # what makes the released text valid JSON if input ended now
        self._in_key = False
        self._num = ""
        self._lit = ""
        self._hex_left = 0

    @property
    def done(self) -> bool:
        return self._state is _St.DONE

    def feed(self, text: str) -> tuple[str, int, ScanStatus]:
        """Consume `text`; return (text to release, characters used, status).

        "done": the object closed after `used` characters; the rest is not ours. "error": `text[used]`
        cannot continue the object, and the returned text already includes the repair that closes it.
        """
        if self._state is _St.DONE:
            return "", 0, "done"
        for i, ch in enumerate(text):
            if not self._step(ch):
                self._state = _St.DONE
                return self._drain() + self._close, i, "error"
            if self._state is _St.DONE:
                return self._drain(), i + 1, "done"
        return self._drain(), len(text), "more"

    def finish(self) -> str:
        """End of input: the text that closes a truncated object ("" if it had closed)."""
        if self._state is _St.DONE:
            return ""
        if self._state is _St.NUM and _NUMBER.fullmatch(self._num):
            self._value_done()
        self._state = _St.DONE
        return self._drain() + self._close

    def _drain(self) -> str:
        out = "".join(self._out)
        self._out.clear()
        return out

    def _safe(self, close: str) -> None:
        """Everything accepted so far is releasable; `close` turns it into a whole object."""
        self._out.append(self._pending)
        self._pending = ""
        self._close = close

    def _step(self, ch: str) -> bool:
        st = self._state
        if st is _St.STR:
            return self._string_char(ch)
        if st is _St.ESC:
            return self._escape_char(ch)
        if st is _St.HEX:
            return self._hex_char(ch)
        if st is _St.NUM:
            return self._number_char(ch)
        if st is _St.LIT:
            return self._literal_char(ch)
        if ch in _WS:
            self._pending += ch
            return True
        return self._token(ch)

    def _token(self, ch: str) -> bool:
        st = self._state
        if st is _St.START:
            return ch == "{" and self._open(ch)
        if st is _St.OBJ_FIRST and ch == "}":
            return self._close_container(ch)
        if st in (_St.OBJ_FIRST, _St.OBJ_KEY):
            if ch != '"':
                return False
            self._pending += ch
            self._in_key = True
            self._state = _St.STR
            return True
        if st is _St.COLON:
            if ch != ":":
                return False
            self._pending += ch
            self._state = _St.VALUE
            return True
        if st is _St.ARR_FIRST and ch == "]":
            return self._close_container(ch)
        if st in (_St.VALUE, _St.ARR_FIRST):
            return self._start_value(ch)
        # _St.AFTER: a comma is held back (in pending) until what follows it proves valid.
        if ch == ",":
            self._pending += ch
            self._state = _St.OBJ_KEY if self._stack[-1] == "{" else _St.VALUE
            return True
        if ch == self._tail[0]:
            return self._close_container(ch)
        return False

    def _start_value(self, ch: str) -> bool:
        if ch in "{[":
            return self._open(ch)
        self._pending += ch
        if ch == '"':
            self._in_key = False
            self._state = _St.STR
            self._safe('"' + self._tail)
            return True
        if ch == "-" or "0" <= ch <= "9":
            self._num = ch
            self._state = _St.NUM
            return True
        rest = _LITERAL_RESTS.get(ch)
        if rest is None:
            return False
        self._lit = rest
        self._state = _St.LIT
        return True

    def _open(self, ch: str) -> bool:
        self._stack.append(ch)
        self._tail = ("}" if ch == "{" else "]") + self._tail
        self._pending += ch
        self._state = _St.OBJ_FIRST if ch == "{" else _St.ARR_FIRST
        self._safe(self._tail)
        return True

    def _close_container(self, ch: str) -> bool:
        self._stack.pop()
        self._tail = self._tail[1:]
        self._pending += ch
        if self._stack:
            self._value_done()
        else:
            self._state = _St.DONE
            self._safe("")
        return True

    def _value_done(self) -> None:
        self._state = _St.AFTER
        self._safe(self._tail)

    def _string_content(self, text: str) -> bool:
        self._pending += text
        self._state = _St.STR
        # Inside a value string every character is a safe point; a key is held until its value starts.
        if not self._in_key:
            self._safe('"' + self._tail)
        return True

    def _string_char(self, ch: str) -> bool:
        if ch == '"':
            self._pending += ch
            if self._in_key:
                self._state = _St.COLON
            else:
                self._value_done()
            return True
        if ch == "\\":
            self._pending += ch
            self._state = _St.ESC
            return True
        if ch < " ":
            return self._string_content(_CONTROL_ESCAPES.get(ch) or f"\\u{ord(ch):04x}")
        return self._string_content(ch)

    def _escape_char(self, ch: str) -> bool:
        if ch in _SIMPLE_ESCAPES:
            return self._string_content(ch)
        if ch != "u":
            return False
        self._pending += ch
        self._hex_left = 4
        self._state = _St.HEX
        return True

    def _hex_char(self, ch: str) -> bool:
        if ch not in _HEX:
            return False
        self._hex_left -= 1
        if self._hex_left:
            self._pending += ch
            return True
        return self._string_content(ch)

    def _number_char(self, ch: str) -> bool:
        grown = self._num + ch
        if _NUMBER_PREFIX.fullmatch(grown):
            self._num = grown
            self._pending += ch
            return True
        # The number ended: it must be complete, and `ch` is then judged as what follows a value.
        if not _NUMBER.fullmatch(self._num):
            return False
        self._value_done()
        return self._step(ch)

    def _literal_char(self, ch: str) -> bool:
        if ch != self._lit[0]:
            return False
        self._pending += ch
        self._lit = self._lit[1:]
        if not self._lit:
            self._value_done()
        return True


def normalize_arguments(text: str) -> str | None:
    """`text` as arguments JSON (control characters in strings escaped), or None if it is not exactly
    one valid JSON object apart from surrounding whitespace."""
    body = text.strip(_WS)
    scanner = ArgumentsScanner()
    out, used, status = scanner.feed(body)
    if status != "done" or used != len(body):
        return None
    return out
