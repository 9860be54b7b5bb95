"""Embeddings: llama.cpp (what hearth ships) vs a numpy BERT on all-MiniLM-L6-v2, and the
micro-batcher under concurrent requests. Not a test; prints tables.

    .venv/bin/python bench/embeddings.py [--rounds 5] [--blas-threads 1]

Both engines run on one thread and are measured interleaved (numpy, llama.cpp, numpy, ...) so
that load from other processes on a shared machine hits both alike; medians are reported.
llama.cpp runs the GGUF that hearth converts from the shipped safetensors
(hearth.engine.embedding.convert), with several decode packings (`batch_tokens`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BLAS = sys.argv[sys.argv.index("--blas-threads") + 1] if "--blas-threads" in sys.argv else "1"
os.environ["OPENBLAS_NUM_THREADS"] = BLAS  # read once, when numpy's BLAS loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from numpy_bert import NumpyEmbedder

from hearth.engine.embedding import EmbeddingBatcher, LlamaEmbedder, default_model_dir, load_default_embedder
from hearth.engine.embedding.convert import prepared_gguf

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
         "bright", "stars", "shine", "above", "quiet", "green", "hills", "and", "rivers", "flow",
         "toward", "distant", "cities", "full", "of", "people", "reading", "books", "about",
         "music")
BATCHES = ((1, 40), (32, 8), (256, 3))  # (batch size, rounds at --rounds 5)


def sentences(n: int, words: int = 12) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, words)).capitalize() + "." for _ in range(n)]


def compare(engines: dict[str, object], rounds_scale: float) -> None:
    toks = NumpyEmbedder.tokenize  # same ids for both (checked equal for these sentences)
    print(f"{'engine':<24}" + "".join(f"{f'b={b} texts/s':>16}" for b, _ in BATCHES) + f"{'b=1 ms':>10}")
    results: dict[str, dict[int, float]] = {k: {} for k in engines}
    for b, rounds in BATCHES:
        lists = [toks(engines["numpy"], s) for s in sentences(b)]  # type: ignore[arg-type]
        times: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(max(1, round(rounds * rounds_scale))):
            for name, e in engines.items():
                t = time.perf_counter()
                e.embed_tokens(lists)  # type: ignore[attr-defined]
                times[name].append(time.perf_counter() - t)
        for name in engines:
            results[name][b] = statistics.median(times[name])
    for name in engines:
        r = results[name]
        print(f"{name:<24}" + "".join(f"{b / r[b]:>16.1f}" for b, _ in BATCHES) + f"{r[1] * 1000:>10.1f}")


async def batcher_round(e: LlamaEmbedder, max_merge: int, n: int = 16, rounds: int = 5) -> tuple[float, float]:
    """n concurrent one-sentence requests: best wall time of a round, and its mean request latency."""
    b = EmbeddingBatcher(e, max_merge=max_merge)
    lists = [e.tokenize(s) for s in sentences(n)]
    await b.embed_tokens(lists[:2])
    best = (float("inf"), 0.0)
    for _ in range(rounds):
        t0 = time.perf_counter()

        async def one(ids: list[int], t0: float = t0) -> float:
            await b.embed_tokens([ids])
            return time.perf_counter() - t0

        lat = await asyncio.gather(*(one(ids) for ids in lists))
        best = min(best, (time.perf_counter() - t0, statistics.mean(lat)))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=float, default=5, help="scales the rounds per batch size (5: 40/8/3)")
    ap.add_argument("--blas-threads", default="1", help="OpenBLAS threads of the numpy engine")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    ap.add_argument("--batch-tokens", type=int, nargs="+", default=[64, 128, 256])
    args = ap.parse_args()
    scale = args.rounds / 5
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = prepared_gguf(default_model_dir(), Path(tmp), "all-minilm-l6-v2")
        print(f"GGUF conversion: {time.perf_counter() - t:.2f} s ({path.stat().st_size / 1e6:.0f} MB)")
        engines: dict[str, object] = {"numpy": NumpyEmbedder(default_model_dir())}
        for bt in args.batch_tokens:
            engines[f"llama.cpp batch_tokens={bt}"] = LlamaEmbedder(
                path, max_tokens=256, threads=args.threads, batch_tokens=bt)
        probe = [engines["numpy"].tokenize(s) for s in sentences(8)]  # type: ignore[attr-defined]
        ref = engines["numpy"].embed_tokens(probe)  # type: ignore[attr-defined]
        got = engines[f"llama.cpp batch_tokens={args.batch_tokens[0]}"].embed_tokens(probe)  # type: ignore[attr-defined]
        print(f"blas threads {BLAS}, llama.cpp threads {args.threads}; "
              f"cosine llama.cpp vs numpy: min {float((ref * got).sum(axis=1).min()):.6f}")
        compare(engines, scale)
    e = load_default_embedder(threads=args.threads)
    for m in (1, 256):
        wall, lat = asyncio.run(batcher_round(e, m))
        label = "one call each" if m == 1 else "micro-batched"
        print(f"16 concurrent requests, {label}: round {wall * 1000:.0f} ms, mean latency {lat * 1000:.0f} ms")


if __name__ == "__main__":
    main()
