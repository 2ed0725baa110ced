"""The gateway's routes that take an id, listed from its FastAPI app, for the cross-tenant probes
(tests/unit/test_gateway_routes.py in-process, tests/platform/test_cross_tenant.py on the platform)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.routing import Mount

IDS = {"job_id": "job", "batch_id": "batch"}  # path parameter -> the kind of record it names


def id_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route of ``app`` that takes an id, from its OpenAPI schema; the routes the
    schema leaves out (the web page, static files) must take none. Fails on an id outside IDS, so that a
    new route cannot be left out of the probes."""
    hidden = [route.path for route in app.routes
              if getattr(route, "include_in_schema", True) is False or isinstance(route, Mount)]
    assert not [path for path in hidden if "{" in path], f"routes hidden from the schema take an id: {hidden}"
    routes = [(method.upper(), path) for path, operations in app.openapi()["paths"].items() if "{" in path
              for method in sorted(operations)]
    unknown = {name for _, path in routes for name in re.findall(r"{(\w+)}", path)} - set(IDS)
    assert not unknown, f"routes with {unknown}: teach the cross-tenant probes these ids"
    return routes


def kind_of(path: str) -> str:
    """"job" or "batch": the record a route's path names."""
    [name] = re.findall(r"{(\w+)}", path)
    return IDS[name]
