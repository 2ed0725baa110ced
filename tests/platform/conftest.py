"""Fixtures for tests against the running platform (``make up``): real Kafka,
Redis, SeaweedFS, Triton and every service, all on 127.0.0.1."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from skimage import data as samples

from photocraft_common.database import make_engine
from photocraft_common.kafka import connection_kwargs
from photocraft_common.redis_client import make_redis
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import make_client

from .helpers import GATEWAY, tenant_key
from .stripe_billing import recorder, stripe_mock  # noqa: F401 (fixtures: Stripe's mock server, test_*billing/stripe*)


@pytest.fixture(scope="session")
def settings() -> PlatformSettings:
    return PlatformSettings()


@pytest.fixture(scope="session", autouse=True)
def platform_is_up() -> None:
    try:
        httpx.get(f"{GATEWAY}/readyz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"the platform is not running ({exc!r}); start it with `make up`", pytrace=False)


@pytest.fixture(scope="session")
def s3(settings):
    return make_client(settings.s3)


@pytest.fixture
async def admin(settings):
    """A Kafka admin client of the local broker."""
    client = AIOKafkaAdminClient(**connection_kwargs(settings.kafka))
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def engine(settings):
    """An engine of the platform's PostgreSQL (the usage ledger, accounts)."""
    engine = make_engine(settings.database)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis(settings):
    """A client of the platform's Redis."""
    client = make_redis(settings.redis)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def api_key() -> str:
    """An enterprise tenant's API key (no daily quota), made with the real admin tool."""
    return tenant_key("tests", "enterprise")


@pytest.fixture
async def gateway(api_key):
    """A client of the gateway that sends the test tenant's API key."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30, headers=headers) as client:
        yield client


@pytest.fixture
async def anonymous():
    """A client of the gateway without any credentials."""
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut: a 512x512 RGB portrait (NASA, public domain)."""
    return samples.astronaut()


