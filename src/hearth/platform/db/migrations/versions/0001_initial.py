"""Organization, projects, service accounts and API keys.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(64)
NAME = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("singleton", sa.Integer(), nullable=False),
        sa.Column("default_project_id", ID, nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("singleton = 1", name=op.f("ck_organizations_singleton")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("singleton", name=op.f("uq_organizations_singleton")),
    )
    op.create_table(
        "projects",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("archived_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('active', 'archived')", name=op.f("ck_projects_status")),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_projects_org_id_organizations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
    )
    op.create_index("ix_projects_created_at_id", "projects", ["created_at", "id"])
    op.create_table(
        "service_accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("role IN ('member', 'owner')", name=op.f("ck_service_accounts_role")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_service_accounts_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_accounts")),
    )
    op.create_index(
        "ix_service_accounts_project_id_created_at_id", "service_accounts", ["project_id", "created_at", "id"]
    )
    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("project_id", ID, nullable=True),
        sa.Column("owner_type", sa.String(32), nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("owner_name", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("redacted_value", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=True),
        sa.Column("previous_valid_until", sa.BigInteger(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("kind IN ('project', 'admin')", name=op.f("ck_api_keys_kind")),
        sa.CheckConstraint(
            "owner_type IN ('user', 'service_account')", name=op.f("ck_api_keys_owner_type")
        ),
        sa.CheckConstraint(
            "(kind = 'admin' AND project_id IS NULL) OR (kind = 'project' AND project_id IS NOT NULL)",
            name=op.f("ck_api_keys_project_iff_project_key"),
        ),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_api_keys_org_id_organizations")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_api_keys_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index("ix_api_keys_project_id_created_at_id", "api_keys", ["project_id", "created_at", "id"])
    op.create_index("ix_api_keys_kind_created_at_id", "api_keys", ["kind", "created_at", "id"])
    op.create_index(op.f("ix_api_keys_owner_id"), "api_keys", ["owner_id"])
    op.create_index(op.f("ix_api_keys_secret_hash"), "api_keys", ["secret_hash"], unique=True)
    op.create_index(op.f("ix_api_keys_previous_hash"), "api_keys", ["previous_hash"], unique=True)


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("service_accounts")
    op.drop_table("projects")
    op.drop_table("organizations")
