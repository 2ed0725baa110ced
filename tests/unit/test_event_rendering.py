"""JobEvents as the JSON that WebSocket clients receive."""

from __future__ import annotations

from urllib.parse import urlparse

from photocraft_common.contracts import (
    Completed,
    Failed,
    JobEvent,
    ObjectRef,
    Progress,
    Received,
    StageCompleted,
    now,
)
from photocraft_common.settings import S3Settings
from photocraft_common.storage import ObjectStore
from photocraft_notifier.render import TERMINAL_TYPES, render

STORE = ObjectStore(S3Settings(access_key_id="test-key", secret_access_key="test-secret"))  # presigning needs no server
REF = ObjectRef(bucket="photocraft", key="t/j/stages/segment.png", content_type="image/png",
                size_bytes=1234, width=640, height=480, role="image")
MASK = ObjectRef(bucket="photocraft", key="t/j/stages/segment.mask.png", content_type="image/png",
                 size_bytes=99, width=640, height=480, role="mask")


def event(**kind) -> JobEvent:
    return JobEvent(event_id="e", job_id="j", tenant_id="t", time=now(), **kind)


def test_common_fields():
    message = render(7, event(progress=Progress(stage="segment", percent=42.5, message="half")), STORE)
    assert message["seq"] == 7 and message["type"] == "progress" and message["job_id"] == "j"
    assert message["time"].endswith("+00:00")
    assert (message["stage"], message["percent"], message["message"]) == ("segment", 42.5, "half")


def test_completed_carries_presigned_urls_roles_and_warnings():
    message = render(9, event(completed=Completed(results=[REF, MASK], warnings=["w"])), STORE)
    url = urlparse(message["result_url"])
    assert url.path == "/photocraft/t/j/stages/segment.png" and "X-Amz-Signature" in url.query
    assert message["results"][0] == {"url": message["result_url"], "role": "image", "content_type": "image/png",
                                     "width": 640, "height": 480, "size_bytes": 1234}
    assert message["results"][1]["role"] == "mask" and message["warnings"] == ["w"]
    assert message["type"] in TERMINAL_TYPES


def test_received_without_a_photo_has_no_input():
    assert render(1, event(received=Received(operation="text-to-image")), STORE)["input"] is None


def test_received_and_stage_completed_hide_bucket_and_key():
    received = render(1, event(received=Received(operation="remove-background", input=REF)), STORE)
    done = render(5, event(stage_completed=StageCompleted(stage="segment", output=REF)), STORE)
    assert "key" not in str(received) and "bucket" not in str(received) and "key" not in str(done)
    assert received["input"]["width"] == 640 and done["stage"] == "segment"


def test_failed_keeps_code_message_and_empty_stage():
    message = render(3, event(failed=Failed(code="invalid-image", message="cannot decode")), STORE)
    assert (message["code"], message["message"], message["stage"]) == ("invalid-image", "cannot decode", "")
