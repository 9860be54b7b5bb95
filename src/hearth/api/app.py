"""create_app(container): the HTTP edge as a factory; no module-level state."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.api.deps import Container
from hearth.api.errors import ApiError, envelope, map_exception, validation_envelope
from hearth.api.middleware import EdgeMiddleware
from hearth.api.routes import admin, chat, embeddings, health, metrics, models, moderations, usage
from hearth.engine.errors import EngineError
from hearth.protocol.errors import InvalidRequest
from hearth.services.admin import NotFoundError
from hearth.services.limits import RateLimited
from hearth.services.metering import QuotaExceeded


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> JSONResponse:  # type: ignore[type-arg]
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(container: Container, *, max_body_bytes: int = 16 * 1024 * 1024) -> FastAPI:
    app = FastAPI(title="hearth", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.container = container
    for r in (chat.router, embeddings.router, moderations.router, models.router, admin.router, usage.router,
              health.router, metrics.router):
        app.include_router(r)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            msg = f"Invalid URL ({request.method} {request.url.path})"
        elif exc.status_code == 405:
            msg = f"Method not allowed ({request.method} {request.url.path})"
        else:
            msg = str(exc.detail)
        return _json(exc.status_code, envelope(msg, "invalid_request_error"))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(400, validation_envelope(list(exc.errors())))

    async def _mapped(request: Request, exc: Exception) -> JSONResponse:
        m = map_exception(exc)
        return _json(m.status, m.body, m.headers)

    # Known error classes are answered by the exception middleware; anything else reaches the
    # catch-all, which answers a 500 envelope (the traceback goes to the server log only).
    for cls in (ApiError, InvalidRequest, NotFoundError, RateLimited, QuotaExceeded, EngineError, ValidationError,
                Exception):
        app.add_exception_handler(cls, _mapped)

    app.add_middleware(EdgeMiddleware, max_body_bytes=max_body_bytes)
    return app
