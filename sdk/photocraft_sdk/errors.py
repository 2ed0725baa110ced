"""What the SDK raises; every error is a :class:`PhotocraftError`."""

from __future__ import annotations

import httpx


class PhotocraftError(Exception):
    """Base of every error the SDK raises."""


class Unreachable(PhotocraftError):
    """Nothing answers at the gateway's URL (connection refused, timed out, no such host)."""

    def __init__(self, url: str, reason: str = "") -> None:
        super().__init__(f"cannot reach Photocraft at {url}; is it running (make up)?"
                         + (f" ({reason})" if reason else ""))
        self.url = url


class ApiError(PhotocraftError):
    """The gateway refused a request with an RFC 9457 problem.

    Attributes: ``status`` (HTTP status), ``type`` (e.g. ``"quota-exceeded"``, without
    ``/problems/``), ``title``, ``detail``, ``retry_after`` (seconds, or None).
    """

    def __init__(self, status: int, type: str, title: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))
        self.status, self.type, self.title, self.detail, self.retry_after = status, type, title, detail, retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        retry_after = response.headers.get("retry-after")
        return cls(response.status_code, str(problem.get("type", "")).removeprefix("/problems/"),
                   problem.get("title") or response.reason_phrase,
                   problem.get("detail") or ("" if problem else response.text[:200]),
                   float(retry_after) if retry_after and retry_after.isdigit() else None)


class StreamRefused(PhotocraftError):
    """The notifier closed the event stream for good: 4401 no token, 4403 wrong token, 4404 unknown job,
    or refused the WebSocket handshake with a 4xx status. ``code`` is the close code (or HTTP status)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"event stream refused ({code}): {reason}")
        self.code = code


class StreamInterrupted(PhotocraftError):
    """The event stream broke before the job ended (dropped connection, close other than 1000/44xx,
    ``resync``). The SDK reconnects on its own; this is raised once its reconnection attempts are spent.
    ``after`` is the last ``seq`` received."""

    def __init__(self, reason: str, after: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.after = reason, after

    def __str__(self) -> str:
        return f"event stream interrupted after event {self.after}: {self.reason}"


class JobFailed(PhotocraftError):
    """A job ended ``failed`` or ``cancelled``; ``event`` is its terminal event (``code``, ``message``
    or ``reason``)."""

    def __init__(self, event: dict) -> None:
        what = event.get("code") or ""
        text = event.get("message") or event.get("reason") or ""
        super().__init__(f"job {event.get('job_id', '')} {event['type']}: {what} {text}".rstrip())
        self.event = event
