"""The official `openai` SDK against the app (FakeEngine): tool calls, legacy functions and structured
outputs parse into the SDK's types, and its helpers (`parse`, `pydantic_function_tool`, `stream`) work."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel

from hearth.engine.backends.fake import FakeEngine
from tests.conftest import API_KEY, make_app

HERMES_TEMPLATE = (
    "{%- if tools %}<|system|>Tools: {% for t in tools %}{{ t | tojson }} {% endfor %}"
    "Call them with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>.\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

MSGS: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                       "required": ["city", "unit"], "additionalProperties": False},
    },
}
TIME: Any = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}

HERMES_TWO = (
    "Checking.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>'
)
JSON_TWO = ('[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, '
            '{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}]')
EXPECTED_TWO = [("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {"tz": "Europe/Paris"})]


@asynccontextmanager
async def sdk_with(tmp_path: Path, reply: str, template: str | None = None
                   ) -> AsyncIterator[tuple[AsyncOpenAI, FakeEngine]]:
    kw: dict[str, Any] = {"context_length": 4096, "reply": reply}
    if template is not None:
        kw["chat_template"] = template
    engine = FakeEngine("fake-model", **kw)
    app = make_app(engine, tmp_path)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test")
    async with AsyncOpenAI(base_url="http://hearth.test/v1", api_key=API_KEY, http_client=http,
                           max_retries=0) as client:
        yield client, engine


def grammar_of(engine: FakeEngine) -> str:
    c = engine.requests[-1].constraint
    assert c is not None, "expected the request to be constrained"
    return c.grammar


def reassemble(chunks: list[ChatCompletionChunk]) -> dict[int, dict[str, Any]]:
    """What SDK users write: accumulate `delta.tool_calls` by index."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "type": None, "name": None, "arguments": ""})
                if tc.id:
                    call["id"] = tc.id
                if tc.type:
                    call["type"] = tc.type
                if tc.function and tc.function.name:
                    call["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
    return calls


# ------------------------------------------------------------------ create()


@pytest.mark.parametrize("reply,template", [(JSON_TWO, None), (HERMES_TWO, HERMES_TEMPLATE)])
async def test_tool_calls_parse_non_stream(tmp_path: Path, reply: str, template: str | None) -> None:
    async with sdk_with(tmp_path, reply, template) as (client, _):
        r = await client.chat.completions.create(model="fake-model", messages=MSGS, tools=[WEATHER, TIME])
    assert isinstance(r, ChatCompletion)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    calls = c.message.tool_calls
    assert calls is not None and len(calls) == 2
    assert all(isinstance(t, ChatCompletionMessageFunctionToolCall) for t in calls)
    assert [(t.function.name, json.loads(t.function.arguments)) for t in calls] == EXPECTED_TWO
    assert all(t.id.startswith("call_") and t.type == "function" for t in calls)
    assert c.message.function_call is None
    if template is None:
        assert c.message.content is None
    else:
        assert (c.message.content or "").strip() == "Checking."
    # Nothing the SDK does not know about.
    assert not (c.message.model_extra or {}) and not (calls[0].model_extra or {})
    assert not (calls[0].function.model_extra or {})


@pytest.mark.parametrize("reply,template", [
    ('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}', None),
    (JSON_TWO, None),
    (HERMES_TWO, HERMES_TEMPLATE),
])
async def test_tool_calls_stream_parse_and_reassemble(tmp_path: Path, reply: str, template: str | None) -> None:
    async with sdk_with(tmp_path, reply, template) as (client, _):
        full = await client.chat.completions.create(model="fake-model", messages=MSGS, tools=[WEATHER, TIME])
        stream = await client.chat.completions.create(model="fake-model", messages=MSGS, tools=[WEATHER, TIME],
                                                      stream=True)
        chunks = [c async for c in stream]
    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert len({c.id for c in chunks}) == 1
    for ch in chunks:
        for choice in ch.choices:
            for tc in choice.delta.tool_calls or []:
                assert not (tc.model_extra or {})
                assert tc.function is not None and not (tc.function.model_extra or {})
    calls = reassemble(chunks)
    want = full.choices[0].message.tool_calls
    assert want is not None
    assert sorted(calls) == list(range(len(want)))
    assert [(calls[i]["name"], calls[i]["arguments"]) for i in sorted(calls)] == [
        (t.function.name, t.function.arguments) for t in want]
    assert all(calls[i]["type"] == "function" and calls[i]["id"].startswith("call_") for i in calls)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


async def test_stream_helper_accumulates_tool_calls(tmp_path: Path) -> None:
    """`client.chat.completions.stream()` builds the final message from our deltas."""
    async with sdk_with(tmp_path, HERMES_TWO, HERMES_TEMPLATE) as (client, _):  # noqa: SIM117 - needs client
        async with client.chat.completions.stream(model="fake-model", messages=MSGS,
                                                  tools=[WEATHER, TIME]) as s:
            done_events = [e async for e in s if e.type == "tool_calls.function.arguments.done"]
            final = await s.get_final_completion()
    assert [(e.name, json.loads(e.arguments)) for e in done_events] == EXPECTED_TWO
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None
    assert [(t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls] == EXPECTED_TWO


async def test_legacy_function_call(tmp_path: Path) -> None:
    reply = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    fn = WEATHER["function"]
    async with sdk_with(tmp_path, reply) as (client, engine):
        r = await client.chat.completions.create(model="fake-model", messages=MSGS, functions=[fn],
                                                 function_call={"name": "get_weather"})
        assert '"const": "get_weather"' in grammar_of(engine)
        stream = await client.chat.completions.create(model="fake-model", messages=MSGS, functions=[fn],
                                                      function_call={"name": "get_weather"}, stream=True)
        chunks = [c async for c in stream]
    c = r.choices[0]
    assert c.finish_reason == "function_call"
    assert c.message.tool_calls is None
    assert c.message.function_call is not None and c.message.function_call.name == "get_weather"
    assert json.loads(c.message.function_call.arguments) == {"city": "Paris", "unit": "celsius"}
    fdeltas = [ch.choices[0].delta.function_call for ch in chunks
               if ch.choices and ch.choices[0].delta.function_call is not None]
    assert fdeltas and fdeltas[0].name == "get_weather"
    assert all(d.name is None for d in fdeltas[1:])
    assert "".join(d.arguments or "" for d in fdeltas) == c.message.function_call.arguments


async def test_error_raises_bad_request(tmp_path: Path) -> None:
    async with sdk_with(tmp_path, "x") as (client, engine):
        with pytest.raises(openai.BadRequestError) as ei:
            await client.chat.completions.create(model="fake-model", messages=MSGS, tools=[WEATHER],
                                                 tool_choice={"type": "function", "function": {"name": "nope"}})
    assert ei.value.status_code == 400
    assert ei.value.param == "tool_choice.function.name"
    assert engine.requests == []


# ------------------------------------------------------------------ SDK helpers: parse()


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    age: int
    address: Address


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str
    unit: str


async def test_parse_response_format_pydantic(tmp_path: Path) -> None:
    reply = '{"name": "Ada", "age": 36, "address": {"street": "1 Main St", "city": "London"}}'
    async with sdk_with(tmp_path, reply) as (client, engine):
        r = await client.chat.completions.parse(model="fake-model", messages=MSGS, response_format=Person)
    grammar = grammar_of(engine)  # the SDK sent a strict json_schema, and the server enforces it
    for prop in ("name", "age", "address", "street", "city"):
        assert f'"{prop}"' in grammar
    msg = r.choices[0].message
    assert isinstance(msg.parsed, Person)
    assert msg.parsed == Person(name="Ada", age=36, address=Address(street="1 Main St", city="London"))
    assert r.choices[0].finish_reason == "stop"


async def test_parse_pydantic_function_tool(tmp_path: Path) -> None:
    reply = '{"name": "GetWeather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    async with sdk_with(tmp_path, reply) as (client, engine):
        r = await client.chat.completions.parse(
            model="fake-model", messages=MSGS, tools=[openai.pydantic_function_tool(GetWeather)],
            tool_choice="required",
        )
    grammar = grammar_of(engine)
    assert '"const": "GetWeather"' in grammar and '"unit"' in grammar
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.tool_calls is not None and len(c.message.tool_calls) == 1
    call = c.message.tool_calls[0]
    assert call.function.name == "GetWeather"
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert call.function.parsed_arguments == GetWeather(city="Paris", unit="celsius")


async def test_parse_pydantic_function_tool_hermes(tmp_path: Path) -> None:
    reply = '<tool_call>\n{"name": "GetWeather", "arguments": {"city": "Oslo", "unit": "celsius"}}\n</tool_call>'
    async with sdk_with(tmp_path, reply, HERMES_TEMPLATE) as (client, engine):
        r = await client.chat.completions.parse(
            model="fake-model", messages=MSGS, tools=[openai.pydantic_function_tool(GetWeather)],
            tool_choice={"type": "function", "function": {"name": "GetWeather"}},
        )
    assert "<tool_call>" in grammar_of(engine)
    call = (r.choices[0].message.tool_calls or [])[0]
    assert call.function.parsed_arguments == GetWeather(city="Oslo", unit="celsius")
