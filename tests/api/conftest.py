"""Make `tests.conftest` (make_app, LiveServer, wait_until, API_KEY) importable from any working directory.

tests/ has no __init__.py, so pytest's "prepend" import mode does not put the repository root on
sys.path; `python -m pytest` from the root does, a bare `pytest` elsewhere does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
