"""Settings every service reads from the environment.

Variables start with ``PHOTOCRAFT_`` and nest with ``__``, for example
``PHOTOCRAFT_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or
``PHOTOCRAFT_S3__ENDPOINT_URL=https://s3.eu-west-1.amazonaws.com``.
The defaults point at the local stack that ``make up`` starts on 127.0.0.1.
Its secrets have no default in the source: the S3 keys and the installation's
keyring (keyring.py) are made at the stack's first start, and the local profile
falls back to those files (``LOCAL_S3_CONFIG``, ``LOCAL_KEYRING``). With
``PHOTOCRAFT_PROFILE=production`` the settings need ``PHOTOCRAFT_S3__ACCESS_KEY_ID``,
``PHOTOCRAFT_S3__SECRET_ACCESS_KEY`` and ``PHOTOCRAFT_KEYRING`` or
``PHOTOCRAFT_KEYRING_FILE`` (``ValidationError`` naming each missing variable),
so every service refuses to start without them. PostgreSQL (``PHOTOCRAFT_DATABASE__URL``) has no
default in production either; a service that needs it raises ``DatabaseMissing`` (docs/billing.md).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .keyring import Keyring, KeyringMissing
from .tiers import DEFAULT_TIERS, Tier, TierPolicy
from .usage.prices import DEFAULT_PRICES, check_prices

VAR = Path(__file__).resolve().parents[2] / "var"  # the local stack's, in this checkout
# The local stack's S3 identities (SeaweedFS's -s3.config file), with random keys made at its first start by
# infra/bin/s3-secrets (make up); the local profile uses those of LOCAL_S3_IDENTITY.
LOCAL_S3_CONFIG = VAR / "s3" / "security" / "s3.json"
LOCAL_S3_IDENTITY = "photocraft"
# The local stack's keyring: made at its first start by infra/stack.py (make up).
LOCAL_KEYRING = VAR / "secrets" / "keyring.json"
# The local stack's PostgreSQL (infra/bin/postgres): its role's password, random, made at its first start.
LOCAL_DATABASE_PASSWORD = VAR / "secrets" / "postgres-password"
LOCAL_DATABASE = "photocraft@127.0.0.1:15432/photocraft"  # role@host:port/database
# PlatformSettings.trusted_proxies when unset: tests on the local stack vary their client address with
# X-Forwarded-For from 127.0.0.1; production believes no proxy until told which (docs/deploy.md).
TRUSTED_PROXIES = {"local": ("127.0.0.1/32",), "production": ()}
LIFETIME_S = 24 * 3600  # the product's promise: nothing of a job is kept longer (PlatformSettings.job_ttl_s)
# Errors name the setting but never echo the input: it may hold secrets.
PRIVATE = ConfigDict(hide_input_in_errors=True)


class S3KeysMissing(RuntimeError):
    """No S3 keys are configured where a client needs them."""


def local_s3_keys(path: Path) -> tuple[SecretStr, SecretStr]:
    """The access key id and secret access key of identity LOCAL_S3_IDENTITY in ``path``, a SeaweedFS
    -s3.config file (``{"identities": [{"name": ..., "credentials": [{"accessKey": ..., "secretKey": ...}]}]}``).

    Raises ValueError naming the file, never a key, when it cannot be read or holds no such keys.
    """
    try:
        config = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read the local S3 keys, {path}: {exc.strerror}") from None
    except ValueError:
        config = None
    identities = config.get("identities") if isinstance(config, dict) else None
    found = [i for i in identities or [] if isinstance(i, dict) and i.get("name") == LOCAL_S3_IDENTITY]
    credentials = found[0].get("credentials") if found else None
    first = credentials[0] if isinstance(credentials, list) and credentials else {}
    keys = (first.get("accessKey"), first.get("secretKey")) if isinstance(first, dict) else (None, None)
    if not all(isinstance(key, str) and key for key in keys):
        raise ValueError(f"{path} holds no S3 keys of identity {LOCAL_S3_IDENTITY!r}: delete it with the platform "
                         "down and `make up` makes new ones")
    return SecretStr(keys[0]), SecretStr(keys[1])


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
    """How the services reach S3. Keys unset (None): PlatformSettings takes the local stack's in the
    local profile (LOCAL_S3_CONFIG) and refuses to start in production."""

    model_config = PRIVATE
    # None means AWS S3 itself; any S3-compatible server works (SeaweedFS, MinIO).
    endpoint_url: str | None = "http://127.0.0.1:8333"
    # Host that clients reach for presigned URLs, when it differs from endpoint_url.
    public_endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    bucket: str = "photocraft"
    presigned_url_expiry_s: int = 6 * 3600
    # PEM bundle of the CAs that signed an https endpoint's certificate; None: the system's CAs.
    ca_bundle: str | None = None

    @field_validator("endpoint_url", "public_endpoint_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        """An empty variable (PHOTOCRAFT_S3__ENDPOINT_URL=) means AWS S3 itself, as None does."""
        return value or None

    @field_validator("access_key_id", "secret_access_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        """An empty variable (PHOTOCRAFT_S3__ACCESS_KEY_ID=) leaves the key unset."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return value if text else None

    @property
    def missing_keys(self) -> list[str]:
        """The variables of the keys that are unset."""
        return [f"PHOTOCRAFT_S3__{field.upper()}" for field in ("access_key_id", "secret_access_key")
                if getattr(self, field) is None]

    def required_keys(self) -> tuple[str, str]:
        """(access key id, secret access key); raises S3KeysMissing, saying where they come from, when unset."""
        if self.access_key_id is None or self.secret_access_key is None:
            raise S3KeysMissing(f"no S3 keys: `make up` makes the local stack's ({LOCAL_S3_CONFIG}); elsewhere set "
                                f"{' and '.join(self.missing_keys)}")
        return self.access_key_id.get_secret_value(), self.secret_access_key.get_secret_value()

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


