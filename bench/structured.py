"""Cost of constrained decoding on the default model (not a test; prints figures and ratios).

1. Per-token cost of the two grammar engines we could use, on the same JSON schema and the same
   token sequence: llguidance (token mask computed in Rust, applied with numpy) and llama.cpp's own
   grammar sampler (GBNF from llama-cpp-python's JSON-schema converter, applied to the full vocab).
2. Decode tokens/s of the real engine with and without a JSON-schema constraint, alternating runs
   on one loaded model (target: overhead <= 10 %).

    .venv/bin/python bench/structured.py [--tokens 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import llama_cpp as L
import numpy as np
from llama_cpp import llama_grammar

from hearth.bootstrap import resolve_spec
from hearth.config import Settings
from hearth.engine import assets
from hearth.engine.backends.constraints import GrammarRuntime
from hearth.engine.backends.llamacpp import LlamaCppConfig, LlamaCppEngine
from hearth.engine.types import GenerationRequest, SamplingParams
from hearth.rendering.grammars import json_schema_constraint

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
        "genres": {"type": "array", "items": {"type": "string", "enum": ["drama", "comedy", "sci-fi", "horror"]}},
        "summary": {"type": "string"},
    },
    "required": ["title", "year", "genres", "summary"],
    "additionalProperties": False,
}
PROMPT = ("<|im_start|>user\nDescribe a long, detailed, made-up film as JSON with a title, a year, genres and a "
          "very long summary.<|im_end|>\n<|im_start|>assistant\n")


def model_path() -> str:
    s = Settings()
    spec = resolve_spec(s, s.default_model)
    from hearth.bootstrap import asset_for, models_dir

    return str(assets.prepare(asset_for(spec), models_dir(s), None))


def per_token_costs(engine: LlamaCppEngine, text: str) -> tuple[float, float]:
    """(llguidance µs/token, llama.cpp grammar µs/token) over the tokens of `text`."""
    m = engine._model
    assert m is not None and engine._grammar is not None
    tokens = m.tokenize(text, False)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(m.n_vocab).astype(np.float32)

    rt: GrammarRuntime = engine._grammar
    matcher = rt.matcher(json_schema_constraint(SCHEMA).grammar)
    t0 = time.perf_counter()
    for tok in tokens:
        buf = logits.copy()
        matcher.apply(buf)
        assert np.isfinite(buf[tok]), "llguidance rejected the reference output"
        matcher.advance(tok)
    llg = (time.perf_counter() - t0) / len(tokens) * 1e6

    # llama.cpp's grammar sampler applied to every candidate, as a sampler chain does when the
    # grammar runs first (the only order that can never fail open). Only its calls are timed.
    gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(SCHEMA))
    smpl = L.llama_sampler_init_grammar(m.vocab, gbnf.encode(), b"root")
    data = (L.llama_token_data * m.n_vocab)()
    arr = L.llama_token_data_array(data=data, size=m.n_vocab, selected=-1, sorted=False)
    spent = 0.0
    for tok in tokens:
        for i in range(m.n_vocab):
            data[i].id, data[i].logit, data[i].p = i, float(logits[i]), 0.0
        arr.size = m.n_vocab
        t1 = time.perf_counter()
        L.llama_sampler_apply(smpl, ctypes.byref(arr))
        L.llama_sampler_accept(smpl, tok)
        spent += time.perf_counter() - t1
    gram = spent / len(tokens) * 1e6
    L.llama_sampler_free(smpl)
    return llg, gram


async def decode_rate(engine: LlamaCppEngine, prompt: tuple[int, ...], n: int, constrained: bool) -> tuple[float, str]:
    c = json_schema_constraint(SCHEMA) if constrained else None
    req = GenerationRequest(f"b{time.monotonic_ns()}", prompt,
                            SamplingParams(max_tokens=n, temperature=0.8, seed=1), constraint=c)
    first = None
    count = 0
    parts = []
    async for d in engine.generate(req):
        count += len(d.token_ids)
        parts.append(d.text)
        if first is None and d.token_ids:
            first = time.perf_counter()
    assert first is not None
    return (count - 1) / (time.perf_counter() - first), "".join(parts)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    engine = LlamaCppEngine(LlamaCppConfig("qwen", model_path(), n_ctx=4096, max_seqs=4, n_threads=2,
                                           n_threads_batch=2))
    await engine.start()
    prompt = tuple(engine.tokenize(PROMPT))
    free, con = [], []
    sample = ""
    for _ in range(args.rounds):
        r, _ = await decode_rate(engine, prompt, args.tokens, False)
        free.append(r)
        r, sample = await decode_rate(engine, prompt, args.tokens, True)
        con.append(r)
    ref = json.dumps({"title": "The Long Night", "year": 1999, "genres": ["drama", "sci-fi"],
                      "summary": "A lighthouse keeper finds a signal from the future. " * 6}, separators=(", ", ": "))
    llg_us, gram_us = per_token_costs(engine, ref)
    await engine.stop()
    f, c = statistics.median(free), statistics.median(con)
    print(f"decode tok/s, {args.tokens} tokens, median of {args.rounds} alternating runs (temperature 0.8, seed 1)")
    print(f"  unconstrained       {f:7.1f}   runs {[round(x, 1) for x in free]}")
    print(f"  JSON schema (llg)   {c:7.1f}   runs {[round(x, 1) for x in con]}")
    print(f"  constrained / free  {c / f:7.3f}   overhead {100 * (1 - c / f):.1f} %")
    print(f"per-token grammar cost on a {len(ref)}-char JSON output (151,936-token vocabulary)")
    print(f"  llguidance mask + numpy apply   {llg_us:8.0f} µs/token")
    print(f"  llama.cpp grammar sampler       {gram_us:8.0f} µs/token   ({gram_us / llg_us:.1f}x llguidance)")
    print(f"sample constrained output: {sample[:160]!r}")


if __name__ == "__main__":
    asyncio.run(main())
