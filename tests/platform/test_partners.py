"""Partners over Kafka: the example partner client against the platform, and requests the scheduler refuses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from photocraft_common.contracts import JobEvent, PartnerRequest, new_id
from photocraft_common.topics import PARTNER_EVENTS, PARTNER_REQUESTS

from .helpers import ROOT, fresh, png_bytes


def register_partner(tier: str = "enterprise") -> str:
    tenant = f"partner-{new_id()[:8]}"
    subprocess.run([Path(sys.executable).parent / "photocraft-tenants", "partner", tenant, "--tier", tier],
                   check=True, capture_output=True)
    return tenant


def test_the_example_partner_client_gets_its_result(astronaut, tmp_path):
    tenant = register_partner()
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(png_bytes(fresh(astronaut)))
    run = subprocess.run([sys.executable, ROOT / "examples" / "partner_client.py", "--tenant", tenant, photo,
                          "--operation", "remove-background", "-o", tmp_path / "out", "--timeout", "240"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    kinds = [line.split()[0] for line in run.stdout.splitlines()[1:] if not line.startswith("result written")]
    assert kinds[0] == "received" and kinds[-1] == "completed" and "started" in kinds
    [result] = (tmp_path / "out").glob("*-image.png")
    with Image.open(result) as image:
        assert image.mode == "RGBA" and image.size == (512, 512)
        alpha = np.asarray(image)[..., 3]
    assert 0.05 < (alpha > 127).mean() < 0.95  # a subject cut out, not an empty or full mask


async def test_requests_naming_another_tenant_or_carrying_no_photo_fail_with_a_reason(settings):
    tenant = register_partner("pro")
    requests = [
        PartnerRequest(request_id=str(uuid.uuid4()), tenant_id="someone-else", operation="remove-background",
                       image=png_bytes(np.zeros((8, 8, 3), np.uint8))),
        PartnerRequest(request_id=str(uuid.uuid4()), tenant_id=tenant, operation="remove-background",
                       image=b"not an image"),
        PartnerRequest(request_id=str(uuid.uuid4()), tenant_id=tenant, operation="enhance",
                       params_json='{"scale": 3}', image=png_bytes(np.zeros((8, 8, 3), np.uint8))),
    ]
    expected = {uuid.UUID(r.request_id).hex: code for r, code in
                zip(requests, ["tenant-mismatch", "unsupported-image", "invalid-params"], strict=True)}
    consumer = AIOKafkaConsumer(PARTNER_EVENTS.format(tenant=tenant), auto_offset_reset="earliest",
                                bootstrap_servers=settings.kafka.bootstrap_servers, group_id=f"{tenant}-test")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await consumer.start()
    await producer.start()
    try:
        for request in requests:
            await producer.send_and_wait(PARTNER_REQUESTS.format(tenant=tenant), request.SerializeToString(),
                                         key=request.request_id.encode())
        failed = {}
        async with asyncio.timeout(120):
            async for record in consumer:
                event = JobEvent.FromString(record.value)
                assert event.tenant_id == tenant
                assert event.HasField("failed"), event  # refused before any job was queued
                failed[event.job_id] = event.failed.code
                if len(failed) == len(requests):
                    break
    finally:
        await producer.stop()
        await consumer.stop()
    assert failed == expected
