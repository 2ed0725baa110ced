"""Fairness under a 5x overload: our scheduler against plain FIFO, in one run.

    make bench-fairness           (writes bench/results/fairness.md)

The platform's capacity for the workload (remove-background on 512x512
photos) is measured first. Then three scenarios, each with a measurement
window of WINDOW_S seconds followed by a full drain:

1. unloaded: the paying tenants alone: two pro tenants and an enterprise one
   send single photos at a steady rate, and a pro tenant sends a 50-photo
   batch at the start of the window and another half way;
2. flood, fair share: before the window, free-tier tenants flood the platform
   until their backlog, with the paying tenants' arrivals, is 5x the work
   the platform can do in the window; then the paying tenants as in 1;
3. flood, FIFO: the same, with the scheduler swapped for one with
   ``fair_share`` off (each stage straight to its topic, in arrival order).

The flood is submitted before the window, while the scheduler is stopped (it
waits in Kafka, as it would behind a busy scheduler), rather than during it:
the gateway shares this machine's two cores with inference, so taking in
photos at 5x capacity would slow the workers, and the paying tenants' waits
would measure that rather than the scheduler. The scheduler then starts,
takes the flood in, and the window opens.

A job's queue wait is the time from its ``received`` event to its first
``started`` event (both from the job's event log in Redis).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from machine import cpu_model  # bench/machine.py: scripts run from bench/
from PIL import Image
from redis.asyncio import Redis
from skimage import data

from photocraft_common.accounts import Accounts
from photocraft_common.contracts import JobEvent, to_datetime
from photocraft_common.database import make_engine
from photocraft_common.tiers import LANE_COST, Lane, Tier
from photocraft_gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "results" / "fairness.md"
GATEWAY = "http://127.0.0.1:8080"
WINDOW_S = 40.0
OVERLOAD = 5.0
PAID_SHARE = 0.25  # of capacity, what the paying tenants' single photos ask for together
BATCH = 50
FREE_JOBS_PER_TENANT = 40  # under the free tier's daily quota of 50
FLOOD_CONCURRENCY = 16  # uploads in flight while flooding
GROUPS = ("enterprise", "pro", "pro batches", "free")
FINISHED = (b"completed", b"failed")
BIN = Path(sys.executable).parent


def photo(seed: int) -> bytes:
    """The 512x512 astronaut with one pixel of its own, so no two jobs share a result: PNG bytes."""
    pixels = data.astronaut()
    pixels[0, 0] = [(seed >> shift) & 255 for shift in (0, 8, 16)]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Run:
    """One scenario: its tenants (name -> (tier, API key)) and the jobs they submitted."""

    def __init__(self, client: httpx.AsyncClient, store: Redis) -> None:
        self.client, self.store = client, store
        self.engine = make_engine(GatewaySettings().database)  # the API keys' PostgreSQL; dispose when done
        self.accounts = Accounts(self.engine)  # API keys only: no keyring needed
        self.keys: dict[str, tuple[Tier, str]] = {}
        self.jobs: dict[str, tuple[str, Tier, str]] = {}  # job id -> (tenant, tier, lane)
        self.counter = itertools.count()
        self.suffix = uuid.uuid4().hex[:6]  # new tenants each run, so no daily quota carries over

    async def tenant(self, name: str, tier: Tier) -> str:
        self.keys[name] = (tier, await self.accounts.create_key(f"bench-{self.suffix}-{name}", tier))
        return name

    async def submit(self, tenant: str, batch: int = 0) -> None:
        tier, key = self.keys[tenant]
        seed = next(self.counter) * 1000
        form = {"data": {"operation": "remove-background"}, "headers": {"Authorization": f"Bearer {key}"}}
        if batch:
            files = [("files", (f"{n}.png", photo(seed + n))) for n in range(batch)]
            accepted = (await self.client.post("/v1/batches", files=files, **form)).raise_for_status().json()["jobs"]
        else:
            response = await self.client.post("/v1/jobs", files={"file": ("p.png", photo(seed))}, **form)
            accepted = [response.raise_for_status().json()]
        for job in accepted:
            self.jobs[job["job_id"]] = (tenant, tier, job["lane"])

    async def unfinished(self, tier: Tier | None = None) -> list[str]:
        """Ids of the jobs (of ``tier``, or all) not yet completed or failed."""
        ids = [j for j, (_, t, _) in self.jobs.items() if tier in (None, t)]
        async with self.store.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(f"photocraft:job:{job_id}", "status")
            statuses = await pipe.execute()
        return [j for j, s in zip(ids, statuses, strict=True) if s not in FINISHED]

    async def flood(self, backlog: int) -> None:
        """Free tenants submit ``backlog`` photos, FREE_JOBS_PER_TENANT each."""
        for sent in range(0, backlog, FLOOD_CONCURRENCY):
            names = [f"free-{n // FREE_JOBS_PER_TENANT}" for n in range(sent, min(backlog, sent + FLOOD_CONCURRENCY))]
            for name in set(names) - set(self.keys):
                await self.tenant(name, Tier.FREE)
            await asyncio.gather(*(self.submit(name) for name in names))
            print(f"\r  flood: {sent + len(names)} of {backlog} sent", end="", flush=True)
        print()

    async def until_queued(self, timeout_s: float = 300) -> None:
        """Wait until the scheduler has taken in every job so far (each has its ``queued`` event)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with self.store.pipeline(transaction=False) as pipe:
                for job_id in self.jobs:
                    pipe.xlen(f"photocraft:job:{job_id}:events")
                if min(await pipe.execute()) >= 2:
                    return
            await asyncio.sleep(0.5)
        raise RuntimeError("the scheduler did not take in the flood")

    async def steady(self, tenant: str, rate: float) -> None:
        """Single photos at ``rate`` per second for the window."""
        sent, stop_at = [], time.monotonic() + WINDOW_S
        while time.monotonic() < stop_at:
            sent.append(asyncio.create_task(self.submit(tenant)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*sent)

    async def batches(self, tenant: str) -> None:
        """A batch at the start of the window and another half way."""
        await self.submit(tenant, batch=BATCH)
        await asyncio.sleep(WINDOW_S / 2)
        await self.submit(tenant, batch=BATCH)

    async def drain(self, timeout_s: float = 1800) -> None:
        deadline = time.monotonic() + timeout_s
        while await self.unfinished():
            if time.monotonic() > deadline:
                raise RuntimeError("jobs did not finish")
            await asyncio.sleep(1)

    async def timings(self) -> dict[str, tuple[float, float]]:
        """Job id -> (received, first started), Unix seconds, from the jobs' event logs."""
        found = {}
        for job_id in self.jobs:
            received = started = None
            for _, fields in await self.store.xrange(f"photocraft:job:{job_id}:events"):
                event = JobEvent.FromString(fields[b"event"])
                kind = event.WhichOneof("kind")
                at = to_datetime(event.time).timestamp()
                received = at if kind == "received" else received
                if kind == "started" and started is None:
                    started = at
            found[job_id] = (received, started)
        return found

    def group(self, tenant: str) -> str:
        return "pro batches" if tenant == "pro-batch" else self.keys[tenant][0].value


async def scenario(capacity: float, flood: bool, fifo: bool = False) -> dict:
    """One scenario, drained: the run, the jobs' timings, and the window (Unix seconds).

    The flood is submitted while the scheduler is stopped (it waits in Kafka), then the
    scheduler (``fifo``: one with fair share off) starts, takes it in, and the window opens."""
    paid_rate = PAID_SHARE * capacity
    backlog = int(OVERLOAD * capacity * WINDOW_S - paid_rate * WINDOW_S - 2 * BATCH) if flood else 0
    store = Redis()
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=300) as client:
        run = Run(client, store)
        paying = [await run.tenant(name, tier) for name, tier in
                  (("enterprise", Tier.ENTERPRISE), ("pro-a", Tier.PRO), ("pro-b", Tier.PRO))]
        await run.tenant("pro-batch", Tier.PRO)
        stand_in = None
        if backlog:
            supervisorctl("stop", "services:scheduler")
            await run.flood(backlog)
            if fifo:
                stand_in = start_fifo_scheduler()
            else:
                supervisorctl("start", "services:scheduler")
            await run.until_queued()
        try:
            window_start = time.time()
            await asyncio.gather(run.batches("pro-batch"),
                                 *(run.steady(t, paid_rate / len(paying)) for t in paying))
            await run.drain()
        finally:
            if stand_in is not None:
                stand_in.terminate()
                stand_in.wait(timeout=60)
                supervisorctl("start", "services:scheduler")
        timing = await run.timings()
    await store.aclose()
    await run.engine.dispose()
    return {"run": run, "timing": timing, "window": (window_start, window_start + WINDOW_S), "backlog": backlog}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def jain(values: list[float]) -> float:
    """Jain's fairness index (Jain, Chiu, Hawe, DEC-TR-301, 1984): 1 when all equal, 1/n when one gets all."""
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if any(values) else float("nan")


