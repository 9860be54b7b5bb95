"""Protocol <-> engine conversions. Pure functions, table-tested."""

from __future__ import annotations

import json
from typing import Any

from hearth.engine.types import SamplingParams, TokenLogprob
from hearth.protocol import chat as wire
from hearth.protocol.errors import InvalidRequest, UnsupportedParameter


def check_supported(req: wire.ChatCompletionRequest) -> None:
    """Parameters we accept on the wire but do not implement -> 400 naming them."""
    if req.modalities and any(m != "text" for m in req.modalities):
        raise UnsupportedParameter("modalities", "Only text output is supported.")
    if req.audio is not None:
        raise UnsupportedParameter("audio", "Audio output is not supported.")
    if req.prediction is not None:
        raise UnsupportedParameter("prediction", "Predicted outputs are not supported.")
    if req.web_search_options is not None:
        raise UnsupportedParameter("web_search_options", "Web search is not available on this server.")


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for j, part in enumerate(content):
        if isinstance(part, wire.TextPart):
            parts.append(part.text)
        elif isinstance(part, wire.RefusalPart):
            parts.append(part.refusal)
        else:
            raise InvalidRequest(
                f"Content parts of type `{part.type}` are not supported by this model; send text parts only.",
                param=f"{where}.content[{j}].type",
                code="unsupported_content_type",
            )
    return "".join(parts)


def _template_arguments(arguments: str) -> Any:
    # Chat templates (HF convention) expect arguments as a mapping; keep text that isn't JSON as is.
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def messages_for_template(messages: list[wire.Message]) -> list[dict[str, Any]]:
    """Flatten wire messages into the plain dicts chat templates expect (HF conventions).

    A `tool` message must answer a call made by an earlier assistant message: an unknown
    `tool_call_id` is a 400, as on OpenAI.
    """
    out: list[dict[str, Any]] = []
    call_ids: set[str] = set()
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        d: dict[str, Any] = {"role": m.role, "content": _text_of(m.content, where)}
        if isinstance(m, wire.AssistantMessage):
            if m.content is None and m.refusal:
                d["content"] = m.refusal
            calls = list(m.tool_calls or [])
            if m.function_call is not None:
                calls.append(wire.ToolCall(id=f"call_{i}", function=m.function_call))
            if calls:
                call_ids.update(c.id for c in calls)
                d["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.function.name, "arguments": _template_arguments(c.function.arguments)}}
                    for c in calls
                ]
        elif isinstance(m, wire.ToolMessage):
            if m.tool_call_id not in call_ids:
                raise InvalidRequest(
                    f"Invalid parameter: messages with role 'tool' must be a response to a preceding message "
                    f"with 'tool_calls'; no call has the id '{m.tool_call_id}'.",
                    param=f"{where}.tool_call_id", code="invalid_tool_call_id",
                )
            d["tool_call_id"] = m.tool_call_id
        elif isinstance(m, wire.FunctionMessage):
            d["role"] = "tool"
            d["name"] = m.name
        if getattr(m, "name", None) and "name" not in d:
            d["name"] = m.name
        out.append(d)
    return out


def with_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Add `text` to the system message (a new first one if there is none)."""
    if messages and messages[0]["role"] in ("system", "developer"):
        first = dict(messages[0], content=f"{messages[0]['content']}\n\n{text}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def sampling_params(req: wire.ChatCompletionRequest, max_tokens: int, choice: int) -> SamplingParams:
    stop: tuple[str, ...] = ()
    if isinstance(req.stop, str):
        stop = (req.stop,)
    elif req.stop:
        stop = tuple(req.stop)
    seed = req.seed + choice if req.seed is not None else None
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        min_p=req.min_p or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in (req.logit_bias or {}).items()},
        seed=seed,
        stop=stop,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
    )


def logprobs_to_wire(items: list[TokenLogprob]) -> list[wire.TokenLogprob]:
    return [
        wire.TokenLogprob(
            token=t.token,
            bytes=list(t.token_bytes),
            logprob=t.logprob,
            top_logprobs=[
                wire.TopLogprob(token=x.token, bytes=list(x.token_bytes), logprob=x.logprob) for x in t.top
            ],
        )
        for t in items
    ]
