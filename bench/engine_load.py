#!/usr/bin/env python3
"""hearth's llama.cpp engine under concurrent load, without HTTP: where a step's time goes.

Drives `LlamaCppEngine` directly with the same chat prompts as `bench/serve.py`'s cN workload
(greedy, `--max-tokens` each, `--concurrency` streams, `--requests` in all) and prints output
tokens/s, inter-token p50/p95 and TTFT p50 as the engine itself delivers them. Compare with a
`bench/serve.py --workloads cN` run to see what the HTTP side costs, and with
`bench/decode_step.py` for llama.cpp's raw step.

    .venv/bin/python bench/engine_load.py [--concurrency 16] [--requests 32] [--set KEY=VAL ...]

`--set` overrides LlamaCppConfig fields (e.g. `--set prefix_cache_host_mb=0`). With `-v` the
engine logs every step's timings (debug level).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve import SYSTEM, long_prompt, story_prompt


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def default_model_path() -> str:
    hearth = str(Path(sys.executable).parent / "hearth")
    out = subprocess.run([hearth, "models", "path", "qwen2.5-coder-0.5b-instruct"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="GGUF (default: the assembled default model)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VAL")
    p.add_argument("-v", action="store_true", help="log every step (debug)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0: greedy, as bench/serve.py sends; 1 is the API's default (a draw from the "
                   "whole vocabulary)")
    p.add_argument("--history", action="store_true",
                   help="before the measured phase, run what bench/serve.py runs before cN in the same "
                   "server: 3 single-stream stories, 3 ~500-token prompts, then c4 over 8 stories")
    a = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.DEBUG if a.v else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")

    from hearth.config import Settings
    from hearth.engine.backends.llamacpp import LlamaCppConfig, LlamaCppEngine
    from hearth.engine.types import GenerationRequest, SamplingParams
    from hearth.rendering.chat_template import load_chat_template

    path = a.model or await asyncio.to_thread(default_model_path)
    e = Settings().engine  # the server's defaults, so the engine runs as `hearth serve` runs it
    cfg = LlamaCppConfig(model_id="m", path=path, n_ctx=e.n_ctx, n_batch=e.n_batch,
                         idle_step_tokens=e.idle_step_tokens, max_seqs=e.max_seqs,
                         n_threads=0 if e.n_threads == "auto" else e.n_threads, n_threads_batch=e.n_threads_batch,
                         prefix_cache_entries=e.prefix_cache_entries,
                         prefix_cache_host_mb=e.prefix_cache_host_mb)
    types = {f.name: f.type for f in fields(LlamaCppConfig)}
    for kv in a.set:
        k, v = kv.split("=", 1)
        cast = int if "int" in str(types[k]) else (lambda s: s.lower() in ("1", "true")) if "bool" in str(types[k]) else str
        cfg = replace(cfg, **{k: cast(v)})
    eng = LlamaCppEngine(cfg)
    await eng.start()
    info = eng.info
    tmpl = load_chat_template(info.chat_template, info.bos_token, info.eos_token, info.id)

    def prompt(i: int) -> tuple[int, ...]:
        content = long_prompt(i, 440) if i < 0 else story_prompt(i)
        text = tmpl.render([SYSTEM, {"role": "user", "content": content}], add_generation_prompt=True)
        return tuple(eng.tokenize(text))

    ttfts: list[float] = []
    gaps: list[float] = []
    n_out = 0

    async def one(i: int, max_tokens: int | None = None) -> None:
        nonlocal n_out
        params = SamplingParams(max_tokens=max_tokens or a.max_tokens, temperature=a.temperature)
        req = GenerationRequest(f"r{i}", prompt(i), params)
        t0 = time.perf_counter()
        last = None
        async for d in eng.generate(req):
            now = time.perf_counter()
            if d.token_ids:
                n_out += len(d.token_ids)
                if last is None:
                    ttfts.append(now - t0)
                else:
                    gaps.append(now - last)
                last = now

    await one(10_000)  # warm-up, not counted
    if a.history:  # i < 0: a ~500-token prompt answered with one token
        for i in (20_000, 20_001, 20_002, -1, -2, -3):
            await one(i, 1 if i < 0 else None)
        c4 = asyncio.Semaphore(4)

        async def hist(i: int) -> None:
            async with c4:
                await one(i)

        await asyncio.gather(*(hist(30_000 + i) for i in range(8)))
    ttfts.clear(), gaps.clear()
    n_out = 0
    sem = asyncio.Semaphore(a.concurrency)

    async def gated(i: int) -> None:
        async with sem:
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(gated(i) for i in range(a.requests)))
    wall = time.perf_counter() - t0
    steps = eng.stats["steps"]
    await eng.stop()
    print(f"concurrency {a.concurrency}  requests {a.requests}  max_tokens {a.max_tokens}  "
          f"settings {' '.join(a.set) or '(defaults)'}")
    print(f"output tok/s {n_out / wall:.1f}  wall {wall:.1f} s  steps {steps}  "
          f"inter-token p50 {1e3 * statistics.median(gaps):.1f} ms  p95 {1e3 * pct(gaps, 0.95):.1f} ms  "
          f"TTFT p50 {1e3 * statistics.median(ttfts):.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
