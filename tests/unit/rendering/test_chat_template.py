"""ChatTemplate against the real templates of the two shipped models, plus error paths."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hearth.rendering.chat_template import (
    ChatTemplate,
    MissingChatTemplate,
    TemplateError,
    chat_template_from_metadata,
    load_chat_template,
)
from hearth.rendering.gguf_meta import GGUFMetadata

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is 2+2?"},
]

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather für a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def smollm2(smollm2_meta: GGUFMetadata) -> ChatTemplate:
    return chat_template_from_metadata(smollm2_meta, "smollm2")


@pytest.fixture(scope="module")
def qwen(qwen_meta: GGUFMetadata) -> ChatTemplate:
    return chat_template_from_metadata(qwen_meta, "qwen2.5-coder")


def test_special_tokens_come_from_vocab(smollm2: ChatTemplate, qwen: ChatTemplate) -> None:
    assert (smollm2.bos_token, smollm2.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert (qwen.bos_token, qwen.eos_token) == ("<|endoftext|>", "<|im_end|>")


def test_smollm2_conversation(smollm2: ChatTemplate) -> None:
    assert smollm2.render(CONVERSATION) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_smollm2_without_generation_prompt_and_default_system(smollm2: ChatTemplate) -> None:
    assert smollm2.render([{"role": "user", "content": "Hi!"}], add_generation_prompt=False) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
    )


def test_smollm2_ignores_tools(smollm2: ChatTemplate) -> None:
    # SmolLM2's template has no tool support: tools change nothing.
    messages = [{"role": "user", "content": "Hi!"}]
    assert smollm2.render(messages, tools=[WEATHER_TOOL]) == smollm2.render(messages)


def test_qwen_conversation(qwen: ChatTemplate) -> None:
    assert qwen.render(CONVERSATION) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen_default_system_prompt(qwen: ChatTemplate) -> None:
    assert qwen.render([{"role": "user", "content": "Hi!"}], add_generation_prompt=False) == (
        f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
    )


def _qwen_tools_system(system: str, tools_json: str) -> str:
    return (
        f"<|im_start|>system\n{system}\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{tools_json}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        "<|im_end|>\n"
    )


def test_qwen_tools_block(qwen: ChatTemplate) -> None:
    # The whole OpenAI tool object goes in, one line per tool, keys in the caller's order,
    # non-ASCII unescaped (HF tojson semantics).
    tool_line = (
        '{"type": "function", "function": {"name": "get_weather", "description": '
        '"Current weather für a city", "parameters": {"type": "object", "properties": '
        '{"city": {"type": "string"}}, "required": ["city"]}}}'
    )
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}]
    assert qwen.render(messages, tools=[WEATHER_TOOL]) == (
        _qwen_tools_system("Be brief.", tool_line)
        + "<|im_start|>user\nParis?<|im_end|>\n<|im_start|>assistant\n"
    )
    # Without a system message the default one leads the tools block.
    assert qwen.render([{"role": "user", "content": "Paris?"}], tools=[WEATHER_TOOL]).startswith(
        _qwen_tools_system(QWEN_DEFAULT_SYSTEM, tool_line)
    )


def test_qwen_tool_calls_and_tool_results(qwen: ChatTemplate) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    # OpenAI wire format: arguments is a JSON string.
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 3}'},
    ]
    original = json.dumps(messages)
    rendered = qwen.render(messages, tools=[WEATHER_TOOL])
    assert rendered.endswith(
        "<|im_start|>user\nWeather in Paris and Oslo?<|im_end|>\n"
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
        "<|im_end|>\n"
        # Consecutive tool results share one user turn.
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n'
        '<tool_response>\n{"temp": 3}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n"
    )
    assert json.dumps(messages) == original  # the caller's messages are not mutated


def test_qwen_assistant_content_with_tool_call(qwen: ChatTemplate) -> None:
    messages = [
        {"role": "user", "content": "Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            ],
        },
    ]
    assert qwen.render(messages, add_generation_prompt=False).endswith(
        "<|im_start|>assistant\nChecking.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        "<|im_end|>\n"
    )


def test_tojson_with_and_without_indent() -> None:
    template = ChatTemplate("{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=2) }}", "<s>", "</s>")
    assert template.render([{"role": "user", "content": "é<>"}], add_generation_prompt=False) == (
        '{"role": "user", "content": "é<>"}|{\n  "role": "user",\n  "content": "é<>"\n}'
    )


def test_bos_eos_extra_and_strftime_now() -> None:
    template = ChatTemplate(
        "{{ bos_token }}{{ flavour }}{{ strftime_now('%Y') | length }}{{ eos_token }}", "<s>", "</s>"
    )
    assert template.render([], flavour="x") == "<s>x4</s>"


def test_generation_block_renders_its_body() -> None:
    template = ChatTemplate("{% generation %}{{ messages[0].content }}{% endgeneration %}", "", "")
    assert template.render([{"role": "assistant", "content": "ok"}]) == "ok"


def test_raise_exception_is_typed_and_keeps_message() -> None:
    template = ChatTemplate(
        "{% if messages[0].role != 'user' %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}",
        "",
        "",
    )
    with pytest.raises(TemplateError) as info:
        template.render([{"role": "assistant", "content": "x"}])
    assert str(info.value) == "Conversation roles must alternate user/assistant"


def test_syntax_error_is_template_error() -> None:
    with pytest.raises(TemplateError, match="syntax error"):
        ChatTemplate("{% for m in messages %}", "", "")


def test_render_failure_is_template_error(smollm2: ChatTemplate) -> None:
    # SmolLM2 concatenates content as a string; None content cannot render.
    with pytest.raises(TemplateError, match="failed to render"):
        smollm2.render([{"role": "user", "content": None}])


def test_sandbox_blocks_mutation() -> None:
    template = ChatTemplate("{{ messages.append(1) }}", "", "")
    with pytest.raises(TemplateError):
        template.render([])


@pytest.mark.parametrize("template", [None, "", "  \n"])
def test_missing_template(template: str | None) -> None:
    with pytest.raises(MissingChatTemplate) as info:
        load_chat_template(template, "<s>", "</s>", "acme/base-7b")
    message = str(info.value)
    assert "acme/base-7b" in message
    assert "tokenizer.chat_template" in message
    assert "GGUF" in message
    assert "chat template file" in message
    assert info.value.model_id == "acme/base-7b"


def test_load_chat_template_compiles() -> None:
    template = load_chat_template("{{ messages | length }}", "<s>", "</s>", "m")
    assert template.render([{"role": "user", "content": "a"}]) == "1"
