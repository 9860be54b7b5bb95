"""Evaluate the moderation classifier on the held-out set: precision, recall and F1 per category,
micro over categories, the flagged/not-flagged binary, and how many benign look-alikes it flags.

    .venv/bin/python bench/moderation_eval.py                 # the shipped eval.jsonl and weights
    .venv/bin/python bench/moderation_eval.py --round 2       # only the blind round
    .venv/bin/python bench/moderation_eval.py --limit 60 --json

The eval set (src/hearth/engine/moderation/data/eval.jsonl) is hand-written apart from the
training set. Round 1 was used for error analysis while the training set grew (training lines
that paraphrased it were then removed); round 2 was written after the training set was frozen and
never used for any decision.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from hearth.engine.moderation import CATEGORIES, NetworkModerator
from hearth.engine.moderation.dataset import data_path, label_matrix, load_examples
from hearth.engine.moderation.metrics import format_report, report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="labelled JSONL (default: shipped eval.jsonl)")
    ap.add_argument("--weights", type=Path, default=None, help="weights.npz (default: shipped)")
    ap.add_argument("--round", type=int, choices=(1, 2), default=None, help="only this round of the eval set")
    ap.add_argument("--limit", type=int, default=None, help="only every k-th line, to about this many lines")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--errors", action="store_true", help="list the misclassified lines")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    examples = load_examples(args.data or data_path("eval.jsonl"))
    if args.round is not None:
        examples = [e for e in examples if e.round == args.round]
    if args.limit is not None and len(examples) > args.limit:
        step = len(examples) / args.limit  # an even slice keeps every kind and category represented
        examples = [examples[int(i * step)] for i in range(args.limit)]
    moderator = NetworkModerator(args.weights)
    started = time.perf_counter()
    scores = moderator.scores([e.text for e in examples])
    elapsed = time.perf_counter() - started
    limits = moderator.thresholds()
    pred = scores >= np.array([limits[c] for c in CATEGORIES], np.float32)
    look = np.array([e.kind == "lookalike" for e in examples])
    r = report(pred, label_matrix(examples), look)
    if args.json:
        print(json.dumps({"examples": len(examples), "seconds": round(elapsed, 2), **r.as_dict()}, indent=1))
    else:
        print(f"{len(examples)} examples, {elapsed:.1f} s\n{format_report(r)}")
    if args.errors:
        for e, row in zip(examples, pred, strict=True):
            got = {c for c, hit in zip(CATEGORIES, row, strict=True) if hit}
            if got != set(e.labels):
                print(f"  [{e.kind}] want={sorted(e.labels)} got={sorted(got)} :: {e.text}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
