"""Nothing of a job outlives its lifetime: real jobs and a batch through the platform, every object of
them in the expiry index with its job's deadline, presigned URLs that end with it; then their lifetime
shortened (their index entries moved to the epoch) and a janitor pass run here with its clock there:
S3 and Redis hold nothing of them, and GET answers 410 to their credentials, 404 to anyone else. Then
what the notifier and the scheduler write: presigned URLs in WebSocket and partner events end with the
job, the tenant log drops events once their jobs expire, and late writes after a purge leave no key."""

from __future__ import annotations

import asyncio
import calendar
import json
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import websockets
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from photocraft_common.batches import BatchStore, batch_keys
from photocraft_common.contracts import Completed, JobEvent, ObjectRef, Progress, new_id, now
from photocraft_common.expiry import ExpiryIndex, batch_entry, job_entry, object_entry
from photocraft_common.jobs import JobStore, job_key, tombstone_key
from photocraft_common.storage import tenant_prefix
from photocraft_common.topics import JOB_EVENTS, PARTNER_EVENTS
from photocraft_janitor.janitor import purge_due
from photocraft_notifier.eventlog import TENANT_LOGS, TRIM_INTERVAL_S, tenant_stream
from photocraft_scheduler.stages import StageStore

from .helpers import GATEWAY, events_until, events_while, fresh, listed, png_bytes, submit, tenant_key
from .test_partners import register_partner

EPOCH = 1.0  # the shortened deadline: the janitor's clock says the lifetime ended then


def batch_done(events: list[dict]) -> bool:
    last = events[-1]
    return last["type"] == "batch_progress" and last["done"] + last["failed"] == last["total"]


def expires_in(url: str) -> int:
    return int(parse_qs(urlparse(url).query)["X-Amz-Expires"][0])


async def test_nothing_of_a_job_is_left_after_its_lifetime(settings, s3, redis, astronaut):
    tenant, bucket = f"life-{new_id()[:10]}", settings.s3.bucket
    owner, stranger = tenant_key(tenant, "pro"), tenant_key(f"stranger-{new_id()[:10]}", "pro")
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        as_owner = {"Authorization": f"Bearer {owner}"}
        photo = png_bytes(fresh(astronaut[::2, ::2]))
        job = (await submit(client, photo, headers=as_owner)).json()
        batch = (await client.post("/v1/batches", data={"operation": "remove-background"}, headers=as_owner,
                                   files=[("files", ("p.png", png_bytes(fresh(astronaut[::4, ::4]))))])).json()
        assert (await events_until(job))[-1]["type"] == "completed"
        again = (await submit(client, photo, headers=as_owner)).json()  # the same upload: its results reused
        assert (await events_until(again))[-1]["type"] == "completed"
        await events_while(batch, lambda events: not batch_done(events))
        jobs = {j["job_id"]: j["token"] for j in (job, again, *batch["jobs"])}

        # Every object of the tenant is in the index, due no later than the last of its jobs' deadlines.
        store, index = JobStore(redis, settings.job_ttl_s), ExpiryIndex(redis, settings.job_ttl_s)
        records = {job_id: await store.get(job_id) for job_id in jobs}
        for record in records.values():
            assert record.expires_at == pytest.approx(record.created_at + settings.job_ttl_s, abs=0.01)
            assert await index.job_deadline(record.job_id) == record.expires_at
        prefix = tenant_prefix(settings.required_keyring(), tenant) + "/"
        objects = listed(s3, bucket, prefix)
        kinds = {key.split("/")[2] if key.split("/")[1] in jobs else key.split("/")[1] for key in objects}
        assert {"input", "cache"} <= kinds, objects  # the uploads, and results later jobs may reuse
        dues = await index.dues([object_entry(bucket, key) for key in objects])
        first = min(r.created_at for r in records.values()) + settings.job_ttl_s
        last = max(r.expires_at for r in records.values())
        assert all(due is not None and first - 5 <= due <= last for due in dues), dict(zip(objects, dues, strict=True))
        # The results the later job reused now go at its deadline, not the first job's.
        reused = [ref.key for ref in records[again["job_id"]].results]
        assert reused and all("/cache/" in key for key in reused)
        assert await index.dues([object_entry(bucket, key) for key in reused]) == \
            [records[again["job_id"]].expires_at] * len(reused)
        for job_id in jobs:
            assert len([k for k in objects if k.startswith(f"{prefix}{job_id}/")]) >= 1
            assert await redis.exists(*[job_key(job_id) + s for s in ("", ":stages", ":outputs", ":events")]) == 4

        # A presigned URL ends with its job: 2 minutes left, a URL valid for at most 2 minutes.
        await redis.hset(job_key(job["job_id"]), "expires_at", time.time() + 120)
        view = (await client.get(f"/v1/jobs/{job['job_id']}", headers={"Authorization": f"Bearer {job['token']}"}))
        url = view.json()["result_url"]
        assert 0 < expires_in(url) <= 120 and httpx.get(url, timeout=30).status_code == 200

        # The lifetime shortened: every entry of the tenant's jobs due at the epoch; a pass with that clock.
        members = ([object_entry(bucket, key) for key in objects] + [job_entry(j) for j in jobs]
                   + [batch_entry(batch["batch_id"])])
        await redis.zadd(index.key, dict.fromkeys(members, EPOCH), xx=True)
        report = await purge_due(index, s3, now=EPOCH)

        assert report.failed == [] and await index.dues(members) == [None] * len(members)
        assert listed(s3, bucket, prefix) == []
        assert httpx.get(url, timeout=30).status_code != 200
        for record_id in [*jobs, batch["batch_id"]]:
            assert [key async for key in redis.scan_iter(match=f"{job_key(record_id)}*")] == []
        assert await redis.exists(*batch_keys(batch["batch_id"])) == 0
        assert await redis.exists(*[tombstone_key("job", j) for j in jobs]) == len(jobs)

        # Gone: 410 to whoever could open it, 404 to anyone else.
        for job_id, token in jobs.items():
            for credential in (token, owner):
                gone = await client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {credential}"})
                assert gone.status_code == 410, gone.text
                assert gone.headers["content-type"] == "application/problem+json"
                assert gone.json()["type"] == "/problems/job-expired"
            other = await client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {stranger}"})
            assert other.status_code == 404 and other.json()["type"] == "/problems/job-not-found"
        batch_url = f"/v1/batches/{batch['batch_id']}"
        gone = await client.get(batch_url, headers={"Authorization": f"Bearer {batch['token']}"})
        assert gone.status_code == 410 and gone.json()["type"] == "/problems/batch-expired"
        other = await client.get(batch_url, headers={"Authorization": f"Bearer {stranger}"})
        assert other.status_code == 404 and other.json()["type"] == "/problems/batch-not-found"


