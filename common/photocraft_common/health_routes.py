"""``/healthz`` and ``/readyz`` for the services with a FastAPI app of their own (gateway, notifier).

The app keeps its dependency checks (``health.checks``) in ``app.state.readiness``; the bodies and
status codes are those of ``health.probe``. Imports FastAPI, so only those services import this module.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .health import VERSION, probe

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 ``{"status": "ok", "version": "0.14.0"}`` while the process and its event loop run (liveness); the
    version is the platform's (``health.VERSION``)."""
    return {"status": "ok", "version": VERSION}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 while every check in ``app.state.readiness`` passes, else 503 naming the failing ones."""
    status, body = await probe(request.app.state.readiness)
    return JSONResponse(body, status)
