"""Kafka access for every service: a FastStream broker and protobuf publishing.

Messages carry protobuf bytes, are keyed by job id and name their type in a
``message-type`` header (e.g. ``photocraft.v1.JobEvent``). Every client (the
broker, the bootstrap's admin client) connects with ``connection_kwargs``: TLS
and SASL as KafkaSettings say.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from google.protobuf.message import DecodeError, Message
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from .logs import KafkaJobMiddleware
from .metrics import KafkaHopMiddleware
from .settings import KafkaSettings
from .telemetry import attached
from .topics import DEAD_LETTERS

__all__ = ["AckPolicy", "Unprocessable", "broker_security", "connection_kwargs", "dead_letter",
           "handle_or_dead_letter", "make_broker", "poll_without_pause", "publish", "subscriber_options"]

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

    ``metadata_max_age_ms`` bounds how late a new topic matching a subscribed pattern is seen. Every
    consumed message's hop is measured (metrics.KafkaHopMiddleware) and its handling's log lines name its
    job (logs.KafkaJobMiddleware). FastStream's OpenTelemetry middleware (outermost) traces every publish and
    consume: the W3C ``traceparent`` travels in the message's headers (photocraft_common.telemetry).
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
        middlewares=(KafkaTelemetryMiddleware(), KafkaHopMiddleware, KafkaJobMiddleware),
        logger=logging.getLogger("faststream.kafka"),  # a plain logger: the service's handler writes its lines
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


def poll_without_pause(subscriber, wait_ms: int = 1000):
    """Make a FastStream batch subscriber (``broker.subscriber(..., batch=True)``) poll again at once
    after a poll that found nothing; returns it.

    FastStream 0.7's batch subscriber waits up to ``batch_timeout_ms`` (200) for records and, when none
    came, sleeps as long again before the next poll: a message written during that sleep waited up to
    200 ms more (the 180-256 ms mode of the scheduler -> worker hop; bench/results/worker_path.md).
    Here each poll waits up to ``wait_ms`` and aiokafka's ``getmany`` returns as soon as records are
    fetched (as many as are there, up to the subscriber's ``max_records``), so an idle subscriber wakes
    once per ``wait_ms`` and a record is handed over when it arrives. Stopping is unchanged: the stopped
    consumer's poll returns nothing, or raises ConsumerStoppedError, and the consume loop ends.
    """
    async def get_msg(consumer) -> tuple:
        batches = await consumer.getmany(timeout_ms=wait_ms, max_records=subscriber.max_records)
        return tuple(record for records in batches.values() for record in records)

    subscriber.get_msg = get_msg
    return subscriber


async def publish(broker: KafkaBroker, topic: str, message: Message, partition: int | None = None,
                  traceparent: str | None = None) -> None:
    """Publish ``message`` (which has a ``job_id`` field) keyed by its job id, to the key's
    partition unless ``partition`` is given. With ``traceparent`` (W3C; e.g. the job's, from its record)
    it is published as part of that trace instead of the current span's (telemetry.attached).

    Returns once the broker has acknowledged the write; raises aiokafka's
    KafkaError when it could not be written.
    """
    with attached(traceparent) if traceparent is not None else nullcontext():
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
