"""Prometheus /metrics of every service of the local stack, and a real job moving their counters.

Other tests may run jobs at the same time, so counters are checked to have moved at least as far as
this test's job moves them. Ports: infra/supervisord.conf (gateway 9430 and notifier 9440, apart from their
public ports 8080 and 8081, which answer 404 for /metrics; scheduler 9410, storage-janitor 9420) and
gpu-inference 9400 + N (infra/bin/gpu-inference).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .helpers import events_until, fresh, png_bytes, submit, supervisorctl

SERVICES = {"gateway": 9430, "notifier": 9440, "scheduler": 9410, "storage-janitor": 9420}
PUBLIC = {"gateway": 8080, "notifier": 8081}  # what an ingress exposes
# Each service's own families, present from its start (a labelled family before its first sample too).
OWN = {"gateway": {"photocraft_http_requests_total", "photocraft_jobs_submitted_total"},
       "notifier": {"photocraft_websocket_connections", "photocraft_websocket_send_queue_events",
                    "photocraft_events_relayed_total"},
       "scheduler": {"photocraft_jobs_finished_total", "photocraft_queue_wait_seconds",
                     "photocraft_stage_duration_seconds", "photocraft_kafka_consumer_lag_messages"},
       "storage-janitor": {"photocraft_janitor_jobs_purged_total", "photocraft_janitor_round_seconds"},
       "gpu-inference": {"photocraft_worker_step_seconds", "photocraft_kafka_hop_seconds",
                         "photocraft_residency_hits_total"}}

Samples = dict[tuple[str, frozenset], float]


def workers() -> dict[str, int]:
    """The running gpu-inference workers and their metrics ports."""
    running = [line.split()[0].removeprefix("services:") for line in supervisorctl("status").splitlines()
               if "gpu-inference-" in line and "RUNNING" in line]
    return {name: 9400 + int(name.rsplit("-", 1)[1]) for name in running}


def families(port: int) -> dict[str, list]:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain"), response.text
    # (the parser names a counter's family without its _total)
    return {family.name + ("_total" if family.type == "counter" else ""): family.samples
            for family in text_string_to_metric_families(response.text)}


def scrape(ports: list[int]) -> Samples:
    """Every sample of the services on ``ports``, summed across them (e.g. both gpu-inference workers)."""
    total: Samples = defaultdict(float)
    for port in ports:
        for samples in families(port).values():
            for sample in samples:
                total[sample.name, frozenset(sample.labels.items())] += sample.value
    return total


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, have), v in samples.items() if n == name and set(labels.items()) <= have)


def test_every_service_serves_its_metrics():
    ports = {**SERVICES, **workers()}
    assert len(ports) > len(SERVICES), "no gpu-inference worker is running"
    for service, port in ports.items():
        found = set(families(port))
        own = OWN[service.rsplit("-", 1)[0] if service.startswith("gpu-inference") else service]
        assert own <= found, f"{service} (:{port}) lacks {sorted(own - found)}"


def test_the_public_ports_do_not_serve_metrics():
    for service, port in PUBLIC.items():
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 404, f"{service} (:{port}) answered {response.status_code}"
        assert "photocraft_" not in response.text
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200  # the port is up


async def test_a_job_moves_the_counters_of_every_service(gateway, astronaut):
    gpu = list(workers().values())
    before = {name: scrape([port]) for name, port in SERVICES.items()} | {"gpu-inference": scrape(gpu)}
    response = await submit(gateway, png_bytes(fresh(astronaut)), "astronaut.png")
    assert response.status_code == 202, response.text
    events = await events_until(response.json())
    assert events[-1]["type"] == "completed", events[-1]

    # what the job moves: (service, metric, labels, at least)
    expected = [
        ("gateway", "photocraft_http_requests_total", {"route": "/v1/jobs", "method": "POST", "status": "202"}, 1),
        ("gateway", "photocraft_jobs_submitted_total", {"operation": "remove-background", "tier": "enterprise"}, 1),
        ("scheduler", "photocraft_jobs_finished_total", {"operation": "remove-background", "outcome": "completed"},
         1),
        ("scheduler", "photocraft_job_duration_seconds_count", {"operation": "remove-background"}, 1),
        ("scheduler", "photocraft_queue_wait_seconds_count", {"tier": "enterprise"}, 1),
        ("scheduler", "photocraft_stage_duration_seconds_count", {"model": "u2netp", "outcome": "output"}, 1),
        ("scheduler", "photocraft_kafka_hop_seconds_count", {"topic": "photocraft.jobs.submitted"}, 1),
        ("scheduler", "photocraft_kafka_hop_seconds_count", {"topic": "photocraft.tasks.results"}, 1),
        ("gpu-inference", "photocraft_kafka_hop_seconds_count", {"topic": "photocraft.tasks.model.u2netp"}, 1),
        *[("gpu-inference", "photocraft_worker_step_seconds_count", {"model": "u2netp", "step": step}, 1)
          for step in ("fetch", "decode", "model", "encode", "store")],
        ("notifier", "photocraft_events_relayed_total", {"kind": "completed"}, 1),
        ("notifier", "photocraft_kafka_hop_seconds_count", {"topic": "photocraft.jobs.events"}, len(events)),
        ("notifier", "photocraft_websocket_events_sent_total", {"feed": "job"}, len(events)),
    ]
    deadline = time.monotonic() + 30  # the last counters move as the terminal event is sent: almost at once
    while True:
        after = {name: scrape([port]) for name, port in SERVICES.items()} | {"gpu-inference": scrape(gpu)}
        moved = [(service, name, labels, total(after[service], name, **labels) - total(before[service], name, **labels),
                  least) for service, name, labels, least in expected]
        short = [row for row in moved if row[3] < row[4]]
        if not short or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert not short, "counters that did not move as far as the job: " + json.dumps(short)


async def test_consumer_lag_and_the_janitors_rounds_are_reported():
    """The lag gauges are refreshed every 15 s (photocraft_common.metrics.LAG_INTERVAL_S), the janitor's
    first pass runs at its start."""
    deadline = time.monotonic() + 40
    while True:
        scheduler, janitor = scrape([SERVICES["scheduler"]]), scrape([SERVICES["storage-janitor"]])
        groups = {dict(labels)["group"] for name, labels in scheduler
                  if name == "photocraft_kafka_consumer_lag_messages"}
        if {"photocraft-scheduler"} <= groups or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert "photocraft-scheduler" in groups, groups
    lag = total(scheduler, "photocraft_kafka_consumer_lag_messages", group="photocraft-scheduler",
                topic="photocraft.jobs.submitted")
    assert lag >= 0
    assert total(janitor, "photocraft_janitor_round_seconds_count", by="index") >= 1
