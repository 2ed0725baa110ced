"""Object storage through boto3, so AWS S3, MinIO and SeaweedFS all work.

Key layout, per tenant and job::

    <tenant_id>/<job_id>/input/original.<ext>   the upload, byte for byte
    <tenant_id>/<job_id>/stages/<stage>.<ext>   each stage's output

The storage-janitor deletes every object once it is older than its TTL.
"""

from __future__ import annotations

import asyncio

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from .contracts import ObjectRef
from .settings import S3Settings


def input_key(tenant_id: str, job_id: str, extension: str) -> str:
    return f"{tenant_id}/{job_id}/input/original.{extension}"


def stage_key(tenant_id: str, job_id: str, stage: str, extension: str) -> str:
    return f"{tenant_id}/{job_id}/stages/{stage}.{extension}"


def make_client(settings: S3Settings, endpoint_url: str | None = None) -> BaseClient:
    """A boto3 S3 client (thread-safe) with SigV4 and standard retries."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id.get_secret_value(),
        aws_secret_access_key=settings.secret_access_key.get_secret_value(),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 5, "mode": "standard"},
        ),
    )


class ObjectStore:
    """The platform's bucket. Async methods run boto3 in a worker thread.

    Errors are botocore's (``ClientError``, ``EndpointConnectionError``).
    """

    def __init__(self, settings: S3Settings) -> None:
        self.bucket = settings.bucket
        self.client = make_client(settings)
        self._presigner = (
            make_client(settings, settings.public_endpoint_url)
            if settings.public_endpoint_url
            else self.client
        )
        self._expiry_s = settings.presigned_url_expiry_s

    async def put(self, key: str, data: bytes, content_type: str,
                  width: int = 0, height: int = 0) -> ObjectRef:
        """Store ``data`` under ``key``; returns once S3 has acknowledged it."""
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )
        return ObjectRef(bucket=self.bucket, key=key, content_type=content_type,
                         size_bytes=len(data), width=width, height=height)

    async def get(self, ref: ObjectRef) -> bytes:
        response = await asyncio.to_thread(self.client.get_object, Bucket=ref.bucket, Key=ref.key)
        return await asyncio.to_thread(response["Body"].read)

    def presigned_get_url(self, ref: ObjectRef) -> str:
        """A time-limited GET URL for ``ref`` (no network call)."""
        return self._presigner.generate_presigned_url(
            "get_object", Params={"Bucket": ref.bucket, "Key": ref.key}, ExpiresIn=self._expiry_s
        )
