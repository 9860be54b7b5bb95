"""Tool calling and structured outputs on /v1/chat/completions over FakeEngine: the wire behaviour.

FakeEngine does not enforce constraints; these tests check what the server asks the engine for
(`GenerationRequest.constraint`, the prompt), and how scripted model text becomes OpenAI's
`tool_calls` / `function_call` / content, streamed and not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.engine.backends.fake import FakeEngine
from tests.conftest import API_KEY, make_app

URL = "/v1/chat/completions"
ENVELOPE_KEYS = {"message", "type", "param", "code"}

# A chat template with native tool support in the Hermes/Qwen style: renders `tools`, teaches <tool_call>.
HERMES_TEMPLATE = (
    "{%- if tools %}<|system|>You may call functions. Signatures: {% for t in tools %}{{ t | tojson }} "
    "{% endfor %}Reply with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call> blocks.\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_PARAMS = {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"],
               "additionalProperties": False}


def fn_tool(name: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    f: dict[str, Any] = {"name": name, "description": f"the {name} function"}
    if params is not None:
        f["parameters"] = params
    f.update(extra)
    return {"type": "function", "function": f}


TOOLS = [fn_tool("get_weather", WEATHER_PARAMS), fn_tool("get_time", TIME_PARAMS), fn_tool("x")]

CALL_JSON = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TWO_CALLS_JSON = ('[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, '
                  '{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}]')
HERMES_TWO_CALLS = (
    "Let me look that up.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>'
)
EXPECTED_TWO = [("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {"tz": "Europe/Paris"})]


def body(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "fake-model",
                           "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
    out.update(kw)
    return out


@asynccontextmanager
async def serve(tmp_path: Path, reply: str | None = None, template: str | None = None
                ) -> AsyncIterator[tuple[httpx.AsyncClient, FakeEngine]]:
    kw: dict[str, Any] = {"context_length": 4096, "reply": reply}
    if template is not None:
        kw["chat_template"] = template
    engine = FakeEngine("fake-model", **kw)
    app = make_app(engine, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c, engine


def prompt_of(engine: FakeEngine) -> str:
    """The rendered prompt the engine received (whitespace-normalised by the fake tokenizer)."""
    return engine.detokenize(engine.requests[-1].prompt_tokens)


def grammar_of(engine: FakeEngine) -> str:
    c = engine.requests[-1].constraint
    assert c is not None, "expected a constraint on the engine request"
    return c.grammar


def chunks_of(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    text = r.text
    assert text.endswith("\n\n")
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        events.append(block[len("data: "):])
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    return [json.loads(e) for e in events[:-1]]


def tool_deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every entry of delta.tool_calls, in stream order (raw wire JSON)."""
    out = []
    for c in chunks:
        for ch in c["choices"]:
            out.extend(ch["delta"].get("tool_calls") or [])
    return out


