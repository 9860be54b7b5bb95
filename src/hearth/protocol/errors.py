"""The OpenAI error envelope: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class InvalidRequest(Exception):
    """A request that is well-formed JSON but not acceptable. Maps to 400 invalid_request_error."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class UnsupportedParameter(InvalidRequest):
    """A documented OpenAI parameter that hearth does not implement (yet). Never silently ignored."""

    def __init__(self, param: str, detail: str = "") -> None:
        msg = f"The parameter `{param}` is not supported by this server yet."
        super().__init__(f"{msg} {detail}".strip(), param=param, code="unsupported_parameter")
