"""Pure ASGI middleware: request id, processing time header, body size limit, one access-log line.

Pure ASGI (not BaseHTTPMiddleware) so streaming and client-disconnect cancellation pass straight through.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.api.errors import envelope, map_exception
from hearth.services.context import RequestContext
from hearth.services.ids import random_id

access_log = logging.getLogger("hearth.access")


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = random_id("req_")
        ctx = RequestContext(request_id=rid, started=started)
        scope.setdefault("state", {})["ctx"] = ctx
        status = 500
        started_response = logged = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started_response, logged
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                ms = int((time.perf_counter() - started) * 1000)
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                headers.append((b"openai-processing-ms", str(ms).encode()))
                present = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in ctx.response_headers.items()
                            if k.encode() not in present]
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                logged = True
                _log(scope, ctx, status)
            await send(message)

        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await _too_large(self.max_body_bytes, send_wrapper)
            return
        seen = 0

        async def receive_wrapper() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            await _too_large(self.max_body_bytes, send_wrapper)
        except Exception as exc:
            # Unhandled errors would otherwise be answered by Starlette's outermost middleware,
            # outside this one: without x-request-id. Answer them here (map_exception logs them).
            if started_response:
                raise
            m = map_exception(exc)
            await _send_json(m.status, m.body, m.headers, send_wrapper)
        finally:
            # A stream the client left never sends its last body message: still one line per request.
            if not logged:
                _log(scope, ctx, status, disconnected=started_response)


class BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", []):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


async def _too_large(limit: int, send: Send) -> None:
    await _send_json(413, envelope(
        f"Request body too large: the limit is {limit} bytes.", "invalid_request_error", None,
        "request_too_large"), {}, send)


async def _send_json(status: int, payload: dict[str, Any], extra: dict[str, str], send: Send) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log(scope: Scope, ctx: RequestContext, status: int, disconnected: bool = False) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "request_id": ctx.request_id,
        "method": scope.get("method"),
        "path": scope.get("path"),
        "status": status,
        "latency_ms": round((time.perf_counter() - ctx.started) * 1000, 1),
    }
    if ctx.model:
        fields.update(model=ctx.model, prompt_tokens=ctx.prompt_tokens, cached_tokens=ctx.cached_tokens,
                      completion_tokens=ctx.completion_tokens, finish=ctx.finish)
    if disconnected:
        fields["client_disconnected"] = True
    access_log.info(json.dumps(fields))
