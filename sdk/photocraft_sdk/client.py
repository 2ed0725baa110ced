"""The asynchronous client of a Photocraft gateway (HTTP) and notifier (WebSocket events).

Shapes of what the methods return are those of docs/api.md: a submitted job is
``{"job_id", "status", "lane", "token", "status_url", "events_url"}``; a batch is
``{"batch_id", "total", "token", "status_url", "events_url", "jobs": [job, …]}``; a job view has
``status`` (queued, running, completed, failed, cancelled), ``results`` [{url, role, content_type,
width, height, size_bytes}] and ``error``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from .config import DeviceTokens, default_api_key, default_url
from .errors import ApiError, JobFailed, PhotocraftError, Unreachable
from .events import batch_ended, follow, job_ended, websocket_stream

USER_CONFIG = DeviceTokens()  # the user's config file
Photo = str | os.PathLike | bytes | tuple[str, bytes]  # a path, raw bytes, or (filename, bytes)


def _file(photo: Photo) -> tuple[str, bytes]:
    if isinstance(photo, tuple):
        return photo
    if isinstance(photo, bytes):
        return "photo", photo
    path = Path(photo)
    return path.name, path.read_bytes()


class Client:
    """A client of the gateway at ``base_url`` (``PHOTOCRAFT_URL``, default http://127.0.0.1:8080).

    With ``api_key`` (``PHOTOCRAFT_API_KEY``) calls are the key's tenant's; without, they are an
    anonymous device's: the ``X-Device-Token`` the gateway hands out is kept (in ``device_tokens``,
    by default the user's config file; None keeps it in memory only) and sent back. ``transport``
    replaces httpx's (connections retried twice), e.g. for a proxy. Use as
    ``async with Client() as client: …``. Methods raise :class:`ApiError` for a problem answer,
    :class:`Unreachable` when the gateway does not answer, :class:`PhotocraftError` otherwise.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, device_token: str | None = None,
                 *, timeout: float = 60, device_tokens: DeviceTokens | None = USER_CONFIG,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = (base_url or default_url()).rstrip("/")
        self.api_key = api_key or default_api_key()
        self._tokens = device_tokens
        self.device_token = device_token or (device_tokens.get(self.base_url) if device_tokens else None)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport or httpx.AsyncHTTPTransport(retries=2),
                                       event_hooks={"response": [self._keep_device_token]})

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _keep_device_token(self, response: httpx.Response) -> None:
        token = response.headers.get("x-device-token")
        if token and token != self.device_token and not self.api_key:
            self.device_token = token
            if self._tokens is not None:
                self._tokens.put(self.base_url, token)

    async def _call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> dict:
        headers = {}
        if token or self.api_key:
            headers["Authorization"] = f"Bearer {token or self.api_key}"
        if self.device_token and not self.api_key:
            headers["X-Device-Token"] = self.device_token
        try:
            response = await self._http.request(method, f"{self.base_url}{path}", headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unreachable(self.base_url, str(exc)) from None
        except httpx.HTTPError as exc:
            raise PhotocraftError(f"{method} {self.base_url}{path} failed: {exc!r}") from exc
        if not response.is_success:
            raise ApiError.from_response(response)
        return response.json()

    async def submit_job(self, operation: str, photo: Photo | None = None, params: Mapping | None = None) -> dict:
        """Submit one job (``POST /v1/jobs``); ``photo`` is None only for text-to-image. Returns the
        accepted job: ``job_id``, ``token`` (reads and cancels it), ``events_url``…"""
        files = {"file": _file(photo)} if photo is not None else None
        form = {"operation": operation, "params": json.dumps(dict(params or {}))}
        return await self._call("POST", "/v1/jobs", files=files, data=form)

    async def submit_batch(self, operation: str, photos: Iterable[Photo], params: Mapping | None = None) -> dict:
        """Submit one operation on several photos (``POST /v1/batches``; at most 50, fewer for lower tiers:
        more raise ApiError ``batch-too-large``). Returns the batch with its ``jobs`` in the photos' order."""
        files = [("files", _file(photo)) for photo in photos]
        form = {"operation": operation, "params": json.dumps(dict(params or {}))}
        return await self._call("POST", "/v1/batches", files=files, data=form)

    async def get_job(self, job_id: str, token: str | None = None) -> dict:
        """The job's view (``GET /v1/jobs/{id}``) with its own ``token``, or the client's API key or device."""
        return await self._call("GET", f"/v1/jobs/{job_id}", token)

    async def cancel_job(self, job_id: str, token: str | None = None) -> dict:
        """Cancel the job (``DELETE``); returns its view. A job already ended is left as it is."""
        return await self._call("DELETE", f"/v1/jobs/{job_id}", token)

    async def get_batch(self, batch_id: str, token: str | None = None) -> dict:
        """``{"batch_id", "operation", "total", "done", "failed", "jobs": {job_id: status}}``."""
        return await self._call("GET", f"/v1/batches/{batch_id}", token)

    async def cancel_batch(self, batch_id: str, token: str | None = None) -> dict:
        """Cancel every job of the batch that has not ended; returns the batch's view."""
        return await self._call("DELETE", f"/v1/batches/{batch_id}", token)

    def events(self, accepted: Mapping, after: int = 0, **options: Any) -> AsyncIterator[dict]:
        """The events of a submitted job or batch (the dict ``submit_*`` returned) after ``seq`` ``after``,
        until its end, resuming after dropped connections. ``options`` go to :func:`events.follow`
        (``attempts``, ``wait``, ``heartbeats``, ``on_retry``)."""
        ended = batch_ended if "jobs" in accepted else job_ended
        return follow(websocket_stream(accepted["events_url"], accepted["token"]), after=after, ended=ended,
                      **options)

    async def wait(self, accepted: Mapping, on_event: Callable[[dict], object] | None = None,
                   **options: Any) -> dict:
        """Follow a submitted job to its end; returns its ``completed`` event (``results``: [{url, role,
        content_type, width, height}]), raises :class:`JobFailed` when it failed or was cancelled."""
        async for event in self.events(accepted, **options):
            if on_event is not None:
                on_event(event)
            if job_ended(event):
                if event["type"] != "completed":
                    raise JobFailed(event)
                return event
        raise PhotocraftError("the event stream ended without a terminal event")

    async def download(self, url: str, path: str | os.PathLike) -> Path:
        """Write a result (a presigned URL from ``results``) to ``path``, creating its folder; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self._http.stream("GET", url) as response:
                if not response.is_success:
                    raise PhotocraftError(f"download of {url.split('?')[0]} failed: HTTP {response.status_code}")
                with path.open("wb") as file:
                    async for chunk in response.aiter_bytes():
                        file.write(chunk)
        except httpx.HTTPError as exc:
            raise PhotocraftError(f"download of {url.split('?')[0]} failed: {exc!r}") from exc
        return path
