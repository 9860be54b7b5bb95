"""Memory planning across served models (engine/memory.py and bootstrap.check_memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.engine.memory import (
    Footprint,
    InsufficientMemory,
    MiB,
    ModelShape,
    check_fits,
    footprint,
    system_memory_bytes,
)

QWEN_05B = ModelShape(n_layer=24, n_embd=896, n_head=14, n_head_kv=2, n_vocab=151936)


def test_kv_cache_size_follows_the_model_shape() -> None:
    fp = footprint("qwen", 491_400_064, QWEN_05B, n_ctx=8192, n_ubatch=512)
    # 24 layers x 2 KV heads x (64 + 64) dims x 2 bytes = 12 KiB per token (llama.cpp reports 96 MiB at 8192).
    assert fp.kv == 8192 * 24 * 2 * 128 * 2 == 96 * MiB
    assert fp.weights == 491_400_064
    assert fp.compute >= 512 * 151936 * 4  # logits of a full micro-batch
    assert fp.total == fp.weights + fp.kv + fp.compute


def test_models_that_fit_pass_and_the_refusal_names_every_figure() -> None:
    a = Footprint("qwen", 500 * MiB, 96 * MiB, 300 * MiB)
    b = Footprint("smollm2", 90 * MiB, 180 * MiB, 110 * MiB)
    check_fits([a, b], 2000 * MiB)
    with pytest.raises(InsufficientMemory) as ei:
        check_fits([a, b], 1000 * MiB)
    msg = str(ei.value)
    assert "1276 MiB" in msg and "1000 MiB" in msg and "qwen: 896 MiB" in msg and "smollm2: 380 MiB" in msg
    assert "engine.n_ctx" in msg


def test_system_memory_reads_meminfo(tmp_path: Path) -> None:
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       24576000 kB\nMemFree: 1 kB\n")
    total = system_memory_bytes(str(f))
    assert total is not None and total <= 24576000 * 1024
    assert system_memory_bytes(str(tmp_path / "missing")) is None
