"""What the usage ledger costs a job's completion: scheduler replicas with usage reports on and off, side by side.

    make bench-ledger           (writes bench/results/ledger.md; about 3 minutes; part of `make bench`)
    .venv/bin/python bench/ledger.py --jobs 30      (a short trial)

The platform's scheduler is stopped and two stand-in replicas share its consumer groups at once: one started
with ``PHOTOCRAFT_USAGE_REPORTS=false`` (no UsageReport published, no ledger consumer) and one with the
default (each ended job reported on ``photocraft.usage.reports`` and recorded in PostgreSQL by its own ledger
consumer). Kafka gives each replica half the partitions of ``photocraft.jobs.submitted``, and a job's partition
follows from its id, so each job is handled by one replica, chosen as by a coin: the two sides run on the same
machine at the same time, which a noisy machine needs for a difference of a few ms to show. Afterwards the
ledger tells which replica handled each job: it holds exactly the "on" replica's jobs.

Jobs run one at a time through the gateway: remove-background of one small photo by one tenant, whose result
the scheduler reuses after the first job, so that a job's time is the platform's own path (upload, Kafka,
scheduler, events), where ledger work would show most. A job's time runs from its upload to its result
downloaded after its ``completed`` event. The first ``--settle-s`` seconds are not measured (the consumer
groups' rebalances as the replicas join). The platform's scheduler is started again at the end, whatever
happens.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import ours
import sqlalchemy as sa
import traces
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from PIL import Image

from photocraft_common.database import make_engine
from photocraft_common.settings import PlatformSettings
from photocraft_common.tables import usage_records
from photocraft_common.topics import LEDGER_GROUP, USAGE_REPORTS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEALTH_PORTS = {False: 9415, True: 9416}  # the stand-ins' /readyz (the platform's scheduler: 9410)
BUDGET_MS = 5.0  # issue 14: writing the ledger adds at most this to a job's completion p50


def supervisorctl(*args: str) -> None:
    subprocess.run([BIN / "supervisorctl", "-c", ROOT / "infra" / "supervisord.conf", *args], check=True,
                   capture_output=True)


def photo() -> bytes:
    """A 384 x 384 JPEG with a subject on a plain background."""
    y, x = np.mgrid[:384, :384]
    pixels = np.full((384, 384, 3), 235, np.uint8)
    pixels[(y - 200) ** 2 + (x - 190) ** 2 < 110 ** 2] = (180, 60, 40)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


async def start_scheduler(reports: bool, log: Path) -> subprocess.Popen:
    """A stand-in scheduler, ready (its /readyz answers 200); TimeoutError after 120 s."""
    port = HEALTH_PORTS[reports]
    env = {**os.environ, "PHOTOCRAFT_PORT": str(port), "PHOTOCRAFT_USAGE_REPORTS": str(reports).lower()}
    process = subprocess.Popen([BIN / "photocraft-scheduler"], env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the stand-in scheduler exited ({process.returncode}); see {log}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)  # a process starting up: nothing to wait on but polling
    process.terminate()
    raise TimeoutError("the stand-in scheduler was not ready within 120 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def run(jobs: int, settle_s: float, work: Path) -> list[dict]:
    """``jobs`` jobs one at a time, after ``settle_s`` seconds of unmeasured ones, with both replicas up."""
    data, runs = photo(), []
    replicas = [await start_scheduler(reports, work / f"ledger-scheduler-{reports}.log") for reports in (False, True)]
    try:
        async with ours.Client("ledger") as client:
            settling = time.monotonic() + settle_s
            while time.monotonic() < settling:
                await client.one(data)
            for n in range(jobs):
                seconds, _, job_id = await client.one(data)
                runs.append({"seconds": seconds, "job_id": job_id})
                if (n + 1) % 50 == 0:
                    print(f"{n + 1}/{jobs} jobs", flush=True)
    finally:
        for replica in replicas:
            stop(replica)
    return runs


async def recorded(job_ids: list[str], timeout_s: float = 120) -> set[str]:
    """Which of ``job_ids`` the ledger holds, once the ledger consumer group has read every report written so
    far (the platform's scheduler runs it); TimeoutError after ``timeout_s``."""
    settings = PlatformSettings()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    await admin.start()
    try:
        parts = [TopicPartition(USAGE_REPORTS, p) for p in consumer.partitions_for_topic(USAGE_REPORTS) or ()]
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(LEDGER_GROUP)
            if all(end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ledger consumer did not catch up within {timeout_s:.0f} s")
            await asyncio.sleep(0.5)  # its lag: polled
    finally:
        await consumer.stop()
        await admin.close()
    engine = make_engine(settings.database)
    try:
        async with engine.connect() as connection:
            return set((await connection.execute(
                sa.select(usage_records.c.job_id).where(usage_records.c.job_id.in_(job_ids)))).scalars())
    finally:
        await engine.dispose()


def scheduler_ms(job_id: str) -> float | None:
    """Milliseconds from the scheduler taking the job's JobSubmitted in to the end of its last event's publish
    (for one job outside a batch, its terminal event), from the job's trace in Jaeger; None without one."""
    trace = traces.fetch(job_id)
    if trace is None:
        return None
    services = {key: p["serviceName"] for key, p in trace["processes"].items()}
    spans = [s for s in trace["spans"] if services[s["processID"]] == "photocraft-scheduler"]
    taken = [s["startTime"] for s in spans if s["operationName"] == "photocraft.jobs.submitted process"]
    ends = [s["startTime"] + s["duration"] for s in spans if s["operationName"] == "photocraft.jobs.events publish"]
    return (max(ends) - min(taken)) / 1000 if taken and ends else None


def median_gap(on: list[float], off: list[float]) -> tuple[float, float, float]:
    """p50(on) - p50(off), and the 5th and 95th percentiles of that difference over resamples."""
    rng = np.random.default_rng(14)
    spread = [np.median(rng.choice(on, len(on))) - np.median(rng.choice(off, len(off))) for _ in range(2000)]
    return float(np.median(on) - np.median(off)), *map(float, np.percentile(spread, [5, 95]))


def report(on: list[float], off: list[float], sched_on: list[float], sched_off: list[float]) -> str:
    """The markdown report of job times (ms) handled by the replica with reports ``on`` and ``off``, and of the
    scheduler's part of them (``sched_*``: scheduler_ms)."""
    s_added, s_low, s_high = median_gap(sched_on, sched_off)
    added, low, high = median_gap(on, off)
    verdict = "met" if added <= BUDGET_MS else "NOT met"
    return "\n".join([
        "# The usage ledger's cost to a job's completion", "",
        "Written by `make bench-ledger` (bench/ledger.py): two scheduler replicas side by side, usage reports on "
        "and off, each job handled by one of them (its partition); one at a time, remove-background of one "
        "384 x 384 photo whose result is reused (the platform's own path), after 20 s of unmeasured jobs. "
        "Times: upload to result downloaded after the `completed` event. Which replica handled a job: whether "
        "the ledger holds it.", "",
        "| replica | jobs | p50 ms | p90 ms |", "|---|---|---|---|",
        f"| usage reports off | {len(off)} | {statistics.median(off):.1f} | {np.percentile(off, 90):.1f} |",
        f"| usage reports on (recorded in the ledger) | {len(on)} | {statistics.median(on):.1f} | "
        f"{np.percentile(on, 90):.1f} |", "",
        f"Added to the completion p50: **{added:+.1f} ms** (budget {BUDGET_MS:g} ms: {verdict}); 90% of "
        f"resampled differences lie in [{low:+.1f}, {high:+.1f}] ms. The report is published after the job's "
        "terminal event and the ledger is written by its own consumer group, so what a job waits for is the "
        "report's build; the rest is this machine's noise.", "",
        "The scheduler's own part, from the job's trace (JobSubmitted taken in to its terminal event published; "
        f"{len(sched_off)} and {len(sched_on)} traces): p50 {statistics.median(sched_off):.1f} ms off, "
        f"{statistics.median(sched_on):.1f} ms on, **{s_added:+.1f} ms** [{s_low:+.1f}, {s_high:+.1f}].", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=400, help="jobs measured")
    parser.add_argument("--settle-s", type=float, default=20, help="seconds of unmeasured jobs first")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    work = ROOT / "var" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    supervisorctl("stop", "services:scheduler")
    try:
        runs = asyncio.run(run(args.jobs, args.settle_s, work))
    finally:
        supervisorctl("start", "services:scheduler")  # its ledger consumer records what is left
    ids = [r["job_id"] for r in runs]
    found = asyncio.run(recorded(ids))
    (work / "ledger.json").write_text(json.dumps([{**r, "reports": r["job_id"] in found} for r in runs], indent=1))
    if not traces.reachable():
        raise SystemExit("Jaeger does not answer on 127.0.0.1:16686 (make up starts it)")
    on = [1000 * r["seconds"] for r in runs if r["job_id"] in found]
    off = [1000 * r["seconds"] for r in runs if r["job_id"] not in found]
    if len(on) < 10 or len(off) < 10:
        raise SystemExit(f"{len(on)} jobs were handled by the 'on' replica and {len(off)} by the 'off' one: "
                         "too few on one side (did both join the consumer group?)")
    sched = {r["job_id"]: scheduler_ms(r["job_id"]) for r in runs}
    sched_on = [ms for job_id, ms in sched.items() if ms is not None and job_id in found]
    sched_off = [ms for job_id, ms in sched.items() if ms is not None and job_id not in found]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ledger.md").write_text(text := report(on, off, sched_on, sched_off))
    print(text)


if __name__ == "__main__":
    main()
