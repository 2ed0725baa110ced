"""The SDK's own logic: parameters, output names, event following (with in-memory event sources),
errors, the device token file, and the CLI's refusals. Nothing needs to run."""

from __future__ import annotations

import socket
import stat

import httpx
import pytest
from click.testing import CliRunner
from tenacity import wait_none

from photocraft_sdk import ApiError, Client, StreamInterrupted, StreamRefused, follow
from photocraft_sdk.cli import cli
from photocraft_sdk.config import DeviceTokens
from photocraft_sdk.events import batch_ended
from photocraft_sdk.outputs import photos_in, result_paths, slug, stems
from photocraft_sdk.params import background, build, parse_value

# -- parameters ---------------------------------------------------------------------------------------------


def test_values_are_json_when_they_parse():
    assert parse_value("2") == 2
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value('{"type": "blur"}') == {"type": "blur"}
    assert parse_value("person") == "person"
    assert parse_value("") == ""


def test_params_merge_json_then_pairs_then_options():
    params = build('{"scale": 4, "denoise": 0.2, "output": {"quality": 80}}',
                   ["scale=2", "output.format=webp", "upscaler=faithful"],
                   {"denoise": 0.7, "contrast": None})
    assert params == {"scale": 2, "denoise": 0.7, "upscaler": "faithful",
                      "output": {"quality": 80, "format": "webp"}}


def test_output_suffix_sets_the_format_unless_given(tmp_path):
    assert build(output=tmp_path / "out.JPG") == {"output": {"format": "jpeg"}}
    assert build(output=tmp_path / "out.webp") == {"output": {"format": "webp"}}
    assert build(output=tmp_path / "out.tiff") == {}
    assert build(None, ["output.format=png"], output=tmp_path / "out.jpg") == {"output": {"format": "png"}}


@pytest.mark.parametrize("params_json, pairs", [("[1, 2]", []), ("{bad", []), (None, ["scale"]), (None, ["=2"])])
def test_malformed_params_are_refused(params_json, pairs):
    with pytest.raises(ValueError):
        build(params_json, pairs)


def test_background_shorthands():
    assert background("transparent") == {"type": "transparent"}
    assert background("blur") == {"type": "blur"}
    assert background("blur:30") == {"type": "blur", "radius": 30.0}
    assert background("#00ff00") == {"type": "color", "color": "#00ff00"}
    assert background("color:#102030") == {"type": "color", "color": "#102030"}
    for bad in ("green", "blur:x", "color:", "transparent:1"):
        with pytest.raises(ValueError):
            background(bad)


# -- output names -------------------------------------------------------------------------------------------


def test_result_names_from_photos(tmp_path):
    photos = [tmp_path / name for name in ("a.jpg", "a.png", "b.jpeg", "c.d.tif")]
    assert stems(photos, "enhance") == {photos[0]: "a-jpg-enhance", photos[1]: "a-png-enhance",
                                        photos[2]: "b-enhance", photos[3]: "c.d-enhance"}


