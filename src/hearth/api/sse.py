"""The one Server-Sent Events encoder."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

DONE = b"data: [DONE]\n\n"


def event(obj: BaseModel) -> bytes:
    return b"data: " + obj.model_dump_json().encode() + b"\n\n"


def error_event(envelope: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(envelope).encode() + b"\n\n"
