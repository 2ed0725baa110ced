"""One trace per job, in the real Jaeger that `make up` runs (infra/jaeger/config.yaml), read through its
HTTP API the way its UI reads it.

A restore job goes through the platform; then its lifetime is shortened (its expiry index entries moved to
the epoch) and the real storage-janitor program purges it. Its trace must then hold spans of all five
services, every span a descendant of the upload request's span (no orphan, no second root), every stage's
dispatch, task, Triton call and result among them, and the job in no other trace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from photocraft_common.contracts import new_id
from photocraft_common.expiry import ExpiryIndex, job_entry, object_entry
from photocraft_common.jobs import JobStore
from photocraft_common.storage import tenant_prefix
from photocraft_common.topics import JOB_EVENTS, TASK_RESULTS, model_topic

from .helpers import GATEWAY, events_until, fresh, listed, png_bytes, submit, tenant_key

JAEGER = "http://127.0.0.1:16686"
SERVICES = {f"photocraft-{name}" for name in ("gateway", "scheduler", "gpu-inference", "notifier", "storage-janitor")}
EPOCH = 1.0  # the shortened deadline
MODEL_TOPIC = model_topic("")  # the model topics' common prefix


@pytest.fixture(scope="module", autouse=True)
def jaeger_is_up() -> None:
    try:
        httpx.get(f"{JAEGER}/api/services", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"Jaeger is not running ({exc!r}); `make up` starts it", pytrace=False)


class Trace:
    """A trace as Jaeger's API gives it: its spans, each with ``service`` and ``parent`` (CHILD_OF) added."""

    def __init__(self, data: dict) -> None:
        services = {pid: process["serviceName"] for pid, process in data["processes"].items()}
        self.spans = {span["spanID"]: span for span in data["spans"]}
        for span in self.spans.values():
            span["service"] = services[span["processID"]]
            parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
            span["parent"] = parents[0] if parents else None
            span["tags_"] = {tag["key"]: tag["value"] for tag in span["tags"]}

    @property
    def services(self) -> set[str]:
        return {span["service"] for span in self.spans.values()}

    def named(self, service: str, suffix: str = "", prefix: str = "") -> list[dict]:
        return [span for span in self.spans.values() if span["service"] == service
                and span["operationName"].endswith(suffix) and span["operationName"].startswith(prefix)]

    def ancestors(self, span: dict) -> list[dict]:
        chain, seen = [], set()
        while span["parent"] is not None and span["parent"] not in seen:
            seen.add(span["parent"])
            span = self.spans.get(span["parent"], {"parent": None, "spanID": span["parent"], "missing": True})
            chain.append(span)
        return chain

    def descends(self, span: dict, root: dict) -> bool:
        return any(a["spanID"] == root["spanID"] for a in self.ancestors(span))


