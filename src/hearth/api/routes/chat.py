from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from hearth.api import sse
from hearth.api.body import parse_body
from hearth.api.deps import ContainerDep, ContextDep, require
from hearth.api.errors import map_exception
from hearth.protocol.chat import ChatCompletionChunk, ChatCompletionRequest

router = APIRouter(dependencies=[require("chat", write=True)])


@router.post("/v1/chat/completions")
async def create_chat_completion(request: Request, c: ContainerDep, ctx: ContextDep) -> Response:
    req = await parse_body(request, ChatCompletionRequest)
    prepared = c.chat.prepare(req, ctx)
    await c.chat.admit(prepared, ctx)
    if not req.stream:
        result = await c.chat.complete(prepared, ctx)
        return Response(result.model_dump_json(), media_type="application/json")
    return StreamingResponse(
        _encode(c.chat.stream(prepared, ctx)),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _encode(chunks: AsyncIterator[ChatCompletionChunk]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield sse.event(chunk)
    except Exception as exc:  # noqa: BLE001 - after the first byte the status is sent: report in-band
        yield sse.error_event(map_exception(exc).body)
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    yield sse.DONE
