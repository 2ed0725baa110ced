"""Settings: the production profile's refusals, Kafka's TLS and SASL settings and the client arguments made
from them, Redis's password and CA, S3's CA bundle. Nothing needs to run."""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import botocore.exceptions
import pytest
from botocore.exceptions import ClientError
from faststream.kafka.security import parse_security
from pydantic import ValidationError
from redis.asyncio.connection import SSLConnection

from photocraft_common import settings as settings_module
from photocraft_common.kafka import broker_security, connection_kwargs
from photocraft_common.keyring import Keyring, KeyringMissing
from photocraft_common.redis_client import make_redis
from photocraft_common.settings import KafkaSettings, PlatformSettings, RedisSettings, S3Settings
from photocraft_common.storage import make_client

from ..certificates import make_server_certificate

OWN_KEYRING = Keyring.generate("k1")
OWN_SECRETS = {"PHOTOCRAFT_KEYRING": OWN_KEYRING.to_json(),
               "PHOTOCRAFT_S3__ACCESS_KEY_ID": "prod-key", "PHOTOCRAFT_S3__SECRET_ACCESS_KEY": "prod-secret"}


@pytest.fixture
def environ(monkeypatch):
    """A clean PHOTOCRAFT_* environment; returns a setter."""
    for name in list(os.environ):
        if name.startswith("PHOTOCRAFT_"):
            monkeypatch.delenv(name)
    return lambda **values: [monkeypatch.setenv(k, v) for k, v in values.items()]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_server_certificate(tmp_path_factory.mktemp("tls"))


# -- the production profile -----------------------------------------------------------------------------------


def test_the_local_profile_takes_the_local_defaults(environ):
    assert PlatformSettings().profile == "local"


@pytest.mark.parametrize("missing", list(OWN_SECRETS))
def test_production_refuses_each_local_default_naming_its_variable(environ, missing):
    environ(PHOTOCRAFT_PROFILE="production", **{k: v for k, v in OWN_SECRETS.items() if k != missing})
    with pytest.raises(ValidationError) as refused:
        PlatformSettings()
    assert missing in str(refused.value)
    assert [k for k in OWN_SECRETS if k in str(refused.value)] == [missing]


