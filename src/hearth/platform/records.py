"""Plain, immutable records the store returns. ORM rows never leave ``hearth.platform``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hearth.platform.db.models import ApiKey, Organization, Project, ServiceAccount
from hearth.platform.keys import KeyKind, KeyOwner, Scopes, load_scopes

ProjectStatus = Literal["active", "archived"]
ServiceAccountRole = Literal["member", "owner"]


@dataclass(frozen=True, slots=True)
class OrganizationRecord:
    id: str
    name: str
    default_project_id: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    id: str
    name: str
    status: ProjectStatus
    created_at: int
    archived_at: int | None


@dataclass(frozen=True, slots=True)
class ServiceAccountRecord:
    id: str
    project_id: str
    name: str
    role: ServiceAccountRole
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A key as listed: never the secret, only ``redacted_value``."""

    id: str
    kind: KeyKind
    project_id: str | None
    owner: KeyOwner
    name: str
    redacted_value: str
    scopes: Scopes
    created_at: int
    last_used_at: int | None
    previous_valid_until: int | None  # set while a rotated-out secret still works


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and its secret, which exists only here: show it once, never log it."""

    key: ApiKeyRecord
    secret: str = field(repr=False)


def organization_record(row: Organization) -> OrganizationRecord:
    return OrganizationRecord(row.id, row.name, row.default_project_id, row.created_at)


def project_record(row: Project) -> ProjectRecord:
    status: ProjectStatus = "archived" if row.status == "archived" else "active"
    return ProjectRecord(row.id, row.name, status, row.created_at, row.archived_at)


def service_account_record(row: ServiceAccount) -> ServiceAccountRecord:
    role: ServiceAccountRole = "owner" if row.role == "owner" else "member"
    return ServiceAccountRecord(row.id, row.project_id, row.name, role, row.created_at)


def owner_of(row: ApiKey) -> KeyOwner:
    return KeyOwner(
        "service_account" if row.owner_type == "service_account" else "user", row.owner_id, row.owner_name
    )


def api_key_record(row: ApiKey) -> ApiKeyRecord:
    kind: KeyKind = "admin" if row.kind == "admin" else "project"
    return ApiKeyRecord(
        id=row.id,
        kind=kind,
        project_id=row.project_id,
        owner=owner_of(row),
        name=row.name,
        redacted_value=row.redacted_value,
        scopes=load_scopes(row.scopes),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        previous_valid_until=row.previous_valid_until if row.previous_hash else None,
    )
