"""An embedding model run by llama.cpp in embedding mode (any GGUF with a pooling type: BERT
family, and decoder embedders with last-token pooling), through llama.cpp's C API.

One context, used by one thread at a time (the batcher's). Sequences are packed into decodes of
at most `batch_tokens` tokens (and 64 sequences); a longer sequence is decoded alone. Encoder
attention spans the whole micro-batch, masked per sequence, so very large decodes cost more per
token; on MiniLM (bench/embeddings.py) decodes of up to 256 tokens were fastest.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import llama_cpp as L
import numpy as np

from hearth.engine.backends.llamacpp_model import _backend_init
from hearth.engine.embedding.interface import EmbedderLoadError, Vectors

log = logging.getLogger("hearth.embedding")

MAX_SEQS_PER_DECODE = 64
# Without an explicit `max_tokens`, long-context embedders read at most this many tokens: every
# sequence must fit one micro-batch, and the attention buffers grow with its square.
DEFAULT_MAX_TOKENS_CAP = 2048


class LlamaEmbedder:
    """A GGUF embedding model (see `Embedder` for the guarantees). Vectors are L2-normalised."""

    def __init__(self, path: str | Path, model_id: str | None = None, *, max_tokens: int | None = None,
                 threads: int = 1, batch_tokens: int = 256) -> None:
        _backend_init()
        p = Path(path)
        mp = L.llama_model_default_params()
        mp.use_extra_bufts = False  # as for chat models: AMX buffers crash batched decodes
        self._model = L.llama_model_load_from_file(str(p).encode(), mp)
        if not self._model:
            raise EmbedderLoadError(f"llama.cpp could not load the model file {p}")
        self._ctx = None
        self._batch = None
        try:
            self._init(p, model_id, max_tokens, threads, batch_tokens)
        except BaseException:
            self.close()
            raise

    def _init(self, p: Path, model_id: str | None, max_tokens: int | None, threads: int,
              batch_tokens: int) -> None:
        self.model_id = model_id or p.stem
        self._vocab = L.llama_model_get_vocab(self._model)
        self.vocab_size = int(L.llama_vocab_n_tokens(self._vocab))
        self.dimensions = int(L.llama_model_n_embd(self._model))
        n_train = int(L.llama_model_n_ctx_train(self._model))
        self.max_tokens = min(max_tokens or min(n_train, DEFAULT_MAX_TOKENS_CAP), n_train)
        self.batch_tokens = max(1, min(batch_tokens, self.max_tokens))
        cp = L.llama_context_default_params()
        cp.embeddings = True
        cp.n_ctx = cp.n_batch = cp.n_ubatch = self.max_tokens  # every sequence fits one micro-batch
        cp.n_seq_max = MAX_SEQS_PER_DECODE
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True  # decoder embedders: any sequence may use any cache cell
        cp.no_perf = True
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise EmbedderLoadError(f"llama.cpp could not create an embedding context for {p}")
        pooling = L.llama_pooling_type(self._ctx)
        if pooling not in (L.LLAMA_POOLING_TYPE_MEAN, L.LLAMA_POOLING_TYPE_CLS, L.LLAMA_POOLING_TYPE_LAST):
            raise EmbedderLoadError(f"{p} has no sentence pooling (pooling type {pooling}): it is not a "
                                    "sentence-embedding model")
        self.pooling = {L.LLAMA_POOLING_TYPE_MEAN: "mean", L.LLAMA_POOLING_TYPE_CLS: "cls"}.get(pooling, "last")
        self._memory = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(self.max_tokens, 0, 1)
        plain = self._tokenize("hello", add_special=False)
        full = self._tokenize("hello", add_special=True)
        at = next(i for i in range(len(full)) if full[i:i + len(plain)] == plain)
        self._prefix: list[int] = full[:at]  # the special tokens tokenize() adds: [CLS] ... [SEP]
        self._suffix: list[int] = full[at + len(plain):]
        log.info("embedding model %s: %d dims, max %d tokens, %s pooling (llama.cpp, %s)",
                 self.model_id, self.dimensions, self.max_tokens, self.pooling, p.name)

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        arr = (L.llama_token * cap)()
        # parse_special: "[SEP]" written in a text is the separator, as in sentence-transformers.
        n = L.llama_tokenize(self._vocab, data, len(data), arr, cap, add_special, True)
        if n < 0:
            arr = (L.llama_token * -n)()
            n = L.llama_tokenize(self._vocab, data, len(data), arr, -n, add_special, True)
        return list(arr[:n])

    def tokenize(self, text: str) -> list[int]:
        return self._tokenize(text, add_special=True)

    def with_special_tokens(self, ids: list[int]) -> list[int]:
        p, s = self._prefix, self._suffix
        if len(ids) >= len(p) + len(s) and ids[:len(p)] == p and (not s or ids[-len(s):] == s):
            return list(ids)
        return [*p, *ids, *s]

    def embed(self, texts: list[str]) -> Vectors:
        lists = [self.tokenize(t) for t in texts]
        for i, ids in enumerate(lists):
            if len(ids) > self.max_tokens:
                raise ValueError(f"text {i} has {len(ids)} tokens; this model reads at most {self.max_tokens}")
        return self.embed_tokens(lists)

    def embed_tokens(self, token_lists: list[list[int]]) -> Vectors:
        for ids in token_lists:
            if not 0 < len(ids) <= self.max_tokens:
                raise ValueError(f"a token list must hold 1..{self.max_tokens} ids, got {len(ids)}")
            if min(ids) < 0 or max(ids) >= self.vocab_size:
                raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        out = np.empty((len(token_lists), self.dimensions), np.float32)
        start = 0
        while start < len(token_lists):
            end, used = start, 0
            while end < len(token_lists) and end - start < MAX_SEQS_PER_DECODE and (
                    end == start or used + len(token_lists[end]) <= self.batch_tokens):
                used += len(token_lists[end])
                end += 1
            out[start:end] = self._decode(token_lists[start:end])
            start = end
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, np.float32(1e-12))
        return out

    def _decode(self, lists: list[list[int]]) -> Vectors:
        assert self._batch is not None and self._ctx is not None
        b = self._batch
        n = 0
        for sid, ids in enumerate(lists):
            for pos, tok in enumerate(ids):
                b.token[n] = tok
                b.pos[n] = pos
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = sid
                b.logits[n] = 1  # embedding mode wants every token as an output
                n += 1
        b.n_tokens = n
        if self._memory:
            L.llama_memory_clear(self._memory, True)
        rc = L.llama_decode(self._ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with status {rc}")
        out = np.empty((len(lists), self.dimensions), np.float32)
        for sid in range(len(lists)):
            ptr = L.llama_get_embeddings_seq(self._ctx, sid)
            if not ptr:
                raise RuntimeError("llama.cpp returned no sequence embedding")
            out[sid] = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                             shape=(self.dimensions,))
        return out

    def close(self) -> None:
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            L.llama_model_free(self._model)
            self._model = None
