"""The narrow interface of a text moderation classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Classification:
    """One input's verdict: a score in [0, 1] and a flag for every category of `CATEGORIES`."""

    scores: dict[str, float]
    flags: dict[str, bool]

    @property
    def flagged(self) -> bool:
        return any(self.flags.values())


@runtime_checkable
class Moderator(Protocol):
    """A loaded moderation model.

    Guarantees:
    - `classify(texts)` returns one Classification per text, in order; each has all 13
      categories; a parent category's score is never below its subcategories' scores.
    - The result for a text does not depend on the other texts of the call.
    - Calls are synchronous and CPU-bound (the first may also load the model): callers run them
      off the event loop, one at a time.
    """

    model_id: str

    def classify(self, texts: list[str]) -> list[Classification]: ...

    def count_tokens(self, texts: list[str]) -> int:
        """Input tokens as the classifier's model counts them (for usage records and limits)."""
        ...
