"""Alembic's environment for Photocraft's PostgreSQL schema (photocraft_common.database).

The database URL, first found wins: ``config.attributes["url"]`` (database.alembic_config), ``-x url=...``
on the alembic command line, the settings' (PHOTOCRAFT_DATABASE__URL, or the local stack's).
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from photocraft_common.settings import PlatformSettings
from photocraft_common.tables import metadata

config = context.config
if config.config_file_name is not None:  # the alembic command line (alembic.ini)
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return (config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
            or PlatformSettings().database.required_url())


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())
