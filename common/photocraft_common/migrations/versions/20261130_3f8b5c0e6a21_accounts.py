"""Accounts: tenants (tier, Stripe customer id), their API keys (sha256 only) and partner registrations.

Revision ID: 3f8b5c0e6a21
Revises: 7c1e2a9d4b10
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "3f8b5c0e6a21"
down_revision = "7c1e2a9d4b10"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("stripe_customer_id", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
        sa.UniqueConstraint("stripe_customer_id", name="uq_tenants_stripe_customer_id"),
        sa.CheckConstraint("tier IN ('free', 'pro', 'enterprise')", name="ck_tenants_tier"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_sha256", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("key_sha256", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_api_keys_tenant_id_tenants",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "partners",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_partners"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_partners_tenant_id_tenants",
                                ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("partners")
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
