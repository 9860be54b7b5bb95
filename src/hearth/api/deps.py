"""Annotated dependencies, named for what they give."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from hearth.api.errors import ApiError
from hearth.platform.keys import Principal
from hearth.services.admin import AdminService
from hearth.services.auth import AuthError, AuthService
from hearth.services.chat import ChatService
from hearth.services.context import RequestContext
from hearth.services.embeddings import EmbeddingsService
from hearth.services.metering import Metering
from hearth.services.metrics import Metrics
from hearth.services.models import ModelsService
from hearth.services.moderations import ModerationsService
from hearth.services.usage import UsageService


@dataclass(frozen=True, slots=True)
class Container:
    """What the HTTP edge needs, built by bootstrap."""

    chat: ChatService
    models: ModelsService
    auth: AuthService
    admin: AdminService | None = None  # None without a database (static key or no auth)
    ready: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    # Rate limits, spend limits and the usage ledger; its background tasks run with the server.
    metering: Metering = field(default_factory=Metering)
    usage: UsageService | None = None  # None without a database
    # Always present; with no embedding models it answers 404 model_not_found for every model.
    embeddings: EmbeddingsService = field(default_factory=lambda: EmbeddingsService(()))
    # Always present; with no classifier it answers 404 model_not_found for every model.
    moderations: ModerationsService = field(default_factory=lambda: ModerationsService(None))


async def _container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


async def _ctx(request: Request) -> RequestContext:
    ctx = request.scope.get("state", {}).get("ctx")
    return ctx if isinstance(ctx, RequestContext) else RequestContext(request_id="req_local")


def require(family: str, write: bool) -> Any:
    """A dependency that authenticates the caller and checks it may use `family` (read or write).

    The principal lands on the request context, where services find its project (prefix-cache
    namespace, ownership of stored objects).
    """

    async def dep(request: Request, c: Annotated[Container, Depends(_container)],
                  ctx: Annotated[RequestContext, Depends(_ctx)]) -> Principal | None:
        h = request.headers
        try:
            p = await c.auth.authenticate(h.get("authorization"))
            c.auth.check(p, family, write, org=h.get("openai-organization"), project=h.get("openai-project"))
        except AuthError as exc:
            raise ApiError(exc.status, exc.message, "invalid_request_error", exc.code) from None
        ctx.principal = p
        return p

    return Depends(dep)


ContainerDep = Annotated[Container, Depends(_container)]
ContextDep = Annotated[RequestContext, Depends(_ctx)]