def reassemble(chunks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Tool calls rebuilt the way OpenAI clients do it: by index, concatenating argument fragments."""
    calls: dict[int, dict[str, Any]] = {}
    for d in tool_deltas(chunks):
        call = calls.setdefault(d["index"], {"id": None, "name": None, "arguments": ""})
        if "id" in d:
            assert call["id"] is None, "a call's id is sent once"
            call["id"] = d["id"]
        fn = d.get("function") or {}
        if "name" in fn:
            assert call["name"] is None, "a call's name is sent once"
            call["name"] = fn["name"]
        call["arguments"] += fn.get("arguments") or ""
    return calls


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"] is not None]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])


def calls_of(message: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]]


def assert_error(r: httpx.Response, param: str | None, code: str | None) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    data = r.json()
    assert set(data) == {"error"}, data
    err = data["error"]
    assert set(err) == ENVELOPE_KEYS, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param, err
    assert err["code"] == code, err
    return err


# ------------------------------------------------------------------ tool_choice auto, json profile


async def test_auto_call_json_profile(tmp_path: Path) -> None:
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS))
    assert r.status_code == 200, r.text
    ch = r.json()["choices"][0]
    msg = ch["message"]
    assert ch["finish_reason"] == "tool_calls"
    assert msg["role"] == "assistant" and msg["content"] is None
    assert "function_call" not in msg
    [call] = msg["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) > len("call_") + 8
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    # The fake template has no tool support: instructions and definitions go into a system prompt.
    prompt = prompt_of(eng)
    assert prompt.startswith("<|system|>You can call the following functions.")
    assert '"get_weather",' in prompt and '"get_time",' in prompt
    assert eng.requests[-1].constraint is None  # "auto" is not forced


async def test_call_ids_are_unique(tmp_path: Path) -> None:
    async with serve(tmp_path, TWO_CALLS_JSON) as (c, _):
        ids = []
        for _ in range(3):
            r = await c.post(URL, json=body(tools=TOOLS))
            ids += [t["id"] for t in r.json()["choices"][0]["message"]["tool_calls"]]
    assert len(ids) == 6 and len(set(ids)) == 6


async def test_json_profile_several_calls(tmp_path: Path) -> None:
    async with serve(tmp_path, TWO_CALLS_JSON) as (c, _):
        r = await c.post(URL, json=body(tools=TOOLS))
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "tool_calls"
    assert ch["message"]["content"] is None
    assert calls_of(ch["message"]) == EXPECTED_TWO


@pytest.mark.parametrize("reply", [
    '{"name": "get_stock_price", "arguments": {"ticker": "ACME"}}',  # not one of the tools
    'Sure: {"name": "get_weather", "arguments": {"city": "Paris"}}',  # not the whole reply
])
async def test_non_call_reply_stays_content(tmp_path: Path, reply: str) -> None:
    async with serve(tmp_path, reply) as (c, _):
        r = await c.post(URL, json=body(tools=TOOLS))
        s = await c.post(URL, json=body(tools=TOOLS, stream=True))
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "stop"
    assert ch["message"]["content"] == reply
    assert "tool_calls" not in ch["message"]
    chunks = chunks_of(s)
    assert tool_deltas(chunks) == []
    assert content_of(chunks) == reply
    assert finish_reasons(chunks) == ["stop"]


async def test_plain_text_with_tools_streams_as_content(tmp_path: Path) -> None:
    async with serve(tmp_path, "It is sunny in Paris today.") as (c, _):
        r = await c.post(URL, json=body(tools=TOOLS, stream=True))
    chunks = chunks_of(r)
    assert content_of(chunks) == "It is sunny in Paris today."
    # Text that cannot start a call is not held back to the end.
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1


# ------------------------------------------------------------------ hermes profile


async def test_hermes_text_and_two_calls(tmp_path: Path) -> None:
    async with serve(tmp_path, HERMES_TWO_CALLS, HERMES_TEMPLATE) as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS))
    assert r.status_code == 200, r.text
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "tool_calls"
    msg = ch["message"]
    assert msg["content"].strip() == "Let me look that up."
    assert "<tool_call>" not in msg["content"]
    assert calls_of(msg) == EXPECTED_TWO
    ids = [t["id"] for t in msg["tool_calls"]]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2
    assert all(t["type"] == "function" for t in msg["tool_calls"])
    # Native tool support: the template renders the definitions; no system prompt is added.
    prompt = prompt_of(eng)
    assert "Signatures:" in prompt and '"get_weather",' in prompt
    assert "You can call the following functions" not in prompt


async def test_hermes_unknown_function_block_stays_text(tmp_path: Path) -> None:
    reply = '<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>'
    async with serve(tmp_path, reply, HERMES_TEMPLATE) as (c, _):
        r = await c.post(URL, json=body(tools=TOOLS))
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "stop"
    assert "tool_calls" not in ch["message"]
    assert "launch" in ch["message"]["content"]


async def test_hermes_cut_off_mid_call_is_length(tmp_path: Path) -> None:
    reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
    async with serve(tmp_path, reply, HERMES_TEMPLATE) as (c, _):
        r = await c.post(URL, json=body(tools=TOOLS, max_tokens=6))
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "length"
    [call] = ch["message"]["tool_calls"]
    # The truncated arguments are closed into valid JSON at the last safe point.
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


# ------------------------------------------------------------------ streaming


async def test_stream_tool_call_deltas_wire_shape(tmp_path: Path) -> None:
    reply = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n'
             '</tool_call>')
    async with serve(tmp_path, reply, HERMES_TEMPLATE) as (c, _):
        r = await c.post(URL, json=body(tools=TOOLS, stream=True))
        full = (await c.post(URL, json=body(tools=TOOLS))).json()["choices"][0]["message"]
    chunks = chunks_of(r)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = tool_deltas(chunks)
    first, rest = deltas[0], deltas[1:]
    assert set(first) == {"index", "id", "type", "function"}
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert len(rest) >= 2, "arguments should stream in several fragments"
    for d in rest:
        assert set(d) == {"index", "function"}, d
        assert d["index"] == 0
        assert set(d["function"]) == {"arguments"}, d
        assert d["function"]["arguments"]
    # Each tool-call chunk carries exactly one choice with only tool_calls in its delta.
    for ch in chunks:
        for choice in ch["choices"]:
            if "tool_calls" in choice["delta"]:
                assert set(choice["delta"]) == {"tool_calls"}
                assert choice["finish_reason"] is None
    assert finish_reasons(chunks) == ["tool_calls"]
    last = [ch for ch in chunks if ch["choices"]][-1]["choices"][0]
    assert last["finish_reason"] == "tool_calls" and last["delta"] == {}
    [call] = reassemble(chunks).values()
    assert call["arguments"] == full["tool_calls"][0]["function"]["arguments"]
    assert json.loads(call["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert content_of(chunks) == ""


@pytest.mark.parametrize("reply,template", [
    (CALL_JSON, None),
    (TWO_CALLS_JSON, None),
    ("```json\n" + TWO_CALLS_JSON + "\n```", None),
    (HERMES_TWO_CALLS, HERMES_TEMPLATE),
    ('<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>', HERMES_TEMPLATE),
])
async def test_stream_equals_non_stream(tmp_path: Path, reply: str, template: str | None) -> None:
    async with serve(tmp_path, reply, template) as (c, _):
        full = (await c.post(URL, json=body(tools=TOOLS))).json()["choices"][0]
        chunks = chunks_of(await c.post(URL, json=body(tools=TOOLS, stream=True)))
    assert full["finish_reason"] == "tool_calls"
    assert finish_reasons(chunks) == ["tool_calls"]
    streamed = reassemble(chunks)
    assert sorted(streamed) == list(range(len(full["message"]["tool_calls"])))
    got = [(streamed[i]["name"], streamed[i]["arguments"]) for i in sorted(streamed)]
    want = [(t["function"]["name"], t["function"]["arguments"]) for t in full["message"]["tool_calls"]]
    assert got == want
    assert all(streamed[i]["id"].startswith("call_") for i in streamed)
    assert (content_of(chunks) or None) == full["message"]["content"]


async def test_stream_n2_tool_calls_per_choice(tmp_path: Path) -> None:
    async with serve(tmp_path, HERMES_TWO_CALLS, HERMES_TEMPLATE) as (c, _):
        chunks = chunks_of(await c.post(URL, json=body(tools=TOOLS, stream=True, n=2)))
    for i in (0, 1):
        mine = [{**ch, "choices": [x for x in ch["choices"] if x["index"] == i]} for ch in chunks]
        calls = reassemble(mine)
        assert [(calls[k]["name"], json.loads(calls[k]["arguments"])) for k in sorted(calls)] == EXPECTED_TWO
        assert finish_reasons(mine) == ["tool_calls"]


# ------------------------------------------------------------------ parallel_tool_calls


@pytest.mark.parametrize("reply,template", [(TWO_CALLS_JSON, None), (HERMES_TWO_CALLS, HERMES_TEMPLATE)])
async def test_parallel_tool_calls_false_keeps_first(tmp_path: Path, reply: str, template: str | None) -> None:
    async with serve(tmp_path, reply, template) as (c, _):
        full = (await c.post(URL, json=body(tools=TOOLS, parallel_tool_calls=False))).json()["choices"][0]
        chunks = chunks_of(await c.post(URL, json=body(tools=TOOLS, parallel_tool_calls=False, stream=True)))
        both = (await c.post(URL, json=body(tools=TOOLS, parallel_tool_calls=True))).json()["choices"][0]
    assert calls_of(full["message"]) == EXPECTED_TWO[:1]
    assert full["finish_reason"] == "tool_calls"
    assert {d["index"] for d in tool_deltas(chunks)} == {0}
    [call] = reassemble(chunks).values()
    assert (call["name"], json.loads(call["arguments"])) == EXPECTED_TWO[0]
    assert calls_of(both["message"]) == EXPECTED_TWO


async def test_parallel_false_forced_grammar_allows_one_call(tmp_path: Path) -> None:
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        await c.post(URL, json=body(tools=TOOLS, tool_choice="required", parallel_tool_calls=False))
        one = grammar_of(eng)
        await c.post(URL, json=body(tools=TOOLS, tool_choice="required"))
        many = grammar_of(eng)
    # json profile: parallel calls are a JSON list of call objects; one call is a bare object.
    assert one.startswith("start: calls\ncalls: body\n")
    assert many.startswith('start: calls\ncalls: "[" body (", " body)')


# ------------------------------------------------------------------ tool_choice -> constraint


def _consts(grammar: str) -> set[str]:
    return {n for n in ("get_weather", "get_time", "x") if f'"const": "{n}"' in grammar}


@pytest.mark.parametrize("choice,names", [
    ("required", {"get_weather", "get_time", "x"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"get_weather"}),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required",
                                                 "tools": [{"type": "function", "function": {"name": "x"}}]}},
     {"x"}),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "x"}}, {"type": "function", "function": {"name": "get_time"}}]}},
     {"x", "get_time"}),
])
@pytest.mark.parametrize("template", [None, HERMES_TEMPLATE])
async def test_forced_choice_sets_constraint(tmp_path: Path, choice: Any, names: set[str],
                                            template: str | None) -> None:
    async with serve(tmp_path, CALL_JSON, template) as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, tool_choice=choice))
    assert r.status_code == 200, r.text
    grammar = grammar_of(eng)
    assert _consts(grammar) == names
    assert ("<tool_call>" in grammar) == (template is not None)
    if "get_weather" in names:  # the function's parameter schema is in the grammar
        assert '"celsius"' in grammar


async def test_forced_call_response(tmp_path: Path) -> None:
    reply = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    async with serve(tmp_path, reply) as (c, _):
        r = await c.post(URL, json=body(tools=TOOLS, tool_choice={"type": "function",
                                                                  "function": {"name": "get_weather"}}))
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "tool_calls"
    assert calls_of(ch["message"]) == EXPECTED_TWO[:1]


@pytest.mark.parametrize("choice", ["auto", "none", None])
async def test_unforced_choice_has_no_constraint(tmp_path: Path, choice: str | None) -> None:
    extra = {} if choice is None else {"tool_choice": choice}
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, **extra))
    assert r.status_code == 200, r.text
    assert eng.requests[-1].constraint is None


@pytest.mark.parametrize("template", [None, HERMES_TEMPLATE])
async def test_tool_choice_none(tmp_path: Path, template: str | None) -> None:
    reply = CALL_JSON if template is None else '<tool_call>\n' + CALL_JSON + '\n</tool_call>'
    async with serve(tmp_path, reply, template) as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, tool_choice="none"))
        s = await c.post(URL, json=body(tools=TOOLS, tool_choice="none", stream=True))
    prompt = prompt_of(eng)
    assert "get_weather" not in prompt
    assert "You can call the following functions" not in prompt and "Signatures:" not in prompt
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "stop"
    assert "tool_calls" not in ch["message"]
    assert ch["message"]["content"] == reply.replace("\n", " ")  # the fake tokenizer joins words with spaces
    chunks = chunks_of(s)
    assert tool_deltas(chunks) == [] and finish_reasons(chunks) == ["stop"]


async def test_allowed_tools_auto_limits_parsed_names(tmp_path: Path) -> None:
    choice = {"type": "allowed_tools",
              "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_time"}}]}}
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, tool_choice=choice))
    assert r.status_code == 200, r.text
    assert eng.requests[-1].constraint is None
    ch = r.json()["choices"][0]
    # get_weather is defined but not allowed this turn: a call to it is not a tool call.
    assert ch["finish_reason"] == "stop" and "tool_calls" not in ch["message"]


# ------------------------------------------------------------------ response_format


async def test_json_object_sets_constraint(tmp_path: Path) -> None:
    async with serve(tmp_path, '{"ok": true}') as (c, eng):
        r = await c.post(URL, json=body(messages=[{"role": "system", "content": "Answer in JSON."},
                                                  {"role": "user", "content": "hi"}],
                                        response_format={"type": "json_object"}))
    assert r.status_code == 200, r.text
    assert '"type": "object"' in grammar_of(eng)
    ch = r.json()["choices"][0]
    assert ch["message"]["content"] == '{"ok": true}' and ch["finish_reason"] == "stop"


async def test_json_object_word_in_text_part(tmp_path: Path) -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "reply as Json please"}]}]
    async with serve(tmp_path, "{}") as (c, eng):
        r = await c.post(URL, json=body(messages=msgs, response_format={"type": "json_object"}))
    assert r.status_code == 200, r.text
    assert eng.requests[-1].constraint is not None


async def test_json_object_requires_json_in_messages(tmp_path: Path) -> None:
    async with serve(tmp_path, "{}") as (c, eng):
        r = await c.post(URL, json=body(response_format={"type": "json_object"}))
    err = assert_error(r, "messages", "invalid_value")
    assert "json" in err["message"]
    assert eng.requests == []


@pytest.mark.parametrize("fmt", [{"type": "text"}, None])
async def test_text_format_has_no_constraint(tmp_path: Path, fmt: Any) -> None:
    extra = {} if fmt is None else {"response_format": fmt}
    async with serve(tmp_path, "hi") as (c, eng):
        r = await c.post(URL, json=body(**extra))
    assert r.status_code == 200, r.text
    assert eng.requests[-1].constraint is None


PERSON = {
    "type": "object",
    "properties": {
        "full_name": {"type": "string"},
        "age_years": {"type": "integer"},
        "address": {"type": "object", "properties": {"street_line": {"type": "string"}},
                    "required": ["street_line"], "additionalProperties": False},
    },
    "required": ["full_name", "age_years", "address"],
    "additionalProperties": False,
}


def schema_format(schema: dict[str, Any] | None, strict: bool | None = True, name: str | None = "person"
                  ) -> dict[str, Any]:
    js: dict[str, Any] = {}
    if name is not None:
        js["name"] = name
    if schema is not None:
        js["schema"] = schema
    if strict is not None:
        js["strict"] = strict
    return {"type": "json_schema", "json_schema": js}


async def test_json_schema_strict_sets_constraint(tmp_path: Path) -> None:
    reply = '{"full_name": "Ada", "age_years": 36, "address": {"street_line": "1 Main"}}'
    async with serve(tmp_path, reply) as (c, eng):
        r = await c.post(URL, json=body(response_format=schema_format(PERSON)))
    assert r.status_code == 200, r.text
    grammar = grammar_of(eng)
    for prop in ("full_name", "age_years", "address", "street_line"):
        assert f'"{prop}"' in grammar
    assert json.loads(r.json()["choices"][0]["message"]["content"])["full_name"] == "Ada"


def _without(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    out = json.loads(json.dumps(schema))
    node = out
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return out


@pytest.mark.parametrize("schema,param", [
    (_without(PERSON, "additionalProperties"), "response_format.json_schema.schema.additionalProperties"),
    (_without(PERSON, "required"), "response_format.json_schema.schema.required"),
    ({**PERSON, "required": ["full_name", "age_years"]}, "response_format.json_schema.schema.required"),
    (_without(PERSON, "properties", "address", "additionalProperties"),
     "response_format.json_schema.schema.properties.address.additionalProperties"),
    (_without(PERSON, "properties", "address", "required"),
     "response_format.json_schema.schema.properties.address.required"),
])
async def test_json_schema_strict_rejects_bad_schema(tmp_path: Path, schema: dict[str, Any], param: str) -> None:
    async with serve(tmp_path, "{}") as (c, eng):
        r = await c.post(URL, json=body(response_format=schema_format(schema)))
        s = await c.post(URL, json=body(response_format=schema_format(schema), stream=True))
    assert_error(r, param, "invalid_json_schema")
    assert_error(s, param, "invalid_json_schema")  # before any SSE byte
    assert eng.requests == []


async def test_json_schema_non_strict_optional_fields_accepted(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"nickname": {"type": "string"}, "age_years": {"type": "integer"}}}
    async with serve(tmp_path, "{}") as (c, eng):
        r = await c.post(URL, json=body(response_format=schema_format(schema, strict=False)))
        r2 = await c.post(URL, json=body(response_format=schema_format(schema, strict=None)))
    assert r.status_code == 200, r.text
    assert r2.status_code == 200, r2.text
    assert '"nickname"' in grammar_of(eng)
    assert all(q.constraint is not None for q in eng.requests)


@pytest.mark.parametrize("strict", [False, True])
async def test_json_schema_uncompilable_is_400(tmp_path: Path, strict: bool) -> None:
    schema = {"type": "string", "format": "bogus-format"}
    async with serve(tmp_path, '"x"') as (c, eng):
        r = await c.post(URL, json=body(response_format=schema_format(schema, strict=strict)))
    err = assert_error(r, r.json()["error"]["param"], "invalid_json_schema")
    assert err["param"].startswith("response_format.json_schema.schema")
    assert eng.requests == []


async def test_json_schema_missing_name(tmp_path: Path) -> None:
    async with serve(tmp_path, "{}") as (c, eng):
        r = await c.post(URL, json=body(response_format=schema_format(PERSON, name=None)))
    assert_error(r, "response_format.json_schema.name", "missing_required_parameter")
    assert eng.requests == []


async def test_json_schema_type_without_json_schema(tmp_path: Path) -> None:
    async with serve(tmp_path, "{}") as (c, eng):
        r = await c.post(URL, json=body(response_format={"type": "json_schema"}))
    err = assert_error(r, "response_format.json_schema", "invalid_value")
    assert "response_format.json_schema" in err["message"]
    assert eng.requests == []


async def test_json_schema_strict_without_schema(tmp_path: Path) -> None:
    async with serve(tmp_path, "{}") as (c, eng):
        r = await c.post(URL, json=body(response_format=schema_format(None, strict=True)))
    assert_error(r, "response_format.json_schema.schema", "invalid_value")
    assert eng.requests == []


async def test_response_format_with_tools(tmp_path: Path) -> None:
    """With tool_choice auto, the model may answer in the format or call a tool (both enforced, as
    OpenAI allows either); a forced call's grammar wins over the format."""
    async with serve(tmp_path, '{"full_name": "Ada"}') as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, response_format=schema_format(PERSON)))
        assert r.status_code == 200, r.text
        g = grammar_of(eng)
        assert g.startswith("start: content | calls") and '"full_name"' in g and '"const": "get_weather"' in g
        assert r.json()["choices"][0]["message"]["content"] == '{"full_name": "Ada"}'
        r = await c.post(URL, json=body(tools=TOOLS, tool_choice="required", response_format=schema_format(PERSON)))
        assert r.status_code == 200, r.text
        assert '"full_name"' not in grammar_of(eng) and '"const": "get_weather"' in grammar_of(eng)


