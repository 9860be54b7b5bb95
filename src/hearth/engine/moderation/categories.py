"""The 13 moderation categories of OpenAI's API, and how they nest."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

# A subcategory is a kind of its parent: a score for `hate/threatening` is also evidence of `hate`,
# so a parent's score is never below its children's (see `consistent`).
PARENT: dict[str, str] = {c: c.split("/")[0] for c in CATEGORIES if "/" in c}


def check_category(name: str) -> str:
    if name not in CATEGORIES:
        raise ValueError(f"unknown moderation category {name!r}; expected one of {', '.join(CATEGORIES)}")
    return name


def consistent(scores: dict[str, float]) -> dict[str, float]:
    """Scores with every parent raised to at least the highest of its subcategories."""
    out = dict(scores)
    for child, parent in PARENT.items():
        out[parent] = max(out[parent], out[child])
    return out


def consistent_matrix(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """`consistent` for a (texts, 13) matrix in `CATEGORIES` order."""
    out = scores.copy()
    for child, parent in PARENT.items():
        i, j = CATEGORIES.index(parent), CATEGORIES.index(child)
        out[:, i] = np.maximum(out[:, i], out[:, j])
    return out
