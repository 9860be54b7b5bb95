"""The official `openai` SDK against the app (FakeEngine backend): every object parses into its types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from hearth.engine.backends.fake import FakeEngine
from tests.conftest import API_KEY, make_app

MSGS: list[Any] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


def sdk_for(app: Any, api_key: str = API_KEY) -> AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test")
    return AsyncOpenAI(base_url="http://hearth.test/v1", api_key=api_key, http_client=http, max_retries=0)


async def test_create_non_stream(sdk: AsyncOpenAI, fake_engine: FakeEngine) -> None:
    r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=5)
    assert isinstance(r, ChatCompletion)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == "fake-model"
    assert r.system_fingerprint and r.system_fingerprint.startswith("fp_")
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0 and c.finish_reason == "length"
    assert c.message.role == "assistant" and c.message.content
    assert c.message.tool_calls is None
    assert isinstance(r.usage, CompletionUsage)
    assert r.usage.completion_tokens == 5
    assert r.usage.prompt_tokens == len(fake_engine.requests[-1].prompt_tokens)
    assert r.usage.total_tokens == r.usage.prompt_tokens + 5
    assert r.usage.prompt_tokens_details is not None and r.usage.prompt_tokens_details.cached_tokens == 0
    # No field the SDK does not know about.
    assert not (r.model_extra or {}) and not (c.model_extra or {}) and not (c.message.model_extra or {})


async def test_alias_model(sdk: AsyncOpenAI) -> None:
    r = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_completion_tokens=2)
    assert r.model == "gpt-4o-mini" and r.usage is not None and r.usage.completion_tokens == 2


async def test_stream_matches_non_stream(sdk: AsyncOpenAI) -> None:
    kw: dict[str, Any] = {"model": "fake-model", "messages": MSGS, "seed": 99, "temperature": 1.0}
    full = await sdk.chat.completions.create(**kw)
    stream = await sdk.chat.completions.create(stream=True, **kw)
    chunks = [c async for c in stream]
    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


async def test_stream_include_usage(sdk: AsyncOpenAI, fake_engine: FakeEngine) -> None:
    stream = await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=4, stream=True,
                                               stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 4
    assert last.usage.prompt_tokens == len(fake_engine.requests[-1].prompt_tokens)
    assert all(c.usage is None for c in chunks[:-1])


async def test_n3(sdk: AsyncOpenAI) -> None:
    r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, n=3, seed=5, max_tokens=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage is not None and r.usage.completion_tokens == 9
    stream = await sdk.chat.completions.create(model="fake-model", messages=MSGS, n=3, seed=5, max_tokens=3,
                                               stream=True)
    texts = {0: "", 1: "", 2: ""}
    finishes = {}
    async for chunk in stream:
        for ch in chunk.choices:
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    assert texts == {c.index: c.message.content for c in r.choices}
    assert finishes == {0: "length", 1: "length", 2: "length"}


async def test_stop_and_seed(tmp_path: Path) -> None:
    app = make_app(FakeEngine(context_length=256, reply="alpha beta gamma delta"), tmp_path)
    async with sdk_for(app) as sdk:
        r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, stop=["gamma"])
        assert r.choices[0].message.content == "alpha beta " and r.choices[0].finish_reason == "stop"
        r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, stop="beta gam", stream=True)
        parts = [c.choices[0].delta.content or "" async for c in r if c.choices]
        assert "".join(parts) == "alpha " and not any("beta" in p or "gam" in p for p in parts)


async def test_seed(sdk: AsyncOpenAI) -> None:
    async def text(seed: int) -> str:
        r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, seed=seed, temperature=1)
        return r.choices[0].message.content or ""

    assert await text(1) == await text(1)
    assert await text(1) != await text(2)


async def test_logprobs(sdk: AsyncOpenAI) -> None:
    r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=3, logprobs=True,
                                          top_logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None and len(lp.content) == 3
    for t in lp.content:
        assert t.bytes == list(t.token.encode())
        assert len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token
    assert "".join(t.token for t in lp.content) == r.choices[0].message.content
    stream = await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=3, logprobs=True,
                                               top_logprobs=4, stream=True)
    entries = [t async for c in stream if c.choices and c.choices[0].logprobs
               for t in (c.choices[0].logprobs.content or [])]
    assert len(entries) == 3 and all(len(t.top_logprobs) == 4 for t in entries)


async def test_raw_response_headers(sdk: AsyncOpenAI) -> None:
    raw = await sdk.chat.completions.with_raw_response.create(model="fake-model", messages=MSGS, max_tokens=1)
    assert raw.status_code == 200
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["openai-processing-ms"]) >= 0
    parsed = raw.parse()
    assert isinstance(parsed, ChatCompletion)
    assert parsed._request_id == raw.headers["x-request-id"]  # the SDK reads the same header


async def test_models(sdk: AsyncOpenAI) -> None:
    page = await sdk.models.list()
    ids = [m.id for m in page.data]
    assert ids[:2] == ["fake-model", "hearth-moderation-1"] and "gpt-4o-mini" in ids
    assert "omni-moderation-latest" in ids
    assert all(isinstance(m, Model) and m.object == "model" for m in page.data)
    m = await sdk.models.retrieve("fake-model")
    assert isinstance(m, Model) and m.id == "fake-model" and m.owned_by
    with pytest.raises(openai.NotFoundError) as ei:
        await sdk.models.retrieve("nope")
    assert ei.value.status_code == 404 and ei.value.code == "model_not_found"


# ------------------------------------------------------------------ errors -> SDK exceptions


@pytest.mark.parametrize(
    "kw,param,code",
    [
        ({"temperature": 3}, "temperature", "invalid_value"),
        ({"n": 0}, "n", "invalid_value"),
        ({"top_logprobs": 3}, "top_logprobs", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"logit_bias": {"abc": 1}}, "logit_bias", "invalid_value"),
        ({"messages": []}, "messages", "invalid_value"),
        ({"max_tokens": 10_000}, "messages", "context_length_exceeded"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "strin"}}}]},
         "tools[0].function.parameters.type", "invalid_json_schema"),
        ({"tool_choice": "required"}, "tool_choice", "invalid_value"),
        ({"response_format": {"type": "json_object"}}, "messages", "invalid_value"),
        ({"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}},
         "response_format.json_schema.schema.additionalProperties", "invalid_json_schema"),
        ({"modalities": ["audio"]}, "modalities", "unsupported_parameter"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate", "unknown_parameter"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
         "messages[0].content[0].type", "unsupported_content_type"),
    ],
)
async def test_bad_request_errors(sdk: AsyncOpenAI, kw: dict[str, Any], param: str, code: str) -> None:
    args: dict[str, Any] = {"model": "fake-model", "messages": MSGS}
    args.update(kw)
    with pytest.raises(openai.BadRequestError) as ei:
        await sdk.chat.completions.create(**args)
    e = ei.value
    assert e.status_code == 400
    assert e.param == param and e.code == code and e.type == "invalid_request_error"
    assert isinstance(e.body, dict) and e.body["param"] == param
    assert e.request_id is not None and e.request_id.startswith("req_")


async def test_bad_request_on_stream(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await sdk.chat.completions.create(model="fake-model", messages=MSGS, temperature=9, stream=True)
    assert ei.value.param == "temperature"


async def test_not_found(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        await sdk.chat.completions.create(model="nope", messages=MSGS)
    assert ei.value.code == "model_not_found" and ei.value.param == "model"


async def test_authentication_error(app: Any) -> None:
    async with sdk_for(app, api_key="sk-wrong-key-123456789") as sdk:
        with pytest.raises(openai.AuthenticationError) as ei:
            await sdk.chat.completions.create(model="fake-model", messages=MSGS)
        assert ei.value.status_code == 401 and ei.value.code == "invalid_api_key"
        assert "sk-wrong-key-123456789" not in str(ei.value)
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()


async def test_internal_server_error(tmp_path: Path) -> None:
    app = make_app(FakeEngine(context_length=256, fail_at_token=0), tmp_path)
    async with sdk_for(app) as sdk:
        with pytest.raises(openai.InternalServerError) as ei:
            await sdk.chat.completions.create(model="fake-model", messages=MSGS)
    assert ei.value.status_code == 500 and ei.value.code == "engine_error"
    assert ei.value.type == "server_error"


async def test_mid_stream_error(tmp_path: Path) -> None:
    app = make_app(FakeEngine(context_length=256, fail_at_token=3), tmp_path)
    async with sdk_for(app) as sdk:
        stream = await sdk.chat.completions.create(model="fake-model", messages=MSGS, stream=True)
        got: list[str] = []
        with pytest.raises(openai.APIError) as ei:
            async for chunk in stream:
                got.extend(ch.delta.content or "" for ch in chunk.choices)
    e = ei.value
    assert not isinstance(e, openai.APIStatusError)  # the status was 200; the error came in-band
    assert e.code == "engine_error" and e.type == "server_error"
    assert len("".join(got).split()) == 3
