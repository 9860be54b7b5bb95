"""Usage ledger, usage and costs APIs, project rate limits and spend limits over the real app
(FakeEngine, SQLite platform): one record per request, OpenAI's shapes, 429 insufficient_quota."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hearth.engine.backends.fake import FakeEngine
from tests.conftest import LiveServer, make_app, wait_until

ORG = "/v1/organization"
CHAT = "/v1/chat/completions"
# $1 / $2 per 1M tokens: one input token costs 1000 nano-USD, one output token 2000.
PRICES = {"*": {"input": 1, "output": 2}}


class Pf:
    def __init__(self, app: Any, c: httpx.AsyncClient, engine: FakeEngine) -> None:
        self.app, self.c, self.engine = app, c, engine
        rt = app.state.runtime
        self.admin_key = rt.admin_key
        self.store = rt.container.admin.store
        self.project = self.store.organization().default_project_id
        self.key = self.store.create_project_key(self.project, "usage-tests").secret

    def h(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    async def chat(self, key: str | None = None, **body: Any) -> httpx.Response:
        payload = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5, **body}
        return await self.c.post(CHAT, json=payload, headers=self.h(key or self.key))

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.c.get(ORG + path, params=params, headers=self.h())

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.c.request(method, ORG + path, headers=self.h(), **kw)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def pf(tmp_path: Path) -> AsyncIterator[Pf]:
    engine = FakeEngine("m", context_length=512, reply_tokens=4)
    app = make_app(engine, tmp_path, with_platform=True, prices=PRICES)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        yield Pf(app, c, engine)


def err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    e: dict[str, Any] = body["error"]
    return e


async def test_one_record_per_request_with_exact_counts(pf: Pf) -> None:
    t0 = int(time.time()) - 5
    r1 = await pf.chat()
    u1 = r1.json()["usage"]
    r2 = await pf.c.post(CHAT, json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                                     "stream_options": {"include_usage": True}}, headers=pf.h(pf.key))
    assert r2.status_code == 200 and r2.text.rstrip().endswith("data: [DONE]")
    page = await pf.ok("GET", "/usage/completions", params={"start_time": t0, "bucket_width": "1h",
                                                            "group_by": ["model", "project_id", "api_key_id"]})
    assert page["object"] == "page" and page["has_more"] is False and page["next_page"] is None
    (bucket,) = page["data"]
    assert bucket["object"] == "bucket" and bucket["start_time"] == t0 and bucket["end_time"] > t0
    (res,) = bucket["results"]
    assert res["object"] == "organization.usage.completions.result"
    assert res["num_model_requests"] == 2
    assert res["model"] == "m" and res["project_id"] == pf.project and res["api_key_id"].startswith("key_")
    assert res["input_tokens"] == u1["prompt_tokens"] + len(pf.engine.requests[1].prompt_tokens)
    assert res["output_tokens"] == u1["completion_tokens"] + 4
    assert res["input_uncached_tokens"] == res["input_tokens"] - res["input_cached_tokens"]
    # Costs: priced per token from the rate card, in USD.
    costs = await pf.ok("GET", "/costs", params={"start_time": t0, "group_by": "line_item"})
    (c,) = costs["data"][0]["results"]
    assert c["object"] == "organization.costs.result" and c["line_item"] == "m"
    assert c["amount"] == {"value": pytest.approx((res["input_tokens"] * 1000 + res["output_tokens"] * 2000) / 1e9),
                           "currency": "usd"}


async def test_a_disconnected_stream_is_billed_for_what_was_generated(tmp_path: Path) -> None:
    engine = FakeEngine("m", context_length=512, reply_tokens=200, token_delay_s=0.02)
    app = make_app(engine, tmp_path, with_platform=True, prices=PRICES)
    with LiveServer(app) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:
            pf = Pf(app, c, engine)
            t0 = int(time.time()) - 5
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with c.stream("POST", CHAT, json=body, headers=pf.h(pf.key)) as r:
                got = 0
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        got += 1
                        if got == 6:
                            break
            assert await wait_until(lambda: len(engine.requests) == 1 and not engine.active, 2.0)
            page = await pf.ok("GET", "/usage/completions", params={"start_time": t0})
            (res,) = page["data"][0]["results"]
            assert res["num_model_requests"] == 1
            assert 5 <= res["output_tokens"] < 100, res


async def test_usage_buckets_pagination_and_filters(pf: Pf) -> None:
    for _ in range(3):
        assert (await pf.chat()).status_code == 200
    t0 = int(time.time()) - 3 * 60 + 1
    page = await pf.ok("GET", "/usage/completions", params={"start_time": t0, "bucket_width": "1m", "limit": 2})
    assert len(page["data"]) == 2 and page["has_more"] is True and page["next_page"]
    rest = await pf.ok("GET", "/usage/completions", params={"start_time": t0, "bucket_width": "1m",
                                                            "limit": 2, "page": page["next_page"]})
    assert rest["has_more"] is False
    buckets = page["data"] + rest["data"]
    assert [b["start_time"] for b in buckets] == [t0 + 60 * i for i in range(len(buckets))]
    assert sum(r["num_model_requests"] for b in buckets for r in b["results"]) == 3
    none = await pf.ok("GET", "/usage/completions", params={"start_time": t0, "models": "other"})
    assert all(b["results"] == [] for b in none["data"])
    emb = await pf.ok("GET", "/usage/embeddings", params={"start_time": t0})
    assert all(b["results"] == [] for b in emb["data"])


@pytest.mark.parametrize(("params", "param"), [
    ({}, "start_time"),
    ({"start_time": "yesterday"}, "start_time"),
    ({"start_time": 100, "bucket_width": "2h"}, "bucket_width"),
    ({"start_time": 100, "group_by": "colour"}, "group_by"),
    ({"start_time": 100, "limit": 0}, "limit"),
    ({"start_time": 100, "bucket_width": "1d", "limit": 32}, "limit"),
    ({"start_time": 100, "page": "nope"}, "page"),
    ({"start_time": 100, "end_time": 50}, "end_time"),
    ({"start_time": 100, "batch": "maybe"}, "batch"),
])
async def test_usage_query_errors(pf: Pf, params: dict[str, Any], param: str) -> None:
    e = err(await pf.get("/usage/completions", **params), 400)
    assert e["param"] == param and e["type"] == "invalid_request_error"


async def test_costs_accept_only_daily_buckets_and_their_groups(pf: Pf) -> None:
    assert err(await pf.get("/costs", start_time=100, bucket_width="1h"), 400)["param"] == "bucket_width"
    assert err(await pf.get("/costs", start_time=100, group_by="model"), 400)["param"] == "group_by"


async def test_project_keys_cannot_read_usage(pf: Pf) -> None:
    r = await pf.c.get(ORG + "/usage/completions", params={"start_time": 1}, headers=pf.h(pf.key))
    assert r.status_code in (401, 403)


async def test_project_rate_limit_overrides(pf: Pf) -> None:
    other = pf.store.create_project("other").id
    other_key = pf.store.create_project_key(other, "k").secret
    page = await pf.ok("GET", f"/projects/{pf.project}/rate_limits")
    assert page["object"] == "list"
    rl = next(x for x in page["data"] if x["model"] == "m")
    assert rl["object"] == "project.rate_limit" and rl["id"] == "rl-m"
    assert [x["id"] for x in page["data"]] == ["rl-hearth-moderation-1", "rl-m"]
    assert rl["max_requests_per_1_minute"] is None  # nothing configured: unlimited
    assert (await pf.chat()).status_code == 200
    assert "x-ratelimit-limit-requests" not in (await pf.chat()).headers
    rl = await pf.ok("POST", f"/projects/{pf.project}/rate_limits/rl-m", json={"max_requests_per_1_minute": 2})
    assert rl["max_requests_per_1_minute"] == 2 and rl["max_tokens_per_1_minute"] is None
    r = await pf.chat()
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-requests"] == "2"
    assert (await pf.chat()).status_code == 200
    e = err(await pf.chat(), 429)
    assert e["code"] == "rate_limit_exceeded"
    assert (await pf.chat(other_key)).status_code == 200  # another project keeps its own (none)
    # Setting one field keeps the others; listing shows the override.
    rl = await pf.ok("POST", f"/projects/{pf.project}/rate_limits/rl-m", json={"max_tokens_per_1_minute": 5000})
    assert (rl["max_requests_per_1_minute"], rl["max_tokens_per_1_minute"]) == (2, 5000)
    listed = (await pf.ok("GET", f"/projects/{pf.project}/rate_limits"))["data"]
    assert next(x for x in listed if x["model"] == "m")["max_tokens_per_1_minute"] == 5000
    # Errors in OpenAI's envelope.
    err(await pf.c.get(ORG + "/projects/proj_missing/rate_limits", headers=pf.h()), 404)
    err(await pf.c.post(ORG + f"/projects/{pf.project}/rate_limits/rl-nope", json={}, headers=pf.h()), 404)
    e = err(await pf.c.post(ORG + f"/projects/{pf.project}/rate_limits/rl-m",
                            json={"max_requests_per_1_minute": -3}, headers=pf.h()), 400)
    assert e["param"] == "max_requests_per_1_minute"
    e = err(await pf.c.post(ORG + f"/projects/{pf.project}/rate_limits/rl-m", json={"colour": 1}, headers=pf.h()),
            400)


async def test_project_spend_limit_refuses_with_insufficient_quota(pf: Pf) -> None:
    first = await pf.chat()
    cost = (first.json()["usage"]["prompt_tokens"] * 1000 + first.json()["usage"]["completion_tokens"] * 2000)
    worst = first.json()["usage"]["prompt_tokens"] * 1000 + 5 * 2000  # max_tokens=5 at the output price
    # Room for two more worst cases, not three.
    cap_usd = (cost + 2 * worst + worst // 2) / 1e9
    sl = await pf.ok("POST", f"/projects/{pf.project}/spend_limit", json={"monthly_limit_usd": cap_usd})
    assert sl["object"] == "project.spend_limit" and sl["monthly_limit_usd"] == pytest.approx(cap_usd)
    assert sl["spent_this_month_usd"] == pytest.approx(cost / 1e9) and sl["held_usd"] == 0
    assert (await pf.chat()).status_code == 200
    assert (await pf.chat()).status_code == 200
    r = await pf.chat()
    e = err(r, 429)
    assert e["type"] == "insufficient_quota" and e["code"] == "insufficient_quota"
    assert "quota" in e["message"] and pf.project in e["message"]
    assert "retry-after" not in r.headers and r.headers["x-should-retry"] == "false"
    # Smaller requests still fit; lifting the limit lets everything through.
    await pf.ok("POST", f"/projects/{pf.project}/spend_limit", json={"monthly_limit_usd": None})
    assert (await pf.chat()).status_code == 200
    err(await pf.c.post(ORG + f"/projects/{pf.project}/spend_limit", json={"monthly_limit_usd": -1},
                        headers=pf.h()), 400)
    err(await pf.c.get(ORG + "/projects/proj_missing/spend_limit", headers=pf.h()), 404)


async def test_the_sdk_does_not_retry_insufficient_quota(pf: Pf) -> None:
    await pf.ok("POST", "/spend_limit", json={"monthly_limit_usd": 0})  # the organization's limit
    sent = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.url.path)

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=pf.app), base_url="http://hearth.test",
                             event_hooks={"request": [count]})
    async with openai.AsyncOpenAI(base_url="http://hearth.test/v1", api_key=pf.key, http_client=http,
                                  max_retries=3) as sdk:
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert info.value.code == "insufficient_quota"
    assert sent == ["/v1/chat/completions"]  # one attempt, no retries
    org = await pf.ok("GET", "/spend_limit")
    assert org["object"] == "organization.spend_limit" and org["monthly_limit_usd"] == 0


async def test_spend_limit_holds_under_64_concurrent_requests(pf: Pf) -> None:
    probe = (await pf.chat()).json()["usage"]
    worst = probe["prompt_tokens"] * 1000 + 5 * 2000
    spent0 = probe["prompt_tokens"] * 1000 + probe["completion_tokens"] * 2000
    cap = spent0 + 10 * worst + worst // 3
    await pf.ok("POST", f"/projects/{pf.project}/spend_limit", json={"monthly_limit_usd": cap / 1e9})
    results = await asyncio.gather(*(pf.chat() for _ in range(64)))
    codes = [r.status_code for r in results]
    assert set(codes) <= {200, 429}
    # At least the 10 worst cases that fit side by side; more when early finishers free their holds.
    assert 10 <= codes.count(200) < 64
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in results if r.status_code == 429)
    sl = await pf.ok("GET", f"/projects/{pf.project}/spend_limit")
    assert sl["held_usd"] == 0
    assert sl["spent_this_month_usd"] * 1e9 <= cap + 1


async def test_embeddings_are_recorded_and_priced(tmp_path: Path) -> None:
    from hearth.engine.embedding import FakeEmbedder

    app = make_app(FakeEngine("m", context_length=512), tmp_path, with_platform=True,
                   embedders=[FakeEmbedder("emb")], prices={"emb": {"input": 1}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        pf = Pf(app, c, app.state.runtime.registry.engines()[0])
        t0 = int(time.time()) - 5
        r = await c.post("/v1/embeddings", json={"model": "emb", "input": ["one two three", "four"]},
                         headers=pf.h(pf.key))
        assert r.status_code == 200, r.text
        tokens = r.json()["usage"]["prompt_tokens"]
        page = await pf.ok("GET", "/usage/embeddings", params={"start_time": t0, "group_by": "model"})
        (res,) = page["data"][0]["results"]
        assert res == {"object": "organization.usage.embeddings.result", "input_tokens": tokens,
                       "num_model_requests": 1, "project_id": None, "user_id": None, "api_key_id": None,
                       "model": "emb"}
        chat = await pf.ok("GET", "/usage/completions", params={"start_time": t0})
        assert chat["data"][0]["results"] == []
        costs = await pf.ok("GET", "/costs", params={"start_time": t0})
        assert costs["data"][0]["results"][0]["amount"]["value"] == pytest.approx(tokens * 1000 / 1e9)
        rl = await pf.ok("GET", f"/projects/{pf.project}/rate_limits")
        assert [x["model"] for x in rl["data"]] == ["emb", "hearth-moderation-1", "m"]


async def test_moderations_are_recorded_with_their_token_counts(tmp_path: Path) -> None:
    app = make_app(FakeEngine("m", context_length=512), tmp_path, with_platform=True,
                   moderation={"backend": "fake"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        pf = Pf(app, c, app.state.runtime.registry.engines()[0])
        t0 = int(time.time()) - 5
        r = await c.post("/v1/moderations", json={"input": ["one two three", "four five"]}, headers=pf.h(pf.key))
        assert r.status_code == 200, r.text
        page = await pf.ok("GET", "/usage/moderations", params={"start_time": t0, "group_by": ["model"]})
        (res,) = page["data"][0]["results"]
        assert res["object"] == "organization.usage.moderations.result"
        assert (res["input_tokens"], res["num_model_requests"], res["model"]) == (5, 1, "fake-moderation")
