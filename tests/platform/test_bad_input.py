"""Bad uploads get a 4xx problem+json answer, and nothing reaches Kafka or S3."""

from __future__ import annotations

import pytest

from photocraft_common.topics import JOB_EVENTS, JOBS_SUBMITTED, model_topic

from .helpers import end_offsets, png_bytes, submit


@pytest.fixture
def bucket_keys(s3, settings):
    def keys() -> set[str]:
        paginator = s3.get_paginator("list_objects_v2")
        return {o["Key"] for page in paginator.paginate(Bucket=settings.s3.bucket)
                for o in page.get("Contents", [])}
    return keys


@pytest.fixture
async def nothing_published(settings):
    """Asserts, after the test, that no platform topic received a message during it."""
    topics = [JOBS_SUBMITTED, JOB_EVENTS, model_topic("u2netp")]
    before = await end_offsets(settings, topics)
    yield
    assert await end_offsets(settings, topics) == before


def assert_problem(response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"] == f"/problems/{slug}"
    assert body["title"] and body["detail"]


async def test_text_file_is_rejected_and_nothing_is_stored(gateway, bucket_keys, nothing_published):
    before = bucket_keys()

    response = await submit(gateway, b"this is not an image\n" * 50, "notes.txt")

    assert_problem(response, 415, "unsupported-image")
    assert bucket_keys() == before


async def test_truncated_photo_is_rejected(gateway, astronaut, bucket_keys, nothing_published):
    before = bucket_keys()
    whole = png_bytes(astronaut)

    response = await submit(gateway, whole[: len(whole) // 2], "cut.png")

    assert_problem(response, 415, "unsupported-image")
    assert bucket_keys() == before


@pytest.mark.parametrize(("form", "slug"), [
    ({"operation": "paint-a-moustache"}, "unknown-operation"),
    ({"operation": "remove-background", "params": "{not json"}, "invalid-params"),
    ({"operation": "remove-background", "params": '{"colour": "red"}'}, "invalid-params"),
    ({"operation": "remove-background", "params": "[1, 2]"}, "invalid-params"),
])
async def test_bad_operation_or_params_are_rejected(gateway, astronaut, form, slug, nothing_published):
    response = await gateway.post("/v1/jobs", files={"file": ("a.png", png_bytes(astronaut[::8, ::8]))},
                                  data=form)
    assert_problem(response, 422, slug)


async def test_missing_fields_are_rejected(gateway, nothing_published):
    no_operation = await gateway.post("/v1/jobs", files={"file": ("a.png", b"x")})
    no_file = await gateway.post("/v1/jobs", data={"operation": "remove-background"})

    assert_problem(no_operation, 422, "invalid-request")
    assert_problem(no_file, 422, "missing-file")


async def test_upload_over_the_size_limit_is_rejected(gateway, nothing_published):
    response = await submit(gateway, b"\0" * (25 * 1024 * 1024 + 1), "huge.png")

    assert_problem(response, 413, "upload-too-large")
