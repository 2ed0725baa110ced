"""What the notifier and the scheduler write about a job ends with it (on fakeredis, clocks injected): event
logs carry and keep the job's deadline, presigned URLs in WebSocket and partner events end by it, the
tenant log drops events as their jobs expire while cursors keep counting, and a late write after a purge
(an event, a batch count, a stage state) recreates nothing. On the platform: tests/platform/test_lifetime.py."""

from __future__ import annotations

import calendar
import time
from urllib.parse import parse_qs, urlparse

import pytest
from fakeredis import FakeAsyncRedis
from faststream.kafka import KafkaBroker, TestKafkaBroker

from photocraft_common.batches import BatchStore, batch_keys
from photocraft_common.contracts import (
    BatchProgress,
    Completed,
    JobEvent,
    ObjectRef,
    Progress,
    TaskOutput,
    now,
    parse,
)
from photocraft_common.expiry import INDEX_KEY, job_entry
from photocraft_common.jobs import JobStore, job_key, job_keys
from photocraft_common.settings import S3Settings
from photocraft_common.storage import ObjectStore
from photocraft_common.tiers import Tier
from photocraft_common.topics import PARTNER_EVENTS
from photocraft_notifier.eventlog import CHANNEL, TENANT_LOGS, EventLog, Logged, job_stream, tenant_stream
from photocraft_notifier.partners import PARTNER_TTL_S, PartnerRelay
from photocraft_notifier.render import render
from photocraft_scheduler.stages import StageStore, outputs_key, stages_key

from .fake_accounts import MemoryAccounts

HOUR = 3600
STORE = ObjectStore(S3Settings(access_key_id="k", secret_access_key="s", presigned_url_expiry_s=6 * HOUR))
REF = ObjectRef(bucket="photocraft", key="p/j1/stages/segment.png", content_type="image/png", role="image")


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def redis():
    return FakeAsyncRedis()


def event(job_id: str, n: int = 0, tenant: str = "acme", **kind) -> JobEvent:
    kind = kind or {"progress": Progress(stage="segment", percent=n)}
    return JobEvent(event_id=f"{job_id}:{n}:{next(iter(kind))}", job_id=job_id, tenant_id=tenant, time=now(), **kind)


def url_ends(url: str) -> float:
    """When a presigned URL stops working, Unix s (X-Amz-Date + X-Amz-Expires)."""
    query = parse_qs(urlparse(url).query)
    signed = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    return signed + int(query["X-Amz-Expires"][0])


async def keys_of(redis, record_id: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"photocraft:*{record_id}*") if b"tombstone" not in key]


async def test_an_event_carries_its_jobs_deadline_to_its_logs_the_live_feed_and_its_urls(redis):
    jobs, log = JobStore(redis, 2 * HOUR), EventLog(redis, 24 * HOUR)
    await jobs.create("j1", "acme", "enhance", "{}", REF, "token", "pro", "standard")
    deadline = (await jobs.get("j1")).expires_at
    async with redis.pubsub() as feed:
        await feed.subscribe(CHANNEL)
        await feed.get_message(timeout=1)  # the subscription's confirmation
        assert await log.append(event("j1", completed=Completed(results=[REF]))) == 1
        live = Logged.from_feed((await feed.get_message(timeout=1))["data"])

    logged = [*await log.job_events("j1", 0), *await log.tenant_events("acme", 0), live]
    assert [item.expires for item in logged] == [pytest.approx(deadline, abs=1e-3)] * 3
    for key in (job_stream("j1"), f"{job_key('j1')}:event-ids", f"{job_key('j1')}:event-seq"):
        assert await redis.pexpiretime(key) == pytest.approx(deadline * 1000, abs=2)  # not a lifetime from now
    message = render(live.seq, live.event, STORE, live.expires)
    assert url_ends(message["result_url"]) <= deadline + 1 < time.time() + 6 * HOUR  # 2 h, not the configured 6
    assert url_ends(render(1, live.event, STORE)["result_url"]) >= time.time() + 6 * HOUR - 2  # unknown: 6 h


async def test_an_event_of_a_purged_or_due_job_or_batch_writes_nothing(redis):
    jobs, batches = JobStore(redis, HOUR), BatchStore(redis, HOUR)
    clock = Clock(time.time())
    log = EventLog(redis, HOUR, clock)
    await jobs.create("j1", "acme", "enhance", "{}", None, "token", "pro", "standard", "b1")
    await batches.create("b1", "acme", "enhance", ["j1"], "token")
    await redis.delete(*job_keys("j1"), *batch_keys("b1"))
    await redis.zrem(INDEX_KEY, "job:j1", "batch:b1")  # purged, as the janitor does: the tombstones are left

    assert await log.append(event("j1", 1)) == -1
    assert await log.append(event("b1", 1, batch_progress=BatchProgress(done=1, total=1))) == -1
    assert await keys_of(redis, "j1") == [] and await keys_of(redis, "b1") == []
    assert not await redis.exists(tenant_stream("acme"))

    await jobs.create("j2", "acme", "enhance", "{}", None, "token", "pro", "standard")
    clock.at += HOUR + 1  # due: the janitor is about to purge it
    assert await log.append(event("j2", 1)) == -1 and not await redis.exists(job_stream("j2"))

    assert await log.append(event("never-recorded", 1)) == 1  # no record, no tombstone: kept a lifetime
    assert (await log.job_events("never-recorded", 0))[0].expires == pytest.approx(clock.at + HOUR)


