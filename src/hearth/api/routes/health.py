from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hearth.api.deps import ContainerDep

router = APIRouter()


@router.get("/health")
async def health(c: ContainerDep) -> JSONResponse:
    ok = c.ready and c.chat.healthy()
    return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)
