"""Stripe's mock server for the billing tests: stripe-mock (built by `make install` into var/bin, started on a
free port of 127.0.0.1), a recording proxy in front of it that can hold an answer back, and the exporter
``photocraft-usage-export`` as a subprocess (test_stripe_export.py, test_billing.py).

stripe-mock is stateless: what was billed is what the proxy saw, and Stripe keeps one event per identifier
(docs/billing.md)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
STRIPE_MOCK = ROOT / "var" / "bin" / "stripe-mock"
EXPORTER = Path(sys.executable).parent / "photocraft-usage-export"
EVENT_NAME = "photocraft_units_test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def stripe_mock(tmp_path):
    """stripe-mock on a free port of 127.0.0.1, HTTP only; its base URL. Stopped afterwards."""
    if not STRIPE_MOCK.is_file():
        pytest.fail(f"{STRIPE_MOCK} is missing: `make install` builds it", pytrace=False)
    base = f"http://127.0.0.1:{free_port()}"
    with open(tmp_path / "stripe-mock.log", "wb") as log:
        process = await asyncio.create_subprocess_exec(str(STRIPE_MOCK), "-http-addr", base.removeprefix("http://"),
                                                       stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=base, auth=("sk_test_probe", "")) as client:
            deadline = time.monotonic() + 30
            while True:
                assert process.returncode is None, (tmp_path / "stripe-mock.log").read_text()
                try:
                    (await client.get("/v1/billing/meters")).raise_for_status()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "stripe-mock did not answer within 30 s"
                    await asyncio.sleep(0.1)
        yield base
    finally:
        process.terminate()
        await process.wait()


class Recorder:
    """A proxy in front of stripe-mock: records each request's form fields (with ``path``), forwards it, and
    holds stripe-mock's answer to request number ``hold_at`` (1-based), or to the first request after which
    ``hold_when(sent)`` is true, until ``release`` is set."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.sent, self.hold_at, self.hold_when = upstream, [], None, None
        self.holding, self.release = asyncio.Event(), asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.sent.append({"path": f"{request.method} {request.path}", **dict(parse_qsl(body.decode()))})
        number = len(self.sent)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type", "stripe-version", "idempotency-key")}
        async with httpx.AsyncClient(base_url=self.upstream) as client:
            answer = await client.request(request.method, request.path_qs, content=body, headers=headers)
        if number == self.hold_at or (self.hold_when and not self.holding.is_set() and self.hold_when(self.sent)):
            # Stripe took it; the exporter does not know yet
            self.holding.set()
            await self.release.wait()
        return web.Response(status=answer.status_code, body=answer.content, content_type="application/json")

    def identifiers(self) -> Counter:
        return Counter(sent["identifier"] for sent in self.sent)


@pytest.fixture
async def recorder(stripe_mock):
    proxy = Recorder(stripe_mock)
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield proxy
    proxy.release.set()
    await runner.cleanup()


def exporter(url: str, stripe_base: str, *args: str, batch_size: int = 5):
    env = {**os.environ, "PHOTOCRAFT_DATABASE__URL": url, "PHOTOCRAFT_STRIPE__API_KEY": "sk_test_photocraft",
           "PHOTOCRAFT_STRIPE__API_BASE": stripe_base, "PHOTOCRAFT_STRIPE__METER_EVENT_NAME": EVENT_NAME,
           "PHOTOCRAFT_STRIPE__BATCH_SIZE": str(batch_size), "PHOTOCRAFT_STRIPE__MAX_NETWORK_RETRIES": "0",
           "PHOTOCRAFT_LOG_FORMAT": "text"}
    return asyncio.create_subprocess_exec(str(EXPORTER), *(args or ("--once",)), env=env,
                                          stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