LOCAL_OTLP_ENDPOINT = "http://127.0.0.1:4318"  # the local stack's Jaeger, its OTLP/HTTP receiver


class DatabaseMissing(RuntimeError):
    """No database is configured where a service needs one."""


class DatabaseSettings(BaseModel):
    """PostgreSQL, the system of record (the usage ledger, photocraft_common.usage.ledger):
    ``PHOTOCRAFT_DATABASE__URL=postgresql://user:password@host:5432/database`` (``postgresql+asyncpg://``
    too; kept as the latter, the driver used). Unset: the local stack's in the local profile (its password
    from LOCAL_DATABASE_PASSWORD, made by `make up`); none in production, where ``required_url`` raises."""

    model_config = PRIVATE

    url: SecretStr | None = None
    pool_size: int = Field(5, ge=1)  # connections each process keeps open, at most

    @field_validator("url", mode="before")
    @classmethod
    def _postgresql(cls, value: str | SecretStr | None) -> str | None:
        """The URL with the asyncpg driver; raises ValueError naming the variable, never echoing the URL."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not text:
            return None
        parts = urlsplit(text)
        if parts.scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError("PHOTOCRAFT_DATABASE__URL must start with postgresql:// or postgresql+asyncpg://")
        if not parts.hostname or not parts.path.strip("/"):
            raise ValueError("PHOTOCRAFT_DATABASE__URL needs a host and a database: postgresql://user:password@"
                             "host:port/database")
        return "postgresql+asyncpg" + text[len(parts.scheme):]

    def required_url(self) -> str:
        """The asyncpg URL; raises DatabaseMissing, saying where it comes from, when unset."""
        if self.url is None:
            raise DatabaseMissing(f"no database: `make up` starts the local stack's ({LOCAL_DATABASE}, password in "
                                  f"{LOCAL_DATABASE_PASSWORD}); elsewhere set PHOTOCRAFT_DATABASE__URL")
        return self.url.get_secret_value()


def local_database_url(password_file: Path | None = None) -> str | None:
    """The local stack's database URL (LOCAL_DATABASE) with the password in ``password_file`` (default
    LOCAL_DATABASE_PASSWORD), or None while that file does not exist (before the stack's first start)."""
    try:
        password = (password_file or LOCAL_DATABASE_PASSWORD).read_text().strip()
    except FileNotFoundError:
        return None
    role, address = LOCAL_DATABASE.split("@")
    return f"postgresql+asyncpg://{role}:{quote(password, safe='')}@{address}"


class TracingSettings(BaseModel):
    """OpenTelemetry traces (photocraft_common.telemetry), e.g. ``PHOTOCRAFT_TRACING__SAMPLE_RATIO=0.1``."""

    model_config = PRIVATE

    enabled: bool = True
    # An OTLP/HTTP receiver's base URL (spans go to <endpoint>/v1/traces). Unset: the local stack's Jaeger
    # in the local profile (LOCAL_OTLP_ENDPOINT); none in production, where tracing is then off. Empty: off.
    endpoint: str | None = None
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)  # of the traces started here; a job's spans follow its root
    export_timeout_s: float = Field(5.0, gt=0)  # per export request; a failed export is dropped


