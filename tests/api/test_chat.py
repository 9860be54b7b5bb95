"""POST /v1/chat/completions over FakeEngine: shapes, parameters, streaming, errors, auth, logging."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.engine.backends.fake import FakeEngine
from hearth.engine.errors import GenerationFailed
from tests.conftest import API_KEY, LiveServer, make_app, wait_until

URL = "/v1/chat/completions"
ENVELOPE_KEYS = {"message", "type", "param", "code"}
ID_RE = re.compile(r"^chatcmpl-[0-9A-Za-z]{22}$")


def body(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}
    out.update(kw)
    return out


@asynccontextmanager
async def client_for(engine: FakeEngine, tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(engine, tmp_path, **settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order; asserts the framing is clean."""
    assert text.endswith("\n\n"), text[-50:]
    out = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        out.append(block[len("data: "):])
    return out


def chunks_of(text: str) -> list[dict[str, Any]]:
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    return [json.loads(e) for e in events[:-1]]


def content_of(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in chunks if c["choices"] and c["choices"][0]["index"] == index)


def assert_error(r: httpx.Response, status: int, type_: str, param: str | None, code: str | None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert set(data) == {"error"}, data
    assert "detail" not in r.text
    err = data["error"]
    assert set(err) == ENVELOPE_KEYS, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == type_
    assert err["param"] == param
    assert err["code"] == code
    assert r.headers["x-request-id"].startswith("req_")
    assert "openai-processing-ms" in r.headers
    return err


# ------------------------------------------------------------------ non-stream shape


async def test_non_stream_shape(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    d = r.json()
    assert ID_RE.match(d["id"]), d["id"]
    assert d["object"] == "chat.completion"
    assert isinstance(d["created"], int) and d["created"] > 1_600_000_000
    assert d["model"] == "fake-model"
    assert re.match(r"^fp_[0-9a-f]{10}$", d["system_fingerprint"])
    assert len(d["choices"]) == 1
    ch = d["choices"][0]
    assert ch["index"] == 0
    assert ch["finish_reason"] == "stop"
    assert ch["logprobs"] is None
    assert ch["message"]["role"] == "assistant"
    assert isinstance(ch["message"]["content"], str) and ch["message"]["content"]
    req = fake_engine.requests[-1]
    u = d["usage"]
    assert u["prompt_tokens"] == len(req.prompt_tokens)
    # The rendered prompt for the fake template, tokenized by whitespace.
    assert u["prompt_tokens"] == len(fake_engine.tokenize("<|user|>hello there\n<|assistant|>"))
    assert u["completion_tokens"] == len(ch["message"]["content"].split()) == fake_engine.reply_tokens
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"]["cached_tokens"] == 0
    assert "completion_tokens_details" in u


async def test_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {(await client.post(URL, json=body(max_tokens=1))).json()["id"] for _ in range(5)}
    assert len(ids) == 5


async def test_model_echoes_alias(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body(model="gpt-4o-mini", max_tokens=3))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["model"] == "gpt-4o-mini"
    assert d["usage"]["completion_tokens"] == 3
    assert len(fake_engine.requests) == 1


async def test_finish_reason_length(client: httpx.AsyncClient) -> None:
    d = (await client.post(URL, json=body(max_tokens=4))).json()
    assert d["choices"][0]["finish_reason"] == "length"
    assert d["usage"]["completion_tokens"] == 4
    assert len(d["choices"][0]["message"]["content"].split()) == 4


async def test_exact_reply_and_usage(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256, reply="one two three")
    async with client_for(eng, tmp_path) as c:
        d = (await c.post(URL, json=body())).json()
    assert d["choices"][0]["message"]["content"] == "one two three"
    assert d["choices"][0]["finish_reason"] == "stop"
    assert d["usage"]["completion_tokens"] == 3
    assert d["usage"]["prompt_tokens"] == 3
    assert d["usage"]["total_tokens"] == 6


# ------------------------------------------------------------------ messages


async def test_roles_and_multi_turn(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "no emojis"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    r = await client.post(URL, json=body(messages=msgs, max_tokens=2))
    assert r.status_code == 200, r.text
    expected = ("<|system|>be brief\n<|developer|>no emojis\n<|user|>first question\n"
                "<|assistant|>first answer\n<|user|>second question\n<|assistant|>")
    req = fake_engine.requests[-1]
    assert req.prompt_tokens == tuple(fake_engine.tokenize(expected))
    assert r.json()["usage"]["prompt_tokens"] == len(expected.split())


async def test_content_as_text_parts(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    msgs = [
        {"role": "system", "content": [{"type": "text", "text": "sys "}, {"type": "text", "text": "part"}]},
        {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": "again"},
    ]
    r = await client.post(URL, json=body(messages=msgs, max_tokens=1))
    assert r.status_code == 200, r.text
    expected = "<|system|>sys part\n<|user|>hello world\n<|assistant|>ok\n<|user|>again\n<|assistant|>"
    assert fake_engine.requests[-1].prompt_tokens == tuple(fake_engine.tokenize(expected))


async def test_assistant_message_with_extra_sdk_keys(client: httpx.AsyncClient) -> None:
    msgs = [{"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "refusal": None, "annotations": []},
            {"role": "user", "content": "c"}]
    r = await client.post(URL, json=body(messages=msgs, max_tokens=1))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("i,j", [(0, 0), (1, 1)])
async def test_image_part_rejected(client: httpx.AsyncClient, fake_engine: FakeEngine, i: int, j: int) -> None:
    img = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    msgs: list[dict[str, Any]] = [{"role": "user", "content": [img]}]
    if i == 1:
        msgs = [{"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "look"}, img]}]
    r = await client.post(URL, json=body(messages=msgs))
    err = assert_error(r, 400, "invalid_request_error", f"messages[{i}].content[{j}].type",
                       "unsupported_content_type")
    assert "image_url" in err["message"]
    assert fake_engine.requests == []


# ------------------------------------------------------------------ parameters reach the engine


async def test_all_sampling_params_passed(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body(
        max_tokens=7, temperature=0.7, top_p=0.9, top_k=40, min_p=0.05, seed=1234, stop=["xx", "yy"],
        presence_penalty=0.5, frequency_penalty=-0.5, logit_bias={"42": 5, "9": -100, "7": 1.5},
        logprobs=True, top_logprobs=3, user="u-1", metadata={"k": "v"}, store=False,
        safety_identifier="s", prompt_cache_key="pk", service_tier="auto", parallel_tool_calls=False,
    ))
    assert r.status_code == 200, r.text
    p = fake_engine.requests[-1].params
    assert p.max_tokens == 7
    assert p.temperature == 0.7
    assert p.top_p == 0.9
    assert p.top_k == 40
    assert p.min_p == 0.05
    assert p.seed == 1234
    assert p.stop == ("xx", "yy")
    assert p.presence_penalty == 0.5
    assert p.frequency_penalty == -0.5
    assert p.logit_bias == {42: 5, 9: -100, 7: 1.5}
    assert all(isinstance(k, int) for k in p.logit_bias)
    assert p.logprobs is True
    assert p.top_logprobs == 3


async def test_defaults_passed(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body())
    assert r.status_code == 200
    req = fake_engine.requests[-1]
    p = req.params
    # No max_tokens: the rest of the context window.
    assert p.max_tokens == 256 - len(req.prompt_tokens)
    assert (p.temperature, p.top_p, p.top_k, p.min_p) == (1.0, 1.0, 0, 0.0)
    assert (p.presence_penalty, p.frequency_penalty) == (0.0, 0.0)
    assert p.seed is None and p.stop == () and p.logit_bias == {}
    assert p.logprobs is False and p.top_logprobs == 0


async def test_temperature_zero_and_stop_string(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body(temperature=0, stop="zz"))
    assert r.status_code == 200
    p = fake_engine.requests[-1].params
    assert p.temperature == 0.0 and p.greedy
    assert p.stop == ("zz",)


async def test_max_completion_tokens(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    d = (await client.post(URL, json=body(max_completion_tokens=5))).json()
    assert fake_engine.requests[-1].params.max_tokens == 5
    assert d["usage"]["completion_tokens"] == 5
    assert d["choices"][0]["finish_reason"] == "length"
    # max_completion_tokens wins over the deprecated max_tokens.
    await client.post(URL, json=body(max_completion_tokens=2, max_tokens=9))
    assert fake_engine.requests[-1].params.max_tokens == 2


async def test_n_choices(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body(n=3, seed=10, max_tokens=4))
    assert r.status_code == 200, r.text
    d = r.json()
    assert [c["index"] for c in d["choices"]] == [0, 1, 2]
    assert len(fake_engine.requests) == 3
    assert sorted(rq.params.seed for rq in fake_engine.requests) == [10, 11, 12]
    assert len({rq.request_id for rq in fake_engine.requests}) == 3
    assert d["usage"]["completion_tokens"] == 12
    assert d["usage"]["prompt_tokens"] == len(fake_engine.requests[0].prompt_tokens)
    contents = [c["message"]["content"] for c in d["choices"]]
    assert len(set(contents)) > 1  # different seeds, different text


# ------------------------------------------------------------------ stop strings


async def test_stop_truncates(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256, reply="alpha beta gamma delta")
    async with client_for(eng, tmp_path) as c:
        d = (await c.post(URL, json=body(stop="gamma"))).json()
        assert d["choices"][0]["message"]["content"] == "alpha beta "
        assert d["choices"][0]["finish_reason"] == "stop"
        assert d["usage"]["completion_tokens"] == 3
        d = (await c.post(URL, json=body(stop=["nope", "delta", "beta"]))).json()
        assert d["choices"][0]["message"]["content"] == "alpha "
        # A stop string that never completes is released at the end.
        d = (await c.post(URL, json=body(stop="delta epsilon"))).json()
        assert d["choices"][0]["message"]["content"] == "alpha beta gamma delta"


async def test_stop_spanning_tokens_in_stream(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256, reply="alpha beta gamma delta")
    async with client_for(eng, tmp_path) as c:
        r = await c.post(URL, json=body(stop="beta gam", stream=True))
    chunks = chunks_of(r.text)
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    for piece in pieces:
        if piece:
            assert "b" not in piece and "gam" not in piece, pieces
    assert content_of(chunks) == "alpha "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ------------------------------------------------------------------ streaming


async def test_stream_shape(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body(stream=True, max_tokens=5))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-request-id"].startswith("req_")
    assert "openai-processing-ms" in r.headers
    assert r.text.endswith("data: [DONE]\n\n")
    chunks = chunks_of(r.text)
    first = chunks[0]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["choices"][0]["finish_reason"] is None
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert c["id"] == first["id"] and ID_RE.match(c["id"])
        assert c["created"] == first["created"]
        assert c["model"] == "fake-model"
        assert c["system_fingerprint"] == first["system_fingerprint"]
        assert "usage" not in c or c["usage"] is None
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["choices"][0]["delta"] == {}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    # Content deltas carry no role.
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert len(content_of(chunks).split()) == 5


async def test_stream_equals_non_stream(client: httpx.AsyncClient) -> None:
    req = body(seed=7, temperature=1)
    full = (await client.post(URL, json=req)).json()
    r = await client.post(URL, json={**req, "stream": True})
    chunks = chunks_of(r.text)
    assert content_of(chunks) == full["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"] == "stop"


async def test_stream_include_usage(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body(stream=True, max_tokens=6, stream_options={"include_usage": True}))
    chunks = chunks_of(r.text)
    last = chunks[-1]
    assert last["choices"] == []
    u = last["usage"]
    assert u["prompt_tokens"] == len(fake_engine.requests[-1].prompt_tokens)
    assert u["completion_tokens"] == 6
    assert u["total_tokens"] == u["prompt_tokens"] + 6
    assert u["prompt_tokens_details"]["cached_tokens"] == 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert all(c.get("usage") is None for c in chunks[:-1])


async def test_stream_n2(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(stream=True, n=2, seed=3, max_tokens=4,
                                         stream_options={"include_usage": True}))
    chunks = chunks_of(r.text)
    assert {c["choices"][0]["index"] for c in chunks if c["choices"]} == {0, 1}
    assert [c["index"] for c in chunks[0]["choices"]] == [0, 1]
    assert all(c["delta"] == {"role": "assistant", "content": ""} for c in chunks[0]["choices"])
    for i in (0, 1):
        finals = [c for c in chunks if c["choices"] and c["choices"][0]["index"] == i
                  and c["choices"][0]["finish_reason"] is not None]
        assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "length"
        assert len(content_of(chunks, i).split()) == 4
    assert chunks[-1]["usage"]["completion_tokens"] == 8


async def test_stream_options_without_stream(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(stream_options={"include_usage": True}))
    assert_error(r, 400, "invalid_request_error", "stream_options", "invalid_value")


# ------------------------------------------------------------------ logprobs


def _check_logprobs(entries: list[dict[str, Any]], top: int) -> None:
    assert entries
    for e in entries:
        assert set(e) == {"token", "bytes", "logprob", "top_logprobs"}
        assert isinstance(e["token"], str)
        assert e["bytes"] == list(e["token"].encode())
        assert isinstance(e["logprob"], float) and e["logprob"] <= 0
        assert len(e["top_logprobs"]) == top
        for t in e["top_logprobs"]:
            assert set(t) == {"token", "bytes", "logprob"}
        if top:
            assert e["top_logprobs"][0]["token"] == e["token"]


async def test_logprobs_non_stream(client: httpx.AsyncClient) -> None:
    d = (await client.post(URL, json=body(logprobs=True, top_logprobs=2, max_tokens=5))).json()
    lp = d["choices"][0]["logprobs"]
    assert lp["content"] is not None and len(lp["content"]) == 5
    _check_logprobs(lp["content"], 2)
    assert "".join(e["token"] for e in lp["content"]) == d["choices"][0]["message"]["content"]


async def test_logprobs_without_top(client: httpx.AsyncClient) -> None:
    d = (await client.post(URL, json=body(logprobs=True, max_tokens=3))).json()
    _check_logprobs(d["choices"][0]["logprobs"]["content"], 0)


async def test_logprobs_stream(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(logprobs=True, top_logprobs=3, max_tokens=4, stream=True))
    chunks = chunks_of(r.text)
    entries = [e for c in chunks if c["choices"] and c["choices"][0].get("logprobs")
               for e in c["choices"][0]["logprobs"]["content"]]
    assert len(entries) == 4
    _check_logprobs(entries, 3)
    assert "".join(e["token"] for e in entries) == content_of(chunks)


# ------------------------------------------------------------------ seed


async def test_seed_reproducible(client: httpx.AsyncClient) -> None:
    a = (await client.post(URL, json=body(seed=42, temperature=1))).json()
    b = (await client.post(URL, json=body(seed=42, temperature=1))).json()
    c = (await client.post(URL, json=body(seed=43, temperature=1))).json()
    ta, tb, tc = (x["choices"][0]["message"]["content"] for x in (a, b, c))
    assert ta == tb
    assert ta != tc


# ------------------------------------------------------------------ errors


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, content=b'{"model": "fake-model", "messages": [', headers={
        "content-type": "application/json"})
    err = assert_error(r, 400, "invalid_request_error", None, None)
    assert "JSON" in err["message"]


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null"])
async def test_body_not_an_object(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post(URL, content=raw, headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_request_error", None, None)


async def test_empty_body(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, content=b"", headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_request_error", None, None)


async def test_wrong_content_type(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, content=json.dumps(body()).encode(), headers={"content-type": "text/plain"})
    assert_error(r, 400, "invalid_request_error", None, None)


async def test_missing_messages(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"model": "fake-model"})
    err = assert_error(r, 400, "invalid_request_error", "messages", "missing_required_parameter")
    assert "messages" in err["message"]


async def test_missing_model(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"messages": [{"role": "user", "content": "x"}]})
    assert_error(r, 400, "invalid_request_error", "model", "missing_required_parameter")


async def test_missing_content(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(messages=[{"role": "user"}]))
    assert_error(r, 400, "invalid_request_error", "messages[0].content", "missing_required_parameter")


async def test_empty_messages(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(messages=[]))
    assert_error(r, 400, "invalid_request_error", "messages", "invalid_value")


@pytest.mark.parametrize("msg", [{"role": "robot", "content": "x"}, {"content": "x"}, "hello"])
async def test_bad_role(client: httpx.AsyncClient, msg: Any) -> None:
    r = await client.post(URL, json=body(messages=[msg]))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == ENVELOPE_KEYS
    assert err["type"] == "invalid_request_error"
    assert err["param"] is not None and err["param"].startswith("messages[0]"), err


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"top_logprobs": 2, "logprobs": False}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"12": 200}}, "logit_bias"),
        ({"logit_bias": {"12": -101}}, "logit_bias"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": "maybe"}, "stream"),
    ],
)
async def test_invalid_values(client: httpx.AsyncClient, fake_engine: FakeEngine, extra: dict, param: str) -> None:
    r = await client.post(URL, json=body(**extra))
    assert_error(r, 400, "invalid_request_error", param, "invalid_value")
    assert fake_engine.requests == []


async def test_unknown_argument(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(frobnicate=True))
    err = assert_error(r, 400, "invalid_request_error", "frobnicate", "unknown_parameter")
    assert "frobnicate" in err["message"]


async def test_unknown_model(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(model="no-such-model"))
    err = assert_error(r, 404, "invalid_request_error", "model", "model_not_found")
    assert "no-such-model" in err["message"]


async def test_unknown_model_stream(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body(model="no-such-model", stream=True))
    assert_error(r, 404, "invalid_request_error", "model", "model_not_found")


async def test_context_length_exceeded(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    r = await client.post(URL, json=body(max_tokens=254))
    err = assert_error(r, 400, "invalid_request_error", "messages", "context_length_exceeded")
    assert "256" in err["message"]
    assert fake_engine.requests == []
    # Exactly at the limit is fine: prompt is 3 tokens.
    r = await client.post(URL, json=body(max_tokens=253))
    assert r.status_code == 200, r.text


async def test_prompt_alone_over_context(client: httpx.AsyncClient) -> None:
    long = " ".join(["word"] * 300)
    r = await client.post(URL, json=body(messages=[{"role": "user", "content": long}], stream=True))
    assert_error(r, 400, "invalid_request_error", "messages", "context_length_exceeded")


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
    ],
)
async def test_unsupported_parameters(client: httpx.AsyncClient, fake_engine: FakeEngine, extra: dict,
                                      param: str) -> None:
    r = await client.post(URL, json=body(**extra))
    err = assert_error(r, 400, "invalid_request_error", param, "unsupported_parameter")
    assert param in err["message"]
    assert fake_engine.requests == []


@pytest.mark.parametrize("extra", [{"tool_choice": "none"}, {"response_format": {"type": "text"}},
                                   {"modalities": ["text"]}])
async def test_harmless_values_of_unsupported_parameters(client: httpx.AsyncClient, extra: dict) -> None:
    r = await client.post(URL, json=body(max_tokens=1, **extra))
    assert r.status_code == 200, r.text


async def test_body_too_large(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256)
    async with client_for(eng, tmp_path, max_body_bytes=2048) as c:
        big = body(messages=[{"role": "user", "content": "x" * 4000}])
        r = await c.post(URL, json=big)
        err = assert_error(r, 413, "invalid_request_error", None, "request_too_large")
        assert "2048" in err["message"]
        ok = await c.post(URL, json=body(max_tokens=1))
        assert ok.status_code == 200


async def test_body_too_large_without_content_length(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256)
    payload = json.dumps(body(messages=[{"role": "user", "content": "x" * 4000}])).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 512):
            yield payload[i:i + 512]

    async with client_for(eng, tmp_path, max_body_bytes=2048) as c:
        r = await c.post(URL, content=chunked(), headers={"content-type": "application/json"})
    assert_error(r, 413, "invalid_request_error", None, "request_too_large")
    assert eng.requests == []


async def test_unknown_route(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/nothing-here", json={})
    err = assert_error(r, 404, "invalid_request_error", None, None)
    assert "/v1/nothing-here" in err["message"]


async def test_wrong_method(client: httpx.AsyncClient) -> None:
    r = await client.get(URL)
    assert_error(r, 405, "invalid_request_error", None, None)


async def test_engine_failure_before_stream(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256, fail_at_token=0)
    async with client_for(eng, tmp_path) as c:
        r = await c.post(URL, json=body())
    err = assert_error(r, 500, "server_error", None, "engine_error")
    assert err["message"] == "The model failed while generating a response. Please retry."
    assert "injected" not in r.text
    assert "Traceback" not in r.text and "GenerationFailed" not in r.text


async def test_engine_failure_mid_stream(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256, fail_at_token=3)
    async with client_for(eng, tmp_path) as c:
        r = await c.post(URL, json=body(stream=True))
    assert r.status_code == 200
    events = sse_events(r.text)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert set(last) == {"error"}
    assert set(last["error"]) == ENVELOPE_KEYS
    assert last["error"]["type"] == "server_error"
    assert last["error"]["code"] == "engine_error"
    assert "injected" not in r.text and "Traceback" not in r.text
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(content_of(chunks).split()) == 3
    assert not eng.active


async def test_engine_failure_mid_stream_n2(tmp_path: Path) -> None:
    eng = FakeEngine(context_length=256, fail_at_token=2)
    async with client_for(eng, tmp_path) as c:
        r = await c.post(URL, json=body(stream=True, n=2, seed=1))
    events = sse_events(r.text)
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "engine_error"
    assert await wait_until(lambda: not eng.active, 1.0)


class OneChoiceFails(FakeEngine):
    """Choice 1 fails after one token; the others generate slowly."""

    async def generate(self, request: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        n = 0
        async for d in super().generate(request):
            yield d
            n += 1
            if request.request_id.endswith("-1") and n == 1:
                raise GenerationFailed("choice 1 broke")


async def test_failed_choice_cancels_siblings(tmp_path: Path) -> None:
    eng = OneChoiceFails(context_length=4096, reply=" ".join(["w"] * 200), token_delay_s=0.02)
    async with client_for(eng, tmp_path) as c:
        r = await c.post(URL, json=body(n=2, seed=1))
        assert_error(r, 500, "server_error", None, "engine_error")
        assert await wait_until(lambda: not eng.active, 0.5), eng.active
        r = await c.post(URL, json=body(n=2, seed=1, stream=True))
        assert json.loads(sse_events(r.text)[-1])["error"]["code"] == "engine_error"
        assert await wait_until(lambda: not eng.active, 0.5), eng.active


def _boom(req: Any) -> str:
    raise RuntimeError("internal detail 0xdeadbeef")


async def test_unexpected_error_is_enveloped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    eng = FakeEngine(context_length=256, reply=_boom)
    async with client_for(eng, tmp_path) as c:
        r = await c.post(URL, json=body())
        err = assert_error(r, 500, "server_error", None, None)
        assert "0xdeadbeef" not in r.text and "RuntimeError" not in r.text
        assert "Traceback" not in err["message"]
        s = await c.post(URL, json=body(stream=True))
    assert s.status_code == 200
    events = sse_events(s.text)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["type"] == "server_error" and "0xdeadbeef" not in s.text
    # The traceback goes to the server log; one access line per request.
    assert any(rec.exc_info for rec in caplog.records if rec.levelno >= logging.ERROR)
    access = [json.loads(x.getMessage()) for x in caplog.records if x.name == "hearth.access"]
    assert [a["status"] for a in access] == [500, 200]
    assert access[0]["request_id"] == r.headers["x-request-id"]


async def test_health_reports_unhealthy_engine(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    await fake_engine.stop()
    r = await client.get("/health")
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}


# ------------------------------------------------------------------ auth


async def test_no_authorization(app: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        r = await c.post(URL, json=body())
        err = assert_error(r, 401, "invalid_request_error", None, None)
        assert "Authorization header" in err["message"] and "Bearer" in err["message"]
        r = await c.get("/v1/models")
        assert r.status_code == 401
        r = await c.post(URL, json=body(), headers={"Authorization": f"Basic {API_KEY}"})
        assert r.status_code == 401
        h = await c.get("/health")
        assert h.status_code == 200 and h.json() == {"status": "ok"}
        assert h.headers["x-request-id"].startswith("req_")


async def test_wrong_key(app: Any, fake_engine: FakeEngine) -> None:
    wrong = "sk-wrong-SECRETSECRET-9876"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {wrong}"}) as c:
        r = await c.post(URL, json=body())
    assert_error(r, 401, "invalid_request_error", None, "invalid_api_key")
    assert wrong not in r.text
    assert "SECRETSECRET" not in r.text
    assert fake_engine.requests == []


async def test_auth_checked_before_body(app: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        r = await c.post(URL, content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 401


# ------------------------------------------------------------------ headers on every response


async def test_request_id_headers_everywhere(client: httpx.AsyncClient) -> None:
    responses = [
        await client.post(URL, json=body(max_tokens=1)),
        await client.post(URL, json=body(max_tokens=1, stream=True)),
        await client.post(URL, json=body(temperature=9)),
        await client.post(URL, json=body(model="nope")),
        await client.get("/v1/models"),
        await client.get("/nope"),
        await client.get(URL),
        await client.get("/health"),
    ]
    ids = set()
    for r in responses:
        assert re.match(r"^req_[0-9A-Za-z]{22}$", r.headers["x-request-id"]), r.headers
        assert int(r.headers["openai-processing-ms"]) >= 0
        ids.add(r.headers["x-request-id"])
    assert len(ids) == len(responses)


# ------------------------------------------------------------------ models


async def test_models(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200
    d = r.json()
    assert d["object"] == "list"
    ids = [m["id"] for m in d["data"]]
    # Chat models, then the moderation classifier, then aliases (the configured one, OpenAI's
    # moderation model names).
    assert ids == ["fake-model", "hearth-moderation-1", "gpt-4o-mini", "omni-moderation-latest",
                   "omni-moderation-2024-09-26", "text-moderation-latest", "text-moderation-stable"]
    for m in d["data"]:
        assert set(m) == {"id", "object", "created", "owned_by"}
        assert m["object"] == "model" and isinstance(m["created"], int)
    r = await client.get("/v1/models/fake-model")
    assert r.status_code == 200
    assert r.json()["id"] == "fake-model" and r.json()["object"] == "model"
    r = await client.get("/v1/models/gpt-4o-mini")
    assert r.status_code == 200 and r.json()["id"] == "gpt-4o-mini"
    r = await client.get("/v1/models/nope")
    assert_error(r, 404, "invalid_request_error", "model", "model_not_found")


# ------------------------------------------------------------------ concurrency


async def test_concurrent_requests(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    async def one(i: int) -> httpx.Response:
        msgs = [{"role": "user", "content": " ".join(["w"] * (i + 1))}]
        return await client.post(URL, json=body(messages=msgs, max_tokens=i % 5 + 1, stream=i % 2 == 1,
                                                stream_options={"include_usage": True} if i % 2 else None))

    rs = await asyncio.gather(*(one(i) for i in range(20)))
    assert len(fake_engine.requests) == 20
    for i, r in enumerate(rs):
        assert r.status_code == 200, r.text
        usage = chunks_of(r.text)[-1]["usage"] if i % 2 else r.json()["usage"]
        assert usage["completion_tokens"] == i % 5 + 1
        # "<|user|>w", i more "w", "<|assistant|>"
        assert usage["prompt_tokens"] == i + 2
    assert not fake_engine.active


# ------------------------------------------------------------------ client disconnect


class CountingEngine(FakeEngine):
    """FakeEngine that counts the tokens each request has produced so far."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.produced: dict[str, int] = {}

    async def generate(self, request: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        self.produced[request.request_id] = 0
        async for d in super().generate(request):
            self.produced[request.request_id] += len(d.token_ids)
            yield d


async def test_disconnect_stops_generation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hearth.access")
    reply = " ".join(f"w{i}" for i in range(200))
    eng = CountingEngine(context_length=4096, reply=reply, token_delay_s=0.05)
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
                        if got == 2:
                            break
            assert await wait_until(lambda: len(eng.requests) == 1 and not eng.active, 1.0), eng.active
            produced = eng.produced[eng.requests[0].request_id]
            await asyncio.sleep(0.2)  # ~4 more token steps: nothing more may be produced
            assert eng.produced[eng.requests[0].request_id] == produced
            assert produced < 30, produced
            assert len(eng.requests) == 1
            # The server still serves new requests afterwards.
            r2 = await c.post(URL, json=body(max_tokens=2))
            assert r2.status_code == 200
        # The access log still records the aborted request, with the tokens it produced.
        assert await wait_until(
            lambda: len([x for x in caplog.records if x.name == "hearth.access"]) == 2, 1.0)
        lines = [json.loads(x.getMessage()) for x in caplog.records if x.name == "hearth.access"]
        aborted = next(ln for ln in lines if ln.get("client_disconnected"))
        assert aborted["request_id"] == r.headers["x-request-id"]
        assert aborted["status"] == 200 and aborted["model"] == "fake-model"
        assert 1 <= aborted["completion_tokens"] <= produced
        assert sum(1 for ln in lines if ln.get("client_disconnected")) == 1


# ------------------------------------------------------------------ logging


async def test_access_log_and_no_secrets(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_prompt = "my-very-private-prompt-text-xyzzy"
    r1 = await client.post(URL, json=body(messages=[{"role": "user", "content": secret_prompt}], max_tokens=3))
    r2 = await client.post(URL, json=body(messages=[{"role": "user", "content": secret_prompt}], max_tokens=2,
                                          stream=True))
    r3 = await client.post(URL, json=body(messages=[{"role": "user", "content": secret_prompt}],
                                          temperature=7))
    assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 400)
    access = [rec for rec in caplog.records if rec.name == "hearth.access"]
    assert len(access) == 3
    lines = [json.loads(rec.getMessage()) for rec in access]
    assert [ln["request_id"] for ln in lines] == [r.headers["x-request-id"] for r in (r1, r2, r3)]
    assert [ln["status"] for ln in lines] == [200, 200, 400]
    for ln in lines:
        assert ln["path"] == URL and ln["method"] == "POST"
        assert isinstance(ln["latency_ms"], (int, float)) and ln["latency_ms"] >= 0
    assert lines[0]["model"] == "fake-model"
    assert lines[0]["prompt_tokens"] == 2 and lines[0]["completion_tokens"] == 3
    assert lines[0]["finish"] == "length"
    assert lines[1]["model"] == "fake-model" and lines[1]["completion_tokens"] == 2
    for rec in caplog.records:
        text = rec.getMessage() + (rec.exc_text or "") + str(rec.args or "")
        assert secret_prompt not in text
        assert API_KEY not in text


async def test_wrong_key_never_logged(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-SECRETSECRET-9876"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {wrong}"}) as c:
        r = await c.post(URL, json=body())
    assert r.status_code == 401
    access = [rec for rec in caplog.records if rec.name == "hearth.access"]
    assert len(access) == 1 and json.loads(access[0].getMessage())["status"] == 401
    for rec in caplog.records:
        assert "SECRETSECRET" not in rec.getMessage()


async def test_engine_failure_logged_without_prompt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    eng = FakeEngine(context_length=256, fail_at_token=1)
    secret_prompt = "private-words-plugh"
    async with client_for(eng, tmp_path) as c:
        r = await c.post(URL, json=body(messages=[{"role": "user", "content": secret_prompt}]))
    assert r.status_code == 500
    assert any(rec.levelno >= logging.ERROR for rec in caplog.records)
    access = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "hearth.access"]
    assert len(access) == 1 and access[0]["status"] == 500
    for rec in caplog.records:
        assert secret_prompt not in rec.getMessage() + (rec.exc_text or "")
