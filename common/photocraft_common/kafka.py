"""Kafka access for every service: a FastStream broker and protobuf publishing.

Messages carry protobuf bytes, are keyed by job id and name their type in a
``message-type`` header (e.g. ``photocraft.v1.JobEvent``).
"""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from google.protobuf.message import Message
from tenacity import before_sleep_log, retry, stop_after_attempt, wait_exponential_jitter

from .settings import KafkaSettings

__all__ = ["AckPolicy", "make_broker", "publish", "subscriber_options", "with_backoff"]

log = logging.getLogger("photocraft.kafka")


def make_broker(settings: KafkaSettings, client_id: str) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and never creates topics."""
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        allow_auto_create_topics=False,
        graceful_timeout=30.0,
    )


def subscriber_options(settings: KafkaSettings, group_id: str, ack_policy: AckPolicy) -> dict:
    """Keyword arguments for ``broker.subscriber`` shared by every consumer group.

    Offsets are committed by ``ack_policy`` (never automatically in the
    background), and a new consumer group starts from the earliest offset so
    that nothing written before it first joined is skipped.
    """
    session_ms = int(settings.session_timeout_s * 1000)
    return {
        "group_id": group_id,
        "ack_policy": ack_policy,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(session_ms // 3, 500),
    }


async def publish(broker: KafkaBroker, topic: str, message: Message) -> None:
    """Publish ``message`` (which has a ``job_id`` field) keyed by its job id.

    Returns once the broker has acknowledged the write; raises aiokafka's
    KafkaError when it could not be written.
    """
    await broker.publish(
        message.SerializeToString(),
        topic,
        key=message.job_id.encode(),
        headers={"message-type": message.DESCRIPTOR.full_name},
    )


def with_backoff(handler):
    """Retry an idempotent message handler with exponential backoff and jitter.

    After the last attempt the error propagates, so (with NACK_ON_ERROR) the
    offset stays uncommitted and the message is consumed again, instead of
    spinning on a failing dependency such as Redis being down.
    """
    return retry(
        wait=wait_exponential_jitter(multiplier=0.5, max=15),
        stop=stop_after_attempt(6),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )(handler)
