"""Settings every service reads from the environment.

Variables start with ``PHOTOCRAFT_`` and nest with ``__``, for example
``PHOTOCRAFT_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or
``PHOTOCRAFT_S3__ENDPOINT_URL=https://s3.eu-west-1.amazonaws.com``.
The defaults point at the local stack that ``make up`` starts on 127.0.0.1;
its S3 credentials are for that stack only.
"""

from __future__ import annotations

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .tiers import DEFAULT_TIERS, Tier, TierPolicy


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    # Seconds a consumer may stay silent before its partitions go to another
    # member of its consumer group.
    session_timeout_s: float = 10.0


class S3Settings(BaseModel):
    # None means AWS S3 itself; any S3-compatible server works (SeaweedFS, MinIO).
    endpoint_url: str | None = "http://127.0.0.1:8333"
    # Host that clients reach for presigned URLs, when it differs from endpoint_url.
    public_endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr = SecretStr("photocraft-local")
    secret_access_key: SecretStr = SecretStr("photocraft-local-secret")
    bucket: str = "photocraft"
    presigned_url_expiry_s: int = 6 * 3600


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"


class PlatformSettings(BaseSettings):
    """Connection settings shared by all services; each service extends it."""

    model_config = SettingsConfigDict(env_prefix="PHOTOCRAFT_", env_nested_delimiter="__")

    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    redis: RedisSettings = RedisSettings()
    # Seconds a job's record and event log are kept in Redis.
    job_ttl_s: int = 2 * 24 * 3600
    # Tiers of service, e.g. PHOTOCRAFT_TIERS='{"pro": {"weight": 8, "concurrency": 40, ...}, ...}'.
    tiers: dict[Tier, TierPolicy] = DEFAULT_TIERS
    max_pixels: int = 50_000_000  # the largest input photo, any operation
    # Signs anonymous device tokens (the gateway issues them, the notifier checks them);
    # set a long random secret in production.
    device_token_secret: SecretStr = SecretStr("photocraft-local-development-only")
    log_level: str = "INFO"
