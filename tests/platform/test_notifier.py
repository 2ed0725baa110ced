"""The WebSocket protocol against the running notifier, and a second replica started here:
replay by sequence number, tenant-wide feeds on both replicas, slow clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
import websockets
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from photocraft_common.contracts import JobEvent, Progress, new_id, now
from photocraft_common.topics import JOB_EVENTS

from .helpers import ROOT, events_until, fresh, png_bytes, submit, supervisorctl, tenant_key

REPLICA = "127.0.0.1:8082"
# Each notifier's Prometheus /metrics, apart from its public port: infra/supervisord.conf, and the replica's below.
METRICS = {"127.0.0.1:8081": "127.0.0.1:9440", REPLICA: "127.0.0.1:9441"}
REPLICA_QUEUE = 32  # live events a client of the replica may fall behind by


async def healthy(address: str, timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s), httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"http://{address}/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def replica():
    """A second notifier replica on port 8082, in the same consumer group, with a short send queue."""
    env = {**os.environ, "PHOTOCRAFT_PORT": REPLICA.split(":")[1], "PHOTOCRAFT_SEND_QUEUE": str(REPLICA_QUEUE),
           "PHOTOCRAFT_HEARTBEAT_S": "2", "PHOTOCRAFT_METRICS_PORT": METRICS[REPLICA].split(":")[1]}
    log = open(ROOT / "var" / "log" / "notifier-replica-test.log", "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "photocraft-notifier")], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                if httpx.get(f"http://{REPLICA}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the replica exited; see var/log/notifier-replica-test.log"
            time.sleep(0.5)
        yield REPLICA
    finally:
        process.terminate()
        process.wait(30)
        log.close()


async def connections(address: str) -> int:
    """The open WebSockets (every feed kind) of the notifier at ``address``, from its Prometheus /metrics."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{METRICS[address]}/metrics", timeout=5)
    response.raise_for_status()
    text = response.text
    return int(sum(sample.value for family in text_string_to_metric_families(text)
                   if family.name == "photocraft_websocket_connections" for sample in family.samples))


async def subscribed(counts: dict[str, int], timeout_s: float = 30,
                     until=lambda now, before: now > before) -> None:
    """Until each notifier (address -> its subscriptions before) holds one more live subscription
    (or ``until(now, before)`` holds)."""
    async with asyncio.timeout(timeout_s):
        for address, before in counts.items():
            while not until(await connections(address), before):
                await asyncio.sleep(0.05)  # a poll of the notifier's count, bounded by the timeout


async def read(url: str, until, timeout_s: float = 120) -> list[dict]:
    """Messages from ``url`` (heartbeats left out) until ``until(messages)`` or the server closes."""
    messages: list[dict] = []
    async with asyncio.timeout(timeout_s), websockets.connect(url) as socket:
        async for raw in socket:
            message = json.loads(raw)
            if message["type"] != "heartbeat":
                messages.append(message)
                if until(messages):
                    break
    return messages


def without_urls(messages: list[dict]) -> list[dict]:
    """``messages`` less their presigned URLs, which are signed at each send (X-Amz-Date to the second)."""
    return [{k: v for k, v in m.items() if k not in ("result_url", "results")} for m in messages]


def ended(messages: list[dict]) -> bool:
    return messages[-1]["type"] in {"completed", "failed", "cancelled"}


async def test_reconnecting_with_a_sequence_number_gets_exactly_the_missed_events(gateway, astronaut):
    response = await submit(gateway, png_bytes(fresh(astronaut)))
    assert response.status_code == 202, response.text
    job = response.json()
    url = f"{job['events_url']}?token={job['token']}"

    first = await read(url, lambda messages: len(messages) == 2)  # then the connection drops
    rest = await read(f"{url}&after={first[-1]['seq']}", ended)
    assert [m["seq"] for m in first + rest] == list(range(1, len(first + rest) + 1))
    assert rest[-1]["type"] == "completed"

    everything = await read(url, ended)
    assert without_urls(everything) == without_urls(first + rest)  # the log holds what was sent live, in the same order
    for after in (0, 3, len(everything) - 1):
        assert without_urls(await read(f"{url}&after={after}", ended)) == without_urls(everything[after:])


async def test_the_notifiers_log_keeps_no_feed_token(gateway, astronaut):
    job = (await submit(gateway, png_bytes(fresh(astronaut)))).json()
    log = ROOT / "var" / "log" / "notifier.log"
    start = log.stat().st_size
    await read(f"{job['events_url']}?token={job['token']}", ended)

    async with asyncio.timeout(10):  # supervisord writes the notifier's stderr to its log as it comes
        while f"/v1/jobs/{job['job_id']}/events?token=" not in (written := log.read_bytes()[start:].decode()):
            await asyncio.sleep(0.1)
    assert f"/v1/jobs/{job['job_id']}/events?token=[redacted]" in written
    assert job["token"] not in written


