"""The organization API (/v1/organization/...): projects, service accounts, project and admin keys.

Store calls are synchronous and short; each runs in a worker thread. Platform errors become the
protocol's errors here (404 for what does not exist or belongs to another project).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from hearth.platform.errors import InvalidArgument, NotFound, ProjectArchived
from hearth.platform.keys import KeyOwner
from hearth.platform.records import ApiKeyRecord, CreatedKey, ProjectRecord, ServiceAccountRecord
from hearth.platform.store import PlatformStore
from hearth.protocol import admin as wire
from hearth.protocol.errors import InvalidRequest

T = TypeVar("T")


class NotFoundError(Exception):
    """404 in OpenAI's envelope (mapped by the api layer)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def _project(p: ProjectRecord) -> wire.Project:
    return wire.Project(id=p.id, name=p.name, created_at=p.created_at, archived_at=p.archived_at,
                        status=p.status)


def _owner(o: KeyOwner, created_at: int) -> wire.KeyOwner:
    if o.type == "service_account":
        return wire.KeyOwner(type="service_account",
                             service_account=wire.ServiceAccountRef(id=o.id, name=o.name, created_at=created_at))
    return wire.KeyOwner(type="user", user=wire.UserRef(id=o.id, name=o.name, added_at=created_at))


def _scopes(k: ApiKeyRecord) -> Any:
    return k.scopes if isinstance(k.scopes, str) else sorted(k.scopes)


def _project_key(k: ApiKeyRecord) -> wire.ProjectApiKey:
    return wire.ProjectApiKey(id=k.id, name=k.name, redacted_value=k.redacted_value, created_at=k.created_at,
                              last_used_at=k.last_used_at, owner=_owner(k.owner, k.created_at),
                              permissions=_scopes(k))


def _admin_key(k: ApiKeyRecord) -> wire.AdminApiKey:
    return wire.AdminApiKey(id=k.id, name=k.name, redacted_value=k.redacted_value, created_at=k.created_at,
                            last_used_at=k.last_used_at,
                            owner=wire.AdminOwner(id=k.owner.id, name=k.owner.name, created_at=k.created_at))


def _account(a: ServiceAccountRecord) -> wire.ServiceAccount:
    return wire.ServiceAccount(id=a.id, name=a.name, role=a.role, created_at=a.created_at)


def _page(items: list[Any], more: bool) -> wire.ListPage[Any]:
    ids = [getattr(i, "id", None) for i in items]
    return wire.ListPage[Any](data=items, first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None,
                              has_more=more)


