"""The notifier's Kafka consumer: every JobEvent, relayed to its partner's topic, then logged.

The replicas share the group ``photocraft-notifier`` on ``photocraft.jobs.events``. An event that
cannot be handled goes to the dead-letter topic; when even that fails, its offset is not committed
and it comes again.
"""

from __future__ import annotations

from faststream.kafka.annotations import KafkaMessage

from photocraft_common import logs, telemetry
from photocraft_common.contracts import JobEvent, parse
from photocraft_common.kafka import AckPolicy, handle_or_dead_letter, subscriber_options
from photocraft_common.topics import JOB_EVENTS, NOTIFIER_GROUP

from .deps import Notifier
from .metrics import EVENTS_RELAYED


async def log_event(notifier: Notifier, event: JobEvent) -> None:
    """Relay ``event`` to its tenant's partner topic (if a partner), then log and publish it (eventlog.py;
    an event of a purged job is dropped there)."""
    await notifier.partners.relay(event)  # first: a crash before logging redelivers it (partners dedupe by event_id)
    await notifier.events.append(event, telemetry.current_traceparent())  # its sends continue this trace
    EVENTS_RELAYED.labels(event.WhichOneof("kind") or "none").inc()


def subscribe(notifier: Notifier) -> None:
    """Subscribe ``notifier.broker`` to the job events; they flow once the broker starts."""
    broker = notifier.broker

    @broker.subscriber(JOB_EVENTS, **subscriber_options(notifier.settings.kafka, NOTIFIER_GROUP,
                                                         AckPolicy.NACK_ON_ERROR))
    async def on_event(body: bytes, message: KafkaMessage) -> None:
        await handle_or_dead_letter(broker, message.raw_message,
                                    lambda: log_event(notifier, logs.bound(parse(JobEvent, body))))