def test_photos_in_a_folder(tmp_path):
    for name in ("b.PNG", "a.jpg", "notes.txt", "c.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in photos_in(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]


def result(role="image", content_type="image/png"):
    return {"url": "http://s3/x", "role": role, "content_type": content_type, "width": 8, "height": 8}


def test_result_paths(tmp_path):
    image, mask, jpeg = result(), result("mask"), result(content_type="image/jpeg")
    assert [p for _, p in result_paths([image, mask], tmp_path / "me-retouch")] == [
        tmp_path / "me-retouch.png", tmp_path / "me-retouch-mask.png"]
    assert [p for _, p in result_paths([image], tmp_path / "cut.png")] == [tmp_path / "cut.png"]
    assert [p for _, p in result_paths([jpeg], tmp_path / "cut.jpeg")] == [tmp_path / "cut.jpeg"]
    assert [p for _, p in result_paths([jpeg], tmp_path / "cut.png")] == [tmp_path / "cut.jpg"]
    assert [p for _, p in result_paths([image, mask], tmp_path / "c.d")] == [
        tmp_path / "c.d.png", tmp_path / "c.d-mask.png"]
    report = result("report", "application/json")  # restore's report (docs/api.md)
    assert [p for _, p in result_paths([image, report], tmp_path / "old.jpg")] == [
        tmp_path / "old.png", tmp_path / "old-report.json"]


def test_slug():
    assert slug("A lighthouse, on a cliff at dusk!") == "a-lighthouse-on-a-cliff-at"
    assert slug("!!!") == "image"


# -- following events ---------------------------------------------------------------------------------------


def job_events(n: int = 6, end: str = "completed") -> list[dict]:
    kinds = ["received", "queued", *["progress"] * (n - 3), end]
    return [{"seq": i, "type": kind, "job_id": "j"} for i, kind in enumerate(kinds, 1)]


class FakeNotifier:
    """An event source scripted per connection. Each script is (first, count, ending): the connection
    sends events from seq ``first`` (None: after the client's ``after``, as the notifier does; a number:
    a replay that ignores it), ``count`` of them, then ends with ``ending``: "close" (the job's end),
    "drop" (StreamInterrupted), "resync" (a resync message), or an exception to raise."""

    def __init__(self, events: list[dict], scripts: list[tuple]) -> None:
        self.events, self.scripts, self.afters, self.closed = events, list(scripts), [], 0

    async def __call__(self, after: int):
        self.afters.append(after)
        first, count, ending = self.scripts.pop(0)
        start = after + 1 if first is None else first
        try:
            for event in self.events[start - 1:start - 1 + count]:
                yield {"type": "heartbeat", "job_id": "j"}
                yield event
            if ending == "drop":
                raise StreamInterrupted("connection reset", after)
            if ending == "resync":
                yield {"type": "resync", "job_id": "j"}
                yield self.events[-1]  # must not be read: the client reconnects first
            if isinstance(ending, Exception):
                raise ending
        finally:
            self.closed += 1


async def collect(source, **options) -> list[dict]:
    return [event async for event in follow(source, wait=wait_none(), **options)]


async def test_follow_resumes_without_losing_or_repeating_events():
    events = job_events(8)
    source = FakeNotifier(events, [(None, 2, "drop"), (1, 5, "drop"), (None, 1, "resync"), (None, 99, "close")])
    retries = []
    got = await collect(source, on_retry=lambda error, delay: retries.append((error.after, delay)))
    assert got == events
    assert source.afters == [0, 2, 5, 6]
    assert retries == [(2, 0), (5, 0), (6, 0)]
    assert source.closed == 4


async def test_follow_from_after_and_heartbeats_on_request():
    events = job_events(5)
    got = await collect(FakeNotifier(events, [(None, 99, "close")]), after=3, heartbeats=True)
    assert [e.get("seq") for e in got] == [None, 4, None, 5]


async def test_follow_gives_up_after_attempts_without_news():
    source = FakeNotifier(job_events(), [(None, 2, "drop")] + [(None, 0, "drop")] * 3)
    with pytest.raises(StreamInterrupted) as raised:
        await collect(source, attempts=3)
    assert raised.value.after == 2
    assert source.afters == [0, 2, 2, 2]  # the first connection brought news, so three more tries


async def test_follow_keeps_going_while_each_connection_brings_news():
    events = job_events(10)
    source = FakeNotifier(events, [(None, 1, "drop")] * 9 + [(None, 1, "close")])
    assert await collect(source, attempts=2) == events


async def test_a_stream_that_ends_early_is_resumed():
    events = job_events(4)
    source = FakeNotifier(events, [(None, 2, "close"), (None, 9, "close")])
    assert await collect(source) == events
    assert source.afters == [0, 2]


async def test_refusal_is_not_retried():
    source = FakeNotifier(job_events(), [(None, 0, StreamRefused(4403, "wrong token"))])
    with pytest.raises(StreamRefused):
        await collect(source)
    assert source.afters == [0]


async def test_stopping_early_closes_the_stream():
    source = FakeNotifier(job_events(), [(None, 99, "close")])
    stream = follow(source)
    assert (await anext(stream))["seq"] == 1
    await stream.aclose()
    assert source.closed == 1


async def test_batch_stream_ends_when_every_job_ended():
    progress = [{"seq": i, "type": "batch_progress", "job_id": "b", "done": d, "failed": f, "total": 3}
                for i, (d, f) in enumerate([(1, 0), (1, 1), (2, 1)], 1)]
    assert [batch_ended(p) for p in progress] == [False, False, True]
    got = await collect(FakeNotifier(progress + [progress[-1]], [(None, 99, "close")]), ended=batch_ended)
    assert got == progress


# -- gateway answers ----------------------------------------------------------------------------------------


def test_problem_becomes_api_error():
    response = httpx.Response(429, headers={"Retry-After": "120", "Content-Type": "application/problem+json"},
                              json={"type": "/problems/quota-exceeded", "title": "Quota exceeded",
                                    "status": 429, "detail": "5 edits a day"})
    error = ApiError.from_response(response)
    assert (error.status, error.type, error.title, error.detail, error.retry_after) == (
        429, "quota-exceeded", "Quota exceeded", "5 edits a day", 120)
    plain = ApiError.from_response(httpx.Response(502, text="bad gateway"))
    assert (plain.title, plain.detail) == ("Bad Gateway", "bad gateway")


async def test_device_token_is_kept_and_sent_back(tmp_path):
    seen = []

    def gateway(request: httpx.Request) -> httpx.Response:  # an in-memory stand-in for the gateway
        seen.append(request.headers.get("x-device-token"))
        return httpx.Response(202, headers={"X-Device-Token": "dev-1"} if not seen[-1] else {},
                              json={"job_id": "j", "token": "t"})

    tokens = DeviceTokens(tmp_path / "photocraft" / "config.json")
    async with Client("http://gw.test/", device_tokens=tokens, transport=httpx.MockTransport(gateway)) as client:
        await client.submit_job("remove-background", b"png")
        await client.submit_job("remove-background", b"png")
    assert seen == [None, "dev-1"]
    assert tokens.get("http://gw.test") == "dev-1"
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    async with Client("http://gw.test", device_tokens=tokens, transport=httpx.MockTransport(gateway)) as client:
        assert client.device_token == "dev-1"


# -- the command line ---------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_says_when_the_platform_is_not_running(tmp_path):
    photo = tmp_path / "me.png"
    photo.write_bytes(b"not really")
    url = f"http://127.0.0.1:{closed_port()}"
    outcome = CliRunner().invoke(cli, ["--url", url, "edit", str(photo), "--op", "remove-background"],
                                 env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert outcome.exit_code == 3, outcome.output
    assert f"cannot reach Photocraft at {url}; is it running (make up)?" in outcome.output


@pytest.mark.parametrize("args", [["--param", "scale"], ["--params", "[1]"], ["--background", "green"],
                                  ["--scale", "9"]])
def test_cli_refuses_bad_parameters(tmp_path, args):
    photo = tmp_path / "me.png"
    photo.write_bytes(b"x")
    outcome = CliRunner().invoke(cli, ["--url", "http://127.0.0.1:9", "edit", str(photo), "--op", "enhance", *args])
    assert outcome.exit_code == 2, outcome.output


def test_cli_folder_without_photos(tmp_path):
    outcome = CliRunner().invoke(cli, ["--url", f"http://127.0.0.1:{closed_port()}", "edit", str(tmp_path),
                                       "--op", "enhance"], env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert outcome.exit_code == 2 and "no photos in" in outcome.output
