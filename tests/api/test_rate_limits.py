"""Rate limits per project x model over the real app (FakeEngine): headers, 429s, settle, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.engine.backends.fake import FakeEngine
from tests.conftest import API_KEY, make_app

URL = "/v1/chat/completions"


def client_of(app: Any, key: str = API_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                             headers={"Authorization": f"Bearer {key}"})


def chat(model: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8, **kw}


async def test_requests_per_minute_headers_and_429(tmp_path: Path) -> None:
    app = make_app(FakeEngine("m", context_length=256), tmp_path, rate_limits={"*": {"rpm": 3, "tpm": 10_000}})
    async with client_of(app) as c:
        seen = []
        for _ in range(3):
            r = await c.post(URL, json=chat("m"))
            assert r.status_code == 200
            seen.append(r.headers["x-ratelimit-remaining-requests"])
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            assert r.headers["x-ratelimit-limit-tokens"] == "10000"
            assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert seen == ["2", "1", "0"]
        r = await c.post(URL, json=chat("m"))
        assert r.status_code == 429
        err = r.json()["error"]
        assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
        assert "requests per min (RPM): Limit 3" in err["message"] and "try again in" in err["message"]
        assert int(r.headers["retry-after"]) >= 1 and int(r.headers["retry-after-ms"]) > 0
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        # Streaming requests are refused before the stream starts: a JSON 429, not an SSE error.
        r = await c.post(URL, json=chat("m", stream=True))
        assert r.status_code == 429 and r.headers["content-type"].startswith("application/json")


async def test_a_request_larger_than_the_limit_is_never_retried(tmp_path: Path) -> None:
    app = make_app(FakeEngine("m", context_length=4096), tmp_path, rate_limits={"m": {"tpm": 100}})
    async with client_of(app) as c:
        r = await c.post(URL, json=chat("m", max_tokens=1000))
        assert r.status_code == 429
        assert "retry-after" not in r.headers  # the SDK retries only when told to wait
        assert r.json()["error"]["message"].startswith("Request too large for m")
        assert (await c.post(URL, json=chat("m", max_tokens=20))).status_code == 200


async def test_tokens_are_settled_to_what_was_used(tmp_path: Path) -> None:
    eng = FakeEngine("m", context_length=4096, reply="one two three")
    app = make_app(eng, tmp_path, rate_limits={"*": {"tpm": 1000}})
    async with client_of(app) as c:
        r = await c.post(URL, json=chat("m", max_tokens=500))
        assert r.status_code == 200
        used = r.json()["usage"]["total_tokens"]
        # The header of this response shows the reservation (prompt + 500); the next one sees the refund.
        assert int(r.headers["x-ratelimit-remaining-tokens"]) <= 1000 - 500
        r = await c.post(URL, json=chat("m", max_tokens=10))
        prompt = r.json()["usage"]["prompt_tokens"]
        remaining = int(r.headers["x-ratelimit-remaining-tokens"])
        assert 1000 - used - (prompt + 10) - 2 <= remaining <= 1000 - used - (prompt + 10) + 2


async def test_unlimited_models_send_no_headers(tmp_path: Path) -> None:
    app = make_app(FakeEngine("m", context_length=256), tmp_path, rate_limits={"other": {"rpm": 1}})
    async with client_of(app) as c:
        r = await c.post(URL, json=chat("m"))
        assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers


async def test_exact_under_concurrency(tmp_path: Path) -> None:
    app = make_app(FakeEngine("m", context_length=256, token_delay_s=0.001), tmp_path, rate_limits={"*": {"rpm": 10}})
    async with client_of(app) as c:
        codes = await asyncio.gather(*[c.post(URL, json=chat("m", stream=i % 2 == 0)) for i in range(64)])
    statuses = [r.status_code for r in codes]
    assert statuses.count(200) == 10 and statuses.count(429) == 54


async def test_each_project_has_its_own_budget(tmp_path: Path) -> None:
    app = make_app(FakeEngine("m", context_length=256), tmp_path, with_platform=True, rate_limits={"*": {"rpm": 2}})
    store = app.state.runtime.container.admin.store
    a = store.create_project_key(store.organization().default_project_id, "a").secret
    other = store.create_project("B")
    b = store.create_project_key(other.id, "b").secret
    async with client_of(app, a) as ca, client_of(app, b) as cb:
        assert [(await ca.post(URL, json=chat("m"))).status_code for _ in range(3)] == [200, 200, 429]
        assert [(await cb.post(URL, json=chat("m"))).status_code for _ in range(3)] == [200, 200, 429]


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")
async def test_two_replicas_sharing_redis_admit_the_limit_once(tmp_path: Path) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"  # a fresh scope: no state from earlier runs
    cfg: dict[str, Any] = {"rate_limits": {"*": {"rpm": 10}}, "redis_url": "redis://127.0.0.1:6379/0"}
    app1 = make_app(FakeEngine(model, context_length=256), tmp_path / "a", **cfg)
    app2 = make_app(FakeEngine(model, context_length=256), tmp_path / "b", **cfg)
    async with client_of(app1) as c1, client_of(app2) as c2:
        codes = await asyncio.gather(*[(c1 if i % 2 else c2).post(URL, json=chat(model)) for i in range(40)])
    statuses = [r.status_code for r in codes]
    assert statuses.count(200) == 10 and statuses.count(429) == 30
