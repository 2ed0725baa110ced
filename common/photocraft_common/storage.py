"""Object storage through boto3, so AWS S3, MinIO and SeaweedFS all work.

Key layout, per tenant::

    <prefix>/<job_id>/input/original.<ext>     an upload, byte for byte
    <prefix>/<job_id>/stages/<stage>.<ext>     a stage's output, for this job only
    <prefix>/cache/<model>/<output_id>.<ext>   a stage's output that later jobs may reuse
    <output key minus extension>.mask.png      the mask a stage made, if any
    <output key minus extension>.manifest.json the stage's TaskOutput, written last

``<prefix>`` is the tenant's opaque prefix (``tenant_prefix``): keys and presigned URLs name no tenant
or device. Every object is in the expiry index (expiry.py) before it is written, due at its job's
deadline (created_at + ``job_ttl_s``); the storage-janitor deletes it then, and presigned URLs expire
no later.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import mimetypes
import time

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError
from google.protobuf import json_format

from .contracts import ObjectRef, TaskOutput
from .expiry import ExpiryIndex, object_entry, reusable
from .keyring import Keyring
from .settings import S3Settings

PREFIX_PURPOSE = "photocraft-s3-tenant-prefix"


def tenant_prefix(keyring: Keyring, tenant_id: str) -> str:
    """The tenant's key prefix: 32 hex characters, HMAC-SHA256 of ``tenant_id`` under a key derived from the
    keyring's current secret, so that nobody without the keyring can tell whose objects these are, or
    compute a tenant's prefix from its (device) id. A new current key gives every tenant a new prefix."""
    return hmac.new(keyring.derive(PREFIX_PURPOSE), tenant_id.encode(), hashlib.sha256).hexdigest()[:32]


def input_key(keyring: Keyring, tenant_id: str, job_id: str, extension: str) -> str:
    return f"{tenant_prefix(keyring, tenant_id)}/{job_id}/input/original.{extension}"


def stage_key(keyring: Keyring, tenant_id: str, job_id: str, stage: str, extension: str) -> str:
    return f"{tenant_prefix(keyring, tenant_id)}/{job_id}/stages/{stage}.{extension}"


def sibling_key(output_key: str, suffix: str) -> str:
    """``a/b/c.png`` with suffix ``mask.png`` -> ``a/b/c.mask.png``."""
    return f"{output_key.rsplit('.', 1)[0]}.{suffix}"


def make_client(settings: S3Settings, endpoint_url: str | None = None) -> BaseClient:
    """A boto3 S3 client (thread-safe) with SigV4 and standard retries; an https endpoint's
    certificate is checked against ``settings.ca_bundle`` (a PEM file) when set, else the system's CAs."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings.endpoint_url,
        verify=settings.ca_bundle,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id.get_secret_value(),
        aws_secret_access_key=settings.secret_access_key.get_secret_value(),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 5, "mode": "standard"},
            # No CRC32 of every body (botocore >= 1.36 adds one unless asked not to): without a checksum
            # header SigV4 signs the payload's SHA-256, over http and https alike (botocore S3SigV4Auth).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def presign_expiry(configured_s: int, purge_at: float | None, now: float) -> int:
    """Seconds a presigned URL stays valid: ``configured_s``, but never past ``purge_at`` (Unix s, the
    object's purge; None: unknown) and at least 1 (S3 refuses 0)."""
    if purge_at is None:
        return configured_s
    return max(1, min(configured_s, int(purge_at - now)))


class ObjectStore:
    """The platform's bucket. Async methods run boto3 in a worker thread.

    With ``expiry`` (the expiry index), every object written is scheduled for purge first: at
    ``expires_at`` (Unix s, its job's deadline, ``job_deadline``), else ``expiry.lifetime_s`` from now.
    Errors are botocore's (``ClientError``, ``EndpointConnectionError``) and, for the index, redis-py's.
    """

    def __init__(self, settings: S3Settings, expiry: ExpiryIndex | None = None) -> None:
        self.bucket = settings.bucket
        self.client = make_client(settings)
        self._presigner = (
            make_client(settings, settings.public_endpoint_url)
            if settings.public_endpoint_url
            else self.client
        )
        self._expiry_s = settings.presigned_url_expiry_s
        self.expiry = expiry

    async def job_deadline(self, job_id: str) -> float | None:
        """When ``job_id``'s objects are purged (ExpiryIndex.job_deadline); None without an index."""
        return await self.expiry.job_deadline(job_id) if self.expiry else None

    async def put(self, key: str, data: bytes, content_type: str, width: int = 0, height: int = 0,
                  expires_at: float | None = None) -> ObjectRef:
        """Store ``data`` under ``key`` (indexed first, due at ``expires_at``); returns once S3 has
        acknowledged it."""
        if self.expiry:
            await self.expiry.add([object_entry(self.bucket, key)], expires_at)
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )
        return ObjectRef(bucket=self.bucket, key=key, content_type=content_type,
                         size_bytes=len(data), width=width, height=height)

    async def get(self, ref: ObjectRef) -> bytes:
        response = await asyncio.to_thread(self.client.get_object, Bucket=ref.bucket, Key=ref.key)
        return await asyncio.to_thread(response["Body"].read)

    async def write_manifest(self, output_key: str, output: TaskOutput, expires_at: float | None = None) -> None:
        """Record a stage's output; written after its objects, so it proves they are complete."""
        body = json_format.MessageToJson(output).encode()
        await self.put(sibling_key(output_key, "manifest.json"), body, "application/json", expires_at=expires_at)

    async def read_manifest(self, output_key: str) -> TaskOutput | None:
        """The TaskOutput recorded for ``output_key``, or None when there is none."""
        key = sibling_key(output_key, "manifest.json")
        try:
            response = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        body = await asyncio.to_thread(response["Body"].read)
        return json_format.Parse(body, TaskOutput())

    async def touch(self, keys: list[str], expires_at: float | None = None) -> bool:
        """Keep objects for a job that reuses them: due at ``expires_at`` (that job's deadline) unless they
        were due later, and their age reset (each copied onto itself) for the janitor's LIST sweep.

        False, and nothing changed, when one of them is due within expiry.REUSE_MARGIN_S (the janitor may
        be deleting it); False when one no longer exists.
        """
        if self.expiry:
            entries = [object_entry(self.bucket, key) for key in keys]
            if not reusable(await self.expiry.dues(entries), time.time()):
                return False
            await self.expiry.add(entries, expires_at)
        for key in keys:
            try:
                await asyncio.to_thread(
                    self.client.copy_object, Bucket=self.bucket, Key=key, MetadataDirective="REPLACE",
                    CopySource={"Bucket": self.bucket, "Key": key},
                    ContentType=mimetypes.guess_type(key)[0] or "application/octet-stream")
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return False
                raise
        return True

    def presigned_get_url(self, ref: ObjectRef, purge_at: float | None = None) -> str:
        """A time-limited GET URL for ``ref`` (no network call), valid for ``presigned_url_expiry_s`` but
        never past ``purge_at`` (Unix s: the job's deadline, JobRecord.expires_at; None: unknown)."""
        expires_in = presign_expiry(self._expiry_s, purge_at, time.time())
        return self._presigner.generate_presigned_url(
            "get_object", Params={"Bucket": ref.bucket, "Key": ref.key}, ExpiresIn=expires_in
        )