async def test_the_tenant_log_drops_events_as_their_jobs_expire_and_cursors_keep_counting(redis):
    base = time.time()
    clock = Clock(base)
    log = EventLog(redis, 24 * HOUR, clock)
    for n in range(300):  # job n is logged at base + n and due at base + 1000 + 10 n
        await redis.zadd(INDEX_KEY, {job_entry(f"j{n}"): base + 1000 + 10 * n})
        clock.at = base + n
        await log.append(event(f"j{n}", n))
    await redis.zadd(INDEX_KEY, {job_entry("long"): base + 1050})  # a job that ran long: logged late, due early
    assert await log.append(event("long", 1)) == 1

    clock.at = base + 2501  # jobs 0-150 due
    await redis.zadd(INDEX_KEY, {job_entry("new"): base + 6000})
    assert await log.append(event("new", 1)) == 1
    cursors = [item.cursor for item in await log.tenant_events("acme", 0, count=1000)]
    assert cursors == list(range(152, 303))  # jobs 151-299, "long" (goes with its neighbours), "new"
    assert await redis.zscore(TENANT_LOGS, tenant_stream("acme")) == pytest.approx(base + 2510, abs=1e-3)

    clock.at = base + 4500  # no new event: the periodic pass drops what is due
    assert await log.trim_due() == 1
    assert [item.cursor for item in await log.tenant_events("acme", 0)] == [302]
    clock.at = base + 6001
    assert await log.trim_due() == 1 and await log.trim_due() == 0
    assert not await redis.exists(tenant_stream("acme")) and await redis.zcard(TENANT_LOGS) == 0

    await redis.zadd(INDEX_KEY, {job_entry("later"): base + 9000})
    await log.append(event("later", 1))
    assert [item.cursor for item in await log.tenant_events("acme", 0)] == [303]  # never back to 1


async def test_partner_urls_end_with_the_job(redis):
    broker, received = KafkaBroker(), []

    @broker.subscriber(PARTNER_EVENTS.format(tenant="acme"))
    async def partner(body: bytes) -> None:
        received.append(parse(JobEvent, body))

    jobs = JobStore(redis, HOUR)
    await jobs.create("j1", "acme", "enhance", "{}", REF, "token", "pro", "standard")
    accounts = MemoryAccounts()
    await accounts.register_partner("acme", Tier.PRO)
    async with TestKafkaBroker(broker):
        relay = PartnerRelay(broker, redis, STORE, accounts)
        assert await relay.relay(event("j1", completed=Completed(results=[REF])))
        assert await relay.relay(event("gone", completed=Completed(results=[REF])))  # no deadline known: 6 h
    deadline = (await jobs.get("j1")).expires_at
    ends = [url_ends(e.completed.results[0].url) for e in received]
    assert ends[0] <= deadline + 1 < time.time() + 2 * HOUR and ends[1] >= time.time() + 6 * HOUR - 2


async def test_late_writes_after_a_purge_recreate_nothing_and_every_write_expires_with_its_record(redis):
    jobs, batches, stages = JobStore(redis, HOUR), BatchStore(redis, HOUR), StageStore(redis, 24 * HOUR)
    await batches.create("b1", "acme", "enhance", ["j1", "j2"], "token")
    for job_id in ("j1", "j2"):
        await jobs.create(job_id, "acme", "enhance", "{}", None, "token", "pro", "standard", "b1")
    assert await stages.record_output("j1", "segment", TaskOutput())
    assert await stages.set_state("j1", "segment", "done")
    assert (await batches.job_ended("b1", "j1", succeeded=True)).done == 1
    assert await batches.job_ended("b1", "j1", succeeded=True) is None  # counted once
    ends = await redis.pexpiretime(job_key("j1"))  # the record's hour, not the stage store's 24 h
    for key in (stages_key("j1"), outputs_key("j1")):
        assert await redis.pexpiretime(key) == pytest.approx(ends, abs=2)
    ends = await redis.pexpiretime("photocraft:batch:b1")
    assert ends > 0 and await redis.pexpiretime("photocraft:batch:b1:ended") == pytest.approx(ends, abs=2)

    await redis.delete(*job_keys("j1"), *job_keys("j2"), *batch_keys("b1"))  # purged
    assert await batches.job_ended("b1", "j2", succeeded=False) is None
    assert not await stages.set_state("j2", "segment", "queued:1")
    assert not await stages.record_output("j2", "segment", TaskOutput())
    assert await keys_of(redis, "b1") == [] and await keys_of(redis, "j2") == []


class FlakyAccounts(MemoryAccounts):
    """Partners in memory, counting queries; ``down``: PostgreSQL away (every query fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.queries, self.down = 0, False

    async def partner(self, tenant_id: str):
        self.queries += 1
        if self.down:
            raise OSError("connection refused")
        return await super().partner(tenant_id)


async def test_partners_are_read_once_per_ttl_and_the_last_answer_stands_while_postgres_is_away(redis):
    accounts, now = FlakyAccounts(), [0.0]
    relay = PartnerRelay(KafkaBroker(), redis, STORE, accounts, clock=lambda: now[0])
    assert not await relay.is_partner("acme") and accounts.queries == 1
    await accounts.register_partner("acme", Tier.PRO)
    assert not await relay.is_partner("acme") and accounts.queries == 1  # within the TTL: the answer kept
    now[0] += PARTNER_TTL_S + 1
    assert await relay.is_partner("acme") and accounts.queries == 2  # a registration shows after it
    accounts.down, now[0] = True, now[0] + PARTNER_TTL_S + 1
    assert await relay.is_partner("acme") and accounts.queries == 3  # away: the last answer stands
    with pytest.raises(OSError):
        await relay.is_partner("never-seen")  # nothing known to fall back on: the event waits
    assert not await relay.is_partner("device-abc") and accounts.queries == 4  # devices: no query
