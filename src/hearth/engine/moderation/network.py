"""The shipped network: an averaged ensemble of one-hidden-layer nets, evaluated with numpy only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hearth.engine.moderation.categories import CATEGORIES

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Network:
    """p = mean over members k of sigmoid(relu(x W1_k + b1_k) W2_k + b2_k), one column per category.

    w1: (features, members * hidden), b1: (members * hidden,), w2: (members, hidden, 13),
    b2: (members, 13), thresholds: (13,) defaults, all in `CATEGORIES` order.
    """

    w1: F32
    b1: F32
    w2: F32
    b2: F32
    thresholds: F32

    def probabilities(self, x: F32) -> F32:
        members, hidden, _ = self.w2.shape
        h = np.maximum(x.astype(np.float32) @ self.w1 + self.b1, 0.0).reshape(len(x), members, hidden)
        z = np.einsum("nkh,khc->nkc", h, self.w2) + self.b2
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
        out: F32 = p.mean(axis=1).astype(np.float32)
        return out

    def save(self, path: str | Path, **meta: str | float) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        extra = {f"meta_{k}": np.array(v) for k, v in meta.items()}
        with Path(path).open("wb") as f:
            np.savez_compressed(f, categories=np.array(CATEGORIES), w1=self.w1, b1=self.b1, w2=self.w2,
                                b2=self.b2, thresholds=self.thresholds, **extra)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> tuple[Network, dict[str, str]]:
        """The network and its metadata (as strings: embedder_id, seed, train_sha256, ...)."""
        with np.load(path, allow_pickle=False) as z:
            cats = tuple(str(c) for c in z["categories"])
            if cats != CATEGORIES:
                raise ValueError(f"{path}: categories {cats} do not match {CATEGORIES}")
            net = cls(w1=z["w1"].astype(np.float32), b1=z["b1"].astype(np.float32),
                      w2=z["w2"].astype(np.float32), b2=z["b2"].astype(np.float32),
                      thresholds=z["thresholds"].astype(np.float32))
            meta = {k[len("meta_"):]: str(z[k]) for k in z.files if k.startswith("meta_")}
        return net, meta
