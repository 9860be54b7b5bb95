"""GET /metrics: Prometheus exposition of engine state, request outcomes and latencies."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hearth.engine.backends.fake import FakeEngine
from hearth.engine.registry import EngineRegistry
from hearth.engine.types import ModelInfo
from hearth.services.metrics import Metrics
from tests.conftest import API_KEY, LiveServer, make_app, wait_until

URL = "/v1/chat/completions"
CHAT = "chat.completions"


def body(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}
    out.update(kw)
    return out


class Samples:
    """Parsed exposition: value(name, **labels), None when the series is absent."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                self.values[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, frozenset(labels.items())))


async def scrape(c: httpx.AsyncClient) -> Samples:
    r = await c.get("/metrics", headers={"Authorization": ""})  # no key needed
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Samples(r.text)


async def test_metrics_after_stream_and_non_stream(client: httpx.AsyncClient) -> None:
    empty = await scrape(client)
    assert empty.value("hearth_sequences_running", model="fake-model") == 0
    assert empty.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="stop") is None

    r1 = await client.post(URL, json=body(max_tokens=3))
    r2 = await client.post(URL, json=body(stream=True))  # 24 tokens, ends with "stop"
    r3 = await client.post(URL, json=body(model="gpt-4o-mini", max_tokens=2))  # alias: same model label
    assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 200)

    m = await scrape(client)
    assert m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="length") == 2
    assert m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="stop") == 1
    assert m.value("hearth_time_to_first_token_seconds_count", model="fake-model") == 3
    # Each request observes one gap per token after its first: 2 + 23 + 1.
    assert m.value("hearth_inter_token_latency_seconds_count", model="fake-model") == 26
    assert m.value("hearth_request_duration_seconds_count", model="fake-model", endpoint=CHAT) == 3
    assert (m.value("hearth_request_duration_seconds_sum", model="fake-model", endpoint=CHAT) or 0) > 0
    assert m.value("hearth_time_to_first_token_seconds_bucket", model="fake-model", le="+Inf") == 3
    # Engine gauges and counters, read from FakeEngine.metrics() at scrape time.
    assert m.value("hearth_sequences_running", model="fake-model") == 0
    assert m.value("hearth_sequences_waiting", model="fake-model") == 0
    assert m.value("hearth_kv_cache_used_tokens", model="fake-model") == 0
    assert m.value("hearth_kv_cache_usage_ratio", model="fake-model") == 0
    assert m.value("hearth_kv_cache_capacity_tokens", model="fake-model") == 256
    assert m.value("hearth_generation_tokens_total", model="fake-model") == 3 + 24 + 2
    assert m.value("hearth_prompt_tokens_total", model="fake-model") == 3 * 3  # "<|user|>hello there <|assistant|>"
    assert m.value("hearth_prefix_cache_hit_tokens_total", model="fake-model") == 0


async def test_client_errors_are_counted_without_latency(client: httpx.AsyncClient) -> None:
    assert (await client.post(URL, json=body(model="no-such-model"))).status_code == 404
    assert (await client.post(URL, json=body(max_tokens=10_000))).status_code == 400
    m = await scrape(client)
    # An unknown model name never becomes a label value (unbounded cardinality).
    assert m.value("hearth_requests_total", model="unknown", endpoint=CHAT, outcome="client_error") == 1
    assert m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="client_error") == 1
    assert not any(k[0].startswith("hearth_requests") and ("model", "no-such-model") in k[1] for k in m.values)
    assert m.value("hearth_request_duration_seconds_count", model="fake-model", endpoint=CHAT) is None


async def test_engine_failure_is_a_server_error(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256, fail_at_token=2)
    app = make_app(eng, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        assert (await c.post(URL, json=body())).status_code == 500
        s = await c.post(URL, json=body(stream=True))
        assert s.status_code == 200 and '"error"' in s.text
        m = await scrape(c)
    assert m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="server_error") == 2
    assert m.value("hearth_request_duration_seconds_count", model="fake-model", endpoint=CHAT) == 2
    assert m.value("hearth_sequences_running", model="fake-model") == 0


async def test_n_choices_observe_one_ttft(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(n=3, max_tokens=4, stream=True))
    assert r.status_code == 200
    m = await scrape(client)
    assert m.value("hearth_time_to_first_token_seconds_count", model="fake-model") == 1
    assert m.value("hearth_inter_token_latency_seconds_count", model="fake-model") == 3 * 3
    assert m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="length") == 1


async def test_running_gauge_and_cancelled_outcome_on_disconnect(tmp_path: Path) -> None:
    reply = " ".join(f"w{i}" for i in range(200))
    eng = FakeEngine(context_length=4096, reply=reply, token_delay_s=0.05)
    app = make_app(eng, tmp_path)
    with LiveServer(app) as srv:
        async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {API_KEY}"},
                                     timeout=10) as c:
            async with c.stream("POST", URL, json=body(stream=True)) as r:
                assert r.status_code == 200
                got = 0
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        got += 1
                        if got == 3:  # scrape mid-stream (leaving the loop closes the response)
                            live = await scrape(c)
                            break
                assert live.value("hearth_sequences_running", model="fake-model") == 1
                assert (live.value("hearth_kv_cache_used_tokens", model="fake-model") or 0) >= 3 + 2
                assert 0 < (live.value("hearth_kv_cache_usage_ratio", model="fake-model") or 0) < 1
            assert await wait_until(lambda: len(eng.requests) == 1 and not eng.active, 2.0)

            async def cancelled() -> Samples:
                for _ in range(100):
                    m = await scrape(c)
                    if m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="cancelled"):
                        return m
                    await asyncio.sleep(0.02)
                return m

            m = await cancelled()
    assert m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="cancelled") == 1
    assert m.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="stop") is None
    assert m.value("hearth_sequences_running", model="fake-model") == 0
    assert m.value("hearth_kv_cache_used_tokens", model="fake-model") == 0
    assert m.value("hearth_request_duration_seconds_count", model="fake-model", endpoint=CHAT) == 1
    assert m.value("hearth_time_to_first_token_seconds_count", model="fake-model") == 1


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    a, b = make_app(FakeEngine("fake-model"), tmp_path), make_app(FakeEngine("fake-model"), tmp_path)
    hdr = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://a", headers=hdr) as ca, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=b), base_url="http://b", headers=hdr) as cb:
        assert (await ca.post(URL, json=body(max_tokens=1))).status_code == 200
        ma, mb = await scrape(ca), await scrape(cb)
    assert ma.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="length") == 1
    assert mb.value("hearth_requests_total", model="fake-model", endpoint=CHAT, outcome="length") is None


class _NoMetricsEngine:
    """A backend that predates Engine.metrics()."""

    def __init__(self) -> None:
        self.info = ModelInfo(id="legacy", context_length=8, chat_template=None, bos_token="", eos_token="")


def test_engines_without_metrics_report_zeros() -> None:
    m = Metrics(EngineRegistry([_NoMetricsEngine(), FakeEngine("fake-model")]))  # type: ignore[list-item]
    s = Samples(m.render().decode())
    assert s.value("hearth_sequences_running", model="legacy") == 0
    assert s.value("hearth_kv_cache_usage_ratio", model="legacy") == 0
    assert s.value("hearth_generation_tokens_total", model="legacy") == 0
    assert s.value("hearth_kv_cache_capacity_tokens", model="fake-model") == 4096
