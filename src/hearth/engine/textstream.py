"""Turning a stream of token bytes into safe text: whole UTF-8 characters only, stop strings removed.

Pure and synchronous; every backend uses it so that stop handling is identical everywhere.
"""

from __future__ import annotations

import codecs


class TextAssembler:
    """Feed token bytes, get text that is safe to emit.

    Guarantees: emitted text never contains a partial UTF-8 character nor any part of a stop
    string, also when a stop string spans several tokens; after a stop string matched,
    `stopped` is true and nothing more is emitted.
    """

    __slots__ = ("_decoder", "_pending", "_stops", "stopped")

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, data: bytes) -> str:
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        return self._release(final=False)

    def flush(self) -> str:
        """End of generation: release what is held back (a stop-string prefix that never completed)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        text = self._pending
        if not self._stops:
            self._pending = ""
            return text
        cut = -1
        for s in self._stops:
            i = text.find(s)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        if cut != -1:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        if final:
            self._pending = ""
            return text
        hold = _held_suffix(text, self._stops)
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]


def _held_suffix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
