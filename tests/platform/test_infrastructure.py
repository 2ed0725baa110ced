"""The infrastructure is the real servers, listening on 127.0.0.1 only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

from photocraft_common.topics import JOB_EVENTS, JOBS_SUBMITTED, TASK_RESULTS, model_topic

from .helpers import ROOT

STACK_PORTS = [9092, 9093, 6379, 8333, 8888, 9333, 9340, 8000, 8001, 8002, 8100, 8101, 8102, 8080, 8081,
               9400, 9401, 9410, 9420]


def listening_addresses() -> dict[int, set[str]]:
    """Local address (hex, as the kernel writes it) of every listening TCP socket, by port."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                address, port = fields[1].split(":")
                found.setdefault(int(port, 16), set()).add(address)
    return found


def test_every_port_of_the_stack_listens_on_loopback_only():
    # 127.0.0.1, ::ffff:127.0.0.1 and ::1
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    addresses = listening_addresses()
    for port in STACK_PORTS:
        assert port in addresses, f"nothing listens on {port}"
        assert addresses[port] <= loopback, f"port {port} listens on {addresses[port]}"


def test_triton_is_the_real_server_with_explicit_model_control():
    metadata = httpx.get("http://127.0.0.1:8000/v2").json()
    assert metadata["name"] == "triton" and metadata["version"] == "2.51.0"
    assert "model_repository" in metadata["extensions"]
    index = httpx.post("http://127.0.0.1:8000/v2/repository/index").json()
    assert {"u2netp"} <= {m["name"] for m in index}
    assert "--model-control-mode=explicit" in (ROOT / "infra" / "bin" / "triton").read_text()


def test_redis_is_a_real_redis_7():
    assert redis.Redis(host="127.0.0.1", port=6379).info("server")["redis_version"].startswith("7.")


async def test_topics_exist_with_explicit_partitions_and_are_never_auto_created(settings):
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        topics = [JOBS_SUBMITTED, TASK_RESULTS, JOB_EVENTS, model_topic("u2netp")]
        described = await admin.describe_topics(topics)
        assert {t["topic"]: len(t["partitions"]) for t in described} == {t: 6 for t in topics}
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                    request_timeout_ms=3000)
        await producer.start()
        try:
            with pytest.raises(UnknownTopicOrPartitionError):
                await producer.send_and_wait("photocraft.no-such-topic", b"x")
        finally:
            await producer.stop()
        assert "photocraft.no-such-topic" not in await admin.list_topics()
    finally:
        await admin.close()
