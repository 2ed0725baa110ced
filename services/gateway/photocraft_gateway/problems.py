"""Errors as RFC 9457 problem details (``application/problem+json``).

Each problem type is a path under ``/problems/`` documented in docs/api.md.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from photocraft_common.problems import Problem

__all__ = ["MEDIA_TYPE", "Problem", "install", "problem_response"]

MEDIA_TYPE = "application/problem+json"


def problem_response(request: Request, status: int, slug: str, title: str, detail: str,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": f"/problems/{slug}", "title": title, "status": status,
            "detail": detail, "instance": request.url.path}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    """Render every error the app raises as problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.slug, exc.title, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return problem_response(request, 422, "invalid-request", "Invalid request", detail)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(request, exc.status_code, slug, str(exc.detail), str(exc.detail),
                                getattr(exc, "headers", None))
