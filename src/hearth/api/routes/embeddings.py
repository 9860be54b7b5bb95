from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hearth.api.body import parse_body
from hearth.api.deps import ContainerDep, ContextDep, require
from hearth.protocol.embeddings import EmbeddingCreateRequest

router = APIRouter(dependencies=[require("embeddings", write=True)])


@router.post("/v1/embeddings")
async def create_embeddings(request: Request, c: ContainerDep, ctx: ContextDep) -> Response:
    req = await parse_body(request, EmbeddingCreateRequest)
    result = await c.embeddings.create(req, ctx)
    return Response(result.model_dump_json(), media_type="application/json")
