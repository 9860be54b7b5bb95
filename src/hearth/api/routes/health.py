"""Liveness and readiness probes. Unauthenticated, like /metrics: they reveal no tenant data."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hearth.api.deps import ContainerDep

router = APIRouter()


def _ready(c: ContainerDep) -> JSONResponse:
    ok = c.ready and c.chat.healthy()
    return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)


@router.get("/health")
async def health(c: ContainerDep) -> JSONResponse:
    """Readiness, kept at the historical path: 200 when every engine is healthy, else 503."""
    return _ready(c)


@router.get("/health/ready")
async def ready(c: ContainerDep) -> JSONResponse:
    """200 when every engine is healthy (route traffic here), else 503."""
    return _ready(c)


@router.get("/health/live")
async def live() -> JSONResponse:
    """200 while the process answers HTTP at all (restart it when this fails), whatever the engines do."""
    return JSONResponse({"status": "ok"})
