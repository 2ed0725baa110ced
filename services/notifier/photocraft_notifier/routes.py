"""The notifier's three WebSocket feeds (protocol: app.py, docs/events.md).

Who may follow a job or a batch is ``photocraft_common.access``, the gateway's policy: the record's
token, an API key of its tenant or a device token of its tenant. Refusals close the connection with
4401 (no credential) or 4404 (no such record, or not one of its credentials: never told apart). The
tenant feed closes with 4401 without a credential or with an unknown API key or device token. A client
over its limit of open connections (per address, per credential: limits.py) is then closed with 4429.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, WebSocket

from photocraft_common.access import Access, Owned, access

from .deps import Notifier, NotifierDep
from .relay import Feed, batch_feed, job_feed, tenant_feed

router = APIRouter()

After = Annotated[int, Query(ge=0, description="the last seq (cursor) the client saw; 0: from the start")]
REFUSALS = {Access.MISSING: (4401, "missing token"), Access.NOT_FOUND: (4404, "not found")}


def given(websocket: WebSocket, bearer: str | None, device_token: str | None) -> tuple[str, str]:
    """The credentials from the query, else from ``Authorization: Bearer`` and ``X-Device-Token``."""
    return (bearer or websocket.headers.get("authorization", "").removeprefix("Bearer ").strip(),
            device_token or websocket.headers.get("x-device-token", "").strip())


def record_credentials(websocket: WebSocket, token: str | None = None, api_key: str | None = None,
                       device_token: str | None = None) -> tuple[str, str]:
    """A job's or batch's feed: its token or an API key (as ``bearer``), or a device token."""
    return given(websocket, token or api_key, device_token)


Credentials = Annotated[tuple[str, str], Depends(record_credentials)]


async def follow(websocket: WebSocket, notifier: Notifier, record: Owned | None, credentials: tuple[str, str],
                 feed: Feed, after: int) -> None:
    """Relay ``feed`` if the credentials open ``record``; else close with the reason (REFUSALS)."""
    await websocket.accept()
    outcome = await access(record, notifier.accounts, *credentials)
    if outcome is not Access.GRANTED:
        return await websocket.close(*REFUSALS[outcome])
    async with notifier.connections.admit(websocket, credentials[0] or credentials[1]) as admitted:
        if admitted:  # else closed with 4429 (limits.py)
            await notifier.relay(websocket, feed, after)


@router.websocket("/v1/jobs/{job_id}/events")
async def job_events(websocket: WebSocket, job_id: str, notifier: NotifierDep, credentials: Credentials,
                     after: After = 0) -> None:
    await follow(websocket, notifier, await notifier.jobs.get(job_id), credentials,
                 job_feed(notifier.events, job_id), after)


@router.websocket("/v1/batches/{batch_id}/events")
async def batch_events(websocket: WebSocket, batch_id: str, notifier: NotifierDep, credentials: Credentials,
                       after: After = 0) -> None:
    await follow(websocket, notifier, await notifier.batches.get(batch_id), credentials,
                 batch_feed(notifier.events, batch_id), after)


@router.websocket("/v1/events")
async def tenant_events(websocket: WebSocket, notifier: NotifierDep, api_key: str | None = None,
                        device_token: str | None = None, after: After = 0) -> None:
    await websocket.accept()
    key, device = given(websocket, api_key, device_token)
    if not key and not device:
        return await websocket.close(4401, "send an API key or a device token")
    caller = await notifier.accounts.by_key(key) if key else notifier.accounts.by_device_token(device)
    if caller is None:
        return await websocket.close(4401, "unknown API key or device token")
    async with notifier.connections.admit(websocket, key or device) as admitted:
        if admitted:  # else closed with 4429 (limits.py)
            await notifier.relay(websocket, tenant_feed(notifier.events, caller.tenant_id), after)
