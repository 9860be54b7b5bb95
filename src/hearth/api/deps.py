"""Annotated dependencies, named for what they give."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from hearth.api.errors import ApiError
from hearth.services.chat import ChatService
from hearth.services.context import RequestContext
from hearth.services.metrics import Metrics
from hearth.services.models import ModelsService


@dataclass(frozen=True, slots=True)
class Container:
    """What the HTTP edge needs, built by bootstrap."""

    chat: ChatService
    models: ModelsService
    api_key: str | None  # static key until the platform issue brings real keys
    ready: bool = True
    metrics: Metrics = field(default_factory=Metrics)


def _container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def _ctx(request: Request) -> RequestContext:
    ctx = request.scope.get("state", {}).get("ctx")
    return ctx if isinstance(ctx, RequestContext) else RequestContext(request_id="req_local")


def _auth(request: Request, c: Annotated[Container, Depends(_container)]) -> None:
    if c.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        )
    if not hmac.compare_digest(token.encode(), c.api_key.encode()):
        shown = f"{token[:3]}***{token[-4:]}" if len(token) > 8 else "***"
        raise ApiError(401, f"Incorrect API key provided: {shown}.", "invalid_request_error",
                       code="invalid_api_key")


ContainerDep = Annotated[Container, Depends(_container)]
ContextDep = Annotated[RequestContext, Depends(_ctx)]
AuthDep = Depends(_auth)