# ---- what the notifier and the scheduler write ends with the job (issue 12, item 1) ----------------------

def url_ends(url: str) -> float:
    """When a presigned URL stops working, Unix s: X-Amz-Date + X-Amz-Expires."""
    query = parse_qs(urlparse(url).query)
    return calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")) + expires_in(url)


async def send(settings, *events: JobEvent, key: str | None = None) -> None:
    """Publish ``events`` on the job events topic, as the scheduler does (keyed by ``key`` or the job id)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(JOB_EVENTS, event.SerializeToString(), key=(key or event.job_id).encode())
    finally:
        await producer.stop()


async def first_message(url: str, wanted, timeout_s: float = 60) -> dict:
    """The first message from the WebSocket ``url`` for which ``wanted(message)`` is true."""
    async with asyncio.timeout(timeout_s), websockets.connect(url) as socket:
        async for raw in socket:
            if wanted(message := json.loads(raw)):
                return message
    raise AssertionError(f"{url} closed first")


async def test_urls_in_websocket_and_partner_events_end_with_the_job(settings, redis):
    tenant, job_id, token = register_partner("pro"), new_id(), new_id()
    await JobStore(redis, 120).create(job_id, tenant, "remove-background", "{}", None, token, "pro", "standard")
    deadline = (await JobStore(redis, settings.job_ttl_s).get(job_id)).expires_at  # 2 minutes from now
    ref = ObjectRef(bucket=settings.s3.bucket, key=f"p/{job_id}/stages/segment.png", role="image")
    partner = AIOKafkaConsumer(PARTNER_EVENTS.format(tenant=tenant), auto_offset_reset="earliest",
                               bootstrap_servers=settings.kafka.bootstrap_servers, group_id=f"{tenant}-test")
    await partner.start()
    try:
        await send(settings, JobEvent(event_id=new_id(), job_id=job_id, tenant_id=tenant, time=now(),
                                      completed=Completed(results=[ref])))
        message = await first_message(f"ws://127.0.0.1:8081/v1/jobs/{job_id}/events?token={token}",
                                      lambda m: m["type"] == "completed")
        async with asyncio.timeout(60):
            async for record in partner:
                if (event := JobEvent.FromString(record.value)).job_id == job_id:
                    break
    finally:
        await partner.stop()
    urls = [message["result_url"], message["results"][0]["url"], event.completed.results[0].url]
    assert all(expires_in(url) <= 120 and url_ends(url) <= deadline + 1 for url in urls), urls  # not 6 h


async def test_the_tenant_log_drops_events_once_their_jobs_expire(settings, redis):
    busy, idle = f"busy-{new_id()[:10]}", f"idle-{new_id()[:10]}"
    expired = str(time.time() - 10)  # the deadline of old entries, written here as the notifier writes them
    for tenant in (busy, idle):
        old = JobEvent(event_id=new_id(), job_id=new_id(), tenant_id=tenant, time=now(), progress=Progress())
        for cursor in range(1, 6):
            await redis.xadd(tenant_stream(tenant), {"event": old.SerializeToString(), "seq": cursor,
                                                     "expires": expired}, id=f"0-{cursor}")
        await redis.set(f"photocraft:tenant:{tenant}:event-seq", 5, ex=3600)
        await redis.expire(tenant_stream(tenant), 3600)
    await redis.zadd(TENANT_LOGS, {tenant_stream(idle): float(expired)})

    # A new event of the busy tenant: the old ones go when it is logged; its cursor goes on from 5.
    fresh_event = JobEvent(event_id=new_id(), job_id=new_id(), tenant_id=busy, time=now(), progress=Progress())
    await send(settings, fresh_event)
    message = await first_message(f"ws://127.0.0.1:8081/v1/events?api_key={tenant_key(busy, 'pro')}&after=0",
                                  lambda m: "cursor" in m)
    assert (message["job_id"], message["cursor"]) == (fresh_event.job_id, 6)
    assert [entry_id for entry_id, _ in await redis.xrange(tenant_stream(busy))] == [b"0-6"]

    # The idle tenant's log goes in the notifier's periodic pass (every TRIM_INTERVAL_S), with its index entry.
    async with asyncio.timeout(TRIM_INTERVAL_S + 30):
        while await redis.exists(tenant_stream(idle)):
            await asyncio.sleep(1)  # a poll, bounded by the timeout
    assert await redis.zscore(TENANT_LOGS, tenant_stream(idle)) is None


async def test_late_writes_after_a_purge_leave_no_key_behind(settings, s3, redis):
    tenant, job_id, batch_id, marker = f"late-{new_id()[:10]}", new_id(), new_id(), new_id()
    jobs, batches = JobStore(redis, settings.job_ttl_s), BatchStore(redis, settings.job_ttl_s)
    stages = StageStore(redis, settings.job_ttl_s)
    await batches.create(batch_id, tenant, "remove-background", [job_id], "batch-token")
    await jobs.create(job_id, tenant, "remove-background", "{}", None, "token", "pro", "standard", batch_id)
    await stages.set_state(job_id, "segment", "queued:1")
    await send(settings, JobEvent(event_id=new_id(), job_id=job_id, tenant_id=tenant, time=now(),
                                  progress=Progress()))
    async with asyncio.timeout(60):
        while not await redis.exists(f"{job_key(job_id)}:events"):
            await asyncio.sleep(0.2)  # a poll until the notifier logged it, bounded by the timeout
    owned = [k async for k in redis.scan_iter(match=f"photocraft:*{job_id}*") if b"tombstone" not in k]
    assert owned and all(0 < ttl <= settings.job_ttl_s * 1000 for ttl in [await redis.pttl(k) for k in owned])

    index = ExpiryIndex(redis, settings.job_ttl_s)
    await redis.zadd(index.key, dict.fromkeys([job_entry(job_id), batch_entry(batch_id)], EPOCH), xx=True)
    assert (await purge_due(index, s3, now=EPOCH)).failed == []

    # Whatever comes late writes nothing: the scheduler's batch count and stage state, the notifier's event
    # (followed, on the same partition, by a marker event of a job never recorded, to know it was handled).
    assert await batches.job_ended(batch_id, job_id, succeeded=True) is None
    assert not await stages.set_state(job_id, "segment", "done")
    await send(settings, JobEvent(event_id=new_id(), job_id=job_id, tenant_id=tenant, time=now(),
                                  progress=Progress()),
               JobEvent(event_id=new_id(), job_id=marker, tenant_id=tenant, time=now(), progress=Progress()),
               key=job_id)
    async with asyncio.timeout(60):
        while not await redis.exists(f"{job_key(marker)}:events"):
            await asyncio.sleep(0.2)  # a poll until the notifier logged the marker, bounded by the timeout
    for record_id in (job_id, batch_id):
        assert [k async for k in redis.scan_iter(match=f"photocraft:*{record_id}*") if b"tombstone" not in k] == []
    assert all(ttl > 0 for ttl in [await redis.pttl(k) async for k in redis.scan_iter(match=f"photocraft:*{marker}*")])
