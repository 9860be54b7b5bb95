"""The tiny GGUF loads in real llama.cpp, generates without stopping early and carries its template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_gguf import N_CTX, build_tiny_gguf, smollm2_gguf_path

from hearth.rendering.gguf_meta import read_gguf_metadata

llama_cpp = pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.model

PROMPTS = ["Hello", "The capital of France is", "def foo():", "1, 2, 3,", "Once upon a time"]


@pytest.fixture(scope="module")
def llm(tiny_gguf_path: Path) -> Iterator[Any]:
    model = llama_cpp.Llama(
        model_path=str(tiny_gguf_path), n_ctx=512, verbose=False, n_threads=1, n_threads_batch=1
    )
    yield model
    model.close()


def test_metadata(tiny_gguf_path: Path) -> None:
    meta = read_gguf_metadata(tiny_gguf_path, skip_arrays=True)
    source = read_gguf_metadata(smollm2_gguf_path(), skip_arrays=True)
    assert meta.architecture == "llama"
    assert meta.context_length == N_CTX
    assert meta.chat_template == source.chat_template
    assert meta.token_id("eos") == source.token_id("eos")
    assert tiny_gguf_path.stat().st_size < 12 * 1024 * 1024


def test_deterministic(tiny_gguf_path: Path, tmp_path: Path) -> None:
    again = build_tiny_gguf(tmp_path / "again.gguf")
    assert again.read_bytes() == tiny_gguf_path.read_bytes()


def test_loads_and_carries_chat_template(llm: Any) -> None:
    template = llm.metadata["tokenizer.chat_template"]
    assert "<|im_start|>" in template


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_generation_runs_to_max_tokens(llm: Any, prompt: str) -> None:
    result = llm.create_completion(prompt, max_tokens=20, temperature=0)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 20
    assert choice["text"].strip()


def test_chat_prompt_generates(llm: Any) -> None:
    result = llm.create_chat_completion(
        messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=0
    )
    assert result["usage"]["completion_tokens"] == 8
    assert result["choices"][0]["finish_reason"] == "length"
