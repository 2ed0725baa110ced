"""Billing end to end on the real platform (issue 14): a pro tenant with a Stripe customer runs a mixed set of
jobs (completed, no-op, failed, cancelled before any stage ran), one job's result is delivered again and
its usage reported again, and the Stripe exporter is killed mid-run and run again. Then the usage ledger
(PostgreSQL), ``GET /v1/usage`` and the meter events Stripe's mock server was sent agree exactly with what
was done: each job recorded once with its outcome and units, nothing billed twice or lost.

The exporter runs on the local stack's ledger, where other tests' tenants may have rows too: only this
tenant's customer's events are looked at, and the proxy holds back the answer to this customer's second
event (stripe_billing.py's recorder)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from skimage import data

from photocraft_common.contracts import TaskResult, UsageReport
from photocraft_common.jobs import JobStore
from photocraft_common.tables import meter_exports, usage_records, usage_stages
from photocraft_common.topics import LEDGER_GROUP, SCHEDULER_GROUP, TASK_RESULTS, USAGE_REPORTS
from photocraft_common.usage.exporter import identifier
from photocraft_common.usage.ledger import Ledger
from photocraft_common.usage.prices import DEFAULT_PRICES
from photocraft_scheduler.stages import StageStore

from .helpers import GATEWAY, end_offsets, events_until, fresh, png_bytes, submit, supervisorctl, tenant_key
from .stripe_billing import exporter

SMALL = data.astronaut()[::8, ::8]  # 64 x 64: quick jobs
TENANTS = [sys.executable.rsplit("/", 1)[0] + "/photocraft-tenants"]
pytestmark = pytest.mark.timeout(420)


def processes(prefix: str) -> list[str]:
    return [line.split()[0] for line in supervisorctl("status").splitlines() if line.startswith(prefix)]


async def redeliver(settings, *messages: tuple[str, object]) -> None:
    """Publish (topic, protobuf message) pairs as the platform does (photocraft_common.kafka.publish)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for topic, message in messages:
            await producer.send_and_wait(topic, message.SerializeToString(), key=message.job_id.encode(),
                                         headers=[("message-type", message.DESCRIPTOR.full_name.encode())])
    finally:
        await producer.stop()