# ------------------------------------------------------------------ errors


def _strict_bad() -> list[dict[str, Any]]:
    return [fn_tool("get_weather", _without(WEATHER_PARAMS, "additionalProperties"), strict=True)]


BAD_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("required without tools", {"tool_choice": "required"}, "tool_choice", "invalid_value"),
    ("named without tools", {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     "tool_choice", "invalid_value"),
    ("auto without tools", {"tool_choice": "auto"}, "tool_choice", "invalid_value"),
    ("named undefined", {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name", "invalid_value"),
    ("allowed undefined", {"tools": TOOLS, "tool_choice": {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "nope"}}]}}},
     "tool_choice.allowed_tools.tools[0]", "invalid_value"),
    ("duplicate names", {"tools": [fn_tool("get_weather", WEATHER_PARAMS), fn_tool("get_weather")]},
     "tools[1].function.name", "invalid_value"),
    ("custom tool", {"tools": [{"type": "custom", "custom": {"name": "grep"}}]}, "tools[0].type",
     "unsupported_parameter"),
    ("custom tool_choice", {"tools": TOOLS, "tool_choice": {"type": "custom", "custom": {"name": "x"}}},
     "tool_choice.type", "unsupported_parameter"),
    ("strict tool bad parameters", {"tools": _strict_bad()}, "tools[0].function.parameters.additionalProperties",
     "invalid_json_schema"),
    ("strict tool nested", {"tools": [TOOLS[0], fn_tool("p", _without(PERSON, "properties", "address",
                                                                     "additionalProperties"), strict=True)]},
     "tools[1].function.parameters.properties.address.additionalProperties", "invalid_json_schema"),
    ("bad function name", {"tools": [fn_tool("has space")]}, "tools[0].function.name", "invalid_value"),
    ("tools and functions", {"tools": TOOLS, "functions": [{"name": "f"}]}, "functions", "invalid_value"),
    # Schema errors inside the tool unions name the wire path, without pydantic's union tags.
    ("tool without function", {"tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter"),
    ("tool_choice function without name", {"tools": TOOLS, "tool_choice": {"type": "function", "function": {}}},
     "tool_choice.function.name", "missing_required_parameter"),
    ("allowed_tools bad mode", {"tools": TOOLS, "tool_choice": {"type": "allowed_tools", "allowed_tools": {
        "mode": "sometimes", "tools": [{"type": "function", "function": {"name": "x"}}]}}},
     "tool_choice.allowed_tools.mode", "invalid_value"),
    ("function_call without name", {"functions": [{"name": "f"}], "function_call": {}}, "function_call.name",
     "missing_required_parameter"),
]