class AdminService:
    """``on_change`` runs after a change that can end a key's access (revoke, rotate, delete, archive):
    the auth cache of this process is cleared so the change takes effect at once."""

    def __init__(self, store: PlatformStore, on_change: Callable[[], None] | None = None) -> None:
        self.store = store
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    async def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except NotFound as exc:
            raise NotFoundError(str(exc)) from None
        except ProjectArchived as exc:
            raise InvalidRequest(str(exc), code="project_archived") from None
        except InvalidArgument as exc:
            raise InvalidRequest(str(exc), param=getattr(exc, "param", None), code="invalid_value") from None

    @staticmethod
    def _found(obj: T | None, what: str, oid: str) -> T:
        if obj is None:
            raise NotFoundError(f"No such {what}: '{oid}'.")
        return obj

    # ------------------------------------------------------------ projects

    async def list_projects(self, after: str | None, limit: int, include_archived: bool) -> wire.ListPage[Any]:
        rows, more = await self._run(self.store.list_projects, after=after, limit=limit,
                                     include_archived=include_archived)
        return _page([_project(p) for p in rows], more)

    async def create_project(self, body: wire.ProjectCreate) -> wire.Project:
        return _project(await self._run(self.store.create_project, body.name))

    async def get_project(self, project_id: str) -> wire.Project:
        return _project(self._found(await self._run(self.store.get_project, project_id), "project", project_id))

    async def update_project(self, project_id: str, body: wire.ProjectUpdate) -> wire.Project:
        return _project(await self._run(self.store.update_project, project_id, name=body.name))

    async def archive_project(self, project_id: str) -> wire.Project:
        archived = await self._run(self.store.archive_project, project_id)
        self._changed()
        return _project(archived)

    # ------------------------------------------------------------ project keys

    async def list_project_keys(self, project_id: str, after: str | None, limit: int) -> wire.ListPage[Any]:
        rows, more = await self._run(self.store.list_project_keys, project_id, after=after, limit=limit)
        return _page([_project_key(k) for k in rows], more)

    async def get_project_key(self, project_id: str, key_id: str) -> wire.ProjectApiKey:
        k = await self._run(self.store.get_project_key, project_id, key_id)
        return _project_key(self._found(k, "API key", key_id))

    async def create_project_key(self, project_id: str, body: wire.ProjectKeyCreate) -> wire.CreatedProjectApiKey:
        scopes: Any = body.permissions
        created: CreatedKey = await self._run(self.store.create_project_key, project_id, body.name, scopes=scopes)
        k = _project_key(created.key)
        return wire.CreatedProjectApiKey(**k.model_dump(), value=created.secret)

    async def delete_project_key(self, project_id: str, key_id: str) -> wire.Deleted:
        ok = await self._run(self.store.delete_project_key, project_id, key_id)
        self._changed()
        self._found(ok or None, "API key", key_id)
        return wire.Deleted(object="organization.project.api_key.deleted", id=key_id)

    # ------------------------------------------------------------ service accounts

    async def list_service_accounts(self, project_id: str, after: str | None, limit: int) -> wire.ListPage[Any]:
        rows, more = await self._run(self.store.list_service_accounts, project_id, after=after, limit=limit)
        return _page([_account(a) for a in rows], more)

    async def create_service_account(self, project_id: str, body: wire.ServiceAccountCreate
                                     ) -> wire.CreatedServiceAccount:
        acct, key = await self._run(self.store.create_service_account, project_id, body.name)
        return wire.CreatedServiceAccount(
            **_account(acct).model_dump(exclude={"object"}),
            api_key=wire.ServiceAccountApiKey(value=key.secret, name=key.key.name, created_at=key.key.created_at,
                                              id=key.key.id))

    async def get_service_account(self, project_id: str, account_id: str) -> wire.ServiceAccount:
        a = await self._run(self.store.get_service_account, project_id, account_id)
        return _account(self._found(a, "service account", account_id))

    async def delete_service_account(self, project_id: str, account_id: str) -> wire.Deleted:
        ok = await self._run(self.store.delete_service_account, project_id, account_id)
        self._changed()
        self._found(ok or None, "service account", account_id)
        return wire.Deleted(object="organization.project.service_account.deleted", id=account_id)

    # ------------------------------------------------------------ admin keys

    async def list_admin_keys(self, after: str | None, limit: int) -> wire.ListPage[Any]:
        rows, more = await self._run(self.store.list_admin_keys, after=after, limit=limit)
        return _page([_admin_key(k) for k in rows], more)

    async def create_admin_key(self, body: wire.AdminKeyCreate) -> wire.CreatedAdminApiKey:
        created: CreatedKey = await self._run(self.store.create_admin_key, body.name)
        return wire.CreatedAdminApiKey(**_admin_key(created.key).model_dump(), value=created.secret)

    async def get_admin_key(self, key_id: str) -> wire.AdminApiKey:
        return _admin_key(self._found(await self._run(self.store.get_admin_key, key_id), "admin API key", key_id))

    async def delete_admin_key(self, key_id: str) -> wire.Deleted:
        ok = await self._run(self.store.delete_admin_key, key_id)
        self._changed()
        self._found(ok or None, "admin API key", key_id)
        return wire.Deleted(object="organization.admin_api_key.deleted", id=key_id)

    # ------------------------------------------------------------ key lifecycle (CLI)

    async def rotate_key(self, key_id: str, overlap_seconds: int) -> str:
        """A new secret under the same key id; the old one works `overlap_seconds` more."""
        secret: str = await self._run(self.store.rotate, key_id, overlap_seconds)
        self._changed()
        return secret

    async def revoke_key(self, key_id: str) -> None:
        self._found(await self._run(self.store.revoke, key_id) or None, "API key", key_id)
        self._changed()

    async def default_project_id(self) -> str:
        org = await self._run(self.store.organization)
        if org is None or org.default_project_id is None:
            raise NotFoundError("The organization has not been created yet: run `hearth serve` once.")
        return org.default_project_id
