from __future__ import annotations

from pydantic import Field, model_validator

from photocraft_common.settings import PlatformSettings

# (per address, per credential) when PHOTOCRAFT_CONNECTIONS_PER_IP / _PER_CREDENTIAL are unset, by profile.
# The local stack's tests and benchmarks open their WebSockets from 127.0.0.1: there they only count.
CONNECTION_LIMITS = {"local": (1000, 1000), "production": (100, 50)}


class NotifierSettings(PlatformSettings):
    host: str = "127.0.0.1"
    port: int = 8081
    # Prometheus /metrics on a listener of its own, never the public port (which answers 404 there); 0: off.
    # The local stack's: infra/supervisord.conf; the chart's: charts/photocraft (docs/observability.md).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
    # Seconds without events after which a heartbeat message is sent.
    heartbeat_s: float = 15.0
    # Live events waiting for one client; a client further behind is told to resync.
    send_queue: int = 256
    # Seconds one message may take to reach a client before it is disconnected.
    send_timeout_s: float = 30.0
    # Redis connections of one notifier process (one holds the live feed).
    redis_connections: int = 64
    # Open WebSockets per client address and per credential (a job's or batch's token, an API key, a device
    # token), counted across replicas (limits.py); one more is closed with 4429 (docs/events.md).
    # Unset: the profile's (CONNECTION_LIMITS).
    connections_per_ip: int | None = Field(None, ge=1)
    connections_per_credential: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _connection_limits(self) -> NotifierSettings:
        per_ip, per_credential = CONNECTION_LIMITS[self.profile]
        self.connections_per_ip = per_ip if self.connections_per_ip is None else self.connections_per_ip
        if self.connections_per_credential is None:
            self.connections_per_credential = per_credential
        return self
