"""``photocraft-bootstrap``: bring the database's schema to the newest migration, create the platform's Kafka
topics and S3 bucket, and bring existing topics to spec.

Idempotent. Missing topics are made with the configs of photocraft_common.topics
(retention derived from ``PHOTOCRAFT_JOB_TTL_S``, the lifetime of a job, and the
brokers' ``log.retention.check.interval.ms``, read from the brokers); topics
that exist, the platform's and every partner's, get those configs too (their
other topic-level overrides are kept; partitions are left as they are), so that
upgrading an installation fixes the retention of its topics. The database
(PostgreSQL, ``PHOTOCRAFT_DATABASE__URL``) gets Alembic's ``upgrade head``
(database.py; nothing happens when it is there), then any accounts still in
Redis are moved into it once (account_move.py). Run once per environment
before the services start (``make up`` does; so does the Helm install and
upgrade hook).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import ClusterAuthorizationFailedError, TopicAlreadyExistsError, for_code
from botocore.exceptions import ClientError

from .account_move import Move, move_from_redis
from .database import make_engine, upgrade
from .kafka import connection_kwargs
from .operations import MODELS
from .redis_client import make_redis
from .settings import KafkaSettings, PlatformSettings
from .storage import make_client
from .topics import RETENTION_CHECK_INTERVAL_MS, TopicSpec, partner_tenant, partner_topics, platform_topics

log = logging.getLogger("photocraft.bootstrap")

DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config_source of a topic-level override
CHECK_INTERVAL = "log.retention.check.interval.ms"


def _check(code: int, message: str | None, what: str) -> None:
    if code:
        raise for_code(code)(f"{what}: {message or ''}")


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec], replication_factor: int) -> list[str]:
    """Create ``specs``; returns the names created (a topic made meanwhile by someone else is not)."""
    response = await admin.create_topics([
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication_factor,
                 topic_configs=s.configs()) for s in specs])
    created = []
    for name, code, message in response.topic_errors:
        if code != TopicAlreadyExistsError.errno:
            _check(code, message, f"creating {name}")
            created.append(name)
    return created


async def _conform(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Set the configs of ``specs`` on their existing topics, keeping the topics' other overrides
    (AlterConfigs replaces all of a topic's overrides); returns the names altered."""
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs])
    overrides = {}
    for code, message, _, name, entries in (r for response in described for r in response.resources):
        _check(code, message, f"describing the configs of {name}")
        overrides[name] = {e[0]: e[1] for e in entries if e[3] == DYNAMIC_TOPIC_CONFIG and e[1] is not None}
    changes = {}
    for spec in specs:
        wanted = overrides[spec.name] | spec.configs()
        if wanted != overrides[spec.name]:
            changes[spec.name] = wanted
            log.info("%s: %s", spec.name, ", ".join(f"{k} {overrides[spec.name].get(k, 'default')} -> {v}"
                                                    for k, v in spec.configs().items()
                                                    if overrides[spec.name].get(k) != v))
    if changes:
        altered = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)
                                             for name, configs in changes.items()])
        for code, message, _, name in (r for response in altered for r in response.resources):
            _check(code, message, f"altering the configs of {name}")
    return list(changes)


async def _ensure(admin: AIOKafkaAdminClient, settings: KafkaSettings, specs: list[TopicSpec],
                  existing: set[str]) -> list[str]:
    missing = [s for s in specs if s.name not in existing]
    created = await _create(admin, missing, settings.replication_factor) if missing else []
    present = [s for s in specs if s.name not in created]
    if present:
        await _conform(admin, present)
    return created


def _admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_kwargs(settings), client_id="photocraft-bootstrap")


async def _check_interval_ms(admin: AIOKafkaAdminClient) -> int:
    """The longest ``log.retention.check.interval.ms`` of the cluster's brokers, in ms; Kafka's default
    (RETENTION_CHECK_INTERVAL_MS, the most docs/deploy.md allows) with a warning when the principal may
    not describe the brokers' configs (DescribeConfigs on the cluster)."""
    brokers = (await admin.describe_cluster())["brokers"]
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(b["node_id"]),
                                                             {CHECK_INTERVAL: None}) for b in brokers])
    intervals = []
    for code, message, _, broker, entries in (r for response in described for r in response.resources):
        if code == ClusterAuthorizationFailedError.errno:
            log.warning("%s: not allowed to describe the brokers' configs (%s); assuming %d ms, Kafka's default "
                        "and the most docs/deploy.md allows", CHECK_INTERVAL, message, RETENTION_CHECK_INTERVAL_MS)
            return RETENTION_CHECK_INTERVAL_MS
        _check(code, message, f"describing the configs of broker {broker}")
        intervals += [int(e[1]) for e in entries if e[0] == CHECK_INTERVAL]
    if len(intervals) != len(brokers):
        raise ValueError(f"{len(brokers)} brokers described {CHECK_INTERVAL} {len(intervals)} times")
    return max(intervals)


