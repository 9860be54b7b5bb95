"""/v1/organization/...: OpenAI's Administration API paths and shapes. Admin keys only."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from hearth.api.body import json_response as _json
from hearth.api.body import parse_body
from hearth.api.deps import ContainerDep, require
from hearth.api.errors import ApiError
from hearth.protocol import admin as wire
from hearth.services.admin import AdminService

router = APIRouter(prefix="/v1/organization", dependencies=[require("admin", write=True)])

Limit = Query(default=20, ge=1, le=100)



def _admin(c: ContainerDep) -> AdminService:
    if c.admin is None:
        raise ApiError(404, "The organization API needs a database; this server runs with a static key only.",
                       "invalid_request_error")
    return c.admin


@router.get("/projects")
async def list_projects(c: ContainerDep, after: str | None = None, limit: int = Limit,
                        include_archived: bool = False) -> Response:
    return _json(await _admin(c).list_projects(after, limit, include_archived))


@router.post("/projects")
async def create_project(request: Request, c: ContainerDep) -> Response:
    return _json(await _admin(c).create_project(await parse_body(request, wire.ProjectCreate)))


@router.get("/projects/{project_id}")
async def get_project(project_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).get_project(project_id))


@router.post("/projects/{project_id}")
async def update_project(project_id: str, request: Request, c: ContainerDep) -> Response:
    return _json(await _admin(c).update_project(project_id, await parse_body(request, wire.ProjectUpdate)))


@router.post("/projects/{project_id}/archive")
async def archive_project(project_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).archive_project(project_id))


@router.get("/projects/{project_id}/api_keys")
async def list_project_keys(project_id: str, c: ContainerDep, after: str | None = None, limit: int = Limit
                            ) -> Response:
    return _json(await _admin(c).list_project_keys(project_id, after, limit))


@router.post("/projects/{project_id}/api_keys")
async def create_project_key(project_id: str, request: Request, c: ContainerDep) -> Response:
    body = await parse_body(request, wire.ProjectKeyCreate)
    return _json(await _admin(c).create_project_key(project_id, body))


@router.get("/projects/{project_id}/api_keys/{key_id}")
async def get_project_key(project_id: str, key_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).get_project_key(project_id, key_id))


@router.delete("/projects/{project_id}/api_keys/{key_id}")
async def delete_project_key(project_id: str, key_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).delete_project_key(project_id, key_id))


@router.get("/projects/{project_id}/service_accounts")
async def list_service_accounts(project_id: str, c: ContainerDep, after: str | None = None, limit: int = Limit
                                ) -> Response:
    return _json(await _admin(c).list_service_accounts(project_id, after, limit))


@router.post("/projects/{project_id}/service_accounts")
async def create_service_account(project_id: str, request: Request, c: ContainerDep) -> Response:
    body = await parse_body(request, wire.ServiceAccountCreate)
    return _json(await _admin(c).create_service_account(project_id, body))


@router.get("/projects/{project_id}/service_accounts/{account_id}")
async def get_service_account(project_id: str, account_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).get_service_account(project_id, account_id))


@router.delete("/projects/{project_id}/service_accounts/{account_id}")
async def delete_service_account(project_id: str, account_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).delete_service_account(project_id, account_id))


@router.get("/admin_api_keys")
async def list_admin_keys(c: ContainerDep, after: str | None = None, limit: int = Limit) -> Response:
    return _json(await _admin(c).list_admin_keys(after, limit))


@router.post("/admin_api_keys")
async def create_admin_key(request: Request, c: ContainerDep) -> Response:
    return _json(await _admin(c).create_admin_key(await parse_body(request, wire.AdminKeyCreate)))


@router.get("/admin_api_keys/{key_id}")
async def get_admin_key(key_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).get_admin_key(key_id))


@router.delete("/admin_api_keys/{key_id}")
async def delete_admin_key(key_id: str, c: ContainerDep) -> Response:
    return _json(await _admin(c).delete_admin_key(key_id))