async def ledger_rows(engine, tenant: str, count: int, timeout_s: float = 90) -> dict[str, sa.Row]:
    """The tenant's ledger rows by job id, once there are ``count`` (the ledger consumer's lag is polled)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with engine.connect() as connection:
            rows = (await connection.execute(sa.select(usage_records).where(usage_records.c.tenant == tenant))).all()
        if len(rows) >= count or asyncio.get_running_loop().time() > deadline:
            return {row.job_id: row for row in rows}
        await asyncio.sleep(0.5)


async def test_a_mixed_run_agrees_in_the_ledger_the_usage_api_and_stripe(settings, redis, s3, engine, recorder):
    tenant, customer = f"billing-{uuid.uuid4().hex[:10]}", f"cus_{uuid.uuid4().hex[:14]}"
    key = tenant_key(tenant, "pro")
    subprocess.run([*TENANTS, "billing", tenant, "--stripe-customer", customer], check=True, capture_output=True)
    jobs = JobStore(redis, settings.job_ttl_s)
    outcomes: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        # Three completed jobs (charged), and a no-op: enhance with every strength at 0.
        for _ in range(3):
            job = (await submit(client, png_bytes(fresh(SMALL)))).json()
            assert (await events_until(job))[-1]["type"] == "completed"
            outcomes[job["job_id"]] = "completed"
        nothing = {"scale": 1, "denoise": 0, "contrast": 0, "saturation": 0, "sharpen": 0}
        job = (await submit(client, png_bytes(fresh(SMALL)), operation="enhance", params=json.dumps(nothing))).json()
        assert (await events_until(job))[-1]["type"] == "completed"
        outcomes[job["job_id"]] = "no-op"

        # Failed: the input vanishes before any worker reads it, so every attempt fails.
        workers = processes("services:gpu-inference")
        supervisorctl("signal", "STOP", *workers)
        try:
            failing = (await submit(client, png_bytes(fresh(SMALL)))).json()
            record = await jobs.get(failing["job_id"])
            s3.delete_object(Bucket=record.input.bucket, Key=record.input.key)
        finally:
            supervisorctl("signal", "CONT", *workers)
        assert (await events_until(failing))[-1]["type"] == "failed"
        outcomes[failing["job_id"]] = "failed"

        # Cancelled before any stage ran: the scheduler does not see the job until it is cancelled.
        scheduler = processes("services:scheduler")
        supervisorctl("signal", "STOP", *scheduler)
        try:
            early = (await submit(client, png_bytes(fresh(SMALL)))).json()
            assert (await client.delete(f"/v1/jobs/{early['job_id']}")).json()["status"] == "cancelled"
        finally:
            supervisorctl("signal", "CONT", *scheduler)
        assert (await events_until(early))[-1]["type"] == "cancelled"
        outcomes[early["job_id"]] = "cancelled"

        first = await ledger_rows(engine, tenant, len(outcomes))
        assert {job_id: row.outcome for job_id, row in first.items()} == outcomes

        # A completed job's result delivered again, and its usage reported again with other figures:
        # the scheduler announces its end once more, and the ledger keeps the first report.
        redelivered = next(j for j, o in outcomes.items() if o == "completed")
        recorded = await StageStore(redis, settings.job_ttl_s).outputs(redelivered)  # as the scheduler keeps it
        result = TaskResult(task_id=f"{redelivered}/segment", job_id=redelivered, stage="segment",
                            model="u2netp", attempt=1, output=recorded["segment"])
        again = UsageReport(job_id=redelivered, tenant_id=tenant, operation="remove-background", tier="pro",
                            outcome="completed", stages_run=5, megapixels_in=99.0)
        again.finished_at.GetCurrentTime()
        await redeliver(settings, (TASK_RESULTS, result), (USAGE_REPORTS, again), (USAGE_REPORTS, again))
        await caught_up(settings, SCHEDULER_GROUP, TASK_RESULTS)  # and so reported the job again
        await caught_up(settings, LEDGER_GROUP, USAGE_REPORTS)
        after = await ledger_rows(engine, tenant, len(outcomes), timeout_s=0)
        assert after == first  # the same rows, the first report of each job

        # What the ledger says each job cost: the price table's, charged only when completed.
        pro = DEFAULT_PRICES["pro"]
        for job_id, outcome in outcomes.items():
            row = after[job_id]
            charged = pro[row.operation] if outcome == "completed" else 0
            assert row.units == charged, (outcome, row)
        done = after[redelivered]
        assert (done.stages_run, done.stages_reused) == (1, 0)
        assert done.megapixels_in == pytest.approx(64 * 64 / 1e6) and done.megapixels_out > 0
        assert done.compute_s["u2netp"] > 0  # measured by the worker
        async with engine.connect() as connection:
            stages = (await connection.execute(sa.select(usage_stages).where(
                usage_stages.c.usage_record_id == done.id))).all()
        assert [(r.stage, r.model, r.reused, r.compute_s) for r in stages] == [
            ("segment", "u2netp", False, done.compute_s["u2netp"])]
        assert after[early["job_id"]].stages_run == 0 and after[early["job_id"]].compute_s == {}

        # GET /v1/usage agrees with the ledger, per operation and in total.
        today = datetime.now(UTC).date()
        answer = (await client.get("/v1/usage", params={"from": str(today - timedelta(days=1)),
                                                         "to": str(today), "group_by": "operation"})).json()
        assert answer["totals"]["jobs"] == len(outcomes)
        assert answer["totals"]["units"] == sum(r.units for r in after.values()) == 3 * pro["remove-background"]
        assert answer["totals"]["charged_jobs"] == 3
        by_operation = Counter()
        for row in after.values():
            by_operation[row.operation] += row.units
        assert {r["key"]: r["units"] for r in answer["rows"]} == dict(by_operation)
        ours = await Ledger(engine).usage(tenant, datetime.now(UTC) - timedelta(days=2),
                                          datetime.now(UTC) + timedelta(days=1), group_by="operation")
        assert [(r.key, r.jobs, r.units) for r in ours] == [(r["key"], r["jobs"], r["units"])
                                                             for r in answer["rows"]]

        # The exporter, killed while Stripe holds this customer's second event, then run again.
        recorder.hold_when = lambda sent: sum(s.get("payload[stripe_customer_id]") == customer for s in sent) == 2
        first_run = await exporter(settings.database.required_url(), recorder.base, "--once")
        await asyncio.wait_for(recorder.holding.wait(), 120)
        first_run.send_signal(signal.SIGKILL)
        await first_run.wait()
        recorder.release.set()
        second_run = await exporter(settings.database.required_url(), recorder.base, "--once")
        out, err = await second_run.communicate()
        assert second_run.returncode == 0, err.decode()[-2000:]

        charged = {r.id: r for r in after.values() if r.units > 0}
        sent = [s for s in recorder.sent if s.get("payload[stripe_customer_id]") == customer]
        counts = Counter(s["identifier"] for s in sent)
        assert set(counts) == {identifier(r.job_id) for r in charged.values()}  # every charged job, nothing else
        assert [c for c in counts.values() if c > 1] in ([], [2])  # only the one in flight, twice
        billed = {s["identifier"]: int(s["payload[value]"]) for s in sent}  # Stripe keeps one per identifier
        assert sum(billed.values()) == answer["totals"]["units"]
        assert all(billed[identifier(row.job_id)] == row.units for row in charged.values())
        async with engine.connect() as connection:
            exported = set((await connection.execute(sa.select(meter_exports.c.usage_record_id).where(
                meter_exports.c.usage_record_id.in_([r.id for r in after.values()])))).scalars())
        assert exported == set(charged)


async def caught_up(settings, group: str, topic: str, timeout_s: float = 60) -> None:
    """Wait until the consumer group ``group`` has consumed everything ``topic`` holds now."""
    ends = await end_offsets(settings, [topic])
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            if all(end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()):
                return
            assert asyncio.get_running_loop().time() < deadline, f"{group} did not catch up on {topic}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
