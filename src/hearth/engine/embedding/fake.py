"""FakeEmbedder: deterministic vectors with no model, shipped for tests and gateway benchmarks.

- Tokenizer: one token per whitespace-separated word, id = a stable hash of the lower-cased word;
  no special tokens, so `len(tokenize(t))` is the word count.
- A vector is the normalised sum of one pseudo-random unit vector per token (seeded by the id):
  texts that share words are closer than texts that do not, and the same text always gives the
  same vector, alone or in a batch.
- Every call to `embed_tokens` is recorded in `calls` (the lists it received), so tests can see
  how requests were batched; `fail` makes the next call raise RuntimeError.
"""

from __future__ import annotations

import hashlib

import numpy as np

from hearth.engine.embedding.interface import Vectors


class FakeEmbedder:
    def __init__(self, model_id: str = "fake-embedding", *, dimensions: int = 384, max_tokens: int = 256,
                 vocab_size: int = 30522) -> None:
        self.model_id = model_id
        self.dimensions = dimensions
        self.max_tokens = max_tokens
        self.vocab_size = vocab_size
        self.calls: list[list[list[int]]] = []
        self.fail = False
        self._rows: dict[int, Vectors] = {}

    def tokenize(self, text: str) -> list[int]:
        return [self._word_id(w) for w in text.lower().split()]

    def with_special_tokens(self, ids: list[int]) -> list[int]:
        return list(ids)

    def embed(self, texts: list[str]) -> Vectors:
        lists = [self.tokenize(t) for t in texts]
        for ids in lists:
            if not 0 < len(ids) <= self.max_tokens:
                raise ValueError(f"a text must have 1..{self.max_tokens} tokens")
        return self.embed_tokens(lists)

    def embed_tokens(self, token_lists: list[list[int]]) -> Vectors:
        self.calls.append([list(t) for t in token_lists])
        if self.fail:
            self.fail = False
            raise RuntimeError("injected embedder failure")
        out = np.zeros((len(token_lists), self.dimensions), np.float32)
        for i, ids in enumerate(token_lists):
            if not 0 < len(ids) <= self.max_tokens or min(ids) < 0 or max(ids) >= self.vocab_size:
                raise ValueError("token list out of range")
            for t in ids:
                out[i] += self._row(t)
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-12)
        return out

    def _word_id(self, word: str) -> int:
        return int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % self.vocab_size

    def _row(self, token: int) -> Vectors:
        row = self._rows.get(token)
        if row is None:
            v = np.random.default_rng(token).standard_normal(self.dimensions).astype(np.float32)
            row = self._rows[token] = v / np.linalg.norm(v)
        return row
