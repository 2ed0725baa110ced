"""Fan-out benchmark: one notifier process, 1,000 and 10,000 WebSocket clients on one job.

Starts a notifier of its own (port 8089, in the platform's consumer group), opens
the clients from CLIENT_PROCESSES processes, then writes progress events to
Kafka (``photocraft.jobs.events``) the way workers do, each stamped with its
send time. Delivery latency is the time from the write to Kafka to a client
receiving it: Kafka, the notifier that logs it in Redis, pub/sub to every
replica, and the fan-out. Memory per connection is the growth of the notifier's
resident memory (VmRSS) divided by the clients. Server and clients share the
machine's cores, so the figures are an upper bound of what a notifier alone
does. Results: bench/results/notifier.md.

    make bench-notifier            # or: .venv/bin/python bench/notifier.py --clients 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import websockets
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from photocraft_common.contracts import JobEvent, Progress, new_id, now
from photocraft_common.jobs import JobStore
from photocraft_common.settings import PlatformSettings
from photocraft_common.topics import JOB_EVENTS

ROOT = Path(__file__).resolve().parents[1]
PORT = 8089
CLIENT_PROCESSES = 4
EVENTS = 20
EVENT_GAP_S = 1.0


def client_process(url: str, clients: int, events: int, ready, results) -> None:
    """Open ``clients`` WebSockets, report ready, then record each event's latency (ms) on every client."""

    async def main() -> tuple[list[float], int, float]:
        latencies: list[float] = []
        out_of_order = 0

        async def one(socket) -> None:
            nonlocal out_of_order
            last = 0
            async for raw in socket:
                message = json.loads(raw)
                if message["type"] == "progress":
                    latencies.append(time.time() * 1000 - float(message["message"]))
                    out_of_order += message["seq"] != last + 1
                    last = message["seq"]
                    if message["percent"] >= 100:
                        return

        sockets = []
        for start in range(0, clients, 250):  # within the server's listen backlog
            sockets += await asyncio.gather(*(websockets.connect(url, open_timeout=60, ping_interval=None)
                                              for _ in range(start, min(clients, start + 250))))
        ready.put(len(sockets))
        await asyncio.wait_for(asyncio.gather(*map(one, sockets)), events * EVENT_GAP_S + 120)
        finished = time.time()
        await asyncio.gather(*(s.close() for s in sockets))
        return latencies, out_of_order, finished

    results.put(asyncio.run(main()))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_notifier() -> subprocess.Popen:
    # Every client follows one job with one token from 127.0.0.1: the connection limits must hold them all.
    env = {**os.environ, "PHOTOCRAFT_PORT": str(PORT), "PHOTOCRAFT_HEARTBEAT_S": "300",
           "PHOTOCRAFT_LOG_LEVEL": "WARNING", "PHOTOCRAFT_CONNECTIONS_PER_IP": "100000",
           "PHOTOCRAFT_CONNECTIONS_PER_CREDENTIAL": "100000"}
    log = open(ROOT / "var" / "log" / "notifier-bench.log", "ab")  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen([Path(sys.executable).parent / "photocraft-notifier"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            if process.poll() is not None:
                raise SystemExit("the notifier exited; see var/log/notifier-bench.log") from None
            time.sleep(0.5)
    raise SystemExit("the notifier did not start")


async def a_job(settings: PlatformSettings) -> tuple[str, str, str]:
    """A job record for the clients to follow: (job id, tenant, token)."""
    job_id, tenant, token = new_id(), f"bench-{new_id()[:8]}", secrets.token_urlsafe(16)
    redis = Redis.from_url(settings.redis.url)
    try:
        await JobStore(redis, 3600).create(job_id, tenant, "remove-background", "{}", None, token, "pro", "fast")
    finally:
        await redis.aclose()
    return job_id, tenant, token


async def send_events(settings: PlatformSettings, job_id: str, tenant: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for n in range(1, EVENTS + 1):
            sent_ms = str(time.time() * 1000)
            event = JobEvent(event_id=new_id(), job_id=job_id, tenant_id=tenant, time=now(),
                             progress=Progress(stage="bench", percent=100 * n / EVENTS, message=sent_ms))
            await producer.send_and_wait(JOB_EVENTS, event.SerializeToString(), key=job_id.encode())
            await asyncio.sleep(EVENT_GAP_S)
    finally:
        await producer.stop()


def run(clients: int, notifier: subprocess.Popen, settings: PlatformSettings) -> dict:
    job_id, tenant, token = asyncio.run(a_job(settings))
    url = f"ws://127.0.0.1:{PORT}/v1/jobs/{job_id}/events?token={token}"
    before = rss_bytes(notifier.pid)
    ready, results = multiprocessing.Queue(), multiprocessing.Queue()
    shares = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    workers = [multiprocessing.Process(target=client_process, args=(url, n, EVENTS, ready, results)) for n in shares]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    connected = sum(ready.get(timeout=600) for _ in workers)
    connect_s = time.monotonic() - began
    time.sleep(2)
    during = rss_bytes(notifier.pid)
    first_sent = time.time()
    asyncio.run(send_events(settings, job_id, tenant))
    reports = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(x for found, _, _ in reports for x in found)
    return {
        "clients": connected, "connect_s": connect_s, "deliveries": len(latencies),
        "expected": connected * EVENTS, "out_of_order": sum(n for _, n, _ in reports),
        "rate": len(latencies) / (max(at for _, _, at in reports) - first_sent), "p50": statistics.median(latencies),
        "p99": latencies[int(0.99 * (len(latencies) - 1))], "max": latencies[-1],
        "per_connection_kib": (during - before) / connected / 1024,
    }


def report(rows: list[dict]) -> str:
    lines = [
        "# Notifier fan-out",
        "",
        f"One notifier process, {EVENTS} progress events one second apart to every client of one job; "
        f"clients in {CLIENT_PROCESSES} processes on the same machine ({platform.machine()}, "
        f"{os.cpu_count()} cores). Latency: from the event's write to Kafka to its arrival at a client, "
        "through Kafka, the Redis event log and pub/sub. Memory: the notifier's resident memory growth per "
        "open connection. Made by `make bench-notifier` (bench/notifier.py).",
        "",
        "| clients | connected in | deliveries | out of order | deliveries per s | latency p50 | latency p99 "
        "| latency max | memory per connection |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['clients']:,} | {r['connect_s']:.1f} s | {r['deliveries']:,} of {r['expected']:,} | "
                     f"{r['out_of_order']} | {r['rate']:,.0f} | {r['p50']:.0f} ms | {r['p99']:.0f} ms | "
                     f"{r['max']:.0f} ms | {r['per_connection_kib']:.1f} KiB |")
    lines += ["", "Deliveries per second: all deliveries over the time from the first event's write to the last "
              "arrival. When the clients ask for more than that (clients x 1 event per second), events wait "
              "their turn in each connection's queue and latency grows by seconds: one process on this machine, "
              "sharing its two cores with the clients, cannot send one event a second to 10,000 clients. Such "
              "audiences need several notifier replicas (each serves its own connections; every replica gets "
              "every event). A client that falls behind by more than `send_queue` events is told to resync "
              "rather than slowing the others (tests/platform/test_notifier.py)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "notifier.md")
    args = parser.parse_args()
    settings = PlatformSettings()
    notifier = start_notifier()
    try:
        rows = []
        for clients in args.clients:
            rows.append(run(clients, notifier, settings))
            print(rows[-1], flush=True)
    finally:
        notifier.terminate()
        try:
            notifier.wait(30)
        except subprocess.TimeoutExpired:
            notifier.kill()
    args.output.write_text(report(rows))
    print(report(rows))


if __name__ == "__main__":
    main()
