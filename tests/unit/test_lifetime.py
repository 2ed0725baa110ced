"""The lifetime's pure parts and stores, nothing running: which index entries are due, how a janitor pass
purges them (on fakeredis, with an in-memory S3 stand-in), how long a presigned URL lives, tombstones
and the gateway's 410. The same on the real platform: tests/platform/test_lifetime.py."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest
from fakeredis import FakeAsyncRedis
from fastapi.security import HTTPAuthorizationCredentials

from photocraft_common.batches import BatchStore, batch_keys
from photocraft_common.contracts import ObjectRef
from photocraft_common.expiry import Entry, ExpiryIndex, batch_entry, job_entry, object_entry, reusable, sort_entries
from photocraft_common.jobs import TOMBSTONE_S, JobStore, Tombstone, job_keys, tombstone_key
from photocraft_common.keyring import Keyring
from photocraft_common.problems import Problem
from photocraft_common.settings import S3Settings
from photocraft_common.storage import ObjectStore, presign_expiry
from photocraft_common.tiers import Tier
from photocraft_gateway.deps import authorized
from photocraft_janitor.janitor import purge, purge_due
from photocraft_notifier.eventlog import job_stream
from photocraft_scheduler.stages import outputs_key, stages_key

from .fake_accounts import MemoryAccounts

DAY = 86400


class MemoryS3:
    """The one S3 call a janitor pass makes, DeleteObjects, on a set of (bucket, key); ``refuse``: keys
    it answers with AccessDenied."""

    def __init__(self, objects: set[tuple[str, str]], refuse: frozenset[str] = frozenset()) -> None:
        self.objects, self.refuse, self.calls = objects, refuse, []

    def delete_objects(self, Bucket: str, Delete: dict) -> dict:  # noqa: N803 (boto3's names)
        keys = [o["Key"] for o in Delete["Objects"]]
        self.calls.append(len(keys))
        assert len(keys) <= 1000
        for key in keys:
            if key not in self.refuse:
                self.objects.discard((Bucket, key))
        return {"Errors": [{"Key": k, "Code": "AccessDenied", "Message": "no"} for k in keys if k in self.refuse]}


@pytest.fixture
def redis():
    return FakeAsyncRedis()


def test_entries_are_sorted_by_kind_and_bucket():
    due = sort_entries([object_entry("b1", "p/j/input/original.png"), object_entry("b2", "p/cache/m/x.png"),
                        job_entry("j1"), batch_entry("b9"), "s3:no-key", "job:", "other:thing"])

    assert due.objects == {"b1": ["p/j/input/original.png"], "b2": ["p/cache/m/x.png"]}
    assert (due.jobs, due.batches) == (["j1"], ["b9"])
    assert due.unknown == ["s3:no-key", "job:", "other:thing"]


def test_reuse_needs_every_object_to_outlive_the_margin():
    now = 1_000_000.0
    assert reusable([now + 3600, None], now, margin_s=600)
    assert not reusable([now + 3600, now + 599], now, margin_s=600)
    assert not reusable([now - 1], now, margin_s=0)


@pytest.mark.parametrize(("purge_at", "expected"), [
    (None, 21600),  # unknown: the configured expiry
    (1000 + 3 * 3600, 3 * 3600),  # purged in 3 h: the URL ends then
    (1000 + 30 * 3600, 21600),  # purged in 30 h: the configured 6 h
    (1000.5, 1),  # due now: S3 needs at least a second
    (900, 1),
])
def test_presigned_urls_never_outlive_their_objects(purge_at, expected):
    assert presign_expiry(21600, purge_at, now=1000) == expected


def test_a_presigned_url_carries_the_bounded_expiry():
    store = ObjectStore(S3Settings(access_key_id="test-key", secret_access_key="test-secret",
                                   presigned_url_expiry_s=21600))  # presigning needs no server
    ref = ObjectRef(bucket="photocraft", key="p/j/stages/segment.png")

    def expires(url: str) -> int:
        return int(parse_qs(urlparse(url).query)["X-Amz-Expires"][0])

    assert expires(store.presigned_get_url(ref)) == 21600
    assert 3595 <= expires(store.presigned_get_url(ref, time.time() + 3600)) <= 3600


async def test_due_entries_come_earliest_first_bounded_and_deadlines_only_rise(redis):
    index = ExpiryIndex(redis, DAY, key="test:expiry")
    await index.add(["s3:b/late"], 300.0)
    await index.add(["s3:b/early", "s3:b/middle"], 100.0)
    await index.add(["s3:b/middle"], 200.0)  # reused by a later job: due later
    await index.add(["s3:b/middle"], 150.0)  # an earlier deadline never wins

    assert await index.due(now=250.0) == [Entry("s3:b/early", 100.0), Entry("s3:b/middle", 200.0)]
    assert await index.due(now=250.0, limit=1) == [Entry("s3:b/early", 100.0)]
    assert await index.due(now=99.0) == []
    assert await index.dues(["s3:b/late", "s3:b/none"]) == [300.0, None]


async def test_an_entry_rescheduled_during_a_pass_is_kept(redis):
    index = ExpiryIndex(redis, DAY, key="test:expiry")
    await index.add(["s3:b/a", "s3:b/b"], 100.0)
    taken = await index.due(now=100.0)
    await index.add(["s3:b/b"], 5000.0)  # a job reused it meanwhile

    assert await index.done(taken) == 1
    assert await index.due(now=10_000.0) == [Entry("s3:b/b", 5000.0)]


async def test_a_job_is_recorded_with_its_deadline_index_entries_and_tombstone(redis):
    jobs, batches = JobStore(redis, DAY), BatchStore(redis, DAY)
    index = ExpiryIndex(redis, DAY)
    before = time.time()
    await batches.create("b1", "acme", "enhance", ["j1"], "batch-token")
    await jobs.create("j1", "acme", "enhance", '{"prompt": "secret"}', None, "job-token", "pro", "standard", "b1")

    record = await jobs.get("j1")
    assert before + DAY <= record.expires_at <= time.time() + DAY
    assert await index.job_deadline("j1") == record.expires_at
    assert (await index.dues([batch_entry("b1")]))[0] == pytest.approx(record.expires_at, abs=1)
    tomb_ttl = await redis.ttl(tombstone_key("job", "j1"))
    assert DAY + TOMBSTONE_S - 5 <= tomb_ttl <= DAY + TOMBSTONE_S
    assert set(await redis.hkeys(tombstone_key("job", "j1"))) == {b"tenant_id", b"token_sha256"}  # nothing else
    assert isinstance(await jobs.lookup("j1"), type(record))

    await redis.delete(*job_keys("j1"), *batch_keys("b1"))  # purged
    tomb = await jobs.lookup("j1")
    assert isinstance(tomb, Tombstone) and tomb.tenant_id == "acme" and tomb.token_matches("job-token")
    assert isinstance(await batches.lookup("b1"), Tombstone)
    assert await jobs.lookup("never") is None and await batches.lookup("never") is None


async def test_a_pass_purges_objects_then_redis_keys_then_entries(redis):
    index = ExpiryIndex(redis, DAY, key="test:expiry")
    jobs = JobStore(redis, DAY)
    await jobs.create("j1", "acme", "enhance", "{}", None, "job-token", "pro", "standard")
    await redis.hset("photocraft:job:j1:stages", "enhance", "done")
    objects = {("photocraft", f"p/j1/stages/{n}.png") for n in range(2500)} | {("other", "p/kept.png")}
    s3 = MemoryS3(set(objects))
    await index.add([object_entry(b, k) for b, k in objects if k != "p/kept.png"] + [job_entry("j1")], 100.0)
    await index.add([object_entry("other", "p/kept.png")], 10_000.0)

    report = await purge_due(index, s3, now=200.0)

    assert (report.entries, report.objects, report.jobs, report.failed) == (2501, 2500, 1, [])
    assert s3.objects == {("other", "p/kept.png")} and max(s3.calls) == 1000
    assert not await redis.exists(*job_keys("j1"))
    assert await redis.exists(tombstone_key("job", "j1"))  # the tombstone outlives the purge
    assert await index.due(now=200.0) == [] and await index.size() == 1


async def test_a_refused_object_keeps_its_entry_for_a_later_pass(redis):
    index = ExpiryIndex(redis, DAY, key="test:expiry")
    s3 = MemoryS3({("b", "x"), ("b", "y")}, refuse=frozenset({"x"}))
    await index.add(["s3:b/x", "s3:b/y"], 100.0)

    report = await purge_due(index, s3, now=200.0, retry_s=60)

    assert report.failed == ["s3:b/x"] and s3.objects == {("b", "x")}
    assert await index.due(now=10_000.0) == [Entry("s3:b/x", 260.0)]


async def test_a_crash_mid_pass_repeats_work_and_two_replicas_do_no_harm(redis):
    index = ExpiryIndex(redis, DAY, key="test:expiry")
    s3 = MemoryS3({("b", f"k{n}") for n in range(10)})
    await index.add([f"s3:b/k{n}" for n in range(10)], 100.0)

    class Crash(Exception):
        pass

    async def crashing_done(entries):
        raise Crash
    crashing = ExpiryIndex(redis, DAY, key="test:expiry")
    crashing.done = crashing_done  # dies after deleting, before removing the entries
    with pytest.raises(Crash):
        await purge(crashing, s3, await index.due(now=200.0), now=200.0)
    assert not s3.objects and len(await index.due(now=200.0)) == 10  # nothing lost: the entries remain

    first, second = await asyncio.gather(purge_due(index, s3, now=200.0), purge_due(index, s3, now=200.0))
    assert first.entries + second.entries >= 10
    assert await index.size() == 0


async def test_a_purged_job_answers_410_to_its_credentials_and_404_to_anyone_else(redis):
    accounts = MemoryAccounts(Keyring.generate())
    jobs = JobStore(redis, DAY)
    owner_key, stranger_key = await accounts.create_key("acme", Tier.PRO), await accounts.create_key("evil", Tier.PRO)
    device = accounts.new_device()
    await jobs.create("j1", "acme", "enhance", "{}", None, "job-token", "pro", "standard")
    await jobs.create("j2", device.tenant_id, "enhance", "{}", None, "device-job-token", "anonymous", "standard")
    await redis.delete(*job_keys("j1"), *job_keys("j2"))
    p = SimpleNamespace(accounts=accounts)

    async def status(job_id: str, bearer: str = "", device_token: str = "") -> int:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=bearer) if bearer else None
        request = SimpleNamespace(headers={"x-device-token": device_token} if device_token else {})
        try:
            await authorized(p, request, credentials, await jobs.lookup(job_id), "job", job_id)
        except Problem as problem:
            return problem.status
        return 200

    assert await status("j1", "job-token") == await status("j1", owner_key) == 410
    assert await status("j2", device_token=device.issued_token) == 410
    assert await status("j1", stranger_key) == await status("j1", "device-job-token") == 404
    assert await status("j2", device_token=accounts.new_device().issued_token) == 404
    assert await status("never", owner_key) == 404 and await status("j1") == 401


def test_the_janitor_knows_every_key_kept_next_to_a_job():
    assert {stages_key("j1"), outputs_key("j1"), job_stream("j1")} <= set(job_keys("j1"))
    assert job_stream("b1") in batch_keys("b1")  # a batch's progress is logged under its id