@pytest.mark.parametrize("extra,param,code", [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
@pytest.mark.parametrize("stream", [False, True])
async def test_bad_tool_requests(tmp_path: Path, extra: dict[str, Any], param: str, code: str, stream: bool) -> None:
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        r = await c.post(URL, json=body(stream=stream, **extra))
    assert r.headers["content-type"].startswith("application/json")
    assert_error(r, param, code)
    assert eng.requests == []


async def test_tool_choice_none_without_tools_is_fine(tmp_path: Path) -> None:
    async with serve(tmp_path, "hi") as (c, eng):
        r = await c.post(URL, json=body(tool_choice="none"))
    assert r.status_code == 200, r.text
    assert eng.requests[-1].constraint is None


async def test_strict_tool_with_valid_schema_accepted(tmp_path: Path) -> None:
    async with serve(tmp_path, CALL_JSON) as (c, _):
        r = await c.post(URL, json=body(tools=[fn_tool("get_weather", WEATHER_PARAMS, strict=True)]))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("strict", [True, False, None])
async def test_tool_without_parameters_any_strictness(tmp_path: Path, strict: bool | None) -> None:
    """Omitted `parameters` is an empty parameter list, valid for strict tools too."""
    extra = {} if strict is None else {"strict": strict}
    async with serve(tmp_path, '{"name": "x", "arguments": {}}') as (c, eng):
        r = await c.post(URL, json=body(tools=[fn_tool("x", **extra)], tool_choice="required"))
    assert r.status_code == 200, r.text
    # No arguments may be invented.
    assert '"arguments": {"type": "object", "properties": {}, "additionalProperties": false}' in grammar_of(eng)
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


async def test_tool_without_parameters_forced(tmp_path: Path) -> None:
    async with serve(tmp_path, '{"name": "x", "arguments": {}}') as (c, eng):
        r = await c.post(URL, json=body(tools=[fn_tool("x")], tool_choice="required"))
    assert r.status_code == 200, r.text
    assert _consts(grammar_of(eng)) == {"x"}
    [call] = r.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "x", "arguments": "{}"}


def conversation(tool_call_id: str = "call_abc123") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc123", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": tool_call_id, "content": "sunny-and-22C"},
        {"role": "user", "content": "And tomorrow?"},
    ]


