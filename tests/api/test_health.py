"""Liveness (/health/live) and readiness (/health/ready, and /health for compatibility)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx

from hearth.api.app import create_app
from hearth.bootstrap import build_runtime
from hearth.config import Settings
from hearth.engine.backends.fake import FakeEngine


def _anon(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test")  # type: ignore[arg-type]


async def test_live_and_ready_follow_engine_health(app: object, fake_engine: FakeEngine) -> None:
    async with _anon(app) as c:  # no API key: probes are unauthenticated
        for path in ("/health", "/health/ready", "/health/live"):
            r = await c.get(path)
            assert r.status_code == 200 and r.json() == {"status": "ok"}, path
            assert r.headers["x-request-id"].startswith("req_")
        await fake_engine.stop()
        assert (await c.get("/health/live")).status_code == 200
        for path in ("/health", "/health/ready"):
            r = await c.get(path)
            assert r.status_code == 503 and r.json() == {"status": "unavailable"}, path


async def test_ready_needs_every_engine(tmp_path: Path) -> None:
    a, b = FakeEngine("model-a"), FakeEngine("model-b")
    runtime = build_runtime(Settings(data_dir=tmp_path, api_key="sk-x-0123456789"), engines=[a, b], with_platform=False)
    async with _anon(create_app(runtime.container)) as c:
        assert (await c.get("/health/ready")).status_code == 200
        await b.stop()
        assert (await c.get("/health/ready")).status_code == 503
        assert (await c.get("/health/live")).status_code == 200


async def test_not_ready_container(tmp_path: Path) -> None:
    runtime = build_runtime(Settings(data_dir=tmp_path, api_key="sk-x-0123456789"), engines=[FakeEngine()], with_platform=False)
    container = dataclasses.replace(runtime.container, ready=False)
    async with _anon(create_app(container)) as c:
        assert (await c.get("/health/ready")).status_code == 503
        assert (await c.get("/health")).status_code == 503
        assert (await c.get("/health/live")).status_code == 200