def get_trace(trace_id: str) -> Trace | None:
    response = httpx.get(f"{JAEGER}/api/traces/{trace_id}", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    [data] = response.json()["data"]
    return Trace(data)


def traces_tagged(service: str, tags: dict[str, str]) -> set[str]:
    """The ids of the traces with a span of ``service`` carrying ``tags`` (the last hour)."""
    params = {"service": service, "tags": json.dumps(tags), "lookback": "1h", "limit": 100}
    response = httpx.get(f"{JAEGER}/api/traces", params=params, timeout=10)
    response.raise_for_status()
    return {trace["traceID"] for trace in response.json()["data"] or []}


async def poll_trace(trace_id: str, complete: Callable[[Trace], bool], timeout_s: float = 60) -> Trace:
    """Poll Jaeger until the trace is ``complete`` (spans arrive in batches, every few seconds from each
    process); fails with what it holds after ``timeout_s``."""
    deadline, found = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(get_trace, trace_id)
        if found and complete(found):
            return found
        await asyncio.sleep(1)
    names = sorted(f"{s['service']}: {s['operationName']}" for s in found.spans.values()) if found else None
    raise AssertionError(f"trace {trace_id} incomplete after {timeout_s} s: {names}")


async def purge_with_the_janitor(settings, s3, redis, tenant: str, job_id: str) -> None:
    """Move every index entry of the job (its record's, its objects') to the epoch, then run the real janitor
    program until they are gone (its first pass runs at start) and stop it, which flushes its spans."""
    index, bucket = ExpiryIndex(redis, settings.job_ttl_s), settings.s3.bucket
    objects = listed(s3, bucket, tenant_prefix(settings.required_keyring(), tenant) + "/")
    assert objects, "the job left no object to purge"
    members = [job_entry(job_id)] + [object_entry(bucket, key) for key in objects]
    assert await redis.zadd(index.key, dict.fromkeys(members, EPOCH), xx=True, ch=True) == len(members)
    env = {**os.environ, "PHOTOCRAFT_INTERVAL_S": "3600", "PHOTOCRAFT_SWEEP_INTERVAL_S": "86400",
           "PHOTOCRAFT_PORT": "0"}  # one pass now, the next in an hour; the health server on any free port
    janitor = subprocess.Popen([Path(sys.executable).parent / "photocraft-storage-janitor"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with asyncio.timeout(60):  # (the platform's own janitor may take them first: as good)
            while any(due is not None for due in await index.dues(members)):
                await asyncio.sleep(0.2)
    finally:
        janitor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(janitor.wait, 30) == 0
    assert listed(s3, bucket, tenant_prefix(settings.required_keyring(), tenant) + "/") == []


async def test_a_restore_job_is_one_trace_across_all_five_services(settings, s3, redis, astronaut):
    tenant = f"trace-{new_id()[:10]}"
    api_key = tenant_key(tenant, "pro")
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        response = await submit(client, png_bytes(fresh(astronaut[::2, ::2])), operation="restore",
                                params="{}", headers=headers)
    assert response.status_code == 202, response.text
    job = response.json()
    events = await events_until(job, timeout_s=180)
    assert events[-1]["type"] == "completed", events[-1]
    started = [event["stage"] for event in events if event["type"] == "started"]
    assert started, "no stage ran on a worker"

    record = await JobStore(redis, settings.job_ttl_s).get(job["job_id"])
    version, trace_id, _, flags = record.traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1, record.traceparent  # recorded at intake, sampled
    await purge_with_the_janitor(settings, s3, redis, tenant, job["job_id"])

    trace = await poll_trace(trace_id, lambda found: found.services >= SERVICES
                             and found.named("photocraft-storage-janitor", prefix="purge job")
                             and len(found.named("photocraft-gpu-inference", suffix=" handle")) >= len(started)
                             and found.named("photocraft-notifier", prefix="send completed")
                             # a span ends, and is exported, after its children: wait for every parent
                             and all(s["parent"] is None or s["parent"] in found.spans for s in found.spans.values()))

    # One root, the upload request; every other span a descendant of it (none whose parent is missing).
    roots = [span for span in trace.spans.values() if span["parent"] is None]
    assert [(r["service"], r["operationName"]) for r in roots] == [("photocraft-gateway", "POST /v1/jobs")]
    [root] = roots
    orphans = [f"{s['service']}: {s['operationName']}" for s in trace.spans.values()
               if s is not root and not trace.descends(s, root)]
    assert orphans == []
    assert trace.services >= SERVICES

    # The job's own span at intake, each stage's dispatch (published as part of the job's trace from the
    # fair-share queue in Redis), its task on a worker, the Triton call, the result back to the scheduler.
    [intake] = trace.named("photocraft-gateway", prefix="job restore")
    assert intake["tags_"]["photocraft.job_id"] == job["job_id"]
    dispatched = Counter(s["operationName"].split()[0] for s in trace.named("photocraft-scheduler", " publish")
                         if s["operationName"].startswith(MODEL_TOPIC))
    handled = Counter(s["operationName"].split()[0] for s in trace.named("photocraft-gpu-inference", " handle"))
    # Every dispatched stage was handled; a task Kafka delivered again (a worker group rebalancing after a
    # restart) is handled twice, the second time by reusing the stored result, with no second `started`.
    assert set(handled) == set(dispatched) and all(handled[m] >= n for m, n in dispatched.items()), (
        dispatched, handled)
    assert sum(dispatched.values()) <= len(started) <= sum(handled.values()), (dispatched, handled, started)
    for task in trace.named("photocraft-gpu-inference", " handle"):
        below = [s for s in trace.spans.values() if trace.descends(s, task)]
        model = task["operationName"].split()[0].removeprefix(MODEL_TOPIC)
        # a stage whose parameters change nothing (restore's closing tone at 0) is not sent to Triton, and says so
        called = any(s["operationName"] == f"triton {model}" for s in below)
        assert called is not bool(task["tags_"].get("photocraft.unchanged")), task["operationName"]
        assert any(s["operationName"] == f"{TASK_RESULTS} publish" for s in below), task["operationName"]
        assert trace.descends(task, intake)
    assert len(trace.named("photocraft-scheduler", f"{TASK_RESULTS} process")) >= len(started)
    assert trace.named("photocraft-notifier", f"{JOB_EVENTS} process")
    [purged] = trace.named("photocraft-storage-janitor", prefix="purge job")
    assert purged["tags_"]["photocraft.job_id"] == job["job_id"] and trace.descends(purged, intake)
    assert [r["refType"] for r in purged["references"]].count("FOLLOWS_FROM") == 1  # the janitor's pass

    # The job is in no other trace: the spans of every service that name it (our spans by its id, Kafka's
    # by their message key, which FastStream records as bytes: base64 in Jaeger) are all in this one.
    key64 = base64.b64encode(job["job_id"].encode()).decode()
    for service in SERVICES:
        found = set().union(*(traces_tagged(service, tags) for tags in (
            {"photocraft.job_id": job["job_id"]}, {"messaging.kafka.message.key": job["job_id"]},
            {"messaging.kafka.message.key": key64})))
        assert found == {trace_id}, service

    # No credential reaches the traces: not in this one, nor in the WebSocket connection's own trace
    # (its span is linked from each send), whose URL carried the job's token.
    connections = {ref["traceID"] for send in trace.named("photocraft-notifier", prefix="send ")
                   for ref in send["references"] if ref["refType"] == "FOLLOWS_FROM"}
    assert connections and trace_id not in connections
    for seen in [trace, *[await poll_trace(other, lambda found: True) for other in connections]]:
        leaked = [(span["operationName"], key) for span in seen.spans.values() for key, value in span["tags_"].items()
                  if job["token"] in str(value) or api_key in str(value)]
        assert leaked == []
