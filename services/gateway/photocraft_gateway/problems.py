"""Errors as RFC 9457 problem details (``application/problem+json``), for every failure.

Each problem type is a path under ``/problems/`` documented in docs/api.md. ``install`` renders the
app's own refusals (Problem), FastAPI's and Starlette's errors (malformed forms, unknown routes), an
unreachable Redis or Kafka (503 queue-unavailable) or S3 (503 storage-unavailable), both with
Retry-After, and anything else (500 internal-error, without internals). ``responses`` documents a
route's error statuses in the OpenAPI schema, with the ``ProblemDetails`` schema.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError
from botocore.exceptions import ConnectionError as S3ConnectionError
from botocore.exceptions import ReadTimeoutError as S3ReadTimeoutError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from photocraft_common.guards import clean
from photocraft_common.problems import Problem

__all__ = ["MEDIA_TYPE", "Problem", "ProblemDetails", "form_only", "install", "problem_response", "responses"]

MEDIA_TYPE = "application/problem+json"
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
TITLES = {400: "Malformed request", 401: "Missing or invalid credentials", 403: "Not allowed",
          404: "Not found", 405: "Method not allowed", 410: "Gone: expired and purged", 413: "Content too large",
          415: "Unsupported media type or image", 422: "Invalid request", 429: "Too many requests",
          500: "Internal error", 503: "Service unavailable, retry after Retry-After seconds"}


class ProblemDetails(BaseModel):
    """An RFC 9457 problem; ``type`` is a path under /problems/ (docs/api.md)."""

    type: str = Field(examples=["/problems/unsupported-image"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str  # the request's path


def responses(*statuses: int) -> dict[int | str, dict]:
    """FastAPI ``responses=`` documenting ``statuses`` as problem+json bodies (ProblemDetails)."""
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {status: {"description": TITLES[status], "content": {MEDIA_TYPE: {"schema": schema}}}
            for status in statuses}


def problem_response(request: Request, status: int, slug: str, title: str, detail: str,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": f"/problems/{slug}", "title": title, "status": status,
            "detail": clean(detail, 2000), "instance": request.url.path}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def form_only(request: Request) -> None:
    """A route dependency: Problem 415 unsupported-media-type for a body that is not a form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind not in FORMS:
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"send the fields as {' or '.join(FORMS)}, not {clean(kind, 80)}")


def _http_slug(exc: HTTPException) -> tuple[int, str]:
    if exc.status_code == 400 and "exceeded maximum size" in str(exc.detail):
        return 413, "field-too-large"  # Starlette's limit of a form field (1 MiB)
    return exc.status_code, {400: "malformed-request", 404: "not-found",
                             405: "method-not-allowed"}.get(exc.status_code, "http-error")


def install(app: FastAPI, documented: dict[str, dict[str, dict]] | None = None) -> None:
    """Render every error the app raises as problem+json, and add ProblemDetails to its OpenAPI schema,
    with ``documented``: more responses by path, e.g. ``{"/readyz": {"503": {...}}}``, for each of its methods."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.slug, exc.title, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return problem_response(request, 422, "invalid-request", "Invalid request", detail)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        status, slug = _http_slug(exc)
        return problem_response(request, status, slug, TITLES.get(status, "HTTP error"), str(exc.detail),
                                getattr(exc, "headers", None))

    async def _queue_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 503, "queue-unavailable", "Queue unavailable",
                                "the job queue or job store cannot be reached right now; try again",
                                {"Retry-After": "5"})

    async def _storage_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 503, "storage-unavailable", "Storage unavailable",
                                "the photo storage cannot be reached right now; try again", {"Retry-After": "5"})

    for kind in (RedisConnectionError, RedisTimeoutError, KafkaError):
        app.add_exception_handler(kind, _queue_down)
    for kind in (S3ConnectionError, S3ReadTimeoutError):
        app.add_exception_handler(kind, _storage_down)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception with its traceback after this answer; the client sees none of it.
        return problem_response(request, 500, "internal-error", "Internal error",
                                "the server failed to answer this request; the failure has been logged")

    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["ProblemDetails"] = ProblemDetails.model_json_schema()
            for path, more in (documented or {}).items():
                for operation in schema["paths"].get(path, {}).values():
                    operation["responses"].update(more)
        return app.openapi_schema

    app.openapi = openapi
