"""A partner's side of Photocraft's Kafka contract, end to end.

    python examples/partner_client.py --tenant acme photo.jpg --operation remove-background -o out/

Sends one PartnerRequest to ``photocraft.partner.<tenant>.requests``, follows
``photocraft.partner.<tenant>.events`` until the job ends, prints each event
and downloads the result from the presigned URL. The tenant must be registered
(``photocraft-tenants partner acme``). The messages are the protobuf classes
generated from proto/photocraft/v1/jobs.proto; the contract is docs/partners.md
and docs/asyncapi.yaml. Exit status: 0 completed, 1 failed or cancelled.

A secured broker (docs/partners.md, "Secured Kafka") takes the options below or
the platform's variables, e.g.::

    PHOTOCRAFT_KAFKA__SASL_PASSWORD=... python examples/partner_client.py --tenant acme photo.jpg \
        --bootstrap kafka.example.com:9094 --security-protocol SASL_SSL --sasl-username acme --ssl-cafile ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import TopicPartition

from photocraft.v1.jobs_pb2 import JobEvent, PartnerRequest

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def connection(args: argparse.Namespace) -> dict:
    """aiokafka's connection arguments: the broker, TLS (the CA that signed the broker's certificate,
    optionally a client certificate) and SASL credentials, as the options say."""
    kwargs = {"bootstrap_servers": args.bootstrap, "security_protocol": args.security_protocol}
    if args.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context(cafile=args.ssl_cafile, certfile=args.ssl_certfile,
                                                   keyfile=args.ssl_keyfile)
    if args.security_protocol.startswith("SASL_"):
        if not (args.sasl_username and args.sasl_password):
            raise SystemExit(f"{args.security_protocol} needs --sasl-username and PHOTOCRAFT_KAFKA__SASL_PASSWORD")
        kwargs |= {"sasl_mechanism": args.sasl_mechanism, "sasl_plain_username": args.sasl_username,
                   "sasl_plain_password": args.sasl_password}
    return kwargs


async def end_offsets(kafka: dict, topic: str) -> dict[TopicPartition, int]:
    """Where the events topic ends now, so only this request's events are read."""
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        partitions = (await admin.describe_topics([topic]))[0]["partitions"]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**kafka)
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
    kafka = connection(args)
    start = await end_offsets(kafka, events)
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    producer = AIOKafkaProducer(**kafka, acks="all", max_request_size=MAX_MESSAGE_BYTES)
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
    env = os.environ.get
    kafka = parser.add_argument_group("Kafka connection (defaults: the PHOTOCRAFT_KAFKA__* variables)")
    kafka.add_argument("--bootstrap", default=env("PHOTOCRAFT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                       help="Kafka bootstrap servers")
    kafka.add_argument("--security-protocol", default=env("PHOTOCRAFT_KAFKA__SECURITY_PROTOCOL", "PLAINTEXT"),
                       choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    kafka.add_argument("--sasl-mechanism", default=env("PHOTOCRAFT_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512"),
                       choices=["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
    kafka.add_argument("--sasl-username", default=env("PHOTOCRAFT_KAFKA__SASL_USERNAME"),
                       help="your principal's name")
    # The password only from the environment, so that it stays out of the process list.
    parser.set_defaults(sasl_password=env("PHOTOCRAFT_KAFKA__SASL_PASSWORD"))
    kafka.add_argument("--ssl-cafile", default=env("PHOTOCRAFT_KAFKA__SSL_CAFILE"),
                       help="PEM file of the CA that signed the brokers' certificates (default: the system's CAs)")
    kafka.add_argument("--ssl-certfile", default=env("PHOTOCRAFT_KAFKA__SSL_CERTFILE"),
                       help="your client certificate (PEM), if the brokers require one")
    kafka.add_argument("--ssl-keyfile", default=env("PHOTOCRAFT_KAFKA__SSL_KEYFILE"), help="its private key (PEM)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the job to end")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
