"""A corpus of hostile inputs against the running platform: each HTTP case is answered with a 4xx
problem+json of the documented type, each partner request over Kafka with a clean ``failed`` event
of the documented code, and after every case the gateway and the scheduler are ready. The module
ends with a good job over HTTP and one from a partner, both completed.

The photos are made here: headers claiming huge sizes, real decompression bombs (1-bit PNGs: a few
kilobytes that decode to 100 MP), polyglots, truncated and corrupt files. tests/platform/test_bad_input.py
has more bad uploads (and checks that nothing reaches Kafka or S3 for them).
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import struct
import uuid
import zlib
from collections.abc import Callable

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from photocraft_common.contracts import JobEvent, PartnerRequest
from photocraft_common.topics import PARTNER_EVENTS, PARTNER_REQUESTS

from .helpers import GATEWAY, events_until, fresh, png_bytes, tenant_key
from .test_bad_input import assert_problem
from .test_partners import register_partner

SCHEDULER_HEALTH = "http://127.0.0.1:9410/readyz"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose data holds 64 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(bytes(64)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


@functools.cache
def bilevel_png(width: int, height: int) -> bytes:
    """A real, complete 1-bit PNG: a few kilobytes that decode to ``width * height`` pixels."""
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, format="PNG")
    return buffer.getvalue()


@functools.cache
def photo(kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 60, 30)).save(buffer, format=kind)
    return buffer.getvalue()


def corrupt_png() -> bytes:
    data = bytearray(photo())
    start = data.index(b"IDAT") + 8
    data[start:start + 6] = b"\xff" * 6
    return bytes(data)


def bad_header_crc() -> bytes:
    data = bytearray(photo())
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


NOT_IMAGES = {
    "zero-bytes": lambda: b"",
    "one-byte": lambda: b"\x89",
    "plain-text": lambda: b"just some text\n" * 40,
    "html": lambda: b"<!doctype html><script>alert(document.cookie)</script>",
    "svg-billion-pixels": lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>',
    "pdf": lambda: b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF",
    "zip": lambda: b"PK\x03\x04" + bytes(60),
    "elf": lambda: b"\x7fELF\x02\x01\x01" + bytes(57),
    "gif-javascript-polyglot": lambda: b"GIF89a/*\x00\x00*/=alert(1)//;",
    "png-signature-then-html": lambda: b"\x89PNG\r\n\x1a\n<html><body>not a png</body></html>",
    "truncated-jpeg": lambda: photo("JPEG")[: len(photo("JPEG")) // 2],
    "corrupt-png-data": corrupt_png,
    "png-header-bad-crc": bad_header_crc,
    "png-claiming-10-gigapixels": lambda: png_claiming(100_000, 100_000),
    "png-claiming-64-mp": lambda: png_claiming(8000, 8000),
    "png-claiming-49-mp-without-data": lambda: png_claiming(7000, 7000),
    "bomb-100-mp-bilevel-png": lambda: bilevel_png(10_000, 10_000),
    "gif-65535-square-screen": lambda: b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00;",
    "bmp-60000-square": lambda: (b"BM" + struct.pack("<IHHI", 0, 0, 0, 54)
                                 + struct.pack("<IiiHHIIiiII", 40, 60000, 60000, 1, 24, 0, 0, 0, 0, 0, 0)),
    "jpeg-sof-65500-square": lambda: b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, 65500, 65500, 1)
                                     + b"\x01\x11\x00\xff\xd9",
    "webp-canvas-16383-square": lambda: (b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10)
                                         + bytes(4) + (16382).to_bytes(3, "little") * 2),
    "heic-brand-junk": lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(50),
    "tiff-junk": lambda: b"II*\x00\x08\x00\x00\x00" + b"\xff" * 30,
    "photoshop": lambda: b"8BPS" + bytes(40),
}

Request = Callable[[], dict]  # the keyword arguments of one httpx request


def job(operation: str = "remove-background", params: str | None = None, data: bytes | Callable[[], bytes] = photo,
        filename: str = "photo.png", **extra) -> Request:
    def make() -> dict:
        files = {"file": (filename, data() if callable(data) else data)}
        form = {"operation": operation, **({"params": params} if params is not None else {})}
        return {"method": "POST", "url": "/v1/jobs", "data": form, "files": files, **extra}
    return make


def raw(method: str, url: str, **extra) -> Request:
    return lambda: {"method": method, "url": url, **extra}


def batch(photos: Callable[[], list[bytes]], operation: str = "remove-background",
          params: str | None = None) -> Request:
    def make() -> dict:
        files = [("files", (f"p{n}.png", data)) for n, data in enumerate(photos())]
        form = {"operation": operation, **({"params": params} if params is not None else {})}
        return {"method": "POST", "url": "/v1/batches", "data": form, "files": files}
    return make


def deep(levels: int) -> str:
    return '{"output": ' + "[" * levels + "]" * levels + "}"


HTTP_CASES: list[tuple[str, Request, int, str]] = [
    *[(f"photo-{name}", job(data=make, filename=f"{name}.png"), 415, "unsupported-image")
      for name, make in NOT_IMAGES.items()],
    ("filename-path-traversal", job(data=b"text", filename="../../../../etc/passwd"), 415, "unsupported-image"),
    ("filename-unicode-controls", job(data=b"text", filename="ph\u202eoto\r\n\x00.png"), 415, "unsupported-image"),
    ("filename-10k-characters", job(data=b"text", filename="n" * 10_000), 400, "malformed-request"),
    ("filename-1k-characters", job(data=b"text", filename="n" * 1000), 415, "unsupported-image"),
    ("params-single-quotes", job(params="{'scale': 2}"), 422, "invalid-params"),
    ("params-null", job(params="null"), 422, "invalid-params"),
    ("params-number", job(params="123"), 422, "invalid-params"),
    ("params-string", job(params='"enhance"'), 422, "invalid-params"),
    ("params-nested-1000", job(params=deep(1000)), 422, "params-too-deep"),
    ("params-nested-100000", job(params='{"a": ' * 100_000 + "1" + "}" * 100_000), 413, "field-too-large"),
    ("params-1-mb", job(params=json.dumps({"output": {"format": "x" * 1_000_000}})), 413, "field-too-large"),
    ("params-2-mib-form-field", job(params="[" * (2 << 20)), 413, "field-too-large"),
    ("params-nan", job("enhance", '{"denoise": NaN}'), 422, "invalid-params"),
    ("params-infinity", job("enhance", '{"contrast": Infinity}'), 422, "invalid-params"),
    ("params-minus-infinity", job("enhance", '{"saturation": -Infinity}'), 422, "invalid-params"),
    ("params-negative-scale", job("enhance", '{"scale": -1}'), 422, "invalid-params"),
    ("params-float-overflow", job("enhance", '{"sharpen": 1e309}'), 422, "invalid-params"),
    ("params-5000-digit-integer", job("enhance", '{"scale": ' + "9" * 5000 + "}"), 422, "invalid-params"),
    ("params-wrong-type", job(params='{"refine": []}'), 422, "invalid-params"),
    ("params-bad-colour", job(params='{"background": {"type": "color", "color": "red; drop"}}'), 422,
     "invalid-params"),
    ("params-huge-blur", job(params='{"background": {"type": "blur", "radius": 1000000000}}'), 422,
     "invalid-params"),
    ("params-output-gif", job(params='{"output": {"format": "gif"}}'), 422, "invalid-params"),
    ("params-quality-zero", job(params='{"output": {"format": "webp", "quality": 0}}'), 422, "invalid-params"),
    ("params-nul-key", job(params='{"\\u0000": 1}'), 422, "invalid-params"),
    *[(f"params-unknown-field-{op}", job(op, '{"__class__": "x"}'), 422, "invalid-params")
      for op in ("remove-background", "enhance", "retouch", "restore", "colorize", "text-to-image")],
    ("prompt-1001-characters", raw("POST", "/v1/jobs", data={"operation": "text-to-image",
                                                             "params": json.dumps({"prompt": "a" * 1001})}),
     422, "invalid-params"),
    ("prompt-70-kb", raw("POST", "/v1/jobs", data={"operation": "text-to-image",
                                                   "params": json.dumps({"prompt": "\u732b" * 24_000})}),
     413, "field-too-large"),
    ("text-to-image-100000-wide", raw("POST", "/v1/jobs", data={"operation": "text-to-image",
                                                                "params": '{"prompt": "a", "width": 100000}'}),
     422, "invalid-params"),
    ("text-to-image-negative-steps", raw("POST", "/v1/jobs", data={"operation": "text-to-image",
                                                                   "params": '{"prompt": "a", "steps": -5}'}),
     422, "invalid-params"),
    ("operation-upper-case", job("REMOVE-BACKGROUND"), 422, "unknown-operation"),
    ("operation-homoglyph", job("r\u0435move-background"), 422, "unknown-operation"),
    ("operation-nul", job("remove-background\x00"), 422, "unknown-operation"),
    ("operation-path", job("../../etc/passwd"), 422, "unknown-operation"),
    ("operation-10k", job("x" * 10_000), 422, "unknown-operation"),
    ("operation-empty", job(""), 422, "invalid-request"),
    ("no-file-field", raw("POST", "/v1/jobs", data={"operation": "remove-background"}), 422, "missing-file"),
    ("file-as-a-text-field", raw("POST", "/v1/jobs", data={"operation": "remove-background", "file": "x"}), 422,
     "invalid-request"),
    ("body-json", raw("POST", "/v1/jobs", json={"operation": "remove-background"}), 415, "unsupported-media-type"),
    ("body-text-plain", raw("POST", "/v1/jobs", content=b"operation=enhance", headers={"content-type": "text/plain"}),
     415, "unsupported-media-type"),
    ("body-xml", raw("POST", "/v1/batches", content=b"<x/>", headers={"content-type": "application/xml"}), 415,
     "unsupported-media-type"),
    ("multipart-without-boundary", raw("POST", "/v1/jobs", content=b"--x\r\n\r\n",
                                       headers={"content-type": "multipart/form-data"}), 400, "malformed-request"),
    ("multipart-garbage", raw("POST", "/v1/jobs", content=b"garbage" * 100,
                              headers={"content-type": "multipart/form-data; boundary=xyz"}), 400,
     "malformed-request"),
    ("form-2000-fields", raw("POST", "/v1/jobs", data={f"f{n}": "x" for n in range(2000)}), 400,
     "malformed-request"),
    ("batch-1001-files", batch(lambda: [b"x"] * 1001), 400, "malformed-request"),
    ("batch-no-files", raw("POST", "/v1/batches", data={"operation": "remove-background"}), 422, "invalid-request"),
    ("batch-51-photos", batch(lambda: [photo()] * 51), 422, "batch-too-large"),
    ("batch-20-photos-of-49-mp", batch(lambda: [bilevel_png(7000, 7000)] * 20), 413, "too-many-pixels"),
    ("batch-one-bomb-among-good", batch(lambda: [photo(), photo(), png_claiming(100_000, 100_000)]), 415,
     "unsupported-image"),
    ("batch-nested-params", batch(lambda: [photo()], params=deep(500)), 422, "params-too-deep"),
    ("batch-text-to-image", batch(lambda: [photo()], "text-to-image"), 422, "invalid-params"),
    ("header-unknown-api-key", job(headers={"Authorization": "Bearer pc_not-a-key"}), 401, "invalid-api-key"),
    ("header-8-kb-api-key", job(headers={"Authorization": "Bearer " + "k" * 8000}), 401, "invalid-api-key"),
    ("header-forged-device-token", job(data=b"text", headers={"Authorization": "", "X-Device-Token": "v1.x.y.z"}),
     415, "unsupported-image"),
    ("header-spoofed-forwarded-for", job(data=b"text", headers={"X-Forwarded-For": "1.2.3.4, 10.0.0.1"}), 415,
     "unsupported-image"),
    ("job-id-2000-characters", raw("GET", "/v1/jobs/" + "j" * 2000), 404, "job-not-found"),
    ("job-id-path-traversal", raw("GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd"), 404, "not-found"),
    ("job-id-dot-dot", raw("DELETE", "/v1/jobs/%2e%2e"), 404, "job-not-found"),
    ("batch-id-unicode", raw("GET", "/v1/batches/\u0444\u043e\u0442\u043e"), 404, "batch-not-found"),
    ("delete-unknown-batch", raw("DELETE", "/v1/batches/nope"), 404, "batch-not-found"),
    ("method-put-jobs", raw("PUT", "/v1/jobs"), 405, "method-not-allowed"),
    ("method-patch-batch", raw("PATCH", "/v1/batches/b"), 405, "method-not-allowed"),
    ("unknown-route", raw("GET", "/v1/admin/tenants"), 404, "not-found"),
]


@pytest.fixture(scope="module")
def hostile_key() -> str:
    return tenant_key("hostile", "enterprise")


@pytest.fixture
async def platform_stays_ready():
    """After the case: the gateway and the scheduler still answer /readyz with 200."""
    yield
    async with httpx.AsyncClient(timeout=10) as client:
        for url in (f"{GATEWAY}/readyz", SCHEDULER_HEALTH):
            response = await client.get(url)
            assert response.status_code == 200, f"{url}: {response.text}"


@pytest.mark.parametrize(("request_of", "status", "slug"), [c[1:] for c in HTTP_CASES], ids=[c[0] for c in HTTP_CASES])
async def test_hostile_http_request(hostile_key, request_of, status, slug, platform_stays_ready):
    request = request_of()
    headers = {"Authorization": f"Bearer {hostile_key}", **request.pop("headers", {})}
    headers = {k: v for k, v in headers.items() if v}  # an empty Authorization: anonymous
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=120) as client:
        response = await client.request(headers=headers, **request)
    body = assert_problem(response, status, slug) or response.json()
    assert body["instance"].startswith("/")
    assert " at 0x" not in response.text and "Traceback" not in response.text and "<class" not in response.text
    assert len(body["detail"]) <= 2000 and all(c.isprintable() for c in body["detail"])


def partner_request(tenant: str, operation: str = "remove-background", image: bytes | Callable[[], bytes] = photo,
                    params: str = "", request_id: str | None = None, tenant_id: str | None = None) -> PartnerRequest:
    return PartnerRequest(request_id=request_id or str(uuid.uuid4()), tenant_id=tenant_id or tenant,
                          operation=operation, params_json=params, image=image() if callable(image) else image)


PARTNER_CASES: list[tuple[str, Callable[[str], PartnerRequest], str]] = [
    *[(f"photo-{name}", functools.partial(partner_request, image=NOT_IMAGES[name]), "unsupported-image")
      for name in ("plain-text", "png-claiming-10-gigapixels", "png-claiming-64-mp", "png-claiming-49-mp-without-data",
                   "bomb-100-mp-bilevel-png", "truncated-jpeg", "gif-javascript-polyglot", "png-header-bad-crc")],
    ("photo-zero-bytes", functools.partial(partner_request, image=b""), "missing-file"),
    ("params-nested-1000", functools.partial(partner_request, params=deep(1000)), "params-too-deep"),
    ("params-100-kb", functools.partial(partner_request, params=json.dumps({"pad": "p" * 100_000})),
     "field-too-large"),
    ("params-nan", functools.partial(partner_request, operation="enhance", params='{"denoise": NaN}'),
     "invalid-params"),
    ("params-of-another-operation", functools.partial(partner_request, params='{"scale": 4}'), "invalid-params"),
    ("operation-shell", functools.partial(partner_request, operation="rm -rf /"), "unknown-operation"),
    ("operation-10k", functools.partial(partner_request, operation="o" * 10_000), "unknown-operation"),
    ("request-id-not-a-uuid", functools.partial(partner_request, request_id="../../x"), "invalid-request-id"),
    ("tenant-of-someone-else", functools.partial(partner_request, tenant_id="someone-else"), "tenant-mismatch"),
]


class Partner:
    """A registered partner tenant: sends requests to its topic and reads its events topic in order."""

    def __init__(self, settings) -> None:
        self.tenant = register_partner("enterprise")
        servers = settings.kafka.bootstrap_servers
        self._consumer = AIOKafkaConsumer(PARTNER_EVENTS.format(tenant=self.tenant), bootstrap_servers=servers,
                                          auto_offset_reset="earliest", group_id=f"{self.tenant}-hostile")
        self._producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")

    async def send(self, request: PartnerRequest) -> None:
        await self._producer.send_and_wait(PARTNER_REQUESTS.format(tenant=self.tenant), request.SerializeToString(),
                                           key=request.request_id.encode())

    async def next_event(self, timeout_s: float = 120) -> JobEvent:
        record = await asyncio.wait_for(self._consumer.getone(), timeout_s)
        return JobEvent.FromString(record.value)


@pytest.fixture(scope="module")
async def partner(settings):
    partner = Partner(settings)
    await partner._consumer.start()
    await partner._producer.start()
    yield partner
    await partner._producer.stop()
    await partner._consumer.stop()


@pytest.mark.parametrize(("make", "code"), [c[1:] for c in PARTNER_CASES], ids=[c[0] for c in PARTNER_CASES])
async def test_hostile_partner_request(partner, make, code, platform_stays_ready):
    request = make(partner.tenant)
    await partner.send(request)

    event = await partner.next_event()

    assert event.tenant_id == partner.tenant and event.HasField("failed"), event
    assert event.failed.code == code, event.failed.message
    assert " at 0x" not in event.failed.message and len(event.failed.message) <= 2000
    if code != "invalid-request-id":
        assert event.job_id == uuid.UUID(request.request_id).hex


async def test_after_the_corpus_a_good_job_completes(hostile_key, astronaut):
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=60,
                                 headers={"Authorization": f"Bearer {hostile_key}"}) as client:
        response = await client.post("/v1/jobs", data={"operation": "remove-background"},
                                     files={"file": ("good.png", png_bytes(fresh(astronaut[::4, ::4])))})
    assert response.status_code == 202, response.text
    assert (await events_until(response.json()))[-1]["type"] == "completed"


async def test_after_the_corpus_a_good_partner_request_completes(partner, astronaut):
    request = partner_request(partner.tenant, image=png_bytes(fresh(astronaut[::4, ::4])))
    await partner.send(request)
    kinds = []
    while not kinds or kinds[-1] not in ("completed", "failed", "cancelled"):
        event = await partner.next_event(240)
        assert event.job_id == uuid.UUID(request.request_id).hex
        kinds.append(event.WhichOneof("kind") or "")
    assert kinds[-1] == "completed", kinds
