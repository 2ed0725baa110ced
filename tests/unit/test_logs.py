"""JSON log lines (photocraft_common.logs): their fields, the marks of a job's work (job_id, tenant) and the
trace id, as every service writes them."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from faststream.kafka import TestKafkaBroker
from opentelemetry import trace
from pydantic import ValidationError
from pythonjsonlogger.json import JsonFormatter

from photocraft_common import contracts as pb
from photocraft_common import logs
from photocraft_common.kafka import make_broker
from photocraft_common.settings import KafkaSettings, PlatformSettings
from photocraft_common.topics import JOBS_SUBMITTED

from .test_plan import record


@pytest.fixture
def lines():
    """What the logger ``test.logs`` writes, as a service would (formatter and filter of ``configure``), one
    line per record; ``lines.format`` is "json" unless a test sets it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.JobContextFilter())
    handler.addFilter(logs.CredentialFilter())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    class Lines:
        format = "json"

        def read(self) -> list:
            text = stream.getvalue().splitlines()
            return [json.loads(line) for line in text] if self.format == "json" else text

        def use(self, log_format: str) -> None:
            self.format = log_format
            handler.setFormatter(logs.formatter("scheduler", log_format))

    found = Lines()
    found.use("json")
    try:
        yield found
    finally:
        logger.removeHandler(handler)


log = logging.getLogger("test.logs")


def test_a_line_is_a_json_object_with_the_common_fields(lines):
    log.info("job %s released", "j1")
    [line] = lines.read()
    assert {k: line[k] for k in ("service", "level", "logger", "message")} == \
        {"service": "scheduler", "level": "INFO", "logger": "test.logs", "message": "job j1 released"}
    assert line["time"].endswith("+00:00") and "T" in line["time"]  # ISO 8601, UTC
    assert not {"job_id", "tenant", "trace_id"} & set(line)  # no job's work, no span


def test_credentials_in_a_query_string_are_redacted(lines):
    # as uvicorn logs a WebSocket's handshake, and a presigned URL
    log.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/v1/jobs/j1/events?token=s3cr3t-T0k3n&after=4")
    log.info("result at %s", "http://s3/b/k.png?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=9f0e&X-Amz-Expires=60")
    log.info("token counts: %d", 3)  # not a query string: left alone
    first, second, third = (line["message"] for line in lines.read())
    assert first == '127.0.0.1:5 - "WebSocket /v1/jobs/j1/events?token=[redacted]&after=4" [accepted]'
    assert second == "result at http://s3/b/k.png?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]&X-Amz-Expires=60"
    assert third == "token counts: 3"


def test_an_exception_goes_into_its_line(lines):
    try:
        raise ValueError("bad pixels")
    except ValueError:
        log.exception("task failed")
    [line] = lines.read()
    assert line["level"] == "ERROR" and "ValueError: bad pixels" in line["exc_info"]


def test_every_line_of_a_jobs_work_names_the_job_and_its_tenant(lines):
    with logs.job_scope(job_id="j1"):
        log.info("consumed")
        logs.bound(pb.JobSubmitted(job_id="j1", tenant_id="t1"))
        log.info("planned")
        logs.bound(record("denoise", job_id="j2", tenant_id="t2"))  # another job's record: every mark changes
        log.info("released")
        logs.bound(pb.TaskResult(job_id="j2"))  # no tenant in it: the job's stays
        log.info("result")
        assert logs.bound(None) is None
    log.info("between jobs")
    marks = [(line.get("job_id"), line.get("tenant")) for line in lines.read()]
    assert marks == [("j1", None), ("j1", "t1"), ("j2", "t2"), ("j2", "t2"), (None, None)]


async def test_concurrent_tasks_keep_their_own_marks(lines):
    async def task(job_id: str) -> None:
        logs.mark(job_id, "t1")
        await asyncio.sleep(0)  # the other task runs here
        log.info("done")

    await asyncio.gather(task("a"), task("b"))
    log.info("after")
    assert sorted(line.get("job_id", "-") for line in lines.read()) == ["-", "a", "b"]


def test_lines_inside_a_span_carry_its_trace_id(lines):
    context = trace.SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0x00F067AA0BA902B7,
                                is_remote=False, trace_flags=trace.TraceFlags(1))
    with trace.use_span(trace.NonRecordingSpan(context)):
        log.info("inside")
    log.info("outside")
    inside, outside = lines.read()
    assert inside["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert "trace_id" not in outside


def test_the_text_format_puts_the_marks_at_the_end(lines):
    lines.use("text")
    with logs.job_scope(job_id="j1", tenant="t1"):
        log.warning("slow")
    [line] = lines.read()
    assert " scheduler WARNING test.logs: slow [job_id=j1 tenant=t1]" in line


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="json or text"):
        logs.formatter("gateway", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        PlatformSettings(log_format="xml")
    assert PlatformSettings().log_format == "json"


def test_configure_sends_every_logger_to_one_json_handler():
    root, faststream = logging.getLogger(), logging.getLogger("faststream")
    saved = root.handlers[:], root.level, faststream.handlers[:], faststream.propagate
    try:
        logs.configure("notifier", "debug")
        [handler] = root.handlers
        assert isinstance(handler.formatter, JsonFormatter) and root.level == logging.DEBUG
        assert any(isinstance(f, logs.JobContextFilter) for f in handler.filters)
        assert faststream.propagate and not faststream.handlers  # FastStream's lines go through it too
    finally:
        root.handlers[:], faststream.handlers[:], faststream.propagate = saved[0], saved[2], saved[3]
        root.setLevel(saved[1])


async def test_a_consumed_messages_handling_is_marked_with_its_key(lines):
    broker = make_broker(KafkaSettings(), "test")
    handled = asyncio.Queue()

    @broker.subscriber(JOBS_SUBMITTED, group_id="g")
    async def handle(body: bytes) -> None:
        log.info("handling %s", body.decode())
        await handled.put(dict(logs.current()))

    async with TestKafkaBroker(broker):
        await broker.publish(b"first", JOBS_SUBMITTED, key=b"job-7")
        await broker.publish(b"second", JOBS_SUBMITTED)  # no key: no job
        marks = [await asyncio.wait_for(handled.get(), 5) for _ in range(2)]
    assert marks == [{"job_id": "job-7"}, {}]
    assert [line.get("job_id") for line in lines.read()] == ["job-7", None]
    assert logs.current() == {}
