"""Settings every service reads from the environment.

Variables start with ``PHOTOCRAFT_`` and nest with ``__``, for example
``PHOTOCRAFT_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or
``PHOTOCRAFT_S3__ENDPOINT_URL=https://s3.eu-west-1.amazonaws.com``.
The defaults point at the local stack that ``make up`` starts on 127.0.0.1;
its S3 credentials and device-token secret are for that stack only: with
``PHOTOCRAFT_PROFILE=production`` the settings refuse them (``ValidationError``
naming the variable), so every service refuses to start with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .tiers import DEFAULT_TIERS, Tier, TierPolicy

LOCAL_S3_ACCESS_KEY_ID = "photocraft-local"  # infra/s3.json
LOCAL_S3_SECRET_ACCESS_KEY = "photocraft-local-secret"
LOCAL_DEVICE_TOKEN_SECRET = "photocraft-local-development-only"
LIFETIME_S = 24 * 3600  # the product's promise: nothing of a job is kept longer (PlatformSettings.job_ttl_s)
# Errors name the setting but never echo the input: it may hold secrets.
PRIVATE = ConfigDict(hide_input_in_errors=True)


def _check_files(settings: BaseModel, prefix: str, fields: tuple[str, ...]) -> None:
    """Raise ValueError naming the variable when a configured file does not exist."""
    for field in fields:
        path = getattr(settings, field)
        if path and not Path(path).is_file():
            raise ValueError(f"{prefix}{field.upper()}: no such file: {path}")


class KafkaSettings(BaseModel):
    """How the services reach Kafka (aiokafka's names; see photocraft_common.kafka.connection_kwargs)."""

    model_config = PRIVATE

    bootstrap_servers: str = "127.0.0.1:9092"
    # Seconds a consumer may stay silent before its partitions go to another
    # member of its consumer group.
    session_timeout_s: float = 10.0
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # PEM bundle of the CAs that signed the brokers' certificates; None: the system's CAs.
    ssl_cafile: str | None = None
    # A client certificate (PEM) and its key, for brokers that require one (mTLS).
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Copies of each topic that photocraft-bootstrap creates: 1 on the single local broker,
    # 3 on a production cluster (the chart's default).
    replication_factor: int = 1

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        env = "PHOTOCRAFT_KAFKA__"
        credentials = self.sasl_username and self.sasl_password and self.sasl_password.get_secret_value()
        if self.uses_sasl and not credentials:
            raise ValueError(f"{env}SECURITY_PROTOCOL={self.security_protocol} needs {env}SASL_USERNAME "
                             f"and {env}SASL_PASSWORD")
        if not self.uses_sasl and (self.sasl_username or self.sasl_password):
            raise ValueError(f"{env}SASL_USERNAME/{env}SASL_PASSWORD are set but {env}SECURITY_PROTOCOL="
                             f"{self.security_protocol} does not use SASL: set it to SASL_SSL or SASL_PLAINTEXT")
        tls_files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
        if not self.uses_tls and any(getattr(self, f) for f in tls_files):
            raise ValueError(f"{env}SSL_* files are set but {env}SECURITY_PROTOCOL={self.security_protocol} "
                             "does not use TLS: set it to SSL or SASL_SSL")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError(f"{env}SSL_KEYFILE is set without {env}SSL_CERTFILE")
        _check_files(self, env, tls_files)
        return self


class S3Settings(BaseModel):
    model_config = PRIVATE
    # None means AWS S3 itself; any S3-compatible server works (SeaweedFS, MinIO).
    endpoint_url: str | None = "http://127.0.0.1:8333"
    # Host that clients reach for presigned URLs, when it differs from endpoint_url.
    public_endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr = SecretStr(LOCAL_S3_ACCESS_KEY_ID)
    secret_access_key: SecretStr = SecretStr(LOCAL_S3_SECRET_ACCESS_KEY)
    bucket: str = "photocraft"
    presigned_url_expiry_s: int = 6 * 3600
    # PEM bundle of the CAs that signed an https endpoint's certificate; None: the system's CAs.
    ca_bundle: str | None = None

    @field_validator("endpoint_url", "public_endpoint_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        """An empty variable (PHOTOCRAFT_S3__ENDPOINT_URL=) means AWS S3 itself, as None does."""
        return value or None

    @model_validator(mode="after")
    def _ca_bundle_exists(self) -> S3Settings:
        _check_files(self, "PHOTOCRAFT_S3__", ("ca_bundle",))
        return self


class RedisSettings(BaseModel):
    """``url``: ``redis://[user[:password]@]host:port/db``, or ``rediss://`` for TLS."""

    model_config = PRIVATE

    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None  # wins over a password in the URL
    # PEM bundle of the CAs that signed the server's certificate (rediss:// only); None: the system's CAs.
    ssl_ca_certs: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RedisSettings:
        if self.ssl_ca_certs and not self.url.startswith("rediss://"):
            raise ValueError("PHOTOCRAFT_REDIS__SSL_CA_CERTS is set but PHOTOCRAFT_REDIS__URL is not rediss:// (TLS)")
        _check_files(self, "PHOTOCRAFT_REDIS__", ("ssl_ca_certs",))
        return self


class PlatformSettings(BaseSettings):
    """Connection settings shared by all services; each service extends it.

    Raises pydantic's ValidationError, naming the variable, for inconsistent
    settings, and outside the local profile for the local stack's secrets.
    """

    model_config = SettingsConfigDict(env_prefix="PHOTOCRAFT_", env_nested_delimiter="__", hide_input_in_errors=True)

    # local: the stack `make up` starts; production: anything else (the local secrets are refused).
    profile: Literal["local", "production"] = "local"
    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    redis: RedisSettings = RedisSettings()
    # The lifetime of everything of a job, in seconds (24 h; lower only for tests): its Redis record,
    # parameters, prompt, stage state and event log expire after it, and photocraft-bootstrap derives
    # the Kafka topics' retention from it (photocraft_common.topics).
    job_ttl_s: int = LIFETIME_S
    # Tiers of service, e.g. PHOTOCRAFT_TIERS='{"pro": {"weight": 8, "concurrency": 40, ...}, ...}'.
    tiers: dict[Tier, TierPolicy] = DEFAULT_TIERS
    max_pixels: int = 50_000_000  # the largest input photo, any operation
    # Signs anonymous device tokens (the gateway issues them, the notifier checks them);
    # set a long random secret in production.
    device_token_secret: SecretStr = SecretStr(LOCAL_DEVICE_TOKEN_SECRET)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _no_local_secrets_outside_local(self) -> PlatformSettings:
        if self.profile == "local":
            return self
        local = {
            "PHOTOCRAFT_DEVICE_TOKEN_SECRET": (self.device_token_secret, LOCAL_DEVICE_TOKEN_SECRET),
            "PHOTOCRAFT_S3__ACCESS_KEY_ID": (self.s3.access_key_id, LOCAL_S3_ACCESS_KEY_ID),
            "PHOTOCRAFT_S3__SECRET_ACCESS_KEY": (self.s3.secret_access_key, LOCAL_S3_SECRET_ACCESS_KEY),
        }
        defaults = [env for env, (value, default) in local.items() if value.get_secret_value() == default]
        if defaults:
            raise ValueError(f"PHOTOCRAFT_PROFILE={self.profile} refuses the local stack's "
                             f"{', '.join(defaults)}: set your own")
        return self
