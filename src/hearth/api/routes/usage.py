"""/v1/organization/usage/*, /costs, project rate limits and spend limits. Admin keys only."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from hearth.api.body import json_response as _json
from hearth.api.body import parse_body
from hearth.api.deps import ContainerDep, require
from hearth.api.errors import ApiError
from hearth.protocol import usage as wire
from hearth.services.usage import UsageService

router = APIRouter(prefix="/v1/organization", dependencies=[require("admin", write=True)])



def _usage(c: ContainerDep) -> UsageService:
    if c.usage is None:
        raise ApiError(404, "Usage, costs and limits need a database; this server runs with a static key only.",
                       "invalid_request_error")
    return c.usage


def _many(request: Request, name: str) -> list[str]:
    """Array query parameters, as `name=a&name=b`, `name[]=a` or `name=a,b`."""
    q = request.query_params
    out: list[str] = []
    for v in [*q.getlist(name), *q.getlist(f"{name}[]")]:
        out.extend(x for x in v.split(",") if x)
    return out


def _int(request: Request, name: str, required: bool = False) -> int | None:
    v = request.query_params.get(name)
    if v is None:
        if required:
            raise ApiError(400, f"Missing required parameter: '{name}'.", "invalid_request_error",
                           "missing_required_parameter", name)
        return None
    try:
        return int(v)
    except ValueError:
        raise ApiError(400, f"Invalid integer for '{name}': {v!r}.", "invalid_request_error", "invalid_value",
                       name) from None


def _bool(request: Request, name: str) -> bool | None:
    v = request.query_params.get(name)
    if v is None:
        return None
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"Invalid boolean for '{name}': {v!r}.", "invalid_request_error", "invalid_value", name)


async def _usage_page(endpoint: str, request: Request, c: ContainerDep) -> Response:
    start = _int(request, "start_time", required=True)
    assert start is not None
    page = await _usage(c).usage(
        endpoint, start_time=start, end_time=_int(request, "end_time"),
        bucket_width=request.query_params.get("bucket_width", "1d"), group_by=_many(request, "group_by"),
        project_ids=_many(request, "project_ids"), user_ids=_many(request, "user_ids"),
        api_key_ids=_many(request, "api_key_ids"), models=_many(request, "models"), batch=_bool(request, "batch"),
        limit=_int(request, "limit"), page=request.query_params.get("page"))
    return _json(page)


@router.get("/usage/completions")
async def usage_completions(request: Request, c: ContainerDep) -> Response:
    return await _usage_page("completions", request, c)


@router.get("/usage/embeddings")
async def usage_embeddings(request: Request, c: ContainerDep) -> Response:
    return await _usage_page("embeddings", request, c)


@router.get("/usage/moderations")
async def usage_moderations(request: Request, c: ContainerDep) -> Response:
    return await _usage_page("moderations", request, c)


@router.get("/costs")
async def costs(request: Request, c: ContainerDep) -> Response:
    start = _int(request, "start_time", required=True)
    assert start is not None
    page = await _usage(c).costs(
        start_time=start, end_time=_int(request, "end_time"),
        bucket_width=request.query_params.get("bucket_width", "1d"), group_by=_many(request, "group_by"),
        project_ids=_many(request, "project_ids"), api_key_ids=_many(request, "api_key_ids"),
        limit=_int(request, "limit"), page=request.query_params.get("page"))
    return _json(page)


@router.get("/projects/{project_id}/rate_limits")
async def list_rate_limits(project_id: str, c: ContainerDep, after: str | None = None, before: str | None = None,
                           limit: int = Query(default=100, ge=1, le=100)) -> Response:
    return _json(await _usage(c).list_rate_limits(project_id, after, before, limit))


@router.post("/projects/{project_id}/rate_limits/{rate_limit_id}")
async def update_rate_limit(project_id: str, rate_limit_id: str, request: Request, c: ContainerDep) -> Response:
    body = await parse_body(request, wire.ProjectRateLimitUpdate)
    return _json(await _usage(c).update_rate_limit(project_id, rate_limit_id, body))


@router.get("/projects/{project_id}/spend_limit")
async def get_project_spend_limit(project_id: str, c: ContainerDep) -> Response:
    return _json(await _usage(c).spend_limit(project_id))


@router.post("/projects/{project_id}/spend_limit")
async def set_project_spend_limit(project_id: str, request: Request, c: ContainerDep) -> Response:
    body = await parse_body(request, wire.SpendLimitUpdate)
    return _json(await _usage(c).set_spend_limit(project_id, body))


@router.get("/spend_limit")
async def get_org_spend_limit(c: ContainerDep) -> Response:
    return _json(await _usage(c).spend_limit(None))


@router.post("/spend_limit")
async def set_org_spend_limit(request: Request, c: ContainerDep) -> Response:
    body = await parse_body(request, wire.SpendLimitUpdate)
    return _json(await _usage(c).set_spend_limit(None, body))
