"""The HTTP edge must import without any inference library (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys


def test_api_imports_without_inference_libraries() -> None:
    code = (
        "import sys, hearth.api.app, hearth.services.chat, hearth.bootstrap\n"
        "bad = [m for m in ('llama_cpp', 'vllm', 'torch') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_linter_contracts_hold() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], check=False, capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stdout[-2000:]
