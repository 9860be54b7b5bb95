"""The narrow interface of a sentence-embedding model."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class EmbedderLoadError(Exception):
    """A model file or directory is missing or holds something this engine cannot serve."""


@runtime_checkable
class Embedder(Protocol):
    """One loaded embedding model.

    Guarantees:
    - `tokenize(text)` returns exactly the ids the model reads for `text`, special tokens
      included (for BERT: [CLS] ... [SEP]) and never truncated; its length is what
      `max_tokens` bounds and what usage counts.
    - `embed_tokens(lists)` takes such lists (each 1..max_tokens long, ids below `vocab_size`)
      and returns float32 vectors of shape (len(lists), dimensions), each of L2 norm 1, row i
      for list i. A vector does not depend on which other lists share the call (up to float32
      rounding: BLAS may sum in another order for another batch shape).
    - `embed(texts)` is `embed_tokens([tokenize(t) for t in texts])`; it raises ValueError for
      a text longer than `max_tokens`.
    - `embed` and `embed_tokens` are synchronous and CPU-bound: callers run them off the event
      loop, one at a time. `tokenize` is cheap and may run beside them on another thread.
    """

    model_id: str
    dimensions: int
    max_tokens: int
    vocab_size: int

    def tokenize(self, text: str) -> list[int]: ...

    def with_special_tokens(self, ids: list[int]) -> list[int]:
        """Client-given token ids as the model reads them: the special tokens `tokenize` adds are
        added, unless the list already starts and ends with them."""
        ...

    def embed(self, texts: list[str]) -> Vectors: ...

    def embed_tokens(self, token_lists: list[list[int]]) -> Vectors: ...
