from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from hearth.api.deps import ContainerDep, require

router = APIRouter(dependencies=[require("models", write=False)])


@router.get("/v1/models")
async def list_models(c: ContainerDep) -> Response:
    return Response(c.models.list().model_dump_json(), media_type="application/json")


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, c: ContainerDep) -> Response:
    return Response(c.models.retrieve(model).model_dump_json(), media_type="application/json")
