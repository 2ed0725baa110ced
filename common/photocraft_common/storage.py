"""Object storage through boto3, so AWS S3, MinIO and SeaweedFS all work.

Key layout, per tenant::

    <tenant_id>/<job_id>/input/original.<ext>   an upload, byte for byte
    <tenant_id>/<job_id>/stages/<stage>.<ext>   a stage's output, for this job only
    <tenant_id>/cache/<model>/<output_id>.<ext> a stage's output that later jobs may reuse
    <output key minus extension>.mask.png       the mask a stage made, if any
    <output key minus extension>.manifest.json  the stage's TaskOutput, written last

The storage-janitor deletes every object once it is older than its TTL.
"""

from __future__ import annotations

import asyncio
import mimetypes

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError
from google.protobuf import json_format

from .contracts import ObjectRef, TaskOutput
from .settings import S3Settings


def input_key(tenant_id: str, job_id: str, extension: str) -> str:
    return f"{tenant_id}/{job_id}/input/original.{extension}"


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

    async def write_manifest(self, output_key: str, output: TaskOutput) -> None:
        """Record a stage's output; written after its objects, so it proves they are complete."""
        body = json_format.MessageToJson(output).encode()
        await self.put(sibling_key(output_key, "manifest.json"), body, "application/json")

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

    async def touch(self, keys: list[str]) -> bool:
        """Reset the age of objects (copy each onto itself), so that reuse keeps them alive.

        False when one of them no longer exists (the janitor got there first).
        """
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

    def presigned_get_url(self, ref: ObjectRef) -> str:
        """A time-limited GET URL for ``ref`` (no network call)."""
        return self._presigner.generate_presigned_url(
            "get_object", Params={"Bucket": ref.bucket, "Key": ref.key}, ExpiresIn=self._expiry_s
        )
