"""The storage-janitor deletes objects older than its TTL and keeps the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from photocraft_janitor.janitor import LIFECYCLE_RULE_ID, sweep


@pytest.fixture
def bucket(s3):
    name = f"janitor-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def last_modified(s3, bucket: str, key: str) -> datetime:
    return s3.head_object(Bucket=bucket, Key=key)["LastModified"]


def test_sweep_purges_expired_objects_and_keeps_fresh_ones(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t1/job1/input/original.png", Body=b"old")
    s3.put_object(Bucket=bucket, Key="t1/job1/stages/segment.png", Body=b"old")
    old = max(last_modified(s3, bucket, key) for key in keys(s3, bucket))
    # S3 dates objects to the second: write the fresh one until it is dated after the old ones
    # (a poll of the store's clock, about half a second).
    deadline = time.monotonic() + 10
    while True:
        s3.put_object(Bucket=bucket, Key="t2/job2/input/original.png", Body=b"fresh")
        fresh = last_modified(s3, bucket, "t2/job2/input/original.png")
        if fresh > old:
            break
        assert time.monotonic() < deadline, f"S3 still dates new objects {fresh}, not after {old}"
        time.sleep(0.05)

    # The janitor's clock, 4 s after the fresh object was written: the fresh one is exactly 4 s old.
    report = sweep(s3, bucket, ttl_s=4, now=fresh + timedelta(seconds=4))

    assert (report.scanned, report.deleted) == (3, 2)
    assert keys(s3, bucket) == {"t2/job2/input/original.png"}


def test_janitor_process_purges_expired_objects(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t1/job1/input/original.png", Body=b"old")
    s3.put_object(Bucket=bucket, Key="t1/job1/stages/segment.png", Body=b"old")

    # The real service with a lifetime of 0 s: whatever its LIST sweep finds is older than that (which
    # objects are old enough is the sweep's choice, tested above with a clock of the test's). One sweep
    # at start, the next a day later (PHOTOCRAFT_SWEEP_INTERVAL_S).
    env = {**os.environ, "PHOTOCRAFT_S3__BUCKET": bucket, "PHOTOCRAFT_JOB_TTL_S": "0",
           "PHOTOCRAFT_INTERVAL_S": "3600", "PHOTOCRAFT_PORT": "0"}  # its health server on any free port
    janitor = subprocess.Popen([Path(sys.executable).parent / "photocraft-storage-janitor"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in janitor.stderr:
            if "swept" in line:
                break
        assert "2 deleted" in line, line
        assert keys(s3, bucket) == set()
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert [(r["ID"], r["Expiration"]["Days"]) for r in rules] == [(LIFECYCLE_RULE_ID, 1)]
    finally:
        janitor.send_signal(signal.SIGTERM)
        assert janitor.wait(timeout=10) == 0


def test_sweep_pages_through_more_than_one_listing(s3, bucket):
    for i in range(1005):  # list_objects_v2 returns at most 1000 keys a page
        s3.put_object(Bucket=bucket, Key=f"t/job/{i:04d}", Body=b"")

    kept = sweep(s3, bucket, ttl_s=3600)
    purged = sweep(s3, bucket, ttl_s=3600, now=datetime.now(UTC) + timedelta(hours=2))

    assert (kept.scanned, kept.deleted) == (1005, 0)
    assert (purged.scanned, purged.deleted) == (1005, 1005)
    assert keys(s3, bucket) == set()
