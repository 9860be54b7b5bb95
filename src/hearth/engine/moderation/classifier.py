"""NetworkModerator: the real classifier over [MiniLM embedding | profanity probability].

Serving is numpy only (network.py); scikit-learn runs only inside alt-profanity-check's own
model. Weights are trained by `hearth moderation train` and shipped in data/weights.npz.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hearth.engine.moderation.categories import CATEGORIES, check_category, consistent_matrix
from hearth.engine.moderation.dataset import data_path
from hearth.engine.moderation.features import Featurizer
from hearth.engine.moderation.interface import Classification
from hearth.engine.moderation.network import Network

DEFAULT_MODEL_ID = "hearth-moderation-1"


def check_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    out = {}
    for c, t in thresholds.items():
        if not 0.0 < float(t) <= 1.0:
            raise ValueError(f"moderation threshold for {c!r} must be in (0, 1], got {t}")
        out[check_category(c)] = float(t)
    return out


class NetworkModerator:
    """The real classifier (see `Moderator` for the guarantees).

    `thresholds` overrides the trained defaults per category (a category flags when its score is
    at least its threshold). The weights, the embedding model and the profanity model load on
    the first call, or on `load()`.
    """

    def __init__(self, weights_path: str | Path | None = None, *, thresholds: dict[str, float] | None = None,
                 featurizer: Featurizer | None = None, model_id: str = DEFAULT_MODEL_ID) -> None:
        self.model_id = model_id
        self._path = Path(weights_path) if weights_path is not None else data_path("weights.npz")
        self._overrides = check_thresholds(thresholds or {})
        self._featurizer = featurizer or Featurizer()
        self._network: Network | None = None
        self._lock = threading.Lock()

    def load(self) -> Network:
        with self._lock:
            if self._network is None:
                self._network, _ = Network.load(self._path)
            return self._network

    def thresholds(self) -> dict[str, float]:
        out = {c: float(t) for c, t in zip(CATEGORIES, self.load().thresholds, strict=True)}
        out.update(self._overrides)
        return out

    def scores(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """(len(texts), 13) scores: the maximum over each text's windows, parents >= children."""
        net = self.load()
        win = self._featurizer.windows(texts)
        out = np.zeros((len(texts), len(CATEGORIES)), np.float32)
        np.maximum.at(out, win.owner, net.probabilities(win.x))
        return consistent_matrix(out)

    def count_tokens(self, texts: list[str]) -> int:
        return self._featurizer.count_tokens(texts)

    def classify(self, texts: list[str]) -> list[Classification]:
        if not texts:
            return []
        limits = self.thresholds()
        results = []
        for row in self.scores(texts):
            scores = {c: float(s) for c, s in zip(CATEGORIES, row, strict=True)}
            results.append(Classification(scores=scores, flags={c: scores[c] >= limits[c] for c in CATEGORIES}))
        return results