@pytest.mark.parametrize("given", [
    {"PHOTOCRAFT_PROFILE": "production", "PHOTOCRAFT_KEYRING": '{"current": "a", "keys": {"a": "Q7z"}}'},
    {"PHOTOCRAFT_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "PHOTOCRAFT_KAFKA__SASL_PASSWORD": "Q7z"},  # no username
])
def test_refusals_never_show_the_secrets_given(environ, given):
    environ(**given)  # short values: pydantic would show them whole, not cut short
    with pytest.raises(ValidationError) as refused:
        PlatformSettings()
    assert "Q7z" not in str(refused.value)


def test_production_names_every_local_default_at_once(environ):
    environ(PHOTOCRAFT_PROFILE="production")
    with pytest.raises(ValidationError) as refused:
        PlatformSettings()
    assert all(name in str(refused.value) for name in OWN_SECRETS)


def test_production_starts_with_its_own_secrets(environ):
    environ(PHOTOCRAFT_PROFILE="production", **OWN_SECRETS)
    settings = PlatformSettings()
    assert settings.required_keyring() == OWN_KEYRING


def test_the_keyring_comes_from_a_file_or_the_environment_not_both(environ, tmp_path):
    (tmp_path / "keyring.json").write_text(OWN_KEYRING.to_json())
    environ(PHOTOCRAFT_PROFILE="production", PHOTOCRAFT_KEYRING_FILE=str(tmp_path / "keyring.json"),
            **{k: v for k, v in OWN_SECRETS.items() if k != "PHOTOCRAFT_KEYRING"})
    assert PlatformSettings().required_keyring() == OWN_KEYRING
    environ(PHOTOCRAFT_KEYRING=OWN_SECRETS["PHOTOCRAFT_KEYRING"])
    with pytest.raises(ValidationError, match="set PHOTOCRAFT_KEYRING or PHOTOCRAFT_KEYRING_FILE, not both"):
        PlatformSettings()
    environ(PHOTOCRAFT_KEYRING_FILE=str(tmp_path / "nowhere.json"))
    with pytest.raises(ValidationError, match="PHOTOCRAFT_KEYRING_FILE: cannot read .*nowhere.json"):
        PlatformSettings(keyring=None)  # over the variable


def test_the_local_profile_reads_the_stacks_keyring_and_has_no_default(environ, tmp_path, monkeypatch):
    """Locally the keyring is the file that make up makes; without it a service that needs one stops."""
    monkeypatch.setattr(settings_module, "LOCAL_KEYRING", tmp_path / "keyring.json")
    with pytest.raises(KeyringMissing, match="make up"):
        PlatformSettings().required_keyring()
    (tmp_path / "keyring.json").write_text(OWN_KEYRING.to_json())
    assert PlatformSettings().required_keyring() == OWN_KEYRING


def test_an_unknown_profile_is_refused(environ):
    environ(PHOTOCRAFT_PROFILE="staging")
    with pytest.raises(ValidationError, match="profile"):
        PlatformSettings()


@pytest.mark.parametrize("command", ["photocraft-gateway", "photocraft-scheduler", "photocraft-gpu-inference",
                                     "photocraft-notifier", "photocraft-storage-janitor", "photocraft-bootstrap",
                                     "photocraft-tenants"])
def test_every_service_refuses_to_start_in_production_without_a_keyring(command):
    """The real console scripts: each exits with the message before it connects to anything (nothing runs
    on port 1, so a service that went on would fail differently, or hang until the timeout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOCRAFT_")}
    env |= {"PHOTOCRAFT_PROFILE": "production", "PHOTOCRAFT_S3__ACCESS_KEY_ID": "prod-key",
            "PHOTOCRAFT_S3__SECRET_ACCESS_KEY": "prod-secret", "PHOTOCRAFT_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "PHOTOCRAFT_REDIS__URL": "redis://127.0.0.1:1/0", "PHOTOCRAFT_S3__ENDPOINT_URL": "http://127.0.0.1:1"}
    args = ["create", "someone"] if command == "photocraft-tenants" else []
    run = subprocess.run([Path(sys.executable).parent / command, *args], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode != 0
    assert "PHOTOCRAFT_PROFILE=production needs the installation's keyring: set PHOTOCRAFT_KEYRING" in run.stderr


# -- Kafka ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_without_credentials_is_refused(protocol):
    with pytest.raises(ValidationError, match="needs PHOTOCRAFT_KAFKA__SASL_USERNAME and PHOTOCRAFT_KAFKA__SASL_PASS"):
        KafkaSettings(security_protocol=protocol, sasl_username="acme")
    with pytest.raises(ValidationError, match="SASL_USERNAME"):
        KafkaSettings(security_protocol=protocol, sasl_username="", sasl_password="secret")


def test_sasl_in_any_profile_is_checked_from_the_environment(environ):
    environ(PHOTOCRAFT_KAFKA__SECURITY_PROTOCOL="SASL_SSL", PHOTOCRAFT_KAFKA__SASL_USERNAME="photocraft")
    with pytest.raises(ValidationError, match="PHOTOCRAFT_KAFKA__SASL_PASSWORD"):
        PlatformSettings()


def test_settings_the_protocol_would_ignore_are_refused(certificate):
    with pytest.raises(ValidationError, match="does not use SASL"):
        KafkaSettings(sasl_username="acme", sasl_password="secret")
    with pytest.raises(ValidationError, match="does not use TLS"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="acme", sasl_password="secret",
                      ssl_cafile=str(certificate.ca))


def test_a_missing_ca_file_is_named(tmp_path):
    with pytest.raises(ValidationError, match="PHOTOCRAFT_KAFKA__SSL_CAFILE: no such file"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=str(tmp_path / "nowhere.pem"))


def test_plaintext_connects_without_tls_or_sasl():
    assert connection_kwargs(KafkaSettings(bootstrap_servers="k:9092")) == {
        "bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert broker_security(KafkaSettings()) is None


def test_ssl_checks_the_broker_against_the_configured_ca(certificate):
    kwargs = connection_kwargs(KafkaSettings(security_protocol="SSL", ssl_cafile=str(certificate.ca)))
    assert set(kwargs) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    context: ssl.SSLContext = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(n[0] for n in ca["subject"])["commonName"] for ca in context.get_ca_certs()] == ["photocraft test CA"]


def test_a_client_certificate_is_loaded_for_mtls(certificate):
    settings = KafkaSettings(security_protocol="SSL", ssl_cafile=str(certificate.ca),
                             ssl_certfile=str(certificate.certificate), ssl_keyfile=str(certificate.key))
    assert isinstance(connection_kwargs(settings)["ssl_context"], ssl.SSLContext)
    with pytest.raises(ssl.SSLError):  # a certificate with a key that is not its own
        connection_kwargs(settings.model_copy(update={"ssl_keyfile": str(make_server_certificate(
            certificate.ca.parent / "other").key)}))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_sasl_ssl_sends_the_credentials_over_tls(certificate, mechanism):
    settings = KafkaSettings(bootstrap_servers="k:9094", security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                             sasl_username="photocraft", sasl_password="s3cret", ssl_cafile=str(certificate.ca))
    kwargs = connection_kwargs(settings)
    assert kwargs.pop("ssl_context").verify_mode == ssl.CERT_REQUIRED
    assert kwargs == {"bootstrap_servers": "k:9094", "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                      "sasl_plain_username": "photocraft", "sasl_plain_password": "s3cret"}


def test_sasl_plaintext_has_no_tls():
    kwargs = connection_kwargs(KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u",
                                             sasl_password="p"))
    assert "ssl_context" not in kwargs and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_the_faststream_broker_gets_the_same_connection_as_plain_clients(certificate, protocol, mechanism):
    credentials = {"sasl_username": "u", "sasl_password": "p"} if protocol.startswith("SASL") else {}
    settings = KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism, **credentials,
                             ssl_cafile=str(certificate.ca) if protocol.endswith("SSL") else None)
    expected = connection_kwargs(settings)
    expected.pop("bootstrap_servers")
    given = {k: v for k, v in parse_security(broker_security(settings)).items() if v is not None}
    assert {k: type(v) for k, v in given.items()} == {k: type(v) for k, v in expected.items()}
    assert {k: v for k, v in given.items() if k != "ssl_context"} == {
        k: v for k, v in expected.items() if k != "ssl_context"}


# -- Redis and S3 ---------------------------------------------------------------------------------------------


async def test_the_redis_password_setting_wins_over_the_url():
    redis = make_redis(RedisSettings(url="redis://:in-url@cache:6380/3", password="from-secret"))
    options = redis.connection_pool.connection_kwargs
    assert (options["host"], options["port"], options["db"], options["password"]) == ("cache", 6380, 3, "from-secret")
    await redis.aclose()


async def test_rediss_checks_the_server_against_the_configured_ca(certificate):
    redis = make_redis(RedisSettings(url="rediss://cache:6380/0", ssl_ca_certs=str(certificate.ca)),
                       max_connections=7, blocking=True)
    pool = redis.connection_pool
    assert pool.connection_class is SSLConnection and pool.max_connections == 7
    assert pool.connection_kwargs["ssl_ca_certs"] == str(certificate.ca)
    await redis.aclose()


def test_a_redis_ca_without_tls_is_refused(certificate):
    with pytest.raises(ValidationError, match="PHOTOCRAFT_REDIS__SSL_CA_CERTS is set but PHOTOCRAFT_REDIS__URL"):
        RedisSettings(url="redis://cache:6379/0", ssl_ca_certs=str(certificate.ca))


@pytest.fixture
def https_server(certificate):
    """An HTTPS server on 127.0.0.1 with the test CA's certificate, answering 404 to everything."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.certificate, certificate.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_s3_client_verifies_https_with_the_ca_bundle(certificate, https_server, tmp_path):
    keys = {"access_key_id": "test-key", "secret_access_key": "test-secret"}
    trusting = make_client(S3Settings(endpoint_url=https_server, ca_bundle=str(certificate.ca), **keys))
    with pytest.raises(ClientError) as answered:  # through TLS to the server's answer
        trusting.head_bucket(Bucket="photocraft")
    assert answered.value.response["Error"]["Code"] == "404"
    with pytest.raises(botocore.exceptions.SSLError):  # the system's CAs do not know the test CA
        make_client(S3Settings(endpoint_url=https_server, **keys)).head_bucket(Bucket="photocraft")
    with pytest.raises(ValidationError, match="PHOTOCRAFT_S3__CA_BUNDLE: no such file"):
        S3Settings(ca_bundle=str(tmp_path / "nowhere.pem"))


def test_an_empty_s3_endpoint_means_aws_s3(environ):
    environ(PHOTOCRAFT_S3__ENDPOINT_URL="")
    assert PlatformSettings().s3.endpoint_url is None
    environ(PHOTOCRAFT_S3__ENDPOINT_URL="https://minio.example.com")
    assert PlatformSettings().s3.endpoint_url == "https://minio.example.com"

