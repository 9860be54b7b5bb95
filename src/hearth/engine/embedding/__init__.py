"""Sentence embeddings: llama.cpp's embedding mode (GGUF; sentence-transformers BERT directories
are converted once), a deterministic fake, and a micro-batcher.

    from hearth.engine.embedding import load_default_embedder
    e = load_default_embedder()          # all-MiniLM-L6-v2, 384 dims, 256 tokens
    vecs = e.embed(["a sentence"])       # float32 (1, 384), L2-normalised
"""

from typing import TYPE_CHECKING, Any

from hearth.engine.embedding.batcher import EmbeddingBatcher
from hearth.engine.embedding.fake import FakeEmbedder
from hearth.engine.embedding.interface import Embedder, EmbedderLoadError, Vectors
from hearth.engine.embedding.loader import (
    DEFAULT_MODEL_ID,
    default_cache_dir,
    default_model_dir,
    load_default_embedder,
    load_embedder,
)

if TYPE_CHECKING:
    from hearth.engine.embedding.llamacpp import LlamaEmbedder


def __getattr__(name: str) -> Any:
    # LlamaEmbedder loads llama_cpp: only on use, so that `hearth.api` imports without it.
    if name == "LlamaEmbedder":
        from hearth.engine.embedding.llamacpp import LlamaEmbedder

        return LlamaEmbedder
    raise AttributeError(name)


__all__ = [
    "DEFAULT_MODEL_ID",
    "Embedder",
    "EmbedderLoadError",
    "EmbeddingBatcher",
    "FakeEmbedder",
    "LlamaEmbedder",
    "Vectors",
    "default_cache_dir",
    "default_model_dir",
    "load_default_embedder",
    "load_embedder",
]
