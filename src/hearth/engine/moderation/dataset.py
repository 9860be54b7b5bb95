"""The labelled JSONL sets shipped in data/: {"text": ..., "labels": [...], "kind": ...} per line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hearth.engine.moderation.categories import CATEGORIES, check_category


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    labels: frozenset[str]
    kind: str = ""  # eval set: "harmful", "lookalike" (benign text with alarming words) or "benign"
    source: str = ""  # training set: "hand" (written out) or "template" (templated variation)
    round: int = 0  # eval set: 1 = used for error analysis while the training set grew; 2 = blind


def data_path(name: str) -> Path:
    """A file of the shipped data directory: train.jsonl, eval.jsonl, weights.npz."""
    return Path(str(resources.files("hearth.engine.moderation") / "data" / name))


def load_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    out: list[Example] = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            text, labels = row.get("text"), row.get("labels")
            if not isinstance(text, str) or not text or not isinstance(labels, list):
                raise ValueError(f"{path}:{n}: expected {{\"text\": str, \"labels\": [str, ...]}}")
            out.append(Example(text, frozenset(check_category(str(c)) for c in labels), str(row.get("kind", "")),
                               str(row.get("source", "")), int(row.get("round", 0))))
            if limit is not None and len(out) >= limit:
                break
    return out


def label_matrix(examples: list[Example]) -> npt.NDArray[np.bool_]:
    """(len(examples), 13) booleans in `CATEGORIES` order."""
    return np.array([[c in e.labels for c in CATEGORIES] for e in examples], dtype=np.bool_).reshape(
        len(examples), len(CATEGORIES))
