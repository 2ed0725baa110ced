"""The parts of one notifier process, made once by ``create_app`` and shared by its consumer and routes.

Routes reach them as ``NotifierDep`` (``app.state.notifier``), so that they never import the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from photocraft_common.accounts import Accounts
from photocraft_common.batches import BatchStore
from photocraft_common.database import make_engine
from photocraft_common.jobs import JobStore
from photocraft_common.kafka import make_broker
from photocraft_common.redis_client import make_redis
from photocraft_common.storage import ObjectStore

from .eventlog import EventLog
from .hub import Hub
from .limits import Connections
from .partners import PartnerRelay
from .relay import Relay
from .settings import NotifierSettings


@dataclass(frozen=True)
class Notifier:
    settings: NotifierSettings
    redis: Redis
    broker: KafkaBroker
    store: ObjectStore
    events: EventLog
    hub: Hub
    jobs: JobStore
    batches: BatchStore
    accounts: Accounts
    partners: PartnerRelay
    relay: Relay
    connections: Connections  # open WebSockets per client (limits.py)
    engine: AsyncEngine  # PostgreSQL: API keys and partners (accounts)

    @classmethod
    def create(cls, settings: NotifierSettings) -> Notifier:
        # Bounded: thousands of clients connecting at once wait for a connection rather than open one each.
        redis = make_redis(settings.redis, max_connections=settings.redis_connections, blocking=True)
        broker = make_broker(settings.kafka, "photocraft-notifier")
        store = ObjectStore(settings.s3)
        hub = Hub(redis, settings.send_queue)
        engine = make_engine(settings.database)  # connects at the first query
        accounts = Accounts(engine, settings.required_keyring())
        return cls(settings, redis, broker, store, EventLog(redis, settings.job_ttl_s), hub,
                   JobStore(redis, settings.job_ttl_s), BatchStore(redis, settings.job_ttl_s), accounts,
                   PartnerRelay(broker, redis, store, accounts), Relay(hub, store, settings),
                   Connections(redis, settings.connections_per_ip, settings.connections_per_credential), engine)


def notifier(connection: HTTPConnection) -> Notifier:
    return connection.app.state.notifier


NotifierDep = Annotated[Notifier, Depends(notifier)]
