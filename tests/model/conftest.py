"""Fixtures for tests that run real llama.cpp."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ has no __init__.py, so pytest's default "prepend" import mode puts this directory on
# sys.path and the sibling helper module imports by its plain name.
from model_server import serve_model
from tiny_gguf import build_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF (SmolLM2 tokenizer + chat template), built once per session.

    Load it with ``n_threads=1, n_threads_batch=1``: llama-cpp-python defaults ``n_threads_batch``
    to the CPU count, and on a busy 2-core box prompt evaluation then slows ~30x (spinning threads).
    """
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny_gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def smollm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("smollm")
    yield from serve_model("smollm2-135m-instruct", tmp, tmp / "data")


@pytest.fixture(scope="session")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Uses the default data dir so the assembled GGUF is reused across runs (assembling takes ~10 s).
    yield from serve_model("qwen2.5-coder-0.5b-instruct", tmp_path_factory.mktemp("qwen"))
