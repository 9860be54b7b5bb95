"""The ONE table from exceptions to HTTP status and OpenAI error envelope (JSON and SSE alike)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from hearth.engine import errors as engine_errors
from hearth.protocol.errors import InvalidRequest
from hearth.services.admin import NotFoundError
from hearth.services.limits import RateLimited
from hearth.services.metering import QuotaExceeded

log = logging.getLogger("hearth.api")


class ApiError(Exception):
    """An error raised by the HTTP edge itself (auth, body size, routing)."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Mapped:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def envelope(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def map_exception(exc: BaseException) -> Mapped:
    if isinstance(exc, ApiError):
        return Mapped(exc.status, envelope(exc.message, exc.type, exc.param, exc.code), exc.headers)
    if isinstance(exc, NotFoundError):
        return Mapped(404, envelope(exc.message, "invalid_request_error", exc.param, "not_found"), {})
    if isinstance(exc, InvalidRequest):
        return Mapped(400, envelope(exc.message, "invalid_request_error", exc.param, exc.code), {})
    if isinstance(exc, ValidationError):
        return Mapped(400, validation_envelope(exc), {})
    if isinstance(exc, engine_errors.ModelNotFound):
        return Mapped(404, envelope(str(exc), "invalid_request_error", "model", "model_not_found"), {})
    if isinstance(exc, engine_errors.ContextLengthExceeded):
        return Mapped(400, envelope(str(exc), "invalid_request_error", "messages", "context_length_exceeded"), {})
    if isinstance(exc, engine_errors.InvalidConstraint):
        return Mapped(400, envelope(f"The output constraint cannot be enforced: {exc}", "invalid_request_error",
                                    "response_format", "invalid_json_schema"), {})
    if isinstance(exc, RateLimited):
        headers = dict(exc.headers)
        if exc.retry_after_s is not None:
            headers["retry-after"] = str(max(1, math.ceil(exc.retry_after_s)))
            headers["retry-after-ms"] = str(math.ceil(exc.retry_after_s * 1000))
        else:  # waiting cannot help: the official SDKs honour x-should-retry and do not retry
            headers["x-should-retry"] = "false"
        return Mapped(429, envelope(exc.message, exc.kind, None, "rate_limit_exceeded"), headers)
    if isinstance(exc, QuotaExceeded):
        return Mapped(429, envelope(exc.message, "insufficient_quota", None, "insufficient_quota"),
                      {"x-should-retry": "false"})
    if isinstance(exc, engine_errors.Overloaded):
        secs = max(1, round(exc.retry_after_s))
        return Mapped(503, envelope(str(exc), "server_error", None, "server_overloaded"),
                      {"retry-after": str(secs), "retry-after-ms": str(int(exc.retry_after_s * 1000))})
    if isinstance(exc, engine_errors.EngineError):
        log.error("engine failure: %s", exc.__class__.__name__, exc_info=exc)
        return Mapped(500, envelope("The model failed while generating a response. Please retry.",
                                    "server_error", None, "engine_error"), {})
    log.error("internal error", exc_info=exc)
    return Mapped(500, envelope("The server had an error while processing your request. Sorry about that!",
                                "server_error"), {})


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none", "null"}
_TAGS = {"system", "developer", "user", "assistant", "tool", "function", "text", "image_url",
         "input_audio", "file", "refusal", "custom", "allowed_tools"}
_TAGGED_LISTS = {"messages", "tools"}  # list fields whose items are discriminated unions


def _param(loc: tuple[int | str, ...]) -> str | None:
    out = ""
    container = ""  # the last name before an index: tells whether that list is a discriminated union
    tag_next = False
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            # pydantic inserts the tag after the index only for lists of discriminated unions
            # (`messages`, `list[tagged-union[...]]`); elsewhere a name like `function` or `text`
            # after an index is a real field (tool_calls[0].function, list[TextPart] -> [0].text).
            tag_next = container in _TAGGED_LISTS or container.startswith("list[tagged-union")
            continue
        was_tag_next, tag_next = tag_next, False
        container = part
        if was_tag_next and part in _TAGS:  # discriminated-union tag inserted by pydantic
            continue
        if part.startswith("tagged-union["):  # a field that is a discriminated union: the tag follows
            tag_next = True
            continue
        if "[" in part or part in _TYPE_NAMES or part.startswith("function-") or part[:1].isupper():
            continue  # union member names such as `list[TextPart]` or `NamedFunction`
        out += f".{part}" if out else part
    return out or None


def validation_envelope(exc: ValidationError | list[dict[str, Any]]) -> dict[str, Any]:
    errs = exc.errors() if isinstance(exc, ValidationError) else exc
    if not errs:
        return envelope("Invalid request.", "invalid_request_error")
    # Prefer the most specific error (longest location); unions report one per member.
    e = max(errs, key=lambda x: (x.get("type") != "union_tag_invalid", len(x.get("loc", ()))))
    loc = tuple(e.get("loc", ()))
    param = _param(loc)
    typ = e.get("type", "")
    if typ == "json_invalid":
        return envelope(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
            "not valid JSON.)", "invalid_request_error")
    if typ == "missing":
        return envelope(f"Missing required parameter: '{param}'.", "invalid_request_error", param,
                        "missing_required_parameter")
    if typ == "extra_forbidden":
        return envelope(f"Unrecognized request argument supplied: {param}", "invalid_request_error", param,
                        "unknown_parameter")
    msg = str(e.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        head, sep, rest = msg.partition(": ")
        if sep and " " not in head:
            # `head` names a field of the model that raised; `param` is where that model sits.
            where = f"{param}.{head}" if param else head
            return envelope(f"Invalid '{where}': {rest}", "invalid_request_error", where, "invalid_value")
    got = e.get("input")
    shown = json.dumps(got)[:80] if isinstance(got, (int, float, str, bool)) or got is None else None
    suffix = f" (got {shown})" if shown is not None else ""
    return envelope(f"Invalid '{param}': {msg}{suffix}.", "invalid_request_error", param, "invalid_value")
