"""PostgreSQL, the system of record: the engine the services use and the Alembic migrations of its schema.

The schema is made only by the migrations in ``photocraft_common/migrations`` (``make up`` runs
``upgrade("head")``; ``alembic upgrade head`` from the repository root does the same with alembic.ini).
The URL comes from ``PlatformSettings.database`` (PHOTOCRAFT_DATABASE__URL).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .settings import DatabaseSettings, PlatformSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An asyncpg engine of ``settings`` (a pool of up to ``pool_size`` connections, checked before use).
    Raises DatabaseMissing when no URL is configured. Dispose of it (``await engine.dispose()``) when done."""
    return create_async_engine(settings.required_url(), pool_size=settings.pool_size, pool_pre_ping=True)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration of our migrations, for ``alembic.command``; ``url``: the database's
    (asyncpg) URL, by default the settings' (DatabaseMissing when there is none)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # the env reads it from attributes: a URL in the ini options would be %-interpolated
    config.attributes["url"] = url or PlatformSettings().database.required_url()
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database at ``url`` (default: the settings') up to ``revision``; a database already
    there is left as it is. Raises what the connection or a migration raises."""
    command.upgrade(alembic_config(url), revision)
