"""Precision, recall and F1 of moderation flags against labels: per category, micro, and binary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hearth.engine.moderation.categories import CATEGORIES

Flags = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn


def prf(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> PRF:
    return PRF(tp=int(np.sum(pred & truth)), fp=int(np.sum(pred & ~truth)), fn=int(np.sum(~pred & truth)))


@dataclass(frozen=True, slots=True)
class Report:
    per_category: dict[str, PRF]
    micro: PRF  # over all (text, category) pairs
    binary: PRF  # flagged (any category) vs. labelled harmful (any category)
    lookalike_fp_rate: float | None  # share of benign look-alikes flagged (None: none in the set)
    lookalikes: int

    def as_dict(self) -> dict[str, object]:
        def d(m: PRF) -> dict[str, float | int]:
            return {"precision": round(m.precision, 4), "recall": round(m.recall, 4), "f1": round(m.f1, 4),
                    "support": m.support, "tp": m.tp, "fp": m.fp, "fn": m.fn}

        return {"per_category": {c: d(m) for c, m in self.per_category.items()}, "micro": d(self.micro),
                "binary": d(self.binary), "lookalike_fp_rate": self.lookalike_fp_rate,
                "lookalikes": self.lookalikes}


def report(pred: Flags, truth: Flags, lookalike: npt.NDArray[np.bool_] | None = None) -> Report:
    """`pred` and `truth` are (texts, 13) in `CATEGORIES` order; `lookalike` marks benign look-alikes."""
    per = {c: prf(pred[:, i], truth[:, i]) for i, c in enumerate(CATEGORIES)}
    any_pred, any_truth = pred.any(axis=1), truth.any(axis=1)
    n_look = int(lookalike.sum()) if lookalike is not None else 0
    rate = float(any_pred[lookalike].mean()) if lookalike is not None and n_look else None
    return Report(per_category=per, micro=prf(pred.ravel(), truth.ravel()), binary=prf(any_pred, any_truth),
                  lookalike_fp_rate=rate, lookalikes=n_look)


def format_report(r: Report) -> str:
    lines = [f"{'category':24s} {'prec':>6s} {'recall':>6s} {'f1':>6s} {'support':>7s}"]
    rows = [*r.per_category.items(), ("micro (all categories)", r.micro), ("binary (flagged)", r.binary)]
    for name, m in rows:
        if name == "micro (all categories)":
            lines.append("-" * 53)
        lines.append(f"{name:24s} {m.precision:6.3f} {m.recall:6.3f} {m.f1:6.3f} {m.support:7d}")
    if r.lookalike_fp_rate is not None:
        lines.append(f"benign look-alikes flagged: {r.lookalike_fp_rate:.1%} of {r.lookalikes}")
    return "\n".join(lines)
