"""Purging expired objects.

Every ``interval_s`` the janitor lists the bucket and deletes each object
whose LastModified is older than ``ttl_s``. It also puts a lifecycle rule
(expire after ceil(TTL) days) on the bucket, as a backstop on stores that
enforce lifecycle rules, such as AWS S3; SeaweedFS does not enforce them
promptly, so the sweep is what keeps the promise.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.client import BaseClient

log = logging.getLogger("photocraft.janitor")

DELETE_BATCH = 1000  # S3's limit for one DeleteObjects call
LIFECYCLE_RULE_ID = "photocraft-expire-uploads"


@dataclass
class SweepReport:
    scanned: int = 0
    deleted: int = 0


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
    expired: list[dict[str, str]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            report.scanned += 1
            if obj["LastModified"] < cutoff:
                expired.append({"Key": obj["Key"]})
    for start in range(0, len(expired), DELETE_BATCH):
        batch = expired[start:start + DELETE_BATCH]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        for error in response.get("Errors", []):
            log.warning("could not delete %s: %s", error.get("Key"), error.get("Message"))
        report.deleted += len(batch) - len(response.get("Errors", []))
    return report
