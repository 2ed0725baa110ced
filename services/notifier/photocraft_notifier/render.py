"""JobEvents as the JSON messages clients receive.

Every message has ``seq`` (the job's event number, from 1), ``type``,
``job_id`` and ``time`` (ISO 8601, UTC), plus the fields of its type::

    received         operation, input {content_type, width, height, size_bytes} (null without a photo)
    queued           lane
    started          stage, worker_id
    progress         stage, percent (0-100, whole job), message
    stage_completed  stage
    completed        result_url (the image), results [{url, role, content_type, width, height,
                     size_bytes}] (role "image", "mask" or "report"), warnings; URLs presigned for
                     ``presigned_url_expiry_s`` but never past the job's deadline
    failed           code, message, stage
    cancelled        reason
    retrying         stage, attempt, max_attempts, delay_s, reason
    batch_progress   batch_id, done, failed, total (job_id is the batch id)
"""

from __future__ import annotations

from google.protobuf.json_format import MessageToDict

from photocraft_common.contracts import JobEvent, ObjectRef, to_datetime
from photocraft_common.storage import ObjectStore

TERMINAL_TYPES = frozenset({"completed", "failed", "cancelled"})


def _image(ref: ObjectRef) -> dict:
    return {"content_type": ref.content_type, "width": ref.width, "height": ref.height,
            "size_bytes": ref.size_bytes}


def render(seq: int, event: JobEvent, store: ObjectStore, purge_at: float | None = None) -> dict:
    """The message for the ``seq``-th event of its job; ``purge_at`` (Unix s, the job's deadline: Logged.expires;
    None: unknown) bounds its presigned URLs."""
    kind = event.WhichOneof("kind")
    body = getattr(event, kind)
    message = {"seq": seq, "type": kind, "job_id": event.job_id,
               "time": to_datetime(event.time).isoformat()}
    if kind == "received":
        message.update(operation=body.operation, input=_image(body.input) if body.HasField("input") else None)
    elif kind == "batch_progress":
        message.update(batch_id=event.job_id, done=body.done, failed=body.failed, total=body.total)
    elif kind == "stage_completed":
        message.update(stage=body.stage)
    elif kind == "completed":
        results = [{"url": store.presigned_get_url(ref, purge_at), "role": ref.role or "image", **_image(ref)}
                   for ref in body.results]
        image_url = next((r["url"] for r in results if r["role"] == "image"), None)
        message.update(result_url=image_url, results=results, warnings=list(body.warnings))
    else:
        message.update(MessageToDict(body, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True))
    return message
