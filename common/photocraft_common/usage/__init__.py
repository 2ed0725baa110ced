"""Usage metering: what each finished job used and what it is charged (docs/billing.md).

``prices``: the price table and ``charge``, pure (no I/O, no database driver imported);
``ledger``: the usage ledger in PostgreSQL (SQLAlchemy async). Import the modules themselves.
"""
