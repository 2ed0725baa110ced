"""The notifier's Prometheus metrics (on its ``/metrics``; the list is docs/observability.md). Feed kinds:
``job``, ``batch``, ``tenant`` (relay.Feed.kind)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("photocraft_websocket_connections", "Open WebSockets relaying a feed, by feed kind", ["feed"])
SEND_QUEUE = Gauge("photocraft_websocket_send_queue_events",
                   "Live events queued for this process's WebSockets, not sent yet: in all queues, or the longest",
                   ["queues"])
EVENTS_SENT = Counter("photocraft_websocket_events_sent_total", "Job events sent to WebSockets, by feed kind",
                      ["feed"])
RESYNCS = Counter("photocraft_websocket_resyncs_total",
                  "WebSockets told to resync and closed (4008) because their send queue was full", ["feed"])
EVENTS_RELAYED = Counter("photocraft_events_relayed_total",
                         "Job events consumed from Kafka, relayed to partners and logged, by event kind", ["kind"])
