"""Shared fixtures: an app over FakeEngine, an in-process httpx client, the official SDK, a live server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from openai import AsyncOpenAI

from hearth.api.app import create_app
from hearth.bootstrap import build_runtime
from hearth.config import Settings
from hearth.engine.backends.fake import FakeEngine
from hearth.engine.embedding import Embedder

API_KEY = "sk-test-0123456789abcdef"


def make_app(engine: FakeEngine, tmp_path: Path, *, with_platform: bool = False,
             embedders: list[Embedder] | None = None, **settings: object):  # type: ignore[no-untyped-def]
    """The app over `engine`. By default auth is the static API_KEY and no database (fast); with
    `with_platform`, a real SQLite database in tmp_path with organization, projects and keys.
    `embedders` serve /v1/embeddings (none by default)."""
    s = Settings(data_dir=tmp_path, api_key=API_KEY, **settings)  # type: ignore[arg-type]
    runtime = build_runtime(s, engines=[engine], with_platform=with_platform, embedders=embedders)
    app = create_app(runtime.container, max_body_bytes=s.max_body_bytes)
    app.state.runtime = runtime
    return app


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine("fake-model", context_length=256)


@pytest.fixture
def app(fake_engine: FakeEngine, tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_app(fake_engine, tmp_path, aliases={"gpt-4o-mini": "fake-model"})


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as c:
        yield c


@pytest.fixture
async def sdk(app) -> AsyncIterator[AsyncOpenAI]:  # type: ignore[no-untyped-def]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test")
    async with AsyncOpenAI(base_url="http://hearth.test/v1", api_key=API_KEY, http_client=http,
                           max_retries=0) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn on 127.0.0.1:<free port> in a thread; stopped by the fixture that started it."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off",
                             loop="asyncio")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:  # noqa: PYI034
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(app) as srv:
        yield srv


async def wait_until(pred, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.01)
    return bool(pred())
