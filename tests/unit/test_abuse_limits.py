"""Abuse limits without anything running: which client a request comes from (trusted proxies, through
uvicorn's own configuration path), the gateway's rate limits (ratelimit.py, the `limits` library's Lua
scripts on fakeredis) and the notifier's connection limits (limits.py, its Lua script on fakeredis,
leases moved by an injected clock)."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

import pytest
import uvicorn
from fakeredis import FakeAsyncRedis, FakeServer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from photocraft_common.keyring import Keyring
from photocraft_common.settings import PlatformSettings
from photocraft_common.tiers import Tier
from photocraft_gateway.ratelimit import RateLimitMiddleware, RateLimits, retry_after
from photocraft_gateway.settings import RATE_LIMITS, GatewaySettings
from photocraft_notifier.limits import CLOSE_CODE, REASONS, Connections
from photocraft_notifier.settings import CONNECTION_LIMITS, NotifierSettings

from .fake_accounts import MemoryAccounts

KEYRING = Keyring.generate("k1")


@pytest.fixture
def environ(monkeypatch):
    """A clean PHOTOCRAFT_* environment with secrets of its own (so production starts); returns a setter."""
    for name in list(os.environ):
        if name.startswith("PHOTOCRAFT_"):
            monkeypatch.delenv(name)
    for name, value in {"PHOTOCRAFT_KEYRING": KEYRING.to_json(), "PHOTOCRAFT_S3__ACCESS_KEY_ID": "own-key",
                        "PHOTOCRAFT_S3__SECRET_ACCESS_KEY": "own-secret"}.items():
        monkeypatch.setenv(name, value)
    return lambda **values: [monkeypatch.setenv(k, v) for k, v in values.items()]


@pytest.fixture
def redis():
    return FakeAsyncRedis(server=FakeServer())


# -- trusted proxies ------------------------------------------------------------------------------------------


def test_trusted_proxies_default_by_profile(environ):
    assert PlatformSettings().trusted_proxies == ["127.0.0.1/32"]
    assert PlatformSettings(profile="production").trusted_proxies == []


def test_trusted_proxies_from_the_environment(environ):
    environ(PHOTOCRAFT_TRUSTED_PROXIES="10.42.0.0/16, 192.0.2.7,2001:db8::/32")
    assert PlatformSettings().trusted_proxies == ["10.42.0.0/16", "192.0.2.7/32", "2001:db8::/32"]
    environ(PHOTOCRAFT_TRUSTED_PROXIES="")  # set but empty: none, even in the local profile
    assert PlatformSettings().trusted_proxies == []


@pytest.mark.parametrize("value", ["*", "10.0.0.1/8", "proxy.example.com", "10.0.0.0/33"])
def test_a_trusted_proxy_must_be_an_address_or_network(environ, value):
    environ(PHOTOCRAFT_TRUSTED_PROXIES=f"10.0.0.0/8,{value}")
    with pytest.raises(ValidationError, match="PHOTOCRAFT_TRUSTED_PROXIES"):
        PlatformSettings()


def client_seen(trusted: list[str], peer: str, forwarded_for: str | None) -> str:
    """The client address an app sees when uvicorn is configured as main.py configures it."""
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["client"][0])

    config = uvicorn.Config(app, proxy_headers=True, forwarded_allow_ips=trusted, log_config=None)
    config.load()
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for is not None else []
    scope = {"type": "http", "client": (peer, 50000), "headers": headers, "scheme": "http"}
    asyncio.run(config.loaded_app(scope, None, None))
    return seen[0]


@pytest.mark.parametrize(("peer", "chain", "client"), [
    ("127.0.0.1", "198.51.100.9", "198.51.100.9"),  # a trusted proxy's client
    ("127.0.0.1", "198.51.100.9, 10.42.3.4", "198.51.100.9"),  # through two trusted proxies
    ("127.0.0.1", "6.6.6.6, 198.51.100.9, 10.42.3.4", "198.51.100.9"),  # the client's own claim is not believed
    ("203.0.113.5", "198.51.100.9", "203.0.113.5"),  # an untrusted peer's header is ignored
    ("127.0.0.1", None, "127.0.0.1"),  # no header: the proxy itself
])
def test_the_client_is_the_rightmost_untrusted_address(environ, peer, chain, client):
    environ(PHOTOCRAFT_TRUSTED_PROXIES="127.0.0.1/32,10.42.0.0/16")
    assert client_seen(PlatformSettings().trusted_proxies, peer, chain) == client


def test_production_believes_no_forwarded_header(environ):
    trusted = PlatformSettings(profile="production").trusted_proxies
    assert client_seen(trusted, "127.0.0.1", "198.51.100.9") == "127.0.0.1"


# -- the gateway's rate limits --------------------------------------------------------------------------------


def test_rate_limits_default_by_profile_and_are_checked(environ):
    assert (GatewaySettings().rate_limit_per_ip, GatewaySettings().rate_limit_per_key) == RATE_LIMITS["local"]
    production = GatewaySettings(profile="production")
    assert (production.rate_limit_per_ip, production.rate_limit_per_key) == RATE_LIMITS["production"]
    environ(PHOTOCRAFT_RATE_LIMIT_PER_KEY="5 per minute")
    assert GatewaySettings().rate_limit_per_key == "5 per minute"
    environ(PHOTOCRAFT_RATE_LIMIT_PER_IP="many")
    with pytest.raises(ValidationError, match="PHOTOCRAFT_RATE_LIMIT_PER_IP"):
        GatewaySettings()


def test_retry_after_is_whole_seconds_at_least_one():
    assert [retry_after(100.0, now) for now in (40.0, 99.2, 100.0, 130.0)] == [60, 1, 1, 1]
    assert retry_after(100.5, 98.0) == 3


async def test_a_burst_over_the_address_limit_is_refused_others_are_not(redis):
    limits = RateLimits(redis, MemoryAccounts(KEYRING), "3/minute;100/hour", "5/minute", clock=lambda: 0.0)
    assert [await limits.hit("ip", "198.51.100.1") for _ in range(3)] == [None] * 3
    refusal = await limits.hit("ip", "198.51.100.1")
    assert refusal is not None and refusal.limit == "3 per 1 minute" and refusal.kind == "ip"
    assert refusal.retry_after_s > 60  # the clock says 1970: the window ends far after it
    assert await limits.hit("ip", "198.51.100.2") is None  # another address
    assert await limits.hit("key", "198.51.100.1") is None  # the same id as a key is another counter


async def test_retry_after_counts_from_the_oldest_request(redis):
    limits = RateLimits(redis, MemoryAccounts(KEYRING), "1/minute", "1/minute")
    assert await limits.hit("ip", "a") is None
    refusal = await limits.hit("ip", "a")
    assert refusal is not None and 59 <= refusal.retry_after_s <= 60


async def test_the_client_is_a_valid_key_else_the_address(redis):
    accounts = MemoryAccounts(KEYRING)
    key = await accounts.create_key("acme", Tier.PRO)
    limits = RateLimits(redis, accounts, "1/minute", "1/minute")

    def request(**headers):
        return SimpleNamespace(headers={k.lower(): v for k, v in headers.items()},
                               client=SimpleNamespace(host="198.51.100.7"))

    kind, client = await limits.client(request(Authorization=f"Bearer {key}"))
    assert kind == "key" and len(client) == 64 and key not in client  # its sha256, never the key
    for headers in ({}, {"Authorization": "Bearer pc_unknown"}, {"Authorization": f"Basic {key}"},
                    {"X-Device-Token": "anything"}):
        assert await limits.client(request(**headers)) == ("ip", "198.51.100.7")


def limited_app(redis: Redis, per_ip: str) -> TestClient:
    app = FastAPI()
    app.state.platform = SimpleNamespace(rate_limits=RateLimits(redis, MemoryAccounts(KEYRING), per_ip, "9/minute"))
    app.add_middleware(RateLimitMiddleware)
    app.add_api_route("/v1/ping", lambda: {"pong": True})
    app.add_api_route("/healthz", lambda: {"ok": True})
    return TestClient(app)


def test_the_middleware_answers_429_problems_with_retry_after(redis):
    client = limited_app(redis, "2/minute")
    assert [client.get("/v1/ping").status_code for _ in range(2)] == [200, 200]
    refused = client.get("/v1/ping")
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/rate-limited" and "2 per 1 minute" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert [client.get("/healthz").status_code for _ in range(3)] == [200] * 3  # only /v1/ is limited


def test_the_middleware_answers_503_when_redis_is_away():
    away = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    client = limited_app(away, "2/minute")
    answer = client.get("/v1/ping")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["type"] == "/problems/queue-unavailable"


# -- the notifier's connection limits -------------------------------------------------------------------------


def test_connection_limits_default_by_profile(environ):
    for profile in ("local", "production"):
        settings = NotifierSettings(profile=profile)
        assert (settings.connections_per_ip, settings.connections_per_credential) == CONNECTION_LIMITS[profile]
    environ(PHOTOCRAFT_CONNECTIONS_PER_IP="3")
    assert NotifierSettings().connections_per_ip == 3
    environ(PHOTOCRAFT_CONNECTIONS_PER_CREDENTIAL="0")
    with pytest.raises(ValidationError, match="connections_per_credential"):
        NotifierSettings()


async def test_connections_per_address_and_per_credential(redis):
    connections = Connections(redis, per_ip=3, per_credential=2)
    assert [await connections.acquire(f"c{n}", "198.51.100.1", key) for n, key in enumerate("aab")] == [None] * 3
    assert await connections.acquire("c3", "198.51.100.1", "c") == REASONS[0]  # the address is full
    assert await connections.acquire("c4", "198.51.100.2", "a") == REASONS[1]  # the credential is full
    assert await connections.acquire("c5", "198.51.100.2", "c") is None  # another address, another credential
    await connections.release("c0")
    assert await connections.acquire("c6", "198.51.100.2", "a") is None  # a slot of "a" came free
    assert connections.held() == 4  # c1, c2, c5, c6


async def test_leases_of_a_dead_process_lapse_and_live_ones_are_renewed(redis):
    now = [1000.0]
    live = Connections(redis, per_ip=1, per_credential=5, lease_s=60, clock=lambda: now[0])
    dead = Connections(redis, per_ip=1, per_credential=5, lease_s=60, clock=lambda: now[0])
    assert await dead.acquire("gone", "198.51.100.1", "k") is None
    assert await live.acquire("held", "198.51.100.2", "k") is None
    now[0] += 50
    await live.renew()  # the dead process renews nothing
    assert await live.acquire("new", "198.51.100.1", "k") == REASONS[0]  # within the dead lease
    now[0] += 20  # the dead lease ended; the renewed one has 40 s left
    assert await live.acquire("new", "198.51.100.1", "k") is None
    assert await live.acquire("other", "198.51.100.2", "k2") == REASONS[0]


class FakeSocket:
    """The two things Connections.admit uses of a WebSocket."""

    def __init__(self, host: str) -> None:
        self.client = SimpleNamespace(host=host)
        self.closed: tuple[int, str] | None = None

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_admit_closes_one_over_the_limit_with_4429_and_releases_on_exit(redis):
    connections = Connections(redis, per_ip=1, per_credential=5)
    first, second = FakeSocket("198.51.100.1"), FakeSocket("198.51.100.1")
    async with connections.admit(first, "k") as admitted:
        assert admitted and first.closed is None
        async with connections.admit(second, "k2") as refused:
            assert not refused and second.closed == (CLOSE_CODE, REASONS[0])
    assert connections.held() == 0
    async with connections.admit(FakeSocket("198.51.100.1"), "k") as admitted:
        assert admitted
