"""Table tests of services/convert.py (protocol <-> engine types)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hearth.engine.types import SamplingParams, TokenLogprob, TopLogprob
from hearth.protocol import chat as wire
from hearth.protocol.errors import InvalidRequest, UnsupportedParameter
from hearth.services import convert


def req(**kw: Any) -> wire.ChatCompletionRequest:
    data: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    data.update(kw)
    return wire.ChatCompletionRequest.model_validate(data)


# ------------------------------------------------------------------ check_supported


@pytest.mark.parametrize(
    "kw,param",
    [
        ({"modalities": ["audio"]}, "modalities"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
    ],
)
def test_check_supported_rejects(kw: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as ei:
        convert.check_supported(req(**kw))
    assert ei.value.param == param
    assert ei.value.code == "unsupported_parameter"
    assert f"`{param}`" in ei.value.message


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"tools": []},
        {"tool_choice": "none"},
        {"functions": []},
        {"function_call": "none"},
        {"response_format": {"type": "text"}},
        {"modalities": ["text"]},
        {"modalities": []},
        {"parallel_tool_calls": True},
    ],
)
def test_check_supported_accepts(kw: dict[str, Any]) -> None:
    convert.check_supported(req(**kw))


# ------------------------------------------------------------------ messages_for_template


def msgs(*raw: dict[str, Any]) -> list[wire.Message]:
    return req(messages=list(raw)).messages


@pytest.mark.parametrize(
    "raw,expected",
    [
        ({"role": "system", "content": "s"}, {"role": "system", "content": "s"}),
        ({"role": "developer", "content": "d"}, {"role": "developer", "content": "d"}),
        ({"role": "user", "content": "u", "name": "bob"}, {"role": "user", "content": "u", "name": "bob"}),
        ({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
         {"role": "user", "content": "ab"}),
        ({"role": "user", "content": []}, {"role": "user", "content": ""}),
        ({"role": "assistant", "content": "x"}, {"role": "assistant", "content": "x"}),
        ({"role": "assistant", "content": [{"type": "text", "text": "t"}, {"type": "refusal", "refusal": "r"}]},
         {"role": "assistant", "content": "tr"}),
        ({"role": "assistant", "content": None, "refusal": "no"}, None),  # special-cased below
        ({"role": "function", "content": "out", "name": "f"}, {"role": "tool", "content": "out", "name": "f"}),
        ({"role": "function", "content": None, "name": "f"}, {"role": "tool", "content": "", "name": "f"}),
    ],
)
def test_messages_for_template(raw: dict[str, Any], expected: dict[str, Any] | None) -> None:
    if expected is None:
        with pytest.raises(ValidationError):
            msgs(raw)  # an assistant message needs content, tool_calls or function_call
        return
    assert convert.messages_for_template(msgs(raw)) == [expected]


def test_assistant_refusal_used_when_content_empty() -> None:
    m = msgs({"role": "assistant", "content": None, "refusal": "I can't",
              "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
    out = convert.messages_for_template(m)
    assert out[0]["content"] == "I can't"


def test_assistant_tool_calls_and_function_call() -> None:
    m = msgs(
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "{\"x\":1}"}}],
         "function_call": {"name": "legacy", "arguments": "{}"}},
    )
    out = convert.messages_for_template(m)
    assert out[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            # Templates get arguments as mappings (the Hugging Face convention), not JSON text.
            {"id": "call_a", "type": "function", "function": {"name": "get", "arguments": {"x": 1}}},
            {"id": "call_1", "type": "function", "function": {"name": "legacy", "arguments": {}}},
        ],
    }


def test_tool_message_answers_an_earlier_call() -> None:
    call = {"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "not json"}}
    out = convert.messages_for_template(msgs(
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "42", "tool_call_id": "call_a"},
    ))
    assert out[2] == {"role": "tool", "content": "42", "tool_call_id": "call_a"}
    assert out[1]["tool_calls"][0]["function"]["arguments"] == "not json"  # kept as text when not JSON


@pytest.mark.parametrize("tool_at,call_id", [(1, "call_a"), (3, "call_b")])
def test_tool_message_with_unknown_call_id(tool_at: int, call_id: str) -> None:
    call = {"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "{}"}}
    raw: list[dict[str, Any]] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "1", "tool_call_id": "call_a"},
    ]
    raw.insert(tool_at, {"role": "tool", "content": "42", "tool_call_id": call_id})
    with pytest.raises(InvalidRequest) as ei:
        convert.messages_for_template(msgs(*raw))
    assert ei.value.param == f"messages[{tool_at}].tool_call_id"
    assert call_id in ei.value.message


def test_messages_for_template_keeps_order_and_does_not_mutate() -> None:
    m = msgs({"role": "system", "content": "a"}, {"role": "user", "content": "b"},
             {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"})
    before = [x.model_dump() for x in m]
    out = convert.messages_for_template(m)
    assert [(d["role"], d["content"]) for d in out] == [("system", "a"), ("user", "b"), ("assistant", "c"),
                                                        ("user", "d")]
    assert [x.model_dump() for x in m] == before


@pytest.mark.parametrize(
    "part,kind",
    [
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, "image_url"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "input_audio"),
        ({"type": "file", "file": {"file_id": "file-1"}}, "file"),
    ],
)
def test_non_text_parts_rejected_with_param(part: dict[str, Any], kind: str) -> None:
    m = msgs({"role": "system", "content": "s"},
             {"role": "user", "content": [{"type": "text", "text": "t"}, part]})
    with pytest.raises(InvalidRequest) as ei:
        convert.messages_for_template(m)
    assert ei.value.param == "messages[1].content[1].type"
    assert ei.value.code == "unsupported_content_type"
    assert kind in ei.value.message


# ------------------------------------------------------------------ sampling_params


@pytest.mark.parametrize(
    "kw,max_tokens,choice,expected",
    [
        ({}, 10, 0, SamplingParams(max_tokens=10)),
        ({"temperature": 0}, 5, 0, SamplingParams(max_tokens=5, temperature=0.0)),
        ({"temperature": 0.3, "top_p": 0.5, "top_k": 7, "min_p": 0.1}, 5, 0,
         SamplingParams(max_tokens=5, temperature=0.3, top_p=0.5, top_k=7, min_p=0.1)),
        ({"top_p": 0}, 1, 0, SamplingParams(max_tokens=1, top_p=0.0)),
        ({"seed": 100}, 3, 0, SamplingParams(max_tokens=3, seed=100)),
        ({"seed": 100}, 3, 2, SamplingParams(max_tokens=3, seed=102)),
        ({"seed": 0}, 3, 1, SamplingParams(max_tokens=3, seed=1)),
        ({}, 3, 4, SamplingParams(max_tokens=3, seed=None)),
        ({"stop": "x"}, 3, 0, SamplingParams(max_tokens=3, stop=("x",))),
        ({"stop": ["x", "y"]}, 3, 0, SamplingParams(max_tokens=3, stop=("x", "y"))),
        ({"stop": []}, 3, 0, SamplingParams(max_tokens=3, stop=())),
        ({"presence_penalty": 1.5, "frequency_penalty": -1}, 3, 0,
         SamplingParams(max_tokens=3, presence_penalty=1.5, frequency_penalty=-1.0)),
        ({"logit_bias": {"10": 5, "20": -100}}, 3, 0, SamplingParams(max_tokens=3, logit_bias={10: 5.0, 20: -100.0})),
        ({"logprobs": True}, 3, 0, SamplingParams(max_tokens=3, logprobs=True)),
        ({"logprobs": True, "top_logprobs": 5}, 3, 0, SamplingParams(max_tokens=3, logprobs=True, top_logprobs=5)),
    ],
)
def test_sampling_params(kw: dict[str, Any], max_tokens: int, choice: int, expected: SamplingParams) -> None:
    assert convert.sampling_params(req(**kw), max_tokens, choice) == expected


def test_sampling_params_logit_bias_keys_are_ints() -> None:
    p = convert.sampling_params(req(logit_bias={"123": 1}), 1, 0)
    assert list(p.logit_bias) == [123] and isinstance(next(iter(p.logit_bias)), int)


# ------------------------------------------------------------------ finish_reason, logprobs


def test_logprobs_to_wire() -> None:
    items = [
        TokenLogprob(token="Hi", token_bytes=b"Hi", logprob=-0.1,
                     top=(TopLogprob("Hi", b"Hi", -0.1), TopLogprob("Yo", b"Yo", -2.5))),
        TokenLogprob(token="é", token_bytes="é".encode(), logprob=-1.0),
    ]
    out = convert.logprobs_to_wire(items)
    assert [x.model_dump() for x in out] == [
        {"token": "Hi", "bytes": [72, 105], "logprob": -0.1, "top_logprobs": [
            {"token": "Hi", "bytes": [72, 105], "logprob": -0.1},
            {"token": "Yo", "bytes": [89, 111], "logprob": -2.5},
        ]},
        {"token": "é", "bytes": [0xC3, 0xA9], "logprob": -1.0, "top_logprobs": []},
    ]
    assert convert.logprobs_to_wire([]) == []