def summarise(result: dict, weights: dict[Tier, int]) -> dict:
    """Waits per group of tenants; Jain index, work asked and work started per tier, in the window."""
    run, timing = result["run"], result["timing"]
    start, end = result["window"]
    waits: dict[str, list[float]] = defaultdict(list)
    started: dict[str, int] = defaultdict(int)
    asked: dict[Tier, float] = defaultdict(float)
    served: dict[Tier, float] = defaultdict(float)
    for job_id, (tenant, tier, lane) in run.jobs.items():
        received, began = timing[job_id]
        waits[run.group(tenant)].append(began - received)
        cost = LANE_COST[Lane(lane)]
        if received <= end and began >= start:  # waiting or arriving in the window
            asked[tier] += cost
        if start <= began <= end:
            started[tenant] += 1
            served[tier] += cost
    groups = {
        g: {"jobs": len(w), "p50": percentile(w, 50), "p99": percentile(w, 99), "max": max(w)}
        for g in GROUPS if (w := waits[g])
    }
    present = sum(weights[t] for t in asked)
    tiers = {}
    for tier in asked:
        alike = [t for t in run.keys if run.keys[t][0] is tier and t != "pro-batch"]  # tenants asking alike
        tiers[tier] = {
            "jain": jain([started[t] / weights[tier] for t in alike]),
            "asked": asked[tier] / sum(asked.values()), "served": served[tier] / sum(served.values()),
            "entitled": weights[tier] / present,
        }
    return {"groups": groups, "tiers": tiers, "backlog": result["backlog"]}


