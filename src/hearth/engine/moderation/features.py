"""What the classifier reads: a sentence embedding and an insult/profanity probability per window.

Long texts are cut into sentences (run-on ones into overlapping word windows), each short enough
for the embedding model; a text scores the maximum over its pieces, so one bad sentence in a long
page still counts.
Training and serving use this same code, so the features cannot drift apart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hearth.engine.embedding import Embedder, load_default_embedder

Matrix = npt.NDArray[np.float32]
ProfanityFn = Callable[[list[str]], npt.NDArray[np.float64]]

WINDOW_WORDS = 64  # ~90 WordPiece tokens: within the length MiniLM was trained on (128)
WINDOW_STRIDE = 48
MIN_SENTENCE_WORDS = 6  # shorter sentences join the next one: alone they carry too little context
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def windows(text: str, size: int = WINDOW_WORDS, stride: int = WINDOW_STRIDE) -> list[str]:
    """The pieces of `text` that are scored: the text itself when it has at most `size` words;
    otherwise its sentences (what the classifier was trained on, so one bad sentence is not
    diluted by the page around it), with very short ones joined to the next and run-on ones cut
    into overlapping word windows. Never empty; every word is in some piece."""
    if len(text.split()) <= size:
        return [text]
    out: list[str] = []
    pending: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = pending + sentence.split()
        if len(words) < MIN_SENTENCE_WORDS:
            pending = words
            continue
        pending = []
        if len(words) <= size:
            out.append(" ".join(words))
            continue
        starts = list(range(0, len(words) - size + 1, stride))
        if starts[-1] + size < len(words):
            starts.append(len(words) - size)
        out += [" ".join(words[s:s + size]) for s in starts]
    if pending:
        out.append(" ".join(pending))
    return out


def load_profanity() -> ProfanityFn:
    """alt-profanity-check's trained linear model (imports scikit-learn; it loads at import time)."""
    from profanity_check import predict_prob

    def fn(texts: list[str]) -> npt.NDArray[np.float64]:
        return np.asarray(predict_prob(texts), dtype=np.float64)

    return fn


@dataclass(slots=True)
class Windows:
    """Feature rows of every window, and for each row the index of the text it came from."""

    x: Matrix
    owner: npt.NDArray[np.int64]


class Featurizer:
    """Turns texts into feature rows: [embedding (dims) | profanity probability].

    The embedder and the profanity model load on first use (a second or two), once, under a lock.
    """

    def __init__(self, embedder: Callable[[], Embedder] = load_default_embedder,
                 profanity: Callable[[], ProfanityFn] = load_profanity) -> None:
        self._load_embedder, self._load_profanity = embedder, profanity
        self._embedder: Embedder | None = None
        self._profanity: ProfanityFn | None = None
        self._lock = threading.Lock()

    def _models(self) -> tuple[Embedder, ProfanityFn]:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._load_embedder()
            if self._profanity is None:
                self._profanity = self._load_profanity()
            return self._embedder, self._profanity

    @property
    def embedder_id(self) -> str:
        return self._models()[0].model_id

    def count_tokens(self, texts: list[str]) -> int:
        embedder, _ = self._models()
        return sum(len(embedder.tokenize(t)) for t in texts)

    def rows(self, texts: list[str]) -> Matrix:
        """One row per text, which must fit one window (training data: short lines)."""
        w = self.windows(texts)
        if len(w.owner) != len(texts):
            raise ValueError("rows() takes texts of at most one window each; use windows()")
        return w.x

    def windows(self, texts: list[str]) -> Windows:
        embedder, profanity = self._models()
        pieces: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            for w in windows(t):
                pieces.append(w)
                owner.append(i)
        lists = [_fit(embedder.tokenize(p), embedder.max_tokens) for p in pieces]
        emb = embedder.embed_tokens(lists) if pieces else np.zeros((0, embedder.dimensions), np.float32)
        prof = profanity(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
        x = np.concatenate([emb.astype(np.float32), prof[:, None]], axis=1)
        return Windows(x=x, owner=np.asarray(owner, dtype=np.int64))


def _fit(ids: list[int], max_tokens: int) -> list[int]:
    """A window of unusually long words can exceed the model's length: keep its head and end token."""
    if not ids:
        return ids
    return ids if len(ids) <= max_tokens else ids[:max_tokens - 1] + ids[-1:]
