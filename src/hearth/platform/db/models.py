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


class UsageRow(Base):
    """One record per admitted request (the usage ledger). ``id`` is the request id, so replaying
    the write-ahead log after a crash inserts each record at most once. Cost is in nano-USD
    (1e-9 USD): integers add up exactly, and a token at $0.01 per 1M tokens is still 10 units."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_created_at", "created_at"),
        Index("ix_usage_records_project_id_created_at", "project_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    org_id: Mapped[str | None] = mapped_column(ID)
    project_id: Mapped[str | None] = mapped_column(ID)
    api_key_id: Mapped[str | None] = mapped_column(ID)
    user_id: Mapped[str | None] = mapped_column(ID)
    endpoint: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(NAME)
    batch: Mapped[int] = mapped_column(Integer, default=0)
    service_tier: Mapped[str] = mapped_column(String(16), default="default")
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer, default=200)
    cost_nanousd: Mapped[int] = mapped_column(BigInteger, default=0)


class ProjectRateLimitRow(Base):
    """A project's override of the configured per-model limits; a NULL column keeps the default."""

    __tablename__ = "project_rate_limits"

    project_id: Mapped[str] = mapped_column(ID, ForeignKey("projects.id"), primary_key=True)
    model: Mapped[str] = mapped_column(NAME, primary_key=True)
    rpm: Mapped[int | None] = mapped_column(BigInteger)
    tpm: Mapped[int | None] = mapped_column(BigInteger)
    rpd: Mapped[int | None] = mapped_column(BigInteger)
    tpd: Mapped[int | None] = mapped_column(BigInteger)
    batch_tpd: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class SpendLimitRow(Base):
    """A monthly hard spend limit for the organization or one project (``scope_id``), in nano-USD."""

    __tablename__ = "spend_limits"

    scope_id: Mapped[str] = mapped_column(ID, primary_key=True)
    monthly_limit_nanousd: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
