"""The usage ledger: usage_records (one row per finished job) and meter_exports (what went to Stripe).

Revision ID: 7c1e2a9d4b10
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "7c1e2a9d4b10"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("batch_id", sa.Text, nullable=True),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("stages_run", sa.Integer, nullable=False),
        sa.Column("stages_reused", sa.Integer, nullable=False),
        sa.Column("megapixels_in", sa.Double, nullable=False),
        sa.Column("megapixels_out", sa.Double, nullable=False),
        sa.Column("compute_s", JSONB, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
        sa.UniqueConstraint("job_id", name="uq_usage_records_job_id"),
        sa.CheckConstraint("outcome IN ('completed', 'no-op', 'failed', 'cancelled')", name="ck_usage_records_outcome"),
        sa.CheckConstraint("stages_run >= 0 AND stages_reused >= 0 AND units >= 0", name="ck_usage_records_counts"),
        sa.CheckConstraint("megapixels_in >= 0 AND megapixels_out >= 0", name="ck_usage_records_megapixels"),
    )
    op.create_index("ix_usage_records_tenant_finished_at", "usage_records", ["tenant", "finished_at"])
    op.create_table(
        "meter_exports",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("usage_record_id", sa.BigInteger, nullable=False),
        sa.Column("stripe_identifier", sa.Text, nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_meter_exports"),
        sa.ForeignKeyConstraint(["usage_record_id"], ["usage_records.id"],
                                name="fk_meter_exports_usage_record_id_usage_records"),
        sa.UniqueConstraint("usage_record_id", name="uq_meter_exports_usage_record_id"),
        sa.UniqueConstraint("stripe_identifier", name="uq_meter_exports_stripe_identifier"),
    )


def downgrade() -> None:
    op.drop_table("meter_exports")
    op.drop_index("ix_usage_records_tenant_finished_at", table_name="usage_records")
    op.drop_table("usage_records")