async def test_two_replicas_both_deliver_every_event_of_a_tenant(replica, gateway, astronaut):
    tenant = f"replicas-{new_id()[:8]}"
    key = tenant_key(tenant, "pro")
    feeds = [f"ws://127.0.0.1:8081/v1/events?api_key={key}", f"ws://{replica}/v1/events?api_key={key}"]
    before = {address: await connections(address) for address in ("127.0.0.1:8081", replica)}
    listening = [asyncio.create_task(read(feed, ended)) for feed in feeds]
    await subscribed(before)  # both subscribed to the live feed, before the job exists
    response = await submit(gateway, png_bytes(fresh(astronaut)), headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    on_main, on_replica = await asyncio.gather(*listening)

    def of_job(messages: list[dict]) -> list[tuple[int, str]]:
        return [(m["seq"], m["type"]) for m in messages if m["job_id"] == job_id]

    assert of_job(on_main) == of_job(on_replica)
    assert [seq for seq, _ in of_job(on_main)] == list(range(1, len(of_job(on_main)) + 1))
    assert of_job(on_main)[-1][1] == "completed"
    assert [m["cursor"] for m in on_replica] == list(range(1, len(on_replica) + 1))


def stalled_client(address: str, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then reads nothing; its kernel buffers 8 KiB."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_slow_client_does_not_delay_another(replica, settings):
    tenant = f"slow-{new_id()[:8]}"
    path = f"/v1/events?api_key={tenant_key(tenant, 'free')}"
    count, padding = 400, "x" * 32_000  # 13 MB in all: more than the sockets between them buffer
    # The earlier tests' feeds on the replica may still be closing: a count taken now could drop as the new
    # client arrives. The replica serves only this module's tests, so wait until it serves no one.
    await subscribed({replica: -1}, until=lambda n, before: n == 0)
    before = {replica: 0}
    slow = stalled_client(replica, path)
    await subscribed(before)
    job_id = new_id()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        before = {replica: await connections(replica)}
        fast = asyncio.create_task(read(f"ws://{replica}{path}",
                                        lambda m: len([x for x in m if x["job_id"] == job_id]) == count))
        await subscribed(before)
        for n in range(1, count + 1):
            event = JobEvent(event_id=new_id(), job_id=job_id, tenant_id=tenant, time=now(),
                             progress=Progress(stage="test", percent=n * 100 / count, message=padding))
            await producer.send(JOB_EVENTS, event.SerializeToString(), key=job_id.encode())
        await producer.flush()
        received = [m for m in await fast if m["job_id"] == job_id]
    finally:
        await producer.stop()
    assert [m["seq"] for m in received] == list(range(1, count + 1))  # every event, while the other stalled

    # The stalled client, reading at last, finds what fitted in the buffers, then a resync and a 4008 close.
    slow.settimeout(30)
    data = b""
    while chunk := await asyncio.to_thread(slow.recv, 1 << 20):
        data += chunk
    slow.close()
    resync = json.loads(data[data.rindex(b'{"type": "resync"'):].split(b"}", 1)[0] + b"}")
    assert b"\x0f\xa8" in data[data.rindex(b"}"):]  # the close frame's status code, 4008
    assert data.count(b'"type": "progress"') == resync["after"] < count
    resumed = await read(f"ws://{replica}{path}&after={resync['after']}", lambda m: m[-1]["cursor"] == count)
    assert [m["cursor"] for m in resumed] == list(range(resync["after"] + 1, count + 1))


async def test_tenant_feed_refuses_bad_credentials():
    for query, code in (("", 4401), ("?api_key=pc_unknown", 4401), ("?device_token=forged", 4401)):
        async with websockets.connect(f"ws://127.0.0.1:8081/v1/events{query}") as socket:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 10)
            assert socket.close_code == code


async def test_a_device_follows_all_its_jobs(anonymous, astronaut):
    client = f"10.{os.urandom(1)[0]}.{os.urandom(1)[0]}.{os.urandom(1)[0]}"  # its own daily quota
    response = await submit(anonymous, png_bytes(fresh(astronaut)), headers={"X-Forwarded-For": client})
    assert response.status_code == 202, response.text
    device = response.headers["x-device-token"]
    job = response.json()
    await events_until(job)
    messages = await read(f"ws://127.0.0.1:8081/v1/events?device_token={device}", ended)
    assert {m["job_id"] for m in messages} == {job["job_id"]}
    assert [m["cursor"] for m in messages] == list(range(1, len(messages) + 1))


async def test_a_job_run_while_a_notifier_is_down_is_served_whole_when_it_is_back(replica, gateway, astronaut):
    supervisorctl("stop", "services:notifier")
    try:
        response = await submit(gateway, png_bytes(fresh(astronaut)))
        assert response.status_code == 202, response.text
        job = response.json()
        path = f"/v1/jobs/{job['job_id']}/events?token={job['token']}"
        on_replica = await read(f"ws://{replica}{path}", ended)  # the replica took over the partitions
    finally:
        supervisorctl("start", "services:notifier")
        await healthy("127.0.0.1:8081")
    assert on_replica[-1]["type"] == "completed"
    on_main = await read(f"{job['events_url']}?token={job['token']}", ended)

    assert without_urls(on_main) == without_urls(on_replica)


async def close_code(url: str, headers: dict[str, str] | None = None) -> int:
    """The code the notifier closes ``url`` with, before it sends any message."""
    async with websockets.connect(url, additional_headers=headers) as socket:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)
        return socket.close_code


