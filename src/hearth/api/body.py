"""Parsing request bodies into protocol models, with OpenAI's 400s instead of FastAPI's 422s."""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from hearth.api.errors import ApiError, validation_envelope

M = TypeVar("M", bound=BaseModel)


def json_response(obj: BaseModel) -> Response:
    """A protocol object as the response body (pydantic's serializer, no FastAPI re-validation)."""
    return Response(obj.model_dump_json(), media_type="application/json")


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if raw and ctype and "json" not in ctype:
        raise ApiError(400, f"Unsupported content type: '{ctype}'. This API method only accepts "
                       "'application/json' requests.", "invalid_request_error")
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        data = _INVALID
    if data is _INVALID or not isinstance(data, dict):
        env = validation_envelope([{"type": "json_invalid", "loc": ()}])["error"]
        if data is not _INVALID and data is not None:
            env["message"] = "The request body must be a JSON object."
        elif data is None:
            env["message"] = "The request body is empty; this API method expects a JSON object."
        raise ApiError(400, env["message"], "invalid_request_error")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        env = validation_envelope(exc)["error"]
        raise ApiError(400, env["message"], env["type"], env["code"], env["param"]) from None


_INVALID = object()
