"""Cross-tenant probes on the running platform: every gateway route that takes an id (listed from the app) and
every notifier feed (listed from its router) answers another tenant's credentials exactly as it answers an id
that does not exist (404 problem+json, close code 4404), so that no refusal confirms that a job exists; forged
device tokens open nothing; the tenant feed carries only the caller's own jobs; and result URLs and S3 keys name
no tenant or device."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import httpx
import numpy as np
import pytest
import websockets
from fastapi.routing import APIWebSocketRoute
from itsdangerous import URLSafeTimedSerializer

from photocraft_common.contracts import new_id
from photocraft_common.keyring import Keyring
from photocraft_common.storage import tenant_prefix
from photocraft_gateway.app import create_app
from photocraft_notifier.routes import router as notifier_router

from ..routes import id_routes, kind_of
from .helpers import GATEWAY, events_until, fresh, png_bytes, submit, tenant_key

NOTIFIER = "ws://127.0.0.1:8081"
UNKNOWN = "f" * 32  # an id that no job or batch has


def own_ip() -> dict[str, str]:
    """A client address of its own (its own anonymous daily quota); the local stack trusts 127.0.0.1's
    X-Forwarded-For."""
    return {"X-Forwarded-For": f"10.{os.urandom(1)[0]}.{os.urandom(1)[0]}.{os.urandom(1)[0]}"}


def device_id(token: str) -> str:
    """The device id inside a device token ``<kid>.<payload>.<time>.<signature>`` (its payload is not secret)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def forged_device_tokens(kid: str, victim: str) -> list[str]:
    """Tokens for the device ``victim`` that someone without the keyring could make: signed with the secret
    that used to be in the source, with a keyring of their own under the real key id, or unsigned."""
    old_default = URLSafeTimedSerializer("photocraft-local-development-only", salt="photocraft-device")
    guess = Keyring.generate(kid)
    own = URLSafeTimedSerializer(guess.keys[kid].get_secret_value(), salt="photocraft-device")
    return [old_default.dumps(victim), f"{kid}.{old_default.dumps(victim)}", f"{kid}.{own.dumps(victim)}",
            f"{kid}.{victim}", "forged"]


@pytest.fixture(scope="module")
async def owner(astronaut):
    """Tenant A's API key, a job and a batch of A's, and an anonymous device's job (with its token)."""
    tenant = f"xt-{new_id()[:10]}"
    key = tenant_key(tenant, "pro")
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        headers = {"Authorization": f"Bearer {key}"}
        job = await submit(client, png_bytes(fresh(astronaut)), headers=headers)
        batch = await client.post("/v1/batches", data={"operation": "remove-background"}, headers=headers,
                                  files=[("files", ("p.png", png_bytes(fresh(astronaut[::4, ::4]))))])
        device = await submit(client, png_bytes(fresh(astronaut[::2, ::2])), headers=own_ip())
    for response in (job, batch, device):
        assert response.status_code == 202, response.text
    return {"tenant": tenant, "key": key, "job": job.json(), "batch": batch.json(), "device_job": device.json(),
            "device_token": device.headers["x-device-token"]}


@pytest.fixture(scope="module")
async def strangers(owner) -> dict[str, dict[str, str]]:
    """Credentials of others, by what they are, as headers: another tenant's key, another device's token,
    another job's token, an unknown key, and device tokens forged for the owner's device."""
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        other = await submit(client, png_bytes(np.full((32, 32, 3), 128, np.uint8)), headers=own_ip())
    assert other.status_code == 202, other.text
    token = owner["device_token"]
    forged = forged_device_tokens(token.split(".")[0], device_id(token))
    return {"another tenant's key": {"Authorization": f"Bearer {tenant_key(f'xt-other-{new_id()[:8]}', 'pro')}"},
            "another device": {"X-Device-Token": other.headers["x-device-token"]},
            "another job's token": {"Authorization": f"Bearer {other.json()['token']}"},
            "an unknown key": {"Authorization": "Bearer pc_unknown"},
            **{f"forged device token {n}": {"X-Device-Token": t} for n, t in enumerate(forged)}}


def targets(owner: dict, kind: str) -> list[str]:
    return {"job": [owner["job"]["job_id"], owner["device_job"]["job_id"]], "batch": [owner["batch"]["batch_id"]]}[kind]


