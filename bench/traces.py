"""A job's trace from Jaeger's HTTP query API, and where its time went, for the speed benchmark.

The platform traces every job (photocraft_common.telemetry): its root span, named ``job <operation>``
in photocraft-gateway, carries ``photocraft.job_id``; each service's spans carry its service name
(``photocraft-<service>``); Kafka's producer and consumer spans carry ``span.kind`` and the topic
(``messaging.destination.name``, or ``messaging.destination_publish.name`` on a consumer's span).
Jaeger answers ``GET /api/traces?service=...&tags=...`` with ``{"data": [{"traceID", "spans": [...],
"processes": {...}}]}``, each span with ``spanID``, ``operationName``, ``references`` (``CHILD_OF``
its parent), ``startTime`` and ``duration`` in microseconds, ``tags`` and ``processID``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import httpx

JAEGER = "http://127.0.0.1:16686"
ROOT_SERVICE = "photocraft-gateway"
JOB_TAG = "photocraft.job_id"
# Where a consumer span names its topic (FastStream's Kafka middleware uses the second).
TOPIC_TAGS = ("messaging.destination.name", "messaging.destination_publish.name", "messaging.destination")
_ID = re.compile(r"[0-9a-f]{12,}")  # ids in span names (jobs, tasks) would make every name distinct


def reachable(base: str = JAEGER) -> bool:
    """Whether Jaeger's query API answers at ``base``."""
    try:
        return httpx.get(f"{base}/api/services", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def fetch(job_id: str, base: str = JAEGER, lookback: str = "2h") -> dict | None:
    """The trace of ``job_id`` as Jaeger returns it (one element of ``data``), or None if it has none.
    Raises httpx.HTTPError when Jaeger does not answer."""
    response = httpx.get(f"{base}/api/traces", timeout=30, params={
        "service": ROOT_SERVICE, "tags": json.dumps({JOB_TAG: job_id}), "lookback": lookback, "limit": 5})
    response.raise_for_status()
    found = response.json().get("data") or []
    return max(found, key=lambda t: len(t["spans"])) if found else None


def _tags(span: dict) -> dict:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def _parent(span: dict) -> str | None:
    return next((ref["spanID"] for ref in span.get("references", []) if ref.get("refType") == "CHILD_OF"), None)


def hops(trace: dict) -> dict[str, float]:
    """Milliseconds of one job's trace by hop:

    - ``trace``: from its first span's start to its last span's end;
    - ``<service>``: the time of the service's outermost spans (those whose parent is in another
      service, or none), summed; the service named without ``photocraft-``;
    - ``<service>: own code``: the part of those outermost spans outside their direct child spans
      (e.g. decoding, matting and encoding in gpu-inference, which have no spans of their own);
    - ``<service>: <span name>``: every span inside a service's outermost ones, by its name (ids left
      out), summed: e.g. ``gpu-inference: triton u2netp`` or ``gpu-inference: S3.PutObject``;
    - ``kafka <topic>``: from a producer span's start to the start of its consumer child (publish to
      processing); the job's slowest message on that topic.
    """
    spans = {s["spanID"]: s for s in trace["spans"]}
    service = {sid: trace["processes"][s["processID"]]["serviceName"].removeprefix("photocraft-")
               for sid, s in spans.items()}
    children: dict[str, list[dict]] = defaultdict(list)
    for span in spans.values():
        if _parent(span) in spans:
            children[_parent(span)].append(span)
    totals: dict[str, float] = defaultdict(float)
    totals["trace"] = (max(s["startTime"] + s["duration"] for s in spans.values())
                       - min(s["startTime"] for s in spans.values())) / 1000
    for sid, span in spans.items():
        parent, tags, ms = _parent(span), _tags(span), span["duration"] / 1000
        if parent not in spans or service[parent] != service[sid]:
            inside = sum(c["duration"] for c in children[sid] if service[c["spanID"]] == service[sid]) / 1000
            totals[service[sid]] += ms
            totals[f"{service[sid]}: own code"] += max(0.0, ms - inside)
        else:
            totals[f"{service[sid]}: {_ID.sub('…', span['operationName'])}"] += ms
        if tags.get("span.kind") == "consumer" and parent in spans \
                and _tags(spans[parent]).get("span.kind") == "producer":
            topic = next((tags[k] for k in TOPIC_TAGS if k in tags), "?")
            hop = max(0.0, (span["startTime"] - spans[parent]["startTime"]) / 1000)
            totals[f"kafka {topic}"] = max(totals[f"kafka {topic}"], hop)
    return dict(totals)
