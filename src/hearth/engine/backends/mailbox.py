"""Hand-off of deltas from the compute thread to one asyncio consumer.

A slow consumer gets one merged delta instead of an unbounded queue: the compute thread never
blocks and memory per sequence stays bounded by the text actually generated.
"""

from __future__ import annotations

import asyncio
import threading

from hearth.engine.types import Delta


class Mailbox:
    __slots__ = ("_error", "_event", "_lock", "_loop", "_pending", "_signaled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self._lock = threading.Lock()
        self._pending: Delta | None = None
        self._error: BaseException | None = None
        self._signaled = False

    def put(self, delta: Delta) -> None:
        """Called from the compute thread."""
        with self._lock:
            if self._pending is None:
                self._pending = delta
            else:
                _merge(self._pending, delta)
            self._wake()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if not self._signaled:
            self._signaled = True
            try:
                self._loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:  # loop closed: nobody is listening any more
                pass

    async def get(self) -> Delta:
        while True:
            await self._event.wait()
            with self._lock:
                self._event.clear()
                self._signaled = False
                if self._error is not None:
                    raise self._error
                d, self._pending = self._pending, None
            if d is not None:
                return d


def _merge(into: Delta, d: Delta) -> None:
    into.text += d.text
    into.token_ids.extend(d.token_ids)
    into.logprobs.extend(d.logprobs)
    if d.finish_reason is not None:
        into.finish_reason = d.finish_reason
        into.prompt_tokens = d.prompt_tokens
        into.cached_tokens = d.cached_tokens
        into.completion_tokens = d.completion_tokens
