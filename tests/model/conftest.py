"""Fixtures for tests that run real llama.cpp."""

from __future__ import annotations

from pathlib import Path

import pytest

# tests/ has no __init__.py, so pytest's default "prepend" import mode puts this directory on
# sys.path and the sibling helper module imports by its plain name.
from tiny_gguf import build_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF (SmolLM2 tokenizer + chat template), built once per session.

    Load it with ``n_threads=1, n_threads_batch=1``: llama-cpp-python defaults ``n_threads_batch``
    to the CPU count, and on a busy 2-core box prompt evaluation then slows ~30x (spinning threads).
    """
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny_gguf") / "tiny-llama.gguf")