@pytest.mark.parametrize("template", [None, HERMES_TEMPLATE])
async def test_multi_turn_with_tool_results(tmp_path: Path, template: str | None) -> None:
    async with serve(tmp_path, "Also sunny.", template) as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, messages=conversation()))
    assert r.status_code == 200, r.text
    ch = r.json()["choices"][0]
    assert ch["message"]["content"] == "Also sunny." and ch["finish_reason"] == "stop"
    prompt = prompt_of(eng)
    assert "<|tool|>sunny-and-22C" in prompt and "tomorrow?" in prompt


async def test_tool_message_with_unknown_call_id(tmp_path: Path) -> None:
    async with serve(tmp_path, "x") as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, messages=conversation("call_other")))
        r2 = await c.post(URL, json=body(messages=[{"role": "user", "content": "hi"},
                                                   {"role": "tool", "tool_call_id": "call_1", "content": "r"}]))
    assert_error(r, "messages[2].tool_call_id", "invalid_tool_call_id")
    assert_error(r2, "messages[1].tool_call_id", "invalid_tool_call_id")
    assert eng.requests == []


async def test_tool_message_before_its_call(tmp_path: Path) -> None:
    msgs = conversation()
    msgs[1], msgs[2] = msgs[2], msgs[1]
    async with serve(tmp_path, "x") as (c, eng):
        r = await c.post(URL, json=body(tools=TOOLS, messages=msgs))
    assert_error(r, "messages[1].tool_call_id", "invalid_tool_call_id")
    assert eng.requests == []


