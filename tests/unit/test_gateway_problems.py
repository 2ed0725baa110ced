"""Every failure of the gateway answered as problem+json, and documented so in its OpenAPI schema:
in-process, on the fakes of test_gateway_routes (fakeredis, TestKafkaBroker, an in-memory store)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from photocraft_gateway.app import create_app
from photocraft_gateway.problems import MEDIA_TYPE

from .test_gateway_routes import MODELS, Gateway, assert_problem, png, settings, submit  # noqa: F401 (settings)

ERROR_STATUSES = {"400", "401", "403", "404", "405", "413", "415", "422", "429", "500", "503"}


@pytest.fixture
def gateway(settings):  # noqa: F811
    """The gateway in-process; a server error comes back as its response, not raised into the test."""
    gateway = Gateway()
    with TestClient(create_app(settings, gateway.connect), raise_server_exceptions=False) as gateway.http:
        gateway.serve(MODELS)
        yield gateway


def test_the_openapi_schema_documents_every_error_as_problem_json(gateway):
    schema = gateway.http.get("/openapi.json").json()
    problem = schema["components"]["schemas"]["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "instance"}
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
            for status, response in errors.items():
                expected = "application/json" if (path, status) == ("/readyz", "503") else MEDIA_TYPE
                assert list(response["content"]) == [expected], (method, path, status)
            wanted = ERROR_STATUSES if method == "post" else {"404", "405", "429", "500"}
            assert wanted <= set(errors), (method, path, wanted - set(errors))


def test_deep_or_huge_params_are_refused_before_parsing(gateway):
    deep = submit(gateway, png(), params='{"a": ' + "[" * 20_000 + "]" * 20_000 + "}")
    huge = submit(gateway, png(), params=json.dumps({"prompt": "x" * 1_000_000}))
    over_the_form_limit = submit(gateway, png(), params="[" * (1 << 21))

    assert "20001 levels" in assert_problem(deep, 422, "params-too-deep")["detail"]
    assert_problem(huge, 413, "field-too-large")
    assert_problem(over_the_form_limit, 413, "field-too-large")
    assert not gateway.submitted and not gateway.store.objects


def test_bodies_that_are_not_forms(gateway):
    as_json = gateway.http.post("/v1/jobs", json={"operation": "remove-background"})
    no_boundary = gateway.http.post("/v1/batches", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})

    assert "not application/json" in assert_problem(as_json, 415, "unsupported-media-type")["detail"]
    assert_problem(no_boundary, 400, "malformed-request")


def test_unknown_routes_and_methods(gateway):
    assert_problem(gateway.http.get("/v1/jobs/a/b"), 404, "not-found")
    wrong_method = gateway.http.put("/v1/jobs/some-id")
    assert_problem(wrong_method, 405, "method-not-allowed")
    assert "GET" in wrong_method.headers["allow"]


def test_redis_down_is_503_queue_unavailable_on_every_route(gateway):
    key = {"Authorization": f"Bearer {gateway.api_key('acme')}"}
    job_id = submit(gateway, png(), headers=key).json()["job_id"]
    gateway.platform.redis.connection_pool.connection_kwargs["server"].connected = False

    answers = [submit(gateway, png()), submit(gateway, png(), headers=key), gateway.http.get(f"/v1/jobs/{job_id}"),
               gateway.http.delete(f"/v1/jobs/{job_id}", headers=key), gateway.http.get("/v1/batches/b", headers=key),
               gateway.http.post("/v1/batches", data={"operation": "enhance"}, files=[("files", ("a.png", png()))])]

    for response in answers:
        assert_problem(response, 503, "queue-unavailable")
        assert response.headers["retry-after"] == "5"


def test_an_unexpected_failure_is_500_without_internals_and_gives_the_quota_back(
        gateway, settings, monkeypatch):  # noqa: F811
    async def broken(*args, **kwargs):
        raise RuntimeError("secret internals <redis.Connection object at 0x7f00deadbeef>")

    monkeypatch.setattr(gateway.store, "put", broken)
    failed = [submit(gateway, png()) for _ in range(settings.anonymous_ip_daily_quota + 1)]
    monkeypatch.undo()
    accepted = submit(gateway, png())

    for response in failed:
        body = assert_problem(response, 500, "internal-error")
        assert "secret" not in response.text and "0x" not in response.text and "Traceback" not in body["detail"]
    assert accepted.status_code == 202  # no failed submission used up an edit


def test_names_in_details_are_cleaned(gateway):
    name = "evil\r\nname\x00" + "y" * 500 + ".txt"
    response = gateway.http.post("/v1/jobs", data={"operation": "enhance"}, files={"file": (name, b"not an image")})
    detail = assert_problem(response, 415, "unsupported-image")["detail"]
    assert detail.startswith("evil") and "\n" not in detail and "\x00" not in detail and len(detail) < 400
