"""Real `hearth serve` processes with the shipped models, driven by the official openai SDK."""

from __future__ import annotations

import pytest
from model_server import KEY
from openai import OpenAI

pytestmark = [pytest.mark.model, pytest.mark.slow]

def _client(url: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)


def _check_pair(url: str, model: str) -> None:
    client = _client(url)
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name three colors."}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0, seed=5)  # type: ignore[arg-type]
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # Streaming the same greedy request reassembles to the same text and the same usage.
    chunks = list(client.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0, seed=5,  # type: ignore[arg-type]
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    # Same seed, same sampled output.
    a = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, seed=42, temperature=1.0)  # type: ignore[arg-type]
    b = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, seed=42, temperature=1.0)  # type: ignore[arg-type]
    assert a.choices[0].message.content == b.choices[0].message.content


def test_smollm2_end_to_end(smollm: str) -> None:
    _check_pair(smollm, "smollm2-135m-instruct")
    models = [m.id for m in _client(smollm).models.list()]
    # The embedding model and the moderation classifier are served by default (then the aliases).
    assert models[:3] == ["smollm2-135m-instruct", "all-minilm-l6-v2", "hearth-moderation-1"]
    assert "omni-moderation-latest" in models
    mod = _client(smollm).moderations.create(input=["Have a lovely day!", "I am going to kill you tonight."])
    assert [r.flagged for r in mod.results] == [False, True] and mod.id.startswith("modr-")
    e = _client(smollm).embeddings.create(model="all-minilm-l6-v2", input=["A man is eating food.",
                                                                        "A man is eating a piece of bread."])
    a, b = (d.embedding for d in e.data)
    assert len(a) == 384 and abs(sum(x * y for x, y in zip(a, b, strict=True)) - 0.7553) < 2e-3
    assert e.usage.prompt_tokens == 8 + 11


def test_qwen_default_model_end_to_end(qwen: str) -> None:
    _check_pair(qwen, "qwen2.5-coder-0.5b-instruct")
    client = _client(qwen)
    r = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", temperature=0, max_tokens=40, stop=["\n"],
        messages=[{"role": "user", "content": "What is 2+2? Answer with just the number."}],
    )
    assert "4" in (r.choices[0].message.content or "")
    assert "\n" not in (r.choices[0].message.content or "")


def test_smollm2_tools_and_schemas_without_native_tool_support(smollm: str) -> None:
    """SmolLM2's template knows nothing of tools: the json profile still forces valid calls."""
    import json

    c = _client(smollm)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"],
        "additionalProperties": False}, "strict": True}}]
    r = c.chat.completions.create(model="smollm2-135m-instruct", tools=tools, tool_choice="required",  # type: ignore[arg-type]
                                  temperature=1.0, max_tokens=120,
                                  messages=[{"role": "user", "content": "Weather in Paris?"}])
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.tool_calls
    assert ch.message.tool_calls[0].function.name == "get_weather"
    assert isinstance(json.loads(ch.message.tool_calls[0].function.arguments)["city"], str)
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                               "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
              "required": ["answer", "confidence"], "additionalProperties": False}
    r = c.chat.completions.create(model="smollm2-135m-instruct", temperature=1.0, max_tokens=60,
                                  messages=[{"role": "user", "content": "Is the sky blue?"}],
                                  response_format={"type": "json_schema", "json_schema": {
                                      "name": "verdict", "schema": schema, "strict": True}})
    out = json.loads(r.choices[0].message.content or "")
    assert out["answer"] in ("yes", "no") and 0 <= out["confidence"] <= 1