# ------------------------------------------------------------------ deprecated functions / function_call

FUNCTIONS = [{"name": "get_weather", "parameters": WEATHER_PARAMS}, {"name": "get_time", "parameters": TIME_PARAMS}]


async def test_functions_named_function_call(tmp_path: Path) -> None:
    reply = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    async with serve(tmp_path, reply) as (c, eng):
        r = await c.post(URL, json=body(functions=FUNCTIONS, function_call={"name": "get_weather"}))
    assert r.status_code == 200, r.text
    assert _consts(grammar_of(eng)) == {"get_weather"}
    # Legacy calls are one per reply: the grammar is one object, not a list.
    assert '"type": "array"' not in grammar_of(eng)
    ch = r.json()["choices"][0]
    msg = ch["message"]
    assert ch["finish_reason"] == "function_call"
    assert "tool_calls" not in msg
    assert msg["content"] is None
    assert set(msg["function_call"]) == {"name", "arguments"}
    assert msg["function_call"]["name"] == "get_weather"
    assert json.loads(msg["function_call"]["arguments"]) == {"city": "Paris", "unit": "celsius"}


@pytest.mark.parametrize("function_call", ["auto", None])
async def test_functions_auto(tmp_path: Path, function_call: str | None) -> None:
    extra = {} if function_call is None else {"function_call": function_call}
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        r = await c.post(URL, json=body(functions=FUNCTIONS, **extra))
    assert r.status_code == 200, r.text
    assert eng.requests[-1].constraint is None
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "function_call"
    assert "tool_calls" not in ch["message"]
    assert ch["message"]["function_call"]["name"] == "get_weather"
    assert json.loads(ch["message"]["function_call"]["arguments"]) == {"city": "Paris"}


