from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hearth.api.body import parse_body
from hearth.api.deps import ContainerDep, ContextDep, require
from hearth.protocol.moderations import ModerationCreateRequest

router = APIRouter(dependencies=[require("moderations", write=True)])


@router.post("/v1/moderations")
async def create_moderation(request: Request, c: ContainerDep, ctx: ContextDep) -> Response:
    req = await parse_body(request, ModerationCreateRequest)
    result = await c.moderations.create(req, ctx)
    return Response(result.model_dump_json(by_alias=True), media_type="application/json")
