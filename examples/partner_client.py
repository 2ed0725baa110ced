"""A partner's side of Photocraft's Kafka contract, end to end.

    python examples/partner_client.py --tenant acme photo.jpg --operation remove-background -o out/

Sends one PartnerRequest to ``photocraft.partner.<tenant>.requests``, follows
``photocraft.partner.<tenant>.events`` until the job ends, prints each event
and downloads the result from the presigned URL. The tenant must be registered
(``photocraft-tenants partner acme``). The messages are the protobuf classes
generated from proto/photocraft/v1/jobs.proto; the contract is docs/partners.md
and docs/asyncapi.yaml. Exit status: 0 completed, 1 failed or cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from photocraft.v1.jobs_pb2 import JobEvent, PartnerRequest

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Where the events topic ends now, so only this request's events are read."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = (await admin.describe_topics([topic]))[0]["partitions"]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(topic, p["partition"]) for p in partitions])
    finally:
        await consumer.stop()


async def run(args: argparse.Namespace) -> int:
    requests, events = f"photocraft.partner.{args.tenant}.requests", f"photocraft.partner.{args.tenant}.events"
    request = PartnerRequest(request_id=str(uuid.uuid4()), tenant_id=args.tenant,
                             operation=args.operation, params_json=args.params or "",
                             image=args.photo.read_bytes() if args.photo else b"")
    job_id = uuid.UUID(request.request_id).hex
    start = await end_offsets(args.bootstrap, events)
    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", max_request_size=MAX_MESSAGE_BYTES)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        await producer.send_and_wait(requests, request.SerializeToString(), key=request.request_id.encode())
        print(f"request {request.request_id} sent to {requests}; job {job_id}", flush=True)
        async with asyncio.timeout(args.timeout):
            async for record in consumer:
                event = JobEvent.FromString(record.value)
                if event.job_id != job_id:
                    continue
                kind = event.WhichOneof("kind")
                print(f"{kind:16} {getattr(event, kind)}".replace("\n", " "), flush=True)
                if kind == "completed":
                    return download(event, args.output, job_id)
                if kind in ("failed", "cancelled"):
                    return 1
    finally:
        await producer.stop()
        await consumer.stop()
    return 1


def download(event: JobEvent, folder: Path, job_id: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for ref in event.completed.results:
        path = folder / f"{job_id}-{ref.role or 'image'}{Path(ref.key).suffix}"
        path.write_bytes(httpx.get(ref.url, timeout=60).raise_for_status().content)
        print(f"result written to {path}", flush=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", type=Path, nargs="?", help="the photo (none for text-to-image)")
    parser.add_argument("--tenant", required=True, help="your partner tenant id")
    parser.add_argument("--operation", default="remove-background")
    parser.add_argument("--params", help="the operation's parameters, a JSON object")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/partner"))
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the job to end")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