async def all_of(url: str, headers: dict[str, str]) -> tuple[list[dict], int]:
    """Every message (heartbeats left out) until the notifier closes ``url``, and the close code."""
    async with asyncio.timeout(120), websockets.connect(url, additional_headers=headers) as socket:
        messages = [json.loads(raw) async for raw in socket]
    return [m for m in messages if m["type"] != "heartbeat"], socket.close_code


async def test_a_job_feed_opens_with_the_job_token_or_an_api_key_or_device_token_of_its_tenant(
        gateway, anonymous, api_key, astronaut):
    keyed = await submit(gateway, png_bytes(fresh(astronaut)))
    client = f"10.{os.urandom(1)[0]}.{os.urandom(1)[0]}.{os.urandom(1)[0]}"  # its own daily quota
    anonymous_job = await submit(anonymous, png_bytes(fresh(astronaut)), headers={"X-Forwarded-For": client})
    assert keyed.status_code == anonymous_job.status_code == 202, (keyed.text, anonymous_job.text)
    device = anonymous_job.headers["x-device-token"]
    job, device_job = keyed.json(), anonymous_job.json()
    url, device_url = job["events_url"], device_job["events_url"]

    by_token = await read(f"{url}?token={job['token']}", ended)
    assert by_token[-1]["type"] == "completed"
    assert without_urls(await read(f"{url}?api_key={api_key}", ended)) == without_urls(by_token)
    by_header, code = await all_of(url, {"Authorization": f"Bearer {api_key}"})
    assert (without_urls(by_header), code) == (without_urls(by_token), 1000)

    by_device = await read(f"{device_url}?device_token={device}", ended)
    assert by_device[-1]["type"] == "completed"
    assert [m["seq"] for m in by_device] == list(range(1, len(by_device) + 1))
    by_header, code = await all_of(device_url, {"X-Device-Token": device})
    assert (without_urls(by_header), code) == (without_urls(by_device), 1000)

    other_key = tenant_key(f"other-{new_id()[:8]}", "free")
    # Someone else's job closes as an unknown one does (4404): no refusal confirms that it exists.
    assert await close_code(f"{url}?api_key={other_key}") == 4404
    assert await close_code(url, {"Authorization": f"Bearer {other_key}"}) == 4404
    assert await close_code(f"{url}?device_token={device}") == 4404  # a device of another tenant
    assert await close_code(f"{device_url}?api_key={api_key}") == 4404
    assert await close_code(f"{device_url}?token={job['token']}") == 4404  # another job's token
    assert await close_code(url) == 4401
    assert await close_code(f"ws://127.0.0.1:8081/v1/jobs/{new_id()}/events") == 4401  # missing before unknown
    assert await close_code(f"ws://127.0.0.1:8081/v1/jobs/{new_id()}/events?api_key={api_key}") == 4404


async def test_a_batch_feed_opens_with_the_batch_token_or_an_api_key_of_its_tenant(gateway, api_key, astronaut):
    response = await gateway.post("/v1/batches", files=[("files", ("p.png", png_bytes(fresh(astronaut[::4, ::4]))))],
                                  data={"operation": "remove-background"})
    assert response.status_code == 202, response.text
    batch = response.json()
    url = batch["events_url"]

    def batch_ended(messages: list[dict]) -> bool:
        return messages[-1]["type"] == "batch_progress" and messages[-1]["done"] == 1

    by_token = await read(f"{url}?token={batch['token']}", batch_ended)
    assert [(m["type"], m["done"], m["total"]) for m in by_token] == [("batch_progress", 1, 1)]
    assert await read(f"{url}?api_key={api_key}", batch_ended) == by_token
    assert await all_of(url, {"Authorization": f"Bearer {api_key}"}) == (by_token, 1000)  # the batch ended

    other_key = tenant_key(f"other-{new_id()[:8]}", "free")
    assert await close_code(f"{url}?api_key={other_key}") == 4404
    assert await close_code(f"{url}?token=not-the-token") == 4404
    assert await close_code(url) == 4401
    assert await close_code(f"ws://127.0.0.1:8081/v1/batches/{new_id()}/events?token={batch['token']}") == 4404
