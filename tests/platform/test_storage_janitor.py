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


def test_janitor_process_purges_expired_objects_and_keeps_fresh_ones(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t1/job1/input/original.png", Body=b"old")
    s3.put_object(Bucket=bucket, Key="t1/job1/stages/segment.png", Body=b"old")
    time.sleep(6)
    s3.put_object(Bucket=bucket, Key="t2/job2/input/original.png", Body=b"fresh")

    # The real service, with a 4 s TTL; one sweep at start, the next an hour later.
    env = {**os.environ, "PHOTOCRAFT_S3__BUCKET": bucket, "PHOTOCRAFT_TTL_S": "4",
           "PHOTOCRAFT_INTERVAL_S": "3600", "PHOTOCRAFT_PORT": "0"}  # its health server on any free port
    janitor = subprocess.Popen([Path(sys.executable).parent / "photocraft-storage-janitor"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in janitor.stderr:
            if "swept" in line:
                break
        assert "2 deleted" in line, line
        assert keys(s3, bucket) == {"t2/job2/input/original.png"}
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
