"""SQLAlchemy 2 declarative models for the platform tables.

Timestamps are integer unix seconds, as OpenAI returns them. Every schema change needs a migration
in ``migrations/versions``; ``tests/unit/platform/test_platform_migrations.py`` fails when the
models and the migrated schema drift apart.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(64)
NAME = String(256)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organization(Base):
    """The single organization of this install; ``singleton`` makes a second row impossible."""

    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint("singleton = 1", name="singleton"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(NAME)
    singleton: Mapped[int] = mapped_column(Integer, unique=True, default=1)
    # Not a foreign key: the org row is written before its default project exists.
    default_project_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'archived')", name="status"),
        Index("ix_projects_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(NAME)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[int] = mapped_column(BigInteger)
    archived_at: Mapped[int | None] = mapped_column(BigInteger)


class ServiceAccount(Base):
    __tablename__ = "service_accounts"
    __table_args__ = (
        CheckConstraint("role IN ('member', 'owner')", name="role"),
        Index("ix_service_accounts_project_id_created_at_id", "project_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ID, ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(NAME)
    role: Mapped[str] = mapped_column(String(16), default="member")
    created_at: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """A project key (user- or service-account-owned) or an admin key (no project).

    Only ``HMAC-SHA256(server_secret, secret)`` is stored. During a rotation's overlap window the
    previous hash still authenticates until ``previous_valid_until``. Deleting a key sets
    ``revoked_at``; rows stay so usage records keep their key ids.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("kind IN ('project', 'admin')", name="kind"),
        CheckConstraint("owner_type IN ('user', 'service_account')", name="owner_type"),
        CheckConstraint(
            "(kind = 'admin' AND project_id IS NULL) OR (kind = 'project' AND project_id IS NOT NULL)",
            name="project_iff_project_key",
        ),
        Index("ix_api_keys_project_id_created_at_id", "project_id", "created_at", "id"),
        Index("ix_api_keys_kind_created_at_id", "kind", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[str | None] = mapped_column(ID, ForeignKey("projects.id"))
    owner_type: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[str] = mapped_column(ID, index=True)
    owner_name: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(NAME)
    redacted_value: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    previous_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    previous_valid_until: Mapped[int | None] = mapped_column(BigInteger)
    scopes: Mapped[str] = mapped_column(Text, default='"all"')  # JSON: "all" | "read_only" | [families]
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