class StripeKeyMissing(RuntimeError):
    """No usable Stripe API key is configured where the exporter needs one."""


class StripeSettings(BaseModel):
    """Stripe metered billing: the exporter ``photocraft-usage-export`` (usage/exporter.py, docs/billing.md),
    e.g. ``PHOTOCRAFT_STRIPE__API_KEY=rk_live_...``: a secret (``sk_``) or restricted (``rk_``) key allowed to
    write meter events. Only the exporter needs it (``PlatformSettings.required_stripe_key``)."""

    model_config = PRIVATE

    api_key: SecretStr | None = None
    # Stripe's API itself when unset; another base URL only for a test server (stripe-mock: http://127.0.0.1:12111).
    api_base: str | None = Field(None, pattern=r"^https?://\S+$")
    # The Stripe meter's event name (Dashboard: Billing > Meters); each event's value is whole units.
    meter_event_name: str = Field("photocraft_units", min_length=1, max_length=100)
    batch_size: int = Field(100, ge=1, le=10_000)  # ledger rows claimed (locked) per transaction
    # Retries of a failed request by the stripe SDK (connection errors, 409, 429, 5xx), with its backoff.
    max_network_retries: int = Field(3, ge=0, le=10)

    @field_validator("api_key", "api_base", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return value if text else None

    @field_validator("api_key", mode="after")
    @classmethod
    def _key_kind(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("sk_", "rk_")):
            raise ValueError("PHOTOCRAFT_STRIPE__API_KEY must be a secret (sk_...) or restricted (rk_...) key")
        return value


class PlatformSettings(BaseSettings):
    """Connection settings shared by all services; each service extends it.

    Raises pydantic's ValidationError, naming the variable, for inconsistent
    settings, and outside the local profile for missing S3 keys or keyring.
    """

    model_config = SettingsConfigDict(env_prefix="PHOTOCRAFT_", env_nested_delimiter="__", hide_input_in_errors=True)

    # local: the stack `make up` starts; production: anything else (the local secrets are refused).
    profile: Literal["local", "production"] = "local"
    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    redis: RedisSettings = RedisSettings()
    tracing: TracingSettings = TracingSettings()
    database: DatabaseSettings = DatabaseSettings()
    stripe: StripeSettings = StripeSettings()  # metered billing (photocraft-usage-export)
    # Units charged per job, by tier and operation (photocraft_common.usage.prices, docs/billing.md), e.g.
    # PHOTOCRAFT_PRICES='{"pro": {"restore": 4, ...}, ...}': every tier and operation, whole units >= 0.
    prices: dict[Tier, dict[str, int]] = Field(default_factory=lambda: check_prices(DEFAULT_PRICES))
    # The lifetime of everything of a job, in seconds (24 h; lower only for tests): its Redis record,
    # parameters, prompt, stage state and event log expire after it, and photocraft-bootstrap derives
    # the Kafka topics' retention from it (photocraft_common.topics).
    job_ttl_s: int = LIFETIME_S
    # Tiers of service, e.g. PHOTOCRAFT_TIERS='{"pro": {"weight": 8, "concurrency": 40, ...}, ...}'.
    tiers: dict[Tier, TierPolicy] = DEFAULT_TIERS
    max_pixels: int = 50_000_000  # the largest input photo, any operation
    # The installation's keyring (keyring.py: signs device tokens, keys the tenants' S3 prefixes), as
    # JSON in PHOTOCRAFT_KEYRING or in the file PHOTOCRAFT_KEYRING_FILE (not both). Unset, the local
    # profile reads LOCAL_KEYRING if it exists; production refuses to start.
    keyring: Keyring | None = None
    keyring_file: Path | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"  # JSON lines (photocraft_common.logs), or text for a terminal
    # Proxies whose X-Forwarded-For the gateway and the notifier believe: addresses or CIDR networks,
    # comma-separated (PHOTOCRAFT_TRUSTED_PROXIES=10.42.0.0/16,192.0.2.7; set but empty: none). A client is
    # the rightmost address of the chain that is not a trusted proxy (uvicorn's ProxyHeadersMiddleware).
    # Unset: the profile's (TRUSTED_PROXIES), 127.0.0.1/32 for local, none for production.
    trusted_proxies: Annotated[list[str] | None, NoDecode] = None

    @model_validator(mode="after")
    def _installation_secrets(self) -> PlatformSettings:
        if self.keyring is not None and self.keyring_file is not None:
            raise ValueError("set PHOTOCRAFT_KEYRING or PHOTOCRAFT_KEYRING_FILE, not both")
        if self.keyring_file is not None:
            self.keyring = Keyring.read(self.keyring_file, "PHOTOCRAFT_KEYRING_FILE")
        elif self.keyring is None and self.profile == "local" and LOCAL_KEYRING.is_file():
            self.keyring = Keyring.read(LOCAL_KEYRING, str(LOCAL_KEYRING))
        missing = self.s3.missing_keys
        if self.profile == "local":
            if len(missing) == 2 and LOCAL_S3_CONFIG.is_file():
                key_id, secret = local_s3_keys(LOCAL_S3_CONFIG)
                self.s3 = self.s3.model_copy(update={"access_key_id": key_id, "secret_access_key": secret})
            elif len(missing) == 1:
                raise ValueError(f"{missing[0]} is unset while the other S3 key is set: set both, or neither for "
                                 f"the local stack's ({LOCAL_S3_CONFIG})")
            return self
        refusals = [f"PHOTOCRAFT_PROFILE={self.profile} needs the S3 keys: set {' and '.join(missing)}"
                    ] if missing else []
        if self.keyring is None:
            refusals.append(f"PHOTOCRAFT_PROFILE={self.profile} needs the installation's keyring: set "
                            "PHOTOCRAFT_KEYRING or PHOTOCRAFT_KEYRING_FILE (docs/deploy.md)")
        if refusals:
            raise ValueError("; ".join(refusals))
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: str | list[str] | None) -> list[str] | None:
        """Each entry as a network (``192.0.2.7`` -> ``192.0.2.7/32``); raises ValueError naming the
        variable for an entry that is not an IP address or network (``*`` included: trust is explicit)."""
        if value is None:
            return None
        entries = [str(e).strip() for e in (value.split(",") if isinstance(value, str) else value)]
        networks = []
        for entry in filter(None, entries):
            try:
                networks.append(str(ipaddress.ip_network(entry)))
            except ValueError as exc:
                raise ValueError(f"PHOTOCRAFT_TRUSTED_PROXIES: {exc}") from None
        return networks

    @model_validator(mode="after")
    def _profile_proxies(self) -> PlatformSettings:
        if self.trusted_proxies is None:
            self.trusted_proxies = list(TRUSTED_PROXIES[self.profile])
        return self

    @field_validator("prices", mode="after")
    @classmethod
    def _complete_prices(cls, value: dict[Tier, dict[str, int]]) -> dict[Tier, dict[str, int]]:
        try:
            return check_prices(value)
        except ValueError as exc:
            raise ValueError(f"PHOTOCRAFT_PRICES: {exc}") from None

    @model_validator(mode="after")
    def _profile_database(self) -> PlatformSettings:
        if self.database.url is None and self.profile == "local" and (url := local_database_url()):
            self.database = self.database.model_copy(update={"url": SecretStr(url)})
        return self

    @model_validator(mode="after")
    def _profile_tracing(self) -> PlatformSettings:
        if self.tracing.endpoint is None and self.profile == "local":
            self.tracing = self.tracing.model_copy(update={"endpoint": LOCAL_OTLP_ENDPOINT})
        return self

    def required_stripe_key(self) -> str:
        """The Stripe API key for the exporter. Raises StripeKeyMissing when it is unset, and in the production
        profile when it is a test-mode key (``sk_test_``/``rk_test_``) or ``api_base`` points elsewhere than Stripe."""
        key = self.stripe.api_key.get_secret_value() if self.stripe.api_key else None
        if key is None:
            raise StripeKeyMissing("no Stripe key: set PHOTOCRAFT_STRIPE__API_KEY (docs/billing.md; for stripe-mock "
                                   "any sk_test_ key and PHOTOCRAFT_STRIPE__API_BASE=http://127.0.0.1:12111)")
        if self.profile == "production" and (key.startswith(("sk_test_", "rk_test_")) or self.stripe.api_base):
            raise StripeKeyMissing(f"PHOTOCRAFT_PROFILE={self.profile} bills real customers: it needs a live-mode "
                                   "PHOTOCRAFT_STRIPE__API_KEY and no PHOTOCRAFT_STRIPE__API_BASE")
        return key

    def required_keyring(self) -> Keyring:
        """The keyring; raises KeyringMissing (saying how to make one) when none is configured."""
        if self.keyring is None:
            raise KeyringMissing(f"no keyring: `make up` makes the local stack's ({LOCAL_KEYRING}); elsewhere "
                                 "set PHOTOCRAFT_KEYRING or PHOTOCRAFT_KEYRING_FILE (docs/deploy.md)")
        return self.keyring
