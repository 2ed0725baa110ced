"""PostgreSQL's tables, as SQLAlchemy Core metadata; the schema itself is made only by the Alembic
migrations in photocraft_common/migrations, and ``alembic check`` (tests/platform/test_ledger.py) shows
the two agree.

- ``tenants``: tenants with accounts: their tier and, for billing, their Stripe customer id.
- ``api_keys``: each API key's sha256 (hex; the key itself is never stored) and its tenant.
- ``partners``: tenants registered to send jobs over Kafka (docs/partners.md).
- ``usage_records``, ``usage_stages`` and ``meter_exports``: the usage ledger (a row per finished job, and
  one per stage of it run or reused) and what of it went to Stripe (usage/ledger.py, docs/billing.md).

Times are UTC (timestamptz).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# Constraint names follow one rule, so the migrations and this metadata name them alike.
metadata = sa.MetaData(naming_convention={
    "pk": "pk_%(table_name)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "ck": "ck_%(table_name)s_%(constraint_name)s"})

usage_records = sa.Table(
    "usage_records", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("job_id", sa.Text, nullable=False, unique=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("batch_id", sa.Text),
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
    sa.CheckConstraint("outcome IN ('completed', 'no-op', 'failed', 'cancelled')", name="outcome"),
    sa.CheckConstraint("stages_run >= 0 AND stages_reused >= 0 AND units >= 0", name="counts"),
    sa.CheckConstraint("megapixels_in >= 0 AND megapixels_out >= 0", name="megapixels"),
    sa.Index(None, "tenant", "finished_at"),
)

usage_stages = sa.Table(
    "usage_stages", metadata,
    sa.Column("usage_record_id", sa.BigInteger, sa.ForeignKey("usage_records.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("stage", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("reused", sa.Boolean, nullable=False),
    sa.Column("compute_s", sa.Double, nullable=False),
    sa.CheckConstraint("compute_s >= 0", name="compute"),
)

meter_exports = sa.Table(
    "meter_exports", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("usage_record_id", sa.BigInteger, sa.ForeignKey("usage_records.id"), nullable=False, unique=True),
    sa.Column("stripe_identifier", sa.Text, nullable=False, unique=True),
    sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


TIERS = "tier IN ('free', 'pro', 'enterprise')"

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("tier", sa.Text, nullable=False),
    sa.Column("stripe_customer_id", sa.Text, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(TIERS, name="tier"),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("key_sha256", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.tenant_id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index(None, "tenant_id"),
)

partners = sa.Table(
    "partners", metadata,
    sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.tenant_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
