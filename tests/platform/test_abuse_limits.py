"""Abuse limits on a gateway and a notifier of the test's own, started here with low limits and sharing
the platform's Redis, Kafka and S3 (the shared services keep the local profile's generous limits).

Clients differ by address in two ways: as a trusted proxy's client (from 127.0.0.1, the only trusted
proxy here, with X-Forwarded-For), or by connecting from an address of their own on the loopback
network (127.x.y.z), whose X-Forwarded-For the services must ignore.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from .helpers import ROOT, tenant_key

GATEWAY_PORT, NOTIFIER_PORT = 8090, 8083
PER_MINUTE = 5  # requests per address and per API key on the test's gateway
PER_IP, PER_CREDENTIAL = 3, 2  # WebSockets on the test's notifier


def loopback() -> str:
    """An address of the loopback network no other run of this test uses (not 127.0.0.1)."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def documentation_address() -> str:
    return f"198.51.100.{random.randint(1, 254)}" if random.random() < 0.5 else f"203.0.113.{random.randint(1, 254)}"


@contextlib.contextmanager
def own_service(command: str, port: int, **env: str):
    """``command`` (a service's console script) on ``port`` with ``env``; waits for /healthz, stops it on exit."""
    environment = {**os.environ, "PHOTOCRAFT_PORT": str(port), "PHOTOCRAFT_TRUSTED_PROXIES": "127.0.0.1/32", **env}
    log = open(ROOT / "var" / "log" / f"{command}-abuse-test.log", "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([Path(sys.executable).parent / command], env=environment, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, f"{command} exited; see var/log/{command}-abuse-test.log"
            time.sleep(0.5)  # a poll of a starting server: nothing to inject a clock into
        else:
            raise AssertionError(f"{command} did not start on {port}")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.fixture(scope="module")
def gateway_replica():
    with own_service("photocraft-gateway", GATEWAY_PORT, PHOTOCRAFT_RATE_LIMIT_PER_IP=f"{PER_MINUTE}/minute",
                     PHOTOCRAFT_RATE_LIMIT_PER_KEY=f"{PER_MINUTE}/minute") as address:
        yield f"http://{address}"


@pytest.fixture(scope="module")
def notifier_replica():
    with own_service("photocraft-notifier", NOTIFIER_PORT, PHOTOCRAFT_CONNECTIONS_PER_IP=str(PER_IP),
                     PHOTOCRAFT_CONNECTIONS_PER_CREDENTIAL=str(PER_CREDENTIAL), PHOTOCRAFT_HEARTBEAT_S="1") as address:
        yield f"ws://{address}"


async def statuses(client: httpx.AsyncClient, count: int, **headers: str) -> list[int]:
    """The statuses of ``count`` reads of jobs that do not exist, one after another."""
    return [(await client.get(f"/v1/jobs/{uuid.uuid4().hex}", headers=headers)).status_code for _ in range(count)]


def assert_rate_limited(response: httpx.Response, who: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/rate-limited" and who in problem["detail"], problem
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_a_burst_over_the_address_limit_gets_429_other_addresses_and_keys_do_not(gateway_replica):
    address, other = documentation_address(), documentation_address()
    key, other_key = tenant_key("abuse-a", "pro"), tenant_key("abuse-b", "pro")
    async with httpx.AsyncClient(base_url=gateway_replica, timeout=30) as client:
        assert 429 not in await statuses(client, PER_MINUTE, **{"X-Forwarded-For": address})
        assert_rate_limited(await client.get("/v1/jobs/x", headers={"X-Forwarded-For": address}), "this address")
        assert 429 not in await statuses(client, 1, **{"X-Forwarded-For": other})
        # A valid API key counts on its own, wherever it comes from; another key is not touched by its burst.
        with_key = {"X-Forwarded-For": address, "Authorization": f"Bearer {key}"}
        assert 429 not in await statuses(client, PER_MINUTE, **with_key)
        assert_rate_limited(await client.get("/v1/jobs/x", headers=with_key), "this API key")
        assert 429 not in await statuses(client, 1, **{**with_key, "Authorization": f"Bearer {other_key}"})
        # An unknown key is no way around the address's limit.
        unknown = {"X-Forwarded-For": address, "Authorization": "Bearer pc_not-a-key"}
        assert_rate_limited(await client.get("/v1/jobs/x", headers=unknown), "this address")


async def test_an_untrusted_clients_forwarded_for_is_ignored(gateway_replica):
    source, other_source = loopback(), loopback()

    def from_address(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=gateway_replica, timeout=30,
                                 transport=httpx.AsyncHTTPTransport(local_address=address))

    async with from_address(source) as client:
        for _ in range(PER_MINUTE):  # each claims another address: all are counted on the source's
            assert 429 not in await statuses(client, 1, **{"X-Forwarded-For": documentation_address()})
        assert_rate_limited(await client.get("/v1/jobs/x", headers={"X-Forwarded-For": documentation_address()}),
                            "this address")
    async with from_address(other_source) as client:
        assert 429 not in await statuses(client, 1)
    async with httpx.AsyncClient(base_url=gateway_replica, timeout=30) as proxy:  # 127.0.0.1, trusted
        assert_rate_limited(await proxy.get("/v1/jobs/x", headers={"X-Forwarded-For": source}), "this address")


async def feed(base: str, key: str, source: str):
    """A tenant feed with ``key`` from ``source``: the open socket once a heartbeat came (admitted),
    or the close code it was refused with."""
    socket = await websockets.connect(f"{base}/v1/events?api_key={key}", local_addr=(source, 0), open_timeout=30)
    try:
        await asyncio.wait_for(socket.recv(), 15)  # a heartbeat every second while admitted
        return socket
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_websockets_over_the_limit_per_address_or_credential_are_closed_with_4429(notifier_replica):
    one, two = loopback(), loopback()
    keys = [tenant_key(f"abuse-ws-{n}", "pro") for n in range(3)]
    admitted = [await feed(notifier_replica, key, one) for key in (keys[0], keys[0], keys[1])]
    try:
        assert all(not isinstance(s, int) for s in admitted), admitted
        assert await feed(notifier_replica, keys[2], one) == 4429  # the address holds PER_IP
        assert await feed(notifier_replica, keys[0], two) == 4429  # the key holds PER_CREDENTIAL
        third = await feed(notifier_replica, keys[2], two)
        assert not isinstance(third, int), third
        admitted.append(third)
        await admitted.pop(0).close()  # one of keys[0]'s: its slot comes free once the notifier sees it go
        async with asyncio.timeout(30):
            while isinstance(again := await feed(notifier_replica, keys[0], two), int):
                assert again == 4429
                await asyncio.sleep(0.2)  # a poll of the notifier noticing the close, bounded by the timeout
        admitted.append(again)
    finally:
        await asyncio.gather(*(s.close() for s in admitted if not isinstance(s, int)))
