"""Purging what is due: from the expiry index every pass, and by listing the bucket as a safety net.

``purge_due`` takes the index's due entries (photocraft_common.expiry: score <= now) in batches of
``DELETE_BATCH``, deletes their S3 objects (DeleteObjects, 1000 keys a call) and their jobs' and
batches' Redis keys (the tombstones stay), and only then removes the entries: a crash repeats work
instead of losing it, and two replicas purging the same entry do no harm. An object S3 refuses to
delete keeps its entry, rescheduled ``retry_s`` later, so that it never blocks the others.

``sweep`` lists the whole bucket and deletes each object last modified more than the lifetime ago:
the safety net for an object the index lost (a Redis restored from an old snapshot), run seldom
(``sweep_interval_s``, a day). ``ensure_lifecycle_rule`` puts the same rule on the bucket for stores
that enforce lifecycle rules (AWS S3; SeaweedFS does not).

Each batch of ``purge`` is a span ``purge`` (a trace of its own), and each job in it a span ``purge job``
in the job's trace: a child of the context its tombstone keeps (photocraft_common.jobs; the record itself
may have expired already), linked to ``purge``, from before its objects are deleted until its keys are.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.client import BaseClient
from opentelemetry.trace import Link, Span, get_current_span

from photocraft_common import logs
from photocraft_common.batches import batch_keys
from photocraft_common.expiry import Entry, ExpiryIndex, object_entry, sort_entries
from photocraft_common.jobs import job_keys, tombstone_key
from photocraft_common.telemetry import context_of, tracer

log = logging.getLogger("photocraft.janitor")

DELETE_BATCH = 1000  # S3's limit for one DeleteObjects call; also the index entries taken at a time
LIFECYCLE_RULE_ID = "photocraft-expire-uploads"
RETRY_S = 300.0


@dataclass
class PassReport:
    """One pass over the index: entries taken, objects deleted (or found gone), jobs and batches purged,
    entries kept for a later pass (``failed``)."""

    entries: int = 0
    objects: int = 0
    jobs: int = 0
    batches: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class SweepReport:
    scanned: int = 0
    deleted: int = 0


def delete_objects(s3: BaseClient, bucket: str, keys: list[str]) -> list[str]:
    """Delete ``keys`` from ``bucket``, 1000 a call; returns the keys S3 refused (logged). A key that is
    not there counts as deleted. Raises botocore's errors when S3 cannot be reached."""
    refused = []
    for start in range(0, len(keys), DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start:start + DELETE_BATCH]]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        for error in response.get("Errors", []):
            log.warning("could not delete %s/%s: %s", bucket, error.get("Key"), error.get("Code"))
            refused.append(error["Key"])
    return refused


async def job_spans(index: ExpiryIndex, job_ids: list[str]) -> list[Span]:
    """Start a span ``purge job`` in the trace of each of ``job_ids`` whose tombstone keeps one, linked to the
    current span; the caller ends them."""
    async with index.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(tombstone_key("job", job_id), "traceparent")
        found = await pipe.execute() if job_ids else []
    here = [Link(context)] if (context := get_current_span().get_span_context()).is_valid else []
    return [tracer.start_span("purge job", context=context_of(traceparent.decode()), links=here,
                              attributes={"photocraft.job_id": job_id})
            for job_id, traceparent in zip(job_ids, found, strict=True) if traceparent]


async def purge(index: ExpiryIndex, s3: BaseClient, entries: list[Entry], now: float,
                retry_s: float = RETRY_S) -> PassReport:
    """Purge ``entries`` (due at ``now``, Unix s): their objects, then their Redis keys, then the entries
    (traced as the module says)."""
    with tracer.start_as_current_span("purge", attributes={"photocraft.entries": len(entries)}):
        spans = await job_spans(index, sort_entries(entry.member for entry in entries).jobs)
        try:
            return await _purge(index, s3, entries, now, retry_s)
        finally:
            for span in spans:
                span.end()


async def _purge(index: ExpiryIndex, s3: BaseClient, entries: list[Entry], now: float, retry_s: float) -> PassReport:
    due, report = sort_entries(entry.member for entry in entries), PassReport(entries=len(entries))
    for bucket, keys in due.objects.items():
        refused = await asyncio.to_thread(delete_objects, s3, bucket, keys)
        report.objects += len(keys) - len(refused)
        report.failed += [object_entry(bucket, key) for key in refused]
    redis_keys = [k for job in due.jobs for k in job_keys(job)] + [k for b in due.batches for k in batch_keys(b)]
    for start in range(0, len(redis_keys), DELETE_BATCH):
        await index.redis.delete(*redis_keys[start:start + DELETE_BATCH])
    report.jobs, report.batches = len(due.jobs), len(due.batches)
    for job_id in due.jobs:
        with logs.job_scope(job_id=job_id):
            log.info("job %s purged from Redis (its S3 objects have index entries of their own)", job_id)
    for member in due.unknown:
        log.warning("expiry index entry of no known kind dropped: %s", member)
    failed = set(report.failed)
    await index.done([entry for entry in entries if entry.member not in failed])
    if failed:
        await index.add(failed, now + retry_s)
    return report


async def purge_due(index: ExpiryIndex, s3: BaseClient, now: float, batch: int = DELETE_BATCH,
                    retry_s: float = RETRY_S) -> PassReport:
    """Purge every entry of ``index`` due at ``now`` (Unix s), ``batch`` at a time, until none is left.

    Raises redis-py's and botocore's errors when Redis or S3 cannot be reached; what was purged until
    then stays purged, the rest is done by the next pass.
    """
    total = PassReport()
    while entries := await index.due(now, batch):
        report = await purge(index, s3, entries, now, retry_s)
        total.entries += report.entries
        total.objects += report.objects
        total.jobs += report.jobs
        total.batches += report.batches
        total.failed += report.failed
        if len(entries) < batch:
            break
    return total


def ensure_lifecycle_rule(s3: BaseClient, bucket: str, ttl_s: int) -> None:
    days = max(1, math.ceil(ttl_s / 86400))
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": LIFECYCLE_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
        "Expiration": {"Days": days},
    }]})


def sweep(s3: BaseClient, bucket: str, ttl_s: float, now: datetime | None = None) -> SweepReport:
    """Delete every object of ``bucket`` last modified more than ``ttl_s`` seconds before ``now``."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=ttl_s)
    report = SweepReport()
    expired: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            report.scanned += 1
            if obj["LastModified"] < cutoff:
                expired.append(obj["Key"])
    report.deleted = len(expired) - len(delete_objects(s3, bucket, expired))
    return report
