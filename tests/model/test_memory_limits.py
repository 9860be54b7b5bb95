"""Serving several models checks their memory against the limit before loading any (bootstrap)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.engine.memory import InsufficientMemory

pytestmark = pytest.mark.model


def test_serving_refuses_models_over_the_limit(tiny_gguf_path: Path, tmp_path: Path) -> None:
    from hearth import bootstrap
    from hearth.config import Settings
    from hearth.engine.backends.llamacpp import LlamaCppConfig, LlamaCppEngine

    engines = [LlamaCppEngine(LlamaCppConfig(model_id=f"tiny{i}", path=str(tiny_gguf_path))) for i in range(2)]
    roomy = Settings(data_dir=tmp_path, engine={"memory_limit_mb": 4096, "n_ctx": 1024})  # type: ignore[arg-type]
    bootstrap.check_memory(roomy, engines)  # nothing is loaded: only headers are read
    tight = Settings(data_dir=tmp_path, engine={"memory_limit_mb": 64, "n_ctx": 65536})  # type: ignore[arg-type]
    with pytest.raises(InsufficientMemory, match="tiny0.*tiny1"):
        bootstrap.check_memory(tight, engines)