def same_problem(response: httpx.Response, unknown: httpx.Response, who: str) -> None:
    """``response`` (to ``who``) is the problem an unknown id gets, but for the id it names."""
    assert response.status_code == 404, (who, response.request.method, response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body, expected = response.json(), unknown.json()
    assert {k: v for k, v in body.items() if k not in ("detail", "instance")} == \
        {k: v for k, v in expected.items() if k not in ("detail", "instance")}
    assert body["detail"] == expected["detail"].replace(UNKNOWN, response.request.url.path.rsplit("/", 1)[1])


async def test_every_route_taking_an_id_answers_another_tenant_404_as_for_an_unknown_id(owner, strangers):
    routes = id_routes(create_app())
    assert {path for _, path in routes} == {"/v1/jobs/{job_id}", "/v1/batches/{batch_id}"}
    assert {method for method, _ in routes} == {"GET", "DELETE"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        for method, path in routes:
            kind = kind_of(path)
            unknown = await client.request(method, path.format(job_id=UNKNOWN, batch_id=UNKNOWN),
                                           headers={"Authorization": f"Bearer {owner['key']}"})
            assert unknown.status_code == 404 and unknown.json()["type"] == f"/problems/{kind}-not-found"
            for target in targets(owner, kind):
                url = path.format(job_id=target, batch_id=target)
                for who, headers in strangers.items():  # each from an address of its own: no rate limit hit
                    same_problem(await client.request(method, url, headers=headers | own_ip()), unknown, who)
                missing, missing_unknown = await client.request(method, url), await client.request(
                    method, path.format(job_id=UNKNOWN, batch_id=UNKNOWN))
                assert missing.status_code == missing_unknown.status_code == 401
                assert missing.json() | {"instance": ""} == missing_unknown.json() | {"instance": ""}

        # The owners still read their records, and no refused DELETE cancelled anything.
        for job, headers in ((owner["job"], {"Authorization": f"Bearer {owner['key']}"}),
                             (owner["device_job"], {"X-Device-Token": owner["device_token"]})):
            assert (await client.get(f"/v1/jobs/{job['job_id']}", headers=headers)).status_code == 200
            assert (await events_until(job))[-1]["type"] == "completed"
        batch = await client.get(f"/v1/batches/{owner['batch']['batch_id']}",
                                 headers={"Authorization": f"Bearer {owner['batch']['token']}"})
        assert batch.status_code == 200 and "cancelled" not in batch.json()["jobs"].values()


async def close_code(url: str, headers: dict[str, str] | None = None) -> int:
    """The code the notifier closes ``url`` with, before it sends any message."""
    async with websockets.connect(url, additional_headers=headers) as socket:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)
        return socket.close_code


def feeds() -> list[str]:
    paths = [route.path for route in notifier_router.routes if isinstance(route, APIWebSocketRoute)]
    assert set(paths) == {"/v1/jobs/{job_id}/events", "/v1/batches/{batch_id}/events", "/v1/events"}, \
        f"a new feed: probe it here too ({paths})"
    return paths


async def test_every_record_feed_closes_4404_for_another_tenant_as_for_an_unknown_id(owner, strangers):
    for path in [p for p in feeds() if "{" in p]:
        kind = kind_of(path)
        unknown = path.format(job_id=UNKNOWN, batch_id=UNKNOWN)
        assert await close_code(f"{NOTIFIER}{unknown}", {"Authorization": f"Bearer {owner['key']}"}) == 4404
        assert await close_code(f"{NOTIFIER}{unknown}") == 4401  # no credential: before looking it up
        for target in targets(owner, kind):
            url = f"{NOTIFIER}{path.format(job_id=target, batch_id=target)}"
            for who, headers in strangers.items():
                assert await close_code(url, headers) == 4404, who
                query = ({"token": headers["Authorization"].removeprefix("Bearer ")} if "Authorization" in headers
                         else {"device_token": headers["X-Device-Token"]})
                assert await close_code(f"{url}?{httpx.QueryParams(query)}") == 4404, who
            assert await close_code(url) == 4401


async def test_the_tenant_feed_carries_only_the_callers_jobs_and_refuses_forged_tokens(owner, strangers, astronaut):
    assert "/v1/events" in feeds()
    for who in [w for w in strangers if w.startswith("forged") or w == "an unknown key"]:
        assert await close_code(f"{NOTIFIER}/v1/events", strangers[who]) == 4401, who  # no tenant at all

    # Another tenant follows its feed from the start while A's jobs ran before its own: only its own arrive.
    key = tenant_key(f"xt-b-{new_id()[:8]}", "pro")
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        mine = await submit(client, png_bytes(fresh(astronaut[::4, ::4])), headers={"Authorization": f"Bearer {key}"})
    assert mine.status_code == 202, mine.text
    job_id, seen = mine.json()["job_id"], []
    async with asyncio.timeout(120), websockets.connect(f"{NOTIFIER}/v1/events",
                                                        additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] != "heartbeat":
                seen.append(message)
                if message["type"] in ("completed", "failed", "cancelled"):
                    break
    assert seen and {m["job_id"] for m in seen} == {job_id} and seen[-1]["type"] == "completed"


async def test_result_urls_and_object_keys_name_no_tenant_or_device(owner, s3, settings):
    device = device_id(owner["device_token"])
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        await events_until(owner["job"])
        await events_until(owner["device_job"])
        views = [(await client.get(f"/v1/jobs/{job['job_id']}", headers=headers)).json() for job, headers in (
            (owner["job"], {"Authorization": f"Bearer {owner['key']}"}),
            (owner["device_job"], {"X-Device-Token": owner["device_token"]}))]
    urls = [r["url"] for view in views for r in view["results"]]
    assert len(urls) >= 2 and all(view["status"] == "completed" for view in views)
    for url in urls:
        assert owner["tenant"] not in url and device not in url and "device-" not in url, url
        assert httpx.get(url, timeout=30).status_code == 200
    # The uploads: under each owner's opaque prefix, which names neither.
    keyring = settings.required_keyring()
    for job, tenant in ((owner["job"], owner["tenant"]), (owner["device_job"], f"device-{device}")):
        prefix = tenant_prefix(keyring, tenant)
        assert tenant not in prefix and device not in prefix
        listed = s3.list_objects_v2(Bucket=settings.s3.bucket, Prefix=f"{prefix}/{job['job_id']}/input/")
        assert [o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])] == ["original.png"]
