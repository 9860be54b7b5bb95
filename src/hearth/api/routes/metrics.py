"""Prometheus scrape endpoint. Unauthenticated like /health: keep it off the public network."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from hearth.api.deps import ContainerDep
from hearth.services.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics")
async def metrics(c: ContainerDep) -> Response:
    return Response(c.metrics.render(), media_type=CONTENT_TYPE)
