"""One log format for every service: JSON lines (python-json-logger), or text for people at a terminal.

A JSON line holds ``time`` (ISO 8601, UTC), ``service``, ``level``, ``logger``, ``message`` (with
``exc_info`` for an exception), and on every line of a job's work ``job_id``, ``tenant`` and, inside a
span, ``trace_id`` (32 hex digits, OpenTelemetry's: the job's trace in Jaeger)::

    {"time": "2026-11-30T09:15:25.123+00:00", "service": "scheduler", "level": "INFO",
     "logger": "photocraft.scheduler", "message": "job 4f..: cut released to ...", "job_id": "4f..",
     "tenant": "t_8a..", "trace_id": "0af7651916cd43dd8448eb211c80319c"}

A job's work is marked where it starts: ``mark(job_id, tenant)``, or ``bound(obj)`` with the ``job_id``
and ``tenant_id`` of a message or record; ``job_scope(...)`` marks a block; ``KafkaJobMiddleware`` marks
each consumed message's handling with its key (our messages are keyed by job id). ``JobContextFilter`` copies the
marks and the trace id into every record. ``PHOTOCRAFT_LOG_FORMAT=text`` (PlatformSettings.log_format)
gives the one-line text format instead, the marks then at the end of the line.

No line carries a credential that a URL's query string held: ``CredentialFilter`` redacts the values of
``CREDENTIAL_PARAMETERS`` (uvicorn logs every WebSocket's path with its ``?token=``; a presigned URL
carries its signature).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from faststream import BaseMiddleware
from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FIELDS = ("job_id", "tenant")  # the marks of a job's work; trace_id comes from the current span
# Query parameters whose value is a credential: a feed's token, an API key, a presigned URL's signature.
CREDENTIAL_PARAMETERS = ("token", "access_token", "api_key", "X-Amz-Signature", "X-Amz-Credential",
                         "X-Amz-Security-Token", "Signature")
_CREDENTIAL = re.compile(rf"([?&](?:{'|'.join(CREDENTIAL_PARAMETERS)})=)[^&\s\"'#]+", re.IGNORECASE)
REDACTED = "[redacted]"
_EMPTY: Mapping[str, str] = MappingProxyType({})
_job: ContextVar[Mapping[str, str]] = ContextVar("photocraft_job", default=_EMPTY)
T = TypeVar("T")


def current() -> Mapping[str, str]:
    """The marks of the job whose work runs in this context: ``job_id``, ``tenant`` (either may be absent)."""
    return _job.get()


@contextmanager
def job_scope(job_id: str = "", tenant: str = "") -> Iterator[None]:
    """Mark the block as a job's work (empty values: no mark; ``job_scope()`` clears the marks); the
    marks before the block, and any ``bound`` inside it, are undone at its end."""
    token = _job.set(MappingProxyType({k: v for k, v in (("job_id", job_id), ("tenant", tenant)) if v}))
    try:
        yield
    finally:
        _job.reset(token)


def mark(job_id: str = "", tenant: str = "") -> None:
    """Mark the rest of this context's work (until the end of an enclosing ``job_scope``) as the job
    ``job_id`` of ``tenant``; an empty value leaves that mark as it is, a job id other than the current
    one replaces every mark."""
    if job_id or tenant:
        marks = dict(current()) if job_id in ("", current().get("job_id")) else {}
        marks.update({k: v for k, v in (("job_id", job_id), ("tenant", tenant)) if v})
        _job.set(MappingProxyType(marks))


def bound(obj: T) -> T:
    """``mark`` the job of ``obj`` (a protobuf message, a JobRecord: its ``job_id`` and ``tenant_id``,
    where it has them) and return ``obj``; None marks nothing."""
    mark(getattr(obj, "job_id", "") or "", getattr(obj, "tenant_id", "") or "")
    return obj


def trace_id() -> str | None:
    """The current span's trace id as 32 hex digits; None outside a valid span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class JobContextFilter(logging.Filter):
    """Adds ``job_id``, ``tenant`` and ``trace_id`` to each record where known (never replaces an
    attribute a record has already, e.g. from ``extra=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        marks = dict(current())
        if (trace := trace_id()) is not None:
            marks["trace_id"] = trace
        for name, value in marks.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class CredentialFilter(logging.Filter):
    """Replaces the value of every ``CREDENTIAL_PARAMETERS`` query parameter in a record's message with
    ``REDACTED`` (the message is then formatted once, here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _CREDENTIAL.sub(rf"\g<1>{REDACTED}", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
            record.__dict__.pop("color_message", None)  # uvicorn's copy with ANSI colours
        return True


class TextFormatter(logging.Formatter):
    """``<time> <service> <level> <logger>: <message> [job_id=.. tenant=.. trace_id=..]``."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        marks = " ".join(f"{k}={v}" for k in (*FIELDS, "trace_id") if (v := getattr(record, k, None)))
        return f"{text} [{marks}]" if marks else text


def formatter(service: str, log_format: Literal["json", "text"] = "json") -> logging.Formatter:
    """The formatter of ``service``'s lines in ``log_format``; raises ValueError for another format."""
    if log_format == "text":
        return TextFormatter(service)
    if log_format != "json":
        raise ValueError(f"log format {log_format!r}: json or text")
    return JsonFormatter(["levelname", "name", "message"], timestamp="time", static_fields={"service": service},
                         rename_fields={"levelname": "level", "name": "logger"},
                         reserved_attrs=[*RESERVED_ATTRS, "color_message"])  # uvicorn's message with ANSI colours


def configure(service: str, level: str = "INFO", log_format: Literal["json", "text"] = "json") -> None:
    """Send every logger's records at ``level`` and above to stderr, one line each, in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(service, log_format))
    handler.addFilter(JobContextFilter())
    handler.addFilter(CredentialFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    faststream = logging.getLogger("faststream")  # its own coloured handler, at import: ours instead
    faststream.handlers.clear()
    faststream.propagate = True


class KafkaJobMiddleware(BaseMiddleware):
    """A FastStream middleware (``KafkaBroker(middlewares=...)``): a single consumed message's handling
    is the work of the job named by its key (a batch of messages is marked by its handler, per message)."""

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        raw = msg.raw_message
        key = b"" if isinstance(raw, tuple | list) else (raw.key or b"")
        with job_scope(job_id=key.decode(errors="replace")[:200]):
            return await call_next(msg)
