"""The one way services build their Redis client, so that TLS and the password apply everywhere."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import parse_url

from .settings import RedisSettings


def make_redis(settings: RedisSettings, max_connections: int | None = None, blocking: bool = False) -> Redis:
    """An asyncio Redis client for ``settings.url`` (``redis://`` or ``rediss://`` for TLS), with
    ``settings.password`` in place of any password in the URL and the server's certificate checked
    against ``settings.ssl_ca_certs`` when set. The client owns its pool: ``aclose()`` closes both.

    ``max_connections`` bounds the pool (None: redis-py's default); with ``blocking`` a caller waits for
    a free connection (up to 20 s, then ``redis.exceptions.ConnectionError``) instead of failing at once.
    Raises ValueError for a URL that is not ``redis://``, ``rediss://`` or ``unix://``.
    """
    options = parse_url(settings.url)
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if settings.ssl_ca_certs:
        options["ssl_ca_certs"] = settings.ssl_ca_certs
    if max_connections is not None:
        options["max_connections"] = max_connections
    pool_class = BlockingConnectionPool if blocking else ConnectionPool
    return Redis.from_pool(pool_class(**options))
