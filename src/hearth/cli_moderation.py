"""`hearth moderation ...`: train the moderation classifier from the shipped labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

moderation_app = typer.Typer(help="The /v1/moderations classifier.", no_args_is_help=True)
err = Console(stderr=True)


@moderation_app.command("train")
def train(
    data: Annotated[Path | None, typer.Option(help="Labelled JSONL (default: the shipped train.jsonl)")] = None,
    out: Annotated[Path | None, typer.Option(help="Weights file to write (default: the shipped weights.npz)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the validation split and the networks")] = 0,
    limit: Annotated[int | None, typer.Option(help="Train on the first N lines only (quick checks)")] = None,
) -> None:
    """Embed the training set, fit the classifier with a fixed seed and write its weights."""
    from hearth.engine.moderation.dataset import data_path
    from hearth.engine.moderation.train import TrainConfig, train_file

    src = data or data_path("train.jsonl")
    dst = out or data_path("weights.npz")
    try:
        t = train_file(src, dst, TrainConfig(seed=seed), limit=limit)
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    err.print(f"trained on {t.examples} examples from {src}")
    for cat, f1 in t.val_f1.items():
        err.print(f"  validation F1 {cat:24s} {f1:.3f}")
    err.print(f"  validation micro F1 {t.val_micro_f1:.3f}; thresholds and weights written to {dst}")
