"""Kafka access for every service: a FastStream broker and protobuf publishing.

Messages carry protobuf bytes, are keyed by job id and name their type in a
``message-type`` header (e.g. ``photocraft.v1.JobEvent``). Every client (the
broker, the bootstrap's admin client) connects with ``connection_kwargs``: TLS
and SASL as KafkaSettings say.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from google.protobuf.message import DecodeError, Message
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from .settings import KafkaSettings
from .topics import DEAD_LETTERS

__all__ = ["AckPolicy", "Unprocessable", "broker_security", "connection_kwargs", "dead_letter",
           "handle_or_dead_letter", "make_broker", "publish", "subscriber_options"]

log = logging.getLogger("photocraft.kafka")

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def connection_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin): ``bootstrap_servers``,
    ``security_protocol`` and, as the protocol needs them, ``ssl_context`` (built by aiokafka's
    ``create_ssl_context`` from ``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``; hostnames are
    checked) and ``sasl_mechanism``, ``sasl_plain_username``, ``sasl_plain_password``.

    Raises ``ssl.SSLError`` for a file that is not a PEM certificate or key.
    """
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                              "security_protocol": settings.security_protocol}
    if settings.uses_tls:
        kwargs["ssl_context"] = create_ssl_context(cafile=settings.ssl_cafile, certfile=settings.ssl_certfile,
                                                   keyfile=settings.ssl_keyfile)
    if settings.uses_sasl:
        kwargs |= {"sasl_mechanism": settings.sasl_mechanism, "sasl_plain_username": settings.sasl_username,
                   "sasl_plain_password": settings.sasl_password.get_secret_value()}
    return kwargs


def broker_security(settings: KafkaSettings) -> BaseSecurity | None:
    """The same connection settings as ``connection_kwargs``, in the form FastStream's KafkaBroker takes
    them (``security=``; it also names them in the AsyncAPI document). None for PLAINTEXT."""
    kwargs = connection_kwargs(settings)
    use_ssl = settings.uses_tls
    if settings.uses_sasl:
        return _SASL[kwargs["sasl_mechanism"]](kwargs["sasl_plain_username"], kwargs["sasl_plain_password"],
                                               ssl_context=kwargs.get("ssl_context"), use_ssl=use_ssl)
    return BaseSecurity(ssl_context=kwargs["ssl_context"], use_ssl=True) if use_ssl else None


def make_broker(settings: KafkaSettings, client_id: str, metadata_max_age_ms: int = 300_000) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and never creates topics.

    ``metadata_max_age_ms`` bounds how late a new topic matching a subscribed pattern is seen.
    """
    return KafkaBroker(
        settings.bootstrap_servers,
        security=broker_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        allow_auto_create_topics=False,
        graceful_timeout=30.0,
        metadata_max_age_ms=metadata_max_age_ms,
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


async def publish(broker: KafkaBroker, topic: str, message: Message, partition: int | None = None) -> None:
    """Publish ``message`` (which has a ``job_id`` field) keyed by its job id, to the key's
    partition unless ``partition`` is given.

    Returns once the broker has acknowledged the write; raises aiokafka's
    KafkaError when it could not be written.
    """
    await broker.publish(
        message.SerializeToString(),
        topic,
        key=message.job_id.encode(),
        partition=partition,
        headers={"message-type": message.DESCRIPTOR.full_name},
    )


class Unprocessable(Exception):
    """A message that no retry can handle (e.g. from an unknown sender): dead-lettered at once."""


MAX_KEY_BYTES = 256  # a longer key (ours are job ids) is not copied to the dead-letter topic
MAX_HEADER_CHARS = 2000


async def dead_letter(broker: KafkaBroker, record, error: BaseException) -> None:
    """Publish a reference to the consumed ``record`` (an aiokafka ConsumerRecord) and the error to the
    dead-letter topic; never its value, which may hold a photo or a prompt.

    The dead letter has an empty value, the record's key (dropped if over ``MAX_KEY_BYTES``), and headers
    ``error`` (the exception's repr, cut at ``MAX_HEADER_CHARS``), ``error-type``, ``source-topic``,
    ``source-partition``, ``source-offset``, ``source-timestamp`` (Unix ms), ``source-value-bytes`` and
    ``message-type`` (the record's own header). The record itself stays in its topic until retention
    removes it. Raises aiokafka's KafkaError when it cannot be written.
    """
    key = record.key if record.key is None or len(record.key) <= MAX_KEY_BYTES else None
    message_type = dict(record.headers or ()).get("message-type") or b""
    await broker.publish(b"", DEAD_LETTERS, key=key, headers={
        "error": repr(error)[:MAX_HEADER_CHARS], "error-type": type(error).__name__,
        "source-topic": record.topic, "source-partition": str(record.partition),
        "source-offset": str(record.offset), "source-timestamp": str(record.timestamp),
        "source-value-bytes": str(len(record.value or b"")),
        "message-type": message_type.decode(errors="replace")[:MAX_HEADER_CHARS],
    })
    log.error("%s[%d]@%d sent to %s: %r", record.topic, record.partition, record.offset, DEAD_LETTERS, error)


async def handle_or_dead_letter(broker: KafkaBroker, record, work: Callable[[], Awaitable[None]],
                                retry_for_s: float = 120.0,
                                on_dead_letter: Callable[[BaseException], Awaitable[None]] | None = None) -> None:
    """Run ``work`` for one consumed message, retrying with exponential backoff and jitter.

    A poison message (one that does not decode, or raises Unprocessable) goes to
    the dead-letter topic at once; one whose handling still fails after ``retry_for_s`` goes there too, so
    that it never blocks its partition. Either way the offset moves on. Once a message is dead-lettered,
    ``on_dead_letter(error)`` (if given) ends whatever waited on it (e.g. the scheduler fails the job of a
    JobSubmitted), retried as ``work`` is; if it still fails, that is logged and the offset moves on too.
    Raises KafkaError only when the dead letter cannot be written.
    """
    try:
        await _retrying(work, (DecodeError, Unprocessable), retry_for_s)
    except Exception as exc:
        await dead_letter(broker, record, exc)
        error = exc
    else:
        return
    if on_dead_letter is not None:
        try:
            await _retrying(lambda: on_dead_letter(error), (), retry_for_s)
        except Exception:
            log.exception("%s[%d]@%d: what waited on the dead-lettered message was not ended", record.topic,
                          record.partition, record.offset)


async def _retrying(work: Callable[[], Awaitable[None]], final: tuple[type[Exception], ...],
                    retry_for_s: float) -> None:
    """``work()`` again after each error but a ``final`` one, for ``retry_for_s`` at most; raises the last error."""
    async for attempt in AsyncRetrying(
        retry=retry_if_not_exception_type(final),
        wait=wait_exponential_jitter(multiplier=0.5, max=15),
        stop=stop_after_delay(retry_for_s),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            await work()
