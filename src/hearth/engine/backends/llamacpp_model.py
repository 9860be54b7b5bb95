"""Thin typed wrappers over llama.cpp's C API (via llama-cpp-python's ctypes bindings)."""

from __future__ import annotations

import ctypes
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as L
import numpy as np

from hearth.engine.backends.sampling import LogitsSampler
from hearth.engine.errors import EngineDead
from hearth.engine.types import SamplingParams, TokenLogprob, TopLogprob

_BACKEND_READY = False


def _backend_init() -> None:
    global _BACKEND_READY  # process-wide llama.cpp init must run exactly once
    if not _BACKEND_READY:
        L.llama_backend_init()
        L.llama_log_set(_QUIET_LOG, ctypes.c_void_p(0))
        _BACKEND_READY = True


@L.llama_log_callback  # type: ignore[misc]
def _quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    return None


_QUIET_LOG = _quiet


@dataclass(frozen=True, slots=True)
class ContextConfig:
    n_ctx: int
    n_batch: int
    n_seq_max: int
    n_threads: int
    n_threads_batch: int
    flash_attn: str = "auto"
    n_ubatch: int = 0  # tokens per compute pass inside one decode; 0: min(n_batch, 512)


def q8_kernel() -> str:
    """What multiplies Q5_0 and Q8_0 weights in batched steps: "hearth-512", "hearth-256" or
    "llamafile".

    "hearth-*" is the kernel that `make install` builds into llama.cpp
    (requirements/llama-cpp-python/: the same floats as llamafile's tinyBLAS in fewer instructions;
    512-bit with AVX-512 VNNI, 256-bit with AVX2). "llamafile" is llama.cpp's own tinyBLAS: a stock
    llama-cpp-python, a CPU without those instructions, or HEARTH_MATMUL=llamafile.
    """
    try:
        probe = getattr(ctypes.CDLL(_loaded_ggml_cpu()), "hearth_q8_gemm_bits", None)
    except OSError:
        return "llamafile"
    if probe is None:
        return "llamafile"
    probe.restype = ctypes.c_int
    bits = int(probe())
    return f"hearth-{bits}" if bits else "llamafile"


def _loaded_ggml_cpu() -> str:
    """The path of the ggml CPU library this process runs (the one llama.cpp loaded, which
    LD_LIBRARY_PATH may have picked), else the one in llama-cpp-python's package."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "libggml-cpu" in Path(path).name:
                    return path
    except OSError:
        pass
    found = sorted((Path(L.__file__).parent / "lib").glob("libggml-cpu.*"))
    return str(found[0]) if found else "libggml-cpu.so"


def _extra_buffers_safe() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_tile" not in f.read()
    except OSError:
        return False  # unknown CPU: the layout known to work everywhere


class LlamaModel:
    """A loaded GGUF model, its vocabulary and one context whose KV cache all sequences share."""

    def __init__(self, path: str, cfg: ContextConfig) -> None:
        _backend_init()
        mp = L.llama_model_default_params()
        # Extra weight buffers are llama.cpp's repacked layouts (faster batched matmuls: prompts and
        # batched decode) and, on CPUs with AMX, AMX tiles. The AMX matmul crashes (SIGSEGV in
        # ggml_backend_amx_mul_mat) on batched decodes, so they stay off where the CPU has AMX.
        mp.use_extra_bufts = _extra_buffers_safe()
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise EngineDead(f"llama.cpp could not load the model file {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = L.llama_model_n_ctx_train(self.model)
        cp = L.llama_context_default_params()
        cp.n_ctx = cfg.n_ctx
        cp.n_batch = cfg.n_batch
        cp.n_ubatch = cfg.n_ubatch or min(cfg.n_batch, 512)  # compute buffers are sized by this
        cp.n_seq_max = cfg.n_seq_max
        cp.n_threads = cfg.n_threads
        cp.n_threads_batch = cfg.n_threads_batch
        cp.kv_unified = True  # one cache for every sequence: any sequence may use any cell
        cp.flash_attn_type = {
            "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }.get(cfg.flash_attn, L.LLAMA_FLASH_ATTN_TYPE_AUTO)
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            L.llama_model_free(self.model)
            raise EngineDead("llama.cpp could not create a context (out of memory?)")
        self.n_ctx = L.llama_n_ctx(self.ctx)
        # One cell of every layer's f16 keys and values, as a saved sequence state holds it (plus
        # the cell's position and sequence id).
        head = L.llama_model_n_embd(self.model) // max(1, L.llama_model_n_head(self.model))
        self.kv_bytes_per_token = (L.llama_model_n_layer(self.model) * L.llama_model_n_head_kv(self.model)
                                   * head * 2 * 2 + 12)
        self.memory = L.llama_get_memory(self.ctx)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = L.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            L.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def tokenize(self, text: str, special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        arr = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, data, len(data), arr, cap, False, special)
        if n < 0:
            arr = (L.llama_token * -n)()
            n = L.llama_tokenize(self.vocab, data, len(data), arr, -n, False, special)
        return list(arr[:n])

    def piece(self, token: int) -> bytes:
        """Bytes of one token as it appears in generated text (special tokens render empty)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        n = L.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        out = self._piece_buf.raw[:n] if n > 0 else b""
        self._pieces[token] = out
        return out

    def token_bytes_any(self, token: int) -> bytes:
        """Bytes of a token including special ones (for logprobs)."""
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[:n] if n > 0 else b""

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    def token_text(self, token: int) -> str:
        raw = L.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def logits(self, idx: int) -> np.ndarray:
        ptr = L.llama_get_logits_ith(self.ctx, idx)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def one_token_step_ms(self, threads: Sequence[int], rounds: int = 7, seq_id: int = 0) -> dict[int, float]:
        """Median time of a one-token decode step on each thread count in `threads`, measured in
        alternating rounds on a scratch sequence (its cells are removed after). For choosing
        n_threads before anything else runs: leaves the context's thread counts as they were."""
        ctx = self.ctx
        keep = (L.llama_n_threads(ctx), L.llama_n_threads_batch(ctx))
        b = L.llama_batch_init(1, 0, 1)
        times: dict[int, list[float]] = {n: [] for n in threads}
        try:
            b.n_tokens = 1
            b.token[0] = max(0, L.llama_vocab_bos(self.vocab))
            b.seq_id[0][0] = seq_id
            b.n_seq_id[0] = 1
            b.logits[0] = 1
            order = list(threads)
            pos = 0
            for r in range(rounds + 1):  # round 0 warms up (first touch of the weights)
                for n in order:
                    L.llama_set_n_threads(ctx, n, keep[1])
                    b.pos[0] = pos
                    pos += 1
                    t0 = time.perf_counter()
                    if L.llama_decode(ctx, b) != 0:
                        raise EngineDead("llama_decode failed while timing decode threads")
                    if r:
                        times[n].append(time.perf_counter() - t0)
                order.reverse()  # neither count always runs right after the other
        finally:
            L.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
            L.llama_set_n_threads(ctx, *keep)
            L.llama_batch_free(b)
        return {n: 1e3 * statistics.median(ts) for n, ts in times.items()}

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        L.llama_set_n_threads(self.ctx, n_threads, n_threads_batch)

    def seq_rm(self, seq_id: int) -> None:
        L.llama_memory_seq_rm(self.memory, seq_id, -1, -1)

    def close(self) -> None:
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None