async def test_functions_none_stays_content(tmp_path: Path) -> None:
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        r = await c.post(URL, json=body(functions=FUNCTIONS, function_call="none"))
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "stop" and ch["message"]["content"] == CALL_JSON
    assert "function_call" not in ch["message"] and "tool_calls" not in ch["message"]
    assert "get_weather" not in prompt_of(eng)


async def test_functions_two_calls_answers_one(tmp_path: Path) -> None:
    async with serve(tmp_path, TWO_CALLS_JSON) as (c, _):
        r = await c.post(URL, json=body(functions=FUNCTIONS))
    msg = r.json()["choices"][0]["message"]
    assert msg["function_call"]["name"] == "get_weather"
    assert json.loads(msg["function_call"]["arguments"]) == EXPECTED_TWO[0][1]


@pytest.mark.parametrize("template", [None, HERMES_TEMPLATE])
async def test_functions_stream(tmp_path: Path, template: str | None) -> None:
    core = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    reply = core if template is None else f"<tool_call>\n{core}\n</tool_call>"
    async with serve(tmp_path, reply, template) as (c, _):
        full = (await c.post(URL, json=body(functions=FUNCTIONS, function_call={"name": "get_weather"})))
        chunks = chunks_of(await c.post(URL, json=body(functions=FUNCTIONS, function_call={"name": "get_weather"},
                                                       stream=True)))
    fdeltas = [ch["choices"][0]["delta"]["function_call"] for ch in chunks
               if ch["choices"] and "function_call" in ch["choices"][0]["delta"]]
    assert tool_deltas(chunks) == []
    assert fdeltas[0] == {"name": "get_weather", "arguments": ""}
    assert len(fdeltas) >= 2
    for d in fdeltas[1:]:
        assert set(d) == {"arguments"} and d["arguments"]
    if template is not None:
        assert len(fdeltas) > 2  # the hermes parser streams arguments as they arrive
    args = "".join(d["arguments"] for d in fdeltas)
    assert args == full.json()["choices"][0]["message"]["function_call"]["arguments"]
    assert json.loads(args) == {"city": "Paris", "unit": "celsius"}
    assert finish_reasons(chunks) == ["function_call"]


async def test_function_call_errors(tmp_path: Path) -> None:
    async with serve(tmp_path, CALL_JSON) as (c, eng):
        r1 = await c.post(URL, json=body(functions=FUNCTIONS, function_call={"name": "nope"}))
        r2 = await c.post(URL, json=body(function_call={"name": "get_weather"}))
        r3 = await c.post(URL, json=body(functions=[{"name": "f", "parameters": {"type": "object"}, "strict": True}]))
    assert_error(r1, "function_call.name", "invalid_value")
    assert_error(r2, "function_call", "invalid_value")
    assert_error(r3, "functions[0].parameters.additionalProperties", "invalid_json_schema")
    assert eng.requests == []


async def test_legacy_function_message_in_history(tmp_path: Path) -> None:
    msgs = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None,
         "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "rainy-and-9C"},
    ]
    async with serve(tmp_path, "Rainy.") as (c, eng):
        r = await c.post(URL, json=body(functions=FUNCTIONS, messages=msgs))
    assert r.status_code == 200, r.text
    assert "rainy-and-9C" in prompt_of(eng)
