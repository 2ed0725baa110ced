"""The gateway's routes and problem bodies in-process: the real app and route modules through FastAPI's
TestClient, on fakeredis (with Lua, so the quota and job-status scripts run), FastStream's
TestKafkaBroker and an in-memory object store. Nothing needs to be running."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiokafka.errors import KafkaConnectionError
from fakeredis import FakeAsyncRedis, FakeServer
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from PIL import Image

from photocraft_common.batches import BatchRecord
from photocraft_common.contracts import JobCancelled, JobSubmitted, ObjectRef, parse
from photocraft_common.health import VERSION, redis_check
from photocraft_common.jobs import JobRecord, JobStatus
from photocraft_common.keyring import Keyring
from photocraft_common.models import AVAILABLE
from photocraft_common.storage import tenant_prefix
from photocraft_common.tiers import DEFAULT_TIERS, Tier
from photocraft_common.topics import JOBS_CANCELLED, JOBS_SUBMITTED
from photocraft_gateway.app import create_app
from photocraft_gateway.deps import Platform
from photocraft_gateway.settings import GatewaySettings

from ..routes import id_routes, kind_of
from .fake_accounts import MemoryAccounts

KEYRING = Keyring.generate()
MODELS = ["u2netp", "selfie", "oidn", "waifu2x_photo", "realesrgan_x4plus", "tone", "retouch", "analyze",
          "waifu2x_dejpeg", "inpaint", "gfpgan", "colorize_eccv16", "sd_turbo"]


class MemoryStore:
    """The two ObjectStore methods the gateway calls, on a dict of key -> bytes."""

    bucket = "photocraft-test"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes, content_type: str, width: int = 0, height: int = 0) -> ObjectRef:
        self.objects[key] = data
        return ObjectRef(bucket=self.bucket, key=key, content_type=content_type, size_bytes=len(data),
                         width=width, height=height)

    def presigned_get_url(self, ref: ObjectRef, purge_at: float | None = None) -> str:
        return f"memory://{ref.bucket}/{ref.key}"


@dataclass
class Gateway:
    """The app under test (``http``, once started), what it stored and what it published."""

    store: MemoryStore = field(default_factory=MemoryStore)
    submitted: list[JobSubmitted] = field(default_factory=list)
    cancelled: list[JobCancelled] = field(default_factory=list)
    http: TestClient | None = None

    @asynccontextmanager
    async def connect(self, settings: GatewaySettings) -> AsyncIterator[Platform]:
        """create_app's ``connect``: the real Platform on fakeredis, TestKafkaBroker and ``store``, its accounts
        in memory (fake_accounts.py)."""
        broker = KafkaBroker()

        @broker.subscriber(JOBS_SUBMITTED)
        async def on_submitted(body: bytes, message: KafkaMessage) -> None:
            self.submitted.append(parse(JobSubmitted, body))

        @broker.subscriber(JOBS_CANCELLED)
        async def on_cancelled(body: bytes, message: KafkaMessage) -> None:
            self.cancelled.append(parse(JobCancelled, body))

        redis = FakeAsyncRedis(server=FakeServer())
        async with TestKafkaBroker(broker):
            platform = Platform.build(settings, broker, redis, self.store, {"redis": redis_check(redis)})
            platform.accounts = MemoryAccounts(settings.required_keyring())  # no PostgreSQL here
            yield platform
        await redis.aclose()

    @property
    def platform(self) -> Platform:
        return self.http.app.state.platform

    def call(self, fn, *args):
        """Run the coroutine function ``fn`` on the app's event loop."""
        return self.http.portal.call(fn, *args)

    def job(self, job_id: str) -> JobRecord | None:
        return self.call(self.platform.jobs.get, job_id)

    def batch(self, batch_id: str) -> BatchRecord | None:
        return self.call(self.platform.batches.get, batch_id)

    def api_key(self, tenant: str, tier: Tier = Tier.PRO) -> str:
        return self.call(self.platform.accounts.create_key, tenant, tier)

    def serve(self, models: list[str]) -> None:
        self.call(self.platform.models.publish_available, models, 60.0)


