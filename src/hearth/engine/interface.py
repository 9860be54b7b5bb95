"""The narrow interface every inference backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from hearth.engine.types import Delta, EngineMetrics, GenerationRequest, ModelInfo


@runtime_checkable
class Engine(Protocol):
    """One loaded model.

    Guarantees:
    - `generate` yields Deltas for one sequence; the last one has `finish_reason` set and carries
      the final token counts. Cancelling the consuming task (or calling `abort`) frees the
      sequence within one decode step.
    - `tokenize` uses the model's own tokenizer, so usage counts are exact.
    - Concurrent `generate` calls are all served (queued or batched); none corrupts another.
    """

    info: ModelInfo

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]: ...

    async def abort(self, request_id: str) -> None: ...

    def health(self) -> bool: ...

    def metrics(self) -> EngineMetrics:
        """A cheap, non-blocking snapshot for the metrics scrape; safe to call from the event loop."""
        ...
