"""Training the moderation classifier (`hearth moderation train`).

The model: a small ensemble of one-hidden-layer networks (scikit-learn's MLPClassifier, one
sigmoid output per category, multi-label) over [MiniLM embedding | profanity probability].
Serving needs numpy only: two matrix products, a ReLU and a sigmoid (classifier.py).

Reproducible: the split and every network are seeded and the training data is read in file
order, so the same training set and seed give the same weights. Steps:
1. featurize every training line;
2. hold out half of the hand-written lines (seeded) as validation: templated lines have near
   twins in the rest of the set, so they would make validation look easier than real text;
3. fit on the rest; choose the default thresholds on the held-out part: where each category's
   F1 peaks, then raised (cheapest first) until few benign lines are flagged (`choose_thresholds`);
4. refit on every line and write the weights, thresholds and metadata (data/weights.npz).
Needs scikit-learn (installed with alt-profanity-check); serving does not.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hearth.engine.moderation.categories import CATEGORIES, consistent_matrix
from hearth.engine.moderation.dataset import Example, label_matrix, load_examples
from hearth.engine.moderation.features import Featurizer
from hearth.engine.moderation.metrics import prf
from hearth.engine.moderation.network import Network

log = logging.getLogger("hearth.moderation")

F32 = npt.NDArray[np.float32]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    hidden: int = 32
    members: int = 3  # networks averaged (seeds seed .. seed+members-1): steadier than one
    alpha: float = 1.0  # L2 penalty
    max_iter: int = 300
    val_fraction: float = 0.5  # of the hand-written lines
    threshold_range: tuple[float, float] = (0.3, 0.9)
    # At most this share of the benign validation lines (most of them look-alikes: kill a process,
    # news, sex education) may be flagged in any category: false alarms cost more than F1 says.
    max_benign_fp: float = 0.03


@dataclass(frozen=True, slots=True)
class Trained:
    network: Network
    val_f1: dict[str, float]
    val_micro_f1: float
    examples: int
    sha256: str
    config: TrainConfig = field(default_factory=TrainConfig)


def fit(x: F32, y: Bools, cfg: TrainConfig) -> Network:
    """The ensemble fitted on (x, y), with the feature standardisation folded into layer 1."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    for i, cat in enumerate(CATEGORIES):
        if y[:, i].all() or not y[:, i].any():
            raise ValueError(f"category {cat!r} needs positive and negative examples to train")
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std < 1e-8] = 1.0
    xs = (x - mean) / std
    w1, b1, w2, b2 = [], [], [], []
    for k in range(cfg.members):
        model = MLPClassifier(hidden_layer_sizes=(cfg.hidden,), alpha=cfg.alpha, max_iter=cfg.max_iter,
                              random_state=cfg.seed + k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(xs, y)
        c0, c1 = model.coefs_
        i0, i1 = model.intercepts_
        w1.append(c0 / std[:, None])
        b1.append(i0 - (mean / std) @ c0)
        w2.append(c1)
        b2.append(i1)
    return Network(w1=np.concatenate(w1, axis=1).astype(np.float32), b1=np.concatenate(b1).astype(np.float32),
                   w2=np.stack(w2).astype(np.float32), b2=np.stack(b2).astype(np.float32),
                   thresholds=np.full(len(CATEGORIES), 0.5, np.float32))


def best_threshold(s: npt.NDArray[np.float32], truth: Bools, cfg: TrainConfig) -> float:
    """The threshold with the best validation F1 (the middle of the plateau: flat optima are common)."""
    grid = _grid(cfg)
    f1 = np.array([prf(s >= t, truth).f1 for t in grid])
    return float(np.median(grid[f1 >= f1.max() - 0.005]))


def _grid(cfg: TrainConfig) -> npt.NDArray[np.float64]:
    lo, hi = cfg.threshold_range
    return np.round(np.arange(lo, hi + 1e-9, 0.01), 2)


def choose_thresholds(s: npt.NDArray[np.float32], y: Bools, cfg: TrainConfig) -> F32:
    """Per-category F1-optimal thresholds, then raised where it costs least until at most
    `max_benign_fp` of the benign validation lines are flagged in any category.

    Greedy: each step raises one category's threshold just enough to stop flagging some benign
    line, choosing the category that loses the least micro F1 per benign line cleared.
    """
    grid = _grid(cfg)
    t = np.array([best_threshold(s[:, i], y[:, i], cfg) for i in range(len(CATEGORIES))])
    benign = ~y.any(axis=1)
    if not benign.any():
        return t.astype(np.float32)

    def cost(th: npt.NDArray[np.float64]) -> tuple[float, int]:
        pred = s >= th
        return prf(pred.ravel(), y.ravel()).f1, int(pred[benign].any(axis=1).sum())

    f1, fp = cost(t)
    while fp > cfg.max_benign_fp * benign.sum():
        best: tuple[float, npt.NDArray[np.float64], float, int] | None = None
        for i in range(len(CATEGORIES)):
            for v in grid[grid > t[i] + 1e-9]:  # the smallest raise that clears a false alarm
                cand = t.copy()
                cand[i] = v
                f1_c, fp_c = cost(cand)
                if fp_c < fp:
                    ratio = (f1 - f1_c) / (fp - fp_c)
                    if best is None or ratio < best[0]:
                        best = (ratio, cand, f1_c, fp_c)
                    break
        if best is None:
            break
        _, t, f1, fp = best
    return t.astype(np.float32)


def split(examples: list[Example], cfg: TrainConfig) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(fit, validation) indices: validation is a seeded share of the hand-written lines."""
    hand = np.array([i for i, e in enumerate(examples) if e.source != "template"], dtype=np.int64)
    rng = np.random.default_rng(cfg.seed)
    val = np.sort(rng.permutation(hand)[: round(len(hand) * cfg.val_fraction)])
    return np.setdiff1d(np.arange(len(examples)), val), val


def train(examples: list[Example], featurizer: Featurizer, cfg: TrainConfig, x: F32 | None = None) -> Trained:
    """Fit the network and its default thresholds (x: precomputed feature rows, optional)."""
    y = label_matrix(examples)
    if x is None:
        x = featurizer.rows([e.text for e in examples])
    fit_idx, val = split(examples, cfg)
    s = consistent_matrix(fit(x[fit_idx], y[fit_idx], cfg).probabilities(x[val]))
    thresholds = choose_thresholds(s, y[val], cfg)
    pred = s >= thresholds
    val_f1 = {c: round(prf(pred[:, i], y[val, i]).f1, 4) for i, c in enumerate(CATEGORIES)}
    micro = round(prf(pred.ravel(), y[val].ravel()).f1, 4)
    net = fit(x, y, cfg)
    net = Network(w1=net.w1, b1=net.b1, w2=net.w2, b2=net.b2, thresholds=thresholds)
    digest = hashlib.sha256(
        "\n".join(f"{e.text}\t{','.join(sorted(e.labels))}" for e in examples).encode()).hexdigest()
    return Trained(network=net, val_f1=val_f1, val_micro_f1=micro, examples=len(examples), sha256=digest,
                   config=cfg)


def save(t: Trained, path: str | Path, embedder_id: str) -> None:
    cfg = t.config
    t.network.save(path, embedder_id=embedder_id, seed=cfg.seed, hidden=cfg.hidden, members=cfg.members,
                   alpha=cfg.alpha, examples=t.examples, train_sha256=t.sha256)


def train_file(train_path: str | Path, out_path: str | Path, cfg: TrainConfig, *, limit: int | None = None,
               featurizer: Featurizer | None = None) -> Trained:
    examples = load_examples(train_path, limit)
    feat = featurizer or Featurizer()
    t = train(examples, feat, cfg)
    save(t, out_path, feat.embedder_id)
    log.info("trained on %d examples; validation micro F1 %.3f", t.examples, t.val_micro_f1)
    return t
