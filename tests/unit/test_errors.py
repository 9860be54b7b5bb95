"""api/errors.py: pydantic locations -> `param`, validation envelopes, and the exception table."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hearth.api.errors import ApiError, _param, envelope, map_exception, validation_envelope
from hearth.engine import errors as engine_errors
from hearth.protocol.chat import ChatCompletionRequest
from hearth.protocol.errors import InvalidRequest, UnsupportedParameter

TAGGED = "list[tagged-union[TextPart,ImagePart,InputAudioPart,FilePart]]"


@pytest.mark.parametrize(
    "loc,param",
    [
        ((), None),
        (("body",), None),
        (("messages",), "messages"),
        (("body", "messages"), "messages"),
        (("temperature",), "temperature"),
        (("messages", 0), "messages[0]"),
        (("messages", 0, "user", "content"), "messages[0].content"),
        (("body", "messages", 3, "system", "content"), "messages[3].content"),
        (("messages", 0, "user", "content", "str"), "messages[0].content"),
        (("messages", 0, "user", "content", TAGGED, 1, "image_url", "image_url", "url"),
         "messages[0].content[1].image_url.url"),
        (("messages", 0, "user", "content", TAGGED, 0, "text", "text"), "messages[0].content[0].text"),
        (("messages", 2, "assistant", "content", "list[tagged-union[TextPart,RefusalPart]]", 0, "refusal",
          "refusal"), "messages[2].content[0].refusal"),
        # Not a discriminated union: a name after the index is a real field, not a tag.
        (("messages", 0, "system", "content", "list[TextPart]", 0, "text"), "messages[0].content[0].text"),
        (("messages", 0, "assistant", "tool_calls", 0, "function", "arguments"),
         "messages[0].tool_calls[0].function.arguments"),
        (("messages", 1, "tool", "tool_call_id"), "messages[1].tool_call_id"),
        (("messages", 1, "function", "name"), "messages[1].name"),
        (("stop", "list[str]", 2), "stop[2]"),
        (("stop", "str"), "stop"),
        (("logit_bias", "12"), "logit_bias.12"),
        (("stream_options", "include_usage"), "stream_options.include_usage"),
        (("tool_choice", "dict[str,any]"), "tool_choice"),
        (("messages", 0, "assistant", "function-after[_has_something(), AssistantMessage]"), "messages[0]"),
    ],
)
def test_param_mapping(loc: tuple[int | str, ...], param: str | None) -> None:
    assert _param(loc) == param


def errors_for(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as ei:
        ChatCompletionRequest.model_validate(data)
    env = validation_envelope(ei.value)
    assert set(env) == {"error"}
    assert set(env["error"]) == {"message", "type", "param", "code"}
    assert env["error"]["type"] == "invalid_request_error"
    return env["error"]


def base(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    d.update(kw)
    return d


@pytest.mark.parametrize(
    "data,param,code",
    [
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
        (base(messages=[]), "messages", "invalid_value"),
        (base(messages=[{"role": "user"}]), "messages[0].content", "missing_required_parameter"),
        (base(messages=[{"role": "robot", "content": "x"}]), "messages[0]", "invalid_value"),
        (base(messages=[{"role": "system", "content": [{"type": "text"}]}]), "messages[0].content[0].text",
         "missing_required_parameter"),
        (base(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
         "messages[0].content[0].image_url.url", "missing_required_parameter"),
        (base(messages=[{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f"}}]}]),
         "messages[0].tool_calls[0].function.arguments", "missing_required_parameter"),
        (base(messages=[{"role": "assistant"}]), "messages[0]", "invalid_value"),
        (base(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id",
         "missing_required_parameter"),
        (base(temperature=2.5), "temperature", "invalid_value"),
        (base(top_p=-1), "top_p", "invalid_value"),
        (base(n=0), "n", "invalid_value"),
        (base(stop=["a"] * 5), "stop", "invalid_value"),
        (base(top_logprobs=3), "top_logprobs", "invalid_value"),
        (base(logit_bias={"x": 1}), "logit_bias", "invalid_value"),
        (base(logit_bias={"1": 101}), "logit_bias", "invalid_value"),
        (base(stream_options={"include_usage": True}), "stream_options", "invalid_value"),
        (base(stream=True, stream_options={"bogus": 1}), "stream_options.bogus", "unknown_parameter"),
        (base(bogus=1), "bogus", "unknown_parameter"),
        (base(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
    ],
)
def test_validation_envelope(data: dict[str, Any], param: str, code: str) -> None:
    err = errors_for(data)
    assert err["param"] == param
    assert err["code"] == code
    assert "Value error" not in err["message"]


def test_validation_messages() -> None:
    assert errors_for({"model": "m"})["message"] == "Missing required parameter: 'messages'."
    assert errors_for(base(bogus=1))["message"] == "Unrecognized request argument supplied: bogus"
    msg = errors_for(base(temperature=2.5))["message"]
    assert msg.startswith("Invalid 'temperature': ") and "2.5" in msg
    msg = errors_for(base(stop=["a"] * 5))["message"]
    assert msg == "Invalid 'stop': at most 4 stop sequences are allowed"


def test_validation_envelope_json_invalid_and_empty() -> None:
    env = validation_envelope([{"type": "json_invalid", "loc": ()}])["error"]
    assert env["param"] is None and env["code"] is None and "JSON" in env["message"]
    assert validation_envelope([]) == envelope("Invalid request.", "invalid_request_error")


# ------------------------------------------------------------------ map_exception


@pytest.mark.parametrize(
    "exc,status,type_,param,code",
    [
        (ApiError(401, "nope", "invalid_request_error", "invalid_api_key"), 401, "invalid_request_error", None,
         "invalid_api_key"),
        (ApiError(400, "bad", "invalid_request_error", "c", "p"), 400, "invalid_request_error", "p", "c"),
        (InvalidRequest("bad", param="messages", code="x"), 400, "invalid_request_error", "messages", "x"),
        (UnsupportedParameter("tools"), 400, "invalid_request_error", "tools", "unsupported_parameter"),
        (engine_errors.ModelNotFound("zz"), 404, "invalid_request_error", "model", "model_not_found"),
        (engine_errors.ContextLengthExceeded(100, 90, 20), 400, "invalid_request_error", "messages",
         "context_length_exceeded"),
        (engine_errors.Overloaded(2.5), 503, "server_error", None, "server_overloaded"),
        (engine_errors.GenerationFailed("secret detail"), 500, "server_error", None, "engine_error"),
        (engine_errors.EngineDead("secret detail"), 500, "server_error", None, "engine_error"),
        (RuntimeError("secret detail"), 500, "server_error", None, None),
    ],
)
def test_map_exception(exc: Exception, status: int, type_: str, param: str | None, code: str | None) -> None:
    m = map_exception(exc)
    assert m.status == status
    assert set(m.body) == {"error"}
    err = m.body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["param"], err["code"]) == (type_, param, code)
    assert "secret detail" not in err["message"]


def test_map_exception_messages_and_headers() -> None:
    m = map_exception(engine_errors.ModelNotFound("zz"))
    assert "zz" in m.body["error"]["message"]
    m = map_exception(engine_errors.ContextLengthExceeded(100, 90, 20))
    assert "100" in m.body["error"]["message"] and "110" in m.body["error"]["message"]
    m = map_exception(engine_errors.Overloaded(2.5))
    assert set(m.headers) == {"retry-after", "retry-after-ms"}
    assert int(m.headers["retry-after"]) >= 2 and m.headers["retry-after-ms"] == "2500"
    m = map_exception(engine_errors.Overloaded(0.2))
    assert m.headers["retry-after"] == "1"