async def retention_check_interval_ms(settings: KafkaSettings) -> int:
    """How often, at the longest, the brokers look for segments past retention (their
    ``log.retention.check.interval.ms``), in ms; see ``_check_interval_ms``. Raises aiokafka's KafkaError
    when the brokers cannot be reached or refuse (but for the right to describe their configs)."""
    admin = _admin(settings)
    await admin.start()
    try:
        return await _check_interval_ms(admin)
    finally:
        await admin.close()


async def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec]) -> list[str]:
    """Create the topics of ``specs`` that do not exist and set the configs of ``specs`` on those that do;
    returns the names of the topics created.

    Connects as ``settings`` say (TLS, SASL); with an authorizer, the principal needs DESCRIBE and CREATE
    on the cluster or the topics, and DESCRIBE_CONFIGS and ALTER_CONFIGS on the topics that exist.
    Raises aiokafka's KafkaError (a BrokerResponseError naming the topic when the broker refuses).
    """
    admin = _admin(settings)
    await admin.start()
    try:
        return await _ensure(admin, settings, specs, set(await admin.list_topics()))
    finally:
        await admin.close()


async def ensure_all_topics(settings: PlatformSettings, models: list[str]) -> list[str]:
    """``ensure_topics`` for the platform's topics and every partner topic that exists (partners' topics
    are made by ``photocraft-tenants partner``), all with the retention of ``settings.job_ttl_s`` given
    the brokers' ``log.retention.check.interval.ms``."""
    admin = _admin(settings.kafka)
    await admin.start()
    try:
        interval_ms = await _check_interval_ms(admin)
        log.info("%s: %d ms", CHECK_INTERVAL, interval_ms)
        existing = set(await admin.list_topics())
        partners = sorted({tenant for name in existing if (tenant := partner_tenant(name))})
        specs = platform_topics(models, settings.job_ttl_s, check_interval_ms=interval_ms) + [
            s for tenant in partners
            for s in partner_topics(tenant, lifetime_s=settings.job_ttl_s, check_interval_ms=interval_ms)
            if s.name in existing]
        return await _ensure(admin, settings.kafka, specs, existing)
    finally:
        await admin.close()


async def ensure_partner_topics(settings: PlatformSettings, tenant: str) -> list[str]:
    """``ensure_topics`` for a partner tenant's two topics (``topics.partner_topics``), with the retention
    of ``settings.job_ttl_s`` given the brokers' ``log.retention.check.interval.ms``."""
    interval_ms = await retention_check_interval_ms(settings.kafka)
    return await ensure_topics(settings.kafka, partner_topics(tenant, lifetime_s=settings.job_ttl_s,
                                                              check_interval_ms=interval_ms))


def ensure_bucket(settings: PlatformSettings) -> bool:
    """Create the bucket if it is missing; True when it was created."""
    client = make_client(settings.s3)
    try:
        client.head_bucket(Bucket=settings.s3.bucket)
        return False
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
    client.create_bucket(Bucket=settings.s3.bucket)
    return True


async def move_accounts(settings: PlatformSettings) -> Move:
    """Move the accounts still in Redis into PostgreSQL (account_move.py); what was moved and refused."""
    engine, client = make_engine(settings.database), make_redis(settings.redis)
    try:
        return await move_from_redis(client, engine)
    finally:
        await client.aclose()
        await engine.dispose()


def ensure_schema(settings: PlatformSettings) -> Move:
    """The database at the newest migration, then the accounts still in Redis moved into it. Raises
    DatabaseMissing without a database URL, and what the connection or a migration raises."""
    upgrade(settings.database.required_url())
    return asyncio.run(move_accounts(settings))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = PlatformSettings()
    move = ensure_schema(settings)
    log.info("database: at the newest migration; %d Redis account records moved now%s", len(move.moved),
             f", {len(move.refused)} unreadable left in Redis" if move.refused else "")
    created = asyncio.run(ensure_all_topics(settings, list(MODELS)))
    log.info("topics created: %s", ", ".join(created) or "none (all exist)")
    log.info("bucket %s: %s", settings.s3.bucket,
             "created" if ensure_bucket(settings) else "exists")


if __name__ == "__main__":
    main()
