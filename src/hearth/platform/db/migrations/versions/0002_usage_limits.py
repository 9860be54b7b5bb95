"""Usage ledger, per-project rate-limit overrides and spend limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(64)
NAME = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("id", ID, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("org_id", ID, nullable=True),
        sa.Column("project_id", ID, nullable=True),
        sa.Column("api_key_id", ID, nullable=True),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("model", NAME, nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("service_tier", sa.String(16), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    op.create_index("ix_usage_records_created_at", "usage_records", ["created_at"])
    op.create_index("ix_usage_records_project_id_created_at", "usage_records", ["project_id", "created_at"])
    op.create_table(
        "project_rate_limits",
        sa.Column("project_id", ID, nullable=False),
        sa.Column("model", NAME, nullable=False),
        sa.Column("rpm", sa.BigInteger(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("rpd", sa.BigInteger(), nullable=True),
        sa.Column("tpd", sa.BigInteger(), nullable=True),
        sa.Column("batch_tpd", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_project_rate_limits_project_id_projects")),
        sa.PrimaryKeyConstraint("project_id", "model", name=op.f("pk_project_rate_limits")),
    )
    op.create_table(
        "spend_limits",
        sa.Column("scope_id", ID, nullable=False),
        sa.Column("monthly_limit_nanousd", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope_id", name=op.f("pk_spend_limits")),
    )


def downgrade() -> None:
    op.drop_table("spend_limits")
    op.drop_table("project_rate_limits")
    op.drop_index("ix_usage_records_project_id_created_at", table_name="usage_records")
    op.drop_index("ix_usage_records_created_at", table_name="usage_records")
    op.drop_table("usage_records")