def measure_capacity() -> float:
    """Jobs per second the platform completes on this workload, all slots busy."""

    async def probe() -> float:
        store = Redis()
        async with httpx.AsyncClient(base_url=GATEWAY, timeout=300) as client:
            run = Run(client, store)
            tenant = await run.tenant("enterprise", Tier.ENTERPRISE)
            await asyncio.gather(*(run.submit(tenant) for _ in range(40)))
            began = time.monotonic()
            await run.drain()
        await store.aclose()
        await run.engine.dispose()
        return len(run.jobs) / (time.monotonic() - began)

    return asyncio.run(probe())


def supervisorctl(*args: str) -> None:
    subprocess.run([BIN / "supervisorctl", "-c", ROOT / "infra" / "supervisord.conf", *args], check=True,
                   capture_output=True)


def start_fifo_scheduler() -> subprocess.Popen:
    """A scheduler with fair share off, standing in for the platform's (stopped)."""
    return subprocess.Popen([BIN / "photocraft-scheduler"], env={**os.environ, "PHOTOCRAFT_FAIR_SHARE": "false"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    weights = {tier: policy.weight for tier, policy in GatewaySettings().tiers.items()}
    began = time.monotonic()
    capacity = measure_capacity()
    print(f"capacity: {capacity:.2f} jobs/s", flush=True)
    results = {"unloaded": summarise(asyncio.run(scenario(capacity, flood=False)), weights)}
    print("unloaded done", flush=True)
    results["flood, fair share (ours)"] = summarise(asyncio.run(scenario(capacity, flood=True)), weights)
    print("fair share done", flush=True)
    results["flood, FIFO"] = summarise(asyncio.run(scenario(capacity, flood=True, fifo=True)), weights)
    write_report(results, capacity, time.monotonic() - began, weights)


def write_report(results: dict, capacity: float, seconds: float, weights: dict[Tier, int]) -> None:
    cpu = cpu_model()
    backlog = results["flood, fair share (ours)"]["backlog"]
    lines = [
        "# Fairness under a 5x overload: fair share against FIFO",
        "",
        f"Produced by `make bench-fairness` (bench/fairness.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{cpu}, in {seconds / 60:.1f} min, on the platform `make up` starts (two gpu-inference workers, CPU "
        f"Triton). Workload: remove-background on 512x512 photos; measured capacity {capacity:.2f} jobs/s. "
        f"Window: {WINDOW_S:.0f} s, in which two pro tenants and an enterprise one send single photos "
        f"({PAID_SHARE:.0%} of capacity together) and a pro tenant sends a {BATCH}-photo batch at the start and "
        f"another half way (\"pro batches\"). Under the flood, free tenants first build a backlog of {backlog} "
        f"photos, so that backlog and arrivals are {OVERLOAD:.0f}x what the platform does in the window. Tier "
        "weights: " + ", ".join(f"{t.value} {w}" for t, w in weights.items()) + ".",
        "",
        "## Queue waits",
        "",
        "Seconds from a job's `received` event to its first `started` event.",
        "",
        "| scenario | tenants | jobs | p50 wait | p99 wait | longest wait |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for group, g in result["groups"].items():
            lines.append(f"| {name} | {group} | {g['jobs']} | {g['p50']:.2f} | {g['p99']:.2f} | {g['max']:.2f} |")
    lines += [
        "",
        "## Shares in the window",
        "",
        "Work in lane costs (fast 1, standard 2, heavy 4). asked: the tier's share of the work waiting or arriving "
        "in the window; served: its share of the work started in it; entitled: its weight over the weights of "
        "the tiers asking, its guaranteed share while all of them wait. Jain index: over the weight-normalised "
        "jobs started per tenant, among the tier's tenants that ask alike (the batch tenant apart).",
        "",
        "| scenario | tier | Jain index | asked | served | entitled |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for tier, t in result["tiers"].items():
            lines.append(f"| {name} | {tier.value} | {t['jain']:.3f} | {t['asked']:.0%} | {t['served']:.0%} | "
                         f"{t['entitled']:.0%} |")
    unloaded, fair, fifo = (results[k]["groups"] for k in ("unloaded", "flood, fair share (ours)", "flood, FIFO"))
    verdicts = []
    for group in ("enterprise", "pro", "pro batches"):
        ratio = fair[group]["p99"] / unloaded[group]["p99"]
        verdicts.append(f"- {group}: p99 wait under the flood {fair[group]['p99']:.2f} s with fair share, "
                        f"{ratio:.2f}x its unloaded {unloaded[group]['p99']:.2f} s "
                        f"({'within' if ratio <= 2 else 'NOT within'} 2x); with FIFO {fifo[group]['p99']:.2f} s "
                        f"({fifo[group]['p99'] / unloaded[group]['p99']:.1f}x).")
    verdicts.append(f"- free: longest wait {fair['free']['max']:.0f} s with fair share, {fifo['free']['max']:.0f} s "
                    "with FIFO: the paying tiers' work goes first, so the free backlog drains later.")
    lines += ["", "## Verdict", "", *verdicts, ""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines))
    print(f"report written to {REPORT}")


if __name__ == "__main__":
    main()
