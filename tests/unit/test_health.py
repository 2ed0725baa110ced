"""Readiness decisions, check timeouts and the health server, with in-process checks (no platform)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from photocraft_common.health import VERSION, HealthServer, S3Check, probe, verdict


def test_all_passed_is_ready():
    assert verdict({"kafka": None, "redis": None}) == (200, {"status": "ready",
                                                             "checks": {"kafka": "ok", "redis": "ok"}})


def test_no_checks_is_ready():
    assert verdict({}) == (200, {"status": "ready", "checks": {}})


def test_each_failure_is_named_with_its_error():
    status, body = verdict({"s3": ConnectionError("refused"), "kafka": None, "redis": TimeoutError("slow")})
    assert status == 503
    assert body == {"status": "unavailable", "failing": ["redis", "s3"], "checks": {
        "kafka": "ok", "redis": "TimeoutError: slow", "s3": "ConnectionError: refused"}}


async def test_checks_run_at_once_and_a_hanging_one_times_out():
    async def hangs() -> None:
        await asyncio.Event().wait()

    async def passes() -> None:
        await asyncio.sleep(0.1)

    async def fails() -> None:
        raise ConnectionRefusedError("no")

    started = asyncio.get_running_loop().time()
    status, body = await probe({"kafka": hangs, "redis": passes, "s3": fails}, timeout_s=0.3)
    elapsed = asyncio.get_running_loop().time() - started
    assert status == 503 and body["failing"] == ["kafka", "s3"]
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["kafka"] == "TimeoutError: no answer within 0.3 s"
    assert elapsed < 0.6  # concurrent: one timeout, not the sum of them


class BlockingBucket:
    """A boto3-like client whose head_bucket blocks until released (a blackholed S3)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def head_bucket(self, Bucket: str) -> dict:  # noqa: N803 (boto3's name)
        self.calls += 1
        if not self.release.wait(10):
            raise TimeoutError("never released")
        return {}


async def test_s3_check_starts_no_second_request_while_one_hangs():
    client = BlockingBucket()
    check = S3Check(client, "photocraft")
    try:
        await _hangs_then_answers(client, check)
    finally:
        client.release.set()


async def _hangs_then_answers(client: BlockingBucket, check: S3Check) -> None:
    assert (await probe({"s3": check}, timeout_s=0.2))[0] == 503
    status, body = await probe({"s3": check}, timeout_s=0.2)
    assert status == 503 and "has not answered yet" in body["checks"]["s3"]
    assert client.calls == 1
    client.release.set()
    for _ in range(100):  # the hanging request finishes in its thread
        if (await probe({"s3": check}, timeout_s=0.2))[0] == 200:
            break
        await asyncio.sleep(0.05)
    assert (await probe({"s3": check}, timeout_s=0.2))[0] == 200


async def test_health_server_answers_over_http():
    ready = {"up": False}

    async def dependency() -> None:
        if not ready["up"]:
            raise ConnectionError("down")

    server = HealthServer({"redis": dependency}, "127.0.0.1", 0)
    await server.start()
    try:
        assert server.port > 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok", "version": VERSION}
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["failing"] == ["redis"]
            ready["up"] = True
            assert (await client.get("/readyz")).status_code == 200
            metrics = await client.get("/metrics")  # Prometheus' text format (photocraft_common.metrics)
            assert metrics.status_code == 200 and "# TYPE photocraft_kafka_hop_seconds histogram" in metrics.text
    finally:
        await server.stop()


async def test_taken_port_is_an_error():
    first = HealthServer({}, "127.0.0.1", 0)
    await first.start()
    try:
        with pytest.raises(OSError):
            await HealthServer({}, "127.0.0.1", first.port).start()
    finally:
        await first.stop()
