"""Greedy outputs alone vs beside 15 others, on the default model (not a test; prints counts).

llama.cpp's batched kernels may round differently from single-sequence ones, so a greedy request
can take another token at a near-tie when it shares a batch. This measures how often that happens,
with `engine.batch_invariant` off (the default) and on, and what the setting costs in throughput.

    .venv/bin/python bench/determinism.py [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from structured import model_path

from hearth.engine.backends.llamacpp import LlamaCppConfig, LlamaCppEngine
from hearth.engine.types import GenerationRequest, SamplingParams

TOPICS = ["the sea", "a robot", "bread", "winter", "a library", "trains", "music", "a garden", "mountains",
          "the moon", "a cat", "coffee", "rivers", "a city at night", "chess", "rain"]


def prompt(topic: str) -> str:
    return (f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"Write a short paragraph about {topic}.<|im_end|>\n<|im_start|>assistant\n")


async def tokens_of(e: LlamaCppEngine, rid: str, p: tuple[int, ...], n: int, seed: int | None) -> list[int]:
    params = SamplingParams(max_tokens=n, temperature=0.0 if seed is None else 0.9, seed=seed)
    out: list[int] = []
    async for d in e.generate(GenerationRequest(rid, p, params)):
        out.extend(d.token_ids)
    return out


async def measure(invariant: bool, n: int, seeded: bool) -> tuple[int, float]:
    e = LlamaCppEngine(LlamaCppConfig("qwen", model_path(), n_ctx=8192, max_seqs=16, n_threads=2,
                                      n_threads_batch=2, batch_invariant=invariant, prefix_cache_entries=0))
    await e.start()
    try:
        prompts = [tuple(e.tokenize(prompt(t))) for t in TOPICS]
        seed = (lambda i: 100 + i) if seeded else (lambda i: None)
        alone = [await tokens_of(e, f"a{i}", p, n, seed(i)) for i, p in enumerate(prompts)]
        t0 = time.perf_counter()
        together = await asyncio.gather(*(tokens_of(e, f"b{i}", p, n, seed(i)) for i, p in enumerate(prompts)))
        rate = sum(map(len, together)) / (time.perf_counter() - t0)
        return sum(a != b for a, b in zip(alone, together, strict=True)), rate
    finally:
        await e.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    print(f"16 requests of {args.tokens} tokens each, run alone one by one, then all 16 at once")
    for seeded in (False, True):
        kind = "seeded, temperature 0.9" if seeded else "greedy"
        for invariant in (False, True):
            differ, rate = await measure(invariant, args.tokens, seeded)
            print(f"  {kind:24s} batch_invariant={invariant!s:5s}  differ {differ:2d}/16   "
                  f"batched throughput {rate:6.1f} tok/s")


if __name__ == "__main__":
    asyncio.run(main())
