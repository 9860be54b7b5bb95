"""Administration API wire types (/v1/organization/...), mirroring the OpenAI API reference."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- requests


class ProjectCreate(_Strict):
    name: str = Field(min_length=1, max_length=256)


class ProjectUpdate(_Strict):
    name: str = Field(min_length=1, max_length=256)


class ServiceAccountCreate(_Strict):
    name: str = Field(min_length=1, max_length=256)


Scope = Literal["models", "chat", "responses", "embeddings", "files", "batches", "moderations"]


class AdminKeyCreate(_Strict):
    name: str = Field(min_length=1, max_length=256)


class ProjectKeyCreate(_Strict):
    """hearth extension (OpenAI creates project keys only in its dashboard)."""

    name: str = Field(min_length=1, max_length=256)
    permissions: Literal["all", "read_only"] | list[Scope] = "all"


# ---------------------------------------------------------------- responses


class ListPage(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class Project(BaseModel):
    id: str
    object: Literal["organization.project"] = "organization.project"
    name: str
    created_at: int
    archived_at: int | None = None
    status: Literal["active", "archived"]


class ServiceAccountRef(BaseModel):
    object: Literal["organization.project.service_account"] = "organization.project.service_account"
    id: str
    name: str
    created_at: int
    role: str = "member"


class UserRef(BaseModel):
    object: Literal["organization.project.user"] = "organization.project.user"
    id: str
    name: str
    added_at: int
    role: str = "owner"
    email: str | None = None


class KeyOwner(BaseModel):
    """OpenAI sends only the branch that applies (`user` or `service_account`)."""

    type: Literal["user", "service_account"]
    user: UserRef | None = None
    service_account: ServiceAccountRef | None = None

    @model_serializer(mode="wrap")
    def _only_the_owner(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k == "type"}


class ProjectApiKey(BaseModel):
    object: Literal["organization.project.api_key"] = "organization.project.api_key"
    id: str
    name: str
    redacted_value: str
    created_at: int
    last_used_at: int | None = None
    owner: KeyOwner
    # hearth extension: OpenAI shows permissions only in its dashboard.
    permissions: Any = "all"


class CreatedProjectApiKey(ProjectApiKey):
    value: str  # the secret, shown exactly once


class ServiceAccountApiKey(BaseModel):
    object: Literal["organization.project.service_account.api_key"] = "organization.project.service_account.api_key"
    value: str
    name: str
    created_at: int
    id: str


class ServiceAccount(BaseModel):
    object: Literal["organization.project.service_account"] = "organization.project.service_account"
    id: str
    name: str
    role: str
    created_at: int


class CreatedServiceAccount(ServiceAccount):
    api_key: ServiceAccountApiKey


class AdminOwner(BaseModel):
    type: Literal["user"] = "user"
    object: Literal["organization.user"] = "organization.user"
    id: str
    name: str
    created_at: int
    role: str = "owner"


class AdminApiKey(BaseModel):
    object: Literal["organization.admin_api_key"] = "organization.admin_api_key"
    id: str
    name: str
    redacted_value: str
    created_at: int
    last_used_at: int | None = None
    owner: AdminOwner


class CreatedAdminApiKey(AdminApiKey):
    value: str


class Deleted(BaseModel):
    object: str
    id: str
    deleted: bool = True
