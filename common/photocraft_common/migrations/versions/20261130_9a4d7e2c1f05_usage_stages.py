"""The usage ledger's stages: one row per stage of a recorded job, run or reused (usage_stages).

Revision ID: 9a4d7e2c1f05
Revises: 3f8b5c0e6a21
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "9a4d7e2c1f05"
down_revision = "3f8b5c0e6a21"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_stages",
        sa.Column("usage_record_id", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("reused", sa.Boolean, nullable=False),
        sa.Column("compute_s", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("usage_record_id", "stage", name="pk_usage_stages"),
        sa.ForeignKeyConstraint(["usage_record_id"], ["usage_records.id"],
                                name="fk_usage_stages_usage_record_id_usage_records", ondelete="CASCADE"),
        sa.CheckConstraint("compute_s >= 0", name="ck_usage_stages_compute"),
    )


def downgrade() -> None:
    op.drop_table("usage_stages")