class Sampler:
    """A per-sequence sampler built from SamplingParams: numpy over the logits row (see
    sampling.py: several times cheaper per token), or llama.cpp's C chain when penalties need
    the token history."""

    def __init__(self, model: LlamaModel, p: SamplingParams, penalty_window: int) -> None:
        self.model = model
        self.fast: LogitsSampler | None = None
        self.chain = None
        if LogitsSampler.supports(p):
            self.fast = LogitsSampler(p, model.n_vocab)
            return
        self.chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = lambda s: L.llama_sampler_chain_add(self.chain, s)
        if p.logit_bias:
            items = [(t, b) for t, b in p.logit_bias.items() if 0 <= t < model.n_vocab]
            arr = (L.llama_logit_bias * len(items))(*[L.llama_logit_bias(t, b) for t, b in items])
            add(L.llama_sampler_init_logit_bias(model.n_vocab, len(items), arr))
        if p.presence_penalty or p.frequency_penalty:
            add(L.llama_sampler_init_penalties(penalty_window, 1.0, p.frequency_penalty, p.presence_penalty))
        if p.greedy:
            add(L.llama_sampler_init_greedy())
            return
        if p.top_k > 0:
            add(L.llama_sampler_init_top_k(p.top_k))
        if p.top_p < 1.0:
            add(L.llama_sampler_init_top_p(p.top_p, 1))
        if p.min_p > 0.0:
            add(L.llama_sampler_init_min_p(p.min_p, 1))
        add(L.llama_sampler_init_temp(p.temperature))
        seed = p.seed if p.seed is not None else random.getrandbits(32)
        add(L.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, ctx: object, idx: int) -> int:
        if self.fast is not None:
            return self.fast.sample(self.model.logits(idx))
        return int(L.llama_sampler_sample(self.chain, ctx, idx))

    def free(self) -> None:
        if self.chain:
            L.llama_sampler_free(self.chain)
            self.chain = None


def token_logprob(model: LlamaModel, logits: np.ndarray, token: int, top_n: int) -> TokenLogprob:
    """Log-probability of `token` under the model's raw distribution, plus the top alternatives.

    The normaliser is exponentiated in float32 and summed in float64: 0.2 ms per token over
    151,936 logits instead of 1.7 ms for a float64 copy, and within ~1e-8 of it."""
    m = float(logits.max())
    lse = m + float(np.log(np.exp(logits - np.float32(m)).sum(dtype=np.float64)))
    chosen = float(logits[token]) - lse
    tops: tuple[TopLogprob, ...] = ()
    if top_n > 0:
        # The top_n are among the logits within a few nats of the maximum whenever at least top_n
        # are (a peaked distribution: a handful); partitioning those few instead of the whole
        # vocabulary saves ~1.3 ms per token.
        for gap in (4.0, 16.0):
            cand = np.flatnonzero(logits >= np.float32(m - gap))
            if len(cand) >= top_n:
                break
        else:
            cand = np.arange(logits.shape[0])
        if len(cand) > top_n:
            cand = cand[np.argpartition(-logits[cand], top_n - 1)[:top_n]]
        idx = cand[np.argsort(-logits[cand], kind="stable")]
        tops = tuple(_top(model, int(t), float(logits[t]) - lse) for t in idx)
    b = model.token_bytes_any(token)
    return TokenLogprob(token=b.decode("utf-8", errors="replace"), token_bytes=b, logprob=chosen, top=tops)


def _top(model: LlamaModel, token: int, lp: float) -> TopLogprob:
    b = model.token_bytes_any(token)
    return TopLogprob(token=b.decode("utf-8", errors="replace"), token_bytes=b, logprob=lp)
