from __future__ import annotations

from pydantic import Field, model_validator

from photocraft_common.guards import DEFAULT_BATCH_PIXELS, DEFAULT_WAITING, DEFAULT_WORKERS
from photocraft_common.settings import PlatformSettings

from .ratelimit import parse

# (per address, per API key) when PHOTOCRAFT_RATE_LIMIT_PER_IP / _PER_KEY are unset, by profile. The local
# stack's test suite sends everything from 127.0.0.1, most of it with one API key: there they only count.
RATE_LIMITS = {"local": ("1000/second;30000/minute", "1000/second;30000/minute"),
               "production": ("20/second;600/minute", "50/second;3000/minute")}


class GatewaySettings(PlatformSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    # Prometheus /metrics on a listener of its own, never the public port (which answers 404 there); 0: off.
    # The local stack's: infra/supervisord.conf; the chart's: charts/photocraft (docs/observability.md).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
    # Base of the notifier's WebSocket URLs handed to clients.
    events_base_url: str = "ws://127.0.0.1:8081"
    max_upload_bytes: int = 25 * 1024 * 1024
    max_batch_bytes: int = 250 * 1024 * 1024  # a whole batch upload
    # Pixels of all photos of one submission together (600 MP: fifty 12 MP photos); over it: 413 too-many-pixels,
    # from the photos' headers, before any is decoded. One photo's limit is max_pixels.
    max_batch_pixels: int = Field(DEFAULT_BATCH_PIXELS, ge=1)
    # Worker processes that decode uploaded photos (off the event loop, nice +10; default: a CPU core each but one,
    # at least one), and photos that may wait for one (more: 503 server-busy). See photocraft_common.offload.
    probe_workers: int = Field(DEFAULT_WORKERS, ge=1)
    probe_waiting: int = Field(DEFAULT_WAITING, ge=1)
    # Edits per IP address per 24 h for anonymous devices, so new device tokens do not reset the quota.
    anonymous_ip_daily_quota: int = 5
    # Requests to /v1/ per client address, and per API key for requests with a valid one (ratelimit.py), in the
    # `limits` notation: "20/second;600/minute" (each part must hold). Over one: 429 rate-limited with
    # Retry-After (docs/api.md). Unset: the profile's (RATE_LIMITS).
    rate_limit_per_ip: str | None = None
    rate_limit_per_key: str | None = None

    @model_validator(mode="after")
    def _rate_limits(self) -> GatewaySettings:
        """The profile's rate limits where unset; raises ValueError naming the variable for a malformed one."""
        per_ip, per_key = RATE_LIMITS[self.profile]
        self.rate_limit_per_ip = per_ip if self.rate_limit_per_ip is None else self.rate_limit_per_ip
        self.rate_limit_per_key = per_key if self.rate_limit_per_key is None else self.rate_limit_per_key
        parse(self.rate_limit_per_ip, "PHOTOCRAFT_RATE_LIMIT_PER_IP")
        parse(self.rate_limit_per_key, "PHOTOCRAFT_RATE_LIMIT_PER_KEY")
        return self