def png(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def settings() -> GatewaySettings:
    return GatewaySettings(max_upload_bytes=50_000, max_batch_bytes=120_000, anonymous_ip_daily_quota=3,
                           events_base_url="ws://notifier.test", keyring=KEYRING)


@pytest.fixture
def gateway(settings):
    gateway = Gateway()
    with TestClient(create_app(settings, gateway.connect)) as gateway.http:
        gateway.serve(MODELS)
        yield gateway


def submit(gateway: Gateway, data: bytes | None = None, operation: str = "remove-background",
           headers: dict[str, str] | None = None, **form):
    files = {"file": ("photo.png", data)} if data is not None else None
    return gateway.http.post("/v1/jobs", data={"operation": operation, **form}, files=files, headers=headers)


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/problems/{slug}" and body["status"] == status
    assert body["title"] and body["detail"] and body["instance"] == response.request.url.path
    return body


def test_a_job_is_accepted_recorded_and_published(gateway):
    response = submit(gateway, png(), headers={"Authorization": f"Bearer {gateway.api_key('acme')}"})

    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["job_id"]
    assert body["status"] == "queued" and body["lane"] == "fast" and len(body["token"]) > 30
    assert body["status_url"] == f"http://testserver/v1/jobs/{job_id}"
    assert body["events_url"] == f"ws://notifier.test/v1/jobs/{job_id}/events"
    assert "x-device-token" not in response.headers
    [message] = gateway.submitted
    assert (message.job_id, message.tenant_id, message.operation) == (job_id, "acme", "remove-background")
    assert (message.tier, message.lane, message.batch_id) == ("pro", "fast", "")
    assert message.input.key == f"{tenant_prefix(KEYRING, 'acme')}/{job_id}/input/original.png"
    assert message.input.role == "image" and "acme" not in message.input.key
    assert gateway.store.objects[message.input.key] == png()
    record = gateway.job(job_id)
    assert (record.status, record.tenant_id, record.tier) == (JobStatus.QUEUED, "acme", "pro")
    assert record.token_matches(body["token"]) and record.input.content_type == "image/png"


def test_an_anonymous_device_gets_a_token_and_keeps_its_identity(gateway):
    first = submit(gateway, png())
    token = first.headers["x-device-token"]
    second = submit(gateway, png(), headers={"X-Device-Token": token})

    assert first.status_code == second.status_code == 202
    assert "x-device-token" not in second.headers
    tenants = {m.tenant_id for m in gateway.submitted}
    assert len(tenants) == 1 and tenants.pop().startswith("device-")
    assert {m.tier for m in gateway.submitted} == {"anonymous"}


@pytest.mark.parametrize(("form", "data", "slug"), [
    ({"operation": "paint-a-moustache"}, png(), "unknown-operation"),
    ({"params": "{not json"}, png(), "invalid-params"),
    ({"params": '{"colour": "red"}'}, png(), "invalid-params"),
    ({"params": "[1, 2]"}, png(), "invalid-params"),
    ({}, None, "missing-file"),
    ({"operation": "enhance", "params": '{"scale": 4}'}, png(2100, 1500), "image-too-large"),
])
def test_bad_submissions_are_422_and_nothing_is_stored_or_published(gateway, form, data, slug):
    assert_problem(submit(gateway, data, **form), 422, slug)
    assert not gateway.store.objects and not gateway.submitted


def test_form_errors_and_photo_problems(gateway):
    no_operation = gateway.http.post("/v1/jobs", files={"file": ("a.png", png())})
    too_big = submit(gateway, b"\0" * 50_001)
    not_an_image = submit(gateway, b"this is not an image\n" * 50)

    assert_problem(no_operation, 422, "invalid-request")
    assert assert_problem(too_big, 413, "upload-too-large")["detail"] == "photo.png is larger than 50000 bytes"
    assert "photo.png" in assert_problem(not_an_image, 415, "unsupported-image")["detail"]
    assert not gateway.store.objects and not gateway.submitted


def test_tier_and_text_to_image_rules(gateway):
    key = {"Authorization": f"Bearer {gateway.api_key('acme')}"}
    anonymous = submit(gateway, operation="text-to-image", params='{"prompt": "a cat"}')
    with_photo = submit(gateway, png(), operation="text-to-image", params='{"prompt": "a cat"}', headers=key)
    generated = submit(gateway, operation="text-to-image", params='{"prompt": "a cat"}', headers=key)

    assert_problem(anonymous, 403, "operation-not-allowed")
    assert_problem(with_photo, 422, "unexpected-file")
    assert generated.status_code == 202 and generated.json()["lane"] == "heavy"
    assert gateway.submitted[0].input.key == ""


def test_unknown_api_key_is_401_with_a_bearer_challenge(gateway):
    response = submit(gateway, png(), headers={"Authorization": "Bearer pc_unknown"})

    assert_problem(response, 401, "invalid-api-key")
    assert response.headers["www-authenticate"] == "Bearer"


def test_models_not_served_are_503(gateway):
    gateway.call(gateway.platform.redis.delete, AVAILABLE)
    nothing_served = submit(gateway, png())
    gateway.serve(["tone"])
    not_installed = submit(gateway, png())

    assert "u2netp" in assert_problem(not_installed, 503, "model-not-installed")["detail"]
    assert_problem(nothing_served, 503, "inference-unavailable")
    assert nothing_served.headers["retry-after"] == "10"


def test_quota_used_up_is_429_and_a_new_device_keeps_its_token(gateway, settings):
    for _ in range(settings.anonymous_ip_daily_quota):
        assert submit(gateway, png()).status_code == 202

    refused = submit(gateway, png())  # a new device from the same IP address

    assert_problem(refused, 429, "quota-exceeded")
    assert 0 < int(refused.headers["retry-after"]) <= 24 * 3600
    assert gateway.platform.accounts.by_device_token(refused.headers["x-device-token"]) is not None
    assert len(gateway.submitted) == len(gateway.store.objects) == settings.anonymous_ip_daily_quota


def test_kafka_down_is_503_the_job_failed_and_the_quota_given_back(gateway, settings, monkeypatch):
    async def unreachable(*args, **kwargs):
        raise KafkaConnectionError("no broker")

    monkeypatch.setattr(gateway.platform.broker, "publish", unreachable)
    refused = [submit(gateway, png()) for _ in range(settings.anonymous_ip_daily_quota + 1)]
    monkeypatch.undo()
    accepted = submit(gateway, png())

    for response in refused:
        assert_problem(response, 503, "queue-unavailable")
        assert response.headers["retry-after"] == "5"
    assert accepted.status_code == 202  # every refused one gave its edit back
    failed = {key.split("/")[1] for key in gateway.store.objects} - {accepted.json()["job_id"]}
    assert len(failed) == len(refused)
    for job_id in failed:
        assert (gateway.job(job_id).status, gateway.job(job_id).error_code) == (JobStatus.FAILED, "not-published")


def test_who_may_read_a_job(gateway):
    device = submit(gateway, png())
    job, token = device.json(), device.headers["x-device-token"]
    url = f"/v1/jobs/{job['job_id']}"
    other_device = submit(gateway, png()).headers["x-device-token"]

    def read(**headers):
        return gateway.http.get(url, headers=headers)

    assert read(Authorization=f"Bearer {job['token']}").status_code == 200
    assert read(**{"X-Device-Token": token}).json()["status"] == "queued"
    missing = read()
    assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    # Someone else's job is answered as a job that does not exist; no credential is 401 either way.
    assert_problem(read(Authorization="Bearer not-the-token"), 404, "job-not-found")
    assert_problem(read(Authorization=f"Bearer {gateway.api_key('someone-else')}"), 404, "job-not-found")
    assert_problem(read(**{"X-Device-Token": other_device}), 404, "job-not-found")
    assert_problem(gateway.http.get("/v1/jobs/0123456789abcdef", headers={"X-Device-Token": token}), 404,
                   "job-not-found")
    assert_problem(gateway.http.get("/v1/jobs/0123456789abcdef"), 401, "unauthorized")  # missing before unknown


def test_another_tenant_gets_404_on_every_route_taking_an_id_as_for_an_unknown_id(gateway):
    key = {"Authorization": f"Bearer {gateway.api_key('acme')}"}
    job = submit(gateway, png(), headers=key).json()
    batch = gateway.http.post("/v1/batches", data={"operation": "remove-background"}, headers=key,
                              files=[("files", ("p.png", png()))]).json()
    device = submit(gateway, png())
    device_job, device_token = device.json(), device.headers["x-device-token"]
    others = [{"Authorization": f"Bearer {gateway.api_key('globex')}"},
              {"X-Device-Token": submit(gateway, png()).headers["x-device-token"]},
              {"Authorization": f"Bearer {job['token']}", "X-Device-Token": device_token},  # the token wins
              {"Authorization": "Bearer pc_unknown"}, {"X-Device-Token": "k1.forged"}]
    routes = id_routes(gateway.http.app)
    assert {path for _, path in routes} == {"/v1/jobs/{job_id}", "/v1/batches/{batch_id}"}

    for method, path in routes:
        kind = kind_of(path)
        targets = {"job": [job["job_id"], device_job["job_id"]], "batch": [batch["batch_id"]]}[kind]
        unknown = gateway.http.request(method, path.format(job_id="f" * 32, batch_id="f" * 32), headers=key)
        assert_problem(unknown, 404, f"{kind}-not-found")
        for target in targets:
            url = path.format(job_id=target, batch_id=target)
            for headers in others:
                if headers.get("Authorization", "").endswith(job["token"]) and target == job["job_id"]:
                    continue  # the job's own token opens it
                refused = gateway.http.request(method, url, headers=headers)
                body = assert_problem(refused, 404, f"{kind}-not-found")
                assert {k: v for k, v in body.items() if k not in ("detail", "instance")} == \
                    {k: v for k, v in unknown.json().items() if k not in ("detail", "instance")}
                assert body["detail"] == f"no {kind} {target}"
            assert_problem(gateway.http.request(method, url), 401, "unauthorized")
    assert not gateway.cancelled  # no refused DELETE did anything
    assert {gateway.job(j).status for j in (job["job_id"], device_job["job_id"])} == {JobStatus.QUEUED}


def test_a_tenants_api_key_reads_and_cancels_its_job(gateway):
    key = {"Authorization": f"Bearer {gateway.api_key('acme')}"}
    job = submit(gateway, png(), headers=key).json()

    view = gateway.http.get(f"/v1/jobs/{job['job_id']}", headers=key).json()
    cancelled = gateway.http.delete(f"/v1/jobs/{job['job_id']}", headers=key).json()

    assert (view["status"], view["tier"], view["lane"], view["error"]) == ("queued", "pro", "fast", None)
    assert cancelled["status"] == "cancelled" and gateway.job(job["job_id"]).error_code == "cancelled"
    assert [m.job_id for m in gateway.cancelled] == [job["job_id"]]


def test_a_batch_is_accepted_with_one_heavy_job_per_photo(gateway):
    key = {"Authorization": f"Bearer {gateway.api_key('acme', Tier.FREE)}"}
    files = [("files", (f"p{n}.png", png(20 + n, 20))) for n in range(3)]

    response = gateway.http.post("/v1/batches", data={"operation": "remove-background"}, files=files, headers=key)

    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["total"] == 3 and [j["lane"] for j in batch["jobs"]] == ["heavy"] * 3
    assert batch["events_url"] == f"ws://notifier.test/v1/batches/{batch['batch_id']}/events"
    assert {m.batch_id for m in gateway.submitted} == {batch["batch_id"]}
    assert [m.job_id for m in gateway.submitted] == [j["job_id"] for j in batch["jobs"]]
    assert gateway.batch(batch["batch_id"]).job_ids == [j["job_id"] for j in batch["jobs"]]
    view = gateway.http.get(f"/v1/batches/{batch['batch_id']}",
                            headers={"Authorization": f"Bearer {batch['token']}"}).json()
    assert view["jobs"] == {j["job_id"]: "queued" for j in batch["jobs"]}
    assert_problem(gateway.http.get(f"/v1/batches/{batch['batch_id']}"), 401, "unauthorized")
    assert_problem(gateway.http.get("/v1/batches/nope", headers=key), 404, "batch-not-found")


def test_batch_refusals(gateway):
    key = {"Authorization": f"Bearer {gateway.api_key('acme')}"}
    anonymous_max = DEFAULT_TIERS[Tier.ANONYMOUS].max_batch
    too_many = [("files", (f"p{n}.png", png())) for n in range(anonymous_max + 1)]
    noise = io.BytesIO()  # 43 kB of noise: each under max_upload_bytes, three over max_batch_bytes
    Image.frombytes("RGB", (120, 120), random.Random(7).randbytes(120 * 120 * 3)).save(noise, format="PNG")
    too_heavy = [("files", (f"p{n}.png", noise.getvalue())) for n in range(3)]

    def post(files, operation="remove-background", **form):
        return gateway.http.post("/v1/batches", data={"operation": operation, **form}, files=files)

    assert_problem(post(too_many), 422, "batch-too-large")
    assert "batch is larger than 120000 bytes" in assert_problem(post(too_heavy), 413, "upload-too-large")["detail"]
    assert_problem(post(too_many[:1], "text-to-image", params='{"prompt": "a cat"}'), 403, "operation-not-allowed")
    assert_problem(post([("files", ("x.txt", b"text"))]), 415, "unsupported-image")
    not_for_batches = gateway.http.post("/v1/batches", data={"operation": "text-to-image",
                                                             "params": '{"prompt": "a cat"}'},
                                        files=too_many[:1], headers=key)
    assert assert_problem(not_for_batches, 422, "unexpected-file")["title"] == "Not for batches"
    assert not gateway.store.objects and not gateway.submitted


def test_health_and_unknown_routes(gateway):
    assert gateway.http.get("/healthz").json() == {"status": "ok", "version": VERSION}
    assert gateway.http.get("/readyz").json() == {"status": "ready", "checks": {"redis": "ok"}}
    assert_problem(gateway.http.get("/v1/nothing-here"), 404, "not-found")
