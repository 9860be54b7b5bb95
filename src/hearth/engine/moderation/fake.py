"""FakeModerator: a deterministic keyword classifier with no model, shipped for API tests.

Each category fires on its own marker words (a whole-word, case-insensitive match), with score
0.99, and every other category scores 0.01. Markers nest like the real categories: the word
`kill-threat` flags harassment/threatening, hence harassment too.
Every call is recorded in `calls`; `fail` makes the next call raise RuntimeError.
"""

from __future__ import annotations

import re

from hearth.engine.moderation.categories import CATEGORIES, consistent
from hearth.engine.moderation.interface import Classification

MARKERS: dict[str, tuple[str, ...]] = {
    "harassment": ("idiot", "loser"),
    "harassment/threatening": ("kill-threat",),
    "hate": ("hateful",),
    "hate/threatening": ("genocide",),
    "illicit": ("shoplift",),
    "illicit/violent": ("pipebomb",),
    "self-harm": ("selfharm",),
    "self-harm/intent": ("suicidal",),
    "self-harm/instructions": ("howtoselfharm",),
    "sexual": ("explicit",),
    "sexual/minors": ("csam",),
    "violence": ("stab", "punch"),
    "violence/graphic": ("gore",),
}


class FakeModerator:
    def __init__(self, model_id: str = "fake-moderation") -> None:
        self.model_id = model_id
        self.calls: list[list[str]] = []
        self.fail = False

    def classify(self, texts: list[str]) -> list[Classification]:
        self.calls.append(list(texts))
        if self.fail:
            self.fail = False
            raise RuntimeError("injected moderation failure")
        return [self._one(t) for t in texts]

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(t.split()) for t in texts)

    @staticmethod
    def _one(text: str) -> Classification:
        words = set(re.findall(r"[\w-]+", text.lower()))
        scores = {c: 0.99 if words & set(MARKERS[c]) else 0.01 for c in CATEGORIES}
        scores = consistent(scores)
        return Classification(scores=scores, flags={c: s >= 0.5 for c, s in scores.items()})
