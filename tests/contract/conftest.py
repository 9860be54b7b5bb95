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

from collections.abc import AsyncIterator

import httpx
import pytest
from openai import AsyncOpenAI

from hearth.engine.backends.fake import FakeEngine
from tests.conftest import make_app


@pytest.fixture
def app(fake_engine: FakeEngine, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The contract suite runs against the real platform: a SQLite database, a bootstrapped
    organization and a real project key (not the static test key)."""
    return make_app(fake_engine, tmp_path, with_platform=True, aliases={"gpt-4o-mini": "fake-model"})


@pytest.fixture
def project_key(app) -> str:  # type: ignore[no-untyped-def]
    store = app.state.runtime.container.admin.store
    org = store.organization()
    return str(store.create_project_key(org.default_project_id, "contract-suite").secret)


@pytest.fixture
async def sdk(app, project_key: str) -> AsyncIterator[AsyncOpenAI]:  # type: ignore[no-untyped-def]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test")
    async with AsyncOpenAI(base_url="http://hearth.test/v1", api_key=project_key, http_client=http,
                           max_retries=0) as c:
        yield c
