"""The platform behind a secured Kafka: a second broker from the same jars (var/kafka/libs) with a SASL_SSL
listener (SCRAM-SHA-512, TLS certificates made here) and the StandardAuthorizer, with the ACLs of
docs/partners.md ("Secured Kafka"). Gateway, scheduler, a gpu-inference worker and the notifier run against it
as the platform's principal (with the shared S3 and Triton, and Redis database 5); partner A writes its requests
and reads its events through it; the broker refuses A on partner B's topics."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from PIL import Image

from photocraft_common.kafka import connection_kwargs
from photocraft_common.models import ModelDirectory
from photocraft_common.settings import KafkaSettings
from photocraft_common.topics import JOBS_SUBMITTED, PARTNER_EVENTS, PARTNER_REQUESTS

from ..certificates import make_server_certificate
from .helpers import ROOT, fresh, job_events, png_bytes

pytestmark = pytest.mark.timeout(600)  # the first test also starts the broker and four services

BIN = Path(sys.executable).parent
JARS = f"{ROOT / 'var/kafka/libs'}/*:{ROOT / 'var/kafka/tools-libs'}/*"  # tools-libs: AclCommand
INTERNAL, CONTROLLER, SECURED = 19092, 19093, 19094
REDIS_URL = "redis://127.0.0.1:6379/5"  # apart from the shared platform's database 0
# Clear of the shared platform (8080, 8081, 9410, 9400) and of the chart test (values-local.yaml: 18080, ...).
GATEWAY, NOTIFIER, SCHEDULER_HEALTH, WORKER_HEALTH = 28080, 28081, 29410, 29400
ADMIN = "kafka-admin"  # a super user: manages the ACLs, nothing else
PLATFORM = "photocraft"  # the services' principal: only the ACLs below
PARTNER_A, PARTNER_B = "partner-a", "partner-b"  # tenant ids, and the names of their principals

# The plaintext listeners on 127.0.0.1 are the broker's own (controller, inter-broker; their anonymous principal
# is a super user); every client of the test uses SECURED.
SERVER_PROPERTIES = """
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller},SECURED://127.0.0.1:{secured}
advertised.listeners=INTERNAL://127.0.0.1:{internal},SECURED://127.0.0.1:{secured}
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,SECURED:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.secured.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.secured.ssl.keystore.type=PEM
listener.name.secured.ssl.keystore.location={keystore}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:{admin}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.dirs={data}
"""


@dataclass(frozen=True)
class SecuredBroker:
    folder: Path
    ca: Path
    passwords: dict[str, str]  # SCRAM-SHA-512 user -> password

    def settings(self, user: str) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=f"127.0.0.1:{SECURED}", security_protocol="SASL_SSL",
                             sasl_username=user, sasl_password=self.passwords[user], ssl_cafile=str(self.ca))

    def env(self, user: str) -> dict[str, str]:
        """The PHOTOCRAFT_KAFKA__* variables that connect as ``user``."""
        return {"PHOTOCRAFT_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{SECURED}",
                "PHOTOCRAFT_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "PHOTOCRAFT_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                "PHOTOCRAFT_KAFKA__SASL_USERNAME": user, "PHOTOCRAFT_KAFKA__SASL_PASSWORD": self.passwords[user],
                "PHOTOCRAFT_KAFKA__SSL_CAFILE": str(self.ca)}


def java(*args: str) -> list[str]:
    return ["java", f"-Dlog4j2.configurationFile={ROOT / 'infra/kafka/log4j2.properties'}", "-cp", JARS, *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any PHOTOCRAFT_* variable, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PHOTOCRAFT_")}, **extra}


def wait_until(what: str, ready: Callable[[], bool], within_s: float, process: subprocess.Popen, log: Path) -> None:
    """Poll ``ready`` (exceptions count as not yet) until it holds; fail when ``process`` exits or time is up."""
    deadline = time.monotonic() + within_s
    while True:
        assert process.poll() is None, f"{what}: its process exited ({process.returncode}):\n{log.read_text()[-4000:]}"
        with contextlib.suppress(Exception):
            if ready():
                return
        assert time.monotonic() < deadline, f"{what} not ready after {within_s:.0f} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)  # a poll of something starting, bounded by the deadline


def stop(processes: list[subprocess.Popen], within_s: float = 45) -> None:
    """SIGTERM each, then SIGKILL what is still running after ``within_s``."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + within_s
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(command: list, log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


async def admin_can_connect(broker: SecuredBroker) -> bool:
    producer = AIOKafkaProducer(**connection_kwargs(broker.settings(ADMIN)), request_timeout_ms=5000)
    try:
        await producer.start()
        return True
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A single-node KRaft broker with the SASL_SSL listener on 127.0.0.1:19094 and its SCRAM users
    (made at format time); its data, certificates and log live in a temporary folder."""
    folder = tmp_path_factory.mktemp("secured-kafka")
    tls = make_server_certificate(folder / "tls")
    keystore = folder / "tls" / "keystore.pem"  # Kafka's PEM keystore: the key, then the certificate
    keystore.write_text(tls.key.read_text() + tls.certificate.read_text())
    keystore.chmod(0o600)
    users = (ADMIN, PLATFORM, PARTNER_A, PARTNER_B)
    secured = SecuredBroker(folder, tls.ca, {user: secrets.token_urlsafe(18) for user in users})
    properties = folder / "server.properties"
    properties.write_text(SERVER_PROPERTIES.format(internal=INTERNAL, controller=CONTROLLER, secured=SECURED,
                                                   keystore=keystore, admin=ADMIN, data=folder / "data"))
    cluster_id = subprocess.run(java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True,
                                check=True, timeout=60).stdout.split()[-1]
    scram = [a for user, password in secured.passwords.items()
             for a in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]")]
    subprocess.run(java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                        "-c", str(properties), *scram), capture_output=True, check=True, timeout=60)
    log = folder / "kafka.log"
    process = start(java("-Xms128m", "-Xmx512m", "kafka.Kafka", str(properties)), log, clean_env())
    try:
        wait_until("the secured listener", lambda: socket.create_connection(("127.0.0.1", SECURED), 1).close() is None,
                   90, process, log)
        wait_until("the secured broker", lambda: asyncio.run(admin_can_connect(secured)), 60, process, log)
        yield secured
    finally:
        stop([process])


@pytest.fixture(scope="module")
def acls(broker):
    """The ACLs of docs/partners.md, added with Kafka's own AclCommand as the admin. The platform: every
    ``photocraft.*`` topic and ``photocraft-*`` consumer group. Each partner: write its requests topic, read
    its events topic, consumer groups named ``photocraft.partner.<tenant>.*``; nothing else."""
    assert (ROOT / "var/kafka/tools-libs/.stamp").exists(), "Kafka's tools are missing: run `make install`"
    config = broker.folder / "admin.properties"
    config.write_text("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                      "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                      f'username="{ADMIN}" password="{broker.passwords[ADMIN]}";\n'
                      f"ssl.truststore.type=PEM\nssl.truststore.location={broker.ca}\n")
    platform = ["--allow-principal", f"User:{PLATFORM}", "--resource-pattern-type", "prefixed"]
    grants = [[*platform, *(a for op in ("Read", "Write", "Describe", "Create", "DescribeConfigs", "AlterConfigs")
                            for a in ("--operation", op)),
               "--topic", "photocraft."],
              [*platform, "--operation", "Read", "--group", "photocraft-"]]
    for tenant in (PARTNER_A, PARTNER_B):
        principal = ["--allow-principal", f"User:{tenant}"]
        grants += [
            [*principal, "--operation", "Write", "--operation", "Describe",
             "--topic", PARTNER_REQUESTS.format(tenant=tenant)],
            [*principal, "--operation", "Read", "--operation", "Describe",
             "--topic", PARTNER_EVENTS.format(tenant=tenant)],
            [*principal, "--operation", "Read", "--group", f"photocraft.partner.{tenant}.",
             "--resource-pattern-type", "prefixed"],
        ]
    runs = [subprocess.Popen(java("org.apache.kafka.tools.AclCommand", "--bootstrap-server", f"127.0.0.1:{SECURED}",
                                  "--command-config", str(config), "--add", *grant),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for grant in grants]
    try:
        for run in runs:
            output, _ = run.communicate(timeout=120)
            assert run.returncode == 0, output
    finally:
        stop(runs, within_s=5)


async def served(model: str) -> bool:
    """Whether a worker of the secured platform has reported ``model`` as available."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        return model in await ModelDirectory(client).available()
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def secured_platform(broker, acls, tmp_path_factory):
    """The topics and both partners bootstrapped through SASL_SSL, then gateway (28080), notifier (28081),
    scheduler (health 29410) and one gpu-inference worker (health 29400, u2netp only, Triton on 8001)
    connected as the platform's principal. Yields the services' environment once each is ready."""
    logs = tmp_path_factory.mktemp("secured-services")
    env = clean_env(**broker.env(PLATFORM), PHOTOCRAFT_REDIS__URL=REDIS_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    for command in (["photocraft-bootstrap"], ["photocraft-tenants", "partner", PARTNER_A],
                    ["photocraft-tenants", "partner", PARTNER_B]):
        run = subprocess.run([BIN / command[0], *command[1:]], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
    worker = {"PHOTOCRAFT_MODELS": '["u2netp"]', "PHOTOCRAFT_RESIDENCY__PINNED": '["u2netp"]',
              # the shared platform's Triton: this worker never unloads its models
              "PHOTOCRAFT_RESIDENCY__IDLE_TTL_S": "86400", "PHOTOCRAFT_METRICS_PORT": str(WORKER_HEALTH),
              "PHOTOCRAFT_TRITON__INSTANCES": '[{"grpc": "127.0.0.1:8001", "metrics": "http://127.0.0.1:8002/metrics"}]'}
    services = {
        "gateway": ({"PHOTOCRAFT_PORT": str(GATEWAY), "PHOTOCRAFT_EVENTS_BASE_URL": f"ws://127.0.0.1:{NOTIFIER}"},
                    GATEWAY),
        "notifier": ({"PHOTOCRAFT_PORT": str(NOTIFIER)}, NOTIFIER),
        "scheduler": ({"PHOTOCRAFT_PORT": str(SCHEDULER_HEALTH)}, SCHEDULER_HEALTH),
        "gpu-inference": (worker, WORKER_HEALTH),
    }
    processes = {name: start([BIN / f"photocraft-{name}"], logs / f"{name}.log", {**env, **extra})
                 for name, (extra, _) in services.items()}
    try:
        for name, (_, port) in services.items():
            wait_until(name, lambda port=port: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
                       == 200, 120, processes[name], logs / f"{name}.log")
        wait_until("u2netp reported by the worker", lambda: asyncio.run(served("u2netp")), 60,
                   processes["gpu-inference"], logs / "gpu-inference.log")
        yield env
    finally:
        stop(list(processes.values()))
        redis.Redis.from_url(REDIS_URL).flushdb()


def tenant_key(env: dict[str, str], tenant: str) -> str:
    return subprocess.run([BIN / "photocraft-tenants", "create", tenant, "--tier", "enterprise"], env=env,
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def assert_cut_out(png: bytes) -> None:
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "RGBA" and image.size == (512, 512)
        alpha = np.asarray(image)[..., 3]
    assert 0.2 < (alpha < 128).mean() < 0.6  # a subject cut out, not an empty or full mask


async def written_to(settings: KafkaSettings, topic: str) -> int:
    """How many records ``topic`` has had (the sum of its partitions' end offsets)."""
    admin = AIOKafkaAdminClient(**connection_kwargs(settings))
    consumer = AIOKafkaConsumer(**connection_kwargs(settings))
    await admin.start()
    await consumer.start()
    try:
        [described] = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()
        await admin.close()


async def test_a_photo_goes_through_the_platform_over_sasl_ssl(secured_platform, broker, astronaut):
    before = await written_to(broker.settings(PLATFORM), JOBS_SUBMITTED)
    headers = {"Authorization": f"Bearer {tenant_key(secured_platform, 'secured-tests')}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{GATEWAY}", headers=headers, timeout=30) as gateway:
        events = await job_events(gateway, "remove-background", photo=png_bytes(fresh(astronaut)))
    assert [e["type"] for e in events][-1] == "completed", events[-1]
    assert await written_to(broker.settings(PLATFORM), JOBS_SUBMITTED) == before + 1  # the job went through this broker
    assert_cut_out(httpx.get(events[-1]["result_url"], timeout=30).raise_for_status().content)


def test_a_partner_writes_its_requests_and_reads_its_events(secured_platform, broker, astronaut, tmp_path):
    """The example partner client as partner A: its request through A's requests topic, the job's events
    back through A's events topic, both over SASL_SSL with A's own credentials."""
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(png_bytes(fresh(astronaut)))
    run = subprocess.run([sys.executable, ROOT / "examples" / "partner_client.py", "--tenant", PARTNER_A, photo,
                          "--operation", "remove-background", "-o", tmp_path / "out", "--timeout", "240"],
                         env=clean_env(**broker.env(PARTNER_A)), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    kinds = [line.split()[0] for line in run.stdout.splitlines()[1:] if not line.startswith("result written")]
    assert kinds[0] == "received" and kinds[-1] == "completed", run.stdout
    [result] = (tmp_path / "out").glob("*-image.png")
    assert_cut_out(result.read_bytes())


async def test_the_broker_refuses_a_partner_on_another_partners_topics(secured_platform, broker):
    partner_a = connection_kwargs(broker.settings(PARTNER_A))
    own_events, own_group = PARTNER_EVENTS.format(tenant=PARTNER_A), f"photocraft.partner.{PARTNER_A}.test"

    producer = AIOKafkaProducer(**partner_a, acks="all", request_timeout_ms=10_000)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(PARTNER_REQUESTS.format(tenant=PARTNER_B), b"not A's to write")
        with pytest.raises(TopicAuthorizationFailedError):  # nor its own events: only the platform writes those
            await producer.send_and_wait(own_events, b"a forged event")
    finally:
        await producer.stop()

    async def first_error(topic: str, group: str) -> KafkaError | None:
        """What a consumer of ``topic`` in ``group`` meets within 20 s; None when it joined and was assigned."""
        consumer = AIOKafkaConsumer(topic, **partner_a, group_id=group, auto_offset_reset="latest")
        try:
            await consumer.start()
            async with asyncio.timeout(20):
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=500)
            return None
        except KafkaError as error:
            return error
        finally:
            await consumer.stop()

    assert await first_error(own_events, own_group) is None  # A reads its own events in its own group
    refused = await first_error(PARTNER_EVENTS.format(tenant=PARTNER_B), own_group)
    assert isinstance(refused, TopicAuthorizationFailedError), refused
    refused = await first_error(own_events, f"photocraft.partner.{PARTNER_B}.test")
    assert isinstance(refused, GroupAuthorizationFailedError), refused


async def test_a_wrong_password_is_refused(broker, caplog):
    wrong = KafkaSettings(**{**broker.settings(PARTNER_A).model_dump(), "sasl_password": "not-the-password"})
    producer = AIOKafkaProducer(**connection_kwargs(wrong), request_timeout_ms=10_000)
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()
    # aiokafka logs the broker's answer and raises the generic error
    assert "SaslAuthenticationFailed: Authentication failed during authentication due to invalid credentials" \
        in caplog.text
