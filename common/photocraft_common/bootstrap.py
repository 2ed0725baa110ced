"""``photocraft-bootstrap``: create the platform's Kafka topics and S3 bucket.

Idempotent: what exists already is left as it is. Run once per environment
before the services start (``make up`` does; so does the Helm install hook).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from botocore.exceptions import ClientError

from .kafka import connection_kwargs
from .operations import MODELS
from .settings import KafkaSettings, PlatformSettings
from .storage import make_client
from .topics import TopicSpec, platform_topics

log = logging.getLogger("photocraft.bootstrap")


async def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec]) -> list[str]:
    """Create the topics of ``specs`` that do not exist; returns their names.

    Connects as ``settings`` say (TLS, SASL); with an authorizer, the principal needs
    DESCRIBE and CREATE on the cluster or the topics. Raises aiokafka's KafkaError.
    """
    admin = AIOKafkaAdminClient(**connection_kwargs(settings), client_id="photocraft-bootstrap")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.replication_factor,
                     topic_configs={"retention.ms": str(s.retention_ms),
                                   "max.message.bytes": str(s.max_message_bytes)})
            for s in specs if s.name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()


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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = PlatformSettings()
    created = asyncio.run(ensure_topics(settings.kafka, platform_topics(list(MODELS))))
    log.info("topics created: %s", ", ".join(created) or "none (all exist)")
    log.info("bucket %s: %s", settings.s3.bucket,
             "created" if ensure_bucket(settings) else "exists")


if __name__ == "__main__":
    main()
